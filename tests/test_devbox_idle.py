"""Idle stop's judgement: what counts as use, since when the machine is quiet, the GPU readings, the
user's hold, the warning on the user's terminals, and the status line."""
import json
import os
import pwd
import pty
import subprocess
import sys
import time

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_idle
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import (
    BOOT_COMMAND, STAY_UP_COMMAND, STAY_UP_FILE, STAY_UP_SCRIPT, IdleClock, Process, boot_step_running, busy_kernels, gpu_use,
    last_input, load_setting, parse_compute_processes, parse_utilisation, pts_path, read_pending, read_state,
    read_stay_up, save_setting, setting_problems, settle_pending, state_record, status_line, tell_terminals, timestamp, trusted_program,
    user_activity, write_state)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import write_root_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stand-in nvidia-smi of the gpu scenario, with the output shapes of the real tool.
FAKE_NVIDIA_SMI = os.path.join(ROOT, "molecule", "gpu", "fake_nvidia_smi.py")
USER = 1000
# pid: (parent, uid, name): PID 1, Jupyter (detached, child of PID 1) with a kernel and a
# terminal's shell, root's sshd, and the user's shell under it.
TABLE = {1: (0, 0, "devbox-boot"), 40: (1, USER, "jupyter-lab"), 41: (40, USER, "python3"),
         42: (40, USER, "bash"), 50: (1, 0, "sshd"), 51: (50, USER, "bash")}
PTS_3 = (136 << 8) | 3  # /dev/pts/3 as /proc/<pid>/stat gives it
SETTING = {"minutes": 60, "warn_minutes": 5, "gpu_percent": 10, "before_stop": None}


def sessions(table, jupyter=40, **options):
    return user_activity(USER, "alice", jupyter, table, **options)["sessions"]


def test_sessions_are_the_users_processes_outside_jupyter():
    assert sessions(TABLE) == ["ssh session of alice: bash (51)"]
    assert sessions({pid: row for pid, row in TABLE.items() if pid != 51}) == []
    assert sessions(TABLE, jupyter=None) == ["ssh session of alice: bash (51)",
                                             "processes of alice outside Jupyter: jupyter-lab (40), python3 (41), bash (42)"]


def test_a_command_in_an_ssh_session_is_named_so_and_the_sessions_own_sshd_is_not():
    table = {50: (1, 0, "sshd"), 60: (50, USER, "sshd"), 61: Process(60, USER, "bash", PTS_3, 61, 61, 62),
             62: Process(61, USER, "python", PTS_3, 61, 62, 62)}
    assert sessions(table) == ["ssh session of alice: bash (61), python (62)"]


def test_a_shell_waiting_at_its_prompt_is_no_use_but_its_terminal_is_remembered():
    table = {50: (1, 0, "sshd"), 60: (50, USER, "sshd"), 61: Process(60, USER, "bash", PTS_3, 61, 61, 61)}
    found = user_activity(USER, "alice", None, table)
    assert found["sessions"] == [] and found["waiting_ttys"] == [PTS_3]


def test_a_command_running_in_a_jupyter_terminal_is_use_and_its_shell_at_the_prompt_is_not():
    table = {40: (1, USER, "jupyter-lab"), 41: (40, USER, "python3"),
             42: Process(40, USER, "bash", PTS_3, 42, 42, 42)}
    assert user_activity(USER, "alice", 40, table) == {"sessions": [], "waiting_ttys": [PTS_3], "orphans": []}
    table[42], table[43] = Process(40, USER, "bash", PTS_3, 42, 42, 43), Process(42, USER, "python", PTS_3, 42, 43, 43)
    assert sessions(table) == ["Jupyter terminal of alice: bash (42), python (43)"]


def test_kernels_left_behind_by_a_dead_jupyter_server_and_what_they_started_are_no_use():
    table = {1: (0, 0, "devbox-boot"), 41: Process(1, USER, "python3", kernel=True), 43: (41, USER, "python3"),
             70: (1, USER, "sleep")}
    found = user_activity(USER, "alice", None, table)
    assert found["orphans"] == ["python3 (41)", "python3 (43)"]
    assert found["sessions"] == ["processes of alice outside Jupyter: sleep (70)"]
    # A kernel of a server that runs (whether or not it answers) is its server's, not left behind.
    table[40], table[41] = (1, USER, "jupyter-lab"), Process(40, USER, "python3", kernel=True)
    assert user_activity(USER, "alice", None, table)["orphans"] == []


