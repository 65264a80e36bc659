"""Workers: processes that run agents for the servers, taking run requests from Redis Streams.

::

    python -m agentnb worker --redis redis://127.0.0.1:6379/0 --app myagents:agents
    python -m agentnb serve  --redis redis://127.0.0.1:6379/0 --port 8000

A server with a store hands a run of an agent that a live worker offers to the
workers (``create_app(store=..., workers=None)``, the default: when one offers
it; ``True``: always; ``False``: never): it records the run as ``queued``, adds a
request to the agent's stream (``agentnb:requests:<agent>``) and streams the
run from Redis like any other process's run. A :class:`Worker` reads the
requests of its agents with ``XREADGROUP`` in the consumer group
``agentnb:workers`` (each request goes to one worker), runs the agent exactly as
a server process would (a :class:`~agentnb.server._hub.RunHub` with the store:
its frames and record in Redis, cancel, answer and describe over its control
channel), and acknowledges the request when the run's end is stored.

**Leases.** A request stays pending in the group while its run runs; the worker
renews its claim every ``lease / 4`` seconds (``XCLAIM`` of its own entries, which
resets their idle time). Every worker and every server with a store looks, every
``lease / 4`` seconds, for requests idle for half the store's ``lease``
(``XAUTOCLAIM``): their worker missed two renewals, so it is gone (killed, its
machine or network lost); the run is ended with an ``error`` event
(``WorkerLost``) at the next position of its stream, its record says ``error``,
and the request is dropped. So a lost worker's runs end within ``lease`` seconds.
A run is never started twice. If the worker was only stalled, its next write is
refused (the terminal position is taken), so the run still has exactly one
terminal event.

**Which worker is live.** Each worker keeps ``agentnb:worker:<id>`` (a key that
expires half a ``lease`` after its last renewal) and is in ``agentnb:offers:<agent>``
for each of its agents; ``agentnb:queues`` lists the request streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from redis.exceptions import RedisError, ResponseError

from .._events import Error, Event
from .._version import __version__
from ._errors import ApiError
from ._wire import sse_data, sse_frame

if TYPE_CHECKING:
    from ..redis import RedisStore
    from ._app import AgentsArg
    from ._hub import RunHub
    from ._served import OnDisconnect

__all__ = ["GROUP", "Queues", "Worker", "main"]

logger = logging.getLogger("agentnb.server")
P = ParamSpec("P")
T = TypeVar("T")

GROUP = "agentnb:workers"
"""The consumer group of the request streams."""
_DROP_EMPTY = """
if redis.call('XLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1])
    redis.call('SREM', KEYS[2], KEYS[1])
end
return 0
"""
_BLOCK = 1.0  # seconds per XREADGROUP BLOCK (a stop is seen within it)
_LAST_SEQ_SCAN = 100  # entries per XREVRANGE looking for a run's last own event


def _stored(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Redis failing raises the store's ``StoreError`` (naming the store, no password)."""

    @functools.wraps(method)
    async def storing(*args: P.args, **kwargs: P.kwargs) -> T:
        store: RedisStore = args[0].store  # type: ignore[attr-defined]  # a Queues method
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            raise store.error(f"{method.__name__}: {exc}") from exc

    return storing


class Queues:
    """The request streams and the registry of live workers, in one store's key space."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.redis = store.redis
        self.base = store.prefix.removesuffix("run:")
        self.queues = self.base + "queues"
        self.agents = self.base + "agents"
        self._grouped: set[str] = set()
        self._drop_empty = self.redis.register_script(_DROP_EMPTY)

    def requests(self, agent: str) -> str:
        return f"{self.base}requests:{agent}"

    def offers(self, agent: str) -> str:
        return f"{self.base}offers:{agent}"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}worker:{worker_id}"

    @_stored
    async def grouped(self, key: str) -> None:
        """Make sure request stream *key* and its consumer group exist, and are listed."""
        if key in self._grouped:
            return
        try:
            await self.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.sadd(self.queues, key)
        self._grouped.add(key)

    @_stored
    async def offered(self, agent: str) -> bool:
        """Whether a live worker offers *agent* (the dead ones are dropped from its set)."""
        key = self.offers(agent)
        members = [_text(m) for m in await self.redis.smembers(key)]
        if not members:
            return False
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in members:
            pipe.exists(self.worker(worker_id))
        alive = await pipe.execute()
        dead = [w for w, live in zip(members, alive, strict=True) if not live]
        if dead:
            await self.redis.srem(key, *dead)
        return len(dead) < len(members)

    @_stored
    async def known(self) -> dict[str, str]:
        """The agents workers have offered, live or not: name to description."""
        raw = await self.redis.hgetall(self.agents)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def listed(self) -> dict[str, str]:
        """The agents live workers offer: name to description."""
        known = await self.known()
        return {name: text for name, text in known.items() if await self.offered(name)}

    @_stored
    async def request(self, run_id: str, agent: str, fields: Mapping[str, str]) -> None:
        """Add the request to start run *run_id* of *agent* for the workers."""
        key = self.requests(agent)
        await self.grouped(key)
        entry: dict[Any, Any] = {"run_id": run_id, "agent": agent, **fields}
        await self.redis.xadd(key, entry)

    def leases(self, owner: str) -> str:
        return f"{self.base}leases:{owner}"

    @_stored
    async def hold(self, owner: str, run_id: str, agent: str) -> tuple[str, str]:
        """A lease on run *run_id*, which process *owner* runs itself: an entry of its own
        stream, pending to it in the group (renewed like a worker's request); ``(key, id)``."""
        key = self.leases(owner)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
        pipe.sadd(self.queues, key)
        pipe.xadd(key, {"run_id": run_id, "agent": agent, "by": "server"})
        pipe.xreadgroup(GROUP, owner, {key: ">"}, count=1)
        _, _, added, _ = await pipe.execute(raise_on_error=False)  # (BUSYGROUP: it exists)
        if isinstance(added, Exception):
            raise added
        return key, _text(added)

    @_stored
    async def renew(self, owner: str, leased: Sequence[tuple[str, str]]) -> None:
        """Reset the idle time of *owner*'s pending entries (its runs live)."""
        pipe = self.redis.pipeline(transaction=False)
        for key, entry_id in leased:
            pipe.xclaim(key, GROUP, owner, 0, [entry_id], justid=True)
        await pipe.execute()

    @_stored
    async def release(self, owner: str) -> None:
        """*owner* stops: its lease stream goes, if empty (the reapers drop a dead one's)."""
        await self._drop_empty(keys=[self.leases(owner), self.queues])

    @_stored
    async def done(self, key: str, entry_id: str) -> None:
        """A request's run has ended (or was ended): drop it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(key, GROUP, entry_id)
        pipe.xdel(key, entry_id)
        await pipe.execute()


class Reaper:
    """Ends the runs whose worker is gone (their requests idle beyond the lease)."""

    def __init__(self, hub: RunHub, consumer: str) -> None:
        assert hub.shared is not None
        self.shared = hub.shared
        self.store = hub.shared.store
        self.queues = Queues(self.store)
        self.consumer = consumer

    async def every(self, seconds: float) -> None:
        """Reap every *seconds* until cancelled (Redis failing is logged, and tried again)."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.reap()
            except (RedisError, self.store.Error) as exc:
                logger.warning("agentnb: looking for lost workers failed: %r", exc)

    async def reap(self) -> int:
        """End the runs of every request idle beyond the lease; how many."""
        redis = self.store.redis
        silent_ms = int(self.store.lease * 500)  # two renewals missed
        ended = 0
        for raw in await redis.smembers(self.queues.queues):
            key = _text(raw)
            start: Any = "0-0"
            while True:
                try:
                    got = await redis.xautoclaim(
                        key, GROUP, self.consumer, silent_ms, start_id=start, count=100
                    )
                except ResponseError as exc:  # the stream or its group is gone
                    logger.debug("agentnb: %s: %s", key, exc)
                    break
                start, claimed = got[0], got[1]
                for entry_id, fields in claimed:
                    if fields:
                        await self.lost({_text(k): _text(v) for k, v in fields.items()})
                        ended += 1
                    await self.queues.done(key, _text(entry_id))
                if _text(start) == "0-0":
                    break
            if key.startswith(self.queues.requests("")):
                ended += await self._untaken(key)
            elif key != self.queues.leases(self.consumer):
                # A lease stream left empty: its server stopped, or holds no run right now
                # (it makes it again with its next run).
                await self.queues._drop_empty(keys=[key, self.queues.queues])
        return ended

    async def _untaken(self, key: str) -> int:
        """End the requests of *key* that no worker took before their ``until`` (a server
        handed them to a worker that was lost before it took them) while no live worker
        offers their agent; how many. A request without ``until`` waits for a worker."""
        redis = self.store.redis
        agent = key.removeprefix(self.queues.requests(""))
        groups = await redis.xinfo_groups(key)
        last = next((g["last-delivered-id"] for g in groups if _text(g["name"]) == GROUP), None)
        if last is None:
            return 0
        got = await redis.xrange(key, "(" + _text(last), "+", count=100)
        waiting = cast(list[tuple[bytes, dict[bytes, bytes]]], got or [])
        now = time.time()
        stale: list[tuple[str, dict[str, str]]] = []
        for raw_id, fields in waiting:
            request = {_text(k): _text(v) for k, v in fields.items()}
            if not request.get("until") or float(request["until"]) > now:
                break
            stale.append((_text(raw_id), request))
        if not stale or await self.queues.offered(agent):
            return 0
        for entry_id, request in stale:
            message = (
                "no worker took this run: the worker it was handed to was lost before taking "
                f"it, and no other offers {agent!r}"
            )
            run_id = request.get("run_id", "")
            if await end_run(self.store, run_id, agent, "NoWorker", message):
                logger.warning("agentnb: run %s of %s: %s", run_id, agent, message)
            await self.shared.control.finish(run_id, "error")
            await self.queues.done(key, entry_id)
        return len(stale)

    async def lost(self, request: Mapping[str, str]) -> None:
        run_id, agent = request.get("run_id", ""), request.get("agent", "")
        by = request.get("by", "worker")  # a worker's request, or a server's own run
        message = (
            f"the {by} running this run was lost: no sign of it for {self.store.lease / 2:g} s "
            "(its process was killed, or its machine or network failed)"
        )
        kind = "ServerLost" if by == "server" else "WorkerLost"
        if await end_run(self.store, run_id, agent, kind, message):
            logger.warning("agentnb: run %s of %s: %s", run_id, agent, message)
        await self.shared.control.finish(run_id, "error")


async def end_run(store: RedisStore, run_id: str, agent: str, type: str, message: str) -> bool:
    """Append an ``error`` terminal event to run *run_id*'s stream, unless it has ended;
    whether it was appended. Safe against a writer still going on: the position is
    taken once (the loser finds the stream ended, or tries the next position)."""
    redis, key = store.redis, store.key(run_id)
    for _ in range(100):
        info = await store.info(run_id)
        if info is not None and info.ended:
            return False
        count = info.count if info is not None else 0
        seq = await _next_seq(store, run_id) if count else 0
        event: Event = Error(type, message, run_id=run_id, seq=seq, path=(agent,), ts=time.time())
        frame = sse_frame(event, event.to_json(), run_id, count)
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(key, {"frame": frame, "end": b"1"}, id=f"{count + 1}-0", nomkstream=count > 0)
        pipe.pexpire(key, int(store.ttl * 1000))
        added, _ = await pipe.execute(raise_on_error=False)
        if not isinstance(added, Exception) and added is not None:
            return True
    raise store.error(f"run {run_id} could not be ended: its stream keeps changing")


async def _next_seq(store: RedisStore, run_id: str) -> int:
    """The ``seq`` after the last event of run *run_id* itself in its stream (not a sub-run's)."""
    end: Any = "+"
    while True:
        got = await store.redis.xrevrange(store.key(run_id), end, "-", count=_LAST_SEQ_SCAN)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], got or [])
        for _, fields in entries:
            with contextlib.suppress(ValueError, KeyError):
                data = json.loads(sse_data(fields[b"frame"]))
                if data.get("run_id") == run_id:
                    return int(data["seq"]) + 1
        if len(entries) < _LAST_SEQ_SCAN:
            return 0
        end = "(" + _text(entries[-1][0])


