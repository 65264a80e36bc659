"""An event emitted on the server's loop is written to waiting SSE clients in the agent's own step.

Against a real uvicorn: the first event of a step reaches the client while the
agent is still busy in that step (so it cannot have been written by another
task); when the socket is full, or a middleware waits in ``send``, the client's
own task finishes the write and every event still arrives once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from fastapi import Request, Response
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import agentnb
import agentnb.server._hub as hub_module
from agentnb._registry import AgentInfo
from agentnb.server import create_app
from agentnb.server._eager import Pending, start_eagerly
from agentnb.server._hub import Listener, RunHub
from tests.served import Reading, Server, SseParser, open_stream, post_stream, served

BUSY = 0.6  # seconds the busy agent holds the server's loop after each event
FREED: list[float] = []  # when the busy agent let go of the loop after each event


async def busy(steps: int) -> None:
    """Waits for its listeners, then in each step emits an event and holds the loop BUSY s."""
    await asyncio.sleep(0.3)  # the responses are sent and their listeners wait
    for i in range(steps):
        agentnb.emit(f"step {i}")
        time.sleep(BUSY)  # noqa: ASYNC251 - holds the server's loop: no other task runs meanwhile
        FREED.append(time.monotonic())
        await asyncio.sleep(0)


async def big(count: int) -> int:
    """Emits *count* 64 KiB texts, one per loop step."""
    for i in range(count):
        agentnb.emit(f"{i:08d}" + "x" * (65536 - 8))
        await asyncio.sleep(0)
    return count


async def paced(count: int) -> int:
    for i in range(count):
        agentnb.emit(f"{i} ")
        await asyncio.sleep(0.002)
    return count


SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("SPAN", default="none")
LEAKED: list[int] = []  # steps after which the agent saw a middleware's context variable
AGENT_SAW: list[str] = []  # what reached the patient agent


async def big_checked(count: int) -> int:
    """As big, noting whenever a send wrapper's context variable shows in the agent."""
    for i in range(count):
        agentnb.emit(f"{i:08d}" + "x" * (65536 - 8))
        if SPAN.get() != "none":
            LEAKED.append(i)
        await asyncio.sleep(0)
    return count


async def patient(count: int) -> str:
    """Emits *count* 64 KiB texts, then works on for 1.5 s without emitting."""
    try:
        for i in range(count):
            agentnb.emit(f"{i:08d}" + "x" * (65536 - 8))
            await asyncio.sleep(0.005)
        await asyncio.sleep(1.5)
    except BaseException as exc:
        AGENT_SAW.append(repr(exc))
        raise
    AGENT_SAW.append("finished")
    return "finished"


AGENTS = {
    "busy": busy,
    "big": big,
    "paced": paced,
    "big_checked": big_checked,
    "patient": patient,
}


