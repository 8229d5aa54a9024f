"""Pick the implementation once: the Cython module when built, else the pure-Python one.

``PROXYPROTO_NO_EXTENSIONS`` (any non-empty value) forces the pure-Python module; so does
any interpreter other than CPython.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

__all__ = [
    "IMPLEMENTATION", "crc32c", "decode_ssl", "encode_v1", "encode_v2", "parse", "parse_or_needed",
]

NO_EXTENSIONS = bool(os.environ.get("PROXYPROTO_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)

if TYPE_CHECKING:
    from ._fallback import crc32c, decode_ssl, encode_v1, encode_v2, parse, parse_or_needed

    IMPLEMENTATION: str
elif NO_EXTENSIONS:
    from ._fallback import crc32c, decode_ssl, encode_v1, encode_v2, parse, parse_or_needed

    IMPLEMENTATION = "python"
else:
    try:
        from ._fast import crc32c, decode_ssl, encode_v1, encode_v2, parse, parse_or_needed
    except ImportError:
        from ._fallback import crc32c, decode_ssl, encode_v1, encode_v2, parse, parse_or_needed

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"
