"""The Redis Streams store of served runs, against a real redis-server and redis-py's client.

Every frame is read back exactly once and in order, from any position, live or
from the backlog; the trimming (by entries and by bytes) is exact and a reader
behind it is told; the TTL follows the run's end; Redis going away, or coming
back with or without its data, gives a clear error or an exact continuation.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest
import redis._defaults
import redis.asyncio as aioredis

from agentnb import TextChunk
from agentnb.redis import Expired, RedisStore, StoreError, StreamMissing
from agentnb.redis._store import _APPEND, BATCH, ENTRY_OVERHEAD, redact
from agentnb.server._wire import parse_event_id, sse_data, sse_frame
from harness.redis import RedisServer, redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One redis-server for the module's tests that do not stop it."""
    with redis_server() as started:
        yield started


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    async with RedisStore(server.url) as opened:
        yield opened


def new_run() -> str:
    return uuid.uuid4().hex


def frame(n: int, size: int = 0) -> bytes:
    """The frame at position *n*: it names its position (padded to *size* bytes)."""
    head = f"frame {n};".encode()
    return head + b"x" * max(size - len(head), 0)


async def read_all(store: RedisStore, run_id: str, after: int = -1) -> list[bytes]:
    frames: list[bytes] = []
    async for batch in store.read(run_id, after):
        assert batch, "a reader never yields an empty batch"
        frames += batch
    return frames


async def write(store: RedisStore, run_id: str, n: int, *, end: bool = True) -> None:
    """Frames 0 .. n-1 of *run_id* (the last one terminal if *end*), all in Redis."""
    writer = store.writer(run_id)
    for i in range(n):
        writer.append(frame(i), last=end and i == n - 1)
    await writer.aclose()


# -- each frame once, in order ---------------------------------------------------------


async def test_frames_written_on_the_loop_are_read_back_once_in_order_from_any_position(
    store: RedisStore,
) -> None:
    run_id = new_run()
    await write(store, run_id, 2500)  # more than one pipeline and one XRANGE page
    assert 2 * BATCH < 2500
    whole = [frame(i) for i in range(2500)]
    assert await read_all(store, run_id) == whole
    assert await read_all(store, run_id, after=0) == whole[1:]
    assert await read_all(store, run_id, after=1234) == whole[1235:]
    assert await read_all(store, run_id, after=2498) == whole[2499:]
    assert await read_all(store, run_id, after=2499) == []  # the terminal frame was had
    info = await store.info(run_id)
    assert info is not None
    assert (info.count, info.first, info.held, info.ended) == (2500, 0, 2500, True)


async def test_frames_appended_from_threads_are_read_back_once_in_position_order(
    store: RedisStore,
) -> None:
    run_id = new_run()
    writer = store.writer(run_id)
    placed: dict[int, bytes] = {}  # position -> frame, as append answered

    def emitting(thread: int) -> None:
        for i in range(500):
            data = f"thread {thread} frame {i}".encode()
            placed[writer.append(data)] = data

    threads = [threading.Thread(target=emitting, args=(t,)) for t in range(4)]
    placed[writer.append(b"the start")] = b"the start"
    await writer.flush()  # the stream exists before anyone reads it
    reader = asyncio.create_task(read_all(store, run_id))
    for thread in threads:
        thread.start()

    def join() -> None:
        for thread in threads:
            thread.join()

    await asyncio.to_thread(join)
    placed[writer.append(b"the end", last=True)] = b"the end"
    await writer.aclose()
    got = await reader
    assert got == [placed[n] for n in range(len(placed))]
    assert len(got) == len(set(got)) == 2002
    for t in range(4):  # each thread's frames in the order it appended them
        mine = [f for f in got if f.startswith(f"thread {t} ".encode())]
        assert mine == [f"thread {t} frame {i}".encode() for i in range(500)]


