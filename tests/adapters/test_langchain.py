"""``agentnb.relay`` of a LangChain chat model's ``astream``/``stream``, with LangChain's own code.

The model is LangChain's fake chat model streaming scripted chunks (``fake_models``);
each test runs the same script twice: once bare (the reference: what LangChain
delivers and how it merges it), once relayed inside a run. What agentnb emitted must
add up to exactly what LangChain delivered.
"""

from __future__ import annotations

import asyncio
import json
import operator
import time
from functools import reduce
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import StrOutputParser

import agentnb
from agentnb import (
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Reasoning,
    RunCancelled,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    UnknownStream,
    Usage,
)
from agentnb.testing import CapturedEvents, capture_events
from tests.adapters.fake_models import ScriptedChatModel, scripted, tool_chunk

PROMPT = [("user", "weather in Paris, and the tides?")]

# Text (hostile bits included), reasoning blocks, then three tool calls: one whose first
# chunk already carries part of the arguments, one split so its name and id come with no
# arguments, interleaved with the first, and one whole in a single chunk. Usage on the last.
ARGS_A = ['{"city": "Pa', 'ris", "unit', 's": "c"}']
ARGS_B = ["", '{"q": ', '"tide tables"}']
ARGS_C = '{"n": 3, "deep": {"x": [1, 2]}}'
USAGE: UsageMetadata = {
    "input_tokens": 120,
    "output_tokens": 64,
    "total_tokens": 184,
    "input_token_details": {"cache_read": 100},
    "output_token_details": {"reasoning": 40},
}


def tool_turn() -> list[AIMessageChunk | BaseException]:
    def c(**fields: Any) -> AIMessageChunk:
        return AIMessageChunk(id="msg_1", **({"content": []} | fields))

    return [
        c(content=[{"type": "reasoning", "reasoning": "The user wants ", "index": 0}]),
        c(content=[{"type": "reasoning", "reasoning": "weather <i>and</i> tides.", "index": 0}]),
        c(content=[{"type": "text", "text": "Let me <script>x</script>", "index": 1}]),
        c(content=[{"type": "text", "text": " check \u00e9t\u00e9 \U0001f30a", "index": 1}]),
        c(tool_call_chunks=[tool_chunk(ARGS_A[0], index=0, name="weather", call_id="call_A")]),
        c(tool_call_chunks=[tool_chunk(ARGS_B[0], index=1, name="search", call_id="call_B")]),
        c(tool_call_chunks=[tool_chunk(ARGS_A[1], index=0)]),
        c(tool_call_chunks=[tool_chunk(ARGS_B[1], index=1)]),
        c(tool_call_chunks=[tool_chunk(ARGS_A[2], index=0), tool_chunk(ARGS_B[2], index=1)]),
        c(tool_call_chunks=[tool_chunk(ARGS_C, index=2, name="count", call_id="call_C")]),
        c(
            content=[],
            usage_metadata=USAGE,
            response_metadata={
                "model_name": "test-model-1",
                "model_provider": "testco",
                "finish_reason": "tool_calls",
            },
        ),
    ]


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def deltas_by_call(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in of(events, ToolCallDelta):
        out[e.call_id] = out.get(e.call_id, "") + e.delta
    return out


def reasoning_of(message: AIMessageChunk) -> str:
    blocks = message.content if isinstance(message.content, list) else []
    return "".join(
        b["reasoning"] for b in blocks if isinstance(b, dict) and b.get("type") == "reasoning"
    )


async def reference(*turn: list[AIMessageChunk | BaseException]) -> AIMessageChunk:
    """What LangChain itself streams for the script, merged as LangChain merges it."""
    chunks = [chunk async for chunk in scripted(*turn).astream(PROMPT)]
    merged: AIMessageChunk = reduce(operator.add, chunks)
    return merged


async def relayed(model: ScriptedChatModel) -> tuple[Any, CapturedEvents]:
    async def relaying(prompt: str) -> Any:
        return await agentnb.relay(model.astream([("user", prompt)]))

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    return result, events


def check_tool_turn(merged: AIMessageChunk, result: Any, events: CapturedEvents) -> None:
    """Everything relayed adds up to exactly LangChain's own merge of the same stream."""
    assert result == merged
    assert (
        events.text() == merged.text == "Let me <script>x</script> check \u00e9t\u00e9 \U0001f30a"
    )
    assert {t.message_id for t in of(events, TextChunk)} == {"msg_1"}
    reasoning = of(events, Reasoning)
    assert "".join(r.text for r in reasoning) == reasoning_of(merged)
    assert reasoning_of(merged) == "The user wants weather <i>and</i> tides."

    merged_args = {c["id"]: c["args"] for c in merged.tool_call_chunks}
    assert deltas_by_call(events) == merged_args
    assert merged_args == {"call_A": "".join(ARGS_A), "call_B": "".join(ARGS_B), "call_C": ARGS_C}
    starts = of(events, ToolCallStart)
    assert [(s.call_id, s.name, s.message_id) for s in starts] == [
        ("call_A", "weather", "msg_1"),
        ("call_B", "search", "msg_1"),
        ("call_C", "count", "msg_1"),
    ]
    calls = of(events, ToolCall)
    assert [(c.call_id, c.name, c.args) for c in calls] == [
        (c["id"], c["name"], c["args"]) for c in merged.tool_calls
    ]
    assert [e.error for e in of(events, ToolCallEnd)] == ["", "", ""]
    kinds = events.kinds()
    for call_id in ("call_A", "call_B", "call_C"):  # start, deltas, end, then the whole call
        at = [i for i, e in enumerate(events) if getattr(e, "call_id", None) == call_id]
        assert [events[i].kind for i in (at[0], at[-2], at[-1])] == [
            "tool_call_start",
            "tool_call_end",
            "tool_call",
        ]

    (usage,) = of(events, Usage)
    assert merged.usage_metadata is not None
    assert usage.input_tokens == merged.usage_metadata["input_tokens"] == 120
    assert usage.output_tokens == merged.usage_metadata["output_tokens"] == 64
    assert usage.reasoning_tokens == 40
    assert usage.cached_tokens == 100
    assert (usage.model, usage.provider) == ("test-model-1", "testco")
    assert [(e.message_id, e.role) for e in of(events, MessageStart)] == [("msg_1", "assistant")]
    assert [(e.message_id, e.finish_reason) for e in of(events, MessageEnd)] == [
        ("msg_1", "tool_calls")
    ]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_end", "done"]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage == {
        "calls": 1,
        "input_tokens": 120,
        "output_tokens": 64,
        "reasoning_tokens": 40,
        "cached_tokens": 100,
    }


