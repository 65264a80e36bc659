"""Benchmarks of agentnb's core engine, each a ratio against plain asyncio measured alongside.

Run from the repository root::

    python benchmarks/bench_core.py            # the full set, well under a minute
    python benchmarks/bench_core.py --quick    # small sizes, a smoke test

What is measured (the goal in brackets):

1. emit -> stream, per event, against an ``asyncio.Queue`` put/get loop [<= 1.5x],
   in two shapes: *burst* (the agent emits every chunk without awaiting) and
   *paced* (``await asyncio.sleep(0)`` after each event, on both sides).
2. 10,000 concurrent runs of 10 paced events each, every run consumed by its own
   task through ``agentnb.stream``, against 10,000 producer/consumer task pairs
   with their own queues [wall time <= 2x]. Then the traced memory of 10,000
   idle runs against 10,000 idle pairs [reported].
3. ``import agentnb`` in a fresh interpreter [<= 50 ms], with ``import asyncio``
   as the reference, and the top ``-X importtime`` contributors.

The machine may be noisy, so the subject and the baseline alternate round by
round, and both the best and the median round are reported. Nothing here
asserts an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import agentnb  # noqa: E402
from harness.report import Table, met  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    small_burst_events: int
    burst_events: int
    paced_events: int
    event_rounds: int
    runs: int
    events_per_run: int
    run_rounds: int
    idle_runs: int
    import_spawns: int


FULL = Sizes(
    small_burst_events=5_000,
    burst_events=200_000,
    paced_events=100_000,
    event_rounds=7,
    runs=10_000,
    events_per_run=10,
    run_rounds=5,
    idle_runs=10_000,
    import_spawns=10,
)
QUICK = Sizes(
    small_burst_events=5_000,
    burst_events=20_000,
    paced_events=10_000,
    event_rounds=3,
    runs=1_000,
    events_per_run=10,
    run_rounds=3,
    idle_runs=1_000,
    import_spawns=3,
)


class _End:
    """The baseline's end-of-stream marker (agentnb's is the Done event)."""


END = _End()
Item: TypeAlias = str | _End
Agent: TypeAlias = Callable[[list[str]], Coroutine[Any, Any, None]]
Producer: TypeAlias = Callable[["asyncio.Queue[Item]", list[str]], Coroutine[Any, Any, None]]


def make_chunks(n: int) -> list[str]:
    """The payload, shared by subject and baseline: the same str objects on both sides."""
    return [f"token{i % 1000} " for i in range(n)]


def _expect(what: str, got: int, want: int) -> None:
    if got != want:
        raise RuntimeError(f"{what}: consumed {got} items, expected {want}")


# -- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Timings (ns) of the subject and the baseline, one per round."""

    name: str
    per: int  # events per round, to report ns/event (1: report the whole round)
    subject: list[int]
    baseline: list[int]

    def _scaled(self, values: list[int], pick: Callable[[list[int]], float]) -> float:
        return pick(values) / self.per

    def subject_best(self) -> float:
        return self._scaled(self.subject, min)

    def subject_median(self) -> float:
        return self._scaled(self.subject, statistics.median)

    def baseline_best(self) -> float:
        return self._scaled(self.baseline, min)

    def baseline_median(self) -> float:
        return self._scaled(self.baseline, statistics.median)

    def ratio_best(self) -> float:
        return min(self.subject) / min(self.baseline)

    def ratio_median(self) -> float:
        return statistics.median(self.subject) / statistics.median(self.baseline)


Row: TypeAlias = tuple[str, str, str, str, str, str]  # a line of the summary table


def _met(median: float, best: float, limit: float) -> str:
    return met(median <= limit, best <= limit)


