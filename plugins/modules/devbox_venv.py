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
options:
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
author: devbox maintainers
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_venv import VenvError, converge


def main() -> None:
    module = AnsibleModule(
        argument_spec={
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
        },
    )
    params = dict(module.params)
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
    try:
        result = converge(params)
    except (VenvError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
