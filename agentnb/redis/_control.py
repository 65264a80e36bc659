"""What server processes sharing one Redis tell each other: run records and a control channel.

**Run records.** A hash per run, ``agentnb:record:<run id>``: the run's agent,
status, ``on_disconnect`` and ``owner`` (the server process running its agent),
written when the run starts (before its start is answered, so any process finds
it at once) and when it ends; it expires with the run's stream (the store's
``idle_ttl`` while it runs, ``ttl`` after its end).

**The control channel.** Each server process subscribes to its own pub/sub
channel, ``agentnb:control:<server id>``. A process asked to cancel, answer or
describe a run that another process runs publishes the request on the owner's
channel (``PUBLISH`` says whether anyone got it: nobody, for half a second, means
the owner is gone) and waits for the reply on its own channel. A request is one JSON object
(``op``, ``run_id``, ``id``, ``reply``: the channel to answer on, and the op's
fields); a reply is ``{"reply_to": id, "status": HTTP status, "body": JSON}``.
Pub/sub delivers to the subscribers of the moment, which is what a request to a
live process needs (a stopped owner cannot act on it anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ._store import RedisStore, StoreError

__all__ = ["Control", "Handler", "Reply"]

logger = logging.getLogger("agentnb.server")

Reply = tuple[int, Any]
"""A request's outcome: an HTTP status and its JSON body."""
Handler = Callable[[str, str, Mapping[str, Any]], Reply]
"""What a server does with a request for one of its runs: ``(op, run_id, fields)`` to a reply."""

