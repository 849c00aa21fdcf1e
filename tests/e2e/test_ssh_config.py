"""`ssh <name>` through the fly double's proxy into the hallpass stand-in, and status over the Fly inventory.

Reuses the Fly end-to-end app (two started "Machines", one stopped) from test_fly_e2e, with both
strategies. After site.yml, playbooks/ssh_config.yml writes the config; plain OpenSSH with only that
config (through the Include line it prints) logs in as the dev user with the Fly certificate. The
stand-in runs commands as Fly's server does, without a shell: every `ssh <name>` line the README
shows is run here as the README spells it.
"""
import os
import pty
import re
import select
import subprocess
import tempfile
import time

import pytest

from fly_testkit import ROOT, fly_proxy_pids
from test_fly_e2e import (ansible, app, close_ssh_masters, converge, failures, started,  # noqa: F401 - fixtures
                          strategy)

pytestmark = pytest.mark.e2e

HOME = "/home/pythonuser"


@pytest.fixture(scope="module")
def ssh_config(app, tmp_path_factory):  # noqa: F811 - the imported fixture
    result, output = converge(app)
    assert result.returncode == 0, failures(output)
    close_ssh_masters(app)  # Ansible's own masters: the Machines' only `fly proxy` is then the config's
    # site.yml's python_env role wrote the login block (devbox_venv's shell_block): nothing to add here.
    folder = tmp_path_factory.mktemp("ssh-config")
    result, output = ansible(app, "ansible-playbook", "-e", f"ssh_config_dir={folder}", "playbooks/ssh_config.yml")
    assert result.returncode == 0, output[-3000:]
    include = re.search(r"Add this line at the top of ~/.ssh/config \(once\): (Include [^'\"\s]+)", output).group(1)
    user_config = folder / "user_config"
    user_config.write_text(include + "\n")
    context = {"output": output, "folder": folder, "user_config": str(user_config)}
    yield context
    for host in hosts(app):
        subprocess.run(["ssh", "-F", str(user_config), "-O", "exit", host], capture_output=True, timeout=30)


def ssh(app, ssh_config, host, *command, stdin=None):  # noqa: F811
    """ssh with the written config. stderr goes to a file: the master connection that ControlPersist keeps
    in the background holds the ProxyCommand, whose stderr is the first client's (a pipe would stay open)."""
    with tempfile.TemporaryFile("w+") as errors:
        result = subprocess.run(["ssh", "-F", ssh_config["user_config"], "-o", "BatchMode=yes", host, *command],
                                env=app["env"], input=stdin, stdout=subprocess.PIPE, stderr=errors, text=True,
                                timeout=120)
        errors.seek(0)
        result.stderr = errors.read()
    return result


def in_a_terminal(app, ssh_config, command_line, typed, timeout=120):  # noqa: F811
    """A command line run by bash in a terminal of its own (a PTY), with `typed` typed into it; its output."""
    main, terminal = pty.openpty()
    process = subprocess.Popen(["bash", "-c", command_line], stdin=terminal, stdout=terminal, stderr=terminal,
                               env=app["env"], start_new_session=True)
    os.close(terminal)
    os.write(main, typed.encode())
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other side is closed: everything has been read
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(main)
    process.wait(30)
    return output.decode(errors="replace")


# What the README shows for `ssh <name>` (its ssh-config section), each line as it is there, and what it
# prints. The README's name, devbox-$APP-<machine>, becomes a started Machine's Host here.
README_HOST = "devbox-$APP-<machine>"
ONE_OFF_EXAMPLES = {
    f"ssh {README_HOST} id -un": "pythonuser",
    f"ssh {README_HOST} /home/pythonuser/project-venv/bin/python -c \"'import sys; print(sys.prefix)'\"":
        "/home/pythonuser/project-venv",
    f"ssh {README_HOST} bash -lc \"'cd ~/project && pwd'\"": "/home/pythonuser/project",
}
LOGIN_EXAMPLE = f"ssh {README_HOST}"


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def hosts(app):  # noqa: F811
    return [f"devbox-{app['name']}-{container}" for container in started(app)]


