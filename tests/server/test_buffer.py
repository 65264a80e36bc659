"""The replay buffer on its own: what it keeps, for whom, and whom it cuts off (issue 9, 3-4).

Pure and thread-safe (agentnb/server/_buffer.py): no loop, no network, so every
rule is checked exactly, frame by frame.
"""

from __future__ import annotations

import threading

import pytest

from agentnb.server._buffer import FRAME_OVERHEAD, Expired, ReplayBuffer


def frame(n: int, size: int = 100) -> bytes:
    head = f"{n}:".encode()
    return head + b"x" * (size - len(head))


def buffer(keep: int = 10, lag: int = 40, keep_bytes: int = 1 << 30) -> ReplayBuffer:
    return ReplayBuffer(keep_count=keep, keep_bytes=keep_bytes, lag_count=lag, lag_bytes=1 << 40)


def test_it_keeps_the_newest_frames_and_counts_every_one() -> None:
    buf = buffer(keep=10)
    for n in range(25):
        buf.append(frame(n))
    assert buf.count == 25
    assert buf.first == 15
    assert buf.read(15) == [frame(n) for n in range(15, 25)]
    assert buf.read(20) == [frame(n) for n in range(20, 25)]
    assert buf.read(25) == []
    with pytest.raises(Expired) as gone:
        buf.read(14)
    assert (gone.value.position, gone.value.first) == (14, 15)


def test_it_keeps_at_most_its_bytes_but_always_the_newest_frame() -> None:
    size = 100 + FRAME_OVERHEAD
    buf = buffer(keep=1000, keep_bytes=3 * size)
    for n in range(10):
        buf.append(frame(n))
    assert buf.first == 7
    assert buf.nbytes == 3 * size
    buf.append(frame(10, size=10_000))  # bigger than the whole allowance: it alone stays
    assert buf.read(buf.first) == [frame(10, size=10_000)]


def test_append_says_what_it_added_net() -> None:
    size = 100 + FRAME_OVERHEAD
    buf = buffer(keep=2)
    assert buf.append(frame(0)) == size
    assert buf.append(frame(1)) == size
    assert buf.append(frame(2)) == 0  # one in, one out
    assert buf.nbytes == 2 * size


def test_a_connected_reader_that_is_merely_slow_loses_nothing() -> None:
    buf = buffer(keep=10, lag=40)
    slow = buf.attach(0)
    for n in range(35):
        buf.append(frame(n))
    assert buf.first == 0  # all 35 kept for it, though the replay keeps 10
    assert buf.advance(slow) == [frame(n) for n in range(35)]
    assert slow.position == 35
    buf.append(frame(35))
    assert buf.first == 26  # read: only the replay's 10 are kept now


def test_a_reader_1_6_buffers_behind_reads_every_frame_once_in_order() -> None:
    # One client stalled for good, another reading in batches of 16 (up to 1.6 buffers
    # behind): the stalled one is cut off when it passes its own limit; the other gets
    # every frame, once, in order.
    buf = buffer(keep=10, lag=40)
    stalled = buf.attach(0)
    reader = buf.attach(0)
    got: list[bytes] = []
    for n in range(430):
        buf.append(frame(n))
        if n % 16 == 15:
            got.extend(buf.advance(reader))
    got.extend(buf.advance(reader))
    assert got == [frame(n) for n in range(430)]
    assert stalled.expired
    assert not reader.expired
    with pytest.raises(Expired):
        buf.advance(stalled)


def test_each_reader_is_judged_by_its_own_distance_in_bytes_too() -> None:
    buf = ReplayBuffer(keep_count=1000, keep_bytes=1000, lag_count=1000, lag_bytes=5000)
    far, near = buf.attach(0), buf.attach(0)
    for n in range(60):
        buf.append(frame(n))
        if n % 2 == 0:
            buf.advance(near)
    assert far.expired  # 60 frames of 148 bytes behind: over 5,000
    assert not near.expired


def test_attaching_or_reading_a_gone_position_says_so() -> None:
    buf = buffer(keep=5)
    for n in range(20):
        buf.append(frame(n))
    with pytest.raises(Expired):
        buf.attach(3)
    cursor = buf.attach(15)
    assert buf.advance(cursor) == [frame(n) for n in range(15, 20)]


def test_detached_readers_hold_nothing() -> None:
    buf = buffer(keep=5)
    cursor = buf.attach(0)
    for n in range(20):
        buf.append(frame(n))
    assert buf.first == 0
    buf.detach(cursor)
    buf.append(frame(20))
    assert buf.first == 16
    assert buf.readers == 0


def test_trim_drops_only_what_no_connected_reader_needs() -> None:
    size = 100 + FRAME_OVERHEAD
    buf = buffer(keep=100)
    for n in range(50):
        buf.append(frame(n))
    cursor = buf.attach(30)
    freed = buf.trim(goal=0)
    assert freed == 30 * size
    assert buf.first == 30
    assert buf.advance(cursor)[0] == frame(30)


def test_cut_slowest_cuts_the_reader_furthest_behind_and_frees_what_it_held() -> None:
    size = 100 + FRAME_OVERHEAD
    buf = buffer(keep=10, lag=1000)
    slow = buf.attach(0)
    fast = buf.attach(0)
    for n in range(50):
        buf.append(frame(n))
    buf.advance(fast)
    assert buf.behind() == 40 * size  # held only for the slow one (the replay keeps 10)
    assert buf.cut_slowest() == 40 * size
    assert slow.expired
    assert not fast.expired
    assert buf.first == 40


def test_clear_drops_everything_and_cuts_every_reader() -> None:
    buf = buffer()
    cursor = buf.attach(0)
    for n in range(5):
        buf.append(frame(n))
    assert buf.clear() == buf.count * (100 + FRAME_OVERHEAD)
    assert buf.nbytes == 0
    assert cursor.expired


def test_after_the_last_frame_nothing_more_goes_in() -> None:
    buf = buffer()
    buf.append(frame(0), last=True)
    assert buf.ended
    with pytest.raises(ValueError, match="last frame"):
        buf.append(frame(1))


def test_threads_appending_and_reading_at_once_agree() -> None:
    buf = buffer(keep=50, lag=100_000)
    readers = [buf.attach(0) for _ in range(3)]
    got: list[list[bytes]] = [[] for _ in readers]
    lock = threading.Lock()
    done = threading.Event()

    def write(base: int) -> None:
        for n in range(2000):
            with lock:  # one writer at a time: the run's lock does this in the server
                buf.append(frame(base * 10_000 + n))

    def read(i: int) -> None:
        while not done.is_set() or buf.count > readers[i].position:
            got[i].extend(buf.advance(readers[i]))

    threads = [threading.Thread(target=write, args=(b,)) for b in range(4)]
    threads += [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads[:4]:
        t.join()
    done.set()
    for t in threads[4:]:
        t.join()
    everything = buf.read(buf.first)
    assert buf.count == 8000
    assert all(len(g) == 8000 for g in got)
    assert got[0] == got[1] == got[2]
    assert got[0][-len(everything) :] == everything
