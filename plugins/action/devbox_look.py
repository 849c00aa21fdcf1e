"""Action plugin: one look at the machine decides which roles of site.yml have anything to do.

On the controller, first every role's inputs are checked (plugins/action/devbox_check_inputs.py's rules, every
problem at once, before anything is looked at or changed; the fact devbox_inputs_checked then lets the roles skip
their own check). Then one digest per input of each role: the templated value of every variable the
defaults of the role (and of the roles it reads: dev_user's user and home, python_env's layout,
Jupyter's and TensorBoard's entries for the services) name, the content of the files they point
to (python_env_requirements_file, python_env_lock_file), and the project's own code (roles/,
plugins/, boot/), so an upgrade of the playbook runs every role again. The module of the same name
observes the machine and compares with the stamp of the last run (plugins/module_utils/devbox_look.py).

Returns `run` (the roles to run, in site.yml's order; every role in a run limited by tags), `todo`
(why, per role) and, as facts, what the roles would have set for the final report (gpu_facts,
swap_check, python_env_result, services_report) and the variables the play reads across roles
(dev_user_name, ...): a role that runs sets its own over these. A drift (something changed on the machine, not by the playbook) is
also said as a warning. The result holds Jupyter's token (the report's URL): it is shown censored.

    - devbox_look:
      register: devbox_look
"""
from __future__ import annotations

import hashlib
import os

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.devbox.machine.plugins.action.devbox_check_inputs import RULES, input_problems, problems_message
from ansible_collections.devbox.machine.plugins.action.devbox_services import LIBRARIES, report
from ansible_collections.devbox.machine.plugins.module_utils.devbox_look import ROLES, digest
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import mask_credentials
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_tree import hash_tree
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import (
    TOP, facts, play_value, role_defaults)

# Each role's inputs: every variable the defaults of these roles name, and what it reads of other roles.
ROLE_INPUTS = {
    "dev_user": (("dev_user",), ()),
    "gpu": (("gpu",), ("dev_user_name", "dev_user_home")),
    "swap": (("swap",), ()),
    "python_env": (("python_env",), ("dev_user_name", "dev_user_home")),
    # The services' entries come from Jupyter's and TensorBoard's defaults (plugins/plugin_utils/devbox_machine.py).
    "services": (("jupyter", "tensorboard"), ("dev_user_name", "dev_user_home", "python_env_venv_dir",
                                              "python_env_project_dir", "python_env_min_free_mb", "devbox_services",
                                              "devbox_private_ip")),
    "idle_stop": (("idle_stop",), ("dev_user_home",)),
}
# Variables naming a file on the controller whose content is an input too, and a folder whose files are.
FILE_INPUTS = ("python_env_requirements_file", "python_env_lock_file")
FOLDER_INPUTS = {"python_env_project_source": ("pyproject.toml", "uv.lock")}
# The project's own code: a new version of the playbook runs every role again.
CODE = ("roles", "plugins", "boot")
# The values the play reads across roles (a skipped role's defaults are not loaded): the roles' tasks and the
# report read these; each is the play's value, so the role's own, when it runs, is the same.
SHARED = ("dev_user_name", "dev_user_home", "python_env_venv_dir", "python_env_project_dir", "swap_min_mb")
# Reasons that are the playbook's own doing, not a drift of the machine.
EXPECTED = ("no stamp yet", "inputs changed", "the CUDA smoke test", "swap ", "a restart that")


def code_digest(top: str = TOP) -> str:
    """The digest of every file of the project's code (names and contents)."""
    hashed = hashlib.sha256()
    hash_tree(hashed, top, CODE)
    return hashed.hexdigest()[:16]


def file_input(path) -> str:
    """The digest of a controller file an input names ("" when none is named)."""
    if not path:
        return ""
    try:
        with open(os.path.realpath(path), "rb") as source:
            return hashlib.sha256(source.read()).hexdigest()[:16]
    except OSError as error:
        return f"unreadable ({error.strerror})"


