"""Replay the committed fuzz corpus through the fuzz invariants (no atheris needed).

Every seed of ``fuzz/corpus/parse`` goes through ``check_parse_input`` (both
implementations, bytes/bytearray/memoryview, prefixes, canonical re-encoding) and
``check_reader`` (chunked HeaderReader) and ``check_policy_reader`` (the adapters'
reader, under every policy); every seed of ``fuzz/corpus/encode`` through
``check_encode_input``. Inputs the fuzzer once found are kept below as regressions.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

import proxyproto

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import invariants  # noqa: E402

PARSE_SEEDS = sorted((FUZZ / "corpus" / "parse").iterdir())
ENCODE_SEEDS = sorted((FUZZ / "corpus" / "encode").iterdir())

#: Inputs found by fuzzing, kept as regressions (see fuzz/README.md, "Findings").
REGRESSIONS = {
    # an abstract UNIX name with a NUL inside: parse kept it, encode_v2 refused it, so
    # ProxyHeader.to_bytes() raised ValueError on a header parse() had accepted
    "abstract-unix-inner-nul": proxyproto.V2_SIGNATURE + b"\x21\x31\x00\xd8"
    + (b"\x00abc\x00def").ljust(108, b"\x00") + (b"\x00x").ljust(108, b"\x00"),
}


def test_corpus_is_there() -> None:
    assert len(PARSE_SEEDS) >= 50 and len(ENCODE_SEEDS) >= 10


@pytest.mark.parametrize("path", PARSE_SEEDS, ids=lambda p: p.name)
def test_parse_seed(path: Path) -> None:
    data = path.read_bytes()
    result = invariants.check_parse_input(data)
    invariants.check_reader(data)
    invariants.check_policy_reader(data)
    if path.name.startswith("gen-v"):
        assert result.ok, result.describe()  # the valid seeds stay valid
    elif path.name.startswith("gen-bad-"):
        assert not result.ok


@pytest.mark.parametrize("path", ENCODE_SEEDS, ids=lambda p: p.name)
def test_encode_seed(path: Path) -> None:
    invariants.check_encode_input(path.read_bytes())


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    data = REGRESSIONS[name]
    assert invariants.check_parse_input(data).ok
    invariants.check_reader(data)
    invariants.check_policy_reader(data)


def test_both_implementations_are_compared() -> None:
    impls = invariants.implementations()
    assert "python" in impls
    if proxyproto.IMPLEMENTATION == "cython":
        assert "cython" in impls
    elif not os.environ.get("PROXYPROTO_NO_EXTENSIONS"):
        pytest.skip("Cython extension not built")


def _broken(parse_result: object) -> types.ModuleType:
    fallback = invariants.implementations()["python"]
    fake = types.ModuleType("fake")
    fake.parse = lambda data, **kwargs: parse_result  # type: ignore[attr-defined]
    fake.encode_v1, fake.encode_v2 = fallback.encode_v1, fallback.encode_v2  # type: ignore[attr-defined]
    return fake


def test_invariants_catch_a_disagreeing_implementation() -> None:
    """The checks can fail: an implementation that answers differently is caught."""
    data = proxyproto.encode_v1(("192.0.2.1", 1), ("192.0.2.2", 2))
    python = invariants.implementations()["python"]
    wrong = python.parse(proxyproto.encode_v1(("192.0.2.9", 1), ("192.0.2.2", 2)))
    with pytest.raises(AssertionError, match="parse: python"):
        invariants.check_parse_input(data, {"python": python, "fake": _broken(wrong)})


def test_invariants_catch_a_foreign_exception() -> None:
    fake = types.ModuleType("fake")

    def parse(data: object, **kwargs: object) -> None:
        raise IndexError("out of range")

    fake.parse = parse  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="foreign exception IndexError"):
        invariants.check_parse_input(b"PROXY TCP4 1", {"fake": fake})
