"""A mutable buffer that changes while it is parsed (issue 9, critical).

``parse`` of a ``bytearray`` or ``memoryview`` must give the parse of one state of the
buffer (or a library error), never bytes from outside it, never a crash, and never a
checksum verdict about other bytes than those it returns. The buffer is changed from a gc
callback (deterministic: the parser's own allocations run the collector) and from a second
process over shared memory (no trigger at all).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from multiprocessing import shared_memory
from types import ModuleType
from typing import Callable

import pytest

from proxyproto import ProxyProtocolError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _v2(block: bytes, tlvs: bytes, family: int = 0x11) -> bytes:
    body = block + tlvs
    return V2_SIGNATURE + bytes((0x21, family)) + len(body).to_bytes(2, "big") + body


def _inet4_block() -> bytes:
    return bytes((192, 0, 2, 1, 198, 51, 100, 2)) + (1234).to_bytes(2, "big") + b"\x01\xbb"


def _many_tlvs(count: int) -> bytes:
    return b"".join(bytes((0xE0, 0, 1, i & 0xFF)) for i in range(count))


def _tlv_length_offsets(header: bytes, block: int) -> list[int]:
    """Offsets of the high byte of each TLV length in a v2 header."""
    offsets, pos = [], 16 + block
    while pos < len(header):
        offsets.append(pos + 1)
        pos += 3 + int.from_bytes(header[pos + 1 : pos + 3], "big")
    return offsets


@pytest.fixture
def gc_rewrite() -> Iterator[Callable[[Callable[[], None]], list[int]]]:
    """Install a gc callback that runs ``action`` once, at the first collection."""
    thresholds = gc.get_threshold()
    installed: list[Callable[[str, dict[str, int]], None]] = []

    def install(action: Callable[[], None]) -> list[int]:
        fired: list[int] = []

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start" and not fired:
                fired.append(1)
                action()

        gc.collect()  # start from empty generations so the threshold counts our objects
        gc.callbacks.append(callback)
        installed.append(callback)
        gc.set_threshold(1, 1, 1)
        return fired

    yield install
    gc.set_threshold(*thresholds)
    for callback in installed:
        gc.callbacks.remove(callback)


def _parse_or_error(impl: ModuleType, data: object) -> object:
    try:
        return impl.parse(data)
    except ProxyProtocolError as exc:
        return exc


def _assert_one_state(result: object, impl: ModuleType, *states: bytes) -> None:
    """``result`` is a library error or the parse of one of ``states``."""
    if isinstance(result, ProxyProtocolError):
        return
    expected = [_parse_or_error(impl, state) for state in states]
    assert result in [e for e in expected if not isinstance(e, ProxyProtocolError)], (
        result, expected)


@pytest.mark.parametrize("wrap", [bytearray, lambda b: memoryview(bytearray(b))],
                         ids=["bytearray", "memoryview"])
def test_tlv_lengths_rewritten_by_gc_callback(impl: ModuleType, gc_rewrite, wrap) -> None:
    """Every TLV length becomes 0xFFFF at the first collection: no heap bytes come back."""
    original = _v2(_inet4_block(), _many_tlvs(300))
    data = wrap(original)
    buf = data if isinstance(data, bytearray) else data.obj
    offsets = _tlv_length_offsets(original, 12)

    def rewrite() -> None:
        for offset in offsets:
            buf[offset] = 0xFF
            buf[offset + 1] = 0xFF

    fired = gc_rewrite(rewrite)
    result = _parse_or_error(impl, data)
    gc.set_threshold(700, 10, 10)
    assert fired, "the collector did not run during the parse"
    _assert_one_state(result, impl, original, bytes(buf))
    if not isinstance(result, ProxyProtocolError):
        for tlv in result.tlvs:
            assert len(tlv.value) <= len(original)


def test_crc32c_covers_the_returned_address(impl: ModuleType, gc_rewrite) -> None:
    """A source address rewritten after the checksum was verified is never returned."""
    original = impl.encode_v2(("192.0.2.1", 1234), ("198.51.100.2", 443),
                              tlvs=[(0xE0, b"x")] * 50, crc32c=True)
    data = bytearray(original)

    def rewrite() -> None:
        data[16:20] = bytes((6, 6, 6, 6))

    fired = gc_rewrite(rewrite)
    result = _parse_or_error(impl, data)
    gc.set_threshold(700, 10, 10)
    assert fired, "the collector did not run during the parse"
    if not isinstance(result, ProxyProtocolError):
        assert result.source == ("192.0.2.1", 1234)
        assert result == impl.parse(original)


def test_v1_line_rewritten_by_gc_callback(impl: ModuleType, gc_rewrite) -> None:
    """A v1 line whose address changes mid-parse gives one state of it."""
    original = b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\nGET / HTTP/1.1\r\n"
    data = bytearray(original)
    changed = original.replace(b"2001:db8::1 ", b"2001:db8::7 ")

    def rewrite() -> None:
        data[:] = changed

    fired = gc_rewrite(rewrite)
    result = _parse_or_error(impl, data)
    gc.set_threshold(700, 10, 10)
    assert fired, "the collector did not run during the parse"
    _assert_one_state(result, impl, original, changed)


def test_bytes_subclass_never_copied_through_dunder_bytes(impl: ModuleType) -> None:
    """Issue 9 item 7: the buffer protocol (the real bytes), never ``__bytes__``."""

    class Sneaky(bytes):
        def __bytes__(self) -> bytes:
            return b"PROXY TCP4 6.6.6.6 6.6.6.6 1 1\r\n"

    real = b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n"
    assert impl.parse(Sneaky(real)).source == ("192.0.2.1", 1234)
    # Paths that defer to the reference (a partial line, an invalid one) read it too.
    assert impl.parse_or_needed(Sneaky(real[:20])) == impl.parse_or_needed(real[:20])
    with pytest.raises(ProxyProtocolError) as caught:
        impl.parse(Sneaky(real.replace(b"1234", b"01234")))
    assert "'01234'" in str(caught.value)
    assert impl.crc32c(Sneaky(b"123456789")) == 0xE3069283
    tlv_value = Sneaky(b"abc")
    encoded = impl.encode_v2(None, None, tlvs=[(0xE0, tlv_value)])
    assert encoded.endswith(b"\xe0\x00\x03abc")


def _outcome(impl: ModuleType, function: str, data: object) -> object:
    try:
        return getattr(impl, function)(data, max_size=2000)
    except ProxyProtocolError as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize("tlvs", [1, 100, 400], ids=["small", "stack", "heap"])
def test_copy_gives_the_same_answers(impl: ModuleType, tlvs: int) -> None:
    """The private copy (on the C stack, or in a bytes object past 1 KiB) answers exactly as
    the bytes do: valid, partial, invalid (deferred to the reference), too large."""
    header = _v2(_inet4_block(), _many_tlvs(tlvs))
    bad = bytearray(header)
    bad[-4] = 0xFF  # the last TLV runs past the end: the reference's message and offset
    samples = [header, header + b"trailing", header[:-1], header[:20], bytes(bad),
               header[:14] + b"\xff\xff" + header[16:],
               b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n", b"PROXY TCP4 192.0.2.1 ",
               b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n", b"P" * 200, b"", b"\r\n"]
    for sample in samples:
        for function in ("parse", "parse_or_needed"):
            expected = _outcome(impl, function, sample)
            assert _outcome(impl, function, bytearray(sample)) == expected
            assert _outcome(impl, function, memoryview(b"x" + sample)[1:]) == expected


# ---------------------------------------------------------------------------------------
# A second process writing shared memory: no trigger, any byte at any time.

_FLIPPER = textwrap.dedent(
    """
    import sys, time
    from multiprocessing import resource_tracker, shared_memory
    shm = shared_memory.SharedMemory(name=sys.argv[1])
    resource_tracker.unregister(shm._name, "shared_memory")
    offsets = [int(x) for x in sys.argv[2].split(",")]
    buf = shm.buf
    print("ready", flush=True)
    deadline = time.monotonic() + float(sys.argv[3])
    flips = 0
    while time.monotonic() < deadline:
        for _ in range(50):
            for o in offsets:
                buf[o] ^= 0xFF
            flips += 1
    del buf
    shm.close()
    print(flips, flush=True)
    """
)

_PARSER = textwrap.dedent(
    """
    import importlib, sys, time
    from multiprocessing import resource_tracker, shared_memory
    from proxyproto import ProxyHeader, ProxyProtocolError
    impl = importlib.import_module(sys.argv[1])
    shm = shared_memory.SharedMemory(name=sys.argv[2])
    resource_tracker.unregister(shm._name, "shared_memory")
    start, stop = int(sys.argv[3]), int(sys.argv[4])
    view = shm.buf[start:stop]
    deadline = time.monotonic() + float(sys.argv[5])
    parsed = errors = 0
    while time.monotonic() < deadline and parsed + errors < 2_000_000:
        try:
            header = impl.parse(view)
        except ProxyProtocolError:
            errors += 1
            continue
        assert type(header) is ProxyHeader
        assert header.length <= stop - start, header.length
        body = sum(3 + len(t.value) for t in header.tlvs)
        assert 16 + 12 + body == header.length, (body, header.length)
        parsed += 1
    view.release()
    shm.close()
    print(parsed, errors, flush=True)
    """
)


def test_shared_memory_rewritten_by_another_process(impl: ModuleType) -> None:
    """A memoryview over shared memory whose TLV lengths another process flips."""
    header = _v2(_inet4_block(), _many_tlvs(200))
    page = 4096
    shm = shared_memory.SharedMemory(create=True, size=page)
    try:
        start = page - len(header)  # the header ends where the mapping ends
        shm.buf[start:page] = header
        offsets = ",".join(str(start + o) for o in _tlv_length_offsets(header, 12))
        env = dict(os.environ)
        flipper = subprocess.Popen(
            [sys.executable, "-c", _FLIPPER, shm.name, offsets, "1.5"],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        try:
            assert flipper.stdout is not None
            assert flipper.stdout.readline().strip() == "ready"
            parser = subprocess.run(
                [sys.executable, "-c", _PARSER, impl.__name__, shm.name, str(start),
                 str(page), "1.2"],
                capture_output=True, text=True, env=env, timeout=120,
            )
            flips = flipper.stdout.read().strip()
        finally:
            flipper.wait(timeout=60)
            if flipper.stdout is not None:
                flipper.stdout.close()
        assert parser.returncode == 0, (parser.returncode, parser.stderr[-3000:])
        parsed, errors = map(int, parser.stdout.split())
        assert parsed + errors > 0
        assert int(flips) > 0
    finally:
        shm.close()
        shm.unlink()
