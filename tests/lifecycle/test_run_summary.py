"""What a run says, on one machine's life: the final report names what the run did (the package
and its version; Jupyter's settings, restarts and why), a converged rerun is short and says nothing
changed, --check says the same as "would", and a busy kernel survives a settings change until no
kernel is busy (then PID 1 restarts Jupyter, no run needed) or the run says `-e jupyter_restart=now`.
"""
import json
import re
import shlex
import tempfile

import pytest

from docker_machines import TEST_IMAGE, LocalMachine, docker, fresh, recap_changed, said, tagged, wait_until

HOME = "/home/pythonuser"
LAUNCHER = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"
VENV_PYTHON = f"{HOME}/project-venv/bin/python"  # Jupyter's, with jupyter_client
PACKAGES = {"python_env_packages": ["six==1.16.0"]}
SETTINGS = {"jupyter_server_settings": {"ServerApp": {"iopub_data_rate_limit": 20000000}}}
# The lock's copy goes to a folder of this module's own (every local machine is the inventory's devbox-local).
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")
# As the user: talk to Jupyter's REST API with its token: METHOD PATH, prints the JSON answer.
API = f"""
import json, subprocess, sys, urllib.request
status = json.loads(subprocess.run(["python3", "{LAUNCHER}", "jupyter", "status"], capture_output=True).stdout)
token = open("{HOME}/.jupyter/devbox_token").read().strip()
method, path = sys.argv[1:3]
request = urllib.request.Request(status["url"] + path, data=b"{{}}" if method == "POST" else None, method=method,
                                 headers={{"Authorization": "token " + token}})
body = urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(request).read()
print(json.dumps({{"pid": status["pid"], "answer": json.loads(body) if body else None}}))
"""
# As the user: a kernel started through Jupyter's API, given a long cell, left busy; prints its id.
BUSY_KERNEL = f"""
import glob, json, subprocess, time
from jupyter_client import BlockingKernelClient
def api(method, path):
    return json.loads(subprocess.run(["python3", "-c", {API!r}, method, path], capture_output=True, check=True).stdout)
kernel = api("POST", "api/kernels")["answer"]
client = BlockingKernelClient(connection_file=glob.glob("{HOME}/.local/share/jupyter/runtime/kernel-"
                                                        + kernel["id"] + ".json")[0])
client.load_connection_file()
client.start_channels()
client.execute("import time; time.sleep(600)")  # queued until the kernel listens
deadline = time.monotonic() + 60
while not any(k["id"] == kernel["id"] and k["execution_state"] == "busy" for k in api("GET", "api/kernels")["answer"]):
    if time.monotonic() > deadline:
        raise SystemExit("the kernel never became busy")
    time.sleep(0.5)
client.stop_channels()
print(kernel["id"])
"""


# PID FILE: whether the process started after the file was last written (its start from /proc, as ps reads it).
STARTED_AFTER = """
import os, sys
ticks = int(open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()[19])
boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
print(boot + ticks / os.sysconf("SC_CLK_TCK") >= os.stat(sys.argv[2]).st_mtime)
"""


def api(machine, method: str, path: str) -> dict:
    """Jupyter's answer, and the pid of the server that gave it."""
    result = machine.exec(f"python3 -c {shlex.quote(API)} {method} {path}", user="pythonuser")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def busy_kernel(machine) -> str:
    result = machine.exec(f"{VENV_PYTHON} -c {shlex.quote(BUSY_KERNEL)}", user="pythonuser")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def kernel_states(machine) -> dict:
    return {kernel["id"]: kernel["execution_state"] for kernel in api(machine, "GET", "api/kernels")["answer"]}


def server_pid(machine) -> int | None:
    """The pid of the Jupyter serving now; None while none answers (during a restart)."""
    result = machine.exec(f"python3 -c {shlex.quote(API)} GET api/status", user="pythonuser")
    return json.loads(result.stdout)["pid"] if result.returncode == 0 else None


