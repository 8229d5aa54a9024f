"""ProxyHeader as a value: the validating constructor, the cached SSL decoding, and the
tuple behaviour (len, iteration, ==, hash, pickle) that both parsers rely on."""

from __future__ import annotations

import copy
import pickle
import socket
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings

from cases import VALID
from doc_blocks import ROOT, blocks
from proxyproto import TLV, Command, ProxyHeader, SSLInfo, TLVType, _header, _impl
from proxyproto import strategies as pps

STREAM, DGRAM = socket.SOCK_STREAM, socket.SOCK_DGRAM
INET, INET6, UNIX, UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_UNSPEC
SSL_VALUE = b"\x07\x00\x00\x00\x00" + b"\x21\x00\x07TLSv1.3" + b"\x22\x00\x03caf"
V1_LINE = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"
# pickle.dumps(parse(V1_LINE), 4) as the code before the validating constructor wrote it.
V1_PICKLE_4 = bytes.fromhex(
    "800495a1000000000000008c1270726f787970726f746f2e5f686561646572948c0b50726f787948656164"
    "6572949394284b0168008c07436f6d6d616e649493944b01859452948c06736f636b6574948c0d41646472"
    "65737346616d696c799493944b028594529468078c0a536f636b65744b696e649493944b01859452948c09"
    "3139322e302e322e31944d38c786948c0c3139382e35312e3130302e32944dbb018694294b2d749481942e"
)


def v2_with_ssl(impl: ModuleType) -> ProxyHeader:
    header: ProxyHeader = impl.parse(impl.encode_v2(
        ("192.0.2.1", 1), ("198.51.100.2", 2), tlvs=[(0x20, SSL_VALUE), (0x02, b"a.example")],
        crc32c=True))
    return header


# -- the constructor accepts every parse result, unchanged ------------------------------

@pytest.mark.parametrize("case", VALID, ids=[case.name for case in VALID])
def test_constructor_accepts_every_parsed_header(impl: ModuleType, case: Any) -> None:
    parsed = impl.parse(case.data)
    rebuilt = ProxyHeader(*parsed)
    assert rebuilt == parsed and type(rebuilt) is ProxyHeader
    assert [type(a) for a in rebuilt] == [type(a) for a in parsed]
    assert ProxyHeader._make(parsed) == parsed
    assert pickle.loads(pickle.dumps(parsed)) == parsed


@settings(max_examples=200, deadline=None)
@given(header=pps.headers())
def test_constructor_accepts_generated_headers(header: ProxyHeader) -> None:
    assert ProxyHeader(*header) == header
    assert ProxyHeader(*header).to_bytes() == header.to_bytes()


def test_constructor_normalises_and_computes_length(impl: ModuleType) -> None:
    header = ProxyHeader(2, 1, socket.AF_INET6, 1, ("::FFFF:192.0.2.1", 80), ("2001:DB8::1", 443),
                         [(0x02, b"example.com")])
    assert header.command is Command.PROXY and header.family is INET6
    assert header.transport is STREAM
    assert header.source == ("::ffff:192.0.2.1", 80)
    assert header.destination == ("2001:db8::1", 443)
    assert header.tlvs == (TLV(0x02, b"example.com"),) and type(header.tlvs[0]) is TLV
    named = ProxyHeader(2, 1, INET, STREAM, A4, B4, [(TLVType.AUTHORITY, b"a")])
    assert type(named.tlvs[0].type) is int  # stored as parse stores it
    assert header.length == len(header.to_bytes())
    assert impl.parse(header.to_bytes()) == header
    v1 = ProxyHeader(1, Command.PROXY, INET, STREAM, ("192.0.2.1", 1), ("192.0.2.2", 2))
    assert impl.parse(v1.to_bytes()) == v1
    unknown = ProxyHeader(1, Command.PROXY, UNSPEC, None, None, None)
    assert impl.parse(unknown.to_bytes()) == unknown
    local = ProxyHeader(2, Command.LOCAL, UNSPEC, None, None, None)
    assert impl.parse(local.to_bytes()) == local
    abstract = ProxyHeader(2, 1, UNIX, DGRAM, b"\x00name", b"/run/x.sock")
    assert impl.parse(abstract.to_bytes()) == abstract
    # A non-abstract bytes path is what parse gives as str.
    assert ProxyHeader(2, 1, UNIX, STREAM, b"/a", "/b").source == "/a"


