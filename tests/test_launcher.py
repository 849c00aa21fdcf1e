"""The one launcher (plugins/module_utils/devbox_launcher.py), against real processes and sockets: the
records are registered into a temporary home, the servers are small Python ones. The real Jupyter
and TensorBoard are exercised by the Molecule scenarios and tests/lifecycle/."""
import fcntl
import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import devbox_boot
from ansible_collections.devbox.machine.plugins.module_utils import devbox_address
from ansible_collections.devbox.machine.plugins.module_utils import devbox_launcher as launcher
from test_devbox_service import add_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = shutil.which("python3", path=launcher.SYSTEM_PATH)

# A listener that answers /api/status like Jupyter: 200 with the token its token file held at its start (any
# request when it has none). argv: port, token file. What a squatter, or an earlier Jupyter, would run.
FAKE_JUPYTER = """
import http.server, sys
port, token_file = int(sys.argv[1]), sys.argv[2]
try:
    token = open(token_file).read()
except OSError:
    token = None
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        good = token is None or self.headers.get("Authorization") == "token " + token
        self.send_response(200 if good else 403); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Api)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
# A small server that writes the environment it was given to env.json in its folder first.
ENV_SERVER = ("import http.server, json, os, sys; json.dump(dict(os.environ), open('env.json', 'w')); "
              "http.server.HTTPServer((sys.argv[2], int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)"
              ".serve_forever()")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def home(tmp_path):
    (tmp_path / launcher.STATE_DIR).mkdir(parents=True)
    return tmp_path


def service(home, name, port, **fields):
    """Register the service into the home (as the module does) and return the launcher's view of it."""
    add_record(home, name, port, **dict({"ip": "127.0.0.1"}, **fields))
    return launcher.Service(str(home), name)


@pytest.fixture
def fake_jupyter():
    """Start the Jupyter-like listener (as a given uid); yields start(port=0, token_file='', uid=None) -> (process, port)."""
    started = []

    def start(port=0, token_file="", uid=None):
        process = subprocess.Popen([PYTHON, "-c", FAKE_JUPYTER, str(port), token_file], stdout=subprocess.PIPE,
                                   text=True, user=uid, start_new_session=True)
        started.append(process)
        return process, int(process.stdout.readline())

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def as_home(home, monkeypatch):
    """The launcher's main() takes the home from the password database: this user's entry, with the temp home."""
    real = pwd.getpwuid(os.getuid())
    entry = pwd.struct_passwd((real.pw_name, real.pw_passwd, real.pw_uid, real.pw_gid, real.pw_gecos, str(home),
                               real.pw_shell))
    monkeypatch.setattr(launcher.pwd, "getpwuid", lambda uid: entry)
    return home


def run_main(capsys, *argv):
    code = launcher.main(list(argv))
    return code, json.loads(capsys.readouterr().out)


# --- the address ---

@pytest.mark.parametrize("name", ["0.0.0.0", "0", "0x0", "::", "[::]", "::ffff:0.0.0.0", "*", "", "8.8.8.8",
                                  "2001:4860:4860::8888", "127.0.0.1 x", "224.0.0.1"])
def test_wildcard_and_public_addresses_are_refused(name):
    with pytest.raises(launcher.LauncherError, match="refusing to listen on"):
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


def test_addresses_and_names_resolve():
    assert launcher.resolve("127.0.0.1") == "127.0.0.1"
    assert launcher.resolve("fdaa:0:18:a7b:196:e274:9ce1:2") == "fdaa:0:18:a7b:196:e274:9ce1:2"
    assert launcher.resolve("localhost") in ("127.0.0.1", "::1")


def test_unresolvable_name_is_a_clear_error():
    with pytest.raises(launcher.LauncherError, match="'no-such-host.invalid'.*does not resolve"):
        launcher.resolve("no-such-host.invalid")


