"""Version 2 (binary) rules R-29..R-47, framing rules R-4, R-9, R-63, R-64 and decisions
A-6..A-9, A-16..A-18.

One test per rule, named after it, with the spec section in a comment. Each runs the
corpus cases of ``cases.py`` tagged with its rule (fed whole, one byte at a time and with
application bytes after them), then checks what the rule says in particular.
"""

from __future__ import annotations

import socket
import struct
from types import ModuleType

import pytest

from cases import (
    NOT_PROXY,
    SIG,
    V2_INVALID,
    V2_VALID,
    VALID,
    case_id,
    check_invalid,
    check_rule,
    check_valid,
    header,
    tlv,
    v2,
)
from proxyproto import (
    Command,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    ProxyProtocolError,
)

BLOCK4 = socket.inet_aton("10.1.2.3") + socket.inet_aton("10.4.5.6") + struct.pack("!HH", 1, 2)

#: R-37: byte 14 -> (family, transport, address block size).
FAMILY_BYTES = {
    0x00: (socket.AF_UNSPEC, None, 0),
    0x11: (socket.AF_INET, socket.SOCK_STREAM, 12),
    0x12: (socket.AF_INET, socket.SOCK_DGRAM, 12),
    0x21: (socket.AF_INET6, socket.SOCK_STREAM, 36),
    0x22: (socket.AF_INET6, socket.SOCK_DGRAM, 36),
    0x31: (socket.AF_UNIX, socket.SOCK_STREAM, 216),
    0x32: (socket.AF_UNIX, socket.SOCK_DGRAM, 216),
}


def refused_at_once(impl: ModuleType, data: bytes, offset: int) -> None:
    """``data`` is refused with InvalidHeader at ``offset``, and no shorter prefix is."""
    with pytest.raises(InvalidHeader) as info:
        impl.parse(data)
    assert info.value.offset == offset
    with pytest.raises(IncompleteHeader):
        impl.parse(data[:-1])


def needed_is_exact(impl: ModuleType, data: bytes) -> None:
    """From byte 16 on, ``needed`` is exactly what is left of the header (contract)."""
    for cut in range(16, len(data)):
        with pytest.raises(IncompleteHeader) as info:
            impl.parse(data[:cut])
        assert info.value.needed == len(data) - cut


@pytest.mark.parametrize("case", V2_VALID, ids=case_id)
def test_v2_valid_corpus(impl: ModuleType, case: object) -> None:
    check_valid(impl.parse, case.data, case.expected)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", V2_INVALID + NOT_PROXY, ids=case_id)
def test_v2_invalid_corpus(impl: ModuleType, case: object) -> None:
    check_invalid(impl.parse, case.data, case.error, case.offset)  # type: ignore[attr-defined]


