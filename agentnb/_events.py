"""The typed, immutable events a run produces, and their one JSON form.

An agent builds an event without any run information (``ToolCall("look_up",
{"term": "sea"})``); ``emit`` stamps a copy of it with the run id, the run's
sequence number, the run's path and the time. Sinks only ever see stamped events.

JSON form (used by every transport; ``Event.from_json(e.to_json()) == e``)::

    {"kind": "tool_call", "run_id": "3f2a...", "seq": 4, "path": ["poet"],
     "ts": 1764000000.123456, "name": "look_up", "args": {"term": "sea"}, "call_id": "..."}

``kind`` names the class; a custom event's kind is its own name. The remaining
keys are the class's payload fields.

Events are slotted classes whose fields are read-only properties: building one
is the hottest line of ``emit`` (a frozen dataclass costs five times as much),
and assigning to a field raises ``AttributeError`` just the same.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypedDict, TypeVar, overload

from ._exceptions import InvalidEvent

if TYPE_CHECKING:
    from typing import Unpack

__all__ = [
    "JSON",
    "Answer",
    "Ask",
    "Cancelled",
    "Custom",
    "Done",
    "Error",
    "Event",
    "MessageEnd",
    "MessageStart",
    "Raw",
    "Reasoning",
    "Stamps",
    "StateDelta",
    "StateSnapshot",
    "Status",
    "StepEnd",
    "StepStart",
    "TextChunk",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolResult",
    "Usage",
]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value. Events store plain dicts and lists; tuples are accepted and become lists."""

_T = TypeVar("_T")
_new = object.__new__
_CUSTOM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


if TYPE_CHECKING:

    class _Field(Generic[_T]):
        """Static type of a read-only event field (at run time a ``property``)."""

        @overload
        def __get__(self, obj: None, owner: type[Any]) -> _Field[_T]: ...
        @overload
        def __get__(self, obj: object, owner: type[Any]) -> _T: ...
        def __get__(self, obj: object, owner: type[Any]) -> _T | _Field[_T]: ...


def _field(name: str, doc: str = "") -> Any:
    return property(attrgetter("_" + name), doc=doc or None)


class Stamps(TypedDict, total=False):
    """The keyword arguments every event takes besides its own fields (``emit`` fills them)."""

    run_id: str
    seq: int
    path: tuple[str, ...]
    ts: float


