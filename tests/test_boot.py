"""The image's PID 1: a fresh volume means plain sleep; SIGTERM means exit 0; every registered
service is started as the user and all are stopped at once."""
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

import pytest

import devbox_boot
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import register

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


# A service as PID 1 sees it: a launcher with start (a detached listener, as a real server), stop
# (takes STOP_DELAY seconds, as Jupyter shutting its kernels down) and a log of what it was asked.
FAKE_LAUNCHER = """#!{python}
import os, socket, subprocess, sys, time
here, action = os.path.dirname(os.path.abspath(__file__)), sys.argv[1]
pidfile = os.path.join(here, "{name}.pid")
with open(os.path.join(here, "{name}.log"), "a") as log:
    log.write(f"{{action}} as uid {{os.getuid()}}\\n")
if action == "start":
    server = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                               "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                               "s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)"],
                              start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    open(pidfile, "w").write(str(server.pid))
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", {port})) == 0:
                break
        time.sleep(0.05)
    print("started")
elif action == "stop":
    time.sleep({delay})
    os.kill(int(open(pidfile).read()), 9)
    print("stopped")
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_service(home, name, port, delay=0.0):
    launcher = home / ".local" / "bin" / f"devbox-{name}"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(FAKE_LAUNCHER.format(python=sys.executable, name=name, port=port, delay=delay))
    launcher.chmod(0o755)
    register(str(home), {"name": name, "launcher": f".local/bin/devbox-{name}", "probe": {"port": port}})
    return launcher


@pytest.fixture
def boot_log(monkeypatch):
    lines = []
    monkeypatch.setattr(devbox_boot, "log", lines.append)
    return lines


def test_every_registered_service_is_started_then_all_are_stopped_at_once(tmp_path, boot_log):
    ports = {"jupyter": free_port(), "tensorboard": free_port()}
    for name, port in ports.items():
        add_service(tmp_path, name, port, delay=2)
    (tmp_path / ".devbox" / "service-broken.json").write_text('{"name": "broken", "launcher": "/bin/sh"}')
    account = {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "home": str(tmp_path)}
    devbox_boot.run_services(account, "start", timeout=30)
    for name, port in ports.items():
        assert f"{name}: started (listening on 127.0.0.1 port {port})" in boot_log
        assert (tmp_path / ".local" / "bin" / f"{name}.log").read_text() == f"start as uid {os.getuid()}\n"
    assert any("service-broken.json skipped" in line and "launcher='/bin/sh'" in line for line in boot_log)
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
    account = {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "home": str(tmp_path)}
    devbox_boot.run_services(account, "start", timeout=30)
    started = time.monotonic()
    devbox_boot.run_services(account, "stop", timeout=2)
    assert time.monotonic() - started < 4
    assert "quick: stopped" in boot_log and "stuck: stop did not finish within 2 s" in boot_log


def test_a_service_whose_launcher_is_missing_is_logged_and_the_rest_start(tmp_path, boot_log):
    register(str(tmp_path), {"name": "gone", "launcher": ".local/bin/devbox-gone", "probe": {"port": 7007}})
    port = free_port()
    add_service(tmp_path, "here", port)
    account = {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "home": str(tmp_path)}
    devbox_boot.run_services(account, "start", timeout=30)
    assert f"gone: no launcher at {tmp_path}/.local/bin/devbox-gone yet" in boot_log
    assert f"here: started (listening on 127.0.0.1 port {port})" in boot_log
    devbox_boot.run_services(account, "stop", timeout=5)
