"""proxyproto: HAProxy PROXY protocol v1/v2, parsed and encoded, strictly and fast.

>>> import proxyproto
>>> header = proxyproto.parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\\r\\n")
>>> header.source
('192.0.2.1', 51000)
"""

from __future__ import annotations

from ._errors import (
    ChecksumMismatch,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    ProxyProtocolError,
)
from ._fallback import MAX_V2_SIZE, V1_MAX_LENGTH, V2_SIGNATURE
from ._header import (
    TLV,
    Address,
    Command,
    ProxyHeader,
    SSLClient,
    SSLInfo,
    SSLSubtype,
    TLVType,
)
from ._impl import IMPLEMENTATION, crc32c, encode_v1, encode_v2, parse
from ._policy import (
    DEFAULT_TIMEOUT,
    ConnectionPolicy,
    Policy,
    PolicyReader,
    PolicyViolation,
    TrustedProxies,
    UntrustedPeer,
    accept_datagram,
    apply_policy,
    decide_policy,
    resolve_addresses,
)
from ._reader import DEFAULT_MAX_SIZE, HeaderReader

__version__ = "0.1.0.dev0"

__all__ = [
    # parsing and encoding (sans-IO)
    "parse",
    "encode_v1",
    "encode_v2",
    "crc32c",
    "HeaderReader",
    # values
    "ProxyHeader",
    "Address",
    "Command",
    "TLV",
    "TLVType",
    "SSLInfo",
    "SSLSubtype",
    "SSLClient",
    # trust
    "TrustedProxies",
    "Policy",
    "ConnectionPolicy",
    "apply_policy",
    "decide_policy",
    "PolicyReader",
    "resolve_addresses",
    "accept_datagram",
    # errors
    "ProxyProtocolError",
    "IncompleteHeader",
    "NoProxyHeader",
    "InvalidHeader",
    "HeaderTooLarge",
    "ChecksumMismatch",
    "PolicyViolation",
    "UntrustedPeer",
    # constants
    "IMPLEMENTATION",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "MAX_V2_SIZE",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "__version__",
]
