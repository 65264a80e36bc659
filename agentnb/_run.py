"""Runs: the context variable that scopes ``emit``, and a run's life from start to end.

* ``start`` makes a :class:`Run`: it opens its sinks, gives each an outlet (a
  feeder task delivers it; an inline sink is called by emit itself), and starts
  the agent in a task of its own (a copy of the caller's context) that sets the
  run context variable and resets it in ``finally``.
* While it runs, ``emit`` goes through the run's fan-out (``_fanout``): stamped
  under the run tree's lock and appended to every outlet, this run's and its
  parents'. A run started inside another is its child.
* When the agent ends, the task ends the run's children first, then emits
  exactly one terminal event (Done, Error or Cancelled) and closes the run:
  later emits raise ``RunClosed`` instead of vanishing.
* ``wait`` waits for that, and for the sinks to have taken every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from . import _invoke as _invoke_module
from ._events import JSON, Ask, Cancelled, Custom, Done, Error, Event, Usage, to_json_value
from ._exceptions import InvalidEvent, NoActiveRun, RunCancelled, RunClosed, SinkStuck
from ._fanout import Fanout, InlineSink
from ._feed import feed, report_sink_error
from ._invoke import invoke
from ._outlet import Outlet
from ._registry import AgentLike, agent_name, resolve_agent
from ._sinks import Delivery, SinkLike, deliveries

__all__ = ["Run", "aemit", "current_run", "emit", "run", "start"]

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "agentnb.current_run", default=None
)
# Sinks that every top-level run started in this context also feeds
# (set by agentnb.testing.capture_events()).
_ambient_sinks: contextvars.ContextVar[tuple[SinkLike, ...]] = contextvars.ContextVar(
    "agentnb.ambient_sinks", default=()
)

RunStatus = Literal["pending", "running", "done", "error", "cancelled"]
SINK_GRACE = 1.0
"""Seconds the sinks get to take a run's last events once its caller stopped waiting."""
_get_ident = threading.get_ident
_RUNNER_FILES = frozenset({__file__, _invoke_module.__file__})  # frames a traceback skips
_NONE: dict[Any, Any] = {}  # the feeders of a run with none (never added to)
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class Run:
    """One execution of an agent. ``agentnb.current_run()`` returns it inside the run.

    Attributes: ``id`` (hex string), ``name`` (the agent's), ``path`` (names from
    the outermost run to this one), ``parent`` (the enclosing run or None),
    ``status`` (pending, running, done, error, cancelled), ``result`` and
    ``exception`` once ended, ``sink_errors`` (sinks that raised or got stuck),
    ``metadata`` (what the front end that started it knows about the request: a
    read-only mapping, set at start).
    """

    __slots__ = (
        "__weakref__",
        "_agent",
        "_answers",
        "_asks",
        "_children",
        "_feeders",
        "_inline_closes",
        "_loop",
        "_loop_thread",
        "_metadata",
        "_out",
        "_status",
        "_stop_reason",
        "_stream",
        "_task",
        "_usage",
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
        *,
        name: str | None = None,
        parent: Run | None = None,
        run_id: str | None = None,
    ) -> None:
        self.id = run_id or os.urandom(8).hex()
        self.name = name or agent_name(agent)
        self.parent = parent
        self.path: tuple[str, ...] = (*parent.path, self.name) if parent else (self.name,)
        self._status: RunStatus = "pending"
        self.result: Any = None
        self.exception: BaseException | None = None
        self.sink_errors: list[tuple[object, Exception]] = []
        self._agent: Callable[..., Any] | None = agent
        self._out: Fanout = Fanout(self.id, self.path, parent._out if parent else None)
        self._stream: Outlet | None = None  # the outlet stream() reads, if any
        # Each sink's feeder task; the inline sinks that have close() (none: shared empties).
        self._feeders: dict[asyncio.Task[None], Delivery] = _NONE
        self._inline_closes: list[Delivery] | tuple[()] = ()
        self._children: set[Run] | None = None  # its live child runs (made with the first)
        self._task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._usage: UsageTotals | None = None  # the sum of its Usage events, if any
        self._answers = False  # a sink of this run takes answers to its questions (ask)
        self._asks: dict[str, Any] | None = None  # a root's family's questions (see _ask)
        self._metadata: Mapping[str, Any] = parent._metadata if parent else _NO_METADATA

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
            self._out.put(event)
        else:
            checked = _checked(event)
            if type(checked) is Usage:
                _put_usage(self, checked)
            else:
                self._out.put(checked)

    @property
    def usage(self) -> dict[str, JSON] | None:
        """The tokens this run's Usage events (its sub-runs' included) add up to so far.

        ``{"calls", "input_tokens", "output_tokens"}``, with ``reasoning_tokens``,
        ``cached_tokens`` and ``cost`` when any call reported them; None without usage.
        The terminal event carries the final sum.
        """
        with _usage_lock:
            return None if self._usage is None else self._usage.as_dict()

    async def aemit(self, event: Event | str) -> None:
        """``emit``, then wait while any bounded sink has ``maxsize`` events waiting."""
        self.emit(event)
        for outlet in self._out.bounded:
            if len(outlet.buffer) <= outlet.maxsize:
                continue
            if _get_ident() == outlet.loop_thread:
                await outlet.wait_for_room()
            else:
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(outlet.wait_for_room(), outlet.loop)
                )

    # -- lifecycle --------------------------------------------------------------

    def start_child(
        self,
        agent: AgentLike,
        /,
        *args: Any,
        sink: SinkLike | Sequence[SinkLike] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start a child run of this run from any task on its loop, not only from inside it.

        ``agentnb.start`` inside a run makes a child of the current run; this makes a
        child of *this* run, for code that drives several runs from one task (an adapter
        showing a framework's sub-agents, a mirror of a remote run). The child is like any
        other: this run ends only after it.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._loop is not loop:
            raise RuntimeError(
                f"start_child must be called on the loop of run {self.name!r} (its own thread)"
            )
        if self.done:
            raise RunClosed(self.id, self.path, self.status)
        run = Run(resolve_agent(agent), name=name, parent=self)
        run._begin(deliveries(sink), args, kwargs)
        return run

    def answer(self, ask_id: str, value: str, *, by: str = "code") -> None:
        """Answer the open question *ask_id* of this run or a sub-run (see ``agentnb.ask``);
        thread-safe.

        *by* says who answered (a front end passes ``cell``, ``page``, ``socket`` or
        ``http``). Raises ``InvalidAnswer``, changing nothing, for an unknown or answered
        question, a run that has ended, or a value outside the question's choices.
        """
        from ._ask import answer

        answer(self, ask_id, value, by)

    @property
    def questions(self) -> list[Ask]:
        """The questions of this run and its sub-runs still waiting for an answer."""
        from ._ask import open_questions

        return open_questions(self)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """What the front end that started the run passed along (read-only; empty if none).

        A sink with a ``metadata`` mapping gives it to the run it is a sink of, at start
        (a server front: the protocol's thread and run ids, state, forwarded props, under
        its own key); a child run sees its parent's, with its own sinks' added.
        """
        return self._metadata

    def question(self, ask_id: str) -> Ask | None:
        """The question *ask_id* of this run or a sub-run, open or answered (None: unknown)."""
        from ._ask import find_question

        return find_question(self, ask_id)

    def cancel(self, reason: str = "") -> bool:
        """Ask the run to stop; thread-safe. False if it had already ended."""
        task = self._task
        if task is None or task.done() or self._out.closed:
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
        return self._out.closed

    def _begin(
        self,
        sinks: list[Delivery],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        stream_maxsize: int | None = None,
    ) -> None:
        """Wire up outlets and feeders and start the agent's task (on the running loop).

        With *stream_maxsize*, an outlet with no feeder is made first: ``stream()`` reads it.
        """
        self._loop = loop = asyncio.get_running_loop()
        self._loop_thread = _get_ident()
        self._answers = any(getattr(d.sink, "answers", False) is True for d in sinks)
        given = [(d, m) for d in sinks if (m := getattr(d.sink, "metadata", None)) is not None]
        if given:
            self._metadata = _merged_metadata(self._metadata, given)
        for delivery in sinks:  # first: a sink that fails to open starts nothing
            if delivery.open is not None:
                delivery.open(self)
        own: list[Outlet] = []
        inline: list[InlineSink] = []
        if any(not d.inline for d in sinks):
            self._feeders = {}
        if stream_maxsize is not None:
            self._stream = Outlet(self.id, stream_maxsize)
            own.append(self._stream)
        for delivery in sinks:
            if delivery.inline:
                inline.append(InlineSink(delivery.send, self._reporter(delivery)))
                continue
            outlet = Outlet(self.id, delivery.maxsize)
            own.append(outlet)
            feeder = loop.create_task(
                feed(self, outlet, delivery), name=f"agentnb feed {delivery.label}"
            )
            self._feeders[feeder] = delivery
        if inline:
            self._inline_closes = [d for d in sinks if d.inline and d.close is not None]
        parent = self.parent
        self._out.connect(own, inline, parent._out if parent else None)
        if parent is not None:
            if parent._children is None:
                parent._children = set()
            parent._children.add(self)
        self._status = "running"
        self._task = loop.create_task(
            self._drive(args, kwargs), name=f"agentnb run {'/'.join(self.path)}"
        )
        self._task.add_done_callback(self._task_done)

    def _reporter(self, delivery: Delivery) -> Callable[[Exception, Event], None]:
        def report(exc: Exception, event: Event) -> None:
            report_sink_error(self, delivery.sink, delivery.label, exc, event)

        return report

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Backstop: a task cancelled before its first step never ran ``_drive``."""
        if self._out.closed:
            return
        reason = self._stop_reason or "cancelled before it started"
        self._finish("cancelled", Cancelled(reason, self.usage))
        self._agent = None
        if self.parent is not None:
            self.parent._forget_child(self)

    async def _drive(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        __tracebackhide__ = True  # IPython: show the agent's frames, not the runner's
        token = _current_run.set(self)
        try:
            status: RunStatus
            event: Event
            agent, self._agent = self._agent, None
            assert agent is not None
            try:
                value = await invoke(self, agent, args, kwargs)
            except asyncio.CancelledError as exc:
                reason = self._stop_reason or (_safe_str(exc.args[0]) if exc.args else "")
                status, event = "cancelled", Cancelled(reason)
            except BaseException as exc:  # reported as the Error event, re-raised by wait()
                self.exception = exc
                status, event = "error", error_event(exc)
            else:
                self.result = value
                status, event = "done", Done(result_json(value))
            del args, kwargs, agent
            if await self._end_children() and status == "done":
                # cancel() said yes while the children were ending: honour it.
                status, event = "cancelled", Cancelled(self._stop_reason)
            if self._usage is not None:  # the children have ended: the totals are final
                event = _with_usage(event, self.usage)
            self._finish(status, event)
            if status == "cancelled":
                raise asyncio.CancelledError(self._stop_reason)
        finally:
            _current_run.reset(token)
            if self.parent is not None:
                self.parent._forget_child(self)

    def _forget_child(self, child: Run) -> None:
        if self._children is not None:
            self._children.discard(child)

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
            children = self._children or ()
            live = [c for c in children if c._task is not None and not c._task.done()]
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
        self._out.ending = status
        self._out.put(event, final=True)
        for delivery in self._inline_closes:
            try:
                assert delivery.close is not None
                delivery.close()
            except Exception as exc:
                report_sink_error(self, delivery.sink, delivery.label, exc, None)

    async def wait(self) -> Any:
        """Wait for the run and its sinks to finish; return the agent's value.

        Re-raises the agent's exception; raises ``RunCancelled`` if the run was
        stopped with ``cancel()``. Cancelling the waiting task (a timeout, say)
        cancels the run and raises ``CancelledError`` once the sinks have its
        Cancelled event, or ``SINK_GRACE`` seconds later at most: a sink still busy
        then is abandoned (see ``SinkStuck``).
        """
        __tracebackhide__ = True
        task = self._task
        if task is None:
            raise RuntimeError("this run has not been started")
        me = asyncio.current_task()
        cancels_before = me.cancelling() if me is not None else 0

        def cancelled() -> bool:
            return me is not None and me.cancelling() > cancels_before

        with contextlib.suppress(asyncio.CancelledError):  # ours or the run's: see cancelled()
            await task
        if not self._out.closed:  # the task ended before its done-callback ran
            self._task_done(task)
        await self._drain(leaving=cancelled())
        if cancelled():
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

    async def _drain(self, *, leaving: bool = False) -> None:
        """Wait until every sink of this run has been fed its last event.

        *leaving*: the caller stops waiting (it was cancelled, or is leaving a
        stream early). Then, and on a cancel while waiting, the sinks get
        ``SINK_GRACE`` seconds more; one still busy is abandoned: its feeder is
        cancelled and a ``SinkStuck`` is reported. A cancel that arrives here is
        re-raised once that is done.
        """
        pending = [f for f in self._feeders if not f.done()]
        if not pending:
            return
        interrupted = False
        if not leaving:
            try:
                await asyncio.wait(pending)
                return
            except asyncio.CancelledError:
                interrupted = True
        pending = [f for f in pending if not f.done()]
        try:
            _, stuck = await asyncio.wait(pending, timeout=SINK_GRACE)
        except asyncio.CancelledError:  # a second cancel: abandon them now
            interrupted, stuck = True, {f for f in pending if not f.done()}
        for feeder in stuck:
            feeder.cancel()
            delivery = self._feeders[feeder]
            stuck_for = SinkStuck(delivery.label, SINK_GRACE)
            report_sink_error(self, delivery.sink, delivery.label, stuck_for, None)
        if stuck:
            await asyncio.wait(stuck, timeout=0.1)  # they end at their next step (close() runs)
        if interrupted:
            raise asyncio.CancelledError


def _merged_metadata(
    base: Mapping[str, Any], given: list[tuple[Delivery, object]]
) -> Mapping[str, Any]:
    merged = dict(base)
    for delivery, metadata in given:
        if not isinstance(metadata, Mapping):
            raise TypeError(
                f"sink {delivery.label}: metadata must be a mapping (or None), "
                f"got {type(metadata).__name__}"
            )
        merged.update(metadata)
    return MappingProxyType(merged)


_usage_lock = threading.Lock()


class UsageTotals:
    """A run's usage so far: the sum of its Usage events and its sub-runs'."""

    __slots__ = ("cached", "calls", "cost", "input", "output", "reasoning")

    def __init__(self) -> None:
        self.calls = self.input = self.output = 0
        self.reasoning: int | None = None
        self.cached: int | None = None
        self.cost: float | None = None

    def add(self, usage: Usage) -> None:
        """Count one model call's usage."""
        self.calls += 1
        self.input += usage._input_tokens
        self.output += usage._output_tokens
        if usage._reasoning_tokens is not None:
            self.reasoning = (self.reasoning or 0) + usage._reasoning_tokens
        if usage._cached_tokens is not None:
            self.cached = (self.cached or 0) + usage._cached_tokens
        if usage._cost is not None:
            self.cost = (self.cost or 0.0) + usage._cost

    def as_dict(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "calls": self.calls,
            "input_tokens": self.input,
            "output_tokens": self.output,
        }
        if self.reasoning is not None:
            out["reasoning_tokens"] = self.reasoning
        if self.cached is not None:
            out["cached_tokens"] = self.cached
        if self.cost is not None:
            out["cost"] = self.cost
        return out


def _put_usage(run: Run, usage: Usage) -> None:
    """Emit one model call's usage and add it to *run*'s totals and its ancestors'.

    Counted only once the event is in (a closed run refuses it, and counts nothing).
    """
    with _usage_lock:
        run._out.put(usage)
        node: Run | None = run
        while node is not None:
            if node._usage is None:
                node._usage = UsageTotals()
            node._usage.add(usage)
            node = node.parent


def _with_usage(event: Event, usage: dict[str, JSON] | None) -> Event:
    """*event* (a terminal one) carrying the run's usage totals."""
    if isinstance(event, Done):
        return Done(event.result, usage)
    if isinstance(event, Error):
        return Error(event.type, event.message, event.traceback, usage)
    assert isinstance(event, Cancelled)
    return Cancelled(event.reason, usage)


def _safe_str(value: object) -> str:
    """``str(value)``, or a placeholder that says it failed (a broken ``__str__``)."""
    try:
        return str(value)
    except Exception as exc:
        return f"<{type(value).__qualname__}: str() failed: {type(exc).__name__}>"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__, or RecursionError for a deep structure
        return f"<{type(value).__qualname__} object: repr() failed: {type(exc).__name__}>"


def error_event(exc: BaseException) -> Error:
    """The Error event for *exc*; never raises (a broken ``__str__`` gives a placeholder)."""
    name = _type_name(type(exc))
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _RUNNER_FILES:
        tb = tb.tb_next  # the runner's own frames say nothing about the agent
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        text = ""
    return Error(name, _safe_str(exc), text)


def _type_name(cls: type[BaseException]) -> str:
    """The exception class's name as its package exports it (``openai.RateLimitError``, not
    ``openai._exceptions.RateLimitError``); builtins by their bare name."""
    module = cls.__module__
    if "._" in module or module.startswith("_"):
        top = sys.modules.get(module.partition(".")[0])
        if top is not None and getattr(top, cls.__qualname__, None) is cls:
            module = top.__name__
    return f"{module}.{cls.__qualname__}".removeprefix("builtins.")


def result_json(value: object) -> JSON:
    """A Done event's result: *value*'s JSON form, else its repr (or a placeholder)."""
    try:
        return to_json_value(value, "result")
    except InvalidEvent:
        return _safe_repr(value)


# The classes emit takes as they are: every built-in kind but the terminal ones, and Custom.
_EMITTABLE = frozenset([Custom, *(cls for cls in Event._kinds.values() if not cls.terminal)])


def _checked(event: object) -> Event | str:
    if type(event) in _EMITTABLE:
        return event  # type: ignore[return-value]
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
    if isinstance(event, str):  # a str subclass, e.g. a StrEnum member
        return str.__str__(event)
    hint = (
        "decode it first (data.decode())"
        if isinstance(event, bytes | bytearray)
        else "wrap it: emit(str(value)), or agentnb.Custom('my_kind', value) for data"
    )
    raise InvalidEvent(
        f"emit() takes an agentnb event (TextChunk, Status, ToolCall, ToolResult, Custom) "
        f"or a str, got {type(event).__name__}: {hint}."
    )


# -- module-level verbs --------------------------------------------------------


def set_current(run: Run) -> contextvars.Token[Run | None]:
    """Make *run* the current run in this context (``emit`` goes to it) until
    ``reset_current(token)``: for code that drives a run from outside the run's own task
    (a transport's ``with`` block in another process). Not public API."""
    return _current_run.set(run)


def reset_current(token: contextvars.Token[Run | None]) -> None:
    """Undo ``set_current``."""
    _current_run.reset(token)


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
    if type(event) is str:
        run._out.put(event)
    else:
        checked = _checked(event)
        if type(checked) is Usage:
            _put_usage(run, checked)
        else:
            run._out.put(checked)


async def aemit(event: Event | str) -> None:
    """Like ``emit``, but waits while a bounded sink is full (backpressure)."""
    run = _current_run.get()
    if run is None:
        raise NoActiveRun("agentnb.aemit()")
    await run.aemit(event)


def start(
    agent: AgentLike,
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
    agent: AgentLike,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    sink: SinkLike | Sequence[SinkLike] | None,
    name: str | None,
    stream_maxsize: int | None = None,
    run_id: str | None = None,
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
    if parent is not None and parent.done:
        raise RunClosed(parent.id, parent.path, parent.status)
    if parent is None:
        sinks.extend(deliveries(list(_ambient_sinks.get())))
    run = Run(fn, name=name, parent=parent, run_id=run_id)
    run._begin(sinks, args, kwargs, stream_maxsize)
    return run


async def run(
    agent: AgentLike,
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
