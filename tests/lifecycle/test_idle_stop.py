"""Idle stop: the machine stops itself (PID 1 exits 0) once nobody has used it for
idle_stop_minutes, and never while a session is open or a kernel is busy.

Real minutes: idle_stop_minutes=1, with PID 1 looking every 2 s instead of every 60 s.
"""
import json
import time

import pytest

from docker_machines import TEST_IMAGE, LocalMachine, docker, fresh, tagged

HOME = "/home/pythonuser"
IDLE_S = 60
# The one launcher, as the module keeps it (root's own file) and PID 1 runs it.
LAUNCHER = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"
# As the user: start a kernel through Jupyter's API and give it a long cell, then leave.
BUSY_KERNEL = f"""
import glob, json, os, subprocess, time, urllib.request
from jupyter_client import BlockingKernelClient
status = json.loads(subprocess.run(["python3", "{LAUNCHER}", "jupyter", "status"], capture_output=True).stdout)
token = open("{HOME}/.jupyter/devbox_token").read().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
request = urllib.request.Request(status["url"] + "api/kernels", data=b"{{}}", method="POST",
                                 headers={{"Authorization": "token " + token}})
kernel = json.load(opener.open(request))
connection = glob.glob("{HOME}/.local/share/jupyter/runtime/kernel-" + kernel["id"] + ".json")[0]
client = BlockingKernelClient(connection_file=connection)
client.load_connection_file()
client.start_channels()
client.execute("import time; time.sleep(600)")  # queued until the kernel listens
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    kernels = json.load(opener.open(urllib.request.Request(status["url"] + "api/kernels",
                                                           headers={{"Authorization": "token " + token}})))
    if any(k["id"] == kernel["id"] and k["execution_state"] == "busy" for k in kernels):
        break
    time.sleep(0.5)
else:
    raise SystemExit("the kernel never became busy")
client.stop_channels()
print(kernel["id"])
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


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-idle"), volume=tagged("devbox-idle-home"), image=TEST_IMAGE,
                            env={"DEVBOX_IDLE_POLL_S": "2"})) as machine:
        result = machine.provision("-e", json.dumps({"idle_stop_minutes": 1}), capture=True)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        yield machine


def test_an_open_session_keeps_the_machine_up(machine):
    session = machine.exec("sleep 600 >/dev/null 2>&1 & echo $!", user="pythonuser").stdout.strip()
    time.sleep(IDLE_S + 15)
    assert running(machine)
    assert f"idle stop: in use (processes of the user outside Jupyter: sleep ({session}))" in docker(
        "logs", machine.name, quiet=True).stdout
    machine.exec(f"kill {session}")  # the image has no pkill


def test_a_busy_kernel_keeps_the_machine_up(machine):
    result = machine.exec(f"cd {HOME}/project && {HOME}/project-venv/bin/python - <<'EOF'\n{BUSY_KERNEL}\nEOF",
                          user="pythonuser")
    assert result.returncode == 0, result.stderr
    time.sleep(IDLE_S + 15)
    assert running(machine)
    assert "idle stop: in use (1 kernel(s) busy)" in docker("logs", machine.name, quiet=True).stdout
    interrupt = INTERRUPT.replace("KERNEL", result.stdout.strip())
    result = machine.exec(f"{HOME}/project-venv/bin/python - <<'EOF'\n{interrupt}\nEOF", user="pythonuser")
    assert result.returncode == 0, result.stderr


def test_an_idle_machine_stops_itself_and_says_why(machine):
    deadline = time.monotonic() + IDLE_S + 60
    while running(machine) and time.monotonic() < deadline:
        time.sleep(2)
    assert not running(machine), "still running a minute after it went idle:\n" + docker(
        "logs", machine.name, quiet=True).stdout[-2000:]
    assert docker("inspect", "-f", "{{.State.ExitCode}}", machine.name, quiet=True).stdout.strip() == "0"
    log = docker("logs", machine.name, quiet=True).stdout
    assert "idle stop: nobody used the machine" in log and "stopping" in log
    machine.start()  # the next start brings everything back, as a restart does
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if machine.exec(f"python3 {LAUNCHER} jupyter status", user="pythonuser").returncode == 0:
            return
        time.sleep(1)
    raise AssertionError("Jupyter did not come back after the idle stop")
