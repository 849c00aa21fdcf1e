"""Machines in Docker: the library of the local machine that `make up`, `make status`, the tests
and the bench drive.

One docker wrapper (Debian's client, the classic builder), one way to build an image, one
local machine (a container from the project's image with a named volume as home, as a Fly
Machine has) and one way to wait for something. Importable from tools/ (its own folder),
tests/ (tests/conftest.py puts tools/ on the path) and bench/ (which does the same).

The local machine holds no fact of its own: the user, the home (the volume's mount point), the
services and their ports come from the machine's facts (plugins/plugin_utils/devbox_machine.py:
the roles' defaults, overlaid with the local inventory's variables for the host of that name, as
Ansible reads them: inventory/group_vars/all, inventory/local.yml's vars, inventory/host_vars/<name>;
then what this tool passes and the user's variables), read through `LocalMachine.facts()`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import TypeVar

from docker_host import CA_IN_CONTAINER, DOCKER, host_ca_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection's name (devbox.machine) resolves through playbooks/collections, as in a play.
COLLECTIONS = os.path.join(ROOT, "playbooks", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# Ansible itself (half a second to import) is imported where the facts are worked out, not here: a `make up`
# whose facts are cached (LocalMachine.facts) never needs it.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_names import (  # noqa: E402
    LOCAL_MACHINE_NAME, BadName)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (  # noqa: E402
    JUPYTER, ServiceError, behind_jupyter)
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_tree import tree_files  # noqa: E402

LOCAL_INVENTORY = os.path.join(ROOT, "inventory", "local.yml")
# The local machine when DEVBOX_NAME names none: its container and the host of inventory/local.yml.
LOCAL_HOST = LOCAL_MACHINE_NAME
# The facts of each local machine, with the digest of what they were worked out from (LocalMachine.facts).
FACTS_CACHE = os.path.join(ROOT, ".cache", "facts")
# What the facts are worked out from, besides the variables: the inventory with its settings, the roles' defaults,
# the code that reads them.
FACTS_INPUTS = ("inventory", "roles", "plugins", "tools/docker_machines.py")
# LocalMachine(port=OWN_PORTS): every service published on this computer on its own port (`make up`).
OWN_PORTS = "own"
# Fly's own kill_timeout when fly.toml sets none.
FLY_KILL_TIMEOUT_S = 5
# A docker call that has not returned after this long is stuck (builds may take longer: no limit).
DOCKER_TIMEOUT_S = 600
# The image the tests run; its tag also names their containers, so runs of two tags never collide.
TEST_IMAGE = os.environ.get("DEVBOX_TEST_IMAGE", "devbox:test")
TEST_TAG = re.sub(r"[^a-z0-9]+", "-", TEST_IMAGE.rsplit(":", 1)[-1].lower()).strip("-") or "test"

T = TypeVar("T")


class DockerError(subprocess.CalledProcessError):
    """A docker command failed; its message carries the end of what docker said."""

    def __str__(self) -> str:
        said = (self.stderr or self.stdout or "").strip()[-2000:]
        return f"docker {' '.join(map(str, self.cmd[1:4]))} ... exited with {self.returncode}: {said}"


def docker(*args: str, check: bool = True, quiet: bool = True,
           timeout: float | None = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run the docker client; quiet captures its output (in the result), check raises DockerError."""
    result = subprocess.run([DOCKER, *args], text=True, capture_output=quiet, timeout=timeout,
                            env=dict(os.environ, DOCKER_BUILDKIT="0"))
    if check and result.returncode != 0:
        raise DockerError(result.returncode, result.args, result.stdout, result.stderr)
    return result


def docker_output(*args: str) -> str:
    """What a docker command printed, stripped; DockerError when it fails."""
    return docker(*args).stdout.strip()


def base_image(tree: str = ROOT) -> str:
    """The base image the Dockerfile of `tree` builds on (its tools/base_image.py makes one if needed)."""
    return subprocess.run([sys.executable, os.path.join(tree, "tools", "base_image.py")],
                          check=True, text=True, stdout=subprocess.PIPE).stdout.strip()


