"""uvicorn behind the PROXY layer: a protocol class for ``uvicorn.Config(http=...)``.

:func:`uvicorn_http_protocol` makes a subclass of :class:`UvicornHTTPProtocol` bound to
one set of options. uvicorn creates one per connection, as it would its own HTTP protocol;
once the header is accepted, the layer hands the connection to uvicorn's protocol (h11,
httptools, and from there its WebSocket protocols) with:

* ``scope["client"]`` / ``scope["server"]``: the header's addresses (the socket's own
  for ``LOCAL`` and ``UNKNOWN``), through the transport's ``get_extra_info``;
* ``scope["extensions"]["proxy_protocol"]``: the header and the proxy's own addresses;
* uvicorn's ``X-Forwarded-For`` route (``proxy_headers``) off unless
  ``forwarded_headers=True``: behind the PROXY layer the address comes from the header.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl as _ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from .. import _impl
from .._adapters import ProxyStats
from .._header import ProxyHeader
from .._options import UNSET, ProxyOptions
from .._policy import ConnectionPolicy, Policy
from ._layer import CONNECTION_SLOTS, ProxyProtocolLayer, StreamLayer, Trusted, _Config, make_config
from ._transport import ProxiedTransport, report_in_place

__all__ = ["BAD_REQUEST", "UvicornHTTPProtocol", "uvicorn_http_protocol"]

#: what ``bad_request=True`` answers a trusted peer whose header is missing or bad
_BODY = b"Invalid PROXY protocol header\n"
BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY))

#: uvicorn's own logger for server events; gunicorn's worker wires it to its error log
_UVICORN_LOGGER = "uvicorn.error"


class ProxyExtensionAppPython:
    """An ASGI app that puts ``extension`` in ``scope["extensions"]["proxy_protocol"]``
    and calls ``app``. The reference; :data:`ProxyExtensionApp` is the compiled twin
    when the extension is built (a C ``__call__``: no Python frame per request)."""

    __slots__ = ("app", "extension")

    app: Callable[..., Awaitable[None]]
    extension: dict[str, Any]

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        # a plain function returning the app's awaitable: no coroutine frame of our own
        extensions = scope.get("extensions")
        if extensions is None:
            scope["extensions"] = {"proxy_protocol": self.extension}
        else:
            extensions["proxy_protocol"] = self.extension
        return self.app(scope, receive, send)


if TYPE_CHECKING or _impl.IMPLEMENTATION != "cython":
    ProxyExtensionApp = ProxyExtensionAppPython
else:  # the compiled twin
    from .._fast import ProxyExtensionApp


class _WithProxyHeader(ProxyExtensionApp):
    """The ASGI app of one connection: adds ``scope["extensions"]["proxy_protocol"]``,
    and stands for uvicorn's WebSocket class so that an upgraded connection has it too."""

    __slots__ = ("ws_class",)

    def __init__(self, app: Callable[..., Awaitable[None]], extension: dict[str, Any],
                 ws_class: Any = None) -> None:
        self.app = app
        self.extension = extension
        self.ws_class = ws_class

    def websocket(self, config: Any, **kwargs: Any) -> Any:
        """Stands for uvicorn's WebSocket protocol class on one connection: the upgraded
        connection's app is this one too (an upgrade is rare: a config copy is fine)."""
        return self.ws_class(config=_config_with_app(config, self), **kwargs)


#: a _WithProxyHeader without its __init__ frame (the compiled base has its own __new__)
_new_app_wrapper = _WithProxyHeader.__new__


