"""Events: construction, immutability, validation and the exact JSON round trip."""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentnb import (
    JSON,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    InvalidEvent,
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
)

BUILT_IN_KINDS = (
    "text",
    "status",
    "tool_call",
    "tool_result",
    "done",
    "error",
    "cancelled",
    "reasoning",
    "tool_call_start",
    "tool_call_delta",
    "tool_call_end",
    "usage",
    "step_start",
    "step_end",
    "state_snapshot",
    "state_delta",
    "message_start",
    "message_end",
    "raw",
    "ask",
    "answer",
)
STAMPS = {"run_id": "5f0c2a9e1b7d4c3a", "seq": 7, "path": ("outer", "inner"), "ts": 1764000000.25}

# One example of every kind, stamped, with the payload keys its JSON form must carry in order.
EXAMPLES: list[tuple[Event, list[str]]] = [
    (TextChunk("hello", **STAMPS), ["text"]),  # type: ignore[arg-type]
    (Status("thinking", **STAMPS), ["message"]),  # type: ignore[arg-type]
    (ToolCall("look_up", {"term": "sea"}, call_id="c1", **STAMPS), ["name", "args", "call_id"]),  # type: ignore[arg-type]
    (
        ToolResult("look_up", ["a", 1], call_id="c1", is_error=True, **STAMPS),  # type: ignore[arg-type]
        ["name", "result", "call_id", "is_error"],
    ),
    (Custom("progress", {"done": 3, "of": 10}, **STAMPS), ["data"]),  # type: ignore[arg-type]
    (Done({"answer": 42}, **STAMPS), ["result"]),  # type: ignore[arg-type]
    (Error("ValueError", "bad", "Traceback ...", **STAMPS), ["type", "message", "traceback"]),  # type: ignore[arg-type]
    (Cancelled("stopped", **STAMPS), ["reason"]),  # type: ignore[arg-type]
]
EXAMPLE_IDS = [type(e).__name__ for e, _ in EXAMPLES]
EXAMPLE_JSON = {type(e).__name__: e.to_json() for e, _ in EXAMPLES}


# -- construction and immutability ------------------------------------------------------


def test_every_kind_constructs_with_its_kind_and_terminal_flag() -> None:
    kinds = {type(e).__name__: (e.kind, e.terminal) for e, _ in EXAMPLES}
    assert kinds == {
        "TextChunk": ("text", False),
        "Status": ("status", False),
        "ToolCall": ("tool_call", False),
        "ToolResult": ("tool_result", False),
        "Custom": ("progress", False),
        "Done": ("done", True),
        "Error": ("error", True),
        "Cancelled": ("cancelled", True),
    }


def test_an_unstamped_event_has_empty_stamps() -> None:
    event = Status("thinking")
    assert (event.run_id, event.seq, event.path, event.ts) == ("", -1, (), 0.0)
    assert not event.stamped
    assert EXAMPLES[1][0].stamped


def test_defaults() -> None:
    call = ToolCall("look_up")
    assert call.args == {}
    assert isinstance(call.call_id, str)
    assert call.call_id
    assert ToolCall("look_up").call_id != call.call_id  # a fresh id per call
    result = ToolResult("look_up")
    assert (result.result, result.call_id, result.is_error) == (None, "", False)
    assert Custom("progress").data is None
    assert Done().result is None
    assert Error("E", "m").traceback == ""
    assert Cancelled().reason == ""


@pytest.mark.parametrize(("event", "keys"), EXAMPLES, ids=EXAMPLE_IDS)
def test_events_are_immutable(event: Event, keys: list[str]) -> None:
    # AttributeError covers dataclasses.FrozenInstanceError (a subclass) and read-only
    # properties alike.
    for name in [*STAMPS, *keys]:
        with pytest.raises(AttributeError):
            setattr(event, name, "changed")
    # A new attribute cannot be added either. (Python 3.11's frozen+slots dataclasses raise
    # TypeError here instead of FrozenInstanceError: CPython gh-105936.)
    with pytest.raises((AttributeError, TypeError)):
        event.something_new = "changed"  # type: ignore[attr-defined]
    with pytest.raises((AttributeError, TypeError)):
        del event.seq
    assert event == Event.from_json(event.to_json())
    assert event.to_json() == EXAMPLE_JSON[type(event).__name__]  # nothing changed


