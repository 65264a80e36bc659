"""Code in other processes emitting into a run: a handle that pickles, and ``attach``.

In the run (a notebook cell, an agent), on the run's loop::

    handle = agentnb.redis.share("redis://127.0.0.1:6379/0")
    futures = client.map(work, items, handle=handle)   # Dask, multiprocessing, a subprocess
    ...
    await handle.wait()                                 # every attached block has ended

In the other process, in a thread or on a loop::

    def work(item, handle):
        block = agentnb.redis.attach(handle)
        with block:                                      # or: async with attach(handle)
            agentnb.emit(f"working on {item}")
            if block.approve("delete", {"item": item}):  # async: await agentnb.approve(...)
                ...

Each ``attach`` block is a run of its own in its process (``emit`` finds it; sub-runs
started in it are its sub-runs) whose events go, in order, to a Redis stream of
its own; it ends with exactly one terminal event: done, error with the exception
the block raised, or cancelled. In the sharing process a reader task turns each
attached block into a child run of the run that shared the handle (named after
the block: the ``name`` given, else the Dask worker's name, else ``host:pid``),
whose agent emits the block's events live and in order, its sub-runs as
``Mirror`` sub-runs, and ends as the block ended. Every sink of the run (the
cell's view) shows them like any sub-run.

**Questions.** ``agentnb.ask`` / ``approve`` in a block (``await`` them in the async
form; ``block.ask`` / ``block.approve`` in the sync form) is a question of the
block's child run: whatever answers the sharing run (the cell's view, a served
run, ``Run.answer``) answers it, the answer goes to the block, and its ``ask``
returns it. A block asks only where the sharing run can be answered (the handle
says whether a sink of it takes answers); elsewhere the question takes its
default at once, as in any headless run. A timeout is the block's own. An answer
the sharing run refuses (unknown question, not a choice, the block ended) is not
sent; a question stays open across ``idle`` (a block waiting for an answer is not
silent).

**Stop.** Cancelling a block's child run (the cell's Stop, the sharing run ending
without waiting for it) tells the block: its run ends cancelled at once (an async
block's task gets ``CancelledError`` and the ``async with`` raises
``agentnb.RunCancelled``; a sync block's next emit raises ``RunClosed`` and the
``with`` raises ``RunCancelled``), and the child run reads the block's stream to
its end, so it ends as the block did (a block that had already finished: done,
its events all shown) after at most ``CANCEL_GRACE`` seconds. Cancelling a block
that has ended does nothing.

**Keys.** A share is a stream ``agentnb:share:<share id>`` (its index): an attaching
block first writes its own stream (``agentnb:share:<share id>:<block id>``, written
by a :class:`~agentnb.redis.RunWriter`: a header frame, then each event's JSON
form, the terminal one marked ``end``), then announces it in the index. The
sharing process tells a block what to do in its control stream
(``agentnb:share:<share id>:<block id>:control``: ``cancel`` and ``answer``
entries), which the block reads with ``XREAD BLOCK`` on its loop. They expire like
a store's runs (``idle_ttl`` while written, ``ttl`` after the end; a control
stream ``ttl`` after its last entry).

**The end.** ``await handle.wait()`` (in the sharing process) closes the share: a
``closed`` entry goes into the index, so a block that announces itself after it
raises :class:`ShareClosed` in its process, and every block announced before it
is waited for. The child runs are ordinary children: a run that ends without
waiting for them cancels those still open (see Stop), then closes the share and
tells a block it never opened (announced as the run ended) to stop. A block that
stops writing (its process killed, a hang) is ended with :class:`RemoteLost`
after ``idle`` seconds without an event (``share(url, idle=...)``, 300 s by
default).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, cast

from redis.exceptions import RedisError

from .._ask import Pending, answerable, approve, ask, expect, reopen, settled
from .._events import Answer, Ask, Cancelled, Custom, Done, Error, Event
from .._exceptions import AgentnbError, InvalidAnswer, RunCancelled, RunClosed
from .._mirror import Mirror, ended
from .._run import Run, current_run, reset_current, set_current, start
from ._store import RedisStore, StoreError, redact

__all__ = ["Attach", "Handle", "RemoteError", "RemoteLost", "ShareClosed", "attach", "share"]

_log = logging.getLogger("agentnb")

SHARE_PREFIX = "agentnb:share:"
IDLE = 300.0
"""Seconds an attached block may go without writing before its child run is ended."""
CANCEL_GRACE = 5.0
"""Seconds a cancelled block's child run waits for the block's end (a live block's comes
in milliseconds; a block that does not answer is ended cancelled then)."""
_INDEX_BLOCK = 1.0  # seconds per XREAD BLOCK of the index (a close is read at once anyway)
_CONTROL_BLOCK = 1.0  # seconds per XREAD BLOCK of a block's control stream
_CONTROL_PAUSE = 0.1  # seconds between reads of a control stream while Redis fails

T = TypeVar("T")


class RemoteError(AgentnbError):
    """An attached block raised: ``type`` is its exception's class name, ``traceback`` its text."""

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback
        if traceback:
            self.add_note(f"The remote traceback:\n{traceback.rstrip()}")

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return (RemoteError, (self.type, self.message, self.traceback))


