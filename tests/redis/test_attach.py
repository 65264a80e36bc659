"""Code in other processes emitting into a run through Redis: ``share`` and ``attach``.

Against a real redis-server, with real processes: ``multiprocessing`` (spawn) and a
``distributed.LocalCluster`` of worker processes. Every attached block is a child
run of the sharing run; its events arrive exactly once, in its order; it ends as
the block ended (done, or error with the block's exception); the run waits for
them; a block that goes silent is ended after ``idle``. A block's questions are
the sharing run's, answered there; stopping the sharing run (or the block's child
run) stops the block in its process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from typing import Any, cast

import distributed
import pytest
import redis

import agentnb
from agentnb import Answer, Ask, Custom, Event, InvalidAnswer, Run, RunCancelled
from agentnb.redis import (
    Handle,
    RemoteError,
    RemoteLost,
    ShareClosed,
    StoreError,
    _attach,
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


def ask_then_emit(handle: Handle, name: str, prompt: str, said: Queue[Any]) -> None:
    """A sync block that asks, then emits the answer it got (and tells the test)."""
    block = attach(handle, name=name)
    with block:
        answer = block.ask(prompt, choices=["yes", "no"])
        agentnb.emit(f"got {answer};")
    said.put(answer)


def ask_until_stopped(handle: Handle, name: str, said: Queue[Any]) -> None:
    """A sync block whose question is never answered: the stop ends its wait."""
    block = attach(handle, name=name)
    try:
        with block:
            block.ask("Still there?", choices=["yes", "no"])
    except RunCancelled as exc:
        said.put(("stopped", exc.reason))


def ask_with_timeout(handle: Handle, name: str, said: Queue[Any]) -> None:
    """A sync block whose question has a timeout and a default."""
    block = attach(handle, name=name)
    with block:
        said.put(block.ask("Wait?", choices=["yes", "no"], default="no", timeout=0.3))


async def approve_in_sub_run(handle: Handle, name: str) -> tuple[bool, str]:
    """The async form: an approval in the block, a free-text question in a sub-run."""

    async def helper() -> str:
        return await agentnb.ask("Name it?", default="anon")

    async with attach(handle, name=name):
        approved = await agentnb.approve("rm", {"path": "/tmp/x <b>"})
        agentnb.emit(f"approved {approved};")
        named = await agentnb.run(helper, name="helper")
        agentnb.emit(f"named {named};")
    return approved, named


def emit_forever(handle: Handle, name: str, said: Queue[Any]) -> None:
    """A sync block emitting until it is stopped; it tells how far it got and why."""
    emitted = 0
    try:
        with attach(handle, name=name):
            while True:
                agentnb.emit(f"{emitted};")
                emitted += 1
                time.sleep(0.005)
    except RunCancelled as exc:
        said.put(("stopped", exc.reason, emitted))


async def sleep_forever(handle: Handle, name: str) -> str:
    """An async block waiting forever: a stop cancels its task inside the block."""
    seen = "not cancelled"
    try:
        async with attach(handle, name=name):
            agentnb.emit("waiting;")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                seen = "cancelled inside"
                raise
    except RunCancelled as exc:
        return f"{seen}, then RunCancelled: {exc.reason}"
    return seen


def approve_in_task(item: int, handle: Handle) -> bool:
    """A Dask task that asks before its work."""
    block = attach(handle, name=f"item {item}")
    with block:
        approved = block.approve("process", {"item": item})
        agentnb.emit(f"{item} {'done' if approved else 'skipped'};")
    return approved


def emit_in_task_forever(item: int, handle: Handle) -> str:
    """A Dask task emitting until it is stopped."""
    try:
        with attach(handle, name=f"item {item}"):
            while True:
                agentnb.emit(f"{item};")
                time.sleep(0.005)
    except RunCancelled as exc:
        return f"stopped: {exc.reason}"


def run_async(target: Callable[..., Any], said: Queue[Any], *args: object) -> None:
    """Run the async *target* on a loop of this process; tell the test its value."""
    said.put(asyncio.run(target(*args)))


def spawned(target: Callable[..., object], *args: object) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def join_all(*processes: multiprocessing.process.BaseProcess) -> None:
    for process in processes:
        process.join(60)


def queue() -> Queue[Any]:
    return multiprocessing.get_context("spawn").Queue()


class Answering:
    """A front end that takes answers, as the cell's view does: it answers each question
    it is sent with ``reply(question)`` through its run (None: leaves it open)."""

    answers = True

    def __init__(self, reply: Callable[[Ask], str | None] | None = None) -> None:
        self.reply = reply
        self.run: Run | None = None

    def open(self, run: Run) -> None:
        self.run = run

    def send(self, event: Event) -> None:
        if isinstance(event, Ask) and self.reply is not None and self.run is not None:
            value = self.reply(event)
            if value is not None:
                self.run.answer(event.ask_id, value, by="cell")


async def wound_up() -> None:
    """Wait until the shares of runs that ended without waiting are closed in Redis."""
    await asyncio.sleep(0)  # the run's done callbacks (which start the closing) run first
    await asyncio.gather(*_attach._forgetting)


def control_entries(server: RedisServer, handle: Handle) -> list[dict[bytes, bytes]]:
    """What the sharing process told the share's blocks (their control streams)."""
    client = redis.Redis.from_url(server.url)
    try:
        keys = sorted(cast(list[bytes], client.keys(f"{handle.prefix}*:control")))
        return [f for key in keys for _, f in cast(list[Any], client.xrange(key))]
    finally:
        client.close()


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
    raised: list[BaseException] = []

    def slow_block(handle: Handle) -> None:
        try:
            with attach(handle, name="slow"):
                agentnb.emit("started;")
                started.set()
                release.wait(30)
                agentnb.emit("too late;")  # the run was stopped: this emit raises
        except BaseException as exc:
            raised.append(exc)

    async def cell() -> Handle:
        handle = share(server.url)
        threading.Thread(target=slow_block, args=(handle,)).start()
        await asyncio.to_thread(started.wait, 30)
        while not events.text(("cell", "slow")):  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)
        return handle

    with capture_events() as events:
        handle = await agentnb.run(cell)
    await wound_up()
    # The block's run ended when told, before the block went on: one terminal event.
    assert [e.kind for e in terminal_of(events, ("cell", "slow"))] == ["cancelled"]
    assert texts(events, ("cell", "slow")) == ["started"]
    assert events[-1].path == ("cell",)
    release.set()
    while not raised:  # noqa: ASYNC110 (the thread's list)
        await asyncio.sleep(0.01)
    [exc] = raised
    assert isinstance(exc, RunCancelled)
    assert exc.reason == "parent run cell ended"
    # The share is closed: a block attaching now is refused.
    with pytest.raises(ShareClosed):
        await asyncio.to_thread(emit_numbers, handle, "late", 1)