async def test_two_live_readers_get_every_frame_once_while_it_is_written(
    store: RedisStore,
) -> None:
    run_id = new_run()
    writer = store.writer(run_id)
    writer.append(frame(0))
    await writer.flush()  # the stream exists before anyone reads it
    readers = [asyncio.create_task(read_all(store, run_id)) for _ in range(2)]
    for i in range(1, 300):
        writer.append(frame(i), last=i == 299)
        if i % 7 == 0:
            await asyncio.sleep(0.001)  # the readers wait in XREAD BLOCK now and then
    await writer.aclose()
    whole = [frame(i) for i in range(300)]
    assert await readers[0] == whole
    assert await readers[1] == whole


async def test_the_frames_of_one_loop_turn_go_in_one_pipeline(
    server: RedisServer, store: RedisStore
) -> None:
    async with aioredis.Redis.from_url(server.url) as admin:
        await admin.config_resetstat()
        writer = store.writer(new_run())
        for i in range(2 * BATCH + 5):  # one loop turn: three pipelines of at most BATCH
            writer.append(frame(i))
        await writer.aclose()
        stats = await admin.info("commandstats")
    assert stats["cmdstat_xadd"]["calls"] == 2 * BATCH + 5
    assert stats["cmdstat_evalsha"]["calls"] == 3
    # The first sets the key's expiry; the others, within a tenth of idle_ttl, leave it.
    assert stats["cmdstat_pexpire"]["calls"] == 1


async def test_a_frame_at_a_time_goes_as_a_plain_xadd(
    server: RedisServer, store: RedisStore
) -> None:
    # The script only where it does more than add: the first frame (it sets the expiry),
    # the terminal one (the TTL); the others, each acknowledged before the next, are XADDs.
    async with aioredis.Redis.from_url(server.url) as admin:
        await admin.config_resetstat()
        run_id = new_run()
        writer = store.writer(run_id)
        for i in range(20):
            writer.append(frame(i), last=i == 19)
            await writer.flush()
        await writer.aclose()
        stats = await admin.info("commandstats")
    assert stats["cmdstat_xadd"]["calls"] == 20
    assert stats["cmdstat_evalsha"]["calls"] == 2
    assert await read_all(store, run_id) == [frame(i) for i in range(20)]


async def test_frames_behind_plain_xadds_on_their_connection_go_as_plain_xadds(
    server: RedisServer, store: RedisStore
) -> None:
    # A frame per loop turn, faster than Redis answers: several on their way at once. Behind
    # plain XADDs (Redis runs a connection's commands in order) a frame needs no check.
    async with aioredis.Redis.from_url(server.url) as admin:
        run_id = new_run()
        writer = store.writer(run_id)
        writer.append(frame(0))
        await writer.flush()  # the first batch, a script's: it sets the expiry
        await admin.config_resetstat()
        for i in range(1, 300):
            writer.append(frame(i), last=i == 299)
            await asyncio.sleep(0)
        await writer.aclose()
        stats = await admin.info("commandstats")
    assert stats["cmdstat_xadd"]["calls"] == 299
    assert stats["cmdstat_evalsha"]["calls"] == 1  # the terminal frame's (the TTL)
    assert await read_all(store, run_id) == [frame(i) for i in range(300)]


@pytest.mark.parametrize("terminal", [False, True], ids=["xadd", "script"])
async def test_redis_refusing_writes_fails_the_writer_with_its_error_and_no_hole(
    server: RedisServer, store: RedisStore, terminal: bool
) -> None:
    # Redis out of memory (noeviction) refuses every write: the writer fails with Redis's
    # own words (a plain XADD's, or the script's when the frame is the terminal one), and
    # nothing after a refused frame is in the stream.
    async with aioredis.Redis.from_url(server.url) as admin:
        run_id = new_run()
        writer = store.writer(run_id)
        writer.append(frame(0))
        await writer.flush()
        policy = await admin.config_get("maxmemory-policy")
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)

        async def fill() -> None:
            for i in range(1, 2 if terminal else 50):  # till the writer knows: then it raises
                writer.append(frame(i), last=terminal)
                await asyncio.sleep(0)
            await asyncio.wait_for(writer.flush(), 10)

        try:
            with pytest.raises(StoreError, match=f"writing run {run_id}: .*maxmemory"):
                await fill()
        finally:
            await admin.config_set("maxmemory", 0)
            await admin.config_set("maxmemory-policy", str(policy["maxmemory-policy"]))
        with pytest.raises(StoreError):
            await writer.aclose()
    assert await read_all_without_end(store, run_id, 1) == [frame(0)]
    info = await store.info(run_id)
    assert info is not None
    assert (info.count, info.held) == (1, 1)


