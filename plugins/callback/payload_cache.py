"""Callback plugin: this collection's module payloads kept from one run to the next (plugin_utils/devbox_payload_cache.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: payload_cache
type: aggregate
short_description: Keeps the AnsiballZ payloads of the devbox modules between runs, so a rerun does not build them again
description:
  - At the start of a playbook, puts the payloads of this collection's modules (devbox_*) kept by an earlier run into
    the run's own payload cache, where ansible-core uses them instead of building them again; at the end, keeps the
    ones the run built.
  - Kept in C(ANSIBLE_HOME/devbox/ansiballz/<key>), the key a digest of ansible-core's version, the controller's
    Python and the collection's module code, so a change of any of them builds afresh.
  - Only speed is at stake; a cache that cannot be read or written costs the builds and nothing else.
author: devbox maintainers
requirements:
  - enabled in callbacks_enabled (ansible.cfg)
"""

from ansible.plugins.callback import CallbackBase

from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_payload_cache import (
    keep, keep_dir, restore, run_cache_dir)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "devbox.machine.payload_cache"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        restore(run_cache_dir(), keep_dir())

    def v2_playbook_on_stats(self, stats):
        keep(run_cache_dir(), keep_dir())
