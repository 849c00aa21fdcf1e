"""The look: each role's input digests move only with that role's inputs, and observe() sees what changed."""
import os
import pwd
import sys

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.utils.vars import combine_vars

from ansible_collections.devbox.machine.plugins.action.devbox_look import code_digest, input_digests
from ansible_collections.devbox.machine.plugins.module_utils.devbox_look import (
    PENDING_RESTART, ROLES, decide, observe, pending_restart, read_stamp, write_stamp)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import write_root_file
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_machine import role_defaults, templated_value


def digests(given: dict) -> dict:
    loader = DataLoader()
    variables = combine_vars(role_defaults(loader), dict(given, inventory_dir="/work/inventory"))
    templar = Templar(loader=loader, variables=variables)
    return input_digests(loader, templated_value(templar), "code")


def changed_roles(before: dict, after: dict) -> set:
    return {role for role in ROLES if before[role] != after[role]}


@pytest.mark.parametrize("variable, value, roles", [
    ("swap_min_mb", 4096, {"swap"}),
    ("python_env_packages", ["six==1.16.0"], {"python_env"}),
    ("jupyter_port", 9999, {"services"}),
    ("tensorboard_enabled", True, {"services"}),
    ("idle_stop_minutes", 30, {"idle_stop"}),
    ("gpu_smoke_test", True, {"gpu"}),
    ("dev_user_home", "/home/other", {"dev_user", "gpu", "python_env", "services", "idle_stop"}),
])
def test_a_changed_value_changes_only_the_digests_of_the_roles_that_read_it(variable, value, roles):
    assert changed_roles(digests({}), digests({variable: value})) == roles


def test_a_changed_lock_file_changes_only_python_env(tmp_path):
    lock = tmp_path / "machine.requirements.lock"
    lock.write_text("six==1.16.0\n")
    before = digests({"python_env_lock_file": str(lock)})
    lock.write_text("six==1.17.0\n")
    after = digests({"python_env_lock_file": str(lock)})
    assert changed_roles(before, after) == {"python_env"}
    assert after["python_env"]["file python_env_lock_file"] != before["python_env"]["file python_env_lock_file"]


def test_the_code_digest_follows_every_file(tmp_path):
    (tmp_path / "roles" / "x").mkdir(parents=True)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "roles" / "x" / "main.yml").write_text("a: 1\n")
    first = code_digest(str(tmp_path))
    (tmp_path / "plugins" / "new.py").write_text("")
    second = code_digest(str(tmp_path))
    (tmp_path / "roles" / "x" / "main.yml").write_text("a: 2\n")
    assert len({first, second, code_digest(str(tmp_path))}) == 3


@pytest.fixture
def home(tmp_path):
    """A home with a venv holding six, as this test's own user (the look's child becomes that user)."""
    home = tmp_path / "home"
    site = home / "venv" / "lib" / f"python3.{sys.version_info[1]}" / "site-packages"
    (site / "six-1.16.0.dist-info").mkdir(parents=True)
    (site / "Typing_Extensions-4.12.2.dist-info").mkdir()
    (home / "venv" / "pyvenv.cfg").write_text(f"version = 3.{sys.version_info[1]}.1\n")
    (home / "project").mkdir()
    return home


def params(home) -> dict:
    return {"user": pwd.getpwuid(os.getuid()).pw_name, "home": str(home), "venv_dir": "venv", "service_venvs_dir": "venvs",
            "project_dir": "project", "services": [], "libraries": ["devbox_launcher.py"], "gpu_required": "false"}


