"""The short cuts taken for speed behave exactly as the general paths do.

* ``PolicyReader`` decides a first chunk that holds a whole header with one ``parse``
  call; anything else goes to the incremental reader, which must end in the same state.
* The asyncio layer keeps one header deadline queue (and one timer) per server and loop
  instead of a timer per connection: every connection is still timed out ``timeout``
  seconds after it was made, never before, and a settled connection leaves the queue.
* ``ProxiedTransport`` puts its ``get_extra_info`` answers together on first request,
  from what it took from the transport at construction.

No timing is asserted beyond "never before the deadline".
"""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any, Optional

import pytest

import proxyproto
import proxyproto._connection
import proxyproto.aio._layer
from aio_util import TRUSTED_V4, UNTRUSTED_V4, connect_from, open_fds, read_all, run
from proxyproto import (
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    Policy,
    PolicyViolation,
    ProxyProtocolError,
    aio,
    encode_v1,
    encode_v2,
)
from proxyproto._connection import judge_start_python
from proxyproto.aio._transport import ProxiedSocket, ProxiedTransport
from proxyproto.policy import PolicyReader

SRC, DST = ("192.0.2.10", 40000), ("198.51.100.20", 443)
V2 = encode_v2(SRC, DST)
V1 = encode_v1(SRC, DST)
PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
INVALID = b"PROXY TCP4 192.0.2.1 198.51.100.1 1234\r\n"

# -- PolicyReader: the first chunk decided at once ------------------------------------


def state(reader: PolicyReader) -> tuple[Any, ...]:
    return (reader.done, reader.needed, reader.header, reader.received, reader.app_data)


def play(policy: Policy, chunks: list[bytes]) -> list[Any]:
    """Feed the chunks, then finish, then feed again; what happened at each step."""
    reader = PolicyReader(policy)
    log: list[Any] = []
    for chunk in chunks:
        try:
            log.append(reader.feed(chunk))
        except (ProxyProtocolError, RuntimeError) as exc:
            log.append((type(exc), str(exc)))
        log.append(state(reader))
    try:
        reader.finish()
        log.append("finished")
    except ProxyProtocolError as exc:
        log.append((type(exc), str(exc)))
    log.append(state(reader))
    try:
        log.append(reader.feed(b"more"))
    except (ProxyProtocolError, RuntimeError) as exc:
        log.append((type(exc), str(exc)))
    log.append(state(reader))
    return log


@pytest.mark.parametrize("policy", list(Policy), ids=lambda p: p.name)
@pytest.mark.parametrize("data", [V2 + PAYLOAD, V2, V1 + PAYLOAD, PAYLOAD, INVALID + PAYLOAD,
                                  encode_v2(SRC, DST, tlvs=[(0xE5, b"x" * 5000)])],
                         ids=["v2+data", "v2", "v1+data", "no-header", "invalid", "oversize"])
def test_whole_first_chunk_ends_as_the_incremental_reader_does(policy: Policy,
                                                               data: bytes) -> None:
    # one whole chunk (the short cut) against an empty first chunk, which sends every
    # later byte through the incremental reader: the same steps, the same states
    whole = play(policy, [data])
    incremental = play(policy, [b"", data])
    assert whole == incremental[2:]


def test_first_chunk_outcomes() -> None:
    reader = PolicyReader(Policy.REQUIRE)
    assert reader.needed == 15
    assert reader.feed(V2 + PAYLOAD)
    assert reader.header == reader.received == proxyproto.parse(V2)
    assert reader.app_data == PAYLOAD and type(reader.app_data) is bytes

    ignore = PolicyReader(Policy.IGNORE)
    assert ignore.feed(V1) and ignore.header is None and ignore.received is not None
    assert ignore.app_data == b""

    use = PolicyReader(Policy.USE)
    assert use.feed(PAYLOAD) and use.header is None and use.app_data == PAYLOAD

    with pytest.raises(NoProxyHeader):
        PolicyReader(Policy.REQUIRE).feed(PAYLOAD)
    with pytest.raises(PolicyViolation):
        PolicyReader(Policy.REJECT).feed(V2)
    with pytest.raises(InvalidHeader):
        PolicyReader(Policy.USE).feed(INVALID)


def test_split_first_chunk_goes_on_incrementally() -> None:
    reader = PolicyReader(Policy.REQUIRE)
    assert not reader.feed(V2[:10])
    assert reader.needed == 6  # the rest of the 16-byte fixed part
    with pytest.raises(IncompleteHeader):
        reader.finish()
    assert reader.feed(V2[10:] + PAYLOAD)
    assert reader.header == proxyproto.parse(V2) and reader.app_data == PAYLOAD


