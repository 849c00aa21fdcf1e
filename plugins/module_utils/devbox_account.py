"""The non-root account whose home is the volume: validate, create, record, restore.

Shared by the `devbox_user` module (run by Ansible) and the image's boot step (run as PID 1
without Ansible), so both create the account the same way. Standard library only.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

# useradd's default NAME_REGEX, as on Debian and Ubuntu.
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
MIN_ID, MAX_ID = 1, 60000
RECORD_DIR = ".devbox"
RECORD_FILE = "account.json"
# The record lives on the volume, inside the user's home: root grants nothing from it beyond
# the groups that own GPU device nodes.
ALLOWED_GROUPS = ("video", "render")


class AccountError(Exception):
    """An account that cannot be created as asked; the message says how to fix it."""


def validate(spec: dict) -> dict:
    """Return a clean copy of spec, or raise AccountError naming the field and value."""
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise AccountError(
            f"dev_user_name={name!r} is not a valid login name: use 1-32 characters, "
            "lower-case letters, digits, '_' or '-', starting with a letter or '_'")
    clean = {"name": name}
    for field in ("uid", "gid"):
        value = spec.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_ID <= value <= MAX_ID:
            raise AccountError(f"dev_user_{field}={value!r} is not a number from {MIN_ID} to {MAX_ID}")
        clean[field] = value
    home = spec.get("home")
    if not isinstance(home, str) or not os.path.isabs(home) or home.rstrip("/") in ("", "/root"):
        raise AccountError(f"dev_user_home={home!r} must be an absolute path other than / and /root")
    clean["home"] = os.path.normpath(home)
    shell = spec.get("shell", "/bin/bash")
    if not isinstance(shell, str) or not os.path.isabs(shell):
        raise AccountError(f"dev_user_shell={shell!r} must be an absolute path")
    clean["shell"] = shell
    groups = spec.get("groups", [])
    if not isinstance(groups, list) or not all(group in ALLOWED_GROUPS for group in groups):
        raise AccountError(f"supplementary groups {groups!r} must be among {', '.join(ALLOWED_GROUPS)}")
    clean["groups"] = sorted(set(groups))
    return clean


def _entry(lookup, key):
    """A pwd/grp entry, or None where the database has none."""
    try:
        return lookup(key)
    except KeyError:
        return None


def conflicts(account: dict) -> list[str]:
    """Accounts or groups in the image that stand in the way, each with how to get round it."""
    problems = []
    name, uid, gid = account["name"], account["uid"], account["gid"]
    by_uid = _entry(pwd.getpwuid, uid)
    if by_uid is not None and by_uid.pw_name != name:
        problems.append(f"uid {uid} already belongs to user '{by_uid.pw_name}' in the image: set "
                        f"dev_user_uid (and dev_user_gid) to a free id, or dev_user_name: {by_uid.pw_name}")
    existing = _entry(pwd.getpwnam, name)
    if existing is not None and existing.pw_uid != uid:
        problems.append(f"user '{name}' already exists in the image with uid {existing.pw_uid}: set "
                        f"dev_user_uid: {existing.pw_uid}, or choose another dev_user_name")
    by_gid = _entry(grp.getgrgid, gid)
    if by_gid is not None and by_gid.gr_name != name:
        problems.append(f"gid {gid} already belongs to group '{by_gid.gr_name}' in the image: set "
                        "dev_user_gid to a free id")
    group = _entry(grp.getgrnam, name)
    if group is not None and group.gr_gid != gid:
        problems.append(f"group '{name}' already exists in the image with gid {group.gr_gid}: set "
                        f"dev_user_gid: {group.gr_gid}")
    return problems


def current_groups(name: str) -> list[str]:
    """Supplementary groups the user belongs to now."""
    return sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise AccountError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def ensure_account(account: dict, dry_run: bool = False) -> list[str]:
    """Create or correct the group and user; return what changed."""
    problems = conflicts(account)
    if problems:
        raise AccountError("; ".join(problems))
    name, changes = account["name"], []
    if _entry(grp.getgrnam, name) is None:
        changes.append(f"created group {name} (gid {account['gid']})")
        if not dry_run:
            _run(["groupadd", "-g", str(account["gid"]), name])
    entry = _entry(pwd.getpwnam, name)
    if entry is None:
        changes.append(f"created user {name} (uid {account['uid']})")
        if not dry_run:
            _run(["useradd", "-u", str(account["uid"]), "-g", str(account["gid"]),
                  "-d", account["home"], "-M", "-s", account["shell"], name])
    else:
        fixes = []
        if entry.pw_gid != account["gid"]:
            fixes += ["-g", str(account["gid"])]
        if entry.pw_dir != account["home"]:
            fixes += ["-d", account["home"]]
        if entry.pw_shell != account["shell"]:
            fixes += ["-s", account["shell"]]
        if fixes:
            changes.append(f"corrected user {name}: {' '.join(fixes)}")
            if not dry_run:
                _run(["usermod", *fixes, name])
    # A device group that a new base image lacks is skipped: the account still comes up.
    missing = [group for group in account["groups"]
               if _entry(grp.getgrnam, group) is not None and group not in current_groups(name)]
    if missing:
        changes.append(f"added {name} to groups {', '.join(missing)}")
        if not dry_run:
            _run(["usermod", "-a", "-G", ",".join(missing), name])
    return changes


def ensure_home(account: dict, skel: str = "/etc/skel", dry_run: bool = False) -> list[str]:
    """Home exists and its top belongs to the user; skeleton files are added only where absent.

    Only the top directory is chowned: a recursive chown on every run would be slow on a big
    volume and would undo ownership the user chose deliberately.
    """
    home, uid, gid, changes = account["home"], account["uid"], account["gid"], []
    if os.path.islink(home):
        raise AccountError(f"{home} is a symbolic link: the home must be the volume's mount point")
    if not os.path.isdir(home):
        changes.append(f"created {home}")
        if not dry_run:
            os.makedirs(home, mode=0o750)
    info = os.stat(home) if os.path.isdir(home) else None
    if info is None or (info.st_uid, info.st_gid) != (uid, gid):
        changes.append(f"chowned {home} to {uid}:{gid}")
        if not dry_run:
            os.chown(home, uid, gid)
    if os.path.isdir(skel):
        for entry in sorted(os.listdir(skel)):
            source, target = os.path.join(skel, entry), os.path.join(home, entry)
            if os.path.lexists(target) or not os.path.isfile(source):
                continue
            if dry_run or _copy_as_new_file(source, target, uid, gid):
                changes.append(f"added {target} from {skel}")
    return changes


def _copy_as_new_file(source: str, target: str, uid: int, gid: int) -> bool:
    """Root writes into the user's home: create the file afresh, never through a planted link."""
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as out, open(source, "rb") as original:
        shutil.copyfileobj(original, out)
        os.fchown(out.fileno(), uid, gid)
        os.fchmod(out.fileno(), stat.S_IMODE(os.stat(source).st_mode))
    return True


