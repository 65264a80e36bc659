"""Code in other processes emitting into a run through Redis: ``share`` and ``attach``.

Against a real redis-server, with real processes: ``multiprocessing`` (spawn) and a
``distributed.LocalCluster`` of worker processes. Every attached block is a child
run of the sharing run; its events arrive exactly once, in its order; it ends as
the block ended (done, or error with the block's exception); the run waits for
them; a block that goes silent is ended after ``idle``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event as EventType
from typing import cast

import distributed
import pytest

import agentnb
from agentnb import Custom, Run
from agentnb.redis import (
    Handle,
    RemoteError,
    RemoteLost,
    ShareClosed,
    StoreError,
    attach,
    share,
)
from agentnb.testing import CapturedEvents, capture_events
from harness.redis import RedisServer, redis_server

EVENTS = 50  # events per block


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


# -- what the other processes run (module level: spawn and Dask import them) ---------------


def emit_numbers(handle: Handle, name: str, count: int = EVENTS) -> str:
    """An attached block emitting *count* numbered chunks."""
    with attach(handle, name=name):
        for n in range(count):
            agentnb.emit(f"{name}:{n};")
    return name


def emit_then_raise(handle: Handle, name: str) -> None:
    with attach(handle, name=name):
        agentnb.emit("before;")
        raise ValueError("the block failed <b>here</b>")


def emit_then_die(handle: Handle, name: str, die: EventType) -> None:
    """A block whose process dies inside it (once told to): it never writes its end."""
    with attach(handle, name=name):
        agentnb.emit("alive;")
        die.wait(30)
        os._exit(0)


def emit_in_task(item: int, handle: Handle) -> int:
    """A Dask task: the block named after its worker by default."""
    with attach(handle) as run:
        for n in range(EVENTS):
            agentnb.emit(Custom("item", {"item": item, "n": n}))
        assert agentnb.current_run() is run
    return item


async def emit_async(handle: Handle, name: str) -> None:
    """The async form, with a sub-run inside the block."""

    async def helper(topic: str) -> str:
        agentnb.emit(f"helping with {topic};")
        return topic

    async with attach(handle, name=name):
        agentnb.emit("first;")
        await agentnb.run(helper, "sub", name="helper")
        agentnb.emit("last;")


def spawned(target: Callable[..., object], *args: object) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def join_all(*processes: multiprocessing.process.BaseProcess) -> None:
    for process in processes:
        process.join(60)


def texts(events: CapturedEvents, path: tuple[str, ...]) -> list[str]:
    joined = events.text(path)
    return [t for t in joined.split(";") if t]


def terminal_of(events: CapturedEvents, path: tuple[str, ...]) -> list[agentnb.Event]:
    return [e for e in events if e.path == path and e.terminal]


# -- tests -----------------------------------------------------------------------------------


def test_the_handle_pickles_and_hides_the_password() -> None:
    handle = Handle("redis://:s3cret@127.0.0.1:1/0", "ab12", ("cell",), "worker")
    again = pickle.loads(pickle.dumps(handle))
    assert again == handle
    assert again.url == "redis://:s3cret@127.0.0.1:1/0"
    assert "s3cret" not in repr(handle)
    assert handle.key == "agentnb:share:ab12"


async def test_share_needs_a_run(server: RedisServer) -> None:
    with pytest.raises(agentnb.NoActiveRun):
        share(server.url)


def test_attach_takes_a_handle() -> None:
    with pytest.raises(TypeError, match="Handle"):
        attach("redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


async def test_spawned_processes_emit_into_one_run(server: RedisServer) -> None:
    names = [f"worker {i}" for i in range(3)]

    async def cell() -> list[str]:
        handle = share(server.url)
        pickle.dumps(handle)
        processes = [spawned(emit_numbers, handle, name) for name in names]
        await asyncio.to_thread(join_all, *processes)
        assert [p.exitcode for p in processes] == [0, 0, 0]
        children = await handle.wait()
        return sorted(child.name for child in children if child.status == "done")

    with capture_events() as events:
        assert await agentnb.run(cell) == names
    for name in names:
        path = ("cell", name)
        assert texts(events, path) == [f"{name}:{n}" for n in range(EVENTS)]
        assert [e.kind for e in terminal_of(events, path)] == ["done"]
        assert [e.seq for e in events if e.path == path] == list(range(EVENTS + 1))
    # The parent ends after every child: its terminal event is the last one.
    assert events[-1].path == ("cell",)
    assert events[-1].kind == "done"
    assert sum(e.terminal for e in events) == len(names) + 1


async def test_a_block_that_raises_ends_its_child_run_with_error(server: RedisServer) -> None:
    async def cell() -> list[Run]:
        handle = share(server.url)
        good, bad = (
            spawned(emit_numbers, handle, "good", 5),
            spawned(emit_then_raise, handle, "bad"),
        )
        await asyncio.to_thread(join_all, good, bad)
        return await handle.wait()

    with capture_events() as events:
        children = await agentnb.run(cell)
    by_name = {child.name: child for child in children}
    assert by_name["good"].status == "done"
    assert by_name["bad"].status == "error"
    error = by_name["bad"].exception
    assert isinstance(error, RemoteError)
    assert error.type == "ValueError"
    assert error.message == "the block failed <b>here</b>"
    assert "emit_then_raise" in error.traceback
    assert texts(events, ("cell", "bad")) == ["before"]
    [end] = terminal_of(events, ("cell", "bad"))
    assert isinstance(end, agentnb.Error)
    assert end.type == "agentnb.redis.RemoteError"
    assert end.message == "ValueError: the block failed <b>here</b>"
    assert texts(events, ("cell", "good")) == [f"good:{n}" for n in range(5)]


async def test_a_block_that_dies_is_ended_after_idle(server: RedisServer) -> None:
    async def cell() -> list[Run]:
        handle = share(server.url, idle=0.5)
        die = multiprocessing.get_context("spawn").Event()
        process = spawned(emit_then_die, handle, "doomed", die)
        while not events.text(("cell", "doomed")):  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)
        die.set()
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
        return await handle.wait()

    with capture_events() as events:
        [child] = await agentnb.run(cell)
    assert child.status == "error"
    assert isinstance(child.exception, RemoteLost)
    assert texts(events, ("cell", "doomed")) == ["alive"]


async def test_the_async_form_with_a_sub_run(server: RedisServer) -> None:
    async def cell() -> list[Run]:
        handle = share(server.url)
        # Another loop in another thread stands for another process here.
        thread = threading.Thread(target=asyncio.run, args=(emit_async(handle, "async"),))
        thread.start()
        await asyncio.to_thread(thread.join, 30)
        return await handle.wait()

    with capture_events() as events:
        [child] = await agentnb.run(cell)
    assert child.status == "done"
    shown = [(e.path, e.kind) for e in events if e.path[:2] == ("cell", "async")]
    assert shown == [
        (("cell", "async"), "text"),
        (("cell", "async", "helper"), "text"),
        (("cell", "async", "helper"), "done"),
        (("cell", "async"), "text"),
        (("cell", "async"), "done"),
    ]
    assert texts(events, ("cell", "async", "helper")) == ["helping with sub"]


async def test_attach_after_wait_is_refused(server: RedisServer) -> None:
    async def cell() -> Handle:
        handle = share(server.url)
        assert await handle.wait() == []
        return handle

    handle = await agentnb.run(cell)
    with pytest.raises(ShareClosed, match="closed"):
        await asyncio.to_thread(emit_numbers, handle, "late", 1)


async def test_wait_only_where_shared(server: RedisServer) -> None:
    handle = Handle(server.url, "0123456789abcdef", ("cell",))
    with pytest.raises(RuntimeError, match="not open in this process"):
        await handle.wait()


async def test_a_run_that_does_not_wait_cancels_open_blocks(server: RedisServer) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_block(handle: Handle) -> None:
        with attach(handle, name="slow"):
            agentnb.emit("started;")
            started.set()
            release.wait(30)

    async def cell() -> None:
        handle = share(server.url)
        threading.Thread(target=slow_block, args=(handle,)).start()
        await asyncio.to_thread(started.wait, 30)
        while not events.text(("cell", "slow")):  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)

    with capture_events() as events:
        await agentnb.run(cell)
    release.set()
    assert [e.kind for e in terminal_of(events, ("cell", "slow"))] == ["cancelled"]
    assert events[-1].path == ("cell",)


# -- a Dask cluster of worker processes -------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client() -> Iterator[distributed.Client]:
    """One LocalCluster of two worker processes for the module (starting one takes seconds)."""
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            processes=True, n_workers=2, threads_per_worker=2, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


async def test_dask_tasks_emit_into_one_run(
    server: RedisServer, dask_client: distributed.Client
) -> None:
    items = list(range(6))
    workers = {w["name"] for w in dask_client.scheduler_info()["workers"].values()}

    async def cell() -> list[Run]:
        handle = share(server.url)
        futures = dask_client.map(emit_in_task, items, handle=handle, pure=False)
        assert sorted(await asyncio.to_thread(dask_client.gather, futures)) == items
        return await handle.wait()

    with capture_events() as events:
        children = await agentnb.run(cell)
    assert len(children) == len(items)
    assert all(child.status == "done" for child in children)
    # Each named after the Dask worker that ran it.
    assert {child.name for child in children} <= {str(name) for name in workers}
    seen: dict[int, list[int]] = {}
    for child in children:
        mine = [e for e in events if e.run_id == child.id]
        assert mine[-1].kind == "done"
        assert sum(e.terminal for e in mine) == 1
        data = [cast(dict[str, int], e.data) for e in mine if isinstance(e, Custom)]
        item = data[0]["item"]
        assert item not in seen, "each task's block is one child run"
        seen[item] = [d["n"] for d in data if d["item"] == item]
        assert all(d["item"] == item for d in data)
    assert seen == {item: list(range(EVENTS)) for item in items}
    assert events[-1].path == ("cell",)
    assert events[-1].kind == "done"


def test_attach_with_redis_down_raises_store_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handle = Handle(f"redis://:pw@127.0.0.1:{port}/0", "0123456789abcdef", ("cell",))
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as raised:
        emit_numbers(handle, "unreachable", 1)
    assert "pw" not in str(raised.value)
