"""The run record: written root-owned in the root-owned ~/.devbox/, read back only when trusted."""
import json
import os

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_provision_record import RecordError, load, record_path, save

RECORD = {"time": "2026-11-29T03:00:00+00:00", "commit": "5968c51-dirty", "tags": []}


@pytest.fixture
def home(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("root-owned records need root, as on CI")
    path = tmp_path / "home"
    path.mkdir()
    os.chown(path, 1000, 1000)
    return str(path)


def test_first_record_is_a_change_and_a_rerun_of_the_same_commit_is_not(home):
    assert load(home) is None
    assert save(home, RECORD) is True
    assert load(home) == RECORD
    info = os.stat(record_path(home))
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o644)
    later = dict(RECORD, time="2026-11-29T04:00:00+00:00")
    assert save(home, later) is False
    assert load(home)["time"] == later["time"], "the time is written on every run"
    assert save(home, dict(later, commit="abcdef0")) is True


def test_dry_run_writes_nothing(home):
    assert save(home, RECORD, dry_run=True) is True
    assert not os.path.exists(record_path(home))


def test_a_record_the_user_could_have_written_is_not_trusted(home):
    save(home, RECORD)
    os.chown(record_path(home), 1000, 1000)
    with pytest.raises(RecordError, match="not a root-owned file"):
        load(home)
    # Rewriting replaces it with root's own file again.
    save(home, RECORD)
    assert load(home) == RECORD


def test_a_user_owned_devbox_folder_is_not_trusted(home, tmp_path):
    planted = os.path.join(home, ".devbox")
    os.mkdir(planted)
    with open(os.path.join(planted, "provisioned.json"), "w") as out:
        json.dump(RECORD, out)
    os.chown(planted, 1000, 1000)
    with pytest.raises(RecordError, match="not a root-owned directory"):
        load(home)
