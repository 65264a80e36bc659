"""Framework agents served: ``create_app(agents=[pydantic_agent, graph])`` streams their runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

import agentnb
from agentnb.server import create_app
from tests.server.served import Server, check_whole_run, post_stream, served


async def scripted(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
    if not any(isinstance(m, ModelResponse) for m in messages):
        yield {0: DeltaToolCall(name="order_status", json_args='{"order_id": ', tool_call_id="c1")}
        yield {0: DeltaToolCall(json_args='"1234"}')}
        return
    yield "Order 1234 "
    yield "has shipped."


def support_agent() -> Agent[None, str]:
    support: Agent[None, str] = Agent(FunctionModel(stream_function=scripted), name="support")

    @support.tool_plain
    def order_status(order_id: str) -> str:
        return f"{order_id}: shipped"

    return support


class PetState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def pets_graph() -> Any:
    async def answer(state: PetState) -> dict[str, Any]:
        model = GenericFakeChatModel(messages=iter([AIMessage("Kitten food, small meals.")]))
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(PetState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(name="pets")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=[support_agent(), pets_graph()])) as server:
        yield server


async def test_framework_agents_are_listed_by_their_own_names(server: Server) -> None:
    async with server.client() as client:
        listed = (await client.get("/api/agents")).json()
    assert [a["name"] for a in listed] == ["pets", "support"]
    assert all(a["description"] for a in listed)  # the adapters describe them


async def test_a_pydantic_ai_agent_streams_its_tool_call_as_it_arrives_over_sse(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "support", "input": "Where is 1234?"})
    events = check_whole_run(reading, sent)  # each one checked against its schema too
    kinds = [e.kind for e in events]
    assert kinds.index("tool_call_start") < kinds.index("tool_call_delta")
    assert kinds.index("tool_call_end") < kinds.index("tool_call") < kinds.index("tool_result")
    deltas = [e.delta for e in events if isinstance(e, agentnb.ToolCallDelta)]
    assert "".join(deltas) == '{"order_id": "1234"}'
    assert "".join(e.text for e in events if isinstance(e, agentnb.TextChunk)) == (
        "Order 1234 has shipped."
    )
    done = events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == "Order 1234 has shipped."
    assert done.usage is not None
    assert done.usage["calls"] == 2


async def test_a_langgraph_graph_streams_its_steps_and_message(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "pets", "input": "What do kittens eat?"})
    events = check_whole_run(reading, sent)
    steps = [e.name for e in events if isinstance(e, agentnb.StepStart)]
    assert steps == ["answer"]
    assert "".join(e.text for e in events if isinstance(e, agentnb.TextChunk)) == (
        "Kitten food, small meals."
    )
    assert events[-1].kind == "done"
