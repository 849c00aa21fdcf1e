"""The built collection stands on its own: `ansible-galaxy collection build` at the top of the
repository, `ansible-galaxy collection install` of that artifact into an empty collections path
(offline: it declares no dependencies), then a three-line playbook naming its roles by full name
turns a fresh machine into one where Jupyter answers with its token.

The playbook runs outside the repository, without its ansible.cfg (no library or action plugin
paths) and with only the temporary collections path, so every module, module_utils file and action
the roles use must come from the installed artifact.
"""
import glob
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from docker_machines import ROOT, TEST_IMAGE, LocalMachine, free_port, fresh, tagged
from docker_host import CA_IN_CONTAINER

BIN = os.path.dirname(sys.executable)
NAME = tagged("devbox-coll-collection")
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  roles: [devbox.machine.dev_user, devbox.machine.python_env, devbox.machine.jupyter]
"""


def plain_ansible_env(collections: str, config: str) -> dict:
    """The caller's environment without any ANSIBLE_* setting, plus the one collections path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return dict(env, ANSIBLE_CONFIG=config, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1")


def galaxy(*args: str, cwd: str) -> str:
    result = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def installed(tmp_path) -> str:
    """The collections path holding devbox.machine, installed from the artifact just built."""
    galaxy("build", ROOT, "--output-path", str(tmp_path / "dist"), cwd=str(tmp_path))
    [artifact] = glob.glob(str(tmp_path / "dist" / "devbox-machine-*.tar.gz"))
    collections = str(tmp_path / "collections")
    # --force: a devbox.machine already in ~/.ansible/collections must not stand in for this artifact.
    galaxy("install", "--offline", "--force", artifact, "-p", collections, cwd=str(tmp_path))
    return collections


@pytest.fixture
def machine():
    with fresh(LocalMachine(name=NAME, volume=f"{NAME}-home", image=TEST_IMAGE, port=free_port())) as machine:
        yield machine


def test_the_artifact_holds_the_roles_and_plugins_and_nothing_of_the_repository(installed):
    root = os.path.join(installed, "ansible_collections", "devbox", "machine")
    files = json.load(open(os.path.join(root, "FILES.json")))["files"]
    names = {entry["name"] for entry in files if entry["name"] != "."}  # "." is the collection itself
    assert {"roles/jupyter/tasks/main.yml", "plugins/modules/devbox_services.py", "plugins/action/devbox_services.py",
            "plugins/plugin_utils/devbox_machine.py", "roles/services/tasks/main.yml", "plugins/action/devbox_lock_copy.py",
            "plugins/module_utils/devbox_records.py", "plugins/plugin_utils/fly_proxy_command.py", "meta/runtime.yml"} <= names
    tops = {name.split("/")[0] for name in names}
    assert tops <= {"README.md", "CHANGELOG.md", "meta", "plugins", "roles"}, tops


def test_a_playbook_using_the_installed_roles_by_full_name_starts_jupyter(installed, machine, tmp_path):
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    host = {"ansible_connection": "community.docker.docker", "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3", "jupyter_ip": NAME,
            "python_env_lock_copy_dir": str(tmp_path / "locks")}
    if machine.ca_bundle:
        host["python_env_ca_bundle"] = CA_IN_CONTAINER
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {NAME: host}}}))

    result = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "hosts.yml", "play.yml"], cwd=str(tmp_path),
                            env=plain_ansible_env(installed, str(tmp_path / "ansible.cfg")),
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Install, register and start every service" in output  # the jupyter role runs the services role

    token = machine.exec("cat /home/pythonuser/.jupyter/devbox_token").stdout.strip()
    assert len(token) >= 32
    status = f"http://127.0.0.1:{machine.port}/api/status"
    with urllib.request.urlopen(urllib.request.Request(status, headers={"Authorization": f"token {token}"}),
                                timeout=10) as answer:
        assert answer.status == 200 and "started" in json.load(answer)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(status, timeout=10)
    assert refused.value.code == 403
