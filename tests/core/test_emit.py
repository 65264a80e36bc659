"""``emit`` from every place agent code runs, under contention, and when misused."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import itertools
import threading
from collections.abc import Awaitable, Callable

import pytest

import agentnb
from tests.helpers import Recorder, texts


class SlowRecorder(Recorder):
    """An async sink that gives the loop away before taking each event."""

    async def send(self, event: agentnb.Event) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.events.append(event)


def assert_one_clean_run(events: list[agentnb.Event], run_id: str) -> None:
    """All of *run_id*'s events, seq 0..n-1, exactly one terminal, and it is last."""
    assert events, "the sink got nothing"
    assert {e.run_id for e in events} == {run_id}
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.terminal for e in events] == [False] * (len(events) - 1) + [True]


# -- every route into a run -----------------------------------------------------

# Each route emits its three texts from somewhere else and returns the thread ids it used.
Route = Callable[[str], Awaitable[set[int]]]


def _emit_three(label: str) -> int:
    for i in range(3):
        agentnb.emit(f"{label} {i}")
    return threading.get_ident()


async def _from_async(label: str) -> set[int]:
    for i in range(3):
        agentnb.emit(f"{label} {i}")
        await asyncio.sleep(0)
    return {threading.get_ident()}


async def _from_sync_helper(label: str) -> set[int]:
    return {_emit_three(label)}


async def _from_to_thread(label: str) -> set[int]:
    return {await asyncio.to_thread(_emit_three, label)}


async def _from_executor(label: str) -> set[int]:
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return {await loop.run_in_executor(None, ctx.run, _emit_three, label)}


async def _from_thread_in_context(label: str) -> set[int]:
    used: set[int] = set()
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(lambda: used.add(_emit_three(label)),))
    thread.start()
    await asyncio.to_thread(thread.join)
    return used


async def _from_captured_run(label: str) -> set[int]:
    run = agentnb.current_run()
    used: set[int] = set()
    outside: list[BaseException] = []

    def work() -> None:  # a plain thread: agentnb's context variable is not set here
        used.add(threading.get_ident())
        try:
            agentnb.emit("lost")
        except agentnb.NoActiveRun as exc:
            outside.append(exc)
        for i in range(3):
            run.emit(f"{label} {i}")

    thread = threading.Thread(target=work)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert len(outside) == 1, "a thread without the run's context still found the run"
    return used


ROUTES: dict[str, tuple[Route, bool]] = {
    # name: (route, runs on another thread)
    "async": (_from_async, False),
    "sync_helper": (_from_sync_helper, False),
    "to_thread": (_from_to_thread, True),
    "executor": (_from_executor, True),
    "thread_in_context": (_from_thread_in_context, True),
    "captured_run": (_from_captured_run, True),
}


@pytest.mark.parametrize("route_name", list(ROUTES))
async def test_every_route_lands_in_its_own_run_in_order(route_name: str) -> None:
    route, threaded = ROUTES[route_name]
    loop_thread = threading.get_ident()

    async def agent(label: str) -> tuple[str, set[int]]:
        agentnb.emit(f"{label} before")
        used = await route(label)
        agentnb.emit(f"{label} after")
        return agentnb.current_run().id, used

    sinks = {label: Recorder() for label in ("A", "B")}
    # Two runs at once: each route must find its own run, not the other one.
    (id_a, used_a), (id_b, used_b) = await asyncio.gather(
        agentnb.run(agent, "A", sink=sinks["A"]), agentnb.run(agent, "B", sink=sinks["B"])
    )
    assert id_a != id_b
    for label, run_id, used in (("A", id_a, used_a), ("B", id_b, used_b)):
        events = sinks[label].events
        assert_one_clean_run(events, run_id)
        assert texts(events) == [f"{label} before"] + [f"{label} {i}" for i in range(3)] + [
            f"{label} after"
        ]
        assert all(e.path == ("agent",) for e in events)
        assert (loop_thread not in used) is threaded, f"{route_name} ran on {used}"


async def test_all_routes_in_one_run_keep_one_order_across_sinks() -> None:
    async def agent() -> None:
        for name, (route, _) in ROUTES.items():
            await route(name)

    plain, slow = Recorder(), SlowRecorder()
    streamed = [event async for event in agentnb.stream(agent, sink=[plain, slow])]
    expected = [f"{name} {i}" for name in ROUTES for i in range(3)]
    assert texts(streamed) == expected
    assert_one_clean_run(streamed, streamed[0].run_id)
    assert plain.events == streamed
    assert slow.events == streamed
    assert plain.closed
    assert slow.closed


# -- many threads at once -------------------------------------------------------


