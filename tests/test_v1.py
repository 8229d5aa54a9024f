"""Version 1 (text) rules R-13..R-28 and decisions A-2..A-5, A-14, A-15, A-20.

One test per rule, named after it, with the spec section in a comment. Each runs the
corpus cases of ``cases.py`` tagged with its rule (fed whole, one byte at a time and with
application bytes after them), then checks what the rule says in particular.
"""

from __future__ import annotations

import socket
from types import ModuleType

import pytest

from cases import (
    V1_INVALID,
    V1_VALID,
    case_id,
    check_invalid,
    check_rule,
    check_valid,
    first_refusal,
    header,
)
from proxyproto import (
    Command,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    ProxyProtocolError,
)

TCP4 = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"


def by_name(name: str) -> bytes:
    """The bytes of the valid v1 corpus case called ``name``."""
    return next(case.data for case in V1_VALID if case.name == name)


@pytest.mark.parametrize("case", V1_VALID, ids=case_id)
def test_v1_valid_corpus(impl: ModuleType, case: object) -> None:
    check_valid(impl.parse, case.data, case.expected)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", V1_INVALID, ids=case_id)
def test_v1_invalid_corpus(impl: ModuleType, case: object) -> None:
    check_invalid(impl.parse, case.data, case.error, case.offset)  # type: ignore[attr-defined]


