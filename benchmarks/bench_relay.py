"""What ``agentnb.relay`` costs over reading an SDK stream bare, and what the new kinds cost.

Run from the repository root::

    python benchmarks/bench_relay.py            # the full set, well under a minute
    python benchmarks/bench_relay.py --quick    # small sizes, a smoke test

What is measured (the goal in brackets):

1. A 5,000-chunk OpenAI chat-completion stream served over real HTTP by the local
   provider (``harness.providers``), read by the real ``openai.AsyncOpenAI`` client:
   ``await agentnb.relay(stream)`` inside a run with one list sink, against iterating
   the same stream bare (``async for chunk in stream: pass``) [<= 1.2x].
2. Per event through ``agentnb.stream()``: an agent emitting TextChunk (with a message
   id), Reasoning, ToolCallDelta and Usage events (each built in the loop, as an adapter
   does) against a task building the same events and putting them into a bare
   ``asyncio.Queue`` read by a consumer (the core's baseline shape) [<= 1.5x, the core's
   burst goal].

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import agentnb  # noqa: E402
from agentnb import Event, Reasoning, TextChunk, ToolCallDelta, Usage  # noqa: E402
from harness.providers import Provider, Reply, sse  # noqa: E402
from harness.report import Table, met  # noqa: E402
from harness.web import serving  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    chunks: int
    stream_rounds: int
    events: int
    event_rounds: int


FULL = Sizes(chunks=5_000, stream_rounds=9, events=100_000, event_rounds=5)
QUICK = Sizes(chunks=1_000, stream_rounds=3, events=10_000, event_rounds=3)
BATCH = 100  # chunks per write of the provider: the client still parses every SSE event


@dataclass
class Compared:
    """Seconds per round of a subject and its baseline, measured alternately."""

    subject: list[float]
    baseline: list[float]

    def ratio_median(self) -> float:
        return statistics.median(self.subject) / statistics.median(self.baseline)

    def ratio_best(self) -> float:
        return min(self.subject) / min(self.baseline)


async def alternate(
    rounds: int, subject: Callable[[], Awaitable[None]], baseline: Callable[[], Awaitable[None]]
) -> Compared:
    out = Compared([], [])
    await subject()  # warm both paths (imports, connections, caches) untimed
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


# -- 1. relay against the bare SDK stream ---------------------------------------------------


def chat_stream_bytes(chunks: int) -> list[bytes]:
    """*chunks* text chunks of a chat completion, then the finish chunk and [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1764000000,
                "model": "gpt-bench",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": f"word{i % 100:02d} "}) for i in range(chunks - 2)]
    parts.append(chunk({}, "stop"))
    parts.append(b"data: [DONE]\n\n")
    return [b"".join(parts[i : i + BATCH]) for i in range(0, len(parts), BATCH)]


async def measure_relay(sizes: Sizes) -> Compared:
    import openai

    provider = Provider()
    body = chat_stream_bytes(sizes.chunks)
    with serving(provider.app) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0)

        async def open_stream() -> Any:
            provider.script(Reply(chunks=body))
            return await client.chat.completions.create(
                model="gpt-bench", messages=[{"role": "user", "content": "go"}], stream=True
            )

        async def bare() -> None:
            stream = await open_stream()
            count = 0
            async for _ in stream:
                count += 1
            assert count == sizes.chunks, count

        async def relayed() -> None:
            events: list[Event] = []

            async def agent(prompt: str) -> Any:
                return await agentnb.relay(await open_stream())

            message = await agentnb.run(agent, "go", sink=events.append)
            texts = sum(1 for e in events if e.kind == "text")
            assert texts == sizes.chunks - 2, texts
            assert message.content == "".join(f"word{i % 100:02d} " for i in range(texts))

        try:
            return await alternate(sizes.stream_rounds, relayed, bare)
        finally:
            await client.close()


# -- 2. the new kinds, per event ------------------------------------------------------------


