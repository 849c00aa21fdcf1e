"""Ansible inventory plugin: the started Machines of the Fly app named in fly.toml.

fly.toml is the single source of truth for the app, the image's dev user (build arg NONROOT_USER),
the volume mounted as the user's home, the swap the Machines should have; the machine's facts
(plugins/plugin_utils/devbox_machine.py: the roles' defaults, these, the extra variables) must
agree with it (the facts' user is NONROOT_USER, their home is the [mounts] destination), checked
before anything is created, and name the services whose ports the "open it" hint forwards. Each started Machine
becomes a host reached over OpenSSH through `fly proxy` (plugins/plugin_utils/fly_proxy_command.py) with a
certificate from `fly ssh issue`, kept in a git-ignored folder and renewed before it expires.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: fly
short_description: The started Machines of the Fly app named in fly.toml
description:
  - Reads fly.toml (app, C([build.args]) NONROOT_USER, C([mounts]) destination, swap_size_mb, vm size).
  - Runs C(fly machines list -a APP --json); every started Machine of the app's own process groups (C(app),
    or those in C([processes])) becomes a host reached as root over OpenSSH through C(fly proxy), with a
    certificate from C(fly ssh issue). C(fly console) and release-command Machines are left out.
  - Sets dev_user_name, dev_user_home, dev_user_home_is_volume (true), swap_min_mb and devbox_open_hint from
    fly.toml and the machine's facts (the roles' defaults with these and the extra variables over them); fails
    before anything is created when the facts' user is not C(NONROOT_USER) or their home is not the C([mounts])
    destination. The hint is one C(fly proxy <port>) per service of the facts.
  - Before any host is reached, flyctl's agent is started once, or restarted once when C(fly agent ping --json)
    names another version than C(fly version --json); then one Machine's C(fly proxy) opens the first tunnel
    alone, with flyctl's 4-minute patience, and the connections' proxies follow in parallel.
  - The certificate is never issued into a path holding C(@) (flyctl takes it for an email address).
  - Stopped Machines are reported; with O(start_stopped) they are started first. Machines whose host Fly
    cannot reach (C(host_status) not C(ok)) are reported and left out.
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: [fly]
  fly_toml:
    description: Path of fly.toml; relative paths start at the project root. Empty means the project's fly.toml.
    type: str
    default: ""
    env:
      - name: DEVBOX_FLY_TOML
  org:
    description: Fly organization slug that issues the SSH certificate. Empty means the app's own organization.
    type: str
    default: ""
    env:
      - name: DEVBOX_FLY_ORG
  start_stopped:
    description: Start stopped Machines (C(fly machine start ID -a APP)) instead of only reporting them.
    type: bool
    default: false
    env:
      - name: DEVBOX_FLY_START_STOPPED
  credentials_dir:
    description: Folder for the SSH key and certificate (mode 0700, files 0600). Empty means .fly/ssh in the project.
    type: str
    default: ""
    env:
      - name: DEVBOX_FLY_CREDENTIALS_DIR
  certificate_hours:
    description: Lifetime of a newly issued certificate, 1 to 72 hours.
    type: int
    default: 24
  fly_command:
    description: The flyctl executable. Empty means C(fly) or C(flyctl) on PATH, else ~/.fly/bin/flyctl.
    type: str
    default: ""
    env:
      - name: DEVBOX_FLY_COMMAND
"""

EXAMPLES = r"""
# inventory/fly.yml
plugin: fly
start_stopped: false
"""

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.display import Display
from ansible.utils.vars import combine_vars, load_extra_vars
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

# The login-name rule of the devbox_user module and the boot step.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import LOGIN_NAME_RULE, is_login_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError, behind_jupyter
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import machine
from ansible_collections.devbox.machine.plugins.plugin_utils.fly_proxy_command import FlyProxy, ProxyError

