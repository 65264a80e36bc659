"""AG-UI out: ``POST /ag-ui/{agent}`` answers AG-UI 1.0 events over SSE.

Real uvicorn and httpx; every stream is checked by ag-ui-validate (no error, no warning)
and consumed by the official TypeScript client (``@ag-ui/client`` run by node through
``tests/node/check_agui.mjs``), and what that client assembled is compared with the
agentnb events the served run sent. The human in the loop: a question ends the response
with the interrupt outcome, the run waits, and a POST with ``resume`` answers it and
streams the same run on, exactly once.
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
from ag_ui_validate.pytest_plugin import assert_valid_agui, validate_agui

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
    emit,
)
from agentnb.server import create_app
from harness import ROOT
from tests.server.served import Server, served

CHECKER = ROOT / "tests/node/check_agui.mjs"
TERMINAL = {"RUN_FINISHED", "RUN_ERROR"}
HOSTILE = "</script><img src=x onerror=alert(1)>\x00\x07\x1b[31m\r\n\u2028\u2029 \"'\\ é 𝄞"


# -- agents ---------------------------------------------------------------------


async def helper(notes: str = "") -> str:
    """A sub-run: status, a tool call, usage, text."""
    emit(Status("helping"))
    call = ToolCall("look_up", {"term": notes})
    emit(call)
    emit(ToolResult("look_up", ["a", "b"], call_id=call.call_id))
    emit(Usage(1, 2, model="m1", provider="p"))
    emit(TextChunk("helped with "))
    emit(TextChunk(notes))
    return "helped"


async def everything(topic: str = "x") -> str:
    """Emits every kind of event: streamed and whole tool calls, reasoning, a sub-run, ..."""
    emit(Status("thinking"))
    emit(StepStart("model", "s1"))
    emit(MessageStart("msg1"))
    emit(Reasoning("Let me ", message_id="msg1"))
    emit(Reasoning("think.", message_id="msg1", signature="sig=="))
    emit(TextChunk("I will ", message_id="msg1"))
    emit(TextChunk("call add.", message_id="msg1"))
    emit(ToolCallStart("add", "c1", message_id="msg1"))
    emit(ToolCallDelta("c1", '{"a": 1,'))
    emit(ToolCallDelta("c1", ' "b": 2}'))
    emit(ToolCallEnd("c1"))
    emit(ToolCall("add", {"a": 1, "b": 2}, call_id="c1"))
    emit(MessageEnd("msg1", "tool_calls"))
    emit(Usage(10, 5, model="m1", provider="p", cached_tokens=4))
    emit(StepEnd("model", "s1"))
    emit(ToolResult("add", 3, call_id="c1"))
    emit(ToolCall("div", {"a": 1, "b": 0}, call_id="c2"))
    emit(ToolResult("div", "division by zero", call_id="c2", is_error=True))
    emit(ToolCall("rm", {"path": "/"}, call_id="c3"))
    emit(ToolResult("rm", "not allowed", call_id="c3", denied=True))
    emit(StateSnapshot({"count": 1, "items": []}))
    emit(StateDelta([{"op": "replace", "path": "/count", "value": 2}]))
    emit(Raw("test", {"native": True}))
    emit(Custom("progress", {"done": 1, "of": 2}))
    await agentnb.run(helper, topic)
    emit(StepStart("answer"))
    emit(Usage(3, 4, model="m2", provider="p", reasoning_tokens=1))
    emit(MessageStart("msg2"))
    emit(TextChunk("The answer ", message_id="msg2"))
    emit(TextChunk("is 3.", message_id="msg2"))
    emit(MessageEnd("msg2"))
    emit(StepEnd("answer"))
    return "3"


async def slow(_text: str = "") -> str:
    """Keeps a step, a tool call and a text message open while it runs (to be cancelled)."""
    emit(StepStart("work"))
    emit(ToolCallStart("search", "s1"))
    emit(ToolCallDelta("s1", '{"q": "x"}'))
    for i in range(3000):
        emit(f"tick {i} ")
        await asyncio.sleep(0.01)
    return "never"


async def deleter(path: str = "build") -> str:
    """Asks to approve a tool call (approve with its call_id), then runs it or not."""
    call = ToolCall("delete", {"path": path})
    emit(call)
    if await agentnb.approve("delete", {"path": path}, call_id=call.call_id):
        emit(ToolResult("delete", f"deleted {path}", call_id=call.call_id))
        emit("Done.")
        return "deleted"
    emit(ToolResult("delete", "the person said no", call_id=call.call_id, denied=True))
    return "kept"


async def greeter(_text: str = "") -> str:
    """Asks a free-text question."""
    emit("Hello! ")
    name = await agentnb.ask("What is your name?")
    emit(f"Nice to meet you, {name}.")
    return name


async def picker(_text: str = "") -> str:
    """Asks a choice with a default, in a sub-run."""

    async def chooser() -> str:
        emit("choosing ")
        return await agentnb.ask("Which colour?", choices=["red", "green"], default="green")

    colour: str = await agentnb.run(chooser, name="chooser")
    emit(f"picked {colour}")
    return colour


async def echo(text: str = "") -> str:
    """Puts its input everywhere: text, tool arguments and result, status, custom, state."""
    emit(Status(text))
    emit(text)
    call = ToolCall("echo", {"q": text})
    emit(call)
    emit(ToolResult("echo", {"echo": text}, call_id=call.call_id))
    emit(Custom("echo", {"text": text}))
    emit(StateSnapshot({"text": text}))
    return text


async def cut_off(_text: str = "") -> str:
    """A streamed tool call whose arguments broke off (its end says why)."""
    emit(ToolCallStart("fetch", "c1"))
    emit(ToolCallDelta("c1", '{"url": '))
    emit(ToolCallEnd("c1", error="the stream broke off"))
    emit("Sorry.")
    return "sorry"


async def request_info(_text: str = "") -> dict[str, Any]:
    """Returns what the request told the run (``Run.metadata["agui"]``)."""
    info = agentnb.current_run().metadata["agui"]
    return {key: info[key] for key in ("thread_id", "run_id", "state", "forwarded_props")}


AGENTS: list[Any] = [
    demo.poet,
    demo.researcher,
    demo.counter,
    demo.flaky,
    everything,
    slow,
    deleter,
    greeter,
    picker,
    echo,
    cut_off,
    request_info,
]
DEMO_INPUTS = {"poet": "the sea", "researcher": "why is the sea salty?", "counter": "3"}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTNB_DEMO_SPEED", "0")
        with served(create_app(agents=AGENTS)) as server:
            yield server


# -- helpers --------------------------------------------------------------------


def run_input(text: str | None = "hi", **more: Any) -> dict[str, Any]:
    messages = [] if text is None else [{"id": "u1", "role": "user", "content": text}]
    body: dict[str, Any] = {
        "threadId": "thread-1",
        "runId": "run-1",
        "protocolVersion": "1.0",
        "messages": messages,
        "state": {},
        "tools": [],
        "context": [],
        "forwardedProps": {},
    }
    return body | more


def frames(raw: bytes) -> list[dict[str, Any]]:
    """The events of an AG-UI body, checking its framing: ``data: {json}`` and LF only."""
    assert b"\r" not in raw, "AG-UI frames end lines with LF only (the TS client reads no CRLF)"
    assert raw.endswith(b"\n\n"), raw[-80:]
    events = []
    for frame in raw.decode().split("\n\n")[:-1]:
        if frame.startswith(":"):  # a keep-alive comment
            continue
        assert frame.startswith("data: "), f"not a data line: {frame!r}"
        assert "\n" not in frame, f"not one data line: {frame!r}"
        event = json.loads(frame.removeprefix("data: "))
        assert isinstance(event, dict)
        events.append(event)
    return events


def check(events: list[dict[str, Any]]) -> None:
    """A conformant AG-UI run: no error or warning, events, one terminal event, last."""
    assert_valid_agui(events, max_warnings=0)
    assert validate_agui(events).event_count > 0
    assert events, "no events"
    assert events[0]["type"] == "RUN_STARTED"
    ends = [i for i, e in enumerate(events) if e["type"] in TERMINAL]
    assert ends == [len(events) - 1], f"terminal events at {ends} of {len(events)}"


async def post(
    client: httpx.AsyncClient, agent: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    # Encoded here: json.dumps escapes a lone surrogate, which httpx's json= would refuse.
    headers = {"content-type": "application/json"}
    url = f"/ag-ui/{agent}"
    async with client.stream("POST", url, content=json.dumps(body), headers=headers) as response:
        raw = await response.aread()
    if response.status_code != 200:
        return response, []
    assert response.headers["content-type"].startswith("text/event-stream")
    events = frames(raw)
    check(events)
    assert events[0]["metadata"]["agentnb"]["run_id"] == response.headers["x-agentnb-run-id"]
    return response, events


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: the AG-UI tests run the official TypeScript client")
    return found


def ts_client(url: str, text: str = "hi", resume: Any = None) -> dict[str, Any]:
    """Run ``@ag-ui/client`` on *url*; what it assembled (it must accept the stream)."""
    command = [node(), str(CHECKER), "--url", url, "--input", json.dumps({"text": text})]
    if resume is not None:
        command += ["--resume", json.dumps(resume)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"the TS client refused the stream: {done.stdout} {done.stderr}"
    out: dict[str, Any] = json.loads(done.stdout)
    assert out["events"] > 0, out
    assert out["failure"] is None, out
    return out


def one_new_run(sent: dict[str, list[Event]], before: set[str]) -> list[Event]:
    new = set(sent) - before
    assert len(new) == 1, f"expected one new run, got {new}"
    return sent[new.pop()]


def content(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


# What the mapping says: these end the (sub-)agent's open text message.
_ENDS_TEXT = (MessageStart, MessageEnd, Reasoning, ToolCallStart, ToolResult, StepStart, StepEnd)


def text_messages(events: list[Event]) -> list[str]:
    """The text of each assistant message the events make, in order."""
    out: list[str] = []
    open_key: tuple[str, str] | None = None
    streamed = {e.call_id for e in events if isinstance(e, ToolCallStart)}
    for e in events:
        if isinstance(e, TextChunk) and e.text:
            key = (e.run_id, e.message_id)
            if open_key is None or open_key[0] != e.run_id or (e.message_id and key != open_key):
                out.append("")
                open_key = key
            out[-1] += e.text
        elif (
            isinstance(e, _ENDS_TEXT)
            or e.terminal
            or (open_key and e.run_id != open_key[0])
            or (isinstance(e, ToolCall) and e.call_id not in streamed)
        ):
            open_key = None
    return out


def customs(events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in events:
        if isinstance(e, Status):
            out.append({"name": "agentnb:status", "value": e.message})
        elif isinstance(e, Usage):
            out.append({"name": "agentnb:usage", "value": e.payload()})
        elif isinstance(e, Answer):
            value = {"ask_id": e.ask_id, "value": e.value, "by": e.by}
            out.append({"name": "agentnb:answer", "value": value})
        elif type(e) is Custom:
            out.append({"name": e.name, "value": e.data})
    return out


def compare(out: dict[str, Any], events: list[Event]) -> None:
    """What the TS client assembled equals what the agentnb events say."""
    messages = out["messages"]
    assistant = [m for m in messages if m["role"] == "assistant"]
    texts = [m["content"] for m in assistant if m.get("content")]
    assert texts == text_messages(events)
    calls = {
        c["id"]: (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for m in assistant
        for c in m.get("toolCalls", [])
    }
    assert calls == {e.call_id: (e.name, e.args) for e in events if isinstance(e, ToolCall)}
    results = {
        m["toolCallId"]: (m["content"], m.get("metadata", {}).get("agentnb", {}))
        for m in messages
        if m["role"] == "tool"
    }
    flags: dict[str, dict[str, Any]] = {
        e.call_id: {k: True for k in ("is_error", "denied") if getattr(e, k)}
        for e in events
        if isinstance(e, ToolResult)
    }
    for e in events:  # a result that is not text rides along as its JSON value
        if isinstance(e, ToolResult) and not isinstance(e.result, str):
            flags[e.call_id]["result"] = e.result
    assert results == {
        e.call_id: (content(e.result), flags[e.call_id])
        for e in events
        if isinstance(e, ToolResult)
    }
    assert out["custom"] == customs(events)
    end = events[-1]
    if isinstance(end, Done):
        assert out["outcome"] == "success"
        assert out["result"] == end.result
    elif isinstance(end, Error):
        assert out["runError"] == {"message": end.message, "code": end.type}
    children = {e.run_id: e.path[-1] for e in events if e.run_id != events[0].run_id}
    assert sorted(s[1] for s in out["subagents"] if s[0] == "started") == sorted(children)
    for run_id, name in children.items():
        ends = [e for e in events if e.run_id == run_id and e.terminal]
        assert ["started", run_id, name] in out["subagents"]
        if isinstance(ends[0], Done):
            assert ["finished", run_id, "success"] in out["subagents"]


# -- every demo agent, and every kind of event ----------------------------------


@pytest.mark.parametrize("agent", ["poet", "researcher", "counter", "flaky"])
async def test_a_demo_agent_streams_valid_agui(
    server: Server, sent: dict[str, list[Event]], agent: str
) -> None:
    text = DEMO_INPUTS.get(agent, "please fail")
    async with server.client() as client:
        response, events = await post(client, agent, run_input(text))
    agentnb_events = sent[response.headers["x-agentnb-run-id"]]
    if agent == "flaky":
        assert events[-1]["type"] == "RUN_ERROR"
        assert events[-1]["code"] == "RuntimeError"
    else:
        assert events[-1]["outcome"] == {"type": "success"}
        assert events[-1]["result"] == agentnb_events[-1].to_dict()["result"]
    if agent == "researcher":
        types = [e["type"] for e in events]
        assert types.count("SUBAGENT_STARTED") == types.count("SUBAGENT_FINISHED") == 1
    before = set(sent)
    out = ts_client(f"{server.base}/ag-ui/{agent}", text)
    compare(out, one_new_run(sent, before))


async def test_every_kind_of_event_maps_to_agui(
    server: Server, sent: dict[str, list[Event]]
) -> None:
    async with server.client() as client:
        response, events = await post(client, "everything", run_input("notes"))
    assert sent[response.headers["x-agentnb-run-id"]][-1].kind == "done"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    assert [e["messageId"] for e in by_type["TEXT_MESSAGE_START"] if "subagentRunId" not in e] == [
        "msg1",
        "msg2",
    ]
    assert by_type["REASONING_START"][0]["messageId"] == "r-msg1"
    assert [e["delta"] for e in by_type["REASONING_MESSAGE_CONTENT"]] == ["Let me ", "think."]
    assert by_type["REASONING_ENCRYPTED_VALUE"] == [
        {
            "type": "REASONING_ENCRYPTED_VALUE",
            "timestamp": by_type["REASONING_ENCRYPTED_VALUE"][0]["timestamp"],
            "subtype": "message",
            "entityId": "r-msg1",
            "encryptedValue": "sig==",
        }
    ]
    assert [e["delta"] for e in by_type["TOOL_CALL_ARGS"] if e["toolCallId"] == "c1"] == [
        '{"a": 1,',
        ' "b": 2}',
    ]
    assert by_type["TOOL_CALL_START"][0]["parentMessageId"] == "msg1"
    assert [e["stepName"] for e in by_type["STEP_STARTED"]] == ["model", "answer"]
    assert by_type["STATE_SNAPSHOT"][0]["snapshot"] == {"count": 1, "items": []}
    assert [(e["source"], e["event"]) for e in by_type["RAW"]] == [("test", {"native": True})]
    finished = events[-1]
    m1 = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18, "cachedInputTokens": 4}
    m2 = {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7, "reasoningTokens": 1}
    assert finished["usage"] == [
        {"provider": "p", "model": "m1", **m1},
        {"provider": "p", "model": "m2", **m2},
    ]
    (child,) = by_type["SUBAGENT_STARTED"]
    assert child["name"] == "helper"
    assert all(
        e.get("subagentRunId") == child["subagentRunId"]
        for e in events[events.index(child) + 1 : events.index(by_type["SUBAGENT_FINISHED"][0])]
    )

    before = set(sent)
    out = ts_client(f"{server.base}/ag-ui/everything", "notes")
    agentnb_events = one_new_run(sent, before)
    compare(out, agentnb_events)
    assert out["state"] == {"count": 2, "items": []}
    steps = [["start", "model"], ["end", "model"], ["start", "answer"], ["end", "answer"]]
    assert out["steps"] == steps
    messages = {m["id"]: m for m in out["messages"]}
    assert messages["msg1"]["content"] == "I will call add."
    assert [c["id"] for c in messages["msg1"]["toolCalls"]] == ["c1"]
    assert messages["msg2"]["content"] == "The answer is 3."
    reasoning = [m for m in out["messages"] if m["role"] == "reasoning"]
    assert [m["content"] for m in reasoning] == ["Let me think."]
    assert out["usage"] == finished["usage"]


async def test_text_of_the_agent_is_data_in_every_field(
    server: Server, sent: dict[str, list[Event]]
) -> None:
    async with server.client() as client:
        _, events = await post(client, "echo", run_input(HOSTILE))
    assert "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT") == HOSTILE
    (args,) = [e["delta"] for e in events if e["type"] == "TOOL_CALL_ARGS"]
    assert json.loads(args) == {"q": HOSTILE}
    (result,) = [e["content"] for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert json.loads(result) == {"echo": HOSTILE}
    custom = {e["name"]: e["value"] for e in events if e["type"] == "CUSTOM"}
    assert custom == {"agentnb:status": HOSTILE, "echo": {"text": HOSTILE}}
    assert [e["snapshot"] for e in events if e["type"] == "STATE_SNAPSHOT"] == [{"text": HOSTILE}]
    assert events[-1]["result"] == HOSTILE

    before = set(sent)
    out = ts_client(f"{server.base}/ag-ui/echo", HOSTILE)
    compare(out, one_new_run(sent, before))
    assert out["messages"][0]["content"] == HOSTILE
    assert out["state"] == {"text": HOSTILE}


async def test_arguments_that_broke_off_are_the_one_finding(server: Server) -> None:
    """Arguments already sent cannot be taken back: the end says they broke off, and
    ag-ui-validate's only finding is AGUI204 (they do not parse)."""
    async with server.client() as client:
        response = await client.post("/ag-ui/cut_off", json=run_input())
    events = frames(response.content)
    report = validate_agui(events)
    assert [(d.rule, d.severity) for d in report.diagnostics] == [("AGUI204", "error")]
    (end,) = [e for e in events if e["type"] == "TOOL_CALL_END"]
    assert end["metadata"] == {"agentnb": {"error": "the stream broke off"}}
    assert events[-1]["outcome"] == {"type": "success"}
    out = ts_client(f"{server.base}/ag-ui/cut_off")
    assert out["outcome"] == "success"


