"""uv's wheel straight from the package index, for a venv made without ensurepip. Standard library only.

A fresh project venv needs uv before uv can do anything: `python -m venv` (ensurepip installs pip) and
then `pip install uv` take about 5 s; reading the index's page for uv and unpacking the one wheel that fits
this machine takes about 1 s. Anything this reader does not understand (an index that needs a login, no
wheel for this libc or CPU, a page in a form it cannot read) is a BootstrapError, and the caller takes
the slow path instead, whose installer knows every index.
"""
from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import os
import platform
import re
import ssl
import stat
import urllib.parse
import urllib.request
import zipfile

PYPI = "https://pypi.org/simple"
# PEP 691's JSON first; PEP 503's HTML is what older mirrors serve.
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
TIMEOUT_S = 30
# uv-0.9.5-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl: version, then the platform tags. The index's
# file name becomes a file name in the download folder: nothing but these characters (no '/', no '..' part).
WHEEL_NAME = re.compile(r"^uv-(?P<version>\d+(?:\.\d+)*)-py3-none-(?P<platforms>[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\.whl$")
# Old manylinux names and the glibc each stands for.
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class BootstrapError(Exception):
    """Why the fast path cannot be used here; the slow path still can."""


def glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (AttributeError, OSError, ValueError):
        return None
    major, minor = version.split(".")[:2]
    return (int(major), int(minor)) if name == "glibc" else None


def fits(platform_tag: str, machine: str, glibc: tuple[int, int]) -> bool:
    """Whether a wheel's platform tag runs here: a manylinux tag of this CPU no newer than this glibc."""
    if not platform_tag.endswith("_" + machine):
        return False
    family = platform_tag[: -len(machine) - 1]
    if family in LEGACY_MANYLINUX:
        return LEGACY_MANYLINUX[family] <= glibc
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)", family)
    return bool(found) and (int(found.group(1)), int(found.group(2))) <= glibc


def pick_wheel(files: list[dict], machine: str, glibc: tuple[int, int]) -> dict:
    """The newest released, not yanked uv wheel that runs here: {filename, url, sha256}."""
    candidates = []
    for entry in files:
        found = WHEEL_NAME.match(entry["filename"])
        if not found or entry.get("yanked"):
            continue
        if any(fits(tag, machine, glibc) for tag in found.group("platforms").split(".")):
            version = tuple(int(part) for part in found.group("version").split("."))
            candidates.append((version, entry))
    if not candidates:
        raise BootstrapError(f"the index has no uv wheel for {machine} with glibc {'.'.join(map(str, glibc))}")
    return max(candidates, key=lambda candidate: candidate[0])[1]


class _Links(html.parser.HTMLParser):
    """PEP 503: one <a href="...#sha256=..."> per file, data-yanked on a yanked one."""

    def __init__(self):
        super().__init__()
        self.files = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag != "a" or not attributes.get("href"):
            return
        url, _, fragment = attributes["href"].partition("#")
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        hashes = dict([fragment.split("=", 1)]) if "=" in fragment else {}
        self.files.append({"filename": filename, "url": url, "hashes": hashes,
                           "yanked": "data-yanked" in attributes})


def index_files(body: bytes, content_type: str) -> list[dict]:
    """The files of a project page, as PEP 691 names them (filename, url, hashes, yanked)."""
    if "json" in content_type:
        return json.loads(body)["files"]
    if "html" in content_type:
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        return parser.files
    raise BootstrapError(f"the index answered with {content_type or 'no content type'}")


def _opener(ca_bundle: str | None) -> urllib.request.OpenerDirector:
    # Python's default context also reads SSL_CERT_FILE, as uv and pip do.
    try:
        context = ssl.create_default_context(cafile=ca_bundle or None)
    except OSError as error:  # SSLError is one
        raise BootstrapError(f"cannot use the CA bundle {ca_bundle}: {error}") from error
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def _get(opener, url: str, accept: str = "*/*"):
    """GET url; a URL's user:password goes in an Authorization header, as the installers send it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):  # an index's link is fetched, never a local file (file://)
        raise BootstrapError(f"not an http(s) URL: {parts.scheme}://...")
    headers = {"Accept": accept, "User-Agent": "devbox-uv-bootstrap"}
    if parts.username is not None:
        login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    request = urllib.request.Request(urllib.parse.urlunsplit(parts), headers=headers)
    try:
        return opener.open(request, timeout=TIMEOUT_S)
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        raise BootstrapError(f"cannot read the index: {error}") from error


def download_uv(settings: dict, folder: str) -> tuple[str, str]:
    """uv's wheel for this machine from the first index of the installer settings, into folder, its hash
    checked, and its binary beside it: (the wheel's version, the binary's path)."""
    glibc, machine = glibc_version(), platform.machine()
    if glibc is None:
        raise BootstrapError("not a glibc system")
    opener = _opener(settings.get("ca_bundle"))
    page = (settings.get("index_url") or PYPI).rstrip("/") + "/uv/"
    with _get(opener, page, ACCEPT) as response:
        files = index_files(response.read(), response.headers.get("Content-Type", ""))
        page = response.geturl()  # file URLs are relative to where the page really was
    wheel = pick_wheel(files, machine, glibc)
    url = urllib.parse.urljoin(page, wheel["url"])
    # A mirror's file links carry no login: the index URL's goes with them to the same host.
    index, target = urllib.parse.urlsplit(page), urllib.parse.urlsplit(url)
    login = urllib.parse.urlsplit(settings.get("index_url") or PYPI).netloc.rpartition("@")[0]
    if login and target.username is None and target.hostname == index.hostname:
        url = urllib.parse.urlunsplit(target._replace(netloc=f"{login}@{target.netloc}"))
    path = os.path.join(folder, wheel["filename"])
    digest = hashlib.sha256()
    with _get(opener, url) as response, open(path, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    expected = wheel.get("hashes", {}).get("sha256")
    if expected and digest.hexdigest() != expected:
        raise BootstrapError(f"{wheel['filename']}: sha256 {digest.hexdigest()}, the index says {expected}")
    binary = os.path.join(folder, "uv")
    try:
        with zipfile.ZipFile(path) as archive:
            member = next(name for name in archive.namelist() if re.fullmatch(r"uv-[^/]+\.data/scripts/uv", name))
            with archive.open(member) as source, open(binary, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
    except (zipfile.BadZipFile, StopIteration) as error:
        raise BootstrapError(f"{wheel['filename']} holds no uv binary") from error
    os.chmod(binary, stat.S_IRWXU)
    return WHEEL_NAME.match(wheel["filename"]).group("version"), binary