# -- payload checks -------------------------------------------------------------


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
    if value is None:
        return None
    if isinstance(value, str):  # a subclass (a StrEnum member, say) gives its plain value
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, bool):  # before int: bool is one
        return value
    if isinstance(value, int):
        return value if type(value) is int else int.__index__(value)
    if isinstance(value, float):
        number = value if type(value) is float else float(value)
        if not math.isfinite(number):
            raise InvalidEvent(
                f"{where} is {value!r}, which JSON cannot carry; send None or a string instead."
            )
        return number
    if isinstance(value, Mapping):
        out: dict[str, JSON] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise InvalidEvent(
                        f"{where} has the key {key!r} of type {type(key).__name__}; JSON object "
                        "keys must be str, so convert the key with str() first."
                    )
                key = str.__str__(key)  # a StrEnum member, say
            out[key] = _copy_json(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_copy_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    kind = type(value)
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


def _str(value: object, where: str) -> str:
    if type(value) is not str:
        if isinstance(value, str):  # a StrEnum member, say: keep its plain value
            return str.__str__(value)
        raise InvalidEvent(
            f"{where} must be a str, got {type(value).__name__} ({_short_repr(value)})."
        )
    return value


def _bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise InvalidEvent(f"{where} must be a bool, got {_short_repr(value)}.")
    return value


def new_call_id() -> str:
    """A short random id that ties a ToolResult to its ToolCall."""
    return os.urandom(6).hex()


# -- the events -----------------------------------------------------------------


class Event:
    """Base class of all events.

    The four stamps are filled in by ``emit``: ``run_id`` (the run that emitted
    it), ``seq`` (0, 1, 2, ... per run, without gaps), ``path`` (the names of the
    enclosing runs, outermost first, ending with this run's) and ``ts`` (seconds
    since the epoch). An event nobody emitted has ``seq == -1``.
    """

    __slots__ = ("_path", "_run_id", "_seq", "_ts")

    kind: ClassVar[str] = "event"
    """The event's kind in its JSON form (``"text"``, ``"tool_call"``, ...)."""
    terminal: ClassVar[bool] = False
    """True for Done, Error and Cancelled: the last event of a run."""
    _fields: ClassVar[tuple[str, ...]] = ()  # payload field names, in order
    _slots: ClassVar[tuple[str, ...]] = ()  # their slots ("_" + name), made once per class
    _optional: ClassVar[frozenset[str]] = frozenset()  # left out of the JSON form when empty
    _kinds: ClassVar[dict[str, type[Event]]] = {}  # filled at the end of this module

    run_id: _Field[str] = _field("run_id", "The id of the run that emitted the event.")
    seq: _Field[int] = _field("seq", "Position in its run: 0, 1, 2, ... without gaps.")
    path: _Field[tuple[str, ...]] = _field("path", "Run names, outermost first.")
    ts: _Field[float] = _field("ts", "When it was emitted, in seconds since the epoch.")

    _run_id: str
    _seq: int
    _path: tuple[str, ...]
    _ts: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._slots = tuple("_" + name for name in cls._fields)

    def _copy_payload(self, new: Event) -> None:
        """Copy this event's payload slots into *new* (``_stamped``'s copy).

        The first call for a class writes a copier out for its slots (as dataclasses
        write their __init__) and puts it on the class: stamping is on every event's
        path, and writing it lazily keeps it out of ``import agentnb``.
        """
        cls = type(self)
        lines = "".join(f"    new.{slot} = self.{slot}\n" for slot in cls._slots)
        namespace: dict[str, Any] = {}
        exec(f"def copy_payload(self, new):\n{lines or '    pass'}\n", namespace)
        cls._copy_payload = namespace["copy_payload"]  # type: ignore[method-assign]
        cls._copy_payload(self, new)

    def __init__(self, **stamps: Unpack[Stamps]) -> None:
        raise TypeError(
            "agentnb.Event is the base class; make a TextChunk, Status, ToolCall, ToolResult "
            "or, for a kind of your own, agentnb.Custom(name, data)."
        )

    def _set_stamps(
        self, run_id: str = "", seq: int = -1, path: tuple[str, ...] = (), ts: float = 0.0
    ) -> None:
        name = type(self).__name__
        self._run_id = _str(run_id, f"{name}.run_id")
        if type(seq) is not int:
            raise InvalidEvent(f"{name}.seq must be an int, got {_short_repr(seq)}.")
        self._seq = seq
        if type(path) is not tuple or not all(type(p) is str for p in path):
            raise InvalidEvent(f"{name}.path must be a tuple of str, got {_short_repr(path)}.")
        self._path = path
        if type(ts) is not float:
            if type(ts) is not int:
                raise InvalidEvent(f"{name}.ts must be a float, got {_short_repr(ts)}.")
            ts = float(ts)
        if not math.isfinite(ts):
            raise InvalidEvent(f"{name}.ts must be a finite number of seconds, got {ts!r}.")
        self._ts = ts

    @property
    def stamped(self) -> bool:
        """Whether ``emit`` has stamped this event with its run."""
        return self._seq >= 0

    def payload(self) -> dict[str, JSON]:
        """The event's own fields (everything but kind and the stamps).

        An optional field (a message id, a signature, a run's usage) is left out
        while it is empty (``""``, ``None`` or ``False``): older readers never see it.
        """
        optional = self._optional
        if not optional:
            return {name: getattr(self, "_" + name) for name in self._fields}
        out: dict[str, JSON] = {}
        for name in self._fields:
            value = getattr(self, "_" + name)
            if name in optional and (value is None or value == "" or value is False):
                continue
            out[name] = value
        return out

    def _values(self) -> tuple[object, ...]:
        own = tuple(getattr(self, "_" + name) for name in self._fields)
        return (*own, self._run_id, self._seq, self._path, self._ts)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Event)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        own = ", ".join(f"{name}={getattr(self, '_' + name)!r}" for name in self._fields)
        stamps = f"run_id={self._run_id!r}, seq={self._seq}, path={self._path!r}, ts={self._ts!r}"
        return f"{type(self).__name__}({own + ', ' if own else ''}{stamps})"

    def to_dict(self) -> dict[str, JSON]:
        """The JSON form as a dict: kind, run_id, seq, path, ts, then the payload."""
        out: dict[str, JSON] = {
            "kind": self.kind,
            "run_id": self._run_id,
            "seq": self._seq,
            "path": list(self._path),
            "ts": self._ts,
        }
        out.update(self.payload())
        return out

    def to_json(self) -> str:
        """The event as one line of compact JSON (UTF-8 text, no newline inside).

        Text is written as is, except that a string holding a lone surrogate
        (which UTF-8 cannot encode) makes the line fall back to \\u escapes.
        """
        data = self.to_dict()
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                line = json.dumps(data, separators=(",", ":"))
        return line

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Event:
        """Rebuild an event from its JSON form; an unknown kind becomes a Custom event."""
        if not isinstance(data, Mapping):
            raise InvalidEvent(f"an event's JSON form is an object, got {_short_repr(data)}")
        try:
            kind = data["kind"]
            path = data["path"]
            if not isinstance(path, list | tuple):
                raise TypeError(f"path must be a list of run names, got {_short_repr(path)}")
            stamps: Stamps = {
                "run_id": data["run_id"],
                "seq": data["seq"],
                "path": tuple(path),
                "ts": data["ts"],
            }
        except (KeyError, TypeError) as exc:
            raise InvalidEvent(
                f"not an agentnb event: {exc!r} in {_short_repr(data)}; an event's JSON form "
                "has kind, run_id, seq, path and ts"
            ) from None
        payload = {k: v for k, v in data.items() if k not in stamps and k != "kind"}
        cls: Callable[..., Event] | None = Event._kinds.get(kind) if isinstance(kind, str) else None
        try:
            if cls is None:
                # A custom kind carries "data"; a kind this version does not know (from a
                # newer agentnb, say) keeps all its fields as the data, so nothing is lost.
                custom_data = payload.get("data") if payload.keys() <= {"data"} else payload
                return Custom(_str(kind, "kind"), custom_data, **stamps)
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
        except RecursionError:
            raise InvalidEvent("not an agentnb event: the JSON is nested too deeply") from None
        return Event.from_dict(data)

    def _stamped(self, run_id: str, seq: int, path: tuple[str, ...], ts: float) -> Event:
        """A copy of this event carrying the given stamps (no re-validation)."""
        new = _new(type(self))
        self._copy_payload(new)
        new._run_id = run_id
        new._seq = seq
        new._path = path
        new._ts = ts
        return new


