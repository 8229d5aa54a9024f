"""Build the optional Cython extension ``proxyproto._fast``; metadata lives in pyproject.toml.

* ``PROXYPROTO_NO_EXTENSIONS=1`` (any non-empty value), or an interpreter other than
  CPython: no extension, the pure-Python package.
* No working C compiler: the build still succeeds without the extension (it is
  ``optional``) and says so loudly; ``tests/test_fast.py::test_fast_path_loaded`` then
  fails, so a silent fallback cannot pass CI.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PURE = bool(os.environ.get("PROXYPROTO_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
SOURCE = os.path.join("src", "proxyproto", "_fast.pyx")
# The include files of _fast.pyx (one per concern, mirroring the reference modules): a
# change to any of them rebuilds the extension, and the sdist carries them (MANIFEST.in).
INCLUDES = sorted(glob.glob(os.path.join("src", "proxyproto", "_fast_*.pxi")))
BANNER = "*" * 78


def _banner(message: str) -> None:
    print(f"\n{BANNER}\n*** proxyproto: {message}\n{BANNER}\n", file=sys.stderr)


class BuildExt(build_ext):
    """``build_ext`` that announces a failed optional build instead of whispering it."""

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            _banner(
                f"compiling {ext.name} failed; installing the pure-Python build "
                "(same behaviour, slower)"
            )
            raise  # setuptools skips an optional extension that fails


ext_modules: list[Extension] = []
if PURE:
    _banner("pure-Python build requested (PROXYPROTO_NO_EXTENSIONS or not CPython)")
elif os.path.exists(SOURCE):
    try:
        from Cython.Build import cythonize
    except ImportError:  # pragma: no cover - Cython is a build requirement
        _banner("Cython not found: pure-Python build")
    else:
        # -O3: about 5% fewer instructions per call than -O2 (benchmarks/callgrind.py).
        flags = [] if sys.platform == "win32" else ["-O3"]
        ext_modules = cythonize(
            [Extension("proxyproto._fast", [SOURCE], depends=INCLUDES, extra_compile_args=flags)],
            compiler_directives={"language_level": "3"},
        )
        for ext in ext_modules:
            ext.optional = True  # must come after cythonize(), which drops the flag

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
