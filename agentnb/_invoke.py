"""Calling an agent of any shape inside its run.

* ``async def``: awaited in the run's task.
* ``async def`` with ``yield``: each item it yields is emitted (text, or an event).
* ``def``: called in a thread of its own, so the loop keeps streaming while it
  works; ``def`` with ``yield`` likewise, its items emitted from that thread.

A generator's text is also its result (the chunks joined). A sync agent runs in
a daemon thread, not the loop's default executor: when its run is cancelled
(Stop, Ctrl-C in ``run_sync``) the run ends at once, and the thread, which
Python cannot stop, is left to finish on its own (it is told at its next emit,
which raises ``RunClosed``), instead of holding the caller until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._events import Event, TextChunk
from ._exceptions import InvalidEvent, RunClosed

if TYPE_CHECKING:
    from ._run import Run

__all__: list[str] = []  # the engine's parts, not public API

logger = logging.getLogger("agentnb")


async def invoke(
    run: Run, agent: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call *agent* of any supported shape in *run* (the current run); return its value."""
    __tracebackhide__ = True
    if inspect.isasyncgenfunction(agent):
        return await _collect_async(run, agent(*args, **kwargs))
    if inspect.iscoroutinefunction(agent) or inspect.iscoroutinefunction(
        getattr(agent, "__call__", None)  # noqa: B004
    ):
        return await agent(*args, **kwargs)
    if inspect.isgeneratorfunction(agent):
        return await _in_thread(run, _collect, run, agent, args, kwargs)
    value = await _in_thread(run, agent, *args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


class _Collected:
    """A generator agent's items: each one emitted, its text kept for the result."""

    __slots__ = ("parts", "run")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.parts: list[str] = []

    def take(self, item: object) -> None:
        if item is None or (isinstance(item, str) and not item):
            return  # an empty chunk (the last one of a model's stream, say): nothing to show
        if isinstance(item, str | Event):
            self.run.emit(item)
        else:
            raise InvalidEvent(
                f"the agent yielded a {type(item).__name__} ({item!r:.60}); an agent that "
                "yields gives text (str) or agentnb events (TextChunk, Status, ToolCall, "
                "ToolResult, Custom): yield str(value), or agentnb.Custom('my_kind', value)"
            )
        if type(item) is str:
            self.parts.append(item)
        elif isinstance(item, TextChunk):
            self.parts.append(item.text)
        elif isinstance(item, str):
            self.parts.append(str.__str__(item))

    def result(self) -> str | None:
        return "".join(self.parts) if self.parts else None


async def _collect_async(run: Run, gen: AsyncIterator[Any]) -> str | None:
    collected = _Collected(run)
    async for item in gen:
        collected.take(item)
    return collected.result()


def _collect(
    run: Run, agent: Callable[..., Iterable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    collected = _Collected(run)
    for item in agent(*args, **kwargs):
        collected.take(item)
    return collected.result()


async def _in_thread(run: Run, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a daemon thread, in a copy of this context; await its value.

    Cancelling the await ends it at once; the thread goes on until *fn* returns.
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, exc: BaseException | None) -> None:
        if result.done():
            return
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(value)

    def work() -> None:
        try:
            value = context.run(fn, *args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, RunClosed) and run.done:
                return  # the run ended while the thread worked: it was told, and stopped
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (value, None)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, *outcome)

    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    thread = threading.Thread(target=work, name=f"agentnb agent {name}", daemon=True)
    thread.start()
    try:
        return await result
    except asyncio.CancelledError:
        if thread.is_alive():
            logger.warning(
                "agentnb: run %s was cancelled while its agent %s runs in a thread; Python "
                "cannot stop a thread, so it is left to finish (its next emit raises RunClosed).",
                "/".join(run.path),
                name,
            )
        raise
