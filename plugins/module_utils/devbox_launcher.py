#!/usr/bin/env python3
"""The one launcher: start | stop | restart | status of one registered service, as the dev user.

    python3 devbox_launcher.py NAME start|stop|restart|status

Every service (Jupyter, TensorBoard, the user's own) is run the same way, from its record in the
home's root-owned ~/.devbox/ (plugins/module_utils/devbox_service.py): its command, with the
placeholders filled in, is started detached from the calling session (a new session, stdio to a
log), tracked by a pidfile (pid and start time) and probed (a socket of the user listening on
its port; its health path answering, when it has one). The address is resolved at every start
under the listening-address rule (devbox_address): the 6PN address can change across reboots.
The service runs from its venv (the project venv, or one of its own) and starts with a clean
environment (HOME, USER, PATH with the project venv first, LANG), plus the record's `env`: nothing
of PID 1's or of Ansible's.

What is Jupyter's own is small and here: its token file (0600 on the volume, made on the first
start), a server that serves another token is restarted, and a Jupyter of the user's that
Jupyter's runtime file names is taken over (a server started before this launcher existed keeps
its kernels).

The module (devbox_services) keeps this very file and the libraries it imports as root's own
files under ~/.devbox/lib/; PID 1 and the module run it as the user. One launcher per service at
a time (a lock with a time limit). Prints one JSON object; exit status 0 when the service ends up
as asked, 1 on an error, 3 when status finds it down.
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

if __name__ == "__main__":  # run as a file: its libraries are kept beside it, under the same tree
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 5)))

from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import (  # noqa: E402
    listen_address_problem, literal_address)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (  # noqa: E402
    JUPYTER, ServiceError, expand, listening_sockets, load)

COMMANDS = ("start", "stop", "restart", "status")
# Where each service's pidfile, log and lock live, relative to the home.
STATE_DIR = ".local/state/devbox"
# Jupyter's token, relative to the home: made on the first start, kept on the volume (0600).
TOKEN_FILE = ".jupyter/devbox_token"
JUPYTER_RUNTIME_DIR = ".local/share/jupyter/runtime"
# Jupyter strips what is not URL-safe, and the token travels in the URL.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{32,}")
START_TIMEOUT_S = 90
# Jupyter's kernels get time to save; everything inside PID 1's stop budget (25 s).
STOP_TIMEOUT_S = 20
# The lock is the user's file: a holder that never lets go is waited for this long, no longer.
LOCK_TIMEOUT_S = 120
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LauncherError(Exception):
    """The server cannot be brought to the state asked for; the message says why."""


class Service:
    """One registered service as this launcher sees it: its record, its files, its address."""

    def __init__(self, home: str, name: str):
        try:
            self.record = load(home, name)
        except ServiceError as error:
            raise LauncherError(str(error)) from error
        self.home, self.name, self.port = home, name, self.record["port"]
        state = os.path.join(home, STATE_DIR)
        self.pid_file, self.log_file, self.lock_file = (os.path.join(state, f"{name}.{kind}")
                                                        for kind in ("pid", "log", "lock"))
        self.token_file = os.path.join(home, TOKEN_FILE)
        self._address = None

    @property
    def address(self) -> str:
        if self._address is None:
            self._address = resolve(self.record["ip"])
        return self._address

    @property
    def jupyter(self) -> bool:
        return self.name == JUPYTER

    def argv(self) -> list[str]:
        values = {"ip": self.address, "port": self.port, "home": self.home, "venv": self.record["venv"],
                  "project": self.record["project"]}
        argv = [expand(word, values) for word in self.record["command"]]
        if "/" not in argv[0]:  # a program of the venv first, then of the system
            for folder in [os.path.join(self.record["venv"], "bin")] + SYSTEM_PATH.split(":"):
                if os.access(os.path.join(folder, argv[0]), os.X_OK):
                    argv[0] = os.path.join(folder, argv[0])
                    break
        return argv

    def cwd(self) -> str:
        return expand(self.record["cwd"], {"ip": self.address, "port": self.port, "home": self.home,
                                           "venv": self.record["venv"], "project": self.record["project"]})

    def environment(self) -> dict:
        """A clean environment: the user's basics, the record's env on top. The project venv is the active one,
        first on PATH: a terminal or a `!pip` that Jupyter starts from its own venv works in the user's; the
        service's own venv follows (its program itself is found there first, by argv)."""
        entry = pwd.getpwuid(os.getuid())
        folders = dict.fromkeys([f"{self.record['project_venv']}/bin", f"{self.record['venv']}/bin"])
        env = {"HOME": self.home, "USER": entry.pw_name, "LOGNAME": entry.pw_name, "SHELL": entry.pw_shell,
               "PATH": ":".join([*folders, SYSTEM_PATH]), "VIRTUAL_ENV": self.record["project_venv"],
               "LANG": "C.UTF-8"}
        if self.jupyter:
            # JUPYTER_PREFER_ENV_PATH=0: the user's kernel specs (the project's, ~/.local/share/jupyter/kernels)
            # come before those of the venv Jupyter runs from, whose own ipykernel would otherwise be the default.
            env.update(JUPYTER_TOKEN_FILE=self.token_file, JUPYTER_PREFER_ENV_PATH="0",
                       JUPYTER_RUNTIME_DIR=os.path.join(self.home, JUPYTER_RUNTIME_DIR))
        return dict(env, **self.record["env"])


