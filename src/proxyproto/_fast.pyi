"""Types for the Cython module: the same signatures as ``_fallback``."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, Optional, Union

from ._errors import ProxyProtocolError
from ._header import Address, ProxyHeader, SSLInfo
from ._policy import Policy

__all__ = [
    "COMPILED_CONSTANTS", "MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE", "crc32c", "decode_ssl",
    "HAVE_TIMER_FD", "ProxiedSocket", "ProxyExtensionApp", "arm_timer_fd", "encode_v1", "encode_v2",
    "judge_start", "open_timer_fd", "parse", "parse_or_needed", "report_in_place",
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
def report_in_place(
    extra: dict[str, Any], header: Optional[ProxyHeader], received: Optional[ProxyHeader],
    peer: Any, local: Any,
) -> None: ...

class ProxiedSocket:
    _sock: Any
    _peername: Any
    _sockname: Any
    def __init__(self, sock: Any, peername: Any, sockname: Any) -> None: ...
    def getpeername(self) -> Any: ...
    def getsockname(self) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

class ProxyExtensionApp:
    app: Any
    extension: Any
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any: ...

HAVE_TIMER_FD: bool

def open_timer_fd() -> int: ...
def arm_timer_fd(fd: int, when: float) -> None: ...
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
