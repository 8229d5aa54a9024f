"""``proxyproto encode``: print a header (hex, or raw bytes); the header options that
``send`` shares."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any, Union

from .. import _impl
from .._header import TLVType
from ._common import EXIT_OK, EXIT_USAGE, escape, fail, parse_host_port

__all__ = ["add_header_options", "build_header", "register", "run"]

_EPILOG = """\
examples:
  proxyproto encode --source 192.0.2.1:51000 --destination 10.0.0.1:443
  proxyproto encode --v1 --source [2001:db8::1]:51000 --destination [2001:db8::2]:443
  proxyproto encode --source 192.0.2.1:51000 --destination 10.0.0.1:443 \\
      --authority example.com --alpn h2 --tlv 0xE5=hex:00ff --crc32c
  proxyproto encode --local --raw > local.bin     (a v2 LOCAL header, e.g. a health check)
  proxyproto encode --source unix:/run/client.sock --destination unix:/run/app.sock
"""


def header_address(text: str) -> Union[tuple[str, int], str]:
    """An argparse ``type=`` for a header address: ``IP:PORT``, ``[IPV6]:PORT`` or
    ``unix:PATH`` (v2 only)."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise argparse.ArgumentTypeError("unix: needs a path, e.g. unix:/run/app.sock")
        return text[5:]
    try:
        return parse_host_port(text, what="header address", require_ip=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tlv_argument(text: str) -> tuple[int, bytes]:
    """An argparse ``type=`` for ``TYPE=TEXT`` or ``TYPE=hex:HEX`` (TYPE a number, decimal
    or 0x-hex, or a name such as AUTHORITY) -> ``(type, value)``."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected TYPE=TEXT or TYPE=hex:HEX, got '{escape(text)}'")
    key = name.upper().replace("-", "_")
    if key in TLVType.__members__:
        tlv_type = int(TLVType[key])
    else:
        try:
            tlv_type = int(name, 0)
        except ValueError:
            names = ", ".join(TLVType.__members__)
            raise argparse.ArgumentTypeError(
                f"TLV type '{escape(name)}' is neither a number nor one of {names}") from None
    if not 0 <= tlv_type <= 0xFF:
        raise argparse.ArgumentTypeError(f"TLV type {tlv_type} is out of range (0..255)")
    if value.startswith("hex:"):
        try:
            data = bytes.fromhex(value[4:].replace(":", " "))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"TLV '{escape(name)}': bad hex '{escape(value[4:])}' ({exc})") from None
    else:
        data = value.encode("utf-8", "surrogateescape")
    return tlv_type, data


def add_header_options(parser: argparse.ArgumentParser) -> None:
    """The options that describe a header (``encode`` and ``send`` take the same)."""
    group = parser.add_argument_group("the header")
    version = group.add_mutually_exclusive_group()
    version.add_argument("--v1", dest="version", action="store_const", const=1, default=2,
                         help="a v1 (text) header")
    version.add_argument("--v2", dest="version", action="store_const", const=2,
                         help="a v2 (binary) header (the default)")
    group.add_argument("--source", type=header_address, metavar="IP:PORT",
                       help="the original client ([IPV6]:PORT for IPv6, unix:PATH for v2 "
                            "AF_UNIX); omit both addresses for v2 LOCAL / v1 UNKNOWN")
    group.add_argument("--destination", type=header_address, metavar="IP:PORT",
                       help="the original destination")
    group.add_argument("--local", action="store_true",
                       help="a v2 LOCAL header (no addresses: a proxy's own health check)")
    group.add_argument("--tlv", type=tlv_argument, action="append", default=[],
                       metavar="TYPE=VALUE",
                       help="add a v2 TLV: TYPE a number or a name (AUTHORITY, ALPN, ...), "
                            "VALUE text (UTF-8) or hex:HEX bytes; repeatable")
    group.add_argument("--alpn", metavar="PROTOCOL", help="add an ALPN TLV (e.g. h2)")
    group.add_argument("--authority", metavar="HOST",
                       help="add an AUTHORITY TLV (the client's SNI)")
    group.add_argument("--unique-id", metavar="ID",
                       help="add a UNIQUE_ID TLV (text, at most 128 bytes)")
    group.add_argument("--crc32c", action="store_true", help="append a CRC32C TLV")
    group.add_argument("--dgram", action="store_true",
                       help="v2 transport DGRAM (UDP) instead of STREAM")


def build_header(args: argparse.Namespace) -> bytes:
    """The header the options describe.

    Raises:
        ValueError: contradictory options, or what the encoder refuses (oversize TLV,
            mixed address families...).
    """
    source, destination = args.source, args.destination
    if (source is None) != (destination is None):
        raise ValueError("give both --source and --destination, or neither")
    tlvs: list[tuple[int, bytes]] = list(args.tlv)
    for option, tlv_type in (("alpn", TLVType.ALPN), ("authority", TLVType.AUTHORITY),
                             ("unique_id", TLVType.UNIQUE_ID)):
        value = getattr(args, option)
        if value is not None:
            tlvs.append((int(tlv_type), value.encode("utf-8", "surrogateescape")))
    if args.local and source is not None:
        raise ValueError("--local headers carry no addresses: drop --source/--destination")
    if args.version == 1:
        extras = [name for name, given in (("TLVs", tlvs), ("--crc32c", args.crc32c),
                                           ("--dgram", args.dgram), ("--local", args.local))
                  if given]
        if extras:
            raise ValueError(f"v1 headers carry no {', '.join(extras)} (use --v2); "
                             f"without addresses v1 writes PROXY UNKNOWN")
        if isinstance(source, str) or isinstance(destination, str):
            raise ValueError("v1 headers carry no UNIX addresses (use --v2)")
        return _impl.encode_v1(source, destination)
    if isinstance(source, str) != isinstance(destination, str):
        raise ValueError("--source and --destination must both be unix: paths, or neither")
    header: bytes = _impl.encode_v2(
        source, destination,
        transport=socket.SOCK_DGRAM if args.dgram else socket.SOCK_STREAM,
        tlvs=tlvs, crc32c=args.crc32c)
    return header


def register(subparsers: Any) -> None:
    """Add ``encode`` to the command line."""
    parser = subparsers.add_parser(
        "encode", help="print a header in hex (or raw bytes with --raw)",
        description="Print a PROXY header: v2 by default, in hex unless --raw.",
        epilog=_EPILOG)
    add_header_options(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--hex", dest="raw", action="store_false", default=False,
                        help="print the header in hex (the default)")
    output.add_argument("--raw", dest="raw", action="store_true",
                        help="write the raw bytes to stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``proxyproto encode``: 0, or 2 for options the encoder refuses."""
    try:
        header = build_header(args)
    except (TypeError, ValueError) as exc:
        return fail(f"cannot encode: {exc}", EXIT_USAGE)
    if args.raw:
        sys.stdout.buffer.write(header)
        sys.stdout.buffer.flush()
    else:
        print(header.hex(), flush=True)
    return EXIT_OK
