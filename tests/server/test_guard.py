"""Slow, idle and surplus connections, and the Host guard, against a real uvicorn.

Each server here is ``start_server`` on 127.0.0.1 with short limits (a header
timeout of 0.5 s); clients are raw sockets where the bytes on the wire matter,
httpx and websockets elsewhere. uvicorn's own keep-alive timeout is set long, so
what closes a connection here is the guard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

import agentnb
from agentnb.demo import counter
from agentnb.server import create_app, start_server
from agentnb.server._hosts import AllowedHosts
from harness import wire
from harness.web import serving
from harness.wire import read_response, read_until_closed, split_head
from tests.server.served import post_stream

HEADERS = 0.5  # the header timeout of these servers, in seconds
SLACK = 2.0  # how much later than its deadline a connection may be closed
LIMITS: dict[str, Any] = {"header_timeout": HEADERS, "timeout_keep_alive": 60}


async def ticker(count: int) -> int:
    """Emits *count* text chunks, one every 0.1 s."""
    for i in range(count):
        agentnb.emit(f"{i} ")
        await asyncio.sleep(0.1)
    return count


def _dribble(sock: socket.socket, data: bytes, every: float, within: float) -> bytes:
    """Send *data* a byte every *every* s, until the server answers or closes; what it sent.

    The server must close the connection *within* seconds.
    """
    start = time.monotonic()
    for byte in data:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
    return read_until_closed(sock, within - (time.monotonic() - start))


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """The records uvicorn logs at ERROR or above meanwhile ("Exception in ASGI application")."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_silent_connection_is_closed_after_the_header_timeout(loop: str) -> None:
    app = create_app(agents=[counter])
    with serving(app, loop=loop, **LIMITS) as base, wire.connect(base) as sock:
        opened = time.monotonic()
        assert read_until_closed(sock, HEADERS + SLACK) == b""
        assert time.monotonic() - opened >= HEADERS * 0.9


def test_headers_sent_a_byte_at_a_time_are_cut_off() -> None:
    request = b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 100
    with serving(create_app(agents=[counter]), **LIMITS) as base, wire.connect(base) as sock:
        opened = time.monotonic()
        assert _dribble(sock, request, 0.2, HEADERS + SLACK) == b""
        assert time.monotonic() - opened >= HEADERS * 0.9


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_body_sent_a_byte_at_a_time_gets_408_and_the_connection_closes(http: str) -> None:
    head = (
        b"POST /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    app = create_app(agents=[counter])
    with serving(app, body_timeout=1.0, http=http, **LIMITS) as base, errors_logged() as errors:
        with wire.connect(base) as sock:
            sock.sendall(head)
            started = time.monotonic()
            raw = _dribble(sock, b"{" + b" " * 99, 0.2, 1.0 + SLACK)
            assert time.monotonic() - started >= 1.0 * 0.9
        status, headers, body = split_head(raw)
        assert status == 408
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        answer = json.loads(body)
        assert answer["error"] == "timeout"
        assert "body_timeout" in answer["message"]
        assert errors == []  # the app's ClientDisconnect is not an application error


def test_a_body_too_slow_for_a_response_already_under_way_cuts_the_connection() -> None:
    seen: list[str] = []
    ended = threading.Event()

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"reading", "more_body": True})
        while (message := await receive())["type"] == "http.request":
            await send({"type": "http.response.body", "body": b".", "more_body": True})
        seen.append(message["type"])
        ended.set()

    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
    with serving(echo, body_timeout=1.0, **LIMITS) as base, errors_logged() as errors:
        with wire.connect(base) as sock:
            sock.sendall(head)
            raw = read_until_closed(sock, 1.0 + SLACK)
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert ended.wait(5)
        assert seen == ["http.disconnect"]
        assert errors == []  # not "returned without completing response"


def test_a_keep_alive_connection_must_send_its_next_headers_in_time() -> None:
    request = b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with serving(create_app(agents=[counter]), **LIMITS) as base, wire.connect(base) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        assert _dribble(sock, request, 0.2, HEADERS + SLACK) == b""
        assert time.monotonic() - answered >= HEADERS * 0.9


async def test_a_stream_longer_than_the_header_timeout_is_not_cut() -> None:
    with serving(create_app(agents=[ticker]), **LIMITS) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            started = time.monotonic()
            reading = await post_stream(client, {"agent": "ticker", "input": 15})
            assert time.monotonic() - started > 2 * HEADERS
            kinds = [e.event for e in reading.events]
            assert reading.ended
            assert kinds.count("text") == 15
            assert kinds[-1] == "done"
            # The same connection, re-armed after the stream, takes the next request.
            assert (await client.get("/api/agents")).json()[0]["name"] == "ticker"


