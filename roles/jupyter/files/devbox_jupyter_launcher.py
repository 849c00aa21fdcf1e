#!/usr/bin/env python3
"""Run JupyterLab without systemd: start | stop | restart | status.

Runs as the non-root user. The server is detached from the calling session (new session,
stdio redirected to a log on the volume), tracked by a pidfile (pid and start time) and probed
on /api. Settings come from ~/.jupyter/jupyter_server_config.json (the one config file):
ServerApp.ip may be a host name such as fly-local-6pn, resolved here at every start because
the 6PN address can change across reboots. The token lives in ~/.jupyter/devbox_token (0600).
Where the venv and the project are (the roles' python_env_venv_dir and python_env_project_dir)
comes from ~/.jupyter/devbox-jupyter.json, written by the devbox_jupyter module.

The server is ours only when a process of this user listens on the port: the one in the
pidfile, or one Jupyter itself recorded (its runtime file jpserver-<pid>.json). A port held by
anything else is an error naming its owner, and no token is ever sent to it. The token file is
checked at every run: junk is replaced by a fresh token, and a server that does not accept the
file's token is restarted. The listening-address rule (plugins/module_utils/devbox_address.py) and
what the launchers share (plugins/module_utils/devbox_launcher.py) are imported from the home's
root-owned ~/.devbox/lib/, where the module writes those very files. Prints one JSON object; exit
status 0 when the server ends up as asked.
"""
from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import secrets
import sys
import urllib.error
import urllib.request

HOME = os.path.expanduser("~")
sys.path.insert(0, os.path.join(HOME, ".devbox", "lib"))
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (  # noqa: E402
    LauncherError, listening_sockets, read_pid, resolve, run, spawn, stop_pid, url_for, wait_until_up, write_pid)

CONFIG_DIR = os.path.join(HOME, ".jupyter")
CONFIG_FILE = os.path.join(CONFIG_DIR, "jupyter_server_config.json")
TOKEN_FILE = os.path.join(CONFIG_DIR, "devbox_token")
PID_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.pid")
LOG_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.log")
LOCK_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.lock")
RUNTIME_DIR = os.path.join(HOME, ".local", "share", "jupyter", "runtime")
# Jupyter strips what is not URL-safe, and the token travels in the URL: the rule of
# the input check (plugins/action/devbox_check_inputs.py).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{32,}")
# {"venv": ..., "project": ...}, absolute paths: this file runs alone and knows no defaults.
DIRS_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.json")
START_TIMEOUT_S = 90
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STOP_TIMEOUT_S = 20


def load_settings() -> dict:
    try:
        with open(CONFIG_FILE) as config:
            server = json.load(config).get("ServerApp", {})
    except (OSError, ValueError) as error:
        raise LauncherError(f"cannot read {CONFIG_FILE}: {error}") from error
    return {"ip": server.get("ip", "127.0.0.1"), "port": int(server.get("port", 8888))}


def load_dirs() -> tuple[str, str]:
    """The venv and the project directory the module wrote for this launcher."""
    try:
        with open(DIRS_FILE) as dirs_file:
            dirs = json.load(dirs_file)
        venv, project = dirs["venv"], dirs["project"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LauncherError(f"cannot read {DIRS_FILE}: {error}; run the playbook to write it") from error
    if not all(isinstance(path, str) and os.path.isabs(path) for path in (venv, project)):
        raise LauncherError(f"{DIRS_FILE}: venv and project must be absolute paths, not {venv!r} and {project!r}")
    return venv, project


def read_token() -> str | None:
    """The token file's content when it is a usable token; None when missing, empty or junk."""
    try:
        with open(TOKEN_FILE) as existing:
            token = existing.read()
    except (OSError, UnicodeDecodeError):
        return None
    return token if TOKEN_PATTERN.fullmatch(token) else None


def ensure_token() -> bool:
    """A usable token in the token file; True when it was (re)written now."""
    if read_token() is not None:
        return False
    os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
    temporary = TOKEN_FILE + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(24))  # no newline: Jupyter reads the file verbatim
    os.replace(temporary, TOKEN_FILE)
    return True


def listeners(address: str, port: int) -> list[dict]:
    """Sockets listening where the server would: on `address` or a wildcard, on `port`; any user's."""
    wanted = ipaddress.ip_address(address)
    return [{"address": bound, "uid": uid, "inode": inode} for bound, uid, inode in listening_sockets(port)
            if ipaddress.ip_address(bound) == wanted or ipaddress.ip_address(bound).is_unspecified]


def socket_owner(inode: str) -> int | None:
    """The pid of this user's process that holds the socket; None when none of ours does."""
    link = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            descriptors = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == link for fd in descriptors):
                return int(entry)
        except OSError:
            continue  # exited meanwhile
    return None


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    return f"pid {pid} ({command[:120]})"


