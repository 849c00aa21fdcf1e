#!/usr/bin/python
"""Ansible module: the project venv on the volume, its installer settings and its packages."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_venv
short_description: Ensure a venv with the requested packages, healing it when its Python changed
description:
  - Started as root (no become, so the task pipelines), it does all its work as O(user) in a child
    process that drops to that user.
  - Creates the venv when absent or left unfinished; rebuilds it with the same distributions at the
    same versions when its interpreter is missing or is another Python version than O(base_python).
  - Persists the index URLs and CA bundle in the venv's C(pip.conf) (mode 0600) so the user's own pip
    uses them. Passwords and tokens in index URLs never reach a command line (uv gets them in its environment),
    the output (masked) or a file others can read.
  - Installs requirements with uv (default) or pip; reports changed only when distributions were
    installed, removed or upgraded, or the venv, its settings or its lock were written.
  - One run at a time per venv (a lock file beside it); checks free space before installing.
  - Keeps the venv's lock in O(project_dir)/requirements.lock, every distribution pinned (those no
    playbook asked for marked C(# by hand)), read from the venv's metadata (no installer, no network),
    and returns its text. O(lock_text) installs such a lock exactly; O(sync) also removes what it does
    not list. A lock from another Python version fails before anything changes.
  - A line of O(lock_text) holding a control character (a terminal escape such as C(\x1b[8m), any C0 or C1
    control but the newline) fails the run before anything is installed, the line shown escaped; the lock's
    URL requirements (C(name @ url), whose build code runs on the machine) are listed in RV(url_requirements).
    A line of the machine's own lock that would hold one is written as an escaped comment.
  - Passwords and tokens in URLs (C(https://user:secret@host), C(https://TOKEN@host), C(https://TOKEN:@host))
    are masked in the output, the C(--diff), the lock and the messages.
  - A uv project (O(project_pyproject) and O(project_lock), the user's C(pyproject.toml) and C(uv.lock)) is written
    to O(project_dir) and installed exactly into the venv with C(uv sync --locked) (a lock that does not match its
    C(pyproject.toml) fails before anything is installed; the project itself only with O(project_install)); what
    left the lock since the last sync is removed, what was installed by hand stays. O(requirements) that the lock
    lacks (the kernel) are installed on top within the lock's pins, or the run fails with the C(uv add) that fixes
    it. A record in the venv (C(devbox-project.json), the hash of what was synced) makes a rerun with the same
    files run no uv at all.
extends_documentation_fragment:
  - devbox.machine.common
options:
  user:
    description: The user who owns the venv; the module does its work as this user (as itself when unset).
    type: str
  home:
    description:
      - The user's home. Root keeps there, in its own C(~/.devbox/requested-packages.json) (root-owned, written
        from directory descriptors), the packages playbooks asked for, which decide what the lock marks
        C(# by hand); it is read back as data. A machine that kept the list in the venv
        (C(devbox-requested.json)) moves it over on its next run. Default, O(user)'s home from the system;
        without either, nothing is kept between runs.
    type: path
  path:
    description: The venv directory.
    type: path
    required: true
  project_dir:
    description: The project directory beside it, created when absent; holds requirements.txt and the lock.
    type: path
  base_python:
    description: Interpreter the venv is built from.
    type: str
    default: python3
  requirements:
    description: Requirement specifiers to install.
    type: list
    elements: str
    default: []
  requirements_file_text:
    description: Content for O(project_dir)/requirements.txt (mode 0600), written there and installed.
    type: str
  installer:
    description: The installer; unset keeps the stored one, else uv.
    type: str
    choices: [uv, pip]
  configure:
    description: Write the installer settings below; false keeps the stored ones.
    type: bool
    default: true
  index_url:
    description: Package index URL replacing PyPI; a password in it is masked in all output.
    type: str
  extra_index_urls:
    description: Extra package indexes, such as the PyTorch CUDA wheel index.
    type: list
    elements: str
    default: []
  ca_bundle:
    description: PEM bundle on the machine the installer must trust.
    type: path
  min_free_mb:
    description: Free space the volume must have before an install, in MB.
    type: int
    default: 1024
  lock_timeout:
    description: Seconds to wait for another run's lock on the venv.
    type: int
    default: 600
  lock_text:
    description: A lock (a machine's requirements.lock) to install exactly.
    type: str
  lock_name:
    description: The lock's name in messages (its path on the controller).
    type: str
  sync:
    description: Also uninstall what O(lock_text) does not list (never pip or uv).
    type: bool
    default: false
  project_pyproject:
    description: The uv project's C(pyproject.toml), written to O(project_dir); with O(project_lock).
    type: str
  project_lock:
    description: The uv project's C(uv.lock), written to O(project_dir) and installed exactly.
    type: str
  project_name:
    description: The project's name in messages (its folder on the controller).
    type: str
  project_groups:
    description: The dependency groups to install; empty, uv's default groups (C(dev)).
    type: list
    elements: str
    default: []
  project_extras:
    description: The project's extras to install.
    type: list
    elements: str
    default: []
  project_install:
    description: Also install the project itself (its source must then be in O(project_dir)).
    type: bool
    default: false
  gpu_cuda_version:
    description:
      - The CUDA version the machine's driver supports (the gpu role's facts); empty without a GPU.
      - With O(requirements) asking for torch and no O(index_url) or O(extra_index_urls) given, the venv gets
        PyTorch's wheel index of the newest CUDA runtime the driver supports (its CPU wheels without a GPU) as an
        extra index (RV(torch_index)); with a uv project the lock decides, and a torch build the machine's GPU
        cannot use (CPU-only, or a newer CUDA than the driver's) is warned about.
    type: str
    default: ""
  shell_block:
    description:
      - Also keep the block in O(home)/C(.bashrc) that activates the venv in interactive shells (unless one is
        already active) and starts SSH logins that begin in the home in O(project_dir), except in VS Code's own
        terminals; non-interactive shells (C(ssh host command), Ansible, VS Code's server) are untouched.
      - Written by the user, in the same child; the block is replaced in place, never duplicated, the rest of the
        file kept with its mode, a link's target changed. O(path) and O(project_dir) must lie in O(home).
    type: bool
    default: false
  index_credentials:
    description:
      - Credentials of the indexes C(pyproject.toml) names, index name to C(username) and C(password); uv gets them in
        its environment (C(UV_INDEX_<NAME>_USERNAME), C(UV_INDEX_<NAME>_PASSWORD)), never on a command line or in output.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: The installer's own dry run decides for requirements the installed metadata cannot settle.
  diff_mode:
    support: partial
    details: Shows the settings files (pip.conf, devbox-installer.json) that change, passwords and tokens masked.
"""

