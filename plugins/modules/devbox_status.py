#!/usr/bin/python
"""Ansible module: a read-only look at a dev machine, as one readable block."""
from __future__ import annotations

DOCUMENTATION = r"""
module: devbox_status
short_description: Report a dev machine's state without changing anything
description:
  - Runs as the login user (root), in one pipelined exec. Reads swap, the home's volume, GPUs (nvidia-smi)
    and the record of the last playbook run as root; reads Jupyter (the launcher's own status) and the venv
    in a child process that is the dev user.
  - Never installs, starts or restarts anything; the token is returned only with I(show_token).
  - Lists what the next playbook run would change where that is known cheaply (the user or venv missing,
    requested packages not installed, Jupyter settings that differ, Jupyter down, another commit).
options:
  user: {type: str, required: true, description: The dev user.}
  home: {type: path, required: true, description: The dev user's home, the volume.}
  packages: {type: list, elements: str, default: [], description: The requested packages (python_env_packages).}
  jupyter_port: {type: int, default: 8888, description: The wanted Jupyter port.}
  jupyter_ip: {type: str, default: auto, description: The wanted Jupyter address (auto is not compared).}
  swap_min_mb: {type: int, default: 0, description: The wanted swap.}
  commit: {type: str, default: "", description: The controller checkout's git describe output.}
  browser_url: {type: str, default: "", description: Where the browser reaches Jupyter; empty means localhost and the port.}
  open_hint: {type: str, default: "", description: How to open that URL (a tunnel command), shown as is.}
  show_token: {type: bool, default: false, description: Put the token in the URL (the user asked for it).}
  token_hint: {type: str, default: "", description: How to get the URL with the token, shown when it is hidden.}
author: devbox maintainers
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.devbox_machine_status import (gpus, next_run, provision_record, swap, user_exists,
                                                        user_side, volume)
from ansible.module_utils.devbox_run_as import RunAsError, run_as


def jupyter_line(found: dict, params: dict) -> str:
    if not found.get("installed"):
        return "Jupyter: not installed"
    port = (found.get("settings") or {}).get("port") or params["jupyter_port"]
    url = (params["browser_url"] or f"http://localhost:{port}").rstrip("/") + "/lab"
    if not found.get("healthy"):
        why = found.get("error") or ("running but not answering" if found.get("running") else "not running")
        return f"Jupyter: DOWN ({why}); the next run (or ~/.local/bin/devbox-jupyter start) starts it"
    served = f"(server on {found.get('url')}, pid {found.get('pid')})"
    if params["show_token"] and found.get("token"):
        return f"Jupyter: up, {url}?token={found['token']} {served}"
    hint = f": {params['token_hint']}" if params["token_hint"] else ""
    return f"Jupyter: up, {url} {served}; token hidden{hint}"


def venv_line(venv: dict, home: str) -> str:
    if venv["health"] == "absent":
        return f"Venv: {home}/project-venv does not exist"
    state = "" if venv["health"] == "ok" else f" ({venv['health']}: {venv['reason']})"
    return f"Venv: {home}/project-venv, Python {venv.get('python')}, {venv.get('distributions')} packages{state}"


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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str", "required": True},
            "home": {"type": "path", "required": True},
            "packages": {"type": "list", "elements": "str", "default": []},
            "jupyter_port": {"type": "int", "default": 8888},
            "jupyter_ip": {"type": "str", "default": "auto"},
            "swap_min_mb": {"type": "int", "default": 0},
            "commit": {"type": "str", "default": ""},
            "browser_url": {"type": "str", "default": ""},
            "open_hint": {"type": "str", "default": ""},
            "show_token": {"type": "bool", "default": False},
            "token_hint": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    home, user = params["home"], params["user"]
    facts = {"user_exists": user_exists(user), "swap": swap(), "volume": volume(home), "gpu": gpus(),
             "provisioned": provision_record(home)}
    if facts["user_exists"]:
        try:
            facts.update(run_as(user, user_side, home, params["show_token"], params["packages"]))
        except RunAsError as error:
            module.fail_json(msg=f"reading Jupyter and the venv as {user} failed: {error}")
    wanted = {"user": user, "jupyter_port": params["jupyter_port"], "jupyter_ip": params["jupyter_ip"],
              "commit": params["commit"]}
    changes = next_run(facts, wanted)
    lines = []
    if facts["user_exists"]:
        lines.append(jupyter_line(facts["jupyter"], params))
        if params["open_hint"] and facts["jupyter"].get("healthy"):
            lines.append(f"Open it: {params['open_hint']}")
        lines.append(venv_line(facts["python_env"], home))
    else:
        lines.append(f"Not provisioned: no user {user} on this machine (run playbooks/site.yml)")
    lines.append(gpu_line(facts["gpu"]))
    wanted_swap = f" (wanted {params['swap_min_mb']} MB)" if facts["swap"]["total_mb"] < params["swap_min_mb"] else ""
    lines.append(f"Swap: {facts['swap']['total_mb']} MB, {facts['swap']['free_mb']} MB free{wanted_swap}")
    lines.append(volume_line(facts["volume"], home))
    lines.append(provisioned_line(facts["provisioned"]))
    lines.append("Next run: " + ("; ".join(changes) if changes else "nothing to change, as far as status can tell"))
    # The token is in the result only when asked for; it is never logged by Ansible's own invocation record.
    module.exit_json(changed=False, lines=lines, next_run=changes, **facts)


if __name__ == "__main__":
    main()
