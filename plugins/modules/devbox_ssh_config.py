#!/usr/bin/python
"""Ansible module (run on the controller): an OpenSSH config with one Host per machine."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_ssh_config
short_description: Write an OpenSSH config naming every machine, for ssh and VS Code Remote-SSH
description:
  - "Runs on the controller (C(delegate_to: localhost), C(run_once)). Writes C(<directory>/devbox_<inventory>.conf)
    (mode 0600, folder 0700), named after the Fly app when all machines share one, else after the
    inventory files."
  - Each machine reached over SSH becomes one C(Host devbox-<app>-<name>) (Fly) or C(devbox-<name>),
    logging in as the dev user with the playbook's own key, certificate and ProxyCommand (the C(-o)
    options of C(ansible_ssh_common_args) and C(ansible_ssh_extra_args)), with a connection sharing
    of its own instead of Ansible's (ControlMaster auto, ControlPersist 10m, a ControlPath in
    O(directory), or in C(~/.ssh) where that path is too long for a socket), so every client (a
    terminal, VS Code) shares one master connection, on Fly one C(fly proxy), per machine.
  - "A Fly Machine's SSH server runs commands without a shell and gives a login a bare C(/bin/sh) in C(/).
    With O(login_check), an interactive login to a Fly Machine (C(ssh <name>) with no command) gets, through
    C(Match originalhost <name> exec), C(RequestTTY yes) and a RemoteCommand that is a plain word list: C(/usr/bin/env
    -C <home>/<project> HOME=... USER=... /bin/bash -l), so bash starts in the project and its login block
    activates the venv. Commands (C(ssh <name> cmd), VS Code's server) are left as they are."
  - Machines reached otherwise (C(docker exec)) get no entry; RV(lines) says why, and for a container how
    to open a shell there instead.
  - Checks that a certificate names the dev user and reports how long it stays valid.
  - The file is rewritten only when its text or its mode differ.
  - "Names from the inventory (host names, C(ansible_host), the Fly app, the inventory file's name, the dev user)
    become the file's name and its words only through one check (plugins/module_utils/devbox_names.py):
    1-128 letters, digits, '.', '_', '-' or ':', no '..'. Any other name fails the task, naming it with its
    control characters escaped, before anything is written; it is never rewritten. A line holding a control
    character (a newline in a path or an option) fails the same way."
extends_documentation_fragment:
  - devbox.machine.common
options:
  directory:
    description:
      - Folder for the config files (playbooks/ssh_config.yml uses the project's git-ignored C(.ssh/));
        made mode 0700.
    type: path
    required: true
  hosts:
    description:
      - One dict per machine, as the playbook collects them from the inventory. Always C(inventory_name);
        C(connection) (default C(ssh)); C(address) and C(user) (the dev user) for a machine reached over
        SSH; optionally C(port), C(key_file), C(common_args), C(extra_args), C(services) (the machine's services, one C(LocalForward) each, on this computer's 127.0.0.1), C(fly_app) (the Fly app,
        part of the Host name), C(inventory_file) (names the file when there is no single app), and
        C(home) (for the C(docker exec) hint).
      - C(common_args) and C(extra_args) may hold only C(-o Key=Value) options; any other ssh flag is
        refused, since it has no equivalent in the config file.
      - C(project_dir) (the project, relative to C(home)) for a Fly Machine's interactive login.
    type: list
    elements: dict
    required: true
  login_check:
    description:
      - The command, as a list of words, that ssh runs (C(Match exec)) to tell an interactive login from a command;
        it exits 0 for a login. playbooks/ssh_config.yml passes the controller's Python and
        C(plugins/plugin_utils/ssh_login_wanted.py). Empty leaves Fly logins in the server's own shell.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: partial
    details: Writes nothing, and always reports changed (the file on disk is not compared).
"""

EXAMPLES = r"""
- name: Write the config on this computer
  devbox_ssh_config:
    directory: "{{ playbook_dir | dirname }}/.ssh"
    hosts:
      - inventory_name: aged-wind-2649
        connection: ssh
        address: 3d8d9e1c2e6e89.vm.my-devbox.internal
        port: ""
        user: pythonuser
        home: /home/pythonuser
        key_file: /home/me/devbox/.fly/ssh/id_fly_my-devbox
        common_args: >-
          -o 'ProxyCommand=/usr/bin/python3 /home/me/devbox/plugins/plugin_utils/fly_proxy_command.py --app my-devbox --port %p %h'
          -o CertificateFile=/home/me/devbox/.fly/ssh/id_fly_my-devbox-cert.pub
        extra_args: ""
        fly_app: my-devbox
        project_dir: project
        inventory_file: /home/me/devbox/inventory/fly.yml
    login_check: [/home/me/devbox/.venv/bin/python, /home/me/devbox/plugins/plugin_utils/ssh_login_wanted.py]
  delegate_to: localhost
  run_once: true
  register: ssh_config_result
# Then show ssh_config_result.lines with ansible.builtin.debug: they say how to use the file.
"""

RETURN = r"""
path:
  description: The config file written (or that would be, in check mode).
  returned: success
  type: str
  sample: /home/me/devbox/.ssh/devbox_fly-my-devbox.conf
hosts:
  description: The C(Host) names in the file, sorted by inventory name; empty when no machine is reached over SSH.
  returned: success
  type: list
  elements: str
  sample: [devbox-my-devbox-aged-wind-2649]
include:
  description: The line to add once at the top of C(~/.ssh/config); it takes in every devbox config in the folder.
  returned: success
  type: str
  sample: Include /home/me/devbox/.ssh/devbox_*.conf
lines:
  description:
    - What to tell the user, as readable lines (the file, the Include line, one note per machine, how to
      log in).
  returned: success
  type: list
  elements: str
  sample:
    - "Wrote /home/me/devbox/.ssh/devbox_fly-my-devbox.conf: devbox-my-devbox-aged-wind-2649"
    - "Add this line at the top of ~/.ssh/config (once): Include /home/me/devbox/.ssh/devbox_*.conf"
    - "devbox-my-devbox-aged-wind-2649: certificate valid from 2025-06-01T12:00:00 to 2025-06-02T12:00:00;
      rerun this to renew it"
    - "Then: ssh devbox-my-devbox-aged-wind-2649   (a shell in ~/project with the venv active)"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_ssh_config import (
    SshConfigError, file_name, render, write)


ARGUMENT_SPEC = {
    "directory": {"type": "path", "required": True},
    "hosts": {"type": "list", "elements": "dict", "required": True},
    "login_check": {"type": "list", "elements": "str", "default": []},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    directory, entries = module.params["directory"], module.params["hosts"]
    try:
        text, names, notes = render(entries, directory, module.params["login_check"])
        name = file_name(entries)
    except SshConfigError as error:
        module.fail_json(msg=str(error))
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
