#!/usr/bin/python
"""Ansible module: interactive shells of the dev user start in the project with the venv active."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_shell_init
short_description: A managed block in the dev user's ~/.bashrc for ssh and terminals
description:
  - Runs as the login user (root) and writes as the dev user (a forked child that drops to it), so no
    become is needed, the task pipelines, and root never writes through a link the user planted.
  - The block activates the venv (O(venv_dir)) in interactive shells (unless a venv is already active) and
    starts SSH logins that begin in the home in the project (O(project_dir)), except in VS Code's own terminals.
    Non-interactive shells (C(ssh host command), Ansible, VS Code's server) are untouched.
  - The block is replaced in place, never duplicated; the rest of C(~/.bashrc) is kept, with its mode.
    When C(~/.bashrc) is a link, its target is changed.
options:
  user:
    description: The dev user, who owns C(~/.bashrc).
    type: str
    required: true
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
  - devbox.machine.layout
attributes:
  check_mode:
    support: full
    details: Reports whether the block would be added or replaced; on a fresh machine without the user
      yet, reports changed.
"""

EXAMPLES = r"""
- name: Start interactive shells in ~/project with the venv active
  devbox_shell_init:
    user: pythonuser
    home: /home/pythonuser
    venv_dir: project-venv
    project_dir: project
"""

RETURN = r"""
# Only the common return values: changed says whether the block was added or replaced.
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import LAYOUT_ARGUMENT_SPEC, options_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible_collections.devbox.machine.plugins.module_utils.devbox_shell_init import ensure_block


ARGUMENT_SPEC = dict(
    LAYOUT_ARGUMENT_SPEC,
    user={"type": "str", "required": True},
    home={"type": "path", "required": True},
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=problem)
    if module.check_mode and not user_exists(module.params["user"]):
        module.exit_json(changed=True)  # a fresh machine: the user and the block are still to come
    try:
        changed = run_as(params["user"], ensure_block, params["home"], module.check_mode,
                         params["venv_dir"], params["project_dir"])
    except RunAsError as error:
        module.fail_json(msg=f"cannot update {module.params['home']}/.bashrc as {module.params['user']}: {error}")
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
