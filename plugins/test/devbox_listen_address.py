"""Jinja test `devbox_listen_address`: may Jupyter listen on this value, as far as its text tells?

Runs on the controller, before anything on the machine changes. Literals are judged fully
(every spelling of a wildcard, public, multicast and broadcast addresses are refused); a host
name is only checked for its syntax here, since it resolves on the machine, where the
devbox_jupyter module applies the same rule (plugins/module_utils/devbox_address.py) to what
it resolves to. `auto` is a host name here: the module turns it into fly-local-6pn or 127.0.0.1.
"""
from __future__ import annotations

import importlib.util
import os

# The rule lives in module_utils (the module needs it on the machine); load that very file.
_SPEC = importlib.util.spec_from_file_location(
    "devbox_address", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils", "devbox_address.py"))
devbox_address = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(devbox_address)


def is_listen_address(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # jupyter_ip: 0 in YAML is the number, and still a wildcard
    return devbox_address.spelling_problem(value) is None


class TestModule:
    def tests(self):
        return {"devbox_listen_address": is_listen_address}
