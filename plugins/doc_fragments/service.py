"""The options and attributes every service module (devbox_jupyter, devbox_tensorboard) shares, documented once:
`extends_documentation_fragment: [devbox.machine.service, devbox.machine.layout]` (venv_dir and project_dir).
Their argument spec is COMMON_ARGUMENT_SPEC of plugins/module_utils/devbox_service_module.py."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  user:
    description: The user who runs the server; the module works as this user.
    type: str
    required: true
  home:
    description: The user's home, the volume.
    type: path
    required: true
  ip:
    description: Address or host name to listen on; V(auto) is the private address on Fly, else 127.0.0.1.
    type: str
    default: auto
  launcher_source:
    description: Source text of the server's launcher, written to C(~/.local/bin/devbox-<server>).
    type: str
    required: true
  address_rule_source:
    description:
      - Source text of plugins/module_utils/devbox_address.py, the listening-address rule, which the launcher
        applies at every start.
      - Kept as root's own file
        C(~/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_address.py), where the
        launcher imports it from by the collection's name.
    type: str
    required: true
  launcher_library_source:
    description:
      - Source text of plugins/module_utils/devbox_launcher.py, what the launchers share (the command line, the
        pidfile, the listening-socket scan).
      - Kept as root's own file
        C(~/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py), where the
        launcher imports it from by the collection's name.
    type: str
    required: true
  min_free_mb:
    description: Free space the volume must have before the server is installed, in MB.
    type: int
    default: 1024
attributes:
  check_mode:
    support: full
    details: Reports whether the server would be started or restarted; installs and starts nothing.
  diff_mode:
    support: partial
    details: Shows the settings files the module writes; never a token.
author: devbox maintainers
"""
