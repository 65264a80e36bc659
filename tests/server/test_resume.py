"""``GET /api/runs/{id}/events``: resuming a run after ``Last-Event-ID``, each event exactly once.

Streams are joined across reconnections and compared with what the served run was
handed on the server: ids consecutive, none skipped, none repeated, the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import agentnb
from agentnb.server import create_app
from harness.wire import expected_bytes
from tests.helpers import forever
from tests.server.served import (
    Reading,
    Server,
    check_frames,
    check_whole_run,
    open_stream,
    post_stream,
    resume,
    served,
)


async def paced(n: int, pause: float = 0.002) -> int:
    """Emits "0" .. "n-1", sleeping *pause* seconds after each; returns n."""
    for i in range(n):
        agentnb.emit(str(i))
        await asyncio.sleep(pause)
    return n


async def burst(n: int) -> int:
    """Emits "0" .. "n-1" without giving the loop away."""
    for i in range(n):
        agentnb.emit(str(i))
    return n


async def parent(n: int) -> str:
    """Runs ``paced`` twice as child runs, emitting between them."""
    agentnb.emit("start")
    await agentnb.run(paced, n, 0.002)
    agentnb.emit("middle")
    await agentnb.run(paced, n, 0.002)
    return "both"


async def waiting() -> None:
    """Waits until cancelled."""
    agentnb.emit("waiting")
    await forever()


AGENTS: dict[str, Any] = {"paced": paced, "burst": burst, "parent": parent, "waiting": waiting}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


@pytest.fixture(scope="module")
def small() -> Iterator[Server]:
    """Replay buffers of 5 events; finished runs forgotten after 0.2 s, at most 3 kept."""
    app = create_app(agents=AGENTS, replay_size=5, keep_seconds=0.2, keep_finished=3)
    with served(app) as server:
        yield server


def joined(readings: list[Reading]) -> list[agentnb.Event]:
    """The events of consecutive readings of one run, checked to continue each other."""
    events: list[agentnb.Event] = []
    for reading in readings:
        events += check_frames(reading, first=len(events))
    return events


async def test_resume_a_live_detached_run_again_and_again(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "parent", "input": 40, "on_disconnect": "continue"}
    async with server.client() as client:
        readings = [await post_stream(client, body, limit=5)]
        run_id = readings[0].run_id
        statuses = []
        for how in ("header", "query", "header", "query", "header"):
            last = readings[-1].events[-1].id
            server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
            statuses.append(server.describe(run_id)["status"])
            url = f"/api/runs/{run_id}/events"
            request: dict[str, Any] = (
                {"headers": {"Last-Event-ID": last}}
                if how == "header"
                else {"params": {"last_event_id": last}}
            )
            async with open_stream(client, "GET", url, **request) as reading:
                await reading.more(7)
            readings.append(reading)
        assert statuses == ["running"] * 5  # each resume joined a live run
        last = readings[-1].events[-1].id
        readings.append(await resume(client, run_id, last))
    events = joined(readings)
    assert events == sent[run_id]
    assert readings[-1].ended
    assert events[-1].kind == "done"
    assert events[-1].run_id == run_id
    assert len(events) == 2 + 2 * (40 + 1) + 1
    assert [e.text for e in events if isinstance(e, agentnb.TextChunk)] == (
        ["start"] + [str(i) for i in range(40)] + ["middle"] + [str(i) for i in range(40)]
    )


async def test_resume_a_finished_run_from_every_point(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        whole = await post_stream(client, {"agent": "parent", "input": 3})
        events = check_whole_run(whole, sent)
        run_id = whole.run_id
        assert server.describe(run_id)["status"] == "done"
        frames = [e.id for e in whole.events]
        for after in range(-1, len(events)):
            last = frames[after] if after >= 0 else None
            rest = await resume(client, run_id, last)
            assert rest.ended
            assert check_frames(rest, first=after + 1) == events[after + 1 :]
            # The very bytes of the first stream, from that point on.
            assert bytes(rest.raw) == expected_bytes(whole.events[after + 1 :])
        # Several in a row from the same point give the same events.
        again = [await resume(client, run_id, frames[2]) for _ in range(3)]
        assert all(r.events == whole.events[3:] for r in again)
    server.wait_for(lambda: server.hub.get(run_id).listeners == 0, timeout=1)


async def test_two_listeners_at_once_see_the_same_events(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "paced", "input": 60, "on_disconnect": "continue"}
    async with server.client() as client:
        start = await post_stream(client, body, limit=1)
        run_id = start.run_id

        async def listen(last: str | None) -> Reading:
            return await resume(client, run_id, last)

        first, second, third = await asyncio.gather(
            listen(None), listen(start.events[0].id), listen(None)
        )
    assert [first.ended, second.ended, third.ended] == [True, True, True]
    assert check_frames(first) == sent[run_id]
    assert check_frames(third) == sent[run_id]
    assert check_frames(second, first=1) == sent[run_id][1:]
    assert bytes(first.raw) == bytes(third.raw)
    assert sent[run_id][-1].kind == "done"


async def test_resuming_an_unknown_run_is_404(server: Server) -> None:
    async with server.client() as client:
        answer = await client.get(
            "/api/runs/0123456789abcdef/events", headers={"Last-Event-ID": "0123456789abcdef:3"}
        )
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_run"
    assert "'0123456789abcdef'" in answer.json()["message"]


@pytest.mark.parametrize("how", ["header", "query"])
@pytest.mark.parametrize(
    ("shape", "says"),
    [
        ("no colon", "is not <run id>:<n>"),
        ("other run", "belongs to run"),
        ("non-digit", "is not <run id>:<n>"),
        ("negative", "is not <run id>:<n>"),
        ("empty n", "is not <run id>:<n>"),
        ("huge", "is not <run id>:<n>"),
        ("past the end", "is past the end"),
        ("far past the end", "is past the end"),
    ],
)
async def test_a_malformed_last_event_id_is_400_bad_event_id(
    server: Server, how: str, shape: str, says: str
) -> None:
    async with server.client() as client:
        run = await post_stream(client, {"agent": "paced", "input": 3})
        other = await post_stream(client, {"agent": "paced", "input": 1})
        run_id, count = run.run_id, len(run.events)
        value = {
            "no colon": run_id,
            "other run": f"{other.run_id}:1",
            "non-digit": f"{run_id}:x",
            "negative": f"{run_id}:-1",
            "empty n": f"{run_id}:",
            "huge": f"{run_id}:{'9' * 30}",
            "past the end": f"{run_id}:{count}",
            "far past the end": f"{run_id}:{count + 1000}",
        }[shape]
        request: dict[str, Any] = (
            {"headers": {"Last-Event-ID": value}}
            if how == "header"
            else {"params": {"last_event_id": value}}
        )
        answer = await client.get(f"/api/runs/{run_id}/events", **request)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["error", "message"]
    assert body["error"] == "bad_event_id"
    assert says in body["message"]
    assert value in body["message"]
    server.wait_for(lambda: server.hub.get(run_id).listeners == 0, timeout=1)


async def test_resuming_from_the_last_event_of_a_finished_run_gives_nothing_more(
    server: Server,
) -> None:
    async with server.client() as client:
        run = await post_stream(client, {"agent": "paced", "input": 2})
        rest = await resume(client, run.run_id, run.events[-1].id)
    assert rest.response.status_code == 200
    assert rest.ended
    assert rest.events == []
    assert bytes(rest.raw) == b""


async def test_a_resume_point_out_of_the_replay_buffer_is_410_expired(
    small: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with small.client() as client:
        whole = await post_stream(client, {"agent": "paced", "input": 20})
        run_id = whole.run_id
        count = len(sent[run_id])
        assert count == 21
        # The last 5 events are kept: resuming after #count-6 works, before it does not.
        kept = await resume(client, run_id, f"{run_id}:{count - 6}")
        assert check_frames(kept, first=count - 5) == sent[run_id][-5:]
        for after in (None, f"{run_id}:0", f"{run_id}:3", f"{run_id}:{count - 7}"):
            answer = await client.get(
                f"/api/runs/{run_id}/events",
                headers={"Last-Event-ID": after} if after is not None else {},
            )
            assert answer.status_code == 410, (after, answer.text)
            body = answer.json()
            assert body["error"] == "expired"
            assert "no longer buffered" in body["message"]
            assert "keeps the last 5" in body["message"]
    small.wait_for(lambda: small.hub.get(run_id).listeners == 0, timeout=1)


async def test_a_listener_that_falls_behind_the_buffer_is_ended_not_left_hanging(
    small: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    # 20 events at once overrun a 5-event buffer before the listener could send any.
    async with small.client() as client:
        reading = await post_stream(client, {"agent": "burst", "input": 20})
        run_id = reading.run_id
        assert reading.ended
        events = check_frames(reading)
        assert events == sent[run_id][: len(events)]
        if len(events) < len(sent[run_id]):
            last = reading.events[-1].id if reading.events else None
            answer = await client.get(
                f"/api/runs/{run_id}/events",
                headers={"Last-Event-ID": last} if last is not None else {},
            )
            assert answer.status_code == 410
            assert answer.json()["error"] == "expired"


@contextlib.contextmanager
def later(server: Server, seconds: float) -> Iterator[None]:
    """Within the block, the clock the hub judges ``keep_seconds`` by is *seconds* ahead:
    that much time has passed for it, at once (no sleeping)."""
    hub = server.hub
    real = hub._clock
    server.call(lambda: setattr(hub, "_clock", lambda: real() + seconds))
    try:
        yield
    finally:
        server.call(lambda: setattr(hub, "_clock", real))


async def test_finished_runs_are_forgotten_after_keep_seconds(
    small: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with small.client() as client:
        done = await post_stream(client, {"agent": "paced", "input": 2})
        live = await post_stream(client, {"agent": "waiting", "on_disconnect": "continue"}, limit=1)
        assert (await client.get(f"/api/runs/{done.run_id}")).status_code == 200
        with later(small, 0.3):
            for path in ("", "/events"):
                answer = await client.get(f"/api/runs/{done.run_id}{path}")
                assert answer.status_code == 404
                assert answer.json()["error"] == "unknown_run"
                assert "ended more than 0.2 s ago" in answer.json()["message"]
            # A live run is never forgotten, however old.
            assert (await client.get(f"/api/runs/{live.run_id}")).json()["status"] == "running"
        await client.post(f"/api/runs/{live.run_id}/cancel")
        small.wait_for(lambda: small.hub.get(live.run_id).status == "cancelled")
        assert (await client.get(f"/api/runs/{live.run_id}")).status_code == 200
        with later(small, 0.3):
            assert (await client.get(f"/api/runs/{live.run_id}")).status_code == 404
    assert [e.kind for e in sent[live.run_id]] == ["text", "cancelled"]


async def test_at_most_keep_finished_runs_are_kept(
    small: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with small.client() as client:
        runs = [
            (await post_stream(client, {"agent": "paced", "input": 1})).run_id for _ in range(5)
        ]
        found = [(await client.get(f"/api/runs/{run_id}")).status_code for run_id in runs]
    assert found == [404, 404, 200, 200, 200]
