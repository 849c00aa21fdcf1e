#!/usr/bin/env python3
"""The local dev machine: a container from the project's Dockerfile, a named volume as home.

  up       build the image, start the container (or reuse it), run playbooks/site.yml
  check    a dry run of playbooks/site.yml against the running container (--check --diff)
  down     stop and remove the container; the volume (venv, notebooks, token) stays
  destroy  remove the container and the volume

Like a Fly Machine, the container's root FS is thrown away by `down` and only the volume
survives. Jupyter's port is published on 127.0.0.1 only. The tests drive the same class.

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

from devbox_testkit import ROOT, USER, LocalMachine, base_image, build_devbox_image, docker, docker_output

LOCK_DIR = os.path.join(ROOT, ".cache")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


# The image carries a digest of what it was built from; `make up` builds only when that changed.
INPUTS_LABEL = "devbox.build-inputs"


def build_files(tree: str = ROOT) -> list[str]:
    """The Dockerfile, the .dockerignore and the files it lets into the context (its `!path` lines after `*`)."""
    with open(os.path.join(tree, ".dockerignore")) as ignore:
        let_in = [line[1:].strip() for line in ignore if line.startswith("!")]
    return ["Dockerfile", ".dockerignore", *sorted(let_in)]


def build_inputs(base: str, tree: str = ROOT) -> str:
    """A digest of the build files (with their modes) and the base image: what `docker build` would read."""
    digest = hashlib.sha256(f"{base}\n{USER}\n".encode())
    for relative in build_files(tree):
        with open(os.path.join(tree, relative), "rb") as source:
            mode = os.fstat(source.fileno()).st_mode & 0o7777
            digest.update(f"{relative} {mode:o}\n".encode() + hashlib.sha256(source.read()).digest())
    return digest.hexdigest()


def image_label(image: str, label: str) -> str | None:
    """The image's label, or None when there is no such image (or label)."""
    found = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
    return (json.loads(found.stdout) or {}).get(label) if found.returncode == 0 else None


def build_image(image: str) -> None:
    base = base_image()
    inputs = build_inputs(f"{base} {docker_output('image', 'inspect', '--format', '{{.Id}}', base)}")
    if image_label(image, INPUTS_LABEL) == inputs:
        say(f"keeping {image}: the Dockerfile, its files and {base} have not changed")
        return
    say(f"building {image} on {base}")
    build_devbox_image(image, base=base, labels={INPUTS_LABEL: inputs})


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


def act(machine: LocalMachine, action: str, playbook_args: list[str]) -> None:
    """One of up, check, down, destroy; the caller holds the machine's lock."""
    extra = (["-e", os.environ["VARS"]] if os.environ.get("VARS") else []) + playbook_args
    if action == "check":
        if machine.state() != "running":
            sys.exit(f"{machine.name} is not running: a dry run needs the machine up (`make up`)")
        say("dry run of playbooks/site.yml: nothing changes; `changed` marks what the next `make up` would change")
        if machine.provision("--check", "--diff", *extra).returncode != 0:
            sys.exit("failed: the dry run did not finish; see the error above")
    elif action == "up":
        build_image(machine.image)
        machine.gpus, gpus_in_words = gpu_request(engine_info(), os.environ.get("DEVBOX_GPUS"))
        say(f"starting {machine.name}: volume {machine.volume} at /home/{USER}, "
            f"Jupyter on 127.0.0.1:{machine.port}, GPUs: {gpus_in_words}")
        machine.start()
        say("provisioning with playbooks/site.yml")
        if machine.provision(*extra).returncode != 0:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "check", "down", "destroy"])
    parser.add_argument("playbook_args", nargs="*",
                        help="extra arguments for ansible-playbook (after --); $VARS adds `-e $VARS`")
    args = parser.parse_args()
    machine = LocalMachine(name=os.environ.get("DEVBOX_NAME", "devbox-local"),
                           volume=os.environ.get("DEVBOX_VOLUME", "devbox-home"),
                           image=os.environ.get("DEVBOX_IMAGE", "devbox:latest"),
                           port=int(os.environ.get("DEVBOX_PORT", "8888")))
    try:
        with machine_lock(machine.name):
            act(machine, args.action, args.playbook_args)
    except subprocess.CalledProcessError as error:
        sys.exit(f"failed: {' '.join(map(str, error.cmd))} exited with {error.returncode}: {error.stderr or ''}")


if __name__ == "__main__":
    main()