async def test_astream_text_reasoning_tool_calls_and_usage_add_up_to_langchains_merge() -> None:
    merged = await reference(tool_turn())
    result, events = await relayed(scripted(tool_turn()))
    check_tool_turn(merged, result, events)


def test_the_sync_stream_in_a_sync_agent_adds_up_the_same() -> None:
    model = scripted(tool_turn(), tool_turn())
    merged: AIMessageChunk = reduce(operator.add, model.stream(PROMPT))

    def relaying(prompt: str) -> Any:
        return agentnb.relay(model.stream([("user", prompt)]))

    with capture_events() as events:
        result = agentnb.run_sync(relaying, "hi")
    check_tool_turn(merged, result, events)


async def test_plain_text_ends_its_message_at_langchains_own_last_chunk() -> None:
    """No chunk says it is the last: LangChain appends an empty one with its own run id."""
    parts = ["Hel", "lo ", "<b>there</b>", "!"]
    turn: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(content=p, id="prov-7") for p in parts
    ]
    bare = [chunk async for chunk in scripted(turn).astream(PROMPT)]
    assert bare[-1].chunk_position == "last"
    assert bare[-1].id != "prov-7"
    assert bare[-1].content == ""
    result, events = await relayed(scripted(turn))
    assert [t.text for t in of(events, TextChunk)] == parts
    assert result == reduce(operator.add, bare)
    assert result.content == "".join(parts)
    assert events.kinds() == [
        "message_start",
        *["text"] * len(parts),
        "message_end",
        "done",
    ]
    assert of(events, MessageStart)[0].message_id == "prov-7"
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage is None


async def test_anthropic_style_thinking_with_signature_and_reasoning_content() -> None:
    turn: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(id="msg_a", content=[{"type": "thinking", "thinking": "Hmm, ", "index": 0}]),
        AIMessageChunk(
            id="msg_a", content=[{"type": "thinking", "thinking": "tides.", "index": 0}]
        ),
        AIMessageChunk(
            id="msg_a",
            content=[{"type": "thinking", "thinking": "", "signature": "sig==", "index": 0}],
        ),
        AIMessageChunk(id="msg_a", content=[{"type": "text", "text": "High at 6.", "index": 1}]),
        AIMessageChunk(
            id="msg_a",
            content=[],
            additional_kwargs={"reasoning_content": "(extra)"},
            chunk_position="last",
        ),
    ]
    merged = await reference(turn)
    result, events = await relayed(scripted(turn))
    assert result == merged
    reasoning = of(events, Reasoning)
    assert [(r.text, r.signature) for r in reasoning] == [
        ("Hmm, ", None),
        ("tides.", None),
        ("", "sig=="),
        ("(extra)", None),
    ]
    assert isinstance(merged.content, list)
    (thinking,) = [b for b in merged.content if isinstance(b, dict) and b["type"] == "thinking"]
    assert "".join(r.text for r in reasoning[:3]) == thinking["thinking"]
    assert thinking["signature"] == "sig=="
    assert merged.additional_kwargs["reasoning_content"] == "(extra)"
    assert events.text() == merged.text == "High at 6."
    assert events.kinds()[-2:] == ["message_end", "done"]


