"""What the Redis Streams store costs over redis-py used bare, on the same redis-server.

Run from the repository root (needs ``redis-server`` and the ``redis`` extra)::

    python benchmarks/bench_redis.py            # the full set, well under a minute
    python benchmarks/bench_redis.py --quick    # small sizes, a smoke test

What is measured (the goal in brackets), on a ``redis-server`` started for the run:

1. Events per second through the store: a producer appends 300-byte frames, 100
   per loop turn, to a ``RunWriter`` (the last one terminal) while a reader reads
   them live with ``RedisStore.read``; a round ends when the reader has them all.
   The baseline is bare redis-py doing the same the best plain way: the producer
   pipelines the 100 ``XADD`` of each turn (``MAXLEN ~``) and awaits them, the
   reader loops on ``XREAD BLOCK`` from the last id [>= 0.8x the baseline's rate].
   A second baseline, shown for scale, awaits one ``XADD`` per event.
2. Memory per run in Redis: ``MEMORY USAGE`` of a finished run's stream, per frame.

Subject and baseline alternate round by round (the order flips each round), each round
starts after ``gc.collect()``; the best and the median round are printed. Nothing here
asserts an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import redis.asyncio as aioredis  # noqa: E402

from agentnb.redis import RedisStore  # noqa: E402
from harness.redis import redis_server  # noqa: E402
from harness.report import Table, met  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    events: int
    rounds: int
    naive_events: int


FULL = Sizes(events=50_000, rounds=7, naive_events=10_000)
QUICK = Sizes(events=5_000, rounds=3, naive_events=1_000)
PER_TURN = 100  # frames a producer appends per loop turn (an agent streaming tokens)
FRAME_SIZE = 300  # bytes: an SSE frame of a text chunk, about
KEEP = 100_000  # entries a stream keeps (more than a round writes: no trimming measured)


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


@dataclass
class Results:
    pipelined: Compared
    naive: Compared
    memory_per_frame: float


async def measure(url: str, sizes: Sizes) -> Results:
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
            run_id = uuid.uuid4().hex
            writer = store.writer(run_id)
            for i, frame in enumerate(data):
                writer.append(frame, last=i == len(data) - 1)
            await writer.aclose()
            used = cast(int, await client.memory_usage(store.key(run_id), samples=0))
            await store.delete(run_id)
        finally:
            await client.aclose()
    return Results(pipelined, naive, used / len(data))


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1000:.1f}k events/s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    sizes = QUICK if parser.parse_args(argv).quick else FULL
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, sizes {sizes}")
    with redis_server() as server:
        results = asyncio.run(measure(server.url, sizes))
    pipelined, naive = results.pipelined, results.naive
    print(f"\n{sizes.events:,} frames of {FRAME_SIZE} B, {PER_TURN} per loop turn, read live")
    for label, times in (("store", pipelined.subject), ("redis-py", pipelined.baseline)):
        print(f"  {label:9} " + "  ".join(rate(sizes.events, t) for t in times))
    n = sizes.naive_events

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
        rate(n, statistics.median(naive.subject)),
        rate(n, statistics.median(naive.baseline)) + " (redis-py)",
        f"{naive.rate_ratio_median():.2f}x (best {naive.rate_ratio_best():.2f}x)",
        "(scale)",
        "-",
    )
    table.add(
        "memory per frame in Redis",
        f"{results.memory_per_frame:.0f} B",
        f"{FRAME_SIZE} B (the frame)",
        f"{results.memory_per_frame / FRAME_SIZE:.2f}x",
        "(scale)",
        "-",
    )
    table.print()
    print(json.dumps({"store_rate_ratio": round(pipelined.rate_ratio_median(), 3)}))


if __name__ == "__main__":
    main()