def test_observe_reads_the_venv_and_decide_names_what_changed(home):
    seen = observe(params(home))
    assert seen["roles"]["python_env"]["packages venv"] == {"six": "1.16.0", "typing-extensions": "4.12.2"}
    assert seen["report"]["python_version"] == f"3.{sys.version_info[1]}"
    inputs = {role: {"x": "1"} for role in ROLES}
    assert decide(None, inputs, seen["roles"]) == {role: ["no stamp yet"] for role in ROLES}
    stamp = {role: {"inputs": inputs[role], "observed": seen["roles"][role]} for role in ROLES}
    assert decide(stamp, inputs, seen["roles"]) == {role: [] for role in ROLES}
    (home / "venv" / "lib" / f"python3.{sys.version_info[1]}" / "site-packages" / "six-1.16.0.dist-info").rmdir()
    (home / "project" / "requirements.lock").write_text("six==1.16.0\n")
    todo = decide(stamp, dict(inputs, idle_stop={"x": "2"}), observe(params(home))["roles"])
    assert todo["python_env"] == ["project/requirements.lock created", "package removed by hand: six"]
    assert todo["services"] == [], "no service runs from the project venv"
    assert todo["idle_stop"] == ["inputs changed: x"]
    assert todo["dev_user"] == todo["gpu"] == todo["swap"] == []


def test_a_services_own_venv_is_observed_as_the_project_venv(home):
    own = dict(params(home), services=[{"name": "jupyter", "ip": "127.0.0.1", "venv": "own"}])
    seen = observe(own)["roles"]
    assert seen["services"]["packages venvs/jupyter"] == {} and seen["services"]["python venvs/jupyter"] == "absent"
    assert "packages venvs/jupyter" not in seen["python_env"], "a service's own venv is the services role's"
    assert seen["services"]["service jupyter"].startswith("down")


def test_the_services_watch_the_project_venvs_packages_only_when_one_runs_from_it(home):
    inputs = {role: {"x": "1"} for role in ROLES}
    for venv, sees_packages in (("project", True), ("own", False)):
        given = dict(params(home), services=[{"name": "board", "ip": "127.0.0.1", "venv": venv}])
        seen = observe(given)["roles"]
        stamp = {role: {"inputs": inputs[role], "observed": seen[role]} for role in ROLES}
        (home / "venv" / "lib" / f"python3.{sys.version_info[1]}" / "site-packages" / "tomli_w-1.0.0.dist-info").mkdir()
        todo = decide(stamp, inputs, observe(given)["roles"])
        assert bool(todo["services"]) == sees_packages, todo
        assert todo["python_env"], "the project venv is python_env's either way"
        (home / "venv" / "lib" / f"python3.{sys.version_info[1]}" / "site-packages" / "tomli_w-1.0.0.dist-info").rmdir()
    # A venv of its own is made with the project venv's installer settings: their change is the services' too.
    (home / "venv" / "devbox-installer.json").write_text("{}\n")
    assert decide(stamp, inputs, observe(given)["roles"])["services"] == ["venv/devbox-installer.json created"]


@pytest.mark.skipif(os.getuid() != 0, reason="the stamp is root's own file")
def test_the_stamp_keeps_the_other_roles_entries(home):
    seen = observe(params(home))["roles"]
    inputs = {role: {"x": "1"} for role in ROLES}
    assert write_stamp(str(home), inputs, seen, list(ROLES))
    assert not write_stamp(str(home), inputs, seen, list(ROLES)), "an unchanged stamp is not rewritten"
    write_stamp(str(home), dict(inputs, swap={"x": "2"}), seen, ["swap"])
    stamp = read_stamp(str(home))
    assert stamp["swap"]["inputs"] == {"x": "2"} and stamp["gpu"]["inputs"] == {"x": "1"}


@pytest.mark.skipif(os.getuid() != 0, reason="the record is root's own file")
def test_a_pending_restart_runs_the_services_whatever_the_stamp(home):
    assert pending_restart(observe(params(home))["roles"]) == []
    write_root_file(str(home), PENDING_RESTART, '{"jupyter": {"reasons": ["settings changed"], "pid": 1}}\n')
    assert pending_restart(observe(params(home))["roles"]) == ["a restart that a busy kernel put off is pending"]