async def test_a_tool_call_whose_name_comes_late_loses_no_argument_text() -> None:
    """Argument text that arrives before the call's name is sent with the first delta."""
    turn: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(
            content="", id="m", tool_call_chunks=[tool_chunk('{"a"', index=0, call_id="c1")]
        ),
        AIMessageChunk(content="", id="m", tool_call_chunks=[tool_chunk(": 1", index=0, name="f")]),
        AIMessageChunk(content="", id="m", tool_call_chunks=[tool_chunk("}", index=0)]),
    ]
    merged = await reference(turn)
    result, events = await relayed(scripted(turn))
    assert result == merged
    assert [d.delta for d in of(events, ToolCallDelta)] == ['{"a": 1', "}"]
    assert deltas_by_call(events) == {"c1": merged.tool_call_chunks[0]["args"]}
    (call,) = of(events, ToolCall)
    assert (call.name, call.args, call.call_id) == ("f", {"a": 1}, "c1")


async def test_arguments_that_are_not_json_end_with_the_reason_and_their_raw_text() -> None:
    turn: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(
            content="", id="m", tool_call_chunks=[tool_chunk("{not json", name="f", call_id="c")]
        )
    ]
    merged = await reference(turn)
    result, events = await relayed(scripted(turn))
    assert result == merged
    assert merged.tool_call_chunks[0]["args"] == "{not json"
    assert merged.tool_calls[0]["args"] == {}  # LangChain's partial parse drops the text
    (end,) = of(events, ToolCallEnd)
    assert end.error.startswith("the arguments are not JSON")
    assert of(events, ToolCall)[0].args == {"_raw": "{not json"}


async def test_an_error_mid_stream_is_the_runs_error_with_the_exception_type() -> None:
    class ProviderDown(RuntimeError):
        pass

    turn: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(content="partial ", id="m"),
        ProviderDown("overloaded, try later"),
    ]
    with pytest.raises(ProviderDown, match="overloaded"):
        async for _ in scripted(turn).astream(PROMPT):
            pass

    async def relaying(prompt: str) -> Any:
        return await agentnb.relay(scripted(turn).astream([("user", prompt)]))

    with capture_events() as events, pytest.raises(ProviderDown):
        await agentnb.run(relaying, "hi")
    assert events.text() == "partial "
    (error,) = of(events, Error)
    assert error.type.endswith("ProviderDown")
    assert error.message == "overloaded, try later"


async def test_cancelling_the_run_stops_the_model_stream_within_a_second() -> None:
    many: list[AIMessageChunk | BaseException] = [
        AIMessageChunk(content=f"{i} ", id="m") for i in range(1000)
    ]
    model = scripted(many, delay=0.02)
    first = asyncio.Event()

    async def relaying(prompt: str) -> Any:
        return await agentnb.relay(model.astream([("user", prompt)]))

    def seen(event: Event) -> None:
        if type(event) is TextChunk:
            first.set()

    with capture_events() as events:
        run = agentnb.start(relaying, "hi", sink=seen)
        await asyncio.wait_for(first.wait(), 5)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
        ended = time.monotonic() - cancelled_at
    assert ended < 1.0
    assert events.kinds()[-1] == "cancelled"
    streamed = model.streamed
    await asyncio.sleep(0.2)  # ten more chunks' time: the model's stream must have stopped
    assert model.streamed <= streamed + 1
    assert model.streamed < 100


async def test_a_stream_of_anything_but_ai_message_chunks_says_what_relay_reads() -> None:
    async def mixed() -> Any:
        yield AIMessageChunk(content="ok", id="m")
        yield HumanMessageChunk(content="not a model's")

    async def relaying(prompt: str) -> Any:
        return await agentnb.relay(mixed())

    with pytest.raises(UnknownStream, match=r"AIMessageChunk.*HumanMessageChunk"):
        await agentnb.run(relaying, "hi")

    parsed = (scripted([AIMessageChunk(content="x", id="m")]) | StrOutputParser()).astream("hi")

    async def relaying_text(prompt: str) -> Any:
        return await agentnb.relay(parsed)

    with pytest.raises(UnknownStream, match="LangChain"):
        await agentnb.run(relaying_text, "hi")


def test_relaying_a_chat_model_stream_imports_the_langchain_adapter_only() -> None:
    """The relay found the adapter by the chunks' package (``langchain_core``)."""
    model = scripted([AIMessageChunk(content="x", id="m")])

    def relaying(prompt: str) -> Any:
        return agentnb.relay(model.stream(prompt))

    with capture_events() as events:
        result = agentnb.run_sync(relaying, "hi")
    assert isinstance(result, AIMessageChunk)
    assert result.content == "x"
    assert json.loads(events[-1].to_json())["kind"] == "done"
