"""asyncio adapters: PROXY protocol servers, clients and datagram endpoints.

The PROXY layer is written once, as a protocol (:class:`ProxyProtocolLayer`) that sits in
front of any ``asyncio.Protocol``: it decides the policy from the peer address before
reading anything, reads the header under a deadline and a size cap (the sans-IO
:class:`~proxyproto.PolicyReader` does the reading), optionally starts TLS, and only then
calls the application's ``connection_made`` with a transport whose ``get_extra_info``
reports the original addresses. The streams server (:func:`start_server`) is the same
layer with ``asyncio.StreamReaderProtocol`` as the application.

Refused connections are closed, logged on the ``"proxyproto.aio"`` logger and counted in
a :class:`ProxyStats`; they never stop the server.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Awaitable, Iterable
from typing import Any, Callable, Optional, Union, cast

from ._adapters import ProxyStats, encode_for_addresses
from ._adapters import checked_header_bytes as _header_bytes
from ._adapters import refusal_reason as _refusal_reason
from ._adapters import show_address as _show
from ._aio_transport import ProxiedTransport, TLSFeedTransport, feed_protocol
from ._errors import (
    ProxyProtocolError,
)
from ._header import ProxyHeader
from ._policy import (
    DEFAULT_TIMEOUT,
    ConnectionPolicy,
    Policy,
    PolicyReader,
    TrustedProxies,
    accept_datagram,
    check_untrusted_policy,
    decide_policy,
    resolve_addresses,
)
from ._reader import DEFAULT_MAX_SIZE

__all__ = [
    "ProxiedTransport",
    "ProxyDatagramLayer",
    "ProxyProtocolFactory",
    "ProxyProtocolLayer",
    "ProxyStats",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "header_for",
    "open_connection",
    "start_server",
    "uvicorn_http_protocol",
    "wrap_protocol_factory",
]

logger = logging.getLogger("proxyproto.aio")

#: What ``trusted=`` accepts: a ``TrustedProxies`` or an iterable of CIDR strings.
Trusted = Union[TrustedProxies, Iterable[Any]]
#: What ``header=`` accepts: encoded bytes, a ``ProxyHeader``, or a function of the
#: freshly connected (raw) transport returning either.
HeaderSpec = Union[bytes, ProxyHeader, Callable[[asyncio.BaseTransport], Union[bytes, ProxyHeader]]]
ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Optional[Awaitable[None]]
]

_STREAM_LIMIT = 2**16  # asyncio.streams' default buffer limit
_STREAM_PROTOCOLS = (asyncio.Protocol, asyncio.BufferedProtocol)


# asyncio runs a timer once loop.time() + this resolution reaches its time (its own rule)
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _HeaderDeadlines:
    """The header deadlines of one server's connections on one event loop, with one timer.

    Every connection of a server gets the same ``timeout``, so deadlines taken in arrival
    order are already sorted: a dict (insertion-ordered) of waiting layers is the whole
    queue. Adding and removing a connection are dict operations; the single timer runs
    at the earliest deadline still waiting and times out every connection due, where a
    ``loop.call_later`` per connection (a heap push and a ``TimerHandle``) cost several
    microseconds. Sweeps are at least ``slack`` apart, ``min(0.1 s, timeout / 10)``: a
    connection is timed out ``timeout`` seconds after it was made, never earlier and at
    most ``slack`` later, so a flood of stalled connections costs one wake-up per batch.
    """

    __slots__ = ("_slack", "_timeout", "_timer", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self._timeout = timeout
        self._slack = min(0.1, timeout / 10)
        self._timer: asyncio.TimerHandle | None = None
        #: the waiting layers, by arrival, with their deadlines (in ``loop.time()``)
        self.waiting: dict[ProxyProtocolLayer, float] = {}

    def add(self, layer: ProxyProtocolLayer) -> None:
        """Start ``layer``'s deadline: ``timeout`` seconds from now."""
        deadline = self.loop.time() + self._timeout
        self.waiting[layer] = deadline
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        waiting = self.waiting
        now = self.loop.time() + _CLOCK_RESOLUTION
        due: list[ProxyProtocolLayer] = []
        for layer, deadline in waiting.items():
            if deadline > now:
                break
            due.append(layer)
        for layer in due:
            del waiting[layer]
        if waiting:
            first = next(iter(waiting.values()))
            self._timer = self.loop.call_at(max(first, now + self._slack), self._sweep)
        else:
            waiting.clear()  # frees the table a burst of connections left (dicts keep it)
        for layer in due:
            try:
                layer._on_timeout()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as a timer callback of its own would report it
                self.loop.call_exception_handler({
                    "message": "exception in the PROXY header timeout of a connection",
                    "exception": exc, "protocol": layer})


