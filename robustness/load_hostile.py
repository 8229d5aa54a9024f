#!/usr/bin/env python3
"""Hostile clients against the asyncio server, the protocol wrapper and the blocking mix-in.

One server (``--api streams``: :func:`proxyproto.aio.start_server`; ``protocol``:
:func:`proxyproto.aio.create_server` around a plain ``asyncio.Protocol``; ``blocking``:
:class:`proxyproto.blocking.ProxyProtocolMixIn` on a ``socketserver.ThreadingTCPServer``)
listens on 127.0.0.1 and trusts 127.0.0.2. While a legitimate client (from 127.0.0.2,
with a v2 header naming 203.0.113.7) keeps connecting and asking ``ping``, these attack it
at the same time:

========== ==============================================================================
silent     connections from the trusted address that never send a byte (CVE-2021-23409)
loris      a valid v1 header, one byte per ``--loris-interval`` seconds, never finished
short_v1   a whole v1 line but its final LF, then silence
short_v2   a v2 header with TLVs but its last byte, then silence
oversize   a v2 header announcing 65535 bytes of TLVs (over the 4096-byte cap)
endless    ``PROXY UNKNOWN`` followed by 64 KiB without a CRLF (CVE-2021-23351)
truncated  a v2 INET header whose length stops inside the address block (CVE-2019-14243)
reset      half a header, then a TCP reset
spoof      an untrusted peer (127.0.0.3) sending a valid header that names 10.0.0.1
========== ==============================================================================

Afterwards it checks that every legitimate request was answered (and how fast), that
every hostile connection was closed (and when: at the header timeout, or at once when the
bytes already condemn it), that no hostile connection reached the application, and that
the server holds nothing: no pending connection, no file descriptor, no task, no thread,
no PROXY-layer object, and no traced memory beyond a small allowance.

Usage::

    python3 robustness/load_hostile.py                   # the documented run, all APIs
    python3 robustness/load_hostile.py --quick           # a few seconds each (CI)
    python3 robustness/load_hostile.py --api streams --silent 2000 --json out.json

``tests/test_hostile.py`` runs :func:`attack` with short settings and asserts on the
:class:`Report`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import socket
import socketserver
import statistics
import struct
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Optional

import proxyproto
from proxyproto import aio, blocking

SERVER_HOST = "127.0.0.1"
TRUSTED = "127.0.0.2"
UNTRUSTED = "127.0.0.3"
CLAIMED = ("203.0.113.7", 40000)  # what the legitimate client's header says
SPOOFED = ("10.0.0.1", 1234)  # what the spoofer's header says

V1_HEADER = proxyproto.encode_v1(("192.0.2.1", 51000), ("198.51.100.2", 443))
V2_TLVS = proxyproto.encode_v2(("192.0.2.1", 51000), ("198.51.100.2", 443),
                               tlvs=[(0x01, b"h2"), (0x02, b"example.com")], crc32c=True)
SIG = proxyproto.V2_SIGNATURE


@dataclass
class Settings:
    """How hard and how long to attack."""

    api: str = "streams"
    header_timeout: float = 3.0
    duration: float = 10.0
    valid_interval: float = 0.05
    loris_interval: float = 1.0
    silent: int = 500
    loris: int = 50
    short_v1: int = 50
    short_v2: int = 50
    oversize: int = 50
    endless: int = 50
    truncated: int = 50
    reset: int = 50
    spoof: int = 50
    valid_wait: float = 10.0  # the most a legitimate request may take before it fails

    def hostile_counts(self) -> dict[str, int]:
        """How many connections of each hostile kind."""
        return {kind: getattr(self, kind) for kind in HOSTILE_KINDS}


HOSTILE_KINDS = ("silent", "loris", "short_v1", "short_v2", "oversize", "endless",
                 "truncated", "reset", "spoof")
#: The refusal reason (ProxyStats) each kind must produce.
EXPECTED_REASON = {"silent": "timeout", "loris": "timeout", "short_v1": "timeout",
                   "short_v2": "timeout", "oversize": "too_large", "endless": "too_large",
                   "truncated": "invalid", "reset": "eof", "spoof": "untrusted"}
#: Kinds whose first bytes already condemn them: closed without waiting for the timeout.
IMMEDIATE = ("oversize", "endless", "truncated", "spoof")


@dataclass
class HostileResult:
    """What one hostile connection saw."""

    kind: str
    # seconds from the client's connect() call to the server's close (None: still open);
    # with thousands of clients in one process this includes the client's own delays
    closed_after: Optional[float]
    answered: bytes = b""  # anything the server sent back (must stay empty)
    bytes_sent: int = 0


@dataclass
class Report:
    """Everything measured in one attack."""

    api: str
    settings: dict[str, Any]
    valid_ok: int = 0
    valid_failed: list[str] = field(default_factory=list)
    valid_latency_ms: dict[str, float] = field(default_factory=dict)
    hostile: dict[str, dict[str, Any]] = field(default_factory=dict)
    hostile_still_open: int = 0
    hostile_answered: int = 0
    hostile_served: int = 0  # hostile connections that reached the application
    refused: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    pending_after: int = -1
    fds_before: int = 0
    fds_after: int = 0
    tasks_leaked: list[str] = field(default_factory=list)
    threads_before: int = 0
    threads_after: int = 0
    layers_alive: int = 0
    traced_growth_kib: float = 0.0  # the whole process: mostly asyncio's high-water tables
    proxyproto_growth_bytes: int = 0  # allocated by proxyproto's code and still held
    peak_pending: int = 0
    served_after_attack: bool = False
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """What went wrong (empty: the server came through unharmed)."""
        found = []
        if self.valid_failed:
            found.append(f"{len(self.valid_failed)} legitimate requests failed: "
                         f"{self.valid_failed[:3]}")
        if self.valid_ok == 0:
            found.append("no legitimate request was answered")
        if not self.served_after_attack:
            found.append("the server did not answer after the attack")
        if self.hostile_still_open:
            found.append(f"{self.hostile_still_open} hostile connections were never closed")
        if self.hostile_answered or self.hostile_served:
            found.append(f"hostile connections were answered ({self.hostile_answered}) or "
                         f"served ({self.hostile_served})")
        for kind, data in self.hostile.items():
            # a connection reset before the server accepted it has no peer address any
            # more: it may be counted as 'untrusted' rather than 'eof', or not at all
            if kind == "reset":
                continue
            reason = EXPECTED_REASON[kind]
            if self.refused.get(reason, 0) < data["count"]:
                found.append(f"{kind}: expected {data['count']} refusals '{reason}', "
                             f"counted {self.refused.get(reason, 0)}")
        hostile = sum(data["count"] for data in self.hostile.values())
        resets = self.hostile.get("reset", {}).get("count", 0)
        if not hostile - resets <= sum(self.refused.values()) <= hostile:
            found.append(f"{sum(self.refused.values())} refusals for {hostile} hostile "
                         f"connections")
        if self.pending_after != 0:
            found.append(f"{self.pending_after} connections still pending")
        if self.fds_after > self.fds_before:
            found.append(f"file descriptors leaked: {self.fds_before} -> {self.fds_after}")
        if self.tasks_leaked:
            found.append(f"tasks leaked: {self.tasks_leaked[:3]}")
        if self.threads_after > self.threads_before:
            found.append(f"threads leaked: {self.threads_before} -> {self.threads_after}")
        if self.layers_alive:
            found.append(f"{self.layers_alive} PROXY-layer objects still alive")
        if self.proxyproto_growth_bytes > 4096:
            found.append(f"proxyproto code still holds {self.proxyproto_growth_bytes} B more")
        return found


def open_fds() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def percentiles(values: list[float]) -> dict[str, float]:
    """min / p50 / p99 / max of a list of seconds, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"count": len(ordered), "min": round(ordered[0] * 1e3, 2),
            "p50": round(statistics.median(ordered) * 1e3, 2), "p99": round(pick(0.99) * 1e3, 2),
            "max": round(ordered[-1] * 1e3, 2)}


