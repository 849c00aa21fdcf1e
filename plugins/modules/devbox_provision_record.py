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
  - With O(look), it also looks at the machine again, after the roles ran, and keeps in C(~/.devbox/look.json)
    (root-owned) each named role's input digests and that observation, the stamp M(devbox_look) compares with
    at the next run. Writing the stamp is no change to the machine.
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
  look:
    description:
      - The stamp to keep, as M(devbox_look) returns it in C(stamp) - C(inputs) (per role, its input digests),
        C(roles) (the roles whose entry is written; the others' stay) and C(observe) (what to look at, the
        options of M(devbox_look) of the same names). Not written in check mode.
    type: dict
"""

EXAMPLES = r"""
- name: Record the run on the machine (read by playbooks/status.yml)
  devbox_provision_record:
    home: /home/pythonuser
    commit: "{{ lookup('ansible.builtin.pipe', 'git describe --always --dirty 2>/dev/null || echo unknown') }}"
    tags: "{{ ansible_run_tags }}"
    look: "{{ devbox_look.stamp }}"
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
from ansible_collections.devbox.machine.plugins.module_utils.devbox_look import ROLES, observe, write_stamp
from ansible_collections.devbox.machine.plugins.module_utils.devbox_provision_record import RecordError, save
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import AccountError


ARGUMENT_SPEC = {
    "home": {"type": "path", "required": True},
    "commit": {"type": "str", "required": True},
    "tags": {"type": "list", "elements": "str", "default": []},
    "look": {"type": "dict"},
}


def stamp_problem(look: dict) -> str | None:
    inputs, roles, seen = look.get("inputs"), look.get("roles"), look.get("observe")
    if not isinstance(inputs, dict) or set(inputs) != set(ROLES) or not isinstance(roles, list) \
            or not set(roles) <= set(ROLES) or not isinstance(seen, dict):
        return "look must be devbox_look's stamp: inputs for every role, roles, observe"
    return None


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    tags = sorted(set(module.params["tags"]) - {"all"})
    record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": module.params["commit"], "tags": tags}
    try:
        changed = save(module.params["home"], record, dry_run=module.check_mode)
    except (RecordError, OSError) as error:
        module.fail_json(msg=f"cannot record the run in {module.params['home']}/.devbox: {error}")
    look = module.params["look"]
    if look is not None and not module.check_mode:
        problem = stamp_problem(look)
        if problem:
            module.fail_json(msg=problem)
        try:
            seen = observe(dict(look["observe"], home=module.params["home"]))
            write_stamp(module.params["home"], look["inputs"], seen["roles"], look["roles"])
        except (AccountError, OSError, KeyError) as error:
            module.fail_json(msg=f"cannot keep the look's stamp in {module.params['home']}/.devbox: {error}")
    module.exit_json(changed=changed, record=record)


if __name__ == "__main__":
    main()