def test_sessions_survive_a_loop_in_the_table():
    assert sessions({7: (8, USER, "a"), 8: (7, USER, "b")}) == ["processes of alice outside Jupyter: a (7), b (8)"]


def test_this_machine_has_processes_the_scan_can_read():
    table = devbox_idle.processes()
    assert table[os.getpid()].uid == os.getuid() and table[os.getpid()].parent == os.getppid()


def test_a_kernel_is_known_by_its_command_line():
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "ipykernel"])
    try:
        time.sleep(0.2)
        table = devbox_idle.processes()
        assert table[kernel.pid].kernel and not table[os.getpid()].kernel
    finally:
        kernel.kill()
        kernel.wait()


def test_a_zombie_is_nobodys_session():
    child = subprocess.Popen(["true"])
    time.sleep(0.5)  # exited, not yet reaped: a zombie
    assert child.pid not in devbox_idle.processes()
    child.wait()


def test_busy_kernels_are_named_by_their_notebook():
    kernels = [{"id": "k1", "execution_state": "busy"}, {"id": "k2", "execution_state": "idle"},
               {"id": "0123456789", "execution_state": "busy"}, "junk"]
    sessions_ = [{"path": "work/Untitled.ipynb", "kernel": {"id": "k1"}}, {"kernel": "junk"}]
    assert busy_kernels(kernels, sessions_) == ["Untitled.ipynb", "01234567"]


def test_clock_restarts_on_use_and_follows_the_latest_activity():
    clock = IdleClock(now=0.0)
    assert clock.observe(500.0, [], 400.0) is None
    assert clock.idle_for(500.0) == 100.0  # an API call or a keystroke at 400
    assert clock.observe(600.0, ["kernel busy (a.ipynb)", "GPU 0 at 87%"]) == "kernel busy (a.ipynb), GPU 0 at 87%"
    assert clock.idle_for(700.0) == 100.0
    clock.observe(800.0, [])
    assert clock.idle_for(800.0) == 200.0
    clock.observe(900.0, [], latest_activity=5000.0)  # a clock ahead of ours never makes idle time negative
    assert clock.idle_for(900.0) == 0.0


def test_the_warning_is_given_again_after_the_machine_was_used():
    clock = IdleClock(now=0.0)
    clock.warned = True
    clock.observe(10.0, [])
    assert clock.warned
    clock.observe(20.0, ["GPU 0 at 50%"])
    assert not clock.warned


def test_jupyter_times_are_utc():
    assert timestamp("1970-01-01T00:01:00.000000Z") == 60.0


@pytest.mark.parametrize("output, gpus", [
    ("0, GPU-aaa, 87\n", [{"index": 0, "uuid": "GPU-aaa", "percent": 87}]),
    ("0, GPU-aaa, 0\n1, GPU-bbb, 100\n", [{"index": 0, "uuid": "GPU-aaa", "percent": 0},
                                          {"index": 1, "uuid": "GPU-bbb", "percent": 100}]),
    ("0, GPU-aaa, [N/A]\n", [{"index": 0, "uuid": "GPU-aaa", "percent": None}]),  # MIG, some vGPUs
    ("0, GPU-aaa, [Not Supported]\n", [{"index": 0, "uuid": "GPU-aaa", "percent": None}]),
    ("\n", []),
])
def test_utilisation_rows_of_every_shape(output, gpus):
    assert parse_utilisation(output) == gpus


@pytest.mark.parametrize("output", ["No devices were found\n", "0, GPU-aaa\n", "x, GPU-aaa, 3\n", "0, GPU-a, lots\n"])
def test_utilisation_that_is_not_a_reading_raises(output):
    with pytest.raises(ValueError):
        parse_utilisation(output)