KINDS: dict[str, Callable[[int, str], agentnb.Event]] = {
    "text_chunk": lambda i, delta: TextChunk(delta, "msg_1"),
    "reasoning": lambda i, delta: Reasoning(delta, "msg_1"),
    "tool_call_delta": lambda i, delta: ToolCallDelta("call_1", delta),
    "usage": lambda i, delta: Usage(i, i, "gpt-bench", "openai", reasoning_tokens=i),
}


def deltas(n: int) -> list[str]:
    return [f"piece {i % 10} " for i in range(n)]


async def through_agentnb(make: Callable[[int, str], agentnb.Event], n: int) -> None:
    """An agent builds *n* events of one kind and emits each; ``stream()`` reads them."""
    pieces = deltas(n)
    emit = agentnb.emit

    async def agent(prompt: str) -> None:
        for i, delta in enumerate(pieces):
            emit(make(i, delta))

    count = 0
    async for _ in agentnb.stream(agent, "go"):
        count += 1
    assert count == n + 1, count  # and the Done event


async def through_queue(make: Callable[[int, str], agentnb.Event], n: int) -> None:
    """The baseline: a task builds the same events and puts each into an asyncio.Queue."""
    pieces = deltas(n)
    queue: asyncio.Queue[agentnb.Event | None] = asyncio.Queue()

    async def producer() -> None:
        put = queue.put_nowait
        for i, delta in enumerate(pieces):
            put(make(i, delta))
        put(None)

    task = asyncio.create_task(producer())
    count = 0
    while await queue.get() is not None:
        count += 1
    await task
    assert count == n, count


async def measure_kinds(sizes: Sizes) -> dict[str, Compared]:
    n = sizes.events
    out: dict[str, Compared] = {}
    for name, make in KINDS.items():
        out[name] = await alternate(
            sizes.event_rounds,
            lambda make=make: through_agentnb(make, n),  # type: ignore[misc]
            lambda make=make: through_queue(make, n),  # type: ignore[misc]
        )
    return out


# -- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def ns_per(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e9:.0f} ns"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    sizes = QUICK if parser.parse_args(argv).quick else FULL
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, sizes {sizes}")

    relay = asyncio.run(measure_relay(sizes))
    print(f"\nrelay of a {sizes.chunks:,}-chunk chat-completion stream over HTTP")
    for label, times in (("relay", relay.subject), ("bare", relay.baseline)):
        print(f"  {label:6} " + "  ".join(ms(t) for t in times))
    kinds = asyncio.run(measure_kinds(sizes))
    print(f"\nper event through agentnb.stream(), {sizes.events:,} events (vs a bare queue)")
    for name, compared in kinds.items():
        print(
            f"  {name:16} median {ns_per(statistics.median(compared.subject), sizes.events)}"
            f"  queue {ns_per(statistics.median(compared.baseline), sizes.events)}"
            f"  ratio {compared.ratio_median():.2f}x (best {compared.ratio_best():.2f}x)"
        )

    print("\nSummary (medians; each baseline measured in the same run)")
    table = Table("measure", "agentnb", "baseline", "ratio", "goal", "met")
    table.add(
        f"relay, {sizes.chunks:,}-chunk stream",
        ms(statistics.median(relay.subject)),
        ms(statistics.median(relay.baseline)) + " (bare SDK)",
        f"{relay.ratio_median():.2f}x (best {relay.ratio_best():.2f}x)",
        "<= 1.2x",
        met(relay.ratio_median() <= 1.2, relay.ratio_best() <= 1.2),
    )
    for name, compared in kinds.items():
        table.add(
            f"per event, {name}",
            ns_per(statistics.median(compared.subject), sizes.events),
            ns_per(statistics.median(compared.baseline), sizes.events) + " (queue)",
            f"{compared.ratio_median():.2f}x (best {compared.ratio_best():.2f}x)",
            "<= 1.5x",
            met(compared.ratio_median() <= 1.5, compared.ratio_best() <= 1.5),
        )
    table.print()
    print(json.dumps({"relay_ratio": round(relay.ratio_median(), 3)}))


if __name__ == "__main__":
    main()
