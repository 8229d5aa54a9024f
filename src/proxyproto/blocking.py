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
They take their settings either as keywords or as one :class:`proxyproto.policy.ProxyOptions`
(``options=``), checked by the same rules as the asyncio adapters'.

Everything here is a thin layer over the sans-IO core (the connection-start machine,
:func:`proxyproto.policy.decide_start`): no parsing happens in this module.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional, Union

from ._adapters import (
    ProxyStats,
    checked_header_bytes,
    encode_for_addresses,
    show_address,
)
from ._blocking_server import ProxyInfo, ProxyProtocolMixIn
from ._connection import Decided, Refused, decide_start
from ._errors import HeaderTimeout, MissingHeader, NoProxyHeader, ProxyProtocolError, UntrustedPeer
from ._fallback import V1_MAX_LENGTH
from ._header import ProxyHeader
from ._options import UNSET, ProxyOptions, TrustedArg, check_timeout, options_from
from ._policy import DEFAULT_TIMEOUT, ConnectionPolicy, Policy, resolve_addresses
from ._reader import DEFAULT_MAX_SIZE, check_max_size

__all__ = [
    "ProxyInfo",
    "ProxyProtocolMixIn",
    "ProxyStats",
    "connect",
    "handle_connection",
    "header_for",
    "header_from_socket",
    "read_header",
    "recv_datagram",
    "resolve_addresses",
    "send_datagram",
]

#: What :func:`connect` and :func:`send_datagram` accept as a header.
HeaderSource = Union[bytes, bytearray, memoryview, ProxyHeader]

_NOTHING = Decided(None, None, 0)

# ---------------------------------------------------------------------------------------
# Reading a header from a stream socket
#
# Read strategy: peek, then consume exactly.
#
# Each round peeks (MSG_PEEK) at what the kernel holds, up to the size cap, and asks the
# connection-start machine (decide_start) about the bytes consumed so far plus the
# peeked ones:
# * decided with a header: recv exactly the rest of it (header.length - consumed);
# * decided without one (an optional-header policy): consume nothing; the bytes stay in
#   the kernel for the application, so the socket is handed over truly unchanged;
# * need more: every peeked byte is part of the header (or of a line refused at its LF),
#   so consume them all and wait;
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
        timeout = check_timeout(timeout)
        self._end = None if timeout is None else time.monotonic() + timeout

    def arm(self, sock: socket.socket) -> None:
        """Set the socket's timeout to what is left; raise ``HeaderTimeout`` when none is."""
        if self._end is None:
            sock.settimeout(None)
            return
        left = self._end - time.monotonic()
        if left <= 0:
            raise HeaderTimeout("timed out waiting for the PROXY header")
        sock.settimeout(left)


def _recv(sock: socket.socket, size: int, flags: int, deadline: _Deadline) -> bytes:
    deadline.arm(sock)
    try:
        return sock.recv(size, flags)
    except socket.timeout as exc:  # an alias of TimeoutError only since Python 3.10
        raise HeaderTimeout("timed out waiting for the PROXY header") from exc


def read_start(
    sock: socket.socket, policy: Policy, timeout: Optional[float], max_size: int
) -> Decided:
    """Read a stream connection's first bytes under ``policy``, peeking, and decide.

    The socket's previous timeout is restored. On return the socket holds exactly the
    application's bytes.

    Raises:
        ProxyProtocolError: refused (its ``reason`` says why).
        HeaderTimeout: no decision within ``timeout``.
        OSError: the connection failed.
    """
    if policy is Policy.SKIP:
        return _NOTHING
    deadline = _Deadline(timeout)
    cap = max(max_size, V1_MAX_LENGTH)  # v1 lines are capped at 107 bytes whatever max_size
    consumed = b""
    previous = sock.gettimeout()
    try:
        while True:
            try:
                peeked = _recv(sock, cap - len(consumed), socket.MSG_PEEK, deadline)
            except HeaderTimeout as timed_out:
                return _final(policy, consumed, max_size, timed_out)
            if not peeked:  # EOF
                return _final(policy, consumed, max_size, None)
            result = decide_start(policy, consumed + peeked, max_size)
            if type(result) is Decided:
                break
            if type(result) is Refused:
                raise result.error
            # Need: every peeked byte belongs to the header.
            consumed += _recv_exactly(sock, len(peeked), deadline)
        received = result.received
        if received is not None:
            consumed += _recv_exactly(sock, received.length - len(consumed), deadline)
        elif consumed:
            # The application's first bytes were consumed and cannot be put back.
            raise _lost_bytes(consumed)
        return result
    finally:
        sock.settimeout(previous)


