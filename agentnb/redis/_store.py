"""Served runs' frames in Redis Streams: a stream per run, written in batches, read from anywhere.

The same interface as the server's in-memory replay buffer, for runs that
outlive their process: a :class:`RunWriter` appends a run's frames (opaque
bytes: the server's SSE frames) in order, from any thread, and any number of
readers in any process read them from any position (:meth:`RedisStore.read`).

**Key layout.** One stream per run, ``agentnb:run:<run id>``. The frame at
position *n* (0, 1, 2, ... per run, as the in-memory buffer counts; the SSE id
is ``<run id>:<n>``) is the entry with the explicit id ``<n+1>-0`` (Redis
refuses ``0-0``) and one field, ``frame``; the run's terminal frame carries a
second field, ``end``. So an entry id and a position map both ways without a
lookup, a resume from ``Last-Event-ID`` ``<run id>:<n>`` reads after the entry
``<n+1>-0`` exactly, and a second writer of the same run (or a batch sent twice)
is refused by Redis instead of interleaving. The frames are stored as sent, not
as the event's JSON: a reader sends them on unchanged (no re-encoding per
reader), and the store stays independent of the wire format.

**Writing.** ``append`` (sync, any thread, a few microseconds) queues the frame
locally; one writer task per run sends everything queued since its last write
in one call of a Lua script (at most ``BATCH`` entries, the frames joined in one
argument: one command to pack and one reply to parse): an ``XADD`` per frame, an exact
``XTRIM MINID`` when the run holds more than ``keep_count`` entries or
``keep_bytes`` bytes (the newest entry always stays), and an ``EXPIRE``: the
key lives ``idle_ttl`` seconds after the last write while the run goes on (so
an abandoned run's stream goes away; ``XADD`` alone does not refresh a TTL) and
``ttl`` seconds after its terminal frame. The byte bound counts each frame's
length plus ``ENTRY_OVERHEAD`` (what Redis spends per entry, about), for the
entries this writer wrote. Trimming is exact (``MAXLEN ~`` may remove nothing):
what is held is what a reader can be told about.

**Reading.** ``XRANGE`` from the position after the reader's for the backlog,
then ``XREAD BLOCK`` from the last id read, never ``$`` (which loses what
arrives between two calls). A reader whose next position was trimmed away gets
:class:`Expired` (with the oldest position held), never the later entries with
a silent gap. Unlike the in-memory buffer, the trimming does not wait for
connected readers: ``keep_count`` and ``keep_bytes`` are also how far behind a
reader may fall. Each reader waiting in ``XREAD BLOCK`` holds one connection of
the client's pool. The client's ``socket_timeout`` is ``block`` plus
``SOCKET_MARGIN`` seconds, so a long ``BLOCK`` never reads as a dead socket.

**Faults.** Only a run's first frame creates its stream (``XADD NOMKSTREAM``
for the others), so a stream lost in a Redis restart is not silently begun
again with a hole. redis-py's own retries are off. A connection error or timeout is
retried for ``reconnect`` seconds; after reconnecting, a writer first checks
what Redis holds (a batch that did arrive is not sent twice) and a reader that
the stream is still there, then they go on from their exact positions. Redis
restarted with its data (``appendonly yes``) is then invisible to both. A
stream that is gone (Redis restarted without its data, the key expired) or
entries Redis lost raise :class:`StreamMissing` or :class:`StoreError`, naming
the URL (its password hidden); so does Redis staying down: never a hang.

What survives what: the frames survive the process that wrote them (for
``ttl`` seconds after the run ended); with ``appendonly yes`` they survive a
Redis restart; without it, a restart loses them and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "BATCH",
    "ENTRY_OVERHEAD",
    "Expired",
    "RedisStore",
    "RunInfo",
    "RunWriter",
    "StoreError",
    "StreamMissing",
]

KEY_PREFIX = "agentnb:run:"
BATCH = 1000
"""Entries per pipeline of a writer, and per ``XRANGE`` / ``XREAD`` of a reader."""
ENTRY_OVERHEAD = 64
"""Bytes an entry costs in Redis beyond its frame, about (the byte bound counts it)."""
SOCKET_MARGIN = 5.0
"""Seconds the client's socket timeout exceeds the ``XREAD BLOCK`` time."""
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection to Redis (a host that does not answer)."""
_PAUSE = 0.05  # seconds between attempts while Redis does not answer
_TRANSIENT = (RedisConnectionError, RedisTimeoutError)
# One batch of a writer in one call: the XADDs (only the first frame makes the stream: a later
# one finding it gone, lost in a Redis restart or expired, gets nil rather than starting a
# stream with a hole), the exact trim and the expiry. ARGV: first position, TTL (ms), MINID
# ("" for none), "1" if the last frame is the terminal one, the frames joined, their count,
# their lengths. Returns 0, or {n, error} for the n-th frame refused.
_APPEND = """
local key = KEYS[1]
local first = tonumber(ARGV[1])
local blob = ARGV[5]
local i, at, count = 0, 1, tonumber(ARGV[6])
for size in string.gmatch(ARGV[7], '%d+') do
  i = i + 1
  local p = first + i - 1
  local frame = string.sub(blob, at, at + size - 1)
  at = at + size
  local tail = {}
  if i == count and ARGV[4] == '1' then tail = {'end', '1'} end
  local r
  if p == 0 then
    r = redis.pcall('XADD', key, (p + 1) .. '-0', 'frame', frame, unpack(tail))
  else
    r = redis.pcall('XADD', key, 'NOMKSTREAM', (p + 1) .. '-0', 'frame', frame, unpack(tail))
  end
  if not r then return {i, 'missing'} end
  if type(r) == 'table' and r.err then return {i, r.err} end
