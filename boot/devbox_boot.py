#!/usr/bin/python3
"""PID 1 of the dev machine: restore what the ephemeral root FS lost, then sleep until SIGTERM.

With a fresh volume (no account record) it only sleeps: Ansible provisions the machine. With
a record on the volume it recreates the user with the recorded ids and groups, runs
nvidia-smi once as root when present (driver initialisation for non-root use), and starts
every registered service (Jupyter, TensorBoard, the user's own: one record each, see
devbox_service) as the user, with the one launcher the services module keeps on the volume. Records are data, validated, never executed; a damaged
one is logged and skipped, and the machine still comes up for repair. As PID 1 it reaps
orphaned children (the services are detached from the sessions that start them) and, on
SIGTERM or SIGINT, or by itself when idle stop is on and nobody has used the machine for that
long (see devbox_idle: it warns the user's terminals first, and runs idle_stop_before_stop as the
user within its limit), stops every service at once and exits 0. At the same looks it does the
restart of Jupyter that a busy kernel put off (the services module's ~/.devbox/restart_pending.json)
once no kernel is busy, with the launcher as the module would, and drops the record.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, "/usr/local/lib/devbox")
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (  # noqa: E402
    LIBRARY_DIR, RECORD_DIR, AccountError, ensure_account, ensure_home, load_record)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import find_nvidia_smi  # noqa: E402
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import (  # noqa: E402
    IdleClock, clock_text, gpu_use, jupyter_activity, last_input, load_setting, pending_step, processes, read_pending,
    read_stay_up, settle_pending, state_record, tell_terminals, user_activity, write_state)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import SYSTEM_PATH  # noqa: E402
from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as  # noqa: E402
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (  # noqa: E402
    JUPYTER, load_all, probe, service_pids)

# The one launcher, kept on the volume by the devbox_services module as root's own file; run as the user.
LAUNCHER = f"{RECORD_DIR}/{LIBRARY_DIR}/devbox_launcher.py"

# How often PID 1 looks whether the machine is in use, or a put-off restart can be done (tests shorten it).
IDLE_POLL_S = float(os.environ.get("DEVBOX_IDLE_POLL_S", "60"))
# The services stop at the same time, each within this: it must fit inside fly.toml's
# kill_timeout, after which Fly's init kills everything. Jupyter's launcher gives its kernels 20 s.
STOP_BUDGET_S = 25
START_TIMEOUT_S = 120
# A restart waits for the launcher's lock (a run's launcher), stops Jupyter and starts it: the launcher's own limits.
RESTART_TIMEOUT_S = 240
# The last lines of idle_stop_before_stop's output that go to the log.
BEFORE_STOP_LINES = 50


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
    run_services(account, "start", START_TIMEOUT_S)


def run_services(account: dict, action: str, timeout: float) -> None:
    """The action on every registered service at once, each within timeout; logs one line each."""
    services, problems = load_all(account["home"])
    for problem in problems:
        log(f"service record damaged, not used: {problem}")

    def one(service: dict) -> None:
        launcher = os.path.join(account["home"], LAUNCHER)
        if not os.path.exists(launcher):
            log(f"{service['name']}: no launcher at {launcher} yet")
            return
        outcome = run_launcher(account["name"], launcher, service["name"], action, timeout)[1]
        if action == "start":
            health = probe(service, account["uid"])
            port = service["port"]
            outcome += (f" (listening on {', '.join(health['addresses'])} port {port})" if health["healthy"]
                        else f" (nothing of {account['name']} listens on port {port})")
        log(f"{service['name']}: {outcome}")

    threads = [threading.Thread(target=one, args=(service,), daemon=True) for service in services]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def run_launcher(user: str, launcher: str, name: str, action: str, timeout: float) -> tuple[bool, str]:
    """su drops to the user before the launcher runs (root never executes the user's file, and the launcher is
    root's own); its answer is the user's data: only known fields of known types are shown, escaped. True when
    it exited 0 (the service ended up as asked)."""
    command = f"exec /usr/bin/python3 {shlex.quote(launcher)} {shlex.quote(name)} {action}"
    try:
        result = subprocess.run(["su", "-s", "/bin/sh", "-c", command, user], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"{action} did not finish within {timeout} s"
    return result.returncode == 0, answer_text(result.stdout, result.stderr, result.returncode)


def answer_text(stdout: str, stderr: str, code: int) -> str:
    """The launcher's answer in words: its action or error, its pid; anything else as escaped text."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return f"exit {code}: {escaped((stdout or stderr).strip()[-300:])}"
    parts = [escaped(answer[key]) for key in ("action", "error") if isinstance(answer.get(key), str)]
    pid = answer.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool):
        parts.append(f"pid {pid}")
    return ", ".join(parts) or f"exit {code}"


