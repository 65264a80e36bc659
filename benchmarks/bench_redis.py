"""What the Redis Streams store costs over redis-py used bare, on the same redis-server.

Run from the repository root (needs ``redis-server``, the ``redis`` and ``server`` extras)::

    python benchmarks/bench_redis.py            # the full set, about 2.5 minutes on 2 cores
    python benchmarks/bench_redis.py --quick    # small sizes, a smoke test (~20 s)
    python benchmarks/bench_redis.py --url redis://127.0.0.1:6379/0   # a Redis already running

What is measured (the goal in brackets), on a ``redis-server`` started for the run:

1. Events per second through the store: a producer appends 300-byte frames, 100
   per loop turn, to a ``RunWriter`` (the last one terminal) while a reader reads
   them live with ``RedisStore.read``; a round ends when the reader has them all.
   The baseline is bare redis-py doing the same the best plain way: the producer
   pipelines the 100 ``XADD`` of each turn (``MAXLEN ~``) and awaits them, the
   reader loops on ``XREAD BLOCK`` from the last id [>= 0.8x the baseline's rate].
   A second baseline, shown for scale, awaits one ``XADD`` per event.
2. Emit to client across processes, at 1,000 events/s: the latency of each event
   from the agent's ``emit`` to a client in another process, against a bare ``XADD``
   to ``XREAD BLOCK`` [p99 <= 1.5x the baseline's]. The agent runs in one uvicorn
   process (``create_app(store=RedisStore(url))``, this file with ``--serve``:
   process A); the client, this process, reads the run with agentnb's reader of the
   store (``RedisStore.read``, what ``agentnb.redis.watch`` and every server process
   use). The client starts the run on A and drops that connection
   (``on_disconnect: continue``); the agent first asks a question, which the client
   answers once its reader waits in ``XREAD BLOCK``. The agent emits texts at
   1,000/s on an absolute schedule (a loop turn at least between two, as a streamed
   reply has), each carrying ``time.time_ns()`` taken just before its ``emit``; the
   client takes ``time.time_ns()`` when a read returns (one host, one clock). The
   baseline has the same two processes: a writer (this file with ``--xadd``) awaits
   one ``XADD`` per event on the same schedule, each entry the same JSON an agentnb
   frame carries (its time included), and a reader (this process) loops on ``XREAD
   BLOCK`` from the last id, parses each entry's JSON and takes the same clock.
   Then the same with a server in between, as a browser or an HTTP client has it
   (information): the run read through a second agentnb server process (B, ``GET
   /api/runs/{id}/events``, read here with a hand-written HTTP/1.1 SSE reader),
   against a bare relay (this file with ``--relay``: ``XREAD BLOCK``, each entry
   written to a TCP connection to this process as it comes) between the writer
   and the client. All processes use uvloop when it is installed (uvicorn's
   default). Rounds are short (1,000 events) and many (24 per path), the paths
   taking turns: a machine whose load drifts over seconds (a shared VM's does)
   weighs on every path alike. p50 and p99 of every round; the ratios compare the
   median of the rounds' percentiles (and the best round with the best); the
   percentiles of all rounds' events pooled are printed too. The CPU each process
   used per 1,000 events (median of the rounds) is printed, and what every other
   process on the machine used: a busy machine shows in the tail first.
3. Emit cost in the agent: an agent emits 50,000 texts of 30 bytes (yielding to
   the loop every 100, as a streamed model reply does) in a run served by an app
   in this process (``RunHub.start`` of ``create_app``'s hub, the app's lifespan
   entered), with ``store=RedisStore(url)`` against the same app without a store.
   A round runs from the start to the run's end with its frames in Redis
   (``RunWriter.flush``); events/s of that [>= 0.5x the in-memory rate: at most
   2x the cost]. The time to the run's end alone (before the flush) is printed too.
4. Memory per run in Redis: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of a finished
   served run's stream plus its record, for runs of 100, 1,000 and 5,000 texts
   (section 3's agent); and of a stream of 300-byte frames written directly, per frame.

Subject and baseline alternate round by round (the order flips each round; section 2
rotates its four paths), each round starts after ``gc.collect()``; the best and the
median round are printed. Nothing here asserts an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import redis.asyncio as aioredis  # noqa: E402

import agentnb  # noqa: E402
from agentnb.redis import RedisStore  # noqa: E402
from agentnb.server import create_app  # noqa: E402
from agentnb.server._wire import sse_data  # noqa: E402
from harness.redis import redis_server  # noqa: E402
from harness.report import Table, met, ms, percentile  # noqa: E402
from harness.web import ServerProcess, machine_busy, serve_child  # noqa: E402
from harness.wire import ChunkedBody, post_json, request, split_head  # noqa: E402

_T = TypeVar("_T")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Sizes:
    events: int
    rounds: int
    naive_events: int
    latency_events: int
    latency_rounds: int
    emit_events: int
    emit_rounds: int


FULL = Sizes(
    events=50_000,
    rounds=7,
    naive_events=10_000,
    latency_events=1_000,
    latency_rounds=24,
    emit_events=50_000,
    emit_rounds=7,
)
QUICK = Sizes(
    events=5_000,
    rounds=3,
    naive_events=1_000,
    latency_events=1_000,
    latency_rounds=2,
    emit_events=5_000,
    emit_rounds=3,
)
PER_TURN = 100  # frames a producer appends per loop turn (an agent streaming tokens)
FRAME_SIZE = 300  # bytes: an SSE frame of a text chunk, about
KEEP = 100_000  # entries a stream keeps (more than a round writes: no trimming measured)
RATE = 1000.0  # events per second of the latency rounds
TEXTS = [f"word {i:03d} of a short sentence, " for i in range(1000)]  # 30 bytes each
MEMORY_RUNS = (100, 1_000, 5_000)  # texts per run measured in Redis
RECORD_PREFIX = "agentnb:record:"  # a run's record (agentnb.redis._control)
ENDS = (b"done", b"error", b"cancelled")


def frames(n: int) -> list[bytes]:
    return [f"id: bench:{i}\r\n".encode().ljust(FRAME_SIZE - 2, b"x") + b"\r\n" for i in range(n)]


@dataclass
class Compared:
    """Seconds per round of a subject and its baseline, measured alternately."""

    subject: list[float]
    baseline: list[float]

    def rate_ratio_median(self) -> float:
        """The subject's rate over the baseline's (above 1: the subject is faster)."""
        return statistics.median(self.baseline) / statistics.median(self.subject)

    def rate_ratio_best(self) -> float:
        return min(self.baseline) / min(self.subject)


async def alternate(
    rounds: int, subject: Callable[[], Awaitable[None]], baseline: Callable[[], Awaitable[None]]
) -> Compared:
    out = Compared([], [])
    await subject()  # warm both paths (connections, caches) untimed
    await baseline()
    for i in range(rounds):
        order = [(subject, out.subject), (baseline, out.baseline)]
        if i % 2:
            order.reverse()
        for fn, times in order:
            gc.collect()
            start = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - start)
    return out


# -- 1. events per second through the store ---------------------------------------------


async def through_store(store: RedisStore, data: list[bytes]) -> None:
    """The frames through a RunWriter, read live by the store's reader."""
    run_id = uuid.uuid4().hex
    writer = store.writer(run_id)
    writer.append(data[0])
    await writer.flush()  # the stream exists before its reader starts

    async def read() -> int:
        count = 0
        async for batch in store.read(run_id):
            count += len(batch)
        return count

    reader = asyncio.create_task(read())
    last = len(data) - 1
    for i in range(1, len(data)):
        writer.append(data[i], last=i == last)
        if i % PER_TURN == 0:
            await asyncio.sleep(0)
    await writer.aclose()
    count = await reader
    assert count == len(data), count
    await store.delete(run_id)


