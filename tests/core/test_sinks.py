"""Sinks: every shape gets every event in order, close() once, failures isolated, backpressure."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

import agentnb
from agentnb import AgentnbError, Custom, Event, Status, ToolCall, ToolResult
from agentnb.testing import capture_events


class SyncSink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closes: list[int] = []  # len(events) at each close()

    def send(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closes.append(len(self.events))


class AsyncSink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closes: list[int] = []

    async def send(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.events.append(event)

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.closes.append(len(self.events))


class AsyncCallable:
    """An object whose __call__ is async: used as a plain callable sink."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.events.append(event)


async def chatty(n: int) -> str:
    agentnb.emit(Status("starting"))
    for i in range(n):
        agentnb.emit(f"word{i} ")
        if i % 3 == 0:
            call = ToolCall("tool", {"i": i})
            agentnb.emit(call)
            await asyncio.sleep(0)
            agentnb.emit(ToolResult("tool", i * i, call_id=call.call_id))
        if i % 5 == 0:
            agentnb.emit(Custom("progress", {"done": i}))
    await agentnb.run(child_agent, "nested")
    return "ok"


async def child_agent(what: str) -> int:
    agentnb.emit(Status(f"child {what}"))
    agentnb.emit("child text")
    return 7


async def test_every_sink_shape_receives_every_event_in_the_same_order() -> None:
    sync_sink, async_sink, async_callable = SyncSink(), AsyncSink(), AsyncCallable()
    plain: list[Event] = []

    async def async_function(event: Event) -> None:
        await asyncio.sleep(0)
        function_events.append(event)

    function_events: list[Event] = []
    with capture_events() as captured:
        result = await agentnb.run(
            chatty,
            20,
            sink=[sync_sink, async_sink, plain.append, async_function, async_callable],
        )
    assert result == "ok"
    parent = [e for e in captured if e.path == ("chatty",)]
    child = [e for e in captured if e.path == ("chatty", "child_agent")]
    assert len(parent) + len(child) == len(captured)
    assert [e.seq for e in parent] == list(range(len(parent)))
    assert [e.seq for e in child] == list(range(len(child)))
    assert [e.kind for e in child] == ["status", "text", "done"]
    assert captured[-1].kind == "done"
    assert captured[-1].path == ("chatty",)
    # 1 status + 20 words + 7 calls + 7 results + 4 progress + 3 child events + done
    assert len(captured) == 1 + 20 + 7 + 7 + 4 + 3 + 1
    for received in (
        sync_sink.events,
        async_sink.events,
        plain,
        function_events,
        async_callable.events,
    ):
        assert received == list(captured)
        assert all(a is b for a, b in zip(received, captured, strict=True))


async def test_a_single_sink_and_a_tuple_of_sinks_are_accepted() -> None:
    one = SyncSink()
    await agentnb.run(child_agent, "x", sink=one)
    assert [e.kind for e in one.events] == ["status", "text", "done"]
    first, second = SyncSink(), AsyncSink()
    await agentnb.run(child_agent, "y", sink=(first, second))
    assert first.events == second.events
    assert [e.kind for e in second.events] == ["status", "text", "done"]


@pytest.mark.parametrize("make", [SyncSink, AsyncSink])
async def test_close_is_called_once_after_the_terminal_event(
    make: type[SyncSink] | type[AsyncSink],
) -> None:
    sink = make()
    await agentnb.run(chatty, 4, sink=sink)
    assert sink.closes == [len(sink.events)]
    assert sink.events[-1].kind == "done"
    assert sink.events[-1].path == ("chatty",)


