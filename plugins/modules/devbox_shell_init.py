#!/usr/bin/python
"""Ansible module: interactive shells of the dev user start in ~/project with the venv active."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_shell_init
short_description: A managed block in the dev user's ~/.bashrc for ssh and terminals
description:
  - Runs as the login user (root) and writes as the dev user (a forked child that drops to it), so no
    become is needed and the task pipelines.
  - The block activates ~/project-venv in interactive shells and starts SSH logins in ~/project; non-interactive
    shells (ssh host command, Ansible, VS Code's server) are untouched. Replaced in place, never duplicated.
options:
  user: {type: str, required: true, description: The dev user.}
  home: {type: path, required: true, description: The dev user's home.}
author: devbox maintainers
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible.module_utils.devbox_shell_init import ensure_block


def main() -> None:
    module = AnsibleModule(
        argument_spec={"user": {"type": "str", "required": True}, "home": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    if module.check_mode and not user_exists(module.params["user"]):
        module.exit_json(changed=True)  # a fresh machine: the user and the block are still to come
    try:
        changed = run_as(module.params["user"], ensure_block, module.params["home"], module.check_mode)
    except RunAsError as error:
        module.fail_json(msg=f"cannot update {module.params['home']}/.bashrc as {module.params['user']}: {error}")
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