display = Display()

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Run as a script (python3 PROXY_HELPER --app ...): ssh starts it as the ProxyCommand.
PROXY_HELPER = os.path.join(PROJECT_ROOT, "plugins", "plugin_utils", "fly_proxy_command.py")
GPU_PRESETS = {"a100-40gb", "a100-80gb", "l40s", "a10"}
STARTABLE_STATES = {"created", "stopped", "suspended"}
GONE_STATES = {"destroyed", "destroying"}
# fly-go's MachineProcessGroupApp: the group of a fly.toml without [processes].
DEFAULT_PROCESS_GROUP = "app"
# A certificate is renewed when it would expire within this margin (a run must not outlive it).
MIN_REMAINING = datetime.timedelta(hours=1)
# valid_before of a certificate that never expires (`ssh-keygen -V forever`, the OpenSSH format's maximum).
FOREVER = 2**64 - 1
FLY_TIMEOUT_S = 180
START_WAIT_S = 90
SSH_CONNECT_TIMEOUT_S = 60
# flyctl's WaitForTunnel (agent/client.go) waits 4 minutes for a tunnel; the first proxy a little longer.
FIRST_TUNNEL_WAIT_S = 250
# The first proxy says what it waits for when it takes longer than this.
FIRST_TUNNEL_NOTE_S = 5
# fly-go's IPAddress.Type of a Flycast address; every other type (v4, shared_v4, v6) is public.
PRIVATE_IP_TYPE = "private_v6"
# auto_stop_machines values that leave the stop to us (fly.toml: a bool or "off" / "stop" / "suspend").
AUTOSTOP_OFF = (False, "off")
INSTALL_HINT = "install flyctl: `curl -L https://fly.io/install.sh | sh` (then add ~/.fly/bin to PATH)"


class FlyInventoryError(Exception):
    """Something the user must fix; the message says what and how."""


# ---- fly.toml -----------------------------------------------------------------------------

def read_fly_toml(path: str, given: dict | None = None) -> dict:
    """The settings the roles need, checked, with the facts (`given`: the extra variables) checked against
    them; GPU sizes give warnings (returned, not raised)."""
    try:
        with open(path, "rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise FlyInventoryError(f"{path} not found: run `fly launch --no-deploy` in the project, "
                                "or set fly_toml in inventory/fly.yml (or DEVBOX_FLY_TOML)") from None
    except tomllib.TOMLDecodeError as error:
        raise FlyInventoryError(f"{path} is not valid TOML: {error}") from None
    app = config.get("app")
    if not isinstance(app, str) or not app:
        raise FlyInventoryError(f"{path} names no app: add `app = \"<name>\"` (the name `fly launch` gave the app)")
    build_args = (config.get("build") or {}).get("args") or {}
    if "NONROOT_USER" not in build_args:
        raise FlyInventoryError(f"{path}: [build.args] has no NONROOT_USER, the image's dev user: add "
                                "NONROOT_USER = \"<dev_user_name>\" (and the [mounts] destination /home/<it>)")
    user = str(build_args["NONROOT_USER"])
    if not is_login_name(user):
        raise FlyInventoryError(f"{path}: [build.args] NONROOT_USER = {user!r} is not a valid login name: "
                                f"use {LOGIN_NAME_RULE}")
    mounts = config.get("mounts")
    mount_list = mounts if isinstance(mounts, list) else [mounts] if isinstance(mounts, dict) else []
    destinations = [m.get("destination") for m in mount_list if isinstance(m, dict)]
    misplaced = [key for key, table in config.items() if key != "swap_size_mb" and tables_with(table, "swap_size_mb")]
    if misplaced and "swap_size_mb" not in config:
        raise FlyInventoryError(
            f"{path}: swap_size_mb sits inside [{misplaced[0]}], where Fly ignores it: move the line above the "
            "first [table] (it is a top-level key), then `fly deploy`")
    swap = config.get("swap_size_mb", 0)
    if not isinstance(swap, int) or isinstance(swap, bool) or swap < 0:
        raise FlyInventoryError(f"{path}: swap_size_mb = {swap!r} must be a whole number of MB")
    processes = config.get("processes")
    groups = sorted(processes) if isinstance(processes, dict) and processes else [DEFAULT_PROCESS_GROUP]
    settings = {"app": app, "user": user, "mounts": destinations, "swap_mb": swap, "process_groups": groups,
                "warnings": gpu_warnings(path, config), "flycast": flycast_ports(path, config)}
    facts = fly_facts(path, settings, given)
    jupyter = next((service["port"] for service in facts["services"] if service["name"] == "jupyter"), None)
    if settings["flycast"] and jupyter not in settings["flycast"]:
        settings["warnings"].append(
            f"{path}: no [[services]] entry with internal_port = {jupyter} (jupyter_port) and auto_start_machines = "
            f"true: Jupyter is not reached through the app's Flycast address; set internal_port = {jupyter}")
    return dict(settings, home=facts["home"], facts=facts)


