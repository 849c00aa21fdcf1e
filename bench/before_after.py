#!/usr/bin/env python3
"""Before and after, side by side in one run: cold provision and the no-op rerun of two
snapshots of the project (issue 9: before and after every task pipelines).

    .venv/bin/python bench/before_after.py --before a6df650 --runs 3 --rtt-ms 0,50

"after" is HEAD (another commit with --after, or the working tree with --worktree), "before"
the commit given. Each snapshot
is measured as bench/run.py measures ours, with its own images (devbox-bench:ours-<label>),
its own tests/fly_machine stand-in for --connection ssh (the default here), and the same bench
code. The runs alternate between the two, run by run, which one goes first too, so both see
the same load on this shared machine. Per run and snapshot: a fresh volume provisioned to
Jupyter answering (cold), then a no-op rerun at each round trip of --rtt-ms. Writes
bench/results/before-after.md (or --output); progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from figures import Bench  # noqa: E402
from machines import BENCH, CONNECTIONS, ROOT, BenchError, say  # noqa: E402
from report import at_rtt, machine_description, profile_lines, spread  # noqa: E402
from run import measure_then_clean_up, write_report  # noqa: E402
from docker_machines import docker_output  # noqa: E402

OUTPUT = os.path.join(BENCH, "results", "before-after.md")


def measure(benches: dict[str, Bench], runs: int, rtts: list[float]) -> dict[str, dict[str, list[float]]]:
    """{figure: {label: [seconds, ...]}}; each bench keeps the profiles of its median runs."""
    samples: dict[str, dict[str, list[float]]] = {}
    profiles: dict[tuple[str, str], list] = {}
    order = list(benches)
    for run in range(runs):
        for label in order if run % 2 == 0 else order[::-1]:
            bench = benches[label]
            machine = bench.new_machine("ours", f"cold{run}")
            seconds = bench.provision(machine, time.monotonic())
            record(samples, profiles, "cold provision (fresh volume to Jupyter answering)", label,
                   (seconds, *bench.last_playbook))
            say(f"cold {run + 1}/{runs}: {label} answered after {seconds:.1f} s")
            for rtt_ms in rtts:
                bench.connection.rtt_ms = rtt_ms
                elapsed, stats = bench.playbook([machine])
                bench.connection.rtt_ms = 0.0
                changed = stats["changed"].get(machine.name, 0)
                if changed:
                    raise BenchError(f"{label}: the rerun after cold provision changed {changed} things")
                record(samples, profiles, f"no-op rerun of site.yml{at_rtt(rtt_ms)}", label,
                       (elapsed, *bench.last_playbook))
                say(f"noop{at_rtt(rtt_ms)} {run + 1}/{runs}: {label} {elapsed:.2f} s, "
                    f"{stats['host_task_runs'].get(machine.name, 0)} module runs on the host")
            bench.remove(machine)
    for (figure, label), runs_of_figure in profiles.items():
        benches[label].keep_profile(figure, runs_of_figure)
    return samples


def record(samples: dict, profiles: dict, figure: str, label: str, run: tuple) -> None:
    samples.setdefault(figure, {}).setdefault(label, []).append(run[0])
    profiles.setdefault((figure, label), []).append(run)


def render(args: argparse.Namespace, benches: dict[str, Bench], samples: dict, load_at_start: float) -> str:
    before, after = benches["before"], benches["after"]
    lines = [
        "# Benchmark: before and after, side by side",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine_description()}, Docker engine {docker_output('version', '-f', '{{.Server.Version}}')}; "
        f"load average (1 min) {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        "(other work shares these cores)",
        f"- before: {before.tree_description}; connection: {before.connection.description}",
        f"- after: {after.tree_description}; connection: {after.connection.description}",
        f"- both on the base `{after.base_image}`; package set `{args.package_set}`",
        f"- each figure: median of {args.runs} runs (min–max in brackets), before and after alternating",
        f"- command: `{' '.join(['.venv/bin/python bench/before_after.py'] + sys.argv[1:])}`",
        "",
        "| figure | before | after | after / before |",
        "|---|---|---|---|",
    ]
    for figure, by_label in samples.items():
        digits = 1 if figure.startswith("cold") else 2
        ratio = statistics.median(by_label["after"]) / statistics.median(by_label["before"])
        lines.append(f"| {figure} | {spread(by_label['before'], digits)} | {spread(by_label['after'], digits)} | "
                     f"{ratio:.2f} |")
    lines += ["", "## Samples (seconds)", ""]
    for figure, by_label in samples.items():
        for label, values in by_label.items():
            lines.append(f"- {figure}, {label}: {', '.join(f'{value:.2f}' for value in values)}")
    for label, bench in benches.items():
        lines += profile_lines(bench.profiles, whose=label)
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the commit to measure as before")
    after = parser.add_mutually_exclusive_group()
    after.add_argument("--after", help="the commit to measure as after (default HEAD)")
    after.add_argument("--worktree", action="store_true", help="after = the working tree instead of HEAD")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure and snapshot (default 3)")
    parser.add_argument("--connection", choices=sorted(CONNECTIONS), default="ssh",
                        help="how ansible-playbook reaches the machines (default ssh)")
    parser.add_argument("--rtt-ms", default="0", help="comma-separated round trips (ms) for the no-op rerun "
                                                      "(default 0); above 0 needs --connection ssh")
    parser.add_argument("--package-set", default="jupyter", help="what both install for Jupyter")
    parser.add_argument("--output", default=OUTPUT, help=f"default {os.path.relpath(OUTPUT, ROOT)}")
    args = parser.parse_args()
    try:
        args.rtts = sorted({float(value) for value in args.rtt_ms.split(",") if value.strip()})
    except ValueError:
        parser.error(f"--rtt-ms: not a list of numbers: {args.rtt_ms}")
    if not args.rtts or min(args.rtts) < 0 or (max(args.rtts) > 0 and args.connection != "ssh"):
        parser.error("--rtt-ms: round trips of 0 or more; above 0 only with --connection ssh")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.package = "tomli-w"  # Bench's add figure, not measured here
    args.tag = ""
    return args


def main() -> None:
    args = parse_args()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="devbox-bench-") as workdir:
        benches = {}
        for label, revision in (("before", args.before), ("after", args.after)):
            os.makedirs(os.path.join(workdir, label))
            benches[label] = Bench(args, os.path.join(workdir, label), revision=revision, label=label)

        def snapshot_build_measure() -> dict:
            for bench in benches.values():
                bench.snapshot()
                bench.build_images()
            return measure(benches, args.runs, args.rtts)
        samples = measure_then_clean_up(list(benches.values()), snapshot_build_measure)
        report = render(args, benches, samples, load_at_start)
    write_report(report, args.output)


if __name__ == "__main__":
    main()