def build_image(image: str, context: str, no_cache: bool = False, labels: dict | None = None, **build_args: str) -> None:
    """`docker build -q -t image context` with these --build-arg values and labels (classic builder)."""
    arguments = [argument for key, value in build_args.items() for argument in ("--build-arg", f"{key}={value}")]
    arguments += [argument for key, value in (labels or {}).items() for argument in ("--label", f"{key}={value}")]
    docker("build", "-q", *(["--no-cache"] if no_cache else []), *arguments, "-t", image, context, timeout=None)


def build_devbox_image(image: str, user: str, tree: str = ROOT, base: str | None = None, no_cache: bool = False,
                       labels: dict | None = None) -> str:
    """The project's image from the Dockerfile of `tree` for the dev user `user` (the facts' "user");
    returns the base it was built on."""
    base = base or base_image(tree)
    build_image(image, tree, no_cache, labels, BASE_IMAGE=base, NONROOT_USER=user)
    return base


class MachineError(Exception):
    """Something about the local machine the user must fix (their variables, a port in use); the
    message says what and how. Raised before anything is created, or after cleaning up."""


def parse_vars(text: str | None) -> dict:
    """The user's variables (`make up VARS=...`): YAML or JSON, a mapping; MachineError when not.

    Parsed as ansible-playbook parses `-e '{...}'`; the result goes on to it as JSON, so YAML
    without braces (`jupyter_port: 9000`, which `-e` would read as key=value and drop) counts too.
    """
    if not text or not text.strip():
        return {}
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    try:
        data = DataLoader().load(text)
    except AnsibleError as error:
        raise MachineError(f"VARS is not valid YAML or JSON: {error.message}") from None
    if not isinstance(data, dict):
        raise MachineError(f"VARS must be a mapping of variable names to values, such as "
                           f"VARS='{{\"jupyter_port\": 9000}}', not {text.strip()!r}")
    return data


def as_json(variables: dict) -> str:
    """Variables as the JSON text of one `-e` (values YAML gave as dates and the like become text)."""
    return json.dumps(variables, default=str)


def local_host_vars(name: str = LOCAL_HOST, inventory: str = LOCAL_INVENTORY) -> dict:
    """The variables the local inventory gives the host `name`, in Ansible's order: group_vars/all beside the
    inventory, then the file's own vars (the plugin's host variables), then host_vars/<name> beside it.
    Read by Ansible's own vars plugins, as a playbook run reads them."""
    from ansible.inventory.group import Group
    from ansible.inventory.host import Host
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.vars import combine_vars
    from ansible.vars.plugins import get_vars_from_inventory_sources

    from ansible_collections.devbox.machine.plugins.inventory.devbox_local import host_name, host_vars
    name = host_name(name)
    loader = DataLoader()
    config = loader.load_from_file(inventory, trusted_as_template=True) or {}
    everyone = get_vars_from_inventory_sources(loader, [inventory], [Group("all")], "all")
    own = get_vars_from_inventory_sources(loader, [inventory], [Host(name)], "all")
    return combine_vars(combine_vars(everyone, host_vars(name, config.get("vars") or {})), own)


def facts_digest(name: str, given: str, root: str = ROOT) -> str | None:
    """The digest of what a local machine's facts come from: its name, the variables given (JSON), and every file
    of FACTS_INPUTS; None when the inventory's files call a lookup (a value read from elsewhere, the environment
    say, which no digest of the files can tell has changed)."""
    hashed = hashlib.sha256(f"{name}\0{given}\0".encode())
    for path, content in tree_files(root, FACTS_INPUTS):
        if path.startswith("inventory" + os.sep) and re.search(rb"\b(lookup|query|q)\s*\(", content):
            return None
        hashed.update(path.encode() + b"\0" + content + b"\0")
    return hashed.hexdigest()


def cached_facts(name: str, digest: str, folder: str | None = None) -> dict | None:
    """The facts kept for this digest, or None."""
    try:
        with open(os.path.join(folder or FACTS_CACHE, f"{name}.json"), encoding="utf-8") as kept:
            entry = json.load(kept)
    except (OSError, ValueError):
        return None
    return entry.get("facts") if isinstance(entry, dict) and entry.get("digest") == digest else None


