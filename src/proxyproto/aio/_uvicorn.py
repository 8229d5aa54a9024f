"""uvicorn behind the PROXY layer: a protocol factory for ``uvicorn.Config(http=...)``."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Callable

from .._adapters import ProxyStats
from ._layer import ProxyProtocolLayer, Trusted, _Config
from ._servers import wrap_protocol_factory

__all__ = ["UvicornHTTPProtocol", "uvicorn_http_protocol"]


class UvicornHTTPProtocol:
    """uvicorn's HTTP protocol behind the PROXY layer: a value for ``uvicorn.Config(http=)``.

    Built by :func:`uvicorn_http_protocol`. uvicorn calls it once per connection, as it
    would call its own protocol class.

    Attributes:
        stats: the :class:`ProxyStats` of the server's connections.
    """

    __slots__ = ("_config", "_http_class")

    def __init__(self, http_class: Callable[..., asyncio.Protocol], config: _Config) -> None:
        self._http_class = http_class
        self._config = config

    @property
    def stats(self) -> ProxyStats:
        """The counters shared by the server's connections."""
        return self._config.stats

    def __call__(self, **kwargs: Any) -> ProxyProtocolLayer:
        http_class = self._http_class
        return ProxyProtocolLayer(lambda: http_class(**kwargs), self._config)


def uvicorn_http_protocol(
    *,
    trusted: Trusted,
    http: str | Callable[..., asyncio.Protocol] = "auto",
    **options: Any,
) -> UvicornHTTPProtocol:
    """Serve uvicorn behind a PROXY-protocol proxy: pass the result as ``http=``.

    >>> uvicorn.run(app, host="10.0.0.5", port=8000,  # doctest: +SKIP
    ...             http=uvicorn_http_protocol(trusted=["10.0.0.0/24"]))

    The ASGI ``scope["client"]`` and ``scope["server"]`` are then the original client
    and destination. For TLS passthrough, give the ``SSLContext`` here (TLS starts after
    the header), not to uvicorn's ``ssl_*`` options (those start TLS first).

    Args:
        trusted: the peers allowed to send a header (``TrustedProxies`` or CIDR strings).
        http: uvicorn's HTTP implementation: ``"auto"``, ``"h11"``, ``"httptools"`` or
            a protocol class.
        options: ``policy``, ``untrusted_policy``, ``timeout``, ``max_size``, ``ssl``,
            ``ssl_handshake_timeout`` and ``stats``, as for :func:`wrap_protocol_factory`.

    Returns:
        The protocol factory for ``uvicorn.Config(http=...)``; ``.stats`` holds the
        counters.

    Raises:
        ImportError: uvicorn is not installed (with a named implementation).
        KeyError: an unknown implementation name.
        TypeError: an unknown option.
    """
    config = wrap_protocol_factory(asyncio.Protocol, trusted=trusted, **options)._config
    if isinstance(http, str):
        uvicorn_config: Any = importlib.import_module("uvicorn.config")
        importer: Any = importlib.import_module("uvicorn.importer")
        http = importer.import_from_string(uvicorn_config.HTTP_PROTOCOLS[http])
    assert callable(http)
    return UvicornHTTPProtocol(http, config)
