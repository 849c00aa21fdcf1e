"""`make up` takes every fact from the machine's facts: the user's variables (VARS), checked and passed on
as JSON; the volume at the home; PID 1 told the home; every service's port published on 127.0.0.1; a
container that differs from the facts replaced; a taken port refused with nothing left behind."""
import json
import os
import socket
import subprocess
import sys

import pytest

import docker_machines
from docker_machines import (OWN_PORTS, ROOT, LocalMachine, MachineError, as_json, docker, local_facts, parse_vars,
                             tagged)
from local_machine import jupyter_host_port, local_machine, published_in_words

# Inputs of these tests: a port and a user other than the defaults.
PORT, USER = 9000, "alice"


def machine(port=OWN_PORTS, **given) -> LocalMachine:
    return LocalMachine("devbox-unit", volume="devbox-unit-home", image="devbox:unit", port=port, given=given)


def test_vars_are_yaml_or_json_and_must_be_a_mapping():
    assert parse_vars('{"jupyter_port": 9000}') == {"jupyter_port": 9000}
    assert parse_vars("jupyter_port: 9000") == {"jupyter_port": 9000}, "YAML without braces is not dropped"
    assert parse_vars("") == parse_vars(None) == parse_vars("  \n") == {}
    for text in ("jupyter_port=9000", "[9000]", "9000"):
        with pytest.raises(MachineError, match="VARS must be a mapping"):
            parse_vars(text)
    with pytest.raises(MachineError, match="not valid YAML"):
        parse_vars("{jupyter_port: [")


def test_the_vars_reach_the_playbook_as_json():
    command = machine(port=None, jupyter_port=PORT).playbook_command()
    assert json.loads(command[command.index("-e", command.index("-e") + 1) + 1]) == {"jupyter_port": PORT}
    assert json.loads(as_json({"when": __import__("datetime").date(2026, 1, 2)})) == {"when": "2026-01-02"}


def test_the_facts_are_the_defaults_the_local_inventory_and_the_vars():
    facts = local_facts()
    assert facts["home_is_volume"] is True, "inventory/local.yml says the home is the volume"
    alice = machine(dev_user_name=USER, jupyter_port=PORT).facts()
    assert alice["user"] == USER and alice["home"] == f"/home/{USER}"
    assert [(s["name"], s["port"], s["ip"]) for s in alice["services"]] == [("jupyter", PORT, "devbox-unit")]


def test_every_enabled_service_is_published_on_its_own_port():
    assert machine().wanted_ports() == {local_facts()["services"][0]["port"]: (local_facts()["services"][0]["port"],
                                                                                 "jupyter")}
    # On the loopback only (tensorboard_ip's default), TensorBoard is reached through Jupyter's port.
    assert machine(jupyter_port=PORT, tensorboard_enabled=True).wanted_ports() == {PORT: (PORT, "jupyter")}
    both = machine(jupyter_port=PORT, tensorboard_enabled=True, tensorboard_ip="auto", tensorboard_port=6100)
    assert both.wanted_ports() == {PORT: (PORT, "jupyter"), 6100: (6100, "tensorboard")}
    streamlit = {"name": "streamlit", "port": 8501, "command": ["streamlit", "hello"]}
    assert machine(devbox_services=[streamlit]).wanted_ports()[8501] == (8501, "streamlit")
    # DEVBOX_PORT moves Jupyter on this computer (the URL follows), 0 is any free port, None publishes nothing.
    assert machine(port=18870, jupyter_port=PORT).wanted_ports() == {PORT: (18870, "jupyter")}
    assert machine(port=0, tensorboard_enabled=True, tensorboard_ip="auto").wanted_ports() == {
        8888: (0, "jupyter"), 6006: (0, "tensorboard")}
    assert machine(port=None).wanted_ports() == {}
    assert "jupyter on 127.0.0.1:9000" in published_in_words(machine(jupyter_port=PORT))


def test_devbox_port_must_be_a_port():
    assert jupyter_host_port(None) == jupyter_host_port("") == OWN_PORTS
    assert jupyter_host_port("18870") == 18870
    for bad in ("x", "0", "70000", "-1"):
        with pytest.raises(MachineError, match="DEVBOX_PORT"):
            jupyter_host_port(bad)


def test_bad_vars_stop_the_tool_before_anything_is_created():
    environ = {"DEVBOX_NAME": tagged("devbox-never"), "VARS": "[1, 2]"}
    with pytest.raises(MachineError, match="VARS must be a mapping"):
        local_machine(environ)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), "up"],
                            env=dict(os.environ, **environ), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "VARS must be a mapping" in result.stderr and "==>" not in result.stdout
    unusable = dict(environ, VARS=json.dumps({"devbox_services": [{"name": "streamlit"}]}))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), "up"],
                            env=dict(os.environ, **unusable), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "needs a port" in result.stderr and "==>" not in result.stdout
    assert docker("inspect", environ["DEVBOX_NAME"], check=False).returncode != 0


