"""The sink protocol: where a run's events go.

A sink is any object with a ``send(event)`` method, sync or ``async``, or a plain
callable taking the event (``sink=print`` works). Optionally it has
``open(run)``, called (synchronously) with the ``Run`` before its agent starts,
e.g. to show a view or keep the run for a stop button; ``close()`` (sync or
async), called once after the run it was given to has ended; and ``maxsize``
(an int > 0): how many undelivered events may wait for it before
``agentnb.aemit`` holds the agent back. ``emit`` itself never blocks.

Each sink is fed, in order, from its own queue by its own task, so a slow
*async* sink stalls neither the agent nor the other sinks. A synchronous
``send`` runs on the event loop: one that blocks (a network call, a
``time.sleep``) stalls the loop and everything on it for that long. So a sink
must not block: make its ``send`` async, or set ``blocking = True`` on it, and
its plain ``send`` runs in a worker thread (one event at a time, in order). A
sink that is still busy when its run's caller stops waiting (a timeout, a
cancel) gets a second more, then is abandoned (see ``SinkStuck``).

A sink with ``inline = True`` is called instead by ``emit`` itself, in the
emitting thread, while the run's lock is held: for a sink that only files the
event away (the web front's replay buffer), so it has the event without waiting
for a task to be scheduled. Its ``send`` and ``close`` must be synchronous, fast
and thread-safe, and must not emit into the run (that raises ``InvalidSink``).

A sink with ``answers = True`` takes answers to the run's questions (``agentnb.ask``:
a front end that shows them and can answer, see ``Run.answer``); where no sink of a
run or its ancestors does, a question takes its default. A sink's ``metadata`` (a
mapping) is given to its run at start (``Run.metadata``): a front end passes what it
knows about the request (a protocol's thread id, state, ...) to the agent.

A sink that raises is reported (logged on the ``agentnb`` logger and kept in
``Run.sink_errors``), gets no further events of that run (its ``close()`` is
still called), and the other sinks keep receiving. Events may be shared between
sinks: treat their dicts and lists as read-only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ._events import Event
from ._exceptions import InvalidSink

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
    blocking: bool = False  # its send() runs in a worker thread

    @property
    def label(self) -> str:
        return label(self.sink)


def label(sink: object) -> str:
    """How messages name a sink: its class (or function) and its id."""
    name = getattr(sink, "__qualname__", None) or type(sink).__qualname__
    return f"{name} at {id(sink):#x}"


def delivery_for(sink: object) -> Delivery:
    """Check that *sink* is usable and describe how to feed it; raises ``InvalidSink``."""
    send = getattr(sink, "send", None)
    if send is None or not callable(send):
        if not callable(sink):
            raise InvalidSink(
                f"sink={sink!r} is not a sink: give an object with a send(event) method "
                "(sync or async), a callable taking the event, or a list of those."
            )
        send = sink
    close = getattr(sink, "close", None) if send is not sink else None
    opener = getattr(sink, "open", None) if send is not sink else None
    maxsize = getattr(sink, "maxsize", 0)
    if type(maxsize) is not int or maxsize < 0:
        raise InvalidSink(f"{label(sink)}: maxsize must be an int >= 0, got {maxsize!r}")
    inline = getattr(sink, "inline", False) is True
    blocking = getattr(sink, "blocking", False) is True
    if inline and any(inspect.iscoroutinefunction(f) for f in (send, close)):
        raise InvalidSink(
            f"{label(sink)}: an inline sink is called by emit itself, so its send() and "
            "close() must be plain functions; drop inline = True to have it fed by a task."
        )
    if blocking and (inline or inspect.iscoroutinefunction(send)):
        raise InvalidSink(
            f"{label(sink)}: blocking = True runs a plain send() in a worker thread; an "
            "inline sink or an async send() cannot be one."
        )
    return Delivery(
        sink=sink,
        send=send,
        open=opener if callable(opener) else None,
        close=close if callable(close) else None,
        maxsize=maxsize,
        inline=inline,
        blocking=blocking,
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
