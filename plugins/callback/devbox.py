"""Callback plugin (stdout): Ansible's default output, quiet about what went as expected.

Without -v a run shows what changed, what failed, warnings, the messages of debug tasks (the final
report with the URL), and diffs with --diff; a task whose results are all ok or skipped (the
input checks, "Validating arguments against arg spec", the converged roles) shows nothing, not even
its header, and no "included:" line. A host on which nothing changed is said in one line before the
recap. With -v and more, everything as the default callback shows it.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: devbox
type: stdout
short_description: The default output without the ok and skipped tasks (unless -v), and a line when nothing changed
description:
  - Ansible's default callback, whose options it takes (ansible.cfg's [defaults] and their environment variables).
  - Without C(-v) it hides results that are ok or skipped, and the headers of tasks that have nothing else to show,
    whatever display_ok_hosts and display_skipped_hosts say; changes, failures, warnings, diffs and the messages of
    debug tasks are shown as usual.
  - Before the recap, one line for each host on which nothing changed.
  - With C(-v) or more it shows everything, exactly as the default callback.
author: devbox maintainers
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as the stdout callback (ansible.cfg stdout_callback = devbox)
"""

from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.utils.fqcn import add_internal_fqcns

# The options the quiet output turns off; -v gives them back.
QUIETED = frozenset(("display_ok_hosts", "display_skipped_hosts"))
DEBUG = frozenset(add_internal_fqcns(("debug",)))


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "devbox"

    def __init__(self):
        super().__init__()
        self._showing = False  # a quiet run's ok result that is worth showing, being shown

    def _quiet(self) -> bool:
        return self._display.verbosity < 1

    def get_option(self, k, hostvars=None):
        if k in QUIETED and self._quiet() and not self._showing:
            return False
        return super().get_option(k)

    def _shown(self, show, result) -> None:
        self._showing = True
        try:
            show(result)
        finally:
            self._showing = False

    @staticmethod
    def _worth_showing(result) -> bool:
        """An ok result a quiet run still shows: a debug task's message, or one that carries warnings."""
        return result.task.action in DEBUG or bool(result.result.get("warnings") or result.result.get("deprecations"))

    def v2_runner_on_ok(self, result) -> None:
        if self._quiet() and isinstance(result.task, TaskInclude):
            return  # the default shows an include's header even when all it includes is hidden
        if self._quiet() and self._worth_showing(result):
            self._shown(super().v2_runner_on_ok, result)
        else:
            super().v2_runner_on_ok(result)

    def v2_runner_item_on_ok(self, result) -> None:
        if self._quiet() and self._worth_showing(result):
            self._shown(super().v2_runner_item_on_ok, result)
        else:
            super().v2_runner_item_on_ok(result)

    def v2_playbook_on_include(self, included_file) -> None:
        if not self._quiet():
            super().v2_playbook_on_include(included_file)

    def v2_playbook_on_stats(self, stats) -> None:
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            if not (summary["changed"] or summary["failures"] or summary["unreachable"]):
                self._display.display(f"{host}: nothing changed")
        super().v2_playbook_on_stats(stats)
