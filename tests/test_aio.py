"""proxyproto.aio: TLS after the header, clients, header_for, the protocol wrapper's
details (buffered protocols, server-speaks-first, policy callables, logging), UDP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path
from typing import Any, Optional

import pytest

import proxyproto
from aio_util import (
    TRUSTED,
    TRUSTED_V4,
    UNTRUSTED_V4,
    Recorder,
    connect_from,
    read_all,
    run,
    throwaway_cert,
)
from proxyproto import Command, Policy, ProxyHeader, aio, encode_v1, encode_v2
from proxyproto.policy import ProxyOptions

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
HEADER = encode_v2(SRC, DST)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) over a throwaway self-signed certificate."""
    with throwaway_cert(tmp_path_factory.mktemp("tls")) as (cert, key):
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(str(cert), str(key))
        client = ssl.create_default_context(cafile=str(cert))
    return server, client


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def stats_of(server: asyncio.Server) -> aio.ProxyStats:
    stats = server.proxy_stats  # type: ignore[attr-defined]
    assert isinstance(stats, aio.ProxyStats)
    return stats


async def echo_tls_cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    peer = writer.get_extra_info("peername")
    version = writer.get_extra_info("ssl_object").version()
    writer.write(f"{peer[0]} {peer[1]} {version} ".encode() + line)
    await writer.drain()
    writer.close()


# -- TLS after the header -------------------------------------------------------------


def test_tls_after_header_streams_end_to_end(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls

    async def main() -> list[bytes]:
        server = await aio.start_server(echo_tls_cb, "127.0.0.1", 0, trusted=["127.0.0.1"],
                                        ssl=server_ctx, timeout=1)
        answers = []
        try:
            for header in (HEADER, encode_v1(("203.0.113.5", 5555), DST)):
                reader, writer = await aio.open_connection(
                    "127.0.0.1", port_of(server), header=header, ssl=client_ctx,
                    server_hostname="localhost")
                writer.write(b"hello\n")
                answers.append(await reader.read())
                writer.close()
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        assert stats_of(server).accepted == 2
        return answers

    first, second = run(main())
    assert first.startswith(b"192.0.2.10 40000 TLSv1.") and first.endswith(b" hello\n")
    assert second.startswith(b"203.0.113.5 5555 TLSv1.")


async def tls_handshake_over(sock: socket.socket, client_ctx: ssl.SSLContext, first: bytes,
                             message: bytes) -> bytes:
    """A TLS client on a raw socket whose first write is ``first`` + the ClientHello,
    in one segment (what a fast proxy does); returns the decrypted answer."""
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    pending = first
    while True:
        try:
            tls_object.do_handshake()
            break
        except ssl.SSLWantReadError:
            await loop.sock_sendall(sock, pending + outgoing.read())
            pending = b""
            data = await loop.sock_recv(sock, 65536)
            if not data:
                raise ConnectionResetError("closed during the handshake") from None
            incoming.write(data)
    for piece in (message[:1], message[1:]):  # two TLS records, sent with the client's
        tls_object.write(piece)  # Finished in one segment: both reach the app in order
    await loop.sock_sendall(sock, outgoing.read())
    answer = b""
    while not answer.endswith(b"\n"):
        try:
            answer += tls_object.read(65536)
        except ssl.SSLWantReadError:
            data = await loop.sock_recv(sock, 65536)
            if not data:
                break
            incoming.write(data)
    return answer


@pytest.mark.parametrize("policy", [Policy.REQUIRE, Policy.USE])
def test_tls_client_hello_in_the_header_segment(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], policy: Policy
) -> None:
    """The bytes after the header are the ClientHello: they must reach TLS, not the app."""
    server_ctx, client_ctx = tls

    async def main() -> bytes:
        server = await aio.start_server(echo_tls_cb, "127.0.0.1", 0, trusted=[TRUSTED_V4],
                                        policy=policy, ssl=server_ctx, timeout=1)
        try:
            sock = await connect_from(TRUSTED_V4, port_of(server))
            with sock:
                return await tls_handshake_over(sock, client_ctx, HEADER, b"hi\n")
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()).startswith(b"192.0.2.10 40000 TLSv1.")


