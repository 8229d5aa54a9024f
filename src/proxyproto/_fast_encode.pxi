# Encoders: the C twin of _encode.py (included by _fast.pyx).

# ---------------------------------------------------------------------------------------
# Encoding: INET/INET6 addresses and LOCAL in C; anything unusual goes to the fallback.




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