class TextChunk(Event):
    """A piece of the agent's streamed text. ``emit("...")`` makes one.

    ``message_id`` (optional) names the model message the text belongs to, when a
    stream says so; plain ``emit("...")`` text belongs to the run's implicit message.
    """

    __slots__ = ("_message_id", "_text")
    __match_args__ = ("text", "message_id")
    kind = "text"
    _fields = ("text", "message_id")
    _optional = frozenset({"message_id"})
    text: _Field[str] = _field("text")
    message_id: _Field[str] = _field("message_id", "The message the text belongs to ('' if none).")

    def __init__(self, text: str, message_id: str = "", **stamps: Unpack[Stamps]) -> None:
        self._text = _str(text, "TextChunk.text")
        self._message_id = _str(message_id, "TextChunk.message_id")
        self._set_stamps(**stamps)

    def to_json(self) -> str:
        # The commonest event, framed once per emit by a server: the same JSON as
        # Event.to_json, built without the dict.
        if self._message_id:
            return super().to_json()
        path = "[]" if not self._path else _dumps(list(self._path))
        line = (
            f'{{"kind":"text","run_id":{_dumps(self._run_id)},"seq":{self._seq},'
            f'"path":{path},"ts":{float.__repr__(self._ts)},"text":{_dumps(self._text)}}}'
        )
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                return super().to_json()
        return line


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def make_text_chunk(
    text: str, run_id: str, seq: int, path: tuple[str, ...], ts: float
) -> TextChunk:
    """The emit fast path for a str: a stamped TextChunk, built without any checks."""
    new: TextChunk = _new(TextChunk)
    new._text = text
    new._message_id = ""
    new._run_id = run_id
    new._seq = seq
    new._path = path
    new._ts = ts
    return new