class _Config:
    """The settings shared by every connection of one server."""

    __slots__ = ("_deadlines", "handshake_timeout", "max_size", "policy", "ssl", "stats",
                 "timeout", "trusted", "untrusted_policy")

    def __init__(
        self,
        *,
        trusted: Trusted,
        policy: ConnectionPolicy,
        untrusted_policy: Policy | None,
        timeout: float,
        max_size: int,
        ssl: _ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
        stats: ProxyStats | None,
    ) -> None:
        if not isinstance(policy, Policy) and not callable(policy):
            raise TypeError(f"policy must be a Policy or a callable, not {policy!r}")
        if untrusted_policy is not None and not isinstance(untrusted_policy, Policy):
            raise TypeError(f"untrusted_policy must be a Policy or None, not {untrusted_policy!r}")
        check_untrusted_policy(untrusted_policy)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError("ssl must be an ssl.SSLContext (TLS starts after the header)")
        PolicyReader(Policy.REQUIRE, max_size=max_size)  # validates max_size
        self.trusted = TrustedProxies.coerce(trusted)
        self.policy = policy
        self.untrusted_policy = untrusted_policy
        self.timeout = float(timeout)
        self.max_size = max_size
        self.ssl = ssl
        self.handshake_timeout = ssl_handshake_timeout
        self.stats = stats if stats is not None else ProxyStats()
        self._deadlines: _HeaderDeadlines | None = None

    def deadlines(self, loop: asyncio.AbstractEventLoop) -> _HeaderDeadlines:
        """The header deadlines of this server's connections on ``loop``."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            # a factory used on another loop: a queue of its own there (the previous one
            # lives on with its timer and its connections, until they are settled)
            deadlines = self._deadlines = _HeaderDeadlines(loop, self.timeout)
        return deadlines


class _HeldEvents(asyncio.BufferedProtocol):
    """Stands in for the application during a TLS handshake: keeps what TLS delivers
    (data right after the handshake, EOF, loss) until the application is connected."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: tuple[Exception | None] | None = None
        self._chunk = bytearray(2**16)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A memoryview, not the bytearray: asyncio's SSL protocol (3.11+) slices the buffer
        # to read several TLS records in one go, and slicing a bytearray copies, so the
        # later records were lost (NUL bytes delivered instead; CPython issue 156275).
        return memoryview(self._chunk)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self._chunk[:nbytes]

    def eof_received(self) -> None:
        self.eof = True  # TLS closes on EOF anyway; the application hears of it once connected

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def hand_over(
        self, app: asyncio.BaseProtocol, tls: asyncio.Transport, view: asyncio.Transport
    ) -> None:
        """Connect ``app`` to ``tls`` (shown to it as ``view``), then replay what was held."""
        tls.set_protocol(app)
        app.connection_made(view)
        if self.data and not tls.is_closing():
            feed_protocol(app, bytes(self.data))
        if self.eof and isinstance(app, _STREAM_PROTOCOLS) and not app.eof_received():
            tls.close()
        if self.lost is not None:
            app.connection_lost(self.lost[0])


