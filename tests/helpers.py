"""Small things several test files share."""

from __future__ import annotations

import asyncio

import agentnb


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
