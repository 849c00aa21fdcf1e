"""Idle stop: is anybody using this machine? PID 1 asks every minute when idle stop is on.

In use means any of: a kernel busy; a browser connected to a kernel (Jupyter's /api/status
`connections`); an API request or terminal input within the idle time (JupyterLab polls while
a tab is open); a GPU above the busy threshold or running a process of the dev user (nvidia-smi,
when the machine has one: a reading that fails or hangs counts as use); a process of the dev
user that neither Jupyter nor another registered service (TensorBoard: a page it serves is no
use) started (a command in an SSH session, VS Code's server, a job left running with nohup), or a
command running in one of Jupyter's terminals.
A shell waiting at its prompt is not use, its last keystroke is: a terminal left open does not
keep the machine up forever, and it is where the warning goes before the stop. Kernels left
behind by a Jupyter server that is gone are no use either. Root's sessions do not count: log in
as the dev user to keep it up. `devbox-stay-up 2h` (the user's own file, read as untrusted
data) holds the machine up that long whatever else says.

The settings live in the home's root-owned ~/.devbox/idle_stop.json (the devbox_idle_stop
module writes it); PID 1 writes what it saw at its last look to /run/devbox/idle.json, which
`make status` shows. Here too is the record of the restarts a busy kernel put off
(~/.devbox/restart_pending.json): the devbox_services module keeps it, PID 1 does such a restart at
its first look with no kernel busy (and so does the next run). Standard library only.
"""
from __future__ import annotations

import collections
import datetime
import errno
import json
import os
import re
import stat
import subprocess
import time
import urllib.request

from ansible_collections.devbox.machine.plugins.module_utils.devbox_files import IDLE_SETTING_FILE, PENDING_RESTART_FILE
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    AccountError, read_root_file, read_root_json, read_user_file, remove_root_file, write_root_file_if_changed)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_launcher import (
    LauncherError, Service, healthy, our_server, read_token, url_for)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import JUPYTER

SETTING_FILE = IDLE_SETTING_FILE
# Root's own record of the restarts a busy kernel put off, by service (Jupyter's settings written, the server
# spared): {"jupyter": {"reasons": [...], "pid": the server spared, or null}}.
PENDING_FILE = PENDING_RESTART_FILE
MAX_MINUTES = 10080
MAX_BEFORE_STOP_S = 600
MAX_COMMAND = 4096
# The image's PID 1 (the Dockerfile's CMD): idle stop needs it running on the machine.
BOOT_COMMAND = "/usr/local/sbin/devbox-boot"
# What PID 1 saw at its last look: root's own, on the root FS (gone with it at a restart).
STATE_DIR = "/run/devbox"
STATE_FILE = "idle.json"
# The user's hold, written by devbox-stay-up (the user's own file: read as untrusted data).
STAY_UP_FILE = ".local/state/devbox/stay-up.json"
STAY_UP_COMMAND = ".local/bin/devbox-stay-up"
STAY_UP_MAX_BYTES = 256
# nvidia-smi answers within a second or two; a hung driver must not hold PID 1's look.
NVIDIA_SMI_TIMEOUT_S = 10
GPU_UTILISATION_ARGS = ["--query-gpu=index,uuid,utilization.gpu", "--format=csv,noheader,nounits"]
GPU_PROCESSES_ARGS = ["--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader,nounits"]
# Unix98 pseudo-terminal slaves (/dev/pts/N) have majors 136-143.
PTS_MAJORS = range(136, 144)
# The probe goes straight to the server: an http_proxy from the environment would swallow it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The user's command, kept as the user's own file in ~/.local/bin; root never runs it, only reads what it writes.
STAY_UP_SCRIPT = r'''#!/usr/bin/python3
"""devbox-stay-up DURATION | off: keep this machine up for DURATION (30m, 2h, 1d; at most 7d) whatever
idle stop says; `off` gives the machine back to idle stop, whose clock then starts afresh."""
import json, os, re, sys, time

FILE = os.path.expanduser("~/%(file)s")
UNITS = {"m": 60, "h": 3600, "d": 86400}
if len(sys.argv) != 2 or not re.fullmatch(r"off|[1-9][0-9]{0,4}[mhd]", sys.argv[1]):
    sys.exit(__doc__.strip())
if sys.argv[1] == "off":
    until = 0
else:
    seconds = int(sys.argv[1][:-1]) * UNITS[sys.argv[1][-1]]
    if seconds > %(max_s)d:
        sys.exit("devbox-stay-up: at most 7d")
    until = int(time.time()) + seconds
os.makedirs(os.path.dirname(FILE), exist_ok=True)
temporary = FILE + ".new"
with open(temporary, "w") as out:
    json.dump({"until": until}, out)
os.replace(temporary, FILE)
print("devbox: idle stop is back on (its clock starts now)" if not until else
      time.strftime("devbox: staying up until %%H:%%M UTC (`devbox-stay-up off` ends it)", time.gmtime(until)))
''' % {"file": STAY_UP_FILE, "max_s": MAX_MINUTES * 60}

