"""One validated, typed, immutable set of options for every adapter.

:class:`ProxyOptions` holds what decides the start of a connection: the trusted
networks, the policies, the header deadline and the size cap. The asyncio servers, the
blocking helpers and the ``socketserver`` mix-in all build one (or take one) and check
it the same way, with one set of exception types:

* a value of the wrong type is a ``TypeError`` (``timeout="5"``, ``max_size=4096.0``,
  ``policy="require"``, ``trust_unix_peers=1``);
* a value of the right type out of range is a ``ValueError`` (``timeout=0``,
  ``max_size=8``, ``untrusted_policy=Policy.USE``, a malformed network);
* ``timeout=None`` means no deadline (as ``math.inf`` does), in every adapter. Servers
  should keep one: the spec asks for at least 3 s ([SPEC §2] R-8), and without it a peer
  that sends nothing holds its connection for ever.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional, Union

from ._connection import PolicyReader, accept_datagram
from ._header import ProxyHeader
from ._policy import (
    DEFAULT_TIMEOUT,
    ConnectionPolicy,
    Policy,
    check_untrusted_policy,
    decide_policy,
)
from ._reader import DEFAULT_MAX_SIZE, Buffer, check_max_size
from ._trust import IPAddress, IPNetwork, TrustedProxies

__all__ = ["UNSET", "ProxyOptions", "TrustedArg", "check_timeout", "options_from"]

#: What ``trusted=`` accepts: a :class:`TrustedProxies` or CIDR strings / ipaddress objects.
TrustedArg = Union[TrustedProxies, Iterable[Union[str, IPNetwork, IPAddress]]]

_UNSET: Any = object()  # an argument of replace() not given (None is a meaningful value)
_FIELDS = ("trusted", "policy", "untrusted_policy", "timeout", "max_size", "trust_unix_peers")


def check_timeout(timeout: Optional[float], name: str = "timeout") -> Optional[float]:
    """A header deadline in seconds, checked: a positive number, or ``None`` (none).

    Returns:
        The timeout as a ``float``, or ``None`` for no deadline (``None`` or infinity).

    Raises:
        TypeError: not an ``int``/``float`` (``bool`` and ``str`` included) nor ``None``.
        ValueError: zero, negative or NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, "
                        f"not {type(timeout).__name__}")
    if not timeout > 0:  # NaN fails this too
        raise ValueError(f"{name} must be a positive number of seconds, not {timeout!r}")
    return None if timeout == math.inf else float(timeout)