def fly_facts(path: str, settings: dict, given: dict | None = None) -> dict:
    """The facts of the app's Machines: the roles' defaults, what fly.toml says (the user; the home is the
    volume), the extra variables `given` over them; FlyInventoryError unless they agree with fly.toml."""
    try:
        facts = machine(combine_vars({"dev_user_name": settings["user"], "dev_user_home_is_volume": True}, given or {}))
    except (ServiceError, KeyError, ValueError, TypeError, AnsibleError) as error:
        raise FlyInventoryError(f"the variables do not describe a machine: {error}") from None
    user, home = facts["user"], facts["home"]
    if user != settings["user"]:
        raise FlyInventoryError(
            f"dev_user_name is {user!r}, but {path} builds the image for NONROOT_USER = {settings['user']!r}: set "
            f"[build.args] NONROOT_USER = \"{user}\" and [mounts] destination = \"{home}\", then `fly deploy` "
            "(or drop dev_user_name)")
    if home not in settings["mounts"]:
        found = ", ".join(map(str, settings["mounts"])) or "no [mounts] section"
        raise FlyInventoryError(
            f"{path}: the volume must be the dev user's home, but the home is {home} (dev_user_name {user!r}) and "
            f"[mounts] has {found}. Set [mounts] destination = \"{home}\" (or change NONROOT_USER to match), "
            "then `fly deploy`.")
    return facts


def flycast_ports(path: str, config: dict) -> dict[int, int]:
    """{internal port: the port Fly Proxy serves it on} for fly.toml's [[services]] that start a stopped Machine
    (auto_start_machines = true): reached at <app>.flycast. FlyInventoryError for a service whose
    auto_stop_machines is on: the stop is the Machine's own (its boot step's idle stop)."""
    services = config.get("services")
    found = {}
    for service in services if isinstance(services, list) else []:
        if not isinstance(service, dict):
            continue
        internal = service.get("internal_port")
        if service.get("auto_stop_machines", False) not in AUTOSTOP_OFF:
            raise FlyInventoryError(
                f"{path}: the service on internal_port {internal} has auto_stop_machines = "
                f"{service['auto_stop_machines']!r}: set auto_stop_machines = \"off\" (the Machine stops itself when "
                "idle; Fly Proxy would stop it under a running notebook), then `fly deploy`")
        ports = [entry.get("port") for entry in service.get("ports") or [] if isinstance(entry, dict)]
        if service.get("auto_start_machines") is True and isinstance(internal, int) and ports:
            found[internal] = ports[0]
    return found


def open_hint(facts: dict, app: str, target: str = "", flycast: dict[int, int] | None = None) -> str:
    """How to reach every service from here: one `fly proxy <port>` per service, each in a terminal of its own.
    A service fly.toml serves through Fly Proxy goes to the app's Flycast address, which wakes a stopped Machine."""
    hints = []
    for service in facts["services"]:
        if behind_jupyter(service):
            continue
        port = service["port"]
        if port in (flycast or {}):
            ports = str(port) if flycast[port] == port else f"{port}:{flycast[port]}"
            wakes = "; starts a stopped Machine" + ("; any one of the Machines" if target else "")
            hints.append(f"fly proxy {ports} {app}.flycast -a {app} ({service['name']}{wakes})")
        else:
            hints.append(" ".join(filter(None, ["fly proxy", str(port), target, "-a", app])) + f" ({service['name']})")
    return "; ".join(hints)


def tables_with(value, key: str) -> bool:
    entries = value if isinstance(value, list) else [value]
    return any(isinstance(entry, dict) and key in entry for entry in entries)


def gpu_warnings(path: str, config: dict) -> list[str]:
    sizes = []
    for key in ("vm", "compute"):
        entries = config.get(key)
        for entry in entries if isinstance(entries, list) else [entries] if isinstance(entries, dict) else []:
            if not isinstance(entry, dict):
                continue
            if str(entry.get("size", "")).lower() in GPU_PRESETS:
                sizes.append(f"size = \"{entry['size']}\"")
            if entry.get("gpu_kind") or entry.get("gpus"):
                sizes.append(f"gpu_kind = \"{entry.get('gpu_kind', '')}\", gpus = {entry.get('gpus', 0)}")
    if str(config.get("vm_size", "")).lower() in GPU_PRESETS:
        sizes.append(f"vm_size = \"{config['vm_size']}\"")
    return [f"{path} asks for a GPU guest ({s}), but Fly rejects GPU guests since 2026-08-01 (the API answers "
            "HTTP 400): use a CPU size such as size = \"performance-8x\", or run the playbook against an NVIDIA "
            "host over SSH (inventory/ssh_hosts.example.yml)" for s in sizes]


