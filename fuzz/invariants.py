"""The properties every fuzz input is checked against (shared by the harnesses and the tests).

Nothing here depends on atheris: the harnesses in this folder feed these functions with
coverage-guided inputs, ``tests/test_fuzz_smoke.py`` replays the committed corpus through
them, and a failing input can be replayed by hand with ``python3 fuzz/replay.py FILE``.

Every check raises :class:`AssertionError` (with the input's outcome in the message) when a
property is broken, and returns normally otherwise. The properties:

* ``parse`` raises nothing but the library's own errors (``ProxyProtocolError`` subclasses),
  whatever the bytes, and behaves the same for ``bytes``, ``bytearray`` and ``memoryview``.
* Every implementation gives the same outcome: an equal header, or the same exception class
  with the same message, ``needed`` and ``offset`` (the contract's "identical on every
  input, byte for byte and exception class for exception class").
* A parsed header of length ``L`` parses again from ``data[:L]``; every proper prefix of it
  is ``IncompleteHeader`` whose ``needed`` never overshoots (exact for v2 once the 16-byte
  fixed part is there).
* Re-encoding is canonical and stable: ``parse(h.to_bytes())`` keeps every field that
  survives canonical encoding (see :func:`canonical`), and encoding that again gives the
  same bytes (go-proxyproto's fuzz property); both implementations' encoders agree.
* :class:`proxyproto.HeaderReader`, fed the same bytes in arbitrary chunks, ends exactly
  where ``parse`` does: same header, same error, same ``needed``; it never buffers more
  than the size cap and hands back exactly the bytes that followed the header.
* Encoders given arbitrary arguments raise only ``ValueError``/``TypeError`` or produce a
  header that parses back to the canonical form of what was given.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import random
import socket
import zlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, NamedTuple, Optional, Union

import proxyproto
from proxyproto import (
    Command,
    HeaderReader,
    HeaderTooLarge,
    IncompleteHeader,
    ProxyHeader,
    ProxyProtocolError,
)
from proxyproto.policy import DEFAULT_MAX_SIZE

__all__ = [
    "ByteSource",
    "Outcome",
    "canonical",
    "check_encode_input",
    "check_parse_input",
    "check_policy_reader",
    "check_reader",
    "implementations",
    "outcome",
    "reencode",
]

#: The largest v2 header prefix walk done in full; longer headers are sampled.
_FULL_PREFIX_WALK = 64
_CRC32C = 0x03


def implementations() -> dict[str, ModuleType]:
    """The implementation modules available: ``python`` always, ``cython`` when built."""
    modules = {"python": importlib.import_module("proxyproto._fallback")}
    with contextlib.suppress(ImportError):
        modules["cython"] = importlib.import_module("proxyproto._fast")
    return modules


class Outcome(NamedTuple):
    """What one call gave: a value, or an exception described by class and attributes."""

    value: Any
    error: Optional[type[BaseException]] = None
    message: str = ""
    needed: Optional[int] = None
    offset: Optional[int] = None

    @property
    def ok(self) -> bool:
        """The call returned normally."""
        return self.error is None

    def describe(self) -> str:
        """A one-line description for assertion messages."""
        if self.error is None:
            return f"-> {self.value!r}"
        extra = f" needed={self.needed}" if self.needed is not None else ""
        return f"raised {self.error.__name__}({self.message!r}){extra}"


def _caught(exc: BaseException) -> Outcome:
    return Outcome(
        None,
        type(exc),
        str(exc),
        getattr(exc, "needed", None),
        getattr(exc, "offset", None),
    )


def outcome(parse: Any, data: Any, **kwargs: Any) -> Outcome:
    """Call ``parse(data, **kwargs)``; a non-library exception fails the check at once."""
    try:
        return Outcome(parse(data, **kwargs))
    except ProxyProtocolError as exc:
        return _caught(exc)
    except Exception as exc:
        raise AssertionError(
            f"parse raised a foreign exception {type(exc).__name__}: {exc!r} on {data!r:.300}"
        ) from exc


def _assert_same(label: str, data: bytes, outcomes: dict[str, Outcome]) -> Outcome:
    items = list(outcomes.items())
    first_name, first = items[0]
    for name, other in items[1:]:
        if other != first or type(other.value) is not type(first.value):
            raise AssertionError(
                f"{label}: {first_name} {first.describe()} but {name} {other.describe()} "
                f"on {data!r:.300}"
            )
    return first


# ---------------------------------------------------------------------------------------
# Canonical form and re-encoding


def canonical(header: ProxyHeader) -> tuple[object, ...]:
    """The fields of ``header`` that survive canonical re-encoding.

    v2 LOCAL and AF_UNSPEC headers re-encode as LOCAL without an address block, v1
    UNKNOWN as the short form; TLVs other than CRC32C keep their order, and a CRC32C TLV is
    recomputed and moved to the end (so only its presence is kept).
    """
    if header.version == 1:
        return (1, header.command, header.family, header.transport, header.source,
                header.destination)
    tlvs = tuple(tlv for tlv in header.tlvs if tlv[0] != _CRC32C)
    has_crc = len(tlvs) != len(header.tlvs)
    if header.source is None:
        return (2, Command.LOCAL, socket.AF_UNSPEC, None, None, None, tlvs, has_crc)
    return (2, header.command, header.family, header.transport, header.source,
            header.destination, tlvs, has_crc)


def reencode(impl: ModuleType, header: ProxyHeader) -> bytes:
    """Encode ``header`` canonically with the encoders of ``impl`` (as ``to_bytes`` does)."""
    if header.version == 1:
        return impl.encode_v1(header.source, header.destination)  # type: ignore[no-any-return]
    tlvs = [tlv for tlv in header.tlvs if tlv[0] != _CRC32C]
    return impl.encode_v2(  # type: ignore[no-any-return]
        header.source,
        header.destination,
        transport=header.transport or socket.SOCK_STREAM,
        tlvs=tlvs,
        crc32c=len(tlvs) != len(header.tlvs),
    )


def _check_reencode(header: ProxyHeader, data: bytes, impls: dict[str, ModuleType]) -> None:
    encoded = {}
    for name, impl in impls.items():
        try:
            encoded[name] = Outcome(reencode(impl, header))
        except Exception as exc:
            encoded[name] = _caught(exc)
    first = _assert_same("re-encoding", data, encoded)
    if not first.ok:
        raise AssertionError(
            f"a parsed header does not re-encode: {first.describe()} for {header!r} "
            f"parsed from {data!r:.300}"
        )
    wire: bytes = first.value
    if header.to_bytes() != wire:
        raise AssertionError(f"to_bytes() differs from the encoders' output for {header!r}")
    again = _assert_same(
        "parse of re-encoded", wire, {n: outcome(i.parse, wire) for n, i in impls.items()}
    )
    if not again.ok:
        raise AssertionError(
            f"re-encoded header does not parse: {again.describe()}; {header!r} -> {wire!r:.300}"
        )
    reparsed: ProxyHeader = again.value
    if reparsed.length != len(wire):
        raise AssertionError(f"re-encoded header length {reparsed.length} != {len(wire)}")
    if canonical(reparsed) != canonical(header):
        raise AssertionError(
            f"re-encoding changed the header: {header!r} -> {reparsed!r} (from {data!r:.300})"
        )
    if reencode(next(iter(impls.values())), reparsed) != wire:
        raise AssertionError(f"canonical encoding is not byte-stable for {header!r}")


# ---------------------------------------------------------------------------------------
# parse


def _prefix_lengths(length: int, rng: random.Random) -> Iterable[int]:
    if length <= _FULL_PREFIX_WALK:
        return range(length)
    chosen = set(range(20)) | {length - 1, length - 2, length - 3}
    chosen.update(rng.randrange(length) for _ in range(16))
    return sorted(chosen)


def _check_prefixes(
    header: ProxyHeader, data: bytes, impls: dict[str, ModuleType], rng: random.Random
) -> None:
    total = header.length
    for cut in _prefix_lengths(total, rng):
        prefix = data[:cut]
        result = _assert_same(
            "prefix parse", prefix, {n: outcome(i.parse, prefix) for n, i in impls.items()}
        )
        if result.error is not IncompleteHeader:
            raise AssertionError(
                f"a {cut}-byte prefix of a valid {total}-byte header {result.describe()} "
                f"(expected IncompleteHeader) on {data[:total]!r:.300}"
            )
        needed = result.needed
        assert needed is not None
        if needed < 1 or cut + needed > total:
            raise AssertionError(
                f"needed={needed} after {cut} of {total} bytes overshoots on {data!r:.300}"
            )
        if header.version == 2 and cut >= 16 and cut + needed != total:
            raise AssertionError(
                f"v2 needed={needed} after {cut} of {total} bytes is not exact on {data!r:.300}"
            )


def check_parse_input(
    data: bytes, impls: Optional[dict[str, ModuleType]] = None, *, deep: bool = True
) -> Outcome:
    """Check every parse property on one input; return the (common) outcome.

    Args:
        data: arbitrary bytes.
        impls: the implementations to compare (default: every one available).
        deep: also walk the prefixes and re-encode a parsed header (slower).
    """
    impls = impls if impls is not None else implementations()
    results = {n: outcome(i.parse, data) for n, i in impls.items()}
    for name, impl in impls.items():
        results[f"{name}/bytearray"] = outcome(impl.parse, bytearray(data))
        results[f"{name}/memoryview"] = outcome(impl.parse, memoryview(data))
    result = _assert_same("parse", data, results)
    # A small cap changes only the size verdict, never anything else.
    capped = _assert_same(
        "parse(max_size=64)", data, {n: outcome(i.parse, data, max_size=64) for n, i in
                                     impls.items()}
    )
    if capped != result and (
        capped.error is not HeaderTooLarge or (result.ok and result.value.length <= 64)
    ):
        raise AssertionError(
            f"max_size=64 changed the outcome: {result.describe()} -> {capped.describe()}"
        )
    if result.ok:
        header: ProxyHeader = result.value
        if type(header) is not ProxyHeader or not 15 <= header.length <= len(data):
            raise AssertionError(f"implausible header {header!r} from {data!r:.300}")
        hash(header)
        whole = data[: header.length]
        alone = _assert_same(
            "parse of the header alone", whole,
            {n: outcome(i.parse, whole) for n, i in impls.items()},
        )
        if alone != result:
            raise AssertionError(f"trailing bytes changed the result: {alone.describe()}")
        if deep:
            rng = random.Random(zlib.crc32(data))
            _check_prefixes(header, data, impls, rng)
            _check_reencode(header, data, impls)
    elif result.error is IncompleteHeader:
        assert result.needed is not None
        if result.needed < 1:
            raise AssertionError(f"IncompleteHeader.needed={result.needed} on {data!r:.300}")
    elif not issubclass(result.error, ProxyProtocolError):  # pragma: no cover - see outcome()
        raise AssertionError(f"unexpected error {result.describe()}")
    return result


# ---------------------------------------------------------------------------------------
# HeaderReader


def _chunks(data: bytes, rng: random.Random) -> list[Union[bytes, bytearray, memoryview]]:
    chunks: list[Union[bytes, bytearray, memoryview]] = []
    pos = 0
    while pos < len(data):
        size = rng.choice((0, 1, 1, 2, 3, 5, 8, 13, 16, 17, 64, 1000, len(data)))
        piece = data[pos : pos + size]
        kind = rng.randrange(3)
        chunks.append(piece if kind == 0 else bytearray(piece) if kind == 1 else
                      memoryview(piece))
        pos += size
    return chunks


def check_reader(
    data: bytes, *, seed: Optional[int] = None, max_size: int = DEFAULT_MAX_SIZE
) -> None:
    """Feed ``data`` to a :class:`HeaderReader` in pseudo-random chunks; compare with ``parse``.

    ``seed`` picks the chunking (default: derived from the data, so a replay is exact).
    """
    from proxyproto import _impl

    rng = random.Random(zlib.crc32(data) if seed is None else seed)
    expected = outcome(_impl.parse, data, max_size=max_size)
    reader = HeaderReader(max_size=max_size)
    fed = 0
    for chunk in _chunks(data, rng):
        try:
            header = reader.feed(chunk)
        except ProxyProtocolError as exc:
            got = _caught(exc)
            fed += len(chunk)
            # An error on a prefix must be the full input's verdict too (the same class;
            # the message may quote less of the offending field).
            if expected.ok or got.error is not expected.error:
                raise AssertionError(
                    f"reader {got.describe()} after {fed} bytes, parse {expected.describe()} "
                    f"on {data!r:.300}"
                ) from exc
            if reader.pending != data[:fed] or reader.done:
                raise AssertionError("reader lost the bytes of a refused header") from exc
            return
        except Exception as exc:
            raise AssertionError(f"reader raised a foreign {exc!r} on {data!r:.300}") from exc
        fed += len(chunk)
        if header is not None:
            if not expected.ok or header != expected.value:
                raise AssertionError(
                    f"reader -> {header!r}, parse {expected.describe()} on {data!r:.300}"
                )
            if reader.trailing_data != data[header.length : fed]:
                raise AssertionError("reader's trailing_data is not the bytes after the header")
            if reader.needed != 0 or not reader.done or reader.header is not header:
                raise AssertionError("reader state is wrong after completion")
            if reader.buffered:
                raise AssertionError("reader still buffers bytes after completion")
            try:
                reader.feed(b"x")
            except RuntimeError:
                pass
            else:
                raise AssertionError("reader accepted data after the header was complete")
            return
        if reader.buffered != fed or reader.needed < 1:
            raise AssertionError(
                f"reader buffered={reader.buffered} needed={reader.needed} after {fed} bytes"
            )
        if reader.buffered >= max(max_size, proxyproto.V1_MAX_LENGTH):
            raise AssertionError(f"reader holds {reader.buffered} bytes, over its cap")
        if expected.ok and fed + reader.needed > expected.value.length:
            raise AssertionError(f"reader needed={reader.needed} overshoots after {fed} bytes")
    if expected.error is not IncompleteHeader or reader.needed != expected.needed:
        raise AssertionError(
            f"reader waits for {reader.needed} more, parse {expected.describe()} "
            f"on {data!r:.300}"
        )


# ---------------------------------------------------------------------------------------
# PolicyReader: what the I/O adapters do with a connection's first bytes


def check_policy_reader(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Feed ``data`` in chunks to a ``PolicyReader`` under every policy, then ``finish()``.

    Compared with ``parse``: a header is honoured under REQUIRE/USE, read and dropped
    under IGNORE, refused under REJECT; a malformed header is refused whatever the
    policy; a connection without a header is refused under REQUIRE and otherwise handed
    to the application with *every* byte it sent; SKIP reads nothing.
    """
    from proxyproto import NoProxyHeader, Policy, PolicyViolation, _impl
    from proxyproto.policy import PolicyReader

    expected = outcome(_impl.parse, data, max_size=max_size)
    for policy in Policy:
        rng = random.Random(zlib.crc32(data) ^ zlib.crc32(policy.value.encode()))
        reader = PolicyReader(policy, max_size=max_size)
        label = f"PolicyReader({policy.name}) on {data!r:.200}"
        if policy is Policy.SKIP:
            if not reader.done or reader.header is not None or reader.app_data:
                raise AssertionError(f"{label}: SKIP must decide at once, reading nothing")
            continue
        fed = 0
        error: Optional[BaseException] = None
        for chunk in _chunks(data, rng):
            try:
                done = reader.feed(chunk)
            except ProxyProtocolError as exc:
                error = exc
                break
            fed += len(chunk)
            if done:
                break
        if error is None and not reader.done:
            try:
                reader.finish()
            except ProxyProtocolError as exc:
                error = exc
        got = "raised " + type(error).__name__ if error else (
            f"header={reader.header!r:.80} received={reader.received!r:.80}")
        if expected.ok:
            header = expected.value
            if policy is Policy.REJECT:
                ok = isinstance(error, PolicyViolation)
            else:
                ok = (error is None and reader.received == header
                      and reader.header == (None if policy is Policy.IGNORE else header)
                      and reader.app_data == data[header.length : fed])
        elif expected.error is NoProxyHeader:
            if policy is Policy.REQUIRE:
                ok = isinstance(error, NoProxyHeader)
            else:  # not a header: the application gets every byte, none lost
                ok = (error is None and reader.header is None
                      and reader.app_data == data[:fed] and fed > 0)
        elif expected.error is IncompleteHeader:
            if data:
                ok = isinstance(error, IncompleteHeader)
            elif policy is Policy.REQUIRE:
                ok = isinstance(error, NoProxyHeader)
            else:
                ok = error is None and reader.done and reader.header is None
        else:  # malformed: refused whatever the policy
            assert expected.error is not None
            ok = type(error) is expected.error
        if not ok:
            raise AssertionError(f"{label}: {got}, but parse {expected.describe()}")


