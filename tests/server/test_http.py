"""``POST /api/stream`` and the small endpoints, over a real uvicorn with real clients.

Every stream is read twice over: its raw bytes through the spec-correct parser of
harness/wire.py (and checked byte for byte against the framing), and the typed
events rebuilt with ``Event.from_json`` compared with what the served run, a sink
of the run, was handed on the server. httpx-sse reads the same streams too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from httpx_sse import aconnect_sse

import agentnb
from agentnb import JSON
from agentnb.server import create_app
from harness.wait import eventually
from tests.helpers import forever
from tests.server.served import (
    Server,
    check_whole_run,
    open_stream,
    post_stream,
    served,
)

CALLS: list[str] = []  # each agent of this file notes its calls here (on the server's thread)


async def child(topic: str) -> str:
    agentnb.emit(agentnb.Status(f"child on {topic}"))
    agentnb.emit(f"child text about {topic}")
    return f"child done {topic}"


async def child_fails() -> None:
    agentnb.emit("about to fail")
    raise KeyError("child broke")


async def child_forever(ready: asyncio.Future[None]) -> None:
    agentnb.emit("child waiting")
    ready.set_result(None)
    await forever()


async def every_kind(topic: str) -> dict[str, JSON]:
    """Emits every kind of event and runs sub-agents."""
    CALLS.append("every_kind")
    agentnb.emit(agentnb.Status("thinking"))
    agentnb.emit("Hello, ")
    agentnb.emit(topic)
    call = agentnb.ToolCall("look_up", {"term": topic, "n": [1, 2.5, None, True, {"x": "y"}]})
    agentnb.emit(call)
    agentnb.emit(agentnb.ToolResult("look_up", {"hits": ["a", "b"]}, call_id=call.call_id))
    agentnb.emit(agentnb.ToolResult("look_up", "boom", call_id="c2", is_error=True))
    agentnb.emit(agentnb.Custom("progress", {"done": 3, "of": 10}))
    agentnb.emit(agentnb.Custom("my.kind:x-y_1", [1, "two", None]))
    agentnb.emit(agentnb.Custom("bare"))
    sub = await agentnb.run(child, topic)
    with contextlib.suppress(KeyError):
        await agentnb.run(child_fails)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stuck = agentnb.start(child_forever, ready)
    await ready
    stuck.cancel("enough")
    with contextlib.suppress(agentnb.RunCancelled):
        await stuck.wait()
    return {"topic": topic, "sub": sub}


EVERY_KIND = [
    (("every_kind",), "status"),
    (("every_kind",), "text"),
    (("every_kind",), "text"),
    (("every_kind",), "tool_call"),
    (("every_kind",), "tool_result"),
    (("every_kind",), "tool_result"),
    (("every_kind",), "progress"),
    (("every_kind",), "my.kind:x-y_1"),
    (("every_kind",), "bare"),
    (("every_kind", "child"), "status"),
    (("every_kind", "child"), "text"),
    (("every_kind", "child"), "done"),
    (("every_kind", "child_fails"), "text"),
    (("every_kind", "child_fails"), "error"),
    (("every_kind", "child_forever"), "text"),
    (("every_kind", "child_forever"), "cancelled"),
    (("every_kind",), "done"),
]


async def failing(what: str) -> None:
    """Fails with a ValueError."""
    CALLS.append("failing")
    agentnb.emit("trying")
    raise ValueError(f"bad input: {what}")


async def waiting() -> None:
    """Says it is ready, then waits until cancelled."""
    CALLS.append("waiting")
    agentnb.emit("ready")
    await forever()


async def arity(*args: JSON) -> list[JSON]:
    """Returns its arguments."""
    CALLS.append("arity")
    return list(args)


def shout(text: str) -> str:
    """A plain function: it runs in a worker thread."""
    CALLS.append("shout")
    agentnb.emit(text.upper())
    return text.upper() + "!"


PINGED = threading.Event()  # set by the test once its client has read two pings


async def sleepy() -> str:
    """Emits, waits while keep-alive pings go out, emits again."""
    agentnb.emit("before")
    await eventually(PINGED.is_set, 10, what="the test's word that two pings came")
    agentnb.emit("after")
    return "rested"


AGENTS: dict[str, Any] = {
    "every_kind": every_kind,
    "failing": failing,
    "waiting": waiting,
    "arity": arity,
    "shout": shout,
    "sleepy": sleepy,
}
LIMIT = 1000


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


@pytest.fixture(scope="module")
def tight() -> Iterator[Server]:
    """A server with a 1000-byte body limit and a keep-alive ping every 0.1 s."""
    with served(create_app(agents=AGENTS, max_body=LIMIT, ping=0.1)) as server:
        yield server


# -- round trips --------------------------------------------------------------------------


async def test_every_event_kind_round_trips_with_child_runs(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "every_kind", "input": "the sea"})
    events = check_whole_run(reading, sent)
    run_id = reading.run_id
    assert [(e.path, e.kind) for e in events] == EVERY_KIND
    assert {e.run_id for e in events if e.path == ("every_kind",)} == {run_id}
    assert len({e.run_id for e in events}) == 4  # the run and its three child runs
    assert [e.text for e in events if isinstance(e, agentnb.TextChunk)] == [
        "Hello, ",
        "the sea",
        "child text about the sea",
        "about to fail",
        "child waiting",
    ]
    call, result, failed = events[3], events[4], events[5]
    assert isinstance(call, agentnb.ToolCall)
    assert call.args == {"term": "the sea", "n": [1, 2.5, None, True, {"x": "y"}]}
    assert isinstance(result, agentnb.ToolResult)
    assert (result.result, result.call_id, result.is_error) == (
        {"hits": ["a", "b"]},
        call.call_id,
        False,
    )
    assert isinstance(failed, agentnb.ToolResult)
    assert (failed.result, failed.is_error) == ("boom", True)
    customs = [e for e in events if isinstance(e, agentnb.Custom)]
    assert [(c.name, c.data) for c in customs] == [
        ("progress", {"done": 3, "of": 10}),
        ("my.kind:x-y_1", [1, "two", None]),
        ("bare", None),
    ]
    child_error = events[13]
    assert isinstance(child_error, agentnb.Error)
    assert (child_error.type, child_error.message) == ("KeyError", "'child broke'")
    assert "raise KeyError" in child_error.traceback
    child_cancelled = events[15]
    assert isinstance(child_cancelled, agentnb.Cancelled)
    assert child_cancelled.reason == "enough"
    done = events[-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == {"topic": "the sea", "sub": "child done the sea"}


async def test_httpx_sse_reads_the_same_events(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "every_kind", "input": "é\u2028😀\r\n"}
    async with (
        server.client() as client,
        aconnect_sse(client, "POST", "/api/stream", json=body) as source,
    ):
        run_id = source.response.headers["x-agentnb-run-id"]
        received = [sse async for sse in source.aiter_sse()]
    events = [agentnb.Event.from_json(sse.data) for sse in received]
    assert events == sent[run_id]
    assert [sse.event for sse in received] == [e.kind for e in events]
    assert [sse.id for sse in received] == [f"{run_id}:{n}" for n in range(len(received))]
    assert [(e.path, e.kind) for e in events] == EVERY_KIND
    assert isinstance(events[-1], agentnb.Done)
    assert events[-1].result == {"topic": body["input"], "sub": f"child done {body['input']}"}


async def test_the_stream_answer_has_the_sse_headers(server: Server) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "arity", "input": 1})
    headers = reading.response.headers
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    assert {v.strip() for v in headers["cache-control"].split(",")} & {"no-store", "no-cache"}
    assert headers["x-accel-buffering"] == "no"
    run_id = headers["x-agentnb-run-id"]
    assert len(run_id) == 16
    assert set(run_id) <= set("0123456789abcdef")
    assert reading.agent_events()[-1].run_id == run_id


async def test_an_error_ends_the_stream_with_its_traceback(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "failing", "input": "x"})
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "error"]
    error = events[-1]
    assert isinstance(error, agentnb.Error)
    assert (error.type, error.message) == ("ValueError", "bad input: x")
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "in failing" in error.traceback
    assert 'raise ValueError(f"bad input: {what}")' in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: bad input: x")
    assert server.describe(reading.run_id)["status"] == "error"


async def test_a_plain_function_agent_streams_from_its_thread(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, {"agent": "shout", "input": "the sea"})
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "done"]
    assert isinstance(events[0], agentnb.TextChunk)
    assert events[0].text == "THE SEA"
    assert isinstance(events[1], agentnb.Done)
    assert events[1].result == "THE SEA!"


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ({"agent": "arity", "input": "the sea"}, ["the sea"]),
        (
            {"agent": "arity", "input": {"a": [1, {"b": None}], "é": "\u2028"}},
            [{"a": [1, {"b": None}], "é": "\u2028"}],
        ),
        ({"agent": "arity", "input": [1, 2, 3]}, [[1, 2, 3]]),
        ({"agent": "arity", "input": None}, [None]),
        ({"agent": "arity", "input": ""}, [""]),
        ({"agent": "arity", "input": 0}, [0]),
        ({"agent": "arity", "input": 2.5}, [2.5]),
        ({"agent": "arity", "input": False}, [False]),
        ({"agent": "arity"}, []),
        ({"agent": "arity", "on_disconnect": "continue"}, []),
    ],
    ids=[
        "str",
        "object",
        "array",
        "null",
        "empty",
        "zero",
        "float",
        "false",
        "none",
        "none+policy",
    ],
)
async def test_the_agent_gets_the_input_as_its_one_argument(
    server: Server, sent: dict[str, list[agentnb.Event]], body: dict[str, JSON], args: list[JSON]
) -> None:
    async with server.client() as client:
        reading = await post_stream(client, body)
    events = check_whole_run(reading, sent)
    assert len(events) == 1
    assert isinstance(events[0], agentnb.Done)
    assert events[0].result == args


async def test_keep_alive_pings_are_comments_between_events(
    tight: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    PINGED.clear()
    body = {"agent": "sleepy"}
    async with (
        tight.client() as client,
        open_stream(client, "POST", "/api/stream", json=body) as reading,
    ):
        # Two pings after the first text, then the agent goes on to its end.
        await reading.until(lambda r: r.raw.partition(b"event: text")[2].count(b": ping") >= 2)
        PINGED.set()
        await reading.more()
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "text", "done"]
    raw = bytes(reading.raw)
    pings = [c for c in reading.parser.comments if c.startswith(" ping")]
    assert len(pings) >= 2, raw
    assert pings == reading.parser.comments
    # Each ping is a block of its own, outside any event.
    blocks = raw.split(b"\r\n\r\n")
    assert blocks[-1] == b""
    for block in blocks[:-1]:
        lines = block.split(b"\r\n")
        assert lines[0].startswith((b": ping", b"id: ")), block
        if lines[0].startswith(b": "):
            assert len(lines) == 1, block
    first_text = raw.index(b"event: text")
    assert raw.index(b": ping") > first_text
    assert raw.rindex(b": ping") < raw.index(b"event: done")


async def test_the_stream_sends_each_event_as_it_happens(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    # The first event arrives while the run is still going: nothing waits for the end.
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "waiting"}) as reading,
    ):
        (first,) = await reading.more(1)
        assert first.event == "text"
        assert json.loads(first.data)["text"] == "ready"
        assert server.describe(reading.run_id)["status"] == "running"
        async with server.client() as other:
            answer = await other.post(f"/api/runs/{reading.run_id}/cancel")
        assert answer.status_code == 200
        await reading.more()
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "cancelled"]


# -- GET /api/runs/{id}, POST /api/runs/{id}/cancel, GET /api/agents ------------------------


async def test_describe_and_cancel_a_run(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json={"agent": "waiting"}) as reading:
            await reading.more(1)
            run_id = reading.run_id
            described = (await client.get(f"/api/runs/{run_id}")).json()
            assert described == {
                "run_id": run_id,
                "agent": "waiting",
                "status": "running",
                "events": 1,
                "listeners": 1,
                "on_disconnect": "cancel",
                "questions": [],
            }
            answer = await client.post(f"/api/runs/{run_id}/cancel")
            assert answer.status_code == 200
            assert answer.json()["run_id"] == run_id
            assert answer.json()["status"] in ("running", "cancelled")
            await reading.more()
        events = check_whole_run(reading, sent)
        assert [e.kind for e in events] == ["text", "cancelled"]
        cancelled = events[-1]
        assert isinstance(cancelled, agentnb.Cancelled)
        assert cancelled.reason == "cancelled by a client"
        server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
        described = (await client.get(f"/api/runs/{run_id}")).json()
        assert described["status"] == "cancelled"
        assert described["events"] == 2
        assert described["listeners"] == 0
        # Idempotent, and a finished run stays as it ended.
        again = await client.post(f"/api/runs/{run_id}/cancel")
        assert again.status_code == 200
        assert (again.json()["run_id"], again.json()["status"]) == (run_id, "cancelled")
        finished = await post_stream(client, {"agent": "arity"})
        done = await client.post(f"/api/runs/{finished.run_id}/cancel")
        assert done.json()["status"] == "done"
        assert (await client.get(f"/api/runs/{finished.run_id}")).json()["status"] == "done"
    assert sent[finished.run_id][-1].kind == "done"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/runs/{}"),
        ("POST", "/api/runs/{}/cancel"),
        ("GET", "/api/runs/{}/events"),
    ],
)
async def test_an_unknown_run_is_404_unknown_run(server: Server, method: str, path: str) -> None:
    async with server.client() as client:
        answer = await client.request(method, path.format("0123456789abcdef"))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "error": "unknown_run",
        "message": "no run '0123456789abcdef' here: it never existed, or it ended more than "
        "300 s ago and was forgotten",
    }


async def test_agents_are_listed_by_name_with_their_first_doc_line(server: Server) -> None:
    async with server.client() as client:
        answer = await client.get("/api/agents")
    assert answer.status_code == 200
    assert answer.json() == [
        {"name": "arity", "description": "Returns its arguments."},
        {
            "name": "every_kind",
            "description": "Emits every kind of event and runs sub-agents.",
        },
        {"name": "failing", "description": "Fails with a ValueError."},
        {"name": "shout", "description": "A plain function: it runs in a worker thread."},
        {
            "name": "sleepy",
            "description": "Emits, waits while keep-alive pings go out, emits again.",
        },
        {"name": "waiting", "description": "Says it is ready, then waits until cancelled."},
    ]


# -- bad requests -------------------------------------------------------------------------

JSON_TYPE = {"Content-Type": "application/json"}
DEEP = b'{"agent": "arity", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

BAD: list[tuple[str, dict[str, Any], int, str, list[str]]] = [
    (
        "unknown agent",
        {"json": {"agent": "nobody"}},
        404,
        "unknown_agent",
        ["no agent named 'nobody'", "arity, every_kind, failing"],
    ),
    (
        "truncated JSON",
        {"content": b'{"agent": ', "headers": JSON_TYPE},
        400,
        "bad_json",
        ["not valid JSON", "line 1 column 11"],
    ),
    ("empty body", {"content": b"", "headers": JSON_TYPE}, 400, "bad_json", ["not valid JSON"]),
    (
        "trailing junk",
        {"content": b'{"agent": "arity"} x', "headers": JSON_TYPE},
        400,
        "bad_json",
        ["Extra data"],
    ),
    (
        "not UTF-8",
        {"content": b'{"agent": "\xff"}', "headers": JSON_TYPE},
        400,
        "bad_json",
        ["not UTF-8", "at byte 11"],
    ),
    (
        "UTF-16",
        {"content": '{"agent": "arity"}'.encode("utf-16"), "headers": JSON_TYPE},
        400,
        "bad_json",
        ["not UTF-8"],
    ),
    (
        "UTF-32 without BOM",  # ASCII in UTF-32 is valid UTF-8 (with NULs), so: not JSON
        {"content": '{"agent": "arity"}'.encode("utf-32-le"), "headers": JSON_TYPE},
        400,
        "bad_json",
        ["not valid JSON"],
    ),
    (
        "NaN",
        {"content": b'{"agent": "arity", "input": NaN}', "headers": JSON_TYPE},
        400,
        "bad_json",
        ["NaN is not JSON"],
    ),
    (
        "Infinity",
        {"content": b'{"agent": "arity", "input": [-Infinity]}', "headers": JSON_TYPE},
        400,
        "bad_json",
        ["-Infinity is not JSON"],
    ),
    (
        "deep nesting",
        {"content": DEEP, "headers": JSON_TYPE},
        400,
        "bad_json",
        ["nests too deeply"],
    ),
    (
        "agent not a string",
        {"json": {"agent": 3}},
        422,
        "bad_request",
        ['"agent" must be a string', "not a number"],
    ),
    (
        "agent null",
        {"json": {"agent": None}},
        422,
        "bad_request",
        ['"agent" must be a string', "not null"],
    ),
    ("no agent", {"json": {"input": "x"}}, 422, "bad_request", ['needs "agent"']),
    (
        "body an array",
        {"json": ["arity"]},
        422,
        "bad_request",
        ["must be a JSON object", "not an array"],
    ),
    (
        "body a string",
        {"json": "arity"},
        422,
        "bad_request",
        ["must be a JSON object", "not a string"],
    ),
    (
        "body null",
        {"content": b"null", "headers": JSON_TYPE},
        422,
        "bad_request",
        ["must be a JSON object", "not null"],
    ),
    (
        "on_disconnect wrong",
        {"json": {"agent": "arity", "on_disconnect": "later"}},
        422,
        "bad_request",
        ['"on_disconnect" must be "cancel" or "continue", not "later"'],
    ),
    (
        "on_disconnect null",
        {"json": {"agent": "arity", "on_disconnect": None}},
        422,
        "bad_request",
        ['"on_disconnect" must be', "not null"],
    ),
    (
        "on_disconnect a list",
        {"json": {"agent": "arity", "on_disconnect": ["cancel"]}},
        422,
        "bad_request",
        ['"on_disconnect" must be', 'not ["cancel"]'],
    ),
    (
        "unknown field",
        {"json": {"agent": "arity", "inptu": "x"}},
        422,
        "bad_request",
        ["unknown field 'inptu'", "agent, input, on_disconnect"],
    ),
    (
        "text/plain",
        {"content": b'{"agent": "arity"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        ["Content-Type: application/json", "got 'text/plain'"],
    ),
    (
        "no content type",
        {"content": b'{"agent": "arity"}'},
        415,
        "unsupported_media_type",
        ["got 'none'"],
    ),
    (
        "form",
        {"data": {"agent": "arity"}},
        415,
        "unsupported_media_type",
        ["got 'application/x-www-form-urlencoded'"],
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "code", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_a_bad_request_is_a_json_error_and_starts_nothing(
    server: Server,
    sent: dict[str, list[agentnb.Event]],
    request_: dict[str, Any],
    status: int,
    code: str,
    says: list[str],
) -> None:
    calls = len(CALLS)
    async with server.client() as client:
        answer = await client.post("/api/stream", **request_)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["error", "message"]
    assert body["error"] == code
    for words in says:
        assert words in body["message"]
    assert "x-agentnb-run-id" not in answer.headers
    assert sent == {}
    assert len(CALLS) == calls
    assert server.live() == []


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def exactly(size: int) -> bytes:
    """A valid start request of exactly *size* bytes."""
    head, tail = b'{"agent": "arity", "input": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("content", "how"),
    [
        (exactly(LIMIT + 1), "Content-Length"),
        (exactly(10 * LIMIT), "Content-Length"),
        (chunks(exactly(LIMIT + 1)), "chunked"),
        (chunks(b'{"agent": "arity", "input": "', b"x" * 600, b"x" * 600, b'"}'), "chunked"),
    ],
    ids=["one over", "ten times", "chunked one over", "chunked in parts"],
)
async def test_a_body_over_the_limit_is_413_too_large(
    tight: Server, sent: dict[str, list[agentnb.Event]], content: Any, how: str
) -> None:
    calls = len(CALLS)
    async with tight.client() as client:
        request = client.build_request("POST", "/api/stream", content=content, headers=JSON_TYPE)
        if how == "chunked":
            assert "content-length" not in request.headers
            assert request.headers["transfer-encoding"] == "chunked"
        else:
            assert int(request.headers["content-length"]) > LIMIT
        answer = await client.send(request)
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "too_large",
        "message": "the request body is over the server's limit of 1,000 bytes",
    }
    assert sent == {}
    assert len(CALLS) == calls
    assert tight.live() == []


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
async def test_a_body_at_the_limit_is_accepted(
    tight: Server, sent: dict[str, list[agentnb.Event]], chunked: bool
) -> None:
    body = exactly(LIMIT)
    assert len(body) == LIMIT
    content: Any = chunks(body[:500], body[500:]) if chunked else body
    async with (
        tight.client() as client,
        open_stream(client, "POST", "/api/stream", content=content, headers=JSON_TYPE) as reading,
    ):
        await reading.more()
    events = check_whole_run(reading, sent)
    assert isinstance(events[-1], agentnb.Done)
    assert events[-1].result == [json.loads(body)["input"]]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/nope", 404, "not_found"),
        ("POST", "/nope", 404, "not_found"),
        ("GET", "/api/stream", 405, "method_not_allowed"),
        ("DELETE", "/api/runs/abc", 405, "method_not_allowed"),
    ],
)
async def test_unknown_paths_and_methods_answer_json(
    server: Server, method: str, path: str, status: int, code: str
) -> None:
    async with server.client() as client:
        answer = await client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["error", "message"]
    assert body["error"] == code
    assert f"{method} {path}" in body["message"]
    if status == 404:
        assert "the API is under /api" in body["message"]
