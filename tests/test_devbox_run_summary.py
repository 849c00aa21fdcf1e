"""The final report's first lines: what a run did (or, in check mode, would do), from the registered results."""
import os

from test_module_docs import ROOT, load

run_summary = load(os.path.join(ROOT, "plugins", "lookup", "devbox_run_summary.py"))
HINT = run_summary.PENDING_HINT


def test_a_run_names_the_packages_with_their_versions_and_what_happened_to_the_services():
    python_env = {"changed": True, "installed": ["humanize==4.9.0"], "upgraded": ["six: 1.16.0 -> 1.17.0"],
                  "removed": ["colorama==0.4.6"], "rebuilt": None}
    services = {"services": {
        "jupyter": {"action": "restarted", "reason": "Jupyter's settings changed", "installed": [], "upgraded": []},
        "tensorboard": {"action": "started", "reason": "new", "installed": ["tensorboard==2.17.0", "humanize==4.9.0"],
                        "upgraded": []},
        "web": {"action": "already running", "reason": None, "installed": [], "upgraded": []},
        "old": {"action": "stopped", "error": None}},
        "settings": ["ServerApp.iopub_data_rate_limit: 1000000 -> 10000000"]}
    assert run_summary.summary(python_env, services, check=False) == [
        "Installed: humanize==4.9.0, tensorboard==2.17.0",
        "Upgraded: six: 1.16.0 -> 1.17.0",
        "Removed: colorama==0.4.6",
        "Restarted jupyter (Jupyter's settings changed)",
        "Started tensorboard (new)",
        "Stopped old (no longer in the services)",
        "Changed Jupyter's settings: ServerApp.iopub_data_rate_limit: 1000000 -> 10000000"]


def test_a_restart_a_busy_kernel_put_off_says_what_to_do():
    services = {"services": {"jupyter": {"action": "restart pending",
                                         "reason": "its packages changed; not now: 1 kernel busy"}}}
    assert run_summary.summary(None, services, check=False) == [
        f"Restart of jupyter pending (its packages changed; not now: 1 kernel busy): {HINT}"]
    services["services"]["jupyter"]["action"] = "would wait to restart"
    assert run_summary.summary(None, services, check=True) == [
        f"Would leave the restart of jupyter pending (its packages changed; not now: 1 kernel busy): {HINT}"]


def test_a_dry_run_says_the_same_as_would():
    python_env = {"changed": True, "installed": [], "upgraded": [], "removed": [], "would_install": ["tomli==2.0.1"]}
    services = {"services": {"jupyter": {"action": "would restart", "reason": "Jupyter's settings changed"},
                             "web": {"action": "would start"}},
                "settings": ["ServerApp.x: (unset) -> 1"]}
    assert run_summary.summary(python_env, services, check=True) == [
        "Would install: tomli==2.0.1", "Would restart jupyter (Jupyter's settings changed)", "Would start web",
        "Would change Jupyter's settings: ServerApp.x: (unset) -> 1"]
    assert run_summary.summary({"changed": True}, {}, check=True) == [
        "Would change the venv's packages or settings (--diff shows the settings)"]


def test_nothing_changed_says_nothing_and_a_left_out_role_is_no_error():
    unchanged = {"changed": False, "installed": [], "upgraded": [], "removed": [], "rebuilt": None}
    services = {"services": {"jupyter": {"action": "already running", "reason": None}}, "settings": []}
    assert run_summary.summary(unchanged, services, check=False) == []
    assert run_summary.summary({"skipped": True, "installed": ["x==1"]}, None, check=False) == []


def test_a_first_run_names_what_was_asked_for_and_counts_the_many_dependencies():
    installed = ["anyio==4.16.0", "jupyterlab==4.6.6", "Six==1.16.0"] + [f"dep{number}==1.0" for number in range(9)]
    asked = run_summary.asked_names(["six==1.16.0", "jupyter_lab >=4", "JupyterLab"])
    assert run_summary.summary({"installed": installed}, None, check=False, asked=asked) == [
        "Installed: jupyterlab==4.6.6, Six==1.16.0 and 10 dependencies"]
    assert run_summary.summary({"installed": installed[:5]}, None, check=False, asked=asked) == [
        "Installed: jupyterlab==4.6.6, Six==1.16.0, anyio==4.16.0, dep0==1.0, dep1==1.0"]
