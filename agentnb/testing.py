"""Helpers for testing agents: capture a run's events without wiring a sink, check events.

::

    from agentnb.testing import capture_events

    async def test_poet():
        with capture_events() as events:
            await agentnb.run(poet, "the sea")
        assert events.kinds()[-1] == "done"
        assert "sea" in events.text()

Every event captured is checked against its kind's JSON Schema (``check_event``),
so a test of an agent, an adapter or a sink also proves the events it saw are
well formed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from ._events import Event, TextChunk
from ._run import _ambient_sinks
from ._schema import event_schema

__all__ = ["CapturedEvents", "capture_events", "check_event"]


@cache
def _validator(name: str) -> Callable[[Any], None]:
    try:
        import jsonschema
    except ImportError as exc:
        raise ImportError(
            "agentnb.testing.check_event needs jsonschema: pip install jsonschema"
        ) from exc
    schema = event_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validate: Callable[[Any], None] = cls(schema).validate
    return validate


def check_event(event: Event | Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless *event*'s JSON form fits its kind's schema.

    Takes an event or its JSON form as a dict (as read from a stream or a file).
    """
    data = event.to_dict() if isinstance(event, Event) else event
    kind = data.get("kind")
    name = kind if isinstance(kind, str) and kind in Event._kinds else "custom"
    _validator(name)(dict(data))


class CapturedEvents(list[Event]):
    """A list of events with a few questions tests ask of it; also a sink itself.

    Each event it is sent is checked against its kind's JSON Schema first.
    """

    def send(self, event: Event) -> None:
        check_event(event)
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
