"""A service of the dev machine as data: one shape for Jupyter, TensorBoard and the user's own.

An entry (the `devbox_services` variable, and the built-in `jupyter_service`, `tensorboard_service`)
names the service, the packages it needs in the venv, its command with placeholders, its port and
what the machine needs to know about it. The controller checks every entry before anything
changes (plugins/plugin_utils/devbox_machine.py); the devbox_services module checks them again
and keeps one root-owned record per service in the home's ~/.devbox/ (service-<name>.json). PID 1
and the one launcher (devbox_launcher) read the records: data, validated, never executed by root.
Standard library only: the boot step and the launcher import it too.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re

from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    RECORD_DIR, AccountError, read_root_file, remove_root_file, root_file_names, write_root_file_if_changed)

PREFIX, SUFFIX = "service-", ".json"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PLACEHOLDERS = ("ip", "port", "home", "venv", "project")
# Jupyter is the one service with more to it (its token, its settings, its own view of use).
JUPYTER = "jupyter"
# A service listening only here is reached behind Jupyter's login (jupyter-server-proxy's
# /proxy/<port>/), through whatever way the user reaches Jupyter: no port of its own to open.
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_TEXT = 4096

# Every field of an entry: (types, default); a default of REQUIRED must be given.
REQUIRED = object()
FIELDS = {
    "name": (str, REQUIRED),
    "port": (int, REQUIRED),
    "command": (list, REQUIRED),
    "packages": (list, []),
    "ip": (str, "auto"),
    "health": ((str, type(None)), None),
    "counts_as_use": (bool, False),
    "restart_on_change": (bool, True),
    "env": (dict, {}),
    "url_path": (str, "/"),
    "cwd": (str, "{project}"),
    "enabled": (bool, True),
    "venv": (str, "project"),
}
# Which venv a service runs from: the project venv (the user's packages: an app that imports them), or a
# venv of its own (JupyterLab, TensorBoard: their dependencies never meet the user's pins).
VENV_CHOICES = ("project", "own")
# What the record adds: the resolved layout, so the launcher and PID 1 need nothing else. Its venv is the
# path the service runs from; project_venv the user's (its shells and kernels see that one first).
RECORD_FIELDS = set(FIELDS) - {"packages", "enabled"} | {"venv", "project", "project_venv"}
# A record of the version before services had venvs of their own: it ran from the project venv.
OLD_RECORD_FIELDS = RECORD_FIELDS - {"project_venv"}


class ServiceError(Exception):
    """An entry or a record that cannot be used; the message names the service, the field and the value."""


def behind_jupyter(service: dict) -> bool:
    """Whether the service is reached at Jupyter's /proxy/<port>/ rather than on a port of its own."""
    return service["name"] != JUPYTER and service.get("ip") in LOOPBACK


def file_name(name: str) -> str:
    return f"{PREFIX}{name}{SUFFIX}"


def _text_problem(value) -> bool:
    return not isinstance(value, str) or not value or len(value) > MAX_TEXT or any(
        ord(character) < 32 or ord(character) == 127 for character in value)


