"""Services as data: the entry's shape (devbox_service.normalize, normalize_all), the placeholders, and
the records in root's ~/.devbox (validated data; a damaged one is skipped with its reason)."""
import json
import os
import socket

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_service
from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import user_activity
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import (
    ServiceError, expand, load, load_all, normalize, normalize_all, probe, record, record_names, register,
    service_pids, unregister, validate_record)

STREAMLIT = {"name": "streamlit", "port": 8501,
             "command": ["streamlit", "hello", "--server.port", "{port}", "--server.address", "{ip}"]}


def add_record(home, name, port, **fields):
    """Register a service (as the module does: an entry, normalized, made a record) into a home; the record."""
    entry = dict({"name": name, "port": port, "command": ["python3", "-m", "http.server", "{port}",
                                                          "--bind", "{ip}"]}, **fields)
    kept = record(normalize(entry), str(home), "venv", "project", "services")
    register(str(home), kept)
    return kept


# --- the entry ---

def test_an_entry_gets_every_field_with_its_default():
    assert normalize(STREAMLIT) == dict(STREAMLIT, packages=[], ip="auto", health=None, counts_as_use=False,
                                        restart_on_change=True, env={}, url_path="/", cwd="{project}",
                                        enabled=True, venv="project")


def test_defaults_are_copies_not_shared():
    first, second = normalize(STREAMLIT), normalize(STREAMLIT)
    first["env"]["X"] = "1"
    first["packages"].append("streamlit")
    assert second["env"] == {} and second["packages"] == [] and devbox_service.FIELDS["env"][1] == {}


def test_a_templated_port_arrives_as_text_and_is_taken_as_a_number():
    assert normalize(dict(STREAMLIT, port="8502"))["port"] == 8502


@pytest.mark.parametrize("field", ["name", "port", "command"])
def test_name_port_and_command_are_required(field):
    entry = {key: value for key, value in STREAMLIT.items() if key != field}
    with pytest.raises(ServiceError, match=f"needs a {field}"):
        normalize(entry)


@pytest.mark.parametrize("entry, message", [
    ("streamlit", "must be a mapping with name, port and command"),
    (dict(STREAMLIT, launcher="/bin/sh"), "unknown fields ['launcher']"),
    (dict(STREAMLIT, port=True), "port=True has the wrong type"),
    (dict(STREAMLIT, port="80x"), "port='80x' has the wrong type"),
    (dict(STREAMLIT, port=8501.0), "has the wrong type"),
    (dict(STREAMLIT, command="streamlit hello"), "command='streamlit hello' has the wrong type"),
    (dict(STREAMLIT, packages="streamlit"), "packages='streamlit' has the wrong type"),
    (dict(STREAMLIT, counts_as_use="yes"), "counts_as_use='yes' has the wrong type"),
    (dict(STREAMLIT, enabled=1), "enabled=1 has the wrong type"),
    (dict(STREAMLIT, env=["A=1"]), "has the wrong type"),
    (dict(STREAMLIT, health=5), "health=5 has the wrong type"),
    (dict(STREAMLIT, name="Stream Lit"), "name='Stream Lit' must be 1-32 lower-case letters"),
    (dict(STREAMLIT, name="1st"), "must be 1-32 lower-case letters"),
    (dict(STREAMLIT, name="a" * 33), "must be 1-32 lower-case letters"),
    (dict(STREAMLIT, name="../x"), "must be 1-32 lower-case letters"),
    (dict(STREAMLIT, port=22), "port=22 must be a number from 1024 to 65535"),
    (dict(STREAMLIT, port=65536), "must be a number from 1024 to 65535"),
    (dict(STREAMLIT, command=[]), "command must be a list of words"),
    (dict(STREAMLIT, command=["streamlit", ""]), "command must be a list of words"),
    (dict(STREAMLIT, command=["streamlit", 5]), "command must be a list of words"),
    (dict(STREAMLIT, packages=[""]), "packages must be a list of requirement specifiers"),
    (dict(STREAMLIT, health="healthz"), "health='healthz' must be a URL path starting with '/'"),
    (dict(STREAMLIT, url_path="/a b"), "url_path='/a b' must be a URL path"),
    (dict(STREAMLIT, cwd=""), "cwd='' must be a folder"),
    (dict(STREAMLIT, env={"1X": "a"}), "env must map variable names"),
    (dict(STREAMLIT, env={"X": 1}), "env must map variable names"),
    (dict(STREAMLIT, env={"X": "a\0b"}), "env must map variable names"),
    (dict(STREAMLIT, ip=""), "ip='' must be an address or a host name"),
])
def test_an_entry_of_the_wrong_shape_is_refused_naming_the_field(entry, message):
    with pytest.raises(ServiceError) as error:
        normalize(entry)
    assert message in str(error.value)