async def through_redis_py(client: aioredis.Redis, data: list[bytes], *, pipelined: bool) -> None:
    """The frames with bare redis-py: XADD (pipelined per turn, or awaited one by one),
    read live by an XREAD BLOCK loop from the last id."""
    key = "bench:" + uuid.uuid4().hex
    await client.xadd(key, {"frame": data[0]})

    async def read() -> int:
        last: bytes | str = "0-0"
        count = 0
        while True:
            got = cast(list[Any], await client.xread({key: last}, count=1000, block=1000))
            if not got:
                continue
            entries = got[0][1]
            count += len(entries)
            last = entries[-1][0]
            if b"end" in entries[-1][1]:
                return count

    reader = asyncio.create_task(read())
    last = len(data) - 1
    if pipelined:
        for start in range(1, len(data), PER_TURN):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + PER_TURN, len(data))):
                fields = {"frame": data[i], "end": b"1"} if i == last else {"frame": data[i]}
                pipe.xadd(key, cast(Any, fields), maxlen=KEEP, approximate=True)
            await pipe.execute()
    else:
        for i in range(1, len(data)):
            fields = {"frame": data[i], "end": b"1"} if i == last else {"frame": data[i]}
            await client.xadd(key, cast(Any, fields), maxlen=KEEP, approximate=True)
    count = await reader
    assert count == len(data), count
    await client.delete(key)