def test_payload_is_copied_at_construction() -> None:
    args: dict[str, Any] = {"term": "sea", "opts": {"depth": [1, 2]}}
    call = ToolCall("look_up", args)
    args["term"] = "land"
    args["opts"]["depth"].append(3)
    args["new"] = True
    assert call.args == {"term": "sea", "opts": {"depth": [1, 2]}}

    data: list[Any] = [{"a": 1}]
    custom = Custom("progress", data)
    data[0]["a"] = 2
    data.append("x")
    assert custom.data == [{"a": 1}]

    result: dict[str, Any] = {"rows": [1]}
    done = Done(result)
    tool_result = ToolResult("t", result)
    result["rows"].append(2)
    assert done.result == {"rows": [1]}
    assert tool_result.result == {"rows": [1]}


def test_tuples_become_lists() -> None:
    event = Custom("shape", {"dims": (1, (2, 3)), "empty": ()})
    assert event.data == {"dims": [1, [2, 3]], "empty": []}
    assert isinstance(event.data, dict)
    assert type(event.data["dims"]) is list
    assert ToolResult("t", ("a", "b")).result == ["a", "b"]
    assert Event.from_json(event.to_json()) == event


class Color(str, enum.Enum):  # noqa: UP042 (the mixin, where str(member) is "Color.RED")
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Flags(enum.IntFlag):
    A = 1


class Meters(float):
    pass


def test_str_int_float_subclasses_become_plain_values() -> None:
    event = Custom(
        "enums", {"color": Color.RED, "level": Level.HIGH, "flag": Flags.A, "m": Meters(1.5)}
    )
    data = event.data
    assert isinstance(data, dict)
    assert data == {"color": "red", "level": 3, "flag": 1, "m": 1.5}
    assert [type(v) for v in data.values()] == [str, int, int, float]
    assert ToolCall("t", {"c": Color.RED}).args["c"].__class__ is str
    assert Done(Level.HIGH).result.__class__ is int
    assert Event.from_json(event.to_json()) == event


def test_bools_stay_bools() -> None:
    event = Custom("flags", [True, False, 1, 0])
    assert [type(v) for v in event.data] == [bool, bool, int, int]  # type: ignore[union-attr]
    back = Event.from_json(event.to_json())
    assert [type(v) for v in back.data] == [bool, bool, int, int]  # type: ignore[attr-defined]


# -- JSON form -----------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "keys"), EXAMPLES, ids=EXAMPLE_IDS)
def test_json_form_has_kind_and_stamps_first_then_payload(event: Event, keys: list[str]) -> None:
    line = event.to_json()
    data = json.loads(line)
    assert list(data) == ["kind", "run_id", "seq", "path", "ts", *keys]
    assert data["kind"] == event.kind
    assert data["run_id"] == STAMPS["run_id"]
    assert data["seq"] == STAMPS["seq"]
    assert data["path"] == list(STAMPS["path"])  # type: ignore[call-overload]
    assert data["ts"] == STAMPS["ts"]
    assert event.to_dict() == data
    for key in keys:
        assert data[key] == getattr(event, key)


def test_custom_json_kind_is_its_name_and_carries_data_only() -> None:
    event = Custom("my.app:progress-1", {"done": 1})
    data = json.loads(event.to_json())
    assert data["kind"] == "my.app:progress-1"
    assert "name" not in data
    assert data["data"] == {"done": 1}
    assert event.kind == "my.app:progress-1"


def test_to_json_is_one_compact_line_and_keeps_unicode_readable() -> None:
    event = TextChunk("a\nb\r\u2028c\x00 é 🌊")
    line = event.to_json()
    assert "\n" not in line
    assert "\r" not in line
    assert "é 🌊" in line  # not \u-escaped
    assert line.startswith('{"kind":"text","run_id":"","seq":-1,"path":[],"ts":0.0,')
    assert Event.from_json(line) == event
    assert Event.from_json(line.encode("utf-8")) == event


@given(
    text=st.text(),
    message_id=st.sampled_from(["", "msg_1"]),
    run_id=st.text(max_size=8),
    seq=st.integers(min_value=-1, max_value=2**53),
    path=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    ts=st.floats(allow_nan=False, allow_infinity=False),
)
def test_a_text_chunks_json_is_the_json_of_its_dict(
    text: str, message_id: str, run_id: str, seq: int, path: tuple[str, ...], ts: float
) -> None:
    # TextChunk builds its line without the dict (emit's hot path): the same bytes,
    # lone surrogates included.
    event = TextChunk(text, message_id, run_id=run_id, seq=seq, path=path, ts=ts)
    data = event.to_dict()
    line = event.to_json()
    try:
        expected = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        expected.encode("utf-8")
    except UnicodeEncodeError:
        expected = json.dumps(data, separators=(",", ":"))
    assert line == expected