class Middleware:
    """A pure ASGI middleware whose send wrapper is *wrap*(send, message)."""

    def __init__(self, app: ASGIApp, wrap: Callable[[Send, Message], Awaitable[None]]) -> None:
        self.app = app
        self.wrap = wrap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            await self.wrap(send, message)

        await self.app(scope, receive, wrapped)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each write begun from emit: True if it finished there, False if it had to wait."""
    outcomes: list[bool] = []

    def spy(
        awaitable: Awaitable[None], task: asyncio.Task[Any], context: contextvars.Context
    ) -> Pending | None:
        pending = start_eagerly(awaitable, task, context)
        outcomes.append(pending is None)
        return pending

    monkeypatch.setattr(hub_module, "start_eagerly", spy)
    return outcomes


async def test_an_event_reaches_every_waiting_client_while_the_agent_is_still_in_its_step(
    writes: list[bool],
) -> None:
    with served(create_app(agents=AGENTS)) as server:
        async with server.client() as client:
            FREED.clear()
            body = {"agent": "busy", "input": 2, "on_disconnect": "continue"}
            async with open_stream(client, "POST", "/api/stream", json=body) as first:
                await first.more(0)  # the response's head is in: the run has started
                url = f"/api/runs/{first.run_id}/events"
                async with open_stream(client, "GET", url) as second:
                    arrivals = await asyncio.gather(_arrivals(first), _arrivals(second))
    assert len(FREED) == 2
    for times in arrivals:
        assert list(times) == ["step 0", "step 1", "done"]
        # Each text arrived while the agent still held the server's loop in the step that
        # emitted it (the same clock: the server runs in a thread of this process).
        assert times["step 0"] < FREED[0] - BUSY / 2, (times, FREED)
        assert times["step 1"] < FREED[1] - BUSY / 2, (times, FREED)
    assert writes == [True] * 6  # two texts and done, to two clients, each written in emit


async def _arrivals(reading: Reading) -> dict[str, float]:
    """When each event of *reading* arrived (the text, or the kind of a non-text event)."""
    times: dict[str, float] = {}
    while not reading.ended:
        for sse in await reading.more(1):
            event = agentnb.Event.from_json(sse.data)
            name = event.text if isinstance(event, agentnb.TextChunk) else event.kind
            times[name] = time.monotonic()
    return times


async def test_a_client_whose_socket_is_full_still_gets_every_event_once_in_order(
    writes: list[bool],
) -> None:
    count = 200  # 12.5 MiB: more than the kernel buffers of a client that does not read
    with served(create_app(agents=AGENTS)) as server:
        raw = await asyncio.to_thread(_read_slowly, server, {"agent": "big", "input": count})
    events = [agentnb.Event.from_json(e.data) for e in SseParser().feed(raw)]
    texts = [e.text for e in events if isinstance(e, agentnb.TextChunk)]
    assert len(texts) == count
    assert texts == [f"{i:08d}" + "x" * (65536 - 8) for i in range(count)]
    assert [e.seq for e in events] == list(range(count + 1))
    assert events[-1].kind == "done"
    assert False in writes  # some writes begun in emit waited for the socket to drain


def _read_slowly(server: Server, body: dict[str, object]) -> bytes:
    """POST *body* on a socket with a small receive buffer; read nothing until the run ends."""
    with _posted(server, body) as (sock, data, run_id):
        server.wait_for(lambda: server.hub.get(run_id).ended, timeout=30)
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk, "the server closed the connection before the end of the stream"
            data += chunk
    return _dechunk(bytes(data[data.index(b"\r\n\r\n") + 4 :]))


@contextlib.contextmanager
def _posted(
    server: Server, body: dict[str, object]
) -> Iterator[tuple[socket.socket, bytearray, str]]:
    """POST /api/stream on a socket with a small receive buffer; the socket once the head is in.

    Yields the socket, the bytes read so far (the head, maybe some body) and the run id.
    """
    url = urlsplit(server.base)
    payload = json.dumps(body).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect((url.hostname, url.port))
        sock.sendall(
            b"POST /api/stream HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (url.netloc.encode(), len(payload), payload)
        )
        data = bytearray()
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head = bytes(data[: data.index(b"\r\n\r\n")]).decode()
        run_id = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("x-agentnb-run-id:")
        )
        yield sock, data, run_id


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


async def test_a_middleware_that_waits_in_send_still_gets_every_event_once_in_order(
    writes: list[bool],
) -> None:
    app = create_app(agents=AGENTS)

    @app.middleware("http")
    async def passthrough(request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)  # its send hands each message over to another task

    with served(app) as server:
        async with server.client() as client:
            reading = await post_stream(client, {"agent": "paced", "input": 50})
    events = reading.agent_events()
    assert "".join(e.text for e in events if isinstance(e, agentnb.TextChunk)) == "".join(
        f"{i} " for i in range(50)
    )
    assert [e.seq for e in events] == list(range(51))
    assert events[-1].kind == "done"
    assert writes
    assert not any(writes)  # every write begun in emit was finished by the response's task


async def test_a_write_that_fails_in_emit_ends_that_listener_not_the_agent() -> None:
    hub = RunHub({"paced": AgentInfo("paced", paced, "")})
    served_run = hub.start("paced", (5,), on_disconnect="continue")
    listener = served_run.listen()

    def broken(frame: bytes) -> Awaitable[None]:
        raise ConnectionResetError("the client's socket broke")

    listener.writer = broken
    batches = aiter(listener)
    # The first event is written from emit, and fails there; this listener's loop raises it.
    with pytest.raises(ConnectionResetError, match="socket broke"):
        await anext(batches)
    listener.close()
    assert served_run.run is not None
    await served_run.run.wait()  # the agent went on to the end
    assert served_run.status == "done"
    assert served_run.count == 6


async def test_a_middleware_holding_an_anyio_lock_across_send_streams_every_event(
    writes: list[bool],
) -> None:
    # anyio.Lock enters a cancel scope and yields: a write begun in emit must leave
    # both in the task that entered them (the response's), or the stream breaks.
    lock = anyio.Lock()

    async def serialised(send: Send, message: Message) -> None:
        async with lock:
            await send(message)

    app = create_app(agents=AGENTS)
    app.add_middleware(Middleware, wrap=serialised)
    with served(app) as server:
        async with server.client() as client:
            reading = await post_stream(client, {"agent": "paced", "input": 30})
    events = reading.agent_events()
    assert [e.seq for e in events] == list(range(31))
    assert events[-1].kind == "done"
    assert writes  # begun in emit; each waits for the lock's checkpoint
    assert not any(writes)


async def test_a_context_variable_a_middleware_sets_around_send_stays_in_the_response(
    writes: list[bool],
) -> None:
    # As OpenTelemetry's ASGI middleware does (a span made current around send):
    # set, await, reset with the token, across a socket that fills up.
    errors: list[str] = []

    async def traced(send: Send, message: Message) -> None:
        token = SPAN.set("send")
        try:
            await send(message)
        finally:
            try:
                SPAN.reset(token)
            except ValueError as exc:
                errors.append(repr(exc))
                raise

    LEAKED.clear()
    app = create_app(agents=AGENTS)
    app.add_middleware(Middleware, wrap=traced)
    with served(app) as server:
        raw = await asyncio.to_thread(_read_slowly, server, {"agent": "big_checked", "input": 200})
    events = [agentnb.Event.from_json(e.data) for e in SseParser().feed(raw)]
    assert [e.seq for e in events] == list(range(201))
    assert errors == []
    assert LEAKED == []  # the agent never saw the send wrapper's variable
    assert True in writes  # some writes finished in emit ...
    assert False in writes  # ... and some waited for the socket


async def test_a_send_timeout_in_a_middleware_ends_the_stream_not_the_detached_run(
    writes: list[bool],
) -> None:
    # A write begun in emit that times out (the client stopped reading) is the
    # response's timeout: the response ends; the "continue" run goes on to its end.
    async def timed(send: Send, message: Message) -> None:
        with anyio.fail_after(0.3):
            await send(message)

    AGENT_SAW.clear()
    app = create_app(agents=AGENTS)
    app.add_middleware(Middleware, wrap=timed)
    body = {"agent": "patient", "input": 100, "on_disconnect": "continue"}
    with served(app) as server:
        run_id = await asyncio.to_thread(_post_and_stall, server, body, 1.0)
        server.wait_for(lambda: server.hub.get(run_id).ended, timeout=10)
        assert server.describe(run_id)["status"] == "done"
    assert AGENT_SAW == ["finished"]
    assert False in writes


def _post_and_stall(server: Server, body: dict[str, object], seconds: float) -> str:
    """POST *body*, read nothing for *seconds*, close; the run's id."""
    with _posted(server, body) as (_sock, _data, run_id):
        time.sleep(seconds)
    return run_id


