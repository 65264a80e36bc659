"""The JSON Schema of each event kind's JSON form, shipped in the package (``agentnb/schema/``).

``event_schema("tool_call")`` gives one kind's schema (JSON Schema 2020-12), and
``event_schema("my_kind")`` for a kind agentnb does not know, the custom event's.
Validate with any JSON Schema library; ``agentnb.testing.check_event`` does so
with ``jsonschema``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from ._events import Event

__all__ = ["event_schema"]


@cache
def _load(name: str) -> str:
    from importlib import resources  # only when a schema is asked for: it costs ~6 ms

    return resources.files("agentnb").joinpath("schema", f"{name}.json").read_text("utf-8")


def schema_kinds() -> list[str]:
    """Every built-in kind that has a schema (and ``"custom"``, for kinds of one's own)."""
    return [*sorted(Event._kinds), "custom"]


def event_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of events of *kind* (a fresh copy); custom kinds share ``custom``."""
    name = kind if kind in Event._kinds else "custom"
    schema: dict[str, Any] = json.loads(_load(name))
    return schema
