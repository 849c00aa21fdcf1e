"""TensorBoard, the second service: on the loopback only, behind Jupyter's login, restored after a restart.

One local machine (the shipped image, a named volume as home) is provisioned with
tensorboard_enabled: true and its default address; the tests check where it listens, that it is
reached only through Jupyter with Jupyter's token, that bad addresses are refused
before anything changes, that a plain `docker restart` (PID 1 alone, no Ansible) brings both
services back, that a rerun changes nothing, and that a running TensorBoard does not keep an
idle machine up.
"""
import json
import os
import re
import tempfile
import time

import pytest

from docker_machines import LocalMachine, ROOT, TEST_IMAGE, changed_tasks, docker, fresh, recap_changed, said, tagged, wait_until

NAME = tagged("devbox-tensorboard")
HOME = "/home/pythonuser"
# The one launcher for every service, as the module keeps it (root's own file under ~/.devbox/lib/).
LIBRARY = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils"
LAUNCHER = f"python3 {LIBRARY}/devbox_launcher.py"
SERVICES = ("jupyter", "tensorboard")
# Reads /proc/net/tcp{,6} with the image's own code: every socket listening on the port, any user's.
LISTENING = ("python3 -c \"import sys; sys.path.insert(0, '/usr/local/lib/devbox'); "
             "from ansible_collections.devbox.machine.plugins.module_utils import devbox_service; "
             "print(sorted({{address for address, _, _ in devbox_service.listening_sockets({port})}}))\"")


# A Jupyter setting of the user's, merged into the server's settings file.
SERVER_SETTINGS = {"ServerApp": {"iopub_data_rate_limit": 12345678}}
# The controller's copy of the machine's lock goes to a folder of this module's own: every local
# machine is the inventory's one host, devbox-local, and `make up` or another test writing
# locks/devbox-local.requirements.lock meanwhile would make a rerun here report a change.
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")


def run(machine, *extra, **variables):
    settings = {"python_env_packages": [], "tensorboard_enabled": True,
                "jupyter_server_settings": SERVER_SETTINGS, "python_env_lock_copy_dir": LOCKS, **variables}
    result = machine.provision("-e", json.dumps(settings), *extra, capture=True)
    return result.returncode, result.stdout + result.stderr


def status(machine, service: str) -> dict:
    result = machine.exec(f"{LAUNCHER} {service} status", user="pythonuser")
    return json.loads(result.stdout or "{}")


@pytest.fixture(scope="module")
def machine():
    # PID 1 looks every 2 s whether the machine is in use (idle stop, the last test) instead of every 60 s.
    with fresh(LocalMachine(name=NAME, volume=f"{NAME}-home", image=TEST_IMAGE,
                            env={"DEVBOX_IDLE_POLL_S": "2"})) as machine:
        rc, output = run(machine)
        assert rc == 0, output[-3000:]
        assert re.search(r"tensorboard: http://localhost:8888/proxy/6006/\?token=[\w.~-]{32,}'", output), output[-3000:]
        assert "Logs: /home/pythonuser/.local/state/devbox/<service>.log" in output
        yield machine


def private_address(machine) -> str:
    return machine.exec(f"getent hosts {NAME}").stdout.split()[0]


# GET a URL inside the machine, redirects not followed; prints the status code and the body.
GET = ("python3 -c \"import sys, urllib.request, urllib.error\n"
       "class Stay(urllib.request.HTTPRedirectHandler):\n"
       "    def redirect_request(self, *args): return None\n"
       "try: answer = urllib.request.build_opener(Stay).open(sys.argv[1], timeout=10)\n"
       "except urllib.error.HTTPError as error: answer = error\n"
       "print(answer.status); print(answer.read().decode())\" '{url}'")


