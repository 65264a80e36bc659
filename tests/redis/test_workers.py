"""Workers: agents run by ``python -m agentnb worker`` processes, served by any server process.

A real redis-server, two uvicorn server processes (``tests/redis/worker_app.py``:
runs of the workers' agents go to the workers) and real worker processes with a
short lease; real httpx clients. Each worker agent says where it runs (``pid ...``)
and counts its starts in Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis

from harness import ROOT
from harness.redis import RedisServer, redis_server
from harness.web import ServerProcess
from tests.redis.worker_app import LEASE_VARIABLE, URL_VARIABLE, WORKERS_VARIABLE
from tests.server.served import Reading, open_stream

LEASE = 2.0  # seconds: a lost worker's runs end within it
ENDS = ("done", "error", "cancelled")


class Worker:
    """A ``python -m agentnb worker`` process, live once it offers its agents."""

    def __init__(self, url: str, app: str = "agents", offers: str = "counted") -> None:
        argv = ["-m", "agentnb", "worker", "--redis", url, "--lease", str(LEASE)]
        argv += ["--app", f"tests.redis.worker_app:{app}", "--log-level", "warning"]
        env = {**os.environ, URL_VARIABLE: url}  # its agents count their starts there
        self.proc = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env
        )
        self.pid = self.proc.pid
        with redis.Redis.from_url(url) as client:
            deadline = time.monotonic() + 30
            offers = f"agentnb:offers:{offers}"
            while not any(self._mine(client, w) for w in client.smembers(offers)):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start: {self.stop()}")
                time.sleep(0.02)

    def _mine(self, client: redis.Redis, worker_id: bytes) -> bool:
        about = client.get(f"agentnb:worker:{_text(worker_id)}")
        return about is not None and json.loads(about)["pid"] == self.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        """SIGTERM (a graceful stop); what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def store() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


def server_process(url: str, workers: str = "auto") -> ServerProcess:
    saved = {
        name: os.environ.get(name) for name in (URL_VARIABLE, LEASE_VARIABLE, WORKERS_VARIABLE)
    }
    os.environ.update({URL_VARIABLE: url, LEASE_VARIABLE: str(LEASE), WORKERS_VARIABLE: workers})
    try:
        return ServerProcess(["-m", "tests.redis.worker_app"])
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


@pytest.fixture(scope="module")
def worker(store: RedisServer, servers: object) -> Iterator[Worker]:
    started = Worker(store.url)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def clients(
    servers: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    a, b = (f"http://127.0.0.1:{s.port}" for s in servers)
    async with (
        httpx.AsyncClient(base_url=a, timeout=30) as ca,
        httpx.AsyncClient(base_url=b, timeout=30) as cb,
    ):
        yield ca, cb


def data(reading: Reading) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in reading.events]


def ids(reading: Reading) -> list[int]:
    return [int(event.id.rpartition(":")[2]) for event in reading.events]


async def resume(client: httpx.AsyncClient, run_id: str, last: str | None = None) -> Reading:
    headers = {"Last-Event-ID": last} if last is not None else {}
    async with open_stream(client, "GET", f"/api/runs/{run_id}/events", headers=headers) as r:
        await r.more()
    return r


def where(events: list[dict[str, Any]]) -> int:
    """The pid the agent said it runs in."""
    said = [e["text"] for e in events if e["kind"] == "text" and e["text"].startswith("pid ")]
    return int(said[0].split()[1])


def starts(url: str, tag: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.get(f"test:starts:{tag}") or 0)


def own_terminals(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] in ENDS and e["run_id"] == run_id]


async def test_a_run_goes_to_the_worker_streams_from_a_and_resumes_on_b_exactly_once(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], worker: Worker, store: RedisServer
) -> None:
    a, b = clients
    body = {"agent": "counted", "input": "resumed", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as first:
        await first.more(5)
    run_id = first.run_id
    rest = await resume(b, run_id, first.events[-1].id)
    assert ids(first) + ids(rest) == list(range(len(first.events) + len(rest.events)))
    events = data(first) + data(rest)
    assert where(events) == worker.pid  # not a server process: the worker ran it
    assert [e["text"] for e in events if e["kind"] == "text"][1:] == [str(i) for i in range(30)]
    assert [e["kind"] for e in own_terminals(events, run_id)] == ["done"]
    assert events[-1]["kind"] == "done"
    described = (await a.get(f"/api/runs/{run_id}")).json()
    assert (described["status"], described["agent"]) == ("done", "counted")
    assert starts(store.url, "resumed") == 1


async def test_an_agent_no_worker_offers_runs_in_the_server_itself(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    servers: tuple[ServerProcess, ServerProcess],
    worker: Worker,
) -> None:
    a, _ = clients
    async with open_stream(a, "POST", "/api/stream", json={"agent": "here"}) as reading:
        await reading.more()
    assert where(data(reading)) == servers[0].proc.pid
    listed = {agent["name"] for agent in (await a.get("/api/agents")).json()}
    assert listed == {"here", "linger", "counted", "forever", "confirm"}  # its own and the workers'


async def test_a_cancel_sent_to_either_server_stops_the_agent_on_the_worker(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], worker: Worker
) -> None:
    stopped: list[float] = []
    for i in range(10):
        a, b = clients if i % 2 else clients[::-1]
        body = {"agent": "forever", "input": "cancelled", "on_disconnect": "continue"}
        async with open_stream(a, "POST", "/api/stream", json=body) as reading:
            await reading.more(2)
            sent = time.perf_counter()
            response = await b.post(f"/api/runs/{reading.run_id}/cancel")
            await reading.more()
            stopped.append(time.perf_counter() - sent)
        assert response.status_code == 200, response.text
        events = data(reading)
        assert [e["kind"] for e in own_terminals(events, reading.run_id)] == ["cancelled"]
        assert events[-1]["reason"] == "cancelled by a client"
    ms = sorted(t * 1000 for t in stopped)
    print(f"cancel of a worker's run: median {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")


