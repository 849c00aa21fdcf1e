"""The everyday loop of the local machine, as a user meets it, through tools/local_machine.py (what `make up`,
`make shell`, `make logs`, `make restart`, `make down` and `make destroy` run) on one machine's life.

A port in use stops `up` before anything exists; a setting kept in the inventory's host_vars stays through
plain reruns (the second says changed=0 and prints no `starting`); YAML VARS are applied; the shell runs the
venv's Python as the dev user in ~/project; status hides the token with SHOW_TOKEN=0; restart restarts the
services, not the container; logs show PID 1's and Jupyter's; down stops Jupyter cleanly (its log ends with
its shutdown); a second DEVBOX_NAME on the same volume keeps a lock copy of its own.
"""
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time

import pytest

from docker_machines import (ROOT, TEST_IMAGE, LocalMachine, changed_tasks, docker, free_port, local_facts,
                             recap_changed, tagged)

from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import STATE_DIR

NAME, SECOND, VOLUME = tagged("devbox-daily"), tagged("devbox-daily-two"), tagged("devbox-daily-home")
FACTS = local_facts()
USER, HOME = FACTS["user"], FACTS["home"]
VENV, PROJECT = f"{HOME}/{FACTS['venv_dir']}", f"{HOME}/{FACTS['project_dir']}"
JUPYTER_LOG = f"{HOME}/{STATE_DIR}/jupyter.log"
PORT = free_port()
# The user's setting for this machine alone, where a user keeps it: inventory/host_vars/<name>.yml.
HOST_VARS = os.path.join(ROOT, "inventory", "host_vars", f"{NAME}.yml")
SETTING = {"jupyter_server_settings": {"MappingKernelManager": {"cull_idle_timeout": 3600}}}


def lock_copy(name: str) -> str:
    return os.path.join(ROOT, "locks", f"{name}.requirements.lock")


def tool(action: str, name: str = NAME, **env) -> subprocess.CompletedProcess:
    environ = dict(os.environ, DEVBOX_NAME=name, DEVBOX_VOLUME=VOLUME, DEVBOX_IMAGE=TEST_IMAGE,
                   DEVBOX_PORT=str(PORT), VARS="")
    environ.update(env)
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), action], env=environ,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)


def at_a_terminal(action: str, typed: str, timeout: float = 120) -> str:
    """What the tool's action prints at a terminal (a pseudo-terminal) where `typed` is typed."""
    environ = dict(os.environ, DEVBOX_NAME=NAME, DEVBOX_VOLUME=VOLUME, DEVBOX_IMAGE=TEST_IMAGE, VARS="")
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), action],
                               env=environ, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    os.write(leader, typed.encode())
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 1)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side is closed: the command ended
                break
            if not chunk:
                break
            output += chunk
    os.close(leader)
    process.kill()
    process.wait()
    return output.decode(errors="replace")


def said(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-4000:]


def jupyter_settings(machine: LocalMachine) -> dict:
    return json.loads(machine.exec(f"cat {HOME}/.jupyter/jupyter_server_config.json").stdout)


@pytest.fixture(scope="module")
def machine():
    machine, second = LocalMachine(NAME, VOLUME, TEST_IMAGE), LocalMachine(SECOND, VOLUME, TEST_IMAGE)

    def clean_up():
        for each in (machine, second):
            each.remove()
        machine.remove_volume()
        for path in (HOST_VARS, lock_copy(NAME), lock_copy(SECOND)):
            if os.path.exists(path):
                os.remove(path)
    clean_up()
    os.makedirs(os.path.dirname(HOST_VARS), exist_ok=True)
    with open(HOST_VARS, "w") as settings:
        json.dump(SETTING, settings)  # JSON is YAML
    try:
        yield machine
    finally:
        clean_up()


def test_a_port_in_use_stops_up_before_anything_is_created(machine):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = tool("up", DEVBOX_PORT=str(taken))
    assert result.returncode != 0
    assert f"port {taken} on 127.0.0.1 is in use" in result.stderr and "DEVBOX_PORT" in result.stderr, said(result)
    assert "==>" not in result.stdout, "nothing is built or started"
    assert machine.inspect() is None, "no container is left behind"


def test_a_setting_in_host_vars_stays_through_plain_reruns(machine):
    first = tool("up")
    assert first.returncode == 0, said(first)
    assert f"==> starting {NAME}" in first.stdout
    assert jupyter_settings(machine)["MappingKernelManager"]["cull_idle_timeout"] == 3600
    assert os.path.exists(lock_copy(NAME)), "the lock copy is named after the machine"
    again = tool("up")
    assert again.returncode == 0, said(again)
    assert recap_changed(again.stdout) == 0, changed_tasks(again.stdout)
    assert "starting" not in again.stdout, "a running container that is kept gets no `starting` line"
    assert "pulling" not in first.stderr + again.stderr, "the base image is there: no pull is tried"
    assert jupyter_settings(machine)["MappingKernelManager"]["cull_idle_timeout"] == 3600


