"""Our parser and servers receive ``curl --haproxy-protocol`` directly: curl prefixes its
HTTP request with a v1 line built from its own socket's addresses.

curl 7.88 has no ``--haproxy-clientip`` (8.2.0), so the addresses are always real ones;
the expected ones come from curl's own report (``-w '%{local_ip} %{local_port}'``).
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from typing import Callable

import pytest

from proxyproto import Command, ProxyHeader

from ._harness import (
    CLIENT_V4,
    IO_TIMEOUT,
    Capture,
    ClientResult,
    Sink,
    check_adapter_view,
    check_raw,
    needs_ipv6,
)

pytestmark = pytest.mark.interop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\ninterop-ok\n"


def curl_client(curl_bin: str, sink: Sink, token: str) -> Callable[[], ClientResult]:
    """Run curl against ``sink`` (over TCP from :data:`CLIENT_V4` or ``::1``, or over the
    UNIX socket) and return what it reports of its own connection."""
    argv = [curl_bin, "--haproxy-protocol", "--silent", "--show-error",
            "--max-time", str(int(IO_TIMEOUT)), "--header", f"X-Interop-Token: {token}",
            "--write-out", "\n%{local_ip} %{local_port}"]
    if sink.path is not None:
        argv += ["--unix-socket", str(sink.path), f"http://localhost/interop/{token}"]
    elif ":" in sink.host:
        argv += [f"http://[{sink.host}]:{sink.port}/interop/{token}"]
    else:
        argv += ["--interface", CLIENT_V4, f"http://{sink.host}:{sink.port}/interop/{token}"]

    def run() -> ClientResult:
        done = subprocess.run(argv, capture_output=True, timeout=IO_TIMEOUT + 5, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        body, _, local = done.stdout.rpartition(b"\n")
        host, _, port = local.decode().partition(" ")
        sockname = (host, int(port)) if port else None
        return ClientResult(sockname, sink.address, body)

    return run


def curl_through(curl_bin: str, sink: Sink, mode: str
                 ) -> tuple[ProxyHeader, ClientResult, bytes]:
    """One curl request into ``sink``'s ``mode`` server: (header, curl's view, request)."""
    token = uuid.uuid4().hex
    with Capture(sink, mode, until=b"\r\n\r\n", reply=RESPONSE) as capture:
        client = curl_client(curl_bin, sink, token)()
        received = capture.result()
    assert received.error is None, received.error
    if mode == "raw":
        assert received.raw
        check_raw(received, None)  # curl writes the request: checked below
    else:
        assert received.served
    request = received.payload
    assert client.reply == b"interop-ok\n"
    # the application bytes: curl's request, intact, right after the header
    assert request.startswith(f"GET /interop/{token} HTTP/1.1\r\n".encode())
    assert f"\r\nX-Interop-Token: {token}\r\n".encode() in request
    assert request.endswith(b"\r\n\r\n")
    check_adapter_view(received, sink)
    assert received.header is not None
    return received.header, client, request


@pytest.mark.parametrize("mode", Capture.MODES)
def test_curl_ipv4(curl_bin: str, curl_sinks: dict[str, Sink], mode: str) -> None:
    header, client, request = curl_through(curl_bin, curl_sinks["ipv4"], mode)
    assert (header.version, header.command, header.family) == (
        1, Command.PROXY, socket.AF_INET)
    assert header.source == client.sockname == (CLIENT_V4, client.sockname[1])
    assert header.destination == curl_sinks["ipv4"].address
    assert f"\r\nHost: 127.0.0.1:{curl_sinks['ipv4'].port}\r\n".encode() in request


@needs_ipv6
@pytest.mark.parametrize("mode", Capture.MODES)
def test_curl_ipv6(curl_bin: str, curl_sinks: dict[str, Sink], mode: str) -> None:
    header, client, _ = curl_through(curl_bin, curl_sinks["ipv6"], mode)
    assert (header.version, header.family) == (1, socket.AF_INET6)
    assert header.source == client.sockname
    assert header.destination == curl_sinks["ipv6"].address


@pytest.mark.parametrize("mode", ["raw", "blocking"])
def test_curl_unix_socket(curl_bin: str, curl_sinks: dict[str, Sink], mode: str) -> None:
    """Over ``--unix-socket`` curl sends ``PROXY UNKNOWN``. (Our socketserver and asyncio
    servers never trust a UNIX-socket peer, so only ``read_header`` applies here.)"""
    header, _, _ = curl_through(curl_bin, curl_sinks["unix"], mode)
    assert (header.version, header.family, header.source) == (
        1, socket.AF_UNSPEC, None)
    assert header.length == len(b"PROXY UNKNOWN\r\n")
