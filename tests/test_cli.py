"""The ``proxyproto`` command line: encode, decode, usage errors, escaping, exit statuses.

Each sub-command and error path runs as a subprocess (``python -m proxyproto``), under
both implementations where parsing is involved; the helpers are also tested directly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import proxyproto
from proxyproto._cli import SUBCOMMANDS, _common, build_parser, main
from proxyproto._cli._common import escape, escape_bytes, parse_host_port, show_address
from proxyproto._cli._decode import parse_hex

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.rst"


def cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m proxyproto ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "proxyproto", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The stderr of a failed run: exactly one line, no traceback."""
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err


@pytest.fixture
def impl_env(impl: ModuleType) -> dict[str, str]:
    """The environment that makes a subprocess use ``impl``."""
    env = dict(os.environ)
    env.pop("PROXYPROTO_NO_EXTENSIONS", None)
    if impl.__name__.endswith("_fallback"):
        env["PROXYPROTO_NO_EXTENSIONS"] = "1"
    return env


# -- escaping ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, é and 日本", "plain text, é and 日本"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
    ("\x00\x7f\x80\x9b\x9f", "\\x00\\x7f\\x80\\x9b\\x9f"),
    ("abc\u202edcba\u2066x\u2069\u200f", "abc\\u202edcba\\u2066x\\u2069\\u200f"),
    ("line\u2028sep\ufeff", "line\\u2028sep\\ufeff"),
    ("back\\slash", "back\\\\slash"),
    ("/tmp/\udcff", "/tmp/\\xff"),
])
def test_escape_writes_every_unsafe_character_visibly(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert escape(shown) != shown or "\\" not in shown  # the backslash itself is escaped


def test_escape_bytes_and_lines() -> None:
    assert escape_bytes(b"ok \xff\xc3\xa9\x1b") == "ok \\xffé\\x1b"
    assert escape_bytes(b"HTTP/1.1 200\r\nx: \x1b[31m\r\n", lines=True) == \
        "HTTP/1.1 200\nx: \\x1b[31m\n"
    assert _common.escape_lines("a\rb\tc") == "a\\rb\tc"


def test_show_address_forms() -> None:
    assert show_address(("192.0.2.1", 80)) == "192.0.2.1:80"
    assert show_address(("2001:db8::1", 443, 0, 0)) == "[2001:db8::1]:443"
    assert show_address("/run/client.sock") == "/run/client.sock"
    assert show_address("/run/\x1b[2J") == "/run/\\x1b[2J"
    assert show_address("") == "(unnamed UNIX socket)"
    assert show_address(b"\x00abstract\x00x") == "@abstract\\x00x"
    assert show_address(None) == "(none)"


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::1]:443", ("::1", 443)),
    ("[fe80::1%eth0]:8080", ("fe80::1%eth0", 8080)),
    ("example.com:65535", ("example.com", 65535)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_parse_host_port_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("127.0.0.1:99999", "port 99999 is out of range"),
    ("127.0.0.1:65536", "out of range"),
    ("127.0.0.1:-1", "a number from 0 to 65535"),
    ("127.0.0.1:+80", "a number from 0 to 65535"),
    ("127.0.0.1:٨٠", "a number from 0 to 65535"),  # non-ASCII digits
    ("127.0.0.1", "expected HOST:PORT"),
    ("::1:80", "in brackets"),
    ("[::1]80", "expected [IPV6]:PORT"),
    ("[::1:80", "missing ']'"),
    ("[1.2.3.4]:80", "not an IPv6 address"),
    (":80", "the host is missing"),
    ("127.0.0.1:", "a number"),
])
def test_parse_host_port_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_host_port(text)


def test_port_zero_refused_where_it_cannot_work() -> None:
    with pytest.raises(ValueError, match=r"out of range \(1\.\.65535\)"):
        parse_host_port("127.0.0.1:0", allow_port_zero=False)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_host_port("example.com:80", require_ip=True)


# -- issue 9 item 3: a port out of range is refused, never wrapped ----------------------

def test_send_refuses_a_port_out_of_range() -> None:
    """Regression (issue 9 item 3): ``send 127.0.0.1:99999`` connected to port 34463."""
    result = cli("send", "127.0.0.1:99999", "--v1", "--no-read")
    assert result.returncode == 2
    err = one_line_error(result)
    assert "99999" in err and "65535" in err


