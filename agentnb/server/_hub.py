"""The runs a server has started, and the one memory budget their buffered events share.

A :class:`RunHub` starts runs (each a :class:`ServedRun`, an inline sink of its
run), finds them by id, forgets finished ones after ``keep_seconds`` (at most
``keep_finished`` of them), and keeps every buffered event, live and finished,
within ``max_buffer`` bytes (:class:`Budget`):

1. finished runs are evicted oldest first (a resume then answers 410);
2. then live runs drop the replayable events no connected client still needs;
3. then the client furthest behind is cut off (its stream ends; a resume says why).

A new run is refused (503 ``over_budget``) while the live runs hold so much that
one more run's replay buffer would not fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._events import JSON, Ask, Event
from .._exceptions import AgentnbError
from .._registry import AgentInfo, list_agents
from .._run import _start
from ._buffer import ReplayBuffer
from ._errors import ApiError, Expired, OverBudget, ShuttingDown, UnknownAgent, UnknownRun
from ._served import Listener, OnDisconnect, ServedRun
from ._stored import SharedRuns, StoreListener

if TYPE_CHECKING:
    from ..redis import RedisStore

__all__ = ["Asked", "Budget", "RunHub"]

_SHUTDOWN_WAIT = 10.0  # seconds the app's shutdown waits for cancelled runs to end
_TOMBSTONES = 10_000  # evicted runs remembered, to answer 410 rather than 404
MiB = 1 << 20


class Budget:
    """The bytes all buffered frames cost, and what to give up when that is too many.

    ``add`` runs in any thread (a run's ``send``); the reclaiming runs on the
    server's loop (at once if ``add`` is on it, else scheduled there).
    """

    def __init__(self, hub: RunHub, limit: int) -> None:
        self.hub = hub
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.used += delta
            reclaim = self.used > self.limit and not self._scheduled
            if reclaim:
                self._scheduled = True
        if not reclaim:
            return
        if threading.get_ident() == self.loop_thread or self.loop is None:
            self.reclaim()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self.loop.call_soon_threadsafe(self.reclaim)

    def reclaim(self) -> None:
        """Give up buffered events until the budget holds (steps 1 to 3 of the module)."""
        try:
            self._reclaim()
        finally:
            with self._lock:
                self._scheduled = False

    def _reclaim(self) -> None:
        # Down to a low-water mark, so that a full budget is not reclaimed at every event.
        goal = self.limit - self.limit // 8
        hub = self.hub
        while self.used > goal and hub._finished:
            hub._evict_oldest_finished()  # (its add() does not reclaim: one is scheduled)
        if self.used <= goal:
            return
        live = sorted(hub.live, key=lambda s: s.buffer.nbytes, reverse=True)
        for served in live:
            excess = self.used - goal
            if excess <= 0:
                return
            self.add(-served.buffer.trim(max(served.buffer.nbytes - excess, 0)))
        while self.used > self.limit:
            behind = max(live, key=lambda s: s.buffer.behind(), default=None)
            if behind is None or not behind.buffer.behind():
                return  # what is left, every connected client still needs right now
            self.add(-behind.buffer.cut_slowest())
            behind.wake_all()

    def live_bytes(self) -> int:
        return sum(s.buffer.nbytes for s in self.hub.live)


@dataclass
class Asked:
    """The run that asked a question: its id, agent and latest position; the ask while open."""

    run_id: str
    agent: str
    position: int
    ask: Ask | None


class RunHub:
    """The agents a server offers and the runs it has started."""

    def __init__(
        self,
        agents: Mapping[str, AgentInfo] | None = None,
        *,
        replay_size: int = 10_000,
        keep_finished: int = 1000,
        keep_seconds: float = 300.0,
        max_buffer: int = 256 * MiB,
        replay_bytes: int | None = None,
        store: RedisStore | None = None,
        workers: bool | None = None,
    ) -> None:
        if replay_size < 1:
            raise ValueError(f"replay_size must be at least 1, got {replay_size}")
        if max_buffer < MiB:
            raise ValueError(f"max_buffer must be at least 1 MiB, got {max_buffer}")
        self._agents = dict(agents) if agents is not None else None
        self.replay_size = replay_size
        self.replay_bytes = replay_bytes if replay_bytes is not None else max_buffer // 8
        if self.replay_bytes < 1:
            raise ValueError(f"replay_bytes must be at least 1, got {replay_bytes}")
        self.keep_finished = keep_finished
        self.keep_seconds = keep_seconds
        self.budget = Budget(self, max_buffer)
        self.closing = False
        self._runs: dict[str, ServedRun] = {}
        self._finished: OrderedDict[str, ServedRun] = OrderedDict()
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self._clock: Callable[[], float] = time.monotonic
        # With a store, the runs are also in Redis, and those of other processes served here.
        self.shared = SharedRuns(self, store, workers) if store is not None else None

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
            raise UnknownAgent(name, self.agents) from None

    def start(
        self,
        agent: str,
        args: tuple[JSON, ...] = (),
        on_disconnect: OnDisconnect = "cancel",
        *,
        metadata: Mapping[str, JSON] | None = None,
        run_id: str | None = None,
    ) -> ServedRun:
        """Start *agent* with *args* (the request's input, or nothing); must run on the loop.

        *metadata* becomes the run's ``Run.metadata`` (what the request told about itself);
        *run_id* is the run's id, when it was given one already (a worker's run).
        """
        if self.closing:
            raise ShuttingDown
        info = self.agent(agent)
        self._purge()
        budget = self.budget
        budget.loop = asyncio.get_running_loop()
        budget.loop_thread = threading.get_ident()
        live_bytes = budget.live_bytes()
        if live_bytes + self.replay_bytes > budget.limit:
            raise OverBudget(live_bytes, budget.limit, len(self.live))
        buffer = ReplayBuffer(
            keep_count=self.replay_size,
            keep_bytes=self.replay_bytes,
            lag_count=4 * self.replay_size,
            lag_bytes=2 * self.replay_bytes,
        )
        served = ServedRun(self, info.name, on_disconnect, buffer)
        served.metadata = metadata
        _start(info.fn, args, {}, sink=served, name=info.name, run_id=run_id)
        self._runs[served.id] = served
        if self.shared is not None:
            served.announced = self.shared.announce(served)
            if served.writer is not None:  # its record first: a reader of a frame finds the run
                served.writer.after(served.announced)
        return served

    async def open(
        self,
        agent: str,
        args: tuple[JSON, ...] = (),
        on_disconnect: OnDisconnect = "cancel",
        *,
        metadata: Mapping[str, JSON] | None = None,
        to_workers: bool | None = None,
    ) -> Listener | StoreListener:
        """Start *agent* and listen to its run from its first event: on a worker when the
        store has one for it (see ``_workers``), else here. *metadata*: as for ``start``;
        *to_workers*: what ``offered(agent)`` said, if it was asked already."""
        shared = self.shared
        if shared is not None:
            if self.closing:
                raise ShuttingDown
            if to_workers is None:
                to_workers = await shared.to_workers(agent)
            if to_workers:
                return await shared.dispatch(agent, args, on_disconnect, metadata)
        served = self.start(agent, args, on_disconnect, metadata=metadata)
        await self.announced(served)
        return served.listen()

    async def offered(self, agent: str) -> bool:
        """Whether a run of *agent* goes to the store's workers; 404 (``UnknownAgent``)
        unless it runs there or here."""
        to_workers = self.shared is not None and await self.shared.to_workers(agent)
        if not to_workers:
            self.agent(agent)
        return to_workers

    # -- any run: this process's, or (with a store) another's ------------------------

    async def listen(self, run_id: str, after: int) -> Listener | StoreListener:
        """A listener of run *run_id*'s events after position *after*."""
        served = self.find(run_id)
        if served is not None:
            return served.listen(after)
        assert self.shared is not None
        return await self.shared.listen(run_id, after)

    async def asking(self, run_id: str, ask_id: str) -> bool:
        """Whether run *run_id* (or a sub-run) still waits for an answer to *ask_id*."""
        try:
            served = self.find(run_id)
        except ApiError:  # unknown or forgotten: it waits for nothing
            return False
        if served is not None:
            return served.asking(ask_id)
        assert self.shared is not None
        return await self.shared.asking(run_id, ask_id)

    async def question(self, ask_id: str) -> Asked | None:
        """The run that asked *ask_id* (this process's, or with a store any process's);
        None if no run known asked it."""
        served = self.holding(ask_id)
        if served is not None:
            run = served.run
            ask = run.question(ask_id) if run is not None and served.asking(ask_id) else None
            return Asked(served.id, served.agent, served.count - 1, ask)
        shared = self.shared
        run_id = await shared.asker(ask_id) if shared is not None else None
        if shared is None or run_id is None:
            return None
        try:
            described = await shared.describe(run_id)
        except UnknownRun:
            return None
        info = await shared.stored(run_id)  # (the owner may have sent more than it holds)
        position = info.count - 1 if info is not None else -1
        agent, questions = described.get("agent"), described.get("questions")
        asked = Asked(run_id, str(agent), position, None)
        for question in questions if isinstance(questions, list) else []:
            if isinstance(question, dict) and question.get("ask_id") == ask_id:
                with contextlib.suppress(AgentnbError):
                    event = Event.from_dict(question)
                    asked.ask = event if isinstance(event, Ask) else None
        return asked

    async def watched(self, run_id: str) -> bool:
        """Whether any client reads run *run_id* now (here, or in another process)."""
        try:
            served = self.find(run_id)
        except ApiError:
            return False
        if served is not None and served.listeners:
            return True
        return self.shared is not None and await self.shared.watched(run_id)

    async def answer(self, run_id: str, ask_id: str, value: str, by: str) -> None:
        """Answer the question *ask_id* of run *run_id*; raises the ApiError that says why
        not (the process running it decides: exactly one answer is taken)."""
        served = self.find(run_id)
        if served is not None:
            served.answer(ask_id, value, by)
            return
        assert self.shared is not None
        await self.shared.answer(run_id, ask_id, value, by)

    async def cancel(self, run_id: str, reason: str) -> None:
        """Cancel run *run_id* (its ``cancelled`` event says *reason*); idempotent."""
        served = self.find(run_id)
        if served is not None:
            if served.run is not None:
                served.run.cancel(reason)
            return
        assert self.shared is not None
        await self.shared.cancel(run_id, reason)

    async def announced(self, served: ServedRun) -> None:
        """Wait until *served* is found from any process (with a store; at once without)."""
        if served.announced is None:
            return
        try:
            await served.announced
        except Exception as exc:  # Redis failed: other processes could not serve it
            if served.run is not None:
                served.run.cancel("the run could not be recorded in Redis")
            raise ApiError(503, "store_unavailable", f"the run was not started: {exc}") from exc

    def find(self, run_id: str) -> ServedRun | None:
        """The run if this process holds it; None when it may be another's (with a store)."""
        try:
            return self.get(run_id)
        except (UnknownRun, Expired):
            if self.shared is None:
                raise
            return None

    def get(self, run_id: str) -> ServedRun:
        self._purge()
        try:
            return self._runs[run_id]
        except KeyError:
            if run_id in self._evicted:
                raise Expired.evicted(run_id, self.budget.limit) from None
            raise UnknownRun(run_id, self.keep_seconds) from None

    def expired(self, served: ServedRun, first: int) -> Expired:
        """The 410 for a position of *served* that its buffer no longer holds."""
        if served.buffer.first > 0 and not served.buffer.nbytes:
            return Expired.evicted(served.id, self.budget.limit)
        keeps = f"the last {self.replay_size} events and at most {self.replay_bytes / MiB:g} MiB"
        return Expired.position(served.id, first, keeps)

    def holding(self, ask_id: str) -> ServedRun | None:
        """The served run (still in memory) that asked the question *ask_id*, open or answered."""
        for served in self._runs.values():
            run = served.run
            if run is not None and run.question(ask_id) is not None:
                return served
        return None

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
            self._forget(finished.popitem(last=False)[1])

    def _evict_oldest_finished(self) -> None:
        served = self._finished.popitem(last=False)[1]
        self._forget(served)
        self._evicted[served.id] = None
        while len(self._evicted) > _TOMBSTONES:
            self._evicted.popitem(last=False)
        served.wake_all()  # a listener still reading it sees the frames are gone

    def _forget(self, served: ServedRun) -> None:
        self._runs.pop(served.id, None)
        self.budget.add(-served.buffer.clear())

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


async def _quietly(wait: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # every outcome is fine here: its event was sent
        await wait
