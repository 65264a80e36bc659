"""A client that goes away: ``on_disconnect="cancel"`` stops the run at once, "continue" does not.

The time is measured from the moment the client starts closing its connection to
the moment the run's status, read on the server's own loop, is "cancelled".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import agentnb
from agentnb.server import create_app
from harness.wait import until
from tests.server.served import (
    Server,
    check_frames,
    check_whole_run,
    open_stream,
    post_stream,
    resume,
    served,
)

CANCEL_WITHIN = 0.1
STARTED: set[str] = set()  # agents note that they have begun (on the server's thread)


async def chatty(tag: str) -> None:
    """Emits "0", "1", ... every millisecond until cancelled."""
    STARTED.add(tag)
    i = 0
    while True:
        agentnb.emit(str(i))
        i += 1
        await asyncio.sleep(0.001)


async def idle(tag: str) -> None:
    """Emits nothing and sleeps for an hour."""
    STARTED.add(tag)
    await asyncio.sleep(3600)


AGENTS: dict[str, Any] = {"chatty": chatty, "idle": idle}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


def assert_gone(server: Server, run_id: str) -> None:
    """The run is over on the server: no listener, not live, no task of it left."""
    until(lambda: server.run_tasks(run_id) == [], timeout=1)
    assert server.describe(run_id)["listeners"] == 0
    assert run_id not in server.live()
    # Its terminal event is buffered, and the run object itself let go (with its result).
    assert server.call(lambda: server.hub.get(run_id).ended)
    assert server.call(lambda: server.hub.get(run_id).run is None)


async def test_closing_the_stream_cancels_the_run_at_once(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "chatty", "input": "talk-1"}
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json=body) as reading:
            await reading.more(5)
            run_id = reading.run_id
            assert server.describe(run_id)["status"] == "running"
            assert server.describe(run_id)["listeners"] == 1
            assert server.run_tasks(run_id) != []
            closing = time.perf_counter()
        took = server.wait_for(
            lambda: server.hub.get(run_id).status == "cancelled", timeout=2, since=closing
        )
        assert took <= CANCEL_WITHIN, f"the run was cancelled {took * 1000:.0f} ms after close"
        assert_gone(server, run_id)
        # The run's buffered events go on from where the client stopped and end with `cancelled`.
        rest = await resume(client, run_id, reading.events[-1].id)
    head = check_frames(reading)
    tail = check_frames(rest, first=len(reading.events))
    assert head + tail == sent[run_id]
    assert [e.kind for e in tail][-1] == "cancelled"
    assert all(e.kind == "text" for e in head + tail[:-1])
    cancelled = tail[-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert cancelled.reason == "the client disconnected"
    assert server.describe(run_id)["events"] == len(head) + len(tail)


async def test_closing_the_stream_of_an_idle_agent_cancels_it_at_once(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "idle", "input": "idle-1"}
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json=body) as reading:
            run_id = reading.run_id
            server.wait_for(lambda: "idle-1" in STARTED)
            assert server.describe(run_id) == {
                "run_id": run_id,
                "agent": "idle",
                "status": "running",
                "events": 0,
                "listeners": 1,
                "on_disconnect": "cancel",
                "questions": [],
            }
            closing = time.perf_counter()
        took = server.wait_for(
            lambda: server.hub.get(run_id).status == "cancelled", timeout=2, since=closing
        )
        assert took <= CANCEL_WITHIN, f"the run was cancelled {took * 1000:.0f} ms after close"
        assert_gone(server, run_id)
        everything = await resume(client, run_id)
    assert reading.events == []
    check_whole_run(everything, sent)
    assert [e.kind for e in everything.agent_events()] == ["cancelled"]


async def test_a_continue_run_goes_on_detached_and_can_be_resumed(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "chatty", "input": "talk-2", "on_disconnect": "continue"}
    async with server.client() as client:
        first = await post_stream(client, body, limit=5)
        run_id = first.run_id
        server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
        count = server.describe(run_id)["events"]
        server.wait_for(lambda: server.hub.get(run_id).describe()["events"] > count)
        described = server.describe(run_id)
        assert described["status"] == "running"
        assert described["listeners"] == 0
        assert described["on_disconnect"] == "continue"
        assert described["events"] > count  # still emitting with nobody listening
        assert run_id in server.live()
        async with open_stream(
            client,
            "GET",
            f"/api/runs/{run_id}/events",
            headers={"Last-Event-ID": first.events[-1].id},
        ) as second:
            await second.more(20)
            assert server.describe(run_id)["listeners"] == 1
            answer = await client.post(f"/api/runs/{run_id}/cancel")
            assert answer.status_code == 200
            await second.more()
    head = check_frames(first)
    tail = check_frames(second, first=len(first.events))
    assert second.ended
    assert head + tail == sent[run_id]
    assert tail[-1].kind == "cancelled"
    assert isinstance(tail[-1], agentnb.Cancelled)
    assert tail[-1].reason == "cancelled by a client"
    assert_gone(server, run_id)


async def test_one_of_two_listeners_leaving_does_not_cancel(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "chatty", "input": "talk-3"}
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json=body) as owner:
            await owner.more(3)
            run_id = owner.run_id
            async with open_stream(client, "GET", f"/api/runs/{run_id}/events") as watcher:
                await watcher.more(3)
                assert server.describe(run_id)["listeners"] == 2
            server.wait_for(lambda: server.hub.get(run_id).listeners < 2, timeout=1)
            # Nothing must change now. A cancel for a leaving listener comes within a few
            # ms, so a second look 20 ms on would see a wrong one: a bounded wait for "no
            # change", which no event could announce.
            await asyncio.sleep(0.02)
            described = server.describe(run_id)
            assert (described["status"], described["listeners"]) == ("running", 1), (
                "closing one listener's stream ended the other's too"
            )
            await owner.more(10)
            closing = time.perf_counter()
        took = server.wait_for(
            lambda: server.hub.get(run_id).status == "cancelled", timeout=2, since=closing
        )
        assert took <= CANCEL_WITHIN
        assert_gone(server, run_id)
    sent_texts = [e.kind for e in sent[run_id]]
    assert sent_texts[-1] == "cancelled"
    assert check_frames(owner) == sent[run_id][: len(owner.events)]
    assert check_frames(watcher) == sent[run_id][: len(watcher.events)]
