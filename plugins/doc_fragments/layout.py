"""The options naming where the venv and the project live in the dev user's home, documented once:
`extends_documentation_fragment: [devbox.machine.layout]`. Their argument spec is LAYOUT_ARGUMENT_SPEC
of plugins/module_utils/devbox_layout.py, which also checks them."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  venv_dir:
    description: The venv, relative to the home (python_env_venv_dir).
    type: str
    required: true
  project_dir:
    description: The project directory, relative to the home (python_env_project_dir).
    type: str
    required: true
"""
