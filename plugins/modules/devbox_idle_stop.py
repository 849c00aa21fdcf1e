#!/usr/bin/python
"""Ansible module: keep the idle stop settings where the image's boot step reads them."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_idle_stop
short_description: Let the machine stop itself when nobody has used it for a while
description:
  - Keeps the settings in the home's root-owned C(~/.devbox/idle_stop.json), written from directory
    descriptors (the user owns the home). The image's boot step (PID 1) reads it every minute; the idle
    time counts from when idle stop was turned on (or its minutes changed), never from the boot.
  - Once nothing has used the machine for O(minutes) (no busy kernel, no browser connected to a kernel, no
    busy GPU, no process of the dev user outside Jupyter; a shell waiting at its prompt is no use), PID 1
    tells every terminal of the dev user O(warn_minutes) before, runs O(before_stop) as the user, stops the
    services and exits 0, so a Fly Machine goes to C(stopped) and a local container stops.
  - Installs C(~/.local/bin/devbox-stay-up) for the dev user; C(devbox-stay-up 2h) holds the machine up that
    long whatever idle stop says, C(devbox-stay-up off) ends the hold.
  - With O(minutes) above 0 it fails, before writing anything, where the image's boot step does not run
    (an SSH host), since nothing there would act on the setting.
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
options:
  user:
    description: The dev user, who gets C(devbox-stay-up).
    type: str
    required: true
  minutes:
    description: Minutes without use before the machine stops; 0 = never.
    type: int
    required: true
  warn_minutes:
    description: Minutes before the stop at which the dev user's terminals and the log are told.
    type: int
    required: true
  gpu_percent:
    description: A GPU whose utilisation is above this is in use.
    type: int
    required: true
  before_stop:
    description: A command run by C(/bin/sh) as the dev user in O(project) with the venv before the stop; empty = none.
    type: str
    required: true
  before_stop_timeout:
    description: Seconds O(before_stop) may take; it is then cut and the stop goes on.
    type: int
    required: true
  project:
    description: The project directory, where O(before_stop) runs.
    type: path
  venv:
    description: The venv O(before_stop) runs with.
    type: path
attributes:
  check_mode:
    support: full
    details: Reports whether the settings or the command would change; writes nothing.
"""

EXAMPLES = r"""
- name: Stop the machine after an idle hour, saving checkpoints first
  devbox_idle_stop:
    home: /home/pythonuser
    user: pythonuser
    minutes: 60
    warn_minutes: 5
    gpu_percent: 10
    before_stop: python save_checkpoints.py
    before_stop_timeout: 60
    project: /home/pythonuser/project
    venv: /home/pythonuser/project-venv
"""

RETURN = r"""
minutes:
  description: The setting now in force.
  returned: success
  type: int
  sample: 60
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import AccountError
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import (
    STAY_UP_COMMAND, STAY_UP_SCRIPT, boot_step_running, save_setting, setting_problems)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import write_if_changed

ARGUMENT_SPEC = {
    "home": {"type": "path", "required": True},
    "user": {"type": "str", "required": True},
    "minutes": {"type": "int", "required": True},
    "warn_minutes": {"type": "int", "required": True},
    "gpu_percent": {"type": "int", "required": True},
    "before_stop": {"type": "str", "required": True},
    "before_stop_timeout": {"type": "int", "required": True},
    "project": {"type": "path"},
    "venv": {"type": "path"},
}


def install_stay_up(home: str, dry_run: bool) -> bool:
    """As the user: ~/.local/bin/devbox-stay-up, the user's own command (root never runs it)."""
    path = os.path.join(home, STAY_UP_COMMAND)
    if not dry_run:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    return write_if_changed(path, STAY_UP_SCRIPT, 0o755, dry_run)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    home, minutes = params["home"], params["minutes"]
    found = setting_problems(params)
    if found:
        module.fail_json(msg="; ".join(found))
    if minutes and not boot_step_running():
        module.fail_json(msg=f"idle_stop_minutes={minutes}: nothing on this machine would act on it: the image's boot "
                             "step (devbox-boot) does not run here, as on an SSH host; set idle_stop_minutes: 0 there "
                             "(and use the host's own idle shutdown, if it has one)")
    setting = {"minutes": minutes, "warn_minutes": params["warn_minutes"], "gpu_percent": params["gpu_percent"],
               "before_stop": {"command": params["before_stop"], "timeout_s": params["before_stop_timeout"],
                               "project": params["project"], "venv": params["venv"]} if params["before_stop"] else None}
    try:
        changed = save_setting(home, setting, time.time(), dry_run=module.check_mode)
        if module.check_mode and not user_exists(params["user"]):
            changed = True  # a dry run before the user exists: the command would be installed with it
        else:
            changed = run_as(params["user"], install_stay_up, home, module.check_mode) or changed
    except (AccountError, OSError, RunAsError) as error:
        module.fail_json(msg=f"cannot keep the idle stop setting under {home}: {error}")
    module.exit_json(changed=changed, minutes=minutes)


if __name__ == "__main__":
    main()
