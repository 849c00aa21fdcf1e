"""The record of the last playbook run on a machine: when, and from which commit of this project.

Kept beside the account record in the home's root-owned ~/.devbox/ (devbox_records makes and
checks that directory), as a root-owned file the user cannot alter: `status` reads it back with
the same checks, so a user-planted file is never taken for the truth. Standard library only.
"""
from __future__ import annotations

import json
import os

# The project's own libraries by the collection's name, the one import style of this tree.
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    RECORD_DIR, AccountError, read_root_json, write_root_file)

RECORD_FILE = "provisioned.json"
FIELDS = ("time", "commit", "tags")


class RecordError(Exception):
    """A record that exists but cannot be trusted or read; the message says why."""


def record_path(home: str) -> str:
    return os.path.join(home, RECORD_DIR, RECORD_FILE)


def load(home: str) -> dict | None:
    """The last run's record; None when the machine was never provisioned by a recording run."""
    try:
        data = read_root_json(home, RECORD_FILE)
    except AccountError as error:
        raise RecordError(str(error)) from error
    return None if data is None else {field: data.get(field) for field in FIELDS}


def save(home: str, record: dict, dry_run: bool = False) -> bool:
    """Write the record (root-owned, 0644); True when the commit or the tags differ from the last one.

    The time changes on every run and is always written, but a rerun of the same code is not a
    change to the machine: a converged rerun stays changed=0.
    """
    try:
        previous = load(home)
    except RecordError:
        previous = None
    changed = previous is None or any(previous.get(key) != record.get(key) for key in ("commit", "tags"))
    if not dry_run:
        text = json.dumps({field: record.get(field) for field in FIELDS}, indent=2, sort_keys=True) + "\n"
        try:
            write_root_file(home, RECORD_FILE, text)
        except AccountError as error:
            raise RecordError(str(error)) from error
    return changed
