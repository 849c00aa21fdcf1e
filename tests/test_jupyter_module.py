"""The devbox_jupyter module's own logic."""
import json
import os
import socket

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_service_module
from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_name
from test_module_docs import ROOT, load

jupyter = load(os.path.join(ROOT, "plugins", "modules", "devbox_jupyter.py"))


def test_auto_listens_on_the_fly_private_name_only_on_fly(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\nfdaa::3 fly-local-6pn\n")
    assert listen_name("auto", str(hosts)) == "fly-local-6pn"
    hosts.write_text("127.0.0.1 localhost\n")
    assert listen_name("auto", str(hosts)) == "127.0.0.1"
    assert listen_name("10.0.0.2", str(hosts)) == "10.0.0.2"


def test_other_venv_and_project_dirs_reach_the_server_config_and_the_launcher(tmp_path, monkeypatch):
    import devbox_jupyter_launcher as launcher
    home = tmp_path
    calls = []
    monkeypatch.setattr(devbox_service_module, "converge", lambda params: calls.append(params["path"]) or
                        {"changed": False, "installed": [], "upgraded": []})
    monkeypatch.setattr(devbox_service_module, "run_launcher", lambda path, action: (0, {"action": "started"}))
    token = "t" * 40
    with socket.socket() as probe:  # a port nobody listens on, so the launcher reaches its venv
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = {"home": str(home), "venv_dir": ".venvs/main", "project_dir": "work/src", "lab_spec": "jupyterlab",
              "min_free_mb": 0, "ip": "127.0.0.1", "port": port, "token": token, "launcher_source": "#!/bin/sh\n",
              "server_settings": {}, "listen": "127.0.0.1", "libraries_changed": False}
    jupyter.provision(params, dry_run=False)
    assert calls == [f"{home}/.venvs/main"], "JupyterLab goes into the venv named by venv_dir"
    with open(home / ".jupyter" / "jupyter_server_config.json") as config:
        assert json.load(config)["ServerApp"]["root_dir"] == f"{home}/work/src"
    # The real launcher, reading what the module wrote, starts the server from those directories.
    for name, value in {"CONFIG_DIR": home / ".jupyter", "CONFIG_FILE": home / ".jupyter" / "jupyter_server_config.json",
                        "TOKEN_FILE": home / ".jupyter" / "devbox_token", "PID_FILE": home / ".jupyter" / "x.pid",
                        "LOG_FILE": home / ".jupyter" / "x.log", "LOCK_FILE": home / ".jupyter" / "x.lock",
                        "DIRS_FILE": home / jupyter.DIRS_FILE}.items():
        monkeypatch.setattr(launcher, name, str(value))
    assert launcher.load_dirs() == (f"{home}/.venvs/main", f"{home}/work/src")
    with pytest.raises(launcher.LauncherError, match=f"{home}/.venvs/main/bin/jupyter is missing"):
        launcher.start()
