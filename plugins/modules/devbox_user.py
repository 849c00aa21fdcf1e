#!/usr/bin/python
"""Ansible module: the non-root user whose home is the mounted volume."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_user
short_description: Ensure the dev user, its home on the volume, and the record the boot step reads
description:
  - Creates the group and the user with fixed ids, or corrects an existing user's gid, home and shell.
  - Fails, naming the account and how to choose another, when the name or the ids already belong to
    a different account in the image.
  - Chowns only the top of the home (a mounted volume is root-owned), copies skeleton files only where
    absent, and records the account on the volume so the image's boot step can recreate it.
options:
  name: {type: str, required: true, description: Login name.}
  uid: {type: int, required: true, description: Fixed uid.}
  gid: {type: int, required: true, description: Fixed gid of the user's own group.}
  home: {type: str, required: true, description: Home directory, the volume's mount point.}
  shell: {type: str, default: /bin/bash, description: Login shell.}
  groups: {type: list, elements: str, default: [], description: Supplementary groups.}
author: devbox maintainers
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_account import (ALLOWED_GROUPS, AccountError, current_groups,
                                                   ensure_account, ensure_home, save_record, validate)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "uid": {"type": "int", "required": True},
            "gid": {"type": "int", "required": True},
            "home": {"type": "str", "required": True},
            "shell": {"type": "str", "default": "/bin/bash"},
            "groups": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        account = validate(dict(module.params))
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