async def test_a_run_that_ends_after_its_blocks_shows_all_their_events(
    server: RedisServer,
) -> None:
    """Without ``handle.wait()``: blocks that had ended in their processes are still shown
    whole, ending done (their stop, sent as the run ends, changes nothing)."""
    names = [f"quick {i}" for i in range(3)]

    async def cell() -> Handle:
        handle = share(server.url)
        processes = [spawned(emit_numbers, handle, name) for name in names]
        await asyncio.to_thread(join_all, *processes)
        assert [p.exitcode for p in processes] == [0, 0, 0]
        return handle

    with capture_events() as events:
        handle = await agentnb.run(cell)
    await wound_up()
    for name in names:
        path = ("cell", name)
        assert texts(events, path) == [f"{name}:{n}" for n in range(EVENTS)]
        assert [e.kind for e in terminal_of(events, path)] == ["done"]
    assert events[-1].path == ("cell",)
    assert events[-1].kind == "done"
    assert sum(e.terminal for e in events) == len(names) + 1
    assert handle.children == []  # the share is gone with its run


# -- questions ------------------------------------------------------------------------------


async def test_a_blocks_question_is_answered_in_the_sharing_run(server: RedisServer) -> None:
    said = queue()

    async def cell() -> tuple[Handle, list[Run]]:
        handle = share(server.url)
        assert handle.answers  # a sink of this run takes answers
        process = spawned(ask_then_emit, handle, "asker", "Deploy <b>prod</b>?", said)
        run = agentnb.current_run()
        while not run.questions:  # noqa: ASYNC110 (the run's questions)
            await asyncio.sleep(0.01)
        [question] = run.questions
        assert (question.prompt, question.choices) == ("Deploy <b>prod</b>?", ["yes", "no"])
        assert handle.children[0].questions == [question]  # the block's child run asks it
        with pytest.raises(InvalidAnswer) as refused:
            run.answer(question.ask_id, "maybe", by="cell")
        assert refused.value.reason == "invalid"
        with pytest.raises(InvalidAnswer) as unknown:
            run.answer("0123456789ab", "yes", by="cell")
        assert unknown.value.reason == "unknown"
        run.answer(question.ask_id, "yes", by="cell")
        with pytest.raises(InvalidAnswer) as again:
            run.answer(question.ask_id, "no", by="cell")
        assert again.value.reason == "answered"
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
        children = await handle.wait()
        with pytest.raises(InvalidAnswer) as late:  # the block has ended
            run.answer(question.ask_id, "no", by="cell")
        assert late.value.reason == "ended"
        assert not children[0].cancel()  # a block that ended: nothing to stop
        return handle, children

    with capture_events() as events:
        handle, [child] = await agentnb.run(cell, sink=Answering())
    assert said.get(timeout=10) == "yes"
    assert child.status == "done"
    shown = [e for e in events if e.path == ("cell", "asker")]
    assert [e.kind for e in shown] == ["ask", "answer", "text", "done"]
    question, answer = shown[0], shown[1]
    assert isinstance(question, Ask)
    assert isinstance(answer, Answer)
    assert (answer.ask_id, answer.value, answer.by) == (question.ask_id, "yes", "cell")
    assert texts(events, ("cell", "asker")) == ["got yes"]
    # Only the accepted answer was sent to the block; no stop for a block that ended.
    assert control_entries(server, handle) == [
        {b"answer": question.ask_id.encode(), b"value": b"yes", b"by": b"cell"}
    ]


