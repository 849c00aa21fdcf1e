#!/usr/bin/env python3
"""Exit 0 when the ssh that runs this was given no remote command (an interactive login), else 1.

Used by the config `make ssh-config` writes, as `Match host <name> exec "<python> ssh_login_wanted.py"`,
to give a Fly Machine's interactive login a RemoteCommand (bash in ~/project, the venv active) while
`ssh <name> cmd`, VS Code's `ssh ... bash` and `ssh -N -L ...` stay untouched. Fly's SSH server runs
no shell of its own for a login (a bare /bin/sh in /), so the client must ask for bash; but OpenSSH
refuses a RemoteCommand together with a command line ("Cannot execute command-line and remote
command") and, before OpenSSH 10.0's `Match sessiontype`, no Match criterion tells the two apart.
So this reads the command line of the ssh process that runs it (ssh runs `Match exec` through the
user's shell: the ssh is the parent or the grandparent). Where it cannot be read, the answer is
"no": commands keep working and a login lands in Fly's plain shell. Standard library only.
"""
from __future__ import annotations

import os
import subprocess
import sys

# ssh's options that take an argument (ssh.c's getopt string
# "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy").
WITH_ARGUMENT = set("bceilmopBDEFIJLOPQRSwW")
# Options that mean no login session: no command (-N), stdio forwarding (-W), a control command
# (-O), print the config (-G), a subsystem (-s), a query (-Q), the version (-V).
NOT_A_LOGIN = set("NWOGsQV")
ANCESTORS_SEARCHED = 4


def parse(argv: list[str]) -> tuple[set[str], bool, list[str]]:
    """(options given, whether a destination was given, the remote command's words) of an ssh argv.

    As ssh.c parses: options, the destination, then options again until the first other word;
    everything from there (or after `--`) is the command."""
    options, destination, index = set(), False, 1
    while index < len(argv):
        word = argv[index]
        if word == "--":
            index += 1
            if not destination and index < len(argv):
                destination, index = True, index + 1
            return options, destination, argv[index:]
        if word.startswith("-") and len(word) > 1:
            for position, letter in enumerate(word[1:], start=1):
                options.add(letter)
                if letter in WITH_ARGUMENT:
                    index += position == len(word) - 1  # the argument is the next word
                    break
            index += 1
            continue
        if destination:
            return options, destination, argv[index:]
        destination, index = True, index + 1
    return options, destination, []


def is_login(argv: list[str]) -> bool:
    options, destination, command = parse(argv)
    return destination and not command and not options & NOT_A_LOGIN


def parent_and_argv(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of a process: from /proc on Linux, else from ps (words split at spaces)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace").split("\0")[:-1]
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        return parent, argv
    except (OSError, ValueError, IndexError):
        pass
    try:
        listing = subprocess.run(["ps", "-ww", "-o", "ppid=", "-o", "args=", "-p", str(pid)], capture_output=True,
                                 text=True, timeout=5).stdout.split()
        return int(listing[0]), listing[1:]
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def ssh_argv() -> list[str] | None:
    pid = os.getppid()
    for _ in range(ANCESTORS_SEARCHED):
        found = parent_and_argv(pid)
        if found is None:
            return None
        pid, argv = found
        if argv and os.path.basename(argv[0]) == "ssh":
            return argv
    return None


def main() -> int:
    argv = ssh_argv()
    return 0 if argv is not None and is_login(argv) else 1


if __name__ == "__main__":
    sys.exit(main())
