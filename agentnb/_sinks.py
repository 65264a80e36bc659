"""The sink protocol: where a run's events go.

A sink is any object with a ``send(event)`` method, sync or ``async``, or a plain
callable taking the event (``sink=print`` works). Optionally it has
``open(run)``, called (synchronously) with the ``Run`` before its agent starts,
e.g. to show a view or keep the run for a stop button; ``close()`` (sync or
async), called once after the run it was given to has ended; and ``maxsize``
(an int > 0): how many undelivered events may wait for it before
``agentnb.aemit`` holds the agent back. ``emit`` itself never blocks.

Each sink is fed, in order, from its own queue by its own task, so a slow sink
stalls neither the agent nor the other sinks. A sink with ``inline = True`` is
called instead by ``emit`` itself, in the emitting thread, while the run's lock
is held: for a sink that only files the event away (the web front's replay
buffer), so it gets the event without waiting for a task to be scheduled. Its
``send`` must be synchronous, fast and thread-safe, and its ``close()``
synchronous. Its ``flush()``, if it has one (synchronous too), is called by
``emit`` right after, in the same thread, once the lock is released: for work
that calls out (the web front writes to the clients waiting for the event
there), which may itself emit. A sink that raises is reported
(logged on the ``agentnb`` logger and kept in ``Run.sink_errors``), gets no
further events of that run (its ``close()`` is still called), and the other
sinks keep receiving. Events are shared between sinks: treat their dicts and
lists as read-only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ._events import Event
from ._exceptions import AgentnbError

__all__ = ["Sink", "SinkLike"]


@runtime_checkable
class Sink(Protocol):
    """Anything with ``send(event)``; see the module docstring for the optional parts."""

    def send(self, event: Event, /) -> Awaitable[None] | None: ...


SinkLike: TypeAlias = Sink | Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class Delivery:
    """How the runner talks to one sink, worked out once per run."""

    sink: object
    send: Callable[[Event], object]
    open: Callable[[Any], object] | None
    close: Callable[[], object] | None
    maxsize: int
    inline: bool = False
    flush: Callable[[], object] | None = None  # an inline sink's, called after emit's lock

    @property
    def label(self) -> str:
        return _label(self.sink)


def _label(sink: object) -> str:
    name = getattr(sink, "__qualname__", None) or type(sink).__qualname__
    return f"{name} at {id(sink):#x}"


def delivery_for(sink: object) -> Delivery:
    """Check that *sink* is usable and describe how to feed it."""
    send = getattr(sink, "send", None)
    if send is None or not callable(send):
        if not callable(sink):
            raise AgentnbError(
                f"sink={sink!r} is not a sink: give an object with a send(event) method "
                "(sync or async), a callable taking the event, or a list of those."
            )
        send = sink
    close = getattr(sink, "close", None) if send is not sink else None
    opener = getattr(sink, "open", None) if send is not sink else None
    maxsize = getattr(sink, "maxsize", 0)
    if type(maxsize) is not int or maxsize < 0:
        raise AgentnbError(f"{_label(sink)}: maxsize must be an int >= 0, got {maxsize!r}")
    inline = getattr(sink, "inline", False) is True
    flush = getattr(sink, "flush", None) if inline else None
    if inline and any(inspect.iscoroutinefunction(f) for f in (send, close, flush)):
        raise AgentnbError(
            f"{_label(sink)}: an inline sink is called by emit itself, so its send(), "
            "flush() and close() must be plain functions; drop inline = True to have it fed "
            "by a task."
        )
    return Delivery(
        sink=sink,
        send=send,
        open=opener if callable(opener) else None,
        close=close if callable(close) else None,
        maxsize=maxsize,
        inline=inline,
        flush=flush if callable(flush) else None,
    )


def deliveries(sink: SinkLike | Sequence[SinkLike] | None) -> list[Delivery]:
    """Accept ``None``, one sink or a list/tuple of sinks."""
    if sink is None:
        return []
    if isinstance(sink, list | tuple) and not hasattr(sink, "send"):  # a list that is a sink is one
        return [delivery_for(s) for s in sink]
    return [delivery_for(sink)]


async def call_maybe_async(fn: Callable[[], object]) -> None:
    result = fn()
    if inspect.isawaitable(result):
        await result
