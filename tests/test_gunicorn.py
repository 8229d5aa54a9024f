"""``gunicorn -k proxyproto.gunicorn.UvicornWorker``: a real gunicorn on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn_worker")

from proxyproto import encode_v1, encode_v2
from proxyproto.gunicorn import ENVIRONMENT_TRUSTED, trusted_from

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"

APP = '''
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "server": scope["server"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def test_trusted_from_gunicorn_or_the_environment() -> None:
    assert trusted_from(["127.0.0.1", "::1"], {}) == ["127.0.0.1", "::1"]
    assert trusted_from("10.0.0.0/8, 127.0.0.1", {}) == ["10.0.0.0/8", "127.0.0.1"]
    assert trusted_from(["*"], {}) == ["0.0.0.0/0", "::/0"]
    assert trusted_from(["127.0.0.1"], {ENVIRONMENT_TRUSTED: "10.1.0.0/16,10.2.0.0/16"}) == [
        "10.1.0.0/16", "10.2.0.0/16"]
    with pytest.raises(ValueError):
        trusted_from(["10.0.0.1/8"], {})  # host bits set: a typo, refused at boot


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ask(port: int, data: bytes, source: str) -> bytes:
    for _ in range(300):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=(source, 0))
        except ConnectionRefusedError:
            time.sleep(0.1)
            continue
        with sock:
            sock.sendall(data)
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except ConnectionError:
                pass
            return b"".join(chunks)
    raise AssertionError("gunicorn did not start")


def body(answer: bytes) -> dict[str, Any]:
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    return dict(json.loads(text))


@pytest.mark.parametrize("from_environment", [False, True])
def test_real_gunicorn_with_the_worker(tmp_path: Path, from_environment: bool) -> None:
    (tmp_path / "whoapp.py").write_text(APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_TRUSTED}
    argv = [sys.executable, "-m", "gunicorn", "-k", "proxyproto.gunicorn.UvicornWorker",
            "-w", "1", "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
            "--error-logfile", str(tmp_path / "error.log"), "whoapp:app"]
    if from_environment:
        env[ENVIRONMENT_TRUSTED] = "127.0.0.2"  # wins over gunicorn's default list
    else:
        argv[-1:-1] = ["--proxy-allow-from", "127.0.0.2"]
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        v2 = ask(port, encode_v2(SRC, DST) + REQUEST, "127.0.0.2")
        v1 = ask(port, encode_v1(SRC, DST) + REQUEST, "127.0.0.2")
        untrusted = ask(port, encode_v2(SRC, DST) + REQUEST, "127.0.0.3")
        localhost = ask(port, encode_v2(SRC, DST) + REQUEST, "127.0.0.1")  # gunicorn's default
        missing = ask(port, REQUEST, "127.0.0.2")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    expected = {"client": list(SRC), "server": list(DST)}
    assert body(v2) == expected and body(v1) == expected  # X-Forwarded-For ignored
    assert untrusted == b"" and localhost == b"" and missing == b""
    log = (tmp_path / "error.log").read_text()
    warnings = [line for line in log.splitlines() if "refused connection" in line]
    assert any("[WARNING]" in line and "no_header" in line for line in warnings), log
    assert sum("untrusted" in line for line in warnings) == 2, log
