"""PROXY protocol on blocking sockets: read a header, serve with ``socketserver``, send one.

>>> from proxyproto.blocking import read_header
>>> conn, _ = listener.accept()                      # doctest: +SKIP
>>> header = read_header(conn, timeout=5.0)          # doctest: +SKIP
>>> header.source                                    # doctest: +SKIP
('192.0.2.1', 51000)

:func:`read_header` consumes exactly the header and not one byte more, so the socket can
then go to :mod:`ssl`, :mod:`http.server` or anything else unchanged. The policy-aware
helpers (:func:`handle_connection`, :class:`ProxyProtocolMixIn`, :func:`recv_datagram`)
decide from the peer address before reading anything: by default a trusted peer must
send a header (``REQUIRE``) and any other peer is disconnected before a byte is read.

Everything here is a thin layer over the sans-IO core (:class:`proxyproto.PolicyReader`
via :mod:`proxyproto._policy`): no parsing happens in this module.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple, Optional, Union

from ._adapters import (
    ProxyStats,
    checked_header_bytes,
    encode_for_addresses,
    refusal_reason,
    show_address,
)
from ._errors import NoProxyHeader, ProxyProtocolError
from ._fallback import V1_MAX_LENGTH
from ._header import ProxyHeader
from ._policy import (
    DEFAULT_TIMEOUT,
    ConnectionPolicy,
    Policy,
    PolicyReader,
    TrustedProxies,
    UntrustedPeer,
    accept_datagram,
    check_untrusted_policy,
    decide_policy,
    resolve_addresses,
)
from ._reader import DEFAULT_MAX_SIZE

__all__ = [
    "ProxyInfo",
    "ProxyProtocolMixIn",
    "ProxyStats",
    "connect",
    "handle_connection",
    "header_from_socket",
    "read_header",
    "recv_datagram",
    "resolve_addresses",
    "send_datagram",
]

logger = logging.getLogger("proxyproto.blocking")

#: What :func:`connect` and :func:`send_datagram` accept as a header.
HeaderSource = Union[bytes, bytearray, memoryview, ProxyHeader]
TrustedArg = Union[TrustedProxies, Iterable[str]]

_UNSET: Any = object()  # a keyword argument not given (None is a meaningful value)

# ---------------------------------------------------------------------------------------
# Reading a header from a stream socket
#
# Read strategy: peek, then consume exactly.
#
# Each round peeks (MSG_PEEK) at what the kernel holds, up to the size cap, and lets a
# fresh PolicyReader judge the bytes consumed so far plus the peeked ones:
# * header complete: recv exactly the rest of it (header.length - consumed), never more;
# * no header (an optional-header policy): consume nothing; the bytes stay in the kernel
#   for the application, so the socket is handed over truly unchanged;
# * incomplete: every peeked byte is part of the header, so consume them all and wait;
# * refused: raise, the caller drops the connection.
# Against exact recv(needed) loops, which also never over-read: those consume bytes before
# knowing whether they are a header, and bytes read from a socket cannot be put back,
# so a connection without a header under USE/IGNORE/REJECT would lose its first bytes;
# and `needed` is a lower bound, so a v1 line costs several recv calls where peeking costs
# two (one peek, one exact recv) for a header that arrived in one segment.
# The one case where bytes are lost: a peer whose first segment is a strict prefix of a
# signature (b"PRO", say), and whose next bytes then break it; under an optional-header
# policy that connection is refused, since its first bytes were consumed (a peek cannot
# wait for *more* bytes than the kernel already holds without consuming them).


class _Deadline:
    """An overall deadline for the whole header: a slow peer cannot extend it."""

    __slots__ = ("_end",)

    def __init__(self, timeout: Optional[float]) -> None:
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
            if not timeout > 0:
                raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._end: Optional[float] = None  # None or infinity: no deadline
        if timeout is not None and timeout != float("inf"):
            self._end = time.monotonic() + timeout

    def arm(self, sock: socket.socket) -> None:
        """Set the socket's timeout to what is left; raise ``TimeoutError`` when none is."""
        if self._end is None:
            sock.settimeout(None)
            return
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for the PROXY header")
        sock.settimeout(left)


