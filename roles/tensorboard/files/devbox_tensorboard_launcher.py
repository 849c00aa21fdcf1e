#!/usr/bin/env python3
"""Run TensorBoard without systemd: start | stop | restart | status.

Runs as the non-root user, like the Jupyter launcher. The server is detached from the calling
session (new session, stdio redirected to a log on the volume), tracked by a pidfile (pid and
start time) and probed on /data/environment. Settings come from
~/.devbox-tensorboard/settings.json (ip, port, logdir, venv), written by the devbox_tensorboard
module; the ip may be a host name such as fly-local-6pn, resolved here at every start with the
listening-address rule of plugins/module_utils/devbox_address.py: never all interfaces, never a
public address. That rule and what the launchers share (plugins/module_utils/devbox_launcher.py)
are imported from the home's root-owned ~/.devbox/lib/, where the module writes those very files.
Prints one JSON object; exit status 0 when the server ends up as asked (status: 3 when down).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request

HOME = os.path.expanduser("~")
sys.path.insert(0, os.path.join(HOME, ".devbox", "lib"))
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (  # noqa: E402
    LauncherError, read_pid, resolve, run, spawn, stop_pid, url_for, wait_until_up, write_pid)

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


def load_settings() -> dict:
    try:
        with open(SETTINGS_FILE) as settings_file:
            settings = json.load(settings_file)
        return {"ip": settings["ip"], "port": int(settings["port"]), "logdir": settings["logdir"],
                "venv": settings["venv"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LauncherError(f"cannot read {SETTINGS_FILE}: {error}") from error


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
    pid = read_pid(PID_FILE)
    return {"url": url_for(address, settings["port"]), "log": LOG_FILE, "logdir": settings["logdir"], "pid": pid,
            "running": pid is not None,
            "healthy": pid is not None and serving(address, settings["port"], settings["logdir"])}


def start() -> dict:
    settings = load_settings()
    address, port, logdir = resolve(settings["ip"]), settings["port"], settings["logdir"]
    pid = read_pid(PID_FILE)
    if pid is not None and serving(address, port, logdir):
        return dict(status(settings), action="already running")
    if pid is not None:
        stop_pid(pid, STOP_TIMEOUT_S)  # alive but not answering: start afresh
    if port_taken(address, port):
        raise LauncherError(f"{url_for(address, port)} is held by another process: stop it or choose another "
                            "tensorboard_port")
    tensorboard = os.path.join(settings["venv"], "bin", "tensorboard")
    if not os.access(tensorboard, os.X_OK):
        raise LauncherError(f"{tensorboard} is missing: run the playbook with tensorboard_enabled: true")
    os.makedirs(logdir, exist_ok=True)
    process = spawn([tensorboard, "--logdir", logdir, "--host", address, "--port", str(port)], logdir, LOG_FILE,
                    "devbox-tensorboard")
    write_pid(PID_FILE, process.pid)
    wait_until_up(process, lambda: serving(address, port, logdir), START_TIMEOUT_S, LOG_FILE, "TensorBoard",
                  url_for(address, port))
    return dict(status(settings), action="started")


def stop() -> dict:
    pid = read_pid(PID_FILE)
    if pid is not None:
        stop_pid(pid, STOP_TIMEOUT_S)
    try:
        os.remove(PID_FILE)
    except FileNotFoundError:
        pass
    return {"action": "stopped" if pid else "not running", "pid": pid}


def main(argv: list[str] | None = None) -> int:
    return run(argv, __doc__, STATE_DIR, LOCK_FILE, {"start": start, "stop": stop, "status": status})


if __name__ == "__main__":
    sys.exit(main())
