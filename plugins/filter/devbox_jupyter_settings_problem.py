"""Filter `devbox_jupyter_settings_problem`: why jupyter_server_settings must not be used, or ''.

Runs on the controller, before anything on the machine changes: the rule of
plugins/module_utils/devbox_jupyter_settings.py, which the devbox_jupyter module applies again on
the machine (where a host name in an `ip` setting resolves).
"""
from __future__ import annotations

from ansible_collections.devbox.machine.plugins.module_utils.devbox_jupyter_settings import settings_problem


def jupyter_settings_problem(settings) -> str:
    return settings_problem(settings) or ""


class FilterModule:
    def filters(self):
        return {"devbox_jupyter_settings_problem": jupyter_settings_problem}