def _recv(sock: socket.socket, size: int, flags: int, deadline: _Deadline) -> bytes:
    deadline.arm(sock)
    try:
        return sock.recv(size, flags)
    except socket.timeout as exc:  # an alias of TimeoutError only since Python 3.10
        raise TimeoutError("timed out waiting for the PROXY header") from exc


def _read_per_policy(
    sock: socket.socket, policy: Policy, timeout: Optional[float], max_size: int
) -> PolicyReader:
    """Read the connection's first bytes under ``policy``; return the decided reader.

    Raises whatever :class:`PolicyReader` raises, ``TimeoutError`` or ``OSError``.
    """
    deadline = _Deadline(timeout)
    reader = PolicyReader(policy, max_size=max_size)
    if reader.done:  # SKIP: nothing is looked for, nothing is read
        return reader
    cap = max(max_size, V1_MAX_LENGTH)  # v1 lines are capped at 107 bytes whatever max_size
    consumed = b""
    previous = sock.gettimeout()
    try:
        while True:
            try:
                peeked = _recv(sock, cap - len(consumed), socket.MSG_PEEK, deadline)
            except TimeoutError:
                _finish(reader, timed_out=True)
                return reader
            if not peeked:  # EOF
                _finish(reader, timed_out=False)
                return reader
            # A fresh reader judges consumed + peeked; after an incomplete round it holds
            # exactly the consumed bytes, which is what _finish() needs.
            reader = PolicyReader(policy, max_size=max_size)
            if reader.feed(consumed + peeked):
                break
            # Incomplete: every peeked byte belongs to the header.
            consumed += _recv_exactly(sock, len(peeked), deadline)
        received = reader.received
        if received is not None:
            consumed += _recv_exactly(sock, received.length - len(consumed), deadline)
        elif consumed:
            # The application's first bytes were consumed and cannot be put back.
            raise _lost_bytes(consumed)
        return reader
    finally:
        sock.settimeout(previous)


def _finish(reader: PolicyReader, *, timed_out: bool) -> None:
    """No more bytes (EOF or deadline): let the reader, which holds exactly the bytes
    consumed, decide on them; a timed-out refusal becomes ``TimeoutError``."""
    try:
        reader.finish()
    except ProxyProtocolError as exc:
        if timed_out:
            raise TimeoutError("timed out waiting for the PROXY header") from exc
        raise


def _recv_exactly(sock: socket.socket, size: int, deadline: _Deadline) -> bytes:
    """Consume ``size`` bytes that a peek showed to be in the kernel already."""
    chunks = []
    while size > 0:
        chunk = _recv(sock, size, 0, deadline)
        if not chunk:  # cannot happen after a successful peek, unless someone else reads
            raise ConnectionError("the connection closed while consuming the PROXY header")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _lost_bytes(consumed: bytes) -> ProxyProtocolError:
    return NoProxyHeader(
        f"not a PROXY header after all: its first {len(consumed)} byte(s) matched a "
        "signature and were consumed, so they cannot be handed to the application"
    )


def read_header(
    sock: socket.socket,
    *,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    max_size: int = DEFAULT_MAX_SIZE,
) -> ProxyHeader:
    """Read exactly the PROXY header from a connected stream socket, not one byte more.

    Afterwards the socket holds exactly the bytes that followed the header (even those
    that arrived in the same segment), so it can go to :mod:`ssl`, :mod:`http.server`
    or anything else unchanged. The socket's previous timeout is restored.

    Args:
        sock: a connected ``SOCK_STREAM`` socket (TCP or UNIX), not yet read from.
        timeout: the deadline in seconds for the whole header (a peer sending one byte
            at a time does not extend it), or ``None`` to wait forever.
        max_size: the largest v2 header accepted (v1 lines are capped at 107 bytes).

    Returns:
        The header, ``LOCAL`` and ``UNKNOWN`` headers included (their addresses are
        ``None``: use the socket's own).

    Raises:
        NoProxyHeader: the connection does not start with a PROXY header.
        InvalidHeader: a malformed header (``HeaderTooLarge`` over ``max_size``).
        IncompleteHeader: the peer closed the connection before the header was complete.
        TimeoutError: the header was not complete within ``timeout``.
        OSError: the connection failed (``ConnectionResetError``...).
    """
    reader = _read_per_policy(sock, Policy.REQUIRE, timeout, max_size)
    header = reader.received
    if header is None:  # REQUIRE never decides without a header; stay defensive
        raise NoProxyHeader("a PROXY header is required, none was read")
    return header