end
if ARGV[3] ~= '' then redis.call('XTRIM', key, 'MINID', ARGV[3]) end
redis.call('PEXPIRE', key, ARGV[2])
return 0
"""
_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()

T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as redis-py reads it: (id, fields)


class StoreError(Exception):
    """Redis failed or did not answer (for longer than the store's ``reconnect``), or lost data."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"Redis at {url}: {message}")
        self.url = url
        self.message = message


class StreamMissing(StoreError):
    """A run with no stream: never written, expired after its TTL, or lost in a Redis restart."""

    def __init__(self, url: str, run_id: str, key: str) -> None:
        super().__init__(
            url,
            f"run {run_id} has no stream ({key}): it was never written, it expired, or "
            "Redis restarted without its data (appendonly off)",
        )
        self.run_id = run_id


class Expired(Exception):
    """A position that the stream no longer holds (trimmed away)."""

    def __init__(self, position: int, first: int) -> None:
        super().__init__(f"position {position} is gone; the oldest held is {first}")
        self.position = position
        self.first = first


@dataclass(frozen=True)
class RunInfo:
    """What a run's stream holds."""

    count: int  # frames ever appended (the next position)
    first: int  # the oldest position held
    held: int  # entries held
    ended: bool  # the run's terminal frame is in
    ttl: float | None  # seconds until the stream expires (None: no expiry set)


for _cls in (StoreError, StreamMissing, Expired):
    _cls.__module__ = "agentnb.redis"  # what tracebacks and error events show: the public name


async def _apart(command: Awaitable[T]) -> T:
    """Await a Redis *command* in a task of its own, so that cancelling the caller always
    takes: on Python 3.11 redis-py's ``asyncio.wait_for`` around sending a command can
    swallow a cancellation that lands as the send ends. The command, if still going, is
    cancelled and left to end (its connection goes back to the pool)."""
    task = asyncio.ensure_future(command)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_quiet)
        raise


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a command abandoned by a cancelled caller


def entry_id(position: int) -> str:
    """The stream entry id of the frame at *position*."""
    return f"{position + 1}-0"


