"""Where the venv and the project live in the dev user's home: the default names, in one place.

The roles pass python_env_venv_dir and python_env_project_dir to every module as venv_dir and
project_dir (paths relative to the home); the defaults below are the roles' defaults too. The
launchers, which run alone on the volume, read the absolute paths from the settings their module
writes. Standard library only.
"""
from __future__ import annotations

import os
import re

VENV_DIR = "project-venv"
PROJECT_DIR = "project"
# The modules' options for them (documented by the doc fragment devbox.machine.layout).
LAYOUT_ARGUMENT_SPEC = {
    "venv_dir": {"type": "str", "default": VENV_DIR},
    "project_dir": {"type": "str", "default": PROJECT_DIR},
}


# Plain names under the home, as the role check (plugins/action/devbox_check_inputs.py) takes them: parts of letters,
# digits, '.', '_' or '-', none of them '.' or '..', no leading '/' (the shell block quotes them as is).
DIR_PATTERN = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def dir_problem(relative) -> str | None:
    """Why a directory name cannot be used under the home; None when it can."""
    if isinstance(relative, str) and DIR_PATTERN.match(relative):
        return None
    return (f"{relative!r} must be a plain path relative to the home, such as 'project-venv' or 'work/venv' "
            "(letters, digits, '.', '_', '-'; no '..', no leading '/')")


def options_problem(params: dict) -> str | None:
    """The first of a module's venv_dir and project_dir options that cannot be used, with why."""
    for option in ("venv_dir", "project_dir"):
        problem = dir_problem(params[option]) if option in params else None
        if problem:
            return f"{option}: {problem}"
    return None


def under_home(home: str, relative: str) -> str:
    """The absolute path of a checked directory name; ValueError naming the problem otherwise."""
    problem = dir_problem(relative)
    if problem:
        raise ValueError(problem)
    return os.path.join(home, relative)