def keep_facts(name: str, digest: str, facts: dict, folder: str | None = None) -> None:
    """Keep the facts for the next command (0600: they name the machine's user and ports); never fails."""
    folder = folder or FACTS_CACHE
    with contextlib.suppress(OSError):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
        handle = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as part:
            json.dump({"digest": digest, "facts": facts}, part)
        os.replace(path + ".part", path)


def port_is_free(port: int) -> bool:
    """True when a program of this computer could listen on 127.0.0.1:port now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left by a past server is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_variable(service: str) -> str:
    """What sets a service's port, in words for a message."""
    return {JUPYTER: "jupyter_port", "tensorboard": "tensorboard_port"}.get(
        service, "the port of its devbox_services entry")


PORT_TAKEN = re.compile(r"(?:Bind for |listen tcp4? )127\.0\.0\.1:(\d+)")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call predicate every `interval` seconds until it returns something true, and return that.

    After `timeout` seconds it is asked one last time; if that is false too, TimeoutError
    says what was awaited (`what`, e.g. "an SSH server in m1").
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    value = predicate()
    if value:
        return value
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ssh_banner(address: str, port: int = 22) -> bool:
    """True once an SSH server answers there with its banner."""
    try:
        with socket.create_connection((address, port), timeout=2) as connection:
            return connection.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def said(output: str) -> str:
    """A playbook's output as one line: the YAML callback folds long messages and doubles single quotes."""
    return " ".join(output.replace("''", "'").split())