def record_path(home: str) -> str:
    return os.path.join(home, RECORD_DIR, RECORD_FILE)


def _trusted(info: os.stat_result, kind) -> bool:
    """Owned by root, of the expected kind, writable by nobody else."""
    return kind(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def _record_dir(home: str) -> str:
    """~/.devbox as a root-owned directory; anything else there (the user's, a link) is moved aside."""
    path = os.path.join(home, RECORD_DIR)
    try:
        if _trusted(os.lstat(path), stat.S_ISDIR):
            return path
        os.rename(path, f"{path}.untrusted-{int(time.time())}")
    except FileNotFoundError:
        pass
    os.mkdir(path, 0o755)  # fails, rather than trusting it, if something appeared meanwhile
    os.chown(path, 0, 0)
    return path


def save_record(account: dict, dry_run: bool = False) -> bool:
    """Keep the account on the volume for the boot step; root-owned; True when it changed."""
    text = json.dumps(account, indent=2, sort_keys=True) + "\n"
    try:
        if _read_record_text(account["home"]) == text:
            return False
    except (AccountError, OSError):
        pass
    if not dry_run:
        directory = _record_dir(account["home"])
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".account-")
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
            os.fchmod(out.fileno(), 0o644)
        os.replace(temporary, os.path.join(directory, RECORD_FILE))
    return True


def _read_record_text(home: str) -> str | None:
    """The record's text when it is root's own file in root's own directory; None when absent."""
    directory, path = os.path.join(home, RECORD_DIR), record_path(home)
    try:
        if not _trusted(os.lstat(directory), stat.S_ISDIR):
            raise AccountError(f"{directory} is not a root-owned directory: its record is not trusted")
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AccountError(f"{path} is unreadable: {error}") from error
    with os.fdopen(descriptor) as record:
        if not _trusted(os.fstat(record.fileno()), stat.S_ISREG):
            raise AccountError(f"{path} is not a root-owned file: not trusted")
        return record.read()


def load_record(home: str) -> dict | None:
    """The recorded account, validated; None when there is no record (a fresh volume)."""
    path = record_path(home)
    text = _read_record_text(home)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise AccountError(f"{path} is unreadable: {error}") from error
    if not isinstance(data, dict):
        raise AccountError(f"{path} does not hold a JSON object")
    account = validate(data)
    if account["home"] != os.path.normpath(home):
        raise AccountError(f"{path} names home {account['home']!r}, not {home!r}")
    return account
