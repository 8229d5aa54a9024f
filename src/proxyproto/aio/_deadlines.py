"""The header deadlines of a server's connections: one timer per server and loop."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._layer import StreamLayer

__all__ = ["HeaderDeadlines"]

# asyncio runs a timer once loop.time() + this resolution reaches its time (its own rule)
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class HeaderDeadlines:
    """The header deadlines of one server's connections on one event loop, with one timer.

    Every connection of a server gets the same ``timeout``, so deadlines taken in arrival
    order are already sorted: a dict (insertion-ordered) of waiting layers is the whole
    queue. Adding and removing a connection are dict operations; the single timer runs
    at the earliest deadline still waiting and times out every connection due, where a
    ``loop.call_later`` per connection (a heap push and a ``TimerHandle``) cost several
    microseconds. Sweeps are at least ``slack`` apart, ``min(0.1 s, timeout / 10)``: a
    connection is timed out ``timeout`` seconds after it was made, never earlier and at
    most ``slack`` later, so a flood of stalled connections costs one wake-up per batch.
    """

    __slots__ = ("_slack", "_time", "_timeout", "_timer", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        # loop.time() is time.monotonic() unless the loop says otherwise (uvloop has a
        # clock of its own): the function itself then, no Python frame per connection
        self._time = (time.monotonic if type(loop).time is asyncio.BaseEventLoop.time
                      else loop.time)
        self._timeout = timeout
        self._slack = min(0.1, timeout / 10)
        self._timer: asyncio.TimerHandle | None = None
        #: the waiting layers, by arrival, with their deadlines (in ``loop.time()``)
        self.waiting: dict[StreamLayer, float] = {}

    def add(self, layer: StreamLayer) -> dict[StreamLayer, float]:
        """Start ``layer``'s deadline: ``timeout`` seconds from now. Returns
        :attr:`waiting`, from which the layer removes itself once settled."""
        waiting = self.waiting
        waiting[layer] = deadline = self._time() + self._timeout
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._sweep)
        return waiting

    def _sweep(self) -> None:
        self._timer = None
        waiting = self.waiting
        now = self._time() + _CLOCK_RESOLUTION
        due: list[StreamLayer] = []
        for layer, deadline in waiting.items():
            if deadline > now:
                break
            due.append(layer)
        for layer in due:
            del waiting[layer]
        if waiting:
            first = next(iter(waiting.values()))
            self._timer = self.loop.call_at(max(first, now + self._slack), self._sweep)
        else:
            waiting.clear()  # frees the table a burst of connections left (dicts keep it)
        for layer in due:
            try:
                layer._on_timeout()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as a timer callback of its own would report it
                self.loop.call_exception_handler({
                    "message": "exception in the PROXY header timeout of a connection",
                    "exception": exc, "protocol": layer})
