"""The machine's facts, declared once (plugins/plugin_utils/devbox_machine.py `machine`), and the dev user
module's check that the home is the volume (plugins/modules/devbox_user.py `mount_points`, `volume_problem`)."""
import os

import pytest
import yaml

from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import ServiceError, normalize
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import (
    BUILT_IN, ROLES, TOP, machine, service_url)
from test_module_docs import ROOT, load

user_module = load(os.path.join(ROOT, "plugins", "modules", "devbox_user.py"))
STREAMLIT = {"name": "streamlit", "port": 8501, "packages": ["streamlit"],
             "command": ["streamlit", "hello", "--server.port", "{port}", "--server.address", "{ip}"]}


def role_default(role, name):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as defaults:
        return yaml.safe_load(defaults)[name]


def by_name(facts):
    return {service["name"]: service for service in facts["services"]}


def test_the_top_is_the_repository_and_every_role_has_defaults():
    assert os.path.realpath(TOP) == os.path.realpath(ROOT)
    assert all(os.path.exists(os.path.join(TOP, "roles", role, "defaults", "main.yml")) for role in ROLES)


def test_the_defaults_are_the_roles_own():
    facts = machine()
    assert facts["user"] == role_default("dev_user", "dev_user_name") == "pythonuser"
    assert (facts["uid"], facts["gid"]) == (role_default("dev_user", "dev_user_uid"), role_default("dev_user", "dev_user_gid"))
    assert facts["home"] == f"/home/{facts['user']}", "dev_user_home is templated from dev_user_name"
    assert facts["home_is_volume"] is role_default("dev_user", "dev_user_home_is_volume")
    assert facts["venv_dir"] == role_default("python_env", "python_env_venv_dir")
    assert facts["project_dir"] == role_default("python_env", "python_env_project_dir")
    # TensorBoard is off by default: only Jupyter runs, every field filled in, the placeholders left for the launcher.
    [jupyter] = facts["services"]
    assert jupyter == normalize(dict(jupyter)), "every field is there, checked"
    assert (jupyter["name"], jupyter["port"], jupyter["ip"]) == ("jupyter", role_default("jupyter", "jupyter_port"), "auto")
    assert jupyter["packages"] == [role_default("jupyter", "jupyter_lab_spec")] and jupyter["counts_as_use"] is True
    assert "--ServerApp.port={port}" in jupyter["command"] and jupyter["url_path"] == "/lab"
    assert jupyter["venv"] == "own" and facts["service_venvs_dir"] == role_default("python_env", "python_env_service_venvs_dir")
    assert facts["project_venv_packages"] == [role_default("jupyter", "jupyter_kernel_spec")], \
        "the project venv gets the kernel, not JupyterLab"


def test_a_service_of_the_project_venv_brings_its_packages_to_the_project_venv():
    facts = machine({"tensorboard_enabled": True, "devbox_services": [
        {"name": "app", "port": 8501, "command": ["streamlit"], "packages": ["streamlit"]},
        {"name": "tool", "port": 8502, "command": ["tool"], "packages": ["tool"], "venv": "own"}]})
    assert facts["project_venv_packages"] == [role_default("jupyter", "jupyter_kernel_spec"), "streamlit"]


def test_overrides_win_and_flow_into_the_templated_defaults():
    facts = machine({"dev_user_name": "alice", "dev_user_uid": "2000", "python_env_venv_dir": ".venvs/main",
                     "dev_user_home_is_volume": True})
    assert (facts["user"], facts["uid"], facts["home"]) == ("alice", 2000, "/home/alice")
    assert facts["venv_dir"] == ".venvs/main" and facts["home_is_volume"] is True
    assert machine({"dev_user_home": "/data/alice"})["home"] == "/data/alice"


def test_jupyter_port_flows_into_the_jupyter_entry():
    jupyter = by_name(machine({"jupyter_port": 9000, "jupyter_ip": "10.0.0.2", "jupyter_lab_spec": "jupyterlab==4.2.5"}))
    assert jupyter["jupyter"]["port"] == 9000 and isinstance(jupyter["jupyter"]["port"], int)
    assert jupyter["jupyter"]["ip"] == "10.0.0.2" and jupyter["jupyter"]["packages"] == ["jupyterlab==4.2.5"]
    assert by_name(machine({"jupyter_port": "9001"}))["jupyter"]["port"] == 9001, "as text from -e, too"


def test_tensorboard_enabled_adds_tensorboard_with_its_own_variables():
    services = by_name(machine({"tensorboard_enabled": True}))
    assert list(services) == ["jupyter", "tensorboard"]
    assert services["tensorboard"]["port"] == role_default("tensorboard", "tensorboard_port")
    assert services["tensorboard"]["packages"] == [role_default("tensorboard", "tensorboard_spec")]
    assert by_name(machine({"tensorboard_enabled": True, "tensorboard_port": 7007}))["tensorboard"]["port"] == 7007
    assert "tensorboard" not in by_name(machine({"tensorboard_enabled": False}))


