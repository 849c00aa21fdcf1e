#!/usr/bin/python
"""Ansible module: the non-root user whose home is the mounted volume."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_user
short_description: Ensure the dev user, its home on the volume, and the record the boot step reads
description:
  - Creates the group and the user with fixed ids, or corrects an existing user's gid, home and shell.
  - Fails before changing anything, naming the account and how to choose another, when the name or the
    ids already belong to a different account in the image.
  - Chowns only the top of the home (a mounted volume is root-owned, and a recursive chown would undo
    ownership the user chose), and copies C(/etc/skel) files only where absent.
  - Records the account in the home's root-owned C(~/.devbox/account.json) so the image's boot step can
    recreate it after a restart. Device groups the user has joined since (the gpu role adds V(video) or
    V(render)) stay in the record.
extends_documentation_fragment:
  - devbox.machine.common
options:
  name:
    description:
      - Login name, 1-32 characters of lower-case letters, digits, V(_) or V(-), starting with a letter
        or V(_).
    type: str
    required: true
  home_is_volume:
    description:
      - The home must be a mount point (a persistent volume, as on the local machine and on Fly). Checked
        before anything is created; when it is not, the module fails naming the mounts it found and the fix,
        so that nothing the user makes lands on a throwaway root filesystem.
    type: bool
    default: false
  uid:
    description: Fixed uid, from 1 to 60000.
    type: int
    required: true
  gid:
    description:
      - Fixed gid of the user's own group (named after the user), from 1 to 60000; the gid of a system
        group in the image (below 1000) is refused.
    type: int
    required: true
  home:
    description:
      - Home directory, the volume's mount point. An absolute path of its own, such as C(/home/pythonuser);
        never C(/), C(/home) or a directory inside a system tree such as C(/usr) or C(/var), and reached
        without symbolic links.
    type: str
    required: true
  shell:
    description: Login shell, an absolute path (the role passes dev_user_shell).
    type: str
    required: true
  groups:
    description: Supplementary groups, among V(video) and V(render) (the groups that own GPU device nodes).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details: Lists in RV(changes) what would be created, corrected, copied or recorded; changes nothing.
"""

EXAMPLES = r"""
- name: Ensure the dev user and its home on the volume
  devbox_user:
    name: pythonuser
    uid: 1000
    gid: 1000
    home: /home/pythonuser
    shell: /bin/bash
"""

RETURN = r"""
changes:
  description: What was done (or would be, in check mode), one entry per step; empty when nothing changed.
  returned: success
  type: list
  elements: str
  sample:
    - created group pythonuser (gid 1000)
    - created user pythonuser (uid 1000)
    - chowned /home/pythonuser to 1000:1000
    - added /home/pythonuser/.bashrc from /etc/skel
    - recorded the account on the volume
account:
  description: The account as recorded on the volume for the boot step.
  returned: success
  type: dict
  contains:
    name:
      description: Login name.
      type: str
      sample: pythonuser
    uid:
      description: The user's uid.
      type: int
      sample: 1000
    gid:
      description: The gid of the user's own group.
      type: int
      sample: 1000
    home:
      description: The home, normalised.
      type: str
      sample: /home/pythonuser
    shell:
      description: Login shell.
      type: str
      sample: /bin/bash
    groups:
      description: Supplementary groups, with the device groups the user has already joined.
      type: list
      elements: str
      sample: [video]
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    ALLOWED_GROUPS, AccountError, current_groups, ensure_account, ensure_home, save_record, validate)


ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "uid": {"type": "int", "required": True},
    "gid": {"type": "int", "required": True},
    "home": {"type": "str", "required": True},
    "shell": {"type": "str", "required": True},
    "home_is_volume": {"type": "bool", "default": False},
    "groups": {"type": "list", "elements": "str", "default": []},
}


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point of this machine (field 5 of mountinfo, its octal escapes undone)."""
    with open(mountinfo) as table:
        points = [line.split()[4] for line in table if len(line.split()) > 4]
    return [re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), point) for point in points]


def volume_problem(home: str, points: list[str]) -> str | None:
    """Why the home is not the volume it must be; None when it is a mount point."""
    home = os.path.normpath(home)
    if home in points:
        return None
    volumes = sorted(point for point in points if point.startswith("/home/"))
    found = f"mounted under /home: {', '.join(volumes)}" if volumes else "nothing is mounted under /home"
    return (f"dev_user_home={home} is not a mount point, and dev_user_home_is_volume says the home must be the "
            f"persistent volume ({found}): the venv, the notebooks and the token would be lost with the root "
            "filesystem. Mount the volume there (make up mounts it at dev_user_home: run `make down` then `make up` "
            "with the same VARS; on Fly, fly.toml's [mounts] destination must be the home), or set dev_user_home to "
            "the volume's mount point. Nothing was created.")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params["home_is_volume"]:
        problem = volume_problem(module.params["home"], mount_points())
        if problem:
            module.fail_json(msg=problem)
    try:
        account = validate({key: value for key, value in module.params.items() if key != "home_is_volume"})
        changes = ensure_account(account, dry_run=module.check_mode)
        changes += ensure_home(account, dry_run=module.check_mode)
        # Device groups added later (by the gpu role) stay in the record for the boot step.
        device_groups = set(current_groups(account["name"])) & set(ALLOWED_GROUPS)
        account["groups"] = sorted(set(account["groups"]) | device_groups)
        if save_record(account, dry_run=module.check_mode):
            changes.append("recorded the account on the volume")
    except (AccountError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=bool(changes), changes=changes, account=account)


if __name__ == "__main__":
    main()
