"""proxyproto.blocking on real loopback sockets: read_header, handle_connection, the
client helpers and the per-datagram UDP helpers.

The socketserver mix-in, http.server and TLS live in ``test_blocking_server.py``.
Trusted peers connect from 127.0.0.2, untrusted ones from 127.0.0.3.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

import pytest

import proxyproto
from proxyproto import (
    Command,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    Policy,
    PolicyViolation,
    TrustedProxies,
    UntrustedPeer,
    blocking,
    encode_v1,
    encode_v2,
)

TRUSTED_V4, UNTRUSTED_V4 = "127.0.0.2", "127.0.0.3"
TRUSTED = TrustedProxies([TRUSTED_V4])
TIMEOUT = 0.5
SRC4, DST4 = ("192.0.2.10", 40000), ("198.51.100.20", 443)
SRC6, DST6 = ("2001:db8::10", 40001), ("2001:db8::20", 8443)
# a second "header" inside application data is application data ([SPEC] R-64)
APP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPROXY TCP4 6.6.6.6 7.7.7.7 1 2\r\n"
V1 = encode_v1(SRC4, DST4)
V2 = encode_v2(SRC6, DST6, tlvs=[(0x02, b"example.com")], crc32c=True)
LOCAL = encode_v2(None, None)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_procfs = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd")


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail when a test leaves a file descriptor or a thread behind."""
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    fds, threads = open_fds(), threading.active_count()
    yield
    assert threading.active_count() == threads, "a thread was left running"
    assert open_fds() == fds, "a file descriptor leaked"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(5)
        yield sock


@contextlib.contextmanager
def connection(
    listener: socket.socket,
    writes: Sequence[bytes] = (),
    *,
    source: str = TRUSTED_V4,
    pause: float = 0.0,
    end: str = "keep",
) -> Iterator[tuple[socket.socket, Any]]:
    """A client from ``source`` that writes ``writes`` (one write each, ``pause`` apart)
    from a thread; yields the accepted server side and its peer address.

    ``end``: "keep" leaves the client open, "eof" shuts down its writing side, "reset"
    closes with an RST. Both sockets are closed and the thread joined on exit.
    """
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.settimeout(5)
    client.bind((source, 0))
    client.connect(listener.getsockname())
    stop = threading.Event()

    def write() -> None:
        with contextlib.suppress(OSError):
            for index, chunk in enumerate(writes):
                if stop.is_set():
                    return
                if index and pause:
                    time.sleep(pause)
                client.sendall(chunk)
            if end == "eof":
                client.shutdown(socket.SHUT_WR)
            elif end == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        server, peer = listener.accept()
        with server:
            yield server, peer
    finally:
        stop.set()
        writer.join(10)
        client.close()
        assert not writer.is_alive()


def rest(sock: socket.socket) -> bytes:
    """Everything the socket still yields until EOF (the client must end with "eof")."""
    sock.settimeout(5)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# ---------------------------------------------------------------------------------------
# read_header: exactly the header, not one byte more


@pytest.mark.parametrize("header", [V1, V2, LOCAL, b"PROXY UNKNOWN\r\n"],
                         ids=["v1", "v2", "local", "unknown"])
def test_read_header_leaves_exactly_the_app_bytes_from_the_same_segment(
    listener: socket.socket, header: bytes, no_leaks: None
) -> None:
    with connection(listener, [header + APP], end="eof") as (sock, _):
        got = blocking.read_header(sock, timeout=TIMEOUT)
        assert got == proxyproto.parse(header)
        assert got.length == len(header)
        assert rest(sock) == APP


def test_read_header_gives_the_addresses(listener: socket.socket) -> None:
    with connection(listener, [V2 + APP]) as (sock, _):
        header = blocking.read_header(sock, timeout=TIMEOUT)
    assert (header.source, header.destination, header.authority) == (SRC6, DST6, "example.com")
    with connection(listener, [LOCAL]) as (sock, _):
        header = blocking.read_header(sock, timeout=TIMEOUT)
    assert header.command is Command.LOCAL and header.source is None


def test_read_header_then_a_large_application_stream(listener: socket.socket) -> None:
    big = os.urandom(300_000)
    with connection(listener, [V1 + big[:1000], big[1000:]], end="eof") as (sock, _):
        assert blocking.read_header(sock, timeout=TIMEOUT).source == SRC4
        assert rest(sock) == big


