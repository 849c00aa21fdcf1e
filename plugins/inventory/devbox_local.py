"""Ansible inventory plugin: the local machine of `make up`, one host named as its container.

The container's name is the host's (DEVBOX_NAME, checked like every inventory name by
plugins/module_utils/devbox_names.py), so two local machines side by side are two hosts: their
lock copies (locks/<host>.requirements.lock), host_vars/<host>.yml and the run's hints follow the
name. The target's contract (the docker connection, the home is the volume, the hint) is the
file's `vars`; the container's name is also the address Ansible reaches and the private address
services listen on.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: devbox_local
short_description: The local dev machine's container, named by DEVBOX_NAME
description:
  - One host, named as the container C(make up) runs (O(name), else C(devbox-local)), reached with the docker
    connection; O(vars) are its host variables, with C(ansible_host) and C(devbox_private_ip) set to the name.
  - The name must be letters, digits, C(.), C(_), C(-) or C(:) (no C(..)); any other fails before anything runs.
  - Settings of the user's own come from C(group_vars/all/*.yml) and C(host_vars/<name>.yml) beside the file,
    as for any inventory.
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: [devbox_local]
  name:
    description: The container's name, which is the host's. Empty means C(devbox-local).
    type: str
    default: ""
    env:
      - name: DEVBOX_NAME
  vars:
    description: Host variables of the local target (how it is reached, whether the home is a volume).
    type: dict
    default: {}
"""

EXAMPLES = r"""
# inventory/local.yml
plugin: devbox_local
vars:
  ansible_connection: docker
  dev_user_home_is_volume: true
"""

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

from ansible_collections.devbox.machine.plugins.module_utils.devbox_names import (
    LOCAL_MACHINE_NAME, BadName, checked_name)


def host_name(given: str | None) -> str:
    """The host (and container) name: the one given, else the default; BadName when it cannot be one."""
    return checked_name(given or LOCAL_MACHINE_NAME, "the local machine's name (DEVBOX_NAME)")


def host_vars(name: str, given: dict) -> dict:
    """The host's variables: the file's, and the container's name as the address to reach and to listen on."""
    return dict(given, ansible_host=name, devbox_private_ip=name)


class InventoryModule(BaseInventoryPlugin):
    NAME = "devbox_local"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("local.yml", "local.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            name = host_name(self.get_option("name"))
        except BadName as error:
            raise AnsibleParserError(f"local inventory: {error}") from None
        self.inventory.add_host(name)
        for key, value in host_vars(name, self.get_option("vars") or {}).items():
            self.inventory.set_variable(name, key, value)
