"""Questions over the server: ``POST /api/runs/{id}/answer`` and the WebSocket's ``answer``.

A run the server started takes answers: ``agentnb.ask`` waits for one sent to the
server (also while nobody watches the run), the stream carries the ``ask`` and
``answer`` events, ``GET /api/runs/{id}`` lists the open questions, and exactly one
answer is taken. Real uvicorn, real httpx and websockets clients; every event read
off the wire is checked against its kind's JSON Schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

import agentnb
from agentnb.server import create_app
from agentnb.testing import check_event
from tests.server.served import (
    Reading,
    Server,
    check_frames,
    check_whole_run,
    open_stream,
    resume,
    served,
)


async def choose(prompt: str = "Deploy?") -> str:
    """Asks *prompt* (yes or no, default no) and returns the answer."""
    agentnb.emit("before ")
    value = await agentnb.ask(prompt, choices=["yes", "no"], default="no")
    agentnb.emit(f"got {value}")
    return value


async def two(_input: str = "") -> list[str]:
    """Asks a choice (no default), then for free text (no default)."""
    first = await agentnb.ask("First?", choices=["a", "b"])
    second = await agentnb.ask("Name?")
    return [first, second]


async def scout(prompt: str) -> str:
    return await agentnb.ask(prompt, choices=["left", "right"])


async def family(prompt: str = "Which way?") -> str:
    """Runs ``scout``, a sub-run that asks."""
    agentnb.emit("sending the scout")
    way: str = await agentnb.run(scout, prompt, name="scout")
    return way


async def hasty(_input: str = "") -> str:
    """Asks with a 50 ms timeout: its default answers."""
    return await agentnb.ask("Quick?", choices=["yes", "no"], default="yes", timeout=0.05)


AGENTS: dict[str, Any] = {"choose": choose, "two": two, "family": family, "hasty": hasty}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=AGENTS)) as server:
        yield server


# -- helpers ------------------------------------------------------------------


def asks(reading: Reading) -> list[dict[str, Any]]:
    """The ``ask`` events read so far (their JSON forms, checked)."""
    return [e for e in checked(reading) if e["kind"] == "ask"]


def answered(event: agentnb.Event) -> tuple[str, str, str]:
    """An answer event's ask id, value and who gave it."""
    assert isinstance(event, agentnb.Answer), event
    return event.ask_id, event.value, event.by


def checked(reading: Reading) -> list[dict[str, Any]]:
    events = [json.loads(e.data) for e in reading.events]
    for event in events:
        check_event(event)
    return events


async def until_asked(reading: Reading, count: int = 1) -> dict[str, Any]:
    """Read until the *count*-th ``ask`` event; return it."""
    await reading.until(lambda r: sum(e.event == "ask" for e in r.events) >= count)
    return asks(reading)[count - 1]


async def answer(
    client: httpx.AsyncClient, run_id: str, body: Any, **request: Any
) -> httpx.Response:
    if "content" not in request:
        request["json"] = body
    return await client.post(f"/api/runs/{run_id}/answer", **request)


def refused(response: httpx.Response, status: int, *codes: str) -> str:
    """Check a refusal's status and JSON error form (its code one of *codes*); its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error", "message"]
    assert body["error"] in codes, body
    message: str = body["message"]
    return message


@contextlib.asynccontextmanager
async def socket(server: Server) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws, proxy=None) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message; an event's is checked against its kind's schema."""
    async with asyncio.timeout(5):
        frame = await ws.recv()
    assert isinstance(frame, str), f"a binary frame from the server: {frame!r}"
    message: dict[str, Any] = json.loads(frame)
    if message["type"] == "event":
        check_event(message["event"])
    return message


async def receive_until(ws: ClientConnection, kind: str, what: str) -> list[dict[str, Any]]:
    """Messages up to and with the first of type *kind* whose event (if any) is *what*."""
    got = []
    while True:
        message = await receive(ws)
        got.append(message)
        if message["type"] == kind and (
            kind != "event" or message["event"]["kind"] == what or what == ""
        ):
            return got


def open_question(server: Server, run_id: str) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = server.describe(run_id)["questions"]
    return questions


# -- HTTP -----------------------------------------------------------------------


