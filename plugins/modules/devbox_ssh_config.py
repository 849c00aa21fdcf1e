#!/usr/bin/python
"""Ansible module (run on the controller): an OpenSSH config with one Host per machine."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_ssh_config
short_description: Write an OpenSSH config naming every machine, for ssh and VS Code Remote-SSH
description:
  - Runs on the controller (delegate_to localhost). Writes I(directory)/devbox_<inventory>.conf (0600, folder 0700)
    with one C(Host devbox-<app>-<name>) per machine reached over SSH, logging in as the dev user with the
    playbook's own key, certificate and ProxyCommand.
  - Machines reached otherwise (docker exec) get no entry; the result says why.
  - Checks that a certificate names the dev user and reports how long it stays valid.
options:
  directory: {type: path, required: true, description: Folder for the config files (inside the project).}
  hosts:
    type: list
    elements: dict
    required: true
    description:
      - One dict per machine with inventory_name, connection, address, port, user, key_file, common_args,
        extra_args, fly_app, inventory_file (as the playbook collects them from the inventory).
author: devbox maintainers
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_ssh_config import SshConfigError, file_name, render, write


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "hosts": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    directory, entries = module.params["directory"], module.params["hosts"]
    try:
        text, names, notes = render(entries)
    except SshConfigError as error:
        module.fail_json(msg=str(error))
    name = file_name(entries)
    path = os.path.join(directory, name)
    changed = True if module.check_mode else write(directory, name, text)
    include = f"Include {os.path.join(directory, 'devbox_*.conf')}"
    lines = [f"Wrote {path}: " + (", ".join(names) or "no machine reached over SSH"),
             f"Add this line at the top of ~/.ssh/config (once): {include}",
             *notes]
    if names:
        lines.append(f"Then: ssh {names[0]}   (a shell in ~/project with the venv active)")
    module.exit_json(changed=changed, path=path, hosts=names, include=include, lines=lines)


if __name__ == "__main__":
    main()
