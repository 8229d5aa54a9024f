"""Servers: the PROXY layer in front of a protocol factory, ``create_server``, ``start_server``."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from .._adapters import ProxyStats
from .._policy import DEFAULT_TIMEOUT, ConnectionPolicy, Policy
from .._reader import DEFAULT_MAX_SIZE
from ._layer import ProxyProtocolFactory, Trusted, _Config

__all__ = ["ClientConnectedCallback", "ProxyServer", "create_server", "start_server",
           "wrap_protocol_factory"]

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Optional[Awaitable[None]]
]

if TYPE_CHECKING:
    class ProxyServer(asyncio.Server):
        """An ``asyncio.Server`` with the counters of its connections (for annotations)."""

        proxy_stats: ProxyStats
else:
    #: For annotations: the ``asyncio.Server`` that :func:`create_server` and
    #: :func:`start_server` return, whose ``proxy_stats`` is the :class:`ProxyStats`
    #: of its connections. At run time the server is the event loop's own class.
    ProxyServer = asyncio.Server

_STREAM_LIMIT = 2**16  # asyncio.streams' default buffer limit


def wrap_protocol_factory(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    trusted: Trusted,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Policy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_size: int = DEFAULT_MAX_SIZE,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
) -> ProxyProtocolFactory:
    """Put the PROXY layer in front of any stream protocol, for ``loop.create_server``.

    The application's protocol is created only once the header is accepted; its
    ``connection_made`` gets a transport whose ``get_extra_info("peername")`` /
    ``("sockname")`` are the original addresses, ``("proxy_header")`` the header, and
    its first ``data_received`` holds exactly the bytes that followed the header.

    Args:
        protocol_factory: makes the application's protocol (``Protocol`` or
            ``BufferedProtocol``).
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings).
        policy: the policy for trusted peers (default ``REQUIRE``: a header is
            mandatory), or a callable ``(peer, local) -> Policy`` consulted for every
            peer (``USE``/``REQUIRE`` answers for an untrusted peer close it).
        untrusted_policy: the policy for other peers: ``None`` (default) closes them
            before reading anything; ``SKIP`` serves them with no header looked for;
            ``IGNORE``/``REJECT`` read a header but never believe it.
        timeout: seconds for the header to arrive, from the connection (default 5).
            One timer per server checks every connection's deadline, so a connection
            is dropped at most ``min(0.1, timeout / 10)`` seconds after its own, never
            before it.
        max_size: the v2 header size cap in bytes (default 4096).
        ssl: a server ``SSLContext``: TLS starts *after* the header.
        ssl_handshake_timeout: seconds for that handshake, from the end of the header
            (default ``None``: the header ``timeout``; asyncio's own default of 60 s let
            a peer that sent a header and stalled hold the connection).
        stats: counters to update (a new :class:`ProxyStats` by default).

    Returns:
        The factory; its ``stats`` attribute holds the counters.

    Raises:
        ValueError: ``untrusted_policy`` is ``USE``/``REQUIRE``, or a bad timeout/cap.
        TypeError: an argument of the wrong type.
    """
    config = _Config(trusted=trusted, policy=policy, untrusted_policy=untrusted_policy,
                     timeout=timeout, max_size=max_size, ssl=ssl,
                     ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    return ProxyProtocolFactory(protocol_factory, config)


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any = None,
    port: int | None = None,
    *,
    trusted: Trusted,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Policy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_size: int = DEFAULT_MAX_SIZE,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
    **kwargs: Any,
) -> ProxyServer:
    """``loop.create_server`` with the PROXY layer in front of ``protocol_factory``.

    The arguments are those of :func:`wrap_protocol_factory`; ``host``, ``port`` and
    the other keyword arguments (``sock``, ``backlog``, ``reuse_port``...) go to
    ``loop.create_server``. ``ssl`` is served after the header.

    Returns:
        The ``asyncio.Server``; its ``proxy_stats`` attribute holds the
        :class:`ProxyStats`.
    """
    factory = wrap_protocol_factory(
        protocol_factory, trusted=trusted, policy=policy, untrusted_policy=untrusted_policy,
        timeout=timeout, max_size=max_size, ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    server = await asyncio.get_running_loop().create_server(factory, host, port, **kwargs)
    proxy_server = cast(ProxyServer, server)
    proxy_server.proxy_stats = factory.stats
    return proxy_server


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: Any = None,
    port: int | None = None,
    *,
    trusted: Trusted,
    limit: int = _STREAM_LIMIT,
    **kwargs: Any,
) -> ProxyServer:
    """``asyncio.start_server`` for connections that start with a PROXY header.

    ``client_connected_cb(reader, writer)`` is called only for accepted connections,
    once the header was read: ``writer.get_extra_info("peername")`` is the original
    client, ``("sockname")`` the original destination (the socket's own when the header
    carries none), ``("proxy_header")`` the header (``None`` when none was read) and the
    reader yields exactly the bytes that followed the header. Refused connections are
    closed, logged and counted in ``server.proxy_stats``; they never stop the server.

    Args:
        client_connected_cb: a function or coroutine function, as for asyncio.
        host: as for ``asyncio.start_server``.
        port: as for ``asyncio.start_server``.
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings).
        limit: the stream buffer limit, as for ``asyncio.start_server``.
        kwargs: ``policy``, ``untrusted_policy``, ``timeout``, ``max_size``, ``ssl``
            (TLS after the header), ``ssl_handshake_timeout`` and ``stats``, as for
            :func:`wrap_protocol_factory`; the others (``backlog``, ``sock``,
            ``reuse_port``...) go to ``loop.create_server``.

    Returns:
        The ``asyncio.Server``, with a ``proxy_stats`` attribute.
    """
    loop = asyncio.get_running_loop()

    def streams() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(streams, host, port, trusted=trusted, **kwargs)
