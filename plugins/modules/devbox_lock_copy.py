#!/usr/bin/python
"""Documentation of the devbox_lock_copy action (plugins/action/devbox_lock_copy.py), which does the work."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_lock_copy
short_description: Keep a machine's lock on the controller, from the text its module returned
description:
  - Writes O(content) to O(dir)/<host>.requirements.lock on the controller, atomically and only when the text
    changed, so a rerun that changed nothing costs one local file read.
  - An action plugin; it runs inside ansible-playbook, with no module run, no file transfer and no process started.
  - The text comes from the machine, so it is treated as data, masked again (passwords and tokens in URLs) and
    refused when a line holds a control character (the line shown escaped).
extends_documentation_fragment:
  - devbox.machine.common
options:
  content:
    description: The lock's text, as the devbox_venv module returned it (RV(devbox_venv.lock)).
    type: str
    required: true
  dir:
    description: Absolute path of the copies' folder on the controller; made when missing (nothing under it is).
    type: path
    required: true
  host:
    description:
      - The machine's inventory name; the copy is O(dir)/<host>.requirements.lock.
      - "Checked by the one rule for names that become file names (plugins/module_utils/devbox_names.py):
        1-128 letters, digits, '.', '_', '-' or ':', no '..'. Any other name fails the task, naming it with its
        control characters escaped, before anything is written."
    type: str
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
    dir: "{{ playbook_dir | dirname }}/locks"
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
dest:
  description: The copy's path on the controller.
  returned: success
  type: str
  sample: /home/me/devbox/locks/devbox-local.requirements.lock
"""
