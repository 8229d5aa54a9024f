"""Our client helpers against real receivers: ``proxyproto.blocking.connect`` and
``proxyproto.aio.open_connection`` (the header in one write, then the application's
bytes, or TLS), ``header_from_socket`` / ``header_for``, and our own servers used as a
relay between HAProxy and HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, Union

import pytest

import proxyproto
from proxyproto import TLVType

from ._harness import (
    CLIENT_V4,
    HTTP_GET,
    IO_TIMEOUT,
    TRUSTED,
    Sink,
    adapter,
    exchange,
    http_body,
    linger_zero,
    recv_all,
)
from .conftest import PKI, SERVER_NAME, Peer
from .test_send import V4, V6, echoed

pytestmark = pytest.mark.interop

HeaderArg = Union[bytes, proxyproto.ProxyHeader, Callable[[Any], Any]]

#: How a test names its header: what to pass as ``header=`` and the addresses expected
#: back (``None``: the client connection's own, source first, as curl does).
HEADERS: dict[str, tuple[str, Any]] = {
    "v1-bytes": ("v1", V4),
    "v2-bytes-ipv6": ("v2-ipv6", V6),
    "v2-proxyheader-with-tlvs": ("v2-parsed", V4),
    "v1-from-the-socket": ("v1-own", None),
    "v2-from-the-socket": ("v2-own", None),
}


def blocking_header(kind: str) -> HeaderArg:
    """``header=`` for :func:`proxyproto.blocking.connect`."""
    blocking = adapter("blocking")
    return {
        "v1": proxyproto.encode_v1(*V4),
        "v2-ipv6": proxyproto.encode_v2(*V6),
        "v2-parsed": proxyproto.parse(proxyproto.encode_v2(*V4, crc32c=True, tlvs=[
            (TLVType.AUTHORITY, b"client.interop.test")])),
        "v1-own": lambda sock: blocking.header_from_socket(sock, version=1, accepted=False),
        "v2-own": lambda sock: blocking.header_from_socket(sock, accepted=False),
    }[kind]


def aio_header(kind: str) -> HeaderArg:
    """``header=`` for :func:`proxyproto.aio.open_connection` (the transport's own
    addresses, source first, for the ``-own`` kinds)."""
    if kind.endswith("-own"):
        encode: Callable[..., bytes] = (proxyproto.encode_v1 if kind == "v1-own"
                                        else proxyproto.encode_v2)
        return lambda transport: encode(transport.get_extra_info("sockname")[:2],
                                        transport.get_extra_info("peername")[:2])
    return blocking_header(kind)


def expected_fields(expected: Any, own: tuple[Any, Any]) -> list[str]:
    """The four echoed address fields."""
    source, destination = expected if expected is not None else own
    return [source[0], str(source[1]), destination[0], str(destination[1])]


def echo_of(peer: Peer, receiver: str) -> tuple[str, int]:
    frontend = peer.frontends["echo" if receiver == "haproxy" else "http_echo"]
    assert isinstance(frontend, tuple)
    return frontend


receivers = pytest.mark.parametrize("receiver", ["haproxy", "nginx"])


@receivers
@pytest.mark.parametrize("name", sorted(HEADERS))
def test_blocking_connect(haproxy: Peer, nginx: Peer, receiver: str, name: str) -> None:
    blocking = adapter("blocking")
    kind, expected = HEADERS[name]
    peer = haproxy if receiver == "haproxy" else nginx
    with blocking.connect(echo_of(peer, receiver), header=blocking_header(kind),
                          timeout=IO_TIMEOUT, source_address=(CLIENT_V4, 0)) as sock:
        own = (sock.getsockname(), sock.getpeername())
        sock.sendall(HTTP_GET)
        response = recv_all(sock)
        linger_zero(sock)
    fields = echoed(http_body(response))
    assert fields[:4] == expected_fields(expected, own)
    if name == "v2-proxyheader-with-tlvs" and receiver == "haproxy":
        assert fields[5] == "client.interop.test"


@receivers
@pytest.mark.parametrize("name", sorted(HEADERS))
def test_aio_open_connection(haproxy: Peer, nginx: Peer, receiver: str, name: str) -> None:
    aio = adapter("aio")
    kind, expected = HEADERS[name]
    host, port = echo_of(haproxy if receiver == "haproxy" else nginx, receiver)

    async def main() -> tuple[bytes, tuple[Any, Any]]:
        reader, writer = await aio.open_connection(host, port, header=aio_header(kind),
                                                   local_addr=(CLIENT_V4, 0))
        try:
            own = (writer.get_extra_info("sockname"), writer.get_extra_info("peername"))
            writer.write(HTTP_GET)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), IO_TIMEOUT), own
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    response, own = asyncio.run(main())
    fields = echoed(http_body(response))
    assert fields[:4] == expected_fields(expected, own)
    if name == "v2-proxyheader-with-tlvs" and receiver == "haproxy":
        assert fields[5] == "client.interop.test"


@pytest.mark.parametrize("client", ["blocking", "aio"])
def test_tls_after_the_header(haproxy: Peer, pki: PKI, client: str) -> None:
    """The header in clear, then TLS: what a TLS-passthrough proxy sends. HAProxy
    (``accept-proxy ssl``) decodes the header and terminates the TLS."""
    host, port = haproxy.frontends["echo_tls"]  # type: ignore[misc]
    header = proxyproto.encode_v2(*V6)
    context = pki.client_context(certificate=None, alpn=("http/1.1",))
    if client == "blocking":
        blocking = adapter("blocking")
        with blocking.connect((host, port), header=header, timeout=IO_TIMEOUT) as raw, \
                context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            tls.sendall(HTTP_GET)
            response = recv_all(tls)
    else:
        aio = adapter("aio")

        async def main() -> bytes:
            reader, writer = await aio.open_connection(host, port, header=header, ssl=context,
                                                       server_hostname=SERVER_NAME)
            try:
                writer.write(HTTP_GET)
                await writer.drain()
                return await asyncio.wait_for(reader.read(), IO_TIMEOUT)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

        response = asyncio.run(main())
    (source, sport), (destination, dport) = V6
    assert echoed(http_body(response)) == [source, str(sport), destination, str(dport), "1",
                                           SERVER_NAME]


# -- our servers as a relay: HAProxy -> proxyproto -> HAProxy --------------------------


def aio_relay(sink: Sink, upstream: tuple[str, int], done: threading.Event) -> None:
    """Serve one connection on ``sink`` with our asyncio server, and forward its request to
    ``upstream`` with :func:`proxyproto.aio.open_connection` and ``header_for(writer)``."""
    aio = adapter("aio")

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            up_reader, up_writer = await aio.open_connection(
                *upstream, header=aio.header_for(writer, version=1))
            up_writer.write(request)
            await up_writer.drain()
            writer.write(await asyncio.wait_for(up_reader.read(), IO_TIMEOUT))
            await writer.drain()
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            done.set()

    async def serve() -> None:
        server = await aio.start_server(on_client, sock=sink.listener.dup(), trusted=TRUSTED)
        try:
            for _ in range(int(IO_TIMEOUT / 0.02)):
                if done.is_set():
                    break
                await asyncio.sleep(0.02)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(serve())


def blocking_relay(sink: Sink, upstream: tuple[str, int], done: threading.Event) -> None:
    """The same with ``socketserver`` + ``ProxyProtocolMixIn`` and ``blocking.connect``."""
    import socketserver

    blocking = adapter("blocking")

    class Relay(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = b""
            while not request.endswith(b"\r\n\r\n"):
                line = self.rfile.readline(65536)
                if not line:
                    return
                request += line
            header = proxyproto.encode_v2(self.client_address[:2],
                                          self.proxy_destination[:2])  # type: ignore[attr-defined]
            with blocking.connect(upstream, header=header, timeout=IO_TIMEOUT) as up:
                up.sendall(request)
                self.wfile.write(recv_all(up))

    class Server(blocking.ProxyProtocolMixIn, socketserver.TCPServer):  # type: ignore[misc,name-defined]
        pass

    server = Server(sink.address, Relay, bind_and_activate=False, trusted=TRUSTED)
    server.socket.close()
    server.socket = sink.listener.dup()
    server.timeout = IO_TIMEOUT
    try:
        server.handle_request()
    finally:
        server.server_close()
        done.set()


@pytest.mark.parametrize("relay", [aio_relay, blocking_relay], ids=["aio", "socketserver"])
def test_our_server_as_a_relay(haproxy: Peer,
                               relay: Callable[[Sink, tuple[str, int], threading.Event], None]
                               ) -> None:
    """A client -> HAProxy (send-proxy-v2) -> our server -> our client helper (a header
    built from what our server reported) -> HAProxy (accept-proxy). The last HAProxy sees
    the first client's address, and the first HAProxy's frontend as the destination."""
    sink = haproxy.sinks["v2_ipv4"]
    sink.drain()
    echo = haproxy.frontends["echo"]
    assert isinstance(echo, tuple)
    done = threading.Event()
    thread = threading.Thread(target=relay, args=(sink, echo, done), daemon=True)
    thread.start()
    try:
        client = exchange(haproxy.frontends["v2_ipv4"], HTTP_GET)
    finally:
        thread.join(IO_TIMEOUT + 5)
    assert done.is_set() and not thread.is_alive()
    fields = echoed(http_body(client.reply))
    (source, sport), (destination, dport) = client.sockname, client.peername
    assert source == CLIENT_V4
    assert fields[:5] == [source, str(sport), destination, str(dport), "1"]


def test_helpers_refuse_an_invalid_header() -> None:
    """The client helpers never put an invalid header on the wire (nothing to send it to:
    they refuse before connecting)."""
    blocking = adapter("blocking")
    broken = proxyproto.encode_v2(*V4, crc32c=True)[:-1] + b"\x00"
    with pytest.raises(ValueError):
        blocking.connect(("127.0.0.1", 9), header=broken)
    with pytest.raises(ValueError):
        blocking.connect(("127.0.0.1", 9), header=proxyproto.encode_v1(*V4) + b"GET")
