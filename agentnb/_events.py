"""The typed, immutable events a run produces, and their one JSON form.

An agent builds an event without any run information (``ToolCall("look_up",
{"term": "sea"})``); ``emit`` stamps a copy of it with the run id, the run's
sequence number, the run's path and the time. Sinks only ever see stamped events.

JSON form (used by every transport; ``Event.from_json(e.to_json()) == e``)::

    {"kind": "tool_call", "run_id": "3f2a...", "seq": 4, "path": ["poet"],
     "ts": 1764000000.123456, "name": "look_up", "args": {"term": "sea"}, "call_id": "..."}

``kind`` names the class; a custom event's kind is its own name. The remaining
keys are the class's payload fields.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeAlias

from ._exceptions import InvalidEvent

__all__ = [
    "JSON",
    "Cancelled",
    "Custom",
    "Done",
    "Error",
    "Event",
    "Status",
    "TextChunk",
    "ToolCall",
    "ToolResult",
]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value. Events store plain dicts and lists; tuples are accepted and become lists."""

_new = object.__new__
_set = object.__setattr__
_STAMPS = ("run_id", "seq", "path", "ts")
_CUSTOM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def to_json_value(value: object, where: str) -> JSON:
    """Return a fresh copy of *value* made only of JSON types, or raise InvalidEvent.

    Tuples become lists and subclasses of str/int/float (enums, say) their plain
    values, so the event round-trips through JSON exactly. *where* names the
    value in the error message.
    """
    try:
        return _copy_json(value, where)
    except RecursionError:
        raise InvalidEvent(
            f"{where} is nested too deeply or contains itself; an event payload must be a "
            "finite tree of dicts, lists and plain values."
        ) from None


def _copy_json(value: object, where: str) -> JSON:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value  # type: ignore[return-value]
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise InvalidEvent(
                f"{where} is {value!r}, which JSON cannot carry; send None or a string instead."
            )
        return value  # type: ignore[return-value]
    if kind is dict:
        out: dict[str, JSON] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise InvalidEvent(
                    f"{where} has the key {key!r} of type {type(key).__name__}; JSON object "
                    "keys must be str, so convert the key with str() first."
                )
            out[key] = _copy_json(item, f"{where}[{key!r}]")
        return out
    if kind is list or kind is tuple:
        items: Sequence[object] = value  # type: ignore[assignment]
        return [_copy_json(item, f"{where}[{i}]") for i, item in enumerate(items)]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return _copy_json(float(value), where)
    raise InvalidEvent(
        f"{where} is a {kind.__module__}.{kind.__qualname__} ({_short_repr(value)}), which "
        "has no JSON form. Convert it to str, int, float, bool, None, a list or a dict with "
        "str keys before emitting (e.g. str(value), value.isoformat(), dataclasses.asdict(value))."
    )


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_str(owner: str, name: str, value: object) -> None:
    if type(value) is not str:
        raise InvalidEvent(
            f"{owner}.{name} must be a str, got {type(value).__name__} ({_short_repr(value)})."
        )


