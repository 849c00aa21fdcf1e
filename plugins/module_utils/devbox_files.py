"""The names of what the roles keep on the machine, one home for each, and the one reading the look shares.

Read by the module that writes each file (devbox_venv, devbox_idle) and by the look
(devbox_look), which then needs none of those larger libraries on the machine.
"""
from __future__ import annotations

import os

# In each venv: the mark of a finished build and the installer's settings (devbox_venv).
COMPLETE_MARKER = ".devbox-complete"
SETTINGS_FILE = "devbox-installer.json"
# In the project: the venv's exact set.
LOCK_FILE = "requirements.lock"
# Where the requested packages were kept before they moved to root's ~/.devbox (python_env removes it).
REQUESTED_FILE = "devbox-requested.json"
# Root's own records in the home's ~/.devbox (plugins/module_utils/devbox_records.py): the requested packages
# (name -> extras) that decide what is `by hand`, the idle stop setting PID 1 reads, and the restarts a busy
# kernel put off (devbox_idle).
REQUESTED_RECORD = "requested-packages.json"
IDLE_SETTING_FILE = "idle_stop.json"
PENDING_RESTART_FILE = "restart_pending.json"
# The devbox block of ~/.bashrc is found by this start (whatever directories it names) and ends at END.
SHELL_BLOCK_BEGIN_PREFIX = "# >>> devbox:"
SHELL_BLOCK_END = "# <<< devbox <<<"


def built_for(venv: str, parts: int = 2) -> str | None:
    """'3.11' (parts=2) or '3.11.2' (parts=3) from pyvenv.cfg's version line."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as config:
            for line in config:
                key, _, value = line.partition("=")
                if key.strip() in ("version", "version_info"):
                    return ".".join(value.strip().split(".")[:parts])
    except OSError:
        pass
    return None


def read_text(path: str) -> str | None:
    """A UTF-8 file's text; None when it cannot be read as such."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None