def test_a_service_on_the_loopback_is_reached_behind_jupyters_login_which_gets_the_proxy():
    plain = by_name(machine({"jupyter_port": 9000}))
    assert role_default("jupyter", "jupyter_server_proxy_spec") not in plain["jupyter"]["packages"]
    facts = machine({"jupyter_port": 9000, "tensorboard_enabled": True})
    services = by_name(facts)
    assert services["tensorboard"]["ip"] == "127.0.0.1"
    assert services["jupyter"]["packages"][-1] == role_default("jupyter", "jupyter_server_proxy_spec")
    assert service_url(services["tensorboard"], facts["services"], "localhost", None) == (
        "http://localhost:9000/proxy/6006/")
    # Jupyter's port arrives here under another number: the URL follows it; unpublished Jupyter, no URL.
    assert service_url(services["tensorboard"], facts["services"], "127.0.0.1", {9000: 18000}) == (
        "http://127.0.0.1:18000/proxy/6006/")
    assert service_url(services["tensorboard"], facts["services"], "127.0.0.1", {}) is None
    own = by_name(machine({"tensorboard_enabled": True, "tensorboard_ip": "10.0.0.5"}))
    assert service_url(own["tensorboard"], list(own.values()), "localhost", None) == "http://localhost:6006/"
    assert role_default("jupyter", "jupyter_server_proxy_spec") not in own["jupyter"]["packages"]


def test_the_users_services_follow_the_built_in_ones():
    facts = machine({"devbox_services": [STREAMLIT, dict(STREAMLIT, name="off", port=8502, enabled=False)]})
    assert [service["name"] for service in facts["services"]] == ["jupyter", "streamlit"]
    assert by_name(facts)["streamlit"] == normalize(STREAMLIT)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_a_devbox_services_entry_with_a_built_in_name_is_refused_naming_its_variable(name):
    with pytest.raises(ServiceError, match=f"devbox_services: '{name}' is built in; set {name}_service or its "
                                           f"{name}_\\* variables"):
        machine({"devbox_services": [dict(STREAMLIT, name=name)]})


@pytest.mark.parametrize("given, message", [
    ({"devbox_services": {"name": "streamlit"}}, "devbox_services must be a list of entries"),
    ({"devbox_services": [STREAMLIT, STREAMLIT]}, "two services are named 'streamlit'"),
    ({"devbox_services": [dict(STREAMLIT, port=8888)]}, "services 'jupyter' and 'streamlit' both want port 8888"),
    ({"tensorboard_enabled": True, "tensorboard_port": 8888}, "both want port 8888"),
    ({"jupyter_port": 80}, "port=80 must be a number from 1024 to 65535"),
])
def test_services_that_cannot_be_used_are_refused(given, message):
    with pytest.raises(ServiceError, match=message):
        machine(given)


def test_devbox_private_ip_replaces_auto_only():
    given = {"devbox_private_ip": "devbox-local", "tensorboard_enabled": True, "tensorboard_ip": "127.0.0.1",
             "devbox_services": [STREAMLIT]}
    services = by_name(machine(given))
    assert services["jupyter"]["ip"] == "devbox-local" and services["streamlit"]["ip"] == "devbox-local"
    assert services["tensorboard"]["ip"] == "127.0.0.1", "a service given its own address keeps it"
    assert by_name(machine({"devbox_private_ip": ""}))["jupyter"]["ip"] == "auto"


def test_a_missing_variable_is_named():
    with pytest.raises(KeyError, match="jupyter_service is not defined"):
        _without("jupyter_service")


def _without(name):
    """machine() with a role default taken away: the facts name what is missing."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    from ansible_collections.devbox.machine.plugins.plugin_utils import devbox_machine
    loader = DataLoader()
    variables = devbox_machine.role_defaults(loader)
    del variables[name]
    return devbox_machine.facts(devbox_machine.templated_value(Templar(loader=loader, variables=variables)))


# --- devbox_user: the home must be the volume ---

MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
31 22 8:1 /volumes/home /home/pythonuser rw,relatime - ext4 /dev/sda1 rw
32 22 8:2 / /home/with\\040space rw - ext4 /dev/sda2 rw
33 22 8:3 / /data rw - ext4 /dev/sda3 rw
"""


@pytest.fixture
def mountinfo(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO + "short line\n")
    return str(path)


def test_mount_points_are_read_from_mountinfo_with_escapes_undone(mountinfo):
    assert user_module.mount_points(mountinfo) == ["/", "/proc", "/home/pythonuser", "/home/with space", "/data"]


def test_this_machines_own_mountinfo_holds_the_root():
    assert "/" in user_module.mount_points()


@pytest.mark.parametrize("home", ["/home/pythonuser", "/home/pythonuser/", "/home/with space", "/data"])
def test_a_home_that_is_a_mount_point_is_the_volume(mountinfo, home):
    assert user_module.volume_problem(home, user_module.mount_points(mountinfo)) is None


def test_a_home_that_is_not_a_mount_point_is_refused_naming_the_mounts_and_the_fix(mountinfo):
    problem = user_module.volume_problem("/home/alice", user_module.mount_points(mountinfo))
    assert problem.startswith("dev_user_home=/home/alice is not a mount point, and dev_user_home_is_volume says")
    assert "/home/pythonuser" in problem and "/home/with space" in problem
    assert "make down" in problem and "fly.toml's [mounts] destination" in problem and "Nothing was created." in problem
    assert "/proc" not in problem


def test_with_nothing_mounted_under_home_it_says_so():
    problem = user_module.volume_problem("/home/alice", ["/", "/proc"])
    assert "nothing is mounted under /home" in problem


def test_a_path_below_a_mount_point_is_not_the_volume(mountinfo):
    assert user_module.volume_problem("/home/pythonuser/sub", user_module.mount_points(mountinfo)) is not None