# One row of the process table: parent, real uid, command name, controlling tty (0: none), session, process
# group, the tty's foreground group, and whether it is an IPython kernel.
Process = collections.namedtuple("Process", "parent uid name tty session group foreground kernel",
                                 defaults=(0, 0, 0, -1, False))


def load_setting(home: str) -> dict:
    """The idle stop settings; minutes 0 (off) when absent or not to be trusted."""
    off = {"minutes": 0, "warn_minutes": 0, "gpu_percent": 0, "since": 0.0, "before_stop": None}
    try:
        data = json.loads(read_root_file(home, SETTING_FILE) or "{}")
    except (AccountError, OSError, ValueError):
        return off
    if not isinstance(data, dict):
        return off
    setting = dict(off)
    for key, top in (("minutes", MAX_MINUTES), ("warn_minutes", MAX_MINUTES), ("gpu_percent", 100)):
        value = data.get(key, 0)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top:
            setting[key] = value
        elif key == "minutes":
            return off
    since = data.get("since", 0)
    setting["since"] = float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else 0.0
    setting["before_stop"] = checked_before_stop(data.get("before_stop"), home)
    return setting


def checked_before_stop(value, home: str) -> dict | None:
    """The before-stop command's record when it is complete and sane; None otherwise."""
    if not isinstance(value, dict):
        return None
    command, timeout = value.get("command"), value.get("timeout_s")
    inside = [value.get(key) for key in ("project", "venv")]
    if not (isinstance(command, str) and 0 < len(command) <= MAX_COMMAND and "\0" not in command
            and isinstance(timeout, int) and not isinstance(timeout, bool) and 1 <= timeout <= MAX_BEFORE_STOP_S
            and all(isinstance(path, str) and path.startswith(home.rstrip("/") + "/") and ".." not in path.split("/")
                    for path in inside)):
        return None
    return {"command": command, "timeout_s": timeout, "project": inside[0], "venv": inside[1]}


def setting_problems(params: dict) -> list[str]:
    """Each value out of its range, named by its variable (the input check on the controller and the module)."""
    found = []
    if not 0 <= params["minutes"] <= MAX_MINUTES:
        found.append(f"idle_stop_minutes={params['minutes']} must be whole minutes from 0 (never stop) to {MAX_MINUTES} (a week)")
    if not 0 <= params["warn_minutes"] <= MAX_MINUTES:
        found.append(f"idle_stop_warn_minutes={params['warn_minutes']} must be from 0 (no warning) to {MAX_MINUTES}")
    if not 0 <= params["gpu_percent"] <= 100:
        found.append(f"idle_stop_gpu_percent={params['gpu_percent']} must be from 0 to 100")
    if not 1 <= params["before_stop_timeout"] <= MAX_BEFORE_STOP_S:
        found.append(f"idle_stop_before_stop_timeout={params['before_stop_timeout']} must be from 1 to {MAX_BEFORE_STOP_S} s")
    if len(params["before_stop"]) > MAX_COMMAND or "\0" in params["before_stop"]:
        found.append(f"idle_stop_before_stop must be at most {MAX_COMMAND} characters, without NUL")
    if params["before_stop"] and not (params["project"] and params["venv"]):
        found.append("before_stop needs project and venv")
    return found


