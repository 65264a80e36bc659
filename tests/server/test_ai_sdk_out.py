"""``POST /ai-sdk/{agent}``: runs as the AI SDK's UI message stream, checked by the ``ai`` package.

Every stream is read by node with the real ``ai`` npm package (tests/node): each chunk
is validated against its ``uiMessageChunkSchema()`` and the message is assembled by its
``readUIMessageStream`` (the state machine ``useChat`` runs). The assembled parts are
compared with what the agent emitted (the events the served run was handed). Real
uvicorn, real httpx and node clients.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import agentnb
from agentnb import (
    Answer,
    Ask,
    Custom,
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
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
    demo,
)
from agentnb.server import create_app
from harness import ROOT
from tests import hostile
from tests.helpers import forever
from tests.server.served import Server, served

NODE_DIR = ROOT / "tests" / "node"
CHECKER = NODE_DIR / "check_ui_stream.mjs"

HOSTILE = (
    "</script><script>alert(1)</script>\r\n\ndata: [DONE]\n\n\"'\\\u2028\u2029\u0085\x00😀"
    "<img src=x onerror=alert(2)> \udc80"
)

ANSWER = HOSTILE.removesuffix(" \udc80")  # (/api/runs/{id}/answer cannot echo a lone surrogate)

# -- agents ---------------------------------------------------------------------------


async def helper(task: str) -> str:
    """A sub-run: text, a tool call and its result."""
    agentnb.emit(f"helping with {task}")
    call = ToolCall("look_up", {"term": task})
    agentnb.emit(call)
    agentnb.emit(ToolResult("look_up", {"found": task}, call_id=call.call_id))
    return "helped"


async def every_kind(topic: str) -> str:
    """Emits every kind of event, hostile text included, and runs a sub-run."""
    emit = agentnb.emit
    emit(Status("thinking"))
    emit(StepStart("model", "s1"))
    emit(MessageStart("m1"))
    emit(Reasoning("Let me ", message_id="m1"))
    emit(Reasoning("think.", message_id="m1", signature="sig=="))
    emit(TextChunk("I will ", message_id="m1"))
    emit(TextChunk(f"add for {topic}.", message_id="m1"))
    emit(ToolCallStart("add", "c1", message_id="m1"))
    emit(ToolCallDelta("c1", '{"a": 1,'))
    emit(ToolCallDelta("c1", ' "b": 2}'))
    emit(ToolCallEnd("c1"))
    emit(ToolCall("add", {"a": 1, "b": 2}, call_id="c1"))
    emit(MessageEnd("m1", "tool_calls"))
    emit(Usage(10, 5, model="fake", provider="test", reasoning_tokens=2))
    emit(StepEnd("model", "s1"))
    emit(ToolResult("add", 3, call_id="c1"))
    emit(ToolCallStart("broken", "c2"))
    emit(ToolCallDelta("c2", '{"a": '))
    emit(ToolCallEnd("c2", error="the arguments are not JSON"))
    emit(ToolCall("broken", {"_raw": '{"a": '}, call_id="c2"))
    emit(ToolCall("div", {"a": 1, "b": 0}, call_id="c3"))
    emit(ToolResult("div", {"error": "division by zero"}, call_id="c3", is_error=True))
    emit(ToolResult("rm", None, call_id="c4", denied=True))  # a call never sent
    emit(StateSnapshot({"count": 1}))
    emit(StateDelta([{"op": "replace", "path": "/count", "value": 2}]))
    emit(StateSnapshot({"count": 2, HOSTILE: [HOSTILE]}))
    emit(Raw("test", {"native": HOSTILE}))
    emit(Custom("progress", {"done": 1, "note": HOSTILE}))
    emit(TextChunk(""))
    await agentnb.run(helper, HOSTILE, name="helper")
    emit(Usage(3, 4, model="fake", provider="test"))
    emit(HOSTILE)
    emit(ToolCall(HOSTILE, {HOSTILE: HOSTILE}, call_id=HOSTILE))
    emit(ToolResult(HOSTILE, HOSTILE, call_id=HOSTILE))
    emit("The answer is 3.")
    return "3"


async def waits(_input: str) -> None:
    """Streams a little, then waits until cancelled."""
    agentnb.emit("waiting ")
    await forever()


async def deleter(path: str) -> str:
    """Asks before deleting (an approval gating its tool call)."""
    agentnb.emit(f"I will delete {path}.")
    call = ToolCall("delete_file", {"path": path})
    agentnb.emit(call)
    if await agentnb.approve("delete_file", call.args, call_id=call.call_id):
        agentnb.emit(ToolResult("delete_file", f"deleted {path}", call_id=call.call_id))
        agentnb.emit(f"Deleted {path}.")
        return "deleted"
    agentnb.emit(ToolResult("delete_file", None, call_id=call.call_id, denied=True))
    agentnb.emit("Kept it.")
    return "kept"


async def greeter(_input: str) -> str:
    """Asks a free question mid-run."""
    agentnb.emit("Hello. ")
    name = await agentnb.ask("Your name?")
    agentnb.emit(f"Hi {name}.")
    return name


async def echo_chat(text: str) -> str:
    """Shows what the request told its run (``Run.metadata["ai_sdk"]``) and returns its input."""
    chat = agentnb.current_run().metadata["ai_sdk"]
    seen = {k: chat[k] for k in ("chat_id", "trigger", "body")}
    agentnb.emit(Custom("seen", seen | {"messages": len(chat["messages"])}))
    return text


AGENTS: dict[str, Any] = {
    "poet": demo.poet,
    "researcher": demo.researcher,
    "counter": demo.counter,
    "flaky": demo.flaky,
    "every_kind": every_kind,
    "hostile": hostile.everything,
    "waits": waits,
    "deleter": deleter,
    "greeter": greeter,
    "echo_chat": echo_chat,
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTNB_DEMO_SPEED", "0")


# -- node ---------------------------------------------------------------------------------


def node(*args: str, stdin: str | None = None) -> dict[str, Any]:
    """Run node (in tests/node, where ``ai`` is installed); its JSON output, checked clean."""
    if shutil.which("node") is None:
        pytest.fail(
            "node is not installed: these tests run the `ai` npm package (Node.js 20 or later)"
        )
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        pytest.fail("the `ai` npm package is not installed: run `npm ci` in tests/node")
    done = subprocess.run(
        ["node", *args], input=stdin, capture_output=True, text=True, cwd=NODE_DIR, timeout=60
    )
    assert done.stdout, f"node printed nothing; stderr: {done.stderr}"
    out: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0, f"the `ai` package refused the stream: {out['problems']}"
    assert out["invalid"] == 0, out
    assert out["problems"] == [], out
    assert out["done"], out
    return out


def check_url(url: str, text: str) -> dict[str, Any]:
    """POST useChat's body with the checker; what the `ai` package assembled."""
    return node(str(CHECKER), "--url", url, "--text", text)


