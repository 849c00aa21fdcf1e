"""The bench's arithmetic and its markdown: medians, ratios, each figure against its target.

Pure functions of the measured seconds (no Docker), so tests/test_bench_report.py checks them.
The targets are issue 20's (with its moonshots) and, for image size and warm restart, issue 5's.
"""
from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """An issue's limit on a figure's value, its moonshot (None: none), and how they read:
    `text` has {} where the number goes ("≤ {} s", "≤ uv + {} s", "≤ {}x")."""
    limit: float
    moonshot: float | None
    text: str

    def describe(self, limit: float | None) -> str:
        return "—" if limit is None else self.text.format(f"{limit:g}")


# No-op rerun by connection and round trip (ms); others (Mitogen's, other round trips) are reported without one.
NOOP_TARGETS = {("docker exec", 0.0): Target(1.5, 1.0, "≤ {} s"), ("SSH", 0.0): Target(1.8, 1.2, "≤ {} s"),
                ("SSH", 50.0): Target(2.5, 1.8, "≤ {} s")}
# Adding one package: seconds over uv installing it alone.
ADD_TARGETS = {0.0: Target(1.5, 1.0, "≤ uv + {} s")}
COLD_TARGET = Target(0.6, 0.5, "≤ {} of the seed")
WARM_TARGET = Target(1.0, None, "≤ {} of the seed")
IMAGE_TARGET = Target(0.5, None, "≤ {} of the seed")
MULTI_TARGET = Target(1.5, 1.2, "≤ {}x")
UP_TARGET = Target(2.0, 1.5, "≤ {} s")


@dataclass
class Row:
    """One line of the table. `value` is what the target bounds (seconds, seconds over the
    baseline, or a ratio); `sound` is False when the runs were not what the figure means (a
    "no-op" that changed something, runs that never answered): then the target is not met."""
    figure: str
    baseline: str
    ours: str
    ratio: str
    target: Target | None = None
    value: float | None = None
    sound: bool = True
    samples: dict[str, list[float]] = field(default_factory=dict)

    def met(self) -> bool | None:
        """None: reported without a target."""
        if self.target is None:
            return None
        return self.sound and self.value is not None and self.value <= self.target.limit

    def moonshot_met(self) -> bool:
        moonshot = self.target.moonshot if self.target else None
        return bool(self.met()) and moonshot is not None and self.value <= moonshot

    def verdict(self) -> str:
        met = self.met()
        if met is None:
            return "—"
        if not met:
            return "**no**"
        return "yes, moonshot too" if self.moonshot_met() else "yes"

    def markdown(self) -> str:
        target, moonshot = (self.target.describe(self.target.limit), self.target.describe(self.target.moonshot)) \
            if self.target else ("—", "—")
        return (f"| {self.figure} | {self.baseline} | {self.ours} | {self.ratio} | {target} | {moonshot} | "
                f"{self.verdict()} |")


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 1) -> str:
    """The median with the range in brackets: "4.5 s (4.1–5.0)"."""
    return f"{median(values):.{digits}f} s ({min(values):.{digits}f}–{max(values):.{digits}f})"


def at_rtt(rtt_ms: float) -> str:
    """The figure's label suffix for a round trip added by the relay (none on plain loopback)."""
    return f" at {rtt_ms:g} ms round trip" if rtt_ms else ""


def not_a_noop(changed: int) -> str:
    return f"; NOT a no-op: changed={changed}" if changed else ""


def image_row(sizes_mb: dict[str, float]) -> Row:
    ratio = sizes_mb["ours"] / sizes_mb["seed"]
    return Row("image size (base included)", f"seed: {sizes_mb['seed']:.0f} MB", f"{sizes_mb['ours']:.0f} MB",
               f"{ratio:.2f}", IMAGE_TARGET, ratio)


def compare_row(figure: str, samples: dict[str, list[float]], target: Target) -> Row:
    """Ours against the seed: the ratio of their medians."""
    ratio = median(samples["ours"]) / median(samples["seed"])
    return Row(figure, f"seed: {spread(samples['seed'])}", spread(samples["ours"]), f"{ratio:.2f}", target, ratio,
               samples=samples)


def warm_row(samples: dict[str, list[float]], never_answered: dict[str, int], runs: int) -> Row:
    """compare_row for the warm restart, which counts runs that never answered as not met."""
    figure = "warm restart (container recreated to Jupyter answering)"
    if not (samples["seed"] and samples["ours"]):
        return Row(figure, "—", "—", "—", WARM_TARGET, None, False, samples)
    row = compare_row(figure, samples, WARM_TARGET)
    for side, count in never_answered.items():
        if count:
            note = f"; **{count} of {runs} never answered** (see Failures)"
            row.sound = False
            if side == "seed":
                row.baseline += note
            else:
                row.ours += note
    return row


