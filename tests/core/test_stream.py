"""``agentnb.stream()``: order, early exits, errors, backpressure."""

from __future__ import annotations

import asyncio

import pytest

import agentnb
from tests.helpers import Recorder, forever, texts


class Endless:
    """An agent that emits "0", "1", ... until cancelled, and notes that it was."""

    def __init__(self) -> None:
        self.cancelled = False

    async def __call__(self) -> None:
        i = 0
        try:
            while True:
                agentnb.emit(str(i))
                i += 1
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_stream_yields_every_event_in_order_ending_with_done() -> None:
    async def agent(n: int) -> str:
        agentnb.emit(agentnb.Status("starting"))
        for i in range(n):
            agentnb.emit(str(i))
            if i % 3 == 0:
                await asyncio.sleep(0)
        call = agentnb.ToolCall("look_up", {"n": n})
        agentnb.emit(call)
        agentnb.emit(agentnb.ToolResult("look_up", [n], call_id=call.call_id))
        return f"counted {n}"

    s = agentnb.stream(agent, 10)
    with pytest.raises(RuntimeError, match="iterate"):
        _ = s.run
    events = [e async for e in s]
    assert [e.kind for e in events] == ["status"] + ["text"] * 10 + [
        "tool_call",
        "tool_result",
        "done",
    ]
    assert texts(events) == [str(i) for i in range(10)]
    assert [e.seq for e in events] == list(range(len(events)))
    assert {e.run_id for e in events} == {s.run.id}
    assert {e.path for e in events} == {("agent",)}
    done = events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == "counted 10"
    assert s.run.status == "done"
    # Iterating again after the end gives nothing more.
    assert [e async for e in s] == []


async def test_a_stream_of_an_agent_that_emits_nothing_is_just_done() -> None:
    async def quiet() -> None:
        return None

    events = [e async for e in agentnb.stream(quiet)]
    assert [e.kind for e in events] == ["done"]
    assert events[0].seq == 0
    assert isinstance(events[0], agentnb.Done)
    assert events[0].result is None


async def test_stream_gives_the_extra_sinks_the_same_events() -> None:
    async def agent() -> int:
        for i in range(20):
            agentnb.emit(str(i))
        return 20

    extra = Recorder()
    events = [e async for e in agentnb.stream(agent, sink=extra)]
    assert extra.events == events
    assert extra.ended.is_set()


async def test_break_out_of_the_loop_cancels_the_run() -> None:
    agent = Endless()
    extra = Recorder()
    seen: list[str] = []
    async for event in agentnb.stream(agent, sink=extra):
        assert isinstance(event, agentnb.TextChunk)
        seen.append(event.text)
        if event.text == "3":
            break
    assert seen == ["0", "1", "2", "3"]
    await asyncio.wait_for(extra.ended.wait(), 10)
    assert agent.cancelled
    assert extra.kinds()[-1] == "cancelled"
    assert extra.kinds().count("cancelled") == 1
    assert texts(extra.events)[:4] == seen
    assert [e.seq for e in extra.events] == list(range(len(extra.events)))


async def test_an_exception_in_the_loop_body_cancels_the_run() -> None:
    agent = Endless()
    extra = Recorder()

    async def consume() -> None:
        async for event in agentnb.stream(agent, sink=extra):
            if event.seq == 2:
                raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await consume()
    await asyncio.wait_for(extra.ended.wait(), 10)
    assert agent.cancelled
    assert extra.kinds()[-1] == "cancelled"