EXAMPLES = r"""
- name: Ensure the venv and the packages
  devbox_venv:
    user: pythonuser
    path: /home/pythonuser/project-venv
    project_dir: /home/pythonuser/project
    requirements: [numpy, torch==2.5.1]
    extra_index_urls: [https://download.pytorch.org/whl/cu124]
  register: python_env_result
"""

RETURN = r"""
python_version:
  description: The Python version the venv is built for.
  returned: success
  type: str
  sample: "3.11"
distributions:
  description: How many distributions the venv holds.
  returned: success
  type: int
  sample: 94
installed:
  description: Distributions installed by this run, as name==version.
  returned: success
  type: list
  elements: str
  sample: [numpy==2.1.3]
removed:
  description: Distributions removed by this run (O(sync)), as name==version.
  returned: success
  type: list
  elements: str
  sample: [colorama==0.4.6]
upgraded:
  description: Distributions whose version changed, as "name old -> new".
  returned: success
  type: list
  elements: str
  sample: ["six: 1.16.0 -> 1.17.0"]
rebuilt:
  description: Why the venv was rebuilt, or null.
  returned: success
  type: str
  sample: /home/pythonuser/project-venv uses Python 3.10 but python3 is Python 3.11
reinstalled:
  description: What a rebuilt venv got back, as name==version.
  returned: success
  type: list
  elements: str
  sample: [six==1.16.0]
would_install:
  description: In check mode, each requirement the run would install, as written; every one when the venv is
    to be made, else each plain name not installed or pinned (==) to a version other than the installed one
    (other specifiers are left to the installer).
  returned: check mode
  type: list
  elements: str
  sample: [tomli==2.0.1]
moved:
  description: Reinstalled distributions whose version could not be kept, as "name old -> new".
  returned: success
  type: list
  elements: str
  sample: ["numpy: 1.26.4 -> 2.1.3"]
lock:
  description: The text of the venv's lock (requirements.lock); null in check mode on a fresh machine.
  returned: success
  type: str
  sample: "# python: 3.11.2\nsix==1.16.0\ntabulate==0.9.0  # by hand\n"
lock_path:
  description: Where the lock is kept on the machine.
  returned: success
  type: str
  sample: /home/pythonuser/project/requirements.lock
url_requirements:
  description: The direct references (name @ url) of O(lock_text), passwords and tokens masked.
  returned: success
  type: list
  elements: str
  sample: ["mypkg @ https://files.example.org/mypkg-1.0.tar.gz"]
lock_written:
  description: Whether this run wrote the lock.
  returned: success
  type: bool
  sample: false
torch_index:
  description: The PyTorch wheel index picked for this machine, or null when none was.
  returned: success
  type: str
  sample: https://download.pytorch.org/whl/cu124
notes:
  description: What the run did beyond installing, in words (the role shows them).
  returned: success
  type: list
  elements: str
  sample: ["torch comes from https://download.pytorch.org/whl/cu124 (what this machine's driver supports; ...)"]
project:
  description:
    - With a uv project, whether this run synced it (C(synced)), what went on top of its lock (C(added_on_top)),
      and the names the lock installs here (C(locked)); null without one, and in check mode.
  returned: success
  type: dict
  sample: {synced: true, added_on_top: [ipykernel], locked: [six, tomli-w]}
"""