@pytest.mark.parametrize(("event", "keys"), EXAMPLES, ids=EXAMPLE_IDS)
def test_round_trip_of_each_example(event: Event, keys: list[str]) -> None:
    back = Event.from_json(event.to_json())
    assert back == event
    assert type(back) is type(event)
    assert back.path == STAMPS["path"]
    assert type(back.path) is tuple
    assert Event.from_dict(event.to_dict()) == event


# Strategies: arbitrary JSON with awkward strings, numbers and nesting.
SPECIAL_TEXT = st.sampled_from(
    ["", "\u2028", "\u2029", "\x00", "a\x00b", "🌊🐚", "line\nbreak", '"quoted"', "\\", "\r\n", "é"]
)
TEXT = st.one_of(st.text(), SPECIAL_TEXT)
SCALARS: st.SearchStrategy[JSON] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(TEXT, children, max_size=4),
    ),
    max_leaves=15,
)
JSON_OBJECTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(TEXT, JSON_VALUES, max_size=4)
CUSTOM_NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-",
    min_size=1,
    max_size=20,
).filter(lambda name: name not in BUILT_IN_KINDS)
STAMP_KW: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "run_id": TEXT,
        "seq": st.integers(min_value=0, max_value=2**63),
        "path": st.lists(TEXT, max_size=4).map(tuple),
        "ts": st.floats(allow_nan=False, allow_infinity=False),
    }
)


def _events() -> st.SearchStrategy[Event]:
    def build(
        make: Callable[..., Event], *parts: st.SearchStrategy[Any]
    ) -> st.SearchStrategy[Event]:
        return st.tuples(STAMP_KW, *parts).map(lambda t: make(*t[1:], **t[0]))

    return st.one_of(
        build(TextChunk, TEXT),
        build(Status, TEXT),
        build(ToolCall, TEXT, JSON_OBJECTS, TEXT),
        build(ToolResult, TEXT, JSON_VALUES, TEXT, st.booleans()),
        build(Custom, CUSTOM_NAMES, JSON_VALUES),
        build(Done, JSON_VALUES),
        build(Error, TEXT, TEXT, TEXT),
        build(Cancelled, TEXT),
    )


@given(_events())
def test_round_trip_is_exact_for_arbitrary_events(event: Event) -> None:
    line = event.to_json()
    assert "\n" not in line
    back = Event.from_json(line)
    assert back == event
    assert type(back) is type(event)
    assert back.kind == event.kind
    assert back.to_json() == line
    assert Event.from_dict(json.loads(line)) == event


