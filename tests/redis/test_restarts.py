"""redis-server restarted while two server processes stream runs from it.

Two server processes (``tests/redis/shared_app.py``) on one real redis-server, which
is stopped (SIGTERM, as an operator would) and started again mid-run. A run of A is
read through B (from Redis) and through A (from A's memory), a run of B through A and
through B. With ``appendonly yes`` every client gets every event exactly once across
the restart (a stream that ends is resumed with ``Last-Event-ID``). Without it, the
owners' clients still get their runs whole, and a client reading from Redis sees its
stream end and its resume refused, naming what happened: never a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from harness.redis import RedisServer, redis_server
from harness.web import ServerProcess
from harness.wire import SseParser
from tests.redis.shared_app import URL_VARIABLE

ENDS = ("done", "error", "cancelled")
EVENTS = 200  # the runs' events, 10 ms apart: the restart falls in the middle
DOWN = 0.3  # seconds redis-server stays stopped (below the store's reconnect window)
TIMEOUT = 30.0  # seconds any one test waits for all its clients, whatever happens


@dataclass
class Servers:
    redis: RedisServer
    a: httpx.AsyncClient
    b: httpx.AsyncClient


@pytest.fixture(params=[True, False], ids=["appendonly", "no-appendonly"])
def redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    with redis_server(appendonly=request.param) as started:
        yield started


@pytest.fixture
async def servers(redis: RedisServer) -> AsyncIterator[Servers]:
    """Two server processes on *redis*, and a client of each."""
    saved = os.environ.get(URL_VARIABLE)
    os.environ[URL_VARIABLE] = redis.url
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{started[0].port}", timeout=10) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{started[1].port}", timeout=10) as b,
        ):
            yield Servers(redis, a, b)
    finally:
        for server in started:
            server.close()
        if saved is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = saved


@dataclass
class Follower:
    """One client reading one run through one server to its end, resuming after
    ``Last-Event-ID`` when a stream ends before the run's terminal event."""

    client: httpx.AsyncClient
    run_id: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (id, data)
    streams: int = 0  # responses read (the first, then each resume)
    refused: list[tuple[int, str]] = field(default_factory=list)  # resumes answered non-200
    begun: asyncio.Event = field(default_factory=asyncio.Event)  # an event has arrived

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1][1].get("kind") in ENDS

    async def read(self, response: httpx.Response) -> None:
        self.streams += 1
        parser = SseParser()
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                self.events.append((event.id, json.loads(event.data)))
                self.begun.set()

    async def start(self, body: dict[str, Any], started: asyncio.Future[str]) -> None:
        """POST /api/stream and read the run (its id is put in *started*), resuming."""
        async with self.client.stream("POST", "/api/stream", json=body) as response:
            assert response.status_code == 200, await response.aread()
            self.run_id = response.headers["x-agentnb-run-id"]
            started.set_result(self.run_id)
            await self.read(response)
        await self.resume()

    async def follow(self, run_id: str) -> None:
        self.run_id = run_id
        await self.resume()

    async def resume(self, *, retry_unavailable: bool = True) -> None:
        """Read on until the run's end; a resume refused with 503 (Redis down) is retried
        (*retry_unavailable*), any other refusal ends the reading."""
        while not self.ended:
            headers = {"Last-Event-ID": self.events[-1][0]} if self.events else {}
            url = f"/api/runs/{self.run_id}/events"
            async with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    self.refused.append((response.status_code, (await response.aread()).decode()))
                    if response.status_code == 503 and retry_unavailable:
                        await asyncio.sleep(0.1)
                        continue
                    return
                await self.read(response)

    def check_whole(self, texts: list[str]) -> None:
        """Every event of the run exactly once, in order, its texts *texts*, ``done`` last."""
        ids = [i for i, _ in self.events]
        assert ids == [f"{self.run_id}:{n}" for n in range(len(ids))], ids
        kinds = [d["kind"] for _, d in self.events]
        assert [d.get("text") for _, d in self.events if d["kind"] == "text"] == texts
        assert kinds[-1] == "done", kinds
        assert sum(k in ENDS for k in kinds) == 1, kinds
        assert all(d["run_id"] == self.run_id for _, d in self.events)


