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


async def lonely() -> str:
    """Offered by one worker only (``lonely_agents``)."""
    return "alone"


lonely_agents = [lonely]


async def stubborn(tag: str = "") -> None:
    """:func:`forever`, offered by one worker only (``stubborn_agents``)."""
    await forever(tag)


stubborn_agents = [stubborn]


async def here(text: str = "") -> int:
    """Runs in the server process: emits ``pid <its process id>``."""
    agentnb.emit(f"pid {os.getpid()}")
    return 0


async def linger() -> None:
    """Runs in the server process: emits ``pid <its process id>``, then waits until cancelled."""
    agentnb.emit(f"pid {os.getpid()}")
    await asyncio.sleep(3600)


# -- the protocol tests' agents (tests/redis/test_protocols_shared.py) -----------------


async def deleter(path: str = "build") -> str:
    """Asks to approve its tool call (approve with its call_id), then runs it or not."""
    agentnb.emit(f"pid {os.getpid()}")
    agentnb.emit(f"I will delete {path}.")
    call = agentnb.ToolCall("delete_file", {"path": path})
    agentnb.emit(call)
    if await agentnb.approve("delete_file", call.args, call_id=call.call_id):
        agentnb.emit(agentnb.ToolResult("delete_file", f"deleted {path}", call_id=call.call_id))
        agentnb.emit(f"Deleted {path}.")
        return "deleted"
    agentnb.emit(agentnb.ToolResult("delete_file", None, call_id=call.call_id, denied=True))
    agentnb.emit("Kept it.")
    return "kept"


async def picker(text: str = "") -> str:
    """Asks a choice with a default in a sub-run (a step and a tool call around it);
    returns the choice and the AG-UI thread the request named (``Run.metadata``)."""
    agentnb.emit(f"pid {os.getpid()}")
    agentnb.emit(agentnb.StepStart("pick"))

    async def chooser() -> str:
        agentnb.emit(f"choosing for {text}")
        return await agentnb.ask("Which colour?", choices=["red", "green"], default="green")

    colour: str = await agentnb.run(chooser, name="chooser")
    agentnb.emit(agentnb.StepEnd("pick"))
    agentnb.emit(f"picked {colour}")
    thread = agentnb.current_run().metadata.get("agui", {}).get("thread_id")
    return f"{colour} in {thread}"


def serve_protocols() -> None:
    """Serves :func:`deleter` and :func:`picker` (the workers run :data:`protocol_agents`),
    hands runs to the workers when one offers the agent, ``keep_seconds`` from
    ``$AGENTNB_TEST_KEEP_SECONDS`` (default 300)."""
    lease = float(os.environ.get(LEASE_VARIABLE, "30"))
    keep = float(os.environ.get("AGENTNB_TEST_KEEP_SECONDS", "300"))
    store = RedisStore(os.environ[URL_VARIABLE], lease=lease)
    app = create_app(agents=[deleter, picker], store=store, keep_seconds=keep)
    serve_child(app, {"pid": os.getpid()})


async def vetted(path: str = "build") -> str:
    """:func:`deleter`, for the workers."""
    return await deleter(path)


async def chosen(text: str = "") -> str:
    """:func:`picker`, for the workers."""
    return await picker(text)


protocol_agents = [vetted, chosen]


def main() -> None:
    mode = {"auto": None, "always": True, "never": False}[os.environ.get(WORKERS_VARIABLE, "auto")]
    lease = float(os.environ.get(LEASE_VARIABLE, "30"))
    store = RedisStore(os.environ[URL_VARIABLE], lease=lease)
    app = create_app(agents=[here, linger], store=store, workers=mode)
    serve_child(app, {"pid": os.getpid()})


if __name__ == "__main__":
    main()
