"""Every policy x peer kind x header kind, for real, over loopback, for both asyncio APIs.

Trusted peers connect from 127.0.0.2 and ::1, the untrusted one from 127.0.0.3; the
server trusts 127.0.0.2 and ::1. Each test runs one server configuration with all its
cases at once, then checks what the application saw, what the stats counted, that the
server still serves, and that no file descriptor or task leaked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from dataclasses import dataclass
from typing import Any, Optional

import pytest

import proxyproto
from aio_util import (
    TRUSTED,
    TRUSTED_V4,
    TRUSTED_V6,
    UNTRUSTED_V4,
    Recorder,
    connect_from,
    has_ipv6_loopback,
    open_fds,
    read_all,
    reset,
    run,
)
from proxyproto import Policy, TLVType, aio, encode_v1, encode_v2

TIMEOUT = 1.0  # the header deadline in these tests (generous: the machine may be busy)
SRC4, DST4 = ("192.0.2.10", 40000), ("198.51.100.20", 443)
SRC6, DST6 = ("2001:db8::10", 40001), ("2001:db8::20", 8443)
# a second "header" inside application data is application data ([SPEC] R-64)
PAYLOAD = b"PING\r\nPROXY TCP4 6.6.6.6 7.7.7.7 1 2\r\n"
NO_HEADER = b"HELO example.org\r\n" + PAYLOAD
V1 = encode_v1(SRC4, DST4)
V2 = encode_v2(SRC6, DST6, tlvs=[(TLVType.AUTHORITY, b"example.com")])
V2_4 = encode_v2(SRC4, DST4)
LOCAL = encode_v2(None, None)
INVALID = b"PROXY TCP4 192.0.2.1 198.51.100.1 1234\r\n"  # a port missing
OVERSIZE = encode_v2(SRC4, DST4, tlvs=[(0xE5, b"x" * 5000)])  # over the 4096-byte cap


@dataclass(frozen=True)
class Kind:
    name: str
    header: Optional[bytes]  # the header sent (None: none, or not a valid one)
    pieces: tuple[bytes, ...]  # what is written, one write each, with pauses between
    ending: str = "eof"  # "eof": shut down writing; "hold": never finish; "reset": RST


KINDS = [
    Kind("none", None, (NO_HEADER,)),
    Kind("v1", V1, (V1 + PAYLOAD,)),
    Kind("v2", V2, (V2 + PAYLOAD,)),
    Kind("local", LOCAL, (LOCAL + PAYLOAD,)),
    Kind("invalid", None, (INVALID + PAYLOAD,)),
    Kind("split", V2_4, (V2_4[:10], V2_4[10:] + PAYLOAD)),
    Kind("bytewise", V1, (*(V1[i : i + 1] for i in range(len(V1))), PAYLOAD)),
    Kind("slowloris", None, (V1[:12],), "hold"),
    Kind("oversize", None, (OVERSIZE + PAYLOAD,)),
    Kind("reset", None, (V2_4[:20],), "reset"),
]


def expected(policy: Optional[Policy], kind: Kind) -> tuple[str, Any]:
    """("refused", reason) or ("served", (data, header honoured, header received))."""
    if policy is None:
        return "refused", "untrusted"
    if policy is Policy.SKIP:
        return "served", (b"".join(kind.pieces), None, None)
    failures = {"invalid": "invalid", "slowloris": "timeout", "oversize": "too_large",
                "reset": "eof"}
    if kind.name in failures:
        return "refused", failures[kind.name]
    if kind.header is None:  # no header at all
        if policy is Policy.REQUIRE:
            return "refused", "no_header"
        return "served", (NO_HEADER, None, None)
    header = proxyproto.parse(kind.header)
    if policy is Policy.REJECT:
        return "refused", "rejected"
    honoured = None if policy is Policy.IGNORE else header
    return "served", (PAYLOAD, honoured, header)


async def play(source: str, ports: dict[int, int], kind: Kind) -> tuple[int, bytes]:
    """One client: returns its source port and what the server answered."""
    sock = await connect_from(source, ports[socket.AF_INET6 if ":" in source else socket.AF_INET])
    loop = asyncio.get_running_loop()
    client_port = sock.getsockname()[1]
    try:
        try:
            for piece in kind.pieces:
                await loop.sock_sendall(sock, piece)
                if len(kind.pieces) > 1:
                    await asyncio.sleep(0.002)
        except OSError:  # refused while sending (oversize): the server reset us
            pass
        if kind.ending == "reset":
            # give the server time to accept first: a connection reset while still in the
            # accept queue has no peer address left, so it would count as "untrusted"
            await asyncio.sleep(0.3)
            reset(sock)
            return client_port, b""
        if kind.ending == "hold":  # wait past the deadline without finishing the header
            answer = await read_all(sock, limit=TIMEOUT + 0.8)
            if answer:
                return client_port, answer
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        return client_port, await read_all(sock, limit=TIMEOUT * 4 + 2)
    finally:
        sock.close()


CONFIGS = [
    (Policy.REQUIRE, None),  # the default
    (Policy.USE, Policy.SKIP),
    (Policy.IGNORE, Policy.IGNORE),
    (Policy.REJECT, Policy.REJECT),
    (Policy.SKIP, None),
]


def peers() -> list[str]:
    return [TRUSTED_V4, UNTRUSTED_V4] + ([TRUSTED_V6] if has_ipv6_loopback() else [])


async def scenario(api: str, policy: Policy, untrusted_policy: Optional[Policy]) -> list[str]:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    tasks_before = set(asyncio.all_tasks())
    fds_before = open_fds()
    hosts = ["127.0.0.1"] + (["::1"] if has_ipv6_loopback() else [])
    options: dict[str, Any] = {"trusted": TRUSTED, "policy": policy,
                               "untrusted_policy": untrusted_policy, "timeout": TIMEOUT}
    if api == "streams":
        server = await aio.start_server(recorder.streams_cb, hosts, 0, **options)
    else:
        server = await aio.create_server(recorder.protocol_factory, hosts, 0, **options)
    ports = {sock.family: sock.getsockname()[1] for sock in server.sockets}
    stats: aio.ProxyStats = server.proxy_stats  # type: ignore[attr-defined]
    problems: list[str] = []
    try:
        cases = [(peer, kind) for peer in peers() for kind in KINDS]
        results = await asyncio.gather(*(play(peer, ports, kind) for peer, kind in cases))
        want_refused: collections.Counter[str] = collections.Counter()
        served = 0
        for (peer, kind), (client_port, answer) in zip(cases, results):
            peer_policy = policy if peer != UNTRUSTED_V4 else untrusted_policy
            outcome, detail = expected(peer_policy, kind)
            label = f"{peer} {kind.name} under {peer_policy}"
            record = recorder.records.get((peer, client_port))
            if outcome == "refused":
                want_refused[detail] += 1
                if record is not None or answer:
                    problems.append(f"{label}: served, expected refused ({detail})")
                continue
            served += 1
            if record is None:
                problems.append(f"{label}: refused, expected served")
                continue
            await asyncio.wait_for(record.done.wait(), 5)
            data, honoured, received = detail
            if kind.ending != "reset" and (record.data != data or answer != b"ok"):
                problems.append(f"{label}: app got {record.data!r}, expected {data!r}")
            if record.header != honoured or record.received != received:
                problems.append(f"{label}: proxy_header {record.header!r}")
            want_peer = record.socket_peer[:2]
            if honoured is not None and honoured.source is not None:
                want_peer = honoured.source
            if record.peername[:2] != want_peer:
                problems.append(f"{label}: peername {record.peername!r} != {want_peer!r}")
            if honoured is not None and honoured.source is not None and (
                record.sockname != honoured.destination
            ):
                problems.append(f"{label}: sockname {record.sockname!r}")
        if stats.refused != want_refused:
            problems.append(f"refusals counted {dict(stats.refused)} != {dict(want_refused)}")
        if stats.accepted != served or stats.pending != 0:
            problems.append(f"stats {stats!r}, expected {served} accepted, 0 pending")
        # the server keeps serving after every refusal
        good = Kind("none", None, (NO_HEADER,)) if policy in (Policy.REJECT, Policy.SKIP) \
            else Kind("v1", V1, (V1 + PAYLOAD,))
        _, answer = await play(TRUSTED_V4, ports, good)
        if answer != b"ok":
            problems.append("the server stopped serving after the refusals")
    finally:
        server.close()
        await server.wait_closed()
    for _ in range(150):  # let the closed transports finish closing
        leaked = set(asyncio.all_tasks()) - tasks_before - {asyncio.current_task()}
        if open_fds() <= fds_before and not leaked:
            break
        await asyncio.sleep(0.02)
    if open_fds() > fds_before:
        problems.append(f"file descriptors leaked: {open_fds()} > {fds_before}")
    if leaked:
        problems.append(f"tasks leaked: {leaked}")
    assert loop.is_running()
    return problems


@pytest.mark.parametrize("api", ["streams", "protocol"])
@pytest.mark.parametrize(("policy", "untrusted_policy"), CONFIGS,
                         ids=[f"{p.name}-{u.name if u else 'close'}" for p, u in CONFIGS])
def test_policy_peer_header_matrix(api: str, policy: Policy,
                                   untrusted_policy: Optional[Policy]) -> None:
    problems = run(scenario(api, policy, untrusted_policy))
    assert not problems, "\n".join(problems)