def new_call_id() -> str:
    """A short random id that ties a ToolResult to its ToolCall."""
    return os.urandom(6).hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of all events.

    The four stamp fields are filled in by ``emit``: ``run_id`` (the run that
    emitted it), ``seq`` (0, 1, 2, ... per run, without gaps), ``path`` (the
    names of the enclosing runs, outermost first, ending with this run's) and
    ``ts`` (seconds since the epoch).
    """

    kind: ClassVar[str] = "event"
    terminal: ClassVar[bool] = False
    """True for Done, Error and Cancelled: the last event of a run."""
    _json_fields: ClassVar[tuple[str, ...]] = ()
    _kinds: ClassVar[dict[str, type[Event]]] = {}  # filled at the end of this module

    run_id: str = ""
    seq: int = -1
    path: tuple[str, ...] = ()
    ts: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in fields(self):
            if f.name in _STAMPS:
                continue
            value = getattr(self, f.name)
            if f.name in self._json_fields:
                _set(self, f.name, to_json_value(value, f"{owner}.{f.name}"))
            elif f.type == "str":
                _check_str(owner, f.name, value)
            elif f.type == "bool" and type(value) is not bool:
                raise InvalidEvent(f"{owner}.{f.name} must be a bool, got {_short_repr(value)}.")

    @property
    def stamped(self) -> bool:
        """Whether ``emit`` has stamped this event with its run."""
        return self.seq >= 0

    def payload(self) -> dict[str, JSON]:
        """The event's own fields (everything but kind and the stamps)."""
        return {
            f.name: getattr(self, f.name)  # payload fields hold JSON values only
            for f in fields(self)
            if f.name not in _STAMPS
        }

    def to_dict(self) -> dict[str, JSON]:
        """The JSON form as a dict: kind, run_id, seq, path, ts, then the payload."""
        out: dict[str, JSON] = {
            "kind": self.kind,
            "run_id": self.run_id,
            "seq": self.seq,
            "path": list(self.path),
            "ts": self.ts,
        }
        out.update(self.payload())
        return out

    def to_json(self) -> str:
        """The event as one line of compact JSON (UTF-8 text, no newline inside)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Event:
        """Rebuild an event from its JSON form; an unknown kind becomes a Custom event."""
        if not isinstance(data, dict):
            raise InvalidEvent(f"an event's JSON form is an object, got {_short_repr(data)}")
        try:
            kind = data["kind"]
            stamps = {
                "run_id": data["run_id"],
                "seq": data["seq"],
                "path": tuple(data["path"]),
                "ts": float(data["ts"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(
                f"not an agentnb event: {exc!r} in {_short_repr(data)}; an event's JSON form "
                "has kind, run_id, seq, path and ts"
            ) from None
        payload = {k: v for k, v in data.items() if k not in stamps and k != "kind"}
        cls = Event._kinds.get(kind)
        try:
            if cls is None:
                return Custom(kind, payload.get("data"), **stamps)
            return cls(**payload, **stamps)
        except TypeError as exc:
            if isinstance(exc, InvalidEvent):
                raise
            raise InvalidEvent(f"bad {kind!r} event {_short_repr(data)}: {exc}") from None

    @staticmethod
    def from_json(text: str | bytes) -> Event:
        """Rebuild an event from ``to_json()`` output."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        return Event.from_dict(data)

    def _stamped(self, run_id: str, seq: int, path: tuple[str, ...], ts: float) -> Event:
        """A copy of this event carrying the given stamps (no re-validation)."""
        new = _new(type(self))
        for name in self.__slots__:
            if name not in _STAMPS:
                _set(new, name, getattr(self, name))
        _set(new, "run_id", run_id)
        _set(new, "seq", seq)
        _set(new, "path", path)
        _set(new, "ts", ts)
        return new


@dataclass(frozen=True, slots=True)
class TextChunk(Event):
    """A piece of the agent's streamed text. ``emit("...")`` makes one."""

    kind: ClassVar[str] = "text"
    text: str


def _slot_setter(cls: type, name: str) -> Any:
    """The raw slot setter (skips the frozen dataclass's __setattr__; for fresh objects only)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name].__set__
    raise AttributeError(name)


_set_text = _slot_setter(TextChunk, "text")
_set_run_id = _slot_setter(TextChunk, "run_id")
_set_seq = _slot_setter(TextChunk, "seq")
_set_path = _slot_setter(TextChunk, "path")
_set_ts = _slot_setter(TextChunk, "ts")


def make_text_chunk(text: str, run_id: str, seq: int, path: tuple[str, ...], ts: float) -> Event:
    """The emit fast path for a str: a stamped TextChunk without __init__ overhead."""
    new = _new(TextChunk)
    _set_text(new, text)
    _set_run_id(new, run_id)
    _set_seq(new, seq)
    _set_path(new, path)
    _set_ts(new, ts)
    return new


@dataclass(frozen=True, slots=True)
class Status(Event):
    """What the agent is doing now, e.g. ``Status("searching the web")``."""

    kind: ClassVar[str] = "status"
    message: str


@dataclass(frozen=True, slots=True)
class ToolCall(Event):
    """The agent calls a tool. Pass ``call_id`` to the matching ToolResult."""

    kind: ClassVar[str] = "tool_call"
    _json_fields: ClassVar[tuple[str, ...]] = ("args",)
    name: str
    args: Mapping[str, JSON] = field(default_factory=dict)
    call_id: str = field(default_factory=new_call_id)

    def __post_init__(self) -> None:
        Event.__post_init__(self)
        if not isinstance(self.args, dict):
            raise InvalidEvent(
                "ToolCall.args must be a dict of the call's arguments, "
                f"got {_short_repr(self.args)}."
            )


@dataclass(frozen=True, slots=True)
class ToolResult(Event):
    """What a tool returned (or, with ``is_error=True``, how it failed)."""

    kind: ClassVar[str] = "tool_result"
    _json_fields: ClassVar[tuple[str, ...]] = ("result",)
    name: str
    result: JSON = None
    call_id: str = ""
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Custom(Event):
    """An event of a kind you name, carrying any JSON data.

    ``Custom("progress", {"done": 3, "of": 10})`` travels as
    ``{"kind": "progress", ..., "data": {"done": 3, "of": 10}}``.
    """

    _json_fields: ClassVar[tuple[str, ...]] = ("data",)
    name: str
    data: JSON = None

    def __post_init__(self) -> None:
        Event.__post_init__(self)
        if not self.name or not set(self.name) <= _CUSTOM_NAME_CHARS:
            raise InvalidEvent(
                f"a custom event's name must be non-empty and use only letters, digits and "
                f"_ . : -, got {self.name!r}"
            )
        if self.name in Event._kinds:
            raise InvalidEvent(
                f"{self.name!r} is a built-in event kind; use "
                f"agentnb.{Event._kinds[self.name].__name__} for it, or pick another name "
                "for your custom event."
            )

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.name

    def payload(self) -> dict[str, JSON]:
        return {"data": self.data}


@dataclass(frozen=True, slots=True)
class Done(Event):
    """Terminal: the agent returned. ``result`` is its value's JSON form (or its repr)."""

    kind: ClassVar[str] = "done"
    terminal: ClassVar[bool] = True
    _json_fields: ClassVar[tuple[str, ...]] = ("result",)
    result: JSON = None


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Terminal: the agent raised. ``type`` is the exception's qualified class name."""

    kind: ClassVar[str] = "error"
    terminal: ClassVar[bool] = True
    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Cancelled(Event):
    """Terminal: the run was cancelled before its agent finished."""

    kind: ClassVar[str] = "cancelled"
    terminal: ClassVar[bool] = True
    reason: str = ""


Event._kinds.update(
    (cls.kind, cls) for cls in (TextChunk, Status, ToolCall, ToolResult, Done, Error, Cancelled)
)
