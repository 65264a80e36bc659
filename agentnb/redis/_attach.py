"""Code in other processes emitting into a run: a handle that pickles, and ``attach``.

In the run (a notebook cell, an agent), on the run's loop::

    handle = agentnb.redis.share("redis://127.0.0.1:6379/0")
    futures = client.map(work, items, handle=handle)   # Dask, multiprocessing, a subprocess
    ...
    await handle.wait()                                 # every attached block has ended

In the other process, in a thread or on a loop::

    def work(item, handle):
        with agentnb.redis.attach(handle):               # or: async with attach(handle)
            agentnb.emit(f"working on {item}")

Each ``attach`` block is a run of its own in its process (``emit`` finds it; sub-runs
started in it are its sub-runs) whose events go, in order, to a Redis stream of
its own; it ends with exactly one terminal event: done, or error with the
exception the block raised (a cancelled async block: cancelled). In the sharing
process a reader task turns each attached block into a child run of the run that
shared the handle (a ``Mirror`` named after the block: the ``name`` given, else
the Dask worker's name, else ``host:pid``), emitting its events live and in
order, its sub-runs as sub-runs, and ending it as the block ended. Every sink of
the run (the cell's view) shows them like any sub-run.

**Keys.** A share is a stream ``agentnb:share:<share id>`` (its index): an attaching
block first writes its own stream (``agentnb:share:<share id>:<block id>``, written
by a :class:`~agentnb.redis.RunWriter`: a header frame, then each event's JSON
form, the terminal one marked ``end``), then announces it in the index. Both
expire like a store's runs (``idle_ttl`` while written, ``ttl`` after the end).

**The end.** ``await handle.wait()`` (in the sharing process) closes the share: a
``closed`` entry goes into the index, so a block that announces itself after it
raises :class:`ShareClosed` in its process, and every block announced before it
is waited for. The child runs are ordinary children: a run that ends without
waiting for them cancels those still open. A block that stops writing (its
process killed, a hang) is ended with :class:`RemoteLost` after ``idle``
seconds without an event (``share(url, idle=...)``, 300 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from redis.exceptions import RedisError

from .._events import Cancelled, Custom, Done, Error, Event
from .._exceptions import AgentnbError, RunClosed
from .._mirror import Mirror
from .._run import Run, current_run, reset_current, set_current, start
from ._store import Expired, RedisStore, StoreError, redact

__all__ = ["Attach", "Handle", "RemoteError", "RemoteLost", "ShareClosed", "attach", "share"]

SHARE_PREFIX = "agentnb:share:"
IDLE = 300.0
"""Seconds an attached block may go without writing before its child run is ended."""
_INDEX_BLOCK = 1.0  # seconds per XREAD BLOCK of the index (a close is read at once anyway)


class RemoteError(AgentnbError):
    """An attached block raised: ``type`` is its exception's class name, ``traceback`` its text."""

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback
        if traceback:
            self.add_note(f"The remote traceback:\n{traceback.rstrip()}")


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
    runs' name, if given to ``share``). ``await handle.wait()`` works only in the
    process that shared it.
    """

    url: str = field(repr=False)
    share_id: str
    path: tuple[str, ...]
    name: str | None = None

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
    nothing for *idle* seconds is ended with :class:`RemoteLost`. ``await
    handle.wait()`` waits for them (see the module).
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
    handle = Handle(url, os.urandom(8).hex(), run.path, name)
    sharing = _Sharing(run, handle, idle, loop)
    _shares[handle.share_id] = sharing
    return handle


class _Sharing:
    """The reader of one share: opens a child run per announced block and follows it."""

    def __init__(
        self, run: Run, handle: Handle, idle: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.run = run
        self.handle = handle
        self.idle = idle
        self.store = RedisStore(handle.url, prefix=handle.prefix, block=min(idle, 5.0))
        self.children: list[Run] = []
        self.following: list[asyncio.Task[None]] = []
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
                name = self.handle.name or fields[b"name"].decode()
                mirror = Mirror(self.run, name)
                self.children.append(mirror.run)
                task = asyncio.create_task(
                    self._follow(block_id, mirror), name=f"agentnb.redis block {name}"
                )
                self.following.append(task)

    async def _follow(self, block_id: str, mirror: Mirror) -> None:
        """Emit the block's events into *mirror* (its sub-runs' into sub-mirrors) and end it."""
        tree = _Tree(mirror)
        try:
            async with aclosing(self.store.read(block_id)) as batches:
                while not mirror.run.done:
                    try:
                        async with asyncio.timeout(self.idle):
                            batch = await anext(batches)
                    except StopAsyncIteration:
                        break
                    for frame in batch:
                        await tree.take(frame)
                        if tree.ended:
                            return
        except RunClosed:  # the sharing run ended it (cancelled: it ended first)
            return
        except TimeoutError:
            mirror.end(error=RemoteLost(f"no event from {mirror.run.name} for {self.idle} s"))
        except (StoreError, Expired, RedisError) as exc:
            mirror.end(error=exc)
        finally:
            await tree.end_children()
            if not tree.ended:
                mirror.end(error=RemoteLost(f"{mirror.run.name}'s stream ended without its end"))
            await mirror.ended()

    async def close(self) -> list[Run]:
        """Write ``closed`` into the index, open every block announced before it, wait."""
        if not self.closing:
            self.closing = True
            await self._close_index()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.following:
            await asyncio.wait(self.following)
        await self._forget()
        return list(self.children)

    async def _close_index(self) -> None:
        pipe = self.store.redis.pipeline(transaction=True)
        pipe.xadd(self.handle.key, {"closed": b"1"})
        pipe.pexpire(self.handle.key, int(self.store.ttl * 1000))
        try:
            await pipe.execute()
        except RedisError as exc:
            raise self.store.error(f"closing share {self.handle.share_id}: {exc}") from exc

    def _run_ended(self, _run: Run) -> None:
        """The sharing run ended (its children, cancelled if still open, first)."""
        self.closing = True
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # seen: the children it opened have ended with it
        self.task.cancel()
        for task in self.following:
            task.cancel()
        task = asyncio.ensure_future(self._forget())
        _forgetting.add(task)
        task.add_done_callback(_forgetting.discard)

    async def _forget(self) -> None:
        if _shares.get(self.handle.share_id) is self:
            del _shares[self.handle.share_id]
            await self.store.aclose()


_forgetting: set[asyncio.Future[None]] = set()


class _Tree:
    """The local runs that mirror one block's run and its sub-runs (by their run id)."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.root_id: str | None = None  # the block's run id, from its header
        self.live: dict[str, Mirror] = {}
        self.by_path: dict[tuple[str, ...], str] = {}
        self.ended = False

    async def take(self, frame: bytes) -> None:
        """Emit the event in *frame* into its mirror; a terminal one ends it, and the next
        event waits for that end (so every sink sees the block's order)."""
        if self.root_id is None:
            self.root_id = json.loads(frame)["run_id"]
            return
        event = Event.from_json(frame)
        if event.run_id == self.root_id:
            if event.terminal:
                await self.end_children()
                self.ended = True
                _end(self.mirror, event)
            else:
                self.mirror.emit(_local_copy(event))
            return
        sub = self.live.get(event.run_id) or self._open(event)
        if event.terminal:
            del self.live[event.run_id]
            _end(sub, event)
            await sub.ended()
        else:
            sub.emit(_local_copy(event))

    def _open(self, event: Event) -> Mirror:
        parent = self.live.get(self.by_path.get(tuple(event.path[:-1]), ""), self.mirror)
        sub = parent.child(event.path[-1] if event.path else "sub-run")
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
    if isinstance(event, Done):
        mirror.end(event.result)
    elif isinstance(event, Error):
        mirror.end(error=RemoteError(event.type, event.message, event.traceback))
    else:
        assert isinstance(event, Cancelled)
        mirror.end(error=asyncio.CancelledError(event.reason))


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
    """An inline sink writing a block's events (its sub-runs' too) to its stream."""

    inline = True

    def __init__(self, block: _Block) -> None:
        self.block = block

    def send(self, event: Event) -> None:
        last = event.terminal and event.run_id == self.block.run_id
        self.block.writer.append(event.to_json().encode(), last=last)


async def _until(outcome: asyncio.Future[Any]) -> Any:
    return await outcome


class _Block:
    """One attached block, on the loop it was opened on: its store, writer and run."""

    def __init__(self, handle: Handle, name: str | None) -> None:
        self.handle = handle
        self.name = name or _default_name()
        self.block_id = os.urandom(8).hex()
        self.run_id = ""

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

    async def close(self, error: BaseException | None) -> None:
        """End the run (done, or the block's *error*) and wait until its end is in Redis."""
        if not self.outcome.done():
            if error is None:
                self.outcome.set_result(None)
            else:
                self.outcome.set_exception(error)
        try:
            await _settled(self.run)
            await self.writer.aclose()
        finally:
            await self.store.aclose()


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
    Redis fails (also at the end, if the events could not all be written).
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
        self._token = set_current(run)
        return run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            reset_current(self._token)
            self._token = None
        await self._block.close(exc)