# [SPEC §2] The header carries the address family, the socket type, both L3 addresses and
# both L4 ports.
def test_r4_header_carries_family_type_addresses_ports(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-4")
    assert valid
    result = impl.parse(v2(0x21, 0x12, BLOCK4))
    assert result.family == socket.AF_INET and result.transport == socket.SOCK_DGRAM
    assert result.source == ("10.1.2.3", 1) and result.destination == ("10.4.5.6", 2)


# [SPEC §2] UDP: the header and its payload are in the same datagram, and every datagram
# is parsed on its own. parse is stateless, so that holds by construction; the datagram
# endpoints: test_aio.py::test_udp_each_datagram_carries_its_header,
# test_blocking.py::test_datagrams_are_parsed_independently.
def test_r9_each_datagram_parsed_independently(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-9")
    assert valid
    first = v2(0x21, 0x12, BLOCK4) + b"payload one"
    second = v2(0x21, 0x12, BLOCK4[:8] + struct.pack("!HH", 3, 4)) + b"two"
    for datagram, source_port, payload in ((first, 1, b"payload one"), (second, 3, b"two"),
                                           (first, 1, b"payload one")):
        result = impl.parse(datagram)
        assert result.transport == socket.SOCK_DGRAM
        assert result.source == ("10.1.2.3", source_port)
        assert datagram[result.length :] == payload
    # A header split across datagrams is never completed from the next one.
    with pytest.raises(IncompleteHeader):
        impl.parse(first[:20])


# [SPEC §2.2] The first 12 bytes are the signature; byte 5 is NUL (never a C string).
def test_r29_signature(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-29")
    assert invalid
    assert bytes.fromhex("0d0a0d0a000d0a515549540a") == SIG and SIG[4] == 0
    # A mismatch at any byte is NoProxyHeader, decided by the bytes present.
    for index in range(1, 12):
        wrong = SIG[:index] + bytes((SIG[index] ^ 0x40,))
        with pytest.raises(NoProxyHeader):
            impl.parse(wrong)
        with pytest.raises(NoProxyHeader):
            impl.parse(wrong + SIG[index + 1 :] + b"\x21\x11\x00\x0c" + BLOCK4)
    # And every proper prefix of the signature is just incomplete.
    for index in range(1, 12):
        with pytest.raises(IncompleteHeader) as info:
            impl.parse(SIG[:index])
        assert info.value.needed == 16 - index


# [SPEC §2.2] Version nibble: only 0x2 is accepted, judged as soon as byte 13 arrives.
def test_r30_only_version_2(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-30")
    assert invalid
    for version in range(16):
        data = SIG + bytes(((version << 4) | 0x1,))
        if version == 2:
            with pytest.raises(IncompleteHeader):
                impl.parse(data)
        else:
            with pytest.raises(InvalidHeader) as info:
                impl.parse(data + b"\x11\x00\x0c" + BLOCK4)
            assert info.value.offset == 12
            refused_at_once(impl, data, 12)


# [SPEC §2.2] Command nibble: LOCAL (0) or PROXY (1); receivers must drop any other.
def test_r31_rejects_unassigned_command(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-31")
    assert invalid
    for command in range(16):
        data = SIG + bytes((0x20 | command,))
        if command in (0, 1):
            assert impl.parse(data + b"\x11\x00\x0c" + BLOCK4).command == command
        else:
            refused_at_once(impl, data, 12)


# [SPEC §2.2] LOCAL: accept it, use the real endpoints, discard the protocol block.
def test_r32_local_uses_real_endpoints(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-32")
    assert valid and invalid
    for family_byte, (family, transport, block) in FAMILY_BYTES.items():
        data = v2(0x20, family_byte, b"\x7f" * block)
        result = impl.parse(data)
        assert result.command == Command.LOCAL and result.is_local
        assert result.source is None and result.destination is None
        # The family/transport byte is reported as sent (decision), never believed.
        assert (result.family, result.transport) == (family, transport)
        assert result.length == len(data)


# [SPEC §2.2] PROXY: the original addresses come from the header.
def test_r33_proxy_takes_addresses_from_header(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-33")
    assert valid
    result = impl.parse(v2(0x21, 0x11, BLOCK4))
    assert result.command == Command.PROXY and not result.is_local
    assert (result.source, result.destination) == (("10.1.2.3", 1), ("10.4.5.6", 2))


# [SPEC §2.2] Byte 14: family in the high nibble, transport in the low nibble.
def test_r34_byte_14_family_and_transport_nibbles(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-34")
    assert valid
    for family_byte, (family, transport, block) in FAMILY_BYTES.items():
        if not block:
            continue
        result = impl.parse(v2(0x21, family_byte, bytes(block)))
        assert (result.family, result.transport) == (family, transport)
        assert family_byte >> 4 == {socket.AF_INET: 1, socket.AF_INET6: 2,
                                    socket.AF_UNIX: 3}[result.family]
        assert family_byte & 0xF == (1 if transport == socket.SOCK_STREAM else 2)


# [SPEC §2.2] Families 0..3 only; other values must be rejected.
def test_r35_rejects_undefined_family(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-35")
    assert valid and invalid
    for family in range(4, 16):
        for transport in (0, 1, 2):
            refused_at_once(impl, SIG + bytes((0x21, (family << 4) | transport)), 13)


# [SPEC §2.2] Transports 0..2 only; other values must be rejected.
def test_r36_rejects_undefined_transport(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-36")
    assert valid and invalid
    for family in range(4):
        for transport in range(3, 16):
            refused_at_once(impl, SIG + bytes((0x21, (family << 4) | transport)), 13)


# [SPEC §2.2] The seven expected values of byte 14 and their address block sizes.
def test_r37_seven_family_bytes_and_block_sizes(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-37")
    assert valid and invalid
    accepted = set()
    for byte in range(256):
        try:
            impl.parse(SIG + bytes((0x21, byte)))
        except IncompleteHeader:
            accepted.add(byte)
        except InvalidHeader:
            pass
    assert accepted == set(FAMILY_BYTES)
    for family_byte, (_, _, block) in FAMILY_BYTES.items():
        assert impl.parse(v2(0x21, family_byte, bytes(block))).length == 16 + block
        if block:
            refused_at_once(impl, v2(0x21, family_byte, length=block - 1), 14)


# [SPEC §2.2] Only 0x00 is mandatory; proxyproto implements all seven, and PROXY+UNSPEC
# is accepted with the real endpoints.
def test_r38_unspec_fallback(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-38")
    assert valid
    result = impl.parse(v2(0x21, 0x00))
    assert result.source is None and result.is_local and result.command == Command.PROXY


# [SPEC §2.2] Bytes 15-16: big-endian uint16, the bytes after the fixed part; the header
# is exactly 16 + len bytes.
def test_r39_length_is_big_endian_and_exact(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-39")
    assert valid
    body = BLOCK4 + tlv(0x04, bytes(300 - 12 - 3))
    data = v2(0x21, 0x11, body)
    assert data[14:16] == b"\x01\x2c"  # 300, not 0x2c01
    assert impl.parse(data + b"app").length == 316
    needed_is_exact(impl, data)


# [SPEC §2.2] LOCAL: receivers MUST honour len and must not assume 0 (go-proxyproto#12:
# a dummy block left in the stream corrupted HTTP).
def test_r40_local_honours_len(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-40")
    assert valid
    for family, body in ((0x00, b""), (0x11, BLOCK4), (0x11, BLOCK4 + tlv(0x04, b"pad")),
                         (0x21, b"\x00\x01\x02")):
        data = v2(0x20, family, body)
        stream = data + b"GET / HTTP/1.1\r\n"
        result = impl.parse(stream)
        assert result.length == 16 + len(body)
        assert stream[result.length :] == b"GET / HTTP/1.1\r\n"


# [SPEC §2.2] With UNSPEC the receiver may ignore address information: none is exposed.
def test_r41_unspec_exposes_no_address(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-41")
    assert valid
    result = impl.parse(v2(0x21, 0x00, tlv(0x05, b"uid")))
    assert result.source is None and result.destination is None
    assert result.unique_id == b"uid"


# [SPEC §2.2] Address block from byte 17: source address, destination address, source
# port, destination port, network byte order.
def test_r42_address_block_order(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-42")
    assert valid
    src6, dst6 = "2001:db8::a", "2001:db8:0:1::b"
    block6 = (socket.inet_pton(socket.AF_INET6, src6) + socket.inet_pton(socket.AF_INET6, dst6)
              + b"\x12\x34\xab\xcd")
    result = impl.parse(v2(0x21, 0x21, block6))
    assert result.source == (src6, 0x1234) and result.destination == (dst6, 0xABCD)
    result = impl.parse(v2(0x21, 0x11, bytes((1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187))))
    assert result.source == ("1.2.3.4", 80) and result.destination == ("5.6.7.8", 443)


# [SPEC §2.2] AF_UNIX: two 108-byte addresses (sun_path); decoding.
def test_r43_unix_addresses_are_108_bytes(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-43")
    assert valid
    source = b"/s".ljust(108, b"\x00")
    destination = b"/d" + b"\x00" * 50 + b"junk".ljust(56, b"\x00")
    result = impl.parse(v2(0x21, 0x31, source + destination + tlv(0x04, b"")))
    assert result.source == "/s" and result.destination == "/d"
    assert result.tlvs == ((0x04, b""),)


# [SPEC §2.2] No address is parsed before the whole block is in; a partial header is never
# a header. (Rejecting it at EOF or at the deadline is the adapters' job:
# test_blocking.py::test_read_header_eof_mid_header, test_hostile.py.)
def test_r44_no_address_before_whole_block(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-44")
    assert invalid
    for family_byte, (_, _, block) in FAMILY_BYTES.items():
        needed_is_exact(impl, v2(0x21, family_byte, b"\x01" * block))


# [SPEC §2.2] Detection: v2 is SIG plus a version nibble 2 ((b[12] & 0xF0) == 0x20, A-18);
# v1 starts with "PROXY"; anything else is not covered and must be dropped.
def test_r45_detection(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-45")
    assert invalid
    assert impl.parse(b"PROXY UNKNOWN\r\n").version == 1
    assert impl.parse(v2(0x20, 0x00)).version == 2
    assert impl.parse(v2(0x21, 0x00)).version == 2
    with pytest.raises(IncompleteHeader) as info:
        impl.parse(SIG + b"\x21\x11")  # 14 bytes: the length is not known yet
    assert info.value.needed == 2
    with pytest.raises(IncompleteHeader):
        impl.parse(b"PROX")
    # The first byte alone decides the path; anything but "P" or CR is not a header.
    for first in range(256):
        if first in (0x0D, 0x50):
            continue
        with pytest.raises(NoProxyHeader):
            impl.parse(bytes((first,)))


# [SPEC §2.2] len beyond the address block: the extra bytes belong to the header (TLVs).
def test_r46_extra_bytes_are_tlvs(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-46")
    assert valid
    data = v2(0x21, 0x11, BLOCK4 + tlv(0x01, b"h2") + tlv(0xE5, b"custom"))
    result = impl.parse(data + b"tail")
    assert result.length == len(data)
    assert result.tlvs == ((0x01, b"h2"), (0xE5, b"custom"))


# [SPEC §2.2] (derived from) PROXY with len below its block cannot be decoded;
# refused as soon as byte 16 arrives (CVE-2019-14243; proxy-protocol's bare struct.error).
def test_r47_len_below_address_block_refused(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-47")
    assert invalid
    for family_byte, (_, _, block) in FAMILY_BYTES.items():
        for size in range(block):
            data = v2(0x21, family_byte, length=size) + b"\x00" * size
            with pytest.raises(InvalidHeader) as info:
                impl.parse(data)
            assert info.value.offset == 14
            refused_at_once(impl, data[:16], 14)


# [SPEC §5, §6] The v2 signature makes HTTP, TLS, SMTP, SSH... fail at once; HTTP does not
# parse as v1 and v1 does not parse as HTTP. Here: none of them is taken for a header.
def test_r63_other_protocols_are_not_headers(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-63")
    assert invalid >= 4
    for banner in (b"220 mail.example ESMTP\r\n", b"+OK POP3 ready\r\n", b"\x30\x0c\x02\x01",
                   b"\x03\x00\x00\x13", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
        with pytest.raises((NoProxyHeader, InvalidHeader)):
            impl.parse(banner)


# (derived) Exactly one header is parsed: what follows, even another header, is data
# (chrj/smtpd#64: a later PROXY line overwrote the peer).
def test_r64_exactly_one_header(impl: ModuleType) -> None:
    second_headers = [case.data for case in VALID if len(case.data) < 300][:12]
    for case in VALID:
        if len(case.data) > 1000:
            continue
        for second in second_headers:
            result = impl.parse(case.data + second)
            assert result == case.expected
            assert result.length == len(case.data)


# LOCAL TLVs start after the family's address block when len covers it, at byte 16
# for UNSPEC, and are absent when len is shorter; a framing error is still refused.
def test_a6_local_tlvs_after_address_block(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "A-6")
    assert valid and invalid
    result = impl.parse(v2(0x20, 0x11, BLOCK4 + tlv(0x02, b"host")))
    assert result.tlvs == ((0x02, b"host"),) and result.source is None
    result = impl.parse(v2(0x20, 0x00, tlv(0x02, b"host")))
    assert result.tlvs == ((0x02, b"host"),)
    result = impl.parse(v2(0x20, 0x21, tlv(0x02, b"host")))  # 7 bytes < 36: no TLVs
    assert result.tlvs == () and result.length == 23


# PROXY with AF_UNSPEC is accepted, with no addresses (the real endpoints are used).
def test_a7_proxy_unspec_accepted_without_addresses(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-7")
    assert valid
    for transport_byte in (0x00,):
        result = impl.parse(v2(0x21, transport_byte))
        assert result.family == socket.AF_UNSPEC and result.transport is None
        assert result.source is None and result.destination is None


# a valid nibble paired with UNSPEC (0x01, 0x02, 0x10, 0x20, 0x30) is refused at byte
# 14, even for LOCAL, before any address block is looked at.
def test_a8_half_unspec_family_bytes_refused(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-8")
    assert invalid
    for command in (0x20, 0x21):
        for byte in (0x01, 0x02, 0x10, 0x20, 0x30):
            refused_at_once(impl, SIG + bytes((command, byte)), 13)


# a UNIX path is a str up to the first NUL; an abstract name (leading NUL) stays
# bytes with its trailing NULs stripped; all NULs is "".
def test_a9_unix_path_decoding(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-9")
    assert valid
    cases = {
        b"/tmp/s": "/tmp/s",
        b"/tmp/s\x00\x00rest": "/tmp/s",
        b"\x00abstract": b"\x00abstract",
        b"\x00abs\x00tract": b"\x00abs\x00tract",  # an abstract name keeps inner NULs
        b"": "",
        b"x" * 108: "x" * 108,
        "/caf\u00e9".encode(): "/caf\u00e9",
        b"/bad-\xff": "/bad-\udcff",  # undecodable bytes survive (surrogateescape)
    }
    for raw, expected in cases.items():
        block = raw.ljust(108, b"\x00") + b"/d".ljust(108, b"\x00")
        result = impl.parse(v2(0x21, 0x32, block))
        assert result.source == expected and result.destination == "/d"
        assert type(result.source) is type(expected)


# an unknown command is refused (nginx treats it as LOCAL).
def test_a16_unknown_command_not_treated_as_local(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-16")
    assert invalid
    with pytest.raises(InvalidHeader):
        impl.parse(v2(0x22, 0x00))


# DGRAM headers are parsed like any other, per datagram.
def test_a17_dgram_headers(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-17")
    assert valid
    for family_byte in (0x12, 0x22, 0x32):
        _, transport, block = FAMILY_BYTES[family_byte]
        result = impl.parse(v2(0x21, family_byte, bytes(block)))
        assert result.transport == socket.SOCK_DGRAM == transport


# the old spec's detection literal (13th byte 0x02) is version 0: refused; the
# check is on the high nibble.
def test_a18_detection_on_high_nibble(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-18")
    assert invalid
    with pytest.raises(InvalidHeader) as info:
        impl.parse(SIG + b"\x02\x11\x00\x0c" + BLOCK4)
    assert info.value.offset == 12


# --- landscape.md §3: other implementations' bugs, as regressions -------------------------


def test_regression_undefined_transport_gives_no_nil_address(impl: ModuleType) -> None:
    # go-proxyproto < 0.15.0 let 0x13 through and produced a nil address that panicked.
    with pytest.raises(InvalidHeader):
        impl.parse(v2(0x21, 0x13, BLOCK4))


def test_regression_sozu_1334_local_block_never_believed(impl: ModuleType) -> None:
    forged = v2(0x20, 0x11, socket.inet_aton("1.1.1.1") * 2 + b"\x00\x01\x00\x02")
    result = impl.parse(forged)
    assert result.source is None and result.destination is None and result.is_local


def test_regression_envoy_cve_2024_23327_local_without_addresses(impl: ModuleType) -> None:
    # Re-emitting a LOCAL header that has no addresses must work (Envoy segfaulted).
    result = impl.parse(v2(0x20, 0x00))
    again = impl.parse(result.to_bytes())
    assert again.command == Command.LOCAL and again.source is None


def test_regression_truncated_address_block_is_library_error(impl: ModuleType) -> None:
    # proxy-protocol raised a bare struct.error; Caddy's plugin panicked (CVE-2019-14243).
    for family_byte in (0x11, 0x21, 0x31):
        with pytest.raises(ProxyProtocolError):
            impl.parse(v2(0x21, family_byte, b"\x01\x02\x03", length=3))


def test_regression_tlv_overrun_refused(impl: ModuleType) -> None:
    # All six Python peers accepted a TLV length overrun (landscape §3d).
    check_invalid(impl.parse, v2(0x21, 0x11, BLOCK4 + b"\x02\x00\x10short"), InvalidHeader, 28)


def test_regression_local_header_fields_are_consistent(impl: ModuleType) -> None:
    # A LOCAL header compares equal however it was fed (gunicorn gave REMOTE_ADDR=None).
    data = v2(0x20, 0x00)
    expected = header(data, command=Command.LOCAL, family=socket.AF_UNSPEC, transport=None)
    check_valid(impl.parse, data, expected)
