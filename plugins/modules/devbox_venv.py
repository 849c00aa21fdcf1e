#!/usr/bin/python
"""Ansible module: the project venv on the volume, its installer settings and its packages."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_venv
short_description: Ensure a venv with the requested packages, healing it when its Python changed
description:
  - Creates the venv when absent or left unfinished; rebuilds it with the same distributions at the
    same versions when its interpreter is missing or is another Python version than I(base_python).
  - Persists the index URLs and CA bundle in the venv's pip.conf so the user's own pip uses them.
  - Installs requirements with uv (default) or pip; reports changed only when distributions were
    installed, removed or upgraded, or the venv or its settings were written.
  - One run at a time per venv (a lock file beside it); checks free space before installing.
  - Started as root (no become, so the task pipelines), it does all its work as I(user).
  - Check mode reports what would change (the installer's own dry run decides for requirements that
    the installed metadata cannot settle); diff mode shows the settings files that change.
  - Passwords in index URLs never reach a command line, the output, or a file others can read.
  - Keeps the venv's lock, every distribution pinned (those not asked for by a playbook marked
    C(# by hand)), in I(project_dir)/requirements.lock, read from the venv's metadata (no installer,
    no network), and returns its text. I(lock_text) installs such a lock; I(sync) also removes what
    it does not list. A lock from another Python version fails before anything changes.
options:
  user: {type: str, description: The user who owns the venv; the module does its work as this user.}
  path: {type: path, required: true, description: The venv directory.}
  project_dir: {type: path, description: A project directory to create beside it when absent.}
  base_python: {type: str, default: python3, description: Interpreter the venv is built from.}
  requirements: {type: list, elements: str, default: [], description: Requirement specifiers.}
  requirements_file_text: {type: str, description: "Content for <project_dir>/requirements.txt, written there and installed."}
  installer: {type: str, choices: [uv, pip], description: The installer; default the stored one, else uv.}
  configure: {type: bool, default: true, description: Write the installer settings below (false keeps the stored ones).}
  index_url: {type: str, description: Package index URL replacing PyPI.}
  extra_index_urls: {type: list, elements: str, default: [], description: Extra package indexes.}
  ca_bundle: {type: path, description: PEM bundle the installer must trust.}
  min_free_mb: {type: int, default: 1024, description: Free space the volume must have before an install.}
  lock_timeout: {type: int, default: 600, description: Seconds to wait for another run's lock.}
  lock_text: {type: str, description: "A lock (requirements.lock of a machine) to install exactly."}
  lock_name: {type: str, description: The lock's name in messages (its path on the controller).}
  sync: {type: bool, default: false, description: Also uninstall what I(lock_text) does not list (never pip or uv).}
author: devbox maintainers
"""

from ansible.module_utils.basic import AnsibleModule
from urllib.parse import urlsplit

from ansible.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible.module_utils.devbox_venv import VenvError, converge, empty_result, mask_credentials, plan


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str"},
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
        },
        supports_check_mode=True,
    )
    params = dict(module.params)
    for url in [params["index_url"] or ""] + params["extra_index_urls"]:
        password = urlsplit(url).password
        if password:
            module.no_log_values.add(password)
    ca_bundle = params["ca_bundle"]
    if ca_bundle and not _readable(ca_bundle):
        module.fail_json(msg=f"python_env_ca_bundle={ca_bundle!r}: no readable file there on the target")
    if params["requirements_file_text"] is not None and not params["project_dir"]:
        module.fail_json(msg="requirements_file_text needs project_dir")
    params["settings"] = None
    if params["configure"]:
        params["settings"] = {"index_url": params["index_url"], "ca_bundle": ca_bundle,
                              "extra_index_urls": params["extra_index_urls"],
                              "installer": params["installer"] or "uv"}
    work = plan if module.check_mode else converge
    user = params["user"]
    try:
        if user and module.check_mode and not user_exists(user):
            result = dict(empty_result(), changed=True)  # a fresh machine: everything is still to do
        elif user:
            result = run_as(user, work, params, expected=(VenvError, OSError))
        else:
            result = work(params)
    except (VenvError, OSError, RunAsError) as error:
        module.fail_json(msg=mask_credentials(str(error)))
    # The lock file on the machine counts as a change; the server restart that follows a changed
    # venv (devbox_jupyter) does not depend on it.
    result["changed"] = result["changed"] or result["lock_written"]
    diffs = result.pop("diff")
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