# [SPEC §2.1] "PROXY" SP proto SP src SP dst SP sport SP dport CRLF, US-ASCII.
def test_r13_exact_line_grammar(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-13")
    assert valid and invalid
    result = impl.parse(TCP4)
    assert (result.version, result.command, result.tlvs) == (1, Command.PROXY, ())
    assert result.family == socket.AF_INET and result.transport == socket.SOCK_STREAM
    # Seeing "PROXY" means version 1, whatever follows the line.
    assert impl.parse(TCP4 + b"\r\n\r\n\x00\r\nQUIT\n").version == 1
    # Any other separator than one SP is refused.
    for separator in (b"\t", b"  ", b"\x0b", b"\xa0"):
        with pytest.raises(InvalidHeader):
            impl.parse(TCP4.replace(b" ", separator, 2))


# [SPEC §2.1] proto is exactly TCP4, TCP6 or UNKNOWN, byte for byte (case-sensitive).
def test_r14_protocol_token_is_exact(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-14")
    assert invalid
    for token in (b"tcp4", b"Tcp4", b"TCP", b"TCP44", b"UDP6", b"unknown", b"UNKNOWn"):
        line = b"PROXY " + token + b" 1.2.3.4 5.6.7.8 1 2\r\n"
        with pytest.raises(InvalidHeader) as info:
            impl.parse(line)
        assert info.value.offset == 6
    # A token is judged as soon as it cannot become one of the three.
    with pytest.raises(IncompleteHeader):
        impl.parse(b"PROXY TC")
    with pytest.raises(IncompleteHeader):
        impl.parse(b"PROXY UNKNO")
    with pytest.raises(InvalidHeader):
        impl.parse(b"PROXY TX")


# [SPEC §2.1] After UNKNOWN the sender may omit the rest; the receiver must ignore anything
# up to the CRLF.
def test_r15_unknown_tail_is_ignored(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-15")
    assert valid
    for tail in (b"", b" 1.2.3.4 5.6.7.8 1 2", b" ::1 ::1 1 2", b" 999.1.1.1 x y z",
                 b" \x00\xff\x7f", b" "):
        line = b"PROXY UNKNOWN" + tail + b"\r\n"
        check_valid(impl.parse, line, header(line, version=1, family=socket.AF_UNSPEC,
                                             transport=None))


# [SPEC §2.1] On UNKNOWN the receiver uses the real connection endpoints.
def test_r16_unknown_uses_real_endpoints(impl: ModuleType) -> None:
    check_rule(impl.parse, "R-16")
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 192.0.2.1 198.51.100.2 1 2\r\n"):
        result = impl.parse(line)
        assert result.source is None and result.destination is None
        assert result.family == socket.AF_UNSPEC and result.transport is None
        assert result.command == Command.PROXY and result.is_local


# [SPEC §2.1] IPv4: four decimal octets 0..255, one "." between, no leading zeros.
def test_r18_ipv4_dotted_decimal_without_leading_zeros(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-18")
    assert valid and invalid
    for octet in range(256):
        text = f"{octet}.0.{octet}.0"
        line = f"PROXY TCP4 {text} 1.1.1.1 1 2\r\n".encode()
        assert impl.parse(line).source == (text, 1)
    for bad in ("00", "01", "001", "099", "256", "1000", "-1", "+1", " 1"):
        line = f"PROXY TCP4 1.{bad}.3.4 1.1.1.1 1 2\r\n".encode()
        with pytest.raises(InvalidHeader) as info:
            impl.parse(line)
        assert info.value.offset == 11


# [SPEC §2.1] IPv6: hex groups, at most one "::", 128 bits (forms ).
def test_r19_ipv6_literal(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-19")
    assert valid and invalid


# [SPEC §2.1] "The advertised protocol family dictates what format to use", for both.
def test_r20_family_dictates_address_format(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-20")
    assert invalid
    for line in (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
                 b"PROXY TCP4 ::ffff:1.2.3.4 1.2.3.4 1 2\r\n"):
        with pytest.raises(InvalidHeader):
            impl.parse(line)


# [SPEC §2.1] Ports: decimal 0..65535, no leading zeros; source first.
def test_r21_ports_decimal_without_leading_zeros(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-21")
    assert invalid
    for port in (0, 1, 9, 10, 80, 443, 1024, 9999, 10000, 65535):
        line = f"PROXY TCP4 1.2.3.4 5.6.7.8 {port} {65535 - port}\r\n".encode()
        result = impl.parse(line)
        assert result.source == ("1.2.3.4", port)
        assert result.destination == ("5.6.7.8", 65535 - port)


# [SPEC §2.1] Receivers must support 56 (TCP4), 104 (TCP6), 15 and 107 bytes (UNKNOWN).
def test_r22_maximum_line_lengths(impl: ModuleType) -> None:
    check_rule(impl.parse, "R-22")
    sizes = {
        "tcp4_longest_56_bytes": 56,
        "tcp6_longest_104_bytes": 104,
        "unknown_short_form_15_bytes": 15,
        "unknown_worst_case_107_bytes": 107,
    }
    for name, size in sizes.items():
        data = by_name(name)
        assert len(data) == size
        assert impl.parse(data).length == size
    # One byte more than the worst case is refused.
    with pytest.raises(HeaderTooLarge):
        impl.parse(b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n")


# [SPEC §2.1] The receiver waits for the CRLF before decoding the addresses.
def test_r23_waits_for_crlf(impl: ModuleType) -> None:
    line = TCP4[:-2]
    with pytest.raises(IncompleteHeader) as info:
        impl.parse(line)
    assert info.value.needed == 2
    with pytest.raises(IncompleteHeader) as info:
        impl.parse(line + b"\r")
    assert info.value.needed == 1
    # The last port may still grow: "443" could become "4431", so nothing is decoded yet.
    with pytest.raises(IncompleteHeader):
        impl.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 443")
    assert impl.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 4431\r\n").destination == ("5.6.7.8", 4431)


# [SPEC §2.1] No CRLF within the first 107 characters: the line is invalid.
def test_r24_no_crlf_within_107_bytes(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-24")
    assert invalid
    tail = b"PROXY UNKNOWN " + b"x" * 91  # 105 bytes: CRLF still fits
    with pytest.raises(IncompleteHeader) as info:
        impl.parse(tail)
    assert info.value.needed == 2
    # At 106 bytes the CRLF can no longer end within 107: refused at once (decision), not
    # after waiting for the 107th byte.
    with pytest.raises(HeaderTooLarge):
        impl.parse(tail + b"x")
    assert first_refusal(impl.parse, b"PROXY UNKNOWN " + b"x" * 300) == 106
    # CVE-2021-23351 (go-proxyproto): a "PROXY" stream without LF must not be buffered
    # without bound.
    with pytest.raises(InvalidHeader):
        impl.parse(b"PROXY " + b"A" * 100_000)


# [SPEC §2.1] A receiver *may* reject an incomplete line. proxyproto is tolerant (R-6,
# a partial line is IncompleteHeader, and the I/O adapters bound the wait with a
# deadline and EOF (test_blocking.py::test_read_header_eof_mid_header,
# test_hostile.py::test_read_header_just_short_then_silence_then_close).
def test_r25_incomplete_line_is_incomplete_not_invalid(impl: ModuleType) -> None:
    for case in V1_VALID:
        for cut in (1, 5, 6, len(case.data) // 2, len(case.data) - 1):
            with pytest.raises(IncompleteHeader):
                impl.parse(case.data[:cut])


# [SPEC §2.1] Only CRLF ends the line: a lone CR or LF never does.
def test_r26_only_crlf_ends_the_line(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-26")
    assert invalid
    for end in (b"\n", b"\r\r", b"\n\r", b"\r\x00", b"\r "):
        data = TCP4[:-2] + end + b"\r\n"
        with pytest.raises(InvalidHeader) as info:
            impl.parse(data)
        assert info.value.offset == len(TCP4) - 2


# [SPEC §2.1] A sequence that does not match exactly is discarded, as early as possible.
def test_r27_mismatch_refused_as_soon_as_possible(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "R-27")
    assert invalid
    # The refusal comes with the first byte that cannot belong to a valid line.
    examples = {
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n": 29,  # "01": a leading zero
        b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n": 19,  # "04": a leading zero
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n": 20,  # "256" > 255
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n": 32,  # 65536 > 65535
        b"PROXY TCP7 1.2.3.4 5.6.7.8 1 2\r\n": 10,
        b"PROXY TCP4 ::1 ::1 1 2\r\n": 12,
        b"PROXYTCP4\r\n": 6,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n": 31,
    }
    for data, cut in examples.items():
        assert first_refusal(impl.parse, data) == cut, data


# [SPEC §2.1, §9] Exactly the line, CRLF included, is removed; what follows is data.
def test_r28_removes_exactly_the_line(impl: ModuleType) -> None:
    check_rule(impl.parse, "R-28")
    for case in V1_VALID:
        stream = case.data + TCP4 + b"GET / HTTP/1.1\r\n\r\n"
        result = impl.parse(stream)
        assert result == case.expected
        assert stream[result.length :] == TCP4 + b"GET / HTTP/1.1\r\n\r\n"


# UNKNOWN + SP + anything up to CRLF is accepted (HAProxy refuses the long form,
# nginx accepts "UNKNOWNX"); a CR or LF inside the tail is still refused.
def test_a2_unknown_long_form_accepted_junk_refused(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "A-2")
    assert valid and invalid


# leading zeros are refused, never read as octal (inet_aton("010.1.1.1") is 8.1.1.1).
def test_a3_leading_zeros_refused_never_octal(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-3")
    assert invalid
    for text in (b"010.1.1.1", b"0177.0.0.1", b"127.000.000.001", b"1.2.3.010"):
        with pytest.raises(InvalidHeader):
            impl.parse(b"PROXY TCP4 " + text + b" 1.1.1.1 1 2\r\n")
        with pytest.raises(InvalidHeader):
            impl.parse(b"PROXY TCP4 1.1.1.1 " + text + b" 1 2\r\n")


# RFC 4291 text as inet_ntop writes it (1-4 digit groups, "::" anywhere, dotted IPv4
# tail); no zone id; reported in inet_ntop's canonical form.
def test_a4_ipv6_text_forms_and_canonical_output(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "A-4")
    assert valid and invalid
    forms = {
        "0:0:0:0:0:0:0:1": "::1",
        "::0:1": "::1",
        "1::": "1::",
        "1:0:0:0:0:0:0:0": "1::",
        "FE80::AbCd": "fe80::abcd",
        "2001:db8:0:0:1:0:0:1": "2001:db8::1:0:0:1",
        "::ffff:10.0.0.1": "::ffff:10.0.0.1",
        "::FFFF:a00:1": "::ffff:10.0.0.1",
        "64:ff9b::192.0.2.33": "64:ff9b::c000:221",
    }
    for text, canonical in forms.items():
        line = f"PROXY TCP6 {text} {text} 1 2\r\n".encode()
        result = impl.parse(line)
        assert result.source == (canonical, 1)
        assert socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text)) \
            == canonical


# strict by default: an IPv4 literal inside TCP6 (nginx's relay output) is refused.
def test_a5_ipv4_in_tcp6_refused(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-5")
    assert invalid


# port 0 is accepted (Netty rejects it) and left to the application.
def test_a14_port_zero_accepted(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-14")
    assert valid
    result = impl.parse(b"PROXY TCP6 ::1 ::2 0 0\r\n")
    assert result.source == ("::1", 0) and result.destination == ("::2", 0)


# exact single-space tokenization; only ASCII digits; no "+80", " 80", "8_0", "٣".
def test_a15_tokenization_quirks_refused(impl: ModuleType) -> None:
    _, invalid = check_rule(impl.parse, "A-15")
    assert invalid
    for port in ("+80", " 80", "80 ", "8_0", "\u0663", "\uff18\uff10", "0x50", "8e1", "80.0"):
        line = f"PROXY TCP4 1.2.3.4 5.6.7.8 {port} 443\r\n".encode()
        with pytest.raises(InvalidHeader):
            impl.parse(line)


# A-20: the short UNKNOWN form (GCP / old balancers' health check) is accepted.
def test_a20_unknown_health_check_accepted(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-20")
    assert valid
    result = impl.parse(b"PROXY UNKNOWN\r\n")
    assert result.length == 15 and result.source is None


# --- landscape.md §3: other implementations' bugs, as regressions -------------------------


def test_regression_lax_numbers_haproxy_netty_twisted(impl: ModuleType) -> None:
    # HAProxy: 256.1.1.1 -> 0.1.1.1, port 70000 -> 4464; Netty: "+80", trailing spaces,
    # 110-byte lines; twisted: 999.0.2.10, port 65536, IPv6 in TCP4, bare ValueError on
    # a non-numeric port. Each is our own InvalidHeader.
    lines = [
        b"PROXY TCP4 256.1.1.1 1.1.1.1 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 70000 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 +80 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 1 2  \r\n",
        b"PROXY TCP4 999.0.2.10 1.1.1.1 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 65536 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 http 2\r\n",
        b"PROXY UNKNOWN " + b"x" * 94 + b"\r\n",
    ]
    for line in lines:
        with pytest.raises(InvalidHeader):
            impl.parse(line)


def test_regression_legal_long_lines_and_unknown_accepted(impl: ModuleType) -> None:
    # proxy.py asserted len <= 57 (legal TCP6 lines reach 104); gunicorn WSGI and twisted
    # reject UNKNOWN.
    assert impl.parse(by_name("tcp6_longest_104_bytes")).length == 104
    assert impl.parse(b"PROXY UNKNOWN\r\n").family == socket.AF_UNSPEC


def test_regression_only_library_errors_escape(impl: ModuleType) -> None:
    # twisted let a bare ValueError escape; proxy-protocol a struct.error. Whatever the
    # line, only ProxyProtocolError subclasses come out.
    for junk in (b"PROXY TCP4 \xff\xfe 1 2 3\r\n", b"PROXY TCP6 \xc3\xa9::1 ::1 1 2\r\n",
                 b"PROXY TCP4 1.1.1.1 1.1.1.1 99999999999999999999 1\r\n",
                 b"PROXY TCP6 ::%% ::1 1 2\r\n", b"PROXY \x00\r\n"):
        with pytest.raises(ProxyProtocolError) as info:
            impl.parse(junk)
        assert not isinstance(info.value, (IncompleteHeader, NoProxyHeader))
