"""Inline sinks (``inline = True``): called by emit itself, in the emitting thread, in order."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import agentnb
from agentnb import Event
from tests.helpers import Recorder


class Inline:
    inline = True

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: list[int] = []
        self.closed_after: int | None = None

    def send(self, event: Event) -> None:
        self.events.append(event)
        self.threads.append(threading.get_ident())

    def close(self) -> None:
        self.closed_after = len(self.events)


async def test_an_inline_sink_has_the_event_before_emit_returns() -> None:
    sink = Inline()
    seen_at_emit: list[int] = []

    async def agent() -> str:
        for word in ("a", "b", "c"):
            agentnb.emit(word)
            seen_at_emit.append(len(sink.events))
        return "ok"

    assert await agentnb.run(agent, sink=sink) == "ok"
    assert seen_at_emit == [1, 2, 3]
    assert [e.kind for e in sink.events] == ["text", "text", "text", "done"]
    assert [e.seq for e in sink.events] == [0, 1, 2, 3]
    assert sink.closed_after == 4  # closed once, after the terminal event


async def test_an_inline_sink_is_called_in_the_emitting_thread() -> None:
    sink = Inline()

    def work() -> int:
        agentnb.emit("from a thread")
        return threading.get_ident()

    async def agent() -> int:
        return await asyncio.to_thread(work)

    worker = await agentnb.run(agent, sink=sink)
    assert sink.threads[0] == worker != threading.get_ident()
    assert sink.threads[-1] == threading.get_ident()  # done: emitted by the run's task


async def test_inline_and_queued_sinks_see_the_same_events_in_the_same_order() -> None:
    inline, queued = Inline(), Recorder()

    async def child() -> None:
        agentnb.emit("child")

    async def parent() -> None:
        agentnb.emit("before")
        await agentnb.run(child)
        agentnb.emit("after")

    await agentnb.run(parent, sink=[inline, queued])
    assert inline.events == queued.events
    assert [e.path for e in inline.events] == [
        ("parent",), ("parent", "child"), ("parent", "child"), ("parent",), ("parent",),
    ]  # fmt: skip


async def test_an_inline_sink_that_raises_is_reported_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(Inline):
        def send(self, event: Event) -> None:
            super().send(event)
            if len(self.events) == 2:
                raise ValueError("full")

    failing, other = Failing(), Recorder()

    async def agent() -> str:
        for word in ("a", "b", "c"):
            agentnb.emit(word)
        return "ok"

    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(agent, sink=[failing, other])
        assert await run.wait() == "ok"
    assert len(failing.events) == 2  # no more after it raised
    assert failing.closed_after == 2  # but still closed
    assert other.kinds() == ["text", "text", "text", "done"]
    assert [type(e) for _, e in run.sink_errors] == [ValueError]
    assert "gets no more events" in caplog.text


def test_an_inline_sink_must_be_synchronous() -> None:
    class Async:
        inline = True

        async def send(self, event: Event) -> None:
            pass

    async def agent() -> None:
        pass

    with pytest.raises(agentnb.AgentnbError, match="must be plain functions"):
        agentnb.run_sync(agent, sink=Async())


class Flushing(Inline):
    """Notes how many events it had at each flush(); after "a", it emits into the run."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed_after: list[int] = []
        self.flush_threads: list[int] = []
        self.run: agentnb.Run | None = None

    def open(self, run: agentnb.Run) -> None:
        self.run = run

    def flush(self) -> None:
        self.flushed_after.append(len(self.events))
        self.flush_threads.append(threading.get_ident())
        last = self.events[-1]
        if isinstance(last, agentnb.TextChunk) and last.text == "a":
            assert self.run is not None
            self.run.emit("noted a")  # under the run's lock, this would deadlock


def test_an_inline_sinks_flush_follows_every_emit_outside_the_lock() -> None:
    sink = Flushing()

    async def child() -> None:
        agentnb.emit("c")

    async def agent() -> str:
        agentnb.emit("a")
        agentnb.emit("b")
        await agentnb.run(child)
        return "ok"

    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(agentnb.run_sync(agent, sink=sink)), daemon=True
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "emit deadlocked: flush() ran under the run's lock"
    assert outcome == ["ok"]
    texts = [e.text for e in sink.events if isinstance(e, agentnb.TextChunk)]
    assert texts == ["a", "noted a", "b", "c"]
    # One flush per event (the child's and the terminal ones too), right after its send().
    assert sink.flushed_after == list(range(1, len(sink.events) + 1))
    assert set(sink.flush_threads) == set(sink.threads)


async def test_an_inline_sinks_flush_that_raises_is_reported_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingFlush(Inline):
        def flush(self) -> None:
            raise ValueError("cannot flush")

    failing, other = FailingFlush(), Recorder()

    async def agent() -> str:
        agentnb.emit("a")
        agentnb.emit("b")
        return "ok"

    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(agent, sink=[failing, other])
        assert await run.wait() == "ok"
    assert [e.kind for e in failing.events] == ["text"]  # no more after its flush raised
    assert other.kinds() == ["text", "text", "done"]
    assert [type(e) for _, e in run.sink_errors] == [ValueError]


def test_an_inline_sinks_flush_must_be_synchronous() -> None:
    class AsyncFlush(Inline):
        async def flush(self) -> None:
            pass

    async def agent() -> None:
        pass

    with pytest.raises(agentnb.AgentnbError, match=r"send\(\), flush\(\) and close\(\)"):
        agentnb.run_sync(agent, sink=AsyncFlush())