def noop_row(rtt_ms: float, seconds: list[float], module_runs: list[int], changed: int, over: str = "docker exec",
             floor: list[float] | None = None, strategy: str = "") -> Row:
    """over: the connection, in the figure's name ("docker exec", "SSH"); floor: the seconds of a one-task
    playbook against the same machine the same way, the baseline the rerun is shown over ("floor + x s");
    strategy: "" for ansible.cfg's (the targets are its), else the name shown ("Mitogen"), without a target."""
    ours = f"{spread(seconds, 2)}; {median(module_runs):.0f} module runs on the host" + not_a_noop(changed)
    samples = {"ours": seconds}
    baseline, over_floor = "—", "—"
    if floor:
        baseline, over_floor = f"one-task playbook (floor): {spread(floor, 2)}", \
            f"floor + {median(seconds) - median(floor):.2f} s"
        samples["floor"] = floor
    target = None if strategy else NOOP_TARGETS.get((over, rtt_ms))
    return Row(f"no-op rerun of site.yml over {over}{at_rtt(rtt_ms)}{' with ' + strategy if strategy else ''}",
               baseline, ours, over_floor, target, median(seconds), not changed, samples)


def add_row(rtt_ms: float, package: str, samples: dict[str, list[float]]) -> Row:
    """Adding one package and rerunning, against uv installing it alone: the target bounds the difference."""
    over_uv = median(samples["ours"]) - median(samples["uv"])
    return Row(f"add one small package (`{package}`) and rerun{at_rtt(rtt_ms)}",
               f"uv alone: {spread(samples['uv'], 2)}", spread(samples["ours"], 2), f"+{over_uv:.2f} s",
               ADD_TARGETS.get(rtt_ms), over_uv, samples=samples)


def multi_row(samples: dict[str, list[float]], changed: int) -> Row:
    """samples: {"1": seconds on one machine, "<n>": seconds on n machines}."""
    many = next(count for count in samples if count != "1")
    ratio = median(samples[many]) / median(samples["1"])
    return Row(f"no-op rerun on {many} machines vs 1", f"1 machine: {spread(samples['1'], 2)}",
               f"{many} machines: {spread(samples[many], 2)}" + not_a_noop(changed), f"{ratio:.2f}x", MULTI_TARGET,
               ratio, not changed, samples)


def up_row(seconds: list[float], changed: int) -> Row:
    return Row("`make up` on a running, converged machine (the whole command)", "—",
               spread(seconds, 2) + not_a_noop(changed), "—", UP_TARGET, median(seconds), not changed,
               {"ours": seconds})


def first_up_rows(steps: dict[str, float]) -> list[Row]:
    """The first `make up` where nothing is cached, one row per step and their total; no target."""
    rows = [Row(f"first `make up`, nothing cached: {step}", "—", f"{seconds:.1f} s", "—") for step, seconds in
            steps.items()]
    return rows + [Row("first `make up`, nothing cached: total", "—", f"{sum(steps.values()):.1f} s", "—")]


TABLE_HEAD = ["| figure | baseline | ours | ours / baseline | target | moonshot | met |",
              "|---|---|---|---|---|---|---|"]


def table(rows: list[Row]) -> list[str]:
    return TABLE_HEAD + [row.markdown() for row in rows]


def sample_lines(rows: list[Row]) -> list[str]:
    return [f"- {row.figure}, {side}: {', '.join(f'{value:.2f}' for value in values)}"
            for row in rows for side, values in row.samples.items()]


def render(facts: list[str], rows: list[Row], failures: list[str], profiles: dict, steps: dict) -> str:
    """bench/results/latest.md: the facts, the table, the samples, failures, where the time goes."""
    lines = ["# Benchmark: ours against the seed's boot path", "", *facts, "", *table(rows)]
    lines += ["", "Jupyter answering = `GET /api/status` with `Authorization: token <t>` from the host "
              "returns 200. Module runs on the host = task results of site.yml that ran a module on "
              "the machine (loop items counted; assert, set_fact and debug run on the controller).",
              "", "## Samples (seconds)", "", *sample_lines(rows)]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"```\n{failure.strip()}\n```" for failure in failures]
    lines += profile_lines(profiles)
    for title, of_title in steps.items():
        lines += step_lines(title, of_title)
    return "\n".join(lines) + "\n"


# The kinds of task bench_stats records, as the time breakdown names them.
TASK_KINDS = {
    "module": "tasks that ran a module on the machine (one exec each, loop items one each)",
    "controller": "tasks on the controller only (assert, set_fact, debug, include_role, validate_argument_spec...)",
    "skipped": "module tasks that no host ran (their `when` was false)",
}


def profile_lines(profiles: dict[str, tuple[float, float, list[list]]], whose: str = "ours") -> list[str]:
    """The time breakdown of each figure's median run: {figure: (figure s, site.yml s, [[task, s, kind]...])}."""
    lines = []
    for figure, (total, playbook, tasks) in profiles.items():
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


def step_lines(title: str, steps: dict[str, float]) -> list[str]:
    """A breakdown of one command into its steps (e.g. `make up`'s), in seconds."""
    return ["", f"## {title}", "", "| step | s |", "|---|---|"] + \
        [f"| {step} | {seconds:.2f} |" for step, seconds in steps.items()]


def machine_description() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc {len(os.sched_getaffinity(0))}, {model}, kernel {platform.release()}"
