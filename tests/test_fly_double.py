"""Pins the `fly` test double to flyctl's real interface (shared/docs/fly-facts.md, flyctl's
source at ad0172f: internal/command/ssh/issue.go, internal/command/orgs/orgs.go, agent/start.go,
internal/command/agent/, internal/command/auth/whoami.go, internal/cli/cli.go, proxy/connect.go,
internal/render/render.go; fly-go v0.9.6 machine_types.go), so the double cannot drift from
what the project will meet in real use."""
import json
import os
import re
import socket
import stat
import subprocess
import time

import pytest

from docker_machines import base_image, wait_until
from fly_testkit import (DOUBLE, ORG, ca_path, echo_server, fingerprint, fly_env, load_source, make_state, process_gone,
                         set_ips, signing_ca)

double = load_source("fly_double", DOUBLE)

# fly-go v0.9.6 (machine_types.go): a Machine and its config as Go's encoder writes the structs,
# fields in declaration order. (fly-facts.md's example lists host_status and cordoned first.)
MACHINE_KEYS = ["id", "name", "state", "region", "image_ref", "instance_id", "private_ip", "created_at",
                "updated_at", "config", "host_status", "cordoned"]
CONFIG_KEYS = ["init", "guest", "metadata", "mounts", "image", "restart"]
OTHER_ORG = "other-org"
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
    "NetworkSettings": {"Networks": {"devbox-6pn": {"IPAddress": "172.17.0.4",
                                                    "GlobalIPv6Address": "fdaa:0:18:a7b:196:e274:9ce1:2"}}},
    "Mounts": [{"Type": "volume", "Name": "devbox-e2e-home-1", "Destination": "/home/pythonuser"},
               {"Type": "bind", "Source": "/etc/ssl/certs/ca-certificates.crt", "Destination": "/etc/devbox/ca-bundle.pem"}],
}


def run_double(state, *args, logged_in=True, **env):
    return subprocess.run([DOUBLE, *args], capture_output=True, text=True, timeout=60,
                          env=fly_env(state, logged_in=logged_in, **env), stdin=subprocess.DEVNULL)


@pytest.fixture
def state(tmp_path):
    return make_state(str(tmp_path / "fly-state"), {"myapp": ORG}, other_orgs=(OTHER_ORG,))


def test_a_started_container_is_a_machine_object_with_the_documented_shape():
    machine = double.machine_json(INSPECT)
    assert list(machine) == MACHINE_KEYS
    assert list(machine["config"]) == CONFIG_KEYS
    assert machine["id"] == "a5c5de9ce64ca12" and machine["state"] == "started"
    assert machine["private_ip"] == "fdaa:0:18:a7b:196:e274:9ce1:2", "a 6PN address is IPv6"
    assert machine["created_at"] == "2026-11-28T14:22:50Z"
    assert machine["config"]["init"] == {"swap_size_mb": 32768}
    assert machine["config"]["guest"] == {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768}
    [mount] = machine["config"]["mounts"]
    assert re.fullmatch(r"vol_[0-9a-f]{16}", mount.pop("volume"))
    assert mount == {"path": "/home/pythonuser", "name": "data", "size_gb": 100, "encrypted": True}
    assert machine["cordoned"] is False and machine["host_status"] == "ok"
    assert machine["config"]["metadata"] == {"fly_platform_version": "v2", "fly_process_group": "app"}


def test_console_and_release_command_machines_carry_their_process_group():
    for group in ("fly_app_console", "fly_app_release_command"):
        inspect = json.loads(json.dumps(INSPECT))
        inspect["Config"]["Labels"]["fly_process_group"] = group
        assert double.machine_json(inspect)["config"]["metadata"]["fly_process_group"] == group


def test_a_machine_on_an_unreachable_host_has_only_an_incomplete_config():
    inspect = json.loads(json.dumps(INSPECT))
    inspect["Config"]["Labels"]["fly_host_status"] = "unreachable"
    machine = double.machine_json(inspect)
    assert machine["host_status"] == "unreachable" and "config" not in machine
    assert list(machine)[-1] == "incomplete_config"
    assert machine["incomplete_config"]["metadata"]["fly_process_group"] == "app"


