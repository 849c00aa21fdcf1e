#!/usr/bin/python
"""Documentation of the devbox_lock_copy action (plugins/action/devbox_lock_copy.py), which does the work."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_lock_copy
short_description: Keep a machine's lock on the controller, from the text its module returned
description:
  - Writes O(content) to O(dest) on the controller, atomically and only when the text changed, so a rerun that
    changed nothing costs one local file read.
  - An action plugin; it runs inside ansible-playbook, with no module run, no file transfer and no process started.
extends_documentation_fragment:
  - devbox.machine.common
options:
  content:
    description: The lock's text, as the devbox_venv module returned it (RV(devbox_venv.lock)).
    type: str
    required: true
  dest:
    description: Absolute path of the copy on the controller; its folder is made when missing.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details: Reports whether the copy would change; writes nothing.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Keep a copy of the machine's lock on the controller
  devbox_lock_copy:
    content: "{{ python_env_result.lock }}"
    dest: "{{ playbook_dir }}/../locks/{{ inventory_hostname }}.requirements.lock"
"""

RETURN = r"""
dest:
  description: The copy's path on the controller.
  returned: success
  type: str
  sample: /home/me/devbox/locks/devbox-local.requirements.lock
"""
