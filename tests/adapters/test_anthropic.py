"""``agentnb.relay`` of the Anthropic SDK's message streams, over real HTTP against a scripted
provider speaking Anthropic's documented SSE format.

Each test serves the same bytes to the real SDK read bare (the reference: the raw events
it delivers, and the final Message its own ``messages.stream()`` accumulator builds) and
relayed inside a run. What agentnb emitted must add up to exactly what the SDK delivered.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anthropic
import pytest

import agentnb
from agentnb import (
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    RunCancelled,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    UnknownStream,
    Usage,
)
from agentnb.testing import CapturedEvents, capture_events
from harness.providers import Provider, Reply, sse

MODEL = "claude-sonnet-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


# -- the wire ------------------------------------------------------------------------


def event(data: dict[str, Any]) -> bytes:
    """One event as Anthropic sends it: ``event: <type>`` and its JSON, as in the docs."""
    return sse(json.dumps(data), data["type"])


def message_start(msg_id: str = "msg_01", **usage: int) -> bytes:
    return event(
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": MODEL,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1} | usage,
            },
        }
    )


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, kind: str, **fields: Any) -> bytes:
    return event({"type": "content_block_delta", "index": index, "delta": {"type": kind} | fields})


def block_stop(index: int) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def message_end(stop_reason: str, **usage: Any) -> list[bytes]:
    return [
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 15} | usage,
            }
        ),
        event({"type": "message_stop"}),
    ]


PING = event({"type": "ping"})
TEXT_PARTS = ["Hel", "lo, ", "<script>x</script>", " \u00e9t\u00e9 \U0001f30a", "!"]
TEXT = [
    message_start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    *[delta(0, "text_delta", text=part) for part in TEXT_PARTS],
    block_stop(0),
    *message_end("end_turn"),
]

THINKING_PARTS = ["Let me think", " about <b>this</b>", "... done."]
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=="
THINKING = [
    message_start("msg_02"),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    *[delta(0, "thinking_delta", thinking=part) for part in THINKING_PARTS],
    delta(0, "signature_delta", signature=SIGNATURE),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, "text_delta", text="The answer is 4."),
    block_stop(1),
    *message_end("end_turn"),
]

REDACTED_DATA = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
REDACTED = [
    message_start("msg_03"),
    block_start(0, {"type": "redacted_thinking", "data": REDACTED_DATA}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, "text_delta", text="Done."),
    block_stop(1),
    *message_end("end_turn"),
]

ARGS_A = ["", '{"lo', 'cation": "San', " Francisc", 'o, CA", "unit', '": "fahr', 'enheit"}']
ARGS_B = ['{"q": ', '"tide', ' tables", "n": [1, ', "2.5, null]", "}"]
TOOLS = [
    message_start("msg_04"),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Checking."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    *[delta(1, "input_json_delta", partial_json=piece) for piece in ARGS_A],
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "search", "input": {}}),
    *[delta(2, "input_json_delta", partial_json=piece) for piece in ARGS_B],
    block_stop(2),
    *message_end("tool_use"),
]

USAGE = [
    message_start(
        "msg_05", input_tokens=472, cache_creation_input_tokens=100, cache_read_input_tokens=2048
    ),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Cached."),
    block_stop(0),
    *message_end(
        "end_turn",
        output_tokens=89,
        input_tokens=472,
        cache_creation_input_tokens=100,
        cache_read_input_tokens=2048,
        output_tokens_details={"thinking_tokens": 40},
    ),
]

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
ERROR_MID_STREAM = [
    message_start("msg_06"),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Par"),
    event(OVERLOADED),
]


def async_client(base: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key="test", max_retries=0)


async def bare(provider: Provider, base: str, chunks: list[bytes]) -> tuple[list[Any], Any]:
    """The reference: the SDK's raw events for these bytes, and its own final Message."""
    provider.script(Reply(chunks=chunks), Reply(chunks=chunks))
    client = async_client(base)
    stream = await client.messages.create(
        model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
    )
    raw = [item async for item in stream]
    async with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as s:
        final = await s.get_final_message()
    await client.close()
    return raw, final


