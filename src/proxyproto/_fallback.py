"""The pure-Python implementation, and the specification of the compiled one.

A facade over the reference modules, one concern each: ``_constants`` (wire constants),
``_crc32c``, ``_address`` (address grammar), ``_v1``, ``_v2`` (and TLVs, ``decode_ssl``)
and ``_encode``. ``_fast.pyx`` is its Cython twin, split the same way into include files:
same names, same signatures, same results, same exception classes and messages.
"""

from __future__ import annotations

from typing import Callable, Union

from ._constants import MAX_V2_SIZE, V1_MAX_LENGTH, V2_SIGNATURE
from ._crc32c import crc32c
from ._encode import encode_v1, encode_v2
from ._errors import IncompleteHeader, NoProxyHeader
from ._header import ProxyHeader
from ._v1 import parse_v1
from ._v2 import decode_ssl, parse_v2

__all__ = [
    "MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE", "crc32c", "decode_ssl", "encode_v1",
    "encode_v2", "parse", "parse_or_needed",
]


def _copy(data: object) -> bytes:
    """A private ``bytes`` copy of a bytes-like ``data`` (the caller's buffer may change)."""
    if isinstance(data, memoryview) and (data.ndim != 1 or data.itemsize != 1):
        data = bytes(data)
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data[:MAX_V2_SIZE])
    if isinstance(data, bytes):
        return memoryview(data).tobytes()  # the real buffer, never __bytes__ (issue 9)
    raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")


def _check_max_size(max_size: object) -> None:
    if type(max_size) is not int:
        raise TypeError(f"max_size must be an int, not {type(max_size).__name__}")
    if max_size < 16:
        raise ValueError(f"max_size must be at least 16, not {max_size}")


def _empty(data: bytes, max_size: int) -> int:
    return 15  # the shortest header, "PROXY UNKNOWN\r\n"


def _no_header(data: bytes, max_size: int) -> ProxyHeader:
    raise NoProxyHeader("not a PROXY header: byte 0 starts neither a v1 nor a v2 signature")


# The one dispatch, by the first byte (single-byte bytes objects are cached: the slice
# costs no allocation): CR starts the v2 signature, "P" the v1 one. Both entry points
# below look it up themselves, one Python call fewer than a shared helper per parse.
_PARSERS: dict[bytes, Callable[[bytes, int], Union[ProxyHeader, int]]] = {
    b"": _empty, b"\r": parse_v2, b"P": parse_v1}


def parse(
    data: Union[bytes, bytearray, memoryview], *, max_size: int = MAX_V2_SIZE
) -> ProxyHeader:
    """Parse the PROXY header (v1 or v2) at the start of ``data``.

    Bytes after the header are allowed and left alone: ``header.length`` says where the
    application data starts.

    Args:
        data: the first bytes of a connection (or of a datagram).
        max_size: the largest v2 header accepted, in bytes (at least 16; the default is
            the spec's maximum, 65551). v1 lines are always capped at 107 bytes.

    Returns:
        The parsed :class:`ProxyHeader`.

    Raises:
        IncompleteHeader: ``data`` is a proper prefix of a header that could still be
            valid; ``.needed`` is the minimum number of further bytes required.
        NoProxyHeader: ``data`` starts with neither the v1 nor the v2 signature.
        InvalidHeader: any other violation of the spec (subclasses: ``HeaderTooLarge``,
            ``ChecksumMismatch``); the message names the rule and the byte offset.
        TypeError: ``data`` is not bytes-like or ``max_size`` is not an int.
        ValueError: ``max_size`` is smaller than 16.
    """
    buf = data if type(data) is bytes else _copy(data)
    if type(max_size) is not int or max_size < 16:
        _check_max_size(max_size)
    result = _PARSERS.get(buf[:1], _no_header)(buf, max_size)
    if type(result) is int:
        raise IncompleteHeader(result)
    return result  # type: ignore[return-value]


def parse_or_needed(
    data: Union[bytes, bytearray, memoryview], *, max_size: int = MAX_V2_SIZE
) -> Union[ProxyHeader, int]:
    """:func:`parse`, except that a proper prefix gives an ``int`` instead of raising.

    The adapters' entry point: a partial header costs no exception.

    Returns:
        The parsed :class:`ProxyHeader`, or, where :func:`parse` would raise
        :class:`IncompleteHeader`, the number of further bytes needed (at least 1).

    Raises:
        NoProxyHeader, InvalidHeader, TypeError, ValueError: as :func:`parse`.
    """
    buf = data if type(data) is bytes else _copy(data)
    if type(max_size) is not int or max_size < 16:
        _check_max_size(max_size)
    return _PARSERS.get(buf[:1], _no_header)(buf, max_size)