async def test_a_stream_through_a_trusted_proxy_is_not_cut() -> None:
    # X-Forwarded-For from 127.0.0.1 changes the client the app sees, not the one the
    # guard matches the request to its connection by.
    with serving(create_app(agents=[ticker]), **LIMITS) as base:
        headers = {"X-Forwarded-For": "203.0.113.7"}
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as client:
            reading = await post_stream(client, {"agent": "ticker", "input": 15})
            kinds = [e.event for e in reading.events]
            assert kinds.count("text") == 15
            assert kinds[-1] == "done"


def test_a_trusted_proxy_still_sets_the_client_the_app_sees() -> None:
    async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = json.dumps(scope["client"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serving(whoami, **LIMITS) as base:
        forwarded = httpx.get(base, headers={"X-Forwarded-For": "203.0.113.7"})
        assert forwarded.json()[0] == "203.0.113.7"
        assert httpx.get(base).json()[0] == "127.0.0.1"


async def test_a_websocket_open_longer_than_the_header_timeout_is_not_cut() -> None:
    with serving(create_app(agents=[counter]), **LIMITS) as base:
        async with connect("ws" + base.removeprefix("http") + "/api/ws") as ws:
            await asyncio.sleep(3 * HEADERS)  # the time itself is the condition: no state
            start = {"type": "start", "agent": "counter", "input": "3", "ref": 1}
            await ws.send(json.dumps(start))
            kinds: list[str] = []
            while not kinds or kinds[-1] not in ("done", "error", "cancelled"):
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "event":
                    kinds.append(message["event"]["kind"])
                else:
                    assert message["type"] == "started", message
            assert kinds[-1] == "done"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_beyond_max_connections_a_connection_gets_503_and_idle_ones_starve_no_one(
    loop: str,
) -> None:
    app = create_app(agents=[counter])
    limits = {"max_connections": 20, "header_timeout": 1.0, "timeout_keep_alive": 60}
    with serving(app, loop=loop, **limits) as base:
        idle = [wire.connect(base) for _ in range(20)]
        try:
            for _ in range(20):
                with wire.connect(base) as sock:  # answered at once, not at the deadline
                    status, headers, body = split_head(read_until_closed(sock, 0.5))
                    assert status == 503
                    assert headers["connection"] == "close"
                    assert json.loads(body)["error"] == "too_many_connections"
            for sock in idle:
                assert read_until_closed(sock, 1.0 + SLACK) == b""
        finally:
            for sock in idle:
                sock.close()
        assert httpx.get(base + "/api/agents").status_code == 200


@pytest.mark.parametrize(
    "hosts", [(b"evil.example", b"127.0.0.1"), (b"127.0.0.1", b"evil.example")]
)
@pytest.mark.parametrize("allowed", [["127.0.0.1"], ["*"]])
def test_a_request_with_two_host_headers_is_refused(
    hosts: tuple[bytes, bytes], allowed: list[str]
) -> None:
    # /docs/ redirects to /docs, its Location built from the first Host header.
    request = b"GET /docs/ HTTP/1.1\r\nHost: %s\r\nHost: %s\r\n\r\n" % hosts
    with serving(create_app(agents=[counter], allowed_hosts=allowed)) as base:
        with wire.connect(base) as sock:
            sock.sendall(request)
            raw = read_response(sock)
        status, headers, body = split_head(raw)
        assert status == 400, raw
        assert "location" not in headers
        answer = json.loads(body)
        assert answer["error"] == "bad_host"
        assert "2 Host headers" in answer["message"]


def test_a_websocket_with_two_host_headers_is_refused() -> None:
    handshake = (
        b"GET /api/ws HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with serving(create_app(agents=[counter])) as base, wire.connect(base) as sock:
        sock.sendall(handshake)
        status_line = sock.recv(65536).partition(b"\r\n")[0]
        assert status_line.startswith(b"HTTP/1.1 403 "), status_line  # closed, 1008, unaccepted


def test_a_star_answers_any_host() -> None:
    with serving(create_app(agents=[counter], allowed_hosts=["*"])) as base:
        answer = httpx.get(base + "/api/agents", headers={"Host": "evil.example"})
        assert answer.status_code == 200
        assert [a["name"] for a in answer.json()] == ["counter"]


def test_an_empty_list_of_hosts_says_what_to_pass() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match=r"allowed_hosts is empty.*\['\*'\]"):
        AllowedHosts(app, [])
    with pytest.raises(TypeError, match=r"pass \['localhost'\]"):
        AllowedHosts(app, "localhost")


@pytest.mark.parametrize(
    ("option", "value"),
    [("header_timeout", 0), ("body_timeout", -1), ("max_connections", 0)],
)
def test_a_limit_that_makes_no_sense_is_refused(option: str, value: float) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=option):
        start_server(create_app(agents=[counter]), **options).stop()
