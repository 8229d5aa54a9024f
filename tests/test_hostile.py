"""Hostile clients: slow loris, truncated and oversize headers, silent floods, resets and
spoofing peers, against the asyncio server, the protocol wrapper and the blocking helpers.

The attack itself lives in ``robustness/load_hostile.py`` (its documented run is longer);
here it runs with a 0.5 s header timeout for about a second per API, and the report must
show: every legitimate request answered, every hostile connection closed with the right
refusal reason, none of them served, and nothing left behind (pending connections, file
descriptors, tasks, threads, PROXY-layer objects).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import proxyproto
from proxyproto import HeaderTooLarge, IncompleteHeader, UntrustedPeer
from proxyproto.blocking import handle_connection, read_header

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "robustness"))

import load_hostile

TIMEOUT = 0.5


def _run_attack(api: str) -> load_hostile.Report:
    import asyncio

    settings = load_hostile.quick_settings(api)
    assert settings.header_timeout == TIMEOUT
    return asyncio.run(asyncio.wait_for(load_hostile.attack(settings), 60))


@pytest.mark.parametrize("api", ["streams", "protocol", "blocking"])
def test_server_survives_hostile_clients(api: str) -> None:
    report = _run_attack(api)
    assert report.problems() == [], report
    # the legitimate client was served all along, with its header's address
    assert report.valid_ok >= 5
    assert report.accepted >= report.valid_ok
    # every hostile connection was closed by the server, none was answered or served
    counts = load_hostile.quick_settings(api).hostile_counts()
    assert {kind: data["count"] for kind, data in report.hostile.items()} == counts
    assert all(data["closed"] == data["count"] for data in report.hostile.values())
    assert report.hostile_answered == report.hostile_served == 0
    # the ones that kept quiet or trickled were closed at the deadline, not before it
    for kind in ("silent", "loris", "short_v1", "short_v2"):
        assert report.hostile[kind]["closed_after_s"]["min"] >= TIMEOUT * 0.9, kind
    # the slow loris never got its header through, however patient
    assert report.hostile["loris"]["bytes_sent_max"] < len(load_hostile.V1_HEADER)
    assert report.refused["timeout"] == (counts["silent"] + counts["loris"]
                                         + counts["short_v1"] + counts["short_v2"])
    # a reset that beat the accept() has no peer address left: 'untrusted', not 'eof'
    assert counts["spoof"] <= report.refused["untrusted"] <= counts["spoof"] + counts["reset"]
    assert report.refused["untrusted"] + report.refused["eof"] <= counts["spoof"] + counts["reset"]
    assert report.refused["too_large"] == counts["oversize"] + counts["endless"]
    assert report.refused["invalid"] == counts["truncated"]
    # and nothing is held afterwards
    assert report.pending_after == 0
    assert report.fds_after <= report.fds_before
    assert report.tasks_leaked == []
    assert report.threads_after <= report.threads_before
    assert report.layers_alive == 0


def test_report_flags_problems() -> None:
    """The checks above can fail: a report with a leak or an unanswered client is refused."""
    report = load_hostile.Report("streams", {}, valid_ok=1, served_after_attack=True,
                                 pending_after=0, fds_before=5, fds_after=6)
    assert any("file descriptors" in p for p in report.problems())
    report = load_hostile.Report("streams", {}, valid_ok=0, pending_after=1)
    problems = " ".join(report.problems())
    assert "no legitimate request" in problems and "pending" in problems


# ---------------------------------------------------------------------------------------
# read_header / handle_connection on their own


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server) ends of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(interval):
            return
        try:
            sock.sendall(bytes((byte,)))
        except OSError:
            return


def test_read_header_slow_loris_hits_the_deadline(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """A whole valid header sent one byte every 50 ms (2.3 s) must not beat a 0.5 s deadline:
    the deadline covers the header, it is not renewed by each byte."""
    client, server = tcp_pair
    header = proxyproto.encode_v1(("192.0.2.1", 51000), ("198.51.100.2", 443))
    stop = threading.Event()
    sender = threading.Thread(target=_trickle, args=(client, header, 0.05, stop))
    sender.start()
    try:
        with pytest.raises(TimeoutError):
            read_header(server, timeout=TIMEOUT)
    finally:
        stop.set()
        sender.join(5)
    assert not sender.is_alive()


def test_read_header_just_short_then_silence_then_close(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    header = proxyproto.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(1, b"h2")])
    client.sendall(header[:-1])
    with pytest.raises(TimeoutError):
        read_header(server, timeout=TIMEOUT)
    client.close()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        other = socket.create_connection(listener.getsockname(), timeout=5)
        accepted, _ = listener.accept()
        with other, accepted:
            other.sendall(header[:-1])
            other.shutdown(socket.SHUT_WR)
            with pytest.raises(IncompleteHeader):
                read_header(accepted, timeout=5)


def test_read_header_oversize_v2_refused_from_the_fixed_part(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    client.sendall(proxyproto.V2_SIGNATURE + b"\x21\x11\xff\xff" + bytes(64))
    with pytest.raises(HeaderTooLarge):
        read_header(server, timeout=5)


def test_read_header_endless_v1_line_buffers_at_most_107_bytes(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """CVE-2021-23351: a v1 line with no CRLF is refused at 107 bytes, the rest is unread."""
    client, server = tcp_pair
    flood = b"PROXY UNKNOWN " + b"x" * 20000
    client.sendall(flood)
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(HeaderTooLarge):
        read_header(server, timeout=5)
    server.settimeout(5)
    left = b""
    while True:
        chunk = server.recv(65536)
        if not chunk:
            break
        left += chunk
    assert len(left) >= len(flood) - proxyproto.V1_MAX_LENGTH


def test_read_header_reset_mid_header(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    header = proxyproto.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2))
    client.sendall(header[:10])
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    time.sleep(0.05)  # let the reset arrive (not an assertion on time)
    with pytest.raises((ConnectionError, IncompleteHeader)):
        read_header(server, timeout=5)


def test_handle_connection_spoofing_peer_is_closed_unread() -> None:
    """An untrusted peer's valid header is never read, let alone believed."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        spoofer = socket.socket()
        spoofer.bind((load_hostile.UNTRUSTED, 0))
        spoofer.connect(listener.getsockname())
        accepted, peer = listener.accept()
        with spoofer, accepted:
            header = proxyproto.encode_v2(("10.0.0.1", 1234), ("127.0.0.1", 80))
            spoofer.sendall(header + b"ping")
            with pytest.raises(UntrustedPeer):
                handle_connection(accepted, peer, trusted=[load_hostile.TRUSTED], timeout=5)
            accepted.settimeout(5)
            got = b""
            while len(got) < len(header) + 4:
                got += accepted.recv(4096)
            assert got == header + b"ping"  # still in the socket: nothing was consumed



def test_trusted_cache_is_bounded_and_agrees_with_the_lookup() -> None:
    """TrustedProxies caches verdicts per peer host; a flood of distinct (e.g. IPv6) peers
    must not grow it without bound, and every verdict must equal the uncached lookup."""
    trusted = proxyproto.TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"])
    peers = [f"10.{i // 256 % 256}.{i % 256}.1" for i in range(1500)]
    peers += [f"2001:db{i % 16:x}::{i:x}" for i in range(1500)]
    peers += ["192.0.2.7", "::ffff:192.0.2.7", "fe80::1%lo", "not an address", ""]
    for peer in peers:
        expected = trusted._lookup(peer)
        assert (peer in trusted) is expected, peer
        assert ((peer, 1234) in trusted) is expected, peer
        assert (peer in trusted) is expected, peer  # now from the cache
    assert len(trusted._cache) <= 1024
