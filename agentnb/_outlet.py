"""Outlets: one consumer's FIFO of a run tree's events, filled by emit from any thread.

An outlet holds *entries* of two shapes:

* a stamped event (one slot): what a run with several consumers, or with inline
  sinks, appends, the same event object for every consumer;
* a *record* of three slots, ``item, fanout, ts``: what a run whose only consumer
  is this outlet appends (``item`` is the str or the unstamped event emitted,
  ``fanout`` the run's, ``ts`` the time). The consumer stamps it when it takes
  it: it gives the run's next ``seq`` (records are taken in the order they were
  appended) and builds the event. Nothing in a record is an object the cyclic
  garbage collector tracks, so a burst of 100,000 chunks waiting in an outlet
  costs no collection that walks them, and emit need not build the event.

:func:`agentnb._fanout.take` takes the next event (``stream()`` inlines its text path).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any

__all__: list[str] = []  # the engine's parts, not public API

_get_ident = threading.get_ident


class Outlet:
    """One consumer's FIFO of entries, with a wake-up for when it is empty.

    ``emit`` appends, from any thread, then calls ``wake`` if it sees ``waiter``
    set; everything else runs on the loop the outlet was made on, in the consumer
    (a sink's feeder task, or ``stream()``). The consumer publishes its waiter
    before it looks at the buffer a last time, and emit appends before it looks
    for the waiter, so one of them always sees the other: no wake-up is lost.
    """

    __slots__ = (
        "buffer",
        "closed",
        "loop",
        "loop_thread",
        "maxsize",
        "owner_id",
        "space",
        "waiter",
    )

    def __init__(self, owner_id: str, maxsize: int = 0) -> None:
        self.owner_id = owner_id  # the run whose terminal event ends this outlet
        self.buffer: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.space: asyncio.Future[None] | None = None
        self.maxsize = maxsize  # > 0: aemit waits while more events than that wait here
        self.closed = False  # its run has ended: emit appends nothing more
        self.loop = asyncio.get_running_loop()
        self.loop_thread = _get_ident()

    def wake(self) -> None:
        """Wake the consumer (emit saw ``waiter`` set)."""
        waiter = self.waiter
        self.waiter = None
        if waiter is None:
            return
        if _get_ident() == self.loop_thread:
            if not waiter.done():
                waiter.set_result(None)
        else:
            # RuntimeError: the loop is closed, nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_resolve, waiter)

    async def wait(self) -> None:
        """Return once the buffer is not empty."""
        if self.buffer:
            return
        waiter = self.waiter = self.loop.create_future()
        if self.buffer:  # appended before the waiter was published: emit did not see it
            self.waiter = None
            return
        try:
            await waiter
        finally:
            self.waiter = None

    def took(self) -> None:
        """The consumer removed entries: release ``aemit`` callers waiting for room."""
        space = self.space
        if space is not None and len(self.buffer) <= self.maxsize:
            self.space = None
            if not space.done():
                space.set_result(None)

    async def wait_for_room(self) -> None:
        while len(self.buffer) > self.maxsize and not self.closed:
            if self.space is None or self.space.done():
                self.space = self.loop.create_future()
            await self.space


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
