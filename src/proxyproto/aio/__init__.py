"""asyncio adapters: PROXY protocol servers, clients and datagram endpoints.

The PROXY layer is written once, as a protocol (:class:`ProxyProtocolLayer`) that sits in
front of any ``asyncio.Protocol``: it decides the policy from the peer address before
reading anything, reads the header under a deadline and a size cap (the sans-IO
:class:`~proxyproto.policy.PolicyReader` does the reading), optionally starts TLS, and only then
calls the application's ``connection_made`` with a transport whose ``get_extra_info``
reports the original addresses. The streams server (:func:`start_server`) is the same
layer with ``asyncio.StreamReaderProtocol`` as the application. For uvicorn's own HTTP
protocols (:func:`uvicorn_http_protocol`) the same layer is mixed into uvicorn's class, so
that a connection has one protocol object.

Refused connections are closed, logged on the ``"proxyproto.aio"`` logger and counted in
a :class:`ProxyStats`; they never stop the server.
"""

from __future__ import annotations

# (the names imported "as" themselves were importable from the old module and stay so)
from .._adapters import ProxyStats
from .._header import ProxyHeader as ProxyHeader
from .._policy import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from .._policy import ConnectionPolicy as ConnectionPolicy
from .._policy import Policy as Policy
from .._policy import TrustedProxies as TrustedProxies
from .._reader import DEFAULT_MAX_SIZE as DEFAULT_MAX_SIZE
from ._clients import HeaderSpec as HeaderSpec
from ._clients import create_connection, header_for, open_connection
from ._datagram import ProxyDatagramLayer, create_datagram_endpoint
from ._layer import ProxyProtocolFactory, ProxyProtocolLayer
from ._layer import Trusted as Trusted
from ._layer import logger as logger
from ._servers import ClientConnectedCallback as ClientConnectedCallback
from ._servers import ProxyServer, create_server, start_server, wrap_protocol_factory
from ._transport import ProxiedTransport
from ._transport import TLSFeedTransport as TLSFeedTransport
from ._transport import feed_protocol as feed_protocol
from ._uvicorn import UvicornHTTPProtocol, uvicorn_http_protocol

__all__ = [
    "ProxiedTransport",
    "ProxyDatagramLayer",
    "ProxyProtocolFactory",
    "ProxyProtocolLayer",
    "ProxyServer",
    "ProxyStats",
    "UvicornHTTPProtocol",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "header_for",
    "open_connection",
    "start_server",
    "uvicorn_http_protocol",
    "wrap_protocol_factory",
]
