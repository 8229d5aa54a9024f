"""Types for the Cython module: the same signatures as ``_fallback``."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Optional, Union

from ._errors import ProxyProtocolError
from ._header import Address, ProxyHeader, SSLInfo
from ._policy import Policy

__all__ = [
    "COMPILED_CONSTANTS", "MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE", "crc32c", "decode_ssl",
    "encode_v1", "encode_v2", "judge_start", "parse", "parse_or_needed",
]

V2_SIGNATURE: bytes
V1_MAX_LENGTH: int
MAX_V2_SIZE: int
#: The C-level constants by the names of ``_constants`` (tests/test_constants.py).
COMPILED_CONSTANTS: dict[str, Union[int, bytes]]

def crc32c(data: Union[bytes, bytearray, memoryview], value: int = 0) -> int: ...
def decode_ssl(value: bytes) -> SSLInfo: ...
def parse(
    data: Union[bytes, bytearray, memoryview], *, max_size: int = ...
) -> ProxyHeader: ...
def parse_or_needed(
    data: Union[bytes, bytearray, memoryview], *, max_size: int = ...
) -> Union[ProxyHeader, int]: ...
def judge_start(
    policy: Policy, data: Union[bytes, bytearray, memoryview], max_size: int, final: bool
) -> Union[tuple[Optional[ProxyHeader], Optional[ProxyHeader], int], int, ProxyProtocolError]: ...
def encode_v1(
    source: Optional[tuple[str, int]], destination: Optional[tuple[str, int]]
) -> bytes: ...
def encode_v2(
    source: Optional[Address],
    destination: Optional[Address],
    *,
    transport: socket.SocketKind = ...,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes: ...

# Test hooks: the C paths alone, returning None where the public function defers to
# _fallback.
def _parse_c_only(
    data: Union[bytes, bytearray, memoryview], *, max_size: int = ...
) -> Optional[ProxyHeader]: ...
def _encode_v1_c_only(
    source: Optional[tuple[str, int]], destination: Optional[tuple[str, int]]
) -> Optional[bytes]: ...
def _encode_v2_c_only(
    source: Optional[Address],
    destination: Optional[Address],
    *,
    transport: socket.SocketKind = ...,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> Optional[bytes]: ...
