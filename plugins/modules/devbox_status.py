#!/usr/bin/python
"""Ansible module: a read-only look at a dev machine; its action plugin makes it one readable block."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_status
short_description: Report a dev machine's state without changing anything
description:
  - Runs as the login user (root), in one pipelined exec. Reads swap, the home's volume, GPUs (C(nvidia-smi)),
    the record of the last playbook run and every registered service (its record in C(~/.devbox)) with its
    health probe (does a process of the user listen on its port) as root; reads the venv, and Jupyter's token
    when asked for, in a child process that is the dev user, so root never runs the user's files.
  - Never installs, starts or restarts anything, and always reports changed=false. The token is returned
    only with O(show_token=true).
  - The action M(devbox_status_report) (plugins/action/devbox_status_report.py) runs it, fills O(user), O(home) and
    O(venv_dir) from the machine's facts and builds, on the controller, each service's line and URL from the
    port it checked, and what the next run would change about the services.
  - RV(lines) is the rest of the report as readable lines (venv, GPU, swap, volume, last run, idle stop).
extends_documentation_fragment:
  - devbox.machine.common
  - devbox.machine.home
options:
  user:
    description: The dev user.
    type: str
    required: true
  packages:
    description:
      - The requested packages (C(python_env_packages)). One whose name is not installed, or whose
        C(==) pin differs from the installed version, is listed as missing; other specifiers count as
        met once the name is installed.
    type: list
    elements: str
    default: []
  venv_dir:
    description: The venv, relative to the home (python_env_venv_dir).
    type: str
    required: true
  swap_min_mb:
    description: The wanted swap in MB; the swap line says so when there is less.
    type: int
    default: 0
  commit:
    description:
      - The controller checkout's C(git describe --always --dirty) output; when it differs from the
        commit of the last recorded run, RV(next_run) says the checkout would be applied. Empty skips
        that comparison.
    type: str
    default: ""
  show_token:
    description: Read Jupyter's token (the user asked for it).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode reports exactly what a normal run does.
"""

EXAMPLES = r"""
# Usually through devbox_status_report (playbooks/status.yml), which fills user, home and venv_dir from the
# machine's facts and adds each service's line and URL.
- name: Read the machine's state
  devbox_status:
    user: pythonuser
    home: /home/pythonuser
    packages: [numpy, pandas==2.2.3]
    commit: "{{ lookup('ansible.builtin.pipe', 'git describe --always --dirty') }}"
  register: status_result
"""

RETURN = r"""
lines:
  description:
    - The report, one readable line per part (venv, GPU, swap, volume, last run, idle stop); the action plugin puts a
      line per service and the next run around them.
  returned: success
  type: list
  elements: str
  sample:
    - "Venv: /home/pythonuser/project-venv, Python 3.12, 58 packages"
    - "GPU: none (no nvidia-smi)"
    - "Swap: 2048 MB, 2048 MB free"
    - "Volume: /home/pythonuser: 9.8 GB, 21% used, 7.7 GB free"
    - "Provisioned: 2025-06-01T12:00:00+00:00 from commit 44e12cd"
    - "Idle stop: after 60 min idle; idle for 12 min"
next_run:
  description: What the next playbook run would change in the user, the venv and the checkout; empty when nothing.
  returned: success
  type: list
  elements: str
  sample: ["install pandas==2.2.3 (installed: 2.2.2)"]
user_exists:
  description: Whether the dev user exists on the machine.
  returned: success
  type: bool
  sample: true
services:
  description: Every registered service (sorted by name), from its record, with its health probe.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The service's name.
      type: str
      sample: jupyter
    port:
      description: The port it listens on, on the machine.
      type: int
      sample: 8888
    url_path:
      description: The path its URL opens.
      type: str
      sample: /lab
    healthy:
      description: Whether a process of the dev user listens on the port.
      type: bool
      sample: true
service_problems:
  description: Why a damaged service record was skipped, one line each.
  returned: success
  type: list
  elements: str
  sample: []
jupyter_token:
  description: Jupyter's token (C(token)) or why it could not be read (C(token_error)).
  returned: with O(show_token=true), when the dev user exists
  type: dict
  sample: {token: 4f0c2a9d8e1b7c6a5f4e3d2c1b0a9f8e7d6c5b4a39281706}
swap:
  description: Swap, from C(/proc/meminfo).
  returned: success
  type: dict
  contains:
    total_mb:
      description: Swap size in MB.
      type: int
      sample: 2048
    free_mb:
      description: Free swap in MB.
      type: int
      sample: 2048
volume:
  description: The file system holding the home.
  returned: success
  type: dict
  contains:
    exists:
      description: Whether the home exists; the other keys are present only when it does.
      type: bool
      sample: true
    mount_point:
      description: Whether the home is a mount point of its own (a volume) rather than part of the machine's disk.
      type: bool
      sample: true
    size_mb:
      description: Size in MB.
      type: int
      sample: 10015
    used_mb:
      description: Used space in MB.
      type: int
      sample: 2103
    free_mb:
      description: Space available to the user in MB.
      type: int
      sample: 7885
    used_percent:
      description: Used space as a whole percentage.
      type: int
      sample: 21
gpu:
  description: GPUs, from C(nvidia-smi).
  returned: success
  type: dict
  contains:
    nvidia_smi:
      description: Whether C(nvidia-smi) was found.
      type: bool
      sample: true
    names:
      description: The name of each GPU listed.
      type: list
      elements: str
      sample: [NVIDIA H200]
    error:
      description: Why C(nvidia-smi) failed; present only when it did.
      type: str
      sample: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
provisioned:
  description: The record of the last playbook run, kept by M(devbox_provision_record).
  returned: success
  type: dict
  contains:
    record:
      description: The record; null when there is none or it cannot be trusted.
      type: dict
      sample: {time: "2025-06-01T12:00:00+00:00", commit: 44e12cd, tags: []}
    error:
      description: Why the record was not trusted or not readable; present only then.
      type: str
      sample: "/home/pythonuser/.devbox/provisioned.json is not a root-owned file: not trusted"
idle_stop:
  description: Idle stop's setting and what the boot step saw at its last look.
  returned: success
  type: dict
  contains:
    minutes:
      description: C(idle_stop_minutes) as the machine keeps it; 0 = off.
      type: int
      sample: 60
    line:
      description: The idle clock, or what keeps the machine up (or holds it up), in words.
      type: str
      sample: "Idle stop: in use: kernel busy (Untitled.ipynb), GPU 0 at 87%"
python_env:
  description: The venv (O(venv_dir) in the home).
  returned: when the dev user exists
  type: dict
  contains:
    path:
      description: The venv's absolute path.
      type: str
      sample: /home/pythonuser/project-venv
    health:
      description: The venv's state.
      type: str
      choices: [ok, absent, incomplete, broken]
      sample: ok
    reason:
      description: Why it is not V(ok); empty when it is.
      type: str
      sample: ""
    python:
      description: The Python version the venv was built for; absent when the venv is.
      type: str
      sample: "3.12"
    distributions:
      description: How many distributions are installed in it; absent when the venv is.
      type: int
      sample: 58
    missing:
      description: Requested packages surely not met, with the installed version where a pin differs.
      type: list
      elements: str
      sample: ["pandas==2.2.3 (installed: 2.2.2)"]
"""

