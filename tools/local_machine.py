#!/usr/bin/env python3
"""The local dev machine: a container from the project's Dockerfile, a named volume as home.

  up       build the image, start the container (or reuse it), run playbooks/site.yml
  check    a dry run of playbooks/site.yml against the running container (--check --diff)
  down     stop and remove the container; the volume (venv, notebooks, token) stays
  destroy  remove the container and the volume
  image    build the image (DEVBOX_IMAGE) unless its inputs are unchanged (`make image`)

Like a Fly Machine, the container's root FS is thrown away by `down` and only the volume
survives. Every fact comes from the machine's facts (the roles' defaults, inventory/local.yml,
VARS): the volume is mounted at the home they name, every service's port is published on
127.0.0.1 only (DEVBOX_PORT moves Jupyter's to another port of this computer; the printed URL
follows), the image is built for their user. A container that differs from them is replaced,
the volume kept. The tests drive the same class (tools/docker_machines.py).

Where the Docker engine has the NVIDIA runtime the container gets the GPUs (`--gpus all`;
DEVBOX_GPUS=none turns that off, another value is passed to --gpus as it is). One action per
machine at a time on this computer: a second `make up` waits on a lock under .cache/.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from docker_machines import (OWN_PORTS, ROOT, LocalMachine, MachineError, base_image, build_devbox_image, docker,
                             docker_output, parse_vars)

LOCK_DIR = os.path.join(ROOT, ".cache")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


# The image carries a digest of what it was built from; `make up` builds only when that changed.
INPUTS_LABEL = "devbox.build-inputs"
# ... and the base it was built on (name and id), so that a rerun of `make up` checks the digest without
# looking for a base (tools/base_image.py may try a pull).
BASE_LABEL = "devbox.base"


def build_files(tree: str = ROOT) -> list[str]:
    """The Dockerfile, the .dockerignore and the files it lets into the context (its `!path` lines after `*`)."""
    with open(os.path.join(tree, ".dockerignore")) as ignore:
        let_in = [line[1:].strip() for line in ignore if line.startswith("!")]
    return ["Dockerfile", ".dockerignore", *sorted(let_in)]


def build_inputs(base: str, user: str, tree: str = ROOT) -> str:
    """A digest of the build files (with their modes), the base image and the dev user (the build argument
    NONROOT_USER): what `docker build` would read."""
    digest = hashlib.sha256(f"{base}\n{user}\n".encode())
    for relative in build_files(tree):
        with open(os.path.join(tree, relative), "rb") as source:
            mode = os.fstat(source.fileno()).st_mode & 0o7777
            digest.update(f"{relative} {mode:o}\n".encode() + hashlib.sha256(source.read()).digest())
    return digest.hexdigest()


def image_label(image: str, label: str) -> str | None:
    """The image's label, or None when there is no such image (or label)."""
    found = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
    return (json.loads(found.stdout) or {}).get(label) if found.returncode == 0 else None


def build_image(image: str, user: str) -> None:
    """Build the image for the dev user `user` (the facts' "user") unless its label says it was built from the
    same inputs."""
    base = base_image()
    base_with_id = f"{base} {docker_output('image', 'inspect', '--format', '{{.Id}}', base)}"
    inputs = build_inputs(base_with_id, user)
    if image_label(image, INPUTS_LABEL) == inputs and image_label(image, BASE_LABEL) == base_with_id:
        say(f"keeping {image}: the Dockerfile, its files, {base} and the user {user} have not changed")
        return
    say(f"building {image} on {base} for the user {user}")
    build_devbox_image(image, user, base=base, labels={INPUTS_LABEL: inputs, BASE_LABEL: base_with_id})


def runs_as_built_and_said(machine: LocalMachine, user: str) -> bool:
    """The cheap check of `make up` on a machine that is up: the container runs the image, which was built from
    the tree's build inputs as they are now (its labels), with the volume, ports and GPUs the facts say. One
    `docker inspect` and one `docker image inspect`: no base image, no engine info, no build."""
    info = machine.inspect()
    if not info or info["State"]["Status"] != "running":
        return False
    labels = (info.get("Config") or {}).get("Labels") or {}
    if not labels.get(BASE_LABEL) or labels.get(INPUTS_LABEL) != build_inputs(labels[BASE_LABEL], user):
        return False
    setting = (os.environ.get("DEVBOX_GPUS") or "auto").strip()
    if setting == "auto":  # the engine decided when the container was made; asking it again is engine work
        machine.gpus = "all" if (info.get("HostConfig") or {}).get("DeviceRequests") else None
    else:
        machine.gpus, _ = gpu_request({}, setting)
    return not machine.differences(info)


def engine_info() -> dict:
    """`docker info` of the engine, as its JSON."""
    return json.loads(docker_output("info", "--format", "{{json .}}"))


