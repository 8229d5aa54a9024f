"""CRC-32C (Castagnoli, RFC 4960 Appendix B), as the spec requires ([SPEC §2.2.3], R-50/51).

The reference; ``_fast_crc32c.pxi`` is its C twin (slicing-by-8).
"""

from __future__ import annotations

import struct
from typing import Union

from ._constants import CRC32C_POLYNOMIAL

__all__ = ["crc32c"]


def _table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ CRC32C_POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# Slicing-by-4: _BY4[k][i] is the CRC of byte i followed by k zero bytes.
_BY4 = [_table()]
for _ in range(3):
    _BY4.append(tuple((c >> 8) ^ _BY4[0][c & 0xFF] for c in _BY4[-1]))
_T0, _T1, _T2, _T3 = _BY4
_LE32 = struct.Struct("<I")


def crc32c(data: Union[bytes, bytearray, memoryview], value: int = 0) -> int:
    """Return the CRC-32C (Castagnoli) of ``data``, continuing from ``value``.

    ``crc32c(b"123456789") == 0xE3069283``.
    """
    t0, t1, t2, t3 = _T0, _T1, _T2, _T3
    crc = value ^ 0xFFFFFFFF
    # A bytes subclass is read through the buffer protocol, never its __bytes__.
    data = memoryview(data).tobytes() if isinstance(data, bytes) else bytes(data)
    if 0 <= crc <= 0xFFFFFFFF:  # four bytes a step (a wider value keeps the bytewise loop)
        whole = len(data) & ~3
        for (word,) in _LE32.iter_unpack(data[:whole]):
            x = word ^ crc
            crc = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
        data = data[whole:]
    for byte in data:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
