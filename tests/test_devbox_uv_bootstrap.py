"""uv's wheel from the index without pip: which wheel is picked, and the download against a local HTTP index."""
import base64
import hashlib
import http.server
import io
import json
import os
import threading
import zipfile

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_bootstrap import (
    BootstrapError, download_uv, fits, index_files, pick_wheel)

X86 = "manylinux_2_17_x86_64.manylinux2014_x86_64"


def entry(filename, **extra):
    return dict({"filename": filename, "url": filename, "hashes": {}}, **extra)


def test_platform_tags_that_run_here():
    assert fits("manylinux_2_17_x86_64", "x86_64", (2, 36))
    assert fits("manylinux2014_x86_64", "x86_64", (2, 17))
    assert not fits("manylinux_2_38_x86_64", "x86_64", (2, 36)), "needs a newer glibc"
    assert not fits("manylinux_2_17_aarch64", "x86_64", (2, 36)), "another CPU"
    assert not fits("musllinux_1_1_x86_64", "x86_64", (2, 36))
    assert not fits("macosx_11_0_arm64", "x86_64", (2, 36))


def test_the_newest_wheel_that_runs_here_is_picked():
    files = [entry(f"uv-0.9.10-py3-none-{X86}.whl"), entry(f"uv-0.10.2-py3-none-{X86}.whl"),
             entry(f"uv-0.11.0-py3-none-{X86}.whl", yanked=True), entry("uv-0.12.0-py3-none-musllinux_1_1_x86_64.whl"),
             entry("uv-0.12.0.tar.gz"), entry(f"uv-0.12.0rc1-py3-none-{X86}.whl"),
             entry("uv-0.10.3-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
             # A name that would leave the download folder is no wheel at all.
             entry(f"uv-9.0-py3-none-{X86}.x/../../y.whl"), entry(f"uv-9.1-py3-none-{X86}.x/y.whl")]
    assert pick_wheel(files, "x86_64", (2, 36))["filename"] == f"uv-0.10.2-py3-none-{X86}.whl"
    assert pick_wheel(files, "aarch64", (2, 36))["filename"].startswith("uv-0.10.3-")
    with pytest.raises(BootstrapError, match="no uv wheel for x86_64 with glibc 2.5"):
        pick_wheel(files, "x86_64", (2, 5))


def test_both_page_forms_are_read():
    html = (b'<html><body><a href="../../files/uv-1.0-py3-none-any.whl#sha256=abc">uv-1.0</a>'
            b'<a href="uv-0.9.tar.gz" data-yanked="">x</a></body></html>')
    assert index_files(html, "text/html; charset=utf-8") == [
        {"filename": "uv-1.0-py3-none-any.whl", "url": "../../files/uv-1.0-py3-none-any.whl",
         "hashes": {"sha256": "abc"}, "yanked": False},
        {"filename": "uv-0.9.tar.gz", "url": "uv-0.9.tar.gz", "hashes": {}, "yanked": True}]
    page = {"files": [entry("uv-1.0.whl")]}
    assert index_files(json.dumps(page).encode(), "application/vnd.pypi.simple.v1+json") == page["files"]
    with pytest.raises(BootstrapError, match="text/plain"):
        index_files(b"uv", "text/plain")


def wheel_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("uv/__init__.py", "")
        archive.writestr("uv-1.2.3.data/scripts/uv", "#!/bin/sh\necho uv 1.2.3\n")
    return buffer.getvalue()


@pytest.fixture
def index(monkeypatch):
    """A PEP 503 mirror on localhost that wants a login: its page links the wheel relatively, on the same host."""
    wheel = wheel_bytes()
    name = f"uv-1.2.3-py3-none-{X86}.whl"
    served = {"sha256": hashlib.sha256(wheel).hexdigest(), "logins": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served["logins"].append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"me:s3cret").decode():
                self.send_error(401)
            elif self.path == "/simple/uv/":
                href = served.get("href") or f"../../packages/{name}#sha256={served['sha256']}"
                body = f'<a href="{href}">{name}</a>'.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)
            elif self.path == f"/packages/{name}":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(wheel)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    served["url"] = f"http://me:s3cret@127.0.0.1:{server.server_port}/simple"
    yield served
    server.shutdown()


def test_the_wheel_is_fetched_with_the_index_login_checked_and_unpacked(index, tmp_path):
    version, uv = download_uv({"index_url": index["url"]}, str(tmp_path))
    assert version == "1.2.3" and os.path.getsize(tmp_path / f"uv-1.2.3-py3-none-{X86}.whl") > 0
    assert open(uv).read() == "#!/bin/sh\necho uv 1.2.3\n" and os.access(uv, os.X_OK)
    assert len(index["logins"]) == 2 and None not in index["logins"], "the page and the file, both logged in"


def test_a_wheel_that_does_not_match_its_hash_is_refused(index, tmp_path, monkeypatch):
    real = index_files
    monkeypatch.setattr("ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_bootstrap.index_files",
                        lambda body, kind: [dict(f, hashes={"sha256": "0" * 64}) for f in real(body, kind)])
    with pytest.raises(BootstrapError, match="sha256"):
        download_uv({"index_url": index["url"]}, str(tmp_path))


def test_an_index_that_refuses_is_a_bootstrap_error(index, tmp_path):
    with pytest.raises(BootstrapError, match="401"):
        download_uv({"index_url": index["url"].replace("s3cret", "wrong")}, str(tmp_path))
    with pytest.raises(BootstrapError, match="CA bundle"):
        download_uv({"index_url": index["url"], "ca_bundle": str(tmp_path / "absent.pem")}, str(tmp_path))


def test_a_link_to_a_local_file_is_not_followed(index, tmp_path):
    local = tmp_path / f"uv-1.2.3-py3-none-{X86}.whl"
    local.write_bytes(wheel_bytes())
    index["href"] = local.as_uri()
    with pytest.raises(BootstrapError, match="not an http"):
        download_uv({"index_url": index["url"]}, str(tmp_path / "dl"))
