#!/usr/bin/env python3
"""The local dev machine: a container from the project's Dockerfile, a named volume as home.

  up       build the image, start the container (or reuse it), run playbooks/site.yml
  down     stop and remove the container; the volume (venv, notebooks, token) stays
  destroy  remove the container and the volume

Like a Fly Machine, the container's root FS is thrown away by `down` and only the volume
survives. Jupyter's port is published on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
NAME = os.environ.get("DEVBOX_NAME", "devbox-local")
VOLUME = os.environ.get("DEVBOX_VOLUME", "devbox-home")
IMAGE = os.environ.get("DEVBOX_IMAGE", "devbox:latest")
PORT = int(os.environ.get("DEVBOX_PORT", "8888"))
USER = "pythonuser"
CA_IN_CONTAINER = "/etc/devbox/ca-bundle.pem"
CA_CANDIDATES = (os.environ.get("SSL_CERT_FILE"), os.environ.get("PIP_CERT"),
                 "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def docker(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], check=check, text=True,
                          capture_output=quiet)


def host_ca_bundle() -> str | None:
    """The host's CA bundle, so pip and uv in the container trust a TLS-intercepting proxy too."""
    return next((path for path in CA_CANDIDATES if path and os.path.isfile(path)), None)


def build_image() -> None:
    base = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "base_image.py")],
                          check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
    say(f"building {IMAGE} on {base}")
    docker("build", "-q", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"NONROOT_USER={USER}",
           "-t", IMAGE, ROOT)


def container_state() -> str | None:
    result = docker("inspect", "-f", "{{.State.Status}}", NAME, check=False, quiet=True)
    return result.stdout.strip() if result.returncode == 0 else None


def start_container(ca_bundle: str | None) -> None:
    state = container_state()
    if state == "running":
        say(f"container {NAME} is running")
        return
    if state is not None:
        docker("rm", "-f", NAME, quiet=True)
    say(f"starting {NAME} with volume {VOLUME} at /home/{USER}, Jupyter on 127.0.0.1:{PORT}")
    mounts = ["-v", f"{VOLUME}:/home/{USER}"]
    if ca_bundle:
        mounts += ["-v", f"{ca_bundle}:{CA_IN_CONTAINER}:ro"]
    docker("run", "-d", "--name", NAME, "--hostname", NAME, *mounts,
           "-p", f"127.0.0.1:{PORT}:8888", IMAGE, quiet=True)


def provision(ca_bundle: str | None, extra: list[str]) -> None:
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", os.path.join(ROOT, "inventory", "local.yml"),
               "-e", f"devbox_browser_url=http://127.0.0.1:{PORT}",
               "-e", f"ansible_host={NAME}", "-e", f"jupyter_ip={NAME}"]
    if ca_bundle:
        command += ["-e", f"python_env_ca_bundle={CA_IN_CONTAINER}"]
    say("provisioning with playbooks/site.yml")
    subprocess.run(command + extra + [os.path.join(ROOT, "playbooks", "site.yml")], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "destroy"])
    parser.add_argument("playbook_args", nargs="*", help="extra arguments for ansible-playbook (after --)")
    args = parser.parse_args()
    try:
        if args.action == "up":
            ca_bundle = host_ca_bundle()
            build_image()
            start_container(ca_bundle)
            provision(ca_bundle, args.playbook_args)
        else:
            docker("rm", "-f", NAME, check=False, quiet=True)
            say(f"removed container {NAME}")
            if args.action == "destroy":
                docker("volume", "rm", "-f", VOLUME, check=False, quiet=True)
                say(f"removed volume {VOLUME}")
            else:
                say(f"volume {VOLUME} kept: `make up` brings everything back")
    except subprocess.CalledProcessError as error:
        sys.exit(f"failed: {' '.join(map(str, error.cmd))} exited with {error.returncode}")


if __name__ == "__main__":
    main()
