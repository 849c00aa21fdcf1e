"""What the service launchers (Jupyter's, TensorBoard's) share: the command line run under one lock,
the pidfile, the log, the /proc/net scan for listening sockets.

The launchers run alone on the volume as the dev user: their module writes this very file, with
devbox_address.py, into the home's root-owned ~/.devbox/ (root's own files, 0644), and they import
it from there. devbox_service (the modules and PID 1's boot step) uses the same scan for its health
probe. Standard library and devbox_address only (the image has both beside devbox_service).
"""
from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import (
    listen_address_problem, literal_address)

COMMANDS = ("start", "stop", "restart", "status")


class LauncherError(Exception):
    """The server cannot be brought to the state asked for; the message says why."""


def run(argv: list[str] | None, description: str, state_dir: str, lock_file: str, actions: dict) -> int:
    """The launcher's command line: one of COMMANDS, run under the lock, printed as one JSON object.

    actions maps start, stop and status to functions returning the outcome; restart is stop then start.
    Exit status 0 when the server ends up as asked, 1 on a LauncherError, 3 when status finds it down.
    """
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    command = parser.parse_args(argv).command
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    try:
        with open(lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one launcher at a time (boot step vs playbook)
            if command == "restart":
                actions["stop"]()
                command = "start"
            outcome = actions[command]()
    except LauncherError as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(outcome))
    return 0 if command != "status" or outcome["healthy"] else 3


def resolve(name) -> str:
    """The one address to listen on for the configured name, under devbox_address's rule: never all
    interfaces, never a public address. Names are resolved at every start: the 6PN address can change."""
    problem = listen_address_problem(name)
    if problem:
        raise LauncherError(f"refusing to listen on {name!r}: {problem}")
    literal = literal_address(name)
    if literal is not None:
        return str(literal)
    return socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0].split("%")[0]


def url_for(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


def spawn(argv: list[str], cwd: str, log_file: str, label: str, env: dict | None = None) -> subprocess.Popen:
    """Start the server detached: a new session and no inherited stdio, so it outlives the SSH
    session that started it; its output goes to the log, after a line naming this start."""
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"--- {label} start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=devnull, stdout=log, stderr=log,
                                start_new_session=True)


def wait_until_up(process: subprocess.Popen, up, timeout: float, log_file: str, name: str, where: str) -> None:
    """Until up() says the server answers; LauncherError with the log's last lines when it exits first
    or does not answer in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LauncherError(f"{name} exited with status {process.returncode}; "
                                f"last lines of {log_file}:\n{log_tail(log_file)}")
        if up():
            return
        time.sleep(0.25)
    raise LauncherError(f"{name} did not answer on {where} within {timeout} s; "
                        f"last lines of {log_file}:\n{log_tail(log_file)}")


def log_tail(log_file: str, lines: int = 20) -> str:
    try:
        with open(log_file, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat); None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def write_pid(pid_file: str, pid: int) -> None:
    # The start time tells our server from a later process that was given the same pid.
    with open(pid_file + ".tmp", "w") as out:
        out.write(f"{pid} {process_start(pid) or ''}\n")
    os.replace(pid_file + ".tmp", pid_file)


def read_pid(pid_file: str) -> int | None:
    """The server's pid, or None when the pidfile is missing or stale (exited, or the pid reused)."""
    try:
        with open(pid_file) as recorded:
            pid_text, _, started = recorded.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if process_start(pid) == started else None


def stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM to the server (its whole process group when it leads one), SIGKILL when it lingers."""
    started = process_start(pid)
    if started is None:
        return
    try:
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGTERM) if group == pid else os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_start(pid) == started:
        time.sleep(0.2)
    if process_start(pid) == started:
        try:
            os.killpg(group, signal.SIGKILL) if group == pid else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
