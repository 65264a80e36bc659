"""``start_eagerly``: run the first step of an awaitable now, as a waiting task would run it.

A served run writes an event to a caught-up SSE client from inside ``emit``, in
the agent's own step, instead of waking the client's response task to do it one
event-loop turn later. The ASGI ``send`` it calls is a coroutine that, on
uvicorn, writes to the socket without waiting unless the socket's buffer is full.

``start_eagerly`` steps it once *as the response's task*: while the step runs,
``asyncio.current_task()`` is that task, and the context is one the task copied
from its own for its writes; every later step runs as that task in that same
context. So a ``send`` wrapper that takes a lock, enters a cancel scope or a
timeout, or sets and resets a context variable sees one task and one context
from start to end, as if the response's task had awaited it. Usually the step
finishes the write; if it has to wait, the :class:`Pending` rest is finished by
that task. Python 3.12's eager tasks run a new task's first step the same way,
by swapping the loop's current task with asyncio's ``_enter_task`` and
``_leave_task``, which this uses on every version (3.11 to 3.14 have them);
where they are missing, ``EAGER`` is false and nothing is written eagerly.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Generator
from typing import Any

__all__ = ["EAGER", "Pending", "start_eagerly"]

try:
    from asyncio.tasks import _enter_task, _leave_task
except ImportError:  # pragma: no cover - a Python without them: write from the task only
    EAGER = False
else:
    EAGER = True


def start_eagerly(
    awaitable: Awaitable[None], task: asyncio.Task[Any], context: contextvars.Context
) -> Pending | None:
    """Run *awaitable* up to its first wait as *task*, in *context*; None if it finished.

    *task* must be waiting (suspended) on the running loop, and must then await
    the :class:`Pending` rest itself. An exception raised before the first wait
    propagates from here.
    """
    loop = task.get_loop()
    steps: Generator[Any, Any, None] = awaitable.__await__()
    running = asyncio.current_task(loop)
    if running is not None:
        _leave_task(loop, running)
    _enter_task(loop, task)
    try:
        first = context.run(steps.send, None)
    except StopIteration:
        return None
    finally:
        _leave_task(loop, task)
        if running is not None:
            _enter_task(loop, running)
    return Pending(steps, context, first)


class Pending:
    """The rest of an awaitable that ``start_eagerly`` began and that had to wait.

    Finish it once, one of three ways: ``await pending``; ``await
    pending.throw(exc)`` when the task was cancelled (or interrupted) before it got
    to awaiting the rest: it is delivered as ``Task.cancel`` would have (the future
    the rest waits on is cancelled; anything else is raised where it waits); or
    ``close()``, which abandons it, running its cleanup.
    """

    __slots__ = ("_context", "_first", "_steps", "_taken")

    def __init__(
        self, steps: Generator[Any, Any, None], context: contextvars.Context, first: Any
    ) -> None:
        self._steps = steps
        self._context = context
        self._first = first  # what the first step waits on: a future, or None (a bare yield)
        self._taken = False

    def __await__(self) -> Generator[Any, Any, None]:
        return self._take(None)

    def throw(self, exc: BaseException) -> Awaitable[None]:
        return _Thrown(self, exc)

    def close(self) -> None:
        self._claim()
        self._context.run(self._steps.close)

    def _take(self, thrown: BaseException | None) -> Generator[Any, Any, None]:
        self._claim()
        first = self._first
        cancelled = isinstance(thrown, asyncio.CancelledError)
        if cancelled and asyncio.isfuture(first) and first.cancel():
            thrown = None  # as Task.cancel() does: what it waits on ends, cancelled
        return _finish(self._steps, self._context, first, thrown)

    def _claim(self) -> None:
        if self._taken:
            raise RuntimeError("this write was already finished or closed; finish it once")
        self._taken = True


class _Thrown:
    __slots__ = ("_exc", "_pending")

    def __init__(self, pending: Pending, exc: BaseException) -> None:
        self._pending = pending
        self._exc = exc

    def __await__(self) -> Generator[Any, Any, None]:
        return self._pending._take(self._exc)


def _finish(
    steps: Generator[Any, Any, None],
    context: contextvars.Context,
    waiting_on: Any,
    thrown: BaseException | None,
) -> Generator[Any, Any, None]:
    """Drive *steps* to its end, every step in *context*; start by throwing *thrown* in."""
    while True:
        try:
            if thrown is not None:
                exc, thrown = thrown, None
                waiting_on = context.run(steps.throw, exc)
                continue
            try:
                sent = yield waiting_on
            except GeneratorExit:
                context.run(steps.close)
                raise
            except BaseException as exc:  # cancellation, thrown into the awaiting task
                thrown = exc
                continue
            waiting_on = context.run(steps.send, sent)
        except StopIteration:
            return