# -- the agents (served in this process, and by the --serve children) ----------------------


async def wait_turn(start: float, i: int, rate: float) -> None:
    """Sleep until event *i* of a schedule of *rate* events/s begun at *start* is due; a
    turn of the loop at least (behind schedule, after a late timer, events are not sent
    in one burst: each is emitted on its own, as the schedule means)."""
    await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0))


async def clocked(spec: dict[str, Any]) -> int:
    """Asks to begin, then emits ``spec["events"]`` texts at ``spec["rate"]`` per second,
    each starting with ``time.time_ns()`` taken just before its emit."""
    await agentnb.ask("begin?", choices=["go"])
    n, rate = int(spec["events"]), float(spec["rate"])
    start = time.perf_counter()
    for i in range(n):
        await wait_turn(start, i, rate)
        agentnb.emit(f"{time.time_ns()} {TEXTS[i % len(TEXTS)]}")
    return n


async def burst(n: int) -> int:
    """Emits *n* 30-byte texts, yielding to the loop after every ``PER_TURN``."""
    for i in range(n):
        agentnb.emit(TEXTS[i % len(TEXTS)])
        if i % PER_TURN == PER_TURN - 1:
            await asyncio.sleep(0)
    return n


def serve(url: str) -> None:
    """The --serve child: uvicorn with ``create_app(store=RedisStore(url))``."""
    app = create_app(agents=[clocked], store=RedisStore(url), allowed_hosts=["*"])
    serve_child(app, {"pid": os.getpid()})


def xadd_writer(url: str) -> None:
    """The --xadd child: for each line ``{"key", "events", "rate"}`` on stdin, XADD the
    events one by one on the schedule, each the JSON an agentnb frame carries; print ``done``."""

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        loop = asyncio.get_running_loop()
        try:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                order = json.loads(line)
                key, n, rate = order["key"], int(order["events"]), float(order["rate"])
                start = time.perf_counter()
                for i in range(n):
                    await wait_turn(start, i, rate)
                    event = {
                        "kind": "text",
                        "run_id": key,
                        "seq": i,
                        "path": [],
                        "ts": time.time(),
                        "text": f"{time.time_ns()} {TEXTS[i % len(TEXTS)]}",
                    }
                    await client.xadd(key, {"frame": json.dumps(event)})
                print("done", flush=True)
        finally:
            await client.aclose()

    _run(main())


# -- 2. emit to client across processes -------------------------------------------------


class SseReader:
    """One HTTP/1.1 response of ``text/event-stream`` on a raw connection, read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.body = ChunkedBody()

    @classmethod
    async def open(cls, port: int, raw_request: bytes) -> SseReader:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        writer.write(raw_request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            head += await asyncio.wait_for(reader.read(2000), 5)
            writer.close()
            raise RuntimeError(f"not a stream: {head[:600]!r}")
        return cls(reader, writer)

    async def events(self) -> tuple[int, list[tuple[bytes, bytes, bytes]]]:
        """The time (``time.time_ns()``) a read returned and the events it completed:
        ``(id, event, data)`` each."""
        while True:
            data = await self.reader.read(262_144)
            now = time.time_ns()
            if not data:
                raise RuntimeError("the server closed the stream before its end")
            out = []
            for block in self.body.events(data).split(b"\r\n\r\n")[:-1]:
                fields = dict(
                    line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line
                )
                if b"data" in fields:
                    out.append((fields.get(b"id", b""), fields.get(b"event", b""), fields[b"data"]))
            if out:
                return now, out

    async def until(self, kind: bytes) -> tuple[bytes, bytes]:
        """Read up to the first event of *kind*; its id and data."""
        while True:
            _, events = await self.events()
            for event_id, event, data in events:
                if event == kind:
                    return event_id, data

    def close(self) -> None:
        self.writer.close()


async def post(port: int, path: str, value: object) -> bytes:
    """POST *value* as JSON; the response body (raises unless 200)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        writer.write(request("POST", path, f"{HOST}:{port}", json.dumps(value).encode(), headers))
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status, _, body = split_head(answer)
    if status != 200:
        raise RuntimeError(f"POST {path}: {answer[:300]!r}")
    return body


def emit_time(data: bytes) -> int:
    """The ``time.time_ns()`` a text's JSON starts with."""
    text: str = json.loads(data)["text"]
    return int(text.partition(" ")[0])


