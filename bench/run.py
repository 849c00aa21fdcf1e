#!/usr/bin/env python3
"""Benchmark of issues 5 and 20: our Ansible-provisioned dev machine against the seed's boot path.

Measures a snapshot of the project taken at the start (the commit HEAD, another with --commit,
or with --worktree the working tree), so edits made meanwhile do not mix into a run. Builds both images on the same
base (tools/base_image.py): the seed's, re-implemented from its description under bench/seed/,
and ours from the project's Dockerfile. Then measures, side by side and interleaved, each
figure the median of --runs runs:

  image  image sizes
  cold   fresh volume to Jupyter answering with its token (ours: container + playbooks/site.yml)
  warm   container recreated on a provisioned volume to Jupyter answering (no Ansible for ours)
  noop   no-op rerun of site.yml: seconds and task results that ran a module on the host, beside
         its floor (bench/floor.yml, one task against the same machine the same way): "floor + x s"
  add    one small package added and site.yml rerun, against uv installing it alone
  multi  no-op rerun on 4 machines against 1
  up     `make up` on a running, converged machine: the whole command (make, engine check,
         image build from cache, site.yml), over `docker exec` as `make up` runs it

Opt-in, only with --only (it downloads the venv's packages and rebuilds the image):

  first-up  the first `make up` where nothing is cached, once, split into its steps: a new
            venv (no pip cache), ours' image with `--no-cache` (the base image is kept), a new
            volume

noop and add are measured at each round trip of --rtt-ms (default 0: loopback as it is).

--connection says how ansible-playbook reaches ours' machines: docker (`docker exec`, the
default) or ssh (real OpenSSH to an sshd in ours' containers: the measured tree's
tests/fly_machine built on top of ours, on an IPv6 Docker network, reached at each container's
IPv6 address port 22 with a certificate of a CA made per run; above 0 ms through
bench/latency_relay.py as the ProxyCommand). With ssh, the no-op rerun is also measured over
`docker exec`, on the same machine, as issue 20 asks for both; and the no-op with Mitogen beside
Ansible's own strategy (ansible.cfg's) at each round trip.

Prints a markdown table, each figure beside its target and moonshot, and writes it to
bench/results/latest.md (a subset chosen with --only, fewer than 3 runs, another commit, or a
run without --connection ssh --rtt-ms 0,50 goes to bench/results/partial.md.tmp instead, so it
never replaces the full table). Every container, volume and network it creates is named
devbox-bench-<pid>-* (devbox-bench-<tag>-<pid>-* and images devbox-bench:*-<tag> with --tag) and
removed at the end, also on Ctrl-C. Progress goes to stderr. Run it with `make bench`; it is not
a test. bench/before_after.py puts two commits side by side.

The code: bench/machines.py (the machines and connections), bench/figures.py (the snapshot,
the images and each measurement), bench/report.py (medians, ratios, targets, the markdown).
"""
from __future__ import annotations

import argparse
import configparser
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from figures import FIGURES, OPT_IN_FIGURES, Bench  # noqa: E402
from machines import BENCH, CONNECTIONS, ROOT, BenchError, say  # noqa: E402
from report import machine_description, render  # noqa: E402
from docker_machines import docker_output  # noqa: E402

FULL_OUTPUT = os.path.join(BENCH, "results", "latest.md")
PARTIAL_OUTPUT = os.path.join(BENCH, "results", "partial.md.tmp")
T = TypeVar("T")


def header(bench: Bench) -> list[str]:
    """The facts above the table: when, where, what was measured and how."""
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine_description()}, Docker engine {docker_output('version', '-f', '{{.Server.Version}}')}; "
        f"load average (1 min) {bench.load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "- baselines: the seed's boot path (bench/seed/) for image, cold and warm; uv alone for "
        "add; ours on 1 machine for the 4-machine rerun",
        f"- project measured: {bench.tree_description}",
        f"- both images on the same base `{bench.base_image}`; package set `{bench.args.package_set}`; "
        f"connection: {bench.connection.description}; `make up` always over `docker exec`",
        f"- each figure: median of {bench.args.runs} runs (min–max in brackets), seed and ours interleaved",
        f"- strategy: ansible.cfg's (`{ansible_cfg_strategy(bench)}`), unless a row says Mitogen "
        "(ANSIBLE_STRATEGY=mitogen_linear)",
        "- targets: issue 20's, with its moonshots (image size and warm restart: issue 5's)",
        f"- command: `{' '.join(['.venv/bin/python bench/run.py'] + sys.argv[1:])}`",
    ]


def ansible_cfg_strategy(bench: Bench) -> str:
    """The strategy the measured tree's ansible.cfg names (an ANSIBLE_STRATEGY in the environment wins)."""
    if os.environ.get("ANSIBLE_STRATEGY"):
        return f"{os.environ['ANSIBLE_STRATEGY']} (ANSIBLE_STRATEGY)"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(bench.tree, "ansible.cfg"))
    return parser.get("defaults", "strategy", fallback="linear")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, the median is reported (default 3)")
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated figures to measure, of {','.join(FIGURES + OPT_IN_FIGURES)} "
                             f"(default {','.join(FIGURES)})")
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
    parser.add_argument("--tag", default="", help="a word in the names of this run's containers and images, "
                                                  "apart from other runs on this computer")
    parser.add_argument("--output", help=f"markdown file to write (default {os.path.relpath(FULL_OUTPUT, ROOT)} "
                                         f"for all figures with --runs 3 or more, --connection ssh and "
                                         f"--rtt-ms 0,50, else "
                                         f"{os.path.relpath(PARTIAL_OUTPUT, ROOT)})")
    args = parser.parse_args()
    args.figures = [figure.strip() for figure in args.only.split(",") if figure.strip()]
    unknown = set(args.figures) - set(FIGURES + OPT_IN_FIGURES)
    if unknown or not args.figures:
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                     f"choose from {','.join(FIGURES + OPT_IN_FIGURES)}")
    if args.tag and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.tag):
        parser.error("--tag: lower-case letters, digits and dashes")
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


def measure_then_clean_up(benches: list[Bench], measure: Callable[[], T]) -> T:
    """measure(), then every bench's cleanup whatever happens; a failure or Ctrl-C ends the
    command with one line. Also when started in the background, where the shell leaves SIGINT
    ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    try:
        return measure()
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
    except (BenchError, subprocess.CalledProcessError) as error:
        sys.exit(f"bench: failed: {error}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        for bench in benches:
            bench.cleanup()


def write_report(report: str, output: str) -> None:
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as out:
        out.write(report)
    print(report)
    say(f"written to {os.path.relpath(output, ROOT)}")


def main() -> None:
    args = parse_args()
    figures = [figure for figure in FIGURES + OPT_IN_FIGURES if figure in args.figures]
    with tempfile.TemporaryDirectory(prefix="devbox-bench-") as workdir:
        bench = Bench(args, workdir, revision=args.commit)
        rows = measure_then_clean_up([bench], lambda: bench.run(figures))
        report = render(header(bench), rows, bench.failures, bench.profiles, bench.steps)
    # The README quotes latest.md: only a complete run (every figure, over SSH too at 0 and 50 ms,
    # as issue 20 asks) of at least 3 runs per figure replaces it.
    complete = (set(FIGURES) <= set(figures) and args.runs >= 3 and not args.commit and args.connection == "ssh"
                and {0.0, 50.0} <= set(args.rtts))
    write_report(report, args.output or (FULL_OUTPUT if complete else PARTIAL_OUTPUT))


if __name__ == "__main__":
    main()
