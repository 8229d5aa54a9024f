"""``gunicorn -k proxyproto.gunicorn.UvicornWorker``: a real gunicorn on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn_worker")

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
from proxyproto.gunicorn import (
    ENVIRONMENT_SETTINGS,
    ENVIRONMENT_TRUSTED,
    UvicornWorker,
    setting_from,
    trusted_from,
)

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"



def test_trusted_from_gunicorn_or_the_environment() -> None:
    assert trusted_from(["127.0.0.1", "::1"], {}) == ["127.0.0.1", "::1"]
    assert trusted_from("10.0.0.0/8, 127.0.0.1", {}) == ["10.0.0.0/8", "127.0.0.1"]
    assert trusted_from(["*"], {}) == ["0.0.0.0/0", "::/0"]
    assert trusted_from(["127.0.0.1"], {ENVIRONMENT_TRUSTED: "10.1.0.0/16,10.2.0.0/16"}) == [
        "10.1.0.0/16", "10.2.0.0/16"]
    with pytest.raises(ValueError):
        trusted_from(["10.0.0.1/8"], {})  # host bits set: a typo, refused at boot


def test_settings_from_the_environment() -> None:
    for name in ("BAD_REQUEST", "TRUST_UNIX_PEERS", "FORWARDED_HEADERS"):
        variable = ENVIRONMENT_SETTINGS[name]
        default = getattr(UvicornWorker, name)
        assert default is False
        assert setting_from(name, default, {}) is False
        assert setting_from(name, default, {variable: " "}) is False
        for text in ("1", "true", "YES", "On"):
            assert setting_from(name, default, {variable: text}) is True
        for text in ("0", "false", "no", "off"):
            assert setting_from(name, True, {variable: text}) is False
        with pytest.raises(ValueError, match=variable):
            setting_from(name, default, {variable: "maybe"})
    variable = ENVIRONMENT_SETTINGS["HEADER_TIMEOUT"]
    assert setting_from("HEADER_TIMEOUT", 5.0, {}) == 5.0
    assert setting_from("HEADER_TIMEOUT", 5.0, {variable: "2.5"}) == 2.5
    assert setting_from("HEADER_TIMEOUT", 5.0, {variable: "None"}) is None
    for text in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(ValueError, match=variable):
            setting_from("HEADER_TIMEOUT", 5.0, {variable: text})


@pytest.mark.parametrize("opt_in", [False, True])
def test_real_gunicorn_on_a_unix_socket_with_the_environment_settings(
    tmp_path: Path, opt_in: bool
) -> None:
    """``--bind unix:...``: its peers are refused unless ``PROXYPROTO_TRUST_UNIX_PEERS``
    trusts them; ``PROXYPROTO_BAD_REQUEST`` answers a trusted peer's missing header 400."""
    (tmp_path / "whoapp.py").write_text(WHO_APP)
    path = tmp_path / "app.sock"
    env = {k: v for k, v in os.environ.items()
           if k != ENVIRONMENT_TRUSTED and k not in ENVIRONMENT_SETTINGS.values()}
    env[ENVIRONMENT_TRUSTED] = "127.0.0.1"
    if opt_in:
        env.update({ENVIRONMENT_SETTINGS["TRUST_UNIX_PEERS"]: "1",
                    ENVIRONMENT_SETTINGS["BAD_REQUEST"]: "yes"})
    argv = [sys.executable, "-m", "gunicorn", "-k", "proxyproto.gunicorn.UvicornWorker",
            "-w", "1", "--bind", f"unix:{path}", "--graceful-timeout", "5",
            "--error-logfile", str(tmp_path / "error.log"), "whoapp:app"]
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        proxied = ask_unix(path, encode_v2(SRC, DST) + REQUEST)
        missing = ask_unix(path, REQUEST)
    finally:
        stop_process(process)
    log = (tmp_path / "error.log").read_text()
    if opt_in:
        assert json_body(proxied) == {"client": list(SRC), "server": list(DST), "version": 2}
        assert missing.startswith(b"HTTP/1.1 400 Bad Request"), missing
    else:
        assert proxied == b"" and missing == b""
        assert sum("refused connection" in line and "untrusted" in line
                   for line in log.splitlines()) == 2, log


@pytest.mark.parametrize("from_environment", [False, True])
def test_real_gunicorn_with_the_worker(tmp_path: Path, from_environment: bool) -> None:
    (tmp_path / "whoapp.py").write_text(WHO_APP)
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
        v2 = ask_process(port, encode_v2(SRC, DST) + REQUEST, source="127.0.0.2")
        v1 = ask_process(port, encode_v1(SRC, DST) + REQUEST, source="127.0.0.2")
        untrusted = ask_process(port, encode_v2(SRC, DST) + REQUEST, source="127.0.0.3")
        # 127.0.0.1: in gunicorn's default --proxy-allow-from, not in the list given
        localhost = ask_process(port, encode_v2(SRC, DST) + REQUEST, source="127.0.0.1")
        missing = ask_process(port, REQUEST, source="127.0.0.2")
    finally:
        stop_process(process)
    expected = {"client": list(SRC), "server": list(DST)}
    assert json_body(v2) == {**expected, "version": 2}
    assert json_body(v1) == {**expected, "version": 1}  # X-Forwarded-For ignored
    assert untrusted == b"" and localhost == b"" and missing == b""
    log = (tmp_path / "error.log").read_text()
    warnings = [line for line in log.splitlines() if "refused connection" in line]
    assert any("[WARNING]" in line and "no_header" in line for line in warnings), log
    assert sum("untrusted" in line for line in warnings) == 2, log


def test_gunicorn_tls_after_the_header(tmp_path: Path) -> None:
    """gunicorn's --certfile/--keyfile: the header in clear, then TLS (passthrough)."""
    (tmp_path / "whoapp.py").write_text(WHO_APP)
    port = free_port()
    with throwaway_cert(tmp_path) as (cert, key):
        argv = [sys.executable, "-m", "gunicorn", "-k", "proxyproto.gunicorn.UvicornWorker",
                "-w", "1", "--bind", f"127.0.0.1:{port}", "--proxy-allow-from", "127.0.0.2",
                "--certfile", str(cert), "--keyfile", str(key), "whoapp:app"]
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_TRUSTED}
        process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            answer = ask_process(port, encode_v2(SRC, DST), source="127.0.0.2",
                                 tls_after=(REQUEST, cert))
        finally:
            stop_process(process)
    assert json_body(answer) == {"client": list(SRC), "server": list(DST), "version": 2}
