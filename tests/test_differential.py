"""Differential tests: the Cython module against the pure-Python one, which is the spec.

On any input both must give equal results of identical types, or raise the same exception
class with the same message (so the same offset) and the same ``needed``. Inputs: arbitrary
bytes; valid headers in every spelling with at most one defect (one field, separator, TLV
or flag off), so that each rule is reached on its own; mutated valid headers; every prefix;
the bytes-like input types; ``max_size``; and encoder arguments, with at most one bad one.
It also checks that valid input never leaves the C path (``_fast._*_c_only``).

``PROXYPROTO_DIFF_EXAMPLES`` scales the number of examples per test (default 300); the
sanitizer run (``tests/sanitize/run.sh``) sets it low, a bug hunt sets it high.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from proxyproto import (  # noqa: E402
    IMPLEMENTATION,
    Command,
    IncompleteHeader,
    InvalidHeader,
    Policy,
    ProxyHeader,
    ProxyProtocolError,
    TLVType,
)
from proxyproto import _connection as connection  # noqa: E402
from proxyproto import _fallback as fallback  # noqa: E402
from proxyproto._connection import judge_start_python  # noqa: E402

EXAMPLES = int(os.environ.get("PROXYPROTO_DIFF_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# -- comparing outcomes ------------------------------------------------------------------


def typed(value: object) -> object:
    """``value`` with the exact type of every part, so ``1 == Command.PROXY`` cannot pass."""
    if isinstance(value, tuple):
        return (type(value), tuple(typed(item) for item in value))
    return (type(value), value)


def outcome(func: Callable[..., object], *args: object, **kwargs: object) -> object:
    try:
        result = func(*args, **kwargs)
    except IncompleteHeader as exc:
        return ("raised", type(exc), str(exc), exc.needed)
    except InvalidHeader as exc:
        return ("raised", type(exc), str(exc), exc.offset)
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    return ("returned", typed(result))


def same_parse(fast: ModuleType, data: Any, **kwargs: Any) -> object:
    expected = outcome(fallback.parse, data, **kwargs)
    assert outcome(fast.parse, data, **kwargs) == expected, data
    if isinstance(data, (bytes, bytearray)) and not kwargs:
        # The contract: nothing outside the ProxyProtocolError tree escapes parse.
        assert expected[0] == "returned" or issubclass(expected[1], ProxyProtocolError)  # type: ignore[index]
    if expected[0] == "returned" and isinstance(data, (bytes, bytearray)):
        # Valid input is the C path's job: it must not have been handed to the fallback.
        assert outcome(fast._parse_c_only, data, **kwargs) == expected
    return expected


def one_defect(draw: st.DrawFn, kinds: list[str]) -> str:
    """``"none"`` half the time, else one of ``kinds``: the part to get wrong."""
    return draw(st.sampled_from(kinds)) if draw(st.booleans()) else "none"


# -- strategies: addresses ---------------------------------------------------------------

ipv4_packed = st.binary(min_size=4, max_size=4)
ipv6_packed = st.one_of(
    st.binary(min_size=16, max_size=16),
    # Mostly zeros: the "::" choices and the embedded-IPv4 forms.
    st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x1234]), min_size=8, max_size=8).map(
        lambda words: struct.pack("!8H", *words)
    ),
)
ipv4_text = ipv4_packed.map(socket.inet_ntoa)


def _ipv6_spellings(packed: bytes) -> st.SearchStrategy[str]:
    """Several valid spellings of one IPv6 address, canonical or not."""
    address = ipaddress.IPv6Address(packed)
    full = address.exploded
    return st.sampled_from(
        [
            str(address),
            full,
            full.upper(),
            ":".join(group.lstrip("0") or "0" for group in full.split(":")),
            full[:30] + socket.inet_ntoa(packed[12:]),  # dotted IPv4 tail
        ]
    )


ipv6_text = ipv6_packed.flatmap(_ipv6_spellings)
BAD_IPV4 = ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.999", "1.2.3.1000",
            "1..2.3", "1.2.3.", ".1.2.3", "1.2.3.4 ", "1.2.3.-1", "a.b.c.d",
            "\uff11.\uff12.\uff13.\uff14"]
BAD_IPV6 = ["", ":", ":::", "1:::2", "1::2::3", ":1::2", "1::2:", "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7", "1::2:3:4:5:6:7:8", "12345::", "::1.2.3", "::1.2.3.04",
            "::ffff:1.2.3.4.5", "1.2.3.4::", "fe80::1%eth0", "::g", "::1\x00", "[::1]",
            "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4:5", "1.2::3:1.2.3.4", "0" * 46, "::ffff:1.2.3.256"]
bad_host = st.sampled_from(BAD_IPV4 + BAD_IPV6)
BAD_PORTS = ["", "00", "01", "+1", "-1", "065535", "65536", "65540", "99999", "123456", "0x10",
             "\uff11"]


# -- strategies: v1 lines ----------------------------------------------------------------


@st.composite
def v1_lines(draw: st.DrawFn) -> bytes:
    """A valid line in any accepted spelling, with at most one defect."""
    defect = one_defect(
        draw, ["protocol", "src", "dst", "sport", "dport", "fields", "space", "end", "unknown"]
    )
    protocol = draw(st.sampled_from(["TCP4", "TCP6", "UNKNOWN"]))
    if defect == "protocol":
        protocol = draw(st.sampled_from(["TCP5", "tcp4", "UNKNOWNX", "", "TCP", "UNKNOW", "TCP64"]))
    good = ipv4_text if protocol == "TCP4" else ipv6_text
    other = ipv6_text if protocol == "TCP4" else ipv4_text
    fields = [draw(good), draw(good), str(draw(st.integers(0, 0xFFFF))),
              str(draw(st.integers(0, 0xFFFF)))]
    for index, name in enumerate(["src", "dst", "sport", "dport"]):
        if defect == name:
            bad = bad_host if index < 2 else st.sampled_from(BAD_PORTS)
            fields[index] = draw(st.one_of(bad, other) if index < 2 else bad)
    if protocol == "UNKNOWN":
        fields = draw(st.sampled_from([[], fields, ["anything", "goes"], ["\x7f\xff"]]))
    if defect == "fields":
        fields = (fields + ["9"] * 5)[: draw(st.sampled_from([0, 1, 2, 3, 5]))]
    spaces = [" "] * (len(fields) + 1)
    if defect == "space":
        spaces[draw(st.integers(0, len(fields)))] = draw(
            st.sampled_from(["  ", "\t", "\r", "\n", ""])
        )
    end = "\r\n"
    if defect == "end":
        end = draw(st.sampled_from(["\n", "\r", "", "\r\r\n", " \r\n", "\n\r", "\r \n"]))
    text = "PROXY" + spaces[0] + protocol + "".join(s + f for s, f in zip(spaces[1:], fields))
    if defect == "unknown":
        text = "PROXY UNKNOWN" + draw(st.sampled_from([" ", "  ", "X", "\r", "\n", " \r"]))
        text += draw(st.text(st.characters(max_codepoint=255), max_size=100))
    tail = draw(st.binary(max_size=8))
    return text.encode("utf-8", "surrogatepass") + end.encode() + tail


def v1_edge_lines() -> Iterator[bytes]:
    """Each field at its edge values, alone in an otherwise valid line, plus the 107-byte cap."""
    good4 = ["192.0.2.1", "192.0.2.2", "1", "2"]
    good6 = ["2001:db8::1", "::1", "1", "2"]
    for good, bad_hosts in ((good4, [*BAD_IPV4, "::1"]), (good6, [*BAD_IPV6, "1.2.3.4"])):
        protocol = "TCP4" if good is good4 else "TCP6"
        for index, values in enumerate([bad_hosts, bad_hosts, BAD_PORTS, BAD_PORTS]):
            for value in [*values, "0", "65535", "0.0.0.0", "255.255.255.255", "::"]:
                fields = list(good)
                fields[index] = value
                yield f"PROXY {protocol} {' '.join(fields)}\r\n".encode()
    for size in range(100, 112):  # around the 107-byte limit
        yield b"PROXY UNKNOWN " + b"x" * (size - 16) + b"\r\n"
        long6 = "ffff:" * 7 + "ffff"
        line = f"PROXY TCP6 {long6} {long6} 65535 65535\r\n".encode()
        yield line[: size - 2] + b"\r\n"
        yield line.replace(b"ffff", b"fff", (116 - size) // 1)
    for name in ("UNKNOWN", "TCP4", "TCP6"):
        yield f"PROXY {name}".encode() + b"\r\n"
        yield f"PROXY {name}X 1.2.3.4 1.2.3.4 1 2".encode() + b"\r\n"


# -- strategies: v2 headers --------------------------------------------------------------

BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xc1\xbf", b"\xed\xa0\x80", b"\xe2\x82", b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"a\x80", b"\xe2"]
ascii_bytes = st.text(st.characters(max_codepoint=127), max_size=12).map(str.encode)
utf8_bytes = st.text(max_size=12).map(str.encode)
non_ascii = st.sampled_from([b"\x80", b"caf\xc3\xa9", b"\xff"])
SSL_ASCII = [0x21, 0x23, 0x24, 0x25, 0x26, 0x27]


@st.composite
def ssl_value(draw: st.DrawFn, good: bool) -> bytes:
    subs = []
    sub_types = st.sampled_from([*SSL_ASCII, 0x22, 0x28, 0x29, 0x00])
    for sub_type in draw(st.lists(sub_types, max_size=4)):
        if sub_type in SSL_ASCII:
            value = draw(ascii_bytes)
        elif sub_type == 0x22:
            value = draw(utf8_bytes)
        else:
            value = draw(st.binary(max_size=12))
        subs.append(struct.pack("!BH", sub_type, len(value)) + value)
    head = draw(st.binary(min_size=5, max_size=5))
    if not good:
        kind = draw(st.sampled_from(["short", "ascii", "cn", "truncated", "overrun"]))
        if kind == "short":
            return head[: draw(st.integers(0, 4))]
        if kind == "ascii":
            subs.append(bytes((draw(st.sampled_from(SSL_ASCII)), 0, 1)) + draw(non_ascii)[:1])
        elif kind == "cn":
            value = draw(st.sampled_from(BAD_UTF8))
            subs.append(struct.pack("!BH", 0x22, len(value)) + value)
        elif kind == "truncated":
            subs.append(draw(st.sampled_from([b"\x21", b"\x21\x00"])))
        else:
            subs.append(b"\x21\x00\x09abc")
        draw(st.randoms()).shuffle(subs)
    return head + b"".join(subs)


@st.composite
def tlv_entry(draw: st.DrawFn, good: bool = True) -> bytes:
    """One TLV, raw; when not ``good``, its value breaks its type's rule (R-48..R-60)."""
    tlv_type = draw(st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xEA,
                                     0xEE, 0x00, 0xFF]))
    if tlv_type == 0x02:
        value = draw(utf8_bytes if good else st.sampled_from(BAD_UTF8))
    elif tlv_type == 0x03:
        wrong_size = st.sampled_from([b"", b"abc", b"abcde"])
        value = draw(st.binary(min_size=4, max_size=4) if good else wrong_size)
    elif tlv_type == 0x05:
        value = b"u" * draw(st.integers(0, 128) if good else st.integers(129, 200))
    elif tlv_type == 0x20:
        value = draw(ssl_value(good))
    elif tlv_type == 0x30:
        value = draw(ascii_bytes if good else non_ascii)
    else:
        value = draw(st.binary(max_size=24))
        if not good:  # a type without rules: break the framing instead
            return struct.pack("!BH", tlv_type, len(value) + 1) + value
    return struct.pack("!BH", tlv_type, len(value)) + value


