"""Plumbing for the interop tests: programs, ports, processes, capture servers, clients.

Nothing here knows about a particular peer; ``conftest.py`` writes the configurations.
Every wait is bounded, every socket is closed, every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn, Optional, Union

import pytest

import proxyproto

#: ``CI`` set (to anything): a missing program fails the tests instead of skipping them.
IN_CI = bool(os.environ.get("CI"))
#: The networks our capture servers trust (the real proxies connect from loopback).
TRUSTED = ("127.0.0.0/8", "::1")
#: Our plain IPv4 clients' source address: distinct from every server's, so a header that
#: carries it can only have come from the client's real socket.
CLIENT_V4 = "127.0.5.44"
#: Every test payload ends with this; the capture servers read up to it, then reply.
MARKER = b"\r\n-- end of interop payload --\r\n"
#: What a capture server answers once it has the whole payload.
REPLY = b"interop-ok\n"
#: The bound on every single network wait, in seconds (never reached when all goes well).
IO_TIMEOUT = 10.0

TCPAddress = tuple[str, int]
Address = Union[TCPAddress, str]


# ---------------------------------------------------------------------------------------
# Programs and platform


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; under ``CI=true`` fail instead (CI installs every program)."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: the interop programs are mandatory there)",
                    pytrace=False)
    pytest.skip(reason)


def find_program(name: str) -> str:
    """The absolute path of ``name`` (``/usr/sbin`` included), or skip/fail."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                              "/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install haproxy nginx "
                    f"libnginx-mod-stream curl openssl)")
    return path


def program_version(argv: list[str]) -> str:
    """The first line a program prints about its version (stdout or stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IO_TIMEOUT,
                          check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def adapter(name: str) -> ModuleType:
    """Import ``proxyproto.<name>`` (an I/O adapter), or skip/fail when it is missing."""
    try:
        return importlib.import_module(f"proxyproto.{name}")
    except ImportError as exc:
        unavailable(f"proxyproto.{name} cannot be imported: {exc}")


def ipv6_loopback() -> bool:
    """``True`` when ``::1`` can be bound (some containers have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) on this machine")


# ---------------------------------------------------------------------------------------
# Ports and readiness


