"""The emit path: stamping an event and handing it to every consumer of its run, in order.

Each run has a :class:`Fanout`. A child run's fan-out reaches its own outlets and
its parent's, and shares one lock with the whole run tree, so every consumer
sees the tree's events in the same order, even with worker threads emitting.
``emit`` never awaits and never blocks on a sink. Two cases:

* The run has one consumer (one unbounded outlet, no inline sink: ``stream()``
  alone, or one sink). ``emit`` appends a record (see ``_outlet``) with one
  atomic ``deque.extend``; the consumer stamps it (``seq`` in the order records
  arrive) when it takes it. On the run's own loop thread this takes no lock:
  that thread is the only one that ends the run, so nothing can slip in after
  its terminal event. Other threads take the lock, as does the terminal event.
* Otherwise, under the lock, ``emit`` stamps the event (seq and time), appends
  that one event to every open outlet and calls the inline sinks.

Either way a consumer that waits is woken only when it waits.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable

from ._events import Event, make_text_chunk
from ._exceptions import InvalidSink, RunClosed
from ._outlet import Outlet

__all__: list[str] = []  # the engine's parts, not public API

_now = time.time
_get_ident = threading.get_ident


class InlineSink:
    """An inline sink of a run: called under the lock; one that raises is cut off."""

    __slots__ = ("failed", "report", "send")

    def __init__(
        self, send: Callable[[Event], object], report: Callable[[Exception, Event], None]
    ) -> None:
        self.send = send
        self.report = report
        self.failed = False


class Fanout:
    """One run's stamping and delivery; see the module docstring."""

    __slots__ = (
        "closed",
        "ending",
        "id",
        "inline",
        "inline_thread",
        "lock",
        "loop_thread",
        "own",
        "path",
        "queues",
        "seq",
        "single",
        "tree",
    )

    def __init__(self, run_id: str, path: tuple[str, ...], parent: Fanout | None) -> None:
        self.id = run_id
        self.path = path
        # What the runs of one tree share, kept by its root: the lock, and who is
        # inside an inline sink (the thread calling them under the lock, or 0).
        self.tree: Fanout = parent.tree if parent is not None else self
        self.lock: threading.Lock = parent.lock if parent is not None else threading.Lock()
        self.inline_thread = 0
        # The next seq: emit's (several consumers), or the one consumer's (it stamps).
        self.seq = 0
        self.closed = False  # the run's terminal event has been emitted
        self.ending = ""  # its status (done, error, cancelled), set with the terminal event
        self.own: tuple[Outlet, ...] = ()  # this run's outlets (closed with it)
        self.queues: tuple[Outlet, ...] = ()  # its own outlets, then its parent's
        self.inline: tuple[InlineSink, ...] = ()  # its own inline sinks, then its parent's
        self.single: Outlet | None = None  # the one consumer's outlet, in the first case
        self.loop_thread = 0  # the thread of the run's loop

    def connect(self, own: list[Outlet], inline: list[InlineSink], parent: Fanout | None) -> None:
        """Wire this run's outlets and inline sinks (and its parent's) before it starts."""
        self.own = tuple(own)
        self.queues = (*self.own, *parent.queues) if parent else self.own
        self.inline = (*inline, *(parent.inline if parent else ()))
        one = len(self.queues) == 1 and not self.inline and not self.queues[0].maxsize
        self.single = self.queues[0] if one else None
        self.loop_thread = _get_ident()

    @property
    def bounded(self) -> tuple[Outlet, ...]:
        """The outlets with a maxsize (``aemit`` waits for room in them)."""
        return tuple(q for q in self.queues if q.maxsize)

    def put(self, item: str | Event, final: bool = False) -> None:
        """Stamp *item* (a str, or an unstamped event already checked) and deliver it.

        *final*: it is the run's terminal event; the run is closed with it. Raises
        ``RunClosed`` once the run has ended.
        """
        single = self.single
        if single is not None and not final and _get_ident() == self.loop_thread:
            # The first case, on the run's loop thread: no lock (see the module docstring).
            if self.closed:
                raise RunClosed(self.id, self.path, self.ending)
            single.buffer.extend((item, self, _now()))
            if single.waiter is not None:
                single.wake()
            return
        lock = self.lock
        if not lock.acquire(False):
            self._acquire(lock)
        try:
            if self.closed:
                raise RunClosed(self.id, self.path, self.ending)
            if final:
                self.closed = True
            if single is not None:
                single.buffer.extend((item, self, _now()))
                if single.waiter is not None:
                    single.wake()
                return
            seq = self.seq
            self.seq = seq + 1
            event: Event
            if type(item) is str:
                event = make_text_chunk(item, self.id, seq, self.path, _now())
            else:
                assert isinstance(item, Event)
                event = item._stamped(self.id, seq, self.path, _now())
            for outlet in self.queues:
                if not outlet.closed:
                    outlet.buffer.append(event)
                    if outlet.waiter is not None:
                        outlet.wake()
            if self.inline:
                self._call_inline(event)
        finally:
            if final:
                for outlet in self.own:
                    outlet.closed = True
            lock.release()

    def _acquire(self, lock: threading.Lock) -> None:
        if self.tree.inline_thread == _get_ident():
            raise InvalidSink(
                "an inline sink emitted into the run it is a sink of: inline sinks are "
                "called by emit itself, under the run's lock, so they cannot emit; drop "
                "inline = True to have the sink fed by a task of its own"
            )
        lock.acquire()

    def _call_inline(self, event: Event) -> None:
        tree = self.tree
        tree.inline_thread = _get_ident()
        try:
            for sink in self.inline:
                if sink.failed:
                    continue
                try:
                    result = sink.send(event)
                    if result is not None:
                        _refuse_awaitable(result)
                except Exception as exc:  # reported; the other sinks go on
                    sink.failed = True
                    sink.report(exc, event)
        finally:
            tree.inline_thread = 0


def take(outlet: Outlet) -> Event:
    """Take the oldest event from *outlet* (not empty), stamping it if it is a record."""
    buffer = outlet.buffer
    head = buffer.popleft()
    if type(head) is str or (buffer and type(buffer[0]) is Fanout):
        fanout: Fanout = buffer.popleft()
        event = stamp(head, fanout, buffer.popleft())
    else:
        event = head
    if outlet.space is not None:
        outlet.took()
    return event


def stamp(item: str | Event, fanout: Fanout, ts: float) -> Event:
    """The event a record stands for, with its run's next ``seq``."""
    seq = fanout.seq
    fanout.seq = seq + 1
    if type(item) is str:
        return make_text_chunk(item, fanout.id, seq, fanout.path, ts)
    assert isinstance(item, Event)
    return item._stamped(fanout.id, seq, fanout.path, ts)


def _refuse_awaitable(result: object) -> None:
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it so Python does not warn as well
        raise InvalidSink("an inline sink's send() returned an awaitable; it must not")