def test_local_header_keeps_the_family_byte_and_its_block_in_length(impl: ModuleType) -> None:
    # LOCAL over AF_INET as HAProxy's health checks may send it: 12 address bytes, ignored.
    wire = b"\r\n\r\n\x00\r\nQUIT\n\x20\x11\x00\x0c" + bytes(12)
    parsed = impl.parse(wire)
    assert ProxyHeader(*parsed) == parsed
    assert ProxyHeader(2, Command.LOCAL, INET, STREAM, None, None).length == 28
    assert ProxyHeader(2, Command.LOCAL, INET, STREAM, None, None, (), 16).length == 16
    with pytest.raises(ValueError, match=r"length 29 does not fit its fields: 16\.\.28"):
        ProxyHeader(2, Command.LOCAL, INET, STREAM, None, None, (), 29)
    with pytest.raises(ValueError, match="length 16 does not fit its fields: 34 expected"):
        ProxyHeader(2, Command.LOCAL, INET, STREAM, None, None, [(4, b"123")], 16)


A4, B4 = ("192.0.2.1", 1), ("192.0.2.2", 2)

BAD: list[tuple[tuple[Any, ...], type[Exception], str]] = [
    ((7, 1, INET, STREAM, A4, B4), ValueError, "version 7 is neither 1 nor 2"),
    (("2", 1, INET, STREAM, A4, B4), TypeError, "version must be an int, not str"),
    ((True, 1, INET, STREAM, A4, B4), TypeError, "version must be an int, not bool"),
    ((2, 7, INET, STREAM, A4, B4), ValueError, "command 7 is not LOCAL"),
    ((2, 1.0, INET, STREAM, A4, B4), TypeError, "command must be an int, not float"),
    ((2, 1, 99, STREAM, A4, B4), ValueError, "family 99 is not AF_INET"),
    ((2, 1, INET, socket.SOCK_RAW, A4, B4), ValueError, "transport .* is not SOCK_STREAM"),
    ((2, 1, INET, None, A4, B4), ValueError, "None exactly when the family is AF_UNSPEC"),
    ((2, 1, UNSPEC, STREAM, None, None), ValueError, "None exactly when"),
    ((2, 1, INET, STREAM, None, B4), TypeError, "source must be a \\(host, port\\) tuple"),
    ((2, 1, INET, STREAM, ["192.0.2.1", 1], B4), TypeError, "source must be a"),
    ((2, 1, INET, STREAM, ("::1", 1), B4), ValueError, "source host '::1' is not an AF_INET"),
    ((2, 1, INET6, STREAM, ("::1", 1), B4), ValueError, "destination host '192.0.2.2' is not"),
    ((2, 1, INET, STREAM, A4, ("192.0.2.2", 70000)), ValueError, "port 70000 is outside"),
    ((2, 1, INET, STREAM, A4, ("192.0.2.2", "2")), TypeError, "port must be an int, not str"),
    ((2, 1, INET, STREAM, (b"192.0.2.1", 1), B4), TypeError, "host must be a str, not bytes"),
    ((2, 1, UNIX, STREAM, 5, "/b"), TypeError, "source must be a str or bytes path"),
    ((2, 1, UNIX, STREAM, "/a\x00b", "/b"), ValueError, "holds a NUL byte"),
    ((2, 1, UNIX, STREAM, "/" + "a" * 108, "/b"), ValueError, "at most 108"),
    ((2, 0, INET, STREAM, A4, B4), ValueError, "must be None for a LOCAL"),
    ((2, 1, UNSPEC, None, A4, B4), ValueError, "must be None for a LOCAL or AF_UNSPEC"),
    ((1, 0, INET, STREAM, None, None), ValueError, "v1 ProxyHeader is PROXY"),
    ((1, 1, UNIX, STREAM, "/a", "/b"), ValueError, "v1 ProxyHeader is PROXY"),
    ((1, 1, INET, DGRAM, A4, B4), ValueError, "v1 ProxyHeader's transport is SOCK_STREAM"),
    ((1, 1, INET, STREAM, A4, B4, [(4, b"")]), ValueError, "with no TLVs"),
    ((2, 1, INET, STREAM, A4, B4, [(4, "x")]), TypeError, "TLV value must be bytes, not str"),
    ((2, 1, INET, STREAM, A4, B4, [(4, bytearray())]), TypeError, "must be bytes, not bytearray"),
    ((2, 1, INET, STREAM, A4, B4, [("4", b"")]), TypeError, "TLV type must be an int"),
    ((2, 1, INET, STREAM, A4, B4, [(300, b"")]), ValueError, "TLV type 300 is outside 0..255"),
    ((2, 1, INET, STREAM, A4, B4, [(4,)]), TypeError, "must be a \\(type, value\\) pair"),
    ((2, 1, INET, STREAM, A4, B4, 5), TypeError, "tlvs must be an iterable"),
    ((2, 1, INET, STREAM, A4, B4, b"\x04\x00\x00"), TypeError, "tlvs must be .* pairs"),
    ((2, 1, INET, STREAM, A4, B4, [(2, b"\xff")]), ValueError, "AUTHORITY TLV value is not"),
    ((2, 1, INET, STREAM, A4, B4, [(0x20, b"\x01")]), ValueError, "SSL TLV value is 1 bytes"),
    ((2, 1, INET, STREAM, A4, B4, [(5, bytes(129))]), ValueError, "cannot be encoded"),
    ((2, 1, INET, STREAM, A4, B4, [(3, bytes(4)), (3, bytes(4))]), ValueError, "one CRC32C"),
    ((2, 1, INET, STREAM, A4, B4, [(3, bytes(3))]), ValueError, "CRC32C TLV is 3 bytes"),
    ((2, 1, INET, STREAM, A4, B4, [(4, bytes(0xFFFF))]), ValueError, "at most 65535"),
    ((2, 1, INET, STREAM, A4, B4, (), 29), ValueError, "length 29 does not fit .*: 28 expected"),
    ((2, 1, INET, STREAM, A4, B4, (), "28"), TypeError, "length must be an int, not str"),
    ((1, 1, INET, STREAM, A4, B4, (), 50), ValueError, "length 50 does not fit"),
    ((1, 1, UNSPEC, None, None, None, (), 108), ValueError, "15..107 expected"),
]


