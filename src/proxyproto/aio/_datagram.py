"""Datagram endpoints: every datagram carries its own header."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .._adapters import ProxyStats
from .._adapters import show_address as _show
from .._errors import ProxyProtocolError
from .._options import UNSET, ProxyOptions
from .._policy import ConnectionPolicy, Policy, resolve_addresses
from ._layer import Trusted, _Config, logger, make_config

__all__ = ["ProxyDatagramLayer", "create_datagram_endpoint"]


class ProxyDatagramLayer(asyncio.DatagramProtocol):
    """The PROXY layer for a datagram endpoint: every datagram carries its own header
    ([SPEC §2] R-9), checked against the same trust rules as stream connections.

    The application's ``datagram_received(payload, original_address)`` gets the bytes
    after the header and the header's source (the datagram's own source when the header
    carries none). An application that also needs the proxy's address (to reply through
    it) can define ``proxy_datagram_received(payload, original_address, header, peer)``,
    which is called instead.
    """

    def __init__(self, app: asyncio.DatagramProtocol, config: _Config) -> None:
        self._app = app
        self._config = config
        self._local: Any = None

    @property
    def stats(self) -> ProxyStats:
        """The endpoint's counters (one datagram counts as one connection)."""
        return self._config.stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._local = transport.get_extra_info("sockname")
        self._app.connection_made(transport)  # type: ignore[arg-type]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        config = self._config
        try:
            header, payload = config.options.accept_datagram(data, addr, self._local)
        except ProxyProtocolError as exc:
            if exc.reason == "error":  # a policy callable that failed: drop, keep serving
                logger.error("policy callable failed for %s", _show(addr),
                             exc_info=exc.__cause__ or exc)
            self._drop(exc.reason, addr, exc)
            return
        original: Any = resolve_addresses(header, addr, self._local)[0]
        config.stats.accepted += 1
        hook = getattr(self._app, "proxy_datagram_received", None)
        if hook is not None:
            hook(payload, original, header, addr)
        else:
            self._app.datagram_received(payload, original)

    def _drop(self, reason: str, addr: Any, exc: BaseException | None) -> None:
        self._config.stats.refused[reason] += 1
        logger.info("dropped datagram from %s: %s%s", _show(addr), reason,
                    f" ({exc})" if exc is not None else "")

    def error_received(self, exc: Exception) -> None:
        self._app.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._app.connection_lost(exc)


async def create_datagram_endpoint(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: Any = None,
    remote_addr: Any = None,
    *,
    trusted: Trusted | None = None,
    policy: ConnectionPolicy = UNSET,
    untrusted_policy: Policy | None = UNSET,
    max_size: int = UNSET,
    trust_unix_peers: bool = UNSET,
    options: ProxyOptions | None = None,
    stats: ProxyStats | None = None,
    **kwargs: Any,
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
    """``loop.create_datagram_endpoint`` with the PROXY layer in front of the protocol.

    Each datagram is judged on its own: its source address picks the policy (as for
    stream connections), its header is parsed from its first bytes. Refused datagrams
    are dropped, logged and counted in the layer's :class:`ProxyStats`.

    Args:
        protocol_factory: makes the application's ``DatagramProtocol``.
        local_addr: as for ``loop.create_datagram_endpoint``.
        remote_addr: as for ``loop.create_datagram_endpoint``.
        kwargs: other ``loop.create_datagram_endpoint`` arguments.
        trusted: the peers allowed to send a header (required unless ``options``).
        policy: see :func:`wrap_protocol_factory`.
        untrusted_policy: see :func:`wrap_protocol_factory`.
        max_size: see :func:`wrap_protocol_factory`.
        trust_unix_peers: see :func:`wrap_protocol_factory` (UNIX datagram sockets).
        options: the above as one :class:`~proxyproto.policy.ProxyOptions` (its
            ``timeout`` does not apply: a datagram is judged when it arrives).
        stats: see :func:`wrap_protocol_factory`.

    Returns:
        ``(transport, app_protocol)``. The counters are the ``stats`` passed in, also
        reachable as ``transport.get_protocol().stats``.
    """
    config = make_config(options, trusted=trusted, policy=policy,
                         untrusted_policy=untrusted_policy, max_size=max_size,
                         trust_unix_peers=trust_unix_peers, stats=stats)
    app = protocol_factory()
    layer = ProxyDatagramLayer(app, config)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: layer, local_addr=local_addr, remote_addr=remote_addr, **kwargs)
    return transport, app
