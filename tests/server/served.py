"""What the server tests share: a stream reader, checks of the framing, a recorder, a server.

A :class:`Reading` keeps a response's raw bytes and parses them with
:class:`harness.wire.SseParser` (written from the WHATWG spec), so the tests check
the server's bytes without trusting httpx-sse alone.

::

    with served(create_app(agents=[poet])) as server, recording() as sent:
        async with httpx.AsyncClient(base_url=server.base) as client:
            reading = await post_stream(client, {"agent": "poet", "input": "the sea"})
        assert reading.agent_events() == sent[reading.run_id]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

import agentnb
from agentnb.server._hub import RunHub
from agentnb.server._served import ServedRun
from agentnb.testing import check_event
from harness.wait import until
from harness.web import in_server_loop, serving
from harness.wire import SseEvent, SseParser, expected_bytes, strip_pings

__all__ = [
    "Reading",
    "Server",
    "check_frames",
    "check_whole_run",
    "open_stream",
    "post_stream",
    "recording",
    "resume",
    "served",
]

T = TypeVar("T")


class Reading:
    """One SSE response as it arrives: status, headers, raw body so far and events so far."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.raw = bytearray()
        self.parser = SseParser()
        self.events: list[SseEvent] = []
        self.ended = False
        self._chunks = response.aiter_raw()

    @property
    def run_id(self) -> str:
        return self.response.headers["x-agentnb-run-id"]

    async def more(self, limit: int | None = None) -> list[SseEvent]:
        """Read until *limit* more events have arrived (None: until the stream ends)."""
        before = len(self.events)
        if self.response.status_code != 200:
            await self.response.aread()
            self.ended = True
            return []
        while limit is None or len(self.events) - before < limit:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.ended = True
                break
            self.raw += chunk
            self.events += self.parser.feed(chunk)
        return self.events[before:]

    async def until(self, check: Callable[[Reading], bool]) -> None:
        """Read until *check(self)* is true (pings and partial events count as read)."""
        while not check(self):
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.ended = True
                raise AssertionError(f"the stream ended first: {bytes(self.raw)!r}") from None
            self.raw += chunk
            self.events += self.parser.feed(chunk)

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]

    def agent_events(self) -> list[agentnb.Event]:
        """The events read, each checked against its kind's JSON Schema as it was sent."""
        for e in self.events:
            check_event(json.loads(e.data))
        return [agentnb.Event.from_json(e.data) for e in self.events]

    def positions(self) -> list[int]:
        """The n of each ``id: <run id>:<n>``, checking the run id."""
        out = []
        for e in self.events:
            run_id, _, n = e.id.rpartition(":")
            assert run_id == self.run_id, f"id {e.id!r} is not of run {self.run_id}"
            out.append(int(n))
        return out


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, method: str, url: str, **request: Any
) -> AsyncIterator[Reading]:
    """Open an SSE response; the block reads it with ``await reading.more(...)``.

    Leaving the block closes the connection (a client going away mid-stream).
    """
    async with client.stream(method, url, **request) as response:
        reading = Reading(response)
        try:
            yield reading
        finally:
            await reading.aclose()


async def post_stream(client: httpx.AsyncClient, body: Any, limit: int | None = None) -> Reading:
    """POST /api/stream and read the answer (all of it, or until *limit* events)."""
    async with open_stream(client, "POST", "/api/stream", json=body) as reading:
        await reading.more(limit)
    return reading


async def resume(
    client: httpx.AsyncClient, run_id: str, last: str | None = None, limit: int | None = None
) -> Reading:
    """GET /api/runs/{run_id}/events after *last* (a Last-Event-ID header) and read it."""
    headers = {"Last-Event-ID": last} if last is not None else {}
    url = f"/api/runs/{run_id}/events"
    async with open_stream(client, "GET", url, headers=headers) as reading:
        await reading.more(limit)
    return reading