def test_ipv6_urls_are_bracketed():
    assert launcher.url_for("fdaa::2", 8888) == "http://[fdaa::2]:8888/"
    assert launcher.url_for("10.0.0.2", 8888) == "http://10.0.0.2:8888/"


def test_a_wildcard_in_the_record_is_refused_before_anything_starts(home):
    web = service(home, "web", free_port(), ip="0.0.0.0")
    with pytest.raises(launcher.LauncherError, match="refusing to listen on '0.0.0.0'"):
        launcher.start(web)
    assert not (home / "project").exists(), "nothing happens before the address is checked"


# --- as a file on the volume ---

def test_alone_on_the_volume_it_runs_with_the_libraries_the_action_sends(tmp_path):
    """As PID 1 and the module run it: a file of its own under ~/.devbox/lib, isolated (-I), importing only the
    libraries the devbox_services action sends beside it (plugins/action/devbox_services.py LIBRARIES)."""
    from ansible_collections.devbox.machine.plugins.action.devbox_services import LIBRARIES
    lib = tmp_path / "lib" / "ansible_collections" / "devbox" / "machine" / "plugins" / "module_utils"
    lib.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "plugins", "module_utils", "devbox_launcher.py"), lib)
    run = [PYTHON, "-I", str(lib / "devbox_launcher.py"), "devbox-test-unregistered", "status"]
    env = {"PATH": os.environ["PATH"]}
    missing = subprocess.run(run, capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert missing.returncode != 0 and "No module named 'ansible_collections" in missing.stderr, missing.stderr
    for name in LIBRARIES:
        shutil.copy(os.path.join(ROOT, "plugins", "module_utils", name), lib / name)
    alone = subprocess.run(run, capture_output=True, text=True, env=env, cwd=str(tmp_path))
    # The home is the user's from the password database: nothing is registered under this name there.
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "the service 'devbox-test-unregistered' is not registered" in json.loads(alone.stdout)["error"]


def test_an_unregistered_service_is_an_error_not_a_crash(as_home, capsys):
    code, answer = run_main(capsys, "nothing", "status")
    assert code == 1 and "the service 'nothing' is not registered" in answer["error"]


# --- start, status, stop ---

def test_start_status_stop_of_a_small_server_in_a_clean_environment(as_home, capsys, monkeypatch):
    monkeypatch.setenv("ANSIBLE_SECRET", "from the playbook")
    monkeypatch.setenv("DEVBOX_HOME", "/elsewhere")
    port = free_port()
    add_record(as_home, "web", port, ip="127.0.0.1", command=["python3", "-c", ENV_SERVER, "{port}", "{ip}"],
               env={"MY_SETTING": "on"})
    code, answer = run_main(capsys, "web", "start")
    assert code == 0 and answer["action"] == "started", answer
    assert answer["healthy"] is True and answer["running"] is True and answer["url"] == f"http://127.0.0.1:{port}/"
    pid = answer["pid"]
    assert launcher.read_pid(str(as_home / launcher.STATE_DIR / "web.pid")) == pid
    assert "--- web start " in (as_home / launcher.STATE_DIR / "web.log").read_text()
    env = json.loads((as_home / "project" / "env.json").read_text())  # cwd: {project}, made by the start
    assert env["HOME"] == str(as_home) and env["MY_SETTING"] == "on" and env["LANG"] == "C.UTF-8"
    assert env["PATH"].startswith(f"{as_home}/venv/bin:") and env["VIRTUAL_ENV"] == f"{as_home}/venv"
    assert "ANSIBLE_SECRET" not in env and "DEVBOX_HOME" not in env and "PYTEST_CURRENT_TEST" not in env
    assert not any(key.startswith("JUPYTER_") for key in env), "Jupyter's variables are Jupyter's only"

    assert run_main(capsys, "web", "start")[1]["action"] == "already running"
    code, answer = run_main(capsys, "web", "status")
    assert code == 0 and (answer["pid"], answer["healthy"]) == (pid, True)
    code, answer = run_main(capsys, "web", "restart")
    assert code == 0 and answer["action"] == "started" and answer["pid"] != pid
    code, answer = run_main(capsys, "web", "stop")
    assert code == 0 and answer == {"name": "web", "action": "stopped", "pid": answer["pid"]}
    code, answer = run_main(capsys, "web", "status")
    assert code == 3 and answer["running"] is False and answer["healthy"] is False
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing listens any more"
    assert run_main(capsys, "web", "stop")[1]["action"] == "not running"


def test_a_program_that_is_not_installed_says_to_list_its_package(home):
    web = service(home, "web", free_port(), command=["devbox-no-such-program", "{port}"])
    with pytest.raises(launcher.LauncherError, match=r"devbox-no-such-program is not an installed program "
                                                     r"\(looked in .*/venv/bin and .*list its package"):
        launcher.start(web)


def test_a_server_that_exits_at_once_is_an_error_with_its_log(home):
    web = service(home, "web", free_port(), command=["python3", "-c", "import sys; print('no luck'); sys.exit(3)"])
    with pytest.raises(launcher.LauncherError, match=r"(?s)web exited with status 3.*no luck"):
        launcher.start(web)


def test_the_venvs_program_comes_first_and_placeholders_are_filled_in(home):
    (home / "venv" / "bin").mkdir(parents=True)
    program = home / "venv" / "bin" / "streamlit"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    app = service(home, "app", 8501, command=["streamlit", "run", "{project}/app.py", "--port", "{port}", "{ip}"],
                  cwd="{home}/work")
    assert app.argv() == [str(program), "run", f"{home}/project/app.py", "--port", "8501", "127.0.0.1"]
    assert app.cwd() == f"{home}/work"
    assert service(home, "sys", 8502, command=["python3"]).argv() == [PYTHON]


# --- whose port ---

def test_a_port_held_by_another_user_is_an_error_naming_that_user(home, fake_jupyter):
    process, port = fake_jupyter(uid=65534)
    web = service(home, "web", port)
    with pytest.raises(launcher.LauncherError, match=r"held by another process of user nobody \(uid 65534\)"):
        launcher.our_server(web)
    with pytest.raises(launcher.LauncherError, match="not web's; stop it or give web another port"):
        launcher.start(web)
    assert launcher.stop(web) == {"name": "web", "action": "not running", "pid": None}
    time.sleep(0.2)
    assert process.poll() is None, "another user's server is left alone"
    assert launcher.status(web)["running"] is False and "held by another process" in launcher.status(web)["error"]


def test_a_port_held_by_a_process_of_ours_that_is_not_the_service_is_an_error_naming_it(home, fake_jupyter):
    process, port = fake_jupyter()
    for name in ("web", "jupyter"):
        with pytest.raises(launcher.LauncherError, match=rf"held by pid {process.pid} \(.*python"):
            launcher.our_server(service(home, name, port))


def test_a_process_running_exactly_the_services_command_is_the_service(home):
    port = free_port()
    web = service(home, "web", port)
    process = subprocess.Popen(web.argv(), cwd=str(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if launcher.listening_sockets(port):
                break
            time.sleep(0.05)
        assert launcher.our_server(web) == process.pid
    finally:
        process.kill()
        process.wait()


def test_our_jupyter_is_known_by_the_pidfile_or_by_jupyters_runtime_file(home, fake_jupyter):
    process, port = fake_jupyter()
    jupyter = service(home, "jupyter", port)
    launcher.write_pid(jupyter.pid_file, process.pid)
    assert launcher.our_server(jupyter) == process.pid
    os.remove(jupyter.pid_file)
    runtime = home / launcher.JUPYTER_RUNTIME_DIR
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    assert launcher.our_server(jupyter) == process.pid
    other_port = port + 1 if port < 65535 else port - 1
    assert launcher.our_server(service(home, "jupyter", other_port)) is None
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": other_port}))
    with pytest.raises(launcher.LauncherError, match="held by pid"):
        launcher.our_server(service(home, "jupyter", port))


def test_a_jupyter_named_by_its_runtime_file_is_taken_over_with_its_token(home, fake_jupyter):
    jupyter = service(home, "jupyter", 8888)
    launcher.ensure_token(jupyter)
    process, port = fake_jupyter(token_file=jupyter.token_file)
    jupyter = service(home, "jupyter", port)
    runtime = home / launcher.JUPYTER_RUNTIME_DIR
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    answer = launcher.start(jupyter)
    assert (answer["action"], answer["pid"], answer["healthy"]) == ("already running", process.pid, True)
    assert launcher.read_pid(jupyter.pid_file) == process.pid, "taken over: known by the pidfile from now on"
    assert process.poll() is None, "its kernels live on"


def test_a_jupyter_serving_another_token_is_restarted(home, fake_jupyter):
    port = free_port()
    (home / "fake_jupyter.py").write_text(FAKE_JUPYTER)  # a command is words without line breaks
    command = ["python3", "{home}/fake_jupyter.py", "{port}", "{home}/.jupyter/devbox_token"]
    jupyter = service(home, "jupyter", port, command=command)
    old_token = home / "old_token"
    old_token.write_text("o" * 48)
    process, _ = fake_jupyter(port=port, token_file=str(old_token))
    runtime = home / launcher.JUPYTER_RUNTIME_DIR
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    try:
        answer = launcher.start(jupyter)
        assert answer["action"] == "started" and answer["pid"] != process.pid and answer["healthy"] is True
        assert process.wait(timeout=5) is not None, "the server with the other token was stopped"
        assert launcher.healthy(jupyter)
    finally:
        launcher.stop(jupyter)


def test_stop_without_a_pidfile_stops_our_jupyter_named_by_its_runtime_file(home, fake_jupyter):
    process, port = fake_jupyter()
    jupyter = service(home, "jupyter", port)
    runtime = home / launcher.JUPYTER_RUNTIME_DIR
    runtime.mkdir(parents=True)
    (runtime / f"jpserver-{process.pid}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    assert launcher.stop(jupyter) == {"name": "jupyter", "action": "stopped", "pid": process.pid}
    assert process.wait(timeout=5) is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing listens any more"


# --- Jupyter's token ---

@pytest.mark.parametrize("junk", ["", "\n", "short", "a" * 40 + "\n", "has spaces " * 4, "'" + "a" * 40 + "'"])
def test_an_empty_or_junk_token_file_is_replaced(home, junk):
    jupyter = service(home, "jupyter", 8888)
    os.makedirs(home / ".jupyter")
    (home / ".jupyter" / "devbox_token").write_text(junk)
    assert launcher.read_token(jupyter) is None
    launcher.ensure_token(jupyter)
    token = (home / ".jupyter" / "devbox_token").read_text()
    assert launcher.TOKEN_PATTERN.fullmatch(token) and launcher.read_token(jupyter) == token


def test_token_is_created_once_private_and_without_newline(home):
    jupyter = service(home, "jupyter", 8888)
    launcher.ensure_token(jupyter)
    token_file = home / ".jupyter" / "devbox_token"
    token = token_file.read_text()
    assert len(token) == 48 and "\n" not in token
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert oct((home / ".jupyter").stat().st_mode & 0o777) == "0o700"
    launcher.ensure_token(jupyter)
    assert token_file.read_text() == token, "a usable token is kept"


def test_jupyters_environment_names_its_token_file_and_runtime_dir(home):
    env = service(home, "jupyter", 8888, env={"LANG": "en_GB.UTF-8"}).environment()
    assert env["JUPYTER_TOKEN_FILE"] == f"{home}/.jupyter/devbox_token"
    assert env["JUPYTER_RUNTIME_DIR"] == f"{home}/{launcher.JUPYTER_RUNTIME_DIR}"
    assert env["LANG"] == "en_GB.UTF-8", "the record's env comes last"
    assert env["JUPYTER_PREFER_ENV_PATH"] == "0", "the user's kernel specs (the project's) before its own venv's"
    assert set(env) == {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "VIRTUAL_ENV", "LANG", "JUPYTER_TOKEN_FILE",
                        "JUPYTER_RUNTIME_DIR", "JUPYTER_PREFER_ENV_PATH"}


def test_a_service_of_its_own_venv_runs_its_program_from_there_with_the_project_venv_active(home):
    own = home / "services" / "tool" / "bin"
    own.mkdir(parents=True)
    (own / "tool").write_text("#!/bin/sh\n")
    (own / "tool").chmod(0o755)
    tool = service(home, "tool", 8700, command=["tool", "--port", "{port}", "{venv}"], venv="own")
    assert tool.argv() == [str(own / "tool"), "--port", "8700", f"{home}/services/tool"]
    env = tool.environment()
    assert env["PATH"].startswith(f"{home}/venv/bin:{home}/services/tool/bin:"), "a terminal it opens: the user's venv"
    assert env["VIRTUAL_ENV"] == f"{home}/venv"


def test_the_health_probe_uses_the_token_and_goes_straight_to_the_server_despite_a_proxy(home, monkeypatch):
    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            good = self.path == "/api/status" and self.headers.get("Authorization") == "token " + "t" * 40
            ok = good or self.path == "/health"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "")
    try:
        port = server.server_address[1]
        jupyter = service(home, "jupyter", port)
        (home / ".jupyter").mkdir()
        (home / ".jupyter" / "devbox_token").write_text("t" * 40)
        assert launcher.healthy(jupyter)
        (home / ".jupyter" / "devbox_token").write_text("u" * 40)
        assert not launcher.healthy(jupyter), "a server that serves another token is not healthy"
        assert launcher.healthy(service(home, "web", port, health="/health"))
        assert not launcher.healthy(service(home, "web", port, health="/other"))
        assert launcher.healthy(service(home, "web", port)), "without a health path, listening is enough"
    finally:
        server.shutdown()


# --- pidfile and lock ---

def test_stale_pidfile_is_not_a_running_server(home):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid_file = home / launcher.STATE_DIR / "web.pid"
    pid_file.write_text(finished.stdout)
    assert launcher.read_pid(str(pid_file)) is None
    web = service(home, "web", free_port())
    pid_file.write_text(f"{os.getpid()} 1\n")  # our pid, another start time: reused
    assert launcher.stop(web) == {"name": "web", "action": "not running", "pid": None}


def test_pid_reused_by_another_process_is_not_the_server(home):
    pid_file = str(home / launcher.STATE_DIR / "web.pid")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with open(pid_file, "w") as out:
            out.write(f"{other.pid} 1\n")  # another start time
        assert launcher.read_pid(pid_file) is None
        launcher.write_pid(pid_file, other.pid)
        assert launcher.read_pid(pid_file) == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_held_lock_is_waited_for_at_most_the_time_limit(as_home, capsys, monkeypatch):
    add_record(as_home, "web", free_port(), ip="127.0.0.1")
    monkeypatch.setattr(launcher, "LOCK_TIMEOUT_S", 0.5)
    lock_file = as_home / launcher.STATE_DIR / "web.lock"
    with open(lock_file, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        code, answer = run_main(capsys, "web", "status")
        assert 0.5 <= time.monotonic() - started < 5
        assert code == 1 and f"waited 0.5 s for the lock {lock_file}" in answer["error"]
    code, answer = run_main(capsys, "web", "status")
    assert code == 3 and answer["running"] is False, "once let go, the lock is taken"


def test_it_stops_inside_pid_1s_budget():
    assert launcher.STOP_TIMEOUT_S < devbox_boot.STOP_BUDGET_S
