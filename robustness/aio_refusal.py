"""What a refused connection costs a proxyproto.aio server, and what a header-timeout
flood holds. Loopback only, bounded in count and time.

A plain ``asyncio.start_server`` that closes every connection at once gives the
baseline. The server runs in a child process (so its CPU time and memory are its own, read from
/proc); this process plays the clients:

1. cost: N connections of each kind, a few at a time: untrusted peers (closed before
   reading), trusted peers sending garbage, trusted peers sending nothing then EOF, and,
   for comparison, accepted connections (a v2 header and one request/response). Reports
   server CPU microseconds per connection and connections per second.
2. flood: F connections from a trusted peer that send half a header and stall. Reports
   how many the server held at once (its ``pending`` gauge), its memory per held
   connection, whether a legitimate client was still served during the flood (and how
   fast), and that every stalled connection was dropped at the deadline.

Usage: python3 robustness/aio_refusal.py [--count 2000] [--flood 5000] [--timeout 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

TRUSTED = "127.0.0.2"
UNTRUSTED = "127.0.0.3"
HEADER = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
          b"\xc0\x00\x02\x0a\xc6\x33\x64\x14\x9c\x40\x01\xbb")  # v2 TCP4 192.0.2.10 -> ...

SERVER = r"""
import asyncio, json, sys
import proxyproto.aio as aio

async def main():
    async def cb(reader, writer):
        try:
            await reader.readexactly(4)
            writer.write(b"pong")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    if sys.argv[3] == "plain":  # baseline: asyncio alone, closing every connection at once
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                            backlog=4096)
        server.proxy_stats = aio.ProxyStats()
    else:
        server = await aio.start_server(cb, "127.0.0.1", 0, trusted=[sys.argv[1]],
                                        timeout=float(sys.argv[2]), backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps(server.proxy_stats.as_dict()), flush=True)
    server.close()

asyncio.run(main())
"""


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    return cpu, rss


class Server:
    def __init__(self, timeout: float, mode: str = "proxy") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, TRUSTED, str(timeout), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def usage(self) -> tuple[float, int]:
        return proc_usage(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def connect(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.bind((source, 0))
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def one(kind: str, port: int) -> bool:
    """One client connection of a kind; True when it was served."""
    loop = asyncio.get_running_loop()
    sock = await connect(UNTRUSTED if kind == "untrusted" else TRUSTED, port)
    try:
        if kind == "garbage":
            await loop.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
        elif kind == "eof":
            sock.shutdown(socket.SHUT_WR)
        elif kind == "accepted":
            await loop.sock_sendall(sock, HEADER + b"ping")
        try:
            answer = await asyncio.wait_for(loop.sock_recv(sock, 16), 10)
        except ConnectionError:
            answer = b""
        return answer == b"pong"
    finally:
        sock.close()


async def cost(server: Server, kind: str, count: int, concurrency: int = 16) -> dict[str, Any]:
    served = 0

    async def worker(share: int) -> None:
        nonlocal served
        for _ in range(share):
            ok = await one(kind, server.port)  # not "served += await ...": that races
            served += ok

    cpu0, _ = server.usage()
    start = time.perf_counter()
    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.2)  # let the server finish closing
    cpu1, rss = server.usage()
    done = count // concurrency * concurrency
    return {"kind": kind, "connections": done, "served": served,
            "server_cpu_us_per_conn": round((cpu1 - cpu0) / done * 1e6, 1),
            "conn_per_s": round(done / elapsed), "server_rss_mib": round(rss / 2**20, 1)}


async def flood(server: Server, count: int, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, rss0 = server.usage()
    before = server.stats()
    socks: list[socket.socket] = []
    start = time.perf_counter()
    try:
        for first in range(0, count, 200):  # open in batches, each sends half a header
            batch = await asyncio.gather(
                *(connect(TRUSTED, server.port) for _ in range(min(200, count - first))),
                return_exceptions=True)
            for sock in batch:
                if isinstance(sock, socket.socket):
                    socks.append(sock)
                    await loop.sock_sendall(sock, HEADER[:10])
            if time.perf_counter() - start > timeout * 0.6:
                break  # keep the whole flood inside one deadline
        opened = time.perf_counter() - start
        await asyncio.sleep(0.3)
        held = server.stats()["pending"]
        _, rss1 = server.usage()
        legit_start = time.perf_counter()
        legit = await one("accepted", server.port)
        legit_ms = (time.perf_counter() - legit_start) * 1000
        # wait until the last stalled connection is past its deadline, plus a margin
        await asyncio.sleep(max(0.0, start + opened + timeout - time.perf_counter()) + 1.5)
        after = server.stats()
    finally:
        for sock in socks:
            sock.close()
    timeouts = after["refused"].get("timeout", 0) - before["refused"].get("timeout", 0)
    return {"flood_connections_opened": len(socks), "open_seconds": round(opened, 2),
            "held_pending_at_peak": held,
            "server_rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
            "rss_per_held_conn_bytes": round((rss1 - rss0) / max(held, 1)),
            "legit_client_served_during_flood": legit, "legit_latency_ms": round(legit_ms, 1),
            "dropped_at_deadline": timeouts, "pending_after_deadline": after["pending"]}


async def main(args: argparse.Namespace) -> None:
    plain = Server(args.timeout, "plain")
    try:
        await one("plain", plain.port)  # warm-up
        result = await cost(plain, "plain", args.count)
        result["kind"] = "baseline: plain asyncio server closing at once"
        print(json.dumps(result), flush=True)
    finally:
        plain.stop()
    server = Server(args.timeout)
    try:
        await one("accepted", server.port)  # warm-up
        for kind in ("untrusted", "garbage", "eof", "accepted"):
            print(json.dumps(await cost(server, kind, args.count)), flush=True)
        print(json.dumps(await flood(server, args.flood, args.timeout)), flush=True)
        print(json.dumps({"final_stats": server.stats()}), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="connections per kind")
    parser.add_argument("--flood", type=int, default=5000, help="stalled connections")
    parser.add_argument("--timeout", type=float, default=5.0, help="server header timeout (s)")
    arguments = parser.parse_args()
    if not (1 <= arguments.count <= 100_000 and 1 <= arguments.flood <= 15_000):
        parser.error("--count must be 1..100000 and --flood 1..15000")
    asyncio.run(main(arguments))