class RemoteLost(AgentnbError):
    """An attached block wrote nothing for ``idle`` seconds (its process died, or it hangs)."""


class ShareClosed(AgentnbError):
    """``attach`` to a share whose run has stopped waiting for attached blocks."""


for _cls in (RemoteError, RemoteLost, ShareClosed):
    _cls.__module__ = "agentnb.redis"  # what tracebacks show: the public name


@dataclass(frozen=True)
class Handle:
    """Where attached blocks send their events: pickles, so it can go to any process.

    ``url`` (the Redis URL, password included: treat a handle as a secret when the
    URL has one), ``share_id``, ``path`` (the sharing run's path), ``name`` (the child
    runs' name, if given to ``share``), ``answers`` (whether the sharing run takes
    answers, so a block's question waits for one). ``await handle.wait()`` works only
    in the process that shared it.
    """

    url: str = field(repr=False)
    share_id: str
    path: tuple[str, ...]
    name: str | None = None
    answers: bool = False

    def __repr__(self) -> str:
        return f"Handle(url={redact(self.url)!r}, share_id={self.share_id!r}, path={self.path!r})"

    @property
    def key(self) -> str:
        """The share's index stream."""
        return SHARE_PREFIX + self.share_id

    @property
    def prefix(self) -> str:
        """The prefix of the attached blocks' streams (a store's ``prefix``)."""
        return f"{self.key}:"

    def control_key(self, block_id: str) -> str:
        """The stream through which the sharing process tells block *block_id* to stop, or
        answers its questions."""
        return f"{self.prefix}{block_id}:control"

    @property
    def children(self) -> list[Run]:
        """The child runs of the blocks attached so far, in the order they attached (in the
        process that shared the handle, while its run lives; elsewhere none). Cancelling
        one stops its block."""
        sharing = _shares.get(self.share_id)
        return list(sharing.children) if sharing is not None else []

    async def wait(self) -> list[Run]:
        """Close the share and wait until every block attached to it has ended and its
        events are in the run; the child runs, in the order they attached (each one's
        ``status``, ``result`` and ``exception`` say how it ended).

        Only in the process that shared the handle, on its run's loop.
        """
        sharing = _shares.get(self.share_id)
        if sharing is None:
            raise RuntimeError(
                f"share {self.share_id} is not open in this process: wait() for it where "
                "agentnb.redis.share() made it, before its run ends"
            )
        return await sharing.close()


# -- the sharing process ------------------------------------------------------------------

_shares: dict[str, _Sharing] = {}  # the live shares made in this process, by id


def share(
    url: str = "redis://127.0.0.1:6379/0", *, name: str | None = None, idle: float = IDLE
) -> Handle:
    """A handle through which code in other processes emits into the current run.

    Call it inside a run, on its loop. Each ``attach(handle)`` block becomes a child
    run of this run (named *name*, or after the block's process); one that writes
    nothing for *idle* seconds (while no question of it is open) is ended with
    :class:`RemoteLost`. ``await handle.wait()`` waits for them (see the module).
    """
    if idle <= 0:
        raise ValueError(f"idle must be positive, got {idle}")
    run = current_run()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "agentnb.redis.share() must be called on the run's event loop (in async code)"
        ) from None
    handle = Handle(url, os.urandom(8).hex(), run.path, name, answerable(run))
    sharing = _Sharing(run, handle, idle, loop)
    _shares[handle.share_id] = sharing
    return handle