def normalize(entry, where: str = "devbox_services entry") -> dict:
    """The entry with every field, defaults filled in, or ServiceError naming the field and the fix."""
    if not isinstance(entry, dict):
        raise ServiceError(f"{where} must be a mapping with name, port and command, not {entry!r}")
    label = f"{where} {entry.get('name')!r}" if isinstance(entry.get("name"), str) else where
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ServiceError(f"{label} has unknown fields {unknown}; the fields are {sorted(FIELDS)}")
    clean = {}
    for field, (kind, default) in FIELDS.items():
        if field not in entry:
            if default is REQUIRED:
                raise ServiceError(f"{label} needs a {field}")
            clean[field] = json.loads(json.dumps(default))
            continue
        value = entry[field]
        if kind is int and isinstance(value, str) and value.isdigit():
            value = int(value)  # a templated port arrives as text
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ServiceError(f"{label}: {field}={value!r} has the wrong type")
        clean[field] = value
    name = clean["name"]
    if not NAME_PATTERN.match(name):
        raise ServiceError(f"{where}: name={name!r} must be 1-32 lower-case letters, digits, '_' or '-', "
                           "starting with a letter")
    if not 1024 <= clean["port"] <= 65535:
        raise ServiceError(f"{label}: port={clean['port']} must be a number from 1024 to 65535")
    if not clean["command"] or any(_text_problem(word) for word in clean["command"]):
        raise ServiceError(f"{label}: command must be a list of words (no control characters), such as "
                           "['streamlit', 'hello', '--server.port', '{port}', '--server.address', '{ip}']")
    if any(_text_problem(spec) for spec in clean["packages"]):
        raise ServiceError(f"{label}: packages must be a list of requirement specifiers, such as ['streamlit']")
    for field in ("health", "url_path"):
        value = clean[field]
        if value is not None and (_text_problem(value) or not value.startswith("/") or " " in value):
            raise ServiceError(f"{label}: {field}={value!r} must be a URL path starting with '/'")
    if _text_problem(clean["cwd"]):
        raise ServiceError(f"{label}: cwd={clean['cwd']!r} must be a folder, such as '{{project}}'")
    if not all(ENV_NAME.match(str(key)) and isinstance(value, str) and len(value) <= MAX_TEXT and "\0" not in value
               for key, value in clean["env"].items()):
        raise ServiceError(f"{label}: env must map variable names (letters, digits, '_') to text")
    if _text_problem(clean["ip"]):
        raise ServiceError(f"{label}: ip={clean['ip']!r} must be an address or a host name")
    if clean["venv"] not in VENV_CHOICES:
        raise ServiceError(f"{label}: venv={clean['venv']!r} must be 'project' (the project venv, with the user's "
                           "packages) or 'own' (a venv of its own)")
    return clean


def normalize_all(entries, labels: list[str] | None = None) -> list[dict]:
    """Every enabled entry, normalized, or ServiceError for the first problem: names and ports are unique.
    labels name where each entry comes from (jupyter_service, ...) in the messages."""
    if not isinstance(entries, list):
        raise ServiceError(f"devbox_services must be a list of entries, not {entries!r}")
    services, names, ports = [], {}, {}
    for number, entry in enumerate(entries):
        service = normalize(entry, labels[number] if labels and number < len(labels) else "devbox_services entry")
        if service["name"] in names:
            raise ServiceError(f"two services are named {service['name']!r}: each name once")
        names[service["name"]] = service
        if not service["enabled"]:
            continue
        if service["port"] in ports:
            raise ServiceError(f"services {ports[service['port']]!r} and {service['name']!r} both want port "
                               f"{service['port']}: give each its own")
        ports[service["port"]] = service["name"]
        services.append(service)
    return services


def expand(text: str, values: dict) -> str:
    """The text with {ip}, {port}, {home}, {venv} and {project} replaced; other braces are left alone."""
    for key in PLACEHOLDERS:
        text = text.replace("{" + key + "}", str(values[key]))
    return text


def service_venv(service: dict, home: str, venv_dir: str, service_venvs_dir: str) -> str:
    """The venv a normalized entry runs from: the project venv, or <service_venvs_dir>/<name> under the home."""
    if service["venv"] == "own":
        return os.path.join(home, service_venvs_dir, service["name"])
    return os.path.join(home, venv_dir)


def record(service: dict, home: str, venv_dir: str, project_dir: str, service_venvs_dir: str) -> dict:
    """What PID 1 and the launcher keep of a normalized entry: no packages, the layout resolved."""
    kept = {key: value for key, value in service.items() if key in RECORD_FIELDS}
    return dict(kept, venv=service_venv(service, home, venv_dir, service_venvs_dir),
                project=os.path.join(home, project_dir), project_venv=os.path.join(home, venv_dir))


