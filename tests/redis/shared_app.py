"""A server process of the shared-store tests: ``python -m tests.redis.shared_app`` serves
these agents with ``create_app(store=RedisStore($AGENTNB_TEST_REDIS))`` on a free port (the
port is the first line it prints, see ``harness.web.serve_child``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import agentnb
from agentnb.redis import RedisStore
from agentnb.server import create_app
from harness.web import serve_child

URL_VARIABLE = "AGENTNB_TEST_REDIS"
KEEP_VARIABLE = "AGENTNB_TEST_KEEP"  # frames a run's stream keeps (default: the store's)


async def paced(n: int = 40) -> int:
    """Emits "0" .. "n-1", a few milliseconds apart; returns n."""
    for i in range(n):
        agentnb.emit(str(i))
        await asyncio.sleep(0.005)
    return n


async def waiting() -> None:
    """Emits "waiting", then waits until cancelled."""
    agentnb.emit("waiting")
    await asyncio.sleep(3600)


async def choose(prompt: str = "Deploy?") -> str:
    """Asks *prompt* (yes or no), emits what it got and returns it."""
    value = await agentnb.ask(prompt, choices=["yes", "no"])
    agentnb.emit(f"got {value}")
    return value


async def scripted(script: dict[str, Any]) -> int:
    """Emits "0" .. "n-1" (``events``), ``pause`` seconds apart. With ``ask`` (a position),
    asks "Go on?" (yes or no) before that one and emits ``got <value>``; with ``fail``,
    raises ``ValueError`` after the last. Returns n."""
    n, pause, ask = int(script["events"]), float(script["pause"]), script.get("ask")
    for i in range(n):
        if i == ask:
            value = await agentnb.ask("Go on?", choices=["yes", "no"])
            agentnb.emit(f"got {value}")
        agentnb.emit(str(i))
        await asyncio.sleep(pause)
    if script.get("fail"):
        raise ValueError(f"failed after {n} events")
    return n


def main() -> None:
    keep = int(os.environ.get(KEEP_VARIABLE, "10000"))
    store = RedisStore(os.environ[URL_VARIABLE], keep_count=keep)
    app = create_app(agents=[paced, waiting, choose, scripted], store=store)
    serve_child(app, {"pid": os.getpid()})


if __name__ == "__main__":
    main()
