"""The ``proxyproto`` command line: decode, encode and send."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import threading

import pytest

import proxyproto
from proxyproto._cli import main


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: bytes = b""
) -> tuple[int, str, str]:
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        status = main(argv)
    finally:
        sys.stdin = old_stdin
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_encode_then_decode_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["encode", "--source", "192.0.2.1:51000", "--destination",
                          "[2001:db8::1]:443", "--tlv", "AUTHORITY=6578616d706c65",
                          "--crc32c"], capsys)
    assert status == 0
    wire = bytes.fromhex(out.strip())
    header = proxyproto.parse(wire)
    assert header.source == ("::ffff:192.0.2.1", 51000)
    assert header.authority == "example"
    status, out, _ = run(["decode", "--json", out.strip()], capsys)
    assert status == 0
    info = json.loads(out)
    assert info["destination"] == {"host": "2001:db8::1", "port": 443}
    assert info["decoded"]["authority"] == "example"
    assert [t["name"] for t in info["tlvs"]] == ["AUTHORITY", "CRC32C"]


def test_decode_reads_raw_stdin_and_shows_payload(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["decode"], capsys, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nHELLO")
    assert status == 0
    assert "source:      1.2.3.4:1" in out
    assert "5 byte(s) of application data" in out


def test_decode_reports_errors_with_offset(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["decode"], capsys, b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n")
    assert status == 1
    assert "InvalidHeader" in err and "offset 11" in err
    status, _, err = run(["decode", "0d0a0d0a00"], capsys)
    assert status == 1
    assert "11 more byte(s)" in err


def test_encode_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["encode", "--source", "1.2.3.4:70000", "--destination",
                          "1.2.3.4:1"], capsys)
    assert status == 2 and "70000" in err
    status, _, err = run(["encode", "--v1", "--tlv", "1=00"], capsys)
    assert status == 2
    assert main(["encode", "--v1"]) == 0
    assert capsys.readouterr().out.strip() == b"PROXY UNKNOWN\r\n".hex()


def test_send_writes_header_and_data_in_one_write(capsys: pytest.CaptureFixture[str]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"PING" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            received.append(data)
            conn.sendall(b"PONG")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        status, out, _ = run(["send", f"127.0.0.1:{port}", "--source", "203.0.113.9:4000",
                              "--destination", "10.0.0.1:80", "--data", "PING"], capsys)
    finally:
        thread.join(10)
        listener.close()
    assert status == 0 and out == "PONG"
    header = proxyproto.parse(received[0])
    assert header.source == ("203.0.113.9", 4000)
    assert received[0][header.length :] == b"PING"


def test_whoami_answers_trusted_clients_and_refuses_others() -> None:
    import subprocess

    server = subprocess.Popen(
        [sys.executable, "-m", "proxyproto", "whoami", "--listen", "127.0.0.1:0",
         "--trusted", "127.0.0.1/32", "--max-connections", "1", "--read-timeout", "0.5"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        port = int(banner.split(",")[0].rsplit(":", 1)[1])
        # An untrusted peer (127.0.0.3) is closed without an answer.
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.3", 0)) as untrusted:
            untrusted.sendall(proxyproto.encode_v1(("198.51.100.1", 1), ("10.0.0.1", 2)))
            # Closed without an answer, or reset since the server never read what was sent.
            with contextlib.suppress(ConnectionResetError):
                assert untrusted.recv(4096) == b""
        wire = proxyproto.encode_v2(("203.0.113.9", 4000), ("10.0.0.1", 443))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(wire + b"GET / HTTP/1.1\r\n\r\n")
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert b"you are:      203.0.113.9:4000" in answer
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
