"""`ssh <name>` through the fly double's proxy into the hallpass stand-in, and status over the Fly inventory.

Reuses the Fly end-to-end app (two started "Machines", one stopped) from test_fly_e2e. After
site.yml, playbooks/ssh_config.yml writes the config; plain OpenSSH with only that config (through
the Include line it prints) logs in as the dev user with the Fly certificate, without a PTY.
"""
import os
import re
import subprocess

import pytest

from test_fly_e2e import ansible, app, converge, failures, started  # noqa: F401 - app is a fixture

pytestmark = pytest.mark.e2e

HOME = "/home/pythonuser"


@pytest.fixture(scope="module")
def ssh_config(app, tmp_path_factory):  # noqa: F811 - the imported fixture
    result, output = converge(app)
    assert result.returncode == 0, failures(output)
    # site.yml's python_env role wrote the login block (devbox_shell_init): nothing to add here.
    folder = tmp_path_factory.mktemp("ssh-config")
    result, output = ansible(app, "ansible-playbook", "-e", f"ssh_config_dir={folder}", "playbooks/ssh_config.yml")
    assert result.returncode == 0, output[-3000:]
    include = re.search(r"Add this line at the top of ~/.ssh/config \(once\): (Include [^'\"\s]+)", output).group(1)
    user_config = folder / "user_config"
    user_config.write_text(include + "\n")
    return {"output": output, "folder": folder, "user_config": str(user_config)}


def ssh(app, ssh_config, host, *command, stdin=None):  # noqa: F811
    return subprocess.run(["ssh", "-F", ssh_config["user_config"], "-o", "BatchMode=yes", host, *command],
                          env=app["env"], input=stdin, capture_output=True, text=True, timeout=120)


def hosts(app):  # noqa: F811
    return [f"devbox-{app['name']}-{container}" for container in started(app)]


def test_one_private_file_with_a_host_per_started_machine(app, ssh_config):  # noqa: F811
    path = ssh_config["folder"] / f"devbox_fly-{app['name']}.conf"
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert re.findall(r"^Host (\S+)$", text, re.M) == sorted(hosts(app))
    assert f"{app['name']}-m3" not in text, "a stopped Machine gets no Host"
    assert "ProxyCommand" in text and "CertificateFile" in text and "Control" not in text
    assert "certificate valid from" in " ".join(ssh_config["output"].split())  # the YAML callback folds lines


def test_ssh_by_name_logs_in_as_the_dev_user_through_fly_proxy(app, ssh_config):  # noqa: F811
    for host, container in zip(hosts(app), started(app)):
        result = ssh(app, ssh_config, host, "id -un; hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["pythonuser", container]


def test_an_interactive_login_starts_in_the_project_with_the_venv_and_commands_do_not(app, ssh_config):  # noqa: F811
    host = hosts(app)[0]
    interactive = ssh(app, ssh_config, host, "bash -il -c 'echo \"$PWD|$VIRTUAL_ENV|$(command -v python)\"'")
    assert interactive.returncode == 0, interactive.stderr
    assert interactive.stdout.strip().splitlines()[-1] == (
        f"{HOME}/project|{HOME}/project-venv|{HOME}/project-venv/bin/python")
    plain = ssh(app, ssh_config, host, 'echo "$PWD|${VIRTUAL_ENV:-}"')
    assert plain.stdout.strip() == f"{HOME}|", "commands (Ansible, VS Code's server) run untouched"


def test_status_over_the_fly_inventory_reads_each_machine_in_one_module_run(app, ssh_config):  # noqa: F811
    result, output = ansible(app, "ansible-playbook", "-vvv", "playbooks/status.yml")
    assert result.returncode == 0, failures(output)
    # What the report task shows, with the YAML callback's folded lines joined again.
    printed = " ".join(output.split("TASK [Show the machine's state]")[-1].split())
    stopped_id = app["machines"][f"{app['name']}-m3"]
    assert f"{stopped_id} ({app['name']}-m3, stopped)" in " ".join(output.split())
    assert printed.count("- 'jupyter: up, http://localhost:8888/lab; token hidden") == len(started(app))
    for container in started(app):
        machine = f"{app['machines'][container]}.vm.{app['name']}.internal"
        assert f"- 'Open it: fly proxy 8888 {machine} -a {app['name']} (jupyter)'" in printed
    assert printed.count("- 'Next run: nothing to change, as far as status can tell'") == len(started(app))
    assert printed.count("- 'Provisioned: 20") == len(started(app))
    # Nothing is uploaded and no PTY is asked for.
    assert not re.search(r"^<[^>]+> PUT ", output, re.M) and " -tt " not in output
