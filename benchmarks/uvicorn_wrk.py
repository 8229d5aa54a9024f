"""What the PROXY layer costs uvicorn (and a bare asyncio server): wrk rounds and callgrind.

    python3 benchmarks/uvicorn_wrk.py                 # about 4 min: wrk rounds + callgrind
    python3 benchmarks/uvicorn_wrk.py --quick         # under 60 s (CI)
    python3 benchmarks/uvicorn_wrk.py --no-callgrind  # wrk rounds only
    python3 benchmarks/uvicorn_wrk.py --rst           # tables for docs/benchmarks.rst
    python3 benchmarks/uvicorn_wrk.py --no-wrk --no-deadline       # proxied: timeout=None
    python3 benchmarks/uvicorn_wrk.py --no-wrk --no-proxy-headers  # plain: no X-Forwarded-For
    python3 benchmarks/uvicorn_wrk.py --no-wrk --plain-timer       # plain asyncio: one timer

Loopback only; every server is a child process that this script stops; every wrk run and
every client is bounded in time or count.

Servers, all answering ``GET /`` with a 2-byte body (the same minimal ASGI app for both
uvicorn servers, uvicorn's default ``http="auto"``: httptools when installed):

* ``uvicorn``: plain ``uvicorn.Server``;
* ``uvicorn+proxy``: the same with ``http=proxyproto.aio.uvicorn_http_protocol(trusted=
  ["127.0.0.0/8"])`` (policy ``REQUIRE``: every connection must start with a header);
* ``asyncio`` / ``asyncio+proxy`` (callgrind only): ``asyncio.start_server`` vs
  ``proxyproto.aio.start_server(trusted=["127.0.0.0/8"])`` with a handler that reads the
  request head and writes the same response, then closes.

1. **wrk rounds** (wall-clock). wrk cannot send a PROXY header on its own: a Lua script
   (``request()``) builds the requests. ``close`` mode: ``-H 'Connection: close'``, one
   request per connection, so every request is a new connection and the script puts the
   PROXY v1 line in front of every request (header and request in one write, as proxies
   do). ``keep-alive`` mode: ``-t N -c N``, one connection per wrk thread; each thread's
   script sends the header in front of its first request only (wrk has no per-connection
   hook, and a thread with one connection makes that connection's first request first).
   A connection re-opened by wrk would lack the header and be refused: a round with a
   socket error or a non-2xx answer is reported as failed. The plain server gets the same
   script without the header. Servers pinned to one core (``taskset``), wrk to the other;
   rounds interleaved (plain, proxied, plain, proxied, ...); reported: median requests per
   second of each, and the median and min-max of the per-round ratios proxied/plain.
2. **callgrind** (instructions, stable on a shared machine). The server runs under
   ``valgrind --tool=callgrind``; a client outside valgrind makes ``--warmup``
   connections, one at a time (connect, header + request in one write, read to EOF);
   then ``callgrind_control -z`` zeroes the counters, the client makes N connections and
   ``callgrind_control -d`` dumps them; then zero again, stay idle as long as the N
   connections took (uvicorn's once-a-tick work goes on), dump: the idle baseline.
   Per connection: (busy - idle) / N. Start-up, imports, warm-up and shutdown are outside
   both dumps. The servers run ``--jobs`` at a time (counts do not depend on the load).
   ``uvicorn/keep-alive`` and ``uvicorn+proxy/keep-alive``: the same, counting N
   requests on one kept-alive connection (per request). ``--only KIND`` measures some
   of them; ``--keep DIR`` keeps the busy dumps for ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import callgrind_total, table, valgrind_python

HOST = "127.0.0.1"
TRUSTED = ["127.0.0.0/8"]
RESPONSE_BODY = b"ok"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
SERVERS = ("uvicorn", "uvicorn+proxy", "asyncio", "asyncio+proxy")
#: what callgrind counts: a new connection per server, and a request on a kept-alive
#: uvicorn connection
CALLGRIND_KINDS = (*SERVERS, "uvicorn/keep-alive", "uvicorn+proxy/keep-alive")

# wrk's Lua side: args[1] is the PROXY line ("" for the plain server, "\r\n" written as the
# four characters), args[2] "first" to send it on the first request of the thread only
# (keep-alive: one connection per thread), "every" on every request (close).
WRK_LUA = r"""
local threads = 0
function setup(thread)  -- in wrk's main Lua state, once per thread, before its init()
  threads = threads + 1
  thread:set("index", threads)
