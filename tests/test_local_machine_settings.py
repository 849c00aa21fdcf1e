"""Settings in Ansible's own place, the local host named DEVBOX_NAME, and the edges of the local commands that
need no container: a failing inventory source alone, yes/no settings, `make destroy` without a terminal."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from docker_machines import ROOT, LocalMachine, MachineError, docker, local_host_vars, tagged
from local_machine import confirm_destroy, truthy

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))


def ansible_inventory(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "ansible-inventory"), *args], cwd=ROOT, env=dict(ENV, **env),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def inventories(tmp_path):
    """The project's local inventory and a static SSH-host one side by side, with settings for every machine
    (group_vars/all/*.yml) and for one (host_vars/<host>.yml) beside them, as a user keeps them."""
    shutil.copy(os.path.join(ROOT, "inventory", "local.yml"), tmp_path / "local.yml")
    (tmp_path / "ssh_hosts.yml").write_text(json.dumps({"all": {"hosts": {"gpu-box": {"ansible_host": "10.0.0.5"}}}}))
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "settings.yml").write_text(
        "python_env_packages: [humanize]\njupyter_port: 9000\n")
    (tmp_path / "group_vars" / "all" / "settings.yml.example").write_text("jupyter_port: 1\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "box-two.yml").write_text("jupyter_port: 9100\n")
    return tmp_path


def test_every_inventory_reads_the_settings_beside_it(inventories):
    for source, host, port in [("local.yml", "box-one", 9000), ("local.yml", "box-two", 9100),
                               ("ssh_hosts.yml", "gpu-box", 9000)]:
        result = ansible_inventory("-i", str(inventories / source), "--host", host, DEVBOX_NAME=host)
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert (found["python_env_packages"], found["jupyter_port"]) == (["humanize"], port), (source, host)
    # make up's own reading of them (the container's user, home and ports) is Ansible's.
    one, two = (local_host_vars(name, str(inventories / "local.yml")) for name in ("box-one", "box-two"))
    assert (one["jupyter_port"], two["jupyter_port"]) == (9000, 9100)
    assert two["ansible_host"] == two["devbox_private_ip"] == "box-two"
    assert two["ansible_connection"] == "docker" and two["dev_user_home_is_volume"] is True


def test_the_local_host_is_named_by_devbox_name():
    result = ansible_inventory("-i", "inventory/local.yml", "--list", DEVBOX_NAME="box-three")
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["_meta"]["hostvars"]) == ["box-three"]
    default = {key: value for key, value in ENV.items() if key != "DEVBOX_NAME"}
    result = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", "inventory/local.yml", "--list"],
                            cwd=ROOT, env=default, capture_output=True, text=True, timeout=120)
    assert list(json.loads(result.stdout)["_meta"]["hostvars"]) == ["devbox-local"]


def test_a_name_that_cannot_be_a_file_name_is_refused():
    result = ansible_inventory("-i", "inventory/local.yml", "--list", DEVBOX_NAME="../elsewhere")
    assert result.returncode != 0 and "DEVBOX_NAME" in result.stderr and "'../elsewhere'" in result.stderr
    with pytest.raises(MachineError, match=r"DEVBOX_NAME\) 'a/b' cannot become a file name"):
        LocalMachine("a/b", volume="v", image="i").facts()


def test_a_failing_inventory_source_shows_its_own_message_alone(tmp_path):
    """Without flyctl: the fly inventory's message, not every other parser's complaint about the file."""
    result = ansible_inventory("-i", "inventory/fly.yml", "--list", PATH=f"{BIN}:/usr/bin:/bin",
                               HOME=str(tmp_path), DEVBOX_FLY_COMMAND="")
    assert result.returncode != 0
    assert "fly inventory: flyctl is not installed" in result.stderr
    assert "Invalid host pattern" not in result.stderr and "'ini' plugin" not in result.stderr
    assert "'auto' plugin" not in result.stderr and "'script' plugin" not in result.stderr


def test_yes_and_no_are_spelled_plainly():
    assert [truthy("X", {"X": value}) for value in ("1", "true", "yes", "0", "false", "no", "")] == [
        True, True, True, False, False, False, False]
    assert truthy("X", {}) is False
    with pytest.raises(MachineError, match="X='maybe' must be 1"):
        truthy("X", {"X": "maybe"})


def test_destroy_asks_for_the_volume_name():
    machine = LocalMachine("devbox-unit", volume="devbox-unit-home", image="i")
    confirm_destroy(machine, {"FORCE": "1"}, ask=lambda _: pytest.fail("FORCE=1 asks nothing"))
    if sys.stdin.isatty():
        confirm_destroy(machine, {}, ask=lambda _: "devbox-unit-home")
        with pytest.raises(MachineError, match="nothing removed"):
            confirm_destroy(machine, {}, ask=lambda _: "y")


def test_destroy_without_a_terminal_and_without_force_refuses_and_keeps_the_volume():
    name = tagged("devbox-destroy-test")
    volume = f"{name}-home"
    docker("volume", "create", volume)
    tool = [sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), "destroy"]
    env = dict(os.environ, DEVBOX_NAME=name, DEVBOX_VOLUME=volume)
    try:
        refused = subprocess.run(tool, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode != 0, refused.stdout
        assert "no terminal to ask" in refused.stderr and "FORCE=1" in refused.stderr
        assert docker("volume", "inspect", volume, check=False).returncode == 0, "the volume is kept"
        forced = subprocess.run(tool, env=dict(env, FORCE="1"), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=120)
        assert forced.returncode == 0 and f"removed volume {volume}" in forced.stdout, forced.stdout + forced.stderr
        assert docker("volume", "inspect", volume, check=False).returncode != 0
    finally:
        docker("volume", "rm", "-f", volume, check=False)


def test_the_shipped_examples_are_settings_ansible_reads_once_copied(tmp_path):
    """The examples are not read where they lie (their names end in .example); copied as the README says, they
    are, and they describe a machine."""
    for example in ("group_vars/all/settings.yml.example", "host_vars/devbox-local.yml.example"):
        source = os.path.join(ROOT, "inventory", example)
        copy = tmp_path / example[:-len(".example")]
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, copy)
    shutil.copy(os.path.join(ROOT, "inventory", "local.yml"), tmp_path / "local.yml")
    (tmp_path / "group_vars" / "all" / "settings.yml.example").write_text("jupyter_port: 1\n")
    found = local_host_vars("devbox-local", str(tmp_path / "local.yml"))
    assert found["python_env_packages"] == ["numpy"] and found["tensorboard_enabled"] is True
    assert "jupyter_port" not in found, "a file ending in .example is not read"
    facts = LocalMachine("devbox-local", volume="v", image="i", given=found).facts()
    assert [service["name"] for service in facts["services"]] == ["jupyter", "tensorboard"]