class ProxyProtocolLayer(asyncio.Protocol):
    """The PROXY layer for one stream connection, in front of an application protocol.

    Built by :func:`wrap_protocol_factory`; not meant to be created directly. Once the
    header is accepted the real transport talks to the application protocol directly,
    so the layer costs nothing after the hand-over.
    """

    __slots__ = ("__weakref__", "_app_factory", "_config", "_local", "_peer", "_pending",
                 "_reader", "_transport", "_upgrade", "_waiting")

    def __init__(self, app_factory: Callable[[], asyncio.BaseProtocol], config: _Config) -> None:
        self._app_factory = app_factory
        self._config = config
        self._transport: asyncio.Transport | None = None
        self._reader: PolicyReader | None = None
        # the server's waiting connections while this one's header deadline runs
        self._waiting: dict[ProxyProtocolLayer, float] | None = None
        self._peer: Any = None
        self._local: Any = None
        self._pending = False  # counted in stats.pending
        self._upgrade: asyncio.Task[None] | None = None

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's too
        config = self._config
        self._peer = peer = transport.get_extra_info("peername")
        self._local = local = transport.get_extra_info("sockname")
        try:
            policy = decide_policy(peer, local, trusted=config.trusted, policy=config.policy,
                                   untrusted_policy=config.untrusted_policy)
        except Exception as exc:  # a policy callable that failed: refuse, keep serving
            logger.exception("policy callable failed for %s", _show(peer))
            self._refuse("error", exc)
            return
        if policy is None:
            # [SPEC §5] R-62: an untrusted peer; nothing is read
            self._refuse("untrusted", None)
            return
        self._reader = reader = PolicyReader(policy, max_size=config.max_size)
        config.stats.pending += 1
        self._pending = True
        if reader.done:  # SKIP: no header looked for
            self._decided(b"")
            return
        # [SPEC §2] R-8: give up on a header that does not arrive in time (one timer per
        # server and loop for all its connections' deadlines)
        deadlines = config.deadlines(asyncio.get_running_loop())
        deadlines.add(self)
        self._waiting = deadlines.waiting

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None or reader.done:  # refused or already handed over: drop
            return
        try:
            done = reader.feed(data)
        except ProxyProtocolError as exc:
            self._refuse(_refusal_reason(exc), exc)
            return
        if done:
            self._decided(reader.app_data)

    def eof_received(self) -> bool | None:
        reader = self._reader
        if reader is None or reader.done:
            return None
        try:
            reader.finish()
        except ProxyProtocolError as exc:
            self._refuse("eof", exc)
            return None
        if self._config.ssl is not None:  # no TLS handshake can follow an EOF
            self._refuse("eof", None)
            return None
        app = self._decided(b"")
        if app is not None and isinstance(app, _STREAM_PROTOCOLS):
            return app.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upgrade is not None:
            self._upgrade.cancel()  # lost during the TLS set-up: refused there
        elif self._pending:
            self._refuse("eof", exc)
        self._cancel_deadline()

    # -- decisions --------------------------------------------------------------------

    def _on_timeout(self) -> None:
        self._waiting = None  # the sweep already took it out
        reader = self._reader
        if reader is None or reader.done:
            return
        try:
            reader.finish()  # nothing arrived, header optional: a server-speaks-first client
        except ProxyProtocolError as exc:
            self._refuse("timeout", exc)
            return
        self._decided(b"")

    def _cancel_deadline(self) -> None:
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            waiting.pop(self, None)
            if not waiting:
                waiting.clear()  # frees the table a burst of connections left (dicts keep it)

    def _refuse(self, reason: str, exc: BaseException | None) -> None:
        stats = self._config.stats
        stats.refused[reason] += 1
        if self._pending:
            self._pending = False
            stats.pending -= 1
        self._cancel_deadline()
        self._reader = None
        logger.info("refused connection from %s: %s%s", _show(self._peer), reason,
                    f" ({exc})" if exc is not None and str(exc) else "")
        if self._transport is not None:
            self._transport.abort()

    def _accept(self) -> None:
        stats = self._config.stats
        if self._pending:
            self._pending = False
            stats.pending -= 1
        stats.accepted += 1

    def _decided(self, app_data: bytes) -> asyncio.BaseProtocol | None:
        """The header is settled: start TLS, or give the connection to the application."""
        self._cancel_deadline()
        assert self._reader is not None and self._transport is not None
        header, received = self._reader.header, self._reader.received
        transport = self._transport
        if self._config.ssl is not None:
            transport.pause_reading()  # the rest belongs to TLS: read nothing more here
            self._upgrade = asyncio.get_running_loop().create_task(
                self._start_tls(TLSFeedTransport(transport, app_data), header, received))
            return None
        self._accept()
        app = self._app_factory()
        transport.set_protocol(app)  # from now on the socket talks to the app directly
        app.connection_made(ProxiedTransport(transport, header, received, self._peer,
                                             self._local))
        if app_data and not transport.is_closing():
            feed_protocol(app, app_data)  # [SPEC §2.2] R-64: the bytes after the header
        return app

    async def _start_tls(
        self, raw: TLSFeedTransport, header: ProxyHeader | None, received: ProxyHeader | None
    ) -> None:
        config = self._config
        assert config.ssl is not None
        held = _HeldEvents()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw, held, config.ssl, server_side=True,
                ssl_handshake_timeout=config.handshake_timeout)
        except asyncio.CancelledError:
            self._upgrade = None
            self._refuse("tls", ConnectionResetError("connection lost before TLS started"))
            return
        except (OSError, _ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            self._upgrade = None
            self._refuse("tls", exc)
            return
        self._upgrade = None
        assert tls is not None
        self._accept()
        app = self._app_factory()
        held.hand_over(app, tls, ProxiedTransport(tls, header, received))


class ProxyProtocolFactory:
    """A protocol factory for ``loop.create_server``: each connection gets the PROXY layer
    in front of a protocol made by the application's factory.

    Attributes:
        stats: the :class:`ProxyStats` of every connection this factory made.
    """

    __slots__ = ("_app_factory", "_config")

    def __init__(self, app_factory: Callable[[], asyncio.BaseProtocol], config: _Config) -> None:
        self._app_factory = app_factory
        self._config = config

    @property
    def stats(self) -> ProxyStats:
        """The counters shared by the connections of this factory."""
        return self._config.stats

    def __call__(self) -> ProxyProtocolLayer:
        return ProxyProtocolLayer(self._app_factory, self._config)


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
        ssl_handshake_timeout: seconds for that handshake (asyncio's default: 60).
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
) -> asyncio.Server:
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
    server.proxy_stats = factory.stats  # type: ignore[attr-defined]
    return server


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: Any = None,
    port: int | None = None,
    *,
    trusted: Trusted,
    limit: int = _STREAM_LIMIT,
    **kwargs: Any,
) -> asyncio.Server:
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


