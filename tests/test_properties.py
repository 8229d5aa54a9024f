"""Property tests (Hypothesis).

- ``parse(encode_v2(...))`` and ``parse(encode_v1(...))`` give back what was encoded, for
  every family, transport and TLV mix, with the expected value computed independently;
- ``parse`` on arbitrary bytes raises nothing but ``ProxyProtocolError``, and its answers
  on the prefixes of any input are consistent (``needed`` is a sound lower bound, a
  refusal is final, a header stays the same header);
- feeding any split of a header to ``HeaderReader`` gives what ``parse`` gives.

Inputs come from the public ``proxyproto.strategies`` where they fit; expected values do
not. ``PROXYPROTO_MAX_EXAMPLES`` scales the example counts (default 100).
"""

from __future__ import annotations

import os
import socket
from types import ModuleType
from typing import Optional, Union

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import (
    SIG,
    VALID,
    check_valid,
    crc32c_reference,
    header,
    reader_using,
)
from proxyproto import (
    Command,
    HeaderReader,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    ProxyHeader,
    ProxyProtocolError,
)
from proxyproto import strategies as pps

EXAMPLES = int(os.environ.get("PROXYPROTO_MAX_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=EXAMPLES * 2, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

Endpoint = Union[tuple[str, int], str, bytes, None]


def unix_paths() -> st.SearchStrategy[Union[str, bytes]]:
    """Wider than ``pps.unix_paths``: any UTF-8 text path (empty included) up to 108
    bytes, and abstract names."""
    text = st.text(st.characters(exclude_characters="\x00",
                                 exclude_categories=["Cs"]), max_size=108)
    return st.one_of(text.filter(lambda s: len(s.encode("utf-8")) <= 108), pps.unix_paths())


def endpoint_pairs() -> st.SearchStrategy[tuple[Endpoint, Endpoint]]:
    """Every kind of (source, destination) pair the encoders accept."""
    return st.one_of(pps.addresses(), st.tuples(unix_paths(), unix_paths()))


def canonical(host: str, family: socket.AddressFamily) -> str:
    """``host`` as inet_ntop writes it in ``family`` (IPv4 mapped into IPv6 if needed)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host))
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host)
    else:
        packed = b"\x00" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, host)
    return socket.inet_ntop(socket.AF_INET6, packed)


def expected_v2(data: bytes, source: Endpoint, destination: Endpoint,
                transport: socket.SocketKind, tlvs: list[tuple[int, bytes]],
                crc: bool) -> ProxyHeader:
    """What ``parse`` must give for ``encode_v2(source, destination, ...)``, worked out
    from the arguments (only the CRC value is read back, and checked)."""
    items = [(t, bytes(v)) for t, v in tlvs]
    if crc:
        assert data[-7:-4] == b"\x03\x00\x04"
        assert data[-4:] == crc32c_reference(data[:-4] + bytes(4)).to_bytes(4, "big")
        items.append((0x03, data[-4:]))
    if source is None:
        return header(data, command=Command.LOCAL, family=socket.AF_UNSPEC, transport=None,
                      tlvs=items)
    if isinstance(source, (str, bytes)):
        return header(data, family=socket.AF_UNIX, transport=transport, source=source,
                      destination=destination, tlvs=items)
    assert isinstance(destination, tuple)
    both_v4 = ":" not in source[0] and ":" not in destination[0]
    family = socket.AF_INET if both_v4 else socket.AF_INET6
    return header(data, family=family, transport=transport,
                  source=(canonical(source[0], family), source[1]),
                  destination=(canonical(destination[0], family), destination[1]),
                  tlvs=items)


@PROPERTY
@given(pair=endpoint_pairs(), dgram=st.booleans(), tlvs=pps.tlvs(), crc=st.booleans())
def test_v2_round_trip_every_family_transport_and_tlv_mix(
    impl: ModuleType, pair: tuple[Endpoint, Endpoint], dgram: bool,
    tlvs: list[tuple[int, bytes]], crc: bool,
) -> None:
    transport = socket.SOCK_DGRAM if dgram else socket.SOCK_STREAM
    data = impl.encode_v2(pair[0], pair[1], transport=transport, tlvs=tlvs, crc32c=crc)
    expected = expected_v2(data, pair[0], pair[1], transport, tlvs, crc)
    check_valid(impl.parse, data, expected)  # whole, byte by byte, with trailing data


@PROPERTY
@given(source=pps.inet_addresses(), destination=pps.inet_addresses())
def test_v1_round_trip(impl: ModuleType, source: tuple[str, int],
                       destination: tuple[str, int]) -> None:
    data = impl.encode_v1(source, destination)
    both_v4 = ":" not in source[0] and ":" not in destination[0]
    family = socket.AF_INET if both_v4 else socket.AF_INET6
    expected = header(data, version=1, family=family,
                      source=(canonical(source[0], family), source[1]),
                      destination=(canonical(destination[0], family), destination[1]))
    check_valid(impl.parse, data, expected)
    assert len(data) <= 104


@st.composite
def damaged_corpus(draw: st.DrawFn) -> bytes:
    """A corpus header (real senders' bytes among them) with a few bytes overwritten, and
    perhaps cut short or extended."""
    wire = bytearray(draw(st.sampled_from(SMALL_CORPUS)))
    for _ in range(draw(st.integers(0, 3))):
        wire[draw(st.integers(0, len(wire) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        return bytes(wire[: draw(st.integers(0, len(wire) - 1))])
    return bytes(wire) + draw(st.binary(max_size=8))


SMALL_CORPUS = [case.data for case in VALID if len(case.data) < 400]


def arbitrary_inputs() -> st.SearchStrategy[bytes]:
    """Random bytes, random bytes behind each signature, and near-miss headers."""
    return st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=120).map(lambda b: b"PROXY " + b),
        st.sampled_from([b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN"]).flatmap(
            lambda head: st.text("0123456789abcdefABCDEF.: \r\n%+-", max_size=100).map(
                lambda tail: head + tail.encode())),
        st.binary(max_size=300).map(lambda b: SIG + b),
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=260)).map(
            lambda t: SIG + bytes((t[0], t[1])) + len(t[2]).to_bytes(2, "big") + t[2]),
        damaged_corpus(),
    )


@FUZZ
@given(data=st.one_of(arbitrary_inputs(), pps.mutated_headers()))
def test_parse_raises_only_library_errors(impl: ModuleType, data: bytes) -> None:
    try:
        result = impl.parse(data)
    except IncompleteHeader as exc:
        assert exc.needed >= 1
    except (NoProxyHeader, InvalidHeader):
        pass
    else:
        assert 15 <= result.length <= len(data)
        assert impl.parse(data[: result.length]) == result  # self-delimiting


@PROPERTY
@given(data=arbitrary_inputs())
def test_prefix_answers_are_consistent(impl: ModuleType, data: bytes) -> None:
    """Over the prefixes of any input: a refusal is final and keeps its category; once a
    header parses, every longer prefix gives the same header; and ``needed`` never
    promises completion sooner than it comes."""
    refused: Optional[type[ProxyProtocolError]] = None
    parsed: Optional[ProxyHeader] = None
    earliest_completion = 0
    for cut in range(len(data) + 1):
        try:
            result = impl.parse(data[:cut])
        except IncompleteHeader as exc:
            assert refused is None and parsed is None
            earliest_completion = max(earliest_completion, cut + exc.needed)
        except NoProxyHeader:
            assert parsed is None and refused in (None, NoProxyHeader)
            refused = NoProxyHeader
        except InvalidHeader:
            assert parsed is None and refused in (None, InvalidHeader)
            refused = InvalidHeader
        else:
            assert refused is None
            if parsed is None:
                assert cut >= earliest_completion  # needed was a lower bound
                assert result.length == cut
                parsed = result
            else:
                assert result == parsed


@PROPERTY
@given(wire=pps.header_bytes(), payload=pps.payloads(), data=st.data())
def test_reader_any_split_gives_the_parse_result(impl: ModuleType, wire: bytes,
                                                 payload: bytes, data: st.DataObject) -> None:
    stream = wire + payload
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    expected = impl.parse(stream)
    with reader_using(impl.parse):
        reader = HeaderReader(max_size=65551)
        after = b""
        for chunk in chunks:
            if reader.done:
                after += chunk
            else:
                reader.feed(chunk)
    assert reader.header == expected
    assert reader.trailing_data + after == payload == stream[expected.length :]


def category(exc: ProxyProtocolError) -> type[ProxyProtocolError]:
    """IncompleteHeader, NoProxyHeader or InvalidHeader (subclasses folded in)."""
    for kind in (IncompleteHeader, NoProxyHeader, InvalidHeader):
        if isinstance(exc, kind):
            return kind
    raise AssertionError(f"unexpected {exc!r}")


@PROPERTY
@given(data=arbitrary_inputs(), st_data=st.data())
def test_reader_any_split_refuses_like_parse(impl: ModuleType, data: bytes,
                                             st_data: st.DataObject) -> None:
    cuts = sorted(st_data.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    expected: Union[ProxyHeader, type[ProxyProtocolError]]
    try:
        expected = impl.parse(data, max_size=4096)
    except ProxyProtocolError as exc:
        expected = category(exc)
    outcome: Optional[type[ProxyProtocolError]] = None
    with reader_using(impl.parse):
        reader = HeaderReader()  # max_size 4096, like the parse above
        try:
            for chunk in chunks:
                if reader.done:
                    break
                reader.feed(chunk)
        except ProxyProtocolError as exc:
            outcome = category(exc)
    if isinstance(expected, ProxyHeader):
        assert outcome is None and reader.header == expected
    elif expected is IncompleteHeader:
        assert outcome is None and not reader.done and reader.needed >= 1
    else:
        assert outcome is expected