end
local preamble, mode, sent, calls = "", "every", false, 0
function init(args)
  preamble = (args[1] or ""):gsub("\\r\\n", "\r\n")
  mode = args[2] or "every"
  req = wrk.format("GET", "/")
end
function request()
  calls = calls + 1
  -- wrk parses the first request of thread 1 as HTTP to check the script (it is never
  -- sent): a PROXY line there would stop wrk
  if index == 1 and calls == 1 then return req end
  if preamble ~= "" and (mode == "every" or not sent) then
    sent = true
    return preamble .. req
  end
  return req
end
"""


def proxy_line(port: int) -> bytes:
    """The v1 line a proxy would send for a client 203.0.113.7:51234."""
    return f"PROXY TCP4 203.0.113.7 {HOST} 51234 {port}\r\n".encode()


# ---------------------------------------------------------------- the server (child process)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The minimal ASGI app: 200, a 2-byte body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(RESPONSE_BODY)).encode())]})
    await send({"type": "http.response.body", "body": RESPONSE_BODY})


def _collect_on_sigusr1() -> None:
    """On SIGUSR1: ``gc.collect()``, then print ``collected`` (the parent waits for it)."""
    import asyncio
    import gc

    def collect() -> None:
        gc.collect()
        print("collected", flush=True)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, collect)


def _header_timeout() -> Optional[float]:
    """The proxied servers' header timeout: the default (5 s), or none with
    ``--no-deadline`` (passed down in the environment)."""
    return None if os.environ.get("UVICORN_WRK_NO_DEADLINE") else 5.0


def serve(kind: str, port: int) -> None:
    """Run one server until SIGTERM/SIGINT; print ``ready`` once it listens; collect
    garbage on SIGUSR1."""
    import asyncio

    if kind.startswith("uvicorn"):
        import uvicorn

        options: dict[str, Any] = {}
        if kind == "uvicorn+proxy":
            import proxyproto.aio

            options["http"] = proxyproto.aio.uvicorn_http_protocol(
                trusted=TRUSTED, timeout=_header_timeout())
        if os.environ.get("UVICORN_WRK_NO_PROXY_HEADERS"):
            options["proxy_headers"] = False  # plain uvicorn without X-Forwarded-For
        config = uvicorn.Config(app, host=HOST, port=port, lifespan="off", access_log=False,
                                log_level="warning", loop="asyncio", **options)
        server = uvicorn.Server(config)

        async def run_uvicorn() -> None:
            task = asyncio.ensure_future(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            _collect_on_sigusr1()
            print("ready", flush=True)
            await task

        asyncio.run(run_uvicorn())
        return

    response = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
                b"connection: close\r\n\r\n" + RESPONSE_BODY)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run_asyncio() -> None:
        if kind == "asyncio+proxy":
            import proxyproto.aio

            server = await proxyproto.aio.start_server(handle, HOST, port, trusted=TRUSTED,
                                                       timeout=_header_timeout())
        else:
            server = await asyncio.start_server(handle, HOST, port)
            if os.environ.get("UVICORN_WRK_PLAIN_TIMER"):
                # one timer that never fires, as a server with any timeout of its own
                # has: asyncio then computes a select timeout on every blocking iteration
                asyncio.get_running_loop().call_later(24 * 3600, print)
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
        _collect_on_sigusr1()
        print("ready", flush=True)
        await stop
        server.close()
        await server.wait_closed()

    asyncio.run(run_asyncio())


# ---------------------------------------------------------------- the parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port




def _pin(core: Optional[int]) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


@contextlib.contextmanager
def running(kind: str, port: int, prefix: list[str], timeout: float = 120.0
            ) -> Iterator[subprocess.Popen[str]]:
    """A server child process, ready within ``timeout``; stopped (SIGTERM, then killed)
    on exit."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    # stderr to a file, not a pipe: a full pipe would block the server
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [*prefix, valgrind_python(), os.path.abspath(__file__), "--serve", kind, str(port)],
            stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else ""
            if line.strip() != "ready":
                errors.seek(0)
                raise RuntimeError(f"{kind} did not start: {errors.read()[-2000:]}")
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def one_connection(port: int, header: bytes) -> bytes:
    """Connect, send header + request in one write, read to EOF."""
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(header + CLOSE_REQUEST)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    reply = b"".join(chunks)
    if not reply.startswith(b"HTTP/1.1 200") or not reply.endswith(RESPONSE_BODY):
        raise RuntimeError(f"unexpected reply on port {port}: {reply[:80]!r}")
    return reply