def test_the_message_names_the_service_and_where_it_came_from():
    with pytest.raises(ServiceError, match=r"^jupyter_service 'jupyter': port=80 "):
        normalize({"name": "jupyter", "port": 80, "command": ["jupyter"]}, "jupyter_service")


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "\x1b[31m", "a\x7fb", "a\tb", "\0"])
@pytest.mark.parametrize("field", ["command", "packages", "health", "url_path", "cwd", "ip"])
def test_control_characters_are_refused_in_every_text_field(field, bad):
    value = {"command": ["streamlit", bad], "packages": [bad], "health": "/" + bad, "url_path": "/" + bad,
             "cwd": bad, "ip": bad}[field]
    with pytest.raises(ServiceError, match=field):
        normalize(dict(STREAMLIT, **{field: value}))


def test_overlong_text_is_refused():
    with pytest.raises(ServiceError, match="command"):
        normalize(dict(STREAMLIT, command=["x" * (devbox_service.MAX_TEXT + 1)]))


def test_names_and_ports_are_unique_and_disabled_entries_are_left_out():
    other = dict(STREAMLIT, name="other", port=8600)
    assert [service["name"] for service in normalize_all([STREAMLIT, other])] == ["streamlit", "other"]
    with pytest.raises(ServiceError, match="two services are named 'streamlit'"):
        normalize_all([STREAMLIT, dict(STREAMLIT, port=8600)])
    with pytest.raises(ServiceError, match="two services are named 'streamlit'"):
        normalize_all([STREAMLIT, dict(STREAMLIT, port=8600, enabled=False)])
    with pytest.raises(ServiceError, match="services 'streamlit' and 'other' both want port 8501"):
        normalize_all([STREAMLIT, dict(other, port=8501)])
    assert normalize_all([STREAMLIT, dict(other, port=8501, enabled=False)]) == [normalize(STREAMLIT)]
    with pytest.raises(ServiceError, match="must be a list of entries"):
        normalize_all({"name": "streamlit"})


def test_placeholders_are_filled_in_and_other_braces_left_alone():
    values = {"ip": "10.0.0.2", "port": 8501, "home": "/home/u", "venv": "/home/u/venv", "project": "/home/u/p"}
    assert expand("{venv}/bin/x --port={port} --ip {ip} {home} {project}", values) == \
        "/home/u/venv/bin/x --port=8501 --ip 10.0.0.2 /home/u /home/u/p"
    assert expand('{"a": {port}} {user} {{ip}}', values) == '{"a": 8501} {user} {10.0.0.2}'


# --- the records ---

def test_a_record_drops_packages_and_enabled_and_resolves_the_layout():
    kept = record(normalize(dict(STREAMLIT, packages=["streamlit"])), "/home/u", ".venvs/main", "work/src", "svc")
    assert set(kept) == devbox_service.RECORD_FIELDS
    assert "packages" not in kept and "enabled" not in kept
    assert (kept["venv"], kept["project"]) == ("/home/u/.venvs/main", "/home/u/work/src")
    assert kept["project_venv"] == "/home/u/.venvs/main", "a user's service runs from the project venv by default"
    # Read back, a record is an entry again (packages and enabled at their defaults) with its layout.
    assert validate_record(kept, "here") == dict(kept, packages=[], enabled=True)


