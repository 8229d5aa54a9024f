# Address grammar: the C twin of _address.py (included by _fast.pyx).

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




cdef inline object _ipv4_str(const uint8_t *a):
    cdef char text[20]
    cdef Py_ssize_t n = _format_ipv4(a, text)
    return pp_ascii_str(text, n)


cdef inline object _ipv6_str(const uint8_t *a):
    cdef char text[48]
    cdef Py_ssize_t n = _format_ipv6(a, text)
    return pp_ascii_str(text, n)




cdef object _unix_path(const uint8_t *raw):
    """A-9: the path up to the first NUL; a Linux abstract name (leading NUL) stays bytes."""
    cdef Py_ssize_t n = _UNIX_PATH
    if raw[0] == 0:
        while n > 0 and raw[n - 1] == 0:
            n -= 1
        if n == 0:
            return ""
        return PyBytes_FromStringAndSize(<const char *>raw, n)
    n = 0
    while n < _UNIX_PATH and raw[n] != 0:
        n += 1
    return PyUnicode_DecodeUTF8(<const char *>raw, n, "surrogateescape")




# Packing, for the encoders (the reference's _address.pack_host / pack_port / inet_pair).


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