def wrk(port: int, header: bytes, mode: str, seconds: float, threads: int, core: Optional[int],
        script: str) -> dict[str, float]:
    """One wrk run; requests per second and error counts."""
    command = [*_pin(core), "wrk", f"-t{threads}", f"-c{threads}", f"-d{max(1, round(seconds))}s",
               "-s", script]
    if mode == "close":
        command += ["-H", "Connection: close"]
    line = header.decode().replace("\r\n", "\\r\\n")
    command += [f"http://{HOST}:{port}/", "--", line, "every" if mode == "close" else "first"]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate: {out}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rate": float(rate.group(1)), "errors": errors}


def wrk_rounds(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved wrk rounds against plain and proxied uvicorn, both modes."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "proxy.lua")
        with open(script, "w") as out:
            out.write(WRK_LUA)
        ports = {"uvicorn": free_port(), "uvicorn+proxy": free_port()}
        with running("uvicorn", ports["uvicorn"], _pin(args.server_core)), \
             running("uvicorn+proxy", ports["uvicorn+proxy"], _pin(args.server_core)):
            for kind, port in ports.items():  # check both answer before timing them
                one_connection(port, proxy_line(port) if kind.endswith("proxy") else b"")
            for mode in ("keep-alive", "close"):
                rates: dict[str, list[float]] = {"uvicorn": [], "uvicorn+proxy": []}
                failed = 0
                for _ in range(args.rounds):
                    for kind, port in ports.items():
                        header = proxy_line(port) if kind.endswith("proxy") else b""
                        run = wrk(port, header, mode, args.seconds, args.connections,
                                  args.client_core, script)
                        failed += run["errors"] > 0
                        rates[kind].append(run["rate"])
                ratios = [p / q for p, q in zip(rates["uvicorn+proxy"], rates["uvicorn"])]
                results[mode] = {"rates": rates, "ratios": ratios, "failed_rounds": failed}
    return results




def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True,
                   capture_output=True, timeout=60)


