#!/usr/bin/python
"""Ansible module: record on the machine when it was provisioned, and from which commit."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_provision_record
short_description: Record the playbook run on the machine, for the status playbook
description:
  - Writes ~/.devbox/provisioned.json in the dev user's home (root-owned, in the root-owned ~/.devbox/)
    with the time, the controller's C(git describe --always --dirty) and the tags of the run.
  - Runs as the login user (root); reports changed only when the commit or the tags differ from the
    last record, so a converged rerun stays changed=0. In check mode nothing is written.
options:
  home: {type: path, required: true, description: The dev user's home, the volume.}
  commit: {type: str, required: true, description: The controller checkout's git describe output.}
  tags: {type: list, elements: str, default: [], description: The tags the run was limited to (all when empty).}
author: devbox maintainers
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_provision_record import RecordError, save


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "home": {"type": "path", "required": True},
            "commit": {"type": "str", "required": True},
            "tags": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    tags = sorted(set(module.params["tags"]) - {"all"})
    record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": module.params["commit"], "tags": tags}
    try:
        changed = save(module.params["home"], record, dry_run=module.check_mode)
    except (RecordError, OSError) as error:
        module.fail_json(msg=f"cannot record the run in {module.params['home']}/.devbox: {error}")
    module.exit_json(changed=changed, record=record)


if __name__ == "__main__":
    main()
