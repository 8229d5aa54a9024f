"""``proxyproto whoami``: a small server that answers each accepted connection with what
it learnt (the original client, the header, TLS) and prints every refusal with its reason.

Everything a client chooses (TLVs, SNI, the bytes it sends) is escaped in text output
and JSON-escaped in JSON output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from .._header import ProxyHeader
from .._policy import Policy
from ._common import (
    EXIT_FILE,
    EXIT_LISTEN,
    EXIT_OK,
    EXIT_RESOLVE,
    EXIT_USAGE,
    cidr,
    escape,
    escape_bytes,
    fail,
    host_port,
    positive_float,
    positive_int,
    show_address,
)
from ._decode import _format_address, describe, text_lines

__all__ = ["Seen", "Whoami", "register", "run", "server_options"]

_EPILOG = """\
examples:
  proxyproto whoami --listen 127.0.0.1:8000 --trusted 127.0.0.1
  proxyproto whoami --listen 0.0.0.0:8000 --trusted 10.42.0.0/16 --json
  proxyproto whoami --trusted 127.0.0.1 --tls-cert cert.pem --tls-key key.pem
  PROXYPROTO_TRUSTED=10.0.0.0/8,fd00::/8 proxyproto whoami --listen [::]:8000
  curl --haproxy-protocol http://127.0.0.1:8000/      (curl sends a v1 header)
  proxyproto send 127.0.0.1:8000 --source 203.0.113.9:4000 --destination 10.0.0.1:80 --http /

An HTTP request gets an HTTP answer (JSON with --json or 'Accept: application/json');
anything else gets the plain report. Refused connections are printed with the reason.
exit status: 0 after --max-requests/--duration/SIGTERM, 2 bad option, 4 certificate not readable,
10 cannot listen (address in use...), 130 interrupted.
"""

_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_REFUSAL = re.compile(r"^refused connection from (?P<peer>.*?): (?P<reason>[a-z_]+)"
                      r"(?: \((?P<detail>.*)\))?$", re.DOTALL)


def _wants_json(first: bytes) -> bool:
    head = first.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"accept" and b"application/json" in value.lower():
            return True
    return False


class _RefusalLog(logging.Handler):
    """Hands the aio layer's refusal log records to a :class:`Whoami`."""

    def __init__(self, whoami: Whoami) -> None:
        super().__init__(logging.INFO)
        self._whoami = whoami

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not stop the server
            message = str(record.msg)
        self._whoami.refused(message, getattr(record, "reason", None))


@dataclass(frozen=True)
class Seen:
    """One accepted connection as the server sees it (addresses as asyncio gives them)."""

    peername: Any
    sockname: Any
    via: Any  # the connection's own peer: the proxy
    header: Optional[ProxyHeader]
    tls: Optional[dict[str, Any]]
    first: bytes  # the first bytes received after the header

    def report(self) -> dict[str, Any]:
        """JSON-ready (not escaped: ``json.dumps`` escapes)."""
        return {
            "event": "served",
            "client": _format_address(self.peername),
            "server": _format_address(self.sockname),
            "via": _format_address(self.via),
            "proxy_header": describe(self.header) if self.header is not None else None,
            "tls": self.tls,
            "received": self.first.decode("utf-8", "backslashreplace"),
            "received_bytes": len(self.first),
        }

    def text(self) -> str:
        """Escaped text lines (the plain-text answer and the server's terminal)."""
        lines = [f"you are:      {show_address(self.peername)}",
                 f"you reached:  {show_address(self.sockname)}"]
        if self.via is not None and self.via != self.peername:
            lines.append(f"via:          {show_address(self.via)} (the connection's own peer)")
        if self.header is None:
            lines.append("PROXY header: none was read (the connection's own addresses apply)")
        else:
            described = text_lines(self.header)
            lines.append("PROXY header: " + described[0])
            lines.extend("  " + line for line in described[1:])
        if self.tls is not None:
            lines.append("TLS:          " + ", ".join(
                f"{key} {escape(str(value))}" for key, value in self.tls.items()
                if value is not None))
        if self.first:
            lines.append(f"you sent:     {escape_bytes(self.first[:200])}"
                         f"{'...' if len(self.first) > 200 else ''}")
        return "\n".join(lines) + "\n"