class Status(Event):
    """What the agent is doing now, e.g. ``Status("searching the web")``."""

    __slots__ = ("_message",)
    __match_args__ = ("message",)
    kind = "status"
    _fields = ("message",)
    message: _Field[str] = _field("message")

    def __init__(self, message: str, **stamps: Unpack[Stamps]) -> None:
        self._message = _str(message, "Status.message")
        self._set_stamps(**stamps)


class ToolCall(Event):
    """The agent calls a tool. Pass ``call_id`` on to the matching ToolResult."""

    __slots__ = ("_args", "_call_id", "_name")
    __match_args__ = ("name", "args", "call_id")
    kind = "tool_call"
    _fields = ("name", "args", "call_id")
    name: _Field[str] = _field("name")
    args: _Field[dict[str, JSON]] = _field("args", "The call's arguments (a JSON object).")
    call_id: _Field[str] = _field(
        "call_id", "Ties the call to its ToolResult (random if not given)."
    )

    def __init__(
        self,
        name: str,
        args: Mapping[str, JSON] | None = None,
        call_id: str | None = None,
        **stamps: Unpack[Stamps],
    ) -> None:
        self._name = _str(name, "ToolCall.name")
        if args is None:
            args = {}
        elif not isinstance(args, Mapping):
            raise InvalidEvent(
                f"ToolCall.args must be a dict of the call's arguments, got {_short_repr(args)}."
            )
        copied = to_json_value(dict(args), "ToolCall.args")
        assert isinstance(copied, dict)
        self._args: dict[str, JSON] = copied
        self._call_id = new_call_id() if call_id is None else _str(call_id, "ToolCall.call_id")
        self._set_stamps(**stamps)


class ToolResult(Event):
    """What a tool returned; with ``is_error=True`` how it failed (``result`` is the error
    message); with ``denied=True`` that the call was refused and the tool never ran."""

    __slots__ = ("_call_id", "_denied", "_is_error", "_name", "_result")
    __match_args__ = ("name", "result", "call_id", "is_error", "denied")
    kind = "tool_result"
    _fields = ("name", "result", "call_id", "is_error", "denied")
    _optional = frozenset({"denied"})
    name: _Field[str] = _field("name")
    result: _Field[JSON] = _field("result")
    call_id: _Field[str] = _field("call_id")
    is_error: _Field[bool] = _field("is_error")
    denied: _Field[bool] = _field("denied", "The call was refused (by a person or a policy).")

    def __init__(
        self,
        name: str,
        result: JSON = None,
        call_id: str = "",
        is_error: bool = False,
        denied: bool = False,
        **stamps: Unpack[Stamps],
    ) -> None:
        self._name = _str(name, "ToolResult.name")
        self._result = to_json_value(result, "ToolResult.result")
        self._call_id = _str(call_id, "ToolResult.call_id")
        self._is_error = _bool(is_error, "ToolResult.is_error")
        self._denied = _bool(denied, "ToolResult.denied")
        self._set_stamps(**stamps)


class Custom(Event):
    """An event of a kind you name, carrying any JSON data.

    ``Custom("progress", {"done": 3, "of": 10})`` travels as
    ``{"kind": "progress", ..., "data": {"done": 3, "of": 10}}``.
    """

    __slots__ = ("_data", "_name")
    __match_args__ = ("name", "data")
    _fields = ("name", "data")
    name: _Field[str] = _field("name")
    data: _Field[JSON] = _field("data")

    def __init__(self, name: str, data: JSON = None, **stamps: Unpack[Stamps]) -> None:
        name = _str(name, "Custom.name")
        if not name or not set(name) <= _CUSTOM_NAME_CHARS:
            raise InvalidEvent(
                "a custom event's name must be non-empty and use only letters, digits and "
                f"_ . : -, got {name!r}"
            )
        if name in Event._kinds:
            raise InvalidEvent(
                f"{name!r} is a built-in event kind; use agentnb.{Event._kinds[name].__name__} "
                "for it, or pick another name for your custom event."
            )
        self._name = name
        self._data = to_json_value(data, "Custom.data")
        self._set_stamps(**stamps)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self._name

    def payload(self) -> dict[str, JSON]:
        return {"data": self._data}