# ---- flyctl -------------------------------------------------------------------------------

def find_fly(configured: str) -> str:
    if configured:
        found = shutil.which(configured)
        if not found:
            raise FlyInventoryError(f"fly_command {configured!r} is not an executable; {INSTALL_HINT}")
        return found
    for candidate in ("fly", "flyctl", os.path.expanduser("~/.fly/bin/flyctl")):
        found = shutil.which(candidate)
        if found:
            return found
    raise FlyInventoryError(f"flyctl is not installed (no `fly` or `flyctl` on PATH): {INSTALL_HINT}")


class Flyctl:
    def __init__(self, executable: str, app: str):
        self.executable = executable
        self.app = app

    def run(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.executable, *args], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=FLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise FlyInventoryError(f"`fly {' '.join(args)}` did not answer within {FLY_TIMEOUT_S} s") from None

    def run_json(self, *args: str):
        result = self.run(*args)
        if result.returncode != 0:
            raise FlyInventoryError(f"`fly {' '.join(args)}` failed: {error_text(result)}")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise FlyInventoryError(f"`fly {' '.join(args)}` printed no JSON: {result.stdout[:200]!r}") from None

    def app_status(self) -> dict:
        """`fly status --json`; a failure is explained: not logged in, or no such app."""
        result = self.run("status", "--json", "-a", self.app)
        if result.returncode == 0:
            try:
                return json.loads(result.stdout)
            except ValueError:
                raise FlyInventoryError(f"`fly status --json -a {self.app}` printed no JSON") from None
        whoami = self.run("auth", "whoami")
        if whoami.returncode != 0:
            if "no access token available" in whoami.stderr.lower():
                raise FlyInventoryError(f"flyctl is not logged in ({error_text(whoami)}): run `fly auth login`")
            # Logged in or not, flyctl cannot tell us now (network, API): its own words say why.
            raise FlyInventoryError(f"`fly auth whoami` failed: {error_text(whoami)}")
        if "could not find app" in result.stderr.lower():
            raise FlyInventoryError(
                f"the Fly app {self.app!r} (app in fly.toml) does not exist or is not yours: create it with "
                f"`fly apps create {self.app}` (or fix app in fly.toml), then `fly deploy`")
        raise FlyInventoryError(f"`fly status --json -a {self.app}` failed: {error_text(result)}")

    def machines(self) -> list[dict]:
        machines = self.run_json("machines", "list", "-a", self.app, "--json")
        if not isinstance(machines, list):
            raise FlyInventoryError(f"`fly machines list -a {self.app} --json` did not print a list")
        return machines

    def ip_addresses(self) -> list[dict]:
        addresses = self.run_json("ips", "list", "-a", self.app, "--json")
        if not isinstance(addresses, list):
            raise FlyInventoryError(f"`fly ips list -a {self.app} --json` did not print a list")
        return addresses

    def start(self, machine_id: str) -> None:
        result = self.run("machine", "start", machine_id, "-a", self.app)
        if result.returncode != 0:
            raise FlyInventoryError(f"`fly machine start {machine_id} -a {self.app}` failed: {error_text(result)}")

    def version(self) -> str:
        """flyctl's own version (`fly version --json`, internal/command/version: buildinfo.Info's Version), or
        "" when it does not say."""
        result = self.run("version", "--json")
        try:
            return str(json.loads(result.stdout)["Version"]).removeprefix("v") if result.returncode == 0 else ""
        except (ValueError, KeyError, TypeError):
            return ""

    def ensure_agent(self) -> None:
        """flyctl's agent, running and current before the proxies start, started once and here.

        The first `fly proxy` without an agent starts one under a 1 s lock, and proxies started together
        then fail ("another process is already starting the agent"). After flyctl updates itself, the
        running agent is older than the binary: `fly agent ping` still answers, and the next `fly proxy`
        kills it and starts another (agent/client.go Establish), dropping every tunnel it carried, so
        each of the parallel proxies could restart it in turn. Compare the versions here and restart
        a stale background agent once (as Establish would: only a background one). `fly agent start`
        fails if one runs, so ping first; a start that loses a race with another run still leaves an
        agent that answers."""
        ping = self.run("agent", "ping", "--json")
        if ping.returncode != 0:
            started = self.run("agent", "start")
            if started.returncode != 0 and self.run("agent", "ping").returncode != 0:
                raise FlyInventoryError(f"`fly agent start` failed: {error_text(started)}")
            return
        try:
            agent = json.loads(ping.stdout)
            agent_version, background = str(agent["Version"]).removeprefix("v"), bool(agent["Background"])
        except (ValueError, KeyError, TypeError):
            return
        flyctl_version = self.version()
        if not flyctl_version or agent_version == flyctl_version or not background:
            return
        display.warning(f"flyctl's agent runs v{agent_version}, flyctl is v{flyctl_version} (updated since the "
                        "agent started): restarting the agent once now (`fly agent restart`). That closes the "
                        "tunnels it carried: restart any `fly proxy` of yours that stops.")
        restarted = self.run("agent", "restart")
        if restarted.returncode != 0:
            raise FlyInventoryError(f"`fly agent restart` failed: {error_text(restarted)}")

    def open_first_tunnel(self, host: str) -> None:
        """One `fly proxy` before the parallel ones, with flyctl's own patience: a new agent's first tunnel
        (a new WireGuard peer) can take up to 4 minutes (agent/client.go WaitForTunnel), while each SSH
        connection's proxy gives up well before ssh's ConnectTimeout. Once it is up, the others find it.
        A failure here is only reported: each connection then says what went wrong for its Machine."""
        proxy = FlyProxy(self.executable, self.app, host, 22)
        note = (f"fly inventory: waiting for flyctl's WireGuard tunnel to the app's network (`fly proxy` to {host}); "
                "the first one from this computer can take up to 4 minutes")
        try:
            proxy.start(FIRST_TUNNEL_WAIT_S, slow=(FIRST_TUNNEL_NOTE_S, lambda: display.display(note, stderr=True)))
        except ProxyError as error:
            display.warning(f"fly inventory: the first tunnel did not open: {error}")
        finally:
            proxy.stop()


