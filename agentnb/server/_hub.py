"""The server's runs: each started once, buffered for replay, streamed to any number of listeners.

The agent never touches the network. A :class:`ServedRun` is an inline sink of
its run: ``emit`` hands it each event, and it appends the event's SSE frame (made
once) to a bounded replay buffer and wakes the listeners. A :class:`Listener`
reads the buffer from any position, so a late or resuming client gets every
event after its ``Last-Event-ID`` exactly once, and several clients can watch
one run. Frames a connected client has not read yet are kept past the buffer's
size (up to four times it), so a slow client loses nothing.

A listener with a *writer* (an SSE response sets one) is written to straight
from ``emit`` when the event is emitted on the server's loop and the listener is
waiting, caught up: the event reaches the socket in the agent's own step, as from
a generator-based endpoint, not one event-loop turn later. The write runs once
emit has released the run's lock (the sink's ``flush``), as the listener's task
(see ``_eager``). Only the first event of each step goes this way; the rest of a
burst (and anything emitted from a worker thread) is batched by the listener's
own task, in few writes.

Listeners are counted. When the last one of an ``on_disconnect="cancel"`` run
goes, the run is cancelled; a ``"continue"`` run goes on detached. Finished runs
stay resumable for ``keep_seconds`` (at most ``keep_finished`` of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

from .._events import JSON, Event
from .._registry import AgentInfo, list_agents
from .._run import Run, start
from ._eager import EAGER, Pending, start_eagerly
from ._errors import ApiError
from ._wire import sse_data, sse_frame, ws_event

__all__ = ["Listener", "OnDisconnect", "RunHub", "ServedRun"]

OnDisconnect = Literal["cancel", "continue"]


def _wake_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener._wake()


_SHUTDOWN_WAIT = 10.0  # seconds the app's shutdown waits for cancelled runs to end


class _FellBehind(Exception):
    """A listener is further behind than the replay buffer keeps."""


class ServedRun:
    """One run started by the server: its replay buffer and its listeners.

    It is an inline sink of its run (``inline = True``): ``emit`` hands it each
    event in the emitting thread, it frames the event once (SSE bytes; the
    WebSocket form is cut from them) and wakes the listeners; ``flush``, called
    by emit after it released the run's lock, writes it to the SSE clients that
    were waiting for it instead (on the loop's thread).
    """

    inline = True

    def __init__(
        self,
        hub: RunHub,
        agent: str,
        on_disconnect: OnDisconnect,
        replay_size: int,
    ) -> None:
        self.hub = hub
        self.agent = agent
        self.on_disconnect: OnDisconnect = on_disconnect
        self.run: Run | None = None
        self.id = ""
        self.ended = False  # the run's own terminal event is buffered
        self.ended_at = 0.0
        self._replay_size = replay_size
        # The SSE frames of events _dropped, _dropped + 1, ...: bytes only, so a long
        # buffer adds nothing for the garbage collector to walk.
        self._frames: list[bytes] = []
        self._dropped = 0  # frames evicted from the front of the replay buffer
        self._lock = threading.Lock()  # send() may run in a worker thread of the agent
        self._parked: list[Listener] = []  # listeners waiting for the next event
        self._unwritten: list[tuple[Listener, bytes, int]] = []  # for flush(): whom, what, #
        self._slack = max(replay_size // 8, 1)  # evict in blocks, not one frame at a time
        self._connected: set[Listener] = set()  # (their read positions: listener.position)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def __repr__(self) -> str:
        return (
            f"<ServedRun {self.agent} id={self.id} events={self.count} listeners={self.listeners}>"
        )

    @property
    def listeners(self) -> int:
        """How many clients are attached (streaming the run, or about to)."""
        return len(self._connected)

    @property
    def count(self) -> int:
        """How many events the run has produced so far."""
        return self._dropped + len(self._frames)

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else "pending"

    # -- the sink side (called by emit, in order, under the run's lock) ----------

    def open(self, run: Run) -> None:
        self.run = run
        self.id = run.id
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def send(self, event: Event) -> None:
        terminal = event.terminal and event.run_id == self.id
        index = self.count
        frame = sse_frame(event, event.to_json(), self.id, index)
        with self._lock:
            frames = self._frames
            frames.append(frame)
            if len(frames) > self._replay_size + self._slack:
                self._evict()
            if terminal:
                self.ended = True
            parked, self._parked = self._parked, []
        if terminal:  # always on the run's own loop: the run's task emits it
            self.ended_at = time.monotonic()
            self.hub._ended(self)
        if parked:
            if threading.get_ident() == self._loop_thread:
                # Written by flush(), which emit calls once it has released the run's
                # lock: a write runs middleware code, which may itself emit.
                self._unwritten.extend((listener, frame, index) for listener in parked)
            else:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(_wake_all, parked)

    def flush(self) -> None:
        """Write the events just sent to the listeners that were waiting for them (or wake them).

        Called by emit after ``send`` once the run's lock is released, in the emitting
        thread; only the loop's thread has anything to write.
        """
        if not self._unwritten or threading.get_ident() != self._loop_thread:
            return
        unwritten, self._unwritten = self._unwritten, []
        for i, (listener, frame, index) in enumerate(unwritten):
            try:
                listener._write(frame, index)
            except BaseException:  # KeyboardInterrupt in a write: wake the rest, then raise
                _wake_all([later for later, _, _ in unwritten[i + 1 :]])
                raise

    def _evict(self) -> None:
        """Drop the oldest frames down to ``replay_size`` (caller holds the lock).

        Frames a connected listener has not read yet stay (so a client that is
        merely slow loses nothing) unless it is more than four buffers behind:
        then it is cut off, and told so.
        """
        frames = self._frames
        keep_from = self._dropped + len(frames) - self._replay_size
        behind = [lis.position for lis in self._connected if lis.position < keep_from]
        if behind and min(behind) >= keep_from - 3 * self._replay_size:
            keep_from = min(behind)
        drop = keep_from - self._dropped
        if drop > 0:
            del frames[:drop]
            self._dropped += drop

    # -- the listener side -------------------------------------------------------

    def listen(self, after: int = -1) -> Listener:
        """A listener of the events after position *after* (-1: from the first)."""
        if after + 1 < self._dropped:
            raise ApiError(
                410,
                "expired",
                f"run {self.id}'s events before #{self._dropped} are no longer buffered (the "
                f"replay buffer keeps the last {self._replay_size}); resume from a later id or "
                "start a new run",
            )
        if after >= self.count:
            raise ApiError(
                400,
                "bad_event_id",
                f"run {self.id} has sent {self.count} events (ids {self.id}:0 to "
                f"{self.id}:{self.count - 1}); Last-Event-ID {self.id}:{after} is past the end",
            )
        return Listener(self, after + 1)

    def _attach(self, listener: Listener) -> None:
        with self._lock:
            self._connected.add(listener)

    def _detach(self, listener: Listener) -> None:
        with self._lock:
            self._connected.discard(listener)
        if not self._connected and self.on_disconnect == "cancel" and not self.ended:
            assert self.run is not None
            self.run.cancel("the client disconnected")

    def _read(self, listener: Listener) -> tuple[list[bytes], asyncio.Future[None] | None]:
        """The frames the listener has not had (advancing it), or a future for the next one.

        Checking for frames and parking the listener happen under one lock, so an
        event sent from another thread in between cannot slip past a sleeping listener.
        """
        with self._lock:
            if listener.position < self._dropped:
                raise _FellBehind
            frames = self._frames[listener.position - self._dropped :]
            waiter = None
            if frames:
                listener.position += len(frames)
            elif not self.ended:
                assert self._loop is not None  # open() ran before anyone could listen
                waiter = listener._waiter = self._loop.create_future()
                self._parked.append(listener)
            return frames, waiter

    def _wrote(self, listener: Listener, position: int, park: bool) -> bool:
        """*listener* was written up to *position*; park it again (if *park*) unless there is more.

        True if parked: the run's end, or an event newer than *position*, wakes it.
        """
        with self._lock:
            listener.position = position
            if not park or position < self.count or self.ended:
                return False
            self._parked.append(listener)
            return True

    def describe(self) -> dict[str, JSON]:
        return {
            "run_id": self.id,
            "agent": self.agent,
            "status": self.status,
            "events": self.count,
            "listeners": self.listeners,
            "on_disconnect": self.on_disconnect,
        }


class Listener:
    """One client's read position in a served run; counts as a listener until closed.

    ``async for frames in listener`` yields lists of new SSE frames (all that
    are waiting, so a fast run is sent in few writes) and ends after the run's own
    terminal event. ``close()`` is idempotent and must be called (the responses
    call it in a ``finally``): it applies the run's ``on_disconnect`` policy.

    *writer*, if set, makes the write of one frame to the client (an ASGI
    ``send(...)``, not yet begun). ``emit`` begins it while the listener's task
    waits in ``async for`` (so nothing else is writing to that client), as that
    task (see ``start_eagerly``); if it has to wait, the task finishes it. One task
    iterates a listener: the first to wait in it.
    """

    def __init__(self, served: ServedRun, position: int) -> None:
        self.served = served
        self.position = position  # the next frame to send it (changed under the run's lock)
        self.closed = False
        self.expired = False  # ended because it fell further behind than the buffer keeps
        self.writer: Callable[[bytes], Awaitable[None]] | None = None
        self._waiter: asyncio.Future[None] | None = None  # while parked
        self._task: asyncio.Task[Any] | None = None  # the task reading this listener
        self._context: contextvars.Context | None = None  # its writes' context
        self._pending: Pending | None = None  # a write begun in emit that had to wait
        self._hot = False  # written from emit in this loop step already
        served._attach(self)

    def _wake(self) -> None:
        """Wake the parked listener's task: there is something new to read."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # (done: the task was cancelled)
            waiter.set_result(None)

    def _write(self, frame: bytes, index: int) -> None:
        """Frame #*index* is new (emitted on the loop): write it to the client, or wake the task.

        Called with the listener parked. The first event of a loop step is written
        here, as the listener's task, and the listener stays parked; a later one in
        the same step, or one whose write has to wait, wakes the listener's task.
        """
        waiter = self._waiter
        if waiter is None or waiter.done():  # the listener's task was cancelled
            return
        writer, task, context = self.writer, self._task, self._context
        if (
            writer is None
            or task is None
            or context is None
            or self._hot
            or self.closed
            or index != self.position
        ):
            waiter.set_result(None)
            return
        try:
            pending = start_eagerly(writer(frame), task, context)
        except (Exception, asyncio.CancelledError) as exc:
            if not waiter.done():  # the listener's task raises it, as if its own write had
                waiter.set_exception(exc)
            return
        except BaseException:  # KeyboardInterrupt and the like: for emit's caller
            if not waiter.done():
                waiter.set_exception(ConnectionAbortedError("the write to the client was cut"))
            raise
        self._pending = pending  # the listener's task finishes it
        if self.served._wrote(self, index + 1, park=pending is None and not waiter.done()):
            self._hot = True
            waiter.get_loop().call_soon(self._cool)
        elif not waiter.done():  # the write waits for the socket, or there is more to read
            waiter.set_result(None)

    def _cool(self) -> None:
        self._hot = False

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[bytes]]:
        served = self.served
        while not self.closed:
            try:
                frames, waiter = served._read(self)
            except _FellBehind:
                # Too far behind (a stalled client): end; a resume answers 410 and says why.
                self.expired = True
                return
            if frames:
                yield frames
            elif waiter is None:
                return  # the run has ended and everything was sent
            else:
                if self._task is None and EAGER:  # the first wait: emit may write as this task
                    self._task = asyncio.current_task()
                    self._context = contextvars.copy_context()
                try:
                    await waiter
                except BaseException as exc:
                    pending, self._pending = self._pending, None
                    if pending is None:
                        raise
                    if isinstance(exc, GeneratorExit):
                        pending.close()
                        raise
                    # Cancelled while a write begun in emit waited: the write gets the
                    # cancellation where it waits, as if this task had been in it, and
                    # ends its own way (a middleware's timeout may turn it into an error).
                    await pending.throw(exc)
                    continue
                self._waiter = None
                pending, self._pending = self._pending, None
                if pending is not None:
                    await pending  # a write begun in emit, waiting for the socket to drain

    async def ws_messages(self) -> AsyncIterator[list[str]]:
        """The batches as WebSocket text frames (the JSON cut from each SSE frame)."""
        run_id = self.served.id
        async for frames in self:
            n = self.position - len(frames)
            yield [ws_event(sse_data(frame), run_id, n + i) for i, frame in enumerate(frames)]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer = None
            self.served._detach(self)