def test_tls_without_header_under_use_policy(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """USE and no header: the whole stream (a ClientHello) goes to TLS."""
    server_ctx, client_ctx = tls

    async def main() -> bytes:
        server = await aio.start_server(echo_tls_cb, "127.0.0.1", 0, trusted=["127.0.0.1"],
                                        policy=Policy.USE, ssl=server_ctx, timeout=1)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server), ssl=client_ctx, server_hostname="localhost")
            writer.write(b"plain tls\n")
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            return answer
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()).startswith(b"127.0.0.1 ")


def test_tls_protocol_wrapper_and_failed_handshake(
    tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    recorder = Recorder()

    async def main() -> tuple[bytes, bytes, aio.ProxyStats]:
        server = await aio.create_server(recorder.protocol_factory, "127.0.0.1", 0,
                                         trusted=["127.0.0.1"], ssl=server_ctx, timeout=1,
                                         ssl_handshake_timeout=1)
        try:
            # a header, then something that is not TLS: refused ("tls"), server unharmed
            sock = await connect_from("127.0.0.1", port_of(server))
            with sock:
                not_tls = HEADER + b"GET / HTTP/1.0\r\n\r\n"
                await asyncio.get_running_loop().sock_sendall(sock, not_tls)
                refused = await read_all(sock, limit=3)
            _reader, writer = await aio.open_connection(
                "127.0.0.1", port_of(server), header=HEADER, ssl=client_ctx,
                server_hostname="localhost")
            writer.write(b"data over tls")
            await writer.drain()
            for _ in range(100):
                if recorder.records and next(iter(recorder.records.values())).data:
                    break
                await asyncio.sleep(0.02)
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
            served = b""
            return refused, served, stats_of(server)
        finally:
            server.close()
            await server.wait_closed()

    refused, _served, stats = run(main())
    assert not refused.startswith(b"ok")
    assert stats.refused["tls"] == 1 and stats.accepted == 1 and stats.pending == 0
    (record,) = recorder.records.values()
    assert record.peername == SRC and record.sockname == DST
    assert record.data == b"data over tls"


@pytest.mark.skipif(not hasattr(asyncio.StreamWriter, "start_tls"), reason="Python 3.11+")
def test_starttls_inside_the_application(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """An SMTP-like STARTTLS upgrade on the proxied transport keeps the original peer."""
    server_ctx, client_ctx = tls

    async def cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"go\n")
        await writer.drain()
        await writer.start_tls(server_ctx)  # type: ignore[attr-defined]
        await echo_tls_cb(reader, writer)

    async def main() -> bytes:
        server = await aio.start_server(cb, "127.0.0.1", 0, trusted=["127.0.0.1"], timeout=1)
        try:
            reader, writer = await aio.open_connection("127.0.0.1", port_of(server),
                                                       header=HEADER)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go\n"
            await writer.start_tls(client_ctx, server_hostname="localhost")  # type: ignore[attr-defined]
            writer.write(b"secret\n")
            answer = await reader.read()
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
            return answer
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()).startswith(b"192.0.2.10 40000 TLSv1.")


# -- clients ------------------------------------------------------------------------------


async def capture_server() -> tuple[asyncio.Server, asyncio.Queue[bytes]]:
    """A plain server that reports the first read of each connection."""
    firsts: asyncio.Queue[bytes] = asyncio.Queue()

    async def cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await firsts.put(await reader.read(65536))
        writer.close()

    return await asyncio.start_server(cb, "127.0.0.1", 0), firsts


