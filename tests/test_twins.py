"""The twin rules beyond parse/encode: ``decode_ssl`` in both implementations equals the
value module's decoder, and ``parse_or_needed`` answers a partial header without raising
(and catching) ``IncompleteHeader`` inside either implementation."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyproto import IncompleteHeader, InvalidHeader, _header, _impl


def _outcome(decode: Any, value: bytes) -> object:
    try:
        return decode(value)
    except InvalidHeader as exc:
        return (type(exc), str(exc))


def _sub(sub_type: int, value: bytes) -> bytes:
    return bytes((sub_type,)) + len(value).to_bytes(2, "big") + value


SSL_VALUE = (
    bytes((0x07,)) + (0).to_bytes(4, "big")
    + _sub(0x21, b"TLSv1.3") + _sub(0x22, "cn-é".encode()) + _sub(0x23, b"TLS_AES_128")
    + _sub(0x24, b"SHA256") + _sub(0x25, b"RSA2048") + _sub(0x26, b"X25519")
    + _sub(0x27, b"rsa_pss") + _sub(0x28, b"\x30\x82cert") + _sub(0x21, b"again")
    + _sub(0x99, b"vendor")
)

sub_tlvs = st.lists(
    st.tuples(st.sampled_from([0x21, 0x22, 0x23, 0x26, 0x27, 0x28, 0x30, 0xFF]),
              st.one_of(st.binary(max_size=12), st.text(max_size=6).map(str.encode))),
    max_size=6,
)


@st.composite
def ssl_values(draw: st.DrawFn) -> bytes:
    head = draw(st.binary(min_size=5, max_size=5))
    body = b"".join(_sub(t, v) for t, v in draw(sub_tlvs))
    value = head + body
    if draw(st.booleans()):  # sometimes a cut or a stray byte: the errors must agree too
        cut = draw(st.integers(0, len(value)))
        value = value[:cut] + draw(st.binary(max_size=2))
    return value


def test_decode_ssl_known_value(impl: ModuleType) -> None:
    info = impl.decode_ssl(SSL_VALUE)
    assert info == _header.decode_ssl(SSL_VALUE)
    assert (info.version, info.cn, info.sig_scheme) == ("TLSv1.3", "cn-é", "rsa_pss")
    assert info.client_cert == b"\x30\x82cert" and len(info.sub_tlvs) == 10
    assert type(info) is _header.SSLInfo and type(info.sub_tlvs[0]) is _header.TLV


@settings(max_examples=300, deadline=None)
@given(ssl_values())
def test_decode_ssl_equals_the_value_decoder(impl: ModuleType, value: bytes) -> None:
    assert _outcome(impl.decode_ssl, value) == _outcome(_header.decode_ssl, value)


def test_decode_ssl_selected_by_impl() -> None:
    assert _impl.decode_ssl(SSL_VALUE) == _header.decode_ssl(SSL_VALUE)


PARTIALS = [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n",
    b"PROXY UNKNOWN\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12),
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x2b" + bytes(36) + b"\x04\x00\x04abcd",
]


@pytest.mark.parametrize("whole", PARTIALS, ids=range(len(PARTIALS)))
def test_parse_or_needed_raises_nothing_inside(impl: ModuleType, whole: bytes,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No IncompleteHeader is even built for a partial header (cost: an exception)."""
    built: list[int] = []
    original = IncompleteHeader.__init__

    def spy(self: IncompleteHeader, needed: int) -> None:
        built.append(needed)
        original(self, needed)

    expected = []
    for cut in range(len(whole)):
        with pytest.raises(IncompleteHeader) as caught:
            impl.parse(whole[:cut])
        expected.append(caught.value.needed)
    monkeypatch.setattr(IncompleteHeader, "__init__", spy)
    got = [impl.parse_or_needed(whole[:cut]) for cut in range(len(whole))]
    got_mutable = [impl.parse_or_needed(bytearray(whole[:cut])) for cut in range(len(whole))]
    assert built == []
    assert got == expected == got_mutable