def setting_text(setting: dict) -> str:
    return json.dumps(setting, sort_keys=True) + "\n"


def save_setting(home: str, setting: dict, now: float, dry_run: bool = False) -> bool:
    """Keep the settings for PID 1; True when they changed. `since` is when idle stop was turned on or its
    minutes changed: the idle clock counts from then, not from the boot."""
    try:
        kept = json.loads(read_root_file(home, SETTING_FILE) or "{}")
    except (AccountError, OSError, ValueError):
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    same_minutes = kept.get("minutes") == setting["minutes"] and isinstance(kept.get("since"), (int, float))
    wanted = dict(setting, since=kept["since"] if same_minutes else round(now, 3))
    return write_root_file_if_changed(home, SETTING_FILE, setting_text(wanted), dry_run)


def jupyter_activity(home: str) -> dict | None:
    """As the user: Jupyter's own view of its use, or None when it is not serving.

    Asked here, in PID 1's own code after dropping to the user, at the address and port of Jupyter's
    root-owned record: nothing the user's Python could rewrite (a launcher's printed URL) decides where
    the token goes. Every field read back is checked for its type.
    """
    try:
        service = Service(home, JUPYTER)
        pid = our_server(service)
    except LauncherError:
        return None
    token = read_token(service)
    if pid is None or token is None or not healthy(service):
        return None
    base = url_for(service.address, service.port)

    def get(path: str, kind: type):
        # no_track_activity: looking must not count as using, or the machine would never be idle.
        request = urllib.request.Request(base + path + "?no_track_activity=1", headers={"Authorization": f"token {token}"})
        with NO_PROXY.open(request, timeout=10) as response:
            data = json.loads(response.read(1 << 20))
        if not isinstance(data, kind):
            raise ValueError(f"Jupyter's {path} is not a JSON {kind.__name__}")
        return data

    api_status, kernels, terminals = get("api/status", dict), get("api/kernels", list), get("api/terminals", list)
    sessions = get("api/sessions", list)
    connections = api_status.get("connections", 0)
    return {"pid": pid, "last_activity": max([timestamp(api_status["last_activity"])] + terminal_times(terminals)),
            "connections": connections if isinstance(connections, int) else 1,
            "busy_kernels": busy_kernels(kernels, sessions)}


def read_pending(home: str) -> tuple[dict, str | None]:
    """The restarts left pending, by service, {"reasons": [...], "pid": ...}: entries not of that shape are
    dropped; and why the whole record could not be used (not root's own file, not a JSON object), else None."""
    try:
        data = read_root_json(home, PENDING_FILE) or {}
    except (AccountError, OSError) as error:
        return {}, str(error)
    return {name: {"reasons": entry["reasons"], "pid": entry.get("pid")} for name, entry in data.items()
            if isinstance(entry, dict) and isinstance(entry.get("reasons"), list)
            and all(isinstance(reason, str) for reason in entry["reasons"])
            and (entry.get("pid") is None or (isinstance(entry["pid"], int) and not isinstance(entry["pid"], bool)))
            }, None


def keep_pending(home: str, pending: dict, dry_run: bool = False) -> None:
    """Root's own record of the restarts left pending; gone when none is."""
    if pending:
        write_root_file_if_changed(home, PENDING_FILE, json.dumps(pending, indent=2, sort_keys=True) + "\n", dry_run)
    else:
        remove_root_file(home, PENDING_FILE, dry_run)


def settle_pending(home: str, name: str, entry: dict) -> bool:
    """Drop the service's pending restart, once done, when the record still holds this very entry (a run that
    wrote another one meanwhile left it for later); True when it was dropped."""
    pending, _ = read_pending(home)
    if pending.get(name) != entry:
        return False
    del pending[name]
    keep_pending(home, pending)
    return True