def family_of(host: str) -> socket.AddressFamily:
    """``AF_INET6`` for a literal with a colon, else ``AF_INET``."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pick_port(host: str) -> int:
    """A port that is free on ``host`` right now (the kernel's choice for port 0)."""
    with socket.socket(family_of(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def listening_tcp() -> set[TCPAddress]:
    """Every TCP socket in LISTEN state, read from ``/proc/net/tcp`` and ``tcp6``.

    Readiness is checked here rather than by connecting: a connection to a *sending*
    frontend would itself be proxied, with a header, to a capture server.
    """
    found: set[TCPAddress] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A is TCP_LISTEN
                continue
            host_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(host_hex)  # 32-bit words in host (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, packed), int(port_hex, 16)))
    return found


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = IO_TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Processes


class Process:
    """A real server started in the foreground; stopped by its PID (TERM, then KILL).

    Its stdout and stderr go to ``log``. It runs in a session of its own, so the KILL
    fallback can reach the workers it started (nginx) through its process group.
    """

    def __init__(self, argv: list[str], log: Path, cwd: Optional[Path] = None) -> None:
        self.argv = argv
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=cwd,
                                          start_new_session=True)
        self.pid = self.popen.pid

    @property
    def alive(self) -> bool:
        """``True`` while the process runs."""
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace")

    def wait_ready(self, tcp: Iterable[TCPAddress] = (), unix: Iterable[Path] = (),
                   timeout: float = IO_TIMEOUT) -> None:
        """Wait until every listener exists; raise (with the log) if the process dies."""
        tcp, unix = set(tcp), list(unix)

        def ready() -> bool:
            if not self.alive:
                raise ProcessDied(f"{self.argv[0]} exited with {self.popen.returncode}:\n"
                                  f"{self.output()[-3000:]}")
            return tcp <= listening_tcp() and all(path.exists() for path in unix)

        wait_until(ready, f"{self.argv[0]} to listen on {sorted(tcp)} {unix}", timeout)

    def stop(self) -> None:
        """TERM, wait up to 5 s, then KILL the process group; reap it."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)


class ProcessDied(RuntimeError):
    """A server exited while we waited for it to listen (usually: a port was taken)."""


def start_with_retries(start: Callable[[], Process], attempts: int = 3) -> Process:
    """Call ``start`` (which picks fresh ports each time) until a server comes up.

    Ports are chosen by binding port 0 and closing; another program on this machine can
    grab one before our server binds it, so a failed start is retried with new ports.
    """
    for attempt in range(attempts):
        try:
            return start()
        except ProcessDied:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------
# Capture servers: where the real proxies forward to


class Sink:
    """A listening socket a real proxy forwards to, bound (to port 0) for the session.

    Binding port 0 and keeping the socket means the port cannot be stolen between writing
    the proxy's configuration and the test. A :class:`Capture` serves it per test.
    """

    def __init__(self, host: str = "127.0.0.1", *, path: Optional[Path] = None) -> None:
        if path is not None:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(str(path))
        else:
            self.listener = socket.socket(family_of(host), socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.path = path
        self.host = host
        self.port: int = 0 if path is not None else self.listener.getsockname()[1]

    @property
    def address(self) -> Address:
        """``(host, port)``, or the path of a UNIX sink."""
        return str(self.path) if self.path is not None else (self.host, self.port)

    @property
    def config_address(self) -> str:
        """The address as HAProxy and nginx configurations write it."""
        if self.path is not None:
            return f"unix@{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def drain(self) -> None:
        """Accept and close whatever connections are pending (left over by an earlier test)."""
        self.listener.settimeout(0)
        try:
            for _ in range(1000):
                conn, _ = self.listener.accept()
                conn.close()
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.listener.settimeout(0.2)

    def accept(self, stop: threading.Event, timeout: float = IO_TIMEOUT) -> Optional[socket.socket]:
        """The next connection, or ``None`` if ``stop`` is set or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            conn.settimeout(IO_TIMEOUT)
            return conn
        return None

    def close(self) -> None:
        """Close the listener (and remove a UNIX socket file)."""
        self.listener.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


@dataclass
class Received:
    """What one capture server saw on one connection."""

    mode: str
    #: The header the server honoured (the adapter's, or ``parse(raw)`` in raw mode).
    header: Optional[proxyproto.ProxyHeader] = None
    #: The application bytes after the header, up to the marker (or EOF).
    payload: bytes = b""
    #: Raw mode only: every byte the connection delivered.
    raw: Optional[bytes] = None
    #: What the adapter reports as the client and the destination.
    peername: Any = None
    sockname: Any = None
    #: The TCP connection's own peer (the proxy), for comparison.
    socket_peer: Any = None
    #: Why the server refused the connection (blocking / raw modes), if it did.
    error: Optional[BaseException] = None
    #: The application code ran (aio callback called, or blocking read_header returned).
    served: bool = False


def recv_until(conn: socket.socket, until: bytes, initial: bytes = b"") -> bytes:
    """Read until the data ends with ``until``, EOF, a reset or ``IO_TIMEOUT``.

    What was read before a reset is kept: HAProxy's health checks close with an RST.
    """
    data = bytearray(initial)
    deadline = time.monotonic() + IO_TIMEOUT
    while not data.endswith(until) and time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def send_reply(conn: socket.socket, reply: bytes) -> None:
    """Answer the client; a peer that already left is not an error here."""
    with contextlib.suppress(OSError):
        conn.sendall(reply)


class Capture:
    """Serve exactly one connection that arrives on ``sink``, in a background thread.

    Modes (the last three are our own servers, trusting only loopback):

    * ``"raw"``: read every byte; the test parses them (:func:`check_raw`).
    * ``"blocking"``: :func:`proxyproto.blocking.read_header`, then the payload.
    * ``"socketserver"``: a ``socketserver.TCPServer`` with
      :class:`proxyproto.blocking.ProxyProtocolMixIn` (TCP sinks only).
    * ``"aio"``: a :func:`proxyproto.aio.start_server` server whose callback records
      ``get_extra_info`` (TCP sinks only).

    The server reads up to ``until``, answers ``reply`` and closes. With ``tls`` (a
    server-side context; ``blocking`` and ``aio`` only), TLS starts after the header.
    """

    MODES = ("raw", "blocking", "socketserver", "aio")

    def __init__(self, sink: Sink, mode: str, *, until: bytes = MARKER, reply: bytes = REPLY,
                 wait: float = IO_TIMEOUT, tls: Optional[ssl.SSLContext] = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown capture mode {mode!r}")
        self.sink = sink
        self.mode = mode
        self.until = until
        self.reply = reply
        self.wait = wait
        self.tls = tls
        self.module: Any = None
        if mode != "raw":
            self.module = adapter("aio" if mode == "aio" else "blocking")
        self._stop = threading.Event()
        self._result: Optional[Received] = None
        self._thread = threading.Thread(target=self._run, name=f"capture-{mode}", daemon=True)

    def __enter__(self) -> Capture:
        self.sink.drain()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._thread.join(IO_TIMEOUT + 5)

    def stop(self) -> None:
        """Stop waiting for a connection (for tests where none should be served)."""
        self._stop.set()

    def result(self, timeout: float = IO_TIMEOUT + 5) -> Received:
        """Wait for the server to finish and return what it saw."""
        self._thread.join(timeout)
        if self._thread.is_alive() or self._result is None:
            raise AssertionError(f"the {self.mode} capture server did not finish")
        return self._result

    # -- the servers ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.mode == "aio":
                self._result = asyncio.run(self._serve_aio())
            elif self.mode == "socketserver":
                self._result = self._serve_socketserver()
            else:
                self._result = self._serve_socket()
        except BaseException as exc:  # the test thread reports it
            self._result = Received(self.mode, error=exc)

    def _serve_socket(self) -> Received:
        conn = self.sink.accept(self._stop, self.wait)
        if conn is None:
            return Received(self.mode)
        with conn:
            received = Received(self.mode, socket_peer=peer_of(conn))
            if self.mode == "raw":
                received.raw = recv_until(conn, self.until)
                if received.raw.endswith(self.until):
                    send_reply(conn, self.reply)
                return received
            try:
                header = self.module.read_header(conn, timeout=5.0)
            except (proxyproto.ProxyProtocolError, OSError) as exc:
                received.error = exc
                return received
            received.served = True
            received.header = header
            received.peername, received.sockname = effective_addresses(
                header, peer_of(conn), conn.getsockname())
            stream: socket.socket = conn
            if self.tls is not None:
                stream = self.tls.wrap_socket(conn, server_side=True)
            with stream:
                received.payload = recv_until(stream, self.until)
                if received.payload.endswith(self.until):
                    send_reply(stream, self.reply)
            return received

    def _serve_socketserver(self) -> Received:
        results: list[Received] = []
        until, reply = self.until, self.reply

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                received = Received("socketserver", served=True,
                                    header=getattr(self, "proxy_header", None),
                                    peername=self.client_address,
                                    sockname=getattr(self, "proxy_destination", None),
                                    socket_peer=peer_of(self.request))
                self.request.settimeout(IO_TIMEOUT)
                received.payload = recv_until(self.request, until)
                if received.payload.endswith(until):
                    send_reply(self.request, reply)
                results.append(received)

        refusals: list[BaseException] = []

        class Server(self.module.ProxyProtocolMixIn, socketserver.TCPServer):  # type: ignore[name-defined,misc]
            def handle_proxy_refusal(self, request: Any, client_address: Any,
                                     exc: BaseException) -> None:
                refusals.append(exc)

        server = Server(self.sink.address, Handler, bind_and_activate=False, trusted=TRUSTED,
                        header_timeout=5.0)
        server.socket.close()
        server.socket = self.sink.listener.dup()
        server.timeout = 0.1
        try:
            deadline = time.monotonic() + self.wait
            while not (results or refusals or self._stop.is_set()
                       or time.monotonic() > deadline):
                server.handle_request()
        finally:
            server.server_close()
        if refusals:
            return Received("socketserver", error=refusals[0])
        return results[0] if results else Received("socketserver")

    async def _serve_aio(self) -> Received:
        results: list[Received] = []

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received = Received("aio", served=True,
                                header=writer.get_extra_info("proxy_header"),
                                peername=writer.get_extra_info("peername"),
                                sockname=writer.get_extra_info("sockname"))
            try:
                data = bytearray()
                while not data.endswith(self.until):
                    chunk = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
                    if not chunk:
                        break
                    data += chunk
                received.payload = bytes(data)
                if data.endswith(self.until):
                    writer.write(self.reply)
                    await writer.drain()
            except (ConnectionError, asyncio.TimeoutError) as exc:
                received.error = exc
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)
                results.append(received)

        listener = self.sink.listener.dup()
        try:
            server = await self.module.start_server(on_client, sock=listener, trusted=TRUSTED,
                                                    ssl=self.tls)
        except BaseException:
            listener.close()
            raise
        try:
            deadline = time.monotonic() + self.wait
            while not results and not self._stop.is_set() and time.monotonic() < deadline:
                if sum(server.proxy_stats.refused.values()):
                    return Received("aio", error=RefusedConnection(
                        ", ".join(server.proxy_stats.refused)))
                await asyncio.sleep(0.02)
        finally:
            server.close()
            await server.wait_closed()
        return results[0] if results else Received("aio")


class RefusedConnection(Exception):
    """A server of ours refused the connection (the reasons it counted)."""


def peer_of(conn: socket.socket) -> Any:
    """The connection's peer address, or ``None`` once it was reset (a health check)."""
    try:
        return conn.getpeername()
    except OSError:
        return None


def effective_addresses(header: Optional[proxyproto.ProxyHeader], peer: Any, local: Any
                        ) -> tuple[Any, Any]:
    """The header's addresses when it carries them, else the socket's own."""
    if header is None or header.source is None:
        return peer, local
    return header.source, header.destination


def check_raw(received: Received, payload: Optional[bytes]) -> proxyproto.ProxyHeader:
    """Parse a raw capture every way we can; require one header and the payload after it.

    The whole capture goes to ``parse`` (both implementations when built) and, one byte
    at a time, to :class:`proxyproto.HeaderReader`; all must agree, and the bytes after
    ``header.length`` must be exactly ``payload`` (when the test knows it in advance).
    """
    assert received.raw is not None, "not a raw capture"
    raw = received.raw
    header = proxyproto.parse(raw)
    for module in implementations():
        assert module.parse(raw) == header, module.__name__
    reader = proxyproto.HeaderReader(max_size=proxyproto.MAX_V2_SIZE)
    fed = 0
    while reader.header is None and fed < len(raw):
        reader.feed(raw[fed : fed + 1])
        fed += 1
    assert reader.header == header
    assert fed == header.length, "the incremental reader consumed a different length"
    if payload is not None:
        assert raw[header.length :] == payload, "the bytes after header.length are not the payload"
    received.header = header
    received.payload = raw[header.length :]
    return header


def implementations() -> list[ModuleType]:
    """The parser modules present: the pure-Python one, and the Cython one when built."""
    modules = [importlib.import_module("proxyproto._fallback")]
    with contextlib.suppress(ImportError):
        modules.append(importlib.import_module("proxyproto._fast"))
    return modules


def make_payload(size: int = 24 * 1024) -> bytes:
    """Application bytes unique to one test, ending with :data:`MARKER`.

    They start with things a careless reader would take for a second header (a v1 line,
    the v2 signature) and contain every byte value, so they must arrive untouched.
    """
    token = uuid.uuid4().hex.encode()
    head = b"PROXY TCP4 192.0.2.9 192.0.2.10 1 2\r\n" + proxyproto.V2_SIGNATURE + b"\x21\x11"
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    return head + token + body + token + MARKER


# ---------------------------------------------------------------------------------------
# Clients


@dataclass
class ClientResult:
    """What a client saw of its own connection (the expected values come from here)."""

    sockname: Any
    peername: Any
    reply: bytes
    tls_version: Optional[str] = None
    cipher: Optional[str] = None
    alpn: Optional[str] = None


def linger_zero(sock: socket.socket) -> None:
    """Close with an RST, so the client leaves no TIME_WAIT behind."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def connect(address: Address, source: Optional[str] = None) -> socket.socket:
    """A connected stream socket (TCP from ``source``, or UNIX when ``address`` is a path)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock
    if source is None and family_of(address[0]) == socket.AF_INET:
        source = CLIENT_V4
    sock = socket.create_connection(address, IO_TIMEOUT,
                                    source_address=(source, 0) if source else None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Read until EOF (or a reset, or ``IO_TIMEOUT``)."""
    data = bytearray()
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def exchange(address: Address, payload: bytes, *, source: Optional[str] = None,
             prefix: bytes = b"") -> ClientResult:
    """Connect, send ``prefix + payload`` in one write, read the reply until EOF."""
    with connect(address, source) as sock:
        result = ClientResult(sock.getsockname(), sock.getpeername(), b"")
        sock.sendall(prefix + payload)
        result.reply = recv_all(sock)
        linger_zero(sock)
    return result


def tls_exchange(address: TCPAddress, payload: bytes, context: ssl.SSLContext,
                 server_hostname: Optional[str]) -> ClientResult:
    """Connect over TLS, send ``payload``, read the reply; record what was negotiated."""
    raw = connect(address)
    try:
        with context.wrap_socket(raw, server_hostname=server_hostname) as sock:
            cipher = sock.cipher()
            result = ClientResult(sock.getsockname(), sock.getpeername(), b"",
                                  tls_version=sock.version(),
                                  cipher=cipher[0] if cipher else None,
                                  alpn=sock.selected_alpn_protocol())
            sock.sendall(payload)
            result.reply = recv_all(sock)
            linger_zero(sock)
    finally:
        raw.close()
    return result


def request(address: Address, prefix: bytes, data: bytes = b"", *,
            source: Optional[str] = None, pause_after: Optional[int] = None) -> ClientResult:
    """Send ``prefix + data`` and read the answer until EOF (``b""`` when refused).

    With ``pause_after``, the first ``pause_after`` bytes go in one write and the rest in
    a second write half a second later (to show what a split header does to a receiver).
    """
    whole = prefix + data
    with connect(address, source) as sock:
        result = ClientResult(sock.getsockname(), sock.getpeername(), b"")
        try:
            if pause_after is None:
                sock.sendall(whole)
            else:
                sock.sendall(whole[:pause_after])
                time.sleep(0.5)
                sock.sendall(whole[pause_after:])
        except (BrokenPipeError, ConnectionResetError):
            return result
        result.reply = recv_all(sock)
        linger_zero(sock)
    return result


#: A minimal HTTP request, for the HTTP receivers (HAProxy in ``mode http``, nginx http).
HTTP_GET = b"GET / HTTP/1.1\r\nHost: interop.test\r\nConnection: close\r\n\r\n"


def http_body(response: bytes) -> bytes:
    """The body of a ``200`` response; fails the test on anything else."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), f"not a 200 response: {response[:200]!r}"
    return body


# ---------------------------------------------------------------------------------------
# Receiving: one connection through a real sender into one of our servers


#: Parametrize a receiving test over every capture server.
all_modes = pytest.mark.parametrize("mode", Capture.MODES)


def receive(sink: Sink, mode: str, send: Callable[[bytes], ClientResult], *,
            tls: Optional[ssl.SSLContext] = None, size: int = 24 * 1024
            ) -> tuple[proxyproto.ProxyHeader, Received, ClientResult]:
    """Send a fresh payload through a real sender into ``sink``'s ``mode`` server.

    Requires the server to accept the connection, the bytes after the header to be the
    payload exactly (for a raw capture: at ``header.length``), and the client to get the
    server's reply back through the proxy.
    """
    payload = make_payload(size)
    with Capture(sink, mode, tls=tls) as capture:
        client = send(payload)
        received = capture.result()
    if received.error is not None:
        raise AssertionError(f"the {mode} server refused the connection: "
                             f"{received.error!r}") from received.error
    if mode == "raw":
        assert received.raw is not None and received.raw, "nothing reached the sink"
        check_raw(received, payload)
    else:
        assert received.served, f"no connection reached the {mode} server's application"
        assert received.payload == payload, "the application bytes after the header differ"
    assert client.reply == REPLY, f"the client got {client.reply[:100]!r} back"
    assert received.header is not None
    return received.header, received, client


def check_adapter_view(received: Received, sink: Sink) -> None:
    """What our servers tell the application: the header's addresses when it carries
    them, else the real connection's (the proxy's address and the sink's own)."""
    if received.mode == "raw":
        return
    header = received.header
    assert header is not None
    if header.source is not None:
        assert tuple(received.peername[:2]) == header.source
        assert tuple(received.sockname[:2]) == header.destination
    elif sink.path is None:  # the proxy's own socket, and ours
        assert received.peername[0] in ("127.0.0.1", "::1")
        assert tuple(received.sockname[:2]) == sink.address


def refused_everywhere(sink: Sink, mode: str, send: Callable[[bytes], ClientResult]
                       ) -> tuple[Received, ClientResult]:
    """Send through a real sender a header our parser must refuse; require the refusal.

    Raw capture: ``parse`` raises ``InvalidHeader``. Our servers: ``read_header`` raises,
    the socketserver and asyncio servers refuse without calling the application. The
    client gets no reply.
    """
    payload = make_payload()
    with Capture(sink, mode) as capture:
        client = send(payload)
        received = capture.result()
    if mode == "raw":
        assert received.raw, "nothing reached the sink"
        with pytest.raises(proxyproto.InvalidHeader):
            proxyproto.parse(received.raw)
        for module in implementations():
            with pytest.raises(proxyproto.InvalidHeader):
                module.parse(received.raw)
    else:
        assert not received.served, "our server handed a bad header to the application"
        assert received.error is not None, "the connection never reached our server"
        if mode == "aio":  # the asyncio server counts refusals by reason
            assert isinstance(received.error, RefusedConnection), received.error
            assert str(received.error) == "invalid", received.error
        else:
            assert isinstance(received.error, proxyproto.InvalidHeader), received.error
    return received, client
