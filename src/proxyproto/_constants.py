"""Wire constants of the PROXY protocol, shared by both implementations.

``_fast.pyx`` repeats the integer ones as C constants (``_fast.COMPILED_CONSTANTS``, same
names) and ``tests/test_constants.py`` checks that the two agree. Comments cite the rules
of ``shared/spec-checklist.md`` (R-n) and HAProxy's ``doc/proxy-protocol.txt`` ([SPEC §x]).
"""

from __future__ import annotations

__all__ = [
    "CRC32C_POLYNOMIAL",
    "CRC32C_SIZE",
    "INET4_BLOCK_SIZE",
    "INET6_BLOCK_SIZE",
    "MAX_V2_SIZE",
    "SSL_FIXED_SIZE",
    "SSL_SUBTYPE_CLIENT_CERT",
    "SSL_SUBTYPE_CN",
    "SSL_SUBTYPE_VERSION",
    "TLV_HEADER_SIZE",
    "TYPE_AUTHORITY",
    "TYPE_CRC32C",
    "TYPE_NETNS",
    "TYPE_SSL",
    "TYPE_UNIQUE_ID",
    "UNIQUE_ID_MAX",
    "UNIX_BLOCK_SIZE",
    "UNIX_PATH_SIZE",
    "V1_MAX_LENGTH",
    "V1_MIN_LENGTH",
    "V2_FIXED_SIZE",
    "V2_SIGNATURE",
]

#: The v2 signature, 12 bytes ([SPEC §2.2], R-29).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The fixed part of a v2 header: signature, version/command, family, 16-bit length.
V2_FIXED_SIZE = 16
#: The largest v2 header the spec allows: 16 fixed bytes + a 16-bit length (R-39).
MAX_V2_SIZE = V2_FIXED_SIZE + 0xFFFF
#: The longest v1 line, CRLF included (R-22, R-24).
V1_MAX_LENGTH = 107
#: The shortest v1 line, ``PROXY UNKNOWN\r\n``.
V1_MIN_LENGTH = 15

#: Address block sizes after the 16 fixed bytes (R-41..R-46).
INET4_BLOCK_SIZE = 12
INET6_BLOCK_SIZE = 36
UNIX_BLOCK_SIZE = 216
#: One AF_UNIX path in the block (A-9).
UNIX_PATH_SIZE = 108

#: A TLV's type (1 byte) and length (2 bytes) before its value (R-48).
TLV_HEADER_SIZE = 3
#: TLV types with a value rule ([SPEC §2.2.x]).
TYPE_AUTHORITY = 0x02  # UTF-8
TYPE_CRC32C = 0x03  # exactly 4 bytes, checked
TYPE_UNIQUE_ID = 0x05  # at most UNIQUE_ID_MAX bytes
TYPE_SSL = 0x20  # client(1) verify(4) then sub-TLVs (R-54..R-57)
TYPE_NETNS = 0x30  # US-ASCII
CRC32C_SIZE = 4
UNIQUE_ID_MAX = 128
#: The SSL TLV's client byte and 32-bit verify field.
SSL_FIXED_SIZE = 5
#: SSL sub-TLVs: 0x21 and 0x23..0x27 are US-ASCII, 0x22 (CN) UTF-8, 0x28 a certificate.
SSL_SUBTYPE_VERSION = 0x21
SSL_SUBTYPE_CN = 0x22
SSL_SUBTYPE_CLIENT_CERT = 0x28

#: CRC-32C (Castagnoli), reflected polynomial (RFC 4960 Appendix B).
CRC32C_POLYNOMIAL = 0x82F63B78
