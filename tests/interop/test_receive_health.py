"""HAProxy health checks with ``send-proxy`` / ``send-proxy-v2``: what our servers receive.

The checks come from a HAProxy of their own (``haproxy_checks``), every 300 ms, to
sinks nobody else uses. A check connects, sends its header and closes with an RST: the
capture servers must keep what they read before the reset.
"""

from __future__ import annotations

import socket

import pytest

import proxyproto
from proxyproto import Command, TLVType

from ._harness import Capture, Received, all_modes, check_raw
from .conftest import Peer

pytestmark = pytest.mark.interop


def one_check(peer: Peer, name: str, mode: str) -> Received:
    """The next health check that reaches ``name``'s sink, as ``mode`` saw it.

    There is no payload: the check closes right after its header.
    """
    with Capture(peer.sinks[name], mode) as capture:
        received = capture.result()
    if mode == "raw":
        assert received.raw, f"no health check reached the sink:\n{peer.process.output()[-2000:]}"
        check_raw(received, b"")
    else:
        assert received.served, f"the {mode} server did not serve the check: {received.error!r}"
        assert received.payload == b""
    assert received.header is not None
    return received


@all_modes
def test_v1_check_carries_real_tcp4_addresses(haproxy_checks: Peer, mode: str) -> None:
    """v1 checks are not ``UNKNOWN``: they carry the check socket's own addresses."""
    received = one_check(haproxy_checks, "check_v1", mode)
    header = received.header
    assert header is not None
    assert (header.version, header.command, header.family) == (
        1, Command.PROXY, socket.AF_INET)
    sink = haproxy_checks.sinks["check_v1"]
    assert header.destination == sink.address
    assert header.source is not None and header.source[0] == "127.0.0.1"
    if received.socket_peer is not None:  # the connection's real source port
        assert header.source == received.socket_peer
    if mode == "aio":
        assert received.peername[:2] == header.source


@all_modes
def test_v2_check_is_local(haproxy_checks: Peer, mode: str) -> None:
    """v2 checks are ``LOCAL`` with family UNSPEC and nothing after the 16 bytes."""
    received = one_check(haproxy_checks, "check_v2", mode)
    header = received.header
    assert header is not None
    assert (header.version, header.command, header.family) == (2, Command.LOCAL,
                                                               socket.AF_UNSPEC)
    assert (header.source, header.destination, header.tlvs, header.length) == (
        None, None, (), 16)
    if mode in ("aio", "socketserver"):  # the real connection's addresses apply
        assert received.peername[0] == "127.0.0.1"
        assert tuple(received.sockname[:2]) == haproxy_checks.sinks["check_v2"].address


@all_modes
def test_v2_check_with_crc32c_is_local_with_a_tlv(haproxy_checks: Peer, mode: str) -> None:
    """With ``proxy-v2-options crc32c``, a check is a LOCAL header that carries a TLV:
    LOCAL does not mean ``len`` 0."""
    received = one_check(haproxy_checks, "check_v2_crc", mode)
    header = received.header
    assert header is not None
    assert (header.command, header.family, header.source) == (Command.LOCAL,
                                                               socket.AF_UNSPEC, None)
    assert [tlv.type for tlv in header.tlvs] == [TLVType.CRC32C]
    assert header.length == 16 + 3 + 4
    assert header.crc32c == proxyproto.crc32c(
        header.to_bytes()[:-4] + b"\x00\x00\x00\x00")
