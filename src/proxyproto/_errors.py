"""The exception tree of proxyproto.

Every error that :func:`proxyproto.parse` raises derives from :class:`ProxyProtocolError`,
which derives from :class:`ValueError`, so callers that only know "bad value" still
catch it. ``IncompleteHeader`` is a ``ProxyProtocolError`` too: adapters catch it first.

Every class here has a class attribute ``reason``: the short, stable refusal cause that
the adapters count in :class:`proxyproto.aio.ProxyStats` and write in their log lines
(``"no_header"``, ``"invalid"``, ``"too_large"``, ``"rejected"``, ``"untrusted"``,
``"eof"``, ``"timeout"``, ``"tls"``, ``"error"``). One class per refusal cause, the same in
every adapter:

==========================  =============  ===============================================
class                       ``reason``     raised when
==========================  =============  ===============================================
``NoProxyHeader``           ``no_header``  the bytes cannot start a header (``parse``)
``MissingHeader``           ``no_header``  no header where the policy requires one
``InvalidHeader``           ``invalid``    a header breaks a rule of the spec
``ChecksumMismatch``        ``invalid``    the CRC32C TLV does not match
``HeaderTooLarge``          ``too_large``  over the size cap
``IncompleteHeader``        ``eof``        the input ended inside a header
``PolicyViolation``         ``rejected``   base of the policy refusals below
``HeaderRejected``          ``rejected``   a header under ``REJECT``
``UntrustedPeer``           ``untrusted``  a peer no policy applies to
``PolicyError``             ``error``      a policy callable raised or returned garbage
``HeaderTimeout``           ``timeout``    the header did not complete in time
``HandshakeFailed``         ``tls``        the TLS handshake after the header failed
==========================  =============  ===============================================

``MissingHeader`` derives from both ``NoProxyHeader`` and ``PolicyViolation``: "no header
under ``REQUIRE``" was a ``NoProxyHeader`` in the readers and a ``PolicyViolation`` in
:func:`proxyproto.policy.apply_policy`; it is now this one class everywhere, and both old
``except`` clauses still catch it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "REFUSALS",
    "ChecksumMismatch",
    "HandshakeFailed",
    "HeaderRejected",
    "HeaderTimeout",
    "HeaderTooLarge",
    "IncompleteHeader",
    "InvalidHeader",
    "MissingHeader",
    "NoProxyHeader",
    "PolicyError",
    "PolicyViolation",
    "ProxyProtocolError",
    "UntrustedPeer",
]


class ProxyProtocolError(ValueError):
    """Base class of every PROXY protocol error; never raised directly."""

    #: The refusal cause counted in the adapters' statistics.
    reason: ClassVar[str] = "invalid"


class IncompleteHeader(ProxyProtocolError):
    """The data is a proper prefix of a header that could still be valid.

    Attributes:
        needed: the minimum number of further bytes required (a lower bound that is
            never larger than the real remainder; exact for v2 once the 16-byte fixed
            part is present).
    """

    reason: ClassVar[str] = "eof"
    needed: int

    def __init__(self, needed: int) -> None:
        super().__init__(f"incomplete PROXY header: at least {needed} more byte(s) needed")
        self.needed = needed

    def __reduce__(self) -> tuple[type[IncompleteHeader], tuple[int]]:
        return (type(self), (self.needed,))


class NoProxyHeader(ProxyProtocolError):
    """The data cannot be the start of a PROXY header (neither v1 nor v2 signature)."""

    reason: ClassVar[str] = "no_header"


class InvalidHeader(ProxyProtocolError):
    """The data starts like a PROXY header but breaks a rule of the spec.

    Attributes:
        offset: the byte offset (from the start of the header) where the violation was
            found, or ``None`` when it concerns the header as a whole.
    """

    reason: ClassVar[str] = "invalid"
    offset: int | None

    def __init__(self, message: str, offset: int | None = None) -> None:
        self._message = message
        if offset is not None:
            message = f"{message} (offset {offset})"
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple[type[InvalidHeader], tuple[str, int | None]]:
        # Rebuild from the bare message and the offset, so a copy keeps ``offset``.
        return (type(self), (self._message, self.offset))


class HeaderTooLarge(InvalidHeader):
    """The header is larger than the allowed maximum (107 bytes for v1, ``max_size`` for v2)."""

    reason: ClassVar[str] = "too_large"


class ChecksumMismatch(InvalidHeader):
    """The CRC32C TLV does not match the header's checksum."""

    reason: ClassVar[str] = "invalid"


class PolicyViolation(ProxyProtocolError):
    """A connection was refused by the policy (no header under REQUIRE, one under REJECT...)."""

    reason: ClassVar[str] = "rejected"


class HeaderRejected(PolicyViolation):
    """The connection started with a PROXY header under the ``REJECT`` policy."""

    reason: ClassVar[str] = "rejected"


class MissingHeader(NoProxyHeader, PolicyViolation):
    """No PROXY header where the policy (``REQUIRE``) makes one mandatory.

    Both a :class:`NoProxyHeader` and a :class:`PolicyViolation`, so code written against
    either of the classes this cause used to raise still catches it.
    """

    reason: ClassVar[str] = "no_header"


class UntrustedPeer(PolicyViolation):
    """A peer outside the trusted networks connected where only trusted peers are served."""

    reason: ClassVar[str] = "untrusted"


class PolicyError(ProxyProtocolError):
    """A policy callable raised, or returned something that is not a ``Policy``.

    Not the peer's doing: the adapters log it as an error (the original exception is
    ``__cause__``), refuse the connection or datagram and go on serving.
    """

    reason: ClassVar[str] = "error"


class HeaderTimeout(TimeoutError):
    """The PROXY header did not complete before the deadline (a :class:`TimeoutError`)."""

    reason: ClassVar[str] = "timeout"


class HandshakeFailed(ConnectionError):
    """The TLS handshake that follows the PROXY header failed or timed out."""

    reason: ClassVar[str] = "tls"


#: The classes whose instances carry a ``reason`` (for ``isinstance`` checks).
REFUSALS: tuple[type[BaseException], ...] = (ProxyProtocolError, HeaderTimeout, HandshakeFailed)
