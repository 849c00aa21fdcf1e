#!/usr/bin/env python3
"""Benchmark of issues 5 and 12: our Ansible-provisioned dev machine against the seed's boot path.

Measures a snapshot of the project taken at the start (the commit HEAD, another with --commit,
or with --worktree the working tree), so edits made meanwhile do not mix into a run. Builds both images on the same
base (tools/base_image.py): the seed's, re-implemented from its description under bench/seed/,
and ours from the project's Dockerfile. Then measures, side by side and interleaved, each
figure the median of --runs runs:

  image  image sizes
  cold   fresh volume to Jupyter answering with its token (ours: container + playbooks/site.yml)
  warm   container recreated on a provisioned volume to Jupyter answering (no Ansible for ours)
  noop   no-op rerun of site.yml: seconds and task results that ran a module on the host
  add    one small package added and site.yml rerun, against uv installing it alone
  multi  no-op rerun on 4 machines against 1

noop and add are measured at each round trip of --rtt-ms (default 0: loopback as it is).

--connection says how ansible-playbook reaches ours' machines: docker (`docker exec`, the
default) or ssh (real OpenSSH to an sshd in ours' containers: the measured tree's
tests/fly_machine built on top of ours, on an IPv6 Docker network, reached at each container's
IPv6 address port 22 with a certificate of a CA made per run; above 0 ms through
bench/latency_relay.py as the ProxyCommand).

Prints a markdown table and writes it to bench/results/latest.md (a subset chosen with --only,
fewer than 3 runs, or another commit, goes to bench/results/partial.md.tmp instead, so it never
replaces the full table). Every container, volume and network it creates is named
devbox-bench-<pid>-* and removed at the end, also on Ctrl-C. Progress goes to stderr. Run it
with `make bench`; it is not a test. bench/before_after.py puts two commits side by side.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace

import yaml

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from docker_host import CA_IN_CONTAINER, DOCKER, host_ca_bundle  # noqa: E402
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
USER = "pythonuser"
HOME = f"/home/{USER}"
VENV = f"{HOME}/project-venv"
SEED_IMAGE = "devbox-bench:seed"
OURS_IMAGE = "devbox-bench:ours"  # with -<label> for --before's snapshots; -ssh adds tests/fly_machine's sshd
SIDES = ("seed", "ours")
SSH_READY_TIMEOUT_S = 60
FIGURES = ("image", "cold", "warm", "noop", "add", "multi")
FULL_OUTPUT = os.path.join(BENCH, "results", "latest.md")
PARTIAL_OUTPUT = os.path.join(BENCH, "results", "partial.md.tmp")
JUPYTER_PORT = 8888
ANSWER_TIMEOUT_S = 300
# A restart normally answers within seconds: give up on one sooner, record it, go on.
WARM_TIMEOUT_S = 60
TOKEN_IN_LOG = re.compile(r"[?&]token=([0-9a-f]+)")
MACHINES_FOR_MULTI = 4
# Issue 12's targets by round trip (ms); other round trips are reported without one.
NOOP_TARGETS_S = {0.0: 1.5, 50.0: 2.5}
ADD_TARGETS_S = {0.0: 1.5}  # seconds over uv installing the package alone


class BenchError(Exception):
    pass


def say(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def docker(*args: str, env: dict | None = None) -> str:
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:3])} ... failed: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def jupyter_answers(base_url: str, token: str) -> bool:
    request = urllib.request.Request(f"{base_url}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def token_from_log(container: str, timeout: float) -> str:
    """The token Jupyter prints in its URL; follows the log so it is seen the moment it appears."""
    with subprocess.Popen([DOCKER, "logs", "-f", container], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as logs:
        killer = threading.Timer(timeout, logs.kill)
        killer.daemon = True
        killer.start()
        try:
            for line in logs.stdout:
                match = TOKEN_IN_LOG.search(line)
                if match:
                    return match.group(1)
        finally:
            killer.cancel()
            logs.kill()
    raise BenchError(f"{container}: no Jupyter token in its log within {timeout:.0f} s "
                     f"(or the container stopped); see `docker logs {container}`")


@dataclass
class Machine:
    """A container of one side (seed or ours) with a named volume of the same name as home."""
    side: str
    name: str
    ca_bundle: str | None
    own_image: str  # the side's own image
    image: str  # the connection's image of the side (own_image, or with sshd added)
    run_args: list[str] = field(default_factory=list)  # the connection's, e.g. its network
    token: str | None = None

    def start(self, bare: bool = False) -> None:
        """bare: from the side's own image, without the connection's additions (such as sshd)."""
        command = ["run", "-d", "--name", self.name, "--hostname", self.name,
                   "-v", f"{self.name}:{HOME}", "-p", f"127.0.0.1::{JUPYTER_PORT}"]
        if self.ca_bundle:
            command += ["-v", f"{self.ca_bundle}:{CA_IN_CONTAINER}:ro"]
            if self.side == "seed":
                command += ["-e", f"PIP_CERT={CA_IN_CONTAINER}"]  # the seed's pip has no other setting
        if not bare:
            command += self.run_args
        docker(*command, self.own_image if bare else self.image)

    def remove_container(self) -> None:
        subprocess.run([DOCKER, "rm", "-f", self.name], capture_output=True)

    def port(self) -> int:
        return int(docker("port", self.name, str(JUPYTER_PORT)).splitlines()[0].rsplit(":", 1)[1])

    def read_token(self, timeout: float) -> str:
        """Ours keeps the token on the volume; the seed prints a new one at every start."""
        if self.side == "ours":
            return docker("exec", self.name, "cat", f"{HOME}/.jupyter/devbox_token")
        return token_from_log(self.name, timeout)

    def wait_answering(self, since: float, timeout: float = ANSWER_TIMEOUT_S) -> float:
        """Seconds from `since` until Jupyter answers an authenticated request from the host."""
        deadline = since + timeout
        if self.side == "seed" or self.token is None:
            self.token = self.read_token(max(1.0, deadline - time.monotonic()))
        urls = self.jupyter_urls()
        while not any(jupyter_answers(url, self.token) for url in urls):
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: Jupyter did not answer within {timeout:.0f} s\n"
                                 f"{self.diagnostics()}")
            time.sleep(0.05)
        return time.monotonic() - since

    def jupyter_urls(self) -> list[str]:
        """Where Jupyter may answer the host: the port published on 127.0.0.1 (IPv4) and, on an IPv6
        network (--connection ssh), the container's IPv6 address: jupyter_ip names the container,
        which resolves to that address there, as fly-local-6pn does on Fly."""
        addresses = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{end}}",
                           self.name).split()
        return [f"http://127.0.0.1:{self.port()}"] + [f"http://[{address}]:{JUPYTER_PORT}" for address in addresses]

    def diagnostics(self) -> str:
        """The end of the container's log and, for ours, of the launcher's log on the volume."""
        commands = [["logs", "--tail", "30", self.name]]
        if self.side == "ours":
            commands.append(["exec", self.name, "tail", "-n", "30", f"{HOME}/.jupyter/devbox-jupyter.log"])
        outputs = [subprocess.run([DOCKER, *command], capture_output=True, text=True) for command in commands]
        return "\n".join(f"--- docker {' '.join(command[:2])}:\n{output.stdout}{output.stderr}"
                         for command, output in zip(commands, outputs))


class DockerConnection:
    """ansible-playbook reaches ours' containers with `docker exec` (community.docker.docker)."""
    name = "docker"
    description = "docker (community.docker.docker, `docker exec`)"

    def __init__(self, workdir: str, prefix: str, images: dict[str, str]):
        self.workdir = workdir
        self.images = images  # side -> the side's own image
        self.rtt_ms = 0.0  # docker exec has no ProxyCommand: only 0 (parse_args enforces it)

    def prepare(self, tree: str) -> None:
        """Called once ours' image is built."""

    def image(self, side: str) -> str:
        return self.images[side]

    def run_args(self, side: str) -> list[str]:
        """Extra `docker run` arguments of a container of that side."""
        return []

    def hostvars(self, machine: Machine) -> dict:
        return {"ansible_connection": "community.docker.docker", "ansible_host": machine.name}

    def wait_ready(self, machine: Machine, timeout: float = SSH_READY_TIMEOUT_S) -> None:
        """Returns once ansible-playbook can reach the (just started) machine."""

    def playbook_env(self, run: int) -> dict:
        return {}

    def after_playbook(self, run: int) -> None:
        pass

    def close(self) -> None:
        pass


