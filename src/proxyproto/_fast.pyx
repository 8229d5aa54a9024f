# cython: language_level=3, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython twin of ``_fallback``: ``parse``, ``encode_v1``, ``encode_v2``, ``crc32c``.

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
from cpython.long cimport PyLong_Check, PyLong_CheckExact, PyLong_FromLong, PyLong_FromSsize_t
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
from ._errors import IncompleteHeader, NoProxyHeader
from ._header import TLV, Command, ProxyHeader

__all__ = [
    "MAX_V2_SIZE", "V1_MAX_LENGTH", "crc32c", "encode_v1", "encode_v2", "parse", "parse_or_needed",
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


#: The v2 signature, 12 bytes ([SPEC §2.2], R-29).
V2_SIGNATURE = _fb.V2_SIGNATURE
#: The longest v1 line, CRLF included (R-22, R-24).
V1_MAX_LENGTH = _fb.V1_MAX_LENGTH
#: The largest v2 header the spec allows: 16 fixed bytes + a 16-bit length (R-39).
MAX_V2_SIZE = _fb.MAX_V2_SIZE

cdef enum:
    _V1_MAX = 107  # V1_MAX_LENGTH
    _V2_MAX = 16 + 0xFFFF  # MAX_V2_SIZE

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
cdef object _MAX_SIZE_DEFAULT = _fb.MAX_V2_SIZE
cdef object _UNKNOWN_LINE = b"PROXY UNKNOWN\r\n"

# ---------------------------------------------------------------------------------------
# CRC32C (Castagnoli), slicing-by-8 tables built at import (R-50, R-51).

cdef uint32_t _crc_table[8][256]


cdef void _crc_init() noexcept:
    cdef uint32_t crc
    cdef int i, k
    for i in range(256):
        crc = i
        for k in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        _crc_table[0][i] = crc
    for i in range(256):
        for k in range(1, 8):
            _crc_table[k][i] = (_crc_table[k - 1][i] >> 8) ^ _crc_table[0][_crc_table[k - 1][i] & 0xFF]


_crc_init()


cdef uint32_t _crc_update(uint32_t crc, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Advance the (pre-inverted) CRC state over n bytes."""
    cdef uint32_t lo, hi
    while n >= 8:
        lo = crc ^ (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
                    | (<uint32_t>p[3] << 24))
        hi = <uint32_t>p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        crc = (_crc_table[7][lo & 0xFF] ^ _crc_table[6][(lo >> 8) & 0xFF]
               ^ _crc_table[5][(lo >> 16) & 0xFF] ^ _crc_table[4][lo >> 24]
               ^ _crc_table[3][hi & 0xFF] ^ _crc_table[2][(hi >> 8) & 0xFF]
               ^ _crc_table[1][(hi >> 16) & 0xFF] ^ _crc_table[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = _crc_table[0][(crc ^ p[0]) & 0xFF] ^ (crc >> 8)
        p += 1
        n -= 1
    return crc


def crc32c(data, value=0):
    cdef Py_buffer view
    cdef uint32_t crc
    cdef long start
    cdef int overflow = 0
    if not PyLong_CheckExact(value) or not (PyBytes_Check(data) or PyByteArray_Check(data)):
        return _fb.crc32c(data, value)  # unusual types: the fallback's exact semantics
    start = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow or start < 0 or start > 0xFFFFFFFF:
        return _fb.crc32c(data, value)  # Python ints wider than 32 bits keep their high bits
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        crc = _crc_update(<uint32_t>start ^ 0xFFFFFFFFu, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return crc ^ 0xFFFFFFFFu


# ---------------------------------------------------------------------------------------
# Text addresses: strict parsers (the fallback's _is_ipv4/_is_ipv6/_is_port) and
# formatters that write what socket.inet_ntop writes (glibc's RFC 5952 choices).


cdef inline bint _is_digit(uint8_t c) noexcept nogil:
    return 0x30 <= c <= 0x39


# Byte -> hex digit value, or -1; and whether the byte may appear in IPv6 text.
cdef signed char _hex_table[256]
cdef bint _ipv6_char[256]


cdef void _hex_init() noexcept:
    cdef int c
    for c in range(256):
        if 0x30 <= c <= 0x39:
            _hex_table[c] = c - 0x30
        elif 0x61 <= c <= 0x66:
            _hex_table[c] = c - 0x61 + 10
        elif 0x41 <= c <= 0x46:
            _hex_table[c] = c - 0x41 + 10
        else:
            _hex_table[c] = -1
        _ipv6_char[c] = _hex_table[c] >= 0 or c == 0x3A or c == 0x2E


_hex_init()


cdef inline int _hex_value(uint8_t c) noexcept nogil:
    return _hex_table[c]


cdef Py_ssize_t _scan_ipv4(const uint8_t *s, Py_ssize_t n, uint8_t *out) noexcept nogil:
    """Read a dotted quad at the start of s[:n] (octets 0..255, no leading zeros, R-18);
    write its 4 bytes and return its length, or -1. The caller checks what follows."""
    cdef Py_ssize_t i = 0
    cdef int k
    cdef unsigned int octet, digit
    for k in range(4):
        if i >= n:
            return -1
        octet = s[i] - 0x30u
        if octet > 9:
            return -1
        i += 1
        if octet:  # "0" stands alone; otherwise up to two more digits
            if i < n and s[i] - 0x30u <= 9:
                octet = octet * 10 + (s[i] - 0x30u)
                i += 1
                if i < n and s[i] - 0x30u <= 9:
                    octet = octet * 10 + (s[i] - 0x30u)
                    i += 1
                    if octet > 255:
                        return -1
        out[k] = <uint8_t>octet
        if k < 3:
            if i >= n or s[i] != 0x2E:
                return -1
            i += 1
    return i


cdef inline bint _parse_ipv4(const uint8_t *s, Py_ssize_t n, uint8_t *out) noexcept nogil:
    """The whole of s[:n] is a dotted quad (the fallback's _is_ipv4); writes 4 bytes."""
    return _scan_ipv4(s, n, out) == n


cdef bint _parse_ipv6(const uint8_t *s, Py_ssize_t n, uint8_t *out) noexcept nogil:
    """RFC 4291 text, exactly as the fallback's _is_ipv6 accepts it; writes 16 bytes.

    One pass: groups of 1-4 hex digits separated by ':', at most one "::" (standing for
    one group or more), and optionally a dotted IPv4 tail standing for the last two.
    """
    cdef uint32_t groups[8]
    cdef int count = 0, double = -1, k, digits, v
    cdef Py_ssize_t i = 0, start
    cdef uint32_t value
    cdef uint8_t v4[4]
    if n < 2 or n > 45:
        return False
    if s[0] == 0x3A:  # a leading ':' must start "::"
        if s[1] != 0x3A:
            return False
        double = 0
        i = 2
    while i < n:
        start = i
        value = 0
        digits = 0
        while i < n and digits < 5:
            v = _hex_value(s[i])
            if v < 0:
                break
            value = (value << 4) | <uint32_t>v
            digits += 1
            i += 1
        if i < n and s[i] == 0x2E:  # a dotted IPv4 tail: the last two groups
            if _scan_ipv4(s + start, n - start, v4) != n - start:
                return False
            if (count > 5) if double >= 0 else (count != 6):
                return False  # seven groups at most with "::", eight without (and groups[])
            groups[count] = (<uint32_t>v4[0] << 8) | v4[1]
            groups[count + 1] = (<uint32_t>v4[2] << 8) | v4[3]
            count += 2
            break
        if digits == 0 or digits > 4 or count == 8:
            return False
        groups[count] = value
        count += 1
        if i == n:
            break
        if s[i] != 0x3A:
            return False
        i += 1
        if i < n and s[i] == 0x3A:
            if double >= 0:
                return False
            double = count
            i += 1
        elif i == n:
            return False  # a trailing single ':'
    if double < 0:
        if count != 8:
            return False
        for k in range(8):
            out[2 * k] = <uint8_t>(groups[k] >> 8)
            out[2 * k + 1] = <uint8_t>groups[k]
        return True
    if count > 7:
        return False
    memset(out, 0, 16)
    for k in range(double):
        out[2 * k] = <uint8_t>(groups[k] >> 8)
        out[2 * k + 1] = <uint8_t>groups[k]
    for k in range(double, count):
        out[2 * (8 - count + k)] = <uint8_t>(groups[k] >> 8)
        out[2 * (8 - count + k) + 1] = <uint8_t>groups[k]
    return True


cdef Py_ssize_t _scan_port(const uint8_t *s, Py_ssize_t n, long *port) noexcept nogil:
    """Read a port at the start of s[:n]: 0..65535, no sign, no leading zero (R-21, A-15).
    Store it and return its length, or -1. The caller checks what follows."""
    cdef Py_ssize_t i = 0
    cdef unsigned long value
    if n < 1 or s[0] - 0x30u > 9:
        return -1
    value = s[0] - 0x30u
    i = 1
    if value:
        while i < n and i < 5 and s[i] - 0x30u <= 9:
            value = value * 10 + (s[i] - 0x30u)
            i += 1
        if value > 0xFFFF:
            return -1
    port[0] = <long>value
    return i


# "0".."255" as text, 4 bytes a row (copied whole), and each one's length.
cdef char _octet_text[256][4]
cdef uint8_t _octet_len[256]


cdef void _octet_init() noexcept:
    cdef int v
    for v in range(256):
        memset(_octet_text[v], 0, 4)
        if v >= 100:
            _octet_text[v][0] = <char>(0x30 + v // 100)
            _octet_text[v][1] = <char>(0x30 + v // 10 % 10)
            _octet_text[v][2] = <char>(0x30 + v % 10)
            _octet_len[v] = 3
        elif v >= 10:
            _octet_text[v][0] = <char>(0x30 + v // 10)
            _octet_text[v][1] = <char>(0x30 + v % 10)
            _octet_len[v] = 2
        else:
            _octet_text[v][0] = <char>(0x30 + v)
            _octet_len[v] = 1


_octet_init()


cdef inline Py_ssize_t _format_ipv4(const uint8_t *a, char *out) noexcept nogil:
    """Write a.b.c.d; return its length (7..15). ``out`` needs 3 spare bytes past it."""
    cdef Py_ssize_t n
    memcpy(out, _octet_text[a[0]], 4)
    n = _octet_len[a[0]]
    out[n] = b'.'
    memcpy(out + n + 1, _octet_text[a[1]], 4)
    n += 1 + _octet_len[a[1]]
    out[n] = b'.'
    memcpy(out + n + 1, _octet_text[a[2]], 4)
    n += 1 + _octet_len[a[2]]
    out[n] = b'.'
    memcpy(out + n + 1, _octet_text[a[3]], 4)
    return n + 1 + _octet_len[a[3]]


cdef inline Py_ssize_t _format_hex16(uint32_t w, char *out) noexcept nogil:
    """Lowercase hex without leading zeros (what "%x" writes)."""
    if w >= 0x1000:
        out[0] = _HEX[w >> 12]
        out[1] = _HEX[(w >> 8) & 0xF]
        out[2] = _HEX[(w >> 4) & 0xF]
        out[3] = _HEX[w & 0xF]
        return 4
    if w >= 0x100:
        out[0] = _HEX[w >> 8]
        out[1] = _HEX[(w >> 4) & 0xF]
        out[2] = _HEX[w & 0xF]
        return 3
    if w >= 0x10:
        out[0] = _HEX[w >> 4]
        out[1] = _HEX[w & 0xF]
        return 2
    out[0] = _HEX[w]
    return 1


cdef Py_ssize_t _format_ipv6(const uint8_t *a, char *out) noexcept nogil:
    """Write what glibc's inet_ntop writes: the longest run (>= 2, first on ties) of zero
    groups as "::", lowercase hex, and ::a.b.c.d / ::ffff:a.b.c.d for embedded IPv4."""
    cdef uint32_t words[8]
    cdef int i, best_base = -1, best_len = 0, cur_base = -1, cur_len = 0
    cdef Py_ssize_t n = 0
    for i in range(8):
        words[i] = (<uint32_t>a[2 * i] << 8) | a[2 * i + 1]
        if words[i] == 0:
            if cur_base < 0:
                cur_base = i
                cur_len = 0
            cur_len += 1
            if cur_len > best_len:
                best_base = cur_base
                best_len = cur_len
        else:
            cur_base = -1
    if best_len < 2:
        # No run to compress: eight groups.
        for i in range(8):
            if i:
                out[n] = b':'
                n += 1
            n += _format_hex16(words[i], out + n)
        return n
    if best_base == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        # IPv4-compatible ::a.b.c.d and IPv4-mapped ::ffff:a.b.c.d.
        memcpy(out, b"::ffff:", 7)
        n = 7 if best_len == 5 else 2
        return n + _format_ipv4(a + 12, out + n)
    for i in range(best_base):
        n += _format_hex16(words[i], out + n)
        out[n] = b':'
        n += 1
    if best_base == 0:
        out[n] = b':'
        n += 1
    for i in range(best_base + best_len, 8):
        out[n] = b':'
        n += 1
        n += _format_hex16(words[i], out + n)
    if best_base + best_len == 8:
        out[n] = b':'
        n += 1
    return n


cdef Py_ssize_t _format_port(long port, char *out) noexcept nogil:
    cdef char digits[8]
    cdef Py_ssize_t n = 0, k
    while True:
        digits[n] = <char>(0x30 + port % 10)
        n += 1
        port //= 10
        if port == 0:
            break
    for k in range(n):
        out[k] = digits[n - 1 - k]
    return n


# ---------------------------------------------------------------------------------------
# TLV value rules shared by the parser and encode_v2 (the fallback's _tlv_error).


cdef bint _is_ascii(const uint8_t *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] & 0x80:
            return False
    return True


cdef bint _is_utf8(const uint8_t *s, Py_ssize_t n) noexcept nogil:
    """What bytes.decode("utf-8") accepts: no overlongs, surrogates or code points past
    U+10FFFF, no truncated sequence."""
    cdef Py_ssize_t i = 0, k, follow
    cdef uint8_t c, low, high
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        # The lead byte fixes how many bytes follow and the range of the first of them
        # (E0 and F0 exclude overlongs, ED surrogates, F4 code points past U+10FFFF).
        low = 0x80
        high = 0xBF
        if c < 0xE0:
            follow = 1
        elif c < 0xF0:
            follow = 2
            if c == 0xE0:
                low = 0xA0
            elif c == 0xED:
                high = 0x9F
        else:
            follow = 3
            if c == 0xF0:
                low = 0x90
            elif c == 0xF4:
                high = 0x8F
        if i + follow >= n or not low <= s[i + 1] <= high:
            return False
        for k in range(i + 2, i + follow + 1):
            if (s[k] & 0xC0) != 0x80:
                return False
        i += follow + 1
    return True


cdef bint _ssl_valid(const uint8_t *v, Py_ssize_t n) noexcept nogil:
    """R-54..R-57: client(1) verify(4), then sub-TLVs tiling the value exactly (R-60)."""
    cdef Py_ssize_t pos = 5, sub_len
    cdef uint8_t sub_type
    if n < 5:
        return False
    while pos < n:
        if n - pos < 3:
            return False
        sub_type = v[pos]
        sub_len = (<Py_ssize_t>v[pos + 1] << 8) | v[pos + 2]
        if pos + 3 + sub_len > n:
            return False
        if sub_type == 0x21 or 0x23 <= sub_type <= 0x27:
            if not _is_ascii(v + pos + 3, sub_len):
                return False
        elif sub_type == 0x22:
            if not _is_utf8(v + pos + 3, sub_len):
                return False
        pos += 3 + sub_len
    return True


cdef bint _tlv_valid(uint8_t tlv_type, const uint8_t *v, Py_ssize_t n) noexcept nogil:
    if tlv_type == 0x03:  # CRC32C: exactly 4 bytes (A-11)
        return n == 4
    if tlv_type == 0x05:  # UNIQUE_ID: at most 128 bytes (R-53)
        return n <= 128
    if tlv_type == 0x02:  # AUTHORITY: UTF-8 (R-60)
        return _is_utf8(v, n)
    if tlv_type == 0x30:  # NETNS: US-ASCII (R-58)
        return _is_ascii(v, n)
    if tlv_type == 0x20:  # SSL
        return _ssl_valid(v, n)
    return True


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


cdef inline object _ipv4_str(const uint8_t *a):
    cdef char text[20]
    cdef Py_ssize_t n = _format_ipv4(a, text)
    return pp_ascii_str(text, n)


cdef inline object _ipv6_str(const uint8_t *a):
    cdef char text[48]
    cdef Py_ssize_t n = _format_ipv6(a, text)
    return pp_ascii_str(text, n)


# ---------------------------------------------------------------------------------------
# Version 1 ([SPEC §2.1]): complete, valid lines only; anything else returns None.


cdef inline Py_ssize_t _v1_line_end(const uint8_t *p, Py_ssize_t pos, Py_ssize_t limit) noexcept nogil:
    """The index of the first CR or LF at or after pos, or limit."""
    while pos < limit and p[pos] != 0x0D and p[pos] != 0x0A:
        pos += 1
    return pos


cdef Py_ssize_t _v1_address(const uint8_t *p, Py_ssize_t pos, Py_ssize_t limit, bint v6,
                            uint8_t *out) noexcept nogil:
    """Read the address field at pos (TCP4: a dotted quad; TCP6: IPv6 text) and the single
    space after it, writing the packed address; return where the next field starts, or -1.
    """
    cdef Py_ssize_t end
    if v6:
        # A field holding any other byte is no IPv6 text, so stopping there is enough.
        end = pos
        while end < limit and _ipv6_char[p[end]]:
            end += 1
        if not _parse_ipv6(p + pos, end - pos, out):
            return -1
    else:
        end = _scan_ipv4(p + pos, limit - pos, out)
        if end < 0:
            return -1
        end += pos
    if end >= limit or p[end] != 0x20:
        return -1
    return end + 1


cdef object _parse_v1(const uint8_t *p, Py_ssize_t size):
    """A complete, valid v1 line ([SPEC §2.1], R-12..R-26); None for anything else."""
    # The fallback finds the first CRLF within 107 bytes (R-22, R-24), rejects any other
    # CR or LF before it (R-26), then splits on single spaces.
    cdef Py_ssize_t limit = size if size < _V1_MAX else _V1_MAX
    cdef Py_ssize_t pos, n, src_at, dst_at, ports_at
    cdef uint8_t src[16]
    cdef uint8_t dst[16]
    cdef long sport, dport
    cdef bint v6
    cdef object src_host, dst_host, family
    if limit < 15 or p[5] != 0x20:
        return None
    if memcmp(p + 6, b"UNKNOWN", 7) == 0 and (p[13] == 0x20 or p[13] == 0x0D):
        # R-15/R-16: anything after "UNKNOWN " up to the CRLF is ignored.
        pos = _v1_line_end(p, 13, limit)
        if pos + 1 >= limit or p[pos] != 0x0D or p[pos + 1] != 0x0A:
            return None
        return _new_header(_ONE, _PROXY, _AF_UNSPEC, None, None, None, _EMPTY, pos + 2)
    if memcmp(p + 6, b"TCP", 3) != 0 or p[10] != 0x20 or (p[9] != 0x34 and p[9] != 0x36):
        return None
    # "PROXY TCPx SRC DST SPORT DPORT\r\n": single spaces, nothing else (R-17..R-21).
    v6 = p[9] == 0x36
    src_at = 11
    dst_at = _v1_address(p, src_at, limit, v6, src)
    if dst_at < 0:
        return None
    ports_at = pos = _v1_address(p, dst_at, limit, v6, dst)
    if pos < 0:
        return None
    n = _scan_port(p + pos, limit - pos, &sport)
    if n < 0 or pos + n >= limit or p[pos + n] != 0x20:
        return None
    pos += n + 1
    n = _scan_port(p + pos, limit - pos, &dport)
    if n < 0 or pos + n + 1 >= limit or p[pos + n] != 0x0D or p[pos + n + 1] != 0x0A:
        return None
    pos += n + 2  # the header's length
    if not v6:  # a valid dotted quad is already canonical
        family = _AF_INET
        src_host = pp_ascii_str(<const char *>p + src_at, dst_at - 1 - src_at)
        dst_host = pp_ascii_str(<const char *>p + dst_at, ports_at - 1 - dst_at)
    else:
        family = _AF_INET6
        src_host = _ipv6_str(src)
        dst_host = _ipv6_str(dst)
    return _new_header(_ONE, _PROXY, family, _STREAM, _address(src_host, sport),
                       _address(dst_host, dport), _EMPTY, pos)


# ---------------------------------------------------------------------------------------
# Version 2 ([SPEC §2.2])


cdef object _parse_tlvs(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end):
    """The TLVs tiling p[pos:end] (R-48..R-60, CRC32C verified), or None if invalid."""
    cdef Py_ssize_t start = pos, crc_pos = -1, size, count = 0, i
    cdef uint8_t tlv_type
    cdef uint32_t crc
    cdef object tlvs, tlv
    while pos < end:
        if end - pos < 3:
            return None
        tlv_type = p[pos]
        size = (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
        if pos + 3 + size > end:
            return None
        if tlv_type == 0x03:
            if crc_pos >= 0:
                return None  # more than one CRC32C TLV
            crc_pos = pos + 3
        if not _tlv_valid(tlv_type, p + pos + 3, size):
            return None
        count += 1
        pos += 3 + size
    if crc_pos >= 0:
        crc = _crc_update(0xFFFFFFFFu, p, crc_pos)
        crc = _crc_update(crc, _ZEROS, 4)
        crc = _crc_update(crc, p + crc_pos + 4, end - crc_pos - 4) ^ 0xFFFFFFFFu
        if crc != ((<uint32_t>p[crc_pos] << 24) | (<uint32_t>p[crc_pos + 1] << 16)
                   | (<uint32_t>p[crc_pos + 2] << 8) | p[crc_pos + 3]):
            return None
    if count == 0:
        return _EMPTY
    tlvs = PyTuple_New(count)
    pos = start
    for i in range(count):
        size = (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
        tlv = pp_tuple_alloc(_TLV, 2)
        _put(tlv, 0, PyLong_FromLong(p[pos]))
        _put(tlv, 1, PyBytes_FromStringAndSize(<const char *>p + pos + 3, size))
        _put(tlvs, i, tlv)
        pos += 3 + size
    return tlvs


cdef object _unix_path(const uint8_t *raw):
    """A-9: the path up to the first NUL; a Linux abstract name (leading NUL) stays bytes."""
    cdef Py_ssize_t n = 108
    if raw[0] == 0:
        while n > 0 and raw[n - 1] == 0:
            n -= 1
        if n == 0:
            return ""
        return PyBytes_FromStringAndSize(<const char *>raw, n)
    n = 0
    while n < 108 and raw[n] != 0:
        n += 1
    return PyUnicode_DecodeUTF8(<const char *>raw, n, "surrogateescape")


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


cdef object _parse_v2(const uint8_t *p, Py_ssize_t size, Py_ssize_t max_size,
                      Verdict *verdict):
    cdef Py_ssize_t present = size if size < 12 else 12
    cdef Py_ssize_t offset, length, total, block
    cdef uint8_t command, family_byte
    cdef object family, transport, source, destination, tlvs
    if (memcmp(p, _SIG, 12) if present == 12 else memcmp(p, _SIG, present)) != 0:
        for offset in range(present):
            if p[offset] != <uint8_t>_SIG[offset]:
                return _refuse(verdict, _NOT_V2, offset)
    if size < 13:
        return _refuse(verdict, _INCOMPLETE, 16 - size)
    if p[12] >> 4 != 2:  # R-30
        return None
    command = p[12] & 0x0F
    if command > 1:  # R-31
        return None
    if size < 14:
        return _refuse(verdict, _INCOMPLETE, 16 - size)
    # R-37: the seven defined values of byte 14 (R-35, R-36, A-8).
    family_byte = p[13]
    if family_byte == 0x11 or family_byte == 0x12:
        family = _AF_INET
        block = 12
    elif family_byte == 0x21 or family_byte == 0x22:
        family = _AF_INET6
        block = 36
    elif family_byte == 0x31 or family_byte == 0x32:
        family = _AF_UNIX
        block = 216
    elif family_byte == 0x00:
        family = _AF_UNSPEC
        block = 0
    else:
        return None
    transport = None if block == 0 else _STREAM if family_byte & 0x0F == 1 else _DGRAM
    if size < 16:
        return _refuse(verdict, _INCOMPLETE, 16 - size)
    length = (<Py_ssize_t>p[14] << 8) | p[15]
    if command and length < block:  # R-47
        return None
    total = 16 + length
    if total > max_size:  # R-65, A-10
        return None
    if size < total:
        return _refuse(verdict, _INCOMPLETE, total - size)
    if not command:
        # R-32, R-40, A-6: LOCAL -> real endpoints; honour len; TLVs after the block.
        if length >= block:
            tlvs = _parse_tlvs(p, 16 + block, total)
            if tlvs is None:
                return None
        else:
            tlvs = _EMPTY
        return _new_header(_TWO, _LOCAL, family, transport, None, None, tlvs, total)
    if total > 16 + block:
        tlvs = _parse_tlvs(p, 16 + block, total)
        if tlvs is None:
            return None
    else:
        tlvs = _EMPTY
    if block == 12:
        source = _address(_ipv4_str(p + 16), (<long>p[24] << 8) | p[25])
        destination = _address(_ipv4_str(p + 20), (<long>p[26] << 8) | p[27])
    elif block == 36:
        source = _address(_ipv6_str(p + 16), (<long>p[48] << 8) | p[49])
        destination = _address(_ipv6_str(p + 32), (<long>p[50] << 8) | p[51])
    elif block == 216:
        source = _unix_path(p + 16)
        destination = _unix_path(p + 124)
    else:  # A-7: PROXY with AF_UNSPEC: accepted, use the real endpoints
        source = destination = None
    return _new_header(_TWO, _PROXY, family, transport, source, destination, tlvs, total)


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


cdef object _snapshot(object data, Py_ssize_t cap):
    """A private ``bytes`` copy of the header part of a mutable buffer, or ``None``.

    A ``bytearray`` or ``memoryview`` may change while it is parsed: the parser's own
    allocations can run the garbage collector (and so any Python code), and another process
    may write shared memory at any time. So the C path never reads such a buffer twice: it
    copies the first 16 bytes, learns from that copy how much the header can span (the v2
    length, capped by ``cap``; the 107 bytes of a v1 line), copies at most that much, and
    parses only the copy. Nothing between the two copies runs Python code, and the length
    field in the copy is the one that sized it. ``None``: not a contiguous buffer of those
    types (the fallback copies it, or raises the TypeError).
    """
    cdef Py_buffer view
    cdef uint8_t head[16]
    cdef Py_ssize_t size, n, total
    cdef object copy
    cdef char *out
    if not (PyByteArray_Check(data) or PyMemoryView_Check(data)):
        return None
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)  # pins a bytearray's size
    except Exception:
        return None  # released or not contiguous: the fallback copies it
    try:
        size = view.len
        n = size if size < 16 else 16
        memcpy(head, view.buf, n)
        total = n
        if n == 16 and head[0] == 0x0D:
            total = 16 + ((<Py_ssize_t>head[14] << 8) | head[15])
            if total > cap:
                total = 16  # HeaderTooLarge needs the 16 fixed bytes only
        elif n and head[0] == 0x50:
            total = _V1_MAX
        if total > size:
            total = size
        copy = PyBytes_FromStringAndSize(NULL, total)
        out = PyBytes_AS_STRING(copy)
        memcpy(out, head, n)
        if total > n:
            memcpy(out + n, <const char *>view.buf + n, total - n)
    finally:
        PyBuffer_Release(&view)
    return copy


cdef object _parse_c(object data, Py_ssize_t cap, Verdict *verdict):
    """The C path over immutable ``bytes``: a header, or None and the verdict (see _error)."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
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


def parse(data, *, max_size=MAX_V2_SIZE):
    cdef Verdict verdict
    cdef Py_ssize_t cap = _cap_of(max_size)
    verdict.code = _DEFER
    if cap >= 0:
        if not PyBytes_Check(data):  # bytes (and its subclasses) are immutable: no copy
            snapshot = _snapshot(data, cap)
            if snapshot is not None:
                data = snapshot  # the fallback, too, sees only the snapshot
        if PyBytes_Check(data):
            header = _parse_c(data, cap, &verdict)
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
        if not PyBytes_Check(data):
            snapshot = _snapshot(data, cap)
            if snapshot is not None:
                data = snapshot
        if PyBytes_Check(data):
            header = _parse_c(data, cap, &verdict)
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
    if not PyBytes_Check(data):
        data = _snapshot(data, cap)
        if data is None:
            return None
    header = _parse_c(data, cap, &verdict)
    if header is None and verdict.code != _DEFER:
        raise _error(&verdict)
    return header


# ---------------------------------------------------------------------------------------
# Encoding: INET/INET6 addresses and LOCAL in C; anything unusual goes to the fallback.


cdef int _pack_host(object host, uint8_t *out) except -1:
    """Packed host (returns 4 or 16), or 0 when not a plain ASCII str address."""
    cdef const uint8_t *s
    cdef Py_ssize_t n
    if type(host) is not str:
        return 0
    pp_str_ready(host)
    if not PyUnicode_IS_ASCII(host):
        return 0
    s = <const uint8_t *>PyUnicode_DATA(host)
    n = PyUnicode_GET_LENGTH(host)
    if _parse_ipv4(s, n, out):
        return 4
    if _parse_ipv6(s, n, out):
        return 16
    return 0


cdef long _pack_port(object port) except -2:
    """0..65535, or -1 when not a plain int in range."""
    cdef int overflow = 0
    cdef long value
    if not PyLong_CheckExact(port):
        return -1
    value = PyLong_AsLongAndOverflow(port, &overflow)
    if overflow or value < 0 or value > 0xFFFF:
        return -1
    return value


cdef int _inet_pair(object source, object destination, uint8_t *src, uint8_t *dst,
                    long *ports) except -1:
    """Both addresses packed (IPv4 mapped into IPv6 for a mixed pair): 4 or 16, else 0."""
    cdef int src_len, dst_len
    if not (PyTuple_CheckExact(source) and PyTuple_GET_SIZE(source) == 2
            and PyTuple_CheckExact(destination) and PyTuple_GET_SIZE(destination) == 2):
        return 0
    src_len = _pack_host(<object>PyTuple_GET_ITEM(source, 0), src)
    dst_len = _pack_host(<object>PyTuple_GET_ITEM(destination, 0), dst)
    ports[0] = _pack_port(<object>PyTuple_GET_ITEM(source, 1))
    ports[1] = _pack_port(<object>PyTuple_GET_ITEM(destination, 1))
    if src_len == 0 or dst_len == 0 or ports[0] < 0 or ports[1] < 0:
        return 0
    if src_len != dst_len:
        if src_len == 4:
            _map_ipv4(src)
        else:
            _map_ipv4(dst)
        return 16
    return src_len


cdef inline void _map_ipv4(uint8_t *a) noexcept nogil:
    """a[0:4] becomes ::ffff:a.b.c.d in a[0:16]."""
    memcpy(a + 12, a, 4)
    memset(a, 0, 10)
    a[10] = 0xFF
    a[11] = 0xFF


cdef object _encode_v1_c(object source, object destination):
    cdef uint8_t src[16]
    cdef uint8_t dst[16]
    cdef long ports[2]
    cdef char line[128]
    cdef Py_ssize_t n
    cdef int size
    if source is None and destination is None:
        return _UNKNOWN_LINE
    size = _inet_pair(source, destination, src, dst, ports)
    if size == 0:
        return None
    memcpy(line, b"PROXY TCP4 ", 11)
    if size == 4:
        n = 11
        n += _format_ipv4(src, line + n)
        line[n] = b' '
        n += 1
        n += _format_ipv4(dst, line + n)
    else:
        line[9] = b'6'
        n = 11
        n += _format_ipv6(src, line + n)
        line[n] = b' '
        n += 1
        n += _format_ipv6(dst, line + n)
    line[n] = b' '
    n += 1
    n += _format_port(ports[0], line + n)
    line[n] = b' '
    n += 1
    n += _format_port(ports[1], line + n)
    line[n] = b'\r'
    line[n + 1] = b'\n'
    return PyBytes_FromStringAndSize(line, n + 2)


def encode_v1(source, destination):
    line = _encode_v1_c(source, destination)
    if line is None:
        return _fb.encode_v1(source, destination)
    return line


def _encode_v1_c_only(source, destination):
    """Test hook: ``encode_v1`` without the fallback; ``None`` where it would defer."""
    return _encode_v1_c(source, destination)


cdef object _encode_v2_c(object source, object destination, object transport, object tlvs,
                         object crc32c):
    cdef uint8_t src[16]
    cdef uint8_t dst[16]
    cdef long ports[2]
    cdef int transport_bits, size = 0, tlv_type, overflow = 0
    cdef uint8_t command_byte, family_byte
    cdef Py_ssize_t block, body, count, i, n, pos
    cdef bint with_crc
    cdef object item, value, result
    cdef uint8_t *out
    cdef uint32_t crc
    # transport == SOCK_STREAM / SOCK_DGRAM, for the usual types only.
    if transport is _STREAM:
        transport_bits = 1
    elif transport is _DGRAM:
        transport_bits = 2
    elif PyLong_CheckExact(transport) and (transport == 1 or transport == 2):
        transport_bits = transport
    else:
        return None
    if source is None and destination is None:
        command_byte, family_byte, block = 0x20, 0x00, 0
    else:
        size = _inet_pair(source, destination, src, dst, ports)
        if size == 0:
            return None  # UNIX paths, odd types and every error: the fallback
        command_byte = 0x21
        family_byte = (0x10 if size == 4 else 0x20) | transport_bits
        block = 12 if size == 4 else 36
    if crc32c is True:
        with_crc = True
    elif crc32c is False:
        with_crc = False
    else:
        return None
    if PyList_CheckExact(tlvs):
        tlvs = PyList_AsTuple(tlvs)  # a snapshot: nothing can change it between passes
    elif not PyTuple_CheckExact(tlvs):
        return None  # a one-shot iterator must not be consumed before deferring
    count = PyTuple_GET_SIZE(tlvs)
    # First pass: validate every TLV (R-48..R-60) and size the body.
    body = block + (7 if with_crc else 0)
    for i in range(count):
        item = <object>PyTuple_GET_ITEM(tlvs, i)
        if not ((type(item) is tuple or type(item) is _TLV) and PyTuple_GET_SIZE(item) == 2):
            return None
        value = <object>PyTuple_GET_ITEM(item, 1)
        if (not PyLong_Check(<object>PyTuple_GET_ITEM(item, 0))
                or PyBool_Check(<object>PyTuple_GET_ITEM(item, 0))
                or not PyBytes_CheckExact(value)):
            return None  # the fallback raises the TypeError (a bool is no TLV type)
        tlv_type = PyLong_AsLongAndOverflow(<object>PyTuple_GET_ITEM(item, 0), &overflow)
        n = PyBytes_GET_SIZE(value)
        if (overflow or tlv_type < 0 or tlv_type > 0xFF or tlv_type == 0x03 or n > 0xFFFF
                or not _tlv_valid(<uint8_t>tlv_type, <const uint8_t *>PyBytes_AS_STRING(value), n)):
            return None
        body += 3 + n
    if body > 0xFFFF:
        return None
    # Second pass: write the header.
    result = PyBytes_FromStringAndSize(NULL, 16 + body)
    out = <uint8_t *>PyBytes_AS_STRING(result)
    memcpy(out, _SIG, 12)
    out[12] = command_byte
    out[13] = family_byte
    out[14] = <uint8_t>(body >> 8)
    out[15] = <uint8_t>body
    pos = 16
    if block:
        memcpy(out + pos, src, size)
        memcpy(out + pos + size, dst, size)
        pos += 2 * size
        out[pos] = <uint8_t>(ports[0] >> 8)
        out[pos + 1] = <uint8_t>ports[0]
        out[pos + 2] = <uint8_t>(ports[1] >> 8)
        out[pos + 3] = <uint8_t>ports[1]
        pos += 4
    for i in range(count):
        item = <object>PyTuple_GET_ITEM(tlvs, i)
        value = <object>PyTuple_GET_ITEM(item, 1)
        n = PyBytes_GET_SIZE(value)
        out[pos] = <uint8_t>PyLong_AsLongAndOverflow(<object>PyTuple_GET_ITEM(item, 0), &overflow)
        out[pos + 1] = <uint8_t>(n >> 8)
        out[pos + 2] = <uint8_t>n
        memcpy(out + pos + 3, PyBytes_AS_STRING(value), n)
        pos += 3 + n
    if with_crc:
        memcpy(out + pos, b"\x03\x00\x04\x00\x00\x00\x00", 7)
        crc = _crc_update(0xFFFFFFFFu, out, pos + 7) ^ 0xFFFFFFFFu
        out[pos + 3] = <uint8_t>(crc >> 24)
        out[pos + 4] = <uint8_t>(crc >> 16)
        out[pos + 5] = <uint8_t>(crc >> 8)
        out[pos + 6] = <uint8_t>crc
    return result


def encode_v2(source, destination, *, transport=socket.SOCK_STREAM, tlvs=(), crc32c=False):
    header = _encode_v2_c(source, destination, transport, tlvs, crc32c)
    if header is None:
        return _fb.encode_v2(source, destination, transport=transport, tlvs=tlvs,
                             crc32c=crc32c)
    return header


def _encode_v2_c_only(source, destination, *, transport=socket.SOCK_STREAM, tlvs=(),
                      crc32c=False):
    """Test hook: ``encode_v2`` without the fallback; ``None`` where it would defer."""
    return _encode_v2_c(source, destination, transport, tlvs, crc32c)


# The public functions carry the fallback's docstrings, so help() reads the same.
for _name in ("parse", "encode_v1", "encode_v2", "crc32c"):
    globals()[_name].__doc__ = getattr(_fb, _name).__doc__
del _name
