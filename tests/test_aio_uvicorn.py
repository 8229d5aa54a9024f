"""A real uvicorn server behind the PROXY layer: scope["client"] is the original client."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import socket
import ssl
import sys
from typing import Any

import pytest

import proxyproto
from aio_util import TRUSTED_V4, UNTRUSTED_V4, connect_from, read_all, run, throwaway_cert
from proxyproto import aio, encode_v1, encode_v2

uvicorn = pytest.importorskip("uvicorn")

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
REQUEST = b"GET /who HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"


def seen(scope: dict[str, Any]) -> dict[str, Any]:
    """What the app was told about the connection (the PROXY extension summarised)."""
    extension = scope.get("extensions", {}).get("proxy_protocol")
    header = None
    if extension is not None:
        header = {"version": extension["header"].version,
                  "command": extension["header"].command.name,
                  "proxy": list(extension["socket_peername"])[:1]}
    return {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"],
            "header": header}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers with what it was told about the connection."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(seen(scope))})
        await send({"type": "websocket.close"})
        return
    assert scope["type"] == "http"
    body = json.dumps(seen(scope)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve(http: Any, **options: Any) -> tuple[Any, asyncio.Task[None], int]:
    settings: dict[str, Any] = {"ws": "none", "proxy_headers": False, "log_level": "warning",
                                **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, lifespan="off",
                            **settings)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    return server, task, server.servers[0].sockets[0].getsockname()[1]


async def stop(server: Any, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, 10)


def body_of(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    return dict(json.loads(body))


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_uvicorn_sees_the_original_client(implementation: str) -> None:
    if implementation == "httptools":
        pytest.importorskip("httptools")

    async def main() -> tuple[list[bytes], aio.ProxyStats]:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation, timeout=1)
        server, task, port = await serve(http)
        answers = []
        try:
            loop = asyncio.get_running_loop()
            for source, data in ((TRUSTED_V4, encode_v2(SRC, DST) + REQUEST),
                                 (TRUSTED_V4, encode_v1(SRC, DST) + REQUEST),
                                 (UNTRUSTED_V4, encode_v2(SRC, DST) + REQUEST),
                                 (TRUSTED_V4, REQUEST)):
                sock = await connect_from(source, port)
                with sock:
                    with contextlib.suppress(ConnectionError):
                        await loop.sock_sendall(sock, data)
                    answers.append(await read_all(sock, limit=5))
        finally:
            await stop(server, task)
        return answers, http.stats

    answers, stats = run(main())
    for answer, version in zip(answers[:2], (2, 1)):
        assert body_of(answer) == {"client": list(SRC), "server": list(DST), "scheme": "http",
                                   "header": {"version": version, "command": "PROXY",
                                              "proxy": [TRUSTED_V4]}}
    assert answers[2] == b"" and answers[3] == b""  # untrusted; no header from a trusted peer
    assert stats.accepted == 2 and stats.refused == {"untrusted": 1, "no_header": 1}


def test_uvicorn_tls_after_the_header(tmp_path: Any) -> None:
    with throwaway_cert(tmp_path) as (cert, key):
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(str(cert), str(key))
        client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main() -> bytes:
        http = aio.uvicorn_http_protocol(trusted=["127.0.0.1"], http="h11", ssl=server_ctx,
                                         timeout=1)
        server, task, port = await serve(http)
        try:
            reader, writer = await aio.open_connection(
                "127.0.0.1", port, header=encode_v2(SRC, DST), ssl=client_ctx,
                server_hostname="localhost")
            writer.write(REQUEST)
            answer = await reader.read()
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
        finally:
            await stop(server, task)
        return answer

    assert body_of(run(main())) == {"client": list(SRC), "server": list(DST), "scheme": "https",
                                    "header": {"version": 2, "command": "PROXY",
                                               "proxy": ["127.0.0.1"]}}


async def one_response(sock: socket.socket) -> bytes:
    """Read one HTTP response (with a content-length) from a keep-alive connection."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


KEEP_ALIVE = b"GET /who HTTP/1.1\r\nHost: example\r\n\r\n"
SPOOF = b"GET /who HTTP/1.1\r\nHost: example\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"