def fix_crc(header: bytes) -> bytes:
    """Make the last CRC32C TLV of a v2 header correct, if there is one (walking the TLVs
    by hand: the header may be invalid for other reasons). With two, the header must still
    be refused: the last one is the one a careless parser would check."""
    pos = 16 + {1: 12, 2: 36, 3: 216}.get(header[13] >> 4, 0)
    end = min(len(header), 16 + int.from_bytes(header[14:16], "big"))
    crc_at = -1
    while pos + 3 <= end:
        size = int.from_bytes(header[pos + 1 : pos + 3], "big")
        if header[pos] == 0x03 and size == 4 and pos + 7 <= end:
            crc_at = pos + 3
        pos += 3 + size
    if crc_at < 0:
        return header
    zeroed = header[:crc_at] + b"\x00" * 4 + header[crc_at + 4 : end]
    return header[:crc_at] + fallback.crc32c(zeroed).to_bytes(4, "big") + header[crc_at + 4 :]


UNIX_PATHS = [b"/run/a.sock", b"\x00abstract", b"\x00ab\x00cd", b"", b"\xff\xfe", b"x" * 108,
              "é".encode(), b"\x00"]


@st.composite
def v2_headers(draw: st.DrawFn) -> bytes:
    """A v2 header (any family, LOCAL or PROXY, TLVs) with at most one defect."""
    defect = one_defect(
        draw, ["version", "command", "family", "block", "length", "tlv", "framing", "crc",
               "two crcs"]
    )
    command = draw(st.sampled_from([0x21, 0x21, 0x20]))
    if defect == "version":
        command = draw(st.sampled_from([0x11, 0x31, 0x01, 0xF1]))
    elif defect == "command":
        command = draw(st.integers(0x22, 0x2F))
    family = draw(st.sampled_from([0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x00]))
    if defect == "family":
        family = draw(st.sampled_from([0x01, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xFF]))
    size = {1: 12, 2: 36, 3: 216}.get(family >> 4, 0)
    if family >> 4 == 3:
        block = b"".join(draw(st.sampled_from(UNIX_PATHS)).ljust(108, b"\x00") for _ in "ab")
    else:
        block = draw(st.binary(min_size=size, max_size=size))
    if defect == "block":
        block = block[: draw(st.integers(0, max(size - 1, 0)))]
    tlvs = draw(st.lists(tlv_entry(), max_size=4))
    if defect in ("crc", "two crcs") or draw(st.booleans()):
        tlvs.append(b"\x03\x00\x04" + draw(st.binary(min_size=4, max_size=4)))
    if defect == "two crcs":
        tlvs.insert(draw(st.integers(0, len(tlvs))), b"\x03\x00\x04\x00\x00\x00\x00")
    if defect == "tlv":
        tlvs.insert(draw(st.integers(0, len(tlvs))), draw(tlv_entry(good=False)))
    body = block + b"".join(tlvs)
    if defect == "framing":
        body += draw(st.sampled_from([b"\x01", b"\x01\x00", b"\x01\x00\x05ab"]))
    length = len(body)
    if defect == "length":
        length = draw(st.sampled_from([0, 1, len(body) - 1, len(body) + 1, 0xFFFF]))
    header = SIG + bytes((command, family)) + struct.pack("!H", max(length, 0)) + body
    if defect != "crc":
        header = fix_crc(header)
    return header + draw(st.binary(max_size=4))


