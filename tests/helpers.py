"""Small things several test files share."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import agentnb
import agentnb.demo  # full_text() runs the demo agents by name: they must be registered
from agentnb.testing import capture_events


class Recorder:
    """A sink that keeps what it is sent; ``closed`` / ``ended`` say it was closed."""

    def __init__(self) -> None:
        self.events: list[agentnb.Event] = []
        self.closed = False
        self.ended = asyncio.Event()

    def send(self, event: agentnb.Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True
        self.ended.set()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, run_id: str) -> list[agentnb.Event]:
        return [e for e in self.events if e.run_id == run_id]


def texts(events: list[agentnb.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, agentnb.TextChunk)]


async def forever() -> None:
    """Wait until cancelled."""
    await asyncio.get_running_loop().create_future()


def full_text(name: str, text: str) -> str:
    """What the demo agent *name* streams for *text* (its own text, not its sub-agents')."""

    def run() -> str:
        with capture_events() as events:
            agentnb.run_sync(agentnb.get_agent(name), text, speed=0)
        return events.text(path=(name,))

    # In a thread of its own: the caller may have an event loop running (Playwright's sync API).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()
