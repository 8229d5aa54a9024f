"""Trust: the set of networks whose peers may send a PROXY header.

The decision is made from configuration and the socket's peer address only, never from
the payload ([SPEC §5], R-10, R-61, R-62). The trust-list syntax is strict, so that a
typo never widens trust:

* ``"10.0.0.0/8"`` is a network; ``"192.0.2.7"`` (a bare address) is one host;
* a network with host bits set (``"10.0.0.1/8"``) is refused with a ``ValueError`` that
  shows the network it would have meant (``10.0.0.0/8``);
* zone ids (``"fe80::1%eth0"``) are refused: entries are matched on the address alone,
  so a zone would silently mean "on every interface";
* an IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, what a dual-stack socket reports for an
  IPv4 client) *is* an IPv4 peer: it matches the IPv4 networks (and ``::ffff:a.b.c.d/n``
  entries with ``n >= 96``, which are IPv4 networks written in IPv6), never a wider IPv6
  network. ``0.0.0.0/0`` trusts every IPv4 peer, mapped ones included; ``::/0`` trusts
  every native IPv6 peer and no IPv4 one.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from typing import Optional, Union

__all__ = ["IPAddress", "IPNetwork", "TrustedProxies", "is_unix_peer"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_CACHE_SIZE = 1024  # TrustedProxies' cache of verdicts by peer host string


def _to_address(value: object) -> Optional[IPAddress]:
    """An IP address from a str, an ``ipaddress`` object or a ``(host, port, ...)`` peername.

    A peer's zone id (``fe80::1%eth0``) is dropped: trust entries carry none.
    """
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


def is_unix_peer(peer: object) -> bool:
    """``True`` for the peer address of a UNIX-domain socket (a path, ``''`` or bytes).

    ``getpeername()`` gives AF_UNIX peers as a ``str`` (a path, often ``''``) or, for
    Linux abstract names, ``bytes``; IP peers are ``(host, port, ...)`` tuples. A ``str``
    that is an IP address is not a UNIX peer.
    """
    if isinstance(peer, (bytes, bytearray)):
        return True
    return isinstance(peer, str) and _to_address(peer) is None


def _network(item: object) -> IPNetwork:
    """One trust-list entry, strictly parsed (see the module doc)."""
    if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        network: IPNetwork = item
    elif isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        network = ipaddress.ip_network(item)
    elif isinstance(item, str):
        text = item.strip()
        if "%" in text:
            raise ValueError(
                f"trusted network {item!r}: zone ids are not supported (entries are matched "
                "on the address alone); write the address without %zone, which trusts it "
                "on every interface, if that is what you mean"
            )
        try:
            network = ipaddress.ip_network(text)
        except ValueError as exc:
            try:
                meant = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"trusted network {item!r} is not an IP network or "
                                 f"address: {exc}") from None
            raise ValueError(
                f"trusted network {item!r} has host bits set: it would trust all of "
                f"{meant}; write {str(meant)!r} for the network, or the bare address "
                f"{text.partition('/')[0]!r} for one host"
            ) from None
    else:
        raise TypeError(f"a trusted network must be a str or an ipaddress object, "
                        f"not {type(item).__name__}")
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.scope_id:
        raise ValueError(f"trusted network {str(network)!r}: zone ids are not supported")
    return network


class TrustedProxies:
    """A set of networks whose peers may send PROXY headers.

    >>> trusted = TrustedProxies(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    >>> "10.1.2.3" in trusted, "::ffff:10.1.2.3" in trusted, "203.0.113.9" in trusted
    (True, True, False)

    Networks are merged into sorted, disjoint intervals, so a lookup is a binary search:
    its cost grows with the logarithm of the number of networks, not linearly. Anything
    that is not an IP address (a UNIX socket peer, garbage) is never trusted here (see
    ``trust_unix_peers`` of :func:`proxyproto.policy.decide_policy` for UNIX sockets).

    The syntax is strict: a bare address is one host, a network with host bits set
    (``"10.0.0.1/8"``) and a zone id (``"fe80::1%eth0"``) are refused. An IPv4-mapped
    peer (``::ffff:10.0.0.1``) matches the IPv4 networks: ``0.0.0.0/0`` covers it,
    ``::/0`` (native IPv6 only) does not.

    Args:
        networks: CIDR strings (``"10.0.0.0/8"``), bare addresses (one host) or
            ``ipaddress`` networks/addresses.

    Raises:
        ValueError: a string that is not a network or an address, a network with host
            bits set (the message names the network meant), a zone id.
        TypeError: an item of another type, or a single string instead of an iterable.
    """

    __slots__ = ("_cache", "_ends4", "_ends6", "_networks", "_starts4", "_starts6")

    def __init__(self, networks: Iterable[Union[str, IPNetwork, IPAddress]]) -> None:
        if isinstance(networks, (str, bytes)):
            raise TypeError("pass an iterable of networks, not a single string")
        parsed = [_network(item) for item in networks]
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrustedProxies):
            return NotImplemented
        return (self._starts4, self._ends4, self._starts6, self._ends6) == (
            other._starts4, other._ends4, other._starts6, other._ends6)

    def __hash__(self) -> int:
        return hash((tuple(self._starts4), tuple(self._ends4), tuple(self._starts6),
                     tuple(self._ends6)))

    def __repr__(self) -> str:
        shown = ", ".join(repr(str(n)) for n in self._networks[:5])
        more = f", ... {len(self._networks) - 5} more" if len(self._networks) > 5 else ""
        return f"TrustedProxies([{shown}{more}])"

    @classmethod
    def coerce(cls, value: Union[TrustedProxies, Iterable[Union[str, IPNetwork, IPAddress]]]
               ) -> TrustedProxies:
        """Return ``value`` if it is a ``TrustedProxies``, else build one from it."""
        return value if isinstance(value, TrustedProxies) else cls(value)
