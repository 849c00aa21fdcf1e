"""One look at the whole machine: what each role of site.yml would find, and whether it has anything to do.

observe() reads, per role, what that role makes or keeps on the machine, each as a short value (a
version, a digest, "healthy"): as root what is root's (the account, /proc/meminfo, the records in
~/.devbox, read by devbox_records without following links), and in one child that is the dev user
what is the user's (the venvs' distributions from their *.dist-info names, the venvs' Python, the
shell block, Jupyter's files and token, each service's health by the launcher's own status logic).
A role's stamp (~/.devbox/look.json, root's own, written by devbox_provision_record at the end of a
run) keeps its inputs' digests and its observation after that run: decide() compares, and a role
whose inputs and observation are both unchanged has nothing to do. Nothing here changes the machine.
"""
from __future__ import annotations

import glob
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess

from ansible_collections.devbox.machine.plugins.module_utils.devbox_files import (
    COMPLETE_MARKER, IDLE_SETTING_FILE as IDLE_SETTING, LOCK_FILE, PENDING_RESTART_FILE as PENDING_RESTART,
    REQUESTED_FILE, REQUESTED_RECORD, SETTINGS_FILE, SHELL_BLOCK_BEGIN_PREFIX as BEGIN_PREFIX, SHELL_BLOCK_END as END,
    built_for, read_text)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import (
    QUERY_ARGS, device_groups_needed, find_nvidia_smi, parse_cuda_version, parse_query)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (
    LauncherError, Service, read_token, status)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    LIBRARY_DIR, RECORD_FILE, AccountError, read_root_file, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import JUPYTER, file_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_swap import read_swap_total_mb

# The roles of site.yml, in its order; each has an entry in the stamp.
ROLES = ("dev_user", "gpu", "swap", "python_env", "services", "idle_stop")
STAMP_FILE = "look.json"
# Files of the user's that a role writes, relative to the home ({venv}: the layout's); the services' are named
# as the devbox_services module writes them.
# REQUESTED_FILE: the list of an earlier version, which python_env removes (never read once root keeps its own).
VENV_FILES = (COMPLETE_MARKER, "pip.conf", SETTINGS_FILE, REQUESTED_FILE)
PROJECT_FILES = ("requirements.txt", LOCK_FILE)
SERVICE_FILES = (".jupyter/jupyter_server_config.json", ".local/bin/devbox-service",
                 ".local/share/jupyter/kernels/python3/kernel.json",
                 "{jupyter_venv}/share/jupyter/lab/settings/overrides.d/devbox.json")
ABSENT = "absent"
# While root's record of a restart a busy kernel put off (PENDING_RESTART) is there (PID 1 does it at the next idle
# moment), the services role runs at every run too, to do it when no kernel is busy.


