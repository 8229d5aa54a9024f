"""Version 2 (binary) parsing ([SPEC §2.2], R-27..R-65): the fixed part, the address
block, the TLVs and their value rules (shared with ``encode_v2``), and the SSL TLV decoder.

The reference; ``_fast_v2.pxi`` is its C twin.
"""

from __future__ import annotations

import socket
from typing import Optional, Union

from . import _address
from ._constants import (
    CRC32C_SIZE,
    SSL_FIXED_SIZE,
    SSL_SUBTYPE_CLIENT_CERT,
    SSL_SUBTYPE_CN,
    TYPE_AUTHORITY,
    TYPE_CRC32C,
    TYPE_NETNS,
    TYPE_SSL,
    TYPE_UNIQUE_ID,
    UNIQUE_ID_MAX,
    UNIX_PATH_SIZE,
    V2_FIXED_SIZE,
    V2_SIGNATURE,
)
from ._crc32c import crc32c
from ._errors import ChecksumMismatch, HeaderTooLarge, InvalidHeader, NoProxyHeader
from ._header import TLV, Address, Command, ProxyHeader, SSLInfo

__all__ = ["decode_ssl", "parse_v2", "tlv_error"]

_new_header = tuple.__new__
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_AF_UNIX = socket.AF_UNIX
_AF_UNSPEC = socket.AF_UNSPEC
_STREAM = socket.SOCK_STREAM
_DGRAM = socket.SOCK_DGRAM
_PROXY = Command.PROXY
_LOCAL = Command.LOCAL

# the seven defined values of byte 14 -> (family, transport, address block size).
_FAMILIES: dict[int, tuple[socket.AddressFamily, Optional[socket.SocketKind], int]] = {
    0x00: (_AF_UNSPEC, None, 0),
    0x11: (_AF_INET, _STREAM, 12),
    0x12: (_AF_INET, _DGRAM, 12),
    0x21: (_AF_INET6, _STREAM, 36),
    0x22: (_AF_INET6, _DGRAM, 36),
    0x31: (_AF_UNIX, _STREAM, 216),
    0x32: (_AF_UNIX, _DGRAM, 216),
}
# The 16 fixed bytes of a PROXY header over TCP/UDP with an IPv4/IPv6 block and no TLVs
# (what Traefik sends) -> (family, transport, size): parse_v2 takes a short cut for them.
_BARE = {
    V2_SIGNATURE + bytes((0x21, family_byte, 0, block)): (family, transport, 16 + block)
    for family_byte, (family, transport, block) in _FAMILIES.items()
    if family is _AF_INET or family is _AF_INET6
}
# SSL sub-TLV -> SSLInfo field (0x21..0x27: text), decoded at their first occurrence.
_SSL_FIELDS = {
    0x21: "version", 0x22: "cn", 0x23: "cipher", 0x24: "sig_alg", 0x25: "key_alg",
    0x26: "group", 0x27: "sig_scheme",
}
_SSL_ASCII_SUBTYPES = frozenset((0x21, 0x23, 0x24, 0x25, 0x26, 0x27))


def tlv_error(tlv_type: int, value: bytes) -> Optional[str]:
    """Why a TLV value is invalid for its type, or ``None`` (shared with the encoders)."""
    if tlv_type == TYPE_CRC32C:
        if len(value) != CRC32C_SIZE:  # HAProxy rejects any other length
            return f"CRC32C TLV value is {len(value)} bytes, expected 4"
    elif tlv_type == TYPE_UNIQUE_ID:
        if len(value) > UNIQUE_ID_MAX:
            return f"UNIQUE_ID TLV value is {len(value)} bytes, at most 128 allowed"
    elif tlv_type == TYPE_AUTHORITY:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return "AUTHORITY TLV value is not valid UTF-8"
    elif tlv_type == TYPE_NETNS:
        if not value.isascii():
            return "NETNS TLV value is not US-ASCII"
    elif tlv_type == TYPE_SSL:
        return _ssl_error(value)
    return None


