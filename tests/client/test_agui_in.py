"""``agentnb.client.agui``: third-party AG-UI servers (pydantic-ai, ag-ui-langgraph) as agents.

Each server runs under real uvicorn (ag-ui-langgraph in a child process: it warns a
deprecation on every run). What a run shows is compared with what the same server sends
a plain httpx POST of the same input, event by event: every AG-UI event has its agentnb
counterpart, in order, with the same text, tool calls, results, steps and usage.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from ag_ui_validate.pytest_plugin import assert_valid_agui

import agentnb
from agentnb import Answer, Ask, Event
from agentnb.client import AGUIProtocolError, RemoteAgentError, ServerError, agui, stream
from agentnb.server import create_app
from agentnb.testing import CapturedEvents, capture_events
from harness.wait import eventually
from harness.web import ServerProcess, serving
from harness.wire import SseParser
from tests.client.agui_servers import SCRIPTED, SLOW_CLOSED, pydantic_app
from tests.helpers import Recorder


@pytest.fixture(scope="module")
def pyd() -> Iterator[str]:
    with serving(pydantic_app()) as base:
        yield base


@pytest.fixture(scope="module")
def lg() -> Iterator[str]:
    server = ServerProcess(["-m", "tests.client.agui_servers"])
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


class Answering(Recorder):
    """A sink that takes answers, as the cell's view does where someone can answer."""

    answers = True


