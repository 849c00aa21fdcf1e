"""Service records: validated data in root's ~/.devbox; a damaged one is skipped with its reason."""
import json
import os
import socket

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_service
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import user_sessions
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError, load_all, probe, register, service_pids, validate

JUPYTER = {"name": "jupyter", "launcher": ".local/bin/devbox-jupyter", "probe": {"port": 8888}}
TENSORBOARD = {"name": "tensorboard", "launcher": ".local/bin/devbox-tensorboard", "probe": {"port": 6006}}


def test_registered_services_are_read_back_sorted_by_name(tmp_path):
    assert register(str(tmp_path), TENSORBOARD) is True
    assert register(str(tmp_path), JUPYTER) is True
    assert register(str(tmp_path), JUPYTER) is False, "an unchanged record is not rewritten"
    assert load_all(str(tmp_path)) == ([JUPYTER, TENSORBOARD], [])
    record = tmp_path / ".devbox" / "service-jupyter.json"
    assert (record.stat().st_uid, record.stat().st_mode & 0o777) == (0, 0o644)


def test_a_dry_run_writes_nothing(tmp_path):
    assert register(str(tmp_path), JUPYTER, dry_run=True) is True
    assert not (tmp_path / ".devbox").exists()


@pytest.mark.parametrize("record, message", [
    ([], "does not hold a JSON object"),
    (dict(JUPYTER, command="rm -rf /"), "unknown fields ['command']"),
    (dict(JUPYTER, name="Jupyter Lab"), "name='Jupyter Lab'"),
    (dict(JUPYTER, launcher="/usr/bin/python3"), "launcher='/usr/bin/python3'"),
    (dict(JUPYTER, launcher="../root/x"), "launcher='../root/x'"),
    (dict(JUPYTER, launcher="bin/x; reboot"), "launcher='bin/x; reboot'"),
    (dict(JUPYTER, probe={"port": 22}), "probe={'port': 22}"),
    (dict(JUPYTER, probe={"port": True}), "probe={'port': True}"),
    (dict(JUPYTER, probe="status"), "probe='status'"),
])
def test_a_record_that_is_not_data_of_the_expected_shape_is_refused(record, message):
    with pytest.raises(ServiceError) as error:
        validate(record)
    assert message in str(error.value)


def test_damaged_records_are_skipped_and_the_others_still_load(tmp_path):
    register(str(tmp_path), JUPYTER)
    records = tmp_path / ".devbox"
    (records / "service-broken.json").write_text("{not json")
    (records / "service-evil.json").write_text(json.dumps(dict(JUPYTER, name="evil", launcher="/bin/sh")))
    (records / "service-other.json").write_text(json.dumps(TENSORBOARD))  # names another service
    user_file = records / "service-users.json"
    user_file.write_text(json.dumps(dict(TENSORBOARD, name="users")))
    os.chown(user_file, 1000, 1000)  # the user's own file: not trusted
    services, problems = load_all(str(tmp_path))
    assert services == [JUPYTER]
    assert len(problems) == 4
    text = "\n".join(problems)
    for name in ("broken", "evil", "other", "users"):
        assert f"service-{name}.json skipped" in text
    assert "not a root-owned file" in text and "launcher='/bin/sh'" in text


def test_a_record_dir_of_the_user_is_not_read(tmp_path):
    register(str(tmp_path), JUPYTER)
    os.chown(tmp_path / ".devbox", 1000, 1000)
    services, problems = load_all(str(tmp_path))
    assert services == [] and "not a root-owned directory" in problems[0]


def test_the_probe_finds_the_users_listening_socket_and_service_pids_its_process(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        service = dict(JUPYTER, probe={"port": port})
        assert probe(service, os.getuid()) == {"healthy": True, "addresses": ["127.0.0.1"]}
        assert probe(service, os.getuid() + 1)["healthy"] is False, "another user's socket is not the service"
        assert service_pids([TENSORBOARD, service], os.getuid()) == [os.getpid()]
        assert service_pids([service], os.getuid() + 1) == []
    assert probe(service, os.getuid())["healthy"] is False
    assert service_pids([service], os.getuid()) == []
    assert devbox_service.file_name("jupyter") == "service-jupyter.json"


def test_idle_stop_does_not_count_a_services_processes_as_use():
    user = 1000
    table = {40: (1, user, "jupyter-lab"), 60: (1, user, "tensorboard"), 61: (60, user, "server"),
             70: (1, user, "bash")}
    assert user_sessions(user, 40, table) == ["tensorboard (60)", "server (61)", "bash (70)"]
    assert user_sessions(user, 40, table, services={60}) == ["bash (70)"]
