"""ansible.builtin.ping through kept_payload, as the look runs its module (tests/test_payload_cache.py)."""
from ansible.plugins.action import ActionBase

from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_payload_cache import kept_payload


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        with kept_payload("ping"):
            result.update(self._execute_module(module_name="ansible.builtin.ping", module_args={},
                                               task_vars=task_vars))
        return result
