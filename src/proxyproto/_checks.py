"""The checks behind ``ProxyHeader(...)`` and ``ProxyHeader.to_bytes()``.

They accept exactly the fields :func:`proxyproto.parse` can return: the selected encoder
checks what it can (addresses, ports, TLV encodings, sizes) and these functions the rest
(types, command/family/transport/address consistency, ``length``). The parsers never go
through them.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Optional, TypeVar

from ._constants import (
    CRC32C_SIZE,
    INET4_BLOCK_SIZE,
    INET6_BLOCK_SIZE,
    TYPE_CRC32C,
    UNIX_BLOCK_SIZE,
    V1_MAX_LENGTH,
)
from ._header import TLV, Address, Command, InetAddress, UnixAddress

__all__ = ["check_fields"]

_E = TypeVar("_E", Command, socket.AddressFamily, socket.SocketKind)
_COMMANDS = {0: Command.LOCAL, 1: Command.PROXY}
_FAMILIES = {int(f): f for f in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6,
                                 socket.AF_UNIX)}
_TRANSPORTS = {int(k): k for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM)}
# The v2 address block of each family: a LOCAL header may carry it (ignored) before its TLVs.
_BLOCK_SIZES = {socket.AF_UNSPEC: 0, socket.AF_INET: INET4_BLOCK_SIZE,
                socket.AF_INET6: INET6_BLOCK_SIZE, socket.AF_UNIX: UNIX_BLOCK_SIZE}


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _enum_field(name: str, value: object, members: dict[int, _E], what: str) -> _E:
    if not _is_int(value):
        raise TypeError(f"ProxyHeader {name} must be an int, not {type(value).__name__}")
    member: Optional[_E] = members.get(value)  # type: ignore[call-overload]
    if member is None:
        raise ValueError(f"ProxyHeader {name} {value!r} is not {what}")
    return member


def _inet(name: str, value: object, family: socket.AddressFamily) -> InetAddress:
    """A ``(host, port)`` pair of ``family``, the host in canonical form."""
    if type(value) is not tuple or len(value) != 2:
        raise TypeError(
            f"ProxyHeader {name} must be a (host, port) tuple for {family.name}, not {value!r}"
        )
    host, port = value
    if type(host) is not str:
        raise TypeError(f"ProxyHeader {name} host must be a str, not {type(host).__name__}")
    if type(port) is not int and not _is_int(port):
        raise TypeError(f"ProxyHeader {name} port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"ProxyHeader {name} port {port} is outside 0..65535")
    try:
        packed = socket.inet_pton(family, host)
    except (OSError, ValueError):
        raise ValueError(
            f"ProxyHeader {name} host {host!r} is not an {family.name} address"
        ) from None
    canonical = socket.inet_ntop(family, packed)
    return value if canonical == host and type(port) is int else (canonical, int(port))


def _unix(name: str, value: object) -> UnixAddress:
    """An AF_UNIX path as ``parse`` gives it: ``bytes`` only for an abstract name."""
    if type(value) is bytes:
        return value if value[:1] == b"\x00" else value.decode("utf-8", "surrogateescape")
    if type(value) is not str:
        raise TypeError(f"ProxyHeader {name} must be a str or bytes path for AF_UNIX, "
                        f"not {type(value).__name__}")
    return value


def _tlv_tuple(tlvs: object) -> tuple[TLV, ...]:
    """``tlvs`` as a tuple of :class:`TLV` with ``bytes`` values (the encoder checks types)."""
    if type(tlvs) is not tuple:
        if isinstance(tlvs, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"ProxyHeader tlvs must be (type, value) pairs, not {tlvs!r}")
        try:
            tlvs = tuple(tlvs)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"ProxyHeader tlvs must be an iterable of (type, value) pairs, not {tlvs!r}"
            ) from None
    assert isinstance(tlvs, tuple)
    converted: Optional[list[TLV]] = None
    for index, item in enumerate(tlvs):
        if type(item) is TLV and type(item[0]) is int and type(item[1]) is bytes:
            if converted is not None:
                converted.append(item)
            continue  # as the parsers build them (the encoder checks the type's range)
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"each ProxyHeader TLV must be a (type, value) pair, not {item!r}")
        tlv_type, value = item
        if not _is_int(tlv_type):
            raise TypeError(f"ProxyHeader TLV type must be an int, not {type(tlv_type).__name__}")
        if type(value) is not bytes:
            raise TypeError(f"ProxyHeader TLV value must be bytes, not {type(value).__name__}")
        if converted is None:
            converted = list(tlvs[:index])
        converted.append(TLV(int(tlv_type), value))  # a plain int, as parse gives it
    return tlvs if converted is None else tuple(converted)


def check_fields(
    version: object, command: object, family: object, transport: object, source: object,
    destination: object, tlvs: object, length: object,
) -> tuple[tuple[Any, ...], bytes]:
    """The eight checked, normalised fields of a header, and its canonical encoding.

    Accepts exactly what :func:`proxyproto.parse` can return, so every accessor of the
    result works and :meth:`ProxyHeader.to_bytes` gives a header ``parse`` accepts.
    """
    if type(version) is not int and not _is_int(version):
        raise TypeError(f"ProxyHeader version must be an int, not {type(version).__name__}")
    if version not in (1, 2):
        raise ValueError(f"ProxyHeader version {version} is neither 1 nor 2")
    cmd = _enum_field("command", command, _COMMANDS, "LOCAL (0) or PROXY (1)")
    fam = _enum_field("family", family, _FAMILIES, "AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC")
    kind = None if transport is None else _enum_field(
        "transport", transport, _TRANSPORTS, "SOCK_STREAM, SOCK_DGRAM or None")
    if (kind is None) is not (fam is socket.AF_UNSPEC):
        raise ValueError(f"ProxyHeader transport must be None exactly when the family is "
                         f"AF_UNSPEC (family {fam.name}, transport {kind!r})")
    items = _tlv_tuple(tlvs)
    src: Optional[Address] = None
    dst: Optional[Address] = None
    resolved = cmd is Command.PROXY and fam is not socket.AF_UNSPEC  # addresses that count
    if resolved:
        if fam is socket.AF_UNIX:
            src, dst = _unix("source", source), _unix("destination", destination)
        else:
            src, dst = _inet("source", source, fam), _inet("destination", destination, fam)
    elif source is not None or destination is not None:
        raise ValueError("ProxyHeader source and destination must be None for a LOCAL or "
                         "AF_UNSPEC header (the receiver uses the connection's addresses)")
    if version == 1:
        if cmd is not Command.PROXY or fam is socket.AF_UNIX or items:
            raise ValueError("a v1 ProxyHeader is PROXY, over AF_INET, AF_INET6 or AF_UNSPEC "
                             "(UNKNOWN), with no TLVs")
        if kind is socket.SOCK_DGRAM:
            raise ValueError("a v1 ProxyHeader's transport is SOCK_STREAM (None for UNKNOWN)")
        wire = _encoders()[0](src, dst)
        low = high = len(wire)
        if fam is socket.AF_INET6:
            # IPv6 text has many spellings, longer or shorter than the canonical one
            # ("::ffff:11" is the canonical "::ffff:0.0.0.17"): only the ports are fixed.
            low = len(f"PROXY TCP6 :: :: {src[1]} {dst[1]}\r\n")  # type: ignore[index]
            high = V1_MAX_LENGTH
        elif fam is not socket.AF_INET:  # UNKNOWN: any tail up to the line's cap
            high = V1_MAX_LENGTH
    else:
        plain = [item for item in items if item[0] != TYPE_CRC32C]
        if len(plain) != len(items):
            crcs = [value for tlv_type, value in items if tlv_type == TYPE_CRC32C]
            if len(crcs) > 1:
                raise ValueError("a ProxyHeader holds at most one CRC32C TLV")
            if len(crcs[0]) != CRC32C_SIZE:
                raise ValueError(f"ProxyHeader CRC32C TLV is {len(crcs[0])} bytes, "
                                 f"expected {CRC32C_SIZE}")
        try:
            wire = _encoders()[1](src, dst, transport=kind or socket.SOCK_STREAM, tlvs=plain,
                                  crc32c=len(plain) != len(items))
        except ValueError as exc:
            raise ValueError(f"ProxyHeader cannot be encoded: {exc}") from None
        low = high = len(wire)
        if cmd is Command.LOCAL:
            # The family byte as sent: its address block (ignored) comes before the TLVs;
            # with no TLV, any part of it may be there.
            high = low + _BLOCK_SIZES[fam]
            if items:
                low = high
    if length is None:
        length = low if version == 1 else high  # v2 LOCAL: with the family's address block
    elif type(length) is not int and not _is_int(length):
        raise TypeError(f"ProxyHeader length must be an int, not {type(length).__name__}")
    elif not low <= length <= high:  # type: ignore[operator]
        span = f"{low}" if low == high else f"{low}..{high}"
        raise ValueError(f"ProxyHeader length {length} does not fit its fields: {span} expected")
    return (version, cmd, fam, kind, src, dst, items, length), wire


_encode: Optional[tuple[Callable[..., bytes], Callable[..., bytes]]] = None


def _encoders() -> tuple[Callable[..., bytes], Callable[..., bytes]]:
    """The selected implementation's ``encode_v1`` and ``encode_v2``, found once."""
    global _encode
    if _encode is None:
        from ._impl import encode_v1, encode_v2

        _encode = encode_v1, encode_v2
    return _encode