class Worker:
    """Runs *agents* for the servers sharing *store* (see the module).

    ``await worker.run()`` takes requests until ``stop()`` (or cancelled), at most
    *concurrency* runs at a time. On stopping, it takes no more requests, cancels
    its runs (each ends ``cancelled``, 10 s at most) and leaves the registry.
    """

    def __init__(self, agents: AgentsArg, store: RedisStore, *, concurrency: int = 16) -> None:
        from ._app import _agent_table
        from ._hub import RunHub

        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        table = _agent_table(agents)
        if not table:
            raise ValueError("a worker needs at least one agent")
        self.hub = RunHub(table, store=store)
        assert self.hub.shared is not None
        self.shared = self.hub.shared
        self.store = store
        self.queues = Queues(store)
        self.concurrency = concurrency
        self.id = self.shared.control.server_id
        self.agents = sorted(table)
        self.keys = {self.queues.requests(agent): agent for agent in self.agents}
        self.taken: dict[str, tuple[str, str]] = {}  # run id -> (request stream, entry id)
        self.started = 0
        self._free = asyncio.Event()
        self._stopping = False
        self.shared.released = self._released

    def __repr__(self) -> str:
        return f"<Worker {self.id} agents={self.agents} runs={len(self.taken)}>"

    def stop(self) -> None:
        """Take no more requests; ``run()`` then ends its runs and returns."""
        self._stopping = True
        self._free.set()

    async def run(self) -> None:
        await self.shared.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            for key in self.keys:
                await self.queues.grouped(key)
            await self._renew()
            loop = asyncio.get_running_loop()
            tasks.append(loop.create_task(self._renewing(), name="agentnb worker lease"))
            while not self._stopping:
                free = self.concurrency - len(self.taken)
                if free <= 0:
                    self._free.clear()
                    await self._free.wait()
                    continue
                await self._take(free)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.hub.aclose()  # its runs end cancelled; their ends are stored
            with contextlib.suppress(RedisError):
                await self._leave()
            await self.shared.aclose()

    async def _take(self, free: int) -> None:
        redis = self.store.redis
        streams: dict[Any, Any] = dict.fromkeys(self.keys, ">")
        try:
            got = await redis.xreadgroup(
                GROUP, self.id, streams, count=free, block=int(_BLOCK * 1000)
            )
        except RedisError as exc:
            logger.warning("agentnb: worker %s could not read its requests: %r", self.id, exc)
            await asyncio.sleep(_BLOCK)
            return
        for key, entries in cast(list[tuple[bytes, list[Any]]], got or []):
            for entry_id, fields in entries:
                request = {_text(k): _text(v) for k, v in fields.items()}
                await self._begin(_text(key), _text(entry_id), request)

    async def _begin(self, key: str, entry_id: str, request: Mapping[str, str]) -> None:
        run_id = request.get("run_id", "")
        agent = request.get("agent", "")
        try:
            args = tuple(json.loads(request.get("args", "[]")))
            metadata = json.loads(request.get("metadata", "null"))
            on_disconnect = cast("OnDisconnect", request.get("on_disconnect", "cancel"))
            served = self.hub.start(
                agent, args, on_disconnect, metadata=metadata, run_id=run_id or None
            )
        except (ValueError, TypeError, ApiError) as exc:  # not a request this worker can run
            message = f"worker {self.id} could not start it: {exc}"
            with contextlib.suppress(RedisError, self.store.Error):
                await end_run(self.store, run_id, agent, "BadRequest", message)
                await self.shared.control.finish(run_id, "error")
            await self.queues.done(key, entry_id)
            return
        served.request = (key, entry_id)
        self.taken[run_id] = (key, entry_id)
        self.started += 1

    def _released(self, run_id: str) -> None:
        if self.taken.pop(run_id, None) is not None:
            self._free.set()

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self.store.lease / 4)
            try:
                await self._renew()
            except RedisError as exc:
                logger.warning("agentnb: worker %s could not renew its lease: %r", self.id, exc)

    async def _renew(self) -> None:
        """Say this worker lives (the leases of its runs are renewed by its SharedRuns)."""
        queues, silent_ms = self.queues, int(self.store.lease * 500)
        about = {"agents": self.agents, "host": socket.gethostname(), "pid": os.getpid()}
        pipe = self.store.redis.pipeline(transaction=False)
        pipe.set(queues.worker(self.id), json.dumps(about), px=silent_ms)
        for agent in self.agents:
            pipe.sadd(queues.offers(agent), self.id)
            pipe.hset(queues.agents, agent, self.hub.agents[agent].description)
        await pipe.execute()

    async def _leave(self) -> None:
        pipe = self.store.redis.pipeline(transaction=False)
        pipe.delete(self.queues.worker(self.id))
        for agent in self.agents:
            pipe.srem(self.queues.offers(agent), self.id)
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- python -m agentnb worker ---------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentnb worker",
        description="Run agents for agentnb servers sharing one Redis (agentnb[server,redis]).",
    )
    parser.add_argument("--redis", required=True, metavar="URL", help="the store's Redis URL")
    parser.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="the agents: a list or mapping of agents (or a function returning one), or an "
        "app made by create_app(), e.g. myagents:agents (default: the demo agents)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="seconds without a sign of a worker before its runs are ended (default: 30); "
        "use the same on the servers (RedisStore(lease=...))",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="runs at a time (default: 16)")
    parser.add_argument("--log-level", default="info", help="logging level (default: info)")
    parser.add_argument("--version", action="version", version=f"agentnb {__version__}")
    return parser


