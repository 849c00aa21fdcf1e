"""Action plugin: check the inputs of the named roles, on the controller, before any change.

One task instead of one per rule: each role's variables (the play's value, else the role's
defaults/main.yml, templated) are validated against the role's `main` entry point of
meta/argument_specs.yml, as Ansible does when the role starts, and then against the rules a
type cannot say (addresses, ranges, requirement specifiers, files on the controller). Every
problem of every role is reported at once, each naming the variable, its value and the fix;
a secret's value is never shown. The rules are the Jinja tests' (plugins/test/) and
module_utils' own, which the modules apply again on the machine.

    - devbox_check_inputs:
        roles: [dev_user, jupyter]
"""
from __future__ import annotations

import importlib.util
import json
import os
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import combine_vars

# plugins/action/ -> the top of the repository or of the installed collection, where roles/ is.
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plugin(relative: str):
    """A plugin file of this tree, loaded by its path: the same file in the repository and the collection."""
    spec = importlib.util.spec_from_file_location(os.path.basename(relative)[:-3], os.path.join(TOP, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_home = _plugin("plugins/test/devbox_home.py")
_address = _plugin("plugins/test/devbox_listen_address.py")
_token = _plugin("plugins/test/devbox_jupyter_token.py")
_requirement = _plugin("plugins/test/devbox_requirement.py")
_settings = _plugin("plugins/module_utils/devbox_jupyter_settings.py")
_layout = _plugin("plugins/module_utils/devbox_layout.py")
# An index URL may carry a password or a token: only the masked form is ever shown (the one masking rule).
_venv = _plugin("plugins/module_utils/devbox_venv.py")
_names = _plugin("plugins/module_utils/devbox_names.py")


def shown(value) -> str:
    return json.dumps(value)


def masked(url: str) -> str:
    return _venv.mask_credentials(url)


def dev_user(v: dict, _all: dict) -> list[str]:
    problems = []
    if (not _home.devbox_account.is_login_name(v["dev_user_name"])
            or not 1 <= v["dev_user_uid"] <= 60000 or not 1 <= v["dev_user_gid"] <= 60000):
        problems.append(
            f"dev_user_name={shown(v['dev_user_name'])} must be 1-32 characters of lower-case letters, digits, '_'"
            f" or '-', starting with a letter or '_'; dev_user_uid={v['dev_user_uid']} and"
            f" dev_user_gid={v['dev_user_gid']} must be 1-60000.")
    if not _home.is_home(v["dev_user_home"]):
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
            problem = _venv.control_problem(lock.read(), f"python_env_lock_file={path}")
    except (OSError, UnicodeDecodeError) as error:
        problem = f"python_env_lock_file={path}: cannot be read as UTF-8 text ({error})"
    return [_venv.mask_credentials(problem)] if problem else []


def python_env(v: dict, everything: dict) -> list[str]:
    problems = [
        f"python_env_packages: {shown(spec)} is not a requirement specifier pip can parse (e.g. 'numpy', 'torch==2.5.1')"
        for spec in v["python_env_platform_packages"] + v["python_env_packages"]
        if not _requirement.is_requirement(spec)]
    urls = ([v["python_env_index_url"]] if v["python_env_index_url"] else []) + v["python_env_extra_index_urls"]
    problems += [
        f"python_env_index_url / python_env_extra_index_urls: {shown(masked(url))}"
        " is not an http(s):// or file:// URL"
        for url in urls if not re.match(r"^(https?|file)://", url)]
    for name in ("python_env_venv_dir", "python_env_project_dir"):
        if _layout.dir_problem(v[name]):
            problems.append(
                f"{name}={shown(v[name])} must be a plain path relative to the home, such as 'project-venv' or"
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
    if v["python_env_sync"] and not v["python_env_lock_file"]:
        problems.append("python_env_sync=true needs python_env_lock_file: the lock says what to keep, everything else is removed")
    if v["python_env_lock_copy_dir"] and not os.path.isabs(v["python_env_lock_copy_dir"]):
        problems.append(f"python_env_lock_copy_dir={v['python_env_lock_copy_dir']} must be an absolute path on the"
                        " controller, or \"\" to keep no copy")
    # The copy is <python_env_lock_copy_dir>/<host>.requirements.lock: the host's name becomes a file name.
    name_problem = _names.name_problem(everything.get("inventory_hostname"), "the inventory host name")
    if v["python_env_lock_copy_dir"] and name_problem:
        problems.append(f"{name_problem} (python_env_lock_copy_dir keeps a copy of its lock under that name;"
                        " or set python_env_lock_copy_dir: \"\")")
    return problems


def listen_problems(name: str, value, reached: str) -> list[str]:
    if _address.is_listen_address(value):
        return []
    return [f"{name}={value} must be a loopback or private address, or a host name (auto, fly-local-6pn, the"
            " container's name); never all interfaces (0, 0.0.0.0, ::, [::], ::ffff:0.0.0.0, *, empty) and never"
            f" a public address: {reached}"]


def jupyter(v: dict, _all: dict) -> list[str]:
    problems = listen_problems("jupyter_ip", v["jupyter_ip"],
                               "Jupyter is reached through fly proxy, an SSH tunnel or a port published on 127.0.0.1.")
    if not 1024 <= v["jupyter_port"] <= 65535 or v["jupyter_min_free_mb"] < 0:
        problems.append(f"jupyter_port={v['jupyter_port']} must be a number from 1024 to 65535;"
                        f" jupyter_min_free_mb={v['jupyter_min_free_mb']} must be a number of MB, 0 or more.")
    if v["jupyter_token"] and not _token.is_jupyter_token(v["jupyter_token"]):
        problems.append(
            "jupyter_token must be empty (one is generated and kept on the volume) or at least 32 URL-safe"
            " characters: letters, digits, '.', '_', '~' or '-' (Jupyter strips spaces and quotes, and the token"
            " travels in the URL).")
    if not _requirement.is_requirement(v["jupyter_lab_spec"]):
        problems.append(f"jupyter_lab_spec={shown(v['jupyter_lab_spec'])} must be a requirement specifier pip can"
                        " parse (e.g. 'jupyterlab==4.2.5')")
    settings_problem = _settings.settings_problem(v["jupyter_server_settings"])
    return problems + ([settings_problem] if settings_problem else [])


def tensorboard(v: dict, everything: dict) -> list[str]:
    problems = listen_problems("tensorboard_ip", v["tensorboard_ip"],
                               "TensorBoard is reached through the same fly proxy or SSH tunnel as Jupyter.")
    jupyter_port = everything.get("jupyter_port", 8888)  # the play's, or Jupyter's default
    if not 1024 <= v["tensorboard_port"] <= 65535 or str(v["tensorboard_port"]) == str(jupyter_port) or v["tensorboard_min_free_mb"] < 0:
        problems.append(
            f"tensorboard_port={v['tensorboard_port']} must be a number from 1024 to 65535, other than jupyter_port"
            f" ({jupyter_port}); tensorboard_min_free_mb={v['tensorboard_min_free_mb']} must be a number of MB, 0 or more.")
    if not _requirement.is_requirement(v["tensorboard_spec"]):
        problems.append(f"tensorboard_spec={shown(v['tensorboard_spec'])} must be a requirement specifier pip can"
                        " parse (e.g. 'tensorboard==2.20.0')")
    return problems


def idle_stop(v: dict, _all: dict) -> list[str]:
    if not 0 <= v["idle_stop_minutes"] <= 10080:
        return [f"idle_stop_minutes={v['idle_stop_minutes']} must be whole minutes from 0 (never stop) to 10080 (a week)"]
    return []


RULES = {"dev_user": dev_user, "gpu": gpu, "swap": swap, "python_env": python_env, "jupyter": jupyter,
         "tensorboard": tensorboard, "idle_stop": idle_stop}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("roles",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        roles = self._task.args.get("roles")
        if not isinstance(roles, list) or not roles or any(role not in RULES for role in roles):
            return dict(result, failed=True, msg=f"devbox_check_inputs: roles must be a list of {', '.join(RULES)}, not {roles!r}")
        specs = {role: self._role_file(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"] for role in roles}
        defaults = {}
        for role in roles:
            defaults.update(self._role_file(role, "defaults/main.yml", trusted_as_template=True) or {})
        # The play's values win over the roles' defaults, as when the role runs.
        templar = self._templar.copy_with_new_env(available_variables=combine_vars(defaults, task_vars or {}))
        # The host's inventory name: python_env makes a file name of it.
        everything, problems = {"inventory_hostname": (task_vars or {}).get("inventory_hostname")}, []
        if "jupyter_port" in (task_vars or {}):  # TensorBoard's port must differ from it, even checked alone
            everything["jupyter_port"] = templar.template(task_vars["jupyter_port"])
        for role in roles:
            provided = {name: (task_vars or {}).get(name, defaults.get(name)) for name in specs[role]}
            checked = ArgumentSpecValidator(specs[role]).validate(
                templar.template({name: value for name, value in provided.items() if value is not None}),
                validate_role_argument_spec=True)
            if checked.error_messages:
                problems += [f"{role}: {message}" for message in checked.error_messages]
                continue
            everything.update(checked.validated_parameters)
            problems += RULES[role](checked.validated_parameters, everything)
        if problems:
            return dict(result, failed=True, msg=problems[0] if len(problems) == 1 else problems)
        return dict(result, changed=False, msg=f"the inputs of {', '.join(roles)} are fine")

    def _role_file(self, role: str, relative: str, **options):
        return self._loader.load_from_file(os.path.join(TOP, "roles", role, relative), **options)