def _ssl_error(value: bytes) -> Optional[str]:
    """R-54..R-57: client(1) verify(4) then sub-TLVs that tile the value exactly."""
    if len(value) < SSL_FIXED_SIZE:
        return f"SSL TLV value is {len(value)} bytes, at least 5 required"
    pos, end = SSL_FIXED_SIZE, len(value)
    while pos < end:
        if end - pos < 3:
            return f"truncated SSL sub-TLV header at SSL value offset {pos}"
        sub_type = value[pos]
        sub_len = (value[pos + 1] << 8) | value[pos + 2]
        if pos + 3 + sub_len > end:
            return f"SSL sub-TLV 0x{sub_type:02x} at SSL value offset {pos} runs past the SSL TLV"
        sub_value = value[pos + 3 : pos + 3 + sub_len]
        if sub_type in _SSL_ASCII_SUBTYPES:
            if not sub_value.isascii():
                return f"SSL sub-TLV 0x{sub_type:02x} is not US-ASCII"
        elif sub_type == SSL_SUBTYPE_CN:
            try:
                sub_value.decode("utf-8")
            except UnicodeDecodeError:
                return "SSL sub-TLV 0x22 (CN) is not valid UTF-8"
        pos += 3 + sub_len
    return None


def decode_ssl(value: bytes) -> SSLInfo:
    """Decode an SSL TLV value (already validated by the parser).

    Raises:
        InvalidHeader: the value is malformed (only for values that did not come from
            :func:`proxyproto.parse`).
    """
    if len(value) < SSL_FIXED_SIZE:
        raise InvalidHeader(f"SSL TLV value is {len(value)} bytes, at least 5 required")
    fields: dict[str, object] = {}
    subs: list[TLV] = []
    pos, end = SSL_FIXED_SIZE, len(value)
    while pos < end:
        if end - pos < 3:
            raise InvalidHeader("truncated SSL sub-TLV header")
        sub_type = value[pos]
        sub_len = (value[pos + 1] << 8) | value[pos + 2]
        if pos + 3 + sub_len > end:
            raise InvalidHeader(f"SSL sub-TLV 0x{sub_type:02x} runs past the SSL TLV")
        sub_value = bytes(value[pos + 3 : pos + 3 + sub_len])
        subs.append(_new_header(TLV, (sub_type, sub_value)))
        name = _SSL_FIELDS.get(sub_type)
        if name is not None and name not in fields:
            encoding = "utf-8" if sub_type == SSL_SUBTYPE_CN else "ascii"
            try:
                fields[name] = sub_value.decode(encoding)
            except UnicodeDecodeError:
                raise InvalidHeader(
                    f"SSL sub-TLV 0x{sub_type:02x} is not valid {encoding}"
                ) from None
        elif sub_type == SSL_SUBTYPE_CLIENT_CERT and "client_cert" not in fields:
            fields["client_cert"] = sub_value
        pos += 3 + sub_len
    verify = int.from_bytes(value[1:5], "big")
    return SSLInfo(value[0], verify, sub_tlvs=tuple(subs), **fields)  # type: ignore[arg-type]


def _parse_tlvs(data: bytes, pos: int, end: int) -> tuple[TLV, ...]:
    """R-48..R-60: TLVs tile ``data[pos:end]`` exactly; CRC32C verified (R-51, A-11)."""
    tlvs = []
    crc_pos = -1
    while pos < end:
        if end - pos < 3:
            raise InvalidHeader(f"truncated TLV header: {end - pos} byte(s) left", pos)
        tlv_type = data[pos]
        size = (data[pos + 1] << 8) | data[pos + 2]
        if pos + 3 + size > end:
            raise InvalidHeader(
                f"TLV 0x{tlv_type:02x} of {size} bytes runs past the end of the header", pos
            )
        value = data[pos + 3 : pos + 3 + size]
        if tlv_type == TYPE_CRC32C and crc_pos >= 0:
            raise InvalidHeader("more than one CRC32C TLV", pos)
        error = tlv_error(tlv_type, value)
        if error is not None:
            raise InvalidHeader(error, pos)
        if tlv_type == TYPE_CRC32C:
            crc_pos = pos + 3
        tlvs.append(_new_header(TLV, (tlv_type, value)))
        pos += 3 + size
    if crc_pos >= 0:
        expected = int.from_bytes(data[crc_pos : crc_pos + 4], "big")
        actual = crc32c(data[:crc_pos] + b"\x00\x00\x00\x00" + data[crc_pos + 4 : end])
        if actual != expected:
            raise ChecksumMismatch(
                f"CRC32C mismatch: header says 0x{expected:08x}, computed 0x{actual:08x}",
                crc_pos - 3,
            )
    return tuple(tlvs)