async def test_a_reader_finding_a_hole_in_a_stream_says_so_after_the_frames_before_it(
    server: RedisServer, store: RedisStore
) -> None:
    # A hole (not a trim: the stream holds frames before it) is never skipped silently.
    run_id = new_run()
    key = store.key(run_id)
    async with aioredis.Redis.from_url(server.url) as admin:
        for position in (0, 1, 3, 4):
            await admin.xadd(key, {"frame": frame(position)}, id=f"{position + 1}-0")
    reader = store.read(run_id)
    assert await anext(reader) == [frame(0), frame(1)]
    with pytest.raises(StoreError, match=f"run {run_id}'s stream lacks position 2"):
        await anext(reader)
    with pytest.raises(StoreError, match="lacks position 2"):  # resuming at the hole too
        await read_all(store, run_id, after=1)
    assert await read_all_without_end(store, run_id, 2, after=2) == [frame(3), frame(4)]


async def test_a_writer_sends_nothing_before_what_it_is_told_to_wait_for(
    store: RedisStore,
) -> None:
    # A served run's record is written first: whoever reads one of its frames finds it.
    run_id = new_run()
    writer = store.writer(run_id)
    record: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    writer.after(record)
    writer.append(frame(0))
    await asyncio.sleep(0.1)
    assert not await store.exists(run_id)
    record.set_exception(RuntimeError("however it ends"))
    writer.append(frame(1), last=True)
    await asyncio.wait_for(writer.aclose(), 5)
    assert await read_all(store, run_id) == [frame(0), frame(1)]
    with pytest.raises(RuntimeError):
        record.result()


async def test_the_terminal_frame_ends_readers_and_nothing_follows_it(store: RedisStore) -> None:
    run_id = new_run()
    writer = store.writer(run_id)
    writer.append(frame(0))
    await writer.flush()
    waiting = asyncio.create_task(read_all(store, run_id, after=0))
    await asyncio.sleep(0.05)  # (it waits in XREAD BLOCK, or is about to)
    writer.append(frame(1), last=True)
    with pytest.raises(ValueError, match="last frame is already in"):
        writer.append(frame(2))
    await writer.aclose()
    assert await waiting == [frame(1)]
    with pytest.raises(ValueError, match="writer is closed"):
        writer.append(frame(2))


async def test_a_resume_from_a_last_event_id_is_exact(store: RedisStore) -> None:
    run_id = new_run()
    writer = store.writer(run_id)
    for n in range(40):
        event = TextChunk(text=f"chunk {n}")
        writer.append(sse_frame(event, event.to_json(), run_id, writer.count), last=n == 39)
    await writer.aclose()
    first_read = []
    async with aclosing(store.read(run_id)) as reading:
        async for batch in reading:
            first_read += batch
            break  # the client drops here
    last_id = first_read[-1].split(b"\r\n", 1)[0].removeprefix(b"id: ").decode()
    after = parse_event_id(last_id, run_id)
    rest = await read_all(store, run_id, after)
    joined = first_read + rest
    assert [f"{run_id}:{n}".encode() in f for n, f in enumerate(joined)] == [True] * 40
    assert [sse_data(f) for f in joined] == [
        TextChunk(text=f"chunk {n}").to_json() for n in range(40)
    ]
    after = parse_event_id(f"{run_id}:17", run_id)
    assert await read_all(store, run_id, after) == joined[18:]


