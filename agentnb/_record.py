"""Record a run as JSON lines, read it back, and replay it into any sink."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import IO

from ._events import Event
from ._exceptions import InvalidEvent
from ._sinks import SinkLike, call_maybe_async, delivery_for

__all__ = ["JsonlRecorder", "read_events", "replay"]


class JsonlRecorder:
    """A sink that writes each event's JSON form as one line.

    Given a path, it creates (truncates) the file at the first event and closes
    it when the run ends; a later run appends. Given an open text file, it only
    writes and flushes. Every line is flushed when a run ends.
    """

    def __init__(self, target: str | PathLike[str] | IO[str]) -> None:
        self._path = Path(target) if isinstance(target, str | PathLike) else None
        self._file: IO[str] | None = None if self._path is not None else target  # type: ignore[assignment]
        self._opened_before = False
        self.count = 0

    def send(self, event: Event) -> None:
        if self._file is None:
            assert self._path is not None
            self._file = self._path.open("a" if self._opened_before else "w", encoding="utf-8")
            self._opened_before = True
        self._file.write(event.to_json() + "\n")
        self.count += 1
        if event.terminal:
            self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        if self._path is not None:
            self._file.close()
            self._file = None


def read_events(source: str | PathLike[str] | IO[str]) -> Iterator[Event]:
    """Yield the events of a JSON-lines recording (blank lines are skipped)."""
    if isinstance(source, str | PathLike):
        with Path(source).open(encoding="utf-8") as fh:
            yield from read_events(fh)
        return
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            yield Event.from_json(line)
        except InvalidEvent as exc:
            raise InvalidEvent(f"line {number}: {exc}") from None


async def _paced(events: Iterable[Event], timing: bool, speed: float) -> AsyncIterator[Event]:
    previous: float | None = None
    for event in events:
        if timing and previous is not None and speed > 0:
            await asyncio.sleep(max(0.0, event.ts - previous) / speed)
        previous = event.ts
        yield event


async def replay(
    source: str | PathLike[str] | IO[str] | Iterable[Event],
    sink: SinkLike,
    *,
    timing: bool = False,
    speed: float = 1.0,
) -> int:
    """Feed a recorded run to *sink*; return how many events it got.

    With ``timing=True`` the events keep their original spacing (divided by
    *speed*); without it they are sent as fast as the sink takes them. The
    events keep their original stamps. The sink's ``close()`` is called at the end.
    """
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    events: Iterable[Event]
    if isinstance(source, str | PathLike) or hasattr(source, "read"):
        events = read_events(source)  # type: ignore[arg-type]
    else:
        events = source
    delivery = delivery_for(sink)
    count = 0
    try:
        async for event in _paced(events, timing, speed):
            result = delivery.send(event)
            if inspect.isawaitable(result):
                await result
            count += 1
    finally:
        if delivery.close is not None:
            await call_maybe_async(delivery.close)
    return count