def main(argv: list[str] | None = None) -> int:
    """The command line: one command for one service, under the service's lock, as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("name")
    parser.add_argument("command", choices=COMMANDS)
    args = parser.parse_args(argv)
    try:
        service = Service(pwd.getpwuid(os.getuid()).pw_dir, args.name)
        os.makedirs(os.path.dirname(service.lock_file), mode=0o700, exist_ok=True)
        with open(service.lock_file, "a") as lock:
            take_lock(lock, service.lock_file)
            command = args.command
            if command == "restart":
                stop(service)
                command = "start"
            outcome = {"start": start, "stop": stop, "status": status}[command](service)
    except LauncherError as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(outcome))
    return 0 if command != "status" or outcome["healthy"] else 3


def take_lock(lock, path: str) -> None:
    """One launcher per service at a time (PID 1 against a playbook), waiting LOCK_TIMEOUT_S at most."""
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LauncherError(f"waited {LOCK_TIMEOUT_S} s for the lock {path}: another launcher or a "
                                    "process of the user holds it; stop that process and run again") from None
            time.sleep(0.2)


def read_token(service: Service) -> str | None:
    """The token file's content when it is a usable token; None when missing, empty or junk."""
    try:
        with open(service.token_file) as existing:
            token = existing.read(4096)
    except (OSError, UnicodeDecodeError):
        return None
    return token if TOKEN_PATTERN.fullmatch(token) else None


def ensure_token(service: Service) -> None:
    """A usable token in Jupyter's token file (a fresh one replaces a missing or junk one)."""
    if read_token(service) is not None:
        return
    os.makedirs(os.path.dirname(service.token_file), mode=0o700, exist_ok=True)
    temporary = service.token_file + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(24))  # no newline: Jupyter reads the file verbatim
    os.replace(temporary, service.token_file)


def socket_owner(inode: str) -> int | None:
    """The pid of this user's process that holds the socket; None when none of ours does."""
    link = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == link for fd in os.listdir(f"/proc/{entry}/fd")):
                return int(entry)
        except OSError:
            continue  # exited meanwhile
    return None


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return [word.decode(errors="replace") for word in cmdline.read().split(b"\0")[:-1]]
    except OSError:
        return []


def describe(pid: int) -> str:
    return f"pid {pid} ({' '.join(command_line(pid))[:120]!r})"


