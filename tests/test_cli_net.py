"""The ``proxyproto`` command line over the network: send, whoami, demo, signals.

Every server listens on 127.0.0.1 and is bounded (``--max-requests``/``--duration``, socket
timeouts), every command runs as a subprocess (``python -m proxyproto``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import proxyproto
from proxyproto._cli import build_parser, main
from proxyproto._cli._whoami import server_options

GET = b"GET / HTTP/1.1\r\nHost: whoami\r\n\r\n"


def cli(*args: str, env: Optional[dict[str, str]] = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "proxyproto", *args], capture_output=True,
                          timeout=timeout, env=env)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


# -- send -------------------------------------------------------------------------------

class Peer:
    """A one-connection TCP server in a thread: reads until ``until``, then ``behave``."""

    def __init__(self, behave: Callable[[socket.socket], None], until: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port: int = self.listener.getsockname()[1]
        self.received = b""
        self.peer: Any = None
        self.release = threading.Event()
        self._behave, self._until = behave, until
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, self.peer = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            with contextlib.suppress(OSError):
                while self._until not in self.received:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
            self._behave(conn)

    def close(self) -> None:
        self.release.set()
        self._thread.join(15)
        self.listener.close()


@contextlib.contextmanager
def peer(behave: Callable[[socket.socket], None], until: bytes = b"\r\n\r\n") -> Iterator[Peer]:
    server = Peer(behave, until)
    try:
        yield server
    finally:
        server.close()


def answer(data: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(data)


def reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_send_http_with_bind_shows_the_answer_escaped() -> None:
    with peer(answer(b"HTTP/1.1 200 OK\r\nx-evil: \x1b[2J\x9b\r\n\r\nhello")) as server:
        result = cli("send", f"127.0.0.1:{server.port}", "--bind", "127.0.0.2",
                     "--source", "203.0.113.9:4000", "--destination", "10.0.0.1:80",
                     "--authority", "example.com", "--http", "/path?q=1")
    assert result.returncode == 0, result.stderr
    assert server.peer[0] == "127.0.0.2"
    header = proxyproto.parse(server.received)
    assert header.source == ("203.0.113.9", 4000) and header.authority == "example.com"
    request = server.received[header.length:]
    assert request.startswith(b"GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Connection: close\r\n\r\n" in request
    out = result.stdout.decode()
    assert "\x1b" not in out and "\x9b" not in out
    assert out == "HTTP/1.1 200 OK\nx-evil: \\x1b[2J\\x9b\n\nhello\n"


def test_send_data_escapes_and_raw_answer() -> None:
    with peer(answer(b"\x00PONG\x1b"), until=b"PING") as server:
        result = cli("send", f"127.0.0.1:{server.port}", "--v1", "--source", "192.0.2.1:1",
                     "--destination", "192.0.2.2:2", "--data", "\\x01PING\\r\\n", "--raw")
    assert result.returncode == 0 and result.stdout == b"\x00PONG\x1b"
    assert server.received == b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n\x01PING\r\n"


def test_send_empty_reply_is_52() -> None:
    with peer(lambda conn: None) as server:
        result = cli("send", f"127.0.0.1:{server.port}", "--http", "/")
    assert result.returncode == 52
    assert "without an answer" in one_line_error(result)


def test_send_reset_is_56() -> None:
    with peer(reset) as server:
        result = cli("send", f"127.0.0.1:{server.port}", "--http", "/")
    assert result.returncode == 56
    assert "reset" in one_line_error(result)


def test_send_no_answer_before_the_timeout_is_28() -> None:
    with peer(lambda conn: None) as server:
        server._behave = lambda conn: server.release.wait(15)  # hold the connection open
        result = cli("send", f"127.0.0.1:{server.port}", "--http", "/", "--timeout", "0.5")
    assert result.returncode == 28
    assert "within 0.5 s" in one_line_error(result)


def test_send_no_read_exits_after_sending() -> None:
    with peer(lambda conn: None, until=b"X") as server:
        result = cli("send", f"127.0.0.1:{server.port}", "--local", "--data", "X",
                     "--no-read")
    assert result.returncode == 0 and result.stdout == b""
    assert proxyproto.parse(server.received).command == proxyproto.Command.LOCAL


def test_send_connection_refused_is_7() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("send", f"127.0.0.1:{port}")
    assert result.returncode == 7
    assert f"cannot connect to 127.0.0.1:{port}" in one_line_error(result)


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["send", "host.invalid:80"], 6, "cannot resolve"),
    (["send", "127.0.0.1:9", "--bind", "192.0.2.123"], 7, "cannot bind to 192.0.2.123"),
    (["send", "127.0.0.1:9", "--data", "bad \\q"], 2, "bad escape at character 4"),
    (["send", "127.0.0.1:9", "--data", "\\x4"], 2, "two hex digits"),
    (["send", "127.0.0.1:9", "--http", "/a b"], 2, "no spaces"),
    (["send", "127.0.0.1:9", "--http", "/", "--data", "x"], 2, "not allowed with"),
    (["send", "127.0.0.1:9", "--bind", "nohost"], 2, "--bind address"),
    (["send", "127.0.0.1:9", "--timeout", "-1"], 2, "greater than 0"),
])
def test_send_errors(argv: list[str], status: int, message: str) -> None:
    result = cli(*argv)
    assert result.returncode == status
    assert message in one_line_error(result)


# -- whoami -----------------------------------------------------------------------------

@contextlib.contextmanager
def whoami(*args: str, env: Optional[dict[str, str]] = None
           ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A whoami subprocess on 127.0.0.1 (any port), bounded by --duration 30."""
    process = subprocess.Popen(
        [sys.executable, "-m", "proxyproto", "whoami", "--listen", "127.0.0.1:0",
         "--duration", "30", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner, process.communicate(timeout=30)
        if banner.startswith("{"):
            port = json.loads(banner)["address"]["port"]
        else:
            port = int(banner.split(",")[0].rsplit(":", 1)[1])
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                got += chunk
    return got


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def test_whoami_escapes_what_the_client_chose() -> None:
    """Regression (issue 9 item 5): a TLV forged a ``you are:`` line and sent escapes."""
    forged = proxyproto.encode_v2(("203.0.113.9", 4000), ("10.0.0.1", 443), tlvs=[
        (0x02, b"x\r\nyou are:      6.6.6.6:6\r\n\x1b[2J\x1b]0;owned\x07"),
        (0x30, b"ns\x1b[31m"), (0x05, "id\u202egnp.exe".encode())])
    with whoami("--trusted", "127.0.0.1/32", "--max-requests", "1") as (process, port):
        reply = exchange(port, forged + GET)
        status, out, _ = finish(process)
    assert reply.startswith(b"HTTP/1.1 200 OK")
    body = reply.split(b"\r\n\r\n", 1)[1].decode()
    for text in (body, out):
        # one "you are:" line, however indented (the old output had a forged one)
        assert [line for line in text.splitlines() if line.strip().startswith("you are:")] \
            == ["you are:      203.0.113.9:4000"]
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "you are:      6.6.6.6:6\\r\\n\\x1b[2J" in body
    assert status == 0


def test_whoami_shows_a_unix_peer_as_its_path() -> None:
    """Regression (issue 9 item 5): an AF_UNIX client printed as ``'/r'``."""
    wire = proxyproto.encode_v2("/run/client.sock", "/run/app.sock")
    with whoami("--trusted", "127.0.0.1", "--max-requests", "1") as (process, port):
        reply = exchange(port, wire + GET)
        finish(process)
    assert b"you are:      /run/client.sock\n" in reply
    assert b"you reached:  /run/app.sock\n" in reply
    assert b"via:          127.0.0.1:" in reply


def test_whoami_prints_refusals_with_their_reason_and_a_summary() -> None:
    with whoami("--trusted", "127.0.0.1", "--max-requests", "1") as (process, port):
        spoofed = proxyproto.encode_v1(("198.51.100.1", 1), ("10.0.0.1", 2))
        assert exchange(port, spoofed + GET, source="127.0.0.3") == b""
        assert exchange(port, b"GET / HTTP/1.1\r\n\r\n") == b""  # trusted, no header
        reply = exchange(port, proxyproto.encode_v1(("192.0.2.7", 7), ("10.0.0.1", 80)) + GET)
        status, out, err = finish(process)
    assert b"you are:      192.0.2.7:7" in reply
    assert status == 0 and err == ""
    refusals = [line for line in out.splitlines() if line.startswith("refused:")]
    assert len(refusals) == 2
    assert "127.0.0.3" in refusals[0] and refusals[0].endswith(": untrusted")
    assert ": no_header" in refusals[1]
    assert out.splitlines()[-1] == "served 1, refused 2 (no_header: 1, untrusted: 1)"


def test_whoami_json_events_and_answers() -> None:
    with whoami("--trusted", "127.0.0.1", "--max-requests", "1", "--json") as (process, port):
        assert exchange(port, b"", source="127.0.0.3") == b""
        wire = proxyproto.encode_v2(("2001:db8::9", 4000), ("2001:db8::1", 443),
                                    tlvs=[(0x02, b"\x1b[2J")])
        reply = exchange(port, wire + b"hello, not HTTP")
        status, out, _ = finish(process)
    report = json.loads(reply)  # not HTTP: the bare report
    assert report["client"] == {"host": "2001:db8::9", "port": 4000}
    assert report["proxy_header"]["decoded"]["authority"] == "\x1b[2J"
    assert report["received"] == "hello, not HTTP"
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["event"] for event in events] == ["refused", "served", "summary"]
    assert events[0]["reason"] == "untrusted"
    assert events[2] == {"event": "summary", "served": 1, "refused": {"untrusted": 1}}
    assert "\x1b" not in out  # JSON-escaped
    assert status == 0


def test_whoami_answers_json_when_asked_by_accept() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html, application/json\r\n\r\n"
    with whoami("--trusted", "127.0.0.1", "--max-requests", "1") as (process, port):
        reply = exchange(port, proxyproto.encode_v1(("192.0.2.1", 5), ("192.0.2.2", 6))
                         + request)
        finish(process)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert json.loads(body)["client"] == {"host": "192.0.2.1", "port": 5}


def test_whoami_stops_after_its_duration() -> None:
    result = cli("whoami", "--listen", "127.0.0.1:0", "--trusted", "127.0.0.1",
                 "--duration", "0.3")
    assert result.returncode == 0
    assert result.stdout.decode().splitlines()[-1] == "served 0, refused 0"


def test_whoami_trusted_from_the_environment() -> None:
    env = dict(os.environ, PROXYPROTO_TRUSTED="10.0.0.0/8, 127.0.0.1")
    result = cli("whoami", "--listen", "127.0.0.1:0", "--duration", "0.3", env=env)
    assert result.returncode == 0
    assert "trusting 10.0.0.0/8, 127.0.0.1" in result.stdout.decode()
    env["PROXYPROTO_TRUSTED"] = "10.0.0.1/8"
    result = cli("whoami", "--listen", "127.0.0.1:0", env=env)
    assert result.returncode == 2 and "PROXYPROTO_TRUSTED" in one_line_error(result)


def test_whoami_unknown_listen_host_is_6() -> None:
    result = cli("whoami", "--listen", "host.invalid:8000", "--trusted", "127.0.0.1")
    assert result.returncode == 6
    assert "cannot resolve host.invalid:8000" in one_line_error(result)


def test_whoami_port_in_use_is_10() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = cli("whoami", "--listen", f"127.0.0.1:{port}", "--trusted", "127.0.0.1")
    assert result.returncode == 10
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)


