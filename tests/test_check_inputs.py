"""The input check (plugins/action/devbox_check_inputs.py), run by ansible-playbook on localhost.

Nothing but the check runs: the play has no other task, so these take a second each.
"""
import json

import pytest

from test_jupyter_settings import run_ansible

# As playbooks/site.yml checks them: services checks every service together (the built-in ones and devbox_services).
ALL_ROLES = ["dev_user", "gpu", "swap", "python_env", "jupyter", "tensorboard", "services", "idle_stop"]


STREAMLIT = {"name": "streamlit", "port": 8501, "packages": ["streamlit"],
             "command": ["streamlit", "hello", "--server.port", "{port}", "--server.address", "{ip}"]}


def check(tmp_path, variables: dict, roles=None, via_role: str | None = None,
          play_vars: dict | None = None) -> tuple[bool, list[str], str]:
    """(passed, the problems reported, the whole output) of one check run."""
    play = tmp_path / "check.yml"
    task = ({"ansible.builtin.include_role": {"name": via_role, "tasks_from": "validate"}} if via_role
            else {"devbox_check_inputs": {"roles": roles or ALL_ROLES}})
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "vars": play_vars or {},
                                 "tasks": [task]}]))
    inventory = tmp_path / "hosts.yml"  # an inventory file: python_env_lock_copy_dir's default lies beside it
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}))
    run = run_ansible("ansible-playbook", "-i", str(inventory), str(play), "-e", json.dumps(variables),
                      ANSIBLE_STDOUT_CALLBACK="json")
    report = json.loads(run.stdout)
    result = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]
    problems = result.get("msg") if result.get("failed") else []
    return run.returncode == 0, [problems] if isinstance(problems, str) else problems, run.stdout + run.stderr


def test_the_defaults_pass(tmp_path):
    passed, problems, output = check(tmp_path, {})
    assert passed and problems == [], output[-2000:]


def test_a_play_value_built_from_a_refused_input_does_not_hide_it(tmp_path):
    """site.yml's play builds python_env_platform_packages from the machine's facts (the devbox_machine lookup),
    which fail on a bad dev_user_uid: the check names the input, not the lookup."""
    site_vars = {"python_env_platform_packages": "{{ lookup('devbox_machine').project_venv_packages }}"}
    assert check(tmp_path, {}, play_vars=site_vars)[0]
    passed, problems, output = check(tmp_path, {"dev_user_uid": "abc"}, play_vars=site_vars)
    assert not passed and len(problems) == 1 and "dev_user_uid" in problems[0], output[-2000:]
    passed, problems, output = check(tmp_path, {"python_env_packages": "{{ undefined_thing }}"})
    assert not passed and problems[0].startswith("python_env:") and "undefined_thing" in problems[0], output[-2000:]


