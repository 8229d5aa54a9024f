"""Hypothesis strategies for property-testing code that sends or receives PROXY headers.

Requires ``hypothesis`` (``pip install 'proxyproto[hypothesis]'``)::

    from hypothesis import given
    from proxyproto import strategies as pps

    @given(pps.header_bytes(), pps.payloads())
    def test_my_server_sees_the_client(wire: bytes, payload: bytes) -> None:
        ...

Every strategy draws only values the encoders accept, so ``header_bytes()`` always gives
a valid header; ``mutated_headers()`` gives near-misses for the error paths. TLVs include
other programs' data in the custom range 0xE0-0xEF (which the vendor accessors skip).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Union

from hypothesis import strategies as st

from . import _impl
from ._header import InetAddress, ProxyHeader, TLVType, UnixAddress

__all__ = [
    "AddressPair",
    "addresses",
    "header_bytes",
    "headers",
    "inet_addresses",
    "ipv4_hosts",
    "ipv6_hosts",
    "mutated_headers",
    "payloads",
    "ports",
    "ssl_values",
    "tlvs",
    "unix_paths",
    "v1_header_bytes",
    "v2_header_bytes",
]

#: The ``(source, destination)`` pairs the encoders take, both of one kind. Both INET (a
#: mixed IPv4/IPv6 pair included), both UNIX, or both ``None`` (``LOCAL`` / ``UNKNOWN``).
AddressPair = Union[
    tuple[InetAddress, InetAddress], tuple[UnixAddress, UnixAddress], tuple[None, None]
]

#: Ports 0..65535.
ports: st.SearchStrategy[int] = st.integers(min_value=0, max_value=0xFFFF)


def ipv4_hosts() -> st.SearchStrategy[str]:
    """IPv4 hosts in dotted-quad form."""
    return st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))


def ipv6_hosts() -> st.SearchStrategy[str]:
    """IPv6 hosts as ``socket.inet_ntop`` writes them, IPv4-mapped ones included."""
    return st.one_of(
        st.builds(lambda b: socket.inet_ntop(socket.AF_INET6, b), st.binary(min_size=16,
                                                                          max_size=16)),
        st.builds(lambda n: socket.inet_ntop(
            socket.AF_INET6, b"\x00" * 10 + b"\xff\xff" + n.to_bytes(4, "big")),
            st.integers(0, 2**32 - 1)),
        st.sampled_from(["::", "::1", "2001:db8::1", "fe80::1"]),
    )


def inet_addresses(version: Optional[int] = None) -> st.SearchStrategy[InetAddress]:
    """``(host, port)`` tuples: IPv4 (``version=4``), IPv6 (``6``) or either."""
    if version == 4:
        hosts = ipv4_hosts()
    elif version == 6:
        hosts = ipv6_hosts()
    else:
        hosts = st.one_of(ipv4_hosts(), ipv6_hosts())
    return st.tuples(hosts, ports)


def unix_paths() -> st.SearchStrategy[UnixAddress]:
    """UNIX socket paths that fit the 108-byte field: ``str`` paths and abstract names."""
    path_chars = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
    return st.one_of(
        st.text(path_chars, min_size=1, max_size=100).map(lambda s: "/" + s[:100]),
        st.binary(min_size=1, max_size=107)
        .map(lambda b: b"\x00" + b.replace(b"\x00", b""))
        .filter(lambda b: len(b) > 1),
    )


def addresses() -> st.SearchStrategy[AddressPair]:
    """``(source, destination)`` pairs of one kind: IPv4, IPv6, mixed, UNIX or ``None``."""
    inet: st.SearchStrategy[AddressPair] = st.one_of(
        st.tuples(inet_addresses(4), inet_addresses(4)),
        st.tuples(inet_addresses(6), inet_addresses(6)),
        st.tuples(inet_addresses(), inet_addresses()),
    )
    unix: st.SearchStrategy[AddressPair] = st.tuples(unix_paths(), unix_paths())
    none: st.SearchStrategy[AddressPair] = st.just((None, None))
    return st.one_of(inet, unix, none)


def _sub_tlv(sub_type: int, text: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return text.map(lambda v: bytes((sub_type,)) + len(v).to_bytes(2, "big") + v)


def ssl_values() -> st.SearchStrategy[bytes]:
    """Well-formed SSL TLV values: client bits, verify, and a mix of sub-TLVs."""
    ascii_text = st.text(st.characters(max_codepoint=0x7F), max_size=40).map(str.encode)
    utf8_text = st.text(max_size=40).map(lambda s: s.encode("utf-8"))
    subs = st.lists(
        st.one_of(
            _sub_tlv(0x21, st.sampled_from([b"TLSv1.2", b"TLSv1.3"])),
            _sub_tlv(0x22, utf8_text),
            *(_sub_tlv(t, ascii_text) for t in (0x23, 0x24, 0x25, 0x26, 0x27)),
            _sub_tlv(0x28, st.binary(max_size=64)),
        ),
        max_size=5,
    )
    return st.builds(
        lambda client, verify, parts: bytes((client,)) + verify.to_bytes(4, "big")
        + b"".join(parts),
        st.integers(0, 7),
        st.integers(0, 2**32 - 1),
        subs,
    )


def tlvs(max_count: int = 6) -> st.SearchStrategy[list[tuple[int, bytes]]]:
    """Lists of valid ``(type, value)`` TLVs (CRC32C excluded: use ``crc32c=True``)."""
    one = st.one_of(
        st.tuples(st.just(int(TLVType.ALPN)), st.sampled_from([b"h2", b"http/1.1", b""])),
        st.tuples(st.just(int(TLVType.AUTHORITY)),
                  st.text(max_size=64).map(lambda s: s.encode("utf-8"))),
        st.tuples(st.just(int(TLVType.NOOP)), st.binary(max_size=40)),
        st.tuples(st.just(int(TLVType.UNIQUE_ID)), st.binary(max_size=128)),
        st.tuples(st.just(int(TLVType.SSL)), ssl_values()),
        st.tuples(st.just(int(TLVType.NETNS)),
                  st.text(st.characters(max_codepoint=0x7F), max_size=20).map(str.encode)),
        st.tuples(st.just(int(TLVType.AWS)),
                  st.text("abcdef0123456789", min_size=8, max_size=17)
                  .map(lambda s: b"\x01vpce-" + s.encode())),
        st.tuples(st.just(int(TLVType.AZURE)),
                  st.binary(min_size=4, max_size=4).map(lambda b: b"\x01" + b)),
        st.tuples(st.just(int(TLVType.GCP)), st.binary(min_size=8, max_size=8)),
        # Other programs' TLVs: the custom range (hitch's PEM in 0xE0...) and beyond.
        st.tuples(st.integers(0xE0, 0xFF), st.binary(max_size=32)),
    )
    return st.lists(one, max_size=max_count)


def payloads() -> st.SearchStrategy[bytes]:
    """Application bytes that may follow a header (including header look-alikes)."""
    return st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"GET / HTTP/1.1\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                         b"\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x0c", b"\x16\x03\x01\x02\x00"]),
    )


def v1_header_bytes() -> st.SearchStrategy[bytes]:
    """Valid v1 lines: TCP4, TCP6 (mixed pairs mapped) and the short UNKNOWN."""
    return st.one_of(
        st.builds(_impl.encode_v1, inet_addresses(), inet_addresses()),
        st.just(b"PROXY UNKNOWN\r\n"),
    )


def v2_header_bytes() -> st.SearchStrategy[bytes]:
    """Valid v2 headers of every family and transport, with TLVs and optional CRC32C."""

    def build(pair: AddressPair, dgram: bool, items: list[tuple[int, bytes]],
              crc: bool) -> bytes:
        return _impl.encode_v2(
            pair[0], pair[1],
            transport=socket.SOCK_DGRAM if dgram else socket.SOCK_STREAM,
            tlvs=items, crc32c=crc,
        )

    return st.builds(build, addresses(), st.booleans(), tlvs(), st.booleans())


def header_bytes(version: Optional[int] = None) -> st.SearchStrategy[bytes]:
    """Valid headers: v1 (``version=1``), v2 (``2``) or either."""
    if version == 1:
        return v1_header_bytes()
    if version == 2:
        return v2_header_bytes()
    return st.one_of(v1_header_bytes(), v2_header_bytes())


def headers(version: Optional[int] = None) -> st.SearchStrategy[ProxyHeader]:
    """Parsed :class:`proxyproto.ProxyHeader` values (``version`` as for :func:`header_bytes`)."""
    return header_bytes(version).map(_impl.parse)


def mutated_headers() -> st.SearchStrategy[bytes]:
    """Valid headers with one byte changed, inserted or removed, or cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        wire = bytearray(draw(header_bytes()))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        index = draw(st.integers(0, len(wire) - 1))
        if action == "flip":
            wire[index] ^= draw(st.integers(1, 255))
        elif action == "insert":
            wire.insert(index, draw(st.integers(0, 255)))
        elif action == "delete":
            del wire[index]
        else:
            del wire[index:]
        return bytes(wire)

    return mutate()