def pending_step(entry: dict, activity: dict | None) -> str:
    """What to do now about Jupyter's pending restart, from Jupyter's own view of its use (jupyter_activity):
    "restart" when it serves with no kernel busy; "settled" when the server the busy kernel spared is gone (a
    restart since, by hand or by a reboot, read the new settings); "wait" while a kernel is busy, or while
    Jupyter does not serve or answer (its next start reads the settings; its pid then tells)."""
    if activity is None:
        return "wait"
    if entry["pid"] is not None and activity["pid"] != entry["pid"]:
        return "settled"
    return "wait" if activity["busy_kernels"] else "restart"


def terminal_times(terminals: list) -> list[float]:
    """The last activity of each Jupyter terminal (typing or output); an open terminal alone is no use."""
    times = []
    for terminal in terminals:
        try:
            times.append(timestamp(terminal["last_activity"]))
        except (TypeError, KeyError, ValueError):
            continue
    return times


def busy_kernels(kernels: list, sessions: list) -> list[str]:
    """Each busy kernel by the notebook it runs for (its session's path), else its id's start."""
    paths = {}
    for session in sessions:
        if isinstance(session, dict) and isinstance(session.get("kernel"), dict):
            kernel_id, path = session["kernel"].get("id"), session.get("path")
            if isinstance(kernel_id, str) and isinstance(path, str):
                paths[kernel_id] = os.path.basename(path)[:80]
    return [paths.get(kernel.get("id")) or str(kernel.get("id"))[:8] for kernel in kernels
            if isinstance(kernel, dict) and kernel.get("execution_state") == "busy"]


def timestamp(iso: str) -> float:
    """Jupyter's ISO 8601 times ('2026-11-29T03:00:00.123456Z') as seconds since the epoch."""
    if not isinstance(iso, str):
        raise ValueError(f"not a time: {iso!r}")
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _stat_fields(text: str) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    return text[text.rindex(")") + 2:].split()


def _is_kernel(argv: list[bytes]) -> bool:
    return any(word.endswith(b"ipykernel_launcher") or word.endswith(b"ipykernel_launcher.py") for word in argv) or (
        b"-m" in argv and b"ipykernel" in argv)


