"""Compiled LangGraph graphs run as agents (``agentnb.run(graph, ...)``), with LangGraph's own code.

The graphs are real ``StateGraph``s with a real ``ToolNode``; the model is LangChain's
fake chat model streaming scripted chunks (``fake_models``). What agentnb emitted is
compared with what LangGraph itself delivered for the same run (the final state from
its checkpointer, the messages it kept).
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

import agentnb
from agentnb import (
    JSON,
    Custom,
    Done,
    Error,
    Event,
    RunCancelled,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
)
from agentnb._adapt import framework_agent, is_framework_agent
from agentnb.adapters.langgraph import json_patch, jsonable
from agentnb.testing import capture_events
from tests.adapters.fake_models import ScriptedChatModel, scripted, tool_chunk

USAGE_1: UsageMetadata = {"input_tokens": 50, "output_tokens": 12, "total_tokens": 62}
USAGE_2: UsageMetadata = {
    "input_tokens": 70,
    "output_tokens": 9,
    "total_tokens": 79,
    "output_token_details": {"reasoning": 4},
}


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def fail(why: str) -> str:
    """Always fails."""
    raise ValueError(why)


def model_turns() -> ScriptedChatModel:
    """Turn 1: two tool calls (args in the first chunk; a whole call in one chunk); turn 2: text."""
    return scripted(
        [
            AIMessageChunk(
                content="",
                id="ai1",
                tool_call_chunks=[tool_chunk('{"a": 1,', name="add", call_id="call_1")],
            ),
            AIMessageChunk(content="", id="ai1", tool_call_chunks=[tool_chunk(' "b": 2}')]),
            AIMessageChunk(
                content="",
                id="ai1",
                tool_call_chunks=[
                    tool_chunk('{"why": "<b>no</b>"}', index=1, name="fail", call_id="call_2")
                ],
                usage_metadata=USAGE_1,
            ),
        ],
        [
            AIMessageChunk(content="The answer ", id="ai2"),
            AIMessageChunk(content="is <i>3</i>.", id="ai2"),
            AIMessageChunk(content="", id="ai2", usage_metadata=USAGE_2),
        ],
    )


def tool_graph(checkpointer: Any = None) -> Any:
    model = model_turns().bind_tools([add, fail])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([add, fail], handle_tool_errors=True))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer)


def compiled(builder: StateGraph[Any], name: str | None = None) -> Any:
    """The compiled graph (typed Any: agentnb.run's signature names callables only)."""
    return builder.compile(name=name)


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def apply_patch(state: Any, patch: list[dict[str, JSON]]) -> Any:
    """A small JSON Patch applier (add, replace, remove), for checking StateDelta."""
    state = copy.deepcopy(state)
    for op in patch:
        path = str(op["path"])
        if path == "":
            assert op["op"] == "replace"
            state = copy.deepcopy(op["value"])
            continue
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
        target: Any = state
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            if op["op"] == "add":
                target.insert(int(last), copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                target[int(last)] = copy.deepcopy(op["value"])
            else:
                del target[int(last)]
        elif op["op"] == "remove":
            del target[last]
        else:
            target[last] = copy.deepcopy(op["value"])
    return state


def replay_state(events: list[Event]) -> Any:
    snapshots = of(events, StateSnapshot)
    assert len(snapshots) == 1
    state: Any = snapshots[0].state
    for delta in of(events, StateDelta):
        state = apply_patch(state, delta.patch)
    return state


# -- a model node and a ToolNode --------------------------------------------------------


async def test_a_tool_calling_graph_streams_steps_text_tool_calls_results_usage_and_state() -> None:
    graph = tool_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}}
    with capture_events() as events:
        result = await agentnb.run(graph, "what is 1+2?", config=config)

    # What LangGraph itself kept for this run: the reference.
    final = (await graph.aget_state(config)).values
    _human, ai1, tool_1, tool_2, ai2 = final["messages"]
    assert result == ai2.text == "The answer is <i>3</i>."
    assert events.text() == ai2.text
    assert {t.message_id for t in of(events, TextChunk)} == {"ai2"}

    deltas: dict[str, str] = {}
    for d in of(events, ToolCallDelta):
        deltas[d.call_id] = deltas.get(d.call_id, "") + d.delta
    assert deltas == {"call_1": '{"a": 1, "b": 2}', "call_2": '{"why": "<b>no</b>"}'}
    assert [(s.name, s.call_id, s.message_id) for s in of(events, ToolCallStart)] == [
        ("add", "call_1", "ai1"),
        ("fail", "call_2", "ai1"),
    ]
    assert [(c.name, c.args, c.call_id) for c in of(events, ToolCall)] == [
        (c["name"], c["args"], c["id"]) for c in ai1.tool_calls
    ]
    results = {r.call_id: r for r in of(events, ToolResult)}
    assert (results["call_1"].name, results["call_1"].result) == ("add", tool_1.content)
    assert results["call_1"].is_error is False
    assert tool_2.status == "error"
    assert (results["call_2"].result, results["call_2"].is_error) == (tool_2.content, True)
    assert "<b>no</b>" in tool_2.content

    usages = of(events, Usage)
    assert [(u.input_tokens, u.output_tokens, u.reasoning_tokens) for u in usages] == [
        (m.usage_metadata["input_tokens"], m.usage_metadata["output_tokens"], r)
        for m, r in ((ai1, None), (ai2, 4))
    ]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage == {
        "calls": 2,
        "input_tokens": 120,
        "output_tokens": 21,
        "reasoning_tokens": 4,
    }

    steps = [(type(e).__name__, e.name) for e in events if isinstance(e, StepStart | StepEnd)]
    assert steps == [
        ("StepStart", "agent"),
        ("StepEnd", "agent"),
        ("StepStart", "tools"),
        ("StepEnd", "tools"),
        ("StepStart", "agent"),
        ("StepEnd", "agent"),
    ]
    kinds = events.kinds()
    # The tool call streams inside the agent step, is whole before its result.
    assert kinds.index("tool_call_start") < kinds.index("tool_call") < kinds.index("tool_result")
    assert kinds.index("step_end") > kinds.index("tool_call")
    # The state, rebuilt from the snapshot and the patches, is LangGraph's final state.
    assert replay_state(events) == jsonable(final)
    assert {e.path for e in events} == {("graph",)}
    assert kinds[-1] == "done"