def recap_changed(output: str) -> int:
    """The changed=N of a playbook's recap (its last play)."""
    match = re.search(r"changed=(\d+)", output.split("PLAY RECAP")[-1])
    assert match, output[-2000:]
    return int(match.group(1))


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported a change: what a failed changed=0 assertion shows."""
    return re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?changed: ", output)


def tagged(base: str) -> str:
    """A container or volume name for a test, carrying the tag of DEVBOX_TEST_IMAGE."""
    return f"{base}-{TEST_TAG}"


class LocalMachine:
    """One container + one named volume as the dev user's home, provisioned over the docker connection.

    Its facts (user, home, services) are the machine's (`facts()`): the roles' defaults with
    inventory/local.yml's host variables, this tool's own (`tool_vars()`) and `given` (the user's
    variables, passed on to every playbook run) over them. The volume is mounted at the home, PID 1
    is told the home (DEVBOX_HOME), and the container is replaced when it differs from the facts.

    port: what is published on this computer's 127.0.0.1: None nothing; OWN_PORTS every service on
    its own port (`make up`); a number: Jupyter there (0: any free port) and every other service on
    its own port (on any free one with 0 too). gpus: the value of `docker run --gpus` (None: none);
    env: more of PID 1's environment (the tests shorten the idle stop's polling); run_args: more
    `docker run` arguments (a network, mounts).
    """

    def __init__(self, name: str, volume: str, image: str, port: int | str | None = None, gpus: str | None = None,
                 env: dict | None = None, run_args: list[str] | None = None, given: dict | None = None):
        self.name, self.volume, self.image, self.port, self.gpus = name, volume, image, port, gpus
        self.env = env or {}
        self.run_args = run_args or []
        self.given = dict(given or {})
        self.ca_bundle = host_ca_bundle()
        self._facts: tuple[str, dict] | None = None

    # ---- the facts ------------------------------------------------------------------------

    def tool_vars(self) -> dict:
        """What this tool itself tells every run: the container to reach, and where services whose ip is auto
        listen in it (its own name, its address on the Docker network the published ports lead to), as the
        local inventory says for the host of this name; on the command line too, for a run started without
        DEVBOX_NAME in its environment (which then names the host devbox-local)."""
        return {"ansible_host": self.name, "devbox_private_ip": self.name}

    def facts(self) -> dict:
        """The machine's facts for this container and `given`; MachineError when the variables do not make a
        machine (a service entry that is not usable, a variable that does not template). Kept in .cache/facts
        with the digest of what they come from (facts_digest), so a `make up` that changes none of it does not
        import and run Ansible's templating again."""
        key = as_json(self.given)
        if self._facts is None or self._facts[0] != key:
            digest = facts_digest(self.name, key)
            found = cached_facts(self.name, digest) if digest else None
            if found is None:
                found = self._work_out_facts()
                if digest:
                    keep_facts(self.name, digest, found)
            self._facts = (key, found)
        return self._facts[1]

    def _work_out_facts(self) -> dict:
        from ansible.errors import AnsibleError
        from ansible.utils.vars import combine_vars

        from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import machine
        try:
            return machine(combine_vars(combine_vars(local_host_vars(self.name), self.tool_vars()), self.given))
        except BadName as error:
            raise MachineError(str(error)) from None
        except (ServiceError, KeyError, ValueError, TypeError, AnsibleError) as error:
            raise MachineError(f"the variables do not describe a machine: {error}") from None

    def home(self) -> str:
        return self.facts()["home"]

    def service(self, name: str) -> dict | None:
        """The enabled service of that name, from the facts."""
        return next((service for service in self.facts()["services"] if service["name"] == name), None)

    def wanted_ports(self) -> dict[int, tuple[int, str]]:
        """Each published service: its port on the machine -> (its port on this computer's 127.0.0.1, 0 for
        any free one; its name)."""
        if self.port is None:
            return {}
        wanted = {}
        for service in self.facts()["services"]:
            if behind_jupyter(service):
                continue  # reached through Jupyter's port
            if self.port == OWN_PORTS:
                host = service["port"]
            elif service["name"] == JUPYTER:
                host = int(self.port)
            else:
                host = service["port"] if self.port else 0
            wanted[service["port"]] = (host, service["name"])
        return wanted

    # ---- the container --------------------------------------------------------------------

    def inspect(self) -> dict | None:
        """`docker inspect` of the container, None when there is none."""
        result = docker("inspect", "--type", "container", self.name, check=False)
        if result.returncode != 0:
            return None
        found = json.loads(result.stdout or "[]")
        return found[0] if found else None

    def state(self) -> str | None:
        info = self.inspect()
        return info["State"]["Status"] if info else None

    def runs_current_image(self) -> bool:
        running = docker("inspect", "-f", "{{.Image}}", self.name, check=False).stdout.strip()
        built = docker("image", "inspect", "-f", "{{.Id}}", self.image, check=False).stdout.strip()
        return running == built

    def has_gpus(self) -> bool:
        requests = docker("inspect", "-f", "{{json .HostConfig.DeviceRequests}}", self.name, check=False).stdout.strip()
        return requests not in ("", "null", "[]")

    def differences(self, info: dict) -> list[str]:
        """Why the container described by `docker inspect` is not the machine the facts say now (empty: it is)."""
        reasons = []
        built = docker("image", "inspect", "-f", "{{.Id}}", self.image, check=False).stdout.strip()
        if info.get("Image") != built:
            reasons.append(f"it runs another image than {self.image}")
        home = self.home()
        mounted = [mount.get("Destination") for mount in info.get("Mounts") or []
                   if mount.get("Type") == "volume" and mount.get("Name") == self.volume]
        if mounted != [home]:
            where = ", ".join(mounted) or "nowhere"
            reasons.append(f"the volume {self.volume} is mounted at {where}, the home is {home}")
        if f"DEVBOX_HOME={home}" not in ((info.get("Config") or {}).get("Env") or []):
            reasons.append(f"PID 1 was not told the home {home}")
        bindings = (info.get("HostConfig") or {}).get("PortBindings") or {}
        published = {int(key.split("/")[0]): [(binding.get("HostIp"), binding.get("HostPort") or "0")
                                              for binding in value or []]
                     for key, value in bindings.items() if key.endswith("/tcp")}
        wanted = {port: [("127.0.0.1", str(host))] for port, (host, _) in self.wanted_ports().items()}
        if set(published) != set(wanted) or any(
                wanted[port] != published[port] and not (wanted[port][0][1] == "0" and len(published[port]) == 1
                                                         and published[port][0][0] == "127.0.0.1")
                for port in wanted):
            reasons.append(f"it publishes {describe_bindings(published)}, the services want {describe_bindings(wanted)}")
        gpus = (info.get("HostConfig") or {}).get("DeviceRequests") or []
        if bool(gpus) != bool(self.gpus):
            reasons.append("GPUs " + ("off" if self.gpus else "on") + ", wanted " + ("on" if self.gpus else "off"))
        return reasons

    def start_reasons(self, info: dict | None = None) -> list[str] | None:
        """Why start() would (re)create the container: None when it runs and is what the facts say (it is
        kept), [] when there is none, else the reasons to replace it."""
        info = self.inspect() if info is None else info
        if info is None:
            return []
        reasons = self.differences(info)
        if info["State"]["Status"] != "running":
            reasons.append(f"it is {info['State']['Status']}")
        return reasons or None

    def start(self) -> list[str]:
        """Start the container unless it runs and is what the facts say (image, the volume at the home, the
        services' ports, the GPUs asked for); anything else is replaced. Returns why it was replaced.

        Like a Fly Machine after a deploy or a restart: the root FS comes fresh from the image
        and the volume stays; a running container is stopped as Fly stops one (stop()) first. MachineError
        (nothing left behind) when a port is taken.
        """
        info = self.inspect()
        reasons = self.start_reasons(info)
        if reasons is None:
            return []
        self.check_ports_free(info)
        if info is not None:
            if info["State"]["Status"] == "running":
                self.stop()
            self.remove()
        self.run()
        return reasons

    def check_ports_free(self, info: dict | None = None) -> None:
        """MachineError naming the port and the service when another program holds a port to publish (ports
        this container holds itself are its own)."""
        held = {binding.get("HostPort") for value in (((info or {}).get("NetworkSettings") or {}).get("Ports") or {}).values()
                for binding in value or []}
        for port, (host, name) in sorted(self.wanted_ports().items()):
            if host and str(host) not in held and not port_is_free(host):
                raise MachineError(port_taken(host, name, self.name))

    def run(self, image: str | None = None, run_args: list[str] | None = None) -> None:
        """`docker run` a new container (none of that name may exist); image and run_args replace
        the machine's own for this one start. When docker cannot publish a port, the container it
        created is removed and MachineError names the port and the service."""
        home = self.home()
        mounts = ["-v", f"{self.volume}:{home}"]
        if self.ca_bundle:
            mounts += ["-v", f"{self.ca_bundle}:{CA_IN_CONTAINER}:ro"]
        wanted = self.wanted_ports()
        ports = [argument for port, (host, _) in sorted(wanted.items())
                 for argument in ("-p", f"127.0.0.1:{host or ''}:{port}")]
        gpus = ["--gpus", self.gpus] if self.gpus else []
        env = [f"--env={key}={value}" for key, value in dict(self.env, DEVBOX_HOME=home).items()]
        extra = self.run_args if run_args is None else run_args
        try:
            docker("run", "-d", "--name", self.name, "--hostname", self.name, *mounts, *ports, *gpus, *env, *extra,
                   image or self.image)
        except DockerError as error:
            taken = PORT_TAKEN.search(str(error))
            if taken is None:
                raise
            self.remove()  # docker created it before it failed to publish: no `Created` container stays behind
            host = int(taken.group(1))
            name = next((name for port, (wanted_host, name) in wanted.items() if wanted_host == host), "a service")
            raise MachineError(port_taken(host, name, self.name)) from None

    def published_address(self, service: str = JUPYTER) -> str | None:
        """host:port where this computer reaches the service's port (Jupyter's unless told), if it is published."""
        found = self.service(service)
        if found is None:
            return None
        result = docker("port", self.name, f"{found['port']}/tcp", check=False)
        lines = result.stdout.strip().splitlines() if result.returncode == 0 else []
        if lines:
            return next((line for line in lines if line.startswith("127.0.0.1:")), lines[0])
        # Not running (docker port says nothing then): the port asked for, where it was one.
        host = self.wanted_ports().get(found["port"], (0, ""))[0]
        return f"127.0.0.1:{host}" if host else None

    def published_ports(self) -> dict[int, int]:
        """Each port of the machine published on this computer -> its port here (`docker port`)."""
        result = docker("port", self.name, check=False)
        found = {}
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            inside, _, outside = line.partition(" -> ")
            if inside.endswith("/tcp") and outside:
                found.setdefault(int(inside.split("/")[0]), int(outside.rsplit(":", 1)[1]))
        return found

    def stop(self) -> None:
        """Stop the container as Fly stops a Machine: SIGTERM to PID 1, which stops every service cleanly (Jupyter
        shuts its kernels down), and SIGKILL only after fly.toml's kill_timeout."""
        timeout = stop_timeout()
        docker("stop", "-t", str(timeout), self.name, check=False, timeout=timeout + DOCKER_TIMEOUT_S)

    def remove(self) -> None:
        """Remove the container at once (SIGKILL if it runs: stop() first for a clean stop)."""
        docker("rm", "-f", self.name, check=False)

    def remove_volume(self) -> None:
        docker("volume", "rm", "-f", self.volume, check=False)

    def exec(self, command: str, user: str = "root") -> subprocess.CompletedProcess:
        return docker("exec", "-u", user, self.name, "sh", "-c", command, check=False)

    def playbook_command(self, *extra: str, playbook: str = "site.yml") -> list[str]:
        """ansible-playbook with the local inventory, pointed at this container, with the tool's variables and
        `given` (as JSON)."""
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                   "-i", LOCAL_INVENTORY, "-e", as_json(self.tool_vars())]
        if self.given:
            command += ["-e", as_json(self.given)]
        if playbook == "site.yml":
            published = self.published_ports() if self.port is not None else {}
            if published:  # the report's URLs: where this computer reaches each service's port
                command += ["-e", as_json({"devbox_address_here": "127.0.0.1", "devbox_ports_here": published})]
            if self.ca_bundle:
                command += ["-e", f"python_env_ca_bundle={CA_IN_CONTAINER}"]
        return command + list(extra) + [os.path.join(ROOT, "playbooks", playbook)]

    def provision(self, *extra: str, capture: bool = False, playbook: str = "site.yml",
                  env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the playbook (site.yml unless told) against this container, the inventory's host named as it
        (DEVBOX_NAME); env adds to os.environ."""
        env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "DEVBOX_NAME": self.name, **(env or {})}
        return subprocess.run(self.playbook_command(*extra, playbook=playbook), cwd=ROOT, env=env, text=True,
                              capture_output=capture)


def local_facts(given: dict | None = None) -> dict:
    """The facts of the local machine `make up` makes with these variables (none: the defaults)."""
    return LocalMachine(LOCAL_HOST, volume=f"{LOCAL_HOST}-home", image="", given=given).facts()


def stop_timeout(fly_toml: str = os.path.join(ROOT, "fly.toml")) -> int:
    """Seconds PID 1 gets between SIGTERM and SIGKILL: fly.toml's kill_timeout, the one stop budget of every
    target (a number of seconds, or a duration such as "30s")."""
    with open(fly_toml, "rb") as config:
        value = tomllib.load(config).get("kill_timeout", FLY_KILL_TIMEOUT_S)
    if isinstance(value, str) and re.fullmatch(r"\d+s?", value.strip()):
        value = int(value.strip().rstrip("s"))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MachineError(f"{fly_toml}: kill_timeout = {value!r} must be a number of seconds")
    return value


def describe_bindings(bindings: dict) -> str:
    shown = [f"{ip}:{host}->{port}" for port, pairs in sorted(bindings.items()) for ip, host in pairs]
    return ", ".join(shown) or "no port"


def port_taken(host: int, service: str, name: str) -> str:
    setting = port_variable(service) + (" or DEVBOX_PORT" if service == JUPYTER else "")
    return (f"port {host} on 127.0.0.1 is in use on this computer, and the service {service!r} is to be published "
            f"there: stop what uses it, or give {service} another port ({setting}). The container {name} was not "
            "created.")


@contextlib.contextmanager
def fresh(machine: LocalMachine, start: bool = True) -> Iterator[LocalMachine]:
    """The machine on a new volume, its container started unless told; afterwards, also when a
    test failed, the container and the volume are removed."""
    machine.remove()
    machine.remove_volume()
    if start:
        machine.start()
    try:
        yield machine
    finally:
        machine.remove()
        machine.remove_volume()
