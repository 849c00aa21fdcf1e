"""bench/latency_relay.py, the bench's SSH ProxyCommand with latency: it delays each direction by
half the round trip, passes the bytes intact and in order, and ends cleanly from either side."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fly_testkit import ROOT, echo_server

RELAY = os.path.join(ROOT, "bench", "latency_relay.py")


def start_relay(port: int, rtt_ms: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, RELAY, "--rtt-ms", str(rtt_ms), "127.0.0.1", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def round_trip(relay: subprocess.Popen, message: bytes) -> float:
    """Seconds from writing message to the relay until its echo is back on the relay's stdout."""
    started = time.monotonic()
    relay.stdin.write(message)
    relay.stdin.flush()
    received = b""
    while len(received) < len(message):
        received += os.read(relay.stdout.fileno(), 65536)
    assert received == message
    return time.monotonic() - started


@pytest.fixture
def echo():
    server = echo_server()
    yield server.getsockname()[1]
    server.close()


def test_each_round_trip_through_the_relay_takes_the_given_time(echo):
    relay = start_relay(echo, 200)
    try:
        round_trip(relay, b"connect")  # the relay's own start (Python, the TCP connect) is not timed
        times = [round_trip(relay, f"ping {number}".encode()) for number in range(3)]
    finally:
        relay.kill()
        relay.wait()
    # 100 ms out and 100 ms back; loopback and the echo add well under 100 ms even on a busy machine.
    assert all(0.2 <= seconds < 0.3 for seconds in times), times


def test_without_delay_the_relay_adds_next_to_nothing(echo):
    relay = start_relay(echo, 0)
    try:
        round_trip(relay, b"connect")
        assert min(round_trip(relay, b"ping") for _ in range(5)) < 0.05
    finally:
        relay.kill()
        relay.wait()


def test_bytes_pass_intact_and_in_order_and_the_relay_exits_0_after_its_input_ends(echo):
    payload = os.urandom(3 * 1024 * 1024)  # many chunks in flight at once, each direction
    relay = start_relay(echo, 20)
    received = []
    reader = threading.Thread(target=lambda: received.append(relay.stdout.read()))
    reader.start()
    relay.stdin.write(payload)
    relay.stdin.close()  # end of input: the relay half-closes, the echo server ends, so does the relay
    reader.join(timeout=10)
    assert relay.wait(timeout=10) == 0, relay.stderr.read().decode()
    assert received and received[0] == payload


def test_the_relay_exits_0_when_the_server_closes_the_connection():
    server = socket.create_server(("127.0.0.1", 0))
    relay = start_relay(server.getsockname()[1], 20)
    connection, _ = server.accept()
    with connection:
        connection.sendall(b"SSH-2.0-bye\r\n")
    server.close()
    assert relay.stdout.read() == b"SSH-2.0-bye\r\n"  # up to the end of file the server's close sent
    relay.stdin.close()  # as ssh does once its ProxyCommand's output ended
    assert relay.wait(timeout=5) == 0, relay.stderr.read().decode()


def test_an_unreachable_server_is_an_error_that_names_it():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free again once closed: nothing listens there
    relay = start_relay(port, 0)
    _, stderr = relay.communicate(timeout=10)
    assert relay.returncode == 1
    assert f"127.0.0.1 port {port}" in stderr.decode()