@pytest.mark.parametrize("form", ["bytes", "ProxyHeader", "callable"])
def test_open_connection_sends_the_header_first_in_one_write(form: str) -> None:
    async def main() -> tuple[bytes, bytes]:
        server, firsts = await capture_server()
        header: Any = {"bytes": HEADER, "ProxyHeader": proxyproto.parse(HEADER),
                       "callable": lambda transport: aio.header_for(transport, version=1)}[form]
        try:
            _reader, writer = await aio.open_connection("127.0.0.1", port_of(server),
                                                        header=header)
            own = writer.get_extra_info("sockname")
            first = await asyncio.wait_for(firsts.get(), 5)
            writer.write(b"after")
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return first, f"{own[0]} {own[1]}".encode()

    first, own = run(main())
    if form == "callable":  # built from the client's own addresses: source = itself
        assert first.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ") and own.split()[1] in first
        assert first.endswith(b"\r\n")
    else:
        assert first == HEADER  # whole, alone, before anything else


def test_open_connection_refuses_bad_headers_before_connecting() -> None:
    async def main() -> int:
        server, firsts = await capture_server()
        try:
            for bad, error in ((b"PROXY TCP4 1.2.3.4\r\n", ValueError),
                               (HEADER + b"extra", ValueError),
                               ("PROXY UNKNOWN\r\n", TypeError)):
                with pytest.raises(error):
                    await aio.open_connection("127.0.0.1", port_of(server), header=bad)
            with pytest.raises(ValueError):  # a callable producing garbage: nothing is sent
                await aio.open_connection("127.0.0.1", port_of(server),
                                          header=lambda transport: b"garbage")
            await asyncio.sleep(0.1)
            return firsts.qsize()
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()) <= 1  # at most the aborted callable's connection, with no bytes


def test_relay_passes_the_original_address_on() -> None:
    """A proxy built from aio: accept behind one PROXY hop, forward with header_for()."""

    async def main() -> bytes:
        async def backend_cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            writer.write(f"{peer[0]}:{peer[1]} ".encode() + await reader.read())
            await writer.drain()
            writer.close()

        backend = await aio.start_server(backend_cb, "127.0.0.1", 0, trusted=["127.0.0.1"],
                                         timeout=1)

        async def relay_cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await aio.open_connection(
                "127.0.0.1", port_of(backend), header=aio.header_for(writer, version=1))
            up_writer.write(await reader.read())
            up_writer.write_eof()
            writer.write(await up_reader.read())
            up_writer.close()
            await writer.drain()
            writer.close()

        relay = await aio.start_server(relay_cb, "127.0.0.1", 0, trusted=["127.0.0.1"],
                                       timeout=1)
        try:
            reader, writer = await aio.open_connection("127.0.0.1", port_of(relay),
                                                       header=HEADER)
            writer.write(b"through two hops")
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            return answer
        finally:
            for server in (relay, backend):
                server.close()
                await server.wait_closed()

    assert run(main()) == b"192.0.2.10:40000 through two hops"


def test_header_for_sockets_and_unix() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            v2 = proxyproto.parse(aio.header_for(accepted, crc32c=True))
            assert v2.source == client.getsockname() and v2.destination == client.getpeername()
            assert v2.crc32c is not None
            v1 = proxyproto.parse(aio.header_for(accepted, version=1))
            assert (v1.version, v1.source) == (1, client.getsockname())
            with pytest.raises(ValueError):
                aio.header_for(accepted, version=3)
            with pytest.raises(ValueError):
                aio.header_for(accepted, version=1, tlvs=[(0xE0, b"12345678")])
    left, right = socket.socketpair()
    with left, right:
        assert aio.header_for(left, version=1) == b"PROXY UNKNOWN\r\n"
        assert proxyproto.parse(aio.header_for(left)).command is Command.LOCAL


# -- the protocol wrapper -------------------------------------------------------------------


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, sink: list[Any]) -> None:
        self.sink = sink
        self.buffer = bytearray(3)  # tiny, so the trailing bytes need several buffers
        self.data = b""
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += bytes(self.buffer[:nbytes])

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.sink.append((self.transport.get_extra_info("peername"), self.data))
        self.transport.write(b"ok")
        return False