async def test_a_position_past_the_end_and_an_unknown_run_are_refused(store: RedisStore) -> None:
    run_id = new_run()
    await write(store, run_id, 5, end=False)
    with pytest.raises(ValueError, match=r"has 5 frames \(positions 0 to 4\); position 5"):
        await read_all(store, run_id, after=5)
    unknown = new_run()
    with pytest.raises(StreamMissing, match=f"run {unknown} has no stream"):
        await read_all(store, unknown)
    assert not await store.exists(unknown)
    assert await store.info(unknown) is None


async def test_a_second_writer_of_a_run_is_refused_not_interleaved(store: RedisStore) -> None:
    run_id = new_run()
    await write(store, run_id, 3, end=False)
    second = store.writer(run_id, start=1)  # thinks it is at position 1: Redis has 0 to 2
    second.append(b"intruder")
    with pytest.raises(StoreError, match=r"refused position 1.*another writer"):
        await second.aclose()
    with pytest.raises(StoreError, match="refused position 1"):
        second.append(b"again")
    assert await read_all_without_end(store, run_id, 3) == [frame(i) for i in range(3)]
    going_on = store.writer(run_id, start=3)  # a writer that knows where the stream is
    going_on.append(frame(3))
    await going_on.flush()
    # A frame at a time, acknowledged, goes as a plain XADD: Redis refuses it just the same.
    other = store.writer(run_id, start=4)
    other.append(frame(4))
    await other.aclose()
    going_on.append(b"intruder")
    with pytest.raises(StoreError, match=r"refused position 4.*another writer"):
        await going_on.aclose()
    assert await read_all_without_end(store, run_id, 5) == [frame(i) for i in range(5)]


async def test_a_batch_behind_one_that_failed_adds_nothing(
    server: RedisServer, store: RedisStore
) -> None:
    # Batches go out without waiting for the replies: one sent while an earlier one has no
    # reply yet checks that the stream holds exactly the positions before its own.
    run_id = new_run()
    await write(store, run_id, 3, end=False)
    key = store.key(run_id)
    async with aioredis.Redis.from_url(server.url) as admin:

        async def batch(first: int, check: bool) -> object:
            data = frame(first)
            args = (first, "", "", "0", data, 1, str(len(data)), "1" if check else "")
            return await admin.eval(_APPEND, 1, key, *args)

        assert await batch(5, check=True) == [b"held", 3]  # positions 3 and 4 never came
        assert await batch(2, check=True) == [b"held", 3]  # position 2 is in already
        assert await admin.xlen(key) == 3
        assert await batch(3, check=True) == 0
    assert await read_all_without_end(store, run_id, 4) == [frame(i) for i in range(4)]


async def test_batches_in_flight_when_their_connection_is_killed_are_sent_again_once(
    server: RedisServer, store: RedisStore
) -> None:
    run_id = new_run()
    writer = store.writer(run_id)
    killed = 0
    async with aioredis.Redis.from_url(server.url) as admin:
        for i in range(1500):
            writer.append(frame(i), last=i == 1499)
            await asyncio.sleep(0)  # a batch per loop turn: several on their way at once
            if i % 300 == 150:  # the writers' connection (and any other but this one) drops
                killed += await admin.client_kill_filter(_type="normal", skipme=True)
        await asyncio.wait_for(writer.aclose(), 10)
    assert killed >= 5
    assert await read_all(store, run_id) == [frame(i) for i in range(1500)]