@pytest.mark.parametrize("argv", [
    ["send", "127.0.0.1:0"],
    ["send", "127.0.0.1:80", "--bind", "127.0.0.1:70000"],
    ["send", "::1:80"],
    ["encode", "--source", "1.2.3.4:70000", "--destination", "1.2.3.4:1"],
    ["encode", "--source", "1.2.3.4:1", "--destination", "[::1]:99999"],
    ["encode", "--source", "example.com:1", "--destination", "1.2.3.4:1"],
    ["whoami", "--listen", "127.0.0.1:65536", "--trusted", "127.0.0.1"],
    ["whoami", "--listen", "::1:8000", "--trusted", "127.0.0.1"],
])
def test_every_host_port_option_is_validated(argv: list[str]) -> None:
    result = cli(*argv)
    assert result.returncode == 2
    one_line_error(result)


# -- encode -----------------------------------------------------------------------------

def test_encode_v2_default_hex_with_tlv_shortcuts(impl_env: dict[str, str]) -> None:
    result = cli("encode", "--source", "192.0.2.1:51000", "--destination",
                 "[2001:db8::1]:443", "--authority", "example.com", "--alpn", "h2",
                 "--unique-id", "req-1", "--tlv", "NETNS=blue", "--tlv", "0xE5=hex:00:ff",
                 "--tlv", "230=text", "--crc32c", env=impl_env)
    assert result.returncode == 0, result.stderr
    header = proxyproto.parse(bytes.fromhex(result.stdout.decode().strip()))
    assert header.version == 2
    assert header.source == ("::ffff:192.0.2.1", 51000)
    assert header.authority == "example.com"
    assert header.alpn == b"h2" and header.unique_id == b"req-1" and header.netns == "blue"
    assert (0xE5, b"\x00\xff") in header.tlvs and (0xE6, b"text") in header.tlvs
    assert header.tlvs[-1][0] == proxyproto.TLVType.CRC32C


def test_encode_v1_raw_local_dgram_and_unix() -> None:
    result = cli("encode", "--v1", "--raw", "--source", "192.0.2.1:1",
                 "--destination", "192.0.2.2:2")
    assert result.stdout == b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"
    assert cli("encode", "--v1").stdout.strip() == b"PROXY UNKNOWN\r\n".hex().encode()
    local = proxyproto.parse(cli("encode", "--local", "--raw").stdout)
    assert local.command == proxyproto.Command.LOCAL
    dgram = proxyproto.parse(cli("encode", "--v2", "--dgram", "--raw", "--source",
                                 "192.0.2.1:1", "--destination", "192.0.2.2:2").stdout)
    assert dgram.transport == 2  # SOCK_DGRAM
    unix = proxyproto.parse(cli("encode", "--raw", "--source", "unix:/run/c.sock",
                                "--destination", "unix:/run/s.sock").stdout)
    assert unix.source == "/run/c.sock"


@pytest.mark.parametrize(("argv", "message"), [
    (["--v1", "--tlv", "1=x"], "v1 headers carry no TLVs"),
    (["--v1", "--authority", "x"], "v1 headers carry no TLVs"),
    (["--v1", "--dgram"], "--dgram"),
    (["--v1", "--local"], "--local"),
    (["--local", "--source", "1.2.3.4:1", "--destination", "1.2.3.4:2"], "no addresses"),
    (["--source", "1.2.3.4:1"], "both --source and --destination"),
    (["--source", "unix:/a", "--destination", "[::1]:2"], "both be unix: paths"),
    (["--tlv", "NOPE=1"], "neither a number nor one of"),
    (["--tlv", "300=1"], "out of range"),
    (["--tlv", "1=hex:zz"], "bad hex"),
    (["--tlv", "novalue"], "TYPE=TEXT or TYPE=hex:HEX"),
    (["--unique-id", "x" * 200], "cannot encode"),
    (["--v1", "--v2"], "not allowed with"),
    (["--hex", "--raw"], "not allowed with"),
])
def test_encode_errors_are_one_line_usage_errors(argv: list[str], message: str) -> None:
    result = cli("encode", *argv)
    assert result.returncode == 2
    assert message in one_line_error(result)


# -- decode -----------------------------------------------------------------------------

WIRE = proxyproto.encode_v2(("203.0.113.9", 4000), ("10.0.0.1", 443),
                            tlvs=[(0x02, b"example.com")])


def _xxd(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}: {groups:<39}  {text}")
    return "\n".join(lines) + "\n"