async def test_approve_and_a_sub_runs_question_in_an_async_block(server: RedisServer) -> None:
    said = queue()

    def reply(question: Ask) -> str:
        return "approve" if question.choices else "Ada <script>"

    async def cell() -> list[Run]:
        handle = share(server.url)
        process = spawned(run_async, approve_in_sub_run, said, handle, "careful")
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
        return await handle.wait()

    with capture_events() as events:
        [child] = await agentnb.run(cell, sink=Answering(reply))
    assert said.get(timeout=10) == (True, "Ada <script>")
    assert child.status == "done"
    shown = [(e.path[1:], e.kind) for e in events if e.path[:2] == ("cell", "careful")]
    assert shown == [
        (("careful",), "ask"),
        (("careful",), "answer"),
        (("careful",), "text"),
        (("careful", "helper"), "ask"),
        (("careful", "helper"), "answer"),
        (("careful", "helper"), "done"),
        (("careful",), "text"),
        (("careful",), "done"),
    ]
    [approval] = [e for e in events if isinstance(e, Ask) and e.choices]
    assert approval.prompt == 'Run rm(path="/tmp/x <b>")?'
    by = {e.value: e.by for e in events if isinstance(e, Answer)}
    assert by == {"approve": "cell", "Ada <script>": "cell"}
    assert texts(events, ("cell", "careful")) == ["approved True", "named Ada <script>"]


