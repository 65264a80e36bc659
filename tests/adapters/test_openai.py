"""``agentnb.relay`` of the OpenAI SDK's streams, over real HTTP against a scripted provider.

Each test scripts the provider's documented SSE bytes twice: the real SDK reads them
once bare (the reference: what the SDK itself delivers), once relayed inside a run.
What agentnb emitted must add up to exactly what the SDK delivered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

import agentnb
from agentnb import (
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    NoActiveRun,
    Raw,
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
from harness.providers import Provider, Reply, sse

MODEL = "gpt-test"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
DONE = b"data: [DONE]\n\n"


# -- the wire: chat completions ------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    *,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> bytes:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
    }
    if usage is not None or not choices:
        data["usage"] = usage
    return sse(data)


def tool_part(index: int, arguments: str, call_id: str = "", name: str = "") -> dict[str, Any]:
    part: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        part |= {"id": call_id, "type": "function"}
        part["function"]["name"] = name
    return {"tool_calls": [part]}


USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 42,
    "total_tokens": 61,
    "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 30, "audio_tokens": 0},
}

TEXT_PARTS = ["Hel", "lo, ", "<b>wo</b>", "rld", " \u00e9t\u00e9 \U0001f30a", "!"]
TEXT_CHAT = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    *[chunk({"content": part}) for part in TEXT_PARTS],
    chunk({}, "stop"),
    DONE,
]


def async_client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="test", max_retries=0)


async def bare_chat(provider: Provider, base: str, chunks: list[bytes]) -> list[Any]:
    """The reference: the SDK's own chunks for these bytes."""
    provider.script(Reply(chunks=chunks))
    client = async_client(base)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    got = [item async for item in stream]
    await client.close()
    return got


async def relayed_chat(
    provider: Provider, base: str, chunks: list[bytes], **options: Any
) -> tuple[Any, CapturedEvents]:
    """The same bytes relayed inside a run: its result and every event."""
    provider.script(Reply(chunks=chunks))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, **options
        )
        try:
            return await agentnb.relay(stream)
        finally:
            await client.close()

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    return result, events