def started_after_its_settings(machine, pid: int) -> bool:
    """The process started after Jupyter's settings file was last written (so it read them)."""
    result = machine.exec(f"python3 -c {shlex.quote(STARTED_AFTER)} {pid} {HOME}/.jupyter/jupyter_server_config.json")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def run(machine, variables: dict, *extra: str) -> str:
    result = machine.provision("-e", json.dumps(dict(variables, python_env_lock_copy_dir=LOCKS)), *extra, capture=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def the_report(output: str) -> str:
    """The final report's text (a debug task's message, shown by the quiet output), on one line."""
    return said(output.split("TASK [Report how to reach the machine]")[-1].split("PLAY RECAP")[0])


@pytest.fixture(scope="module")
def machine():
    # PID 1 looks every 2 s whether a put-off restart can be done (every minute by default).
    with fresh(LocalMachine(name=tagged("devbox-summary"), volume=tagged("devbox-summary-home"), image=TEST_IMAGE,
                            port=0, env={"DEVBOX_IDLE_POLL_S": "2"})) as machine:
        yield machine


def test_the_first_run_names_the_package_it_installed_with_its_version(machine):
    report = the_report(run(machine, PACKAGES))
    assert re.search(r"Installed: [^']*\bsix==1\.16\.0\b", report), report
    assert "Started jupyter (new)" in report, report


def test_a_converged_rerun_is_short_shows_the_url_and_says_nothing_changed(machine):
    output = run(machine, PACKAGES)
    assert recap_changed(output) == 0
    assert re.search(r"jupyter: http://127\.0\.0\.1:\d+/lab\?token=\S+", output), output
    assert f"{machine.name}: nothing changed" in output, output
    for hidden in ("skipping:", "Validating arguments against arg spec", "included:", f"ok: [{machine.name}]\n"):
        assert hidden not in output, hidden
    assert "Installed" not in the_report(output) and "Started" not in the_report(output)
    assert len(output.splitlines()) < 40, output


def test_a_dry_run_says_what_it_would_install(machine):
    output = run(machine, {"python_env_packages": ["six==1.16.0", "tomli==2.0.1"]}, "--check")
    assert "Would install: tomli==2.0.1" in the_report(output), output
    assert machine.exec(f"{VENV_PYTHON} -c 'import tomli'").returncode != 0, "a dry run installed"


def test_a_busy_kernel_survives_a_settings_change_then_pid_1_restarts_jupyter_once_it_is_idle(machine):
    kernel = busy_kernel(machine)
    server = api(machine, "GET", "api/status")["pid"]
    report = the_report(run(machine, dict(PACKAGES, **SETTINGS)))
    assert "Changed Jupyter's settings: ServerApp.iopub_data_rate_limit: (unset) -> 20000000" in report, report
    assert ("Restart of jupyter pending (Jupyter's settings changed; not now: 1 kernel busy): done by the machine "
            "once no kernel is busy (on an SSH host: rerun then), or now with -e jupyter_restart=now") in report, report
    assert kernel_states(machine) == {kernel: "busy"} and api(machine, "GET", "api/status")["pid"] == server
    assert machine.exec(f"test -e {HOME}/.devbox/restart_pending.json").returncode == 0
    wait_until(lambda: "jupyter: restart pending (Jupyter's settings changed); waits while 1 kernel busy" in
               docker("logs", machine.name).stdout, 60, "PID 1 saying the restart waits for the busy kernel", 1)
    assert kernel_states(machine) == {kernel: "busy"} and api(machine, "GET", "api/status")["pid"] == server
    # The cell ends (the stop button): PID 1, no run, restarts Jupyter to read its settings, and drops the record.
    api(machine, "POST", f"api/kernels/{kernel}/interrupt")
    restarted = wait_until(lambda: server_pid(machine) not in (None, server) and server_pid(machine), 180,
                           "PID 1 restarting Jupyter once no kernel is busy", 1)
    assert started_after_its_settings(machine, restarted) and kernel_states(machine) == {}
    wait_until(lambda: machine.exec(f"test -e {HOME}/.devbox/restart_pending.json").returncode != 0, 60,
               "PID 1 dropping the pending restart's record", 1)
    assert ("jupyter: restart pending (Jupyter's settings changed), no kernel busy now: started, pid "
            f"{restarted}") in docker("logs", machine.name).stdout
    # The next run has nothing left to do: no restart, nothing pending.
    output = run(machine, dict(PACKAGES, **SETTINGS))
    assert recap_changed(output) == 0, output
    assert "Restart" not in the_report(output) and "pending" not in the_report(output), output
    assert server_pid(machine) == restarted


def test_jupyter_restart_now_restarts_it_busy_kernel_and_all(machine):
    kernel = busy_kernel(machine)
    server = api(machine, "GET", "api/status")["pid"]
    settings = {"jupyter_server_settings": {"ServerApp": {"iopub_data_rate_limit": 30000000}}}
    report = the_report(run(machine, dict(PACKAGES, **settings), "-e", "jupyter_restart=now"))
    assert "Restarted jupyter (Jupyter's settings changed)" in report, report
    assert api(machine, "GET", "api/status")["pid"] != server and kernel not in kernel_states(machine)
