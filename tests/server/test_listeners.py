"""Several listeners of one run: one going away leaves the others streaming (regression)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse

import agentnb
from agentnb.server import create_app
from tests.server.served import Server, served


async def ticking(count: int) -> int:
    for i in range(count):
        agentnb.emit(f"{i} ")
        await asyncio.sleep(0.05)
    return count


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=[ticking])) as server:
        yield server


async def test_a_listener_leaving_while_others_wait_does_not_end_their_streams(
    server: Server,
) -> None:
    base = server.base
    # Every waiting listener of a run awaits the same wake-up; a client that leaves
    # must not cancel it for the others (it once did: their responses were cut).
    async with httpx.AsyncClient(timeout=10) as http:
        body = {"agent": "ticking", "input": 20, "on_disconnect": "continue"}
        async with aconnect_sse(http, "POST", base + "/api/stream", json=body) as first:
            run_id = first.response.headers["x-agentnb-run-id"]
            stream = first.aiter_sse()
            await anext(stream)
            async with aconnect_sse(http, "GET", f"{base}/api/runs/{run_id}/events") as second:
                # Both are parked, waiting for the next event (one comes every 50 ms).
                server.wait_for(lambda: len(server.hub.get(run_id)._waiting) == 2)
                await stream.aclose()
                await first.response.aclose()  # the first client goes away mid-wait
                ids = [sse.id async for sse in second.aiter_sse()]
    assert ids == [f"{run_id}:{n}" for n in range(21)]
