#!/usr/bin/python
"""Ansible module: every service of the dev machine (Jupyter, TensorBoard, the user's own) converged in one run."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_services
short_description: Install, register, start, restart or stop every service of the dev machine, in one pass
description:
  - Started as root (no become, so the task pipelines). O(services) is the whole list, each entry of the shape
    the devbox_services variable takes (plugins/module_utils/devbox_service.py); the action plugin of the same
    name builds it from the variables, so a task names no option.
  - As root, before anything changes, every entry, address and Jupyter setting is checked again; then the
    launcher and its libraries are kept as root's own files under C(~/.devbox/lib/), and one root-owned record
    per service in C(~/.devbox/service-<name>.json), which PID 1 reads at boot and at stop.
  - As O(user), in a child process that dropped to that user, each service's packages are installed into the
    venv it runs from (its C(venv) field, the project venv or a venv of its own under O(service_venvs_dir) made
    with the project venv's installer settings); Jupyter's settings, token and kernel spec are written (C(python3),
    named Python (project), the project venv's interpreter, a new notebook's default); each service is started
    (when it is not serving) or restarted (when its record, its packages or Jupyter's settings changed and it
    restarts on change) by the one launcher C(devbox_launcher.py).
  - Jupyter is not restarted while a kernel is busy (Jupyter asked as PID 1's idle stop asks), unless
    O(jupyter_restart=now); the restart is left pending, with its reasons, in the root-owned
    C(~/.devbox/restart_pending.json); the image's boot step (PID 1 of a container or a Fly Machine; not on an SSH
    host) restarts it at its first look with no kernel busy, as does the next run (a restart in between, by hand
    or by a reboot, settles it).
  - A service whose record is there but which left the list is stopped and its record removed.
  - Returns Jupyter's token for the report, so register the result with C(no_log).
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
  - devbox.machine.layout
options:
  user:
    description: The user who runs the services; the module works as this user.
    type: str
    required: true
  service_venvs_dir:
    description: Where a service whose C(venv) is V(own) gets its venv, C(<this>/<name>), relative to the home
      (python_env_service_venvs_dir).
    type: str
    required: true
  services:
    description: Every service the machine runs, as checked entries (name, port, command, packages, ...).
    type: list
    elements: dict
    required: true
  jupyter_token:
    description: A fixed token for the service named jupyter; empty keeps the stored one or makes one on the first start.
    type: str
    default: ""
  jupyter_server_settings:
    description:
      - More Jupyter server settings, shaped like C(jupyter_server_config.json), merged over the module's own.
      - Refused before anything changes when they would open the server or drop its token (the rule of
        plugins/module_utils/devbox_jupyter_settings.py).
    type: dict
    default: {}
  libraries:
    description: The launcher and the libraries it imports, file name to source text (the action plugin reads them).
    type: dict
    required: true
  min_free_mb:
    description: Free space the volume must have before packages are installed, in MB.
    type: int
    required: true
  jupyter_restart:
    description:
      - When a change needs Jupyter restarted; V(idle) waits while a kernel is busy (the restart stays pending for
        the next run), V(now) restarts it anyway, busy kernels and all.
    type: str
    choices: [idle, now]
    required: true
"""

EXAMPLES = r"""
- name: Install, configure and start every service
  devbox_services:
  register: services_result
  no_log: true  # the result carries Jupyter's token
"""

RETURN = r"""
services:
  description: Per service, what happened (V(started), V(restarted), V(already running), V(restart pending), in
    check mode V(would start), V(would restart) or V(would wait to restart), null when nothing would), why
    (C(reason)), where it listens on the machine, its pid, and what was installed.
  returned: success
  type: dict
  sample: {jupyter: {action: restart pending, reason: "Jupyter's settings changed; not now: 1 kernel busy",
           url: "http://172.17.0.3:8888/", pid: 4242, listen: devbox-local, installed: [], upgraded: []}}
settings:
  description: >-
    What changed (in check mode, would change) in Jupyter's settings, one line each, as
    C(Section.setting: old -> new); the values of settings named for a secret, and the token, masked.
  returned: success
  type: list
  elements: str
  sample: ["ServerApp.iopub_data_rate_limit: 1000000 -> 10000000"]
removed:
  description: The services stopped and unregistered because they left the list.
  returned: success
  type: list
  elements: str
  sample: [streamlit]
token:
  description: The token the Jupyter server accepts; null in check mode or without Jupyter.
  returned: success
  type: str
"""

