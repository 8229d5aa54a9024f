"""The exception tree of proxyproto.

Every error that :func:`proxyproto.parse` raises derives from :class:`ProxyProtocolError`,
which derives from :class:`ValueError`, so callers that only know "bad value" still
catch it. ``IncompleteHeader`` is a ``ProxyProtocolError`` too: adapters catch it first.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatch",
    "HeaderTooLarge",
    "IncompleteHeader",
    "InvalidHeader",
    "NoProxyHeader",
    "ProxyProtocolError",
]


class ProxyProtocolError(ValueError):
    """Base class of every PROXY protocol error; never raised directly."""


class IncompleteHeader(ProxyProtocolError):
    """The data is a proper prefix of a header that could still be valid.

    Attributes:
        needed: the minimum number of further bytes required (a lower bound that is
            never larger than the real remainder; exact for v2 once the 16-byte fixed
            part is present).
    """

    needed: int

    def __init__(self, needed: int) -> None:
        super().__init__(f"incomplete PROXY header: at least {needed} more byte(s) needed")
        self.needed = needed

    def __reduce__(self) -> tuple[type[IncompleteHeader], tuple[int]]:
        return (type(self), (self.needed,))


class NoProxyHeader(ProxyProtocolError):
    """The data cannot be the start of a PROXY header (neither v1 nor v2 signature)."""


class InvalidHeader(ProxyProtocolError):
    """The data starts like a PROXY header but breaks a rule of the spec.

    Attributes:
        offset: the byte offset (from the start of the header) where the violation was
            found, or ``None`` when it concerns the header as a whole.
    """

    offset: int | None

    def __init__(self, message: str, offset: int | None = None) -> None:
        self._message = message
        if offset is not None:
            message = f"{message} (offset {offset})"
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple[type[InvalidHeader], tuple[str, int | None]]:
        # Rebuild from the bare message and the offset, so a copy keeps ``offset``.
        return (type(self), (self._message, self.offset))


class HeaderTooLarge(InvalidHeader):
    """The header is larger than the allowed maximum (107 bytes for v1, ``max_size`` for v2)."""


class ChecksumMismatch(InvalidHeader):
    """The CRC32C TLV does not match the header's checksum."""
