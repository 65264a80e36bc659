"""Server processes sharing one Redis store: any of them serves any run.

With ``create_app(store=RedisStore(url))`` the process that starts a run runs its
agent, as without a store, and also appends each frame to the run's stream
(``agentnb.redis``) and records the run (its agent, status and owner: the process
running it). Every other process serves the run from Redis: its events (a
:class:`StoreListener` reads the stream from any ``Last-Event-ID``; a position
trimmed away answers 410), its description (the record and the stream), and the
requests only the owner can carry out (cancel, answer, and the live state of a
running run), which go to the owner over the control channel
(``agentnb.redis._control``) and come back with its status and body.

A run's own process serves it from memory, exactly as without a store; clients
of other processes do not count as its listeners (``on_disconnect="cancel"``
applies to the owner's own clients).

A protocol response that ends at a question (an AG-UI interrupt, an AI SDK tool
approval) leaves a :class:`Suspension` (:class:`Suspensions`): with a store, in
Redis (``agentnb:suspended:<protocol>:<ask id>``), so that the answer may come to
any process, which answers the run through its owner and streams the rest from
the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .._events import JSON, Ask, Event
from .._exceptions import AgentnbError
from ._errors import ApiError, BadEventId, Ended, Expired, UnknownAgent, UnknownRun
from ._wire import sse_data, ws_event

if TYPE_CHECKING:
    from ..redis import RedisStore
    from ..redis._control import Control, Reply
    from ..redis._store import RunInfo
    from ._hub import RunHub
    from ._served import ServedRun

__all__ = ["SharedRuns", "StoreListener", "StoredRun", "Suspension", "Suspensions"]

logger = logging.getLogger("agentnb.server")
P = ParamSpec("P")
T = TypeVar("T")

ENDED = ("done", "error", "cancelled")
_CATCH_UP = 0.01  # seconds between looks at a stream a resuming client is ahead of
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SUSPENSIONS_KEPT = 10_000  # without a store: suspensions remembered (409 "answered" after)
_ASK_ID_MAX = 256  # characters of an ask id looked up in Redis (a longer one is unknown)


class StoredRun:
    """A run that another process runs, as its record in Redis tells it."""

    def __init__(self, hub: RunHub, run_id: str, record: Mapping[str, str]) -> None:
        self.hub = hub
        self.id = run_id
        self.agent = record.get("agent", "")
        self.status = record.get("status", "running")
        self.on_disconnect = record.get("on_disconnect", "cancel")
        self.owner = record.get("owner", "")

    def __repr__(self) -> str:
        return f"<StoredRun {self.agent} id={self.id} {self.status} owner={self.owner}>"


class StoreListener:
    """One client's read of a run's frames from the store (the same surface as ``Listener``):
    ``async for frames in listener`` yields lists of SSE frames and ends after the run's
    terminal frame, or when the store no longer holds the next one (``expired``)."""

    def __init__(self, served: StoredRun, store: RedisStore, after: int) -> None:
        self.served = served
        self.store = store
        self.position = after + 1  # the next frame to send
        self.closed = False
        self.expired = False
        self.counted = False  # it is in the run's count of clients (see SharedRuns.joined)

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[bytes]]:
        run_id = self.served.id
        try:
            if not await self._stream_begun():
                return
            async with contextlib.aclosing(self.store.read(run_id, self.position - 1)) as reading:
                async for frames in reading:
                    if self.closed:
                        return
                    self.position += len(frames)
                    yield frames
        except self.store.Trimmed:
            self.expired = True  # it fell behind the store's trimming: a resume answers 410
        except self.store.Error as exc:  # the client sees its stream end, and resumes
            logger.warning("agentnb: reading run %s from Redis failed: %s", run_id, exc)

    async def _stream_begun(self) -> bool:
        """Wait until the run's first frame is in (a run may emit nothing for a while)."""
        while not self.closed:
            if await self.store.wait_begun(self.served.id):
                return True
        return False

    async def ws_messages(self) -> AsyncIterator[list[str]]:
        """The batches as WebSocket text frames (the JSON cut from each SSE frame)."""
        run_id = self.served.id
        async for frames in self:
            n = self.position - len(frames)
            yield [ws_event(sse_data(frame), run_id, n + i) for i, frame in enumerate(frames)]

    async def events(self) -> AsyncIterator[list[Event]]:
        """The batches as events, rebuilt from each frame's JSON (for protocol encoders)."""
        async for frames in self:
            yield [Event.from_json(sse_data(frame)) for frame in frames]

    def close(self) -> None:
        """Stop listening; the last client of an ``on_disconnect="cancel"`` run cancels it."""
        self._uncount(apply=True)

    def leave(self) -> None:
        """Stop listening without applying ``on_disconnect`` (the client left on purpose)."""
        self._uncount(apply=False)

    def _uncount(self, apply: bool) -> None:
        self.closed = True
        if self.counted:
            self.counted = False
            shared = self.served.hub.shared
            assert shared is not None
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to apply
                shared.spawn(shared.left(self.served.id, apply))

    def expired_error(self) -> Expired:
        return Expired.behind(self.served.id)