def test_compute_processes_rows():
    assert parse_compute_processes("") == []
    assert parse_compute_processes("No running processes found\n") == []
    assert parse_compute_processes("GPU-aaa, 4242\nGPU-bbb, 7\n") == [("GPU-aaa", 4242), ("GPU-bbb", 7)]
    with pytest.raises(ValueError):
        parse_compute_processes("GPU-aaa, [N/A]\n")


@pytest.fixture
def nvidia_smi(tmp_path, monkeypatch):
    """The gpu scenario's stand-in, run as a program; set(state) says what it answers next."""
    state = tmp_path / "state.json"
    monkeypatch.setenv("FAKE_NVIDIA_SMI_STATE", str(state))
    monkeypatch.setattr(devbox_idle, "trusted_program", lambda path: True)
    program = tmp_path / "nvidia-smi"
    program.write_text(f"#!{sys.executable}\n" + open(FAKE_NVIDIA_SMI).read().split("\n", 1)[1])
    program.chmod(0o755)
    return str(program), lambda **answer: state.write_text(json.dumps(answer))


def test_a_busy_gpu_or_a_process_of_the_user_on_it_is_use(nvidia_smi):
    program, answer = nvidia_smi
    table = {4242: (1, USER, "python"), 4343: (1, 0, "dcgm")}
    answer(percent="3")
    assert gpu_use(program, USER, "alice", 10, table) == []
    answer(percent="87")
    assert gpu_use(program, USER, "alice", 10, table) == ["GPU 0 at 87%"]
    assert gpu_use(program, USER, "alice", 90, table) == []
    answer(percent="[N/A]", pids=[4242, 4343, 99999])
    assert gpu_use(program, USER, "alice", 10, table) == [
        "GPU 0 running python (4242) of alice", "GPU 0 running process 99999 (not visible here)"]


def test_a_failing_or_hanging_nvidia_smi_is_use_and_says_why(nvidia_smi):
    program, answer = nvidia_smi
    answer(fail="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    assert gpu_use(program, USER, "alice", 10, {}) == [
        "GPU reading failed (nvidia-smi exited with 9: NVIDIA-SMI has failed because it couldn't communicate with "
        "the NVIDIA driver.; it counts as use)"]
    answer(hang=True)
    started = time.monotonic()
    assert gpu_use(program, USER, "alice", 10, {}, timeout=1) == [
        "GPU reading failed (nvidia-smi did not answer within 1 s; it counts as use)"]
    assert time.monotonic() - started < 20
    assert gpu_use(None, USER, "alice", 10, {}) == []  # no nvidia-smi: no GPU to read


def test_only_roots_own_nvidia_smi_is_run(tmp_path):
    program = tmp_path / "nvidia-smi"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    os.chown(program, 0, 0)
    assert trusted_program(str(program))
    program.chmod(0o757)
    assert not trusted_program(str(program))
    os.chown(program, USER, 0)
    program.chmod(0o755)
    assert not trusted_program(str(program))
    assert gpu_use(str(program), USER, "alice", 10, {}) == [f"GPU not read: {program} is not root's own file (it counts as use)"]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / ".local" / "state" / "devbox").mkdir(parents=True)
    return home


def test_the_stay_up_command_writes_what_root_reads(home):
    command = home / "devbox-stay-up"
    command.write_text(STAY_UP_SCRIPT)
    command.chmod(0o755)

    def stay_up(*args):
        return subprocess.run([str(command), *args], env=dict(os.environ, HOME=str(home)), capture_output=True,
                              text=True)
    result = stay_up("2h")
    assert result.returncode == 0 and "staying up until" in result.stdout
    assert abs(read_stay_up(str(home), os.getuid()) - (time.time() + 7200)) < 30
    assert stay_up("off").returncode == 0
    assert read_stay_up(str(home), os.getuid()) == 0.0
    for wrong in ("2", "2w", "8d", "-1h", "0h"):
        assert stay_up(wrong).returncode != 0, wrong
    assert stay_up().returncode != 0


