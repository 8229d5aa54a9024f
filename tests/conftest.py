"""Shared fixtures: every parser/encoder test runs against both implementations."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IMPLEMENTATIONS = ("cython", "python")
_MODULES = {"cython": "proxyproto._fast", "python": "proxyproto._fallback"}


def load_implementation(name: str) -> ModuleType:
    """Import one implementation module; skip when the extension was not built.

    With PROXYPROTO_NO_EXTENSIONS set, the Cython module is skipped even if it was
    built, so that run really tests the pure-Python implementation alone.
    """
    if name == "cython" and os.environ.get("PROXYPROTO_NO_EXTENSIONS"):
        pytest.skip("PROXYPROTO_NO_EXTENSIONS is set")
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        pytest.skip(f"Cython extension not built: {exc}")
        raise  # unreachable


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation module under test: it has parse, encode_v1, encode_v2, crc32c."""
    return load_implementation(request.param)


@pytest.fixture(scope="session")
def fast() -> ModuleType:
    """The Cython module (skipped when not built)."""
    return load_implementation("cython")


@pytest.fixture(scope="session")
def fallback() -> ModuleType:
    """The pure-Python module."""
    return load_implementation("python")
