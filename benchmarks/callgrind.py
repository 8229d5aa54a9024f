"""Count instructions per call with callgrind: stable on a noisy machine, unlike timings.

    python3 benchmarks/callgrind.py                      # every case, Cython
    python3 benchmarks/callgrind.py --impl python --case "v2 TCP4"
    python3 benchmarks/callgrind.py --top 15 --case "3 TLVs"   # where the instructions go

For each case it runs the statement N and 2N times under ``valgrind --tool=callgrind`` and
reports the difference divided by N: the cost of one call, start-up and loop excluded
(the loop itself, about 350 instructions, is measured the same way and subtracted). With
``--top`` it also lists the functions that account for that difference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import valgrind_python

from cases import build_cases

RUNNER = """
import importlib, sys, timeit
sys.path.insert(0, {bench_dir!r})
from _report import valgrind_python
from cases import build_cases
impls = {{"cython": importlib.import_module("proxyproto._fast"),
          "python": importlib.import_module("proxyproto._fallback")}}
cases = {{case.name: case for case in build_cases(impls)}}
name, impl, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
if name == "loop":
    timeit.Timer("f", globals={{"f": len}}).timeit(number)
else:
    stmt, namespace = cases[name].statements[impl]
    timeit.Timer(stmt, globals=dict(namespace)).timeit(number)
"""


def callgrind(script: str, args: list[str], out: str) -> None:
    python = valgrind_python()  # not a pyenv shim (valgrind must see python), a venv kept
    # A fixed hash seed: otherwise start-up costs differ between the two runs.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, script, *args],
        check=True, capture_output=True, env=env,
    )


def functions(out: str) -> dict[str, int]:
    """Self cost (instructions) per function, from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", out],
        check=True, capture_output=True, text=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*?)\s*(?:\[(.*)\])?$", line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            costs["TOTAL"] = count
            continue
        name = match.group(2).split(":")[-1]
        where = os.path.basename(match.group(3) or "")
        key = f"{name} [{where}]" if where else name
        costs[key] = costs.get(key, 0) + count
    return costs


def per_call(work: str, script: str, name: str, impl: str, number: int) -> dict[str, float]:
    safe = re.sub(r"\W+", "_", f"{name}_{impl}")
    small, large = os.path.join(work, f"{safe}.1"), os.path.join(work, f"{safe}.2")
    callgrind(script, [name, impl, str(number)], small)
    callgrind(script, [name, impl, str(2 * number)], large)
    a, b = functions(small), functions(large)
    return {key: (b.get(key, 0) - a.get(key, 0)) / number for key in set(a) | set(b)}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=["cython", "python"], default="cython")
    parser.add_argument("--case", action="append", help="only cases whose name contains this")
    parser.add_argument("--number", type=int, default=2000, help="calls per run (2000)")
    parser.add_argument("--top", type=int, default=0, help="list the N costliest functions")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 1
    from proxyproto import _fallback

    names = [case.name for case in build_cases({"python": _fallback})]
    if args.case:
        names = [n for n in names if any(part in n for part in args.case)]
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "runner.py")
        with open(script, "w") as out:
            out.write(RUNNER.format(bench_dir=os.path.dirname(os.path.abspath(__file__))))
        loop = per_call(work, script, "loop", args.impl, args.number)["TOTAL"]
        print(f"{args.impl}: instructions per call (loop overhead of {loop:.0f} subtracted)")
        for name in names:
            costs = per_call(work, script, name, args.impl, args.number)
            print(f"{costs['TOTAL'] - loop:10,.0f}  {name}")
            if args.top:
                ranked = sorted((c for c in costs.items() if c[0] != "TOTAL"),
                                key=lambda item: -item[1])
                for key, value in ranked[: args.top]:
                    print(f"{'':10}  {value:8,.0f}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
