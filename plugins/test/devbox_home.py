"""Jinja test `devbox_home`: is this path a home root may hand to the user?

Runs on the controller, before anything changes, with the rule the devbox_user module and the
boot step apply (checked_home in plugins/module_utils/devbox_account.py): an absolute path of
its own, no '..', outside the system trees (/etc, /usr, /var, /root, /tmp, ...).
"""
from __future__ import annotations

import importlib.util
import os

# The rule lives in module_utils (the module and the boot step need it); load that very file.
_SPEC = importlib.util.spec_from_file_location(
    "devbox_account", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils", "devbox_account.py"))
devbox_account = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(devbox_account)


def is_home(value) -> bool:
    try:
        devbox_account.checked_home(value)
    except devbox_account.AccountError:
        return False
    return True


class TestModule:
    def tests(self):
        return {"devbox_home": is_home}
