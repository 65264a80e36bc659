"""``run``, ``start``, ``run_sync``: values, errors, child runs, agent shapes, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import agentnb
from harness.wait import eventually
from tests.helpers import Recorder, forever


class SlowRecorder(Recorder):
    """An async sink that takes a little while per event."""

    async def send(self, event: agentnb.Event) -> None:  # type: ignore[override]
        await asyncio.sleep(0.001)
        self.events.append(event)


def texts(events: list[agentnb.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, agentnb.TextChunk)]


def assert_seq_contiguous(events: list[agentnb.Event]) -> None:
    by_run: dict[str, list[int]] = {}
    for e in events:
        by_run.setdefault(e.run_id, []).append(e.seq)
    for run_id, seqs in by_run.items():
        assert seqs == list(range(len(seqs))), f"run {run_id}: seq {seqs}"


# -- values and errors --------------------------------------------------------------


async def test_run_returns_the_agents_value_and_done_carries_it() -> None:
    async def agent(a: int, *, b: int) -> dict[str, int]:
        agentnb.emit("adding")
        return {"sum": a + b}

    rec = Recorder()
    assert await agentnb.run(agent, 2, b=5, sink=rec) == {"sum": 7}
    assert rec.kinds() == ["text", "done"]
    done = rec.events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == {"sum": 7}
    assert rec.closed


class Boom(Exception):
    pass


async def test_the_agents_exception_is_reraised_after_its_error_event_was_delivered() -> None:
    def raising_helper_xyz(n: int) -> None:
        raise Boom(f"broke at {n}")

    async def agent() -> None:
        agentnb.emit("working")
        await asyncio.sleep(0)
        raising_helper_xyz(3)

    rec = SlowRecorder()  # a slow sink: the error must still reach it before run() raises
    with pytest.raises(Boom, match="broke at 3") as info:
        await agentnb.run(agent, sink=rec)
    # When the exception reached us the sink already had the Error event, and was closed.
    assert rec.kinds() == ["text", "error"]
    assert rec.closed
    error = rec.events[-1]
    assert isinstance(error, agentnb.Error)
    assert error.type == f"{Boom.__module__}.Boom"
    assert error.message == "broke at 3"
    assert "raising_helper_xyz" in error.traceback
    assert "Boom: broke at 3" in error.traceback
    assert type(info.value) is Boom


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_a_base_exception_in_the_agent_is_an_error_event_and_reraised(
    exc_type: type[BaseException],
) -> None:
    async def agent() -> None:
        agentnb.emit("before")
        raise exc_type("stop now")

    rec = Recorder()
    with pytest.raises(exc_type, match="stop now"):
        await agentnb.run(agent, sink=rec)
    assert rec.kinds() == ["text", "error"]
    error = rec.events[-1]
    assert isinstance(error, agentnb.Error)
    assert error.type == exc_type.__name__
    assert error.message == "stop now"


# -- child runs -------------------------------------------------------------------


async def test_a_child_run_has_its_own_id_seq_and_path_and_feeds_both_sinks() -> None:
    async def child(x: int) -> int:
        agentnb.emit(f"child got {x}")
        agentnb.emit(agentnb.Status("thinking"))
        return x * 10

    ids: dict[str, str] = {}
    child_rec = Recorder()

    async def parent() -> int:
        ids["parent"] = agentnb.current_run().id
        agentnb.emit("parent starts")
        value = await agentnb.run(child, 4, sink=child_rec)
        assert agentnb.current_run().id == ids["parent"]  # back in the parent's run
        agentnb.emit(f"child said {value}")
        return int(value) + 1

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == 41
    child_id = child_rec.events[0].run_id
    assert child_id != ids["parent"]
    # The parent's sink: parent, then the whole child run, then the rest of the parent.
    assert [(e.run_id, e.kind) for e in rec.events] == [
        (ids["parent"], "text"),
        (child_id, "text"),
        (child_id, "status"),
        (child_id, "done"),
        (ids["parent"], "text"),
        (ids["parent"], "done"),
    ]
    assert [e.seq for e in rec.of(child_id)] == [0, 1, 2]
    assert [e.seq for e in rec.of(ids["parent"])] == [0, 1, 2]
    assert {e.path for e in rec.of(child_id)} == {("parent", "child")}
    assert {e.path for e in rec.of(ids["parent"])} == {("parent",)}
    # The child's own sink has the child's events only, the same objects.
    assert child_rec.events == rec.of(child_id)
    assert child_rec.closed
    assert texts(rec.events) == ["parent starts", "child got 4", "child said 40"]


async def test_grandchildren_extend_the_path_and_reach_every_ancestor() -> None:
    async def leaf() -> str:
        agentnb.emit("leaf")
        return "leaf"

    async def middle() -> str:
        return str(await agentnb.run(leaf, name="leaf-run"))

    async def outer() -> str:
        return str(await agentnb.run(middle))

    rec = Recorder()
    assert await agentnb.run(outer, sink=rec, name="top") == "leaf"
    assert [(e.path, e.kind) for e in rec.events] == [
        (("top", "middle", "leaf-run"), "text"),
        (("top", "middle", "leaf-run"), "done"),
        (("top", "middle"), "done"),
        (("top",), "done"),
    ]
    assert len({e.run_id for e in rec.events}) == 3
    assert [e.seq for e in rec.events] == [0, 1, 0, 0]


async def test_a_failing_child_ends_before_the_parent_that_handles_it() -> None:
    async def child() -> None:
        agentnb.emit("child")
        raise Boom("child broke")

    async def parent() -> str:
        try:
            await agentnb.run(child)
        except Boom as exc:
            agentnb.emit(f"handled {exc}")
        return "recovered"

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == "recovered"
    assert [(e.path[-1], e.kind) for e in rec.events] == [
        ("child", "text"),
        ("child", "error"),
        ("parent", "text"),
        ("parent", "done"),
    ]
    assert_seq_contiguous(rec.events)


@agentnb.agent(name="test_runs.tripler", description="triples its input")
async def _tripler(n: int) -> int:
    agentnb.emit(f"tripling {n}")
    return n * 3


async def test_run_by_registered_name() -> None:
    rec = Recorder()
    assert await agentnb.run("test_runs.tripler", 5, sink=rec) == 15
    assert rec.kinds() == ["text", "done"]
    assert {e.path for e in rec.events} == {("test_runs.tripler",)}
    assert agentnb.get_agent("test_runs.tripler") is _tripler
    with pytest.raises(agentnb.UnknownAgent, match=r"test_runs\.tripler"):
        await agentnb.run("test_runs.no_such_agent")


# -- agent shapes ----------------------------------------------------------------


async def test_a_sync_function_agent_runs_in_a_worker_thread_and_can_emit() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def agent(word: str) -> str:
        seen.append(threading.get_ident())
        agentnb.emit(agentnb.Status(f"on {word}"))
        agentnb.emit(word.upper())
        return word * 2

    rec = Recorder()
    assert await agentnb.run(agent, "ab", sink=rec) == "abab"
    assert seen
    assert seen[0] != loop_thread
    assert rec.kinds() == ["status", "text", "done"]
    assert texts(rec.events) == ["AB"]


async def test_a_sync_agent_can_run_a_sub_agent_with_run_sync() -> None:
    async def child(x: int) -> int:
        agentnb.emit(f"child {x}")
        return x * 2

    def parent() -> int:
        agentnb.emit("parent")
        value = int(agentnb.run_sync(child, 21))
        agentnb.emit(f"parent got {value}")
        return value

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == 42
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent",), "text"),
        (("parent", "child"), "text"),
        (("parent", "child"), "done"),
        (("parent",), "text"),
        (("parent",), "done"),
    ]
    assert_seq_contiguous(rec.events)


async def test_an_async_generator_agent_streams_text_and_returns_the_joined_text() -> None:
    async def agent(n: int) -> AsyncIterator[str | agentnb.Event]:
        for i in range(n):
            yield f"w{i} "
            if i == 1:
                yield agentnb.Status("half way")
            await asyncio.sleep(0)

    rec = Recorder()
    assert await agentnb.run(agent, 3, sink=rec) == "w0 w1 w2 "
    assert rec.kinds() == ["text", "text", "status", "text", "done"]
    assert texts(rec.events) == ["w0 ", "w1 ", "w2 "]
    done = rec.events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == "w0 w1 w2 "


async def test_a_sync_generator_agent_streams_text_from_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def agent(words: list[str]) -> Iterator[str | agentnb.Event]:
        seen.append(threading.get_ident())
        yield from words
        yield agentnb.Custom("count", len(words))

    rec = Recorder()
    assert await agentnb.run(agent, ["a", "b", "c"], sink=rec) == "abc"
    assert seen
    assert seen[0] != loop_thread
    assert rec.kinds() == ["text", "text", "text", "count", "done"]


async def test_a_generator_yielding_a_non_event_fails_the_run() -> None:
    async def agent() -> AsyncIterator[object]:
        yield "ok"
        yield 42

    rec = Recorder()
    with pytest.raises(agentnb.InvalidEvent, match="int"):
        await agentnb.run(agent, sink=rec)
    assert rec.kinds() == ["text", "error"]


# -- cancellation --------------------------------------------------------------------


async def test_cancelling_the_caller_gives_one_cancelled_event_last() -> None:
    started = asyncio.Event()
    observed: list[str] = []

    async def agent() -> None:
        agentnb.emit("started")
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise

    rec = SlowRecorder()
    caller = asyncio.create_task(agentnb.run(agent, sink=rec))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert observed == ["cancelled"]
    assert rec.kinds() == ["text", "cancelled"]  # delivered before the caller saw the error
    assert rec.closed


async def test_cancelling_the_caller_before_the_agent_started_still_gives_cancelled() -> None:
    ran: list[bool] = []

    async def agent() -> None:
        ran.append(True)

    rec = Recorder()
    caller = asyncio.create_task(agentnb.run(agent, sink=rec))
    await asyncio.sleep(0)  # run() has started the agent's task, which has not run yet
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ran == []
    assert rec.kinds() == ["cancelled"]
    assert rec.closed


async def test_run_cancel_with_a_reason_on_a_background_run() -> None:
    started = asyncio.Event()

    async def agent() -> None:
        agentnb.emit("working")
        started.set()
        await forever()

    rec = Recorder()
    run = agentnb.start(agent, sink=rec)
    assert isinstance(run, agentnb.Run)
    await started.wait()
    assert not run.done
    assert run.cancel("user pressed stop") is True
    with pytest.raises(agentnb.RunCancelled) as info:
        await run.wait()
    assert info.value.reason == "user pressed stop"
    assert info.value.run_id == run.id
    assert run.status == "cancelled"
    assert run.cancel("again") is False
    assert rec.kinds() == ["text", "cancelled"]
    cancelled = rec.events[-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert cancelled.reason == "user pressed stop"


async def test_wait_after_cancel_and_a_loop_turn_raises_run_cancelled() -> None:
    """``wait()`` must not look at the run between its task ending and its terminal event."""

    async def agent() -> None:
        await forever()

    run = agentnb.start(agent)
    assert run.cancel("stop") is True
    await asyncio.sleep(0)  # the agent's task ends (cancelled before it began)
    with pytest.raises(agentnb.RunCancelled, match="stop"):
        await run.wait()
    assert run.status == "cancelled"


async def test_run_cancel_from_another_thread() -> None:
    started = asyncio.Event()

    async def agent() -> None:
        started.set()
        await forever()

    rec = Recorder()
    run = agentnb.start(agent, sink=rec)
    await started.wait()
    assert await asyncio.to_thread(run.cancel, "from a thread") is True
    with pytest.raises(agentnb.RunCancelled, match="from a thread"):
        await run.wait()
    assert rec.kinds() == ["cancelled"]
    cancelled = rec.events[-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert cancelled.reason == "from a thread"


async def test_cancelling_a_parent_cancels_its_running_child_first() -> None:
    child_started = asyncio.Event()
    observed: list[str] = []

    async def child() -> None:
        agentnb.emit("child")
        child_started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            observed.append("child")
            raise

    child_rec = Recorder()

    async def parent() -> None:
        agentnb.emit("parent")
        try:
            await agentnb.run(child, sink=child_rec)
        except asyncio.CancelledError:
            observed.append("parent")
            raise

    rec = Recorder()
    run = agentnb.start(parent, sink=rec)
    await child_started.wait()
    run.cancel("enough")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert observed == ["child", "parent"]
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent",), "text"),
        (("parent", "child"), "text"),
        (("parent", "child"), "cancelled"),
        (("parent",), "cancelled"),
    ]
    assert child_rec.kinds() == ["text", "cancelled"]
    assert child_rec.closed


async def test_a_background_child_is_cancelled_before_its_parent_is_done() -> None:
    child_started = asyncio.Event()
    observed: list[str] = []
    child_rec = Recorder()

    async def child() -> None:
        agentnb.emit("child working")
        child_started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            observed.append("child cancelled")
            raise

    async def parent() -> str:
        agentnb.start(child, sink=child_rec)  # never awaited
        await child_started.wait()
        agentnb.emit("parent returns")
        return "parent value"

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == "parent value"
    assert observed == ["child cancelled"]
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent", "child"), "text"),
        (("parent",), "text"),
        (("parent", "child"), "cancelled"),
        (("parent",), "done"),
    ]
    assert child_rec.kinds() == ["text", "cancelled"]
    # Nothing more may come: a few loop turns later (a bounded wait for "no change").
    await asyncio.sleep(0.01)
    assert len(rec.events) == 4, "an event arrived after the parent's terminal event"


async def test_a_parent_cancelled_while_ending_its_children_still_ends_after_them() -> None:
    """Structured concurrency holds even when a cancel arrives while the parent waits
    for a background child's slow clean-up."""
    child_started = asyncio.Event()
    cleaning = asyncio.Event()

    async def child() -> None:
        agentnb.emit("child working")
        child_started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.sleep(0.05)  # e.g. closing a connection
            agentnb.emit("child cleaned up")
            raise

    async def parent() -> str:
        agentnb.start(child)
        await child_started.wait()
        return "parent value"

    rec = Recorder()
    run = agentnb.start(parent, sink=rec)
    await cleaning.wait()  # the parent has returned and is waiting for its child
    run.cancel("stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    # When wait() returns the whole tree has ended, children first.
    assert [(e.path[-1], e.kind) for e in rec.events] == [
        ("child", "text"),
        ("child", "text"),
        ("child", "cancelled"),
        ("parent", "cancelled"),
    ]


async def test_a_caller_cancelled_while_a_slow_sink_catches_up_still_feeds_it_all() -> None:
    """The run ended (Done) before the cancel: its sinks still get every event."""
    finished = asyncio.Event()

    async def agent() -> int:
        for i in range(50):
            agentnb.emit(str(i))
        finished.set()
        return 50

    rec = SlowRecorder()
    caller = asyncio.create_task(agentnb.run(agent, sink=rec))
    await finished.wait()
    await eventually(lambda: rec.events, what="the sink part-way through")
    assert 0 < len(rec.events) < 51
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert texts(rec.events) == [str(i) for i in range(50)]
    assert rec.kinds()[-1] == "done"


async def test_a_timeout_around_run_cancels_the_run_and_raises_timeout_error() -> None:
    observed: list[str] = []

    async def agent() -> None:
        agentnb.emit("slow work")
        try:
            await forever()
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise

    rec = Recorder()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await agentnb.run(agent, sink=rec)
    assert observed == ["cancelled"]
    assert rec.kinds() == ["text", "cancelled"]
    assert rec.closed
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0  # the timeout's cancel was fully absorbed


async def test_a_parent_can_cancel_its_child_and_carry_on() -> None:
    child_started = asyncio.Event()

    async def child() -> None:
        child_started.set()
        await forever()

    async def parent() -> str:
        sub = agentnb.start(child)
        await child_started.wait()
        sub.cancel("not needed")
        try:
            await sub.wait()
        except agentnb.RunCancelled as exc:
            agentnb.emit(f"child stopped: {exc.reason}")
        return "parent finished"

    rec = Recorder()
    assert await agentnb.run(parent, sink=rec) == "parent finished"
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent", "child"), "cancelled"),
        (("parent",), "text"),
        (("parent",), "done"),
    ]
    assert texts(rec.events) == ["child stopped: not needed"]


