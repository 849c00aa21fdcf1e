"""The image's PID 1: a fresh volume means plain sleep; SIGTERM means exit 0."""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOT = os.path.join(ROOT, "boot", "devbox_boot.py")


def start_boot(home):
    env = dict(os.environ, DEVBOX_HOME=str(home), PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
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
