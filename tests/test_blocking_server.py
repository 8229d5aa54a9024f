"""Blocking servers for real over loopback: the socketserver mix-in and a hand-written
accept loop over handle_connection, every policy x peer kind x header kind; then
http.server, TLS after the header, and leak checks.

The header kinds and the expected outcome of each are the asyncio matrix's
(``test_aio_matrix.KINDS`` and ``expected``): both adapters must behave the same, down
to the refusal reasons counted. Trusted peers connect from 127.0.0.2 and ::1, the
untrusted one from 127.0.0.3.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

import proxyproto
from aio_util import (
    TRUSTED,
    TRUSTED_V4,
    TRUSTED_V6,
    UNTRUSTED_V4,
    has_ipv6_loopback,
    open_fds,
    reset,
    throwaway_cert,
)
from proxyproto import Policy, blocking, encode_v1, encode_v2
from proxyproto._adapters import ProxyStats, refusal_reason
from test_aio_matrix import CONFIGS, KINDS, NO_HEADER, PAYLOAD, V1, Kind, expected

TIMEOUT = 0.5  # the header deadline of these servers


@dataclass
class Record:
    """What the application saw on one connection."""

    socket_peer: Any
    client: Any
    destination: Any
    header: Optional[proxyproto.ProxyHeader]
    received: Optional[proxyproto.ProxyHeader]
    data: bytes = b""


class Records:
    """Records by the client's (host, port): clients on two loopback addresses may share a port."""

    def __init__(self) -> None:
        self.by_peer: dict[tuple[str, int], Record] = {}
        self.lock = threading.Lock()

    def add(self, record: Record) -> None:
        with self.lock:
            self.by_peer[(record.socket_peer[0], record.socket_peer[1])] = record


def serve_app(sock: socket.socket, record: Record, records: Records) -> None:
    """The application: read to EOF, record, answer b"ok"."""
    records.add(record)
    record.data = read_all(sock, 10)
    with contextlib.suppress(OSError):
        sock.sendall(b"ok")


class RecordingHandler(socketserver.BaseRequestHandler):
    server: Any
    proxy_header: Optional[proxyproto.ProxyHeader]
    proxy_header_received: Optional[proxyproto.ProxyHeader]
    proxy_destination: Any

    def handle(self) -> None:
        record = Record(self.request.getpeername(), self.client_address,
                        self.proxy_destination, self.proxy_header, self.proxy_header_received)
        serve_app(self.request, record, self.server.records)


class MixInServer(blocking.ProxyProtocolMixIn, socketserver.ThreadingTCPServer):
    request_queue_size = 128  # every client of a matrix connects at once
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.records = Records()
        self.errors: list[BaseException] = []
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]


class MixInServer6(MixInServer):
    address_family = socket.AF_INET6


class LoopServer:
    """What a user writes by hand: accept, handle_connection, a thread per connection."""

    def __init__(self, host: str, **options: Any) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=128)
        self.listener.settimeout(0.05)
        self.server_address = self.listener.getsockname()
        self.options = options
        self.records = Records()
        self.proxy_stats = ProxyStats()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            thread = threading.Thread(target=self.handle, args=(conn, peer))
            self.threads.append(thread)
            thread.start()

    def handle(self, conn: socket.socket, peer: Any) -> None:
        with conn:
            try:
                header = blocking.handle_connection(conn, peer, timeout=TIMEOUT, **self.options)
            except (proxyproto.ProxyProtocolError, OSError) as exc:
                with self.lock:
                    self.proxy_stats.refused[refusal_reason(exc)] += 1
                return
            with self.lock:
                self.proxy_stats.accepted += 1
            client, destination = blocking.resolve_addresses(header, peer, conn.getsockname())
            serve_app(conn, Record(peer, client, destination, header, None), self.records)

    def shutdown(self) -> None:
        self.stop.set()

    def server_close(self) -> None:
        for thread in self.threads:
            thread.join(10)
        self.listener.close()


def start(kind: str, host: str, **options: Any) -> Any:
    if kind == "mixin":
        cls = MixInServer6 if ":" in host else MixInServer
        return cls((host, 0), RecordingHandler, header_timeout=TIMEOUT, **options)
    return LoopServer(host, **options)


@contextlib.contextmanager
def running(kind: str, hosts: list[str], **options: Any) -> Iterator[list[Any]]:
    servers = [start(kind, host, **options) for host in hosts]
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
               for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
        for thread in threads:
            thread.join(10)
        for server in servers:
            server.server_close()


