"""The OpenSSH config: options taken from how Ansible connects, the certificate checked, the file private."""
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_ssh_config import (
    FALLBACK_CONTROL_DIR, SshConfigError, alias, file_name, options_from_args, render, write)
from ansible_collections.devbox.machine.plugins.plugin_utils.ssh_login_wanted import is_login

LOGIN_CHECK = [sys.executable, "/p/plugins/plugin_utils/ssh_login_wanted.py"]

ARGS = ("-o 'ProxyCommand=/usr/bin/python3 /p/fly_proxy_command.py --fly /bin/fly --app app --port %p %h' "
        "-o ControlMaster=auto -o ControlPersist=120s -o StrictHostKeyChecking=no -o 'CertificateFile={cert}'")


def fly_entry(cert, **overrides):
    entry = {"inventory_name": "aged-wind-2649", "connection": "ssh", "address": "m1.vm.app.internal", "port": "",
             "user": "pythonuser", "key_file": cert[:-len("-cert.pub")], "common_args": ARGS.format(cert=cert),
             "extra_args": "", "fly_app": "app", "inventory_file": "/p/inventory/fly.yml",
             "home": "/home/pythonuser", "project_dir": "project"}
    entry.update(overrides)
    return entry


@pytest.fixture
def certificate(tmp_path):
    """A key and a certificate for principals root and pythonuser, signed by a throwaway CA."""
    for name in ("ca", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "t", "-n", "root,pythonuser,fly",
                    "-V", "-5m:+1h", str(tmp_path / "id.pub")], check=True)
    return str(tmp_path / "id-cert.pub")


def test_options_keep_their_order_and_other_flags_are_refused():
    assert options_from_args("-o A=1 -oB=two -o 'C=x y'") == [("A", "1"), ("B", "two"), ("C", "x y")]
    with pytest.raises(SshConfigError, match="'-J'"):
        options_from_args("-J jump")


def test_a_fly_machine_gets_a_host_with_the_proxy_and_certificate_and_a_master_of_its_own(certificate):
    text, names, notes = render([fly_entry(certificate)], "/p/.ssh")
    assert names == ["devbox-app-aged-wind-2649"]
    assert "Host devbox-app-aged-wind-2649\n    HostName m1.vm.app.internal\n    User pythonuser\n" in text
    assert "    ProxyCommand /usr/bin/python3 /p/fly_proxy_command.py --fly /bin/fly --app app --port %p %h\n" in text
    assert f"    CertificateFile {certificate}\n" in text
    # Not Ansible's 120 s master: one of the user's own, shared by every client, beside the config.
    assert "ControlPersist 120s" not in text
    assert "    ControlMaster auto\n    ControlPath /p/.ssh/%C\n    ControlPersist 10m\n" in text
    assert any("certificate valid from" in note for note in notes)


def test_a_control_path_too_long_for_a_socket_goes_to_dot_ssh(certificate):
    text, _, _ = render([fly_entry(certificate)], "/p/" + "x" * 60)
    assert f"    ControlPath {FALLBACK_CONTROL_DIR}/%C\n" in text


def test_a_fly_login_gets_bash_in_the_project_as_a_word_list_only_when_no_command_is_given(certificate):
    text, _, _ = render([fly_entry(certificate)], "/p/.ssh", LOGIN_CHECK)
    assert (f'Match originalhost devbox-app-aged-wind-2649 exec "{sys.executable} /p/plugins/plugin_utils/ssh_login_wanted.py"\n'
            "    RequestTTY yes\n"
            "    RemoteCommand /usr/bin/env -C /home/pythonuser/project HOME=/home/pythonuser USER=pythonuser "
            "LOGNAME=pythonuser SHELL=/bin/bash TERM=xterm-256color /bin/bash -l\n") in text
    without_check, _, _ = render([fly_entry(certificate)], "/p/.ssh")
    assert "RemoteCommand" not in without_check


def test_an_ssh_host_login_needs_no_remote_command(certificate):
    text, _, _ = render([fly_entry(certificate, fly_app="")], "/p/.ssh", LOGIN_CHECK)
    assert "RemoteCommand" not in text and "Match" not in text


@pytest.mark.parametrize("field, value", [("home", "/home/a b"), ("home", "home/x"), ("project_dir", "../etc")])
def test_a_login_path_that_is_not_plain_is_refused(certificate, field, value):
    with pytest.raises(SshConfigError):
        render([fly_entry(certificate, **{field: value})], "/p/.ssh", LOGIN_CHECK)


@pytest.mark.parametrize("argv, login", [
    (["ssh", "devbox-a-m"], True),
    (["ssh", "-F", "cfg", "-tt", "devbox-a-m"], True),
    (["ssh", "devbox-a-m", "-v"], True),
    (["ssh", "-oBatchMode=yes", "-p22", "devbox-a-m"], True),
    (["ssh", "devbox-a-m", "id", "-un"], False),
    (["ssh", "-T", "-D", "52147", "devbox-a-m", "bash"], False),  # VS Code Remote-SSH
    (["ssh", "-N", "-L", "18888:fly-local-6pn:8888", "devbox-a-m"], False),
    (["ssh", "-G", "devbox-a-m"], False),
    (["ssh", "-O", "exit", "devbox-a-m"], False),
    (["ssh", "-s", "devbox-a-m", "sftp"], False),
    (["ssh", "-l", "x", "--", "devbox-a-m", "ls"], False),
    (["ssh", "-F"], False),
])
def test_a_login_is_told_from_a_command_as_ssh_parses_its_arguments(argv, login):
    assert is_login(argv) is login