async def relayed(
    provider: Provider, base: str, chunks: list[bytes], *, helper: bool = False
) -> tuple[Any, CapturedEvents]:
    """The same bytes relayed inside a run (``create(stream=True)``, or ``.stream()``)."""
    provider.script(Reply(chunks=chunks))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        messages: list[Any] = [{"role": "user", "content": prompt}]
        try:
            if helper:
                return await agentnb.relay(
                    client.messages.stream(model=MODEL, max_tokens=1024, messages=messages)
                )
            stream = await client.messages.create(
                model=MODEL, max_tokens=1024, messages=messages, stream=True
            )
            return await agentnb.relay(stream)
        finally:
            await client.close()

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    return result, events


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def sdk_deltas(raw: list[Any], kind: str, field: str) -> list[str]:
    return [
        getattr(e.delta, field)
        for e in raw
        if e.type == "content_block_delta" and e.delta.type == kind
    ]


def deltas_by_call(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in of(events, ToolCallDelta):
        out[e.call_id] = out.get(e.call_id, "") + e.delta
    return out


def assert_same_message(message: Any, final: Any) -> None:
    """The relayed Message is the SDK's own final message, field for field."""
    assert isinstance(message, anthropic.types.Message)
    assert message.model_dump() == final.model_dump()


# -- text, reasoning, tool calls ---------------------------------------------------------


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
async def test_text_is_emitted_as_streamed_with_the_message_id(
    provider: Provider, base: str, helper: bool
) -> None:
    raw, final = await bare(provider, base, TEXT)
    message, events = await relayed(provider, base, TEXT, helper=helper)

    texts = of(events, TextChunk)
    assert [t.text for t in texts] == sdk_deltas(raw, "text_delta", "text") == TEXT_PARTS
    assert "".join(t.text for t in texts) == final.content[0].text
    assert {t.message_id for t in texts} == {"msg_01"}
    assert of(events, MessageStart)[0].message_id == "msg_01"
    assert [(e.message_id, e.finish_reason) for e in of(events, MessageEnd)] == [
        ("msg_01", "end_turn")
    ]
    kinds = events.kinds()
    assert kinds[0] == "message_start"
    assert kinds[-3:] == ["usage", "message_end", "done"]
    assert_same_message(message, final)
    assert of(events, Raw) == []
    if helper:
        assert type(message) is type(final)  # the SDK's own get_final_message()


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
async def test_thinking_is_reasoning_with_its_signature(
    provider: Provider, base: str, helper: bool
) -> None:
    raw, final = await bare(provider, base, THINKING)
    message, events = await relayed(provider, base, THINKING, helper=helper)

    reasoning = of(events, Reasoning)
    sdk_thinking = sdk_deltas(raw, "thinking_delta", "thinking")
    assert [r.text for r in reasoning if r.text] == sdk_thinking == THINKING_PARTS
    assert "".join(r.text for r in reasoning) == final.content[0].thinking
    assert [r.signature for r in reasoning if r.signature is not None] == [SIGNATURE]
    assert final.content[0].signature == SIGNATURE
    assert {r.message_id for r in reasoning} == {"msg_02"}
    assert events.text() == final.content[1].text == "The answer is 4."
    kinds = events.kinds()
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert_same_message(message, final)


async def test_redacted_thinking_is_a_reasoning_carrying_its_data(
    provider: Provider, base: str
) -> None:
    _, final = await bare(provider, base, REDACTED)
    message, events = await relayed(provider, base, REDACTED)

    assert final.content[0].type == "redacted_thinking"
    (reasoning,) = of(events, Reasoning)
    assert (reasoning.text, reasoning.message_id, reasoning.signature) == (
        "",
        "msg_03",
        final.content[0].data,
    )
    assert reasoning.signature == REDACTED_DATA
    assert events.text() == "Done."
    assert_same_message(message, final)


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
async def test_two_tool_uses_stream_their_argument_fragments_exactly(
    provider: Provider, base: str, helper: bool
) -> None:
    raw, final = await bare(provider, base, TOOLS)
    message, events = await relayed(provider, base, TOOLS, helper=helper)

    sdk_fragments: dict[str, list[str]] = {}
    ids = {
        e.index: e.content_block.id
        for e in raw
        if e.type == "content_block_start" and e.content_block.type == "tool_use"
    }
    for e in raw:
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
            sdk_fragments.setdefault(ids[e.index], []).append(e.delta.partial_json)
    assert deltas_by_call(events) == {k: "".join(v) for k, v in sdk_fragments.items()}
    assert [d.delta for d in of(events, ToolCallDelta)] == [p for p in ARGS_A + ARGS_B if p]

    starts = of(events, ToolCallStart)
    assert [(s.name, s.call_id, s.message_id) for s in starts] == [
        ("get_weather", "toolu_A", "msg_04"),
        ("search", "toolu_B", "msg_04"),
    ]
    calls = of(events, ToolCall)
    blocks = [b for b in final.content if b.type == "tool_use"]
    assert [(c.name, c.args, c.call_id) for c in calls] == [(b.name, b.input, b.id) for b in blocks]
    assert calls[1].args == {"q": "tide tables", "n": [1, 2.5, None]}
    assert [e.error for e in of(events, ToolCallEnd)] == ["", ""]
    kinds = events.kinds()
    # each call ends (ToolCallEnd, then the whole ToolCall) at its block's stop
    assert kinds.count("tool_call_end") == 2
    first_end = kinds.index("tool_call_end")
    assert kinds[first_end + 1] == "tool_call"
    assert kinds[first_end + 2] == "tool_call_start"
    assert [(e.finish_reason) for e in of(events, MessageEnd)] == ["tool_use"]
    assert_same_message(message, final)


async def test_the_stream_helpers_events_count_each_piece_once(
    provider: Provider, base: str
) -> None:
    provider.script(Reply(chunks=TOOLS))
    client = async_client(base)
    async with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as s:
        helper_kinds = [e.type async for e in s]
    await client.close()
    # the helper stream repeats text and argument pieces as its own events
    assert helper_kinds.count("text") == 1
    assert helper_kinds.count("input_json") == len(ARGS_A) + len(ARGS_B)

    _, events = await relayed(provider, base, TOOLS, helper=True)
    assert events.text() == "Checking."
    assert len(of(events, TextChunk)) == 1
    assert len(of(events, ToolCallDelta)) == len([p for p in ARGS_A + ARGS_B if p])
    assert len(of(events, ToolCall)) == 2
    assert len(of(events, Usage)) == 1
    assert of(events, Raw) == []  # the helper's own events are all repeats: none passed on


async def test_a_server_tool_use_and_its_result_are_a_tool_call_and_a_tool_result(
    provider: Provider, base: str
) -> None:
    results = [
        {
            "type": "web_search_result",
            "title": "Tides <today>",
            "url": "https://example.com/tides",
            "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k",
            "page_age": None,
        }
    ]
    chunks = [
        message_start("msg_09"),
        block_start(
            0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
        ),
        delta(0, "input_json_delta", partial_json=""),
        delta(0, "input_json_delta", partial_json='{"query": "tides'),
        delta(0, "input_json_delta", partial_json=' today"}'),
        block_stop(0),
        block_start(
            1,
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": results},
        ),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        delta(2, "text_delta", text="High tide at noon."),
        block_stop(2),
        *message_end("end_turn"),
    ]
    _, final = await bare(provider, base, chunks)
    message, events = await relayed(provider, base, chunks)

    (call,) = of(events, ToolCall)
    assert (call.name, call.args, call.call_id) == (
        "web_search",
        final.content[0].input,
        "srvtoolu_1",
    )
    assert call.args == {"query": "tides today"}
    (result,) = of(events, ToolResult)
    assert (result.name, result.call_id, result.is_error) == ("web_search", "srvtoolu_1", False)
    assert result.result == final.content[1].model_dump(mode="json")["content"] == results
    assert events.text() == "High tide at noon."
    assert_same_message(message, final)


# -- usage -------------------------------------------------------------------------------


async def test_usage_is_the_sdks_count_with_the_cache_in_the_input(
    provider: Provider, base: str
) -> None:
    _, final = await bare(provider, base, USAGE)
    message, events = await relayed(provider, base, USAGE)

    sdk = final.usage
    assert (sdk.input_tokens, sdk.cache_read_input_tokens, sdk.cache_creation_input_tokens) == (
        472,
        2048,
        100,
    )
    (usage,) = of(events, Usage)
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        usage.model,
        usage.provider,
    ) == (
        sdk.input_tokens + sdk.cache_read_input_tokens + sdk.cache_creation_input_tokens,
        sdk.output_tokens,
        sdk.cache_read_input_tokens,
        sdk.output_tokens_details.thinking_tokens,
        final.model,
        "anthropic",
    )
    assert usage.cost is None
    (done,) = of(events, Done)
    assert done.usage == {
        "calls": 1,
        "input_tokens": 2620,
        "output_tokens": 89,
        "reasoning_tokens": 40,
        "cached_tokens": 2048,
    }
    assert_same_message(message, final)


