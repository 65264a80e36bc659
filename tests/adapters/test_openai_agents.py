"""OpenAI Agents SDK agents run as agents (``agentnb.run(agent, ...)``), with the SDK's own code.

The model is the SDK's own offline ``agents.testing.ScriptedModel``, which streams the
Responses API events a real model would. What agentnb emitted is compared with what the
SDK itself delivered for the same scripted run: its run items, final output and usage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import pytest
from agents import (
    Agent,
    ItemHelpers,
    MessageOutputItem,
    Runner,
    ToolCallItem,
    ToolCallOutputItem,
    function_tool,
    set_tracing_disabled,
)
from agents.result import RunResultStreaming
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage as SDKUsage
from openai.types.responses import ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Summary

import agentnb
from agentnb import (
    Custom,
    Done,
    Error,
    Event,
    MessageStart,
    Reasoning,
    RunCancelled,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    Usage,
)
from agentnb._adapt import framework_agent, is_framework_agent
from agentnb.testing import CapturedEvents, capture_events

E = TypeVar("E", bound=Event)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    set_tracing_disabled(True)


def of(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if type(e) is kind]


async def native(agent: Agent[Any], prompt: str) -> RunResultStreaming:
    """The same scripted run, read with the SDK alone."""
    result = Runner.run_streamed(agent, prompt)
    async for _ in result.stream_events():
        pass
    return result


async def captured(agent: Agent[Any], prompt: str = "1+2?") -> tuple[Any, CapturedEvents]:
    with capture_events() as events:
        out = await agentnb.run(agent, prompt)
    return out, events


@function_tool
def add(a: int, b: int) -> int:
    """Add two ints."""
    return a + b


def calculator() -> Agent[Any]:
    """Reasoning and a tool call, then the answer; each model call with its usage."""
    reasoning = ResponseReasoningItem(
        id="rs_1",
        type="reasoning",
        summary=[Summary(text="Add <them> & see.", type="summary_text")],
    )
    model = ScriptedModel(
        [
            {
                "output": [
                    reasoning,
                    function_call("add", {"a": 1, "b": 2}, call_id="call_1"),
                ],
                "usage": SDKUsage(requests=1, input_tokens=11, output_tokens=4, total_tokens=15),
            },
            {
                "output": [assistant_message("The answer is <b>3</b>.", item_id="msg_2")],
                "usage": SDKUsage(requests=1, input_tokens=20, output_tokens=6, total_tokens=26),
            },
        ]
    )
    return Agent(name="calc", model=model, tools=[add])


async def test_text_reasoning_and_tool_calls_are_exactly_what_the_sdk_delivered() -> None:
    expected = await native(calculator(), "1+2?")
    out, events = await captured(calculator())

    assert out == expected.final_output == "The answer is <b>3</b>."
    (call_item,) = [i for i in expected.new_items if isinstance(i, ToolCallItem)]
    (output_item,) = [i for i in expected.new_items if isinstance(i, ToolCallOutputItem)]
    assert [type(i) for i in expected.new_items].count(MessageOutputItem) == 1
    raw_call: Any = call_item.raw_item
    # The tool call: its fragments add up to the SDK's arguments; the whole call parsed.
    assert "".join(d.delta for d in of(events, ToolCallDelta)) == raw_call.arguments
    (call,) = of(events, ToolCall)
    assert (call.name, call.args, call.call_id) == ("add", {"a": 1, "b": 2}, raw_call.call_id)
    # Its result, tied to it.
    (result,) = of(events, ToolResult)
    assert (result.name, result.result, result.call_id) == ("add", output_item.output, "call_1")
    assert result.result == 3
    # Reasoning: the summary the SDK streamed.
    assert "".join(r.text for r in of(events, Reasoning)) == "Add <them> & see."
    # Text: exactly the SDK's message, under its message id.
    assert events.text() == ItemHelpers.text_message_outputs(expected.new_items)
    assert {t.message_id for t in of(events, TextChunk)} == {"msg_2"}
    assert [m.message_id for m in of(events, MessageStart)] == ["msg_2"]
    assert {e.path for e in events} == {("calc",)}


async def test_each_model_call_is_a_step_whose_usage_adds_up_to_the_sdks() -> None:
    expected = await native(calculator(), "1+2?")
    _, events = await captured(calculator())

    sdk_usage = expected.context_wrapper.usage
    usages = of(events, Usage)
    assert [(u.input_tokens, u.output_tokens) for u in usages] == [(11, 4), (20, 6)]
    assert sum(u.input_tokens for u in usages) == sdk_usage.input_tokens
    assert sum(u.output_tokens for u in usages) == sdk_usage.output_tokens
    assert len(usages) == sdk_usage.requests
    (done,) = of(events, Done)
    assert done.usage is not None
    assert (done.usage["input_tokens"], done.usage["output_tokens"]) == (
        sdk_usage.input_tokens,
        sdk_usage.output_tokens,
    )
    kinds = [e.kind for e in events if e.kind in ("step_start", "step_end", "usage", "tool_result")]
    assert kinds == [
        "step_start", "usage", "step_end", "tool_result", "step_start", "usage", "step_end"
    ]  # fmt: skip
    assert len(of(events, StepStart)) == len(of(events, StepEnd)) == len(expected.raw_responses)


def triage_and_billing(billing_steps: list[Any] | None = None) -> Agent[Any]:
    billing = Agent(
        name="billing",
        handoff_description="Answers questions about invoices.",
        model=ScriptedModel(
            billing_steps
            or [
                {
                    "output": [assistant_message("Billing <here>.", item_id="msg_b")],
                    "usage": SDKUsage(requests=1, input_tokens=7, output_tokens=3, total_tokens=10),
                }
            ]
        ),
    )
    return Agent(
        name="triage",
        model=ScriptedModel(
            [
                {
                    "output": [function_call("transfer_to_billing", {}, call_id="call_h")],
                    "usage": SDKUsage(requests=1, input_tokens=5, output_tokens=2, total_tokens=7),
                }
            ]
        ),
        handoffs=[billing],
    )


async def test_a_handoff_is_a_child_run_named_after_the_new_agent() -> None:
    expected = await native(triage_and_billing(), "my invoice?")
    out, events = await captured(triage_and_billing(), "my invoice?")

    assert expected.last_agent.name == "billing"
    assert out == expected.final_output == "Billing <here>."
    # The handoff is a call of the triage agent, answered before the new agent speaks.
    (call,) = of(events, ToolCall)
    assert (call.name, call.path) == ("transfer_to_billing", ("triage",))
    (handed,) = of(events, ToolResult)
    assert (handed.call_id, handed.path) == ("call_h", ("triage",))
    assert handed.result == '{"assistant": "billing"}'
    # The billing agent's text is in a child run of the triage run.
    assert events.text(("triage", "billing")) == "Billing <here>."
    assert events.text(("triage",)) == ""
    child_done, root_done = of(events, Done)
    assert child_done.path == ("triage", "billing")
    assert root_done.path == ("triage",)
    assert child_done.result == root_done.result == "Billing <here>."
    assert events.index(handed) < events.index(child_done)
    # Usage: each agent's calls in its own run, the root's total equal to the SDK's.
    assert [(u.path, u.input_tokens) for u in of(events, Usage)] == [
        (("triage",), 5),
        (("triage", "billing"), 7),
    ]
    sdk_usage = expected.context_wrapper.usage
    assert root_done.usage is not None
    assert (root_done.usage["input_tokens"], root_done.usage["output_tokens"]) == (
        sdk_usage.input_tokens,
        sdk_usage.output_tokens,
    )


class ModelDown(RuntimeError):
    pass


async def test_an_error_keeps_its_type_and_message() -> None:
    agent = Agent(name="x", model=ScriptedModel([ModelStep.raise_error(ModelDown("no <model>"))]))
    with capture_events() as events, pytest.raises(ModelDown, match="no <model>"):
        await agentnb.run(agent, "hi")
    (error,) = of(events, Error)
    assert error.type.endswith("ModelDown")
    assert error.message == "no <model>"


async def test_an_error_after_a_handoff_ends_the_new_agents_run_with_it() -> None:
    agent = triage_and_billing([ModelStep.raise_error(ModelDown("billing is down"))])
    with capture_events() as events, pytest.raises(ModelDown, match="billing is down"):
        await agentnb.run(agent, "my invoice?")
    errors = of(events, Error)
    assert [e.path for e in errors] == [("triage", "billing"), ("triage",)]
    assert all(e.message == "billing is down" for e in errors)
    assert events.kinds()[-1] == "error"


async def test_cancelling_the_run_stops_the_sdk_within_a_second() -> None:
    running = asyncio.Event()
    tool_cancelled = asyncio.Event()

    @function_tool
    async def wait_long() -> str:
        """Wait a long time."""
        running.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            tool_cancelled.set()
            raise
        return "too late"

    agent = Agent(
        name="slow",
        model=ScriptedModel(
            [[function_call("wait_long", {}, call_id="c1")], [assistant_message("never")]]
        ),
        tools=[wait_long],
    )
    with capture_events() as events:
        run = agentnb.start(agent, "go")
        await asyncio.wait_for(running.wait(), 5)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
        took = time.monotonic() - cancelled_at
    assert took < 1.0
    await asyncio.wait_for(tool_cancelled.wait(), 1)
    assert events.kinds()[-1] == "cancelled"


async def test_calls_waiting_for_approval_are_shown() -> None:
    @function_tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    def ops() -> Agent[Any]:
        model = ScriptedModel([[function_call("delete_file", {"path": "b/<x>"}, call_id="c9")]])
        return Agent(name="ops", model=model, tools=[delete_file])

    expected = await native(ops(), "rm it")
    out, events = await captured(ops(), "rm it")
    assert [i.tool_name for i in expected.interruptions] == ["delete_file"]
    assert out is None
    (status,) = of(events, Status)
    assert status.message == "waiting for approval: delete_file"
    (custom,) = [e for e in events if isinstance(e, Custom)]
    assert custom.name == "openai_agents.interruptions"
    assert custom.data == [{"call_id": "c9", "name": "delete_file", "args": {"path": "b/<x>"}}]
    assert not of(events, ToolResult)


async def test_the_agent_goes_by_its_name_and_takes_the_sdks_input_items() -> None:
    agent = triage_and_billing()
    assert is_framework_agent(agent)
    fn = framework_agent(agent)
    assert fn is not None
    assert fn.__agentnb_name__ == "triage"  # type: ignore[attr-defined]
    assert fn.__doc__ is not None
    assert fn.__doc__.startswith("The OpenAI Agents SDK agent 'triage'")
    billing = framework_agent(agent.handoffs[0])
    assert billing is not None
    assert billing.__doc__ == "Answers questions about invoices."

    items = [{"role": "user", "content": "my invoice?"}]
    with capture_events() as events:
        out = await agentnb.run(agent, items)
    assert out == "Billing <here>."
    assert events.kinds()[-1] == "done"
    with pytest.raises(TypeError, match="got an object of type int"):
        await agentnb.run(triage_and_billing(), 42)
