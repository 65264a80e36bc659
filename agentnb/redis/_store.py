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
locally; one writer task per run sends everything queued since its last batch
as one call of a Lua script (at most ``BATCH`` entries, the frames joined in one
argument: one command to pack and one reply to parse): an ``XADD`` per frame, an
exact ``XTRIM MINID`` when the run holds more than ``keep_count`` entries or
``keep_bytes`` bytes (the newest entry always stays), and a ``PEXPIRE``: the
key lives ``ttl`` seconds after the run's terminal frame, and while the run goes
on at least nine tenths of ``idle_ttl`` after its last write (so an abandoned
run's stream goes away; ``XADD`` alone does not refresh a TTL): the first batch
sets the expiry, then a batch sets it again once a tenth of ``idle_ttl`` has
passed (not every batch: it is a third of the script's time in Redis). A batch
of one frame that needs no check (below), trim or expiry, the common case of an
agent streaming slower than Redis answers, is a plain ``XADD NOMKSTREAM`` with
the frame's id instead: the script costs Redis about four times as much. The
byte bound counts each frame's length plus ``ENTRY_OVERHEAD`` (what Redis spends
per entry, about), for the entries this writer wrote. Trimming is exact
(``MAXLEN ~`` may remove nothing): what is held is what a reader can be told
about.

A batch goes out as soon as the writer task takes it, without waiting for the
reply to the one before (a frame emitted while a batch is on its way does not
wait a round trip to Redis): the writers of a store share one connection, and
one task reads the replies in order (``_Pipe``). A batch sent while an earlier
one has no reply yet first checks, in the script, that the stream holds exactly
the positions before its own: one refused (or lost with its connection) leaves
no gap after it. Behind plain ``XADD`` commands sent on the same connection, a lone
frame is a plain ``XADD`` too (an agent emitting faster than Redis answers):
Redis runs a connection's commands in order, so one lost with its connection
takes the later ones with it, and a send whose connection changed fails at once.
Only an error reply to one (Redis out of memory, say) can leave a hole after it;
the writer then fails with that error, and a reader that meets the hole raises
:class:`StoreError` after the frames before it, never skips it. After a failed
batch, once every reply is in, the writer looks at what Redis holds and sends
again what it lacks.

**Reading.** ``XRANGE`` from the position after the reader's for the backlog,
then ``XREAD BLOCK`` from the last id read, never ``$`` (which loses what
arrives between two calls). A reader whose next position was trimmed away gets
:class:`Expired` (with the oldest position held), never the later entries with
a silent gap. Unlike the in-memory buffer, the trimming does not wait for
connected readers: ``keep_count`` and ``keep_bytes`` are also how far behind a
reader may fall. Each reader waiting in ``XREAD BLOCK`` holds one connection of
a pool of the store's. Every command waits for its reply at most ``block`` plus
``SOCKET_MARGIN`` seconds, so a long ``BLOCK`` never reads as a dead socket and
a dead one never hangs: the store's client (``redis``, for everything else) has
that ``socket_timeout``; the writers' connection and the readers' use a deadline
of their own instead (with a socket timeout, redis-py sends each command from a
task of its own, a loop turn later).

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
import functools
import hashlib
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
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

logger = logging.getLogger("agentnb.redis")

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
# One batch of a writer in one call: the XADDs, the exact trim and the expiry. Only a run's
# first frame makes its stream: a later one finding it gone (lost in a Redis restart, or
# expired) gets nil rather than beginning it again with a hole. A batch sent while an earlier
# one has no reply yet (batches go out without waiting for the replies) first checks that
# the stream holds exactly the positions before its own, or adds nothing: one that failed
# leaves no gap. ARGV: first position, TTL (ms, "" to leave it), MINID ("" for none), "1" if
# the last frame is the terminal one, the frames joined, their count, their lengths, "1" to
# check. Returns 0, or {"missing"}, or {"held", n} (the stream holds n positions), or
# {"refused", i, error} for the i-th frame refused.
_APPEND = """
local key = KEYS[1]
local first = tonumber(ARGV[1])
local count = tonumber(ARGV[6])
if ARGV[8] == '1' then
  local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #top == 0 then return {'missing'} end
  local held = tonumber(string.match(top[1][1], '^%d+'))
  if held ~= first then return {'held', held} end
end
local function add(i, p, frame)
  local r
  local id = (p + 1) .. '-0'
  local last = i == count and ARGV[4] == '1'
  if p == 0 and last then
    r = redis.pcall('XADD', key, id, 'frame', frame, 'end', '1')
  elseif p == 0 then
    r = redis.pcall('XADD', key, id, 'frame', frame)
  elseif last then
    r = redis.pcall('XADD', key, 'NOMKSTREAM', id, 'frame', frame, 'end', '1')
  else
    r = redis.pcall('XADD', key, 'NOMKSTREAM', id, 'frame', frame)
  end
  if not r then return {'missing'} end
  if type(r) == 'table' and r.err then return {'refused', i, r.err} end
end
if count == 1 then
  local failed = add(1, first, ARGV[5])
  if failed then return failed end
else
  local blob, i, at = ARGV[5], 0, 1
  for size in string.gmatch(ARGV[7], '%d+') do
    i = i + 1
    local failed = add(i, first + i - 1, string.sub(blob, at, at + size - 1))
    if failed then return failed end
    at = at + size
  end
end
if ARGV[3] ~= '' then redis.call('XTRIM', key, 'MINID', ARGV[3]) end
if ARGV[2] ~= '' then redis.call('PEXPIRE', key, ARGV[2]) end
return 0
"""
_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest().encode()
_EVALSHA, _XADD, _NOMKSTREAM, _FRAME = b"EVALSHA", b"XADD", b"NOMKSTREAM", b"frame"


def _pack(*args: bytes) -> bytes:
    """A command in RESP, the way Redis reads it (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as redis-py reads it: (id, fields)
Frame = tuple[int, bytes, bool]  # a frame to write: (position, frame, terminal)
Replied = Callable[[Any, BaseException | None], None]  # gets a command's reply, or its error


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
        # The connections that wait for replies with a deadline of their own instead of a
        # socket timeout: the writers' one (_Pipe) and the readers' (_bounded).
        self._untimed = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._streams = aioredis.Redis(connection_pool=self._untimed)
        # A socket_timeout in the URL would override these (BLOCK reads need them as set).
        self.redis.connection_pool.connection_kwargs["socket_timeout"] = block + SOCKET_MARGIN
        self._untimed.connection_kwargs["socket_timeout"] = None
        self._writing: _Pipe | None = None
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

    async def open(self) -> None:
        """Connect the writers' connection now (the first batch connects it otherwise): a
        server's first run then streams to Redis as soon as its first frame. Raises
        :class:`StoreError` when Redis does not answer."""
        try:
            await self._pipe().connect()
        except RedisError as exc:
            raise self.error(f"connecting: {exc}") from exc

    def _pipe(self) -> _Pipe:
        if self._writing is None:
            self._writing = _Pipe(self)
        return self._writing

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
                    info = await self._bounded(self._info(key, self._streams))
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
                    xrange = self._streams.xrange(key, entry_id(last + 1), "+", count=BATCH)
                    entries = cast(list[Entry], await self._bounded(xrange))
                    backlog = len(entries) == BATCH
                else:
                    xread = self._streams.xread({key: entry_id(last)}, count=BATCH, block=block_ms)
                    got = cast(list[tuple[bytes, list[Entry]]], await self._bounded(xread))
                    entries = got[0][1] if got else []
                    check = not entries  # a BLOCK ran out: is the stream still there?
                skipped = None  # the stream's first position held, when the next one is missing
                if entries and position_of(entries[0][0]) != last + 1:
                    info = await self._bounded(self._info(key, self._streams))
                    skipped = info.first if info is not None else position_of(entries[0][0])
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
            if skipped is not None:
                if skipped > last + 1:
                    raise Expired(last + 1, first)  # trimmed away (the stream starts later)
                raise self._hole(run_id, last + 1)
            if position_of(entries[-1][0]) != last + len(entries):  # not contiguous
                whole = next(i for i, e in enumerate(entries) if position_of(e[0]) != first + i)
                if whole:
                    yield [fields[b"frame"] for _, fields in entries[:whole]]
                raise self._hole(run_id, first + whole)
            frames = [fields[b"frame"] for _, fields in entries]
            last += len(entries)
            yield frames
            if b"end" in entries[-1][1]:
                return

    def _hole(self, run_id: str, position: int) -> StoreError:
        return self.error(
            f"run {run_id}'s stream lacks position {position} but holds later ones (Redis "
            "refused a frame and took the next: its writer failed)"
        )

    async def _bounded(self, command: Awaitable[T]) -> T:
        """Await a command of the untimed client (a read of a stream) at most ``block`` plus
        ``SOCKET_MARGIN`` seconds: what the socket timeout of the store's client does, without
        redis-py sending the command from a task of its own (``asyncio.wait_for``, when a
        socket timeout is set: a loop turn later, and on Python 3.11 a cancellation landing
        as the send ends could be lost, leaving a reader running)."""
        try:
            async with asyncio.timeout(self.block + SOCKET_MARGIN):
                return await command
        except TimeoutError as exc:  # asyncio's: redis-py's own is not one
            raise RedisTimeoutError(
                f"no reply from Redis in {self.block + SOCKET_MARGIN:.0f} s"
            ) from exc

    async def _info(self, key: str, client: aioredis.Redis | None = None) -> RunInfo | None:
        pipe = (client or self.redis).pipeline(transaction=False)
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
            waiting = self._streams.xread({self.key(run_id): "0-0"}, count=1, block=block)
            await self._bounded(waiting)
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
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing.aclose()
        await self._streams.aclose()
        await self._untimed.disconnect()
        await self.redis.aclose()


class _Pipe:
    """The store's connection for writers' batches (see the module's Writing): each batch
    goes out as soon as its writer takes it, and one task reads the replies in order, so
    a batch never waits for the reply to the one before it (an agent streaming faster
    than a round trip to Redis is not slowed to it).

    Its connection has no socket timeout: redis-py would then send every command from a
    task of its own (``asyncio.wait_for``), one loop turn later and in no set order; a
    reply that takes longer than the store's ``block`` plus ``SOCKET_MARGIN`` seconds
    from its command's sending counts as a dead connection instead. One timer watches
    that (``_watch``), rather than a deadline set and cleared around every reply: it
    cancels whatever waits on that connection (the reading, and a send waiting for room
    in a full socket buffer). A command's reply is queued before the command is
    written, and the write happens before anything else can run: replies and commands
    pair up in order. A dropped connection is killed in Redis before a writer looks at
    what Redis holds (``purge``): commands still in its socket buffer, unread by a Redis
    that stalled, would otherwise run after the look.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.timeout = store.block + SOCKET_MARGIN
        self._loop = asyncio.get_running_loop()
        self._conn: Any = None  # redis.asyncio.Connection, once connected
        self._connecting = asyncio.Lock()
        self._replies: deque[tuple[Any, Replied, float]] = deque()  # (conn, done, sent at)
        self._reading: asyncio.Task[None] | None = None  # while replies are due
        self._watching: asyncio.TimerHandle | None = None  # while replies may be due
        self._awaiting: dict[asyncio.Task[Any], Any] = {}  # task -> the connection it awaits
        self._late: set[asyncio.Task[Any]] = set()  # cancelled by _watch
        self._clients: dict[Any, tuple[int, str]] = {}  # connection -> (client id, address)
        self._dropped: list[tuple[int, str]] = []  # to kill (purge)
        self._purging = asyncio.Lock()
        self.epoch = 0  # counts the connections made: commands of one epoch run in order

    async def send(self, command: bytes, done: Replied, epoch: int | None = None) -> int:
        """Send one command (packed: ``_pack``); *done* gets its reply (or the error: a
        ``ResponseError`` for an error reply, a connection error or timeout for a lost
        one), later. With *epoch*, only on that connection (else it fails at once: the
        commands it must follow may not have run). Returns the epoch it went on (-1 for
        none)."""
        try:
            if self._conn is None or not self._conn.is_connected:
                if epoch is not None:
                    raise RedisConnectionError("the connection to Redis was lost")
                await self.connect()
            if epoch is not None and epoch != self.epoch:
                raise RedisConnectionError("the connection to Redis changed")
            conn, used = self._conn, self.epoch
        except BaseException as exc:
            done(None, exc)
            if not isinstance(exc, Exception):
                raise
            return -1
        # Connected, so nothing awaits before the write: the reply queued here is its own.
        self._replies.append((conn, done, self._loop.time()))
        if self._reading is None:
            self._reading = self._loop.create_task(self._read(), name="agentnb.redis replies")
        if self._watching is None:
            self._watching = self._loop.call_later(self.timeout, self._watch)
        task = asyncio.current_task()
        assert task is not None, "a writer sends from its task"
        try:
            self._awaiting[task] = conn  # room in its socket buffer, which _watch bounds
            try:
                await conn.send_packed_command(command, check_health=False)
            finally:
                del self._awaiting[task]
        except BaseException as exc:  # the connection is broken: its replies fail when read
            if self._conn is conn:
                self._conn = None
            if isinstance(exc, asyncio.CancelledError) and self._timed_out(task):
                return used  # its reply fails with the others (the reading's too)
            if not isinstance(exc, Exception):
                raise
        return used

    async def connect(self) -> None:
        """Have a connection (one at a time connects; see ``RedisStore.open``)."""
        async with self._connecting:
            if self._conn is None or not self._conn.is_connected:
                await self._connect()

    async def _connect(self) -> None:
        """A new connection, the script loaded (through the store's client) for it, within
        the reply deadline: a Redis that takes connections but does not answer fails."""
        self._conn = None
        conn = self.store._untimed.make_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(self.timeout):
                await conn.connect()
                await conn.send_command("CLIENT", "INFO")
                try:
                    client = _client_info(await conn.read_response())
                except ResponseError:  # Redis < 6.2, or an ACL user without CLIENT
                    client = None
                await self.store.redis.script_load(_APPEND)
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"Redis did not answer in {self.timeout:.0f} s") from exc
            raise
        if client is not None:
            self._clients[conn] = client
        self._conn = conn
        self.epoch += 1

    async def _read(self) -> None:
        """Read the replies due, in order; ends when none is (``send`` starts it again)."""
        replies = self._replies
        task = asyncio.current_task()
        assert task is not None
        try:
            while replies:
                conn, done, _ = replies[0]
                try:
                    self._awaiting[task] = conn  # no deadline of its own: _watch's
                    try:
                        reply = await conn.read_response()
                    finally:
                        del self._awaiting[task]
                except ResponseError as exc:  # an error reply: that command's
                    replies.popleft()
                    _deliver(done, None, exc)
                except Exception as exc:  # the connection is lost, with every reply due on it
                    await self._drop(conn, exc)
                except asyncio.CancelledError as exc:
                    if self._timed_out(task):  # the reply is late
                        late = RedisTimeoutError(f"no reply from Redis in {self.timeout:.0f} s")
                        await self._drop(conn, late)
                        continue
                    await self._drop(conn, exc)
                    raise
                except BaseException as exc:
                    await self._drop(conn, exc)
                    raise
                else:
                    replies.popleft()
                    _deliver(done, reply, None)
        finally:
            self._reading = None

    def _watch(self) -> None:
        """The replies' deadline, a timer while replies may be due: if the oldest reply due
        is late, what waits on its connection is cancelled (the connection is dropped,
        every reply due on it fails); else the timer is set again for when it would be."""
        self._watching = None
        if not self._replies:
            return
        conn, _, sent = self._replies[0]
        if self._loop.time() < sent + self.timeout:
            self._watching = self._loop.call_at(sent + self.timeout, self._watch)
            return
        for task, on in self._awaiting.items():
            if on is conn and task not in self._late:
                self._late.add(task)
                task.cancel()
        self._watching = self._loop.call_later(_PAUSE, self._watch)  # until it is dropped

    def _timed_out(self, task: asyncio.Task[Any]) -> bool:
        """Whether *task*, cancelled, was cancelled by ``_watch`` alone (it then goes on)."""
        if task not in self._late:
            return False
        self._late.discard(task)
        return not task.uncancel()

    async def _drop(self, conn: Any, exc: BaseException) -> None:
        if self._conn is conn:
            self._conn = None
        replies = self._replies
        while replies and replies[0][0] is conn:
            _deliver(replies.popleft()[1], None, exc)
        client = self._clients.pop(conn, None)
        if client is not None:
            self._dropped.append(client)
        await conn.disconnect(nowait=True)

    async def purge(self) -> None:
        """Kill the connections dropped (their unread commands never run), so that what
        Redis holds stays as it is read next. Raises what the store's client raises."""
        async with self._purging:
            while self._dropped:
                ident, address = self._dropped[0]
                try:
                    await self.store.redis.client_kill_filter(_id=str(ident), addr=address)
                except ResponseError as exc:  # not allowed (an ACL): as if it were gone
                    logger.warning("agentnb: a dropped Redis connection not killed: %s", exc)
                del self._dropped[0]

    async def aclose(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        reading = self._reading
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        closed = RedisConnectionError("the store is closed")
        while self._replies:
            _deliver(self._replies.popleft()[1], None, closed)
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
            self._conn = None


def _client_info(reply: Any) -> tuple[int, str] | None:
    """A connection's client id and address, from its ``CLIENT INFO``."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    fields = dict(item.partition("=")[::2] for item in text.split())
    with contextlib.suppress(KeyError, ValueError):
        return int(fields["id"]), fields["addr"]
    return None


def _deliver(done: Replied, reply: Any, exc: BaseException | None) -> None:
    """Hand a reply to its callback; one that fails is logged (the others still get theirs)."""
    try:
        done(reply, exc)
    except Exception:
        logger.exception("agentnb: a Redis reply's callback failed")


class _Gap(Exception):
    """A batch found the stream short of its first position: a batch before it failed."""


class RunWriter:
    """Appends one run's frames to its stream (see the module): ``append`` from any thread,
    ``flush()`` to wait until they are in Redis, ``aclose()`` at the end."""

    def __init__(self, store: RedisStore, run_id: str, start: int) -> None:
        if start < 0:
            raise ValueError(f"start must be a position, got {start}")
        self.store = store
        self.run_id = run_id
        self.key = store.key(run_id)
        self._key = self.key.encode()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._pending: deque[Frame] = deque()  # appended, not sent (position, frame, last)
        self._count = start  # the next position
        self._ended = False  # the terminal frame was appended
        self._woken = False  # a wake-up of the writer task is due (under the lock)
        self._error: StoreError | None = None
        self._closed = False
        self.written = start  # the frames before this position are in Redis
        self.first = start  # the oldest position held, as far as this writer trimmed
        self._unacked: deque[Frame] = deque()  # sent, no reply yet (loop only)
        self._inflight = 0  # batches sent with no reply yet
        self._plain_epoch: int | None = None  # while they are plain XADDs, their connection's
        self._fault: BaseException | None = None  # the first batch that failed, until resent
        self._failing_since: float | None = None
        self._expiry_set: float | None = None  # when a batch last set the idle TTL (monotonic)
        self._retrim = False  # the next batch trims to its point even if this writer did
        self._after: asyncio.Future[Any] | None = None  # to be done before the first batch
        self._held: deque[tuple[int, int]] = deque()  # (position, cost) of entries sent
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

    def after(self, first: asyncio.Future[Any]) -> None:
        """Send nothing before *first* is done (however it ends): a run's record, say, so
        that whoever reads one of its frames finds the run described. Call it before the
        writer sends (on the loop, right after ``RedisStore.writer``)."""
        self._after = first

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
                if self._after is not None:
                    await asyncio.wait([self._after])
                    self._after = None
                self._wake.clear()
                if self._fault is not None:
                    if self._inflight:
                        continue  # woken again by the last reply
                    await self._recover()
                with self._lock:
                    n = min(len(self._pending), BATCH)
                    batch = [self._pending.popleft() for _ in range(n)]
                    self._woken = bool(self._pending)
                if self._woken:
                    self._wake.set()  # the rest in the next batch
                if batch:
                    await self._send(batch)
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

    async def _send(self, batch: list[Frame]) -> None:
        """One script call: XADD the frames of *batch*, trim, expire. Sent now; its reply
        comes to ``_replied`` later, in order, while the next batches go out."""
        store = self.store
        keep_from = self._trim_point(batch)
        ttl = b""
        if batch[-1][2]:
            ttl = b"%d" % int(store.ttl * 1000)
        else:
            now = time.monotonic()
            if self._expiry_set is None or now - self._expiry_set >= store.idle_ttl / 10:
                ttl, self._expiry_set = b"%d" % int(store.idle_ttl * 1000), now
        minid = b"%d-0" % (keep_from + 1) if keep_from > self.first or self._retrim else b""
        if len(batch) == 1:
            blob = batch[0][1]
            sizes = b"%d" % len(blob)
        else:
            blob = b"".join([frame for _, frame, _ in batch])
            sizes = b" ".join([b"%d" % len(frame) for _, frame, _ in batch])
        first, terminal = batch[0][0], batch[-1][2]
        # A lone frame the script would only add goes as a plain XADD (Redis refuses an id
        # at or below the stream's last), unless batches still going may fail without it:
        # only behind plain XADDs on the same connection, which Redis runs in order (one
        # lost with its connection takes this one with it). Else the script checks that
        # the stream holds exactly the positions before this batch (Redis may refuse one).
        plain = len(batch) == 1 and first > 0 and not (ttl or minid or terminal)
        behind = self._inflight > 0
        epoch = self._plain_epoch if behind else None
        plain = plain and (epoch is not None or not behind)
        if not plain:
            self._plain_epoch = None
        self._sent(batch, keep_from)
        self._unacked.extend(batch)
        self._inflight += 1
        if plain:
            command = _pack(_XADD, self._key, _NOMKSTREAM, b"%d-0" % (first + 1), _FRAME, blob)
        else:
            head = (_EVALSHA, _APPEND_SHA, b"1", self._key, b"%d" % first, ttl, minid)
            tail = (blob, b"%d" % len(batch), sizes, b"1" if behind else b"")
            command = _pack(*head, b"1" if terminal else b"0", *tail)
        used = await store._pipe().send(command, functools.partial(self._replied, batch), epoch)
        if plain and not behind:
            self._plain_epoch = used if used >= 0 else None

    def _replied(self, batch: list[Frame], reply: Any, exc: BaseException | None) -> None:
        """A batch's reply (in the order they were sent)."""
        self._inflight -= 1
        if self._fault is None:
            try:
                self._check(batch, reply, exc)
            except BaseException as failed:
                self._fault = failed
            else:
                for _ in batch:
                    self._unacked.popleft()
                self.written = batch[-1][0] + 1
                self._failing_since = None
                if self._flushes:
                    self._settle()
        if self._fault is not None and not self._inflight:
            self._wake.set()  # every reply is in: the writer task goes on from Redis

    def _check(self, batch: list[Frame], reply: Any, exc: BaseException | None) -> None:
        store, first = self.store, batch[0][0]
        if isinstance(reply, bytes) or reply == 0:  # an XADD's entry id, or the script's 0
            return
        if isinstance(exc, ResponseError) and "equal or smaller" in str(exc):  # an XADD's
            raise store.error(
                f"run {self.run_id}'s stream refused position {first} ({exc}): another "
                "writer is writing it"
            )
        if exc is not None:
            raise exc
        if reply is None:  # XADD NOMKSTREAM found no stream
            raise StreamMissing(store.url, self.run_id, self.key)
        what = reply[0]
        if what == b"missing":
            raise StreamMissing(store.url, self.run_id, self.key)
        if what == b"held" and int(reply[1]) < first:
            raise _Gap(f"the stream holds {int(reply[1])} frames, not {first}")
        if what == b"held":
            raise store.error(
                f"run {self.run_id}'s stream refused position {first} (it holds "
                f"{int(reply[1])} frames): another writer is writing it"
            )
        position = first + int(reply[1]) - 1
        if b"equal or smaller" in reply[2]:
            raise store.error(
                f"run {self.run_id}'s stream refused position {position} ({reply[2]!r}): "
                "another writer is writing it"
            )
        error = reply[2].decode(errors="replace")
        raise store.error(f"writing run {self.run_id}: position {position} refused: {error}")

    async def _recover(self) -> None:
        """After a batch failed, once every reply is in: look at what Redis holds (a batch
        may have arrived though its reply did not), then send again what it lacks. A
        connection error or timeout is retried for the store's ``reconnect`` seconds."""
        store, fault = self.store, self._fault
        if isinstance(fault, StoreError):
            raise fault
        if not isinstance(fault, (*_TRANSIENT, _Gap, NoScriptError)):
            raise store.error(f"writing run {self.run_id}: {fault}") from fault
        failing_since = self._failing_since = self._failing_since or time.monotonic()
        while True:
            try:
                if isinstance(fault, NoScriptError):  # the scripts were flushed
                    await store.redis.script_load(_APPEND)
                await store._pipe().purge()  # a batch on a dropped connection runs never
                info = await store._info(self.key)
                break
            except _TRANSIENT as exc:
                if time.monotonic() - failing_since >= store.reconnect:
                    raise store.error(f"writing run {self.run_id}: {exc}") from exc
                await asyncio.sleep(_PAUSE)
            except RedisError as exc:
                raise store.error(f"writing run {self.run_id}: {exc}") from exc
        self._resync(info)
        self._fault = None
        self._expiry_set = None  # a batch that failed may have been the one to set it

    def _resync(self, info: RunInfo | None) -> None:
        """Go on from what Redis holds: the frames sent that it has are written, the others
        go back to be sent first; raises if it lost frames it had."""
        held = info.count if info is not None else 0
        if info is None and self.written > 0:
            raise StreamMissing(self.store.url, self.run_id, self.key)
        if held < self.written:
            raise self.store.error(
                f"run {self.run_id} lost frames: {self.written} were written, its stream "
                f"now holds {held} (Redis restarted without its newest writes: appendonly off?)"
            )
        if info is not None and info.held < info.count - info.first:  # never sent again
            raise self.store.error(
                f"run {self.run_id}'s stream lacks some of positions {info.first} to "
                f"{info.count - 1}: Redis refused a frame and took the next"
            )
        unacked, self._unacked = self._unacked, deque()
        again = [entry for entry in unacked if entry[0] >= held]
        arrived = len(unacked) - len(again)
        if arrived:
            self.written = unacked[arrived - 1][0] + 1
        while self._held and self._held[-1][0] >= held:  # to be counted again when resent
            self._held_bytes -= self._held.pop()[1]
        # A failed batch may have been the one to trim (this writer counts its trim as done
        # when it sends it): the next batch trims again, at least as far.
        first = info.first if info is not None else self.written
        self._retrim = first < self.first
        if first > self.first:  # trimmed further than this writer did
            self.first = first
            while self._held and self._held[0][0] < first:
                self._held_bytes -= self._held.popleft()[1]
        with self._lock:
            self._pending.extendleft(reversed(again))
        self._settle()

    def _trim_point(self, batch: list[Frame]) -> int:
        """The oldest position to keep once *batch* is in: within the count and byte
        bounds, the newest always kept."""
        entries = [(p, len(frame) + ENTRY_OVERHEAD) for p, frame, _ in batch]
        newest = entries[-1][0]
        # At most the newest (a batch sent again after a fault may be older than ``first``).
        keep_from = min(max(newest + 1 - self.store.keep_count, self.first), newest)
        total = self._held_bytes + sum(cost for _, cost in entries)
        if keep_from <= self.first and total <= self.store.keep_bytes:
            return keep_from  # within both bounds: nothing to drop
        for position, cost in itertools.chain(self._held, entries):
            if position < keep_from:
                total -= cost
            elif total <= self.store.keep_bytes or position >= newest:
                break
            else:
                keep_from = position + 1
                total -= cost
        return keep_from

    def _sent(self, batch: list[Frame], keep_from: int) -> None:
        self._retrim = False
        for position, frame, _ in batch:
            cost = len(frame) + ENTRY_OVERHEAD
            self._held.append((position, cost))
            self._held_bytes += cost
        while self._held and self._held[0][0] < keep_from:
            self._held_bytes -= self._held.popleft()[1]
        self.first = max(self.first, keep_from)
