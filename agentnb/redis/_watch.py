"""``watch()``: a run served with a Redis store, watched live from any process (a notebook cell).

::

    watched = agentnb.redis.watch(run_id, "redis://127.0.0.1:6379/0")
    await agentnb.notebook.show(watched)        # or: %agent watched, agentnb.run, stream

A :class:`Watch` is a local agent that takes no input: its run re-emits the
watched run's events as they arrive, from its first event (or after the
position *after*: the *n* of an SSE id ``<run id>:<n>``), so every sink shows
it live. It reads the run's stream (``agentnb:run:<run id>``, the server's SSE
frames) with :meth:`RedisStore.read`: every event once, in order; each frame's
``data:`` becomes an event only through ``Event.from_json`` (schema-checked), and
its ``id:`` must be the run's next one. Each sub-run of the watched run becomes a
local sub-run of the same name (a ``Mirror``), ended as it ended.

The watch ends as the run ended: it returns the run's result, raises
:class:`RemoteError` (the remote exception's type, message and traceback) when it
failed, and ends cancelled when it was cancelled. A run with no stream raises
:class:`StreamMissing` (once its record, if any, no longer says it is starting), a
position trimmed away :class:`Expired`, Redis down :class:`StoreError` (after
*reconnect* seconds), a frame that is not the run's next event :class:`StoreError`:
never a hang.

**Questions.** Where a local front end takes answers (the cell's view), a
question of the watched run (or of a sub-run) is answerable here: the answer
(checked here against the question first) goes to the process running the run
over its control channel, as a server's answer does, with who gave it (``by``:
``cell`` from the view), and the run's ``answer`` event closes it. An answer the
run refused, or that found no process running it, is logged and the question
stays open here. Elsewhere (a headless notebook, a script) the question is only
shown: a watch does not own the run, so it does not answer it with its default;
the run waits for an answer from elsewhere (its page, its API, another watch).

**Stop.** Cancelling the watch's run (the cell's Stop, an interrupt, a timeout)
cancels the watched run, as with ``agentnb.client.remote``: Stop stops what the
cell shows (the cancel goes to the run's process, or flags a run still queued for
a worker; best effort, ``CANCEL_WITHIN`` seconds at most). ``on_stop="continue"``
only stops watching: the run goes on, and can be watched again. A watch that
fails (Redis down) or ends with the run sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal

from .._ask import Pending, answerable, expect, reopen, settled
from .._events import JSON, Answer, Ask, Cancelled, Done, Error, Event
from .._exceptions import InvalidEvent
from .._mirror import Mirror
from .._run import Run, current_run
from ._attach import RemoteError, _local_copy
from ._control import Control, Reply
from ._store import RedisStore, StoreError, StreamMissing, redact

__all__ = ["Watch", "watch"]

_log = logging.getLogger("agentnb")

ENDED = ("done", "error", "cancelled")
CANCEL_WITHIN = 2.0
"""Seconds a Stop waits for the watched run's owner to take its cancel."""
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_RECANCEL = 0.05  # seconds between cancellations of a reading task that missed one
_LINE_END = re.compile(rb"\r\n|\r|\n")  # SSE's line ends

OnStop = Literal["cancel", "continue"]


