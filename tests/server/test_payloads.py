"""Awkward payloads survive the wire byte-exact: line breaks of every kind, separators, NUL, emoji.

An agent emits each payload where the test says (a text chunk, a status, tool
call arguments and name, a tool result, custom data, the run's result); the
test reads the run twice, its raw bytes through the spec-correct parser of
harness/wire.py and again through httpx-sse, and every payload must come back
as the very string sent. 10,000 seeded payloads in ten runs, a Hypothesis search
that shrinks a failure to its smallest payload, and 1 MB strings in every place.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

import agentnb
from agentnb import JSON
from agentnb.server import create_app
from tests.server.served import (
    Reading,
    Server,
    check_whole_run,
    open_stream,
    post_stream,
    recording,
    served,
)

PLACES = ("text", "status", "args", "tool", "custom", "result")

# What SSE, JSON and line splitting get wrong, and what looks like SSE framing.
PIECES = [
    "\r", "\n", "\r\n", "\n\r", "\r\r", "\u2028", "\u2029", "\x85", "\x00", "\x0b", "\x0c",
    "\x1c", "\x1d", "\x1e", "\x7f", "\t", "😀", "👩\u200d👩\u200d👧", "🇫🇷", "\U0001f9ea",
    "\U0010ffff", "\U00010000", "\ud7ff", "\ue000", "\ufeff", "\ufffd", "\uffff", "é",
    "e\u0301", "中文", '"', "\\", "\\u0000", "'", "<script>", "data: x", "id: 1",
    "event: done", ": ping", "\r\n\r\n", "\n\n", "retry: 0", " ", "",
]  # fmt: skip
ENDS = ["", "\r", "\n", "\r\n", "\u2028", "\x85"]


async def echo(items: list[list[str]]) -> list[str]:
    """Emits each [place, payload] item in its place; returns the "result" payloads."""
    result = []
    for place, payload in items:
        if place == "text":
            agentnb.emit(payload)
        elif place == "status":
            agentnb.emit(agentnb.Status(payload))
        elif place == "args":
            agentnb.emit(
                agentnb.ToolCall("tool", {"value": payload, "keyed": {payload: [payload]}})
            )
        elif place == "tool":
            agentnb.emit(agentnb.ToolResult(payload, payload, call_id=payload))
        elif place == "custom":
            agentnb.emit(agentnb.Custom("payload", {"s": payload, "keyed": {payload: payload}}))
        else:
            result.append(payload)
    return result


def payloads_of(events: list[agentnb.Event]) -> list[tuple[str, str]]:
    """The [place, payload] items a run's events carry (the result's last), checked whole."""
    out: list[tuple[str, str]] = []
    for event in events:
        match event:
            case agentnb.TextChunk(text=text):
                out.append(("text", text))
            case agentnb.Status(message=message):
                out.append(("status", message))
            case agentnb.ToolCall(name="tool", args=args):
                value = args["value"]
                assert isinstance(value, str)
                assert args == {"value": value, "keyed": {value: [value]}}
                out.append(("args", value))
            case agentnb.ToolResult(name=name, result=result, call_id=call_id):
                assert name == result == call_id
                assert isinstance(name, str)
                out.append(("tool", name))
            case agentnb.Custom(name="payload", data=data):
                assert isinstance(data, dict)
                value = data["s"]
                assert isinstance(value, str)
                assert data == {"s": value, "keyed": {value: value}}
                out.append(("custom", value))
            case agentnb.Done(result=result):
                assert isinstance(result, list)
                out += [("result", p) for p in result if isinstance(p, str)]
            case _:
                raise AssertionError(f"unexpected event {event!r}")
    return out


def expected(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [i for i in items if i[0] != "result"] + [i for i in items if i[0] == "result"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(create_app(agents=[echo], max_body=64 << 20)) as server:
        yield server


async def round_trip(server: Server, items: list[tuple[str, str]]) -> None:
    """Send *items* through a run; both readings must give back every payload exactly."""
    body: dict[str, JSON] = {"agent": "echo", "input": [list(i) for i in items]}
    with recording() as sent:
        async with server.client(timeout=30) as client:
            # The raw bytes, through this file's own SSE parser.
            reading = await post_stream(client, body)
            run_id = reading.run_id
            # The same run again, resumed from its start, through httpx-sse.
            async with aconnect_sse(client, "GET", f"/api/runs/{run_id}/events") as source:
                received = [sse async for sse in source.aiter_sse()]
    events = check_whole_run(reading, sent)
    assert payloads_of(events) == expected(items)
    rebuilt = [agentnb.Event.from_json(sse.data) for sse in received]
    assert rebuilt == events
    assert [(sse.event, sse.id) for sse in received] == [(e.event, e.id) for e in reading.events]
    assert [sse.data for sse in received] == [e.data for e in reading.events]


async def post_stream_raw(client: httpx.AsyncClient, body: bytes) -> Reading:
    headers = {"Content-Type": "application/json"}
    async with open_stream(client, "POST", "/api/stream", content=body, headers=headers) as reading:
        await reading.more()
    return reading


def random_payload(rng: random.Random) -> str:
    parts = [rng.choice(ENDS)]
    for _ in range(rng.randrange(0, 12)):
        roll = rng.random()
        if roll < 0.5:
            parts.append(rng.choice(PIECES))
        elif roll < 0.8:
            parts.append(chr(rng.randrange(0x20, 0x7F)))
        else:
            code = rng.randrange(0x110000 - 0x800)
            parts.append(chr(code if code < 0xD800 else code + 0x800))  # no surrogates
    parts.append(rng.choice(ENDS))
    return "".join(parts)


@pytest.mark.parametrize("seed", range(10))
async def test_a_thousand_awkward_payloads_per_run_come_back_exact(
    server: Server, seed: int
) -> None:
    rng = random.Random(seed)
    items = [(rng.choice(PLACES), random_payload(rng)) for _ in range(1000)]
    # Every piece and every end appears in some payload of every run.
    items += [(PLACES[i % len(PLACES)], p) for i, p in enumerate(PIECES + ENDS)]
    await round_trip(server, items)


@pytest.mark.parametrize("place", PLACES)
async def test_megabyte_payloads_come_back_exact(server: Server, place: str) -> None:
    rng = random.Random(place)
    big = "".join(rng.choice(PIECES) + chr(rng.randrange(0x20, 0x7F)) for _ in range(250_000))
    assert len(big.encode()) > 1 << 20
    await round_trip(server, [(place, "\r" + big + "\r"), ("text", "after"), (place, big[::-1])])


pieces = st.one_of(st.sampled_from(PIECES), st.text(st.characters(codec="utf-8"), max_size=4))
payloads = st.builds(
    lambda head, middle, tail: head + "".join(middle) + tail,
    st.sampled_from(ENDS),
    st.lists(pieces, max_size=6),
    st.sampled_from(ENDS),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PLACES), payloads), min_size=1, max_size=20))
def test_any_payloads_come_back_exact(server: Server, items: list[tuple[str, str]]) -> None:
    asyncio.run(round_trip(server, items))


def test_the_payloads_cover_what_they_must() -> None:
    # A guard on the generator itself, so a change to it cannot quietly test less.
    rng = random.Random(0)
    text = "".join(random_payload(rng) for _ in range(1000))
    for needed in ["\r\n", "\n", "\u2028", "\u2029", "\x85", "\x00", "😀", "\U0010ffff"]:
        assert needed in text, repr(needed)
    assert any(random_payload(rng).endswith("\r") for _ in range(100))
    assert any(random_payload(rng).startswith("\r") for _ in range(100))
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize("seed", [100, 101])
async def test_awkward_payloads_come_back_exact_over_the_websocket(
    server: Server, seed: int
) -> None:
    rng = random.Random(seed)
    items = [(rng.choice(PLACES), random_payload(rng)) for _ in range(500)]
    items += [(PLACES[i % len(PLACES)], p) for i, p in enumerate(PIECES + ENDS)]
    events: list[agentnb.Event] = []
    with recording() as sent:
        async with connect(server.ws, proxy=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "agent": "echo", "input": items}))
            async with asyncio.timeout(10):
                started = json.loads(await ws.recv())
                run_id = started["run_id"]
                while not events or not (events[-1].terminal and events[-1].run_id == run_id):
                    message = json.loads(await ws.recv())
                    assert message["id"] == f"{run_id}:{len(events)}"
                    events.append(agentnb.Event.from_dict(message["event"]))
    assert events == sent[run_id]
    assert payloads_of(events) == expected(items)


async def test_lone_surrogates_travel_as_json_escapes(server: Server) -> None:
    # Not UTF-8, so never raw on the wire; JSON escapes carry them both ways.
    body = b'{"agent": "echo", "input": [["text", "a\\ud800b"], ["custom", "\\udfff"]]}'
    with recording() as sent:
        async with server.client(timeout=30) as client:
            reading = await post_stream_raw(client, body)
    events = check_whole_run(reading, sent)
    assert payloads_of(events) == [("text", "a\ud800b"), ("custom", "\udfff")]
    assert b"a\\ud800b" in reading.raw
    assert reading.raw.isascii()
