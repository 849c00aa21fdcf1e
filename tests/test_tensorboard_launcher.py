"""The TensorBoard launcher's parts; the real server is exercised by tests/lifecycle/test_tensorboard.py."""
import importlib.util
import json
import os
import socket

import pytest

import devbox_boot
from ansible_collections.devbox.machine.plugins.module_utils import devbox_service_module
from test_module_docs import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
    "devbox_tensorboard_launcher", os.path.join(ROOT, "roles", "tensorboard", "files", "devbox_tensorboard_launcher.py"))
launcher = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(launcher)


@pytest.fixture
def state(tmp_path, monkeypatch):
    for name, file in {"STATE_DIR": "", "SETTINGS_FILE": "settings.json", "PID_FILE": "tensorboard.pid",
                       "LOG_FILE": "tensorboard.log", "LOCK_FILE": "launcher.lock"}.items():
        monkeypatch.setattr(launcher, name, str(tmp_path / file))
    return tmp_path


@pytest.mark.parametrize("ip", ["0.0.0.0", "::", "0", "*", "8.8.8.8"])
def test_it_refuses_all_interfaces_and_public_addresses(state, capsys, ip):
    (state / "settings.json").write_text(json.dumps({"ip": ip, "port": 6006, "logdir": str(state / "runs"),
                                                         "venv": str(state / "no-venv")}))
    assert launcher.main(["start"]) == 1
    assert "refusing to listen on" in json.loads(capsys.readouterr().out)["error"]
    assert not (state / "runs").exists(), "nothing happens before the address is checked"


def test_without_tensorboard_installed_it_says_how_to_get_it(state, capsys):
    (state / "settings.json").write_text(json.dumps({"ip": "127.0.0.1", "port": 6006, "logdir": str(state / "runs"),
                                                         "venv": str(state / "no-venv")}))
    assert launcher.main(["start"]) == 1
    assert "run the playbook with tensorboard_enabled: true" in json.loads(capsys.readouterr().out)["error"]
    assert launcher.main(["status"]) == 3
    assert json.loads(capsys.readouterr().out)["running"] is False


def test_a_stale_pidfile_is_not_a_running_server(state):
    (state / "tensorboard.pid").write_text(f"{os.getpid()} 1\n")  # our pid, another start time: reused
    assert launcher.read_pid(launcher.PID_FILE) is None
    assert launcher.stop() == {"action": "not running", "pid": None}


def test_it_stops_inside_pid_1s_budget():
    assert launcher.STOP_TIMEOUT_S < devbox_boot.STOP_BUDGET_S


def test_other_venv_and_project_dirs_reach_the_launcher_through_its_settings(tmp_path, monkeypatch, capsys):
    module = load(os.path.join(ROOT, "plugins", "modules", "devbox_tensorboard.py"))
    installed_into = []
    monkeypatch.setattr(devbox_service_module, "converge", lambda params: installed_into.append(params["path"]) or
                        {"changed": False, "installed": []})
    monkeypatch.setattr(devbox_service_module, "run_launcher", lambda path, action: (0, {"action": "started"}))
    with socket.socket() as probe:  # a port nobody listens on, so the launcher reaches its venv
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = module.provision({"home": str(tmp_path), "venv_dir": ".venvs/main", "project_dir": "work/src",
                               "spec": "tensorboard", "min_free_mb": 0, "ip": "127.0.0.1", "port": port,
                               "launcher_source": "#!/bin/sh\n", "listen": "127.0.0.1", "libraries_changed": False},
                              dry_run=False)
    assert installed_into == [f"{tmp_path}/.venvs/main"] and result["logdir"] == f"{tmp_path}/work/src/runs"
    for name, file in {"SETTINGS_FILE": module.SETTINGS, "PID_FILE": "tb.pid", "LOG_FILE": "tb.log",
                       "LOCK_FILE": "tb.lock"}.items():
        monkeypatch.setattr(launcher, name, str(tmp_path / file))
    assert launcher.main(["start"]) == 1
    assert f"{tmp_path}/.venvs/main/bin/tensorboard" in json.loads(capsys.readouterr().out)["error"]
    assert launcher.load_settings()["logdir"] == f"{tmp_path}/work/src/runs"
