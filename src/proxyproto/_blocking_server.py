"""The ``socketserver`` mix-in of :mod:`proxyproto.blocking` (public there)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any, Callable, NamedTuple, Optional

from ._adapters import ProxyStats, refusal_reason, show_address
from ._errors import REFUSALS, HandshakeFailed
from ._header import ProxyHeader
from ._options import UNSET, ProxyOptions, TrustedArg, check_timeout
from ._policy import DEFAULT_TIMEOUT, ConnectionPolicy, Policy, resolve_addresses
from ._reader import DEFAULT_MAX_SIZE

__all__ = ["ProxyInfo", "ProxyProtocolMixIn"]

logger = logging.getLogger("proxyproto.blocking")

_REFUSED: tuple[type[BaseException], ...] = (*REFUSALS, OSError)


class ProxyInfo(NamedTuple):
    """What :class:`ProxyProtocolMixIn` learnt about one connection."""

    header: Optional[ProxyHeader]  #: the header honoured (``None``: the socket's addresses)
    received: Optional[ProxyHeader]  #: the header read, even if discarded (``IGNORE``)
    client: Any  #: the original client (the header's source, else the socket's peer)
    destination: Any  #: the original destination (else the socket's own address)


def _pick(given: Any, alias: Any, name: str, alias_name: str) -> Any:
    if given is not UNSET and alias is not UNSET:
        raise TypeError(f"pass {name}= or its deprecated alias {alias_name}=, not both")
    return alias if given is UNSET else given


class ProxyProtocolMixIn:
    """A :mod:`socketserver` mix-in: ``client_address`` becomes the original client.

    Put it first::

        class Server(ProxyProtocolMixIn, http.server.ThreadingHTTPServer):
            pass

        server = Server(("127.0.0.1", 8080), Handler, trusted=["10.0.0.0/8"])

    Works with ``TCPServer``, ``ThreadingTCPServer``, ``ThreadingHTTPServer`` and the
    other stream servers. An untrusted peer is closed in ``verify_request``, before a
    byte is read; the header itself is read in ``finish_request``, so under a threading
    server a slow peer holds only its own thread (a plain ``TCPServer`` serves one
    connection at a time, header included). Every refusal is counted in
    :attr:`proxy_stats` (a :class:`ProxyStats`, the class the asyncio servers use, with
    the same reasons), logged by :meth:`handle_proxy_refusal` and never stops the
    server.

    HTTPS the ``http.server`` way (``server.socket = context.wrap_socket(server.socket,
    server_side=True)``) works: the mix-in accepts the TCP connection without TLS,
    reads the header from it, then runs the TLS handshake (bounded by ``timeout``; a
    failure is refused as ``"tls"``) in ``finish_request``, so in the handler's thread.

    The handler gets ``client_address`` (the header's source, else the socket's peer)
    and the attributes ``proxy_header`` (the header honoured, or ``None``),
    ``proxy_header_received`` (the header read, even when ``IGNORE`` discarded it) and
    ``proxy_destination`` (the header's destination, else the socket's own address).
    A handler built by a factory rather than a class (``functools.partial``) can ask
    ``self.server.proxy_info(self.request)`` for the same, as a :class:`ProxyInfo`.

    Each keyword argument can also be set as a class attribute with a ``proxy_`` prefix
    (``proxy_trusted``, ``proxy_policy``, ``proxy_timeout``...); the other arguments go
    to the server class. The validated settings are :attr:`proxy_options`.

    Args:
        trusted: the networks allowed to send a header (required, unless ``options``).
        policy: the policy for trusted peers, or a callable ``(peer, local) -> Policy``
            (default ``REQUIRE``).
        untrusted_policy: the policy for other peers (default ``None``: close them).
        timeout: the deadline for the header (and a TLS handshake), in seconds
            (default 5; ``None``: none).
        header_timeout: deprecated alias of ``timeout`` (and ``proxy_header_timeout``
            of ``proxy_timeout``).
        max_size: the largest v2 header accepted (default 4096).
        trust_unix_peers: treat UNIX-socket peers as trusted (default ``False``).
        options: all of the above as one :class:`~proxyproto.policy.ProxyOptions`.
    """

    proxy_options: Optional[ProxyOptions] = None
    proxy_trusted: Optional[TrustedArg] = None
    proxy_policy: ConnectionPolicy = Policy.REQUIRE
    proxy_untrusted_policy: Optional[Policy] = None
    proxy_timeout: Optional[float] = DEFAULT_TIMEOUT
    proxy_header_timeout: Optional[float] = DEFAULT_TIMEOUT  #: deprecated: proxy_timeout
    proxy_max_size: int = DEFAULT_MAX_SIZE
    proxy_trust_unix_peers: bool = False

    #: Accepted and refused connections, refusals by reason, headers being read.
    proxy_stats: ProxyStats

    def __init__(
        self,
        *args: Any,
        trusted: TrustedArg = UNSET,
        policy: ConnectionPolicy = UNSET,
        untrusted_policy: Optional[Policy] = UNSET,
        timeout: Optional[float] = UNSET,
        header_timeout: Optional[float] = UNSET,
        max_size: int = UNSET,
        trust_unix_peers: bool = UNSET,
        options: Optional[ProxyOptions] = None,
        **kwargs: Any,
    ) -> None:
        timeout = _pick(timeout, header_timeout, "timeout", "header_timeout")
        keywords = (trusted, policy, untrusted_policy, timeout, max_size, trust_unix_peers)
        if options is None:
            options = self.proxy_options
        elif any(value is not UNSET for value in keywords):
            raise TypeError("pass either options= or the separate keywords, not both")
        if options is not None and all(value is UNSET for value in keywords):
            if not isinstance(options, ProxyOptions):
                raise TypeError(f"options must be a ProxyOptions, "
                                f"not {type(options).__name__}")
        else:
            options = self._proxy_options_from(*keywords)
        self._proxy_set(options)
        self.proxy_stats = ProxyStats()
        self._proxy_lock = threading.Lock()
        self._proxy_policies: dict[object, Policy] = {}
        self._proxy_infos: dict[object, ProxyInfo] = {}
        super().__init__(*args, **kwargs)

    def _proxy_options_from(self, trusted: Any, policy: Any, untrusted_policy: Any,
                            timeout: Any, max_size: Any, trust_unix_peers: Any
                            ) -> ProxyOptions:
        """Options from the keywords given, else the ``proxy_*`` class attributes."""
        cls = type(self)
        base = ProxyProtocolMixIn
        if timeout is UNSET:
            # the canonical attribute if a class set it, else the deprecated one
            timeout = (self.proxy_timeout if cls.proxy_timeout is not base.proxy_timeout
                       else self.proxy_header_timeout)
        if trusted is UNSET:
            trusted = self.proxy_trusted
        if trusted is None:
            raise TypeError("ProxyProtocolMixIn needs trusted= (the proxies' networks)")
        return ProxyOptions(
            trusted,
            policy=self.proxy_policy if policy is UNSET else policy,
            untrusted_policy=(self.proxy_untrusted_policy if untrusted_policy is UNSET
                              else untrusted_policy),
            timeout=timeout,
            max_size=self.proxy_max_size if max_size is UNSET else max_size,
            trust_unix_peers=(self.proxy_trust_unix_peers if trust_unix_peers is UNSET
                              else trust_unix_peers),
        )

    def _proxy_set(self, options: ProxyOptions) -> None:
        self.proxy_options = options
        self.proxy_trusted = options.trusted
        self.proxy_policy = options.policy
        self.proxy_untrusted_policy = options.untrusted_policy
        self.proxy_timeout = self.proxy_header_timeout = options.timeout
        self.proxy_max_size = options.max_size
        self.proxy_trust_unix_peers = options.trust_unix_peers

    # -- hooks of socketserver.BaseServer ------------------------------------------------

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection; on a TLS-wrapped listener, without TLS (not yet)."""
        listener: Any = getattr(self, "socket", None)
        if isinstance(listener, ssl.SSLSocket):
            # SSLSocket.accept() would start the handshake on the PROXY header's bytes
            return socket.socket.accept(listener)
        get: Callable[[], tuple[Any, Any]] = super().get_request  # type: ignore[misc]
        return get()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Choose the policy from the addresses; close untrusted peers before reading."""
        from .blocking import decide

        try:
            chosen = decide(request, client_address, None, self._proxy_opts())
        except Exception as exc:  # untrusted, a vanished peer, or a policy callable failed
            self._proxy_refuse(request, client_address, exc)
            return False
        self._proxy_policies[request] = chosen
        verify: Callable[[Any, Any], bool] = super().verify_request  # type: ignore[misc]
        return verify(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Read the header under the chosen policy, then run the handler (or refuse)."""
        from .blocking import decide, read_start

        options = self._proxy_opts()
        chosen = self._proxy_policies.pop(request, None)
        stats = self.proxy_stats
        with self._proxy_lock:
            stats.pending += 1
        tls: Optional[ssl.SSLSocket] = None
        try:
            if chosen is None:  # a server loop that skipped verify_request
                chosen = decide(request, client_address, None, options)
            result = read_start(request, chosen, options.timeout, options.max_size)
            local = request.getsockname()
            listener: Any = getattr(self, "socket", None)
            if isinstance(listener, ssl.SSLSocket) and not isinstance(request, ssl.SSLSocket):
                tls = _handshake(listener, request, options.timeout)
        except _REFUSED as exc:  # TimeoutError is an OSError
            self._proxy_refuse(request, client_address, exc)
            return
        finally:
            with self._proxy_lock:
                stats.pending -= 1
        try:
            self._proxy_serve(request if tls is None else tls, client_address, local,
                              result.header, result.received)
        finally:
            if tls is not None:  # socketserver closes the raw socket, detached by ssl
                self._proxy_infos.pop(tls, None)
                self.shutdown_request(tls)  # type: ignore[attr-defined]

    def _proxy_serve(self, request: Any, client_address: Any, local: Any,
                     header: Optional[ProxyHeader], received: Optional[ProxyHeader]) -> None:
        client, destination = resolve_addresses(header, client_address, local)
        with self._proxy_lock:
            self.proxy_stats.accepted += 1
        info = self._proxy_infos[request] = ProxyInfo(header, received, client, destination)
        factory: Any = self.RequestHandlerClass  # type: ignore[attr-defined]
        if isinstance(factory, type):
            # Build the handler as type.__call__ would, with the attributes set before
            # __init__ runs setup()/handle()/finish().
            cls: Any = factory
            handler = cls.__new__(cls, request, client, self)
            if isinstance(handler, cls):
                handler.proxy_header = info.header
                handler.proxy_header_received = info.received
                handler.proxy_destination = info.destination
                handler.__init__(request, client, self)
            return
        factory(request, client, self)

    def close_request(self, request: Any) -> None:
        """Forget the connection's proxy state, then close it."""
        self._proxy_policies.pop(request, None)
        self._proxy_infos.pop(request, None)
        close: Callable[[Any], None] = super().close_request  # type: ignore[misc]
        close(request)

    # -- the mix-in's own API ------------------------------------------------------------

    def proxy_info(self, request: Any) -> ProxyInfo:
        """What was learnt about a connection being handled.

        Raises:
            KeyError: ``request`` is not a connection being handled.
        """
        return self._proxy_infos[request]

    def handle_proxy_refusal(self, request: Any, client_address: Any,
                             exc: BaseException) -> None:
        """Called for every refused connection (already counted); logs it. Override at will.

        The connection is closed afterwards by the server.
        """
        reason = refusal_reason(exc)
        if reason == "error":  # not the peer's doing: a bug, e.g. in a policy callable
            logger.error("refused connection from %s: %s", show_address(client_address), exc,
                         exc_info=exc)
            return
        logger.info("refused connection from %s: %s (%s)", show_address(client_address),
                    reason, exc)

    def _proxy_opts(self) -> ProxyOptions:
        options = self.proxy_options
        assert options is not None
        return options

    def _proxy_refuse(self, request: Any, client_address: Any, exc: BaseException) -> None:
        with self._proxy_lock:
            self.proxy_stats.refused[refusal_reason(exc)] += 1
        self.handle_proxy_refusal(request, client_address, exc)


def _handshake(listener: ssl.SSLSocket, raw: socket.socket,
               timeout: Optional[float]) -> ssl.SSLSocket:
    """The server side of TLS on ``raw``, after its PROXY header, as ``listener`` would.

    Raises:
        HandshakeFailed: the handshake failed or did not finish within ``timeout``.
    """
    tls = listener.context.wrap_socket(
        raw, server_side=True, do_handshake_on_connect=False,
        suppress_ragged_eofs=getattr(listener, "suppress_ragged_eofs", True))
    previous = tls.gettimeout()
    try:
        tls.settimeout(check_timeout(timeout))
        tls.do_handshake()
        tls.settimeout(previous)
    except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
        tls.close()
        raise HandshakeFailed(f"TLS handshake after the PROXY header failed: {exc}") from exc
    return tls
