"""The files of some folders of a tree, in a fixed order, for a digest of what they hold. Standard library only.

Read by the look (the project's code, an input of every role), the payload cache (the modules' code, its key)
and `make up` (what the local machine's facts come from).
"""
from __future__ import annotations

import os
from collections.abc import Iterator


def tree_files(top: str, folders) -> Iterator[tuple[str, bytes]]:
    """(path relative to top, content) of every file under each folder (or of the folder when it is a file), sorted,
    without Python's caches."""
    for folder in folders:
        start = os.path.join(top, folder)
        if os.path.isfile(start):
            paths = [start]
        else:
            paths = []
            for root, dirs, files in os.walk(start):
                dirs[:] = sorted(name for name in dirs if name != "__pycache__")
                paths += [os.path.join(root, name) for name in sorted(files) if not name.endswith(".pyc")]
        for path in paths:
            with open(path, "rb") as source:
                yield os.path.relpath(path, top), source.read()


def hash_tree(hashed, top: str, folders) -> None:
    """Each file's path and content, as tree_files gives them, into a hashlib object."""
    for path, content in tree_files(top, folders):
        hashed.update(path.encode() + b"\0" + content + b"\0")
