"""The root-owned record store in the home's ~/.devbox/, and the account it records.

~/.devbox/ is root's own directory on the volume: the account record (account.json), the
service records (devbox_service), the provision record (devbox_provision_record), the idle
setting (devbox_idle) and the launchers' libraries (LIBRARY_DIR) are root's own files there,
written and read only from directory descriptors (write_root_file, read_root_file). The
account itself (validate, create, restore) lives here too: the `devbox_user` module (run by
Ansible) and the image's boot step (run as PID 1 without Ansible) share it, so both create the
account the same way. Standard library only.

Root works inside a directory the user owns: the user can rename, swap or replace any entry
there at any moment. So every path under the home is opened from directory descriptors,
never following a link, its owner checked after opening, and root never chowns, writes or
renames by path there.
"""
from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import time

# useradd's default NAME_REGEX, as on Debian and Ubuntu; the one rule for a login name (the
# role's input check, this module, the boot step and the fly inventory all ask is_login_name).
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
LOGIN_NAME_RULE = "1-32 characters, lower-case letters, digits, '_' or '-', starting with a letter or '_'"
MIN_ID, MAX_ID = 1, 60000
RECORD_DIR = ".devbox"
RECORD_FILE = "account.json"
# The launchers' libraries, under ~/.devbox/: the launchers put ~/.devbox/lib first on sys.path and
# import them by the collection's name, as every other user of plugins/module_utils does.
LIBRARY_ROOT = "lib"
LIBRARY_DIR = LIBRARY_ROOT + "/ansible_collections/devbox/machine/plugins/module_utils"
# The record lives on the volume, inside the user's home: root grants nothing from it beyond
# the groups that own GPU device nodes.
ALLOWED_GROUPS = ("video", "render")
# Groups below this gid are the system's (Debian/Ubuntu login.defs SYS_GID_MAX=999): never the
# account's primary group.
FIRST_USER_GID = 1000
# The home must be a directory of its own: never a system tree or anything under one, since
# root hands the home's top directory to the user.
SYSTEM_TREES = ("bin", "boot", "dev", "etc", "opt", "proc", "root", "run", "sbin", "srv", "sys", "tmp",
                "usr", "var")


class AccountError(Exception):
    """An account that cannot be created as asked; the message says how to fix it."""


def is_login_name(name) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def validate(spec: dict) -> dict:
    """Return a clean copy of spec, or raise AccountError naming the field and value."""
    name = spec.get("name")
    if not is_login_name(name):
        raise AccountError(f"dev_user_name={name!r} is not a valid login name: use {LOGIN_NAME_RULE}")
    clean = {"name": name}
    for field in ("uid", "gid"):
        value = spec.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_ID <= value <= MAX_ID:
            raise AccountError(f"dev_user_{field}={value!r} is not a number from {MIN_ID} to {MAX_ID}")
        clean[field] = value
    clean["home"] = checked_home(spec.get("home"))
    shell = spec.get("shell", "/bin/bash")
    if not isinstance(shell, str) or not os.path.isabs(shell):
        raise AccountError(f"dev_user_shell={shell!r} must be an absolute path")
    clean["shell"] = shell
    groups = spec.get("groups", [])
    if not isinstance(groups, list) or not all(group in ALLOWED_GROUPS for group in groups):
        raise AccountError(f"supplementary groups {groups!r} must be among {', '.join(ALLOWED_GROUPS)}")
    clean["groups"] = sorted(set(groups))
    return clean


