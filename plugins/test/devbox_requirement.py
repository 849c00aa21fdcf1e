"""Jinja test `devbox_requirement`: is this string a requirement specifier pip can parse?

Runs on the controller, before anything on the machine changes, with the same parser pip uses
(packaging, a dependency of ansible-core).
"""
from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement


def is_requirement(value) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        Requirement(value)
    except InvalidRequirement:
        return False
    return True


class TestModule:
    def tests(self):
        return {"devbox_requirement": is_requirement}
