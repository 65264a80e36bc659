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

    with pytest.raises(agentnb.InvalidSink, match="must be plain functions"):
        agentnb.run_sync(agent, sink=Async())


async def test_an_inline_sink_that_emits_into_its_run_is_cut_off_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Under the run's lock, its emit would wait for the lock its own thread holds.
    class Echo(Inline):
        def __init__(self) -> None:
            super().__init__()
            self.run: agentnb.Run | None = None

        def open(self, run: agentnb.Run) -> None:
            self.run = run

        def send(self, event: Event) -> None:
            super().send(event)
            assert self.run is not None
            self.run.emit("echo")

    echo, other = Echo(), Recorder()

    async def agent() -> str:
        agentnb.emit("a")
        agentnb.emit("b")
        return "ok"

    with caplog.at_level(logging.ERROR, logger="agentnb"):
        run = agentnb.start(agent, sink=[echo, other])
        assert await asyncio.wait_for(run.wait(), 10) == "ok"
    assert other.kinds() == ["text", "text", "done"]  # the run went on, unharmed
    assert [e.kind for e in echo.events] == ["text"]  # cut off after it emitted
    [(sink, error)] = run.sink_errors
    assert sink is echo
    assert isinstance(error, agentnb.InvalidSink)
    assert "cannot emit" in str(error)