def checked_home(home) -> str:
    """The home, normalised, when it is a directory of its own; AccountError otherwise."""
    if not isinstance(home, str) or not home.startswith("/") or any(c in home for c in ":\n\0"):
        raise AccountError(f"dev_user_home={home!r} must be an absolute path (no ':' or line breaks)")
    if ".." in home.split("/"):
        raise AccountError(f"dev_user_home={home!r} must not contain '..'")
    normal = "/" + os.path.normpath(home).lstrip("/")  # normpath keeps a leading '//'
    top = normal.split("/")[1]
    if normal in ("/", "/home"):
        raise AccountError(f"dev_user_home={home!r} must be a directory of its own, such as /home/<user>")
    if top in SYSTEM_TREES or top.startswith("lib"):
        raise AccountError(f"dev_user_home={home!r} is inside the system tree /{top}: root would hand it to "
                           "the user; use a directory of its own, such as /home/<user>")
    return normal


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
    # The primary group is the account's own: a free gid, or the group of the same name.
    by_gid = _entry(grp.getgrgid, gid)
    if by_gid is not None and by_gid.gr_gid < FIRST_USER_GID:
        problems.append(f"gid {gid} is the system group '{by_gid.gr_name}' in the image: the account's primary "
                        f"group must be its own; set dev_user_gid to a free id from {FIRST_USER_GID} to {MAX_ID}")
    elif by_gid is not None and by_gid.gr_name != name:
        problems.append(f"gid {gid} already belongs to group '{by_gid.gr_name}' in the image: set "
                        "dev_user_gid to a free id")
    group = _entry(grp.getgrnam, name)
    if group is not None and group.gr_gid < FIRST_USER_GID:
        problems.append(f"dev_user_name={name!r} is the name of the system group '{name}' (gid {group.gr_gid}) "
                        "in the image: choose another dev_user_name")
    elif group is not None and group.gr_gid != gid:
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



# Open a directory entry as what it is: a link or a non-directory fails instead of being followed.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_home(home: str, create: bool = False) -> int | None:
    """A descriptor of the home, reached component by component without following a link.

    None when it does not exist and create is false. Missing directories are created 0755
    (the home itself 0750), as os.makedirs would, but never through a link.
    """
    parts = home.strip("/").split("/")
    descriptor = os.open("/", _DIRECTORY)
    try:
        for depth, part in enumerate(parts, 1):
            reached = "/" + "/".join(parts[:depth])
            try:
                child = os.open(part, _DIRECTORY, dir_fd=descriptor)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(part, 0o750 if depth == len(parts) else 0o755, dir_fd=descriptor)
                child = os.open(part, _DIRECTORY, dir_fd=descriptor)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise AccountError(f"{reached} is a symbolic link or not a directory: the home must be the "
                                   "volume's mount point, reached without links") from error
            os.close(descriptor)
            descriptor = child
        result, descriptor = descriptor, None
        return result
    finally:
        if descriptor is not None:
            os.close(descriptor)


def ensure_home(account: dict, skel: str = "/etc/skel", dry_run: bool = False) -> list[str]:
    """Home exists and its top belongs to the user; skeleton files are added only where absent.

    Only the top directory is chowned: a recursive chown on every run would be slow on a big
    volume and would undo ownership the user chose deliberately.
    """
    home, uid, gid, changes = account["home"], account["uid"], account["gid"], []
    home_fd = _open_home(home, create=not dry_run)
    if home_fd is None:  # dry run on a machine without the home yet
        return [f"created {home}", f"chowned {home} to {uid}:{gid}"]
    try:
        info = os.fstat(home_fd)
        if (info.st_uid, info.st_gid) != (uid, gid):
            changes.append(f"chowned {home} to {uid}:{gid}")
            if not dry_run:
                os.fchown(home_fd, uid, gid)
        if os.path.isdir(skel):  # root's own tree: read by path
            for entry in sorted(os.listdir(skel)):
                source = os.path.join(skel, entry)
                if os.path.isfile(source) and _add_skeleton_file(source, entry, home_fd, uid, gid, dry_run):
                    changes.append(f"added {os.path.join(home, entry)} from {skel}")
    finally:
        os.close(home_fd)
    return changes


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _add_skeleton_file(source: str, name: str, home_fd: int, uid: int, gid: int, dry_run: bool) -> bool:
    """Create the file afresh in the home (never through a planted link); False when something is there."""
    if dry_run:
        return not _exists(name, home_fd)
    try:
        descriptor = os.open(name, _NEW_FILE, 0o600, dir_fd=home_fd)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as out, open(source, "rb") as original:
        shutil.copyfileobj(original, out)
        os.fchown(out.fileno(), uid, gid)
        os.fchmod(out.fileno(), stat.S_IMODE(os.fstat(original.fileno()).st_mode))
    return True


def record_path(home: str) -> str:
    return os.path.join(home, RECORD_DIR, RECORD_FILE)


