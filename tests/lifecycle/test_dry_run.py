"""`ansible-playbook --check` on a fresh and on a converged machine, and what each task costs.

A dry run changes nothing, says what would change (`--diff`: the settings files, passwords
masked), and every run, dry or not, pipelines: with Ansible's own strategy one exec per module
run (the default), no file upload, no PTY; with Mitogen one exec for the whole run.
"""
import json
import os
import re
import stat
import tempfile
import threading
import time

import pytest

from docker_machines import TEST_IMAGE, LocalMachine, fresh, tagged

HOME = "/home/pythonuser"
PACKAGES = {"python_env_packages": ["six==1.16.0"]}
# A run with everything to do: devbox_look, devbox_user, devbox_gpu, the /proc/meminfo read, devbox_venv (with the
# ~/.bashrc block), devbox_services (every service), devbox_idle_stop, devbox_provision_record (and the stamp).
MODULE_RUNS = 8
# A rerun on a converged machine: the look, and nothing else.
RERUN_MODULE_RUNS = 1
# The controller's copy of the machine's lock goes to a folder of this module's own: every local
# machine is the inventory's one host, devbox-local, and `make up` or another test writing
# locks/devbox-local.requirements.lock meanwhile would make a rerun here report a change.
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")


def recap(output: str) -> dict:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output.split("PLAY RECAP")[-1])
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def run(machine, variables, *extra):
    result = machine.provision("-e", json.dumps(dict(variables, python_env_lock_copy_dir=LOCKS)), *extra, capture=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def assert_pipelined(output: str, module_runs: int = MODULE_RUNS) -> None:
    assert not re.search(r"\bPUT ", output), "a file was uploaded"
    assert "-tt" not in output, "a PTY was requested"
    assert len(re.findall(r"> EXEC ", output)) == module_runs, "not one exec per module run"


@pytest.fixture
def plain_strategy(monkeypatch):
    """Ansible's own strategy, ansible.cfg's default, set here whatever the environment says."""
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-dryrun"), volume=tagged("devbox-dryrun-home"),
                            image=TEST_IMAGE)) as machine:
        yield machine


def test_dry_run_on_a_fresh_machine_changes_nothing(machine, plain_strategy):
    output = run(machine, PACKAGES, "--check", "-vvv")
    assert recap(output)["changed"] > 0
    assert machine.exec("id pythonuser").returncode != 0, "the user was created"
    assert machine.exec(f"ls -A {HOME}").stdout == "", "the volume was written"
    assert_pipelined(output)


def test_a_real_run_pipelines_every_module(machine, plain_strategy):
    output = run(machine, PACKAGES, "-vvv")
    assert recap(output)["changed"] > 0
    assert_pipelined(output)


def test_dry_run_on_a_converged_machine_reports_no_change(machine, plain_strategy):
    output = run(machine, PACKAGES, "--check", "-vvv")
    assert recap(output)["changed"] == 0
    assert_pipelined(output, RERUN_MODULE_RUNS)


def test_with_mitogen_a_rerun_opens_one_exec_for_the_whole_run(machine, tmp_path, monkeypatch):
    """Mitogen (ANSIBLE_STRATEGY=mitogen_linear) keeps one interpreter on the machine for the run: the
    docker client is asked for one `exec`, where Ansible's own strategy asks for one per module run."""
    calls = tmp_path / "docker-calls"
    shim = tmp_path / "docker"
    shim.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec /usr/bin/docker "$@"\n')
    shim.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    for strategy, execs in (("linear", RERUN_MODULE_RUNS), ("mitogen_linear", 1)):
        calls.write_text("")
        monkeypatch.setenv("ANSIBLE_STRATEGY", strategy)
        output = run(machine, PACKAGES)
        assert recap(output)["changed"] == 0, re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?changed: ",
                                                       output) or output[-3000:]
        assert calls.read_text().split().count("exec") == execs, strategy


def test_dry_run_shows_what_would_change_without_the_password(machine):
    pip_conf = machine.exec(f"cat {HOME}/project-venv/pip.conf").stdout
    variables = {"python_env_packages": ["six==1.16.0", "tomli==2.0.1"],
                 "python_env_extra_index_urls": ["https://user:s3cret@mirror.example/simple"]}
    output = run(machine, variables, "--check", "--diff", "-v")
    assert recap(output)["changed"] == 1  # the venv task: a new package, new settings
    assert "+extra-index-url = https://user:********@mirror.example/simple" in output
    assert "s3cret" not in output
    assert machine.exec(f"cat {HOME}/project-venv/pip.conf").stdout == pip_conf
    assert machine.exec(f"ls {HOME}/project-venv/lib/python3*/site-packages | grep -c tomli").stdout.strip() == "0"


# An index that accepts connections and answers nothing for a while: the install waits on it.
SLOW_INDEX = """
import socket, threading, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 9099)); server.listen(16)
def hold(connection): time.sleep(4); connection.close()
while True: threading.Thread(target=hold, args=(server.accept()[0],)).start()
"""


def test_an_install_never_shows_the_password_on_a_command_line(machine):
    """While the installer talks to an index with a password, no process's command line on the
    machine holds it, and the failed run's output does not either."""
    machine.exec(f"nohup python3 -c '{SLOW_INDEX}' >/dev/null 2>&1 &")
    variables = {"python_env_packages": ["six==1.16.0", "tomli==2.0.1"],
                 "python_env_extra_index_urls": ["http://user:s3cret@127.0.0.1:9099/simple"]}
    seen = []

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen.append(machine.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout)
            time.sleep(0.5)
    watcher = threading.Thread(target=watch)
    watcher.start()
    result = machine.provision("-e", json.dumps(variables), capture=True)
    watcher.join()
    output = result.stdout + result.stderr
    assert any("uv pip install" in snapshot for snapshot in seen), "the installer was never seen running"
    assert not any("s3cret" in snapshot for snapshot in seen)
    assert result.returncode != 0 and "s3cret" not in output
    assert "127.0.0.1:9099" in output, "the failure still names the index"
