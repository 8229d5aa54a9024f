"""Helpers for the asyncio adapter tests: real loopback clients with chosen source
addresses, a recording application (streams and protocol flavours), leak counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest

T = TypeVar("T")

TRUSTED_V4 = "127.0.0.2"
UNTRUSTED_V4 = "127.0.0.3"
TRUSTED_V6 = "::1"
TRUSTED = [TRUSTED_V4, TRUSTED_V6]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def run(coro: Awaitable[T], *, limit: float = 30.0) -> T:
    """Run a coroutine in a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Record:
    """What the application saw on one accepted connection."""

    socket_peer: Any
    peername: Any
    sockname: Any
    header: Any
    received: Any
    data: bytes = b""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """Collects one Record per accepted connection, keyed by the client's (host, port).

    The host matters: a ``::1`` client and a ``127.0.0.2`` client may get the same port.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], Record] = {}

    def new(self, info: Callable[[str], Any]) -> Record:
        record = Record(info("socket_peername"), info("peername"), info("sockname"),
                        info("proxy_header"), info("proxy_header_received"))
        self.records[(record.socket_peer[0], record.socket_peer[1])] = record
        return record

    async def streams_cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = self.new(writer.get_extra_info)
        try:
            record.data = await reader.read()
            writer.write(b"ok")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            record.done.set()
            writer.close()

    def protocol_factory(self) -> asyncio.Protocol:
        return RecordingProtocol(self)


class RecordingProtocol(asyncio.Protocol):
    """The protocol-flavoured application: records, then answers b"ok" at EOF."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.record: Optional[Record] = None
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.record = self.recorder.new(transport.get_extra_info)

    def data_received(self, data: bytes) -> None:
        assert self.record is not None
        self.record.data += data

    def eof_received(self) -> bool:
        assert self.transport is not None and self.record is not None
        self.transport.write(b"ok")
        self.transport.close()
        self.record.done.set()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.record is not None:
            self.record.done.set()


async def connect_from(source: str, port: int, *, target: Optional[str] = None) -> socket.socket:
    """A non-blocking TCP socket bound to ``source`` and connected to the server."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    if target is None:
        target = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (target, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_all(sock: socket.socket, *, limit: float) -> bytes:
    """Read until EOF or reset, within ``limit`` seconds (then give up, returning what came)."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []

    async def drain() -> None:
        while True:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                return
            chunks.append(chunk)

    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await asyncio.wait_for(drain(), limit)
    return b"".join(chunks)


@contextlib.contextmanager
def throwaway_cert(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for localhost/127.0.0.1, made with openssl at test time."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    yield cert, key


def servers_addresses(server: asyncio.Server) -> Sequence[Any]:
    return [sock.getsockname() for sock in server.sockets]


# -- real server processes (uvicorn, gunicorn) ----------------------------------------

#: an ASGI app module that answers with what it was told about the connection
WHO_APP = '''
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    header = scope.get("extensions", {}).get("proxy_protocol", {}).get("header")
    body = json.dumps({"client": scope["client"], "server": scope["server"],
                       "version": header.version if header else None}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ask_process(port: int, data: bytes, *, source: str, attempts: int = 300,
                tls_after: Optional[tuple[bytes, Path]] = None) -> bytes:
    """Send ``data`` from ``source`` once the server process listens (retried every
    0.1 s, ``attempts`` times at most); everything it answers until it closes.

    With ``tls_after=(request, cafile)``, ``data`` is the header: TLS starts after it and
    ``request`` goes over TLS."""
    for _ in range(attempts):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=(source, 0))
        except ConnectionRefusedError:
            time.sleep(0.1)
            continue
        with contextlib.ExitStack() as closing:
            closing.enter_context(sock)
            chunks = []
            stream: Any = sock
            try:
                sock.sendall(data)
            except ConnectionError:  # a refused peer is reset at once, maybe mid-send
                if tls_after is not None:
                    raise
                return b""
            if tls_after is not None:
                context = ssl.create_default_context(cafile=str(tls_after[1]))
                stream = closing.enter_context(
                    context.wrap_socket(sock, server_hostname="localhost"))
                stream.sendall(tls_after[0])
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while chunk := stream.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)
    raise AssertionError("the server did not start")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server process with ``sig`` (graceful), killed after 20 s; reaped."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def ask_unix(path: Any, data: bytes, attempts: int = 300) -> bytes:
    """Send ``data`` over the UNIX socket ``path`` once it listens (retried every 0.1 s,
    ``attempts`` times at most); everything answered until the server closes (or resets:
    a refused connection)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            try:
                sock.connect(str(path))
            except (FileNotFoundError, ConnectionRefusedError):  # not bound, or not listening
                time.sleep(0.1)
                continue
            chunks = []
            # a refused peer is reset at once, maybe before all of ``data`` is sent
            with contextlib.suppress(ConnectionError):
                sock.sendall(data)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)
    raise AssertionError("the server did not start")


def json_body(answer: bytes) -> dict[str, Any]:
    """The JSON body of a ``200`` answer."""
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    return dict(json.loads(text))
