"""Jinja test `devbox_jupyter_token`: is this string usable as Jupyter's token?

URL-safe characters only (Jupyter strips what is not, and the token travels in the URL) and
long enough not to be guessed. The launcher on the volume (roles/jupyter/files/devbox_jupyter_launcher.py)
applies the same rule to the token file at every run.
"""
from __future__ import annotations

import re

MIN_LENGTH = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{%d,}" % MIN_LENGTH)


def is_jupyter_token(value) -> bool:
    return isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None


class TestModule:
    def tests(self):
        return {"devbox_jupyter_token": is_jupyter_token}
