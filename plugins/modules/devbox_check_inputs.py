#!/usr/bin/python
"""Documentation of the devbox_check_inputs action (plugins/action/devbox_check_inputs.py), which does the work."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_check_inputs
short_description: Check the inputs of devbox's roles on the controller, before any change
description:
  - Takes each named role's variables (the play's value, else the role's C(defaults/main.yml), templated) and
    validates them against the role's C(main) entry point of C(meta/argument_specs.yml), as Ansible does when the
    role starts, then against the rules a type cannot say (listening addresses, ports, requirement specifiers,
    paths under the home, files on the controller).
  - Fails with every problem of every role at once, each naming the variable, its value and the fix; a secret's
    value (C(jupyter_token), a password in an index URL) is never shown.
  - An action plugin; it runs on the controller only and never contacts the host.
extends_documentation_fragment:
  - devbox.machine.common
options:
  roles:
    description: The roles whose inputs to check, among C(dev_user), C(gpu), C(swap), C(python_env), C(jupyter),
      C(tensorboard) and C(idle_stop).
    type: list
    elements: str
    required: true
  remember:
    description: When the inputs are fine, set the fact C(devbox_inputs_checked) (true), by which the roles skip
      their own check later in the run (site.yml checks every role's at once).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Checks the same in check mode; it never changes anything.
"""

EXAMPLES = r"""
- name: Check every input before changing anything
  devbox_check_inputs:
    roles: [dev_user, python_env, jupyter]
    remember: true
"""

RETURN = r"""
msg:
  description: That the inputs are fine, or the problems found (one string, or a list when there are several).
  returned: always
  type: raw
  sample: "jupyter_port=80 must be a number from 1024 to 65535; jupyter_min_free_mb=1024 must be a number of MB, 0 or more."
ansible_facts:
  description: With O(remember), C(devbox_inputs_checked)=true.
  returned: when O(remember) is true and the inputs are fine
  type: dict
  sample: {devbox_inputs_checked: true}
"""
