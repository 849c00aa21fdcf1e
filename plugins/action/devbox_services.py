"""Action plugin: every service of the machine, from the variables, in one module run.

The services task names no option: the machine's facts (the dev user, the layout, the services:
the built-in jupyter_service and tensorboard_service and the user's devbox_services) are read
once, by plugins/plugin_utils/devbox_machine.py, from the play's values over the roles' defaults,
and checked there. The launcher and the libraries it imports travel as the text of their files
here (no file transfer), and the module of the same name does the work on the machine.

    - devbox_services:
"""
from __future__ import annotations

import os
import shlex

from ansible.plugins.action import ActionBase

from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import spelling_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import STATE_DIR
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
    JUPYTER, ServiceError, behind_jupyter)
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import (
    TOP, facts, play_value, service_url)

# What the launcher imports, by file name: the launcher itself and the libraries it needs on the machine.
LIBRARIES = ("devbox_records.py", "devbox_address.py", "devbox_launcher.py", "devbox_service.py")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        value = play_value(self._templar, self._loader, task_vars)
        try:
            machine = facts(value)
        except (ServiceError, KeyError, TypeError, ValueError) as error:
            return dict(result, failed=True, msg=f"devbox_services: {error}")
        libraries = {}
        for name in LIBRARIES:
            with open(os.path.join(TOP, "plugins", "module_utils", name), encoding="utf-8") as source:
                libraries[name] = source.read()
        arguments = {
            "user": machine["user"], "home": machine["home"], "venv_dir": machine["venv_dir"],
            "project_dir": machine["project_dir"], "service_venvs_dir": machine["service_venvs_dir"],
            "services": machine["services"], "libraries": libraries,
            "jupyter_token": value("jupyter_token"), "jupyter_server_settings": value("jupyter_server_settings"),
            "min_free_mb": int(value("python_env_min_free_mb")), "jupyter_restart": value("jupyter_restart"),
        }
        result.update(self._execute_module(module_name=self._task.resolved_action or "devbox_services",
                                           module_args=arguments, task_vars=task_vars))
        if arguments["jupyter_token"] and result.get("token"):
            result["token"] = arguments["jupyter_token"]  # Ansible masks a no_log argument's value in results
        if not result.get("failed") and not self._task.check_mode:
            result["report"] = report(machine, result, value, task_vars or {})
        return result


def report(machine: dict, result: dict, value, task_vars: dict) -> list[str]:
    """How to reach each service, built here from the facts checked above and the names the module
    resolved (never from what a launcher printed): a URL per service, and how to open the tunnel."""
    # Where this computer reaches the machine's ports: devbox_address_here (make up: 127.0.0.1), and
    # devbox_ports_here when a port arrives here under another number (the machine's port -> this one's).
    address_here, ports_here = str(value("devbox_address_here", "localhost")), value("devbox_ports_here", None)
    if isinstance(ports_here, dict):
        ports_here = {int(port): int(here) for port, here in ports_here.items()}
    lines, forwards = [], []
    for service in machine["services"]:
        port, name = service["port"], service["name"]
        listen = result["services"][name]["listen"]
        problem = spelling_problem(listen)
        if problem:
            raise ServiceError(f"{name}: the machine answered with the listening name {listen!r}: {problem}")
        behind = behind_jupyter(service)
        query = f"?token={result['token']}" if (name == JUPYTER or behind) and result.get("token") else ""
        url = service_url(service, machine["services"], address_here, ports_here)
        lines.append(f"{name}: {url}{query}" if url else f"{name}: listens on port {port}, not published here")
        if not behind:
            forwards += ["-L", f"{port}:{listen}:{port}"]
    login = f"{task_vars.get('ansible_user', 'root')}@{task_vars.get('ansible_host', task_vars.get('inventory_hostname'))}"
    tunnel = shlex.join(["ssh", "-N", *forwards, login])
    lines.append(f"Open it: {value('devbox_open_hint', tunnel)}")
    lines.append(f"Logs: {machine['home']}/{STATE_DIR}/<service>.log")
    return lines
