"""pydantic-ai agents run as agents (``agentnb.run(agent, ...)``), with pydantic-ai's own code.

The models are pydantic-ai's offline test models: ``FunctionModel`` streaming scripted
text, thinking and tool-call fragments, and ``TestModel``. What agentnb emitted is
compared with what pydantic-ai itself delivered for the same run: the messages and usage
of the run's result, read from the same deterministic agent run natively.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from pydantic_ai import Agent, DeferredToolRequests, ModelRetry
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.run import AgentRunResult

import agentnb
from agentnb import (
    Custom,
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Reasoning,
    RunCancelled,
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
from agentnb._adapt import framework_agent, is_framework_agent
from agentnb.adapters.pydantic_ai import as_agent
from agentnb.testing import CapturedEvents, capture_events

E = TypeVar("E", bound=Event)


def of(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if type(e) is kind]


def responses(messages: list[ModelMessage]) -> list[ModelResponse]:
    return [m for m in messages if isinstance(m, ModelResponse)]


async def native(agent: Agent[Any, Any], prompt: str) -> AgentRunResult[Any]:
    """The same run, read with pydantic-ai alone: its result (messages, usage, output)."""
    async with agent.run_stream_events(prompt, infer_name=False) as events:
        async for _ in events:
            pass
    assert events.result is not None
    return events.result


async def captured(agent: Agent[Any, Any], prompt: str = "hi") -> tuple[Any, CapturedEvents]:
    with capture_events() as events:
        out = await agentnb.run(agent, prompt)
    return out, events


# -- a scripted model: thinking with a signature, split tool arguments, a tool, text -----------


async def thinking_tool_text(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
    if not responses(messages):
        yield {0: DeltaThinkingPart(content="Add <them>", signature="sig-")}
        yield {0: DeltaThinkingPart(content=" & see.", signature="sig-abc")}
        yield {1: DeltaToolCall(name="add", json_args='{"a": 1,', tool_call_id="call_1")}
        yield {1: DeltaToolCall(json_args=' "b": ')}
        yield {1: DeltaToolCall(json_args="2}")}
        return
    yield "The answer "
    yield "is <b>3</b>"
    yield "."


def adding_agent(**kwargs: Any) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(stream_function=thinking_tool_text), **kwargs)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


async def test_text_reasoning_and_tool_calls_are_exactly_what_pydantic_ai_delivered() -> None:
    agent = adding_agent()
    expected = await native(agent, "hi")
    out, events = await captured(agent)
    first, second = responses(expected.new_messages())

    assert out == expected.output == "The answer is <b>3</b>."
    # Reasoning: the fragments (the first one came inside PartStartEvent), then the signature.
    (thinking,) = [p for p in first.parts if isinstance(p, ThinkingPart)]
    reasoning = of(events, Reasoning)
    assert [r.text for r in reasoning if r.text] == ["Add <them>", " & see."]
    assert "".join(r.text for r in reasoning) == thinking.content
    assert [r.signature for r in reasoning if r.signature is not None] == [thinking.signature]
    assert thinking.signature == "sig-abc"
    # The tool call: start, the argument fragments as streamed, end, the whole call.
    (call_part,) = [p for p in first.parts if isinstance(p, ToolCallPart)]
    (start,) = of(events, ToolCallStart)
    assert (start.name, start.call_id) == ("add", "call_1")
    deltas = [d.delta for d in of(events, ToolCallDelta)]
    assert deltas == ['{"a": 1,', ' "b": ', "2}"]
    assert "".join(deltas) == call_part.args
    assert of(events, ToolCallEnd)[0].error == ""
    (call,) = of(events, ToolCall)
    assert (call.name, call.args, call.call_id) == ("add", call_part.args_as_dict(), "call_1")
    # The tool ran: its result, tied to the call.
    (returned,) = [
        p for m in expected.new_messages() for p in m.parts if isinstance(p, ToolReturnPart)
    ]
    (result,) = of(events, ToolResult)
    assert (result.name, result.result, result.call_id) == ("add", returned.content, "call_1")
    assert result.result == 3
    assert not result.is_error
    # Text: each response's text under its own message id.
    (text_part,) = [p for p in second.parts if isinstance(p, TextPart)]
    texts = of(events, TextChunk)
    assert [t.text for t in texts] == ["The answer ", "is <b>3</b>", "."]
    assert events.text() == text_part.content
    (text_message,) = {t.message_id for t in texts}
    assert start.message_id != text_message
    assert [m.message_id for m in of(events, MessageStart)] == [start.message_id, text_message]
    assert [m.message_id for m in of(events, MessageEnd)] == [start.message_id, text_message]


async def test_each_model_call_is_a_step_with_its_usage_adding_up_to_pydantic_ais() -> None:
    agent = adding_agent()
    expected = await native(agent, "hi")
    _, events = await captured(agent)

    usages = of(events, Usage)
    assert [(u.input_tokens, u.output_tokens) for u in usages] == [
        (r.usage.input_tokens, r.usage.output_tokens) for r in responses(expected.new_messages())
    ]
    assert sum(u.input_tokens for u in usages) == expected.usage.input_tokens
    assert sum(u.output_tokens for u in usages) == expected.usage.output_tokens
    assert len(usages) == expected.usage.requests == 2
    assert [u.model for u in usages] == [r.model_name for r in responses(expected.new_messages())]
    assert usages[0].model == "function::thinking_tool_text"
    (done,) = of(events, Done)
    assert done.usage == {
        "calls": 2,
        "input_tokens": expected.usage.input_tokens,
        "output_tokens": expected.usage.output_tokens,
    }
    # One step per model call: started before its first part, ended after its usage, and the
    # tool runs between the two steps.
    kinds = [e.kind for e in events if e.kind in ("step_start", "step_end", "usage", "tool_result")]
    assert kinds == [
        "step_start", "usage", "step_end", "tool_result", "step_start", "usage", "step_end"
    ]  # fmt: skip
    starts, ends = of(events, StepStart), of(events, StepEnd)
    assert [s.step_id for s in starts] == [e.step_id for e in ends]
    assert len({s.step_id for s in starts}) == 2
    assert [s.step_id for s in starts] == [m.message_id for m in of(events, MessageStart)]


async def test_test_model_calls_with_whole_arguments() -> None:
    agent: Agent[None, str] = Agent(TestModel(call_tools="all"))

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    expected = await native(agent, "hi")
    out, events = await captured(agent)
    assert out == expected.output
    (call_part,) = [
        p
        for r in responses(expected.new_messages())
        for p in r.parts
        if isinstance(p, ToolCallPart)
    ]
    (call,) = of(events, ToolCall)
    assert call.args == call_part.args_as_dict() == {"a": 0, "b": 0}
    assert call.call_id == call_part.tool_call_id
    assert "".join(d.delta for d in of(events, ToolCallDelta)) == '{"a":0,"b":0}'
    assert events.text() == expected.output
    usages = of(events, Usage)
    assert sum(u.input_tokens for u in usages) == expected.usage.input_tokens
    assert sum(u.output_tokens for u in usages) == expected.usage.output_tokens
    assert {u.model for u in usages} == {"test"}


async def test_a_tool_that_asks_for_a_retry_is_an_error_result() -> None:
    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        if not responses(messages):
            yield {0: DeltaToolCall(name="look_up", json_args='{"term": "sea"}', tool_call_id="c1")}
            return
        yield "gave up"

    agent: Agent[None, str] = Agent(FunctionModel(stream_function=model))

    @agent.tool_plain
    def look_up(term: str) -> str:
        """Look a term up."""
        raise ModelRetry(f"no entry for <{term}>")

    out, events = await captured(agent)
    assert out == "gave up"
    (result,) = of(events, ToolResult)
    assert result.is_error
    assert (result.name, result.call_id) == ("look_up", "c1")
    assert result.result == "no entry for <sea>"


async def test_a_tool_needing_approval_is_shown_as_waiting() -> None:
    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        yield {0: DeltaToolCall(name="delete_file", json_args='{"path": "b/x"}', tool_call_id="c9")}

    agent: Agent[None, str | DeferredToolRequests] = Agent(
        FunctionModel(stream_function=model), output_type=[str, DeferredToolRequests]
    )

    @agent.tool_plain(requires_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    out, events = await captured(agent)
    assert isinstance(out, DeferredToolRequests)
    assert [p.tool_call_id for p in out.approvals] == ["c9"]
    (status,) = of(events, Status)
    assert status.message == "waiting for approval: delete_file"
    (custom,) = [e for e in events if isinstance(e, Custom)]
    assert custom.name == "pydantic_ai.deferred_tool_requests"
    assert custom.data == {
        "approvals": [{"call_id": "c9", "name": "delete_file", "args": {"path": "b/x"}}],
        "calls": [],
    }
    assert not of(events, ToolResult)
    assert events.kinds()[-1] == "done"


# -- errors, cancel, names, input --------------------------------------------------------------


class ProviderExploded(RuntimeError):
    pass


async def test_an_error_keeps_its_type_and_message_after_the_partial_text() -> None:
    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        yield "partial "
        raise ProviderExploded("provider <exploded>")

    agent: Agent[None, str] = Agent(FunctionModel(stream_function=model))
    with capture_events() as events, pytest.raises(ProviderExploded, match="provider <exploded>"):
        await agentnb.run(agent, "hi")
    assert events.text() == "partial "
    (error,) = of(events, Error)
    assert error.type.endswith("ProviderExploded")
    assert error.message == "provider <exploded>"
    assert events.kinds()[-3:] == ["message_end", "step_end", "error"]


async def test_cancelling_the_run_stops_pydantic_ai_within_a_second() -> None:
    streaming = asyncio.Event()
    model_cancelled = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        yield "thinking about it"
        streaming.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            model_cancelled.set()
            raise
        yield "too late"

    agent: Agent[None, str] = Agent(FunctionModel(stream_function=model))
    with capture_events() as events:
        run = agentnb.start(agent, "hi")
        await asyncio.wait_for(streaming.wait(), 5)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
        took = time.monotonic() - cancelled_at
    assert took < 1.0
    assert model_cancelled.is_set()
    assert events.text() == "thinking about it"
    assert events.kinds()[-1] == "cancelled"


async def test_the_agent_goes_by_its_name_and_description() -> None:
    named = adding_agent(name="adder", description="Adds numbers.\nCarefully.")
    assert is_framework_agent(named)
    fn = framework_agent(named)
    assert fn is not None
    assert fn.__agentnb_name__ == "adder"  # type: ignore[attr-defined]
    assert fn.__doc__ == "Adds numbers."
    _, events = await captured(named)
    assert {e.path for e in events} == {("adder",)}

    unnamed = as_agent(adding_agent())
    assert unnamed.__agentnb_name__ == "pydantic_ai_agent"  # type: ignore[attr-defined]
    assert unnamed.__doc__ is not None
    assert "pydantic-ai agent" in unnamed.__doc__


async def test_a_dict_input_is_the_keyword_arguments_of_run_stream_events() -> None:
    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        yield f"{len(messages)} messages; last asks {messages[-1].parts[-1].content!r}"  # type: ignore[union-attr]

    agent: Agent[str, str] = Agent(FunctionModel(stream_function=model), deps_type=str)
    first = await agentnb.run(agent, {"user_prompt": "one", "deps": "d"})
    history = (await native_with(agent, "one", deps="d")).all_messages()
    out = await agentnb.run(agent, {"user_prompt": "two", "deps": "d", "message_history": history})
    assert first == "1 messages; last asks 'one'"
    assert out == "3 messages; last asks 'two'"
    # A list is the prompt as content parts.
    assert await agentnb.run(agent, {"user_prompt": ["a", "b"], "deps": "d"}) == (
        "1 messages; last asks ['a', 'b']"
    )


async def native_with(agent: Agent[Any, Any], prompt: str, **kwargs: Any) -> AgentRunResult[Any]:
    async with agent.run_stream_events(prompt, infer_name=False, **kwargs) as events:
        async for _ in events:
            pass
    assert events.result is not None
    return events.result


async def test_input_that_is_not_a_prompt_parts_or_arguments_is_refused() -> None:
    agent = adding_agent()
    with pytest.raises(TypeError, match="got an object of type int"):
        await agentnb.run(agent, 42)
    with pytest.raises(TypeError, match="keys must be str"):
        await agentnb.run(agent, {1: "x"})


def test_importing_agentnb_imports_no_sdk() -> None:
    code = (
        "import sys, agentnb, agentnb.adapters; "
        "print(sorted(m for m in ('pydantic_ai', 'agents', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
