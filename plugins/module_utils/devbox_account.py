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
import subprocess

# useradd's default NAME_REGEX, as on Debian and Ubuntu.
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
MIN_ID, MAX_ID = 1, 60000
RECORD_DIR = ".devbox"
RECORD_FILE = "account.json"


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
    if not isinstance(groups, list) or not all(isinstance(g, str) and NAME_PATTERN.match(g) for g in groups):
        raise AccountError(f"supplementary groups {groups!r} must be a list of group names")
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
    missing = [g for g in account["groups"] if g not in current_groups(name)]
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
    if not os.path.isdir(home):
        changes.append(f"created {home}")
        if not dry_run:
            os.makedirs(home, mode=0o750)
    stat = os.stat(home) if os.path.isdir(home) else None
    if stat is None or (stat.st_uid, stat.st_gid) != (uid, gid):
        changes.append(f"chowned {home} to {uid}:{gid}")
        if not dry_run:
            os.chown(home, uid, gid)
    if os.path.isdir(skel):
        for entry in sorted(os.listdir(skel)):
            source, target = os.path.join(skel, entry), os.path.join(home, entry)
            if os.path.lexists(target) or not os.path.isfile(source):
                continue
            changes.append(f"added {target} from {skel}")
            if not dry_run:
                shutil.copy2(source, target)
                os.chown(target, uid, gid)
    return changes


def record_path(home: str) -> str:
    return os.path.join(home, RECORD_DIR, RECORD_FILE)


def save_record(account: dict, dry_run: bool = False) -> bool:
    """Keep the account on the volume for the boot step; root-owned; True when it changed."""
    path = record_path(account["home"])
    text = json.dumps(account, indent=2, sort_keys=True) + "\n"
    try:
        with open(path) as current:
            if current.read() == text:
                return False
    except OSError:
        pass
    if not dry_run:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.chown(os.path.dirname(path), 0, 0)
        os.chmod(os.path.dirname(path), 0o755)
        temporary = path + ".tmp"
        with open(temporary, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    return True


def load_record(home: str) -> dict | None:
    """The recorded account, validated; None when there is no record (a fresh volume)."""
    path = record_path(home)
    try:
        with open(path) as record:
            data = json.load(record)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise AccountError(f"{path} is unreadable: {error}") from error
    if not isinstance(data, dict):
        raise AccountError(f"{path} does not hold a JSON object")
    account = validate(data)
    if account["home"] != os.path.normpath(home):
        raise AccountError(f"{path} names home {account['home']!r}, not {home!r}")
    return account
