"""Trust: which peers may send a PROXY header, and what to do with each connection.

The decision is made from configuration and the socket's peer address only, never from
the payload ([SPEC §5], R-10, R-61, R-62).
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
from collections.abc import Iterable
from typing import Callable, Optional, Union

from . import _impl
from ._errors import IncompleteHeader, InvalidHeader, NoProxyHeader, ProxyProtocolError
from ._header import ProxyHeader
from ._reader import DEFAULT_MAX_SIZE, FIRST_NEEDED, HeaderReader, check_max_size

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConnectionPolicy",
    "Policy",
    "PolicyReader",
    "PolicyViolation",
    "TrustedProxies",
    "UntrustedPeer",
    "apply_policy",
    "accept_datagram",
    "check_untrusted_policy",
    "decide_policy",
    "resolve_addresses",
]

#: Default header-read timeout in seconds (the spec asks for at least 3 s, R-8).
DEFAULT_TIMEOUT = 5.0

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_CACHE_SIZE = 1024  # TrustedProxies' cache of verdicts by peer host string


class Policy(enum.Enum):
    """What a receiver does about the PROXY header on one connection (go-proxyproto's policies).

    * ``REQUIRE``: a valid header is mandatory; a connection without one is refused.
    * ``USE``: the header is optional; when present its addresses are used. **A spoofing
      risk** if the upstream may ever omit it: a client could then send its own.
    * ``IGNORE``: a header, when present, is read and discarded; the socket's addresses
      are used.
    * ``REJECT``: the connection is refused if it starts with a header.
    * ``SKIP``: no header is looked for; every byte goes to the application.
    """

    REQUIRE = "require"
    USE = "use"
    IGNORE = "ignore"
    REJECT = "reject"
    SKIP = "skip"


# The members as plain globals: on Python 3.11, ``Policy.REQUIRE`` goes through the enum
# machinery (about 150 ns a lookup), and the adapters' per-connection path made several.
_REQUIRE, _USE, _REJECT, _SKIP = Policy.REQUIRE, Policy.USE, Policy.REJECT, Policy.SKIP

#: A fixed policy, or a function of (peer address, local address) returning one.
ConnectionPolicy = Union[Policy, Callable[[object, object], Policy]]


class PolicyViolation(ProxyProtocolError):
    """A connection was refused by the policy (no header under REQUIRE, one under REJECT...)."""


class UntrustedPeer(PolicyViolation):
    """A peer outside the trusted networks connected where only trusted peers are served."""


def _to_address(value: object) -> Optional[IPAddress]:
    """An IP address from a str, an ``ipaddress`` object or a ``(host, port, ...)`` peername."""
    if isinstance(value, tuple) and value:
        value = value[0]
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address: IPAddress = value
    elif isinstance(value, str):
        try:
            address = ipaddress.ip_address(value.partition("%")[0])
        except ValueError:
            return None
    else:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:  # dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
            return mapped
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(address.packed)
    return address


class TrustedProxies:
    """A set of networks whose peers may send PROXY headers.

    >>> trusted = TrustedProxies(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    >>> "10.1.2.3" in trusted, "::ffff:10.1.2.3" in trusted, "203.0.113.9" in trusted
    (True, True, False)

    Networks are merged into sorted, disjoint intervals, so a lookup is a binary search:
    its cost grows with the logarithm of the number of networks, not linearly. Anything
    that is not an IP address (a UNIX socket peer, garbage) is never trusted.

    Args:
        networks: CIDR strings (``"10.0.0.0/8"``), bare addresses (one host) or
            ``ipaddress`` networks/addresses.

    Raises:
        ValueError: a string that is not a network or an address.
        TypeError: an item of another type.
    """

    __slots__ = ("_cache", "_ends4", "_ends6", "_networks", "_starts4", "_starts6")

    def __init__(self, networks: Iterable[Union[str, IPNetwork, IPAddress]]) -> None:
        if isinstance(networks, (str, bytes)):
            raise TypeError("pass an iterable of networks, not a single string")
        parsed: list[IPNetwork] = []
        for item in networks:
            if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                parsed.append(item)
            elif isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                parsed.append(ipaddress.ip_network(item))
            elif isinstance(item, str):
                parsed.append(ipaddress.ip_network(item.strip(), strict=False))
            else:
                raise TypeError(f"a trusted network must be a str or an ipaddress object, "
                                f"not {type(item).__name__}")
        self._networks = tuple(parsed)
        # host string -> verdict: parsing the peer's address with ipaddress took ~6 us, a
        # third of the asyncio PROXY layer's CPU per connection; servers see the same peers
        # (their proxies) again and again
        self._cache: dict[str, bool] = {}
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for network in parsed:
            if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and (
                network.network_address.ipv4_mapped is not None
            ):
                # ::ffff:a.b.c.d/n is an IPv4 network in disguise
                mapped = network.network_address.ipv4_mapped
                v4.append((int(mapped), int(mapped) + network.num_addresses - 1))
                continue
            target = v4 if network.version == 4 else v6
            target.append((int(network.network_address), int(network.broadcast_address)))
        self._starts4, self._ends4 = self._merge(v4)
        self._starts6, self._ends6 = self._merge(v6)

    @staticmethod
    def _merge(intervals: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        starts: list[int] = []
        ends: list[int] = []
        for start, end in sorted(intervals):
            if ends and start <= ends[-1] + 1:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        return starts, ends

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """The networks as given (before merging)."""
        return self._networks

    def __contains__(self, address: object) -> bool:
        host = address[0] if type(address) is tuple and address else address
        if type(host) is not str:
            return self._lookup(address)
        cache = self._cache
        verdict = cache.get(host)
        if verdict is None:
            verdict = self._lookup(host)
            if len(cache) >= _CACHE_SIZE:  # bounded, whatever the peers
                cache.clear()
            cache[host] = verdict
        return verdict

    def _lookup(self, address: object) -> bool:
        parsed = _to_address(address)
        if parsed is None:
            return False
        if parsed.version == 4:
            starts, ends = self._starts4, self._ends4
        else:
            starts, ends = self._starts6, self._ends6
        value = int(parsed)
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= ends[index]

    def __len__(self) -> int:
        return len(self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __repr__(self) -> str:
        shown = ", ".join(repr(str(n)) for n in self._networks[:5])
        more = f", ... {len(self._networks) - 5} more" if len(self._networks) > 5 else ""
        return f"TrustedProxies([{shown}{more}])"

    @classmethod
    def coerce(cls, value: Union[TrustedProxies, Iterable[Union[str, IPNetwork, IPAddress]]]
               ) -> TrustedProxies:
        """Return ``value`` if it is a ``TrustedProxies``, else build one from it."""
        return value if isinstance(value, TrustedProxies) else cls(value)


def apply_policy(policy: Policy, header: Optional[ProxyHeader]) -> Optional[ProxyHeader]:
    """The header to honour for a connection, given its policy and what was read.

    Args:
        policy: the connection's policy (``SKIP`` means nothing was read).
        header: the header read, or ``None`` when the connection did not start with one.

    Returns:
        The header whose addresses apply, or ``None`` (use the socket's addresses).

    Raises:
        PolicyViolation: ``REQUIRE`` without a header, or ``REJECT`` with one.
    """
    if policy is _REQUIRE:
        if header is None:
            raise PolicyViolation("a PROXY header is required from this peer, none was sent")
        return header
    if policy is _USE:
        return header
    if policy is _REJECT and header is not None:
        raise PolicyViolation("this peer may not send a PROXY header")
    return None


def check_untrusted_policy(untrusted_policy: Optional[Policy]) -> None:
    """Refuse configurations that would believe an untrusted peer's header.

    Raises:
        ValueError: ``untrusted_policy`` is ``USE`` or ``REQUIRE``.
    """
    if untrusted_policy in (_USE, _REQUIRE):
        raise ValueError(
            "an untrusted peer's header is never believed: use SKIP, IGNORE, REJECT or None "
            "(close the connection) for untrusted peers"
        )


def decide_policy(
    peer: object,
    local: object,
    *,
    trusted: TrustedProxies,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Optional[Policy] = None,
) -> Optional[Policy]:
    """Choose what to do with a new connection, from configuration and addresses only.

    Args:
        peer: the socket's peer address (a ``(host, port, ...)`` tuple, a str, or an
            ``ipaddress`` address; a UNIX peer is never trusted).
        local: the socket's own address (passed to a callable ``policy``).
        trusted: the networks allowed to send a header.
        policy: the policy for trusted peers, or a callable ``(peer, local) -> Policy``
            consulted for every peer.
        untrusted_policy: the policy for other peers; ``None`` closes the connection
            before reading anything.

    Returns:
        The policy to apply, or ``None`` to close the connection without reading.
        A trusted-only policy (``USE``, ``REQUIRE``) is never returned for an untrusted
        peer: a callable that returns one for such a peer gets the connection closed.
    """
    is_trusted = peer in trusted
    if callable(policy):
        chosen = policy(peer, local)
        if not isinstance(chosen, Policy):
            raise TypeError(f"the policy callable returned {chosen!r}, not a Policy")
    elif is_trusted:
        return policy
    else:
        return untrusted_policy
    if not is_trusted and chosen in (_USE, _REQUIRE):
        return None
    return chosen


class PolicyReader:
    """Reads a connection's first bytes under one policy and decides (sans-IO).

    The I/O adapters (asyncio, blocking sockets) share this state machine, so the
    policy table lives in one place. Feed it what the connection sends; once
    :attr:`done`, :attr:`header` is the header to honour (``None``: use the socket's
    addresses) and :attr:`app_data` holds the bytes that belong to the application.
    When no more bytes will come in time (EOF or the deadline), call :meth:`finish`.

    >>> reader = PolicyReader(Policy.USE)
    >>> reader.feed(b"GET / HTTP/1.1\\r\\n")
    True
    >>> reader.header, reader.app_data
    (None, b'GET / HTTP/1.1\\r\\n')

    Args:
        policy: the policy chosen for the connection (see :func:`decide_policy`).
        max_size: the v2 header size cap.

    Every refusal is an exception derived from :class:`ProxyProtocolError`:
    ``NoProxyHeader`` (no header under ``REQUIRE``), ``InvalidHeader`` and
    ``HeaderTooLarge`` (whatever the policy: a malformed header is never passed to the
    application), ``PolicyViolation`` (a header under ``REJECT``) and
    ``IncompleteHeader`` (from :meth:`finish`: the header never completed).
    """

    __slots__ = ("_app_data", "_done", "_header", "_max_size", "_policy", "_reader",
                 "_received")

    def __init__(self, policy: Policy, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if type(policy) is not Policy:  # an enum with members: no subclass can exist
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        check_max_size(max_size)
        self._policy = policy
        self._max_size = max_size
        # made on demand: the first chunk usually holds the whole header (proxies send it
        # in one write), and then one parse call decides without an incremental reader
        self._reader: HeaderReader | None = None
        self._header: ProxyHeader | None = None
        self._received: ProxyHeader | None = None
        self._app_data = b""
        self._done = policy is _SKIP  # SKIP: nothing is looked for

    @property
    def policy(self) -> Policy:
        """The policy applied."""
        return self._policy

    @property
    def done(self) -> bool:
        """``True`` once the connection may be handed to the application."""
        return self._done

    @property
    def needed(self) -> int:
        """The minimum number of further bytes needed to decide (0 when done)."""
        if self._done:
            return 0
        return FIRST_NEEDED if self._reader is None else self._reader.needed

    @property
    def header(self) -> ProxyHeader | None:
        """The header to honour once done (``None``: use the socket's own addresses)."""
        return self._header

    @property
    def received(self) -> ProxyHeader | None:
        """The header read, even when the policy discards it (``IGNORE``)."""
        return self._received

    @property
    def app_data(self) -> bytes:
        """Once done, the bytes fed that belong to the application (after the header,
        or everything when the connection did not start with a header)."""
        return self._app_data

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Add received bytes; return ``True`` once the connection is decided.

        Raises:
            ProxyProtocolError: the connection must be refused (see the class doc).
            RuntimeError: called again after done.
        """
        if self._done:
            raise RuntimeError("the connection is decided; pass further data to the application")
        reader = self._reader
        if reader is None:
            # The first chunk: parse it as it is. A whole header (the usual case) or data
            # that is no header at all under an optional-header policy is decided here;
            # anything else (a split header, an error, a refusal) goes to the incremental
            # reader, which parses the same bytes again and ends in the very same state.
            try:
                header = _impl.parse(data, max_size=self._max_size)
            except NoProxyHeader:
                if self._policy is not _REQUIRE:
                    # [SPEC §5] R-10: the policy, not the payload, made the header optional
                    self._app_data = bytes(data)
                    self._done = True
                    return True
            except ProxyProtocolError:
                pass
            else:
                if self._policy is not _REJECT:
                    self._received = header
                    self._header = apply_policy(self._policy, header)
                    self._app_data = bytes(data[header.length :])
                    self._done = True
                    return True
            reader = self._reader = HeaderReader(max_size=self._max_size)
        try:
            found = reader.feed(data)
        except IncompleteHeader:  # the reader never raises it, but stay explicit
            return False
        except NoProxyHeader:
            if self._policy is _REQUIRE:
                raise
            # [SPEC §5] R-10: the policy, not the payload, made the header optional
            self._app_data = reader.pending
            self._done = True
            return True
        if found is None:
            return False
        self._received = found
        self._header = apply_policy(self._policy, found)
        self._app_data = reader.trailing_data
        self._done = True
        return True

    def finish(self) -> None:
        """No more bytes will come in time (EOF or the deadline passed): decide now.

        A connection that sent nothing goes on without a header when the policy makes
        the header optional (a server-speaks-first client under ``USE``, ``IGNORE`` or
        ``REJECT``).

        Raises:
            IncompleteHeader: some bytes of a header arrived, but not all of them.
            NoProxyHeader: nothing arrived and the policy is ``REQUIRE``.
        """
        if self._done:
            return
        reader = self._reader
        if reader is not None and reader.buffered:
            raise IncompleteHeader(reader.needed)
        if self._policy is _REQUIRE:
            raise NoProxyHeader("a PROXY header is required from this peer, none arrived")
        self._done = True


def resolve_addresses(
    header: ProxyHeader | None, peer: object, local: object
) -> tuple[object, object]:
    """The connection's effective (client, destination) addresses.

    The header's addresses when it carries them, else the socket's own: a ``LOCAL``
    header, v1 ``UNKNOWN``, v2 ``AF_UNSPEC`` or no header at all leaves ``peer`` and
    ``local`` as they are (go-proxyproto's ``RemoteAddr()``/``LocalAddr()``).

    Args:
        header: the header returned by :func:`apply_policy` (``None`` when none applies).
        peer: the socket's peer address.
        local: the socket's own address.

    Returns:
        ``(client, destination)``.
    """
    if header is None:
        return peer, local
    source, destination = header.source, header.destination
    return (peer if source is None else source, local if destination is None else destination)


def accept_datagram(
    data: bytes | bytearray | memoryview,
    peer: object,
    local: object,
    *,
    trusted: TrustedProxies,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Policy | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[ProxyHeader | None, bytes]:
    """Apply the trust rules to one datagram, parsed on its own ([SPEC §2] R-9).

    Args:
        data: the whole datagram.
        peer: its source address (from ``recvfrom``).
        local: the receiving socket's own address (passed to a callable ``policy``).
        trusted, policy, untrusted_policy: as for :func:`decide_policy`.
        max_size: the largest v2 header accepted.

    Returns:
        ``(header, payload)``: the header whose addresses apply (``None`` when the
        socket's addresses apply) and the bytes after the header, if any.

    Raises:
        UntrustedPeer: the sender is not trusted and no policy applies to it.
        NoProxyHeader: no header under ``REQUIRE``.
        PolicyViolation: a header under ``REJECT``.
        InvalidHeader: a malformed header, or one cut short by the end of the datagram
            (a header must not be split across datagrams, R-9).
    """
    chosen = decide_policy(peer, local, trusted=trusted, policy=policy,
                           untrusted_policy=untrusted_policy)
    if chosen is None:
        raise UntrustedPeer(f"datagram from untrusted peer {peer!r} dropped")
    if chosen is _SKIP:
        return None, bytes(data)
    reader = PolicyReader(chosen, max_size=max_size)
    if not reader.feed(data):
        try:
            reader.finish()  # the datagram is all there is: decide on what it holds
        except IncompleteHeader as exc:
            # [SPEC §2] R-9: the sender must not split a header across datagrams
            raise InvalidHeader(
                f"the datagram ends inside a PROXY header ({exc.needed} more byte(s) "
                "expected; a header must not be split across datagrams)"
            ) from exc
    return reader.header, reader.app_data
