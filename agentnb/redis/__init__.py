"""Runs that outlive their process: served runs' frames in Redis Streams.

::

    from agentnb.redis import RedisStore
    async with RedisStore("redis://127.0.0.1:6379/0") as store:
        writer = store.writer(run_id)             # append(frame) from any thread
        writer.append(frame); writer.append(end, last=True)
        await writer.aclose()                     # everything is in Redis
        async for frames in store.read(run_id, after=41):   # from any process
            ...

    # In a notebook cell: a run served with the store, live (its questions answerable)
    await agentnb.notebook.show(agentnb.redis.watch(run_id, "redis://127.0.0.1:6379/0"))

One stream per run (``agentnb:run:<run id>``), the frame at position *n* in the
entry ``<n+1>-0``; bounded in entries and bytes, kept ``ttl`` seconds after the
run's terminal frame. A reader behind the trimming gets :class:`Expired`; Redis
down, or restarted without its data, raises :class:`StoreError` naming the URL.
Needs the ``redis`` extra (redis-py's asyncio client; hiredis parses faster).
"""

from __future__ import annotations

try:
    import redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"agentnb.redis needs the redis extra ({exc.name} is missing): pip install 'agentnb[redis]'"
    ) from exc

from ._attach import Handle, RemoteError, RemoteLost, ShareClosed, attach, share
from ._store import Expired, RedisStore, RunInfo, RunWriter, StoreError, StreamMissing
from ._watch import Watch, watch

__all__ = [
    "Expired",
    "Handle",
    "RedisStore",
    "RemoteError",
    "RemoteLost",
    "RunInfo",
    "RunWriter",
    "ShareClosed",
    "StoreError",
    "StreamMissing",
    "Watch",
    "attach",
    "share",
    "watch",
]
