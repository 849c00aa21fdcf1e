"""Do a module's work as the dev user, from a module that Ansible runs as the login user (root).

Ansible's `become` to an unprivileged user turns pipelining off (su) or needs sudo in the image;
either way each task then uploads its module and runs it under a PTY. Instead the module stays
the login user, so every task is one pipelined exec, and does its user-side work in a forked
child that becomes the user: supplementary groups, gid, uid (in that order, so no privilege is
left), then the user's environment and home. Root never runs a file the user can write: the
child is already the user when it runs anything from the home. Standard library only.
"""
from __future__ import annotations

import json
import os
import pwd
import traceback


class RunAsError(Exception):
    """The user-side work failed; the message is the one the work raised."""


def become(entry: pwd.struct_passwd) -> None:
    """Turn this process into the user for good (no way back to root)."""
    if os.geteuid() == 0:
        os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    elif os.geteuid() != entry.pw_uid:
        raise PermissionError(f"running as uid {os.geteuid()}, which can neither be nor become {entry.pw_name}")
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name, SHELL=entry.pw_shell)
    os.chdir(entry.pw_dir)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def run_as(name: str, work, *args, expected: tuple = (OSError,)):
    """work(*args) in a child process that is the user `name`; returns its JSON-able result.

    An exception in the child becomes RunAsError with the same message (with a traceback when
    it is not one of the `expected` kinds). Everything work needs must be imported before: the child cannot read the
    module's payload, which stays in root's temporary directory.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RunAsError(f"user {name!r} does not exist on the machine: run the dev_user role first") from None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into Ansible's code
        os.close(read_end)
        try:
            become(entry)
            outcome = {"result": work(*args)}
        except expected as error:
            outcome = {"error": str(error)}
        except Exception:  # noqa: BLE001 - every failure goes back to the parent
            outcome = {"error": traceback.format_exc()}
        with os.fdopen(write_end, "w") as pipe:
            json.dump(outcome, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        outcome = json.loads(text)
    except ValueError:
        raise RunAsError(f"the work as {name} ended without a result (wait status {status})") from None
    if "error" in outcome:
        raise RunAsError(outcome["error"])
    return outcome["result"]