class ProxyOptions:
    """How a server treats the start of every connection (validated, immutable).

    >>> options = ProxyOptions(["10.0.0.0/8"], untrusted_policy=Policy.SKIP)
    >>> options.decide(("10.1.2.3", 5000), None), options.decide(("203.0.113.9", 1), None)
    (<Policy.REQUIRE: 'require'>, <Policy.SKIP: 'skip'>)

    Args:
        trusted: the networks allowed to send a header (a :class:`TrustedProxies`, or
            CIDR strings and ``ipaddress`` objects; a bare address is one host).
        policy: the policy for trusted peers (default ``REQUIRE``), or a callable
            ``(peer, local) -> Policy`` consulted for every peer.
        untrusted_policy: the policy for other peers: ``None`` (default) closes them
            before reading; ``SKIP``, ``IGNORE`` or ``REJECT``. Never ``USE`` or
            ``REQUIRE``: an untrusted peer's header is never believed.
        timeout: the deadline in seconds for the whole header, from the connection
            (default 5); ``None`` for none (see the module doc).
        max_size: the largest v2 header accepted, in bytes (default 4096, at least 16).
        trust_unix_peers: treat UNIX-domain socket peers as trusted (a server on a
            UNIX socket behind nginx or HAProxy on the same host, uvicorn ``--uds``).
            Off by default: UNIX peers have no address to check.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range (see the module doc).
    """

    __slots__ = _FIELDS

    trusted: TrustedProxies
    policy: ConnectionPolicy
    untrusted_policy: Optional[Policy]
    timeout: Optional[float]
    max_size: int
    trust_unix_peers: bool

    def __init__(
        self,
        trusted: TrustedArg,
        *,
        policy: ConnectionPolicy = Policy.REQUIRE,
        untrusted_policy: Optional[Policy] = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        max_size: int = DEFAULT_MAX_SIZE,
        trust_unix_peers: bool = False,
    ) -> None:
        if type(policy) is not Policy and not callable(policy):
            raise TypeError(f"policy must be a Policy or a callable, not {policy!r}")
        if untrusted_policy is not None and type(untrusted_policy) is not Policy:
            raise TypeError(f"untrusted_policy must be a Policy or None, "
                            f"not {untrusted_policy!r}")
        check_untrusted_policy(untrusted_policy)
        check_max_size(max_size)
        if type(trust_unix_peers) is not bool:
            raise TypeError(f"trust_unix_peers must be a bool, "
                            f"not {type(trust_unix_peers).__name__}")
        values = (TrustedProxies.coerce(trusted), policy, untrusted_policy,
                  check_timeout(timeout), max_size, trust_unix_peers)
        for name, value in zip(_FIELDS, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ProxyOptions is immutable; use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ProxyOptions is immutable")

    def replace(
        self,
        *,
        trusted: TrustedArg = _UNSET,
        policy: ConnectionPolicy = _UNSET,
        untrusted_policy: Optional[Policy] = _UNSET,
        timeout: Optional[float] = _UNSET,
        max_size: int = _UNSET,
        trust_unix_peers: bool = _UNSET,
    ) -> ProxyOptions:
        """A copy with the options given changed (validated again)."""
        given = (trusted, policy, untrusted_policy, timeout, max_size, trust_unix_peers)
        merged: dict[str, Any] = {name: getattr(self, name) if value is _UNSET else value
                                  for name, value in zip(_FIELDS, given)}
        return ProxyOptions(**merged)

    def decide(self, peer: object, local: object) -> Optional[Policy]:
        """:func:`proxyproto.policy.decide_policy` with these options: the policy for one peer,
        or ``None`` to close it before reading (an untrusted peer no policy applies to).

        Raises:
            PolicyError: the policy callable failed.
        """
        return decide_policy(peer, local, trusted=self.trusted, policy=self.policy,
                             untrusted_policy=self.untrusted_policy,
                             trust_unix_peers=self.trust_unix_peers)

    def reader(self, policy: Policy) -> PolicyReader:
        """A :class:`PolicyReader` for one connection under ``policy``, with this cap."""
        return PolicyReader(policy, max_size=self.max_size)

    def accept_datagram(
        self, data: Buffer, peer: object, local: object
    ) -> tuple[Optional[ProxyHeader], bytes]:
        """:func:`proxyproto.policy.accept_datagram` with these options."""
        return accept_datagram(data, peer, local, trusted=self.trusted, policy=self.policy,
                               untrusted_policy=self.untrusted_policy,
                               max_size=self.max_size,
                               trust_unix_peers=self.trust_unix_peers)

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProxyOptions):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"ProxyOptions({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._key(),))


def _rebuild(key: tuple[Any, ...]) -> ProxyOptions:
    trusted, policy, untrusted_policy, timeout, max_size, trust_unix_peers = key
    return ProxyOptions(trusted, policy=policy, untrusted_policy=untrusted_policy,
                        timeout=timeout, max_size=max_size, trust_unix_peers=trust_unix_peers)


#: The marker of an argument not given, for adapters that take ``options=`` or keywords.
UNSET: Any = _UNSET


def options_from(
    options: Optional[ProxyOptions],
    *,
    trusted: Any = _UNSET,
    policy: Any = _UNSET,
    untrusted_policy: Any = _UNSET,
    timeout: Any = _UNSET,
    max_size: Any = _UNSET,
    trust_unix_peers: Any = _UNSET,
) -> ProxyOptions:
    """The options of one call that takes either ``options=`` or the separate keywords.

    Keywords not given (:data:`UNSET`) take the defaults of :class:`ProxyOptions`.

    Raises:
        TypeError: both ``options`` and a keyword, neither ``options`` nor ``trusted``,
            or a bad value.
        ValueError: a bad value.
    """
    given: dict[str, Any] = {name: value for name, value in (
        ("policy", policy), ("untrusted_policy", untrusted_policy), ("timeout", timeout),
        ("max_size", max_size), ("trust_unix_peers", trust_unix_peers)) if value is not _UNSET}
    if options is not None:
        if not isinstance(options, ProxyOptions):
            raise TypeError(f"options must be a ProxyOptions, not {type(options).__name__}")
        if given or trusted is not _UNSET:
            names = ", ".join(sorted([*given, *(["trusted"] if trusted is not _UNSET else [])]))
            raise TypeError(f"pass either options= or the separate keywords, not both "
                            f"(got options= and {names})")
        return options
    if trusted is _UNSET or trusted is None:
        raise TypeError("trusted= (the proxies' networks) or options= is required")
    return ProxyOptions(trusted, **given)
