"""The bench's machines and how ansible-playbook reaches them.

A Machine is a local machine (tools/docker_machines.py) of one side, the seed's or ours, with
Jupyter published on a free port of 127.0.0.1. A connection (--connection) says how the
playbook runs reach ours: `docker exec`, or OpenSSH to an sshd added on top of ours'
image, through bench/latency_relay.py when a round trip is set.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from docker_machines import (LocalMachine, build_image, docker, docker_output, local_facts,  # noqa: E402
                             ssh_banner, wait_until)
from docker_host import CA_IN_CONTAINER, DOCKER  # noqa: E402

# The machine measured is the local machine of the defaults: its facts, read once.
FACTS = local_facts()
USER, HOME = FACTS["user"], FACTS["home"]
VENV = os.path.join(HOME, FACTS["venv_dir"])
JUPYTER_PORT = next(service["port"] for service in FACTS["services"] if service["name"] == "jupyter")
SSH_READY_TIMEOUT_S = 60
ANSWER_TIMEOUT_S = 300
TOKEN_IN_LOG = re.compile(r"[?&]token=([0-9a-f]+)")


class BenchError(Exception):
    pass


def say(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


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


class Machine(LocalMachine):
    """A container of one side (seed or ours) with a named volume of the same name as home.

    own_image: the side's own image; image: the connection's image of the side (own_image, or
    with sshd added); run_args: the connection's `docker run` arguments (e.g. its network).
    """

    def __init__(self, side: str, name: str, own_image: str, image: str, run_args: list[str]):
        super().__init__(name, volume=name, image=image, port=0, run_args=run_args)
        if side == "seed" and self.ca_bundle:
            self.env = {"PIP_CERT": CA_IN_CONTAINER}  # the seed's pip has no other setting
        self.side, self.own_image = side, own_image
        self.token: str | None = None

    def start_new(self, bare: bool = False) -> None:
        """A new container; bare: from the side's own image, without the connection's additions
        (such as sshd)."""
        if bare:
            self.run(image=self.own_image, run_args=[])
        else:
            self.run()

    def host_port(self) -> int:
        return int(self.published_address().rsplit(":", 1)[1])

    def read_token(self, timeout: float) -> str:
        """Ours keeps the token on the volume; the seed prints a new one at every start."""
        if self.side == "ours":
            return docker_output("exec", self.name, "cat", f"{HOME}/.jupyter/devbox_token")
        return token_from_log(self.name, timeout)

    def wait_answering(self, since: float, timeout: float = ANSWER_TIMEOUT_S) -> float:
        """Seconds from `since` until Jupyter answers an authenticated request from the host."""
        deadline = since + timeout
        if self.side == "seed" or self.token is None:
            self.token = self.read_token(max(1.0, deadline - time.monotonic()))
        urls = self.jupyter_urls()
        try:
            wait_until(lambda: any(jupyter_answers(url, self.token) for url in urls),
                       max(0.0, deadline - time.monotonic()), "Jupyter to answer", interval=0.05)
        except TimeoutError:
            raise BenchError(f"{self.name}: Jupyter did not answer within {timeout:.0f} s\n"
                             f"{self.diagnostics()}") from None
        return time.monotonic() - since

    def jupyter_urls(self) -> list[str]:
        """Where Jupyter may answer the host: the port published on 127.0.0.1 (IPv4) and, on an IPv6
        network (--connection ssh), the container's IPv6 address: jupyter_ip names the container,
        which resolves to that address there, as fly-local-6pn does on Fly."""
        addresses = docker_output("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{end}}",
                                  self.name).split()
        return [f"http://127.0.0.1:{self.host_port()}"] + \
            [f"http://[{address}]:{JUPYTER_PORT}" for address in addresses]

    def diagnostics(self) -> str:
        """The end of the container's log and, for ours, of the launcher's log on the volume."""
        commands = [["logs", "--tail", "30", self.name]]
        if self.side == "ours":
            commands.append(["exec", self.name, "tail", "-n", "30", f"{HOME}/.jupyter/devbox-jupyter.log"])
        outputs = [docker(*command, check=False) for command in commands]
        return "\n".join(f"--- docker {' '.join(command[:2])}:\n{output.stdout}{output.stderr}"
                         for command, output in zip(commands, outputs))


class DockerConnection:
    """ansible-playbook reaches ours' containers with `docker exec` (docker, as `make up` does)."""
    name = "docker"
    label = "docker exec"  # in the figures' names
    description = "docker (`docker exec`, as `make up` runs it)"

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
        # The short name, as inventory/local.yml has it (Mitogen takes it over when it runs).
        return {"ansible_connection": "docker", "ansible_host": machine.name}

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
    label = "SSH"

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
        build_image(self.ssh_image, os.path.join(tree, "tests", "fly_machine"), DEVBOX_IMAGE=self.images["ours"])
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
        template = f'{{{{(index .NetworkSettings.Networks "{self.network}").GlobalIPv6Address}}}}'
        found = docker_output("inspect", "-f", template, machine.name)
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
                "ansible_ssh_common_args": shlex.join(options),
                # As the fly inventory says it: Mitogen's ssh reads this, not the options above.
                "ansible_host_key_checking": False}

    def wait_ready(self, machine: Machine, timeout: float = SSH_READY_TIMEOUT_S) -> None:
        """Until sshd sends its banner on the container's IPv6 address."""
        if machine.side != "ours":
            return
        address = self.address(machine)
        try:
            wait_until(lambda: ssh_banner(address), timeout, f"an SSH banner on [{address}]:22", interval=0.05)
        except TimeoutError as error:
            raise BenchError(f"{machine.name}: {error}\n{machine.diagnostics()}") from None

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
            docker("network", "rm", self.network, check=False)
            self.network_created = False


# Connection kinds for the playbook runs (--connection).
CONNECTIONS = {"docker": DockerConnection, "ssh": SshConnection}
