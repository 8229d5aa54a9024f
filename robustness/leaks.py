#!/usr/bin/env python3
"""Leak check: parse and encode millions of times in each implementation; memory must stay flat.

For each implementation (``python``, and ``cython`` when built) the script runs a fixed
mix of operations in rounds: ``parse`` of valid v1/v2 headers of every shape, ``parse`` of
hostile inputs that raise (every error class, so exception paths are covered too),
``encode_v1``/``encode_v2`` (with TLVs and CRC32C, and with bad arguments that raise),
``ProxyHeader.to_bytes``, the typed accessors and a chunked :class:`HeaderReader`.

Two measurements per implementation:

* **RSS** (``/proc/self/statm``) at ten checkpoints over the whole run, tracemalloc off.
  The first checkpoint is taken after a warm-up, so caches and free lists are full.
* **tracemalloc**: the traced Python heap at the start and end of a shorter run, and the
  largest growth by allocation site if any.

Usage::

    python3 robustness/leaks.py                 # 2,000,000 operations per implementation
    python3 robustness/leaks.py --ops 200000    # a bounded CI run (a few seconds)
    python3 robustness/leaks.py --json out.json

Exits 1 when the RSS grows by more than ``--rss-limit-kib`` after the warm-up or the traced
heap by more than ``--traced-limit-kib``: a leak of even one small object per operation
would show as tens of MiB over a million operations.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Callable
from types import ModuleType
from typing import Any

import proxyproto
from proxyproto import HeaderReader, ProxyProtocolError

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """The resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def implementations() -> dict[str, ModuleType]:
    """The implementation modules available."""
    modules = {"python": importlib.import_module("proxyproto._fallback")}
    try:
        modules["cython"] = importlib.import_module("proxyproto._fast")
    except ImportError:
        print("(Cython extension not built: python only)", file=sys.stderr)
    return modules


