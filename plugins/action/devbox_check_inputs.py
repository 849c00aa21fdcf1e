"""Action plugin: check the inputs of the named roles, on the controller, before any change.

One task instead of one per rule: each role's variables (the play's value, else the role's
defaults/main.yml, templated) are validated against the role's `main` entry point of
meta/argument_specs.yml, as Ansible does when the role starts, and then against the rules a
type cannot say (addresses, ranges, requirement specifiers, files on the controller). Every
problem of every role is reported at once, each naming the variable, its value and the fix;
a secret's value is never shown. The rules are module_utils' own, which the modules apply
again on the machine, and the few that only the controller needs (below).

    - devbox_check_inputs:
        roles: [dev_user, jupyter]
        remember: true  # the fact devbox_inputs_checked: the roles skip their own check
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import combine_vars
from packaging.requirements import InvalidRequirement, Requirement

from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import spelling_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_jupyter_settings import settings_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import dir_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    AccountError, checked_home, is_login_name)

from ansible_collections.devbox.machine.plugins.module_utils.devbox_names import name_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import MAX_MINUTES, setting_problems
from ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_project import (
    credentials_problem, source_problems)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import control_problem, mask_credentials
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import (
    BUILT_IN, ROLES, TOP, facts, play_value, role_defaults)

# Jupyter strips what is not URL-safe, and the token travels in the URL; long enough not to be guessed.
# The launcher (plugins/module_utils/devbox_launcher.py) applies the same rule to the token file.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{32,}")


def is_home(value) -> bool:
    """A path root may hand to the user as a home (checked_home, as the devbox_user module and the boot step)."""
    try:
        checked_home(value)
    except AccountError:
        return False
    return True


def is_listen_address(value) -> bool:
    """What the text of a listening address tells; names resolve on the machine, where the module judges them."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # jupyter_ip: 0 in YAML is the number, and still a wildcard
    return spelling_problem(value) is None


def is_jupyter_token(value) -> bool:
    return isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None


