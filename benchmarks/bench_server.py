"""agentnb's web server against a bare sse-starlette endpoint on the same uvicorn process.

Run from the repository root (needs the ``server`` extra)::

    python benchmarks/bench_server.py            # the full set, about 80 s on 2 cores
    python benchmarks/bench_server.py --quick    # small sizes, a smoke test (~10 s)
    python benchmarks/bench_server.py --scan 100,200,400,800   # latency at several loads

One uvicorn process (started from this file with ``--serve``; uvloop and
httptools, as uvicorn picks by default; 127.0.0.1, a port the OS chose) serves
one FastAPI app: ``agentnb.server.create_app(agents=...)`` with the bench agents
below, plus a bare route added first to the same app's routes, ``POST
/bare/stream``: an ``sse_starlette.EventSourceResponse`` over an async generator
that yields ``ServerSentEvent(data=..., event=kind, id=f"{run_id}:{n}")``, the
data being ``json.dumps`` of the same dict agentnb builds (kind, run_id, seq,
path, ts, text), then a ``done`` event: byte for byte the same framing. Both
routes take the same body, ``{"agent": ..., "input": ...}``, and both produce
their events the same way: *burst* (as fast as possible, ``await
asyncio.sleep(0)`` after every 10th event), *paced* (``await asyncio.sleep(0.05)``
after each event: 20 events/s), *hold* (one event, then wait). Each text is 30 bytes.

What is measured (the goal in brackets):

1. Events per second over one SSE stream of 20,000 text events, 5 rounds
   alternating between the two routes [agentnb's best >= 0.9x the bare best: the
   machine's speed drifts, so best against best].
2. Latency under load: 200 concurrent streams of 20 events/s (5 s each) on
   loopback, 3 rounds alternating. Latency of an event = when it arrived at the
   client's socket - the event's own ``ts`` (``time.time()`` when the agent or
   the generator made it; the same clock). The arrival time is the kernel's
   receive timestamp of the read that carried the event (``SO_TIMESTAMPNS``), so
   the client's own scheduling is not counted; the latency to the client's read
   is printed too. The streams open at random moments (seeded) during the first
   second, so their events are spread evenly in time; only events made while all
   of them are open count (1.1 s to 5 s). p50, p99 and max of each round. A
   third route, ``POST /bare/queued``, runs the paced generator with its events
   made in a task of their own and handed over through an ``asyncio.Queue``: one
   task switch per event, the least any server needs whose runs outlive the
   request (the design agentnb grew from) [agentnb's p99 <= 1.1x its p99, best
   round against best round; and the bare p99 <= 50 ms, which checks the load is
   one the server holds]; agentnb against the bare generator is printed too
   (information: a generator writes in the step that makes the event, which no
   hand-off between tasks can match).
3. Server memory, each figure in a fresh server process after a small warm-up:
   RSS (``VmRSS``) with 200 open streams (each has sent one event, then waits)
   minus RSS before, / 200; and the RSS kept per finished run of 10,000 events
   (agentnb keeps finished runs for resuming) [reported].

The clients run in this process (uvloop when installed): an HTTP/1.1 request
written by hand and a minimal chunked-body decoder (``bytes.find`` over each
read), on asyncio streams in sections 1 and 3, and in section 2 on raw sockets
read with ``recvmsg`` in the loop's reader callback (no task switch between the
socket and the clock; one ``json.loads`` per event for its ``ts``). Their cyclic
GC is paused during each measured phase. Each phase prints what it cost: the CPU
share of the server, of the client and of every other process on the machine
(from /proc), the time the server was runnable but waited for a CPU, and the
server's cyclic-GC pauses (a ``gc.callbacks`` hook in the ``--serve`` process, read
from ``GET /bench/stats``). The machine is shared and noisy: a bad round says so.
The latency rounds run in the server after the throughput rounds, so agentnb's
finished runs are still kept there (for resuming), as in a server that has been
up for a while.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import agentnb  # noqa: E402
from harness.report import Table, met, ms, percentile, plural  # noqa: E402
from harness.web import ServerProcess, machine_busy, serve_child  # noqa: E402
from harness.wire import ChunkedBody, post_json, split_head  # noqa: E402

HOST = "127.0.0.1"
BARE = "/bare/stream"
QUEUED = "/bare/queued"
AGENTNB = "/api/stream"
ROUTES = {"agentnb": AGENTNB, "bare": BARE, "queued": QUEUED}

# The payload: 30-byte texts, "word 000 of a short sentence, " to "word 999 ...".
TEXTS = [f"word {i:03d} of a short sentence, " for i in range(1000)]
YIELD_EVERY = 10  # burst: `await asyncio.sleep(0)` after every 10th event, on both sides

Spec: TypeAlias = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Sizes:
    burst_events: int
    burst_rounds: int
    streams: int
    stream_events: int
    interval: float
    ramp: float
    latency_rounds: int
    idle_streams: int
    kept_runs: int
    kept_events: int
    memory_repeats: int


FULL = Sizes(
    burst_events=20_000,
    burst_rounds=5,
    streams=200,
    stream_events=100,
    interval=0.05,
    ramp=1.0,
    latency_rounds=3,
    idle_streams=200,
    kept_runs=4,
    kept_events=10_000,
    memory_repeats=2,
)
QUICK = Sizes(
    burst_events=10_000,
    burst_rounds=2,
    streams=50,
    stream_events=24,
    interval=0.05,
    ramp=0.3,
    latency_rounds=1,
    idle_streams=50,
    kept_runs=1,
    kept_events=10_000,
    memory_repeats=1,
)


# -- the server side (the --serve child process) ------------------------------------


async def bench_burst(spec: Spec) -> None:
    """Emits spec["events"] texts as fast as possible, yielding every YIELD_EVERY."""
    emit = agentnb.emit
    sleep = asyncio.sleep
    every = spec["yield_every"]
    for i in range(spec["events"]):
        emit(TEXTS[i % 1000])
        if i % every == every - 1:
            await sleep(0)


async def bench_paced(spec: Spec) -> None:
    """Emits spec["events"] texts, spec["interval"] seconds apart."""
    emit = agentnb.emit
    interval = spec["interval"]
    for i in range(spec["events"]):
        emit(TEXTS[i % 1000])
        await asyncio.sleep(interval)


async def bench_hold(spec: Spec) -> None:
    """Emits one text, then waits spec["seconds"] (the client closes the stream first)."""
    agentnb.emit(TEXTS[0])
    await asyncio.sleep(spec["seconds"])


BENCH_AGENTS = {"bench_burst": bench_burst, "bench_paced": bench_paced, "bench_hold": bench_hold}


class GcPauses:
    """The server's cyclic-GC pauses since the last ``take()`` (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._count = [0, 0, 0]
        self._longest = [0.0, 0.0, 0.0]
        self._total = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        gen = info["generation"]
        self._count[gen] += 1
        self._longest[gen] = max(self._longest[gen], took)
        self._total += took

    def take(self) -> dict[str, Any]:
        out = {"count": self._count, "longest": self._longest, "total": self._total}
        self._count = [0, 0, 0]
        self._longest = [0.0, 0.0, 0.0]
        self._total = 0.0
        return out


