"""``agentnb.relay`` of LiteLLM's streams: LiteLLM's own offline mocks (``mock_response``),
and LiteLLM in front of a scripted provider over real HTTP (Anthropic thinking, cancel).

Each test reads the same mock (or the same bytes) bare with LiteLLM as the reference
and relayed inside a run: what agentnb emitted must add up to what LiteLLM delivered.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no fetch

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import litellm
import pytest
from litellm import ModelResponse

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
    Usage,
)
from agentnb.testing import CapturedEvents, capture_events
from harness.providers import Provider, Reply, sse
from tests.adapters.test_anthropic import REDACTED, REDACTED_DATA, SIGNATURE, THINKING

# LiteLLM's own modules, imported on its first call, warn about their TypedDicts.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Items? .* on TypedDict class .* using the `ReadOnly` qualifier:UserWarning"
)

MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
TEXT = "Hello <b>there</b>, friend \u00e9t\u00e9 \U0001f30a!"
USAGE_OPTIONS = {"stream_options": {"include_usage": True}}


def tool_response() -> ModelResponse:
    return ModelResponse(
        choices=[
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city": "Paris", "unit": "c"}',
                            },
                        }
                    ],
                }
            }
        ]
    )


def thinking_response() -> ModelResponse:
    return ModelResponse(
        choices=[
            {
                "message": {
                    "role": "assistant",
                    "content": "It is 4.",
                    "reasoning_content": "2 + 2 <is> 4",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "2 + 2 <is> 4", "signature": "sig_1"}
                    ],
                }
            }
        ]
    )


async def bare(**options: Any) -> list[Any]:
    """The reference: LiteLLM's own chunks for this mock."""
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True, **options)
    return [chunk async for chunk in stream]


async def relayed(**options: Any) -> tuple[Any, CapturedEvents, list[str]]:
    """The same mock relayed inside a run: its result, every event, LiteLLM's provider."""
    providers: list[str] = []

    async def relaying(prompt: str) -> Any:
        messages = [{"role": "user", "content": prompt}]
        stream = await litellm.acompletion(model=MODEL, messages=messages, stream=True, **options)
        providers.append(stream.custom_llm_provider)
        return await agentnb.relay(stream)

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    return result, events, providers


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def contents(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


# -- LiteLLM's own mocks ---------------------------------------------------------------


async def test_text_is_emitted_as_litellm_streams_it_and_the_result_is_litellms() -> None:
    reference = await bare(mock_response=TEXT)
    result, events, _ = await relayed(mock_response=TEXT)

    texts = of(events, TextChunk)
    assert [t.text for t in texts] == contents(reference)
    assert len(texts) > 3  # LiteLLM's mock streams it in small pieces
    assert "".join(t.text for t in texts) == TEXT
    (start,) = of(events, MessageStart)
    assert {t.message_id for t in texts} == {start.message_id}
    assert start.message_id.startswith("chatcmpl-")
    assert [(e.message_id, e.finish_reason) for e in of(events, MessageEnd)] == [
        (start.message_id, "stop")
    ]
    assert isinstance(result, ModelResponse)
    assert result.id == start.message_id
    assert result.choices[0].message.content == TEXT
    assert result.choices[0].finish_reason == "stop"
    built: Any = litellm.stream_chunk_builder(reference)
    assert built.choices[0].message.content == TEXT
    assert of(events, Usage) == []  # none reported without include_usage
    assert events.kinds()[-1] == "done"


async def test_usage_and_cost_are_litellms_own() -> None:
    reference = await bare(mock_response=TEXT, **USAGE_OPTIONS)
    result, events, providers = await relayed(mock_response=TEXT, **USAGE_OPTIONS)

    sdk = reference[-1].usage
    assert reference[-1].choices == []
    assert sdk.cost is not None
    assert sdk.cost > 0
    (usage,) = of(events, Usage)
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        usage.cost,
        usage.model,
        usage.provider,
    ) == (
        sdk.prompt_tokens,
        sdk.completion_tokens,
        sdk.completion_tokens_details.reasoning_tokens,
        sdk.cost,
        reference[-1].model,
        providers[0],
    )
    assert providers == ["openai"]  # what LiteLLM's mock says it is
    assert result.usage.cost == usage.cost
    assert result.usage.prompt_tokens == usage.input_tokens
    (done,) = of(events, Done)
    assert done.usage is not None
    assert done.usage["cost"] == sdk.cost
    assert (done.usage["input_tokens"], done.usage["output_tokens"]) == (
        sdk.prompt_tokens,
        sdk.completion_tokens,
    )
    kinds = events.kinds()
    assert kinds[-3:] == ["message_end", "usage", "done"]