def _final(policy: Policy, consumed: bytes, max_size: int,
           timed_out: Optional[HeaderTimeout]) -> Decided:
    """No more bytes (EOF or deadline): decide on the bytes consumed; a timed-out
    refusal becomes the ``HeaderTimeout``."""
    result = decide_start(policy, consumed, max_size, final=True)
    if type(result) is Refused:
        if timed_out is not None:
            raise timed_out from result.error
        raise result.error
    assert type(result) is Decided
    return result


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
        NoProxyHeader: the connection does not start with a PROXY header
            (``MissingHeader``, a subclass).
        InvalidHeader: a malformed header (``HeaderTooLarge`` over ``max_size``).
        IncompleteHeader: the peer closed the connection before the header was complete.
        TimeoutError: the header was not complete within ``timeout`` (``HeaderTimeout``).
        OSError: the connection failed (``ConnectionResetError``...).
        TypeError, ValueError: a bad ``timeout`` or ``max_size`` (the
            :class:`~proxyproto.policy.ProxyOptions` rules).
    """
    check_max_size(max_size)
    header = read_start(sock, Policy.REQUIRE, timeout, max_size).received
    if header is None:  # REQUIRE never decides without a header; stay defensive
        raise MissingHeader("a PROXY header is required, none was read")
    return header


def decide(sock: socket.socket, peer: object, local: object, options: ProxyOptions) -> Policy:
    """The policy for a new connection (``local`` looked up only for a callable policy).

    Raises:
        UntrustedPeer: no policy applies to the peer.
        PolicyError: the policy callable failed.
    """
    if local is None and callable(options.policy):
        local = sock.getsockname()
    chosen = options.decide(peer, local)
    if chosen is None:
        raise UntrustedPeer(f"peer {show_address(peer)} is not trusted: closed before reading")
    return chosen


def handle_connection(
    sock: socket.socket,
    peer: object = None,
    *,
    trusted: TrustedArg = UNSET,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Optional[Policy] = UNSET,
    timeout: Optional[float] = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    local: object = None,
    options: Optional[ProxyOptions] = None,
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
        policy: the policy for trusted peers (default ``REQUIRE``), or a callable
            ``(peer, local) -> Policy``.
        untrusted_policy: the policy for other peers (``SKIP``, ``IGNORE`` or
            ``REJECT``); ``None``, the default, closes without reading.
        timeout: the deadline for the whole header, in seconds (default 5; ``None``:
            none).
        max_size: the largest v2 header accepted (default 4096).
        trust_unix_peers: treat UNIX-socket peers as trusted (default ``False``).
        local: the socket's own address, for a callable policy (default:
            ``getsockname()``, only when needed).
        options: all of the above but ``local`` as one
            :class:`~proxyproto.policy.ProxyOptions`, instead of the keywords.

    Returns:
        The header whose addresses apply, or ``None``: use the socket's own addresses
        (no header under an optional policy, ``IGNORE``, ``SKIP``). A ``LOCAL`` header is
        returned as is; :func:`resolve_addresses` gives the effective pair.

    Raises:
        UntrustedPeer: the peer is not trusted and no policy applies (nothing was read).
        HeaderRejected: a header under ``REJECT`` (a ``PolicyViolation``).
        MissingHeader: no header under ``REQUIRE`` (a ``NoProxyHeader``).
        InvalidHeader, IncompleteHeader: a malformed or truncated header.
        PolicyError: the policy callable failed.
        TimeoutError: no decision within ``timeout`` (``HeaderTimeout``).
        OSError: the connection failed.
        TypeError, ValueError: bad options (``untrusted_policy`` ``USE`` or
            ``REQUIRE`` included).
    """
    opts = options_from(options, trusted=trusted, policy=policy,
                        untrusted_policy=untrusted_policy, timeout=timeout,
                        max_size=max_size, trust_unix_peers=trust_unix_peers)
    if peer is None:
        peer = sock.getpeername()
    chosen = decide(sock, peer, local, opts)
    return read_start(sock, chosen, opts.timeout, opts.max_size).header


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


#: The same as :func:`header_from_socket`, under the name :mod:`proxyproto.aio` uses
#: (``aio.header_for(transport)``): one name for both adapters.
header_for = header_from_socket


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


# ---------------------------------------------------------------------------------------
# Datagrams (one header per datagram, R-9)


def recv_datagram(
    sock: socket.socket,
    bufsize: int = 65535,
    *,
    trusted: TrustedArg = UNSET,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Optional[Policy] = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: Optional[ProxyOptions] = None,
) -> tuple[Optional[ProxyHeader], bytes, Any]:
    """Receive one datagram and apply the trust rules to it, on its own ([SPEC §2] R-9).

    Each datagram is parsed independently: nothing is remembered per sender. Every
    refusal is a :class:`~proxyproto.ProxyProtocolError` whose ``reason`` is what the
    asyncio datagram endpoint counts, a failing policy callable included
    (``PolicyError``, reason ``"error"``): drop the datagram and receive the next.

    Args:
        sock: a bound UDP (or UNIX datagram) socket.
        bufsize: the largest datagram expected (a longer one is truncated by the kernel).
        trusted, policy, untrusted_policy, trust_unix_peers: as for
            :func:`handle_connection`.
        max_size: the largest v2 header accepted.
        options: the settings as one :class:`~proxyproto.policy.ProxyOptions` (its
            ``timeout`` is not used: a datagram is whole).

    Returns:
        ``(header, payload, peer)``: the header whose addresses apply (``None``: the
        datagram's own), the bytes after the header, and the real sender (where replies
        go: the proxy). Under an optional policy a datagram that is no header (``b"P"``,
        ``b"PROXY"``...) is all payload.

    Raises:
        ProxyProtocolError: the datagram was refused: ``UntrustedPeer``,
            ``HeaderRejected``, ``MissingHeader``, ``InvalidHeader``, ``PolicyError``.
        TimeoutError, OSError: from the socket.
        TypeError, ValueError: bad options.
    """
    opts = options_from(options, trusted=trusted, policy=policy,
                        untrusted_policy=untrusted_policy, max_size=max_size,
                        trust_unix_peers=trust_unix_peers)
    data, peer = sock.recvfrom(bufsize)
    local = sock.getsockname() if callable(opts.policy) else None
    header, payload = opts.accept_datagram(data, peer, local)
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