def check_body(sse: str) -> dict[str, Any]:
    return node(str(CHECKER), "-", stdin=sse)


def check_continuation(message: dict[str, Any], sse: str) -> dict[str, Any]:
    """Check *sse* as the stream that continues *message* (after a tool approval)."""
    return node(str(CHECKER), "-", "--message", json.dumps(message), stdin=sse)


# -- what the message should hold ---------------------------------------------------


def expected_parts(events: list[Event], root: str) -> list[list[Any]]:
    """The parts of the message the events make (see the mapping in agentnb.server._ai_sdk):
    consecutive text (or reasoning) of one run and message is one part; status, raw and
    usage make none; a tool call is one part, updated by its result."""
    parts: list[list[Any]] = []
    tools: dict[str, list[Any]] = {}
    arguments: dict[str, str] = {}
    failed: set[str] = set()
    states: dict[str, list[Any]] = {}
    subruns: dict[str, list[Any]] = {}
    open_: tuple[str, str, str] | None = None

    def add(part: list[Any]) -> list[Any]:
        parts.append(part)
        return part

    def tool(call_id: str, name: str) -> list[Any]:
        if call_id not in tools:
            tools[call_id] = add(["tool", call_id, name, {}, "input-available", None])
        return tools[call_id]

    for e in events:
        if e.run_id != root and e.run_id not in subruns:
            open_ = None
            subruns[e.run_id] = add(["data-subrun", e.run_id, "running"])
        if isinstance(e, Status | Raw | Usage) or (isinstance(e, TextChunk) and not e.text):
            continue
        if isinstance(e, TextChunk | Reasoning):
            kind = "text" if isinstance(e, TextChunk) else "reasoning"
            key = (kind, e.run_id, e.message_id)
            if open_ != key:
                add([kind, ""] if kind == "text" else [kind, "", None])
                open_ = key
            parts[-1][1] += e.text
            if isinstance(e, Reasoning) and e.signature is not None:
                parts[-1][2] = e.signature
            continue
        open_ = None
        if e.terminal:
            if e.run_id != root:
                subruns[e.run_id][2] = e.kind
        elif isinstance(e, ToolCallStart):
            tools[e.call_id] = add(["tool", e.call_id, e.name, None, "input-streaming", None])
            arguments[e.call_id] = ""
        elif isinstance(e, ToolCallDelta):
            arguments[e.call_id] += e.delta
        elif isinstance(e, ToolCallEnd) and e.error:
            failed.add(e.call_id)
            tools[e.call_id][3:] = [arguments[e.call_id], "output-error", e.error]
        elif isinstance(e, ToolCall) and e.call_id not in failed:
            tool(e.call_id, e.name)[3:] = [e.args, "input-available", None]
        elif isinstance(e, ToolResult):
            part = tool(e.call_id, e.name)
            if e.denied:
                part[4:] = ["output-denied", None]
            elif e.is_error:
                result = e.result
                text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
                part[4:] = ["output-error", text]
            else:
                part[4:] = ["output-available", e.result]
        elif isinstance(e, StepStart):
            add(["step-start"])
        elif isinstance(e, StateSnapshot):
            if e.run_id in states:
                states[e.run_id][2] = e.state
            else:
                states[e.run_id] = add(["data-state", e.run_id, e.state])
        elif isinstance(e, StateDelta):
            add(["data-state-delta", e.patch])
        elif isinstance(e, Custom):
            add([f"data-{e.name}", e.data])
        elif isinstance(e, Ask) and e.call_id in tools:
            tools[e.call_id][4:] = ["approval-requested", None]
        elif isinstance(e, Ask):
            data = {"prompt": e.prompt, "choices": e.choices, "default": e.default}
            add(["data-ask", e.ask_id, data | ({"call_id": e.call_id} if e.call_id else {})])
        elif isinstance(e, Answer):
            add(["data-answer", e.ask_id, {"value": e.value, "by": e.by}])
    return parts