def _fmt_time(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def _print_comparison(c: Comparison, subject: str, baseline: str) -> None:
    unit = "/event" if c.per > 1 else ""
    print(f"  {c.name}")
    print(
        f"    {subject:<28} best {_fmt_time(c.subject_best()):>9}{unit}"
        f"   median {_fmt_time(c.subject_median()):>9}{unit}"
    )
    print(
        f"    {baseline:<28} best {_fmt_time(c.baseline_best()):>9}{unit}"
        f"   median {_fmt_time(c.baseline_median()):>9}{unit}"
    )
    print(f"    {'ratio':<28} best {c.ratio_best():.2f}x   median {c.ratio_median():.2f}x")


async def _compare(
    name: str,
    per: int,
    subject: Callable[[], Awaitable[None]],
    baseline: Callable[[], Awaitable[None]],
    rounds: int,
    *,
    gc_off: bool = False,
) -> Comparison:
    """Time *subject* and *baseline* in alternating rounds, after one warm-up of each.

    Each round starts after a full collection; with *gc_off* the cyclic garbage
    collector is also paused during the round (to show its share).
    """
    await subject()
    await baseline()
    times: dict[str, list[int]] = {"subject": [], "baseline": []}
    for i in range(rounds):
        order = [("subject", subject), ("baseline", baseline)]
        if i % 2:
            order.reverse()
        for key, fn in order:
            gc.collect()
            if gc_off:
                gc.disable()
            try:
                t0 = time.perf_counter_ns()
                await fn()
                times[key].append(time.perf_counter_ns() - t0)
            finally:
                gc.enable()
    return Comparison(name, per, times["subject"], times["baseline"])


# -- 1. emit -> stream, per event ---------------------------------------------------


async def _burst_agent(chunks: list[str]) -> None:
    emit = agentnb.emit
    for chunk in chunks:
        emit(chunk)


async def _paced_agent(chunks: list[str]) -> None:
    emit = agentnb.emit
    sleep = asyncio.sleep
    for chunk in chunks:
        emit(chunk)
        await sleep(0)


async def _burst_producer(queue: asyncio.Queue[Item], chunks: list[str]) -> None:
    put = queue.put_nowait
    for chunk in chunks:
        put(chunk)
    put(END)


async def _paced_producer(queue: asyncio.Queue[Item], chunks: list[str]) -> None:
    put = queue.put_nowait
    sleep = asyncio.sleep
    for chunk in chunks:
        put(chunk)
        await sleep(0)
    put(END)


async def _consume_stream(agent: Agent, chunks: list[str]) -> int:
    count = 0
    async for _event in agentnb.stream(agent, chunks):
        count += 1
    return count


async def _consume_queue(queue: asyncio.Queue[Item]) -> int:
    count = 0
    get = queue.get
    while not isinstance(await get(), _End):
        count += 1
    return count


def _stream_round(agent: Agent, chunks: list[str]) -> Callable[[], Awaitable[None]]:
    async def go() -> None:
        # The agent's events plus its Done event.
        _expect("agentnb.stream", await _consume_stream(agent, chunks), len(chunks) + 1)

    return go


def _queue_round(producer: Producer, chunks: list[str]) -> Callable[[], Awaitable[None]]:
    async def go() -> None:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        task = asyncio.create_task(producer(queue, chunks))
        _expect("asyncio.Queue", await _consume_queue(queue), len(chunks))
        await task

    return go


# -- 2. many concurrent runs ------------------------------------------------------


async def _many_runs(chunks: list[str], runs: int) -> None:
    consumers = [asyncio.create_task(_consume_stream(_paced_agent, chunks)) for _ in range(runs)]
    for count in await asyncio.gather(*consumers):
        _expect("agentnb.stream", count, len(chunks) + 1)


async def _many_pairs(chunks: list[str], runs: int) -> None:
    consumers = []
    producers = []
    for _ in range(runs):
        queue: asyncio.Queue[Item] = asyncio.Queue()
        consumers.append(asyncio.create_task(_consume_queue(queue)))
        producers.append(asyncio.create_task(_paced_producer(queue, chunks)))
    for count in await asyncio.gather(*consumers):
        _expect("asyncio.Queue", count, len(chunks))
    if not all(p.done() for p in producers):
        raise RuntimeError("a producer outlived its consumer")


async def _idle_agent(gate: asyncio.Event, ready: list[int]) -> None:
    ready[0] += 1
    await gate.wait()


async def _idle_producer(queue: asyncio.Queue[Item], gate: asyncio.Event, ready: list[int]) -> None:
    ready[0] += 1
    await gate.wait()
    queue.put_nowait(END)


async def _consume_idle_stream(gate: asyncio.Event, ready: list[int]) -> int:
    count = 0
    async for _event in agentnb.stream(_idle_agent, gate, ready):
        count += 1
    return count


async def _idle_bytes(runs: int, *, use_agentnb: bool) -> float:
    """Traced bytes per idle run (or per idle producer/consumer pair)."""
    gate = asyncio.Event()
    ready = [0]
    # Room for every task reference, allocated before measuring: the lists cost both sides nothing.
    tasks: list[asyncio.Task[int] | asyncio.Task[None] | None] = [None] * (2 * runs)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(runs):
            if use_agentnb:
                tasks[i] = asyncio.create_task(_consume_idle_stream(gate, ready))
            else:
                queue: asyncio.Queue[Item] = asyncio.Queue()
                tasks[2 * i] = asyncio.create_task(_consume_queue(queue))
                tasks[2 * i + 1] = asyncio.create_task(_idle_producer(queue, gate, ready))
        for _ in range(100):  # let every consumer and every agent reach its wait
            await asyncio.sleep(0)
            if ready[0] == runs:
                break
        await asyncio.sleep(0)
        if ready[0] != runs:
            raise RuntimeError(f"only {ready[0]} of {runs} agents started")
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gate.set()
        await asyncio.gather(*(t for t in tasks if t is not None))
    want = 1 if use_agentnb else 0  # the Done event, or nothing before the end marker
    for t in tasks:
        if t is not None and t.result() not in (None, want):
            raise RuntimeError(f"an idle consumer got {t.result()} items, expected {want}")
    return used / runs


# -- 3. import time -----------------------------------------------------------------

_IMPORT_CODE = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def _child_env(pycache: str) -> dict[str, str]:
    """The environment of the child interpreters: bytecode cached in *pycache*.

    As for an installed package, no timed import compiles from source (even when
    PYTHONDONTWRITEBYTECODE is set), and nothing is written next to the sources.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _import_ns(module: str, env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE.format(module)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    return round(float(out.stdout) * 1e9)


def import_times(spawns: int, env: dict[str, str]) -> Comparison:
    _import_ns("agentnb", env)  # fills the bytecode cache
    _import_ns("asyncio", env)
    times: dict[str, list[int]] = {"agentnb": [], "asyncio": []}
    for i in range(spawns):
        order = ["agentnb", "asyncio"] if i % 2 == 0 else ["asyncio", "agentnb"]
        for module in order:
            times[module].append(_import_ns(module, env))
    return Comparison("import in a fresh interpreter", 1, times["agentnb"], times["asyncio"])


def importtime(module: str, env: dict[str, str], runs: int = 3) -> dict[str, tuple[int, int]]:
    """``-X importtime`` for ``import <module>``: {module: (self us, cumulative us)}.

    Each module's best of *runs* fresh interpreters; only the imports that
    ``import <module>`` triggers, not the interpreter's start-up.
    """
    best: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        block: list[tuple[str, int, int]] = []
        for line in out.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
            block.append((name.strip(), int(self_us), int(cumulative_us)))
            if not name.startswith("  "):  # a top-level import closes its block
                if name.strip() == module:
                    break
                block = []
        for name, self_us_i, cumulative_i in block:
            old = best.get(name)
            if old is None or self_us_i < old[0]:
                best[name] = (self_us_i, cumulative_i)
    return best


def _print_top(title: str, times: dict[str, tuple[int, int]], top: int = 5) -> None:
    print(f"  {title}")
    print(f"    {'self':>9} {'cumulative':>11}  module")
    ranked = sorted(times.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    for name, (self_us, cumulative_us) in ranked:
        print(f"    {self_us / 1e3:>6.1f} ms {cumulative_us / 1e3:>8.1f} ms  {name}")


# -- main --------------------------------------------------------------------------


async def run_async(sizes: Sizes) -> list[Row]:
    rows: list[Row] = []

    print("1. emit -> stream, per event (agentnb.stream vs an asyncio.Queue put/get loop)")
    shapes: list[tuple[str, int, Agent, Producer, bool]] = [
        # A burst the size of the notebook front's wire benchmark (5,000 chunks), then
        # an extreme one: 200,000 chunks with no await, all alive at once for the GC.
        ("burst 5k", sizes.small_burst_events, _burst_agent, _burst_producer, False),
        ("burst", sizes.burst_events, _burst_agent, _burst_producer, False),
        # Not a goal: the same burst with the cyclic GC paused, to show its share.
        ("burst, gc paused", sizes.burst_events, _burst_agent, _burst_producer, True),
        ("paced", sizes.paced_events, _paced_agent, _paced_producer, False),
    ]
    for shape, n, agent, producer, gc_off in shapes:
        chunks = make_chunks(n)
        rounds = sizes.event_rounds * (5 if n < 10_000 else 1)  # small sizes are noisier
        c = await _compare(
            f"{shape}: {n:,} str chunks, {rounds} rounds",
            n,
            _stream_round(agent, chunks),
            _queue_round(producer, chunks),
            rounds,
            gc_off=gc_off,
        )
        _print_comparison(c, "emit -> agentnb.stream", "put_nowait -> await get()")
        rows.append(
            (
                f"per event, {shape}",
                f"{c.subject_median():.0f} ns",
                f"{c.baseline_median():.0f} ns",
                f"{c.ratio_median():.2f}x ({c.ratio_best():.2f}x best)",
                "(info)" if gc_off else "<= 1.5x",
                "-" if gc_off else _met(c.ratio_median(), c.ratio_best(), 1.5),
            )
        )

    print()
    print(
        f"2. {sizes.runs:,} concurrent runs of {sizes.events_per_run} paced events "
        "(each consumed by its own task)"
    )
    chunks = make_chunks(sizes.events_per_run)
    runs = sizes.runs

    async def many_runs() -> None:
        await _many_runs(chunks, runs)

    async def many_pairs() -> None:
        await _many_pairs(chunks, runs)

    c = await _compare(
        f"wall time, {sizes.run_rounds} rounds", 1, many_runs, many_pairs, sizes.run_rounds
    )
    _print_comparison(c, "agentnb.stream runs", "task + queue + task pairs")
    rows.append(
        (
            f"{runs:,} concurrent runs",
            _fmt_time(statistics.median(c.subject)),
            _fmt_time(statistics.median(c.baseline)),
            f"{c.ratio_median():.2f}x ({c.ratio_best():.2f}x best)",
            "<= 2x",
            _met(c.ratio_median(), c.ratio_best(), 2.0),
        )
    )

    idle = sizes.idle_runs
    run_bytes = min([await _idle_bytes(idle, use_agentnb=True) for _ in range(2)])
    pair_bytes = min([await _idle_bytes(idle, use_agentnb=False) for _ in range(2)])
    print(f"  traced memory of {idle:,} idle runs (tracemalloc, best of 2)")
    print(f"    agentnb.stream run           {run_bytes:,.0f} bytes each")
    print(f"    task + queue + task pair     {pair_bytes:,.0f} bytes each")
    print(f"    ratio                        {run_bytes / pair_bytes:.2f}x")
    rows.append(
        (
            "bytes per idle run",
            f"{run_bytes:,.0f} B",
            f"{pair_bytes:,.0f} B",
            f"{run_bytes / pair_bytes:.2f}x",
            "report",
            "-",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"agentnb {agentnb.__version__}, Python {sys.version.split()[0]}, {sys.platform}")
    print()
    rows = asyncio.run(run_async(sizes))

    print()
    print(
        f"3. import time ({sizes.import_spawns} fresh interpreters each, alternating; "
        "bytecode cached)"
    )
    with tempfile.TemporaryDirectory(prefix="agentnb-bench-pycache-") as pycache:
        env = _child_env(pycache)
        c = import_times(sizes.import_spawns, env)
        _print_comparison(c, "import agentnb", "import asyncio (reference)")
        own = statistics.median(c.subject) - statistics.median(c.baseline)
        print(f"    {'agentnb beyond asyncio':<28} median {_fmt_time(own)}")
        ours = importtime("agentnb", env)
        theirs = importtime("asyncio", env)
    _print_top("top 5 in import agentnb (-X importtime, best of 3, by self time)", ours)
    beyond = {name: t for name, t in ours.items() if name not in theirs}
    _print_top("top 5 of the modules that import asyncio does not load", beyond)
    median_ms = statistics.median(c.subject) / 1e6
    best_ms = min(c.subject) / 1e6
    rows.append(
        (
            "import agentnb",
            f"{median_ms:.1f} ms ({best_ms:.1f} best)",
            f"{statistics.median(c.baseline) / 1e6:.1f} ms",
            f"{c.ratio_median():.2f}x ({c.ratio_best():.2f}x best)",
            "<= 50 ms",
            _met(median_ms, best_ms, 50.0),
        )
    )

    print()
    print("Summary (medians; the baseline is plain asyncio, measured in the same run)")
    table = Table("measure", "agentnb", "baseline", "ratio", "goal", "met")
    table.extend(rows)
    table.print()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
