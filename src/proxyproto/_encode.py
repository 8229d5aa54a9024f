"""Encoders: ``encode_v1`` (text) and ``encode_v2`` (binary, TLVs, CRC32C).

The reference; ``_fast_encode.pxi`` is its C twin (INET/INET6/LOCAL with bytes TLVs).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Optional

from . import _address
from ._constants import TYPE_CRC32C, V2_SIGNATURE
from ._crc32c import crc32c as _crc32c
from ._header import Address
from ._v2 import tlv_error

__all__ = ["encode_v1", "encode_v2"]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_STREAM = socket.SOCK_STREAM
_DGRAM = socket.SOCK_DGRAM


def encode_v1(source: Optional[tuple[str, int]], destination: Optional[tuple[str, int]]) -> bytes:
    """Encode a v1 (text) header.

    Args:
        source: the original client as ``(host, port)``, or ``None``.
        destination: the original destination as ``(host, port)``, or ``None``.

    Returns:
        ``PROXY TCP4 ...`` or ``PROXY TCP6 ...`` with canonical addresses; ``PROXY
        UNKNOWN\\r\\n`` when both are ``None``. A mixed IPv4/IPv6 pair is written as
        ``TCP6`` with the IPv4 address mapped (``::ffff:a.b.c.d``), as HAProxy does.

    Raises:
        TypeError, ValueError: an address that cannot be encoded.
    """
    if source is None and destination is None:
        return b"PROXY UNKNOWN\r\n"
    if source is None or destination is None:
        raise ValueError("source and destination must both be given, or both be None")
    src_host, src_port, dst_host, dst_port = _address.inet_pair(source, destination)
    if len(src_host) == 4:
        return b"PROXY TCP4 %s %s %d %d\r\n" % (
            socket.inet_ntop(_AF_INET, src_host).encode(),
            socket.inet_ntop(_AF_INET, dst_host).encode(),
            src_port,
            dst_port,
        )
    return b"PROXY TCP6 %s %s %d %d\r\n" % (
        socket.inet_ntop(_AF_INET6, src_host).encode(),
        socket.inet_ntop(_AF_INET6, dst_host).encode(),
        src_port,
        dst_port,
    )


def encode_v2(
    source: Optional[Address],
    destination: Optional[Address],
    *,
    transport: socket.SocketKind = socket.SOCK_STREAM,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """Encode a v2 (binary) header.

    Args:
        source, destination: ``(host, port)`` tuples (IPv4 or IPv6; a mixed pair is
            written as IPv6 with the IPv4 address mapped), UNIX paths (``str``, or
            ``bytes`` for an abstract name), or both ``None`` for a ``LOCAL`` header.
        transport: ``socket.SOCK_STREAM`` or ``socket.SOCK_DGRAM``.
        tlvs: ``(type, value)`` pairs, written in the order given.
        crc32c: append a CRC32C TLV computed over the final header.

    Returns:
        The header bytes.

    Raises:
        TypeError, ValueError: anything that would not give a valid header (bad address,
            port outside 0..65535, TLV too large or invalid for its type, a CRC32C TLV
            passed in ``tlvs``, total length above 65535).
    """
    if transport == _STREAM:
        transport_bits = 0x1
    elif transport == _DGRAM:
        transport_bits = 0x2
    else:
        raise ValueError(f"transport must be SOCK_STREAM or SOCK_DGRAM, not {transport!r}")
    if source is None and destination is None:
        command_byte, family_byte, block = 0x20, 0x00, b""
    elif source is None or destination is None:
        raise ValueError("source and destination must both be given, or both be None")
    elif isinstance(source, (str, bytes)) and isinstance(destination, (str, bytes)):
        command_byte, family_byte = 0x21, 0x30 | transport_bits
        block = _address.pack_unix_path(source, "source") + _address.pack_unix_path(
            destination, "destination"
        )
    else:
        src_host, src_port, dst_host, dst_port = _address.inet_pair(source, destination)
        command_byte = 0x21
        family_byte = (0x10 if len(src_host) == 4 else 0x20) | transport_bits
        block = src_host + dst_host + struct.pack("!HH", src_port, dst_port)
    parts = [block]
    for item in tlvs:
        try:
            tlv_type, value = item
        except (TypeError, ValueError):
            raise TypeError("each TLV must be a (type, value) pair") from None
        if not isinstance(tlv_type, int) or isinstance(tlv_type, bool):
            raise TypeError(f"TLV type must be an int, not {type(tlv_type).__name__}")
        if not 0 <= tlv_type <= 0xFF:
            raise ValueError(f"TLV type {tlv_type} is outside 0..255")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"TLV value must be bytes, not {type(value).__name__}")
        if type(value) is not bytes:
            value = memoryview(value).tobytes()  # the buffer, never a subclass's __bytes__
        if len(value) > 0xFFFF:
            raise ValueError(f"TLV 0x{tlv_type:02x} value is {len(value)} bytes, at most 65535")
        if tlv_type == TYPE_CRC32C:
            raise ValueError("pass crc32c=True instead of a CRC32C TLV")
        error = tlv_error(tlv_type, value)
        if error is not None:
            raise ValueError(error)
        parts.append(struct.pack("!BH", tlv_type, len(value)))
        parts.append(value)
    if crc32c:
        parts.append(b"\x03\x00\x04\x00\x00\x00\x00")
    body = b"".join(parts)
    if len(body) > 0xFFFF:
        raise ValueError(f"v2 header body is {len(body)} bytes, at most 65535")
    header = V2_SIGNATURE + struct.pack("!BBH", command_byte, family_byte, len(body)) + body
    if crc32c:
        header = header[:-4] + _crc32c(header).to_bytes(4, "big")
    return header