@pytest.mark.parametrize(
    "pieces",
    [
        [V2[:5], V2[5:16], V2[16:] + APP],  # split inside the fixed part, then the body
        [V2[:16], V2[16:30], V2[30:], APP],
        [V1[:7], V1[7:30], V1[30:] + APP],
        [V1[:-1], V1[-1:], APP],  # the CR and the LF in different segments
    ],
    ids=["v2-3", "v2-4", "v1-3", "v1-crlf"],
)
def test_read_header_split_across_writes(listener: socket.socket, pieces: list[bytes]) -> None:
    header = b"".join(pieces)[: -len(APP)]
    with connection(listener, pieces, pause=0.02, end="eof") as (sock, _):
        assert blocking.read_header(sock, timeout=5) == proxyproto.parse(header)
        assert rest(sock) == APP


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_read_header_byte_by_byte(listener: socket.socket, header: bytes) -> None:
    pieces = [header[i : i + 1] for i in range(len(header))] + [APP]
    with connection(listener, pieces, pause=0.001, end="eof") as (sock, _):
        assert blocking.read_header(sock, timeout=10) == proxyproto.parse(header)
        assert rest(sock) == APP


@pytest.mark.parametrize("previous", [None, 0.0, 2.5])
def test_read_header_restores_the_previous_timeout(
    listener: socket.socket, previous: Optional[float]
) -> None:
    with connection(listener, [V1 + APP]) as (sock, _):
        sock.settimeout(previous)
        blocking.read_header(sock, timeout=TIMEOUT)
        assert sock.gettimeout() == previous
    with connection(listener, [b"GET / HTTP/1.0\r\n"]) as (sock, _):
        sock.settimeout(previous)
        with pytest.raises(NoProxyHeader):
            blocking.read_header(sock, timeout=TIMEOUT)
        assert sock.gettimeout() == previous


def test_read_header_no_header_consumes_nothing(listener: socket.socket) -> None:
    with connection(listener, [APP], end="eof") as (sock, _), pytest.raises(NoProxyHeader):
        blocking.read_header(sock, timeout=TIMEOUT)
        assert rest(sock) == APP


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 1234\r\n", InvalidHeader),  # a port missing
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 1 99999\r\n", InvalidHeader),
        (b"\r\n\r\n\x00\r\nQUIT\n\x23\x11\x00\x0c" + bytes(12), InvalidHeader),  # command 3
        (encode_v2(SRC4, DST4, tlvs=[(0xE5, b"x" * 5000)]), HeaderTooLarge),
        (b"PROXY UNKNOWN " + b"x" * 200, HeaderTooLarge),  # v1 over 107 bytes, no CRLF
    ],
    ids=["v1-port-missing", "v1-port-range", "v2-command", "v2-oversize", "v1-oversize"],
)
def test_read_header_invalid(listener: socket.socket, data: bytes, error: type) -> None:
    with connection(listener, [data + APP]) as (sock, _), pytest.raises(error):
        blocking.read_header(sock, timeout=TIMEOUT)


def test_read_header_max_size(listener: socket.socket) -> None:
    header = encode_v2(SRC4, DST4, tlvs=[(0xE5, b"x" * 5000)])
    with connection(listener, [header + APP], end="eof") as (sock, _):
        assert blocking.read_header(sock, timeout=5, max_size=8192).length == len(header)
        assert rest(sock) == APP
    with connection(listener, [V2]) as (sock, _), pytest.raises(HeaderTooLarge):
        blocking.read_header(sock, timeout=5, max_size=20)


def test_read_header_eof_mid_header(listener: socket.socket) -> None:
    with connection(listener, [V2[:20]], end="eof") as (sock, _), pytest.raises(IncompleteHeader):
        blocking.read_header(sock, timeout=TIMEOUT)
    with connection(listener, [], end="eof") as (sock, _), pytest.raises(NoProxyHeader):
        blocking.read_header(sock, timeout=TIMEOUT)


