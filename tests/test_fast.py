"""The compiled fast path: that it is loaded, selected, built fresh, and exact where it is
most likely to drift from the fallback (address text, CRC32C, memory).

The differential property tests live in ``test_differential.py``.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import inspect
import os
import pathlib
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest

import proxyproto
from proxyproto import _fallback, _impl

SRC = pathlib.Path(proxyproto.__file__).parent
NO_EXTENSIONS = bool(os.environ.get("PROXYPROTO_NO_EXTENSIONS"))
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PUBLIC = ("parse", "encode_v1", "encode_v2", "crc32c")


def _run_python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (the variable is read at import)."""
    environ = {k: v for k, v in os.environ.items() if k != "PROXYPROTO_NO_EXTENSIONS"}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _extension_importable() -> bool:
    return _run_python(
        "import importlib.util; print(importlib.util.find_spec('proxyproto._fast') is not None)"
    ) == "True"


# -- selection ---------------------------------------------------------------------------


def test_fast_path_loaded() -> None:
    """Fails when the extension was expected but not loaded (a silent fallback)."""
    if NO_EXTENSIONS:
        assert proxyproto.IMPLEMENTATION == "python"
        assert proxyproto.parse is _fallback.parse
        pytest.skip("PROXYPROTO_NO_EXTENSIONS is set: the pure-Python module is expected")
    from proxyproto import _fast  # an ImportError here is the failure we want

    assert proxyproto.IMPLEMENTATION == "cython"
    for name in PUBLIC:
        assert getattr(proxyproto, name) is getattr(_fast, name)
        assert getattr(_impl, name) is getattr(_fast, name)


def test_env_var_forces_python() -> None:
    out = _run_python(
        "import proxyproto; print(proxyproto.IMPLEMENTATION, proxyproto.parse.__module__)",
        PROXYPROTO_NO_EXTENSIONS="1",
    )
    assert out == "python proxyproto._fallback"


def test_empty_env_var_does_not_force_python() -> None:
    if not _extension_importable():
        pytest.skip("the extension is not built")
    out = _run_python("import proxyproto; print(proxyproto.IMPLEMENTATION)",
                      PROXYPROTO_NO_EXTENSIONS="")
    assert out == "cython"


def test_other_interpreters_use_the_fallback() -> None:
    out = _run_python(
        "import sys; sys.implementation.name = 'pypy'\n"
        "import proxyproto; print(proxyproto.IMPLEMENTATION)"
    )
    assert out == "python"


def test_io_code_uses_the_selected_implementation() -> None:
    """Only _impl may take parse/encode/crc32c from a concrete implementation module."""
    offenders = []
    for path in sorted(SRC.glob("*.py")):
        if path.name == "_impl.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("_fallback", "_fast"):
                names = {alias.name for alias in node.names}
                if names & set(PUBLIC):
                    offenders.append(f"{path.name}: from .{node.module} import {names}")
    assert offenders == []
    from proxyproto import _reader

    assert _reader._impl.parse is proxyproto.parse


def test_extension_is_not_stale() -> None:
    """In a development tree the .so must be newer than the .pyx and its .pxi includes
    (run ``pip install -e .``)."""
    pyx = SRC / "_fast.pyx"
    built = list(SRC.glob("_fast.*.so")) + list(SRC.glob("_fast.*.pyd"))
    if NO_EXTENSIONS or not pyx.exists() or not built:
        pytest.skip("not a development tree with a built extension")
    sources = [pyx, *SRC.glob("_fast_*.pxi")]
    assert max(p.stat().st_mtime for p in built) >= max(p.stat().st_mtime for p in sources), (
        "_fast.pyx or an include changed after the extension was built: run `pip install -e .`"
    )


# -- same surface ------------------------------------------------------------------------


def _shape(func: Callable[..., object]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


@pytest.mark.parametrize("name", PUBLIC)
def test_same_signature_and_docstring(fast: ModuleType, name: str) -> None:
    assert _shape(getattr(fast, name)) == _shape(getattr(_fallback, name))
    assert getattr(fast, name).__doc__ == getattr(_fallback, name).__doc__


def test_same_constants(fast: ModuleType) -> None:
    for name in ("MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE"):
        assert getattr(fast, name) == getattr(_fallback, name)


def test_results_are_the_fallbacks_classes(fast: ModuleType) -> None:
    data = _fallback.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(1, b"h2")])
    header = fast.parse(data)
    assert type(header) is proxyproto.ProxyHeader
    assert header.command is proxyproto.Command.PROXY
    assert header.family is socket.AF_INET
    assert header.transport is socket.SOCK_STREAM
    assert type(header.tlvs[0]) is proxyproto.TLV
    assert header.tlvs[0].type == 1 and header.alpn == b"h2"
    assert type(header.source) is tuple and type(header.source[0]) is str
    assert header == _fallback.parse(data)
    assert hash(header) == hash(_fallback.parse(data))
    local = fast.parse(SIG + b"\x20\x00\x00\x00")
    assert local.command is proxyproto.Command.LOCAL


# -- address text: what socket.inet_ntop writes -----------------------------------------


def _ipv6_patterns() -> list[bytes]:
    """Every arrangement of zero and non-zero groups, with fills that hit the special cases
    (::ffff:a.b.c.d, ::a.b.c.d, ::1, four-digit and one-digit groups)."""
    out = []
    for mask in range(256):
        for fill in (0x1, 0xFFFF, 0xABCD, 0x0A0B, 0x10):
            words = [fill if mask >> i & 1 else 0 for i in range(8)]
            out.append(struct.pack("!8H", *words))
            words[5] = 0xFFFF
            out.append(struct.pack("!8H", *words))
    return out


