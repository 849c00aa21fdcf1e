"""Issue 21: the user's uv project (pyproject.toml + uv.lock) on a machine, with JupyterLab beside it.

One fresh local machine, one life: a small project made here and locked with the real uv against the package
index (two small dependencies and ipykernel in the `dev` group) is synced into the project venv, which then
holds exactly the locked versions and none of JupyterLab's packages; a rerun changes nothing; a notebook's
default kernel is the project venv and imports a locked package; a new lock that adds one dependency and drops
another is shown by --check without a change, then installed as exactly that difference; a pin that conflicts
with JupyterLab's own dependencies (an old tornado) installs, and Jupyter still serves.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
from packaging.markers import Marker

from docker_machines import LocalMachine, TEST_IMAGE, changed_tasks, fresh, recap_changed, said, tagged

NAME = tagged("devbox-uvproject")
HOME = "/home/pythonuser"
VENV = f"{HOME}/project-venv"
JUPYTER_VENV = f"{HOME}/.local/share/devbox/venvs/jupyter"
LAUNCHER = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"
UV = os.path.join(os.path.dirname(sys.executable), "uv")
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")
# uv sync leaves the venv's own installers alone.
INSTALLERS = {"pip", "setuptools", "uv"}
JUPYTERLABS_OWN = {"jupyterlab", "jupyter-server", "jupyterlab-server", "notebook-shim", "jupyter-lsp"}

PYPROJECT = """[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [{dependencies}]

[dependency-groups]
dev = ["ipykernel"]
"""

# As the user, with Jupyter's own venv: a kernel of the default kind from the running server, as a new
# notebook gets it, runs a cell; prints the kernel spec's name and display name, and the cell's output.
NOTEBOOK = f"""
import glob, json, subprocess, urllib.request
from jupyter_client import BlockingKernelClient
status = json.loads(subprocess.run(["python3", "{LAUNCHER}", "jupyter", "status"], capture_output=True).stdout)
token = open("{HOME}/.jupyter/devbox_token").read().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
def api(path, data=None):
    request = urllib.request.Request(status["url"] + path, data=data, method="POST" if data else "GET",
                                     headers={{"Authorization": "token " + token}})
    return json.load(opener.open(request))
specs = api("api/kernelspecs")
kernel = api("api/kernels", b"{{}}")
connection = glob.glob("{HOME}/.local/share/jupyter/runtime/kernel-" + kernel["id"] + ".json")[0]
client = BlockingKernelClient(connection_file=connection)
client.load_connection_file()
client.start_channels()
client.wait_for_ready(timeout=60)
output = []
client.execute_interactive("import six, sys; print(six.__version__, sys.executable)", timeout=60,
                           output_hook=lambda message: output.append(message["content"].get("text", "")))
client.stop_channels()
print(json.dumps({{"default": specs["default"], "display_name": specs["kernelspecs"][specs["default"]]["spec"]["display_name"],
                  "kernel": kernel["name"], "output": "".join(output)}}))
"""


def make_project(folder, *dependencies) -> None:
    """The project's pyproject.toml, locked here by the real uv against the package index."""
    folder.mkdir(exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(dependencies=", ".join(f'"{d}"' for d in dependencies)))
    locked = subprocess.run([UV, "lock", "--directory", str(folder)], capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr


def locked_versions(folder) -> dict[str, str]:
    """{name: version} the lock installs on a Linux machine with Python 3.11 (uv's export, its markers evaluated)."""
    exported = subprocess.run([UV, "export", "--frozen", "--no-hashes", "--no-annotate", "--no-header",
                               "--no-emit-project", "--directory", str(folder)], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    found = {}
    for line in exported.stdout.splitlines():
        requirement, _, marker = line.partition(";")
        if "==" in requirement and (not marker.strip() or Marker(marker).evaluate()):
            name, version = requirement.strip().split("==")
            found[canonical(name)] = version
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(machine, venv: str = VENV) -> dict[str, str]:
    result = machine.exec(f"{venv}/bin/python -m pip freeze --all --disable-pip-version-check", user="pythonuser")
    assert result.returncode == 0, result.stderr
    return {canonical(line.split("==")[0]): line.split("==")[1] for line in result.stdout.splitlines() if "==" in line}


def run(machine, source, *extra):
    variables = {"python_env_project_source": str(source), "python_env_lock_copy_dir": LOCKS}
    result = machine.provision("-e", json.dumps(variables), *extra, capture=True)
    return result.returncode, result.stdout + result.stderr


def jupyter_status(machine) -> dict:
    return json.loads(machine.exec(f"python3 {LAUNCHER} jupyter status", user="pythonuser").stdout or "{}")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repo")
    make_project(folder, "six==1.16.0", "tomli-w==1.0.0")
    return folder


@pytest.fixture(scope="module")
def machine(project):
    with fresh(LocalMachine(name=NAME, volume=f"{NAME}-home", image=TEST_IMAGE)) as machine:
        rc, output = run(machine, project)
        assert rc == 0, output[-3000:]
        yield machine


def test_a_fresh_machine_has_exactly_the_locked_versions_and_none_of_jupyterlabs(machine, project):
    here = installed(machine)
    assert {name: version for name, version in here.items() if name not in INSTALLERS} == locked_versions(project)
    assert not JUPYTERLABS_OWN & set(here), "JupyterLab's packages are in its own venv"
    assert JUPYTERLABS_OWN <= set(installed(machine, JUPYTER_VENV))
    assert machine.exec(f"cat {HOME}/project/uv.lock").stdout == (project / "uv.lock").read_text()
    lock = machine.exec(f"cat {HOME}/project/requirements.lock").stdout
    assert "six==1.16.0\n" in lock and "# by hand" not in lock, "requirements.lock is still written"


def test_a_rerun_changes_nothing(machine, project):
    rc, output = run(machine, project)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]


def test_a_new_notebooks_default_kernel_is_the_project_venv_and_imports_a_locked_package(machine):
    result = machine.exec(f"{JUPYTER_VENV}/bin/python - <<'EOF'\n{NOTEBOOK}\nEOF", user="pythonuser")
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert (found["default"], found["kernel"], found["display_name"]) == ("python3", "python3", "Python (project)")
    assert found["output"].split() == ["1.16.0", f"{VENV}/bin/python"]


def test_a_new_lock_is_shown_by_check_then_installed_as_exactly_its_difference(machine, project):
    assert machine.exec(f"{VENV}/bin/python -m pip install -q --disable-pip-version-check tabulate==0.9.0",
                        user="pythonuser").returncode == 0
    before = installed(machine)
    make_project(project, "six==1.16.0", "attrs==24.2.0")
    rc, output = run(machine, project, "--check", "--diff")
    assert rc == 0, output[-3000:]
    assert "+attrs==24.2.0" in output and "-tomli-w==1.0.0" in output, output[-3000:]
    assert installed(machine) == before, "--check changes nothing"

    rc, output = run(machine, project)
    assert rc == 0, output[-3000:]
    after = installed(machine)
    assert {name: version for name, version in after.items() if name not in before} == {"attrs": "24.2.0"}
    assert {name: version for name, version in before.items() if name not in after} == {"tomli-w": "1.0.0"}
    assert all(after[name] == version for name, version in before.items() if name in after), "nothing else moved"
    assert "installed attrs==24.2.0" in said(output) and "removed tomli-w==1.0.0" in said(output)
    assert "tabulate==0.9.0  # by hand" in machine.exec(f"cat {HOME}/project/requirements.lock").stdout


def test_a_pin_that_conflicts_with_jupyterlab_installs_and_jupyter_still_serves(machine, project):
    jupyters_tornado = installed(machine, JUPYTER_VENV)["tornado"]
    make_project(project, "six==1.16.0", "attrs==24.2.0", "tornado==6.1")
    rc, output = run(machine, project)
    assert rc == 0, output[-3000:]
    assert installed(machine)["tornado"] == "6.1"
    assert installed(machine, JUPYTER_VENV)["tornado"] == jupyters_tornado
    assert jupyter_status(machine)["healthy"] is True
    rc, output = run(machine, project)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