def message_parts(message: dict[str, Any]) -> list[list[Any]]:
    """The assembled message's parts, in the form of :func:`expected_parts`."""
    out: list[list[Any]] = []
    for part in message["parts"]:
        kind = part["type"]
        if kind == "text":
            assert part["state"] == "done", part
            out.append(["text", part["text"]])
        elif kind == "reasoning":
            assert part["state"] == "done", part
            signature = part.get("providerMetadata", {}).get("agentnb", {}).get("signature")
            out.append(["reasoning", part["text"], signature])
        elif kind == "dynamic-tool":
            state = part["state"]
            outcome = {
                "output-available": part.get("output"),
                "output-error": part.get("errorText"),
            }
            out.append(
                [
                    "tool",
                    part["toolCallId"],
                    part["toolName"],
                    part.get("input"),
                    state,
                    outcome.get(state),
                ]
            )
        elif kind == "step-start":
            out.append(["step-start"])
        elif kind == "data-subrun":
            out.append([kind, part["id"], part["data"]["status"]])
        elif kind in ("data-state", "data-ask", "data-answer"):
            out.append([kind, part["id"], part["data"]])
        else:
            assert kind.startswith("data-"), part
            out.append([kind, part["data"]])
    return out


def root_events(sent: dict[str, list[Event]], message: dict[str, Any]) -> tuple[str, list[Event]]:
    run_id: str = message["metadata"]["run_id"]
    assert message["id"] == run_id
    return run_id, sent[run_id]


