"""``agentnb.stream()``: a run's events as an async iterator (the plain asyncio sink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

from ._events import Event, TextChunk
from ._events import _new as _new
from ._fanout import take
from ._outlet import Outlet
from ._registry import AgentLike
from ._run import Run, _start
from ._sinks import SinkLike

__all__ = ["RunStream", "stream"]


class RunStream:
    """Async iterator over one run's events, ending after its terminal event.

    The run starts at the first ``__anext__`` (or ``async with``). If the agent
    failed, iteration raises its exception after yielding the Error event.
    Leaving the loop early cancels the run (the other sinks still get its
    Cancelled event) as soon as the stream is closed: at once with ``async with``
    or ``aclose()``, and when the stream object is dropped for a plain
    ``async for ... in agentnb.stream(...)``. A stream kept in a variable after a
    ``break`` keeps running until it is closed or dropped.
    """

    def __init__(
        self,
        agent: AgentLike,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        sink: SinkLike | Sequence[SinkLike] | None,
        name: str | None,
        maxsize: int,
        answers: bool = False,
    ) -> None:
        self._spec = (agent, args, kwargs, sink, name)
        self._maxsize = maxsize
        self._answers = answers
        self._run: Run | None = None
        self._outlet: Outlet | None = None
        self._ended = False  # our run's terminal event has been yielded
        self._closed = False  # the caller has seen the end (or stopped listening)

    @property
    def run(self) -> Run:
        """The run, once started."""
        if self._run is None:
            raise RuntimeError("the stream has not started: iterate it first")
        return self._run

    def _begin(self) -> tuple[Run, Outlet]:
        agent, args, kwargs, sink, name = self._spec
        self._spec = (agent, (), {}, None, None)
        run = _start(agent, args, kwargs, sink=sink, name=name, stream_maxsize=self._maxsize)
        if self._answers:  # set before the agent's task first runs (next loop turn)
            run._answers = True
        assert run._stream is not None
        self._run, self._outlet = run, run._stream
        return run, run._stream

    def __aiter__(self) -> AsyncIterator[Event]:
        # An async generator: each step costs less than an ``async def __anext__``.
        # It holds this stream (so the stream lives while it is iterated); the stream
        # does not hold it (so a stream dropped after a ``break`` is finalized at once).
        return self._events()

    async def __anext__(self) -> Event:
        async for event in self._events():
            return event
        raise StopAsyncIteration

    async def _events(self) -> AsyncIterator[Event]:
        if self._closed:
            return
        outlet = self._outlet
        if outlet is None:
            run, outlet = self._begin()
        else:
            assert self._run is not None
            run = self._run
        buffer = outlet.buffer
        popleft = buffer.popleft
        run_id = run.id
        while True:
            while buffer:
                if type(buffer[0]) is str:
                    # The hot path of take(): a text record, stamped and built here.
                    text = popleft()
                    fanout = popleft()
                    chunk = _new(TextChunk)
                    chunk._ts = popleft()
                    chunk._text = text
                    chunk._message_id = ""
                    chunk._run_id = fanout.id
                    chunk._path = fanout.path
                    chunk._seq = seq = fanout.seq
                    fanout.seq = seq + 1
                    yield chunk
                    continue
                event = take(outlet)
                if event.terminal and event.run_id == run_id:
                    self._ended = True
                yield event
            if self._ended:
                self._closed = True
                await run._drain()
                if run.status == "error":
                    run.outcome()  # raises the agent's exception
                return
            await outlet.wait()

    def answer(self, ask_id: str, value: str) -> None:
        """Answer the run's question *ask_id* (an ``ask`` event) with *value* (by ``code``)."""
        self.run.answer(ask_id, value, by="code")

    async def aclose(self) -> None:
        """Stop listening: cancel the run if it is still going and wait for it to end.

        Its sinks get ``SINK_GRACE`` seconds to take its last events; one still busy
        then is abandoned.
        """
        self._closed = True
        run = self._run
        if run is None or run._task is None:
            return
        run.cancel("the stream's consumer stopped listening")
        await asyncio.wait([run._task])
        await run._drain(leaving=True)

    async def __aenter__(self) -> RunStream:
        if self._run is None:
            self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        run = self._run
        if run is not None and not run.done:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                run.cancel("the stream's consumer stopped listening")


def stream(
    agent: AgentLike,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    maxsize: int = 0,
    answers: bool = False,
    **kwargs: Any,
) -> RunStream:
    """Run *agent* and iterate its events::

        async for event in agentnb.stream(poet, "the sea"):
            print(event)

    *sink* adds more sinks. With *maxsize* > 0, ``agentnb.aemit`` in the agent
    waits while that many events are waiting here (``emit`` never waits). With
    *answers*, the caller answers the run's questions (``ask`` events) with
    ``stream.answer(ask_id, value)``; without, a question takes its default, as
    where no one can answer.
    """
    return RunStream(agent, args, kwargs, sink=sink, name=name, maxsize=maxsize, answers=answers)
