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
    UserError,
    function_tool,
    set_tracing_disabled,
)
from agents.result import RunResultStreaming
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage as SDKUsage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseReasoningItem,
    ResponseUsage,
)
from openai.types.responses.response_reasoning_item import Summary
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

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
from agentnb.adapters import openai_agents
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


# -- agents used as tools ---------------------------------------------------------------


def _usage(input_tokens: int, output_tokens: int) -> SDKUsage:
    return SDKUsage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


@function_tool
def lookup(invoice: str) -> str:
    """Look an invoice up."""
    return f"{invoice}: <paid>"


def billing_agent(steps: list[Any] | None = None) -> Agent[Any]:
    """Reasoning and a tool call of its own, then its answer."""
    reasoning = ResponseReasoningItem(
        id="rs_b",
        type="reasoning",
        summary=[Summary(text="Look it <up>.", type="summary_text")],
    )
    model = ScriptedModel(
        steps
        or [
            {
                "output": [reasoning, function_call("lookup", {"invoice": "A1"}, call_id="b1")],
                "usage": _usage(7, 3),
            },
            {
                "output": [assistant_message("Invoice A1 is <b>paid</b>.", item_id="msg_b")],
                "usage": _usage(12, 5),
            },
        ]
    )
    return Agent(name="billing", model=model, tools=[lookup])


def asking(billing: Agent[Any], calls: int = 1, on_stream: Any = None, **kwargs: Any) -> Agent[Any]:
    """A triage agent that asks *billing*, as a tool, *calls* times, then answers."""
    tool = openai_agents.as_tool(
        billing, "ask_billing", "Ask the billing agent.", on_stream=on_stream, **kwargs
    )
    steps: list[Any] = [
        {
            "output": [function_call("ask_billing", {"input": f"A{n}?"}, call_id=f"t{n}")],
            "usage": _usage(5, 2),
        }
        for n in range(1, calls + 1)
    ]
    steps.append({"output": [assistant_message("Paid.", item_id="msg_t")], "usage": _usage(9, 1)})
    return Agent(name="triage", model=ScriptedModel(steps), tools=[tool])


async def test_an_agent_used_as_a_tool_is_a_child_run_of_the_agent_that_called_it() -> None:
    # The same run with the SDK alone: what the nested agent delivered, to its own callback.
    nested: list[Any] = []
    expected = await native(asking(billing_agent(), on_stream=nested.append), "A1?")
    nested_items = [p["event"].item for p in nested if p["event"].type == "run_item_stream_event"]
    (tool_output,) = [i for i in expected.new_items if isinstance(i, ToolCallOutputItem)]

    seen: list[Any] = []
    out, events = await captured(asking(billing_agent(), on_stream=seen.append), "A1?")

    assert out == expected.final_output == "Paid."
    assert len(seen) == len(nested)  # the user's own callback still gets every event
    child = ("triage", "billing")
    assert {e.path for e in events} == {("triage",), child}
    # The nested agent's text, reasoning, tool call and result, in the child run.
    assert events.text(child) == ItemHelpers.text_message_outputs(nested_items)
    assert events.text(child) == "Invoice A1 is <b>paid</b>."
    assert events.text(("triage",)) == "Paid."
    assert "".join(r.text for r in of(events, Reasoning) if r.path == child) == "Look it <up>."
    calls = [(c.path, c.name, c.args, c.call_id) for c in of(events, ToolCall)]
    assert calls == [
        (("triage",), "ask_billing", {"input": "A1?"}, "t1"),
        (child, "lookup", {"invoice": "A1"}, "b1"),
    ]
    results = [(r.path, r.name, r.result, r.call_id) for r in of(events, ToolResult)]
    assert results == [
        (child, "lookup", "A1: <paid>", "b1"),
        (("triage",), "ask_billing", tool_output.output, "t1"),
    ]
    # A step and a usage per model call, each in the run of the agent that made it.
    assert [(s.path, s.name) for s in of(events, StepStart)] == [
        (("triage",), "model request"),
        (child, "model request"),
        (child, "model request"),
        (("triage",), "model request"),
    ]
    assert [(u.path, u.input_tokens, u.output_tokens) for u in of(events, Usage)] == [
        (("triage",), 5, 2),
        (child, 7, 3),
        (child, 12, 5),
        (("triage",), 9, 1),
    ]
    # The child ends with the tool's output, before the caller sees that output.
    child_done, root_done = of(events, Done)
    assert child_done.path == child
    assert child_done.result == tool_output.output == "Invoice A1 is <b>paid</b>."
    (result,) = [r for r in of(events, ToolResult) if r.call_id == "t1"]
    assert events.index(child_done) < events.index(result)
    # Usage: the SDK counts the nested agent's calls in the run's, and so does agentnb.
    sdk_usage = expected.context_wrapper.usage
    assert (sdk_usage.requests, sdk_usage.input_tokens, sdk_usage.output_tokens) == (4, 33, 11)
    assert child_done.usage is not None
    assert root_done.usage is not None
    assert (child_done.usage["calls"], child_done.usage["input_tokens"]) == (2, 19)
    assert (
        root_done.usage["calls"],
        root_done.usage["input_tokens"],
        root_done.usage["output_tokens"],
    ) == (sdk_usage.requests, sdk_usage.input_tokens, sdk_usage.output_tokens)