class Watch:
    """The run *run_id* of a store at *url*, watched as a local agent (see the module).

    ``agentnb.redis.watch(...)`` makes one. Each call watches the run again, from
    after *after*. *name* is the local run's name (``watch`` by default); *block*
    and *reconnect* are the store's (see :class:`RedisStore`).
    """

    def __init__(
        self,
        run_id: str,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        after: int = -1,
        on_stop: OnStop = "cancel",
        name: str | None = None,
        block: float = 5.0,
        reconnect: float = 5.0,
    ) -> None:
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise ValueError(
                f"watch(run_id=...) is a run's id (letters, digits, - or _), got {run_id!r:.80}"
            )
        if isinstance(after, bool) or not isinstance(after, int) or after < -1:
            raise ValueError(f"watch(after=...) is a position or -1, got {after!r:.40}")
        if on_stop not in ("cancel", "continue"):
            raise ValueError(f'watch(on_stop=...) is "cancel" or "continue", got {on_stop!r:.40}')
        self.run_id = run_id
        self.url = url
        self.after = after
        self.on_stop: OnStop = on_stop
        self.block = block
        self.reconnect = reconnect
        self.__name__ = name or "watch"
        self.__doc__ = f"run {run_id} watched from Redis at {redact(url)}"

    def __repr__(self) -> str:
        return (
            f"watch({self.run_id!r}, {redact(self.url)!r}, after={self.after}, "
            f"on_stop={self.on_stop!r}, name={self.__name__!r})"
        )

    async def __call__(self) -> JSON:
        store = RedisStore(self.url, block=self.block, reconnect=self.reconnect)
        watching = _Watching(self, store, current_run())
        try:
            return await watching.follow()
        except asyncio.CancelledError:
            if not watching.ended and self.on_stop == "cancel":
                await watching.cancel_quietly()
            raise
        finally:
            await watching.aclose()


def watch(
    run_id: str,
    url: str = "redis://127.0.0.1:6379/0",
    *,
    after: int = -1,
    on_stop: OnStop = "cancel",
    name: str | None = None,
    block: float = 5.0,
    reconnect: float = 5.0,
) -> Watch:
    """The run *run_id* served with the Redis store at *url*, as a local agent that
    shows it live: ``await agentnb.notebook.show(watch(run_id, url))``, ``%agent w``.

    From the first event, or the events after position *after*. Its questions are
    answered from the cell; Stop cancels the run (*on_stop* ``"continue"``: it only
    stops watching). See :class:`Watch` and the module for the rest.
    """
    return Watch(
        run_id, url, after=after, on_stop=on_stop, name=name, block=block, reconnect=reconnect
    )


