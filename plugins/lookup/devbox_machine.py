"""Lookup plugin: the machine's facts, as plugins/plugin_utils/devbox_machine.py reads them once."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: devbox_machine
short_description: The dev machine's facts (user, home, layout, services), from the variables
description:
  - Returns one dictionary with C(user), C(uid), C(gid), C(home), C(home_is_volume), C(venv_dir), C(project_dir),
    C(service_venvs_dir), C(services) (every enabled service, checked, with every field filled in) and
    C(project_venv_packages) (the kernel's and those of the services that run from the project venv), from the
    play's variables over the roles' defaults, where each default is spelled once.
  - The services are the built-in C(jupyter_service) and C(tensorboard_service) followed by C(devbox_services).
author: devbox maintainers
options: {}
"""

EXAMPLES = r"""
- name: Show every service's port
  ansible.builtin.debug:
    msg: "{{ lookup('devbox_machine').services | map(attribute='port') }}"
"""

RETURN = r"""
_raw:
  description: The machine's facts, one dictionary.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import (
    facts, play_value)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        try:
            return [facts(play_value(self._templar, self._loader, variables))]
        except (ServiceError, KeyError, TypeError, ValueError) as error:
            raise AnsibleLookupError(f"devbox_machine: {error}") from error
