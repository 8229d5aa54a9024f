"""Helpers every sub-command shares: argument types, escaping, one-line errors, exit codes.

Nothing here prints a traceback: a sub-command's ``run`` turns each failure it expects
into :func:`fail` (one line on stderr) and one of the exit statuses below, which
``docs/cli.rst`` lists.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, Optional, Union

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CONNECT",
    "EXIT_EMPTY_REPLY",
    "EXIT_FAILED",
    "EXIT_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_LISTEN",
    "EXIT_MISSING_EXTRA",
    "EXIT_OK",
    "EXIT_RECV",
    "EXIT_RESOLVE",
    "EXIT_SEND",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "EXIT_WRITE",
    "CommandParser",
    "cidr",
    "escape",
    "escape_bytes",
    "escape_lines",
    "fail",
    "format_host_port",
    "host_port",
    "ip_address",
    "parse_host_port",
    "positive_float",
    "positive_int",
    "show_address",
]

EXIT_OK = 0  #: everything worked (``demo``: every case behaved as expected)
EXIT_FAILED = 1  #: ``demo``: a case did not behave as expected
EXIT_USAGE = 2  #: bad command line: unknown option, bad HOST:PORT, CIDR, TLV or escape
EXIT_BAD_INPUT = 3  #: the input is not a (whole, valid) PROXY header, or is not hex
EXIT_FILE = 4  #: a file could not be read (missing, unreadable, not a certificate/key)
EXIT_MISSING_EXTRA = 5  #: an optional dependency is not installed (``k3s-config --check``)
EXIT_RESOLVE = 6  #: a host name could not be resolved (as curl's 6)
EXIT_CONNECT = 7  #: could not connect (refused, unreachable, --bind address unusable)
EXIT_LISTEN = 10  #: could not listen (address in use, not local, permission denied)
EXIT_WRITE = 23  #: stdout closed early (``| head``), as curl's 23
EXIT_TIMEOUT = 28  #: no answer before --timeout, as curl's 28
EXIT_EMPTY_REPLY = 52  #: the server closed without a byte of answer, as curl's 52
EXIT_SEND = 55  #: sending failed (the peer reset the connection), as curl's 55
EXIT_RECV = 56  #: the connection was reset while reading the answer, as curl's 56
EXIT_INTERRUPTED = 130  #: Ctrl-C (128 + SIGINT)


def fail(message: str, status: int) -> int:
    """Print ``proxyproto: MESSAGE`` (escaped, one line) on stderr; return ``status``."""
    print(f"proxyproto: {_safe(message)}", file=sys.stderr, flush=True)
    return status


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (and exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line, pointing at ``--help``; exit with status 2."""
        self.exit(EXIT_USAGE,
                  f"{self.prog}: error: {_safe(message)} (see {self.prog} --help)\n")


# -- escaping -----------------------------------------------------------------------------

# C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), the bidi embeddings, overrides
# and isolates (they reorder what follows on screen), line/paragraph separators, BOM.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
                     "\u2028\u2029\ufeff\ud800-\udfff\\\\]")
_UNSAFE_KEEP_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u061c"
                                 "\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff\\\\]")
