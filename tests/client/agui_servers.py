"""Third-party AG-UI servers, offline, for the tests of ``agentnb.client.agui``.

``pydantic_app()``: pydantic-ai's ``AGUIAdapter`` with ``FunctionModel`` agents, served in
a thread (it is clean under ``-W error``), plus a few endpoints that answer wrong:

* ``/`` the adder: thinking, a tool call whose arguments arrive in two pieces, the tool's
  result, then the answer; usage on RUN_FINISHED.
* ``/hitl`` a tool that needs approval: the run ends with an interrupt; resumed, it runs.
* ``/slow`` streams a word every 20 ms until the client goes; ``SLOW_CLOSED`` is set then.
* ``/scripted``, ``/failed``: canned AG-UI streams of what neither framework sends.
* ``/html``, ``/json500``, ``/garbage``, ``/broken``: answers no AG-UI client can read.

``langgraph_app()``: ag-ui-langgraph over a LangGraph graph with a fake chat model that
streams a tool call (name and id first, then the arguments in two chunks), text and usage;
``/hitl`` is a graph that calls ``interrupt()`` (with the interrupt outcome), ``/legacy``
the same graph with LangGraph's older ``on_interrupt`` form. ag-ui-langgraph warns a
deprecation on every run, which the suite turns into errors, so it is served in a child
process: ``python -m tests.client.agui_servers`` prints ``{"port": ...}`` and serves.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SLOW_CLOSED = threading.Event()
"""Set when the client of ``/slow`` has gone (the server saw the disconnect)."""


def pydantic_app() -> Starlette:
    from pydantic_ai import Agent, DeferredToolRequests
    from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart
    from pydantic_ai.models.function import (
        AgentInfo,
        DeltaThinkingPart,
        DeltaToolCall,
        DeltaToolCalls,
        FunctionModel,
    )
    from pydantic_ai.ui.ag_ui import AGUIAdapter

    def answered(messages: list[ModelMessage]) -> bool:
        last = messages[-1]
        return isinstance(last, ModelRequest) and any(
            isinstance(p, ToolReturnPart) for p in last.parts
        )

    async def adder_model(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls | dict[int, DeltaThinkingPart]]:
        if answered(messages):
            yield "The answer "
            yield "is 3."
            return
        yield {0: DeltaThinkingPart(content="Let me ")}
        yield {0: DeltaThinkingPart(content="think.")}
        yield {1: DeltaToolCall(name="add", json_args='{"a": 1,', tool_call_id="call_1")}
        yield {1: DeltaToolCall(json_args=' "b": 2}')}

    adder = Agent(FunctionModel(stream_function=adder_model), name="adder")

    @adder.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    async def approval_model(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        if answered(messages):
            yield "Done."
            return
        yield {0: DeltaToolCall("delete_file", '{"path": "build/x"}', tool_call_id="call_9")}

    approval = Agent(
        FunctionModel(stream_function=approval_model),
        output_type=[str, DeferredToolRequests],
        name="hitl",
    )

    @approval.tool_plain(requires_approval=True)
    def delete_file(path: str) -> str:
        return f"deleted {path}"

    async def slow_model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        try:
            while True:
                yield "tick "
                await asyncio.sleep(0.02)
        finally:
            SLOW_CLOSED.set()

    slow = Agent(FunctionModel(stream_function=slow_model), name="slow")

    async def run_adder(request: Request) -> Response:
        return await AGUIAdapter.dispatch_request(request, agent=adder, include_usage=True)

    async def run_approval(request: Request) -> Response:
        return await AGUIAdapter.dispatch_request(request, agent=approval)

    async def run_slow(request: Request) -> Response:
        return await AGUIAdapter.dispatch_request(request, agent=slow)

    return Starlette(
        routes=[
            Route("/", run_adder, methods=["POST"]),
            Route("/hitl", run_approval, methods=["POST"]),
            Route("/slow", run_slow, methods=["POST"]),
            *wrong_routes(),
        ]
    )


BROKEN_EVENTS = [
    '{"type": "RUN_STARTED", "threadId": "t", "runId": "r"}',
    '{"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-never", "delta": "orphan"}',
    "this is not JSON",
    '{"type": "NO_SUCH_EVENT", "x": 1}',
    '{"type": "TEXT_MESSAGE_CONTENT", "delta": "no id"}',
    '{"type": "TOOL_CALL_ARGS", "toolCallId": "c-never", "delta": "{}"}',
]
"""What ``/broken`` streams (CRLF-framed), and then it ends without a terminal event."""


_RUN = {"threadId": "t-1", "runId": "r-1"}

SCRIPTED: list[dict[str, Any]] = [
    {"type": "RUN_STARTED", **_RUN, "protocolVersion": "1.0"},
    {"type": "STATE_SNAPSHOT", "snapshot": {"count": 1}},
    {"type": "STATE_DELTA", "delta": [{"op": "replace", "path": "/count", "value": 2}]},
    {"type": "REASONING_START", "messageId": "r1"},
    {"type": "REASONING_MESSAGE_START", "messageId": "r1", "role": "reasoning"},
    {"type": "REASONING_MESSAGE_CONTENT", "messageId": "r1", "delta": "hmm"},
    {"type": "REASONING_MESSAGE_END", "messageId": "r1"},
    {
        "type": "REASONING_ENCRYPTED_VALUE",
        "subtype": "message",
        "entityId": "r1",
        "encryptedValue": "c2ln",
    },
    {"type": "REASONING_END", "messageId": "r1"},
    {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "role": "assistant", "delta": "Hello "},
    {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "delta": "<b>world</b>"},
    {
        "type": "TOOL_CALL_CHUNK",
        "toolCallId": "c1",
        "toolCallName": "lookup",
        "parentMessageId": "m1",
        "delta": '{"q": ',
    },
    {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "delta": '"x"}'},
    {"type": "TOOL_CALL_RESULT", "messageId": "t1", "toolCallId": "c1", "content": "found"},
    {"type": "CUSTOM", "name": "acme.progress", "value": {"pct": 50}},
    {"type": "RAW", "source": "acme", "event": {"native": True}},
    {"type": "SUBAGENT_STARTED", "subagentRunId": "s1", "name": "researcher"},
    {"type": "TEXT_MESSAGE_START", "messageId": "m2", "role": "assistant", "subagentRunId": "s1"},
    {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m2", "delta": "found it", "subagentRunId": "s1"},
    {"type": "TEXT_MESSAGE_END", "messageId": "m2", "subagentRunId": "s1"},
    {"type": "SUBAGENT_FINISHED", "subagentRunId": "s1", "outcome": {"type": "success"}},
    {"type": "SUBAGENT_STARTED", "subagentRunId": "s2", "name": "failing"},
    {"type": "SUBAGENT_ERROR", "subagentRunId": "s2", "message": "boom", "code": "ValueError"},
    {"type": "RUN_FINISHED", **_RUN, "outcome": {"type": "cancelled"}},
]
"""What ``/scripted`` streams: a valid AG-UI 1.0 run with what the two frameworks above do
not send (chunks, an encrypted reasoning value, state deltas, subagents), ending cancelled."""

FAILED: list[dict[str, Any]] = [
    {"type": "RUN_STARTED", **_RUN, "protocolVersion": "1.0"},
    {"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"},
    {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Working"},
    {
        "type": "RUN_ERROR",
        "message": "quota exceeded",
        "code": "rate_limited",
        "usage": [{"model": "m", "inputTokens": 7, "outputTokens": 1}],
    },
]
"""What ``/failed`` streams: a run that fails mid-message."""


def streaming(events: list[dict[str, Any]]) -> Any:
    async def endpoint(request: Request) -> Response:
        async def frames() -> AsyncIterator[bytes]:
            for event in events:
                yield f"data: {json.dumps(event)}\n\n".encode()

        return StreamingResponse(frames(), media_type="text/event-stream")

    return endpoint


def wrong_routes() -> list[Route]:
    async def html(request: Request) -> Response:
        return HTMLResponse("<html><body><h1>Welcome to nginx!</h1></body></html>")

    async def json500(request: Request) -> Response:
        return JSONResponse({"detail": "the model is overloaded"}, status_code=500)

    async def garbage(request: Request) -> Response:
        body = b"\x00\xffnot an event stream at all\n\n<<<>>>\n"
        return Response(body, media_type="text/event-stream")

    async def broken(request: Request) -> Response:
        async def frames() -> AsyncIterator[bytes]:
            for data in BROKEN_EVENTS:
                yield f"data: {data}\r\n\r\n".encode()

        return StreamingResponse(frames(), media_type="text/event-stream")

    return [
        Route("/html", html, methods=["POST"]),
        Route("/json500", json500, methods=["POST"]),
        Route("/garbage", garbage, methods=["POST"]),
        Route("/broken", broken, methods=["POST"]),
        Route("/scripted", streaming(SCRIPTED), methods=["POST"]),
        Route("/failed", streaming(FAILED), methods=["POST"]),
    ]


def langgraph_app() -> Any:
    from ag_ui_langgraph import (  # type: ignore[import-untyped]
        LangGraphAgent,
        add_langgraph_fastapi_endpoint,
    )
    from fastapi import FastAPI
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.outputs import ChatGenerationChunk
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition
    from langgraph.types import interrupt

    class FakeToolModel(GenericFakeChatModel):
        """Streams tool calls (name and id first, then the arguments) and usage."""

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _stream(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Iterator[ChatGenerationChunk]:
            message = next(self.messages)
            assert isinstance(message, AIMessage)
            chunks: list[AIMessageChunk] = []
            for i, call in enumerate(message.tool_calls):
                args = json.dumps(call["args"])
                pieces = ["", args[: len(args) // 2], args[len(args) // 2 :]]
                for j, piece in enumerate(pieces):
                    first = j == 0
                    chunks.append(
                        AIMessageChunk(
                            content="",
                            id=message.id,
                            tool_call_chunks=[
                                {
                                    "name": call["name"] if first else None,
                                    "args": piece,
                                    "id": call["id"] if first else None,
                                    "index": i,
                                }
                            ],
                        )
                    )
            if not message.tool_calls:
                assert isinstance(message.content, str)
                words = message.content.split(" ")
                chunks += [AIMessageChunk(content=word + " ", id=message.id) for word in words]
            usage = UsageMetadata(input_tokens=5, output_tokens=3, total_tokens=8)
            chunks.append(
                AIMessageChunk(
                    content="", id=message.id, chunk_position="last", usage_metadata=usage
                )
            )
            for chunk in chunks:
                generation = ChatGenerationChunk(message=chunk)
                if run_manager:
                    text = chunk.content if isinstance(chunk.content, str) else ""
                    run_manager.on_llm_new_token(text, chunk=generation)
                yield generation

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def script() -> Iterator[AIMessage]:
        turn = 0
        while True:  # a tool call, then the answer: again for every run, with fresh ids
            turn += 1
            yield AIMessage(
                content="",
                tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": f"call_{turn}"}],
                id=f"ai-{turn}-call",
            )
            yield AIMessage(content="The answer is 3.", id=f"ai-{turn}-answer")

    model = FakeToolModel(messages=script()).bind_tools([add])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    calc = StateGraph(MessagesState)
    calc.add_node("agent", agent)
    calc.add_node("tools", ToolNode([add]))
    calc.add_edge(START, "agent")
    calc.add_conditional_edges("agent", tools_condition)
    calc.add_edge("tools", "agent")

    def ask_node(state: MessagesState) -> dict[str, Any]:
        answer = interrupt({"question": "Delete build/x?", "choices": ["approve", "deny"]})
        return {"messages": [AIMessage(content=f"You said {answer}.", id="ai-h")]}

    def asking() -> Any:
        graph = StateGraph(MessagesState)
        graph.add_node("ask", ask_node)
        graph.add_edge(START, "ask")
        graph.add_edge("ask", END)
        return graph.compile(checkpointer=InMemorySaver())

    app = FastAPI()
    graph = calc.compile(checkpointer=InMemorySaver())
    add_langgraph_fastapi_endpoint(
        app, LangGraphAgent(name="calc", graph=graph, emit_raw_events=False), "/"
    )
    hitl = LangGraphAgent(
        name="hitl", graph=asking(), emit_raw_events=False, emit_interrupt_outcome=True
    )
    add_langgraph_fastapi_endpoint(app, hitl, "/hitl")
    legacy = LangGraphAgent(name="legacy", graph=asking(), emit_raw_events=False)
    add_langgraph_fastapi_endpoint(app, legacy, "/legacy")
    return app


if __name__ == "__main__":
    from langgraph.warnings import LangGraphDeprecatedSinceV10

    from harness.web import serve_child

    # ag-ui-langgraph asks LangGraph for the graph's config schema on every run, which
    # LangGraph 1.x warns is deprecated: not these tests' business.
    warnings.filterwarnings("ignore", category=LangGraphDeprecatedSinceV10)
    serve_child(langgraph_app())
