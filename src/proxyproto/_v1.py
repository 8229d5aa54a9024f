"""Version 1 (text) parsing ([SPEC §2.1], R-12..R-26), with the "needed" arithmetic for a
line whose CRLF has not arrived yet.

The reference; ``_fast_v1.pyx`` is its C twin (complete, valid lines; the C code leaves
partial and invalid lines to this module). One path: a complete line is matched once by
the line pattern of its protocol; only a line that fails it is taken apart field by field,
to say what is wrong and where.
"""

from __future__ import annotations

import re
import socket
from typing import NoReturn, Optional, Union

from . import _address
from ._address import OCTET, PORT
from ._constants import V1_MAX_LENGTH, V1_MIN_LENGTH
from ._errors import HeaderTooLarge, InvalidHeader, NoProxyHeader
from ._header import Command, ProxyHeader

__all__ = ["parse_line", "parse_v1"]

_new_header = tuple.__new__
_PROXY = Command.PROXY
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_AF_UNSPEC = socket.AF_UNSPEC
_STREAM = socket.SOCK_STREAM

_IPV4 = rb"((?:%s\.){3}%s)" % (OCTET, OCTET)
_IPV6_TEXT = rb"([0-9A-Fa-f:.]{2,45})"  # then checked by _address.is_ipv6
# A whole valid line but for the CRLF, by the byte at offset 9 ("4" or "6").
_LINE_RE = {
    0x34: re.compile(rb"PROXY TCP4 %s %s (%s) (%s)" % (_IPV4, _IPV4, PORT, PORT)),
    0x36: re.compile(rb"PROXY TCP6 %s %s (%s) (%s)" % (_IPV6_TEXT, _IPV6_TEXT, PORT, PORT)),
}
_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")
# Shortest text of each field after the protocol: (src, dst, sport, dport).
_MIN_FIELDS = {b"TCP4": (7, 7, 1, 1), b"TCP6": (2, 2, 1, 1)}


def parse_line(line: bytes) -> ProxyHeader:
    """Parse a complete v1 line (``line`` excludes the CRLF); InvalidHeader if it is not one."""
    length = len(line) + 2
    if len(line) > 9:
        pattern = _LINE_RE.get(line[9])
        match = pattern.fullmatch(line) if pattern is not None else None
        if match is not None:
            src, dst, sport_text, dport_text = match.groups()
            sport, dport = int(sport_text), int(dport_text)
            if sport <= 0xFFFF and dport <= 0xFFFF:
                if line[9] == 0x34:
                    return _new_header(
                        ProxyHeader,
                        (1, _PROXY, _AF_INET, _STREAM, (src.decode(), sport),
                         (dst.decode(), dport), (), length),
                    )
                if _address.is_ipv6(src) and _address.is_ipv6(dst):
                    return _new_header(
                        ProxyHeader,
                        (1, _PROXY, _AF_INET6, _STREAM, (_address.canonical_ipv6(src), sport),
                         (_address.canonical_ipv6(dst), dport), (), length),
                    )
    if line[:13] == b"PROXY UNKNOWN" and line[13:14] in (b"", b" "):
        # anything after UNKNOWN is ignored; use the real endpoints.
        _check_line_breaks(line, True)
        return _new_header(ProxyHeader, (1, _PROXY, _AF_UNSPEC, None, None, None, (), length))
    _reject_line(line)


def _reject_line(line: bytes) -> NoReturn:
    """Raise what is wrong with a complete line that is neither valid TCP4/TCP6 nor UNKNOWN."""
    _check_line_breaks(line, True)
    if line[5:6] != b" ":
        raise InvalidHeader("expected a single space after 'PROXY'", 5)
    fields = line[6:].split(b" ")
    protocol = fields[0]
    if protocol not in _MIN_FIELDS:
        raise InvalidHeader(
            f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
        )
    _check_fields(protocol, fields[1:], 6 + len(protocol) + 1)
    # Four valid fields would have matched the line pattern: some are missing.
    raise InvalidHeader(
        f"v1 {protocol.decode()} line has {len(fields) - 1} of its 4 address fields", len(line)
    )


