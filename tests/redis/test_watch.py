"""Watching a run served with a Redis store from another place: ``agentnb.redis.watch``.

Against a real redis-server. The watched runs are served by a ``RunHub`` with a
store in this process (its own control channel: cancels and answers still go
through Redis pub/sub), or by a real server process (``tests/redis/shared_app.py``)
started over HTTP. The watch's run re-emits the run's events, live, each once and in
order, its sub-runs as sub-runs; it ends as the run ended; its questions are
answered from here; stopping it cancels the run (or not, with ``on_stop``); a run
whose stream is missing, trimmed or unreachable, or whose frames are not its
events, fails the watch with an error that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

import agentnb
from agentnb import Ask, Custom, Event, Run, TextChunk, ToolCall
from agentnb._mirror import ended
from agentnb._registry import AgentInfo, agent_name
from agentnb.redis import (
    Expired,
    RedisStore,
    RemoteError,
    StoreError,
    StreamMissing,
    Watch,
    watch,
)
from agentnb.server._hub import RunHub
from agentnb.server._served import ServedRun
from agentnb.server._wire import sse_data, sse_frame
from harness.redis import RedisServer, redis_server
from harness.wait import eventually
from harness.web import ServerProcess
from tests.redis.shared_app import URL_VARIABLE
from tests.server.served import open_stream


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@contextlib.asynccontextmanager
async def hub_of(
    url: str, *agents: Callable[..., Any], keep: int = 10_000
) -> AsyncIterator[RunHub]:
    """A hub serving *agents* with a store at *url*, its control channel subscribed."""
    infos = {fn.__name__: AgentInfo(fn.__name__, fn, "") for fn in agents}
    hub = RunHub(infos, store=RedisStore(url, keep_count=keep))
    assert hub.shared is not None
    await hub.shared.start()
    try:
        yield hub
    finally:
        await hub.aclose()
        await hub.shared.aclose()


async def started(hub: RunHub, agent: str, *args: Any) -> tuple[ServedRun, Run]:
    """Run *agent* on *hub* as a request would (recorded before it is answered); the
    served run and its run (the served run lets go of it when it ends)."""
    served = hub.start(agent, args, "continue")
    run = served.run
    assert run is not None
    await hub.announced(served)
    return served, run


async def stored_events(url: str, run_id: str) -> list[Event]:
    """Every event of run *run_id* as its stream holds them (the server's own reading)."""
    async with RedisStore(url) as store:
        return [
            Event.from_json(sse_data(frame))
            async for frames in store.read(run_id)
            for frame in frames
        ]


def shape(event: Event, *, remote: bool = False) -> tuple[Any, ...]:
    """What a watch must reproduce of *event*: its kind, where it is below the root, and its
    payload; a sub-run's error by its text (the watch's is a ``RemoteError`` saying the
    remote exception's type and message)."""
    if event.kind == "error":
        payload = event.payload()
        said = f"{payload['type']}: {payload['message']}" if remote else payload["message"]
        return ("error", event.path[1:], said)
    if event.kind == "cancelled":
        return ("cancelled", event.path[1:])
    return (event.kind, event.path[1:], json.dumps(event.payload(), sort_keys=True))


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextChunk)]


# -- agents the hub serves (a gate makes a run wait for the test) -------------------------


async def deep() -> int:
    agentnb.emit("deep <b>down</b>; ")
    return 2


async def helper(topic: str) -> int:
    agentnb.emit("helping; ")
    await agentnb.run(deep, name="deep")
    agentnb.emit(ToolCall("look_up", {"term": topic}, call_id="c1"))
    return 1


async def broken() -> None:
    agentnb.emit("about to fail; ")
    raise ValueError("broken <i>here</i>")


