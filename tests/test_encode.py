"""The encoders: ``encode_v1``, ``encode_v2`` and ``ProxyHeader.to_bytes``.

Sender-side rules: R-1 (one format per version), R-5 (small, written at once), R-17
(UNKNOWN only when no line can be built), R-50 (CRC32C computed last), A-7 (LOCAL rather
than PROXY+UNSPEC), A-9 (UNIX paths NUL-padded, never truncated). Every output is fed back
to the parser all three ways (whole, byte by byte, with application bytes after it).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from types import ModuleType
from typing import Any

import pytest

from cases import (
    SIG,
    V2_VALID,
    VALID,
    case_id,
    check_valid,
    crc32c_reference,
    header,
    tlv,
)
from proxyproto import Command, TLVType

FOUR = (("192.0.2.1", 51000), ("198.51.100.2", 443))
SIX = (("2001:db8::1", 51000), ("2001:db8::2", 443))


def corpus(name: str) -> bytes:
    """The bytes of the valid corpus case called ``name``."""
    return next(case.data for case in VALID if case.name == name)


# --- encode_v1 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "destination", "line"),
    [
        (*FOUR, b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"),
        (*SIX, b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"),
        (("0.0.0.0", 0), ("255.255.255.255", 65535),
         b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
        # Canonical output: inet_ntop forms whatever the input spelling.
        (("2001:DB8:0:0:0:0:0:1", 1), ("0:0:0:0:0:0:0:1", 2),
         b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"),
        # A mixed pair is written as TCP6 with the IPv4 side mapped, as HAProxy does.
        (("192.0.2.1", 1), ("2001:db8::2", 2), b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"),
        (("2001:db8::1", 1), ("10.0.0.1", 2), b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 2\r\n"),
        ((ipaddress.ip_address("10.0.0.1"), 1), (ipaddress.ip_address("10.0.0.2"), 2),
         b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"),
        (None, None, b"PROXY UNKNOWN\r\n"),
    ],
)
def test_encode_v1_lines(impl: ModuleType, source: Any, destination: Any, line: bytes) -> None:
    data = impl.encode_v1(source, destination)
    assert data == line and type(data) is bytes
    result = impl.parse(data)
    check_valid(impl.parse, data, result)
    if source is not None:
        assert result.source[1] == source[1] and result.destination[1] == destination[1]
        for got, given in ((result.source[0], source[0]), (result.destination[0],
                                                           destination[0])):
            given_ip = ipaddress.ip_address(given)
            got_ip = ipaddress.ip_address(got)
            assert got_ip == given_ip or getattr(got_ip, "ipv4_mapped", None) == given_ip


@pytest.mark.parametrize(
    ("source", "destination", "error"),
    [
        (("1.2.3.4", 1), None, ValueError),
        (None, ("1.2.3.4", 1), ValueError),
        ("/run/a.sock", "/run/b.sock", TypeError),  # v1 has no UNIX format
        (("1.2.3.4", True), ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", 1.0), ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", "80"), ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", -1), ("1.2.3.4", 1), ValueError),
        (("1.2.3.4", 65536), ("1.2.3.4", 1), ValueError),
        (("01.2.3.4", 1), ("1.2.3.4", 1), ValueError),  # never emit what R-18 forbids
        (("127.1", 1), ("1.2.3.4", 1), ValueError),
        (("fe80::1%eth0", 1), ("::1", 1), ValueError),
        (("localhost", 1), ("1.2.3.4", 1), ValueError),
        ((b"1.2.3.4", 1), ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", 1, 0, 0), ("1.2.3.4", 1), TypeError),
    ],
)
def test_encode_v1_refuses_bad_arguments(impl: ModuleType, source: Any, destination: Any,
                                         error: type[Exception]) -> None:
    with pytest.raises(error):
        impl.encode_v1(source, destination)


# [SPEC §2] R-1: a v1 sender emits only text, a v2 sender only binary.
def test_r1_one_format_per_version(impl: ModuleType) -> None:
    for pair in (FOUR, SIX, (None, None)):
        text = impl.encode_v1(*pair)
        assert text.startswith(b"PROXY ") and text.endswith(b"\r\n")
        assert all(0x20 <= byte < 0x7F for byte in text[:-2])
        binary = impl.encode_v2(*pair)
        assert binary.startswith(SIG) and binary[12] >> 4 == 2


# [SPEC §2, §2.2] R-5: headers with addresses fit the 536-byte minimum segment, and the
# encoder returns the whole header as one bytes object, to be written at once.
def test_r5_headers_fit_536_bytes_and_come_whole(impl: ModuleType) -> None:
    longest_v1 = impl.encode_v1(("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535))
    assert len(longest_v1) == 104
    longest_v2 = impl.encode_v2("x" * 108, "y" * 108, transport=socket.SOCK_DGRAM)
    assert len(longest_v2) == 16 + 216 <= 536
    for data in (longest_v1, longest_v2, impl.encode_v2(*SIX)):
        assert type(data) is bytes and impl.parse(data).length == len(data)


# [SPEC §2.1] R-17: UNKNOWN only when no correct line can be built; always the short form.
def test_r17_unknown_only_without_addresses(impl: ModuleType) -> None:
    assert impl.encode_v1(None, None) == b"PROXY UNKNOWN\r\n"
    for pair in (FOUR, SIX, (("127.0.0.1", 41234), ("127.0.0.1", 48116))):
        assert b"UNKNOWN" not in impl.encode_v1(*pair)
    # A v1 health check built from the checking socket's own addresses, like HAProxy's.
    assert impl.encode_v1(("127.0.0.1", 41234), ("127.0.0.1", 48116)) == corpus(
        "haproxy_health_check_v1")


# --- encode_v2 ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tcp4", "tcp6", "udp4", "udp6", "tcp6_v4_mapped",
                                  "unix_stream", "unix_dgram_abstract", "local_len_0",
                                  "tcp4_extremes", "duplicate_tlvs_kept_in_order",
                                  "every_registered_type", "unassigned_and_reserved_types",
                                  "largest_header_65551_bytes", "crc32c_last",
                                  "gcp_psc_connection_id", "azure_private_endpoint_link_id"])
def test_encode_v2_reproduces_corpus_bytes(impl: ModuleType, name: str) -> None:
    case = next(case for case in V2_VALID if case.name == name)
    expected = case.expected
    items = [item for item in expected.tlvs if item.type != TLVType.CRC32C]
    data = impl.encode_v2(
        expected.source, expected.destination,
        transport=expected.transport or socket.SOCK_STREAM,
        tlvs=items, crc32c=len(items) != len(expected.tlvs),
    )
    assert data == case.data


def test_encode_v2_local_health_check(impl: ModuleType) -> None:
    # no addresses -> LOCAL/UNSPEC with len 0 (never PROXY+UNSPEC).
    assert impl.encode_v2(None, None) == SIG + b"\x20\x00\x00\x00"
    assert impl.encode_v2(None, None, transport=socket.SOCK_DGRAM) == SIG + b"\x20\x00\x00\x00"
    data = impl.encode_v2(None, None, crc32c=True)
    assert data == corpus("local_with_crc32c")
    result = impl.parse(data)
    assert result.command == Command.LOCAL and result.family == socket.AF_UNSPEC
    data = impl.encode_v2(None, None, tlvs=[(0xE1, b"text")])
    assert impl.parse(data).tlvs == ((0xE1, b"text"),)


def test_encode_v2_families_and_transports(impl: ModuleType) -> None:
    expected_bytes = {
        (FOUR, socket.SOCK_STREAM): 0x11, (FOUR, socket.SOCK_DGRAM): 0x12,
        (SIX, socket.SOCK_STREAM): 0x21, (SIX, socket.SOCK_DGRAM): 0x22,
        (("/a", "/b"), socket.SOCK_STREAM): 0x31, (("/a", "/b"), socket.SOCK_DGRAM): 0x32,
    }
    for (pair, transport), family_byte in expected_bytes.items():
        data = impl.encode_v2(*pair, transport=transport)
        assert data[12:14] == bytes((0x21, family_byte))
        result = impl.parse(data)
        check_valid(impl.parse, data, result)
        assert (result.source, result.destination) == pair
        assert result.transport == transport


def test_encode_v2_mixed_pair_is_v4_mapped(impl: ModuleType) -> None:
    data = impl.encode_v2(("192.0.2.1", 1), ("2001:db8::2", 2))
    result = impl.parse(data)
    assert data[13] == 0x21
    assert result.source == ("::ffff:192.0.2.1", 1) and result.destination == ("2001:db8::2", 2)


# UNIX paths are NUL-padded to 108 bytes; longer ones are refused, never truncated.
def test_a9_unix_paths_padded_never_truncated(impl: ModuleType) -> None:
    data = impl.encode_v2("/run/app.sock", b"\x00abstract")
    assert data[16:124] == b"/run/app.sock".ljust(108, b"\x00")
    assert data[124:232] == b"\x00abstract".ljust(108, b"\x00")
    assert impl.parse(impl.encode_v2("x" * 108, "/b")).source == "x" * 108
    assert impl.parse(impl.encode_v2("\u00e9" * 54, "/b")).source == "\u00e9" * 54
    for source in ("x" * 109, "\u00e9" * 55, b"\x00" + b"x" * 108,  # too long
                   "/a\x00b", "\x00abstract-as-str", b"\x00trailing-nul\x00", b"\x00"):
        with pytest.raises(ValueError):
            impl.encode_v2(source, "/b")


def test_encode_v2_tlvs_in_order_with_crc_last(impl: ModuleType) -> None:
    items = [(TLVType.UNIQUE_ID, b"id"), (0xE1, bytearray(b"ba")), (0x01, memoryview(b"h2")),
             (0x04, b"")]
    data = impl.encode_v2(*FOUR, tlvs=items, crc32c=True)
    result = impl.parse(data)
    assert result.tlvs[:-1] == ((0x05, b"id"), (0xE1, b"ba"), (0x01, b"h2"), (0x04, b""))
    assert result.tlvs[-1].type == 0x03
    assert all(type(item.value) is bytes for item in result.tlvs)
    zeroed = data[:-4] + bytes(4)
    assert result.crc32c == crc32c_reference(zeroed)
    assert data[14:16] == struct.pack("!H", len(data) - 16)


def test_encode_v2_largest_body(impl: ModuleType) -> None:
    assert len(impl.encode_v2(None, None, tlvs=[(0x04, bytes(65532))])) == 65551
    with pytest.raises(ValueError):
        impl.encode_v2(None, None, tlvs=[(0x04, bytes(65533))])
    with pytest.raises(ValueError):
        impl.encode_v2(*FOUR, tlvs=[(0x04, bytes(65521))])  # 12 + 3 + 65521 > 65535
    with pytest.raises(ValueError):
        impl.encode_v2(None, None, tlvs=[(0x04, bytes(65532))], crc32c=True)
    with pytest.raises(ValueError):
        impl.encode_v2(None, None, tlvs=[(0x04, bytes(65536))])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tlvs": [(0x03, bytes(4))]}, ValueError),  # pass crc32c=True instead
        ({"tlvs": [(0x05, bytes(129))]}, ValueError),
        ({"tlvs": [(0x02, b"\xff")]}, ValueError),  # AUTHORITY is UTF-8
        ({"tlvs": [(0x30, b"\xe9")]}, ValueError),  # NETNS is ASCII
        ({"tlvs": [(0x20, bytes(4))]}, ValueError),  # SSL is at least 5 bytes
        ({"tlvs": [(0x20, bytes(5) + b"\x21\x00\x09TLS")]}, ValueError),  # sub-TLV overrun
        ({"tlvs": [(0x20, bytes(5) + b"\x22\x00\x01\xff")]}, ValueError),  # CN not UTF-8
        ({"tlvs": [(256, b"")]}, ValueError),
        ({"tlvs": [(-1, b"")]}, ValueError),
        ({"tlvs": [(1.0, b"")]}, TypeError),
        ({"tlvs": [(0x01, "h2")]}, TypeError),
        ({"tlvs": [(0x01,)]}, TypeError),
        ({"tlvs": [b"\x01\x00\x00"]}, TypeError),
        ({"transport": socket.SOCK_RAW}, ValueError),
        ({"transport": 5}, ValueError),
    ],
)
def test_encode_v2_refuses_invalid_tlvs_and_transports(impl: ModuleType, kwargs: dict[str, Any],
                                                       error: type[Exception]) -> None:
    with pytest.raises(error):
        impl.encode_v2(*FOUR, **kwargs)


@pytest.mark.parametrize(
    ("source", "destination", "error"),
    [
        (("1.2.3.4", 1), None, ValueError),
        ("/a", ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", False), ("1.2.3.4", 1), TypeError),
        (("1.2.3.4", 1), ("1.2.3.4", 65536), ValueError),
        (("1.2.3.256", 1), ("1.2.3.4", 1), ValueError),
        ((1234, 1), ("1.2.3.4", 1), TypeError),
        (["1.2.3.4", 1], ("1.2.3.4", 1), TypeError),
    ],
)
def test_encode_v2_refuses_bad_addresses(impl: ModuleType, source: Any, destination: Any,
                                         error: type[Exception]) -> None:
    with pytest.raises(error):
        impl.encode_v2(source, destination)


# --- ProxyHeader.to_bytes: canonical re-encoding --------------------------------------


@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_to_bytes_round_trips(impl: ModuleType, case: Any) -> None:
    parsed = impl.parse(case.data)
    again = impl.parse(parsed.to_bytes())
    assert again.version == parsed.version
    assert (again.source, again.destination) == (parsed.source, parsed.destination)
    if parsed.is_local:  # LOCAL, PROXY+UNSPEC and UNKNOWN all come back address-less
        assert again.is_local
        if parsed.version == 2:
            assert again.command == Command.LOCAL and again.family == socket.AF_UNSPEC
    else:
        assert (again.family, again.transport, again.command) == (
            parsed.family, parsed.transport, parsed.command)
    crc = TLVType.CRC32C
    assert [t for t in again.tlvs if t.type != crc] == [t for t in parsed.tlvs if t.type != crc]
    assert (again.crc32c is None) == (parsed.crc32c is None)


def test_to_bytes_is_canonical(impl: ModuleType) -> None:
    line = b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 1 2\r\n"
    assert impl.parse(line).to_bytes() == b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    assert impl.parse(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").to_bytes() == b"PROXY UNKNOWN\r\n"
    aws = corpus("aws_nlb_proprot")
    again = impl.parse(impl.parse(aws).to_bytes())
    assert [t.type for t in again.tlvs] == [0xEA, 0x04, 0x03]  # the CRC32C moves last
    local = header(SIG + b"\x20\x11\x00\x00", command=Command.LOCAL)
    assert local.to_bytes() == SIG + b"\x20\x00\x00\x00"
    assert tlv(0x03, bytes(4)) not in impl.parse(impl.encode_v2(*FOUR)).to_bytes()


def test_encode_v2_refuses_a_bool_tlv_type(impl: ModuleType) -> None:
    # A bool is an int to Python, but True is no TLV type: refuse it, as for ports.
    with pytest.raises(TypeError, match="TLV type must be an int, not bool"):
        impl.encode_v2(None, None, tlvs=[(True, b"h2")])