class _Sharing:
    """The reader of one share: opens a child run per announced block, which follows it."""

    def __init__(
        self, run: Run, handle: Handle, idle: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.run = run
        self.handle = handle
        self.idle = idle
        self.store = RedisStore(handle.url, prefix=handle.prefix, block=min(idle, 5.0))
        self.children: list[Run] = []
        self.opened: set[str] = set()  # the blocks (by id) this share has read in its index
        self.sending: set[asyncio.Future[None]] = set()  # answers on their way to blocks
        self.closing = False
        self.task = loop.create_task(self._serve(), name=f"agentnb.redis share {handle.share_id}")
        run.add_done_callback(self._run_ended)

    async def _serve(self) -> None:
        redis, key = self.store.redis, self.handle.key
        last = "0-0"
        while True:
            xread = redis.xread({key: last}, count=100, block=int(_INDEX_BLOCK * 1000))
            try:
                got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], await xread)
            except RedisError as exc:
                raise self.store.error(f"reading share {self.handle.share_id}: {exc}") from exc
            for entry_id, fields in got[0][1] if got else []:
                last = entry_id.decode()
                if b"closed" in fields:
                    return
                block_id = fields[b"block"].decode()
                await self._open(block_id, self.handle.name or fields[b"name"].decode())

    async def _open(self, block_id: str, name: str) -> None:
        """A child run following the block; a block announced as the run ended is told to stop."""
        self.opened.add(block_id)
        try:
            child = self.run.start_child(self._follow, block_id, name=name)
        except RunClosed:
            await self._stop_quietly(block_id, f"run {self.run.name} has ended")
            return
        self.children.append(child)

    async def _follow(self, block_id: str) -> Any:
        """The agent of a block's child run: the block's events emitted into it; it returns,
        raises or is cancelled as the block ended. Cancelled, it tells the block to stop and
        goes on reading until the block's end (``CANCEL_GRACE`` seconds at most)."""
        run = current_run()
        tree = _Tree(self, run, block_id)
        reading = asyncio.ensure_future(self._read(block_id, tree))
        try:
            try:
                end = await asyncio.shield(reading)
            except asyncio.CancelledError as exc:
                if reading.done() and not reading.cancelled() and reading.exception() is None:
                    end = reading.result()  # the block's end had come: it stands
                else:
                    reason = str(exc.args[0]) if exc.args else ""
                    me = asyncio.current_task()
                    assert me is not None
                    me.uncancel()  # a second cancel still cuts the grace short
                    await self._stop_quietly(block_id, reason)
                    try:
                        async with asyncio.timeout(min(self.idle, CANCEL_GRACE)):
                            end = await asyncio.shield(reading)
                    except TimeoutError:
                        raise asyncio.CancelledError(reason) from None
        finally:
            if not reading.done():
                reading.cancel()
                await asyncio.wait([reading])
            await tree.end_children()
        return _outcome(end)

    async def _read(self, block_id: str, tree: _Tree) -> Event:
        """Emit the block's events into *tree* until its terminal event, which it returns."""
        name = tree.root.name
        async with aclosing(self.store.read(block_id)) as batches:
            while True:
                try:
                    async with asyncio.timeout(None if tree.asking else self.idle):
                        batch = await anext(batches)
                except StopAsyncIteration:
                    raise RemoteLost(f"{name}'s stream ended without its end") from None
                except TimeoutError:
                    raise RemoteLost(f"no event from {name} for {self.idle} s") from None
                for frame in batch:
                    end = await tree.take(frame)
                    if end is not None:
                        return end

    # -- telling blocks ---------------------------------------------------------------

    async def tell(self, block_id: str, fields: Mapping[str, str]) -> None:
        """Add *fields* to block *block_id*'s control stream."""
        key = self.handle.control_key(block_id)
        pipe = self.store.redis.pipeline(transaction=True)
        entry: dict[Any, Any] = dict(fields)
        pipe.xadd(key, entry)
        pipe.pexpire(key, int(self.store.ttl * 1000))
        try:
            await pipe.execute()
        except RedisError as exc:
            raise self.store.error(f"telling block {block_id}: {exc}") from exc

    async def _stop_quietly(self, block_id: str, reason: str) -> None:
        try:
            await self.tell(block_id, {"cancel": reason})
        except StoreError as exc:
            _log.warning("could not tell the attached block %s to stop: %s", block_id, exc)

    def expect(self, run: Run, question: Ask, block_id: str) -> None:
        """Make the block's *question*, shown in *run*, answerable here: an answer accepted
        for it goes to the block."""
        loop = asyncio.get_running_loop()
        pending: list[Pending] = []

        def forward(value: str, by: str) -> None:  # on the answering thread
            loop.call_soon_threadsafe(self._send, block_id, question.ask_id, value, by, pending[0])

        pending.append(expect(run, question, forward))

    def _send(self, block_id: str, ask_id: str, value: str, by: str, pending: Pending) -> None:
        task = asyncio.ensure_future(self._answer(block_id, ask_id, value, by, pending))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _answer(
        self, block_id: str, ask_id: str, value: str, by: str, pending: Pending
    ) -> None:
        try:
            await self.tell(block_id, {"answer": ask_id, "value": value, "by": by})
        except StoreError as exc:  # the question stays open here: it can be answered again
            reopen(pending)
            _log.warning("the answer %r to question %s was not sent: %s", value, ask_id, exc)

    # -- the end ----------------------------------------------------------------------

    async def close(self) -> list[Run]:
        """Write ``closed`` into the index, open every block announced before it, wait."""
        if not self.closing:
            self.closing = True
            await self._close_index()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for child in list(self.children):
            await ended(child)
        await self._forget()
        return list(self.children)

    async def _close_index(self) -> list[str]:
        """Write ``closed``; the blocks announced before it."""
        pipe = self.store.redis.pipeline(transaction=True)
        pipe.xadd(self.handle.key, {"closed": b"1"})
        pipe.pexpire(self.handle.key, int(self.store.ttl * 1000))
        pipe.xrange(self.handle.key, "-", "+")
        try:
            _, _, entries = await pipe.execute()
        except RedisError as exc:
            raise self.store.error(f"closing share {self.handle.share_id}: {exc}") from exc
        announced = []
        for _, fields in entries:
            if b"closed" in fields:
                break
            announced.append(fields[b"block"].decode())
        return announced

    def _run_ended(self, _run: Run) -> None:
        """The sharing run ended (its children, cancelled if still open, first)."""
        self.closing = True
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # seen: the children it opened have ended with it
        self.task.cancel()
        task = asyncio.ensure_future(self._wind_up())
        task.set_name(f"agentnb.redis closing share {self.handle.share_id}")
        _forgetting.add(task)
        task.add_done_callback(_forgetting.discard)

    async def _wind_up(self) -> None:
        """Close the index (a later ``attach`` is refused) and tell the blocks announced
        but never opened to stop."""
        if _shares.get(self.handle.share_id) is not self:
            return  # wait() closed it
        try:
            for block_id in await self._close_index():
                if block_id not in self.opened:
                    await self.tell(block_id, {"cancel": f"run {self.run.name} has ended"})
        except StoreError as exc:
            _log.warning("closing share %s: %s", self.handle.share_id, exc)
        finally:
            await self._forget()

    async def _forget(self) -> None:
        if _shares.get(self.handle.share_id) is self:
            del _shares[self.handle.share_id]
            await self.store.aclose()


