"""The Jupyter launcher's parts, against real processes and sockets; the real server is exercised
by the Molecule scenarios and tests/lifecycle/test_hardening.py."""
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_address
import devbox_jupyter_launcher as launcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A listener that answers /api like Jupyter: what a squatter on the port would run.
FAKE_SERVER = """
import http.server, json, sys
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(json.dumps({"version": "2.0.0"}).encode())
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Api)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    config = tmp_path / ".jupyter"
    for name, value in {"CONFIG_DIR": config, "CONFIG_FILE": config / "jupyter_server_config.json",
                        "TOKEN_FILE": config / "devbox_token", "PID_FILE": config / "devbox-jupyter.pid",
                        "LOG_FILE": config / "devbox-jupyter.log",
                        "RUNTIME_DIR": tmp_path / ".local" / "share" / "jupyter" / "runtime"}.items():
        monkeypatch.setattr(launcher, name, str(value))
    return tmp_path


@pytest.mark.parametrize("name", ["0.0.0.0", "0", "0x0", "::", "[::]", "::ffff:0.0.0.0", "*", "", "8.8.8.8",
                                  "2001:4860:4860::8888", "127.0.0.1 x", "224.0.0.1"])
def test_wildcard_and_public_addresses_are_refused(name):
    with pytest.raises(launcher.LauncherError):
        launcher.resolve(name)


@pytest.mark.parametrize("name", ["0", "0.0.0.0", "::", "[::]", "::ffff:0.0.0.0", "*", "", " ", "8.8.8.8", "127.1",
                                  "::1", "10.0.0.2", "[fdaa::2]", "fe80::1%eth0", "100.64.0.1", "localhost",
                                  "no-such-host.invalid", "a..b", "1.2.3.4.5", "255.255.255.255", "ff02::1"])
def test_the_launcher_and_the_module_apply_the_same_rule(name):
    try:
        launcher.resolve(name)
        refused_here = False
    except launcher.LauncherError:
        refused_here = True
    assert refused_here == (devbox_address.listen_address_problem(name) is not None)


def test_alone_on_the_volume_it_runs_the_modules_files_kept_in_the_homes_devbox_folder(tmp_path):
    """As the boot step runs it: a file of its own, HOME the user's, the libraries only under ~/.devbox/lib, imported
    by the collection's name."""
    run = [sys.executable, "-I", os.path.join(ROOT, "roles", "jupyter", "files", "devbox_jupyter_launcher.py"),
           "status"]
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    missing = subprocess.run(run, capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert missing.returncode != 0 and "No module named 'ansible_collections" in missing.stderr, missing.stderr
    library = tmp_path / ".devbox" / "lib" / "ansible_collections" / "devbox" / "machine" / "plugins" / "module_utils"
    library.mkdir(parents=True)
    for name in ("devbox_address.py", "devbox_launcher.py"):
        shutil.copy(os.path.join(ROOT, "plugins", "module_utils", name), library / name)
    alone = subprocess.run(run, capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert alone.returncode == 1 and "cannot read" in json.loads(alone.stdout)["error"], alone.stdout + alone.stderr


def test_addresses_and_names_resolve():
    assert launcher.resolve("127.0.0.1") == "127.0.0.1"
    assert launcher.resolve("fdaa:0:18:a7b:196:e274:9ce1:2") == "fdaa:0:18:a7b:196:e274:9ce1:2"
    assert launcher.resolve("localhost") in ("127.0.0.1", "::1")


def test_unresolvable_name_is_a_clear_error():
    with pytest.raises(launcher.LauncherError, match="'no-such-host.invalid' does not resolve"):
        launcher.resolve("no-such-host.invalid")


def test_ipv6_urls_are_bracketed():
    assert launcher.url_for("fdaa::2", 8888) == "http://[fdaa::2]:8888/"
    assert launcher.url_for("10.0.0.2", 8888) == "http://10.0.0.2:8888/"


@pytest.mark.parametrize("junk", ["", "\n", "short", "a" * 40 + "\n", "has spaces " * 4, "'" + "a" * 40 + "'"])
def test_an_empty_or_junk_token_file_is_replaced(home, junk):
    os.makedirs(home / ".jupyter")
    (home / ".jupyter" / "devbox_token").write_text(junk)
    assert launcher.read_token() is None
    assert launcher.ensure_token() is True
    token = (home / ".jupyter" / "devbox_token").read_text()
    assert launcher.TOKEN_PATTERN.fullmatch(token) and launcher.read_token() == token


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
    assert launcher.read_pid(launcher.PID_FILE) is None


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
        assert launcher.read_pid(launcher.PID_FILE) is None
        launcher.write_pid(launcher.PID_FILE, other.pid)
        assert launcher.read_pid(launcher.PID_FILE) == other.pid
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


@pytest.fixture
def fake_server():
    """Start the squatter-like listener as a given uid; yields (process, port)."""
    started = []

    def start(uid=None):
        # The system Python: the test venv may not be readable by another user.
        python = "/usr/bin/python3" if uid is not None else sys.executable
        process = subprocess.Popen([python, "-c", FAKE_SERVER], stdout=subprocess.PIPE, text=True,
                                   user=uid, start_new_session=True)
        started.append(process)
        return process, int(process.stdout.readline())

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_port_held_by_another_user_is_an_error_naming_that_user(home, fake_server):
    process, port = fake_server(uid=65534)
    with pytest.raises(launcher.LauncherError, match=r"held by another process of user nobody \(uid 65534\)"):
        launcher.our_server("127.0.0.1", port)


def test_a_port_held_by_a_process_of_ours_that_is_not_jupyter_is_an_error_naming_it(home, fake_server):
    process, port = fake_server()
    with pytest.raises(launcher.LauncherError, match=rf"held by pid {process.pid} \(.*python"):
        launcher.our_server("127.0.0.1", port)


def test_our_server_is_known_by_the_pidfile_or_by_jupyters_runtime_file(home, fake_server):
    process, port = fake_server()
    os.makedirs(home / ".jupyter")
    launcher.write_pid(launcher.PID_FILE, process.pid)
    assert launcher.our_server("127.0.0.1", port) == process.pid
    os.remove(home / ".jupyter" / "devbox-jupyter.pid")
    runtime = home / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    assert launcher.our_server("127.0.0.1", port) == process.pid
    assert launcher.our_server("127.0.0.1", port + 1 if port < 65535 else port - 1) is None


def test_stop_without_a_pidfile_stops_our_server_on_the_configured_port(home, fake_server):
    process, port = fake_server()
    os.makedirs(home / ".jupyter")
    (home / ".jupyter" / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"ip": "127.0.0.1",
                                                                                             "port": port}}))
    runtime = home / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    outcome = launcher.stop()
    assert outcome == {"action": "stopped", "pid": process.pid}
    assert process.wait(timeout=5) is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing listens any more"


def test_stop_leaves_another_users_server_alone(home, fake_server):
    process, port = fake_server(uid=65534)
    os.makedirs(home / ".jupyter")
    (home / ".jupyter" / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"ip": "127.0.0.1",
                                                                                             "port": port}}))
    assert launcher.stop() == {"action": "not running", "pid": None}
    time.sleep(0.2)
    assert process.poll() is None
