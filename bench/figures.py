"""The bench's measurements: a snapshot of the project, its images, and each figure.

Bench measures the snapshot as bench/run.py describes; bench/report.py turns the seconds
into rows against their targets.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

import yaml

from machines import (BENCH, CONNECTIONS, HOME, JUPYTER_PORT, ROOT, USER, VENV, BenchError, DockerConnection, Machine,
                      say)
from report import (COLD_TARGET, Row, add_row, at_rtt, compare_row, first_up_rows, image_row, multi_row, noop_row,
                    up_row, warm_row)
# machines put tools/ on the path.
from docker_machines import base_image, build_devbox_image, build_image, docker, docker_output, free_port
from docker_host import CA_IN_CONTAINER, host_ca_bundle

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
# A one-task playbook: the floor every no-op figure is also shown against.
FLOOR_PLAYBOOK = os.path.join(BENCH, "floor.yml")
SEED_IMAGE = "devbox-bench:seed"  # with -<tag> for --tag
OURS_IMAGE = "devbox-bench:ours"  # with -<tag>, -<label> for --before's snapshots; -ssh adds tests/fly_machine's sshd
SIDES = ("seed", "ours")
FIGURES = ("image", "cold", "warm", "noop", "add", "multi", "up")
# The strategy the no-op is also measured with, beside ansible.cfg's (Ansible's own).
MITOGEN = "mitogen_linear"
OPT_IN_FIGURES = ("first-up",)  # measured only when --only names them
# A restart normally answers within seconds: give up on one sooner, record it, go on.
WARM_TIMEOUT_S = 60
MACHINES_FOR_MULTI = 4
# The steps of `make up`, by the first word of what tools/local_machine.py says as it starts each.
MAKE_STEPS = {"building": "image build (`docker build`)", "keeping": "image check (inputs unchanged: no build)",
              "starting": "container start",
              "checked": "container and image check (a machine that is up: no build, no engine info)",
              "provisioning": "site.yml (ansible-playbook)"}


def recap_changed(output: str) -> int:
    """The sum of changed= in a playbook's PLAY RECAP."""
    return sum(int(count) for count in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str, revision: str | None = None, label: str = ""):
        """revision: the commit to measure (None: HEAD, or the working tree with --worktree);
        label: names this snapshot's images, containers and network beside another's (--before)."""
        self.args = args
        self.workdir = workdir
        self.revision = revision
        self.label = label
        suffix = f"-{label}" if label else ""
        tag = f"-{args.tag}" if args.tag else ""  # keeps this run's names apart from other sessions'
        self.prefix = f"devbox-bench{tag}-{os.getpid()}{suffix}"
        self.images = {"seed": SEED_IMAGE + tag, "ours": OURS_IMAGE + tag + suffix}
        self.ca_bundle = host_ca_bundle()
        self.steps: dict[str, dict[str, float]] = {}  # title -> {step: seconds}, e.g. `make up`'s
        self.created: list[str] = []  # containers and their volumes share these names
        self.extra_images: list[str] = []  # images only one figure needs, removed at the end
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
        self.docker_exec = DockerConnection(workdir, self.prefix, self.images)

    # ---- machines -------------------------------------------------------------------------

    def new_machine(self, side: str, label: str) -> Machine:
        name = f"{self.prefix}-{side}-{label}"
        self.created.append(name)
        docker("volume", "create", name)
        return Machine(side, name, self.images[side], self.connection.image(side), self.connection.run_args(side))

    def start(self, machine: Machine) -> None:
        """Start the machine's container and wait until ansible-playbook can reach it."""
        machine.start_new()
        self.connection.wait_ready(machine)

    def remove(self, machine: Machine) -> None:
        machine.remove()
        machine.remove_volume()
        self.created.remove(machine.name)

    def cleanup(self) -> None:
        for name in self.created:
            docker("rm", "-f", name, check=False)
            docker("volume", "rm", "-f", name, check=False)
        if self.created:
            say(f"removed {len(self.created)} bench containers and their volumes")
        self.created.clear()
        for image in self.extra_images:
            docker("rmi", image, check=False)
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

    def inventory(self, machines: list[Machine], connection: DockerConnection) -> str:
        """The local inventory's settings, one host per bench container."""
        with open(os.path.join(self.tree, "inventory", "local.yml")) as local:
            data = yaml.safe_load(local)
        if "plugin" in data:  # the devbox_local plugin's host variables
            template = dict(data.get("vars") or {})
        else:  # a tree from before the plugin (bench/before_after.py): a static inventory of one host
            template = dict(data["all"].get("vars") or {})
            template.update(next(iter(data["all"]["hosts"].values())) or {})
        hosts = {}
        for machine in machines:
            hostvars = dict(template, devbox_private_ip=machine.name, jupyter_lab_spec=self.args.package_set,
                            devbox_address_here="127.0.0.1", devbox_ports_here={JUPYTER_PORT: machine.host_port()})
            hostvars.update(connection.hostvars(machine))
            if self.ca_bundle:
                hostvars["python_env_ca_bundle"] = CA_IN_CONTAINER
            hosts[machine.name] = hostvars
        path = os.path.join(self.workdir, f"inventory-{len(machines)}.yml")
        with open(path, "w") as out:
            json.dump({"all": {"hosts": hosts}}, out)  # JSON is YAML
        return path

    def playbook(self, machines: list[Machine], limit: Machine | None = None, extra_vars: dict | None = None,
                 connection: DockerConnection | None = None, playbook: str | None = None,
                 strategy: str | None = None) -> tuple[float, dict]:
        """Run site.yml, or another playbook (over --connection unless told, with ansible.cfg's strategy unless
        told); return its seconds and the bench_stats callback's figures."""
        connection = connection or self.connection
        self.playbook_runs += 1
        stats_file = os.path.join(self.workdir, f"stats-{self.playbook_runs}.json")
        log_file = os.path.join(self.workdir, f"playbook-{self.playbook_runs}.log")
        command = [ANSIBLE_PLAYBOOK, "-i", self.inventory(machines, connection)]
        if limit:
            command += ["--limit", limit.name]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(self.tree, "ansible.cfg"),
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(BENCH, "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="bench_stats,devbox.machine.payload_cache", BENCH_STATS_FILE=stats_file,
                   **connection.playbook_env(self.playbook_runs))
        if strategy:
            env["ANSIBLE_STRATEGY"] = strategy
        with open(log_file, "w") as log:
            started = time.monotonic()
            process = subprocess.Popen(command + [playbook or os.path.join(self.tree, "playbooks", "site.yml")],
                                       cwd=self.tree,
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait()
            except KeyboardInterrupt:
                # Its forked workers too: killing the main process alone would orphan them.
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                raise
            elapsed = time.monotonic() - started
        connection.after_playbook(self.playbook_runs)
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
        self.base_image = base_image(self.tree)
        say(f"building {self.images['seed']} on {self.base_image}")
        build_image(self.images["seed"], os.path.join(BENCH, "seed"), BASE_IMAGE=self.base_image, NONROOT_USER=USER)
        say(f"building {self.images['ours']} on {self.base_image}")
        build_devbox_image(self.images["ours"], USER, self.tree, self.base_image)
        self.connection.prepare(self.tree)

    def figure_image(self) -> Row:
        sizes = {side: int(docker_output("image", "inspect", "-f", "{{.Size}}", image)) / 1e6
                 for side, image in self.images.items()}
        base = int(docker_output("image", "inspect", "-f", "{{.Size}}", self.base_image)) / 1e6
        say(f"image: seed {sizes['seed']:.0f} MB, ours {sizes['ours']:.0f} MB (base {base:.0f} MB)")
        return image_row(sizes)

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
        return compare_row("cold provision (fresh volume to Jupyter answering)", samples, COLD_TARGET)

    def figure_warm(self) -> Row:
        machines = {side: self.provisioned_machine(side) for side in SIDES}
        samples = {"seed": [], "ours": []}
        failed = {"seed": 0, "ours": 0}
        for run in range(self.args.runs):
            for side in self.interleaved(run):
                machine = machines[side]
                machine.remove()
                started = time.monotonic()
                machine.start_new(bare=True)  # the image's own boot path: no Ansible, so no sshd either
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
                machine.remove()
                self.start(machine)
                machine.wait_answering(time.monotonic())
        return warm_row(samples, failed, self.args.runs)

    def figure_noop(self, rtt_ms: float, connection: DockerConnection | None = None, mitogen: bool = False) -> Row:
        """The no-op rerun over --connection, or over the connection given (`docker exec` beside ssh); with
        ansible.cfg's strategy (Ansible's own), or with Mitogen's to show both side by side."""
        machine = self.provisioned_machine("ours")
        connection = connection or self.connection
        connection.rtt_ms = rtt_ms
        strategy = MITOGEN if mitogen else None
        label = f"{connection.label}{at_rtt(rtt_ms)}{' with Mitogen' if mitogen else ''}"
        seconds, runs, changed, profiles, floor = [], [], [], [], []
        for run in range(self.args.runs):
            # Interleaved with the floor: a one-task playbook against the same machine, the same way.
            for kind in self.interleaved(run, ("floor", "site")):
                if kind == "floor":
                    floor.append(self.playbook([machine], connection=connection, playbook=FLOOR_PLAYBOOK,
                                               strategy=strategy)[0])
                    continue
                elapsed, stats = self.playbook([machine], connection=connection, strategy=strategy)
                seconds.append(elapsed)
                runs.append(stats["host_task_runs"].get(machine.name, 0))
                changed.append(stats["changed"].get(machine.name, 0))
                profiles.append((elapsed, *self.last_playbook))
            say(f"noop over {label} {run + 1}/{self.args.runs}: {seconds[-1]:.2f} s, "
                f"{runs[-1]} module runs on the host, changed={changed[-1]}; floor {floor[-1]:.2f} s")
        connection.rtt_ms = 0.0
        self.keep_profile(f"no-op rerun over {label}", profiles)
        return noop_row(rtt_ms, seconds, runs, max(changed), over=connection.label, floor=floor,
                        strategy="Mitogen" if mitogen else "")

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
        return add_row(rtt_ms, package, samples)

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
        return multi_row(samples, changed)

    def figure_up(self) -> Row:
        """`make up` as a user types it, on a running machine it converged before: the whole
        command (make, the engine check, the image build from cache, site.yml)."""
        name = f"{self.prefix}-ours-up"
        self.created.append(name)
        env = {"DEVBOX_NAME": name, "DEVBOX_VOLUME": name, "DEVBOX_IMAGE": self.images["ours"],
               "DEVBOX_PORT": str(free_port())}
        say("up: a first `make up` converges a new machine (untimed)")
        self.make("up", sys.prefix, env)
        seconds, changed, runs = [], 0, []
        for run in range(self.args.runs):
            steps, output = self.make("up", sys.prefix, env)
            seconds.append(sum(steps.values()))
            changed = max(changed, recap_changed(output))
            runs.append((seconds[-1], steps))
            say(f"up {run + 1}/{self.args.runs}: {seconds[-1]:.2f} s, changed={recap_changed(output)}")
        median_run = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        self.steps[f"Where `make up` on a converged machine spends its time, {median_run[0]:.2f} s (its median run)"] \
            = median_run[1]
        return up_row(seconds, changed)

    def figure_first_up(self) -> list[Row]:
        """The first `make up` where nothing is cached, once, split into its steps: a new venv
        (pip without its cache), ours' image built without Docker's layer cache, a new volume.
        The base image is kept: making it again means a pull or debootstrap, and other work on
        this computer uses it. Opt-in (--only first-up): it downloads the venv's packages."""
        venv = os.path.join(self.workdir, "first-up-venv")
        image = self.images["ours"] + "-uncached"
        self.extra_images.append(image)
        name = f"{self.prefix}-ours-first-up"
        self.created.append(name)
        env = {"DEVBOX_NAME": name, "DEVBOX_VOLUME": name, "DEVBOX_IMAGE": image, "DEVBOX_PORT": str(free_port()),
               "PIP_NO_CACHE_DIR": "1"}
        say("first-up: a new venv (`make venv`, no pip cache)")
        steps = {"venv: `make venv` (python -m venv, pip install -r requirements-test.txt, no pip cache)":
                 sum(self.make("venv", venv, env, venv_made=False)[0].values())}
        say("first-up: ours' image without the layer cache")
        started = time.monotonic()
        build_devbox_image(image, USER, self.tree, self.base_image, no_cache=True)
        steps[f"image: docker build --no-cache on the kept base `{self.base_image}`"] = time.monotonic() - started
        say("first-up: `make up` on a new volume")
        up_steps, _ = self.make("up", venv, env)
        steps.update({f"then {step}" if step.startswith("`make") else f"then `make up`: {step}": seconds
                      for step, seconds in up_steps.items()})
        say("first-up: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items()))
        return first_up_rows(steps)

    # ---- helpers --------------------------------------------------------------------------

    def make(self, target: str, venv: str, env: dict[str, str], venv_made: bool = True) -> tuple[dict, str]:
        """Run `make <target>` in the measured tree with that venv (left as it is when venv_made);
        return the seconds of its steps, cut where tools/local_machine.py says `==> `, and its output."""
        command = ["make", "-C", self.tree, f"VENV={venv}", target]
        if venv_made:
            command[-1:-1] = ["-o", os.path.join(venv, "bin", ".installed")]
        steps, lines = {}, []
        step = f"`make {target}` to its first step (make, venv and engine checks)"
        last = time.monotonic()
        with subprocess.Popen(command, env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) as process:
            try:
                for line in process.stdout:
                    lines.append(line)
                    if line.startswith("==> "):
                        now = time.monotonic()
                        steps[step] = steps.get(step, 0.0) + now - last
                        step, last = MAKE_STEPS.get(line.split()[1], line[4:].strip()[:60]), now
            except KeyboardInterrupt:
                os.killpg(process.pid, signal.SIGTERM)
                raise
        steps[step] = steps.get(step, 0.0) + time.monotonic() - last
        if process.returncode != 0:
            raise BenchError(f"make {target} failed (exit {process.returncode}); end of its output:\n"
                             + "".join(lines[-40:]))
        return steps, "".join(lines)

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

    def run(self, figures: list[str]) -> list[Row]:
        self.snapshot()
        self.build_images()
        rows = []
        for figure in FIGURES + OPT_IN_FIGURES:
            if figure not in figures:
                continue
            say(f"figure: {figure}")
            if figure == "cold":
                # Keep the last cold machines when a later figure needs provisioned ones.
                rows.append(self.figure_cold(keep=bool({"warm", "noop", "add"} & set(figures))))
            elif figure == "first-up":
                rows += self.figure_first_up()
            elif figure == "noop" and self.connection.name != "docker":
                # Issue 20 asks for both: `docker exec` (as `make up` runs) and SSH (as on Fly), and Mitogen's
                # strategy beside Ansible's own at each round trip.
                rows.append(self.figure_noop(0.0, self.docker_exec))
                rows += [self.figure_noop(rtt_ms) for rtt_ms in self.args.rtts]
                rows += [self.figure_noop(rtt_ms, mitogen=True) for rtt_ms in self.args.rtts]
            elif figure == "noop":
                rows += [self.figure_noop(0.0), self.figure_noop(0.0, mitogen=True)]
            elif figure in ("noop", "add"):
                rows += [getattr(self, f"figure_{figure}")(rtt_ms) for rtt_ms in self.args.rtts]
            else:
                rows.append(getattr(self, f"figure_{figure}")())
        return rows