def test_first_chunk_memoryview_is_copied() -> None:
    buffer = bytearray(V2 + PAYLOAD)
    for policy, expected in ((Policy.REQUIRE, PAYLOAD), (Policy.USE, PAYLOAD)):
        reader = PolicyReader(policy)
        assert reader.feed(memoryview(buffer))
        assert reader.app_data == expected
    use = PolicyReader(Policy.USE)
    plain = bytearray(PAYLOAD)
    assert use.feed(memoryview(plain))
    plain[:] = b"x" * len(plain)  # the caller reuses its buffer
    assert use.app_data == PAYLOAD


def test_reader_arguments_still_checked() -> None:
    with pytest.raises(TypeError):
        PolicyReader("require")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PolicyReader(Policy.USE, max_size=4096.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16"):
        PolicyReader(Policy.USE, max_size=15)
    with pytest.raises(ValueError, match="at least 16"):
        proxyproto.HeaderReader(max_size=15)


# -- the asyncio layer, driven with a fake transport -----------------------------------


class FakeSocket:
    def getpeername(self) -> Any:
        return ("127.0.0.2", 1234)


class FakeTransport(asyncio.Transport):
    """What the layer needs of a transport; records aborts."""

    def __init__(self, peer: Any = ("127.0.0.2", 1234), sock: Any = None) -> None:
        extra = {"peername": peer, "sockname": ("127.0.0.1", 8000)}
        if sock is not None:
            extra["socket"] = sock
        super().__init__(extra)
        self.protocol: Optional[asyncio.BaseProtocol] = None
        self.aborted_at: Optional[float] = None
        self.closing = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True
        self.aborted_at = asyncio.get_running_loop().time()

    def close(self) -> None:
        self.closing = True

    def write(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.BaseTransport] = None
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def waiting_of(factory: aio.ProxyProtocolFactory) -> dict[Any, float]:
    deadlines = factory._config._deadlines
    return {} if deadlines is None else deadlines.waiting


def test_one_timer_for_all_connections_and_settled_ones_leave() -> None:
    async def main() -> None:
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=30)
        layers, transports = [], []
        for _ in range(50):
            layer, transport = factory(), FakeTransport()
            layer.connection_made(transport)
            layers.append(layer)
            transports.append(transport)
        deadlines = factory._config._deadlines
        assert deadlines is not None and len(deadlines.waiting) == 50
        timer = deadlines._timer
        assert timer is not None  # one timer, made by the first connection
        assert list(deadlines.waiting) == layers  # in arrival order, deadlines sorted
        values = list(deadlines.waiting.values())
        assert values == sorted(values)
        assert factory.stats.pending == 50
        for layer in layers[:49]:
            layer.data_received(V2 + b"ping")
        assert list(deadlines.waiting) == layers[49:]
        assert deadlines._timer is timer
        layers[49].connection_lost(None)  # a connection lost mid-header leaves too
        assert not deadlines.waiting
        assert factory.stats.accepted == 49 and factory.stats.refused == {"eof": 1}
        assert factory.stats.pending == 0
        assert not any(t.aborted_at for t in transports[:49])

    run(main())


def test_untrusted_and_skip_never_wait() -> None:
    async def main() -> None:
        factory = aio.wrap_protocol_factory(App, trusted=["10.0.0.0/8"], timeout=30)
        transport = FakeTransport(("127.0.0.9", 1))
        factory().connection_made(transport)
        assert transport.aborted_at is not None  # closed before reading anything
        assert factory._config._deadlines is None  # no queue, no timer
        assert factory.stats.refused == {"untrusted": 1} and factory.stats.pending == 0

        skip = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], policy=Policy.SKIP)
        skip().connection_made(FakeTransport())
        assert skip._config._deadlines is None and skip.stats.accepted == 1

    run(main())


def test_every_connection_times_out_at_its_own_deadline_never_before() -> None:
    timeout = 0.3

    async def main() -> None:
        loop = asyncio.get_running_loop()
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=timeout)
        made: list[tuple[float, FakeTransport]] = []
        for wave in range(3):  # three waves, 0.1 s apart: three different deadlines
            for _ in range(5):
                transport = FakeTransport()
                layer = factory()
                made.append((loop.time(), transport))
                layer.connection_made(transport)
                layer.data_received(V2[:10])  # a header that never completes
            if wave < 2:
                await asyncio.sleep(0.1)
        for _ in range(200):
            if factory.stats.pending == 0:
                break
            await asyncio.sleep(0.02)
        assert factory.stats.refused == {"timeout": 15} and factory.stats.pending == 0
        for started, transport in made:
            assert transport.aborted_at is not None
            assert transport.aborted_at >= started + timeout
        assert not waiting_of(factory)

    run(main())