# -- strategies: encoder arguments -------------------------------------------------------

inet_address = st.one_of(
    st.tuples(ipv4_text, st.integers(0, 0xFFFF)), st.tuples(ipv6_text, st.integers(0, 0xFFFF))
)
BAD_ADDRESSES: list[object] = [
    5, ["1.2.3.4", 1], ("1.2.3.4", 1, 2), ("1.2.3.4",), ("1.2.3.4", -1), ("1.2.3.4", 65536),
    ("1.2.3.4", True), ("1.2.3.4", 1.0), ("1.2.3.4", "80"), ("1.2.3.4", None), (None, 1),
    (1, 1), (b"1.2.3.4", 1), ("é.1.2.3", 1), (ipaddress.IPv4Address("1.2.3.4"), 1),
    (ipaddress.IPv6Address("::1"), 1), ("/run/a.sock", 1), "/run/x.sock", b"\x00abstract",
    b"\x00a\x00", "\x00bad", "a" * 109, b"\x00a\x00\x00", "é", bytearray(b"/x"),
]
bad_address = st.one_of(
    st.sampled_from(BAD_ADDRESSES), st.tuples(bad_host, st.integers(0, 0xFFFF))
)
BAD_TLVS: list[object] = [
    (3, b"abcd"), (-1, b"v"), (256, b"v"), (1 << 70, b"v"), ("1", b"v"), (1.0, b"v"),
    (1, "h2"), (1, None), (1, bytearray(b"h2")), (1, memoryview(b"h2")), (TLVType.ALPN, b"h2"),
    (True, b"h2"), (1,), (1, b"a", b"b"), [1, b"x"], b"ab", None, (1, b"x" * 0x10000),
    (0xE0, b"x" * 0xFFF0), (2, b"\xff"), (5, b"u" * 129), (0x30, b"\x80"), (0x20, b"\x01"),
]
TRANSPORTS: list[object] = [socket.SOCK_STREAM, socket.SOCK_DGRAM, 1, 2]
BAD_TRANSPORTS: list[object] = [0, 3, True, "stream", socket.SOCK_RAW, None, 1.0]
CRC_FLAGS: list[object] = [False, True]
BAD_CRC_FLAGS: list[object] = [0, 1, None, "yes", [], 1.0]