def is_requirement(value) -> bool:
    """A requirement specifier pip can parse (packaging: pip's parser, and a dependency of ansible-core)."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        Requirement(value)
    except InvalidRequirement:
        return False
    return True


def shown(value) -> str:
    return json.dumps(value)


def masked(url: str) -> str:
    return mask_credentials(url)


def dev_user(v: dict, _all: dict) -> list[str]:
    problems = []
    if (not is_login_name(v["dev_user_name"])
            or not 1 <= v["dev_user_uid"] <= 60000 or not 1 <= v["dev_user_gid"] <= 60000):
        problems.append(
            f"dev_user_name={shown(v['dev_user_name'])} must be 1-32 characters of lower-case letters, digits, '_'"
            f" or '-', starting with a letter or '_'; dev_user_uid={v['dev_user_uid']} and"
            f" dev_user_gid={v['dev_user_gid']} must be 1-60000.")
    if not is_home(v["dev_user_home"]):
        problems.append(
            f"dev_user_home={shown(v['dev_user_home'])} must be an absolute path without '..' that is a directory"
            " of its own, such as /home/<user>: root hands its top to the user, so /, /home and the system trees"
            " (/bin, /boot, /dev, /etc, /lib*, /opt, /proc, /root, /run, /sbin, /srv, /sys, /tmp, /usr, /var and"
            " anything under them) are refused.")
    return problems


def gpu(v: dict, _all: dict) -> list[str]:
    if str(v["gpu_required"]).lower() not in ("auto", "true", "false"):
        return [f"gpu_required={shown(v['gpu_required'])} is not one of: auto, true, false"]
    return []


def swap(v: dict, _all: dict) -> list[str]:
    return [f"swap_min_mb={v['swap_min_mb']} must be 0 or more"] if v["swap_min_mb"] < 0 else []


def lock_file_problems(path: str) -> list[str]:
    """A lock line with a control character is refused here too, shown escaped (devbox_venv's rule)."""
    try:
        with open(path, encoding="utf-8", newline="") as lock:
            problem = control_problem(lock.read(), f"python_env_lock_file={path}")
    except (OSError, UnicodeDecodeError) as error:
        problem = f"python_env_lock_file={path}: cannot be read as UTF-8 text ({error})"
    return [mask_credentials(problem)] if problem else []


def python_env(v: dict, everything: dict) -> list[str]:
    problems = [
        f"python_env_packages: {shown(spec)} is not a requirement specifier pip can parse (e.g. 'numpy', 'torch==2.5.1')"
        for spec in v["python_env_platform_packages"] + v["python_env_packages"]
        if not is_requirement(spec)]
    urls = ([v["python_env_index_url"]] if v["python_env_index_url"] else []) + v["python_env_extra_index_urls"]
    problems += [
        f"python_env_index_url / python_env_extra_index_urls: {shown(masked(url))}"
        " is not an http(s):// or file:// URL"
        for url in urls if not re.match(r"^(https?|file)://", url)]
    for name in ("python_env_venv_dir", "python_env_project_dir", "python_env_service_venvs_dir"):
        if dir_problem(v[name]):
            problems.append(
                f"{name}={shown(v[name])} must be a plain path relative to the home, such as 'venv' or"
                " 'work/venv' (letters, digits, '.', '_', '-'; no '..', no leading '/')")
    if v["python_env_min_free_mb"] < 0:
        problems.append(f"python_env_min_free_mb={v['python_env_min_free_mb']} must be a whole number of MB, 0 or more")
    # Relative paths are taken from the working directory, as the lookups of tasks/main.yml take them.
    if v["python_env_requirements_file"] and not os.path.isfile(v["python_env_requirements_file"]):
        problems.append(f"python_env_requirements_file={v['python_env_requirements_file']}: no such file on the controller")
    if v["python_env_lock_file"] and not os.path.isfile(v["python_env_lock_file"]):
        problems.append(f"python_env_lock_file={v['python_env_lock_file']}: no such file on the controller"
                        " (a machine's lock is kept in locks/<machine>.requirements.lock)")
    elif v["python_env_lock_file"]:
        problems += lock_file_problems(v["python_env_lock_file"])
    problems += uv_project_problems(v)
    if v["python_env_sync"] and not v["python_env_lock_file"]:
        problems.append("python_env_sync=true needs python_env_lock_file: the lock says what to keep, everything else is removed")
    if v["python_env_lock_copy_dir"] and not os.path.isabs(v["python_env_lock_copy_dir"]):
        problems.append(f"python_env_lock_copy_dir={v['python_env_lock_copy_dir']} must be an absolute path on the"
                        " controller, or \"\" to keep no copy")
    # The copy is <python_env_lock_copy_dir>/<host>.requirements.lock: the host's name becomes a file name.
    host_problem = name_problem(everything.get("inventory_hostname"), "the inventory host name")
    if v["python_env_lock_copy_dir"] and host_problem:
        problems.append(f"{host_problem} (python_env_lock_copy_dir keeps a copy of its lock under that name;"
                        " or set python_env_lock_copy_dir: \"\")")
    return problems


def uv_project_problems(v: dict) -> list[str]:
    """A uv project is the whole list of the user's packages: checked with uv here when uv is installed."""
    problems = [] if credentials_problem(v["python_env_index_credentials"]) is None else [
        credentials_problem(v["python_env_index_credentials"])]
    source = v["python_env_project_source"]
    if not source:
        return problems
    others = [name for name in ("python_env_packages", "python_env_requirements_file", "python_env_lock_file")
              if v[name]]
    if others:
        problems.append(f"python_env_project_source and {', '.join(others)} both name your packages: keep them in "
                        "pyproject.toml (`uv add <package>`, then `uv lock`) and leave these unset")
    beside = os.path.join(os.path.dirname(sys.executable), "uv")
    return problems + source_problems(source, beside if os.access(beside, os.X_OK) else shutil.which("uv"))


def listen_problems(name: str, value, reached: str) -> list[str]:
    if is_listen_address(value):
        return []
    return [f"{name}={value} must be a loopback or private address, or a host name (auto, fly-local-6pn, the"
            " container's name); never all interfaces (0, 0.0.0.0, ::, [::], ::ffff:0.0.0.0, *, empty) and never"
            f" a public address: {reached}"]


def jupyter(v: dict, _all: dict) -> list[str]:
    problems = listen_problems("jupyter_ip", v["jupyter_ip"],
                               "Jupyter is reached through fly proxy, an SSH tunnel or a port published on 127.0.0.1.")
    if not 1024 <= v["jupyter_port"] <= 65535:
        problems.append(f"jupyter_port={v['jupyter_port']} must be a number from 1024 to 65535.")
    if v["jupyter_token"] and not is_jupyter_token(v["jupyter_token"]):
        problems.append(
            "jupyter_token must be empty (one is generated and kept on the volume) or at least 32 URL-safe"
            " characters: letters, digits, '.', '_', '~' or '-' (Jupyter strips spaces and quotes, and the token"
            " travels in the URL).")
    if not is_requirement(v["jupyter_lab_spec"]):
        problems.append(f"jupyter_lab_spec={shown(v['jupyter_lab_spec'])} must be a requirement specifier pip can"
                        " parse (e.g. 'jupyterlab==4.2.5')")
    if not is_requirement(v["jupyter_kernel_spec"]):
        problems.append(f"jupyter_kernel_spec={shown(v['jupyter_kernel_spec'])} must be a requirement specifier pip"
                        " can parse (e.g. 'ipykernel==6.29.5')")
    problem = settings_problem(v["jupyter_server_settings"])
    return problems + ([problem] if problem else [])


def tensorboard(v: dict, _all: dict) -> list[str]:
    problems = listen_problems("tensorboard_ip", v["tensorboard_ip"],
                               "TensorBoard is reached through the same fly proxy or SSH tunnel as Jupyter.")
    if not 1024 <= v["tensorboard_port"] <= 65535:
        problems.append(f"tensorboard_port={v['tensorboard_port']} must be a number from 1024 to 65535.")
    if not is_requirement(v["tensorboard_spec"]):
        problems.append(f"tensorboard_spec={shown(v['tensorboard_spec'])} must be a requirement specifier pip can"
                        " parse (e.g. 'tensorboard==2.20.0')")
    return problems


def services(_v: dict, _all: dict, value) -> list[str]:
    """Every service together (the built-in ones and devbox_services): the entry's shape, a port each,
    the listening-address rule and requirement specifiers for the user's own services (the built-in
    ones' jupyter_* and tensorboard_* values have their roles' own rules, which spoke first)."""
    try:
        entries = facts(value)["services"]
    except ServiceError as error:
        return [str(error)]
    problems = []
    for service in entries:
        if service["name"] in BUILT_IN:
            continue
        problems += listen_problems(f"service {service['name']}: ip", service["ip"],
                                   "every service is reached through a tunnel or a port published on 127.0.0.1.")
        problems += [f"service {service['name']}: packages: {shown(spec)} is not a requirement specifier pip can parse"
                     for spec in service["packages"] if not is_requirement(spec)]
    return problems


def idle_stop(v: dict, everything: dict) -> list[str]:
    """The module's own rules (devbox_idle.setting_problems). Only the image's boot step acts on idle stop: the
    targets that run it (the local machine, Fly Machines) have their home on a volume; a host without one (an
    SSH host) is refused here, before any change. The module asks the machine itself too."""
    problems = setting_problems({"minutes": v["idle_stop_minutes"], "warn_minutes": v["idle_stop_warn_minutes"],
                                 "gpu_percent": v["idle_stop_gpu_percent"], "before_stop": v["idle_stop_before_stop"],
                                 "before_stop_timeout": v["idle_stop_before_stop_timeout"], "project": "-", "venv": "-"})
    if 0 < v["idle_stop_minutes"] <= MAX_MINUTES and everything.get("dev_user_home_is_volume") is False:
        problems.append(f"idle_stop_minutes={v['idle_stop_minutes']}: only the image's boot step (the local machine, a "
                        "Fly Machine) acts on idle stop, and this host is none of them (dev_user_home_is_volume is "
                        "false, as on an SSH host): set idle_stop_minutes: 0 for it")
    return problems


# Variables of earlier versions, each with what replaces it: set, they stop the run instead of being ignored.
RETIRED = {
    **{f"{role}_user": "dev_user_name" for role in ("gpu", "python_env", "jupyter", "tensorboard")},
    **{f"{role}_home": "dev_user_home" for role in ("gpu", "python_env", "jupyter", "tensorboard", "idle_stop")},
    **{f"{role}_venv_dir": "python_env_venv_dir" for role in ("jupyter", "tensorboard")},
    **{f"{role}_project_dir": "python_env_project_dir" for role in ("jupyter", "tensorboard")},
    **{f"{role}_min_free_mb": "python_env_min_free_mb" for role in ("jupyter", "tensorboard")},
}


RULES = {"dev_user": dev_user, "gpu": gpu, "swap": swap, "python_env": python_env, "jupyter": jupyter,
         "tensorboard": tensorboard, "services": services, "idle_stop": idle_stop}


def input_problems(loader, templar, task_vars: dict, roles) -> list[str]:
    """Every problem of these roles' inputs (task_vars: the play's values, over the roles' defaults)."""
    specs = {role: loader.load_from_file(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml"))
             ["argument_specs"]["main"]["options"] for role in roles}
    defaults = role_defaults(loader, [role for role in roles if role in ROLES])  # services has none
    # The play's values win over the roles' defaults, as when the role runs.
    templar_here = templar.copy_with_new_env(available_variables=combine_vars(defaults, task_vars))
    # The host's inventory name: python_env makes a file name of it.
    everything = {"inventory_hostname": task_vars.get("inventory_hostname")}
    problems = [f"{name} is no longer read: set {RETIRED[name]} instead (it is the one setting for every role)"
                for name in sorted(RETIRED) if name in task_vars]
    for role in roles:
        provided = {name: task_vars.get(name, defaults.get(name)) for name in specs[role]}
        try:
            templated = templar_here.template({name: value for name, value in provided.items() if value is not None})
        except AnsibleError as error:
            if not problems:  # else a value built from the ones already refused (the play's lookups) failed
                problems.append(f"{role}: {error.message}")
            continue
        checked = ArgumentSpecValidator(specs[role]).validate(templated, validate_role_argument_spec=True)
        if checked.error_messages:
            problems += [f"{role}: {message}" for message in checked.error_messages]
            continue
        everything.update(checked.validated_parameters)
        if role == "services" and problems:
            continue  # the services are built from the values above: their own problems come first
        if role == "services":  # every service at once, from every role's variables
            problems += services(checked.validated_parameters, everything, play_value(templar, loader, task_vars))
        else:
            problems += RULES[role](checked.validated_parameters, everything)
    return problems


def problems_message(problems: list[str]):
    return problems[0] if len(problems) == 1 else problems


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("roles", "remember"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        roles = self._task.args.get("roles")
        if not isinstance(roles, list) or not roles or any(role not in RULES for role in roles):
            return dict(result, failed=True, msg=f"devbox_check_inputs: roles must be a list of {', '.join(RULES)}, not {roles!r}")
        problems = input_problems(self._loader, self._templar, task_vars or {}, roles)
        if problems:
            return dict(result, failed=True, msg=problems_message(problems))
        if self._task.args.get("remember"):
            result["ansible_facts"] = {"devbox_inputs_checked": True}  # the roles skip their own check
        return dict(result, changed=False, msg=f"the inputs of {', '.join(roles)} are fine")
