"""`ansible-playbook --check` on a fresh and on a converged machine, and what each task costs.

A dry run changes nothing, says what would change (`--diff`: the settings files, passwords
masked), and every run, dry or not, pipelines: one exec per module run, no file upload, no PTY.
"""
import json
import os
import re

import pytest

from local_machine import LocalMachine

IMAGE = os.environ.get("DEVBOX_TEST_IMAGE", "devbox:test")
HOME = "/home/pythonuser"
PACKAGES = {"python_env_packages": ["six==1.16.0"]}
# devbox_user, devbox_gpu, the /proc/meminfo read, devbox_venv, devbox_shell_init, devbox_jupyter,
# devbox_idle_stop, devbox_provision_record.
MODULE_RUNS = 8


def recap(output: str) -> dict:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output.split("PLAY RECAP")[-1])
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def run(machine, variables, *extra):
    result = machine.provision("-e", json.dumps(variables), *extra, capture=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def assert_pipelined(output: str) -> None:
    assert not re.search(r"\bPUT ", output), "a file was uploaded"
    assert "-tt" not in output, "a PTY was requested"
    assert len(re.findall(r"> EXEC ", output)) == MODULE_RUNS, "not one exec per module run"


@pytest.fixture(scope="module")
def machine():
    machine = LocalMachine(name="devbox-dryrun", volume="devbox-dryrun-home", image=IMAGE)
    machine.remove()
    machine.remove_volume()
    machine.start()
    yield machine
    machine.remove()
    machine.remove_volume()


def test_dry_run_on_a_fresh_machine_changes_nothing(machine):
    output = run(machine, PACKAGES, "--check", "-vvv")
    assert recap(output)["changed"] > 0
    assert machine.exec("id pythonuser").returncode != 0, "the user was created"
    assert machine.exec(f"ls -A {HOME}").stdout == "", "the volume was written"
    assert_pipelined(output)


def test_a_real_run_pipelines_every_module(machine):
    output = run(machine, PACKAGES, "-vvv")
    assert recap(output)["changed"] > 0
    assert_pipelined(output)


def test_dry_run_on_a_converged_machine_reports_no_change(machine):
    output = run(machine, PACKAGES, "--check", "-vvv")
    assert recap(output)["changed"] == 0
    assert_pipelined(output)


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
