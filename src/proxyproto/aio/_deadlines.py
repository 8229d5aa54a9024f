"""The header deadlines of a server's connections: one wake-up per server and loop."""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from typing import TYPE_CHECKING, Callable, Union

from .. import _impl

if TYPE_CHECKING:
    from ._layer import StreamLayer

__all__ = ["HeaderDeadlines", "TimerFD"]

# asyncio runs a timer once loop.time() + this resolution reaches its time (its own rule)
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution

try:  # the compiled module's timerfd (Linux); without it, asyncio's own timers
    if _impl.IMPLEMENTATION != "cython":
        raise ImportError("the pure-Python build")
    from .._fast import HAVE_TIMER_FD as _HAVE_TIMER_FD
    from .._fast import arm_timer_fd, open_timer_fd
except ImportError:
    _HAVE_TIMER_FD = False


class TimerFD:
    """A Linux timerfd that a selector event loop watches: ``callback`` runs once each
    time the armed time (``time.monotonic()`` seconds) is reached.

    While an asyncio timer is scheduled, every iteration of the loop that would block
    reads the clock and works out a select timeout (about 1,500 instructions on 3.11,
    several times per connection); a watched fd costs nothing until it fires. The fd is
    closed by :meth:`close`, or when the object is collected (a loop closed with it armed).
    """

    __slots__ = ("__weakref__", "_callback", "_close_fd", "_fd", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        fd = open_timer_fd()
        self._fd = fd
        self._loop = loop
        self._callback = callback
        self._close_fd = weakref.finalize(self, os.close, fd)
        try:
            loop.add_reader(fd, self._fired)
        except BaseException:
            self._close_fd()
            raise

    def arm(self, when: float) -> None:
        """Fire once at ``when`` (``time.monotonic()`` seconds; now if it has passed)."""
        arm_timer_fd(self._fd, when)

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count: read, so the fd is quiet again
        except BlockingIOError:  # disarmed or moved later since it became readable
            return
        self._callback()

    def close(self) -> None:
        """Stop watching the fd and close it (idempotent)."""
        if self._close_fd.alive:
            self._loop.remove_reader(self._fd)
            self._close_fd()


def _timer_fd_works(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` can use a :class:`TimerFD`: a selector loop (it watches fds)
    whose clock is ``time.monotonic`` (the timerfd's ``CLOCK_MONOTONIC``)."""
    return (_HAVE_TIMER_FD and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
            and type(loop).time is asyncio.BaseEventLoop.time)


class HeaderDeadlines:
    """The header deadlines of one server's connections on one event loop, with one
    wake-up.

    Every connection of a server gets the same ``timeout``, so deadlines taken in arrival
    order are already sorted: a dict (insertion-ordered) of waiting layers is the whole
    queue. Adding and removing a connection are dict operations; the single wake-up runs
    at the earliest deadline still waiting and times out every connection due, where a
    ``loop.call_later`` per connection (a heap push and a ``TimerHandle``) cost several
    microseconds. Sweeps are at least ``slack`` apart, ``min(0.1 s, timeout / 10)``: a
    connection is timed out ``timeout`` seconds after it was made, never earlier and at
    most ``slack`` later, so a flood of stalled connections costs one wake-up per batch.

    The wake-up is a :class:`TimerFD` on asyncio's selector loops on Linux with the
    compiled module (no cost to the loop's iterations while it waits), else the loop's
    own timer (``loop.call_at``: uvloop, the proactor loop, the pure-Python build). It
    exists only while some connection waits: a sweep that finds none waiting drops it.
    """

    __slots__ = ("_slack", "_time", "_timeout", "_timer", "_use_fd", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        # loop.time() is time.monotonic() unless the loop says otherwise (uvloop has a
        # clock of its own): the function itself then, no Python frame per connection
        self._time = (time.monotonic if type(loop).time is asyncio.BaseEventLoop.time
                      else loop.time)
        self._timeout = timeout
        self._slack = min(0.1, timeout / 10)
        self._use_fd = _timer_fd_works(loop)
        #: the armed wake-up (``None`` while nothing waits)
        self._timer: Union[asyncio.TimerHandle, TimerFD, None] = None
        #: the waiting layers, by arrival, with their deadlines (in ``loop.time()``)
        self.waiting: dict[StreamLayer, float] = {}

    def add(self, layer: StreamLayer) -> dict[StreamLayer, float]:
        """Start ``layer``'s deadline: ``timeout`` seconds from now. Returns
        :attr:`waiting`, from which the layer removes itself once settled."""
        waiting = self.waiting
        waiting[layer] = deadline = self._time() + self._timeout
        if self._timer is None:
            self._arm(deadline)
        return waiting

    def _arm(self, when: float) -> None:
        """Run :meth:`_sweep` at ``when`` (a new wake-up: none is armed)."""
        if self._use_fd:
            timer = TimerFD(self.loop, self._sweep)
            timer.arm(when)
            self._timer = timer
        else:
            self._timer = self.loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        timer = self._timer
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
            first = max(next(iter(waiting.values())), now + self._slack)
            if type(timer) is TimerFD:
                timer.arm(first)  # the same fd, later
            else:
                self._timer = self.loop.call_at(first, self._sweep)
        else:
            self._timer = None
            if type(timer) is TimerFD:
                timer.close()  # nothing waits: no fd held by an idle server
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
