"""The PROXY layer of one stream connection, and the settings shared by a server's."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import TYPE_CHECKING, Any, Callable

from .._adapters import ProxyStats
from .._adapters import show_address as _show
from .._connection import PolicyReader, judge_start
from .._errors import ProxyProtocolError
from .._header import ProxyHeader
from .._options import UNSET, ProxyOptions, TrustedArg, check_timeout, options_from
from .._policy import ConnectionPolicy, Policy, decide_policy
from ._deadlines import HeaderDeadlines
from ._tls import HeldEvents
from ._transport import (
    STREAM_PROTOCOLS,
    ProxiedTransport,
    TLSFeedTransport,
    answers_from_extra,
    extra_dict,
    feed_protocol,
    report_in_place,
)

__all__ = ["CONNECTION_SLOTS", "ProxyProtocolFactory", "ProxyProtocolLayer", "StreamLayer",
           "Trusted", "logger", "make_config"]

logger = logging.getLogger("proxyproto.aio")

#: What ``trusted=`` accepts: a ``TrustedProxies``, or CIDR strings and ``ipaddress``
#: objects (the same as :class:`proxyproto.policy.ProxyOptions` takes).
Trusted = TrustedArg

# refusal reasons that mean the trusted peer sent no header, or a bad one
_PROXY_FAULTS = frozenset({"no_header", "invalid", "too_large"})
_SKIP = Policy.SKIP
_UNDECIDED = object()  # no verdict cached for a peer
#: peers' hosts remembered per server (the verdict cache is cleared when full)
_VERDICT_CACHE_SIZE = 4096
_new_layer = object.__new__
_get_running_loop = asyncio.get_running_loop
_BufferedProtocol = asyncio.BufferedProtocol


class _Config:
    """What every connection of one server shares: the :class:`ProxyOptions`, and what
    only the asyncio adapter has (TLS after the header, counters, logging)."""

    __slots__ = ("_deadlines", "handshake_timeout", "log", "max_size", "options", "policy",
                 "refusal_response", "ssl", "stats", "timeout", "trust_unix_peers", "trusted",
                 "untrusted_policy", "verdicts")

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
        #: decide_policy's answers by peer host, when they depend on the host alone (a
        #: plain Policy, not a callable); ``None`` when they do not
        self.verdicts: dict[str, Policy | None] | None = (
            {} if type(options.policy) is Policy else None)

    def policy_for(self, peer: Any, local: Any) -> Policy | None:
        """:func:`decide_policy` for this server's options, remembered by host when it
        depends on the host alone (a connection then costs one dict lookup).

        Raises:
            PolicyError: as ``decide_policy`` (a policy callable that failed).
        """
        policy = decide_policy(peer, local, trusted=self.trusted, policy=self.policy,
                               untrusted_policy=self.untrusted_policy,
                               trust_unix_peers=self.trust_unix_peers)
        verdicts = self.verdicts
        if verdicts is not None and type(peer) is tuple and peer and type(peer[0]) is str:
            if len(verdicts) >= _VERDICT_CACHE_SIZE:  # bounded, whatever the peers
                verdicts.clear()
            verdicts[peer[0]] = policy
        return policy

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


#: the per-connection state of a stream layer (slots of :class:`ProxyProtocolLayer`, and
#: of the uvicorn classes that carry the layer in uvicorn's own protocol object)
CONNECTION_SLOTS = ("_extra", "_local", "_peer", "_pending", "_policy", "_reader",
                    "_transport", "_upgrade", "_waiting")


class StreamLayer:
    """What the PROXY layer of a stream connection does, for any class that stores
    :data:`CONNECTION_SLOTS` and has ``_config`` (no state of its own: a mix-in).

    :class:`ProxyProtocolLayer` is the usual home; the uvicorn integration mixes it into
    uvicorn's own protocol class instead (no second protocol object per connection).
    ``_decided`` is where a subclass changes how the connection is handed over.
    """

    if not TYPE_CHECKING:  # (mypy would take the empty slots for the whole state)
        __slots__ = ()  # a mix-in: the state is the concrete class's

    _config: _Config
    _transport: asyncio.Transport | None
    #: the connection's policy while its header is awaited (``None`` once decided or
    #: refused: data is then dropped)
    _policy: Policy | None
    _reader: PolicyReader | None  # a header split across chunks
    #: the server's waiting connections while this one's header deadline runs
    _waiting: dict[StreamLayer, float] | None
    _pending: bool  # counted in stats.pending
    _upgrade: asyncio.Task[None] | None  # the TLS set-up after the header
    #: the transport's own extra-info dict, written at the hand-over (see extra_dict)
    _extra: dict[str, Any] | None
    _peer: Any
    _local: Any

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # every attribute of the connection is set here (the factory sets only
        # ``_app_factory`` and ``_config``: no __init__ frame per connection)
        self._transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)
        self._policy = self._reader = self._waiting = self._upgrade = None
        self._pending = False
        config = self._config
        # asyncio's own transports answer get_extra_info from a dict: read it, and at the
        # hand-over write the header's addresses into it (no wrapper; see extra_dict)
        extra = (transport._extra if type(transport) in answers_from_extra  # type: ignore[attr-defined]
                 else extra_dict(transport))
        if type(extra) is dict:
            self._extra = extra
            self._peer = peer = extra.get("peername")
            self._local = local = extra.get("sockname")
        else:
            self._extra = None
            self._peer = peer = transport.get_extra_info("peername")
            self._local = local = transport.get_extra_info("sockname")
        verdicts = config.verdicts
        policy: Any = _UNDECIDED
        if verdicts is not None and type(peer) is tuple and peer:
            policy = verdicts.get(peer[0], _UNDECIDED)
        if policy is _UNDECIDED:
            try:
                policy = config.policy_for(peer, local)
            except ProxyProtocolError as exc:  # a policy callable that failed: refuse
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
            if deadlines is None or deadlines.loop is not _get_running_loop():
                deadlines = config.deadlines(_get_running_loop())
                assert deadlines is not None
            # deadlines.add(self), inline (one frame fewer per connection)
            self._waiting = waiting = deadlines.waiting
            waiting[self] = deadline = deadlines._time() + deadlines._timeout
            if deadlines._timer is None:
                deadlines._arm(deadline)

    def data_received(self, data: bytes) -> None:
        policy = self._policy
        if policy is None:  # refused or already handed over: drop
            return
        reader = self._reader
        if reader is None:  # the first chunk: judged as it is
            config = self._config
            answer = judge_start(policy, data, config.max_size, False)
            kind = type(answer)
            if kind is tuple:  # Decided
                header, received, offset = answer  # type: ignore[misc]
                self._decided(header, received, data[offset:] if offset else bytes(data))
            elif kind is int:  # Need
                self._reader = reader = PolicyReader(policy, max_size=config.max_size)
                reader._wait(answer, data)  # type: ignore[arg-type]
            else:  # Refused
                self._refuse(answer.reason, answer)  # type: ignore[union-attr, arg-type]
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
        self._cancel_deadline()
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
        extra = self._extra
        if extra is not None:  # the transport itself reports the header's addresses
            report_in_place(extra, header, received, self._peer, self._local)
            app.connection_made(transport)
        else:
            app.connection_made(ProxiedTransport(transport, header, received, self._peer,
                                                 self._local))
        if app_data and not transport.is_closing():
            # [SPEC §2.2] R-64: the bytes after the header
            if isinstance(app, _BufferedProtocol):
                feed_protocol(app, app_data)
            else:
                app.data_received(app_data)  # type: ignore[attr-defined]  # a Protocol
        return app

    def _new_app(self, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        """The application's protocol for this connection (``header``: the one accepted)."""
        raise NotImplementedError

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


