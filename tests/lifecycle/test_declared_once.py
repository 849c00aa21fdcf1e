"""Issue 19's two bugs, against real containers: `make up` takes the port and the home from the facts.

- VARS {"jupyter_port": 9000}: the container publishes 9000 on 127.0.0.1 and the printed URL has port 9000
  (and answers, with its token);
- VARS {"dev_user_name": "alice"}: the volume is mounted at /home/alice and PID 1 is told DEVBOX_HOME=/home/alice
  (a file written there survives `make down && make up`).

The first tests check the tool's part alone (the `docker run` arguments as docker inspect shows them, the
replacement of a container that differs from the facts, a taken port); the last ones run the whole `make up`.
"""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request

import pytest

from docker_machines import (OWN_PORTS, ROOT, TEST_IMAGE, LocalMachine, MachineError, docker, free_port, fresh,
                             port_is_free, tagged)

NAME, VOLUME = tagged("devbox-declared"), tagged("devbox-declared-home")
# The inputs of issue 19's two commands.
PORT, USER = 9000, "alice"
URL_LINE = re.compile(r"jupyter: (http://127\.0\.0\.1:(\d+)/lab\?token=[0-9A-Za-z_-]+)")


def inspected(name: str = NAME) -> dict:
    return json.loads(docker("inspect", "--type", "container", name).stdout)[0]


def needs_port(port: int) -> None:
    if not port_is_free(port):
        pytest.skip(f"port {port} of this computer is in use by another program: issue 19's command needs it")


def local_machine(action: str, variables: dict | None = None, **environ: str) -> subprocess.CompletedProcess:
    """`tools/local_machine.py <action>` (what `make <action>` runs) for this test's machine, with VARS."""
    env = dict(os.environ, DEVBOX_NAME=NAME, DEVBOX_VOLUME=VOLUME, DEVBOX_IMAGE=TEST_IMAGE, DEVBOX_GPUS="none",
               VARS=json.dumps(variables or {}))
    env.pop("DEVBOX_PORT", None)
    env.update(environ)
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), action], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=1200)


@pytest.fixture
def machine():
    """This test's container and volume, removed before and after."""
    with fresh(LocalMachine(name=NAME, volume=VOLUME, image=TEST_IMAGE), start=False) as machine:
        yield machine


def test_the_jupyter_port_is_what_is_published_and_what_the_url_says(machine):
    needs_port(PORT)
    machine.port, machine.given = OWN_PORTS, {"jupyter_port": PORT}
    machine.start()
    bindings = inspected()["HostConfig"]["PortBindings"]
    assert bindings == {f"{PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
    command = machine.playbook_command()
    assert {"devbox_address_here": "127.0.0.1", "devbox_ports_here": {str(PORT): PORT}} in [
        json.loads(word) for word in command if word.startswith("{")]
    assert {"jupyter_port": PORT} in [json.loads(word) for word in command if word.startswith("{")]


def test_the_volume_is_mounted_at_the_home_the_variables_name(machine):
    machine.given = {"dev_user_name": USER}  # the image's own DEVBOX_HOME (another user's) is only a fallback
    machine.start()
    info = inspected()
    assert [(m["Name"], m["Destination"]) for m in info["Mounts"] if m["Type"] == "volume"] == [(VOLUME, f"/home/{USER}")]
    assert f"DEVBOX_HOME=/home/{USER}" in info["Config"]["Env"], "PID 1 is told the home"


def test_a_home_off_the_volume_stops_the_run_before_anything_is_created(machine):
    """The container as the defaults make it (the volume at the default home), then a run naming another user:
    the first task finds the home is no mount point and stops, and nothing of that user exists."""
    machine.start()
    result = machine.provision("-e", json.dumps({"dev_user_name": USER}), capture=True)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    assert f"dev_user_home=/home/{USER} is not a mount point" in output and "Nothing was created" in output, output[-3000:]
    assert machine.exec(f"test -e /home/{USER} || getent passwd {USER}").returncode != 0, "nothing of the user exists"


def test_a_container_that_differs_from_the_facts_is_replaced_and_the_volume_kept(machine):
    machine.start()
    first = inspected()["Id"]
    machine.given = {"dev_user_name": USER}
    reasons = machine.start()
    assert any(f"the home is /home/{USER}" in reason for reason in reasons), reasons
    info = inspected()
    assert info["Id"] != first and [m["Destination"] for m in info["Mounts"] if m.get("Name") == VOLUME] == [f"/home/{USER}"]
    assert docker("volume", "inspect", VOLUME, check=False).returncode == 0


def test_a_taken_port_is_refused_naming_it_and_the_service_with_no_container_left(machine):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = local_machine("up", {"jupyter_port": taken})
    assert result.returncode != 0
    assert f"port {taken} on 127.0.0.1 is in use" in result.stderr and "'jupyter'" in result.stderr, result.stderr
    assert docker("inspect", NAME, check=False).returncode != 0, "no Created container stays behind"
    machine.given, machine.port = {"jupyter_port": taken}, OWN_PORTS
    with pytest.raises(MachineError):
        with socket.create_server(("127.0.0.1", taken)):
            machine.start()


# ---- the whole `make up` (needs the services module and PID 1 of this tree to converge) --------------------

def test_make_up_with_another_jupyter_port_prints_a_url_that_answers(machine):
    needs_port(PORT)
    result = local_machine("up", {"jupyter_port": PORT})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    urls = URL_LINE.findall(output)
    assert [port for _, port in urls] == [str(PORT)], output[-3000:]
    assert docker("port", NAME, f"{PORT}/tcp").stdout.strip() == f"127.0.0.1:{PORT}"
    api = urls[0][0].replace("/lab?", "/api/status?")
    with urllib.request.urlopen(api, timeout=30) as response:
        assert response.status == 200


@pytest.fixture
def alice():
    """`make up` builds the image for the facts' user: alice's is an image of its own (removed after); Jupyter
    on a free port of this computer (8888 may be another machine's)."""
    image = f"{TEST_IMAGE}-{USER}"
    yield {"DEVBOX_IMAGE": image, "DEVBOX_PORT": str(free_port())}
    docker("rm", "-f", NAME, check=False)
    docker("image", "rm", "-f", image, check=False)


def test_make_up_for_alice_keeps_her_home_on_the_volume(machine, alice):
    result = local_machine("up", {"dev_user_name": USER}, **alice)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert machine.exec(f"cat /proc/1/environ | tr '\\0' '\\n' | grep ^DEVBOX_HOME=").stdout.strip() == \
        f"DEVBOX_HOME=/home/{USER}"
    assert machine.exec(f"mountpoint -q /home/{USER}").returncode == 0
    machine.exec(f"echo kept > /home/{USER}/project/kept.txt", user=USER)
    assert local_machine("down", **alice).returncode == 0
    result = local_machine("up", {"dev_user_name": USER}, **alice)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert machine.exec(f"cat /home/{USER}/project/kept.txt").stdout.strip() == "kept"