_forgetting: set[asyncio.Future[None]] = set()  # shares closing after their run ended


class _Tree:
    """The local runs that show one block's run (*root*) and its sub-runs (by run id)."""

    def __init__(self, sharing: _Sharing, root: Run, block_id: str) -> None:
        self.sharing = sharing
        self.root = root
        self.block_id = block_id
        self.root_id: str | None = None  # the block's run id, from its header
        self.live: dict[str, Mirror] = {}
        self.by_path: dict[tuple[str, ...], str] = {}
        self.asking: dict[str, str] = {}  # the block's open questions: ask id -> run id

    async def take(self, frame: bytes) -> Event | None:
        """Emit the event in *frame* into its run; a sub-run's terminal event ends its
        mirror, and the next event waits for that end (so every sink sees the block's
        order). The block's own terminal event is returned, not emitted."""
        if self.root_id is None:
            self.root_id = json.loads(frame)["run_id"]
            return None
        event = Event.from_json(frame)
        if event.run_id == self.root_id:
            if event.terminal:
                await self.end_children()
                return event
            self._emit(self.root, event)
            return None
        sub = self.live.get(event.run_id) or self._open(event)
        if event.terminal:
            del self.live[event.run_id]
            self._forget_questions(event.run_id)
            _end(sub, event)
            await sub.ended()
        else:
            self._emit(sub.run, event)
        return None

    def _emit(self, run: Run, event: Event) -> None:
        local = _local_copy(event)
        if isinstance(local, Ask):
            self.asking[local.ask_id] = event.run_id
            self.sharing.expect(run, local, self.block_id)  # before the event: see _ask
        elif isinstance(local, Answer):
            self.asking.pop(local.ask_id, None)
            settled(run, local.ask_id)
        run.emit(local)

    def _forget_questions(self, run_id: str) -> None:
        """A sub-run ended: its questions left open (its wait cancelled) are over."""
        for ask_id in [a for a, r in self.asking.items() if r == run_id]:
            del self.asking[ask_id]

    def _open(self, event: Event) -> Mirror:
        parent = self.live.get(self.by_path.get(tuple(event.path[:-1]), ""))
        name = event.path[-1] if event.path else "sub-run"
        sub = parent.child(name) if parent is not None else Mirror(self.root, name)
        self.live[event.run_id] = sub
        self.by_path[tuple(event.path)] = event.run_id
        return sub

    async def end_children(self) -> None:
        """End the sub-runs the block never ended (the deepest first)."""
        for run_id in reversed(list(self.live)):
            sub = self.live.pop(run_id)
            sub.end(error=asyncio.CancelledError("the block ended first"))
            await sub.ended()