def test_buffered_protocol_gets_the_trailing_bytes() -> None:
    sink: list[Any] = []

    async def main() -> bytes:
        server = await aio.create_server(lambda: Buffered(sink), "127.0.0.1", 0,
                                         trusted=["127.0.0.1"], timeout=1)
        try:
            sock = await connect_from("127.0.0.1", port_of(server))
            with sock:
                await asyncio.get_running_loop().sock_sendall(sock, HEADER + b"0123456789")
                sock.shutdown(socket.SHUT_WR)
                return await read_all(sock, limit=5)
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()) == b"ok"
    assert sink == [(SRC, b"0123456789")]


class Banner(asyncio.Protocol):
    """A server-speaks-first application (SMTP-like)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        transport.write(f"220 hello {peer[0]}\r\n".encode())
        transport.close()


@pytest.mark.parametrize(("policy", "banner"), [(Policy.USE, True), (Policy.REQUIRE, False)])
def test_server_speaks_first_waits_for_the_header(policy: Policy, banner: bool) -> None:
    """Nothing is sent before the header is settled ([SPEC] R-7); a silent client gets the
    banner after the deadline only when the header is optional."""

    async def main() -> tuple[bytes, bytes, aio.ProxyStats]:
        server = await aio.create_server(Banner, "127.0.0.1", 0, trusted=["127.0.0.1"],
                                         policy=policy, timeout=0.4)
        try:
            sock = await connect_from("127.0.0.1", port_of(server))
            with sock:
                silent = await read_all(sock, limit=3)
            reader, writer = await aio.open_connection("127.0.0.1", port_of(server),
                                                       header=HEADER)
            proxied = await reader.read()
            writer.close()
            await writer.wait_closed()
            return silent, proxied, stats_of(server)
        finally:
            server.close()
            await server.wait_closed()

    silent, proxied, stats = run(main())
    assert proxied == b"220 hello 192.0.2.10\r\n"
    if banner:
        assert silent == b"220 hello 127.0.0.1\r\n"
    else:
        assert silent == b"" and stats.refused == {"timeout": 1}


def test_extra_info_socket_and_keys() -> None:
    seen: dict[str, Any] = {}

    async def cb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.update(peer=sock.getpeername(), local=sock.getsockname(), fileno=sock.fileno(),
                    socket_peer=writer.get_extra_info("socket_peername"),
                    transport=writer.transport)
        writer.close()

    async def main() -> None:
        server = await aio.start_server(cb, "127.0.0.1", 0, trusted=[TRUSTED_V4], timeout=1)
        try:
            sock = await connect_from(TRUSTED_V4, port_of(server))
            with sock:
                await asyncio.get_running_loop().sock_sendall(sock, HEADER)
                await read_all(sock, limit=3)
        finally:
            server.close()
            await server.wait_closed()

    run(main())
    assert seen["peer"] == SRC and seen["local"] == DST and seen["fileno"] > 0
    assert seen["socket_peer"][0] == TRUSTED_V4
    # asyncio's own transport, handed over as it is: no wrapper between the app and the
    # socket; its get_extra_info answers with the header's addresses
    assert type(seen["transport"]).__module__ == "asyncio.selector_events"
    assert seen["transport"].get_extra_info("peername") == SRC


def test_policy_callable_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[Any, Any]] = []

    def policy(peer: Any, local: Any) -> Policy:
        calls.append((peer, local))
        if peer[0] == UNTRUSTED_V4:
            return Policy.USE  # never honoured for an untrusted peer: closed
        if peer[0] == "127.0.0.4":
            raise RuntimeError("boom")
        return Policy.REQUIRE

    recorder = Recorder()

    async def main() -> aio.ProxyStats:
        server = await aio.start_server(recorder.streams_cb, "127.0.0.1", 0, trusted=TRUSTED,
                                        policy=policy, timeout=1)
        try:
            for source in (UNTRUSTED_V4, "127.0.0.4", TRUSTED_V4):
                sock = await connect_from(source, port_of(server))
                with sock:
                    await asyncio.get_running_loop().sock_sendall(sock, HEADER + b"x")
                    sock.shutdown(socket.SHUT_WR)
                    await read_all(sock, limit=3)
        finally:
            server.close()
            await server.wait_closed()
        return stats_of(server)

    with caplog.at_level(logging.INFO, logger="proxyproto.aio"):
        stats = run(main())
    assert [peer[0] for peer, _ in calls] == [UNTRUSTED_V4, "127.0.0.4", TRUSTED_V4]
    assert calls[0][1][0] == "127.0.0.1"  # the local address is passed too
    assert stats.refused == {"untrusted": 1, "error": 1} and stats.accepted == 1
    assert [record.peername for record in recorder.records.values()] == [SRC]
    messages = [r.getMessage() for r in caplog.records if r.name == "proxyproto.aio"]
    assert any("127.0.0.3" in m and "untrusted" in m for m in messages)
    assert any("policy callable failed" in m for m in messages)


def test_configuration_is_checked() -> None:
    def factory() -> asyncio.Protocol:
        return asyncio.Protocol()

    with pytest.raises(ValueError):
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, untrusted_policy=Policy.USE)
    with pytest.raises(ValueError):
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, timeout=0)
    with pytest.raises(TypeError):  # one rule with the blocking adapter (was ValueError)
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, max_size=8)
    with pytest.raises(TypeError):
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, policy="require")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        aio.wrap_protocol_factory(factory, trusted=TRUSTED, ssl=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aio.wrap_protocol_factory(factory, trusted=["not a network"])
    stats = aio.ProxyStats()
    wrapped = aio.wrap_protocol_factory(factory, trusted=proxyproto.TrustedProxies(TRUSTED),
                                        stats=stats)
    assert wrapped.stats is stats and isinstance(wrapped(), aio.ProxyProtocolLayer)
    assert stats.as_dict() == {"accepted": 0, "pending": 0, "refused": {}, "refused_total": 0}


def test_small_size_cap_is_enforced() -> None:
    big = encode_v2(SRC, DST, tlvs=[(0xE5, b"y" * 200)])

    async def main() -> aio.ProxyStats:
        recorder = Recorder()
        server = await aio.start_server(recorder.streams_cb, "127.0.0.1", 0,
                                        trusted=["127.0.0.1"], max_size=128, timeout=1)
        try:
            sock = await connect_from("127.0.0.1", port_of(server))
            with sock:
                await asyncio.get_running_loop().sock_sendall(sock, big[:16])
                await read_all(sock, limit=3)  # refused on the length field alone
        finally:
            server.close()
            await server.wait_closed()
        return stats_of(server)

    assert run(main()).refused == {"too_large": 1}


# -- UDP ----------------------------------------------------------------------------------


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


class HookedDatagrams(Datagrams):
    def proxy_datagram_received(self, data: bytes, addr: Any, header: Optional[ProxyHeader],
                                peer: Any) -> None:
        self.queue.put_nowait((data, (addr, header is not None, peer[0])))


def udp_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    return sock


@pytest.mark.parametrize("policy", [Policy.REQUIRE, Policy.USE])
def test_udp_each_datagram_carries_its_header(policy: Policy) -> None:
    dgram = encode_v2(SRC, DST, transport=socket.SOCK_DGRAM)

    async def main() -> tuple[list[tuple[bytes, Any]], aio.ProxyStats]:
        stats = aio.ProxyStats()
        transport, app = await aio.create_datagram_endpoint(
            Datagrams, local_addr=("127.0.0.1", 0), trusted=[TRUSTED_V4], policy=policy,
            untrusted_policy=Policy.SKIP if policy is Policy.USE else None, stats=stats)
        assert isinstance(app, Datagrams)
        target = transport.get_extra_info("sockname")
        got = []
        try:
            with udp_socket(TRUSTED_V4) as trusted, udp_socket(UNTRUSTED_V4) as untrusted:
                trusted.sendto(dgram + b"one", target)
                trusted.sendto(b"no header", target)
                trusted.sendto(dgram[:20], target)  # cut short: never completed elsewhere
                untrusted.sendto(dgram + b"spoofed", target)
                trusted.sendto(encode_v2(None, None) + b"local", target)
                trusted.sendto(dgram + b"last", target)
                while True:
                    item = await asyncio.wait_for(app.queue.get(), 5)
                    got.append(item)
                    if item[0] == b"last":
                        break
        finally:
            transport.close()
        return got, stats

    got, stats = run(main())
    datas = [data for data, _ in got]
    assert got[0] == (b"one", SRC) and got[-1] == (b"last", SRC)
    assert (b"local", (TRUSTED_V4, got[datas.index(b"local")][1][1])) in got
    assert stats.refused["invalid"] == 1
    if policy is Policy.REQUIRE:
        assert datas == [b"one", b"local", b"last"]
        assert stats.refused == {"invalid": 1, "no_header": 1, "untrusted": 1}
    else:  # USE for trusted, SKIP (raw, never believed) for the untrusted one
        assert datas == [b"one", b"no header", dgram + b"spoofed", b"local", b"last"]
        assert got[2][1][0] == UNTRUSTED_V4


def test_udp_hook_sees_header_and_proxy() -> None:
    async def main() -> tuple[bytes, Any]:
        transport, app = await aio.create_datagram_endpoint(
            HookedDatagrams, local_addr=("127.0.0.1", 0), trusted=[TRUSTED_V4])
        assert isinstance(app, HookedDatagrams)
        try:
            with udp_socket(TRUSTED_V4) as sender:
                sender.sendto(HEADER + b"payload", transport.get_extra_info("sockname"))
                return await asyncio.wait_for(app.queue.get(), 5)
        finally:
            transport.close()

    assert run(main()) == (b"payload", (SRC, True, TRUSTED_V4))


def test_tmp_path_unused(tmp_path: Path) -> None:
    """The throwaway certificate lives in a temporary directory, never in the tree."""
    with throwaway_cert(tmp_path) as (cert, key):
        assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert key.parent == tmp_path


@pytest.mark.parametrize("handshake_timeout", [None, 0.3])
def test_stalled_tls_handshake_after_the_header_is_bounded(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], handshake_timeout: Optional[float]
) -> None:
    """A peer that sends its header, then nothing: the handshake has a deadline (by default
    the header timeout; asyncio's own default held such a peer for 60 s)."""
    server_ctx, _client_ctx = tls
    recorder = Recorder()

    async def closed_by_server(sock: socket.socket) -> bool:
        loop = asyncio.get_running_loop()
        try:
            while await asyncio.wait_for(loop.sock_recv(sock, 4096), 10):
                pass
        except asyncio.TimeoutError:
            return False  # still held open after 10 s
        except ConnectionError:
            pass
        return True

    async def main() -> tuple[bool, aio.ProxyStats]:
        server = await aio.create_server(recorder.protocol_factory, "127.0.0.1", 0,
                                         trusted=["127.0.0.1"], ssl=server_ctx, timeout=0.3,
                                         ssl_handshake_timeout=handshake_timeout)
        try:
            sock = await connect_from("127.0.0.1", port_of(server))
            with sock:
                await asyncio.get_running_loop().sock_sendall(sock, HEADER)
                # closed by the server well before asyncio's 60 s
                closed = await closed_by_server(sock)
            for _ in range(100):
                if stats_of(server).refused["tls"]:
                    break
                await asyncio.sleep(0.02)
            return closed, stats_of(server)
        finally:
            server.close()
            await server.wait_closed()

    closed, stats = run(main())
    assert closed
    assert stats.refused["tls"] == 1 and stats.accepted == 0 and stats.pending == 0
    assert not recorder.records


def test_ssl_handshake_timeout_is_checked() -> None:
    for bad, error in ((0, ValueError), (-1, ValueError), ("5", TypeError), (True, TypeError)):
        with pytest.raises(error, match="ssl_handshake_timeout"):
            aio.wrap_protocol_factory(asyncio.Protocol, trusted=["127.0.0.1"],
                                      ssl_handshake_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    {"timeout": "5"}, {"timeout": 0}, {"timeout": float("nan")}, {"max_size": 8},
    {"max_size": 4096.0}, {"policy": "require"}, {"untrusted_policy": Policy.USE},
    {"trust_unix_peers": 1}, {"trusted": ["10.0.0.1/8"]},
])
def test_options_are_checked_as_proxy_options_checks_them(bad: dict[str, Any]) -> None:
    """One set of exception types for every adapter: the asyncio entry points raise what
    ``ProxyOptions`` (which the blocking adapter uses) raises, for the same value."""
    arguments: dict[str, Any] = {"trusted": TRUSTED, **bad}
    with pytest.raises((TypeError, ValueError)) as expected:
        ProxyOptions(arguments.pop("trusted"), **arguments)
    for make in (
        lambda: aio.wrap_protocol_factory(asyncio.Protocol, **{"trusted": TRUSTED, **bad}),
        lambda: aio.uvicorn_http_protocol(http=asyncio.Protocol, **{"trusted": TRUSTED, **bad}),
    ):
        with pytest.raises(type(expected.value)):
            make()

    async def endpoints() -> None:
        with pytest.raises(type(expected.value)):
            await aio.start_server(Recorder().streams_cb, "127.0.0.1", 0,
                                   **{"trusted": TRUSTED, **bad})
        if "timeout" not in bad:
            with pytest.raises(type(expected.value)):
                await aio.create_datagram_endpoint(Datagrams, ("127.0.0.1", 0),
                                                   **{"trusted": TRUSTED, **bad})

    run(endpoints())