# ---------------------------------------------------------------------------------------
# Encoders, from structured arguments


class ByteSource:
    """Turns fuzz bytes into arguments (a tiny, atheris-free FuzzedDataProvider).

    Reading past the end yields zeros, so every input decodes to some arguments.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes (zero-padded at the end)."""
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk.ljust(count, b"\x00")

    def byte(self) -> int:
        """One byte, 0..255."""
        return self.take(1)[0]

    def pick(self, options: Sequence[Any]) -> Any:
        """One of ``options``."""
        return options[self.byte() % len(options)]

    def rest(self, limit: int) -> bytes:
        """A length byte then that many bytes (at most ``limit``)."""
        return self.take(min(self.byte(), limit))


def _host(src: ByteSource) -> object:
    kind = src.byte() % 8
    if kind in (0, 1):
        return socket.inet_ntop(socket.AF_INET, src.take(4))
    if kind in (2, 3):
        return socket.inet_ntop(socket.AF_INET6, src.take(16))
    if kind == 4:
        return src.rest(48).decode("latin-1")  # arbitrary text, mostly invalid
    if kind == 5:
        return ipaddress.ip_address(src.take(4))
    if kind == 6:
        return str(ipaddress.IPv6Address(src.take(16)).exploded)  # long form, still valid
    return src.pick((None, 1234, b"127.0.0.1", "", "::ffff:1.2.3.4", "1.2.3.04"))