def escaped(text: str) -> str:
    """Control characters (terminal escapes) shown as \\x.. escapes, never sent raw to the log."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def shut_down(home: str) -> None:
    """Let every service save and shut down before the machine goes, all at once; exit 0."""
    try:
        account = load_record(home)
    except AccountError:
        account = None
    if account is not None:
        run_services(account, "stop", STOP_BUDGET_S)
    log("stopping")
    sys.exit(0)


class JupyterLook:
    """Jupyter's own view of its use (jupyter_activity, asked as the user), asked once per look whoever needs it:
    (activity or None when it does not serve, why it could not be asked or None)."""

    def __init__(self, home: str):
        self.home, self.answer = home, None

    def __call__(self, user: str, fresh: bool = False) -> tuple[dict | None, str | None]:
        """The answer of this look; fresh: asked again now (the last word before a restart)."""
        if self.answer is None or fresh:
            try:
                self.answer = run_as(user, jupyter_activity, self.home,
                                     expected=(OSError, ValueError, KeyError, TypeError)), None
            except RunAsError as failure:
                self.answer = None, str(failure)
        return self.answer


def idle_long_enough(home: str, clock: IdleClock, ask: JupyterLook | None = None) -> bool:
    """One look at the machine; True when idle stop is on and nobody used it for that long.

    Each change of what keeps the machine up is logged; what this look saw goes to /run/devbox/idle.json for
    status; idle_stop_warn_minutes before the stop, every terminal of the user is told (and the log says so).
    """
    now, setting = time.time(), load_setting(home)
    minutes = setting["minutes"]
    try:
        account = load_record(home) if minutes else None
    except AccountError:
        account = None
    if account is None:
        clock.quiet_since, clock.reason = now, ""  # off, or nothing provisioned: the idle time starts when it is on
        return False
    # Turned on (or its minutes changed) after the boot: the idle time counts from then.
    clock.quiet_since = max(clock.quiet_since, min(setting["since"], now))
    user, uid = account["name"], account["uid"]
    # Jupyter down or not answering (error): its processes count as use.
    activity, error = (ask or JupyterLook(home))(user)
    if error != clock.jupyter_error and error:
        log(f"idle stop: cannot ask Jupyter ({error.strip().splitlines()[-1]}); its processes count as use")
    clock.jupyter_error = error
    # A service that merely runs (TensorBoard serving its page) is no use of the machine unless its entry
    # says counts_as_use; Jupyter's processes count unless Jupyter itself says it is idle (above).
    others = [service for service in load_all(home)[0] if service["name"] != JUPYTER and not service["counts_as_use"]]
    try:
        services = set(run_as(user, service_pids, others, uid) if others else [])
    except RunAsError:
        services = set()  # not known: their processes count as use
    table = processes()
    found = user_activity(uid, user, activity and activity["pid"], table, services)
    orphans = ", ".join(found["orphans"][:5]) or None
    if orphans != clock.orphans and orphans:
        log(f"idle stop: not counting kernels left behind by a Jupyter server that is gone: {orphans}")
    clock.orphans = orphans
    reasons = []
    if activity is not None:
        reasons += [f"kernel busy ({escaped(name)})" for name in activity["busy_kernels"]]
        if activity["connections"]:
            reasons.append(f"{activity['connections']} browser connection(s) to kernels")
    reasons += gpu_use(find_nvidia_smi(), uid, user, setting["gpu_percent"], table)
    reasons += [escaped(session) for session in found["sessions"]]
    held_until = read_stay_up(home, uid)
    before = clock.reason
    latest = max(activity["last_activity"] if activity else 0.0, last_input(found["waiting_ttys"]))
    if held_until > now:
        clock.observe(now, [f"held off by devbox-stay-up until {clock_text(held_until)}"])
    else:
        clock.observe(now, reasons, latest)
    if clock.reason != before:  # a line when it changes, so the log says why the machine keeps running
        log(f"idle stop: in use ({clock.reason})" if clock.reason
            else f"idle stop: quiet; stopping after {minutes} min of this")
    write_state(state_record(now, setting, clock, held_until, IDLE_POLL_S))
    if clock.reason:
        return False
    left = minutes * 60 - clock.idle_for(now)
    if left > 0 and left <= setting["warn_minutes"] * 60 and not clock.warned:
        clock.warned = True
        stop_at = clock_text(now + left)
        told = tell_terminals(uid, f"devbox: this machine stops at {stop_at} (in {max(1, round(left / 60))} min) after "
                                   f"{minutes} min without use; `devbox-stay-up 2h` keeps it up", table)
        log(f"idle stop: stopping at {stop_at} unless it is used; told {told} terminal(s) of {user}")
    if left > 0:
        return False
    log(f"idle stop: nobody used the machine for {clock.idle_for(now) / 60:.0f} min (idle_stop_minutes="
        f"{minutes}): no kernel busy, no browser connected, no busy GPU, no process of {user} outside Jupyter")
    return True


class PendingWatch:
    """What PID 1 last said of the pending restart, so the log says it once, not at every look."""

    def __init__(self):
        self.said: str | None = None


def restart_if_pending(home: str, ask: JupyterLook, watch: PendingWatch) -> None:
    """The restart of Jupyter that a busy kernel put off, done at the first look with no kernel busy by the launcher
    (as the services module does it); then its record goes. The record is root's own file, read as data."""
    pending, problem = read_pending(home)
    entry = pending.get(JUPYTER)
    try:
        account = load_record(home) if entry else None
    except AccountError:
        account = None
    if account is None:
        said = f"restart record not used: {problem}" if problem else None
        if said != watch.said and said:
            log(said)
        watch.said = said
        return
    reasons = escaped("; ".join(entry["reasons"]))
    activity, error = ask(account["name"])
    step = pending_step(entry, activity)
    if step == "restart":  # the look's answer may be a while old (nvidia-smi, the process table): ask again
        activity, error = ask(account["name"], fresh=True)
        step = pending_step(entry, activity)
    if step == "wait":
        busy = activity["busy_kernels"] if activity else []
        why = (f"{len(busy)} kernel{'s' if len(busy) > 1 else ''} busy ({escaped(', '.join(busy))})" if busy
               else "Jupyter cannot be asked" if error else "Jupyter does not serve")
        said = f"jupyter: restart pending ({reasons}); waits while {why}"
        if said != watch.said:
            log(said)
        watch.said = said
        return
    if step == "restart":
        done, outcome = run_launcher(account["name"], os.path.join(home, LAUNCHER), JUPYTER, "restart",
                                     RESTART_TIMEOUT_S)
        log(f"jupyter: restart pending ({reasons}), no kernel busy now: {outcome}"
            + ("" if done else "; tried again at the next look"))
        if not done:
            return
    else:
        log(f"jupyter: restart pending ({reasons}) no more: the server it spared is gone, a restart since read "
            "the settings")
    try:
        settle_pending(home, JUPYTER, entry)
    except (AccountError, OSError) as failure:
        log(f"jupyter: cannot drop its pending restart from the record: {failure}")
    watch.said = None