class _Abort(BaseException):
    """Not an Exception: as KeyboardInterrupt, it goes up through emit."""


async def late(count: int) -> int:
    await asyncio.sleep(0.05)  # its listeners are waiting by now
    return await paced(count)


async def test_a_write_interrupted_in_emit_still_wakes_the_other_listeners() -> None:
    hub = RunHub({"late": AgentInfo("late", late, "")})
    served_run = hub.start("late", (3,), on_disconnect="continue")
    first, second = served_run.listen(), served_run.listen()

    def interrupted(frame: bytes) -> Awaitable[None]:
        raise _Abort

    first.writer = interrupted  # parked first, so written to first
    firsts, seconds = aiter(first), aiter(second)
    first_batch = asyncio.ensure_future(anext(firsts))
    second_frames: list[bytes] = []

    async def read_second() -> None:
        async for frames in seconds:
            second_frames.extend(frames)

    reader = asyncio.ensure_future(read_second())
    with pytest.raises(ConnectionAbortedError, match="cut"):
        await asyncio.wait_for(first_batch, 5)  # the first listener is told its write was cut
    first.close()
    await asyncio.wait_for(reader, 5)  # the second was woken, and read to the run's end
    second.close()
    assert served_run.ended
    assert len(second_frames) == served_run.count
    assert b"event: error" in second_frames[-1]  # the run ended with the interruption


async def test_a_write_that_emits_into_its_own_run_does_not_deadlock() -> None:
    # The write runs middleware code; it starts once emit has released the run's lock.
    def serve() -> list[bytes]:
        async def main() -> list[bytes]:
            hub = RunHub({"late": AgentInfo("late", late, "")})
            served_run = hub.start("late", (2,), on_disconnect="continue")
            listener = served_run.listen()

            frames: list[bytes] = []  # as the client gets them: written, or read and sent

            async def noting(frame: bytes) -> None:
                frames.append(frame)
                if b'"text":"0 "' in frame:
                    assert served_run.run is not None
                    served_run.run.emit("noted")  # as a middleware noting its write might

            listener.writer = noting
            async for batch in listener:
                frames += batch
            listener.close()
            return frames

        return asyncio.run(main())

    outcome: list[list[bytes]] = []
    worker = threading.Thread(target=lambda: outcome.append(serve()), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the server's loop deadlocked on the run's lock"
    texts = [f.split(b'"text":"', 1)[1].split(b'"', 1)[0] for f in outcome[0][:-1]]
    assert texts == [b"0 ", b"noted", b"1 "]
    assert b"event: done" in outcome[0][-1]


async def test_a_write_cancelled_from_within_ends_that_listener_not_the_run() -> None:
    hub = RunHub({"late": AgentInfo("late", late, "")})
    served_run = hub.start("late", (3,), on_disconnect="continue")
    first, second = served_run.listen(), served_run.listen()

    async def cancelled_inside(frame: bytes) -> None:
        already: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        already.cancel()
        await already  # e.g. a send wrapper awaiting a helper that was cancelled

    first.writer = cancelled_inside

    async def drain(listener: Listener) -> int:
        count = 0
        async for frames in listener:
            count += len(frames)
        return count

    outcomes = await asyncio.gather(drain(first), drain(second), return_exceptions=True)
    first.close()
    second.close()
    assert isinstance(outcomes[0], asyncio.CancelledError)  # that listener's own write
    assert outcomes[1] == 4  # the other read the whole run
    assert served_run.status == "done"  # the agent was not cancelled
