# Version 2 and TLVs: the C twin of _v2.py (included by _fast.pyx).

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
    cdef Py_ssize_t pos = _SSL_FIXED, sub_len
    cdef uint8_t sub_type
    if n < _SSL_FIXED:
        return False
    while pos < n:
        if n - pos < 3:
            return False
        sub_type = v[pos]
        sub_len = (<Py_ssize_t>v[pos + 1] << 8) | v[pos + 2]
        if pos + 3 + sub_len > n:
            return False
        if sub_type == _SSL_VERSION or 0x23 <= sub_type <= 0x27:
            if not _is_ascii(v + pos + 3, sub_len):
                return False
        elif sub_type == _SSL_CN:
            if not _is_utf8(v + pos + 3, sub_len):
                return False
        pos += 3 + sub_len
    return True


cdef bint _tlv_valid(uint8_t tlv_type, const uint8_t *v, Py_ssize_t n) noexcept nogil:
    if tlv_type == _TYPE_CRC32C:  # exactly 4 bytes (A-11)
        return n == _CRC32C_SIZE
    if tlv_type == _TYPE_UNIQUE_ID:  # at most 128 bytes (R-53)
        return n <= _UNIQUE_ID_MAX
    if tlv_type == _TYPE_AUTHORITY:  # UTF-8 (R-60)
        return _is_utf8(v, n)
    if tlv_type == _TYPE_NETNS:  # US-ASCII (R-58)
        return _is_ascii(v, n)
    if tlv_type == _TYPE_SSL:
        return _ssl_valid(v, n)
    return True


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
        block = _INET4_BLOCK
    elif family_byte == 0x21 or family_byte == 0x22:
        family = _AF_INET6
        block = _INET6_BLOCK
    elif family_byte == 0x31 or family_byte == 0x32:
        family = _AF_UNIX
        block = _UNIX_BLOCK
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
    if block == _INET4_BLOCK:
        source = _address(_ipv4_str(p + 16), (<long>p[24] << 8) | p[25])
        destination = _address(_ipv4_str(p + 20), (<long>p[26] << 8) | p[27])
    elif block == _INET6_BLOCK:
        source = _address(_ipv6_str(p + 16), (<long>p[48] << 8) | p[49])
        destination = _address(_ipv6_str(p + 32), (<long>p[50] << 8) | p[51])
    elif block == _UNIX_BLOCK:
        source = _unix_path(p + 16)
        destination = _unix_path(p + 124)
    else:  # A-7: PROXY with AF_UNSPEC: accepted, use the real endpoints
        source = destination = None
    return _new_header(_TWO, _PROXY, family, transport, source, destination, tlvs, total)


# ---------------------------------------------------------------------------------------
# The SSL TLV as an SSLInfo (the reference's decode_ssl), built in C for a valid value.

# SSLInfo's slots, in order; the C decoder fills them directly only while the class has
# exactly this layout (otherwise every value goes to the reference).
cdef tuple _SSL_SLOTS = ("client", "verify", "version", "cn", "cipher", "sig_alg", "key_alg",
                         "group", "sig_scheme", "client_cert", "sub_tlvs")
cdef object _SSLInfo = SSLInfo
cdef bint _SSL_LAYOUT = tuple(getattr(SSLInfo, "_fields", ())) == _SSL_SLOTS


cdef object _decode_ssl_c(object value):
    """The SSLInfo of a valid SSL TLV value (``bytes``), or None to defer to the reference."""
    cdef const uint8_t *v
    cdef Py_ssize_t n, pos, sub_len, count = 0, i = 0, slot
    cdef uint8_t sub_type
    cdef bint seen[12]
    cdef object info, subs, sub_value, text, tlv
    if not _SSL_LAYOUT or not PyBytes_CheckExact(value):
        return None
    v = <const uint8_t *>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    if not _ssl_valid(v, n):
        return None  # the reference raises its own error, or decodes what it accepts
    pos = _SSL_FIXED
    while pos < n:
        count += 1
        pos += 3 + ((<Py_ssize_t>v[pos + 1] << 8) | v[pos + 2])
    subs = PyTuple_New(count)
    info = pp_tuple_alloc(_SSLInfo, 11)
    memset(seen, 0, sizeof(seen))
    _put(info, 0, PyLong_FromLong(v[0]))
    _put(info, 1, PyLong_FromUnsignedLong((<unsigned long>v[1] << 24) | (<unsigned long>v[2] << 16)
                                          | (<unsigned long>v[3] << 8) | v[4]))
    pos = _SSL_FIXED
    while pos < n:
        sub_type = v[pos]
        sub_len = (<Py_ssize_t>v[pos + 1] << 8) | v[pos + 2]
        sub_value = PyBytes_FromStringAndSize(<const char *>v + pos + 3, sub_len)
        tlv = pp_tuple_alloc(_TLV, 2)
        _put(tlv, 0, PyLong_FromLong(sub_type))
        _put(tlv, 1, sub_value)
        _put(subs, i, tlv)
        i += 1
        # First occurrence only: 0x21..0x27 are slots 2..8 (text), 0x28 slot 9 (bytes).
        if _SSL_VERSION <= sub_type <= _SSL_CLIENT_CERT:
            slot = sub_type - _SSL_VERSION + 2
            if not seen[slot]:
                seen[slot] = True
                if sub_type == _SSL_CLIENT_CERT:
                    text = sub_value
                elif sub_type == _SSL_CN:
                    text = PyUnicode_DecodeUTF8(<const char *>v + pos + 3, sub_len, NULL)
                else:
                    text = pp_ascii_str(<const char *>v + pos + 3, sub_len)
                _put(info, slot, text)
        pos += 3 + sub_len
    for slot in range(2, 10):
        if not seen[slot]:
            _put(info, slot, None)
    _put(info, 10, subs)
    return info


def decode_ssl(value):
    info = _decode_ssl_c(value)
    if info is None:
        return _fb.decode_ssl(value)
    return info