async def test_leaving_async_with_early_cancels_the_run_before_it_returns() -> None:
    agent = Endless()
    extra = Recorder()
    async with agentnb.stream(agent, sink=extra) as s:
        async for event in s:
            if event.seq == 5:
                break
    # __aexit__ waited for the run: everything is settled right here.
    assert agent.cancelled
    assert s.run.status == "cancelled"
    assert extra.ended.is_set()
    assert extra.kinds()[-1] == "cancelled"
    cancelled = extra.events[-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert cancelled.reason  # says why
    assert [e async for e in s] == []


async def test_async_with_exits_cleanly_after_a_full_iteration() -> None:
    async def agent() -> str:
        agentnb.emit("only")
        return "ok"

    async with agentnb.stream(agent) as s:
        events = [e async for e in s]
    assert [e.kind for e in events] == ["text", "done"]
    assert s.run.status == "done"


async def test_aclose_cancels_the_run() -> None:
    agent = Endless()
    extra = Recorder()
    s = agentnb.stream(agent, sink=extra)
    first = await s.__anext__()
    assert first.seq == 0
    await s.aclose()
    assert agent.cancelled
    assert s.run.status == "cancelled"
    assert extra.kinds()[-1] == "cancelled"
    with pytest.raises(StopAsyncIteration):
        await s.__anext__()
    await s.aclose()  # twice is fine


async def test_aclose_before_iterating_never_starts_the_agent() -> None:
    ran: list[bool] = []

    async def agent() -> None:
        ran.append(True)

    s = agentnb.stream(agent)
    await s.aclose()
    assert [e async for e in s] == []
    assert ran == []


async def test_cancelling_the_consumer_task_inside_async_with_cancels_the_run() -> None:
    agent = Endless()
    extra = Recorder()
    got_some = asyncio.Event()

    async def consume() -> None:
        async with agentnb.stream(agent, sink=extra) as s:
            async for event in s:
                if event.seq == 3:
                    got_some.set()

    task = asyncio.create_task(consume())
    await got_some.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.cancelled
    assert extra.ended.is_set()
    assert extra.kinds()[-1] == "cancelled"


async def test_run_cancel_mid_stream_yields_cancelled_and_ends() -> None:
    async def agent() -> None:
        agentnb.emit("working")
        await forever()

    s = agentnb.stream(agent)
    kinds: list[str] = []
    async for event in s:
        kinds.append(event.kind)
        if event.kind == "text":
            s.run.cancel("stop it")
    assert kinds == ["text", "cancelled"]
    assert s.run.status == "cancelled"


async def test_an_agent_error_is_yielded_then_raised() -> None:
    class Broken(Exception):
        pass

    async def agent() -> None:
        agentnb.emit("about to break")
        await asyncio.sleep(0)
        raise Broken("no luck")

    extra = Recorder()
    seen: list[agentnb.Event] = []

    async def consume() -> None:
        async for event in agentnb.stream(agent, sink=extra):
            seen.append(event)  # noqa: PERF401 (kept when iteration raises)

    with pytest.raises(Broken, match="no luck"):
        await consume()
    assert [e.kind for e in seen] == ["text", "error"]
    error = seen[-1]
    assert isinstance(error, agentnb.Error)
    assert error.message == "no luck"
    assert error.type.endswith("Broken")
    assert extra.events == seen
    assert extra.ended.is_set()


async def test_a_stream_inside_a_run_is_a_child_run() -> None:
    async def child() -> str:
        agentnb.emit("from the child")
        return "child done"

    async def parent() -> list[str]:
        return [e.kind async for e in agentnb.stream(child)]

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == ["text", "done"]
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent", "child"), "text"),
        (("parent", "child"), "done"),
        (("parent",), "done"),
    ]


# -- backpressure ---------------------------------------------------------------------


async def _consume_slowly(
    maxsize: int, n: int, *, turns_per_event: int = 3
) -> tuple[list[int], list[str]]:
    """Stream a producer of *n* texts through ``aemit``; return its lag at each emit."""
    consumed = 0
    lags: list[int] = []

    async def producer() -> int:
        for i in range(n):
            lags.append(i + 1 - consumed)  # undelivered events once this one is emitted
            await agentnb.aemit(str(i))
        return n

    got: list[str] = []
    async for event in agentnb.stream(producer, maxsize=maxsize):
        if isinstance(event, agentnb.TextChunk):
            consumed += 1
            got.append(event.text)
            for _ in range(turns_per_event):
                await asyncio.sleep(0)
    return lags, got


@pytest.mark.parametrize("maxsize", [1, 3, 16])
async def test_aemit_keeps_the_producer_at_most_maxsize_plus_one_ahead(maxsize: int) -> None:
    n = 200
    lags, got = await _consume_slowly(maxsize, n)
    assert got == [str(i) for i in range(n)]
    assert max(lags) <= maxsize + 1
    assert max(lags) == maxsize + 1  # the slow consumer really did hold the producer back


async def test_without_maxsize_aemit_does_not_wait() -> None:
    n = 200
    lags, got = await _consume_slowly(0, n)
    assert got == [str(i) for i in range(n)]
    assert max(lags) == n  # the producer ran all the way ahead


async def test_a_consumer_that_stops_while_the_producer_waits_for_room_cancels_it() -> None:
    waiting = asyncio.Event()
    observed: list[str] = []

    async def producer() -> None:
        try:
            for i in range(100):
                if i == 3:  # 0 was taken, 1 and 2 wait: this one must wait for room
                    waiting.set()
                await agentnb.aemit(str(i))
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise

    extra = Recorder()
    async with agentnb.stream(producer, sink=extra, maxsize=2) as s:
        first = await s.__anext__()
        await asyncio.wait_for(waiting.wait(), 10)
        for _ in range(5):
            await asyncio.sleep(0)
        assert texts(extra.events) == ["0", "1", "2", "3"]  # and no further
    assert first.seq == 0
    assert observed == ["cancelled"]
    assert extra.kinds()[-1] == "cancelled"
    assert extra.kinds() == ["text"] * 4 + ["cancelled"]
