"""The pure-Python implementation of the hot path: ``parse``, ``encode_v1``, ``encode_v2``.

``_fast.pyx`` is its Cython twin: same names, same signatures, same results, same
exception classes and messages. Comments cite the rules of ``shared/spec-checklist.md``
(R-n) and the sections of HAProxy's ``doc/proxy-protocol.txt`` ([SPEC §x]).
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterable
from typing import Optional, Union

from ._errors import (
    ChecksumMismatch,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
)
from ._header import TLV, Address, Command, ProxyHeader

__all__ = [
    "MAX_V2_SIZE", "V1_MAX_LENGTH", "crc32c", "encode_v1", "encode_v2", "parse", "parse_or_needed",
]

#: The v2 signature, 12 bytes ([SPEC §2.2], R-29).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest v1 line, CRLF included (R-22, R-24).
V1_MAX_LENGTH = 107
#: The largest v2 header the spec allows: 16 fixed bytes + a 16-bit length (R-39).
MAX_V2_SIZE = 16 + 0xFFFF

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

_INET4 = struct.Struct("!BBBBBBBBHH")
_INET6 = struct.Struct("!16s16sHH")
_new_header = tuple.__new__
_DECIMAL = tuple(str(i) for i in range(256))  # octet -> text, for IPv4 addresses
# The 16 fixed bytes of a PROXY header over TCP/UDP with an IPv4/IPv6 block and no TLVs
# (what Traefik sends) -> (family, transport, size): parse() takes a short cut for them.
_V2_BARE = {
    V2_SIGNATURE + bytes((0x21, family_byte, 0, block)): (family, transport, 16 + block)
    for family_byte, (family, transport, block) in {
        0x11: (_AF_INET, _STREAM, 12),
        0x12: (_AF_INET, _DGRAM, 12),
        0x21: (_AF_INET6, _STREAM, 36),
        0x22: (_AF_INET6, _DGRAM, 36),
    }.items()
}

_TYPE_CRC32C = 0x03
_TYPE_AUTHORITY = 0x02
_TYPE_UNIQUE_ID = 0x05
_TYPE_SSL = 0x20
_TYPE_NETNS = 0x30
_UNIQUE_ID_MAX = 128
_SSL_ASCII_SUBTYPES = frozenset((0x21, 0x23, 0x24, 0x25, 0x26, 0x27))
_SSL_SUBTYPE_CN = 0x22

# ---------------------------------------------------------------------------------------
# CRC32C (Castagnoli, RFC 4960 Appendix B), as the spec requires ([SPEC §2.2.3], R-50/51).


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc32c_table()
# Slicing-by-4: _CRC_BY4[k][i] is the CRC of byte i followed by k zero bytes.
_CRC_BY4 = [_CRC_TABLE]
for _ in range(3):
    _CRC_BY4.append(tuple((c >> 8) ^ _CRC_TABLE[c & 0xFF] for c in _CRC_BY4[-1]))
_CRC_T0, _CRC_T1, _CRC_T2, _CRC_T3 = _CRC_BY4
_LE32 = struct.Struct("<I")


def crc32c(data: Union[bytes, bytearray, memoryview], value: int = 0) -> int:
    """Return the CRC-32C (Castagnoli) of ``data``, continuing from ``value``.

    ``crc32c(b"123456789") == 0xE3069283``.
    """
    t0, t1, t2, t3 = _CRC_T0, _CRC_T1, _CRC_T2, _CRC_T3
    crc = value ^ 0xFFFFFFFF
    # A bytes subclass is read through the buffer protocol, never its __bytes__.
    data = memoryview(data).tobytes() if isinstance(data, bytes) else bytes(data)
    if 0 <= crc <= 0xFFFFFFFF:  # four bytes a step (a wider value keeps the bytewise loop)
        whole = len(data) & ~3
        for (word,) in _LE32.iter_unpack(data[:whole]):
            x = word ^ crc
            crc = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
        data = data[whole:]
    for byte in data:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------
# Text address syntax shared by the v1 parser and both encoders.

_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rb"(?:%s\.){3}%s" % (_OCTET, _OCTET))
_PORT_RE = re.compile(rb"0|[1-9][0-9]{0,4}")
_IPV4_PREFIX_RE = re.compile(rb"[0-9.]*")
_TCP4_LINE_RE = re.compile(
    rb"PROXY TCP4 ((?:%s\.){3}%s) ((?:%s\.){3}%s) (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4})\r\n"
    % ((_OCTET,) * 4)
)
_TCP6_LINE_RE = re.compile(
    rb"PROXY TCP6 ([0-9A-Fa-f:.]{2,45}) ([0-9A-Fa-f:.]{2,45}) (0|[1-9][0-9]{0,4}) "
    rb"(0|[1-9][0-9]{0,4})\r\n"
)


def _ipv6_pattern() -> bytes:
    """RFC 4291 section 2.2 as one pattern: eight groups; six groups and a dotted IPv4 tail
    (which stands for two); or a "::" standing for at least one group, with at most seven
    groups (five before an IPv4 tail) around it."""
    group = rb"[0-9A-Fa-f]{1,4}"
    ipv4 = rb"(?:%s\.){3}%s" % (_OCTET, _OCTET)

    def groups(n: int) -> bytes:  # exactly n groups, ':' between them
        return b"" if n == 0 else group + b"(?::%s){%d}" % (group, n - 1)

    forms = [groups(8), groups(6) + b":" + ipv4]
    for head in range(8):
        tail = b"" if head == 7 else b"(?:%s(?::%s){0,%d})?" % (group, group, 6 - head)
        forms.append(groups(head) + b"::" + tail)
    for head in range(6):
        forms.append(groups(head) + b"::" + b"(?:%s:){0,%d}" % (group, 5 - head) + ipv4)
    return b"|".join(b"(?:%s)" % form for form in forms)


_IPV6_RE = re.compile(_ipv6_pattern())


def _is_ipv4(text: bytes) -> bool:
    """Dotted quad, four decimal octets 0..255, no leading zeros (R-18)."""
    return _IPV4_RE.fullmatch(text) is not None


def _is_ipv6(text: bytes) -> bool:
    """RFC 4291 text: 1-4 hex digits a group, one ``::`` at most, optional dotted IPv4 tail."""
    return 2 <= len(text) <= 45 and _IPV6_RE.fullmatch(text) is not None


def _is_port(text: bytes) -> bool:
    """Decimal 0..65535, ASCII digits only, no sign and no leading zero (R-21, A-15)."""
    return _PORT_RE.fullmatch(text) is not None and int(text) <= 0xFFFF


def _canonical_ipv6(text: bytes) -> str:
    return socket.inet_ntop(_AF_INET6, socket.inet_pton(_AF_INET6, text.decode("ascii")))


# ---------------------------------------------------------------------------------------
# Partial v1 input: is this a prefix of a valid field, and how many bytes at least remain?

_V1_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")
# Shortest text of each field after the protocol: (src, dst, sport, dport).
_V1_MIN_FIELDS = {b"TCP4": (7, 7, 1, 1), b"TCP6": (2, 2, 1, 1)}


def _ipv4_completion(text: bytes) -> int:
    """Bytes needed to complete a valid IPv4 prefix, or -1 if ``text`` is no such prefix."""
    if _IPV4_PREFIX_RE.fullmatch(text) is None:
        return -1
    octets = text.split(b".")
    if len(octets) > 4:
        return -1
    for octet in octets[:-1]:
        if _IPV4_RE.fullmatch(b"0.0.0." + octet) is None:
            return -1
    last = octets[-1]
    if last and _IPV4_RE.fullmatch(b"0.0.0." + last) is None:
        return -1
    return (4 - len(octets)) * 2 + (0 if last else 1)


def _ipv6_completion(text: bytes) -> int:
    """Bytes needed to complete a valid IPv6 prefix, or -1 if ``text`` is no such prefix."""
    if b"." in text:
        colon = text.rfind(b":")
        if colon < 0:
            return -1
        tail = text[colon + 1 :]
        need = _ipv4_completion(tail)
        if need < 0:
            return -1
        completed = tail + (b"0" if not tail or tail.endswith(b".") else b"")
        completed += b".0" * (3 - tail.count(b"."))
        return need if _is_ipv6(text[: colon + 1] + completed) else -1
    for suffix in (b"", b"0", b":", b"::"):
        if _is_ipv6(text + suffix):
            return len(suffix)
    return -1


def _port_completion(text: bytes) -> int:
    if not text:
        return 1
    return 0 if _is_port(text) else -1


# ---------------------------------------------------------------------------------------
# Version 1 ([SPEC §2.1])


def _v1_field_error(protocol: bytes, index: int, field: bytes) -> Optional[str]:
    """Why a complete field of a TCP4/TCP6 line is invalid, or ``None`` if it is valid."""
    if not field:
        return "empty v1 field (two spaces in a row, or a space before CRLF)"
    if index < 2:
        which = "source" if index == 0 else "destination"
        if protocol == b"TCP4":
            if not _is_ipv4(field):
                return f"invalid IPv4 {which} address {field!r} in a TCP4 line"
        elif not _is_ipv6(field):
            return f"invalid IPv6 {which} address {field!r} in a TCP6 line"
        return None
    if not _is_port(field):
        which = "source" if index == 2 else "destination"
        return f"invalid {which} port {field!r}"
    return None


def _v1_check_line_breaks(buf: bytes, complete: bool) -> None:
    """R-26: only CRLF ends the line; a lone CR or LF is never accepted.

    In an incomplete line a CR may stand last, waiting for its LF.
    """
    cr = buf.find(b"\r")
    if cr == len(buf) - 1 and not complete:
        cr = -1
    lf = buf.find(b"\n")
    if cr >= 0 and (lf < 0 or cr < lf):
        raise InvalidHeader("CR inside a v1 line: only CRLF may end it", cr)
    if lf >= 0:
        raise InvalidHeader("LF inside a v1 line: only CRLF may end it", lf)


def _parse_v1_line(line: bytes) -> ProxyHeader:
    """Parse a complete v1 line (``line`` excludes the CRLF)."""
    _v1_check_line_breaks(line, True)
    if line[5:6] != b" ":
        raise InvalidHeader("expected a single space after 'PROXY'", 5)
    fields = line[6:].split(b" ")
    protocol = fields[0]
    length = len(line) + 2
    if protocol == b"UNKNOWN":
        # anything after UNKNOWN is ignored; use the real endpoints.
        return _new_header(
            ProxyHeader, (1, _PROXY, _AF_UNSPEC, None, None, None, (), length)
        )
    if protocol not in _V1_MIN_FIELDS:
        raise InvalidHeader(
            f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
        )
    offset = 6 + len(protocol) + 1
    for index, field in enumerate(fields[1:]):
        if index == 4:
            raise InvalidHeader("too many fields in a v1 line", offset - 1)
        error = _v1_field_error(protocol, index, field)
        if error is not None:
            raise InvalidHeader(error, offset)
        offset += len(field) + 1
    if len(fields) < 5:
        raise InvalidHeader(
            f"v1 {protocol.decode()} line has {len(fields) - 1} of its 4 address fields",
            len(line),
        )
    if protocol == b"TCP4":
        family = _AF_INET
        src_host, dst_host = fields[1].decode("ascii"), fields[2].decode("ascii")
    else:
        family = _AF_INET6
        src_host, dst_host = _canonical_ipv6(fields[1]), _canonical_ipv6(fields[2])
    return _new_header(
        ProxyHeader,
        (
            1,
            _PROXY,
            family,
            _STREAM,
            (src_host, int(fields[3])),
            (dst_host, int(fields[4])),
            (),
            length,
        ),
    )


def _v1_needed(buf: bytes) -> int:
    """Validate an incomplete v1 line (no CRLF yet); return the bytes it still needs."""
    _v1_check_line_breaks(buf, False)
    if buf.endswith(b"\r"):
        # Only the LF can follow: what precedes must already be a whole line.
        _parse_v1_line(buf[:-1])
        return 1
    if len(buf) < 6:
        return 15 - len(buf)  # the shortest line is "PROXY UNKNOWN\r\n"
    if buf[5] != 0x20:
        raise InvalidHeader("expected a single space after 'PROXY'", 5)
    fields = buf[6:].split(b" ")
    protocol = fields[0]
    if len(fields) == 1:  # the protocol itself is still partial
        best = -1
        for candidate in _V1_PROTOCOLS:
            if candidate.startswith(protocol):
                rest = _V1_MIN_FIELDS.get(candidate, ())
                need = len(candidate) - len(protocol) + sum(rest) + len(rest) + 2
                best = need if best < 0 else min(best, need)
        if best < 0:
            raise InvalidHeader(
                f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
            )
        return best
    if protocol == b"UNKNOWN":
        return 2
    if protocol not in _V1_MIN_FIELDS:
        raise InvalidHeader(
            f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
        )
    offset = 6 + len(protocol) + 1
    addresses = fields[1:]
    for index, field in enumerate(addresses[:-1]):
        if index == 4:
            raise InvalidHeader("too many fields in a v1 line", offset - 1)
        error = _v1_field_error(protocol, index, field)
        if error is not None:
            raise InvalidHeader(error, offset)
        offset += len(field) + 1
    index = len(addresses) - 1
    if index == 4:
        raise InvalidHeader("too many fields in a v1 line", offset - 1)
    partial = addresses[-1]
    if index < 2:
        need = (_ipv4_completion if protocol == b"TCP4" else _ipv6_completion)(partial)
    else:
        need = _port_completion(partial)
    if need < 0:
        error = _v1_field_error(protocol, index, partial)
        raise InvalidHeader(error or f"invalid v1 field {partial!r}", offset)
    minimum = _V1_MIN_FIELDS[protocol]
    return need + sum(minimum[index + 1 :]) + (3 - index) + 2


def _parse_v1(data: bytes, size: int) -> ProxyHeader:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end >= 0:
        return _parse_v1_line(data[:end])
    buf = data[:V1_MAX_LENGTH]
    needed = _v1_needed(buf)
    if len(buf) + needed > V1_MAX_LENGTH:
        raise HeaderTooLarge(
            f"no CRLF within the first {V1_MAX_LENGTH} bytes of a v1 header",
            min(len(buf), V1_MAX_LENGTH),
        )
    raise IncompleteHeader(needed)


# ---------------------------------------------------------------------------------------
# Version 2 ([SPEC §2.2])


def _tlv_error(tlv_type: int, value: bytes) -> Optional[str]:
    """Why a TLV value is invalid for its type, or ``None`` (shared with the encoders)."""
    if tlv_type == _TYPE_CRC32C:
        if len(value) != 4:  # HAProxy rejects any other length
            return f"CRC32C TLV value is {len(value)} bytes, expected 4"
    elif tlv_type == _TYPE_UNIQUE_ID:
        if len(value) > _UNIQUE_ID_MAX:
            return f"UNIQUE_ID TLV value is {len(value)} bytes, at most 128 allowed"
    elif tlv_type == _TYPE_AUTHORITY:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return "AUTHORITY TLV value is not valid UTF-8"
    elif tlv_type == _TYPE_NETNS:
        if not value.isascii():
            return "NETNS TLV value is not US-ASCII"
    elif tlv_type == _TYPE_SSL:
        return _ssl_error(value)
    return None


def _ssl_error(value: bytes) -> Optional[str]:
    """R-54..R-57: client(1) verify(4) then sub-TLVs that tile the value exactly."""
    if len(value) < 5:
        return f"SSL TLV value is {len(value)} bytes, at least 5 required"
    pos, end = 5, len(value)
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
        elif sub_type == _SSL_SUBTYPE_CN:
            try:
                sub_value.decode("utf-8")
            except UnicodeDecodeError:
                return "SSL sub-TLV 0x22 (CN) is not valid UTF-8"
        pos += 3 + sub_len
    return None


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
        if tlv_type == _TYPE_CRC32C and crc_pos >= 0:
            raise InvalidHeader("more than one CRC32C TLV", pos)
        error = _tlv_error(tlv_type, value)
        if error is not None:
            raise InvalidHeader(error, pos)
        if tlv_type == _TYPE_CRC32C:
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


def _unix_path(raw: bytes) -> Union[str, bytes]:
    """A-9: the path up to the first NUL; a Linux abstract name (leading NUL) stays bytes."""
    if raw[:1] == b"\x00":
        name = raw.rstrip(b"\x00")
        if name:
            return name
        return ""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


def _inet_addresses(data: bytes, family: int) -> tuple[Address, Address]:
    """The (host, port) pairs of an INET or INET6 address block at offset 16."""
    if family is _AF_INET:
        a, b, c, d, e, f, g, h, sport, dport = _INET4.unpack_from(data, 16)
        t = _DECIMAL
        return (f"{t[a]}.{t[b]}.{t[c]}.{t[d]}", sport), (f"{t[e]}.{t[f]}.{t[g]}.{t[h]}", dport)
    src, dst, sport, dport = _INET6.unpack_from(data, 16)
    return (socket.inet_ntop(_AF_INET6, src), sport), (socket.inet_ntop(_AF_INET6, dst), dport)


def _parse_v2(data: bytes, size: int, max_size: int) -> ProxyHeader:
    present = min(size, 12)
    if data[:present] != V2_SIGNATURE[:present]:
        for offset in range(present):
            if data[offset] != V2_SIGNATURE[offset]:
                raise NoProxyHeader(f"not a PROXY header: byte {offset} breaks the v2 signature")
    if size < 13:
        raise IncompleteHeader(16 - size)
    version_command = data[12]
    if version_command >> 4 != 2:
        raise InvalidHeader(f"unsupported v2 version {version_command >> 4}, expected 2", 12)
    command = version_command & 0x0F
    if command > 1:
        raise InvalidHeader(f"v2 command 0x{command:x} is neither LOCAL nor PROXY", 12)
    if size < 14:
        raise IncompleteHeader(16 - size)
    family_byte = data[13]
    family_info = _FAMILIES.get(family_byte)
    if family_info is None:
        raise InvalidHeader(
            f"v2 family/transport byte 0x{family_byte:02x} is not one of the defined values", 13
        )
    if size < 16:
        raise IncompleteHeader(16 - size)
    length = (data[14] << 8) | data[15]
    family, transport, block = family_info
    if command and length < block:
        raise InvalidHeader(
            f"v2 length {length} is shorter than the {block}-byte address block", 14
        )
    total = 16 + length
    if total > max_size:
        raise HeaderTooLarge(f"v2 header of {total} bytes exceeds the limit of {max_size}", 14)
    if size < total:
        raise IncompleteHeader(total - size)
    if not command:
        # LOCAL -> real endpoints; honour len; TLVs after the block.
        tlvs = _parse_tlvs(data, 16 + block, total) if length >= block else ()
        return _new_header(
            ProxyHeader, (2, _LOCAL, family, transport, None, None, tlvs, total)
        )
    source: Optional[Address]
    destination: Optional[Address]
    if family is _AF_INET or family is _AF_INET6:
        source, destination = _inet_addresses(data, family)
    elif family is _AF_UNIX:
        source = _unix_path(data[16:124])
        destination = _unix_path(data[124:232])
    else:  # PROXY with AF_UNSPEC: accepted, use the real endpoints
        source = destination = None
    tlvs = _parse_tlvs(data, 16 + block, total) if total > 16 + block else ()
    return _new_header(
        ProxyHeader, (2, _PROXY, family, transport, source, destination, tlvs, total)
    )


# ---------------------------------------------------------------------------------------
# Entry point


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
    if type(data) is not bytes:
        if isinstance(data, memoryview) and (data.ndim != 1 or data.itemsize != 1):
            data = bytes(data)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data[:MAX_V2_SIZE])
        elif isinstance(data, bytes):
            data = memoryview(data).tobytes()  # the real buffer, never __bytes__ (issue 9)
        else:
            raise TypeError(
                f"data must be bytes, bytearray or memoryview, not {type(data).__name__}"
            )
    if type(max_size) is not int:
        raise TypeError(f"max_size must be an int, not {type(max_size).__name__}")
    if max_size < 16:
        raise ValueError(f"max_size must be at least 16, not {max_size}")
    size = len(data)
    if size == 0:
        raise IncompleteHeader(15)
    first = data[0]
    if first == 0x0D:
        bare = _V2_BARE.get(data[:16])
        if bare is not None and size >= bare[2] <= max_size:
            # Short cut: PROXY over TCP/UDP, IPv4/IPv6 block, no TLV (what Traefik sends).
            source, destination = _inet_addresses(data, bare[0])
            return _new_header(
                ProxyHeader, (2, _PROXY, bare[0], bare[1], source, destination, (), bare[2])
            )
        return _parse_v2(data, size, max_size)
    if first == 0x50:
        present = min(size, 5)
        if not data.startswith(b"PROXY") and data[:present] != b"PROXY"[:present]:
            for offset in range(present):
                if data[offset] != b"PROXY"[offset]:
                    raise NoProxyHeader(
                        f"not a PROXY header: byte {offset} breaks the v1 signature"
                    )
        # Short cuts for the usual complete lines; anything else takes _parse_v1.
        if data.startswith(b"PROXY UNKNOWN\r\n"):
            return _new_header(ProxyHeader, (1, _PROXY, _AF_UNSPEC, None, None, None, (), 15))
        if size >= 22:
            tcp4 = data[9] == 0x34
            match = (_TCP4_LINE_RE if tcp4 else _TCP6_LINE_RE).match(data)
            if match is not None:
                src, dst, sport_text, dport_text = match.groups()
                sport, dport, end = int(sport_text), int(dport_text), match.end()
                if sport > 0xFFFF or dport > 0xFFFF or end > V1_MAX_LENGTH:
                    pass
                elif tcp4:
                    return _new_header(
                        ProxyHeader,
                        (1, _PROXY, _AF_INET, _STREAM, (src.decode(), sport),
                         (dst.decode(), dport), (), end),
                    )
                elif _is_ipv6(src) and _is_ipv6(dst):
                    return _new_header(
                        ProxyHeader,
                        (1, _PROXY, _AF_INET6, _STREAM, (_canonical_ipv6(src), sport),
                         (_canonical_ipv6(dst), dport), (), end),
                    )
        return _parse_v1(data, size)
    raise NoProxyHeader("not a PROXY header: byte 0 starts neither a v1 nor a v2 signature")


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
    try:
        return parse(data, max_size=max_size)
    except IncompleteHeader as exc:
        return exc.needed


# ---------------------------------------------------------------------------------------
# Encoding


def _pack_host(host: object, what: str) -> bytes:
    """A host as packed bytes (4 or 16), strictly parsed like the v1 parser does."""
    if type(host) is not str:
        import ipaddress

        if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            host = str(host)
        else:
            raise TypeError(f"{what} host must be a str, not {type(host).__name__}")
    assert isinstance(host, str)
    try:
        text = host.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} host {host!r} is not an IP address") from None
    if _is_ipv4(text):
        return socket.inet_pton(_AF_INET, host)
    if _is_ipv6(text):
        return socket.inet_pton(_AF_INET6, host)
    raise ValueError(f"{what} host {host!r} is not an IPv4 or IPv6 address")


def _pack_port(port: object, what: str) -> int:
    if type(port) is not int:
        raise TypeError(f"{what} port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port {port} is outside 0..65535")
    return port


def _inet_pair(source: object, destination: object) -> tuple[bytes, int, bytes, int]:
    """Packed hosts and ports; a mixed IPv4/IPv6 pair maps IPv4 to ``::ffff:a.b.c.d``."""
    for address, what in ((source, "source"), (destination, "destination")):
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"{what} must be a (host, port) tuple, a UNIX path or None")
    src_host = _pack_host(source[0], "source")  # type: ignore[index]
    src_port = _pack_port(source[1], "source")  # type: ignore[index]
    dst_host = _pack_host(destination[0], "destination")  # type: ignore[index]
    dst_port = _pack_port(destination[1], "destination")  # type: ignore[index]
    if len(src_host) != len(dst_host):
        if len(src_host) == 4:
            src_host = b"\x00" * 10 + b"\xff\xff" + src_host
        else:
            dst_host = b"\x00" * 10 + b"\xff\xff" + dst_host
    return src_host, src_port, dst_host, dst_port


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
    src_host, src_port, dst_host, dst_port = _inet_pair(source, destination)
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


def _pack_unix_path(path: Union[str, bytes], what: str) -> bytes:
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)
    if len(raw) > 108:
        raise ValueError(f"{what} UNIX path is {len(raw)} bytes, at most 108 fit")
    abstract = raw[:1] == b"\x00"
    # A Linux abstract name may hold NUL bytes anywhere after the first (parse keeps them).
    if (b"\x00" in raw and not abstract) or (abstract and isinstance(path, str)):
        raise ValueError(
            f"{what} UNIX path holds a NUL byte (pass an abstract name as bytes starting with NUL)"
        )
    if abstract and raw.endswith(b"\x00"):
        raise ValueError(f"{what} abstract UNIX name must not end with a NUL byte")
    return raw.ljust(108, b"\x00")


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
        block = _pack_unix_path(source, "source") + _pack_unix_path(destination, "destination")
    else:
        src_host, src_port, dst_host, dst_port = _inet_pair(source, destination)
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
        if tlv_type == _TYPE_CRC32C:
            raise ValueError("pass crc32c=True instead of a CRC32C TLV")
        error = _tlv_error(tlv_type, value)
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
        header = header[:-4] + _crc32c_checksum(header).to_bytes(4, "big")
    return header


def _crc32c_checksum(header: bytes) -> int:
    return crc32c(header)