def error_text(result: subprocess.CompletedProcess) -> str:
    """flyctl's message: its `Error:` line (printed before any description or hint lines)."""
    text = (result.stderr or result.stdout or "").strip()
    lines = text.splitlines()
    message = next((line for line in lines if line.startswith("Error: ")), "\n".join(lines))
    return message.removeprefix("Error: ").strip() or f"exit status {result.returncode}"


def private_network_only(app: str, addresses: list[dict]) -> bool:
    """FlyInventoryError when the app has a public IP address (then Fly Proxy carries fly.toml's services, Jupyter's
    among them, to the internet); else whether it has a Flycast address (private IPv6) to wake Machines through."""
    public = [ip for ip in addresses if isinstance(ip, dict) and ip.get("Type") != PRIVATE_IP_TYPE]
    if public:
        listing = ", ".join(f"{ip.get('Address')} ({ip.get('Type')})" for ip in public)
        raise FlyInventoryError(
            f"app {app!r} has public IP addresses: {listing}. Fly Proxy would carry fly.toml's services (Jupyter's "
            f"port) to the internet. Release them: fly ips release {' '.join(str(ip.get('Address')) for ip in public)} "
            f"-a {app}; keep or add the private Flycast address: fly ips allocate-v6 --private -a {app}")
    return any(isinstance(ip, dict) and ip.get("Type") == PRIVATE_IP_TYPE for ip in addresses)


# ---- Machines -> hosts ----------------------------------------------------------------------

def host_names(machines: list[dict]) -> dict[str, str]:
    """Machine id -> inventory name: the Machine's name, or its id where names are missing or shared."""
    names = [m.get("name") for m in machines]
    return {m["id"]: m["name"] if m.get("name") and names.count(m["name"]) == 1 else m["id"] for m in machines}


def machine_config(machine: dict) -> dict:
    """fly-go's Machine.GetConfig: the config, or the partial one sent where the host is not ok."""
    return machine.get("config") or machine.get("incomplete_config") or {}


def process_group(machine: dict) -> str:
    """fly-go's MachineConfig.ProcessGroup: fly_process_group, formerly process_group."""
    metadata = machine_config(machine).get("metadata") or {}
    return metadata.get("fly_process_group") or metadata.get("process_group") or ""


