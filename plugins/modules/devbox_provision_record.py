#!/usr/bin/python
"""Ansible module: record on the machine when it was provisioned, and from which commit."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_provision_record
short_description: Record the playbook run on the machine, for the status playbook
description:
  - Writes C(~/.devbox/provisioned.json) in the dev user's home (a root-owned file, mode 0644, in the
    root-owned C(~/.devbox/), written from directory descriptors since the user owns the home) with the
    time (UTC), the controller's C(git describe --always --dirty) and the tags of the run.
  - Runs as the login user (root). The time is rewritten on every run, but the module reports changed
    only when the commit or the tags differ from the last record, so a converged rerun stays changed=0.
  - M(devbox_status) reads the record back with the same ownership checks.
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
options:
  commit:
    description: The controller checkout's C(git describe --always --dirty) output.
    type: str
    required: true
  tags:
    description:
      - The tags the run was limited to (C(ansible_run_tags)). V(all) is dropped, so a run of everything
        records an empty list.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Record the run on the machine (read by playbooks/status.yml)
  devbox_provision_record:
    home: /home/pythonuser
    commit: "{{ lookup('ansible.builtin.pipe', 'git describe --always --dirty 2>/dev/null || echo unknown') }}"
    tags: "{{ ansible_run_tags }}"
  tags: [always]
"""

RETURN = r"""
record:
  description: The record as written (or as it would be, in check mode).
  returned: success
  type: dict
  contains:
    time:
      description: When the module ran, in UTC, ISO 8601 to the second.
      type: str
      sample: "2025-06-01T12:00:00+00:00"
    commit:
      description: The commit given in O(commit).
      type: str
      sample: 44e12cd-dirty
    tags:
      description: The tags of the run, sorted, without V(all); empty for a full run.
      type: list
      elements: str
      sample: [jupyter, python_env]
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_provision_record import RecordError, save


ARGUMENT_SPEC = {
    "home": {"type": "path", "required": True},
    "commit": {"type": "str", "required": True},
    "tags": {"type": "list", "elements": "str", "default": []},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
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