def test_optional_header_timeout_hands_over_and_one_failure_does_not_stop_the_sweep() -> None:
    # USE: a silent client is a server-speaks-first one; at the deadline the application
    # is connected. An application factory that fails for one connection is reported to
    # the loop's exception handler, as a timer callback's failure was; the others go on.
    calls = 0

    def factory_fn() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("application factory failed")
        return App()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        factory = aio.wrap_protocol_factory(factory_fn, trusted=["127.0.0.0/8"],
                                            policy=Policy.USE, timeout=0.2)
        transports = [FakeTransport() for _ in range(4)]
        for transport in transports:
            factory().connection_made(transport)
        await asyncio.sleep(0.5)
        assert calls == 4
        assert len(reported) == 1
        assert isinstance(reported[0]["exception"], RuntimeError)
        assert isinstance(reported[0]["protocol"], aio.ProxyProtocolLayer)
        handed = [t for t in transports if isinstance(t.protocol, App)]
        assert len(handed) == 3
        assert not waiting_of(factory)

    run(main())


def test_factory_used_on_two_loops() -> None:
    factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=0.2)

    async def main() -> None:
        transport = FakeTransport()
        factory().connection_made(transport)
        await asyncio.sleep(0.5)
        assert transport.aborted_at is not None

    run(main())
    run(main())  # a new loop: a queue of its own there
    assert factory.stats.refused == {"timeout": 2} and factory.stats.pending == 0


def test_a_burst_leaves_no_table_behind() -> None:
    async def main() -> None:
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=30)
        layers = [factory() for _ in range(500)]
        for layer in layers:
            layer.connection_made(FakeTransport())
        waiting = waiting_of(factory)
        assert len(waiting) == 500
        for layer in layers:
            layer.data_received(V1)
        assert waiting == {}
        assert waiting.__sizeof__() == {}.__sizeof__()  # the table was freed

    run(main())


# -- the same, over real sockets --------------------------------------------------------


def test_stalled_and_served_connections_over_loopback() -> None:
    timeout = 0.4

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fds_before = open_fds()

        async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(4)
            writer.write(data.upper())
            writer.close()

        server = await aio.start_server(callback, "127.0.0.1", 0,
                                        trusted=[TRUSTED_V4], timeout=timeout)
        port = server.sockets[0].getsockname()[1]
        stats: aio.ProxyStats = server.proxy_stats  # type: ignore[attr-defined]
        try:
            stalled = []
            for _ in range(5):
                sock = await connect_from(TRUSTED_V4, port)
                await loop.sock_sendall(sock, V2[:7])
                stalled.append((loop.time(), sock))
            untrusted = await connect_from(UNTRUSTED_V4, port)
            good = await connect_from(TRUSTED_V4, port)
            await loop.sock_sendall(good, V2 + b"ping")
            assert await read_all(good, limit=5) == b"PING"
            good.close()
            assert await read_all(untrusted, limit=5) == b""
            untrusted.close()
            for started, sock in stalled:
                assert await read_all(sock, limit=timeout + 5) == b""
                # closed at the deadline, not before (the client saw EOF/reset after it)
                assert loop.time() >= started + timeout
                sock.close()
            assert stats.refused == {"timeout": 5, "untrusted": 1}
            assert stats.accepted == 1 and stats.pending == 0
        finally:
            server.close()
            await server.wait_closed()
        for _ in range(100):
            if open_fds() <= fds_before:
                break
            await asyncio.sleep(0.02)
        assert open_fds() <= fds_before

    run(main())


# -- ProxiedTransport: answers put together on first request ---------------------------