def frames(sse: str) -> list[Any]:
    """The data of each frame (``[DONE]`` as the string)."""
    out: list[Any] = []
    for block in sse.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- the runs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "text"),
    [("poet", "the sea"), ("researcher", "why is the sea salty?"), ("counter", "4")],
)
def test_demo_agents(server: Server, sent: dict[str, list[Event]], agent: str, text: str) -> None:
    out = check_url(f"{server.base}/ai-sdk/{agent}", text)
    message = out["message"]
    run_id, events = root_events(sent, message)
    assert message["metadata"] == {"agent": agent, "run_id": run_id}
    assert message_parts(message) == expected_parts(events, run_id)
    assert out["types"][0] == "start"
    assert out["types"][-1] == "finish"
    assert out["streamErrors"] == []
    done = events[-1]
    assert isinstance(done, Done)
    joined = "".join(p["text"] for p in message["parts"] if p["type"] == "text")
    assert joined == "".join(e.text for e in events if isinstance(e, TextChunk))
    if agent == "researcher":
        subruns = [p for p in message["parts"] if p["type"] == "data-subrun"]
        assert [(p["data"]["name"], p["data"]["status"]) for p in subruns] == [
            ("summarizer", "done")
        ]
    if agent == "counter":
        progress = [p["data"] for p in message["parts"] if p["type"] == "data-progress"]
        assert progress == [{"done": i, "of": 4} for i in range(1, 5)]


def test_error(server: Server, sent: dict[str, list[Event]]) -> None:
    out = check_url(f"{server.base}/ai-sdk/flaky", "please fail")
    run_id, events = root_events(sent, out["message"])
    error = events[-1]
    assert isinstance(error, Error)
    assert out["streamErrors"] == [f"{error.type}: {error.message}"]
    assert out["types"][-2:] == ["error", "finish"]
    assert message_parts(out["message"]) == expected_parts(events, run_id)


def test_every_kind(server: Server, sent: dict[str, list[Event]]) -> None:
    out = check_url(f"{server.base}/ai-sdk/every_kind", "sums")
    message = out["message"]
    run_id, events = root_events(sent, message)
    parts = message_parts(message)
    assert parts == expected_parts(events, run_id)
    kinds = [p[0] for p in parts]
    for kind in ("reasoning", "text", "tool", "step-start", "data-state", "data-state-delta"):
        assert kind in kinds, kind
    assert ["reasoning", "Let me think.", "sig=="] in parts
    states = [p[4] for p in parts if p[0] == "tool"]
    assert states.count("output-error") == 2
    assert "output-denied" in states
    helper_id = next(e.run_id for e in events if e.path[-1] == "helper")
    assert ["data-subrun", helper_id, "done"] in parts
    # usage: message-metadata as it grows, then the run's totals on finish
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage is not None
    assert message["metadata"]["usage"] == done.usage
    assert done.usage["input_tokens"] == 13
    assert done.usage["calls"] == 2
    assert out["types"].count("message-metadata") == 2
    # transient parts reach onData, not the message
    assert "data-status" in out["types"]
    assert "data-raw" in out["types"]
    assert "data-status" not in kinds
    assert "data-raw" not in kinds
    texts = [p[1] for p in parts if p[0] == "text"]
    assert HOSTILE in texts
    assert ["text", "I will add for sums."] in parts


def test_hostile(server: Server, sent: dict[str, list[Event]]) -> None:
    """Payloads in every field of every kind stay exact data (and the ai package takes them)."""
    out = check_url(f"{server.base}/ai-sdk/hostile", "12:3:fail")
    run_id, events = root_events(sent, out["message"])
    assert message_parts(out["message"]) == expected_parts(events, run_id)
    error = events[-1]
    assert isinstance(error, Error)
    assert out["streamErrors"] == [f"{error.type}: {error.message}"]