def run_input(text: str) -> dict[str, Any]:
    """A RunAgentInput as ``agui()`` sends it (ids of its own)."""
    return {
        "threadId": f"thread-{os.urandom(4).hex()}",
        "runId": f"run-{os.urandom(4).hex()}",
        "protocolVersion": "1.0",
        "messages": [{"id": f"user-{os.urandom(4).hex()}", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }


async def sent(url: str, text: str) -> list[dict[str, Any]]:
    """The AG-UI events the server streams for *text*, read with a plain POST."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url, json=run_input(text), headers={"accept": "text/event-stream"}
        )
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"].startswith("text/event-stream")
    events = SseParser().feed(response.content)
    return [json.loads(event.data) for event in events]


# AG-UI events that have no agentnb event of their own (the boundaries of a reasoning
# block: its Reasoning events carry the message id), and what each other one becomes.
SILENT = {"RUN_STARTED", "REASONING_START", "REASONING_END"}
SILENT |= {"REASONING_MESSAGE_START", "REASONING_MESSAGE_END"}
KINDS = {
    "TEXT_MESSAGE_START": ["message_start"],
    "TEXT_MESSAGE_CONTENT": ["text"],
    "TEXT_MESSAGE_END": ["message_end"],
    "REASONING_MESSAGE_CONTENT": ["reasoning"],
    "TOOL_CALL_START": ["tool_call_start"],
    "TOOL_CALL_ARGS": ["tool_call_delta"],
    "TOOL_CALL_END": ["tool_call_end", "tool_call"],
    "TOOL_CALL_RESULT": ["tool_result"],
    "STEP_STARTED": ["step_start"],
    "STEP_FINISHED": ["step_end"],
    "STATE_SNAPSHOT": ["state_snapshot"],
    "MESSAGES_SNAPSHOT": ["raw"],
}


def expected_kinds(agui_events: list[dict[str, Any]]) -> list[str]:
    kinds: list[str] = []
    for event in agui_events:
        kind = event["type"]
        if kind == "RUN_FINISHED":
            kinds += ["usage"] * len(event.get("usage") or []) + ["done"]
        elif kind not in SILENT:
            kinds += KINDS[kind]
    return kinds


def shown(agui_events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a cell should show of an AG-UI stream: text per message, reasoning, tool calls
    (name, parsed arguments), results, steps, state and usage, in order."""
    view: dict[str, Any] = {k: [] for k in ("text", "reasoning", "calls", "results", "steps")}
    view |= {"states": [], "usage": []}
    args: dict[str, str] = {}
    names: dict[str, str] = {}
    for event in agui_events:
        kind = event["type"]
        if kind == "TEXT_MESSAGE_START":
            view["text"].append("")
        elif kind == "TEXT_MESSAGE_CONTENT":
            view["text"][-1] += event["delta"]
        elif kind == "REASONING_MESSAGE_START":
            view["reasoning"].append("")
        elif kind == "REASONING_MESSAGE_CONTENT":
            view["reasoning"][-1] += event["delta"]
        elif kind == "TOOL_CALL_START":
            args[event["toolCallId"]] = ""
            names[event["toolCallId"]] = event["toolCallName"]
        elif kind == "TOOL_CALL_ARGS":
            args[event["toolCallId"]] += event["delta"]
        elif kind == "TOOL_CALL_END":
            call_id = event["toolCallId"]
            view["calls"].append((names[call_id], json.loads(args[call_id])))
        elif kind == "TOOL_CALL_RESULT":
            assert event["toolCallId"] in names
            view["results"].append(event["content"])
        elif kind in ("STEP_STARTED", "STEP_FINISHED"):
            view["steps"].append((kind == "STEP_STARTED", event["stepName"]))
        elif kind == "STATE_SNAPSHOT":
            view["states"].append(contents(event["snapshot"]))
        elif kind == "RUN_FINISHED":
            usage = event.get("usage") or []
            view["usage"] = [(u["inputTokens"], u["outputTokens"]) for u in usage]
    return view


def shown_here(events: list[Event]) -> dict[str, Any]:
    """The same view of the agentnb events a run emitted."""
    view: dict[str, Any] = {k: [] for k in ("text", "reasoning", "calls", "results", "steps")}
    view |= {"states": [], "usage": []}
    reasoning_ids: list[str] = []
    called: list[str] = []
    for event in events:
        match event:
            case agentnb.MessageStart():
                view["text"].append("")
            case agentnb.TextChunk(text=text):
                view["text"][-1] += text
            case agentnb.Reasoning(text=text, message_id=message_id):
                if message_id not in reasoning_ids:
                    reasoning_ids.append(message_id)
                    view["reasoning"].append("")
                view["reasoning"][-1] += text
            case agentnb.ToolCall(name=name, args=args, call_id=call_id):
                called.append(call_id)
                view["calls"].append((name, args))
            case agentnb.ToolResult(call_id=call_id, result=result):
                assert call_id in called
                view["results"].append(result)
            case agentnb.StepStart(name=name):
                view["steps"].append((True, name))
            case agentnb.StepEnd(name=name):
                view["steps"].append((False, name))
            case agentnb.StateSnapshot(state=state):
                view["states"].append(contents(state))
            case agentnb.Usage(input_tokens=used_in, output_tokens=used_out):
                view["usage"].append((used_in, used_out))
    return view


def contents(state: Any) -> Any:
    """A LangGraph state without its message ids (a fresh user message id each run)."""
    if isinstance(state, dict) and isinstance(state.get("messages"), list):
        return [(m.get("type"), m.get("content")) for m in state["messages"]]
    return state


async def shows(url: str, text: str) -> tuple[CapturedEvents, Any]:
    with capture_events() as events:
        result = await agentnb.run(agui(url), text)
    return events, result


# -- what a run shows equals what the server sent -----------------------------------


async def test_a_pydantic_ai_agent_shows_its_thinking_tool_call_text_and_usage(pyd: str) -> None:
    agui_events = await sent(pyd + "/", "1+2?")
    events, result = await shows(pyd + "/", "1+2?")
    assert events.kinds() == expected_kinds(agui_events)
    view = shown_here(events)
    assert view == shown(agui_events)
    assert view["reasoning"] == ["Let me think."]
    assert view["calls"] == [("add", {"a": 1, "b": 2})]
    assert [e.delta for e in events if isinstance(e, agentnb.ToolCallDelta)] == [
        '{"a": 1,',
        ' "b": 2}',
    ]
    assert view["results"] == ["3"]
    assert view["text"] == ["", "The answer is 3."]  # the tool call's message has no text
    assert view["usage"] == [(100, 16)]
    assert result == "The answer is 3."
    done = events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.usage is not None
    assert done.usage["input_tokens"] == 100
    # The text's message ids are the server's, and the tool call names its message.
    starts = [e for e in events if isinstance(e, agentnb.MessageStart)]
    ids = [e["messageId"] for e in agui_events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(starts) == len(ids) == 2
    (call,) = [e for e in events if isinstance(e, agentnb.ToolCallStart)]
    assert call.message_id == starts[0].message_id


async def test_a_langgraph_agent_shows_its_steps_tool_call_state_and_usage(lg: str) -> None:
    agui_events = await sent(lg + "/", "1+2?")
    events, result = await shows(lg + "/", "1+2?")
    assert events.kinds() == expected_kinds(agui_events)
    view = shown_here(events)
    assert view == shown(agui_events)
    assert view["calls"] == [("add", {"a": 1, "b": 2})]
    assert view["results"] == ["3"]
    assert view["text"] == ["The answer is 3. "]
    assert [name for started, name in view["steps"] if started] == ["agent", "tools", "agent"]
    assert view["usage"] == [(10, 6)]
    assert result == "The answer is 3. "
    (raw,) = [e for e in events if isinstance(e, agentnb.Raw)]
    assert raw.source == "agui"
    assert isinstance(raw.event, dict)
    assert raw.event["type"] == "MESSAGES_SNAPSHOT"


async def test_the_conversation_goes_on_in_the_same_thread(pyd: str, lg: str) -> None:
    for url in (pyd + "/", lg + "/"):
        adder = agui(url)
        assert await agentnb.run(adder, "1+2?") == await agentnb.run(adder, "and again?")
        users = [m["content"] for m in adder.messages if m["role"] == "user"]
        assert users == ["1+2?", "and again?"]
        assert [m["role"] for m in adder.messages][-1] == "assistant"


async def test_agentnb_stream_and_an_agentnb_server_show_an_agui_agent(pyd: str) -> None:
    with capture_events() as captured:
        await agentnb.run(agui(pyd + "/"), "1+2?")
    kinds = [e.kind for e in captured]
    streamed = [e async for e in agentnb.stream(agui(pyd + "/"), "1+2?")]
    assert [e.kind for e in streamed] == kinds
    with serving(create_app(agents=[agui(pyd + "/", name="adder")])) as base:
        async with stream(base, "adder", "1+2?") as events:
            served = [e async for e in events]
    assert [e.kind for e in served] == kinds
    assert served[-1].path == ("adder",)
    assert "".join(e.text for e in served if isinstance(e, agentnb.TextChunk)) == "The answer is 3."


# -- human in the loop --------------------------------------------------------------


async def answered(url: str, answer: str) -> tuple[Recorder, Any]:
    sink = Answering()
    run = agentnb.start(agui(url), "delete build/x", sink=sink)
    await eventually(lambda: run.questions)
    (question,) = run.questions
    run.answer(question.ask_id, answer, by="cell")
    return sink, await run.wait()


async def test_a_pydantic_ai_approval_is_asked_here_and_the_agent_goes_on(pyd: str) -> None:
    sink, result = await answered(pyd + "/hitl", "approve")
    assert result == "Done."
    (ask,) = [e for e in sink.events if isinstance(e, Ask)]
    assert ask.prompt == 'Approve delete_file({"path":"build/x"})?'
    assert (ask.choices, ask.call_id) == (["approve", "deny"], "call_9")
    kinds = sink.kinds()
    assert kinds.index("tool_call") < kinds.index("ask") < kinds.index("answer")
    results = [e for e in sink.events if isinstance(e, agentnb.ToolResult)]
    assert [(r.name, r.call_id, r.result) for r in results] == [
        ("delete_file", "call_9", "deleted build/x")
    ]
    assert kinds.index("answer") < kinds.index("tool_result")
    assert "agui.protocol_error" not in kinds
    assert kinds[-1] == "done"


async def test_a_pydantic_ai_approval_denied_runs_no_tool(pyd: str) -> None:
    sink, result = await answered(pyd + "/hitl", "deny")
    assert result == "Done."
    results = [e for e in sink.events if isinstance(e, agentnb.ToolResult)]
    assert len(results) == 1
    assert results[0].call_id == "call_9"
    assert "deleted" not in json.dumps(results[0].result)


@pytest.mark.parametrize("path", ["/hitl", "/legacy"])
async def test_a_langgraph_interrupt_is_asked_here_and_resumed_with_the_answer(
    lg: str, path: str
) -> None:
    sink, result = await answered(lg + path, "deny")
    assert result == "You said deny."  # interrupt() returned the answer itself
    (ask,) = [e for e in sink.events if isinstance(e, Ask)]
    assert json.loads(ask.prompt) == {"question": "Delete build/x?", "choices": ["approve", "deny"]}
    assert ask.choices == ["approve", "deny"]
    assert [(a.value, a.by) for a in sink.events if isinstance(a, Answer)] == [("deny", "cell")]
    assert "agui.protocol_error" not in sink.kinds()


@pytest.mark.parametrize(
    ("server", "path", "prompt"),
    [
        ("pyd", "/hitl", "Approve delete_file"),
        ("lg", "/hitl", "Delete build/x"),
        ("lg", "/legacy", "Delete build/x"),
    ],
)
async def test_headless_an_interrupt_without_default_fails_naming_it(
    request: pytest.FixtureRequest, server: str, path: str, prompt: str
) -> None:
    url = request.getfixturevalue(server) + path
    sink = Recorder()  # takes no answers: a headless notebook, a script
    with pytest.raises(agentnb.NoAnswer, match=f"{prompt}.*got no answer"):
        await agentnb.run(agui(url), "delete build/x", sink=sink)
    assert sink.kinds()[-2:] == ["ask", "error"]


async def test_chunks_signatures_state_custom_raw_and_subagents_map_to_their_kinds(
    pyd: str,
) -> None:
    assert_valid_agui(SCRIPTED, max_warnings=0)  # the canned stream is valid AG-UI
    sent_here = await sent(pyd + "/scripted", "hi")
    assert sent_here == SCRIPTED
    with capture_events() as events, pytest.raises(agentnb.RunCancelled):
        await agentnb.run(agui(pyd + "/scripted", name="scripted"), "hi")
    root = [e for e in events if e.path == ("scripted",)]
    assert [(e.kind, e.payload()) for e in root] == [
        ("state_snapshot", {"state": {"count": 1}}),
        ("state_delta", {"patch": [{"op": "replace", "path": "/count", "value": 2}]}),
        ("reasoning", {"text": "hmm", "message_id": "r1"}),
        ("reasoning", {"text": "", "message_id": "r1", "signature": "c2ln"}),
        ("message_start", {"message_id": "m1", "role": "assistant"}),
        ("text", {"text": "Hello ", "message_id": "m1"}),
        ("text", {"text": "<b>world</b>", "message_id": "m1"}),
        ("message_end", {"message_id": "m1"}),
        ("tool_call_start", {"name": "lookup", "call_id": "c1", "message_id": "m1"}),
        ("tool_call_delta", {"call_id": "c1", "delta": '{"q": '}),
        ("tool_call_delta", {"call_id": "c1", "delta": '"x"}'}),
        ("tool_call_end", {"call_id": "c1"}),
        ("tool_call", {"name": "lookup", "args": {"q": "x"}, "call_id": "c1"}),
        ("tool_result", {"name": "lookup", "result": "found", "call_id": "c1", "is_error": False}),
        ("acme.progress", {"data": {"pct": 50}}),
        ("raw", {"source": "acme", "event": {"native": True}}),
        ("cancelled", {"reason": "the AG-UI agent's run was cancelled"}),
    ]
    researcher = [e for e in events if e.path == ("scripted", "researcher")]
    assert [(e.kind, e.payload().get("text")) for e in researcher] == [
        ("message_start", None),
        ("text", "found it"),
        ("message_end", None),
        ("done", None),
    ]
    (failing,) = [e for e in events if e.path == ("scripted", "failing")]
    assert isinstance(failing, agentnb.Error)
    assert failing.message == "ValueError: boom"
    # the sub-runs come in the stream's order, inside the run
    assert events.index(researcher[0]) > events.index(root[-2])
    assert events.index(failing) < events.index(root[-1])


async def test_a_run_error_mid_message_raises_the_remote_agents_error_after_its_usage(
    pyd: str,
) -> None:
    with capture_events() as events, pytest.raises(RemoteAgentError) as failed:
        await agentnb.run(agui(pyd + "/failed"), "hi")
    assert (failed.value.type, failed.value.message) == ("rate_limited", "quota exceeded")
    assert events.kinds() == ["message_start", "text", "usage", "error"]
    error = events[-1]
    assert isinstance(error, agentnb.Error)
    assert error.message == "rate_limited: quota exceeded"
    assert error.usage is not None
    assert error.usage["input_tokens"] == 7


# -- wrong answers and wrong streams --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/html", 200, ["'text/html; charset=utf-8'", "<h1>Welcome to nginx!</h1>"]),
        ("/json500", 500, ["'application/json'", '{"detail":"the model is overloaded"}']),
    ],
)
async def test_an_answer_that_is_not_an_event_stream_is_a_clear_error(
    pyd: str, path: str, status: int, says: list[str]
) -> None:
    with capture_events() as events, pytest.raises(ServerError) as refused:
        await agentnb.run(agui(pyd + path), "hi")
    assert refused.value.status == status
    for part in [f"HTTP {status}", *says]:
        assert part in str(refused.value)
    error = events[-1]
    assert isinstance(error, agentnb.Error)
    assert f"HTTP {status}" in error.message


async def test_garbage_is_a_clear_error_showing_its_first_bytes(pyd: str) -> None:
    with pytest.raises(AGUIProtocolError, match="without RUN_FINISHED or RUN_ERROR") as failed:
        await agentnb.run(agui(pyd + "/garbage"), "hi")
    assert "after 0 events" in str(failed.value)
    assert "not an event stream at all" in str(failed.value)


async def test_malformed_and_out_of_order_events_are_reported_not_dropped(pyd: str) -> None:
    with capture_events() as events, pytest.raises(AGUIProtocolError, match="after 6 events"):
        await agentnb.run(agui(pyd + "/broken"), "hi")
    reports = [e.data for e in events if isinstance(e, agentnb.Custom)]
    assert all(e.name == "agui.protocol_error" for e in events if isinstance(e, agentnb.Custom))
    problems = [r["problem"] for r in reports if isinstance(r, dict)]
    assert problems == [
        "text for the message 'm-never', never started",
        "an event that is not JSON (Expecting value: line 1 column 1 (char 0))",
        "an event of unknown type 'NO_SUCH_EVENT'",
        "a TEXT_MESSAGE_CONTENT event that fails the AG-UI schema: messageId: Field required",
        "arguments for the tool call 'c-never', never started",
    ]
    from tests.client.agui_servers import BROKEN_EVENTS

    assert [r["event"] for r in reports if isinstance(r, dict)] == BROKEN_EVENTS[1:]
    assert events.text() == "orphan"  # reported, and still shown
    assert events.kinds()[-1] == "error"


async def test_a_run_error_raises_the_remote_agents_error(pyd: str) -> None:
    with capture_events() as events, pytest.raises(RemoteAgentError) as failed:
        # pydantic-ai answers a request without messages with RUN_ERROR
        await agentnb.run(agui(pyd + "/"))
    assert failed.value.type
    assert failed.value.message
    error = events[-1]
    assert isinstance(error, agentnb.Error)
    assert "RemoteAgentError" in error.type


# -- cancel ---------------------------------------------------------------------------


async def test_stop_closes_the_request_and_the_server_sees_it(pyd: str) -> None:
    SLOW_CLOSED.clear()
    sink = Recorder()
    run = agentnb.start(agui(pyd + "/slow"), "go", sink=sink)
    await eventually(lambda: "text" in sink.kinds())
    assert not SLOW_CLOSED.is_set()
    run.cancel("stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert sink.kinds()[-1] == "cancelled"
    await eventually(SLOW_CLOSED.is_set)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_sse_is_read_as_the_spec_reads_it_whatever_the_line_ends_and_pieces(
    size: int,
) -> None:
    from agentnb.client._agui import sse_data

    body = (
        ": a comment\r\n\r\n"
        'data: {"a": 1}\r\n\r\n'
        'event: x\rdata:{"b":\rdata: 2}\r\r'
        "id: 7\ndata: plain\n\n"
        "data: unfinished"
    )

    async def pieces() -> AsyncIterator[str]:
        for i in range(0, len(body), size):
            yield body[i : i + size]

    assert [d async for d in sse_data(pieces())] == ['{"a": 1}', '{"b":\n2}', "plain"]
