"""The subscriber side of ``bench.sse_fanout``, one process per share of the subscribers.

Run as ``python -m bench._sse_client PORT TOKEN COUNT OUTPUT``: connects COUNT streams,
prints ``ready``, records (event id, arrival) until a line arrives on stdin, then writes
the records to OUTPUT and prints ``done``.

Arrival is the kernel's receive timestamp (SO_TIMESTAMPNS): when the frame reached this
socket, however late this process gets to read it. That keeps the client's own scheduling
out of the figure, which matters when it shares the server's CPUs. For the same reason
the client reads on a short tick instead of blocking in epoll: a socket becoming readable
then wakes nobody, so the server's writes do not pay for waking client processes, a cost
that clients on other machines would not put on the server's host."""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path

# Linux (asm-generic); Python's socket module does not export these.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
TICK_SECONDS = float(os.environ.get("BENCH_SSE_CLIENT_TICK_MS", "5")) / 1000
_ID = re.compile(rb"(?m)^id: (\d+)\n")
_CONNECT_BATCH = 100


class Records:
    """Per delivery: the event id, when it reached the socket, when this process read it."""

    def __init__(self) -> None:
        self.ids: array[int] = array("q")
        self.arrived: array[float] = array("d")
        self.read: array[float] = array("d")

    def write(self, path: Path) -> None:
        with path.open("wb") as out:
            out.write(len(self.ids).to_bytes(8, "little"))
            self.ids.tofile(out)
            self.arrived.tofile(out)
            self.read.tofile(out)

    @classmethod
    def load(cls, path: Path) -> Records:
        records = cls()
        with path.open("rb") as source:
            count = int.from_bytes(source.read(8), "little")
            records.ids.fromfile(source, count)
            records.arrived.fromfile(source, count)
            records.read.fromfile(source, count)
        return records


class Clients:
    """``processes`` client processes sharing ``count`` streams to a server on ``port``."""

    def __init__(
        self,
        port: int,
        token: str,
        count: int,
        processes: int,
        outputs: Path,
        *,
        env: dict[str, str],
        preexec: Callable[[], None],
    ) -> None:
        share = [count // processes + (i < count % processes) for i in range(processes)]
        self.outputs = [outputs / f"client{i}.bin" for i in range(processes)]
        self.running: list[subprocess.Popen[str]] = []
        for size, output in zip(share, self.outputs, strict=True):
            command = [sys.executable, "-m", "bench._sse_client", str(port), token]
            self.running.append(
                subprocess.Popen(
                    [*command, str(size), str(output)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=preexec,
                )
            )

    @property
    def pids(self) -> list[int]:
        return [client.pid for client in self.running]

    def wait_ready(self) -> None:
        for client in self.running:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process failed to connect its subscribers")

    def stop(self) -> list[Records]:
        """Hang up after reading what has arrived; what each process recorded."""
        for client in self.running:
            assert client.stdin is not None
            client.stdin.write("stop\n")
            client.stdin.flush()
        for client in self.running:
            assert client.stdout is not None
            client.stdout.readline()
            client.wait(timeout=60)
        return [Records.load(output) for output in self.outputs]

    def kill(self) -> None:
        for client in self.running:
            if client.poll() is None:
                client.kill()


def _open(port: int, request: bytes, count: int) -> dict[int, tuple[socket.socket, bytes]]:
    """COUNT streams past their response head: fd → (socket, bytes after the head)."""
    streams: dict[int, tuple[socket.socket, bytes]] = {}
    for start in range(0, count, _CONNECT_BATCH):
        batch = []
        for _ in range(min(_CONNECT_BATCH, count - start)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.sendall(request)
            batch.append(sock)
        for sock in batch:  # the server answers the whole batch meanwhile
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the response")
                received += chunk
            head, _, rest = received.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            sock.setblocking(False)
            streams[sock.fileno()] = (sock, rest)
    return streams


def _arrival(ancillary: list[tuple[int, int, bytes]], fallback: float) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return float(seconds) + float(nanoseconds) / 1e9
    return fallback


def _follow(streams: dict[int, tuple[socket.socket, bytes]], records: Records) -> None:
    """Read every stream until a line arrives on stdin, then drain what is already here."""
    poller = select.epoll()
    for fd in streams:
        poller.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    buffers = {fd: rest for fd, (_, rest) in streams.items()}
    stopping = False
    while True:
        ready = poller.poll(0)
        if not ready:
            if stopping:
                return
            time.sleep(TICK_SECONDS)
            continue
        now = time.time()
        for fd, _ in ready:
            if fd == stdin:
                sys.stdin.readline()
                poller.unregister(stdin)
                stopping = True
                continue
            data, ancillary, _, _ = streams[fd][0].recvmsg(1 << 16, _ANCILLARY)
            if not data:
                poller.unregister(fd)
                continue
            arrived = _arrival(ancillary, now)
            buffer = buffers[fd] + data
            cut = buffer.rfind(b"\n")
            for match in _ID.findall(buffer, 0, cut + 1):
                records.ids.append(int(match))
                records.arrived.append(arrived)
                records.read.append(now)
            buffers[fd] = buffer[cut + 1 :]


def main(port: int, token: str, count: int, output: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    request = (
        "GET /api/v1/stream/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    streams = _open(port, request, count)
    print("ready", flush=True)
    records = Records()
    _follow(streams, records)
    for sock, _ in streams.values():
        sock.close()
    records.write(output)
    print("done", flush=True)


if __name__ == "__main__":
    port_arg, token_arg, count_arg, output_arg = sys.argv[1:5]
    main(int(port_arg), token_arg, int(count_arg), Path(output_arg))