_USAGE_DOC = (
    "The run's token usage in total (its sub-runs' included): the sum of its Usage events, "
    "or None if it had none."
)


class Done(Event):
    """Terminal: the agent returned. ``result`` is its value's JSON form (or its repr)."""

    __slots__ = ("_result", "_usage")
    __match_args__ = ("result", "usage")
    kind = "done"
    terminal = True
    _fields = ("result", "usage")
    _optional = frozenset({"usage"})
    result: _Field[JSON] = _field("result")
    usage: _Field[dict[str, JSON] | None] = _field("usage", _USAGE_DOC)

    def __init__(
        self, result: JSON = None, usage: Mapping[str, JSON] | None = None, **stamps: Unpack[Stamps]
    ) -> None:
        self._result = to_json_value(result, "Done.result")
        self._usage = _usage_totals(usage, "Done.usage")
        self._set_stamps(**stamps)


class Error(Event):
    """Terminal: the agent raised. ``type`` is the exception's qualified class name."""

    __slots__ = ("_message", "_traceback", "_type", "_usage")
    __match_args__ = ("type", "message", "traceback", "usage")
    kind = "error"
    terminal = True
    _fields = ("type", "message", "traceback", "usage")
    _optional = frozenset({"usage"})
    type: _Field[str] = _field("type")
    message: _Field[str] = _field("message")
    traceback: _Field[str] = _field("traceback")
    usage: _Field[dict[str, JSON] | None] = _field("usage", _USAGE_DOC)

    def __init__(
        self,
        type: str,
        message: str,
        traceback: str = "",
        usage: Mapping[str, JSON] | None = None,
        **stamps: Unpack[Stamps],
    ) -> None:
        self._type = _str(type, "Error.type")
        self._message = _str(message, "Error.message")
        self._traceback = _str(traceback, "Error.traceback")
        self._usage = _usage_totals(usage, "Error.usage")
        self._set_stamps(**stamps)


class Cancelled(Event):
    """Terminal: the run was cancelled before its agent finished."""

    __slots__ = ("_reason", "_usage")
    __match_args__ = ("reason", "usage")
    kind = "cancelled"
    terminal = True
    _fields = ("reason", "usage")
    _optional = frozenset({"usage"})
    reason: _Field[str] = _field("reason")
    usage: _Field[dict[str, JSON] | None] = _field("usage", _USAGE_DOC)

    def __init__(
        self, reason: str = "", usage: Mapping[str, JSON] | None = None, **stamps: Unpack[Stamps]
    ) -> None:
        self._reason = _str(reason, "Cancelled.reason")
        self._usage = _usage_totals(usage, "Cancelled.usage")
        self._set_stamps(**stamps)


def _usage_totals(value: Mapping[str, JSON] | None, where: str) -> dict[str, JSON] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEvent(
            f"{where} must be a dict of token counts or None, got {_short_repr(value)}."
        )
    copied = to_json_value(dict(value), where)
    assert isinstance(copied, dict)
    return copied


from ._events_stream import (  # noqa: E402  (the streamed kinds build on the classes above)
    Answer,
    Ask,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
    StepEnd,
    StepStart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

Event._kinds.update(
    (cls.kind, cls)
    for cls in (
        TextChunk,
        Status,
        ToolCall,
        ToolResult,
        Done,
        Error,
        Cancelled,
        Reasoning,
        ToolCallStart,
        ToolCallDelta,
        ToolCallEnd,
        Usage,
        StepStart,
        StepEnd,
        StateSnapshot,
        StateDelta,
        MessageStart,
        MessageEnd,
        Raw,
        Ask,
        Answer,
    )
)
