#!/usr/bin/python3
"""PID 1 of the dev machine: restore what the ephemeral root FS lost, then sleep until SIGTERM.

With a fresh volume (no account record) it only sleeps: Ansible provisions the machine. With
a record on the volume it recreates the user with the recorded ids and groups, runs
nvidia-smi once as root when present (driver initialisation for non-root use), and starts
Jupyter as the user with the launcher on the volume. The record is data, validated, never
executed; a damaged one is logged and the machine still comes up for repair. As PID 1 it
reaps orphaned children (Jupyter is detached from the sessions that start it) and exits 0 on
SIGTERM or SIGINT.
"""
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, "/usr/local/lib/devbox")
from devbox_account import AccountError, ensure_account, load_record  # noqa: E402

LAUNCHER = ".local/bin/devbox-jupyter"


def log(message: str) -> None:
    print(f"devbox-boot: {message}", flush=True)


def restore(home: str) -> None:
    try:
        account = load_record(home)
    except AccountError as error:
        log(f"account record is damaged, not restoring ({error}); the machine stays up: rerun the playbook")
        return
    if account is None:
        log(f"no account record under {home}: fresh volume, waiting for provisioning")
        return
    try:
        for change in ensure_account(account):
            log(change)
    except AccountError as error:
        log(f"cannot recreate user {account['name']}: {error}")
        return
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi:
        result = subprocess.run([nvidia_smi], capture_output=True, text=True)
        log(f"nvidia-smi exited with {result.returncode}")
    launcher = os.path.join(home, LAUNCHER)
    if os.path.exists(launcher):
        # su drops to the user before the launcher runs: root never executes the user's file.
        result = subprocess.run(["su", "-s", "/bin/sh", "-c", f"exec {launcher} start", account["name"]],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        log(f"jupyter: {(result.stdout or result.stderr).strip()}")


def main() -> None:
    def stop(_signum, _frame):
        log("stopping")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restore(os.environ.get("DEVBOX_HOME", "/home/pythonuser"))
    # Reap only after restoring: a reaper running meanwhile would steal subprocess.run's exit codes.
    signal.signal(signal.SIGCHLD, lambda *_: reap())
    reap()
    while True:
        signal.pause()


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    main()
