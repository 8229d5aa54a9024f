"""Helpers shared by the benchmark scripts: the interpreter to run under valgrind, a
callgrind output's total, and tables ready to paste (Markdown or reStructuredText)."""

from __future__ import annotations

import os
import re
import sys


def valgrind_python() -> str:
    """The interpreter to run under valgrind: ours, unless it is a script (a pyenv shim)."""
    with open(sys.executable, "rb") as file:
        if file.read(4) == b"\x7fELF":
            return sys.executable  # a venv's python (a link to the binary): keeps the venv
    return os.path.realpath(sys.executable)


def callgrind_total(out: str) -> int:
    """The total instruction count of a callgrind output file (or of one dump)."""
    with open(out) as file:
        for line in file:
            match = re.match(r"(?:summary|totals):\s*(\d+)", line)
            if match:
                return int(match.group(1))
    raise RuntimeError(f"no total in {out}")


def table(rows: list[list[str]], header: list[str], rst: bool) -> str:
    """A Markdown table, or a reStructuredText simple table when ``rst``."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    if rst:
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join([line.rstrip() for line in lines] + [rule])
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)
