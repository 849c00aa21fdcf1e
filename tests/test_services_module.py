"""The devbox_services module's own pieces: Jupyter's server settings, the check of the one launcher's answer,
the per-service launchers of earlier versions retired, and one provisioning pass with the launcher and the
venv stood in for (the real ones run in tests/test_launcher.py and the lifecycle tests)."""
import json
import os
import sys

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_address
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_name
from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError, normalize
from test_module_docs import ROOT, load

services = load(os.path.join(ROOT, "plugins", "modules", "devbox_services.py"))


def test_auto_listens_on_the_machines_private_ipv4_on_fly_else_on_loopback(tmp_path, monkeypatch):
    """On a Fly Machine, where Fly Proxy (Flycast) reaches it: the default route's interface's private IPv4,
    by a name that stands for it wherever it is read (devbox_address.PRIVATE_IPV4_NAME)."""
    hosts, routes = tmp_path / "hosts", tmp_path / "route"
    hosts.write_text("127.0.0.1 localhost\nfdaa::3 fly-local-6pn\n")
    routes.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                      "eth0\t000013AC\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
                      "eth0\t00000000\t011513AC\t0003\t0\t0\t0\t00000000\n")
    monkeypatch.setattr(devbox_address, "interface_ipv4", {"eth0": "172.19.21.2"}.get)
    assert listen_name("auto", str(hosts), str(routes)) == "fly-private-ipv4", "found again at every start"
    monkeypatch.setattr(devbox_address, "interface_ipv4", lambda interface: None)
    assert listen_name("auto", str(hosts), str(routes)) == "fly-local-6pn", "no IPv4: the 6PN name, as before"
    hosts.write_text("127.0.0.1 localhost\n")
    assert listen_name("auto", str(hosts), str(routes)) == "127.0.0.1"
    assert listen_name("10.0.0.2", str(hosts)) == "10.0.0.2"


def test_jupyter_config_is_the_modules_own_with_the_settings_merged_over_it():
    own = {"ServerApp": {"ip": "fly-local-6pn", "port": 9000, "port_retries": 0, "open_browser": False,
                         "root_dir": "/home/u/project", "allow_remote_access": True}}
    assert services.jupyter_config("/home/u/project", "fly-local-6pn", 9000, {}) == own
    settings = {"ServerApp": {"iopub_data_rate_limit": 1e9, "open_browser": True},
                "MappingKernelManager": {"cull_idle_timeout": 3600}}
    merged = services.jupyter_config("/home/u/project", "fly-local-6pn", 9000, settings)
    assert merged["ServerApp"] == dict(own["ServerApp"], iopub_data_rate_limit=1e9, open_browser=True)
    assert merged["MappingKernelManager"] == {"cull_idle_timeout": 3600}


def answering(home, stdout, code=0):
    """A stand-in for the one launcher at the path the module runs: prints stdout, exits with code."""
    path = home / ".devbox" / services.LAUNCHER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"import sys\nsys.stdout.write({stdout!r})\nsys.exit({code})\n")


@pytest.mark.parametrize("answer", [
    {"name": "web", "action": "started", "pid": 42, "url": "http://127.0.0.1:8501/", "healthy": True},
    {"name": "web", "action": "stopped", "pid": None},
    {"error": "refusing to listen on '0.0.0.0'"},
])
def test_a_launcher_answer_of_the_expected_types_is_taken(tmp_path, answer):
    answering(tmp_path, json.dumps(answer))
    assert services.launcher(str(tmp_path), "web", "start") == answer


@pytest.mark.parametrize("stdout", [
    '{"action": "started", "pid": true}',
    '{"action": "started", "pid": "42"}',
    '{"action": "started", "pid": 4.2}',
    '{"action": ["started"]}',
    '{"error": {"text": "x"}}',
    '{"url": 5}',
    '{"healthy": "yes"}',
    '{"healthy": 1}',
])
def test_a_launcher_answer_with_a_field_of_the_wrong_type_is_an_error(tmp_path, stdout):
    answering(tmp_path, stdout)
    answer = services.launcher(str(tmp_path), "web", "start")
    assert answer == {"error": f"the launcher's answer has fields of the wrong type: {stdout!r}"}


def test_a_pid_of_false_is_of_the_wrong_type(tmp_path):
    answering(tmp_path, '{"action": "started", "pid": false}')
    assert "error" in services.launcher(str(tmp_path), "web", "start")