class Whoami:
    """The whoami application: answers connections, records what was served and refused.

    Attributes:
        events: one dict per answered (``"event": "served"``) or refused connection.
        served: connections answered.
    """

    def __init__(self, *, json_output: bool = False, read_timeout: float = 1.0,
                 emit: Optional[Callable[[str], None]] = None) -> None:
        self.json_output = json_output
        self.read_timeout = read_timeout
        self.emit = emit
        self.events: list[dict[str, Any]] = []
        self.served = 0
        self.changed = asyncio.Event()
        self._sni: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._handler = _RefusalLog(self)
        self._level = logging.NOTSET

    # -- TLS --------------------------------------------------------------------------

    def tls_context(self, cert: str, key: Optional[str]) -> ssl.SSLContext:
        """A server context for ``cert``/``key`` that records each client's SNI.

        Raises:
            OSError: a file cannot be read. ssl.SSLError: not a certificate/key pair.
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["http/1.1"])

        def remember_sni(ssl_object: Any, name: Optional[str], _: ssl.SSLContext) -> None:
            if name is not None:
                with contextlib.suppress(TypeError):  # not weak-referenceable: no SNI
                    self._sni[ssl_object] = name

        context.sni_callback = remember_sni
        return context

    def _tls(self, writer: asyncio.StreamWriter) -> Optional[dict[str, Any]]:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        cipher = ssl_object.cipher()
        return {"version": ssl_object.version(),
                "cipher": cipher[0] if cipher else None,
                "sni": self._sni.get(ssl_object),
                "alpn": ssl_object.selected_alpn_protocol()}

    # -- logging of refusals ---------------------------------------------------------

    def attach(self) -> None:
        """Start receiving the ``proxyproto.aio`` refusal log records."""
        logger = logging.getLogger("proxyproto.aio")
        logger.addHandler(self._handler)
        self._level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    def detach(self) -> None:
        """Stop receiving them (and give the logger its level back)."""
        logger = logging.getLogger("proxyproto.aio")
        logger.removeHandler(self._handler)
        logger.setLevel(self._level)

    def refused(self, message: str, reason: Optional[str] = None) -> None:
        """Record (and print) one refusal, from its log message."""
        match = _REFUSAL.match(message)
        event: dict[str, Any] = {"event": "refused", "message": message}
        if match:
            event["peer"] = match["peer"]
            event["reason"] = reason or match["reason"]
            event["detail"] = match["detail"]
        else:
            event["reason"] = reason
        self.events.append(event)
        self.changed.set()
        if self.emit is not None:
            if self.json_output:
                self.emit(json.dumps(event))
            else:
                self.emit(f"refused:      {escape(message)}")

    # -- serving ----------------------------------------------------------------------

    def seen(self, writer: asyncio.StreamWriter, first: bytes) -> Seen:
        """What this connection looks like from here."""
        return Seen(writer.get_extra_info("peername"), writer.get_extra_info("sockname"),
                    writer.get_extra_info("socket_peername"),
                    writer.get_extra_info("proxy_header"), self._tls(writer), first)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``client_connected_cb``: read the first bytes, answer, close."""
        try:
            try:
                first = await asyncio.wait_for(reader.read(4096), timeout=self.read_timeout)
            except (asyncio.TimeoutError, ConnectionError):
                first = b""
            seen = self.seen(writer, first)
            report, text = seen.report(), seen.text()
            as_json = self.json_output or _wants_json(first)
            body = (json.dumps(report, indent=2) + "\n").encode() if as_json else text.encode()
            self.events.append(report)
            if self.emit is not None:
                self.emit(json.dumps(report) if self.json_output else text)
            if first.startswith(_HTTP_METHODS):
                kind = b"application/json" if as_json else b"text/plain; charset=utf-8"
                body = (b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n" % (kind, len(body))) + body
            writer.write(body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # a bug here must not become asyncio's traceback
            if self.emit is not None:
                self.emit(f"error:        {escape(f'{type(exc).__name__}: {exc}')}")
        finally:
            self.served += 1
            self.changed.set()
            writer.close()


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for :func:`proxyproto.aio.start_server` (without ``ssl``)."""
    options: dict[str, Any] = {
        "trusted": list(args.trusted),
        "policy": Policy[args.policy.upper()],
        "untrusted_policy": None if args.untrusted == "close"
        else Policy[args.untrusted.upper()],
        "timeout": args.timeout,
    }
    if args.tls_cert is not None:
        options["ssl_handshake_timeout"] = (args.handshake_timeout
                                            if args.handshake_timeout is not None
                                            else args.timeout)
    return options


def _emit(line: str) -> None:
    print(line, flush=True)


async def _serve(args: argparse.Namespace) -> int:
    from .. import aio

    whoami = Whoami(json_output=args.json, read_timeout=args.read_timeout, emit=_emit)
    options = server_options(args)
    if args.tls_cert is not None:
        try:
            options["ssl"] = whoami.tls_context(args.tls_cert, args.tls_key)
        except ssl.SSLError as exc:  # (an OSError too)
            return fail(f"cannot use {args.tls_cert} / {args.tls_key or 'the same file'} "
                        f"as a certificate and key: {exc.reason or exc}", EXIT_FILE)
        except OSError as exc:
            return fail(f"cannot read the certificate or key: {exc.strerror or exc}"
                        f"{' (' + exc.filename + ')' if exc.filename else ''}", EXIT_FILE)
    host, port = args.listen
    whoami.attach()
    try:
        try:
            server = await aio.start_server(whoami.handle, host, port, **options)
        except socket.gaierror as exc:
            return fail(f"cannot resolve {show_address(args.listen)}: {exc.strerror}",
                        EXIT_RESOLVE)
        except OSError as exc:
            return fail(f"cannot listen on {show_address(args.listen)}: "
                        f"{exc.strerror or exc}", EXIT_LISTEN)
        except (TypeError, ValueError) as exc:
            return fail(f"cannot start the server: {exc}", EXIT_USAGE)
        async with server:
            loop = asyncio.get_running_loop()
            terminated: list[bool] = []

            def on_sigterm() -> None:  # a container stopping: finish like --duration
                terminated.append(True)
                whoami.changed.set()

            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGTERM, on_sigterm)  # before the banner
            bound = server.sockets[0].getsockname()
            if args.json:
                _emit(json.dumps({"event": "listening", "address": _format_address(bound),
                                  "trusted": list(args.trusted)}))
            else:
                _emit(f"proxyproto whoami listening on {show_address(bound)}, trusting "
                      f"{', '.join(args.trusted)}" + (", TLS after the header"
                                                       if args.tls_cert else ""))
            deadline = None if args.duration is None else loop.time() + args.duration
            while (args.max_requests is None or whoami.served < args.max_requests) \
                    and not terminated:
                whoami.changed.clear()
                timeout = None if deadline is None else deadline - loop.time()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    await asyncio.wait_for(whoami.changed.wait(), timeout)
                except asyncio.TimeoutError:
                    break
            stats = server.proxy_stats
            summary = {"event": "summary", "served": whoami.served,
                       "refused": dict(stats.refused)}
            if args.json:
                _emit(json.dumps(summary))
            else:
                reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.refused.items()))
                _emit(f"served {whoami.served}, refused {sum(stats.refused.values())}"
                      f"{' (' + reasons + ')' if reasons else ''}")
    finally:
        whoami.detach()
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``whoami`` to the command line."""
    parser = subparsers.add_parser(
        "whoami", help="a small server that shows each client what its proxy sent",
        description="Serve on HOST:PORT behind a proxy that sends PROXY headers; answer\n"
                    "each connection with what was learnt; print each refusal.",
        epilog=_EPILOG)
    parser.add_argument("--listen", type=host_port(what="--listen"),
                        default=("127.0.0.1", 8000), metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8000; port 0: any)")
    parser.add_argument("--trusted", type=cidr, action="append", default=[], metavar="CIDR",
                        help="a network allowed to send headers (repeatable; default: "
                             "$PROXYPROTO_TRUSTED, comma-separated)")
    parser.add_argument("--policy", default="require",
                        choices=["require", "use", "ignore", "reject", "skip"],
                        help="policy for trusted peers (default: require)")
    parser.add_argument("--untrusted", default="close",
                        choices=["close", "skip", "ignore", "reject"],
                        help="what to do with other peers (default: close at once)")
    parser.add_argument("--timeout", type=positive_float, default=5.0, metavar="SECONDS",
                        help="seconds for the header to arrive (default 5)")
    parser.add_argument("--read-timeout", type=positive_float, default=1.0, metavar="SECONDS",
                        help="seconds to wait for the client's first bytes (default 1)")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve TLS after the header with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    parser.add_argument("--handshake-timeout", type=positive_float, metavar="SECONDS",
                        help="seconds for the TLS handshake after the header (default: "
                             "--timeout; needs --tls-cert)")
    parser.add_argument("--json", action="store_true",
                        help="print and answer JSON (an HTTP client can ask with "
                             "'Accept: application/json')")
    parser.add_argument("--max-requests", "--max-connections", type=positive_int,
                        metavar="N", help="exit after answering N connections")
    parser.add_argument("--duration", type=positive_float, metavar="SECONDS",
                        help="exit after this many seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``proxyproto whoami``: serve until --max-requests/--duration (or Ctrl-C)."""
    if not args.trusted:
        env = os.environ.get("PROXYPROTO_TRUSTED", "")
        for item in filter(None, (part.strip() for part in env.split(","))):
            try:
                args.trusted.append(cidr(item))
            except argparse.ArgumentTypeError as exc:
                return fail(f"PROXYPROTO_TRUSTED: {exc}", EXIT_USAGE)
    if not args.trusted:
        return fail("give at least one --trusted network (the proxies allowed to send "
                    "headers), or set PROXYPROTO_TRUSTED", EXIT_USAGE)
    if args.handshake_timeout is not None and args.tls_cert is None:
        return fail("--handshake-timeout applies to TLS: give --tls-cert too", EXIT_USAGE)
    if args.tls_key is not None and args.tls_cert is None:
        return fail("--tls-key needs --tls-cert", EXIT_USAGE)
    return asyncio.run(_serve(args))