async def test_a_blocks_timeout_and_default_still_work(server: RedisServer) -> None:
    said = queue()

    async def cell() -> list[Run]:
        handle = share(server.url, idle=0.2)  # a question open longer than idle is not silence
        process = spawned(ask_with_timeout, handle, "patient", said)
        await asyncio.to_thread(process.join, 60)
        return await handle.wait()

    with capture_events() as events:
        [child] = await agentnb.run(cell, sink=Answering())  # takes answers, gives none
    assert said.get(timeout=10) == "no"
    assert child.status == "done"
    answers = [e for e in events if isinstance(e, Answer)]
    assert [(a.value, a.by) for a in answers] == [("no", "timeout")]
    assert [e.kind for e in events if e.path == ("cell", "patient")] == ["ask", "answer", "done"]


async def test_where_nothing_answers_a_block_takes_the_default(server: RedisServer) -> None:
    said = queue()

    async def cell() -> list[Run]:
        handle = share(server.url)
        assert not handle.answers
        processes = [
            spawned(ask_with_timeout, handle, "defaulted", said),
            spawned(ask_then_emit, handle, "no default", "Go?", said),
        ]
        await asyncio.to_thread(join_all, *processes)
        return await handle.wait()

    with capture_events() as events:
        children = await agentnb.run(cell)
    assert said.get(timeout=10) == "no"
    by_name = {child.name: child for child in children}
    assert by_name["defaulted"].status == "done"
    [answer] = [e for e in events if isinstance(e, Answer)]
    assert (answer.value, answer.by) == ("no", "default")
    error = by_name["no default"].exception
    assert isinstance(error, RemoteError)
    assert error.type == "agentnb.NoAnswer"
    assert "'Go?'" in error.message


# -- stop ----------------------------------------------------------------------------------


async def test_stopping_the_sharing_run_stops_a_block_that_emits_forever(
    server: RedisServer,
) -> None:
    said = queue()
    processes: list[multiprocessing.process.BaseProcess] = []

    async def cell() -> None:
        handle = share(server.url)
        processes.append(spawned(emit_forever, handle, "busy", said))
        await asyncio.sleep(3600)

    with capture_events() as events:
        run = agentnb.start(cell)
        while len(texts(events, ("cell", "busy"))) < 5:  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)
        run.cancel("stopped from the notebook")
        with pytest.raises(RunCancelled):
            await run.wait()
    await wound_up()
    stopped, reason, emitted = said.get(timeout=10)
    assert (stopped, reason) == ("stopped", "parent run cell ended")
    await asyncio.to_thread(processes[0].join, 60)
    assert processes[0].exitcode == 0
    # Every event the block emitted before it was stopped is shown, once, in order.
    assert texts(events, ("cell", "busy")) == [str(n) for n in range(emitted)]
    assert [e.kind for e in terminal_of(events, ("cell", "busy"))] == ["cancelled"]
    assert [e.seq for e in events if e.path == ("cell", "busy")] == list(range(emitted + 1))
    assert events[-1].path == ("cell",)
    assert events[-1].kind == "cancelled"


async def test_a_run_that_ends_while_a_block_asks_stops_the_block(server: RedisServer) -> None:
    said = queue()
    processes: list[multiprocessing.process.BaseProcess] = []

    async def cell() -> None:
        handle = share(server.url)
        processes.append(spawned(ask_until_stopped, handle, "waiting", said))
        run = agentnb.current_run()
        while not run.questions:  # noqa: ASYNC110 (the run's questions)
            await asyncio.sleep(0.01)
        # The cell ends without answering, and without waiting for the block.

    with capture_events() as events:
        await agentnb.run(cell, sink=Answering())
    await wound_up()
    assert said.get(timeout=10) == ("stopped", "parent run cell ended")
    await asyncio.to_thread(processes[0].join, 60)
    assert processes[0].exitcode == 0
    path = ("cell", "waiting")
    assert [e.kind for e in events if e.path == path] == ["ask", "cancelled"]
    assert events[-1].path == ("cell",)


