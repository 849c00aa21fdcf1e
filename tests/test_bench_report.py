"""bench/report.py's arithmetic: medians and ranges, ratios against the baseline, and each figure
met or not against issue 20's target and moonshot. Plain numbers in, no Docker."""
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_report", os.path.join(ROOT, "bench", "report.py"))
report = importlib.util.module_from_spec(spec)
sys.modules["bench_report"] = report  # dataclasses look their module up there
spec.loader.exec_module(report)


def test_spread_gives_the_median_and_the_range():
    assert report.spread([3.0, 1.0, 2.0], 2) == "2.00 s (1.00–3.00)"
    assert report.spread([10.0, 1.0, 2.0, 3.0]) == "2.5 s (1.0–10.0)", "an even count: the mean of the middle two"


@pytest.mark.parametrize("ours, verdict", [
    ([30.0, 25.0, 35.0], "yes"),  # 0.60 of the seed: the target, not the moonshot
    ([22.0, 20.0, 30.0], "yes, moonshot too"),  # 0.44
    ([31.0, 25.0, 35.0], "**no**"),  # 0.62
])
def test_cold_provision_is_the_ratio_of_the_medians_against_0_6_and_0_5(ours, verdict):
    row = report.compare_row("cold", {"seed": [50.0, 40.0, 60.0], "ours": ours}, report.COLD_TARGET)
    assert row.ratio == f"{report.median(ours) / 50.0:.2f}"
    assert row.verdict() == verdict
    assert row.markdown().endswith(f"| ≤ 0.6 of the seed | ≤ 0.5 of the seed | {verdict} |")


def test_a_noop_rerun_is_held_to_the_target_of_its_round_trip():
    fast = report.noop_row(0.0, [1.4, 1.6, 1.2], [6, 6, 6], changed=0)
    assert fast.value == 1.4 and fast.verdict() == "yes"
    assert "1.40 s (1.20–1.60); 6 module runs on the host" in fast.ours
    assert report.noop_row(0.0, [0.9, 0.8, 1.0], [6] * 3, 0).verdict() == "yes, moonshot too"
    far = report.noop_row(50.0, [2.6, 2.4, 2.7], [6] * 3, 0, over="SSH")
    assert far.figure == "no-op rerun of site.yml over SSH at 50 ms round trip" and far.verdict() == "**no**"
    assert far.markdown().endswith("| ≤ 2.5 s | ≤ 1.8 s | **no** |")
    untargeted = report.noop_row(20.0, [2.0], [6], 0, over="SSH")
    assert untargeted.met() is None and untargeted.markdown().endswith("| — | — | — |")


def test_over_ssh_the_noop_target_is_its_own():
    row = report.noop_row(0.0, [1.7, 1.6, 1.75], [1] * 3, 0, over="SSH")
    assert row.verdict() == "yes" and row.markdown().endswith("| ≤ 1.8 s | ≤ 1.2 s | yes |")
    assert report.noop_row(0.0, [1.7, 1.6, 1.75], [1] * 3, 0).verdict() == "**no**", "over docker exec: 1.5 s"


def test_mitogen_is_shown_beside_without_a_target():
    row = report.noop_row(50.0, [2.9, 3.0, 3.1], [1] * 3, 0, over="SSH", strategy="Mitogen")
    assert row.figure == "no-op rerun of site.yml over SSH at 50 ms round trip with Mitogen"
    assert row.met() is None


def test_a_noop_rerun_is_also_shown_over_its_floor():
    row = report.noop_row(0.0, [1.4, 1.6, 1.2], [1] * 3, 0, floor=[1.0, 1.1, 0.9])
    assert row.baseline == "one-task playbook (floor): 1.00 s (0.90–1.10)"
    assert row.ratio == "floor + 0.40 s"
    assert row.value == 1.4 and row.verdict() == "yes", "the target bounds the rerun's own seconds"
    assert row.samples == {"ours": [1.4, 1.6, 1.2], "floor": [1.0, 1.1, 0.9]}