GC_PAUSES = GcPauses()


def build_app() -> tuple[Any, str]:
    """agentnb's app with the bare route added (or the bare route alone); and a note why not."""
    from fastapi import FastAPI
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    def frame(run: tuple[str, list[str]], seq: int, kind: str, payload: Spec) -> ServerSentEvent:
        run_id, path = run
        event: Spec = {"kind": kind, "run_id": run_id, "seq": seq, "path": path}
        event["ts"] = time.time()
        event.update(payload)
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        return ServerSentEvent(data=data, event=kind, id=f"{run_id}:{seq}")

    async def burst(run: tuple[str, list[str]], spec: Spec) -> AsyncIterator[ServerSentEvent]:
        sleep = asyncio.sleep
        every = spec["yield_every"]
        n = spec["events"]
        for i in range(n):
            yield frame(run, i, "text", {"text": TEXTS[i % 1000]})
            if i % every == every - 1:
                await sleep(0)
        yield frame(run, n, "done", {"result": None})

    async def paced(run: tuple[str, list[str]], spec: Spec) -> AsyncIterator[ServerSentEvent]:
        interval = spec["interval"]
        n = spec["events"]
        for i in range(n):
            yield frame(run, i, "text", {"text": TEXTS[i % 1000]})
            await asyncio.sleep(interval)
        yield frame(run, n, "done", {"result": None})

    async def hold(run: tuple[str, list[str]], spec: Spec) -> AsyncIterator[ServerSentEvent]:
        yield frame(run, 0, "text", {"text": TEXTS[0]})
        await asyncio.sleep(spec["seconds"])
        yield frame(run, 1, "done", {"result": None})

    async def queued_paced(
        run: tuple[str, list[str]], spec: Spec
    ) -> AsyncIterator[ServerSentEvent]:
        # As paced, but the events are made in a task of their own and handed over
        # through an asyncio.Queue: one task switch per event, as any server whose
        # runs outlive a request needs.
        queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()

        async def produce() -> None:
            interval = spec["interval"]
            n = spec["events"]
            for i in range(n):
                queue.put_nowait(frame(run, i, "text", {"text": TEXTS[i % 1000]}))
                await asyncio.sleep(interval)
            queue.put_nowait(frame(run, n, "done", {"result": None}))
            queue.put_nowait(None)

        producer = asyncio.create_task(produce())
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            producer.cancel()

    routes = {
        BARE: {"bench_burst": burst, "bench_paced": paced, "bench_hold": hold},
        QUEUED: {"bench_paced": queued_paced},
    }

    async def bare_stream(request: Request) -> EventSourceResponse:
        body = await request.json()
        run_id = os.urandom(8).hex()
        # The same stamps as agentnb's: a 16-hex-digit run id, the path [agent name].
        make = routes[request.url.path][body["agent"]]
        events = make((run_id, [body["agent"]]), body["input"])
        return EventSourceResponse(events, headers={"X-Agentnb-Run-Id": run_id})

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(GC_PAUSES.take())

    note = ""
    try:
        from agentnb.server import create_app
    except ImportError as exc:
        app = FastAPI()
        note = f"agentnb.server not importable: {exc}"
    else:
        app = create_app(agents=BENCH_AGENTS, allowed_hosts=["*"])  # its clients send Host: bench
    # First in the routing table, so no catch-all route of the app can shadow them.
    app.router.routes[0:0] = [
        Route(BARE, bare_stream, methods=["POST"]),
        Route(QUEUED, bare_stream, methods=["POST"]),
        Route("/bench/ready", ready, methods=["GET"]),
        Route("/bench/stats", stats, methods=["GET"]),
    ]
    return app, note


