# judge_start: a connection's first chunk, the usual case in C (the reference is
# _connection.judge_start_python, which answers everything else).

cdef object _REQUIRE = Policy.REQUIRE
cdef object _USE = Policy.USE
cdef object _IGNORE = Policy.IGNORE
cdef object _judge_start_python = None  # _connection.judge_start_python, once imported


def judge_start(policy, data, max_size, final):
    """``_connection.judge_start_python``'s answer, with its usual case in C: a first
    chunk of ``bytes`` that starts with a complete, valid header under ``REQUIRE``,
    ``USE`` or ``IGNORE`` (the asyncio layer's every connection from a proxy). Any other
    input is that function's own answer (called with the same arguments)."""
    global _judge_start_python
    cdef Verdict verdict
    cdef Py_ssize_t cap
    cdef Py_ssize_t size
    if PyBytes_CheckExact(data) and (policy is _REQUIRE or policy is _USE or policy is _IGNORE):
        size = PyBytes_GET_SIZE(data)
        cap = _cap_of(max_size)
        if size > 12 and cap >= 0 and PyBool_Check(final) and final is False:
            verdict.code = _DEFER
            header = _parse_c(<const uint8_t *>PyBytes_AS_STRING(data), size, cap, &verdict)
            if header is not None:
                return (None if policy is _IGNORE else header, header,
                        <object>PyTuple_GET_ITEM(header, 7))
    if _judge_start_python is None:
        from ._connection import judge_start_python
        _judge_start_python = judge_start_python
    return _judge_start_python(policy, data, max_size, final)
