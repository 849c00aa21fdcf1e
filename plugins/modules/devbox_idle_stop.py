#!/usr/bin/python
"""Ansible module: keep the idle stop setting where the image's boot step reads it."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_idle_stop
short_description: Let the machine stop itself when nobody has used it for a while
description:
  - Keeps O(minutes) in the home's root-owned C(~/.devbox/idle_stop.json), written from directory
    descriptors (the user owns the home). The image's PID 1 reads it every minute.
  - Once nothing has used the machine for that long (no busy kernel, no browser or terminal connected
    to Jupyter, no process of the dev user outside Jupyter), PID 1 stops Jupyter and exits 0, so a Fly
    Machine goes to C(stopped) and a local container stops.
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
options:
  minutes:
    description: Minutes without use before the machine stops; 0 = never.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Stop the machine after an idle hour
  devbox_idle_stop:
    home: /home/pythonuser
    minutes: 60
"""

RETURN = r"""
minutes:
  description: The setting now in force.
  returned: success
  type: int
  sample: 60
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import AccountError
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import MAX_MINUTES, save_minutes

ARGUMENT_SPEC = {
    "home": {"type": "path", "required": True},
    "minutes": {"type": "int", "required": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    home, minutes = module.params["home"], module.params["minutes"]
    if not 0 <= minutes <= MAX_MINUTES:
        module.fail_json(msg=f"idle_stop_minutes={minutes} must be from 0 (never) to {MAX_MINUTES}")
    try:
        changed = save_minutes(home, minutes, dry_run=module.check_mode)
    except (AccountError, OSError) as error:
        module.fail_json(msg=f"cannot keep the idle stop setting under {home}: {error}")
    module.exit_json(changed=changed, minutes=minutes)


if __name__ == "__main__":
    main()