def serve(loop: str) -> None:
    """The child process: uvicorn on a free port (it says which), until terminated."""
    gc.callbacks.append(GC_PAUSES)
    app, note = build_app()
    serve_child(app, {"note": note}, loop=loop)


# -- the server process, seen from the benchmark ---------------------------------------


async def start_server(loop: str) -> ServerProcess:
    """A fresh server process (``--serve``), once it answers."""
    server = ServerProcess([str(HERE), "--serve", "--loop", loop])
    try:
        await server.get("/bench/ready")
    except BaseException:
        server.close()
        raise
    return server


def has_agentnb(server: ServerProcess) -> bool:
    return not server.hello["note"]


@dataclass(frozen=True)
class Usage:
    """What a measured phase cost, as shares of one core over its wall time."""

    wall: float
    server_cpu: float
    server_waited: float  # runnable but not running (the machine's other load)
    client_cpu: float
    others_cpu: float  # every other process on the machine
    gc_full: int  # the server's full (generation 2) collections
    gc_longest: float  # its longest GC pause, seconds

    def describe(self) -> str:
        return (
            f"CPU: server {self.server_cpu:.0%} (waited {self.server_waited:.0%}), client "
            f"{self.client_cpu:.0%}, others {self.others_cpu:.0%}; server GC: {self.gc_full} "
            f"full, longest pause {ms(self.gc_longest)}"
        )


