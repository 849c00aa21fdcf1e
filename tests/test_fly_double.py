"""Pins the `fly` test double to flyctl's real interface (shared/docs/fly-facts.md, flyctl's
source: internal/command/ssh/issue.go, proxy/connect.go, internal/render/render.go), so the
double cannot drift from what the project will meet in real use."""
import json
import os
import re
import socket
import stat
import subprocess

import pytest

from fly_testkit import DOUBLE, ORG, echo_server, fly_env, load_source, make_state, process_gone, wait_until

double = load_source("fly_double", DOUBLE)

# fly-facts.md: a Machine object from `fly machines list --json`, keys in this order.
MACHINE_KEYS = ["id", "name", "state", "region", "image_ref", "instance_id", "private_ip", "created_at",
                "updated_at", "host_status", "cordoned", "config"]
CONFIG_KEYS = ["init", "image", "guest", "mounts", "restart", "metadata"]
ISSUE_BANNER = (
    "\n"
    "!!!! WARNING: We're now prompting you to save an SSH private key and certificate       !!!!\n"
    "!!!! (the private key in \"id_whatever\" and the certificate in \"id_whatever-cert.pub\"). !!!!\n"
    "!!!! These SSH credentials are time-limited and handling them in files is clunky;      !!!!\n"
    "!!!! consider running an SSH agent and running this command with --agent. Things       !!!!\n"
    "!!!! should just sort of work like magic if you do.                                    !!!!\n"
)
READY_LINE = re.compile(r"^Proxying localhost:(\d+) to remote \[(.+)\]:(\d+)\n$")

INSPECT = {
    "Id": "4efc10ea447048510809599a9f4a447c92126187556094dd03a5871342a2586e",
    "Created": "2026-11-28T14:22:50.123456789Z",
    "Image": "sha256:3c4a56d1d77f5c81e26549a2b35c114cbbf226f40b1c77b4810fa0c1eec32e1d",
    "State": {"Running": True, "StartedAt": "2026-11-28T14:22:51.5Z"},
    "Config": {"Labels": {"fly_app": "myapp", "fly_machine_id": "a5c5de9ce64ca12", "fly_machine_name": "aged-wind-2649",
                          "fly_region": "ord", "fly_swap_size_mb": "32768"}},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.4"}}},
    "Mounts": [{"Type": "volume", "Name": "devbox-e2e-home-1", "Destination": "/home/pythonuser"},
               {"Type": "bind", "Source": "/etc/ssl/certs/ca-certificates.crt", "Destination": "/etc/devbox/ca-bundle.pem"}],
}


def run_double(state, *args, logged_in=True, **env):
    return subprocess.run([DOUBLE, *args], capture_output=True, text=True, timeout=60,
                          env=fly_env(state, logged_in=logged_in, **env), stdin=subprocess.DEVNULL)


@pytest.fixture
def state(tmp_path):
    return make_state(str(tmp_path / "fly-state"), {"myapp": ORG})


def test_a_started_container_is_a_machine_object_with_the_documented_shape():
    machine = double.machine_json(INSPECT)
    assert list(machine) == MACHINE_KEYS
    assert list(machine["config"]) == CONFIG_KEYS
    assert machine["id"] == "a5c5de9ce64ca12" and machine["state"] == "started" and machine["private_ip"] == "172.17.0.4"
    assert machine["created_at"] == "2026-11-28T14:22:50Z"
    assert machine["config"]["init"] == {"swap_size_mb": 32768}
    assert machine["config"]["guest"] == {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768}
    [mount] = machine["config"]["mounts"]
    assert re.fullmatch(r"vol_[0-9a-f]{16}", mount.pop("volume"))
    assert mount == {"path": "/home/pythonuser", "name": "data", "size_gb": 100, "encrypted": True}
    assert machine["cordoned"] is False


def test_a_stopped_container_is_a_stopped_machine_and_empty_fields_are_omitted():
    inspect = json.loads(json.dumps(INSPECT))
    inspect["State"] = {"Running": False, "StartedAt": ""}
    inspect["Config"]["Labels"].pop("fly_swap_size_mb")
    machine = double.machine_json(inspect)
    assert machine["state"] == "stopped"
    assert "private_ip" not in machine and "init" not in machine["config"]
    assert "cordoned" in machine and "image_ref" in machine


def test_json_is_rendered_like_flyctl_with_four_spaces_and_a_final_newline(capsys):
    double.render_json([{"id": "x", "config": {"guest": {"cpus": 1}}}])
    assert capsys.readouterr().out == '[\n    {\n        "id": "x",\n        "config": {\n            "guest": {\n' \
                                      '                "cpus": 1\n            }\n        }\n    }\n]\n'