class SshConnection(DockerConnection):
    """ansible-playbook reaches ours' containers with OpenSSH over IPv6, as on Fly's 6PN.

    Ours' containers run ours' image plus sshd (the measured tree's tests/fly_machine on top of ours: an sshd
    that accepts only ed25519 certificates of the CA mounted at /etc/ssh/fly_org_ca.pub; since
    the pipelining work a strict one: exec only, no SFTP or PTY, MaxSessions 1, listening on the
    container's IPv6 address only). They sit on an IPv6 Docker network made per bench run, and
    ansible-playbook connects to each container's IPv6 address, port 22, with a certificate
    for root, the dev user and `fly` (as `fly ssh issue` makes them). The project's ansible.cfg
    turns ControlMaster on; each playbook run gets its own ControlPath directory, so it opens
    its own master connections (as a rerun minutes later would), closed after it (untimed).
    With a round trip set (rtt_ms > 0) ssh reaches port 22 through bench/latency_relay.py as
    its ProxyCommand, which delays each direction by half of it.
    """
    name = "ssh"

    def __init__(self, workdir: str, prefix: str, images: dict[str, str]):
        super().__init__(workdir, prefix, images)
        self.ssh_image = images["ours"] + "-ssh"
        keys = os.path.join(workdir, "ssh")
        self.ca = os.path.join(keys, "ca")
        self.key = os.path.join(keys, "id_ed25519")
        self.certificate = self.key + "-cert.pub"
        self.network = f"{prefix}-6pn"
        self.network_created = False
        self.strict = False  # whether the measured tree's stand-in is the strict one
        self.rtt_ms = 0.0  # the round trip the next playbook runs see (through the relay when > 0)
        # Unix socket paths are short (108 bytes): %C adds 40 characters to the directory.
        self.control_root = tempfile.mkdtemp(prefix="devbox-bench-cp-", dir="/tmp")

    @property
    def description(self) -> str:
        stand_in = ("strict: exec only, no SFTP/scp/PTY, MaxSessions 1, IPv6 only" if self.strict
                    else "full OpenSSH: SFTP, PTY, any number of sessions")
        return (f"ssh (OpenSSH to each container's IPv6 address on an `--ipv6` Docker network, port 22, "
                f"ControlMaster on, a fresh master connection per playbook run; the measured tree's "
                f"tests/fly_machine sshd built on ours, {stand_in}; round trips above 0 ms through "
                f"bench/latency_relay.py as ProxyCommand; warm restarts from ours' own image, without sshd)")

    def prepare(self, tree: str) -> None:
        os.makedirs(os.path.dirname(self.key))
        for path, comment in ((self.ca, "devbox-bench-ca"), (self.key, "devbox-bench")):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
        subprocess.run(["ssh-keygen", "-q", "-s", self.ca, "-I", "devbox-bench", "-n", f"root,{USER},fly",
                        "-V", "-5m:+12h", self.key + ".pub"], check=True)
        with open(os.path.join(tree, "tests", "fly_machine", "sshd_hallpass.conf")) as config:
            self.strict = re.search(r"^MaxSessions\s+1\s*$", config.read(), re.M) is not None
        say(f"building {self.ssh_image} on {self.images['ours']} (tests/fly_machine)")
        docker("build", "-q", "--build-arg", f"DEVBOX_IMAGE={self.images['ours']}", "-t", self.ssh_image,
               os.path.join(tree, "tests", "fly_machine"), env=dict(os.environ, DOCKER_BUILDKIT="0"))
        # A unique local /64 like the e2e tests' (Fly's 6PN addresses are fdaa:...).
        docker("network", "create", "--ipv6", "--subnet", f"fdaa:0:{os.urandom(2).hex()}:a7b::/64", self.network)
        self.network_created = True

    def image(self, side: str) -> str:
        return self.ssh_image if side == "ours" else self.images[side]

    def run_args(self, side: str) -> list[str]:
        if side != "ours":
            return []
        return ["--network", self.network, "-v", f"{self.ca}.pub:/etc/ssh/fly_org_ca.pub:ro"]

    def address(self, machine: Machine) -> str:
        found = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.network}").GlobalIPv6Address}}}}',
                       machine.name)
        if not found:
            raise BenchError(f"{machine.name}: no IPv6 address on {self.network}")
        return found

    def hostvars(self, machine: Machine) -> dict:
        options = ["-o", f"CertificateFile={self.certificate}", "-o", "IdentitiesOnly=yes",
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        if self.rtt_ms > 0:
            relay = [sys.executable, os.path.join(BENCH, "latency_relay.py"), "--rtt-ms", f"{self.rtt_ms:g}"]
            options += ["-o", f"ProxyCommand={shlex.join(relay)} %h %p"]
        return {"ansible_connection": "ssh", "ansible_host": self.address(machine), "ansible_port": 22,
                "ansible_user": "root", "ansible_ssh_private_key_file": self.key,
                "ansible_ssh_common_args": shlex.join(options)}

    def wait_ready(self, machine: Machine, timeout: float = SSH_READY_TIMEOUT_S) -> None:
        """Until sshd sends its banner on the container's IPv6 address."""
        if machine.side != "ours":
            return
        address = self.address(machine)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((address, 22), timeout=2) as connection:
                    if connection.recv(8).startswith(b"SSH-2.0"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{machine.name}: no SSH banner on [{address}]:22 within {timeout:.0f} s\n"
                                 f"{machine.diagnostics()}")
            time.sleep(0.05)

    def control_dir(self, run: int) -> str:
        return os.path.join(self.control_root, str(run))

    def playbook_env(self, run: int) -> dict:
        return {"ANSIBLE_SSH_CONTROL_PATH_DIR": self.control_dir(run)}

    def after_playbook(self, run: int) -> None:
        """Ends the run's ControlPersist masters (untimed), as their idle timeout would."""
        for socket_path in glob.glob(os.path.join(self.control_dir(run), "*")):
            subprocess.run(["ssh", "-O", "exit", "-S", socket_path, "unused"], capture_output=True, timeout=30)

    def close(self) -> None:
        """After the containers are gone (Bench.cleanup)."""
        for run_dir in glob.glob(os.path.join(self.control_root, "*")):
            self.after_playbook(int(os.path.basename(run_dir)))
        shutil.rmtree(self.control_root, ignore_errors=True)
        if self.network_created:
            subprocess.run([DOCKER, "network", "rm", self.network], capture_output=True)
            self.network_created = False


# Connection kinds for the playbook runs (--connection).
CONNECTIONS = {"docker": DockerConnection, "ssh": SshConnection}


@dataclass
class Row:
    figure: str
    baseline: str
    ours: str
    ratio: str
    target: str
    met: bool | None  # None: reported without a target
    samples: dict[str, list[float]] = field(default_factory=dict)


# The kinds of task bench_stats records, as the time breakdown names them.
TASK_KINDS = {
    "module": "tasks that ran a module on the machine (one exec each, loop items one each)",
    "controller": "tasks on the controller only (assert, set_fact, debug, include_role, validate_argument_spec...)",
    "skipped": "module tasks that no host ran (their `when` was false)",
}


def at_rtt(rtt_ms: float) -> str:
    """The figure's label suffix for a round trip added by the relay (none on plain loopback)."""
    return f" at {rtt_ms:g} ms round trip" if rtt_ms else ""


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} s ({min(values):.{digits}f}–{max(values):.{digits}f})"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str, revision: str | None = None, label: str = ""):
        """revision: the commit to measure (None: HEAD, or the working tree with --worktree);
        label: names this snapshot's images, containers and network beside another's (--before)."""
        self.args = args
        self.workdir = workdir
        self.revision = revision
        self.label = label
        suffix = f"-{label}" if label else ""
        self.prefix = f"devbox-bench-{os.getpid()}{suffix}"
        self.images = {"seed": SEED_IMAGE, "ours": OURS_IMAGE + suffix}
        self.ca_bundle = host_ca_bundle()
        self.created: list[str] = []  # containers and their volumes share these names
        self.provisioned: dict[str, Machine] = {}
        self.playbook_runs = 0
        self.failures: list[str] = []  # samples that failed, with their diagnostics
        # Figure -> (figure seconds, site.yml seconds, [[task, seconds], ...]) of its median run.
        self.profiles: dict[str, tuple[float, float, list[list]]] = {}
        self.last_playbook: tuple[float, list[list]] = (0.0, [])  # (seconds, per-task seconds)
        self.base_image = ""
        self.load_at_start = os.getloadavg()[0]
        self.tree = os.path.join(workdir, "tree")  # the project's snapshot that is measured
        self.tree_description = ""
        self.connection = CONNECTIONS[args.connection](workdir, self.prefix, self.images)

    # ---- machines -------------------------------------------------------------------------

    def new_machine(self, side: str, label: str) -> Machine:
        name = f"{self.prefix}-{side}-{label}"
        self.created.append(name)
        docker("volume", "create", name)
        return Machine(side, name, self.ca_bundle, self.images[side], self.connection.image(side),
                       self.connection.run_args(side))

    def start(self, machine: Machine) -> None:
        """Start the machine's container and wait until ansible-playbook can reach it."""
        machine.start()
        self.connection.wait_ready(machine)

    def remove(self, machine: Machine) -> None:
        machine.remove_container()
        subprocess.run([DOCKER, "volume", "rm", "-f", machine.name], capture_output=True)
        self.created.remove(machine.name)

    def cleanup(self) -> None:
        for name in self.created:
            subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
            subprocess.run([DOCKER, "volume", "rm", "-f", name], capture_output=True)
        if self.created:
            say(f"removed {len(self.created)} bench containers and their volumes")
        self.created.clear()
        self.connection.close()

    def provision(self, machine: Machine, since: float) -> float:
        """Start a machine on its volume and bring Jupyter up the way its side does it."""
        self.start(machine)
        if machine.side == "ours":
            self.playbook([machine])
        return machine.wait_answering(since)

    def provisioned_machine(self, side: str) -> Machine:
        """A provisioned machine to reuse: the cold figure's last one, or a new one."""
        if side not in self.provisioned:
            say(f"provisioning a {side} machine (untimed)")
            machine = self.new_machine(side, "provisioned")
            self.provision(machine, time.monotonic())
            self.provisioned[side] = machine
        return self.provisioned[side]

    # ---- Ansible --------------------------------------------------------------------------

    def inventory(self, machines: list[Machine]) -> str:
        """The local inventory's settings, one host per bench container."""
        with open(os.path.join(self.tree, "inventory", "local.yml")) as local:
            group = yaml.safe_load(local)["all"]
        template = dict(group.get("vars") or {})
        template.update(next(iter(group["hosts"].values())) or {})
        hosts = {}
        for machine in machines:
            hostvars = dict(template, jupyter_ip=machine.name, jupyter_lab_spec=self.args.package_set,
                            devbox_browser_url=f"http://127.0.0.1:{machine.port()}")
            hostvars.update(self.connection.hostvars(machine))
            if self.ca_bundle:
                hostvars["python_env_ca_bundle"] = CA_IN_CONTAINER
            hosts[machine.name] = hostvars
        path = os.path.join(self.workdir, f"inventory-{len(machines)}.yml")
        with open(path, "w") as out:
            json.dump({"all": {"hosts": hosts}}, out)  # JSON is YAML
        return path

    def playbook(self, machines: list[Machine], limit: Machine | None = None,
                 extra_vars: dict | None = None) -> tuple[float, dict]:
        """Run site.yml; return its seconds and the bench_stats callback's figures."""
        self.playbook_runs += 1
        stats_file = os.path.join(self.workdir, f"stats-{self.playbook_runs}.json")
        log_file = os.path.join(self.workdir, f"playbook-{self.playbook_runs}.log")
        command = [ANSIBLE_PLAYBOOK, "-i", self.inventory(machines)]
        if limit:
            command += ["--limit", limit.name]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(self.tree, "ansible.cfg"),
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(BENCH, "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="bench_stats", BENCH_STATS_FILE=stats_file,
                   **self.connection.playbook_env(self.playbook_runs))
        with open(log_file, "w") as log:
            started = time.monotonic()
            process = subprocess.Popen(command + [os.path.join(self.tree, "playbooks", "site.yml")], cwd=self.tree,
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait()
            except KeyboardInterrupt:
                # Its forked workers too: killing the main process alone would orphan them.
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                raise
            elapsed = time.monotonic() - started
        self.connection.after_playbook(self.playbook_runs)
        if returncode != 0:
            with open(log_file) as log:
                tail = "".join(log.readlines()[-40:])
            raise BenchError(f"site.yml failed (exit {returncode}); end of its output:\n{tail}")
        with open(stats_file) as stats:
            figures = json.load(stats)
        self.last_playbook = elapsed, figures["tasks"]
        return elapsed, figures

    # ---- figures --------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Copy the project (HEAD, --commit or the working tree, never .git or .venv) to self.tree."""
        revision = self.revision or "HEAD"
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "--verify", f"{revision}^{{commit}}"],
                                check=True, capture_output=True, text=True).stdout.strip()
        if self.args.worktree and not self.revision:
            source = ["tar", "-C", ROOT, "--exclude=./.venv", "--exclude=./.git", "-c", "."]
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                   check=True, capture_output=True, text=True).stdout.strip()
            self.tree_description = f"working tree of {commit}" + (" with uncommitted changes" if dirty else "")
        else:
            source = ["git", "-C", ROOT, "archive", "--format=tar", commit]
            self.tree_description = f"commit {commit}"
        say(f"measuring a snapshot of the {self.tree_description}")
        os.makedirs(self.tree)
        archive = subprocess.Popen(source, stdout=subprocess.PIPE)
        extract = subprocess.run(["tar", "-x", "-C", self.tree], stdin=archive.stdout)
        archive.stdout.close()
        if archive.wait() != 0 or extract.returncode != 0:
            raise BenchError(f"cannot snapshot the project into {self.tree}")

    def build_images(self) -> None:
        self.base_image = subprocess.run([sys.executable, os.path.join(self.tree, "tools", "base_image.py")],
                                         check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
        build = ["build", "-q", "--build-arg", f"BASE_IMAGE={self.base_image}",
                 "--build-arg", f"NONROOT_USER={USER}"]
        say(f"building {self.images['seed']} on {self.base_image}")
        docker(*build, "-t", self.images["seed"], os.path.join(BENCH, "seed"))
        say(f"building {self.images['ours']} on {self.base_image}")
        docker(*build, "-t", self.images["ours"], self.tree)
        self.connection.prepare(self.tree)

    def figure_image(self) -> Row:
        sizes = {side: int(docker("image", "inspect", "-f", "{{.Size}}", image)) / 1e6
                 for side, image in self.images.items()}
        base = int(docker("image", "inspect", "-f", "{{.Size}}", self.base_image)) / 1e6
        ratio = sizes["ours"] / sizes["seed"]
        say(f"image: seed {sizes['seed']:.0f} MB, ours {sizes['ours']:.0f} MB (base {base:.0f} MB)")
        return Row("image size (base included)", f"seed: {sizes['seed']:.0f} MB", f"{sizes['ours']:.0f} MB",
                   f"{ratio:.2f}", "≤ 0.5", ratio <= 0.5)

    def figure_cold(self, keep: bool) -> Row:
        samples = {"seed": [], "ours": []}
        profiles = []
        for run in range(self.args.runs):
            for side in self.interleaved(run):
                machine = self.new_machine(side, f"cold{run}")
                say(f"cold {run + 1}/{self.args.runs}: {side} on fresh volume {machine.name}")
                samples[side].append(self.provision(machine, time.monotonic()))
                if side == "ours":
                    profiles.append((samples[side][-1], *self.last_playbook))
                say(f"cold {run + 1}/{self.args.runs}: {side} answered after {samples[side][-1]:.1f} s")
                if keep and run == self.args.runs - 1:
                    self.provisioned[side] = machine
                else:
                    self.remove(machine)
        self.keep_profile("cold provision", profiles)
        return self.compare("cold provision (fresh volume to Jupyter answering)", samples, 0.6)

    def figure_warm(self) -> Row:
        machines = {side: self.provisioned_machine(side) for side in SIDES}
        samples = {"seed": [], "ours": []}
        failed = {"seed": 0, "ours": 0}
        for run in range(self.args.runs):
            for side in self.interleaved(run):
                machine = machines[side]
                machine.remove_container()
                started = time.monotonic()
                machine.start(bare=True)  # the image's own boot path: no Ansible, so no sshd either
                try:
                    samples[side].append(machine.wait_answering(started, WARM_TIMEOUT_S))
                except BenchError as error:
                    failed[side] += 1
                    self.failures.append(f"warm {run + 1}/{self.args.runs}, {side}: {error}")
                    say(f"warm {run + 1}/{self.args.runs}: {side} FAILED: {error}")
                    continue
                say(f"warm {run + 1}/{self.args.runs}: {side} answered after {samples[side][-1]:.1f} s")
        for machine in machines.values():
            if machine.run_args or machine.image != machine.own_image:
                # Back on the connection's image (untimed) for the later figures' playbook runs.
                machine.remove_container()
                self.start(machine)
                machine.wait_answering(time.monotonic())
        figure = "warm restart (container recreated to Jupyter answering)"
        if not (samples["seed"] and samples["ours"]):
            return Row(figure, "—", "—", "—", "≤ 1.0 of the seed", False, samples)
        row = self.compare(figure, samples, 1.0)
        for side, count in failed.items():
            if count:
                note = f"; **{count} of {self.args.runs} never answered** (see Failures)"
                row = replace(row, met=False, **({"baseline": row.baseline + note} if side == "seed"
                                                 else {"ours": row.ours + note}))
        return row

    def figure_noop(self, rtt_ms: float) -> Row:
        machine = self.provisioned_machine("ours")
        self.connection.rtt_ms = rtt_ms
        seconds, runs, changed, profiles = [], [], [], []
        for run in range(self.args.runs):
            elapsed, stats = self.playbook([machine])
            seconds.append(elapsed)
            runs.append(stats["host_task_runs"].get(machine.name, 0))
            changed.append(stats["changed"].get(machine.name, 0))
            profiles.append((elapsed, *self.last_playbook))
            say(f"noop{at_rtt(rtt_ms)} {run + 1}/{self.args.runs}: {elapsed:.2f} s, {runs[-1]} module runs "
                f"on the host, changed={changed[-1]}")
        self.connection.rtt_ms = 0.0
        self.keep_profile(f"no-op rerun{at_rtt(rtt_ms)}", profiles)
        median = statistics.median(seconds)
        ours = f"{spread(seconds, 2)}; {statistics.median(runs):.0f} module runs on the host"
        if any(changed):
            ours += f"; NOT a no-op: changed={max(changed)}"
        limit = NOOP_TARGETS_S.get(rtt_ms)
        return Row(f"no-op rerun of site.yml{at_rtt(rtt_ms)}", "—", ours, "—",
                   "—" if limit is None else f"≤ {limit:g} s",
                   None if limit is None else median <= limit and not any(changed), {"ours": seconds})

    def figure_add(self, rtt_ms: float) -> Row:
        machine = self.provisioned_machine("ours")
        self.connection.rtt_ms = rtt_ms
        package = self.args.package
        uv = [f"{VENV}/bin/uv", "pip", "install", "--python", f"{VENV}/bin/python", package]
        samples = {"uv": [], "ours": []}
        for run in range(self.args.runs):
            for side in self.interleaved(run, ("uv", "ours")):
                self.forget_package(machine, package)  # the same venv state, no cached download
                started = time.monotonic()
                if side == "uv":
                    self.as_user(machine, *uv)
                    samples["uv"].append(time.monotonic() - started)
                else:
                    samples["ours"].append(self.playbook([machine], extra_vars={"python_env_packages": [package]})[0])
                # Both sides must really have installed it (fails the run otherwise).
                self.as_user(machine, f"{VENV}/bin/python", "-c",
                             f"import importlib.metadata; importlib.metadata.version({package!r})")
            say(f"add{at_rtt(rtt_ms)} {run + 1}/{self.args.runs}: uv {samples['uv'][-1]:.2f} s, "
                f"ours {samples['ours'][-1]:.2f} s")
        self.connection.rtt_ms = 0.0
        uv_median, ours_median = statistics.median(samples["uv"]), statistics.median(samples["ours"])
        limit = ADD_TARGETS_S.get(rtt_ms)
        return Row(f"add one small package (`{package}`) and rerun{at_rtt(rtt_ms)}",
                   f"uv alone: {spread(samples['uv'], 2)}", spread(samples["ours"], 2),
                   f"+{ours_median - uv_median:.2f} s", "—" if limit is None else f"≤ uv + {limit:g} s",
                   None if limit is None else ours_median <= uv_median + limit, samples)

    def figure_multi(self) -> Row:
        machines = [self.new_machine("ours", f"m{number}") for number in range(1, MACHINES_FOR_MULTI + 1)]
        say(f"multi: provisioning {len(machines)} machines in one playbook run (untimed)")
        for machine in machines:
            machine.start()
        for machine in machines:
            self.connection.wait_ready(machine)
        self.playbook(machines)
        samples = {"1": [], str(len(machines)): []}
        changed = 0
        for run in range(self.args.runs):
            for count in self.interleaved(run, ("1", str(len(machines)))):
                elapsed, stats = self.playbook(machines, limit=machines[0] if count == "1" else None)
                samples[count].append(elapsed)
                changed = max(changed, sum(stats["changed"].values()))
            say(f"multi {run + 1}/{self.args.runs}: 1 machine {samples['1'][-1]:.2f} s, "
                f"{len(machines)} machines {samples[str(len(machines))][-1]:.2f} s")
        one, many = statistics.median(samples["1"]), statistics.median(samples[str(len(machines))])
        ours = f"{len(machines)} machines: {spread(samples[str(len(machines))], 2)}"
        if changed:
            ours += f"; NOT a no-op: changed={changed}"
        return Row(f"no-op rerun on {len(machines)} machines vs 1", f"1 machine: {spread(samples['1'], 2)}",
                   ours, f"{many / one:.2f}x", "≤ 1.5x", many / one <= 1.5 and not changed, samples)

    # ---- helpers --------------------------------------------------------------------------

    def keep_profile(self, figure: str, runs: list[tuple[float, float, list[list]]]) -> None:
        """Keep the run at the median of the figure's seconds for the report's time breakdown."""
        if runs:
            self.profiles[figure] = sorted(runs, key=lambda run: run[0])[len(runs) // 2]

    @staticmethod
    def interleaved(run: int, pair: tuple[str, str] = ("seed", "ours")) -> tuple[str, str]:
        """Alternate which side goes first, so neither always gets the warmer page cache."""
        return pair if run % 2 == 0 else pair[::-1]

    def as_user(self, machine: Machine, *command: str) -> None:
        env = ["-e", f"HOME={HOME}"] + (["-e", f"SSL_CERT_FILE={CA_IN_CONTAINER}"] if self.ca_bundle else [])
        docker("exec", "-u", USER, *env, machine.name, *command)

    def forget_package(self, machine: Machine, package: str) -> None:
        self.as_user(machine, f"{VENV}/bin/uv", "pip", "uninstall", "--python", f"{VENV}/bin/python", package)
        self.as_user(machine, f"{VENV}/bin/uv", "cache", "clean", package)

    @staticmethod
    def compare(figure: str, samples: dict[str, list[float]], target: float) -> Row:
        ratio = statistics.median(samples["ours"]) / statistics.median(samples["seed"])
        return Row(figure, f"seed: {spread(samples['seed'])}", spread(samples["ours"]), f"{ratio:.2f}",
                   f"≤ {target:.1f} of the seed", ratio <= target, samples)

    def run(self, figures: list[str]) -> list[Row]:
        self.snapshot()
        self.build_images()
        rows = []
        for figure in FIGURES:
            if figure not in figures:
                continue
            say(f"figure: {figure}")
            if figure == "cold":
                # Keep the last cold machines when a later figure needs provisioned ones.
                rows.append(self.figure_cold(keep=bool({"warm", "noop", "add"} & set(figures))))
            elif figure in ("noop", "add"):
                rows += [getattr(self, f"figure_{figure}")(rtt_ms) for rtt_ms in self.args.rtts]
            else:
                rows.append(getattr(self, f"figure_{figure}")())
        return rows


def machine_description() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc {len(os.sched_getaffinity(0))}, {model}, kernel {platform.release()}"


def render(bench: Bench, rows: list[Row]) -> str:
    engine = docker("version", "-f", "{{.Server.Version}}")
    lines = [
        "# Benchmark: ours against the seed's boot path",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine_description()}, Docker engine {engine}; load average (1 min) "
        f"{bench.load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "- baselines: the seed's boot path (bench/seed/) for image, cold and warm; uv alone for "
        "add; ours on 1 machine for the 4-machine rerun",
        f"- project measured: {bench.tree_description}",
        f"- both images on the same base `{bench.base_image}`; package set `{bench.args.package_set}`; "
        f"connection: {bench.connection.description}",
        f"- each figure: median of {bench.args.runs} runs (min–max in brackets), seed and ours interleaved",
        f"- command: `{' '.join(['.venv/bin/python bench/run.py'] + sys.argv[1:])}`",
        "",
        "| figure | baseline | ours | ours / baseline | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {row.figure} | {row.baseline} | {row.ours} | {row.ratio} | {row.target} | "
              f"{'—' if row.met is None else 'yes' if row.met else '**no**'} |" for row in rows]
    lines += ["", "Jupyter answering = `GET /api/status` with `Authorization: token <t>` from the host "
              "returns 200. Module runs on the host = task results of site.yml that ran a module on "
              "the machine (loop items counted; assert, set_fact and debug run on the controller).",
              "", "## Samples (seconds)", ""]
    for row in rows:
        for side, values in row.samples.items():
            lines.append(f"- {row.figure}, {side}: {', '.join(f'{value:.2f}' for value in values)}")
    if bench.failures:
        lines += ["", "## Failures", ""]
        lines += [f"```\n{failure.strip()}\n```" for failure in bench.failures]
    return "\n".join(lines + profile_lines(bench)) + "\n"


def profile_lines(bench: Bench, whose: str = "ours") -> list[str]:
    """The time breakdown of each figure's median run that kept one (Bench.keep_profile)."""
    lines = []
    for figure, (total, playbook, tasks) in bench.profiles.items():
        timed = sorted((task for task in tasks if task[1] is not None), key=lambda task: -task[1])
        lines += ["", f"## Where {whose} spends its time: {figure}, {total:.2f} s (its median run)", "",
                  "| part | s |", "|---|---|"]
        if total - playbook >= 0.005:
            lines.append(f"| outside site.yml: container start, Jupyter answering the host | {total - playbook:.2f} |")
        lines.append(f"| site.yml outside its tasks: controller start-up, inventory, play setup, exit | "
                     f"{playbook - sum(task[1] for task in timed):.2f} |")
        for kind, label in TASK_KINDS.items():
            of_kind = [task[1] for task in timed if task[2] == kind]
            if of_kind:
                lines.append(f"| {len(of_kind)} {label} | {sum(of_kind):.2f} |")
        lines += ["", "Its slowest tasks (a task's time runs from its start to the next task's start):", "",
                  "| task | kind | s |", "|---|---|---|"]
        lines += [f"| {name} | {kind} | {seconds:.2f} |" for name, seconds, kind in timed[:12]]
        if len(timed) > 12:
            lines.append(f"| the other {len(timed) - 12} tasks | | {sum(task[1] for task in timed[12:]):.2f} |")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, the median is reported (default 3)")
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated figures to measure, of {','.join(FIGURES)} (default all)")
    snapshot = parser.add_mutually_exclusive_group()
    snapshot.add_argument("--worktree", action="store_true",
                          help="measure the working tree (uncommitted changes too) instead of the commit HEAD")
    snapshot.add_argument("--commit", help="measure this commit instead of HEAD (bench/ itself always runs as it "
                                           "is; the commit's Dockerfile, playbooks and tests/fly_machine are used); "
                                           "the report never replaces the full table then")
    parser.add_argument("--connection", choices=sorted(CONNECTIONS), default="docker",
                        help="how ansible-playbook reaches the machines (default docker)")
    parser.add_argument("--package-set", default="jupyter",
                        help="what both sides install for Jupyter (the seed's `pip install jupyter`)")
    parser.add_argument("--package", default="tomli-w", help="the small package of the add figure")
    parser.add_argument("--rtt-ms", default="0", help="comma-separated round trips (ms) for the noop and add "
                                                      "figures; above 0 through bench/latency_relay.py, "
                                                      "--connection ssh only (default 0)")
    parser.add_argument("--output", help=f"markdown file to write (default {os.path.relpath(FULL_OUTPUT, ROOT)} "
                                         f"for all figures with --runs 3 or more, else "
                                         f"{os.path.relpath(PARTIAL_OUTPUT, ROOT)})")
    args = parser.parse_args()
    args.figures = [figure.strip() for figure in args.only.split(",") if figure.strip()]
    unknown = set(args.figures) - set(FIGURES)
    if unknown or not args.figures:
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                     f"choose from {','.join(FIGURES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        args.rtts = sorted({float(value) for value in args.rtt_ms.split(",") if value.strip()})
    except ValueError:
        parser.error(f"--rtt-ms: not a list of numbers: {args.rtt_ms}")
    if not args.rtts or min(args.rtts) < 0:
        parser.error("--rtt-ms: give one or more round trips of 0 or more")
    if max(args.rtts) > 0 and args.connection != "ssh":
        parser.error("--rtt-ms above 0 needs --connection ssh (the relay is an SSH ProxyCommand)")
    return args


def interrupt(_signum, _frame) -> None:
    """Ctrl-C and SIGTERM leave through the same way, so the cleanup still runs."""
    raise KeyboardInterrupt


def main() -> None:
    args = parse_args()
    figures = [figure for figure in FIGURES if figure in args.figures]
    # Also when started in the background, where the shell leaves SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    with tempfile.TemporaryDirectory(prefix="devbox-bench-") as workdir:
        bench = Bench(args, workdir, revision=args.commit)
        try:
            rows = bench.run(figures)
        except KeyboardInterrupt:
            sys.exit("bench: interrupted")
        except (BenchError, subprocess.CalledProcessError) as error:
            sys.exit(f"bench: failed: {error}")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
            bench.cleanup()
        report = render(bench, rows)
    # The README quotes latest.md: only a complete run of at least 3 runs per figure replaces it.
    complete = figures == list(FIGURES) and args.runs >= 3 and not args.commit
    output = args.output or (FULL_OUTPUT if complete else PARTIAL_OUTPUT)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as out:
        out.write(report)
    print(report)
    say(f"written to {os.path.relpath(output, ROOT)}")


if __name__ == "__main__":
    main()
