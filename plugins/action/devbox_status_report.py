"""Action plugin: the machine's state as one readable block, every service listed with its URL.

Runs the devbox_status module on the machine (one read-only module run) with the user, the home
and the venv from the machine's facts (plugins/plugin_utils/devbox_machine.py), then builds on the
controller what the user reads: one line per registered service (up or down, and its URL as the
user reaches it: the port it checked, mapped to this computer's where the caller says how, and the
path its record names; Jupyter's token only when asked for), what the next run would change about
the services (the facts against the records), and the rest of the module's lines. Nothing the
machine says is pasted into a URL or a hint unchecked, and control characters in anything from the
machine are escaped before it reaches a terminal.

    - devbox_status_report:
        packages: "{{ python_env_packages }}"
        ports_here: {8888: 18870}     # the machine's port -> this computer's (make status)
"""
from __future__ import annotations

import re

from ansible.plugins.action import ActionBase

from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import JUPYTER, NAME_PATTERN, ServiceError
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import facts, play_value, service_url

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
URL_PATH = re.compile(r"^/[\x21-\x7e]{0,4095}$")
TOKEN = re.compile(r"^[A-Za-z0-9._~-]{1,1024}$")
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$")


def escaped(value) -> str:
    """Text from the machine, safe for a terminal: control characters shown as \\xNN."""
    return CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", str(value))


def usable(service) -> bool:
    """A service as the module returned it, checked again here: a name, a port, a URL path."""
    return (isinstance(service, dict) and isinstance(service.get("name"), str) and NAME_PATTERN.match(service["name"])
            is not None and isinstance(service.get("port"), int) and not isinstance(service.get("port"), bool)
            and 1024 <= service["port"] <= 65535 and isinstance(service.get("url_path"), str)
            and URL_PATH.match(service["url_path"]) is not None)


def service_lines(found: dict, options: dict, wanted: list[dict] | None = None) -> list[str]:
    """One line per registered service, built here from the port and path checked; then the skipped records.
    `wanted`: the facts' services (None: not known), to say what the next run does with one that is down."""
    listed = found.get("services") or []
    if not listed:
        lines = ["Services: none registered (the next run registers them)"]
    else:
        lines = []
    token = (found.get("jupyter_token") or {}) if options["show_token"] else {}
    for service in listed:
        if not usable(service):
            lines.append(f"A service record not shown: its name, port or path is not usable ({escaped(service)})")
            continue
        name, port = service["name"], service["port"]
        if not service.get("healthy"):
            leaving = wanted is not None and name not in {entry["name"] for entry in wanted}
            lines.append(f"{name}: DOWN (nothing of the dev user listens on port {port}); the next run "
                         + ("unregisters it (it is no longer in the list)" if leaving else "starts it"))
            continue
        # Behind Jupyter's login or on a port of its own: the facts say (the record does not).
        declared = next((entry for entry in wanted or [] if (entry["name"], entry["port"]) == (name, port)), {})
        url = service_url(dict(service, ip=declared.get("ip")), wanted or [], options["address_here"],
                          options["ports_here"])
        if url is None:
            lines.append(f"{name}: up on port {port}, not published on this computer: "
                         f"{options['unpublished_hint'] or 'the next make up publishes it'}")
            continue
        if name != JUPYTER:
            lines.append(f"{name}: up, {url}")
        elif options["show_token"] and token.get("token") and TOKEN.match(token["token"]):
            lines.append(f"{name}: up, {url}?token={token['token']}")
        elif options["show_token"]:
            why = escaped(token.get("token_error") or "it has characters a URL cannot carry as they are")
            lines.append(f"{name}: up, {url}; token not shown: {why}")
        else:
            hint = f": {options['token_hint']}" if options["token_hint"] else ""
            lines.append(f"{name}: up, {url}; token hidden{hint}")
    lines += [escaped(problem) for problem in found.get("service_problems") or []]
    if options["open_hint"] and any(usable(s) and s.get("healthy") for s in listed):
        lines.append(f"Open it: {options['open_hint']}")
    return lines


def service_changes(found: dict, wanted: list[dict]) -> list[str]:
    """What the next run would change about the services: the facts' list against the registered records."""
    registered = {service["name"]: service for service in found.get("services") or [] if usable(service)}
    changes = []
    for service in wanted:
        name, now = service["name"], registered.get(service["name"])
        if now is None:
            changes.append(f"register and start {name} on port {service['port']}")
        elif now["port"] != service["port"]:
            changes.append(f"move {name} to port {service['port']} (now {now['port']})")
        elif not now.get("healthy"):
            changes.append(f"start {name}")
    names = {service["name"] for service in wanted}
    changes += [f"stop and unregister {name}" for name in sorted(registered) if name not in names]
    return changes


def report(found: dict, wanted: list[dict], options: dict) -> list[str]:
    """The whole block: the services, the module's lines (escaped), the next run."""
    changes = [escaped(change) for change in found.get("next_run") or []]
    if found.get("user_exists"):
        changes += service_changes(found, wanted)
    lines = (service_lines(found, options, wanted) if found.get("user_exists") else []) + \
        [escaped(line) for line in found.get("lines") or []]
    return lines + ["Next run: " + ("; ".join(changes) if changes else "nothing to change, as far as status can tell")]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("packages", "swap_min_mb", "commit", "show_token", "token_hint", "open_hint",
                             "address_here", "ports_here", "unpublished_hint"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            machine = facts(play_value(self._templar, self._loader, task_vars))
        except (ServiceError, KeyError, ValueError, TypeError) as error:
            return dict(result, failed=True, msg=f"the variables do not describe a machine: {error}")
        address = str(args.get("address_here") or "localhost")
        ports_here = args.get("ports_here")
        if not HOST.match(address) or (ports_here is not None and not isinstance(ports_here, dict)):
            return dict(result, failed=True, msg="address_here must be a host name or address, ports_here a mapping "
                                                 "of the machine's ports to this computer's")
        options = {"show_token": bool(args.get("show_token", False)), "token_hint": str(args.get("token_hint") or ""),
                   "open_hint": str(args.get("open_hint") or ""), "address_here": address,
                   "unpublished_hint": str(args.get("unpublished_hint") or ""),
                   "ports_here": None if ports_here is None else {int(k): int(v) for k, v in ports_here.items()}}
        module_args = {"user": machine["user"], "home": machine["home"], "venv_dir": machine["venv_dir"],
                       "packages": list(args.get("packages") or []), "swap_min_mb": int(args.get("swap_min_mb") or 0),
                       "commit": str(args.get("commit") or ""), "show_token": options["show_token"]}
        found = self._execute_module(module_name="devbox_status", module_args=module_args, task_vars=task_vars)
        result.update(found)
        if found.get("failed"):
            return result
        result.update(changed=False, lines=report(found, machine["services"], options),
                      next_run=[escaped(change) for change in found.get("next_run") or []] +
                      (service_changes(found, machine["services"]) if found.get("user_exists") else []))
        return result