async def measured(server: ServerProcess, fn: Callable[[], Awaitable[_T]]) -> tuple[_T, Usage]:
    """Run *fn* (the client's cyclic GC paused); its result and what the phase cost."""
    await server.get("/bench/stats")  # resets the server's GC record
    gc.collect()
    gc.disable()
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        srv0, waited0, busy0 = server.cpu(), server.waited(), machine_busy()
        result = await fn()
        wall = time.perf_counter() - wall0
        client = time.process_time() - cpu0
        srv = server.cpu() - srv0
        waited = server.waited() - waited0
        others = machine_busy() - busy0 - client - srv
    finally:
        gc.enable()
    pauses = json.loads(await server.get("/bench/stats"))
    usage = Usage(
        wall,
        srv / wall,
        waited / wall,
        client / wall,
        max(others, 0.0) / wall,
        pauses["count"][2],
        max(pauses["longest"]),
    )
    return result, usage


# -- the client: raw HTTP/1.1 over asyncio streams -------------------------------------


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    body: ChunkedBody = field(default_factory=ChunkedBody)

    async def read(self) -> bytes:
        data = await self.reader.read(262_144)
        if not data:
            raise RuntimeError("the server closed the connection before the end of the stream")
        return data

    def close(self) -> None:
        self.writer.close()


def _request(port: int, route: str, agent: str, spec: Spec) -> bytes:
    """The start request, ``POST route`` with ``{"agent": agent, "input": spec}``."""
    return post_json(route, f"{HOST}:{port}", {"agent": agent, "input": spec})


def _check_head(head: bytes, what: str) -> None:
    status, headers, _ = split_head(head)
    if status != 200:
        raise RuntimeError(f"{what}: {head[:600]!r}")
    if headers.get("transfer-encoding") != "chunked":
        raise RuntimeError(f"{what}: expected a chunked response, got {head!r}")


async def open_stream(port: int, route: str, agent: str, spec: Spec) -> Stream:
    """POST the start request; return the stream once the 200 response's head is read."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.write(_request(port, route, agent, spec))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            head += await asyncio.wait_for(reader.read(2000), 5)
        _check_head(head, f"POST {route} {agent}")
    except BaseException:
        writer.close()
        raise
    return Stream(reader, writer)


# -- 1. throughput over one stream -------------------------------------------------------


async def read_burst(port: int, route: str, events: int) -> int:
    """Read one burst stream to its end; return the text events counted (checks done)."""
    spec = {"events": events, "yield_every": YIELD_EVERY}
    stream = await open_stream(port, route, "bench_burst", spec)
    texts = dones = 0
    body = stream.body
    try:
        while not body.finished:
            complete = body.events(await stream.read())
            texts += complete.count(b"event: text\r\n")
            dones += complete.count(b"event: done\r\n")
    finally:
        stream.close()
    if texts != events or dones != 1:
        raise RuntimeError(f"{route}: {texts} text and {dones} done events, expected {events}, 1")
    return texts


async def throughput(
    server: ServerProcess, sides: list[str], sizes: Sizes
) -> dict[str, list[Usage]]:
    """Rounds of one burst stream per side, alternating; each round's usage (wall included)."""
    out: dict[str, list[Usage]] = {side: [] for side in sides}
    n = sizes.burst_events
    for side in sides:  # warm-up
        await read_burst(server.port, ROUTES[side], n)
    for r in range(sizes.burst_rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            route = ROUTES[side]

            async def one(route: str = route) -> int:
                return await read_burst(server.port, route, n)

            _, usage = await measured(server, one)
            out[side].append(usage)
    return out


# -- 2. latency under load -------------------------------------------------------------


# Linux (x86-64, arm64): receive timestamps on a socket, as a struct timespec per read.
SO_TIMESTAMPNS = SCM_TIMESTAMPNS = 35


@dataclass
class Latencies:
    """Latency of each event in the window: to its arrival (kernel stamp), to the client's read."""

    arrived: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)


