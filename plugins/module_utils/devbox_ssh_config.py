"""An OpenSSH config with one Host per machine, built from how Ansible reaches them. Standard library only.

Each machine reached over SSH becomes `Host devbox-<app>-<name>` (Fly) or `devbox-<name>`, logging
in as the dev user with the same key, certificate and ProxyCommand as the playbook (taken from
ansible_ssh_common_args), with a connection sharing of its own instead of Ansible's: one master
connection per machine (on Fly one `fly proxy`) for every client, a terminal and VS Code alike.
A Fly Machine's SSH server runs commands without a shell and gives a login a bare /bin/sh in /, so
an interactive login (no command given, told apart by ssh_login_wanted.py) gets a RemoteCommand
that is a plain word list: bash as a login shell in the project, which activates the venv.
Machines reached otherwise (the local container, through `docker exec`) have no SSH server and are
listed with a reason.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess

from ansible_collections.devbox.machine.plugins.module_utils.devbox_names import BadName, checked_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import behind_jupyter

# Ansible's connection sharing: its ControlPath is Ansible's own; the file sets the user's (control_lines).
LEFT_OUT = {"controlmaster", "controlpersist", "controlpath"}
# How long a master connection outlives its last client (a VS Code reload, the next `ssh <name>`).
CONTROL_PERSIST = "10m"
# A Unix socket path's limit (104 on macOS, 108 on Linux), less what ssh appends to the path while
# the master starts (a dot and 16 random characters) and the 40 characters of %C.
SOCKET_PATH_MAX = 104 - 17 - 40 - 2
FALLBACK_CONTROL_DIR = "~/.ssh"
# TERM for the login's bash: Fly's server passes none (the environment is PATH alone).
LOGIN_TERM = "xterm-256color"
# A home or project path that can stand in a word list and an ssh config line as it is.
PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
SSH_CONNECTIONS = {"ssh", "ansible.builtin.ssh", "paramiko", "ansible.builtin.paramiko_ssh", "paramiko_ssh"}
FILE_PREFIX = "devbox_"


class SshConfigError(Exception):
    """Input that cannot become a config; the message says which host and why."""


def name(value, what: str) -> str:
    """A name from the inventory as a file name or a config word: checked (devbox_names), never rewritten."""
    try:
        return checked_name(value, what)
    except BadName as error:
        raise SshConfigError(str(error)) from error


def alias(entry: dict) -> str:
    parts = ["devbox", name(entry["fly_app"], "the Fly app") if entry.get("fly_app") else "",
             name(entry["inventory_name"], "the inventory host name")]
    return "-".join(part for part in parts if part)


def line(text: str) -> str:
    """One config line, refused when it holds a control character (a newline would add lines of its own)."""
    if not text.isprintable():
        raise SshConfigError(f"the ssh config line {text!r} holds a control character: fix the inventory value in it")
    return text


def options_from_args(args: str) -> list[tuple[str, str]]:
    """`-o Key=Value` pairs of an ssh command line, in order; other flags are refused (not guessed)."""
    options, words = [], shlex.split(args or "")
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-o" and index + 1 < len(words):
            option, index = words[index + 1], index + 2
        elif word.startswith("-o") and len(word) > 2:
            option, index = word[2:], index + 1
        else:
            raise SshConfigError(f"ssh argument {word!r} has no ssh_config equivalent here: use -o Key=Value")
        key, separator, value = option.partition("=")
        if not separator:
            key, _, value = option.partition(" ")
        options.append((key.strip(), value.strip()))
    return options


def quoted(key: str, value: str) -> str:
    # ProxyCommand takes the rest of the line as is; other values are quoted when they hold spaces.
    if key.lower() == "proxycommand" or not re.search(r"\s", value):
        return value
    return '"' + value.replace('"', '\\"') + '"'


def certificate_facts(path: str) -> dict:
    """Validity and principals of an OpenSSH certificate, from `ssh-keygen -L`."""
    result = subprocess.run(["ssh-keygen", "-L", "-f", path], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip() or f"ssh-keygen -L exit status {result.returncode}"}
    valid = re.search(r"^\s*Valid: (.*)$", result.stdout, re.M)
    block = re.search(r"^\s*Principals:\s*\n((?:\s{9,}\S.*\n?)*)", result.stdout, re.M)
    return {"valid": valid.group(1).strip() if valid else "unknown", "principals": block.group(1).split() if block else []}


def control_lines(directory: str) -> list[str]:
    """One master connection per machine (%C: a hash of the connection), shared by every ssh client; its
    socket beside the config, or in ~/.ssh where that path would be too long for a socket."""
    folder = os.path.abspath(directory).replace("%", "%%") if directory else FALLBACK_CONTROL_DIR
    if len(folder) > SOCKET_PATH_MAX:
        folder = FALLBACK_CONTROL_DIR
    path = f"{folder}/%C"
    return ["    ControlMaster auto", f"    ControlPath {quoted('ControlPath', path)}",
            f"    ControlPersist {CONTROL_PERSIST}"]


def plain_path(value, what: str) -> str:
    if not isinstance(value, str) or not PLAIN_PATH.match(value) or ".." in value.split("/"):
        raise SshConfigError(f"{what} {value!r} is not a plain path (letters, digits, '.', '_', '-', '/')")
    return value


def login_block(host: str, entry: dict, login_check: list[str]) -> list[str]:
    """For a Fly Machine: an interactive login (no command given) runs bash as a login shell in the project,
    as the dev user, with the variables a login would have; every word plain, so no shell is needed."""
    user, home = entry["user"], plain_path(entry["home"], "the home (dev_user_home)")
    if not home.startswith("/"):
        raise SshConfigError(f"the home (dev_user_home) {home!r} is not an absolute path")
    project = os.path.join(home, plain_path(entry.get("project_dir"), "the project (python_env_project_dir)"))
    check = " ".join(shlex.quote(word) for word in login_check).replace("%", "%%")
    if '"' in check:
        raise SshConfigError(f"the login check {login_check!r} holds a double quote")
    command = ["/usr/bin/env", "-C", project, f"HOME={home}", f"USER={user}", f"LOGNAME={user}", "SHELL=/bin/bash",
               f"TERM={LOGIN_TERM}", "/bin/bash", "-l"]
    return [f"# {host}: an interactive login (`ssh {host}` alone) gets bash in the project with the venv; Fly's",
            "# server runs no shell of its own. Commands (`ssh <name> cmd`, VS Code) are left as they are.",
            f'Match originalhost {host} exec "{check}"',
            "    RequestTTY yes",
            f"    RemoteCommand {' '.join(command)}"]


def host_block(entry: dict, directory: str = "",
               login_check: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(config lines, notes for the user) for one machine reached over SSH."""
    host, notes = alias(entry), []
    lines = [f"# {entry['inventory_name']}" + (f" (Fly app {entry['fly_app']})" if entry.get("fly_app") else ""),
             f"Host {host}",
             f"    HostName {name(entry['address'], 'the address (ansible_host)')}"]
    if entry.get("port"):
        lines.append(f"    Port {int(entry['port'])}")
    lines.append(f"    User {name(entry['user'], 'the dev user (dev_user_name)')}")
    if entry.get("key_file"):
        lines.append(f"    IdentityFile {quoted('IdentityFile', os.path.abspath(entry['key_file']))}")
    for key, value in options_from_args(" ".join(filter(None, [entry.get("common_args"), entry.get("extra_args")]))):
        if key.lower() in LEFT_OUT:
            continue
        lines.append(f"    {key} {quoted(key, value)}")
        if key.lower() == "certificatefile":
            facts = certificate_facts(value)
            if "error" in facts:
                notes.append(f"{host}: the certificate {value} is unreadable: {facts['error']}")
            elif entry["user"] not in facts["principals"]:
                notes.append(f"{host}: the certificate {value} names {', '.join(facts['principals']) or 'nobody'}, "
                             f"not {entry['user']}: logging in as {entry['user']} will be refused")
            else:
                notes.append(f"{host}: certificate valid {facts['valid']}; rerun this to renew it")
    lines += control_lines(directory)
    # A service behind Jupyter's login needs no forward of its own.
    for service in [service for service in entry.get("services", []) if not behind_jupyter(service)]:
        forward = forward_line(host, service, bool(entry.get("fly_app")))
        if forward:
            lines.append(f"    LocalForward {forward}")
        else:
            notes.append(flycast_note(host, service, entry["fly_app"]))
    if entry.get("fly_app") and login_check:
        lines += [""] + login_block(host, entry, login_check)
    if not entry.get("fly_app"):
        notes.append(f"{host}: logs in as {entry['user']} with your own SSH key (in ~{entry['user']}/.ssh/authorized_keys)")
    return [line(text) for text in lines] + [""], notes