def _port(src: ByteSource) -> object:
    kind = src.byte() % 8
    if kind < 6:
        return int.from_bytes(src.take(2), "big")
    return src.pick((-1, 65536, 70000, "80", 1.5, None, True))


def _address(src: ByteSource) -> object:
    kind = src.byte() % 8
    if kind < 4:
        return (_host(src), _port(src))
    if kind == 4:
        return src.rest(120).decode("utf-8", "surrogateescape")
    if kind == 5:
        return b"\x00" + src.rest(110)
    if kind == 6:
        return None
    return src.pick(((1, 2, 3), ("1.2.3.4",), [("1.2.3.4", 1)], 42))


def _tlvs(src: ByteSource) -> list[object]:
    items: list[object] = []
    for _ in range(src.byte() % 6):
        kind = src.byte() % 10
        if kind < 8:
            tlv_type = src.pick((0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xEA, 0xEE,
                                 src.byte()))
            items.append((tlv_type, src.rest(200)))
        elif kind == 8:
            items.append((src.pick((-1, 256, 0x03)), b""))
        else:
            items.append(src.pick(((1,), (1, "x"), 7, (1, bytearray(b"ab")),
                                   (1, b"a" * 70000))))
    return items


def _canonical_host(host: object) -> tuple[int, bytes]:
    text = str(host)
    family = socket.AF_INET if ":" not in text else socket.AF_INET6
    return family, socket.inet_pton(family, text)