@pytest.mark.parametrize(("fields", "error", "message"), BAD,
                         ids=[message for _, _, message in BAD])
def test_constructor_refuses_what_parse_cannot_return(
        fields: tuple[Any, ...], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ProxyHeader(*fields)
    # The same fields forced into the tuple: to_bytes() refuses them the same way.
    forged = tuple.__new__(ProxyHeader, (*fields, *((), None)[len(fields) - 6:]))
    with pytest.raises(error, match=message):
        forged.to_bytes()


def test_make_and_replace_check_too(impl: ModuleType) -> None:
    header = impl.parse(V1_LINE)
    with pytest.raises(ValueError, match="version 7"):
        header._replace(version=7)
    with pytest.raises(ValueError, match="version 7"):
        ProxyHeader._make((7, *header[1:]))
    moved = header._replace(source=("192.0.2.100", 51000))  # length follows the new fields
    assert moved.length == len(V1_LINE) + 2 == len(moved.to_bytes())
    assert impl.parse(moved.to_bytes()) == moved


def test_header_is_immutable(impl: ModuleType) -> None:
    header = v2_with_ssl(impl)
    assert header.ssl is not None
    with pytest.raises(AttributeError):
        header.version = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        header.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(header, "__dict__")  # the eight fields, nothing beside them


# -- the SSL TLV: decoded once, cached by value outside the header -----------------------

@pytest.fixture
def empty_ssl_cache(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, SSLInfo]:
    cache: dict[bytes, SSLInfo] = {}
    monkeypatch.setattr(_header, "_SSL_CACHE", cache)
    return cache


def test_ssl_is_decoded_once(impl: ModuleType, monkeypatch: pytest.MonkeyPatch,
                             empty_ssl_cache: dict[bytes, SSLInfo]) -> None:
    calls: list[bytes] = []
    real = _header._ssl_decoder()

    def counting(value: bytes) -> SSLInfo:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(_header, "_decode_ssl", counting)
    header = v2_with_ssl(impl)
    first = header.ssl
    assert first is not None and first.version == "TLSv1.3" and first.cn == "caf"
    assert header.ssl is first and header.ssl is first
    assert v2_with_ssl(impl).ssl is first  # another connection, the same TLS parameters
    assert calls == [SSL_VALUE]
    no_ssl = impl.parse(V1_LINE)
    assert no_ssl.ssl is None and no_ssl.ssl is None
    assert calls == [SSL_VALUE]


def test_ssl_cache_is_bounded(impl: ModuleType, empty_ssl_cache: dict[bytes, SSLInfo]) -> None:
    for number in range(_header._SSL_CACHE_ENTRIES + 50):
        value = b"\x01" + number.to_bytes(4, "big")
        info = impl.parse(impl.encode_v2(A4, B4, tlvs=[(0x20, value)])).ssl
        assert info is not None and info.verify == number
        assert len(empty_ssl_cache) <= _header._SSL_CACHE_ENTRIES
    big = b"\x01\x00\x00\x00\x00" + b"\x28" + (5000).to_bytes(2, "big") + bytes(5000)
    header = impl.parse(impl.encode_v2(A4, B4, tlvs=[(0x20, big)]))
    assert header.ssl is not None and header.ssl.client_cert == bytes(5000)
    assert big not in empty_ssl_cache


def test_ssl_uses_the_selected_implementations_decoder(
        monkeypatch: pytest.MonkeyPatch, impl: ModuleType,
        empty_ssl_cache: dict[bytes, SSLInfo]) -> None:
    seen: list[bytes] = []

    def compiled(value: bytes) -> SSLInfo:
        seen.append(value)
        return _header.decode_ssl(value)

    monkeypatch.setattr(_impl, "decode_ssl", compiled)
    monkeypatch.setattr(_header, "_decode_ssl", None)
    assert v2_with_ssl(impl).ssl == _header.decode_ssl(SSL_VALUE)
    assert seen == [SSL_VALUE]
    monkeypatch.undo()
    monkeypatch.setattr(_header, "_decode_ssl", None)
    assert _header._ssl_decoder() is _impl.decode_ssl


def test_cache_changes_no_tuple_behaviour(impl: ModuleType) -> None:
    header = v2_with_ssl(impl)
    fields = tuple(header)
    digest = hash(header)
    pickles = [pickle.dumps(header, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    assert header.ssl is not None
    assert len(header) == 8 and tuple(header) == fields and hash(header) == digest
    assert header == impl.parse(header.to_bytes()) and header == ProxyHeader(*header)
    assert header != fields and fields != header  # == only with other ProxyHeaders
    assert [pickle.dumps(header, p) for p in range(pickle.HIGHEST_PROTOCOL + 1)] == pickles
    for data in pickles:
        again = pickle.loads(data)
        assert again == header and type(again) is ProxyHeader and again.ssl == header.ssl
    assert copy.copy(header) == header and copy.deepcopy(header) == header


def test_pickle_bytes_as_before(impl: ModuleType) -> None:
    """A parsed header pickles as its bare 8-field tuple (no cache or other state rides
    along), and a pickle made before the validating constructor still loads. (The exact
    bytes depend on the interpreter: CPython 3.11 patch releases pickle enums differently.)"""
    header = impl.parse(V1_LINE)
    bare = tuple.__new__(ProxyHeader, tuple(header))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.dumps(header, protocol) == pickle.dumps(bare, protocol)
    assert pickle.loads(V1_PICKLE_4) == header


FIRST = [(0x01, b"h2"), (0x02, b"a.example"), (0x05, b"id"), (0x30, b"ns"),
         (0x20, SSL_VALUE), (0xEA, b"\x01vpce-1"), (0xEE, b"\x01\x01\x00\x00\x00"),
         (0xE0, bytes(range(8)))]
SECOND = [(0x01, b"h3"), (0x02, b"b.example"), (0x05, b"id2"), (0x30, b"ns2"),
          (0x20, b"\x01\x00\x00\x00\x00"), (0xEA, b"\x01vpce-2"),
          (0xEE, b"\x01\x02\x00\x00\x00"), (0xE0, bytes(8))]


@pytest.mark.parametrize("name", ["alpn", "authority", "unique_id", "netns", "ssl",
                                  "aws_vpce_id", "azure_link_id", "gcp_psc_id"])
def test_accessors_take_the_first_tlv_of_their_type(impl: ModuleType, name: str) -> None:
    one = impl.parse(impl.encode_v2(A4, B4, tlvs=FIRST))
    two = impl.parse(impl.encode_v2(A4, B4, tlvs=FIRST + SECOND))
    assert getattr(one, name) is not None
    assert getattr(one, name) == getattr(two, name)
    assert getattr(impl.parse(impl.encode_v2(A4, B4, tlvs=SECOND)), name) != getattr(one, name)


def test_api_page_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The "Building a header" example of docs/api.rst runs as written."""
    code = [block.code for block in blocks([ROOT / "docs" / "api.rst"])]
    assert code, "docs/api.rst lost its example"
    exec(compile("\n".join(code), "docs/api.rst", "exec"), {})
    assert capsys.readouterr().out == "ProxyHeader version 7 is neither 1 nor 2\n"


@pytest.mark.parametrize("line", [
    b"PROXY TCP6 ::ffff:11 ::ffff:198.51.100.2 1 2\r\n",  # found by fuzz_parse: shorter
    b"PROXY TCP6 0:0:0:0:0:0:0:1 0000:0000::0001 51000 443\r\n",  # longer than canonical
    b"PROXY TCP6 2001:DB8::A ::1 1 2\r\n",
    b"PROXY UNKNOWN anything at all\r\n",
])
def test_non_canonical_v1_lines_rebuild_and_encode(impl: ModuleType, line: bytes) -> None:
    """A parsed header is always a valid ProxyHeader, whatever spelling its line used: the
    v1 length checks allow every IPv6 spelling (shorter or longer than the canonical)."""
    header = impl.parse(line)
    assert header.length == len(line)
    assert ProxyHeader(*header) == header
    assert impl.parse(header.to_bytes()) == header._replace(length=len(header.to_bytes()))
