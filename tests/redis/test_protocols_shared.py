"""AG-UI and the AI SDK's UI message stream on server processes sharing one Redis.

Two uvicorn server processes (``tests/redis/worker_app.py``'s ``serve_protocols``) on a
real redis-server, and a real worker process (``python -m agentnb worker``) for the
workers' agents; real httpx clients. A question ends a response on one process, its
answer goes to the other, which streams the rest of the run from the store. Every
AG-UI body is checked by ag-ui-validate and read by the official TypeScript client
(``@ag-ui/client``, ``tests/node/check_agui.mjs``); every UI message stream by the
``ai`` package (``tests/node/check_ui_stream.mjs``), and the message it assembled is
compared with the run's events as the store holds them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis

import agentnb
from agentnb import Answer, Cancelled, Done
from harness import ROOT
from harness.redis import RedisServer, redis_server
from harness.web import ServerProcess
from tests.redis.worker_app import LEASE_VARIABLE, URL_VARIABLE
from tests.server.served import check_frames, open_stream
from tests.server.test_agui_out import CHECKER as AGUI_CHECKER
from tests.server.test_agui_out import check, frames, node, run_input, ts_client
from tests.server.test_ai_sdk_out import (
    check_continuation,
    check_url,
    expected_parts,
    message_parts,
    responded,
    user,
)

LEASE = 5.0  # seconds
KEEP_VARIABLE = "AGENTNB_TEST_KEEP_SECONDS"
SERVE = ["-c", "from tests.redis.worker_app import serve_protocols; serve_protocols()"]


@pytest.fixture(scope="module")
def store() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


def server_process(url: str, keep_seconds: float = 300.0) -> ServerProcess:
    names = (URL_VARIABLE, LEASE_VARIABLE, KEEP_VARIABLE)
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(
        {URL_VARIABLE: url, LEASE_VARIABLE: str(LEASE), KEEP_VARIABLE: str(keep_seconds)}
    )
    try:
        return ServerProcess(SERVE)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def servers(store: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a, b = server_process(store.url), server_process(store.url)
    try:
        yield a, b
    finally:
        for server in (a, b):
            server.close()


class Worker:
    """A ``python -m agentnb worker`` process of the protocol agents, live once it offers them."""

    def __init__(self, url: str) -> None:
        argv = ["-m", "agentnb", "worker", "--redis", url, "--lease", str(LEASE)]
        argv += ["--app", "tests.redis.worker_app:protocol_agents", "--log-level", "warning"]
        self.proc = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        with redis.Redis.from_url(url) as client:
            deadline = time.monotonic() + 30
            while not all(client.scard(f"agentnb:offers:{a}") for a in ("vetted", "chosen")):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start: {self.stop()}")
                time.sleep(0.02)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def worker(store: RedisServer, servers: object) -> Iterator[Worker]:
    started = Worker(store.url)
    try:
        yield started
    finally:
        started.stop()


def base(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def clients(
    servers: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=base(servers[0]), timeout=30) as a,
        httpx.AsyncClient(base_url=base(servers[1]), timeout=30) as b,
    ):
        yield a, b


# -- helpers --------------------------------------------------------------------


def ts_read(raw: bytes) -> dict[str, Any]:
    """What ``@ag-ui/client`` assembled from a recorded AG-UI body (it must accept it)."""
    done = subprocess.run(
        [node(), str(AGUI_CHECKER), "-"], input=raw, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, (
        f"the TS client refused the stream: {done.stdout!r} {done.stderr!r}"
    )
    out: dict[str, Any] = json.loads(done.stdout)
    assert out["failure"] is None, out
    return out


async def agui(
    client: httpx.AsyncClient, agent: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST an AG-UI request; a 200's events, checked by ag-ui-validate and the TS client."""
    headers = {"content-type": "application/json"}
    async with client.stream(
        "POST", f"/ag-ui/{agent}", content=json.dumps(body), headers=headers
    ) as response:
        raw = await response.aread()
    if response.status_code != 200:
        return response, []
    events = frames(raw)
    check(events)
    assert events[0]["metadata"]["agentnb"]["run_id"] == response.headers["x-agentnb-run-id"]
    ts_read(raw)
    return response, events


