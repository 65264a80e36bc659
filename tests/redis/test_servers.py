"""Two server processes on one Redis: a run started on one is served by the other.

Each server is its own uvicorn process (``tests/redis/shared_app.py``) on one real
redis-server; real httpx clients. A run started on A streams from B, resumes on B
with every event exactly once, is described on B, cancelled from B (the agent on A
stops) and answered on B; a run neither knows is 404 on B.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

import agentnb
from harness.redis import RedisServer, redis_server
from harness.web import ServerProcess
from tests.redis.shared_app import KEEP_VARIABLE, URL_VARIABLE
from tests.server.served import Reading, check_frames, open_stream
from tests.server.test_cli import serving_cli

ENDS = ("done", "error", "cancelled")
KEEP = 100  # frames each run's stream keeps (a longer run's start is trimmed away)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@pytest.fixture(scope="module")
def servers(redis: RedisServer) -> Iterator[tuple[str, str]]:
    """The base URLs of two server processes on *redis*."""
    saved = {name: os.environ.get(name) for name in (URL_VARIABLE, KEEP_VARIABLE)}
    os.environ[URL_VARIABLE] = redis.url
    os.environ[KEEP_VARIABLE] = str(KEEP)
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        yield f"http://127.0.0.1:{started[0].port}", f"http://127.0.0.1:{started[1].port}"
    finally:
        for server in started:
            server.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
async def a(servers: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=servers[0], timeout=10) as client:
        yield client


@pytest.fixture
async def b(servers: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=servers[1], timeout=10) as client:
        yield client


async def events_of(client: httpx.AsyncClient, run_id: str, last: str | None = None) -> Reading:
    """The whole stream of *run_id* after *last* from *client*'s server."""
    headers = {"Last-Event-ID": last} if last is not None else {}
    async with open_stream(client, "GET", f"/api/runs/{run_id}/events", headers=headers) as r:
        await r.more()
    return r


def texts(events: list[agentnb.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, agentnb.TextChunk)]