def test_read_header_reset_mid_header(listener: socket.socket) -> None:
    with connection(listener, [V2[:20]], pause=0.05, end="reset") as (sock, _), \
            pytest.raises((ConnectionError, IncompleteHeader)):
        blocking.read_header(sock, timeout=5)


def test_read_header_times_out_when_nothing_comes(listener: socket.socket) -> None:
    with connection(listener, []) as (sock, _), pytest.raises(TimeoutError):
        blocking.read_header(sock, timeout=0.3)
        assert sock.gettimeout() is None


def test_slow_loris_does_not_extend_the_deadline(listener: socket.socket) -> None:
    """One byte every 0.05 s of a header announcing 1000 bytes: the deadline still holds.

    With a per-recv timeout the read would last as long as the drip (80 bytes, 4 s);
    with an overall deadline it ends while the drip is still going.
    """
    header = encode_v2(SRC4, DST4, tlvs=[(0xE5, b"x" * 980)])
    limit = 80
    sent: list[int] = []
    stop = threading.Event()
    client = socket.create_connection(listener.getsockname(), timeout=5)

    def drip() -> None:
        with contextlib.suppress(OSError):
            for index in range(limit):
                if stop.wait(0.05):
                    return
                client.sendall(header[index : index + 1])
                sent.append(index)

    writer = threading.Thread(target=drip)
    writer.start()
    try:
        sock, _ = listener.accept()
        with sock, pytest.raises(TimeoutError):
            blocking.read_header(sock, timeout=0.4)
        assert len(sent) < limit  # the drip had not finished: the deadline did not move
    finally:
        stop.set()
        writer.join(10)
        client.close()


def test_read_header_timeout_argument() -> None:
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            blocking.read_header(a, timeout=0)
        with pytest.raises(TypeError):
            blocking.read_header(a, timeout="1")  # type: ignore[arg-type]
        b.sendall(V1)
        assert blocking.read_header(a, timeout=None).source == SRC4  # no deadline at all
        b.sendall(V2 + APP)
        assert blocking.read_header(a, timeout=float("inf")).source == SRC6
        b.close()
        assert rest(a) == APP


def test_read_header_over_a_unix_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(LOCAL + APP)
        b.shutdown(socket.SHUT_WR)
        assert blocking.read_header(a, timeout=TIMEOUT).command is Command.LOCAL
        assert rest(a) == APP


# ---------------------------------------------------------------------------------------
# handle_connection: the policy table on a bare accept()


def served(sock: socket.socket, peer: Any, **kwargs: Any) -> Optional[proxyproto.ProxyHeader]:
    kwargs.setdefault("trusted", TRUSTED)
    kwargs.setdefault("timeout", TIMEOUT)
    return blocking.handle_connection(sock, peer, **kwargs)


def test_handle_connection_defaults_require_a_header_from_trusted_peers(
    listener: socket.socket,
) -> None:
    with connection(listener, [V1 + APP], end="eof") as (sock, peer):
        assert served(sock, peer).source == SRC4
        assert rest(sock) == APP
    with connection(listener, [APP]) as (sock, peer), pytest.raises(NoProxyHeader):
        served(sock, peer)


def test_handle_connection_untrusted_closed_before_reading(listener: socket.socket) -> None:
    with connection(listener, [V1 + APP], source=UNTRUSTED_V4, end="eof") as (sock, peer):
        time.sleep(0.05)
        with pytest.raises(UntrustedPeer):
            served(sock, peer)
        assert rest(sock) == V1 + APP  # not one byte was read


@pytest.mark.parametrize("policy", [Policy.USE, Policy.IGNORE, Policy.REJECT, Policy.SKIP])
def test_handle_connection_optional_policies_leave_the_bytes(
    listener: socket.socket, policy: Policy
) -> None:
    with connection(listener, [APP], end="eof") as (sock, peer):
        assert served(sock, peer, policy=policy) is None
        assert rest(sock) == APP


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(Policy.REQUIRE, "header"), (Policy.USE, "header"), (Policy.IGNORE, None),
     (Policy.REJECT, PolicyViolation), (Policy.SKIP, "all")],
)
def test_handle_connection_trusted_with_a_header(
    listener: socket.socket, policy: Policy, expected: Any
) -> None:
    with connection(listener, [V2 + APP], end="eof") as (sock, peer):
        if isinstance(expected, type):
            with pytest.raises(expected):
                served(sock, peer, policy=policy)
            return
        header = served(sock, peer, policy=policy)
        assert header == (proxyproto.parse(V2) if expected == "header" else None)
        assert rest(sock) == (V2 + APP if expected == "all" else APP)