@pytest.mark.parametrize("stdout, code, said", [
    ("Traceback (most recent call last): boom", 1, "the launcher exited with 1: 'Traceback (most recent call last): "
                                                  "boom'"),
    ('["started"]', 0, "the launcher exited with 0: '[\"started\"]'"),
    ("", 2, "the launcher exited with 2: ''"),
])
def test_a_launcher_answer_that_is_no_json_object_is_an_error_with_what_came_back(tmp_path, stdout, code, said):
    answering(tmp_path, stdout, code)
    assert services.launcher(str(tmp_path), "web", "start") == {"error": said}


def test_without_the_launcher_the_answer_is_an_error(tmp_path):
    assert services.launcher(str(tmp_path), "web", "status")["error"].startswith("the launcher exited with 2: ")


def test_the_old_launchers_go_tensorboards_server_stopped_and_jupyters_left_to_be_taken_over(tmp_path):
    log = tmp_path / "asked"
    for name, old in services.OLD_LAUNCHERS.items():
        path = tmp_path / old
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n")
        path.chmod(0o755)
    services.retire_old_launchers(str(tmp_path))
    assert log.read_text() == "tensorboard stop\n", "Jupyter keeps running (with its kernels) until taken over"
    assert not any((tmp_path / old).exists() for old in services.OLD_LAUNCHERS.values())
    services.retire_old_launchers(str(tmp_path))  # nothing left: nothing to do


@pytest.fixture
def stand_ins(monkeypatch):
    """The venv's converge and the one launcher, recorded; the launcher answers as asked in answers."""
    calls = {"converge": [], "launcher": [], "answers": {}}

    def converge(params):
        calls["converge"].append((params["path"], params["requirements"]))
        calls.setdefault("settings", []).append(params["settings"])
        return {"changed": False, "installed": [], "upgraded": []}

    def launcher(home, name, command):
        calls["launcher"].append((name, command))
        return calls["answers"].get((name, command), {"action": "started", "pid": 7, "url": "u"})

    monkeypatch.setattr(services, "converge", converge)
    monkeypatch.setattr(services, "launcher", launcher)
    # Jupyter's own view of its kernels (PID 1's idle stop asks the same): none serving unless a test says so.
    monkeypatch.setattr(services, "jupyter_activity", lambda home: calls.get("activity"))
    return calls


def provision_params(home, **changes):
    jupyter = normalize({"name": "jupyter", "port": 8888, "command": ["jupyter", "lab"], "packages": ["jupyterlab"],
                         "venv": "own"})
    web = normalize({"name": "web", "port": 8501, "command": ["python3", "-m", "http.server", "{port}"]})
    return dict({"home": str(home), "venv_dir": ".venvs/main", "project_dir": "work/src", "services": [jupyter, web],
                 "service_venvs_dir": ".local/venvs",
                 "listen": {"jupyter": "127.0.0.1", "web": "127.0.0.1"}, "removed": [], "record_changed": [],
                 "record_new": [], "jupyter_token": "t" * 40, "jupyter_server_settings": {}, "min_free_mb": 0,
                 "pending": {}, "jupyter_restart": "idle"},
                **changes)


def test_other_venv_and_project_dirs_reach_the_packages_and_jupyters_settings(tmp_path, stand_ins):
    main = tmp_path / ".venvs" / "main"
    main.mkdir(parents=True)
    (main / "devbox-installer.json").write_text('{"installer": "pip", "index_url": "https://mirror.example/simple"}')
    result = services.provision(provision_params(tmp_path, removed=["old"]), dry_run=False)
    assert stand_ins["converge"] == [(f"{tmp_path}/.local/venvs/jupyter", ["jupyterlab"])], \
        "only listed packages install, into the venv of Jupyter's own"
    assert stand_ins["settings"] == [{"installer": "pip", "index_url": "https://mirror.example/simple"}], \
        "with the project venv's installer settings"
    # Jupyter's settings were written on this pass: it restarts to read them (a stop of nothing, then a start).
    assert stand_ins["launcher"] == [("old", "stop"), ("jupyter", "restart"), ("web", "start")]
    config = json.loads((tmp_path / services.JUPYTER_CONFIG).read_text())
    assert config["ServerApp"]["root_dir"] == f"{tmp_path}/work/src" and config["ServerApp"]["port"] == 8888
    assert (tmp_path / ".jupyter" / "devbox_token").read_text() == "t" * 40
    assert result["token"] == "t" * 40 and result["changed"] is True
    assert result["services"]["web"]["listen"] == "127.0.0.1" and result["services"]["old"]["action"] == "started"
    command = tmp_path / services.COMMAND
    assert os.access(command, os.X_OK) and f'"$HOME/.devbox/{services.LAUNCHER}" "$@"' in command.read_text()
    lab = tmp_path / ".local/venvs/jupyter/share/jupyter/lab/settings/overrides.d/devbox.json"
    assert json.loads(lab.read_text()) == services.LAB_DEFAULTS
    kernel = json.loads((tmp_path / services.KERNEL_SPEC).read_text())
    assert kernel["argv"][:3] == [f"{main}/bin/python", "-m", "ipykernel_launcher"], "the project venv's interpreter"
    assert kernel["display_name"] == "Python (project)"


