"""Jinja tests for the dev user's account, with the rules of plugins/module_utils/devbox_account.py.

`devbox_home`: is this path a home root may hand to the user? (checked_home: an absolute path
of its own, no '..', outside the system trees /etc, /usr, /var, /root, /tmp, ...)
`devbox_login_name`: is this a login name useradd takes? (is_login_name)

They run on the controller, before anything changes; the devbox_user module and the boot step
apply the same rules on the machine.
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
        return {"devbox_home": is_home, "devbox_login_name": devbox_account.is_login_name}
