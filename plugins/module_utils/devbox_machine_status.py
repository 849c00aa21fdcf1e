"""What a dev machine looks like now, read without changing anything. Standard library only.

The machine-wide facts (swap, the volume, GPUs, the provisioning record, the registered services
and whether each listens) are read as root; what lives in the home (the venv, Jupyter's token)
is read by a child that is the user (devbox_run_as), so root never runs the user's interpreter.
Everything here is cheap: no installer, no network. What the user sees (each service's URL, the
hints) is built on the controller (plugins/action/devbox_status_report.py), not here.
"""
from __future__ import annotations

import os
import subprocess
import time

from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import QUERY_ARGS, find_nvidia_smi, parse_query
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import (
    boot_step_running, load_setting, read_state, status_line)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_provision_record import RecordError, load
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import load_all, probe
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    SIMPLE_SPEC, SPEC_NAME, built_for, canonical, installed_distributions, venv_health)

# Jupyter's token, kept on the volume by the jupyter role (0600, the user's).
TOKEN_FILE = os.path.join(".jupyter", "devbox_token")
NVIDIA_SMI_TIMEOUT_S = 20
# What the controller gets of each record: enough to build the service's URL and to compare it with the facts.
SERVICE_KEYS = ("name", "port", "url_path")


def swap(meminfo: str = "/proc/meminfo") -> dict:
    values = {}
    with open(meminfo) as lines:
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("SwapTotal", "SwapFree"):
                values[key] = int(rest.split()[0]) // 1024
    return {"total_mb": values.get("SwapTotal", 0), "free_mb": values.get("SwapFree", 0)}


def volume(home: str) -> dict:
    if not os.path.isdir(home):
        return {"exists": False}
    info = os.statvfs(home)
    size, free = info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize
    used = size - info.f_bfree * info.f_frsize
    return {"exists": True, "mount_point": os.path.ismount(home), "size_mb": size // 2**20,
            "used_mb": used // 2**20, "free_mb": free // 2**20,
            "used_percent": round(100 * used / size) if size else 0}


def gpus() -> dict:
    nvidia_smi = find_nvidia_smi()
    if nvidia_smi is None:
        return {"nvidia_smi": False, "names": []}
    try:
        result = subprocess.run([nvidia_smi, *QUERY_ARGS], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"nvidia_smi": True, "names": [], "error": str(error)}
    if result.returncode != 0:
        return {"nvidia_smi": True, "names": [], "error": (result.stderr or result.stdout).strip()}
    try:
        return {"nvidia_smi": True, "names": [gpu["name"] for gpu in parse_query(result.stdout)]}
    except ValueError as error:
        return {"nvidia_smi": True, "names": [], "error": str(error)}


def idle_stop(home: str) -> dict:
    """As root: the idle stop setting, what the boot step saw at its last look (/run/devbox/idle.json), and the
    line that says it: the idle clock, or what keeps the machine up."""
    setting = load_setting(home)
    return {"minutes": setting["minutes"], "line": status_line(setting, read_state(), boot_step_running(), time.time())}


def provision_record(home: str) -> dict:
    try:
        return {"record": load(home)}
    except RecordError as error:
        return {"record": None, "error": str(error)}


def services(home: str, uid: int | None) -> dict:
    """As root: every registered service (its record in ~/.devbox) and whether the user's process listens on
    its port (the health probe); why damaged records were skipped, apart."""
    found, problems = load_all(home)
    listed = []
    for service in found:
        healthy = probe(service, uid)["healthy"] if uid is not None else False
        listed.append(dict({key: service[key] for key in SERVICE_KEYS}, healthy=healthy))
    return {"services": listed, "problems": problems}


def token(home: str) -> dict:
    """As the user: Jupyter's token (only when the user asked to see it)."""
    try:
        with open(os.path.join(home, TOKEN_FILE)) as kept:
            return {"token": kept.read().strip()}
    except OSError as error:
        return {"token_error": str(error)}


def python_env(home: str, requested: list[str], venv_dir: str) -> dict:
    """As the user: the venv's path, health, Python, distributions, and which requested ones are not there."""
    venv = os.path.join(home, venv_dir)
    health, reason = venv_health(venv, "python3")
    if health == "absent":
        return {"path": venv, "health": health, "reason": reason, "missing": list(requested)}
    installed = installed_distributions(venv)
    return {"path": venv, "health": health, "reason": reason, "python": built_for(venv), "distributions": len(installed),
            "missing": unmet(requested, installed)}


def unmet(requested: list[str], installed: dict[str, str]) -> list[str]:
    """Requested specs surely not met: the name is absent, or a pinned ==version differs.

    Other specifiers (>=, extras, markers) count as met when the name is installed: telling
    more would take the installer's resolver, which status does not run.
    """
    missing = []
    for spec in requested:
        name = SPEC_NAME.match(spec)
        if name is None:
            continue
        version = installed.get(canonical(name.group(1)))
        pinned = SIMPLE_SPEC.match(spec)
        if version is None or (pinned and pinned.group(2) and pinned.group(2) != version):
            missing.append(spec if version is None else f"{spec} (installed: {version})")
    return missing


def user_side(home: str, show_token: bool, requested: list[str], venv_dir: str) -> dict:
    """Runs in the child that is the user (see devbox_run_as)."""
    found = {"python_env": python_env(home, requested, venv_dir)}
    if show_token:
        found["jupyter_token"] = token(home)
    return found


def next_run(facts: dict, wanted: dict) -> list[str]:
    """What the next site.yml run would change in the user, the venv and the checkout, as far as the facts tell
    without running it (the services are compared on the controller, with the facts there)."""
    if not facts["user_exists"]:
        return [f"create the user {wanted['user']} and everything in the home"]
    changes = []
    venv = facts["python_env"]
    if venv["health"] != "ok":
        changes.append(f"rebuild the venv: {venv['reason']}" if venv["health"] != "absent" else "create the venv")
    if venv.get("missing"):
        changes.append("install " + ", ".join(venv["missing"]))
    record = facts["provisioned"].get("record")
    if record and wanted.get("commit") and record.get("commit") != wanted["commit"]:
        changes.append(f"apply this checkout ({wanted['commit']}; the last run used {record.get('commit')})")
    return changes