@st.composite
def tlv_pair(draw: st.DrawFn) -> tuple[int, bytes]:
    raw = draw(tlv_entry())
    while raw[0] == 0x03:  # encode_v2 writes the CRC32C TLV itself
        raw = draw(tlv_entry())
    return (raw[0], raw[3:])


@st.composite
def encode_v2_arguments(draw: st.DrawFn) -> dict[str, Any]:
    """Valid arguments with at most one bad one: what each check of encode_v2 meets alone."""
    defect = one_defect(draw, ["source", "destination", "both", "transport", "tlv", "crc32c"])
    local = draw(st.booleans())
    kwargs: dict[str, Any] = {
        "source": None if local else draw(inet_address),
        "destination": None if local else draw(inet_address),
        "transport": draw(st.sampled_from(TRANSPORTS)),
        "tlvs": draw(st.lists(tlv_pair(), max_size=4)),
        "crc32c": draw(st.sampled_from(CRC_FLAGS)),
    }
    if defect in ("source", "destination"):
        kwargs[defect] = draw(st.one_of(bad_address, st.none()))
    elif defect == "both":
        odd = st.one_of(st.sampled_from(BAD_ADDRESSES), st.sampled_from(UNIX_PATHS))
        kwargs["source"] = draw(odd)
        kwargs["destination"] = draw(odd)
    elif defect == "transport":
        kwargs["transport"] = draw(st.sampled_from(BAD_TRANSPORTS))
    elif defect == "tlv":
        at = draw(st.integers(0, len(kwargs["tlvs"])))
        kwargs["tlvs"].insert(at, draw(st.sampled_from(BAD_TLVS)))
    elif defect == "crc32c":
        kwargs["crc32c"] = draw(st.sampled_from(BAD_CRC_FLAGS))
    return kwargs


