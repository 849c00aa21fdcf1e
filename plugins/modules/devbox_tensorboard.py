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
  - Installs O(spec) into the venv with the installer settings python_env stored, writes the settings
    (C(~/.devbox-tensorboard/settings.json)), the launcher (C(~/.local/bin/devbox-tensorboard)) and the
    listening-address rule it applies at every start, then starts the server unless it is serving, or
    restarts it when its settings or its packages changed.
  - Serves the event files under C(runs) in the project (O(project_dir)) on the private address only, never on all interfaces
    nor on a public address. With O(ip=auto) it listens on C(fly-local-6pn) when C(/etc/hosts) has it,
    else on 127.0.0.1.
  - Registers the server with the boot step (C(~/.devbox/service-tensorboard.json), root-owned, names the
    launcher and the port), which starts it after a restart and stops it with the machine.
options:
  user:
    description: The user who runs TensorBoard; the module works as this user.
    type: str
    required: true
  home:
    description: The user's home, the volume.
    type: path
    required: true
  spec:
    description: Requirement specifier for TensorBoard.
    type: str
    default: tensorboard
  ip:
    description: Address or host name to listen on; V(auto) is the private address on Fly, else 127.0.0.1.
    type: str
    default: auto
  port:
    description: Port to listen on.
    type: int
    default: 6006
  launcher_source:
    description: Source text of the launcher, written to C(~/.local/bin/devbox-tensorboard).
    type: str
    required: true
  address_rule_source:
    description:
      - Source text of plugins/module_utils/devbox_address.py, written to C(~/.local/lib/devbox/devbox_address.py)
        for the launcher, which applies that rule at every start.
    type: str
    required: true
  venv_dir:
    description: The venv TensorBoard is installed into, relative to the home (python_env_venv_dir).
    type: str
    default: project-venv
  project_dir:
    description: The project directory, relative to the home (python_env_project_dir); the event files are in its C(runs).
    type: str
    default: project
  min_free_mb:
    description: Free space the volume must have before TensorBoard is installed, in MB.
    type: int
    default: 1024
attributes:
  check_mode:
    support: full
    details: Reports whether the server would be started or restarted; installs and starts nothing.
  diff_mode:
    support: partial
    details: Shows the settings file.
author: devbox maintainers
"""

EXAMPLES = r"""
- name: Install, configure and start TensorBoard
  devbox_tensorboard:
    user: pythonuser
    home: /home/pythonuser
    launcher_source: "{{ lookup('ansible.builtin.file', 'devbox_tensorboard_launcher.py') }}"
    address_rule_source: "{{ lookup('ansible.builtin.file', role_path ~ '/../../plugins/module_utils/devbox_address.py') }}"
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
  description: Distributions installed into the venv by this run, as name==version.
  returned: success
  type: list
  elements: str
  sample: [tensorboard==2.20.0]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
try:  # run from the repository (ansible.cfg's module_utils path) or the unit tests
    from ansible.module_utils import devbox_address
    from ansible.module_utils.devbox_layout import PROJECT_DIR, VENV_DIR, options_problem
    from ansible.module_utils.devbox_run_as import RunAsError, run_as, user_exists
    from ansible.module_utils.devbox_service import register_and_exit, run_launcher
    from ansible.module_utils.devbox_venv import VenvError, converge, plan, write_if_changed
except ImportError:  # installed as the devbox.machine collection
    from ansible_collections.devbox.machine.plugins.module_utils import devbox_address
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import PROJECT_DIR, VENV_DIR, options_problem
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
        register_and_exit, run_launcher)
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
        VenvError, converge, plan, write_if_changed)

LAUNCHER = ".local/bin/devbox-tensorboard"
# The launcher imports the address rule from here: the very file the modules use (address_rule_source).
ADDRESS_RULE = ".local/lib/devbox/devbox_address.py"
SETTINGS = ".devbox-tensorboard/settings.json"
# The event files: this folder in the project.
RUNS = "runs"


class TensorBoardError(Exception):
    """The server could not be brought up; the message has the launcher's reason."""