def machine_vars(machine: dict, app: str) -> dict:
    config = machine.get("config") or {}
    guest = config.get("guest") or {}
    return {
        "fly_app": app,
        "fly_machine_id": machine["id"],
        "fly_machine_name": machine.get("name", ""),
        "fly_region": machine.get("region", ""),
        "fly_private_ip": machine.get("private_ip", ""),
        "fly_cpu_kind": guest.get("cpu_kind", ""),
        "fly_cpus": guest.get("cpus", 0),
        "fly_memory_mb": guest.get("memory_mb", 0),
        "fly_mounts": config.get("mounts") or [],
        # The Machine's name in .internal DNS: `fly proxy` reaches it there, started or not.
        "ansible_host": f"{machine['id']}.vm.{app}.internal",
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        # ssh's ConnectTimeout covers the wait for the server's banner, which through `fly proxy`
        # includes starting the proxy (and flyctl's agent and WireGuard tunnel): 10 s is too short.
        "ansible_ssh_timeout": SSH_CONNECT_TIMEOUT_S,
        # Host keys are not pinned (see ssh_common_args); said here too, where Mitogen's ssh,
        # which puts its own StrictHostKeyChecking first, reads it.
        "ansible_host_key_checking": False,
    }


def ssh_common_args(fly: str, app: str, certificate: str) -> str:
    # The helper gives up before ssh does, so its own explanation reaches the user.
    helper = [sys.executable, PROXY_HELPER, "--fly", fly, "--app", app, "--ready-timeout", str(SSH_CONNECT_TIMEOUT_S - 10)]
    proxy = shlex.join(helper).replace("%", "%%") + " --port %p %h"
    options = [
        f"ProxyCommand={proxy}",
        # One master connection, hence one `fly proxy`, per Machine for a whole run.
        "ControlMaster=auto",
        "ControlPersist=120s",
        # Host keys: hallpass's host keys do not survive a Machine restart (ephemeral root FS), so
        # pinning them would break every run after a restart. The tunnel itself is authenticated by
        # Fly (WireGuard to the org's private network) and login needs an org-signed certificate;
        # flyctl's own `fly ssh console` ignores host keys for the same reason.
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "IdentitiesOnly=yes",
        f"CertificateFile={certificate}",
        # Notice a dead tunnel within a minute instead of hanging.
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
    ]
    return " ".join("-o " + shlex.quote(option) for option in options)


# ---- SSH certificate -----------------------------------------------------------------------

def certificate_status(certificate: str) -> tuple[datetime.datetime | None, list[str]]:
    """(end of validity, in UTC, or None for forever; principals) of an OpenSSH certificate file.

    Read with `cryptography` (a dependency of ansible-core); ValueError when it is not a certificate.
    """
    try:
        with open(certificate, "rb") as stored:
            identity = load_ssh_public_identity(stored.read())
    except (OSError, ValueError, UnsupportedAlgorithm) as error:
        raise ValueError(f"cannot read the certificate {certificate}: {error}") from error
    if not isinstance(identity, SSHCertificate):
        raise ValueError(f"{certificate} is a public key, not a certificate")
    valid_to = None if identity.valid_before == FOREVER else \
        datetime.datetime.fromtimestamp(identity.valid_before, datetime.timezone.utc)
    return valid_to, [principal.decode() for principal in identity.valid_principals]


def certificate_is_usable(key: str, principals: list[str], now: datetime.datetime | None = None) -> bool:
    if not (os.path.isfile(key) and os.path.isfile(key + "-cert.pub")):
        return False
    try:
        valid_to, listed = certificate_status(key + "-cert.pub")
    except ValueError:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (valid_to is None or valid_to - now >= MIN_REMAINING) and set(principals) <= set(listed)


def issue_folder(folder: str) -> str:
    """Where `fly ssh issue` writes a fresh key: the credentials folder, unless its path holds "@".

    flyctl parses the path argument as an email address first (mail.ParseAddress, internal/command/ssh/
    issue.go); a path with "@" passes for one, and flyctl then prompts for a path, which fails without a
    terminal. Such a folder gets the key through the system's temporary folder (mkdtemp: 0700)."""
    if "@" not in folder:
        return folder
    elsewhere = tempfile.gettempdir()
    if "@" in elsewhere:
        raise FlyInventoryError(
            f"the credentials folder {folder} and the temporary folder {elsewhere} both hold \"@\": `fly ssh issue` "
            "takes such a path for an email address and then prompts for another. Set credentials_dir in "
            "inventory/fly.yml (or DEVBOX_FLY_CREDENTIALS_DIR) to a folder without \"@\"")
    return elsewhere