async def exchange(port: int, first: bytes, requests: list[bytes],
                   source: str = TRUSTED_V4) -> list[bytes]:
    """Connect from ``source``, send ``first`` + the first request, then the others, one
    response each, on one connection."""
    loop = asyncio.get_running_loop()
    answers = []
    with await connect_from(source, port) as sock:
        await loop.sock_sendall(sock, first + requests[0])
        answers.append(await one_response(sock))
        for request in requests[1:]:
            await loop.sock_sendall(sock, request)
            answers.append(await one_response(sock))
    return answers


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_keep_alive_requests_and_local_headers(implementation: str) -> None:
    """Every request of a keep-alive connection sees the header; a LOCAL header gives the
    socket's own addresses, the header still in the extension."""

    async def main() -> tuple[list[bytes], list[bytes], int]:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation, timeout=2)
        server, task, port = await serve(http)
        try:
            proxied = await exchange(port, encode_v2(SRC, DST), [KEEP_ALIVE] * 3)
            local = await exchange(port, encode_v2(None, None), [KEEP_ALIVE] * 2)
        finally:
            await stop(server, task)
        return proxied, local, port

    proxied, local, port = run(main())
    expected = {"client": list(SRC), "server": list(DST), "scheme": "http",
                "header": {"version": 2, "command": "PROXY", "proxy": [TRUSTED_V4]}}
    assert [body_of(answer) for answer in proxied] == [expected] * 3
    for answer in local:
        seen_local = body_of(answer)
        assert seen_local["client"][0] == TRUSTED_V4 and seen_local["server"] == ["127.0.0.1", port]
        assert seen_local["header"] == {"version": 2, "command": "LOCAL", "proxy": [TRUSTED_V4]}


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_x_forwarded_for_does_not_override_the_proxy_header(implementation: str) -> None:
    """uvicorn's defaults (proxy_headers=True) with forwarded_allow_ips="*": a client behind
    the PROXY-protocol proxy cannot replace its address with an X-Forwarded-For header."""

    async def main() -> list[bytes]:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation, timeout=2)
        server, task, port = await serve(http, proxy_headers=True, forwarded_allow_ips="*")
        try:
            return await exchange(port, encode_v1(SRC, DST), [SPOOF, KEEP_ALIVE])
        finally:
            await stop(server, task)

    for answer in run(main()):
        assert body_of(answer)["client"] == list(SRC)


def test_x_forwarded_for_honoured_when_asked_for() -> None:
    """forwarded_headers=True: uvicorn's route on top, judged on the header's client."""

    async def main() -> list[bytes]:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http="h11", timeout=2,
                                         forwarded_headers=True)
        server, task, port = await serve(http, proxy_headers=True,
                                         forwarded_allow_ips=SRC[0])
        try:
            allowed = await exchange(port, encode_v2(SRC, DST), [SPOOF])
            other = await exchange(port, encode_v2(("192.0.2.99", 1234), DST), [SPOOF])
        finally:
            await stop(server, task)
        return allowed + other

    allowed, other = run(main())
    assert body_of(allowed)["client"][0] == "6.6.6.6"
    assert body_of(other)["client"] == ["192.0.2.99", 1234]  # not in forwarded_allow_ips


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_websocket_scope_has_the_header(implementation: str) -> None:
    websockets_client = pytest.importorskip("websockets.asyncio.client")

    async def main() -> str:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation, timeout=2)
        server, task, port = await serve(http, ws="websockets-sansio")
        try:
            sock = await connect_from(TRUSTED_V4, port)
            await asyncio.get_running_loop().sock_sendall(sock, encode_v2(SRC, DST))
            sock.setblocking(True)
            async with websockets_client.connect(f"ws://127.0.0.1:{port}/ws", sock=sock,
                                                 open_timeout=5) as ws:
                message = await asyncio.wait_for(ws.recv(), 5)
        finally:
            await stop(server, task)
        assert isinstance(message, str)
        return message

    assert json.loads(run(main())) == {
        "client": list(SRC), "server": list(DST), "scheme": "ws",
        "header": {"version": 2, "command": "PROXY", "proxy": [TRUSTED_V4]}}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("bad_request", [False, True])
def test_refusals_are_logged_and_optionally_answered(bad_request: bool) -> None:
    """One line per refusal on uvicorn's logger (WARNING for a trusted peer without a
    header), and with bad_request=True a 400 answer to that peer."""
    handler = Records()

    async def main() -> tuple[bytes, bytes]:
        http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http="h11", timeout=2,
                                         bad_request=bad_request)
        server, task, port = await serve(http, log_level="info", access_log=False)
        logging.getLogger("uvicorn.error").addHandler(handler)  # after uvicorn's dictConfig
        loop = asyncio.get_running_loop()
        try:
            with await connect_from(TRUSTED_V4, port) as sock:
                await loop.sock_sendall(sock, REQUEST)  # no header from the trusted proxy
                missing = await read_all(sock, limit=5)
            with await connect_from(UNTRUSTED_V4, port) as sock:
                with contextlib.suppress(ConnectionError):
                    await loop.sock_sendall(sock, encode_v2(SRC, DST) + REQUEST)
                untrusted = await read_all(sock, limit=5)
        finally:
            logging.getLogger("uvicorn.error").removeHandler(handler)
            await stop(server, task)
        return missing, untrusted

    missing, untrusted = run(main())
    if bad_request:
        assert missing.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    else:
        assert missing == b""
    assert untrusted == b""  # never answered: nothing is read from an untrusted peer
    refusals = [(r.levelno, r.getMessage()) for r in handler.records
                if "refused connection" in r.getMessage()]
    assert len(refusals) == 2
    (missing_level, missing_line), (untrusted_level, untrusted_line) = refusals
    assert missing_level == logging.WARNING
    assert missing_line.startswith(f"refused connection from {TRUSTED_V4}:")
    assert ": no_header (not a PROXY header" in missing_line
    assert untrusted_level == logging.INFO
    assert untrusted_line.startswith(f"refused connection from {UNTRUSTED_V4}:")
    assert untrusted_line.endswith(": untrusted")