async def test_a_lone_surrogate_goes_out_escaped(server: Server) -> None:
    text = "half \ud800 a pair"
    async with server.client() as client:
        _, events = await post(client, "echo", run_input(text))
    assert events[-1]["result"] == text


async def test_the_request_reaches_the_agent_as_run_metadata(server: Server) -> None:
    body = run_input("x", threadId="t-9", runId="r-9", state={"n": 1}, forwardedProps={"k": [1]})
    async with server.client() as client:
        _, events = await post(client, "request_info", body)
    assert (events[0]["threadId"], events[0]["runId"]) == ("t-9", "r-9")
    assert events[-1]["result"] == {
        "thread_id": "t-9",
        "run_id": "r-9",
        "state": {"n": 1},
        "forwarded_props": {"k": [1]},
    }


# -- cancel and disconnect ------------------------------------------------------


async def test_a_cancel_ends_what_is_open_and_the_run_cancelled(server: Server) -> None:
    async with (
        server.client() as client,
        client.stream("POST", "/ag-ui/slow", json=run_input()) as response,
    ):
        run_id = response.headers["x-agentnb-run-id"]
        raw = b""
        chunks = response.aiter_raw()
        while raw.count(b"TEXT_MESSAGE_CONTENT") < 3:
            raw += await anext(chunks)
        cancel = await client.post(f"/api/runs/{run_id}/cancel")
        assert cancel.status_code == 200
        async for chunk in chunks:
            raw += chunk
    events = frames(raw)
    check(events)
    assert events[-1]["outcome"] == {"type": "cancelled"}
    types = [e["type"] for e in events]
    assert types[-4:] == ["TEXT_MESSAGE_END", "TOOL_CALL_END", "STEP_FINISHED", "RUN_FINISHED"]
    assert server.describe(run_id)["status"] == "cancelled"


