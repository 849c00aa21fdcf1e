"""Idle stop in one machine's life: what holds the machine up is named in the log and by status, the
user's open terminal is warned, the before-stop command runs and is cut at its limit, and the machine
stops itself (PID 1 exits 0) once nobody has used it for idle_stop_minutes, a kernel left behind
by a killed Jupyter notwithstanding.

Real minutes: idle_stop_minutes=1, with PID 1 looking every 2 s instead of every 60 s; each phase
outlasts the idle time, so each hold is shown to hold on its own. nvidia-smi is the gpu scenario's
stand-in (molecule/gpu/fake_nvidia_smi.py), whose answers the test sets.
"""
import json
import os
import pty
import shlex
import subprocess
import threading
import time

import pytest

from docker_machines import DOCKER, ROOT, TEST_IMAGE, LocalMachine, docker, fresh, tagged

HOME = "/home/pythonuser"
IDLE_S = 60
BEFORE_STOP_LIMIT_S = 5
# The one launcher, as the module keeps it (root's own file) and PID 1 runs it.
LAUNCHER = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"
FAKE_NVIDIA_SMI = os.path.join(ROOT, "molecule", "gpu", "fake_nvidia_smi.py")
SETTINGS = {"idle_stop_minutes": 1, "idle_stop_before_stop": "echo saving checkpoints in $PWD; sleep 600",
            "idle_stop_before_stop_timeout": BEFORE_STOP_LIMIT_S}
# As the user: open Untitled.ipynb's session through Jupyter's API and give its kernel a long cell, then leave.
BUSY_KERNEL = f"""
import glob, json, subprocess, time, urllib.request
from jupyter_client import BlockingKernelClient
status = json.loads(subprocess.run(["python3", "{LAUNCHER}", "jupyter", "status"], capture_output=True).stdout)
token = open("{HOME}/.jupyter/devbox_token").read().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
def api(path, body=None):
    request = urllib.request.Request(status["url"] + path, data=body, method="POST" if body else "GET",
                                     headers={{"Authorization": "token " + token}})
    return json.load(opener.open(request))
session = api("api/sessions", json.dumps({{"path": "Untitled.ipynb", "type": "notebook",
                                          "kernel": {{"name": "python3"}}}}).encode())
kernel = session["kernel"]["id"]
connection = glob.glob("{HOME}/.local/share/jupyter/runtime/kernel-" + kernel + ".json")[0]
client = BlockingKernelClient(connection_file=connection)
client.load_connection_file()
client.start_channels()
client.execute("import time; time.sleep(600)")  # queued until the kernel listens
deadline = time.monotonic() + 60
while not any(k["id"] == kernel and k["execution_state"] == "busy" for k in api("api/kernels")):
    if time.monotonic() > deadline:
        raise SystemExit("the kernel never became busy")
    time.sleep(0.5)
client.stop_channels()
print(json.dumps({{"kernel": kernel, "server": status["pid"]}}))
"""
# As the user: interrupt the kernel's cell, as the stop button in JupyterLab does.
INTERRUPT = f"""
import json, subprocess, urllib.request
status = json.loads(subprocess.run(["python3", "{LAUNCHER}", "jupyter", "status"], capture_output=True).stdout)
token = open("{HOME}/.jupyter/devbox_token").read().strip()
request = urllib.request.Request(status["url"] + "api/kernels/KERNEL/interrupt", data=b"", method="POST",
                                 headers={{"Authorization": "token " + token}})
urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(request)
"""


def running(machine) -> bool:
    return machine.state() == "running"


def log(machine) -> str:
    return docker("logs", machine.name, quiet=True).stdout


def as_user(machine, script: str) -> str:
    result = machine.exec(f"cd {HOME}/project && {HOME}/project-venv/bin/python - <<'EOF'\n{script}\nEOF",
                          user="pythonuser")
    assert result.returncode == 0, result.stderr
    return result.stdout


def gpu_answers(machine, **answer) -> None:
    """What the stand-in nvidia-smi says from now on."""
    assert machine.exec(f"echo {shlex.quote(json.dumps(answer))} > /tmp/fake-nvidia-smi.json").returncode == 0