async def via_servers(a: int, b: int, n: int) -> list[int]:
    """One run started on server *a*, read on server *b*: each text's latency, in ns."""
    spec = {"events": n, "rate": RATE}
    body = {"agent": "clocked", "input": spec, "on_disconnect": "continue"}
    started = await SseReader.open(a, post_json("/api/stream", f"{HOST}:{a}", body))
    try:
        ask_id, ask = await started.until(b"ask")
    finally:
        started.close()  # the run goes on (on_disconnect: continue), read from b
    run_id = ask_id.decode().rpartition(":")[0]
    headers = {"Accept": "text/event-stream"}
    path = f"/api/runs/{run_id}/events"
    stream = await SseReader.open(b, request("GET", path, f"{HOST}:{b}", headers=headers))
    latencies: list[int] = []
    try:
        await stream.until(b"ask")  # b's reader has caught up: it waits in XREAD BLOCK
        answer = {"ask_id": json.loads(ask)["ask_id"], "value": "go"}
        await post(b, f"/api/runs/{run_id}/answer", answer)  # to a, over the control channel
        while True:
            now, events = await stream.events()
            for _, kind, data in events:
                if kind == b"text":
                    latencies.append(now - emit_time(data))
                elif kind in ENDS:
                    assert kind == b"done", data
                    assert len(latencies) == n, (len(latencies), n)
                    return latencies
    finally:
        stream.close()


async def via_reader(a: int, store: RedisStore, n: int) -> list[int]:
    """One run started on server *a*, read in this process by agentnb's reader of the store
    (``RedisStore.read``: what ``agentnb.redis.watch`` and every server process use): each
    text's latency, in ns. The emit-to-client path across two processes."""
    spec = {"events": n, "rate": RATE}
    body = {"agent": "clocked", "input": spec, "on_disconnect": "continue"}
    started = await SseReader.open(a, post_json("/api/stream", f"{HOST}:{a}", body))
    try:
        ask_id, ask = await started.until(b"ask")
    finally:
        started.close()
    run_id = ask_id.decode().rpartition(":")[0]
    latencies: list[int] = []
    # The ask came from A's memory, maybe before A's writer stored it: wait for the stream,
    # then read it from its first frame (a reader is never ahead of what Redis holds).
    assert await store.wait_begun(run_id), "the run's stream never began"

    async def read() -> None:
        async with aclosing(store.read(run_id)) as reading:
            async for frames in reading:
                now = time.time_ns()
                texts = [f for f in frames if f.find(b"\r\nevent: text\r\n") >= 0]
                latencies.extend(now - emit_time(sse_data(f).encode()) for f in texts)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)  # it waits in XREAD BLOCK before the first text
    answer = {"ask_id": json.loads(ask)["ask_id"], "value": "go"}
    await post(a, f"/api/runs/{run_id}/answer", answer)
    await reader
    assert len(latencies) == n, (len(latencies), n)
    return latencies


@dataclass
class XaddProcess:
    """The --xadd child, driven over its stdin."""

    proc: asyncio.subprocess.Process

    @classmethod
    async def start(cls, url: str) -> XaddProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "--xadd", url, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        return cls(proc)

    async def write(self, key: str, n: int) -> None:
        """XADD *n* events to *key* on the schedule; returns when the writer is done."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        line = json.dumps({"key": key, "events": n, "rate": RATE}) + "\n"
        self.proc.stdin.write(line.encode())
        await self.proc.stdin.drain()
        done = await self.proc.stdout.readline()
        if done.strip() != b"done":
            raise RuntimeError(f"the XADD writer stopped: {done!r}")

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def via_redis(writer: XaddProcess, client: aioredis.Redis, n: int) -> list[int]:
    """*n* events XADDed by the writer process, read here with XREAD BLOCK: latencies in ns."""
    key = "bench:latency:" + uuid.uuid4().hex
    latencies: list[int] = []

    async def read() -> None:
        last: bytes | str = "0-0"
        while len(latencies) < n:
            got = cast(list[Any], await client.xread({key: last}, count=1000, block=1000))
            now = time.time_ns()
            if not got:
                continue
            for entry, fields in got[0][1]:
                text: str = json.loads(fields[b"frame"])["text"]
                latencies.append(now - int(text.partition(" ")[0]))
                last = entry

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)  # it waits in XREAD BLOCK before the first XADD
    await writer.write(key, n)
    await reader
    await client.delete(key)
    return latencies


def relay(url: str) -> None:
    """The --relay child: a bare server in between. For each TCP connection, read a line
    ``{"key", "events"}``, then ``XREAD BLOCK`` the key from the start and write each
    entry's frame, a line, to the connection as it comes; close after the last."""

    async def main() -> None:
        client = aioredis.Redis.from_url(url)

        async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            order = json.loads(await reader.readline())
            key, n, sent = order["key"], int(order["events"]), 0
            last: bytes | str = "0-0"
            while sent < n:
                got = cast(list[Any], await client.xread({key: last}, count=1000, block=1000))
                for entry, fields in got[0][1] if got else []:
                    writer.write(fields[b"frame"] + b"\n")
                    last = entry
                    sent += 1
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve_one, HOST, 0)
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        await asyncio.Event().wait()  # until terminated

    _run(main())


