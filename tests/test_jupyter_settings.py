"""jupyter_server_settings: merged into Jupyter's settings unless it would open the server or drop its token."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_address import listen_address_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_jupyter_settings import settings_problem
from test_module_docs import ROOT, load

services = load(os.path.join(ROOT, "plugins", "modules", "devbox_services.py"))


@pytest.mark.parametrize("settings, expected", [
    ({"ServerApp": {"ip": "0.0.0.0"}}, "jupyter_server_settings.ServerApp.ip='0.0.0.0' is set by the role: set jupyter_ip"),
    ({"ServerApp": {"port": 80}}, "ServerApp.port=80 is set by the role: set jupyter_port"),
    ({"IdentityProvider": {"token": ""}}, "IdentityProvider.token='' is set by the role: set jupyter_token"),
    ({"ServerApp": {"token": ""}}, "set jupyter_token"),
    ({"ServerApp": {"password": "sha1:x"}}, "ServerApp.password='sha1:x' would open Jupyter"),
    ({"PasswordIdentityProvider": {"hashed_password": "x"}}, "hashed_password='x' would open Jupyter"),
    ({"ServerApp": {"allow_unauthenticated_access": True}}, "allow_unauthenticated_access=True would open"),
    ({"ServerApp": {"identity_provider_class": "my.Open"}}, "identity_provider_class='my.Open' would open"),
    ({"ServerApp": {"disable_check_xsrf": True}}, "disable_check_xsrf=True would open Jupyter to anyone who "
                                                  "reaches it: XSRF checks stay on"),
    ({"ServerApp": {"allow_origin": "*"}}, "allow_origin='*' would let any web site use Jupyter"),
    ({"ServerApp": {"allow_origin_pat": ".*"}}, "list exact origins in allow_origin instead"),
    ({"ServerApp": {"allow_remote_access": False}}, "allow_remote_access=False would open"),
    ({"ServerApp": {"authenticate_prometheus": False}}, "the metrics stay behind the token"),
    ({"ServerApp": {"sock": "/tmp/j.sock"}}, "ServerApp.sock='/tmp/j.sock'"),
    ({"KernelManager": {"ip": "0.0.0.0"}}, "KernelManager.ip='0.0.0.0' would open Jupyter's KernelManager to the "
                                           "network ('0.0.0.0': 0.0.0.0 means all interfaces)"),
    ({"KernelManager": {"ip": "8.8.8.8"}}, "8.8.8.8 is a public address"),
    ({"ServerApp.ip": "0.0.0.0"}, "jupyter_server_settings.ServerApp.ip='0.0.0.0' must be a mapping of settings"),
    (["ServerApp"], "must be a mapping of sections to settings"),
])
def test_settings_that_open_the_server_are_refused_naming_the_setting_the_value_and_the_fix(settings, expected):
    assert expected in settings_problem(settings)


@pytest.mark.parametrize("settings", [
    {},
    {"ServerApp": {"iopub_data_rate_limit": 10000000, "root_dir": "/home/pythonuser", "allow_origin": ""}},
    {"ServerApp": {"allow_origin": "https://colab.example.org"}},
    {"FileContentsManager": {"delete_to_trash": False}, "KernelManager": {"ip": "127.0.0.1"}},
    {"MappingKernelManager": {"cull_idle_timeout": 3600}},
])
def test_other_settings_pass(settings):
    assert settings_problem(settings) is None


def test_on_the_machine_a_name_is_judged_by_what_it_resolves_to():
    assert settings_problem({"KernelManager": {"ip": "localhost"}}, listen_address_problem) is None
    assert "does not resolve" in settings_problem({"KernelManager": {"ip": "no-such-host.invalid"}},
                                                  listen_address_problem)


def test_the_settings_land_in_the_config_file_over_the_roles_own():
    config = services.jupyter_config("/home/u/project", "10.0.0.2", 8888, {
        "ServerApp": {"iopub_data_rate_limit": 12345678, "root_dir": "/home/u/notebooks"},
        "FileContentsManager": {"delete_to_trash": False}})
    assert config["ServerApp"]["iopub_data_rate_limit"] == 12345678
    assert config["ServerApp"]["root_dir"] == "/home/u/notebooks"
    assert config["FileContentsManager"] == {"delete_to_trash": False}
    assert (config["ServerApp"]["ip"], config["ServerApp"]["port"], config["ServerApp"]["port_retries"]) == \
           ("10.0.0.2", 8888, 0), "the role's own settings stay"
    assert services.jupyter_config("/home/u/project", "10.0.0.2", 8888, {})["ServerApp"]["allow_remote_access"] is True
    assert services.jupyter_config("/home/u/project", "10.0.0.2", 8888, {})["ServerApp"]["root_dir"] == \
        "/home/u/project", "the project is Jupyter's folder unless the settings say otherwise"


def run_ansible(*args, **env_vars):
    """An Ansible command of the venv, in the repository, with its ansible.cfg (and these variables)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "playbooks", "collections"), **env_vars)
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), args[0]), *args[1:]],
                          capture_output=True, text=True, cwd=ROOT, env=env)