@pytest.mark.parametrize(("argv", "status", "message"), [
    ([], 2, "at least one --trusted"),
    (["--trusted", "127.0.0.1", "--handshake-timeout", "1"], 2, "give --tls-cert too"),
    (["--trusted", "127.0.0.1", "--handshake-timeout", "0"], 2, "greater than 0"),
    (["--trusted", "127.0.0.1", "--tls-key", "k.pem"], 2, "--tls-key needs --tls-cert"),
    (["--trusted", "127.0.0.1", "--tls-cert", "/nonexistent.pem"], 4, "No such file"),
    (["--trusted", "127.0.0.1", "--policy", "maybe"], 2, "invalid choice"),
])
def test_whoami_errors(argv: list[str], status: int, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROXYPROTO_TRUSTED"}
    result = cli("whoami", "--listen", "127.0.0.1:0", *argv, env=env)
    assert result.returncode == status
    assert message in one_line_error(result)


def test_whoami_refuses_a_file_that_is_not_a_certificate(tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate\n")
    result = cli("whoami", "--trusted", "127.0.0.1", "--tls-cert", str(bogus))
    assert result.returncode == 4
    assert "cannot use" in one_line_error(result)


def test_handshake_timeout_is_passed_to_start_server() -> None:
    """Issue 9 item 5: ``--handshake-timeout`` becomes ``ssl_handshake_timeout``; by
    default the header timeout bounds the handshake too (asyncio's default is 60 s)."""
    parse = build_parser().parse_args
    base = ["whoami", "--trusted", "127.0.0.1", "--tls-cert", "c.pem"]
    assert server_options(parse([*base, "--handshake-timeout", "0.5"])) \
        ["ssl_handshake_timeout"] == 0.5
    assert server_options(parse([*base, "--timeout", "2"]))["ssl_handshake_timeout"] == 2
    assert "ssl_handshake_timeout" not in server_options(
        parse(["whoami", "--trusted", "127.0.0.1"]))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
            check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


def test_whoami_tls_details_and_a_bounded_handshake(certificate: tuple[Path, Path]) -> None:
    """Regression (issue 9 item 5): a header then a stalled handshake was held 60 s."""
    cert, key = certificate
    header = proxyproto.encode_v1(("192.0.2.44", 4444), ("10.0.0.1", 443))
    with whoami("--trusted", "127.0.0.1", "--tls-cert", str(cert), "--tls-key", str(key),
                "--timeout", "30", "--handshake-timeout", "0.5",
                "--max-requests", "1") as (process, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(header)  # ...and no ClientHello: dropped after 0.5 s, not 30
            with contextlib.suppress(ConnectionResetError):
                assert stalled.recv(4096) == b""
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        client.set_alpn_protocols(["http/1.1"])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(header)
            with client.wrap_socket(raw, server_hostname="shop.example") as tls:
                tls.sendall(GET)
                reply = b""
                with contextlib.suppress(ssl.SSLError, ConnectionResetError):
                    while chunk := tls.recv(65536):
                        reply += chunk
        status, out, _ = finish(process)
    assert b"you are:      192.0.2.44:4444" in reply
    tls_line = next(line for line in reply.decode().splitlines() if line.startswith("TLS:"))
    assert "sni shop.example" in tls_line and "alpn http/1.1" in tls_line
    assert "version TLSv1." in tls_line
    assert any(line.startswith("refused:") and ": tls" in line for line in out.splitlines())
    assert status == 0


# -- interruption, demo -----------------------------------------------------------------

def test_ctrl_c_is_one_line_and_status_130() -> None:
    with whoami("--trusted", "127.0.0.1") as (process, _):
        process.send_signal(signal.SIGINT)
        status, _, err = finish(process)
    assert status == 130
    assert err == "proxyproto: interrupted\n"


def test_sigterm_stops_whoami_cleanly_with_its_summary() -> None:
    """A container runtime stops whoami with SIGTERM: a summary and status 0."""
    with whoami("--trusted", "127.0.0.1") as (process, _):
        process.send_signal(signal.SIGTERM)
        status, out, err = finish(process)
    assert status == 0 and err == ""
    assert out.splitlines()[-1] == "served 0, refused 0"


_ONLY_STDLIB = """
import sys
allowed = set(sys.stdlib_module_names) | {"proxyproto"}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in allowed:
            raise ImportError(f"demo imported {name}, which is not the package's")
        return None
sys.meta_path.insert(0, Refuse())
from proxyproto._cli import main
raise SystemExit(main(["demo"]))
"""


def test_demo_behaves_and_needs_only_the_package() -> None:
    if sys.version_info < (3, 10):
        argv = [sys.executable, "-m", "proxyproto", "demo"]
    else:
        argv = [sys.executable, "-c", _ONLY_STDLIB]
    result = subprocess.run(argv, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    out = result.stdout.decode()
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == 5 and all(row.endswith("ok") for row in rows)
    assert "refused: untrusted" in out and "refused: no_header" in out
    assert "served as 203.0.113.10:41000" in out
    assert "server counters: accepted 3" in out
    assert result.stderr == b""


def test_demo_fails_when_a_case_misbehaves(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The tour is a check: an outcome other than the expected one is status 1."""
    from proxyproto._cli import _demo

    real = _demo._cases()
    wrong = _demo._Case("v1 header, wrongly expected refused", "127.0.0.2", real[0].header,
                        None, "untrusted")
    monkeypatch.setattr(_demo, "_cases", lambda: [real[1], wrong])
    level = logging.getLogger("proxyproto.aio").level
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "UNEXPECTED, wanted refused: untrusted" in out
    assert "some case did not behave as expected" in out
    assert logging.getLogger("proxyproto.aio").level == level  # given back


def test_send_and_whoami_over_ipv6_loopback() -> None:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxyproto", "whoami", "--listen", "[::1]:0", "--trusted",
         "::1", "--max-requests", "1", "--duration", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("proxyproto whoami listening on [::1]:"), banner
        port = int(banner.split(",")[0].rsplit(":", 1)[1])
        result = cli("send", f"[::1]:{port}", "--source", "[2001:db8::5]:5555",
                     "--destination", "[2001:db8::1]:443", "--http", "/")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "you are:      [2001:db8::5]:5555" in result.stdout.decode()
    assert "via:          [::1]:" in result.stdout.decode()