def position_of(entry: bytes | str) -> int:
    """The position of the frame in the entry with id *entry*."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[0]) - 1


def redact(url: str) -> str:
    """*url* with its password replaced by ``***`` (it goes into error messages)."""
    password = urlsplit(url).password
    if password is not None:
        url = url.replace(f":{password}@", ":***@", 1)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


class RedisStore:
    """Served runs' frames in Redis (see the module): ``writer(run_id)``, ``read(run_id, after)``.

    *url*: a ``redis://`` (or ``rediss://``, ``unix://``) URL. A run holds at most
    *keep_count* frames and about *keep_bytes* bytes (the newest always), and its
    stream expires *ttl* seconds after its terminal frame, or *idle_ttl* seconds
    after its last write while it has none. Readers wait up to *block* seconds per
    ``XREAD``; a Redis that does not answer is retried for *reconnect* seconds,
    then :class:`StoreError`. A worker (``python -m agentnb worker``) not heard of for
    *lease* seconds is taken for lost, and its runs ended (use one lease everywhere).
    Use it on one event loop; ``aclose()`` when done.
    """

    Error = StoreError  # what a failing Redis raises, for code that holds only the store
    Trimmed = Expired  # what a reader behind the trimming gets

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        keep_count: int = 10_000,
        keep_bytes: int = 32 << 20,
        ttl: float = 300.0,
        idle_ttl: float = 86_400.0,
        block: float = 5.0,
        reconnect: float = 5.0,
        lease: float = 30.0,
        prefix: str = KEY_PREFIX,
    ) -> None:
        if keep_count < 1 or keep_bytes < 1:
            raise ValueError("a store keeps at least one frame and one byte per run")
        if ttl <= 0 or idle_ttl <= 0:
            raise ValueError(f"ttl and idle_ttl must be positive, got {ttl} and {idle_ttl}")
        if lease <= 0:
            raise ValueError(f"lease must be positive, got {lease}")
        if block <= 0 or reconnect < 0:
            raise ValueError(f"block must be positive and reconnect >= 0, got {block}, {reconnect}")
        self.url = redact(url)
        self.keep_count = keep_count
        self.keep_bytes = keep_bytes
        self.ttl = ttl
        self.idle_ttl = idle_ttl
        self.block = block
        self.reconnect = reconnect
        self.lease = lease
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(
            url,
            socket_timeout=block + SOCKET_MARGIN,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # retried here, knowing what a retry must check
        )
        self._writers: set[RunWriter] = set()

    def __repr__(self) -> str:
        return f"<RedisStore {self.url} writers={len(self._writers)}>"

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def key(self, run_id: str) -> str:
        """The stream's key of run *run_id*."""
        return self.prefix + run_id

    def error(self, message: str) -> StoreError:
        return StoreError(self.url, message)

    # -- writing --------------------------------------------------------------------

    def writer(self, run_id: str, *, start: int = 0) -> RunWriter:
        """The writer of run *run_id*'s frames, the first at position *start* (to go on
        writing a stream another writer began: its byte bound then counts only the frames
        it wrote). Call it on the store's event loop; ``aclose()`` it."""
        writer = RunWriter(self, run_id, start)
        self._writers.add(writer)
        return writer

    # -- reading --------------------------------------------------------------------

    async def read(self, run_id: str, after: int = -1) -> AsyncGenerator[list[bytes], None]:
        """The frames after position *after* (-1: from the first), in batches, each once,
        in order; ends after the terminal frame. Close it (``contextlib.aclosing``) when
        leaving early.

        Raises :class:`Expired` when the next position was trimmed away (at the start
        or while reading: a reader too slow for the trimming), :class:`StreamMissing`
        when the run has no stream, ``ValueError`` when *after* is past the run's
        last frame, :class:`StoreError` when Redis fails.
        """
        if after < -1:
            raise ValueError(f"after must be a position or -1, got {after}")
        key = self.key(run_id)
        last = after  # the last position read
        backlog = True  # reading with XRANGE until it is all read, then XREAD BLOCK
        check = True  # look at the stream (at the start, after a fault, after an idle BLOCK)
        starting = True  # until the first look succeeded
        failing_since: float | None = None
        block_ms = int(self.block * 1000)
        while True:
            try:
                if check:
                    info = await _apart(self._info(key))
                    if info is None:
                        raise StreamMissing(self.url, run_id, key)
                    if last >= info.count:
                        if not starting or failing_since is not None:
                            raise self.error(
                                f"run {run_id} lost frames: its stream holds {info.count} "
                                f"but position {last} was read (Redis restarted without "
                                "the newest writes, or the stream was made again)"
                            )
                        raise ValueError(
                            f"run {run_id} has {info.count} frames (positions 0 to "
                            f"{info.count - 1}); position {after} is past the end"
                        )
                    if info.ended and last == info.count - 1:
                        return
                    check = starting = False
                if backlog:
                    xrange = self.redis.xrange(key, entry_id(last + 1), "+", count=BATCH)
                    entries = cast(list[Entry], await _apart(xrange))
                    backlog = len(entries) == BATCH
                else:
                    xread = self.redis.xread({key: entry_id(last)}, count=BATCH, block=block_ms)
                    got = cast(list[tuple[bytes, list[Entry]]], await _apart(xread))
                    entries = got[0][1] if got else []
                    check = not entries  # a BLOCK ran out: is the stream still there?
                failing_since = None
            except _TRANSIENT as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.reconnect:
                    raise self.error(f"reading run {run_id}: {exc}") from exc
                check = True
                await asyncio.sleep(_PAUSE)
                continue
            except RedisError as exc:
                raise self.error(f"reading run {run_id}: {exc}") from exc
            if not entries:
                continue
            first = position_of(entries[0][0])
            if first != last + 1:
                raise Expired(last + 1, first)
            frames = [fields[b"frame"] for _, fields in entries]
            last += len(entries)
            yield frames
            if b"end" in entries[-1][1]:
                return

    async def _info(self, key: str) -> RunInfo | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xinfo_stream(key)
        pipe.pttl(key)
        stream, pttl = await pipe.execute(raise_on_error=False)
        if isinstance(stream, ResponseError) and "no such key" in str(stream):
            return None
        if isinstance(stream, Exception):
            raise stream
        count = position_of(stream["last-generated-id"]) + 1
        first_entry = stream["first-entry"]
        last_entry = stream["last-entry"]
        return RunInfo(
            count=count,
            first=position_of(first_entry[0]) if first_entry else count,
            held=int(stream["length"]),
            ended=bool(last_entry) and b"end" in last_entry[1],
            ttl=pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None,
        )

    async def info(self, run_id: str) -> RunInfo | None:
        """What run *run_id*'s stream holds (None: it has none)."""
        try:
            return await self._info(self.key(run_id))
        except RedisError as exc:
            raise self.error(f"describing run {run_id}: {exc}") from exc

    async def exists(self, run_id: str) -> bool:
        """Whether run *run_id* has a stream."""
        try:
            return bool(await self.redis.exists(self.key(run_id)))
        except RedisError as exc:
            raise self.error(f"looking up run {run_id}: {exc}") from exc

    async def wait_begun(self, run_id: str) -> bool:
        """Whether run *run_id* has a stream, waiting for its first frame at most one
        BLOCK time (XREAD BLOCK on a missing key waits for the XADD that makes it)."""
        if await self.exists(run_id):
            return True
        try:
            block = int(self.block * 1000)
            waiting = self.redis.xread({self.key(run_id): "0-0"}, count=1, block=block)
            await _apart(waiting)
        except RedisError as exc:
            raise self.error(f"waiting for run {run_id}: {exc}") from exc
        return await self.exists(run_id)

    def control(self, handle: Any) -> Any:
        """This server process's side of the run records and the control channel, for a
        server front holding only the store (see ``_control.Control``)."""
        from ._control import Control

        return Control(self, handle)

    async def delete(self, run_id: str) -> bool:
        """Drop run *run_id*'s stream; whether it had one."""
        try:
            return bool(await self.redis.delete(self.key(run_id)))
        except RedisError as exc:
            raise self.error(f"deleting run {run_id}: {exc}") from exc

    async def aclose(self) -> None:
        """Stop the writers still open (without waiting for their frames) and disconnect."""
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer._closed = True
            writer._task.cancel()
        for writer in writers:
            with contextlib.suppress(asyncio.CancelledError):
                await writer._task
        await self.redis.aclose()


