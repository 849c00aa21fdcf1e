"""`make status` against a real local machine: every line checked against the container itself.

The machine is provisioned once (site.yml, which also records the run); status must read it
without changing it, hide the token unless asked, list what the next run would change, and say
plainly when the container is stopped or gone.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from docker_machines import ROOT, TEST_IMAGE, LocalMachine, docker, free_port, fresh, local_facts, tagged

NAME, VOLUME = tagged("devbox-status-test"), tagged("devbox-status-test-home")
# Every hint names this machine, not the default one.
MAKE = f"DEVBOX_NAME={NAME} DEVBOX_VOLUME={VOLUME} make"
FACTS = local_facts()
USER, HOME = FACTS["user"], FACTS["home"]
JUPYTER_PORT = FACTS["services"][0]["port"]
PACKAGES = {"python_env_packages": ["six==1.16.0"]}
# The one launcher, as the module keeps it (root's own file) and PID 1 runs it; Jupyter's pidfile.
LAUNCHER = f"python3 {HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py jupyter"
PID_FILE = f"{HOME}/.local/state/devbox/jupyter.pid"
# The controller's copy of the machine's lock goes to a folder of this module's own, not the project's locks/.
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")
STREAMLIT = {"name": "streamlit", "packages": ["streamlit"], "port": 8501,
             "command": ["streamlit", "hello", "--server.port", "{port}", "--server.address", "{ip}",
                         "--server.headless", "true"]}


def status(*args, name=NAME, volume=VOLUME, **env):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_status.py"), *args],
                            env=dict(os.environ, DEVBOX_NAME=name, DEVBOX_VOLUME=volume, **env),
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


def line(output: str, prefix: str) -> str:
    found = [text.strip() for text in output.splitlines() if text.strip().startswith(prefix)]
    assert len(found) == 1, output
    return found[0]


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=NAME, volume=VOLUME, image=TEST_IMAGE, port=free_port())) as machine:
        result = machine.provision("-e", json.dumps(dict(PACKAGES, python_env_lock_copy_dir=LOCKS)), capture=True)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        yield machine


def test_status_reports_each_part_as_the_machine_has_it(machine):
    rc, output = status()
    assert rc == 0, output
    token = machine.exec(f"cat {HOME}/.jupyter/devbox_token").stdout.strip()
    assert token and token not in output, "the token is shown only when asked for"
    assert output.startswith(f"{NAME}:\n")
    assert line(output, "jupyter:") == (f"jupyter: up, http://127.0.0.1:{machine.port}/lab; "
                                        f"token hidden: `{MAKE} status SHOW_TOKEN=1` prints the URL with it")
    python = machine.exec(f"{HOME}/project-venv/bin/python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    count = machine.exec(f"ls -d {HOME}/project-venv/lib/python3*/site-packages/*.dist-info | wc -l").stdout.strip()
    assert line(output, "Venv:") == f"Venv: {HOME}/project-venv, Python {python.stdout.strip()}, {count} packages"
    assert line(output, "GPU:") == "GPU: none (no nvidia-smi)"
    meminfo = dict(row.split(":") for row in machine.exec("cat /proc/meminfo").stdout.splitlines())
    assert line(output, "Swap:").startswith(f"Swap: {int(meminfo['SwapTotal'].split()[0]) // 1024} MB, ")
    size = machine.exec(f"df -k --output=size {HOME} | tail -1").stdout.strip()
    assert line(output, "Volume:").startswith(f"Volume: {HOME}: {int(size) / 1024 / 1024:.1f} GB, ")
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    assert re.fullmatch(rf"Provisioned: 20\d\d-\d\d-\d\dT[0-9:]+\+00:00 from commit {re.escape(commit)}",
                        line(output, "Provisioned:"))
    assert line(output, "Idle stop:") == "Idle stop: off (idle_stop_minutes: 0)"
    assert line(output, "Next run:") == "Next run: nothing to change, as far as status can tell"


def test_the_shown_token_opens_jupyter(machine):
    rc, output = status("--show-token")
    assert rc == 0, output
    url = re.search(r"jupyter: up, (\S+)", output).group(1)
    assert url.startswith(f"http://127.0.0.1:{machine.port}/lab?token=")
    api = url.replace("/lab?", "/api/contents?")
    with urllib.request.urlopen(api, timeout=20) as response:
        assert response.status == 200 and "content" in json.load(response)


def test_status_changes_nothing_and_a_rerun_records_without_changing(machine):
    record = f"cat {HOME}/.devbox/provisioned.json"
    before, pid = machine.exec(record).stdout, machine.exec(f"cat {PID_FILE}").stdout
    status()
    assert machine.exec(record).stdout == before and machine.exec(f"cat {PID_FILE}").stdout == pid
    result = machine.provision("-e", json.dumps(dict(PACKAGES, python_env_lock_copy_dir=LOCKS)), capture=True)
    assert result.returncode == 0 and re.search(r"changed=0\s", result.stdout), result.stdout[-2000:]
    after = json.loads(machine.exec(record).stdout)
    assert after["commit"] == json.loads(before)["commit"] and after["time"] >= json.loads(before)["time"]
    assert machine.exec(f"stat -c %u:%a {HOME}/.devbox {HOME}/.devbox/provisioned.json").stdout.split() == [
        "0:755", "0:644"]


def test_next_run_names_missing_packages_and_a_stopped_service(machine):
    machine.exec(f"{LAUNCHER} stop", user=USER)
    rc, output = status(VARS=json.dumps({"python_env_packages": ["six==1.16.0", "tomli-w", "six==1.15.0"]}))
    assert rc == 0, output
    assert line(output, "jupyter:").startswith(f"jupyter: DOWN (nothing of the dev user listens on port {JUPYTER_PORT})")
    assert line(output, "Next run:") == ("Next run: install tomli-w, six==1.15.0 (installed: 1.16.0); "
                                         "start jupyter")
    result = machine.provision("-e", json.dumps(dict(PACKAGES, python_env_lock_copy_dir=LOCKS)), capture=True)
    assert result.returncode == 0, result.stdout[-2000:]


def test_every_service_is_listed_and_a_removed_one_is_not(machine):
    """A service of the data alone (issue 19's Streamlit entry) is listed with its URL; removed from the list,
    the next run unregisters it and status no longer lists it."""
    machine.given = {"devbox_services": [STREAMLIT]}
    try:
        machine.remove()
        machine.port = 0
        machine.start()  # publishes streamlit's port too
        result = machine.provision("-e", json.dumps({"python_env_lock_copy_dir": LOCKS}), capture=True)
        assert result.returncode == 0, result.stdout[-3000:]
        rc, output = status(VARS=json.dumps(machine.given))
        here = machine.published_ports()[STREAMLIT["port"]]
        assert line(output, "streamlit:") == f"streamlit: up, http://127.0.0.1:{here}/", output
    finally:
        machine.given = {}
    result = machine.provision("-e", json.dumps({"python_env_lock_copy_dir": LOCKS}), capture=True)
    assert result.returncode == 0, result.stdout[-3000:]
    rc, output = status()
    assert "streamlit" not in output, output


def test_a_fresh_machine_is_reported_as_not_provisioned():
    fresh = LocalMachine(name=f"{NAME}-fresh", volume=f"{VOLUME}-fresh", image=TEST_IMAGE)
    fresh.start()
    try:
        rc, output = status(name=fresh.name, volume=fresh.volume)
        assert rc == 0, output
        assert line(output, "Not provisioned:") == f"Not provisioned: no user {USER} on this machine (run playbooks/site.yml)"
        assert line(output, "Provisioned:").startswith("Provisioned: no record of a run")
        assert line(output, "Next run:") == f"Next run: create the user {USER} and everything in the home"
    finally:
        fresh.remove()
        fresh.remove_volume()


def test_a_stopped_or_removed_container_is_said_plainly(machine):
    docker("stop", "-t", "5", NAME, quiet=True)
    rc, output = status()
    assert (rc, output) == (0, f"{NAME}:\n  down: the container is exited; volume {VOLUME} kept (venv, notebooks, "
                                f"token). `{MAKE} up` starts it again.\n")
    machine.remove()
    rc, output = status()
    assert (rc, output) == (0, f"{NAME}:\n  down: no container; volume {VOLUME} kept (venv, notebooks, token). "
                               f"`{MAKE} up` starts it.\n")
