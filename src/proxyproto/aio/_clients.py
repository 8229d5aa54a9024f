"""Clients: connections that send a PROXY header first, and the header a relay sends on."""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections.abc import Iterable
from typing import Any, Callable, Union, cast

from .._adapters import checked_header_bytes as _header_bytes
from .._adapters import encode_for_addresses
from .._header import ProxyHeader
from ._servers import _STREAM_LIMIT
from ._tls import HeldEvents

__all__ = ["HeaderSpec", "create_connection", "header_for", "open_connection"]

#: What ``header=`` accepts: encoded bytes, a ``ProxyHeader``, or a function of the
#: freshly connected (raw) transport returning either.
HeaderSpec = Union[bytes, ProxyHeader, Callable[[asyncio.BaseTransport], Union[bytes, ProxyHeader]]]


class _HeaderSender(asyncio.Protocol):
    """Writes the header the moment the connection is made, before anything else."""

    def __init__(self, header: HeaderSpec) -> None:
        self._header = header
        self.error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        try:
            spec = self._header(transport) if callable(self._header) else self._header
            data = _header_bytes(spec)
        except Exception as exc:
            self.error = exc
            transport.abort()
            return
        # [SPEC §2] R-5: the whole header in one write (HAProxy and nginx reject a split one)
        transport.write(data)


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None = None,
    port: int | None = None,
    *,
    header: HeaderSpec,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    **kwargs: Any,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """``loop.create_connection`` that sends a PROXY header first, in one write.

    The header goes out before anything else, TLS included: with ``ssl`` the handshake
    starts after it (what a TLS-passthrough proxy does). The protocol's
    ``connection_made`` is called after the header was written.

    Args:
        protocol_factory: makes the protocol.
        host: as for ``loop.create_connection``.
        port: as for ``loop.create_connection``.
        kwargs: other ``loop.create_connection`` arguments.
        header: the header: encoded bytes (checked: exactly one valid header), a
            ``ProxyHeader``, or a function of the connected raw transport returning
            either (to build it from the connection's own addresses).
        ssl: ``True`` or an ``SSLContext`` to start TLS after the header.
        server_hostname: the TLS server name (default: ``host``).
        ssl_handshake_timeout: seconds for the TLS handshake.

    Returns:
        ``(transport, protocol)``; the transport is the TLS one with ``ssl``.

    Raises:
        TypeError, ValueError: a bad header (nothing is sent).
        OSError: the connection failed.
    """
    if not callable(header):
        _header_bytes(header)  # fail before connecting
    loop = asyncio.get_running_loop()
    sender = _HeaderSender(header)
    address: tuple[Any, Any] = (host, port)
    raw, _ = await loop.create_connection(lambda: sender, *address, **kwargs)
    if sender.error is not None:
        raise sender.error
    protocol = protocol_factory()
    if not ssl:
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        return raw, protocol
    context = ssl if isinstance(ssl, _ssl.SSLContext) else _ssl.create_default_context()
    if server_hostname is None:
        if not host:
            raise ValueError("server_hostname is required with ssl when host is not given")
        server_hostname = host
    held = HeldEvents()
    tls = await loop.start_tls(raw, held, context, server_hostname=server_hostname,
                               ssl_handshake_timeout=ssl_handshake_timeout)
    tls = cast(asyncio.Transport, tls)
    held.hand_over(protocol, tls, tls)
    return tls, protocol


async def open_connection(
    host: str | None = None,
    port: int | None = None,
    *,
    header: HeaderSpec,
    limit: int = _STREAM_LIMIT,
    **kwargs: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` that sends a PROXY header first, in one write.

    Args:
        host: as for ``asyncio.open_connection``.
        port: as for ``asyncio.open_connection``.
        limit: as for ``asyncio.open_connection``.
        kwargs: as for ``asyncio.open_connection``; ``ssl`` starts
            TLS after the header.
        header: see :func:`create_connection`.

    Returns:
        ``(reader, writer)``.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, header=header, **kwargs)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def header_for(
    connection: asyncio.StreamWriter | asyncio.BaseTransport | socket.socket,
    *,
    version: int = 2,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """The header a proxy sends upstream for a client connection it accepted.

    The source is the connection's peer, the destination its local address. Behind a
    :mod:`proxyproto.aio` server those are already the original addresses, so relays
    pass them on. A connection without IP addresses (a UNIX socket) gives v2 ``LOCAL``
    or v1 ``PROXY UNKNOWN``, as HAProxy sends.

    Args:
        connection: a ``StreamWriter``, a transport or a connected socket.
        version: 1 or 2.
        tlvs: v2 TLVs, in order.
        crc32c: append a CRC32C TLV (v2).

    Returns:
        The encoded header.

    Raises:
        ValueError: a bad version, or TLVs for v1.
    """
    if isinstance(connection, socket.socket):
        source, destination = connection.getpeername(), connection.getsockname()
    else:
        source = connection.get_extra_info("peername")
        destination = connection.get_extra_info("sockname")
    return encode_for_addresses(source, destination, version=version, tlvs=tlvs,
                                crc32c=crc32c)
