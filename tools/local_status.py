#!/usr/bin/env python3
"""`make status`: the local dev machine's state, read-only, as one block.

A missing or stopped container is said plainly (with the command that brings it back); a
running one gets playbooks/status.yml over the docker connection (one module run, nothing
installed or restarted), which lists every registered service, up or down, with its URL on this
computer: http://127.0.0.1:<the port docker publishes it on><its path>, built on the controller
from the port status checked. The Jupyter URL carries its token only with --show-token
(`make status SHOW_TOKEN=1`; SHOW_TOKEN=0 or unset hides it, any other value is refused): `make up`
prints it once, but status output is the kind that gets pasted into chats and issues. VARS as
for `make up`.
"""
from __future__ import annotations

import argparse
import json
import sys

from docker_machines import LocalMachine, MachineError, docker
from local_machine import local_machine, make_command, truthy

# docker_machines put playbooks/collections on the path: the same escaping as the report's own.
from ansible_collections.devbox.machine.plugins.action.devbox_status_report import escaped  # noqa: E402


def volume_exists(volume: str) -> bool:
    return docker("volume", "inspect", volume, check=False).returncode == 0


def playbook_blocks(machine: LocalMachine, show_token: bool) -> tuple[int, list[str]]:
    """Run status.yml with the JSON callback; (exit status, the lines to print)."""
    published = {str(port): here for port, here in machine.published_ports().items()}  # what `make up` published
    extra = ["-e", json.dumps({"status_show_token": show_token,
                               "status_token_hint": f"{make_command(machine, 'status SHOW_TOKEN=1')} prints the URL with it",
                               "devbox_address_here": "127.0.0.1", "devbox_ports_here": published,
                               "status_unpublished_hint": f"{make_command(machine, 'up')} publishes every service's port"})]
    run = machine.provision(*extra, playbook="status.yml", capture=True,
                            env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    try:
        report = json.loads(run.stdout)
    except ValueError:
        return run.returncode, [f"status.yml failed: {(run.stderr or run.stdout).strip()}"]
    lines = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if result.get("failed") or result.get("unreachable"):
                    lines.append(f"{task['task']['name']} failed: {result.get('msg')}")
                elif task["task"]["name"] == "Show the machine's state":
                    lines.extend(result["msg"])
    return run.returncode, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show-token", action="store_true",
                        help="print the Jupyter URL with its token (as SHOW_TOKEN=1 in the environment)")
    args = parser.parse_args()
    try:
        show_token = args.show_token or truthy("SHOW_TOKEN")
        machine = local_machine()  # VARS as for `make up`: what would the next run change?
        machine.facts()
    except MachineError as error:
        print(f"failed: {error}", file=sys.stderr)
        return 2
    if docker("info", check=False).returncode != 0:
        print(f"{machine.name}: unknown: the Docker engine does not answer (`make engine` starts it)")
        return 1
    state = machine.state()
    kept = (f"volume {machine.volume} kept (venv, notebooks, token)" if volume_exists(machine.volume)
            else f"no volume {machine.volume} yet")
    print(f"{machine.name}:")
    if state is None:
        print(f"  down: no container; {kept}. {make_command(machine, 'up')} starts it.")
        return 0
    if state != "running":
        print(f"  down: the container is {state}; {kept}. {make_command(machine, 'up')} starts it again.")
        return 0
    status, lines = playbook_blocks(machine, show_token)
    for line in lines:
        print(f"  {escaped(line)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