def test_a_stopped_container_is_a_stopped_machine_and_empty_fields_are_omitted():
    inspect = json.loads(json.dumps(INSPECT))
    inspect["State"] = {"Running": False, "StartedAt": ""}
    inspect["Config"]["Labels"].pop("fly_swap_size_mb")
    machine = double.machine_json(inspect)
    assert machine["state"] == "stopped"
    assert "private_ip" not in machine and machine["config"]["init"] == {}, "init has no omitempty"
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


def test_whoami_fails_for_other_reasons_than_login_with_flyctls_wrapping(state):
    result = run_double(state, "auth", "whoami", FLY_DOUBLE_API_UNREACHABLE="1")
    assert result.returncode == 1
    assert result.stderr == ('Error: failed retrieving current user: Post "https://api.fly.io/graphql": '
                             "dial tcp: lookup api.fly.io: no such host\n")


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


def test_ssh_issue_without_usernames_names_root_and_fly(state, tmp_path):
    path = str(tmp_path / "id_test")
    assert run_double(state, "ssh", "issue", ORG, path).returncode == 0
    listing = subprocess.run(["ssh-keygen", "-L", "-f", path + "-cert.pub"], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r"Principals: *\n\s+root\n\s+fly\n", listing)


def test_ssh_issue_takes_the_org_from_the_flag_then_fly_org_then_the_first_argument(state, tmp_path):
    ours, theirs = fingerprint(ca_path(state, ORG) + ".pub"), fingerprint(ca_path(state, OTHER_ORG) + ".pub")
    plain, flagged = str(tmp_path / "plain"), str(tmp_path / "flagged")
    assert run_double(state, "ssh", "issue", ORG, plain, FLY_ORG=OTHER_ORG).returncode == 0
    assert signing_ca(plain + "-cert.pub") == theirs, "FLY_ORG wins over the first argument"
    assert run_double(state, "ssh", "issue", ORG, flagged, "--org", ORG, FLY_ORG=OTHER_ORG).returncode == 0
    assert signing_ca(flagged + "-cert.pub") == ours, "--org wins over FLY_ORG; the path stays the second argument"


def test_ssh_issue_for_an_unknown_org_fails_like_flyctl(state, tmp_path):
    result = run_double(state, "ssh", "issue", "no-such-org", str(tmp_path / "k"))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: failed retrieving organization with slug no-such-org: ")
    result = run_double(state, "ssh", "issue")
    assert result.stderr == "Error: slug argument must be specified when not running interactively\n"


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


def test_agent_ping_and_start_behave_like_flyctls(state):
    result = run_double(state, "agent", "ping")
    assert (result.returncode, result.stderr) == (1, "Error: failed dialing agent: agent not running\n")
    assert run_double(state, "agent", "start", FLY_DOUBLE_AGENT_START_S="0").returncode == 0
    pong = run_double(state, "agent", "ping")
    assert pong.returncode == 0 and re.fullmatch(r"PID       : \d+\nVersion   : \S+\nBackground: true\n", pong.stdout)
    again = run_double(state, "agent", "start")
    assert again.returncode == 1
    assert again.stderr == ("Error: another instance of the agent is already running\n"
                            "It looks like another instance of the agent is already running. "
                            "Please stop it before starting a new one.\n\n")


def test_concurrent_first_proxies_without_an_agent_fail_like_flyctl(state):
    server = echo_server()
    port = server.getsockname()[1]
    command = [DOUBLE, "proxy", f"0:{port}", "127.0.0.1", "-a", "myapp", "--watch-stdin"]
    # An agent slow to start (5 s here) holds flyctl's start lock longer than the others wait for it (1 s).
    proxies = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=fly_env(state, FLY_DOUBLE_AGENT_START_S="5")) for _ in range(3)]
    try:
        lines = [(proxy.stdout.readline(), proxy) for proxy in proxies]
        ready = [proxy for line, proxy in lines if READY_LINE.match(line)]
        failed = [proxy for line, proxy in lines if not line]
        assert len(ready) == 1 and len(failed) == 2
        for proxy in failed:
            assert proxy.wait(10) == 1
            assert proxy.stderr.read() == "Error: another process is already starting the agent\n"
        # Once the agent runs, proxies start together without trouble.
        late = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=fly_env(state))
                for _ in range(3)]
        proxies += late
        assert all(READY_LINE.match(proxy.stdout.readline()) for proxy in late)
    finally:
        for proxy in proxies:
            proxy.kill()
            proxy.wait()
        server.close()


