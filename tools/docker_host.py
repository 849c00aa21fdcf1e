"""What the helpers, tests and bench share to drive the local Docker engine."""
from __future__ import annotations

import os
import shutil


def docker_cli() -> str:
    """Debian's own client where installed: a newer client first on PATH may refuse classic
    builds without the buildx plugin, which Debian 12 does not package. DEVBOX_DOCKER overrides."""
    if os.environ.get("DEVBOX_DOCKER"):
        return os.environ["DEVBOX_DOCKER"]
    return "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")


DOCKER = docker_cli()

# Where containers see the host's CA bundle, so pip and uv inside trust a TLS-intercepting proxy too.
CA_IN_CONTAINER = "/etc/devbox/ca-bundle.pem"
CA_CANDIDATES = (os.environ.get("SSL_CERT_FILE"), os.environ.get("PIP_CERT"),
                 "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def host_ca_bundle() -> str | None:
    """The host's CA bundle, or None where it has none of the usual ones."""
    return next((path for path in CA_CANDIDATES if path and os.path.isfile(path)), None)