async def test_each_call_of_an_agent_tool_is_its_own_child_run() -> None:
    def twice() -> Agent[Any]:
        billing = billing_agent(
            [
                {"output": [assistant_message("first <1>", item_id="m1")], "usage": _usage(3, 1)},
                {"output": [assistant_message("second <2>", item_id="m2")], "usage": _usage(4, 2)},
            ]
        )
        return asking(billing, calls=2)

    expected = await native(twice(), "two?")
    outputs = [i.output for i in expected.new_items if isinstance(i, ToolCallOutputItem)]
    out, events = await captured(twice(), "two?")

    assert out == expected.final_output
    children = [d for d in of(events, Done) if d.path == ("triage", "billing")]
    assert len(children) == 2
    assert children[0].run_id != children[1].run_id
    texts = ["".join(t.text for t in of(events.of_run(d.run_id), TextChunk)) for d in children]
    assert texts == [d.result for d in children] == outputs == ["first <1>", "second <2>"]
    results = [r for r in of(events, ToolResult) if r.path == ("triage",)]
    assert [r.call_id for r in results] == ["t1", "t2"]
    for done, result in zip(children, results, strict=True):
        assert events.index(done) < events.index(result)
    (root_done,) = [d for d in of(events, Done) if d.path == ("triage",)]
    sdk_usage = expected.context_wrapper.usage
    assert root_done.usage is not None
    assert (root_done.usage["calls"], root_done.usage["input_tokens"]) == (
        sdk_usage.requests,
        sdk_usage.input_tokens,
    )


async def test_a_nested_agent_that_raises_ends_its_child_run_with_the_error() -> None:
    def failing() -> Agent[Any]:
        return asking(billing_agent([ModelStep.raise_error(ModelDown("billing <down>"))]))

    expected = await native(failing(), "A1?")
    (tool_output,) = [i for i in expected.new_items if isinstance(i, ToolCallOutputItem)]
    out, events = await captured(failing(), "A1?")

    assert out == expected.final_output == "Paid."
    (error,) = of(events, Error)
    assert error.path == ("triage", "billing")
    assert error.type.endswith("ModelDown")
    assert error.message == "billing <down>"
    # The caller's model got the SDK's own message for a failed tool, after the child ended.
    (result,) = [r for r in of(events, ToolResult) if r.path == ("triage",)]
    assert result.result == tool_output.output
    assert result.result == "An error occurred while running the tool. Please try again."
    assert events.index(error) < events.index(result)
    assert events.kinds()[-1] == "done"


async def test_a_nested_error_that_the_tool_raises_ends_both_runs_with_it() -> None:
    agent = asking(
        billing_agent([ModelStep.raise_error(ModelDown("billing <down>"))]),
        failure_error_function=None,
    )
    raised = "Error running tool ask_billing: billing <down>"  # the SDK's wrapping
    with capture_events() as events, pytest.raises(UserError, match=raised):
        await agentnb.run(agent, "A1?")
    child, root = of(events, Error)
    assert child.path == ("triage", "billing")
    assert child.type.endswith("ModelDown")
    assert child.message == "billing <down>"
    assert root.path == ("triage",)
    assert root.type.endswith("UserError")
    assert root.message == raised