class ProxyProtocolLayer(StreamLayer, asyncio.Protocol):
    """The PROXY layer for one stream connection, in front of an application protocol.

    Built by :func:`wrap_protocol_factory`; not meant to be created directly. Once the
    header is accepted the real transport talks to the application protocol directly,
    so the layer costs nothing after the hand-over.
    """

    # Per connection, only what varies: a first chunk that decides (the usual case: the
    # proxy writes the header, often with the request, in one segment) is judged by the
    # machine directly, without a PolicyReader; one is made only for a header split
    # across chunks. Everything the connections share is in ``_config``.
    __slots__ = ("__weakref__", "_app_factory", "_config", *CONNECTION_SLOTS)

    def __init__(self, app_factory: Callable[[], asyncio.BaseProtocol], config: _Config) -> None:
        # the rest of the state is the connection's, set by connection_made
        self._app_factory = app_factory
        self._config = config
        self._transport = self._upgrade = self._waiting = None
        self._peer = self._local = None
        self._pending = False

    def _new_app(self, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        """The application's protocol for this connection (subclasses may use ``header``)."""
        return self._app_factory()


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
        # ProxyProtocolLayer.__init__, inlined (one Python frame fewer per connection)
        layer: ProxyProtocolLayer = _new_layer(ProxyProtocolLayer)
        layer._app_factory = self._app_factory
        layer._config = self._config
        return layer

