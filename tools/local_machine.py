#!/usr/bin/env python3
"""The local dev machine: a container from the project's Dockerfile, a named volume as home.

  up       build the image, start the container (or reuse it), run playbooks/site.yml
  check    a dry run of playbooks/site.yml against the running container (--check --diff)
  down     stop the container as a Fly stop does (SIGTERM to PID 1, then fly.toml's kill_timeout), remove it;
           the volume (venv, notebooks, token) stays
  destroy  the same, then remove the volume: asks first, unless FORCE=1
  shell    bash as the dev user in ~/project with the venv active; CMD='...' runs that one command instead
  logs     PID 1's log and each service's (Jupyter's first)
  restart  restart the services through their launcher (~/.local/bin/devbox-service), not the container
  image    build the image (DEVBOX_IMAGE) unless its inputs are unchanged (`make image`)

Like a Fly Machine, the container's root FS is thrown away by `down` and only the volume
survives. Every fact comes from the machine's facts (the roles' defaults, the local inventory's
variables for the host DEVBOX_NAME: inventory/group_vars/all, inventory/local.yml,
inventory/host_vars/<name>.yml; then VARS): the volume is mounted at the home they name, every
service's port is published on 127.0.0.1 only (DEVBOX_PORT moves Jupyter's to another port of
this computer; the printed URL follows), the image is built for their user. A container that
differs from them is replaced, the volume kept. The tests drive the same class
(tools/docker_machines.py).

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

from docker_machines import (DOCKER, LOCAL_HOST, OWN_PORTS, ROOT, LocalMachine, MachineError, base_image,
                             build_devbox_image, docker, docker_output, parse_vars, stop_timeout)

# docker_machines put playbooks/collections on the path: the launcher's own places. What brings Ansible with it
# (the status report's escaping, the services module's command) is imported where it is used, so a `make up` on
# a converged machine does not import Ansible before ansible-playbook does.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (  # noqa: E402
    STATE_DIR, SYSTEM_PATH)

LOCK_DIR = os.path.join(ROOT, ".cache")
# The volume of the local machine when DEVBOX_VOLUME names none.
DEFAULT_VOLUME = "devbox-home"


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


def make_command(machine: LocalMachine, command: str) -> str:
    """`make COMMAND` as the user would type it for this machine: with its DEVBOX_NAME and DEVBOX_VOLUME when they
    are not the defaults, so that a hint never acts on another machine."""
    settings = [f"DEVBOX_NAME={machine.name}"] if machine.name != LOCAL_HOST else []
    settings += [f"DEVBOX_VOLUME={machine.volume}"] if machine.volume != DEFAULT_VOLUME else []
    return "`" + " ".join([*settings, "make", command]) + "`"


def truthy(name: str, environ=os.environ) -> bool:
    """A yes/no setting of the environment (FORCE, SHOW_TOKEN): 1, true, yes are yes; unset, empty, 0, false,
    no are no; anything else is refused, so that a typo never means yes."""
    value = environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("", "0", "false", "no", "n", "off"):
        return False
    raise MachineError(f"{name}={environ[name]!r} must be 1 (yes) or 0 (no)")


def confirm_destroy(machine: LocalMachine, environ=os.environ, ask=input) -> None:
    """Return when the volume may go: FORCE=1, or the user typed its name at the terminal; MachineError
    otherwise (without a terminal nobody can be asked, so the answer is no)."""
    if truthy("FORCE", environ):
        return
    what = f"the volume {machine.volume} (the venv, every notebook, the token) and the container {machine.name}"
    if not sys.stdin.isatty():
        raise MachineError(f"{make_command(machine, 'destroy')} removes {what}, and there is no terminal to ask: "
                           f"run {make_command(machine, 'destroy FORCE=1')} to remove them without asking")
    try:
        answer = ask(f"This removes {what}. Type {machine.volume} to go on: ")
    except EOFError:
        answer = ""
    if answer.strip() != machine.volume:
        raise MachineError("nothing removed: the answer was not the volume's name")


def running(machine: LocalMachine) -> None:
    """MachineError unless the container runs."""
    if machine.state() != "running":
        raise MachineError(f"{machine.name} is not running: {make_command(machine, 'up')} starts it")


def as_dev_user(machine: LocalMachine) -> list[str]:
    """`docker exec` options: the facts' dev user in ~/project, with the venv first on PATH, as a login would."""
    facts = machine.facts()
    home = facts["home"]
    venv = f"{home}/{facts['venv_dir']}"
    return ["-u", facts["user"], "-w", f"{home}/{facts['project_dir']}", "-e", f"HOME={home}",
            "-e", f"USER={facts['user']}", "-e", f"VIRTUAL_ENV={venv}", "-e", f"PATH={venv}/bin:{SYSTEM_PATH}"]


def shell(machine: LocalMachine, command: str | None) -> None:
    """Replace this process with bash in the container as the dev user: interactive, or running `command`."""
    running(machine)
    terminal = ["-it"] if sys.stdin.isatty() and not command else ["-i"]
    bash = ["bash", "-c", command] if command else ["bash", "-i"]
    sys.stdout.flush()
    os.execv(DOCKER, [DOCKER, "exec", *terminal, *as_dev_user(machine), machine.name, *bash])


