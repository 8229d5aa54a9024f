"""Time proxyproto's two implementations and the ``proxy-protocol`` package in one run.

    python3 benchmarks/bench.py              # the full table (about a minute)
    python3 benchmarks/bench.py --quick      # fewer, shorter rounds (a smoke test)
    python3 benchmarks/bench.py --json out.json --markdown

Method: one ``timeit.Timer`` per (case, implementation), calibrated so that one sample
takes ``--sample-ms``; one warm-up round, then ``--rounds`` rounds in which every timer
runs once, in a fresh random order each round, so that load from other processes spreads
over all columns alike. The garbage collector is off while a sample runs (``timeit``'s
default). Reported: the median and the minimum over the rounds, in ns per call, loop
overhead included (measured and printed: about 10-20 ns). Ratios are of medians.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import timeit
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import Case, build_cases, check_cases

IMPLS = ("cython", "python", "proxy-protocol")


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    info = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for name in ("Cython", "proxy-protocol", "crc32c"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = "not installed"
    if info["crc32c"] == "not installed":
        info["crc32c"] += " (so proxy-protocol neither checks nor writes CRC32C)"
    return info


def load_impls() -> dict[str, Any]:
    impls = {"python": importlib.import_module("proxyproto._fallback")}
    try:
        impls = {"cython": importlib.import_module("proxyproto._fast"), **impls}
    except ImportError:
        print("!! proxyproto._fast is not built: the cython column is missing", file=sys.stderr)
    return impls


def calibrate(timer: timeit.Timer, sample_s: float) -> int:
    """Loops per sample so that one sample lasts about ``sample_s`` seconds."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= sample_s / 10:
            return max(1, int(number * sample_s / elapsed))
        number *= 10


def run(
    cases: list[Case], rounds: int, sample_s: float, seed: int
) -> dict[tuple[str, str], list[float]]:
    timers: dict[tuple[str, str], tuple[timeit.Timer, int]] = {}
    for case in cases:
        for impl, (stmt, namespace) in case.statements.items():
            timer = timeit.Timer(stmt, globals=dict(namespace))
            timers[(case.name, impl)] = (timer, calibrate(timer, sample_s))
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    order = list(timers)
    rng = random.Random(seed)
    for round_no in range(rounds + 1):  # round 0 warms up and is dropped
        rng.shuffle(order)
        for key in order:
            timer, number = timers[key]
            elapsed = timer.timeit(number)
            if round_no:
                samples[key].append(elapsed / number * 1e9)
        print(f"\rround {round_no}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return samples


def loop_overhead(sample_s: float, rounds: int) -> float:
    timer = timeit.Timer("f", globals={"f": len})
    number = calibrate(timer, sample_s)
    return statistics.median(timer.timeit(number) / number * 1e9 for _ in range(rounds))


def fmt_ns(values: Optional[list[float]]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f})"


def ratio(a: Optional[list[float]], b: Optional[list[float]]) -> str:
    if not a or not b:
        return "—"
    return f"{statistics.median(a) / statistics.median(b):.1f}x"


def table(
    cases: list[Case], samples: dict[tuple[str, str], list[float]], markdown: bool, rst: bool
) -> str:
    header = ["case", "bytes", "Cython ns", "Python ns", "proxy-protocol ns",
              "Python/Cython", "peer/Cython", "peer/Python"]
    rows = []
    for case in cases:
        cy, py, peer = (samples.get((case.name, impl)) for impl in IMPLS)
        name = case.name + (" *" if case.note else "")
        rows.append([name, str(case.size or ""), fmt_ns(cy), fmt_ns(py), fmt_ns(peer),
                     ratio(py, cy), ratio(peer, cy), ratio(peer, py)])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    elif rst:
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
    notes = [f"* {case.name}: {case.note}" for case in cases if case.note]
    return "\n".join([*lines, "", *notes])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of samples (15)")
    parser.add_argument("--sample-ms", type=float, default=40.0, help="ms per sample (40)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 10 ms samples")
    parser.add_argument("--case", action="append", help="only cases whose name contains this")
    parser.add_argument("--json", metavar="PATH", help="also write every sample to PATH")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--rst", action="store_true", help="print a reStructuredText table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.sample_ms = 3, 10.0

    impls = load_impls()
    cases = build_cases(impls)
    if args.case:
        cases = [c for c in cases if any(part in c.name for part in args.case)]
    check_cases(cases)
    info = machine()
    gc.collect()
    sample_s = args.sample_ms / 1000
    overhead = loop_overhead(sample_s, 5)
    samples = run(cases, args.rounds, sample_s, args.seed)
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["loop overhead per call"] = f"{overhead:.0f} ns (included in every figure)"
    info["method"] = (f"{args.rounds} rounds x {args.sample_ms:g} ms samples; "
                      "median (minimum) ns per call")
    for key, value in info.items():
        print(f"{key}: {value}")
    print()
    print(table(cases, samples, args.markdown, args.rst))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info,
                       "samples_ns": {f"{c} | {i}": v for (c, i), v in samples.items()}},
                      out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
