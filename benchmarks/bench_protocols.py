"""Events per second of one AG-UI stream and one AI SDK stream against agentnb's own SSE.

Run from the repository root (needs the ``server`` extra)::

    python benchmarks/bench_protocols.py           # 20,000 events, 5 rounds (~30 s on 2 cores)
    python benchmarks/bench_protocols.py --quick   # small sizes, a smoke test

One uvicorn process (a child, started from this file with ``--serve``; 127.0.0.1, a
port the OS chose) serves ``agentnb.server.create_app`` with one agent, which emits
N texts of 30 bytes as fast as it can (``await asyncio.sleep(0)`` after every 10th).
The same run is streamed three ways from the same server, in rounds that alternate
the order: ``POST /api/stream`` (agentnb's own SSE), ``POST /ag-ui/bench`` (AG-UI
1.0 events: one ``TEXT_MESSAGE_CONTENT`` per text) and ``POST /ai-sdk/bench`` (the
UI message stream: one ``text-delta`` per text). The client, in this process, reads
each body with httpx and counts the texts it carried (every round checks all N
arrived). Events/s = N / (the request's start to the body's end). The ratio of each
protocol to agentnb's SSE is printed, best round against best round and median
against median (the machine is shared and noisy). No goal is set by the issue: the
figures are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

import httpx  # noqa: E402

import agentnb  # noqa: E402
from harness.web import ServerProcess, serve_child  # noqa: E402

TEXTS = [f"{i:06d} " + "x" * 23 for i in range(1000)]  # 30 bytes each


async def bench(count: int | str) -> None:
    """Emits *count* texts as fast as it can, yielding every 10th (the protocols' input is
    the user's text: the count, written out)."""
    emit = agentnb.emit
    for i in range(int(count)):
        emit(TEXTS[i % 1000])
        if i % 10 == 9:
            await asyncio.sleep(0)


def serve() -> None:
    from agentnb.server import create_app

    serve_child(create_app(agents=[bench], allowed_hosts=["*"]))


def bodies(count: int) -> dict[str, tuple[str, dict[str, Any], bytes]]:
    """Route, request body and the marker of one text event, per protocol."""
    text = str(count)
    return {
        "agentnb SSE": ("/api/stream", {"agent": "bench", "input": count}, b"event: text"),
        "AG-UI": (
            "/ag-ui/bench",
            {
                "threadId": "t",
                "runId": "r",
                "messages": [{"id": "u", "role": "user", "content": text}],
                "state": {},
                "tools": [],
                "context": [],
                "forwardedProps": {},
            },
            b'"type":"TEXT_MESSAGE_CONTENT"',
        ),
        "AI SDK": (
            "/ai-sdk/bench",
            {
                "id": "c",
                "messages": [
                    {"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}
                ],
                "trigger": "submit-message",
            },
            b'"type":"text-delta"',
        ),
    }


async def one_stream(
    client: httpx.AsyncClient, base: str, route: str, body: dict[str, Any], marker: bytes
) -> tuple[float, int]:
    """Seconds from the request to the end of the body, and the text events it carried."""
    seen = 0
    tail = b""
    started = time.perf_counter()
    async with client.stream("POST", base + route, json=body) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            piece = tail + chunk
            seen += piece.count(marker)
            tail = piece[-(len(marker) - 1) :]
            seen -= tail.count(marker)  # (never: the tail is shorter than the marker)
    return time.perf_counter() - started, seen


async def run(count: int, rounds: int) -> dict[str, list[float]]:
    server = ServerProcess([str(HERE), "--serve"])
    base = f"http://127.0.0.1:{server.port}"
    rates: dict[str, list[float]] = {name: [] for name in bodies(count)}
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            for _ in range(50):  # until it answers
                try:
                    await client.get(base + "/api/agents")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            names = list(bodies(count))
            for name in names:  # warm-up (untimed), small
                route, body, marker = bodies(100)[name]
                await one_stream(client, base, route, body, marker)
            for r in range(rounds):
                order = names[r % 3 :] + names[: r % 3]
                for name in order:
                    route, body, marker = bodies(count)[name]
                    seconds, seen = await one_stream(client, base, route, body, marker)
                    if seen != count:
                        raise AssertionError(f"{name}: {seen} of {count} texts arrived")
                    rates[name].append(count / seconds)
    finally:
        server.close()
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    count, rounds = (2_000, 2) if args.quick else (20_000, 5)
    print(f"agentnb {agentnb.__version__}, Python {sys.version.split()[0]}, {sys.platform}")
    print(f"{count:,} text events per stream, {rounds} rounds alternating\n")
    rates = asyncio.run(run(count, rounds))
    for name, values in rates.items():
        print(f"  {name:12} " + "  ".join(f"{v:9,.0f}" for v in values) + "  events/s")
    own = rates["agentnb SSE"]
    print("\nSummary (the same run over each protocol, one server; ratio to agentnb's own SSE)")
    print(f"  {'measure':28} {'best':>10} {'median':>10} {'ratio best':>11} {'ratio median':>13}")
    for name, values in rates.items():
        best, median = max(values), statistics.median(values)
        ratio_best, ratio_median = best / max(own), median / statistics.median(own)
        print(
            f"  {'events/s, ' + name:28} {best:10,.0f} {median:10,.0f} "
            f"{ratio_best:10.2f}x {ratio_median:12.2f}x"
        )


if __name__ == "__main__":
    main()