async def test_a_run_started_on_a_streams_from_b_and_resumes_there_exactly_once(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    body = {"agent": "paced", "input": 40, "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as first:
        await first.more(5)
        run_id = first.run_id
        # B streams the live run from its start, at once (the start was recorded first).
        async with open_stream(b, "GET", f"/api/runs/{run_id}/events") as whole:
            await whole.more()
    # A's client dropped after 5 events; it resumes on B, drops again, resumes on B again.
    async with open_stream(
        b, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": first.events[-1].id}
    ) as second:
        await second.more(7)
    third = await events_of(b, run_id, second.events[-1].id)
    assert whole.ended
    assert third.ended
    everything = check_frames(whole)
    assert texts(everything) == [str(i) for i in range(40)]
    assert [e.kind for e in everything][-1] == "done"
    assert sum(e.terminal and e.run_id == run_id for e in everything) == 1
    pieces = [*first.events, *second.events, *third.events]
    assert [e.id for e in pieces] == [f"{run_id}:{n}" for n in range(len(everything))]
    assert [e.data for e in pieces] == [e.data for e in whole.events]
    check_frames(second, first=5)
    check_frames(third, first=12)
    # The stream is kept after the run: a late reader on A or B gets the same bytes.
    assert bytes((await events_of(a, run_id)).raw) == bytes((await events_of(b, run_id)).raw)


async def test_a_run_is_described_on_b_while_it_runs_and_after(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    body = {"agent": "waiting", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        await reading.more(1)
        run_id = reading.run_id
        live = (await b.get(f"/api/runs/{run_id}")).json()
        assert live == {
            "run_id": run_id,
            "agent": "waiting",
            "status": "running",
            "events": 1,
            "listeners": 1,  # A's client (as A counts them)
            "on_disconnect": "continue",
            "questions": [],
        }
        assert (await b.post(f"/api/runs/{run_id}/cancel")).status_code == 200
        await reading.more()
    assert reading.ended
    ended = (await b.get(f"/api/runs/{run_id}")).json()
    assert ended["status"] == "cancelled"
    assert ended["events"] == 2
    assert ended["agent"] == "waiting"


async def test_a_cancel_sent_to_b_stops_the_agent_on_a_quickly(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    answered: list[float] = []  # the cancel's round trip on B (A has cancelled when it answers)
    stopped: list[float] = []  # from sending the cancel to A's client reading the run's end
    for _ in range(30):
        body = {"agent": "waiting", "on_disconnect": "continue"}
        async with open_stream(a, "POST", "/api/stream", json=body) as reading:
            await reading.more(1)
            run_id = reading.run_id
            sent = time.perf_counter()
            response = await b.post(f"/api/runs/{run_id}/cancel")
            answered.append(time.perf_counter() - sent)
            await reading.more()
            stopped.append(time.perf_counter() - sent)
        assert response.status_code == 200, response.text
        assert response.json()["run_id"] == run_id
        assert reading.ended
        last = json.loads(reading.events[-1].data)
        assert (last["kind"], last["run_id"]) == ("cancelled", run_id)
        assert last["reason"] == "cancelled by a client"
    # Generous bounds (a busy machine); the measured times are printed for the record.
    assert max(stopped) < 1.0, f"a cancel took {max(stopped) * 1000:.1f} ms to stop its run"
    for name, times in (("answered", answered), ("stopped", stopped)):
        ms = sorted(t * 1000 for t in times)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        print(f"cancel via B, {name}: p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms")


async def test_a_question_asked_on_a_is_answered_on_b(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    body = {"agent": "choose", "input": "Deploy?", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        await reading.until(lambda r: any(e.event == "ask" for e in r.events))
        run_id = reading.run_id
        ask = json.loads(next(e.data for e in reading.events if e.event == "ask"))
        ask_id = ask["ask_id"]
        described = (await b.get(f"/api/runs/{run_id}")).json()
        assert [q["ask_id"] for q in described["questions"]] == [ask_id]
        url = f"/api/runs/{run_id}/answer"
        refused = await b.post(url, json={"ask_id": ask_id, "value": "maybe"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "invalid_answer"
        unknown = await b.post(url, json={"ask_id": "no-such-question", "value": "yes"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == "unknown_question"
        taken = await b.post(url, json={"ask_id": ask_id, "value": "yes"})
        assert taken.status_code == 200, taken.text
        assert taken.json() == {"run_id": run_id, "ask_id": ask_id, "value": "yes", "by": "http"}
        again = await b.post(url, json={"ask_id": ask_id, "value": "no"})
        assert again.status_code == 409, again.text
        await reading.more()
    events = check_frames(reading)
    assert texts(events) == ["got yes"]
    assert events[-1].kind == "done"
    late = await b.post(f"/api/runs/{run_id}/answer", json={"ask_id": ask_id, "value": "no"})
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "ended"


async def test_a_run_neither_server_knows_is_404_on_b(b: httpx.AsyncClient) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    for method, path, payload in (
        ("GET", f"/api/runs/{run_id}", None),
        ("GET", f"/api/runs/{run_id}/events", None),
        ("POST", f"/api/runs/{run_id}/cancel", None),
        ("POST", f"/api/runs/{run_id}/answer", {"ask_id": "x", "value": "yes"}),
    ):
        response = await b.request(method, path, json=payload)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "unknown_run", response.text


async def test_a_position_trimmed_from_the_store_is_410_on_b_and_past_the_end_400(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    body = {"agent": "paced", "input": KEEP + 20, "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        await reading.more()
    run_id = reading.run_id
    count = len(reading.events)
    gone = await b.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": f"{run_id}:3"})
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"] == "expired"
    held = await events_of(b, run_id, f"{run_id}:{count - KEEP - 1}")
    check_frames(held, first=count - KEEP)
    past = await b.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": f"{run_id}:{count}"})
    assert past.status_code == 400, past.text


async def test_over_b_s_websocket_a_run_of_a_is_attached_answered_and_cancelled(
    servers: tuple[str, str], a: httpx.AsyncClient
) -> None:
    ws_url = servers[1].replace("http://", "ws://") + "/api/ws"
    body = {"agent": "choose", "input": "Deploy?", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as asking:
        await asking.until(lambda r: any(e.event == "ask" for e in r.events))
        asked = asking.run_id
        ask_id = json.loads(next(e.data for e in asking.events if e.event == "ask"))["ask_id"]
        waiting = {"agent": "waiting", "on_disconnect": "continue"}
        async with open_stream(a, "POST", "/api/stream", json=waiting) as waits:
            await waits.more(1)
            async with connect(ws_url, proxy=None) as ws:
                await ws.send(json.dumps({"type": "attach", "run_id": asked, "ref": 1}))
                await ws.send(json.dumps({"type": "attach", "run_id": waits.run_id, "ref": 2}))
                answer = {"type": "answer", "run_id": asked, "ask_id": ask_id, "value": "yes"}
                await ws.send(json.dumps({**answer, "ref": 3}))
                await ws.send(json.dumps({"type": "cancel", "run_id": waits.run_id}))
                got: dict[str, list[dict[str, Any]]] = {asked: [], waits.run_id: []}
                other: list[dict[str, Any]] = []
                ends = 0
                while ends < 2:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message["type"] != "event":
                        other.append(message)
                        continue
                    got[message["run_id"]].append(message)
                    event = message["event"]
                    ends += event["run_id"] == message["run_id"] and event["kind"] in ENDS
            await waits.more()
        await asking.more()
    assert {(m["type"], m["ref"]) for m in other} == {
        ("attached", 1),
        ("attached", 2),
        ("answered", 3),
    }
    for run_id, messages in got.items():
        assert [m["id"] for m in messages] == [f"{run_id}:{n}" for n in range(len(messages))]
    assert [m["event"]["kind"] for m in got[asked]][-2:] == ["text", "done"]
    assert [m["event"]["kind"] for m in got[waits.run_id]] == ["text", "cancelled"]
    assert [json.loads(e.data) for e in asking.events] == [m["event"] for m in got[asked]]
    assert [json.loads(e.data) for e in waits.events] == [m["event"] for m in got[waits.run_id]]


def test_two_serve_processes_with_redis_share_the_demo_runs(redis: RedisServer) -> None:
    with serving_cli("--redis", redis.url) as one, serving_cli("--redis", redis.url) as two:
        body = {"agent": "counter", "input": "3", "on_disconnect": "continue"}
        started = httpx.post(f"http://127.0.0.1:{one.port}/api/stream", json=body, timeout=10)
        run_id = started.headers["x-agentnb-run-id"]
        other = f"http://127.0.0.1:{two.port}/api/runs/{run_id}"
        resumed = httpx.get(other + "/events", timeout=10)
        assert resumed.status_code == 200, resumed.text
        assert resumed.text == started.text  # the same frames, byte for byte
        described = httpx.get(other, timeout=10).json()
        assert (described["agent"], described["status"]) == ("counter", "done")
    assert one.process.returncode == 0
    assert two.process.returncode == 0


async def test_a_run_id_that_is_no_run_id_is_404_on_b_and_stays_data(b: httpx.AsyncClient) -> None:
    for run_id in ('a"b', "<script>", "x" * 200):
        response = await b.get(f"/api/runs/{run_id}/events")
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "unknown_run"
        assert response.headers["content-type"] == "application/json"
