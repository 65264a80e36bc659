"""agentnb.client against a real uvicorn: the same events, resumed across dropped connections.

Drops are real: the client talks to the server through a TCP proxy in this test
(:class:`Proxy`) that can cut every open connection, or stop accepting new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

import agentnb
from agentnb import Custom, Event, Status, ToolCall, ToolResult
from agentnb.client import (
    ConnectionLost,
    RemoteAgentError,
    RemoteStream,
    ServerError,
    remote,
    resume,
    stream,
)
from agentnb.server import create_app
from agentnb.server._hub import RunHub
from agentnb.server._wire import sse_data
from harness.wait import eventually, until
from harness.web import in_server_loop, serving
from tests.helpers import Recorder, forever, texts


async def kinds_agent(topic: str) -> dict[str, object]:
    """Every kind an agent emits, including a sub-agent's events."""
    agentnb.emit(Status("thinking"))
    agentnb.emit(ToolCall("look_up", {"term": topic}, call_id="c1"))
    agentnb.emit(ToolResult("look_up", ["a", 1, None], call_id="c1"))
    agentnb.emit(Custom("progress", {"done": 1, "of": 2}))
    await agentnb.run(helper, topic)
    agentnb.emit(f"about {topic}\r\n\u2028 🌊")
    return {"topic": topic}


async def helper(topic: str) -> str:
    agentnb.emit(f"helping with {topic}")
    return "helped"


async def paced(count: int) -> int:
    for i in range(count):
        agentnb.emit(f"{i} ")
        await asyncio.sleep(0.01)
    return count


async def failing(text: str) -> None:
    agentnb.emit("about to fail")
    raise ValueError(f"bad input {text!r}")


async def waiting(text: str) -> None:
    agentnb.emit("waiting")
    await forever()


async def family(topic: str) -> str:
    """Sub-runs two deep, one that fails and one that is cancelled, between the parent's text."""
    agentnb.emit("before ")
    await agentnb.run(middle, topic)
    with contextlib.suppress(ValueError):
        await agentnb.run(failing, topic)
    stuck = agentnb.start(waiting, topic)
    await asyncio.sleep(0.05)
    stuck.cancel("enough")
    with contextlib.suppress(agentnb.RunCancelled):
        await stuck.wait()
    agentnb.emit("after")
    return "family done"


async def middle(topic: str) -> str:
    agentnb.emit(Status("in the middle"))
    agentnb.emit(f"middle {topic} ")
    await agentnb.run(helper, topic)
    agentnb.emit("middle again ")
    return "middle"


AGENTS: list[Callable[..., Any]] = [kinds_agent, helper, paced, failing, waiting, family]


_hubs: dict[str, RunHub] = {}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = create_app(agents=AGENTS)
    with serving(app) as url:
        _hubs[url] = app.state.hub
        yield url
        del _hubs[url]


def server_events(base: str, run_id: str) -> list[Event]:
    """What the server buffered for the run (its replay buffer), rebuilt as events."""

    def read() -> list[str]:
        return [sse_data(frame) for frame in _hubs[base].get(run_id).buffer.read(0)]

    return [Event.from_json(text) for text in in_server_loop(base, read)]


async def drain(events: RemoteStream, each: Callable[[Event], None] = lambda e: None) -> None:
    async with events:
        async for event in events:
            each(event)


class FirstEvent(Recorder):
    """A recorder that also says when the first event came."""

    def __init__(self) -> None:
        super().__init__()
        self.first = asyncio.Event()

    def send(self, event: Event) -> None:
        super().send(event)
        self.first.set()


def status_of(base: str, run_id: str) -> str:
    return str(httpx.get(f"{base}/api/runs/{run_id}").json()["status"])


def wait_status(base: str, run_id: str, want: str, timeout: float = 2.0) -> float:
    """Seconds until the run's status is *want* (fails after *timeout*)."""
    return until(
        lambda: status_of(base, run_id) == want, timeout, what=f"run {run_id} {want}", every=0.005
    )


