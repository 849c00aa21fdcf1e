"""The venv and project directory names: one rule for the role check and the modules."""
import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import PROJECT_DIR, VENV_DIR, dir_problem, options_problem, under_home


@pytest.mark.parametrize("name", [VENV_DIR, PROJECT_DIR, ".venv", "work/src", "a_b-1.2"])
def test_plain_names_under_the_home_are_taken(name):
    assert dir_problem(name) is None and under_home("/home/u", name) == f"/home/u/{name}"


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a/../b", "a/./b", ".", "a//b", "a/", "a b", "a$b", "a'b", None])
def test_anything_else_is_refused_naming_the_value(name):
    assert repr(name) in dir_problem(name)
    with pytest.raises(ValueError):
        under_home("/home/u", name)


def test_options_problem_names_the_option():
    assert options_problem({"venv_dir": VENV_DIR, "project_dir": PROJECT_DIR}) is None
    assert options_problem({"venv_dir": VENV_DIR}) is None, "a module with only venv_dir (status)"
    assert options_problem({"venv_dir": VENV_DIR, "project_dir": "/srv"}).startswith("project_dir: '/srv'")

