"""Action plugin: keep a machine's lock on the controller, from the text its module returned.

It runs inside ansible-playbook itself: no module run, no file transfer, no process started,
so a rerun that changed nothing costs one local file read. The file is replaced atomically,
only when its text changed, and never in check mode.
"""
from __future__ import annotations

import os
import tempfile

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("content", "dest"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        content, dest = self._task.args.get("content"), self._task.args.get("dest", "")
        if not isinstance(content, str) or not os.path.isabs(dest):
            return dict(result, failed=True, msg=f"devbox_lock_copy needs the lock's text and an absolute dest, not {dest!r}")
        try:
            with open(dest, encoding="utf-8") as current:
                before = current.read()
        except FileNotFoundError:
            before = ""
        except OSError as error:
            return dict(result, failed=True, msg=f"cannot read the controller's copy {dest}: {error}")
        result.update(dest=dest, changed=before != content)
        if result["changed"] and self._task.diff:
            result["diff"] = {"before_header": dest, "after_header": dest, "before": before, "after": content}
        if result["changed"] and not self._task.check_mode:
            try:
                self.write(dest, content)
            except OSError as error:
                return dict(result, failed=True, msg=f"cannot write the controller's copy {dest}: {error}")
        return result

    @staticmethod
    def write(dest: str, content: str) -> None:
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".devbox-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(content)
            os.fchmod(out.fileno(), 0o644)
        os.replace(temporary, dest)
