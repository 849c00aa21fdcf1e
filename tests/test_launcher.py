"""The Jupyter launcher's pure parts; the real server is exercised by the Molecule scenarios."""
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

import devbox_jupyter as launcher


@pytest.fixture
def home(tmp_path, monkeypatch):
    config = tmp_path / ".jupyter"
    for name, value in {"CONFIG_DIR": config, "CONFIG_FILE": config / "jupyter_server_config.json",
                        "TOKEN_FILE": config / "devbox_token", "PID_FILE": config / "devbox-jupyter.pid",
                        "LOG_FILE": config / "devbox-jupyter.log"}.items():
        monkeypatch.setattr(launcher, name, str(value))
    return tmp_path


@pytest.mark.parametrize("name", ["0.0.0.0", "::", "", "8.8.8.8", "2001:4860:4860::8888"])
def test_wildcard_and_public_addresses_are_refused(name):
    with pytest.raises(launcher.LauncherError):
        launcher.resolve(name)


def test_addresses_and_names_resolve():
    assert launcher.resolve("127.0.0.1") == "127.0.0.1"
    assert launcher.resolve("fdaa:0:18:a7b:196:e274:9ce1:2") == "fdaa:0:18:a7b:196:e274:9ce1:2"
    assert launcher.resolve("localhost") in ("127.0.0.1", "::1")


def test_unresolvable_name_is_a_clear_error():
    with pytest.raises(launcher.LauncherError, match="cannot resolve ServerApp.ip 'no-such-host.invalid'"):
        launcher.resolve("no-such-host.invalid")


def test_ipv6_urls_are_bracketed():
    assert launcher.url_for("fdaa::2", 8888) == "http://[fdaa::2]:8888/"
    assert launcher.url_for("10.0.0.2", 8888) == "http://10.0.0.2:8888/"


def test_token_is_created_once_private_and_without_newline(home):
    assert launcher.ensure_token() is True
    token_file = home / ".jupyter" / "devbox_token"
    token = token_file.read_text()
    assert len(token) == 48 and "\n" not in token
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert launcher.ensure_token() is False
    assert token_file.read_text() == token


def test_stale_pidfile_is_not_a_running_server(home):
    os.makedirs(home / ".jupyter")
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (home / ".jupyter" / "devbox-jupyter.pid").write_text(finished.stdout)
    assert launcher.read_pid() is None


def test_settings_come_from_the_server_config(home):
    os.makedirs(home / ".jupyter")
    (home / ".jupyter" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"ip": "fly-local-6pn", "port": 9999}}))
    assert launcher.load_settings() == {"ip": "fly-local-6pn", "port": 9999}


def test_status_without_config_is_an_error_not_a_crash(home):
    with pytest.raises(launcher.LauncherError, match="cannot read"):
        launcher.status()


def test_pid_reused_by_another_process_is_not_the_server(home):
    os.makedirs(home / ".jupyter")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (home / ".jupyter" / "devbox-jupyter.pid").write_text(f"{other.pid} 1\n")  # another start time
        assert launcher.read_pid() is None
        launcher.write_pid(other.pid)
        assert launcher.read_pid() == other.pid
    finally:
        other.kill()
        other.wait()


def test_health_probe_goes_straight_to_the_server_despite_a_proxy(monkeypatch):
    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"version": "2.0.0"}).encode() if self.path == "/api" else b"{}"
            self.send_response(200 if self.path == "/api" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "")
    try:
        assert launcher.healthy("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
