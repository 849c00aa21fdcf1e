import grp
import json
import os
import pathlib
import pwd
import shutil
import tempfile

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_records as account_lib
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    LIBRARY_DIR, AccountError, conflicts, ensure_home, load_record, read_root_file, save_record, validate,
    write_root_file, write_root_file_if_changed)

GOOD = {"name": "pythonuser", "uid": 1000, "gid": 1000, "home": "/home/pythonuser"}


@pytest.fixture
def volume():
    """A home where validate accepts one (not under /tmp, a system tree), removed afterwards."""
    path = pathlib.Path(tempfile.mkdtemp(dir="/home", prefix="devbox-test-home-"))
    yield path
    shutil.rmtree(path)


def test_validate_accepts_a_normal_account():
    clean = validate(dict(GOOD, home="/home/pythonuser/"))
    assert clean == dict(GOOD, shell="/bin/bash", groups=[])


@pytest.mark.parametrize("name", ["Python", "1user", "user name", "a" * 33, "", None, "root;rm"])
def test_validate_rejects_bad_names_naming_the_variable(name):
    with pytest.raises(AccountError, match=r"dev_user_name=.* is not a valid login name"):
        validate(dict(GOOD, name=name))


@pytest.mark.parametrize("uid", ["1000", "abc", True, 0, 70000, 1.5])
def test_validate_rejects_bad_uids(uid):
    with pytest.raises(AccountError, match=r"dev_user_uid=.* is not a number"):
        validate(dict(GOOD, uid=uid))


@pytest.mark.parametrize("home", [
    "relative/home", "/", "//", "/root", "/root/.", "/etc", "//etc", "/etc/", "/home", "/home/",
    "/home/pythonuser/../../etc", "/home/../home/pythonuser", "/usr/local/dev", "/lib64", "/libx32/x", "/library", "/var/lib/dev",
    "/tmp/dev", "/srv", "/opt/dev", "/boot", "/proc/1", "/run/user", "/sbin", "/bin", "/dev/shm", "/sys/x",
    "/home/a:b", "/home/a\nb", 42, None])
def test_validate_rejects_homes_that_are_not_a_directory_of_their_own(home):
    with pytest.raises(AccountError, match="dev_user_home"):
        validate(dict(GOOD, home=home))


@pytest.mark.parametrize("home, normal", [("/home/pythonuser/", "/home/pythonuser"), ("/data/dev", "/data/dev"),
                                          ("/home/a/./b", "/home/a/b"), ("/mnt//volume", "/mnt/volume")])
def test_validate_normalises_acceptable_homes(home, normal):
    assert validate(dict(GOOD, home=home))["home"] == normal


def test_a_system_group_is_never_the_primary_group():
    shadow = grp.getgrnam("shadow")  # gid 42 on Debian and Ubuntu
    by_name = conflicts(validate(dict(GOOD, name="shadow", uid=45678, gid=45678)))
    assert any("dev_user_name='shadow' is the name of the system group 'shadow'" in p for p in by_name), by_name
    by_name_and_gid = conflicts(validate(dict(GOOD, name="shadow", uid=45678, gid=shadow.gr_gid)))
    assert any(f"gid {shadow.gr_gid} is the system group 'shadow'" in p for p in by_name_and_gid), by_name_and_gid
    by_gid = conflicts(validate(dict(GOOD, name="devbox-test-free", uid=45678, gid=shadow.gr_gid)))
    assert any("system group 'shadow'" in p and "free id from 1000" in p for p in by_gid), by_gid


def test_conflict_names_the_account_that_owns_the_uid():
    daemon = pwd.getpwnam("daemon")  # present in every Debian/Ubuntu image
    problems = conflicts(validate(dict(GOOD, uid=daemon.pw_uid)))
    assert any("already belongs to user 'daemon'" in p and "dev_user_uid" in p for p in problems)


def test_conflict_names_an_existing_user_with_another_uid():
    problems = conflicts(validate(dict(GOOD, name="daemon", uid=4321, gid=4321)))
    assert any("user 'daemon' already exists in the image with uid" in p for p in problems)


def test_no_conflict_for_a_free_account():
    assert conflicts(validate(dict(GOOD, name="devbox-test-free", uid=45678, gid=45678))) == []


def test_ensure_home_chowns_the_top_and_adds_only_absent_skeleton_files(tmp_path, volume):
    skel = tmp_path / "skel"
    skel.mkdir()
    (skel / ".bashrc").write_text("skel bashrc\n")
    (skel / ".profile").write_text("skel profile\n")
    home = volume
    (home / ".bashrc").write_text("mine\n")
    (home / "notebook.ipynb").write_text("{}")
    account = validate(dict(GOOD, home=str(home), uid=45678, gid=45678))

    changes = ensure_home(account, skel=str(skel))

    assert os.stat(home).st_uid == 45678
    assert (home / ".bashrc").read_text() == "mine\n"
    assert (home / ".profile").read_text() == "skel profile\n"
    assert os.stat(home / "notebook.ipynb").st_uid == 0, "not a recursive chown"
    assert len(changes) == 2
    assert ensure_home(account, skel=str(skel)) == []


def test_record_round_trip_and_no_rewrite_when_unchanged(volume):
    account = validate(dict(GOOD, home=str(volume), groups=["video"]))
    assert save_record(account) is True
    assert save_record(account) is False
    path = volume / ".devbox" / "account.json"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert load_record(str(volume)) == account


def test_missing_record_means_fresh_volume(tmp_path):
    assert load_record(str(tmp_path)) is None


