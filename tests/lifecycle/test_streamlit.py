"""Issue #19's proof: a third service from data alone (Streamlit), with no code, task or template.

One local machine (the shipped image, a named volume as home) is provisioned with one entry in
devbox_services; its port 8501 is published on this computer's 127.0.0.1 (as `make up` publishes
every service's port). The tests check that it answers from this computer, that a rerun changes
nothing, that PID 1 alone brings it back after `docker restart` and on a new container with the
same volume (`make down && make up`), that a bad entry is refused before anything changes, and
that removing the entry stops it and forgets it at the next run.
"""
import json
import re
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from docker_machines import LocalMachine, TEST_IMAGE, changed_tasks, docker, free_port, fresh, recap_changed, said, tagged, wait_until

NAME = tagged("devbox-streamlit")
HOME = "/home/pythonuser"
PORT = 8501
HOST_PORT = free_port()
STREAMLIT = {"name": "streamlit", "packages": ["streamlit"], "port": PORT,
             "command": ["streamlit", "hello", "--server.port", "{port}", "--server.address", "{ip}",
                         "--server.headless", "true"],
             "health": "/_stcore/health"}
LAUNCHER = f"python3 {HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"
RECORD = f"{HOME}/.devbox/service-streamlit.json"
# Reads /proc/net/tcp{,6} with the image's own code: every socket listening on the port, any user's.
LISTENING = ("python3 -c \"import sys; sys.path.insert(0, '/usr/local/lib/devbox'); "
             "from ansible_collections.devbox.machine.plugins.module_utils import devbox_service; "
             "print(sorted({{address for address, _, _ in devbox_service.listening_sockets({port})}}))\"")
# Straight to the published port: an http_proxy from the environment would swallow the request.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The controller's copy of the machine's lock goes to a folder of this module's own: every local
# machine is the inventory's one host, devbox-local, and `make up` or another test writing
# locks/devbox-local.requirements.lock meanwhile would make a rerun here report a change.
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")


def run(machine, services=(STREAMLIT,), *extra):
    variables = {"python_env_packages": [], "devbox_services": list(services), "python_env_lock_copy_dir": LOCKS}
    # Where this computer reaches the published port: the report prints http://127.0.0.1:<HOST_PORT>/.
    here = {"devbox_address_here": "127.0.0.1", "devbox_ports_here": {str(PORT): HOST_PORT}}
    result = machine.provision("-e", json.dumps(variables), "-e", json.dumps(here), *extra, capture=True)
    return result.returncode, result.stdout + result.stderr


def status(machine, service: str = "streamlit") -> dict:
    return json.loads(machine.exec(f"{LAUNCHER} {service} status", user="pythonuser").stdout or "{}")


def health_from_host() -> str | None:
    """What the published port's health path answers on this computer; None when nothing does."""
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{HOST_PORT}/_stcore/health", timeout=5) as response:
            return response.read().decode() if response.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


def processes_matching(machine, pattern: str) -> list[str]:
    """Pids whose command line matches the grep pattern (write it so it cannot match itself: '[s]treamlit')."""
    return machine.exec(f"for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline 2>/dev/null | grep -q '{pattern}'"
                        " && echo ${d#/proc/}; done; true").stdout.split()


def private_address(machine) -> str:
    return machine.exec(f"getent hosts {NAME}").stdout.split()[0]


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=NAME, volume=f"{NAME}-home", image=TEST_IMAGE,
                            run_args=["-p", f"127.0.0.1:{HOST_PORT}:{PORT}"])) as machine:
        rc, output = run(machine)
        assert rc == 0, output[-3000:]
        assert f"streamlit: http://127.0.0.1:{HOST_PORT}/" in output, output[-3000:]
        assert "jupyter: listens on port 8888, not published here" in output, output[-3000:]  # only 8501 is
        assert f"Logs: {HOME}/.local/state/devbox/<service>.log" in output
        yield machine


