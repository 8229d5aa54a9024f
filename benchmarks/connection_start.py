"""What the start of a connection costs the reader path: callgrind instructions and wall-clock.

    python3 benchmarks/connection_start.py                   # both implementations, ~3 min
    python3 benchmarks/connection_start.py --quick           # fewer repetitions (CI)
    python3 benchmarks/connection_start.py --no-callgrind    # wall-clock only
    python3 benchmarks/connection_start.py --rst             # a table for docs/benchmarks.rst

Each case is what an adapter does for one new connection, through the public readers only
(``PolicyReader(policy)``, ``feed``, ``done``, ``header``, ``app_data``; ``HeaderReader``
for the rows marked so), so the script measures the code before and after a redesign alike:

* ``invalid first chunk``: a new ``PolicyReader(REQUIRE)`` fed one chunk that starts with a
  malformed v1 line (an IPv4 octet of 300) and a request; the refusal is caught;
* ``v1 104 B byte by byte``: a 104-byte TCP6 line fed one byte per ``feed`` call;
* ``v2 whole``: the 28-byte v2 TCP4 header (what Traefik sends) and a request in one chunk;
* ``v2 split 16+rest``: the same bytes in two chunks, the first the 16-byte fixed part.

Method. Every measurement runs in a child process of the interpreter running this script,
with ``PROXYPROTO_NO_EXTENSIONS=1`` for the pure-Python implementation (the child checks
``proxyproto.IMPLEMENTATION``). Instructions: the child runs the case N and then 2N times
in two runs under ``valgrind --tool=callgrind`` (fixed ``PYTHONHASHSEED``, garbage collector
off after a warm-up); the difference of the two totals divided by N is the cost of one
operation, start-up, imports and warm-up excluded; the same is done for an empty loop (a
call of a function that does nothing), which is subtracted. The callgrind runs go
``--jobs`` at a time (counts do not depend on the load). Wall-clock: ``timeit``, each
sample about 20 ms, the median of ``--repeat`` samples per operation (and the min-max
spread). Before timing or counting, each case checks its result (header, app data, or the
refusal), so that a broken case cannot be fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import callgrind_total, table, valgrind_python

# The v1 line of exactly 104 bytes: TCP6 with two fully written addresses.
V1_104 = (b"PROXY TCP6 fd12:3456:789a:bcde:f012:3456:789a:bcde "
          b"fd12:3456:789a:bcde:f012:3456:789a:bcdf 51000 44300\r\n")
V1_INVALID = b"PROXY TCP4 192.168.10.300 198.51.100.22 51000 443\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
# Calls per callgrind run (the second run makes twice as many): enough that the difference
# dwarfs the noise, few enough that the pure-Python byte-by-byte case stays quick.
NUMBERS = {"invalid first chunk": 400, "v1 104 B byte by byte": 20, "v2 whole": 400,
           "v2 split 16+rest": 400}
READERS = ("PolicyReader", "HeaderReader")


def _imports() -> tuple[Any, Any, Any, type[Exception], str]:
    """PolicyReader, HeaderReader, Policy, ProxyProtocolError and where PolicyReader came
    from: ``proxyproto.policy`` (after the redesign), else the top level (before it)."""
    import proxyproto

    try:  # since the redesign: the adapter writers' module
        from proxyproto.policy import PolicyReader

        where = "proxyproto.policy.PolicyReader"
    except ImportError:  # before it (commit 14884fc): the top level
        from proxyproto import PolicyReader  # type: ignore[attr-defined,no-redef]

        where = "proxyproto.PolicyReader"
    try:
        from proxyproto import HeaderReader
    except ImportError:  # pragma: no cover - kept public by the API contract
        from proxyproto.policy import HeaderReader  # type: ignore[import-not-found,no-redef]
    return PolicyReader, HeaderReader, proxyproto.Policy, proxyproto.ProxyProtocolError, where


def build_operations() -> dict[str, Callable[[], object]]:
    """One zero-argument function per case, each checked once before it is returned."""
    import proxyproto

    policy_reader, header_reader, policy, error, _ = _imports()
    require = policy.REQUIRE
    v2 = proxyproto.encode_v2(("192.168.10.20", 51000), ("198.51.100.22", 443))
    assert len(V1_104) == 104 and len(v2) == 28
    invalid_chunk = V1_INVALID + REQUEST
    v2_chunk = v2 + REQUEST
    v2_first, v2_rest = v2_chunk[:16], v2_chunk[16:]
    v1_bytes = [V1_104[i : i + 1] for i in range(len(V1_104))]

    def invalid_first_chunk() -> object:
        reader = policy_reader(require)
        try:
            reader.feed(invalid_chunk)
        except error:
            return None
        return reader

    def bytewise(new_reader: Callable[[], Any]) -> Callable[[], object]:
        def operation() -> object:
            reader = new_reader()
            for byte in v1_bytes:
                reader.feed(byte)
                if reader.done:
                    break
            return reader
        return operation

    def whole(new_reader: Callable[[], Any]) -> Callable[[], object]:
        def operation() -> object:
            reader = new_reader()
            reader.feed(v2_chunk)
            return reader
        return operation

    def split(new_reader: Callable[[], Any]) -> Callable[[], object]:
        def operation() -> object:
            reader = new_reader()
            reader.feed(v2_first)
            if not reader.done:
                reader.feed(v2_rest)
            return reader
        return operation

    def new_policy_reader() -> Any:
        return policy_reader(require)

    def app_data(reader: Any) -> bytes:
        # PolicyReader.app_data; HeaderReader calls the same bytes trailing_data
        return bytes(getattr(reader, "app_data", None) or getattr(reader, "trailing_data", b""))

    operations: dict[str, Callable[[], object]] = {
        "PolicyReader: invalid first chunk": invalid_first_chunk,
        "PolicyReader: v1 104 B byte by byte": bytewise(new_policy_reader),
        "PolicyReader: v2 whole": whole(new_policy_reader),
        "PolicyReader: v2 split 16+rest": split(new_policy_reader),
        "HeaderReader: v1 104 B byte by byte": bytewise(header_reader),
        "HeaderReader: v2 whole": whole(header_reader),
        "HeaderReader: v2 split 16+rest": split(header_reader),
    }
    # Check every case computes what it claims.
    assert invalid_first_chunk() is None, "the invalid chunk was not refused"
    for name, operation in operations.items():
        if "invalid" in name:
            continue
        reader: Any = operation()
        assert reader.done and reader.header is not None, name
        if "v1" in name:
            assert reader.header.source == ("fd12:3456:789a:bcde:f012:3456:789a:bcde", 51000)
            assert app_data(reader) == b"", name
        else:
            assert reader.header.source == ("192.168.10.20", 51000), name
            assert app_data(reader) == REQUEST, name
    return operations


def _nothing() -> object:
    return None


# ---------------------------------------------------------------- child process modes


def child_count(name: str, number: int, warmup: int) -> None:
    """Run one operation ``warmup`` times, then ``number`` times (under callgrind)."""
    import gc

    operation = _nothing if name == "loop" else build_operations()[name]
    for _ in range(warmup):  # lazy imports, caches, free lists
        operation()
    gc.collect()
    gc.disable()
    for _ in range(number):
        operation()


def child_time(repeat: int, sample_s: float, names: list[str]) -> None:
    """Print, as JSON, seconds per operation of each case: the median and min/max."""
    import gc

    import proxyproto

    operations = build_operations()
    result: dict[str, Any] = {"implementation": proxyproto.IMPLEMENTATION,
                              "import": _imports()[4], "cases": {}}
    for name in names:
        timer = timeit.Timer(operations[name])
        number, _ = timer.autorange()  # at least 0.2 s: then scale to one sample
        one = max(1, int(number * sample_s / 0.2))
        gc.collect()
        samples = [t / one for t in timer.repeat(repeat, one)]
        result["cases"][name] = {"median": statistics.median(samples),
                                 "min": min(samples), "max": max(samples)}
    print(json.dumps(result))


# ---------------------------------------------------------------- parent


def _env(impl: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROXYPROTO_NO_EXTENSIONS"}
    env["PYTHONHASHSEED"] = "0"
    if impl == "python":
        env["PROXYPROTO_NO_EXTENSIONS"] = "1"
    return env




def _check_impl(impl: str) -> None:
    code = "import proxyproto; print(proxyproto.IMPLEMENTATION)"
    found = subprocess.run([sys.executable, "-c", code], env=_env(impl), check=True,
                           capture_output=True, text=True).stdout.strip()
    if found != impl:
        raise SystemExit(f"asked for the {impl} implementation, the child runs {found}")




def run_callgrind(work: str, impl: str, name: str, number: int, warmup: int) -> int:
    """Total instructions of one child run of ``number`` operations under callgrind."""
    safe = re.sub(r"\W+", "_", name)
    out = os.path.join(work, f"{safe}.{impl}.{number}")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", valgrind_python(),
         os.path.abspath(__file__), "--child-count", name, str(number), str(warmup)],
        check=True, capture_output=True, env=_env(impl),
    )
    return callgrind_total(out)


def count_all(impls: list[str], names: list[str], scale: float, jobs: int
              ) -> dict[tuple[str, str], float]:
    """Instructions of one operation per (implementation, case): (run of 2N - run of N) / N,
    minus the same for an empty loop. The runs are independent processes, so they run
    ``jobs`` at a time: instruction counts do not depend on the machine's load."""
    numbers = {name: _number(name, scale) for name in names}
    numbers["loop"] = 400
    runs = [(impl, name, n) for impl in impls for name in numbers
            for n in (numbers[name], 2 * numbers[name])]
    # the same warm-up in both runs of a case, so that it cancels out
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(jobs) as pool:
        totals = dict(zip(runs, pool.map(
            lambda run: run_callgrind(work, *run, min(20, numbers[run[1]])), runs)))
    per = {(impl, name): (totals[impl, name, 2 * n] - totals[impl, name, n]) / n
           for impl in impls for name, n in numbers.items()}
    return {(impl, name): per[impl, name] - per[impl, "loop"]
            for impl in impls for name in names}


