"""An incremental, sans-IO reader for stream transports (TCP, UNIX streams)."""

from __future__ import annotations

from typing import Optional, Union

from . import _impl
from ._errors import IncompleteHeader, ProxyProtocolError
from ._header import ProxyHeader

__all__ = ["DEFAULT_MAX_SIZE", "FIRST_NEEDED", "HeaderReader", "check_max_size"]

#: The default cap for headers read from the network (like nginx's and go-proxyproto's).
DEFAULT_MAX_SIZE = 4096
#: What a reader needs before anything arrived: the shortest header is "PROXY UNKNOWN\r\n".
FIRST_NEEDED = 15


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

    Args:
        max_size: the largest v2 header accepted (default 4096; at most 65551).
    """

    __slots__ = ("_buffer", "_header", "_max_size", "_needed", "_trailing")

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        check_max_size(max_size)
        self._max_size = max_size
        self._buffer = bytearray()
        self._header: Optional[ProxyHeader] = None
        self._trailing = b""
        self._needed = FIRST_NEEDED

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

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> Optional[ProxyHeader]:
        """Add received bytes; return the header once it is complete, else ``None``.

        Raises:
            NoProxyHeader, InvalidHeader: the bytes cannot form a valid header (the
                connection must be dropped). ``HeaderTooLarge`` when over the cap.
            RuntimeError: called again after the header was complete.
        """
        if self._header is not None:
            raise RuntimeError("the header is complete; pass further data to the application")
        if self._buffer:
            self._buffer += data
            chunk: Union[bytes, bytearray, memoryview] = self._buffer
        else:
            chunk = data
        try:
            header = _impl.parse(chunk, max_size=self._max_size)
        except IncompleteHeader as incomplete:
            if chunk is data:
                self._buffer += data
            self._needed = incomplete.needed
            return None
        except ProxyProtocolError:
            if chunk is data:  # keep what was fed, for callers whose policy allows no header
                self._buffer += data
            raise
        self._header = header
        self._trailing = bytes(chunk[header.length :])
        self._buffer = bytearray()
        self._needed = 0
        return header