def parse_v2(data: bytes, max_size: int) -> Union[ProxyHeader, int]:
    """The v2 header at the start of ``data`` (whose byte 0 is CR), or the number of
    further bytes it needs at least. Raises NoProxyHeader or InvalidHeader."""
    size = len(data)
    bare = _BARE.get(data[:V2_FIXED_SIZE])
    if bare is not None and size >= bare[2] <= max_size:
        # Short cut: PROXY over TCP/UDP, IPv4/IPv6 block, no TLV (what Traefik sends).
        src, dst = _address.inet_addresses(data, bare[0])
        return _new_header(ProxyHeader, (2, _PROXY, bare[0], bare[1], src, dst, (), bare[2]))
    present = min(size, 12)
    if data[:present] != V2_SIGNATURE[:present]:
        for offset in range(present):
            if data[offset] != V2_SIGNATURE[offset]:
                raise NoProxyHeader(f"not a PROXY header: byte {offset} breaks the v2 signature")
    if size < 13:
        return V2_FIXED_SIZE - size
    version_command = data[12]
    if version_command >> 4 != 2:
        raise InvalidHeader(f"unsupported v2 version {version_command >> 4}, expected 2", 12)
    command = version_command & 0x0F
    if command > 1:
        raise InvalidHeader(f"v2 command 0x{command:x} is neither LOCAL nor PROXY", 12)
    if size < 14:
        return V2_FIXED_SIZE - size
    family_byte = data[13]
    family_info = _FAMILIES.get(family_byte)
    if family_info is None:
        raise InvalidHeader(
            f"v2 family/transport byte 0x{family_byte:02x} is not one of the defined values", 13
        )
    if size < V2_FIXED_SIZE:
        return V2_FIXED_SIZE - size
    length = (data[14] << 8) | data[15]
    family, transport, block = family_info
    if command and length < block:
        raise InvalidHeader(
            f"v2 length {length} is shorter than the {block}-byte address block", 14
        )
    total = V2_FIXED_SIZE + length
    if total > max_size:
        raise HeaderTooLarge(f"v2 header of {total} bytes exceeds the limit of {max_size}", 14)
    if size < total:
        return total - size
    start = V2_FIXED_SIZE + block
    if not command:
        # LOCAL -> real endpoints; honour len; TLVs after the block.
        tlvs = _parse_tlvs(data, start, total) if length >= block else ()
        return _new_header(
            ProxyHeader, (2, _LOCAL, family, transport, None, None, tlvs, total)
        )
    source: Optional[Address]
    destination: Optional[Address]
    if family is _AF_INET or family is _AF_INET6:
        source, destination = _address.inet_addresses(data, family)
    elif family is _AF_UNIX:
        source = _address.unix_path(data[16 : 16 + UNIX_PATH_SIZE])
        destination = _address.unix_path(data[16 + UNIX_PATH_SIZE : start])
    else:  # PROXY with AF_UNSPEC: accepted, use the real endpoints
        source = destination = None
    tlvs = _parse_tlvs(data, start, total) if total > start else ()
    return _new_header(
        ProxyHeader, (2, _PROXY, family, transport, source, destination, tlvs, total)
    )