async def test_many_threads_emitting_at_once_lose_nothing_and_agree_on_order() -> None:
    threads, per_thread = 8, 1500
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()  # start together: as much contention on the run as possible
        for i in range(per_thread):
            if i % 5 == 0:
                agentnb.emit(agentnb.Custom("tick", {"t": t, "i": i}))
            else:
                agentnb.emit(f"{t}:{i}")

    async def agent() -> int:
        started = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker, t))
            for t in range(threads)
        ]
        for thread in started:
            thread.start()
        for thread in started:
            await asyncio.to_thread(thread.join)
        return threads * per_thread

    plain, slow = Recorder(), SlowRecorder()
    streamed = [event async for event in agentnb.stream(agent, sink=[plain, slow])]

    total = threads * per_thread
    assert len(streamed) == total + 1
    assert_one_clean_run(streamed, streamed[0].run_id)
    assert isinstance(streamed[-1], agentnb.Done)
    assert streamed[-1].result == total
    # Every sink saw the very same events in the very same order.
    assert plain.events == streamed
    assert slow.events == streamed
    assert all(a is b for a, b in zip(plain.events, streamed, strict=True))
    # Each thread's events arrive once each, in the order that thread emitted them.
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for event in streamed[:-1]:
        if isinstance(event, agentnb.TextChunk):
            t, i = map(int, event.text.split(":"))
        else:
            assert isinstance(event, agentnb.Custom)
            assert isinstance(event.data, dict)
            t, i = event.data["t"], event.data["i"]
        seen[t].append(i)
    assert seen == {t: list(range(per_thread)) for t in range(threads)}
    # The threads really did interleave (otherwise this test proves little).
    owners = [e.text.split(":")[0] for e in streamed if isinstance(e, agentnb.TextChunk)]
    switches = sum(1 for a, b in itertools.pairwise(owners) if a != b)
    assert switches >= threads - 1


# -- misuse -----------------------------------------------------------------------


def test_emit_outside_a_run_says_how_to_start_one() -> None:
    with pytest.raises(agentnb.NoActiveRun) as info:
        agentnb.emit("hello")
    message = str(info.value)
    assert "outside a run" in message
    assert "agentnb.run(" in message
    assert "agentnb.stream(" in message
    assert isinstance(info.value, LookupError)


async def test_emit_and_current_run_outside_a_run_in_async_code() -> None:
    with pytest.raises(agentnb.NoActiveRun, match=r"agentnb\.current_run\(\)"):
        agentnb.current_run()
    with pytest.raises(agentnb.NoActiveRun, match=r"agentnb\.aemit\(\)"):
        await agentnb.aemit("hello")
    with pytest.raises(agentnb.NoActiveRun, match=r"agentnb\.run\("):
        agentnb.emit(agentnb.Status("working"))


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(123, "int"), (b"x", "bytes"), (None, "NoneType"), (["a"], "list"), (4.5, "float")],
)
async def test_emitting_a_non_event_is_refused_by_type_and_the_run_goes_on(
    value: object, type_name: str
) -> None:
    refused: list[agentnb.InvalidEvent] = []

    async def agent() -> str:
        agentnb.emit("one")
        agentnb.emit(agentnb.Status("two"))
        try:
            agentnb.emit(value)  # type: ignore[arg-type]
        except agentnb.InvalidEvent as exc:
            refused.append(exc)
        agentnb.emit("three")
        return "finished"

    rec = Recorder()
    assert await agentnb.run(agent, sink=rec) == "finished"
    assert len(refused) == 1
    assert type_name in str(refused[0])
    assert isinstance(refused[0], TypeError)
    assert [e.kind for e in rec.events] == ["text", "status", "text", "done"]
    # The refused emit took no sequence number.
    assert_one_clean_run(rec.events, rec.events[0].run_id)


async def test_bytes_are_refused_with_a_hint_to_decode() -> None:
    async def agent() -> None:
        agentnb.emit(b"data")  # type: ignore[arg-type]

    with pytest.raises(agentnb.InvalidEvent, match=r"bytes.*decode"):
        await agentnb.run(agent)


@pytest.mark.parametrize(
    "terminal",
    [agentnb.Done("x"), agentnb.Error("ValueError", "bad"), agentnb.Cancelled("stop")],
    ids=["done", "error", "cancelled"],
)
async def test_emitting_a_terminal_event_yourself_is_refused(terminal: agentnb.Event) -> None:
    caught: list[agentnb.InvalidEvent] = []

    async def agent() -> str:
        agentnb.emit("before")
        try:
            agentnb.emit(terminal)
        except agentnb.InvalidEvent as exc:
            caught.append(exc)
        try:
            await agentnb.aemit(terminal)
        except agentnb.InvalidEvent as exc:
            caught.append(exc)
        agentnb.emit("after")
        return "real end"

    rec = Recorder()
    assert await agentnb.run(agent, sink=rec) == "real end"
    assert len(caught) == 2
    assert all(type(terminal).__name__ in str(exc) for exc in caught)
    assert all("terminal" in str(exc) for exc in caught)
    assert [e.kind for e in rec.events] == ["text", "text", "done"]
    done = rec.events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == "real end"
    assert_one_clean_run(rec.events, rec.events[0].run_id)