async def test_the_last_client_leaving_cancels_a_worker_run_that_cancels_on_disconnect(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], worker: Worker
) -> None:
    a, b = clients
    async with open_stream(a, "POST", "/api/stream", json={"agent": "forever"}) as reading:
        await reading.more(3)
    # Once A has seen its client go (no other client reads it), the worker cancels the run.
    async with asyncio.timeout(30):
        # (polling another process's state: there is no event to wait on)
        while (await b.get(f"/api/runs/{reading.run_id}")).json()["status"] != "cancelled":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    rest = await resume(b, reading.run_id, reading.events[-1].id)
    events = data(reading) + data(rest)
    assert [e["kind"] for e in own_terminals(events, reading.run_id)] == ["cancelled"]
    assert events[-1]["reason"] == "the client disconnected"


async def test_a_question_of_a_worker_run_is_answered_on_the_other_server(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], worker: Worker
) -> None:
    a, b = clients
    body = {"agent": "confirm", "input": "asked"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        while not any(e["kind"] == "ask" for e in data(reading)):
            await reading.more(1)
        ask = next(e for e in data(reading) if e["kind"] == "ask")
        described = (await b.get(f"/api/runs/{reading.run_id}")).json()
        assert [q["ask_id"] for q in described["questions"]] == [ask["ask_id"]]
        answer = {"ask_id": ask["ask_id"], "value": "yes"}
        response = await b.post(f"/api/runs/{reading.run_id}/answer", json=answer)
        assert response.status_code == 200, response.text
        await reading.more()
    events = data(reading)
    assert events[-1]["kind"] == "done"
    assert events[-1]["result"] == "yes"


async def test_a_worker_killed_mid_run_ends_its_run_with_an_error_within_the_lease_once(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], worker: Worker, store: RedisServer
) -> None:
    a, b = clients
    doomed = Worker(store.url)  # two workers: the survivor must not run the run again
    try:
        for attempt in range(40):  # until a run lands on the worker to be killed
            tag = f"killed-{attempt}"
            body = {"agent": "forever", "input": tag, "on_disconnect": "continue"}
            async with open_stream(a, "POST", "/api/stream", json=body) as first:
                await first.more(2)
            if where(data(first)) == doomed.pid:
                break
            await a.post(f"/api/runs/{first.run_id}/cancel")
        else:
            raise AssertionError("no run went to the second worker in 40 tries")
        doomed.kill()
        killed = time.perf_counter()
        rest = await asyncio.wait_for(resume(b, first.run_id, first.events[-1].id), 6 * LEASE)
        ended = time.perf_counter() - killed
    finally:
        doomed.stop()
    events = data(first) + data(rest)
    assert ids(first) + ids(rest) == list(range(len(events)))
    terminals = own_terminals(events, first.run_id)
    assert [e["kind"] for e in terminals] == ["error"]
    assert terminals[0]["type"] == "WorkerLost"
    assert "worker running this run was lost" in terminals[0]["message"]
    assert events[-1] is terminals[0]
    seqs = [e["seq"] for e in events if e["run_id"] == first.run_id]
    assert seqs == list(range(len(seqs)))  # the error event follows the run's own events
    print(f"a killed worker's run ended {ended:.2f} s after the kill (lease {LEASE:g} s)")
    assert ended < 1.5 * LEASE  # ends within the lease (3/4 of it at most, plus slack)
    described = (await b.get(f"/api/runs/{first.run_id}")).json()
    assert described["status"] == "error"
    await asyncio.sleep(LEASE)
    assert starts(store.url, tag) == 1  # not run again by the other worker


