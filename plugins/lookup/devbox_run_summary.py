"""Lookup plugin: what this run did on the machine (or, in check mode, would do), in words, for the final report."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: devbox_run_summary
short_description: What the run did to the packages, the services and Jupyter's settings, one line each
description:
  - Reads the results the roles registered, C(python_env_result) (the devbox_venv module) and C(services_result)
    (the devbox_services module), and says what they did, one line each, in the order a user looks for them,
    packages installed, upgraded or removed with their versions, services started, restarted or stopped and why,
    a restart left pending (a kernel busy) with what to do about it, and Jupyter's settings that changed, secrets
    masked (by the module).
  - In check mode the same, as what the run would do.
  - Nothing when none of these changed; a result that is missing (a role left out by tags) or skipped says nothing.
author: devbox maintainers
options: {}
"""

EXAMPLES = r"""
- name: Say what the run did
  ansible.builtin.debug:
    msg: "{{ query('devbox_run_summary') }}"
"""

RETURN = r"""
_raw:
  description: The lines, possibly none.
  type: list
  elements: str
"""

import re

from ansible.plugins.lookup import LookupBase

from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import facts, play_value

# The image's boot step does a put-off restart once no kernel is busy; an SSH host has none: a rerun does it.
PENDING_HINT = ("done by the machine once no kernel is busy (on an SSH host: rerun then), "
                "or now with -e jupyter_restart=now")
# More dependencies than this are counted, not named: a first run installs about a hundred.
NAMED_DEPENDENCIES = 8
NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def asked_names(specs: list) -> set[str]:
    """The canonical names of requirement specifiers (what the user and the services asked for)."""
    return {canonical(match.group(1)) for spec in specs if isinstance(spec, str) and (match := NAME.match(spec))}


def named(packages: list[str], asked: set[str]) -> str:
    """The packages asked for by name and version, their dependencies too unless they are many."""
    mine = [package for package in packages if NAME.match(package) and canonical(NAME.match(package).group(1)) in asked]
    others = [package for package in packages if package not in mine]
    if not mine or len(others) <= NAMED_DEPENDENCIES:
        return ", ".join(mine + others)
    return f"{', '.join(mine)} and {len(others)} dependencies"


def packages(python_env: dict, services: dict, check: bool, asked: set[str]) -> list[str]:
    """The packages installed, upgraded and removed, the venv's first, then each service's own."""
    lines = []
    for key, done, would in (("installed", "Installed", "Would install"), ("upgraded", "Upgraded", "Would upgrade"),
                             ("removed", "Removed", "Would remove")):
        seen = list(python_env.get(key) or [])
        if check and key == "installed":
            seen += python_env.get("would_install") or []
        for outcome in (services.get("services") or {}).values():
            seen += [package for package in outcome.get(key) or [] if package not in seen]
        if seen:
            lines.append(f"{would if check else done}: {named(seen, asked) if key == 'installed' else ', '.join(seen)}")
    if python_env.get("rebuilt"):
        lines.append(f"{'Would rebuild' if check else 'Rebuilt'} the venv: {python_env['rebuilt']}")
    if check and python_env.get("changed") and not lines:
        lines.append("Would change the venv's packages or settings (--diff shows the settings)")
    return lines


def service_lines(services: dict) -> list[str]:
    """Each service started, restarted, stopped or left to restart later, and why."""
    lines = []
    for name, outcome in (services.get("services") or {}).items():
        action, reason = outcome.get("action"), outcome.get("reason")
        why = f" ({reason})" if reason else ""
        if action in ("started", "restarted", "would start", "would restart"):
            lines.append(f"{action[0].upper()}{action[1:]} {name}{why}")
        elif action == "restart pending":
            lines.append(f"Restart of {name} pending{why}: {PENDING_HINT}")
        elif action == "would wait to restart":
            lines.append(f"Would leave the restart of {name} pending{why}: {PENDING_HINT}")
        elif action in ("stopped", "would stop"):
            lines.append(f"{'Stopped' if action == 'stopped' else 'Would stop'} {name} (no longer in the services)")
    return lines


def summary(python_env: dict | None, services: dict | None, check: bool, asked: set[str] = frozenset()) -> list[str]:
    """What the run did (check: would do), from the two registered results; [] when nothing. The packages asked
    for (canonical names) are named with their versions; their dependencies are counted when many."""
    python_env = python_env if isinstance(python_env, dict) and not python_env.get("skipped") else {}
    services = services if isinstance(services, dict) and not services.get("skipped") else {}
    lines = packages(python_env, services, check, asked) + service_lines(services)
    if services.get("settings"):
        lines.append(f"{'Would change' if check else 'Changed'} Jupyter's settings: {'; '.join(services['settings'])}")
    return lines


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        results = (variables.get("python_env_result"), variables.get("services_result"),
                   bool(variables.get("ansible_check_mode")))
        if not summary(*results):
            return []  # nothing done: no need for the machine's facts (a converged rerun's report)
        value = play_value(self._templar, self._loader, variables)
        try:
            asked = asked_names(list(value("python_env_packages"))
                                + [spec for service in facts(value)["services"] for spec in service["packages"]])
        except (ServiceError, KeyError, TypeError, ValueError):
            asked = set()  # then every package is named
        return summary(*results, asked)
