"""An incremental, sans-IO reader for stream transports (TCP, UNIX streams).

:func:`scan` is the one look at the bytes that every reader and adapter makes: it calls
the implementation's non-raising ``parse_or_needed`` (one parse per implementation, no
exception for a partial header), except for a v1 line still missing its LF, which is
not validated at all before its LF (or its 107th byte) is there: a cheap ``find``
instead of a parse per chunk.
"""

from __future__ import annotations

from typing import Optional, Union

from . import _impl
from ._errors import ProxyProtocolError
from ._fallback import V1_MAX_LENGTH, V2_SIGNATURE
from ._header import ProxyHeader

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FIRST_NEEDED",
    "HeaderReader",
    "check_max_size",
    "exact_needed",
    "partial_v1_line",
    "scan",
    "signature_needed",
]

Buffer = Union[bytes, bytearray, memoryview]

#: The default cap for headers read from the network (like nginx's and go-proxyproto's).
DEFAULT_MAX_SIZE = 4096
#: What a reader needs before anything arrived: the shortest header is "PROXY UNKNOWN\r\n".
FIRST_NEEDED = 15
# the LF as an int: ``_LF in data`` is a memchr, where ``b"\n" in data`` first tries the
# needle as an int and raises and clears a TypeError inside (about 2,000 instructions)
_LF = 0x0A
_V1_START = b"PROXY "  # every v1 line starts so; b"PROXY" + anything else is invalid
_V2_FIXED = 16


def check_max_size(max_size: int) -> None:
    """Refuse a v2 size cap that is not an int of at least 16 (the fixed part).

    Raises:
        TypeError: not an int.
        ValueError: under 16.
    """
    if type(max_size) is not int:
        raise TypeError(f"max_size must be an int, not {type(max_size).__name__}")
    if max_size < 16:
        raise ValueError(f"max_size must be at least 16, not {max_size}")


def partial_v1_line(data: Buffer) -> bool:
    """``True`` for the start of a v1 line whose LF (and 107th byte) has not arrived yet."""
    size = len(data)
    if size < 6 or size >= V1_MAX_LENGTH or data[0] != 0x50:  # "P"
        return False
    head = bytes(data) if type(data) is memoryview else data
    return head.startswith(_V1_START) and head.find(b"\n") < 0


def signature_needed(data: Buffer) -> int:
    """For a proper prefix of a signature (``b"PROXY "`` or the 12-byte v2 one), what
    ``parse`` would answer (15 or 16 minus its length) without a parse; else 0."""
    size = len(data)
    if not 0 < size <= 12:
        return 0
    head = bytes(data) if type(data) is memoryview else data
    if head[0] == 0x50:  # "P"
        return FIRST_NEEDED - size if size < 6 and _V1_START.startswith(head) else 0
    return _V2_FIXED - size if V2_SIGNATURE.startswith(head) else 0


def scan(data: Buffer, max_size: int, *, final: bool = False) -> Union[ProxyHeader, int]:
    """The header at the start of ``data``, or how many more bytes are needed (at least 1).

    A v1 line is not validated before its LF or its 107th byte arrived (unless
    ``final``: no more bytes will come): the figure returned for it is then only a lower
    bound (``15 - len(data)``, at least 1), where ``parse`` would give the exact minimum
    (see :func:`exact_needed`).

    Raises:
        NoProxyHeader, InvalidHeader: as :func:`proxyproto.parse`.
    """
    size = len(data)
    if not size:
        return FIRST_NEEDED
    if size <= 12:
        needed = signature_needed(data)
        if needed:
            return needed
    # (a chunk with its LF, the usual first chunk, needs no further look here)
    if not final and (type(data) is memoryview or _LF not in data) and partial_v1_line(data):
        return max(FIRST_NEEDED - size, 1)
    return _impl.parse_or_needed(data, max_size=max_size)


