"""``start_eagerly``: run an awaitable as far as it goes now, in whatever task is running.

A served run writes an event to a caught-up SSE client from inside ``emit``, in
the agent's own step, instead of waking the client's response task to do it one
event-loop turn later. The ASGI ``send`` it calls is a coroutine that, on
uvicorn, writes to the socket without waiting unless the socket's buffer is full.
``start_eagerly`` steps it once: usually it finishes right there; if it has to
wait, what is left is handed back as an awaitable for the client's own task to
finish (Python 3.12's eager tasks do the same for whole tasks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

__all__ = ["start_eagerly"]


def start_eagerly(awaitable: Awaitable[None]) -> Awaitable[None] | None:
    """Run *awaitable* up to its first wait; None if it finished, else the rest of it.

    The rest must be awaited (once) by the task that takes over, and on the same
    event loop: it waits on exactly what the first step waited on. An exception
    raised before the first wait propagates from here.
    """
    steps: Generator[Any, Any, None] = awaitable.__await__()
    try:
        first = steps.send(None)
    except StopIteration:
        return None
    return _Rest(steps, first)


class _Rest:
    """The rest of an awaitable that ``start_eagerly`` started and that had to wait."""

    __slots__ = ("_first", "_steps")

    def __init__(self, steps: Generator[Any, Any, None], first: Any) -> None:
        self._steps = steps
        self._first = first

    def __await__(self) -> Generator[Any, Any, None]:
        steps = self._steps
        waiting_on = self._first  # a future (or None: yield to the loop), as awaited
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # cancellation, thrown into the awaiting task
                try:
                    waiting_on = steps.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = steps.send(sent)
                except StopIteration:
                    return
