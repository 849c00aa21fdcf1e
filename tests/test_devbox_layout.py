"""The venv and project directory names: one rule for the role check and the modules."""
import os

import pytest
import yaml

from ansible_collections.devbox.machine.plugins.module_utils.devbox_layout import (
    dir_problem, options_problem, under_home)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The defaults are spelled once, in python_env's defaults (tests/test_one_home.py); they must pass the rule.
with open(os.path.join(ROOT, "roles", "python_env", "defaults", "main.yml")) as _defaults:
    _PYTHON_ENV = yaml.safe_load(_defaults)
VENV_DIR, PROJECT_DIR = _PYTHON_ENV["python_env_venv_dir"], _PYTHON_ENV["python_env_project_dir"]


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

