"""The connection-start API for adapter writers (sans-IO: no sockets, no event loop).

An adapter (a server, a proxy, an event loop integration) needs four steps, all here:

1. :class:`ProxyOptions`: the validated settings (trusted networks, policies, deadline,
   size cap, ``trust_unix_peers``);
2. :func:`decide_policy` (or :meth:`ProxyOptions.decide`): from the peer's address
   alone, the policy of a new connection, or ``None`` to close it unread. The one place
   where "an untrusted peer's header is never believed" holds;
3. :func:`decide_start` (pure) or :class:`PolicyReader` (stateful) on the first bytes:
   :class:`Decided`, :class:`Need` or :class:`Refused` (its ``error.reason`` is the
   cause to count); :func:`accept_datagram` / :func:`decide_datagram` for datagrams;
4. :func:`resolve_addresses`: the effective client and destination.

>>> from proxyproto.policy import ProxyOptions, decide_start, Decided
>>> options = ProxyOptions(["127.0.0.0/8"])
>>> policy = options.decide(("127.0.0.1", 40000), ("127.0.0.1", 8080))
>>> result = decide_start(policy, b"PROXY TCP4 192.0.2.1 192.0.2.2 51000 443\\r\\nGET /")
>>> type(result) is Decided, result.header.source, result.offset
(True, ('192.0.2.1', 51000), 42)
"""

from __future__ import annotations

from ._adapters import ProxyStats, refusal_reason
from ._connection import (
    Decided,
    Need,
    PolicyReader,
    Refused,
    Start,
    accept_datagram,
    decide_datagram,
    decide_start,
)
from ._options import ProxyOptions, TrustedArg
from ._policy import (
    DEFAULT_TIMEOUT,
    ConnectionPolicy,
    Policy,
    apply_policy,
    decide_policy,
    resolve_addresses,
)
from ._reader import DEFAULT_MAX_SIZE
from ._trust import TrustedProxies, is_unix_peer

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "ConnectionPolicy",
    "Decided",
    "Need",
    "Policy",
    "PolicyReader",
    "ProxyOptions",
    "ProxyStats",
    "Refused",
    "Start",
    "TrustedArg",
    "TrustedProxies",
    "accept_datagram",
    "apply_policy",
    "decide_datagram",
    "decide_policy",
    "decide_start",
    "is_unix_peer",
    "refusal_reason",
    "resolve_addresses",
]
