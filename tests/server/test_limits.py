"""Slow clients and the memory budget, against a real uvicorn (issue 9, points 3 and 4).

* A slow client is never cut off for another's sake: with one client stalled
  for good, a client that keeps reading gets every event once, in order.
* A client stalled for good is cut off after the send timeout, so it no longer
  counts as a listener, and a cancel-on-disconnect run is cancelled.
* Every buffered event, live and finished, fits in ``max_buffer``: finished
  runs are evicted oldest first (then a resume answers 410 and says why); while
  live runs fill it, a new run is refused with 503 and a JSON error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

import agentnb
from agentnb.server import create_app
from agentnb.server._buffer import FRAME_OVERHEAD
from harness.wait import eventually, until
from harness.wire import SseParser, posted
from tests.helpers import forever
from tests.server.served import Server, post_stream, served

KIB = 1024
MIB = 1024 * KIB


READERS_IN = threading.Event()  # set by the test once both of bulk's clients listen


async def bulk(count: int) -> int:
    """Waits for its clients, then emits *count* texts of 64 KiB, a little apart."""
    await eventually(READERS_IN.is_set, 10, what="the test's word that both clients listen")
    for i in range(count):
        agentnb.emit(f"{i:08d}" + "x" * (64 * KIB - 8))
        await asyncio.sleep(0.005)
    return count


async def endless(size: int) -> None:
    """Emits texts of *size* bytes until cancelled."""
    i = 0
    while True:
        agentnb.emit(f"{i:08d}" + "y" * (size - 8))
        i += 1
        await asyncio.sleep(0.002)


async def burst(size: int) -> str:
    """Emits 20 texts of *size* bytes and ends."""
    for i in range(20):
        agentnb.emit(f"{i:08d}" + "z" * (size - 8))
    return "ok"


AGENTS: dict[str, Callable[..., Any]] = {
    "bulk": bulk,
    "endless": endless,
    "burst": burst,
    "forever": forever,
}


@contextlib.contextmanager
def stalled(server: Server, body: dict[str, object]) -> Iterator[str]:
    """POST *body* on a socket that never reads past the response's head; yield the run id."""
    with posted(server.base, "/api/stream", body) as answer:
        yield answer.headers["x-agentnb-run-id"]


async def test_a_reader_keeps_every_event_while_another_client_stalls_for_good() -> None:
    # Before: once the stalled client was four buffers behind, the buffer fell back to
    # its newest window for everyone, and the reader was cut off with it.
    count = 300  # 19 MiB, far more than the stalled client's socket takes in
    app = create_app(agents=AGENTS, replay_size=20, send_timeout=None)
    with served(app) as server:
        body = {"agent": "bulk", "input": count, "on_disconnect": "continue"}
        with stalled(server, body) as run_id:
            async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
                url = f"/api/runs/{run_id}/events"
                async with client.stream("GET", url, headers={"Last-Event-ID": ""}) as answer:
                    assert answer.status_code == 200
                    server.wait_for(lambda: server.hub.get(run_id).listeners == 2)
                    READERS_IN.set()
                    parser = SseParser()
                    events = []
                    async for chunk in answer.aiter_bytes():
                        events.extend(parser.feed(chunk))
            assert server.describe(run_id)["status"] == "done"
    agent_events = [agentnb.Event.from_json(e.data) for e in events]
    assert [e.seq for e in agent_events] == list(range(count + 1))
    texts = [e.text for e in agent_events if isinstance(e, agentnb.TextChunk)]
    assert texts == [f"{i:08d}" + "x" * (64 * KIB - 8) for i in range(count)]


async def test_a_client_stalled_for_good_is_cut_off_after_the_send_timeout() -> None:
    app = create_app(agents=AGENTS, send_timeout=0.5)
    with served(app) as server, stalled(server, {"agent": "endless", "input": 64 * KIB}) as run_id:
        # Its socket fills, the write waits 0.5 s, the stream ends: no listener is left
        # and the run, started to be cancelled when its last client goes, is cancelled.
        until(lambda: server.describe(run_id)["status"] == "cancelled", timeout=30)
        assert server.describe(run_id)["listeners"] == 0


async def test_buffered_events_stay_within_the_budget_and_full_means_503() -> None:
    budget = 2 * MIB
    size = 10 * KIB
    app = create_app(agents=AGENTS, max_buffer=budget)
    hub = app.state.hub
    with served(app) as server:
        async with server.client() as client:
            runs = []
            refused = None
            body = {"agent": "endless", "input": size, "on_disconnect": "continue"}
            for _ in range(40):  # detached runs: each started, then left at once
                async with client.stream("POST", "/api/stream", json=body) as answer:
                    if answer.status_code == 503:
                        await answer.aread()
                        refused = answer
                        break
                    assert answer.status_code == 200
                    runs.append(answer.headers["x-agentnb-run-id"])
                await asyncio.sleep(0.05)  # pacing the load: the live runs fill the budget
            # Live runs fill the budget and stay within it (one event over, at most): an
            # invariant, sampled for a second (there is no state to wait for).
            for _ in range(20):
                used = server.call(lambda: hub.budget.used)
                assert used <= budget + size + FRAME_OVERHEAD + 200, used
                await asyncio.sleep(0.05)
            if refused is None:
                refused = await client.post("/api/stream", json={"agent": "burst", "input": 10})
            assert refused.status_code == 503
            assert refused.json()["error"] == "over_budget"
            assert "budget" in refused.json()["message"]
            # The oldest events of a live run were given up: asking for them says so.
            gone = await client.get(
                f"/api/runs/{runs[0]}/events", headers={"Last-Event-ID": f"{runs[0]}:0"}
            )
            assert gone.status_code == 410
            assert gone.json()["error"] == "expired"
            for run_id in runs:
                await client.post(f"/api/runs/{run_id}/cancel")
            server.wait_for(lambda: hub.live == [])
            # Nothing live: new runs are taken again.
            again = await post_stream(client, {"agent": "burst", "input": 100})
            assert again.agent_events()[-1].kind == "done"


async def test_finished_runs_are_evicted_oldest_first_and_then_answer_410() -> None:
    budget = 1 * MIB
    app = create_app(agents=AGENTS, max_buffer=budget)
    hub = app.state.hub
    with served(app) as server:
        async with server.client() as client:
            ids = []
            for _ in range(8):  # 20 x 8 KiB each: about 170 KB a run, five of them fit
                reading = await post_stream(client, {"agent": "burst", "input": 8 * KIB})
                assert reading.agent_events()[-1].kind == "done"
                ids.append(reading.run_id)
            assert server.call(lambda: hub.budget.used) <= budget
            oldest = await client.get(f"/api/runs/{ids[0]}")
            assert oldest.status_code == 410
            assert oldest.json()["error"] == "expired"
            assert "memory budget" in oldest.json()["message"]
            newest = await client.get(f"/api/runs/{ids[-1]}/events")
            assert newest.status_code == 200