def build_round(impl: ModuleType) -> tuple[list[Callable[[], Any]], int]:
    """The operations of one round, as closures; returns them and how many they count for."""
    parse, encode_v1, encode_v2 = impl.parse, impl.encode_v1, impl.encode_v2
    ssl = b"\x07\x00\x00\x00\x00" + b"\x21\x00\x07TLSv1.3" + b"\x22\x00\x0bexample.com"
    tlvs = [(0x01, b"h2"), (0x02, b"api.example.com"), (0x05, bytes(16)), (0x20, ssl),
            (0xEA, b"\x01vpce-08d2bf15fac5001c9")]
    valid = [
        encode_v1(("192.0.2.1", 51000), ("198.51.100.2", 443)) + b"GET / HTTP/1.1\r\n",
        encode_v1(("2001:db8::1", 51000), ("2001:db8::2", 443)),
        b"PROXY UNKNOWN\r\n",
        encode_v2(("192.0.2.1", 51000), ("198.51.100.2", 443)),
        encode_v2(("2001:db8::1", 51000), ("::ffff:192.0.2.9", 443), tlvs=tlvs, crc32c=True),
        encode_v2("/run/a.sock", b"\x00abstract", transport=socket.SOCK_DGRAM),
        encode_v2(None, None, crc32c=True),
    ]
    sig = proxyproto.V2_SIGNATURE
    hostile = [
        b"PROXY TCP4 " + b"1" * 200,  # HeaderTooLarge / InvalidHeader
        b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 1\r\n",
        b"PROXY TCP4 192.0.2.1 ",  # IncompleteHeader
        b"GET / HTTP/1.1\r\n",  # NoProxyHeader
        sig + b"\x21\x11\x00\x08" + bytes(8),  # truncated address block
        sig + b"\x21\x11\x00\x0f" + bytes(12) + b"\x01\x00\x09",  # TLV overrun
        valid[4][:-1] + bytes([valid[4][-1] ^ 1]),  # ChecksumMismatch
    ]
    bad_args: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (encode_v1, (("192.0.2.1", 70000), ("192.0.2.2", 1)), {}),
        (encode_v2, (("not an address", 1), ("192.0.2.2", 1)), {}),
        (encode_v2, (None, None), {"tlvs": [(0x05, bytes(200))]}),
    ]
    headers = [parse(data) for data in valid]

    def parse_op(data: bytes) -> Callable[[], Any]:
        return lambda: parse(data)

    def fail_op(data: bytes) -> Callable[[], Any]:
        def run() -> None:
            with contextlib.suppress(ProxyProtocolError):
                parse(data)
        return run

    def bad_encode_op(func: Callable[..., Any], args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Callable[[], Any]:
        def run() -> None:
            with contextlib.suppress(ValueError, TypeError):
                func(*args, **kwargs)
        return run

    def reader_op() -> None:
        reader = HeaderReader()
        data = valid[4] + b"payload"
        for start in range(0, len(data), 19):
            if reader.feed(data[start : start + 19]) is not None:
                break

    def accessors_op() -> None:
        header = headers[4]
        values = (header.alpn, header.authority, header.unique_id, header.ssl,
                  header.aws_vpce_id)
        assert values[0] == b"h2"
        header.to_bytes()

    ops: list[Callable[[], Any]] = [parse_op(data) for data in valid]
    ops += [fail_op(data) for data in hostile]
    ops += [bad_encode_op(*item) for item in bad_args]
    ops += [
        lambda: encode_v1(("192.0.2.1", 51000), ("198.51.100.2", 443)),
        lambda: encode_v2(("2001:db8::1", 51000), ("2001:db8::2", 443), tlvs=tlvs,
                          crc32c=True),
        lambda: encode_v2(None, None),
        reader_op,
        accessors_op,
    ]
    return ops, len(ops)


def run_rounds(ops: list[Callable[[], Any]], rounds: int) -> None:
    """Run every operation ``rounds`` times."""
    for _ in range(rounds):
        for op in ops:
            op()


_LEAKED: list[bytes] = []


def measure(name: str, impl: ModuleType, total_ops: int, traced_ops: int,
            inject_leak: bool = False) -> dict[str, Any]:
    """RSS over ``total_ops`` operations, then the traced heap over ``traced_ops``."""
    ops, per_round = build_round(impl)
    if inject_leak:  # proves the check can fail: keeps 64 bytes per round
        ops.append(lambda: _LEAKED.append(bytes(64)))
    rounds = max(10, total_ops // per_round)
    step = max(1, rounds // 10)
    run_rounds(ops, step)  # warm-up
    gc.collect()
    checkpoints = [rss_bytes()]
    started = time.perf_counter()
    for _ in range(10):
        run_rounds(ops, step)
        gc.collect()
        checkpoints.append(rss_bytes())
    elapsed = time.perf_counter() - started
    done_ops = 10 * step * per_round

    traced_rounds = max(10, traced_ops // per_round)
    tracemalloc.start(1)
    run_rounds(ops, max(1, traced_rounds // 10))  # warm-up under tracing
    gc.collect()
    before = tracemalloc.take_snapshot()
    traced_start = tracemalloc.get_traced_memory()[0]
    run_rounds(ops, traced_rounds)
    gc.collect()
    traced_end = tracemalloc.get_traced_memory()[0]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = [
        f"{stat.size_diff:+d} B in {stat.count_diff:+d} blocks at {stat.traceback[0]}"
        for stat in after.compare_to(before, "lineno")[:3]
        if stat.size_diff > 0
    ]
    return {
        "implementation": name,
        "operations": done_ops,
        "seconds": round(elapsed, 2),
        "ns_per_op": round(elapsed / done_ops * 1e9),
        "rss_start_kib": checkpoints[0] // 1024,
        "rss_end_kib": checkpoints[-1] // 1024,
        "rss_max_kib": max(checkpoints) // 1024,
        "rss_growth_kib": (checkpoints[-1] - checkpoints[0]) // 1024,
        "rss_checkpoints_kib": [c // 1024 for c in checkpoints],
        "traced_operations": traced_rounds * per_round,
        "traced_start_bytes": traced_start,
        "traced_growth_bytes": traced_end - traced_start,
        "traced_top_growth": top,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the leak check; print a table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2_000_000,
                        help="operations per implementation for the RSS run (default 2M)")
    parser.add_argument("--traced-ops", type=int, default=None,
                        help="operations under tracemalloc (default: ops / 10)")
    parser.add_argument("--rss-limit-kib", type=int, default=1024,
                        help="largest RSS growth allowed after the warm-up (default 1024)")
    parser.add_argument("--traced-limit-kib", type=int, default=64,
                        help="largest traced-heap growth allowed (default 64)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--inject-leak", action="store_true",
                        help="keep 64 bytes per round on purpose (the check must then fail)")
    args = parser.parse_args(argv)
    traced_ops = args.traced_ops if args.traced_ops is not None else max(1000, args.ops // 10)
    results = []
    failed = False
    print(f"proxyproto {proxyproto.__version__}, selected {proxyproto.IMPLEMENTATION}, "
          f"Python {sys.version.split()[0]}")
    print(f"{'impl':<8} {'ops':>10} {'ns/op':>7} {'RSS start':>10} {'RSS end':>9} "
          f"{'growth':>8} {'traced ops':>10} {'traced growth':>14}")
    for name, impl in implementations().items():
        result = measure(name, impl, args.ops, traced_ops, args.inject_leak)
        results.append(result)
        print(f"{name:<8} {result['operations']:>10,} {result['ns_per_op']:>7} "
              f"{result['rss_start_kib']:>7} KiB {result['rss_end_kib']:>5} KiB "
              f"{result['rss_growth_kib']:>+5} KiB {result['traced_operations']:>10,} "
              f"{result['traced_growth_bytes']:>+11} B")
        print(f"         RSS checkpoints (KiB): {result['rss_checkpoints_kib']}")
        for line in result["traced_top_growth"]:
            print(f"         traced growth: {line}")
        if result["rss_growth_kib"] > args.rss_limit_kib:
            print(f"FAIL: {name}: RSS grew by {result['rss_growth_kib']} KiB")
            failed = True
        if result["traced_growth_bytes"] > args.traced_limit_kib * 1024:
            print(f"FAIL: {name}: traced heap grew by {result['traced_growth_bytes']} B")
            failed = True
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    print("FAIL" if failed else "OK: memory stays flat")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