async def test_an_answer_by_http_is_taken_and_streamed(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "choose"}) as reading,
    ):
        ask = await until_asked(reading)
        assert (ask["prompt"], ask["choices"], ask["default"]) == ("Deploy?", ["yes", "no"], "no")
        assert ask["run_id"] == reading.run_id
        described = (await client.get(f"/api/runs/{reading.run_id}")).json()
        assert described["status"] == "running"
        assert described["questions"] == [ask]  # the ask event, as it was sent
        response = await answer(client, reading.run_id, {"ask_id": ask["ask_id"], "value": "yes"})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "run_id": reading.run_id,
            "ask_id": ask["ask_id"],
            "value": "yes",
            "by": "http",
        }
        await reading.more()
        described = (await client.get(f"/api/runs/{reading.run_id}")).json()
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "ask", "answer", "text", "done"]
    assert answered(events[2]) == (ask["ask_id"], "yes", "http")
    assert isinstance(events[-1], agentnb.Done)
    assert events[-1].result == "yes"
    assert described["questions"] == []


@pytest.mark.parametrize("by", ["page", "cell", "default"])
async def test_an_answer_says_who_gave_it(
    server: Server, sent: dict[str, list[agentnb.Event]], by: str
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "choose"}) as reading,
    ):
        ask = await until_asked(reading)
        body = {"ask_id": ask["ask_id"], "value": "no", "by": by}
        response = await answer(client, reading.run_id, body)
        assert response.json() == {"run_id": reading.run_id, **body}
        await reading.more()
    events = check_whole_run(reading, sent)
    assert answered(events[2]) == (ask["ask_id"], "no", by)


async def test_a_value_outside_the_choices_is_refused_and_the_question_waits(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "choose"}) as reading,
    ):
        ask = await until_asked(reading)
        run_id = reading.run_id
        for value in ("maybe", "YES", ""):
            response = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": value})
            message = refused(response, 422, "invalid_answer")
            assert message.startswith('"value": ')
            assert "is not one of the choices ['yes', 'no']" in message
            assert "still open" in message
        response = await answer(client, run_id, {"ask_id": "nope", "value": "yes"})
        assert "has no question 'nope'" in refused(response, 404, "unknown_question")
        assert open_question(server, run_id) == [ask]
        assert server.describe(run_id)["status"] == "running"
        response = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": "no"})
        assert response.status_code == 200
        await reading.more()
    events = check_whole_run(reading, sent)
    answers = [answered(e) for e in events if isinstance(e, agentnb.Answer)]
    assert answers == [(ask["ask_id"], "no", "http")]


ASK_ID = "0123456789ab"
MALFORMED: list[tuple[Any, str]] = [
    ([], "must be a JSON object like"),
    ("yes", "must be a JSON object like"),
    ({"value": "yes"}, 'needs "ask_id"'),
    ({"ask_id": 7, "value": "yes"}, '"ask_id" must be a string'),
    ({"ask_id": None, "value": "yes"}, '"ask_id" must be a string'),
    ({"ask_id": ASK_ID}, 'needs "value"'),
    ({"ask_id": ASK_ID, "value": 1}, '"value" must be a string'),
    ({"ask_id": ASK_ID, "value": ["yes"]}, '"value" must be a string'),
    ({"ask_id": ASK_ID, "value": "yes", "by": "socket"}, '"by" says who answered'),
    ({"ask_id": ASK_ID, "value": "yes", "by": "robot"}, '"by" says who answered'),
    ({"ask_id": ASK_ID, "value": "yes", "by": None}, '"by" says who answered'),
    ({"ask_id": ASK_ID, "value": "yes", "who": "me"}, "unknown field 'who'"),
]


async def test_malformed_answers_are_refused_naming_the_field(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "choose"}) as reading,
    ):
        ask = await until_asked(reading)
        run_id = reading.run_id
        for body, says in MALFORMED:
            if isinstance(body, dict) and body.get("ask_id") == ASK_ID:
                body = {**body, "ask_id": ask["ask_id"]}
            message = refused(await answer(client, run_id, body), 422, "bad_request")
            assert says in message, (body, message)
        # Not JSON at all, or not sent as JSON: refused as every request body is.
        not_json = await answer(
            client, run_id, None, content=b"{ask_id:", headers={"content-type": "application/json"}
        )
        assert "is not valid JSON" in refused(not_json, 400, "bad_json")
        form = await answer(client, run_id, None, content=b"ask_id=x&value=yes")
        refused(form, 415, "unsupported_media_type")
        assert open_question(server, run_id) == [ask]
        response = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": "yes"})
        assert response.status_code == 200
        await reading.more()
    events = check_whole_run(reading, sent)
    assert [answered(e) for e in events if isinstance(e, agentnb.Answer)] == [
        (ask["ask_id"], "yes", "http")
    ]