# A service's listening address as the machine's sshd reaches it: a literal address or a host name.
FORWARD_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")


def forward_line(host: str, service: dict, on_fly: bool) -> str | None:
    """`127.0.0.1:<port> <address>:<port>` for one service: its port on this computer's loopback only, to
    where it listens on the machine ("auto": its loopback; None on a Fly Machine, where "auto" is the Machine's
    private IPv4, which only Fly Proxy reaches: Flycast, flycast_note)."""
    port, target = service.get("port"), service.get("ip")
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise SshConfigError(f"{host}: a service's port {port!r} is not a port from 1024 to 65535")
    if target == "auto":
        if on_fly:
            return None
        target = "127.0.0.1"
    if not isinstance(target, str) or not FORWARD_TARGET.match(target):
        raise SshConfigError(f"{host}: a service's address {target!r} is not an address or a host name")
    target = f"[{target}]" if ":" in target else target
    return f"127.0.0.1:{port} {target}:{port}"


def flycast_note(host: str, service: dict, app: str) -> str:
    """How to reach a service of a Fly Machine that listens where Fly Proxy reaches it: the app's Flycast address."""
    return (f"{host}: {service['name']} has no forward (it listens on the Machine's private IPv4, for Fly Proxy):"
            f" `fly proxy {service['port']} {app}.flycast -a {app}` reaches it and starts a stopped Machine"
            f" (fly.toml's [[services]] on port {service['port']})")