import functools
import json
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import dir_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    AccountError, read_root_json, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible_collections.devbox.machine.plugins.module_utils.devbox_shell_init import ensure_block
from ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_project import (
    converge_project, credentials_problem, plan_project)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_torch import asks_for_torch, torch_index
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    REQUESTED_RECORD, SPEC_NAME, VenvError, canonical, converge, credentials_in, empty_result, mask_credentials, plan,
    requirement_lines)


ARGUMENT_SPEC = {
    "user": {"type": "str"},
    "home": {"type": "path"},
    "path": {"type": "path", "required": True},
    "project_dir": {"type": "path"},
    "base_python": {"type": "str", "default": "python3"},
    "requirements": {"type": "list", "elements": "str", "default": []},
    "requirements_file_text": {"type": "str"},
    "installer": {"type": "str", "choices": ["uv", "pip"]},
    "configure": {"type": "bool", "default": True},
    "index_url": {"type": "str"},
    "extra_index_urls": {"type": "list", "elements": "str", "default": []},
    "ca_bundle": {"type": "path"},
    "min_free_mb": {"type": "int", "default": 1024},
    "lock_timeout": {"type": "int", "default": 600},
    "lock_text": {"type": "str"},
    "lock_name": {"type": "str"},
    "sync": {"type": "bool", "default": False},
    "project_pyproject": {"type": "str"},
    "project_lock": {"type": "str"},
    "project_name": {"type": "str"},
    "project_groups": {"type": "list", "elements": "str", "default": []},
    "project_extras": {"type": "list", "elements": "str", "default": []},
    "project_install": {"type": "bool", "default": False},
    "index_credentials": {"type": "dict", "default": {}, "no_log": True},
    "gpu_cuda_version": {"type": "str", "default": ""},
    "shell_block": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = dict(module.params)
    # The index URLs' passwords and tokens, and those of an index line in the requirements file or the lock.
    for text in [params["index_url"], *params["extra_index_urls"], params["requirements_file_text"], params["lock_text"]]:
        module.no_log_values.update(credentials_in(text or ""))
    ca_bundle = params["ca_bundle"]
    if ca_bundle and not _readable(ca_bundle):
        module.fail_json(msg=f"python_env_ca_bundle={ca_bundle!r}: no readable file there on the target")
    if params["requirements_file_text"] is not None and not params["project_dir"]:
        module.fail_json(msg="requirements_file_text needs project_dir")
    params["project"] = None
    if params["project_lock"] is not None or params["project_pyproject"] is not None:
        if params["project_lock"] is None or params["project_pyproject"] is None or not params["project_dir"]:
            module.fail_json(msg="a uv project needs project_pyproject, project_lock and project_dir")
        problem = credentials_problem(params["index_credentials"])
        if problem:
            module.fail_json(msg=problem)
        for credential in params["index_credentials"].values():
            module.no_log_values.update(value for value in credential.values() if value)
        module.no_log_values.update(credentials_in(params["project_pyproject"]))
        params["project"] = {"pyproject": params["project_pyproject"], "lock": params["project_lock"],
                             "groups": params["project_groups"], "extras": params["project_extras"],
                             "install": params["project_install"]}
    params["settings"], picked = None, None
    if params["configure"]:
        picked = picked_torch_index(params)
        params["settings"] = {"index_url": params["index_url"], "ca_bundle": ca_bundle,
                              "extra_index_urls": params["extra_index_urls"] + ([picked] if picked else []),
                              "installer": params["installer"] or "uv"}
    user = params["user"]
    home = params["home"] or (pwd.getpwnam(user).pw_dir if user and user_exists(user) else None)
    params["requested"] = requested_record(home) if home else None
    work = functools.partial(plan, plan_project=plan_project) if module.check_mode else functools.partial(
        converge, converge_project=converge_project)
    if params["shell_block"]:
        inside, problem = shell_block_dirs(home, params["path"], params["project_dir"])
        if problem:
            module.fail_json(msg=f"shell_block needs home, and path and project_dir inside it: {problem}")
        work = functools.partial(with_shell_block, work, home, *inside, module.check_mode)
    try:
        if user and module.check_mode and not user_exists(user):
            result = dict(empty_result(), changed=True)  # a fresh machine: everything is still to do
        elif user:
            result = run_as(user, work, params, expected=(VenvError, OSError))
        else:
            result = work(params)
    except (VenvError, OSError, RunAsError) as error:
        module.fail_json(msg=mask_credentials(str(error)))
    requested = result.pop("requested", None)
    if home and requested is not None and not module.check_mode:
        try:
            write_root_file_if_changed(home, REQUESTED_RECORD, json.dumps(requested, indent=2, sort_keys=True) + "\n")
        except (AccountError, OSError) as error:
            module.fail_json(msg=f"cannot keep the requested packages in {home}/.devbox: {error}")
    # The lock file on the machine counts as a change; the server restart that follows a changed
    # venv (devbox_services) does not depend on it.
    result["changed"] = result["changed"] or result["lock_written"]
    for warning in result.pop("warnings", []):
        module.warn(warning)
    result["torch_index"] = picked
    result["notes"] = notes(result, params, module.check_mode)
    diffs = result.pop("diff")
    if module._diff:  # the settings files hold the index URLs: shown masked
        result["diff"] = [{key: mask_credentials(value) for key, value in change.items()} for change in diffs]
    module.exit_json(**result)


def notes(result: dict, params: dict, dry_run: bool) -> list[str]:
    """What the run did beyond installing, in words, for the role to show."""
    said = []
    if result.get("rebuilt"):
        moved = f"; versions that moved: {', '.join(result['moved'])}" if result.get("moved") else ""
        said.append(f"Rebuilt {params['path']} ({result['rebuilt']}); reinstalled: "
                    f"{', '.join(result.get('reinstalled') or [])}{moved}")
    if result.get("url_requirements"):  # their build code runs on the machine: said, not installed silently
        said.append(f"{params['lock_name'] or 'the lock'} installs from URLs (their build code runs on the machine): "
                    f"{', '.join(result['url_requirements'])}")
    project = result.get("project") or {}
    if project.get("synced"):
        parts = [f"{verb} {', '.join(result[verb])}" for verb in ("installed", "removed", "upgraded") if result.get(verb)]
        if project.get("added_on_top"):
            names = project["added_on_top"]
            parts.append(f"added on top of the lock: {', '.join(names)} (the kernel needs it; `uv add --dev "
                         f"{' '.join(names)}` puts it in the lock)")
        said.append(f"Synced {params['project_name']}: {'; '.join(parts) or 'nothing to change'}")
    if result.get("torch_index"):
        said.append(f"torch comes from {result['torch_index']} (what this machine's driver supports; set "
                    "python_env_index_url or python_env_extra_index_urls to choose another)")
    if params["sync"] and result.get("removed"):
        said.append(f"python_env_sync {'would remove' if dry_run else 'removed'} what "
                    f"{params['lock_name'] or 'the lock'} does not list: {', '.join(result['removed'])}")
    return said


def shell_block_dirs(home: str | None, *paths: str | None) -> tuple[list, str | None]:
    """The folders relative to the home, as the ~/.bashrc block names them, and why they cannot be used: each must be
    a plain name (devbox_layout's rule), never text that would read as shell."""
    inside = [os.path.relpath(path, home) if home and path else None for path in paths]
    return inside, next(filter(None, map(dir_problem, inside)), None)


def with_shell_block(work, home: str, venv_dir: str, project_dir: str, dry_run: bool, params: dict) -> dict:
    """The venv's work, then the ~/.bashrc block that gets interactive shells into it (as the same user)."""
    result = work(params)
    if ensure_block(home, dry_run, venv_dir, project_dir):
        result["changed"] = True
    return result


def picked_torch_index(params: dict) -> str | None:
    """PyTorch's index for this machine when the requirements ask for torch and the user named no index."""
    if params["project"] is not None or params["index_url"] or params["extra_index_urls"]:
        return None
    specs = params["requirements"] + requirement_lines(params["requirements_file_text"] or "")
    names = [canonical(match.group(1)) for spec in specs if (match := SPEC_NAME.match(spec))]
    return torch_index(params["gpu_cuda_version"]) if asks_for_torch(names) else None


def requested_record(home: str) -> dict | None:
    """Root's list of requested packages (~/.devbox, root-owned), read as data; None when there is none yet
    (the venv's old list is moved over), {} when it is there but not root's own (nothing is taken from it)."""
    try:
        return read_root_json(home, REQUESTED_RECORD)
    except (AccountError, OSError):
        return {}


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