def digest(value) -> str:
    """A short digest of any JSON-able value (or of text), the same on every machine."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def service_venv_dir(params: dict, service: dict) -> str:
    """The venv a service runs from, relative to the home (devbox_service.service_venv's rule)."""
    return f"{params['service_venvs_dir']}/{service['name']}" if service.get("venv") == "own" else params["venv_dir"]


def venvs(params: dict) -> list[str]:
    """Every venv the roles keep, relative to the home: the project's and each service's own."""
    return [params["venv_dir"]] + [service_venv_dir(params, service) for service in params["services"]
                                   if service.get("venv") == "own"]


def file_digest(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()[:16]
    except FileNotFoundError:
        return ABSENT
    except OSError as error:
        return f"unreadable ({error.strerror})"


def root_digest(home: str, relative: str) -> str:
    """~/.devbox/<relative>'s digest when it is root's own file; "absent", or "not root's own"."""
    try:
        text = read_root_file(home, relative)
    except (AccountError, OSError):
        return "not root's own"
    return ABSENT if text is None else digest(text)


def distributions(venv: str) -> dict[str, str]:
    """{name: version} from the *.dist-info folder names (PEP 427: name-version.dist-info, '-' escaped as '_')."""
    found = {}
    for folder in glob.glob(os.path.join(glob.escape(venv), "lib", "python3*", "site-packages", "*.dist-info")):
        name, _, version = os.path.basename(folder)[:-len(".dist-info")].partition("-")
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def shell_block(home: str) -> str:
    """The digest of the devbox block of ~/.bashrc (the rest is the user's)."""
    try:
        with open(os.path.realpath(os.path.join(home, ".bashrc"))) as bashrc:
            text = bashrc.read()
    except OSError:
        return ABSENT
    start = text.find(BEGIN_PREFIX)
    end = text.find(END, start) if start != -1 else -1
    return digest(text[start:end]) if start != -1 and end > start else ABSENT


def as_user(params: dict) -> dict:
    """In the child that is the dev user: {role: {key: value}} of the user's things, and the report's values."""
    home = params["home"]
    venv, project = os.path.join(home, params["venv_dir"]), os.path.join(home, params["project_dir"])
    python_env, services, packages = {}, {}, {}
    for relative in venvs(params):
        path = os.path.join(home, relative)
        # The project venv is python_env's (and the services' that run from it); a service's own, the services'.
        keeper = python_env if relative == params["venv_dir"] else services
        packages[relative] = distributions(path)
        keeper[f"python {relative}"] = built_for(path, 3) or ABSENT
        keeper[f"interpreter {relative}"] = "runs" if os.access(os.path.join(path, "bin", "python"), os.X_OK) \
            else "missing"
        keeper.update({f"file {relative}/{name}": file_digest(os.path.join(path, name)) for name in VENV_FILES})
        keeper[f"packages {relative}"] = packages[relative]
    # What the services read of the project venv: its packages when one of them runs from it, its installer
    # settings when one has a venv of its own (made with them); a package the user adds is no concern of theirs.
    own = [service.get("venv") == "own" for service in params["services"]]
    if not all(own):
        services[f"packages {params['venv_dir']}"] = packages[params["venv_dir"]]
    if any(own):
        services[f"file {params['venv_dir']}/{SETTINGS_FILE}"] = python_env[f"file {params['venv_dir']}/{SETTINGS_FILE}"]
    python_env.update({f"file {params['project_dir']}/{name}": file_digest(os.path.join(project, name))
                       for name in PROJECT_FILES})
    python_env["shell block ~/.bashrc"] = shell_block(home)
    report = {"python_version": built_for(venv), "lock": read_text(os.path.join(project, LOCK_FILE)), "token": None}
    jupyter = next((service for service in params["services"] if service["name"] == JUPYTER), {})
    for pattern in SERVICE_FILES:
        relative = pattern.format(jupyter_venv=service_venv_dir(params, jupyter))
        services[f"file {relative}"] = file_digest(os.path.join(home, relative))
    for name in (service["name"] for service in params["services"]):
        try:
            service = Service(home, name)
            state = "healthy" if status(service)["healthy"] else "down"
            if service.jupyter:
                report["token"] = read_token(service)
                services["token"] = "valid" if report["token"] else "missing or not a token"
        except (LauncherError, OSError, ValueError) as error:
            state = f"down ({error})"
        services[f"service {name}"] = state
    return {"python_env": python_env, "services": services, "report": report}


def gpu_facts(required: str) -> dict:
    """What the gpu role reports (its module's probe, read only): nvidia-smi's GPUs and CUDA version."""
    facts = {"present": False, "gpus": [], "cuda_version": None, "nvidia_smi": None, "smoke_test": ""}
    nvidia_smi = find_nvidia_smi() if required != "false" else None
    if nvidia_smi is None:
        return facts
    summary = subprocess.run([nvidia_smi], capture_output=True, text=True, timeout=60)
    query = subprocess.run([nvidia_smi, *QUERY_ARGS], capture_output=True, text=True, timeout=60)
    if summary.returncode != 0 or query.returncode != 0:
        return dict(facts, nvidia_smi=f"{nvidia_smi} failed")
    try:
        gpus = parse_query(query.stdout)
    except ValueError:
        return dict(facts, nvidia_smi=f"{nvidia_smi} answered in an unknown shape")
    return dict(facts, nvidia_smi=nvidia_smi, gpus=gpus, present=bool(gpus),
                cuda_version=parse_cuda_version(summary.stdout))


def device_groups() -> list[str]:
    """The groups the GPU device nodes ask for (the gpu module's rule)."""
    nodes = []
    for path in sorted(glob.glob("/dev/nvidia*")):
        info = os.stat(path)
        if not stat.S_ISCHR(info.st_mode):
            continue
        try:
            group = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            group = str(info.st_gid)
        nodes.append((path, stat.S_IMODE(info.st_mode), group))
    return device_groups_needed(nodes)


def observe(params: dict) -> dict:
    """{"roles": {role: {key: value}}, "report": {...}} for the machine as it is now; changes nothing.

    params: user, home, venv_dir, project_dir, service_venvs_dir, services ([{name, venv, ...}]), libraries (the
    launcher's file names
    under ~/.devbox/lib), gpu_required.
    """
    home, user = params["home"], params["user"]
    try:
        entry = pwd.getpwnam(user)
        groups = sorted(group.gr_name for group in grp.getgrall() if user in group.gr_mem)
    except KeyError:
        entry, groups = None, []
    try:
        info = os.stat(home, follow_symlinks=False)
        home_state = f"{info.st_uid}:{info.st_gid} {info.st_mode & 0o7777:o}"
    except OSError:
        home_state = ABSENT
    gpu = gpu_facts(params["gpu_required"])
    swap = read_swap_total_mb()
    roles = {
        "dev_user": {"account": f"{entry.pw_uid}:{entry.pw_gid}:{entry.pw_dir}:{entry.pw_shell}" if entry else ABSENT,
                     "groups": ",".join(groups), "home": home_state, "home mounted": str(os.path.ismount(home)),
                     "record account.json": root_digest(home, RECORD_FILE)},
        "gpu": {"gpus": digest(gpu), "device groups not joined": ",".join(
            sorted(set(device_groups()) - set(groups))) if gpu["present"] else ""},
        "swap": {"swap MB": str(swap)},
        "idle_stop": {"record idle_stop.json": root_digest(home, IDLE_SETTING)},
        "python_env": {"record requested-packages.json": root_digest(home, REQUESTED_RECORD),
                       "python3": os.path.realpath(shutil.which("python3") or "python3")},
        "services": {f"record {file_name(service['name'])}": root_digest(home, file_name(service["name"]))
                     for service in params["services"]},
    }
    roles["services"].update({f"record {name}": root_digest(home, f"{LIBRARY_DIR}/{name}")
                              for name in params["libraries"]})
    roles["services"][f"record {PENDING_RESTART}"] = root_digest(home, PENDING_RESTART)
    report = {"gpu": gpu, "swap_mb": swap, "python_version": None, "lock": None, "token": None}
    if entry is not None and home_state != ABSENT:
        try:
            mine = run_as(user, as_user, params, expected=(OSError, LauncherError))
        except RunAsError as error:
            mine = {"python_env": {"user's files": f"unreadable ({error})"},
                    "services": {"user's files": f"unreadable ({error})"}, "report": {}}
        roles["python_env"].update(mine["python_env"])
        roles["services"].update(mine["services"])
        report.update(mine["report"])
    else:
        roles["python_env"]["user's files"] = roles["services"]["user's files"] = "no user yet"
    return {"roles": roles, "report": report}


def changes(key: str, before, now) -> list[str]:
    """What differs under one key, in words."""
    if key.startswith("packages "):
        before, now = before if isinstance(before, dict) else {}, now if isinstance(now, dict) else {}
        return ([f"package removed by hand: {name}" for name in sorted(set(before) - set(now))]
                + [f"package added by hand: {name}" for name in sorted(set(now) - set(before))]
                + [f"package changed by hand: {name} {before[name]} -> {now[name]}"
                   for name in sorted(set(before) & set(now)) if before[name] != now[name]])
    if key.startswith("service "):
        return [f"{key[len('service '):]} {now}" if str(now).startswith("down") else f"{key[len('service '):]} up"]
    if key.startswith(("file ", "record ")):
        what = "removed" if now == ABSENT else "created" if before == ABSENT else "changed"
        return [f"{key.split(' ', 1)[1]} {what}"]
    return [f"{key} changed: {before} -> {now}"]


def pending_restart(observed: dict) -> list[str]:
    """Why the services role runs whatever the stamp says: a restart left pending."""
    return [] if observed["services"].get(f"record {PENDING_RESTART}") == ABSENT else [
        "a restart that a busy kernel put off is pending"]


def decide(stamp: dict | None, inputs: dict, observed: dict) -> dict:
    """{role: [reasons]} of every role that has something to do; [] for a role that has nothing.

    inputs: {role: {input name: digest}}; observed: observe()'s roles; stamp: look.json's content.
    """
    stamp = stamp if isinstance(stamp, dict) else {}
    todo = {}
    for role in ROLES:
        kept = stamp.get(role)
        if not isinstance(kept, dict) or not isinstance(kept.get("inputs"), dict) or not isinstance(
                kept.get("observed"), dict):
            todo[role] = ["no stamp yet"]
            continue
        reasons = [f"inputs changed: {name}" for name in sorted(set(inputs[role]) | set(kept["inputs"]))
                   if inputs[role].get(name) != kept["inputs"].get(name)]
        now, before = observed[role], kept["observed"]
        for key in sorted(set(now) | set(before)):
            if now.get(key) != before.get(key):
                reasons += changes(key, before.get(key), now.get(key))
        todo[role] = reasons
    return todo


def read_stamp(home: str) -> dict | None:
    try:
        text = read_root_file(home, STAMP_FILE)
        return json.loads(text) if text is not None else None
    except (AccountError, OSError, ValueError):
        return None  # not root's own or damaged: every role runs, and the run writes a good one


def write_stamp(home: str, inputs: dict, observed: dict, roles: list[str], dry_run: bool = False) -> bool:
    """Keep these roles' inputs and observation in ~/.devbox/look.json (the others' entries stay); True when
    it changed."""
    stamp = read_stamp(home) or {}
    stamp = {role: entry for role, entry in stamp.items() if role in ROLES}
    stamp.update({role: {"inputs": inputs[role], "observed": observed[role]} for role in roles})
    return write_root_file_if_changed(home, STAMP_FILE, json.dumps(stamp, indent=1, sort_keys=True) + "\n", dry_run)
