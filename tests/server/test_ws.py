"""``/api/ws``: several runs over one socket, cancel, attach, bad messages, close, Origin.

A real ``websockets`` client against a real uvicorn; every event a socket
receives is compared with what the served run was handed on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

import agentnb
from agentnb.server import create_app
from harness.wait import until
from tests.helpers import forever
from tests.server.served import Server, served

CANCEL_WITHIN = 0.1
STARTED: set[str] = set()


async def paced(n: int) -> int:
    """Emits "0" .. "n-1", 2 ms apart."""
    for i in range(n):
        agentnb.emit(str(i))
        await asyncio.sleep(0.002)
    return n


async def waiting(tag: str) -> None:
    """Says it is waiting, then waits until cancelled."""
    STARTED.add(tag)
    agentnb.emit("waiting")
    await forever()


async def arity(*args: Any) -> list[Any]:
    """Returns its arguments."""
    return list(args)


AGENTS: dict[str, Any] = {"paced": paced, "waiting": waiting, "arity": arity}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


@contextlib.asynccontextmanager
async def socket(server: Server, origin: str | None = None) -> AsyncIterator[ClientConnection]:
    async with connect(
        server.ws, origin=Origin(origin) if origin is not None else None, proxy=None
    ) as ws:
        yield ws


async def send(ws: ClientConnection, message: Any) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        frame = await ws.recv()
    assert isinstance(frame, str), f"a binary frame from the server: {frame!r}"
    message = json.loads(frame)
    assert isinstance(message, dict)
    return message


class Inbox:
    """A socket's messages, with each run's events (checked: ids ``<run id>:0``, ``:1``, ...)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.events: dict[str, list[agentnb.Event]] = {}
        self.ended: set[str] = set()

    def take(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] != "event":
            return
        assert list(message) == ["type", "run_id", "id", "event"]
        run_id = message["run_id"]
        events = self.events.setdefault(run_id, [])
        assert message["id"] == f"{run_id}:{len(events)}"
        event = agentnb.Event.from_dict(message["event"])
        events.append(event)
        if event.terminal and event.run_id == run_id:
            self.ended.add(run_id)

    async def until(self, ws: ClientConnection, done: Any) -> None:
        while not done():
            self.take(await receive(ws))

    def order(self, run_id: str) -> list[int]:
        """Where run *run_id*'s events are among all the messages."""
        return [
            i for i, m in enumerate(self.messages) if m["type"] == "event" and m["run_id"] == run_id
        ]