def sdk_message(chunks: list[Any]) -> Any:
    """The message the SDK's own accumulator builds from its chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for item in chunks:
        state.handle_chunk(item)
    return state.get_final_completion().choices[0].message


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def deltas_by_call(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in of(events, ToolCallDelta):
        out[e.call_id] = out.get(e.call_id, "") + e.delta
    return out


# -- chat completions ------------------------------------------------------------------


async def test_chat_text_is_emitted_as_streamed_and_the_message_is_the_sdks(
    provider: Provider, base: str
) -> None:
    reference = await bare_chat(provider, base, TEXT_CHAT)
    message, events = await relayed_chat(provider, base, TEXT_CHAT)

    sdk_text = "".join(c.choices[0].delta.content or "" for c in reference)
    texts = of(events, TextChunk)
    assert [t.text for t in texts] == TEXT_PARTS
    assert "".join(t.text for t in texts) == sdk_text == "".join(TEXT_PARTS)
    assert {t.message_id for t in texts} == {"chatcmpl-1"}
    assert of(events, MessageStart)[0].message_id == "chatcmpl-1"
    assert [(e.message_id, e.finish_reason) for e in of(events, MessageEnd)] == [
        ("chatcmpl-1", "stop")
    ]
    kinds = events.kinds()
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_end", "done"]
    expected = sdk_message(reference)
    assert message.role == "assistant"
    assert message.content == expected.content == sdk_text
    assert message.tool_calls is None
    assert expected.tool_calls is None
    assert message.model_extra == {}


ARGS_A = ['{"ci', 'ty": "Pa', "ris", '", "unit', 's": "c"', "}"]
ARGS_B = ["{", '"q": ', '"tide', ' tables"', "}"]
TOOL_CHAT = [
    chunk({"role": "assistant", "content": None}),
    chunk(tool_part(0, "", "call_A", "weather")),
    *[chunk(tool_part(0, piece)) for piece in ARGS_A],
    chunk(tool_part(1, "", "call_B", "search")),
    *[chunk(tool_part(1, piece)) for piece in ARGS_B],
    chunk({}, "tool_calls"),
    DONE,
]


async def test_chat_parallel_tool_calls_stream_their_argument_fragments_exactly(
    provider: Provider, base: str
) -> None:
    reference = await bare_chat(provider, base, TOOL_CHAT)
    message, events = await relayed_chat(provider, base, TOOL_CHAT)

    sdk_fragments: dict[str, list[str]] = {}
    ids: dict[int, str] = {}
    for item in reference:
        for part in item.choices[0].delta.tool_calls or ():
            if part.id:
                ids[part.index] = part.id
            if part.function.arguments:
                sdk_fragments.setdefault(ids[part.index], []).append(part.function.arguments)
    assert [e.delta for e in of(events, ToolCallDelta) if e.call_id == "call_A"] == ARGS_A
    assert deltas_by_call(events) == {k: "".join(v) for k, v in sdk_fragments.items()}
    assert [(e.name, e.call_id, e.message_id) for e in of(events, ToolCallStart)] == [
        ("weather", "call_A", "chatcmpl-1"),
        ("search", "call_B", "chatcmpl-1"),
    ]
    for call_id, name in (("call_A", "weather"), ("call_B", "search")):
        end = next(
            i for i, e in enumerate(events) if type(e) is ToolCallEnd and e.call_id == call_id
        )
        ended = events[end]
        assert isinstance(ended, ToolCallEnd)
        assert ended.error == ""
        whole = events[end + 1]
        assert isinstance(whole, ToolCall)
        assert (whole.name, whole.call_id) == (name, call_id)
        assert whole.args == json.loads(deltas_by_call(events)[call_id])
        first_delta = next(
            i for i, e in enumerate(events) if type(e) is ToolCallDelta and e.call_id == call_id
        )
        start = next(
            i for i, e in enumerate(events) if type(e) is ToolCallStart and e.call_id == call_id
        )
        assert start < first_delta < end
    assert of(events, MessageEnd)[0].finish_reason == "tool_calls"

    expected = sdk_message(reference)
    assert message.content is None
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (c.id, c.type, c.function.name, c.function.arguments) for c in expected.tool_calls
    ]
    assert [c.function.arguments for c in message.tool_calls] == ["".join(ARGS_A), "".join(ARGS_B)]


REASONING_PARTS = ["The user ", "greets; ", "answer <i>kindly</i>."]
REASONING_CHAT = [
    chunk({"role": "assistant", "content": ""}),
    *[chunk({"reasoning_content": part}) for part in REASONING_PARTS],
    chunk({"content": "Hi"}),
    chunk({"content": " there"}),
    chunk({}, "stop"),
    chunk(choices=False, usage=USAGE),
    DONE,
]


async def test_chat_reasoning_content_extra_is_reasoning_and_kept_in_the_message(
    provider: Provider, base: str
) -> None:
    reference = await bare_chat(provider, base, REASONING_CHAT)
    message, events = await relayed_chat(provider, base, REASONING_CHAT)

    sdk_reasoning = [
        c.choices[0].delta.model_extra["reasoning_content"]
        for c in reference
        if c.choices and "reasoning_content" in (c.choices[0].delta.model_extra or {})
    ]
    assert sdk_reasoning == REASONING_PARTS
    reasoning = of(events, Reasoning)
    assert [r.text for r in reasoning] == sdk_reasoning
    assert {r.message_id for r in reasoning} == {"chatcmpl-1"}
    assert all(r.signature is None for r in reasoning)
    assert "".join(t.text for t in of(events, TextChunk)) == "Hi there"
    assert message.model_extra == {"reasoning_content": "".join(REASONING_PARTS)}
    assert message.content == sdk_message(reference).content == "Hi there"


async def test_chat_usage_with_include_usage_is_the_sdks_count(
    provider: Provider, base: str
) -> None:
    reference = await bare_chat(provider, base, REASONING_CHAT)
    _, events = await relayed_chat(
        provider, base, REASONING_CHAT, stream_options={"include_usage": True}
    )
    assert provider.requests[-1]["body"]["stream_options"] == {"include_usage": True}

    sdk_usage = reference[-1].usage
    assert reference[-1].choices == []
    usage = of(events, Usage)
    assert usage == [
        Usage(
            input_tokens=sdk_usage.prompt_tokens,
            output_tokens=sdk_usage.completion_tokens,
            model=reference[-1].model,
            provider="openai",
            reasoning_tokens=sdk_usage.completion_tokens_details.reasoning_tokens,
            cached_tokens=sdk_usage.prompt_tokens_details.cached_tokens,
            run_id=usage[0].run_id,
            seq=usage[0].seq,
            path=usage[0].path,
            ts=usage[0].ts,
        )
    ]
    (done,) = of(events, Done)
    assert done.usage == {
        "calls": 1,
        "input_tokens": 19,
        "output_tokens": 42,
        "reasoning_tokens": 30,
        "cached_tokens": 3,
    }


ERROR_BODY = {"error": {"message": "The server had an error", "type": "server_error"}}
ERROR_CHAT = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Par"}),
    sse(ERROR_BODY),
]


async def test_an_error_payload_mid_stream_is_the_runs_error_with_the_sdks_type_and_message(
    provider: Provider, base: str
) -> None:
    provider.script(Reply(chunks=ERROR_CHAT))
    client = async_client(base)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as bare:
        async for _ in stream:
            pass
    await client.close()

    with pytest.raises(openai.APIError) as raised:
        await relayed_chat(provider, base, ERROR_CHAT)
    assert str(raised.value) == str(bare.value) == "The server had an error"
    assert type(raised.value) is type(bare.value)


async def test_an_error_event_keeps_the_text_before_it(provider: Provider, base: str) -> None:
    provider.script(Reply(chunks=ERROR_CHAT))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return await agentnb.relay(stream)

    with capture_events() as events, pytest.raises(openai.APIError):
        await agentnb.run(relaying, "hi")
    assert events.text() == "Par"
    (error,) = of(events, Error)
    assert error.type in ("openai.APIError", "openai._exceptions.APIError")
    assert error.message == "The server had an error"


async def test_a_429_before_the_stream_is_the_runs_error_as_rate_limit_error(
    provider: Provider, base: str
) -> None:
    body = json.dumps(
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}
    ).encode()
    provider.script(Reply(status=429, body=body), Reply(status=429, body=body))
    client = async_client(base)
    with pytest.raises(openai.RateLimitError) as bare:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    await client.close()

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        try:
            return await agentnb.relay(
                await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            )
        finally:
            await client.close()

    with capture_events() as events, pytest.raises(openai.RateLimitError):
        await agentnb.run(relaying, "hi")
    (error,) = of(events, Error)
    assert error.type in ("openai.RateLimitError", "openai._exceptions.RateLimitError")
    assert error.message == str(bare.value)
    assert "Rate limit reached" in error.message


async def test_cancelling_the_run_closes_the_stream_within_a_second(
    provider: Provider, base: str
) -> None:
    provider.script(Reply(chunks=[chunk({"role": "assistant", "content": "wait"})], hang=True))
    first = asyncio.Event()

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
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


def test_the_sync_form_relays_a_sync_stream_in_a_sync_agent(provider: Provider, base: str) -> None:
    provider.script(Reply(chunks=TOOL_CHAT), Reply(chunks=TOOL_CHAT))
    client = openai.OpenAI(base_url=base + "/v1", api_key="test", max_retries=0)
    reference = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    def relaying(prompt: str) -> Any:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return agentnb.relay(stream)

    with capture_events() as events:
        message = agentnb.run_sync(relaying, "hi")
    client.close()
    assert deltas_by_call(events) == {"call_A": "".join(ARGS_A), "call_B": "".join(ARGS_B)}
    expected = sdk_message(reference)
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (c.id, c.function.name, c.function.arguments) for c in expected.tool_calls
    ]
    kinds = events.kinds()
    assert kinds.index("tool_call") == kinds.index("tool_call_end") + 1


async def test_the_chat_stream_helper_is_relayed_from_its_chunk_events(
    provider: Provider, base: str
) -> None:
    reference = await bare_chat(provider, base, TOOL_CHAT)
    provider.script(Reply(chunks=TOOL_CHAT))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        try:
            return await agentnb.relay(
                client.chat.completions.stream(model=MODEL, messages=MESSAGES)
            )
        finally:
            await client.close()

    with capture_events() as events:
        message = await agentnb.run(relaying, "hi")
    assert deltas_by_call(events) == {"call_A": "".join(ARGS_A), "call_B": "".join(ARGS_B)}
    assert len(of(events, ToolCall)) == 2
    expected = sdk_message(reference)
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (c.id, c.function.name, c.function.arguments) for c in expected.tool_calls
    ]


# -- the wire: Responses -----------------------------------------------------------------


def response(status: str, output: list[Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1764000000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": "gpt-test-2025",
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": usage,
        "metadata": {},
    }


class Script:
    """Responses events in order, each with its sequence number, as SSE bytes."""

    def __init__(self) -> None:
        self.events: list[bytes] = []

    def add(self, kind: str, **data: Any) -> None:
        body = {"type": kind, "sequence_number": len(self.events), **data}
        self.events.append(sse(body, event=kind))


SUMMARY = ["**Plan**: ", "look up ", "the <tide>."]
TEXT = ["High tide ", "is at ", "6:40."]
ARGS = ['{"port"', ': "Br', 'est"}']
REASONING_ITEM = {
    "id": "rs_1",
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "".join(SUMMARY)}],
    "encrypted_content": "gAAAA-opaque",
}
CALL_ITEM = {
    "id": "fc_1",
    "type": "function_call",
    "call_id": "call_9",
    "name": "tides",
    "arguments": "".join(ARGS),
    "status": "completed",
}
MESSAGE_ITEM = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "".join(TEXT), "annotations": []}],
}
RESP_USAGE = {
    "input_tokens": 31,
    "input_tokens_details": {"cached_tokens": 7},
    "output_tokens": 58,
    "output_tokens_details": {"reasoning_tokens": 20},
    "total_tokens": 89,
}


def responses_script(end: str = "completed") -> list[bytes]:
    s = Script()
    s.add("response.created", response=response("in_progress", []))
    s.add("response.in_progress", response=response("in_progress", []))
    s.add(
        "response.output_item.added",
        output_index=0,
        item={**REASONING_ITEM, "summary": [], "encrypted_content": None},
    )
    s.add(
        "response.reasoning_summary_part.added",
        item_id="rs_1",
        output_index=0,
        summary_index=0,
        part={"type": "summary_text", "text": ""},
    )
    for piece in SUMMARY:
        s.add(
            "response.reasoning_summary_text.delta",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            delta=piece,
        )
    s.add("response.output_item.done", output_index=0, item=REASONING_ITEM)
    s.add(
        "response.output_item.added",
        output_index=1,
        item={**CALL_ITEM, "arguments": "", "status": "in_progress"},
    )
    for piece in ARGS:
        s.add("response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta=piece)
    s.add(
        "response.function_call_arguments.done",
        item_id="fc_1",
        output_index=1,
        arguments="".join(ARGS),
    )
    s.add("response.output_item.done", output_index=1, item=CALL_ITEM)
    s.add(
        "response.output_item.added",
        output_index=2,
        item={**MESSAGE_ITEM, "status": "in_progress", "content": []},
    )
    part = {"type": "output_text", "text": "", "annotations": []}
    s.add(
        "response.content_part.added", item_id="msg_1", output_index=2, content_index=0, part=part
    )
    for piece in TEXT:
        s.add(
            "response.output_text.delta",
            item_id="msg_1",
            output_index=2,
            content_index=0,
            delta=piece,
            logprobs=[],
        )
    s.add(
        "response.output_text.done",
        item_id="msg_1",
        output_index=2,
        content_index=0,
        text="".join(TEXT),
        logprobs=[],
    )
    s.add(
        "response.content_part.done",
        item_id="msg_1",
        output_index=2,
        content_index=0,
        part=MESSAGE_ITEM["content"][0],
    )
    s.add("response.output_item.done", output_index=2, item=MESSAGE_ITEM)
    output = [REASONING_ITEM, CALL_ITEM, MESSAGE_ITEM]
    if end == "completed":
        s.add("response.completed", response=response("completed", output, RESP_USAGE))
    elif end == "failed":
        failed = response("failed", output, RESP_USAGE)
        failed["error"] = {"code": "server_error", "message": "The model crashed"}
        s.add("response.failed", response=failed)
    else:
        s.add("error", code="rate_limit_exceeded", message="Slow down", param=None)
    return s.events


async def bare_responses(provider: Provider, base: str, chunks: list[bytes]) -> list[Any]:
    provider.script(Reply(chunks=chunks))
    client = async_client(base)
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    got = [item async for item in stream]
    await client.close()
    return got


async def relayed_responses(
    provider: Provider, base: str, chunks: list[bytes], *, helper: bool = False
) -> tuple[Any, CapturedEvents]:
    provider.script(Reply(chunks=chunks))

    async def relaying(prompt: str) -> Any:
        client = async_client(base)
        try:
            if helper:
                return await agentnb.relay(client.responses.stream(model=MODEL, input=prompt))
            stream = await client.responses.create(model=MODEL, input=prompt, stream=True)
            return await agentnb.relay(stream)
        finally:
            await client.close()

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    return result, events


def sdk_deltas(reference: list[Any], kind: str) -> list[str]:
    return [e.delta for e in reference if e.type == kind]


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream helper"])
async def test_responses_text_reasoning_tool_call_and_usage(
    provider: Provider, base: str, helper: bool
) -> None:
    reference = await bare_responses(provider, base, responses_script())
    final, events = await relayed_responses(provider, base, responses_script(), helper=helper)

    assert [t.text for t in of(events, TextChunk)] == sdk_deltas(
        reference, "response.output_text.delta"
    )
    assert {t.message_id for t in of(events, TextChunk)} == {"msg_1"}
    reasoning = of(events, Reasoning)
    summary = sdk_deltas(reference, "response.reasoning_summary_text.delta")
    assert [r.text for r in reasoning if r.text] == summary == SUMMARY
    assert [(r.message_id, r.signature) for r in reasoning if r.signature] == [
        ("rs_1", "gAAAA-opaque")
    ]
    assert [e.delta for e in of(events, ToolCallDelta)] == sdk_deltas(
        reference, "response.function_call_arguments.delta"
    )
    assert [(e.name, e.call_id) for e in of(events, ToolCallStart)] == [("tides", "call_9")]
    kinds = events.kinds()
    assert kinds.index("tool_call") == kinds.index("tool_call_end") + 1
    (call,) = of(events, ToolCall)
    assert (call.name, call.call_id, call.args) == ("tides", "call_9", {"port": "Brest"})
    assert [(e.message_id, e.role) for e in of(events, MessageStart)] == [("msg_1", "assistant")]
    assert [(e.message_id, e.finish_reason) for e in of(events, MessageEnd)] == [
        ("msg_1", "completed")
    ]

    sdk_final = reference[-1].response
    (usage,) = of(events, Usage)
    assert (usage.input_tokens, usage.output_tokens) == (
        sdk_final.usage.input_tokens,
        sdk_final.usage.output_tokens,
    )
    assert usage.reasoning_tokens == sdk_final.usage.output_tokens_details.reasoning_tokens == 20
    assert usage.cached_tokens == sdk_final.usage.input_tokens_details.cached_tokens == 7
    assert (usage.model, usage.provider) == (sdk_final.model, "openai")
    assert of(events, Done)[0].usage == {
        "calls": 1,
        "input_tokens": 31,
        "output_tokens": 58,
        "reasoning_tokens": 20,
        "cached_tokens": 7,
    }
    assert final.id == sdk_final.id
    assert final.output_text == sdk_final.output_text == "".join(TEXT)
    assert final.usage == sdk_final.usage
    if not helper:
        assert final == sdk_final
    assert "raw" not in kinds  # lifecycle events carry nothing more


@pytest.mark.parametrize(
    ("end", "message", "code"),
    [
        ("failed", "The model crashed", "server_error"),
        ("error", "Slow down", "rate_limit_exceeded"),
    ],
)
async def test_a_failed_response_or_error_event_raises_the_sdks_api_error(
    provider: Provider, base: str, end: str, message: str, code: str
) -> None:
    with pytest.raises(openai.APIError) as raised:
        await relayed_responses(provider, base, responses_script(end))
    assert type(raised.value) is openai.APIError
    assert str(raised.value) == raised.value.message == message
    assert raised.value.code == code
    assert raised.value.request.url.path == "/v1/responses"


async def test_a_built_in_tools_progress_passes_through_as_raw(
    provider: Provider, base: str
) -> None:
    s = Script()
    s.add("response.created", response=response("in_progress", []))
    search = {"id": "ws_1", "type": "web_search_call", "status": "in_progress"}
    s.add("response.output_item.added", output_index=0, item=search)
    s.add("response.web_search_call.searching", item_id="ws_1", output_index=0)
    s.add("response.completed", response=response("completed", [], None))
    final, events = await relayed_responses(provider, base, s.events)
    raws = [e.event for e in of(events, Raw)]
    assert [r["type"] for r in raws] == [
        "response.output_item.added",
        "response.web_search_call.searching",
    ]
    assert {e.source for e in of(events, Raw)} == {"openai.responses"}
    assert final.status == "completed"
    assert of(events, Usage) == []


# -- misuse ----------------------------------------------------------------------------


async def relay_any(thing: object) -> Any:
    result = agentnb.relay(thing)
    return await result if asyncio.iscoroutine(result) else result


async def test_relay_of_something_that_is_not_a_stream_says_what_it_takes() -> None:
    async def dicts() -> AsyncIterator[dict[str, str]]:
        yield {"content": "hi"}

    async def agent(prompt: str) -> list[str]:
        messages = []
        for thing in ([1, 2], dicts()):
            with pytest.raises(UnknownStream) as raised:
                await relay_any(thing)
            messages.append(str(raised.value))
        return messages

    messages = await agentnb.run(agent, "hi")
    for text in messages:
        assert "OpenAI chat completion or Responses stream" in text
        assert "Anthropic" in text
    assert messages[0].endswith("got builtins.list")
    assert messages[1].endswith("got builtins.dict")


async def test_relay_outside_a_run_raises_no_active_run(provider: Provider, base: str) -> None:
    provider.script(Reply(chunks=TEXT_CHAT))
    client = async_client(base)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(NoActiveRun):
        agentnb.relay(stream)
    await stream.close()
    await client.close()
