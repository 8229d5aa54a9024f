"""A real uvicorn server behind the PROXY layer: scope["client"] is the original client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any

import pytest

from aio_util import TRUSTED_V4, UNTRUSTED_V4, connect_from, read_all, run, throwaway_cert
from proxyproto import aio, encode_v1, encode_v2

uvicorn = pytest.importorskip("uvicorn")

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
REQUEST = b"GET /who HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers with what it was told about the connection."""
    assert scope["type"] == "http"
    body = json.dumps({"client": scope["client"], "server": scope["server"],
                       "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve(http: Any) -> tuple[Any, asyncio.Task[None], int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, lifespan="off",
                            ws="none", log_level="warning", proxy_headers=False)
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
    for answer in answers[:2]:
        assert body_of(answer) == {"client": list(SRC), "server": list(DST), "scheme": "http"}
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

    assert body_of(run(main())) == {"client": list(SRC), "server": list(DST), "scheme": "https"}
