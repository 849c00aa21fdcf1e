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
import signal
import traceback

# Root's session leaves these behind; they name root's own places (runtime dir, bus, agent, temp dir).
ROOT_ONLY_ENV = ("XDG_RUNTIME_DIR", "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_SESSION_CLASS",
                 "DBUS_SESSION_BUS_ADDRESS", "MAIL", "TMPDIR", "SSH_AUTH_SOCK")


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
    for name in ROOT_ONLY_ENV:
        os.environ.pop(name, None)
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
    if pid == 0:  # the child: never returns into the caller's code, whatever happens
        try:
            # The caller's handlers (PID 1's stop) are not the user's to trigger; no stdin from Ansible.
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(number, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(read_end)
            try:
                become(entry)
                outcome = {"result": work(*args)}
            except expected as error:
                outcome = {"error": str(error)}
            except BaseException:  # noqa: BLE001 - every failure goes back to the parent
                outcome = {"error": traceback.format_exc()}
            with os.fdopen(write_end, "w") as pipe:
                json.dump(outcome, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        outcome = json.loads(text)
    except ValueError:
        code = os.waitstatus_to_exitcode(status)
        ended = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        raise RunAsError(f"the work as {name} {ended} without a result") from None
    if "error" in outcome:
        raise RunAsError(outcome["error"])
    return outcome["result"]