async def test_cancelling_a_blocks_child_run_cancels_its_task(server: RedisServer) -> None:
    said = queue()

    async def cell() -> str:
        handle = share(server.url)
        process = spawned(run_async, sleep_forever, said, handle, "sleeper")
        while not texts(events, ("cell", "sleeper")):  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)
        [child] = handle.children
        assert child.cancel("enough")
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
        [same] = await handle.wait()
        assert same is child
        assert child.status == "cancelled"
        assert not child.cancel()  # it has ended: nothing more happens
        return "the cell went on"

    with capture_events() as events:
        assert await agentnb.run(cell) == "the cell went on"
    assert said.get(timeout=10) == "cancelled inside, then RunCancelled: enough"
    [end] = terminal_of(events, ("cell", "sleeper"))
    assert isinstance(end, agentnb.Cancelled)
    assert end.reason == "enough"
    assert events[-1].path == ("cell",)
    assert events[-1].kind == "done"


async def test_a_block_that_does_not_answer_a_stop_ends_after_the_grace(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block whose process is frozen (SIGSTOP) never ends its run: its child run is
    cancelled ``CANCEL_GRACE`` seconds after the stop."""
    monkeypatch.setattr(_attach, "CANCEL_GRACE", 0.3)
    said = queue()
    processes: list[multiprocessing.process.BaseProcess] = []

    async def cell() -> None:
        handle = share(server.url)
        processes.append(spawned(emit_forever, handle, "frozen", said))
        while not texts(events, ("cell", "frozen")):  # noqa: ASYNC110 (a sink's list)
            await asyncio.sleep(0.01)
        os.kill(cast(int, processes[0].pid), signal.SIGSTOP)

    try:
        with capture_events() as events:
            await agentnb.run(cell)
        await wound_up()
        [end] = terminal_of(events, ("cell", "frozen"))
        assert isinstance(end, agentnb.Cancelled)
        assert end.reason == "parent run cell ended"
        assert events[-1].path == ("cell",)
    finally:
        os.kill(cast(int, processes[0].pid), signal.SIGCONT)
    # Thawed, it reads the stop, and ends.
    stopped, reason, _ = said.get(timeout=10)
    assert (stopped, reason) == ("stopped", "parent run cell ended")
    await asyncio.to_thread(processes[0].join, 60)


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


async def test_dask_tasks_ask_and_the_sharing_run_answers(
    server: RedisServer, dask_client: distributed.Client
) -> None:
    items = list(range(4))

    def reply(question: Ask) -> str:  # approve the even items
        return (
            "approve"
            if question.prompt in {"Run process(item=0)?", "Run process(item=2)?"}
            else "deny"
        )

    async def cell() -> list[bool]:
        handle = share(server.url)
        futures = dask_client.map(approve_in_task, items, handle=handle, pure=False)
        approved = await asyncio.to_thread(dask_client.gather, futures)
        await handle.wait()
        return cast(list[bool], approved)

    with capture_events() as events:
        assert await agentnb.run(cell, sink=Answering(reply)) == [True, False, True, False]
    for item in items:
        path = ("cell", f"item {item}")
        assert [e.kind for e in events if e.path == path] == ["ask", "answer", "text", "done"]
        assert texts(events, path) == [f"{item} {'done' if item % 2 == 0 else 'skipped'}"]


async def test_stopping_the_sharing_run_stops_dask_tasks(
    server: RedisServer, dask_client: distributed.Client
) -> None:
    items = [0, 1]
    futures: list[distributed.Future[str]] = []

    async def cell() -> None:
        handle = share(server.url)
        futures.extend(dask_client.map(emit_in_task_forever, items, handle=handle, pure=False))
        await asyncio.sleep(3600)

    with capture_events() as events:
        run = agentnb.start(cell)
        paths = [("cell", f"item {item}") for item in items]
        while not all(texts(events, path) for path in paths):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        run.cancel("stopped from the notebook")
        with pytest.raises(RunCancelled):
            await run.wait()
    await wound_up()
    assert await asyncio.to_thread(dask_client.gather, futures) == [
        "stopped: parent run cell ended"
    ] * len(items)
    for item, path in zip(items, paths, strict=True):
        assert set(texts(events, path)) == {str(item)}
        assert [e.kind for e in terminal_of(events, path)] == ["cancelled"]
    assert events[-1].kind == "cancelled"