def processes() -> dict[int, Process]:
    """The process table from /proc; zombies (exited, not yet reaped) left out."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            with open(f"/proc/{entry}/stat") as stat_file:
                state, parent, group, session, tty, foreground = _stat_fields(stat_file.read())[:6]
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read(1 << 16).split(b"\0")
        except (OSError, ValueError):
            continue  # exited meanwhile
        if state != "Z":
            table[int(entry)] = Process(int(parent), int(fields["Uid"].split()[0]), fields["Name"].strip(), int(tty),
                                        int(session), int(group), int(foreground), _is_kernel(argv))
    return table


def _ancestors(pid: int, table: dict[int, Process]):
    seen = set()
    while pid > 1 and pid not in seen and pid in table:
        seen.add(pid)
        yield pid
        pid = table[pid].parent


def user_activity(uid: int, user: str, jupyter_pid: int | None, table: dict | None = None,
                  services: set[int] = frozenset()) -> dict:
    """What the user's processes outside Jupyter's tree and the other services' trees say.

    "sessions": why they are use ('ssh session of USER: python (51)', 'Jupyter terminal of USER: python (45)',
    'processes of USER outside Jupyter: sleep (60)'); "waiting_ttys": the terminals whose shell waits at its
    prompt (no use by itself: their last keystroke counts); "orphans": kernels whose Jupyter server is gone, and
    what they started (no use).
    """
    table = {pid: Process(*row) for pid, row in (processes() if table is None else table).items()}
    roots = {jupyter_pid, *services} - {None}
    # A kernel whose parent is not the user's: its Jupyter server died and it was handed to PID 1.
    left_behind = {pid for pid, process in table.items() if process.kernel and process.uid == uid
                   and (process.parent not in table or table[process.parent].uid != uid)}
    in_ssh, in_terminal, outside, waiting, orphans = [], [], [], set(), []
    for pid, process in sorted(table.items()):
        if process.uid != uid:
            continue
        chain = list(_ancestors(pid, table))
        at_prompt = bool(process.tty) and pid == process.session and process.group == process.foreground
        if jupyter_pid in chain and pts_path(process.tty):
            # Jupyter's terminals: a command running in one is use, as in an SSH session; the server and its
            # kernels (no terminal) speak through Jupyter's API.
            if at_prompt:
                waiting.add(process.tty)
            else:
                in_terminal.append(f"{process.name} ({pid})")
            continue
        if roots & set(chain):
            continue
        if left_behind & set(chain):
            orphans.append(f"{process.name} ({pid})")
            continue
        if process.name == "sshd" or process.name.startswith("sshd-"):
            continue  # the session's carrier; what runs in it speaks for itself
        if at_prompt:
            waiting.add(process.tty)
            continue
        under_ssh = any(table[ancestor].name.startswith("sshd") for ancestor in chain[1:])
        (in_ssh if under_ssh else outside).append(f"{process.name} ({pid})")
    sessions = ([f"ssh session of {user}: {', '.join(in_ssh[:5])}"] if in_ssh else []) + (
        [f"Jupyter terminal of {user}: {', '.join(in_terminal[:5])}"] if in_terminal else []) + (
        [f"processes of {user} outside Jupyter: {', '.join(outside[:5])}"] if outside else [])
    return {"sessions": sessions, "waiting_ttys": sorted(waiting), "orphans": orphans}


def pts_path(tty: int) -> str | None:
    """/dev/pts/N for a controlling tty number of /proc/<pid>/stat; None when it is no pseudo-terminal."""
    major, minor = (tty >> 8) & 0xfff, (tty & 0xff) | ((tty >> 12) & 0xfff00)
    if major not in PTS_MAJORS:
        return None
    return f"/dev/pts/{(major - PTS_MAJORS[0]) * 256 + minor}"


def _open_pts(tty: int) -> int | None:
    """A descriptor of the pseudo-terminal that is this tty, opened without following a link and without
    becoming anybody's controlling terminal; None when the device there is something else."""
    path = pts_path(tty)
    if path is None:
        return None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(descriptor)
    major, minor = (tty >> 8) & 0xfff, (tty & 0xff) | ((tty >> 12) & 0xfff00)
    if not stat.S_ISCHR(info.st_mode) or info.st_rdev != os.makedev(major, minor):
        os.close(descriptor)
        return None
    return descriptor


def last_input(ttys: list[int]) -> float:
    """When the user last typed on one of these terminals (the device's access time, as `w` reads it); 0 when none."""
    times = []
    for tty in ttys:
        descriptor = _open_pts(tty)
        if descriptor is not None:
            try:
                times.append(os.fstat(descriptor).st_atime)
            finally:
                os.close(descriptor)
    return max(times, default=0.0)


def user_ttys(uid: int, table: dict | None = None) -> list[int]:
    """Every pseudo-terminal that is the controlling terminal of a process of the user (SSH sessions,
    `docker exec -it`, Jupyter's terminals)."""
    table = processes() if table is None else table
    return sorted({Process(*row).tty for row in table.values()
                   if Process(*row).uid == uid and pts_path(Process(*row).tty)})


def tell_terminals(uid: int, message: str, table: dict | None = None) -> int:
    """Write one line to each of the user's terminals; how many took it. The message is ours, printable only."""
    line = ("\r\n" + "".join(c for c in message if c.isprintable()) + "\r\n").encode()
    told = 0
    for tty in user_ttys(uid, table):
        descriptor = _open_pts(tty)
        if descriptor is None:
            continue
        try:
            os.write(descriptor, line)
            told += 1
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EIO):
                raise
        finally:
            os.close(descriptor)
    return told


