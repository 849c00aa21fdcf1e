#!/usr/bin/python
"""Ansible module: detect NVIDIA GPUs, initialise the driver as root, report, open the devices."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_gpu
short_description: Detect NVIDIA GPUs and make them usable by the dev user
description:
  - Finds C(nvidia-smi), runs it once as root (driver initialisation for non-root use), then reads each
    GPU's model, memory and driver version, and the CUDA version the driver supports.
  - Adds the user to the group owning C(/dev/nvidia*) when the nodes are not open to everyone, and keeps
    that group in the account record so the boot step restores it.
  - With O(required=true) it fails when there is no GPU; with V(auto) it reports either way.
  - With O(smoke_test=true) it initialises CUDA as the user through the driver API (libcuda, no Python
    package needed) and counts the devices.
extends_documentation_fragment:
  - devbox.machine.common
options:
  required:
    description: Whether a GPU must be present.
    type: str
    choices: [auto, "true", "false"]
    default: auto
  user:
    description: The dev user who must open the devices.
    type: str
    required: true
  home:
    description: The user's home, where the account record lives.
    type: str
    required: true
  smoke_test:
    description: Initialise CUDA as the user and count the devices.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Says which groups the user would join; the detection and the smoke test only read.
"""

EXAMPLES = r"""
- name: Detect the GPUs and initialise the driver
  devbox_gpu:
    required: auto
    user: pythonuser
    home: /home/pythonuser
    smoke_test: true
  register: gpu_detected
"""

RETURN = r"""
gpu:
  description: What was found.
  returned: always
  type: dict
  contains:
    present:
      description: Whether at least one GPU answered.
      type: bool
      sample: true
    gpus:
      description: One entry per GPU, from C(nvidia-smi --query-gpu).
      type: list
      elements: dict
      sample: [{index: 0, name: NVIDIA H200, memory_mib: 143771, driver_version: "570.124.06", uuid: GPU-5d3c...}]
    cuda_version:
      description: The CUDA version the driver supports (nvidia-smi's header).
      type: str
      sample: "12.8"
    nvidia_smi:
      description: The nvidia-smi that was run.
      type: str
      sample: /usr/bin/nvidia-smi
    smoke_test:
      description: The smoke test's summary line; empty when it did not run.
      type: str
      sample: "CUDA OK: 1 device(s), driver API 12.8"
joined_groups:
  description: Groups the user joined to open the device nodes.
  returned: when a GPU is present
  type: list
  elements: str
  sample: [video]
"""

import glob
import grp
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    ALLOWED_GROUPS, AccountError, current_groups, ensure_account, load_record, save_record)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import (
    QUERY_ARGS, cuda_smoke_test, device_groups_needed, find_nvidia_smi, parse_cuda_version, parse_query)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists


def device_nodes() -> list[tuple[str, int, str]]:
    nodes = []
    for path in sorted(glob.glob("/dev/nvidia*")):
        info = os.stat(path)
        if stat.S_ISCHR(info.st_mode):
            try:
                group = grp.getgrgid(info.st_gid).gr_name
            except KeyError:
                group = str(info.st_gid)
            nodes.append((path, stat.S_IMODE(info.st_mode), group))
    return nodes


def join_groups(module: AnsibleModule, user: str, home: str, groups: list[str]) -> list[str]:
    missing = [group for group in groups if group not in current_groups(user)]
    if not missing or module.check_mode:
        return missing
    try:
        account = load_record(home)
        if account is None:
            module.fail_json(msg=f"no account record under {home}: run the dev_user role first")
        account["groups"] = sorted(set(account["groups"]) | set(missing))
        ensure_account(account)
        save_record(account)
    except AccountError as error:
        module.fail_json(msg=str(error))
    return missing


ARGUMENT_SPEC = {
    "required": {"type": "str", "choices": ["auto", "true", "false"], "default": "auto"},
    "user": {"type": "str", "required": True},
    "home": {"type": "str", "required": True},
    "smoke_test": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    required = module.params["required"]
    facts = {"present": False, "gpus": [], "cuda_version": None, "nvidia_smi": None, "smoke_test": ""}
    nvidia_smi = find_nvidia_smi() if required != "false" else None
    if nvidia_smi is None:
        if required == "true":
            module.fail_json(msg="gpu_required=true but this machine has no nvidia-smi, so no usable "
                                 "NVIDIA GPU: use a GPU host (Fly no longer offers GPU Machines), or set "
                                 "gpu_required: auto", gpu=facts)
        module.exit_json(changed=False, gpu=facts)
    facts["nvidia_smi"] = nvidia_smi
    rc, summary, err = module.run_command([nvidia_smi])
    if rc != 0:
        module.fail_json(msg=f"{nvidia_smi} failed (rc={rc}): {(err or summary).strip()}", gpu=facts)
    rc, query, err = module.run_command([nvidia_smi, *QUERY_ARGS])
    if rc != 0:
        module.fail_json(msg=f"{nvidia_smi} {' '.join(QUERY_ARGS)} failed (rc={rc}): {err.strip()}", gpu=facts)
    try:
        facts["gpus"] = parse_query(query)
    except ValueError as error:
        module.fail_json(msg=str(error), gpu=facts)
    facts["cuda_version"] = parse_cuda_version(summary)
    facts["present"] = bool(facts["gpus"])
    if required == "true" and not facts["present"]:
        module.fail_json(msg="gpu_required=true but nvidia-smi lists no GPU", gpu=facts)
    needed = device_groups_needed(device_nodes())
    refused = [group for group in needed if group not in ALLOWED_GROUPS]
    if refused:
        module.fail_json(msg=f"the GPU device nodes /dev/nvidia* are open only to group(s) {', '.join(refused)}: "
                             f"make them mode 0666 (the NVIDIA default) or give them to group video", gpu=facts)
    joined = join_groups(module, module.params["user"], module.params["home"], needed)
    if module.params["smoke_test"] and facts["present"] and user_exists(module.params["user"]):
        try:
            facts["smoke_test"] = run_as(module.params["user"], cuda_smoke_test, expected=(RuntimeError,))
        except RunAsError as error:
            module.fail_json(msg=str(error), gpu=facts)
    module.exit_json(changed=bool(joined), joined_groups=joined, gpu=facts)


if __name__ == "__main__":
    main()