def family_of(gate: asyncio.Event) -> Callable[..., Any]:
    async def family(topic: str) -> str:
        agentnb.emit(f"about {topic}; ")
        await gate.wait()
        await agentnb.run(helper, topic, name="helper")
        with contextlib.suppress(ValueError):
            await agentnb.run(broken, name="broken")
        agentnb.emit(Custom("note", {"html": "<img src=x onerror=alert(1)>"}))
        return f"{topic} done"

    return family


async def fails() -> None:
    agentnb.emit("trying; ")
    raise KeyError("gone <b>away</b>")


async def waiting() -> None:
    agentnb.emit("waiting")
    await asyncio.sleep(3600)


async def choose(prompt: str) -> str:
    value = await agentnb.ask(prompt, choices=["yes", "no"])
    agentnb.emit(f"got {value}")
    return value


async def asks_below(prompt: str) -> str:
    value: str = await agentnb.run(choose, prompt, name="asker")
    return value


async def counts(n: int) -> int:
    for i in range(n):
        agentnb.emit(str(i))
    return n


# -- live, exactly once, with the run's structure -----------------------------------------


async def test_a_live_run_is_watched_from_its_first_event_with_its_sub_runs(
    redis: RedisServer,
) -> None:
    gate = asyncio.Event()
    async with hub_of(redis.url, family_of(gate)) as hub:
        served, owner = await started(hub, "family", "the sea")
        local: list[Event] = []
        watched = agentnb.stream(watch(served.id, redis.url))
        async for event in watched:
            local.append(event)
            if isinstance(event, TextChunk) and event.text == "about the sea; ":
                assert owner.status == "running"  # live: the run waits for the gate
                gate.set()
        assert watched.run.result == "the sea done"
        assert watched.run.status == "done"
        remote = await stored_events(redis.url, served.id)
    assert [shape(e) for e in local] == [shape(e, remote=True) for e in remote]
    assert {e.path for e in local} == {
        ("watch",),
        ("watch", "helper"),
        ("watch", "helper", "deep"),
        ("watch", "broken"),
    }
    assert texts(local) == [
        "about the sea; ",
        "helping; ",
        "deep <b>down</b>; ",
        "about to fail; ",
    ]
    [failed] = [e for e in local if e.kind == "error"]
    assert failed.path == ("watch", "broken")
    assert failed.payload()["message"] == "ValueError: broken <i>here</i>"
    # Each local run's own events are counted 0, 1, 2, ... and it ends once.
    for path in {e.path for e in local}:
        mine = [e for e in local if e.path == path]
        assert [e.seq for e in mine] == list(range(len(mine)))
        assert [e.terminal for e in mine] == [False] * (len(mine) - 1) + [True]


async def test_a_watch_from_a_position_gets_exactly_the_events_after_it(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, counts) as hub:
        served, run = await started(hub, "counts", 30)
        await ended(run)
        remote = await stored_events(redis.url, served.id)
        assert len(remote) == 31
        for after in (0, 12, 28):
            local = [e async for e in agentnb.stream(watch(served.id, redis.url, after=after))]
            assert texts(local) == [str(i) for i in range(after + 1, 30)]
            assert local[-1].kind == "done"
            assert local[-1].payload()["result"] == 30
        # From the last event on (the run's end): nothing more to show, and the same end.
        for after in (29, 30):
            local = [e async for e in agentnb.stream(watch(served.id, redis.url, after=after))]
            assert [e.kind for e in local] == ["done"]
        assert await agentnb.run(watch(served.id, redis.url, after=30)) == 30
        with pytest.raises(ValueError, match="past the end"):
            await agentnb.run(watch(served.id, redis.url, after=31))


# -- how the watched run ended --------------------------------------------------------------


