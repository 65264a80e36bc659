"""A served run's replay buffer: its events' SSE frames, by position, bounded in count and bytes.

Pure and thread-safe: no event loop, no network. Positions count the run's
frames from 0 (the SSE id is ``<run id>:<position>``). The buffer keeps the
newest frames, at most ``keep_count`` of them and ``keep_bytes`` bytes, so a
client that reconnects can resume. Older frames go, except those a connected
reader (a :class:`Cursor`) has not read yet: a reader that is merely slow loses
nothing. A reader further behind than ``lag_count`` frames or ``lag_bytes``
bytes (its own distance from the newest frame, whatever the other readers do)
is cut off instead: its cursor says ``expired``, and it must resume (which
answers "expired" if its position is gone).

This is the interface a store of served runs implements; an in-memory one here,
a Redis Streams one for runs that outlive their process.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Cursor", "Expired", "ReplayBuffer"]

FRAME_OVERHEAD = 48
"""Bytes a frame costs beyond its length (the bytes object's header, its slot)."""


class Expired(Exception):
    """A position that the buffer no longer holds (or a reader that fell too far behind)."""

    def __init__(self, position: int, first: int) -> None:
        super().__init__(f"position {position} is gone; the oldest buffered is {first}")
        self.position = position
        self.first = first


class Cursor:
    """A connected reader's position: the buffer keeps what it has not read yet."""

    __slots__ = ("expired", "position")

    def __init__(self, position: int) -> None:
        self.position = position  # the next frame to read
        self.expired = False  # cut off: it was further behind than the buffer lets it


class ReplayBuffer:
    """See the module docstring. Every method may be called from any thread."""

    def __init__(self, *, keep_count: int, keep_bytes: int, lag_count: int, lag_bytes: int) -> None:
        if keep_count < 1 or keep_bytes < 1:
            raise ValueError("a replay buffer keeps at least one frame and one byte")
        self.keep_count = keep_count
        self.keep_bytes = keep_bytes
        self.lag_count = max(lag_count, keep_count)
        self.lag_bytes = max(lag_bytes, keep_bytes)
        self.lock = threading.Lock()
        self._frames: deque[bytes] = deque()
        # Where each frame starts in the run's bytes so far (each costs len + FRAME_OVERHEAD):
        # the bytes between two positions in O(1).
        self._starts: deque[int] = deque()
        self._appended = 0  # the cost of every frame ever appended
        self._first = 0  # the position of _frames[0]
        self._cursors: set[Cursor] = set()
        self.ended = False  # the run's terminal frame is in

    @property
    def count(self) -> int:
        """How many frames were ever appended (the next position)."""
        return self._first + len(self._frames)

    @property
    def first(self) -> int:
        """The oldest position still held."""
        return self._first

    @property
    def nbytes(self) -> int:
        """What the held frames cost, in bytes."""
        return self._appended - self._starts[0] if self._starts else 0

    def append(self, frame: bytes, *, last: bool = False) -> int:
        """Add the next frame (*last*: the run's terminal one); return the bytes it added.

        The return value is negative when older frames went (the net change).
        """
        size = len(frame) + FRAME_OVERHEAD
        with self.lock:
            if self.ended:
                raise ValueError("the run's last frame is already in")
            self._frames.append(frame)
            self._starts.append(self._appended)
            self._appended += size
            self.ended = last
            return size - self._evict()

    def read(self, position: int) -> list[bytes]:
        """The frames from *position* on (none yet: ``[]``); raises ``Expired`` if it is gone."""
        with self.lock:
            return self._read(position)

    def _read(self, position: int) -> list[bytes]:
        offset = position - self._first
        if offset < 0:
            raise Expired(position, self._first)
        frames = self._frames
        if offset >= len(frames):
            return []
        if offset == 0:
            return list(frames)
        return [frames[i] for i in range(offset, len(frames))]

    def attach(self, position: int) -> Cursor:
        """A connected reader at *position* (its frames are kept until it reads them)."""
        with self.lock:
            if position < self._first:
                raise Expired(position, self._first)
            cursor = Cursor(position)
            self._cursors.add(cursor)
            return cursor

    def advance(self, cursor: Cursor) -> list[bytes]:
        """The frames the reader has not had, moving it past them; raises ``Expired``."""
        with self.lock:
            if cursor.expired:
                raise Expired(cursor.position, self._first)
            frames = self._read(cursor.position)
            cursor.position += len(frames)
            return frames

    def detach(self, cursor: Cursor) -> None:
        with self.lock:
            self._cursors.discard(cursor)

    @property
    def readers(self) -> int:
        """How many connected readers there are."""
        return len(self._cursors)

    def trim(self, goal: int) -> int:
        """Drop the oldest frames no connected reader needs until at most *goal* bytes are held.

        For the server's memory budget; returns the bytes freed.
        """
        with self.lock:
            keep_from = min((c.position for c in self._cursors if not c.expired), default=None)
            freed = 0
            while self._frames and self.nbytes > goal:
                if keep_from is not None and self._first >= keep_from:
                    break
                freed += self._drop_one()
            return freed

    def cut_slowest(self) -> int:
        """Cut off the reader furthest behind and drop what only it needed; return bytes freed."""
        with self.lock:
            live = [c for c in self._cursors if not c.expired]
            if not live:
                return 0
            min(live, key=lambda c: c.position).expired = True
            return self._evict()

    def behind(self) -> int:
        """Bytes held only for the reader furthest behind (what ``cut_slowest`` would free)."""
        with self.lock:
            live = sorted(c.position for c in self._cursors if not c.expired)
            if not live or not self._frames:
                return 0
            # Without it, frames before the next reader and before the replay window go.
            window, newest = max(self.count - self.keep_count, self._first), self.count - 1
            while window < newest and self._appended - self._start(window) > self.keep_bytes:
                window += 1
            keep_from = min([window, *live[1:]])
            return max(self._start(keep_from) - self._starts[0], 0)

    def clear(self) -> int:
        """Drop every frame (the run is evicted); return the bytes freed."""
        with self.lock:
            freed = self.nbytes
            self._first += len(self._frames)
            self._frames.clear()
            self._starts.clear()
            for cursor in self._cursors:
                cursor.expired = True
            return freed

    # -- eviction (under the lock) ------------------------------------------------

    def _evict(self) -> int:
        """Drop frames beyond the keep limits that no reader within its lag needs."""
        freed = 0
        count = self.count
        cursors = self._cursors
        for cursor in cursors:  # each reader's fate depends only on its own position
            if not cursor.expired and (
                count - cursor.position > self.lag_count
                or self._appended - self._start(cursor.position) > self.lag_bytes
            ):
                cursor.expired = True
        keep_from = min((c.position for c in cursors if not c.expired), default=count)
        frames = self._frames
        # The newest frame always stays: a reader that resumes at the end gets it.
        while len(frames) > 1 and (len(frames) > self.keep_count or self.nbytes > self.keep_bytes):
            if self._first >= keep_from:
                break
            freed += self._drop_one()
        return freed

    def _start(self, position: int) -> int:
        """Where the frame at *position* starts (the newest's end past the last one)."""
        offset = max(position - self._first, 0)
        return self._starts[offset] if offset < len(self._starts) else self._appended

    def _drop_one(self) -> int:
        self._frames.popleft()
        start = self._starts.popleft()
        self._first += 1
        return (self._starts[0] if self._starts else self._appended) - start