async def test_an_unknown_run_is_404(server: Server) -> None:
    async with server.client() as client:
        response = await answer(client, "f" * 32, {"ask_id": ASK_ID, "value": "yes"})
    assert "no run 'ffff" in refused(response, 404, "unknown_run")


async def test_one_answer_is_taken_then_the_question_is_answered_then_ended(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "two"}) as reading,
    ):
        run_id = reading.run_id
        first = await until_asked(reading)
        assert (await answer(client, run_id, {"ask_id": first["ask_id"], "value": "b"})).is_success
        second = await until_asked(reading, 2)
        assert "choices" not in second  # free text (an empty field is left out)
        assert open_question(server, run_id) == [second]
        again = await answer(client, run_id, {"ask_id": first["ask_id"], "value": "a"})
        assert "already answered" in refused(again, 409, "answered")
        text = "a name\nwith <b>markup</b> & \u2028 lines"
        response = await answer(client, run_id, {"ask_id": second["ask_id"], "value": text})
        assert response.status_code == 200
        await reading.more()
        for ask in (first, second):
            late = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": "a"})
            assert "has ended (done)" in refused(late, 409, "ended")
        late = await answer(client, run_id, {"ask_id": "never-asked", "value": "a"})
        refused(late, 409, "ended")  # a finished run takes no answer at all
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["ask", "answer", "ask", "answer", "done"]
    assert answered(events[1]) == (first["ask_id"], "b", "http")
    assert answered(events[3]) == (second["ask_id"], text, "http")
    assert isinstance(events[-1], agentnb.Done)
    assert events[-1].result == ["b", text]


async def test_a_question_that_timed_out_is_ended_for_a_late_answer(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json={"agent": "hasty"}) as reading:
            ask = await until_asked(reading)
            await reading.more()
        late = await answer(client, reading.run_id, {"ask_id": ask["ask_id"], "value": "no"})
    refused(late, 409, "ended")
    events = check_whole_run(reading, sent)
    assert answered(events[1]) == (ask["ask_id"], "yes", "timeout")


async def test_an_answer_after_cancel_is_ended(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "choose"}) as reading,
    ):
        ask = await until_asked(reading)
        run_id = reading.run_id
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status_code == 200
        await reading.more()
        late = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": "yes"})
        assert "has ended (cancelled)" in refused(late, 409, "ended")
        assert open_question(server, run_id) == []
    events = check_whole_run(reading, sent)
    assert [e.kind for e in events] == ["text", "ask", "cancelled"]


@contextlib.contextmanager
def later(server: Server, seconds: float) -> Iterator[None]:
    """Within the block, the hub's clock (for ``keep_seconds``) is *seconds* ahead."""
    hub = server.hub
    real = hub._clock
    server.call(lambda: setattr(hub, "_clock", lambda: real() + seconds))
    try:
        yield
    finally:
        server.call(lambda: setattr(hub, "_clock", real))


async def test_a_forgotten_run_is_404(server: Server) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "hasty"}) as reading,
    ):
        ask = await until_asked(reading)
        await reading.more()
        with later(server, 301):  # past create_app's keep_seconds (300)
            late = await answer(client, reading.run_id, {"ask_id": ask["ask_id"], "value": "no"})
    assert "was forgotten" in refused(late, 404, "unknown_run")


async def test_a_sub_runs_question_is_answered_through_the_root(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "family", "input": "Left or right?"}
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json=body) as reading,
    ):
        ask = await until_asked(reading)
        root = reading.run_id
        assert ask["run_id"] != root
        assert ask["path"] == ["family", "scout"]
        assert open_question(server, root) == [ask]
        # The hub knows runs by the id it started; a sub-run is reached through its root.
        by_child = await answer(client, ask["run_id"], {"ask_id": ask["ask_id"], "value": "left"})
        refused(by_child, 404, "unknown_run")
        response = await answer(client, root, {"ask_id": ask["ask_id"], "value": "left"})
        assert response.json() == {
            "run_id": root,
            "ask_id": ask["ask_id"],
            "value": "left",
            "by": "http",
        }
        await reading.more()
    events = check_whole_run(reading, sent)
    answer_event = next(e for e in events if isinstance(e, agentnb.Answer))
    assert answered(answer_event) == (ask["ask_id"], "left", "http")
    assert answer_event.run_id == ask["run_id"]  # the sub-run that asked took it
    assert isinstance(events[-1], agentnb.Done)
    assert events[-1].result == "left"


