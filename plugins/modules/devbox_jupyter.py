#!/usr/bin/python
"""Ansible module: JupyterLab in the venv, its settings, its launcher, and the server running."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_jupyter
short_description: Install, configure and start JupyterLab as the dev user, in one pass
description:
  - Started as root (no become, so the task pipelines), it does all its work as O(user) in a child
    process that drops to that user.
  - Installs O(lab_spec) into the venv with the installer settings python_env stored, writes the server
    settings (one JSON file), the given token (mode 0600) and the launcher, then starts the server unless
    it is healthy, or restarts it when its settings, its token or its packages changed.
  - The launcher learns the venv and the project directory (O(venv_dir), O(project_dir)) from
    C(~/.jupyter/devbox-jupyter.json), which the module writes; the server starts in the project, its root
    directory.
  - Registers the server with the boot step (C(~/.devbox/service-jupyter.json), root-owned, names the launcher and
    the port), which starts it after a restart and stops it with the machine.
  - With O(ip=auto) it listens on C(fly-local-6pn) when C(/etc/hosts) has it (a Fly Machine's private
    address), else on 127.0.0.1.
  - Turns JupyterLab's "fetch Jupyter news?" prompt off by default (C(overrides.d/devbox.json) in the
    venv; Settings can still turn news on).
  - Returns the token for the report, so register the result with C(no_log).
  - The launcher imports the listening-address rule and the launchers' shared code from root's own files in
    C(~/.devbox/), which the module keeps (O(address_rule_source), O(launcher_library_source)).
extends_documentation_fragment:
  - devbox.machine.service
  - devbox.machine.layout
options:
  lab_spec:
    description: Requirement specifier for JupyterLab.
    type: str
    default: jupyterlab
  port:
    description: Port to listen on.
    type: int
    default: 8888
  token:
    description: A fixed token; empty keeps the stored one or generates one on the first start.
    type: str
    default: ""
  server_settings:
    description:
      - More server settings, shaped like C(jupyter_server_config.json) (sections mapping to settings), merged
        over the module's own setting by setting.
      - Refused before anything changes when they would open the server or drop its token; the rule is in
        plugins/module_utils/devbox_jupyter_settings.py.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Install, configure and start JupyterLab
  devbox_jupyter:
    user: pythonuser
    home: /home/pythonuser
    # Kernels that sit idle for an hour are shut down (the server itself keeps running).
    server_settings:
      MappingKernelManager:
        cull_idle_timeout: 3600
    launcher_source: "{{ lookup('ansible.builtin.file', 'devbox_jupyter_launcher.py') }}"
    address_rule_source: "{{ lookup('ansible.builtin.file', role_path ~ '/../../plugins/module_utils/devbox_address.py') }}"
    launcher_library_source: "{{ lookup('ansible.builtin.file', role_path ~ '/../../plugins/module_utils/devbox_launcher.py') }}"
  register: jupyter_launch
  no_log: true  # the result carries the token
"""