def inspected(home="/home/pythonuser", bindings=None, env=None, image="sha256:built", volume="devbox-unit-home"):
    """What `docker inspect` says of a container, cut to what the comparison reads."""
    return {"Image": image, "State": {"Status": "running"},
            "Mounts": [{"Type": "volume", "Name": volume, "Destination": home}],
            "Config": {"Env": env if env is not None else [f"DEVBOX_HOME={home}"]},
            "HostConfig": {"PortBindings": bindings if bindings is not None else
                           {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8888"}]}, "DeviceRequests": None}}


@pytest.fixture
def built(monkeypatch):
    """The image id `docker image inspect` gives, without docker."""
    monkeypatch.setattr(docker_machines, "docker", lambda *args, **_: subprocess.CompletedProcess(
        args, 0, "sha256:built\n", ""))


def test_a_container_that_is_the_facts_is_kept(built):
    assert machine().differences(inspected()) == []
    assert machine(port=0).differences(inspected(bindings={"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})) \
        == []


def test_a_container_that_differs_from_the_facts_is_replaced(built):
    alice = machine(dev_user_name=USER)
    assert alice.differences(inspected()) == [
        f"the volume devbox-unit-home is mounted at /home/pythonuser, the home is /home/{USER}",
        f"PID 1 was not told the home /home/{USER}"]
    moved = machine(jupyter_port=PORT).differences(inspected())
    assert moved == [f"it publishes 127.0.0.1:8888->8888, the services want 127.0.0.1:{PORT}->{PORT}"]
    everywhere = {"8888/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8888"}]}
    assert machine().differences(inspected(bindings=everywhere)), "only 127.0.0.1 is kept"
    assert machine().differences(inspected(image="sha256:older")) == ["it runs another image than devbox:unit"]
    assert machine(tensorboard_enabled=True, tensorboard_ip="auto").differences(inspected()), \
        "a new service's port is published"


def test_a_taken_port_names_the_port_and_the_service():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(MachineError) as refused:
            machine(jupyter_port=taken).check_ports_free(None)
        assert f"port {taken} on 127.0.0.1 is in use" in str(refused.value)
        assert "'jupyter'" in str(refused.value) and "jupyter_port" in str(refused.value)
        # The container's own ports are its own, not taken.
        own = {"NetworkSettings": {"Ports": {f"{taken}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(taken)}]}}}
        machine(jupyter_port=taken).check_ports_free(own)


def test_a_port_docker_cannot_publish_leaves_no_created_container(monkeypatch):
    calls = []

    def fake_docker(*args, check=True, **_):
        calls.append(args[:1])
        if args[0] == "run":
            raise docker_machines.DockerError(125, ["docker", *args], "", "Error starting userland proxy: "
                                              "listen tcp4 127.0.0.1:9000: bind: address already in use")
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(docker_machines, "docker", fake_docker)
    with pytest.raises(MachineError, match=r"port 9000 on 127\.0\.0\.1 is in use .* 'jupyter'"):
        machine(jupyter_port=PORT).run()
    assert calls == [("run",), ("rm",)], "the container docker created is removed"


def test_docker_run_arguments_follow_the_facts(monkeypatch):
    runs = []
    monkeypatch.setattr(docker_machines, "docker", lambda *args, **_: runs.append(args) or
                        subprocess.CompletedProcess(args, 0, "", ""))
    machine(dev_user_name=USER, jupyter_port=PORT, tensorboard_enabled=True, tensorboard_ip="auto").run()
    (args,) = runs
    assert args[args.index("-v") + 1] == f"devbox-unit-home:/home/{USER}"
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "-p"] == ["127.0.0.1:6006:6006",
                                                                         f"127.0.0.1:{PORT}:{PORT}"]
    assert f"--env=DEVBOX_HOME=/home/{USER}" in args


def test_the_facts_are_kept_and_worked_out_again_only_when_what_they_come_from_changes(tmp_path, monkeypatch):
    """`make up` on a converged machine reads the kept facts (no Ansible to import); a changed setting, variable or
    file of the code works them out again."""
    monkeypatch.setattr(docker_machines, "FACTS_CACHE", str(tmp_path / "facts"))
    first = machine(jupyter_port=PORT).facts()
    assert oct(os.stat(tmp_path / "facts" / "devbox-unit.json").st_mode & 0o777) == "0o600"

    def not_again(self):
        raise AssertionError("worked out again")
    with monkeypatch.context() as patched:
        patched.setattr(LocalMachine, "_work_out_facts", not_again)
        assert machine(jupyter_port=PORT).facts() == first
    other = machine(jupyter_port=PORT + 1).facts()
    assert other["services"][0]["port"] == PORT + 1


def test_a_changed_setting_file_changes_the_digest_and_a_lookup_turns_the_cache_off(tmp_path):
    for top in ("inventory/group_vars/all", "roles", "plugins", "tools"):
        (tmp_path / top).mkdir(parents=True)
    (tmp_path / "tools" / "docker_machines.py").write_text("# the code\n")
    settings = tmp_path / "inventory" / "group_vars" / "all" / "mine.yml"
    settings.write_text("jupyter_port: 9000\n")
    before = docker_machines.facts_digest("m", "{}", str(tmp_path))
    assert before and docker_machines.facts_digest("m", "{}", str(tmp_path)) == before
    assert docker_machines.facts_digest("m", '{"a": 1}', str(tmp_path)) != before
    settings.write_text("jupyter_port: 9001\n")
    assert docker_machines.facts_digest("m", "{}", str(tmp_path)) not in (None, before)
    settings.write_text("jupyter_port: \"{{ lookup('env', 'PORT') }}\"\n")
    assert docker_machines.facts_digest("m", "{}", str(tmp_path)) is None, "the environment is no file to digest"