def _expected_encoding(
    version: int, source: object, destination: object, transport: socket.SocketKind,
    tlvs: list[object], crc: bool,
) -> tuple[object, ...]:
    """What a header parsed from a successful encoding must hold (its canonical form)."""
    if source is None:
        if version == 1:
            return (1, Command.PROXY, socket.AF_UNSPEC, None, None, None)
        values = tuple((int(t), bytes(v)) for t, v in tlvs)  # type: ignore[misc]
        return (2, Command.LOCAL, socket.AF_UNSPEC, None, None, None, values, crc)
    if isinstance(source, tuple):
        (fam_s, src), (fam_d, dst) = (_canonical_host(source[0]),
                                      _canonical_host(destination[0]))  # type: ignore[index]
        if fam_s != fam_d:
            fam_s = socket.AF_INET6
            src = src if len(src) == 16 else b"\x00" * 10 + b"\xff\xff" + src
            dst = dst if len(dst) == 16 else b"\x00" * 10 + b"\xff\xff" + dst
        addresses: tuple[object, object] = (
            (socket.inet_ntop(fam_s, src), source[1]),
            (socket.inet_ntop(fam_s, dst), destination[1]),  # type: ignore[index]
        )
        family = fam_s
    else:
        family = socket.AF_UNIX
        addresses = (_unix_canonical(source), _unix_canonical(destination))
    if version == 1:
        return (1, Command.PROXY, family, socket.SOCK_STREAM, *addresses)
    values = tuple((int(t), bytes(v)) for t, v in tlvs)  # type: ignore[misc]
    return (2, Command.PROXY, family, transport, *addresses, values, crc)