async def test_a_tool_call_streams_as_start_arguments_end_and_the_whole_call() -> None:
    reference = await bare(mock_response=tool_response())
    result, events, _ = await relayed(mock_response=tool_response())

    sdk_calls = [
        part
        for chunk in reference
        for choice in chunk.choices
        for part in choice.delta.tool_calls or ()
    ]
    (start,) = of(events, ToolCallStart)
    assert (start.name, start.call_id) == (sdk_calls[0].function.name, sdk_calls[0].id)
    assert (start.name, start.call_id) == ("get_weather", "call_1")
    assert "".join(d.delta for d in of(events, ToolCallDelta)) == "".join(
        p.function.arguments or "" for p in sdk_calls
    )
    (end,) = of(events, ToolCallEnd)
    assert end.error == ""
    (call,) = of(events, ToolCall)
    assert (call.name, call.args, call.call_id) == (
        "get_weather",
        {"city": "Paris", "unit": "c"},
        "call_1",
    )
    (built,) = result.choices[0].message.tool_calls
    assert (built.id, built.function.name, json.loads(built.function.arguments)) == (
        call.call_id,
        call.name,
        call.args,
    )
    assert [e.finish_reason for e in of(events, MessageEnd)] == ["tool_calls"]


async def test_reasoning_content_and_a_thinking_blocks_signature_are_reasoning() -> None:
    reference = await bare(mock_response=thinking_response(), **USAGE_OPTIONS)
    result, events, _ = await relayed(mock_response=thinking_response(), **USAGE_OPTIONS)

    sdk_reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in reference if c.choices
    )
    reasoning = of(events, Reasoning)
    assert "".join(r.text for r in reasoning) == sdk_reasoning == "2 + 2 <is> 4"
    assert [r.signature for r in reasoning if r.signature is not None] == ["sig_1"]
    assert events.text() == "It is 4."
    message = result.choices[0].message
    assert message.reasoning_content == sdk_reasoning
    assert message.thinking_blocks[0]["signature"] == "sig_1"
    (usage,) = of(events, Usage)
    assert usage.reasoning_tokens == reference[-1].usage.completion_tokens_details.reasoning_tokens
    assert usage.cost == reference[-1].usage.cost


async def test_an_error_mid_stream_is_the_runs_error_with_litellms_type_and_message() -> None:
    mock = "Exception: mock_streaming_error"  # LiteLLM's mock of a failure mid-stream
    with pytest.raises(litellm.exceptions.MidStreamFallbackError) as bare_error:
        await bare(mock_response=mock)
    cls = type(bare_error.value)

    async def relaying(prompt: str) -> Any:
        stream = await litellm.acompletion(
            model=MODEL, messages=MESSAGES, stream=True, mock_response=mock
        )
        return await agentnb.relay(stream)

    with capture_events() as events, pytest.raises(cls) as raised:
        await agentnb.run(relaying, "hi")
    assert str(raised.value) == str(bare_error.value)
    assert "mock error raised mid-stream" in str(raised.value)
    (error,) = of(events, Error)
    assert error.type == "litellm.exceptions.MidStreamFallbackError"
    assert error.message == str(bare_error.value)
    assert events.kinds()[-1] == "error"