def test_not_logged_in_is_flyctls_no_token_error(state):
    result = run_double(state, "auth", "whoami", logged_in=False)
    assert result.returncode == 1
    assert result.stderr == "Error: No access token available. Please login with 'flyctl auth login'\n"
    assert run_double(state, "auth", "whoami").stdout == "developer@example.com\n"


def test_status_of_a_missing_app_fails_like_flyctl(state):
    result = run_double(state, "status", "--json", "-a", "no-such-app")
    assert result.returncode == 1
    assert result.stderr == "Error: failed to get app: Could not find App\n"


def test_ssh_issue_writes_a_key_and_a_certificate_like_flyctl(state, tmp_path):
    path = str(tmp_path / "id_test")
    result = run_double(state, "ssh", "issue", ORG, path, "--hours", "2", "-u", "root", "-u", "pythonuser")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ISSUE_BANNER + f"Wrote 2-hour SSH credential to {path}, {path}-cert.pub\n"
    for written in (path, path + "-cert.pub"):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", path], capture_output=True, text=True, check=True).stdout
    assert "fly.io (ED25519)" in fingerprint
    listing = subprocess.run(["ssh-keygen", "-L", "-f", path + "-cert.pub"], capture_output=True, text=True,
                             check=True).stdout
    assert "ssh-ed25519-cert-v01@openssh.com user certificate" in listing
    assert re.search(r"Principals: *\n\s+root\n\s+pythonuser\n", listing)


def test_ssh_issue_refuses_existing_files_and_then_fails_without_a_terminal(state, tmp_path):
    path = tmp_path / "id_test"
    path.write_text("keep me")
    result = run_double(state, "ssh", "issue", ORG, str(path), "--hours", "1")
    assert result.returncode == 1
    assert f"Can't open private key file: open {path}: file exists" in result.stdout
    assert result.stderr == "Error: prompt: non interactive\n"
    assert path.read_text() == "keep me" and not os.path.exists(f"{path}-cert.pub")


def test_ssh_issue_rejects_overwrite_and_bad_hours(state, tmp_path):
    # flyctl loops forever with --overwrite; the double fails so a test catches any such call.
    assert run_double(state, "ssh", "issue", ORG, str(tmp_path / "k"), "--overwrite").returncode == 1
    result = run_double(state, "ssh", "issue", ORG, str(tmp_path / "k"), "--hours", "73")
    assert result.returncode == 1 and "Invalid expiration time (1-72 hours)" in result.stderr




def test_proxy_prints_the_readiness_line_relays_and_exits_when_stdin_closes(state):
    server = echo_server()
    port = server.getsockname()[1]
    proxy = subprocess.Popen([DOUBLE, "proxy", f"0:{port}", "127.0.0.1", "-a", "myapp", "--watch-stdin"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=fly_env(state))
    try:
        line = proxy.stdout.readline()
        match = READY_LINE.match(line)
        assert match, line
        assert match.group(2) == "127.0.0.1" and match.group(3) == str(port)
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=5) as connection:
            connection.sendall(b"ping")
            assert connection.recv(4) == b"ping"
        proxy.stdin.close()
        assert proxy.wait(10) == 0
    finally:
        proxy.kill()
        proxy.wait()
        server.close()


def test_proxy_to_a_name_not_in_dns_fails_like_flyctl(state):
    result = run_double(state, "proxy", "0:22", "0123456789abcd.vm.myapp.internal", "-a", "myapp",
                        FLY_DOUBLE_DNS_WAIT="1")
    assert result.returncode == 1
    assert result.stderr == "Error: 0123456789abcd.vm.myapp.internal: host was not found in DNS\n"
    assert result.stdout == ""


def test_process_gone_tells_a_running_process_from_an_exited_one():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert not process_gone(child.pid)
    finally:
        child.kill()
    assert wait_until(lambda: process_gone(child.pid))
    child.wait()


def test_status_json_has_flyctls_top_level_keys_and_the_org_slug(state):
    result = run_double(state, "status", "--json", "-a", "myapp")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    # Go's encoder sorts map keys: renderMachineJSONStatus builds a map.
    assert list(status) == ["AppURL", "Deployed", "Hostname", "ID", "Machines", "Name", "Organization",
                            "PlatformVersion", "Status", "Version"]
    assert status["Name"] == "myapp" and status["Organization"]["Slug"] == ORG
    assert {"ID", "Name", "Slug"} <= set(status["Organization"])
    assert result.stdout == json.dumps(status, indent=4) + "\n"
