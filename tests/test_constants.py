"""One set of wire constants: ``_constants`` (used by the reference) and the C constants of
``_fast`` (``COMPILED_CONSTANTS``, same names) must agree, and the names other modules
import from ``_fallback`` stay there."""

from __future__ import annotations

from types import ModuleType

from proxyproto import _constants, _fallback


def _wire_constants() -> dict[str, object]:
    return {name: getattr(_constants, name) for name in _constants.__all__}


def test_every_constant_is_compiled(fast: ModuleType) -> None:
    assert set(fast.COMPILED_CONSTANTS) == set(_constants.__all__)


def test_compiled_constants_match(fast: ModuleType) -> None:
    for name, value in _wire_constants().items():
        compiled = fast.COMPILED_CONSTANTS[name]
        assert type(compiled) is type(value) and compiled == value, name


def test_constants_are_consistent() -> None:
    c = _constants
    assert len(c.V2_SIGNATURE) == 12
    assert c.MAX_V2_SIZE == c.V2_FIXED_SIZE + 0xFFFF
    assert c.UNIX_BLOCK_SIZE == 2 * c.UNIX_PATH_SIZE
    assert c.INET4_BLOCK_SIZE == 2 * 4 + 2 * 2 and c.INET6_BLOCK_SIZE == 2 * 16 + 2 * 2
    assert len(b"PROXY UNKNOWN\r\n") == c.V1_MIN_LENGTH


def test_names_imported_from_the_facade(impl: ModuleType) -> None:
    for name in ("MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE"):
        assert getattr(_fallback, name) == getattr(_constants, name)
        assert getattr(impl, name) == getattr(_constants, name)
