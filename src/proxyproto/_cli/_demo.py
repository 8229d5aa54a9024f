"""``proxyproto demo``: the one-command tour on loopback.

It starts the ``whoami`` server trusting 127.0.0.2 only, then connects from 127.0.0.2
with a v1, a v2 and a v2-with-TLVs header, from 127.0.0.3 (not trusted) with a spoofed
header, and from 127.0.0.2 with no header; prints what was served and refused, and why.
Exit status 0 when every case behaved as expected, 1 otherwise. Nothing outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any, Optional

from .. import _impl
from ._common import (
    EXIT_CONNECT,
    EXIT_FAILED,
    EXIT_LISTEN,
    EXIT_OK,
    escape,
    fail,
    format_host_port,
)
from ._whoami import Whoami

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  proxyproto demo             the table of what was served and refused
  proxyproto demo --verbose   also each answer whoami gave

exit status: 0 every case behaved as expected, 1 one did not, 7 the loopback addresses
127.0.0.2/127.0.0.3 cannot be used (Linux has them; macOS: ifconfig lo0 alias 127.0.0.2).
"""

_PROXY = "127.0.0.2"  # the trusted proxy
_STRANGER = "127.0.0.3"  # anyone else
_IO_TIMEOUT = 3.0


@dataclass
class _Case:
    label: str
    source_ip: str
    header: bytes
    expect_client: Optional[str]  # served as this client; None: refused
    expect_reason: Optional[str] = None  # the refusal reason
    expect_authority: Optional[str] = None


def _cases() -> list[_Case]:
    tlvs = [(0x02, b"shop.example"), (0x01, b"h2"), (0x05, b"req-42")]
    return [
        _Case("v1 header", _PROXY,
              _impl.encode_v1(("203.0.113.10", 41000), ("192.0.2.1", 443)),
              "203.0.113.10:41000"),
        _Case("v2 header (IPv6)", _PROXY,
              _impl.encode_v2(("2001:db8::10", 41001), ("2001:db8::1", 443)),
              "[2001:db8::10]:41001"),
        _Case("v2 + TLVs, CRC32C", _PROXY,
              _impl.encode_v2(("198.51.100.20", 41002), ("192.0.2.1", 443), tlvs=tlvs,
                              crc32c=True),
              "198.51.100.20:41002", expect_authority="shop.example"),
        _Case("spoofed header", _STRANGER,
              _impl.encode_v1(("192.0.2.66", 666), ("192.0.2.1", 443)),
              None, "untrusted"),
        _Case("no header", _PROXY, b"", None, "no_header"),
    ]


def _request(number: int) -> bytes:
    return (f"GET /demo/{number} HTTP/1.1\r\nHost: demo\r\nAccept: application/json\r\n"
            f"Connection: close\r\n\r\n").encode("ascii")


async def _exchange(port: int, source_ip: str, data: bytes) -> tuple[bytes, Optional[str]]:
    """Connect from ``source_ip``, send ``data``, read to the end: (answer, error)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source_ip, 0)), _IO_TIMEOUT)
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), _IO_TIMEOUT)
        return answer, None
    except (ConnectionError, OSError) as exc:
        return b"", type(exc).__name__
    except asyncio.TimeoutError:
        return b"", "timeout"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _client_of(answer: bytes) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    _, _, body = answer.partition(b"\r\n\r\n")
    try:
        report = json.loads(body)
    except ValueError:
        return None, None
    client = report.get("client") or {}
    if "host" in client:
        return format_host_port(client["host"], client["port"]), report
    return None, report


async def _wait_refusals(stats: Any, before: int) -> None:
    for _ in range(40):  # bounded: the refusal is counted before the close reaches us
        if sum(stats.refused.values()) > before:
            return
        await asyncio.sleep(0.05)


async def _tour(verbose: bool) -> int:
    from .. import aio

    whoami = Whoami(read_timeout=_IO_TIMEOUT)
    whoami.attach()
    try:
        try:
            server = await aio.start_server(whoami.handle, "127.0.0.1", 0,
                                            trusted=[f"{_PROXY}/32"], timeout=2.0)
        except OSError as exc:
            return fail(f"cannot listen on 127.0.0.1: {exc.strerror or exc}", EXIT_LISTEN)
        async with server:
            port = server.sockets[0].getsockname()[1]
            stats = server.proxy_stats
            print(f"whoami on 127.0.0.1:{port}, trusting {_PROXY} only (a header is "
                  f"required from it); every other peer is closed unread\n")
            rows = [("#", "from", "sends", "outcome", "")]
            all_ok = True
            for number, case in enumerate(_cases(), 1):
                refused_before = sum(stats.refused.values())
                before = dict(stats.refused)
                try:
                    answer, error = await _exchange(port, case.source_ip,
                                                    case.header + _request(number))
                except (OSError, asyncio.TimeoutError) as exc:
                    return fail(f"cannot connect from {case.source_ip}: "
                                f"{getattr(exc, 'strerror', None) or exc!r} (Linux routes "
                                f"127.0.0.0/8 to lo; elsewhere alias {case.source_ip} on "
                                f"the loopback interface)", EXIT_CONNECT)
                client, report = _client_of(answer)
                if case.expect_client is not None:
                    expected = f"served as {case.expect_client}"
                    got = f"served as {client}" if client else \
                        f"no answer ({error or 'closed'})"
                    ok = client == case.expect_client
                    if case.expect_authority is not None and report is not None:
                        decoded = (report.get("proxy_header") or {}).get("decoded", {})
                        authority = decoded.get("authority")
                        got += f" (authority {authority})"
                        expected += f" (authority {case.expect_authority})"
                        ok = ok and authority == case.expect_authority
                else:
                    await _wait_refusals(stats, refused_before)
                    new = [reason for reason, count in stats.refused.items()
                           if count > before.get(reason, 0)]
                    expected = f"refused: {case.expect_reason}"
                    got = f"refused: {', '.join(new)}" if new else \
                        f"not refused ({len(answer)} bytes of answer)"
                    ok = not answer and new == [case.expect_reason]
                all_ok = all_ok and ok
                rows.append((str(number), case.source_ip, case.label, got,
                             "ok" if ok else f"UNEXPECTED, wanted {expected}"))
                if verbose and answer:
                    print(escape(answer.decode("utf-8", "backslashreplace")))
            widths = [max(len(row[i]) for row in rows) for i in range(5)]
            for row in rows:
                print("  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                      .rstrip())
            print()
            for event in whoami.events:
                if event["event"] == "refused":
                    print(f"log: {escape(event['message'])}")
            refused = ", ".join(f"{k} {v}" for k, v in sorted(stats.refused.items()))
            print(f"server counters: accepted {stats.accepted}, refused {refused or 'none'}")
            if all_ok:
                print("every case behaved as expected: only the trusted proxy is believed")
                return EXIT_OK
            print("some case did not behave as expected (see UNEXPECTED above)")
            return EXIT_FAILED
    finally:
        whoami.detach()


def register(subparsers: Any) -> None:
    """Add ``demo`` to the command line."""
    parser = subparsers.add_parser(
        "demo", help="a tour on loopback: what is served and what is refused, and why",
        description="Start whoami on 127.0.0.1 trusting 127.0.0.2, send headers from\n"
                    "127.0.0.2 and a spoofed one from 127.0.0.3, show the outcome.",
        epilog=_EPILOG)
    parser.add_argument("--verbose", action="store_true", help="print each answer too")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``proxyproto demo``: 0 when everything behaved as expected."""
    status: int = asyncio.run(asyncio.wait_for(_tour(args.verbose), 30))
    sys.stdout.flush()
    return status