def test_proxied_transport_answers() -> None:
    header = proxyproto.parse(V2)
    sock = FakeSocket()
    transport = FakeTransport(("127.0.0.2", 1234), sock)
    view = ProxiedTransport(transport, header, header)
    # the transport's own answers change later: the view keeps those it took
    transport._extra = {"peername": ("9.9.9.9", 9), "sockname": None, "socket": None,
                        "other": 1}
    assert view.get_extra_info("peername") == SRC
    assert view.get_extra_info("sockname") == DST
    assert view.get_extra_info("socket_peername") == ("127.0.0.2", 1234)
    assert view.get_extra_info("socket_sockname") == ("127.0.0.1", 8000)
    assert view.get_extra_info("proxy_header") is header
    assert view.get_extra_info("proxy_header_received") is header
    proxied = view.get_extra_info("socket")
    assert isinstance(proxied, ProxiedSocket) and view.get_extra_info("socket") is proxied
    assert proxied.getpeername() == SRC and proxied.getsockname() == DST
    assert view.get_extra_info("other") == 1  # other keys: the transport's
    assert view.get_extra_info("missing", "default") == "default"
    assert "192.0.2.10" in repr(view)

    # no header, addresses given by the layer, no socket
    bare = ProxiedTransport(FakeTransport(), None, None, ("10.0.0.1", 1), ("10.0.0.2", 2))
    assert bare.get_extra_info("peername") == ("10.0.0.1", 1)
    assert bare.get_extra_info("sockname") == ("10.0.0.2", 2)
    assert bare.get_extra_info("proxy_header") is None
    assert bare.get_extra_info("socket", "none") == "none"

    # a LOCAL header keeps the socket's addresses
    local = proxyproto.parse(encode_v2(None, None))
    view = ProxiedTransport(FakeTransport(("127.0.0.2", 5), sock), local, local)
    assert view.get_extra_info("peername") == ("127.0.0.2", 5)
    assert view.get_extra_info("socket").getpeername() == ("127.0.0.2", 5)


def test_layer_view_reports_original_addresses_on_a_real_socket() -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for key in ("peername", "sockname", "socket_peername", "proxy_header"):
                seen[key] = writer.get_extra_info(key)
            sock = writer.get_extra_info("socket")
            seen["sock"] = (sock.getpeername(), sock.getsockname(), sock.family)
            writer.write(await reader.readexactly(4))
            writer.close()

        server = await aio.start_server(callback, "127.0.0.1", 0, trusted=[TRUSTED_V4])
        port = server.sockets[0].getsockname()[1]
        try:
            client = await connect_from(TRUSTED_V4, port)
            await loop.sock_sendall(client, V2 + b"ping")
            assert await read_all(client, limit=5) == b"ping"
            client_port = client.getsockname()[1]
            client.close()
        finally:
            server.close()
            await server.wait_closed()
        assert seen["peername"] == SRC and seen["sockname"] == DST
        assert seen["socket_peername"] == (TRUSTED_V4, client_port)
        assert seen["proxy_header"] == proxyproto.parse(V2)
        assert seen["sock"] == (SRC, DST, socket.AF_INET)

    run(main())
    gc.collect()


# -- the layer on the connection-start machine: each byte parsed once -------------------


@pytest.mark.parametrize("chunks, expected, parses", [
    ([INVALID + PAYLOAD], "invalid", [len(INVALID + PAYLOAD)]),  # one parse, one refusal
    ([b"GET / HTTP/1.1\r\n"], "no_header", [16]),
    ([V2 + PAYLOAD], "accepted", [len(V2 + PAYLOAD)]),
    # a v1 line byte by byte: no parse before its LF (one parse of it, at the LF)
    ([bytes([byte]) for byte in V1] + [PAYLOAD], "accepted", [len(V1)]),
    # a v2 header byte by byte: none for the signature, then the fixed part's last four
    # bytes as they come (version, family, length), then the whole header once
    ([bytes([byte]) for byte in V2] + [PAYLOAD], "accepted", [13, 14, 15, 16, len(V2)]),
])
def test_the_layer_parses_each_chunk_once(
    monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], expected: str, parses: list[int]
) -> None:
    """The PROXY layer asks the machine (no raise-and-catch per partial chunk): the
    compiled/reference ``parse_or_needed`` is called once per decision point (never
    twice on the same bytes), and ``parse`` (the raising entry point) never. (The
    machine's reference ``judge_start_python`` is counted: the compiled ``judge_start``
    parses a whole header in C, where no Python call can count it.)"""
    monkeypatch.setattr(proxyproto._connection, "judge_start", judge_start_python)
    monkeypatch.setattr(proxyproto.aio._layer, "judge_start", judge_start_python)
    calls: list[int] = []
    real = proxyproto._impl.parse_or_needed

    def counting(data: Any, max_size: int = 65551) -> Any:
        calls.append(len(data))
        return real(data, max_size=max_size)

    def no_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the raising parse() was called")

    monkeypatch.setattr(proxyproto._impl, "parse_or_needed", counting)
    monkeypatch.setattr(proxyproto._impl, "parse", no_parse)

    async def main() -> aio.ProxyStats:
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=30)
        layer, transport = factory(), FakeTransport()
        layer.connection_made(transport)
        for chunk in chunks:
            layer.data_received(chunk)
        return factory.stats

    stats = run(main())
    outcome = "accepted" if stats.accepted else next(iter(stats.refused))
    assert outcome == expected
    assert calls == parses