def test_one_private_file_with_a_host_per_started_machine(app, ssh_config):  # noqa: F811
    path = ssh_config["folder"] / f"devbox_fly-{app['name']}.conf"
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert re.findall(r"^Host (\S+)$", text, re.M) == sorted(hosts(app))
    assert f"{app['name']}-m3" not in text, "a stopped Machine gets no Host"
    assert "ProxyCommand" in text and "CertificateFile" in text and "ControlMaster auto" in text
    assert "certificate valid from" in " ".join(ssh_config["output"].split())  # the YAML callback folds lines


def test_ssh_by_name_runs_a_command_as_the_dev_user_through_one_fly_proxy(app, ssh_config):  # noqa: F811
    for host, container in zip(hosts(app), started(app)):
        for command in (["id", "-un"], ["hostname"], ["env"]):
            result = ssh(app, ssh_config, host, *command)
            assert result.returncode == 0, result.stderr
        assert ssh(app, ssh_config, host, "hostname").stdout.split() == [container]
        # A command gets no login: no RemoteCommand, no shell, Fly's bare environment.
        assert [line.split("=")[0] for line in ssh(app, ssh_config, host, "env").stdout.splitlines()] == ["PATH"]
        machine = app["machines"][container]
        assert len(fly_proxy_pids(machine)) == 1, "every ssh shares the Machine's one master connection"
        check = ssh(app, ssh_config, host, "-O", "check")
        assert "Master running" in check.stderr


@pytest.mark.parametrize("line", sorted(ONE_OFF_EXAMPLES))
def test_every_one_off_command_the_readme_shows_works_without_a_remote_shell(app, ssh_config, line):  # noqa: F811
    assert line in readme()
    command = line.replace(f"ssh {README_HOST}", f"ssh -F {ssh_config['user_config']} -o BatchMode=yes {hosts(app)[0]}")
    with tempfile.TemporaryFile("w+") as errors:
        result = subprocess.run(["bash", "-c", command], env=app["env"], stdout=subprocess.PIPE, stderr=errors,
                                text=True, timeout=120)
        errors.seek(0)
        assert result.returncode == 0, errors.read()
    assert result.stdout.strip() == ONE_OFF_EXAMPLES[line]


def test_an_interactive_login_lands_in_bash_in_the_project_with_the_venv_as_the_dev_user(app, ssh_config):  # noqa: F811
    """`ssh <name>` alone, typed in a terminal, as the README shows it: the config's login block runs bash."""
    assert f"{LOGIN_EXAMPLE}   " in readme()
    command = LOGIN_EXAMPLE.replace(README_HOST, f"-F {ssh_config['user_config']} {hosts(app)[0]}")
    typed = 'echo "LOGIN:$PWD|$VIRTUAL_ENV|$(command -v python)|$(id -un)|$0|$HOME"; exit\n'
    output = in_a_terminal(app, ssh_config, command, typed)
    found = re.search(r"LOGIN:(/\S*)\r?\n", output)
    assert found, output[-3000:]
    assert found.group(1) == (f"{HOME}/project|{HOME}/project-venv|{HOME}/project-venv/bin/python|pythonuser|"
                              f"/bin/bash|{HOME}")


def test_status_over_the_fly_inventory_reads_each_machine_in_one_module_run(app, ssh_config):  # noqa: F811
    result, output = ansible(app, "ansible-playbook", "-vvv", "playbooks/status.yml")
    assert result.returncode == 0, failures(output)
    # What the report task shows, with the YAML callback's folded lines joined again.
    printed = " ".join(output.split("TASK [Show the machine's state]")[-1].split())
    stopped_id = app["machines"][f"{app['name']}-m3"]
    assert f"{stopped_id} ({app['name']}-m3, stopped)" in " ".join(output.split())
    assert printed.count("- 'jupyter: up, http://localhost:8888/lab; token hidden") == len(started(app))
    name = app["name"]
    assert printed.count(f"- 'Open it: fly proxy 8888 {name}.flycast -a {name} (jupyter; starts a stopped Machine; "
                         "any one of the Machines)'") == len(started(app))
    assert printed.count("- 'Next run: nothing to change, as far as status can tell'") == len(started(app))
    assert printed.count("- 'Provisioned: 20") == len(started(app))
    # Nothing is uploaded and no PTY is asked for.
    assert not re.search(r"^<[^>]+> PUT ", output, re.M) and " -tt " not in output
