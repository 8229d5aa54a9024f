"""The benchmark inputs, shared by ``bench.py`` (timings) and ``callgrind.py`` (instruction counts).

Each case is one operation on fixed inputs, as a ``timeit`` statement over a namespace, for
each implementation: ``cython`` (``proxyproto._fast``), ``python`` (``proxyproto._fallback``)
and ``proxy-protocol`` (the PyPI package ``proxy-protocol``, module ``proxyprotocol``, on the
same bytes where it supports them).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import ModuleType
from typing import Any, Optional

from proxyproto import _fallback

V1_TCP4 = b"PROXY TCP4 192.168.10.20 198.51.100.22 51000 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::10:20 2001:db8::1:22 51000 443\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
SRC4, DST4 = ("192.168.10.20", 51000), ("198.51.100.22", 443)
SRC6, DST6 = ("2001:db8::10:20", 51000), ("2001:db8::1:22", 443)
#: ALPN, AUTHORITY and a 16-byte UNIQUE_ID: what HAProxy sends with ``proxy-v2-options``.
TLVS3 = [(0x01, b"h2"), (0x02, b"api.example.com"), (0x05, b"0123456789abcdef")]
#: The SSL TLV: client bits, verify, then VERSION, CN, CIPHER, SIG_ALG, KEY_ALG sub-TLVs.
SSL_SUBS = [
    (0x21, b"TLSv1.3"),
    (0x22, b"client.example.com"),
    (0x23, b"TLS_AES_128_GCM_SHA256"),
    (0x24, b"SHA256"),
    (0x25, b"RSA2048"),
]
SSL_VALUE = b"\x07\x00\x00\x00\x00" + b"".join(
    bytes((t,)) + len(v).to_bytes(2, "big") + v for t, v in SSL_SUBS
)

V2_TCP4 = _fallback.encode_v2(SRC4, DST4)  # what Traefik sends: 28 bytes
V2_TCP6 = _fallback.encode_v2(SRC6, DST6)  # 52 bytes
V2_TCP6_TLVS = _fallback.encode_v2(SRC6, DST6, tlvs=TLVS3)
def _with_crc_in_type_order() -> bytes:
    """ALPN, CRC32C, SSL: the CRC32C TLV between the others, in type order. proxy-protocol
    re-serialises TLVs sorted by type to check the CRC, so it refuses a valid header whose
    CRC32C TLV comes last (as ``encode_v2`` writes it); this order suits both."""
    plain = _fallback.encode_v2(SRC4, DST4, tlvs=[(0x01, b"h2"), (0x20, SSL_VALUE)])
    ssl_at = 16 + 12 + 5
    crc_tlv = b"\x03\x00\x04\x00\x00\x00\x00"
    body_length = len(plain) - 16 + len(crc_tlv)
    header = plain[:14] + body_length.to_bytes(2, "big") + plain[16:ssl_at] + crc_tlv
    header += plain[ssl_at:]
    crc = _fallback.crc32c(header).to_bytes(4, "big")
    return header[: ssl_at + 3] + crc + header[ssl_at + 7 :]


V2_TCP4_SSL_CRC = _with_crc_in_type_order()
NOT_PROXY = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


@dataclass
class Case:
    """One benchmark: a statement per implementation over a namespace."""

    name: str
    size: Optional[int]  # the header's size in bytes, for parse cases
    statements: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    note: str = ""


def _peer() -> Optional[ModuleType]:
    try:
        import proxyprotocol.v1
        import proxyprotocol.v2
    except ImportError:
        return None
    return proxyprotocol


def build_cases(impls: dict[str, ModuleType]) -> list[Case]:
    """The cases for the given implementation modules (``cython``/``python``), plus the
    ``proxy-protocol`` peer when it is installed."""
    cases: list[Case] = []

    def parse_case(name: str, data: bytes, then: str = "") -> Case:
        case = Case(name, len(data))
        for impl, module in impls.items():
            case.statements[impl] = (f"f(d){then}", {"f": module.parse, "d": data})
        cases.append(case)
        return case

    parse_case("parse v1 TCP4", V1_TCP4)
    parse_case("parse v1 TCP6", V1_TCP6)
    parse_case("parse v1 UNKNOWN", V1_UNKNOWN)
    parse_case("parse v2 TCP4 (Traefik)", V2_TCP4)
    parse_case("parse v2 TCP6", V2_TCP6)
    parse_case("parse v2 TCP6 + 3 TLVs", V2_TCP6_TLVS)
    parse_case("parse v2 TCP4 + SSL + CRC32C", V2_TCP4_SSL_CRC)
    parse_case("parse v2 TCP4, read source", V2_TCP4, ".source")
    not_proxy = Case("parse: not a PROXY header", len(NOT_PROXY))
    for impl, module in impls.items():
        not_proxy.statements[impl] = (
            "try:\n    f(d)\nexcept E:\n    pass",
            {"f": module.parse, "d": NOT_PROXY, "E": ValueError},
        )
    cases.append(not_proxy)

    encode_v1 = Case("encode v1 TCP4", None)
    encode_v2 = Case("encode v2 TCP4", None)
    encode_tlvs = Case("encode v2 TCP6 + 3 TLVs + CRC32C", None)
    for impl, module in impls.items():
        encode_v1.statements[impl] = ("f(s, t)", {"f": module.encode_v1, "s": SRC4, "t": DST4})
        encode_v2.statements[impl] = ("f(s, t)", {"f": module.encode_v2, "s": SRC4, "t": DST4})
        encode_tlvs.statements[impl] = (
            "f(s, t, tlvs=x, crc32c=True)",
            {"f": module.encode_v2, "s": SRC6, "t": DST6, "x": TLVS3},
        )
    cases += [encode_v1, encode_v2, encode_tlvs]

    peer = _peer()
    if peer is not None:
        _add_peer(cases, peer)
    return cases


def _add_peer(cases: list[Case], peer: ModuleType) -> None:
    """proxy-protocol's own entry points on the same bytes (its best case: the version is
    known in advance, and encoders get prebuilt result objects)."""
    from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
    from proxyprotocol.tlv import ProxyProtocolTLV

    v1 = peer.v1.ProxyProtocolV1()
    v2 = peer.v2.ProxyProtocolV2()
    by_name = {case.name: case for case in cases}
    parse = {
        "parse v1 TCP4": (v1.unpack, V1_TCP4, ""),
        "parse v1 TCP6": (v1.unpack, V1_TCP6, ""),
        "parse v1 UNKNOWN": (v1.unpack, V1_UNKNOWN, ""),
        "parse v2 TCP4 (Traefik)": (v2.unpack, V2_TCP4, ""),
        "parse v2 TCP6": (v2.unpack, V2_TCP6, ""),
        "parse v2 TCP6 + 3 TLVs": (v2.unpack, V2_TCP6_TLVS, ""),
        "parse v2 TCP4 + SSL + CRC32C": (v2.unpack, V2_TCP4_SSL_CRC, ""),
        "parse v2 TCP4, read source": (v2.unpack, V2_TCP4, ".source"),
    }
    for name, (func, data, then) in parse.items():
        by_name[name].statements["proxy-protocol"] = (f"f(d){then}", {"f": func, "d": data})

    def address4(pair: tuple[str, int]) -> tuple[IPv4Address, int]:
        return (IPv4Address(pair[0]), pair[1])

    def address6(pair: tuple[str, int]) -> tuple[IPv6Address, int]:
        return (IPv6Address(pair[0]), pair[1])

    tcp4 = ProxyResultIPv4(address4(SRC4), address4(DST4), protocol=socket.SOCK_STREAM)
    tlv = ProxyProtocolTLV(alpn=b"h2", authority="api.example.com",
                           unique_id=b"0123456789abcdef")
    tcp6 = ProxyResultIPv6(address6(SRC6), address6(DST6), protocol=socket.SOCK_STREAM, tlv=tlv)
    by_name["encode v1 TCP4"].statements["proxy-protocol"] = ("f(r)", {"f": v1.pack, "r": tcp4})
    by_name["encode v2 TCP4"].statements["proxy-protocol"] = ("f(r)", {"f": v2.pack, "r": tcp4})
    by_name["encode v2 TCP6 + 3 TLVs + CRC32C"].statements["proxy-protocol"] = (
        "f(r)", {"f": v2.pack, "r": tcp6}
    )
    by_name["encode v2 TCP4"].note = "proxy-protocol always appends a CRC32C TLV here"


def check_cases(cases: list[Case]) -> None:
    """Every implementation must compute the same thing before we time it."""
    for case in cases:
        results = {}
        for impl, (stmt, namespace) in case.statements.items():
            expression = stmt if "\n" not in stmt else None
            if expression is None:
                continue
            results[impl] = eval(expression, dict(namespace))
        if "cython" in results and "python" in results:
            assert results["cython"] == results["python"], case.name
        peer = results.get("proxy-protocol")
        if peer is not None and case.name.startswith("parse") and "python" in results:
            ours = results["python"]
            if case.name.endswith("read source"):
                assert (str(peer[0]), peer[1]) == ours, case.name
            elif ours.source is not None:
                assert (str(peer.source[0]), peer.source[1]) == ours.source, case.name
        if peer is not None and case.name.startswith("encode"):
            assert _fallback.parse(peer).source == _fallback.parse(results["python"]).source

