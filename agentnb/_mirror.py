"""Child runs that show what happens elsewhere: a remote sub-run, a subgraph, a handed-off agent.

A :class:`Mirror` is a child run whose agent does nothing but wait: the code that
drives it (an adapter reading a framework's stream, the client mirroring a remote
run) emits events into it as they arrive elsewhere, opens its own mirrors under it,
and ends it with a result or an exception. Sinks see an ordinary tree of runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._events import Event
from ._run import Run

__all__: list[str] = []  # what adapters and fronts build on, not public API


async def _await_outcome(outcome: asyncio.Future[Any]) -> Any:
    return await outcome


class Mirror:
    """A child of *parent* named *name*, driven from outside: ``emit``, ``child``, ``end``."""

    __slots__ = ("_outcome", "run")

    def __init__(self, parent: Run, name: str) -> None:
        self._outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.run = parent.start_child(_await_outcome, self._outcome, name=name)

    def emit(self, event: Event | str) -> None:
        self.run.emit(event)

    def child(self, name: str) -> Mirror:
        """A mirror run under this one."""
        return Mirror(self.run, name)

    def end(self, result: Any = None, error: BaseException | None = None) -> None:
        """End the run: it returns *result*, or raises *error* (a CancelledError cancels it).

        Ending twice does nothing.
        """
        if self._outcome.done():
            return
        if error is not None:
            self._outcome.set_exception(error)
        else:
            self._outcome.set_result(result)

    async def ended(self) -> None:
        """Wait until the run has ended and emitted its terminal event, whatever it was."""
        await ended(self.run)


async def ended(run: Run) -> None:
    """Wait until *run* has ended, whatever its outcome (its terminal event says it)."""
    if run.done:
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def mark(_run: Run) -> None:
        if not done.done():
            done.set_result(None)

    run.add_done_callback(mark)
    await done