# -- the hand-over: asyncio's own transports report the header in place -----------------


class FullSocket(FakeSocket):
    def getsockname(self) -> Any:
        return ("127.0.0.1", 8000)


class WrappedTransport(FakeTransport):
    """A transport whose ``get_extra_info`` is its own (as uvloop's or a TLS one's)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


@pytest.mark.parametrize("header_bytes", [V2, encode_v2(None, None)], ids=["proxy", "local"])
def test_hand_over_in_place_or_through_a_view(header_bytes: bytes) -> None:
    """A transport answering from its ``_extra`` dict (asyncio.BaseTransport's
    get_extra_info) is handed over itself, with the header's answers written in; any
    other transport gets a ProxiedTransport. The application sees the same answers."""
    header = proxyproto.parse(header_bytes)
    sock = FullSocket()

    async def main() -> dict[str, tuple[Any, dict[str, Any]]]:
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=30)
        seen = {}
        for name, transport in (("in place", FakeTransport(sock=sock)),
                                ("view", WrappedTransport(sock=sock))):
            layer = factory()
            layer.connection_made(transport)
            layer.data_received(header_bytes + b"ping")
            app = transport.protocol
            assert isinstance(app, App) and app.data == b"ping"
            view = app.transport
            assert view is not None
            answers = {key: view.get_extra_info(key) for key in (
                "peername", "sockname", "socket_peername", "socket_sockname",
                "proxy_header", "proxy_header_received")}
            proxied = view.get_extra_info("socket")
            answers["socket"] = (proxied.getpeername(), proxied.getsockname())
            seen[name] = (view, answers)
        return seen

    seen = run(main())
    in_place, view = seen["in place"][0], seen["view"][0]
    assert isinstance(in_place, FakeTransport) and not isinstance(in_place, ProxiedTransport)
    assert isinstance(view, ProxiedTransport)
    assert seen["in place"][1] == seen["view"][1]
    answers = seen["in place"][1]
    socket_peer, socket_local = ("127.0.0.2", 1234), ("127.0.0.1", 8000)
    if header.source is None:  # LOCAL: the socket's own addresses stay
        assert answers["peername"] == socket_peer and answers["sockname"] == socket_local
        assert answers["socket"] == (socket_peer, socket_local)
    else:
        assert answers["peername"] == SRC and answers["sockname"] == DST
        assert answers["socket"] == (SRC, DST)
    assert answers["socket_peername"] == socket_peer
    assert answers["socket_sockname"] == socket_local
    assert answers["proxy_header"] == header == answers["proxy_header_received"]


def test_verdicts_are_remembered_by_host_and_bounded() -> None:
    """decide_policy's answer is cached per host for a plain Policy (bounded), never
    for a policy callable (it may look at the port or the local address)."""
    from proxyproto.aio import _layer

    async def main() -> None:
        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], timeout=30)
        config = factory._config
        assert config.verdicts == {}
        for port in (1, 2):
            factory().connection_made(FakeTransport(("127.0.0.2", port)))
            factory().connection_made(FakeTransport(("127.0.0.9", port)))
        factory().connection_made(FakeTransport(("203.0.113.1", 5)))
        assert config.verdicts == {"127.0.0.2": Policy.REQUIRE, "127.0.0.9": Policy.REQUIRE,
                                   "203.0.113.1": None}
        assert factory.stats.refused == {"untrusted": 1} and factory.stats.pending == 4
        for index in range(_layer._VERDICT_CACHE_SIZE + 10):
            factory().connection_made(FakeTransport((f"10.{index // 256}.{index % 256}.1", 1)))
        assert len(config.verdicts) <= _layer._VERDICT_CACHE_SIZE

        calls: list[Any] = []

        def by_port(peer: Any, local: Any) -> Policy:
            calls.append(peer)
            return Policy.USE if peer[1] == 1 else Policy.SKIP

        factory = aio.wrap_protocol_factory(App, trusted=["127.0.0.0/8"], policy=by_port)
        assert factory._config.verdicts is None
        for port in (1, 2, 1):
            factory().connection_made(FakeTransport(("127.0.0.2", port)))
        assert len(calls) == 3 and factory.stats.accepted == 1  # the SKIP one

    run(main())
