"""One look decides: a converged rerun runs one module on the machine, and drift is still repaired.

One local machine (the shipped image, a named volume as home) lives through the tests in order:
provisioned, rerun (nothing to do: the look is the one module run), then changed by hand the way
a user would (a package uninstalled, Jupyter stopped, Jupyter's settings edited): each next rerun
names the drift and repairs it. Then a new package runs python_env, and the rerun after is one
module run again. What ran is counted by bench's callback (bench/callback_plugins/bench_stats.py).
"""
import json
import os
import re
import tempfile

import pytest

from docker_machines import ROOT, TEST_IMAGE, LocalMachine, changed_tasks, fresh, recap_changed, tagged

HOME = "/home/pythonuser"
VENV = f"{HOME}/project-venv"
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")
PACKAGES = {"python_env_packages": ["six==1.16.0"], "python_env_lock_copy_dir": LOCKS}
DEV_USER_TASK = "Ensure the dev user and its home on the volume"


def run(machine, packages: dict = PACKAGES, *extra: str) -> tuple[str, dict]:
    """Provision; the output and bench's stats (host_task_runs, tasks)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as stats_file:
        result = machine.provision("-e", json.dumps(packages), *extra, capture=True, env={
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "bench", "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "bench_stats,devbox.machine.payload_cache", "BENCH_STATS_FILE": stats_file.name})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        with open(stats_file.name) as stats:
            return output, json.load(stats)


def module_runs(stats: dict) -> int:
    (runs,) = stats["host_task_runs"].values()
    return runs


def ran(stats: dict, task: str) -> bool:
    """Whether a task of that name ran a module (whatever the output shows of it)."""
    return any(name.endswith(task) and kind == "module" for name, _, kind in stats["tasks"])


def installed(machine) -> str:
    return machine.exec(f"ls {VENV}/lib/python3*/site-packages").stdout


def jupyter_healthy(machine) -> bool:
    status = machine.exec(f"{HOME}/.local/bin/devbox-service jupyter status", user="pythonuser")
    return json.loads(status.stdout)["healthy"]


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-look"), volume=tagged("devbox-look-home"),
                            image=TEST_IMAGE)) as machine:
        run(machine)
        yield machine


def test_a_converged_rerun_is_one_module_run_and_still_reports(machine):
    output, stats = run(machine)
    assert recap_changed(output) == 0, changed_tasks(output)
    assert module_runs(stats) == 1, stats["tasks"]
    assert len(stats["tasks"]) <= 10, [task[0] for task in stats["tasks"]]
    # The report, from the look: the token in the URL is the one Jupyter keeps.
    token = machine.exec(f"cat {HOME}/.jupyter/devbox_token").stdout
    assert re.search(rf"jupyter: http://\S+/lab\?token={token}", output), output[-2000:]
    assert re.search(r"Venv: /home/pythonuser/project-venv \(Python 3\.\d+\)", output), output[-2000:]


def test_a_run_limited_by_tags_runs_the_tagged_roles_in_full(machine):
    output, stats = run(machine, PACKAGES, "--tags", "python_env")
    # The run's record notes its tags (devbox_provision_record says changed when they differ): nothing else changed.
    assert [task for task in changed_tasks(output) if not task.startswith("Record the run")] == []
    assert ran(stats, "Ensure the venv and the packages") and not ran(stats, DEV_USER_TASK)
    output, stats = run(machine)
    assert recap_changed(output) == 0 and module_runs(stats) == 1, changed_tasks(output)


def test_a_package_removed_by_hand_comes_back(machine):
    removed = machine.exec(f"{VENV}/bin/uv pip uninstall --python {VENV}/bin/python six", user="pythonuser")
    assert removed.returncode == 0 and "six-1.16.0.dist-info" not in installed(machine), removed.stderr
    output, _ = run(machine)
    assert "package removed by hand: six" in output
    assert recap_changed(output) >= 1
    assert "six-1.16.0.dist-info" in installed(machine)
    output, stats = run(machine)
    assert recap_changed(output) == 0 and module_runs(stats) == 1, changed_tasks(output)


def test_a_stopped_jupyter_is_started(machine):
    machine.exec(f"{HOME}/.local/bin/devbox-service jupyter stop", user="pythonuser")
    assert not jupyter_healthy(machine)
    output, _ = run(machine)
    assert "jupyter down" in output
    assert recap_changed(output) >= 1
    assert jupyter_healthy(machine)


def test_a_broken_setting_is_repaired(machine):
    config = f"{HOME}/.jupyter/jupyter_server_config.json"
    before = machine.exec(f"cat {config}").stdout
    machine.exec(f"""python3 -c 'import json; p="{config}"; c=json.load(open(p)); c["ServerApp"]["port_retries"]=50;
json.dump(c, open(p, "w"))'""", user="pythonuser")
    assert machine.exec(f"cat {config}").stdout != before
    output, _ = run(machine)
    assert ".jupyter/jupyter_server_config.json changed" in output
    assert recap_changed(output) >= 1
    assert machine.exec(f"cat {config}").stdout == before


def test_a_new_package_runs_python_env_and_then_nothing(machine):
    more = dict(PACKAGES, python_env_packages=["six==1.16.0", "tabulate==0.9.0"])
    output, stats = run(machine, more)
    assert recap_changed(output) >= 1 and "tabulate-0.9.0.dist-info" in installed(machine)
    assert ran(stats, "Ensure the venv and the packages")
    assert not ran(stats, DEV_USER_TASK), "a role whose inputs did not change stays skipped"
    output, stats = run(machine, more)
    assert recap_changed(output) == 0 and module_runs(stats) == 1, changed_tasks(output)