def docker_hint(entry: dict) -> str:
    if "docker" not in entry["connection"] or not entry.get("address"):
        return ""
    return (f"; a shell: docker exec -it -u {entry['user']} -w {entry['home']}/project {entry['address']} bash -i; "
            "VS Code: Dev Containers, 'Attach to Running Container'")


def render(entries: list[dict], directory: str = "",
           login_check: list[str] | None = None) -> tuple[str, list[str], list[str]]:
    """(file text, Host names, notes); directory holds the file (and the master connections' sockets),
    login_check is the command (a word list) that tells an interactive login from a command."""
    blocks, names, notes = [], [], []
    for entry in sorted(entries, key=lambda item: item["inventory_name"]):
        if entry.get("connection", "ssh") not in SSH_CONNECTIONS:
            notes.append(f"{entry['inventory_name']}: reached with {entry['connection']}, not SSH (no SSH server "
                         "there): no Host entry" + docker_hint(entry))
            continue
        lines, host_notes = host_block(entry, directory, login_check)
        blocks += lines
        names.append(alias(entry))
        notes += host_notes
    header = ["# Written by devbox (playbooks/ssh_config.yml): one Host per machine; rewritten on every run.", ""]
    return "\n".join(header + blocks), names, notes


def file_name(entries: list[dict]) -> str:
    apps = {entry.get("fly_app") for entry in entries}
    if len(apps) == 1 and None not in apps and "" not in apps:
        stem = f"fly-{name(apps.pop(), 'the Fly app')}"
    else:
        inventories = sorted({os.path.splitext(os.path.basename(entry.get("inventory_file") or "hosts"))[0]
                              for entry in entries})
        stem = "-".join(name(inventory, "the inventory file's name") for inventory in inventories)
    return f"{FILE_PREFIX}{stem}.conf"


def write(directory: str, name: str, text: str) -> bool:
    """Write the file (0600, in a 0700 folder) unless it holds the same text; True when written."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    path = os.path.join(directory, name)
    try:
        with open(path) as current:
            if current.read() == text and os.stat(path).st_mode & 0o777 == 0o600:
                return False
    except OSError:
        pass
    temporary = path + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.replace(temporary, path)
    return True
