"""What a refused connection costs a ``socketserver`` server with ProxyProtocolMixIn.

The server (``ThreadingTCPServer`` + the mix-in, trusting 127.0.0.2) runs in a child
process; this process opens connections on loopback one after another, each waiting
for the server to close it, for a fixed time per case, and prints connections per
second. Cases:

* ``untrusted``: a peer outside the trusted networks, closed in ``verify_request``
  before any byte is read (no handler thread is started);
* ``no_header``: a trusted peer that sends ``GET /`` under ``REQUIRE`` (a thread, a peek,
  the refusal);
* ``invalid``: a trusted peer that sends a malformed v1 line;
* ``accepted``: the baseline, a valid v1 header and a one-byte answer from the handler.

Then, in this process, the PROXY part alone: ``read_header`` refusing bytes that wait on
a socketpair (nothing is consumed when they cannot be a header, so the same bytes serve
every call): one peek and one parse, no thread, no connection set-up.

Usage: ``python3 robustness/blocking_refusal.py [--seconds 2] [--case untrusted ...]``.
Bounded: each case runs ``--seconds`` (default 2) and at most ``--max`` connections.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import socket
import socketserver
import struct
import time
from typing import Any

from proxyproto import IMPLEMENTATION, ProxyProtocolError, blocking, encode_v1

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.3"
CASES = {
    "untrusted": (UNTRUSTED, b"GET / HTTP/1.0\r\n\r\n"),
    "no_header": (TRUSTED, b"GET / HTTP/1.0\r\n\r\n"),
    "invalid": (TRUSTED, b"PROXY TCP4 192.0.2.1 198.51.100.1 1234\r\n"),
    "accepted": (TRUSTED, encode_v1(("192.0.2.1", 1234), ("198.51.100.1", 443)) + b"x"),
}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1)
        self.request.sendall(b"k")


class Server(blocking.ProxyProtocolMixIn, socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def serve(ready: Any, stop: Any, results: Any) -> None:
    server = Server(("127.0.0.1", 0), Handler, trusted=[TRUSTED], header_timeout=5.0)
    ready.send(server.server_address[1])
    with contextlib.suppress(KeyboardInterrupt):
        server.timeout = 0.05
        while not stop.poll():
            server.handle_request()
    results.send(server.proxy_stats.as_dict())
    server.server_close()


def one(port: int, source: str, data: bytes) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.recv(16)  # the answer, or EOF/RST once the server refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case (default 2)")
    parser.add_argument("--max", type=int, default=20000, help="connections per case at most")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="run only these cases (repeatable)")
    args = parser.parse_args()
    ready_r, ready_w = multiprocessing.Pipe(duplex=False)
    stop_r, stop_w = multiprocessing.Pipe(duplex=False)
    results_r, results_w = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=serve, args=(ready_w, stop_r, results_w))
    child.start()
    try:
        port = ready_r.recv()
        print(f"proxyproto {IMPLEMENTATION}; ThreadingTCPServer + ProxyProtocolMixIn on "
              f"loopback; one client at a time, {args.seconds:g} s per case")
        for name in args.case or list(CASES):
            source, data = CASES[name]
            for _ in range(20):  # warm up
                one(port, source, data)
            count, start = 0, time.perf_counter()
            end = start + args.seconds
            while count < args.max and time.perf_counter() < end:
                one(port, source, data)
                count += 1
            elapsed = time.perf_counter() - start
            print(f"  {name:10s} {count / elapsed:8.0f} connections/s "
                  f"({elapsed / count * 1e6:6.0f} us each, {count} connections)")
    finally:
        stop_w.send(True)
        stats = results_r.recv() if results_r.poll(10) else None
        child.join(10)
    print(f"server stats: {stats}")
    print("read_header alone, refusing bytes already received (socketpair):")
    for name in ("no_header", "invalid"):
        a, b = socket.socketpair()
        with a, b:
            b.sendall(CASES[name][1])
            count, start = 0, time.perf_counter()
            while count < 200_000 and time.perf_counter() - start < args.seconds:
                with contextlib.suppress(ProxyProtocolError):
                    blocking.read_header(a, timeout=5)
                count += 1
            elapsed = time.perf_counter() - start
        print(f"  {name:10s} {elapsed / count * 1e6:8.1f} us each ({count} calls)")


if __name__ == "__main__":
    main()