def gpu_request(info: dict, setting: str | None) -> tuple[str | None, str]:
    """What to pass to `docker run --gpus` (None: nothing) and why, in words for the output.

    `setting` is DEVBOX_GPUS: unset, empty or "auto" gives all GPUs where the engine lists the
    NVIDIA runtime (what nvidia-container-toolkit configures) and none elsewhere; "none" turns
    them off; any other value ("all", "device=0", "2") is the user's and goes to --gpus as it is.
    """
    setting = (setting or "auto").strip()
    if setting == "none":
        return None, "none (DEVBOX_GPUS=none)"
    if setting != "auto":
        return setting, f"--gpus {setting} (DEVBOX_GPUS)"
    if "nvidia" in (info.get("Runtimes") or {}):
        return "all", "--gpus all (the Docker engine has the NVIDIA runtime; DEVBOX_GPUS=none turns this off)"
    return None, "none (the Docker engine has no NVIDIA runtime)"


@contextlib.contextmanager
def machine_lock(name: str, lock_dir: str = LOCK_DIR) -> Iterator[None]:
    """Hold the controller's lock for machine `name`; a second holder waits here, saying so.

    Without it two `make up` with the machine down both `docker run --name <name>` and one
    fails on the name. The kernel drops the lock when its holder exits, even when killed.
    """
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, f"local-machine-{name}.lock")
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            say(f"waiting: {holder} is working on {name} (lock {os.path.relpath(path, ROOT)}); "
                "this run goes on when it is done")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield


def published_in_words(machine: LocalMachine) -> str:
    ports = machine.wanted_ports()
    return ", ".join(f"{name} on 127.0.0.1:{host or 'any free port'}" for _, (host, name) in sorted(ports.items())) \
        or "no port published"


def act(machine: LocalMachine, action: str, playbook_args: list[str]) -> None:
    """One of up, check, down, destroy, image; the caller holds the machine's lock and has put the user's
    variables in machine.given (they reach ansible-playbook as JSON)."""
    if action == "check":
        if machine.state() != "running":
            sys.exit(f"{machine.name} is not running: a dry run needs the machine up (`make up`)")
        say("dry run of playbooks/site.yml: nothing changes; `changed` marks what the next `make up` would change")
        if machine.provision("--check", "--diff", *playbook_args).returncode != 0:
            sys.exit("failed: the dry run did not finish; see the error above")
    elif action == "image":
        build_image(machine.image, machine.facts()["user"])
    elif action == "up":
        facts = machine.facts()  # the variables are checked before anything is built or created
        if runs_as_built_and_said(machine, facts["user"]):
            say(f"checked {machine.name}: it runs {machine.image} as built from this tree, as the variables say")
        else:
            build_image(machine.image, facts["user"])
            machine.gpus, gpus_in_words = gpu_request(engine_info(), os.environ.get("DEVBOX_GPUS"))
            say(f"starting {machine.name}: volume {machine.volume} at {facts['home']}, "
                f"{published_in_words(machine)}, GPUs: {gpus_in_words}")
            replaced = machine.start()
            if replaced:
                say(f"replaced the container (the volume stays): {'; '.join(replaced)}")
        say("provisioning with playbooks/site.yml")
        if machine.provision(*playbook_args).returncode != 0:
            sys.exit("failed: ansible-playbook playbooks/site.yml did not finish; the volume is intact, "
                     "fix the error above and run `make up` again")
    else:
        machine.remove()
        say(f"removed container {machine.name}")
        if action == "destroy":
            machine.remove_volume()
            say(f"removed volume {machine.volume}")
        else:
            say(f"volume {machine.volume} kept: `make up` brings everything back")


def jupyter_host_port(setting: str | None) -> int | str:
    """Where Jupyter is published on this computer: DEVBOX_PORT when set, else its own port (every other
    service is always on its own)."""
    if not setting:
        return OWN_PORTS
    if not setting.isdigit() or not 0 < int(setting) < 65536:
        raise MachineError(f"DEVBOX_PORT={setting!r} must be a port number (1-65535) of this computer")
    return int(setting)


def local_machine(environ=os.environ) -> LocalMachine:
    """The local machine the environment names (DEVBOX_NAME, DEVBOX_VOLUME, DEVBOX_IMAGE, DEVBOX_PORT, VARS);
    MachineError when VARS or DEVBOX_PORT cannot be used."""
    return LocalMachine(name=environ.get("DEVBOX_NAME", "devbox-local"),
                        volume=environ.get("DEVBOX_VOLUME", "devbox-home"),
                        image=environ.get("DEVBOX_IMAGE", "devbox:latest"),
                        port=jupyter_host_port(environ.get("DEVBOX_PORT")),
                        given=parse_vars(environ.get("VARS")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "check", "down", "destroy", "image"])
    parser.add_argument("playbook_args", nargs="*",
                        help="extra arguments for ansible-playbook (after --); $VARS (YAML or JSON, a mapping) adds "
                             "the playbook's variables")
    args = parser.parse_args()
    try:
        machine = local_machine()
        machine.facts()  # VARS that do not make a machine stop here, before anything is created
        if args.action == "image":  # no container involved: no lock
            act(machine, args.action, args.playbook_args)
        else:
            with machine_lock(machine.name):
                act(machine, args.action, args.playbook_args)
    except MachineError as error:
        sys.exit(f"failed: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"failed: {' '.join(map(str, error.cmd))} exited with {error.returncode}: {error.stderr or ''}")


if __name__ == "__main__":
    main()
