"""Shared start-up of the atheris harnesses: instrument proxyproto, then run libFuzzer.

Not a harness itself; ``fuzz_parse.py`` and ``fuzz_encode.py`` call :func:`run`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# Comparison hooks let the fuzzer solve the v1 regular expressions and string compares.
atheris.enabled_hooks.add("RegEx")
atheris.enabled_hooks.add("str")

with atheris.instrument_imports(include=["proxyproto"]):
    import proxyproto
    import proxyproto._fallback
    import proxyproto._header
    import proxyproto._reader

import invariants  # noqa: E402  (after instrumentation, on purpose: it is not the target)

IMPLS = invariants.implementations()


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Print what is being fuzzed, then hand ``sys.argv`` to libFuzzer."""
    print(
        f"proxyproto {proxyproto.__version__} from {os.path.dirname(proxyproto.__file__)}: "
        f"selected {proxyproto.IMPLEMENTATION}; compared: {', '.join(IMPLS)}",
        file=sys.stderr,
        flush=True,
    )
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