def _end(mirror: Mirror, event: Event) -> None:
    try:
        mirror.end(_outcome(event))
    except BaseException as exc:  # the sub-run's end, passed on
        mirror.end(error=exc)


def _outcome(event: Event) -> Any:
    """Return or raise as the block's run (or a sub-run) ended: its terminal *event*."""
    if isinstance(event, Done):
        return event.result
    if isinstance(event, Error):
        raise RemoteError(event.type, event.message, event.traceback)
    assert isinstance(event, Cancelled)
    raise asyncio.CancelledError(event.reason)


def _local_copy(event: Event) -> Event:
    """The event unstamped, to be emitted (and stamped) in the local run."""
    if isinstance(event, Custom):
        return Custom(event.name, event.data)
    make: Callable[..., Event] = type(event)
    return make(**event.payload())


# -- the attaching process ----------------------------------------------------------------


def _default_name() -> str:
    """The Dask worker's name when in one, else ``host:pid``."""
    if "distributed" in sys.modules:
        with contextlib.suppress(Exception):
            from distributed import get_worker

            return str(get_worker().name)
    return f"{socket.gethostname()}:{os.getpid()}"


class _Frames:
    """An inline sink writing a block's events (its sub-runs' too) to its stream; it takes
    answers where the sharing run does."""

    inline = True

    def __init__(self, block: _Block) -> None:
        self.block = block
        self.answers = block.handle.answers

    def send(self, event: Event) -> None:
        last = event.terminal and event.run_id == self.block.run_id
        self.block.writer.append(event.to_json().encode(), last=last)


async def _until(outcome: asyncio.Future[Any]) -> Any:
    return await outcome


