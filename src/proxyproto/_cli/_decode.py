"""``proxyproto decode``: read a header from hex, a file or stdin, find it at the start of
noisy input, and describe it (text, escaped, or JSON)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import IO, Any, Optional

from .. import _impl
from .._errors import IncompleteHeader, NoProxyHeader, ProxyProtocolError
from .._header import ProxyHeader, TLVType
from ._common import (
    EXIT_BAD_INPUT,
    EXIT_FILE,
    EXIT_OK,
    escape,
    escape_bytes,
    fail,
    positive_int,
    show_address,
)

__all__ = ["HeaderNotFound", "describe", "find_header", "parse_hex", "print_text", "register",
           "run"]

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_SIGNATURE = b"PROXY "
_MAX_V2 = 16 + 0xFFFF

_EPILOG = """\
examples:
  proxyproto decode 0d0a0d0a000d0a515549540a20000000
  proxyproto decode '0x0d 0x0a 0x0d 0x0a 0x00 0x0d 0x0a 0x51 0x55 0x49 0x54 0x0a 0x20 0 0 0'
  proxyproto decode --file capture.bin --json
  xxd capture.bin | proxyproto decode          (hex dumps: xxd, hexdump -C, od -A x -t x1)
  tcpdump -X -r capture.pcap 'port 8000' | proxyproto decode
  printf 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\\r\\nGET /' | proxyproto decode

