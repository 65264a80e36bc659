"""The SSE write path: each response writes what is waiting through sse-starlette's ``send``.

Against a real uvicorn: when the client's socket is full, or a middleware waits
in ``send`` (hands it to another task, holds an anyio lock, sets a context
variable around it, times it out), every event still arrives once, in order,
the agent never sees the middleware's state, and a timed-out write ends the
response, not a detached run.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

import anyio
from fastapi import Request, Response
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import agentnb
from agentnb.server import create_app
from harness.wire import SseParser, dechunk, posted
from tests.server.served import Server, post_stream, served


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


async def test_a_client_whose_socket_is_full_still_gets_every_event_once_in_order() -> None:
    count = 200  # 12.5 MiB: more than the kernel buffers of a client that does not read
    with served(create_app(agents=AGENTS)) as server:
        raw = await asyncio.to_thread(_read_slowly, server, {"agent": "big", "input": count})
    events = [agentnb.Event.from_json(e.data) for e in SseParser().feed(raw)]
    texts = [e.text for e in events if isinstance(e, agentnb.TextChunk)]
    assert len(texts) == count
    assert texts == [f"{i:08d}" + "x" * (65536 - 8) for i in range(count)]
    assert [e.seq for e in events] == list(range(count + 1))
    assert events[-1].kind == "done"


def _read_slowly(server: Server, body: dict[str, object]) -> bytes:
    """POST *body* on a socket with a small receive buffer; read nothing until the run ends."""
    with posted(server.base, "/api/stream", body) as answer:
        run_id = answer.headers["x-agentnb-run-id"]
        server.wait_for(lambda: server.hub.get(run_id).ended, timeout=30)
        data = bytearray()
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = answer.sock.recv(1 << 20)
            assert chunk, "the server closed the connection before the end of the stream"
            data += chunk
    return dechunk(bytes(data))


async def test_a_middleware_that_waits_in_send_still_gets_every_event_once_in_order() -> None:
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


async def test_a_middleware_holding_an_anyio_lock_across_send_streams_every_event() -> None:
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


async def test_a_context_variable_a_middleware_sets_around_send_stays_in_the_response() -> None:
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


async def test_a_send_timeout_in_a_middleware_ends_the_stream_not_the_detached_run() -> None:
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
        run_id = await asyncio.to_thread(_post_and_stall, server, body)
        server.wait_for(lambda: server.hub.get(run_id).ended, timeout=10)
        assert server.describe(run_id)["status"] == "done"
    assert AGENT_SAW == ["finished"]


def _post_and_stall(server: Server, body: dict[str, object]) -> str:
    """POST *body* and read nothing until the server ends the response; close; the run's id."""
    with posted(server.base, "/api/stream", body) as answer:
        run_id = answer.headers["x-agentnb-run-id"]
        # The write times out in the middleware and the response ends: it listens no more.
        server.wait_for(lambda: server.hub.get(run_id).listeners == 0, timeout=10)
    return run_id
