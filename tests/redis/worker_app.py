"""The agents of the worker tests, and a server process for them.

``python -m agentnb worker --app tests.redis.worker_app:agents`` runs :data:`agents`;
``python -m tests.redis.worker_app`` serves :func:`here` and :func:`linger` only (the others are the
workers'), with ``create_app(store=RedisStore($AGENTNB_TEST_REDIS, lease=$AGENTNB_TEST_LEASE),
workers=$AGENTNB_TEST_WORKERS)`` (auto, always or never) on a free port.

Each worker agent first emits ``pid <its process id>`` (where it runs) and counts its
starts in Redis (``test:starts:<tag>``), so a test sees which process ran it and that
it was not run twice.
"""

from __future__ import annotations

import asyncio
import os

import redis

import agentnb
from agentnb.redis import RedisStore
from agentnb.server import create_app
from harness.web import serve_child

URL_VARIABLE = "AGENTNB_TEST_REDIS"
LEASE_VARIABLE = "AGENTNB_TEST_LEASE"
WORKERS_VARIABLE = "AGENTNB_TEST_WORKERS"


def _started(tag: str) -> None:
    agentnb.emit(f"pid {os.getpid()}")
    with redis.Redis.from_url(os.environ[URL_VARIABLE]) as client:
        client.incr(f"test:starts:{tag}")


async def counted(tag: str = "", n: int = 30) -> int:
    """Emits "0" .. "n-1" a few milliseconds apart; returns n."""
    _started(tag)
    for i in range(n):
        agentnb.emit(str(i))
        await asyncio.sleep(0.005)
    return n


async def forever(tag: str = "") -> None:
    """Emits a number every 20 ms until cancelled."""
    _started(tag)
    i = 0
    while True:
        agentnb.emit(str(i))
        i += 1
        await asyncio.sleep(0.02)


async def confirm(tag: str = "") -> str:
    """Asks "Go on?" (yes or no) and returns the answer."""
    _started(tag)
    return await agentnb.ask("Go on?", choices=["yes", "no"])


agents = [counted, forever, confirm]


async def here(text: str = "") -> int:
    """Runs in the server process: emits ``pid <its process id>``."""
    agentnb.emit(f"pid {os.getpid()}")
    return 0


async def linger() -> None:
    """Runs in the server process: emits ``pid <its process id>``, then waits until cancelled."""
    agentnb.emit(f"pid {os.getpid()}")
    await asyncio.sleep(3600)


def main() -> None:
    mode = {"auto": None, "always": True, "never": False}[os.environ.get(WORKERS_VARIABLE, "auto")]
    lease = float(os.environ.get(LEASE_VARIABLE, "30"))
    store = RedisStore(os.environ[URL_VARIABLE], lease=lease)
    app = create_app(agents=[here, linger], store=store, workers=mode)
    serve_child(app, {"pid": os.getpid()})


if __name__ == "__main__":
    main()