async def test_two_runs_on_one_socket_interleave_and_one_is_cancelled(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    inbox = Inbox()
    async with socket(server) as ws:
        await send(ws, {"type": "start", "agent": "paced", "input": 30, "ref": "a"})
        await send(ws, {"type": "start", "agent": "paced", "input": 30, "ref": {"b": [1]}})
        await send(ws, {"type": "start", "agent": "waiting", "input": "ws-1", "ref": None})
        await inbox.until(ws, lambda: sum(m["type"] == "started" for m in inbox.messages) == 3)
        started = [m for m in inbox.messages if m["type"] == "started"]
        assert [(m["agent"], m["ref"]) for m in started] == [
            ("paced", "a"),
            ("paced", {"b": [1]}),
            ("waiting", None),
        ]
        assert all(list(m) == ["type", "run_id", "agent", "ref"] for m in started)
        a, b, c = (m["run_id"] for m in started)
        await inbox.until(ws, lambda: len(inbox.events.get(c, [])) == 1)
        await send(ws, {"type": "cancel", "run_id": c})
        await inbox.until(ws, lambda: {a, b, c} <= inbox.ended)
    for run_id in (a, b, c):
        assert inbox.events[run_id] == sent[run_id]
    assert [e.kind for e in inbox.events[a]] == ["text"] * 30 + ["done"]
    assert [e.kind for e in inbox.events[b]] == ["text"] * 30 + ["done"]
    cancelled = inbox.events[c][-1]
    assert isinstance(cancelled, agentnb.Cancelled)
    assert cancelled.reason == "cancelled by a client"
    # Interleaved: each run's events arrive while the other's are still coming.
    order_a, order_b, order_c = inbox.order(a), inbox.order(b), inbox.order(c)
    assert order_a[0] < order_b[-1]
    assert order_b[0] < order_a[-1]
    assert order_a[0] < order_c[-1] < order_a[-1]
    assert server.describe(c)["status"] == "cancelled"
    assert (server.describe(a)["status"], server.describe(b)["status"]) == ("done", "done")


async def test_attach_resumes_a_run_after_last_event_id(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    first = Inbox()
    async with socket(server) as ws:
        await send(
            ws,
            {"type": "start", "agent": "paced", "input": 40, "on_disconnect": "continue"},
        )
        started = await receive(ws)
        run_id = started["run_id"]
        await first.until(ws, lambda: len(first.events.get(run_id, [])) >= 5)
    last = first.messages[-1]["id"]
    seen = len(first.events[run_id])
    server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
    assert server.describe(run_id)["status"] == "running"  # it went on without the socket
    second, whole = Inbox(), Inbox()
    async with socket(server) as ws:
        await send(ws, {"type": "attach", "run_id": run_id, "last_event_id": last, "ref": 2})
        attached = await receive(ws)
        assert attached == {"type": "attached", "run_id": run_id, "agent": "paced", "ref": 2}
        # The rest, numbered from where the first socket stopped.
        second.events[run_id] = list(first.events[run_id])
        await second.until(ws, lambda: run_id in second.ended)
        # And the whole run again, attached without last_event_id.
        await send(ws, {"type": "attach", "run_id": run_id})
        assert (await receive(ws))["type"] == "attached"
        await whole.until(ws, lambda: run_id in whole.ended)
    assert second.events[run_id] == sent[run_id]
    assert len(second.events[run_id]) > seen
    assert whole.events[run_id] == sent[run_id]
    assert sent[run_id][-1].kind == "done"


BAD_MESSAGES: list[tuple[str, str | bytes, str, str]] = [
    ("not JSON", "start poet", "bad_json", "not valid JSON"),
    ("NaN", '{"type": "start", "agent": "arity", "input": NaN}', "bad_json", "NaN"),
    ("an array", '["start"]', "bad_request", 'a JSON object with "type"'),
    ("a string", '"start"', "bad_request", 'a JSON object with "type"'),
    ("no type", '{"agent": "arity"}', "bad_request", 'a JSON object with "type"'),
    ("type not a string", '{"type": 1}', "bad_request", 'a JSON object with "type"'),
    ("unknown type", '{"type": "stop", "ref": 5}', "bad_request", "unknown message type 'stop'"),
    (
        "unknown agent",
        '{"type": "start", "agent": "nobody", "ref": 6}',
        "unknown_agent",
        "no agent named 'nobody'",
    ),
    ("no agent", '{"type": "start"}', "bad_request", 'needs "agent"'),
    (
        "unknown field",
        '{"type": "start", "agent": "arity", "x": 1}',
        "bad_request",
        "unknown field 'x'",
    ),
    (
        "bad policy",
        '{"type": "start", "agent": "arity", "on_disconnect": 1}',
        "bad_request",
        '"on_disconnect" must be',
    ),
    ("cancel without run_id", '{"type": "cancel"}', "bad_request", 'needs "run_id"'),
    ("cancel, run_id a number", '{"type": "cancel", "run_id": 5}', "bad_request", 'needs "run_id"'),
    (
        "cancel an unknown run",
        '{"type": "cancel", "run_id": "0123456789abcdef"}',
        "unknown_run",
        "no run '0123456789abcdef'",
    ),
    ("attach without run_id", '{"type": "attach"}', "bad_request", 'needs "run_id"'),
    (
        "attach an unknown run",
        '{"type": "attach", "run_id": "nope"}',
        "unknown_run",
        "no run 'nope'",
    ),
    # The protocol is JSON text frames: a binary frame is refused, whatever it holds.
    ("binary start", b'{"type": "start", "agent": "arity", "ref": 9}', "", ""),
    ("binary junk", b"\xff\xfe\x00", "", ""),
    (
        "too large",
        '{"type": "start", "agent": "arity", "input": "' + "x" * (1 << 20) + '"}',
        "too_large",
        "limit of 1,048,576 bytes",
    ),
]


@pytest.mark.parametrize(
    ("frame", "code", "says"), [b[1:] for b in BAD_MESSAGES], ids=[b[0] for b in BAD_MESSAGES]
)
async def test_a_bad_message_is_answered_with_an_error_and_the_socket_stays_usable(
    server: Server,
    sent: dict[str, list[agentnb.Event]],
    frame: str | bytes,
    code: str,
    says: str,
) -> None:
    async with socket(server) as ws:
        await ws.send(frame)
        error = await receive(ws)
        assert error["type"] == "error", f"{frame[:80]!r} was taken: {error}"
        assert list(error) == ["type", "error", "message", "ref"]
        if code:
            assert error["error"] == code
            assert says in error["message"]
        if isinstance(frame, str) and frame.startswith("{") and len(frame) < 1000:
            assert error["ref"] == json.loads(frame).get("ref")
        assert sent == {}, "a bad message started a run"
        # Still usable.
        await send(ws, {"type": "start", "agent": "arity", "input": "ok", "ref": "after"})
        started = await receive(ws)
        assert (started["type"], started["ref"]) == ("started", "after")
        inbox = Inbox()
        await inbox.until(ws, lambda: started["run_id"] in inbox.ended)
    done = inbox.events[started["run_id"]][-1]
    assert isinstance(done, agentnb.Done)
    assert done.result == ["ok"]


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ({"last_event_id": 3}, "bad_request", '"last_event_id" must be a string'),
        ({"last_event_id": "nocolon"}, "bad_event_id", "is not <run id>:<n>"),
        ({"last_event_id": "0123456789abcdef:0"}, "bad_event_id", "belongs to run"),
        ({"last_event_id": "{run}:99"}, "bad_event_id", "is past the end"),
    ],
)
async def test_attach_with_a_bad_last_event_id_is_an_error(
    server: Server, message: dict[str, Any], code: str, says: str
) -> None:
    async with socket(server) as ws:
        await send(ws, {"type": "start", "agent": "arity"})
        run_id = (await receive(ws))["run_id"]
        inbox = Inbox()
        await inbox.until(ws, lambda: run_id in inbox.ended)
        last = message["last_event_id"]
        if isinstance(last, str):
            last = last.format(run=run_id)
        await send(ws, {"type": "attach", "run_id": run_id, "last_event_id": last, "ref": "r"})
        error = await receive(ws)
    assert error["type"] == "error"
    assert (error["error"], error["ref"]) == (code, "r")
    assert says in error["message"]


