"""A failing inventory source shows its own message alone (ansible.cfg enables only the project's parsers, and
devbox_yaml leaves a plugin's file to that plugin), for the Makefile's commands and a plain ansible-playbook;
static SSH-host inventories still parse as the README shows them."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ansible_collections.devbox.machine.plugins.inventory.devbox_yaml import names_a_plugin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# The venv's tools and the system's, with no flyctl among them (checked below).
NO_FLY_PATH = f"{BIN}:/usr/bin:/bin"


def ansible(tool: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **env))


def failed_parsers(output: str) -> set[str]:
    return set(re.findall(r"Failed to parse inventory with '([\w.]+)' plugin", output))


@pytest.mark.parametrize("command", [
    ("ansible-playbook", "playbooks/site.yml", "--list-hosts"),  # a plain run, with ansible.cfg's inventory/fly.yml
    ("ansible-playbook", "playbooks/ssh_config.yml", "--list-hosts"),  # what `make ssh-config` runs
    ("ansible-playbook", "-i", "inventory/fly.yml", "playbooks/status.yml", "--list-hosts"),
], ids=["site", "ssh-config", "status"])
def test_without_flyctl_the_fly_inventory_message_is_the_only_one(command, tmp_path):
    assert all(shutil.which(name, path=NO_FLY_PATH) is None for name in ("fly", "flyctl"))
    result = ansible(*command, PATH=NO_FLY_PATH, HOME=str(tmp_path), DEVBOX_FLY_COMMAND="")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "fly inventory: flyctl is not installed" in output
    assert failed_parsers(output) == {"fly"}, output
    assert "not YAML inventory" not in output and "Invalid host pattern" not in output


def test_a_bad_local_machine_name_is_the_local_inventory_message_alone():
    result = ansible("ansible-inventory", "-i", "inventory/local.yml", "--list", DEVBOX_NAME="../elsewhere")
    assert result.returncode != 0 and "DEVBOX_NAME" in result.stderr
    assert failed_parsers(result.stderr) == {"devbox_local"}, result.stderr


def test_the_ssh_host_inventory_of_the_readme_parses_with_its_hosts_and_variables(tmp_path):
    shutil.copy(os.path.join(ROOT, "inventory", "ssh_hosts.example.yml"), tmp_path / "ssh_hosts.yml")
    result = ansible("ansible-inventory", "-i", str(tmp_path / "ssh_hosts.yml"), "--list")
    assert result.returncode == 0, result.stderr
    hosts = json.loads(result.stdout)["_meta"]["hostvars"]
    assert set(hosts) == {"gpu-workstation", "cloud-gpu-vm"}
    assert hosts["gpu-workstation"]["ansible_host"] == "192.0.2.10" and hosts["cloud-gpu-vm"]["dev_user_uid"] == 1001
    assert hosts["gpu-workstation"]["gpu_required"] is True


def test_a_broken_static_inventory_says_what_is_wrong_with_it(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts: [unclosed\n")
    result = ansible("ansible-inventory", "-i", str(tmp_path / "hosts.yml"), "--list")
    assert result.returncode != 0 and failed_parsers(result.stderr) == {"devbox_yaml"}, result.stderr


def test_a_file_naming_a_plugin_is_left_to_that_plugin(tmp_path):
    plugin_file, static, broken = tmp_path / "fly.yml", tmp_path / "hosts.yml", tmp_path / "broken.yml"
    plugin_file.write_text("plugin: fly\n")
    static.write_text("all:\n  hosts:\n    box: {ansible_host: 192.0.2.1}\n")
    broken.write_text("plugin: [\n")
    assert names_a_plugin(str(plugin_file))
    assert not names_a_plugin(str(static)) and not names_a_plugin(str(broken))