async def via_relay(writer: XaddProcess, port: int, n: int) -> list[int]:
    """*n* events XADDed by the writer process, read by the relay process and sent on to
    this one over TCP: latencies in ns. The bare path with a server in between."""
    key = "bench:latency:" + uuid.uuid4().hex
    reader, out = await asyncio.open_connection(HOST, port, limit=1 << 20)
    out.write(json.dumps({"key": key, "events": n}).encode() + b"\n")
    await out.drain()
    latencies: list[int] = []

    async def read() -> None:
        while len(latencies) < n:
            data = await reader.read(262_144)
            now = time.time_ns()
            if not data:
                raise RuntimeError("the relay closed the connection early")
            buffered = data if not pending else pending.pop() + data
            *lines, rest = buffered.split(b"\n")
            if rest:
                pending.append(rest)
            for line in lines:
                text: str = json.loads(line)["text"]
                latencies.append(now - int(text.partition(" ")[0]))

    pending: list[bytes] = []
    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)  # the relay waits in XREAD BLOCK before the first XADD
    await writer.write(key, n)
    await task
    out.close()
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process *pid* has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class LatencyRound:
    latencies: list[int]  # ns
    cpu: dict[str, float]  # process -> CPU seconds in the round

    def q(self, p: float) -> float:
        """The *p*-th percentile, in seconds."""
        return percentile(self.latencies, p) / 1e9


@dataclass
class Latency:
    agentnb: list[LatencyRound] = field(default_factory=list)
    bare: list[LatencyRound] = field(default_factory=list)
    reader: list[LatencyRound] = field(default_factory=list)  # agent -> Redis -> store reader
    relay: list[LatencyRound] = field(default_factory=list)  # XADD -> XREAD -> TCP -> client

    def ratio(
        self,
        p: float,
        pick: Callable[[list[float]], float],
        side: str = "reader",
        baseline: str = "bare",
    ) -> float:
        """*side*'s *p*-th percentile over *baseline*'s, each picked among the rounds."""
        subject: list[LatencyRound] = getattr(self, side)
        base: list[LatencyRound] = getattr(self, baseline)
        return pick([r.q(p) for r in subject]) / pick([r.q(p) for r in base])

    def pooled(self, p: float, side: str) -> float:
        """The *p*-th percentile of all *side*'s rounds' events, in seconds."""
        rounds: list[LatencyRound] = getattr(self, side)
        return percentile([x for r in rounds for x in r.latencies], p) / 1e9


async def timed_round(fn: Callable[[], Awaitable[list[int]]], pids: dict[str, int]) -> LatencyRound:
    """Run one latency round; the CPU each process of *pids* (and this one) used in it."""
    gc.collect()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    mine, busy = time.process_time(), machine_busy()
    latencies = await fn()
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["client"] = time.process_time() - mine
    cpu["others"] = max(machine_busy() - busy - sum(cpu.values()), 0.0)
    return LatencyRound(latencies, cpu)


async def latency(url: str, sizes: Sizes, redis_pid: int | None) -> Latency:
    out = Latency()
    async with AsyncExitStack() as stack:
        servers = []
        for argv in (["--serve", url], ["--serve", url], ["--relay", url]):
            server = ServerProcess([str(HERE), *argv])
            stack.callback(server.close)
            servers.append(server)
        a, b, relayed = servers
        writer = await XaddProcess.start(url)
        stack.push_async_callback(writer.close)
        client = aioredis.Redis.from_url(url)
        stack.push_async_callback(client.aclose)
        store = await stack.enter_async_context(RedisStore(url))
        extra = {"redis": redis_pid} if redis_pid is not None else {}
        measured: list[tuple[Callable[[int], Awaitable[list[int]]], dict[str, int], list[Any]]] = [
            (
                lambda n: via_reader(a.port, store, n),
                {"server A": a.proc.pid, **extra},
                out.reader,
            ),
            (
                lambda n: via_redis(writer, client, n),
                {"writer": writer.proc.pid, **extra},
                out.bare,
            ),
            (
                lambda n: via_servers(a.port, b.port, n),
                {"server A": a.proc.pid, "server B": b.proc.pid, **extra},
                out.agentnb,
            ),
            (
                lambda n: via_relay(writer, relayed.port, n),
                {"writer": writer.proc.pid, "relay": relayed.proc.pid, **extra},
                out.relay,
            ),
        ]
        for fn, _, _ in measured:  # warm every path untimed
            await fn(500)
        n = sizes.latency_events
        for i in range(sizes.latency_rounds):
            k = i % len(measured)
            for fn, pids, rounds in measured[k:] + measured[:k]:  # each path first in turn
                rounds.append(await timed_round(functools.partial(fn, n), pids))
    return out


