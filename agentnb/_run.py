"""Runs: the context variable that scopes ``emit``, and the machinery behind it.

Design, in short:

* A ``Run`` owns a sequence counter and a tuple of *outlets*: one FIFO per
  consumer (a sink's feeder task, or a ``stream()`` iterator). A child run's
  outlets are its own plus its parent's, so its events also reach the parent's
  sinks.
* ``emit`` stamps the event and appends it to every outlet under one lock per
  run tree, so every consumer sees the same order and ``seq`` has no gaps, even
  with worker threads emitting. It wakes a consumer only when one is waiting;
  a thread that is not the run's loop thread wakes it with
  ``call_soon_threadsafe``. It never awaits and never blocks on a sink.
* The agent runs in its own task (a copy of the caller's context) which sets
  the run context variable and resets it in ``finally``. When the agent ends the
  task emits exactly one terminal event (Done, Error or Cancelled) and closes
  the run: later emits raise ``RunClosed`` instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from ._events import (
    JSON,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    TextChunk,
    make_text_chunk,
    to_json_value,
)
from ._exceptions import InvalidEvent, NoActiveRun, RunCancelled, RunClosed
from ._registry import agent_name, resolve_agent
from ._sinks import Delivery, SinkLike, call_maybe_async, deliveries

__all__ = ["Run", "aemit", "current_run", "emit", "start"]

logger = logging.getLogger("agentnb")

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "agentnb.current_run", default=None
)
# Sinks that every top-level run started in this context also feeds
# (set by agentnb.testing.capture_events()).
_ambient_sinks: contextvars.ContextVar[tuple[SinkLike, ...]] = contextvars.ContextVar(
    "agentnb.ambient_sinks", default=()
)

RunStatus = Literal["pending", "running", "done", "error", "cancelled"]
_now = time.time
_get_ident = threading.get_ident


class Outlet:
    """One consumer's FIFO of a run's events, with a wake-up for when it is empty.

    ``push`` runs under the run tree's lock, from any thread; everything else
    runs on the loop the outlet was made on.
    """

    __slots__ = (
        "buffer",
        "closed",
        "lock",
        "loop",
        "loop_thread",
        "maxsize",
        "owner_id",
        "space",
        "waiter",
    )

    def __init__(self, owner_id: str, lock: threading.Lock, maxsize: int = 0) -> None:
        self.owner_id = owner_id
        self.lock = lock
        self.buffer: deque[Event] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.space: asyncio.Future[None] | None = None
        self.maxsize = maxsize
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.loop_thread = _get_ident()

    def wake(self) -> None:
        """Wake the consumer (caller holds the lock and saw ``waiter`` set)."""
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
        """Return once the buffer is non-empty."""
        with self.lock:
            if self.buffer:
                return
            waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def took(self) -> None:
        """The consumer removed events: release ``aemit`` callers waiting for room."""
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


class _Deliver:
    """The buffer of an inline sink's outlet: appending an event hands it to the sink.

    ``emit`` appends to every outlet's buffer under the run tree's lock, so an
    inline sink is called right there, with nothing queued and no task to wake
    (its outlet never has a waiter). Its ``flush()``, if it has one, is called
    once the lock is released. A sink that raises is reported and closed.
    """

    __slots__ = ("delivery", "failed", "outlet", "run")

    def __init__(self, run: Run, outlet: Outlet, delivery: Delivery) -> None:
        self.run = run
        self.outlet = outlet
        self.delivery = delivery
        self.failed = False

    def append(self, event: Event) -> None:
        try:
            result = self.delivery.send(event)
            if result is not None and inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: close it so Python does not warn as well
                raise TypeError("an inline sink's send() returned an awaitable; it must not")
        except Exception as exc:  # reported; the other sinks go on
            self.failed = self.outlet.closed = True
            _report_sink_error(self.run, self.delivery, exc, event)

    def __len__(self) -> int:
        return 0

    def flush(self) -> None:
        """The sink's ``flush()``: emit calls it after releasing the run's lock."""
        assert self.delivery.flush is not None
        if self.failed:
            return
        try:
            self.delivery.flush()
        except Exception as exc:  # reported; the other sinks go on
            self.failed = self.outlet.closed = True
            _report_sink_error(self.run, self.delivery, exc, None)

    def close(self) -> None:
        if self.delivery.close is not None:
            try:
                self.delivery.close()
            except Exception as exc:
                _report_sink_error(self.run, self.delivery, exc, None)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Run:
    """One execution of an agent. ``agentnb.current_run()`` returns it inside the run.

    Attributes: ``id`` (hex string), ``name`` (the agent's), ``path`` (names from
    the outermost run to this one), ``parent`` (the enclosing run or None),
    ``status`` (pending, running, done, error, cancelled), ``result`` and
    ``exception`` once ended, ``sink_errors`` (sinks that raised).
    """

    __slots__ = (
        "__weakref__",
        "_agent",
        "_args",
        "_children",
        "_closed",
        "_feeders",
        "_flushes",
        "_inline",
        "_kwargs",
        "_lock",
        "_loop",
        "_loop_thread",
        "_outlets",
        "_own_outlets",
        "_seq",
        "_status",
        "_stop_reason",
        "_task",
        "exception",
        "id",
        "name",
        "parent",
        "path",
        "result",
        "sink_errors",
    )

    def __init__(
        self,
        agent: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str | None = None,
        parent: Run | None = None,
    ) -> None:
        self.id = os.urandom(8).hex()
        self.name = name or agent_name(agent)
        self.parent = parent
        self.path: tuple[str, ...] = (*parent.path, self.name) if parent else (self.name,)
        self._status: RunStatus = "pending"
        self.result: Any = None
        self.exception: BaseException | None = None
        self.sink_errors: list[tuple[object, Exception]] = []
        self._agent = agent
        self._args = args
        self._kwargs = kwargs
        self._lock: threading.Lock = parent._lock if parent else threading.Lock()
        self._seq = 0
        self._closed = False
        self._outlets: tuple[Outlet, ...] = ()
        self._own_outlets: list[Outlet] = []
        self._inline: list[_Deliver] = []  # the buffers of this run's inline sinks' outlets
        self._flushes: tuple[_Deliver, ...] = ()  # those with flush(), this run's and its parents'
        self._feeders: list[asyncio.Task[None]] = []
        self._children: set[Run] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def __repr__(self) -> str:
        return f"<agentnb.Run {'/'.join(self.path)} id={self.id} {self.status}>"

    # -- emitting ---------------------------------------------------------------

    def emit(self, event: Event | str) -> None:
        """Send *event* (or a str, as a text chunk) to this run's sinks.

        Thread-safe, never blocks, never awaits. Raises ``InvalidEvent`` for
        anything that is not an event or a str, and ``RunClosed`` once the run
        has ended.
        """
        if type(event) is str:
            lock = self._lock
            lock.acquire()  # not `with`: this is the hottest path, and acquire() is faster
            try:
                if self._closed:
                    raise RunClosed(self.id, self.path, self.status)
                seq = self._seq
                self._seq = seq + 1
                stamped = make_text_chunk(event, self.id, seq, self.path, _now())
                for outlet in self._outlets:
                    if not outlet.closed:
                        outlet.buffer.append(stamped)
                        if outlet.waiter is not None:
                            outlet.wake()
            finally:
                lock.release()
            if self._flushes:
                self._flush()
            return
        if isinstance(event, str):  # a str subclass, e.g. a StrEnum member
            self.emit(str.__str__(event))
            return
        self._emit_event(_checked(event))

    def _emit_event(self, event: Event, *, final: bool = False) -> None:
        with self._lock:
            if self._closed:
                raise RunClosed(self.id, self.path, self.status)
            seq = self._seq
            self._seq = seq + 1
            stamped = event._stamped(self.id, seq, self.path, _now())
            if final:
                self._closed = True
            for outlet in self._outlets:
                if not outlet.closed:
                    outlet.buffer.append(stamped)
                    if outlet.waiter is not None:
                        outlet.wake()
            if final:
                for outlet in self._own_outlets:
                    outlet.closed = True
        if self._flushes:
            self._flush()

    def _flush(self) -> None:
        """Inline sinks' after-emit work: outside the lock, so it may call out (a socket write)."""
        for inline in self._flushes:
            inline.flush()

    async def aemit(self, event: Event | str) -> None:
        """``emit``, then wait while any bounded sink has ``maxsize`` events waiting."""
        self.emit(event)
        bounded = [o for o in self._outlets if o.maxsize and len(o.buffer) > o.maxsize]
        for outlet in bounded:
            if _get_ident() == outlet.loop_thread:
                await outlet.wait_for_room()
            else:
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(outlet.wait_for_room(), outlet.loop)
                )

    # -- lifecycle --------------------------------------------------------------

    def cancel(self, reason: str = "") -> bool:
        """Ask the run to stop; thread-safe. False if it had already ended."""
        task = self._task
        if task is None or task.done() or self._closed:
            return False
        self._stop_reason = self._stop_reason or reason
        loop = self._loop
        if loop is not None and _get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(task.cancel, self._stop_reason)
        else:
            task.cancel(self._stop_reason)
        return True

    def add_done_callback(self, fn: Callable[[Run], object]) -> None:
        """Call ``fn(run)`` on the run's loop once the run has ended."""
        task = self._task
        if task is None:
            raise RuntimeError("this run has not been started")
        task.add_done_callback(lambda _task: fn(self))

    @property
    def status(self) -> RunStatus:
        """pending, running, then done, error or cancelled."""
        return self._status

    @property
    def done(self) -> bool:
        """True once the terminal event has been emitted."""
        return self._closed

    def _begin(self, sinks: list[Delivery], stream_maxsize: int | None = None) -> None:
        """Wire up outlets and feeders and start the agent's task (on the running loop).

        With *stream_maxsize*, the first outlet has no feeder: ``stream()`` reads it.
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = _get_ident()
        for delivery in sinks:  # first: a sink that fails to open starts nothing
            if delivery.open is not None:
                delivery.open(self)
        own = [] if stream_maxsize is None else [Outlet(self.id, self._lock, stream_maxsize)]
        for delivery in sinks:
            outlet = Outlet(self.id, self._lock, delivery.maxsize)
            own.append(outlet)
            if delivery.inline:
                outlet.buffer = _Deliver(self, outlet, delivery)  # type: ignore[assignment]
                self._inline.append(outlet.buffer)  # type: ignore[arg-type]
                continue
            self._feeders.append(
                self._loop.create_task(
                    _feed(self, outlet, delivery), name=f"agentnb feed {delivery.label}"
                )
            )
        self._own_outlets = own
        parent = self.parent
        inherited = parent._outlets if parent is not None else ()
        self._outlets = (*own, *inherited)
        flushes = tuple(inline for inline in self._inline if inline.delivery.flush is not None)
        self._flushes = (*flushes, *(parent._flushes if parent is not None else ()))
        if parent is not None:
            parent._children.add(self)
        self._status = "running"
        self._task = self._loop.create_task(
            self._drive(), name=f"agentnb run {'/'.join(self.path)}"
        )
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Backstop: a task cancelled before its first step never ran ``_drive``."""
        if self._closed:
            return
        self._finish("cancelled", Cancelled(self._stop_reason or "cancelled before it started"))
        self._agent = self._args = self._kwargs = None  # type: ignore[assignment]
        if self.parent is not None:
            self.parent._children.discard(self)

    async def _drive(self) -> None:
        __tracebackhide__ = True  # IPython: show the agent's frames, not the runner's
        token = _current_run.set(self)
        try:
            status: RunStatus
            event: Event
            try:
                value = await _invoke(self._agent, self._args, self._kwargs)
            except asyncio.CancelledError as exc:
                reason = self._stop_reason or (str(exc.args[0]) if exc.args else "")
                status, event = "cancelled", Cancelled(reason)
            except BaseException as exc:  # reported as the Error event, re-raised by wait()
                self.exception = exc
                status, event = "error", _error_event(exc)
            else:
                self.result = value
                status, event = "done", Done(_result_json(value))
            if await self._end_children() and status == "done":
                # cancel() said yes while the children were ending: honour it.
                status, event = "cancelled", Cancelled(self._stop_reason)
            self._finish(status, event)
            if status == "cancelled":
                raise asyncio.CancelledError(self._stop_reason)
        finally:
            _current_run.reset(token)
            self._agent = self._args = self._kwargs = None  # type: ignore[assignment]
            if self.parent is not None:
                self.parent._children.discard(self)

    async def _end_children(self) -> bool:
        """Structured concurrency: a run ends after its child runs, never before.

        Children still running (started with ``start()`` and never awaited) are
        cancelled and waited for. A cancel arriving meanwhile does not cut this
        short (the parent's terminal event must come after its children's); the
        return value says whether one arrived.
        """
        interrupted = False
        asked: set[Run] = set()
        while True:
            live = [c for c in self._children if c._task is not None and not c._task.done()]
            for child in live:
                if child not in asked:  # once: a second cancel would cut its clean-up short
                    asked.add(child)
                    child.cancel(f"parent run {self.name} ended")
            ends = [e for e in map(self._end_of, live) if e is not None]
            if not ends:
                return interrupted
            try:
                await asyncio.wait(ends)
            except asyncio.CancelledError:
                interrupted = True

    def _end_of(self, child: Run) -> asyncio.Future[Any] | None:
        """Something this run's loop can await that completes when *child*'s task has."""
        task, loop = child._task, child._loop
        if task is None or loop is None:
            return None
        if loop is self._loop:
            return task
        # A child on another thread's loop (a sync agent's run_sync sub-agent, say).
        waiter = asyncio.wait([task])
        try:
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(waiter, loop))
        except RuntimeError:  # that loop has closed: the child is over
            waiter.close()
            return None

    def _finish(self, status: RunStatus, event: Event) -> None:
        self._status = status
        self._emit_event(event, final=True)
        for inline in self._inline:
            inline.close()

    async def wait(self) -> Any:
        """Wait for the run and its sinks to finish; return the agent's value.

        Re-raises the agent's exception; raises ``RunCancelled`` if the run was
        stopped with ``cancel()``. Cancelling the waiting task cancels the run
        (and raises ``CancelledError`` once the sinks have its Cancelled event).
        """
        __tracebackhide__ = True
        task = self._task
        if task is None:
            raise RuntimeError("this run has not been started")
        me = asyncio.current_task()
        cancels_before = me.cancelling() if me is not None else 0
        with contextlib.suppress(asyncio.CancelledError):  # ours or the run's: see below
            await task
        if not self._closed:  # the task ended before its done-callback ran
            self._task_done(task)
        await self._drain()
        if me is not None and me.cancelling() > cancels_before:
            raise asyncio.CancelledError
        return self.outcome()

    def outcome(self) -> Any:
        """The agent's value, or its exception raised, or ``RunCancelled``."""
        __tracebackhide__ = True
        if self.status == "done":
            return self.result
        if self.status == "error":
            assert self.exception is not None
            raise self.exception
        if self.status == "cancelled":
            raise RunCancelled(self.id, self._stop_reason)
        raise RuntimeError(f"{self!r} has not ended yet")

    async def _drain(self) -> None:
        """Wait until every sink of this run has been fed its last event.

        A cancel while waiting does not drop events: delivery goes on and the
        cancel is re-raised after it. A second cancel stops the sinks where they are.
        """
        pending = [f for f in self._feeders if not f.done()]
        if not pending:
            return
        cancelled = False
        while True:
            try:
                await asyncio.wait(pending)
                break
            except asyncio.CancelledError:
                if cancelled:
                    for feeder in pending:
                        feeder.cancel()
                    await asyncio.wait(pending)
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