def test_the_ts_client_reads_a_cancelled_run(server: Server) -> None:
    def slow_run() -> str | None:
        live = [s for s in server.hub.live if s.agent == "slow" and s.count > 5]
        return live[0].id if live else None

    command = [node(), str(CHECKER), "--url", f"{server.base}/ag-ui/slow"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as reading:
        try:
            server.wait_for(lambda: slow_run() is not None, timeout=20)
            run_id = server.call(slow_run)
            cancel = httpx.post(f"{server.base}/api/runs/{run_id}/cancel", timeout=10)
            assert cancel.status_code == 200
            stdout, stderr = reading.communicate(timeout=60)
        finally:
            reading.kill()
    assert reading.returncode == 0, f"the TS client refused the stream: {stdout!r} {stderr!r}"
    out = json.loads(stdout)
    assert out["outcome"] == "cancelled"
    assert out["failure"] is None


async def test_a_client_that_disconnects_cancels_the_run(server: Server) -> None:
    async with server.client() as client:
        async with client.stream("POST", "/ag-ui/slow", json=run_input()) as response:
            run_id = response.headers["x-agentnb-run-id"]
            async for chunk in response.aiter_raw():
                if b"TEXT_MESSAGE_CONTENT" in chunk:
                    break
        server.wait_for(lambda: server.hub.get(run_id).status == "cancelled")
    assert server.describe(run_id)["listeners"] == 0


# -- the human in the loop ------------------------------------------------------


def asked(events: list[Event]) -> list[Ask]:
    return [e for e in events if isinstance(e, Ask)]


def answered(events: list[Event]) -> list[Answer]:
    return [e for e in events if isinstance(e, Answer)]


async def test_an_approval_is_an_interrupt_resumed_by_the_ts_client(
    server: Server, sent: dict[str, list[Event]]
) -> None:
    async with server.client() as client:
        response, events = await post(client, "deleter", run_input("build/x"))
        run_id = response.headers["x-agentnb-run-id"]
        (ask,) = asked(sent[run_id])
        (call,) = [e for e in sent[run_id] if isinstance(e, ToolCall)]
        finished = events[-1]
        assert finished["type"] == "RUN_FINISHED"
        assert finished["outcome"] == {
            "type": "interrupt",
            "interrupts": [
                {
                    "id": ask.ask_id,
                    "reason": "tool_call",
                    "message": 'Run delete(path="build/x")?',
                    "toolCallId": call.call_id,
                    "responseSchema": {
                        "type": "object",
                        "properties": {
                            "approved": {"type": "boolean"},
                            "reason": {"type": "string"},
                        },
                        "required": ["approved"],
                    },
                    "metadata": {
                        "agentnb": {
                            "choices": ["approve", "deny"],
                            "default": None,
                            "run_id": run_id,
                            "path": ["deleter"],
                        }
                    },
                }
            ],
        }
        # The response ended, the run waits for the resume (no disconnect cancel).
        described = server.describe(run_id)
        assert described["status"] == "running"
        assert [q["ask_id"] for q in described["questions"]] == [ask.ask_id]

        resume = [{"interruptId": ask.ask_id, "status": "resolved", "payload": {"approved": True}}]
        out = ts_client(f"{server.base}/ag-ui/deleter", resume=resume)
        assert out["outcome"] == "success"
        assert out["result"] == "deleted"
        tool = [m for m in out["messages"] if m["role"] == "tool"]
        assert [(m["toolCallId"], m["content"]) for m in tool] == [
            (call.call_id, "deleted build/x")
        ]
        answer = {"ask_id": ask.ask_id, "value": "approve", "by": "http"}
        assert {"name": "agentnb:answer", "value": answer} in out["custom"]
        server.wait_for(lambda: server.hub.get(run_id).ended)
        assert [(a.ask_id, a.value, a.by) for a in answered(sent[run_id])] == [
            (ask.ask_id, "approve", "http")
        ]

        again = await client.post("/ag-ui/deleter", json=run_input(resume=resume))
        assert again.status_code == 409
        assert again.json()["error"] == "answered"
        unknown = [{"interruptId": "nope", "status": "resolved", "payload": {"approved": True}}]
        missing = await client.post("/ag-ui/deleter", json=run_input(resume=unknown))
        assert missing.status_code == 409
        assert missing.json()["error"] == "unknown_interrupt"
        assert "nope" in missing.json()["message"]


async def test_a_denial_resumed_with_httpx(server: Server, sent: dict[str, list[Event]]) -> None:
    async with server.client() as client:
        response, events = await post(client, "deleter", run_input("src"))
        run_id = response.headers["x-agentnb-run-id"]
        interrupt_id = events[-1]["outcome"]["interrupts"][0]["id"]
        resume = [
            {"interruptId": interrupt_id, "status": "resolved", "payload": {"approved": False}}
        ]
        response, events = await post(client, "deleter", run_input(runId="run-2", resume=resume))
    assert response.headers["x-agentnb-run-id"] == run_id
    assert events[0]["runId"] == "run-2"
    results = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert [(e["content"], e["metadata"]) for e in results] == [
        ("the person said no", {"agentnb": {"denied": True}})
    ]
    assert events[-1]["outcome"] == {"type": "success"}
    assert events[-1]["result"] == "kept"
    assert [(a.value, a.by) for a in answered(sent[run_id])] == [("deny", "http")]


async def test_a_free_text_question_resumed_with_httpx(
    server: Server, sent: dict[str, list[Event]]
) -> None:
    async with server.client() as client:
        response, events = await post(client, "greeter", run_input())
        run_id = response.headers["x-agentnb-run-id"]
        (interrupt,) = events[-1]["outcome"]["interrupts"]
        assert interrupt["reason"] == "input_required"
        assert "toolCallId" not in interrupt
        assert interrupt["message"] == "What is your name?"
        assert interrupt["responseSchema"] == {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        }
        types = [e["type"] for e in events]
        assert types[-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]

        resume = [
            {"interruptId": interrupt["id"], "status": "resolved", "payload": {"answer": HOSTILE}}
        ]
        _, events = await post(client, "greeter", run_input(resume=resume))
    assert [e["type"] for e in events[:2]] == ["RUN_STARTED", "CUSTOM"]
    assert events[1]["value"] == {"ask_id": interrupt["id"], "value": HOSTILE, "by": "http"}
    text = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert text == f"Nice to meet you, {HOSTILE}."
    assert events[-1]["result"] == HOSTILE
    assert [(a.value, a.by) for a in answered(sent[run_id])] == [(HOSTILE, "http")]


async def test_a_sub_runs_question_and_what_a_resume_may_not_say(
    server: Server, sent: dict[str, list[Event]]
) -> None:
    async with server.client() as client:
        response, events = await post(client, "picker", run_input())
        run_id = response.headers["x-agentnb-run-id"]
        (interrupt,) = events[-1]["outcome"]["interrupts"]
        child = interrupt["subagentRunId"]
        assert interrupt["responseSchema"]["properties"]["answer"]["enum"] == ["red", "green"]
        assert interrupt["metadata"]["agentnb"]["default"] == "green"
        suspended = [e for e in events if e["type"] == "SUBAGENT_FINISHED"]
        assert [e["outcome"] for e in suspended] == [
            {"type": "suspended", "interruptIds": [interrupt["id"]]}
        ]

        def resume(payload: Any, status: str = "resolved") -> dict[str, Any]:
            entry = {"interruptId": interrupt["id"], "status": status, "payload": payload}
            return run_input(resume=[entry])

        not_a_choice = await client.post("/ag-ui/picker", json=resume({"answer": "blue"}))
        assert not_a_choice.status_code == 422
        assert not_a_choice.json()["error"] == "invalid_answer"
        assert "resume.0.payload.answer" in not_a_choice.json()["message"]
        for payload, field in (({"colour": "red"}, "resume.0.payload"), ({"answer": 3}, "answer")):
            bad = await client.post("/ag-ui/picker", json=resume(payload))
            assert bad.status_code == 422
            assert field in bad.json()["message"]
        elsewhere = await client.post("/ag-ui/greeter", json=resume({"answer": "red"}))
        assert elsewhere.status_code == 409
        assert "/ag-ui/picker" in elsewhere.json()["message"]
        assert [q["ask_id"] for q in server.describe(run_id)["questions"]] == [interrupt["id"]]

        # Cancelled: the question's default answers it.
        _, events = await post(client, "picker", resume(None, "cancelled"))
    assert events[1]["type"] == "SUBAGENT_STARTED"
    assert events[1]["subagentRunId"] == child
    assert events[-1]["result"] == "green"
    assert [(a.value, a.by) for a in answered(sent[run_id])] == [("green", "default")]


async def test_a_cancelled_interrupt_without_a_default_cancels_the_run(server: Server) -> None:
    async with server.client() as client:
        response, events = await post(client, "greeter", run_input())
        run_id = response.headers["x-agentnb-run-id"]
        interrupt_id = events[-1]["outcome"]["interrupts"][0]["id"]
        entry = {"interruptId": interrupt_id, "status": "cancelled"}
        _, events = await post(client, "greeter", run_input(resume=[entry]))
    assert events[-1]["outcome"] == {"type": "cancelled"}
    assert server.describe(run_id)["status"] == "cancelled"


async def test_a_run_nobody_resumes_is_cancelled_after_keep_seconds() -> None:
    with served(create_app(agents=[greeter], keep_seconds=0.5)) as server:
        async with server.client() as client:
            response, events = await post(client, "greeter", run_input())
        run_id = response.headers["x-agentnb-run-id"]
        assert events[-1]["outcome"]["type"] == "interrupt"
        served_run = server.call(lambda: server.hub.get(run_id))  # (forgotten soon after)
        server.wait_for(lambda: served_run.status == "cancelled")


# -- bad requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"runId": "r", "messages": []}, "threadId"),
        ({"threadId": "t", "runId": "r", "messages": [{"id": "u", "role": "user"}]}, "content"),
        ({"threadId": "t", "runId": "r", "messages": "hi"}, "messages"),
        ({"threadId": 1, "runId": "r", "messages": []}, "threadId"),
        (["not", "an", "object"], "RunAgentInput"),
        (run_input(resume=[{"interruptId": "x"}]), "resume.0.status"),
    ],
)
async def test_a_malformed_run_agent_input_is_a_422_naming_the_field(
    server: Server, body: Any, named: str
) -> None:
    async with server.client() as client:
        response = await client.post("/ag-ui/poet", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "bad_request"
    assert named in response.json()["message"]
    assert server.live() == []


async def test_an_unknown_agent_is_a_404(server: Server) -> None:
    async with server.client() as client:
        response = await client.post("/ag-ui/nobody", json=run_input())
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_agent"


async def test_without_a_user_message_the_agent_gets_no_input(server: Server) -> None:
    async with server.client() as client:
        _, events = await post(client, "counter", run_input(None))
    assert events[-1]["result"] == 5  # counter's default
