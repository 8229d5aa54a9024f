#!/usr/bin/env python3
"""Coverage-guided fuzzing of ``parse`` (both implementations), ``HeaderReader`` and
``PolicyReader`` (what the I/O adapters run on a connection's first bytes).

Each input is raw bytes, as a peer would send them. See ``invariants.py`` for the
properties checked and ``README.md`` for how to run it::

    python3 fuzz/fuzz_parse.py -max_total_time=60 /tmp/work-corpus fuzz/corpus/parse
"""

from __future__ import annotations

from _harness import IMPLS, invariants, run


def test_one_input(data: bytes) -> None:
    """Check every parse and reader property on one input."""
    invariants.check_parse_input(data, IMPLS)
    invariants.check_reader(data)
    invariants.check_policy_reader(data)


if __name__ == "__main__":
    run(test_one_input)
