"""Two `make up` at once: the second waits for the first and says so, instead of both running
`docker run --name` and one failing on the name."""
import os
import subprocess
import sys
import time

import pytest

from docker_machines import ROOT, TEST_IMAGE, LocalMachine, docker, tagged
from local_machine import machine_lock

NAME, VOLUME = tagged("devbox-browser-lock"), tagged("devbox-browser-lock-home")

# One `up` reduced to what collides: take the lock, start the container, then hold on until
# the test lets go (the file named by argv[2] appears).
CONTENDER = f"""
import os, sys, time
sys.path.insert(0, {os.path.join(ROOT, "tools")!r})
from docker_machines import LocalMachine
from local_machine import machine_lock
machine = LocalMachine(name={NAME!r}, volume={VOLUME!r}, image={TEST_IMAGE!r})
with machine_lock(machine.name, lock_dir=sys.argv[1]):
    machine.start()
    print("started", machine.name, flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.1)
"""


def contender(lock_dir, release) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CONTENDER, str(lock_dir), str(release)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_line(process: subprocess.Popen) -> str:
    return process.stdout.readline().strip()


@pytest.fixture
def machine():
    machine = LocalMachine(name=NAME, volume=VOLUME, image=TEST_IMAGE)
    machine.remove()
    yield machine
    machine.remove()
    machine.remove_volume()


def container_ids(name: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"name=^/{name}$", quiet=True).stdout.split()


def test_second_up_waits_for_the_first_and_reuses_its_container(machine, tmp_path):
    release = tmp_path / "release"
    first = contender(tmp_path, release)
    assert read_line(first) == f"started {NAME}"
    started = container_ids(NAME)
    assert len(started) == 1

    second = contender(tmp_path, release)
    waiting = read_line(second)
    assert waiting.startswith(f"==> waiting: pid {first.pid} is working on {NAME}"), waiting
    time.sleep(2)
    assert second.poll() is None, "the second must wait while the first holds the lock"

    release.touch()
    assert first.wait(timeout=60) == 0
    assert read_line(second) == f"started {NAME}"
    assert second.wait(timeout=60) == 0
    assert container_ids(NAME) == started, "the second found the first's container running and kept it"


def test_the_command_line_takes_the_lock():
    """`tools/local_machine.py` (what `make up`, `make down` run) waits while the lock is held."""
    name = tagged("devbox-browser-lock-cli")
    env = dict(os.environ, DEVBOX_NAME=name, DEVBOX_VOLUME=f"{name}-home")
    with machine_lock(name):
        down = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), "down"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert read_line(down).startswith(f"==> waiting: pid {os.getpid()} is working on {name}")
        time.sleep(1)
        assert down.poll() is None
    output = down.communicate(timeout=60)[0]
    assert down.returncode == 0 and f"removed container {name}" in output