def _collect(process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Have the server run ``gc.collect()`` and wait until it did."""
    assert process.stdout is not None
    process.send_signal(signal.SIGUSR1)
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if line.strip() != "collected":
        raise RuntimeError(f"the server did not collect garbage: {line!r}")


def _dump(pid: int, out: str, keep: Optional[str] = None) -> int:
    """Dump the counters since the last zeroing; return that part's total (and copy the
    dump into the folder ``keep``, if given)."""
    before = set(glob.glob(out + ".*"))
    _control(pid, "-d")
    new = sorted(set(glob.glob(out + ".*")) - before)
    if len(new) != 1:
        raise RuntimeError(f"callgrind wrote {new}, not one dump")
    if keep is not None:
        shutil.copy(new[0], os.path.join(keep, os.path.basename(out)))
    return callgrind_total(new[0])


class KeepAlive:
    """One keep-alive connection: the header (if any) goes in front of the first request."""

    def __init__(self, port: int, header: bytes) -> None:
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.header = header

    def request(self) -> None:
        """One request and its whole response (the body is ``RESPONSE_BODY``)."""
        self.sock.sendall(self.header + REQUEST)
        self.header = b""
        reply = b""
        while True:
            end = reply.find(b"\r\n\r\n")
            if end >= 0 and len(reply) >= end + 4 + len(RESPONSE_BODY):
                break
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError(f"connection closed on port {self.port}: {reply[:80]!r}")
            reply += data
        if not reply.startswith(b"HTTP/1.1 200") or not reply.endswith(RESPONSE_BODY):
            raise RuntimeError(f"unexpected reply on port {self.port}: {reply[:80]!r}")

    def close(self) -> None:
        self.sock.close()


def server_instructions(kind: str, connections: int, warmup: int, work: str,
                        keep: Optional[str] = None, collect: bool = True) -> float:
    """Instructions of the server process per connection, idle baseline subtracted.

    One server under callgrind: warm-up connections, zero the counters, N connections,
    dump; zero, stay idle as long as those N connections took, dump; the difference of
    the two dumps divided by N. A ``kind`` ending in ``/keep-alive`` (uvicorn only)
    counts N requests on one connection instead (per request). ``keep``: a folder where
    the busy dump is copied (for ``callgrind_annotate``). ``collect``: a ``gc.collect()``
    in the server before each dump (and before zeroing), so that each window pays for
    freeing the garbage its connections left in reference cycles (plain asyncio leaves
    each connection's transport in one; without it, the window that frees by reference
    counting pays what the other merely postpones).
    """
    port = free_port()
    server, _, mode = kind.partition("/")
    out = os.path.join(work, f"{kind.replace('+', '_').replace('/', '_')}.out")
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    header = proxy_line(port) if server.endswith("proxy") else b""
    with running(server, port, prefix) as process:
        if mode == "keep-alive":
            session = KeepAlive(port, header)
            step: Any = session.request
        else:
            def step() -> None:
                one_connection(port, header)
        for _ in range(warmup):
            step()
        if collect:
            _collect(process)
        _control(process.pid, "-z")
        started = time.monotonic()
        for _ in range(connections):
            step()
        elapsed = time.monotonic() - started
        if collect:
            _collect(process)
        busy = _dump(process.pid, out, keep)
        _control(process.pid, "-z")
        time.sleep(elapsed)
        if collect:
            _collect(process)
        idle = _dump(process.pid, out)
        if mode == "keep-alive":
            session.close()
    return (busy - idle) / connections


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"




def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="under 60 s (CI)")
    parser.add_argument("--rounds", type=int, default=7, help="wrk rounds per server and mode")
    parser.add_argument("--seconds", type=int, default=3, help="one wrk run, whole seconds (3)")
    parser.add_argument("--connections", type=int, default=4,
                        help="wrk threads = connections (4)")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--no-wrk", action="store_true", help="callgrind only")
    parser.add_argument("--no-callgrind", action="store_true", help="wrk rounds only")
    parser.add_argument("--callgrind-connections", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50, help="connections before counting")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="servers under callgrind at a time (default: the CPU count)")
    parser.add_argument("--keep", metavar="DIR",
                        help="copy the busy callgrind dumps there (for callgrind_annotate)")
    parser.add_argument("--no-collect", action="store_true",
                        help="callgrind: no gc.collect() before the dumps (the older method: "
                             "garbage left in reference cycles is not counted)")
    parser.add_argument("--no-deadline", action="store_true",
                        help="the proxied servers without a header timeout (what the "
                             "deadline costs)")
    parser.add_argument("--no-proxy-headers", action="store_true",
                        help="plain uvicorn with proxy_headers=False: without its "
                             "X-Forwarded-For middleware, which the PROXY layer leaves out")
    parser.add_argument("--plain-timer", action="store_true",
                        help="plain asyncio with one timer scheduled (that never fires), as "
                             "a server with any timeout has")
    parser.add_argument("--only", action="append", choices=CALLGRIND_KINDS,
                        help="callgrind: only these servers (repeatable)")
    parser.add_argument("--rst", action="store_true", help="reStructuredText tables")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_deadline:
        os.environ["UVICORN_WRK_NO_DEADLINE"] = "1"  # the servers are child processes
    if args.no_proxy_headers:
        os.environ["UVICORN_WRK_NO_PROXY_HEADERS"] = "1"
    if args.plain_timer:
        os.environ["UVICORN_WRK_PLAIN_TIMER"] = "1"
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if args.quick:
        args.rounds, args.seconds = 3, 1
        args.callgrind_connections, args.warmup = 100, 20
    if (os.cpu_count() or 1) < 2:
        args.server_core = args.client_core = None
    missing = [tool for tool, wanted in (("wrk", not args.no_wrk),
                                         ("valgrind", not args.no_callgrind))
               if wanted and shutil.which(tool) is None]
    if missing:
        print(f"not installed: {', '.join(missing)} (apt-get install {' '.join(missing)})",
              file=sys.stderr)
        return 1
    import uvicorn

    import proxyproto

    command = "python3 benchmarks/uvicorn_wrk.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print(f"proxyproto {proxyproto.__version__} ({proxyproto.IMPLEMENTATION}), uvicorn "
          f"{uvicorn.__version__}, Python {sys.version.split()[0]}; command: {command.strip()}")
    figures: dict[str, Any] = {"command": command.strip()}
    status = 0
    if not args.no_wrk:
        results = wrk_rounds(args)
        figures["wrk"] = results
        rows = []
        for mode, r in results.items():
            rows.append([mode, f"{statistics.median(r['rates']['uvicorn']):,.0f}",
                         f"{statistics.median(r['rates']['uvicorn+proxy']):,.0f}",
                         f"{statistics.median(r['ratios']):.3f}", spread(r["ratios"]),
                         str(r["failed_rounds"])])
            status |= r["failed_rounds"] > 0
        print(f"\nwrk, {args.rounds} interleaved rounds of {args.seconds:g} s, "
              f"-t{args.connections} -c{args.connections}, server on core "
              f"{args.server_core}, wrk on core {args.client_core}: requests per second")
        print(table(rows, ["mode", "uvicorn req/s", "uvicorn+proxy req/s",
                           "ratio (median)", "ratio min-max", "failed rounds"], args.rst))
    if not args.no_callgrind:
        # The servers run --jobs at a time: instruction counts do not depend on the load.
        kinds = [kind for kind in CALLGRIND_KINDS if not args.only or kind in args.only]
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
        with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(args.jobs) as pool:
            counted = pool.map(lambda kind: server_instructions(
                kind, args.callgrind_connections, args.warmup, work, args.keep,
                not args.no_collect), kinds)
            per = dict(zip(kinds, counted))
        figures["callgrind"] = per
        rows = []
        for plain, label in (("uvicorn", "uvicorn (httptools), new connection"),
                             ("asyncio", "bare asyncio, new connection"),
                             ("uvicorn/keep-alive", "uvicorn, request on a kept-alive one")):
            server, _, mode = plain.partition("/")
            proxied_kind = f"{server}+proxy" + (f"/{mode}" if mode else "")
            if plain not in per or proxied_kind not in per:
                continue
            proxied = per[proxied_kind]
            rows.append([label, f"{per[plain]:,.0f}", f"{proxied:,.0f}",
                         f"{100 * (proxied / per[plain] - 1):+.1f}%"])
        print(f"\ncallgrind, server process, instructions per new connection or per "
              f"keep-alive request ({args.callgrind_connections} after {args.warmup} of "
              "warm-up, idle baseline subtracted"
              + (", no gc.collect() before the dumps)" if args.no_collect else
                 ", garbage collected before each dump)"))
        print(table(rows, ["server", "plain", "+ PROXY layer", "difference"], args.rst))
        if args.only:
            print(", ".join(f"{kind}: {count:,.0f}" for kind, count in per.items()))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
