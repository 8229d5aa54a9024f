"""Transport views used by :mod:`proxyproto.aio` (internal).

:class:`ProxiedTransport` is what the application protocol holds: every call goes to the
real transport, except ``get_extra_info``, which reports the addresses the PROXY header
carried. :class:`TLSFeedTransport` lets ``loop.start_tls`` run on a connection whose
first TLS bytes were already read while looking for the header.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from .. import _impl
from .._header import ProxyHeader
from .._policy import resolve_addresses

__all__ = [
    "STREAM_PROTOCOLS",
    "ForwardingTransport",
    "extra_dict",
    "ProxiedSocket",
    "ProxiedSocketPython",
    "ProxiedTransport",
    "TLSFeedTransport",
    "feed_protocol",
    "report_in_place",
    "report_in_place_python",
]

#: the stream protocol classes a transport feeds
STREAM_PROTOCOLS = (asyncio.Protocol, asyncio.BufferedProtocol)


def feed_protocol(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver ``data`` to a ``Protocol`` or a ``BufferedProtocol`` as a transport would."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            if not size:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    elif isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
    else:
        raise TypeError(f"{type(protocol).__name__} is not a stream protocol")


#: the transport classes seen whose ``get_extra_info`` is ``asyncio.BaseTransport``'s (an
#: answer from the ``_extra`` dict); see :func:`extra_dict`
answers_from_extra: set[type] = set()
_others: set[type] = set()  # and those seen whose get_extra_info is another


def extra_dict(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The dict that ``transport.get_extra_info`` answers from, when it is asyncio's own
    ``BaseTransport.get_extra_info`` over an ``_extra`` dict (asyncio's selector and
    proactor socket transports); ``None`` for any other transport (uvloop's, TLS, a
    wrapper), which then gets a :class:`ProxiedTransport`.

    The PROXY layer writes the header's addresses into that dict and hands the
    application the transport itself: no wrapper between the application and the
    socket, so nothing is added to any call after the hand-over.
    """
    cls = type(transport)
    if cls not in answers_from_extra:
        if cls in _others:
            return None
        if getattr(cls, "get_extra_info", None) is not asyncio.BaseTransport.get_extra_info:
            _others.add(cls)
            return None
        answers_from_extra.add(cls)
    extra = getattr(transport, "_extra", None)
    return extra if type(extra) is dict else None


def report_in_place_python(extra: dict[str, Any], header: ProxyHeader | None,
                           received: ProxyHeader | None, peer: Any, local: Any) -> None:
    """Make a transport's own ``get_extra_info`` (``extra``: :func:`extra_dict`) answer
    as a :class:`ProxiedTransport` would: ``peername``/``sockname`` the header's (when
    it carries addresses), ``socket`` a :class:`ProxiedSocket` reporting them, and the
    keys ``socket_peername``, ``socket_sockname``, ``proxy_header`` and
    ``proxy_header_received``.

    The reference; :data:`report_in_place` is the compiled twin when the extension is
    built (the same steps in C)."""
    extra["socket_peername"] = peer
    extra["socket_sockname"] = local
    extra["proxy_header"] = header
    extra["proxy_header_received"] = received
    if header is None:
        return
    source, destination = header.source, header.destination
    if source is None and destination is None:  # LOCAL, UNKNOWN: the socket's own
        return
    if source is not None:
        peer = extra["peername"] = source
    if destination is not None:
        local = extra["sockname"] = destination
    sock = extra.get("socket")
    if sock is not None:
        # ProxiedSocketPython(sock, peer, local), without its __init__ frame
        proxied = extra["socket"] = _new_object(ProxiedSocketPython)
        proxied._sock = sock
        proxied._peername = peer
        proxied._sockname = local


#: :func:`report_in_place_python`, or its compiled twin
report_in_place: Callable[[dict[str, Any], ProxyHeader | None, ProxyHeader | None, Any, Any],
                          None] = report_in_place_python
if _impl.IMPLEMENTATION == "cython":
    from .._fast import report_in_place

_new_object = object.__new__


class ProxiedSocketPython:
    """The transport's socket, with ``getpeername``/``getsockname`` reporting the header's
    addresses (servers such as uvicorn ask the socket, not the transport). The reference;
    :data:`ProxiedSocket` is the compiled twin when the extension is built (no Python
    frame for uvicorn's ``getpeername()`` on every connection)."""

    __slots__ = ("_peername", "_sock", "_sockname")

    def __init__(self, sock: Any, peername: Any, sockname: Any) -> None:
        self._sock = sock
        self._peername = peername
        self._sockname = sockname

    def getpeername(self) -> Any:
        """The original client address."""
        return self._peername

    def getsockname(self) -> Any:
        """The original destination address."""
        return self._sockname

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<ProxiedSocket peername={self._peername!r} of {self._sock!r}>"


if TYPE_CHECKING or _impl.IMPLEMENTATION != "cython":
    ProxiedSocket = ProxiedSocketPython
else:  # the compiled twin
    from .._fast import ProxiedSocket


_ASK: Any = object()  # ProxiedTransport: "ask the transport"
# the base class's extra info: never read (get_extra_info is overridden), read-only
_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})
_OVERRIDDEN = frozenset({"peername", "sockname", "socket_peername", "socket_sockname",
                         "proxy_header", "proxy_header_received", "socket"})