def test_a_service_with_a_venv_of_its_own_runs_from_it_and_still_knows_the_project_venv():
    kept = record(normalize(dict(STREAMLIT, venv="own")), "/home/u", "project-venv", "project", ".local/venvs")
    assert (kept["venv"], kept["project_venv"]) == ("/home/u/.local/venvs/streamlit", "/home/u/project-venv")
    assert validate_record(kept, "here")["venv"] == "/home/u/.local/venvs/streamlit"


def test_a_venv_choice_other_than_project_or_own_is_refused():
    with pytest.raises(ServiceError, match="venv='/opt/venv' must be 'project'"):
        normalize(dict(STREAMLIT, venv="/opt/venv"))


def test_a_record_of_the_version_before_own_venvs_reads_as_running_from_the_project_venv():
    """A machine's records from before the split: PID 1 and the launcher keep using them until the next run,
    which sees the service move to its own venv (a changed record: it restarts there)."""
    new = record(normalize(dict(STREAMLIT, venv="own")), "/home/u", "project-venv", "project", "svc")
    old = {key: value for key, value in new.items() if key != "project_venv"}
    old["venv"] = "/home/u/project-venv"
    read = validate_record(old, "old")
    assert read["venv"] == read["project_venv"] == "/home/u/project-venv"
    assert read != validate_record(new, "new")


def test_registered_services_are_read_back_sorted_by_name(tmp_path):
    tensorboard = record(normalize({"name": "tensorboard", "port": 6006, "command": ["tensorboard"]}),
                         str(tmp_path), "venv", "project", "services")
    jupyter = record(normalize({"name": "jupyter", "port": 8888, "command": ["jupyter", "lab"]}),
                     str(tmp_path), "venv", "project", "services")
    assert register(str(tmp_path), tensorboard) is True
    assert register(str(tmp_path), jupyter) is True
    assert register(str(tmp_path), jupyter) is False, "an unchanged record is not rewritten"
    as_loaded = [validate_record(kept, "here") for kept in (jupyter, tensorboard)]
    assert load_all(str(tmp_path)) == (as_loaded, [])
    assert load(str(tmp_path), "jupyter") == as_loaded[0]
    assert sorted(record_names(str(tmp_path))) == ["jupyter", "tensorboard"]
    stored = tmp_path / ".devbox" / "service-jupyter.json"
    assert (stored.stat().st_uid, stored.stat().st_mode & 0o777) == (0, 0o644)
    assert json.loads(stored.read_text()) == jupyter


def test_a_dry_run_writes_nothing(tmp_path):
    kept = record(normalize(STREAMLIT), str(tmp_path), "venv", "project", "services")
    assert register(str(tmp_path), kept, dry_run=True) is True
    assert not (tmp_path / ".devbox").exists()


def test_a_record_that_is_not_valid_is_not_registered(tmp_path):
    kept = record(normalize(STREAMLIT), str(tmp_path), "venv", "project", "services")
    with pytest.raises(ServiceError, match="not a service record of this version"):
        register(str(tmp_path), dict(kept, packages=[]))
    with pytest.raises(ServiceError, match="port=22"):
        register(str(tmp_path), dict(kept, port=22))
    assert not (tmp_path / ".devbox" / "service-streamlit.json").exists()


def test_a_removed_service_is_unregistered(tmp_path):
    add_record(tmp_path, "gone", 8600)
    assert unregister(str(tmp_path), "gone", dry_run=True) is True
    assert (tmp_path / ".devbox" / "service-gone.json").exists(), "a dry run removes nothing"
    assert unregister(str(tmp_path), "gone") is True
    assert unregister(str(tmp_path), "gone") is False
    assert load_all(str(tmp_path)) == ([], [])
    with pytest.raises(ServiceError, match="the service 'gone' is not registered"):
        load(str(tmp_path), "gone")


