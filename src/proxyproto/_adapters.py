"""Helpers shared by the I/O adapters (:mod:`proxyproto.aio`, :mod:`proxyproto.blocking`).

No I/O here either: counters, the refusal reasons, the checks on a header about to be
sent, and the header describing a pair of socket addresses. Keeping them in one place
keeps both adapters' behaviour (and their statistics) identical.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Iterable
from typing import Any, Optional, Union

from . import _impl
from ._errors import REFUSALS
from ._header import ProxyHeader

__all__ = [
    "ProxyStats",
    "checked_header_bytes",
    "encode_for_addresses",
    "inet_address",
    "refusal_reason",
    "show_address",
]


class ProxyStats:
    """Counters of one server (or endpoint): what was accepted, what was refused and why.

    Attributes:
        accepted: connections (datagrams) handed to the application.
        refused: a ``collections.Counter`` of refusals by reason:

            * ``"untrusted"``: an untrusted peer, closed before any byte was read;
            * ``"no_header"``: no header where one is required;
            * ``"invalid"``: a malformed header (or, for UDP, one cut short);
            * ``"too_large"``: a header over the size cap;
            * ``"rejected"``: a header under the ``REJECT`` policy;
            * ``"timeout"``: the header did not complete before the deadline;
            * ``"eof"``: the peer closed (or reset) the connection mid-header;
            * ``"tls"``: the TLS handshake after the header failed;
            * ``"error"``: an unexpected error (e.g. a policy callable that raised).
        pending: connections currently waiting for their header (or TLS handshake).
    """

    __slots__ = ("accepted", "pending", "refused")

    def __init__(self) -> None:
        self.accepted = 0
        self.pending = 0
        self.refused: collections.Counter[str] = collections.Counter()

    @property
    def refused_total(self) -> int:
        """All refusals, whatever the reason."""
        return sum(self.refused.values())

    def as_dict(self) -> dict[str, Any]:
        """A snapshot, e.g. for a metrics endpoint."""
        return {"accepted": self.accepted, "pending": self.pending,
                "refused": dict(self.refused), "refused_total": self.refused_total}

    def __repr__(self) -> str:
        return (f"ProxyStats(accepted={self.accepted}, pending={self.pending}, "
                f"refused={dict(self.refused)!r})")


def refusal_reason(exc: BaseException) -> str:
    """The :class:`ProxyStats` reason for an exception that refused a connection.

    proxyproto's own exceptions carry it (``exc.reason``, see :mod:`proxyproto._errors`);
    a foreign ``TimeoutError`` is ``"timeout"``, another ``OSError`` (reset, broken
    pipe... while reading the header) ``"eof"``, anything else ``"error"``.
    """
    if isinstance(exc, REFUSALS):
        return exc.reason  # type: ignore[attr-defined, no-any-return]
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "eof"
    return "error"


def checked_header_bytes(header: Union[bytes, bytearray, memoryview, ProxyHeader]) -> bytes:
    """The header to send, as bytes: a :class:`ProxyHeader` re-encoded, or bytes checked
    to be exactly one valid, whole header (nothing else may share its write).

    Raises:
        TypeError: neither bytes nor a ``ProxyHeader``.
        ValueError: not a valid header (a ``ProxyProtocolError``), or bytes after it.
    """
    if isinstance(header, ProxyHeader):
        return header.to_bytes()
    if not isinstance(header, (bytes, bytearray, memoryview)):
        raise TypeError(f"header must be bytes or a ProxyHeader, not {type(header).__name__}")
    data = bytes(header)
    parsed = _impl.parse(data)  # refuse to send anything but one valid, whole header
    if parsed.length != len(data):
        raise ValueError("header holds bytes after the PROXY header; send them separately")
    return data


def inet_address(address: Any) -> Optional[tuple[str, int]]:
    """``(host, port)`` from an IPv4/IPv6 socket address (scope id dropped), else ``None``."""
    if (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)
            and isinstance(address[1], int)):
        return (address[0].partition("%")[0], address[1])
    return None


def show_address(address: Any) -> str:
    """An address for log lines: ``host:port``, ``[v6]:port``, else its ``repr``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return repr(address)


def encode_for_addresses(
    source: Any,
    destination: Any,
    *,
    version: int = 2,
    transport: socket.SocketKind = socket.SOCK_STREAM,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """The header a proxy sends for a connection between two socket addresses.

    Addresses that are not IP ``(host, port, ...)`` tuples (UNIX sockets) give v2
    ``LOCAL`` or v1 ``PROXY UNKNOWN``, as HAProxy sends.

    Raises:
        ValueError: a bad version, TLVs for v1, or v1 for a datagram transport.
    """
    src, dst = inet_address(source), inet_address(destination)
    if src is None or dst is None:
        src = dst = None
    tlvs = tuple(tlvs)
    if version == 1:
        if tlvs or crc32c:
            raise ValueError("v1 headers carry no TLVs")
        if transport != socket.SOCK_STREAM and src is not None:
            raise ValueError("v1 headers describe TCP only; use version 2 for datagrams")
        return _impl.encode_v1(src, dst)
    if version == 2:
        return _impl.encode_v2(src, dst, transport=transport, tlvs=tlvs, crc32c=crc32c)
    raise ValueError(f"version must be 1 or 2, not {version!r}")