@pytest.mark.parametrize("variables, expected", [
    ({"dev_user_name": "Bad Name"}, 'dev_user_name="Bad Name" must be 1-32 characters'),
    ({"dev_user_gid": 0}, "dev_user_gid=0 must be 1-60000"),
    ({"dev_user_uid": "abc"}, "dev_user: argument 'dev_user_uid' is of type str"),
    ({"dev_user_home": "/etc/alice"}, 'dev_user_home="/etc/alice" must be an absolute path'),
    ({"gpu_required": "maybe"}, 'gpu_required="maybe" is not one of: auto, true, false'),
    ({"swap_min_mb": -5}, "swap_min_mb=-5 must be 0 or more"),
    ({"python_env_packages": ["numpy==="]}, '"numpy===" is not a requirement specifier'),
    ({"python_env_installer": "conda"}, "python_env_installer"),
    ({"python_env_index_url": "mirror.local/simple"}, '"mirror.local/simple" is not an http(s)'),
    ({"python_env_venv_dir": "../venv"}, 'python_env_venv_dir="../venv" must be a plain path'),
    ({"python_env_requirements_file": "no/such/file.txt"}, "no/such/file.txt: no such file on the controller"),
    ({"python_env_sync": True}, "python_env_sync=true needs python_env_lock_file"),
    ({"python_env_lock_copy_dir": "locks"}, "python_env_lock_copy_dir=locks must be an absolute path"),
    ({"jupyter_ip": "0.0.0.0"}, "jupyter_ip=0.0.0.0 must be a loopback or private address"),
    ({"jupyter_ip": "8.8.8.8"}, "jupyter_ip=8.8.8.8 must be"),
    ({"jupyter_port": 80}, "jupyter_port=80 must be a number from 1024 to 65535"),
    ({"jupyter_lab_spec": "jupyterlab>>"}, 'jupyter_lab_spec="jupyterlab>>" must be a requirement specifier'),
    ({"jupyter_server_settings": {"ServerApp": {"disable_check_xsrf": True}}}, "disable_check_xsrf=True would open"),
    ({"tensorboard_ip": "::"}, "tensorboard_ip=:: must be"),
    ({"tensorboard_enabled": True, "tensorboard_port": 8888},
     "services 'jupyter' and 'tensorboard' both want port 8888: give each its own"),
    ({"devbox_services": [dict(STREAMLIT, port=8888)]}, "services 'jupyter' and 'streamlit' both want port 8888"),
    ({"devbox_services": [dict(STREAMLIT, name="jupyter")]},
     "devbox_services: 'jupyter' is built in; set jupyter_service or its jupyter_* variables"),
    ({"devbox_services": [STREAMLIT, STREAMLIT]}, "two services are named 'streamlit'"),
    ({"devbox_services": [dict(STREAMLIT, command="streamlit hello")]}, "command='streamlit hello' has the wrong type"),
    ({"devbox_services": [dict(STREAMLIT, ip="0.0.0.0")]}, "service streamlit: ip=0.0.0.0 must be a loopback"),
    ({"devbox_services": [dict(STREAMLIT, packages=["streamlit==="])]},
     'service streamlit: packages: "streamlit===" is not a requirement specifier'),
    ({"devbox_services": {"name": "streamlit"}}, "argument 'devbox_services' is of type dict"),
    ({"idle_stop_minutes": 99999}, "idle_stop_minutes=99999 must be whole minutes"),
    ({"idle_stop_minutes": 60}, "this host is none of them (dev_user_home_is_volume is false, as on an SSH host)"),
    ({"idle_stop_minutes": 60, "dev_user_home_is_volume": True, "idle_stop_gpu_percent": 101},
     "idle_stop_gpu_percent=101 must be from 0 to 100"),
])
def test_a_bad_value_is_named_with_the_fix(tmp_path, variables, expected):
    passed, problems, output = check(tmp_path, variables)
    assert not passed and len(problems) == 1 and expected in problems[0], output[-2000:]


def test_every_problem_is_reported_at_once(tmp_path):
    passed, problems, _ = check(tmp_path, {"dev_user_gid": 0, "swap_min_mb": -1, "jupyter_port": 80, "idle_stop_minutes": -1})
    assert not passed
    assert [problem.split("=")[0] for problem in problems] == ["dev_user_name", "swap_min_mb", "jupyter_port", "idle_stop_minutes"]


def test_a_retired_variable_stops_the_run_naming_its_replacement(tmp_path):
    passed, problems, output = check(tmp_path, {"jupyter_min_free_mb": 5, "gpu_user": "alice"})
    assert not passed and problems == [
        "gpu_user is no longer read: set dev_user_name instead (it is the one setting for every role)",
        "jupyter_min_free_mb is no longer read: set python_env_min_free_mb instead (it is the one setting for every"
        " role)"], output[-2000:]


def test_a_secret_is_never_shown(tmp_path):
    token, password = "not a token 'but' secret-ish", "hunter2hunter2"
    passed, problems, output = check(tmp_path, {"jupyter_token": token,
                                                "python_env_extra_index_urls": [f"ftp://me:{password}@mirror/simple"]})
    assert not passed and len(problems) == 2
    assert "ftp://me:********@mirror/simple" in problems[0]  # python_env comes before jupyter
    assert token not in output and password not in output


def test_the_plays_values_win_and_templates_resolve(tmp_path):
    # dev_user_home's default is /home/{{ dev_user_name }}: the play's name is used in it.
    passed, problems, output = check(tmp_path, {"dev_user_name": "alice", "jupyter_port": 9999, "tensorboard_port": 9998})
    assert passed, output[-2000:]
    passed, problems, _ = check(tmp_path, {"dev_user_name": "root/../etc"})
    assert not passed and any('dev_user_home="/home/root/../etc"' in problem for problem in problems)


def test_a_role_alone_checks_its_own_inputs_only(tmp_path):
    passed, problems, output = check(tmp_path, {"tensorboard_enabled": True, "tensorboard_port": 7000,
                                                "jupyter_port": "7000", "swap_min_mb": -5}, via_role="services")
    assert not passed and len(problems) == 1 and "both want port 7000" in problems[0], output[-2000:]


