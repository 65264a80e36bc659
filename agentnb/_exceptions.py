"""The exceptions of agentnb's core (the fronts add theirs, all under ``AgentnbError``).

    AgentnbError
    ├── NoActiveRun (LookupError)        emit() or current_run() outside a run
    ├── RunClosed (RuntimeError)         emit() into a run that has already ended
    ├── InvalidEvent (TypeError)         not an event, or a payload with no JSON form
    ├── UnknownAgent (LookupError)       an agent name that is not registered
    ├── RunCancelled                     run() of a run that was stopped (run.cancel())
    ├── LoopAlreadyRunning (RuntimeError) run_sync() where an event loop is running
    ├── InvalidSink (TypeError)          sink= is not a sink, or an inline sink misbehaves
    └── SinkStuck (TimeoutError)         a sink did not take its events in time (in sink_errors)

The fronts add their own: agentnb.client's ServerError, ConnectionLost and
RemoteAgentError, agentnb.server's ApiError.

Each also inherits the built-in that matches it, so ``except LookupError`` keeps
working, and each message says what to do instead.
"""

from __future__ import annotations

__all__ = [
    "AgentnbError",
    "InvalidAnswer",
    "InvalidEvent",
    "InvalidSink",
    "LoopAlreadyRunning",
    "NoActiveRun",
    "NoAnswer",
    "RunCancelled",
    "RunClosed",
    "SinkStuck",
    "UnknownAgent",
    "UnknownStream",
]


class AgentnbError(Exception):
    """Base class of agentnb's exceptions."""


class UnknownStream(AgentnbError, TypeError):
    """``agentnb.relay()`` was given something that is not a stream it knows."""


class NoAnswer(AgentnbError, RuntimeError):
    """``agentnb.ask`` got no answer: no one can answer here (a headless run) and the
    question has no default, or the wait timed out without one."""


class InvalidAnswer(AgentnbError, ValueError):
    """An answer was refused: an unknown or already answered question, a finished run, or a
    value outside the choices. The question, if still open, keeps waiting.

    ``reason`` says which: ``unknown`` (no such question), ``answered``, ``ended`` (its
    run has ended) or ``invalid`` (not a str, not one of the choices).
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class NoActiveRun(AgentnbError, LookupError):
    """``emit()`` or ``current_run()`` was called outside a run."""

    def __init__(self, what: str = "agentnb.emit()") -> None:
        super().__init__(
            f"{what} was called outside a run, so there is nowhere to send the event. "
            "Start one with `await agentnb.run(agent, ...)`, `agentnb.stream(agent, ...)` "
            "or `agentnb.run_sync(agent, ...)`; in a worker thread, start the thread in the "
            "run's context (`contextvars.copy_context().run`) or call `run.emit()` on the "
            "object `agentnb.current_run()` returned inside the run."
        )


class RunClosed(AgentnbError, RuntimeError):
    """An event was emitted into a run that has already ended."""

    def __init__(self, run_id: str, path: tuple[str, ...], status: str) -> None:
        where = "/".join(path)
        super().__init__(
            f"run {run_id} ({where}) has already ended ({status}); an event emitted after "
            "a run's terminal event is not delivered. Emit before the agent returns, or "
            "wait for worker threads (e.g. `await asyncio.to_thread(...)`) inside the run."
        )
        self.run_id = run_id
        self.path = path
        self.status = status

    def __reduce__(self) -> tuple[type[RunClosed], tuple[str, tuple[str, ...], str]]:
        return type(self), (self.run_id, self.path, self.status)  # it pickles (other processes)


class InvalidEvent(AgentnbError, TypeError):
    """``emit()`` got something that is not an event, or a payload with no JSON form."""


class UnknownAgent(AgentnbError, LookupError):
    """No agent is registered under that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        listing = ", ".join(sorted(known)) or "none yet"
        super().__init__(
            f"no agent named {name!r}; known agents: {listing}. "
            "Register one with the @agentnb.agent decorator."
        )
        self.name = name
        self.known = sorted(known)


class RunCancelled(AgentnbError):
    """The run was stopped with ``Run.cancel()`` before its agent finished.

    Raised by ``agentnb.run()`` in the caller, who was not itself cancelled. (A
    caller whose own task is cancelled gets ``asyncio.CancelledError`` as usual.)
    """

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id} was cancelled" + (f": {reason}" if reason else ""))
        self.run_id = run_id
        self.reason = reason

    def __reduce__(self) -> tuple[type[RunCancelled], tuple[str, str]]:
        return type(self), (self.run_id, self.reason)  # it pickles (other processes)


class LoopAlreadyRunning(AgentnbError, RuntimeError):
    """``run_sync()`` was called from a thread whose event loop is running."""

    def __init__(self) -> None:
        super().__init__(
            "agentnb.run_sync() cannot block inside a running event loop (a notebook cell, "
            "an async function). Use `await agentnb.run(agent, ...)` there instead; in a "
            "notebook, `%load_ext agentnb` also makes run_sync work."
        )


class InvalidSink(AgentnbError, TypeError):
    """``sink=`` got something that is not a sink, or an inline sink broke its contract."""


class SinkStuck(AgentnbError, TimeoutError):
    """A sink was still busy when its run's caller stopped waiting; it was abandoned.

    Kept in ``Run.sink_errors`` (and logged), never raised to the caller.
    """

    def __init__(self, sink: str, seconds: float) -> None:
        super().__init__(
            f"sink {sink} had not taken its events {seconds:g} s after the run's caller "
            "stopped waiting (a timeout or a cancel), so it was abandoned; a sink's send() "
            "must not block or wait for long"
        )


for _cls in (
    AgentnbError,
    NoActiveRun,
    RunClosed,
    InvalidEvent,
    UnknownAgent,
    RunCancelled,
    LoopAlreadyRunning,
    InvalidSink,
    SinkStuck,
):
    _cls.__module__ = "agentnb"  # tracebacks and Error.type name the public module