class UvicornHTTPProtocol:
    """uvicorn's HTTP protocol behind the PROXY layer: a value for ``uvicorn.Config(http=)``.

    Built by :func:`uvicorn_http_protocol`. uvicorn calls it once per connection, as it
    would call its own protocol class.

    Attributes:
        stats: the :class:`ProxyStats` of the server's connections.
    """

    __slots__ = ("_config", "_http_class")

    def __init__(self, http_class: Callable[..., asyncio.Protocol], config: _Config) -> None:
        self._http_class = http_class
        self._config = config

    @property
    def stats(self) -> ProxyStats:
        """The counters shared by the server's connections."""
        return self._config.stats

    def __call__(self, **kwargs: Any) -> ProxyProtocolLayer:
        http_class = self._http_class
        return ProxyProtocolLayer(lambda: http_class(**kwargs), self._config)


def uvicorn_http_protocol(
    *,
    trusted: Trusted,
    http: str | Callable[..., asyncio.Protocol] = "auto",
    **options: Any,
) -> UvicornHTTPProtocol:
    """Serve uvicorn behind a PROXY-protocol proxy: pass the result as ``http=``.

    >>> uvicorn.run(app, host="10.0.0.5", port=8000,  # doctest: +SKIP
    ...             http=uvicorn_http_protocol(trusted=["10.0.0.0/24"]))

    The ASGI ``scope["client"]`` and ``scope["server"]`` are then the original client
    and destination. For TLS passthrough, give the ``SSLContext`` here (TLS starts after
    the header), not to uvicorn's ``ssl_*`` options (those start TLS first).

    Args:
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings).
        http: uvicorn's HTTP implementation: ``"auto"``, ``"h11"``, ``"httptools"`` or
            a protocol class.
        options: ``policy``, ``untrusted_policy``, ``timeout``, ``max_size``, ``ssl``,
            ``ssl_handshake_timeout`` and ``stats``, as for :func:`wrap_protocol_factory`.

    Returns:
        The protocol factory for ``uvicorn.Config(http=...)``; ``.stats`` holds the
        counters.

    Raises:
        ImportError: uvicorn is not installed (with a named implementation).
        KeyError: an unknown implementation name.
        TypeError: an unknown option.
    """
    config = wrap_protocol_factory(asyncio.Protocol, trusted=trusted, **options)._config
    if isinstance(http, str):
        uvicorn_config: Any = importlib.import_module("uvicorn.config")
        importer: Any = importlib.import_module("uvicorn.importer")
        http = importer.import_from_string(uvicorn_config.HTTP_PROTOCOLS[http])
    assert callable(http)
    return UvicornHTTPProtocol(http, config)


