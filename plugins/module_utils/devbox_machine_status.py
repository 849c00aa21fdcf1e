"""What a dev machine looks like now, read without changing anything. Standard library only.

The machine-wide facts (swap, the volume, GPUs, the provisioning record) are read as root; what
lives in the home (Jupyter, the venv) is read by a child that is the user (devbox_run_as), so
root never runs the user's launcher or interpreter. Everything here is cheap: no installer, no
network beyond Jupyter's own /api on the machine.
"""
from __future__ import annotations

import json
import os
import subprocess

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import (
    QUERY_ARGS, find_nvidia_smi, parse_query)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import VENV_DIR
from ansible_collections.devbox.machine.plugins.module_utils.devbox_provision_record import (
    RecordError, load)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    SIMPLE_SPEC, SPEC_NAME, built_for, canonical, installed_distributions, venv_health)

LAUNCHER = os.path.join(".local", "bin", "devbox-jupyter")
JUPYTER_CONFIG = os.path.join(".jupyter", "jupyter_server_config.json")
TOKEN_FILE = os.path.join(".jupyter", "devbox_token")
# The launcher waits for its lock while a playbook run starts Jupyter: status must not.
LAUNCHER_TIMEOUT_S = 15
NVIDIA_SMI_TIMEOUT_S = 20


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


def provision_record(home: str) -> dict:
    try:
        return {"record": load(home)}
    except RecordError as error:
        return {"record": None, "error": str(error)}


def jupyter(home: str, show_token: bool) -> dict:
    """As the user: the launcher's own status (pid and /api probe), the settings, the token if asked."""
    launcher = os.path.join(home, LAUNCHER)
    if not os.access(launcher, os.X_OK):
        return {"installed": False}
    found = {"installed": True}
    try:
        with open(os.path.join(home, JUPYTER_CONFIG)) as config:
            server = json.load(config).get("ServerApp", {})
        found["settings"] = {"ip": server.get("ip"), "port": server.get("port")}
    except (OSError, ValueError) as error:
        found["settings_error"] = str(error)
    try:
        run = subprocess.run([launcher, "status"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=LAUNCHER_TIMEOUT_S)
        outcome = json.loads(run.stdout)
    except subprocess.TimeoutExpired:
        outcome = {"error": f"devbox-jupyter status did not answer within {LAUNCHER_TIMEOUT_S} s "
                            "(a playbook run may be starting Jupyter)"}
    except ValueError:
        outcome = {"error": (run.stdout + run.stderr).strip() or f"exit status {run.returncode}"}
    found.update({key: outcome.get(key) for key in ("running", "healthy", "url", "pid", "error") if key in outcome})
    if show_token:
        try:
            with open(os.path.join(home, TOKEN_FILE)) as token:
                found["token"] = token.read().strip()
        except OSError as error:
            found["token_error"] = str(error)
    return found


def python_env(home: str, requested: list[str], venv_dir: str = VENV_DIR) -> dict:
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


def user_side(home: str, show_token: bool, requested: list[str], venv_dir: str = VENV_DIR) -> dict:
    """Runs in the child that is the user (see devbox_run_as)."""
    return {"jupyter": jupyter(home, show_token), "python_env": python_env(home, requested, venv_dir)}


def next_run(facts: dict, wanted: dict) -> list[str]:
    """What the next site.yml run would change, as far as the facts tell without running it."""
    changes = []
    if not facts["user_exists"]:
        return [f"create the user {wanted['user']} and everything in the home"]
    venv = facts["python_env"]
    if venv["health"] != "ok":
        changes.append(f"rebuild the venv: {venv['reason']}" if venv["health"] != "absent" else "create the venv")
    if venv.get("missing"):
        changes.append("install " + ", ".join(venv["missing"]))
    found = facts["jupyter"]
    if not found["installed"]:
        changes.append("install and start JupyterLab")
    else:
        settings = found.get("settings") or {}
        if settings.get("port") != wanted["jupyter_port"]:
            changes.append(f"move Jupyter to port {wanted['jupyter_port']} (now {settings.get('port')})")
        if wanted["jupyter_ip"] != "auto" and settings.get("ip") != wanted["jupyter_ip"]:
            changes.append(f"make Jupyter listen on {wanted['jupyter_ip']} (now {settings.get('ip')})")
        if not found.get("healthy"):
            changes.append("start Jupyter")
    record = facts["provisioned"].get("record")
    if record and wanted.get("commit") and record.get("commit") != wanted["commit"]:
        changes.append(f"apply this checkout ({wanted['commit']}; the last run used {record.get('commit')})")
    return changes