# -- 3. emit cost in the agent ------------------------------------------------------------


@dataclass
class EmitRounds:
    ended: list[float] = field(default_factory=list)  # start to the run's end
    flushed: list[float] = field(default_factory=list)  # ... and its frames in Redis


async def served_run(app: Any, agent: str, arg: int) -> tuple[str, float, float]:
    """Start *agent* in *app*'s hub and wait for its end and its frames' flush;
    the run id and the seconds to each."""
    hub = app.state.hub
    start = time.perf_counter()
    served = hub.start(agent, (arg,), "continue")
    run = served.run
    await run.wait()
    ended = time.perf_counter() - start
    if served.announced is not None:
        await served.announced
    if served.writer is not None:
        await served.writer.flush()
    return served.id, ended, time.perf_counter() - start


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[Any]:
    async with app.router.lifespan_context(app):
        yield app


async def emit_cost(url: str, sizes: Sizes) -> tuple[EmitRounds, EmitRounds, list[Stored]]:
    stored, memory = EmitRounds(), EmitRounds()
    async with AsyncExitStack() as stack:
        with_store = await stack.enter_async_context(
            lifespan(create_app(agents=[burst], store=RedisStore(url)))
        )
        in_memory = await stack.enter_async_context(lifespan(create_app(agents=[burst])))
        sides = [(with_store, stored), (in_memory, memory)]
        for app, _ in sides:  # warm both untimed
            await served_run(app, "burst", sizes.emit_events)
        for i in range(sizes.emit_rounds):
            for app, rounds in sides if i % 2 == 0 else sides[::-1]:
                gc.collect()
                _, ended, flushed = await served_run(app, "burst", sizes.emit_events)
                rounds.ended.append(ended)
                rounds.flushed.append(flushed)
        held = [await stored_run(with_store, n) for n in MEMORY_RUNS]
    return stored, memory, held


# -- 4. memory per run in Redis -------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    texts: int
    frames: int  # frames in the stream (the texts and the terminal event)
    frame_bytes: int  # their total length
    stream: int  # MEMORY USAGE of the stream, bytes
    record: int  # MEMORY USAGE of the run's record, bytes


async def stored_run(app: Any, n: int) -> Stored:
    """Serve a run of *n* texts; what its stream and record take in Redis once it ended."""
    run_id, _, _ = await served_run(app, "burst", n)
    store: RedisStore = app.state.hub.shared.store
    client = store.redis
    key = store.key(run_id)
    record = RECORD_PREFIX + run_id
    deadline = time.monotonic() + 5
    while await client.hget(record, "status") != b"done":  # the end is recorded after the flush
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id}'s record does not say done")
        await asyncio.sleep(0.01)
    entries = cast(list[Any], await client.xrange(key))
    return Stored(
        n,
        len(entries),
        sum(len(fields[b"frame"]) for _, fields in entries),
        cast(int, await client.memory_usage(key, samples=0)),
        cast(int, await client.memory_usage(record, samples=0)),
    )


async def frame_memory(url: str, n: int) -> float:
    """``MEMORY USAGE`` per frame of a stream of *n* 300-byte frames written by a RunWriter."""
    async with RedisStore(url, keep_count=KEEP, keep_bytes=1 << 30) as store:
        run_id = uuid.uuid4().hex
        writer = store.writer(run_id)
        for i, frame in enumerate(frames(n)):
            writer.append(frame, last=i == n - 1)
        await writer.aclose()
        used = cast(int, await store.redis.memory_usage(store.key(run_id), samples=0))
        await store.delete(run_id)
    return used / n


# -- the whole run ----------------------------------------------------------------------------


@dataclass
class Results:
    pipelined: Compared
    naive: Compared
    latency: Latency
    emit_store: EmitRounds
    emit_memory: EmitRounds
    runs: list[Stored]
    memory_per_frame: float


