"""Servers: the PROXY layer in front of a protocol factory, ``create_server``, ``start_server``."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from .._adapters import ProxyStats
from .._options import UNSET, ProxyOptions
from .._policy import ConnectionPolicy, Policy
from ._layer import ProxyProtocolFactory, Trusted, make_config

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
    trusted: Trusted | None = None,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    timeout: float | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: ProxyOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
) -> ProxyProtocolFactory:
    """Put the PROXY layer in front of any stream protocol, for ``loop.create_server``.

    The application's protocol is created only once the header is accepted; its
    ``connection_made`` gets a transport whose ``get_extra_info("peername")`` /
    ``("sockname")`` are the original addresses, ``("proxy_header")`` the header, and
    its first ``data_received`` holds exactly the bytes that followed the header.

    The options that decide the start of a connection (``trusted`` to
    ``trust_unix_peers``) are those of :class:`proxyproto.policy.ProxyOptions`, checked
    the same way as by the blocking adapter; give them one by one or as ``options=``
    (not both).

    Args:
        protocol_factory: makes the application's protocol (``Protocol`` or
            ``BufferedProtocol``).
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings);
            required unless ``options`` is given.
        policy: the policy for trusted peers (default ``REQUIRE``: a header is
            mandatory), or a callable ``(peer, local) -> Policy`` consulted for every
            peer (``USE``/``REQUIRE`` answers for an untrusted peer close it).
        untrusted_policy: the policy for other peers: ``None`` (default) closes them
            before reading anything; ``SKIP`` serves them with no header looked for;
            ``IGNORE``/``REJECT`` read a header but never believe it.
        timeout: seconds for the header to arrive, from the connection (default 5;
            ``None``: no deadline). One timer per server checks every connection's
            deadline, so a connection is dropped at most ``min(0.1, timeout / 10)``
            seconds after its own, never before it.
        max_size: the v2 header size cap in bytes (default 4096).
        trust_unix_peers: trust the peers of a UNIX-socket listener (default ``False``:
            they are refused, having no address to check).
        options: all of the above as one :class:`~proxyproto.policy.ProxyOptions`.
        ssl: a server ``SSLContext``: TLS starts *after* the header.
        ssl_handshake_timeout: seconds for that handshake, from the end of the header
            (default ``None``: the header ``timeout``; asyncio's own default of 60 s let
            a peer that sent a header and stalled hold the connection).
        stats: counters to update (a new :class:`ProxyStats` by default).

    Returns:
        The factory; its ``stats`` attribute holds the counters.

    Raises:
        TypeError: an argument of the wrong type (``timeout="5"``), ``options`` with a
            separate option, or neither ``trusted`` nor ``options``.
        ValueError: an argument out of range (``timeout=0``, ``max_size=8``,
            ``untrusted_policy=Policy.USE``, a malformed network).
    """
    config = make_config(options, trusted=trusted, policy=policy,
                         untrusted_policy=untrusted_policy, timeout=timeout,
                         max_size=max_size, trust_unix_peers=trust_unix_peers, ssl=ssl,
                         ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    return ProxyProtocolFactory(protocol_factory, config)


async def _serve(
    factory: ProxyProtocolFactory, host: Any, port: int | None, kwargs: dict[str, Any]
) -> ProxyServer:
    server = await asyncio.get_running_loop().create_server(factory, host, port, **kwargs)
    proxy_server = cast(ProxyServer, server)
    proxy_server.proxy_stats = factory.stats
    return proxy_server


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any = None,
    port: int | None = None,
    *,
    trusted: Trusted | None = None,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    timeout: float | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: ProxyOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
    **kwargs: Any,
) -> ProxyServer:
    """``loop.create_server`` with the PROXY layer in front of ``protocol_factory``.

    The keyword arguments named are those of :func:`wrap_protocol_factory`; ``host``,
    ``port`` and the others (``sock``, ``backlog``, ``reuse_port``...) go to
    ``loop.create_server``. ``ssl`` is served after the header.

    Returns:
        The ``asyncio.Server`` (typed :class:`ProxyServer`); its ``proxy_stats``
        attribute holds the :class:`ProxyStats`.
    """
    factory = wrap_protocol_factory(
        protocol_factory, trusted=trusted, policy=policy, untrusted_policy=untrusted_policy,
        timeout=timeout, max_size=max_size, trust_unix_peers=trust_unix_peers,
        options=options, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    return await _serve(factory, host, port, kwargs)


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: Any = None,
    port: int | None = None,
    *,
    trusted: Trusted | None = None,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    timeout: float | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: ProxyOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
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
        policy: see :func:`wrap_protocol_factory`, as for the options below.
        untrusted_policy: see :func:`wrap_protocol_factory`.
        timeout: see :func:`wrap_protocol_factory`.
        max_size: see :func:`wrap_protocol_factory`.
        trust_unix_peers: see :func:`wrap_protocol_factory`.
        options: see :func:`wrap_protocol_factory`.
        ssl: TLS after the header, see :func:`wrap_protocol_factory`.
        ssl_handshake_timeout: see :func:`wrap_protocol_factory`.
        stats: see :func:`wrap_protocol_factory`.
        limit: the stream buffer limit, as for ``asyncio.start_server``.
        kwargs: the others (``backlog``, ``sock``, ``reuse_port``...) go to
            ``loop.create_server``.

    Returns:
        The ``asyncio.Server`` (typed :class:`ProxyServer`), with a ``proxy_stats``
        attribute.
    """
    factory = wrap_protocol_factory(
        _streams(client_connected_cb, limit), trusted=trusted, policy=policy,
        untrusted_policy=untrusted_policy, timeout=timeout, max_size=max_size,
        trust_unix_peers=trust_unix_peers, options=options, ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    return await _serve(factory, host, port, kwargs)


def _streams(
    client_connected_cb: ClientConnectedCallback, limit: int
) -> Callable[[], asyncio.StreamReaderProtocol]:
    """The streams application: a reader and its protocol per connection."""
    loop = asyncio.get_running_loop()

    def streams() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return streams