@given(JSON_VALUES)
def test_payload_normalizes_tuples_to_lists(value: Any) -> None:
    def normalized(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return [normalized(x) for x in v]
        if isinstance(v, dict):
            return {k: normalized(x) for k, x in v.items()}
        return v

    def has_tuple(v: Any) -> bool:
        if isinstance(v, tuple):
            return True
        if isinstance(v, list):
            return any(has_tuple(x) for x in v)
        if isinstance(v, dict):
            return any(has_tuple(x) for x in v.values())
        return False

    event = Custom("value", value)
    assert not has_tuple(event.data)
    assert event.data == normalized(value)


# -- validation ------------------------------------------------------------------------------


def _self_containing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def _deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


class Opaque:
    pass


def untyped(value: object) -> Any:
    """Pass a deliberately wrong value past the type checker."""
    return value


NOT_JSON: list[tuple[str, Callable[[], Event], str]] = [
    ("object", lambda: ToolCall("t", untyped({"d": Opaque()})), "ToolCall.args['d']"),
    (
        "datetime",
        lambda: ToolCall("t", untyped({"d": datetime.datetime(2025, 1, 2)})),
        "ToolCall.args['d']",
    ),
    (
        "date in list",
        lambda: ToolResult("t", untyped([1, datetime.date(2025, 1, 2)])),
        "ToolResult.result[1]",
    ),
    ("set", lambda: Custom("c", untyped({"tags": {"a", "b"}})), "Custom.data['tags']"),
    ("frozenset", lambda: Done(untyped(frozenset())), "Done.result"),
    ("bytes", lambda: Custom("c", untyped({"blob": [b"\x00"]})), "Custom.data['blob'][0]"),
    ("bytearray", lambda: ToolCall("t", untyped({"b": bytearray(b"x")})), "ToolCall.args['b']"),
    ("nan", lambda: Custom("c", {"x": float("nan")}), "Custom.data['x']"),
    ("inf", lambda: ToolResult("t", {"v": [float("inf")]}), "ToolResult.result['v'][0]"),
    ("-inf", lambda: Done(float("-inf")), "Done.result"),
    ("int key", lambda: ToolCall("t", untyped({"d": {1: "one"}})), "ToolCall.args['d']"),
    ("tuple key", lambda: Custom("c", untyped({(1, 2): "pair"})), "Custom.data"),
    ("none key", lambda: Done(untyped({None: 1})), "Done.result"),
    ("self-containing list", lambda: ToolCall("t", {"d": _self_containing()}), "ToolCall.args"),
    ("too deep", lambda: Custom("c", _deeply_nested(100_000)), "Custom.data"),
    ("function", lambda: Done(untyped(print)), "Done.result"),
    ("complex", lambda: Custom("c", untyped(1j)), "Custom.data"),
]


@pytest.mark.parametrize(("make", "where"), [c[1:] for c in NOT_JSON], ids=[c[0] for c in NOT_JSON])
def test_non_json_payload_is_refused_naming_the_field(
    make: Callable[[], Event], where: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        make()
    message = str(info.value)
    assert message.startswith(where + " "), message


def test_non_json_message_names_the_type_and_the_key() -> None:
    with pytest.raises(InvalidEvent, match=r"ToolCall\.args\['when'\] is a datetime\.datetime"):
        ToolCall("t", untyped({"when": datetime.datetime(2025, 1, 2)}))
    with pytest.raises(InvalidEvent, match=r"key 1 of type int"):
        Custom("c", untyped({1: "x"}))
    with pytest.raises(InvalidEvent, match="nan"):
        Done(float("nan"))


def test_an_object_with_a_broken_repr_is_still_reported() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(InvalidEvent, match=r"Custom\.data\['x'\].*Broken"):
        Custom("c", untyped({"x": Broken()}))


def test_invalid_event_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Done(untyped(object()))


WRONG_FIELD_TYPES: list[tuple[str, Callable[[], Event], str]] = [
    ("TextChunk(123)", lambda: TextChunk(untyped(123)), "TextChunk.text"),
    ("TextChunk(bytes)", lambda: TextChunk(untyped(b"x")), "TextChunk.text"),
    ("Status(None)", lambda: Status(untyped(None)), "Status.message"),
    ("ToolCall name", lambda: ToolCall(untyped(5)), "ToolCall.name"),
    ("ToolCall args list", lambda: ToolCall("t", untyped([1])), "ToolCall.args"),
    ("ToolCall call_id", lambda: ToolCall("t", {}, untyped(5)), "ToolCall.call_id"),
    ("ToolResult is_error", lambda: ToolResult("t", None, "", untyped(1)), "ToolResult.is_error"),
    ("Custom name", lambda: Custom(untyped(5)), "Custom.name"),
    ("Error type", lambda: Error(untyped(ValueError), "m"), "Error.type"),
    ("Error message", lambda: Error("E", untyped(None)), "Error.message"),
    ("Cancelled reason", lambda: Cancelled(untyped(None)), "Cancelled.reason"),
]


@pytest.mark.parametrize(
    ("make", "where"), [c[1:] for c in WRONG_FIELD_TYPES], ids=[c[0] for c in WRONG_FIELD_TYPES]
)
def test_wrong_field_types_are_refused(make: Callable[[], Event], where: str) -> None:
    with pytest.raises(InvalidEvent, match=where.replace(".", r"\.")):
        make()


@pytest.mark.parametrize("name", BUILT_IN_KINDS)
def test_custom_cannot_take_a_built_in_kind(name: str) -> None:
    with pytest.raises(InvalidEvent, match="built-in"):
        Custom(name, {})


@pytest.mark.parametrize("name", ["", "two words", "a/b", "tab\t", "é", "new\nline", "x!", '"q"'])
def test_custom_name_must_use_allowed_characters(name: str) -> None:
    with pytest.raises(InvalidEvent, match="name"):
        Custom(name)


@given(CUSTOM_NAMES)
def test_custom_accepts_every_allowed_name(name: str) -> None:
    assert Custom(name).kind == name


# -- reading JSON back ---------------------------------------------------------------------------

GOOD = {"kind": "text", "run_id": "r", "seq": 0, "path": ["a"], "ts": 1.0, "text": "hi"}

GARBAGE: list[tuple[str, str | bytes]] = [
    ("empty", ""),
    ("not json", "hello"),
    ("truncated", '{"kind": "text"'),
    ("array", "[1, 2]"),
    ("null", "null"),
    ("number", "42"),
    ("string", '"text"'),
    ("empty object", "{}"),
    ("bad utf-8", b'{"kind": "text\xff"}'),
    *[
        (f"missing {key}", json.dumps({k: v for k, v in GOOD.items() if k != key}))
        for key in ("kind", "run_id", "seq", "path", "ts", "text")
    ],
    ("unknown field", json.dumps({**GOOD, "colour": "blue"})),
    ("wrong payload type", json.dumps({**GOOD, "text": 5})),
    ("path not a list", json.dumps({**GOOD, "path": 5})),
    ("ts not a number", json.dumps({**GOOD, "ts": "soon"})),
    ("bad custom name", json.dumps({**GOOD, "kind": "no spaces allowed"})),
]


@pytest.mark.parametrize("text", [g[1] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_from_json_of_garbage_raises_invalid_event(text: str | bytes) -> None:
    with pytest.raises(InvalidEvent):
        Event.from_json(text)


def test_from_json_of_deeply_nested_json_raises_invalid_event() -> None:
    # A transport may receive any text; json.loads gives up with RecursionError here.
    with pytest.raises(InvalidEvent):
        Event.from_json("[" * 100_000 + "]" * 100_000)


WRONG_STAMPS: list[tuple[str, dict[str, Any]]] = [
    ("kind is a list", {"kind": ["text"]}),
    ("kind is a dict", {"kind": {"k": 1}}),
    ("seq is a string", {"seq": "zero"}),
    ("seq is a float", {"seq": 1.5}),
    ("run_id is a number", {"run_id": 5}),
    ("path is a string", {"path": "abc"}),
    ("path holds a number", {"path": ["a", 1]}),
]


@pytest.mark.parametrize("change", [w[1] for w in WRONG_STAMPS], ids=[w[0] for w in WRONG_STAMPS])
def test_from_json_refuses_wrongly_typed_stamps(change: dict[str, Any]) -> None:
    # The JSON form says: kind string, run_id string, seq integer, path array of strings,
    # ts number. Anything else is not an agentnb event (e.g. "abc" must not become a path
    # of three runs named "a", "b", "c").
    with pytest.raises(InvalidEvent):
        Event.from_json(json.dumps({**GOOD, **change}))


def test_from_json_refuses_a_nan_timestamp() -> None:
    # Python's json module reads NaN, but NaN is not JSON and to_json() would write it back.
    with pytest.raises(InvalidEvent):
        Event.from_json(json.dumps(GOOD).replace('"ts": 1.0', '"ts": NaN'))


def test_from_dict_refuses_a_non_dict() -> None:
    with pytest.raises(InvalidEvent, match="object"):
        Event.from_dict([GOOD])  # type: ignore[arg-type]


def test_unknown_kind_reads_back_as_custom() -> None:
    data = {"kind": "progress", "run_id": "r", "seq": 3, "path": ["a", "b"], "ts": 2.5}
    event = Event.from_dict({**data, "data": {"done": 1}})
    assert type(event) is Custom
    assert event == Custom("progress", {"done": 1}, run_id="r", seq=3, path=("a", "b"), ts=2.5)
    assert event.kind == "progress"
    without_data = Event.from_json(json.dumps(data))
    assert without_data == Custom("progress", None, run_id="r", seq=3, path=("a", "b"), ts=2.5)


def test_an_unknown_kind_keeps_all_its_fields_as_data() -> None:
    # A kind from a newer agentnb must not lose fields when an older one reads it.
    data = {"kind": "plan", "run_id": "r", "seq": 0, "path": ["a"], "ts": 1.0, "steps": [1, 2]}
    event = Event.from_dict({**data, "owner": "me"})
    assert event == Custom(
        "plan", {"steps": [1, 2], "owner": "me"}, run_id="r", seq=0, path=("a",), ts=1.0
    )


def test_str_subclasses_become_plain_str_fields() -> None:
    chunk = TextChunk(untyped(Color.RED))
    assert chunk.text == Color.RED.value
    assert type(chunk.text) is str


def test_known_kinds_read_back_as_their_class() -> None:
    for event, _ in EXAMPLES:
        assert type(Event.from_dict(event.to_dict())) is type(event)


def test_lone_surrogates_cannot_make_an_event_that_is_not_utf8() -> None:
    # to_json() promises UTF-8 text: every transport (a file, SSE, a WebSocket) encodes it.
    # A lone surrogate (json.loads("\"\\ud800\"") gives one) must either be refused when the
    # event is made, or be written in a form that encodes and reads back exactly.
    try:
        event = TextChunk("bad \ud800 text")
    except InvalidEvent:
        return
    line = event.to_json()
    encoded = line.encode("utf-8")
    assert Event.from_json(encoded) == event


def test_the_built_in_kinds_are_these() -> None:
    assert set(Event._kinds) == set(BUILT_IN_KINDS)