def _load_agents(spec: str) -> AgentsArg:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr or "agents")
    hub = getattr(getattr(value, "state", None), "hub", None)
    if hub is not None:  # an app made by create_app(): its agents
        return cast("AgentsArg", hub.agents)
    if callable(value) and not isinstance(value, Mapping) and not hasattr(value, "__iter__"):
        with contextlib.suppress(TypeError):
            return cast("AgentsArg", value())
    return cast("AgentsArg", value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    try:
        from ..redis import RedisStore
    except ImportError as exc:
        parser.error(str(exc))
    sys.path.insert(0, "")
    agents: AgentsArg
    if args.app is None:
        from .. import demo
        from .._registry import list_agents

        agents = [info for info in list_agents() if info.fn.__module__ == demo.__name__]
    else:
        try:
            agents = _load_agents(args.app)
        except (ImportError, AttributeError) as exc:
            parser.error(f"--app {args.app}: {exc}")
    try:
        store = RedisStore(args.redis, lease=args.lease)
    except ValueError as exc:
        parser.error(f"--redis/--lease: {exc}")

    async def work() -> None:
        try:
            worker = Worker(agents, store, concurrency=args.concurrency)
        except (TypeError, ValueError) as exc:
            parser.error(f"--app {args.app}: {exc}")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop)
        print(
            f"agentnb: worker {worker.id} runs {', '.join(worker.agents)} for {store.url}",
            file=sys.stderr,
            flush=True,
        )
        await worker.run()

    try:
        asyncio.run(work())
    except store.Error as exc:
        print(f"agentnb: {exc}", file=sys.stderr)
        return 1
    return 0