Input is hex when it reads as hex (separators: spaces, ':', ',', 0x prefixes; dump
offsets and ASCII columns are skipped), raw bytes otherwise (--format forces one).
A header that does not start the input is looked for and its offset given.
exit status: 0 decoded, 3 not a valid header (or bad hex), 4 file not readable.
"""


def _format_address(address: object) -> Any:
    if isinstance(address, tuple):
        return {"host": address[0], "port": address[1]}
    if isinstance(address, (bytes, bytearray)):
        return {"abstract": bytes(address).hex()}
    if isinstance(address, str):
        return {"path": address}
    return address


def _accessor(header: ProxyHeader, name: str) -> Any:
    try:
        return getattr(header, name)
    except ProxyProtocolError as exc:  # a TLV that is not the vendor's layout
        return f"<invalid: {exc}>"


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
        raw = _accessor(header, field)
        if isinstance(raw, bytes):
            typed[field] = raw.decode("utf-8", "backslashreplace")
        elif raw is not None:
            typed[field] = raw
    for field in ("authority", "netns", "crc32c", "aws_vpce_id", "azure_link_id",
                  "gcp_psc_id"):
        decoded = _accessor(header, field)
        if decoded is not None:
            typed[field] = decoded
    ssl = _accessor(header, "ssl")
    if isinstance(ssl, str):
        typed["ssl"] = ssl
    elif ssl is not None:
        typed["ssl"] = {
            "client": int(ssl.client),
            "verify": ssl.verify,
            "verified": ssl.verified,
            **{key: getattr(ssl, key)
               for key in ("version", "cn", "cipher", "sig_alg", "key_alg", "group",
                           "sig_scheme")
               if getattr(ssl, key) is not None},
        }
        if ssl.client_cert is not None:
            typed["ssl"]["client_cert_bytes"] = len(ssl.client_cert)
    if typed:
        result["decoded"] = typed
    return result


def _show_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_show_value(item)}" for key, item in value.items())
    if isinstance(value, str):
        return escape(value)
    return escape(str(value))


def text_lines(header: ProxyHeader) -> list[str]:
    """The header described in lines for a terminal, every client-chosen string escaped."""
    info = describe(header)
    transport = f", {info['transport']}" if info["transport"] else ""
    lines = [f"PROXY protocol v{info['version']} {info['command']}, {info['family']}"
             f"{transport}, {info['length']} bytes"]
    if header.source is None:
        lines.append("addresses:   none (the connection's own apply)")
    else:
        lines.append(f"source:      {show_address(header.source)}")
        lines.append(f"destination: {show_address(header.destination)}")
    for tlv in info["tlvs"]:
        label = tlv["name"] or f"0x{tlv['type']:02x}"
        lines.append(f"TLV {label} (0x{tlv['type']:02x}): {tlv['value'] or '(empty)'}")
    for key, value in info.get("decoded", {}).items():
        lines.append(f"{key}: {_show_value(value)}")
    return lines


def print_text(header: ProxyHeader, out: IO[str]) -> None:
    """Print :func:`text_lines` to ``out``."""
    for line in text_lines(header):
        print(line, file=out)


# -- input --------------------------------------------------------------------------------

_OFFSET = re.compile(r"^(?:0[xX])?[0-9a-fA-F]+:$")  # xxd, tcpdump -X: "00000010:"
_OFFSET_BARE = re.compile(r"^[0-9a-fA-F]{4,}$")  # hexdump -C, od, Wireshark: "0010"
_PAIR = re.compile(r"^[0-9a-fA-F]{2}$")
_GROUP = re.compile(r"^(?:[0-9a-fA-F]{2}){1,4}$")
_PREFIX = re.compile(r"(?:^|(?<=[\s,:]))0[xX]")


def _dump_line(line: str) -> Optional[list[str]]:
    """The byte groups of one hex-dump line (offset, groups, ASCII column), else None."""
    tokens = line.split()
    if len(tokens) < 2:
        return None
    if not (_OFFSET.match(tokens[0])
            or (_OFFSET_BARE.match(tokens[0]) and _PAIR.match(tokens[1]))):
        return None
    rest = line.split(None, 1)[1]
    if "|" in rest:  # hexdump -C: |ASCII|
        rest = rest[: rest.index("|")]
    groups: list[str] = []
    for segment in re.split(r"\s{2,}", rest.strip()):  # the ASCII column: after 2+ spaces
        parts = segment.split()
        if not parts or not all(_GROUP.match(part) for part in parts):
            break
        groups.extend(parts)
    return groups or None


def parse_hex(text: str) -> bytes:
    """Hex text -> bytes: separators (spaces, ``:``, ``,``, ``-``) and ``0x`` prefixes
    allowed; or a hex dump (``xxd``, ``hexdump -C``, ``od -A x -t x1``, ``tcpdump -X``,
    Wireshark's "copy as hex dump"), whose offset and ASCII columns and other lines (a
    tcpdump packet line) are skipped.

    Raises:
        ValueError: a character that is not hex, or an odd number of digits (says where).
    """
    lines = text.splitlines()
    dump = [_dump_line(line) for line in lines]
    if any(groups is not None for groups in dump):
        return bytes.fromhex("".join("".join(groups) for groups in dump if groups))
    digits: list[str] = []
    for number, line in enumerate(lines, 1):
        cleaned = re.sub(r"[\s,:\-]", "", _PREFIX.sub("", line))
        bad = re.search(r"[^0-9a-fA-F]", cleaned)
        if bad:
            raise ValueError(f"line {number}: '{escape(bad.group())}' is not a hex digit")
        digits.append(cleaned)
    joined = "".join(digits)
    if len(joined) % 2:
        raise ValueError(f"odd number of hex digits ({len(joined)})")
    return bytes.fromhex(joined)


def _looks_like_text(data: bytes) -> Optional[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.strip() else None


class HeaderNotFound(Exception):
    """No valid header in the input: ``error`` is what the first candidate gave (at input
    ``offset``), a ``NoProxyHeader`` when no signature was found at all."""

    def __init__(self, error: ProxyProtocolError, offset: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.offset = offset


_MAX_CANDIDATES = 1000


def _candidates(data: bytes) -> list[int]:
    """The offsets (after 0) where a v1 or v2 signature starts, in order, at most 1000."""
    found: list[int] = []
    for signature in (_V2_SIGNATURE, _V1_SIGNATURE):
        start = data.find(signature, 1)
        while start >= 0 and len(found) < 2 * _MAX_CANDIDATES:
            found.append(start)
            start = data.find(signature, start + 1)
    return sorted(found)[:_MAX_CANDIDATES]


def find_header(data: bytes, max_size: int) -> tuple[int, ProxyHeader]:
    """``(offset, header)``: the header at the start of ``data``, else at the first place
    where a signature starts and a header parses.

    Raises:
        HeaderNotFound: with the error at offset 0, or else the first candidate's.
    """
    try:
        return 0, _impl.parse(data, max_size=max_size)
    except NoProxyHeader as exc:
        first = HeaderNotFound(exc, 0)
    except ProxyProtocolError as exc:
        raise HeaderNotFound(exc, 0) from None
    for start in _candidates(data):
        try:
            return start, _impl.parse(data[start:], max_size=max_size)
        except ProxyProtocolError as exc:
            if first.offset == 0:
                first = HeaderNotFound(exc, start)
    if first.offset == 0:
        first = HeaderNotFound(NoProxyHeader(
            f"no PROXY header in the input ({first.error})"), 0)
    raise first


def _read(args: argparse.Namespace) -> bytes:
    if args.hex:
        return parse_hex(" ".join(args.hex))
    if args.file is not None:
        with open(args.file, "rb") as handle:
            data = handle.read(args.max_input)
    else:
        data = sys.stdin.buffer.read(args.max_input)
    if args.format == "raw":
        return data
    text = _looks_like_text(data)
    if args.format == "hex":
        if text is None:
            raise ValueError("the input is not hex text (not ASCII)")
        return parse_hex(text)
    # auto: a raw header starts with "PROXY" or "\r\n": neither is hex, nor a hex dump
    if text is not None and not text.lstrip().startswith("PROXY"):
        try:
            return parse_hex(text)
        except ValueError:
            pass
    return data


def register(subparsers: Any) -> None:
    """Add ``decode`` to the command line."""
    parser = subparsers.add_parser(
        "decode", help="decode a header (hex argument, file or stdin)",
        description="Decode a PROXY header and show what it says.", epilog=_EPILOG)
    parser.add_argument("hex", nargs="*", metavar="HEX",
                        help="the bytes in hex (default: read --file or stdin)")
    parser.add_argument("--file", metavar="PATH", help="read the input from this file")
    parser.add_argument("--format", choices=["auto", "hex", "raw"], default="auto",
                        help="how to read --file/stdin (default: auto)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--max-size", type=positive_int, default=_MAX_V2,
                        help="largest v2 header accepted (default: the spec's maximum)")
    parser.add_argument("--max-input", type=positive_int, default=1 << 24,
                        help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``proxyproto decode``: 0, 3 for input that holds no valid header, 4 for a file."""
    try:
        data = _read(args)
    except OSError as exc:
        what = args.file if args.file is not None else "stdin"
        return fail(f"cannot read {what}: {exc.strerror or exc}", EXIT_FILE)
    except ValueError as exc:
        return fail(f"bad hex input: {exc}", EXIT_BAD_INPUT)
    try:
        offset, header = find_header(data, args.max_size)
    except HeaderNotFound as missing:
        error, where = missing.error, ""
        if missing.offset:
            where = f" (the header found at input offset {missing.offset})"
        if isinstance(error, IncompleteHeader):
            return fail(f"incomplete header{where}: at least {error.needed} more byte(s) "
                        f"needed (got {len(data) - missing.offset})", EXIT_BAD_INPUT)
        return fail(f"{type(error).__name__}{where}: {error}", EXIT_BAD_INPUT)
    payload = data[offset + header.length:]
    if args.json:
        info = describe(header)
        info["offset"] = offset
        info["trailing_bytes"] = len(payload)
        print(json.dumps(info, indent=2))
        return EXIT_OK
    out = sys.stdout
    if offset:
        print(f"header found at offset {offset} ({offset} byte(s) before it skipped: "
              f"{escape_bytes(data[:min(offset, 32)])}{'...' if offset > 32 else ''})",
              file=out)
    print_text(header, out)
    if payload:
        print(f"then {len(payload)} byte(s) of application data: "
              f"{escape_bytes(payload[:64])}{'...' if len(payload) > 64 else ''}", file=out)
    return EXIT_OK