def test_options_object_or_keywords_and_no_deadline() -> None:
    options = ProxyOptions(TRUSTED, policy=Policy.USE, timeout=None)
    factory = aio.wrap_protocol_factory(asyncio.Protocol, options=options)
    assert factory._config.options is options
    with pytest.raises(TypeError, match="not both"):
        aio.wrap_protocol_factory(asyncio.Protocol, options=options, timeout=3)
    with pytest.raises(TypeError, match="not both"):
        aio.wrap_protocol_factory(asyncio.Protocol, options=options, trusted=TRUSTED)
    with pytest.raises(TypeError, match="required"):
        aio.wrap_protocol_factory(asyncio.Protocol)
    recorder = Recorder()

    async def main() -> tuple[Any, bytes, aio.ProxyStats]:
        # timeout=None: no deadline queue at all; the connection is served when it speaks
        served = aio.wrap_protocol_factory(recorder.protocol_factory, options=options)
        server = await asyncio.get_running_loop().create_server(served, "127.0.0.1", 0)
        try:
            sock = await connect_from(TRUSTED_V4, port_of(server))
            with sock:
                await asyncio.sleep(0.05)
                await asyncio.get_running_loop().sock_sendall(sock, HEADER + b"late")
                sock.shutdown(socket.SHUT_WR)
                answer = await read_all(sock, limit=5)
        finally:
            server.close()
            await server.wait_closed()
        return served._config._deadlines, answer, served.stats

    deadlines, answer, stats = run(main())
    assert deadlines is None
    assert answer == b"ok" and stats.accepted == 1
    (record,) = recorder.records.values()
    assert record.peername == SRC and record.data == b"late"