def test_a_changed_record_restarts_its_service_unless_it_says_not_to(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    params = provision_params(tmp_path, record_changed=["web"])
    services.provision(params, dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "start"), ("web", "restart")]
    stand_ins["launcher"].clear()
    params["services"][1]["restart_on_change"] = False
    services.provision(params, dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "start"), ("web", "start")]


def test_changed_jupyter_settings_restart_jupyter(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    services.provision(provision_params(tmp_path, jupyter_server_settings={"ServerApp": {"x": 1}}), dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "restart"), ("web", "start")]


def test_a_launcher_error_names_the_service(tmp_path, stand_ins):
    stand_ins["answers"][("web", "start")] = {"error": "port taken"}
    with pytest.raises(ServiceError, match="^web: port taken$"):
        services.provision(provision_params(tmp_path), dry_run=False)


def test_a_dry_run_changes_nothing_and_says_what_would_happen(tmp_path, stand_ins, monkeypatch):
    monkeypatch.setattr(services, "plan", lambda params: {"changed": True, "installed": ["jupyterlab"], "upgraded": []})
    stand_ins["answers"][("web", "status")] = {"healthy": True}
    result = services.provision(provision_params(tmp_path, record_new=["jupyter"], removed=["old"]), dry_run=True)
    assert {name: outcome["action"] for name, outcome in result["services"].items()} == \
        {"old": "would stop", "jupyter": "would start", "web": None}
    assert stand_ins["launcher"] == [("web", "status")] and stand_ins["converge"] == []
    assert os.listdir(tmp_path) == [], "nothing was written"


def busy(calls, kernels=1, pid=7):
    calls["activity"] = {"pid": pid, "busy_kernels": [f"Untitled{number}.ipynb" for number in range(kernels)],
                         "connections": 0, "terminals": 0, "last_activity": 0}
    for name in ("jupyter", "web"):
        calls["answers"][(name, "start")] = {"action": "already running", "pid": pid, "url": "u"}


def test_a_busy_kernel_puts_off_jupyters_restart_and_the_run_says_why(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    busy(stand_ins)
    result = services.provision(provision_params(tmp_path, jupyter_server_settings={"ServerApp": {"x": 1}}),
                                dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "start"), ("web", "start")], "never a restart while busy"
    jupyter = result["services"]["jupyter"]
    assert jupyter["action"] == "restart pending" and jupyter["changed"] is False
    assert jupyter["reason"] == "Jupyter's settings changed; not now: 1 kernel busy"
    assert result["pending"] == {"jupyter": {"reasons": ["Jupyter's settings changed"], "pid": 7}}
    assert result["changed"] is True, "the settings were written"


def test_jupyter_restart_now_restarts_jupyter_busy_kernels_and_all(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    busy(stand_ins, kernels=2)
    result = services.provision(provision_params(tmp_path, jupyter_server_settings={"ServerApp": {"x": 1}},
                                                 jupyter_restart="now"), dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "restart"), ("web", "start")]
    assert result["services"]["jupyter"]["action"] == "restarted" and result["pending"] == {}
    assert result["services"]["jupyter"]["reason"] == "Jupyter's settings changed"


