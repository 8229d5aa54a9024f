"""The connection-start machine: from the first bytes, under a policy, to a decision.

:func:`decide_start` is a pure function of (policy, the bytes received so far, the size
cap): it answers :class:`Decided` (the header to honour, the header read, where the
application's bytes start), :class:`Need` (how many more bytes, at least) or
:class:`Refused` (an exception whose ``reason`` names the cause). Every adapter uses it:
the blocking path calls it on each ``MSG_PEEK``; :class:`PolicyReader` (asyncio) is a
thin stateful wrapper that buffers chunks; :func:`decide_datagram` judges a whole
datagram. Each call parses the bytes at most once (see :func:`proxyproto._reader.scan`).

>>> decide_start(Policy.USE, b"GET / HTTP/1.1\\r\\n")
Decided(header=None, received=None, offset=0)
>>> decide_start(Policy.REQUIRE, b"\\r\\n\\r\\n\\x00")
Need(needed=11)
>>> decide_start(Policy.REQUIRE, b"GET /").error.reason
'no_header'
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

from . import _impl
from ._errors import (
    HeaderRejected,
    IncompleteHeader,
    InvalidHeader,
    MissingHeader,
    NoProxyHeader,
    ProxyProtocolError,
    UntrustedPeer,
)
from ._fallback import V1_MAX_LENGTH, V2_SIGNATURE
from ._header import ProxyHeader
from ._policy import ConnectionPolicy, Policy, decide_policy
from ._reader import (
    DEFAULT_MAX_SIZE,
    FIRST_NEEDED,
    Buffer,
    check_max_size,
    exact_needed,
    partial_v1_line,
    scan,
)
from ._trust import TrustedProxies

__all__ = [
    "Decided",
    "Need",
    "PolicyReader",
    "Refused",
    "Start",
    "accept_datagram",
    "decide_datagram",
    "decide_start",
    "judge_start",
    "judge_start_python",
]

_REQUIRE, _USE, _IGNORE, _REJECT, _SKIP = (
    Policy.REQUIRE, Policy.USE, Policy.IGNORE, Policy.REJECT, Policy.SKIP)
_V1_SIGNATURE = b"PROXY "
_V2_FIXED = 16
# the LF as an int: ``_LF in data`` is a memchr, where ``b"\n" in data`` first tries the
# needle as an int and raises and clears a TypeError inside (about 2,000 instructions)
_LF = 0x0A


class Decided(NamedTuple):
    """The connection may go to the application."""

    #: The header whose addresses apply (``None``: use the socket's own addresses).
    header: Optional[ProxyHeader]
    #: The header read, even when the policy discards it (``IGNORE``); ``None`` if none.
    received: Optional[ProxyHeader]
    #: Where the application's bytes start in the data judged (``received.length`` or 0).
    offset: int


class Need(NamedTuple):
    """Not decided yet: at least ``needed`` more bytes are required (a lower bound)."""

    needed: int


class Refused(NamedTuple):
    """The connection must be closed; ``error.reason`` is the cause for stats and logs."""

    error: ProxyProtocolError

    @property
    def reason(self) -> str:
        """The refusal cause (``error.reason``)."""
        return self.error.reason


#: What :func:`decide_start` answers.
Start = Union[Decided, Need, Refused]
#: What :func:`judge_start` answers: ``(header, received, offset)``, bytes needed, or
#: the refusal.
RawStart = Union[tuple[Optional[ProxyHeader], Optional[ProxyHeader], int], int,
                 ProxyProtocolError]

_NO_HEADER = Decided(None, None, 0)
_RAW_NO_HEADER: tuple[None, None, int] = (None, None, 0)
# NamedTuple classes are built through a Python-level __new__ (about 300 ns a call on
# 3.11); the machine runs once per connection, so it builds its answers as the plain
# tuples they are
_new_tuple = tuple.__new__


def decide_start(
    policy: Policy, data: Buffer, max_size: int = DEFAULT_MAX_SIZE, *, final: bool = False
) -> Start:
    """Decide a stream connection from its first bytes (sans-IO, no state).

    Call it again with all the bytes received so far whenever more arrive; with
    ``final=True`` when no more will come in time (EOF, the deadline).

    Args:
        policy: the connection's policy (see :func:`proxyproto.policy.decide_policy`).
        data: every byte received so far.
        max_size: the v2 header size cap (checked as soon as the length field is in).
        final: no more bytes will come: a partial header is then refused
            (``IncompleteHeader``), and nothing at all is "no header".

    Returns:
        :class:`Decided`, :class:`Need` (never when ``final``) or :class:`Refused`:

        * ``NoProxyHeader``-like data: ``Decided`` with no header under ``USE``,
          ``IGNORE`` and ``REJECT`` (the bytes are the application's, [SPEC §5] R-10),
          ``Refused(MissingHeader)`` under ``REQUIRE``;
        * a header: ``Decided`` (``IGNORE`` reads and discards it),
          ``Refused(HeaderRejected)`` under ``REJECT``;
        * a malformed or oversize header: ``Refused(InvalidHeader / HeaderTooLarge)``
          whatever the policy (it is never passed to the application);
        * ``SKIP``: ``Decided`` at once, nothing looked at.
    """
    answer = judge_start(policy, data, max_size, final)
    kind = type(answer)
    if kind is tuple:
        return (_NO_HEADER if answer is _RAW_NO_HEADER
                else _new_tuple(Decided, answer))  # type: ignore[arg-type]
    if kind is int:
        return _new_tuple(Need, (answer,))
    return _new_tuple(Refused, (answer,))


def judge_start_python(policy: Policy, data: Buffer, max_size: int, final: bool) -> RawStart:
    """:func:`decide_start`'s answer as plain values, for the adapters' hot path.

    A ``(header, received, offset)`` tuple for :class:`Decided`, an ``int`` (bytes
    needed) for :class:`Need`, the exception itself for :class:`Refused`. (A
    ``NamedTuple`` costs about 1,500 instructions more to build than a tuple: the
    asyncio layer runs this once per connection.)

    This is the reference; :data:`judge_start` is the compiled twin when the extension
    is built (its usual case in C, everything else this function).
    """
    if policy is _SKIP:
        return _RAW_NO_HEADER
    try:
        # the usual first chunk (past any signature prefix, and not a v1 line still
        # missing its LF) goes to the parser at once: what scan would do, one call frame
        # fewer (a first byte other than "P" settles it without a search for the LF)
        if len(data) > 12 and (final or data[0] != 0x50 or (
                type(data) is not memoryview and _LF in data)):
            result = _impl.parse_or_needed(data, max_size=max_size)
        else:
            result = scan(data, max_size, final=final)
    except NoProxyHeader as exc:
        if policy is _REQUIRE:
            return MissingHeader(str(exc))
        return _RAW_NO_HEADER  # [SPEC §5] R-10: the policy, not the payload, made it optional
    except ProxyProtocolError as exc:
        # a value now, not a raise in flight: the parser's frames are of no use to anyone,
        # and re-raising an exception that holds them costs about half a parse
        return exc.with_traceback(None)
    if type(result) is int:
        if not final:
            return result
        if not data:  # nothing arrived: a server-speaks-first client, or no header at all
            if policy is _REQUIRE:
                return MissingHeader(
                    "a PROXY header is required from this peer, none arrived")
            return _RAW_NO_HEADER
        return IncompleteHeader(result)
    # (a ProxyHeader now: no isinstance check, which would cost as much as the tuple)
    if policy is _REJECT:
        return HeaderRejected("this peer may not send a PROXY header")
    return (None if policy is _IGNORE else result, result,  # type: ignore[return-value]
            result.length)  # type: ignore[union-attr]


#: :func:`judge_start_python`'s answers; the compiled twin when the extension is built
#: (``PROXYPROTO_NO_EXTENSIONS`` or no compiler: the function itself)
judge_start: Callable[[Policy, Buffer, int, bool], RawStart] = judge_start_python
if _impl.IMPLEMENTATION == "cython":
    from ._fast import judge_start


def _signature_prefix(data: Buffer) -> bool:
    """``True`` for a proper prefix of a signature (``b"PROXY "`` or the v2 one)."""
    size = len(data)
    if not 0 < size < len(V2_SIGNATURE):
        return False
    head = bytes(data)
    return (size < len(_V1_SIGNATURE) and _V1_SIGNATURE.startswith(head)) or (
        V2_SIGNATURE.startswith(head))


def decide_datagram(policy: Policy, data: Buffer, max_size: int = DEFAULT_MAX_SIZE) -> Start:
    """Decide one datagram, judged on its own ([SPEC §2] R-9): never :class:`Need`.

    As :func:`decide_start` with ``final=True``, with two datagram rules: a datagram is
    complete, so one that is a proper prefix of a signature (``b"P"``, ``b"\\r\\n"``,
    ``b"PROXY"``) is not the start of a header but payload under ``USE``, ``IGNORE`` and
    ``REJECT`` (refused under ``REQUIRE``); and a header cut short by the end of the
    datagram is an ``InvalidHeader`` (a header must not be split across datagrams).
    """
    if policy is not _REQUIRE and _signature_prefix(data):
        return _NO_HEADER
    result = decide_start(policy, data, max_size, final=True)
    if type(result) is Refused and type(result.error) is IncompleteHeader:
        needed = result.error.needed
        error = InvalidHeader(
            f"the datagram ends inside a PROXY header ({needed} more byte(s) "
            "expected; a header must not be split across datagrams)")
        error.__cause__ = result.error
        return Refused(error)
    return result


class PolicyReader:
    """Reads a connection's first bytes under one policy and decides (sans-IO).

    A thin stateful wrapper over :func:`decide_start`: it buffers what the connection
    sends and asks the machine again only when a decision may have become possible (a
    v2 header is looked at when its fixed part, then when all of it is in). Once
    :attr:`done`, :attr:`header` is the header to honour (``None``: use the socket's
    addresses) and :attr:`app_data` holds the bytes that belong to the application.
    When no more bytes will come in time (EOF or the deadline), call :meth:`finish`.

    >>> reader = PolicyReader(Policy.USE)
    >>> reader.feed(b"GET / HTTP/1.1\\r\\n")
    True
    >>> reader.header, reader.app_data
    (None, b'GET / HTTP/1.1\\r\\n')

    Args:
        policy: the policy chosen for the connection (see :func:`decide_policy`).
        max_size: the v2 header size cap.

    Every refusal is an exception derived from :class:`ProxyProtocolError`, with a
    ``reason``: ``MissingHeader`` (no header under ``REQUIRE``, a ``NoProxyHeader``),
    ``InvalidHeader`` and ``HeaderTooLarge`` (whatever the policy: a malformed header
    is never passed to the application), ``HeaderRejected`` (a header under
    ``REJECT``, a ``PolicyViolation``) and ``IncompleteHeader`` (from :meth:`finish`:
    the header never completed). A malformed v1 line is refused at its LF (or 107th
    byte, or :meth:`finish`), not at its first bad byte.
    """

    __slots__ = ("_app_data", "_buffer", "_done", "_header", "_line", "_max_size", "_needed",
                 "_policy", "_ready", "_received")

    def __init__(self, policy: Policy, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if type(policy) is not Policy:  # an enum with members: no subclass can exist
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        if max_size is not DEFAULT_MAX_SIZE:
            check_max_size(max_size)
        self._policy = policy
        self._max_size = max_size
        self._buffer = bytearray()
        self._header: Optional[ProxyHeader] = None
        self._received: Optional[ProxyHeader] = None
        self._app_data = b""
        self._needed = FIRST_NEEDED
        self._ready = 0  # no decision is possible before this many bytes (a v2 body)
        self._line = False  # the buffer holds the start of a v1 line, without its LF
        self._done = policy is _SKIP  # SKIP: nothing is looked for

    @property
    def policy(self) -> Policy:
        """The policy applied."""
        return self._policy

    @property
    def done(self) -> bool:
        """``True`` once the connection may be handed to the application."""
        return self._done

    @property
    def needed(self) -> int:
        """The minimum number of further bytes needed to decide (0 when done).

        Exact as ``parse`` computes it; for a partial v1 line that figure costs a parse,
        made only when this property is read.
        """
        if self._done:
            return 0
        buffer = self._buffer
        if partial_v1_line(buffer):
            return exact_needed(buffer, self._max_size)
        return self._needed

    @property
    def header(self) -> Optional[ProxyHeader]:
        """The header to honour once done (``None``: use the socket's own addresses)."""
        return self._header

    @property
    def received(self) -> Optional[ProxyHeader]:
        """The header read, even when the policy discards it (``IGNORE``)."""
        return self._received

    @property
    def app_data(self) -> bytes:
        """Once done, the bytes fed that belong to the application (after the header,
        or everything when the connection did not start with a header)."""
        return self._app_data

    @property
    def buffered(self) -> int:
        """How many bytes are held, not yet decided."""
        return len(self._buffer)

    def feed(self, data: Buffer) -> bool:
        """Add received bytes; return ``True`` once the connection is decided.

        Raises:
            ProxyProtocolError: the connection must be refused (see the class doc).
            RuntimeError: called again after done.
        """
        buffer = self._buffer
        if not buffer:
            # the first chunk, usually the whole header: one call to the machine, the
            # answer stored here (the common case, kept free of further calls)
            if self._done:
                raise RuntimeError(
                    "the connection is decided; pass further data to the application")
            answer = judge_start(self._policy, data, self._max_size, False)
            kind = type(answer)
            if kind is tuple:  # Decided
                self._header, self._received, offset = answer  # type: ignore[misc]
                self._app_data = bytes(data[offset:])
                self._needed = 0
                self._done = True
                return True
            if kind is int:  # Need
                self._wait(answer, data)  # type: ignore[arg-type]
                return False
            buffer += data
            raise answer  # type: ignore[misc]  # Refused
        if self._line:
            # still a v1 line without its LF? Only the new bytes need a look (what
            # decide_start would answer, without looking at the old ones again)
            if type(data) is memoryview:
                data = bytes(data)
            if len(buffer) + len(data) < V1_MAX_LENGTH and _LF not in data:
                buffer += data
                return False
        buffer += data
        if len(buffer) < self._ready:
            self._needed = self._ready - len(buffer)
            return False
        result = decide_start(self._policy, buffer, self._max_size)
        if type(result) is Need:
            self._wait(result.needed, None)
            return False
        if type(result) is Refused:
            raise result.error
        assert type(result) is Decided
        self._decided(result, buffer)
        return True

    def _wait(self, needed: int, first: Optional[Buffer]) -> None:
        """Record a :class:`Need` answer (``first``: the first chunk, not yet held).

        Also how the asyncio layer, which judges a connection's first chunk with
        :func:`decide_start` itself (most connections are decided there, without a
        reader), hands an undecided first chunk over without judging it again.
        """
        buffer = self._buffer
        if first is not None:
            buffer += first
        self._needed = needed
        if len(buffer) >= _V2_FIXED and buffer[0] == 0x0D:  # exact: wait for all of it
            self._ready = len(buffer) + needed
        else:
            self._line = partial_v1_line(buffer)

    def finish(self) -> None:
        """No more bytes will come in time (EOF or the deadline passed): decide now.

        A connection that sent nothing goes on without a header when the policy makes
        the header optional (a server-speaks-first client under ``USE``, ``IGNORE`` or
        ``REJECT``).

        Raises:
            IncompleteHeader: some bytes of a header arrived, but not all of them.
            MissingHeader: nothing arrived and the policy is ``REQUIRE``.
            InvalidHeader: the bytes held are a malformed v1 line still missing its LF.
        """
        if self._done:
            return
        result = decide_start(self._policy, self._buffer, self._max_size, final=True)
        if type(result) is Refused:
            raise result.error
        assert type(result) is Decided
        self._decided(result, self._buffer)

    def _decided(self, result: Decided, chunk: Buffer) -> None:
        self._header = result.header
        self._received = result.received
        self._app_data = bytes(chunk[result.offset :]) if chunk else b""
        self._buffer = bytearray()
        self._needed = 0
        self._done = True


def accept_datagram(
    data: Buffer,
    peer: object,
    local: object,
    *,
    trusted: TrustedProxies,
    policy: ConnectionPolicy = Policy.REQUIRE,
    untrusted_policy: Optional[Policy] = None,
    max_size: int = DEFAULT_MAX_SIZE,
    trust_unix_peers: bool = False,
) -> tuple[Optional[ProxyHeader], bytes]:
    """Apply the trust rules to one datagram, parsed on its own ([SPEC §2] R-9).

    Args:
        data: the whole datagram.
        peer: its source address (from ``recvfrom``).
        local: the receiving socket's own address (passed to a callable ``policy``).
        trusted, policy, untrusted_policy, trust_unix_peers: as for
            :func:`decide_policy` (an untrusted peer's header is never believed).
        max_size: the largest v2 header accepted.

    Returns:
        ``(header, payload)``: the header whose addresses apply (``None`` when the
        socket's addresses apply) and the bytes after the header, if any. Under an
        optional policy a datagram that is not a header (a proper prefix of a
        signature, ``b"PROXY"``, included) is all payload.

    Raises:
        UntrustedPeer: the sender is not trusted and no policy applies to it.
        MissingHeader: no header under ``REQUIRE`` (a ``NoProxyHeader``).
        HeaderRejected: a header under ``REJECT`` (a ``PolicyViolation``).
        InvalidHeader: a malformed header, or one cut short by the end of the datagram
            (a header must not be split across datagrams, R-9).
        PolicyError: the policy callable failed.
        ValueError: ``untrusted_policy`` is ``USE`` or ``REQUIRE``.
    """
    chosen = decide_policy(peer, local, trusted=trusted, policy=policy,
                           untrusted_policy=untrusted_policy,
                           trust_unix_peers=trust_unix_peers)
    if chosen is None:
        raise UntrustedPeer(f"datagram from untrusted peer {peer!r} dropped")
    if chosen is _SKIP:
        return None, bytes(data)
    result = decide_datagram(chosen, data, max_size)
    if type(result) is Refused:
        raise result.error
    assert type(result) is Decided
    return result.header, bytes(data[result.offset :])