async def test_close_is_called_once_after_an_error_and_after_a_cancel() -> None:
    failing_sink = AsyncSink()

    async def fails() -> None:
        agentnb.emit("before")
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await agentnb.run(fails, sink=failing_sink)
    assert [e.kind for e in failing_sink.events] == ["text", "error"]
    assert failing_sink.closes == [2]

    cancelled_sink = SyncSink()
    started = asyncio.Event()

    async def waits() -> None:
        agentnb.emit("waiting")
        started.set()
        await asyncio.Event().wait()

    run = agentnb.start(waits, sink=cancelled_sink)
    await started.wait()
    assert run.cancel("enough")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert [e.kind for e in cancelled_sink.events] == ["text", "cancelled"]
    assert cancelled_sink.closes == [2]


async def test_a_child_runs_own_sink_is_closed_when_the_child_ends() -> None:
    child_sink = SyncSink()
    parent_sink = SyncSink()
    seen_at_child_end: list[list[int]] = []

    async def parent() -> None:
        await agentnb.run(child_agent, "c", sink=child_sink)
        seen_at_child_end.append(list(child_sink.closes))
        agentnb.emit("after child")

    await agentnb.run(parent, sink=parent_sink)
    assert seen_at_child_end == [[3]]  # closed before run() of the child returned
    assert child_sink.closes == [3]
    assert [e.kind for e in child_sink.events] == ["status", "text", "done"]
    # The parent's sink saw the child's events too, and was closed once, at its own end.
    assert [e.kind for e in parent_sink.events] == ["status", "text", "done", "text", "done"]
    assert parent_sink.closes == [5]


class Exploding:
    def __init__(self, after: int) -> None:
        self.after = after
        self.events: list[Event] = []
        self.error = ValueError("sink is broken")

    def send(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) == self.after:
            raise self.error