async def test_the_watch_fails_with_the_runs_error_and_ends_cancelled_with_it(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, fails, waiting) as hub:
        served, _ = await started(hub, "fails")
        with pytest.raises(RemoteError) as raised:
            await agentnb.run(watch(served.id, redis.url))
        assert raised.value.type == "KeyError"
        assert raised.value.message == "'gone <b>away</b>'"
        assert 'raise KeyError("gone <b>away</b>")' in raised.value.traceback

        served, owner = await started(hub, "waiting")
        watched = agentnb.stream(watch(served.id, redis.url))
        local = []
        async for event in watched:
            local.append(event)
            if isinstance(event, TextChunk):
                owner.cancel("stopped where it runs")
        assert [e.kind for e in local] == ["text", "cancelled"]
        assert local[-1].payload()["reason"] == (
            "the watched run was cancelled: stopped where it runs"
        )
        assert watched.run.status == "cancelled"


# -- questions ----------------------------------------------------------------------------


async def test_a_question_is_answered_from_the_watch_and_reaches_the_run(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, choose, asks_below) as hub:
        for agent in ("choose", "asks_below"):
            served, _ = await started(hub, agent, "Deploy <b>now</b>?")
            watched = agentnb.stream(watch(served.id, redis.url), answers=True)
            local = []
            async for event in watched:
                local.append(event)
                if isinstance(event, Ask):
                    assert event.prompt == "Deploy <b>now</b>?"
                    with pytest.raises(agentnb.InvalidAnswer, match="not one of the choices"):
                        watched.answer(event.ask_id, "maybe")  # refused here, still open
                    watched.answer(event.ask_id, "yes")
                    with pytest.raises(agentnb.InvalidAnswer, match="already answered"):
                        watched.answer(event.ask_id, "no")
            assert watched.run.result == "yes"
            remote = await stored_events(redis.url, served.id)
            assert [shape(e) for e in local] == [shape(e, remote=True) for e in remote]
            [answer] = [e for e in remote if e.kind == "answer"]
            assert answer.payload() == {
                "ask_id": next(e for e in local if isinstance(e, Ask)).ask_id,
                "value": "yes",
                "by": "code",  # as given here (stream.answer), carried to the run
            }
            assert "got yes" in texts(remote)


async def test_where_nothing_answers_here_the_question_waits_for_an_answer_from_elsewhere(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, choose) as hub:
        served, _ = await started(hub, "choose", "Go?")
        watched = agentnb.stream(watch(served.id, redis.url))  # no one answers here
        local = []
        async for event in watched:
            local.append(event)
            if isinstance(event, Ask):
                served.answer(event.ask_id, "no", "page")  # the run's own page answers
        assert [e.kind for e in local] == ["ask", "answer", "text", "done"]
        assert local[1].payload()["by"] == "page"
        assert watched.run.result == "no"


async def test_an_answer_that_finds_no_process_running_the_run_leaves_the_question_open(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, choose) as hub:
        assert hub.shared is not None
        served, _ = await started(hub, "choose", "Go?")
        watched = agentnb.stream(watch(served.id, redis.url), answers=True)
        local = []
        async for event in watched:
            local.append(event)
            if isinstance(event, Ask):
                await hub.shared.control.aclose()  # its process stops listening
                watched.answer(event.ask_id, "no")
                assert watched.run.questions == []  # taken here, on its way
                await eventually(lambda: watched.run.questions != [], 10, what="reopened")
                assert [q.ask_id for q in watched.run.questions] == [event.ask_id]
                await hub.shared.control.start()  # back
                watched.answer(event.ask_id, "yes")
        assert [e.kind for e in local] == ["ask", "answer", "text", "done"]
        assert local[1].payload()["value"] == "yes"
        assert watched.run.result == "yes"


# -- Stop -----------------------------------------------------------------------------------