async def test_a_run_queued_for_an_absent_worker_waits_and_a_cancel_while_queued_holds(
    store: RedisServer, worker: Worker
) -> None:
    always = server_process(store.url, "always")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{always.port}", timeout=30) as c:
            worker.stop()  # no worker now: runs wait in their queue
            body = {"agent": "counted", "input": "queued", "on_disconnect": "continue"}
            async with open_stream(c, "POST", "/api/stream", json=body) as reading:
                run_id = reading.run_id
                assert (await c.get(f"/api/runs/{run_id}")).json()["status"] == "queued"
            body = {"agent": "counted", "input": "queued-cancelled", "on_disconnect": "continue"}
            async with open_stream(c, "POST", "/api/stream", json=body) as reading:
                cancelled_id = reading.run_id
            response = await c.post(f"/api/runs/{cancelled_id}/cancel")
            assert response.status_code == 200, response.text
            unknown = await c.post("/api/stream", json={"agent": "nobody"})
            assert unknown.status_code == 404
            assert "counted" in unknown.json()["message"]
            replacement = Worker(store.url)
            try:
                done = await asyncio.wait_for(resume(c, run_id), 30)
                cancelled = await asyncio.wait_for(resume(c, cancelled_id), 30)
            finally:
                replacement.stop()
    finally:
        always.close()
    assert data(done)[-1]["kind"] == "done"
    assert where(data(done)) == replacement.pid
    assert [e["kind"] for e in own_terminals(data(cancelled), cancelled_id)] == ["cancelled"]
    assert starts(store.url, "queued") == 1


def test_a_worker_stopped_with_sigterm_ends_its_runs_cancelled_and_leaves(
    store: RedisServer,
) -> None:
    async def scenario() -> None:
        server = server_process(store.url)
        stopping = Worker(store.url, "stubborn_agents", "stubborn")
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}", timeout=30
            ) as c:
                body = {"agent": "stubborn", "input": "sigterm", "on_disconnect": "continue"}
                async with open_stream(c, "POST", "/api/stream", json=body) as reading:
                    await reading.more(2)
                    assert where(data(reading)) == stopping.pid
                    stopping.proc.terminate()
                    await asyncio.wait_for(reading.more(), 20)
                assert stopping.proc.wait(20) == 0
                events = data(reading)
                assert [e["kind"] for e in own_terminals(events, reading.run_id)] == ["cancelled"]
                with redis.Redis.from_url(store.url) as client:
                    offers = {_text(w) for w in client.smembers("agentnb:offers:stubborn")}
                    assert not any(client.exists(f"agentnb:worker:{w}") for w in offers)
        finally:
            stopping.stop()
            server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "the following arguments are required: --redis"),
        (["--redis", "redis://127.0.0.1:1/0", "--app", "nowhere_at_all:agents"], "nowhere_at_all"),
        (["--redis", "redis://127.0.0.1:1/0", "--app", "agentnb.demo:nothing"], "nothing"),
        (
            ["--redis", "redis://x/0", "--app", "tests.redis.worker_app:agents", "--lease", "0"],
            "lease must be positive",
        ),
    ],
)
def test_the_worker_command_says_what_is_wrong(argv: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentnb", "worker", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert said in done.stderr, done.stderr


async def test_a_server_killed_mid_run_has_its_run_ended_with_an_error_by_another(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], store: RedisServer
) -> None:
    _, b = clients
    doomed = server_process(store.url, "never")  # it runs its agents itself
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{doomed.port}") as c:
            body = {"agent": "linger", "on_disconnect": "continue"}
            async with open_stream(c, "POST", "/api/stream", json=body) as first:
                await first.more(1)  # "pid ..."
        run_id = first.run_id
    finally:
        doomed.proc.kill()
        doomed.close()
    killed = time.perf_counter()
    rest = await asyncio.wait_for(resume(b, run_id, first.events[-1].id), 6 * LEASE)
    ended = time.perf_counter() - killed
    events = data(first) + data(rest)
    assert where(events) == doomed.proc.pid
    assert ids(first) + ids(rest) == list(range(len(events)))
    terminals = own_terminals(events, run_id)
    assert [(e["kind"], e["type"]) for e in terminals] == [("error", "ServerLost")]
    assert "the server running this run was lost" in terminals[0]["message"]
    assert events[-1] is terminals[0]
    assert (await b.get(f"/api/runs/{run_id}")).json()["status"] == "error"
    print(f"a killed server's run ended {ended:.2f} s after the kill (lease {LEASE:g} s)")
    assert ended < 1.5 * LEASE


async def test_a_run_handed_to_a_worker_lost_before_taking_it_ends_with_no_worker(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], store: RedisServer
) -> None:
    a, b = clients
    lost = Worker(store.url, "lonely_agents", "lonely")  # the only one offering "lonely"
    lost.kill()  # its key lives on for up to half a lease: A still takes it for live
    body = {"agent": "lonely", "on_disconnect": "continue"}
    async with open_stream(a, "POST", "/api/stream", json=body) as reading:
        run_id = reading.run_id
        handed = time.perf_counter()
        await asyncio.wait_for(reading.more(), 6 * LEASE)
    ended = time.perf_counter() - handed
    lost.stop()
    events = data(reading)
    assert [(e["kind"], e["type"]) for e in events] == [("error", "NoWorker")]
    assert "no worker took this run" in events[0]["message"]
    assert (await b.get(f"/api/runs/{run_id}")).json()["status"] == "error"
    print(f"a run handed to a lost worker ended {ended:.2f} s later (lease {LEASE:g} s)")
    assert ended < 3 * LEASE  # its lease, then a reaping period (generous)