# the same without the backslash: for messages whose parts are escaped already
_UNSAFE_NOT_BACKSLASH = re.compile(_UNSAFE.pattern[:-3] + "]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` safe for one terminal line: control, bidi-override characters (and the
    backslash) written as ``\\n``, ``\\x1b``, ``\\u202e``... Printable text is kept.

    Bytes that were not UTF-8 (kept by ``surrogateescape``) become ``\\xNN``.
    """
    return _UNSAFE.sub(_escape_char, text)


def _safe(message: str) -> str:
    """A message for stderr: one line, control characters escaped (backslashes kept, as
    the parts a message quotes were escaped already)."""
    return _UNSAFE_NOT_BACKSLASH.sub(_escape_char, message)


def escape_lines(text: str) -> str:
    """Like :func:`escape` but keeps newlines and tabs (``\\r\\n`` becomes a newline):
    for multi-line answers such as an HTTP response."""
    return _UNSAFE_KEEP_LAYOUT.sub(_escape_char, text.replace("\r\n", "\n"))


def escape_bytes(data: Union[bytes, bytearray, memoryview], *, lines: bool = False) -> str:
    """Bytes as text for a terminal: UTF-8 where it decodes, ``\\xNN`` for other bytes,
    escaped as :func:`escape` (or as :func:`escape_lines` when ``lines``)."""
    text = bytes(data).decode("utf-8", "surrogateescape")
    return escape_lines(text) if lines else escape(text)


# -- addresses ----------------------------------------------------------------------------

def parse_host_port(text: str, *, what: str = "address", allow_port_zero: bool = True,
                    require_ip: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``, port checked to be 0..65535.

    Raises:
        ValueError: with a message saying what is wrong and what to write instead.
    """
    shown = escape(text)
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{what} '{shown}': missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1:]
        if not rest.startswith(":"):
            raise ValueError(f"{what} '{shown}': expected [IPV6]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{what} '{shown}': '{escape(host)}' in brackets is not an "
                             f"IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{what} '{shown}': expected HOST:PORT (or [IPV6]:PORT)")
        if ":" in host:
            raise ValueError(f"{what} '{shown}': put an IPv6 address in brackets, "
                             f"e.g. [{escape(host)}]:{escape(port_text)}")
    if not host:
        raise ValueError(f"{what} '{shown}': the host is missing")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{what} '{shown}': the port must be a number from 0 to 65535")
    port = int(port_text)
    if port > 65535 or (port == 0 and not allow_port_zero):
        low = 0 if allow_port_zero else 1
        raise ValueError(f"{what} '{shown}': port {port} is out of range ({low}..65535)")
    if require_ip:
        try:
            ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{what} '{shown}': '{escape(host)}' is not an IP address") \
                from None
    return host, port


def host_port(*, what: str = "address", allow_port_zero: bool = True,
              require_ip: bool = False) -> Any:
    """An argparse ``type=`` for ``HOST:PORT`` (see :func:`parse_host_port`)."""

    def convert(text: str) -> tuple[str, int]:
        try:
            return parse_host_port(text, what=what, allow_port_zero=allow_port_zero,
                                   require_ip=require_ip)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def ip_address(text: str) -> str:
    """An argparse ``type=``: an IPv4 or IPv6 address (no port), returned as given."""
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{escape(text)}' is not an IP address") from None
    return text


def cidr(text: str) -> str:
    """An argparse ``type=``: a trusted network (``10.0.0.0/8``, ``::1``, ...), checked with
    :class:`proxyproto.TrustedProxies` (so host bits set are refused as the library does)."""
    from .._policy import TrustedProxies

    try:
        TrustedProxies([text])
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"bad CIDR '{escape(text)}': {exc}") from None
    bare = text.partition("%")[0]
    try:
        ipaddress.ip_network(bare, strict=True)
    except ValueError as exc:
        try:
            meant = f" (did you mean {ipaddress.ip_network(bare, strict=False)}?)"
        except ValueError:
            meant = ""
        raise argparse.ArgumentTypeError(f"bad CIDR '{escape(text)}': {exc}{meant}") from None
    return text


def _positive(text: str, convert: Callable[[str], float], kind: str) -> float:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{escape(text)}' is not {kind}") from None
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"'{escape(text)}': give {kind} greater than 0")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type=``: a number (of seconds) greater than 0."""
    return _positive(text, float, "a number")


def positive_int(text: str) -> int:
    """An argparse ``type=``: an integer greater than 0."""
    return int(_positive(text, int, "an integer"))


def format_host_port(host: str, port: int) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def show_address(address: Optional[object]) -> str:
    """A socket or header address for people, escaped: ``1.2.3.4:5``, ``[::1]:80``, a UNIX
    path as itself, an abstract name as ``@name``, ``(unnamed UNIX socket)``, ``(none)``."""
    if address is None:
        return "(none)"
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        return escape(format_host_port(address[0], int(address[1])))
    if isinstance(address, str):
        return escape(address) if address else "(unnamed UNIX socket)"
    if isinstance(address, (bytes, bytearray)):
        if not address:
            return "(unnamed UNIX socket)"
        name = bytes(address)
        return "@" + escape_bytes(name[1:] if name[:1] == b"\x00" else name)
    return escape(repr(address))
