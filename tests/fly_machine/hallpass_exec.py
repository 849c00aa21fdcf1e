#!/usr/bin/python3
"""How the stand-in runs a session: the way Fly's SSH server (hallpass) does, not the way OpenSSH does.

sshd runs this as its ForceCommand, as the logged-in user, for every exec and shell request (a
subsystem request never gets here: the config has no Subsystem line, so it is refused). OpenSSH
would hand the client's command to the user's login shell with a full environment; hallpass does
not (flyctl#1442: `exec: "PGPASSWORD=...": executable file not found`): it splits the command into
words itself, quotes honoured, and executes the first word, looked up in PATH. What environment
and working directory it gives is not documented (shared/docs/fly-facts.md, third pass), so the
stand-in gives the least: PATH only, working directory `/`. A session without a command runs
`/bin/sh`. Whether a PTY was asked for changes nothing here (sshd allocates it).

What the provisioning sends survives this because each is a word list already: Ansible's ssh
connection runs `/bin/sh -c '<python> && sleep 0'` (ansible/plugins/action/__init__.py,
_low_level_execute_command: the shell is named as the first word), and Mitogen runs
`<python> -c '<bootstrap>' <encoded stage> <name> <length>`, each word shlex-quoted
(mitogen/ssh.py and parent.py, get_boot_command).
"""
import os
import shlex
import sys

# Debian's default PATH: the stand-in's only variable.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A command that cannot be executed: Go's exec error text, as flyctl#1442 shows it; the status is ours.
EXIT_CANNOT_EXECUTE = 127


def words(command):
    """The argv hallpass runs for a command string (None: no command was given)."""
    if command is None:
        return ["/bin/sh"]
    try:
        argv = shlex.split(command)
    except ValueError as error:  # an unclosed quote
        sys.stderr.write(f"hallpass-standin: cannot split {command!r}: {error}\n")
        sys.exit(EXIT_CANNOT_EXECUTE)
    return argv or ["/bin/sh"]


def main():
    argv = words(os.environ.get("SSH_ORIGINAL_COMMAND"))
    os.chdir("/")
    try:
        os.execvpe(argv[0], argv, {"PATH": PATH})
    except OSError:
        where = "" if "/" in argv[0] else " in $PATH"
        sys.stderr.write(f'exec: "{argv[0]}": executable file not found{where}\n')
        sys.exit(EXIT_CANNOT_EXECUTE)


if __name__ == "__main__":
    main()