class ForwardingTransport(asyncio.Transport):
    """A transport whose every method is the wrapped ``transport``'s."""

    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport

    @property
    def transport(self) -> asyncio.Transport:
        """The transport underneath (plain TCP, or TLS over it)."""
        return self._transport

    @property
    def _start_tls_compatible(self) -> bool:
        # loop.start_tls checks this flag: STARTTLS works if the real transport allows it
        return bool(getattr(self._transport, "_start_tls_compatible", False))

    def _force_close(self, exc: BaseException | None) -> None:
        # asyncio's SSLProtocol calls this (private) method of its transport on fatal errors
        force_close = getattr(self._transport, "_force_close", None)
        if force_close is not None:
            force_close(exc)
        else:
            self._transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def abort(self) -> None:
        self._transport.abort()



class ProxiedTransport(ForwardingTransport):
    """A transport that forwards everything to ``transport`` but reports the original
    addresses.

    ``get_extra_info`` keys it answers itself:

    * ``"peername"``, ``"sockname"``: the header's source and destination, or the
      socket's own when the header carries none;
    * ``"socket_peername"``, ``"socket_sockname"``: the socket's own addresses (the proxy);
    * ``"proxy_header"``: the header honoured, ``None`` when none was read (or ``IGNORE``);
    * ``"proxy_header_received"``: the header read, even when the policy ignored it;
    * ``"socket"``: the socket, whose ``getpeername``/``getsockname`` give the above.

    ``socket_peername`` and ``socket_sockname``, when given, are the transport's own
    ``peername`` and ``sockname`` (the PROXY layer read them already); else they are
    asked of ``transport``. Everything is taken from the transport at construction; the
    answers above are put together on the first request for one of them (an
    application that never asks does not pay for them).
    """

    __slots__ = ("_addresses", "_header", "_proxied_socket", "_received", "_socket",
                 "_socket_peername", "_socket_sockname")

    def __init__(
        self,
        transport: asyncio.Transport,
        header: ProxyHeader | None,
        received: ProxyHeader | None,
        socket_peername: Any = _ASK,
        socket_sockname: Any = _ASK,
    ) -> None:
        # (positional on purpose: keyword arguments to a class call cost a dict per call,
        # and the PROXY layer makes one of these per connection)
        # ForwardingTransport.__init__ inlined: the base class's ``_extra`` is never read,
        # get_extra_info being overridden
        self._extra = _NO_EXTRA
        self._transport = transport
        self._header = header
        self._received = received
        self._socket_peername = (transport.get_extra_info("peername")
                                 if socket_peername is _ASK else socket_peername)
        self._socket_sockname = (transport.get_extra_info("sockname")
                                 if socket_sockname is _ASK else socket_sockname)
        # the socket now: a closed TLS transport no longer reports it
        self._socket = transport.get_extra_info("socket")
        self._addresses: tuple[Any, Any] | None = None  # (peername, sockname), once asked
        self._proxied_socket: ProxiedSocket | None = None

    def _resolved(self) -> tuple[Any, Any]:
        addresses = self._addresses
        if addresses is None:
            addresses = self._addresses = resolve_addresses(
                self._header, self._socket_peername, self._socket_sockname)
        return addresses

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # answered from attributes: no dict, and no ProxiedSocket until "socket" is asked
        if name in _OVERRIDDEN:
            if name == "socket":
                proxied = self._proxied_socket
                if proxied is None:
                    if self._socket is None:  # none to wrap: the transport answers
                        return self._transport.get_extra_info(name, default)
                    peername, sockname = self._resolved()
                    proxied = self._proxied_socket = ProxiedSocket(
                        self._socket, peername, sockname)
                return proxied
            if name == "peername":
                return self._resolved()[0]
            if name == "sockname":
                return self._resolved()[1]
            if name == "proxy_header":
                return self._header
            if name == "proxy_header_received":
                return self._received
            if name == "socket_peername":
                return self._socket_peername
            return self._socket_sockname
        return self._transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return (f"<ProxiedTransport peername={self.get_extra_info('peername')!r} "
                f"over {self._transport!r}>")




class TLSFeedTransport(ForwardingTransport):
    """The raw transport as ``loop.start_tls`` sees it, once the header was consumed.

    The bytes read after the header (the start of the TLS ClientHello) were already
    taken from the socket. ``start_tls`` pauses reading, installs its TLS protocol with
    ``set_protocol``, schedules that protocol's ``connection_made`` and then
    ``resume_reading``: only then does this class switch the real transport over to the
    TLS protocol and hand it those bytes, so they arrive after ``connection_made`` and
    before anything the socket still holds.
    """

    __slots__ = ("_leftover", "_protocol", "_switched")

    def __init__(self, transport: asyncio.Transport, leftover: bytes) -> None:
        super().__init__(transport)
        self._leftover = leftover
        self._protocol: asyncio.BaseProtocol | None = None
        self._switched = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        if self._switched:
            self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol if self._protocol is not None else self._transport.get_protocol()

    def resume_reading(self) -> None:
        if not self._switched and self._protocol is not None:
            self._switched = True
            leftover, self._leftover = self._leftover, b""
            self._transport.set_protocol(self._protocol)
            if leftover and not self._transport.is_closing():
                feed_protocol(self._protocol, leftover)
        if not self._transport.is_closing():
            self._transport.resume_reading()