def _error_event(exc: BaseException) -> Error:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the runner's own frames say nothing about the agent
    return Error(name, str(exc), "".join(traceback.format_exception(type(exc), exc, tb)))


def _checked(event: object) -> Event:
    if isinstance(event, Event):
        if type(event) is not Custom and Event._kinds.get(event.kind) is not type(event):
            raise InvalidEvent(
                f"{type(event).__qualname__} is a subclass of an agentnb event, which would not "
                "read back from its JSON form; emit agentnb.Custom(name, data) for a kind "
                "of your own."
            )
        if event.terminal:
            verb = {"done": "return the value", "error": "raise the exception"}.get(
                event.kind, "let the run be cancelled"
            )
            raise InvalidEvent(
                f"{type(event).__name__} is a terminal event, which agentnb emits itself "
                f"when the agent ends; {verb} instead."
            )
        return event
    hint = (
        "decode it first (data.decode())"
        if isinstance(event, bytes | bytearray)
        else "wrap it: emit(str(value)), or agentnb.Custom('my_kind', value) for data"
    )
    raise InvalidEvent(
        f"emit() takes an agentnb event (TextChunk, Status, ToolCall, ToolResult, Custom) "
        f"or a str, got {type(event).__name__}: {hint}."
    )


def _result_json(value: object) -> JSON:
    try:
        return to_json_value(value, "result")
    except InvalidEvent:
        return repr(value)


