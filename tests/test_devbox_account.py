import json
import os
import pwd

import pytest

import devbox_account as account_lib
from devbox_account import AccountError, conflicts, ensure_home, load_record, save_record, validate

GOOD = {"name": "pythonuser", "uid": 1000, "gid": 1000, "home": "/home/pythonuser"}


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


@pytest.mark.parametrize("home", ["relative/home", "/", "/root"])
def test_validate_rejects_bad_homes(home):
    with pytest.raises(AccountError, match="dev_user_home"):
        validate(dict(GOOD, home=home))


def test_conflict_names_the_account_that_owns_the_uid():
    daemon = pwd.getpwnam("daemon")  # present in every Debian/Ubuntu image
    problems = conflicts(validate(dict(GOOD, uid=daemon.pw_uid)))
    assert any("already belongs to user 'daemon'" in p and "dev_user_uid" in p for p in problems)


def test_conflict_names_an_existing_user_with_another_uid():
    problems = conflicts(validate(dict(GOOD, name="daemon", uid=4321, gid=4321)))
    assert any("user 'daemon' already exists in the image with uid" in p for p in problems)


def test_no_conflict_for_a_free_account():
    assert conflicts(validate(dict(GOOD, name="devbox-test-free", uid=45678, gid=45678))) == []


def test_ensure_home_chowns_the_top_and_adds_only_absent_skeleton_files(tmp_path):
    skel = tmp_path / "skel"
    skel.mkdir()
    (skel / ".bashrc").write_text("skel bashrc\n")
    (skel / ".profile").write_text("skel profile\n")
    home = tmp_path / "home"
    home.mkdir()
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


def test_record_round_trip_and_no_rewrite_when_unchanged(tmp_path):
    account = validate(dict(GOOD, home=str(tmp_path), groups=["video"]))
    assert save_record(account) is True
    assert save_record(account) is False
    path = tmp_path / ".devbox" / "account.json"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert load_record(str(tmp_path)) == account


def test_missing_record_means_fresh_volume(tmp_path):
    assert load_record(str(tmp_path)) is None


@pytest.mark.parametrize("content", ["not json", "[]", json.dumps(dict(GOOD, name="x y")),
                                     json.dumps(dict(GOOD, groups=["disk"]))])
def test_damaged_record_is_rejected(tmp_path, content):
    (tmp_path / ".devbox").mkdir()
    (tmp_path / ".devbox" / "account.json").write_text(content)
    with pytest.raises(AccountError):
        load_record(str(tmp_path))


def test_record_for_another_home_is_rejected(tmp_path):
    account = validate(dict(GOOD, home=str(tmp_path / "first")))
    os.makedirs(account["home"])
    save_record(account)
    other = tmp_path / "second"
    (other / ".devbox").mkdir(parents=True)
    (other / ".devbox" / "account.json").write_text(open(account_lib.record_path(account["home"])).read())
    with pytest.raises(AccountError, match="names home"):
        load_record(str(other))


def test_groups_beyond_the_gpu_device_groups_are_refused():
    for group in ("disk", "root", "sudo", "shadow"):
        with pytest.raises(AccountError, match="must be among video, render"):
            validate(dict(GOOD, groups=[group]))


def test_a_record_the_user_could_write_is_not_trusted(tmp_path):
    account = validate(dict(GOOD, home=str(tmp_path)))
    save_record(account)
    record = tmp_path / ".devbox" / "account.json"
    os.chown(record, 1000, 1000)
    with pytest.raises(AccountError, match="not a root-owned file"):
        load_record(str(tmp_path))
    os.chown(record, 0, 0)
    os.chown(tmp_path / ".devbox", 1000, 1000)
    with pytest.raises(AccountError, match="not a root-owned directory"):
        load_record(str(tmp_path))


def test_saving_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o700)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(victim, home / ".devbox")
    account = validate(dict(GOOD, home=str(home)))

    save_record(account)

    assert oct(victim.stat().st_mode & 0o777) == "0o700" and os.listdir(victim) == []
    assert not os.path.islink(home / ".devbox") and load_record(str(home)) == account
    assert [p for p in os.listdir(home) if p.startswith(".devbox.untrusted-")]