async def test_stopping_the_watch_cancels_the_run_unless_told_to_continue(
    redis: RedisServer,
) -> None:
    async with hub_of(redis.url, waiting) as hub:
        for on_stop in ("cancel",) * 5 + ("continue",):
            served, owner = await started(hub, "waiting")
            watched = agentnb.stream(watch(served.id, redis.url, on_stop=on_stop))
            async for event in watched:
                assert isinstance(event, TextChunk)
                break
            await watched.aclose()  # as Stop does: the watch's run is cancelled
            assert watched.run.status == "cancelled"
            if on_stop == "cancel":
                async with asyncio.timeout(10):
                    await ended(owner)
                assert owner.status == "cancelled"
                remote = await stored_events(redis.url, served.id)
                assert remote[-1].payload()["reason"] == "cancelled by a client"
            else:
                await asyncio.sleep(0.3)  # a bounded wait for "no change"
                assert owner.status == "running"
                owner.cancel("done with it")
                await ended(owner)


# -- what cannot be watched: a clear error, never a hang ----------------------------------


async def test_a_run_with_no_stream_trimmed_or_past_its_end_is_refused(
    redis: RedisServer,
) -> None:
    with pytest.raises(StreamMissing, match="run nosuchrun has no stream"):
        await agentnb.run(watch("nosuchrun", redis.url))
    async with hub_of(redis.url, counts, keep=5) as hub:
        served, run = await started(hub, "counts", 20)
        await ended(run)
        with pytest.raises(Expired) as expired:
            await agentnb.run(watch(served.id, redis.url))
        assert (expired.value.position, expired.value.first) == (0, 16)
        assert await agentnb.run(watch(served.id, redis.url, after=15)) == 20
    with pytest.raises(ValueError, match="a run's id"):
        watch("../etc", redis.url)
    with pytest.raises(ValueError, match="a position or -1"):
        watch("abc", redis.url, after=-2)
    with pytest.raises(ValueError, match='"cancel" or "continue"'):
        watch("abc", redis.url, on_stop="leave")  # type: ignore[arg-type]


async def test_redis_going_away_fails_the_watch_with_a_store_error() -> None:
    with redis_server() as own:
        async with hub_of(own.url, waiting) as hub:
            served, owner = await started(hub, "waiting")
            watched = agentnb.stream(watch(served.id, own.url, block=0.5, reconnect=0.5))
            kinds = []
            with pytest.raises(StoreError, match=f"Redis at {own.url}"):  # noqa: PT012
                async with asyncio.timeout(30):
                    async for event in watched:
                        kinds.append(event.kind)
                        if isinstance(event, TextChunk):
                            own.stop()
            assert kinds == ["text", "error"]
            assert watched.run.status == "error"
            own.start()  # the hub closes cleanly
            owner.cancel("the test ends")
        own.stop()
        with pytest.raises(StoreError, match=f"Redis at {own.url}"):
            await agentnb.run(watch(served.id, own.url, reconnect=0.2))


async def test_frames_that_are_not_the_runs_events_fail_the_watch_and_never_become_more(
    redis: RedisServer,
) -> None:
    script = "<script>alert(1)</script> **bold** $x$"
    events = [e async for e in agentnb.stream(counts, 0)]
    assert [e.kind for e in events] == ["done"]

    def frame(run_id: str, n: int, event: Event, **changes: Any) -> bytes:
        data = {**event.to_dict(), "run_id": run_id, **changes}
        return sse_frame(event, json.dumps(data), run_id, n)

    async def written(run_id: str, frames: list[bytes]) -> None:
        async with RedisStore(redis.url) as store:
            writer = store.writer(run_id)
            for i, data in enumerate(frames):
                writer.append(data, last=i == len(frames) - 1)
            await writer.aclose()

    done = events[0]
    chunk = TextChunk(script)
    chunk_json = {**chunk.to_dict(), "run_id": "h1", "seq": 0, "path": ["x"], "ts": 1.0}
    good = sse_frame(chunk, json.dumps(chunk_json), "h1", 0)
    await written("h1", [good, frame("h1", 1, done, seq=1)])
    local = [e async for e in agentnb.stream(watch("h1", redis.url))]
    assert [(e.kind, e.payload()) for e in local] == [
        ("text", {"text": script}),
        ("done", {"result": 0}),
    ]

    cases = {
        "h2": (b"event: text\r\nid: h2:1\r\ndata: {not json\r\n\r\n", "position 1 is not an event"),
        "h3": (
            b'event: text\r\nid: h3:1\r\ndata: {"kind": "text"}\r\n\r\n',
            "position 1 is not an event",
        ),
        "h4": (frame("h4", 1, done).replace(b"id: h4:1", b"id: h9:1"), "has the id b'h9:1'"),
        "h5": (frame("h5", 1, done).replace(b"id: h5:1", b"id: h5:7"), "has the id b'h5:7'"),
        "h6": (b"data: <b>x</b>\r\n\r\n", "has the id b'none'"),
    }
    for run_id, (bad, message) in cases.items():
        first = sse_frame(chunk, json.dumps({**chunk_json, "run_id": run_id}), run_id, 0)
        await written(run_id, [first, bad, frame(run_id, 2, done, seq=1)])
        seen: list[Event] = []
        with pytest.raises(StoreError, match=message):
            await agentnb.run(watch(run_id, redis.url), sink=seen.append)
        assert [e.kind for e in seen] == ["text", "error"]


