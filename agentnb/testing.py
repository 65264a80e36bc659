"""Helpers for testing agents: capture a run's events without wiring a sink.

::

    from agentnb.testing import capture_events

    async def test_poet():
        with capture_events() as events:
            await agentnb.run(poet, "the sea")
        assert events.kinds()[-1] == "done"
        assert "sea" in events.text()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._events import Event, TextChunk
from ._run import _ambient_sinks

__all__ = ["CapturedEvents", "capture_events"]


class CapturedEvents(list[Event]):
    """A list of events with a few questions tests ask of it; also a sink itself."""

    def send(self, event: Event) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self]

    def text(self, path: tuple[str, ...] | None = None) -> str:
        """All text chunks joined (only those of runs at *path*, if given)."""
        return "".join(
            e.text for e in self if isinstance(e, TextChunk) and (path is None or e.path == path)
        )

    def of_run(self, run_id: str) -> list[Event]:
        return [e for e in self if e.run_id == run_id]


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect the events of every run started inside the ``with`` block, in order.

    Runs started in tasks or threads created inside the block are captured too
    (they inherit the context). The setting is undone on exit.
    """
    events = CapturedEvents()
    token = _ambient_sinks.set((*_ambient_sinks.get(), events))
    try:
        yield events
    finally:
        _ambient_sinks.reset(token)