@pytest.mark.parametrize("change, message", [
    ({"venv": "venv"}, "venv, project and project_venv must be absolute paths"),
    ({"project": "/p\nq"}, "venv, project and project_venv must be absolute paths"),
    ({"command": "rm -rf /"}, "command='rm -rf /' has the wrong type"),
    ({"port": 22}, "port=22"),
    ({"extra": 1}, "not a service record of this version"),
])
def test_a_record_that_is_not_data_of_the_expected_shape_is_refused(tmp_path, change, message):
    kept = record(normalize(STREAMLIT), str(tmp_path), "venv", "project", "services")
    with pytest.raises(ServiceError) as error:
        validate_record(dict(kept, **change), "the record")
    assert message in str(error.value)
    with pytest.raises(ServiceError, match="not a service record of this version"):
        validate_record([], "the record")


def test_damaged_records_are_skipped_and_the_others_still_load(tmp_path):
    good = add_record(tmp_path, "good", 8600)
    records = tmp_path / ".devbox"
    (records / "service-broken.json").write_text("{not json")
    (records / "service-evil.json").write_text(json.dumps(dict(good, name="evil", command="/bin/sh")))
    (records / "service-other.json").write_text(json.dumps(good))  # names another service
    user_file = records / "service-users.json"
    user_file.write_text(json.dumps(dict(good, name="users")))
    os.chown(user_file, 1000, 1000)  # the user's own file: not trusted
    services, problems = load_all(str(tmp_path))
    assert services == [validate_record(good, "here")]
    assert len(problems) == 4 and all(problem.startswith("skipped: ") for problem in problems)
    text = "\n".join(problems)
    for name in ("broken", "evil", "other", "users"):
        assert f"service-{name}.json" in text
    assert "not a root-owned file" in text and "command='/bin/sh'" in text and "names the service 'good'" in text


def test_a_record_dir_of_the_user_is_not_read(tmp_path):
    add_record(tmp_path, "good", 8600)
    os.chown(tmp_path / ".devbox", 1000, 1000)
    services, problems = load_all(str(tmp_path))
    assert services == [] and "not a root-owned directory" in problems[0]


def test_the_probe_finds_the_users_listening_socket_and_service_pids_its_process():
    idle = normalize({"name": "idle", "port": 6006, "command": ["x"]})
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        service = normalize({"name": "here", "port": port, "command": ["x"]})
        assert probe(service, os.getuid()) == {"healthy": True, "addresses": ["127.0.0.1"]}
        assert probe(service, os.getuid() + 1)["healthy"] is False, "another user's socket is not the service"
        assert service_pids([idle, service], os.getuid()) == [os.getpid()]
        assert service_pids([service], os.getuid() + 1) == []
    assert probe(service, os.getuid())["healthy"] is False
    assert service_pids([service], os.getuid()) == []
    assert devbox_service.file_name("jupyter") == "service-jupyter.json"


def test_listening_sockets_reads_ipv6_and_mapped_addresses():
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert [(address, uid) for address, uid, _ in devbox_service.listening_sockets(port)] == [("::1", os.getuid())]
    assert devbox_service._proc_address("0100007F") == "127.0.0.1"
    assert devbox_service._proc_address("0000000000000000FFFF00000100007F") == "127.0.0.1"


def test_idle_stop_does_not_count_a_services_processes_as_use():
    user = 1000
    table = {40: (1, user, "jupyter-lab"), 60: (1, user, "tensorboard"), 61: (60, user, "server"),
             70: (1, user, "bash")}
    assert user_activity(user, "u", 40, table)["sessions"] == [
        "processes of u outside Jupyter: tensorboard (60), server (61), bash (70)"]
    assert user_activity(user, "u", 40, table, services={60})["sessions"] == ["processes of u outside Jupyter: bash (70)"]