class RunWriter:
    """Appends one run's frames to its stream (see the module): ``append`` from any thread,
    ``flush()`` to wait until they are in Redis, ``aclose()`` at the end."""

    def __init__(self, store: RedisStore, run_id: str, start: int) -> None:
        if start < 0:
            raise ValueError(f"start must be a position, got {start}")
        self.store = store
        self.run_id = run_id
        self.key = store.key(run_id)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, bytes, bool]] = deque()  # (position, frame, last)
        self._count = start  # the next position
        self._ended = False  # the terminal frame was appended
        self._woken = False  # a wake-up of the writer task is due (under the lock)
        self._error: StoreError | None = None
        self._closed = False
        self.written = start  # the frames before this position are in Redis
        self.first = start  # the oldest position held, as far as this writer trimmed
        self._held: deque[tuple[int, int]] = deque()  # (position, cost) of held entries
        self._held_bytes = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._drain(), name=f"agentnb.redis writer {run_id}")

    def __repr__(self) -> str:
        return f"<RunWriter {self.key} count={self._count} written={self.written}>"

    @property
    def count(self) -> int:
        """How many frames were appended (the next position)."""
        return self._count

    @property
    def ended(self) -> bool:
        return self._ended

    def append(self, frame: bytes, *, last: bool = False) -> int:
        """Queue the next frame (*last*: the run's terminal one); its position.

        Raises :class:`StoreError` once writing has failed.
        """
        with self._lock:
            if self._error is not None:
                raise self.store.error(self._error.message)
            if self._closed:
                raise ValueError(f"run {self.run_id}'s writer is closed")
            if self._ended:
                raise ValueError(f"run {self.run_id}'s last frame is already in")
            position = self._count
            self._count += 1
            self._ended = last
            self._pending.append((position, frame, last))
            wake, self._woken = not self._woken, True
        if wake:
            if threading.get_ident() == self._loop_thread:
                self._wake.set()
            else:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._wake.set)
        return position

    async def flush(self) -> None:
        """Wait until every frame appended so far is in Redis; raises :class:`StoreError`."""
        target = self._count
        if self.written >= target:
            return
        if self._error is not None or self._task.done():
            raise self._error or self.store.error(f"run {self.run_id}'s writer is closed")
        done = self._loop.create_future()
        self._flushes.append((target, done))
        await done

    async def aclose(self) -> None:
        """Flush, then stop the writer task (later appends raise ``ValueError``)."""
        try:
            await self.flush()
        finally:
            self._closed = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self.store._writers.discard(self)

    # -- the writer task ----------------------------------------------------------------

    async def _drain(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                with self._lock:
                    n = min(len(self._pending), BATCH)
                    batch = [self._pending.popleft() for _ in range(n)]
                    self._woken = bool(self._pending)
                if self._woken:
                    self._wake.set()  # the rest in the next pipeline
                if batch:
                    await self._write(batch)
                    self._settle()
        except Exception as exc:  # every later append and flush raises it
            error = exc if isinstance(exc, StoreError) else None
            error = error or self.store.error(f"writing run {self.run_id} failed: {exc!r}")
            with self._lock:
                self._error = error
            self._fail(error)
        except BaseException:
            self._fail(self.store.error(f"run {self.run_id}'s writer was stopped"))
            raise

    def _settle(self) -> None:
        keep = []
        for target, done in self._flushes:
            if target <= self.written:
                if not done.done():
                    done.set_result(None)
            else:
                keep.append((target, done))
        self._flushes = keep

    def _fail(self, error: StoreError) -> None:
        flushes, self._flushes = self._flushes, []
        for _, done in flushes:
            if not done.done():
                done.set_exception(error)

    async def _write(self, batch: list[tuple[int, bytes, bool]]) -> None:
        store = self.store
        failing_since: float | None = None
        held = batch[0][0]  # Redis holds the positions before this one
        while True:
            try:
                if failing_since is not None:
                    held = await self._held_now()
                await self._send(batch, held)
                return
            except _TRANSIENT as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= store.reconnect:
                    raise store.error(f"writing run {self.run_id}: {exc}") from exc
                await asyncio.sleep(_PAUSE)
            except RedisError as exc:
                raise store.error(f"writing run {self.run_id}: {exc}") from exc

    async def _held_now(self) -> int:
        """After a fault: how many frames the stream holds (Redis may have taken some of
        the batch before the connection broke); raises if it lost any it had."""
        info = await self.store._info(self.key)
        held = info.count if info is not None else 0
        if held < self.written or (info is None and self.written > 0):
            raise self.store.error(
                f"run {self.run_id} lost frames: {self.written} were written, its stream "
                f"now holds {held if info is not None else 'nothing'} (Redis restarted "
                "without its data: appendonly off?)"
            )
        return held

    async def _send(self, batch: list[tuple[int, bytes, bool]], held: int) -> None:
        """One script call: XADD the frames of *batch* from position *held* on, trim, expire."""
        store, key = self.store, self.key
        added = [entry for entry in batch if entry[0] >= held]
        keep_from = self._trim_point(batch)
        ended = batch[-1][2]
        ttl = int((store.ttl if ended else store.idle_ttl) * 1000)
        minid = entry_id(keep_from) if keep_from > self.first else ""
        first = added[0][0] if added else held
        last = b"1" if added and added[-1][2] else b"0"
        blob = b"".join([frame for _, frame, _ in added])
        sizes = " ".join([str(len(frame)) for _, frame, _ in added])
        args: list[bytes | str | int] = [first, ttl, minid, last, blob, len(added), sizes]
        try:
            result = await store.redis.evalsha(_APPEND_SHA, 1, key, *args)
        except NoScriptError:
            result = await store.redis.eval(_APPEND, 1, key, *args)
        if result != 0:
            index, message = int(result[0]), result[1]
            position = first + index - 1
            if message == b"missing":
                raise StreamMissing(store.url, self.run_id, key)
            raise store.error(
                f"run {self.run_id}'s stream refused position {position} ({message!r}): "
                "another writer is writing it"
            )
        self._wrote(batch, keep_from)

    def _trim_point(self, batch: Iterable[tuple[int, bytes, bool]]) -> int:
        """The oldest position to keep once *batch* is in: within the count and byte
        bounds, the newest always kept."""
        entries = [(p, len(frame) + ENTRY_OVERHEAD) for p, frame, _ in batch]
        newest = entries[-1][0]
        keep_from = max(newest + 1 - self.store.keep_count, self.first)
        total = self._held_bytes + sum(cost for _, cost in entries)
        for position, cost in (*self._held, *entries):
            if position < keep_from:
                total -= cost
            elif total <= self.store.keep_bytes or position >= newest:
                break
            else:
                keep_from = position + 1
                total -= cost
        return keep_from

    def _wrote(self, batch: list[tuple[int, bytes, bool]], keep_from: int) -> None:
        for position, frame, _ in batch:
            cost = len(frame) + ENTRY_OVERHEAD
            self._held.append((position, cost))
            self._held_bytes += cost
        while self._held and self._held[0][0] < keep_from:
            self._held_bytes -= self._held.popleft()[1]
        self.first = max(self.first, keep_from)
        self.written = batch[-1][0] + 1