import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import options_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_machine_status import (
    gpus, idle_stop, next_run, provision_record, services, swap, user_side, volume)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as, user_exists


def venv_line(venv: dict) -> str:
    if venv["health"] == "absent":
        return f"Venv: {venv['path']} does not exist"
    state = "" if venv["health"] == "ok" else f" ({venv['health']}: {venv['reason']})"
    return f"Venv: {venv['path']}, Python {venv.get('python')}, {venv.get('distributions')} packages{state}"


def gpu_line(found: dict) -> str:
    if not found["nvidia_smi"]:
        return "GPU: none (no nvidia-smi)"
    if found.get("error"):
        return f"GPU: nvidia-smi present but failing: {found['error']}"
    return "GPU: " + (", ".join(found["names"]) or "nvidia-smi present, no GPU listed")


def volume_line(found: dict, home: str) -> str:
    if not found["exists"]:
        return f"Volume: {home} does not exist"
    where = "" if found["mount_point"] else " (not a mount point of its own: it shares the machine's disk)"
    return (f"Volume: {home}{where}: {found['size_mb'] / 1024:.1f} GB, {found['used_percent']}% used, "
            f"{found['free_mb'] / 1024:.1f} GB free")


def provisioned_line(found: dict) -> str:
    if found.get("error"):
        return f"Provisioned: unknown ({found['error']})"
    record = found.get("record")
    if not record:
        return "Provisioned: no record of a run (never provisioned, or by a version without records)"
    tags = f", tags {', '.join(record['tags'])} only" if record.get("tags") else ""
    return f"Provisioned: {record.get('time')} from commit {record.get('commit')}{tags}"


ARGUMENT_SPEC = {
    "user": {"type": "str", "required": True},
    "home": {"type": "path", "required": True},
    "packages": {"type": "list", "elements": "str", "default": []},
    "venv_dir": {"type": "str", "required": True},
    "swap_min_mb": {"type": "int", "default": 0},
    "commit": {"type": "str", "default": ""},
    "show_token": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    home, user = params["home"], params["user"]
    problem = options_problem(params)
    if problem:
        module.fail_json(msg=problem)
    exists = user_exists(user)
    registered = services(home, pwd.getpwnam(user).pw_uid if exists else None)
    facts = {"user_exists": exists, "swap": swap(), "volume": volume(home), "gpu": gpus(),
             "provisioned": provision_record(home), "idle_stop": idle_stop(home)}
    if exists:
        try:
            facts.update(run_as(user, user_side, home, params["show_token"], params["packages"], params["venv_dir"]))
        except RunAsError as error:
            module.fail_json(msg=f"reading the venv as {user} failed: {error}")
    changes = next_run(facts, {"user": user, "commit": params["commit"]})
    lines = [venv_line(facts["python_env"])] if exists else [
        f"Not provisioned: no user {user} on this machine (run playbooks/site.yml)"]
    lines.append(gpu_line(facts["gpu"]))
    wanted_swap = f" (wanted {params['swap_min_mb']} MB)" if facts["swap"]["total_mb"] < params["swap_min_mb"] else ""
    lines.append(f"Swap: {facts['swap']['total_mb']} MB, {facts['swap']['free_mb']} MB free{wanted_swap}")
    lines.append(volume_line(facts["volume"], home))
    lines.append(provisioned_line(facts["provisioned"]))
    lines.append(facts["idle_stop"]["line"])
    # The token is in the result only when asked for; it is never logged by Ansible's own invocation record.
    module.exit_json(changed=False, lines=lines, next_run=changes, services=registered["services"],
                     service_problems=registered["problems"], **facts)


if __name__ == "__main__":
    main()
