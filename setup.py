"""Build the optional Cython extension; all metadata lives in pyproject.toml.

Set PROXYPROTO_NO_EXTENSIONS=1 to skip the extension. Without a working compiler the
build falls back to the pure-Python module (and says so loudly).
"""

import os
import sys

from setuptools import Extension, setup

PURE = bool(os.environ.get("PROXYPROTO_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
SOURCE = os.path.join("src", "proxyproto", "_fast.pyx")

ext_modules = []
if not PURE and os.path.exists(SOURCE):
    try:
        from Cython.Build import cythonize
    except ImportError:  # pragma: no cover - Cython is a build requirement
        print("*** proxyproto: Cython not found, building the pure-Python package ***")
    else:
        ext_modules = cythonize(
            [Extension("proxyproto._fast", [SOURCE], extra_compile_args=["-O2"])],
            compiler_directives={"language_level": "3"},
        )
        for ext in ext_modules:
            ext.optional = True  # must come after cythonize(), which drops the flag
if not ext_modules:
    print("*** proxyproto: pure-Python build (no compiled extension) ***")

setup(ext_modules=ext_modules)
