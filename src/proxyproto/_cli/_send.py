"""``proxyproto send``: connect, send a header (and data) in one write, print the answer."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from typing import Any, Optional

from ._common import (
    EXIT_CONNECT,
    EXIT_EMPTY_REPLY,
    EXIT_OK,
    EXIT_RECV,
    EXIT_RESOLVE,
    EXIT_SEND,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    escape_bytes,
    fail,
    format_host_port,
    host_port,
    parse_host_port,
    positive_float,
    positive_int,
)
from ._encode import add_header_options, build_header

__all__ = ["bind_address", "decode_escapes", "register", "run"]

_EPILOG = """\
examples:
  proxyproto send 127.0.0.1:8000 --source 203.0.113.9:4000 --destination 10.0.0.1:80 --http /
  proxyproto send [::1]:8000 --v1 --source [2001:db8::9]:4000 --destination [2001:db8::1]:80 \\
      --data 'PING\\r\\n'
  proxyproto send 127.0.0.1:8000 --bind 127.0.0.2 --local --http /health
  proxyproto send 127.0.0.1:8000 --source 192.0.2.1:1 --destination 192.0.2.2:2 --no-read

The header and the first data go out in one write, as proxies send them.
The answer is printed with control characters escaped (--raw: the bytes as they came).
exit status: 0 answered, 2 bad option, 6 unknown host, 7 could not connect or bind,
28 no answer before --timeout, 52 closed without an answer, 55/56 reset while sending/reading.
"""

_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "'": "'", '"': '"'}


def decode_escapes(text: str) -> bytes:
    """``--data`` text -> bytes: UTF-8, with ``\\r``, ``\\n``, ``\\t``, ``\\0``, ``\\\\`` and
    ``\\xHH`` escapes.

    Raises:
        ValueError: an unknown or cut escape, with its position.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        code = text[i + 1: i + 2]
        if code in _ESCAPES:
            out += _ESCAPES[code].encode()
            i += 2
        elif code == "x":
            digits = text[i + 2: i + 4]
            if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad escape at character {i}: \\x needs two hex digits")
            out.append(int(digits, 16))
            i += 4
        else:
            shown = f"\\{code}" if code else "a lone \\ at the end"
            raise ValueError(f"bad escape at character {i}: '{shown}' (known: \\r \\n \\t "
                             f"\\0 \\\\ \\xHH)")
    return bytes(out)


