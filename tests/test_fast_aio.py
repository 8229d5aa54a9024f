"""The compiled twins of the asyncio layer's per-connection steps, against their
references: ``report_in_place``, ``ProxiedSocket``, ``ProxyExtensionApp``; and the
header deadlines' wake-up (a timerfd on Linux with the compiled module, else asyncio's
own timer), which must time connections out the same way either way."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from types import ModuleType
from typing import Any

import pytest

import proxyproto
from aio_util import run
from proxyproto import aio, encode_v1, encode_v2
from proxyproto.aio import _deadlines
from proxyproto.aio._deadlines import HeaderDeadlines, TimerFD
from proxyproto.aio._transport import ProxiedSocketPython, report_in_place_python
from proxyproto.aio._uvicorn import ProxyExtensionAppPython

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
PEER, LOCAL = ("127.0.0.2", 1234), ("127.0.0.1", 8000)

HEADERS = {
    "v1": encode_v1(SRC, DST),
    "v1 unknown": b"PROXY UNKNOWN\r\n",
    "v2 inet6": encode_v2(("2001:db8::1", 1), ("2001:db8::2", 2)),
    "v2 local": encode_v2(None, None),
    "v2 unix": encode_v2("/run/client.sock", "/run/server.sock"),
}


def plain(value: Any) -> Any:
    """A dict value, with a ProxiedSocket (either twin) as what it reports."""
    if type(value).__name__ in ("ProxiedSocket", "ProxiedSocketPython"):
        return ("proxied socket", value._sock, value.getpeername(), value.getsockname())
    return value


@pytest.mark.parametrize("name", [*HEADERS, "no header"])
@pytest.mark.parametrize("with_socket", [True, False])
@pytest.mark.parametrize("other_received", [False, True])
def test_report_in_place_twins_agree(fast: ModuleType, name: str, with_socket: bool,
                                     other_received: bool) -> None:
    header = None if name == "no header" else proxyproto.parse(HEADERS[name])
    received = proxyproto.parse(HEADERS["v1"]) if other_received else header
    sock = object()
    dicts = []
    for report in (report_in_place_python, fast.report_in_place):
        extra: dict[str, Any] = {"peername": PEER, "sockname": LOCAL, "other": 1}
        if with_socket:
            extra["socket"] = sock
        report(extra, header, received, PEER, LOCAL)
        dicts.append({key: plain(value) for key, value in extra.items()})
    assert dicts[0] == dicts[1]
    if header is not None and header.source is not None and with_socket:
        assert dicts[1]["socket"] == ("proxied socket", sock, header.source,
                                      header.destination)


def test_proxied_socket_twins_agree(fast: ModuleType) -> None:
    with socket.socket() as real:
        twins = [cls(real, SRC, DST) for cls in (ProxiedSocketPython, fast.ProxiedSocket)]
        for proxied in twins:
            assert proxied.getpeername() == SRC and proxied.getsockname() == DST
            assert proxied.fileno() == real.fileno()  # anything else: the real socket's
            assert proxied.family == socket.AF_INET
            with pytest.raises(AttributeError):
                proxied.no_such_attribute  # noqa: B018
        assert repr(twins[0]) == repr(twins[1])
        assert repr(twins[1]).startswith("<ProxiedSocket peername=('192.0.2.10', 40000)")


@pytest.mark.parametrize("extensions", [None, {"tls": {"version": 1}}])
def test_extension_app_twins_agree(fast: ModuleType, extensions: Any) -> None:
    results = []
    for cls in (ProxyExtensionAppPython, fast.ProxyExtensionApp):
        calls: list[Any] = []
        app = cls.__new__(cls)
        def answer(scope: Any, receive: Any, send: Any, calls: list[Any] = calls) -> str:
            calls.append((scope, receive, send))
            return "awaitable"

        app.app = answer
        app.extension = {"header": "h"}
        scope: dict[str, Any] = {"type": "http"}
        if extensions is not None:
            scope["extensions"] = dict(extensions)
        assert app(scope, "receive", "send") == "awaitable"  # the app's own answer, as is
        assert calls == [(scope, "receive", "send")]
        results.append(scope)
    assert results[0] == results[1]
    assert results[1]["extensions"]["proxy_protocol"] == {"header": "h"}
    if extensions is not None:
        assert results[1]["extensions"]["tls"] == {"version": 1}  # others kept


# -- the deadlines' wake-up --------------------------------------------------------------


def is_open(fd: int) -> bool:
    """Whether ``fd`` is an open file descriptor (nothing else opens one meanwhile)."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _deadlines._HAVE_TIMER_FD, reason="no timerfd (pure-Python build)")
