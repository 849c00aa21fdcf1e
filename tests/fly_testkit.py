"""Shared by the fly tests: the `fly` test double's state, its environment, the code under test."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import socket
import subprocess
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOUBLE_DIR = os.path.join(ROOT, "tests", "fly_double")
DOUBLE = os.path.join(DOUBLE_DIR, "fly")
PROXY_HELPER = os.path.join(ROOT, "plugins", "plugin_utils", "fly_proxy_command.py")
ORG = "test-org"


def load_source(name: str, path: str):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def make_state(folder: str, apps: dict[str, str], other_orgs: tuple[str, ...] = ()) -> str:
    """A state folder for the double: the apps ({app: org slug}) and an SSH CA per org (kept if there)."""
    os.makedirs(folder, exist_ok=True)
    for org in sorted(set(apps.values()) | set(other_orgs)):
        if os.path.exists(ca_path(folder, org)):
            continue
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{org}-ca", "-f",
                        ca_path(folder, org)], check=True)
    with open(os.path.join(folder, "apps.json"), "w", encoding="utf-8") as handle:
        json.dump({app: {"org": org} for app, org in apps.items()}, handle)
    return folder


def set_ips(state: str, app: str, ips: list[dict]) -> None:
    """The app's IP addresses in the double's state, as `fly ips list --json` lists them."""
    with open(os.path.join(state, "apps.json"), encoding="utf-8") as handle:
        records = json.load(handle)
    records[app]["ips"] = ips
    with open(os.path.join(state, "apps.json"), "w", encoding="utf-8") as handle:
        json.dump(records, handle)


def ca_path(state: str, org: str = ORG) -> str:
    """The private key of an org's SSH CA in the double's state (its .pub beside it)."""
    return os.path.join(state, f"ca-{org}")


def signing_ca(certificate: str) -> str:
    """The fingerprint of the CA that signed a certificate, as ssh-keygen -l prints CA keys."""
    listing = subprocess.run(["ssh-keygen", "-L", "-f", certificate], capture_output=True, text=True, check=True).stdout
    return re.search(r"Signing CA: \S+ (\S+)", listing).group(1)


def fingerprint(public_key: str) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", public_key], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def fly_env(state: str, logged_in: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a user whose `fly` is the double."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN") and not key.startswith(("DEVBOX_FLY_", "FLY_DOUBLE_"))}
    env["PATH"] = DOUBLE_DIR + os.pathsep + env.get("PATH", "")
    env["FLY_DOUBLE_STATE"] = state
    if logged_in:
        env["FLY_ACCESS_TOKEN"] = "test-token"
    env.update(extra)
    return env


def calls(state: str) -> list[list[str]]:
    """Every argv the double was called with, in order."""
    path = os.path.join(state, "calls.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def process_gone(pid: int) -> bool:
    """True when pid has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def fly_proxy_pids(marker: str) -> list[int]:
    """Running `fly proxy` processes (of the double) whose command line contains marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg.endswith("fly_double/fly") for arg in argv) and "proxy" in argv and marker in " ".join(argv):
            if not process_gone(int(entry)):
                found.append(int(entry))
    return found


def echo_server() -> socket.socket:
    """A TCP echo server on a random loopback port (stands in for the SSH server behind a proxy)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                while data := connection.recv(4096):
                    connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server