def bind_address(text: str) -> tuple[str, int]:
    """An argparse ``type=`` for ``--bind``: an IP address, or ``IP:PORT`` / ``[IPV6]:PORT``."""
    try:
        ipaddress.ip_address(text.partition("%")[0])
        return text, 0
    except ValueError:
        pass
    try:
        return parse_host_port(text, what="--bind address", require_ip=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    """Add ``send`` to the command line."""
    parser = subparsers.add_parser(
        "send", help="connect, send a header (+ data) in one write, print the answer",
        description="Connect to HOST:PORT, send a PROXY header and optional data in one\n"
                    "write, print the answer.", epilog=_EPILOG)
    parser.add_argument("target", type=host_port(what="target", allow_port_zero=False),
                        metavar="HOST:PORT", help="where to connect ([IPV6]:PORT for IPv6)")
    parser.add_argument("--bind", type=bind_address, metavar="ADDR",
                        help="the local (source) address to connect from, like curl's "
                             "--interface: an IP, or IP:PORT")
    add_header_options(parser)
    payload = parser.add_argument_group("what follows the header")
    exclusive = payload.add_mutually_exclusive_group()
    exclusive.add_argument("--data", default="",
                           help="bytes to send after the header (UTF-8 text with \\r \\n "
                                "\\t \\0 \\\\ \\xHH escapes)")
    exclusive.add_argument("--http", metavar="PATH",
                           help="send a minimal HTTP/1.1 GET for PATH (Connection: close)")
    parser.add_argument("--timeout", type=positive_float, default=5.0, metavar="SECONDS",
                        help="seconds for connecting and for each read (default 5)")
    parser.add_argument("--max-response", type=positive_int, default=1 << 20, metavar="BYTES",
                        help="stop after this many bytes of answer (default 1 MiB)")
    parser.add_argument("--no-read", action="store_true", help="do not wait for an answer")
    parser.add_argument("--raw", action="store_true",
                        help="write the answer's bytes as they are (default: escaped text)")
    parser.set_defaults(func=run)


def _connect(host: str, port: int, bind: Optional[tuple[str, int]],
             timeout: float) -> socket.socket | int:
    """A connected socket, or the exit status after reporting why there is none."""
    target = format_host_port(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return fail(f"cannot resolve {host!r}: {exc.strerror}", EXIT_RESOLVE)
    if bind is not None:
        bind_family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        infos = [info for info in infos if info[0] == bind_family]
        if not infos:
            return fail(f"cannot connect to {target} from {bind[0]}: the addresses are of "
                        f"different families", EXIT_CONNECT)
    last: Optional[BaseException] = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if bind is not None:
                try:
                    sock.bind(bind)
                except OSError as exc:
                    sock.close()
                    return fail(f"cannot bind to {format_host_port(*bind)}: "
                                f"{exc.strerror or exc}", EXIT_CONNECT)
            sock.connect(address)
            return sock
        except socket.timeout as exc:
            sock.close()
            last = exc
        except OSError as exc:
            sock.close()
            last = exc
    if isinstance(last, socket.timeout):
        return fail(f"cannot connect to {target}: no answer within {timeout:g} s", EXIT_TIMEOUT)
    reason = getattr(last, "strerror", None) or str(last)
    return fail(f"cannot connect to {target}: {reason}", EXIT_CONNECT)


def run(args: argparse.Namespace) -> int:
    """``proxyproto send``: see the exit statuses in the epilog (and docs/cli.rst)."""
    try:
        header = build_header(args)
    except (TypeError, ValueError) as exc:
        return fail(f"cannot encode: {exc}", EXIT_USAGE)
    host, port = args.target
    if args.http is not None:
        path = args.http if args.http.startswith("/") else "/" + args.http
        if any(c in path for c in "\r\n \t") or not path.isascii():
            return fail("--http PATH: no spaces, control or non-ASCII characters "
                        "(percent-encode them)", EXIT_USAGE)
        payload = (f"GET {path} HTTP/1.1\r\nHost: {format_host_port(host, port)}\r\n"
                   f"User-Agent: proxyproto\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                   ).encode("ascii")
    else:
        try:
            payload = decode_escapes(args.data)
        except ValueError as exc:
            return fail(f"--data: {exc}", EXIT_USAGE)
    connected = _connect(host, port, args.bind, args.timeout)
    if isinstance(connected, int):
        return connected
    target = format_host_port(host, port)
    received = bytearray()
    with connected as sock:
        try:
            sock.sendall(header + payload)  # one write: receivers reject split headers
        except OSError as exc:
            return fail(f"sending to {target} failed: {exc.strerror or exc}", EXIT_SEND)
        if args.no_read:
            return EXIT_OK
        status = EXIT_OK
        try:
            while len(received) < args.max_response:
                chunk = sock.recv(min(65536, args.max_response - len(received)))
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            if not received:
                status = fail(f"no answer from {target} within {args.timeout:g} s",
                              EXIT_TIMEOUT)
        except OSError as exc:
            status = fail(f"connection to {target} reset after {len(received)} byte(s) of "
                          f"answer: {exc.strerror or exc} (a PROXY layer refusing the "
                          f"header resets the connection)", EXIT_RECV)
    if received:
        if args.raw:
            sys.stdout.buffer.write(received)
            sys.stdout.buffer.flush()
        else:
            text = escape_bytes(received, lines=True)
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
    elif status == EXIT_OK:
        status = fail(f"{target} closed the connection without an answer", EXIT_EMPTY_REPLY)
    return status
