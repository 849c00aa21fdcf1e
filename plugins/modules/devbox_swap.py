#!/usr/bin/python
"""Ansible module: the machine's swap against what the user expects of it."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_swap
short_description: Check the machine's swap against an expected size
description:
  - Reads SwapTotal from C(/proc/meminfo). Below O(min_mb) it warns, or fails with O(required), naming
    the fly.toml key (C(swap_size_mb)) that gives a Fly Machine more swap and the commands for another host.
  - Reads only; changes nothing.
extends_documentation_fragment:
  - devbox.machine.common
options:
  min_mb:
    description: Expected swap in MB; 0 = no expectation.
    type: int
    default: 0
  required:
    description: Fail, instead of warning, when the swap is below O(min_mb).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Expect 4 GB of swap, as fly.toml's swap_size_mb = 4096 gives
  devbox_swap:
    min_mb: 4096
  register: swap_check
"""

RETURN = r"""
total_mb:
  description: The machine's swap, in MB.
  returned: success
  type: int
  sample: 4095
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_swap import advice, read_swap_total_mb

ARGUMENT_SPEC = {
    "min_mb": {"type": "int", "default": 0},
    "required": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    total = read_swap_total_mb()
    min_mb = module.params["min_mb"]
    if total < min_mb:
        if module.params["required"]:
            module.fail_json(msg=advice(total, min_mb), total_mb=total)
        module.warn(advice(total, min_mb))
    module.exit_json(changed=False, total_mb=total)


if __name__ == "__main__":
    main()
