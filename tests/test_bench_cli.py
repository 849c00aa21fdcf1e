"""bench/run.py and bench/before_after.py load their parts (machines, figures, report) and check
their options before they touch Docker: a wrong option ends them at once, with the reason."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args], capture_output=True,
                          text=True, timeout=60)


def test_the_help_names_every_figure_and_the_opt_in_one_apart():
    result = bench("run.py", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "of image,cold,warm,noop,add,multi,up,first-up (default image,cold,warm,noop,add,multi,up)" in text
    assert bench("before_after.py", "--help").returncode == 0


@pytest.mark.parametrize("args, reason", [
    (["--only", "noop,nope"], "--only: unknown figure(s) nope"),
    (["--rtt-ms", "0,50"], "--rtt-ms above 0 needs --connection ssh"),
    (["--tag", "Kit!"], "--tag: lower-case letters, digits and dashes"),
    (["--runs", "0"], "--runs must be at least 1"),
])
def test_a_wrong_option_stops_the_bench_before_it_starts(args, reason):
    result = bench("run.py", *args)
    assert result.returncode == 2 and reason in result.stderr, result.stderr