async def test_a_raising_sink_is_reported_and_cut_off_while_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = Exploding(after=3)
    before, after = SyncSink(), AsyncSink()
    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(chatty, 10, sink=[before, bad, after])
        assert await run.wait() == "ok"
    assert len(bad.events) == 3  # the failing event was its last one
    assert before.events == after.events
    assert before.events[-1].kind == "done"
    assert len(before.events) > 10
    assert bad.events == before.events[:3]
    assert run.sink_errors == [(bad, bad.error)]
    records = [r for r in caplog.records if r.name == "agentnb"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is bad.error
    message = record.getMessage()
    assert "ValueError" in message
    assert "seq=2" in message
    assert "Exploding" in message


async def test_an_async_sink_that_raises_is_reported_too(caplog: pytest.LogCaptureFixture) -> None:
    good = SyncSink()

    class AsyncBad:
        def __init__(self) -> None:
            self.count = 0

        async def send(self, event: Event) -> None:
            self.count += 1
            await asyncio.sleep(0)
            raise RuntimeError("async sink failed")

    bad = AsyncBad()
    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(chatty, 5, sink=[bad, good])
        await run.wait()
    assert bad.count == 1
    assert good.events[-1].kind == "done"
    assert len(run.sink_errors) == 1
    assert run.sink_errors[0][0] is bad
    assert isinstance(run.sink_errors[0][1], RuntimeError)
    assert any("RuntimeError" in r.getMessage() for r in caplog.records if r.name == "agentnb")


async def test_a_close_that_raises_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    class BadClose(SyncSink):
        def close(self) -> None:
            raise OSError("disk full")

    sink = BadClose()
    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(child_agent, "x", sink=sink)
        assert await run.wait() == 7
    assert [e.kind for e in sink.events] == ["status", "text", "done"]
    assert len(run.sink_errors) == 1
    assert isinstance(run.sink_errors[0][1], OSError)
    messages = [r.getMessage() for r in caplog.records if r.name == "agentnb"]
    assert len(messages) == 1
    assert "close" in messages[0]


async def test_a_slow_async_sink_stalls_neither_the_agent_nor_the_other_sinks() -> None:
    gate = asyncio.Event()  # the slow sink cannot take anything until this opens
    agent_done = asyncio.Event()
    fast_done = asyncio.Event()

    class Slow:
        def __init__(self) -> None:
            self.events: list[Event] = []

        async def send(self, event: Event) -> None:
            await gate.wait()
            self.events.append(event)

    class Fast(SyncSink):
        def send(self, event: Event) -> None:
            super().send(event)
            if event.terminal:
                fast_done.set()

    async def busy() -> int:
        for i in range(200):
            agentnb.emit(f"{i} ")
            if i % 20 == 0:
                await asyncio.sleep(0)
        agent_done.set()
        return 200

    slow, fast = Slow(), Fast()
    run = agentnb.start(busy, sink=[slow, fast])
    await asyncio.wait_for(agent_done.wait(), 30)
    assert slow.events == []  # the agent finished all its emits while the slow sink waited
    await asyncio.wait_for(fast_done.wait(), 30)
    assert slow.events == []  # the fast sink got everything, done included, meanwhile
    assert len(fast.events) == 201
    assert run.done  # the terminal event was emitted without waiting for the slow sink
    gate.set()
    assert await run.wait() == 200
    assert slow.events == fast.events


@pytest.mark.parametrize(
    "bad",
    [42, "not a sink", {"send": print}, [SyncSink(), 3.5], (None,)],
    ids=["int", "str", "dict", "list with a float", "tuple with None"],
)
async def test_an_invalid_sink_is_refused_before_the_run_starts(bad: object) -> None:
    started: list[bool] = []

    async def agent() -> None:
        started.append(True)

    with pytest.raises(AgentnbError, match=r"not a sink.*send\(event\)"):
        await agentnb.run(agent, sink=bad)  # type: ignore[arg-type]
    with pytest.raises(AgentnbError, match="not a sink"):
        agentnb.start(agent, sink=bad)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == []


async def test_an_invalid_sink_message_names_the_value() -> None:
    with pytest.raises(AgentnbError, match="sink=42"):
        await agentnb.run(child_agent, "x", sink=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("maxsize", [-1, "3", 2.0])
async def test_a_bad_maxsize_is_refused(maxsize: object) -> None:
    class Bounded(SyncSink):
        pass

    sink = Bounded()
    sink.maxsize = maxsize  # type: ignore[attr-defined]
    with pytest.raises(AgentnbError, match="maxsize"):
        await agentnb.run(child_agent, "x", sink=sink)
    assert sink.events == []


class Lagging:
    """An async sink that takes several loop turns per event and may be bounded."""

    def __init__(self, maxsize: int, turns: int = 4) -> None:
        self.maxsize = maxsize
        self.turns = turns
        self.received = 0

    async def send(self, event: Event) -> None:
        self.received += 1
        for _ in range(self.turns):
            await asyncio.sleep(0)


async def _lag_profile(sink: Lagging, use_aemit: bool, n: int) -> list[int]:
    """Run an agent that emits n events against *sink*; the backlog after each emit."""
    backlog: list[int] = []

    async def producer() -> None:
        for i in range(n):
            if use_aemit:
                await agentnb.aemit(f"{i} ")
            else:
                agentnb.emit(f"{i} ")
                await asyncio.sleep(0)
            backlog.append((i + 1) - sink.received)

    await agentnb.run(producer, sink=sink)
    assert sink.received == n + 1
    return backlog


@pytest.mark.parametrize("maxsize", [1, 3, 8])
async def test_aemit_holds_the_agent_until_a_bounded_sink_catches_up(maxsize: int) -> None:
    n = 60
    held = await _lag_profile(Lagging(maxsize), use_aemit=True, n=n)
    assert max(held) <= maxsize + 1
    assert max(held) >= maxsize  # the sink really was behind: the bound was reached
    # The same agent with plain emit is never held: the backlog grows far past maxsize.
    free = await _lag_profile(Lagging(maxsize), use_aemit=False, n=n)
    assert max(free) > 3 * (maxsize + 1)


async def test_aemit_without_a_bounded_sink_does_not_wait() -> None:
    sink = Lagging(maxsize=0)
    backlog = await _lag_profile(sink, use_aemit=True, n=40)
    assert max(backlog) > 10


async def test_aemit_does_not_deadlock_on_a_bounded_sink_that_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenBounded:
        maxsize = 1

        def __init__(self) -> None:
            self.calls = 0

        async def send(self, event: Event) -> None:
            self.calls += 1
            await asyncio.sleep(0)
            raise RuntimeError("gone")

    async def producer() -> int:
        for i in range(30):
            await agentnb.aemit(f"{i}")
        return 30

    sink = BrokenBounded()
    with caplog.at_level(logging.ERROR, logger="agentnb"):
        assert await asyncio.wait_for(agentnb.run(producer, sink=sink), 30) == 30
    assert sink.calls == 1


async def test_a_bounded_parent_sink_holds_a_child_run_that_uses_aemit() -> None:
    sink = Lagging(maxsize=2)
    backlog: list[int] = []

    async def child() -> None:
        for i in range(30):
            await agentnb.aemit(f"{i}")
            backlog.append((i + 1) - sink.received)

    async def parent() -> None:
        await agentnb.run(child)

    await agentnb.run(parent, sink=sink)
    assert max(backlog) <= sink.maxsize + 1
    assert max(backlog) >= sink.maxsize
    assert sink.received == 30 + 2  # 30 texts, the child's done, the parent's done


async def test_a_sync_send_that_returns_an_awaitable_is_awaited() -> None:
    # The Sink protocol types send() as returning "Awaitable[None] | None", and a sink like
    # `sink=lambda event: websocket.send_text(event.to_json())` returns a coroutine from a
    # plain function. replay() awaits such a result; a run must too, or the events are lost.
    received: list[Event] = []
    made: list[Coroutine[Any, Any, None]] = []

    async def deliver(event: Event) -> None:
        await asyncio.sleep(0)
        received.append(event)

    def send(event: Event) -> Coroutine[Any, Any, None]:
        coro = deliver(event)
        made.append(coro)
        return coro

    try:
        await agentnb.run(child_agent, "x", sink=send)
    finally:
        for coro in made:  # never awaited: close them so Python does not warn later
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()
    assert [e.kind for e in received] == ["status", "text", "done"]


# -- sinks that block ------------------------------------------------------------------


class Sleepy:
    """A synchronous sink whose send blocks its thread for a while."""

    def __init__(self, seconds: float, *, blocking: bool) -> None:
        self.seconds = seconds
        self.blocking = blocking
        self.threads: set[int] = set()
        self.count = 0

    def send(self, event: Event) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        self.count += 1


async def ticks_during(sink: Sleepy, events: int) -> int:
    """How often another task of the loop got to run while *sink* took *events* events."""

    async def burst() -> None:
        for i in range(events):
            agentnb.emit(f"{i} ")

    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await agentnb.run(burst, sink=sink)
    stop.set()
    await task
    return ticks


async def test_a_blocking_sink_runs_in_a_worker_thread_and_the_loop_goes_on() -> None:
    on_loop = Sleepy(0.005, blocking=False)
    off_loop = Sleepy(0.005, blocking=True)
    stalled = await ticks_during(on_loop, 40)
    free = await ticks_during(off_loop, 40)
    assert on_loop.count == off_loop.count == 41
    assert on_loop.threads == {threading.get_ident()}
    assert threading.get_ident() not in off_loop.threads
    assert free > 10 * stalled  # the loop ran on while the sink slept in its thread


async def test_a_burst_into_a_synchronous_sink_still_lets_other_tasks_run() -> None:
    # 200 events of 1 ms each: the feeder lets the loop turn every few of them.
    sink = Sleepy(0.001, blocking=False)
    ticks = await ticks_during(sink, 200)
    assert sink.count == 201
    assert ticks >= 5


def test_blocking_is_for_plain_sends_only() -> None:
    class AsyncBlocking:
        blocking = True

        async def send(self, event: Event) -> None:
            pass

    async def agent() -> None:
        pass

    with pytest.raises(agentnb.InvalidSink, match="blocking = True"):
        agentnb.run_sync(agent, sink=AsyncBlocking())
