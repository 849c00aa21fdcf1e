"""What `make up`, `make status`, the tests and the bench share to drive local machines.

One docker wrapper (Debian's client, the classic builder), one way to build an image, one
local machine (a container from the project's image with a named volume as home, as a Fly
Machine has) and one way to wait for something. Importable from tools/ (its own folder),
tests/ (tests/conftest.py puts tools/ on the path) and bench/ (which does the same).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from docker_host import CA_IN_CONTAINER, DOCKER, host_ca_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = "pythonuser"
JUPYTER_PORT = 8888
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


def build_devbox_image(image: str, tree: str = ROOT, base: str | None = None, no_cache: bool = False,
                       labels: dict | None = None) -> str:
    """The project's image from the Dockerfile of `tree`; returns the base it was built on."""
    base = base or base_image(tree)
    build_image(image, tree, no_cache, labels, BASE_IMAGE=base, NONROOT_USER=USER)
    return base


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


def tagged(base: str) -> str:
    """A container or volume name for a test, carrying the tag of DEVBOX_TEST_IMAGE."""
    return f"{base}-{TEST_TAG}"


class LocalMachine:
    """One container + one named volume as /home/<user>, provisioned over the docker connection.

    port: where Jupyter is published on 127.0.0.1 (None: not published, 0: any free port);
    gpus: the value of `docker run --gpus` (None: none); env: PID 1's environment (the tests
    shorten the idle stop's polling); run_args: more `docker run` arguments (a network, mounts).
    """

    def __init__(self, name: str, volume: str, image: str, port: int | None = None, gpus: str | None = None,
                 env: dict | None = None, run_args: list[str] | None = None):
        self.name, self.volume, self.image, self.port, self.gpus = name, volume, image, port, gpus
        self.env = env or {}
        self.run_args = run_args or []
        self.ca_bundle = host_ca_bundle()

    def state(self) -> str | None:
        result = docker("inspect", "-f", "{{.State.Status}}", self.name, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def runs_current_image(self) -> bool:
        running = docker("inspect", "-f", "{{.Image}}", self.name, check=False).stdout.strip()
        built = docker("image", "inspect", "-f", "{{.Id}}", self.image, check=False).stdout.strip()
        return running == built

    def has_gpus(self) -> bool:
        requests = docker("inspect", "-f", "{{json .HostConfig.DeviceRequests}}", self.name, check=False).stdout.strip()
        return requests not in ("", "null", "[]")

    def start(self) -> None:
        """Start the container unless it runs the current image with the GPUs asked for; anything
        else is replaced.

        Like a Fly Machine after a deploy or a restart: the root FS comes fresh from the image
        and the volume stays.
        """
        state = self.state()
        if state == "running" and self.runs_current_image() and self.has_gpus() == bool(self.gpus):
            return
        if state is not None:
            self.remove()
        self.run()

    def run(self, image: str | None = None, run_args: list[str] | None = None) -> None:
        """`docker run` a new container (none of that name may exist); image and run_args replace
        the machine's own for this one start."""
        mounts = ["-v", f"{self.volume}:/home/{USER}"]
        if self.ca_bundle:
            mounts += ["-v", f"{self.ca_bundle}:{CA_IN_CONTAINER}:ro"]
        ports = ["-p", f"127.0.0.1:{self.port or ''}:{JUPYTER_PORT}"] if self.port is not None else []
        gpus = ["--gpus", self.gpus] if self.gpus else []
        env = [f"--env={key}={value}" for key, value in self.env.items()]
        extra = self.run_args if run_args is None else run_args
        docker("run", "-d", "--name", self.name, "--hostname", self.name, *mounts, *ports, *gpus, *env, *extra,
               image or self.image)

    def published_address(self) -> str | None:
        """host:port where this computer reaches Jupyter's port, if it is published."""
        result = docker("port", self.name, f"{JUPYTER_PORT}/tcp", check=False)
        lines = result.stdout.strip().splitlines() if result.returncode == 0 else []
        return lines[0] if lines else None

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)

    def remove_volume(self) -> None:
        docker("volume", "rm", "-f", self.volume, check=False)

    def exec(self, command: str, user: str = "root") -> subprocess.CompletedProcess:
        return docker("exec", "-u", user, self.name, "sh", "-c", command, check=False)

    def playbook_command(self, *extra: str, playbook: str = "site.yml") -> list[str]:
        """ansible-playbook with the local inventory, pointed at this container."""
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                   "-i", os.path.join(ROOT, "inventory", "local.yml"),
                   "-e", f"ansible_host={self.name}", "-e", f"devbox_private_ip={self.name}"]
        if playbook == "site.yml":
            if self.port:
                command += ["-e", f"devbox_browser_url=http://127.0.0.1:{self.port}"]
            if self.ca_bundle:
                command += ["-e", f"python_env_ca_bundle={CA_IN_CONTAINER}"]
        return command + list(extra) + [os.path.join(ROOT, "playbooks", playbook)]

    def provision(self, *extra: str, capture: bool = False, playbook: str = "site.yml",
                  env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the playbook (site.yml unless told) against this container; env adds to os.environ."""
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **(env or {}))
        return subprocess.run(self.playbook_command(*extra, playbook=playbook), cwd=ROOT, env=env, text=True,
                              capture_output=capture)


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