def input_digests(loader, value, code: str) -> dict:
    """{role: {input: digest}} from value(name[, default]) (the play's values over the roles' defaults)."""
    inputs = {}
    for role in ROLES:
        own, more = ROLE_INPUTS[role]
        names = set(role_defaults(loader, own)) | set(more)
        inputs[role] = {name: digest(value(name, None)) for name in sorted(names)}
        inputs[role].update({f"file {name}": file_input(value(name)) for name in FILE_INPUTS if name in names})
        inputs[role].update({f"file {name}/{file}": file_input(value(name) and os.path.join(value(name), file))
                             for name, files in FOLDER_INPUTS.items() if name in names for file in files})
        inputs[role]["the project's code"] = code
    return inputs


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        # Every input of every role first, all problems at once, before anything is looked at or changed.
        problems = input_problems(self._loader, self._templar, task_vars, list(RULES))
        if problems:
            return dict(result, failed=True, msg=problems_message(problems))
        value = play_value(self._templar, self._loader, task_vars)
        try:
            machine = facts(value)
            arguments = {
                "user": machine["user"], "home": machine["home"], "venv_dir": machine["venv_dir"],
                "project_dir": machine["project_dir"], "service_venvs_dir": machine["service_venvs_dir"],
                "libraries": list(LIBRARIES),
                "services": [{"name": service["name"], "ip": service["ip"], "venv": service["venv"]}
                             for service in machine["services"]],
                "gpu_required": str(value("gpu_required")).lower(), "gpu_smoke_test": bool(value("gpu_smoke_test")),
                "swap_min_mb": int(value("swap_min_mb")), "swap_required": boolean(value("swap_required"), strict=False),
                "inputs": input_digests(self._loader, value, code_digest()),
            }
        except (ServiceError, KeyError, TypeError, ValueError, OSError) as error:
            return dict(result, failed=True, msg=f"devbox_look: {error}")
        looked = self._execute_module(module_name=self._task.resolved_action or "devbox_look",
                                      module_args=arguments, task_vars=task_vars)
        if looked.get("failed"):
            looked.pop("token", None)
            result.update(looked)
            return result
        todo = looked["todo"]
        lock_reason = self._lock_copy_reason(value, looked["report"]["lock"], task_vars)
        if lock_reason:
            todo.setdefault("python_env", []).append(lock_reason)
        # The roles whose entry the stamp takes at the end: all of them after a full run; after a run limited by
        # tags only those that had nothing to do (the others may not have run).
        full_run = (set(task_vars.get("ansible_run_tags") or ["all"]) == {"all"}
                    and not task_vars.get("ansible_skip_tags"))
        stamped = list(ROLES) if full_run else [role for role in ROLES if role not in todo]
        # A run limited by tags runs the tagged roles in full, as ever: each includes, its tasks filtered by tag.
        result.update(looked)
        result.update(
            changed=False, run=[role for role in ROLES if role in todo or not full_run],
            stamp={"inputs": arguments["inputs"], "roles": stamped, "observe": {key: arguments[key] for key in (
                "user", "venv_dir", "project_dir", "service_venvs_dir", "libraries", "services", "gpu_required")}},
            warnings=looked.get("warnings", []) + [f"{role} runs again: {reason}" for role, reasons in todo.items()
                                                   for reason in reasons if not reason.startswith(EXPECTED)],
            ansible_facts=self._facts(machine, looked, value, task_vars),
            _ansible_no_log=True)  # the token
        return result

    def _lock_copy_reason(self, value, lock: str | None, task_vars: dict) -> str | None:
        """Why python_env must run for the controller's copy of the lock (its task keeps it); None when it is there."""
        folder = value("python_env_lock_copy_dir")
        if not folder or lock is None or self._task.check_mode:
            return None
        path = os.path.join(folder, f"{task_vars.get('inventory_hostname')}.requirements.lock")
        try:
            with open(path, encoding="utf-8") as copy:
                if copy.read() == mask_credentials(lock):
                    return None
        except (OSError, UnicodeDecodeError):
            pass
        return f"the controller's copy of the lock {path} is missing or differs"

    @staticmethod
    def _facts(machine: dict, looked: dict, value, task_vars: dict) -> dict:
        """What the skipped roles would have left for the report, and the values read across roles."""
        seen = looked["report"]
        shared = {name: value(name) for name in SHARED}
        services_seen = {"services": {name: {"listen": listen} for name, listen in seen["listen"].items()},
                         "token": looked.get("token")}
        try:
            lines = report(machine, services_seen, value, task_vars)
        except ServiceError as error:
            lines = [str(error)]
        return dict(shared, devbox_inputs_checked=True, gpu_facts=seen["gpu"], swap_check={"total_mb": seen["swap_mb"]},
                    python_env_result={"python_version": seen["python_version"]}, services_report=lines)