async def test_cancelling_the_run_during_a_nested_agent_ends_everything_within_a_second() -> None:
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

    slow = Agent(
        name="billing",
        model=ScriptedModel(
            [[function_call("wait_long", {}, call_id="w1")], [assistant_message("x")]]
        ),
        tools=[wait_long],
    )
    with capture_events() as events:
        run = agentnb.start(asking(slow), "go")
        await asyncio.wait_for(running.wait(), 5)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
        took = time.monotonic() - cancelled_at
    assert took < 1.0
    await asyncio.wait_for(tool_cancelled.wait(), 1)
    ends = [(e.path, e.kind) for e in events if e.kind in ("done", "error", "cancelled")]
    assert ends == [(("triage", "billing"), "cancelled"), (("triage",), "cancelled")]


async def test_an_agent_tool_outside_a_run_is_the_sdks_own() -> None:
    out = await native(asking(billing_agent()), "A1?")
    assert out.final_output == "Paid."
    with pytest.raises(TypeError, match="takes an OpenAI Agents SDK Agent"):
        openai_agents.as_tool(object(), "x", "y")
    with pytest.raises(TypeError, match="on_stream must be callable"):
        openai_agents.as_tool(billing_agent(), "x", "y", on_stream=42)


async def test_an_agent_tool_inside_an_agent_tool_is_a_grandchild_run() -> None:
    def three_deep() -> Agent[Any]:
        ledger = Agent(
            name="ledger",
            model=ScriptedModel(
                [
                    {
                        "output": [assistant_message("A1 <settled>", item_id="m_l")],
                        "usage": _usage(2, 1),
                    }
                ]
            ),
        )
        billing = Agent(
            name="billing",
            model=ScriptedModel(
                [
                    {
                        "output": [function_call("ask_ledger", {"input": "A1"}, call_id="l1")],
                        "usage": _usage(4, 1),
                    },
                    {
                        "output": [assistant_message("Settled.", item_id="m_b")],
                        "usage": _usage(6, 1),
                    },
                ]
            ),
            tools=[openai_agents.as_tool(ledger, "ask_ledger", "Ask the ledger.")],
        )
        return asking(billing)

    expected = await native(three_deep(), "A1?")
    out, events = await captured(three_deep(), "A1?")

    assert out == expected.final_output == "Paid."
    grandchild = ("triage", "billing", "ledger")
    assert events.text(grandchild) == "A1 <settled>"
    assert events.text(("triage", "billing")) == "Settled."
    ends = [(e.path, e.kind, getattr(e, "result", None)) for e in events if e.kind == "done"]
    assert ends == [
        (grandchild, "done", "A1 <settled>"),
        (("triage", "billing"), "done", "Settled."),
        (("triage",), "done", "Paid."),
    ]
    sdk_usage = expected.context_wrapper.usage
    root_done = of(events, Done)[-1]
    assert root_done.usage is not None
    assert (
        (root_done.usage["calls"], root_done.usage["input_tokens"])
        == (
            sdk_usage.requests,
            sdk_usage.input_tokens,
        )
        == (5, 26)
    )


async def test_a_call_shown_only_when_its_output_is_still_gets_its_child_run() -> None:
    # A model stream that shows the call only in ``response.completed``: the nested agent's
    # events arrive before the caller's stream shows whose call it is, and wait for that.
    call = function_call("ask_billing", {"input": "A1?"}, call_id="t1")
    usage = ResponseUsage(
        input_tokens=5,
        output_tokens=2,
        total_tokens=7,
        input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
    )
    response = Response(
        id="resp_t",
        created_at=0,
        model="scripted",
        object="response",
        output=[call],
        parallel_tool_calls=True,
        tool_choice="auto",
        tools=[],
        usage=usage,
    )
    terse = ModelStep.stream(
        [ResponseCompletedEvent(type="response.completed", sequence_number=0, response=response)]
    )

    def triage() -> Agent[Any]:
        agent = asking(billing_agent())
        assert isinstance(agent.model, ScriptedModel)
        return agent.clone(model=ScriptedModel([terse, [assistant_message("Paid.")]]))

    expected = await native(triage(), "A1?")
    out, events = await captured(triage(), "A1?")
    assert out == expected.final_output == "Paid."
    child = ("triage", "billing")
    assert events.text(child) == "Invoice A1 is <b>paid</b>."
    child_done = next(d for d in of(events, Done) if d.path == child)
    (result,) = [r for r in of(events, ToolResult) if r.path == ("triage",)]
    assert (result.call_id, result.result) == ("t1", child_done.result)
    assert events.index(child_done) < events.index(result)
    assert [(u.path, u.input_tokens) for u in of(events, Usage)][:3] == [
        (("triage",), 5),
        (child, 7),
        (child, 12),
    ]