def test_a_user_service_passes_and_a_disabled_one_may_share_a_port(tmp_path):
    passed, problems, output = check(tmp_path, {"devbox_services": [
        STREAMLIT, dict(STREAMLIT, name="spare", port=8888, enabled=False)]})
    assert passed and problems == [], output[-2000:]


def test_an_unknown_role_is_refused(tmp_path):
    passed, problems, _ = check(tmp_path, {}, roles=["jupyter", "nginx"])
    assert not passed and "roles must be a list of dev_user, gpu" in problems[0]


@pytest.mark.parametrize("url", ["ftp://sometoken:@mirror/simple", "ftp://sometoken@mirror/simple"])
def test_a_token_only_index_url_is_never_shown(tmp_path, url):
    passed, problems, output = check(tmp_path, {"python_env_index_url": url})
    assert not passed and "ftp://********" in problems[0]
    assert "sometoken" not in output


def test_a_lock_line_with_control_characters_is_refused_on_the_controller(tmp_path):
    lock = tmp_path / "shared.lock"
    lock.write_text("six==1.16.0\nevil @ https://sometoken@evil.example/evil.tar.gz#\x1b[2K\x1b[1A\n")
    passed, problems, output = check(tmp_path, {"python_env_lock_file": str(lock)})
    assert not passed and len(problems) == 1, output[-2000:]
    assert f"python_env_lock_file={lock} line 2: " in problems[0] and "control character" in problems[0]
    assert "\\\\x1b[2K\\\\x1b[1A" in output and "\x1b" not in output, "the line is shown escaped"
    assert "sometoken" not in output


# Issue 24, finding 6: the lock copy is <python_env_lock_copy_dir>/<host>.requirements.lock.
@pytest.mark.parametrize("host", ["../../outside/evil", "box\nHost *"])
def test_a_hostile_host_name_is_refused_before_any_change(tmp_path, host):
    play = tmp_path / "check.yml"
    play.write_text(json.dumps([{"hosts": "all", "gather_facts": False,
                                 "tasks": [{"devbox_check_inputs": {"roles": ["python_env"]}}]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {host: {"ansible_connection": "local"}}}}))
    run = run_ansible("ansible-playbook", "-i", str(inventory), str(play),
                      "-e", json.dumps({"python_env_lock_copy_dir": str(tmp_path / "locks")}))
    assert run.returncode != 0, run.stdout[-2000:]
    assert f"the inventory host name {host!r} cannot become a file name" in " ".join(run.stdout.split()).replace(
        "\\\\", "\\"), run.stdout[-2000:]


def test_the_lock_copy_stays_in_its_folder(tmp_path):
    """The action itself, given a host name with ../ (the input check skipped): refused, nothing created."""
    locks, host = tmp_path / "deep" / "locks", "../../outside/evil"
    play = tmp_path / "copy.yml"
    play.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [{"devbox_lock_copy": {
        "content": "six==1.16.0\n", "dir": str(locks), "host": "{{ inventory_hostname }}"}}]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {host: {"ansible_connection": "local"}}}}))
    run = run_ansible("ansible-playbook", "-i", str(inventory), str(play))
    assert run.returncode != 0 and "cannot become a file name" in run.stdout, run.stdout[-2000:]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "deep").exists()


def test_the_sites_check_lets_the_roles_skip_their_own_and_a_roles_does_not(tmp_path):
    """site.yml checks every role at once and remembers it (the fact devbox_inputs_checked); a role's own check
    (tasks/validate.yml, used alone) remembers nothing, so the next role of a user's playbook still checks its own."""
    facts = {}
    for name, task in (("site", {"devbox_check_inputs": {"roles": ALL_ROLES, "remember": True}}),
                       ("role", {"ansible.builtin.include_role": {"name": "swap", "tasks_from": "validate"}})):
        play = tmp_path / f"{name}.yml"
        play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
        inventory = tmp_path / "hosts.yml"  # python_env_lock_copy_dir's default lies beside it
        inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}))
        run = run_ansible("ansible-playbook", "-i", str(inventory), str(play), ANSIBLE_STDOUT_CALLBACK="json")
        assert run.returncode == 0, run.stdout[-2000:]
        facts[name] = json.loads(run.stdout)["plays"][0]["tasks"][-1]["hosts"]["localhost"].get("ansible_facts")
    assert facts == {"site": {"devbox_inputs_checked": True}, "role": None}
