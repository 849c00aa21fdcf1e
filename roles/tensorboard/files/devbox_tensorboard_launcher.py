#!/usr/bin/env python3
"""Run TensorBoard without systemd: start | stop | restart | status.

Runs as the non-root user, like the Jupyter launcher. The server is detached from the calling
session (new session, stdio redirected to a log on the volume), tracked by a pidfile (pid and
start time) and probed on /data/environment. Settings come from
~/.devbox-tensorboard/settings.json (ip, port, logdir, venv), written by the devbox_tensorboard
module; the ip may be a host name such as fly-local-6pn, resolved here at every start with the
listening-address rule of plugins/module_utils/devbox_address.py (the module puts that very
file beside this one, in ~/.local/lib/devbox/): never all interfaces, never a public address.
Prints one JSON object; exit status 0 when the server ends up as asked (status: 3 when down).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HOME = os.path.expanduser("~")
sys.path.insert(0, os.path.join(HOME, ".local", "lib", "devbox"))
from devbox_address import listen_address_problem  # noqa: E402

STATE_DIR = os.path.join(HOME, ".devbox-tensorboard")
SETTINGS_FILE = os.path.join(STATE_DIR, "settings.json")
PID_FILE = os.path.join(STATE_DIR, "tensorboard.pid")
LOG_FILE = os.path.join(STATE_DIR, "tensorboard.log")
LOCK_FILE = os.path.join(STATE_DIR, "launcher.lock")
START_TIMEOUT_S = 90
# TensorBoard has nothing to save: a short grace, well inside PID 1's stop budget.
STOP_TIMEOUT_S = 10
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LauncherError(Exception):
    pass


def load_settings() -> dict:
    try:
        with open(SETTINGS_FILE) as settings_file:
            settings = json.load(settings_file)
        return {"ip": settings["ip"], "port": int(settings["port"]), "logdir": settings["logdir"],
                "venv": settings["venv"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LauncherError(f"cannot read {SETTINGS_FILE}: {error}") from error


def resolve(name: str) -> str:
    """The one address to listen on, checked with the same rule as Jupyter's."""
    problem = listen_address_problem(name)
    if problem:
        raise LauncherError(f"refusing to listen on {name!r}: {problem}")
    return socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0].split("%")[0]


def url_for(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat); None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def read_pid() -> int | None:
    """The server's pid, or None when the pidfile is missing or stale (exited, or the pid reused)."""
    try:
        with open(PID_FILE) as pidfile:
            pid_text, _, started = pidfile.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if process_start(pid) == started else None


def serving(address: str, port: int, logdir: str) -> bool:
    """TensorBoard answers there, and for our log directory."""
    try:
        with NO_PROXY.open(url_for(address, port) + "data/environment", timeout=3) as response:
            return response.status == 200 and json.load(response).get("data_location") == logdir
    except (OSError, ValueError, urllib.error.URLError):
        return False


def port_taken(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.settimeout(2)
        return probe.connect_ex((address, port)) == 0


def status(settings: dict | None = None) -> dict:
    settings = settings or load_settings()
    address = resolve(settings["ip"])
    pid = read_pid()
    return {"url": url_for(address, settings["port"]), "log": LOG_FILE, "logdir": settings["logdir"], "pid": pid,
            "running": pid is not None,
            "healthy": pid is not None and serving(address, settings["port"], settings["logdir"])}


def log_tail(lines: int = 20) -> str:
    try:
        with open(LOG_FILE, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def start() -> dict:
    settings = load_settings()
    address, port, logdir = resolve(settings["ip"]), settings["port"], settings["logdir"]
    pid = read_pid()
    if pid is not None and serving(address, port, logdir):
        return dict(status(settings), action="already running")
    if pid is not None:
        stop_pid(pid)  # alive but not answering: start afresh
    if port_taken(address, port):
        raise LauncherError(f"{url_for(address, port)} is held by another process: stop it or choose another "
                            "tensorboard_port")
    tensorboard = os.path.join(settings["venv"], "bin", "tensorboard")
    if not os.access(tensorboard, os.X_OK):
        raise LauncherError(f"{tensorboard} is missing: run the playbook with tensorboard_enabled: true")
    os.makedirs(logdir, exist_ok=True)
    with open(LOG_FILE, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"--- devbox-tensorboard start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        # A new session and no inherited stdio: the server outlives the SSH session that started it.
        process = subprocess.Popen([tensorboard, "--logdir", logdir, "--host", address, "--port", str(port)],
                                   cwd=logdir, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    with open(PID_FILE + ".tmp", "w") as pidfile:
        pidfile.write(f"{process.pid} {process_start(process.pid) or ''}\n")
    os.replace(PID_FILE + ".tmp", PID_FILE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LauncherError(f"TensorBoard exited with status {process.returncode}; "
                                f"last lines of {LOG_FILE}:\n{log_tail()}")
        if serving(address, port, logdir):
            return dict(status(settings), action="started")
        time.sleep(0.25)
    raise LauncherError(f"TensorBoard did not answer on {url_for(address, port)} within {START_TIMEOUT_S} s; "
                        f"last lines of {LOG_FILE}:\n{log_tail()}")


def stop_pid(pid: int) -> None:
    """SIGTERM to the server's process group, SIGKILL when it lingers."""
    started = process_start(pid)
    if started is None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # the server leads its own session and group
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and process_start(pid) == started:
        time.sleep(0.2)
    if process_start(pid) == started:
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
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
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
