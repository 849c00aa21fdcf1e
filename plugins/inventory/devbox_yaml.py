"""Ansible inventory plugin: a static YAML inventory (inventory/ssh_hosts.yml), read as Ansible's own yaml plugin
reads it, that leaves the files naming a plugin (fly.yml, local.yml) to that plugin.

Ansible tries every enabled parser on a source and, when none parses it, shows each one's failure. Its own yaml
parser takes every .yml and refuses a plugin's configuration ("Plugin configuration YAML file, not YAML
inventory"); so when the fly plugin fails (no flyctl, not logged in), that complaint came after the fly
plugin's message. This one declines such a file instead, and the failing plugin's message stands alone.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: devbox_yaml
short_description: Static YAML inventories, leaving a plugin's configuration file to that plugin
description:
  - Reads a YAML inventory of hosts, groups and their variables exactly as Ansible's own C(yaml) inventory plugin
    does (C(inventory/ssh_hosts.yml) of the SSH-host path).
  - Declines a file whose top level names a C(plugin) (C(inventory/fly.yml), C(inventory/local.yml)), so when that
    plugin fails its message is the only one shown; a file that cannot be read as YAML is still taken, and the
    parse says what is wrong with it.
options:
  yaml_extensions:
    description: The file name endings of YAML inventories.
    type: list
    elements: string
    default: [".yaml", ".yml", ".json"]
"""

EXAMPLES = r"""
# ansible.cfg
# [inventory]
# enable_plugins = host_list, fly, devbox_local, devbox_yaml

# inventory/ssh_hosts.yml
all:
  hosts:
    gpu-workstation:
      ansible_host: 192.0.2.10
      ansible_user: root
"""

from collections.abc import Mapping

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.inventory.yaml import InventoryModule as YamlInventory


def names_a_plugin(path: str) -> bool:
    """The file is a plugin's configuration: a YAML mapping with a `plugin` key (the test Ansible's yaml and auto
    plugins make). False when it cannot be read here (the yaml parse then says why)."""
    try:
        data = DataLoader().load_from_file(path, cache="none")
    except Exception:  # anything the loader raises (a syntax error, a vault without its secret): not ours to say
        return False
    return isinstance(data, Mapping) and bool(data.get("plugin"))


class InventoryModule(YamlInventory):
    NAME = "devbox_yaml"

    def verify_file(self, path):
        return super().verify_file(path) and not names_a_plugin(path)