async def test_closing_the_socket_cancels_the_runs_it_started(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    inbox = Inbox()
    async with socket(server) as ws:
        await send(ws, {"type": "start", "agent": "waiting", "input": "ws-close-1"})
        await send(ws, {"type": "start", "agent": "waiting", "input": "ws-close-2"})
        await send(
            ws,
            {
                "type": "start",
                "agent": "waiting",
                "input": "ws-close-3",
                "on_disconnect": "continue",
            },
        )
        await inbox.until(ws, lambda: len(inbox.events) == 3)
        one, two, kept = (m["run_id"] for m in inbox.messages if m["type"] == "started")
        assert server.describe(one)["listeners"] == 1
        closing = time.perf_counter()
    took = server.wait_for(
        lambda: all(server.hub.get(r).status == "cancelled" for r in (one, two)),
        timeout=2,
        since=closing,
    )
    assert took <= CANCEL_WITHIN, f"the runs were cancelled {took * 1000:.0f} ms after close"
    for run_id in (one, two):
        until(lambda: server.run_tasks(run_id) == [], timeout=1)  # noqa: B023
        assert server.describe(run_id)["listeners"] == 0
        assert [e.kind for e in sent[run_id]] == ["text", "cancelled"]
        last = sent[run_id][-1]
        assert isinstance(last, agentnb.Cancelled)
        assert last.reason == "the client disconnected"
    assert server.live() == [kept]
    described = server.describe(kept)
    assert (described["status"], described["listeners"]) == ("running", 0)
    async with socket(server) as ws:
        await send(ws, {"type": "cancel", "run_id": kept})
        await send(ws, {"type": "attach", "run_id": kept, "last_event_id": f"{kept}:0"})
        assert (await receive(ws))["type"] == "attached"
        rest = await receive(ws)
    assert rest["id"] == f"{kept}:1"
    assert rest["event"]["kind"] == "cancelled"
    assert server.live() == []


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://localhost:{port}", "https://127.0.0.1:{port}.evil", "null"],
)
async def test_a_cross_origin_socket_is_refused(
    server: Server, sent: dict[str, list[agentnb.Event]], origin: str
) -> None:
    port = server.base.rpartition(":")[2]

    async def start_a_run() -> None:
        async with socket(server, origin.format(port=port)) as ws:
            await send(ws, {"type": "start", "agent": "arity"})
            await receive(ws)

    with pytest.raises(InvalidStatus) as refused:
        await start_a_run()
    assert refused.value.response.status_code == 403
    assert sent == {}