def _decide(
    sock: socket.socket,
    peer: object,
    local: object,
    trusted: TrustedProxies,
    policy: ConnectionPolicy,
    untrusted_policy: Optional[Policy],
) -> Policy:
    if local is None and callable(policy):
        local = sock.getsockname()
    chosen = decide_policy(peer, local, trusted=trusted, policy=policy,
                           untrusted_policy=untrusted_policy)
    if chosen is None:
        raise UntrustedPeer(f"peer {show_address(peer)} is not trusted: closed before reading")
    return chosen


def handle_connection(
    sock: socket.socket,
    peer: object = None,
    *,
    trusted: TrustedArg,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Optional[Policy] = None,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    max_size: int = DEFAULT_MAX_SIZE,
    local: object = None,
) -> Optional[ProxyHeader]:
    """Apply the trust policy to a freshly accepted connection and read what it allows.

    The policy is chosen from the addresses alone, before anything is read; an untrusted
    peer's header is never believed, whatever the policy. On success the socket holds
    exactly the application's bytes. On any exception the caller closes the socket.

    Args:
        sock: the accepted stream socket.
        peer: its peer address as ``accept()`` returned it (default: ``getpeername()``).
        trusted: the networks allowed to send a header (a :class:`TrustedProxies` or
            CIDR strings).
        policy: the policy for trusted peers, or a callable ``(peer, local) -> Policy``.
        untrusted_policy: the policy for other peers (``SKIP``, ``IGNORE`` or
            ``REJECT``); ``None``, the default, closes without reading.
        timeout: the deadline for the whole header, in seconds.
        max_size: the largest v2 header accepted.
        local: the socket's own address, for a callable policy (default:
            ``getsockname()``, only when needed).

    Returns:
        The header whose addresses apply, or ``None``: use the socket's own addresses
        (no header under an optional policy, ``IGNORE``, ``SKIP``). A ``LOCAL`` header is
        returned as is; :func:`resolve_addresses` gives the effective pair.

    Raises:
        UntrustedPeer: the peer is not trusted and no policy applies (nothing was read).
        PolicyViolation: a header under ``REJECT``.
        NoProxyHeader: no header under ``REQUIRE``.
        InvalidHeader, IncompleteHeader: a malformed or truncated header.
        TimeoutError: no decision within ``timeout``.
        OSError: the connection failed.
        ValueError: ``untrusted_policy`` is ``USE`` or ``REQUIRE``.
    """
    check_untrusted_policy(untrusted_policy)
    if peer is None:
        peer = sock.getpeername()
    chosen = _decide(sock, peer, local, TrustedProxies.coerce(trusted), policy, untrusted_policy)
    return _read_per_policy(sock, chosen, timeout, max_size).header


# ---------------------------------------------------------------------------------------
# socketserver