class Proxy:
    """A TCP proxy to *upstream* that can cut its connections (``drop``) or refuse new ones."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self.requests: list[bytes] = []
        self.refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if log:
                        self.requests.append(data)
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, True)),
            asyncio.ensure_future(pipe(up_reader, writer, False)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks)
        self._tasks.difference_update(tasks)


@contextlib.asynccontextmanager
async def proxy_to(base: str) -> AsyncIterator[Proxy]:
    async with Proxy(int(base.rsplit(":", 1)[1])) as proxy:
        yield proxy


# -- stream() -------------------------------------------------------------------


async def test_stream_yields_the_servers_events_typed_and_exact(base: str) -> None:
    async with stream(base, "kinds_agent", "the sea") as events:
        got = [event async for event in events]
    assert events.ended
    assert got == server_events(base, events.run_id or "")
    assert [e.kind for e in got] == [
        "status", "tool_call", "tool_result", "progress", "text", "done", "text", "done",
    ]  # fmt: skip
    assert isinstance(got[3], Custom)
    assert got[3].data == {"done": 1, "of": 2}
    assert got[-1].result == {"topic": "the sea"}  # type: ignore[attr-defined]
    assert got[4].path == ("kinds_agent", "helper")
    assert got[6].text == "about the sea\r\n\u2028 🌊"  # type: ignore[attr-defined]
    assert events.last_event_id == f"{events.run_id}:{len(got) - 1}"


async def test_stream_without_input_calls_the_agent_without_argument(base: str) -> None:
    async def no_args() -> str:
        return "no input"

    app = create_app(agents=[no_args])
    with serving(app) as url:
        async with stream(url, "no_args") as events:
            got = [event async for event in events]
    assert got[-1].result == "no input"  # type: ignore[attr-defined]


async def test_a_dropped_connection_is_resumed_with_every_event_once(base: str) -> None:
    async with proxy_to(base) as proxy:
        got: list[Event] = []
        async with stream(proxy.url, "paced", 60, retry_delay=0.01) as events:
            async for event in events:
                got.append(event)
                if len(got) in (10, 30):
                    proxy.drop()
    assert proxy.connections == 3
    resumes = [r for r in proxy.requests if r.startswith(b"GET")]
    assert len(resumes) == 2
    assert b"last-event-id: " + f"{events.run_id}:9".encode() in resumes[0].lower()
    assert got == server_events(base, events.run_id or "")
    assert [e.seq for e in got] == list(range(61))
    assert got[-1].kind == "done"


async def test_leaving_the_loop_early_cancels_the_remote_run(base: str) -> None:
    async with stream(base, "paced", 500) as events:
        async for _event in events:
            break
    assert not events.ended
    assert events.run_id is not None
    await asyncio.to_thread(wait_status, base, events.run_id, "cancelled", 1.0)


async def test_breaking_out_of_a_bare_loop_cancels_the_remote_run(base: str) -> None:
    # No ``async with``: the dropped stream is closed when it is dropped (it holds no
    # reference cycle that would leave its generators to be finalized all at once).
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    async for event in stream(base, "paced", 500):
        run_id = event.run_id
        break
    await asyncio.to_thread(wait_status, base, run_id, "cancelled", 1.0)
    assert errors == []


async def test_a_refused_request_raises_the_servers_message(base: str) -> None:
    with pytest.raises(ServerError) as info:
        await drain(stream(base, "nobody", "x"))
    assert info.value.status == 404
    assert info.value.code == "unknown_agent"
    assert "no agent named 'nobody'" in str(info.value)
    assert "kinds_agent" in str(info.value)


async def test_a_server_that_stays_gone_raises_connection_lost(base: str) -> None:
    got: list[Event] = []
    async with proxy_to(base) as proxy:
        events = stream(proxy.url, "paced", 200, retries=2, retry_delay=0.01)

        def cut_after_five(event: Event) -> None:
            got.append(event)
            if len(got) == 5:
                proxy.refusing = True
                proxy.drop()

        with pytest.raises(ConnectionLost) as info:
            await drain(events, cut_after_five)
        run_id = events.run_id
    assert info.value.run_id == run_id
    assert info.value.last_event_id == f"{run_id}:4"
    assert "agentnb.client.resume(" in str(info.value)
    # The client could not reach the server to cancel the run: it went on detached,
    # and resuming it later gives the rest.
    assert run_id is not None
    async with resume(base, run_id, info.value.last_event_id) as rest:
        tail = [event async for event in rest]
    assert [e.seq for e in got + tail] == list(range(201))
    assert texts(got + tail) == [f"{i} " for i in range(200)]


async def test_resume_continues_a_detached_run(base: str) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as client,
        aconnect_sse(
            client,
            "POST",
            f"{base}/api/stream",
            json={"agent": "paced", "input": 40, "on_disconnect": "continue"},
        ) as source,
    ):
        head = []
        async for sse in source.aiter_sse():
            head.append(Event.from_json(sse.data))
            last_id = sse.id
            if len(head) == 3:
                break
    run_id = head[0].run_id
    assert status_of(base, run_id) == "running"
    async with resume(base, run_id, last_id) as rest:
        tail = [event async for event in rest]
    assert head + tail == server_events(base, run_id)
    with pytest.raises(ServerError) as info:
        await drain(resume(base, run_id, f"{run_id}:x"))
    assert info.value.code == "bad_event_id"


# -- remote(): a server's agent as a local one --------------------------------------


async def test_remote_agent_feeds_local_sinks_with_the_remote_events(base: str) -> None:
    recorder = Recorder()
    result = await agentnb.run(remote(base, "kinds_agent"), "tides", sink=recorder)
    assert result == {"topic": "tides"}
    assert recorder.kinds() == [
        "status", "tool_call", "tool_result", "progress", "text", "done", "text", "done",
    ]  # fmt: skip
    assert [e.path for e in recorder.events] == [("kinds_agent",)] * 4 + [
        ("kinds_agent", "helper")
    ] * 2 + [("kinds_agent",)] * 2
    assert "".join(texts(recorder.events)) == ("helping with tidesabout tides\r\n\u2028 🌊")


def shape(events: list[Event]) -> list[tuple[str, tuple[str, ...], str]]:
    """Each event's kind, path and payload: what a sink shows, without ids and times."""
    out = []
    for event in events:
        payload = dict(event.payload())
        if event.kind == "error":  # the local copy wraps the remote error and its traceback
            payload = {"message": str(payload["message"]).split(": ", 1)[-1]}
        out.append((event.kind, event.path, repr(sorted(payload.items()))))
    return out


