"""``start_eagerly``: the first step runs now, as the waiting task; that task finishes the rest.

Each test has a *taker*: a task waiting on a gate, as a listener's response task
waits for its next event. The first step of the awaitable runs from the test's
own task, yet sees the taker as the current task and the taker's context; if it
has to wait, the taker awaits the :class:`Pending` rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator

import anyio
import pytest

from agentnb.server._eager import Pending, start_eagerly

SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("SPAN", default="none")


class Taker:
    """A task parked on a gate; opened with a Pending, it finishes it."""

    def __init__(self) -> None:
        self.gate: asyncio.Future[Pending | None] = asyncio.get_running_loop().create_future()
        self.context = contextvars.copy_context()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        pending = await self.gate
        if pending is not None:
            await pending

    async def finish(self, pending: Pending | None) -> None:
        self.gate.set_result(pending)
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def taker() -> AsyncIterator[Taker]:
    taker = Taker()
    await asyncio.sleep(0)  # it is now waiting on its gate
    yield taker
    if not taker.task.done():  # a test that failed half-way
        taker.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taker.task


async def test_an_awaitable_that_never_waits_finishes_right_there_as_the_taker(
    taker: Taker,
) -> None:
    seen: list[asyncio.Task[object] | None] = []

    async def write() -> None:
        seen.append(asyncio.current_task())

    me = asyncio.current_task()
    assert start_eagerly(write(), taker.task, taker.context) is None
    assert seen == [taker.task]
    assert asyncio.current_task() is me  # restored
    await taker.finish(None)


async def test_an_error_before_the_first_wait_is_raised_here_and_the_task_restored(
    taker: Taker,
) -> None:
    async def write() -> None:
        raise ConnectionResetError("gone")

    me = asyncio.current_task()
    with pytest.raises(ConnectionResetError, match="gone"):
        start_eagerly(write(), taker.task, taker.context)
    assert asyncio.current_task() is me
    await taker.finish(None)


async def test_the_rest_is_finished_by_the_taker_every_step_as_the_taker(taker: Taker) -> None:
    drained = asyncio.Event()
    steps: list[tuple[str, asyncio.Task[object] | None]] = []

    async def write() -> None:
        steps.append(("before", asyncio.current_task()))
        await drained.wait()
        steps.append(("after", asyncio.current_task()))
        await asyncio.sleep(0)  # a bare yield to the loop, after the handover
        steps.append(("end", asyncio.current_task()))

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    taker.gate.set_result(pending)
    await asyncio.sleep(0.01)
    assert not taker.task.done()  # it waits on what the first step waited on
    drained.set()
    await asyncio.wait_for(taker.task, 1)
    assert steps == [("before", taker.task), ("after", taker.task), ("end", taker.task)]


async def test_a_context_variable_set_before_the_wait_is_reset_after_it(taker: Taker) -> None:
    # As a tracing middleware does around send: set, await, reset with the token.
    inside: list[str] = []

    async def write() -> None:
        token = SPAN.set("send")
        try:
            await asyncio.sleep(0)
            inside.append(SPAN.get())
        finally:
            SPAN.reset(token)

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    assert SPAN.get() == "none"  # nothing leaked into the caller's context
    await taker.finish(pending)
    assert inside == ["send"]
    assert SPAN.get() == "none"


async def test_an_anyio_lock_and_cancel_scope_held_across_the_wait_are_left_by_their_task(
    taker: Taker,
) -> None:
    # anyio.Lock enters a cancel scope and yields: both must be exited by the task
    # that entered them, which is the taker from the first step on.
    lock = anyio.Lock()
    wrote: list[str] = []

    async def write() -> None:
        async with lock:
            with anyio.fail_after(5):
                await asyncio.sleep(0)
                wrote.append("x")

    async def in_a_task_group() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(taker_run)

    gate: asyncio.Future[Pending | None] = asyncio.get_running_loop().create_future()
    tasks: list[asyncio.Task[object] | None] = []

    async def taker_run() -> None:
        tasks.append(asyncio.current_task())
        pending = await gate
        assert pending is not None
        await pending

    outer = asyncio.ensure_future(in_a_task_group())
    await asyncio.sleep(0.01)
    task = tasks[0]
    assert task is not None
    pending = start_eagerly(write(), task, contextvars.copy_context())
    assert pending is not None
    gate.set_result(pending)
    await asyncio.wait_for(outer, 5)
    assert wrote == ["x"]
    assert not lock.locked()
    await taker.finish(None)


async def test_cancelling_the_taker_while_it_finishes_the_rest_cancels_the_rest(
    taker: Taker,
) -> None:
    cleaned: list[str] = []
    blocker: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write() -> None:
        try:
            await blocker
        finally:
            cleaned.append("finally")

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    taker.gate.set_result(pending)
    await asyncio.sleep(0)
    taker.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker.task
    assert cleaned == ["finally"]
    assert blocker.cancelled()


async def test_a_cancellation_thrown_in_reaches_the_rest_where_it_waits(taker: Taker) -> None:
    # The taker was cancelled before it got to awaiting the rest: it throws the
    # cancellation in, and a timeout in the write turns it into its own error.
    async def write() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise TimeoutError("the write timed out") from None

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    with pytest.raises(TimeoutError, match="timed out"):
        await pending.throw(asyncio.CancelledError())
    await taker.finish(None)


async def test_closing_a_rest_runs_the_awaitables_cleanup(taker: Taker) -> None:
    cleaned: list[str] = []

    async def write() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally")

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    pending.close()
    assert cleaned == ["finally"]
    await taker.finish(None)


async def test_it_runs_from_a_loop_callback_too(taker: Taker) -> None:
    # emit may be called outside any task (a callback on the loop)
    seen: list[asyncio.Task[object] | None] = []
    outcome: asyncio.Future[Pending | None] = asyncio.get_running_loop().create_future()

    async def write() -> None:
        seen.append(asyncio.current_task())

    def callback() -> None:
        outcome.set_result(start_eagerly(write(), taker.task, taker.context))
        seen.append(asyncio.current_task())

    asyncio.get_running_loop().call_soon(callback)
    assert await outcome is None
    assert seen == [taker.task, None]
    await taker.finish(None)


async def test_a_cancellation_thrown_in_cancels_what_the_rest_waits_on(taker: Taker) -> None:
    # As Task.cancel() does: the future the write waits on (here a helper task) is
    # cancelled, not left running.
    helper_saw: list[str] = []

    async def helper() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            helper_saw.append("cancelled")
            raise

    async def write() -> None:
        await asyncio.ensure_future(helper())

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    await asyncio.sleep(0)  # the helper is waiting
    with pytest.raises(asyncio.CancelledError):
        await pending.throw(asyncio.CancelledError())
    await asyncio.sleep(0)
    assert helper_saw == ["cancelled"]
    await taker.finish(None)


async def test_a_pending_write_is_finished_once(taker: Taker) -> None:
    async def write() -> None:
        await asyncio.sleep(0)

    pending = start_eagerly(write(), taker.task, taker.context)
    assert pending is not None
    await pending
    with pytest.raises(RuntimeError, match="finish it once"):
        await pending
    await taker.finish(None)