async def test_an_agent_that_swallows_cancellation_and_returns_is_done() -> None:
    started = asyncio.Event()

    async def agent() -> str:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            agentnb.emit("ignoring the cancel")
        return "finished anyway"

    rec = Recorder()
    run = agentnb.start(agent, sink=rec)
    await started.wait()
    assert run.cancel("please stop") is True
    assert await run.wait() == "finished anyway"
    assert run.status == "done"
    assert rec.kinds() == ["text", "done"]


async def test_a_cancelled_caller_gets_cancelled_error_even_if_the_agent_swallowed_it() -> None:
    started = asyncio.Event()

    async def agent() -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await forever()
        return "finished anyway"

    rec = Recorder()
    caller = asyncio.create_task(agentnb.run(agent, sink=rec))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert rec.kinds() == ["done"]


async def test_a_cancelled_sync_agent_is_stopped_by_run_closed_at_its_next_emit() -> None:
    """A worker thread cannot be interrupted; its next emit tells it the run is over."""
    emitting = threading.Event()
    stopped: list[BaseException] = []
    exited = threading.Event()

    def agent() -> None:
        try:
            for i in range(100_000):
                agentnb.emit(str(i))
                emitting.set()
                time.sleep(0.001)
        except BaseException as exc:
            stopped.append(exc)
            raise
        finally:
            exited.set()

    rec = Recorder()
    run = agentnb.start(agent, sink=rec)
    assert await asyncio.to_thread(emitting.wait, 10)
    run.cancel("halt")
    with pytest.raises(agentnb.RunCancelled, match="halt"):
        await run.wait()
    assert await asyncio.to_thread(exited.wait, 10)
    assert len(stopped) == 1
    assert isinstance(stopped[0], agentnb.RunClosed)
    assert stopped[0].status == "cancelled"
    assert rec.kinds()[-1] == "cancelled"
    assert rec.kinds().count("cancelled") == 1
    assert_seq_contiguous(rec.events)