async def test_the_graph_is_run_through_the_framework_adapter_with_its_own_name() -> None:
    graph = tool_graph()
    assert is_framework_agent(graph)
    adapted = framework_agent(graph)
    assert adapted is not None
    assert adapted.__agentnb_name__ == "graph"  # type: ignore[attr-defined]
    assert adapted.__doc__ is not None
    assert adapted.__doc__.startswith("The LangGraph graph")

    model = model_turns()

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    calculator: Any = g.compile(name="calculator")
    with capture_events() as events:
        await agentnb.run(calculator, "hi")
    assert {e.path for e in events} == {("calculator",)}


# -- subgraphs, custom events, interrupts ------------------------------------------------


def nested_graph() -> Any:
    inner_model = scripted(
        [AIMessageChunk(content="inner ", id="in1"), AIMessageChunk(content="words", id="in1")]
    )

    def inner(state: MessagesState) -> dict[str, Any]:
        get_stream_writer()({"progress": "inner <b>half</b>", "n": 1})
        return {"messages": [inner_model.invoke(state["messages"])]}

    sub = StateGraph(MessagesState)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")

    def first(state: MessagesState) -> dict[str, Any]:
        get_stream_writer()("outer starts")
        return {"messages": [AIMessage("made whole", id="h1")]}

    g = StateGraph(MessagesState)
    g.add_node("first", first)
    g.add_node("research", sub.compile())
    g.add_edge(START, "first")
    g.add_edge("first", "research")
    return g.compile(name="outer")