def before_stop(home: str) -> None:
    """idle_stop_before_stop, as the user in the project with the venv, cut at its limit; its output to the log.
    Whatever it does, the stop goes on."""
    command = load_setting(home)["before_stop"]
    try:
        account = load_record(home) if command else None
    except AccountError:
        account = None
    if account is None:
        return
    limit = command["timeout_s"]
    log(f"idle stop: running idle_stop_before_stop as {account['name']} (at most {limit} s)")
    environment = {"HOME": account["home"], "USER": account["name"], "LOGNAME": account["name"],
                   "SHELL": account["shell"], "LANG": "C.UTF-8", "VIRTUAL_ENV": command["venv"],
                   "PATH": f"{command['venv']}/bin:{SYSTEM_PATH}"}
    try:
        # The cd happens as the user (Popen's cwd would be root's): the project is the user's directory.
        process = subprocess.Popen(["/bin/sh", "-c", 'cd "$1" && exec /bin/sh -c "$2"', "before-stop",
                                    command["project"], command["command"]], cwd="/", env=environment,
                                   user=account["uid"], group=account["gid"],
                                   extra_groups=os.getgrouplist(account["name"], account["gid"]),
                                   start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
    except OSError as error:
        log(f"idle stop: idle_stop_before_stop could not start ({error}); stopping all the same")
        return
    try:
        output, _ = process.communicate(timeout=limit)
        outcome = f"exited with {process.returncode}" + ("" if process.returncode == 0 else "; stopping all the same")
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            output, _ = process.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # a child of its own that keeps the pipe open
            output = b""
        outcome = f"cut after {limit} s (idle_stop_before_stop_timeout); stopping all the same"
    for line in output.decode(errors="replace").splitlines()[-BEFORE_STOP_LINES:]:
        log(f"idle stop: before-stop: {escaped(line)}")
    log(f"idle stop: idle_stop_before_stop {outcome}")


def main() -> None:
    home = os.environ.get("DEVBOX_HOME")  # the image sets it from NONROOT_USER; make up passes the home
    if not home:
        log("DEVBOX_HOME is not set: nothing to restore; rebuild the image (the Dockerfile sets it)")
        home = "/nonexistent"
    signal.signal(signal.SIGTERM, lambda *_: shut_down(home))
    signal.signal(signal.SIGINT, lambda *_: shut_down(home))
    restore(home)
    clock, watch = IdleClock(time.time()), PendingWatch()
    while True:
        # Reaping here, not in a SIGCHLD handler, leaves each subprocess's exit status to its caller.
        reap()
        time.sleep(IDLE_POLL_S)
        ask = JupyterLook(home)  # this look's question to Jupyter, shared
        if idle_long_enough(home, clock, ask):
            before_stop(home)
            shut_down(home)
        restart_if_pending(home, ask, watch)


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    main()
