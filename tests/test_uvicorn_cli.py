"""``proxyproto uvicorn``: arguments, errors (one line, documented status), and real
servers started as the command would be (one worker and several)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aio_util import (
    WHO_APP,
    ask_process,
    ask_unix,
    free_port,
    json_body,
    stop_process,
    throwaway_cert,
)
from proxyproto import encode_v1, encode_v2
from proxyproto._cli._uvicorn import ENVIRONMENT_TRUSTED, register
from proxyproto._cli._uvicorn import run as run_command

pytest.importorskip("uvicorn")

TRUSTED = "127.0.0.2"
SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"


# what the `proxyproto` entry point does with the sub-command (the lead wires it in)
LAUNCHER = """
import argparse, sys
from proxyproto._cli._uvicorn import register
parser = argparse.ArgumentParser(prog="proxyproto")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="proxyproto")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["uvicorn", *argv])


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "whoapp.py").write_text(WHO_APP)
    return tmp_path


def test_arguments_and_their_errors(app_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(ENVIRONMENT_TRUSTED, raising=False)
    args = parse("whoapp:app", "--app-dir", str(app_dir))
    assert run_command(args) == 2
    assert capsys.readouterr().err == (
        "proxyproto uvicorn: no trusted proxy: give --trusted CIDR or set PROXYPROTO_TRUSTED\n")
    monkeypatch.setenv(ENVIRONMENT_TRUSTED, "10.0.0.0/8, 10.0.0.300/8")
    assert run_command(args) == 2
    assert capsys.readouterr().err.startswith(
        "proxyproto uvicorn: PROXYPROTO_TRUSTED: bad CIDR '10.0.0.300/8'")
    assert run_command(parse("nowhere:app", "--trusted", TRUSTED)) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert run_command(parse("whoapp:app", "--trusted", TRUSTED, "--app-dir", str(app_dir),
                             "--ssl-certfile", "c.pem")) == 2
    assert "go together" in capsys.readouterr().err
    missing = str(app_dir / "missing.pem")
    assert run_command(parse("whoapp:app", "--trusted", TRUSTED, "--ssl-certfile", missing,
                             "--ssl-keyfile", missing)) == 4
    assert "cannot load the TLS certificate" in capsys.readouterr().err
    for bad in (["--trusted", "300.0.0.1"], ["--trusted", TRUSTED, "--port", "99999"],
                ["--trusted", TRUSTED, "--header-timeout", "0"],
                ["--trusted", TRUSTED, "--workers", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            parse("whoapp:app", *bad)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith("proxyproto uvicorn: error:")


@contextlib.contextmanager
def command(app_dir: Path, *argv: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    """The command as a process (its output in ``app_dir / "output"``), stopped at the end."""
    environment = {**os.environ, **(env or {})}
    if env is None:
        environment.pop(ENVIRONMENT_TRUSTED, None)
    with open(app_dir / "output", "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, "uvicorn", "whoapp:app",
                                    "--app-dir", str(app_dir), "--log-level", "warning",
                                    *argv], cwd=app_dir, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, signal.SIGINT)


@pytest.mark.parametrize("workers", [1, 2])
def test_serves_behind_the_proxy(app_dir: Path, workers: int) -> None:
    port = free_port()
    with command(app_dir, "--port", str(port), "--workers", str(workers),
                 env={ENVIRONMENT_TRUSTED: f"{TRUSTED},::1"}) as process:
        answers = [ask_process(port, encode_v2(SRC, DST) + REQUEST, source=TRUSTED),
                   ask_process(port, encode_v1(SRC, DST) + REQUEST, source=TRUSTED),
                   ask_process(port, encode_v2(SRC, DST) + REQUEST, source="127.0.0.3"),
                   ask_process(port, REQUEST, source=TRUSTED)]
        process.send_signal(signal.SIGINT)
        status = process.wait(20)
    expected = {"client": list(SRC), "server": list(DST)}
    assert json_body(answers[0]) == {**expected, "version": 2}  # X-Forwarded-For ignored
    assert json_body(answers[1]) == {**expected, "version": 1}
    assert answers[2] == b"" and answers[3] == b""  # untrusted; no header
    assert status == 0


def test_bad_request_and_forwarded_headers(app_dir: Path) -> None:
    port = free_port()
    with command(app_dir, "--port", str(port), "--trusted", TRUSTED, "--bad-request",
                 "--forwarded-headers", "--forwarded-allow-ips", SRC[0]) as process:
        spoofed = ask_process(port, encode_v2(SRC, DST) + REQUEST, source=TRUSTED)
        missing = ask_process(port, REQUEST, source=TRUSTED)
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert json_body(spoofed)["client"][0] == "6.6.6.6"  # asked for: SRC may forward
    assert missing.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_address_in_use_is_one_line_and_status_10(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with command(app_dir, "--port", str(port), "--trusted", TRUSTED) as process:
            status = process.wait(30)
    assert status == 10
    output = (app_dir / "output").read_bytes()
    assert b"address already in use" in output and b"Traceback" not in output


@pytest.mark.parametrize("trust_unix_peers, workers", [(False, 1), (True, 1), (True, 2)])
def test_unix_socket_listener_needs_the_opt_in(app_dir: Path, trust_unix_peers: bool,
                                              workers: int) -> None:
    path = app_dir / "app.sock"
    flags = ["--trust-unix-peers"] if trust_unix_peers else []
    with command(app_dir, "--uds", str(path), "--trusted", TRUSTED, "--workers", str(workers),
                 *flags) as process:
        # (with --workers, uvicorn binds the socket first and its workers listen later)
        answer = ask_unix(path, encode_v2(SRC, DST) + REQUEST)
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    if trust_unix_peers:
        assert json_body(answer) == {"client": list(SRC), "server": list(DST), "version": 2}
    else:
        assert answer == b""  # a UNIX peer has no address to check: refused by default
    assert not path.exists()


def test_trust_unix_peers_needs_uds(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(parse("whoapp:app", "--trusted", TRUSTED, "--trust-unix-peers")) == 2
    assert capsys.readouterr().err == "proxyproto uvicorn: --trust-unix-peers needs --uds\n"


def test_tls_after_the_header(app_dir: Path) -> None:
    port = free_port()
    with throwaway_cert(app_dir) as (cert, key), command(
            app_dir, "--port", str(port), "--trusted", TRUSTED, "--ssl-certfile", str(cert),
            "--ssl-keyfile", str(key), "--handshake-timeout", "2") as process:
        answer = ask_process(port, encode_v2(SRC, DST), source=TRUSTED,
                             tls_after=(REQUEST, cert))
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert json_body(answer) == {"client": list(SRC), "server": list(DST), "version": 2}