# -- parse -------------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(fast: ModuleType, data: bytes) -> None:
    same_parse(fast, data)


@SETTINGS
@given(data=st.binary(max_size=120).map(lambda tail: b"PROXY " + tail))
def test_arbitrary_v1_tails(fast: ModuleType, data: bytes) -> None:
    same_parse(fast, data)


@SETTINGS
@given(data=st.binary(max_size=120).map(lambda tail: SIG + tail))
def test_arbitrary_v2_tails(fast: ModuleType, data: bytes) -> None:
    same_parse(fast, data)


@SETTINGS
@given(line=v1_lines())
def test_v1_lines_with_one_defect(fast: ModuleType, line: bytes) -> None:
    same_parse(fast, line)


address_soup = st.lists(
    st.sampled_from(list("0123456789abcdefABCDEF:.") + [":"] * 6 + ["."] * 2 + ["0"] * 4 + ["g"]),
    max_size=48,
).map("".join)


@settings(SETTINGS, max_examples=EXAMPLES * 5)
@given(text=st.one_of(address_soup, ipv6_text, ipv4_text))
def test_address_text_rules(fast: ModuleType, text: str) -> None:
    """The C address parsers accept exactly the fallback's IPv4/IPv6 texts (R-18, R-19)."""
    for protocol in ("TCP4", "TCP6"):
        same_parse(fast, f"PROXY {protocol} {text} {text} 1 2\r\n".encode())
    expected = outcome(fallback.encode_v1, (text, 1), (text, 2))
    assert outcome(fast.encode_v1, (text, 1), (text, 2)) == expected
    if expected[0] == "returned":
        assert outcome(fast._encode_v1_c_only, (text, 1), (text, 2)) == expected