async def test_usage_without_cache_fields_is_input_from_the_start_and_output_from_the_end(
    provider: Provider, base: str
) -> None:
    _, final = await bare(provider, base, TEXT)
    _, events = await relayed(provider, base, TEXT)
    (usage,) = of(events, Usage)
    assert (usage.input_tokens, usage.output_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert (usage.input_tokens, usage.output_tokens) == (25, 15)
    assert usage.cached_tokens is None
    assert usage.reasoning_tokens is None


# -- errors and cancel ---------------------------------------------------------------------


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
async def test_an_error_event_mid_stream_is_the_runs_error_with_the_sdks_type_and_message(
    provider: Provider, base: str, helper: bool
) -> None:
    provider.script(Reply(chunks=ERROR_MID_STREAM))
    client = async_client(base)
    stream = await client.messages.create(
        model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
    )
    with pytest.raises(anthropic.APIStatusError) as bare_error:
        async for _ in stream:
            pass
    await client.close()

    with pytest.raises(anthropic.APIStatusError) as raised:
        await relayed(provider, base, ERROR_MID_STREAM, helper=helper)
    assert type(raised.value) is type(bare_error.value)
    assert str(raised.value) == str(bare_error.value)
    assert "overloaded_error" in str(raised.value)


async def test_an_error_event_keeps_what_came_before_it(provider: Provider, base: str) -> None:
    provider.script(Reply(chunks=ERROR_MID_STREAM))
    client = async_client(base)
    stream = await client.messages.create(
        model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
    )
    with pytest.raises(anthropic.APIStatusError) as bare_error:
        async for _ in stream:
            pass
    await client.close()

    provider.script(Reply(chunks=ERROR_MID_STREAM))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        try:
            return await agentnb.relay(
                await client.messages.create(
                    model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
                )
            )
        finally:
            await client.close()

    with capture_events() as events, pytest.raises(anthropic.APIStatusError):
        await agentnb.run(relaying, "hi")
    assert events.text() == "Par"
    (error,) = of(events, Error)
    cls = type(bare_error.value)
    assert error.type == f"anthropic.{cls.__qualname__}"
    assert getattr(anthropic, cls.__qualname__) is cls
    assert error.message == str(bare_error.value)
    assert of(events, Usage) == []  # the message never ended
    assert events.kinds()[-1] == "error"


async def test_a_429_before_the_stream_is_the_runs_error_as_rate_limit_error(
    provider: Provider, base: str
) -> None:
    body = json.dumps(
        {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"},
        }
    ).encode()
    provider.script(Reply(status=429, body=body), Reply(status=429, body=body))
    client = async_client(base)
    with pytest.raises(anthropic.RateLimitError) as bare_error:
        await client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True)
    await client.close()

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        try:
            return await agentnb.relay(
                await client.messages.create(
                    model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
                )
            )
        finally:
            await client.close()

    with capture_events() as events, pytest.raises(anthropic.RateLimitError):
        await agentnb.run(relaying, "hi")
    (error,) = of(events, Error)
    assert error.type == "anthropic.RateLimitError"
    assert error.message == str(bare_error.value)
    assert "Number of requests exceeded" in error.message


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
async def test_cancelling_the_run_closes_the_stream_within_a_second(
    provider: Provider, base: str, helper: bool
) -> None:
    chunks = [message_start(), block_start(0, {"type": "text", "text": ""})]
    chunks.append(delta(0, "text_delta", text="wait"))
    provider.script(Reply(chunks=chunks, hang=True))
    first = asyncio.Event()

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        if helper:
            return await agentnb.relay(
                client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES)
            )
        stream = await client.messages.create(
            model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
        )
        return await agentnb.relay(stream)

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
    await asyncio.to_thread(provider.wait_left, 1.0)  # the provider's thread records it
    assert provider.disconnects, "the provider never saw the client leave"
    assert provider.disconnects[0] - cancelled_at < 1.0
    assert provider.completed == 0
    assert events.kinds()[-1] == "cancelled"


