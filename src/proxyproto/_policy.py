"""Policies: what to do with each connection, decided from configuration and addresses.

:func:`decide_policy` is the ONE place where the rule "an untrusted peer's header is never
believed" holds: every adapter (asyncio, blocking sockets, datagrams, the servers) and
every public sans-IO helper goes through it ([SPEC §5], R-10, R-61, R-62). The trust set
itself is :class:`proxyproto.TrustedProxies` (``_trust.py``); the connection-start
machine that applies a chosen policy to the first bytes is in ``_connection.py``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from ._errors import HeaderRejected, MissingHeader, PolicyError, PolicyViolation, UntrustedPeer
from ._header import Address, ProxyHeader
from ._trust import TrustedProxies, is_unix_peer

_Peer = TypeVar("_Peer")
_Local = TypeVar("_Local")

if TYPE_CHECKING:  # defined on top of this module; imported lazily (see __getattr__)
    from ._connection import PolicyReader, accept_datagram

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConnectionPolicy",
    "Policy",
    "PolicyReader",
    "PolicyViolation",
    "TrustedProxies",
    "UntrustedPeer",
    "accept_datagram",
    "apply_policy",
    "check_untrusted_policy",
    "decide_policy",
    "resolve_addresses",
]

#: Default header-read timeout in seconds (the spec asks for at least 3 s, R-8).
DEFAULT_TIMEOUT = 5.0


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
ConnectionPolicy = Union[Policy, Callable[[Any, Any], Policy]]

_UNTRUSTED_BELIEVED = (
    "an untrusted peer's header is never believed: use SKIP, IGNORE, REJECT or None "
    "(close the connection) for untrusted peers"
)


def apply_policy(policy: Policy, header: Optional[ProxyHeader]) -> Optional[ProxyHeader]:
    """The header to honour for a connection, given its policy and what was read.

    Args:
        policy: the connection's policy (``SKIP`` means nothing was read).
        header: the header read, or ``None`` when the connection did not start with one.

    Returns:
        The header whose addresses apply, or ``None`` (use the socket's addresses).

    Raises:
        MissingHeader: ``REQUIRE`` without a header (a ``PolicyViolation`` and a
            ``NoProxyHeader``).
        HeaderRejected: ``REJECT`` with a header (a ``PolicyViolation``).
    """
    if policy is _REQUIRE:
        if header is None:
            raise MissingHeader("a PROXY header is required from this peer, none was sent")
        return header
    if policy is _USE:
        return header
    if policy is _REJECT and header is not None:
        raise HeaderRejected("this peer may not send a PROXY header")
    return None


def check_untrusted_policy(untrusted_policy: Optional[Policy]) -> None:
    """Refuse configurations that would believe an untrusted peer's header.

    Raises:
        ValueError: ``untrusted_policy`` is ``USE`` or ``REQUIRE``.
    """
    if untrusted_policy is _USE or untrusted_policy is _REQUIRE:
        raise ValueError(_UNTRUSTED_BELIEVED)


def decide_policy(
    peer: object,
    local: object,
    *,
    trusted: TrustedProxies,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Optional[Policy] = None,
    trust_unix_peers: bool = False,
) -> Optional[Policy]:
    """Choose what to do with a new connection, from configuration and addresses only.

    The one place the rule "an untrusted peer's header is never believed" holds: a
    trusted-only policy (``USE``, ``REQUIRE``) is never returned for an untrusted peer.

    >>> trusted = TrustedProxies(["10.0.0.0/8"])
    >>> decide_policy(("10.0.0.5", 4000), None, trusted=trusted)
    <Policy.REQUIRE: 'require'>
    >>> decide_policy(("203.0.113.9", 4000), None, trusted=trusted) is None
    True

    Args:
        peer: the socket's peer address (a ``(host, port, ...)`` tuple, a str, or an
            ``ipaddress`` address; a UNIX peer, a path or ``''``, is trusted only with
            ``trust_unix_peers``).
        local: the socket's own address (passed to a callable ``policy``).
        trusted: the networks allowed to send a header.
        policy: the policy for trusted peers, or a callable ``(peer, local) -> Policy``
            consulted for every peer.
        untrusted_policy: the policy for other peers (``SKIP``, ``IGNORE``, ``REJECT``);
            ``None`` closes the connection before reading anything.
        trust_unix_peers: treat UNIX-domain peers as trusted (a server on a UNIX socket,
            e.g. uvicorn ``--uds``, behind nginx or HAProxy on the same host). Off by
            default: any local process that can open the socket may then send a header.

    Returns:
        The policy to apply, or ``None`` to close the connection without reading.
        A callable that answers ``USE`` or ``REQUIRE`` for an untrusted peer gets the
        connection closed (``None``).

    Raises:
        ValueError: ``untrusted_policy`` is ``USE`` or ``REQUIRE`` (checked on every
            call, whoever the peer).
        PolicyError: the callable raised (the exception is ``__cause__``) or returned
            something that is not a :class:`Policy`.
    """
    if untrusted_policy is _USE or untrusted_policy is _REQUIRE:
        raise ValueError(_UNTRUSTED_BELIEVED)
    is_trusted = peer in trusted or (trust_unix_peers and is_unix_peer(peer))
    if type(policy) is Policy:
        return policy if is_trusted else untrusted_policy
    if not callable(policy):
        raise TypeError(f"policy must be a Policy or a callable, not {policy!r}")
    try:
        chosen = policy(peer, local)
    except Exception as exc:
        raise PolicyError(f"the policy callable failed: {exc!r}") from exc
    if type(chosen) is not Policy:
        raise PolicyError(f"the policy callable returned {chosen!r}, not a Policy")
    if not is_trusted and (chosen is _USE or chosen is _REQUIRE):
        return None
    return chosen


def untrusted(peer: object) -> UntrustedPeer:
    """The refusal of a peer that :func:`decide_policy` closed (``None``)."""
    return UntrustedPeer(f"peer {peer!r} is not trusted: closed before reading")


def resolve_addresses(
    header: Optional[ProxyHeader], peer: _Peer, local: _Local
) -> tuple[Union[Address, _Peer], Union[Address, _Local]]:
    """The connection's effective (client, destination) addresses.

    The header's addresses when it carries them, else the socket's own: a ``LOCAL``
    header, v1 ``UNKNOWN``, v2 ``AF_UNSPEC`` or no header at all leaves ``peer`` and
    ``local`` as they are (go-proxyproto's ``RemoteAddr()``/``LocalAddr()``).

    Args:
        header: the header returned by :func:`apply_policy` (``None`` when none applies).
        peer: the socket's peer address (any type: it is returned as given).
        local: the socket's own address (likewise).

    Returns:
        ``(client, destination)``: each a header ``proxyproto.Address`` or the
        socket address passed in, typed as such (``Address | type of peer``).
    """
    if header is None:
        return peer, local
    source, destination = header.source, header.destination
    return (peer if source is None else source, local if destination is None else destination)


def __getattr__(name: str) -> Any:
    # PolicyReader and accept_datagram live in _connection.py, which imports this module;
    # they stay importable from here, where they were.
    if name in ("PolicyReader", "accept_datagram"):
        from . import _connection

        return getattr(_connection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
