"""The PROXY layer of one stream connection, and the settings shared by a server's."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Callable

from .._adapters import ProxyStats
from .._adapters import show_address as _show
from .._connection import Decided, Need, PolicyReader, decide_start
from .._errors import ProxyProtocolError
from .._header import ProxyHeader
from .._options import UNSET, ProxyOptions, TrustedArg, check_timeout, options_from
from .._policy import ConnectionPolicy, Policy, decide_policy
from ._deadlines import HeaderDeadlines
from ._tls import HeldEvents
from ._transport import STREAM_PROTOCOLS, ProxiedTransport, TLSFeedTransport, feed_protocol

__all__ = ["ProxyProtocolFactory", "ProxyProtocolLayer", "Trusted", "logger", "make_config"]

logger = logging.getLogger("proxyproto.aio")

#: What ``trusted=`` accepts: a ``TrustedProxies``, or CIDR strings and ``ipaddress``
#: objects (the same as :class:`proxyproto.policy.ProxyOptions` takes).
Trusted = TrustedArg

# refusal reasons that mean the trusted peer sent no header, or a bad one
_PROXY_FAULTS = frozenset({"no_header", "invalid", "too_large"})
_SKIP = Policy.SKIP


class _Config:
    """What every connection of one server shares: the :class:`ProxyOptions`, and what
    only the asyncio adapter has (TLS after the header, counters, logging)."""

    __slots__ = ("_deadlines", "handshake_timeout", "log", "max_size", "options", "policy",
                 "refusal_response", "ssl", "stats", "timeout", "trust_unix_peers", "trusted",
                 "untrusted_policy")

    def __init__(
        self,
        options: ProxyOptions,
        *,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        stats: ProxyStats | None = None,
    ) -> None:
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError("ssl must be an ssl.SSLContext (TLS starts after the header)")
        handshake_timeout = check_timeout(ssl_handshake_timeout, "ssl_handshake_timeout")
        if stats is not None and not isinstance(stats, ProxyStats):
            raise TypeError(f"stats must be a ProxyStats or None, not {type(stats).__name__}")
        self.options = options
        # the options each connection reads, as attributes of their own (one lookup each)
        self.trusted = options.trusted
        self.policy = options.policy
        self.untrusted_policy = options.untrusted_policy
        self.trust_unix_peers = options.trust_unix_peers
        self.timeout = options.timeout  # None: no header deadline
        self.max_size = options.max_size
        self.ssl = ssl
        # the handshake after the header is bounded like the header itself (asyncio's own
        # default, 60 s, let a peer that sent a header and stalled hold the connection);
        # with no header deadline either, asyncio's default applies
        self.handshake_timeout = (options.timeout if handshake_timeout is None
                                  else handshake_timeout)
        self.stats = stats if stats is not None else ProxyStats()
        #: where refusals are logged (the uvicorn integration logs on uvicorn's own logger)
        self.log = logger
        #: written to a trusted peer whose header is missing or bad, before closing
        #: (``None``: closed without a word)
        self.refusal_response: bytes | None = None
        self._deadlines: HeaderDeadlines | None = None

    def deadlines(self, loop: asyncio.AbstractEventLoop) -> HeaderDeadlines | None:
        """The header deadlines of this server's connections on ``loop`` (``None``
        when there is no header timeout)."""
        timeout = self.timeout
        if timeout is None:
            return None
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            # a factory used on another loop: a queue of its own there (the previous one
            # lives on with its timer and its connections, until they are settled)
            deadlines = self._deadlines = HeaderDeadlines(loop, timeout)
        return deadlines


def make_config(
    options: ProxyOptions | None,
    *,
    trusted: Trusted | None = None,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    timeout: float | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
) -> _Config:
    """The shared settings from ``options=`` or the separate keywords (not both).

    Raises:
        TypeError: both ``options`` and a keyword, neither ``options`` nor ``trusted``,
            or a value of the wrong type.
        ValueError: a value out of range.
    """
    chosen = options_from(options, trusted=UNSET if trusted is None else trusted,
                          policy=policy, untrusted_policy=untrusted_policy, timeout=timeout,
                          max_size=max_size, trust_unix_peers=trust_unix_peers)
    return _Config(chosen, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)


class ProxyProtocolLayer(asyncio.Protocol):
    """The PROXY layer for one stream connection, in front of an application protocol.

    Built by :func:`wrap_protocol_factory`; not meant to be created directly. Once the
    header is accepted the real transport talks to the application protocol directly,
    so the layer costs nothing after the hand-over.
    """

    # Per connection, only what varies: a first chunk that decides (the usual case: the
    # proxy writes the header, often with the request, in one segment) is judged by the
    # machine directly, without a PolicyReader; one is made only for a header split
    # across chunks. Everything the connections share is in ``_config``.
    __slots__ = ("__weakref__", "_app_factory", "_config", "_local", "_peer", "_pending",
                 "_policy", "_reader", "_transport", "_upgrade", "_waiting")

    def __init__(self, app_factory: Callable[[], asyncio.BaseProtocol], config: _Config) -> None:
        self._app_factory = app_factory
        self._config = config
        self._transport: asyncio.Transport | None = None
        #: the connection's policy while its header is awaited (``None`` before, once
        #: decided and once refused: data is then dropped)
        self._policy: Policy | None = None
        self._reader: PolicyReader | None = None  # a header split across chunks
        # the server's waiting connections while this one's header deadline runs
        self._waiting: dict[ProxyProtocolLayer, float] | None = None
        self._peer: Any = None
        self._local: Any = None
        self._pending = False  # counted in stats.pending
        self._upgrade: asyncio.Task[None] | None = None

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)
        config = self._config
        self._peer = peer = transport.get_extra_info("peername")
        self._local = local = transport.get_extra_info("sockname")
        try:
            policy = decide_policy(peer, local, trusted=config.trusted, policy=config.policy,
                                   untrusted_policy=config.untrusted_policy,
                                   trust_unix_peers=config.trust_unix_peers)
        except ProxyProtocolError as exc:  # a policy callable that failed: refuse, keep serving
            config.log.error("policy callable failed for %s", _show(peer),
                             exc_info=exc.__cause__ or exc)
            self._refuse(exc.reason, exc)
            return
        if policy is None:
            # [SPEC §5] R-62: an untrusted peer; nothing is read
            self._refuse("untrusted", None)
            return
        config.stats.pending += 1
        self._pending = True
        if policy is _SKIP:  # no header looked for
            self._decided(None, None, b"")
            return
        self._policy = policy
        # [SPEC §2] R-8: give up on a header that does not arrive in time (one timer per
        # server and loop for all its connections' deadlines)
        if config.timeout is not None:  # None: no deadline
            deadlines = config._deadlines
            if deadlines is None or deadlines.loop is not asyncio.get_running_loop():
                deadlines = config.deadlines(asyncio.get_running_loop())
                assert deadlines is not None
            deadlines.add(self)
            self._waiting = deadlines.waiting

    def data_received(self, data: bytes) -> None:
        policy = self._policy
        if policy is None:  # refused or already handed over: drop
            return
        reader = self._reader
        if reader is None:  # the first chunk: judged as it is
            config = self._config
            result = decide_start(policy, data, config.max_size)
            kind = type(result)
            if kind is Decided:
                header, received, offset = result  # type: ignore[misc]
                self._decided(header, received, data[offset:] if offset else bytes(data))
            elif kind is Need:
                self._reader = reader = PolicyReader(policy, max_size=config.max_size)
                reader._wait(result.needed, data)  # type: ignore[union-attr]
            else:
                error = result.error  # type: ignore[union-attr]
                self._refuse(error.reason, error)
            return
        try:
            done = reader.feed(data)
        except ProxyProtocolError as exc:
            self._refuse(exc.reason, exc)
            return
        if done:
            self._decided(reader.header, reader.received, reader.app_data)

    def _finish(self) -> PolicyReader:
        """Decide now, with what arrived (EOF or the deadline); raises as ``finish``."""
        reader = self._reader
        if reader is None:
            assert self._policy is not None
            reader = PolicyReader(self._policy, max_size=self._config.max_size)
        reader.finish()
        return reader

    def eof_received(self) -> bool | None:
        if self._policy is None:
            return None
        try:
            reader = self._finish()
        except ProxyProtocolError as exc:
            self._refuse("eof", exc)
            return None
        if self._config.ssl is not None:  # no TLS handshake can follow an EOF
            self._refuse("eof", None)
            return None
        app = self._decided(reader.header, reader.received, b"")
        if app is not None and isinstance(app, STREAM_PROTOCOLS):
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
        if self._policy is None:
            return
        try:
            # nothing arrived, header optional: a server-speaks-first client
            reader = self._finish()
        except ProxyProtocolError as exc:
            self._refuse("timeout", exc)
            return
        self._decided(reader.header, reader.received, b"")

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
        self._policy = self._reader = None
        config = self._config
        # a trusted peer (an untrusted one is refused before anything is read) that sent no
        # header or a bad one: a misconfigured proxy, worth a WARNING
        misconfigured = reason in _PROXY_FAULTS
        config.log.log(logging.WARNING if misconfigured else logging.INFO,
                       "refused connection from %s: %s%s", _show(self._peer), reason,
                       f" ({exc})" if exc is not None and str(exc) else "")
        transport = self._transport
        if transport is not None:
            response = config.refusal_response
            if misconfigured and response is not None and not transport.is_closing():
                transport.write(response)
                transport.close()  # after the answer is written
            else:
                transport.abort()

    def _accept(self) -> None:
        stats = self._config.stats
        if self._pending:
            self._pending = False
            stats.pending -= 1
        stats.accepted += 1

    def _decided(self, header: ProxyHeader | None, received: ProxyHeader | None,
                 app_data: bytes) -> asyncio.BaseProtocol | None:
        """The header is settled: start TLS, or give the connection to the application."""
        self._policy = self._reader = None
        waiting = self._waiting
        if waiting is not None:  # _cancel_deadline(), inline: once per connection
            self._waiting = None
            waiting.pop(self, None)
            if not waiting:
                waiting.clear()  # frees the table a burst of connections left
        transport = self._transport
        assert transport is not None
        config = self._config
        if config.ssl is not None:
            transport.pause_reading()  # the rest belongs to TLS: read nothing more here
            self._upgrade = asyncio.get_running_loop().create_task(
                self._start_tls(TLSFeedTransport(transport, app_data), header, received))
            return None
        stats = config.stats
        if self._pending:
            self._pending = False
            stats.pending -= 1
        stats.accepted += 1
        app = self._new_app(header)
        transport.set_protocol(app)  # from now on the socket talks to the app directly
        app.connection_made(ProxiedTransport(transport, header, received, self._peer,
                                             self._local))
        if app_data and not transport.is_closing():
            feed_protocol(app, app_data)  # [SPEC §2.2] R-64: the bytes after the header
        return app

    def _new_app(self, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        """The application's protocol for this connection (subclasses may use ``header``)."""
        return self._app_factory()

    async def _start_tls(
        self, raw: TLSFeedTransport, header: ProxyHeader | None, received: ProxyHeader | None
    ) -> None:
        config = self._config
        assert config.ssl is not None
        held = HeldEvents()
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
        app = self._new_app(header)
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