def test_streamlit_answers_from_this_computer_on_the_private_address_only(machine):
    assert health_from_host() == "ok"
    address = private_address(machine)
    found = status(machine)
    assert found["healthy"] and found["url"] == f"http://{address}:{PORT}/", found
    assert found["log"] == f"{HOME}/.local/state/devbox/streamlit.log"
    assert machine.exec(LISTENING.format(port=PORT)).stdout.strip() == repr([address]), "one address, no wildcard"
    # Run as the user, from the venv the entry's package went into.
    owner = machine.exec(f"stat -c %U /proc/{found['pid']}").stdout.strip()
    assert owner == "pythonuser"
    assert f"{HOME}/project-venv/bin/" in machine.exec(f"tr '\\0' ' ' < /proc/{found['pid']}/cmdline").stdout
    assert machine.exec(f"stat -c '%U %a' {RECORD}").stdout.split() == ["root", "644"], "PID 1 reads root's record"
    record = json.loads(machine.exec(f"cat {RECORD}").stdout)
    assert {key: record[key] for key in ("name", "port", "ip", "command", "health")} == {
        "name": "streamlit", "port": PORT, "ip": NAME, "command": STREAMLIT["command"], "health": "/_stcore/health"}
    assert record["counts_as_use"] is False and record["restart_on_change"] is True
    assert status(machine, "jupyter")["healthy"], "Jupyter is served beside it"


def test_a_rerun_changes_nothing(machine):
    pid = status(machine)["pid"]
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
    assert status(machine)["pid"] == pid


@pytest.mark.parametrize("entry, expected", [
    ({"port": 8888}, "services 'jupyter' and 'streamlit' both want port 8888"),
    ({"ip": "0.0.0.0"}, "service streamlit: ip=0.0.0.0 must be a loopback or private address"),
    ({"name": "jupyter"}, "devbox_services: 'jupyter' is built in"),
])
def test_a_bad_entry_is_refused_before_any_change(machine, entry, expected):
    pid = status(machine)["pid"]
    record = machine.exec(f"cat {RECORD}").stdout
    rc, output = run(machine, [dict(STREAMLIT, **entry)])
    assert rc != 0 and expected in said(output), output[-3000:]
    assert re.search(r": ok=0\s+changed=0\s+unreachable=0\s+failed=1", output), "the check fails the first task"
    assert status(machine)["pid"] == pid and machine.exec(f"cat {RECORD}").stdout == record


def test_docker_restart_brings_it_back_without_ansible(machine):
    assert status(machine)["healthy"]
    started = time.monotonic()
    docker("restart", "-t", "30", NAME, quiet=True)
    assert time.monotonic() - started < 28, "PID 1 stops every service inside fly.toml's kill_timeout"
    wait_until(health_from_host, timeout=90, interval=0.5, what="PID 1 to start streamlit again")
    found = status(machine)
    assert found["healthy"] and found["url"] == f"http://{private_address(machine)}:{PORT}/"
    log = docker("logs", NAME, quiet=True).stdout
    assert "devbox-boot: streamlit: stopped" in log, log[-2000:]
    assert re.search(rf"devbox-boot: streamlit: started, pid \d+ \(listening on [0-9.]+ port {PORT}\)", log), log[-2000:]
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]


def test_a_new_container_on_the_same_volume_brings_it_back(machine):
    # As `make down && make up`: the container goes, the volume stays, a new container starts.
    machine.remove()
    machine.start()
    wait_until(health_from_host, timeout=90, interval=0.5, what="PID 1 of the new container to start streamlit")
    found = status(machine)
    assert found["healthy"] and found["url"] == f"http://{private_address(machine)}:{PORT}/"
    assert json.loads(machine.exec(f"cat {RECORD}").stdout)["name"] == "streamlit", "the record lives on the volume"
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
    assert f"streamlit: http://127.0.0.1:{HOST_PORT}/" in output


def test_removing_the_entry_stops_it_at_the_next_run(machine):
    assert processes_matching(machine, "[s]treamlit hello")
    rc, output = run(machine, [])
    assert rc == 0, output[-3000:]
    assert "streamlit:" not in output.split("PLAY RECAP")[0].split("Report how to reach the machine")[-1]
    assert machine.exec(LISTENING.format(port=PORT)).stdout.strip() == "[]", "something still listens on 8501"
    assert health_from_host() is None
    assert machine.exec(f"test -e {RECORD}").returncode != 0, "its record is still there"
    assert processes_matching(machine, "[s]treamlit hello") == [], "its process is still there"
    assert machine.exec(f"test -e {HOME}/.local/state/devbox/streamlit.pid").returncode != 0, "its pidfile is left"
    assert status(machine, "jupyter")["healthy"]
    rc, output = run(machine, [])
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
