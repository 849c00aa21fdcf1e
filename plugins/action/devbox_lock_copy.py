"""Action plugin: keep a machine's lock on the controller, from the text its module returned.

It runs inside ansible-playbook itself: no module run, no file transfer, no process started,
so a rerun that changed nothing costs one local file read. The file is replaced atomically,
only when its text changed, and never in check mode. Its name is the host's, checked
(plugins/module_utils/devbox_names.py: a name with '/', '..' or a control character is refused,
never rewritten); its text is masked again and refused when a line holds a control character.
"""
from __future__ import annotations

import os
import tempfile

from ansible.plugins.action import ActionBase
from ansible_collections.devbox.machine.plugins.module_utils.devbox_names import name_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import control_problem, mask_credentials


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("content", "dir", "host"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        content, folder, host = (self._task.args.get(key) for key in ("content", "dir", "host"))
        if not isinstance(content, str) or not isinstance(folder, str) or not os.path.isabs(folder):
            return dict(result, failed=True, msg=f"devbox_lock_copy needs the lock's text and an absolute dir, not {folder!r}")
        # The host's name becomes the file's name only through the one checked function; the text is the
        # machine's, so it is masked again (the one masking rule) and refused with a control character.
        problem = name_problem(host, "the inventory host name")
        if problem:
            return dict(result, failed=True, msg=f"{problem} (its lock copy would be {folder}/<name>.requirements.lock)")
        dest = os.path.join(folder, f"{host}.requirements.lock")
        content = mask_credentials(content)
        problem = control_problem(content, f"the lock {host} returned")
        if problem:
            return dict(result, failed=True, msg=problem)
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
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)  # the folder named by dir, nothing under it
        descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".devbox-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(content)
            os.fchmod(out.fileno(), 0o644)
        os.replace(temporary, dest)