def test_the_role_refuses_them_on_the_controller_with_the_same_message(tmp_path):
    """The role's own validate tasks, against localhost: nothing but the checks runs."""
    play = tmp_path / "validate.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role: {name: services, tasks_from: validate}\n")
    refused = run_ansible("ansible-playbook", "-i", "localhost,", "-c", "local", str(play), "-e",
                          json.dumps({"jupyter_server_settings": {"ServerApp": {"disable_check_xsrf": True}}}))
    accepted = run_ansible("ansible-playbook", "-i", "localhost,", "-c", "local", str(play), "-e",
                           json.dumps({"jupyter_server_settings": {"ServerApp": {"iopub_data_rate_limit": 1}}}))
    assert refused.returncode != 0
    assert "jupyter_server_settings.ServerApp.disable_check_xsrf=True would open Jupyter" in refused.stdout
    assert accepted.returncode == 0, accepted.stdout[-2000:]


# The attack of issue 24, finding 1: a public file as the cookie secret signs a login cookie without the
# token; tornado_settings is merged over the server's own (cookie_secret, xsrf_cookies, ...).
@pytest.mark.parametrize("settings, setting", [
    ({"ServerApp": {"cookie_secret_file": "/etc/os-release"}}, "ServerApp.cookie_secret_file='/etc/os-release'"),
    ({"ServerApp": {"cookie_secret": "known"}}, "ServerApp.cookie_secret='known'"),
    ({"ServerApp": {"tornado_settings": {"cookie_secret": "known"}}}, "ServerApp.tornado_settings={'cookie_secret': 'known'}"),
    ({"ServerApp": {"tornado_settings": {"xsrf_cookies": False}}}, "ServerApp.tornado_settings={'xsrf_cookies': False}"),
    ({"ServerApp": {"tornado_settings": {"disable_check_xsrf": True}}}, "tornado_settings={'disable_check_xsrf': True} would open"),
    ({"ServerApp": {"tornado_settings": {"headers": {"X-Frame-Options": "x"}}}}, "ServerApp.tornado_settings="),
    ({"NotebookApp": {"webapp_settings": {"static_url_prefix": "/x"}}}, "NotebookApp.webapp_settings="),
    ({"LabApp": {"deep": {"deeper": [{"cookie_secret_file": "/etc/os-release"}]}}},
     "LabApp.deep.deeper[0].cookie_secret_file='/etc/os-release'"),
    ({"ServerApp.tornado_settings": {"cookie_secret": "known"}}, "ServerApp.tornado_settings"),
    ({"IdentityProvider": {"cookie_options": {"max_age_days": 3650}}}, "IdentityProvider.cookie_options="),
    ({"IdentityProvider": {"get_secure_cookie_kwargs": {"min_version": 1}}}, "get_secure_cookie_kwargs="),
    ({"ServerApp": {"logout_handler_class": "my.Handler"}}, "ServerApp.logout_handler_class='my.Handler'"),
    ({"Session": {"key": b"".decode()}}, "Session.key=''"),
    ({"Session": {"keyfile": "/etc/os-release"}}, "Session.keyfile='/etc/os-release'"),
    ({"ServerApp": {"Cookie_Secret_File": "/etc/os-release"}}, "ServerApp.Cookie_Secret_File="),
    ({"LabApp": {"extra": {"token": ""}}}, "LabApp.extra.token='' is set by the role: set jupyter_token"),
    ({"MyApp": {"my_xsrf_switch": False}}, "MyApp.my_xsrf_switch=False would open Jupyter"),
    ({"KernelManager": {"options": [{"ip": "0.0.0.0"}]}}, "KernelManager.options[0].ip='0.0.0.0' would open"),
    ({"ServerApp": {"tornado_settings": {}}}, "merges it over its own settings"),
])
def test_settings_that_replace_the_login_are_refused_at_any_depth(settings, setting):
    problem = settings_problem(settings)
    assert problem and setting in problem, problem
    assert any(fix in problem for fix in ("drop this setting", "set jupyter_token", "use a private address")), problem


def test_the_cookie_secret_attack_is_refused_by_the_controllers_check_before_any_change(tmp_path):
    play = tmp_path / "validate.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role: {name: services, tasks_from: validate}\n"
                    "    - ansible.builtin.file: {path: " + str(tmp_path / "changed") + ", state: touch, mode: '0600'}\n")
    refused = run_ansible("ansible-playbook", "-i", "localhost,", "-c", "local", str(play), "-e",
                          json.dumps({"jupyter_server_settings": {"ServerApp": {"cookie_secret_file": "/etc/os-release"}}}))
    assert refused.returncode != 0
    assert "jupyter_server_settings.ServerApp.cookie_secret_file='/etc/os-release'" in refused.stdout
    assert "drop this setting" in refused.stdout
    assert not (tmp_path / "changed").exists()
