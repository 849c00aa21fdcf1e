"""run_as: the work runs as the user (groups, gid, uid, environment); results and errors come back."""
import grp
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_run_as import RunAsError, run_as

USER = "devbox-runas-test"


@pytest.fixture(scope="module")
def user():
    if os.geteuid() != 0:
        pytest.skip("creating a user and dropping to it needs root, as on CI")
    home = tempfile.mkdtemp(prefix="devbox-runas-")  # /tmp: pytest's own folders are root-only
    subprocess.run(["useradd", "-M", "-d", home, "-G", "video", USER], check=True)
    os.chown(home, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    yield pwd.getpwnam(USER)
    subprocess.run(["userdel", USER], check=True)
    shutil.rmtree(home)


def identity():
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "home": os.environ["HOME"], "user": os.environ["USER"], "cwd": os.getcwd()}


def test_work_runs_as_the_user_with_its_groups(user):
    seen = run_as(USER, identity)
    assert (seen["uid"], seen["euid"], seen["gid"]) == (user.pw_uid, user.pw_uid, user.pw_gid)
    assert seen["groups"] == sorted({user.pw_gid, grp.getgrnam("video").gr_gid})
    assert seen["home"] == seen["cwd"] == user.pw_dir and seen["user"] == USER
    assert os.geteuid() == 0, "the caller must stay root"


def test_root_cannot_be_regained(user):
    def try_root():
        os.setuid(0)
    with pytest.raises(RunAsError, match="Operation not permitted"):
        run_as(USER, try_root)


def test_expected_error_comes_back_as_its_message(user):
    def fail():
        raise ValueError("the reason")
    with pytest.raises(RunAsError) as raised:
        run_as(USER, fail, expected=(ValueError,))
    assert str(raised.value) == "the reason"
    with pytest.raises(RunAsError, match="Traceback"):
        run_as(USER, fail)


def test_missing_user_is_named():
    with pytest.raises(RunAsError, match="devbox-no-such-user"):
        run_as("devbox-no-such-user", identity)


def test_the_child_never_runs_the_callers_code(user):
    """SystemExit in the work, or a signal whose handler the caller set, stays in the child."""
    import signal
    ran = []
    previous = signal.signal(signal.SIGTERM, lambda *_: ran.append("handler"))
    try:
        def exit_early():
            raise SystemExit(3)
        with pytest.raises(RunAsError, match="SystemExit"):
            run_as(USER, exit_early)

        def signalled():
            return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert run_as(USER, signalled) is True
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ran == []


def test_roots_session_variables_stay_behind(user, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setenv("TMPDIR", "/root/tmp")
    monkeypatch.setenv("LANG", "C.UTF-8")

    def environment():
        return {name: os.environ.get(name) for name in ("XDG_RUNTIME_DIR", "TMPDIR", "LANG")}
    assert run_as(USER, environment) == {"XDG_RUNTIME_DIR": None, "TMPDIR": None, "LANG": "C.UTF-8"}
