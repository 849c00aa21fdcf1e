"""Names from the inventory (host names, a Fly app's name, an inventory file's name) as file names and
ssh config words: the one checked way. Standard library only.

A name is refused, never rewritten: a rewritten name can collide with another machine's (two hosts
writing one lock copy, one Host entry) and hides what the inventory said. A host name carrying a
newline would add lines (`Host *`, `ProxyCommand ...`) to the ssh config; one carrying `/` or `..`
would put a file outside its folder.
"""
from __future__ import annotations

import re

# The local machine (its container and its inventory host) when DEVBOX_NAME names none.
LOCAL_MACHINE_NAME = "devbox-local"

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$")
NAME_RULE = ("1-128 letters, digits, '.', '_', '-' or ':', starting with a letter, a digit or '_'"
             " (no '/', no spaces, no control characters)")


class BadName(ValueError):
    """A name that cannot become a file name or a config word; the message says which and why."""


def name_problem(name, what: str) -> str | None:
    """Why this name cannot be a file name or an ssh config word (naming it, escaped); None when it can."""
    if isinstance(name, str) and NAME_PATTERN.match(name) and ".." not in name:
        return None
    return (f"{what} {name!r} cannot become a file name or an ssh config word: it must be {NAME_RULE};"
            " rename it in the inventory")


def checked_name(name, what: str) -> str:
    """The name itself when name_problem finds nothing; BadName naming the problem otherwise."""
    problem = name_problem(name, what)
    if problem:
        raise BadName(problem)
    return name