def _trusted(info: os.stat_result, kind) -> bool:
    """Owned by root, of the expected kind, writable by nobody else."""
    return kind(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def _open_record_dir(home: str, home_fd: int) -> int | None:
    """~/.devbox when it is root's own directory; None when absent; AccountError when it is not root's."""
    where = os.path.join(home, RECORD_DIR)
    try:
        descriptor = os.open(RECORD_DIR, _DIRECTORY, dir_fd=home_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AccountError(f"{where} is a link or not a directory: its record is not trusted") from error
    if not _trusted(os.fstat(descriptor), stat.S_ISDIR):
        os.close(descriptor)
        raise AccountError(f"{where} is not a root-owned directory: its record is not trusted")
    return descriptor


def _record_dir_for_writing(home: str, home_fd: int) -> int:
    """~/.devbox as root's own directory; anything else there (the user's, a link) is moved aside."""
    where = os.path.join(home, RECORD_DIR)
    try:
        descriptor = _open_record_dir(home, home_fd)
    except AccountError:
        descriptor = None
        # Within the home only: renaming an entry, whatever it is now, never touches its target.
        try:
            os.rename(RECORD_DIR, f"{RECORD_DIR}.untrusted-{time.time_ns()}", src_dir_fd=home_fd, dst_dir_fd=home_fd)
        except FileNotFoundError:
            pass
    if descriptor is not None:
        return descriptor
    try:
        os.mkdir(RECORD_DIR, 0o700, dir_fd=home_fd)
        descriptor = os.open(RECORD_DIR, _DIRECTORY, dir_fd=home_fd)
    except OSError as error:
        raise AccountError(f"{where} changed while it was being created ({error}): run again") from error
    if os.fstat(descriptor).st_uid != 0:  # the user swapped in their own directory between mkdir and open
        os.close(descriptor)
        raise AccountError(f"{where} was replaced while it was being created: run again")
    os.fchown(descriptor, 0, 0)
    os.fchmod(descriptor, 0o755)
    return descriptor


def _relative_parts(relative: str) -> list[str]:
    """The plain names of a relative path under ~/.devbox/; AccountError for '', '.', '..' or an absolute path."""
    parts = relative.split("/") if isinstance(relative, str) else [""]
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise AccountError(f"{relative!r} is not a relative path of plain names under {RECORD_DIR}/")
    return parts


def _open_root_subdirs(directory: int, names: list[str], where: str, create: bool) -> int | None:
    """The descriptor of directory/names[0]/names[1]/..., each root's own directory (0755), never through a
    link; created where missing when create is true, else None. Consumes directory."""
    try:
        for name in names:
            where = os.path.join(where, name)
            try:
                child = os.open(name, _DIRECTORY, dir_fd=directory)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=directory)
                child = os.open(name, _DIRECTORY, dir_fd=directory)
                os.fchown(child, 0, 0)
                os.fchmod(child, 0o755)
            except OSError as error:
                raise AccountError(f"{where} is a link or not a directory: not trusted") from error
            os.close(directory)
            directory = child
            if not _trusted(os.fstat(directory), stat.S_ISDIR):
                raise AccountError(f"{where} is not a root-owned directory: not trusted")
        result, directory = directory, None
        return result
    finally:
        if directory is not None:
            os.close(directory)


def write_root_file(home: str, relative: str, text: str) -> None:
    """Write ~/.devbox/<relative> as root's own file (0644), from directory descriptors only.

    relative is a name, or a path of plain names whose directories are created root's own (0755)
    where missing; none of them is ever followed through a link.
    """
    *subdirs, name = _relative_parts(relative)
    home_fd = _open_home(home)
    if home_fd is None:
        raise AccountError(f"{home} does not exist: the record goes on the volume")
    try:
        directory = _record_dir_for_writing(home, home_fd)
    finally:
        os.close(home_fd)
    directory = _open_root_subdirs(directory, subdirs, os.path.join(home, RECORD_DIR), create=True)
    try:
        temporary = f".{name}-{os.getpid()}-{time.time_ns()}"
        with os.fdopen(os.open(temporary, _NEW_FILE, 0o644, dir_fd=directory), "w") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)


def read_root_file(home: str, relative: str) -> str | None:
    """~/.devbox/<relative> when it is root's own file in root's own directories; None when absent."""
    *subdirs, name = _relative_parts(relative)
    path = os.path.join(home, RECORD_DIR, relative)
    directory = _open_existing_folder(home, subdirs)
    if directory is None:
        return None
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AccountError(f"{path} is unreadable: {error}") from error
    finally:
        os.close(directory)
    with os.fdopen(descriptor) as record:
        if not _trusted(os.fstat(record.fileno()), stat.S_ISREG):
            raise AccountError(f"{path} is not a root-owned file: not trusted")
        return record.read()


