#!/usr/bin/env python3
"""A TCP relay with latency, for bench/run.py: used as the SSH ProxyCommand, it joins its stdin
and stdout to HOST PORT and delivers every chunk, in each direction, half a round trip after
it arrived, so a run on loopback sees the round trip of a machine far away (Fly: 20-100 ms).

    ssh -o ProxyCommand='python3 bench/latency_relay.py --rtt-ms 50 %h %p' ...

Only delay, no bandwidth limit or loss: a chunk read at t is written at t + rtt/2, in order.
An end of file is passed on the same way (after the data before it), as a half close; the
relay exits 0 once both directions have ended. Needs no root and no kernel module (netem).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys

CHUNK = 64 * 1024
END = b""  # the queue's mark for an end of file


async def delayed_copy(read, write, close, delay: float) -> None:
    """Copy chunks from read() to write(), each delay seconds after it was read; then close()."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while True:
            data = await read()
            queue.put_nowait((loop.time() + delay, data))
            if data == END:
                return

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if data == END:
                await close()
                return
            await write(data)

    await asyncio.gather(receive(), deliver())


async def relay(host: str, port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    remote_reader, remote_writer = await asyncio.open_connection(host, port)
    remote_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    stdin_reader = asyncio.StreamReader(limit=CHUNK)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin_reader), os.fdopen(0, "rb", 0))
    stdout_transport, stdout_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", 0))
    stdout_writer = asyncio.StreamWriter(stdout_transport, stdout_protocol, None, loop)
    # drain() then returns only once a write is flushed, so an end of file or the exit loses nothing.
    for transport in (remote_writer.transport, stdout_transport):
        transport.set_write_buffer_limits(0)

    async def to_remote(data: bytes) -> None:
        remote_writer.write(data)
        await remote_writer.drain()

    async def remote_eof() -> None:
        if remote_writer.can_write_eof():
            remote_writer.write_eof()

    async def to_stdout(data: bytes) -> None:
        stdout_writer.write(data)
        await stdout_writer.drain()

    async def stdout_eof() -> None:
        stdout_writer.close()

    try:
        await asyncio.gather(
            delayed_copy(lambda: stdin_reader.read(CHUNK), to_remote, remote_eof, delay),
            delayed_copy(lambda: remote_reader.read(CHUNK), to_stdout, stdout_eof, delay))
    finally:
        remote_writer.close()
        await remote_writer.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip to add; each direction gets half")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    if args.rtt_ms < 0:
        parser.error("--rtt-ms must not be negative")
    try:
        asyncio.run(relay(args.host, args.port, args.rtt_ms / 2000))
    except (ConnectionError, BrokenPipeError) as error:
        # ssh prints its own "Connection closed" line; this says which side went away.
        print(f"latency_relay: {args.host} port {args.port}: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"latency_relay: cannot reach {args.host} port {args.port}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
