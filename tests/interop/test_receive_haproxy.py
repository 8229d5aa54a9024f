"""Our parser and servers receive what HAProxy sends: ``send-proxy`` and ``send-proxy-v2``
over IPv4, IPv6, v4-mapped and UNIX-socket frontends, and HAProxy as a relay.

Expected addresses come from the client's own socket, never from the captured bytes.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

import proxyproto
from proxyproto import Command, TLVType

from ._harness import (
    CLIENT_V4,
    ClientResult,
    all_modes,
    check_adapter_view,
    exchange,
    needs_ipv6,
    receive,
)
from .conftest import Peer

pytestmark = pytest.mark.interop


def through(peer: Peer, name: str, **options: object):  # type: ignore[no-untyped-def]
    """A client that sends its payload to frontend ``name`` of ``peer``."""
    return lambda payload: exchange(peer.frontends[name], payload, **options)  # type: ignore[arg-type]


def mapped(host: str) -> str:
    """``host`` (IPv4) as the IPv4-mapped IPv6 address ``inet_ntop`` writes."""
    return socket.inet_ntop(socket.AF_INET6, ipaddress.IPv6Address(f"::ffff:{host}").packed)


FAMILIES = {"ipv4": (socket.AF_INET, CLIENT_V4), "ipv6": (socket.AF_INET6, "::1")}


@all_modes
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("family", ["ipv4", pytest.param("ipv6", marks=needs_ipv6)])
def test_frontend(haproxy: Peer, mode: str, version: int, family: str) -> None:
    """A client of an IPv4 or IPv6 frontend: its own address and real source port."""
    name = f"v{version}_{family}"
    header, received, client = receive(haproxy.sinks[name], mode, through(haproxy, name))
    address_family, client_host = FAMILIES[family]
    assert header.version == version
    assert (header.command, header.family, header.transport) == (
        Command.PROXY, address_family, socket.SOCK_STREAM)
    assert header.source == client.sockname[:2] and header.source[0] == client_host
    assert header.destination == client.peername[:2] == haproxy.frontends[name]
    assert header.tlvs == ()
    check_adapter_view(received, haproxy.sinks[name])


@all_modes
@pytest.mark.parametrize("version", [1, 2])
def test_v4_mapped_frontend(haproxy: Peer, mode: str, version: int) -> None:
    """A frontend bound to ``[::ffff:127.0.0.1]`` reports its IPv4 clients as IPv6."""
    name = f"v{version}_mapped"
    port = haproxy.frontends[name][1]
    header, received, client = receive(
        haproxy.sinks[name], mode,
        lambda payload: exchange(("127.0.0.1", port), payload, source=CLIENT_V4))
    assert header.version == version
    assert (header.command, header.family) == (Command.PROXY, socket.AF_INET6)
    assert client.sockname[0] == CLIENT_V4
    assert header.source == (mapped(CLIENT_V4), client.sockname[1])
    assert header.destination == (mapped("127.0.0.1"), port)
    source = ipaddress.ip_address(header.source[0])
    assert isinstance(source, ipaddress.IPv6Address)
    assert source.ipv4_mapped == ipaddress.IPv4Address(CLIENT_V4)
    check_adapter_view(received, haproxy.sinks[name])


@pytest.mark.parametrize("mode", ["raw", "blocking", "socketserver", "aio"])
def test_unix_socket_client_v1(haproxy: Peer, mode: str) -> None:
    """A client without IP addresses: HAProxy sends ``PROXY UNKNOWN\\r\\n``."""
    header, received, _ = receive(haproxy.sinks["v1_unix"], mode, through(haproxy, "v1_unix"))
    assert (header.version, header.command, header.family) == (
        1, Command.PROXY, socket.AF_UNSPEC)
    assert (header.source, header.destination, header.transport) == (None, None, None)
    assert header.length == len(b"PROXY UNKNOWN\r\n")
    check_adapter_view(received, haproxy.sinks["v1_unix"])


@all_modes
def test_unix_socket_client_v2(haproxy: Peer, mode: str) -> None:
    """A client without IP addresses: HAProxy sends v2 LOCAL with family UNSPEC."""
    header, received, _ = receive(haproxy.sinks["v2_unix"], mode, through(haproxy, "v2_unix"))
    assert (header.version, header.command, header.family) == (
        2, Command.LOCAL, socket.AF_UNSPEC)
    assert (header.source, header.destination, header.tlvs) == (None, None, ())
    assert header.length == 16
    check_adapter_view(received, haproxy.sinks["v2_unix"])


# -- HAProxy as a relay: accept-proxy in, send-proxy / send-proxy-v2 out ------------------

RELAYED = {
    "ipv4": (("192.0.2.1", 51000), ("198.51.100.2", 443)),
    "ipv6": (("2001:db8::1", 65535), ("2001:db8:0:1::2", 1)),
}


def encode(version: int, source: object, destination: object, **options: object) -> bytes:
    """Our encoder, v1 or v2."""
    if version == 1:
        return proxyproto.encode_v1(source, destination)  # type: ignore[arg-type]
    return proxyproto.encode_v2(source, destination, **options)  # type: ignore[arg-type]


@all_modes
@pytest.mark.parametrize("addresses", sorted(RELAYED))
@pytest.mark.parametrize("version_in", [1, 2])
@pytest.mark.parametrize("version_out", [1, 2])
def test_relay_converts(haproxy: Peer, mode: str, addresses: str, version_in: int,
                        version_out: int) -> None:
    """v1 in, v2 out and back: the addresses survive HAProxy's conversion exactly."""
    source, destination = RELAYED[addresses]
    name = f"relay_to_v{version_out}"
    prefix = encode(version_in, source, destination)
    header, received, _ = receive(haproxy.sinks[name], mode,
                                  through(haproxy, name, prefix=prefix))
    assert (header.version, header.command) == (version_out, Command.PROXY)
    assert header.family == (socket.AF_INET if addresses == "ipv4" else socket.AF_INET6)
    assert (header.source, header.destination) == (source, destination)
    check_adapter_view(received, haproxy.sinks[name])