@pytest.mark.parametrize("untrusted", [Policy.IGNORE, Policy.SKIP, Policy.REJECT])
def test_handle_connection_untrusted_header_never_believed(
    listener: socket.socket, untrusted: Policy
) -> None:
    with connection(listener, [V1 + APP], source=UNTRUSTED_V4, end="eof") as (sock, peer):
        if untrusted is Policy.REJECT:
            with pytest.raises(PolicyViolation):
                served(sock, peer, untrusted_policy=untrusted)
            return
        assert served(sock, peer, untrusted_policy=untrusted) is None
        assert rest(sock) == (V1 + APP if untrusted is Policy.SKIP else APP)


@pytest.mark.parametrize("untrusted", [Policy.USE, Policy.REQUIRE])
def test_handle_connection_refuses_to_trust_untrusted_peers(
    listener: socket.socket, untrusted: Policy
) -> None:
    with connection(listener, [V1 + APP]) as (sock, peer), pytest.raises(ValueError):
        served(sock, peer, untrusted_policy=untrusted)


def test_handle_connection_callable_policy(listener: socket.socket) -> None:
    seen: list[tuple[Any, Any]] = []

    def choose(peer: Any, local: Any) -> Policy:
        seen.append((peer, local))
        return Policy.USE  # even for the untrusted peer: never believed

    with connection(listener, [V1 + APP], end="eof") as (sock, peer):
        assert served(sock, peer, policy=choose).source == SRC4
        assert seen[-1] == (peer, sock.getsockname())
    with connection(listener, [V1 + APP], source=UNTRUSTED_V4) as (sock, peer), \
            pytest.raises(UntrustedPeer):
        served(sock, peer, policy=choose)
    with connection(listener, [V1 + APP], source=UNTRUSTED_V4, end="eof") as (sock, peer):
        assert served(sock, peer, policy=lambda peer, local: Policy.IGNORE) is None
        assert rest(sock) == APP


def test_handle_connection_ipv4_mapped_peer_of_a_dual_stack_socket() -> None:
    """A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d: trusted as IPv4."""
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6")
    with listener:
        try:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(("::ffff:127.0.0.1", 0))
        except OSError as exc:
            pytest.skip(f"no dual-stack loopback: {exc}")
        listener.listen()
        listener.settimeout(5)
        for source, trusted in [(TRUSTED_V4, True), (UNTRUSTED_V4, False)]:
            with socket.create_connection(("127.0.0.1", listener.getsockname()[1]), timeout=5,
                                          source_address=(source, 0)) as client:
                client.sendall(V1 + APP)
                sock, peer = listener.accept()
                with sock:
                    assert peer[0] == "::ffff:" + source
                    if trusted:
                        assert served(sock, peer).source == SRC4
                    else:
                        with pytest.raises(UntrustedPeer):
                            served(sock, peer)


def test_handle_connection_peer_defaults_to_getpeername(listener: socket.socket) -> None:
    with connection(listener, [V1]) as (sock, _):
        assert blocking.handle_connection(sock, trusted=[TRUSTED_V4]).source == SRC4


def test_handle_connection_server_speaks_first_under_an_optional_policy(
    listener: socket.socket,
) -> None:
    """A client that waits for a banner gets it once the header deadline passed (USE)."""
    with connection(listener, []) as (sock, peer):
        assert served(sock, peer, policy=Policy.USE, timeout=0.3) is None
    with connection(listener, []) as (sock, peer), pytest.raises(TimeoutError):
        served(sock, peer, timeout=0.3)


def test_handle_connection_partial_signature_then_other_bytes(
    listener: socket.socket,
) -> None:
    """A first segment that is a strict prefix of a signature gets consumed; when the next
    bytes break the signature, the connection is refused (its bytes cannot be put back)."""
    with connection(listener, [b"PRO", b"TOCOL\r\n"], pause=0.1) as (sock, peer), \
            pytest.raises(NoProxyHeader):
        served(sock, peer, policy=Policy.USE, timeout=5)