def test_v1_edge_values(fast: ModuleType) -> None:
    for line in v1_edge_lines():
        same_parse(fast, line)


@SETTINGS
@given(header=v2_headers())
def test_v2_headers_with_one_defect(fast: ModuleType, header: bytes) -> None:
    same_parse(fast, header)


def test_v2_every_version_command_and_family_byte(fast: ModuleType) -> None:
    body = bytes(range(216)) + b"\x01\x00\x02h2"
    for byte12 in range(256):
        same_parse(fast, SIG + bytes((byte12, 0x11, 0, 12)) + body[:12])
    for byte13 in range(256):
        for length in (0, 12, 36, 216, 221):
            for byte12 in (0x20, 0x21):
                fixed = SIG + bytes((byte12, byte13)) + struct.pack("!H", length)
                same_parse(fast, fixed + body[:length])


def test_utf8_and_ascii_rules_on_short_sequences(fast: ModuleType) -> None:
    """AUTHORITY (UTF-8), NETNS (ASCII) and the SSL CN at every 1-byte value, every 2-byte
    value with a lead byte >= 0xC0, and the 3- and 4-byte boundaries."""
    values = [bytes((a,)) for a in range(256)]
    values += [bytes((a, b)) for a in range(0xC0, 0x100) for b in range(0x70, 0xD0)]
    edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0]
    values += [bytes((a, b, c)) for a in range(0xE0, 0xF0) for b in edges for c in edges]
    values += [bytes((a, b, 0x80, c)) for a in range(0xF0, 0xF8) for b in edges for c in edges]
    for value in values:
        ssl = b"\x01\x00\x00\x00\x00" + struct.pack("!BH", 0x22, len(value)) + value
        for tlv_type, tlv_value in ((0x02, value), (0x30, value), (0x20, ssl)):
            tlv = struct.pack("!BH", tlv_type, len(tlv_value)) + tlv_value
            same_parse(fast, SIG + b"\x20\x00" + struct.pack("!H", len(tlv)) + tlv)
    # Every SSL sub-TLV type around the registered ones, with ASCII, UTF-8 and other bytes.
    for sub_type in range(0x1E, 0x2C):
        for value in (b"", b"A", b"\x7f", b"\x80", b"caf\xc3\xa9", b"\xff"):
            ssl = b"\x07\x00\x00\x00\x00" + struct.pack("!BH", sub_type, len(value)) + value
            tlv = struct.pack("!BH", 0x20, len(ssl)) + ssl
            same_parse(fast, SIG + b"\x21\x00" + struct.pack("!H", len(tlv)) + tlv)


def _mutate(data: bytes, kind: int, at: int, value: int) -> bytes:
    at %= len(data) + 1
    if kind == 0:  # change one byte
        return data[:at] + bytes((value,)) + data[at + 1 :]
    if kind == 1:  # drop one byte
        return data[:at] + data[at + 1 :]
    if kind == 2:  # insert one byte
        return data[:at] + bytes((value,)) + data[at:]
    if kind == 3:  # cut
        return data[:at]
    if kind == 4 and len(data) >= 16 and data.startswith(SIG):  # change, then fix v2 length
        changed = data[:at] + bytes((value,)) + data[at + 1 :]
        return changed[:14] + struct.pack("!H", max(len(changed) - 16, 0)) + changed[16:]
    return data[:at] + data[at : at + value % 8] * 2 + data[at:]  # repeat a slice


@st.composite
def valid_headers(draw: st.DrawFn) -> bytes:
    """What the encoders write: v1 TCP4/TCP6/UNKNOWN, v2 INET/LOCAL with TLVs, v2 UNIX."""
    kind = draw(st.sampled_from(["v1", "v1 unknown", "v2", "v2 unix"]))
    if kind == "v1":
        return fallback.encode_v1(draw(inet_address), draw(inet_address))
    if kind == "v1 unknown":
        return fallback.encode_v1(None, None)
    if kind == "v2 unix":
        return fallback.encode_v2(draw(st.sampled_from(["/a", b"\x00b", "é"])), "/c")
    local = draw(st.booleans())
    return fallback.encode_v2(
        None if local else draw(inet_address),
        None if local else draw(inet_address),
        transport=draw(st.sampled_from(TRANSPORTS)),
        tlvs=draw(st.lists(tlv_pair(), max_size=4)),
        crc32c=draw(st.booleans()),
    )


