# Version 1: the C twin of _v1.py (included by _fast.pyx).

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
