"""``start_eagerly``: the first step runs in the caller's task; the task taking over finishes it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from agentnb.server._eager import start_eagerly


async def test_an_awaitable_that_never_waits_finishes_right_there() -> None:
    ran: list[asyncio.Task[object] | None] = []

    async def write() -> None:
        ran.append(asyncio.current_task())

    assert start_eagerly(write()) is None
    assert ran == [asyncio.current_task()]  # in the calling task, before anything else ran


async def test_an_error_before_the_first_wait_is_raised_to_the_caller() -> None:
    async def write() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        start_eagerly(write())


async def test_the_rest_of_a_waiting_awaitable_is_finished_by_the_task_that_awaits_it() -> None:
    drained = asyncio.Event()
    steps: list[tuple[str, asyncio.Task[object] | None]] = []

    async def write() -> None:
        steps.append(("before", asyncio.current_task()))
        await drained.wait()
        steps.append(("after", asyncio.current_task()))
        await asyncio.sleep(0)  # a bare yield to the loop, after the handover
        steps.append(("end", asyncio.current_task()))

    rest = start_eagerly(write())
    assert rest is not None
    assert steps == [("before", asyncio.current_task())]
    finisher = asyncio.ensure_future(_await(rest))
    await asyncio.sleep(0.01)
    assert not finisher.done()  # it waits on what the first step waited on
    drained.set()
    await asyncio.wait_for(finisher, 1)
    assert steps[1:] == [("after", finisher), ("end", finisher)]


async def test_a_rest_that_yields_bare_to_the_loop_is_finished_too() -> None:
    done: list[int] = []

    async def write() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        done.append(1)

    rest = start_eagerly(write())
    assert rest is not None
    assert done == []
    await rest
    assert done == [1]


async def test_an_error_after_the_wait_reaches_the_task_that_finishes_it() -> None:
    async def write() -> None:
        await asyncio.sleep(0)
        raise BrokenPipeError("closed while draining")

    rest = start_eagerly(write())
    assert rest is not None
    with pytest.raises(BrokenPipeError, match="closed while draining"):
        await rest


async def test_cancelling_the_task_that_finishes_it_cancels_the_rest() -> None:
    cleaned: list[str] = []
    blocker: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write() -> None:
        try:
            await blocker
        finally:
            cleaned.append("finally")

    rest = start_eagerly(write())
    assert rest is not None
    finisher = asyncio.ensure_future(_await(rest))
    await asyncio.sleep(0)
    finisher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finisher
    assert cleaned == ["finally"]
    assert blocker.cancelled()


async def test_closing_a_rest_nobody_awaited_runs_the_awaitables_cleanup() -> None:
    cleaned: list[str] = []

    async def write() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally")

    rest = start_eagerly(write())
    assert rest is not None
    steps = rest.__await__()
    next(steps)  # the task that took over starts it ...
    steps.close()  # ... and is torn down before the rest finished
    assert cleaned == ["finally"]


async def _await(rest: Awaitable[None]) -> None:
    await rest