def _unix_canonical(path: object) -> object:
    if isinstance(path, bytes) and path[:1] == b"\x00":
        return path.rstrip(b"\x00") or ""
    return path


def check_encode_input(data: bytes, impls: Optional[dict[str, ModuleType]] = None) -> Outcome:
    """Decode encoder arguments from ``data``; check both encoders agree and round-trip."""
    impls = impls if impls is not None else implementations()
    src = ByteSource(data)
    version = 1 + src.byte() % 2
    source = _address(src)
    destination = source if src.byte() % 4 == 0 else _address(src)
    if (src.byte() % 3 == 0 and isinstance(source, tuple) and isinstance(destination, tuple)
            and len(source) == len(destination) == 2):
        destination = (destination[0], source[1])
    transport = src.pick((socket.SOCK_STREAM, socket.SOCK_STREAM, socket.SOCK_DGRAM,
                          socket.SOCK_RAW))
    tlvs = _tlvs(src) if version == 2 else []
    crc = bool(src.byte() & 1)
    results = {}
    for name, impl in impls.items():
        try:
            if version == 1:
                results[name] = Outcome(impl.encode_v1(source, destination))
            else:
                results[name] = Outcome(impl.encode_v2(
                    source, destination, transport=transport, tlvs=iter(tlvs), crc32c=crc))
        except (ValueError, TypeError) as exc:
            results[name] = _caught(exc)
        except Exception as exc:
            raise AssertionError(
                f"encode_v{version}({source!r}, {destination!r}) raised a foreign {exc!r}"
            ) from exc
    result = _assert_same(f"encode_v{version}", data, results)
    if not result.ok:
        return result
    wire: bytes = result.value
    parsed = _assert_same("parse of encoded", wire,
                          {n: outcome(i.parse, wire) for n, i in impls.items()})
    if not parsed.ok or parsed.value.length != len(wire):
        raise AssertionError(
            f"encode_v{version}({source!r}, {destination!r}, tlvs={tlvs!r:.200}) gave "
            f"{wire!r:.300}, which parse {parsed.describe()}"
        )
    header: ProxyHeader = parsed.value
    expected = _expected_encoding(version, source, destination, transport, tlvs, crc)
    if canonical(header) != expected:
        raise AssertionError(
            f"encode_v{version}({source!r}, {destination!r}) round-trips to {header!r}, "
            f"expected {expected!r}"
        )
    if header.to_bytes() != wire:
        raise AssertionError(f"encode -> parse -> encode is not byte-stable for {wire!r:.300}")
    return result
