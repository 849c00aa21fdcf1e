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
file's token is restarted. Prints one JSON object; exit status 0 when the server ends up as asked.
"""
from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import pwd
import re
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
RUNTIME_DIR = os.path.join(HOME, ".local", "share", "jupyter", "runtime")
# Jupyter strips what is not URL-safe, and the token travels in the URL: the rule of
# plugins/test/devbox_jupyter_token.py.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{32,}")
# {"venv": ..., "project": ...}, absolute paths: this file runs alone and knows no defaults.
DIRS_FILE = os.path.join(CONFIG_DIR, "devbox-jupyter.json")
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


# The listening-address rule of plugins/module_utils/devbox_address.py, copied because this file
# runs alone on the volume (tests/test_launcher.py checks that both agree).
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def literal_address(text: str):
    """The address a literal stands for in any spelling inet_aton accepts ("0", "127.1"); None for a name."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def address_problem(address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address in _THIS_NETWORK:
        return f"{address} means all interfaces"
    if address.is_loopback:
        return None
    if address.is_multicast or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255"):
        return f"{address} is not an address of one interface"
    if address.is_private or address in _SHARED:
        return None
    return (f"{address} is a public address; use a private one and reach it through fly proxy "
            "or an SSH tunnel")


def resolve(name) -> str:
    """The one address to listen on: never a wildcard (all interfaces), never a public address."""
    if not isinstance(name, str) or not name or name == "*":
        raise LauncherError(f"refusing to listen on {name!r}: it means all interfaces")
    address = literal_address(name) if not any(c.isspace() for c in name) else None
    if address is None:
        labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
        if len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
            raise LauncherError(f"refusing to listen on {name!r}: neither an IP address nor a host name")
        try:
            found = [info[4][0] for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]
        except socket.gaierror as error:
            raise LauncherError(f"cannot resolve ServerApp.ip {name!r}: {error}") from error
    else:
        found = [str(address)]
    for candidate in found:
        problem = address_problem(ipaddress.ip_address(candidate.split("%")[0]))
        if problem:
            raise LauncherError(f"refusing to listen on {name!r} ({candidate}): {problem}")
    return found[0]


def url_for(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


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


def process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def alive(pid: int, started: str) -> bool:
    """This very process (same start time) still runs: a reused pid is another process."""
    state = process_state(pid)
    return state is not None and state[0] != "Z" and state[1] == started


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
    return pid if alive(pid, started) else None  # else: exited, not yet reaped, or the pid was reused


def _proc_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def listeners(address: str, port: int) -> list[dict]:
    """Sockets listening where the server would: on `address` or a wildcard, on `port`; any user's."""
    wanted, found = ipaddress.ip_address(address), []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = [line.split() for line in lines.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            local, state, uid, inode = row[1], row[3], int(row[7]), row[9]
            host, _, port_hex = local.partition(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            bound = _proc_address(host)
            if bound == wanted or bound.is_unspecified:
                found.append({"address": str(bound), "uid": uid, "inode": inode})
    return found


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
    pid = read_pid()
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


def log_tail(lines: int = 20) -> str:
    try:
        with open(LOG_FILE, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def start() -> dict:
    settings = load_settings()
    address, port = resolve(settings["ip"]), settings["port"]
    ensure_token()
    pid = our_server(address, port)  # fails, before anything else, when the port is someone else's
    if pid is not None:
        if healthy(address, port) and accepts_token(address, port, read_token()):
            if read_pid() != pid:
                write_pid(pid)  # adopted from Jupyter's runtime file: known from now on
            return dict(status(settings, address), action="already running")
        stop_pid(pid)  # not answering, or serving another token than the file's: start afresh
    recorded = read_pid()
    if recorded is not None and recorded != pid:
        stop_pid(recorded)  # alive but not listening: start afresh
    venv, project = load_dirs()
    jupyter = os.path.join(venv, "bin", "jupyter")
    if not os.access(jupyter, os.X_OK):
        raise LauncherError(f"{jupyter} is missing: run the playbook to install JupyterLab")
    os.makedirs(project, exist_ok=True)
    env = dict(os.environ, JUPYTER_TOKEN_FILE=TOKEN_FILE, JUPYTER_RUNTIME_DIR=RUNTIME_DIR,
               PATH=f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}")
    env.pop("JUPYTER_TOKEN", None)
    with open(LOG_FILE, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"--- devbox-jupyter start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        # A new session and no inherited stdio: the server outlives the SSH session that started it.
        process = subprocess.Popen(
            [jupyter, "lab", f"--ServerApp.ip={address}", f"--config={CONFIG_FILE}"],
            cwd=project, env=env, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    write_pid(process.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LauncherError(f"Jupyter exited with status {process.returncode}; "
                                f"last lines of {LOG_FILE}:\n{log_tail()}")
        # Up means: the process started here is the one listening, and it answers.
        if our_server(address, port) == process.pid and healthy(address, port):
            return dict(status(settings, address), action="started")
        time.sleep(0.25)
    raise LauncherError(f"Jupyter did not answer on {url_for(address, port)}api within "
                        f"{START_TIMEOUT_S} s; last lines of {LOG_FILE}:\n{log_tail()}")


def stop_pid(pid: int) -> None:
    """SIGTERM to the server's process group, SIGKILL when it lingers. Jupyter shuts its kernels down on
    SIGTERM; kernels run in sessions of their own, so a SIGKILLed server can leave them behind."""
    state = process_state(pid)
    if state is None:
        return
    started = state[1]
    try:
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGTERM) if group == pid else os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and alive(pid, started):
        time.sleep(0.2)
    if alive(pid, started):
        try:
            os.killpg(group, signal.SIGKILL) if group == pid else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop() -> dict:
    """Stop the server of the pidfile, and whatever Jupyter of ours listens on the configured port."""
    pids = [pid for pid in [read_pid()] if pid is not None]
    try:
        settings = load_settings()
        on_port = our_server(resolve(settings["ip"]), settings["port"])
        if on_port is not None and on_port not in pids:
            pids.append(on_port)
    except LauncherError:
        pass  # no settings, or the port is someone else's: nothing of ours to stop there
    for pid in pids:
        stop_pid(pid)
    try:
        os.remove(PID_FILE)
    except FileNotFoundError:
        pass
    return {"action": "stopped" if pids else "not running", "pid": pids[0] if pids else None}


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
