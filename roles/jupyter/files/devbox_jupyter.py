#!/usr/bin/env python3
"""Run JupyterLab without systemd: start | stop | restart | status.

Runs as the non-root user. The server is detached from the calling session (new session,
stdio redirected to a log on the volume), tracked by a pidfile and probed on /api. Settings
come from ~/.jupyter/jupyter_server_config.json (the one config file): ServerApp.ip may be a
host name such as fly-local-6pn, resolved here at every start because the 6PN address can
change across reboots. The token lives in ~/.jupyter/devbox_token (0600), created once.
Prints one JSON object; exit status 0 when the server ends up as asked.
"""
from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HOME = os.path.expanduser("~")
CONFIG_DIR = os.path.join(HOME, ".jupyter")
CONFIG_FILE = os.path.join(CONFIG_DIR, "jupyter_server_config.json")
TOKEN_FILE = os.path.join(CONFIG_DIR, "devbox_token")
PID_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.pid")
LOG_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.log")
LOCK_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.lock")
VENV = os.path.join(HOME, "project-venv")
PROJECT = os.path.join(HOME, "project")
START_TIMEOUT_S = 90
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STOP_TIMEOUT_S = 20


class LauncherError(Exception):
    pass


def load_settings() -> dict:
    try:
        with open(CONFIG_FILE) as config:
            server = json.load(config).get("ServerApp", {})
    except (OSError, ValueError) as error:
        raise LauncherError(f"cannot read {CONFIG_FILE}: {error}") from error
    return {"ip": server.get("ip", "127.0.0.1"), "port": int(server.get("port", 8888))}


def resolve(name: str) -> str:
    """The address to listen on: never a wildcard (all interfaces), never a public address."""
    try:
        address = str(ipaddress.ip_address(name))
    except ValueError:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise LauncherError(f"cannot resolve ServerApp.ip {name!r}: {error}") from error
        address = infos[0][4][0]
    parsed = ipaddress.ip_address(address)
    if not name or parsed.is_unspecified:
        raise LauncherError(f"refusing to listen on {name!r}: it means all interfaces")
    if parsed.is_global:
        raise LauncherError(f"refusing to listen on {name!r} ({address}): a public address; use a private "
                            "one and reach it through fly proxy or an SSH tunnel")
    return address


def url_for(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


def ensure_token() -> bool:
    """Create the token once; True when it was created now."""
    if os.path.exists(TOKEN_FILE):
        with open(TOKEN_FILE) as existing:
            if existing.read().strip():
                return False
    os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
    temporary = TOKEN_FILE + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(24))  # no newline: Jupyter reads the file verbatim
    os.replace(temporary, TOKEN_FILE)
    return True


def process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def write_pid(pid: int) -> None:
    # The start time tells our server from a later process that was given the same pid.
    state = process_state(pid)
    with open(PID_FILE + ".tmp", "w") as pidfile:
        pidfile.write(f"{pid} {state[1] if state else ''}\n")
    os.replace(PID_FILE + ".tmp", PID_FILE)


def read_pid() -> int | None:
    """The server's pid, or None when the pidfile is missing or stale."""
    try:
        with open(PID_FILE) as pidfile:
            pid_text, _, started = pidfile.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    state = process_state(pid)
    if state is None or state[0] == "Z" or state[1] != started:
        return None  # exited, exited but not yet reaped, or the pid now belongs to another process
    return pid


def healthy(address: str, port: int) -> bool:
    """/api answers with Jupyter's version JSON (no token needed for this one endpoint)."""
    try:
        with NO_PROXY.open(url_for(address, port) + "api", timeout=3) as response:
            return response.status == 200 and "version" in json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def status(settings: dict | None = None, address: str | None = None) -> dict:
    settings = settings or load_settings()
    address = address or resolve(settings["ip"])
    pid = read_pid()
    return {"pid": pid, "running": pid is not None,
            "healthy": pid is not None and healthy(address, settings["port"]),
            "url": url_for(address, settings["port"]), "log": LOG_FILE}


def log_tail(lines: int = 20) -> str:
    try:
        with open(LOG_FILE, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def start() -> dict:
    settings = load_settings()
    address = resolve(settings["ip"])
    current = status(settings, address)
    if current["healthy"]:
        return dict(current, action="already running")
    if current["running"]:
        stop_pid(current["pid"])  # alive but not answering: start afresh
    ensure_token()
    jupyter = os.path.join(VENV, "bin", "jupyter")
    if not os.access(jupyter, os.X_OK):
        raise LauncherError(f"{jupyter} is missing: run the playbook to install JupyterLab")
    os.makedirs(PROJECT, exist_ok=True)
    env = dict(os.environ, JUPYTER_TOKEN_FILE=TOKEN_FILE, PATH=f"{VENV}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}")
    env.pop("JUPYTER_TOKEN", None)
    with open(LOG_FILE, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"--- devbox-jupyter start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        # A new session and no inherited stdio: the server outlives the SSH session that started it.
        process = subprocess.Popen(
            [jupyter, "lab", f"--ServerApp.ip={address}", f"--config={CONFIG_FILE}"],
            cwd=PROJECT, env=env, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    write_pid(process.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LauncherError(f"Jupyter exited with status {process.returncode}; "
                                f"last lines of {LOG_FILE}:\n{log_tail()}")
        if healthy(address, settings["port"]):
            return dict(status(settings, address), action="started")
        time.sleep(0.25)
    raise LauncherError(f"Jupyter did not answer on {url_for(address, settings['port'])}api within "
                        f"{START_TIMEOUT_S} s; last lines of {LOG_FILE}:\n{log_tail()}")


def stop_pid(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and read_pid() == pid:
        time.sleep(0.2)
    if read_pid() == pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop() -> dict:
    pid = read_pid()
    if pid is not None:
        stop_pid(pid)
    try:
        os.remove(PID_FILE)
    except FileNotFoundError:
        pass
    return {"action": "stopped" if pid else "not running", "pid": pid}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "restart", "status"])
    command = parser.parse_args(argv).command
    os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
    try:
        with open(LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one launcher at a time (boot step vs playbook)
            if command == "restart":
                stop()
                command = "start"
            outcome = {"start": start, "stop": stop, "status": status}[command]()
    except LauncherError as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(outcome))
    return 0 if command != "status" or outcome["healthy"] else 3


if __name__ == "__main__":
    sys.exit(main())