class OtherHTTP(asyncio.Protocol):
    """An HTTP protocol class that is not uvicorn's: it only keeps what it was given."""

    def __init__(self, config: Any, server_state: Any, app_state: Any = None,
                 _loop: Any = None) -> None:
        self.config = config
        self.app = config.loaded_app


def test_other_protocol_classes_get_the_header_through_their_config() -> None:
    """A protocol class other than uvicorn's own gets a config whose app adds the header."""
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning",
                            proxy_headers=True)
    config.load()
    http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=OtherHTTP)
    header = proxyproto.parse(encode_v2(SRC, DST))
    layer = http(config=config, server_state=None, app_state={})
    protocol = layer._new_app(header)
    assert isinstance(protocol, OtherHTTP) and protocol.config is not config
    scope: dict[str, Any] = {"type": "http"}
    sent: list[Any] = []

    async def capture(scope_seen: dict[str, Any], receive: Any, send: Any) -> None:
        sent.append(scope_seen)

    # the app chain: our wrapper, then uvicorn's app without its X-Forwarded-For middleware
    assert type(protocol.app).__name__ == "_WithProxyHeader"
    protocol.app.app = capture
    run(protocol.app(scope, None, None))
    assert sent[0]["extensions"]["proxy_protocol"]["header"] == header
    without = layer._new_app(None)
    assert isinstance(without, OtherHTTP) and without.app is app  # no middleware, no wrapper


H11Protocol = importlib.import_module("uvicorn.protocols.http.h11_impl").H11Protocol


class SlottedH11(H11Protocol):  # type: ignore[misc]
    """uvicorn's own class, with slots of its own: the layer cannot share its objects."""

    __slots__ = ("extra",)


class CollidingH11(H11Protocol):  # type: ignore[misc]
    """uvicorn's own class with a name the layer uses: it cannot share its objects."""

    def _refuse(self) -> None:
        pass


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_the_layer_lives_in_uvicorns_own_protocol_object(implementation: str) -> None:
    """For uvicorn's own classes the connection has one protocol object: the one uvicorn
    made, which serves HTTP once the header is accepted (a header split across two
    segments included); TLS after the header, a slotted subclass, one that uses a name of
    the layer's, or another class get a layer object of their own."""
    if implementation == "httptools":
        pytest.importorskip("httptools")
    http_class = importlib.import_module("uvicorn.importer").import_from_string(
        importlib.import_module("uvicorn.config").HTTP_PROTOCOLS[implementation])
    http = aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation, timeout=2)
    # mixed in where slots cost uvicorn's objects nothing: 3.11 and 3.12, not 3.13 (its
    # inline attribute values would be lost)
    in_class = sys.version_info < (3, 13)
    assert (aio._uvicorn._with_layer_slots(http_class) is not None) is in_class
    assert issubclass(http, aio.UvicornHTTPProtocol)
    assert issubclass(http, http_class) is in_class
    assert issubclass(http, aio.ProxyProtocolLayer) is not in_class
    for separate in (aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=SlottedH11),
                     aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=CollidingH11),
                     aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=OtherHTTP),
                     aio.uvicorn_http_protocol(trusted=[TRUSTED_V4], http=implementation,
                                               ssl=ssl.create_default_context(
                                                   ssl.Purpose.CLIENT_AUTH))):
        assert issubclass(separate, aio.ProxyProtocolLayer)
        assert issubclass(separate, aio.UvicornHTTPProtocol)

    async def main() -> tuple[list[Any], bytes, bytes]:
        server, task, port = await serve(http)
        loop = asyncio.get_running_loop()
        served: list[Any] = []
        try:
            header = encode_v2(SRC, DST)
            with await connect_from(TRUSTED_V4, port) as sock:
                await loop.sock_sendall(sock, header[:10])  # a header in two segments
                await asyncio.sleep(0.05)
                await loop.sock_sendall(sock, header[10:] + KEEP_ALIVE)
                split = await one_response(sock)
                served = [(connection, connection.transport.get_protocol())
                          for connection in server.server_state.connections]
            with await connect_from(TRUSTED_V4, port) as sock:  # EOF mid-header
                await loop.sock_sendall(sock, header[:20])
                sock.shutdown(socket.SHUT_WR)
                cut = await read_all(sock, limit=5)
        finally:
            await stop(server, task)
        return served, split, cut

    served, split, cut = run(main())
    assert body_of(split)["client"] == list(SRC)
    ((connection, protocol),) = served
    assert protocol is connection and isinstance(connection, http_class)
    assert (type(connection) is http) is in_class  # in class: uvicorn's, the layer's too
    assert cut == b""
    assert http.stats.accepted == 1 and http.stats.refused == {"eof": 1}