def test_a_pending_restart_happens_on_the_next_run_with_no_kernel_busy(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    earlier = {"jupyter": {"reasons": ["Jupyter's settings changed"], "pid": 7}}
    busy(stand_ins)
    still = services.provision(provision_params(tmp_path, pending=earlier), dry_run=False)
    assert still["pending"] == earlier and still["services"]["jupyter"]["action"] == "restart pending"
    assert still["changed"] is False, "nothing new: the restart still waits"
    stand_ins["launcher"].clear()
    busy(stand_ins, kernels=0)
    result = services.provision(provision_params(tmp_path, pending=earlier), dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "restart"), ("web", "start")] and result["pending"] == {}
    assert result["services"]["jupyter"]["reason"] == "Jupyter's settings changed"


def test_a_pending_restart_is_settled_by_a_restart_in_between(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    busy(stand_ins, pid=99)  # another server than the one spared: it read the settings when it started
    result = services.provision(provision_params(tmp_path, pending={"jupyter": {"reasons": ["x"], "pid": 7}}),
                                dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "start"), ("web", "start")] and result["pending"] == {}


def test_a_restart_stays_pending_while_jupyter_cannot_be_asked(tmp_path, stand_ins, monkeypatch):
    services.provision(provision_params(tmp_path), dry_run=False)
    stand_ins["launcher"].clear()
    busy(stand_ins)

    def unanswered(home):
        raise OSError("timed out")

    monkeypatch.setattr(services, "jupyter_activity", unanswered)
    earlier = {"jupyter": {"reasons": ["its packages changed"], "pid": 7}}
    result = services.provision(provision_params(tmp_path, pending=earlier), dry_run=False)
    assert stand_ins["launcher"] == [("jupyter", "start"), ("web", "start")] and result["pending"] == earlier
    assert result["services"]["jupyter"]["reason"].endswith(
        "not now: Jupyter could not be asked whether a kernel is busy (timed out)")


def test_a_dry_run_says_a_busy_kernel_would_put_off_the_restart(tmp_path, stand_ins):
    services.provision(provision_params(tmp_path), dry_run=False)
    busy(stand_ins)
    stand_ins["answers"][("jupyter", "status")] = {"healthy": True}
    stand_ins["answers"][("web", "status")] = {"healthy": True}
    result = services.provision(provision_params(tmp_path, jupyter_server_settings={"ServerApp": {"x": 1}}),
                                dry_run=True)
    assert result["services"]["jupyter"]["action"] == "would wait to restart" and result["pending"] == {}


def test_the_run_says_which_of_jupyters_settings_changed(tmp_path, stand_ins):
    first = services.provision(provision_params(tmp_path), dry_run=False)
    assert first["settings"] == [f"~/{services.JUPYTER_CONFIG}: written", f"Jupyter's token: {services.MASK}",
                                 "the kernel Python (project): written",
                                 "JupyterLab's defaults (no news from the internet): written"]
    settings = {"ServerApp": {"iopub_data_rate_limit": 10000000}, "MappingKernelManager": {"cull_idle_timeout": 60}}
    planned = services.provision(provision_params(tmp_path, jupyter_server_settings=settings), dry_run=True)
    done = services.provision(provision_params(tmp_path, jupyter_server_settings=settings), dry_run=False)
    assert planned["settings"] == done["settings"] == [
        "MappingKernelManager: (unset) -> {\"cull_idle_timeout\": 60}",
        "ServerApp.iopub_data_rate_limit: (unset) -> 10000000"]
    assert services.provision(provision_params(tmp_path, jupyter_server_settings=settings), dry_run=False)[
        "settings"] == []


def test_a_setting_named_for_a_secret_is_masked():
    before = {"ServerApp": {"x": 1, "ssl_options": {"keyfile": "/a", "ciphers": "A"}}}
    after = {"ServerApp": {"x": 2, "ssl_options": {"keyfile": "/b", "ciphers": "B"}}}
    assert services.setting_changes(before, after) == [
        'ServerApp.ssl_options.ciphers: "A" -> "B"',
        f"ServerApp.ssl_options.keyfile: {services.MASK} -> {services.MASK}",
        "ServerApp.x: 1 -> 2"]


def test_a_new_service_that_does_not_run_yet_is_started_not_restarted(tmp_path, stand_ins):
    stand_ins["answers"][("jupyter", "status")] = {"pid": None, "healthy": False}
    result = services.provision(provision_params(tmp_path, record_new=["jupyter", "web"]), dry_run=False)
    assert ("jupyter", "start") in stand_ins["launcher"] and ("jupyter", "restart") not in stand_ins["launcher"]
    assert result["services"]["jupyter"]["action"] == "started" and result["services"]["jupyter"]["reason"] == "new"
