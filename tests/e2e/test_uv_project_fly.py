"""A uv project (pyproject.toml + uv.lock) on Fly-like Machines, through the strict SSH stand-in (exec only, no
SFTP, scp or PTY, one session at a time): the two files travel as module arguments, the lock is installed
exactly, nothing is uploaded, and a rerun changes nothing.

Reuses the Fly end-to-end app of test_fly_e2e (its own instance: a module-scoped fixture).
"""
import json
import os
import subprocess
import sys

import pytest

from docker_machines import docker_output
from test_fly_e2e import HOST_CA_BUNDLE, ansible, app, failures, recap, started, uploads_and_ptys  # noqa: F401

pytestmark = pytest.mark.e2e

VENV = "/home/pythonuser/project-venv"
UV = os.path.join(os.path.dirname(sys.executable), "uv")
PYPROJECT = """[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["six==1.16.0", "tomli-w==1.0.0"]
"""


@pytest.fixture(scope="module")
def strategy():
    """ansible.cfg's strategy (test_fly_e2e runs its tests with both)."""
    return None


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repo")
    (folder / "pyproject.toml").write_text(PYPROJECT)
    locked = subprocess.run([UV, "lock", "--directory", str(folder)], capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr
    return folder


def converge_project(context, project):  # noqa: F811 - the imported fixture's name
    variables = {"python_env_project_source": str(project)}
    if os.path.isfile(HOST_CA_BUNDLE):
        variables["python_env_ca_bundle"] = "/etc/devbox/ca-bundle.pem"
    return ansible(context, "ansible-playbook", "-vvv", "-e", json.dumps(variables), "playbooks/site.yml")


def test_the_lock_reaches_each_machine_as_module_arguments_and_a_rerun_changes_nothing(app, project):  # noqa: F811
    result, output = converge_project(app, project)
    assert result.returncode == 0, failures(output)
    assert uploads_and_ptys(output) == [], "no file transfer, no PTY"
    for container in started(app):
        versions = docker_output("exec", "-u", "pythonuser", container, f"{VENV}/bin/python", "-c",
                                 "import six, tomli_w; print(six.__version__)")
        assert versions.strip() == "1.16.0"
        lock = docker_output("exec", container, "cat", "/home/pythonuser/project/uv.lock")
        assert lock == (project / "uv.lock").read_text().strip()
    result, output = converge_project(app, project)
    assert result.returncode == 0, failures(output)
    assert all(counts[0] == 0 for counts in recap(output).values()), output.split("PLAY RECAP")[-1]