def test_an_agent_that_fails_to_start_prints_the_error_then_its_description(state):
    result = run_double(state, "proxy", "0:22", "127.0.0.1", "-a", "myapp", FLY_DOUBLE_AGENT_FAILS="wireguard: boom")
    assert result.returncode == 1
    log = os.path.join(state, "agent-logs", "1.log")
    assert result.stderr == ("Error: agent: failed to start\n"
                             "The agent failed to start with the following error log:\n\nwireguard: boom\n\n"
                             f"A copy of this log has been saved at {log}\n\n")


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
    wait_until(lambda: process_gone(child.pid), timeout=10, what=f"pid {child.pid} to end")
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


def test_version_json_is_buildinfo_on_one_line(state):
    result = run_double(state, "version", "--json", FLY_DOUBLE_VERSION="0.3.230")
    assert result.returncode == 0 and result.stdout.count("\n") == 1, "json.Encoder: one line"
    info = json.loads(result.stdout)
    assert list(info) == ["Name", "Version", "Commit", "BranchName", "BuildDate", "OS", "Architecture", "Environment"]
    assert info["Version"] == "0.3.230"


def start_proxy(state, port, **env):
    proxy = subprocess.Popen([DOUBLE, "proxy", f"0:{port}", "127.0.0.1", "-a", "myapp", "--watch-stdin"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=fly_env(state, **env))
    return proxy, proxy.stdout.readline()


def test_a_proxy_of_a_newer_flyctl_restarts_a_stale_agent_and_its_tunnels_go_with_it(state):
    """agent/client.go Establish: an agent older than the binary is killed with its tunnels, then restarted."""
    server = echo_server()
    port = server.getsockname()[1]
    old, line = start_proxy(state, port, FLY_DOUBLE_VERSION="0.3.200", FLY_DOUBLE_AGENT_START_S="0")
    new = None
    try:
        assert READY_LINE.match(line)
        assert json.loads(run_double(state, "agent", "ping", "--json").stdout)["Version"] == "0.3.200"
        new, line = start_proxy(state, port, FLY_DOUBLE_VERSION="0.3.230", FLY_DOUBLE_AGENT_START_S="0")
        assert READY_LINE.match(line)
        assert old.wait(10) is not None, "the tunnel the old agent carried is gone"
        assert json.loads(run_double(state, "agent", "ping", "--json").stdout)["Version"] == "0.3.230"
        new.stdin.close()
        new.wait(10)
        assert new.stderr.read() == (
            "The running flyctl agent (v0.3.200) is older than the current flyctl (v0.3.230).\n"
            "The out-of-date agent will be shut down along with existing wireguard connections. "
            "The new agent will start automatically as needed.\n")
    finally:
        for proxy in filter(None, (old, new)):
            proxy.kill()
            proxy.wait()
        server.close()


def test_agent_restart_kills_the_agent_and_its_tunnels_then_starts_one(state):
    server = echo_server()
    proxy, line = start_proxy(state, server.getsockname()[1], FLY_DOUBLE_AGENT_START_S="0")
    try:
        assert READY_LINE.match(line)
        before = json.loads(run_double(state, "agent", "ping", "--json").stdout)
        assert run_double(state, "agent", "restart", FLY_DOUBLE_AGENT_START_S="0").returncode == 0
        assert proxy.wait(10) is not None
        after = json.loads(run_double(state, "agent", "ping", "--json").stdout)
        assert after["PID"] != before["PID"] and list(after) == ["PID", "Version", "Background"]
    finally:
        proxy.kill()
        proxy.wait()
        server.close()


def test_a_new_agents_first_tunnel_can_be_slow_and_proxies_wait_for_it(state):
    """FLY_DOUBLE_TUNNEL_S: a new agent's tunnel comes up late; no proxy listens before it (WaitForTunnel)."""
    server = echo_server()
    proxy, line = start_proxy(state, server.getsockname()[1], FLY_DOUBLE_AGENT_START_S="0", FLY_DOUBLE_TUNNEL_S="2")
    try:
        listening_at = time.time()
        assert READY_LINE.match(line)
        with open(os.path.join(state, "agent.json"), encoding="utf-8") as handle:
            assert listening_at >= json.load(handle)["tunnel_at"]
    finally:
        proxy.kill()
        proxy.wait()
        server.close()


def test_ips_list_json_is_fly_gos_ip_addresses_with_the_shared_ipv4_last(state):
    set_ips(state, "myapp", [{"address": "66.241.124.163", "type": "shared_v4"},
                               {"address": "2a09:8280:1::37:fde9", "type": "v6"},
                               {"address": "fdaa:0:18:0:1::2", "type": "private_v6"}])
    result = run_double(state, "ips", "list", "-a", "myapp", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [list(ip) for ip in listed] == [["ID", "Address", "Type", "Region", "CreatedAt", "ServiceName", "Network"]] * 3
    assert [(ip["Address"], ip["Type"]) for ip in listed] == [
        ("2a09:8280:1::37:fde9", "v6"), ("fdaa:0:18:0:1::2", "private_v6"), ("66.241.124.163", "shared_v4")]
    assert listed[1]["Network"] == {"Name": "", "Organization": {"Slug": ORG}}
    assert listed[2]["ID"] == "" and listed[2]["Network"] is None
    set_ips(state, "myapp", [])
    assert run_double(state, "ips", "list", "-a", "myapp", "--json").stdout == "[]\n"


def test_a_flycast_name_is_in_dns_only_while_the_app_has_a_private_address(state):
    result = run_double(state, "proxy", "0:8888", "myapp.flycast", "-a", "myapp", FLY_DOUBLE_DNS_WAIT="1")
    assert (result.returncode, result.stderr) == (1, "Error: myapp.flycast: host was not found in DNS\n")


# A Machine's server: answers every connection with one line, on its private IPv4.
AWAKE_SERVER = ("use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => 8888, "
                "Listen => 5, ReuseAddr => 1) or die; while (my $c = $s->accept) { print $c \"awake\\n\"; close $c }")


def stopped_machine_behind_flycast(tmp_path, autostart: bool):
    """(app, state, container): an app with a Flycast address and one stopped Machine serving port 8888."""
    app = f"flycast-{os.urandom(4).hex()}"
    state = make_state(str(tmp_path / "fly-state"), {app: ORG})
    set_ips(state, app, [{"address": "fdaa:0:18:0:1::2", "type": "private_v6"}])
    container = f"{app}-m1"
    services = json.dumps([{"port": 8888, "internal_port": 8888, "autostart": autostart}])
    subprocess.run(["docker", "create", "--name", container, "--label", f"fly_app={app}", "--label",
                    "fly_machine_id=0123456789abcd", "--label", f"fly_services={services}", base_image(),
                    "perl", "-e", AWAKE_SERVER], check=True, capture_output=True)
    return app, state, container


def flycast_proxy(app: str, state: str) -> subprocess.Popen:
    """`fly proxy 0:8888 <app>.flycast`, as the README's way in, on a free local port."""
    return subprocess.Popen([DOUBLE, "proxy", "0:8888", f"{app}.flycast", "-a", app, "--watch-stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=fly_env(state))


def test_a_connection_to_the_flycast_address_starts_a_stopped_machine_and_reaches_it(tmp_path):
    app, state, container = stopped_machine_behind_flycast(tmp_path, autostart=True)
    proxy = flycast_proxy(app, state)
    try:
        match = READY_LINE.match(proxy.stdout.readline())
        assert match and match.group(2) == f"{app}.flycast"
        machines = json.loads(run_double(state, "machines", "list", "-a", app, "--json").stdout)
        assert machines[0]["state"] == "stopped"
        assert machines[0]["config"]["services"] == [{"protocol": "tcp", "internal_port": 8888, "autostop": "off",
                                                      "autostart": True, "ports": [{"port": 8888}]}]
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=90) as connection:
            connection.settimeout(90)
            assert connection.makefile().readline() == "awake\n"
        machines = json.loads(run_double(state, "machines", "list", "-a", app, "--json").stdout)
        assert machines[0]["state"] == "started"
    finally:
        proxy.kill()
        proxy.wait()
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def test_flycast_does_not_start_a_machine_whose_service_has_no_autostart(tmp_path):
    app, state, container = stopped_machine_behind_flycast(tmp_path, autostart=False)
    proxy = flycast_proxy(app, state)
    try:
        match = READY_LINE.match(proxy.stdout.readline())
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30) as connection:
            connection.settimeout(30)
            assert connection.recv(16) == b"", "Fly Proxy closes a connection it has no Machine for"
        state_now = json.loads(run_double(state, "machines", "list", "-a", app, "--json").stdout)[0]["state"]
        assert state_now == "stopped"
    finally:
        proxy.kill()
        proxy.wait()
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
