"""10,000 concurrent runs of 100 events each, with failures and cancellations thrown in.

Every event must reach its own consumer exactly once, in order, and each run must end
with exactly one terminal event that matches how it ended.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

import agentnb

RUNS = 10_000
EVENTS = 100


class Boom(Exception):
    pass


class Recorder:
    def __init__(self) -> None:
        self.events: list[agentnb.Event] = []

    def send(self, event: agentnb.Event) -> None:
        self.events.append(event)


@dataclass
class Plan:
    index: int
    fate: str  # "done", "error", "cancel_run" (Run.cancel) or "cancel_task" (the consumer's)
    at: int  # the event the run fails or stops at
    consumer: str  # "run" or "stream"
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    run: agentnb.Run | None = None
    outcome: str = ""
    streamed: list[agentnb.Event] = field(default_factory=list)
    sink: Recorder = field(default_factory=Recorder)

    @property
    def expected_texts(self) -> int:
        return EVENTS if self.fate == "done" else self.at


def make_plans(rng: random.Random) -> list[Plan]:
    plans = []
    for index in range(RUNS):
        roll = rng.random()
        fate = (
            "error"
            if roll < 0.05
            else "cancel_run"
            if roll < 0.075
            else "cancel_task"
            if roll < 0.10
            else "done"
        )
        plans.append(Plan(index, fate, rng.randrange(EVENTS), rng.choice(("run", "stream"))))
    return plans


async def agent(plan: Plan) -> int:
    plan.run = agentnb.current_run()
    i = plan.index
    for j in range(EVENTS):
        if j == plan.at and plan.fate != "done":
            if plan.fate == "error":
                raise Boom(f"run {i} failed at {j}")
            plan.reached.set()
            await asyncio.get_running_loop().create_future()  # until cancelled
        agentnb.emit(f"{i}:{j}")
        if j % 10 == 9:
            await asyncio.sleep(0)
    return i


async def consume(plan: Plan) -> None:
    if plan.consumer == "run":
        try:
            value = await agentnb.run(agent, plan, sink=plan.sink)
        except Boom:
            plan.outcome = "error"
        except agentnb.RunCancelled:
            plan.outcome = "cancel_run"
        else:
            assert value == plan.index
            plan.outcome = "done"
        return
    try:
        async with agentnb.stream(agent, plan, sink=plan.sink) as s:
            async for event in s:
                plan.streamed.append(event)
    except Boom:
        plan.outcome = "error"
    else:
        last = plan.streamed[-1]
        plan.outcome = "cancel_run" if isinstance(last, agentnb.Cancelled) else "done"


async def cancel_when_reached(plan: Plan, consumer: asyncio.Task[None]) -> None:
    await plan.reached.wait()
    if plan.fate == "cancel_run":
        assert plan.run is not None
        assert plan.run.cancel(f"stop {plan.index}")
    else:
        consumer.cancel()


def problems_of(plan: Plan, events: list[agentnb.Event], problems: Counter[str]) -> None:
    """Count what is wrong with the events one consumer of *plan* received."""
    assert plan.run is not None
    i = plan.index
    texts: list[tuple[int, int]] = []
    for event in events:
        if event.run_id != plan.run.id:
            problems["crossed run_id"] += 1
        if isinstance(event, agentnb.TextChunk):
            owner, _, j = event.text.partition(":")
            if int(owner) != i:
                problems["crossed payload"] += 1
            texts.append((int(owner), int(j)))
    expected = [(i, j) for j in range(plan.expected_texts)]
    problems["lost"] += len(set(expected) - set(texts))
    problems["duplicated"] += len(texts) - len(set(texts))
    if texts != expected and sorted(texts) == expected:
        problems["reordered"] += 1
    if [e.seq for e in events] != list(range(len(events))):
        problems["seq gap"] += 1
    terminals = [e for e in events if e.terminal]
    if len(terminals) != 1 or not events[-1].terminal:
        problems["not exactly one terminal, last"] += 1
        return
    end = terminals[0]
    fine = {
        "done": isinstance(end, agentnb.Done) and end.result == i,
        "error": isinstance(end, agentnb.Error) and end.message == f"run {i} failed at {plan.at}",
        "cancel_run": isinstance(end, agentnb.Cancelled) and end.reason == f"stop {i}",
        "cancel_task": isinstance(end, agentnb.Cancelled),
    }[plan.fate]
    if not fine:
        problems[f"wrong terminal for {plan.fate}"] += 1


@pytest.mark.slow
async def test_ten_thousand_concurrent_runs_lose_duplicate_and_cross_nothing() -> None:
    plans = make_plans(random.Random(20240601))
    fates = Counter(p.fate for p in plans)
    assert all(fates[f] > 0 for f in ("done", "error", "cancel_run", "cancel_task"))

    started = time.perf_counter()
    consumers = [asyncio.create_task(consume(p)) for p in plans]
    cancellers = [
        asyncio.create_task(cancel_when_reached(p, task))
        for p, task in zip(plans, consumers, strict=True)
        if p.fate.startswith("cancel")
    ]
    await asyncio.wait(consumers)
    await asyncio.gather(*cancellers)
    elapsed = time.perf_counter() - started

    problems: Counter[str] = Counter()
    for plan, task in zip(plans, consumers, strict=True):
        if task.cancelled():
            plan.outcome = "cancel_task"
        elif task.exception() is not None:
            problems[f"consumer raised {task.exception()!r}"] += 1
            continue
        if plan.outcome != plan.fate:
            problems[f"{plan.fate} run ended as {plan.outcome}"] += 1
        problems_of(plan, plan.sink.events, problems)
        if plan.consumer == "stream" and plan.fate != "cancel_task":
            problems_of(plan, plan.streamed, problems)
            if plan.streamed != plan.sink.events:
                problems["stream and sink disagree"] += 1
        elif plan.consumer == "stream" and plan.streamed != plan.sink.events[: len(plan.streamed)]:
            # It stopped listening part-way: what it got must be the start of the run.
            problems["stream not a prefix of the sink"] += 1

    delivered = sum(len(p.sink.events) + len(p.streamed) for p in plans)
    print(
        f"\n{RUNS} runs x {EVENTS} events: {delivered} deliveries in {elapsed:.2f} s "
        f"({delivered / elapsed:,.0f}/s); fates {dict(fates)}"
    )
    assert {k: v for k, v in problems.items() if v} == {}
    assert len({p.run.id for p in plans if p.run is not None}) == RUNS