def test_a_rerun_that_changed_something_is_not_met_however_fast():
    row = report.noop_row(0.0, [0.5, 0.5, 0.5], [6] * 3, changed=2)
    assert row.verdict() == "**no**" and "NOT a no-op: changed=2" in row.ours


def test_adding_a_package_is_measured_over_uv_alone():
    samples = {"uv": [0.2, 0.3, 0.25], "ours": [1.2, 1.3, 1.1]}
    row = report.add_row(0.0, "tomli-w", samples)
    assert row.ratio == "+0.95 s" and row.verdict() == "yes, moonshot too"
    assert row.markdown().endswith("| ≤ uv + 1.5 s | ≤ uv + 1 s | yes, moonshot too |")
    slow = report.add_row(0.0, "tomli-w", {"uv": [0.25], "ours": [1.9]})
    assert slow.verdict() == "**no**"
    assert report.add_row(50.0, "tomli-w", samples).verdict() == "—", "issue 20 sets no target at 50 ms"


def test_four_machines_against_one_is_a_ratio_of_medians():
    row = report.multi_row({"1": [2.0, 2.1, 1.9], "4": [2.3, 2.2, 2.4]}, changed=0)
    assert row.figure == "no-op rerun on 4 machines vs 1" and row.ratio == "1.15x"
    assert row.verdict() == "yes, moonshot too"
    assert report.multi_row({"1": [2.0], "4": [3.2]}, changed=0).verdict() == "**no**"  # 1.6x
    assert report.multi_row({"1": [2.0], "4": [2.2]}, changed=1).verdict() == "**no**"


def test_make_up_on_a_converged_machine_against_2_and_1_5_seconds():
    row = report.up_row([1.5, 2.5, 1.9], changed=0)
    assert row.value == 1.9 and row.verdict() == "yes"
    assert row.markdown().endswith("| ≤ 2 s | ≤ 1.5 s | yes |")
    assert report.up_row([2.1, 2.2, 2.3], changed=0).verdict() == "**no**"


def test_a_warm_restart_that_never_answered_is_not_met():
    samples = {"seed": [4.0, 4.2], "ours": [3.0, 3.1]}
    assert report.warm_row(samples, {"seed": 0, "ours": 0}, runs=2).verdict() == "yes"
    row = report.warm_row(samples, {"seed": 0, "ours": 1}, runs=2)
    assert row.verdict() == "**no**" and "1 of 2 never answered" in row.ours
    assert report.warm_row({"seed": [4.0], "ours": []}, {"seed": 0, "ours": 1}, runs=1).verdict() == "**no**"


def test_image_size_against_half_the_seed():
    row = report.image_row({"seed": 682.0, "ours": 280.0})
    assert row.ratio == "0.41" and row.verdict() == "yes"
    assert report.image_row({"seed": 500.0, "ours": 260.0}).verdict() == "**no**"


def test_the_first_make_up_is_its_steps_and_their_total_without_a_target():
    rows = report.first_up_rows({"venv": 60.0, "image": 100.5, "site.yml": 30.25})
    assert [row.ours for row in rows] == ["60.0 s", "100.5 s", "30.2 s", "190.8 s"]
    assert rows[-1].figure.endswith("total") and all(row.verdict() == "—" for row in rows)


def test_the_report_puts_each_row_beside_its_target_and_lists_the_samples():
    rows = [report.up_row([2.5, 3.5, 2.9], 0), report.noop_row(0.0, [1.4], [6], 0)]
    text = report.render(["- date: today"], rows, failures=[], profiles={}, steps={"make up": {"site.yml": 1.5}})
    lines = text.splitlines()
    head = lines.index(report.TABLE_HEAD[0])
    assert lines[head + 2:head + 4] == [row.markdown() for row in rows]
    assert all(line.count("|") == 8 for line in lines[head:head + 4]), "seven columns in every line"
    assert "- `make up` on a running, converged machine (the whole command), ours: 2.50, 3.50, 2.90" in lines
    assert "| site.yml | 1.50 |" in lines