def validate_record(data, where: str) -> dict:
    """A record read back from ~/.devbox, checked as the entry it came from; ServiceError when not usable.
    A record of the version before own venvs ran its service from the project venv: it reads as such."""
    if isinstance(data, dict) and set(data) == OLD_RECORD_FIELDS:
        data = dict(data, project_venv=data["venv"])
    if not isinstance(data, dict) or set(data) != RECORD_FIELDS:
        raise ServiceError(f"{where} is not a service record of this version")
    paths = (data["venv"], data["project"], data["project_venv"])
    if not all(isinstance(path, str) and os.path.isabs(path) and not _text_problem(path) for path in paths):
        raise ServiceError(f"{where}: venv, project and project_venv must be absolute paths")
    entry = {key: value for key, value in data.items() if key in FIELDS and key != "venv"}
    return dict(normalize(entry, where), venv=data["venv"], project=data["project"], project_venv=data["project_venv"])


def record_text(service_record: dict) -> str:
    return json.dumps(service_record, indent=2, sort_keys=True) + "\n"


def register(home: str, service_record: dict, dry_run: bool = False) -> bool:
    """Keep the service's record for PID 1 and the launcher (root-owned, as root); True when it changed."""
    validate_record(service_record, "the new record")
    return _call(write_root_file_if_changed, home, file_name(service_record["name"]), record_text(service_record),
                 dry_run)


def unregister(home: str, name: str, dry_run: bool = False) -> bool:
    """Forget a service that left the list; True when it had a record."""
    return _call(remove_root_file, home, file_name(name), dry_run)


def _call(function, *args):
    try:
        return function(*args)
    except AccountError as error:
        raise ServiceError(str(error)) from error


def record_names(home: str) -> list[str]:
    """The names of every service-*.json in ~/.devbox, damaged or not."""
    return [name[len(PREFIX):-len(SUFFIX)] for name in _call(root_file_names, home)
            if name.startswith(PREFIX) and name.endswith(SUFFIX)]


def load(home: str, name: str) -> dict:
    """One service's record, checked; ServiceError when missing or damaged."""
    where = os.path.join(home, RECORD_DIR, file_name(name))
    try:
        text = read_root_file(home, file_name(name))
        data = json.loads(text) if text is not None else None
    except (AccountError, OSError, ValueError) as error:
        raise ServiceError(f"{where}: {error}") from error
    if data is None:
        raise ServiceError(f"{where} does not exist: the service {name!r} is not registered")
    service = validate_record(data, where)
    if service["name"] != name:
        raise ServiceError(f"{where} names the service {service['name']!r}")
    return service


def load_all(home: str) -> tuple[list[dict], list[str]]:
    """Every registered service (sorted by name) and, apart, why each damaged record was skipped."""
    services, problems = [], []
    try:
        names = record_names(home)
    except (ServiceError, OSError) as error:
        return [], [f"service records not read: {error}"]
    for name in sorted(names):
        try:
            services.append(load(home, name))
        except ServiceError as error:
            problems.append(f"skipped: {error}")
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
    addresses = {address for address, owner, _ in listening_sockets(service["port"]) if owner == uid}
    return {"healthy": bool(addresses), "addresses": sorted(addresses)}


def service_pids(services: list[dict], uid: int) -> list[int]:
    """As the user: the pids of the user's processes that listen on the services' ports.

    As the user, because a process's descriptors are readable by its owner, while root in a
    container lacks the capability (CAP_SYS_PTRACE) to read other users' (Docker drops it).
    """
    inodes = {inode for service in services for _, owner, inode in listening_sockets(service["port"])
              if owner == uid}
    return sorted(socket_owners(inodes)) if inodes else []


def listening_sockets(port: int) -> list[tuple[str, int, str]]:
    """(address, uid, socket inode) of every TCP socket listening on the port, from /proc/net; any user's."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = [line.split() for line in lines.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            host, _, port_hex = row[1].partition(":")
            if row[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.append((_proc_address(host), int(row[7]), row[9]))
    return found


def _proc_address(text: str) -> str:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(text)
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)