@dataclass
class LatencyRound:
    side: str
    streams: int
    latencies: Latencies  # seconds, of the events in the window
    events: int  # every text event received
    usage: Usage

    def q(self, p: float) -> float:
        return percentile(self.latencies.arrived, p)

    def describe(self) -> str:
        arrived, read = self.latencies.arrived, self.latencies.read
        return (
            f"p50 {ms(self.q(50)):>8}  p99 {ms(self.q(99)):>8}  max {ms(max(arrived)):>8}"
            f"  (read: p50 {ms(percentile(read, 50))}, p99 {ms(percentile(read, 99))}; "
            f"{len(arrived):,} events)\n      {self.usage.describe()}"
        )


class TimedReader:
    """Reads one SSE response off a raw socket, in the event loop's reader callback.

    Each read takes the kernel's receive timestamp (``SO_TIMESTAMPNS``: when the
    bytes reached this socket) and the time of the read; every text event in it
    whose ``ts`` is in *window* adds its latency to *out*. No task switch between
    the socket and the clock: the callback parses at once.
    """

    def __init__(self, sock: socket.socket, window: tuple[float, float], out: Latencies) -> None:
        self.sock = sock
        self.window = window
        self.out = out
        self.head: bytes | None = b""  # the response head, until it is complete
        self.body = ChunkedBody()
        self.texts = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_readable(self) -> None:
        try:
            self._read()
        except Exception as exc:  # a reader callback's exception would only be logged
            if not self.done.done():
                self.done.set_exception(exc)

    def _read(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(262_144, 64)
        except (BlockingIOError, InterruptedError):
            return
        now = time.time()
        if not data:
            raise RuntimeError("the server closed the connection before the end of the stream")
        arrived = now
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                arrived = seconds + nanoseconds / 1e9
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[: end + 4], self.head[end + 4 :]
            self.head = None
            _check_head(head, "the paced stream")
        lo, hi = self.window
        out = self.out
        for block in self.body.events(data).split(b"\r\n\r\n"):
            if b"event: text\r\n" not in block:
                continue
            start = block.index(b"data: ") + 6
            end = block.find(b"\r\n", start)
            ts = json.loads(block[start:] if end < 0 else block[start:end])["ts"]
            self.texts += 1
            if lo <= ts < hi:
                out.arrived.append(arrived - ts)
                out.read.append(now - ts)
        if self.body.finished and not self.done.done():
            self.done.set_result(self.texts)


async def paced_stream(
    port: int, route: str, spec: Spec, delay: float, window: tuple[float, float], out: Latencies
) -> int:
    """Open a paced stream after *delay* s; note the latency of each text event in *window*."""
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, _request(port, route, "bench_paced", spec))
        reader = TimedReader(sock, window, out)
        loop.add_reader(sock.fileno(), reader.on_readable)
        try:
            return await reader.done
        finally:
            loop.remove_reader(sock.fileno())


async def latency_round(
    server: ServerProcess, side: str, streams: int, sizes: Sizes, seed: int
) -> LatencyRound:
    rng = random.Random(seed)
    delays = sorted(rng.uniform(0, sizes.ramp) for _ in range(streams))
    spec = {"events": sizes.stream_events, "interval": sizes.interval}
    latencies = Latencies()

    async def load() -> list[int]:
        t0 = time.time()
        window = (t0 + sizes.ramp + 0.1, t0 + sizes.stream_events * sizes.interval)
        tasks = [
            paced_stream(server.port, ROUTES[side], spec, d, window, latencies) for d in delays
        ]
        return await asyncio.gather(*tasks)

    counts, usage = await measured(server, load)
    short = [c for c in counts if c != sizes.stream_events]
    if short:
        raise RuntimeError(f"{side}: {len(short)} streams got too few events: {short[:5]}")
    if not latencies.arrived:
        raise RuntimeError(f"{side}: no event fell in the measuring window")
    return LatencyRound(side, streams, latencies, sum(counts), usage)