def test_the_users_hold_is_read_as_untrusted_data(home):
    kept = home / STAY_UP_FILE
    uid = os.getuid()
    kept.write_text(json.dumps({"until": int(time.time()) + 600}))
    assert read_stay_up(str(home), uid) > time.time()
    assert read_stay_up(str(home), uid + 1) == 0.0  # not the user's own file
    kept.write_text(json.dumps({"until": int(time.time()) + 10**9}))
    assert read_stay_up(str(home), uid) <= time.time() + 7 * 86400 + 5  # at most a week, whatever it says
    for junk in ('{"until": "soon"}', '{"until": true}', "[]", "not json", json.dumps({"until": 1, "x": "y" * 300})):
        kept.write_text(junk)
        assert read_stay_up(str(home), uid) == 0.0, junk
    kept.unlink()
    secret = home / "secret"
    secret.write_text(json.dumps({"until": int(time.time()) + 600}))
    kept.symlink_to(secret)
    assert read_stay_up(str(home), uid) == 0.0  # a link is not followed
    kept.unlink()
    os.mkfifo(kept)
    assert read_stay_up(str(home), uid) == 0.0  # a FIFO neither hangs nor counts
    kept.unlink()
    (home / ".local" / "state" / "devbox").rename(home / "elsewhere")
    (home / ".local" / "state" / "devbox").symlink_to(home / "elsewhere")
    (home / "elsewhere" / "stay-up.json").write_text(json.dumps({"until": int(time.time()) + 600}))
    assert read_stay_up(str(home), uid) == 0.0  # nor a link on the way


def test_the_setting_counts_from_when_it_was_turned_on(tmp_path):
    home = str(tmp_path)
    assert load_setting(home)["minutes"] == 0
    assert save_setting(home, SETTING, now=1000.0)
    assert load_setting(home) == dict(SETTING, since=1000.0)
    assert not save_setting(home, SETTING, now=2000.0)  # the same setting: the clock is not restarted
    assert save_setting(home, dict(SETTING, warn_minutes=2), now=3000.0)
    assert load_setting(home)["since"] == 1000.0  # only a change of the minutes restarts it
    assert save_setting(home, dict(SETTING, minutes=1), now=4000.0)
    assert load_setting(home)["since"] == 4000.0


def test_a_before_stop_record_outside_the_home_is_not_used(tmp_path):
    home = str(tmp_path)
    command = {"command": "python save.py", "timeout_s": 30, "project": f"{home}/project", "venv": f"{home}/venv"}
    save_setting(home, dict(SETTING, before_stop=command), now=1.0)
    assert load_setting(home)["before_stop"] == command
    save_setting(home, dict(SETTING, before_stop=dict(command, project="/root")), now=1.0)
    assert load_setting(home)["before_stop"] is None
    save_setting(home, dict(SETTING, before_stop=dict(command, timeout_s=10**6)), now=1.0)
    assert load_setting(home)["before_stop"] is None


def test_setting_problems_name_each_variable():
    good = {"minutes": 60, "warn_minutes": 5, "gpu_percent": 10, "before_stop": "", "before_stop_timeout": 60,
            "project": None, "venv": None}
    assert setting_problems(good) == []
    bad = dict(good, minutes=-1, warn_minutes=-5, gpu_percent=101, before_stop_timeout=0, before_stop="a\0b")
    assert [problem.split("=")[0].split(" ")[0] for problem in setting_problems(bad)] == [
        "idle_stop_minutes", "idle_stop_warn_minutes", "idle_stop_gpu_percent", "idle_stop_before_stop_timeout",
        "idle_stop_before_stop", "before_stop"]


def controlling(descriptor: int) -> int:
    """The tty number /proc/<pid>/stat would give for this terminal."""
    device = os.fstat(descriptor).st_rdev
    major, minor = os.major(device), os.minor(device)
    return (major << 8) | (minor & 0xff) | ((minor & ~0xff) << 12)