async def test_a_thread_emitting_after_the_run_ended_gets_run_closed() -> None:
    go = threading.Event()
    outcome: list[BaseException | None] = []

    def late() -> None:
        go.wait(10)
        try:
            agentnb.emit("too late")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread: list[threading.Thread] = []

    async def agent() -> str:
        agentnb.emit("in time")
        t = threading.Thread(target=contextvars.copy_context().run, args=(late,))
        thread.append(t)
        t.start()
        return agentnb.current_run().id  # returns without waiting for the thread

    rec = Recorder()
    run_id = await agentnb.run(agent, sink=rec)
    go.set()
    await asyncio.to_thread(thread[0].join)
    assert len(outcome) == 1
    exc = outcome[0]
    assert isinstance(exc, agentnb.RunClosed)
    assert exc.run_id == run_id
    assert exc.status == "done"
    assert run_id in str(exc)
    assert [e.kind for e in rec.events] == ["text", "done"]
    assert texts(rec.events) == ["in time"]


async def test_an_emit_racing_the_end_of_the_run_is_delivered_or_refused_never_lost() -> None:
    threads = 4
    delivered_ok = [0] * threads
    endings: list[BaseException | None] = [None] * threads
    warmed_up = threading.Barrier(threads + 1)

    def keep_emitting(t: int) -> None:
        i = 0
        try:
            while True:
                agentnb.emit(f"{t}:{i}")
                delivered_ok[t] = i = i + 1
                if i == 50:
                    warmed_up.wait(10)
        except BaseException as exc:
            endings[t] = exc

    workers: list[threading.Thread] = []

    async def agent() -> str:
        for t in range(threads):
            worker = threading.Thread(
                target=contextvars.copy_context().run, args=(keep_emitting, t)
            )
            workers.append(worker)
            worker.start()
        await asyncio.to_thread(warmed_up.wait, 10)
        return "ending while the threads still emit"

    rec = Recorder()
    await agentnb.run(agent, sink=rec)
    for worker in workers:
        await asyncio.to_thread(worker.join, 10)
    assert all(isinstance(e, agentnb.RunClosed) for e in endings), endings
    # Every emit that returned normally was delivered once, in order, before Done.
    assert rec.events[-1].kind == "done"
    assert_one_clean_run(rec.events, rec.events[0].run_id)
    got: dict[int, list[int]] = {t: [] for t in range(threads)}
    for text in texts(rec.events):
        t, i = map(int, text.split(":"))
        got[t].append(i)
    assert got == {t: list(range(delivered_ok[t])) for t in range(threads)}


async def test_emit_on_a_captured_run_after_it_ended_gets_run_closed() -> None:
    async def agent() -> agentnb.Run:
        return agentnb.current_run()

    run = await agentnb.run(agent)
    assert run.done
    with pytest.raises(agentnb.RunClosed):
        run.emit("late")
    with pytest.raises(agentnb.RunClosed):
        await run.aemit("late")
    # Only because a loop is running here: the run itself is over either way.
    with pytest.raises(agentnb.RunClosed):
        await asyncio.to_thread(run.emit, "late, from a thread")


async def test_an_uncaught_invalid_event_ends_the_run_with_error_after_earlier_events() -> None:
    async def agent() -> None:
        agentnb.emit("first")
        agentnb.emit(agentnb.ToolCall("look_up", {"q": "sea"}))
        await asyncio.sleep(0)
        agentnb.emit(object())  # type: ignore[arg-type]
        agentnb.emit("never")

    rec = Recorder()
    with pytest.raises(agentnb.InvalidEvent, match="object"):
        await agentnb.run(agent, sink=rec)
    assert [e.kind for e in rec.events] == ["text", "tool_call", "error"]
    error = rec.events[-1]
    assert isinstance(error, agentnb.Error)
    assert error.type.endswith("InvalidEvent")
    assert "object" in error.message
    assert_one_clean_run(rec.events, rec.events[0].run_id)
    assert rec.closed


class Mood(enum.StrEnum):
    CALM = "calm"


async def test_a_str_subclass_is_emitted_as_text() -> None:
    """``emit`` takes "a str": a StrEnum member or other str subclass is one."""

    async def agent() -> None:
        agentnb.emit(Mood.CALM)

    rec = Recorder()
    await agentnb.run(agent, sink=rec)
    assert [e.kind for e in rec.events] == ["text", "done"]
    chunk = rec.events[0]
    assert isinstance(chunk, agentnb.TextChunk)
    assert chunk.text == "calm"
    assert type(chunk.text) is str  # the plain value, so the event round-trips
    assert agentnb.Event.from_json(chunk.to_json()) == chunk