@pytest.mark.parametrize("content", ["not json", "[]", json.dumps(dict(GOOD, name="x y")),
                                     json.dumps(dict(GOOD, groups=["disk"]))])
def test_damaged_record_is_rejected(tmp_path, content):
    (tmp_path / ".devbox").mkdir()
    (tmp_path / ".devbox" / "account.json").write_text(content)
    with pytest.raises(AccountError):
        load_record(str(tmp_path))


def test_record_for_another_home_is_rejected(volume):
    account = validate(dict(GOOD, home=str(volume / "first")))
    os.makedirs(account["home"])
    save_record(account)
    other = volume / "second"
    (other / ".devbox").mkdir(parents=True)
    (other / ".devbox" / "account.json").write_text(open(account_lib.record_path(account["home"])).read())
    with pytest.raises(AccountError, match="names home"):
        load_record(str(other))


def test_groups_beyond_the_gpu_device_groups_are_refused():
    for group in ("disk", "root", "sudo", "shadow"):
        with pytest.raises(AccountError, match="must be among video, render"):
            validate(dict(GOOD, groups=[group]))


def test_a_record_the_user_could_write_is_not_trusted(volume):
    account = validate(dict(GOOD, home=str(volume)))
    save_record(account)
    record = volume / ".devbox" / "account.json"
    os.chown(record, 1000, 1000)
    with pytest.raises(AccountError, match="not a root-owned file"):
        load_record(str(volume))
    os.chown(record, 0, 0)
    os.chown(volume / ".devbox", 1000, 1000)
    with pytest.raises(AccountError, match="not a root-owned directory"):
        load_record(str(volume))
    save_record(account)  # moves the user's directory aside and writes a record root owns
    assert load_record(str(volume)) == account
    assert [p for p in os.listdir(volume) if p.startswith(".devbox.untrusted-")]


def test_saving_never_follows_a_planted_link(tmp_path, volume):
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o700)
    home = volume
    os.symlink(victim, home / ".devbox")
    account = validate(dict(GOOD, home=str(home)))

    save_record(account)

    assert oct(victim.stat().st_mode & 0o777) == "0o700" and os.listdir(victim) == []
    assert not os.path.islink(home / ".devbox") and load_record(str(home)) == account
    assert [p for p in os.listdir(home) if p.startswith(".devbox.untrusted-")]


def test_a_linked_home_or_a_link_above_it_is_refused(tmp_path, volume):
    (tmp_path / "elsewhere" / "home").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", volume / "link")
    os.symlink(tmp_path / "elsewhere" / "home", volume / "home-link")
    for home in (volume / "link" / "home", volume / "home-link"):
        account = validate(dict(GOOD, home=str(home), uid=45678, gid=45678))
        with pytest.raises(AccountError, match="symbolic link or not a directory"):
            ensure_home(account, skel=str(tmp_path / "no-skel"))
        with pytest.raises(AccountError, match="symbolic link or not a directory"):
            save_record(account)
    assert os.stat(tmp_path / "elsewhere" / "home").st_uid == 0 and os.listdir(tmp_path / "elsewhere" / "home") == []


def test_skeleton_files_never_go_through_a_planted_link(tmp_path, volume):
    skel = tmp_path / "skel"
    skel.mkdir()
    (skel / ".profile").write_text("skel profile\n")
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    os.symlink(victim, volume / ".profile")
    ensure_home(validate(dict(GOOD, home=str(volume), uid=45678, gid=45678)), skel=str(skel))
    assert victim.read_text() == "root's file\n" and victim.stat().st_uid == 0
    assert os.path.islink(volume / ".profile")


def test_a_missing_home_is_created_without_following_links(volume):
    account = validate(dict(GOOD, home=str(volume / "data" / "dev"), uid=45678, gid=45678))
    assert ensure_home(account, skel="/nonexistent", dry_run=True)[0] == f"created {account['home']}"
    assert not (volume / "data").exists()
    ensure_home(account, skel="/nonexistent")
    info = os.stat(account["home"])
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (45678, 45678, "0o750")
    assert os.stat(volume / "data").st_uid == 0


def test_a_nested_file_gets_root_owned_directories_on_the_way(volume):
    relative = f"{LIBRARY_DIR}/devbox_launcher.py"
    assert write_root_file_if_changed(str(volume), relative, "x = 1\n") is True
    assert write_root_file_if_changed(str(volume), relative, "x = 1\n") is False
    assert read_root_file(str(volume), relative) == "x = 1\n"
    folder = volume / ".devbox"
    for part in LIBRARY_DIR.split("/"):
        folder = folder / part
        info = folder.lstat()
        assert (info.st_uid, oct(info.st_mode & 0o7777)) == (0, "0o755"), folder
    assert oct((folder / "devbox_launcher.py").stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("relative", ["", "lib/", "/etc/x", "lib/../x", "./x", "lib//x"])
def test_a_nested_path_is_plain_names_under_devbox(volume, relative):
    with pytest.raises(AccountError, match="relative path of plain names"):
        write_root_file(str(volume), relative, "x")


def test_a_link_inside_devbox_is_never_followed(tmp_path, volume):
    write_root_file(str(volume), "account.json", "{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, volume / ".devbox" / "lib")
    with pytest.raises(AccountError, match="link or not a directory"):
        write_root_file(str(volume), "lib/x.py", "x")
    assert os.listdir(elsewhere) == []
    with pytest.raises(AccountError, match="link or not a directory"):
        read_root_file(str(volume), "lib/x.py")
