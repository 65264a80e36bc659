"""The server's runs: each started once, buffered for replay, streamed to any number of listeners.

The agent never touches the network. A :class:`ServedRun` is an ordinary sink of
its run: the run's feeder hands it each event once, and it appends the event
(with its JSON form and SSE frame, made once) to a bounded replay buffer and wakes
the listeners. A :class:`Listener` reads the buffer from any position, so a late
or resuming client gets every event after its ``Last-Event-ID`` exactly once, and
several clients can watch one run.

Listeners are counted. When the last one of an ``on_disconnect="cancel"`` run
goes, the run is cancelled; a ``"continue"`` run goes on detached. Finished runs
stay resumable for ``keep_seconds`` (at most ``keep_finished`` of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

from .._events import JSON, Event
from .._registry import AgentInfo, list_agents
from .._run import Run, start
from ._errors import ApiError
from ._wire import sse_data, sse_frame, ws_event

__all__ = ["Listener", "OnDisconnect", "RunHub", "ServedRun"]

OnDisconnect = Literal["cancel", "continue"]


class ServedRun:
    """One run started by the server: its replay buffer and its listeners.

    It is an inline sink of its run (``inline = True``): ``emit`` hands it each
    event in the emitting thread, it frames the event once (SSE bytes; the
    WebSocket form is cut from them) and wakes the listeners, so an event goes
    from the agent to the network in one hop, as through a plain queue.
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
        self.listeners = 0
        self.ended = False  # the run's own terminal event is buffered
        self.ended_at = 0.0
        self._replay_size = replay_size
        # The SSE frames of events _dropped, _dropped + 1, ...: bytes only, so a long
        # buffer adds nothing for the garbage collector to walk.
        self._frames: list[bytes] = []
        self._dropped = 0  # frames evicted from the front of the replay buffer
        self._lock = threading.Lock()  # send() may run in a worker thread of the agent
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def __repr__(self) -> str:
        return (
            f"<ServedRun {self.agent} id={self.id} events={self.count} listeners={self.listeners}>"
        )

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
        with self._lock:
            frames = self._frames
            frames.append(sse_frame(event, event.to_json(), self.id, self._dropped + len(frames)))
            if len(frames) > self._replay_size:
                # Evict in blocks: one list copy per block instead of one per event.
                drop = max(len(frames) - self._replay_size, self._replay_size // 8, 1)
                drop = min(drop, len(frames) - 1)
                del frames[:drop]
                self._dropped += drop
        if event.terminal and event.run_id == self.id:  # always on the run's own loop
            self.ended = True
            self.ended_at = time.monotonic()
            self.hub._ended(self)
        if self._waiters:
            if threading.get_ident() == self._loop_thread:
                self._wake()
            else:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a listener that went away cancelled its own
                waiter.set_result(None)

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

    def _attach(self) -> None:
        self.listeners += 1

    def _detach(self) -> None:
        self.listeners -= 1
        if self.listeners == 0 and self.on_disconnect == "cancel" and not self.ended:
            assert self.run is not None
            self.run.cancel("the client disconnected")

    def _read(self, position: int) -> tuple[int, list[bytes]]:
        """The frames from *position* on, and the position of the first buffered one."""
        with self._lock:
            return self._dropped, self._frames[max(position - self._dropped, 0) :]

    async def _wait(self) -> None:
        """Until the next event; each listener waits on a future of its own."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

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
    """

    def __init__(self, served: ServedRun, position: int) -> None:
        self.served = served
        self.position = position
        self.closed = False
        served._attach()

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[bytes]]:
        served = self.served
        while not self.closed:
            first, frames = served._read(self.position)
            if self.position < first:
                # Fell behind the replay buffer while sending: end this stream; a
                # resume from the last id sent then answers 410 and says why.
                return
            if frames:
                self.position += len(frames)
                yield frames
            elif served.ended:
                return
            else:
                await served._wait()

    async def ws_messages(self) -> AsyncIterator[list[str]]:
        """The batches as WebSocket text frames (the JSON cut from each SSE frame)."""
        run_id = self.served.id
        async for frames in self:
            n = self.position - len(frames)
            yield [ws_event(sse_data(frame), run_id, n + i) for i, frame in enumerate(frames)]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.served._detach()


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
        """Cancel every live run and wait for them (the app's shutdown)."""
        runs = [s.run for s in self.live if s.run is not None]
        self.begin_shutdown()
        for run in runs:
            with contextlib.suppress(Exception):  # every outcome is fine: its event was sent
                await run.wait()