async def test_a_subgraph_is_a_child_run_with_its_path_and_custom_events_go_where_written() -> None:
    with capture_events() as events:
        result = await agentnb.run(nested_graph(), "go")
    assert result == "inner words"
    outer = [e for e in events if e.path == ("outer",)]
    inner = [e for e in events if e.path == ("outer", "research")]
    assert len(outer) + len(inner) == len(events)

    assert [c.data for c in of(outer, Custom) if c.name == "langgraph.custom"] == ["outer starts"]
    assert [(c.name, c.data) for c in of(inner, Custom)] == [
        ("langgraph.custom", {"progress": "inner <b>half</b>", "n": 1})
    ]
    assert "".join(t.text for t in of(outer, TextChunk)) == "made whole"
    assert "".join(t.text for t in of(inner, TextChunk)) == "inner words"
    assert [s.name for s in of(inner, StepStart)] == ["inner"]
    (sub_done,) = of(inner, Done)
    assert sub_done.result == "inner words"
    # The node that runs the subgraph is a step of the outer run around the whole sub-run.
    research_start = next(e for e in outer if type(e) is StepStart and e.name == "research")
    research_end = next(e for e in outer if type(e) is StepEnd and e.name == "research")
    at = events.index
    assert at(research_start) < at(inner[0]) < at(sub_done) < at(research_end)
    assert sub_done.run_id != events[-1].run_id
    assert events[-1].path == ("outer",)


def approval_graph() -> Any:
    def approve(state: MessagesState) -> dict[str, Any]:
        answer = interrupt({"question": "Delete <build/x>?", "tool_call_id": "call_9"})
        return {"messages": [AIMessage(f"approved={answer}", id="done1")]}

    g = StateGraph(MessagesState)
    g.add_node("approve", approve)
    g.add_edge(START, "approve")
    return g.compile(checkpointer=InMemorySaver())


async def test_an_interrupt_says_the_graph_paused_and_for_what_and_the_run_ends() -> None:
    graph = approval_graph()
    with capture_events() as events:
        run = agentnb.start(graph, "rm -rf build")
        result = await run.wait()
    assert result == "rm -rf build"  # the last message is still the prompt
    (paused,) = [c for c in of(events, Custom) if c.name == "langgraph.interrupt"]
    state = await graph.aget_state({"configurable": {"thread_id": run.id}})
    (pending,) = state.interrupts
    assert paused.data == {
        "id": pending.id,
        "value": {"question": "Delete <build/x>?", "tool_call_id": "call_9"},
        "thread_id": run.id,
    }
    (status,) = of(events, Status)
    assert status.message.startswith("paused, waiting for input: ")
    assert "Delete <build/x>?" in status.message
    assert events.kinds()[-1] == "done"
    # The thread it names is the one to resume.
    resumed = await graph.ainvoke(Command(resume="yes"), {"configurable": {"thread_id": run.id}})
    assert resumed["messages"][-1].content == "approved=yes"


# -- errors, cancel, input ---------------------------------------------------------------


class GraphBroke(RuntimeError):
    pass


async def test_a_node_that_raises_is_the_runs_error_with_its_type() -> None:
    def broken(state: MessagesState) -> dict[str, Any]:
        raise GraphBroke("node <x> failed")

    g = StateGraph(MessagesState)
    g.add_node("broken", broken)
    g.add_edge(START, "broken")
    with capture_events() as events, pytest.raises(GraphBroke, match="node <x> failed"):
        await agentnb.run(compiled(g), "hi")
    (error,) = of(events, Error)
    assert error.type.endswith("GraphBroke")
    assert error.message == "node <x> failed"
    assert [s.name for s in of(events, StepStart)] == ["broken"]


async def test_an_error_inside_a_subgraph_ends_its_sub_run_and_the_run_with_its_type() -> None:
    def broken(state: MessagesState) -> dict[str, Any]:
        raise GraphBroke("deep failure")

    sub = StateGraph(MessagesState)
    sub.add_node("broken", broken)
    sub.add_edge(START, "broken")
    g = StateGraph(MessagesState)
    g.add_node("sub", sub.compile())
    g.add_edge(START, "sub")
    with capture_events() as events, pytest.raises(GraphBroke):
        await agentnb.run(compiled(g, "top"), "hi")
    errors = of(events, Error)
    assert [e.path for e in errors][-1] == ("top",)
    assert all(e.type.endswith("GraphBroke") for e in errors)
    assert events.kinds()[-1] == "error"
    (sub_terminal,) = [e for e in events if e.terminal and e.path == ("top", "sub")]
    assert type(sub_terminal) is Error
    assert sub_terminal.message == "deep failure"