def whole() -> list[str]:
    return [str(i) for i in range(EVENTS)]


async def restart(redis: RedisServer) -> None:
    await asyncio.to_thread(redis.stop)
    await asyncio.sleep(DOWN)
    await asyncio.to_thread(redis.start)


async def runs_read_across_a_restart(
    servers: Servers,
) -> tuple[Follower, Follower, Follower, Follower]:
    """Run 1 on A read through A (its POST) and B; run 2 on B read through B and A;
    redis-server restarted once B's and A's readers of the other's run are reading."""
    body = {"agent": "scripted", "input": {"events": EVENTS, "pause": 0.01, "ask": None}}
    body["on_disconnect"] = "continue"
    loop = asyncio.get_running_loop()
    one_on_a, two_on_b = Follower(servers.a), Follower(servers.b)
    one_via_b, two_via_a = Follower(servers.b), Follower(servers.a)
    one_started: asyncio.Future[str] = loop.create_future()
    two_started: asyncio.Future[str] = loop.create_future()
    async with asyncio.timeout(TIMEOUT):
        tasks = [
            asyncio.create_task(one_on_a.start(body, one_started)),
            asyncio.create_task(two_on_b.start(body, two_started)),
            asyncio.create_task(one_via_b.follow(await one_started)),
            asyncio.create_task(two_via_a.follow(await two_started)),
        ]
        await one_via_b.begun.wait()
        await two_via_a.begun.wait()
        await restart(servers.redis)
        await asyncio.gather(*tasks)
    assert one_via_b.events, "nothing came through B"
    assert two_via_a.events, "nothing came through A"
    return one_on_a, one_via_b, two_on_b, two_via_a


async def test_a_redis_restart_mid_stream_loses_no_event_with_appendonly_and_says_so_without(
    servers: Servers,
) -> None:
    one_on_a, one_via_b, two_on_b, two_via_a = await runs_read_across_a_restart(servers)
    # The owners' clients read from memory: whole, whatever Redis did.
    one_on_a.check_whole(whole())
    two_on_b.check_whole(whole())
    if servers.redis.appendonly:
        # Every event exactly once through the other process too (after resuming if need be).
        for follower, owner in ((one_via_b, one_on_a), (two_via_a, two_on_b)):
            follower.check_whole(whole())
            assert [d for _, d in follower.events] == [d for _, d in owner.events]
            assert all(status == 503 for status, _ in follower.refused), follower.refused
        for client, run_id in ((servers.a, two_on_b.run_id), (servers.b, one_on_a.run_id)):
            described = (await client.get(f"/api/runs/{run_id}")).json()
            assert (described["status"], described["events"]) == ("done", EVENTS + 1)
        print(
            f"restart with appendonly: streams read through the other server "
            f"{one_via_b.streams} and {two_via_a.streams}, resumes refused with 503 "
            f"{len(one_via_b.refused) + len(two_via_a.refused)}"
        )
    else:
        # The runs' streams are gone: a reader through the other process gets each event it
        # gets once and in order, then is told: its run ends with an error naming Redis, or
        # its stream ends and its resume is refused naming Redis (also once the run ended).
        for follower in (one_via_b, two_via_a):
            ids = [i for i, _ in follower.events]
            assert ids == [f"{follower.run_id}:{n}" for n in range(len(ids))]
            if follower.ended:
                last = follower.events[-1][1]
                assert last["kind"] == "error", f"read a whole run that Redis lost: {last}"
                assert "Redis" in json.dumps(last), last
                continue
            assert follower.refused, "the stream ended and nothing refused the resume"
            status, body = follower.refused[-1]
            assert status >= 400, body
            message = json.loads(body)["message"]
            assert "Redis" in message, f"the refusal does not say Redis lost the run: {body}"
            last_id = follower.events[-1][0]
            url = f"/api/runs/{follower.run_id}/events"
            late = await follower.client.get(url, headers={"Last-Event-ID": last_id})
            assert late.status_code >= 400, late.text
            assert "Redis" in late.json()["message"], late.text