def ensure_certificate(flyctl: Flyctl, org: str, folder: str, principals: list[str], hours: int) -> str:
    """Path of a private key whose -cert.pub is valid for at least another hour; issued when needed."""
    if not 1 <= hours <= 72:
        raise FlyInventoryError(f"certificate_hours = {hours}: flyctl issues 1 to 72 hours")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    key = os.path.join(folder, f"id_fly_{flyctl.app}")
    if certificate_is_usable(key, principals):
        return key
    # Never --overwrite (flyctl loops forever on it): issue into a fresh path, then move into place.
    scratch = tempfile.mkdtemp(prefix=".issue-", dir=issue_folder(folder))
    try:
        fresh = os.path.join(scratch, "key")
        args = ["ssh", "issue", org, fresh, "--hours", str(hours)]
        # --org as well: flyctl takes --org, then FLY_ORG, then the first argument, so FLY_ORG set
        # to another org would otherwise give a certificate from that org's CA.
        args += ["--org", org]
        for principal in principals:
            args += ["-u", principal]
        result = flyctl.run(*args)
        if result.returncode != 0 or not os.path.isfile(fresh + "-cert.pub") or not os.path.isfile(fresh):
            raise FlyInventoryError(f"`fly {' '.join(args[:2])} {org} ...` could not issue an SSH certificate: "
                                    f"{error_text(result)}")
        for path in (fresh, fresh + "-cert.pub"):
            os.chmod(path, 0o600)
        # shutil.move: the scratch folder may be on another filesystem (issue_folder).
        shutil.move(fresh + "-cert.pub", key + "-cert.pub")
        shutil.move(fresh, key)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    display.v(f"fly inventory: issued a {hours}-hour SSH certificate for {', '.join(principals)} in {folder}")
    return key


# ---- the plugin ---------------------------------------------------------------------------