async def _invoke(agent: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call an agent of any supported shape inside the current run."""
    __tracebackhide__ = True
    if inspect.isasyncgenfunction(agent):
        return await _drain_async_gen(agent(*args, **kwargs))
    if inspect.iscoroutinefunction(agent) or inspect.iscoroutinefunction(
        getattr(agent, "__call__", None)  # noqa: B004
    ):
        return await agent(*args, **kwargs)
    if inspect.isgeneratorfunction(agent):
        run = _current_run.get()
        assert run is not None
        return await asyncio.to_thread(_drain_gen, run, agent, args, kwargs)
    # A plain function runs in a worker thread so the loop keeps streaming.
    value = await asyncio.to_thread(agent, *args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


async def _drain_async_gen(gen: AsyncIterator[Any]) -> str | None:
    run = _current_run.get()
    assert run is not None
    parts: list[str] = []
    async for item in gen:
        run.emit(item)
        if type(item) is str:
            parts.append(item)
        elif isinstance(item, TextChunk):
            parts.append(item.text)
    return "".join(parts) if parts else None


def _drain_gen(
    run: Run, agent: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    parts: list[str] = []
    for item in agent(*args, **kwargs):
        run.emit(item)
        if type(item) is str:
            parts.append(item)
        elif isinstance(item, TextChunk):
            parts.append(item.text)
    return "".join(parts) if parts else None


async def _feed(run: Run, outlet: Outlet, delivery: Delivery) -> None:
    """Deliver *outlet*'s events to one sink, in order, until *run* has ended."""
    buffer = outlet.buffer
    send = delivery.send
    failed = False
    try:
        while True:
            while buffer:
                event = buffer.popleft()
                if outlet.space is not None:
                    outlet.took()
                if not failed:
                    try:
                        result = send(event)
                        if result is not None and inspect.isawaitable(result):
                            await result
                    except Exception as exc:  # reported; the other sinks go on
                        failed = True
                        _report_sink_error(run, delivery, exc, event)
                if event.terminal and event.run_id == outlet.owner_id:
                    return
            await outlet.wait()
    finally:
        if delivery.close is not None:
            try:
                await call_maybe_async(delivery.close)
            except Exception as exc:
                _report_sink_error(run, delivery, exc, None)


def _report_sink_error(run: Run, delivery: Delivery, exc: Exception, event: Event | None) -> None:
    run.sink_errors.append((delivery.sink, exc))
    when = f"on event seq={event.seq} ({event.kind})" if event is not None else "on close"
    logger.error(
        "agentnb: sink %s raised %s %s of run %s; it gets no more events of this run, "
        "the other sinks go on.",
        delivery.label,
        type(exc).__name__,
        when,
        "/".join(run.path),
        exc_info=exc,
    )


# -- module-level verbs --------------------------------------------------------


def current_run() -> Run:
    """The run the calling code belongs to; raises ``NoActiveRun`` outside a run."""
    run = _current_run.get()
    if run is None:
        raise NoActiveRun("agentnb.current_run()")
    return run


def emit(event: Event | str) -> None:
    """Send an event (or a str, as a text chunk) to the current run's sinks.

    Works from async code, sync code called from it, and worker threads started
    in the run's context (``asyncio.to_thread``, executors via
    ``contextvars.copy_context().run``). Never blocks; raises ``NoActiveRun``
    outside a run.
    """
    run = _current_run.get()
    if run is None:
        raise NoActiveRun
    run.emit(event)


async def aemit(event: Event | str) -> None:
    """Like ``emit``, but waits while a bounded sink is full (backpressure)."""
    run = _current_run.get()
    if run is None:
        raise NoActiveRun("agentnb.aemit()")
    await run.aemit(event)


def start(
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> Run:
    """Start a run in the background on the running loop and return it.

    ``await run.wait()`` gives its value. Inside another run it is a child run.
    """
    return _start(agent, args, kwargs, sink=sink, name=name)


def _start(
    agent: Callable[..., Any] | str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    sink: SinkLike | Sequence[SinkLike] | None,
    name: str | None,
    stream_maxsize: int | None = None,
) -> Run:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "agentnb needs a running event loop to start a run; from synchronous code use "
            "agentnb.run_sync(agent, ...)."
        ) from None
    fn = resolve_agent(agent)
    sinks = deliveries(sink)
    parent = _current_run.get()
    if parent is not None and parent._closed:
        raise RunClosed(parent.id, parent.path, parent.status)
    if parent is None:
        sinks.extend(deliveries(list(_ambient_sinks.get())))
    run = Run(fn, args, kwargs, name=name, parent=parent)
    run._begin(sinks, stream_maxsize)
    return run


async def run(
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run *agent* with *args*/*kwargs*, feeding its events to *sink*; return its value.

    *sink* is one sink, a list of sinks, or None. Inside another run this is a
    child run whose events also reach the parent's sinks. The agent's exception
    is re-raised after its Error event was delivered; cancelling the caller
    cancels the run (its Cancelled event is delivered first).
    """
    __tracebackhide__ = True
    return await _start(agent, args, kwargs, sink=sink, name=name).wait()
