"""Long-running services of the dev user (Jupyter, TensorBoard): one declarative record each.

A role registers its service with a record in the home's root-owned ~/.devbox/
(service-<name>.json, written by root like the account record); PID 1 reads every record at
boot, starts each service as the user with its launcher, and stops them all on SIGTERM. A
record is data, validated, never executed: it names the service, its launcher (a path inside
the home, run only after dropping to the user) and its health probe (the port a process of the
user must listen on). Standard library only: the boot step imports it too.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    LIBRARY_DIR, RECORD_DIR, AccountError, read_root_file, root_file_names, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import listening_sockets

PREFIX, SUFFIX = "service-", ".json"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# A launcher lives under the home: a relative path of plain names (no '..', no leading '/').
LAUNCHER_PART = re.compile(r"^[A-Za-z0-9._-]+$")
FIELDS = {"name", "launcher", "probe"}


class ServiceError(Exception):
    """A record that cannot be used; the message names the file, the field and the value."""


def file_name(name: str) -> str:
    return f"{PREFIX}{name}{SUFFIX}"


def validate(record, where: str = "service record") -> dict:
    """A clean copy of the record, or ServiceError naming the field and the value."""
    if not isinstance(record, dict):
        raise ServiceError(f"{where} does not hold a JSON object")
    unknown = sorted(set(record) - FIELDS)
    if unknown:
        raise ServiceError(f"{where} has unknown fields {unknown}: only {sorted(FIELDS)}")
    name = record.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ServiceError(f"{where}: name={name!r} must be 1-32 lower-case letters, digits, '_' or '-', "
                           "starting with a letter")
    launcher = record.get("launcher")
    parts = launcher.split("/") if isinstance(launcher, str) else []
    if not parts or not all(LAUNCHER_PART.match(part) and part not in (".", "..") for part in parts):
        raise ServiceError(f"{where}: launcher={launcher!r} must be a path relative to the home, such as "
                           "'.local/bin/devbox-jupyter' (no '..', no leading '/')")
    probe = record.get("probe")
    port = probe.get("port") if isinstance(probe, dict) and set(probe) == {"port"} else None
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ServiceError(f"{where}: probe={probe!r} must be {{'port': N}} with N from 1024 to 65535")
    return {"name": name, "launcher": launcher, "probe": {"port": port}}


def run_launcher(launcher: str, action: str) -> tuple[int, dict]:
    """As the user (the modules' user-side work): the launcher's exit status and its one JSON line."""
    run = subprocess.run([launcher, action], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        return run.returncode, json.loads(run.stdout)
    except ValueError:
        return run.returncode or 1, {"error": (run.stdout + run.stderr).strip()}


def install_libraries(home: str, sources: dict, dry_run: bool = False) -> bool:
    """As root: the files the launchers import (name -> source text), as root's own files in the home's
    root-owned ~/.devbox/LIBRARY_DIR/, so the user's launchers run the very code of plugins/module_utils;
    True when any changed."""
    changed = False
    for name, text in sorted(sources.items()):
        changed = _write(home, f"{LIBRARY_DIR}/{name}", text, dry_run) or changed
    return changed


def register(home: str, record: dict, dry_run: bool = False) -> bool:
    """Keep the service's record for PID 1 (root-owned, as root); True when it changed."""
    record = validate(record)
    return _write(home, file_name(record["name"]), json.dumps(record, indent=2, sort_keys=True) + "\n", dry_run)


def _write(home: str, name: str, text: str, dry_run: bool) -> bool:
    try:
        return write_root_file_if_changed(home, name, text, dry_run)
    except AccountError as error:
        raise ServiceError(str(error)) from error


def register_and_exit(module, result: dict, record: dict, label: str) -> None:
    """The end of a service module: as root, register the service with PID 1 (which starts it
    after a restart and stops it with the machine), then exit with the result (diff if asked)."""
    try:
        registered = register(module.params["home"], record, module.check_mode)
    except (ServiceError, OSError) as error:
        module.fail_json(msg=f"cannot register {label} for the boot step: {error}")
    result["changed"] = result["changed"] or registered
    diffs = result.pop("diff")
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


def load_all(home: str) -> tuple[list[dict], list[str]]:
    """Every registered service (sorted by name) and, apart, why each damaged record was skipped."""
    services, problems = [], []
    try:
        names = [name for name in root_file_names(home) if name.startswith(PREFIX) and name.endswith(SUFFIX)]
    except (AccountError, OSError) as error:
        return [], [f"service records not read: {error}"]
    for name in names:
        where = os.path.join(home, RECORD_DIR, name)
        try:
            record = validate(json.loads(read_root_file(home, name) or "null"), "its content")
        except (AccountError, OSError, ValueError, ServiceError) as error:
            problems.append(f"{where} skipped: {error}")
            continue
        if file_name(record["name"]) != name:
            problems.append(f"{where} skipped: it names the service {record['name']!r}")
            continue
        services.append(record)
    return services, problems


def socket_owners(inodes: set[str]) -> set[int]:
    """The pids holding any of these sockets, among the processes whose descriptors this process may read."""
    links, owners = {f"socket:[{inode}]" for inode in inodes}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in links for fd in os.listdir(f"/proc/{entry}/fd")):
                owners.add(int(entry))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return owners


def probe(service: dict, uid: int) -> dict:
    """The health probe: the addresses where a socket of the user listens on the service's port."""
    addresses = {address for address, owner, _ in listening_sockets(service["probe"]["port"]) if owner == uid}
    return {"healthy": bool(addresses), "addresses": sorted(addresses)}


def service_pids(services: list[dict], uid: int) -> list[int]:
    """As the user: the pids of the user's processes that listen on the services' ports.

    As the user, because a process's descriptors are readable by its owner, while root in a
    container lacks the capability (CAP_SYS_PTRACE) to read other users' (Docker drops it).
    """
    inodes = {inode for service in services for _, owner, inode in listening_sockets(service["probe"]["port"])
              if owner == uid}
    return sorted(socket_owners(inodes)) if inodes else []