# -- clients ------------------------------------------------------------------------


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
    held = _HeldEvents()
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


# -- datagrams ------------------------------------------------------------------------


class ProxyDatagramLayer(asyncio.DatagramProtocol):
    """The PROXY layer for a datagram endpoint: every datagram carries its own header
    ([SPEC §2] R-9), checked against the same trust rules as stream connections.

    The application's ``datagram_received(payload, original_address)`` gets the bytes
    after the header and the header's source (the datagram's own source when the header
    carries none). An application that also needs the proxy's address (to reply through
    it) can define ``proxy_datagram_received(payload, original_address, header, peer)``,
    which is called instead.
    """

    def __init__(self, app: asyncio.DatagramProtocol, config: _Config) -> None:
        self._app = app
        self._config = config
        self._local: Any = None

    @property
    def stats(self) -> ProxyStats:
        """The endpoint's counters (one datagram counts as one connection)."""
        return self._config.stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._local = transport.get_extra_info("sockname")
        self._app.connection_made(transport)  # type: ignore[arg-type]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        config = self._config
        try:
            header, payload = accept_datagram(
                data, addr, self._local, trusted=config.trusted, policy=config.policy,
                untrusted_policy=config.untrusted_policy, max_size=config.max_size)
        except ProxyProtocolError as exc:
            self._drop(_refusal_reason(exc), addr, exc)
            return
        except Exception as exc:  # a policy callable that failed: drop, keep serving
            logger.exception("policy callable failed for %s", _show(addr))
            self._drop("error", addr, exc)
            return
        original: Any = resolve_addresses(header, addr, self._local)[0]
        config.stats.accepted += 1
        hook = getattr(self._app, "proxy_datagram_received", None)
        if hook is not None:
            hook(payload, original, header, addr)
        else:
            self._app.datagram_received(payload, original)

    def _drop(self, reason: str, addr: Any, exc: BaseException | None) -> None:
        self._config.stats.refused[reason] += 1
        logger.info("dropped datagram from %s: %s%s", _show(addr), reason,
                    f" ({exc})" if exc is not None else "")

    def error_received(self, exc: Exception) -> None:
        self._app.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._app.connection_lost(exc)


async def create_datagram_endpoint(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: Any = None,
    remote_addr: Any = None,
    *,
    trusted: Trusted,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Policy | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    stats: ProxyStats | None = None,
    **kwargs: Any,
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
    """``loop.create_datagram_endpoint`` with the PROXY layer in front of the protocol.

    Each datagram is judged on its own: its source address picks the policy (as for
    stream connections), its header is parsed from its first bytes. Refused datagrams
    are dropped, logged and counted in the layer's :class:`ProxyStats`.

    Args:
        protocol_factory: makes the application's ``DatagramProtocol``.
        local_addr: as for ``loop.create_datagram_endpoint``.
        remote_addr: as for ``loop.create_datagram_endpoint``.
        kwargs: other ``loop.create_datagram_endpoint`` arguments.
        trusted: the peers allowed to send a header. ``policy``, ``untrusted_policy``,
            ``max_size`` and ``stats``: see
            :func:`wrap_protocol_factory`.

    Returns:
        ``(transport, app_protocol)``. The counters are the ``stats`` passed in, also
        reachable as ``transport.get_protocol().stats``.
    """
    config = _Config(trusted=trusted, policy=policy, untrusted_policy=untrusted_policy,
                     timeout=DEFAULT_TIMEOUT, max_size=max_size, ssl=None,
                     ssl_handshake_timeout=None, stats=stats)
    app = protocol_factory()
    layer = ProxyDatagramLayer(app, config)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: layer, local_addr=local_addr, remote_addr=remote_addr, **kwargs)
    return transport, app
