"""The managed block in ~/.bashrc that starts interactive shells in ~/project with the venv active.

Written by the user (the module does it in a child that is the user, see devbox_run_as), so root
never writes through a link the user planted. The block guards itself: it acts only in
interactive shells, so `ssh host command`, Ansible and VS Code's server (non-interactive) are
untouched, and it changes directory only at the start of an SSH login that begins in the home
(not in VS Code's own terminals, which open in the workspace). Standard library only.
"""
from __future__ import annotations

import os
import stat

# Absolute names, not relative ones: Mitogen ships only the module_utils it finds by name.
try:  # in Ansible, run from this repository (ansible.cfg's module_utils path)
    from ansible.module_utils.devbox_venv import write_if_changed
except ImportError:
    try:  # installed as the devbox.machine collection
        from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import write_if_changed
    except ImportError:  # outside Ansible (the unit tests): the same file, imported by its own name
        from devbox_venv import write_if_changed

BEGIN = "# >>> devbox: interactive shells use ~/project-venv; SSH logins start in ~/project >>>"
END = "# <<< devbox <<<"
BLOCK = f"""{BEGIN}
case $- in
    *i*)
        if [ -z "${{VIRTUAL_ENV:-}}" ] && [ -f "$HOME/project-venv/bin/activate" ]; then
            . "$HOME/project-venv/bin/activate"
        fi
        if [ -n "${{SSH_CONNECTION:-}}" ] && [ "${{TERM_PROGRAM:-}}" != vscode ] && [ "$PWD" = "$HOME" ] \\
            && [ -d "$HOME/project" ]; then
            cd "$HOME/project" || true
        fi
        ;;
esac
{END}
"""


def with_block(text: str) -> str:
    """text with the block replaced in place, or appended when absent."""
    start, end = text.find(BEGIN), text.find(END)
    if start != -1 and end > start:
        after = text[end + len(END):]
        return text[:start] + BLOCK + after[1:] if after.startswith("\n") else text[:start] + BLOCK + after
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + BLOCK


def ensure_block(home: str, dry_run: bool = False) -> bool:
    """Put the block into ~/.bashrc (its target, if the user made it a link); True when it changed."""
    path = os.path.realpath(os.path.join(home, ".bashrc"))
    try:
        with open(path) as current:
            text = current.read()
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        text, mode = "", 0o644
    return write_if_changed(path, with_block(text), mode, dry_run)
