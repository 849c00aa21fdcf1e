"""A uv project synced into a real venv: a small project made here and locked with the real uv against the
package index (the uv beside this Python, requirements-test.txt), then devbox_venv's converge and plan with
devbox_uv_project's steps, as the devbox_venv module runs them on the machine."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_uv_project as project_steps
from ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_project import (
    PROJECT_RECORD, converge_project, credentials_problem, index_variable, plan_project, project_env, source_problems)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    VenvError, converge, installed_distributions, plan)

UV = os.path.join(os.path.dirname(sys.executable), "uv")
PYPROJECT = """[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = [{dependencies}]

[dependency-groups]
dev = ["iniconfig==2.0.0"]
"""


def make_project(folder, dependencies) -> dict:
    """pyproject.toml with these dependencies, locked by uv; the module's project argument."""
    folder.mkdir(exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(dependencies=", ".join(f'"{d}"' for d in dependencies)))
    locked = subprocess.run([UV, "lock", "--directory", str(folder)], capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr
    return {"pyproject": (folder / "pyproject.toml").read_text(), "lock": (folder / "uv.lock").read_text(),
            "groups": [], "extras": [], "install": False}


def params(tmp_path, project, requirements=()):
    settings = {"index_url": None, "extra_index_urls": [], "ca_bundle": os.environ.get("SSL_CERT_FILE"),
                "installer": "uv"}
    return {"path": str(tmp_path / "project-venv"), "base_python": sys.executable, "requirements": list(requirements),
            "installer": "uv", "settings": settings, "min_free_mb": 1, "lock_timeout": 5,
            "project_dir": str(tmp_path / "project"), "project": project, "project_name": "my-repo"}


def no_uv(*args, **kwargs):
    raise AssertionError(f"uv ran: {args}")


def test_the_lock_is_installed_exactly_reruns_run_no_uv_and_a_new_lock_changes_exactly_its_difference(
        tmp_path, monkeypatch):
    source = tmp_path / "repo"
    first = make_project(source, ["six==1.16.0", "tomli-w==1.0.0"])
    venv = tmp_path / "project-venv"

    result = converge(params(tmp_path, first, ["colorama"]), converge_project=converge_project)
    installed = installed_distributions(str(venv))
    assert {name: installed.get(name) for name in ("six", "tomli-w", "iniconfig")} == {
        "six": "1.16.0", "tomli-w": "1.0.0", "iniconfig": "2.0.0"}, "the lock, its default group (dev) too"
    assert "demo" not in installed, "the project itself is not installed unless asked"
    assert result["project"]["synced"] is True and result["project"]["added_on_top"] == ["colorama"]
    assert "colorama" in installed, "what the lock lacks (the kernel, in a playbook) goes on top"
    assert (tmp_path / "project" / "uv.lock").read_text() == first["lock"]
    assert "six==1.16.0\n" in result["lock"] and "# by hand" not in result["lock"], "requirements.lock is still kept"

    monkeypatch.setattr(project_steps.subprocess, "run", no_uv)
    again = converge(params(tmp_path, first, ["colorama"]), converge_project=converge_project)
    assert again["changed"] is False and again["project"]["synced"] is False, "the same lock: nothing, and no uv"
    assert plan(params(tmp_path, first, ["colorama"]), plan_project=plan_project)["changed"] is False
    monkeypatch.undo()

    assert subprocess.run([str(venv / "bin" / "uv"), "pip", "install", "--python", str(venv / "bin" / "python"),
                           "tabulate==0.9.0"], capture_output=True).returncode == 0
    second = make_project(source, ["six==1.16.0", "attrs==24.2.0"])
    dry = plan(params(tmp_path, second, ["colorama"]), plan_project=plan_project)
    assert dry["changed"] is True and dry["installed"] == ["attrs==24.2.0"] and dry["removed"] == ["tomli-w==1.0.0"]
    assert "attrs==24.2.0" in dry["diff"][-1]["after"] and "tomli-w==1.0.0" in dry["diff"][-1]["before"]
    assert "attrs" not in installed_distributions(str(venv)), "a dry run changes nothing"
    assert (tmp_path / "project" / "uv.lock").read_text() == first["lock"]

    changed = converge(params(tmp_path, second, ["colorama"]), converge_project=converge_project)
    assert changed["installed"] == ["attrs==24.2.0"] and changed["removed"] == ["tomli-w==1.0.0"]
    assert changed["upgraded"] == []
    assert installed_distributions(str(venv))["tabulate"] == "0.9.0", "what the user installed by hand stays"
    assert "tabulate==0.9.0  # by hand" in changed["lock"]
    assert json.loads((venv / PROJECT_RECORD).read_text())["packages"]["attrs"] == "24.2.0"


def test_a_lock_that_does_not_match_its_pyproject_stops_before_anything_changes(tmp_path):
    project = make_project(tmp_path / "repo", ["six==1.16.0"])
    converge(params(tmp_path, project), converge_project=converge_project)
    before = installed_distributions(str(tmp_path / "project-venv"))
    stale = dict(project, pyproject=project["pyproject"].replace('"six==1.16.0"', '"six==1.16.0", "tomli-w"'))
    with pytest.raises(VenvError, match=r"uv.lock does not match pyproject.toml. Run `uv lock`"):
        converge(params(tmp_path, stale), converge_project=converge_project)
    assert installed_distributions(str(tmp_path / "project-venv")) == before


def test_a_package_on_top_that_the_locks_pins_exclude_stops_with_the_uv_add_that_fixes_it(tmp_path):
    project = make_project(tmp_path / "repo", ["pluggy==1.0.0"])
    converge(params(tmp_path, project), converge_project=converge_project)
    before = installed_distributions(str(tmp_path / "project-venv"))
    with pytest.raises(VenvError, match=r"`uv add --dev pytest`.*; nothing was changed"):
        converge(params(tmp_path, project, ["pytest==8.3.3"]), converge_project=converge_project)
    assert installed_distributions(str(tmp_path / "project-venv")) == before


def test_the_controller_check_names_the_fix(tmp_path):
    folder = tmp_path / "repo"
    assert "no such folder" in source_problems(str(folder), UV)[0]
    folder.mkdir()
    (folder / "pyproject.toml").write_text(PYPROJECT.format(dependencies='"six==1.16.0"'))
    assert "no uv.lock there; run `uv lock` in it" in source_problems(str(folder), UV)[0]
    make_project(folder, ["six==1.16.0"])
    assert source_problems(str(folder), UV) == []
    (folder / "pyproject.toml").write_text(PYPROJECT.format(dependencies='"six==1.16.0", "tomli-w"'))
    assert "uv.lock does not match pyproject.toml; run `uv lock`" in source_problems(str(folder), UV)[0]
    assert source_problems(str(folder), None) == [], "without uv here, the machine's uv sync --locked checks"


def test_index_credentials_reach_uv_in_its_environment_only():
    env = project_env("/v", {"index_url": "https://mirror/simple", "ca_bundle": "/ca.pem"},
                      {"internal-pypi": {"username": "me", "password": "s3cret"}})
    assert env["UV_INDEX_INTERNAL_PYPI_USERNAME"] == "me" and env["UV_INDEX_INTERNAL_PYPI_PASSWORD"] == "s3cret"
    assert "UV_INDEX_URL" not in env, "the project's own indexes decide, not the playbook's"
    assert env["SSL_CERT_FILE"] == "/ca.pem" and env["UV_PROJECT_ENVIRONMENT"] == "/v"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    assert index_variable("my.index", "password") == "UV_INDEX_MY_INDEX_PASSWORD"
    command = project_steps.sync_command("/v", {"groups": ["gpu"], "extras": ["cli"], "install": False})
    assert "s3cret" not in " ".join(command) and command[command.index("--group") + 1] == "gpu"
    assert "--no-default-groups" in command and "--no-install-project" in command


@pytest.mark.parametrize("credentials, message", [
    ([], "must map an index's name"),
    ({"bad name": {"username": "u"}}, "is not an index name"),
    ({"internal": {"user": "u"}}, "must be {username: ..., password: ...}"),
    ({"internal": {"password": 1}}, "must be {username: ..., password: ...}"),
])
def test_credentials_of_the_wrong_shape_are_refused(credentials, message):
    assert message in credentials_problem(credentials)


def test_a_pyproject_with_a_password_in_an_index_url_is_kept_private(tmp_path):
    project = {"pyproject": '[[tool.uv.index]]\nurl = "https://me:s3cret@pypi.example/simple"\n', "lock": "version = 1\n"}
    assert project_steps.write_project(str(tmp_path), project) is True
    assert (tmp_path / "pyproject.toml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "uv.lock").stat().st_mode & 0o777 == 0o644
    assert project_steps.write_project(str(tmp_path), project) is False