REPLY_TIMEOUT = 5.0
"""Seconds a request waits for the owner's reply."""
_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('HINCRBY', KEYS[1], 'listeners', ARGV[1])
end
return false
"""
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_POLL = 1.0  # seconds per wait for a message (below the client's socket timeout)
_PAUSE = 0.1  # seconds between attempts to subscribe again after Redis failed
_RESENDS = 5  # more tries of a request nobody received (while its owner subscribes again)


class Control:
    """One server process's side of the records and the control channel (see the module).

    ``await start()`` on the server's loop (it subscribes), ``aclose()`` at its end.
    """

    def __init__(self, store: RedisStore, handle: Handler) -> None:
        self.store = store
        self.redis = store.redis
        self.handle = handle
        self.server_id = uuid.uuid4().hex
        base = store.prefix.removesuffix("run:")
        self.record_prefix = base + "record:"
        self.channel_prefix = base + "control:"
        self.channel = self.channel_prefix + self.server_id
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._listening: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._replies: set[asyncio.Task[None]] = set()
        # HINCRBY only on a record that exists (never making one without its TTL).
        self._count = self.redis.register_script(_COUNT)
        self._finish = self.redis.register_script(_FINISH)

    def __repr__(self) -> str:
        return f"<Control {self.channel} waiting={len(self._waiting)}>"

    # -- run records ----------------------------------------------------------------

    def record_key(self, run_id: str) -> str:
        return self.record_prefix + run_id

    async def announce(self, run_id: str, agent: str, on_disconnect: str) -> bool:
        """Record a run this process starts (it is found from any process once this
        returns); whether a cancel was asked for it already (a queued run)."""
        fields = {
            "agent": agent,
            "status": "running",
            "on_disconnect": on_disconnect,
            "owner": self.server_id,
            "started": repr(time.time()),
        }
        # One transaction: a cancel either sees the owner, or its flag is seen here.
        got = await self._record(run_id, fields, self.store.idle_ttl, read="cancel")
        return got is not None

    async def queue(self, run_id: str, agent: str, on_disconnect: str) -> None:
        """Record a run handed to the workers (no owner until one takes it)."""
        fields = {
            "agent": agent,
            "status": "queued",
            "on_disconnect": on_disconnect,
            "owner": "",
            "started": repr(time.time()),
        }
        await self._record(run_id, fields, self.store.idle_ttl)

    async def cancel_queued(self, run_id: str) -> str:
        """Flag run *run_id* for cancelling before its worker takes it; its owner if one
        took it meanwhile (then ask the owner), else ``""``."""
        owner = await self._record(run_id, {"cancel": "1"}, self.store.idle_ttl, read="owner")
        return owner or ""

    async def listeners(self, run_id: str, delta: int) -> int | None:
        """Add *delta* to the count of run *run_id*'s clients on other processes than its
        owner; the new count (None: the run has no record any more)."""
        try:
            got = await self._count(keys=[self.record_key(run_id)], args=[delta])
        except RedisError as exc:
            raise self.store.error(f"counting the clients of run {run_id}: {exc}") from exc
        return None if got is None else int(got)

    async def finish(self, run_id: str, status: str) -> None:
        """Record that a run ended (its record then expires with its stream); a record that
        is gone (expired, or lost in a Redis restart) is not made again, partial."""
        key = self.record_key(run_id)
        try:
            await self._finish(keys=[key], args=[status, int(self.store.ttl * 1000)])
        except RedisError as exc:
            raise self.store.error(f"recording the end of run {run_id}: {exc}") from exc

    async def _record(
        self, run_id: str, fields: Mapping[str, str], ttl: float, *, read: str = ""
    ) -> str | None:
        key = self.record_key(run_id)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
            pipe.pexpire(key, int(ttl * 1000))
            if read:
                pipe.hget(key, read)
            got = await pipe.execute()
        except RedisError as exc:
            raise self.store.error(f"recording run {run_id}: {exc}") from exc
        return _text(got[2]) if read and got[2] is not None else None

    async def record(self, run_id: str) -> dict[str, str] | None:
        """Run *run_id*'s record (None: there is none)."""
        try:
            raw = await self.redis.hgetall(self.record_key(run_id))
        except RedisError as exc:
            raise self.store.error(f"looking up run {run_id}: {exc}") from exc
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    # -- the control channel --------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to this process's channel (requests may come once this returns)."""
        if self._listening is not None:
            return
        self._subscribed = asyncio.Event()
        self._listening = asyncio.get_running_loop().create_task(
            self._listen(), name=f"agentnb control {self.server_id}"
        )
        waiting = asyncio.ensure_future(self._subscribed.wait())
        done, _ = await asyncio.wait({waiting, self._listening}, return_when="FIRST_COMPLETED")
        if self._listening in done:  # it failed before subscribing
            waiting.cancel()
            self._listening.result()

    async def request(
        self, owner: str, op: str, run_id: str, fields: Mapping[str, Any] | None = None
    ) -> Reply | None:
        """Send *op* for run *run_id* to the process *owner*; its reply, or None when no
        process has that id any more (or it did not reply within ``REPLY_TIMEOUT``)."""
        request_id = uuid.uuid4().hex
        message = {**(fields or {}), "op": op, "run_id": run_id, "id": request_id}
        message["reply"] = self.channel
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        try:
            for attempt in range(_RESENDS + 1):
                try:
                    got = await self.redis.publish(self.channel_prefix + owner, json.dumps(message))
                except RedisError as exc:
                    raise self.store.error(f"sending {op} for run {run_id}: {exc}") from exc
                if got:
                    break
                if attempt < _RESENDS:  # it may be subscribing again (its connection broke)
                    await asyncio.sleep(_PAUSE)
            else:
                return None
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    return await reply
            except TimeoutError:
                return None
        finally:
            self._waiting.pop(request_id, None)

    async def _listen(self) -> None:
        while True:
            pubsub: PubSub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                assert self._subscribed is not None
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=_POLL)
                    if message is not None and message.get("type") == "message":
                        self._received(message["data"])
            except RedisError as exc:  # Redis went away: subscribe again when it is back
                logger.warning("agentnb: the control channel %s failed: %r", self.channel, exc)
                await asyncio.sleep(_PAUSE)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    def _received(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            logger.warning("agentnb: a control message that is not JSON: %r", exc)
            return
        if "reply_to" in message:
            waiting = self._waiting.get(str(message["reply_to"]))
            if waiting is not None and not waiting.done():
                waiting.set_result((int(message["status"]), message.get("body")))
            return
        op, run_id, reply = message.get("op"), message.get("run_id"), message.get("reply")
        if not (isinstance(op, str) and isinstance(run_id, str) and isinstance(reply, str)):
            logger.warning("agentnb: a control message without op, run_id or reply")
            return
        try:
            status, body = self.handle(op, run_id, message)
        except Exception:  # a bug: the requester still gets an answer
            logger.exception("agentnb: a control request failed")
            status, body = 500, {"error": "internal_error", "message": f"{op} failed on its server"}
        answer = json.dumps({"reply_to": message.get("id"), "status": status, "body": body})
        task = asyncio.get_running_loop().create_task(self._reply(reply, answer))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _reply(self, channel: str, answer: str) -> None:
        try:
            await self.redis.publish(channel, answer)
        except RedisError as exc:
            logger.warning("agentnb: a control reply was not sent: %r", exc)

    async def aclose(self) -> None:
        """Unsubscribe (requests for this process's runs then find nobody)."""
        task, self._listening = self._listening, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError, RedisError):
                await task
        for waiting in self._waiting.values():
            waiting.cancel()
        if self._replies:
            await asyncio.gather(*self._replies, return_exceptions=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