def test_the_sync_form_relays_completion_in_a_sync_agent() -> None:
    reference = list(
        litellm.completion(model=MODEL, messages=MESSAGES, stream=True, mock_response=TEXT)
    )

    def relaying(prompt: str) -> Any:
        stream = litellm.completion(
            model=MODEL, messages=MESSAGES, stream=True, mock_response=TEXT, **USAGE_OPTIONS
        )
        result = agentnb.relay(stream)  # in a sync agent: the value itself, not a coroutine
        assert isinstance(result, ModelResponse), type(result)
        return result

    with capture_events() as events:
        result = agentnb.run_sync(relaying, "hi")
    assert [t.text for t in of(events, TextChunk)] == contents(reference)
    assert events.text() == result.choices[0].message.content == TEXT
    (usage,) = of(events, Usage)
    assert usage.cost == result.usage.cost
    assert usage.cost is not None
    assert usage.cost > 0


# -- LiteLLM in front of a provider, over real HTTP ---------------------------------------


@pytest.fixture
async def litellm_clients() -> AsyncIterator[None]:
    """Close the HTTP clients LiteLLM keeps for reuse when the test (and its loop) ends."""
    yield
    await litellm.close_litellm_async_clients()  # type: ignore[attr-defined,no-untyped-call]


@pytest.mark.parametrize("chunks", [THINKING, REDACTED], ids=["thinking", "redacted"])
async def test_anthropic_thinking_through_litellm_keeps_its_signature(
    provider: Provider, base: str, chunks: list[bytes], litellm_clients: None
) -> None:
    options: dict[str, Any] = {"api_base": base, "api_key": "test", **USAGE_OPTIONS}
    model = "anthropic/claude-sonnet-4-5"
    provider.script(Reply(chunks=chunks), Reply(chunks=chunks))
    stream = await litellm.acompletion(model=model, messages=MESSAGES, stream=True, **options)
    reference = [chunk async for chunk in stream]

    async def relaying(prompt: str) -> Any:
        stream = await litellm.acompletion(model=model, messages=MESSAGES, stream=True, **options)
        return await agentnb.relay(stream)

    with capture_events() as events:
        result = await agentnb.run(relaying, "hi")
    sdk_reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in reference if c.choices
    )
    reasoning = of(events, Reasoning)
    assert "".join(r.text for r in reasoning) == sdk_reasoning
    assert [r.text for r in reasoning if r.text] == [
        c.choices[0].delta.reasoning_content
        for c in reference
        if c.choices and getattr(c.choices[0].delta, "reasoning_content", None)
    ]
    signatures = [r.signature for r in reasoning if r.signature is not None]
    (block,) = result.choices[0].message.thinking_blocks
    if chunks is THINKING:
        assert signatures == [SIGNATURE] == [block["signature"]]
        assert sdk_reasoning == block["thinking"] == "Let me think about <b>this</b>... done."
    else:
        assert signatures == [REDACTED_DATA] == [block["data"]]
        assert sdk_reasoning == ""
    assert events.text() == result.choices[0].message.content
    (usage,) = of(events, Usage)
    assert usage.provider == "anthropic"
    assert (usage.input_tokens, usage.output_tokens, usage.cost) == (
        reference[-1].usage.prompt_tokens,
        reference[-1].usage.completion_tokens,
        reference[-1].usage.cost,
    )


async def test_cancelling_the_run_closes_the_providers_stream_within_a_second(
    provider: Provider, base: str, litellm_clients: None
) -> None:
    first_chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "wait"}}],
    }
    provider.script(Reply(chunks=[sse(first_chunk)], hang=True))
    first = asyncio.Event()

    async def relaying(prompt: str) -> Any:
        stream = await litellm.acompletion(
            model="openai/gpt-test",
            api_base=base + "/v1",
            api_key="test",
            messages=MESSAGES,
            stream=True,
        )
        return await agentnb.relay(stream)

    def seen(event: Event) -> None:
        if type(event) is TextChunk:
            first.set()

    with capture_events() as events:
        run = agentnb.start(relaying, "hi", sink=seen)
        await asyncio.wait_for(first.wait(), 10)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
    await asyncio.to_thread(provider.wait_left, 1.0)  # the provider's thread records it
    assert provider.disconnects, "the provider never saw the client leave"
    assert provider.disconnects[0] - cancelled_at < 1.0
    assert provider.completed == 0
    assert events.kinds()[-1] == "cancelled"
