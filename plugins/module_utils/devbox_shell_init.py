"""The managed block in ~/.bashrc that starts interactive shells in the project with the venv active.

Written by the user (the module does it in a child that is the user, see devbox_run_as), so root
never writes through a link the user planted. The block guards itself: it acts only in
interactive shells, so `ssh host command`, Ansible and VS Code's server (non-interactive) are
untouched, and it changes directory only at the start of an SSH login that begins in the home
(not in VS Code's own terminals, which open in the workspace). Standard library only.
"""
from __future__ import annotations

import os
import stat

from ansible_collections.devbox.machine.plugins.module_utils.devbox_files import (
    SHELL_BLOCK_BEGIN_PREFIX as BEGIN_PREFIX, SHELL_BLOCK_END as END)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import write_if_changed


def block(venv_dir: str, project_dir: str) -> str:
    """The block for these directories (relative to the home, checked by devbox_layout.dir_problem)."""
    return f"""{BEGIN_PREFIX} interactive shells use ~/{venv_dir}; SSH logins start in ~/{project_dir} >>>
case $- in
    *i*)
        if [ -z "${{VIRTUAL_ENV:-}}" ] && [ -f "$HOME/{venv_dir}/bin/activate" ]; then
            . "$HOME/{venv_dir}/bin/activate"
        fi
        if [ -n "${{SSH_CONNECTION:-}}" ] && [ "${{TERM_PROGRAM:-}}" != vscode ] && [ "$PWD" = "$HOME" ] \\
            && [ -d "$HOME/{project_dir}" ]; then
            cd "$HOME/{project_dir}" || true
        fi
        ;;
esac
{END}
"""


def with_block(text: str, new_block: str) -> str:
    """text with the block replaced in place, or appended when absent."""
    start = text.find(BEGIN_PREFIX)
    end = text.find(END, start) if start != -1 else -1
    if start != -1 and end > start:
        after = text[end + len(END):]
        return text[:start] + new_block + (after[1:] if after.startswith("\n") else after)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + new_block


def ensure_block(home: str, dry_run: bool, venv_dir: str, project_dir: str) -> bool:
    """Put the block into ~/.bashrc (its target, if the user made it a link); True when it changed."""
    path = os.path.realpath(os.path.join(home, ".bashrc"))
    try:
        with open(path) as current:
            text = current.read()
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        text, mode = "", 0o644
    return write_if_changed(path, with_block(text, block(venv_dir, project_dir)), mode, dry_run)