def test_ipv6_text_matches_inet_ntop(fast: ModuleType) -> None:
    for packed in _ipv6_patterns():
        data = SIG + b"\x21\x21\x00\x24" + packed + packed[::-1] + b"\x00\x01\x00\x02"
        header = fast.parse(data)
        assert header.source == (socket.inet_ntop(socket.AF_INET6, packed), 1)
        assert header.destination == (socket.inet_ntop(socket.AF_INET6, packed[::-1]), 2)
        text = header.source[0]
        line = f"PROXY TCP6 {text} {text} 1 2\r\n".encode()
        assert fast.parse(line) == _fallback.parse(line)
        assert fast.encode_v1((text, 1), (text, 2)) == line


def test_ipv4_text_every_octet(fast: ModuleType) -> None:
    for value in range(256):
        packed = bytes((value, 255 - value, value // 2, 0))
        data = SIG + b"\x21\x11\x00\x0c" + packed + packed[::-1] + b"\x00\x01\x00\x02"
        host = socket.inet_ntoa(packed)
        assert fast.parse(data).source == (host, 1)
        line = f"PROXY TCP4 {host} {host} 1 2\r\n".encode()
        assert fast.parse(line).source == (host, 1)
        assert fast.encode_v2((host, 1), (host, 2))[16:20] == packed


# -- CRC32C ------------------------------------------------------------------------------


def test_crc32c_check_value(fast: ModuleType) -> None:
    assert fast.crc32c(b"123456789") == 0xE3069283
    assert fast.crc32c(b"") == 0
    assert fast.crc32c(bytearray(b"123456789")) == 0xE3069283


def test_crc32c_every_length_and_continuation(fast: ModuleType) -> None:
    data = bytes(range(256)) * 2
    for size in range(0, 70):  # the 8-byte slices and every tail length
        chunk = data[size : size * 2 + 1]
        assert fast.crc32c(chunk) == _fallback.crc32c(chunk)
        assert fast.crc32c(chunk, 0xDEADBEEF) == _fallback.crc32c(chunk, 0xDEADBEEF)
        assert fast.crc32c(chunk[5:], fast.crc32c(chunk[:5])) == fast.crc32c(chunk)


def test_crc32c_matches_the_crc32c_package(fast: ModuleType) -> None:
    reference = pytest.importorskip("crc32c")
    data = bytes(range(256)) * 3
    for size in (1, 7, 8, 9, 63, 64, 65, 768):
        assert fast.crc32c(data[:size]) == reference.crc32c(data[:size])


@pytest.mark.parametrize(
    "value", [-1, 1 << 32, 1 << 70, True, 0.5, "x", None, proxyproto.TLVType.CRC32C]
)
def test_crc32c_unusual_values_like_the_fallback(fast: ModuleType, value: object) -> None:
    for data in (b"abc", b"", memoryview(b"abc"), [1, 2], 3, "abc"):
        try:
            expected: object = _fallback.crc32c(data, value)  # type: ignore[arg-type]
        except Exception as exc:
            with pytest.raises(type(exc)) as info:
                fast.crc32c(data, value)
            assert str(info.value) == str(exc)
        else:
            result = fast.crc32c(data, value)
            assert result == expected and type(result) is type(expected)


# -- memory ------------------------------------------------------------------------------


def _leaked_blocks(call: Callable[[], object], rounds: int = 4000) -> int:
    for _ in range(200):
        call()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(rounds):
        call()
    gc.collect()
    return sys.getallocatedblocks() - before


def _swallow(func: Callable[..., object], *args: object, **kwargs: object) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(ValueError, TypeError):
            func(*args, **kwargs)

    return call


@pytest.mark.skipif(not hasattr(sys, "getallocatedblocks"), reason="CPython only")
def test_no_leak_on_any_path(fast: ModuleType) -> None:
    tlvs = [(1, b"h2"), (2, b"example.com"), (0x20, b"\x07\x00\x00\x00\x00\x21\x00\x03TLS")]
    v2 = _fallback.encode_v2(("2001:db8::1", 1), ("::ffff:1.2.3.4", 2), tlvs=tlvs, crc32c=True)
    unix = _fallback.encode_v2("/run/a.sock", b"\x00abstract")
    calls = {
        "v1": _swallow(fast.parse, b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n"),
        "v1 tcp6": _swallow(fast.parse, b"PROXY TCP6 ::1 2001:db8::1 1 2\r\nxyz"),
        "v1 unknown": _swallow(fast.parse, b"PROXY UNKNOWN whatever\r\n"),
        "v2": _swallow(fast.parse, bytearray(v2)),
        "v2 unix": _swallow(fast.parse, memoryview(unix)),
        "incomplete": _swallow(fast.parse, v2[:30]),
        "no header": _swallow(fast.parse, b"GET / HTTP/1.1\r\n"),
        "invalid": _swallow(fast.parse, v2[:-1] + bytes([v2[-1] ^ 1])),
        "v1 partial": _swallow(fast.parse, b"PROXY TCP4 192.0.2.1 "),
        "bad type": _swallow(fast.parse, "text"),
        "encode v1": _swallow(fast.encode_v1, ("::1", 1), ("192.0.2.1", 2)),
        "encode v2": _swallow(fast.encode_v2, ("::1", 1), ("::2", 2), tlvs=tlvs, crc32c=True),
        "encode bad": _swallow(fast.encode_v2, ("::1", 1), ("::2", 70000)),
        "encode unix": _swallow(fast.encode_v2, "/a", "/b"),
        "crc32c": _swallow(fast.crc32c, b"x" * 100, 7),
    }
    leaks = {name: _leaked_blocks(call) for name, call in calls.items()}
    assert {name: n for name, n in leaks.items() if n > 400} == {}