def test_headers_and_framing(server: Server) -> None:
    body = {"id": "c", "messages": [user("the sea")], "trigger": "submit-message"}
    response = httpx.post(f"{server.base}/ai-sdk/poet", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    run_id = response.headers["x-agentnb-run-id"]
    raw = response.text
    assert "\r" not in raw
    assert raw.endswith("\n\ndata: [DONE]\n\n")
    chunks = frames(raw)
    assert chunks[0] == {
        "type": "start",
        "messageId": run_id,
        "messageMetadata": {"agent": "poet", "run_id": run_id},
    }
    assert chunks[-1] == "[DONE]"
    assert chunks[-2] == {"type": "finish", "finishReason": "stop"}


def test_input_and_metadata(server: Server, sent: dict[str, list[Event]]) -> None:
    """The last user message's text parts are the input; the rest reaches Run.metadata."""
    last = {
        "id": "u2",
        "role": "user",
        "parts": [
            {"type": "text", "text": "first"},
            {"type": "file", "mediaType": "text/plain", "url": "data:,x"},
            {"type": "text", "text": ANSWER},
        ],
    }
    reply = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "ok"}]}
    body = {
        "id": "chat-9",
        "messages": [user("earlier"), reply, last],
        "trigger": "regenerate-message",
        "temperature": 0.5,
    }
    response = httpx.post(f"{server.base}/ai-sdk/echo_chat", json=body, timeout=10)
    assert response.status_code == 200, response.text
    out = check_body(response.text)
    _run_id, events = root_events(sent, out["message"])
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result == f"first\n{ANSWER}"
    seen = {
        "chat_id": "chat-9",
        "trigger": "regenerate-message",
        "body": {"temperature": 0.5},
        "messages": 3,
    }
    assert message_parts(out["message"]) == [["data-seen", seen]]


# -- cancel and disconnect -------------------------------------------------------


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


async def read_until(lines: Any, raw: list[str], want: str) -> None:
    """Read SSE lines into *raw* until a chunk of type *want* (or the end)."""
    async for line in lines:
        raw.append(line + "\n")
        if line.startswith("data: {") and json.loads(line[6:])["type"] == want:
            return
    raise AssertionError(f"the stream ended before a {want!r} chunk: {''.join(raw)!r}")


def test_cancel_aborts(server: Server) -> None:
    async def main() -> str:
        body = {"messages": [user("x")]}
        async with (
            server.client() as client,
            client.stream("POST", "/ai-sdk/waits", json=body) as response,
        ):
            assert response.status_code == 200
            run_id = response.headers["x-agentnb-run-id"]
            raw: list[str] = []
            lines = response.aiter_lines()
            await read_until(lines, raw, "text-delta")
            cancelled = await client.post(f"/api/runs/{run_id}/cancel")
            assert cancelled.status_code == 200
            raw += [line + "\n" async for line in lines]
            return "".join(raw)

    sse = asyncio.run(main())
    chunks = frames(sse)
    assert chunks[-2:] == [{"type": "abort", "reason": "cancelled by a client"}, "[DONE]"]
    out = check_body(sse)
    assert out["types"][-1] == "abort"
    assert message_parts(out["message"]) == [["text", "waiting "]]


def test_disconnect_cancels(server: Server) -> None:
    async def main() -> str:
        async with (
            server.client() as client,
            client.stream("POST", "/ai-sdk/waits", json={"messages": [user("x")]}) as response,
        ):
            await read_until(response.aiter_lines(), [], "text-delta")
            run_id: str = response.headers["x-agentnb-run-id"]
        return run_id

    run_id = asyncio.run(main())
    server.wait_for(lambda: server.hub.get(run_id).status == "cancelled")


# -- questions ------------------------------------------------------------------------


def responded(message: dict[str, Any], approved: bool) -> dict[str, Any]:
    """*message* as useChat sends it back after ``addToolApprovalResponse``."""
    parts = []
    for part in message["parts"]:
        if part.get("state") == "approval-requested":
            approval = {**part["approval"], "approved": approved}
            part = {**part, "state": "approval-responded", "approval": approval}
        parts.append(part)
    return {**message, "parts": parts}


