"""``agentnb.stream()``: a run's events as an async iterator (the plain asyncio sink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ._events import Event
from ._run import Outlet, Run, _start
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
        agent: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        sink: SinkLike | Sequence[SinkLike] | None,
        name: str | None,
        maxsize: int,
    ) -> None:
        self._spec = (agent, args, kwargs, sink, name)
        self._maxsize = maxsize
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
        outlet = run._own_outlets[0]
        self._run, self._outlet = run, outlet
        return run, outlet

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._run is None or self._outlet is None:
            run, outlet = self._begin()
        else:
            run, outlet = self._run, self._outlet
        buffer = outlet.buffer
        while True:
            if buffer:
                event = buffer.popleft()
                if outlet.space is not None:
                    outlet.took()
                if event.terminal and event.run_id == run.id:
                    self._ended = True
                return event
            if self._ended:
                self._closed = True
                await run._drain()
                if run.status == "error":
                    run.outcome()  # raises the agent's exception
                raise StopAsyncIteration
            await outlet.wait()

    async def aclose(self) -> None:
        """Stop listening: cancel the run if it is still going and wait for it to end."""
        self._closed = True
        run = self._run
        if run is None or run._task is None:
            return
        run.cancel("the stream's consumer stopped listening")
        await asyncio.wait([run._task])
        await run._drain()

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
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    maxsize: int = 0,
    **kwargs: Any,
) -> RunStream:
    """Run *agent* and iterate its events::

        async for event in agentnb.stream(poet, "the sea"):
            print(event)

    *sink* adds more sinks. With *maxsize* > 0, ``agentnb.aemit`` in the agent
    waits while that many events are waiting here (``emit`` never waits).
    """
    return RunStream(agent, args, kwargs, sink=sink, name=name, maxsize=maxsize)
