"""proxyproto: HAProxy PROXY protocol v1/v2, parsed and encoded, strictly and fast.

The top level holds what a user needs: the wire API (``parse``, ``encode_v1``,
``encode_v2``, ``crc32c``, ``HeaderReader``), the values (``ProxyHeader`` and friends), the
errors, and the trust types (``TrustedProxies``, ``Policy``). The adapters live in
``proxyproto.aio`` and ``proxyproto.blocking``; the sans-IO connection-start machinery
for writing an adapter of your own in ``proxyproto.policy``.

>>> import proxyproto
>>> header = proxyproto.parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\\r\\n")
>>> header.source
('192.0.2.1', 51000)
"""

from __future__ import annotations

import warnings
from typing import Any

from ._constants import MAX_V2_SIZE, V1_MAX_LENGTH, V2_SIGNATURE
from ._errors import (
    ChecksumMismatch,
    HandshakeFailed,
    HeaderRejected,
    HeaderTimeout,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    MissingHeader,
    NoProxyHeader,
    PolicyError,
    PolicyViolation,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._header import (
    TLV,
    Address,
    Command,
    InetAddress,
    ProxyHeader,
    SocketAddress,
    SSLClient,
    SSLInfo,
    SSLSubtype,
    TLVType,
    UnixAddress,
)
from ._impl import IMPLEMENTATION, crc32c, encode_v1, encode_v2, parse
from ._policy import Policy
from ._reader import HeaderReader
from ._trust import TrustedProxies

__version__ = "0.1.0.dev0"

__all__ = [
    # the wire (sans-IO)
    "parse",
    "encode_v1",
    "encode_v2",
    "crc32c",
    "HeaderReader",
    "IMPLEMENTATION",
    "MAX_V2_SIZE",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    # values
    "ProxyHeader",
    "TLV",
    "TLVType",
    "Command",
    "SSLInfo",
    "SSLSubtype",
    "SSLClient",
    "Address",
    "InetAddress",
    "UnixAddress",
    "SocketAddress",
    # trust
    "TrustedProxies",
    "Policy",
    # errors: what parse raises...
    "ProxyProtocolError",
    "IncompleteHeader",
    "NoProxyHeader",
    "InvalidHeader",
    "HeaderTooLarge",
    "ChecksumMismatch",
    # ... and why an adapter refused a connection (each has a ``reason``)
    "PolicyViolation",
    "MissingHeader",
    "HeaderRejected",
    "UntrustedPeer",
    "PolicyError",
    "HeaderTimeout",
    "HandshakeFailed",
    "__version__",
]

# Names that lived at the top level until 0.1 and moved to proxyproto.policy (the
# adapter writers' module). They still work, with a DeprecationWarning.
_MOVED_TO_POLICY = frozenset({
    "ConnectionPolicy",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "PolicyReader",
    "accept_datagram",
    "apply_policy",
    "decide_policy",
    "resolve_addresses",
})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_POLICY:
        from . import policy

        warnings.warn(f"proxyproto.{name} moved to proxyproto.policy.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(policy, name)
    raise AttributeError(f"module 'proxyproto' has no attribute {name!r}")
