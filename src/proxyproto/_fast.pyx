# cython: language_level=3, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython twin of ``_fallback``: ``parse``, ``parse_or_needed``, ``encode_v1``,
``encode_v2``, ``crc32c``, ``decode_ssl``; and of the few steps the asyncio layer runs
once per connection (``judge_start``, ``report_in_place``, ``ProxyExtensionApp``, the
deadlines' timerfd), whose references are in ``_connection`` and ``aio``.

Same names, signatures, results and exceptions as the pure-Python module, which stays the
specification. The split between the two is deliberate:

* The *accepting* paths run in C here: every complete, valid header (v1 TCP4, TCP6 and
  UNKNOWN lines; every v2 header), the ``IncompleteHeader`` and ``NoProxyHeader`` answers
  of v2 input, and the encoding of INET/INET6/LOCAL headers with TLVs and CRC32C.
* Everything else -- every ``InvalidHeader``, incomplete v1 lines, UNIX paths to encode,
  unusual argument types -- is handed to ``_fallback`` with the caller's original
  arguments, so the exception class, message, offset and ``needed`` are the fallback's
  own by construction. The C code only decides that an input is *not* on its fast path;
  it never reports an error of its own besides the two cheap, hot ones above.

So the only way the two modules can disagree is C accepting what the fallback rejects or
formatting a value differently; ``tests/test_differential.py`` hunts for exactly that, and
``_parse_c``/``_encode_v1_c``/``_encode_v2_c`` (the C paths alone, returning ``None`` where
they defer) let the tests check that valid input never leaves the fast path.

The module mirrors the reference's split: this file holds the shared declarations, the
result builders and the entry points; the include files hold one concern each, like the
Python modules they follow:

=====================  =================  ==============================================
include                reference          what
=====================  =================  ==============================================
_fast_crc32c.pxi       _crc32c.py         CRC32C, slicing-by-8
_fast_address.pxi      _address.py        address text: strict parsers, formatters,
                                          packing for the encoders, UNIX paths
_fast_v1.pxi           _v1.py             complete, valid v1 lines
_fast_v2.pxi           _v2.py             the v2 header, TLV value rules, decode_ssl
_fast_encode.pxi       _encode.py         encode_v1, encode_v2
_fast_connection.pxi   _connection.py     judge_start: a first chunk that starts with a
                                          whole, valid header (else the reference)
_fast_aio.pxi          aio/_transport.py  ProxiedSocket, report_in_place
                       aio/_uvicorn.py    ProxyExtensionApp (the scope extension)
                       aio/_deadlines.py  a timerfd for the header deadlines (Linux)
=====================  =================  ==============================================

Mutable input (``bytearray``, ``memoryview``) is never read in place: ``_parse_mutable``
copies at most the header's size first and only the copy is parsed.
"""

import socket

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_Check
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_AsTuple, PyList_CheckExact
from cpython.bool cimport PyBool_Check
from cpython.long cimport (
    PyLong_Check,
    PyLong_CheckExact,
    PyLong_FromLong,
    PyLong_FromSsize_t,
    PyLong_FromUnsignedLong,
)
from cpython.memoryview cimport PyMemoryView_Check
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport (
    PyTuple_CheckExact,
    PyTuple_GET_ITEM,
    PyTuple_GET_SIZE,
    PyTuple_New,
    PyTuple_SET_ITEM,
)
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcmp, memcpy, memset

from . import _fallback as _fb
from ._constants import MAX_V2_SIZE, V1_MAX_LENGTH, V2_SIGNATURE
from ._errors import IncompleteHeader, NoProxyHeader
from ._header import TLV, Command, ProxyHeader, SSLInfo
from ._policy import Policy

__all__ = [
    "COMPILED_CONSTANTS", "MAX_V2_SIZE", "V1_MAX_LENGTH", "V2_SIGNATURE", "crc32c", "decode_ssl",
    "HAVE_TIMER_FD", "ProxiedSocket", "ProxyExtensionApp", "arm_timer_fd", "encode_v1", "encode_v2",
    "judge_start", "open_timer_fd", "parse", "parse_or_needed", "report_in_place",
]

cdef extern from *:
    """
    /* Allocate an instance of a tuple subclass (ProxyHeader, TLV) with n empty slots,
       skipping the Python-level constructor; the caller fills every slot at once. */
    static PyObject *pp_tuple_alloc(PyObject *type, Py_ssize_t n) {
        PyTypeObject *tp = (PyTypeObject *)type;
        return tp->tp_alloc(tp, n);
    }
    /* A new ASCII str of n characters copied from s. */
    static PyObject *pp_ascii_str(const char *s, Py_ssize_t n) {
        PyObject *u = PyUnicode_New(n, 127);
        if (u != NULL) memcpy(PyUnicode_1BYTE_DATA(u), s, (size_t)n);
        return u;
    }
    #if PY_VERSION_HEX < 0x030C0000
    #define pp_str_ready(o) PyUnicode_READY(o)
    #else
    #define pp_str_ready(o) 0
    #endif
    """
    object pp_tuple_alloc(object type, Py_ssize_t n)
    object pp_ascii_str(const char *s, Py_ssize_t n)
    int pp_str_ready(object o) except -1
    bint PyUnicode_IS_ASCII(object o)
    const char *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    long PyLong_AsLongAndOverflow(object o, int *overflow) except? -1


# The C-level twins of _constants (same names in COMPILED_CONSTANTS; tests/test_constants.py
# checks that they agree).
cdef enum:
    _V2_FIXED = 16  # V2_FIXED_SIZE
    _V2_MAX = 16 + 0xFFFF  # MAX_V2_SIZE
    _V1_MAX = 107  # V1_MAX_LENGTH
    _V1_MIN = 15  # V1_MIN_LENGTH
    _INET4_BLOCK = 12  # INET4_BLOCK_SIZE
    _INET6_BLOCK = 36  # INET6_BLOCK_SIZE
    _UNIX_BLOCK = 216  # UNIX_BLOCK_SIZE
    _UNIX_PATH = 108  # UNIX_PATH_SIZE
    _TLV_HEADER = 3  # TLV_HEADER_SIZE
    _TYPE_AUTHORITY = 0x02
    _TYPE_CRC32C = 0x03
    _TYPE_UNIQUE_ID = 0x05
    _TYPE_SSL = 0x20
    _TYPE_NETNS = 0x30
    _CRC32C_SIZE = 4
    _UNIQUE_ID_MAX = 128
    _SSL_FIXED = 5  # SSL_FIXED_SIZE
    _SSL_VERSION = 0x21  # SSL_SUBTYPE_VERSION
    _SSL_CN = 0x22  # SSL_SUBTYPE_CN
    _SSL_CLIENT_CERT = 0x28  # SSL_SUBTYPE_CLIENT_CERT

cdef uint32_t _CRC32C_POLY = 0x82F63B78u  # CRC32C_POLYNOMIAL
cdef const char *_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
cdef const char *_HEX = b"0123456789abcdef"
cdef uint8_t _ZEROS[4]  # static storage: all zero

# The very objects the fallback puts in its headers, so results are == and `is`-equal.
cdef object _ProxyHeader = ProxyHeader
cdef object _TLV = TLV
cdef object _PROXY = Command.PROXY
cdef object _LOCAL = Command.LOCAL
cdef object _AF_INET = socket.AF_INET
cdef object _AF_INET6 = socket.AF_INET6
cdef object _AF_UNIX = socket.AF_UNIX
cdef object _AF_UNSPEC = socket.AF_UNSPEC
cdef object _STREAM = socket.SOCK_STREAM
cdef object _DGRAM = socket.SOCK_DGRAM
cdef object _ONE = 1
cdef object _TWO = 2
cdef object _EMPTY = ()
cdef object _MAX_SIZE_DEFAULT = MAX_V2_SIZE
cdef object _UNKNOWN_LINE = b"PROXY UNKNOWN\r\n"


#: The C constants by the names of ``_constants`` (tests/test_constants.py compares them).
COMPILED_CONSTANTS = {
    "V2_SIGNATURE": _SIG[:12],
    "V2_FIXED_SIZE": _V2_FIXED,
    "MAX_V2_SIZE": _V2_MAX,
    "V1_MAX_LENGTH": _V1_MAX,
    "V1_MIN_LENGTH": _V1_MIN,
    "INET4_BLOCK_SIZE": _INET4_BLOCK,
    "INET6_BLOCK_SIZE": _INET6_BLOCK,
    "UNIX_BLOCK_SIZE": _UNIX_BLOCK,
    "UNIX_PATH_SIZE": _UNIX_PATH,
    "TLV_HEADER_SIZE": _TLV_HEADER,
    "TYPE_AUTHORITY": _TYPE_AUTHORITY,
    "TYPE_CRC32C": _TYPE_CRC32C,
    "TYPE_UNIQUE_ID": _TYPE_UNIQUE_ID,
    "TYPE_SSL": _TYPE_SSL,
    "TYPE_NETNS": _TYPE_NETNS,
    "CRC32C_SIZE": _CRC32C_SIZE,
    "UNIQUE_ID_MAX": _UNIQUE_ID_MAX,
    "SSL_FIXED_SIZE": _SSL_FIXED,
    "SSL_SUBTYPE_VERSION": _SSL_VERSION,
    "SSL_SUBTYPE_CN": _SSL_CN,
    "SSL_SUBTYPE_CLIENT_CERT": _SSL_CLIENT_CERT,
    "CRC32C_POLYNOMIAL": _CRC32C_POLY,
}

include "_fast_crc32c.pxi"
include "_fast_address.pxi"

# ---------------------------------------------------------------------------------------
# Building results: fill tuple subclasses directly, one allocation each.


cdef inline void _put(object tup, Py_ssize_t i, object value) noexcept:
    Py_INCREF(value)
    PyTuple_SET_ITEM(tup, i, value)


cdef inline object _new_header(object version, object command, object family,
                               object transport, object source, object destination,
                               object tlvs, Py_ssize_t length):
    cdef object size = PyLong_FromSsize_t(length)
    cdef object header = pp_tuple_alloc(_ProxyHeader, 8)
    _put(header, 0, version)
    _put(header, 1, command)
    _put(header, 2, family)
    _put(header, 3, transport)
    _put(header, 4, source)
    _put(header, 5, destination)
    _put(header, 6, tlvs)
    _put(header, 7, size)
    return header


cdef inline object _address(object host, long port):
    cdef object number = PyLong_FromLong(port)
    cdef object pair = PyTuple_New(2)
    _put(pair, 0, host)
    _put(pair, 1, number)
    return pair



include "_fast_v1.pxi"


# What parse() raises when the C path returns None: the fallback's verdict (_DEFER), or
# one of the two cheap, hot answers, raised by parse() itself so that only one frame goes
# into the traceback (each frame Cython adds costs as much as the whole parse).
cdef enum:
    _DEFER = 0
    _INCOMPLETE = 1  # IncompleteHeader(arg)
    _NOT_V1 = 2  # NoProxyHeader: byte `arg` breaks the v1 signature
    _NOT_V2 = 3  # NoProxyHeader: byte `arg` breaks the v2 signature
    _NOT_PROXY = 4  # NoProxyHeader: byte 0 starts neither signature

ctypedef struct Verdict:
    int code
    Py_ssize_t arg


cdef inline object _refuse(Verdict *verdict, int code, Py_ssize_t arg):
    verdict.code = code
    verdict.arg = arg
    return None


cdef object _error(Verdict *verdict):
    if verdict.code == _INCOMPLETE:
        return IncompleteHeader(verdict.arg)
    if verdict.code == _NOT_V1:
        return NoProxyHeader(f"not a PROXY header: byte {verdict.arg} breaks the v1 signature")
    if verdict.code == _NOT_V2:
        return NoProxyHeader(f"not a PROXY header: byte {verdict.arg} breaks the v2 signature")
    return NoProxyHeader("not a PROXY header: byte 0 starts neither a v1 nor a v2 signature")



include "_fast_v2.pxi"


# ---------------------------------------------------------------------------------------
# Entry point


cdef Py_ssize_t _cap_of(object max_size) except -2:
    """The largest v2 header accepted, or -1 when the fallback must judge ``max_size``."""
    cdef long limit
    cdef int overflow = 0
    if max_size is _MAX_SIZE_DEFAULT:
        return _V2_MAX
    if not PyLong_CheckExact(max_size):
        return -1  # TypeError, from the fallback
    limit = PyLong_AsLongAndOverflow(max_size, &overflow)
    if overflow > 0 or limit > _V2_MAX:
        return _V2_MAX
    if overflow < 0 or limit < 16:
        return -1  # ValueError, from the fallback
    return limit


# How much of a mutable buffer is copied to the C stack; a longer v2 header is copied into a
# private bytes object instead.
cdef enum:
    _STACK_COPY = 1024
    _C_ONLY = 0  # _parse_mutable modes: the test hook (no fallback)
    _PARSE = 1  # parse()
    _OR_NEEDED = 2  # parse_or_needed()


cdef object _parse_mutable(object data, Py_ssize_t cap, object max_size, Verdict *verdict,
                           int mode):
    """Parse a private copy of a ``bytearray`` or ``memoryview``; never the buffer itself.

    Such a buffer may change while it is parsed: the parser's own allocations can run the
    garbage collector (and so any Python code), and another process may write shared memory
    at any time. So it is read exactly once: the first 16 bytes are copied, that copy says
    how much the header can span (16 + the v2 length, or 16 alone when that exceeds
    ``cap``; the 107 bytes of a v1 line; 16 bytes otherwise), at most that much is copied
    after them, and only the copy is parsed -- by the C path, and by the fallback when the C
    path defers (it gets the copy as ``bytes``). No Python code runs while the buffer is
    read. Returns what ``_parse_c`` returns, or for ``_PARSE``/``_OR_NEEDED`` the
    fallback's answer where the C path defers; ``None`` with ``_DEFER`` for anything that
    is not a contiguous buffer of those types (the fallback copies it or raises).
    """
    cdef Py_buffer view
    cdef uint8_t stack[_STACK_COPY]
    cdef uint8_t *copy = stack
    cdef Py_ssize_t size, n, total
    cdef object heap = None, header
    if not (PyByteArray_Check(data) or PyMemoryView_Check(data)):
        return None
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)  # pins a bytearray's size
    except Exception:
        return None  # released or not contiguous: the fallback copies it
    try:
        size = view.len
        n = size if size < _V2_FIXED else _V2_FIXED
        memcpy(stack, view.buf, n)
        total = n
        if n == _V2_FIXED and stack[0] == 0x0D:
            total = _V2_FIXED + ((<Py_ssize_t>stack[14] << 8) | stack[15])
            if total > cap:
                total = _V2_FIXED  # HeaderTooLarge needs the 16 fixed bytes only
        elif n and stack[0] == 0x50:
            total = _V1_MAX
        if total > size:
            total = size
        if total > _STACK_COPY:  # allocating a bytes object runs no Python code
            heap = PyBytes_FromStringAndSize(NULL, total)
            copy = <uint8_t *>PyBytes_AS_STRING(heap)
            memcpy(copy, stack, n)
        if total > n:
            memcpy(copy + n, <const uint8_t *>view.buf + n, total - n)
    finally:
        PyBuffer_Release(&view)
    header = _parse_c(copy, total, cap, verdict)
    if header is not None or verdict.code != _DEFER or mode == _C_ONLY:
        return header
    if heap is None:
        heap = PyBytes_FromStringAndSize(<const char *>stack, total)
    if mode == _PARSE:
        return _fb.parse(heap, max_size=max_size)
    return _fb.parse_or_needed(heap, max_size=max_size)


cdef object _parse_c(const uint8_t *p, Py_ssize_t size, Py_ssize_t cap, Verdict *verdict):
    """The C path over bytes nobody can change: a header, or None and the verdict."""
    cdef Py_ssize_t offset
    if size == 0:
        return _refuse(verdict, _INCOMPLETE, 15)
    if p[0] == 0x0D:
        return _parse_v2(p, size, cap, verdict)
    if p[0] == 0x50:
        for offset in range(1, size if size < 5 else 5):
            if p[offset] != <uint8_t>b"PROXY"[offset]:
                return _refuse(verdict, _NOT_V1, offset)
        return _parse_v1(p, size)
    return _refuse(verdict, _NOT_PROXY, 0)


cdef inline object _parse_any(object data, Py_ssize_t cap, object max_size, Verdict *verdict,
                              int mode):
    """``bytes`` (and its subclasses: immutable) read in place; anything else copied first."""
    if PyBytes_Check(data):
        return _parse_c(<const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), cap,
                        verdict)
    return _parse_mutable(data, cap, max_size, verdict, mode)


def parse(data, *, max_size=MAX_V2_SIZE):
    cdef Verdict verdict
    cdef Py_ssize_t cap = _cap_of(max_size)
    verdict.code = _DEFER
    if cap >= 0:
        header = _parse_any(data, cap, max_size, &verdict, _PARSE)
        if header is not None:
            return header
    if verdict.code == _DEFER:
        return _fb.parse(data, max_size=max_size)
    raise _error(&verdict)


def parse_or_needed(data, *, max_size=MAX_V2_SIZE):
    cdef Verdict verdict
    cdef Py_ssize_t cap = _cap_of(max_size)
    verdict.code = _DEFER
    if cap >= 0:
        header = _parse_any(data, cap, max_size, &verdict, _OR_NEEDED)
        if header is not None:
            return header
    if verdict.code == _INCOMPLETE:
        return PyLong_FromSsize_t(verdict.arg)
    if verdict.code == _DEFER:
        return _fb.parse_or_needed(data, max_size=max_size)
    raise _error(&verdict)


def _parse_c_only(data, *, max_size=MAX_V2_SIZE):
    """Test hook: ``parse`` without the fallback; ``None`` where ``parse`` would defer."""
    cdef Verdict verdict
    cdef Py_ssize_t cap = _cap_of(max_size)
    verdict.code = _DEFER
    if cap < 0:
        return None
    header = _parse_any(data, cap, max_size, &verdict, _C_ONLY)
    if header is None and verdict.code != _DEFER:
        raise _error(&verdict)
    return header

include "_fast_connection.pxi"

include "_fast_encode.pxi"
include "_fast_aio.pxi"


# The public functions carry the fallback's docstrings, so help() reads the same.
for _name in ("parse", "parse_or_needed", "encode_v1", "encode_v2", "crc32c", "decode_ssl"):
    globals()[_name].__doc__ = getattr(_fb, _name).__doc__
del _name

