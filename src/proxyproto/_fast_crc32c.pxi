# CRC32C: the C twin of _crc32c.py (included by _fast.pyx).

# ---------------------------------------------------------------------------------------
# CRC32C (Castagnoli), slicing-by-8 tables built at import (R-50, R-51).

cdef uint32_t _crc_table[8][256]


cdef void _crc_init() noexcept:
    cdef uint32_t crc
    cdef int i, k
    for i in range(256):
        crc = i
        for k in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
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