class ProxyInfo(NamedTuple):
    """What :class:`ProxyProtocolMixIn` learnt about one connection."""

    header: Optional[ProxyHeader]  #: the header honoured (``None``: the socket's addresses)
    received: Optional[ProxyHeader]  #: the header read, even if discarded (``IGNORE``)
    client: Any  #: the original client (the header's source, else the socket's peer)
    destination: Any  #: the original destination (else the socket's own address)


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

    The handler gets ``client_address`` (the header's source, else the socket's peer)
    and the attributes ``proxy_header`` (the header honoured, or ``None``),
    ``proxy_header_received`` (the header read, even when ``IGNORE`` discarded it) and
    ``proxy_destination`` (the header's destination, else the socket's own address).
    A handler built by a factory rather than a class (``functools.partial``) can ask
    ``self.server.proxy_info(self.request)`` for the same, as a :class:`ProxyInfo`.

    Each keyword argument can also be set as a class attribute with a ``proxy_`` prefix
    (``proxy_trusted``, ``proxy_policy``...); the other arguments go to the server class.

    Args:
        trusted: the networks allowed to send a header (required).
        policy: the policy for trusted peers, or a callable ``(peer, local) -> Policy``
            (default ``REQUIRE``).
        untrusted_policy: the policy for other peers (default ``None``: close them).
        header_timeout: the deadline for the header, in seconds (default 5).
        max_size: the largest v2 header accepted (default 4096).
    """

    proxy_trusted: Optional[TrustedArg] = None
    proxy_policy: ConnectionPolicy = Policy.REQUIRE
    proxy_untrusted_policy: Optional[Policy] = None
    proxy_header_timeout: Optional[float] = DEFAULT_TIMEOUT
    proxy_max_size: int = DEFAULT_MAX_SIZE

    #: Accepted and refused connections, refusals by reason, headers being read.
    proxy_stats: ProxyStats

    def __init__(
        self,
        *args: Any,
        trusted: TrustedArg = _UNSET,
        policy: ConnectionPolicy = _UNSET,
        untrusted_policy: Optional[Policy] = _UNSET,
        header_timeout: Optional[float] = _UNSET,
        max_size: int = _UNSET,
        **kwargs: Any,
    ) -> None:
        if trusted is not _UNSET:
            self.proxy_trusted = trusted
        if self.proxy_trusted is None:
            raise TypeError("ProxyProtocolMixIn needs trusted= (the proxies' networks)")
        self.proxy_trusted = TrustedProxies.coerce(self.proxy_trusted)
        if policy is not _UNSET:
            self.proxy_policy = policy
        if untrusted_policy is not _UNSET:
            self.proxy_untrusted_policy = untrusted_policy
        check_untrusted_policy(self.proxy_untrusted_policy)
        if header_timeout is not _UNSET:
            self.proxy_header_timeout = header_timeout
        _Deadline(self.proxy_header_timeout)  # validate now rather than per connection
        if max_size is not _UNSET:
            self.proxy_max_size = max_size
        PolicyReader(Policy.REQUIRE, max_size=self.proxy_max_size)  # validate max_size
        self.proxy_stats = ProxyStats()
        self._proxy_lock = threading.Lock()
        self._proxy_policies: dict[object, Policy] = {}
        self._proxy_infos: dict[object, ProxyInfo] = {}
        super().__init__(*args, **kwargs)

    # -- hooks of socketserver.BaseServer ------------------------------------------------

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Choose the policy from the addresses; close untrusted peers before reading."""
        try:
            chosen = _decide(request, client_address, None, self._proxy_trusted(),
                             self.proxy_policy, self.proxy_untrusted_policy)
        except Exception as exc:  # untrusted, a vanished peer, or a policy callable failed
            self._proxy_refuse(request, client_address, exc)
            return False
        self._proxy_policies[request] = chosen
        verify: Callable[[Any, Any], bool] = super().verify_request  # type: ignore[misc]
        return verify(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Read the header under the chosen policy, then run the handler (or refuse)."""
        chosen = self._proxy_policies.pop(request, None)
        stats = self.proxy_stats
        with self._proxy_lock:
            stats.pending += 1
        try:
            if chosen is None:  # a server loop that skipped verify_request
                chosen = _decide(request, client_address, None, self._proxy_trusted(),
                                 self.proxy_policy, self.proxy_untrusted_policy)
            reader = _read_per_policy(request, chosen, self.proxy_header_timeout,
                                      self.proxy_max_size)
            header, received = reader.header, reader.received
            local = request.getsockname()
        except (ProxyProtocolError, OSError) as exc:  # TimeoutError is an OSError
            self._proxy_refuse(request, client_address, exc)
            return
        finally:
            with self._proxy_lock:
                stats.pending -= 1
        client, destination = resolve_addresses(header, client_address, local)
        with self._proxy_lock:
            stats.accepted += 1
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
            logger.error("refused connection from %s: %r", show_address(client_address), exc,
                         exc_info=exc)
            return
        logger.info("refused connection from %s: %s (%s)", show_address(client_address),
                    reason, exc)

    def _proxy_trusted(self) -> TrustedProxies:
        trusted = self.proxy_trusted
        assert isinstance(trusted, TrustedProxies)
        return trusted

    def _proxy_refuse(self, request: Any, client_address: Any, exc: BaseException) -> None:
        with self._proxy_lock:
            self.proxy_stats.refused[refusal_reason(exc)] += 1
        self.handle_proxy_refusal(request, client_address, exc)


# ---------------------------------------------------------------------------------------
# Sending


def header_from_socket(
    sock: socket.socket,
    *,
    version: int = 2,
    accepted: bool = True,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """Encode the header describing a connected socket's own connection.

    Args:
        sock: a connected TCP or UDP socket (IPv4 or IPv6; a UNIX socket gives
            ``LOCAL`` for v2 and ``UNKNOWN`` for v1, as HAProxy sends).
        version: 1 or 2.
        accepted: ``True`` for a socket a proxy accepted from a client (source = its
            peer, destination = its own address); ``False`` for a socket this host
            connected itself (source = its own address, as ``curl --haproxy-protocol``).
        tlvs, crc32c: as for :func:`proxyproto.encode_v2` (v2 only).

    Returns:
        The encoded header.

    Raises:
        ValueError: ``version`` is not 1 or 2, v1 for a UDP socket, or TLVs with v1.
        OSError: the socket is not connected.
    """
    if accepted:
        source, destination = sock.getpeername(), sock.getsockname()
    else:
        source, destination = sock.getsockname(), sock.getpeername()
    return encode_for_addresses(source, destination, version=version, transport=sock.type,
                                tlvs=tlvs, crc32c=crc32c)


def connect(
    address: tuple[str, int],
    *,
    header: Union[HeaderSource, Callable[[socket.socket], HeaderSource]],
    timeout: Optional[float] = None,
    source_address: Optional[tuple[str, int]] = None,
) -> socket.socket:
    """Connect over TCP and send the PROXY header first, in one ``sendall``.

    The header goes out in one write before anything else, as the spec asks (HAProxy
    and nginx reject a header split across reads).

    Args:
        address: ``(host, port)`` of the server, as for :func:`socket.create_connection`.
        header: the header (bytes, checked to be exactly one valid header, or a
            :class:`ProxyHeader`), or a callable given the connected socket that
            returns one (e.g. ``lambda s: header_from_socket(s, accepted=False)``).
        timeout: the socket's timeout (as for :func:`socket.create_connection`).
        source_address: the local ``(host, port)`` to bind before connecting.

    Returns:
        The connected socket, header sent; the caller owns it.

    Raises:
        OSError: the connection failed. ValueError, TypeError: an invalid header (checked
            before connecting when it is not a callable).
    """
    data = None if callable(header) else checked_header_bytes(header)
    sock = socket.create_connection(address, timeout, source_address)
    try:
        if data is None:
            assert callable(header)
            data = checked_header_bytes(header(sock))
        sock.sendall(data)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------------------
# Datagrams (one header per datagram, R-9)


def recv_datagram(
    sock: socket.socket,
    bufsize: int = 65535,
    *,
    trusted: TrustedArg,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Optional[Policy] = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[Optional[ProxyHeader], bytes, Any]:
    """Receive one datagram and apply the trust rules to it, on its own ([SPEC §2] R-9).

    Each datagram is parsed independently: nothing is remembered per sender.

    Args:
        sock: a bound UDP (or UNIX datagram) socket.
        bufsize: the largest datagram expected (a longer one is truncated by the kernel).
        trusted, policy, untrusted_policy: as for :func:`handle_connection`.
        max_size: the largest v2 header accepted.

    Returns:
        ``(header, payload, peer)``: the header whose addresses apply (``None``: the
        datagram's own), the bytes after the header, and the real sender (where replies
        go: the proxy).

    Raises:
        UntrustedPeer, PolicyViolation, NoProxyHeader, InvalidHeader: the datagram was
            refused (drop it and receive the next one).
        TimeoutError, OSError: from the socket.
    """
    check_untrusted_policy(untrusted_policy)
    data, peer = sock.recvfrom(bufsize)
    local = sock.getsockname() if callable(policy) else None
    header, payload = accept_datagram(
        data, peer, local, trusted=TrustedProxies.coerce(trusted), policy=policy,
        untrusted_policy=untrusted_policy, max_size=max_size,
    )
    return header, payload, peer


def send_datagram(
    sock: socket.socket,
    payload: Union[bytes, bytearray, memoryview],
    *,
    header: HeaderSource,
    address: Any = None,
) -> int:
    """Send one datagram made of a PROXY header and its payload (never split, R-9).

    Args:
        sock: a UDP socket.
        payload: the datagram's data.
        header: the header (bytes, checked, or a :class:`ProxyHeader`).
        address: the destination, or ``None`` for a connected socket.

    Returns:
        The number of bytes sent.
    """
    data = checked_header_bytes(header) + bytes(payload)
    if address is None:
        return sock.send(data)
    return sock.sendto(data, address)
