"""User code written as the asyncio and uvicorn docs show passes ``mypy --strict`` unaided."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")
pytest.importorskip("uvicorn")

USER_CODE = '''
import asyncio

import uvicorn

import proxyproto.aio
from proxyproto.aio import ProxyServer, ProxyStats


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    pass


http = proxyproto.aio.uvicorn_http_protocol(trusted=["10.0.0.0/24"], http="h11")
config = uvicorn.Config(app, host="127.0.0.1", port=8000, http=http)
counters: ProxyStats = http.stats


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def main() -> int:
    server: ProxyServer = await proxyproto.aio.start_server(
        handle, "127.0.0.1", 0, trusted=["10.0.0.0/24"])
    other = await proxyproto.aio.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                               trusted=["10.0.0.0/24"])
    async with server:
        return server.proxy_stats.accepted + other.proxy_stats.refused_total
'''


@pytest.mark.slow
def test_documented_usage_passes_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(USER_CODE)
    out, err, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir",
                                     str(tmp_path / "cache"), str(source)])
    assert status == 0, out + err