# -- a run of a real server process --------------------------------------------------------


@pytest.fixture(scope="module")
def server(redis: RedisServer) -> Iterator[str]:
    """The base URL of a server process on *redis* (``tests/redis/shared_app.py``)."""
    saved = os.environ.get(URL_VARIABLE)
    os.environ[URL_VARIABLE] = redis.url
    process = None
    try:
        process = ServerProcess(["-m", "tests.redis.shared_app"])
        yield f"http://127.0.0.1:{process.port}"
    finally:
        if process is not None:
            process.close()
        if saved is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = saved


async def start_there(base: str, body: dict[str, Any]) -> str:
    """Start a run on the server at *base* and leave it running (on_disconnect continue)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        body = {**body, "on_disconnect": "continue"}
        async with open_stream(client, "POST", "/api/stream", json=body) as reading:
            await reading.more(1)
            return reading.run_id


async def status_there(base: str, run_id: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        status: str = (await client.get(f"/api/runs/{run_id}")).json()["status"]
        return status


async def test_a_run_of_another_process_is_watched_answered_and_stopped_from_here(
    redis: RedisServer, server: str
) -> None:
    run_id = await start_there(server, {"agent": "choose", "input": "Ship it?"})
    watched = agentnb.stream(watch(run_id, redis.url, name="shipping"), answers=True)
    local = []
    async for event in watched:
        local.append(event)
        if isinstance(event, Ask):
            assert await status_there(server, run_id) == "running"
            watched.answer(event.ask_id, "yes")
    assert [(e.kind, e.path) for e in local] == [
        ("ask", ("shipping",)),
        ("answer", ("shipping",)),
        ("text", ("shipping",)),
        ("done", ("shipping",)),
    ]
    assert texts(local) == ["got yes"]
    assert watched.run.result == "yes"
    assert await status_there(server, run_id) == "done"

    run_id = await start_there(server, {"agent": "waiting"})
    watched = agentnb.stream(watch(run_id, redis.url))
    async for event in watched:
        assert isinstance(event, TextChunk)
        break
    await watched.aclose()
    async with asyncio.timeout(10):  # the owner took the cancel; its run ends at once
        while await status_there(server, run_id) != "cancelled":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    remote = await stored_events(redis.url, run_id)
    assert [e.kind for e in remote] == ["text", "cancelled"]
    assert remote[-1].payload()["reason"] == "cancelled by a client"


def test_a_watch_is_an_agent_every_front_takes() -> None:
    watched = watch("abc123", "redis://:secret@127.0.0.1:1/0", name="mine")
    assert isinstance(watched, Watch)
    assert agent_name(watched) == "mine"
    assert "secret" not in repr(watched)
    assert "secret" not in (watched.__doc__ or "")