async def test_a_user_not_allowed_to_kill_clients_still_writes_through_dropped_connections(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A dropped connection is killed in Redis before the writer looks at what it holds; an
    # ACL user may not (CLIENT KILL refused): the writer goes on as if it were gone.
    host_port = server.url.removeprefix("redis://").partition("/")[0]
    async with aioredis.Redis.from_url(server.url) as admin:
        await admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-client", "+client|info"],
        )
        async with RedisStore(f"redis://limited:secret@{host_port}/0") as store:
            run_id = new_run()
            writer = store.writer(run_id)
            for i in range(600):
                writer.append(frame(i), last=i == 599)
                await asyncio.sleep(0)
                if i % 200 == 100:
                    await admin.client_kill_filter(_type="normal", skipme=True)
            await asyncio.wait_for(writer.aclose(), 10)
            assert await read_all(store, run_id) == [frame(i) for i in range(600)]
    assert "a dropped Redis connection not killed" in caplog.text


async def test_the_scripts_flushed_mid_run_the_writer_goes_on_and_still_trims(
    server: RedisServer,
) -> None:
    # SCRIPT FLUSH fails the batches going (NOSCRIPT): the writer loads the script again and
    # resends exactly what Redis lacks, and a trim the failed batch carried still happens.
    size = 1000
    cost = size + ENTRY_OVERHEAD
    async with (
        RedisStore(server.url, keep_bytes=50 * cost) as store,
        aioredis.Redis.from_url(server.url) as admin,
    ):
        run_id = new_run()
        writer = store.writer(run_id)
        for i in range(40):
            writer.append(frame(i, size))
        await writer.flush()
        await admin.script_flush()
        for i in range(40, 60):
            writer.append(frame(i, size), last=i == 59)
        await asyncio.wait_for(writer.aclose(), 10)
        assert await admin.xlen(store.key(run_id)) == 50  # the newest 50: the byte bound
        assert await read_all(store, run_id, after=9) == [frame(i, size) for i in range(10, 60)]


async def test_a_redis_that_stops_answering_fails_the_writer_within_its_deadlines() -> None:
    # Redis takes the bytes but never answers (SIGSTOP): the writer's batch times out, its
    # look at what Redis holds times out, and after `reconnect` it fails: never a hang. So
    # does a writer whose sends fill the connection's socket buffers (they wait for room).
    with redis_server() as stopped:
        assert stopped.process is not None
        async with RedisStore(stopped.url, block=0.5, reconnect=0.5) as store:
            run_id, big_id = new_run(), new_run()
            writer, big = store.writer(run_id), store.writer(big_id)
            writer.append(frame(0))
            big.append(frame(0))
            await asyncio.gather(writer.flush(), big.flush())
            stopped.process.send_signal(signal.SIGSTOP)
            try:
                writer.append(frame(1))
                for i in range(1, 100):  # 25 MB: more than the socket buffers hold
                    big.append(frame(i, 256 << 10))
                    await asyncio.sleep(0)
                start = time.monotonic()
                for failing, named in ((writer, run_id), (big, big_id)):
                    with pytest.raises(StoreError, match=f"writing run {named}"):
                        await asyncio.wait_for(failing.flush(), 60)
                assert time.monotonic() - start < 30
            finally:
                stopped.process.send_signal(signal.SIGCONT)
            for failed in (writer, big):
                with pytest.raises(StoreError):
                    await failed.aclose()