class InventoryModule(BaseInventoryPlugin):
    NAME = "fly"

    def verify_file(self, path):
        return super().verify_file(path) and os.path.basename(path).endswith(("fly.yml", "fly.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            self.populate()
        except FlyInventoryError as error:
            raise AnsibleParserError(f"fly inventory: {error}") from None

    def project_path(self, value: str, default: str) -> str:
        return os.path.join(PROJECT_ROOT, os.path.expanduser(value or default))

    def populate(self) -> None:
        settings = read_fly_toml(self.project_path(self.get_option("fly_toml"), "fly.toml"), load_extra_vars(self.loader))
        for warning in settings["warnings"]:
            display.warning(warning)
        app = settings["app"]
        flyctl = Flyctl(find_fly(self.get_option("fly_command")), app)
        status = flyctl.app_status()
        if not private_network_only(app, flyctl.ip_addresses()) and settings["flycast"]:
            display.warning(f"app {app!r} has no Flycast address, so a stopped Machine does not wake when you connect: "
                            f"fly ips allocate-v6 --private -a {app}")
            settings = dict(settings, flycast={})
        machines = self.started_machines(flyctl, self.own_machines(flyctl.app, settings["process_groups"],
                                                                   flyctl.machines()))
        org = self.get_option("org") or ((status.get("Organization") or {}).get("Slug") or "")
        if not org:
            raise FlyInventoryError(f"no organization for app {app!r} in `fly status --json`: set org in inventory/fly.yml")
        # `fly ssh console` always adds `fly`; whether hallpass needs it is unknown, it costs nothing.
        principals = ["root", settings["user"], "fly"]
        key = ensure_certificate(flyctl, org, self.project_path(self.get_option("credentials_dir"), ".fly/ssh"),
                                 principals, self.get_option("certificate_hours"))
        flyctl.ensure_agent()
        flyctl.open_first_tunnel(f"{machines[0]['id']}.vm.{app}.internal")
        self.add_hosts(settings, flyctl.executable, key, machines)

    def own_machines(self, app: str, groups: list[str], machines: list[dict]) -> list[dict]:
        """The app's own Machines: not destroyed, in its process groups (so not a `fly console` or
        release-command Machine), on a host Fly can reach (else reported, not guessed at)."""
        own = [m for m in machines if m.get("state") not in GONE_STATES and process_group(m) in groups]
        others = [m for m in machines if m not in own and m.get("state") not in GONE_STATES]
        for machine in others:
            display.v(f"fly inventory: Machine {machine.get('id')} ({machine.get('name', '')}) is in process group "
                      f"{process_group(machine) or 'none'!r}, not {', '.join(groups)}: not a host")
        if others and not own:
            listing = ", ".join(f"{m.get('id')} (process group {process_group(m) or 'none'!r})" for m in others)
            raise FlyInventoryError(f"app {app!r} has no Machines in process group {', '.join(groups)}, only {listing}: "
                                    "run `fly deploy` (it creates them from fly.toml)")
        unknown = [m for m in own if m.get("host_status", "ok") != "ok"]
        if unknown:
            listing = ", ".join(f"{m['id']} ({m.get('name', '')}, host_status {m.get('host_status')})" for m in unknown)
            message = (f"app {app!r} has Machines on hosts Fly cannot reach now, left out: {listing}. "
                       f"See `fly machine status <id> -a {app}` or https://status.flyio.net")
            if len(unknown) == len(own):
                raise FlyInventoryError(message)
            display.warning(message)
        return [m for m in own if m not in unknown]

    def started_machines(self, flyctl: Flyctl, machines: list[dict]) -> list[dict]:
        app = flyctl.app
        if not machines:
            raise FlyInventoryError(f"app {app!r} has no Machines: run `fly deploy` (it creates them from fly.toml)")
        stopped = [m for m in machines if m.get("state") in STARTABLE_STATES]
        if stopped and self.get_option("start_stopped"):
            for machine in stopped:
                display.display(f"fly inventory: starting Machine {machine['id']} ({machine.get('name', '')})", stderr=True)
                flyctl.start(machine["id"])
            own = {m["id"] for m in machines}
            machines = [m for m in self.wait_started(flyctl, {m["id"] for m in stopped}) if m["id"] in own]
            stopped = []
        started = [m for m in machines if m.get("state") == "started"]
        others = [m for m in machines if m.get("state") != "started"]
        if others:
            listing = ", ".join(f"{m['id']} ({m.get('name', '')}, {m.get('state')})" for m in others)
            commands = "; ".join(f"fly machine start {m['id']} -a {app}" for m in others if m in stopped)
            message = f"app {app!r} has Machines that are not started and are left out: {listing}."
            if commands:
                message += f" Start them with: {commands} (or set start_stopped: true in inventory/fly.yml)"
            if not started:
                raise FlyInventoryError(f"no started Machines: {message}")
            display.warning(message)
        if not started:
            raise FlyInventoryError(f"app {app!r} has no started Machines: run `fly deploy`")
        return started

    def wait_started(self, flyctl: Flyctl, ids: set[str]) -> list[dict]:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            machines = flyctl.machines()
            if all(m.get("state") == "started" for m in machines if m["id"] in ids):
                return machines
            if time.monotonic() > deadline:
                late = ", ".join(m["id"] for m in machines if m["id"] in ids and m.get("state") != "started")
                raise FlyInventoryError(f"Machines {late} did not reach `started` within {START_WAIT_S} s: "
                                        f"see `fly machine status <id> -a {flyctl.app}`")
            time.sleep(2)

    def add_hosts(self, settings: dict, fly: str, key: str, machines: list[dict]) -> None:
        app = settings["app"]
        names = host_names(machines)
        self.inventory.add_group("fly")
        for machine in machines:
            host = names[machine["id"]]
            self.inventory.add_host(host, group="fly")
            region = re.sub(r"[^a-z0-9_]", "_", machine.get("region", "unknown").lower())
            self.inventory.add_group(f"fly_region_{region}")
            self.inventory.add_child(f"fly_region_{region}", host)
            paths = [m.get("path") for m in (machine.get("config") or {}).get("mounts") or []]
            if settings["home"] not in paths:
                display.warning(f"Machine {machine['id']} has no volume at {settings['home']}: the venv and notebooks "
                                "there are lost when it restarts; `fly deploy` attaches the [mounts] volume")
            target = f"{machine['id']}.vm.{app}.internal" if len(machines) > 1 else ""
            host_vars = dict(
                machine_vars(machine, app),
                ansible_ssh_private_key_file=key,
                ansible_ssh_common_args=ssh_common_args(fly, app, key + "-cert.pub"),
                dev_user_name=settings["user"],
                dev_user_home=settings["home"],
                dev_user_home_is_volume=True,
                swap_min_mb=settings["swap_mb"],
                devbox_open_hint=open_hint(settings["facts"], app, target, settings.get("flycast")),
            )
            for name, value in host_vars.items():
                self.inventory.set_variable(host, name, value)