def _differ(got: bytes, want: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if at is None:
        at = min(len(got), len(want))
    return (
        f"the bytes differ at {at} (of {len(got)}, expected {len(want)}): "
        f"got {got[max(at - 60, 0) : at + 60]!r}, expected {want[max(at - 60, 0) : at + 60]!r}"
    )


# Plain asserts here are not rewritten by pytest (this is not a test module): each says why.


def check_frames(reading: Reading, first: int = 0) -> list[agentnb.Event]:
    """Exact framing (nothing but frames and pings), ids *first*.. without gaps, event = kind."""
    status = reading.response.status_code
    assert status == 200, f"status {status}: {reading.response.text}"
    got, want = strip_pings(bytes(reading.raw)), expected_bytes(reading.events)
    assert got == want, _differ(got, want)
    positions = reading.positions()
    assert positions == list(range(first, first + len(reading.events))), (
        f"ids are not {first}.. without gaps: {positions}"
    )
    events = reading.agent_events()
    kinds = [e.kind for e in events]
    assert kinds == [e.event for e in reading.events], f"event: lines are not the kinds {kinds}"
    return events


def check_whole_run(reading: Reading, sent: dict[str, list[agentnb.Event]]) -> list[agentnb.Event]:
    """A whole run's stream: exact framing, ids 0.., the events sent, one terminal, last."""
    assert reading.ended, "the stream has not ended"
    events = check_frames(reading)
    run_id = reading.run_id
    if events != sent[run_id]:
        pairs = zip(events, sent[run_id], strict=False)
        at = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
        raise AssertionError(
            f"{len(events)} events received, {len(sent[run_id])} sent; first difference at "
            f"{at}: {events[at] if at is not None else None!r} != "
            f"{sent[run_id][at] if at is not None else None!r}"
        )
    ends = [i for i, e in enumerate(events) if e.terminal and e.run_id == run_id]
    assert ends == [len(events) - 1], f"the run's terminal events are at {ends}"
    own = [e.seq for e in events if e.run_id == run_id]
    assert own == list(range(len(own))), f"the run's own seq have gaps: {own}"
    return events


@contextlib.contextmanager
def recording() -> Iterator[dict[str, list[agentnb.Event]]]:
    """Record every event each served run (a sink of its run) is handed, by run id."""
    sent: dict[str, list[agentnb.Event]] = defaultdict(list)
    send = ServedRun.send

    def recording_send(self: ServedRun, event: agentnb.Event) -> None:
        sent[self.id].append(event)
        send(self, event)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ServedRun, "send", recording_send)
        yield sent


@dataclass
class Server:
    """A running app: its base URL, and its state read on the server's own loop."""

    base: str
    app: FastAPI

    @property
    def hub(self) -> RunHub:
        hub: RunHub = self.app.state.hub
        return hub

    @property
    def ws(self) -> str:
        return "ws" + self.base.removeprefix("http") + "/api/ws"

    def client(self, timeout: float = 10) -> httpx.AsyncClient:
        """An HTTP client of this server (use it in ``async with``)."""
        return httpx.AsyncClient(base_url=self.base, timeout=timeout)

    def call(self, fn: Callable[[], T]) -> T:
        return in_server_loop(self.base, fn)

    def describe(self, run_id: str) -> dict[str, Any]:
        return self.call(lambda: self.hub.get(run_id).describe())

    def live(self) -> list[str]:
        return self.call(lambda: [s.id for s in self.hub.live])

    def tasks(self) -> list[str]:
        """The names of the unfinished tasks on the server's loop."""

        def names() -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if not t.done()]

        return self.call(names)

    def run_tasks(self, run_id: str) -> list[str]:
        """The unfinished tasks of served run *run_id*: its agent's and its sink feeders'."""

        def names() -> list[str]:
            run = self.hub.get(run_id).run
            if run is None:  # ended: its terminal event is buffered, the run is let go
                return []
            tasks = [run._task, *run._feeders]
            return [t.get_name() for t in tasks if t is not None and not t.done()]

        return self.call(names)

    def wait_for(
        self, check: Callable[[], bool], timeout: float = 5.0, since: float | None = None
    ) -> float:
        """Poll *check* on the server's loop until true; the seconds since *since* (or now)."""
        return until(lambda: self.call(check), timeout, since)


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[Server]:
    with serving(app) as base:
        yield Server(base, app)