def _number(name: str, scale: float) -> int:
    base = next(n for key, n in NUMBERS.items() if name.endswith(key))
    return max(5, int(base * scale))




def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", action="append", choices=["cython", "python"],
                        help="implementation (repeatable; default both)")
    parser.add_argument("--case", action="append", help="only cases whose name contains this")
    parser.add_argument("--quick", action="store_true",
                        help="fewer calls and repetitions (CI; about a minute)")
    parser.add_argument("--no-callgrind", action="store_true", help="wall-clock only")
    parser.add_argument("--repeat", type=int, default=9, help="timing samples per case (9)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="callgrind runs at a time (default: the CPU count)")
    parser.add_argument("--rst", action="store_true", help="reStructuredText table")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child-count", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-time", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_count:
        child_count(args.child_count[0], int(args.child_count[1]), int(args.child_count[2]))
        return 0
    if args.child_time:
        child_time(int(args.child_time[0]), float(args.child_time[1]),
                   json.loads(args.child_time[2]))
        return 0

    impls = args.impl or ["cython", "python"]
    names = list(build_operations())
    if args.case:
        names = [n for n in names if any(part in n for part in args.case)]
    if args.quick:
        names = [n for n in names if n.startswith("PolicyReader")]
    use_callgrind = not args.no_callgrind
    if use_callgrind and shutil.which("valgrind") is None:
        print("valgrind is not installed: wall-clock only (--no-callgrind)", file=sys.stderr)
        use_callgrind = False
    repeat = 3 if args.quick else args.repeat
    scale = 0.25 if args.quick else 1.0
    for impl in impls:
        _check_impl(impl)

    figures: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    where = ""
    for impl in impls:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child-time", str(repeat), "0.02",
             json.dumps(names)], check=True, capture_output=True, text=True, env=_env(impl),
        )
        timed = json.loads(done.stdout)
        where = timed["import"]
        for name, t in timed["cases"].items():
            figures[name][f"{impl} us"] = t["median"] * 1e6
            figures[name][f"{impl} us min"] = t["min"] * 1e6
            figures[name][f"{impl} us max"] = t["max"] * 1e6
    if use_callgrind:
        for (impl, name), value in count_all(impls, names, scale, args.jobs).items():
            figures[name][f"{impl} instr"] = value

    header = ["case"]
    for impl in impls:
        if use_callgrind:
            header.append(f"{impl} instructions")
        header.append(f"{impl} µs (min-max)")
    rows = []
    for name in names:
        row = [name]
        for impl in impls:
            f = figures[name]
            if use_callgrind:
                row.append(f"{f[f'{impl} instr']:,.0f}")
            row.append(f"{f[f'{impl} us']:.2f} ({f[f'{impl} us min']:.2f}-"
                       f"{f[f'{impl} us max']:.2f})")
        rows.append(row)
    command = "python3 benchmarks/connection_start.py " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv)
    import proxyproto

    print(f"proxyproto {proxyproto.__version__}, readers from {where}, Python "
          f"{sys.version.split()[0]}; command: {command.strip()}")
    print("instructions per operation (callgrind, empty loop subtracted); wall-clock: median "
          f"of {repeat} samples, µs per operation")
    print(table(rows, header, args.rst))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"command": command, "import": where, "figures": figures}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
