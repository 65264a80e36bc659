"""The JSON Schema shipped for every event kind, and the JSON forms older versions wrote."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

import agentnb
from agentnb import (
    Answer,
    Ask,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from agentnb.testing import capture_events, check_event

STAMPS: dict[str, Any] = {"run_id": "ab12", "seq": 3, "path": ("a", "b"), "ts": 1.5}
TOTALS = {"calls": 2, "input_tokens": 10, "output_tokens": 4, "cost": 0.25}

# Each kind with its optional fields empty, and with all of them set.
SAMPLES: list[Event] = [
    TextChunk("hi", **STAMPS),
    TextChunk("hi", message_id="m1", **STAMPS),
    Status("looking", **STAMPS),
    ToolCall("add", {"a": 1}, "c1", **STAMPS),
    ToolResult("add", 3, "c1", **STAMPS),
    ToolResult("rm", "refused by the user", "c2", is_error=True, denied=True, **STAMPS),
    Done(None, **STAMPS),
    Done({"x": [1]}, usage=TOTALS, **STAMPS),
    Error("ValueError", "bad", "tb", **STAMPS),
    Error("ValueError", "bad", "tb", usage=TOTALS, **STAMPS),
    Cancelled("", **STAMPS),
    Cancelled("stop", usage=TOTALS, **STAMPS),
    Reasoning("hmm", **STAMPS),
    Reasoning("", message_id="r1", signature="c2lnbmF0dXJl", **STAMPS),
    ToolCallStart("add", "c1", **STAMPS),
    ToolCallStart("add", "c1", message_id="m1", **STAMPS),
    ToolCallDelta("c1", '{"a": ', **STAMPS),
    ToolCallEnd("c1", **STAMPS),
    ToolCallEnd("c1", error="the arguments are not JSON", **STAMPS),
    Usage(5, 7, **STAMPS),
    Usage(5, 7, "gpt-x", "openai", reasoning_tokens=2, cached_tokens=1, cost=0.001, **STAMPS),
    StepStart("model", **STAMPS),
    StepStart("tools", step_id="s1", **STAMPS),
    StepEnd("model", **STAMPS),
    StepEnd("tools", step_id="s1", **STAMPS),
    StateSnapshot({"count": 1, "items": ["a"]}, **STAMPS),
    StateDelta([{"op": "replace", "path": "/count", "value": 2}], **STAMPS),
    MessageStart("m1", **STAMPS),
    MessageStart("m2", role="user", **STAMPS),
    MessageEnd("m1", **STAMPS),
    MessageEnd("m1", finish_reason="tool_calls", **STAMPS),
    Raw("openai.responses", {"type": "response.web_search_call.searching"}, **STAMPS),
    Ask("Name?", "q1", **STAMPS),
    Ask("Delete 3 files?", "q2", ["yes", "no"], "no", call_id="c9", **STAMPS),
    Answer("q2", "yes", "cell", **STAMPS),
    Custom("progress", {"done": 1}, **STAMPS),
]


def _schema_files() -> set[str]:
    folder = resources.files("agentnb").joinpath("schema")
    return {entry.name for entry in folder.iterdir() if entry.name.endswith(".json")}


def test_every_kind_has_a_schema_file_in_the_package() -> None:
    assert _schema_files() == {f"{kind}.json" for kind in Event._kinds} | {"custom.json"}


@pytest.mark.parametrize("kind", [*sorted(Event._kinds), "custom"])
def test_each_schema_is_valid_json_schema_2020_12(kind: str) -> None:
    schema = agentnb.event_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) >= {"kind", "run_id", "seq", "path", "ts"}


def test_the_samples_cover_every_kind() -> None:
    assert {e.kind for e in SAMPLES} == set(Event._kinds) | {"progress"}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.kind}-{len(e.payload())}")
def test_every_kind_fits_its_schema_and_round_trips(event: Event) -> None:
    check_event(event)
    check_event(json.loads(event.to_json()))
    assert Event.from_json(event.to_json()) == event


def test_optional_fields_are_left_out_while_empty() -> None:
    assert "message_id" not in TextChunk("hi", **STAMPS).to_dict()
    assert "denied" not in ToolResult("add", 3, "c1", **STAMPS).to_dict()
    assert "usage" not in Done(1, **STAMPS).to_dict()
    assert Done(1, usage=TOTALS, **STAMPS).to_dict()["usage"] == TOTALS
    assert Usage(1, 2, **STAMPS).payload() == {"input_tokens": 1, "output_tokens": 2}


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("text", {"text": 3}),
        ("text", {"text": "a", "colour": "red"}),
        ("usage", {"input_tokens": -1, "output_tokens": 0}),
        ("tool_call_delta", {"call_id": "c1"}),
        ("state_delta", {"patch": [{"op": "frobnicate", "path": "/a"}]}),
        ("message_start", {"message_id": "m", "role": "wizard"}),
        ("done", {"result": 1, "usage": {"calls": 1}}),
        ("tool_result", {"name": "t", "result": 1, "call_id": "", "is_error": False, "denied": 0}),
    ],
)
def test_the_schemas_refuse_what_agentnb_would_not_write(kind: str, extra: dict[str, Any]) -> None:
    data = {"kind": kind, "run_id": "r", "seq": 0, "path": ["a"], "ts": 1.0, **extra}
    with pytest.raises(jsonschema.ValidationError):
        check_event(data)


def test_a_custom_event_may_not_take_a_built_in_name_in_the_schema_either() -> None:
    data = {"kind": "usage", "run_id": "r", "seq": 0, "path": ["a"], "ts": 1.0, "data": 1}
    with pytest.raises(jsonschema.ValidationError):
        check_event(data)
    check_event({**data, "kind": "my.usage"})


@pytest.mark.parametrize(
    "line",
    [
        '{"kind":"text","run_id":"r","seq":0,"path":["a"],"ts":1.0,"text":"hi"}',
        '{"kind":"tool_result","run_id":"r","seq":1,"path":["a"],"ts":1.0,"name":"t",'
        '"result":3,"call_id":"c","is_error":false}',
        '{"kind":"done","run_id":"r","seq":2,"path":["a"],"ts":1.0,"result":null}',
        '{"kind":"error","run_id":"r","seq":2,"path":["a"],"ts":1.0,"type":"E",'
        '"message":"m","traceback":""}',
        '{"kind":"cancelled","run_id":"r","seq":2,"path":["a"],"ts":1.0,"reason":""}',
    ],
)
def test_json_written_before_the_new_kinds_still_reads_and_writes_the_same(line: str) -> None:
    event = Event.from_json(line)
    assert json.loads(event.to_json()) == json.loads(line)
    check_event(event)


def test_a_kind_from_a_newer_agentnb_round_trips_as_custom() -> None:
    line = '{"kind":"hologram","run_id":"r","seq":0,"path":["a"],"ts":1.0,"beam":[1,2]}'
    event = Event.from_json(line)
    assert isinstance(event, Custom)
    assert event.data == {"beam": [1, 2]}
    check_event(event)


async def test_a_run_emitting_every_kind_gives_events_that_fit_and_usage_totals() -> None:
    async def everything() -> str:
        for sample in SAMPLES:
            if not sample.terminal:
                agentnb.emit(sample._stamped("", -1, (), 0.0))
        return "ok"

    with capture_events() as events:  # checks each event against its schema as it arrives
        assert await agentnb.run(everything) == "ok"
    assert [e.kind for e in events[:-1]] == [s.kind for s in SAMPLES if not s.terminal]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage == {
        "calls": 2,
        "input_tokens": 10,
        "output_tokens": 14,
        "reasoning_tokens": 2,
        "cached_tokens": 1,
        "cost": 0.001,
    }


async def test_a_parent_run_totals_its_children_usage_and_a_cancelled_run_carries_its_own() -> None:
    import asyncio

    async def child() -> None:
        agentnb.emit(Usage(3, 4, "m"))

    async def stuck() -> None:
        agentnb.emit(Usage(1, 1))
        await asyncio.sleep(60)

    async def parent() -> None:
        agentnb.emit(Usage(10, 20))
        await agentnb.run(child)
        agentnb.emit(Usage(0, 1))

    with capture_events() as events:
        await agentnb.run(parent)
        run = agentnb.start(stuck)
        await asyncio.sleep(0.05)
        assert run.usage == {"calls": 1, "input_tokens": 1, "output_tokens": 1}
        run.cancel("enough")
        with pytest.raises(agentnb.RunCancelled):
            await run.wait()
    terminal = [e for e in events if e.terminal]
    assert [(e.kind, e.path, e.usage) for e in terminal] == [  # type: ignore[attr-defined]
        ("done", ("parent", "child"), {"calls": 1, "input_tokens": 3, "output_tokens": 4}),
        ("done", ("parent",), {"calls": 3, "input_tokens": 13, "output_tokens": 25}),
        ("cancelled", ("stuck",), {"calls": 1, "input_tokens": 1, "output_tokens": 1}),
    ]