# ---------------------------------------------------------------------------------------
# The servers under attack


class _Pong(asyncio.Protocol):
    """The protocol-flavoured application: answers ``ping`` with ``pong <peer host>``."""

    served: ClassVar[list[Any]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        _Pong.served.append(self.peer)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer.startswith(b"ping"):
            self.transport.write(b"pong " + str(self.peer[0]).encode())
            self.transport.close()


class _PongHandler(socketserver.BaseRequestHandler):
    """The blocking application: the same ``ping``/``pong`` exchange."""

    served: ClassVar[list[Any]] = []

    def handle(self) -> None:
        _PongHandler.served.append(self.client_address)
        self.request.settimeout(5)
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < 4:
                chunk = self.request.recv(4 - len(data))
                if not chunk:
                    return
                data += chunk
            self.request.sendall(b"pong " + str(self.client_address[0]).encode())


class _BlockingServer(blocking.ProxyProtocolMixIn, socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread: leaks would hang
    allow_reuse_address = True
    request_queue_size = 1024


class Server:
    """Start/stop one of the three servers; ``served`` lists the peers the app saw."""

    def __init__(self, api: str, header_timeout: float) -> None:
        self.api = api
        self.header_timeout = header_timeout
        self.port = 0
        self._aio: Optional[asyncio.AbstractServer] = None
        self._blocking: Optional[_BlockingServer] = None
        self._thread: Optional[threading.Thread] = None
        self.served: list[Any] = []

    async def start(self) -> None:
        """Listen on 127.0.0.1, an ephemeral port."""
        trusted = [TRUSTED]
        if self.api == "streams":
            async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                               ) -> None:
                peer = writer.get_extra_info("peername")
                self.served.append(peer)
                try:
                    if await reader.readexactly(4) == b"ping":
                        writer.write(b"pong " + str(peer[0]).encode())
                        await writer.drain()
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()
            self._aio = await aio.start_server(callback, SERVER_HOST, 0, trusted=trusted,
                                               timeout=self.header_timeout, backlog=2048)
        elif self.api == "protocol":
            _Pong.served = self.served
            self._aio = await aio.create_server(_Pong, SERVER_HOST, 0, trusted=trusted,
                                                timeout=self.header_timeout, backlog=2048)
        elif self.api == "blocking":
            _PongHandler.served = self.served
            self._blocking = _BlockingServer((SERVER_HOST, 0), _PongHandler, trusted=trusted,
                                             header_timeout=self.header_timeout)
            self._thread = threading.Thread(target=self._blocking.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        else:
            raise ValueError(f"unknown api {self.api!r}")
        sockets = self._aio.sockets if self._aio is not None else [self._blocking.socket]  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]

    @property
    def stats(self) -> proxyproto.aio.ProxyStats:
        """The server's counters."""
        if self._aio is not None:
            return self._aio.proxy_stats  # type: ignore[attr-defined, no-any-return]
        assert self._blocking is not None
        return self._blocking.proxy_stats

    async def stop(self) -> None:
        """Close the listener (and, for the blocking server, join every thread)."""
        if self._aio is not None:
            self._aio.close()
            await self._aio.wait_closed()
        if self._blocking is not None:
            def shutdown() -> None:
                assert self._blocking is not None and self._thread is not None
                self._blocking.shutdown()
                self._blocking.server_close()
                self._thread.join(10)
            # not run_in_executor: its pool thread would outlive the check for leaked threads
            closer = threading.Thread(target=shutdown)
            closer.start()
            for _ in range(600):
                if not closer.is_alive():
                    break
                await asyncio.sleep(0.02)
            closer.join(1)


# ---------------------------------------------------------------------------------------
# Clients


async def connect(source: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to ``source`` and connected to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (SERVER_HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def wait_closed(sock: socket.socket, limit: float) -> tuple[bool, bytes]:
    """Read until the server closes (EOF or reset); ``(closed, what it sent)``."""
    loop = asyncio.get_running_loop()
    received = b""

    async def drain() -> None:
        nonlocal received
        while True:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                return
            received += chunk

    try:
        await asyncio.wait_for(drain(), limit)
    except asyncio.TimeoutError:  # before OSError: since 3.11 it is the builtin TimeoutError
        return False, received
    except OSError:  # reset by the server
        return True, received
    return True, received


async def valid_request(port: int) -> tuple[float, str]:
    """One legitimate connection: header, ``ping``, expect ``pong 203.0.113.7``."""
    started = time.perf_counter()
    sock = await connect(TRUSTED, port)
    loop = asyncio.get_running_loop()
    try:
        header = proxyproto.encode_v2(CLAIMED, ("198.51.100.2", 443))
        await loop.sock_sendall(sock, header + b"ping")
        closed, answer = await wait_closed(sock, 30)
    finally:
        sock.close()
    expected = b"pong " + CLAIMED[0].encode()
    if answer != expected:
        return time.perf_counter() - started, f"answer {answer!r} (closed={closed})"
    return time.perf_counter() - started, ""


async def hostile(kind: str, port: int, settings: Settings) -> HostileResult:
    """One hostile connection of ``kind``; returns when the server closed it."""
    loop = asyncio.get_running_loop()
    source = UNTRUSTED if kind == "spoof" else TRUSTED
    started = time.perf_counter()
    sock = await connect(source, port)
    limit = settings.header_timeout + 5.0
    sent = 0
    try:
        if kind == "silent":
            pass
        elif kind == "loris":
            # one byte at a time; the deadline covers the whole header, so this never ends
            for byte in V1_HEADER[:-1]:
                try:
                    await loop.sock_sendall(sock, bytes((byte,)))
                except OSError:
                    break
                sent += 1
                closed, answer = await wait_closed(sock, settings.loris_interval)
                if closed:
                    return HostileResult(kind, time.perf_counter() - started, answer, sent)
        elif kind == "reset":
            await loop.sock_sendall(sock, V2_TLVS[: len(V2_TLVS) // 2])
            await asyncio.sleep(settings.header_timeout / 5)  # mid-header, once accepted
            reset(sock)
            return HostileResult(kind, 0.0, b"", len(V2_TLVS) // 2)
        else:
            payload = {
                "short_v1": V1_HEADER[:-1],
                "short_v2": V2_TLVS[:-1],
                "oversize": SIG + b"\x21\x11\xff\xff" + bytes(12) + b"\x04\xff\xf0" + bytes(200),
                "endless": b"PROXY UNKNOWN " + b"x" * 65536,
                "truncated": SIG + b"\x21\x11\x00\x08" + bytes(8) + b"ping",
                "spoof": proxyproto.encode_v2(SPOOFED, ("198.51.100.2", 443)) + b"ping",
            }[kind]
            with contextlib.suppress(OSError):  # the server may close before it all went
                await asyncio.wait_for(loop.sock_sendall(sock, payload), limit)
                sent = len(payload)
        closed, answer = await wait_closed(sock, limit)
        return HostileResult(kind, time.perf_counter() - started if closed else None, answer,
                             sent)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------
# The attack


def _proxyproto_bytes() -> int:
    """Traced memory still allocated by proxyproto's own code (allocation site in it)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, f"{os.path.dirname(proxyproto.__file__)}{os.sep}*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _alive_layers() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, (aio.ProxyProtocolLayer, proxyproto.HeaderReader)))


async def attack(settings: Settings) -> Report:
    """Run one attack against ``settings.api``; return what was measured."""
    report = Report(settings.api, asdict(settings))
    started = time.perf_counter()
    gc.collect()
    report.fds_before = open_fds()
    report.threads_before = threading.active_count()
    tasks_before = set(asyncio.all_tasks())
    tracemalloc.start(1)
    server = Server(settings.api, settings.header_timeout)
    await server.start()
    # warm up: one request, so lazily built caches do not count as growth
    await valid_request(server.port)
    server.served.clear()
    gc.collect()
    traced_before = tracemalloc.get_traced_memory()[0]
    ours_before = _proxyproto_bytes()

    stop = asyncio.Event()
    latencies: list[float] = []
    peak = 0

    async def legitimate() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                elapsed, problem = await asyncio.wait_for(valid_request(server.port),
                                                          settings.valid_wait)
            except (asyncio.TimeoutError, OSError) as exc:
                report.valid_failed.append(f"{type(exc).__name__}: {exc}")
            else:
                if problem:
                    report.valid_failed.append(problem)
                else:
                    latencies.append(elapsed)
            peak = max(peak, server.stats.pending)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.valid_interval)

    async def launch(kind: str, count: int) -> list[HostileResult]:
        async def guarded() -> HostileResult:
            try:
                return await hostile(kind, server.port, settings)
            except OSError as exc:  # e.g. a connect refused: report, do not crash
                return HostileResult(kind, None, repr(exc).encode())
        return list(await asyncio.gather(*(guarded() for _ in range(count))))

    legit = asyncio.create_task(legitimate())
    attackers = [asyncio.create_task(launch(kind, count))
                 for kind, count in settings.hostile_counts().items() if count]
    await asyncio.sleep(settings.duration)
    results: list[HostileResult] = []
    for batch in await asyncio.gather(*attackers):
        results.extend(batch)
    stop.set()
    await legit

    report.valid_ok = len(latencies)
    report.valid_latency_ms = percentiles(latencies)
    report.peak_pending = peak
    by_kind: dict[str, list[HostileResult]] = {}
    for result in results:
        by_kind.setdefault(result.kind, []).append(result)
    for kind, items in by_kind.items():
        closed = [r.closed_after for r in items if r.closed_after is not None]
        report.hostile[kind] = {
            "count": len(items),
            "closed": len(closed),
            "closed_after_s": ({"min": round(min(closed), 3),
                                "max": round(max(closed), 3)} if closed else {}),
            "bytes_sent_max": max(r.bytes_sent for r in items),
        }
        report.hostile_still_open += len(items) - len(closed)
        report.hostile_answered += sum(1 for r in items if r.answered)
    report.hostile_served = sum(1 for peer in server.served if peer[0] != CLAIMED[0])

    _, problem = await valid_request(server.port)
    report.served_after_attack = not problem
    stats = server.stats
    report.refused = dict(stats.refused)
    report.accepted = stats.accepted
    report.pending_after = stats.pending
    await server.stop()
    server.served.clear()
    del results, by_kind, attackers, legit  # our own bookkeeping, not the server's
    await asyncio.sleep(0)
    gc.collect()
    report.traced_growth_kib = round((tracemalloc.get_traced_memory()[0] - traced_before)
                                     / 1024, 1)
    report.proxyproto_growth_bytes = _proxyproto_bytes() - ours_before
    tracemalloc.stop()
    report.layers_alive = _alive_layers()
    # connections the server aborted may need a loop turn to close their sockets
    for _ in range(50):
        if open_fds() <= report.fds_before:
            break
        await asyncio.sleep(0.02)
    report.fds_after = open_fds()
    report.threads_after = threading.active_count()
    current = asyncio.current_task()
    report.tasks_leaked = [repr(task) for task in asyncio.all_tasks() - tasks_before
                           if task is not current]
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def quick_settings(api: str) -> Settings:
    """Short settings for CI and the unit tests (a few seconds)."""
    return Settings(api=api, header_timeout=0.5, duration=1.0, valid_interval=0.02,
                    loris_interval=0.1, silent=40, loris=5, short_v1=5, short_v2=5,
                    oversize=5, endless=3, truncated=5, reset=5, spoof=5)


def print_report(report: Report) -> None:
    """A readable summary."""
    print(f"== {report.api}: {report.seconds} s, header timeout "
          f"{report.settings['header_timeout']} s")
    print(f"   legitimate: {report.valid_ok} answered, {len(report.valid_failed)} failed, "
          f"latency ms {report.valid_latency_ms}")
    for kind, data in report.hostile.items():
        print(f"   {kind:<9} {data['closed']}/{data['count']} closed after "
              f"{data['closed_after_s']} s (refusal '{EXPECTED_REASON[kind]}')")
    print(f"   refused {report.refused}, accepted {report.accepted}, peak pending "
          f"{report.peak_pending}, pending after {report.pending_after}")
    print(f"   fds {report.fds_before} -> {report.fds_after}, threads {report.threads_before}"
          f" -> {report.threads_after}, tasks leaked {len(report.tasks_leaked)}, layers alive "
          f"{report.layers_alive}, traced memory {report.traced_growth_kib:+} KiB (allocated "
          f"by proxyproto and still held: {report.proxyproto_growth_bytes:+} B)")
    problems = report.problems()
    print("   " + ("PROBLEMS: " + "; ".join(problems) if problems else "OK"))


def main(argv: Optional[list[str]] = None) -> int:
    """Run the attacks; print and optionally save the reports; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", choices=("streams", "protocol", "blocking", "all"),
                        default="all")
    parser.add_argument("--quick", action="store_true", help="short settings (CI)")
    defaults = Settings()
    for name in ("header_timeout", "duration", "loris_interval", *HOSTILE_KINDS):
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(defaults, name)),
                            default=None)
    parser.add_argument("--json", help="write the reports to this file")
    args = parser.parse_args(argv)
    apis = ("streams", "protocol", "blocking") if args.api == "all" else (args.api,)
    reports = []
    print(f"proxyproto {proxyproto.__version__} ({proxyproto.IMPLEMENTATION}), "
          f"Python {sys.version.split()[0]}")
    for api in apis:
        settings = quick_settings(api) if args.quick else Settings(api=api)
        for name in ("header_timeout", "duration", "loris_interval", *HOSTILE_KINDS):
            if getattr(args, name) is not None:
                setattr(settings, name, getattr(args, name))
        limit = settings.duration + settings.header_timeout * 2 + 60
        report = asyncio.run(asyncio.wait_for(attack(settings), limit))
        print_report(report)
        reports.append(report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(r) for r in reports], handle, indent=2)
    return 1 if any(r.problems() for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())