def _check_fields(protocol: bytes, fields: list[bytes], offset: int) -> int:
    """Raise for a fifth field or the first invalid one of these complete fields (the first
    at ``offset``); return the offset after them."""
    for index, field in enumerate(fields):
        if index == 4:
            raise InvalidHeader("too many fields in a v1 line", offset - 1)
        error = _field_error(protocol, index, field)
        if error is not None:
            raise InvalidHeader(error, offset)
        offset += len(field) + 1
    return offset


def _field_error(protocol: bytes, index: int, field: bytes) -> Optional[str]:
    """Why a complete field of a TCP4/TCP6 line is invalid, or ``None`` if it is valid."""
    if not field:
        return "empty v1 field (two spaces in a row, or a space before CRLF)"
    if index < 2:
        which = "source" if index == 0 else "destination"
        if protocol == b"TCP4":
            if not _address.is_ipv4(field):
                return f"invalid IPv4 {which} address {field!r} in a TCP4 line"
        elif not _address.is_ipv6(field):
            return f"invalid IPv6 {which} address {field!r} in a TCP6 line"
        return None
    if not _address.is_port(field):
        which = "source" if index == 2 else "destination"
        return f"invalid {which} port {field!r}"
    return None


def _check_line_breaks(buf: bytes, complete: bool) -> None:
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


def _needed(buf: bytes) -> int:
    """Validate an incomplete v1 line (no CRLF yet); return the bytes it still needs."""
    _check_line_breaks(buf, False)
    if buf.endswith(b"\r"):
        # Only the LF can follow: what precedes must already be a whole line.
        parse_line(buf[:-1])
        return 1
    if len(buf) < 6:
        return V1_MIN_LENGTH - len(buf)
    if buf[5] != 0x20:
        raise InvalidHeader("expected a single space after 'PROXY'", 5)
    fields = buf[6:].split(b" ")
    protocol = fields[0]
    if len(fields) == 1:  # the protocol itself is still partial
        best = -1
        for candidate in _PROTOCOLS:
            if candidate.startswith(protocol):
                rest = _MIN_FIELDS.get(candidate, ())
                need = len(candidate) - len(protocol) + sum(rest) + len(rest) + 2
                best = need if best < 0 else min(best, need)
        if best < 0:
            raise InvalidHeader(
                f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
            )
        return best
    if protocol == b"UNKNOWN":
        return 2
    if protocol not in _MIN_FIELDS:
        raise InvalidHeader(
            f"unknown v1 protocol {protocol!r} (expected TCP4, TCP6 or UNKNOWN)", 6
        )
    addresses = fields[1:]
    offset = _check_fields(protocol, addresses[:-1], 6 + len(protocol) + 1)
    index = len(addresses) - 1
    if index == 4:
        raise InvalidHeader("too many fields in a v1 line", offset - 1)
    partial = addresses[-1]
    if index < 2:
        complete = (
            _address.ipv4_completion if protocol == b"TCP4" else _address.ipv6_completion
        )
        need = complete(partial)
    else:
        need = _address.port_completion(partial)
    if need < 0:
        error = _field_error(protocol, index, partial)
        raise InvalidHeader(error or f"invalid v1 field {partial!r}", offset)
    minimum = _MIN_FIELDS[protocol]
    return need + sum(minimum[index + 1 :]) + (3 - index) + 2


def parse_v1(data: bytes, max_size: int = 0) -> Union[ProxyHeader, int]:
    """The v1 header at the start of ``data`` (whose byte 0 is ``P``), or the number of
    further bytes a valid line needs at least. Raises NoProxyHeader or InvalidHeader.

    ``max_size`` (the v2 cap) is not used: a v1 line is capped at 107 bytes; the
    parameter gives both parsers one signature for the facade's dispatch."""
    present = min(len(data), 5)
    if not data.startswith(b"PROXY") and data[:present] != b"PROXY"[:present]:
        for offset in range(present):
            if data[offset] != b"PROXY"[offset]:
                raise NoProxyHeader(f"not a PROXY header: byte {offset} breaks the v1 signature")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end >= 0:
        return parse_line(data[:end])
    buf = data[:V1_MAX_LENGTH]
    needed = _needed(buf)
    if len(buf) + needed > V1_MAX_LENGTH:
        raise HeaderTooLarge(
            f"no CRLF within the first {V1_MAX_LENGTH} bytes of a v1 header",
            min(len(buf), V1_MAX_LENGTH),
        )
    return needed
