"""The ``proxyproto`` command: decode, encode and send PROXY headers; show what a proxy sends.

``proxyproto whoami`` runs a small server (``proxyproto.aio``) that answers every
accepted connection with what it learnt: the original client, the header and its TLVs.

It is a thin argparse layer over the public API.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any, Optional

from . import _impl
from ._errors import IncompleteHeader, ProxyProtocolError
from ._header import ProxyHeader, TLVType

__all__ = ["describe", "main"]


def _parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or [IPV6]:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _parse_tlv(text: str) -> tuple[int, bytes]:
    """``TYPE=HEX`` (type in decimal or 0x-hex, or a name such as ALPN) -> ``(type, value)``."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected TYPE=HEXVALUE, got {text!r}")
    try:
        tlv_type = TLVType[name.upper()] if name.upper() in TLVType.__members__ else int(name, 0)
        return int(tlv_type), bytes.fromhex(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad TLV {text!r}: {exc}") from None


def _format_address(address: object) -> Any:
    if isinstance(address, tuple):
        return {"host": address[0], "port": address[1]}
    if isinstance(address, bytes):
        return {"abstract": address.hex()}
    return address


def describe(header: ProxyHeader) -> dict[str, Any]:
    """A JSON-ready description of ``header`` (what ``proxyproto decode --json`` prints)."""
    result: dict[str, Any] = {
        "version": header.version,
        "command": header.command.name,
        "family": header.family.name,
        "transport": header.transport.name if header.transport is not None else None,
        "source": _format_address(header.source),
        "destination": _format_address(header.destination),
        "length": header.length,
        "tlvs": [],
    }
    for tlv_type, value in header.tlvs:
        name = TLVType(tlv_type).name if tlv_type in TLVType._value2member_map_ else None
        result["tlvs"].append({"type": tlv_type, "name": name, "value": value.hex()})
    typed: dict[str, Any] = {}
    for field in ("alpn", "unique_id"):
        raw = getattr(header, field)
        if raw is not None:
            typed[field] = raw.decode("ascii", "backslashreplace")
    for field in ("authority", "netns", "crc32c", "aws_vpce_id", "azure_link_id", "gcp_psc_id"):
        try:
            decoded = getattr(header, field)
        except ProxyProtocolError as exc:
            decoded = f"<invalid: {exc}>"
        if decoded is not None:
            typed[field] = decoded
    ssl = header.ssl
    if ssl is not None:
        typed["ssl"] = {
            "client": ssl.client,
            "verify": ssl.verify,
            "verified": ssl.verified,
            **{
                key: getattr(ssl, key)
                for key in ("version", "cn", "cipher", "sig_alg", "key_alg", "group",
                            "sig_scheme")
                if getattr(ssl, key) is not None
            },
        }
        if ssl.client_cert is not None:
            typed["ssl"]["client_cert_bytes"] = len(ssl.client_cert)
    if typed:
        result["decoded"] = typed
    return result


def _print_text(header: ProxyHeader, payload: bytes, out: Any) -> None:
    info = describe(header)
    print(f"PROXY protocol v{info['version']} {info['command']}, {info['family']}"
          f"{', ' + info['transport'] if info['transport'] else ''}, {info['length']} bytes",
          file=out)
    if header.source is None:
        print("addresses: none (use the connection's own)", file=out)
    else:
        print(f"source:      {_show(header.source)}", file=out)
        print(f"destination: {_show(header.destination)}", file=out)
    for tlv in info["tlvs"]:
        label = tlv["name"] or f"0x{tlv['type']:02x}"
        print(f"TLV {label} (0x{tlv['type']:02x}): {tlv['value'] or '(empty)'}", file=out)
    for key, value in info.get("decoded", {}).items():
        print(f"{key}: {value}", file=out)
    if payload:
        print(f"then {len(payload)} byte(s) of application data: {payload[:64]!r}", file=out)


def _show(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(address)


def _read_input(args: argparse.Namespace) -> bytes:
    if args.hex is not None:
        return bytes.fromhex("".join(args.hex))
    if args.file is not None:
        with open(args.file, "rb") as handle:
            return handle.read()
    data: bytes = sys.stdin.buffer.read()
    # Hex text is unambiguous: a raw header starts with "P" or "\r", neither of them hex.
    text = bytes(data).translate(None, b" \t\r\n")
    if text and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode())
    return data


def _cmd_decode(args: argparse.Namespace) -> int:
    try:
        data = _read_input(args)
    except ValueError as exc:
        print(f"proxyproto: bad hex input: {exc}", file=sys.stderr)
        return 2
    try:
        header = _impl.parse(data, max_size=args.max_size)
    except IncompleteHeader as exc:
        print(f"proxyproto: incomplete header: at least {exc.needed} more byte(s) needed",
              file=sys.stderr)
        return 1
    except ProxyProtocolError as exc:
        print(f"proxyproto: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(describe(header), indent=2))
    else:
        _print_text(header, data[header.length :], sys.stdout)
    return 0


def _build_header(args: argparse.Namespace) -> bytes:
    source = args.source
    destination = args.destination
    if (source is None) != (destination is None):
        raise ValueError("give both --source and --destination, or neither")
    if args.version == 1:
        if args.tlv or args.crc32c:
            raise ValueError("v1 headers carry no TLVs")
        return _impl.encode_v1(source, destination)
    return _impl.encode_v2(
        source,
        destination,
        transport=socket.SOCK_DGRAM if args.dgram else socket.SOCK_STREAM,
        tlvs=args.tlv or (),
        crc32c=args.crc32c,
    )


def _cmd_encode(args: argparse.Namespace) -> int:
    try:
        header = _build_header(args)
    except (TypeError, ValueError) as exc:
        print(f"proxyproto: {exc}", file=sys.stderr)
        return 2
    if args.raw:
        sys.stdout.buffer.write(header)
        sys.stdout.buffer.flush()
    else:
        print(header.hex())
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    try:
        header = _build_header(args)
    except (TypeError, ValueError) as exc:
        print(f"proxyproto: {exc}", file=sys.stderr)
        return 2
    payload = args.data.encode().decode("unicode_escape").encode("latin-1") if args.data else b""
    host, port = args.target
    with socket.create_connection((host, port), timeout=args.timeout) as sock:
        sock.sendall(header + payload)  # one write: receivers reject split headers
        if args.no_read:
            return 0
        received = bytearray()
        try:
            while len(received) < args.max_response:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    sys.stdout.buffer.write(bytes(received[: args.max_response]))
    sys.stdout.buffer.flush()
    return 0


_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


def _whoami_report(writer: Any, first_bytes: bytes) -> str:
    header = writer.get_extra_info("proxy_header")
    lines = [f"you are:      {_show(writer.get_extra_info('peername')[:2])}",
             f"you reached:  {_show(writer.get_extra_info('sockname')[:2])}"]
    if header is None:
        lines.append("PROXY header: none was read (the connection's own addresses apply)")
    else:
        buffer = io.StringIO()
        _print_text(header, b"", buffer)
        lines.append("PROXY header: " + buffer.getvalue().rstrip().replace("\n", "\n  "))
    if first_bytes:
        lines.append(f"you sent:     {first_bytes[:200]!r}")
    return "\n".join(lines) + "\n"


async def _whoami(args: argparse.Namespace) -> int:
    import asyncio

    from . import aio
    from ._policy import Policy

    remaining = [args.max_connections]
    done = asyncio.Event()

    async def handle(reader: Any, writer: Any) -> None:
        try:
            try:
                first = await asyncio.wait_for(reader.read(4096), timeout=args.read_timeout)
            except (asyncio.TimeoutError, ConnectionError):
                first = b""
            report = _whoami_report(writer, first)
            print(report, flush=True)
            body = report.encode()
            if first.startswith(_HTTP_METHODS):
                body = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)) + body
            writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            if remaining[0] is not None:
                remaining[0] -= 1
                if remaining[0] <= 0:
                    done.set()

    untrusted = None if args.untrusted == "close" else Policy[args.untrusted.upper()]
    ssl_context = None
    if args.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    host, port = args.listen
    server = await aio.start_server(
        handle, host, port, trusted=args.trusted, policy=Policy[args.policy.upper()],
        untrusted_policy=untrusted, timeout=args.timeout, ssl=ssl_context)
    bound = server.sockets[0].getsockname()
    print(f"proxyproto whoami listening on {_show(bound[:2])}, trusting "
          f"{', '.join(args.trusted)}", flush=True)
    async with server:
        if remaining[0] is None:
            await server.serve_forever()
        else:
            await done.wait()
    return 0


