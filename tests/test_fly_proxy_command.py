"""The ProxyCommand helper: readiness parsing, relaying, and no `fly proxy` left behind."""
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from docker_machines import wait_until
from fly_testkit import DOUBLE, ORG, PROXY_HELPER, calls, echo_server, fly_env, load_source, make_state, process_gone

helper = load_source("fly_proxy_command", PROXY_HELPER)
APP = "proxyapp"


def test_the_readiness_line_gives_the_local_port():
    assert helper.parse_ready_line("Proxying localhost:40123 to remote [a5c5de9ce64ca12.vm.myapp.internal]:22\n") == 40123
    assert helper.parse_ready_line("Proxying localhost:8888 to remote [fdaa:0:18:a7b:196:e274:9ce1:2]:8888") == 8888
    assert helper.parse_ready_line("Starting WireGuard tunnel") is None
    assert helper.parse_ready_line("Proxying redis to port \"16379\"") is None


@pytest.fixture
def echo_port():
    server = echo_server()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def state(tmp_path):
    return make_state(str(tmp_path / "state"), {APP: ORG})


def start_helper(state, port, host="127.0.0.1", fly=DOUBLE, *extra, **env):
    return subprocess.Popen([sys.executable, PROXY_HELPER, "--fly", fly, "--app", APP, "--port", str(port), *extra, host],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=fly_env(state, **env))


def proxy_pid(state):
    """The pid of the `fly proxy` the helper started (the double logs every call)."""
    wait_until(lambda: any(c["argv"][0] == "proxy" for c in calls(state)), timeout=10, what="the helper's `fly proxy`")
    [call] = [c for c in calls(state) if c["argv"][0] == "proxy"]
    return call["pid"], call["argv"]


def round_trip(process, payload=b"SSH-2.0-test\r\n"):
    process.stdin.write(payload)
    process.stdin.flush()
    return os.read(process.stdout.fileno(), len(payload))


def test_it_starts_fly_proxy_on_a_random_port_and_relays_both_ways(state, echo_port):
    process = start_helper(state, echo_port)
    try:
        assert round_trip(process) == b"SSH-2.0-test\r\n"
        pid, argv = proxy_pid(state)
        assert argv == ["proxy", f"0:{echo_port}", "127.0.0.1", "-a", APP, "--watch-stdin"]
        process.stdin.close()  # ssh closes the connection
        assert process.wait(10) == 0
        wait_until(lambda: process_gone(pid), timeout=10, what="fly proxy to end with the helper")
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_no_fly_proxy_is_left_when_the_helper_is_signalled(state, echo_port, sig):
    process = start_helper(state, echo_port)
    try:
        assert round_trip(process) == b"SSH-2.0-test\r\n"
        pid, _ = proxy_pid(state)
        process.send_signal(sig)
        process.wait(10)
        # SIGKILL cannot be handled: then --watch-stdin ends the proxy when its stdin closes.
        wait_until(lambda: process_gone(pid), timeout=10, what=f"fly proxy to end with a helper killed by {sig.name}")
    finally:
        process.kill()
        process.wait()


def test_a_proxy_that_dies_mid_session_is_reported(state, echo_port):
    process = start_helper(state, echo_port)
    try:
        assert round_trip(process) == b"SSH-2.0-test\r\n"
        pid, _ = proxy_pid(state)
        os.kill(pid, signal.SIGKILL)
        assert process.wait(15) == 255
        assert b"`fly proxy` to 127.0.0.1 exited" in process.stderr.read()
    finally:
        process.kill()
        process.wait()


def test_a_machine_not_in_dns_is_a_clear_error(state):
    host = "0123456789abcd.vm.proxyapp.internal"
    process = start_helper(state, 22, host, FLY_DOUBLE_DNS_WAIT="1")
    try:
        assert process.wait(60) == 255
        message = process.stderr.read().decode()
        assert f"{host}: host was not found in DNS" in message
        assert f"fly machine start <id> -a {APP}" in message
        assert process.stdout.read() == b""
    finally:
        process.kill()
        process.wait()


def test_a_proxy_that_never_gets_ready_is_stopped_with_its_process_group(state, tmp_path):
    silent_fly = tmp_path / "fly"
    pid_file = tmp_path / "pid"
    silent_fly.write_text(f"#!/bin/sh\necho $$ > {pid_file}\necho 'Starting WireGuard'\nexec sleep 60\n")
    silent_fly.chmod(0o755)
    process = start_helper(state, 22, "x.vm.proxyapp.internal", str(silent_fly), "--ready-timeout", "1")
    try:
        assert process.wait(30) == 255
        assert b"printed no readiness line within 1 s" in process.stderr.read()
        wait_until(lambda: process_gone(int(pid_file.read_text())), timeout=10, what="the silent fly proxy to end")
    finally:
        process.kill()
        process.wait()


def test_a_server_not_listening_yet_is_retried_with_what_ssh_had_sent(state):
    # A Machine just started: its SSH server drops the first connection, then answers.
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        first, _ = server.accept()
        first.close()
        with server.accept()[0] as second:
            while data := second.recv(4096):
                second.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    process = start_helper(state, server.getsockname()[1])
    try:
        assert round_trip(process) == b"SSH-2.0-test\r\n"
        process.stdin.close()
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
        server.close()


def test_flyctls_error_line_is_reported_not_the_description_after_it(state):
    process = start_helper(state, 22, FLY_DOUBLE_AGENT_FAILS="wireguard: handshake did not complete")
    try:
        assert process.wait(30) == 255
        message = process.stderr.read().decode()
        assert "exited with status 1: agent: failed to start" in message
        assert "A copy of this log" not in message
    finally:
        process.kill()
        process.wait()