@all_modes
@pytest.mark.parametrize("version_in", [1, 2])
def test_relay_of_an_address_less_header(haproxy: Peer, mode: str, version_in: int) -> None:
    """A relayed ``LOCAL`` / ``UNKNOWN`` goes out as PROXY with the real socket addresses."""
    prefix = encode(version_in, None, None)
    header, received, client = receive(haproxy.sinks["relay_to_v2"], mode,
                                       through(haproxy, "relay_to_v2", prefix=prefix))
    assert (header.version, header.command, header.family) == (2, Command.PROXY, socket.AF_INET)
    assert header.source == client.sockname
    assert header.destination == client.peername
    check_adapter_view(received, haproxy.sinks["relay_to_v2"])


@all_modes
def test_relay_passes_authority_and_unique_id_on(haproxy: Peer, mode: str) -> None:
    """Received AUTHORITY and UNIQUE_ID are re-emitted (with a fresh CRC32C)."""
    source, destination = RELAYED["ipv4"]
    prefix = proxyproto.encode_v2(source, destination, crc32c=True, tlvs=[
        (TLVType.AUTHORITY, b"relay.interop.test"), (TLVType.UNIQUE_ID, b"request-42/\xff")])
    header, received, _ = receive(haproxy.sinks["relay_tlvs"], mode,
                                  through(haproxy, "relay_tlvs", prefix=prefix))
    assert (header.source, header.destination) == (source, destination)
    assert [tlv.type for tlv in header.tlvs] == [
        TLVType.CRC32C, TLVType.AUTHORITY, TLVType.UNIQUE_ID]
    assert header.authority == "relay.interop.test"
    assert header.unique_id == b"request-42/\xff"
    check_adapter_view(received, haproxy.sinks["relay_tlvs"])


@pytest.mark.parametrize(("sent", "relayed"), [
    (b"id\x00\x1f\t\x7f-end", b"id%00%1F\t%7F-end"),  # control bytes and DEL escaped
    (b"u" * 128, b"u" * 127),  # cut to 127 bytes
], ids=["control-bytes", "128-bytes"])
def test_relayed_unique_id_goes_through_log_format(haproxy: Peer, sent: bytes,
                                                   relayed: bytes) -> None:
    """HAProxy 2.6 re-emits a UNIQUE_ID through ``unique-id-format``, a log-format: the
    value is escaped and truncated on the way (a surprise worth knowing for relays)."""
    prefix = proxyproto.encode_v2(*RELAYED["ipv4"], tlvs=[(TLVType.UNIQUE_ID, sent)])
    header, _, _ = receive(haproxy.sinks["relay_tlvs"], "raw",
                           through(haproxy, "relay_tlvs", prefix=prefix))
    assert header.unique_id == relayed


@all_modes
def test_every_option_on_a_plain_frontend(haproxy: Peer, mode: str) -> None:
    """``proxy-v2-options`` with every option, without TLS: CRC32C, UNIQUE_ID and an empty
    SSL TLV (client 0, verify 0, no sub-TLVs); no ALPN or AUTHORITY."""
    header, received, client = receive(haproxy.sinks["plain_all"], mode,
                                       through(haproxy, "plain_all"))
    assert (header.source, header.destination) == (client.sockname, client.peername)
    assert [tlv.type for tlv in header.tlvs] == [
        TLVType.CRC32C, TLVType.UNIQUE_ID, TLVType.SSL]
    assert header.unique_id == unique_id(client)
    assert header.crc32c is not None
    ssl_info = header.ssl
    assert ssl_info is not None
    assert (ssl_info.client, ssl_info.verify, ssl_info.sub_tlvs) == (0, 0, ())
    assert not ssl_info.client_ssl and not ssl_info.verified
    assert (header.alpn, header.authority) == (None, None)
    check_adapter_view(received, haproxy.sinks["plain_all"])


def unique_id(client: ClientResult) -> bytes:
    """The UNIQUE_ID our ``unique-id-format "%ci:%cp>%fi:%fp"`` makes for ``client``."""
    (ci, cp), (fi, fp) = client.sockname[:2], client.peername[:2]
    return f"{ci}:{cp}>{fi}:{fp}".encode()


def test_crc32c_from_haproxy_is_checked(haproxy: Peer) -> None:
    """The CRC32C HAProxy computed verifies; one flipped bit after the fixed part is caught
    (except in the CRC32C TLV's own type byte: that turns it into an unknown TLV)."""
    header, received, _ = receive(haproxy.sinks["plain_all"], "raw",
                                  through(haproxy, "plain_all"))
    assert received.raw is not None
    raw = received.raw[: header.length]
    crc_type_offset, position = -1, 16 + 12  # TLVs follow the IPv4 address block
    for tlv in header.tlvs:
        if tlv.type == TLVType.CRC32C:
            crc_type_offset = position
        position += 3 + len(tlv.value)
    assert crc_type_offset > 0 and position == header.length
    for offset in range(16, header.length):
        corrupted = bytearray(raw)
        corrupted[offset] ^= 0x10
        if offset == crc_type_offset:
            assert proxyproto.parse(bytes(corrupted)).crc32c is None
            continue
        with pytest.raises(proxyproto.InvalidHeader):
            proxyproto.parse(bytes(corrupted))