def show_logs(machine: LocalMachine, lines: int = 200) -> None:
    """The end of PID 1's log and of each service's, escaped (the services are the user's programs)."""
    from ansible_collections.devbox.machine.plugins.action.devbox_status_report import escaped
    if machine.state() is None:
        raise MachineError(f"{machine.name} does not exist: {make_command(machine, 'up')} starts it")
    pid1 = docker("logs", "--tail", str(lines), machine.name)
    say(f"PID 1 of {machine.name} (docker logs, last {lines} lines)")
    for line in (pid1.stdout + pid1.stderr).splitlines():
        print(escaped(line))
    if machine.state() != "running":
        say(f"{machine.name} is {machine.state()}: the services' logs are on the volume, "
            f"{make_command(machine, 'up')} shows them again")
        return
    facts = machine.facts()
    for service in facts["services"]:
        log = f"{facts['home']}/{STATE_DIR}/{service['name']}.log"
        found = docker("exec", "-u", facts["user"], machine.name, "tail", "-n", str(lines), log, check=False)
        say(f"{service['name']} ({log}, last {lines} lines)")
        print("\n".join(escaped(line) for line in found.stdout.splitlines()) if found.returncode == 0
              else f"no log yet: {escaped(found.stderr.strip())}")


def restart_services(machine: LocalMachine) -> None:
    """Each service of the facts restarted by its launcher, as the dev user; the container keeps running."""
    from ansible_collections.devbox.machine.plugins.action.devbox_status_report import escaped
    from ansible_collections.devbox.machine.plugins.modules.devbox_services import COMMAND
    running(machine)
    facts = machine.facts()
    failed = []
    for service in facts["services"]:
        result = docker("exec", *as_dev_user(machine), machine.name, f"{facts['home']}/{COMMAND}", service["name"],
                        "restart", check=False)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            answer = {"error": (result.stdout + result.stderr).strip() or f"exit status {result.returncode}"}
        if result.returncode != 0 or "error" in answer:
            failed.append(service["name"])
            say(f"{service['name']}: failed: {escaped(answer.get('error'))}")
        else:
            say(f"{service['name']}: {escaped(answer.get('action', 'restarted'))}")
    if failed:
        raise MachineError(f"not restarted: {', '.join(failed)}; `make logs` shows why")


def act(machine: LocalMachine, action: str, playbook_args: list[str]) -> None:
    """One action of the command line; the caller holds the machine's lock (but for image, shell, logs) and has
    put the user's variables in machine.given (they reach ansible-playbook as JSON)."""
    if action == "check":
        if machine.state() != "running":
            sys.exit(f"{machine.name} is not running: a dry run needs the machine up ({make_command(machine, 'up')})")
        say("dry run of playbooks/site.yml: nothing changes; `changed` marks what the next "
            f"{make_command(machine, 'up')} would change")
        if machine.provision("--check", "--diff", *playbook_args).returncode != 0:
            sys.exit("failed: the dry run did not finish; see the error above")
    elif action == "image":
        build_image(machine.image, machine.facts()["user"])
    elif action == "shell":
        shell(machine, os.environ.get("CMD") or None)
    elif action == "logs":
        show_logs(machine)
    elif action == "restart":
        restart_services(machine)
    elif action == "up":
        facts = machine.facts()  # the variables are checked before anything is built or created
        if runs_as_built_and_said(machine, facts["user"]):
            say(f"checked {machine.name}: it runs {machine.image} as built from this tree, as the variables say")
        else:
            machine.check_ports_free(machine.inspect())  # a port in use stops the run before the build, too
            build_image(machine.image, facts["user"])
            machine.gpus, gpus_in_words = gpu_request(engine_info(), os.environ.get("DEVBOX_GPUS"))
            if machine.start_reasons() is not None:  # a running container that is what the facts say: no word
                say(f"starting {machine.name}: volume {machine.volume} at {facts['home']}, "
                    f"{published_in_words(machine)}, GPUs: {gpus_in_words}")
                replaced = machine.start()
                if replaced:
                    say(f"replaced the container (the volume stays): {'; '.join(replaced)}")
        say("provisioning with playbooks/site.yml")
        if machine.provision(*playbook_args).returncode != 0:
            sys.exit("failed: ansible-playbook playbooks/site.yml did not finish; the volume is intact, "
                     f"fix the error above and run {make_command(machine, 'up')} again")
    else:
        if action == "destroy":
            confirm_destroy(machine)
        if machine.state() == "running":
            say(f"stopping {machine.name}: SIGTERM to PID 1, which stops every service cleanly "
                f"(up to {stop_timeout()} s, fly.toml's kill_timeout)")
            machine.stop()
        machine.remove()
        say(f"removed container {machine.name}")
        if action == "destroy":
            machine.remove_volume()
            say(f"removed volume {machine.volume}")
        else:
            say(f"volume {machine.volume} kept: {make_command(machine, 'up')} brings everything back")


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
    return LocalMachine(name=environ.get("DEVBOX_NAME") or LOCAL_HOST,
                        volume=environ.get("DEVBOX_VOLUME") or DEFAULT_VOLUME,
                        image=environ.get("DEVBOX_IMAGE", "devbox:latest"),
                        port=jupyter_host_port(environ.get("DEVBOX_PORT")),
                        given=parse_vars(environ.get("VARS")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "check", "down", "destroy", "shell", "logs", "restart", "image"])
    parser.add_argument("playbook_args", nargs="*",
                        help="extra arguments for ansible-playbook (after --); $VARS (YAML or JSON, a mapping) adds "
                             "the playbook's variables")
    args = parser.parse_args()
    try:
        machine = local_machine()
        machine.facts()  # VARS that do not make a machine stop here, before anything is created
        if args.action in ("image", "shell", "logs"):  # nothing of the machine changes: no lock
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