@pytest.mark.parametrize("approved", [True, False])
def test_tool_approval(server: Server, sent: dict[str, list[Event]], approved: bool) -> None:
    out = check_url(f"{server.base}/ai-sdk/deleter", "notes.txt")
    first = out["message"]
    run_id, _ = root_events(sent, first)
    assert out["types"][-2:] == ["tool-approval-request", "finish"]
    [tool] = [p for p in first["parts"] if p["type"] == "dynamic-tool"]
    assert tool["state"] == "approval-requested"
    assert tool["input"] == {"path": "notes.txt"}
    ask_id = tool["approval"]["id"]
    # The run waits for the answer; the first response's end did not cancel it.
    server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
    state = server.describe(run_id)
    assert state["status"] == "running"
    assert [q["ask_id"] for q in state["questions"]] == [ask_id]

    answer = responded(first, approved)
    body = {
        "id": "chat-1",
        "messages": [user("notes.txt"), answer],
        "trigger": "submit-message",
        "messageId": answer["id"],
    }
    response = httpx.post(f"{server.base}/ai-sdk/deleter", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    more = check_continuation(answer, response.text)
    assert more["types"][0] == "start"
    assert more["types"][-1] == "finish"
    message = more["message"]
    assert message["id"] == run_id
    events = sent[run_id]
    assert message_parts(message) == expected_parts(events, run_id)
    [tool] = [p for p in message["parts"] if p["type"] == "dynamic-tool"]
    assert tool["approval"]["approved"] is approved
    assert tool["state"] == ("output-available" if approved else "output-denied")
    answers = [e for e in events if isinstance(e, Answer)]
    value = "approve" if approved else "deny"
    assert [(a.ask_id, a.value, a.by) for a in answers] == [(ask_id, value, "http")]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result == ("deleted" if approved else "kept")
    text = "".join(p["text"] for p in message["parts"] if p["type"] == "text")
    assert text == "I will delete notes.txt." + ("Deleted notes.txt." if approved else "Kept it.")

    again = httpx.post(f"{server.base}/ai-sdk/deleter", json=body, timeout=10)
    assert again.status_code == 409, again.text
    assert ask_id in again.json()["message"]


def test_answered_approval_is_409(server: Server, sent: dict[str, list[Event]]) -> None:
    """An approval answered elsewhere meanwhile (the run still live) is refused."""
    out = check_url(f"{server.base}/ai-sdk/deleter", "a.txt")
    run_id, _ = root_events(sent, out["message"])
    [tool] = [p for p in out["message"]["parts"] if p["type"] == "dynamic-tool"]
    ask_id = tool["approval"]["id"]
    # Answered by the page, say; the run then streams on to anyone listening.
    sent_answer = httpx.post(
        f"{server.base}/api/runs/{run_id}/answer", json={"ask_id": ask_id, "value": "deny"}
    )
    assert sent_answer.status_code == 200
    server.wait_for(lambda: server.hub.get(run_id).status == "done")
    body = {"messages": [user("a.txt"), responded(out["message"], True)]}
    response = httpx.post(f"{server.base}/ai-sdk/deleter", json=body, timeout=10)
    assert response.status_code == 409, response.text


def test_unanswered_approval_times_out(sent: dict[str, list[Event]]) -> None:
    with served(create_app(agents=AGENTS, keep_seconds=0.2)) as server:
        out = check_url(f"{server.base}/ai-sdk/deleter", "b.txt")
        run_id, _ = root_events(sent, out["message"])
        served_run = server.call(lambda: server.hub.get(run_id))  # (forgotten soon after)
        server.wait_for(lambda: served_run.status == "cancelled")
    cancelled = sent[run_id][-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert "no answer to the tool approval" in cancelled.reason


def test_free_question(server: Server, sent: dict[str, list[Event]]) -> None:
    """A question gating no tool call: a data-ask part, answered over /api, the stream stays."""

    async def main() -> str:
        async with (
            server.client() as client,
            client.stream("POST", "/ai-sdk/greeter", json={"messages": [user("x")]}) as response,
        ):
            run_id = response.headers["x-agentnb-run-id"]
            raw: list[str] = []
            lines = response.aiter_lines()
            await read_until(lines, raw, "data-ask")
            ask = json.loads(raw[-1][6:])
            assert ask["data"] == {"prompt": "Your name?", "choices": None, "default": None}
            answer = json.dumps({"ask_id": ask["id"], "value": ANSWER})
            answered = await client.post(
                f"/api/runs/{run_id}/answer",
                content=answer,
                headers={"content-type": "application/json"},
            )
            assert answered.status_code == 200, answered.text
            raw += [line + "\n" async for line in lines]
            return "".join(raw)

    out = check_body(asyncio.run(main()))
    run_id, events = root_events(sent, out["message"])
    parts = message_parts(out["message"])
    assert parts == expected_parts(events, run_id)
    assert [p[0] for p in parts] == ["text", "data-ask", "data-answer", "text"]
    assert parts[2][2] == {"value": ANSWER, "by": "http"}
    assert parts[3] == ["text", f"Hi {ANSWER}."]


# -- bad requests -----------------------------------------------------------------------

TOOL_PART = {"type": "dynamic-tool", "toolName": "t", "toolCallId": "c", "input": {}}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ([], "the request body must be a JSON object"),
        ({}, '"messages"'),
        ({"messages": "hi"}, '"messages" must be an array'),
        ({"messages": []}, '"messages" is empty'),
        ({"messages": [user("x")], "trigger": "go"}, '"trigger"'),
        ({"messages": [user("x")], "messageId": 5}, '"messageId"'),
        ({"messages": [5]}, '"messages[0]"'),
        ({"messages": [{"role": "bot", "parts": []}]}, '"messages[0].role"'),
        ({"messages": [{"role": "user"}]}, '"messages[0].parts"'),
        ({"messages": [{"role": "user", "parts": [{"text": "x"}]}]}, '"messages[0].parts[0]"'),
        (
            {"messages": [{"role": "user", "parts": [{"type": "text", "text": 5}]}]},
            '"messages[0].parts[0].text"',
        ),
        ({"messages": [{"role": "user", "parts": [{"type": "file"}]}]}, '"messages[0].parts"'),
        (
            {
                "messages": [
                    user("x"),
                    {"role": "assistant", "parts": [{"type": "text", "text": "y"}]},
                ]
            },
            '"messages[1]"',
        ),
        (
            {
                "messages": [
                    user("x"),
                    {
                        "role": "assistant",
                        "parts": [
                            {**TOOL_PART, "state": "approval-responded", "approval": {"id": "a"}}
                        ],
                    },
                ]
            },
            '"messages[1].parts[0].approval.approved"',
        ),
        (
            {
                "messages": [
                    user("x"),
                    {"role": "assistant", "parts": [{**TOOL_PART, "state": "approval-responded"}]},
                ]
            },
            '"messages[1].parts[0].approval"',
        ),
    ],
)
def test_bad_body_is_422_naming_the_field(server: Server, body: Any, names: str) -> None:
    before = set(server.live())
    response = httpx.post(f"{server.base}/ai-sdk/poet", json=body, timeout=10)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "bad_request"
    assert names in error["message"], error
    assert set(server.live()) <= before  # no run started


def test_other_refusals(server: Server) -> None:
    body = {"messages": [user("x")]}
    unknown = httpx.post(f"{server.base}/ai-sdk/nobody", json=body, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_agent"
    not_json = httpx.post(
        f"{server.base}/ai-sdk/poet",
        content=b"{",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "bad_json"
    approval = {
        "id": "m",
        "role": "assistant",
        "parts": [
            {
                **TOOL_PART,
                "state": "approval-responded",
                "approval": {"id": "nope", "approved": True},
            }
        ],
    }
    stale = httpx.post(
        f"{server.base}/ai-sdk/poet", json={"messages": [user("x"), approval]}, timeout=10
    )
    assert stale.status_code == 409
    assert "'nope'" in stale.json()["message"]