def trusted_program(path: str) -> bool:
    """Root may run it: root's own file that nobody else can write."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def _percent(text: str) -> int | None:
    """utilization.gpu: a whole percentage, or None where the GPU does not report it ([N/A], [Not Supported])."""
    text = text.strip()
    if re.fullmatch(r"\[(N/A|Not Supported|Unknown Error)\]|N/A", text):
        return None
    return int(float(text))


def parse_utilisation(output: str) -> list[dict]:
    """Rows of `nvidia-smi --query-gpu=index,uuid,utilization.gpu --format=csv,noheader,nounits`."""
    gpus = []
    for line in output.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 3 or not cells[0].isdigit():
            raise ValueError(f"unexpected nvidia-smi row: {line.strip()[:200]!r}")
        gpus.append({"index": int(cells[0]), "uuid": cells[1], "percent": _percent(cells[2])})
    return gpus


def parse_compute_processes(output: str) -> list[tuple[str, int]]:
    """(GPU uuid, pid) rows of `nvidia-smi --query-compute-apps=gpu_uuid,pid --format=csv,noheader,nounits`."""
    rows = []
    for line in output.splitlines():
        if not line.strip() or line.strip().startswith("No running"):
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 2 or not cells[1].isdigit():
            raise ValueError(f"unexpected nvidia-smi row: {line.strip()[:200]!r}")
        rows.append((cells[0], int(cells[1])))
    return rows


def _nvidia_smi(program: str, args: list[str], timeout: float) -> str:
    try:
        result = subprocess.run([program, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"nvidia-smi did not answer within {timeout:g} s") from None
    except OSError as error:
        raise ValueError(f"nvidia-smi cannot run: {error}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise ValueError(f"nvidia-smi exited with {result.returncode}" + (f": {said[-1][:200]}" if said else ""))
    return result.stdout


def gpu_use(program: str | None, uid: int, user: str, busy_percent: int, table: dict | None = None,
            timeout: float = NVIDIA_SMI_TIMEOUT_S) -> list[str]:
    """Why the GPUs keep the machine up: one above busy_percent, or running a process of the user (or one
    whose owner this machine cannot see: another pid namespace). A reading that fails or hangs is use."""
    if program is None:
        return []
    if not trusted_program(program):
        return [f"GPU not read: {program} is not root's own file (it counts as use)"]
    try:
        gpus = parse_utilisation(_nvidia_smi(program, GPU_UTILISATION_ARGS, timeout))
        running = parse_compute_processes(_nvidia_smi(program, GPU_PROCESSES_ARGS, timeout))
    except ValueError as error:
        return [f"GPU reading failed ({error}; it counts as use)"]
    table = processes() if table is None else table
    index = {gpu["uuid"]: gpu["index"] for gpu in gpus}
    reasons = [f"GPU {gpu['index']} at {gpu['percent']}%" for gpu in gpus
               if gpu["percent"] is not None and gpu["percent"] > busy_percent]
    for uuid, pid in running:
        owner = Process(*table[pid]).uid if pid in table else None
        if owner == uid:
            reasons.append(f"GPU {index.get(uuid, '?')} running {Process(*table[pid]).name} ({pid}) of {user}")
        elif owner is None:
            reasons.append(f"GPU {index.get(uuid, '?')} running process {pid} (not visible here)")
    return reasons


def read_stay_up(home: str, uid: int) -> float:
    """Until when the user holds the machine up (seconds since the epoch); 0 when not, or not readable as asked.

    The file is the user's: reached without following a link, the user's own regular file, small, one JSON
    object with an integer `until` (devbox-stay-up caps it at 7 days; more is cut to that).
    """
    try:
        text = read_user_file(home, STAY_UP_FILE, uid, STAY_UP_MAX_BYTES)
        data = json.loads(text) if text is not None else {}
    except (AccountError, OSError, ValueError, UnicodeDecodeError):
        return 0.0
    until = data.get("until") if isinstance(data, dict) else None
    if not isinstance(until, int) or isinstance(until, bool) or until <= 0:
        return 0.0
    return float(min(until, time.time() + MAX_MINUTES * 60))


def boot_step_running(table: dict | None = None) -> bool:
    """Whether the image's PID 1 (devbox-boot, root's) runs on this machine: PID 1 itself in a container, the
    child of Fly's init on a Fly Machine; never on an SSH host, where nothing would act on idle stop."""
    for pid, row in (processes() if table is None else table).items():
        if Process(*row).uid != 0:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read(4096).split(b"\0")
        except OSError:
            continue
        if BOOT_COMMAND.encode() in argv[:2]:
            return True
    return False


