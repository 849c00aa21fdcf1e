"""The frame the service modules (devbox_jupyter, devbox_tensorboard) share around their own work.

As root: the inputs checked before anything changes, then the launchers' libraries (the very files
devbox_address.py and devbox_launcher.py, which the role passes as source text) kept as root's own
files in the home's root-owned ~/.devbox/. As the user (the module's provision function, in a child
process that dropped to the user): the server's packages in the venv and the server brought up with
its launcher. As root again: the service registered with PID 1, and the result.
"""
from __future__ import annotations

import os

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import (
    listen_address_problem, listen_name)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import (
    LAYOUT_ARGUMENT_SPEC, options_problem)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import (
    RunAsError, run_as, user_exists)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
    ServiceError, install_libraries, register_and_exit, run_launcher)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import converge, plan

# The options every service module takes besides its own, documented by the doc fragments
# devbox.machine.service and devbox.machine.layout (plugins/doc_fragments/).
COMMON_ARGUMENT_SPEC = dict(
    LAYOUT_ARGUMENT_SPEC,
    user={"type": "str", "required": True},
    home={"type": "path", "required": True},
    ip={"type": "str", "default": "auto"},
    launcher_source={"type": "str", "required": True},
    address_rule_source={"type": "str", "required": True},
    launcher_library_source={"type": "str", "required": True},
    min_free_mb={"type": "int", "default": 1024},
)
# What each library file is called in ~/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/
# (the launchers import it by the collection's name), by option.
LIBRARIES = {"address_rule_source": "devbox_address.py", "launcher_library_source": "devbox_launcher.py"}


def checked_listen(module, label: str, ip_option: str) -> str:
    """The name to listen on, after the directory options and the address passed the rules; else the module
    fails before anything is installed, written or stopped, so the running server is left alone."""
    params = module.params
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=f"{problem}; the running {label} and its settings are unchanged")
    listen = listen_name(params["ip"])
    problem = listen_address_problem(listen)
    if problem:
        module.fail_json(msg=f"{ip_option}={params['ip']}: {problem}; the running {label} and its settings are "
                         "unchanged", listen=listen)
    return listen


def converge_venv(params: dict, spec: str, dry_run: bool) -> dict:
    """As the user: the server's packages in the venv, with the installer settings python_env stored."""
    venv_params = {"path": os.path.join(params["home"], params["venv_dir"]), "base_python": "python3",
                   "requirements": [spec], "installer": None, "settings": None,
                   "min_free_mb": params["min_free_mb"], "lock_timeout": 600}
    return plan(venv_params) if dry_run else converge(venv_params)


def bring_up(launcher: str, restart: bool, launcher_changed: bool, dry_run: bool) -> dict:
    """As the user: the launcher's outcome of start (restart when asked); in a dry run only the action it
    would take (null when the server runs as it should). ServiceError with the launcher's reason."""
    if dry_run:
        running = not launcher_changed and run_launcher(launcher, "status")[0] == 0
        return {"action": "would restart" if restart and running else None if running else "would start"}
    command = "restart" if restart else "start"
    code, outcome = run_launcher(launcher, command)
    if code != 0:
        raise ServiceError(f"{os.path.basename(launcher)} {command} failed: {outcome.get('error', outcome)}")
    return outcome


def provision_and_register(module, provision, listen: str, record: dict, label: str, expected: tuple,
                           would_start: dict) -> None:
    """The rest of the module, once checked_listen passed: the libraries, provision(params, dry_run) as the
    user (params with listen and libraries_changed added), the record; then it exits with provision's result.

    would_start: the result in check mode when the user does not exist yet (nothing to ask the launcher).
    """
    params = module.params
    if module.check_mode and not user_exists(params["user"]):
        module.exit_json(changed=True, action="would start", url=None, pid=None, listen=listen, **would_start)
    try:
        libraries_changed = install_libraries(
            params["home"], {name: params[option] for option, name in LIBRARIES.items()}, module.check_mode)
    except (ServiceError, OSError) as error:
        module.fail_json(msg=f"cannot keep the launcher's libraries in {params['home']}/.devbox: {error}")
    try:
        result = run_as(params["user"], provision, dict(params, listen=listen, libraries_changed=libraries_changed),
                        module.check_mode, expected=expected + (ServiceError, OSError))
    except RunAsError as error:
        module.fail_json(msg=str(error))
    result["changed"] = result["changed"] or libraries_changed
    register_and_exit(module, result, record, label)
