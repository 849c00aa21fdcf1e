#!/usr/bin/python
"""Ansible module: one look at the whole dev machine, telling each role of site.yml whether it has anything to do."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_look
short_description: One look at the dev machine that tells each role whether it has anything to do
description:
  - Started as root; reads only. Observes, per role of site.yml, what the role makes or keeps on the machine
    (plugins/module_utils/devbox_look.py), as root for root's things (the account, the swap, the records in
    C(~/.devbox), read without following links) and, in a child process that dropped to O(user), for the user's
    (each venv's distributions and Python, the shell block, Jupyter's files and token, each service's health by
    the launcher's own status logic).
  - Compares with the stamp C(~/.devbox/look.json) that M(devbox_provision_record) writes at the end of a run. A
    role has nothing to do when its inputs (O(inputs), digests the action plugin of the same name computes on
    the controller) and its observation are those of the stamp. Some things make a role run anyway, the CUDA
    smoke test (O(gpu_smoke_test)), swap below O(swap_min_mb) with O(swap_required) (the swap role fails), a restart of a
    service left pending in C(~/.devbox/restart_pending.json).
  - Returns what the final report needs when the roles are skipped (the GPUs, the swap, the venv's Python, where
    each service listens, Jupyter's token), so register the result with C(no_log) or let the action plugin hide it.
  - The action plugin of the same name builds every option from the variables, so a task names none.
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
  - devbox.machine.layout
options:
  user:
    description: The dev user, whose things are observed as that user.
    type: str
    required: true
  service_venvs_dir:
    description: Where the services' own venvs are, relative to the home (python_env_service_venvs_dir).
    type: str
    required: true
  services:
    description: Every service of the machine, as checked entries (only C(name), C(ip) and C(venv) are read).
    type: list
    elements: dict
    required: true
  libraries:
    description: The file names of the launcher and its libraries, kept by devbox_services under C(~/.devbox/lib).
    type: list
    elements: str
    required: true
  gpu_required:
    description: The gpu role's C(gpu_required); V(false) probes no GPU.
    type: str
    choices: [auto, "true", "false"]
    default: auto
  gpu_smoke_test:
    description: The gpu role's C(gpu_smoke_test); the smoke test runs on every run, so the gpu role does.
    type: bool
    default: false
  swap_min_mb:
    description: The swap role's C(swap_min_mb); below it the look warns as the swap role does, or, with
      O(swap_required), the swap role runs (and fails).
    type: int
    default: 0
  swap_required:
    description: The swap role's C(swap_required).
    type: bool
    default: false
  inputs:
    description: Per role, a dictionary of the digest of each of its inputs, compared with the stamp's.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Look at the machine once
  devbox_look:
  register: devbox_look
"""

RETURN = r"""
todo:
  description:
    - 'Each role that has something to do, with why: "no stamp yet", "inputs changed: NAME", "package removed by
      hand: NAME", "jupyter down", ".jupyter/jupyter_server_config.json changed", ...'
    - A role that is not listed has nothing to do.
  returned: success
  type: dict
  sample: {python_env: ["package removed by hand: six"], services: ["package removed by hand: six", "jupyter down"]}
report:
  description: What the final report needs when the roles are skipped.
  returned: success
  type: dict
  contains:
    gpu:
      description: The gpu module's C(gpu) facts (present, gpus, cuda_version, nvidia_smi, smoke_test).
      type: dict
    swap_mb:
      description: The machine's swap, in MB.
      type: int
    python_version:
      description: The Python of the venv, as its pyvenv.cfg says (V(3.11)); null without a venv.
      type: str
    lock:
      description: The text of the machine's lock (the project's requirements.lock), null when there is none.
      type: str
    listen:
      description: Per service, the name it listens on (V(auto) decided as devbox_services decides it).
      type: dict
  sample: {gpu: {present: false, gpus: []}, swap_mb: 0, python_version: "3.11", lock: "six==1.16.0\n",
           listen: {jupyter: 127.0.0.1}}
token:
  description: The token Jupyter accepts (its token file's), null when there is none.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import LAYOUT_ARGUMENT_SPEC, options_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_look import (
    ROLES, decide, observe, pending_restart, read_stamp)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_swap import advice

ARGUMENT_SPEC = dict(
    LAYOUT_ARGUMENT_SPEC,
    user={"type": "str", "required": True},
    home={"type": "path", "required": True},
    service_venvs_dir={"type": "str", "required": True},
    services={"type": "list", "elements": "dict", "required": True},
    libraries={"type": "list", "elements": "str", "required": True},
    gpu_required={"type": "str", "choices": ["auto", "true", "false"], "default": "auto"},
    gpu_smoke_test={"type": "bool", "default": False},
    swap_min_mb={"type": "int", "default": 0},
    swap_required={"type": "bool", "default": False},
    inputs={"type": "dict", "required": True},
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=problem)
    if set(params["inputs"]) != set(ROLES):
        module.fail_json(msg=f"inputs must name every role of {', '.join(ROLES)}")
    seen = observe(params)
    todo = decide(read_stamp(params["home"]), params["inputs"], seen["roles"])
    todo["services"] += pending_restart(seen["roles"])
    if params["gpu_smoke_test"]:
        todo["gpu"].append("the CUDA smoke test runs on every run (gpu_smoke_test)")
    swap_mb = seen["report"]["swap_mb"]
    if swap_mb < params["swap_min_mb"]:
        if params["swap_required"]:  # the swap role fails, with its advice
            todo["swap"].append(f"swap {swap_mb} MB is below swap_min_mb={params['swap_min_mb']}")
        else:
            module.warn(advice(swap_mb, params["swap_min_mb"]))
    report = dict(seen["report"], listen={service["name"]: listen_name(str(service.get("ip", "auto")))
                                          for service in params["services"]})
    token = report.pop("token")
    module.exit_json(changed=False, todo={role: reasons for role, reasons in todo.items() if reasons},
                     report=report, token=token)


if __name__ == "__main__":
    main()