def user_name(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def recorded_by_jupyter(pid: int, port: int) -> bool:
    """Jupyter's own runtime file says this process is a Jupyter server on this port."""
    try:
        with open(os.path.join(RUNTIME_DIR, f"jpserver-{pid}.json")) as runtime:
            return json.load(runtime).get("port") == port
    except (OSError, ValueError, AttributeError):
        return False


def our_server(address: str, port: int) -> int | None:
    """The pid of our Jupyter listening on address:port; None when nothing listens there.

    LauncherError when the port is held by anything else: another user's process (named by its
    user: its pid is not visible to us), or a process of ours that is not our Jupyter.
    """
    held = listeners(address, port)
    if not held:
        return None
    where = url_for(address, port)
    for listener in held:
        if listener["uid"] != os.getuid():
            raise LauncherError(f"{where} is held by another process of {user_name(listener['uid'])} listening on "
                                f"{listener['address']}:{port}: not Jupyter's; stop it or choose another jupyter_port")
    owners = {socket_owner(listener["inode"]) for listener in held}
    pid = read_pid(PID_FILE)
    if owners == {pid} and pid is not None:
        return pid
    for owner in owners:
        if owner is None or not recorded_by_jupyter(owner, port):
            what = describe(owner) if owner is not None else "a process"
            raise LauncherError(f"{where} is held by {what} of {user_name(os.getuid())}, not by the Jupyter "
                                "server this launcher runs: stop it or choose another jupyter_port")
    return owners.pop() if len(owners) == 1 else None


def healthy(address: str, port: int) -> bool:
    """/api answers with Jupyter's version JSON (no token needed for this one endpoint)."""
    try:
        with NO_PROXY.open(url_for(address, port) + "api", timeout=3) as response:
            return response.status == 200 and "version" in json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def accepts_token(address: str, port: int, token: str) -> bool:
    """The server answers an authenticated API call with this token (only ever asked of our own server)."""
    request = urllib.request.Request(url_for(address, port) + "api/status", headers={"Authorization": f"token {token}"})
    try:
        with NO_PROXY.open(request, timeout=3) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def status(settings: dict | None = None, address: str | None = None) -> dict:
    settings = settings or load_settings()
    address = address or resolve(settings["ip"])
    outcome = {"url": url_for(address, settings["port"]), "log": LOG_FILE}
    try:
        pid = our_server(address, settings["port"])
    except LauncherError as error:
        pid, outcome["error"] = None, str(error)
    return dict(outcome, pid=pid, running=pid is not None,
                healthy=pid is not None and healthy(address, settings["port"]))


def start() -> dict:
    settings = load_settings()
    address, port = resolve(settings["ip"]), settings["port"]
    ensure_token()
    pid = our_server(address, port)  # fails, before anything else, when the port is someone else's
    if pid is not None:
        if healthy(address, port) and accepts_token(address, port, read_token()):
            if read_pid(PID_FILE) != pid:
                write_pid(PID_FILE, pid)  # adopted from Jupyter's runtime file: known from now on
            return dict(status(settings, address), action="already running")
        stop_pid(pid, STOP_TIMEOUT_S)  # not answering, or serving another token than the file's: start afresh
    recorded = read_pid(PID_FILE)
    if recorded is not None and recorded != pid:
        stop_pid(recorded, STOP_TIMEOUT_S)  # alive but not listening: start afresh
    venv, project = load_dirs()
    jupyter = os.path.join(venv, "bin", "jupyter")
    if not os.access(jupyter, os.X_OK):
        raise LauncherError(f"{jupyter} is missing: run the playbook to install JupyterLab")
    os.makedirs(project, exist_ok=True)
    env = dict(os.environ, JUPYTER_TOKEN_FILE=TOKEN_FILE, JUPYTER_RUNTIME_DIR=RUNTIME_DIR,
               PATH=f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}")
    env.pop("JUPYTER_TOKEN", None)
    process = spawn([jupyter, "lab", f"--ServerApp.ip={address}", f"--config={CONFIG_FILE}"], project, LOG_FILE,
                    "devbox-jupyter", env)
    write_pid(PID_FILE, process.pid)
    # Up means: the process started here is the one listening, and it answers.
    wait_until_up(process, lambda: our_server(address, port) == process.pid and healthy(address, port),
                  START_TIMEOUT_S, LOG_FILE, "Jupyter", url_for(address, port) + "api")
    return dict(status(settings, address), action="started")


def stop() -> dict:
    """Stop the server of the pidfile, and whatever Jupyter of ours listens on the configured port."""
    pids = [pid for pid in [read_pid(PID_FILE)] if pid is not None]
    try:
        settings = load_settings()
        on_port = our_server(resolve(settings["ip"]), settings["port"])
        if on_port is not None and on_port not in pids:
            pids.append(on_port)
    except LauncherError:
        pass  # no settings, or the port is someone else's: nothing of ours to stop there
    for pid in pids:
        stop_pid(pid, STOP_TIMEOUT_S)
    try:
        os.remove(PID_FILE)
    except FileNotFoundError:
        pass
    return {"action": "stopped" if pids else "not running", "pid": pids[0] if pids else None}


def main(argv: list[str] | None = None) -> int:
    return run(argv, __doc__, CONFIG_DIR, LOCK_FILE, {"start": start, "stop": stop, "status": status})


if __name__ == "__main__":
    sys.exit(main())