# -- the sync form ---------------------------------------------------------------------------


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream"])
def test_the_sync_form_relays_a_sync_stream_in_a_sync_agent(
    provider: Provider, base: str, helper: bool
) -> None:
    provider.script(Reply(chunks=TOOLS), Reply(chunks=TOOLS))
    client = anthropic.Anthropic(base_url=base, api_key="test", max_retries=0)
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as s:
        final = s.get_final_message()

    def relaying(prompt: str) -> Any:
        if helper:
            return agentnb.relay(
                client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES)
            )
        stream = client.messages.create(
            model=MODEL, max_tokens=1024, messages=MESSAGES, stream=True
        )
        return agentnb.relay(stream)

    with capture_events() as events:
        message = agentnb.run_sync(relaying, "hi")
    client.close()
    assert deltas_by_call(events) == {"toolu_A": "".join(ARGS_A), "toolu_B": "".join(ARGS_B)}
    assert events.text() == "Checking."
    assert_same_message(message, final)
    assert len(of(events, Usage)) == 1


# -- what is not a stream -------------------------------------------------------------------


async def test_a_citation_passes_through_as_raw_and_stays_in_the_message(
    provider: Provider, base: str
) -> None:
    citation = {
        "type": "char_location",
        "cited_text": "The grass is green.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 0,
        "end_char_index": 19,
    }
    chunks = [
        message_start("msg_07"),
        block_start(0, {"type": "text", "text": "", "citations": []}),
        delta(0, "citations_delta", citation=citation),
        delta(0, "text_delta", text="the grass is green"),
        block_stop(0),
        *message_end("end_turn"),
    ]
    _, final = await bare(provider, base, chunks)
    message, events = await relayed(provider, base, chunks)
    (raw,) = of(events, Raw)
    assert raw.source == "anthropic"
    assert raw.event["delta"]["citation"] == citation
    assert events.text() == "the grass is green"
    assert_same_message(message, final)


async def test_a_whole_message_is_not_a_stream_and_says_so(provider: Provider, base: str) -> None:
    body = json.dumps(
        {
            "id": "msg_08",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "hi"}],
            "model": MODEL,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    ).encode()
    provider.script(Reply(body=body, content_type="application/json"))

    async def agent(prompt: str) -> str:
        client = async_client(base)
        whole = await client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES)
        await client.close()
        with pytest.raises(UnknownStream) as raised:
            agentnb.relay(whole)
        return str(raised.value)

    text = await agentnb.run(agent, "hi")
    assert "messages.create(..., stream=True) or messages.stream(...)" in text
    assert text.endswith("a whole response: ask for a stream (stream=True)")