# -- races ----------------------------------------------------------------------

ROUNDS = 5
# The second answer finds the question answered, or (when the run was quicker) its run ended.
LOST = ("answered", "ended")


async def test_two_answers_at_once_one_is_taken(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client:
        for _ in range(ROUNDS):
            async with open_stream(
                client, "POST", "/api/stream", json={"agent": "choose"}
            ) as reading:
                ask = await until_asked(reading)
                run_id = reading.run_id
                yes, no = await asyncio.gather(
                    answer(client, run_id, {"ask_id": ask["ask_id"], "value": "yes"}),
                    answer(client, run_id, {"ask_id": ask["ask_id"], "value": "no", "by": "page"}),
                )
                await reading.more()
            assert sorted([yes.status_code, no.status_code]) == [200, 409]
            won, lost = (yes, no) if yes.status_code == 200 else (no, yes)
            refused(lost, 409, *LOST)
            events = check_whole_run(reading, sent)
            answers = [answered(e) for e in events if isinstance(e, agentnb.Answer)]
            taken = won.json()
            assert answers == [(ask["ask_id"], taken["value"], taken["by"])]
            assert events[-1].result == taken["value"]  # type: ignore[attr-defined]


async def test_an_answer_by_http_and_one_by_socket_at_once_one_is_taken(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with server.client() as client, socket(server) as ws:
        for n in range(ROUNDS):
            async with open_stream(
                client, "POST", "/api/stream", json={"agent": "choose"}
            ) as reading:
                ask = await until_asked(reading)
                run_id = reading.run_id
                message = {
                    "type": "answer",
                    "run_id": run_id,
                    "ask_id": ask["ask_id"],
                    "value": "no",
                    "ref": n,
                }
                by_http, _ = await asyncio.gather(
                    answer(client, run_id, {"ask_id": ask["ask_id"], "value": "yes"}),
                    ws.send(json.dumps(message)),
                )
                reply = await receive(ws)
                await reading.more()
            assert reply["ref"] == n
            if by_http.status_code == 200:
                assert reply["type"] == "error"
                assert reply["error"] in LOST
                assert (reply["run_id"], reply["ask_id"]) == (run_id, ask["ask_id"])
                taken = ("yes", "http")
            else:
                refused(by_http, 409, *LOST)
                assert reply == {**message, "type": "answered", "by": "socket"}
                taken = ("no", "socket")
            events = check_whole_run(reading, sent)
            answers = [answered(e) for e in events if isinstance(e, agentnb.Answer)]
            assert answers == [(ask["ask_id"], *taken)]


# -- the WebSocket --------------------------------------------------------------


async def test_an_answer_by_socket_and_refusals_that_keep_the_socket_open(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with socket(server) as ws:
        await ws.send(json.dumps({"type": "start", "agent": "choose", "ref": "run"}))
        got = await receive_until(ws, "event", "ask")
        assert got[0]["type"] == "started"
        run_id = got[0]["run_id"]
        ask = got[-1]["event"]

        async def refusal(message: dict[str, Any], status_code: str) -> str:
            await ws.send(json.dumps({"type": "answer", "run_id": run_id, **message}))
            reply = await receive(ws)
            assert reply["type"] == "error", reply
            assert reply["error"] == status_code, reply
            assert reply["ref"] == message.get("ref")
            text: str = reply["message"]
            return text

        ask_id = ask["ask_id"]
        text = await refusal({"ask_id": ask_id, "value": "maybe", "ref": 1}, "invalid_answer")
        assert "not one of the choices" in text
        text = await refusal({"ask_id": "nope", "value": "yes", "ref": [2]}, "unknown_question")
        assert "'nope'" in text
        text = await refusal({"ask_id": ask_id, "ref": 3}, "bad_request")
        assert 'needs "value"' in text
        text = await refusal({"ask_id": ask_id, "value": 5, "ref": 4}, "bad_request")
        assert '"value" must be a string' in text
        text = await refusal({"ask_id": ask_id, "value": "yes", "by": "http"}, "bad_request")
        assert "unknown field 'by'" in text  # a socket's answer is by "socket"
        await ws.send(json.dumps({"type": "answer", "ask_id": ask_id, "value": "yes"}))
        reply = await receive(ws)
        assert (reply["error"], reply["message"]) == (
            "bad_request",
            '"answer" needs "run_id", a string',
        )
        await ws.send(
            json.dumps({"type": "answer", "run_id": "f" * 32, "ask_id": ask_id, "value": "yes"})
        )
        assert (await receive(ws))["error"] == "unknown_run"
        assert open_question(server, run_id) == [ask]
        # Still open, and the socket still works: the answer is taken.
        message = {"type": "answer", "run_id": run_id, "ask_id": ask_id, "value": "yes", "ref": 9}
        await ws.send(json.dumps(message))
        reply = await receive(ws)
        assert reply == {
            "type": "answered",
            "run_id": run_id,
            "ask_id": ask_id,
            "value": "yes",
            "by": "socket",
            "ref": 9,
        }
        assert list(reply) == ["type", "run_id", "ask_id", "value", "by", "ref"]
        rest = await receive_until(ws, "event", "done")
        await ws.send(json.dumps({**message, "ref": 10}))
        late = await receive(ws)
        assert (late["type"], late["error"], late["ref"]) == ("error", "ended", 10)
    events = [agentnb.Event.from_dict(m["event"]) for m in got[1:] + rest]
    assert events == sent[run_id]
    assert [e.kind for e in events] == ["text", "ask", "answer", "text", "done"]
    assert answered(events[2]) == (ask_id, "yes", "socket")


# -- a detached run --------------------------------------------------------------


async def test_a_detached_run_waits_for_its_answer_and_a_resuming_client_sees_the_question(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    body = {"agent": "choose", "input": "Ship it?", "on_disconnect": "continue"}
    async with server.client() as client:
        async with open_stream(client, "POST", "/api/stream", json=body) as first:
            ask = await until_asked(first)
        run_id = first.run_id
        server.wait_for(lambda: server.hub.get(run_id).listeners == 0)
        described = (await client.get(f"/api/runs/{run_id}")).json()
        assert (described["status"], described["listeners"]) == ("running", 0)
        assert described["questions"] == [ask]
        assert described["events"] == 2  # waiting: nothing more came
        # Clients resuming from the start, and from just before the question, see it.
        async with open_stream(client, "GET", f"/api/runs/{run_id}/events") as whole:
            assert await until_asked(whole) == ask
        before = first.events[0].id
        async with open_stream(
            client, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": before}
        ) as tail:
            assert await until_asked(tail) == ask
            response = await answer(client, run_id, {"ask_id": ask["ask_id"], "value": "no"})
            assert response.status_code == 200
            await tail.more()
        everything = await resume(client, run_id)
    assert check_frames(whole) == sent[run_id][:2]
    events = check_frames(tail, first=1)
    assert [e.kind for e in events] == ["ask", "answer", "text", "done"]
    assert answered(events[1]) == (ask["ask_id"], "no", "http")
    check_whole_run(everything, sent)
    assert everything.agent_events()[-1].result == "no"  # type: ignore[attr-defined]


async def test_an_answer_with_a_lone_surrogate_is_taken_and_echoed_as_json(
    server: Server, sent: dict[str, list[agentnb.Event]]
) -> None:
    async with (
        server.client() as client,
        open_stream(client, "POST", "/api/stream", json={"agent": "two"}) as reading,
    ):
        first = await until_asked(reading)
        response = await answer(client, reading.run_id, {"ask_id": first["ask_id"], "value": "a"})
        assert response.status_code == 200
        second = await until_asked(reading, 2)
        response = await client.post(  # JSON may hold a lone surrogate; UTF-8 cannot
            f"/api/runs/{reading.run_id}/answer",
            content=b'{"ask_id": "' + second["ask_id"].encode() + b'", "value": "a\\ud800b"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200
        assert response.json()["value"] == "a\ud800b"
        await reading.more()