async def test_cancelling_a_sync_parent_ends_its_run_sync_child_first() -> None:
    """A sync agent's sub-agent (``run_sync`` in the worker thread, on its own loop) is
    a child run: cancelling the parent cancels it, and its terminal event still
    reaches the parent's sink before the parent's."""
    child_running = threading.Event()
    parent_exited = threading.Event()
    child_outcome: list[BaseException] = []

    async def child() -> None:
        agentnb.emit("child working")
        child_running.set()
        try:
            await forever()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # a little clean-up
            raise

    def parent() -> None:
        try:
            agentnb.run_sync(child)
        except BaseException as exc:
            child_outcome.append(exc)
            raise
        finally:
            parent_exited.set()

    rec = Recorder()
    run = agentnb.start(parent, sink=rec)
    assert await asyncio.to_thread(child_running.wait, 10)
    run.cancel("stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert await asyncio.to_thread(parent_exited.wait, 10)
    assert len(child_outcome) == 1
    assert isinstance(child_outcome[0], agentnb.RunCancelled)
    assert [(e.path, e.kind) for e in rec.events] == [
        (("parent", "child"), "text"),
        (("parent", "child"), "cancelled"),
        (("parent",), "cancelled"),
    ]


# -- run_sync ------------------------------------------------------------------------


async def _doubler(n: int) -> int:
    agentnb.emit(f"doubling {n}")
    return n * 2


def test_run_sync_from_sync_code() -> None:
    rec = Recorder()
    assert agentnb.run_sync(_doubler, 21, sink=rec) == 42
    assert rec.kinds() == ["text", "done"]
    assert rec.closed
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()


def test_run_sync_reraises_the_agents_exception() -> None:
    async def agent() -> None:
        raise Boom("sync caller sees this")

    rec = Recorder()
    with pytest.raises(Boom, match="sync caller sees this"):
        agentnb.run_sync(agent, sink=rec)
    assert rec.kinds() == ["error"]


def test_run_sync_reraises_a_keyboard_interrupt_after_the_error_event() -> None:
    async def agent() -> None:
        agentnb.emit("typing")
        raise KeyboardInterrupt("ctrl-c")

    rec = Recorder()
    with pytest.raises(KeyboardInterrupt, match="ctrl-c"):
        agentnb.run_sync(agent, sink=rec)
    assert rec.kinds() == ["text", "error"]
    assert rec.closed


async def test_run_sync_inside_a_running_loop_raises_loop_already_running() -> None:
    ran: list[bool] = []

    async def agent() -> None:
        ran.append(True)

    with pytest.raises(agentnb.LoopAlreadyRunning, match=r"await agentnb\.run\("):
        agentnb.run_sync(agent)
    assert ran == []


# -- context variables -----------------------------------------------------------------

USER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("user_var", default="outside")


async def _sets_user_var() -> str:
    USER_VAR.set("inside")
    agentnb.emit(USER_VAR.get())
    return agentnb.current_run().id


async def test_nothing_leaks_out_of_run_or_stream() -> None:
    await agentnb.run(_sets_user_var)
    assert USER_VAR.get() == "outside"
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()

    seen = [e async for e in agentnb.stream(_sets_user_var)]
    assert texts(seen) == ["inside"]
    assert USER_VAR.get() == "outside"
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()

    run = agentnb.start(_sets_user_var)
    await run.wait()
    assert USER_VAR.get() == "outside"
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()


def test_nothing_leaks_out_of_run_sync() -> None:
    agentnb.run_sync(_sets_user_var)
    assert USER_VAR.get() == "outside"
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()


async def test_nothing_leaks_out_of_a_failed_or_cancelled_run() -> None:
    async def failing() -> None:
        USER_VAR.set("inside")
        raise Boom("x")

    with pytest.raises(Boom):
        await agentnb.run(failing)
    assert USER_VAR.get() == "outside"

    async def hanging() -> None:
        USER_VAR.set("inside")
        await forever()

    run = agentnb.start(hanging)
    await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert USER_VAR.get() == "outside"
    with pytest.raises(agentnb.NoActiveRun):
        agentnb.current_run()


async def test_the_caller_context_flows_into_the_agent() -> None:
    token = USER_VAR.set("from the caller")
    try:

        async def agent() -> str:
            return USER_VAR.get()

        assert await agentnb.run(agent) == "from the caller"
    finally:
        USER_VAR.reset(token)


async def test_two_sequential_runs_in_one_task_are_independent() -> None:
    first, second = Recorder(), Recorder()
    id1 = await agentnb.run(_sets_user_var, sink=first)
    id2 = await agentnb.run(_sets_user_var, sink=second)
    assert id1 != id2
    for rec, run_id in ((first, id1), (second, id2)):
        assert {e.run_id for e in rec.events} == {run_id}
        assert [e.seq for e in rec.events] == [0, 1]
        assert {e.path for e in rec.events} == {("_sets_user_var",)}  # not nested
        assert rec.kinds() == ["text", "done"]