def resume_body(interrupt_id: str, payload: Any, status: str = "resolved") -> dict[str, Any]:
    return run_input(resume=[{"interruptId": interrupt_id, "status": status, "payload": payload}])


async def stored(client: httpx.AsyncClient, run_id: str) -> list[agentnb.Event]:
    """The run's whole stream (ended), as the store holds it, from *client*'s server."""
    async with open_stream(client, "GET", f"/api/runs/{run_id}/events") as reading:
        await reading.more()
    assert reading.ended
    return check_frames(reading)


async def ended(client: httpx.AsyncClient, run_id: str) -> str:
    """The run's status once it has ended (as *client*'s server describes it; 20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        status: str = (await client.get(f"/api/runs/{run_id}")).json()["status"]
        if status in ("done", "error", "cancelled"):
            return status
        assert time.monotonic() < deadline, f"run {run_id} is still {status}"
        await asyncio.sleep(0.05)


def where(events: list[agentnb.Event]) -> int:
    """The pid the agent said it runs in."""
    said = [
        e.text for e in events if isinstance(e, agentnb.TextChunk) and e.text.startswith("pid ")
    ]
    return int(said[0].split()[1])


def agui_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")


def own_terminals(events: list[agentnb.Event], run_id: str) -> list[agentnb.Event]:
    return [e for e in events if e.terminal and e.run_id == run_id]


# -- AG-UI ----------------------------------------------------------------------


async def test_an_agui_interrupt_sent_by_a_is_resumed_on_b_by_the_ts_client(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = clients
    response, events = await agui(a, "picker", run_input("sea"))
    run_id = response.headers["x-agentnb-run-id"]
    (interrupt,) = events[-1]["outcome"]["interrupts"]
    child = interrupt["subagentRunId"]
    assert interrupt["metadata"]["agentnb"]["default"] == "green"
    suspended = [e for e in events if e["type"] == "SUBAGENT_FINISHED"]
    assert [e["outcome"] for e in suspended] == [
        {"type": "suspended", "interruptIds": [interrupt["id"]]}
    ]
    # B refuses what A would refuse; the question stays open.
    not_a_choice = await b.post(
        "/ag-ui/picker", json=resume_body(interrupt["id"], {"answer": "blue"})
    )
    assert not_a_choice.status_code == 422, not_a_choice.text
    assert not_a_choice.json()["error"] == "invalid_answer"
    elsewhere = await b.post("/ag-ui/deleter", json=resume_body(interrupt["id"], {"answer": "red"}))
    assert elsewhere.status_code == 409, elsewhere.text
    assert "/ag-ui/picker" in elsewhere.json()["message"]
    described = (await b.get(f"/api/runs/{run_id}")).json()
    assert [q["ask_id"] for q in described["questions"]] == [interrupt["id"]]

    resume = [{"interruptId": interrupt["id"], "status": "resolved", "payload": {"answer": "red"}}]
    out = await asyncio.to_thread(ts_client, f"{base(servers[1])}/ag-ui/picker", "sea", resume)
    assert out["outcome"] == "success"
    assert out["result"] == "red in thread-1"
    answer = {"ask_id": interrupt["id"], "value": "red", "by": "http"}
    assert {"name": "agentnb:answer", "value": answer} in out["custom"]
    # The sub-agent the interrupt suspended starts again, then finishes.
    assert out["subagents"] == [["started", child, "chooser"], ["finished", child, "success"]]

    assert await ended(a, run_id) == "done"
    whole = await stored(b, run_id)
    assert where(whole) == servers[0].proc.pid  # A ran it; B took its answer
    assert [(e.ask_id, e.value, e.by) for e in whole if isinstance(e, Answer)] == [
        (interrupt["id"], "red", "http")
    ]
    assert [e.kind for e in own_terminals(whole, run_id)] == ["done"]
    for client in (a, b):
        again = await client.post(
            "/ag-ui/picker", json=resume_body(interrupt["id"], {"answer": "red"})
        )
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "answered"
    unknown = await b.post("/ag-ui/picker", json=resume_body("nope", {"answer": "red"}))
    assert unknown.status_code == 409
    assert unknown.json()["error"] == "unknown_interrupt"


async def test_of_two_resumes_sent_at_once_to_a_and_b_exactly_one_is_taken(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    for n in range(6):
        first, second = (a, b) if n % 2 else (b, a)
        response, events = await agui(first, "deleter", run_input(f"tmp/{n}"))
        run_id = response.headers["x-agentnb-run-id"]
        (interrupt,) = events[-1]["outcome"]["interrupts"]
        assert interrupt["reason"] == "tool_call"
        approve = resume_body(interrupt["id"], {"approved": True})
        deny = resume_body(interrupt["id"], {"approved": False})
        (yes, yes_events), (no, no_events) = await asyncio.gather(
            agui(first, "deleter", approve), agui(second, "deleter", deny)
        )
        statuses = sorted([yes.status_code, no.status_code])
        assert statuses == [200, 409], yes.text if yes.status_code != 200 else no.text
        refused = no if no.status_code == 409 else yes
        assert refused.json()["error"] == "answered"
        taken, result = (yes_events, "deleted") if yes.status_code == 200 else (no_events, "kept")
        assert taken[-1]["type"] == "RUN_FINISHED"
        assert taken[-1]["outcome"] == {"type": "success"}
        assert taken[-1]["result"] == result
        assert await ended(a, run_id) == "done"
        whole = await stored(a, run_id)
        value = "approve" if result == "deleted" else "deny"
        assert [(e.ask_id, e.value) for e in whole if isinstance(e, Answer)] == [
            (interrupt["id"], value)
        ]
        assert [e.kind for e in own_terminals(whole, run_id)] == ["done"]


async def test_a_worker_run_over_agui_asks_on_a_and_goes_on_from_b(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    servers: tuple[ServerProcess, ServerProcess],
    worker: Worker,
) -> None:
    a, b = clients
    response, events = await agui(a, "chosen", run_input("sky", threadId="thread-w"))
    run_id = response.headers["x-agentnb-run-id"]
    assert agui_text(events).startswith(f"pid {worker.proc.pid}")  # the worker runs it
    (interrupt,) = events[-1]["outcome"]["interrupts"]
    child = interrupt["subagentRunId"]
    assert interrupt["message"] == "Which colour?"

    response, events = await agui(b, "chosen", resume_body(interrupt["id"], None, "cancelled"))
    assert response.headers["x-agentnb-run-id"] == run_id
    types = [e["type"] for e in events]
    assert types[:3] == ["RUN_STARTED", "SUBAGENT_STARTED", "CUSTOM"]
    assert events[1]["subagentRunId"] == child
    assert events[2]["value"] == {"ask_id": interrupt["id"], "value": "green", "by": "default"}
    assert events[-1]["outcome"] == {"type": "success"}
    assert events[-1]["result"] == "green in thread-w"  # the request's metadata reached the worker
    assert "picked green" in agui_text(events)

    assert await ended(b, run_id) == "done"
    whole = await stored(a, run_id)
    assert where(whole) == worker.proc.pid
    assert [(e.value, e.by) for e in whole if isinstance(e, Answer)] == [("green", "default")]
    assert [e.kind for e in own_terminals(whole, run_id)] == ["done"]
    again = await a.post("/ag-ui/chosen", json=resume_body(interrupt["id"], {"answer": "red"}))
    assert again.status_code == 409
    assert again.json()["error"] == "answered"


async def test_an_interrupt_nobody_resumes_cancels_the_worker_run_once(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], store: RedisServer, worker: Worker
) -> None:
    a, b = clients
    impatient = await asyncio.to_thread(server_process, store.url, 1.0)
    try:
        async with httpx.AsyncClient(base_url=base(impatient), timeout=30) as c:
            response, events = await agui(c, "chosen", run_input("dusk"))
        run_id = response.headers["x-agentnb-run-id"]
        assert events[-1]["outcome"]["type"] == "interrupt"
        interrupt_id = events[-1]["outcome"]["interrupts"][0]["id"]
        assert await ended(b, run_id) == "cancelled"
        whole = await stored(a, run_id)
        assert where(whole) == worker.proc.pid
        (terminal,) = own_terminals(whole, run_id)
        assert isinstance(terminal, Cancelled)
        assert terminal.reason == "no AG-UI resume came within 1 s"
        late = await b.post("/ag-ui/chosen", json=resume_body(interrupt_id, {"answer": "red"}))
        assert late.status_code == 409
        assert late.json()["error"] == "answered"
    finally:
        await asyncio.to_thread(impatient.close)


# -- the AI SDK -------------------------------------------------------------------


def approval_body(first: dict[str, Any], text: str, approved: bool) -> dict[str, Any]:
    answer = responded(first, approved)
    return {
        "id": "chat-1",
        "messages": [user(text), answer],
        "trigger": "submit-message",
        "messageId": answer["id"],
    }


@pytest.mark.parametrize("agent", ["deleter", "vetted"])
async def test_an_ai_sdk_approval_asked_on_a_is_approved_on_b(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    servers: tuple[ServerProcess, ServerProcess],
    request: pytest.FixtureRequest,
    agent: str,
) -> None:
    a, b = clients
    runs_on = servers[0].proc.pid
    if agent == "vetted":  # a worker's agent
        runs_on = request.getfixturevalue("worker").proc.pid
    out = await asyncio.to_thread(check_url, f"{base(servers[0])}/ai-sdk/{agent}", "notes.txt")
    first = out["message"]
    run_id = first["metadata"]["run_id"]
    assert out["types"][-2:] == ["tool-approval-request", "finish"]
    [tool] = [p for p in first["parts"] if p["type"] == "dynamic-tool"]
    assert tool["state"] == "approval-requested"
    ask_id = tool["approval"]["id"]

    body = approval_body(first, "notes.txt", True)
    response = await b.post(f"/ai-sdk/{agent}", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-agentnb-run-id"] == run_id
    more = await asyncio.to_thread(check_continuation, responded(first, True), response.text)
    assert more["types"][0] == "start"
    assert more["types"][-1] == "finish"
    message = more["message"]
    assert message["id"] == run_id

    assert await ended(a, run_id) == "done"
    whole = await stored(b, run_id)
    assert where(whole) == runs_on
    assert message_parts(message) == expected_parts(whole, run_id)
    [tool] = [p for p in message["parts"] if p["type"] == "dynamic-tool"]
    assert tool["state"] == "output-available"
    assert [(e.ask_id, e.value, e.by) for e in whole if isinstance(e, Answer)] == [
        (ask_id, "approve", "http")
    ]
    done = whole[-1]
    assert isinstance(done, Done)
    assert done.result == "deleted"
    for client in (a, b):
        again = await client.post(f"/ai-sdk/{agent}", json=approval_body(first, "notes.txt", False))
        assert again.status_code == 409, again.text
        assert ask_id in again.json()["message"]


async def test_a_question_streamed_over_the_api_on_a_is_resumed_over_agui_on_b(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    body = {"agent": "deleter", "input": "api.txt", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        await reading.until(lambda r: any(e.event == "ask" for e in r.events))
    run_id = reading.run_id
    (ask,) = [e for e in reading.agent_events() if isinstance(e, agentnb.Ask)]
    # No /ai-sdk stream asked it: the AI SDK refuses it, on either process.
    approval = {
        "id": "m1",
        "role": "assistant",
        "parts": [
            {
                "type": "dynamic-tool",
                "toolName": "delete_file",
                "toolCallId": ask.call_id,
                "input": {"path": "api.txt"},
                "state": "approval-responded",
                "approval": {"id": ask.ask_id, "approved": True},
            }
        ],
    }
    for client in (a, b):
        refused = await client.post(
            "/ai-sdk/deleter", json={"messages": [user("api.txt"), approval]}
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "not_suspended"

    response, events = await agui(b, "deleter", resume_body(ask.ask_id, {"approved": True}))
    assert response.headers["x-agentnb-run-id"] == run_id
    assert events[1]["value"] == {"ask_id": ask.ask_id, "value": "approve", "by": "http"}
    assert "Deleted api.txt." in agui_text(events)
    assert events[-1]["outcome"] == {"type": "success"}
    assert events[-1]["result"] == "deleted"
    assert await ended(a, run_id) == "done"
    again = await a.post("/ag-ui/deleter", json=resume_body(ask.ask_id, {"approved": False}))
    assert again.status_code == 409
    assert again.json()["error"] == "answered"
    whole = await stored(a, run_id)
    assert [(e.value, e.by) for e in whole if isinstance(e, Answer)] == [("approve", "http")]
