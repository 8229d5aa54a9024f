"""proxyproto.blocking and the trust rules: the options object, UNIX-socket peers, faults
treated as the asyncio adapter treats them, optional-header datagrams, and the
socketserver mix-in on a TLS-wrapped listener (the http.server HTTPS recipe), with a
real TLS handshake on loopback. Trusted peers connect from 127.0.0.2, others from
127.0.0.3."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aio_util import TRUSTED_V4, UNTRUSTED_V4, open_fds, throwaway_cert
from proxyproto import (
    InvalidHeader,
    NoProxyHeader,
    Policy,
    ProxyProtocolError,
    TrustedProxies,
    UntrustedPeer,
    blocking,
    encode_v1,
    encode_v2,
)
from proxyproto._adapters import refusal_reason
from proxyproto._errors import PolicyError
from proxyproto.policy import ProxyOptions
from test_blocking_server import running_server

TRUSTED = TrustedProxies([TRUSTED_V4])
SRC, DST = ("198.51.100.7", 4242), ("192.0.2.1", 443)
V1 = encode_v1(SRC, DST)
V2_DGRAM = encode_v2(SRC, DST, transport=socket.SOCK_DGRAM)
APP = b"GET / HTTP/1.1\r\n\r\n"


@contextlib.contextmanager
def udp_pair(source: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        sender.bind((source, 0))
        yield receiver, sender


# -- datagrams ---------------------------------------------------------------------------


def test_recv_datagram_policy_callable_fault_is_a_refusal() -> None:
    """Issue 9 item 6: the callable's exception no longer escapes as itself; it is a
    ProxyProtocolError with reason "error" (what the asyncio endpoint counts)."""

    def broken(peer: Any, local: Any) -> Policy:
        raise ZeroDivisionError("policy bug")

    with udp_pair(TRUSTED_V4) as (receiver, sender):
        sender.sendto(V2_DGRAM + b"payload", receiver.getsockname())
        with pytest.raises(ProxyProtocolError) as caught:
            blocking.recv_datagram(receiver, trusted=TRUSTED, policy=broken)
        assert type(caught.value) is PolicyError and refusal_reason(caught.value) == "error"
        assert isinstance(caught.value.__cause__, ZeroDivisionError)
        # the socket goes on: the next datagram is served
        sender.sendto(V2_DGRAM + b"next", receiver.getsockname())
        header, payload, _ = blocking.recv_datagram(receiver, trusted=TRUSTED)
        assert header is not None and header.source == SRC and payload == b"next"


@pytest.mark.parametrize("data", [b"P", b"\r\n", b"PROXY", b"\r\n\r\n\x00"])
def test_recv_datagram_signature_prefix_is_payload(data: bytes) -> None:
    """Issue 9 item 8: a whole datagram that is a prefix of a signature is no header."""
    with udp_pair(TRUSTED_V4) as (receiver, sender):
        for policy in (Policy.USE, Policy.IGNORE, Policy.REJECT):
            sender.sendto(data, receiver.getsockname())
            header, payload, peer = blocking.recv_datagram(receiver, trusted=TRUSTED,
                                                           policy=policy)
            assert (header, payload, peer[0]) == (None, data, TRUSTED_V4)
        sender.sendto(data, receiver.getsockname())
        with pytest.raises(InvalidHeader, match="datagram ends inside"):
            blocking.recv_datagram(receiver, trusted=TRUSTED)  # REQUIRE: refused


def test_recv_datagram_options_object() -> None:
    options = ProxyOptions(TRUSTED, untrusted_policy=Policy.IGNORE)
    with udp_pair(UNTRUSTED_V4) as (receiver, sender):
        sender.sendto(V2_DGRAM + b"x", receiver.getsockname())
        assert blocking.recv_datagram(receiver, options=options)[:2] == (None, b"x")
        with pytest.raises(TypeError, match="not both"):
            blocking.recv_datagram(receiver, options=options, trusted=TRUSTED)
    with pytest.raises(TypeError, match="required"):
        blocking.recv_datagram(receiver)  # neither trusted= nor options=


# -- stream helpers ----------------------------------------------------------------------


def test_handle_connection_trusts_unix_peers_only_on_request() -> None:
    for opt_in in (False, True):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b:
            b.sendall(V1 + APP)
            if not opt_in:
                with pytest.raises(UntrustedPeer):
                    blocking.handle_connection(a, trusted=TRUSTED)
                continue
            header = blocking.handle_connection(a, trusted=TRUSTED, trust_unix_peers=True)
            assert header is not None and header.source == SRC
            assert a.recv(100) == APP


def test_handle_connection_options_and_timeout_rules() -> None:
    options = ProxyOptions(TRUSTED, trust_unix_peers=True, policy=Policy.USE, timeout=None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        b.sendall(APP)
        assert blocking.handle_connection(a, options=options) is None
        assert a.recv(100) == APP  # no header under USE: every byte left for the app
        with pytest.raises(TypeError, match="not both"):
            blocking.handle_connection(a, options=options, timeout=1)
        with pytest.raises(TypeError):
            blocking.handle_connection(a, trusted=TRUSTED, timeout="5")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            blocking.handle_connection(a, trusted=TRUSTED, timeout=0)
        with pytest.raises(TypeError):
            blocking.read_header(a, timeout="5")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            blocking.read_header(a, max_size=4096.0)  # type: ignore[arg-type]


def test_read_header_timeout_is_a_timeout_error_with_a_reason() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(V1[:10])
        with pytest.raises(TimeoutError) as caught:
            blocking.read_header(a, timeout=0.2)
        assert refusal_reason(caught.value) == "timeout"


def test_header_for_is_header_from_socket() -> None:
    assert blocking.header_for is blocking.header_from_socket


# -- the mix-in ----------------------------------------------------------------------------


class EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"client": list(self.client_address),
                           "tls": isinstance(self.request, ssl.SSLSocket)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPServer(blocking.ProxyProtocolMixIn, http.server.ThreadingHTTPServer):
    daemon_threads = False


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_mixin_timeout_name_and_its_deprecated_alias() -> None:
    for keywords in ({"timeout": 1.5}, {"header_timeout": 1.5}):
        with HTTPServer(("127.0.0.1", 0), EchoHandler, trusted=TRUSTED, **keywords) as server:
            assert server.proxy_options is not None and server.proxy_options.timeout == 1.5
            assert server.proxy_timeout == server.proxy_header_timeout == 1.5
    with pytest.raises(TypeError, match="not both"):
        HTTPServer(("127.0.0.1", 0), EchoHandler, trusted=TRUSTED, timeout=1,
                   header_timeout=1)

    class Configured(HTTPServer):
        proxy_timeout = 2.5
        proxy_trust_unix_peers = True

    with Configured(("127.0.0.1", 0), EchoHandler, trusted=TRUSTED) as s:
        assert s.proxy_options is not None
        assert (s.proxy_options.timeout, s.proxy_options.trust_unix_peers) == (2.5, True)
    options = ProxyOptions(TRUSTED, policy=Policy.USE)
    with HTTPServer(("127.0.0.1", 0), EchoHandler, options=options) as s:
        assert s.proxy_options is options and s.proxy_policy is Policy.USE
    with pytest.raises(TypeError, match="not both"):
        HTTPServer(("127.0.0.1", 0), EchoHandler, options=options, max_size=100)
    with pytest.raises(TypeError):
        HTTPServer(("127.0.0.1", 0), EchoHandler, trusted=TRUSTED, timeout="5")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    with throwaway_cert(tmp_path_factory.mktemp("cert")) as pair:
        yield pair


def test_mixin_on_a_tls_wrapped_listener(certificate: tuple[Path, Path],
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9 item 6: the http.server HTTPS recipe (wrap the listening socket) behind
    the mix-in: the header is read before the handshake; a failed handshake is counted
    as "tls" and the server goes on."""
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    fds = open_fds()
    server = HTTPServer(("127.0.0.1", 0), EchoHandler, trusted=TRUSTED, timeout=2)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    # caplog first: the server's threads (which log) are joined before the level is restored
    with caplog.at_level(logging.INFO, logger="proxyproto.blocking"), running_server(server):
        address = server.server_address
        for client in (("203.0.113.8", 1000), ("203.0.113.9", 2000)):
            with blocking.connect(address, header=encode_v1(client, address),
                                  source_address=(TRUSTED_V4, 0), timeout=5) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                head, _, body = read_all(tls).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200")
            assert json.loads(body) == {"client": list(client), "tls": True}
        # a header, then no TLS at all: refused as "tls"
        with blocking.connect(address, header=encode_v1(SRC, address),
                              source_address=(TRUSTED_V4, 0), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert read_all(raw) == b""
        # no header: refused before any handshake
        with socket.create_connection(address, timeout=5,
                                      source_address=(TRUSTED_V4, 0)) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x05hello")
            assert read_all(raw) == b""
    assert server.proxy_stats.accepted == 2
    assert dict(server.proxy_stats.refused) == {"tls": 1, "no_header": 1}
    assert server.proxy_stats.pending == 0
    assert any("tls" in record.getMessage() for record in caplog.records)
    assert open_fds() == fds


def test_mixin_reads_no_header_from_unix_peers_without_opt_in(tmp_path: Path) -> None:
    import socketserver

    class Server(blocking.ProxyProtocolMixIn, socketserver.ThreadingUnixStreamServer):
        daemon_threads = False

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(repr(self.client_address).encode())

    path = str(tmp_path / "s")
    for opt_in, want in ((False, b""), (True, repr(SRC).encode())):
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
        server = Server(path, Echo, trusted=TRUSTED, trust_unix_peers=opt_in)
        with running_server(server), socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            # refused: the server may close before the header is even sent
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                client.sendall(V1)
            assert read_all(client) == want
        assert dict(server.proxy_stats.refused) == ({} if opt_in else {"untrusted": 1})


def test_missing_header_through_the_blocking_paths() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(APP)
        with pytest.raises(NoProxyHeader) as caught:
            blocking.read_header(a)
        assert refusal_reason(caught.value) == "no_header"
