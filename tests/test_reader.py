"""The incremental sans-IO reader, ``HeaderReader``: R-3, R-6/A-1, R-7, R-8, R-10, R-65,
A-10.

These rules are about I/O; the core shows what it can (the reader never asks for a byte
past the header, never releases data early, caps before buffering). The adapters' tests
cover the sockets, the deadline and EOF: tests/test_aio*.py and tests/test_blocking*.py.
Every test routes the reader through the implementation under test (``impl``).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from cases import (
    SIG,
    TRAILERS,
    VALID,
    Valid,
    case_id,
    reader_using,
    tlv,
    v2,
)
from proxyproto import (
    MAX_V2_SIZE,
    HeaderReader,
    HeaderTooLarge,
    InvalidHeader,
    NoProxyHeader,
    ProxyProtocolError,
)
from proxyproto.policy import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT


@pytest.fixture
def routed(impl: ModuleType) -> Iterator[ModuleType]:
    """``HeaderReader`` calls ``impl.parse`` for the duration of the test."""
    with reader_using(impl.parse):
        yield impl


def read_like_a_socket(stream: bytes, *, max_size: int = MAX_V2_SIZE) -> tuple[HeaderReader,
                                                                                  int]:
    """Feed ``stream`` the way a careful socket reader does: at most ``needed`` bytes at a
    time. Returns the reader and how many bytes were taken from the stream."""
    reader = HeaderReader(max_size=max_size)
    taken = 0
    while not reader.done:
        chunk = stream[taken : taken + reader.needed]
        assert chunk, "the stream ended before the header did"
        taken += len(chunk)
        reader.feed(chunk)
    return reader, taken


@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_reader_every_valid_case_in_two_chunks(routed: ModuleType, case: Valid) -> None:
    data = case.data + TRAILERS[0]
    cuts = range(len(data)) if len(case.data) < 400 else (0, 1, 16, 17, len(case.data) - 1)
    for cut in cuts:
        reader = HeaderReader(max_size=MAX_V2_SIZE)
        first = reader.feed(data[:cut])
        if first is None:
            result = reader.feed(data[cut:])
            assert reader.trailing_data == TRAILERS[0]
        else:  # the header was complete within the first chunk
            result = first
            assert reader.trailing_data == data[case.expected.length : cut]
        assert result == case.expected == reader.header


# [SPEC §2, §2.1] R-3: the header comes first, and the receiver takes exactly it. Reading
# ``needed`` bytes at a time never takes a byte past the header. On sockets:
# test_blocking.py::test_read_header_leaves_exactly_the_app_bytes_from_the_same_segment;
# the sender side: test_aio.py::test_open_connection_sends_the_header_first_in_one_write.
@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_r3_needed_never_reads_past_the_header(routed: ModuleType, case: Valid) -> None:
    for trailer in TRAILERS:
        reader, taken = read_like_a_socket(case.data + trailer)
        assert taken == len(case.data)
        assert reader.header == case.expected
        assert reader.trailing_data == b""


# [SPEC §2]: partial headers are tolerated: buffered across reads until
# complete, and refused as soon as a byte cannot match. On sockets, with EOF and the
# deadline: test_blocking.py::test_read_header_split_across_writes,
# ::test_read_header_eof_mid_header; test_hostile.py.
def test_r6_partial_headers_are_buffered(routed: ModuleType) -> None:
    data = v2(0x21, 0x11, bytes(12) + tlv(0x01, b"h2"))
    reader = HeaderReader()
    for index, byte in enumerate(data[:-1]):
        assert reader.feed(bytes((byte,))) is None
        assert reader.buffered == index + 1
        assert reader.pending == data[: index + 1]
    assert reader.feed(data[-1:]) is not None
    assert reader.buffered == 0 and reader.pending == b""


# early rejection while buffering: a wrong version at byte 13, len too small at 16.
def test_a1_early_rejection_while_buffering(routed: ModuleType) -> None:
    for data, refused_at in ((SIG + b"\x31\x11\x00\x0c", 13),
                             (SIG + b"\x21\x11\x00\x0b", 16),
                             (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 29),
                             (b"GET / HTTP/1.1\r\n", 1)):
        reader = HeaderReader()
        with pytest.raises(ProxyProtocolError):
            for index in range(len(data)):
                reader.feed(data[index : index + 1])
        assert reader.buffered == refused_at
        assert not reader.done and reader.header is None


# [SPEC §2] R-7: nothing reaches the application before the header is complete and valid
# (server-speaks-first: test_aio.py::test_server_speaks_first_waits_for_the_header).
def test_r7_nothing_released_before_complete(routed: ModuleType) -> None:
    data = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\nEHLO client\r\n"
    reader = HeaderReader()
    for index in range(len(data) - len(b"EHLO client\r\n")):
        if reader.feed(data[index : index + 1]) is None:
            assert reader.trailing_data == b"" and reader.header is None
    assert reader.done and reader.trailing_data == b""
    reader = HeaderReader()
    reader.feed(data[:10])
    assert reader.feed(data[10:]) is not None
    assert reader.trailing_data == b"EHLO client\r\n"
    # A header that turns out invalid releases nothing either.
    reader = HeaderReader()
    reader.feed(b"PROXY TCP4 1.2.3.4 ")
    with pytest.raises(InvalidHeader):
        reader.feed(b"5.6.7.08 1 2\r\nEHLO\r\n")
    assert reader.header is None and reader.trailing_data == b""


# [SPEC §2] R-8: a header deadline, if any, is at least 3 s (one TCP retransmit). The core
# has no clock; the default the adapters use is checked here, its enforcement in
# test_blocking.py::test_slow_loris_does_not_extend_the_deadline and
# test_hostile.py::test_read_header_slow_loris_hits_the_deadline.
def test_r8_default_timeout_at_least_3_seconds() -> None:
    assert isinstance(DEFAULT_TIMEOUT, float)
    assert DEFAULT_TIMEOUT >= 3.0


# [SPEC §2, §5] R-10: the receiver never guesses. The reader refuses bytes that are not a
# header; it never passes them on as application data. (Optional-header policies live in
# the policy layer and the adapters, decided from configuration, and
# test_blocking_server.py::test_matrix, test_aio_matrix.py.)
def test_r10_reader_never_guesses(routed: ModuleType) -> None:
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x10", b"SSH-2.0-x\r\n"):
        reader = HeaderReader()
        with pytest.raises(NoProxyHeader):
            reader.feed(data)
        assert reader.trailing_data == b"" and not reader.done
        assert reader.pending == data  # kept, so a USE policy can hand them over


# the cap is checked as soon as the length field is known, before the body
# is buffered; the reader's default is 4096; v1 is always 107. On sockets:
# test_hostile.py::test_read_header_oversize_v2_refused_from_the_fixed_part,
# ::test_read_header_endless_v1_line_buffers_at_most_107_bytes.
def test_r65_cap_checked_before_buffering(routed: ModuleType) -> None:
    assert DEFAULT_MAX_SIZE == 4096
    reader = HeaderReader()
    assert reader.max_size == 4096
    fixed = SIG + b"\x21\x11" + (4097 - 16).to_bytes(2, "big")
    with pytest.raises(HeaderTooLarge) as info:
        reader.feed(fixed)
    assert info.value.offset == 14 and reader.buffered == 16
    reader = HeaderReader()
    body = bytes(12) + tlv(0x04, bytes(4096 - 16 - 12 - 3))
    assert reader.feed(v2(0x21, 0x11, body)) is not None  # exactly 4096: accepted
    # The largest header is refused by default and at a byte-16 cost for an attacker.
    reader = HeaderReader()
    with pytest.raises(HeaderTooLarge):
        reader.feed(SIG + b"\x20\x00\xff\xff")
    # v1 stays capped at 107 whatever max_size says.
    reader = HeaderReader(max_size=MAX_V2_SIZE)
    with pytest.raises(HeaderTooLarge):
        reader.feed(b"PROXY UNKNOWN " + b"x" * 200)


# the v2 cap is configurable up to the spec's 65551 bytes; parse's default is the
# spec's maximum.
def test_a10_size_cap_is_configurable(routed: ModuleType) -> None:
    largest = v2(0x20, 0x00, tlv(0x04, bytes(65532)))
    assert routed.parse(largest).length == 65551
    assert HeaderReader(max_size=65551).feed(largest) is not None
    for max_size in (16, 100, 65550):
        with pytest.raises(HeaderTooLarge):
            routed.parse(largest, max_size=max_size)
        with pytest.raises(HeaderTooLarge):
            HeaderReader(max_size=max_size).feed(largest[:16])
    assert routed.parse(v2(0x20, 0x00), max_size=16).length == 16
    for bad, error in ((15, ValueError), (0, ValueError), (-1, ValueError),
                       (True, TypeError), (4096.0, TypeError), ("4096", TypeError)):
        with pytest.raises(error):
            HeaderReader(max_size=bad)  # type: ignore[arg-type]
        with pytest.raises(error):
            routed.parse(largest, max_size=bad)


def test_reader_state_after_the_header(routed: ModuleType) -> None:
    reader = HeaderReader()
    assert (reader.needed, reader.done, reader.header, reader.buffered) == (15, False, None, 0)
    assert reader.feed(b"") is None and reader.needed == 15
    result = reader.feed(bytearray(b"PROXY UNKNOWN\r\n") + b"data")
    assert result is not None and reader.needed == 0 and reader.trailing_data == b"data"
    with pytest.raises(RuntimeError):
        reader.feed(b"more")  # later bytes belong to the application
    assert reader.trailing_data == b"data"


def test_reader_accepts_bytes_like(routed: ModuleType) -> None:
    data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    for kind in (bytes, bytearray, memoryview):
        reader = HeaderReader()
        assert reader.feed(kind(data[:9])) is None
        assert reader.feed(kind(data[9:])) is not None
        assert type(reader.trailing_data) is bytes


def test_reader_needed_matches_parse(routed: ModuleType) -> None:
    data = b"PROXY TCP4 1.2."
    reader = HeaderReader()
    reader.feed(data)
    assert reader.needed == 17  # the exact minimum completion (decision)
    reader = HeaderReader()
    reader.feed(SIG + b"\x21\x21\x00\x24" + bytes(10))
    assert reader.needed == 26  # exact for v2 once the fixed part is in
