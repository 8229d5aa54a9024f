"""Our encoder's output, sent to real receivers: HAProxy ``accept-proxy`` (an HTTP echo of
``src``/``dst``/``fc_pp_*`` plus its log-format and error-log-format lines) and nginx
``listen ... proxy_protocol`` (an http and a stream echo of ``$proxy_protocol_*``, plus its
error log).

Every case is a row of a table: the header (ours, or hand-made on purpose), what our own
parser says of it, and what each receiver was seen to do with it. The rows where the peers
and the spec part ways are the ones the documentation (``docs/interop.rst``) lists.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Optional, Union

import pytest

import proxyproto
from proxyproto import TLVType

from ._harness import HTTP_GET, ClientResult, TCPAddress, http_body, request, wait_until
from .conftest import Peer

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Shows:
    """Accepted; the receiver decoded these addresses (``None``: the header has none, so
    HAProxy shows the connection's own and nginx shows empty ``$proxy_protocol_*``)."""

    source: Optional[TCPAddress] = None
    destination: Optional[TCPAddress] = None
    authority: str = ""  # HAProxy's fc_pp_authority
    unique_id: str = ""  # HAProxy's fc_pp_unique_id


@dataclass(frozen=True)
class Refused:
    """Closed without an answer; the receiver's log says ``log``."""

    log: str


Expect = Union[Shows, Refused]

# HAProxy 2.6's fc_err_str texts, and nginx 1.22's error log texts
HA_INVALID = "Received an invalid PROXY protocol header"
HA_UNHANDLED = "Received an unhandled protocol in the PROXY protocol header"
HA_NOT_PROXY = "Received something which does not look like a PROXY protocol header"
HA_TRUNCATED = "Truncated PROXY protocol header received"
NG_TOO_LARGE = "header is too large while reading PROXY protocol"
NG_BROKEN = "broken header"


@dataclass(frozen=True)
class Case:
    """One header and what everyone makes of it."""

    header: bytes
    haproxy: Expect
    nginx_http: Expect
    nginx_stream: Expect
    #: What our parser raises on it (``None``: it parses, as the whole input).
    ours: Optional[type[Exception]] = None
    #: Send the first N bytes, pause, then the rest (a header split across writes).
    pause_after: Optional[int] = None


V4 = (("192.0.2.1", 51000), ("198.51.100.2", 443))
V6 = (("2001:db8::1", 65535), ("2001:db8::2", 1))
MIXED = (("192.0.2.1", 1024), ("2001:db8::2", 443))
MIXED_SHOWN = (("::ffff:192.0.2.1", 1024), ("2001:db8::2", 443))  # how everyone writes it
EDGE_PORTS = (("198.51.100.7", 0), ("203.0.113.9", 65535))
SSL_VALUE = bytes([0x07, 0, 0, 0, 0]) + b"\x21\x00\x07TLSv1.3" + b"\x22\x00\x06client"
EVERY_TLV = [
    (TLVType.ALPN, b"h2"), (TLVType.AUTHORITY, b"app.interop.test"),
    (TLVType.UNIQUE_ID, b"request-0001"), (TLVType.NOOP, b""), (TLVType.SSL, SSL_VALUE),
    (TLVType.NETNS, b"blue"), (TLVType.GCP, (42).to_bytes(8, "big")),
    (TLVType.AWS, b"\x01vpce-08d2bf15fac5001c9"), (TLVType.AZURE, b"\x01\x2a\x00\x00\x00"),
    (0xF0, b"experimental"),
]


def padded_v2(total: int) -> bytes:
    """A v2 TCP4 header of exactly ``total`` bytes (a NOOP TLV pads it)."""
    header = proxyproto.encode_v2(*V4, tlvs=[(TLVType.NOOP, bytes(total - 16 - 12 - 3))])
    assert len(header) == total
    return header


def corrupt_crc(header: bytes) -> bytes:
    """``header`` (whose last TLV is the CRC32C) with one bit of the checksum flipped."""
    return header[:-1] + bytes([header[-1] ^ 0x01])


def with_command(header: bytes, command: int) -> bytes:
    """A v2 header with byte 12 (version and command) replaced."""
    return header[:12] + bytes([command]) + header[13:]


def everyone(expect: Expect) -> dict[str, Expect]:
    """The same expectation for the three receivers."""
    return {"haproxy": expect, "nginx_http": expect, "nginx_stream": expect}


def nginx_only(http: Expect, stream: Optional[Expect] = None) -> dict[str, Expect]:
    """nginx's expectations (the stream one defaults to the http one)."""
    return {"nginx_http": http, "nginx_stream": stream if stream is not None else http}


NOTHING = Shows()
CASES: dict[str, Case] = {
    # -- what our encoder emits -----------------------------------------------------------
    "v1-tcp4": Case(proxyproto.encode_v1(*V4), **everyone(Shows(*V4))),
    "v1-tcp6": Case(proxyproto.encode_v1(*V6), **everyone(Shows(*V6))),
    "v1-mixed-families": Case(proxyproto.encode_v1(*MIXED), **everyone(Shows(*MIXED_SHOWN))),
    "v1-ports-0-and-65535": Case(proxyproto.encode_v1(*EDGE_PORTS), **everyone(Shows(*EDGE_PORTS))),
    "v1-unknown": Case(proxyproto.encode_v1(None, None), **everyone(NOTHING)),
    "v2-tcp4": Case(proxyproto.encode_v2(*V4), **everyone(Shows(*V4))),
    "v2-tcp6": Case(proxyproto.encode_v2(*V6), **everyone(Shows(*V6))),
    "v2-mixed-families": Case(proxyproto.encode_v2(*MIXED), **everyone(Shows(*MIXED_SHOWN))),
    "v2-ports-0-and-65535": Case(proxyproto.encode_v2(*EDGE_PORTS),
                                 **everyone(Shows(*EDGE_PORTS))),
    "v2-local": Case(proxyproto.encode_v2(None, None), **everyone(NOTHING)),
    "v2-authority-crc32c": Case(
        proxyproto.encode_v2(*V4, tlvs=[(TLVType.AUTHORITY, b"a.test")], crc32c=True),
        haproxy=Shows(*V4, authority="a.test"), **nginx_only(Shows(*V4))),
    "v2-every-tlv-crc32c": Case(
        proxyproto.encode_v2(*V4, tlvs=EVERY_TLV, crc32c=True),
        haproxy=Shows(*V4, authority="app.interop.test", unique_id="request-0001"),
        **nginx_only(Shows(*V4), Refused(NG_TOO_LARGE))),
    # HAProxy 2.6 does not look at a LOCAL header's TLVs (newer versions do)
    "v2-local-with-tlvs": Case(
        proxyproto.encode_v2(None, None, tlvs=[(TLVType.AUTHORITY, b"a.test")], crc32c=True),
        **everyone(NOTHING)),
    "v2-udp": Case(proxyproto.encode_v2(*V4, transport=socket.SOCK_DGRAM),
                   haproxy=Refused(HA_INVALID), **nginx_only(NOTHING)),
    "v2-unix": Case(proxyproto.encode_v2("/run/a.sock", "/run/b.sock"),
                    haproxy=Refused(HA_INVALID), **nginx_only(NOTHING, Refused(NG_TOO_LARGE))),
    # nginx 1.22 reads the header from one buffer: 107 bytes in stream, 1 KiB in http
    "v2-107-bytes": Case(padded_v2(107), **everyone(Shows(*V4))),
    "v2-108-bytes": Case(padded_v2(108), haproxy=Shows(*V4),
                         **nginx_only(Shows(*V4), Refused(NG_TOO_LARGE))),
    "v2-1024-bytes": Case(padded_v2(1024), haproxy=Shows(*V4),
                          **nginx_only(Shows(*V4), Refused(NG_TOO_LARGE))),
    "v2-1025-bytes": Case(padded_v2(1025), haproxy=Shows(*V4),
                          **nginx_only(Refused(NG_TOO_LARGE))),
    "v2-authority-255-bytes": Case(
        proxyproto.encode_v2(*V4, tlvs=[(TLVType.AUTHORITY, b"a" * 255)]),
        haproxy=Shows(*V4, authority="a" * 255),
        **nginx_only(Shows(*V4), Refused(NG_TOO_LARGE))),
    # valid for the spec and for us; HAProxy caps AUTHORITY at 255 bytes
    "v2-authority-256-bytes": Case(
        proxyproto.encode_v2(*V4, tlvs=[(TLVType.AUTHORITY, b"a" * 256)]),
        haproxy=Refused(HA_INVALID), **nginx_only(Shows(*V4), Refused(NG_TOO_LARGE))),
    # -- invalid (or unusual) on purpose --------------------------------------------------
    "v2-corrupted-crc32c": Case(corrupt_crc(proxyproto.encode_v2(*V4, crc32c=True)),
                                ours=proxyproto.ChecksumMismatch, haproxy=Refused(HA_INVALID),
                                **nginx_only(Shows(*V4))),
    "v2-command-2": Case(with_command(proxyproto.encode_v2(*V4), 0x22),
                         ours=proxyproto.InvalidHeader, haproxy=Refused(HA_INVALID),
                         **nginx_only(NOTHING)),
    # the spec lets a receiver ignore an UNSPEC block; HAProxy refuses PROXY with it
    "v2-proxy-unspec": Case(proxyproto.V2_SIGNATURE + b"\x21\x00\x00\x00",
                            haproxy=Refused(HA_INVALID), **nginx_only(NOTHING)),
    # the spec says to ignore what follows UNKNOWN; HAProxy refuses it
    "v1-unknown-with-addresses": Case(b"PROXY UNKNOWN 192.0.2.1 198.51.100.2 51000 443\r\n",
                                      haproxy=Refused(HA_UNHANDLED), **nginx_only(NOTHING)),
    # the spec says to ignore a LOCAL header's addresses; HAProxy 2.6 accepts it
    "v2-local-with-addresses": Case(with_command(proxyproto.encode_v2(*V4), 0x20),
                                    **everyone(NOTHING)),
    "no-header": Case(b"", ours=proxyproto.NoProxyHeader, haproxy=Refused(HA_NOT_PROXY),
                      **nginx_only(Refused(NG_BROKEN))),
    "v2-split-across-two-writes": Case(proxyproto.encode_v2(*V4), pause_after=10,
                                       haproxy=Refused(HA_TRUNCATED),
                                       **nginx_only(Refused(NG_BROKEN))),
}

RECEIVERS = ("haproxy", "nginx_http", "nginx_stream")


def echoed(body: bytes) -> list[str]:
    """The bracketed fields of an echo line."""
    return [field.decode() for field in re.findall(rb"\[([^\]]*)\]", body)]


def send(peer: Peer, receiver: str, case: Case) -> ClientResult:
    """Send ``case.header`` to ``receiver`` (with an HTTP request for the HTTP ones)."""
    frontend = {"haproxy": "echo", "nginx_http": "http_echo",
                "nginx_stream": "stream_echo"}[receiver]
    return request(peer.frontends[frontend], case.header, HTTP_GET, pause_after=case.pause_after)


def shown(expect: Shows, client: ClientResult, receiver: str) -> list[str]:
    """The four address fields the receiver should echo."""
    if expect.source is not None and expect.destination is not None:
        source, destination = expect.source, expect.destination
    elif receiver == "haproxy":  # no addresses in the header: the connection's own
        source, destination = client.sockname, client.peername
    else:
        return ["", "", "", ""]
    return [source[0], str(source[1]), destination[0], str(destination[1])]


def as_echoed(fields: list[str]) -> list[str]:
    """Port 0 as the echoes print it: HAProxy's ``src_port``/``dst_port`` fetches and
    nginx's ``$proxy_protocol_*port`` treat 0 as "no port" and print nothing (HAProxy's
    log-format ``%cp``/``%fp`` print ``0``)."""
    return [field if index % 2 == 0 or field != "0" else "" for index, field in
            enumerate(fields)]


@pytest.mark.parametrize("receiver", RECEIVERS)
@pytest.mark.parametrize("name", list(CASES))
def test_receiver(haproxy: Peer, nginx: Peer, name: str, receiver: str) -> None:
    case = CASES[name]
    expect: Expect = getattr(case, receiver)
    peer = haproxy if receiver == "haproxy" else nginx
    offset = peer.log_size()
    client = send(peer, receiver, case)
    if isinstance(expect, Refused):
        assert client.reply == b"", f"{receiver} answered {client.reply[:200]!r}"
        wait_until(lambda: expect.log in peer.log_since(offset),
                   f"{expect.log!r} in {peer.log}")
        return
    body = client.reply if receiver == "nginx_stream" else http_body(client.reply)
    fields = echoed(body)
    addresses = shown(expect, client, receiver)
    if receiver != "haproxy":
        assert fields == as_echoed(addresses)
        return
    assert fields == [*as_echoed(addresses), "1", expect.authority, expect.unique_id]
    # and the log-format line says the same (an absent value is "-" there)
    line = "ok " + " ".join(f"[{field}]" for field in
                            [*addresses, "1", expect.authority or "-"])
    wait_until(lambda: line in peer.log_since(offset), f"{line!r} in {peer.log}")


@pytest.mark.parametrize("name", list(CASES))
def test_our_parser_on_the_same_header(name: str) -> None:
    """The same table, for our parser: valid headers parse (up to the request that
    follows them), the others raise."""
    case = CASES[name]
    if case.ours is None:
        assert proxyproto.parse(case.header + HTTP_GET).length == len(case.header)
    else:
        with pytest.raises(case.ours):
            proxyproto.parse(case.header + HTTP_GET)