def test_tensorboard_listens_on_the_loopback_only_and_is_reached_behind_jupyters_login(machine):
    address = private_address(machine)
    tensorboard = status(machine, "tensorboard")
    assert tensorboard["healthy"] and tensorboard["url"] == "http://127.0.0.1:6006/"
    assert tensorboard["log"] == f"{HOME}/.local/state/devbox/tensorboard.log"
    assert machine.exec(LISTENING.format(port=6006)).stdout.strip() == repr(["127.0.0.1"]), "one address, no wildcard"
    refused = machine.exec(f"python3 -c \"import socket; print(socket.socket().connect_ex(('{address}', 6006)))\"")
    assert refused.stdout.strip() != "0", "TensorBoard answers on the private address: no login stands before it"
    token = machine.exec(f"cat {HOME}/.jupyter/devbox_token").stdout.strip()
    through_jupyter = f"http://{address}:8888/proxy/6006/data/environment"
    answer = machine.exec(GET.format(url=f"{through_jupyter}?token={token}")).stdout.split("\n", 1)
    assert answer[0] == "200" and json.loads(answer[1])["data_location"] == f"{HOME}/project/runs", answer
    for wrong in ("", "?token=" + "x" * 43):
        answer = machine.exec(GET.format(url=through_jupyter + wrong)).stdout.split("\n", 1)
        assert answer[0] in ("302", "403") and "data_location" not in answer[1], answer
    owner = machine.exec(f"stat -c '%U %a' {HOME}/.devbox/service-tensorboard.json").stdout.split()
    assert owner == ["root", "644"], "the record PID 1 reads is root's own"
    record = json.loads(machine.exec(f"cat {HOME}/.devbox/service-tensorboard.json").stdout)
    assert record["name"] == "tensorboard" and record["port"] == 6006 and record["ip"] == "127.0.0.1"
    assert record["command"][:3] == ["tensorboard", "--logdir", "{project}/runs"] and not record["counts_as_use"]
    # The launcher and the code it imports: root's own files in root's own folders, the modules' very files.
    owners = machine.exec(f"stat -c '%U %a' {HOME}/.devbox {LIBRARY} {LIBRARY}/devbox_address.py "
                          f"{LIBRARY}/devbox_launcher.py").stdout.split()
    assert owners == ["root", "755", "root", "755", "root", "644", "root", "644"]
    kept = machine.exec(f"cat {LIBRARY}/devbox_launcher.py").stdout
    with open(os.path.join(ROOT, "plugins", "module_utils", "devbox_launcher.py")) as source:
        assert kept.strip() == source.read().strip()


@pytest.mark.parametrize("variables, expected", [
    ({"tensorboard_ip": "0.0.0.0"}, "tensorboard_ip=0.0.0.0"),
    ({"tensorboard_ip": "8.8.8.8"}, "tensorboard_ip=8.8.8.8"),
    ({"tensorboard_port": 8888}, "services 'jupyter' and 'tensorboard' both want port 8888"),
    ({"tensorboard_enabled": "maybe"}, "argument 'tensorboard_enabled' is of type str and we were unable to convert to bool"),
    ({"jupyter_server_settings": {"ServerApp": {"allow_origin": "*"}}},
     "jupyter_server_settings.ServerApp.allow_origin='*' would let any web site use Jupyter"),
])
def test_a_public_or_wildcard_address_is_refused_before_any_change(machine, variables, expected):
    before = status(machine, "tensorboard")["pid"]
    rc, output = run(machine, **variables)
    assert rc != 0 and expected in said(output), output[-3000:]
    assert re.search(r": ok=0\s+changed=0\s+unreachable=0\s+failed=1", output), "the check fails the first task"
    assert status(machine, "tensorboard")["pid"] == before


def test_docker_restart_brings_jupyter_and_tensorboard_back_without_ansible(machine):
    ports = {service: status(machine, service)["url"].rsplit(":", 1)[1] for service in SERVICES}
    started = time.monotonic()
    docker("restart", "-t", "30", NAME, quiet=True)
    assert time.monotonic() - started < 28, "PID 1 stops every service inside fly.toml's kill_timeout"
    for service in SERVICES:
        wait_until(lambda: status(machine, service).get("healthy"), timeout=90, what=f"the boot step to start {service}")
    # The same port, Jupyter's on the new address of the container (resolved again at boot, as on Fly).
    assert status(machine, "jupyter")["url"] == f"http://{private_address(machine)}:{ports['jupyter']}"
    assert status(machine, "tensorboard")["url"] == f"http://127.0.0.1:{ports['tensorboard']}"
    log = docker("logs", NAME, quiet=True).stdout
    for service in SERVICES:
        assert f"devbox-boot: {service}: stopped" in log, log[-2000:]
    assert re.search(r"tensorboard: .*started.* \(listening on [0-9.]+ port 6006\)", log), log[-2000:]
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]


def test_the_users_jupyter_setting_is_in_the_servers_settings(machine):
    config = json.loads(machine.exec(f"cat {HOME}/.jupyter/jupyter_server_config.json").stdout)
    assert config["ServerApp"]["iopub_data_rate_limit"] == 12345678
    assert config["ServerApp"]["ip"] == NAME and config["ServerApp"]["port"] == 8888
    assert status(machine, "jupyter")["healthy"]


def test_rerun_and_dry_run_change_nothing(machine):
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
    rc, output = run(machine, "--check")
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]


def test_a_running_tensorboard_does_not_keep_an_idle_machine_up(machine):
    rc, output = run(machine, idle_stop_minutes=1)
    assert rc == 0, output[-3000:]
    assert status(machine, "tensorboard")["healthy"]
    deadline = time.monotonic() + 60 + 90
    while machine.state() == "running" and time.monotonic() < deadline:
        time.sleep(2)
    log = docker("logs", NAME, quiet=True).stdout
    assert machine.state() != "running", "still running with only TensorBoard serving:\n" + log[-2000:]
    assert "idle stop: nobody used the machine" in log
    assert not re.search(r"idle stop: in use \([^\n]*tensorboard", log), "TensorBoard counted as use"
    assert docker("inspect", "-f", "{{.State.ExitCode}}", NAME, quiet=True).stdout.strip() == "0"