def provision(params: dict, dry_run: bool) -> dict:
    """As the user: the venv's TensorBoard, the settings, the launcher, the server."""
    home = params["home"]
    launcher, settings = os.path.join(home, LAUNCHER), os.path.join(home, SETTINGS)
    address_rule, logdir = os.path.join(home, ADDRESS_RULE), os.path.join(home, params["project_dir"], RUNS)
    venv_path = os.path.join(home, params["venv_dir"])
    venv_params = {"path": venv_path, "base_python": "python3",
                   "requirements": [params["spec"]], "installer": None,
                   "settings": None, "min_free_mb": params["min_free_mb"], "lock_timeout": 600}
    venv = plan(venv_params) if dry_run else converge(venv_params)
    if not dry_run:
        for path, mode in ((settings, 0o700), (launcher, 0o755), (address_rule, 0o755)):
            os.makedirs(os.path.dirname(path), mode=mode, exist_ok=True)
    listen, diffs = devbox_address.listen_name(params["ip"]), []
    settings_text = json.dumps({"ip": listen, "port": params["port"], "logdir": logdir, "venv": venv_path},
                               indent=2, sort_keys=True)
    settings_changed = write_if_changed(settings, settings_text + "\n", 0o600, dry_run, diffs)
    rule_changed = write_if_changed(address_rule, params["address_rule_source"], 0o644, dry_run)
    launcher_changed = write_if_changed(launcher, params["launcher_source"], 0o755, dry_run)
    restart = settings_changed or rule_changed or venv["changed"]
    result = {"listen": listen, "logdir": logdir, "diff": diffs, "installed": venv["installed"]}
    if dry_run:
        running = not launcher_changed and run_launcher(launcher, "status")[0] == 0
        action = "would restart" if restart and running else None if running else "would start"
        return dict(result, changed=bool(action or launcher_changed or venv["changed"]), action=action,
                    url=None, pid=None)
    code, outcome = run_launcher(launcher, "restart" if restart else "start")
    if code != 0:
        raise TensorBoardError(f"devbox-tensorboard {'restart' if restart else 'start'} failed: "
                               f"{outcome.get('error', outcome)}")
    changed = restart or launcher_changed or outcome.get("action") == "started"
    return dict(result, changed=changed, action=outcome.get("action"), url=outcome.get("url"), pid=outcome.get("pid"))


ARGUMENT_SPEC = {
    "user": {"type": "str", "required": True},
    "home": {"type": "path", "required": True},
    "spec": {"type": "str", "default": "tensorboard"},
    "ip": {"type": "str", "default": "auto"},
    "port": {"type": "int", "default": 6006},
    "launcher_source": {"type": "str", "required": True},
    "address_rule_source": {"type": "str", "required": True},
    "venv_dir": {"type": "str", "default": VENV_DIR},
    "project_dir": {"type": "str", "default": PROJECT_DIR},
    "min_free_mb": {"type": "int", "default": 1024},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    # Before anything is installed, written or stopped: a bad address leaves the running server alone.
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=f"{problem}; the running TensorBoard and its settings are unchanged")
    listen = devbox_address.listen_name(params["ip"])
    problem = devbox_address.listen_address_problem(listen)
    if problem:
        module.fail_json(msg=f"tensorboard_ip={params['ip']}: {problem}; the running TensorBoard and its settings "
                         "are unchanged", listen=listen)
    if module.check_mode and not user_exists(params["user"]):
        module.exit_json(changed=True, action="would start", url=None, pid=None, listen=listen,
                         logdir=os.path.join(params["home"], params["project_dir"], RUNS), installed=[])
    try:
        result = run_as(params["user"], provision, params, module.check_mode,
                        expected=(VenvError, TensorBoardError, OSError))
    except RunAsError as error:
        module.fail_json(msg=str(error))
    register_and_exit(module, result, {"name": "tensorboard", "launcher": LAUNCHER, "probe": {"port": params["port"]}},
                      "TensorBoard")


if __name__ == "__main__":
    main()
