#!/usr/bin/python
"""Documentation of the devbox_status_report action (plugins/action/devbox_status_report.py), which does the work."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: devbox_status_report
short_description: A dev machine's state as one readable block, every service with its URL
description:
  - Runs M(devbox_status) on the machine (read-only, one module run) with the dev user, the home and the venv
    from the machine's facts (the roles' defaults with the play's variables over them).
  - Builds on the controller one line per registered service, up or down, with its URL as the user reaches it
    (C(http://<address_here>:<port><url_path>), the port mapped through O(ports_here) where given), Jupyter's
    token only with O(show_token=true); then the module's lines, and what the next run would change, the
    services compared with the facts (a service to register, to move, to start, to unregister).
  - Control characters in anything the machine returned are escaped; a record whose name, port or path is not
    usable is reported, never pasted into a URL.
extends_documentation_fragment:
  - devbox.machine.common
options:
  packages:
    description: The requested packages (C(python_env_packages)), passed to M(devbox_status).
    type: list
    elements: str
    default: []
  swap_min_mb:
    description: The wanted swap in MB, passed to M(devbox_status).
    type: int
    default: 0
  commit:
    description: The controller checkout's C(git describe --always --dirty), passed to M(devbox_status).
    type: str
    default: ""
  show_token:
    description: Put Jupyter's token in its URL (the user asked for it).
    type: bool
    default: false
  token_hint:
    description: How to get the URL with the token, shown when it is hidden.
    type: str
    default: ""
  open_hint:
    description: How to reach the services from here (a tunnel command), shown while one is up.
    type: str
    default: ""
  address_here:
    description: The host part of each URL, where this computer reaches the services' ports.
    type: str
    default: localhost
  ports_here:
    description:
      - The machine's ports -> this computer's ports (the local machine's published ports). A service whose port
        is not in it is said to be unpublished. Unset means each port is reached as it is (a tunnel of the same
        port).
    type: dict
  unpublished_hint:
    description: What publishes a port that O(ports_here) lacks, shown with such a service.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    details: It runs M(devbox_status), which only reads; in check mode it reports what a normal run reports.
"""

EXAMPLES = r"""
- name: Read the machine's state
  devbox_status_report:
    packages: "{{ python_env_packages }}"
    token_hint: add -e status_show_token=true to print the URL with it
  register: status_result
# Then show status_result.lines with ansible.builtin.debug: the whole report, one line per part.
"""

RETURN = r"""
lines:
  description: The report, one readable line per part (each service, how to open them, venv, GPU, swap, volume,
    last run, idle stop, next run).
  returned: success
  type: list
  elements: str
  sample:
    - "jupyter: up, http://127.0.0.1:8888/lab; token hidden: `make status SHOW_TOKEN=1` prints the URL with it"
    - "tensorboard: up, http://127.0.0.1:8888/proxy/6006/"
    - "Venv: /home/pythonuser/project-venv, Python 3.12, 58 packages"
    - "Next run: nothing to change, as far as status can tell"
next_run:
  description: What the next playbook run would change, as far as status can tell; empty when nothing.
  returned: success
  type: list
  elements: str
  sample: ["install pandas==2.2.3 (installed: 2.2.2)", "start tensorboard"]
"""
