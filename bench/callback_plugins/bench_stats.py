"""Ansible callback for bench/run.py: what a playbook run did on its hosts, as JSON.

Enabled by bench/run.py only (ANSIBLE_CALLBACKS_ENABLED=bench_stats, beside the project's own), which names the output
file in BENCH_STATS_FILE. Written at the end of the run:

  host_task_runs  {host: task results that ran a module on the host (loop items counted)}
  changed         {host: changed count of the recap}
  tasks           [[task name, wall seconds from its start to the next task's start, kind], ...]
                  kind: "controller" (an action of CONTROLLER_ONLY), "module" (ran a module on
                  at least one host) or "skipped" (a module task no host ran)
"""
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

# Actions that run on the controller only: their results cost no round trip to the host.
CONTROLLER_ONLY = {"assert", "debug", "set_fact", "fail", "meta", "add_host", "group_by",
                   "set_stats", "pause", "include_tasks", "include_role", "import_tasks",
                   "import_role", "include_vars", "validate_argument_spec",
                   "devbox_check_inputs", "devbox_lock_copy"}  # this project's controller-side actions


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_stats"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host_task_runs: dict[str, int] = {}
        self.tasks: list[list] = []
        self.task_index: dict[str, int] = {}  # task uuid -> its entry in self.tasks
        self.task_started = None

    def _close_task(self) -> None:
        if self.task_started is not None:
            self.tasks[-1][1] = round(time.monotonic() - self.task_started, 3)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        action = task.action.rsplit(".", 1)[-1]
        self.task_index[task._uuid] = len(self.tasks)
        self.tasks.append([task.get_name(), None, "controller" if action in CONTROLLER_ONLY else "skipped"])
        self.task_started = time.monotonic()

    def _count(self, result, *_, **__) -> None:  # v2_runner_on_failed is also given ignore_errors
        action = result._task.action.rsplit(".", 1)[-1]
        if action in CONTROLLER_ONLY:
            return
        items = result._result.get("results")
        runs = sum(1 for item in items if not item.get("skipped")) if items is not None else 1
        host = result._host.get_name()
        self.host_task_runs[host] = self.host_task_runs.get(host, 0) + runs
        if runs and result._task._uuid in self.task_index:
            self.tasks[self.task_index[result._task._uuid]][2] = "module"

    v2_runner_on_ok = v2_runner_on_failed = _count

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        path = os.environ.get("BENCH_STATS_FILE")
        if not path:
            return
        changed = {host: stats.summarize(host)["changed"] for host in sorted(stats.processed)}
        with open(path, "w") as out:
            json.dump({"host_task_runs": self.host_task_runs, "changed": changed, "tasks": self.tasks}, out)