import json
import os
import re
import subprocess
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_address_problem, listen_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_files import read_text
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import (
    jupyter_activity, keep_pending, read_pending)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_jupyter_settings import merged, settings_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (
    LOCK_TIMEOUT_S, START_TIMEOUT_S, TOKEN_FILE)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import (
    LAYOUT_ARGUMENT_SPEC, dir_problem, options_problem)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    LIBRARY_DIR, AccountError, remove_root_file, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
    JUPYTER, ServiceError, file_name, load, normalize_all, record, record_names, register, service_venv, unregister,
    validate_record)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    VenvError, converge, json_object, load_settings, plan, write_if_changed)

# The launcher, kept with its libraries in ~/.devbox under the collection's own tree (LIBRARY_DIR), so
# they import each other by the collection's name as everywhere else.
LAUNCHER = f"{LIBRARY_DIR}/devbox_launcher.py"
# JupyterLab asks every new user whether to fetch Jupyter's news from the internet; ours says no
# by default. overrides.d/ holds defaults (Settings can still turn news on) and leaves
# overrides.json to the user.
LAB_DEFAULTS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}
JUPYTER_CONFIG = ".jupyter/jupyter_server_config.json"
# The project's kernel, under the user's Jupyter data folder: named python3, it is the default kernel of a
# new notebook and of every notebook saved before Jupyter had a venv of its own.
KERNEL_SPEC = ".local/share/jupyter/kernels/python3/kernel.json"
# The user's own command for the launcher: `devbox-service jupyter restart`.
COMMAND = ".local/bin/devbox-service"
# The per-service launchers of earlier versions, replaced by the one launcher.
OLD_LAUNCHERS = {"jupyter": ".local/bin/devbox-jupyter", "tensorboard": ".local/bin/devbox-tensorboard"}
# Where those launchers imported their libraries from (root's own files), now under LIBRARY_DIR.
OLD_LIBRARIES = ("devbox_address.py", "devbox_launcher.py")
# What the run says of a setting whose name speaks of a secret: its value never.
SECRET_SETTING = re.compile(r"token|password|secret|key|cookie|salt|hash|credential", re.IGNORECASE)
MASK = "********"
UNSET = object()


def jupyter_config(project: str, listen: str, port: int, settings: dict) -> dict:
    """The server's settings (already checked jupyter_server_settings laid over the module's own)."""
    return merged({"ServerApp": {
        "ip": listen,
        "port": port,
        "port_retries": 0,
        "open_browser": False,
        "root_dir": project,
        # Behind fly proxy or a published port the Host header is not the bind address.
        "allow_remote_access": True,
    }}, settings)