async def throughput(url: str, sizes: Sizes) -> tuple[Compared, Compared]:
    data = frames(sizes.events)
    naive_data = frames(sizes.naive_events)
    async with RedisStore(url, keep_count=KEEP, keep_bytes=1 << 30) as store:
        client = aioredis.Redis.from_url(url)
        try:
            pipelined = await alternate(
                sizes.rounds,
                lambda: through_store(store, data),
                lambda: through_redis_py(client, data, pipelined=True),
            )
            naive = await alternate(
                max(sizes.rounds // 2, 1),
                lambda: through_store(store, naive_data),
                lambda: through_redis_py(client, naive_data, pipelined=False),
            )
        finally:
            await client.aclose()
    return pipelined, naive


async def measure(url: str, sizes: Sizes, redis_pid: int | None) -> Results:
    print("1. events/s through the store ...", flush=True)
    pipelined, naive = await throughput(url, sizes)
    print("2. emit to client across processes ...", flush=True)
    lat = await latency(url, sizes, redis_pid)
    print("3. emit cost in the agent ...", flush=True)
    emit_store, emit_memory, runs = await emit_cost(url, sizes)
    per_frame = await frame_memory(url, sizes.events)
    return Results(pipelined, naive, lat, emit_store, emit_memory, runs, per_frame)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1000:.1f}k events/s"


def report_latency(lat: Latency, n: int) -> None:
    print(f"\n2. emit to client, {n:,} events at {RATE:,.0f}/s per round")
    sides = (
        ("reader", lat.reader),
        ("bare", lat.bare),
        ("via B", lat.agentnb),
        ("relay", lat.relay),
    )
    for side, rounds in sides:
        for p in (50, 99, 100):
            each = " ".join(f"{r.q(p) * 1e3:.2f}" for r in rounds)
            print(f"  {side:8} p{p:<3} ms by round: {each}")
        names = rounds[0].cpu if rounds else {}
        cpu = ", ".join(
            f"{k} {statistics.median(r.cpu[k] for r in rounds) * 1e3 / (n / 1000):.0f}"
            for k in names
        )
        print(f"  {side:8} CPU ms per 1,000 events (median of rounds): {cpu}")
    for side, rounds in sides:
        pooled = [x for r in rounds for x in r.latencies]
        print(
            f"  {side:8} all rounds: p50 {ms(percentile(pooled, 50) / 1e9)}, "
            f"p90 {ms(percentile(pooled, 90) / 1e9)}, p99 {ms(percentile(pooled, 99) / 1e9)}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--url", help="a Redis to use (default: a redis-server started for the run)"
    )
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--xadd", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--relay", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    if args.xadd:
        xadd_writer(args.xadd)
        return
    if args.relay:
        relay(args.relay)
        return
    sizes = QUICK if args.quick else FULL
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, sizes {sizes}")
    started = time.perf_counter()
    if args.url:
        results = _run(measure(args.url, sizes, None))
    else:
        with redis_server() as server:
            assert server.process is not None
            results = _run(measure(server.url, sizes, server.process.pid))
    report(results, sizes)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


