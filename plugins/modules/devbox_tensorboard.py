#!/usr/bin/python
"""Ansible module: TensorBoard in the venv, its settings, its launcher, the server running and registered."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_tensorboard
short_description: Install, configure, start and register TensorBoard as the dev user
description:
  - Started as root (no become, so the task pipelines), it does its user-side work as O(user) in a child
    process that drops to that user, like devbox_jupyter.
  - Installs O(spec) into the venv (O(venv_dir)) with the installer settings python_env stored, writes the
    settings (C(~/.devbox-tensorboard/settings.json)) and the launcher (C(~/.local/bin/devbox-tensorboard)),
    then starts the server unless it is serving, or restarts it when its settings or its packages changed.
  - Serves the event files under C(runs) in the project (O(project_dir)) on the private address only, never on all interfaces
    nor on a public address. With O(ip=auto) it listens on C(fly-local-6pn) when C(/etc/hosts) has it,
    else on 127.0.0.1.
  - Registers the server with the boot step (C(~/.devbox/service-tensorboard.json), root-owned, names the
    launcher and the port), which starts it after a restart and stops it with the machine.
  - The launcher imports the listening-address rule and the launchers' shared code from root's own files in
    C(~/.devbox/), which the module keeps (O(address_rule_source), O(launcher_library_source)); when they
    change, the server restarts.
extends_documentation_fragment:
  - devbox.machine.service
  - devbox.machine.layout
options:
  spec:
    description: Requirement specifier for TensorBoard.
    type: str
    default: tensorboard
  port:
    description: Port to listen on.
    type: int
    default: 6006
"""

EXAMPLES = r"""
- name: Install, configure and start TensorBoard
  devbox_tensorboard:
    user: pythonuser
    home: /home/pythonuser
    launcher_source: "{{ lookup('ansible.builtin.file', 'devbox_tensorboard_launcher.py') }}"
    address_rule_source: "{{ lookup('ansible.builtin.file', role_path ~ '/../../plugins/module_utils/devbox_address.py') }}"
    launcher_library_source: "{{ lookup('ansible.builtin.file', role_path ~ '/../../plugins/module_utils/devbox_launcher.py') }}"
  register: tensorboard_launch
"""

RETURN = r"""
url:
  description: Where the server listens; null in check mode.
  returned: success
  type: str
  sample: http://172.17.0.3:6006/
action:
  description: What happened to the server, or what would (check mode); null when nothing would.
  returned: success
  type: str
  sample: already running
pid:
  description: The server's process id; null in check mode.
  returned: success
  type: int
  sample: 4243
listen:
  description: The address or name the server is configured to listen on.
  returned: success
  type: str
  sample: fly-local-6pn
logdir:
  description: The directory whose event files TensorBoard serves.
  returned: success
  type: str
  sample: /home/pythonuser/project/runs
installed:
  description: TensorBoard and its dependencies, newly installed into the venv by this run (name==version).
  returned: success
  type: list
  elements: str
  sample: [tensorboard==2.20.0]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils import devbox_service_module as service
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import VenvError, write_if_changed

LAUNCHER = ".local/bin/devbox-tensorboard"
SETTINGS = ".devbox-tensorboard/settings.json"
# The event files: this folder in the project.
RUNS = "runs"


def provision(params: dict, dry_run: bool) -> dict:
    """As the user: the venv's TensorBoard, the settings, the launcher, the server."""
    home = params["home"]
    launcher, settings = os.path.join(home, LAUNCHER), os.path.join(home, SETTINGS)
    logdir = os.path.join(home, params["project_dir"], RUNS)
    venv = service.converge_venv(params, params["spec"], dry_run)
    if not dry_run:
        for path, mode in ((settings, 0o700), (launcher, 0o755)):
            os.makedirs(os.path.dirname(path), mode=mode, exist_ok=True)
    listen, diffs = params["listen"], []
    settings_text = json.dumps({"ip": listen, "port": params["port"], "logdir": logdir,
                                "venv": os.path.join(home, params["venv_dir"])}, indent=2, sort_keys=True)
    settings_changed = write_if_changed(settings, settings_text + "\n", 0o600, dry_run, diffs)
    launcher_changed = write_if_changed(launcher, params["launcher_source"], 0o755, dry_run)
    # A new listening-address rule is applied at the next start: now.
    restart = settings_changed or params["libraries_changed"] or venv["changed"]
    outcome = service.bring_up(launcher, restart, launcher_changed, dry_run)
    result = {"listen": listen, "logdir": logdir, "diff": diffs, "installed": venv["installed"],
              "action": outcome.get("action"), "url": outcome.get("url"), "pid": outcome.get("pid")}
    if dry_run:
        return dict(result, changed=bool(outcome["action"] or launcher_changed or venv["changed"]))
    return dict(result, changed=restart or launcher_changed or outcome.get("action") == "started")


ARGUMENT_SPEC = dict(service.COMMON_ARGUMENT_SPEC, spec={"type": "str", "default": "tensorboard"},
                     port={"type": "int", "default": 6006})


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    listen = service.checked_listen(module, "TensorBoard", "tensorboard_ip")
    service.provision_and_register(
        module, provision, listen, {"name": "tensorboard", "launcher": LAUNCHER, "probe": {"port": params["port"]}},
        "TensorBoard", (VenvError,), {"logdir": os.path.join(params["home"], params["project_dir"], RUNS), "installed": []})


if __name__ == "__main__":
    main()