def _hexdump_c(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{text}|")
    lines.append(f"{len(data):08x}")
    return "\n".join(lines) + "\n"


def _ascii(chunk: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)


def _tcpdump_x(data: bytes) -> str:
    lines = ["14:00:00.000001 IP 127.0.0.1.40000 > 127.0.0.1.8000: Flags [P.], seq 1:29, "
             f"ack 1, win 512, length {len(data)}"]
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        lines.append(f"\t0x{offset:04x}:  {groups:<39}  {_ascii(chunk)}")
    return "\n".join(lines) + "\n"


def _wireshark(data: bytes) -> str:
    return "\n".join(f"{offset:04x}   " + " ".join(f"{b:02x}" for b in data[offset:offset + 16])
                     + "   " + _ascii(data[offset:offset + 16])
                     for offset in range(0, len(data), 16)) + "\n"


@pytest.mark.parametrize("form", [
    _tcpdump_x(WIRE), _wireshark(WIRE),
    WIRE.hex(), WIRE.hex(" "), WIRE.hex(":"), WIRE.hex().upper(),
    " ".join(f"0x{b:02x}" for b in WIRE), ", ".join(f"0x{b:02X}" for b in WIRE),
    _xxd(WIRE), _hexdump_c(WIRE),
    "\n".join(f"{i:06x} " + " ".join(f"{b:02x}" for b in WIRE[i:i + 16])
              for i in range(0, len(WIRE), 16)),  # od -A x -t x1
])
def test_parse_hex_forms(form: str) -> None:
    assert parse_hex(form) == WIRE


@pytest.mark.parametrize(("text", "message"), [
    ("0d0a zz", "'z' is not a hex digit"), ("abc", "odd number"), ("0d\n0g", "line 2"),
])
def test_parse_hex_says_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hex(text)


def test_decode_hex_argument_text_and_json(impl_env: dict[str, str]) -> None:
    result = cli("decode", WIRE.hex(" "), env=impl_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "source:      203.0.113.9:4000" in out and "authority: example.com" in out
    result = cli("decode", "--json", WIRE.hex(), env=impl_env)
    info = json.loads(result.stdout)
    assert info["offset"] == 0 and info["decoded"]["authority"] == "example.com"
    assert info["source"] == {"host": "203.0.113.9", "port": 4000}


def test_decode_finds_the_header_after_junk(impl_env: dict[str, str], tmp_path: Path) -> None:
    raw = tmp_path / "capture.bin"
    raw.write_bytes(b"\x16\x03junk" + WIRE + b"GET /")
    result = cli("decode", "--file", str(raw), env=impl_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "header found at offset 6" in out and "\\x16\\x03junk" in out
    assert "then 5 byte(s) of application data: GET /" in out
    info = json.loads(cli("decode", "--json", "--file", str(raw), env=impl_env).stdout)
    assert info["offset"] == 6 and info["trailing_bytes"] == 5
    # a capture: tcpdump -X of a packet, the IP and TCP headers (40 bytes) before the header
    packet = bytes.fromhex("4500005c1c4640004006206a7f0000017f000001") + bytes(20) + WIRE
    result = cli("decode", stdin=_tcpdump_x(packet).encode(), env=impl_env)
    assert result.returncode == 0, result.stderr
    assert "header found at offset 40" in result.stdout.decode()
    # the same in a hex dump (offsets and ASCII column) on stdin
    result = cli("decode", "--json", stdin=_xxd(b"noise" + WIRE).encode(), env=impl_env)
    assert json.loads(result.stdout)["offset"] == 5


def test_decode_raw_v1_from_stdin_escapes_the_payload(impl_env: dict[str, str]) -> None:
    result = cli("decode", stdin=b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\x1b[2Jhi",
                 env=impl_env)
    assert result.returncode == 0
    assert b"\x1b" not in result.stdout
    assert "application data: \\x1b[2Jhi" in result.stdout.decode()


def test_decode_escapes_client_chosen_strings(impl_env: dict[str, str]) -> None:
    evil = proxyproto.encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlvs=[
        (0x02, b"x\nsource:      6.6.6.6:6\x1b[2J"), (0x30, b"ns\x1b]0;pwned\x07"),
        (0x05, "id\u202egnp.exe".encode())])
    result = cli("decode", evil.hex(), env=impl_env)
    out = result.stdout.decode()
    assert result.returncode == 0 and "\x1b" not in out and "\x07" not in out
    assert "\u202e" not in out
    assert [line for line in out.splitlines() if line.startswith("source:")] == \
        ["source:      1.2.3.4:1"]
    assert "authority: x\\nsource:      6.6.6.6:6\\x1b[2J" in out


def test_decode_on_an_ascii_only_terminal() -> None:
    """Printable non-ASCII text is kept, so a narrow stdout encoding must not fail."""
    wire = proxyproto.encode_v2(("1.2.3.4", 1), ("1.2.3.4", 2), tlvs=[(0x02, "日本".encode())])
    result = cli("decode", wire.hex(), env=dict(os.environ, PYTHONIOENCODING="ascii"))
    assert result.returncode == 0 and result.stderr == b""
    assert "authority: \\u65e5\\u672c" in result.stdout.decode()


@pytest.mark.parametrize(("argv", "stdin", "status", "message"), [
    (["decode", "0d0a zz"], b"", 3, "bad hex input"),
    (["decode", "--format", "hex"], b"\x00\x01", 3, "'\\x00' is not a hex digit"),
    (["decode", "--format", "hex"], b"\xff\x01", 3, "not hex text"),
    (["decode"], b"hello, world", 3, "NoProxyHeader"),
    (["decode"], b"", 3, "incomplete header"),
    (["decode", "0d0a0d0a00"], b"", 3, "11 more byte(s)"),
    (["decode"], b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 3, "offset 11"),
    (["decode"], b"junk!PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 3, "input offset 5"),
    (["decode"], b"junk!\r\n\r\n\x00\r\nQUIT\n\x21", 3,
     "incomplete header (the header found at input offset 5): at least 3 more"),
    (["decode"], b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[:-2] + b"PROXY ", 3, "InvalidHeader"),
    (["decode", "--file", "/nonexistent/capture.bin"], b"", 4, "No such file"),
    (["decode", "--max-size", "0"], b"", 2, "greater than 0"),
])
def test_decode_errors(impl_env: dict[str, str], argv: list[str], stdin: bytes, status: int,
                       message: str) -> None:
    result = cli(*argv, stdin=stdin, env=impl_env)
    assert result.returncode == status
    assert message in one_line_error(result)


# -- the command line as a whole ----------------------------------------------------------

def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommand_parsers()))
def test_every_subcommand_help_has_examples(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "examples:" in out and "proxyproto " + command in out


def test_top_level_help_and_version() -> None:
    out = cli("--help").stdout.decode()
    assert "examples:" in out and all(
        name.lstrip("_") in out for name in SUBCOMMANDS)
    version = cli("--version")
    assert version.returncode == 0 and proxyproto.__version__ in version.stdout.decode()


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["encode", "--nope"],
                                  ["whoami", "--trusted", "10.0.0.1/8"],
                                  ["whoami", "--trusted", "not-a-net"],
                                  ["whoami", "--trusted", "127.0.0.1", "--timeout", "0"],
                                  ["whoami", "--trusted", "127.0.0.1", "--timeout", "nan"]])
def test_usage_errors_are_one_line(argv: list[str]) -> None:
    result = cli(*argv)
    assert result.returncode == 2
    assert "--help" in one_line_error(result)


def test_bad_cidr_says_what_was_meant() -> None:
    result = cli("whoami", "--trusted", "10.0.0.1/8")
    assert result.returncode == 2
    assert "10.0.0.0/8" in one_line_error(result)  # the network it would have meant


def test_broken_pipe_is_one_line_and_status_23() -> None:
    big = "a" * 60000  # 120 kB of hex: more than a pipe holds
    process = subprocess.Popen(
        [sys.executable, "-m", "proxyproto", "encode", "--tlv", f"0xE5={big}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head` exiting at once
    _, err = process.communicate(timeout=60)
    assert process.returncode == 23
    assert err.decode().count("\n") == 1 and "broken pipe" in err.decode()


def test_exit_statuses_are_documented() -> None:
    """docs/cli.rst has a row for every exit status the command line uses."""
    text = DOCS.read_text()
    statuses = {name: value for name, value in vars(_common).items()
                if name.startswith("EXIT_")}
    assert len(statuses) >= 12
    for name, value in statuses.items():
        assert re.search(rf"^\s*{value}\s+", text, re.MULTILINE), (name, value)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommands_follow_the_register_run_interface(name: str) -> None:
    """Each module's ``register`` adds one parser whose ``func`` is the module's ``run``."""
    module = importlib.import_module(f"proxyproto._cli.{name}")
    subparsers = argparse.ArgumentParser().add_subparsers()
    module.register(subparsers)
    (parser,) = subparsers.choices.values()
    assert parser.get_default("func") is module.run


def test_main_returns_the_status_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", "--v1"]) == 0
    assert capsys.readouterr().out.strip() == b"PROXY UNKNOWN\r\n".hex()
    assert main(["decode", "00"]) == 3