def test_timer_fd_fires_at_its_time_then_again_when_rearmed() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        timer = TimerFD(loop, lambda: fired.append(time.monotonic()))
        start = time.monotonic()
        timer.arm(start + 0.1)
        await asyncio.sleep(0.3)
        assert len(fired) == 1 and fired[0] >= start + 0.1
        timer.arm(time.monotonic() + 0.05)  # the same fd, again
        await asyncio.sleep(0.2)
        assert len(fired) == 2
        timer.arm(time.monotonic() + 0.05)
        timer.arm(0)  # disarmed: it stays quiet
        await asyncio.sleep(0.15)
        fd = timer._fd
        timer.close()
        timer.close()  # idempotent
        assert not is_open(fd)
        return fired

    run(main())


@pytest.mark.skipif(not _deadlines._HAVE_TIMER_FD, reason="no timerfd (pure-Python build)")
def test_timer_fd_of_a_closed_loop_is_closed_when_collected() -> None:
    async def main() -> int:
        timer = TimerFD(asyncio.get_running_loop(), lambda: None)
        timer.arm(time.monotonic() + 60)  # armed when the loop ends
        return timer._fd

    fd = run(main())
    gc.collect()
    assert not is_open(fd)


class ClockLoop(asyncio.SelectorEventLoop):
    """A selector loop with a clock of its own (as uvloop has): no timerfd for it."""

    def time(self) -> float:
        return time.monotonic() + 1000.0


@pytest.mark.parametrize("loop_kind", ["selector", "own clock"])
def test_deadline_wake_up_kind_and_timeouts(loop_kind: str) -> None:
    """A stalled connection is timed out ``timeout`` after it came, never before, with a
    timerfd on asyncio's selector loop (compiled module, Linux) and asyncio's timer on a
    loop with its own clock; the wake-up is dropped once nothing waits."""
    timeout = 0.2

    async def main() -> None:
        loop = asyncio.get_running_loop()
        factory = aio.wrap_protocol_factory(asyncio.Protocol, trusted=["127.0.0.0/8"],
                                            timeout=timeout)
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            start = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            deadlines = factory._config._deadlines
            for _ in range(100):
                deadlines = factory._config._deadlines
                if deadlines is not None and deadlines.waiting:
                    break
                await asyncio.sleep(0.01)
            assert isinstance(deadlines, HeaderDeadlines)
            uses_fd = loop_kind == "selector" and _deadlines._HAVE_TIMER_FD
            assert deadlines._use_fd is uses_fd
            assert isinstance(deadlines._timer, TimerFD if uses_fd else asyncio.TimerHandle)
            assert await reader.read() == b""  # closed by the server at its deadline
            assert loop.time() - start >= timeout
            writer.close()
            for _ in range(100):  # the sweep that timed it out found nothing else waiting
                if deadlines._timer is None:
                    break
                await asyncio.sleep(0.01)
            assert deadlines._timer is None and not deadlines.waiting
            assert factory.stats.refused == {"timeout": 1}
        finally:
            server.close()
            await server.wait_closed()

    if loop_kind == "selector":
        run(main())
    else:
        loop = ClockLoop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