class _Block:
    """One attached block, on the loop it was opened on: its store, writer, run, and the
    task reading what the sharing process tells it."""

    def __init__(self, handle: Handle, name: str | None) -> None:
        self.handle = handle
        self.name = name or _default_name()
        self.block_id = os.urandom(8).hex()
        self.run_id = ""
        self.task: asyncio.Task[Any] | None = None  # the async form's task, inside the block
        self.stopped: str | None = None  # the reason the sharing process gave, once told
        self.cancelled_task = False  # the async form's task was cancelled for it
        self.asking: set[asyncio.Future[Any]] = set()  # the sync form's questions

    async def open(self) -> Run:
        handle = self.handle
        self.store = store = RedisStore(handle.url, prefix=handle.prefix)
        try:
            self.writer = store.writer(self.block_id)
            self.outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            # A run of its own (not a child of any run around it), feeding the stream.
            empty = contextvars.Context()
            self.run = empty.run(start, _until, self.outcome, sink=_Frames(self), name=self.name)
            self.run_id = self.run.id
            header = {"run_id": self.run.id, "name": self.name, "pid": os.getpid()}
            self.writer.append(json.dumps(header).encode())
            await self.writer.flush()
            await self._announce()
        except BaseException:
            if hasattr(self, "run"):
                self.run.cancel("attach failed")
                await _settled(self.run)
            with contextlib.suppress(StoreError):  # Redis down: the error raised says so
                await store.delete(self.block_id)
            await store.aclose()
            raise
        self.listening = asyncio.get_running_loop().create_task(
            self._listen(), name=f"agentnb.redis control {self.block_id}"
        )
        return self.run

    async def _announce(self) -> None:
        """Add the block to the share's index, unless the share was closed before."""
        key, store = self.handle.key, self.store
        pipe = store.redis.pipeline(transaction=True)
        pipe.xadd(key, {"block": self.block_id, "name": self.name})
        pipe.pexpire(key, int(store.idle_ttl * 1000))
        pipe.xrange(key, "-", "+")
        try:
            mine, _, entries = await pipe.execute()
        except RedisError as exc:
            raise store.error(f"attaching to share {self.handle.share_id}: {exc}") from exc
        for entry_id, fields in entries:
            if entry_id == mine:
                return
            if b"closed" in fields:
                break
        raise ShareClosed(
            f"share {self.handle.share_id} of run {'/'.join(self.handle.path)} is closed: "
            "its run stopped waiting for attached blocks"
        )

    async def _listen(self) -> None:
        """Read the block's control stream until the block closes: stop, answers."""
        redis, key = self.store.redis, self.handle.control_key(self.block_id)
        last = "0-0"
        while True:
            xread = redis.xread({key: last}, count=100, block=int(_CONTROL_BLOCK * 1000))
            try:
                got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], await xread)
            except RedisError:  # the writer reports Redis failing; this one tries again
                await asyncio.sleep(_CONTROL_PAUSE)
                continue
            for entry_id, fields in got[0][1] if got else []:
                last = entry_id.decode()
                self._told({k.decode(): v.decode(errors="replace") for k, v in fields.items()})

    def _told(self, fields: dict[str, str]) -> None:
        if "cancel" in fields:
            self.stop(fields["cancel"])
        elif "answer" in fields:
            try:
                self.run.answer(fields["answer"], fields.get("value", ""), by=fields.get("by", ""))
            except InvalidAnswer as exc:  # answered meanwhile (its timeout), or ended
                _log.info("an answer to block %s was not taken: %s", self.name, exc)

    def stop(self, reason: str) -> None:
        """Cancel the block's run (told by the sharing process); nothing once it has ended."""
        if self.stopped is not None or self.run.done:
            return
        self.stopped = reason
        self.run.cancel(reason)
        for question in self.asking:
            question.cancel(reason)
        if self.task is not None:
            self.cancelled_task = True
            self.task.cancel(reason)

    async def in_run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* (the sync form's question) with the block's run current."""
        token = set_current(self.run)
        me = asyncio.ensure_future(coroutine)
        self.asking.add(me)
        try:
            return await me
        finally:
            self.asking.discard(me)
            reset_current(token)

    async def close(self, error: BaseException | None) -> None:
        """End the run (done, or the block's *error*) and wait until its end is in Redis."""
        self.task = None
        if not self.outcome.done():
            if error is None:
                self.outcome.set_result(None)
            else:
                self.outcome.set_exception(error)
        try:
            await _settled(self.run)
            await self.writer.aclose()
        finally:
            self.listening.cancel()
            await asyncio.wait([self.listening])
            await self.store.aclose()

    def cancelled(self, exc: BaseException | None) -> RunCancelled | None:
        """What the block raises when it was stopped and *exc* says so."""
        if self.stopped is None:
            return None
        if isinstance(exc, RunClosed) and exc.run_id == self.run_id:
            return RunCancelled(self.run_id, self.stopped)
        if isinstance(exc, asyncio.CancelledError) and self.cancelled_task:
            return RunCancelled(self.run_id, self.stopped)
        return None


async def _settled(run: Run) -> None:
    with contextlib.suppress(BaseException):
        await run.wait()


def attach(handle: Handle, *, name: str | None = None) -> Attach:
    """``with attach(handle):`` or ``async with attach(handle):``: see :class:`Attach`."""
    return Attach(handle, name=name)


class Attach:
    """``with attach(handle):`` (or ``async with``): a run whose events go to the run that
    shared *handle* (see the module); it is the block's ``agentnb.current_run()``.

    *name*: the child run's name there (default: the share's name, else the Dask
    worker's, else ``host:pid``). The sync form runs the block's run on a loop in a
    thread of its own, so it works in any thread; the async form on the running loop.
    Raises :class:`ShareClosed` when the share was closed, :class:`StoreError` when
    Redis fails (also at the end, if the events could not all be written), and
    ``agentnb.RunCancelled`` when the sharing process stopped the block.
    """

    def __init__(self, handle: Handle, *, name: str | None = None) -> None:
        if not isinstance(handle, Handle):
            raise TypeError(
                f"attach() takes the Handle agentnb.redis.share() made, got {type(handle).__name__}"
            )
        self._block = _Block(handle, name)
        self._token: contextvars.Token[Run | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- sync -----------------------------------------------------------------------

    def __enter__(self) -> Run:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="agentnb.redis attach", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            run: Run = self._call(self._block.open())
        except BaseException:
            self._stop()
            raise
        self._token = set_current(run)
        return run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            reset_current(self._token)
            self._token = None
        try:
            self._call(self._block.close(exc))
        finally:
            self._stop()
        stopped = self._block.cancelled(exc)
        if stopped is not None:
            raise stopped from exc

    def ask(
        self,
        prompt: str,
        *,
        choices: Sequence[str] | None = None,
        default: str | None = None,
        timeout: float | None = None,
        call_id: str = "",
    ) -> str:
        """``agentnb.ask`` in the sync form's block: waits for the answer (see the module).

        Raises ``agentnb.RunCancelled`` when the block was stopped meanwhile.
        """
        return self._asking(
            ask(prompt, choices=choices, default=default, timeout=timeout, call_id=call_id)
        )

    def approve(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        call_id: str = "",
        default: bool | None = None,
        timeout: float | None = None,
    ) -> bool:
        """``agentnb.approve`` in the sync form's block: True if the call may run."""
        return self._asking(
            approve(tool, arguments, call_id=call_id, default=default, timeout=timeout)
        )

    def _asking(self, question: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or self._token is None:
            question.close()
            raise RuntimeError(
                "block.ask() and block.approve() work inside `with attach(handle)`; in "
                "`async with attach(handle)`, await agentnb.ask() or agentnb.approve()"
            )
        try:
            return cast(T, self._call(self._block.in_run(question)))
        except concurrent.futures.CancelledError:
            raise RunCancelled(self._block.run_id, self._block.stopped or "") from None

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        self._loop = self._thread = None

    # -- async ----------------------------------------------------------------------

    async def __aenter__(self) -> Run:
        run = await self._block.open()
        self._block.task = asyncio.current_task()  # no await since open(): no stop missed
        self._token = set_current(run)
        return run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        block = self._block
        task, block.task = block.task, None  # no stop cancels it from here on
        if self._token is not None:
            reset_current(self._token)
            self._token = None
        outside = 0  # cancels of this task from elsewhere, still due
        if block.cancelled_task and task is not None:
            outside = task.uncancel()
        await block.close(exc)
        stopped = block.cancelled(exc)
        if stopped is not None and outside == 0:
            raise stopped from None