def _cmd_whoami(args: argparse.Namespace) -> int:
    import asyncio

    if not args.trusted:
        print("proxyproto: give at least one --trusted network (the proxies allowed to "
              "send headers)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_whoami(args))
    except KeyboardInterrupt:
        return 130


def _add_header_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--v1", dest="version", action="store_const", const=1, default=2,
                        help="write a v1 (text) header instead of v2")
    parser.add_argument("--source", type=_parse_address, metavar="HOST:PORT",
                        help="the original client (omit both addresses for LOCAL/UNKNOWN)")
    parser.add_argument("--destination", type=_parse_address, metavar="HOST:PORT",
                        help="the original destination")
    parser.add_argument("--tlv", type=_parse_tlv, action="append", metavar="TYPE=HEX",
                        help="add a TLV (type as a number or a name such as AUTHORITY)")
    parser.add_argument("--crc32c", action="store_true", help="append a CRC32C TLV")
    parser.add_argument("--dgram", action="store_true", help="mark the transport as DGRAM")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``proxyproto`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="proxyproto",
        description="Decode, encode and send HAProxy PROXY protocol headers.",
    )
    parser.add_argument("--version", action="version",
                        version=f"proxyproto {__version__} ({_impl.IMPLEMENTATION})")
    commands = parser.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", help="decode a header (hex argument, file or stdin)")
    decode.add_argument("hex", nargs="*", default=None, help="the bytes in hex (default: stdin)")
    decode.add_argument("--file", help="read the raw bytes from this file")
    decode.add_argument("--json", action="store_true", help="print JSON")
    decode.add_argument("--max-size", type=int, default=16 + 0xFFFF,
                        help="largest v2 header accepted (default: the spec's maximum)")
    decode.set_defaults(handler=_cmd_decode)

    encode = commands.add_parser("encode", help="print a header in hex (or raw with --raw)")
    _add_header_options(encode)
    encode.add_argument("--raw", action="store_true", help="write raw bytes to stdout")
    encode.set_defaults(handler=_cmd_encode)

    send = commands.add_parser("send", help="connect, send a header (+ data) in one write, "
                                            "print the response")
    send.add_argument("target", type=_parse_address, metavar="HOST:PORT")
    _add_header_options(send)
    send.add_argument("--data", default="", help="application bytes to send after the header "
                                                 "(backslash escapes allowed, e.g. '\\r\\n')")
    send.add_argument("--timeout", type=float, default=5.0, help="socket timeout in seconds")
    send.add_argument("--max-response", type=int, default=1 << 20,
                      help="stop after this many response bytes")
    send.add_argument("--no-read", action="store_true", help="do not wait for a response")
    send.set_defaults(handler=_cmd_send)

    whoami = commands.add_parser(
        "whoami", help="run a small server that shows each client what its proxy sent")
    whoami.add_argument("--listen", type=_parse_address, default=("127.0.0.1", 8000),
                        metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8000)")
    whoami.add_argument("--trusted", action="append", default=[], metavar="CIDR",
                        help="a network allowed to send headers (repeatable; required)")
    whoami.add_argument("--policy", default="require",
                        choices=["require", "use", "ignore", "reject", "skip"],
                        help="policy for trusted peers (default: require)")
    whoami.add_argument("--untrusted", default="close",
                        choices=["close", "skip", "ignore", "reject"],
                        help="what to do with other peers (default: close at once)")
    whoami.add_argument("--timeout", type=float, default=5.0, help="header timeout in seconds")
    whoami.add_argument("--read-timeout", type=float, default=1.0,
                        help="how long to wait for the client's first bytes")
    whoami.add_argument("--tls-cert", help="serve TLS after the header with this certificate")
    whoami.add_argument("--tls-key", help="the certificate's private key")
    whoami.add_argument("--max-connections", type=int, default=None,
                        help="exit after answering this many connections")
    whoami.set_defaults(handler=_cmd_whoami)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "decode" and not args.hex:
        args.hex = None
    status: int = args.handler(args)
    return status