def connect_from(source: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def read_all(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    chunks: list[bytes] = []
    with contextlib.suppress(OSError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def play(source: str, port: int, kind: Kind) -> tuple[int, bytes]:
    """One client: returns its source port and what the server answered."""
    sock = connect_from(source, port)
    client_port = sock.getsockname()[1]
    try:
        try:
            for piece in kind.pieces:
                sock.sendall(piece)
                if len(kind.pieces) > 1:
                    time.sleep(0.002)
        except OSError:  # refused while sending (oversize): the server reset us
            pass
        if kind.ending == "reset":
            time.sleep(0.05)
            reset(sock)
            return client_port, b""
        if kind.ending == "hold":  # wait past the deadline without finishing the header
            answer = read_all(sock, TIMEOUT + 0.8)
            if answer:
                return client_port, answer
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        return client_port, read_all(sock, TIMEOUT * 4 + 2)
    finally:
        sock.close()


def settle(servers: list[Any], total: int) -> None:
    """Wait (boundedly) until the servers decided every connection: a client that reset
    its connection does not wait for the server to see it."""
    for _ in range(250):
        stats = [server.proxy_stats for server in servers]
        if sum(s.accepted + s.refused_total + s.pending for s in stats) >= total and not any(
            s.pending for s in stats
        ):
            return
        time.sleep(0.02)


def peers() -> list[str]:
    return [TRUSTED_V4, UNTRUSTED_V4] + ([TRUSTED_V6] if has_ipv6_loopback() else [])


def hosts() -> list[str]:
    return ["127.0.0.1"] + (["::1"] if has_ipv6_loopback() else [])


@pytest.mark.parametrize(("policy", "untrusted_policy"), CONFIGS,
                         ids=[f"{p.name}-{u.name if u else 'close'}" for p, u in CONFIGS])
@pytest.mark.parametrize("kind", ["mixin", "loop"])
def test_matrix(kind: str, policy: Policy, untrusted_policy: Optional[Policy]) -> None:
    """Every header kind from every peer kind, all at once; then the server still serves,
    the counters match, and no file descriptor or thread is left behind."""
    fds, threads = open_fds(), threading.active_count()
    problems: list[str] = []
    with running(kind, hosts(), trusted=TRUSTED, policy=policy,
                 untrusted_policy=untrusted_policy) as servers:
        ports = {server.server_address[0]: server.server_address[1] for server in servers}

        def port_for(peer: str) -> int:
            return ports["::1" if ":" in peer else "127.0.0.1"]

        cases = [(peer, k) for peer in peers() for k in KINDS]
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            results = list(pool.map(lambda case: play(case[0], port_for(case[0]), case[1]),
                                    cases))
        want_refused: collections.Counter[str] = collections.Counter()
        served = 0
        records = {peer: r for server in servers for peer, r in server.records.by_peer.items()}
        for (peer, k), (client_port, answer) in zip(cases, results):
            peer_policy = policy if peer != UNTRUSTED_V4 else untrusted_policy
            outcome, detail = expected(peer_policy, k)
            label = f"{peer} {k.name} under {peer_policy}"
            record = records.get((peer, client_port))
            if outcome == "refused":
                want_refused[detail] += 1
                if record is not None or answer:
                    problems.append(f"{label}: served, expected refused ({detail})")
                continue
            served += 1
            if record is None:
                problems.append(f"{label}: refused, expected served")
                continue
            data, honoured, received = detail
            if k.ending != "reset" and (record.data != data or answer != b"ok"):
                problems.append(f"{label}: app got {record.data!r}, expected {data!r}")
            if record.header != honoured or (kind == "mixin" and record.received != received):
                problems.append(f"{label}: proxy_header {record.header!r}")
            want_client = record.socket_peer
            want_destination: Any = None
            if honoured is not None and honoured.source is not None:
                want_client, want_destination = honoured.source, honoured.destination
            if record.client != want_client:
                problems.append(f"{label}: client_address {record.client!r} != {want_client!r}")
            if want_destination is not None and record.destination != want_destination:
                problems.append(f"{label}: destination {record.destination!r}")
        # the server keeps serving after every refusal
        good = Kind("none", None, (NO_HEADER,)) if policy in (Policy.REJECT, Policy.SKIP) \
            else Kind("v1", V1, (V1 + PAYLOAD,))
        _, answer = play(TRUSTED_V4, ports["127.0.0.1"], good)
        if answer != b"ok":
            problems.append("the server stopped serving after the refusals")
        served += 1
        settle(servers, served + sum(want_refused.values()))
    refused: collections.Counter[str] = collections.Counter()
    accepted = 0
    for server in servers:
        refused.update(server.proxy_stats.refused)
        accepted += server.proxy_stats.accepted
        assert server.proxy_stats.pending == 0
        problems.extend(f"handler error: {exc!r}" for exc in server.errors)
    if refused != want_refused:
        problems.append(f"refusals counted {dict(refused)} != {dict(want_refused)}")
    if accepted != served:
        problems.append(f"{accepted} accepted, expected {served}")
    assert threading.active_count() == threads, "a thread was left running"
    assert open_fds() == fds, "a file descriptor leaked"
    assert not problems, "\n".join(problems)


def test_mixin_untrusted_ipv6_peer_is_closed_before_reading() -> None:
    if not has_ipv6_loopback():
        pytest.skip("no ::1")
    with running("mixin", ["::1"], trusted=[TRUSTED_V4]) as (server,):
        _, answer = play(TRUSTED_V6, server.server_address[1], Kind("v1", V1, (V1 + PAYLOAD,)))
    assert answer == b""
    assert server.proxy_stats.refused == {"untrusted": 1}


def always_use(peer: Any, local: Any) -> Policy:
    return Policy.USE  # even for the untrusted peer: never believed


def fails_for_untrusted(peer: Any, local: Any) -> Policy:
    if peer[0] == UNTRUSTED_V4:
        raise RuntimeError("policy bug")
    return Policy.REQUIRE


@pytest.mark.parametrize(("choose", "reason"), [(always_use, "untrusted"),
                                                (fails_for_untrusted, "error")])
def test_mixin_policy_callable(choose: Any, reason: str,
                               caplog: pytest.LogCaptureFixture) -> None:
    """A callable's USE for an untrusted peer closes it; a callable that raises refuses
    (counted as "error", logged) and the server goes on."""
    with running("mixin", ["127.0.0.1"], trusted=[TRUSTED_V4], policy=choose) as (server,):
        port = server.server_address[1]
        _, untrusted_answer = play(UNTRUSTED_V4, port, Kind("v1", V1, (V1 + PAYLOAD,)))
        _, trusted_answer = play(TRUSTED_V4, port, Kind("v1", V1, (V1 + PAYLOAD,)))
    assert (trusted_answer, untrusted_answer) == (b"ok", b"")
    (record,) = server.records.by_peer.values()
    assert record.client == ("192.0.2.10", 40000)
    assert server.proxy_stats.refused == {reason: 1}
    if reason == "error":
        assert any("policy bug" in line.getMessage() for line in caplog.records)


def test_mixin_configuration() -> None:
    with pytest.raises(TypeError):
        MixInServer(("127.0.0.1", 0), RecordingHandler)  # trusted= is required
    with pytest.raises(ValueError):
        MixInServer(("127.0.0.1", 0), RecordingHandler, trusted=TRUSTED,
                    untrusted_policy=Policy.USE)
    with pytest.raises(ValueError):
        MixInServer(("127.0.0.1", 0), RecordingHandler, trusted=TRUSTED, header_timeout=0)

    class Configured(MixInServer):
        proxy_trusted = (TRUSTED_V4,)
        proxy_policy = Policy.USE
        proxy_header_timeout = 1.5

    server = Configured(("127.0.0.1", 0), RecordingHandler)
    try:
        assert isinstance(server.proxy_trusted, proxyproto.TrustedProxies)
        assert (server.proxy_policy, server.proxy_header_timeout) == (Policy.USE, 1.5)
        assert server.proxy_untrusted_policy is None
    finally:
        server.server_close()


def test_plain_tcpserver_serves_one_at_a_time() -> None:
    class Serial(blocking.ProxyProtocolMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        records = Records()

    with running_server(Serial(("127.0.0.1", 0), RecordingHandler, trusted=TRUSTED,
                               header_timeout=TIMEOUT)) as server:
        port = server.server_address[1]
        answers = [play(TRUSTED_V4, port, Kind("v1", V1, (V1 + PAYLOAD,)))[1],
                   play(TRUSTED_V4, port, Kind("none", None, (NO_HEADER,)))[1],
                   play(TRUSTED_V4, port, Kind("v1", V1, (V1 + PAYLOAD,)))[1]]
    assert answers == [b"ok", b"", b"ok"]
    assert (server.proxy_stats.accepted, dict(server.proxy_stats.refused)) == (
        2, {"no_header": 1})


@contextlib.contextmanager
def running_server(server: Any) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_server_speaks_first_under_an_optional_policy() -> None:
    """A client that sends nothing gets the banner once the header deadline passed."""

    class Banner(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"220 ready\r\n")

    class Server(blocking.ProxyProtocolMixIn, socketserver.ThreadingTCPServer):
        allow_reuse_address = True

    for policy, want in [(Policy.USE, b"220 ready\r\n"), (Policy.REQUIRE, b"")]:
        server = Server(("127.0.0.1", 0), Banner, trusted=TRUSTED, policy=policy,
                        header_timeout=0.3)
        with running_server(server), connect_from(TRUSTED_V4, server.server_address[1]) as c:
            assert read_all(c, 5) == want


# ---------------------------------------------------------------------------------------
# http.server


class EchoAddressHandler(http.server.BaseHTTPRequestHandler):
    """Answers with what it knows about the client, as JSON."""

    proxy_header: Optional[proxyproto.ProxyHeader] = None

    def do_GET(self) -> None:
        header = getattr(self, "proxy_header", None)
        if header is None:  # a handler made by a factory: ask the server
            header = self.server.proxy_info(self.request).header  # type: ignore[attr-defined]
        body = json.dumps({
            "client": list(self.client_address),
            "address_string": self.address_string(),
            "version": None if header is None else header.version,
            "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log_lines.append(self.address_string())  # type: ignore[attr-defined]


class HTTPServer(blocking.ProxyProtocolMixIn, http.server.ThreadingHTTPServer):
    daemon_threads = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.log_lines: list[str] = []
        super().__init__(*args, **kwargs)


def http_get(sock: socket.socket, path: str = "/") -> dict[str, Any]:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    response = read_all(sock, 5)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), response
    result: dict[str, Any] = json.loads(body)
    return result


@pytest.mark.parametrize("factory", ["class", "partial"])
def test_threading_http_server_sees_the_original_client(factory: str) -> None:
    handler: Any = EchoAddressHandler
    if factory == "partial":
        handler = functools.partial(EchoAddressHandler)
    fds = open_fds()
    server = HTTPServer(("127.0.0.1", 0), handler, trusted=TRUSTED, header_timeout=TIMEOUT)
    with running_server(server):
        address = server.server_address
        with blocking.connect(address, header=encode_v1(("203.0.113.7", 4242), address),
                              source_address=(TRUSTED_V4, 0), timeout=5) as client:
            got = http_get(client, "/a?b")
        assert got == {"client": ["203.0.113.7", 4242], "address_string": "203.0.113.7",
                       "version": 1, "path": "/a?b"}
        with blocking.connect(address, header=encode_v2(None, None),
                              source_address=(TRUSTED_V4, 0), timeout=5) as client:
            local = client.getsockname()
            got = http_get(client)  # LOCAL: the socket's own addresses
        assert got["client"] == list(local) and got["version"] == 2
        # an HTTP request straight from a trusted peer is refused, the server goes on
        with connect_from(TRUSTED_V4, address[1]) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert read_all(client, 5) == b""
    assert server.log_lines == ["203.0.113.7", local[0]]
    assert (server.proxy_stats.accepted, dict(server.proxy_stats.refused)) == (
        2, {"no_header": 1})
    assert open_fds() == fds


# ---------------------------------------------------------------------------------------
# TLS after the header


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    with throwaway_cert(tmp_path_factory.mktemp("cert")) as pair:
        yield pair


def contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_tls_after_read_header(certificate: tuple[Path, Path]) -> None:
    """The client writes the header and its ClientHello back to back (often one segment);
    read_header must leave the ClientHello whole for ssl."""
    server_ctx, client_ctx = contexts(certificate)
    result: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                result["header"] = blocking.read_header(conn, timeout=5)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    line = tls.recv(100)
                    result["line"] = line
                    tls.sendall(line.upper())

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            raw = socket.create_connection(listener.getsockname(), timeout=5)
            header = encode_v2(("198.51.100.9", 5555), ("192.0.2.1", 443))
            with raw:
                raw.sendall(header)  # then the ClientHello, at once
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"hello tls\n")
                    assert tls.recv(100) == b"HELLO TLS\n"
        finally:
            thread.join(10)
    assert result["header"].source == ("198.51.100.9", 5555)
    assert result["line"] == b"hello tls\n"


def test_https_behind_the_mixin(certificate: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = contexts(certificate)

    class TLSHandler(EchoAddressHandler):
        def setup(self) -> None:  # TLS starts on the bytes right after the header
            self.request = server_ctx.wrap_socket(self.request, server_side=True)
            super().setup()

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                self.request.close()  # the TLS socket is ours; the server closes the raw one

    server = HTTPServer(("127.0.0.1", 0), TLSHandler, trusted=TRUSTED, header_timeout=TIMEOUT)
    with running_server(server):
        address = server.server_address
        with blocking.connect(address, header=encode_v1(("203.0.113.8", 1000), address),
                              source_address=(TRUSTED_V4, 0), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            got = http_get(tls, "/secure")
    assert got["client"] == ["203.0.113.8", 1000] and got["path"] == "/secure"