async def test_a_stall_past_the_deadline_the_writers_go_on_with_each_frame_once() -> None:
    # Redis stops for longer than the replies' deadline while two writers stream: their
    # connection is dropped with batches unread in Redis's socket buffer. It is killed in
    # Redis before the writers look at what it holds, so those never run after the look
    # (the resend would be refused, as if another writer wrote the run), and every frame
    # is in once when Redis comes back within `reconnect`.
    with redis_server() as stalled:
        assert stalled.process is not None
        async with (
            RedisStore(stalled.url, block=0.5, reconnect=15) as store,
            RedisStore(stalled.url, block=0.5, reconnect=15, keep_count=5) as short,
        ):
            runs = [new_run(), new_run()]
            writers = [store.writer(run_id) for run_id in runs]
            # And a writer that trims to 5 frames, 2,490 sent during the stall: they go again,
            # older than what it had trimmed to, and the newest 5 stay (never none).
            trimmed = short.writer(new_run())
            for i in range(10):
                trimmed.append(frame(i))
            await trimmed.flush()
            for writer in writers:
                writer.append(frame(0))
            await asyncio.gather(*(writer.flush() for writer in writers))
            loop = asyncio.get_running_loop()
            stopped = loop.time() + 0.3
            resumed = stopped + 7  # the deadline is block + 5 s
            n = 1
            try:
                while loop.time() < resumed + 1:
                    if stopped <= loop.time() < resumed and stopped > 0:
                        stalled.process.send_signal(signal.SIGSTOP)
                        stopped = 0
                    elif loop.time() >= resumed and stopped == 0:
                        stalled.process.send_signal(signal.SIGCONT)
                        stopped = -1
                    if stopped == 0 and trimmed.count < 2500:  # while Redis is stopped
                        for _ in range(10):
                            trimmed.append(frame(trimmed.count))
                    for writer in writers:
                        writer.append(frame(n))
                    n += 1
                    await asyncio.sleep(0.005)
            finally:
                stalled.process.send_signal(signal.SIGCONT)
            assert stopped == -1
            for writer in writers:
                writer.append(frame(n), last=True)
                await asyncio.wait_for(writer.aclose(), 30)
            for run_id in runs:
                assert await read_all(store, run_id) == [frame(i) for i in range(n + 1)]
            trimmed.append(frame(2500), last=True)
            await asyncio.wait_for(trimmed.aclose(), 30)
            kept = await read_all(short, trimmed.run_id, after=2495)
            assert kept == [frame(i) for i in range(2496, 2501)]


async def read_all_without_end(
    store: RedisStore, run_id: str, n: int, after: int = -1
) -> list[bytes]:
    """The first *n* frames after *after* of a run that has not ended."""
    frames: list[bytes] = []
    async with aclosing(store.read(run_id, after)) as reading:
        async for batch in reading:
            frames += batch
            if len(frames) >= n:
                break
    return frames


# -- trimming -------------------------------------------------------------------------


async def test_a_run_keeps_its_newest_frames_by_count_exactly(server: RedisServer) -> None:
    async with RedisStore(server.url, keep_count=10) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        for i in range(95):
            writer.append(frame(i))
            if i % 10 == 3:
                await writer.flush()  # several pipelines, each trimming
        await writer.aclose()
        info = await store.info(run_id)
        assert info is not None
        assert (info.count, info.first, info.held) == (95, 85, 10)
        assert await read_all_without_end(store, run_id, 10, after=84) == [
            frame(i) for i in range(85, 95)
        ]