def clock_text(when: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(when))


class IdleClock:
    """Since when nothing has used the machine; started at boot or when idle stop was turned on."""

    def __init__(self, now: float):
        self.quiet_since = now
        # Why it was in use (or held) at the last look; None: quiet; "": not looked yet, so the first look is logged.
        self.reason: str | None = ""
        self.jupyter_error: str | None = None  # why Jupyter could not be asked at the last look
        self.orphans: str | None = None  # the kernels left behind, as last logged
        self.warned = False  # the terminals were told of the coming stop in this quiet spell

    def observe(self, now: float, reasons: list[str], latest_activity: float = 0.0) -> str | None:
        """Record one look at the machine; returns why it is in use, or None when quiet."""
        reason = self.reason = ", ".join(reasons) or None
        before = self.quiet_since
        if reason:
            self.quiet_since = now
        else:
            self.quiet_since = max(self.quiet_since, min(latest_activity, now))
        if self.quiet_since != before:
            self.warned = False
        return reason

    def idle_for(self, now: float) -> float:
        return max(0.0, now - self.quiet_since)


def state_record(now: float, setting: dict, clock: IdleClock, held_until: float, poll_s: float) -> dict:
    """What PID 1 saw at this look, for status."""
    stops_at = None if clock.reason or held_until > now else clock.quiet_since + setting["minutes"] * 60
    return {"time": now, "poll_s": poll_s, "minutes": setting["minutes"], "idle_for_s": clock.idle_for(now),
            "in_use": clock.reason if held_until <= now else None, "held_until": held_until if held_until > now else None,
            "stops_at": stops_at}


def write_state(record: dict, directory: str = STATE_DIR) -> None:
    """/run/devbox/idle.json as root's own file (the root FS is root's: no user can plant anything there)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    temporary = os.path.join(directory, f".{STATE_FILE}.{os.getpid()}")
    with open(temporary, "w") as out:
        json.dump(record, out)
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(directory, STATE_FILE))


def read_state(directory: str = STATE_DIR) -> dict | None:
    """PID 1's last look; None when there is none, or it is not root's own small file."""
    try:
        descriptor = os.open(os.path.join(directory, STATE_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(descriptor) as kept:
        info = os.fstat(kept.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            return None
        try:
            data = json.loads(kept.read(1 << 16))
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def status_line(setting: dict, state: dict | None, boot_running: bool, now: float) -> str:
    """The idle line of `make status`."""
    minutes = setting["minutes"]
    if not minutes:
        return "Idle stop: off (idle_stop_minutes: 0)"
    if not boot_running:
        return (f"Idle stop: set to {minutes} min, but nothing acts on it here: the image's boot step "
                "(devbox-boot) does not run on this machine")
    number = (int, float)
    if not state or not isinstance(state.get("time"), number) or state.get("minutes") != minutes:
        return f"Idle stop: after {minutes} min idle; no look yet with this setting (the boot step looks every minute)"
    poll = state.get("poll_s") if isinstance(state.get("poll_s"), number) else 60
    late = "" if now - state["time"] <= 3 * poll + 30 else f" (as of {clock_text(state['time'])}: the boot step has not looked since)"
    if isinstance(state.get("held_until"), number):
        return f"Idle stop: held off by devbox-stay-up until {clock_text(state['held_until'])}{late}"
    if isinstance(state.get("in_use"), str):
        return f"Idle stop: in use: {state['in_use']}{late}"
    idle = state.get("idle_for_s") if isinstance(state.get("idle_for_s"), number) else 0
    stops = f"; stops at {clock_text(state['stops_at'])}" if isinstance(state.get("stops_at"), number) else ""
    return f"Idle stop: after {minutes} min idle; idle for {idle / 60:.0f} min{stops}{late}"
