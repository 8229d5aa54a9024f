"""Shared test corpora: valid headers with the ``ProxyHeader`` they must give, invalid ones
with the exception class and offset they must raise, and the helpers that feed them.

Importable from any test module as ``from cases import ...`` (pytest puts ``tests/`` on
``sys.path``; the directory has no ``__init__.py``). The Cython engineer's differential
tests reuse :data:`VALID`, :data:`INVALID` and :data:`NOT_PROXY`.

Rule tags (``"R-18"``, ``"A-6"``) refer to ``shared/spec-checklist.md``; ``[SPEC §x]`` to
HAProxy's ``doc/proxy-protocol.txt``. Byte strings marked "real" were emitted by a real
sender: they are facts taken from public captures, cited in each case's ``origin``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, Optional, Union

from proxyproto import (
    TLV,
    ChecksumMismatch,
    Command,
    HeaderReader,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    ProxyHeader,
    ProxyProtocolError,
    _impl,
)
from proxyproto._header import Address

__all__ = [
    "INVALID",
    "NOT_PROXY",
    "SIG",
    "TRAILERS",
    "V1_INVALID",
    "V1_VALID",
    "V2_INVALID",
    "V2_VALID",
    "VALID",
    "Invalid",
    "Valid",
    "case_id",
    "check_invalid",
    "check_rule",
    "check_valid",
    "first_refusal",
    "crc32c_reference",
    "header",
    "invalid_for",
    "reader_using",
    "tlv",
    "v2",
    "v2_with_crc",
    "valid_for",
]

Parse = Callable[..., ProxyHeader]

#: The 12-byte v2 signature (R-29).
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

#: Application bytes that may follow a header: each must come back untouched (R-28, R-64).
TRAILERS: tuple[bytes, ...] = (
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # the start of a TLS ClientHello
    b"PROXY TCP4 6.6.6.6 6.6.6.6 666 666\r\n",  # a second header is data
    SIG + b"\x21\x11\x00\x0c" + bytes(12),  # a second v2 header is data too
    b"\r\n",
    b"\x00",
)


class Valid(NamedTuple):
    """A header that must parse, and exactly what it must parse to."""

    name: str
    data: bytes
    expected: ProxyHeader
    rules: tuple[str, ...]
    origin: str = "synthetic"


class Invalid(NamedTuple):
    """Bytes that must be refused with ``error`` (and, for ``InvalidHeader``, at ``offset``)."""

    name: str
    data: bytes
    error: type[ProxyProtocolError]
    offset: Optional[int]
    rules: tuple[str, ...]
    origin: str = "synthetic"


# ---------------------------------------------------------------------------------------
# Builders (independent of the library: the tests must not trust what they test)


def crc32c_reference(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit: the RFC 4960 App. B algorithm."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def tlv(tlv_type: int, value: bytes) -> bytes:
    """One TLV on the wire: type(1), length(2, big-endian), value (R-48)."""
    return struct.pack("!BH", tlv_type, len(value)) + value


def v2(ver_cmd: int, family: int, body: bytes = b"", *, length: Optional[int] = None) -> bytes:
    """A v2 header: SIG, byte 13, byte 14, ``len`` (default: the body's size), body."""
    size = len(body) if length is None else length
    return SIG + struct.pack("!BBH", ver_cmd, family, size) + body


def v2_with_crc(
    ver_cmd: int,
    family: int,
    block: bytes,
    tlvs: Sequence[tuple[int, bytes]],
    crc_index: int,
) -> tuple[bytes, tuple[TLV, ...]]:
    """A v2 header whose CRC32C TLV sits at ``crc_index`` in ``tlvs`` (R-50: computed with
    the value zeroed, over the whole header, stored big-endian).

    Returns:
        The header bytes and its TLVs as ``parse`` must report them.
    """
    items = list(tlvs)
    items.insert(crc_index, (0x03, bytes(4)))
    zeroed = v2(ver_cmd, family, block + b"".join(tlv(t, v) for t, v in items))
    crc = crc32c_reference(zeroed).to_bytes(4, "big")
    items[crc_index] = (0x03, crc)
    data = v2(ver_cmd, family, block + b"".join(tlv(t, v) for t, v in items))
    return data, tuple(TLV(t, v) for t, v in items)


_V2_FAMILIES: dict[int, tuple[socket.AddressFamily, Optional[socket.SocketKind]]] = {
    0x00: (socket.AF_UNSPEC, None),
    0x11: (socket.AF_INET, socket.SOCK_STREAM),
    0x12: (socket.AF_INET, socket.SOCK_DGRAM),
    0x21: (socket.AF_INET6, socket.SOCK_STREAM),
    0x22: (socket.AF_INET6, socket.SOCK_DGRAM),
    0x31: (socket.AF_UNIX, socket.SOCK_STREAM),
    0x32: (socket.AF_UNIX, socket.SOCK_DGRAM),
}


def header(
    data: bytes,
    *,
    version: int = 2,
    command: Command = Command.PROXY,
    family: Union[int, socket.AddressFamily] = socket.AF_INET,
    transport: Optional[socket.SocketKind] = socket.SOCK_STREAM,
    source: Optional[Address] = None,
    destination: Optional[Address] = None,
    tlvs: Iterable[tuple[int, bytes]] = (),
) -> ProxyHeader:
    """The ``ProxyHeader`` that ``data`` (exactly one header, nothing after) must give."""
    return ProxyHeader(
        version,
        command,
        socket.AddressFamily(family),
        transport,
        source,
        destination,
        tuple(TLV(t, v) for t, v in tlvs),
        len(data),
    )


def _v2_valid(
    name: str,
    rules: tuple[str, ...],
    ver_cmd: int,
    family_byte: int,
    block: bytes,
    tlvs: Sequence[tuple[int, bytes]] = (),
    *,
    source: Optional[Address] = None,
    destination: Optional[Address] = None,
    crc_index: Optional[int] = None,
    parsed_tlvs: Optional[Sequence[tuple[int, bytes]]] = None,
    origin: str = "synthetic",
) -> Valid:
    if crc_index is None:
        data = v2(ver_cmd, family_byte, block + b"".join(tlv(t, v) for t, v in tlvs))
        expected_tlvs: Sequence[tuple[int, bytes]] = tlvs
    else:
        data, expected_tlvs = v2_with_crc(ver_cmd, family_byte, block, tlvs, crc_index)
    if parsed_tlvs is not None:
        expected_tlvs = parsed_tlvs
    family, transport = _V2_FAMILIES[family_byte]
    expected = header(
        data,
        command=Command(ver_cmd & 0x0F),
        family=family,
        transport=transport,
        source=source,
        destination=destination,
        tlvs=expected_tlvs,
    )
    return Valid(name, data, expected, rules, origin)


def _v1_valid(
    name: str,
    rules: tuple[str, ...],
    line: bytes,
    source: Optional[tuple[str, int]] = None,
    destination: Optional[tuple[str, int]] = None,
    origin: str = "synthetic",
) -> Valid:
    if source is None:
        family, transport = socket.AF_UNSPEC, None
    elif ":" in source[0]:
        family, transport = socket.AF_INET6, socket.SOCK_STREAM
    else:
        family, transport = socket.AF_INET, socket.SOCK_STREAM
    expected = header(
        line, version=1, family=family, transport=transport, source=source,
        destination=destination,
    )
    return Valid(name, line, expected, rules, origin)


def _ip4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def _ip6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def _ports(source: int, destination: int) -> bytes:
    return struct.pack("!HH", source, destination)


def _unix(path: bytes) -> bytes:
    return path.ljust(108, b"\x00")


def _ssl(client: int, verify: int, subs: Sequence[tuple[int, bytes]]) -> bytes:
    return struct.pack("!BI", client, verify) + b"".join(tlv(t, v) for t, v in subs)


# ---------------------------------------------------------------------------------------
# Version 1: valid lines

_CURL = "curl 7.88 --haproxy-protocol, seen on loopback (interop-notes §6)"
_NGINX = "nginx 1.22 stream proxy_protocol on (interop-notes §5)"
_HAPROXY = "HAProxy 2.6 send-proxy (interop-notes §3, §8)"

V1_VALID: list[Valid] = [
    _v1_valid("tcp4_spec_example", ("R-13", "R-14", "R-18", "R-21", "R-28"),
              b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n",
              ("192.0.2.1", 51000), ("198.51.100.2", 443)),
    _v1_valid("tcp4_longest_56_bytes", ("R-22", "R-18", "R-21"),
              b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
              ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
    _v1_valid("tcp4_zeroes_and_port_0", ("R-18", "R-21", "A-14"),
              b"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", ("0.0.0.0", 0), ("10.0.0.1", 0)),
    _v1_valid("tcp6_longest_104_bytes", ("R-22", "R-19"),
              b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
              b" ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
              ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
              ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)),
    _v1_valid("tcp6_compressed", ("R-19", "A-4"),
              b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n",
              ("2001:db8::1", 51000), ("2001:db8::2", 443)),
    _v1_valid("tcp6_all_zero", ("R-19", "A-4"), b"PROXY TCP6 :: :: 1 2\r\n",
              ("::", 1), ("::", 2)),
    # inet_pton-style input is accepted and reported in inet_ntop's canonical form.
    _v1_valid("tcp6_uppercase_uncompressed_is_canonicalised", ("R-19", "A-4"),
              b"PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 0:0:0:0:0:0:0:1 1 2\r\n",
              ("2001:db8::1", 1), ("::1", 2)),
    _v1_valid("tcp6_dotted_ipv4_tail", ("R-19", "A-4"),
              b"PROXY TCP6 1:2:3:4:5:6:1.2.3.4 ::1.2.3.4 1 2\r\n",
              ("1:2:3:4:5:6:102:304", 1), ("::1.2.3.4", 2)),  # inet_ntop's forms
    _v1_valid("unknown_short_form_15_bytes", ("R-15", "R-16", "R-22", "A-20"),
              b"PROXY UNKNOWN\r\n"),
    _v1_valid("unknown_long_form_ignored", ("R-15", "A-2"),
              b"PROXY UNKNOWN 192.0.2.1 198.51.100.2 51000 443\r\n"),
    _v1_valid("unknown_tail_is_never_read", ("R-15", "A-2"),
              b"PROXY UNKNOWN \xff\x00 not an address at all\r\n"),
    _v1_valid("unknown_worst_case_107_bytes", ("R-22", "R-15"),
              b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
              b" ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
    # Real senders (expected values are the client's own socket addresses).
    _v1_valid("curl_tcp4", ("R-13", "R-2"),
              b"PROXY TCP4 127.0.0.1 127.0.0.1 48400 48013\r\n",
              ("127.0.0.1", 48400), ("127.0.0.1", 48013), _CURL),
    _v1_valid("curl_tcp6", ("R-13", "R-19"),
              b"PROXY TCP6 ::1 ::1 48401 48014\r\n", ("::1", 48401), ("::1", 48014), _CURL),
    _v1_valid("curl_unix_socket_unknown", ("R-15", "A-9"), b"PROXY UNKNOWN\r\n",
              origin="curl --unix-socket (curl/curl#7291)"),
    _v1_valid("nginx_stream_tcp4", ("R-13",),
              b"PROXY TCP4 127.0.0.1 127.0.0.1 53218 48030\r\n",
              ("127.0.0.1", 53218), ("127.0.0.1", 48030), _NGINX),
    _v1_valid("haproxy_health_check_v1", ("R-17",),
              b"PROXY TCP4 127.0.0.1 127.0.0.1 41234 48116\r\n",
              ("127.0.0.1", 41234), ("127.0.0.1", 48116),
              "HAProxy 2.6 check send-proxy: the check socket's own addresses "
              "(interop-notes §8.9)"),
    _v1_valid("haproxy_v4_mapped_tcp6", ("R-19", "A-4"),
              b"PROXY TCP6 ::ffff:127.0.0.1 ::ffff:127.0.0.1 51234 48020\r\n",
              ("::ffff:127.0.0.1", 51234), ("::ffff:127.0.0.1", 48020),
              "HAProxy 2.6 frontend bound to [::ffff:127.0.0.1] (interop-notes §8.11)"),
]

# ---------------------------------------------------------------------------------------
# Version 1: invalid lines (offset = the byte the parser blames)

_TCP4 = b"PROXY TCP4 "


def _v1_bad(
    name: str, rules: tuple[str, ...], data: bytes, offset: Optional[int],
    error: type[ProxyProtocolError] = InvalidHeader, origin: str = "synthetic",
) -> Invalid:
    return Invalid(name, data, error, offset, rules, origin)


def _bad_sport(name: str, rules: tuple[str, ...], port: bytes) -> Invalid:
    return _v1_bad(name, rules, _TCP4 + b"1.2.3.4 5.6.7.8 " + port + b" 80\r\n", 27)


def _bad_src4(name: str, rules: tuple[str, ...], address: bytes) -> Invalid:
    return _v1_bad(name, rules, _TCP4 + address + b" 5.6.7.8 1 2\r\n", 11)


def _bad_src6(name: str, rules: tuple[str, ...], address: bytes) -> Invalid:
    return _v1_bad(name, rules, b"PROXY TCP6 " + address + b" ::1 1 2\r\n", 11)


V1_INVALID: list[Invalid] = [
    # exact single-space tokenization, exactly six fields.
    _v1_bad("double_space", ("R-13", "A-15"), _TCP4 + b"1.2.3.4  5.6.7.8 1 2\r\n", 19),
    _v1_bad("space_after_proxy_doubled", ("R-13",), b"PROXY  TCP4 1.2.3.4\r\n", 6),
    _v1_bad("trailing_space", ("R-13", "A-15"), _TCP4 + b"1.2.3.4 5.6.7.8 1 2 \r\n", 30),
    _v1_bad("tab_separator", ("R-13",), b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5),
    _v1_bad("no_space_after_proxy", ("R-13",), b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5),
    _v1_bad("missing_destination_port", ("R-13",), _TCP4 + b"1.2.3.4 5.6.7.8 1\r\n", 28),
    _v1_bad("extra_field", ("R-13",), _TCP4 + b"1.2.3.4 5.6.7.8 1 2 3\r\n", 30),
    # the protocol token is exact and case-sensitive.
    _v1_bad("lowercase_protocol", ("R-14",), b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 6),
    _v1_bad("udp4_is_not_a_v1_protocol", ("R-14",), b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 6),
    _v1_bad("tcp5", ("R-14",), b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 6),
    _v1_bad("unknown_glued_to_junk", ("R-14", "A-2"), b"PROXY UNKNOWNX\r\n", 6,
            origin="nginx accepts it (spec-checklist A-2)"),
    _v1_bad("empty_protocol", ("R-14",), b"PROXY \r\n", 6),
    # dotted decimal, 0..255, no leading zeros.
    _bad_src4("ipv4_leading_zero", ("R-18", "A-3"), b"192.168.01.1"),
    _bad_src4("ipv4_octal_looking", ("R-18", "A-3"), b"010.1.1.1"),
    _bad_src4("ipv4_double_zero", ("R-18", "A-3"), b"00.1.1.1"),
    _bad_src4("ipv4_octet_256", ("R-18",), b"256.1.1.1"),
    _bad_src4("ipv4_three_octets", ("R-18", "A-3"), b"127.0.1"),
    _bad_src4("ipv4_short_form", ("R-18", "A-3"), b"127.1"),
    _bad_src4("ipv4_hex", ("R-18", "A-3"), b"0x7f.0.0.1"),
    _bad_src4("ipv4_five_octets", ("R-18",), b"1.2.3.4.5"),
    _bad_src4("ipv4_empty_octet", ("R-18",), b"1..3.4"),
    _bad_src4("ipv4_non_ascii_digit", ("R-18", "A-15"), "1.2.3.\u0663".encode()),
    # RFC 4291 text, no zone, one "::", 1..4 digits a group, 8 groups.
    _bad_src6("ipv6_zone_id", ("R-19", "A-4"), b"fe80::1%eth0"),
    _bad_src6("ipv6_two_double_colons", ("R-19", "A-4"), b"1::2::3"),
    _bad_src6("ipv6_triple_colon", ("R-19", "A-4"), b"1:::2"),
    _bad_src6("ipv6_five_digit_group", ("R-19", "A-4"), b"12345::1"),
    _bad_src6("ipv6_nine_groups", ("R-19", "A-4"), b"1:2:3:4:5:6:7:8:9"),
    _bad_src6("ipv6_seven_groups", ("R-19", "A-4"), b"1:2:3:4:5:6:7"),
    _bad_src6("ipv6_dotted_tail_leading_zero", ("R-19", "A-4"), b"::ffff:127.0.0.01"),
    _bad_src6("ipv6_dotted_tail_not_last", ("R-19", "A-4"), b"::1.2.3.4:1"),
    _bad_src6("ipv6_non_hex", ("R-19",), b"::g"),
    _bad_src6("ipv6_brackets", ("R-19",), b"[::1]"),
    # the protocol dictates the family of both addresses.
    _v1_bad("ipv6_in_tcp4", ("R-20",), _TCP4 + b"::1 ::1 1 2\r\n", 11),
    _v1_bad("ipv4_in_tcp6", ("R-20", "A-5"), b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 11),
    _v1_bad("nginx_relay_mixed_families", ("R-20", "A-5"),
            b"PROXY TCP6 ::1 127.0.0.1 40000 48030\r\n", 15,
            origin="nginx 1.22 relay writes its own IPv4 listener in a TCP6 line "
                   "(interop-notes §8.7; HAProxy 2.6 rejects it)"),
    # decimal 0..65535, no leading zeros, no sign, ASCII digits only.
    _bad_sport("port_leading_zero", ("R-21", "A-15"), b"080"),
    _bad_sport("port_00", ("R-21",), b"00"),
    _bad_sport("port_plus_sign", ("R-21", "A-15"), b"+80"),
    _bad_sport("port_minus_sign", ("R-21", "A-15"), b"-1"),
    _bad_sport("port_65536", ("R-21",), b"65536"),
    _bad_sport("port_70000", ("R-21",), b"70000"),
    _bad_sport("port_underscore", ("R-21", "A-15"), b"8_0"),
    _bad_sport("port_non_ascii_digit", ("R-21", "A-15"), "\u0663".encode()),
    _bad_sport("port_hex", ("R-21",), b"0x50"),
    # R-22 / R-24 / HeaderTooLarge: no CRLF within 107 bytes.
    _v1_bad("unknown_108_bytes", ("R-22", "R-24"),
            b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", 107, error=HeaderTooLarge),
    _v1_bad("unknown_without_crlf_200_bytes", ("R-24",),
            b"PROXY UNKNOWN " + b"x" * 186, 107, error=HeaderTooLarge),
    # only CRLF ends the line.
    _v1_bad("lone_lf", ("R-26",), _TCP4 + b"1.2.3.4 5.6.7.8 1 2\n", 30),
    _v1_bad("lone_cr_then_data", ("R-26",), _TCP4 + b"1.2.3.4 5.6.7.8 1 2\rX\r\n", 30),
    _v1_bad("lf_cr", ("R-26",), _TCP4 + b"1.2.3.4 5.6.7.8 1 2\n\r", 30),
    _v1_bad("cr_cr_lf", ("R-26",), _TCP4 + b"1.2.3.4 5.6.7.8 1 2\r\r\n", 30),
    _v1_bad("unknown_lone_lf", ("R-26", "A-2"), b"PROXY UNKNOWN\n", 13),
    _v1_bad("lf_inside_unknown_tail", ("R-26", "A-2"), b"PROXY UNKNOWN a\nb\r\n", 15),
    _v1_bad("cr_inside_unknown_tail", ("R-26", "A-2"), b"PROXY UNKNOWN a\rb\r\n", 15),
    # rejected as soon as the bytes cannot match, before any CRLF arrives.
    _v1_bad("bad_port_before_crlf", ("R-27",), _TCP4 + b"1.2.3.4 5.6.7.8 01", 27),
    _v1_bad("bad_address_before_crlf", ("R-27",), _TCP4 + b"1.2.3.04", 11),
    _v1_bad("bad_protocol_before_crlf", ("R-27",), b"PROXY TCP7", 6),
]

# ---------------------------------------------------------------------------------------
# Version 2: valid headers

_TCP4_BLOCK = _ip4("192.0.2.1") + _ip4("198.51.100.2") + _ports(51000, 443)
_TCP4_SRC, _TCP4_DST = ("192.0.2.1", 51000), ("198.51.100.2", 443)
_TCP6_BLOCK = _ip6("2001:db8::1") + _ip6("2001:db8::2") + _ports(51000, 443)
_TCP6_SRC, _TCP6_DST = ("2001:db8::1", 51000), ("2001:db8::2", 443)
_LOOP_BLOCK = _ip4("127.0.0.1") + _ip4("127.0.0.1") + _ports(42, 1337)
_LOOP_SRC, _LOOP_DST = ("127.0.0.1", 42), ("127.0.0.1", 1337)

_HAPROXY_SSL = _ssl(0x07, 0, [
    (0x21, b"TLSv1.3"),
    (0x22, b"client.example"),
    (0x25, b"RSA2048"),
    (0x24, b"RSA-SHA256"),
    (0x23, b"TLS_AES_256_GCM_SHA384"),
])

# Two real AWS NLB headers (PrivateLink), as published in pires/go-proxyproto's
# tlvparse/aws_test.go; the first comes from AWS's own proprot compatibility test.
AWS_NLB_PROPROT = bytes.fromhex(
    "0d0a0d0a000d0a515549540a" "21110054" "ac1f0771" "ac1f0a1f" "c8f20050"
    "030004" "e8d6892d" "ea0017" "01" + b"vpce-08d2bf15fac5001c9".hex() + "040024" + "00" * 36
)
AWS_NLB_CAPTURE = bytes.fromhex(
    "0d0a0d0a000d0a515549540a" "21110054" "c0a82c0a" "c0a82c07" "cc3e241b"
    "030004" "b9286fa6" "ea0017" "01" + b"vpce-00eafc458ec97b833".hex() + "040024" + "00" * 36
)
_AWS = "real AWS NLB header (pires/go-proxyproto tlvparse/aws_test.go; AWS proprot)"


def _raw_valid(name: str, rules: tuple[str, ...], hex_text: str,
               tlvs: Sequence[tuple[int, bytes]], origin: str) -> Valid:
    """A HAProxy reg-test header: TCP4 127.0.0.1:42 -> 127.0.0.1:1337, then ``tlvs``."""
    data = bytes.fromhex(hex_text)
    expected = header(data, source=_LOOP_SRC, destination=_LOOP_DST, tlvs=tlvs)
    return Valid(name, data, expected, rules, origin)


def _aws_expected(data: bytes, src: tuple[str, int], dst: tuple[str, int], vpce: bytes,
                  crc: bytes) -> ProxyHeader:
    return header(data, source=src, destination=dst,
                  tlvs=[(0x03, crc), (0xEA, b"\x01" + vpce), (0x04, bytes(36))])


V2_VALID: list[Valid] = [
    _v2_valid("tcp4", ("R-33", "R-34", "R-37", "R-42", "R-4"), 0x21, 0x11, _TCP4_BLOCK,
              source=_TCP4_SRC, destination=_TCP4_DST),
    _v2_valid("udp4", ("R-36", "R-37", "R-9", "A-17"), 0x21, 0x12, _TCP4_BLOCK,
              source=_TCP4_SRC, destination=_TCP4_DST),
    _v2_valid("tcp6", ("R-34", "R-37", "R-42"), 0x21, 0x21, _TCP6_BLOCK,
              source=_TCP6_SRC, destination=_TCP6_DST),
    _v2_valid("udp6", ("R-36", "R-37", "R-9"), 0x21, 0x22, _TCP6_BLOCK,
              source=_TCP6_SRC, destination=_TCP6_DST),
    _v2_valid("tcp4_extremes", ("R-42", "R-4"), 0x21, 0x11,
              _ip4("255.255.255.255") + _ip4("0.0.0.0") + _ports(65535, 0),
              source=("255.255.255.255", 65535), destination=("0.0.0.0", 0)),
    _v2_valid("tcp6_v4_mapped", ("R-42", "A-4"), 0x21, 0x21,
              _ip6("::ffff:127.0.0.1") * 2 + _ports(51234, 48020),
              source=("::ffff:127.0.0.1", 51234), destination=("::ffff:127.0.0.1", 48020),
              origin="HAProxy 2.6 send-proxy-v2 from a [::ffff:127.0.0.1] frontend "
                     "(interop-notes §8.11)"),
    _v2_valid("unix_stream", ("R-43", "A-9", "R-37"), 0x21, 0x31,
              _unix(b"/run/client.sock") + _unix(b"/run/server.sock"),
              source="/run/client.sock", destination="/run/server.sock"),
    _v2_valid("unix_dgram_abstract", ("R-43", "A-9"), 0x21, 0x32,
              _unix(b"\x00client") + _unix(b"\x00server"),
              source=b"\x00client", destination=b"\x00server"),
    _v2_valid("unix_full_108_bytes_no_nul", ("R-43", "A-9"), 0x21, 0x31,
              b"a" * 108 + _unix(b""), source="a" * 108, destination=""),
    _v2_valid("unix_utf8_path", ("R-43", "A-9"), 0x21, 0x31,
              _unix("/tmp/\u00e9t\u00e9.sock".encode()) + _unix(b"/x\x00junk after nul"),
              source="/tmp/\u00e9t\u00e9.sock", destination="/x"),
    _v2_valid("proxy_unspec_len_0", ("R-35", "R-37", "R-38", "R-41", "A-7"), 0x21, 0x00, b""),
    _v2_valid("proxy_unspec_with_tlv", ("R-41", "A-7", "R-46"), 0x21, 0x00, b"",
              [(0x05, b"id-1")]),
    _v2_valid("local_len_0", ("R-32", "R-40", "A-6"), 0x20, 0x00, b"",
              origin="HAProxy 2.2+ v2 health check (check send-proxy-v2; interop-notes §8.9)"),
    _v2_valid("local_with_crc32c", ("R-32", "R-40", "R-51", "A-6"), 0x20, 0x00, b"", [],
              crc_index=0,
              origin="HAProxy health check with proxy-v2-options crc32c (interop-notes §8.9)"),
    # A-6 / sozu#1334 / go#12: LOCAL's address block is skipped by len, never believed.
    _v2_valid("local_with_inet_block", ("R-32", "R-40", "A-6"), 0x20, 0x11, _TCP4_BLOCK,
              origin="HAProxy 2.1 and older / HAProxy 2.6 accepts it (interop-notes §8.15)"),
    _v2_valid("local_with_inet_block_and_tlvs", ("R-40", "A-6"), 0x20, 0x11, _TCP4_BLOCK,
              [(0x01, b"h2"), (0x04, b"")]),
    _v2_valid("local_len_shorter_than_block", ("R-40", "A-6"), 0x20, 0x21, b"\x01\x02\x03\x04"),
    _v2_valid("local_unspec_tlvs_from_byte_16", ("R-40", "A-6"), 0x20, 0x00, b"",
              [(0xE1, b"text"), (0x04, b"\x00" * 3)]),
    _v2_valid("local_dgram_inet6", ("R-32", "A-6"), 0x20, 0x22, _TCP6_BLOCK),
    _v2_valid("local_unix_block", ("R-32", "A-6"), 0x20, 0x31, _unix(b"/a") + _unix(b"/b")),
    # HAProxy-shaped headers, in HAProxy's TLV order (interop-notes §8.8).
    _v2_valid("haproxy_all_options", ("R-50", "R-54", "R-56", "R-57", "R-60", "A-13"),
              0x21, 0x11, _LOOP_BLOCK,
              [(0x01, b"h2"), (0x02, b"example.com"), (0x05, b"127.0.0.1:42>127.0.0.1:1337"),
               (0x20, _HAPROXY_SSL)],
              source=_LOOP_SRC, destination=_LOOP_DST, crc_index=0,
              origin="the layout HAProxy 2.6 emits with proxy-v2-options ssl,cert-cn,"
                     "ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id"),
    _v2_valid("haproxy_plain_frontend_empty_ssl", ("R-54", "A-12"), 0x21, 0x11, _LOOP_BLOCK,
              [(0x05, b"uid"), (0x20, _ssl(0, 0, []))], source=_LOOP_SRC,
              destination=_LOOP_DST, crc_index=0,
              origin="HAProxy 2.6 proxy-v2-options ssl on a non-TLS frontend (interop-notes "
                     "§8.10; reg-tests/connection/proxy_protocol_ssl_tlv.vtc)"),
    # HAProxy reg-tests (haproxy/haproxy reg-tests/connection/*.vtc), byte for byte.
    _raw_valid("haproxy_regtest_authority_12345", ("R-48", "R-60"),
               "0d0a0d0a000d0a515549540a 2111 0014 7F0000017F000001002A0539 02000531 32333435",
               [(0x02, b"12345")],
               "reg-tests/connection/proxy_protocol_tlv_validation.vtc c1"),
    _raw_valid("haproxy_regtest_public_values", ("R-48", "R-54", "R-59"),
               "0d0a0d0a000d0a515549540a 2111 002f 7f0000017f000001002a0539 020006 "
               "7075626c6963 050006 7075626c6963 e10006 7075626c6963 200005 0000000000",
               [(0x02, b"public"), (0x05, b"public"), (0xE1, b"public"), (0x20, bytes(5))],
               "reg-tests/connection/proxy_protocol_tlv_embedded_nul.vtc c1"),
    _raw_valid("haproxy_regtest_embedded_nul", ("R-48", "R-60"),
               "0d0a0d0a000d0a515549540a 2111 002d 7f0000017f000001002a0539 020008 "
               "7075626c69630078 050008 7075626c69630078 e10008 7075626c69630078",
               [(0x02, b"public\x00x"), (0x05, b"public\x00x"), (0xE1, b"public\x00x")],
               "reg-tests/connection/proxy_protocol_tlv_embedded_nul.vtc c2"),
    # Cloud vendors (spec-checklist 2.4).
    Valid("aws_nlb_proprot", AWS_NLB_PROPROT,
          _aws_expected(AWS_NLB_PROPROT, ("172.31.7.113", 51442), ("172.31.10.31", 80),
                        b"vpce-08d2bf15fac5001c9", bytes.fromhex("e8d6892d")),
          ("R-51", "R-52", "R-59", "A-11"), _AWS),
    Valid("aws_nlb_capture", AWS_NLB_CAPTURE,
          _aws_expected(AWS_NLB_CAPTURE, ("192.168.44.10", 52286), ("192.168.44.7", 9243),
                        b"vpce-00eafc458ec97b833", bytes.fromhex("b9286fa6")),
          ("R-51", "R-52", "R-59", "A-11"), _AWS),
    _v2_valid("gcp_psc_connection_id", ("R-59",), 0x21, 0x11, _TCP4_BLOCK,
              [(0xE0, bytes.fromhex("ffffffffc0a86402"))], source=_TCP4_SRC,
              destination=_TCP4_DST,
              origin="value from pires/go-proxyproto tlvparse/gcp_test.go"),
    _v2_valid("azure_private_endpoint_link_id", ("R-59",), 0x21, 0x21, _TCP6_BLOCK,
              [(0xEE, bytes.fromhex("01c1450021"))], source=_TCP6_SRC, destination=_TCP6_DST,
              origin="value from pires/go-proxyproto tlvparse/azure_test.go"),
    # TLV framing corner cases (landscape §3c).
    _v2_valid("zero_length_tlv_last", ("R-48", "R-52"), 0x21, 0x11, _TCP4_BLOCK,
              [(0x01, b"h2"), (0x04, b"")], source=_TCP4_SRC, destination=_TCP4_DST,
              origin="pires/go-proxyproto#57; Netty drops a trailing empty TLV"),
    _v2_valid("duplicate_tlvs_kept_in_order", ("R-49",), 0x21, 0x11, _TCP4_BLOCK,
              [(0xE1, b"a"), (0x02, b"one.example"), (0xE1, b"b"), (0x02, b"two.example")],
              source=_TCP4_SRC, destination=_TCP4_DST, origin="envoyproxy/envoy#42204"),
    _v2_valid("crc32c_in_the_middle", ("R-51",), 0x21, 0x21, _TCP6_BLOCK,
              [(0x01, b"http/1.1"), (0x04, bytes(3))], source=_TCP6_SRC,
              destination=_TCP6_DST, crc_index=1),
    _v2_valid("crc32c_last", ("R-51",), 0x21, 0x31,
              _unix(b"/a") + _unix(b"/b"), [(0x30, b"blue")], source="/a", destination="/b",
              crc_index=1),
    _v2_valid("every_registered_type", ("R-49", "R-53", "R-58", "R-60"), 0x21, 0x12,
              _TCP4_BLOCK,
              [(0x01, b"\x02h2\x08http/1.1"), (0x02, "b\u00fccher.example".encode()),
               (0x04, b"\xff" * 5), (0x05, b"\x00" * 128), (0x30, b"ns-1"),
               (0x20, _ssl(0x01, 1, [(0x26, b"secp256r1"), (0x27, b"rsa_pss_rsae_sha256"),
                                     (0x28, b"\x30\x82\x01\x0a")]))],
              source=_TCP4_SRC, destination=_TCP4_DST),
    _v2_valid("unassigned_and_reserved_types", ("R-49", "R-59"), 0x21, 0x11, _TCP4_BLOCK,
              [(0x06, b"x"), (0x1F, b""), (0x21, b"top-level 0x21"), (0x29, b""),
               (0x31, b"\xff"), (0xDF, b""), (0xE0, b"short"), (0xEA, b"\x02other"),
               (0xF0, b"exp"), (0xF7, b""), (0xF8, b"\x00"), (0xFF, b"future")],
              source=_TCP4_SRC, destination=_TCP4_DST),
    _v2_valid("len_uses_both_bytes", ("R-39",), 0x21, 0x11, _TCP4_BLOCK,
              [(0x04, bytes(300))], source=_TCP4_SRC, destination=_TCP4_DST),
    # the largest header the spec allows, 16 + 65535 bytes.
    _v2_valid("largest_header_65551_bytes", ("R-39", "R-48", "A-10"), 0x20, 0x00, b"",
              [(0x04, bytes(65532))]),
]

# ---------------------------------------------------------------------------------------
# Version 2: invalid headers


def _v2_bad(name: str, rules: tuple[str, ...], data: bytes, offset: Optional[int],
            error: type[ProxyProtocolError] = InvalidHeader,
            origin: str = "synthetic") -> Invalid:
    return Invalid(name, data, error, offset, rules, origin)


def _bad_tlvs(name: str, rules: tuple[str, ...], tlv_bytes: bytes, offset: int,
              origin: str = "synthetic") -> Invalid:
    """A TCP4 header whose TLV area (starting at offset 28) is ``tlv_bytes``."""
    return _v2_bad(name, rules, v2(0x21, 0x11, _TCP4_BLOCK + tlv_bytes), offset, origin=origin)


def _crc_tampered() -> bytes:
    data, _ = v2_with_crc(0x21, 0x11, _TCP4_BLOCK, [(0x01, b"h2")], 0)
    return data[:16] + b"\x0a" + data[17:]  # the source address changed after signing


def _crc_value_flipped() -> bytes:
    data, _ = v2_with_crc(0x21, 0x11, _TCP4_BLOCK, [], 0)
    return data[:-1] + bytes((data[-1] ^ 0x01,))


def _two_crcs() -> bytes:
    # Each CRC32C TLV is individually consistent (computed with both zeroed), yet two of
    # them is refused.
    body = _TCP4_BLOCK + tlv(0x03, bytes(4)) + tlv(0x03, bytes(4))
    zeroed = v2(0x21, 0x11, body)
    crc = crc32c_reference(zeroed).to_bytes(4, "big")
    return zeroed[:31] + crc + zeroed[35:38] + crc


V2_INVALID: list[Invalid] = [
    # the version nibble must be 2; rejected as soon as byte 13 arrives.
    *(_v2_bad(f"version_{version}", ("R-30", "A-18"), SIG + bytes(((version << 4) | 1,)), 12)
      for version in (0, 1, 3, 4, 15)),
    _v2_bad("old_spec_detection_literal_0x02", ("R-30", "A-18"), SIG + b"\x02\x11\x00\x0c",
            12, origin="pre-2023 copies of the spec compare the 13th byte with \\x02"),
    # only LOCAL (0) and PROXY (1).
    *(_v2_bad(f"command_{command:x}", ("R-31", "A-16"), SIG + bytes((0x20 | command,)), 12)
      for command in (2, 3, 0xF)),
    # byte 14 limited to the seven defined values, even for LOCAL.
    *(_v2_bad(f"family_byte_{byte:02x}", ("R-35", "R-36", "R-37", "A-8"),
              SIG + bytes((0x21, byte)), 13)
      for byte in (0x01, 0x02, 0x10, 0x20, 0x30, 0x13, 0x23, 0x33, 0x41, 0xF1, 0x1F)),
    *(_v2_bad(f"local_family_byte_{byte:02x}", ("R-32", "A-8"),
              SIG + bytes((0x20, byte)) + b"\x00\x00", 13)
      for byte in (0x01, 0x40, 0x13)),
    # PROXY with len shorter than its address block, rejected at byte 16.
    _v2_bad("tcp4_len_11", ("R-47", "R-44"), v2(0x21, 0x11, length=11), 14),
    _v2_bad("udp6_len_35", ("R-47",), v2(0x21, 0x22, length=35), 14),
    _v2_bad("unix_len_215", ("R-47",), v2(0x21, 0x31, length=215), 14),
    _v2_bad("tcp4_len_0", ("R-47",), v2(0x21, 0x11, length=0), 14,
            origin="CVE-2019-14243 (truncated address block panicked a Go parser)"),
    # TLVs must tile the header exactly.
    _bad_tlvs("tlv_header_truncated_1", ("R-48",), b"\x04", 28),
    _bad_tlvs("tlv_header_truncated_2", ("R-48",), b"\x04\x00", 28),
    _bad_tlvs("tlv_overrun", ("R-48",), b"\x02\x00\x0512345" + b"\x04\x00\x05abc", 36),
    _v2_bad("haproxy_regtest_tlv_overrun",
            ("R-48",), bytes.fromhex("0d0a0d0a000d0a515549540a 2111 0014 "
                                     "7F0000017F000001002A0539 02000A31 3233343531323334 35"),
            28, origin="reg-tests/connection/proxy_protocol_tlv_validation.vtc c3"),
    # The same reg-test's c4: len says 20 but the sender wrote 19 bytes; the next byte
    # (the 'G' of the request) is swallowed and cannot frame a TLV (interop-notes §8.14).
    _v2_bad("haproxy_regtest_len_overstated",
            ("R-48", "R-39"), bytes.fromhex("0d0a0d0a000d0a515549540a 2111 0014 "
                                            "7F0000017F000001002A0539 02000431 323334")
            + b"GET / HTTP/1.1\r\n", 35,
            origin="reg-tests/connection/proxy_protocol_tlv_validation.vtc c4"),
    _v2_bad("local_unspec_with_address_block", ("A-6",), v2(0x20, 0x00, _TCP4_BLOCK), 21,
            origin="newer HAProxy parses LOCAL TLVs from byte 16 and rejects this"),
    _v2_bad("local_tlv_overrun", ("A-6", "R-48"),
            v2(0x20, 0x11, _TCP4_BLOCK + b"\x01\x00\x09h2"), 28),
    # CRC32C.
    _v2_bad("crc32c_mismatch_tampered_address", ("R-51",), _crc_tampered(), 28,
            error=ChecksumMismatch),
    _v2_bad("crc32c_mismatch_flipped_value", ("R-51",), _crc_value_flipped(), 28,
            error=ChecksumMismatch),
    _bad_tlvs("crc32c_length_3", ("A-11",), tlv(0x03, b"\x00\x00\x00"), 28),
    _bad_tlvs("crc32c_length_5", ("A-11",), tlv(0x03, bytes(5)), 28),
    _v2_bad("crc32c_twice", ("A-11",), _two_crcs(), 35),
    # UNIQUE_ID at most 128 bytes.
    _bad_tlvs("unique_id_129", ("R-53",), tlv(0x05, b"u" * 129), 28),
    # SSL value at least 5 bytes, sub-TLVs tile it.
    _bad_tlvs("ssl_4_bytes", ("R-54",), tlv(0x20, bytes(4)), 28),
    _bad_tlvs("ssl_empty", ("R-54",), tlv(0x20, b""), 28),
    _bad_tlvs("ssl_sub_tlv_truncated", ("R-54",), tlv(0x20, bytes(5) + b"\x21\x00"), 28),
    _bad_tlvs("ssl_sub_tlv_overrun", ("R-54",),
              tlv(0x20, bytes(5) + b"\x21\x00\x08TLSv1.3"), 28),
    # text values.
    _bad_tlvs("authority_not_utf8", ("R-60",), tlv(0x02, b"\xff\xfe"), 28),
    _bad_tlvs("netns_not_ascii", ("R-58", "R-60"), tlv(0x30, "n\u00e9t".encode()), 28),
    _bad_tlvs("ssl_cn_not_utf8", ("R-57", "R-60"), tlv(0x20, _ssl(3, 0, [(0x22, b"\xc3")])), 28),
    *(_bad_tlvs(f"ssl_sub_{sub:02x}_not_ascii", ("R-60",),
                tlv(0x20, _ssl(1, 0, [(sub, b"\xe9")])), 28)
      for sub in (0x21, 0x23, 0x24, 0x25, 0x26, 0x27)),
    # a v2 header over max_size. parse's default allows 65551, so these use a
    # length that only the reader's 4096 cap refuses: see test_reader.py. Here, the
    # address-block rule applies first.
]

# ---------------------------------------------------------------------------------------
# Neither v1 nor v2 (NoProxyHeader), and the signature decisions.

NOT_PROXY: list[Invalid] = [
    Invalid(name, data, NoProxyHeader, None, rules)
    for name, data, rules in [
        ("http_request", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", ("R-63", "R-10")),
        ("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ("R-63",)),
        ("ssh_banner", b"SSH-2.0-OpenSSH_9.2p1\r\n", ("R-63",)),
        ("smtp_ehlo", b"EHLO mail.example\r\n", ("R-63",)),
        ("lowercase_proxy", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ("R-13", "R-45")),
        ("mixed_case_proxy", b"Proxy TCP4", ("R-13", "R-45")),
        ("proxz", b"PROXZ", ("R-45",)),
        ("pr_then_junk", b"PR\x00", ("R-45",)),
        ("cr_cr", b"\r\r", ("R-45",)),
        ("nul", b"\x00", ("R-45",)),
        ("leading_space", b" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ("R-3", "R-45")),
        ("v1_after_junk", b"hello PROXY UNKNOWN\r\n", ("R-3",)),
        ("v2_signature_byte_4_not_nul", b"\r\n\r\n\x01", ("R-29", "R-45")),
        ("v2_signature_last_byte", SIG[:11] + b"\r" + b"\x21\x11\x00\x0c", ("R-29", "R-45")),
        ("v2_signature_quit_lowercase", b"\r\n\r\n\x00\r\nquit\n", ("R-29",)),
        ("v2_then_v1", b"\r\nPROXY UNKNOWN\r\n", ("R-45",)),
    ]
]

# ---------------------------------------------------------------------------------------
# Everything, and per-rule selections

VALID: list[Valid] = V1_VALID + V2_VALID
INVALID: list[Invalid] = V1_INVALID + V2_INVALID + NOT_PROXY


def valid_for(rule: str) -> list[Valid]:
    """The valid cases tagged with ``rule`` (e.g. ``"R-18"``)."""
    return [case for case in VALID if rule in case.rules]


def invalid_for(rule: str) -> list[Invalid]:
    """The invalid cases tagged with ``rule``."""
    return [case for case in INVALID if rule in case.rules]


def case_id(case: Union[Valid, Invalid]) -> str:
    """A readable pytest id."""
    return case.name


# ---------------------------------------------------------------------------------------
# Feeding helpers


@contextlib.contextmanager
def reader_using(parse: Parse) -> Iterator[None]:
    """Make :class:`HeaderReader` call ``parse`` (one implementation) for the duration."""
    saved = _impl.parse, _impl.parse_or_needed
    _impl.parse = parse
    # the readers call parse_or_needed: the same implementation's
    _impl.parse_or_needed = sys.modules[parse.__module__].parse_or_needed  # type: ignore[attr-defined]
    try:
        yield
    finally:
        _impl.parse, _impl.parse_or_needed = saved


def _check_prefixes(parse: Parse, data: bytes, total: int) -> None:
    """Every proper prefix of a valid header is incomplete, with a sound ``needed``."""
    for cut in range(total):
        try:
            parse(data[:cut])
        except IncompleteHeader as exc:
            remainder = total - cut
            assert 1 <= exc.needed <= remainder, (cut, exc.needed, remainder)
            if cut == 0:
                assert exc.needed == 15  # the shortest header, "PROXY UNKNOWN\r\n"
            if data[:1] == b"\r" and cut >= 16:
                assert exc.needed == remainder, (cut, exc.needed)  # exact for v2 (contract)
        else:  # pragma: no cover - a failure path
            raise AssertionError(f"a {cut}-byte prefix of a {total}-byte header parsed")


def _check_reader_bytewise(parse: Parse, data: bytes, expected: ProxyHeader) -> None:
    """Feed ``data`` one byte at a time; ``needed`` never exceeds what is really left."""
    with reader_using(parse):
        reader = HeaderReader(max_size=max(len(data), 16))
        for index in range(len(data) - 1):
            assert reader.feed(data[index : index + 1]) is None
            assert 1 <= reader.needed <= len(data) - index - 1
            assert not reader.done
            assert reader.trailing_data == b""  # nothing is released early
        result = reader.feed(data[-1:])
    assert result == expected
    assert reader.done and reader.header == expected and reader.needed == 0
    assert reader.trailing_data == b""


def check_valid(parse: Parse, data: bytes, expected: ProxyHeader) -> None:
    """Feed a valid header three ways: whole, one byte at a time, and with application
    bytes after it; each must give ``expected`` and leave the application bytes untouched.
    """
    assert expected.length == len(data)
    result = parse(data)
    assert result == expected
    assert result.length == len(data)
    for kind in (bytearray, memoryview):
        assert parse(kind(data)) == expected
    _check_prefixes(parse, data, len(data))
    if len(data) < 1024:  # byte-by-byte through the reader is quadratic; skip the giants
        _check_reader_bytewise(parse, data, expected)
    for trailer in TRAILERS:
        stream = data + trailer
        result = parse(stream)
        assert result == expected
        assert stream[result.length :] == trailer  # the payload is untouched


def check_invalid(
    parse: Parse,
    data: bytes,
    error: type[ProxyProtocolError],
    offset: Optional[int] = None,
) -> None:
    """Feed invalid bytes three ways: whole, one byte at a time, and with application bytes
    after them. Whole, they raise exactly ``error`` (at ``offset`` for ``InvalidHeader``);
    prefixes are incomplete until the first refusal, and refused ever after.
    """
    with_offset = offset is not None
    raised = _raises(parse, data, error)
    if with_offset:
        assert isinstance(raised, InvalidHeader)
        assert raised.offset == offset, (raised.offset, offset, str(raised))
        assert f"offset {offset}" in str(raised)
    # One byte at a time: once refused, always refused, and never a header.
    category = NoProxyHeader if issubclass(error, NoProxyHeader) else InvalidHeader
    refused = False
    for cut in range(len(data) + 1):
        try:
            parse(data[:cut])
        except IncompleteHeader as exc:
            assert not refused, f"refused at a shorter prefix, incomplete at {cut} bytes"
            assert exc.needed >= 1
        except category:
            refused = True
        else:  # pragma: no cover - a failure path
            raise AssertionError(f"a {cut}-byte prefix of invalid data parsed")
    assert refused
    # With application bytes after: the same refusal.
    for trailer in TRAILERS[:2]:
        again = _raises(parse, data + trailer, error)
        if with_offset:
            assert isinstance(again, InvalidHeader) and again.offset == offset


def _raises(parse: Parse, data: bytes, error: type[ProxyProtocolError]) -> ProxyProtocolError:
    try:
        parse(data)
    except ProxyProtocolError as exc:
        assert type(exc) is error, f"expected {error.__name__}, got {exc!r}"
        return exc
    raise AssertionError(f"{data!r} parsed, expected {error.__name__}")


def check_rule(parse: Parse, rule: str) -> tuple[int, int]:
    """Run every corpus case tagged ``rule`` through :func:`check_valid` or
    :func:`check_invalid`.

    Returns:
        How many valid and invalid cases carry the tag (tests assert they have both).
    """
    valid, invalid = valid_for(rule), invalid_for(rule)
    for good in valid:
        try:
            check_valid(parse, good.data, good.expected)
        except AssertionError as exc:
            raise AssertionError(f"valid case {good.name!r}: {exc}") from exc
    for bad in invalid:
        try:
            check_invalid(parse, bad.data, bad.error, bad.offset)
        except AssertionError as exc:
            raise AssertionError(f"invalid case {bad.name!r}: {exc}") from exc
    return len(valid), len(invalid)


def first_refusal(parse: Parse, data: bytes) -> int:
    """The length of the shortest prefix of ``data`` that ``parse`` refuses outright."""
    for cut in range(len(data) + 1):
        try:
            parse(data[:cut])
        except IncompleteHeader:
            continue
        except ProxyProtocolError:
            return cut
        raise AssertionError(f"{data[:cut]!r} parsed")
    raise AssertionError(f"no prefix of {data!r} is refused")