@SETTINGS
@given(
    header=st.one_of(valid_headers(), v1_lines(), v2_headers()),
    mutations=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 300), st.integers(0, 255)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_headers(
    fast: ModuleType, header: bytes, mutations: list[tuple[int, int, int]]
) -> None:
    for kind, at, value in mutations:
        header = _mutate(header, kind, at, value)
        same_parse(fast, header)


@settings(SETTINGS, max_examples=max(EXAMPLES // 5, 10))
@given(header=st.one_of(valid_headers(), v1_lines(), v2_headers()))
def test_every_prefix(fast: ModuleType, header: bytes) -> None:
    """Every split point: IncompleteHeader with the same ``needed``, or the same error."""
    for end in range(len(header) + 1):
        same_parse(fast, header[:end])


@SETTINGS
@given(
    header=st.one_of(valid_headers(), v2_headers()),
    max_size=st.one_of(
        st.integers(0, 400),
        st.sampled_from([16, 28, 65551, 65552, 1 << 80, -(1 << 80), True, 28.0, "28", None]),
    ),
)
def test_max_size(fast: ModuleType, header: bytes, max_size: Any) -> None:
    same_parse(fast, header, max_size=max_size)


def _spellings(data: bytes) -> Iterator[object]:
    """The same bytes as every accepted input type, and some refused ones."""
    yield data
    yield bytearray(data)
    yield memoryview(data)
    yield memoryview(b"\x00" + data)[1:]
    yield memoryview(bytes(b for pair in zip(data, data) for b in pair))[::2]  # not contiguous
    if len(data) % 2 == 0:
        yield memoryview(data).cast("H")
    if len(data) % 2 == 0 and data:
        yield memoryview(data).cast("B", (len(data) // 2, 2))
    released = memoryview(data)
    released.release()
    yield released
    yield type("Sub", (bytes,), {})(data)
    yield type("SubArray", (bytearray,), {})(data)
    yield data.decode("latin-1")
    yield list(data)


@SETTINGS
@given(header=st.one_of(valid_headers(), v2_headers(), st.binary(max_size=40)))
def test_input_types(fast: ModuleType, header: bytes) -> None:
    for data in _spellings(header):
        expected = outcome(fallback.parse, data)
        assert outcome(fast.parse, data) == expected, type(data)


# -- encoders ----------------------------------------------------------------------------


@SETTINGS
@given(
    source=st.one_of(inet_address, bad_address, st.none()),
    destination=st.one_of(inet_address, st.none()),
    swap=st.booleans(),
)
def test_encode_v1_any_arguments(
    fast: ModuleType, source: Any, destination: Any, swap: bool
) -> None:
    if swap:
        source, destination = destination, source
    expected = outcome(fallback.encode_v1, source, destination)
    assert outcome(fast.encode_v1, source, destination) == expected
    plain = all(type(a) is tuple and type(a[0]) is str for a in (source, destination))
    if expected[0] == "returned" and (plain or source is destination is None):
        assert outcome(fast._encode_v1_c_only, source, destination) == expected


@SETTINGS
@given(kwargs=encode_v2_arguments(), container=st.sampled_from(["list", "tuple", "iterator"]))
def test_encode_v2_arguments_with_one_defect(
    fast: ModuleType, kwargs: dict[str, Any], container: str
) -> None:
    def call(module: ModuleType) -> object:
        tlvs: Any = {"list": list, "tuple": tuple, "iterator": iter}[container](kwargs["tlvs"])
        return outcome(module.encode_v2, **{**kwargs, "tlvs": tlvs})

    assert call(fast) == call(fallback)


def test_encode_v2_each_bad_argument_alone(fast: ModuleType) -> None:
    good: dict[str, Any] = {
        "source": ("192.0.2.1", 1),
        "destination": ("2001:db8::1", 2),
        "transport": socket.SOCK_STREAM,
        "tlvs": [(1, b"h2")],
        "crc32c": True,
    }
    bad: list[tuple[str, object]] = [("source", value) for value in BAD_ADDRESSES]
    bad += [("destination", value) for value in BAD_ADDRESSES]
    bad += [("transport", value) for value in BAD_TRANSPORTS]
    bad += [("crc32c", value) for value in BAD_CRC_FLAGS]
    bad += [("tlvs", [(1, b"h2"), value]) for value in BAD_TLVS]
    bad += [("tlvs", value) for value in (None, 5, b"\x01\x00", [(0xE0, b"x" * 0xFFF0)] * 2)]
    for name, value in bad:
        kwargs = {**good, name: value}
        assert outcome(fast.encode_v2, **kwargs) == outcome(fallback.encode_v2, **kwargs), kwargs


@SETTINGS
@given(kwargs=encode_v2_arguments())
def test_valid_encodes_stay_in_c(fast: ModuleType, kwargs: dict[str, Any]) -> None:
    """Valid INET/LOCAL arguments are encoded by the C path, byte for byte, and parse back."""
    expected = outcome(fallback.encode_v2, **kwargs)
    assume(expected[0] == "returned")
    plain = all(
        type(item) is tuple and type(item[0]) is int and type(item[1]) is bytes
        for item in kwargs["tlvs"]
    )
    plain = plain and type(kwargs["crc32c"]) is bool
    plain = plain and type(kwargs["transport"]) in (int, socket.SocketKind)
    addresses = (kwargs["source"], kwargs["destination"])
    if addresses != (None, None):
        plain = plain and all(type(a) is tuple and type(a[0]) is str for a in addresses)
    if plain:
        assert outcome(fast._encode_v2_c_only, **kwargs) == expected
    encoded = fast.encode_v2(**kwargs)
    header = fast.parse(encoded)
    assert header == fallback.parse(encoded)
    assert isinstance(header, ProxyHeader)
    expected_command = Command.LOCAL if kwargs["source"] is None else Command.PROXY
    assert header.command is expected_command
    assert fast.parse(header.to_bytes()) == header  # parse -> encode -> parse is stable
    assert header.to_bytes() == fast.parse(header.to_bytes()).to_bytes()


# -- judge_start: a connection's first chunk (the asyncio layer's hot path) --------------


def judged(func: Callable[..., object], *args: object) -> object:
    """``judge_start``'s answer in comparable form: a returned exception by class,
    message, ``needed`` or offset (exceptions are not equal by value)."""
    try:
        answer = func(*args)
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    if isinstance(answer, BaseException):
        return ("refused", type(answer), str(answer), getattr(answer, "needed", None),
                getattr(answer, "offset", None))
    return ("returned", typed(answer))


@SETTINGS
@given(
    start=st.one_of(valid_headers(), v1_lines(), v2_headers(), st.binary(max_size=120)),
    payload=st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01", b"PROXY "]),
    cut=st.one_of(st.none(), st.integers(0, 300)),
    policy=st.sampled_from(list(Policy)),
    final=st.sampled_from([False, True, 0, 1]),
    max_size=st.sampled_from([16, 28, 64, 4096, 65551, 1 << 80, -1, 28.0]),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_judge_start(fast: ModuleType, start: bytes, payload: bytes, cut: Any, policy: Policy,
                     final: Any, max_size: Any, kind: Any) -> None:
    """The compiled judge_start answers as judge_start_python on any first chunk, and
    gives back the very ``(None, None, 0)`` object of "no header" (decide_start tests it
    by identity)."""
    data = start + payload
    if cut is not None:
        data = data[:cut]
    chunk = kind(data)
    expected = judged(judge_start_python, policy, chunk, max_size, final)
    assert judged(fast.judge_start, policy, chunk, max_size, final) == expected
    if expected == ("returned", typed((None, None, 0))):
        assert fast.judge_start(policy, chunk, max_size, final) is judge_start_python(
            policy, chunk, max_size, final)


def test_judge_start_is_the_compiled_one_when_built(fast: ModuleType) -> None:
    """The adapters call the compiled twin whenever the extension is in use."""
    expected = fast.judge_start if IMPLEMENTATION == "cython" else judge_start_python
    assert connection.judge_start is expected