def exact_needed(data: Buffer, max_size: int) -> int:
    """The exact minimum completion of a partial header, as ``parse`` computes it.

    For a partial v1 line that :func:`scan` left unvalidated: one parse, made only when
    someone asks (a reader's ``needed``). A prefix that can no longer be valid gives the
    lower bound; the refusal itself comes with the next chunk, the LF or the end.
    """
    try:
        result = _impl.parse_or_needed(data, max_size=max_size)
    except ProxyProtocolError:
        return max(FIRST_NEEDED - len(data), 1)
    return result if type(result) is int else 0


class HeaderReader:
    """Feed it a connection's first bytes as they arrive; it gives back the header.

    >>> reader = HeaderReader()
    >>> reader.feed(b"PROXY TCP4 192.0.2.1 ")
    >>> reader.needed
    13
    >>> header = reader.feed(b"198.51.100.2 51000 443\\r\\nGET / HTTP/1.1\\r\\n")
    >>> header.source, reader.trailing_data
    (('192.0.2.1', 51000), b'GET / HTTP/1.1\\r\\n')

    The reader never holds more than the header: the size cap (``max_size`` for v2,
    107 bytes for v1) is enforced as soon as the length is known, and the bytes that
    followed the header are handed back untouched in :attr:`trailing_data`.
    I/O code can read at most :attr:`needed` bytes at a time to never read past the
    header.

    A partial header costs no exception, and a v2 header is parsed when its fixed part,
    then when all of it is there. A v1 line is parsed with every chunk, so that a
    malformed one is refused at its first bad byte ([SPEC §2] A-1) and :attr:`needed` is
    exact; the adapters' :class:`~proxyproto.policy.PolicyReader` judges a v1 line at its LF
    instead (see :func:`scan`).

    Args:
        max_size: the largest v2 header accepted (default 4096; at most 65551).
    """

    __slots__ = ("_buffer", "_header", "_max_size", "_needed", "_ready", "_trailing")

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        check_max_size(max_size)
        self._max_size = max_size
        self._buffer = bytearray()
        self._header: Optional[ProxyHeader] = None
        self._trailing = b""
        self._needed = FIRST_NEEDED
        self._ready = 0  # no decision is possible before this many bytes (v2 body)

    @property
    def max_size(self) -> int:
        """The v2 size cap in bytes."""
        return self._max_size

    @property
    def header(self) -> Optional[ProxyHeader]:
        """The header once complete, else ``None``."""
        return self._header

    @property
    def done(self) -> bool:
        """``True`` once the whole header was read."""
        return self._header is not None

    @property
    def needed(self) -> int:
        """The minimum number of further bytes before the header can be complete (0 when done)."""
        return self._needed

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete header are held."""
        return len(self._buffer)

    @property
    def pending(self) -> bytes:
        """The bytes fed but not yet consumed (an incomplete header, or data that was
        refused as a header: with an optional-header policy these belong to the app)."""
        return bytes(self._buffer)

    @property
    def trailing_data(self) -> bytes:
        """The bytes that followed the header in the chunks fed so far (application data)."""
        return self._trailing

    def feed(self, data: Buffer) -> Optional[ProxyHeader]:
        """Add received bytes; return the header once it is complete, else ``None``.

        Raises:
            NoProxyHeader, InvalidHeader: the bytes cannot form a valid header (the
                connection must be dropped). ``HeaderTooLarge`` when over the cap.
            RuntimeError: called again after the header was complete.
        """
        if self._header is not None:
            raise RuntimeError("the header is complete; pass further data to the application")
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._ready:
                self._needed = self._ready - len(buffer)
                return None
            chunk: Buffer = buffer
        else:
            chunk = data
        try:
            result = signature_needed(chunk) or _impl.parse_or_needed(
                chunk, max_size=self._max_size)
        except ProxyProtocolError:
            if chunk is data:  # keep what was fed, for callers whose policy allows no header
                buffer += data
            raise
        if type(result) is int:
            if chunk is data:
                buffer += data
            self._needed = result
            if len(buffer) >= _V2_FIXED and buffer[0] == 0x0D:  # exact: wait for all of it
                self._ready = len(buffer) + result
            return None
        assert isinstance(result, ProxyHeader)
        self._header = result
        self._trailing = bytes(chunk[result.length :])
        self._buffer = bytearray()
        self._needed = 0
        return result