class _Watching:
    """One call of a :class:`Watch`: the store read, the local runs mirroring the run."""

    def __init__(self, watch: Watch, store: RedisStore, root: Run) -> None:
        self.watch = watch
        self.store = store
        self.root = root
        self.run_id = watch.run_id
        self.ended = False  # the watched run's terminal event was read
        self.live: dict[str, Mirror] = {}  # local mirrors of the sub-runs, by remote run id
        self.by_path: dict[tuple[str, ...], str] = {}
        self.sending: set[asyncio.Future[None]] = set()  # answers on their way
        self._control: Control | None = None

    # -- reading ----------------------------------------------------------------------

    async def follow(self) -> JSON:
        """Emit the run's events into the local runs; return or raise as it ended."""
        position = -1
        batches: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=2)
        reading = asyncio.get_running_loop().create_task(
            self._read(batches), name=f"agentnb.redis watch {self.run_id}"
        )
        try:
            while (batch := await batches.get()) is not None:
                if isinstance(batch, Exception):
                    raise batch
                first, frames = batch
                for position, frame in enumerate(frames, first):
                    event = self._event(frame, position)
                    if event.run_id == self.run_id and event.terminal:
                        self.ended = True
                        await self._end_children()
                        return _outcome(event)
                    await self._route(event)
        finally:
            await _stopped(reading)
        raise self.store.error(
            f"run {self.run_id}'s stream ended at position {position} without the run's end"
        )

    async def _read(self, batches: asyncio.Queue[_Batch]) -> None:
        """Put the run's frames into *batches*, then None (or the exception reading raised).

        In a task of its own: a task cancelled in a redis-py command can miss it (on
        Python 3.11, ``asyncio.wait_for`` loses a cancellation that comes as its inner
        future finishes), so the watch's run waits on the queue, never on Redis.
        """
        try:
            async with contextlib.aclosing(self._frames(self.watch.after)) as frames:
                async for batch in frames:
                    await batches.put(batch)
        except Exception as exc:
            await batches.put(exc)
        else:
            await batches.put(None)

    async def _frames(self, after: int) -> AsyncGenerator[tuple[int, list[bytes]], None]:
        """The frames after *after*, with the position of each batch's first."""
        await self._begun()
        position = after + 1
        async with contextlib.aclosing(self.store.read(self.run_id, after)) as batches:
            async for frames in batches:
                yield position, frames
                position += len(frames)
        if position == after + 1 and after >= 0:
            # Watching from the run's last frame on: only its end is left to show.
            async with contextlib.aclosing(self.store.read(self.run_id, after - 1)) as batches:
                async for frames in batches:
                    yield after, frames[:1]
                    return

    async def _begun(self) -> None:
        """Wait for the run's first frame while its record says it is starting; raise
        ``StreamMissing`` when it has no stream and none is coming."""
        while not await self.store.exists(self.run_id):
            record = await (await self._control_started(subscribe=False)).record(self.run_id)
            if record is None or record.get("status", "") in ENDED:
                key = self.store.key(self.run_id)
                raise StreamMissing(self.store.url, self.run_id, key)
            await self.store.wait_begun(self.run_id)

    def _event(self, frame: bytes, position: int) -> Event:
        """The event in the SSE *frame* at *position*; raises ``StoreError`` if it is not
        the run's event at that position."""
        fields: dict[bytes, list[bytes]] = {}
        for line in _LINE_END.split(frame):
            name, _, value = line.partition(b":")
            fields.setdefault(name, []).append(value.removeprefix(b" "))
        want = f"{self.run_id}:{position}".encode()
        if fields.get(b"id") != [want]:
            got = b", ".join(fields.get(b"id", [])) or b"none"
            raise self.store.error(
                f"run {self.run_id}'s frame at position {position} has the id {got[:80]!r}, "
                f"not {want.decode()}: it is not a frame the server wrote"
            )
        try:
            return Event.from_json(b"\n".join(fields.get(b"data", [])))
        except InvalidEvent as exc:
            raise self.store.error(
                f"run {self.run_id}'s frame at position {position} is not an event: {exc}"
            ) from None

    # -- mirroring --------------------------------------------------------------------

    async def _route(self, event: Event) -> None:
        if event.run_id == self.run_id:
            self._emit(self.root, event)
            return
        mirror = self.live.get(event.run_id) or self._open(event)
        if not event.terminal:
            self._emit(mirror.run, event)
            return
        del self.live[event.run_id]
        try:
            result = _outcome(event, sub_run=True)
        except BaseException as exc:  # the sub-run's end, passed on
            mirror.end(error=exc)
        else:
            mirror.end(result)
        await mirror.ended()

    def _open(self, event: Event) -> Mirror:
        """A local sub-run for the remote sub-run of *event*, under the deepest one open
        on its path (a watch from a position may not have seen its parent begin)."""
        parent: Mirror | None = None
        for depth in range(len(event.path) - 1, 0, -1):
            parent = self.live.get(self.by_path.get(tuple(event.path[:depth]), ""))
            if parent is not None:
                break
        name = event.path[-1] if event.path else "sub-run"
        mirror = parent.child(name) if parent is not None else Mirror(self.root, name)
        self.live[event.run_id] = mirror
        self.by_path[tuple(event.path)] = event.run_id
        return mirror

    def _emit(self, run: Run, event: Event) -> None:
        local = _local_copy(event)
        if isinstance(local, Ask):
            self._asked(run, local)
        elif isinstance(local, Answer):
            settled(run, local.ask_id)
        run.emit(local)

    async def _end_children(self) -> None:
        """End the local sub-runs the stream never ended (the deepest first)."""
        for run_id in reversed(list(self.live)):
            mirror = self.live.pop(run_id)
            mirror.end(error=asyncio.CancelledError("the run ended before this sub-run"))
            await mirror.ended()

    # -- questions --------------------------------------------------------------------

    def _asked(self, run: Run, question: Ask) -> None:
        """Make the question answerable here when a local front end takes answers."""
        if not answerable(run):
            return  # shown only: the run's own answerers (its page, its API) answer it
        pending: list[Pending] = []
        loop = asyncio.get_running_loop()

        def forward(value: str, by: str) -> None:  # on the answering thread (by: checked)
            loop.call_soon_threadsafe(self._send, question.ask_id, value, by, pending[0])

        pending.append(expect(run, question, forward))

    def _send(self, ask_id: str, value: str, by: str, pending: Pending) -> None:
        task = asyncio.ensure_future(self._answer(ask_id, value, by, pending))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _answer(self, ask_id: str, value: str, by: str, pending: Pending) -> None:
        fields = {"ask_id": ask_id, "value": value, "by": by}
        try:
            reply = await self._to_owner("answer", fields)
        except StoreError as exc:
            reply = (503, {"error": "store_unavailable", "message": str(exc)})
        if reply is not None and reply[0] == 200:
            return
        status, body = reply if reply is not None else (0, {"message": "its process is gone"})
        message = body.get("message") if isinstance(body, Mapping) else body
        if status != 409:  # 409: answered elsewhere first (the race lost), or ended
            reopen(pending)
        _log.warning(
            "the answer %r to question %s of run %s was not taken: %s",
            value,
            ask_id,
            self.run_id,
            message,
        )

    # -- the owner --------------------------------------------------------------------

    async def _control_started(self, *, subscribe: bool = True) -> Control:
        """The control channel's client (subscribed, to get replies, when *subscribe*)."""
        if self._control is None:
            self._control = Control(self.store, _refuse)
        if subscribe:
            await self._control.start()
        return self._control

    async def _to_owner(self, op: str, fields: Mapping[str, Any] | None = None) -> Reply | None:
        """Send *op* to the process running the run; its reply (None: nobody runs it)."""
        control = await self._control_started()
        record = await control.record(self.run_id)
        if record is None or record.get("status", "") in ENDED:
            return None
        owner = record.get("owner", "")
        if not owner and op == "cancel":  # queued for a worker: flag it
            owner = await control.cancel_queued(self.run_id)
        if not owner:
            return None
        return await control.request(owner, op, self.run_id, fields)

    async def cancel_quietly(self) -> None:
        """Cancel the watched run (the watch was stopped); best effort, bounded."""
        request = asyncio.ensure_future(self._cancel_within(CANCEL_WITHIN))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(request)

    async def _cancel_within(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                reply = await self._to_owner("cancel")
        except (StoreError, TimeoutError) as exc:
            _log.warning("run %s was not cancelled: %s", self.run_id, exc)
            return
        if reply is not None and reply[0] != 200:
            _log.warning("run %s was not cancelled: %s", self.run_id, reply[1])

    async def aclose(self) -> None:
        for task in list(self.sending):
            task.cancel()
        if self.sending:
            await asyncio.gather(*self.sending, return_exceptions=True)
        if self._control is not None:
            await self._control.aclose()
        await self.store.aclose()


_Batch = tuple[int, list[bytes]] | Exception | None  # frames from a position; how reading ended


async def _stopped(task: asyncio.Task[None]) -> None:
    """Cancel *task* until it has ended (a cancellation it missed is sent again)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=_RECANCEL)
    if not task.cancelled():
        task.exception()  # seen (it was put in the queue)


def _refuse(op: str, run_id: str, fields: Mapping[str, Any]) -> Reply:
    """A watch holds no runs: what a request sent to it gets."""
    return 404, {"error": "unknown_run", "message": f"run {run_id} is not run here"}


def _outcome(event: Event, *, sub_run: bool = False) -> JSON:
    """Return or raise as the watched run (or a sub-run) ended: its terminal *event*."""
    if isinstance(event, Done):
        return event.result
    if isinstance(event, Error):
        raise RemoteError(event.type, event.message, event.traceback)
    assert isinstance(event, Cancelled)
    if sub_run:
        raise asyncio.CancelledError(event.reason)
    raise asyncio.CancelledError(f"the watched run was cancelled: {event.reason}".rstrip(": "))
