"""Idle stop's judgement: what counts as use, and since when the machine is quiet."""
import os

from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import IdleClock, in_use, timestamp, user_sessions

USER = 1000
# pid: (parent, uid, name): PID 1, Jupyter (detached, child of PID 1) with a kernel and a
# terminal's shell, root's sshd, and the user's shell under it.
TABLE = {1: (0, 0, "devbox-boot"), 40: (1, USER, "jupyter-lab"), 41: (40, USER, "python3"),
         42: (40, USER, "bash"), 50: (1, 0, "sshd"), 51: (50, USER, "bash")}
QUIET = {"last_activity": 1000.0, "connections": 0, "busy_kernels": 0, "terminals": 0}


def test_sessions_are_the_users_processes_outside_jupyter():
    assert user_sessions(USER, 40, TABLE) == ["bash (51)"]
    assert user_sessions(USER, 40, {pid: row for pid, row in TABLE.items() if pid != 51}) == []
    assert user_sessions(USER, None, TABLE) == ["jupyter-lab (40)", "python3 (41)", "bash (42)", "bash (51)"]


def test_sessions_survive_a_loop_in_the_table():
    assert user_sessions(USER, 40, {7: (8, USER, "a"), 8: (7, USER, "b")}) == ["a (7)", "b (8)"]


def test_this_machine_has_processes_the_scan_can_read():
    assert f"({os.getpid()})" in " ".join(user_sessions(os.getuid(), None))


def test_what_counts_as_use():
    assert in_use(QUIET, []) is None
    assert in_use(None, []) is None  # Jupyter down and nobody logged in
    assert "busy" in in_use(dict(QUIET, busy_kernels=1), [])
    assert "connection" in in_use(dict(QUIET, connections=2), [])
    assert "terminal" in in_use(dict(QUIET, terminals=1), [])
    assert "bash (51)" in in_use(QUIET, ["bash (51)"])


def test_clock_restarts_on_use_and_follows_jupyters_last_activity():
    clock = IdleClock(now=0.0)
    assert clock.observe(500.0, dict(QUIET, last_activity=400.0), []) is None
    assert clock.idle_for(500.0) == 100.0  # an API call at 400 (a browser tab polling)
    assert clock.observe(600.0, dict(QUIET, busy_kernels=1), []) is not None
    assert clock.idle_for(700.0) == 100.0
    clock.observe(800.0, None, [])
    assert clock.idle_for(800.0) == 200.0


def test_jupyter_times_are_utc():
    assert timestamp("1970-01-01T00:01:00.000000Z") == 60.0


def test_the_clock_remembers_why_the_machine_was_in_use():
    clock = IdleClock(now=0.0)
    clock.observe(1.0, dict(QUIET, busy_kernels=1), [])
    assert clock.reason == "1 kernel(s) busy"
    clock.observe(2.0, QUIET, [])
    assert clock.reason is None


def test_a_zombie_is_nobodys_session():
    import subprocess
    import time
    child = subprocess.Popen(["true"])
    time.sleep(0.5)  # exited, not yet reaped: a zombie
    assert f"({child.pid})" not in " ".join(user_sessions(os.getuid(), None))
    child.wait()