def test_yaml_vars_are_applied_and_the_shell_runs_the_venvs_python(machine):
    result = tool("up", VARS="python_env_packages: [humanize]")
    assert result.returncode == 0, said(result)
    assert recap_changed(result.stdout) > 0
    shell = tool("shell", CMD="python -c 'import getpass, humanize, os, sys; "
                              "print(getpass.getuser(), os.getcwd(), sys.executable)'")
    assert shell.returncode == 0, said(shell)
    assert shell.stdout.split() == [USER, PROJECT, f"{VENV}/bin/python"]
    assert tool("shell", CMD="exit 3").returncode == 3, "the command's exit status is the shell's"
    typed = 'echo "[$VIRTUAL_ENV|$PWD|$(whoami)]"; exit\n'
    assert f"[{VENV}|{PROJECT}|{USER}]" in at_a_terminal("shell", typed), "an interactive bash, the same way"


def test_check_says_what_the_next_up_would_change_and_changes_nothing(machine):
    result = tool("check", VARS="python_env_packages: [humanize, tomli-w]")
    assert result.returncode == 0, said(result)
    assert recap_changed(result.stdout) > 0
    assert tool("shell", CMD="python -c 'import tomli_w'").returncode != 0, "a dry run installs nothing"


def test_status_hides_the_token_unless_asked(machine):
    token = machine.exec(f"cat {HOME}/.jupyter/devbox_token").stdout.strip()
    status = [sys.executable, os.path.join(ROOT, "tools", "local_status.py")]
    env = dict(os.environ, DEVBOX_NAME=NAME, DEVBOX_VOLUME=VOLUME, VARS="")
    hidden = subprocess.run(status, env=dict(env, SHOW_TOKEN="0"), capture_output=True, text=True, timeout=300)
    assert hidden.returncode == 0 and token and token not in hidden.stdout, hidden.stdout + hidden.stderr
    assert "token hidden" in hidden.stdout
    shown = subprocess.run(status, env=dict(env, SHOW_TOKEN="1"), capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and f"token={token}" in shown.stdout, shown.stdout + shown.stderr
    unclear = subprocess.run(status, env=dict(env, SHOW_TOKEN="maybe"), capture_output=True, text=True, timeout=300)
    assert unclear.returncode != 0 and "SHOW_TOKEN='maybe' must be 1" in unclear.stderr


def test_restart_restarts_the_services_not_the_container(machine):
    started = docker("inspect", "-f", "{{.State.StartedAt}}", NAME).stdout
    pid_file = f"{HOME}/{STATE_DIR}/jupyter.pid"
    before = machine.exec(f"cat {pid_file}").stdout
    result = tool("restart")
    assert result.returncode == 0, said(result)
    assert re.search(r"^==> jupyter: \S", result.stdout, re.M), result.stdout
    assert machine.exec(f"cat {pid_file}").stdout != before
    assert docker("inspect", "-f", "{{.State.StartedAt}}", NAME).stdout == started


def test_logs_show_pid_1_and_jupyter(machine):
    result = tool("logs")
    assert result.returncode == 0, said(result)
    assert f"==> PID 1 of {NAME}" in result.stdout and f"==> jupyter ({JUPYTER_LOG}" in result.stdout
    last = machine.exec(f"tail -n 1 {JUPYTER_LOG}", user=USER).stdout.strip()
    assert last and last in result.stdout.split(f"==> jupyter ({JUPYTER_LOG}")[1]


def test_down_stops_jupyter_cleanly_and_keeps_the_volume(machine):
    result = tool("down")
    assert result.returncode == 0, said(result)
    assert "stopping" in result.stdout and f"volume {VOLUME} kept" in result.stdout
    assert machine.inspect() is None
    log = docker("run", "--rm", "-v", f"{VOLUME}:{HOME}", "--entrypoint", "tail", TEST_IMAGE, "-n", "5",
                 JUPYTER_LOG).stdout.splitlines()
    # Jupyter's own clean stop on SIGTERM (a SIGKILL ends the log at whatever it said last).
    assert any("ServerApp] received signal 15, stopping" in line for line in log), log
    assert re.search(r"ServerApp\] Shutting down \d+ \w+$", log[-1]), log


def test_a_second_name_keeps_its_own_lock(machine):
    result = tool("up", name=SECOND, VARS="python_env_packages: [humanize, tomli-w]")
    assert result.returncode == 0, said(result)
    with open(lock_copy(SECOND)) as second, open(lock_copy(NAME)) as first:
        second_lock, first_lock = second.read(), first.read()
    assert re.search(r"^tomli[-_]w==", second_lock, re.M | re.I), second_lock
    assert re.search(r"^humanize==", first_lock, re.M | re.I), first_lock
    assert not re.search(r"^tomli[-_]w==", first_lock, re.M | re.I), "the first machine's lock is its own"
    gone = tool("destroy", name=SECOND, FORCE="1")
    assert gone.returncode == 0 and f"removed volume {VOLUME}" in gone.stdout, said(gone)
    assert docker("volume", "inspect", VOLUME, check=False).returncode != 0