def launcher(home: str, name: str, command: str) -> dict:
    """As the user: the one launcher's answer for one service, checked: a JSON object whose fields have
    the types expected, or an "error" saying what came back instead."""
    timeout = START_TIMEOUT_S + LOCK_TIMEOUT_S + 30
    try:
        run = subprocess.run([sys.executable, os.path.join(home, ".devbox", LAUNCHER), name, command],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the launcher did not answer within {timeout} s"}
    try:
        answer = json.loads(run.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"error": f"the launcher exited with {run.returncode}: {(run.stdout + run.stderr).strip()[-2000:]!r}"}
    expected = {"error": str, "url": str, "action": str, "pid": (int, type(None)), "healthy": bool}
    if any(key in answer and (not isinstance(answer[key], kind) or (isinstance(answer[key], bool) and kind is not bool))
           for key, kind in expected.items()):
        return {"error": f"the launcher's answer has fields of the wrong type: {run.stdout.strip()[:500]!r}"}
    return answer


def retire_old_launchers(home: str) -> None:
    """As the user: the per-service launchers of earlier versions go. The server each ran is stopped first,
    except Jupyter's, which the one launcher takes over with its kernels (Jupyter's runtime file names it)."""
    for name, old in OLD_LAUNCHERS.items():
        path = os.path.join(home, old)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        if name != JUPYTER:
            subprocess.run([path, "stop"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        os.remove(path)


def setting_changes(before: dict, after: dict, prefix: str = "") -> list[str]:
    """Each setting that differs between two of Jupyter's configs, as `Section.name: old -> new`; the value of a
    setting whose name speaks of a secret is masked."""
    changes = []
    for key in sorted(set(before) | set(after), key=str):
        name, old, new = f"{prefix}{key}", before.get(key, UNSET), after.get(key, UNSET)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changes += setting_changes(old, new, f"{name}.")
            continue
        old, new = ("(unset)" if value is UNSET else MASK if SECRET_SETTING.search(name)
                    else json.dumps(value, sort_keys=True)[:80] for value in (old, new))
        changes.append(f"{name}: {old} -> {new}")
    return changes


def kernel_spec(project_venv: str) -> dict:
    """The kernel of the project venv's own interpreter: %pip install in a notebook installs there."""
    return {"argv": [os.path.join(project_venv, "bin", "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (project)", "language": "python", "metadata": {"debugger": True}}


def jupyter_files(params: dict, venv: str, project: str, dry_run: bool, diffs: list, settings: list) -> bool:
    """As the user: Jupyter's settings, the given token, the project's kernel, JupyterLab's defaults in the venv
    Jupyter runs from (venv); True when any changed. What changed is added to settings, in words, secrets masked."""
    home = params["home"]
    service = next(service for service in params["services"] if service["name"] == JUPYTER)
    if not dry_run:
        os.makedirs(os.path.join(home, ".jupyter"), mode=0o700, exist_ok=True)
    config = jupyter_config(project, params["listen"][JUPYTER], service["port"], params["jupyter_server_settings"])
    config_path = os.path.join(home, JUPYTER_CONFIG)
    before = json_object(read_text(config_path)) if os.path.exists(config_path) else None
    changed = write_if_changed(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n", 0o600, dry_run, diffs)
    if changed:
        settings += [f"~/{JUPYTER_CONFIG}: written"] if before is None else setting_changes(before, config)
    if params["jupyter_token"] and write_if_changed(os.path.join(home, TOKEN_FILE), params["jupyter_token"], 0o600,
                                                    dry_run):
        settings.append(f"Jupyter's token: {MASK}")
        changed = True
    kernel = os.path.join(home, KERNEL_SPEC)
    if not dry_run:
        os.makedirs(os.path.dirname(kernel), exist_ok=True)
    if write_if_changed(kernel, json.dumps(kernel_spec(os.path.join(home, params["venv_dir"])), indent=2) + "\n",
                        0o644, dry_run, diffs):
        settings.append("the kernel Python (project): written")
        changed = True
    lab_defaults = os.path.join(venv, "share", "jupyter", "lab", "settings", "overrides.d", "devbox.json")
    if not dry_run:
        os.makedirs(os.path.dirname(lab_defaults), exist_ok=True)
    if write_if_changed(lab_defaults, json.dumps(LAB_DEFAULTS, indent=2) + "\n", 0o644, dry_run, diffs):
        settings.append("JupyterLab's defaults (no news from the internet): written")
        changed = True
    return changed


def jupyter_state(home: str) -> dict:
    """As the user: the serving Jupyter's pid (None when none serves) and why it must not restart now (its busy
    kernels, or that Jupyter could not be asked: then its pid is not known either), asked as PID 1's idle stop asks."""
    try:
        activity = jupyter_activity(home)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {"wait": f"Jupyter could not be asked whether a kernel is busy ({error})"}
    if activity is None:
        return {"pid": None, "wait": None}
    busy = len(activity["busy_kernels"])  # the busy kernels, named by their notebooks
    return {"pid": activity["pid"], "wait": f"{busy} kernel{'s' if busy > 1 else ''} busy" if busy else None}


def still_pending(earlier: dict | None, state: dict) -> list[str]:
    """Why an earlier run left Jupyter's restart pending, while the server it spared still serves (a restart
    since, by hand or by a reboot, read the new settings); kept while Jupyter cannot be asked."""
    if earlier is None or ("pid" in state and (state["pid"] is None or earlier["pid"] not in (None, state["pid"]))):
        return []
    return earlier["reasons"]


def why(action: str | None, reasons: list[str], wait: str | None, new: bool) -> str | None:
    """The reason given for what happened to a service, in words."""
    if action in ("started", "would start"):
        return "new" if new else "it was not running"
    if action in ("restarted", "would restart"):
        return "; ".join(reasons)
    if action in ("restart pending", "would wait to restart"):
        return f"{'; '.join(reasons)}; not now: {wait}"
    return None


def provision(params: dict, dry_run: bool) -> dict:
    """As the user: every service's packages and files, then each service stopped, started or restarted."""
    home = params["home"]
    project_venv, project = os.path.join(home, params["venv_dir"]), os.path.join(home, params["project_dir"])
    venvs = {service["name"]: service_venv(service, home, params["venv_dir"], params["service_venvs_dir"])
             for service in params["services"]}
    diffs, outcomes, pending = [], {}, {}
    if not dry_run:
        os.makedirs(os.path.join(home, os.path.dirname(COMMAND)), mode=0o755, exist_ok=True)
    command_text = ("#!/bin/sh\n# devbox-service NAME start|stop|restart|status\n"
                    f"exec /usr/bin/python3 \"$HOME/.devbox/{LAUNCHER}\" \"$@\"\n")
    changed_command = write_if_changed(os.path.join(home, COMMAND), command_text, 0o755, dry_run)
    if not dry_run:
        retire_old_launchers(home)
    for name in params["removed"]:
        answer = {"action": "would stop"} if dry_run else launcher(home, name, "stop")
        outcomes[name] = {"action": answer.get("action"), "error": answer.get("error")}
    settings, jupyter_changed = [], False
    for service in params["services"]:
        name = service["name"]
        installed = {"installed": [], "upgraded": [], "changed": False}
        if service["packages"]:
            # A venv of its own takes the project venv's installer settings (indexes, CA bundle, installer), and is
            # made with the project venv's uv (uv venv --seed: no ensurepip, no pip install of uv).
            own = venvs[name] != project_venv
            venv_params = {"path": venvs[name], "base_python": "python3", "requirements": service["packages"],
                           "installer": None, "settings": load_settings(project_venv) if own else None,
                           "min_free_mb": params["min_free_mb"], "lock_timeout": 600,
                           "uv_from": os.path.join(project_venv, "bin", "uv") if own else None}
            installed = plan(venv_params) if dry_run else converge(venv_params)
        if name == JUPYTER:  # after its install: a venv of its own is made (emptied) by the first one
            jupyter_changed = jupyter_files(params, venvs[JUPYTER], project, dry_run, diffs, settings)
        reasons = [reason for reason, applies in (
            ("its entry changed", name in params["record_changed"]), ("its packages changed", installed["changed"]),
            ("Jupyter's settings changed", name == JUPYTER and jupyter_changed)) if applies]
        wait = None
        if name == JUPYTER and (reasons or name in params["pending"]):
            state = jupyter_state(home)
            reasons += [reason for reason in still_pending(params["pending"].get(name), state) if reason not in reasons]
            # A busy kernel is never killed unasked: the restart waits for a run when none is (or for `now`).
            wait = state["wait"] if params["jupyter_restart"] != "now" else None
        new = name in params["record_new"]
        if reasons and not dry_run and new and launcher(home, name, "status").get("pid") is None:
            reasons = []  # new, and nothing of it runs yet: its start reads everything
        restart = service["restart_on_change"] and bool(reasons)
        if dry_run:
            running = name not in params["record_new"] and launcher(home, name, "status").get("healthy") is True
            answer = {"action": "would start" if not running else None if not restart
                      else "would wait to restart" if wait else "would restart"}
        else:
            answer = dict(launcher(home, name, "restart" if restart and not wait else "start"))
            if "error" in answer:
                raise ServiceError(f"{name}: {answer['error']}")
            if restart and not wait:
                answer["action"] = "restarted"
            elif restart and answer.get("action") == "already running":
                answer["action"] = "restart pending"
                pending[name] = {"reasons": reasons, "pid": answer.get("pid")}
        acted = answer.get("action") in ("started", "restarted", "would start", "would restart")
        outcomes[name] = {"action": answer.get("action"), "url": answer.get("url"), "pid": answer.get("pid"),
                          "listen": params["listen"][name], "installed": installed.get("installed", []),
                          "upgraded": installed.get("upgraded", []), "changed": bool(installed["changed"]) or acted,
                          "reason": why(answer.get("action"), reasons, wait, new)}
    token = None
    if not dry_run and JUPYTER in outcomes:
        with open(os.path.join(home, TOKEN_FILE)) as token_file:
            token = token_file.read().strip()
    changed = changed_command or jupyter_changed or any(
        outcome.get("changed") or outcome.get("action") in ("stopped", "would stop") for outcome in outcomes.values())
    return {"services": outcomes, "token": token, "diff": diffs, "settings": settings, "changed": changed,
            "pending": pending}


def checked(module) -> tuple[list, dict]:
    """The services and the name each listens on, after every rule; else the module fails before any change."""
    params = module.params
    try:
        services = normalize_all(params["services"])
    except ServiceError as error:
        module.fail_json(msg=f"{error}; nothing was changed")
    problem = options_problem(params) or (
        dir_problem(params["service_venvs_dir"]) and f"service_venvs_dir: {dir_problem(params['service_venvs_dir'])}")
    if problem:
        module.fail_json(msg=f"{problem}; nothing was changed")
    listen = {}
    for service in services:
        listen[service["name"]] = listen_name(service["ip"])
        problem = listen_address_problem(listen[service["name"]])
        if problem:
            module.fail_json(msg=f"{service['name']}: ip={service['ip']}: {problem}; nothing was changed",
                             listen=listen[service["name"]])
    problem = settings_problem(params["jupyter_server_settings"], listen_address_problem)
    if problem:
        module.fail_json(msg=f"{problem}; the running Jupyter and its settings are unchanged")
    return services, listen


def previous_record(home: str, name: str) -> dict | None:
    """The service's record of an earlier run, None when absent or of an earlier version (not compared)."""
    try:
        return load(home, name)
    except ServiceError:
        return None


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params, dry_run = module.params, module.check_mode
    services, listen = checked(module)
    home, names = params["home"], [service["name"] for service in services]
    if dry_run and not user_exists(params["user"]):
        module.exit_json(changed=True, services={name: {"action": "would start"} for name in names}, removed=[],
                         token=None)
    try:
        libraries_changed = any([write_root_file_if_changed(home, f"{LIBRARY_DIR}/{name}", text, dry_run)
                                 for name, text in sorted(params["libraries"].items())]
                                + [remove_root_file(home, name, dry_run) for name in OLD_LIBRARIES])
        before = {name: previous_record(home, name) for name in record_names(home)}
        # The record keeps the name to listen on ("auto" decided here); the launcher resolves it at every start.
        records = {service["name"]: record(dict(service, ip=listen[service["name"]]), home, params["venv_dir"],
                                           params["project_dir"], params["service_venvs_dir"]) for service in services}
        record_changed = [name for name, new in records.items()
                          if before.get(name) is not None and before[name] != validate_record(new, file_name(name))]
        record_new = [name for name in records if name not in before]
        pending = read_pending(home)[0]  # a damaged record is dropped: this run's changes decide
        registered = any([register(home, new, dry_run) for new in records.values()])
    except (AccountError, ServiceError, OSError) as error:
        module.fail_json(msg=f"cannot keep the services' records in {home}/.devbox: {error}")
    removed = sorted(set(before) - set(records))
    try:
        result = run_as(params["user"], provision, dict(
            params, services=services, listen=listen, removed=removed, record_changed=record_changed,
            record_new=record_new, pending=pending), dry_run, expected=(VenvError, ServiceError, OSError))
    except RunAsError as error:
        module.fail_json(msg=str(error))
    try:
        keep_pending(home, result.pop("pending"), dry_run)
        for name in removed:
            unregister(home, name, dry_run)
    except (AccountError, ServiceError, OSError) as error:
        module.fail_json(msg=f"cannot keep the pending restarts or remove a left service's record in {home}/.devbox: "
                             f"{error}")
    diffs = result.pop("diff")
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**dict(result, removed=removed,
                            changed=result["changed"] or libraries_changed or registered or bool(removed)))


ARGUMENT_SPEC = dict(
    LAYOUT_ARGUMENT_SPEC,
    user={"type": "str", "required": True},
    service_venvs_dir={"type": "str", "required": True},
    home={"type": "path", "required": True},
    services={"type": "list", "elements": "dict", "required": True},
    jupyter_token={"type": "str", "default": "", "no_log": True},
    jupyter_server_settings={"type": "dict", "default": {}},
    libraries={"type": "dict", "required": True},
    min_free_mb={"type": "int", "required": True},
    jupyter_restart={"type": "str", "choices": ["idle", "now"], "required": True},
)


if __name__ == "__main__":
    main()
