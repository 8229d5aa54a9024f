"""Address grammar: the v1 text forms, their "how much is missing" arithmetic, the v2
binary blocks as text, and the packing the encoders need (R-18, R-19, R-21, A-4, A-9).

The reference; ``_fast_address.pxi`` is its C twin.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import Union

from ._constants import UNIX_PATH_SIZE
from ._header import Address

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6

OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
PORT = rb"(?:0|[1-9][0-9]{0,4})"
_IPV4_RE = re.compile(rb"(?:%s\.){3}%s" % (OCTET, OCTET))
_PORT_RE = re.compile(PORT)
_IPV4_PREFIX_RE = re.compile(rb"[0-9.]*")


def _ipv6_pattern() -> bytes:
    """RFC 4291 section 2.2 as one pattern: eight groups; six groups and a dotted IPv4 tail
    (which stands for two); or a "::" standing for at least one group, with at most seven
    groups (five before an IPv4 tail) around it."""
    group = rb"[0-9A-Fa-f]{1,4}"
    ipv4 = rb"(?:%s\.){3}%s" % (OCTET, OCTET)

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


def is_ipv4(text: bytes) -> bool:
    """Dotted quad, four decimal octets 0..255, no leading zeros (R-18)."""
    return _IPV4_RE.fullmatch(text) is not None


def is_ipv6(text: bytes) -> bool:
    """RFC 4291 text: 1-4 hex digits a group, one ``::`` at most, optional dotted IPv4 tail."""
    return 2 <= len(text) <= 45 and _IPV6_RE.fullmatch(text) is not None


def is_port(text: bytes) -> bool:
    """Decimal 0..65535, ASCII digits only, no sign and no leading zero (R-21, A-15)."""
    return _PORT_RE.fullmatch(text) is not None and int(text) <= 0xFFFF


def canonical_ipv6(text: bytes) -> str:
    """Valid IPv6 text as ``socket.inet_ntop`` writes it."""
    return socket.inet_ntop(_AF_INET6, socket.inet_pton(_AF_INET6, text.decode("ascii")))


# ---------------------------------------------------------------------------------------
# Partial v1 fields: is this a prefix of a valid field, and how many bytes at least remain?


def ipv4_completion(text: bytes) -> int:
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


def ipv6_completion(text: bytes) -> int:
    """Bytes needed to complete a valid IPv6 prefix, or -1 if ``text`` is no such prefix."""
    if b"." in text:
        colon = text.rfind(b":")
        if colon < 0:
            return -1
        tail = text[colon + 1 :]
        need = ipv4_completion(tail)
        if need < 0:
            return -1
        completed = tail + (b"0" if not tail or tail.endswith(b".") else b"")
        completed += b".0" * (3 - tail.count(b"."))
        return need if is_ipv6(text[: colon + 1] + completed) else -1
    for suffix in (b"", b"0", b":", b"::"):
        if is_ipv6(text + suffix):
            return len(suffix)
    return -1


def port_completion(text: bytes) -> int:
    """Bytes needed to complete a valid port prefix (0 or 1), or -1."""
    if not text:
        return 1
    return 0 if is_port(text) else -1


# ---------------------------------------------------------------------------------------
# v2 address blocks as values

_INET4 = struct.Struct("!BBBBBBBBHH")
_INET6 = struct.Struct("!16s16sHH")
_DECIMAL = tuple(str(i) for i in range(256))  # octet -> text, for IPv4 addresses


def inet_addresses(data: bytes, family: int) -> tuple[Address, Address]:
    """The (host, port) pairs of an INET or INET6 address block at offset 16."""
    if family is _AF_INET:
        a, b, c, d, e, f, g, h, sport, dport = _INET4.unpack_from(data, 16)
        t = _DECIMAL
        return (f"{t[a]}.{t[b]}.{t[c]}.{t[d]}", sport), (f"{t[e]}.{t[f]}.{t[g]}.{t[h]}", dport)
    src, dst, sport, dport = _INET6.unpack_from(data, 16)
    return (socket.inet_ntop(_AF_INET6, src), sport), (socket.inet_ntop(_AF_INET6, dst), dport)


def unix_path(raw: bytes) -> Union[str, bytes]:
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


# ---------------------------------------------------------------------------------------
# Packing, for the encoders


def pack_host(host: object, what: str) -> bytes:
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
    if is_ipv4(text):
        return socket.inet_pton(_AF_INET, host)
    if is_ipv6(text):
        return socket.inet_pton(_AF_INET6, host)
    raise ValueError(f"{what} host {host!r} is not an IPv4 or IPv6 address")


def pack_port(port: object, what: str) -> int:
    """A port for the encoders: an int in 0..65535."""
    if type(port) is not int:
        raise TypeError(f"{what} port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port {port} is outside 0..65535")
    return port


def inet_pair(source: object, destination: object) -> tuple[bytes, int, bytes, int]:
    """Packed hosts and ports; a mixed IPv4/IPv6 pair maps IPv4 to ``::ffff:a.b.c.d``."""
    for address, what in ((source, "source"), (destination, "destination")):
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"{what} must be a (host, port) tuple, a UNIX path or None")
    src_host = pack_host(source[0], "source")  # type: ignore[index]
    src_port = pack_port(source[1], "source")  # type: ignore[index]
    dst_host = pack_host(destination[0], "destination")  # type: ignore[index]
    dst_port = pack_port(destination[1], "destination")  # type: ignore[index]
    if len(src_host) != len(dst_host):
        if len(src_host) == 4:
            src_host = b"\x00" * 10 + b"\xff\xff" + src_host
        else:
            dst_host = b"\x00" * 10 + b"\xff\xff" + dst_host
    return src_host, src_port, dst_host, dst_port


def pack_unix_path(path: Union[str, bytes], what: str) -> bytes:
    """A UNIX path as the 108 bytes of the v2 block (abstract names as bytes)."""
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)
    if len(raw) > UNIX_PATH_SIZE:
        raise ValueError(f"{what} UNIX path is {len(raw)} bytes, at most 108 fit")
    abstract = raw[:1] == b"\x00"
    # A Linux abstract name may hold NUL bytes anywhere after the first (parse keeps them).
    if (b"\x00" in raw and not abstract) or (abstract and isinstance(path, str)):
        raise ValueError(
            f"{what} UNIX path holds a NUL byte (pass an abstract name as bytes starting with NUL)"
        )
    if abstract and raw.endswith(b"\x00"):
        raise ValueError(f"{what} abstract UNIX name must not end with a NUL byte")
    return raw.ljust(UNIX_PATH_SIZE, b"\x00")
