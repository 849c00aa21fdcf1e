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
from devbox_account import AccountError, ensure_account, ensure_home, load_record  # noqa: E402

LAUNCHER = ".local/bin/devbox-jupyter"
# The launcher's stop gives Jupyter 20 s to shut its kernels down; this must fit inside
# fly.toml's kill_timeout, after which Fly's init kills everything.
JUPYTER_STOP_TIMEOUT_S = 25


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
        # Fly's init hands a mounted volume to the image's user (root): give the home back too.
        for change in ensure_account(account) + ensure_home(account):
            log(change)
    except (AccountError, OSError) as error:
        log(f"cannot recreate user {account['name']}: {error}")
        return
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi:
        result = subprocess.run([nvidia_smi], capture_output=True, text=True)
        log(f"nvidia-smi exited with {result.returncode}")
    log(f"jupyter: {run_launcher(account['name'], home, 'start', timeout=120)}")


def run_launcher(user: str, home: str, action: str, timeout: float) -> str:
    """su drops to the user before the launcher runs: root never executes the user's file."""
    launcher = os.path.join(home, LAUNCHER)
    if not os.path.exists(launcher):
        return f"no launcher at {launcher} yet"
    try:
        result = subprocess.run(["su", "-s", "/bin/sh", "-c", f"exec {launcher} {action}", user],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{action} did not finish within {timeout} s"
    return (result.stdout or result.stderr).strip()


def main() -> None:
    home = os.environ.get("DEVBOX_HOME", "/home/pythonuser")

    def stop(_signum, _frame):
        # Let Jupyter save and shut its kernels down before the machine goes.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the launcher's exit is subprocess.run's to reap
        try:
            account = load_record(home)
        except AccountError:
            account = None
        if account is not None:
            log(f"jupyter: {run_launcher(account['name'], home, 'stop', timeout=JUPYTER_STOP_TIMEOUT_S)}")
        log("stopping")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restore(home)
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
