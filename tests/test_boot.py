"""The image's PID 1: a fresh volume means plain sleep; SIGTERM means exit 0; every registered
service is started as the user and all are stopped at once."""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import devbox_boot
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import PENDING_FILE
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import write_root_file
from test_devbox_service import add_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOT = os.path.join(ROOT, "boot", "devbox_boot.py")


def start_boot(home):
    env = dict(os.environ, DEVBOX_HOME=str(home), PYTHONPATH=os.path.join(ROOT, "playbooks", "collections"))
    return subprocess.Popen([sys.executable, BOOT], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for_line(process, text, timeout=10):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not printed; got {lines}")


def test_fresh_volume_sleeps_and_stops_cleanly_on_sigterm(tmp_path):
    process = start_boot(tmp_path)
    wait_for_line(process, "fresh volume")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_damaged_record_is_logged_and_the_machine_stays_up(tmp_path):
    (tmp_path / ".devbox").mkdir()
    (tmp_path / ".devbox" / "account.json").write_text('{"name": "bad name", "uid": 1, "gid": 1}')
    process = start_boot(tmp_path)
    wait_for_line(process, "account record is damaged")
    time.sleep(0.5)
    assert process.poll() is None, "PID 1 must keep running so the machine can be repaired"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


# The one launcher as PID 1 sees it, kept where the module keeps it (devbox_boot.LAUNCHER): NAME start (a
# detached listener, as a real server), NAME stop (takes the service's delay, as Jupyter shutting its
# kernels down), NAME restart (the two), a log of what it was asked; the ports and delays come from a file beside it.
FAKE_LAUNCHER = """#!{python}
import json, os, socket, subprocess, sys, time
here, name, action = os.path.dirname(os.path.abspath(__file__)), sys.argv[1], sys.argv[2]
port, delay = json.load(open(os.path.join(here, "services.json")))[name]
pidfile = os.path.join(here, name + ".pid")
with open(os.path.join(here, name + ".log"), "a") as log:
    log.write(f"{{action}} as uid {{os.getuid()}}\\n")
if action in ("stop", "restart"):
    time.sleep(delay)
    os.kill(int(open(pidfile).read()), 9)
    for _ in range(100):  # gone when its port no longer answers
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.05)
    if action == "stop":
        print(json.dumps({{"name": name, "action": "stopped", "pid": None}}))
if action in ("start", "restart"):
    server = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
                               "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                               "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)", str(port)],
                              start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    open(pidfile, "w").write(str(server.pid))
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    print(json.dumps({{"name": name, "action": "started", "pid": server.pid}}))
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_launcher(home):
    """The fake launcher at the path PID 1 runs; its folder."""
    launcher = home / devbox_boot.LAUNCHER
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(FAKE_LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    return launcher.parent


def add_service(home, name, port, delay=0.0):
    """A registered service and the fake launcher's settings for it; the launcher's folder."""
    here = fake_launcher(home)
    table = here / "services.json"
    services = json.loads(table.read_text()) if table.exists() else {}
    table.write_text(json.dumps(dict(services, **{name: [port, delay]})))
    add_record(home, name, port, ip="127.0.0.1")
    return here


@pytest.fixture
def boot_log(monkeypatch):
    lines = []
    monkeypatch.setattr(devbox_boot, "log", lines.append)
    return lines


def the_account(home):
    return {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "home": str(home)}


def test_every_registered_service_is_started_then_all_are_stopped_at_once(tmp_path, boot_log):
    ports = {"jupyter": free_port(), "tensorboard": free_port()}
    for name, port in ports.items():
        here = add_service(tmp_path, name, port, delay=2)
    (tmp_path / ".devbox" / "service-broken.json").write_text('{"name": "broken", "command": "/bin/sh"}')
    account = the_account(tmp_path)
    devbox_boot.run_services(account, "start", timeout=30)
    for name, port in ports.items():
        pid = int((here / f"{name}.pid").read_text())
        assert f"{name}: started, pid {pid} (listening on 127.0.0.1 port {port})" in boot_log
        assert (here / f"{name}.log").read_text() == f"start as uid {os.getuid()}\n"
    assert any("service-broken.json" in line and "not a service record of this version" in line for line in boot_log)
    started = time.monotonic()
    devbox_boot.run_services(account, "stop", timeout=devbox_boot.STOP_BUDGET_S)
    assert time.monotonic() - started < 3.5, "the services stop in parallel, not one after the other"
    assert {"jupyter: stopped", "tensorboard: stopped"} <= set(boot_log)
    for port in ports.values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "a service still listens after the stop"


def test_a_service_that_does_not_stop_in_time_does_not_hold_the_others_or_pid_1(tmp_path, boot_log):
    add_service(tmp_path, "quick", free_port())
    add_service(tmp_path, "stuck", free_port(), delay=30)
    account = the_account(tmp_path)
    devbox_boot.run_services(account, "start", timeout=30)
    started = time.monotonic()
    devbox_boot.run_services(account, "stop", timeout=2)
    assert time.monotonic() - started < 4
    assert "quick: stopped" in boot_log and "stuck: stop did not finish within 2 s" in boot_log


def test_without_the_launcher_on_the_volume_each_service_is_logged_and_pid_1_goes_on(tmp_path, boot_log):
    add_record(tmp_path, "gone", 7007, ip="127.0.0.1")
    devbox_boot.run_services(the_account(tmp_path), "start", timeout=30)
    assert boot_log == [f"gone: no launcher at {tmp_path}/{devbox_boot.LAUNCHER} yet"]


def test_the_launcher_is_the_one_the_services_module_keeps():
    from ansible_collections.devbox.machine.plugins.modules import devbox_services
    assert devbox_boot.LAUNCHER == f".devbox/{devbox_services.LAUNCHER}"
    assert devbox_boot.LAUNCHER.endswith("/plugins/module_utils/devbox_launcher.py")


def test_a_launcher_that_answers_something_else_is_shown_escaped(tmp_path, boot_log):
    here = add_service(tmp_path, "odd", free_port())
    (here / "devbox_launcher.py").write_text(f"#!{sys.executable}\nprint('\\x1b[31mred\\x07 text')\n")
    devbox_boot.run_services(the_account(tmp_path), "start", timeout=30)
    assert boot_log[0].startswith("odd: exit 0: \\x1b[31mred\\x07 text (nothing of ")


@pytest.mark.parametrize("stdout, stderr, code, text", [
    ('{"action": "started", "pid": 42}', "", 0, "started, pid 42"),
    ('{"action": "stopped", "pid": null}', "", 0, "stopped"),
    ('{"error": "refusing to listen on \'0.0.0.0\'"}', "", 1, "refusing to listen on '0.0.0.0'"),
    ('{"name": "x", "url": "http://127.0.0.1:1/", "healthy": false}', "", 3, "exit 3"),
    ('{"action": "started\\u001b[2J", "pid": 7}', "", 0, "started\\x1b[2J, pid 7"),
    ('{"action": ["started"], "error": 5, "pid": "42"}', "", 0, "exit 0"),
    ('{"action": "started", "pid": true}', "", 0, "started"),
    ('{"action": "started", "pid": 4.2}', "", 0, "started"),
    ('{"action": "started", "pid": [123]}', "", 0, "started"),
    ('["started"]', "", 0, 'exit 0: ["started"]'),
    ("", "Traceback: \x1b]0;title\x07boom\n", 1, "exit 1: Traceback: \\x1b]0;title\\x07boom"),
    ("not json\r\nat all", "", 2, "exit 2: not json\\r\\nat all"),
    ("x" * 400, "", 1, "exit 1: " + "x" * 300),
])
def test_the_launchers_answer_is_shown_as_known_fields_of_known_types_escaped(stdout, stderr, code, text):
    assert devbox_boot.answer_text(stdout, stderr, code) == text


def test_escaped_keeps_printable_text_and_escapes_control_characters():
    assert devbox_boot.escaped("jupyter: ok é") == "jupyter: ok é"
    assert devbox_boot.escaped("a\x1b[0mb\tc\x9b") == "a\\x1b[0mb\\tc\\x9b"


def full_account(home):
    return dict(the_account(home), gid=os.getgid(), shell="/bin/sh")


def before_stop_with(monkeypatch, home, command, timeout_s):
    (home / "project").mkdir(exist_ok=True)
    setting = {"minutes": 1, "before_stop": {"command": command, "timeout_s": timeout_s,
                                             "project": str(home / "project"), "venv": str(home / "venv")}}
    monkeypatch.setattr(devbox_boot, "load_setting", lambda _home: setting)
    monkeypatch.setattr(devbox_boot, "load_record", lambda _home: full_account(home))


def test_the_before_stop_command_runs_as_the_user_in_the_project_with_the_venv(tmp_path, boot_log, monkeypatch):
    before_stop_with(monkeypatch, tmp_path, 'pwd; echo "$VIRTUAL_ENV"; command -v python3; id -u; exit 3', 30)
    devbox_boot.before_stop(str(tmp_path))
    assert boot_log[1:] == [f"idle stop: before-stop: {tmp_path}/project", f"idle stop: before-stop: {tmp_path}/venv",
                            f"idle stop: before-stop: {shutil.which('python3', path=devbox_boot.SYSTEM_PATH)}",
                            f"idle stop: before-stop: {os.getuid()}",
                            "idle stop: idle_stop_before_stop exited with 3; stopping all the same"]


def test_a_hanging_before_stop_command_is_cut_at_its_limit_with_what_it_started(tmp_path, boot_log, monkeypatch):
    before_stop_with(monkeypatch, tmp_path, "echo saving; sleep 600 & echo $! > child.pid; sleep 600", 1)
    started = time.monotonic()
    devbox_boot.before_stop(str(tmp_path))
    assert time.monotonic() - started < 10
    assert "idle stop: before-stop: saving" in boot_log
    assert boot_log[-1] == ("idle stop: idle_stop_before_stop cut after 1 s (idle_stop_before_stop_timeout); "
                            "stopping all the same")
    child = int((tmp_path / "project" / "child.pid").read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"


def test_without_a_before_stop_command_nothing_runs(tmp_path, boot_log, monkeypatch):
    monkeypatch.setattr(devbox_boot, "load_setting", lambda _home: {"minutes": 1, "before_stop": None})
    devbox_boot.before_stop(str(tmp_path))
    assert boot_log == []


@pytest.fixture
def quiet_machine(tmp_path, monkeypatch, boot_log):
    """idle_long_enough on a machine where nothing is in use (Jupyter down, no GPU, no process of the user);
    the setting and the hold as the test says, the state file in tmp_path; the terminals told, recorded."""
    told = []
    machine = {"setting": {"minutes": 1, "warn_minutes": 5, "gpu_percent": 10, "since": 0.0, "before_stop": None},
               "held_until": 0.0, "told": told, "state": tmp_path / "state"}
    monkeypatch.setattr(devbox_boot, "load_setting", lambda _home: machine["setting"])
    monkeypatch.setattr(devbox_boot, "load_record", lambda _home: full_account(tmp_path))
    monkeypatch.setattr(devbox_boot, "run_as", lambda *args, **kwargs: None)
    monkeypatch.setattr(devbox_boot, "load_all", lambda _home: ([], []))
    monkeypatch.setattr(devbox_boot, "processes", dict)
    monkeypatch.setattr(devbox_boot, "find_nvidia_smi", lambda: None)
    monkeypatch.setattr(devbox_boot, "read_stay_up", lambda _home, _uid: machine["held_until"])
    monkeypatch.setattr(devbox_boot, "tell_terminals", lambda uid, message, table: told.append(message) or 2)
    monkeypatch.setattr(devbox_boot, "write_state", lambda record: machine["state"].write_text(json.dumps(record)))
    return machine


def test_idle_stop_counts_from_when_it_was_turned_on_warns_once_then_stops(tmp_path, boot_log, quiet_machine):
    clock = devbox_boot.IdleClock(time.time() - 3600)  # booted an hour ago
    quiet_machine["setting"]["since"] = time.time() - 10  # turned on 10 s ago
    assert not devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert 0 <= clock.idle_for(time.time()) < 20
    assert boot_log[0] == "idle stop: quiet; stopping after 1 min of this"
    assert "stopping at" in boot_log[1] and "told 2 terminal(s)" in boot_log[1]
    assert len(quiet_machine["told"]) == 1 and "devbox-stay-up 2h" in quiet_machine["told"][0]
    assert not devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert len(quiet_machine["told"]) == 1, "one warning per quiet spell"
    assert json.loads(quiet_machine["state"].read_text())["stops_at"] > time.time()
    clock.quiet_since -= 120
    quiet_machine["setting"]["since"] -= 120
    assert devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert boot_log[-1].startswith("idle stop: nobody used the machine for 2 min (idle_stop_minutes=1)")


def test_a_hold_keeps_the_machine_up_and_its_end_starts_the_clock_afresh(tmp_path, boot_log, quiet_machine):
    clock = devbox_boot.IdleClock(time.time() - 3600)
    quiet_machine["held_until"] = time.time() + 600
    assert not devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert boot_log[0].startswith("idle stop: in use (held off by devbox-stay-up until ")
    assert json.loads(quiet_machine["state"].read_text())["held_until"] == quiet_machine["held_until"]
    assert quiet_machine["told"] == []
    quiet_machine["held_until"] = 0.0  # devbox-stay-up off
    assert not devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert boot_log[-2] == "idle stop: quiet; stopping after 1 min of this" and clock.idle_for(time.time()) < 20


def test_with_idle_stop_off_the_clock_stays_at_now(tmp_path, boot_log, quiet_machine):
    quiet_machine["setting"]["minutes"] = 0
    clock = devbox_boot.IdleClock(time.time() - 3600)
    assert not devbox_boot.idle_long_enough(str(tmp_path), clock)
    assert clock.idle_for(time.time()) < 5 and boot_log == []


# --- the restart a busy kernel put off, done by PID 1 once no kernel is busy ---

SPARED = {"reasons": ["Jupyter's settings changed"], "pid": 4242}


@pytest.fixture
def pending_machine(tmp_path, monkeypatch):
    """A provisioned home with Jupyter registered (the fake launcher serving it) and its restart left pending for
    the server SPARED names; Jupyter's view of its use as the test sets it; the launcher's log."""
    here = add_service(tmp_path, "jupyter", free_port())
    monkeypatch.setattr(devbox_boot, "load_record", lambda _home: full_account(tmp_path))
    write_root_file(str(tmp_path), PENDING_FILE, json.dumps({"jupyter": SPARED}))
    machine = {"activity": {"pid": 4242, "busy_kernels": ["train.ipynb"], "last_activity": 0.0, "connections": 0},
               "asked": 0, "launcher_log": here / "jupyter.log", "record": tmp_path / ".devbox" / PENDING_FILE,
               "watch": devbox_boot.PendingWatch(), "fresh": 0, "busy_again": []}

    def ask(user, fresh=False):
        machine["asked"] += 1
        machine["fresh"] += fresh
        assert user == full_account(tmp_path)["name"]
        activity = machine["activity"]
        if fresh and machine["busy_again"]:
            activity = dict(activity, busy_kernels=machine["busy_again"])
        return activity, None

    machine["look"] = lambda: devbox_boot.restart_if_pending(str(tmp_path), ask, machine["watch"])
    launcher, user = str(tmp_path / devbox_boot.LAUNCHER), full_account(tmp_path)["name"]
    assert devbox_boot.run_launcher(user, launcher, "jupyter", "start", 30)[0]
    machine["launcher_log"].unlink()
    yield machine
    try:
        os.kill(int((here / "jupyter.pid").read_text()), signal.SIGKILL)  # the fake server, whatever its launcher
    except ProcessLookupError:
        pass


def test_a_pending_restart_waits_while_a_kernel_is_busy_and_says_so_once(pending_machine, boot_log):
    pending_machine["look"]()
    pending_machine["look"]()
    assert boot_log == ["jupyter: restart pending (Jupyter's settings changed); waits while 1 kernel busy "
                        "(train.ipynb)"]
    assert not pending_machine["launcher_log"].exists() and pending_machine["record"].exists()


def test_once_no_kernel_is_busy_pid_1_restarts_jupyter_with_the_launcher_and_drops_the_record(pending_machine,
                                                                                             boot_log):
    pending_machine["look"]()
    pending_machine["activity"]["busy_kernels"] = []
    pending_machine["look"]()
    assert pending_machine["launcher_log"].read_text() == f"restart as uid {os.getuid()}\n"
    pid = int((pending_machine["launcher_log"].parent / "jupyter.pid").read_text())
    assert boot_log[-1] == (f"jupyter: restart pending (Jupyter's settings changed), no kernel busy now: started, "
                            f"pid {pid}")
    assert not pending_machine["record"].exists()
    assert pending_machine["fresh"] == 1, "asked again right before the restart"
    pending_machine["look"]()
    assert len(boot_log) == 2 and pending_machine["asked"] == 3, "no record: Jupyter is not asked"


def test_a_kernel_busy_again_when_asked_right_before_the_restart_puts_it_off_again(pending_machine, boot_log):
    pending_machine["activity"]["busy_kernels"] = []
    pending_machine["busy_again"] = ["train.ipynb"]  # a cell started since the look's answer
    pending_machine["look"]()
    assert not pending_machine["launcher_log"].exists() and pending_machine["record"].exists()
    assert boot_log == ["jupyter: restart pending (Jupyter's settings changed); waits while 1 kernel busy "
                        "(train.ipynb)"]


def test_when_the_spared_server_is_gone_the_record_goes_without_a_restart(pending_machine, boot_log):
    pending_machine["activity"]["pid"] = 4343  # restarted since (devbox-service jupyter restart, a reboot)
    pending_machine["look"]()
    assert not pending_machine["launcher_log"].exists() and not pending_machine["record"].exists()
    assert boot_log == ["jupyter: restart pending (Jupyter's settings changed) no more: the server it spared is "
                        "gone, a restart since read the settings"]


def test_a_restart_that_fails_keeps_the_record_for_the_next_look(pending_machine, boot_log):
    pending_machine["activity"]["busy_kernels"] = []
    (pending_machine["launcher_log"].parent / "devbox_launcher.py").write_text(
        f"#!{sys.executable}\nprint('{{\"error\": \"waited 120 s for the lock\"}}'); raise SystemExit(1)\n")
    pending_machine["look"]()
    assert boot_log == ["jupyter: restart pending (Jupyter's settings changed), no kernel busy now: waited 120 s "
                        "for the lock; tried again at the next look"]
    assert pending_machine["record"].exists()


def test_a_pending_record_not_root_s_own_is_not_used_and_said_once(pending_machine, boot_log):
    pending_machine["activity"]["busy_kernels"] = []
    os.chown(pending_machine["record"], 1000, 1000)
    pending_machine["look"]()
    pending_machine["look"]()
    assert len(boot_log) == 1 and boot_log[0].startswith("restart record not used: ")
    assert "not a root-owned file" in boot_log[0]
    assert pending_machine["asked"] == 0 and not pending_machine["launcher_log"].exists()


def test_one_look_asks_jupyter_once_for_idle_stop_and_the_pending_restart(tmp_path, monkeypatch, quiet_machine):
    asked = []
    monkeypatch.setattr(devbox_boot, "run_as", lambda user, work, *args, **kwargs: asked.append(work) or None)
    look = devbox_boot.JupyterLook(str(tmp_path))
    devbox_boot.idle_long_enough(str(tmp_path), devbox_boot.IdleClock(time.time()), look)
    assert look("anyone") == (None, None)
    assert asked == [devbox_boot.jupyter_activity]
