"""Where the venv and the project live in the dev user's home: the rule for such a path.

The roles pass python_env_venv_dir and python_env_project_dir (their one default is python_env's)
to every module as venv_dir and project_dir, paths relative to the home. The launcher reads the
absolute paths from each service's record. Standard library only.
"""
from __future__ import annotations

import os
import re

# The modules' options for them (documented by the doc fragment devbox.machine.layout); the defaults
# are python_env's (roles/python_env/defaults/main.yml), passed by the roles.
LAYOUT_ARGUMENT_SPEC = {
    "venv_dir": {"type": "str", "required": True},
    "project_dir": {"type": "str", "required": True},
}


# Plain names under the home, as the role check (plugins/action/devbox_check_inputs.py) takes them: parts of letters,
# digits, '.', '_' or '-', none of them '.' or '..', no leading '/' (the shell block quotes them as is).
DIR_PATTERN = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def dir_problem(relative) -> str | None:
    """Why a directory name cannot be used under the home; None when it can."""
    if isinstance(relative, str) and DIR_PATTERN.match(relative):
        return None
    return (f"{relative!r} must be a plain path relative to the home, such as 'venv' or 'work/venv' "
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
