#!/usr/bin/python
"""Ansible module: JupyterLab in the venv, its settings, its launcher, and the server running."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_jupyter
short_description: Install, configure and start JupyterLab as the user, in one pass
description:
  - Runs as the dev user. Installs I(lab_spec) into the venv (same installer settings as python_env),
    writes the server settings (one JSON file), the given token (0600), and the launcher; then starts
    the server unless it is healthy, or restarts it when its settings or token changed.
  - With I(ip=auto), listens on fly-local-6pn when /etc/hosts has it (a Fly Machine's 6PN address), else
    on 127.0.0.1.
options:
  home: {type: path, required: true, description: The user's home, the volume.}
  lab_spec: {type: str, default: jupyterlab, description: Requirement specifier for JupyterLab.}
  ip: {type: str, default: auto, description: Address or host name to listen on; auto = 127.0.0.1 off Fly.}
  port: {type: int, default: 8888, description: Port.}
  token: {type: str, default: "", no_log: true, description: Fixed token; empty keeps or generates one.}
  launcher_source: {type: str, required: true, description: Source of the launcher script.}
  min_free_mb: {type: int, default: 1024, description: Free space needed before installing.}
author: devbox maintainers
"""

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_venv import VenvError, converge, write_if_changed

FLY_PRIVATE_NAME = "fly-local-6pn"


def listen_name(ip: str, hosts_path: str = "/etc/hosts") -> str:
    """For "auto": fly-local-6pn on a Fly Machine, else 127.0.0.1. The launcher resolves names at start."""
    if ip != "auto":
        return ip
    try:
        with open(hosts_path) as hosts:
            if FLY_PRIVATE_NAME in hosts.read().split():
                return FLY_PRIVATE_NAME
    except OSError:
        pass
    return "127.0.0.1"


def server_config(home: str, listen: str, port: int) -> dict:
    return {"ServerApp": {
        "ip": listen,
        "port": port,
        "port_retries": 0,
        "open_browser": False,
        "root_dir": os.path.join(home, "project"),
        # Behind fly proxy or a published port the Host header is not the bind address.
        "allow_remote_access": True,
    }}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "home": {"type": "path", "required": True},
            "lab_spec": {"type": "str", "default": "jupyterlab"},
            "ip": {"type": "str", "default": "auto"},
            "port": {"type": "int", "default": 8888},
            "token": {"type": "str", "default": "", "no_log": True},
            "launcher_source": {"type": "str", "required": True},
            "min_free_mb": {"type": "int", "default": 1024},
        },
    )
    params = module.params
    home = params["home"]
    config_dir, bin_dir = os.path.join(home, ".jupyter"), os.path.join(home, ".local", "bin")
    launcher = os.path.join(bin_dir, "devbox-jupyter")
    try:
        venv = converge({"path": os.path.join(home, "project-venv"), "base_python": "python3",
                         "requirements": [params["lab_spec"]], "installer": None,
                         "settings": None, "min_free_mb": params["min_free_mb"], "lock_timeout": 600})
    except (VenvError, OSError) as error:
        module.fail_json(msg=str(error))
    os.makedirs(config_dir, mode=0o700, exist_ok=True)
    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    listen = listen_name(params["ip"])
    config_text = json.dumps(server_config(home, listen, params["port"]), indent=2, sort_keys=True) + "\n"
    config_changed = write_if_changed(os.path.join(config_dir, "jupyter_server_config.json"), config_text, 0o600)
    token_changed = bool(params["token"]) and write_if_changed(os.path.join(config_dir, "devbox_token"),
                                                               params["token"], 0o600)
    launcher_changed = write_if_changed(launcher, params["launcher_source"], 0o755)
    # A new JupyterLab (or anything under it) only serves once the server restarts.
    action = "restart" if (config_changed or token_changed or venv["installed"] or venv["upgraded"]) else "start"
    run = subprocess.run([launcher, action], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        outcome = json.loads(run.stdout)
    except ValueError:
        outcome = {"error": (run.stdout + run.stderr).strip()}
    if run.returncode != 0:
        module.fail_json(msg=f"devbox-jupyter {action} failed: {outcome.get('error', outcome)}", listen=listen)
    changed = (venv["changed"] or config_changed or token_changed or launcher_changed
               or outcome.get("action") == "started")
    module.exit_json(changed=changed, action=outcome.get("action"), url=outcome.get("url"), pid=outcome.get("pid"),
                     listen=listen, installed=venv["installed"], upgraded=venv["upgraded"])


if __name__ == "__main__":
    main()