def test_the_warning_reaches_each_terminal_of_the_user_and_no_other():
    master, slave = pty.openpty()
    other_master, other_slave = pty.openpty()
    try:
        tty = controlling(slave)
        assert pts_path(tty) == os.ttyname(slave)
        table = {100: Process(1, USER, "bash", tty, 100, 100, 100),
                 200: Process(1, USER + 1, "bash", controlling(other_slave), 200, 200, 200),
                 300: Process(1, USER, "sleep", 0)}
        assert tell_terminals(USER, "devbox: stopping at 12:00 UTC\x1b[2J", table) == 1
        said = os.read(master, 1000)
        assert b"devbox: stopping at 12:00 UTC[2J\r" in said and b"\x1b" not in said  # ours, printable only
        os.set_blocking(other_master, False)
        with pytest.raises(BlockingIOError):
            os.read(other_master, 1000)
        assert last_input([tty]) == os.fstat(slave).st_atime
        assert last_input([]) == 0.0 and pts_path(0) is None and pts_path((4 << 8) | 1) is None  # tty1 is no pty
    finally:
        for descriptor in (master, slave, other_master, other_slave):
            os.close(descriptor)


def test_the_boot_step_is_found_by_its_command_line():
    assert not boot_step_running({os.getpid(): (1, 0, "python")})
    stand_in = subprocess.Popen([BOOT_COMMAND, "30"], executable="/bin/sleep")
    try:
        time.sleep(0.2)
        assert boot_step_running({stand_in.pid: (1, 0, "devbox-boot")})
        assert not boot_step_running({stand_in.pid: (1, USER, "devbox-boot")})  # only root's
    finally:
        stand_in.kill()
        stand_in.wait()


def test_the_state_goes_to_status_only_as_roots_own_file(tmp_path):
    clock = IdleClock(now=1000.0)
    clock.observe(1300.0, [])
    write_state(state_record(1300.0, SETTING, clock, 0.0, 60), str(tmp_path))
    assert read_state(str(tmp_path)) == {"time": 1300.0, "poll_s": 60, "minutes": 60, "idle_for_s": 300.0,
                                         "in_use": None, "held_until": None, "stops_at": 1000.0 + 3600}
    (tmp_path / "idle.json").chmod(0o666)
    assert read_state(str(tmp_path)) is None
    assert read_state(str(tmp_path / "absent")) is None


def test_status_says_the_clock_or_what_keeps_the_machine_up():
    now = 10_000.0
    base = {"time": now - 5, "poll_s": 60, "minutes": 60, "idle_for_s": 720.0, "in_use": None, "held_until": None,
            "stops_at": now + 48 * 60}
    assert status_line(dict(SETTING, minutes=0), base, True, now) == "Idle stop: off (idle_stop_minutes: 0)"
    assert status_line(SETTING, base, True, now) == "Idle stop: after 60 min idle; idle for 12 min; stops at 03:34 UTC"
    assert status_line(SETTING, dict(base, in_use="kernel busy (Untitled.ipynb), GPU 0 at 87%", stops_at=None),
                       True, now) == "Idle stop: in use: kernel busy (Untitled.ipynb), GPU 0 at 87%"
    assert status_line(SETTING, dict(base, held_until=now + 3600), True, now) == (
        "Idle stop: held off by devbox-stay-up until 03:46 UTC")
    assert "no look yet" in status_line(SETTING, None, True, now)
    assert "no look yet" in status_line(SETTING, dict(base, minutes=1), True, now)  # a look of the old setting
    assert "has not looked since" in status_line(SETTING, dict(base, time=now - 3600), True, now)
    assert "does not run on this machine" in status_line(SETTING, base, False, now)


def run_module(monkeypatch, capsys, boot_running: bool, **args):
    """devbox_idle_stop as Ansible runs it, with the boot step found or not; its JSON answer."""
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.devbox.machine.plugins.modules import devbox_idle_stop
    monkeypatch.setattr(devbox_idle_stop, "boot_step_running", lambda: boot_running)
    args = dict({"warn_minutes": 5, "gpu_percent": 10, "before_stop": "", "before_stop_timeout": 60}, **args)
    with patch_module_args(args), pytest.raises(SystemExit):
        devbox_idle_stop.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_refuses_idle_stop_where_no_boot_step_runs_before_writing_anything(tmp_path, monkeypatch, capsys):
    user = pwd.getpwuid(os.getuid()).pw_name
    answer = run_module(monkeypatch, capsys, False, home=str(tmp_path), user=user, minutes=60)
    assert answer["failed"] and "the image's boot step (devbox-boot) does not run here, as on an SSH host" in answer["msg"]
    assert not (tmp_path / ".devbox").exists()
    answer = run_module(monkeypatch, capsys, False, home=str(tmp_path), user=user, minutes=0)  # off: fine anywhere
    assert answer["changed"] and not answer.get("failed")
    assert (tmp_path / STAY_UP_COMMAND).read_text() == STAY_UP_SCRIPT
    answer = run_module(monkeypatch, capsys, True, home=str(tmp_path), user=user, minutes=60, warn_minutes=2)
    assert answer["changed"] and load_setting(str(tmp_path))["minutes"] == 60
    assert not run_module(monkeypatch, capsys, True, home=str(tmp_path), user=user, minutes=60, warn_minutes=2)["changed"]