def wait_for_log(machine, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log(machine):
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n" + log(machine)[-3000:]
        time.sleep(1)


def outlast_the_idle_time(machine) -> None:
    time.sleep(IDLE_S + 10)
    assert running(machine), log(machine)[-3000:]


class Terminal:
    """`docker exec -it` as the dev user, left at its prompt; everything it shows is kept."""

    def __init__(self, machine):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen([DOCKER, "exec", "-it", "-u", "pythonuser", machine.name, "bash"],
                                        stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.shown = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.shown += data

    def close(self):
        self.process.kill()
        self.process.wait()
        os.close(self.master)


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-idle"), volume=tagged("devbox-idle-home"), image=TEST_IMAGE,
                            env={"DEVBOX_IDLE_POLL_S": "2"})) as machine:
        result = machine.provision("-e", json.dumps(SETTINGS), capture=True)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        docker("cp", FAKE_NVIDIA_SMI, f"{machine.name}:/usr/local/bin/nvidia-smi")
        assert machine.exec("chown root:root /usr/local/bin/nvidia-smi && chmod 0755 /usr/local/bin/nvidia-smi"
                            ).returncode == 0
        yield machine


def test_what_holds_the_machine_up_is_named_then_it_warns_runs_the_last_step_and_stops(machine):
    gpu_answers(machine, percent="87")
    terminal = Terminal(machine)  # at its prompt: no use, but it gets the warning
    try:
        # A busy kernel and a busy GPU: both named, by the log and by status.
        busy = json.loads(as_user(machine, BUSY_KERNEL))
        outlast_the_idle_time(machine)
        assert "idle stop: in use (kernel busy (Untitled.ipynb), GPU 0 at 87%)" in log(machine)
        status = machine.provision(playbook="status.yml", capture=True)
        assert status.returncode == 0, status.stdout[-3000:]
        assert "Idle stop: in use: kernel busy (Untitled.ipynb), GPU 0 at 87%" in status.stdout

        # The kernel done, nvidia-smi failing: a broken reading holds the machine up, and the log says why.
        as_user(machine, INTERRUPT.replace("KERNEL", busy["kernel"]))
        gpu_answers(machine, fail="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        outlast_the_idle_time(machine)
        assert "idle stop: in use (GPU reading failed (nvidia-smi exited with 9: NVIDIA-SMI has failed" in log(machine)

        # The GPU idle, the user's hold: the machine stays up, and says until when.
        gpu_answers(machine, percent="0")
        held = machine.exec(f"{HOME}/.local/bin/devbox-stay-up 10m", user="pythonuser")
        assert held.returncode == 0 and "staying up until" in held.stdout, held.stderr
        outlast_the_idle_time(machine)
        assert "idle stop: in use (held off by devbox-stay-up until" in log(machine)
        assert "Idle stop: held off by devbox-stay-up until" in machine.provision(
            playbook="status.yml", capture=True).stdout

        # Jupyter killed with a busy kernel, and a kernel whose parent is gone: neither holds the machine up.
        busy = json.loads(as_user(machine, BUSY_KERNEL))
        assert machine.exec(f"kill -9 {busy['server']}").returncode == 0
        left = machine.exec(f"cd {HOME}/project && setsid {HOME}/project-venv/bin/python -m ipykernel_launcher "
                            "-f /tmp/left-behind.json </dev/null >/dev/null 2>&1 &", user="pythonuser")
        assert left.returncode == 0, left.stderr
        wait_for_log(machine, "idle stop: not counting kernels left behind by a Jupyter server that is gone: python")
        released = machine.exec(f"{HOME}/.local/bin/devbox-stay-up off", user="pythonuser")
        assert released.returncode == 0, released.stderr
        deadline = time.monotonic() + IDLE_S + BEFORE_STOP_LIMIT_S + 60
        while running(machine) and time.monotonic() < deadline:
            time.sleep(2)
        said = log(machine)
        assert not running(machine), "still running a minute after it went idle:\n" + said[-3000:]
        assert b"devbox: this machine stops at" in terminal.shown, terminal.shown[-2000:]
    finally:
        terminal.close()
    assert docker("inspect", "-f", "{{.State.ExitCode}}", machine.name, quiet=True).stdout.strip() == "0"
    assert "told 1 terminal(s) of pythonuser" in said
    assert f"idle stop: before-stop: saving checkpoints in {HOME}/project" in said
    assert (f"idle stop: idle_stop_before_stop cut after {BEFORE_STOP_LIMIT_S} s (idle_stop_before_stop_timeout); "
            "stopping all the same") in said
    assert "idle stop: nobody used the machine" in said and said.rstrip().endswith("devbox-boot: stopping")

    machine.start()  # the next start brings everything back, as a restart does
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if machine.exec(f"python3 {LAUNCHER} jupyter status", user="pythonuser").returncode == 0:
            return
        time.sleep(1)
    raise AssertionError("Jupyter did not come back after the idle stop")