def _unavailable(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Redis failing answers 503 ``store_unavailable``, naming the store (no password)."""

    @functools.wraps(method)
    async def answering(*args: P.args, **kwargs: P.kwargs) -> T:
        store: RedisStore = args[0].store  # type: ignore[attr-defined]  # a SharedRuns method
        try:
            return await method(*args, **kwargs)
        except store.Error as exc:
            raise ApiError(503, "store_unavailable", str(exc)) from exc

    return answering


class SharedRuns:
    """A hub's side of the store: its runs written to Redis, and the runs of other processes."""

    def __init__(self, hub: RunHub, store: RedisStore, workers: bool | None = None) -> None:
        from ._workers import Queues

        self.hub = hub
        self.store = store
        self.workers = workers
        self.control: Control = store.control(self.handle)
        self.queues = Queues(store)
        self.released: Callable[[str], None] | None = None  # a worker's: a run's request is done
        self.leased: dict[str, tuple[str, str]] = {}  # run id -> its lease (stream, entry)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Join the control channel and open the writers' connection; renew this process's
        leases and end the runs of lost processes (see ``_workers``) every quarter of the
        store's lease."""
        from ._workers import Reaper

        await self.control.start()
        await self.store.open()  # the first run's frames do not wait for a connection
        loop = asyncio.get_running_loop()
        reaper = Reaper(self.hub, self.control.server_id)
        self._background = [
            loop.create_task(self._renewing(), name="agentnb leases"),
            loop.create_task(reaper.every(self.store.lease / 4), name="agentnb reaper"),
        ]

    async def aclose(self) -> None:
        """Wait for the ended runs' last writes, leave the control channel, close the store."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(self.store.Error):
            await self.queues.release(self.control.server_id)
        await self.control.aclose()
        await self.store.aclose()

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self.store.lease / 4)
            try:
                await self.queues.renew(self.control.server_id, list(self.leased.values()))
            except self.store.Error as exc:
                logger.warning("agentnb: the leases of this process's runs not renewed: %s", exc)

    # -- the runs of this process ---------------------------------------------------

    def announce(self, served: ServedRun) -> asyncio.Task[None]:
        """Record *served* (just started) in Redis; await the task before answering."""
        return self.spawn(self._announce(served))

    async def _announce(self, served: ServedRun) -> None:
        cancelled = await self.control.announce(served.id, served.agent, served.on_disconnect)
        if cancelled and served.run is not None:  # cancelled while it waited for a worker
            served.run.cancel("cancelled by a client")
        if served.request is None:  # a run of this server's own: leased like a worker's
            owner = self.control.server_id
            served.request = await self.queues.hold(owner, served.id, served.agent)
        self.leased[served.id] = served.request

    def asked(self, run_id: str, ask_id: str) -> None:
        """Run *run_id* of this process asked *ask_id*: index it (``agentnb:ask:<ask id>``,
        for as long as a running run's record lives), so any process finds its run."""
        if len(ask_id) <= _ASK_ID_MAX:
            self.spawn(self._asked(run_id, ask_id))

    def _ask_key(self, ask_id: str) -> str:
        return self.store.prefix.removesuffix("run:") + "ask:" + ask_id

    async def _asked(self, run_id: str, ask_id: str) -> None:
        from redis.exceptions import RedisError

        ttl = int(self.store.idle_ttl * 1000)
        try:
            await self.store.redis.set(self._ask_key(ask_id), run_id, px=ttl)
        except RedisError as exc:
            logger.warning("agentnb: run %s's question %s was not indexed: %s", run_id, ask_id, exc)

    @_unavailable
    async def stored(self, run_id: str) -> RunInfo | None:
        """What the store holds of run *run_id* (None: no stream)."""
        return await self.store.info(run_id)

    @_unavailable
    async def asker(self, ask_id: str) -> str | None:
        """The id of the run (of any process) that asked *ask_id*; None if none is known."""
        from redis.exceptions import RedisError

        if len(ask_id) > _ASK_ID_MAX:
            return None
        try:
            got = await self.store.redis.get(self._ask_key(ask_id))
        except RedisError as exc:
            raise self.store.error(f"looking up the question {ask_id!r:.80}: {exc}") from exc
        return None if got is None else _text(got)

    def ended(self, served: ServedRun) -> None:
        """*served*'s terminal frame is appended: flush its frames, record its status."""
        self.spawn(self._end(served))

    async def _end(self, served: ServedRun) -> None:
        try:
            if served.announced is not None:
                await served.announced  # its record first, then its end
            if served.writer is not None:
                await served.writer.aclose()
            await self.control.finish(served.id, served.status)
            if served.request is not None:
                await self.queues.done(*served.request)
        except self.store.Error as exc:
            logger.warning("agentnb: run %s's end was not stored: %s", served.id, exc)
        finally:
            self.leased.pop(served.id, None)
            if self.released is not None:
                self.released(served.id)

    def unwatched(self, served: ServedRun) -> None:
        """*served* (``on_disconnect="cancel"``) lost its last client here: cancel it unless
        clients of other processes still read it."""
        self.spawn(self._unwatched(served))

    async def _unwatched(self, served: ServedRun) -> None:
        try:
            record = await self.control.record(served.id)
        except self.store.Error as exc:
            logger.warning("agentnb: run %s's clients could not be counted: %s", served.id, exc)
            record = None
        elsewhere = int((record or {}).get("listeners") or 0)
        if elsewhere <= 0 and not served.listeners and served.run is not None:
            served.run.cancel("the client disconnected")

    def spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def handle(self, op: str, run_id: str, fields: Mapping[str, Any]) -> Reply:
        """A request from another process for a run of this one (the control channel)."""
        try:
            served = self.hub._runs.get(run_id)
            if served is None:
                raise UnknownRun(run_id, self.hub.keep_seconds)
            if op == "cancel":
                reason = fields.get("reason")
                if served.run is not None:
                    served.run.cancel(
                        reason if isinstance(reason, str) else "cancelled by a client"
                    )
                return 200, served.describe()
            if op == "describe":
                return 200, served.describe()
            if op == "idle":  # its clients elsewhere are gone: cancel it unless some are here
                if not served.listeners and served.on_disconnect == "cancel" and served.run:
                    served.run.cancel("the client disconnected")
                return 200, served.describe()
            if op == "answer":
                ask_id, value, by = fields.get("ask_id"), fields.get("value"), fields.get("by")
                if not (isinstance(ask_id, str) and isinstance(value, str) and isinstance(by, str)):
                    raise ApiError(422, "bad_request", "an answer needs ask_id, value and by")
                served.answer(ask_id, value, by)
                return 200, {"run_id": run_id, "ask_id": ask_id, "value": value, "by": by}
            raise ApiError(422, "bad_request", f"unknown control request {op!r}")
        except ApiError as exc:
            return exc.status, exc.body()

    # -- the runs of any process ----------------------------------------------------

    async def find(self, run_id: str) -> StoredRun:
        """Run *run_id* as Redis knows it; 404 when it has neither a record nor a stream."""
        if not _RUN_ID.fullmatch(run_id):  # not a run id: not looked up (it would go into JSON)
            raise UnknownRun(run_id, self.store.ttl)
        record = await self.control.record(run_id)
        if record is None:
            if not await self.store.exists(run_id):
                raise UnknownRun(run_id, self.store.ttl)
            record = {}
        return StoredRun(self.hub, run_id, record)

    @_unavailable
    async def listen(self, run_id: str, after: int) -> StoreListener:
        """A listener of run *run_id*'s frames after *after*, read from the store."""
        try:
            stored: StoredRun | None = await self.find(run_id)
        except UnknownRun:
            if after < 0:
                raise
            stored = None  # a client that has had some of its events resumes: Redis lost it
        info = await self.store.info(run_id)
        # The owner sends each frame to its own clients before its writer has put it in
        # Redis: a client that read ahead of the store waits here for what it has had.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store.reconnect
        while (
            (info is None or after >= info.count)
            and not (info is not None and info.ended)
            and stored is not None
            and stored.status not in ENDED
            and loop.time() < deadline
        ):
            await asyncio.sleep(_CATCH_UP)
            info = await self.store.info(run_id)
        if info is None and after >= 0:
            raise Expired(
                f"run {run_id}'s events are no longer in Redis at {self.store.url}: they "
                f"expired ({self.store.ttl:g} s after the run's end), or Redis restarted "
                "without its data (appendonly off)"
            )
        assert stored is not None
        count, first = (info.count, info.first) if info is not None else (0, 0)
        if after >= count:
            raise BadEventId(
                f"run {run_id} has sent {count} events"
                + (f" (ids {run_id}:0 to {run_id}:{count - 1})" if count else "")
                + f"; Last-Event-ID {run_id}:{after} is past the end"
            )
        if after + 1 < first:
            keeps = (
                f"the last {self.store.keep_count} events and about {self.store.keep_bytes:,} bytes"
            )
            raise Expired.position(run_id, first, keeps)
        return await self.joined(StoreListener(stored, self.store, after))

    async def joined(self, listener: StoreListener) -> StoreListener:
        """Count *listener* among its run's clients (of processes other than its owner)."""
        counted = await self.control.listeners(listener.served.id, 1)
        listener.counted = counted is not None
        return listener

    async def left(self, run_id: str, apply: bool) -> None:
        """A client of run *run_id* here left; the last one of an ``on_disconnect="cancel"``
        run (here and at its owner) cancels it (*apply*: not when it left on purpose)."""
        try:
            count = await self.control.listeners(run_id, -1)
            if count is None or count > 0 or not apply:
                return
            stored = await self.find(run_id)
            if stored.status in ENDED or stored.on_disconnect != "cancel":
                return
            await self._ask_owner(stored, "idle")
        except (self.store.Error, ApiError) as exc:
            logger.warning("agentnb: run %s's last client left, not applied: %s", run_id, exc)

    async def _ask_owner(
        self, stored: StoredRun, op: str, fields: Mapping[str, Any] | None = None
    ) -> Reply | None:
        """Send *op* to the process running *stored* (a queued run: flag a cancel, or an
        ``idle``, for the worker that takes it); its reply, None when nobody runs it."""
        owner = stored.owner
        if not owner and stored.status == "queued" and op in ("cancel", "idle"):
            owner = await self.control.cancel_queued(stored.id)
            if not owner:
                return None
        if not owner:
            return None
        if owner == self.control.server_id:  # (a run of this process's, ended and forgotten)
            return self.handle(op, stored.id, fields or {})
        return await self.control.request(owner, op, stored.id, fields)

    async def to_workers(self, agent: str) -> bool:
        """Whether a run of *agent* goes to the workers (see ``create_app(workers=)``)."""
        if self.workers is False:
            return False
        try:
            if self.workers is None:
                return await self.queues.offered(agent)
            known = await self.queues.known()
        except self.store.Error as exc:
            raise ApiError(503, "store_unavailable", str(exc)) from exc
        if agent not in known:  # no worker ever offered it: no run would ever start
            raise UnknownAgent(agent, known)
        return True

    @_unavailable
    async def worker_agents(self) -> dict[str, str]:
        """The agents live workers offer: name to description."""
        return await self.queues.listed()

    @_unavailable
    async def dispatch(
        self,
        agent: str,
        args: tuple[JSON, ...],
        on_disconnect: str,
        metadata: Mapping[str, JSON] | None = None,
    ) -> StoreListener:
        """Hand a run of *agent* to the workers (*metadata*: its ``Run.metadata``); a
        listener of it from its first event."""
        run_id = os.urandom(8).hex()
        await self.control.queue(run_id, agent, on_disconnect)
        fields = {"args": json.dumps(args), "on_disconnect": on_disconnect}
        if self.workers is None:  # handed to a live worker: if it is lost before taking it,
            fields["until"] = repr(time.time() + self.store.lease)  # it ends (NoWorker)
        if metadata is not None:
            fields["metadata"] = json.dumps(metadata)
        await self.queues.request(run_id, agent, fields)
        record = {"agent": agent, "status": "queued", "on_disconnect": on_disconnect}
        return await self.joined(StoreListener(StoredRun(self.hub, run_id, record), self.store, -1))

    @_unavailable
    async def describe(self, run_id: str) -> dict[str, JSON]:
        """Run *run_id*'s state: from its owner while it runs, else from Redis."""
        stored = await self.find(run_id)
        if stored.status not in ENDED and stored.owner:
            reply = await self._ask_owner(stored, "describe")
            if reply is not None and reply[0] == 200:
                body: dict[str, JSON] = reply[1]
                return body
        return await self._described(stored)

    async def _described(self, stored: StoredRun) -> dict[str, JSON]:
        info = await self.store.info(stored.id)
        return {
            "run_id": stored.id,
            "agent": stored.agent,
            "status": stored.status,
            "events": info.count if info is not None else 0,
            "listeners": 0,
            "on_disconnect": stored.on_disconnect,
            "questions": [],
        }

    @_unavailable
    async def cancel(self, run_id: str, reason: str = "") -> dict[str, JSON]:
        """Cancel run *run_id* in the process that runs it (*reason*: its ``cancelled``
        event's, default "cancelled by a client"); idempotent."""
        stored = await self.find(run_id)
        if stored.status not in ENDED:
            reply = await self._ask_owner(stored, "cancel", {"reason": reason} if reason else None)
            if reply is not None and reply[0] == 200:
                body: dict[str, JSON] = reply[1]
                return body
        return await self._described(stored)

    @_unavailable
    async def answer(self, run_id: str, ask_id: str, value: str, by: str) -> dict[str, JSON]:
        """Answer a question of run *run_id* in the process that runs it; raises the
        ApiError that says why not (404, 409, 422), as the owner decided."""
        stored = await self.find(run_id)
        reply = None
        if stored.status not in ENDED and stored.owner:
            fields = {"ask_id": ask_id, "value": value, "by": by}
            reply = await self._ask_owner(stored, "answer", fields)
        if reply is None:  # ended, or its process is gone: nothing waits for an answer
            raise Ended.run(
                run_id, stored.status if stored.status in ENDED else "its server is gone"
            )
        status, body = reply
        if status != 200:
            raise ApiError(status, str(body.get("error")), str(body.get("message")))
        taken: dict[str, JSON] = body
        return taken

    async def asking(self, run_id: str, ask_id: str) -> bool:
        """Whether run *run_id* (of any process) still waits for an answer to *ask_id*."""
        try:
            described = await self.describe(run_id)
        except UnknownRun:
            return False
        questions = described.get("questions")
        return isinstance(questions, list) and any(
            isinstance(q, dict) and q.get("ask_id") == ask_id for q in questions
        )

    @_unavailable
    async def watched(self, run_id: str) -> bool:
        """Whether clients read run *run_id* now: of other processes than its owner, or
        (a run of another process) of its owner."""
        record = await self.control.record(run_id)
        if int((record or {}).get("listeners") or 0) > 0:
            return True
        if run_id in self.hub._runs:
            return False
        described = await self.describe(run_id)
        listeners = described.get("listeners")
        return isinstance(listeners, int) and listeners > 0


@dataclass
class Suspension:
    """A run waiting for the answer to the question a protocol's response ended with."""

    run_id: str
    agent: str
    position: int  # of the ask event in the run's stream: the response after the answer
    ask: Ask  # reads from just after it
    state: JSON  # what the protocol's encoder needs to go on (its open sub-agents, ...)

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "agent": self.agent,
                "position": self.position,
                "ask": self.ask.to_dict(),
                "state": self.state,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Suspension | None:
        """The suspension *text* holds; None for anything else."""
        try:
            data = json.loads(text)
            ask = Event.from_dict(data["ask"])
            run_id, agent, position = data["run_id"], data["agent"], data["position"]
        except (ValueError, TypeError, KeyError, AgentnbError):
            return None
        if not (isinstance(ask, Ask) and isinstance(run_id, str) and isinstance(agent, str)):
            return None
        if not isinstance(position, int):
            return None
        return cls(run_id, agent, position, ask, data.get("state"))


class Suspensions:
    """The questions one protocol's responses ended with, by ask id: with a store in Redis
    (any process takes the answer), else in memory (the last 10,000).

    ``hold`` keeps one and, unless answered within the hub's ``keep_seconds``, calls its
    *expire* then (once, in the process that held it: it cancels the run if the question
    is still open); the key in Redis lives as long as a waiting run's record, at least
    ``keep_seconds`` plus the store's ``ttl``, so a late answer is told it came too late.
    """

    def __init__(
        self,
        hub: RunHub,
        protocol: str,
        expire: Callable[[Suspension], Awaitable[None]],
    ) -> None:
        self.hub = hub
        self.protocol = protocol
        self.expire = expire
        self._kept: OrderedDict[str, Suspension] = OrderedDict()  # without a store
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _key(self, shared: SharedRuns, ask_id: str) -> str:
        base = shared.store.prefix.removesuffix("run:")
        return f"{base}suspended:{self.protocol}:{ask_id}"

    async def hold(self, suspension: Suspension) -> None:
        """Keep *suspension* (before its response ends: the answer may come at once)."""
        ask_id = suspension.ask.ask_id
        shared = self.hub.shared
        if shared is None:
            self._kept[ask_id] = suspension
            self._kept.move_to_end(ask_id)
            while len(self._kept) > _SUSPENSIONS_KEPT:
                self._kept.popitem(last=False)
        else:
            from redis.exceptions import RedisError

            store = shared.store
            served = self.hub._runs.get(suspension.run_id)
            if served is not None and served.writer is not None:
                with contextlib.suppress(store.Error):  # (then it is served from memory here)
                    await served.writer.flush()  # the store holds the question before a reply
            seconds = max(store.idle_ttl, self.hub.keep_seconds + store.ttl)
            key = self._key(shared, ask_id)
            try:
                if len(ask_id) <= _ASK_ID_MAX:  # (a longer one is not looked up)
                    await store.redis.set(key, suspension.to_json(), px=int(seconds * 1000))
            except RedisError as exc:
                raise store.error(f"keeping the question {ask_id!r:.80}: {exc}") from exc
        self.drop(ask_id)
        loop = asyncio.get_running_loop()
        self._timers[ask_id] = loop.call_later(self.hub.keep_seconds, self._expired, suspension)

    async def get(self, ask_id: str) -> Suspension | None:
        """The suspension of the question *ask_id*; None if none was kept (or it expired)."""
        shared = self.hub.shared
        if shared is None:
            return self._kept.get(ask_id)
        if len(ask_id) > _ASK_ID_MAX:
            return None
        from redis.exceptions import RedisError

        try:
            raw = await shared.store.redis.get(self._key(shared, ask_id))
        except RedisError as exc:
            message = str(shared.store.error(f"looking up the question {ask_id!r:.80}: {exc}"))
            raise ApiError(503, "store_unavailable", message) from exc
        return None if raw is None else Suspension.from_json(raw)

    def drop(self, ask_id: str) -> None:
        """Its answer came (here): no expiry."""
        timer = self._timers.pop(ask_id, None)
        if timer is not None:
            timer.cancel()

    def _expired(self, suspension: Suspension) -> None:
        self._timers.pop(suspension.ask.ask_id, None)
        task = asyncio.get_running_loop().create_task(self._expire(suspension))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, suspension: Suspension) -> None:
        try:
            await self.expire(suspension)
        except Exception as exc:  # Redis failed, or the run is gone meanwhile
            logger.warning(
                "agentnb: run %s waiting on %s was not expired: %s",
                suspension.run_id,
                suspension.ask.ask_id,
                exc,
            )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