def test_handle_connection_eof_before_anything(listener: socket.socket) -> None:
    with connection(listener, [], end="eof") as (sock, peer):
        assert served(sock, peer, policy=Policy.USE) is None
    with connection(listener, [], end="eof") as (sock, peer), pytest.raises(NoProxyHeader):
        served(sock, peer)


@needs_procfs
def test_handle_connection_leaks_nothing(listener: socket.socket, no_leaks: None) -> None:
    cases: list[tuple[Sequence[bytes], str, str]] = [
        ([V1 + APP], TRUSTED_V4, "eof"), ([APP], TRUSTED_V4, "eof"),
        ([V2[:10]], TRUSTED_V4, "keep"), ([V2[:10]], TRUSTED_V4, "reset"),
        ([V1], UNTRUSTED_V4, "eof"), ([b"PROXY nope\r\n"], TRUSTED_V4, "eof"),
    ]
    for writes, source, end in cases:
        with connection(listener, writes, source=source, end=end) as (sock, peer), \
                contextlib.suppress(proxyproto.ProxyProtocolError, OSError):
            served(sock, peer, timeout=0.3)


# ---------------------------------------------------------------------------------------
# Clients


def test_connect_sends_the_header_first_in_one_sendall(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    original = socket.socket.sendall

    def spy(self: socket.socket, data: Any, *args: Any) -> None:
        calls.append(bytes(data))
        original(self, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", spy)
    with blocking.connect(listener.getsockname(), header=V2, timeout=5,
                          source_address=(TRUSTED_V4, 0)) as client:
        monkeypatch.undo()
        client.sendall(APP)
        client.shutdown(socket.SHUT_WR)
        sock, peer = listener.accept()
        with sock:
            assert peer[0] == TRUSTED_V4
            assert served(sock, peer) == proxyproto.parse(V2)
            assert rest(sock) == APP
    assert calls == [V2]


def test_connect_with_a_header_built_from_its_own_socket(listener: socket.socket) -> None:
    def own(sock: socket.socket) -> bytes:
        return blocking.header_from_socket(sock, accepted=False, version=1)

    with blocking.connect(listener.getsockname(), header=own, timeout=5) as client:
        sock, _ = listener.accept()
        with sock:
            header = blocking.read_header(sock, timeout=TIMEOUT)
            assert header.version == 1
            assert header.source == client.getsockname()
            assert header.destination == client.getpeername()


def test_connect_with_a_proxy_header_object(listener: socket.socket) -> None:
    wanted = proxyproto.parse(V2)
    with blocking.connect(listener.getsockname(), header=wanted, timeout=5):
        sock, _ = listener.accept()
        with sock:
            assert blocking.read_header(sock, timeout=TIMEOUT) == wanted


@pytest.mark.parametrize("bad", [V1 + b"x", b"PROXY nope\r\n", V2[:-1], "PROXY UNKNOWN\r\n"])
def test_connect_refuses_a_bad_header_before_connecting(
    listener: socket.socket, bad: Any
) -> None:
    with pytest.raises((ValueError, TypeError)):
        blocking.connect(listener.getsockname(), header=bad, timeout=5)
    listener.settimeout(0.05)
    with pytest.raises(OSError):  # nothing connected
        listener.accept()


def test_connect_closes_the_socket_when_the_callable_fails(
    listener: socket.socket, no_leaks: None
) -> None:
    def broken(sock: socket.socket) -> bytes:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        blocking.connect(listener.getsockname(), header=broken, timeout=5)
    sock, _ = listener.accept()
    sock.close()


def test_header_from_socket_both_sides(listener: socket.socket) -> None:
    with connection(listener, []) as (sock, peer):
        header = proxyproto.parse(blocking.header_from_socket(sock))
        assert (header.version, header.source, header.destination) == (
            2, peer, sock.getsockname())
        header = proxyproto.parse(blocking.header_from_socket(sock, accepted=False, version=1))
        assert (header.source, header.destination) == (sock.getsockname(), peer)
        header = proxyproto.parse(blocking.header_from_socket(
            sock, tlvs=[(0x05, b"id")], crc32c=True))
        assert header.unique_id == b"id" and len(header.tlvs) == 2
        with pytest.raises(ValueError):
            blocking.header_from_socket(sock, version=1, tlvs=[(0x05, b"id")])
        with pytest.raises(ValueError):
            blocking.header_from_socket(sock, version=3)


def test_header_from_socket_unix_gives_local() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert blocking.header_from_socket(a) == encode_v2(None, None)
        assert blocking.header_from_socket(a, version=1) == b"PROXY UNKNOWN\r\n"


# ---------------------------------------------------------------------------------------
# Datagrams: one header per datagram, parsed on its own


@pytest.fixture
def udp() -> Iterator[Callable[[str], socket.socket]]:
    """Yields a factory of UDP senders bound to a source address; the receiver is
    ``udp.receiver`` (bound to 127.0.0.1)."""
    opened: list[socket.socket] = []
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    opened.append(receiver)

    def sender(source: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(sock)
        sock.bind((source, 0))
        sock.connect(receiver.getsockname())
        return sock

    sender.receiver = receiver  # type: ignore[attr-defined]
    try:
        yield sender
    finally:
        for sock in opened:
            sock.close()


def recv(udp: Any, **kwargs: Any) -> tuple[Any, bytes, Any]:
    kwargs.setdefault("trusted", TRUSTED)
    result: tuple[Any, bytes, Any] = blocking.recv_datagram(udp.receiver, **kwargs)
    return result


def test_datagram_round_trip(udp: Any) -> None:
    sender = udp(TRUSTED_V4)
    dgram = encode_v2(SRC4, DST4, transport=socket.SOCK_DGRAM)
    assert blocking.send_datagram(sender, b"payload", header=dgram) == len(dgram) + 7
    header, payload, peer = recv(udp)
    assert (header.source, header.transport, payload) == (SRC4, socket.SOCK_DGRAM, b"payload")
    assert peer == sender.getsockname()


def test_datagrams_are_parsed_independently(udp: Any) -> None:
    """No per-sender caching: a datagram without a header is refused under REQUIRE even
    right after one with a header from the same sender."""
    sender = udp(TRUSTED_V4)
    blocking.send_datagram(sender, b"one", header=proxyproto.parse(V1))
    sender.send(b"two")
    assert recv(udp)[:2] == (proxyproto.parse(V1), b"one")
    with pytest.raises(NoProxyHeader):
        recv(udp)
    sender.send(V2[:20])  # a header cut short: it must not continue in the next datagram
    sender.send(V2[20:])
    with pytest.raises(InvalidHeader):
        recv(udp)
    with pytest.raises(NoProxyHeader):
        recv(udp)


def test_datagram_trust(udp: Any) -> None:
    stranger = udp(UNTRUSTED_V4)
    for _ in range(3):
        blocking.send_datagram(stranger, b"data", header=V1)
    with pytest.raises(UntrustedPeer):
        recv(udp)
    header, payload, peer = recv(udp, untrusted_policy=Policy.IGNORE)
    assert (header, payload, peer) == (None, b"data", stranger.getsockname())
    with pytest.raises(PolicyViolation):
        recv(udp, untrusted_policy=Policy.REJECT)
    with pytest.raises(ValueError):
        recv(udp, untrusted_policy=Policy.USE)


def test_datagram_optional_policy_and_address(udp: Any) -> None:
    sender = udp(TRUSTED_V4)
    sender.send(b"plain")
    assert recv(udp, policy=Policy.USE)[:2] == (None, b"plain")
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with other:
        other.bind((TRUSTED_V4, 0))
        blocking.send_datagram(other, b"x", header=V1, address=udp.receiver.getsockname())
        assert recv(udp)[1:] == (b"x", other.getsockname())


def test_datagram_header_from_a_udp_socket(udp: Any) -> None:
    sender = udp(TRUSTED_V4)
    header = proxyproto.parse(blocking.header_from_socket(sender, accepted=False))
    assert header.transport == socket.SOCK_DGRAM
    assert header.source == sender.getsockname()
    with pytest.raises(ValueError):
        blocking.header_from_socket(sender, version=1)


def test_nothing_left_readable(listener: socket.socket) -> None:
    """Sanity check of the harness: a refused accept leaves no pending connection."""
    assert select.select([listener], [], [], 0)[0] == []
