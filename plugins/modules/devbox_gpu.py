#!/usr/bin/python
"""Ansible module: detect NVIDIA GPUs, initialise the driver as root, report, open the devices."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_gpu
short_description: Detect NVIDIA GPUs and make them usable by the dev user
description:
  - Finds nvidia-smi; runs it once as root (driver initialisation for non-root use), then reads each
    GPU's model, memory and driver version, and the CUDA version the driver supports.
  - Adds the user to the group owning /dev/nvidia* when the nodes are not open to everyone, and keeps
    that group in the account record so the boot step restores it.
  - With I(required=true), fails when there is no GPU; with C(auto) it reports either way.
options:
  required: {type: str, choices: [auto, "true", "false"], default: auto, description: Whether a GPU must be present.}
  user: {type: str, required: true, description: The dev user who must open the devices.}
  home: {type: str, required: true, description: The user's home, where the account record lives.}
  smoke_test: {type: bool, default: false, description: "Initialise CUDA as the user and count the devices (libcuda, no Python package)."}
author: devbox maintainers
"""

import glob
import grp
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_account import (ALLOWED_GROUPS, AccountError, current_groups,
                                                   ensure_account, load_record, save_record)
from ansible.module_utils.devbox_gpu import (QUERY_ARGS, cuda_smoke_test, device_groups_needed, find_nvidia_smi,
                                               parse_cuda_version, parse_query)
from ansible.module_utils.devbox_run_as import RunAsError, run_as, user_exists


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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "required": {"type": "str", "choices": ["auto", "true", "false"], "default": "auto"},
            "user": {"type": "str", "required": True},
            "home": {"type": "str", "required": True},
            "smoke_test": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
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