def user_name(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def recorded_by_jupyter(service: Service, pid: int) -> bool:
    """Jupyter's own runtime file says this process is a Jupyter server on the service's port."""
    try:
        with open(os.path.join(service.home, JUPYTER_RUNTIME_DIR, f"jpserver-{pid}.json")) as runtime:
            return json.load(runtime).get("port") == service.port
    except (OSError, ValueError, AttributeError):
        return False


def ours(service: Service, pid: int | None, recorded: int | None) -> bool:
    """This process is the service: the pidfile's, one of its session, or (taken over) a Jupyter that
    Jupyter's runtime file names, or a process running exactly the service's command."""
    if pid is None:
        return False
    try:
        session = os.getsid(pid)
    except OSError:
        return False
    if recorded is not None and recorded in (pid, session):
        return True
    if service.jupyter:
        return recorded_by_jupyter(service, pid)
    line, argv = command_line(pid), service.argv()
    return line == argv or line[1:] == argv  # a script runs as its interpreter with the script's path


def our_server(service: Service) -> int | None:
    """The pid of the service listening on its address and port; None when nothing listens there.

    LauncherError when the port is held by anything else: another user's process (named by its
    user: its pid is not visible to us), or a process of ours that is not this service.
    """
    wanted = ipaddress.ip_address(service.address)
    sockets = listening_sockets(service.port)
    held = [(bound, uid, inode) for bound, uid, inode in sockets
            if ipaddress.ip_address(bound) == wanted or ipaddress.ip_address(bound).is_unspecified]
    if not held:
        # The service itself, still on an address an earlier record gave it: ours to stop (start restarts it).
        recorded = read_pid(service.pid_file)
        moved = {socket_owner(inode) for _, uid, inode in sockets if uid == os.getuid()}
        return next((owner for owner in sorted(moved - {None}) if ours(service, owner, recorded)), None)
    where = url_for(service.address, service.port)
    for bound, uid, _ in held:
        if uid != os.getuid():
            raise LauncherError(f"{where} is held by another process of {user_name(uid)} listening on {bound}:"
                                f"{service.port}: not {service.name}'s; stop it or give {service.name} another port")
    recorded = read_pid(service.pid_file)
    owners = {socket_owner(inode) for _, _, inode in held}
    for owner in owners:
        if not ours(service, owner, recorded):
            what = describe(owner) if owner is not None else "a process"
            raise LauncherError(f"{where} is held by {what} of {user_name(os.getuid())}, not by the {service.name} "
                                f"this launcher runs: stop it or give {service.name} another port")
    if recorded is not None and recorded in owners | {os.getsid(owner) for owner in owners}:
        return recorded
    return sorted(owners)[0]


def answers(service: Service, path: str, token: str | None = None) -> bool:
    """The server answers 200 on this path (with the token when given)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(url_for(service.address, service.port) + path.lstrip("/"), headers=headers)
    try:
        with NO_PROXY.open(request, timeout=3) as response:
            return response.status == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False


def healthy(service: Service) -> bool:
    """Its health path answers (no token needed there), and Jupyter accepts the token file's token."""
    if service.record["health"] and not answers(service, service.record["health"]):
        return False
    return not service.jupyter or answers(service, "/api/status", read_token(service))


def status(service: Service) -> dict:
    outcome = {"name": service.name, "url": url_for(service.address, service.port), "log": service.log_file}
    try:
        pid = our_server(service)
    except LauncherError as error:
        pid, outcome["error"] = None, str(error)
    return dict(outcome, pid=pid, running=pid is not None, healthy=pid is not None and healthy(service))


def start(service: Service) -> dict:
    if service.jupyter:
        ensure_token(service)
    pid = our_server(service)  # fails, before anything else, when the port is someone else's
    if pid is not None:
        if healthy(service):
            if read_pid(service.pid_file) != pid:
                write_pid(service.pid_file, pid)  # taken over: known from now on
            return dict(status(service), action="already running")
        stop_pid(pid, STOP_TIMEOUT_S)  # not answering, or serving another token: start afresh
    recorded = read_pid(service.pid_file)
    if recorded is not None and recorded != pid:
        stop_pid(recorded, STOP_TIMEOUT_S)  # alive but not listening: start afresh
    argv = service.argv()
    if not os.access(argv[0], os.X_OK):
        raise LauncherError(f"{service.name}: {argv[0]} is not an installed program (looked in "
                            f"{service.record['venv']}/bin and {SYSTEM_PATH}): list its package in the entry's packages")
    cwd = service.cwd()
    os.makedirs(cwd, exist_ok=True)
    process = spawn(argv, cwd, service.log_file, service.name, service.environment())
    write_pid(service.pid_file, process.pid)
    # Up means: the process started here (or its session) listens, and it answers.
    wait_until_up(process, lambda: our_server(service) == process.pid and healthy(service), START_TIMEOUT_S,
                  service.log_file, service.name, url_for(service.address, service.port))
    return dict(status(service), action="started")


def stop(service: Service) -> dict:
    """Stop the pidfile's server and whatever of this service listens on its port."""
    pids = [pid for pid in [read_pid(service.pid_file)] if pid is not None]
    try:
        on_port = our_server(service)
        if on_port is not None and on_port not in pids:
            pids.append(on_port)
    except LauncherError:
        pass  # the port is someone else's: nothing of ours to stop there
    for pid in pids:
        stop_pid(pid, STOP_TIMEOUT_S)
    try:
        os.remove(service.pid_file)
    except FileNotFoundError:
        pass
    return {"name": service.name, "action": "stopped" if pids else "not running", "pid": pids[0] if pids else None}


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


def spawn(argv: list[str], cwd: str, log_file: str, label: str, env: dict) -> subprocess.Popen:
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


if __name__ == "__main__":
    sys.exit(main())