async def test_a_run_keeps_its_newest_frames_by_bytes_and_always_the_newest(
    server: RedisServer,
) -> None:
    cost = 200 + ENTRY_OVERHEAD
    async with RedisStore(server.url, keep_bytes=7 * cost + cost // 2) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        for i in range(50):
            writer.append(frame(i, size=200))
            await asyncio.sleep(0)
        await writer.flush()
        info = await store.info(run_id)
        assert info is not None
        assert (info.count, info.first, info.held) == (50, 43, 7)
        writer.append(frame(50, size=100_000), last=True)  # bigger than the bound: it stays
        await writer.aclose()
        info = await store.info(run_id)
        assert info is not None
        assert (info.count, info.first, info.held, info.ended) == (51, 50, 1, True)
        assert await read_all(store, run_id, after=49) == [frame(50, size=100_000)]


async def test_a_reader_behind_the_trimming_is_told_with_the_first_position_held(
    server: RedisServer,
) -> None:
    async with RedisStore(server.url, keep_count=20) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        for i in range(15):
            writer.append(frame(i))
        await writer.flush()
        reader = store.read(run_id)
        assert await anext(reader) == [frame(i) for i in range(15)]
        for i in range(15, 60):  # the reader stops reading meanwhile
            writer.append(frame(i))
        await writer.flush()
        with pytest.raises(Expired) as behind:
            await anext(reader)
        assert (behind.value.position, behind.value.first) == (15, 40)
        with pytest.raises(Expired) as resumed:  # and resuming there is refused too
            await read_all(store, run_id, after=14)
        assert (resumed.value.position, resumed.value.first) == (15, 40)
        writer.append(frame(60), last=True)
        await writer.aclose()
        assert await read_all(store, run_id, after=40) == [frame(i) for i in range(41, 61)]


# -- expiry -------------------------------------------------------------------------------


async def test_the_stream_expires_ttl_seconds_after_the_run_ends(server: RedisServer) -> None:
    async with RedisStore(server.url, ttl=0.3, idle_ttl=60) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        writer.append(frame(0))
        await writer.flush()
        live = await store.info(run_id)
        assert live is not None
        assert live.ttl is not None
        assert 0.3 < live.ttl <= 60  # while it runs: the idle TTL, refreshed by each write
        writer.append(frame(1), last=True)
        await writer.aclose()
        ended = await store.info(run_id)
        assert ended is not None
        assert ended.ended
        assert ended.ttl is not None
        assert 0 < ended.ttl <= 0.3
        await eventually_gone(store, run_id)
        with pytest.raises(StreamMissing):
            await read_all(store, run_id)


async def test_while_a_run_goes_on_its_expiry_is_set_again_every_tenth_of_idle_ttl(
    server: RedisServer,
) -> None:
    async with RedisStore(server.url, idle_ttl=2.0) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        writer.append(frame(0))
        await writer.flush()
        first = await store.info(run_id)
        assert first is not None
        assert first.ttl is not None
        assert 1.8 < first.ttl <= 2.0
        lowest = first.ttl
        for i in range(1, 25):  # 1.2 s of writes: without a refresh 0.8 s would be left
            await asyncio.sleep(0.05)
            writer.append(frame(i))
            await writer.flush()
            info = await store.info(run_id)
            assert info is not None
            assert info.ttl is not None
            lowest = min(lowest, info.ttl)
        assert lowest > 1.6, lowest  # nine tenths of idle_ttl after the last write, at least
        writer.append(frame(25), last=True)
        await writer.aclose()


async def eventually_gone(store: RedisStore, run_id: str) -> None:
    start = time.perf_counter()
    while await store.exists(run_id):
        assert time.perf_counter() - start < 5, f"run {run_id}'s stream did not expire"
        await asyncio.sleep(0.02)


async def test_a_block_longer_than_redis_pys_default_socket_timeout_waits(
    server: RedisServer,
) -> None:
    block = redis._defaults.DEFAULT_SOCKET_TIMEOUT + 0.5  # an XREAD BLOCK that would time out
    # reconnect=0: a socket timeout would fail the reader, not be retried out of sight.
    async with RedisStore(server.url, block=block, reconnect=0) as store:
        run_id = new_run()
        writer = store.writer(run_id)
        writer.append(frame(0))
        await writer.flush()
        reader = asyncio.create_task(read_all(store, run_id, after=0))
        await asyncio.sleep(block + 0.5)  # the reader sat in one whole BLOCK, and into the next
        assert not reader.done()
        writer.append(frame(1), last=True)
        await writer.aclose()
        assert await reader == [frame(1)]


# -- Redis down, or restarted --------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # nothing listens on it once the socket is closed


async def test_no_redis_at_the_url_is_a_clear_error_naming_it_without_its_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    shown = url.replace(":hunter2@", ":***@")
    async with RedisStore(url, reconnect=0.2) as store:
        run_id = new_run()
        with pytest.raises(StoreError, match=re.escape(f"Redis at {shown}: looking up run")):
            await store.exists(run_id)
        with pytest.raises(StoreError, match=re.escape(f"Redis at {shown}: reading run")):
            await asyncio.wait_for(read_all(store, run_id), 10)
        writer = store.writer(run_id)
        writer.append(frame(0))
        with pytest.raises(StoreError, match=re.escape(f"Redis at {shown}: writing run")) as failed:
            await asyncio.wait_for(writer.flush(), 10)
        assert "hunter2" not in str(failed.value)
        with pytest.raises(StoreError, match="writing run"):
            writer.append(frame(1))  # the agent's next emit is told
        with pytest.raises(StoreError):
            await writer.aclose()


def test_a_password_in_the_url_is_hidden_wherever_it_is_written() -> None:
    assert redact("redis://:s3cr%40t@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact("rediss://app:s3cret@cache/1") == "rediss://app:***@cache/1"
    assert redact("unix:///run/redis.sock?db=2&password=s3cret") == (
        "unix:///run/redis.sock?db=2&password=***"
    )
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_redis_stopped_mid_stream_fails_the_writer_and_the_reader_clearly() -> None:
    with redis_server() as server:
        async with RedisStore(server.url, reconnect=0.5) as store:
            run_id = new_run()
            writer = store.writer(run_id)
            writer.append(frame(0))
            await writer.flush()
            async with aclosing(store.read(run_id)) as reader:
                assert await anext(reader) == [frame(0)]
                waiting = asyncio.ensure_future(anext(reader))  # in XREAD BLOCK
                await asyncio.sleep(0.05)
                await asyncio.to_thread(server.stop)
                writer.append(frame(1))
                url = re.escape(server.url)
                with pytest.raises(StoreError, match=f"Redis at {url}: reading run {run_id}"):
                    await asyncio.wait_for(waiting, 10)
                with pytest.raises(StoreError, match=f"Redis at {url}: writing run {run_id}"):
                    await asyncio.wait_for(writer.flush(), 10)
                with pytest.raises(StoreError):
                    await writer.aclose()


async def test_redis_restarted_without_its_data_is_a_clear_error_not_a_stream_with_a_hole() -> None:
    with redis_server() as server:
        async with RedisStore(server.url, reconnect=10) as store:
            run_id = new_run()
            writer = store.writer(run_id)
            for i in range(20):
                writer.append(frame(i))
            await writer.flush()
            async with aclosing(store.read(run_id)) as reader:
                assert await anext(reader) == [frame(i) for i in range(20)]
                waiting = asyncio.ensure_future(anext(reader))  # in XREAD BLOCK
                await asyncio.sleep(0.05)
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
                with pytest.raises(StreamMissing, match=f"run {run_id} has no stream"):
                    await asyncio.wait_for(waiting, 10)
            writer.append(frame(20))
            with pytest.raises(StreamMissing, match=f"run {run_id} has no stream"):
                await asyncio.wait_for(writer.flush(), 10)
            assert not await store.exists(run_id)  # nothing began it again
            with pytest.raises(StoreError):
                await writer.aclose()


async def test_redis_restarted_with_appendonly_the_run_goes_on_from_the_exact_position() -> None:
    with redis_server(appendonly=True) as server:
        async with RedisStore(server.url, reconnect=10) as store:
            run_id = new_run()
            writer = store.writer(run_id)
            for i in range(50):
                writer.append(frame(i))
            await writer.flush()
            reader = asyncio.create_task(read_all(store, run_id))  # live across the restart
            await asyncio.sleep(0.05)
            await asyncio.to_thread(server.stop)
            for i in range(50, 100):  # while Redis is down: the writer keeps trying
                writer.append(frame(i))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(server.start)
            for i in range(100, 150):
                writer.append(frame(i), last=i == 149)
            await asyncio.wait_for(writer.aclose(), 10)
            whole = [frame(i) for i in range(150)]
            assert await asyncio.wait_for(reader, 10) == whole
            assert await read_all(store, run_id, after=49) == whole[50:]