async def test_remote_sub_runs_are_local_sub_runs_as_the_local_run_has_them(base: str) -> None:
    """Children, grandchildren, a failed and a cancelled child: the same runs, in the same order."""
    here, there = Recorder(), Recorder()
    assert await agentnb.run(family, "tides", sink=here) == "family done"
    assert await agentnb.run(remote(base, "family"), "tides", sink=there) == "family done"
    assert shape(there.events) == shape(here.events)
    assert [e.path for e in there.events if e.terminal] == [
        ("family", "middle", "helper"), ("family", "middle"), ("family", "failing"),
        ("family", "waiting"), ("family",),
    ]  # fmt: skip
    runs = {e.path: e.run_id for e in there.events}
    assert len(set(runs.values())) == 5  # five local runs, each with its own id
    for path in runs:  # each local run's events are numbered as its own
        seqs = [e.seq for e in there.events if e.path == path]
        assert seqs == sorted(set(seqs))


async def test_cancelling_a_remote_run_with_live_sub_runs_ends_every_local_one(base: str) -> None:
    recorder = FirstEvent()
    run = agentnb.start(remote(base, "family"), "x", sink=recorder)
    await eventually(lambda: any(e.path == ("family", "waiting") for e in recorder.events))
    run.cancel("stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    ends = [(e.path, e.kind) for e in recorder.events if e.terminal]
    assert ends[-2:] == [(("family", "waiting"), "cancelled"), (("family",), "cancelled")]
    assert len({path for path, _ in ends}) == len(ends)  # exactly one end per run


async def test_remote_agent_error_is_raised_locally_with_the_remote_traceback(
    base: str,
) -> None:
    recorder = Recorder()
    with pytest.raises(RemoteAgentError) as info:
        await agentnb.run(remote(base, "failing"), "x", sink=recorder)
    assert info.value.type == "ValueError"
    assert str(info.value) == "ValueError: bad input 'x'"
    assert "in failing" in info.value.traceback
    error = recorder.events[-1]
    assert error.kind == "error"
    assert "The remote traceback" in error.traceback  # type: ignore[attr-defined]


async def test_cancelling_the_local_run_cancels_the_remote_one(base: str) -> None:
    recorder = FirstEvent()
    run = agentnb.start(remote(base, "waiting"), "x", sink=recorder)
    await recorder.first.wait()
    run.cancel("stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    seconds = await asyncio.to_thread(wait_status, base, remote_run_id(base), "cancelled", 1.0)
    assert seconds <= 0.1
    assert recorder.kinds() == ["text", "cancelled"]


def remote_run_id(base: str) -> str:
    """The server's most recently started run of ``waiting``."""
    runs = [s for s in _hubs[base]._runs.values() if s.agent == "waiting"]
    return runs[-1].id


async def test_a_remote_run_cancelled_on_the_server_ends_the_local_run_cancelled(
    base: str,
) -> None:
    recorder = FirstEvent()
    run = agentnb.start(remote(base, "waiting"), "x", sink=recorder)
    await recorder.first.wait()
    await agentnb.client.cancel(base, remote_run_id(base))
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert recorder.kinds() == ["text", "cancelled"]
    assert "the remote run was cancelled" in recorder.events[-1].reason  # type: ignore[attr-defined]


async def test_a_run_quiet_for_longer_than_the_keep_alive_ping_streams_on(base: str) -> None:
    # httpx-sse yields an empty "event" (the last id, no data) after each ": ping"
    # comment; the SSE standard dispatches none, and the client must not see one.
    async def quiet() -> str:
        agentnb.emit("before")
        await asyncio.sleep(1.0)  # five pings
        agentnb.emit("after")
        return "done"

    with serving(create_app(agents=[quiet], ping=0.2)) as url:
        async with stream(url, "quiet") as events:
            got = [event async for event in events]
    assert [e.kind for e in got] == ["text", "text", "done"]
    assert texts(got) == ["before", "after"]


def _requiring(token: str, app: Any) -> Any:
    """ASGI: answer 401 to a request without ``Authorization: Bearer <token>``."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    return guarded


async def test_leaving_early_cancels_with_the_callers_headers() -> None:
    app = create_app(agents=AGENTS)
    with serving(_requiring("s3cret", app)) as url:
        auth = {"Authorization": "Bearer s3cret"}
        async with stream(url, "paced", 500, headers=auth) as events:
            async for _event in events:
                break
        run_id = events.run_id
        assert run_id is not None

        def status() -> str:
            return app.state.hub.get(run_id).status  # type: ignore[no-any-return]

        await eventually(
            lambda: in_server_loop(url, status) == "cancelled",
            2,
            what="the cancel reaching the server",
            every=0.01,
        )