@pytest.mark.parametrize("same_origin", [True, False], ids=["same origin", "no Origin"])
async def test_a_same_origin_or_originless_socket_is_accepted(
    server: Server, sent: dict[str, list[agentnb.Event]], same_origin: bool
) -> None:
    async with socket(server, server.base if same_origin else None) as ws:
        await send(ws, {"type": "start", "agent": "arity", "input": 1})
        run_id = (await receive(ws))["run_id"]
        inbox = Inbox()
        await inbox.until(ws, lambda: run_id in inbox.ended)
    assert inbox.events[run_id] == sent[run_id]
    assert [e.kind for e in sent[run_id]] == ["done"]


@pytest.mark.parametrize("kind", ["start", "attach", "cancel", "bogus"])
async def test_a_deeply_nested_ref_is_answered_and_the_socket_and_its_runs_go_on(
    server: Server, kind: str
) -> None:
    # Before: a ref nested 960 deep parsed, then failed to encode in the answer
    # (RecursionError): the socket dropped and the run it had started was cancelled.
    deep = "[" * 960 + "null" + "]" * 960  # JSON text: json.dumps here would recurse too
    async with socket(server) as ws:
        await send(ws, {"type": "start", "agent": "waiting", "input": f"ref-{kind}", "ref": 1})
        started = await receive(ws)
        assert started["type"] == "started"
        run_id = started["run_id"]
        fields = f'"run_id": "{run_id}"' if kind in ("attach", "cancel") else '"agent": "waiting"'
        await ws.send(f'{{"type": "{kind}", {fields}, "ref": {deep}}}')
        while (answer := await receive(ws))["type"] == "event":
            pass
        assert answer["type"] == "error"
        assert answer["error"] == "bad_request"
        assert '"ref"' in answer["message"]
        assert answer["ref"] is None
        assert server.describe(run_id)["status"] == "running"  # nothing was cancelled
        await send(ws, {"type": "start", "agent": "arity", "input": 1, "ref": "still here"})
        while (answer := await receive(ws))["type"] == "event":
            pass
        assert answer == {"type": "started", "run_id": answer["run_id"], "agent": "arity",
                          "ref": "still here"}  # fmt: skip