def _uvicorn_own(http_class: Any) -> bool:
    """Whether ``http_class`` is (a subclass of) one of uvicorn's HTTP/1.1 protocols."""
    own: list[type] = []
    for module, name in (("uvicorn.protocols.http.h11_impl", "H11Protocol"),
                         ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol")):
        try:
            own.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return isinstance(http_class, type) and issubclass(http_class, tuple(own))


def _config_with_app(config: Any, app: Any) -> Any:
    """A shallow copy of a ``uvicorn.Config`` whose ``loaded_app`` is ``app``."""
    copy = object.__new__(type(config))
    copy.__dict__.update(config.__dict__)
    copy.loaded_app = app
    return copy


class _Setup:
    """What the connections of one :func:`uvicorn_http_protocol` class share."""

    __slots__ = ("_configs", "config", "forwarded_headers", "http_class", "patch")

    def __init__(self, http_class: Callable[..., asyncio.Protocol], config: _Config,
                 forwarded_headers: bool) -> None:
        self.http_class = http_class
        #: uvicorn's own HTTP protocols keep the app and the WebSocket class as the
        #: attributes ``app`` and ``ws_protocol_class``: those are replaced on the
        #: connection's protocol (cheap); any other class gets a copy of the config
        self.patch = _uvicorn_own(http_class)
        self.config = config
        self.forwarded_headers = forwarded_headers
        # uvicorn's Config -> the one the connections get (without the X-Forwarded-For route)
        self._configs: tuple[Any, Any] | None = None

    def base_config(self, config: Any) -> Any:
        """``config`` as this server's connections see it: uvicorn's ``proxy_headers``
        middleware (the ``X-Forwarded-For`` route) removed unless it was asked for."""
        configs = self._configs
        if configs is not None and configs[0] is config:
            return configs[1]
        if not config.loaded:
            config.load()
        base = config
        if not self.forwarded_headers:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            app = config.loaded_app
            if isinstance(app, ProxyHeadersMiddleware):
                base = _config_with_app(config, app.app)
                logging.getLogger(_UVICORN_LOGGER).info(
                    "proxyproto: X-Forwarded-For/-Proto ignored, the client address comes "
                    "from the PROXY header (forwarded_headers=True to combine them)")
        self._configs = (config, base)
        return base


class UvicornHTTPProtocol(StreamLayer, asyncio.Protocol):
    """The PROXY layer for uvicorn's HTTP protocol, for ``uvicorn.Config(http=...)``.

    Not used directly: :func:`uvicorn_http_protocol` returns a subclass bound to its
    options, which uvicorn instantiates once per connection as it would its own class.
    For uvicorn's own protocols (h11, httptools) that subclass *is* uvicorn's class with
    the layer mixed in: the connection has one protocol object, which becomes plain
    uvicorn (its class is switched back) once the header is accepted. For another
    protocol class, or TLS after the header, the layer is a protocol of its own that hands
    the connection to a new protocol of that class.

    Attributes:
        stats: the :class:`ProxyStats` of the connections (a class attribute, shared by
            every connection of the subclass).
    """

    if not TYPE_CHECKING:  # (mypy would take the empty slots for the whole state)
        __slots__ = ()  # a mix-in: the state is in the generated class's slots

    stats: ClassVar[ProxyStats]
    _setup: ClassVar[_Setup]


class _InUvicornProtocol(UvicornHTTPProtocol):
    """The layer mixed into uvicorn's own protocol class (h11, httptools): one protocol
    object per connection, no hand-over to another. Until the header is settled the
    layer's methods run; then uvicorn's ``connection_made`` with the header's addresses,
    and from there uvicorn's own methods (``transport`` set) serve the connection."""

    if not TYPE_CHECKING:
        __slots__ = ()  # (the generated class's base has the layer's slots)

    # uvicorn's own protocol attributes, which the hand-over sets; ``transport`` is
    # ``None`` until uvicorn's ``connection_made`` (at the hand-over)
    config: Any
    app: Any
    ws_protocol_class: Any
    transport: Any
    # uvicorn's own methods (the HTTP class's), for the connection once handed over
    _http_connection_made: ClassVar[Callable[..., None]]
    _http_data_received: ClassVar[Callable[..., None]]
    _http_eof_received: ClassVar[Callable[..., bool | None]]
    _http_connection_lost: ClassVar[Callable[..., None]]

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # the header is awaited (or was refused)
            StreamLayer.data_received(self, data)
        else:
            self._http_data_received(data)

    def eof_received(self) -> bool | None:
        if self.transport is None:
            return StreamLayer.eof_received(self)
        return self._http_eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            StreamLayer.connection_lost(self, exc)
        else:
            self._http_connection_lost(exc)

    def _decided(self, header: ProxyHeader | None, received: ProxyHeader | None,
                 app_data: bytes) -> asyncio.BaseProtocol | None:
        """The header is settled: this object becomes uvicorn's own protocol (its
        ``connection_made`` with the header's addresses, then the bytes after it)."""
        self._policy = self._reader = None
        self._cancel_deadline()
        stats = self._config.stats
        if self._pending:
            self._pending = False
            stats.pending -= 1
        stats.accepted += 1
        transport = self._transport
        assert transport is not None
        setup = self._setup
        extra = self._extra
        reported: asyncio.BaseTransport
        if extra is not None:  # the transport itself reports the header's addresses
            report_in_place(extra, header, received, self._peer, self._local)
            reported = transport
        else:
            reported = ProxiedTransport(transport, header, received, self._peer, self._local)
        config = self.config  # uvicorn's Config, as given to __init__
        configs = setup._configs  # (uvicorn's Config, ours): the same for every connection
        base = configs[1] if configs is not None and configs[0] is config else (
            setup.base_config(config))
        self.config = base
        if header is None:
            self.app = base.loaded_app
        else:
            # _WithProxyHeader(...), without its __init__ frame (once per connection)
            app = _new_app_wrapper(_WithProxyHeader)
            app.app = base.loaded_app
            app.extension = {"header": header, "socket_peername": self._peer,
                             "socket_sockname": self._local}
            app.ws_class = ws_class = self.ws_protocol_class
            self.app = app
            if ws_class is not None:
                self.ws_protocol_class = app.websocket
        # from here on uvicorn's own methods serve the connection
        self._http_connection_made(reported)  # (which never closes the transport)
        if app_data:
            self._http_data_received(app_data)  # [SPEC §2.2] R-64: the bytes after the header
        return self


class _SeparateUvicornLayer(UvicornHTTPProtocol):
    """The layer as a protocol of its own, in front of a new protocol of the HTTP class
    made at the hand-over: TLS after the header, or a class other than uvicorn's own
    (mixed in front of :class:`ProxyProtocolLayer`)."""

    if not TYPE_CHECKING:
        __slots__ = ()  # (the generated class has ``_uvicorn``)

    _uvicorn: tuple[Any, Any, Any, Any]
    _app_factory: Callable[..., asyncio.BaseProtocol]

    def __init__(self, config: Any, server_state: Any, app_state: Optional[Any] = None,
                 _loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        setup = self._setup
        configs = setup._configs
        base = configs[1] if configs is not None and configs[0] is config else (
            setup.base_config(config))
        # what uvicorn gave, for its own protocol once the header is settled
        self._uvicorn = (base, server_state, app_state, _loop)
        self._app_factory = setup.http_class
        self._config = setup.config
        self._peer = self._local = None  # (connection_made sets them)

    def _new_app(self, header: ProxyHeader | None) -> asyncio.BaseProtocol:
        config, server_state, app_state, loop = self._uvicorn
        setup = self._setup
        app = None
        if header is not None:
            app = _new_app_wrapper(_WithProxyHeader)
            app.app = config.loaded_app
            app.extension = {"header": header, "socket_peername": self._peer,
                             "socket_sockname": self._local}
            app.ws_class = config.ws_protocol_class
            if not setup.patch:
                config = _config_with_app(config, app)
        if app_state is None:  # uvicorn before 0.27 has no app_state
            protocol: Any = setup.http_class(config=config, server_state=server_state,
                                             _loop=loop)
        else:
            protocol = setup.http_class(config=config, server_state=server_state,
                                        app_state=app_state, _loop=loop)
        if app is not None and setup.patch:
            protocol.app = app
            if app.ws_class is not None:
                protocol.ws_protocol_class = app.websocket
        return protocol  # type: ignore[no-any-return]


def _mixes_in(http_class: Any) -> bool:
    """Whether the layer can live in ``http_class``'s own objects: one of uvicorn's
    HTTP/1.1 protocols (whose ``app``/``ws_protocol_class``/``config`` the hand-over
    sets), objects with a ``__dict__`` and no ``__slots__`` of their own, and none of the
    layer's names taken."""
    if not _uvicorn_own(http_class) or "__slots__" in vars(http_class):
        return False
    # the layer's own names (dunders aside: every class has some, 3.13 more of them)
    ours = {name for cls in (_InUvicornProtocol, UvicornHTTPProtocol, StreamLayer)
            for name in vars(cls) if not name.startswith("__")}
    ours.update(CONNECTION_SLOTS)
    ours -= {"connection_made", "data_received", "eof_received", "connection_lost"}
    taken = {name for cls in http_class.__mro__ if cls is not object for name in vars(cls)}
    return not ours & taken


# the type flags of an object's dict layout: Py_TPFLAGS_INLINE_VALUES (3.13),
# Py_TPFLAGS_MANAGED_WEAKREF and Py_TPFLAGS_MANAGED_DICT (3.11, 3.12)
_DICT_LAYOUT_FLAGS = (1 << 2) | (1 << 3) | (1 << 4)


def _with_layer_slots(http_class: Any) -> type | None:
    """``http_class`` with the layer's state in slots (not in its objects' ``__dict__``,
    whose keys the class's objects share: more keys would cost every connection), when
    the layer can live in its objects (:func:`_mixes_in`) and the slots cost them
    nothing; else ``None`` (the layer is then an object of its own).

    On 3.13 a subclass with slots loses the inline attribute values of uvicorn's
    objects (``Py_TPFLAGS_INLINE_VALUES``): every uvicorn attribute then goes through a
    dict (measured: +12 % instructions per new connection, +8 % per kept-alive request,
    against +4.7 % and -2.9 % for a layer object of its own).
    """
    if not _mixes_in(http_class):
        return None
    with_slots: type = type(http_class.__name__, (http_class,), {
        "__slots__": CONNECTION_SLOTS, "__module__": http_class.__module__})
    if (with_slots.__flags__ ^ http_class.__flags__) & _DICT_LAYOUT_FLAGS:
        return None
    return with_slots


def uvicorn_http_protocol(
    *,
    trusted: Trusted | None = None,
    http: str | Callable[..., asyncio.Protocol] = "auto",
    forwarded_headers: bool = False,
    bad_request: bool = False,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    timeout: float | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: ProxyOptions | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    stats: ProxyStats | None = None,
) -> type[UvicornHTTPProtocol]:
    """Serve uvicorn behind a PROXY-protocol proxy: pass the result as ``http=``.

    >>> uvicorn.run(app, host="10.0.0.5", port=8000,  # doctest: +SKIP
    ...             http=uvicorn_http_protocol(trusted=["10.0.0.0/24"]))

    The ASGI ``scope["client"]`` and ``scope["server"]`` are then the original client
    and destination (the socket's own for ``LOCAL``/``UNKNOWN`` headers), and
    ``scope["extensions"]["proxy_protocol"]`` is ``{"header": ProxyHeader,
    "socket_peername": ..., "socket_sockname": ...}`` (the proxy's own addresses); it is
    absent when no header was read. For TLS passthrough, give the ``SSLContext`` here
    (TLS starts after the header), not to uvicorn's ``ssl_*`` options (those start TLS
    first). Refusals are logged on ``uvicorn.error``: WARNING for a trusted peer that
    sent no header or a bad one, INFO otherwise.

    Args:
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings).
        http: uvicorn's HTTP implementation: ``"auto"``, ``"h11"``, ``"httptools"`` or
            a protocol class.
        forwarded_headers: also honour uvicorn's ``proxy_headers`` (``X-Forwarded-For``
            and ``-Proto`` from the addresses in ``forwarded_allow_ips``, judged on the
            header's client address). Off by default: any client that reaches the proxy
            could otherwise write its own address.
        bad_request: answer a trusted peer whose header is missing or bad with
            ``400 Bad Request`` before closing (as gunicorn does), instead of closing.
        policy: as for :func:`wrap_protocol_factory`, like the options below.
        untrusted_policy: see :func:`wrap_protocol_factory`.
        timeout: see :func:`wrap_protocol_factory`.
        max_size: see :func:`wrap_protocol_factory`.
        trust_unix_peers: trust the peers of a UNIX-socket listener (uvicorn ``uds=``
            behind nginx or HAProxy on the same host); off by default.
        options: see :func:`wrap_protocol_factory`.
        ssl: a server ``SSLContext``: TLS after the header (TLS passthrough).
        ssl_handshake_timeout: see :func:`wrap_protocol_factory`.
        stats: see :func:`wrap_protocol_factory`.

    Returns:
        The protocol class for ``uvicorn.Config(http=...)``; ``.stats`` holds the
        counters.

    Raises:
        ImportError: uvicorn is not installed (with a named implementation).
        KeyError: an unknown implementation name.
        TypeError, ValueError: a bad option (as for :func:`wrap_protocol_factory`).
    """
    config = make_config(options, trusted=trusted, policy=policy,
                         untrusted_policy=untrusted_policy, timeout=timeout,
                         max_size=max_size, trust_unix_peers=trust_unix_peers, ssl=ssl,
                         ssl_handshake_timeout=ssl_handshake_timeout, stats=stats)
    config.log = logging.getLogger(_UVICORN_LOGGER)
    config.refusal_response = BAD_REQUEST if bad_request else None
    if isinstance(http, str):
        uvicorn_config: Any = importlib.import_module("uvicorn.config")
        importer: Any = importlib.import_module("uvicorn.importer")
        http = importer.import_from_string(uvicorn_config.HTTP_PROTOCOLS[http])
    if not callable(http):
        raise TypeError(f"http must be an implementation name or a protocol class, not {http!r}")
    setup = _Setup(http, config, bool(forwarded_headers))
    namespace = {"stats": config.stats, "_setup": setup}
    with_slots = None if config.ssl is not None else _with_layer_slots(http)
    if with_slots is not None:
        base_class: Any = http
        return type("ProxyUvicornHTTPProtocol", (_InUvicornProtocol, with_slots), {
            "__slots__": (), "_config": config, **namespace,
            "_http_connection_made": base_class.connection_made,
            "_http_data_received": base_class.data_received,
            "_http_eof_received": base_class.eof_received,
            "_http_connection_lost": base_class.connection_lost})
    return type("ProxyUvicornHTTPProtocol", (_SeparateUvicornLayer, ProxyProtocolLayer),
                {"__slots__": ("_uvicorn",), **namespace})