def report(results: Results, sizes: Sizes) -> None:
    pipelined, naive, lat = results.pipelined, results.naive, results.latency
    print(f"\n1. {sizes.events:,} frames of {FRAME_SIZE} B, {PER_TURN} per loop turn, read live")
    for label, times in (("store", pipelined.subject), ("redis-py", pipelined.baseline)):
        print(f"  {label:9} " + "  ".join(rate(sizes.events, t) for t in times))
    report_latency(lat, sizes.latency_events)
    n = sizes.emit_events
    print(f"\n3. an agent emitting {n:,} texts, start to end (start to flushed)")
    for label, rounds in (("store", results.emit_store), ("memory", results.emit_memory)):
        print(
            f"  {label:9} "
            + "  ".join(
                f"{rate(n, e)} ({rate(n, f)})"
                for e, f in zip(rounds.ended, rounds.flushed, strict=True)
            )
        )
    print("\n4. a served run in Redis once ended (stream + record, MEMORY USAGE)")
    for run in results.runs:
        print(
            f"  {run.texts:>6,} texts: {run.stream + run.record:>9,} B "
            f"(stream {run.stream:,} B, record {run.record} B; {run.frames:,} frames of "
            f"{run.frame_bytes / run.frames:.0f} B on average: "
            f"{run.stream / run.frames:.0f} B each)"
        )

    print("\nSummary (medians; each baseline measured in the same run)")
    table = Table("measure", "agentnb", "baseline", "ratio", "goal", "met")
    table.add(
        "events/s, store vs pipelined XADD",
        rate(sizes.events, statistics.median(pipelined.subject)),
        rate(sizes.events, statistics.median(pipelined.baseline)) + " (redis-py)",
        f"{pipelined.rate_ratio_median():.2f}x (best {pipelined.rate_ratio_best():.2f}x)",
        ">= 0.8x",
        met(pipelined.rate_ratio_median() >= 0.8, pipelined.rate_ratio_best() >= 0.8),
    )
    table.add(
        "events/s, store vs one XADD per event",
        rate(sizes.naive_events, statistics.median(naive.subject)),
        rate(sizes.naive_events, statistics.median(naive.baseline)) + " (redis-py)",
        f"{naive.rate_ratio_median():.2f}x (best {naive.rate_ratio_best():.2f}x)",
        "(scale)",
        "-",
    )
    bare = " (XADD -> XREAD BLOCK)"
    relayed = " (XADD -> XREAD -> TCP)"
    paths = (
        (99, 1.5, "reader", "bare", bare, "emit to client p99, 1,000/s, across two processes"),
        (50, None, "reader", "bare", bare, "emit to client p50, the same"),
        (99, None, "agentnb", "relay", relayed, "emit to client p99 via server B"),
        (50, None, "agentnb", "relay", relayed, "emit to client p50 via server B"),
        (99, None, "agentnb", "bare", bare, "emit to client p99 via server B"),
    )
    for p, goal, side, baseline, named, label in paths:
        median_ratio = lat.ratio(p, statistics.median, side, baseline)
        best_ratio = lat.ratio(p, min, side, baseline)
        table.add(
            label,
            ms(statistics.median(r.q(p) for r in getattr(lat, side))),
            ms(statistics.median(r.q(p) for r in getattr(lat, baseline))) + named,
            f"{median_ratio:.2f}x (best {best_ratio:.2f}x)",
            f"<= {goal}x" if goal else "(info)",
            met(median_ratio <= goal, best_ratio <= goal) if goal else "-",
        )
    table.add(
        "emit to client p99, the same, all rounds pooled",
        ms(lat.pooled(99, "reader")),
        ms(lat.pooled(99, "bare")) + bare,
        f"{lat.pooled(99, 'reader') / lat.pooled(99, 'bare'):.2f}x",
        "(info)",
        "-",
    )
    stored, memory = results.emit_store, results.emit_memory
    ratio = statistics.median(memory.flushed) / statistics.median(stored.flushed)
    best = min(memory.flushed) / min(stored.flushed)
    table.add(
        "agent's events/s, store vs in memory (to flushed)",
        rate(n, statistics.median(stored.flushed)),
        rate(n, statistics.median(memory.flushed)) + " (no store)",
        f"{ratio:.2f}x (best {best:.2f}x)",
        ">= 0.5x",
        met(ratio >= 0.5, best >= 0.5),
    )
    ended = statistics.median(memory.ended) / statistics.median(stored.ended)
    table.add(
        "agent's events/s, store vs in memory (to the end)",
        rate(n, statistics.median(stored.ended)),
        rate(n, statistics.median(memory.ended)) + " (no store)",
        f"{ended:.2f}x (best {min(memory.ended) / min(stored.ended):.2f}x)",
        "(info)",
        "-",
    )
    for run in results.runs:
        table.add(
            f"Redis memory, a run of {run.texts:,} texts",
            f"{run.stream + run.record:,} B",
            f"{run.frame_bytes:,} B (its frames)",
            f"{(run.stream + run.record) / run.frame_bytes:.2f}x",
            "(scale)",
            "-",
        )
    table.add(
        "Redis memory per frame",
        f"{results.memory_per_frame:.0f} B",
        f"{FRAME_SIZE} B (the frame)",
        f"{results.memory_per_frame / FRAME_SIZE:.2f}x",
        "(scale)",
        "-",
    )
    table.print()
    print(
        json.dumps(
            {
                "store_rate_ratio": round(pipelined.rate_ratio_median(), 3),
                "latency_p99_ratio": round(lat.ratio(99, statistics.median), 3),
                "latency_p50_ratio": round(lat.ratio(50, statistics.median), 3),
                "latency_p99_pooled_ratio": round(
                    lat.pooled(99, "reader") / lat.pooled(99, "bare"), 3
                ),
                "via_server_p99_ratio": round(
                    lat.ratio(99, statistics.median, "agentnb", "relay"), 3
                ),
                "emit_rate_ratio": round(ratio, 3),
            }
        )
    )


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run *coro* on uvloop when it is installed (as uvicorn does), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    main()