async def test_cancelling_the_run_stops_the_graph_within_a_second() -> None:
    started = asyncio.Event()
    node_cancelled = asyncio.Event()

    async def slow(state: MessagesState) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            node_cancelled.set()
            raise
        return {"messages": [AIMessage("too late")]}

    g = StateGraph(MessagesState)
    g.add_node("slow", slow)
    g.add_edge(START, "slow")
    with capture_events() as events:
        run = agentnb.start(compiled(g), "hi")
        await asyncio.wait_for(started.wait(), 5)
        cancelled_at = time.monotonic()
        assert run.cancel("stop")
        with pytest.raises(RunCancelled):
            await run.wait()
        took = time.monotonic() - cancelled_at
    assert took < 1.0
    assert node_cancelled.is_set()
    assert events.kinds()[-1] == "cancelled"


class Counter(TypedDict):
    count: int
    note: str


def counter_graph() -> Any:
    def bump(state: Counter) -> dict[str, Any]:
        return {"count": state["count"] + 1, "note": "bumped <ok>"}

    g = StateGraph(Counter)
    g.add_node("bump", bump)
    g.add_edge(START, "bump")
    return g.compile()


async def test_a_dict_is_the_graphs_own_input_and_the_state_is_the_result() -> None:
    with capture_events() as events:
        result = await agentnb.run(counter_graph(), {"count": 1, "note": ""})
    assert result == {"count": 2, "note": "bumped <ok>"}
    assert of(events, StateSnapshot)[0].state == {"count": 1, "note": ""}
    assert [d.patch for d in of(events, StateDelta)] == [
        [
            {"op": "replace", "path": "/count", "value": 2},
            {"op": "replace", "path": "/note", "value": "bumped <ok>"},
        ]
    ]


async def test_a_prompt_for_a_graph_without_messages_says_to_pass_its_input() -> None:
    with pytest.raises(TypeError, match=r"no 'messages' key.*input keys: count, note"):
        await agentnb.run(counter_graph(), "hello")


def test_json_patch_and_jsonable_keep_the_state_json_and_exact() -> None:
    old: JSON = {"a/b": [1, 2], "t": 1, "gone": None}
    new: JSON = {"a/b": [1, 2, 3], "t": True, "x~": {"y": 1.5}}
    patch = json_patch(old, new)
    assert patch == [
        {"op": "remove", "path": "/gone"},
        {"op": "add", "path": "/a~1b/2", "value": 3},
        {"op": "replace", "path": "/t", "value": True},
        {"op": "add", "path": "/x~0", "value": {"y": 1.5}},
    ]
    assert apply_patch(old, patch) == new
    assert json_patch(new, new) == []
    assert jsonable({"m": AIMessage("hi", id="1"), 2: float("nan"), "o": object}) == {
        "m": AIMessage("hi", id="1").model_dump(),
        "2": "nan",
        "o": str(object),
    }


async def test_an_interrupt_inside_a_subgraph_is_reported_once_in_its_sub_run() -> None:
    def approve(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"a={interrupt('ok?')}")]}

    sub = StateGraph(MessagesState)
    sub.add_node("approve", approve)
    sub.add_edge(START, "approve")
    g = StateGraph(MessagesState)
    g.add_node("sub", sub.compile())
    g.add_edge(START, "sub")
    graph: Any = g.compile(checkpointer=InMemorySaver(), name="top")
    with capture_events() as events:
        run = agentnb.start(graph, "hi")
        await run.wait()
    paused = [c for c in of(events, Custom) if c.name == "langgraph.interrupt"]
    assert [(c.path, c.data["value"], c.data["thread_id"]) for c in paused] == [
        (("top", "sub"), "ok?", run.id)
    ]
    assert [(s.path, s.message) for s in of(events, Status)] == [
        (("top", "sub"), "paused, waiting for input: ok?")
    ]
    assert [(e.path, e.kind) for e in events if e.terminal] == [
        (("top", "sub"), "done"),
        (("top",), "done"),
    ]