def root_file_names(home: str) -> list[str]:
    """The names in ~/.devbox when it is root's own directory; [] when absent. Read them with read_root_file."""
    home_fd = _open_home(home)
    if home_fd is None:
        return []
    try:
        directory = _open_record_dir(home, home_fd)
    finally:
        os.close(home_fd)
    if directory is None:
        return []
    try:
        return sorted(os.listdir(directory))
    finally:
        os.close(directory)


def write_root_file_if_changed(home: str, relative: str, text: str, dry_run: bool = False) -> bool:
    """~/.devbox/<relative> as root's own file with this text; True when it differed (or was not root's own)."""
    try:
        if read_root_file(home, relative) == text:
            return False
    except (AccountError, OSError):
        pass  # not root's own file, or unreadable: replaced
    if not dry_run:
        write_root_file(home, relative, text)
    return True


def read_root_json(home: str, name: str) -> dict | None:
    """~/.devbox/<name>'s JSON object (root's own file); None when absent; AccountError naming the problem."""
    path = os.path.join(home, RECORD_DIR, name)
    text = read_root_file(home, name)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise AccountError(f"{path} is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise AccountError(f"{path} does not hold a JSON object")
    return data


def save_record(account: dict, dry_run: bool = False) -> bool:
    """Keep the account on the volume for the boot step; root-owned; True when it changed."""
    text = json.dumps(account, indent=2, sort_keys=True) + "\n"
    return write_root_file_if_changed(account["home"], RECORD_FILE, text, dry_run)


def load_record(home: str) -> dict | None:
    """The recorded account, validated; None when there is no record (a fresh volume)."""
    data = read_root_json(home, RECORD_FILE)
    if data is None:
        return None
    account = validate(data)
    if account["home"] != os.path.normpath(home):
        raise AccountError(f"{record_path(home)} names home {account['home']!r}, not {home!r}")
    return account


def remove_root_file(home: str, relative: str, dry_run: bool = False) -> bool:
    """Remove ~/.devbox/<relative> (in root's own directories, never following a link); True when it was there."""
    *subdirs, name = _relative_parts(relative)
    directory = _open_existing_folder(home, subdirs)
    if directory is None:
        return False
    try:
        if not _exists(name, directory):
            return False
        if not dry_run:
            os.unlink(name, dir_fd=directory)
        return True
    finally:
        os.close(directory)


def _open_existing_folder(home: str, subdirs: list[str]) -> int | None:
    """The descriptor of ~/.devbox/<subdirs...> when each is root's own directory; None when one is absent."""
    home_fd = _open_home(home)
    if home_fd is None:
        return None
    try:
        directory = _open_record_dir(home, home_fd)
    finally:
        os.close(home_fd)
    if directory is None:
        return None
    return _open_root_subdirs(directory, subdirs, os.path.join(home, RECORD_DIR), create=False)


def read_user_file(home: str, relative: str, uid: int, limit: int) -> str | None:
    """~/<relative> when it is the user's own small regular file, read as untrusted data; None when absent.

    Reached from directory descriptors without following a link (nor a FIFO's wait: opened non-blocking),
    owned by uid, at most limit bytes of UTF-8; AccountError when it is anything else.
    """
    *subdirs, name = _relative_parts(relative)
    path = os.path.join(home, relative)
    directory = _open_home(home)
    if directory is None:
        return None
    try:
        for part in subdirs:
            try:
                child = os.open(part, _DIRECTORY, dir_fd=directory)
            except FileNotFoundError:
                return None
            except OSError as error:
                raise AccountError(f"{path}: a link or not a directory on the way") from error
            os.close(directory)
            directory = child
        try:
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                                 dir_fd=directory)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise AccountError(f"{path} is not a plain file: {error}") from error
    finally:
        os.close(directory)
    with os.fdopen(descriptor, "rb") as kept:
        info = os.fstat(kept.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
            raise AccountError(f"{path} is not a regular file of uid {uid}")
        data = kept.read(limit + 1)
    if len(data) > limit:
        raise AccountError(f"{path} is longer than {limit} bytes")
    return data.decode("utf-8")