async def _quietly(wait: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # every outcome is fine here: its event was sent
        await wait


class RunHub:
    """The agents a server offers and the runs it has started."""

    def __init__(
        self,
        agents: Mapping[str, AgentInfo] | None = None,
        *,
        replay_size: int = 10_000,
        keep_finished: int = 1000,
        keep_seconds: float = 300.0,
    ) -> None:
        if replay_size < 1:
            raise ValueError(f"replay_size must be at least 1, got {replay_size}")
        self._agents = dict(agents) if agents is not None else None
        self.replay_size = replay_size
        self.keep_finished = keep_finished
        self.keep_seconds = keep_seconds
        self.closing = False
        self._runs: dict[str, ServedRun] = {}
        self._finished: OrderedDict[str, ServedRun] = OrderedDict()
        self._clock: Callable[[], float] = time.monotonic

    @property
    def agents(self) -> dict[str, AgentInfo]:
        """The agents offered: the ones given, or (None given) all registered ones, live."""
        if self._agents is not None:
            return self._agents
        return {info.name: info for info in list_agents()}

    def agent(self, name: str) -> AgentInfo:
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise ApiError(
                404, "unknown_agent", f"no agent named {name!r} here; the agents are: {known}"
            ) from None

    def start(
        self, agent: str, args: tuple[JSON, ...] = (), on_disconnect: OnDisconnect = "cancel"
    ) -> ServedRun:
        """Start *agent* with *args* (the request's input, or nothing); must run on the loop."""
        if self.closing:
            raise ApiError(
                503, "shutting_down", "the server is shutting down; start runs elsewhere"
            )
        info = self.agent(agent)
        self._purge()
        served = ServedRun(self, info.name, on_disconnect, self.replay_size)
        start(info.fn, *args, sink=served, name=info.name)
        self._runs[served.id] = served
        return served

    def get(self, run_id: str) -> ServedRun:
        self._purge()
        try:
            return self._runs[run_id]
        except KeyError:
            raise ApiError(
                404,
                "unknown_run",
                f"no run {run_id!r} here: it never existed, or it ended more than "
                f"{self.keep_seconds:g} s ago and was forgotten",
            ) from None

    @property
    def live(self) -> list[ServedRun]:
        return [s for s in self._runs.values() if not s.ended]

    def _ended(self, served: ServedRun) -> None:
        self._finished[served.id] = served
        self._purge()

    def _purge(self) -> None:
        finished = self._finished
        horizon = self._clock() - self.keep_seconds
        while finished:
            oldest = next(iter(finished.values()))
            if len(finished) <= self.keep_finished and oldest.ended_at > horizon:
                break
            finished.popitem(last=False)
            self._runs.pop(oldest.id, None)

    def begin_shutdown(self) -> None:
        """Refuse new runs and cancel the live ones: their streams end with ``cancelled``."""
        self.closing = True
        for served in self.live:
            if served.run is not None:
                served.run.cancel("the server is shutting down")

    async def aclose(self) -> None:
        """Cancel every live run and wait for them (the app's shutdown), 10 s at most."""
        runs = [s.run for s in self.live if s.run is not None]
        self.begin_shutdown()
        if runs:
            waits = [asyncio.ensure_future(_quietly(run.wait())) for run in runs]
            _done, pending = await asyncio.wait(waits, timeout=_SHUTDOWN_WAIT)
            for wait in pending:  # an agent that ignores cancellation: stop waiting for it
                wait.cancel()
