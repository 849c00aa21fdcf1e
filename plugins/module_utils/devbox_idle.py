"""Idle stop: is anybody using this machine? PID 1 asks every minute when idle stop is on.

In use means any of: a kernel busy, a browser or terminal connected to Jupyter (its
/api/status `connections`, open terminals, or an API request within the idle time: JupyterLab
polls while a tab is open), or a process of the dev user that neither Jupyter nor another
registered service (TensorBoard: a page it serves is no use) started (an SSH
session as the dev user, `fly ssh console --user <dev user>`, VS Code's server, a job left
running with nohup). Root's sessions do not count: log in as the dev user to keep it up. Only when none
of these was seen for the whole idle time does the machine stop. The setting lives in the home's
root-owned ~/.devbox/ (the devbox_idle_stop module writes it). Standard library only.
"""
from __future__ import annotations

import datetime
import json
import os
import urllib.request

from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    AccountError, read_root_file, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (
    LauncherError, Service, healthy, our_server, read_token, url_for)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import JUPYTER

SETTING_FILE = "idle_stop.json"
MAX_MINUTES = 10080
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def load_minutes(home: str) -> int:
    """The idle stop setting in minutes; 0 (off) when absent or not to be trusted."""
    try:
        minutes = json.loads(read_root_file(home, SETTING_FILE) or "{}").get("minutes", 0)
    except (AccountError, OSError, ValueError, AttributeError):
        return 0
    return minutes if isinstance(minutes, int) and 0 <= minutes <= MAX_MINUTES else 0


def save_minutes(home: str, minutes: int, dry_run: bool = False) -> bool:
    """Keep the setting for the boot step; True when it changed."""
    return write_root_file_if_changed(home, SETTING_FILE, json.dumps({"minutes": minutes}) + "\n", dry_run)


def jupyter_activity(home: str) -> dict | None:
    """As the user: Jupyter's own view of its use, or None when it is not serving.

    Asked here, in PID 1's own code after dropping to the user, at the address and port of Jupyter's
    root-owned record: nothing the user's Python could rewrite (a launcher's printed URL) decides where
    the token goes. Every field read back is checked for its type.
    """
    try:
        service = Service(home, JUPYTER)
        pid = our_server(service)
    except LauncherError:
        return None
    token = read_token(service)
    if pid is None or token is None or not healthy(service):
        return None
    base = url_for(service.address, service.port)

    def get(path: str, kind: type):
        # no_track_activity: looking must not count as using, or the machine would never be idle.
        request = urllib.request.Request(base + path + "?no_track_activity=1", headers={"Authorization": f"token {token}"})
        with NO_PROXY.open(request, timeout=10) as response:
            data = json.loads(response.read(1 << 20))
        if not isinstance(data, kind):
            raise ValueError(f"Jupyter's {path} is not a JSON {kind.__name__}")
        return data

    api_status, kernels, terminals = get("api/status", dict), get("api/kernels", list), get("api/terminals", list)
    connections = api_status.get("connections", 0)
    return {"pid": pid, "last_activity": timestamp(api_status["last_activity"]),
            "connections": connections if isinstance(connections, int) else 1,
            "busy_kernels": sum(1 for kernel in kernels if isinstance(kernel, dict)
                                and kernel.get("execution_state") == "busy"),
            "terminals": len(terminals)}


def timestamp(iso: str) -> float:
    """Jupyter's ISO 8601 times ('2026-11-29T03:00:00.123456Z') as seconds since the epoch."""
    if not isinstance(iso, str):
        raise ValueError(f"not a time: {iso!r}")
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _processes() -> dict[int, tuple[int, int, str]]:
    """{pid: (parent pid, real uid, command name)} from /proc; zombies (exited, not yet reaped) left out."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue  # exited meanwhile
        if not fields["State"].strip().startswith("Z"):
            table[int(entry)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]), fields["Name"].strip())
    return table


def user_sessions(uid: int, jupyter_pid: int | None, processes: dict | None = None,
                  services: set[int] = frozenset()) -> list[str]:
    """The user's processes outside Jupyter's tree and the other services' trees, as 'name (pid)'."""
    processes = _processes() if processes is None else processes
    roots = {jupyter_pid, *services} - {None}

    def under_jupyter(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            if pid in roots:
                return True
            seen.add(pid)
            pid = processes.get(pid, (0,))[0]
        return False

    return [f"{name} ({pid})" for pid, (_, owner, name) in sorted(processes.items())
            if owner == uid and not under_jupyter(pid)]


def in_use(activity: dict | None, sessions: list[str]) -> str | None:
    """Why the machine is in use right now, or None."""
    if sessions:
        return f"processes of the user outside Jupyter: {', '.join(sessions[:5])}"
    if activity is None:
        return None
    if activity["busy_kernels"]:
        return f"{activity['busy_kernels']} kernel(s) busy"
    if activity["connections"]:
        return f"{activity['connections']} connection(s) to Jupyter"
    if activity["terminals"]:
        return f"{activity['terminals']} Jupyter terminal(s) open"
    return None


class IdleClock:
    """Since when nothing has used the machine; started at boot (a fresh start is not idle)."""

    def __init__(self, now: float):
        self.quiet_since = now
        self.reason: str | None = None  # why it was in use at the last look
        self.jupyter_error: str | None = None  # why Jupyter could not be asked at the last look

    def observe(self, now: float, activity: dict | None, sessions: list[str]) -> str | None:
        """Record one look at the machine; returns why it is in use, or None when quiet."""
        reason = self.reason = in_use(activity, sessions)
        if reason:
            self.quiet_since = now
        elif activity is not None:
            self.quiet_since = max(self.quiet_since, activity["last_activity"])
        return reason

    def idle_for(self, now: float) -> float:
        return now - self.quiet_since