RETURN = r"""
url:
  description: Where the Jupyter server listens (no token); null in check mode.
  returned: success
  type: str
  sample: http://172.17.0.3:8888/
token:
  description: The token the server accepts; null in check mode.
  returned: success
  type: str
  sample: 4f0c2a9d8e1b7c6a5f4e3d2c1b0a9f8e7d6c5b4a39281706
action:
  description: >-
    What the launcher did to the Jupyter server: V(started) (also when a settings or venv change restarted it)
    or V(already running); in check mode V(would start) or V(would restart), null when nothing would.
  returned: success
  type: str
  sample: started
pid:
  description: The Jupyter server's process id; kernels are its children.
  returned: success
  type: int
  sample: 4242
listen:
  description: The address or host name in the server's settings (ServerApp.ip), after V(auto) is resolved.
  returned: success
  type: str
  sample: fly-local-6pn
installed:
  description: JupyterLab and what it pulled in, newly installed into the venv by this run (name==version).
  returned: success
  type: list
  elements: str
  sample: [jupyterlab==4.4.3, jupyter-server==2.16.0]
upgraded:
  description: What moved to another version for JupyterLab's sake, as "name old -> new".
  returned: success
  type: list
  elements: str
  sample: ["jupyterlab: 4.4.2 -> 4.4.3"]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_address_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_jupyter_settings import merged, settings_problem
from ansible_collections.devbox.machine.plugins.module_utils import devbox_service_module as service
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import VenvError, write_if_changed

LAUNCHER = ".local/bin/devbox-jupyter"
# Where the launcher, which runs alone on the volume, learns the venv and the project directory.
DIRS_FILE = ".jupyter/devbox-jupyter.json"


def server_config(project: str, listen: str, port: int, settings: dict | None = None) -> dict:
    """The role's settings (project: the absolute project directory), with jupyter_server_settings (already
    checked) laid over them."""
    return merged({"ServerApp": {
        "ip": listen,
        "port": port,
        "port_retries": 0,
        "open_browser": False,
        "root_dir": project,
        # Behind fly proxy or a published port the Host header is not the bind address.
        "allow_remote_access": True,
    }}, settings or {})


# JupyterLab asks every new user whether to fetch Jupyter's news from the internet; ours says no
# by default. overrides.d/ holds defaults (Settings can still turn news on) and leaves
# overrides.json to the user.
LAB_DEFAULTS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}


def provision(params: dict, dry_run: bool) -> dict:
    """As the user: the venv's JupyterLab, the settings, the token, the launcher, the server."""
    home = params["home"]
    config_dir, bin_dir = os.path.join(home, ".jupyter"), os.path.join(home, ".local", "bin")
    launcher = os.path.join(home, LAUNCHER)
    token_path = os.path.join(config_dir, "devbox_token")
    venv_path, project = os.path.join(home, params["venv_dir"]), os.path.join(home, params["project_dir"])
    venv = service.converge_venv(params, params["lab_spec"], dry_run)
    if not dry_run:
        os.makedirs(config_dir, mode=0o700, exist_ok=True)
        os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    listen = params["listen"]
    diffs = []
    config_text = json.dumps(server_config(project, listen, params["port"], params["server_settings"]), indent=2, sort_keys=True) + "\n"
    config_changed = write_if_changed(os.path.join(config_dir, "jupyter_server_config.json"), config_text, 0o600,
                                      dry_run, diffs)
    dirs_text = json.dumps({"venv": venv_path, "project": project}, indent=2, sort_keys=True) + "\n"
    dirs_changed = write_if_changed(os.path.join(home, DIRS_FILE), dirs_text, 0o600, dry_run, diffs)
    token_changed = bool(params["token"]) and write_if_changed(token_path, params["token"], 0o600, dry_run)
    launcher_changed = write_if_changed(launcher, params["launcher_source"], 0o755, dry_run)
    lab_defaults = os.path.join(venv_path, "share", "jupyter", "lab", "settings", "overrides.d", "devbox.json")
    if not dry_run:
        os.makedirs(os.path.dirname(lab_defaults), exist_ok=True)
    lab_defaults_changed = write_if_changed(lab_defaults, json.dumps(LAB_DEFAULTS, indent=2) + "\n", 0o644,
                                            dry_run, diffs)
    # A new JupyterLab (or anything under it) only serves once the server restarts; new launcher code (the
    # launcher, its libraries) only acts at the next start: the kernels keep running.
    restart = config_changed or dirs_changed or token_changed or lab_defaults_changed or venv["changed"]
    outcome = service.bring_up(launcher, restart, launcher_changed, dry_run)
    result = {"listen": listen, "diff": diffs, "installed": venv["installed"], "upgraded": venv["upgraded"],
              "action": outcome.get("action"), "url": outcome.get("url"), "pid": outcome.get("pid")}
    if dry_run:
        return dict(result, changed=bool(outcome["action"] or launcher_changed or venv["changed"]), token=None)
    with open(token_path) as token_file:
        token = token_file.read().strip()
    changed = venv["changed"] or config_changed or dirs_changed or token_changed or launcher_changed or outcome.get("action") == "started"
    return dict(result, changed=changed, token=token)


ARGUMENT_SPEC = dict(
    service.COMMON_ARGUMENT_SPEC,
    lab_spec={"type": "str", "default": "jupyterlab"},
    port={"type": "int", "default": 8888},
    token={"type": "str", "default": "", "no_log": True},
    server_settings={"type": "dict", "default": {}},
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    listen = service.checked_listen(module, "Jupyter", "jupyter_ip")
    problem = settings_problem(params["server_settings"], listen_address_problem)
    if problem:
        module.fail_json(msg=f"{problem}; the running Jupyter and its settings are unchanged")
    service.provision_and_register(
        module, provision, listen, {"name": "jupyter", "launcher": LAUNCHER, "probe": {"port": params["port"]}},
        "Jupyter", (VenvError,), {"token": None, "installed": [], "upgraded": []})


if __name__ == "__main__":
    main()
