"""TLS after the header: what the application would have heard during the handshake."""

from __future__ import annotations

import asyncio

from ._transport import STREAM_PROTOCOLS, feed_protocol

__all__ = ["HeldEvents"]


class HeldEvents(asyncio.BufferedProtocol):
    """Stands in for the application during a TLS handshake: keeps what TLS delivers
    (data right after the handshake, EOF, loss) until the application is connected."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: tuple[Exception | None] | None = None
        self._chunk = bytearray(2**16)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A memoryview, not the bytearray: asyncio's SSL protocol (3.11+) slices the buffer
        # to read several TLS records in one go, and slicing a bytearray copies, so the
        # later records were lost (NUL bytes delivered instead; CPython issue 156275).
        return memoryview(self._chunk)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self._chunk[:nbytes]

    def eof_received(self) -> None:
        self.eof = True  # TLS closes on EOF anyway; the application hears of it once connected

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def hand_over(
        self, app: asyncio.BaseProtocol, tls: asyncio.Transport, view: asyncio.Transport
    ) -> None:
        """Connect ``app`` to ``tls`` (shown to it as ``view``), then replay what was held."""
        tls.set_protocol(app)
        app.connection_made(view)
        if self.data and not tls.is_closing():
            feed_protocol(app, bytes(self.data))
        if self.eof and isinstance(app, STREAM_PROTOCOLS) and not app.eof_received():
            tls.close()
        if self.lost is not None:
            app.connection_lost(self.lost[0])