def test_openssh_applies_the_login_block_only_where_the_check_says_so(certificate, tmp_path):
    for check, wanted in (["true"], True), (["false"], False):
        text, names, _ = render([fly_entry(certificate)], str(tmp_path), check)
        (tmp_path / "devbox_fly-app.conf").write_text(text)
        result = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "devbox_fly-app.conf"), names[0]],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        settings = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        assert ("remotecommand" in settings) is wanted
        assert (settings["controlmaster"], settings["controlpersist"]) == ("auto", "600")
        assert re.fullmatch(r".*/[0-9a-f]{40}", settings["controlpath"]), "one socket per connection hash (%C)"


def test_a_certificate_without_the_dev_user_is_reported(certificate):
    _, _, notes = render([fly_entry(certificate, user="alice")])
    assert any("not alice: logging in as alice will be refused" in note for note in notes)


def test_a_docker_machine_gets_no_host_but_a_reason():
    text, names, notes = render([{"inventory_name": "devbox-local", "connection": "community.docker.docker",
                                  "address": "devbox-local", "user": "pythonuser", "home": "/home/pythonuser"}])
    assert names == [] and "\nHost " not in text
    assert notes == ["devbox-local: reached with community.docker.docker, not SSH (no SSH server there): no Host "
                     "entry; a shell: docker exec -it -u pythonuser -w /home/pythonuser/project devbox-local bash -i; "
                     "VS Code: Dev Containers, 'Attach to Running Container'"]


def test_file_names_follow_the_app_or_the_inventory(certificate):
    assert file_name([fly_entry(certificate)]) == "devbox_fly-app.conf"
    assert alias({"inventory_name": "gpu-box", "fly_app": ""}) == "devbox-gpu-box"
    with pytest.raises(SshConfigError, match="'gpu box' cannot become a file name"):  # refused, never rewritten
        alias({"inventory_name": "gpu box", "fly_app": ""})
    assert file_name([{"inventory_file": "/x/inventory/ssh_hosts.yml"}]) == "devbox_ssh_hosts.conf"


def test_the_file_is_private_and_rewritten_only_when_it_differs(tmp_path):
    folder = tmp_path / ".ssh"
    assert write(str(folder), "devbox_x.conf", "Host a\n") is True
    assert write(str(folder), "devbox_x.conf", "Host a\n") is False
    assert os.stat(folder).st_mode & 0o777 == 0o700 and os.stat(folder / "devbox_x.conf").st_mode & 0o777 == 0o600


def test_openssh_accepts_the_file(certificate, tmp_path):
    text, names, _ = render([fly_entry(certificate)], str(tmp_path), LOGIN_CHECK)
    (tmp_path / "devbox_fly-app.conf").write_text(text)
    (tmp_path / "config").write_text(f"Include {tmp_path}/devbox_*.conf\n")
    result = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "config"), names[0]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    settings = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert settings["hostname"] == "m1.vm.app.internal" and settings["user"] == "pythonuser"
    assert settings["proxycommand"].endswith("--port %p %h") and settings["certificatefile"] == certificate


# Issue 24, finding 6: a host name with newlines would put `Host *` with a ProxyCommand into the file
# Included at the top of the operator's ~/.ssh/config.
EVIL_NAME = "box\nHost *\n    ProxyCommand touch /tmp/devbox-pwned"


@pytest.mark.parametrize("field, value", [("inventory_name", EVIL_NAME), ("fly_app", EVIL_NAME),
                                          ("address", EVIL_NAME), ("user", "pythonuser\nHost *"),
                                          ("key_file", "/k\nHost *\n    ProxyCommand x")])
def test_a_name_with_newlines_never_reaches_the_config(certificate, field, value):
    with pytest.raises(SshConfigError) as refused:
        render([fly_entry(certificate, **{field: value})])
    assert "\\n" in str(refused.value) and "\n" not in str(refused.value), "the name is shown escaped"


def test_the_playbook_refuses_a_hostile_inventory_name_and_writes_nothing(tmp_path):
    from test_jupyter_settings import run_ansible
    inventory = tmp_path / "hostile.yml"
    inventory.write_text('all:\n  hosts:\n    "box\\nHost *\\n    ProxyCommand touch /tmp/devbox-pwned":\n'
                         "      ansible_connection: ssh\n      ansible_host: 127.0.0.1\n")
    result = run_ansible("ansible-playbook", "-i", str(inventory), "playbooks/ssh_config.yml",
                         "-e", f"ssh_config_dir={tmp_path / 'ssh'}")
    assert result.returncode != 0, result.stdout[-2000:]
    assert "cannot become a file name or an ssh config word" in result.stdout
    written = list((tmp_path / "ssh").glob("*")) if (tmp_path / "ssh").exists() else []
    assert written == [], [path.read_text() for path in written]


@pytest.mark.parametrize("words, login", [([], True), (["-tt"], True), (["id", "-un"], False), (["-N"], False),
                                          (["-T", "bash"], False)])
def test_real_ssh_applies_the_login_block_only_to_a_login(certificate, tmp_path, words, login):
    """The check reads the command line of the ssh that runs it (ProxyCommand false: no server needed)."""
    from fly_testkit import ROOT
    check = [sys.executable, os.path.join(ROOT, "plugins", "plugin_utils", "ssh_login_wanted.py")]
    text, names, _ = render([fly_entry(certificate)], str(tmp_path), check)
    (tmp_path / "config").write_text(text.replace("ProxyCommand /usr/bin/python3", "ProxyCommand false #"))
    result = subprocess.run(["ssh", "-vvv", "-F", str(tmp_path / "config"), names[0], *words],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ("debug2: match found" in result.stderr) is login, result.stderr[-2000:]
    assert "Cannot execute command-line and remote command" not in result.stderr
