#!/usr/bin/env python3
"""OpenSSH ProxyCommand through `fly proxy`: ssh's stdin/stdout <-> a Machine's port 22.

    ProxyCommand python3 fly_proxy_command.py --app APP --port %p %h

Starts `fly proxy 0:<port> <host> -a <app> --watch-stdin` (a random local port), waits for
its line `Proxying localhost:<port> to remote [<host>]:<port>`, connects to that local port
and relays bytes both ways. When ssh closes the connection or signals the helper (SIGHUP,
SIGTERM, SIGINT), the proxy's process group is terminated; if the helper is killed outright,
the proxy still exits because its stdin (a pipe from the helper) closes (--watch-stdin).
Standard library only.
"""
from __future__ import annotations

import argparse
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

READY = re.compile(r"^Proxying localhost:(\d+) to remote (\S+)$")
STOP_GRACE_S = 3.0
EXIT_FAILURE = 255  # what ssh itself exits with when it cannot connect


class ProxyError(Exception):
    """The tunnel could not be opened or broke; the message says why and what to do."""


def parse_ready_line(line: str) -> int | None:
    """The local port from flyctl's readiness line, or None for any other line."""
    match = READY.match(line.strip())
    return int(match.group(1)) if match else None


class FlyProxy:
    """`fly proxy` as a child in its own process group, stopped with the group."""

    def __init__(self, fly: str, app: str, host: str, port: int):
        self.command = [fly, "proxy", f"0:{port}", host, "-a", app, "--watch-stdin"]
        self.host = host
        self.app = app
        self.process: subprocess.Popen | None = None
        self.stderr_text = b""

    def start(self, timeout: float, slow: tuple[float, Callable[[], None]] | None = None) -> int:
        """Start it and return the local port once it listens; slow=(seconds, say): say() once when it takes
        longer than that."""
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise ProxyError(f"cannot run {self.command[0]}: {error}") from None
        deadline = time.monotonic() + timeout
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        selector.register(self.process.stderr, selectors.EVENT_READ)
        buffered = b""
        open_streams = 2
        say_at = time.monotonic() + slow[0] if slow else None
        while open_streams:
            if say_at is not None and time.monotonic() >= say_at:
                slow[1]()
                say_at = None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                said = self.said()
                raise ProxyError(f"`{' '.join(self.command)}` printed no readiness line within {timeout:.0f} s"
                                 + (f" (it said: {said})" if said else "")
                                 + f"; is the Machine started? `fly machines list -a {self.app}`")
            for key, _ in selector.select(min(remaining, 1.0)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                elif key.fileobj is self.process.stderr:
                    self.stderr_text += chunk
                else:
                    buffered += chunk
                    *lines, buffered = buffered.split(b"\n")
                    for line in lines:
                        port = parse_ready_line(line.decode(errors="replace"))
                        if port:
                            selector.close()
                            return port
        selector.close()
        self.process.wait()
        raise ProxyError(self.failure_message())

    def said(self) -> str:
        """flyctl's message: its `Error:` line, not the description or hint lines after it."""
        lines = self.stderr_text.decode(errors="replace").strip().splitlines()
        line = next((line for line in reversed(lines) if line.startswith("Error: ")), lines[-1] if lines else "")
        return line.removeprefix("Error: ").strip()

    def failure_message(self) -> str:
        said = self.said()
        message = f"`fly proxy` to {self.host} exited with status {self.process.returncode}: {said or 'no message'}"
        if "host was not found in DNS" in said:
            message += (f". Stopped Machines are not in .internal DNS: check `fly machines list -a {self.app}` and "
                        f"start it with `fly machine start <id> -a {self.app}`")
        return message

    def exited(self, grace: float = 0.0) -> bool:
        if self.process is None:
            return False
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.settimeout(None)
    return connection


def relay(port: int, proxy: FlyProxy, retry_s: float) -> None:
    """Copy stdin -> the proxied connection -> stdout until the connection ends.

    A connection closed before the server said anything (a Machine just started: its SSH server
    is not listening yet) is opened again, for up to retry_s, replaying what ssh had sent.
    """
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    retry_until = time.monotonic() + retry_s
    sent_before_answer = bytearray()
    answered, stdin_open = False, True
    connection = connect(port)
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(connection, selectors.EVENT_READ)
    # Keep reading the proxy's output so it never blocks on a full pipe.
    for stream in (proxy.process.stdout, proxy.process.stderr):
        selector.register(stream, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select(5):
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not answered:
                    sent_before_answer += data
                try:
                    if data:
                        connection.sendall(data)
                    else:  # ssh is done sending: half-close, keep reading the answer
                        selector.unregister(stdin)
                        stdin_open = False
                        connection.shutdown(socket.SHUT_WR)
                except OSError:
                    if answered:
                        raise
            elif key.fileobj is connection:
                try:
                    data = connection.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    answered = True
                    view = memoryview(data)
                    while view:
                        view = view[os.write(stdout, view):]
                    continue
                # A dying proxy also closes the connection: tell that apart from a normal end.
                if proxy.exited(grace=0.5):
                    raise ProxyError(proxy.failure_message())
                if answered or time.monotonic() > retry_until:
                    return
                selector.unregister(connection)
                connection.close()
                time.sleep(1)
                connection = connect(port)
                connection.sendall(sent_before_answer)
                if not stdin_open:
                    connection.shutdown(socket.SHUT_WR)
                selector.register(connection, selectors.EVENT_READ)
                break
            else:
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.fileobj is proxy.process.stderr:
                    proxy.stderr_text = (proxy.stderr_text + data)[-4096:]
        if proxy.exited():
            raise ProxyError(proxy.failure_message())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host", help="the Machine's .internal name, e.g. <id>.vm.<app>.internal")
    parser.add_argument("--app", required=True)
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--fly", default="fly", help="the flyctl executable")
    # flyctl polls DNS for up to 4 minutes before it gives up on a host.
    parser.add_argument("--ready-timeout", type=float, default=270.0)
    parser.add_argument("--retry", type=float, default=30.0,
                        help="seconds to retry a connection the server closes before answering")
    args = parser.parse_args(argv)

    proxy = FlyProxy(args.fly, args.app, args.host, args.port)

    def on_signal(signum, _frame):
        proxy.stop()
        os._exit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        relay(proxy.start(args.ready_timeout), proxy, args.retry)
        return 0
    except (ProxyError, OSError) as error:
        sys.stderr.write(f"fly_proxy_command: {error}\n")
        return EXIT_FAILURE
    finally:
        proxy.stop()


if __name__ == "__main__":
    sys.exit(main())
