"""The devbox_jupyter module's own logic: JupyterLab defaults that leave the user's choices alone."""
import json
import os

from test_module_docs import ROOT, load

jupyter = load(os.path.join(ROOT, "plugins", "modules", "devbox_jupyter.py"))
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def test_news_prompt_is_off_by_default(tmp_path):
    overrides = json.loads(jupyter.lab_overrides_text(str(tmp_path / "absent.json")))
    assert overrides[NOTIFICATION] == {"fetchNews": "false", "checkForUpdates": False}


def test_the_users_own_overrides_are_kept(tmp_path):
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({NOTIFICATION: {"fetchNews": "true"}, "@jupyterlab/x:y": {"z": 1}}))
    overrides = json.loads(jupyter.lab_overrides_text(str(path)))
    assert overrides[NOTIFICATION] == {"fetchNews": "true", "checkForUpdates": False}
    assert overrides["@jupyterlab/x:y"] == {"z": 1}


def test_auto_listens_on_the_fly_private_name_only_on_fly(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\nfdaa::3 fly-local-6pn\n")
    assert jupyter.listen_name("auto", str(hosts)) == "fly-local-6pn"
    hosts.write_text("127.0.0.1 localhost\n")
    assert jupyter.listen_name("auto", str(hosts)) == "127.0.0.1"
    assert jupyter.listen_name("10.0.0.2", str(hosts)) == "10.0.0.2"