# --- the restart a busy kernel put off (~/.devbox/restart_pending.json) ---

SPARED = {"reasons": ["Jupyter's settings changed"], "pid": 40}


def pending_home(tmp_path, data) -> str:
    """A home whose record of pending restarts holds data (root's own file, as the services module writes it)."""
    write_root_file(str(tmp_path), devbox_idle.PENDING_FILE, json.dumps(data))
    return str(tmp_path)


def test_pending_restarts_are_read_as_data_each_entry_checked(tmp_path):
    assert read_pending(str(tmp_path)) == ({}, None)
    home = pending_home(tmp_path, {"jupyter": dict(SPARED, extra="ignored"), "bad-pid": {"reasons": [], "pid": True},
                                   "bad-reasons": {"reasons": "changed"}, "not-a-dict": ["changed"],
                                   "tensorboard": {"reasons": ["its entry changed"]}})
    assert read_pending(home) == ({"jupyter": SPARED, "tensorboard": {"reasons": ["its entry changed"], "pid": None}},
                                  None)


@pytest.mark.parametrize("damage", ["not root's own", "a link", "not an object"])
def test_a_pending_record_not_to_be_trusted_is_not_used_and_says_why(tmp_path, damage):
    home = pending_home(tmp_path, {"jupyter": SPARED})
    record = tmp_path / ".devbox" / devbox_idle.PENDING_FILE
    if damage == "not root's own":
        os.chown(record, USER, USER)
    elif damage == "a link":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(json.dumps({"jupyter": SPARED}))
        record.unlink()
        record.symlink_to(elsewhere)
    else:
        record.write_text(json.dumps([SPARED]))
    pending, problem = read_pending(home)
    assert pending == {} and str(record) in problem


def test_a_done_restart_leaves_the_record_unless_a_run_replaced_its_entry(tmp_path):
    other = {"reasons": ["its entry changed"], "pid": None}
    home = pending_home(tmp_path, {"jupyter": SPARED, "tensorboard": other})
    assert not settle_pending(home, "jupyter", dict(SPARED, pid=39)), "a run's newer entry is the run's to settle"
    assert settle_pending(home, "jupyter", SPARED)
    assert read_pending(home) == ({"tensorboard": other}, None)
    assert settle_pending(home, "tensorboard", other)
    assert not (tmp_path / ".devbox" / devbox_idle.PENDING_FILE).exists()
    assert not settle_pending(home, "jupyter", SPARED)


@pytest.mark.parametrize("activity, step", [
    ({"pid": 40, "busy_kernels": []}, "restart"),
    ({"pid": 40, "busy_kernels": ["train.ipynb"]}, "wait"),
    ({"pid": 41, "busy_kernels": ["train.ipynb"]}, "settled"),
    ({"pid": 41, "busy_kernels": []}, "settled"),
    (None, "wait"),
])
def test_the_pending_restart_is_done_when_the_spared_server_serves_with_no_kernel_busy(activity, step):
    assert devbox_idle.pending_step(SPARED, activity) == step


def test_a_pending_restart_whose_server_was_not_known_is_done_when_no_kernel_is_busy():
    unknown = dict(SPARED, pid=None)
    assert devbox_idle.pending_step(unknown, {"pid": 41, "busy_kernels": []}) == "restart"
    assert devbox_idle.pending_step(unknown, {"pid": 41, "busy_kernels": ["a"]}) == "wait"
