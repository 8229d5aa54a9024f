#!/usr/bin/env python3
"""Coverage-guided fuzzing of ``encode_v1``/``encode_v2`` (both implementations).

Each input is decoded into encoder arguments (addresses of every kind, valid or not,
ports, transports, TLVs, the CRC32C flag) by ``invariants.ByteSource``::

    python3 fuzz/fuzz_encode.py -max_total_time=60 /tmp/work-corpus fuzz/corpus/encode
"""

from __future__ import annotations

from _harness import IMPLS, invariants, run


def test_one_input(data: bytes) -> None:
    """Encode with every implementation; check agreement and the round trip."""
    invariants.check_encode_input(data, IMPLS)


if __name__ == "__main__":
    run(test_one_input)