async def latency(
    server: ServerProcess, sides: list[str], streams: int, sizes: Sizes
) -> dict[str, list[LatencyRound]]:
    out: dict[str, list[LatencyRound]] = {side: [] for side in sides}
    for r in range(sizes.latency_rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            one = await latency_round(server, side, streams, sizes, seed=r)
            out[side].append(one)
            print(f"    round {r + 1} {side:<8} {one.describe()}", flush=True)
    return out


# -- 3. memory ----------------------------------------------------------------------------


async def open_held(port: int, route: str, count: int) -> list[Stream]:
    """Open *count* hold streams at once; return them once each has delivered its first event."""

    async def one() -> Stream:
        stream = await open_stream(port, route, "bench_hold", {"seconds": 600})
        try:
            while b"event: text\r\n" not in stream.body.events(await stream.read()):
                pass
        except BaseException:
            stream.close()
            raise
        return stream

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    streams = [s for s in results if isinstance(s, Stream)]
    errors = [e for e in results if isinstance(e, BaseException)]
    if errors:
        for s in streams:
            s.close()
        raise errors[0]
    return streams


async def start_servers(count: int, loop: str) -> list[ServerProcess]:
    """*count* fresh servers, started side by side (their start-ups overlap)."""
    results = await asyncio.gather(
        *(start_server(loop) for _ in range(count)), return_exceptions=True
    )
    servers = [r for r in results if isinstance(r, ServerProcess)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for server in servers:
            server.close()
        raise errors[0]
    return servers


async def memory_per_stream(server: ServerProcess, side: str, count: int) -> tuple[float, int]:
    """RSS growth per open stream in a fresh *server*, and its RSS before."""
    route = ROUTES[side]
    for s in await open_held(server.port, route, 10):  # warm-up
        s.close()
    await asyncio.sleep(0.3)
    before = server.rss()
    streams = await open_held(server.port, route, count)
    await asyncio.sleep(0.3)
    after = server.rss()
    for s in streams:
        s.close()
    await asyncio.sleep(0.3)  # let the server see the disconnects before it is stopped
    return (after - before) / count, before


async def memory_kept(server: ServerProcess, side: str, runs: int, events: int) -> float:
    """RSS growth per finished burst run of *events* in a fresh *server* (what outlives a run)."""
    route = ROUTES[side]
    await read_burst(server.port, route, 100)  # warm-up
    await asyncio.sleep(0.2)
    before = server.rss()
    for _ in range(runs):
        await read_burst(server.port, route, events)
    await asyncio.sleep(0.2)
    return (server.rss() - before) / runs


async def memory(
    sides: list[str], sizes: Sizes, loop: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Best of the repeats, per side: RSS per open stream, RSS kept per finished run."""
    open_rss: dict[str, float] = {}
    kept_rss: dict[str, float] = {}
    fresh = await start_servers(2 * len(sides) * sizes.memory_repeats, loop)
    unused = iter(fresh)
    try:
        for r in range(sizes.memory_repeats):
            for side in sides if r % 2 == 0 else sides[::-1]:
                server = next(unused)
                per, before = await memory_per_stream(server, side, sizes.idle_streams)
                server.close()  # closing twice is harmless (see the finally clause)
                server = next(unused)
                kept = await memory_kept(server, side, sizes.kept_runs, sizes.kept_events)
                server.close()
                open_rss[side] = min(open_rss.get(side, per), per)
                kept_rss[side] = min(kept_rss.get(side, kept), kept)
                print(
                    f"    {side:<8} {_kib(per):>10} per open stream, {_kib(kept):>10} kept per "
                    f"finished run (server RSS at start {before >> 20} MiB)"
                )
    finally:
        for server in fresh:
            server.close()
    return open_rss, kept_rss


# -- report --------------------------------------------------------------------------------


Row: TypeAlias = tuple[str, str, str, str, str, str]  # a line of the summary table


def _kib(size: float) -> str:
    return f"{size / 1024:,.1f} KiB"


def print_table(rows: list[Row]) -> None:
    table = Table("measure", "agentnb", "bare sse-starlette", "ratio", "goal", "met")
    table.extend(rows)
    table.print()


def report_throughput(rounds: dict[str, list[Usage]], sizes: Sizes) -> list[Row]:
    n = sizes.burst_events
    rates = {side: [n / u.wall for u in us] for side, us in rounds.items()}
    for side, us in rounds.items():
        r = rates[side]
        middle = sorted(us, key=lambda u: u.wall)[len(us) // 2]
        print(
            f"    {side:<8} best {max(r):>9,.0f}/s   median {statistics.median(r):>9,.0f}/s"
            f"   (median round: {middle.describe()})"
        )
    if "agentnb" not in rates:
        return []
    a, b = rates["agentnb"], rates["bare"]
    best = max(a) / max(b)
    median = statistics.median(a) / statistics.median(b)
    print(f"    ratio    best/best {best:.2f}x   median/median {median:.2f}x")
    return [
        (
            "events/s, one stream",
            f"{max(a):,.0f}/s",
            f"{max(b):,.0f}/s",
            f"{best:.2f}x ({median:.2f}x median)",
            ">= 0.9x (best)",
            "yes" if best >= 0.9 else "no",
        )
    ]


def report_latency(rounds: dict[str, list[LatencyRound]], streams: int) -> list[Row]:
    def pooled(side: str, read: bool = False) -> list[float]:
        return [
            x for r in rounds[side] for x in (r.latencies.read if read else r.latencies.arrived)
        ]

    def p99s(side: str) -> list[float]:
        return [r.q(99) for r in rounds[side]]

    print("    all rounds pooled (to arrival; in brackets, to the client's read):")
    for side, rs in rounds.items():
        values, read = pooled(side), pooled(side, read=True)
        print(
            f"    {side:<8} p50 {ms(percentile(values, 50)):>8} ({ms(percentile(read, 50))})"
            f"  p99 {ms(percentile(values, 99)):>8} ({ms(percentile(read, 99))})"
            f"  max {ms(max(values)):>8}   p99 by round: " + ", ".join(ms(r.q(99)) for r in rs)
        )
    rows = []
    bare = p99s("bare")
    if "agentnb" in rounds:
        ours = p99s("agentnb")
        best = min(ours) / min(bare)
        median = statistics.median(ours) / statistics.median(bare)
        p50s = [statistics.median(r.q(50) for r in rounds[s]) for s in ("agentnb", "bare")]
        queued = p99s("queued")
        print(
            f"    p99 agentnb/bare     best/best {best:.2f}x   median/median {median:.2f}x\n"
            f"    p99 agentnb/queued   best/best {min(ours) / min(queued):.2f}x   "
            f"median/median {statistics.median(ours) / statistics.median(queued):.2f}x"
        )
        rows += [
            (
                f"p50 latency, {streams} streams",
                ms(p50s[0]),
                ms(p50s[1]),
                f"{p50s[0] / p50s[1]:.2f}x, +{ms(p50s[0] - p50s[1])} (median rounds)",
                "reported",
                "-",
            ),
            (
                f"p99 latency, {streams} streams, vs bare fed by a queue",
                f"{ms(min(ours))} best",
                f"{ms(min(queued))} best",
                f"{min(ours) / min(queued):.2f}x "
                f"({statistics.median(ours) / statistics.median(queued):.2f}x median)",
                "<= 1.1x",
                met(
                    statistics.median(ours) <= 1.1 * statistics.median(queued),
                    min(ours) <= 1.1 * min(queued),
                ),
            ),
            (
                "  the same, vs the bare generator",
                f"{ms(min(ours))} best",
                f"{ms(min(bare))} best",
                f"{best:.2f}x, +{ms(min(ours) - min(bare))} ({median:.2f}x median)",
                "(info)",
                "-",
            ),
        ]
    rows.append(
        (
            f"bare p99 holds, {streams} streams",
            "",
            f"{ms(statistics.median(bare))} median",
            "",
            "<= 50 ms",
            met(statistics.median(bare) <= 0.05, min(bare) <= 0.05),
        )
    )
    return rows


# -- main ------------------------------------------------------------------------------------


async def run_all(sizes: Sizes, streams: int, loop: str) -> tuple[list[Row], str]:
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        server = await start_server(loop)
        stack.callback(server.close)
        note = server.hello["note"]
        sides = ["agentnb", "bare"] if has_agentnb(server) else ["bare"]
        if note:
            print(f"agentnb side not measured: {note}\n")

        print(
            f"1. events/s over one SSE stream ({sizes.burst_events:,} text events, "
            f"{plural(sizes.burst_rounds, 'round')} alternating, after one warm-up each)"
        )
        rows += report_throughput(await throughput(server, sides, sizes), sizes)

        print()
        print(
            f"2. latency under load: {streams} streams x {1 / sizes.interval:.0f} events/s "
            f"({sizes.stream_events} events each), opened over {sizes.ramp:g} s; "
            f"{plural(sizes.latency_rounds, 'round')} alternating"
        )
        rows += report_latency(await latency(server, [*sides, "queued"], streams, sizes), streams)

    print()
    count = sizes.idle_streams
    print(
        f"3. server memory (fresh server each time, best of {sizes.memory_repeats}): "
        f"{count} open streams that sent one event and wait; then what "
        f"{plural(sizes.kept_runs, 'finished run')} of {sizes.kept_events:,} events keep"
    )
    open_rss, kept_rss = await memory(sides, sizes, loop)
    if "agentnb" in open_rss:
        rows.append(
            (
                "RSS per open stream",
                _kib(open_rss["agentnb"]),
                _kib(open_rss["bare"]),
                f"{open_rss['agentnb'] / open_rss['bare']:.2f}x",
                "report",
                "-",
            )
        )
        rows.append(
            (
                f"RSS kept per finished run of {sizes.kept_events:,}",
                _kib(kept_rss["agentnb"]),
                _kib(kept_rss["bare"]),
                "",
                "report",
                "-",
            )
        )
    return rows, note


async def scan(loads: list[int], sizes: Sizes, loop: str) -> None:
    server = await start_server(loop)
    try:
        sides = ["bare", "queued", "agentnb"] if has_agentnb(server) else ["bare", "queued"]
        print(
            f"p50/p99 latency by load ({1 / sizes.interval:.0f} events/s per stream, "
            f"{sizes.stream_events} events each; one round per side)"
        )
        for streams in loads:
            for side in sides:
                one = await latency_round(server, side, streams, sizes, seed=streams)
                print(f"    {streams:>5} streams {side:<8} {one.describe()}", flush=True)
    finally:
        server.close()


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--streams", type=int, help="concurrent streams in section 2")
    parser.add_argument(
        "--scan", help="only latency at these loads, e.g. 200,400,800 (streams, comma-separated)"
    )
    parser.add_argument(
        "--loop", default="auto", help="the server's event loop: auto (uvloop), asyncio"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.loop)
        return
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"agentnb {agentnb.__version__}, Python {sys.version.split()[0]}, {sys.platform}")
    print()
    if args.scan:
        _run(scan([int(s) for s in args.scan.split(",")], sizes, args.loop))
        return
    streams = args.streams or sizes.streams
    rows, note = _run(run_all(sizes, streams, args.loop))

    print()
    print("Summary (bare sse-starlette: the same events from a plain generator, same uvicorn)")
    if note:
        print(f"  agentnb side not measured: {note}")
    print_table(rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
