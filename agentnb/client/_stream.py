"""``stream()`` and ``resume()``: a remote run's events, as the typed events, exactly once.

The client speaks the server's SSE protocol with httpx and httpx-sse. It checks
that the ids (``<run id>:<n>``) follow each other without a gap, and when the
connection drops before the run's terminal event it resumes from the last id it
got (``GET /api/runs/{id}/events`` with ``Last-Event-ID``), a few times with a
growing pause, so the caller sees every event once even across drops.

Runs are started with ``on_disconnect="continue"`` so that a dropped connection
does not cancel them; leaving the iteration early (``break``, an exception, a
cancelled task) cancels the remote run explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Literal

import httpx
from httpx_sse import SSEError, aconnect_sse

from .._events import JSON, Event
from .._exceptions import InvalidEvent
from ._exceptions import ConnectionLost, ServerError

__all__ = ["RemoteStream", "answer", "cancel", "resume", "stream"]

_MISSING: Any = object()
_DROPS = (httpx.TransportError, SSEError)


class RemoteStream:
    """An async iterator of a remote run's events (and an async context manager).

    ``run_id`` is known once the server answered; ``last_event_id`` is the id of
    the last event yielded; ``ended`` turns true with the run's terminal event.
    Use it in ``async with`` to leave it at a point of your choosing; a bare
    ``async for`` that breaks out also cancels the run, when the stream is dropped.
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        # The generator holds the link, not this object: no reference cycle, so a
        # stream dropped after a ``break`` is closed at once, outermost first.
        self._link = _Link(base_url, **options)
        self._events = self._link.generate()

    @property
    def base_url(self) -> str:
        return self._link.base_url

    @property
    def run_id(self) -> str | None:
        return self._link.run_id

    @property
    def last_event_id(self) -> str | None:
        return self._link.last_event_id

    @property
    def ended(self) -> bool:
        return self._link.ended

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open"
        return f"<RemoteStream {self.base_url} run={self.run_id} last={self.last_event_id} {state}>"

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def __aenter__(self) -> RemoteStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading; cancels the remote run if it has not ended."""
        await self._events.aclose()

    async def answer(
        self, ask_id: str, value: str, *, by: Literal["http", "cell", "page", "default"] = "http"
    ) -> dict[str, Any]:
        """Answer the run's question *ask_id* (an ``ask`` event of this stream) with *value*."""
        if self.run_id is None:
            raise RuntimeError("the server has not answered yet: there is no run to answer")
        async with self._link.session() as client:
            return await answer(self.base_url, self.run_id, ask_id, value, by=by, client=client)

    async def cancel(self) -> None:
        """Ask the server to cancel the run; its stream then ends with a ``cancelled`` event."""
        if self.run_id is None:
            raise RuntimeError("the server has not answered yet: there is no run to cancel")
        async with self._link.session() as client:
            await cancel(self.base_url, self.run_id, client=client)


class _Link:
    """A remote run's connection state, and the generator of its events."""

    def __init__(
        self,
        base_url: str,
        *,
        start: dict[str, JSON] | None = None,
        run_id: str | None = None,
        last_event_id: str | None = None,
        client: httpx.AsyncClient | None = None,
        retries: int = 5,
        retry_delay: float = 0.25,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.run_id = run_id
        self.last_event_id = last_event_id
        self.ended = False
        self.retries = retries
        self.retry_delay = retry_delay
        self._start = start
        self._client = client
        self._headers = dict(headers or {})
        self._timeout = httpx.Timeout(timeout, read=None)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            yield client

    async def generate(self) -> AsyncGenerator[Event, None]:
        async with self.session() as client:
            try:
                attempts = 0
                while True:
                    try:
                        async with contextlib.aclosing(self._connect(client)) as events:
                            async for event in events:
                                attempts = 0
                                yield event
                        if self.ended:
                            return
                        cause = "the server closed the stream before the run ended"
                    except _DROPS as exc:
                        if self.run_id is None:  # never started: nothing to resume
                            raise
                        cause = f"{type(exc).__name__}: {exc}"
                    attempts += 1
                    if attempts > self.retries:
                        raise ConnectionLost(self.run_id, self.last_event_id, attempts, cause)
                    await asyncio.sleep(min(self.retry_delay * 2 ** (attempts - 1), 5.0))
            finally:
                if not self.ended and self.run_id is not None:
                    await self._cancel_quietly()

    async def _connect(self, client: httpx.AsyncClient) -> AsyncGenerator[Event, None]:
        kwargs: dict[str, Any]
        if self.run_id is None:
            assert self._start is not None
            method, url, kwargs = "POST", "/api/stream", {"json": self._start}
        else:
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
            method, url = "GET", f"/api/runs/{self.run_id}/events"
            kwargs = {"headers": headers}
        async with aconnect_sse(client, method, self.base_url + url, **kwargs) as source:
            response = source.response
            if response.is_error:
                await response.aread()
                raise _server_error(response)
            self.run_id = response.headers.get("x-agentnb-run-id") or self.run_id
            expected = _position(self.last_event_id) + 1
            async for sse in source.aiter_sse():
                if not sse.data:
                    # Not an event: the SSE standard dispatches nothing for an empty data
                    # buffer, but httpx-sse yields one after each keep-alive comment.
                    continue
                if _position(sse.id) != expected or not sse.id.startswith(f"{self.run_id}:"):
                    raise ServerError(
                        502,
                        "protocol",
                        f"expected event {self.run_id}:{expected} next, got {sse.id!r}: "
                        "the stream skipped or repeated events",
                    )
                try:
                    event = Event.from_json(sse.data)
                except InvalidEvent as exc:
                    raise ServerError(502, "protocol", f"event {sse.id}: {exc}") from None
                self.last_event_id = sse.id
                expected += 1
                if event.terminal and event.run_id == self.run_id:
                    self.ended = True
                yield event
                if self.ended:
                    return

    async def _cancel_quietly(self) -> None:
        # The caller left early (or the stream was lost): the run should not go on
        # detached. Shielded, so that a cancellation still in force (anyio's cancel
        # scopes re-deliver it) does not stop the request; sent like every other
        # request of this stream (the caller's client, or one with its headers), so it
        # passes the same authentication. Best effort: a server that cannot be reached
        # cannot be told.
        request = asyncio.ensure_future(self._cancel_within(2.0))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(request)

    async def _cancel_within(self, seconds: float) -> None:
        assert self.run_id is not None
        with contextlib.suppress(httpx.HTTPError, ServerError, TimeoutError):
            async with asyncio.timeout(seconds), self.session() as client:
                await cancel(self.base_url, self.run_id, client=client)


def _position(event_id: str | None) -> int:
    if not event_id:
        return -1
    number = event_id.rpartition(":")[2]
    return int(number) if number.isdigit() else -2


def _server_error(response: httpx.Response) -> ServerError:
    try:
        body = response.json()
        return ServerError(response.status_code, str(body["error"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ServerError(response.status_code, "http_error", text)


def stream(
    base_url: str,
    agent: str,
    input: JSON = _MISSING,
    *,
    on_disconnect: Literal["cancel", "continue"] = "continue",
    client: httpx.AsyncClient | None = None,
    retries: int = 5,
    retry_delay: float = 0.25,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> RemoteStream:
    """Start *agent* on the server at *base_url* with *input* and stream its events.

    ::

        async for event in agentnb.client.stream("http://127.0.0.1:8000", "poet", "the sea"):
            ...

    The events are the server's, stamps included. A dropped connection is resumed
    (*retries* times in a row at most, pausing *retry_delay*, then twice as long, ...);
    leaving the loop early cancels the remote run. A refused request raises
    ``ServerError`` with the server's message; an unrecoverable drop ``ConnectionLost``.
    Pass *client* to reuse an ``httpx.AsyncClient`` (its base URL is not used).
    """
    body: dict[str, JSON] = {"agent": agent, "on_disconnect": on_disconnect}
    if input is not _MISSING:
        body["input"] = input
    return RemoteStream(
        base_url,
        start=body,
        client=client,
        retries=retries,
        retry_delay=retry_delay,
        headers=headers,
        timeout=timeout,
    )


def resume(
    base_url: str,
    run_id: str,
    last_event_id: str | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    retries: int = 5,
    retry_delay: float = 0.25,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> RemoteStream:
    """Stream the events of a run already on the server, after *last_event_id* (or all)."""
    return RemoteStream(
        base_url,
        run_id=run_id,
        last_event_id=last_event_id,
        client=client,
        retries=retries,
        retry_delay=retry_delay,
        headers=headers,
        timeout=timeout,
    )


async def cancel(
    base_url: str,
    run_id: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Cancel a run on the server; returns its state (``{"status": ...}``).

    Sent with *client* if given, else with a client of its own carrying *headers*.
    """
    url = f"{base_url.rstrip('/')}/api/runs/{run_id}/cancel"
    if client is None:
        async with httpx.AsyncClient(headers=headers) as own:
            response = await own.post(url)
    else:
        response = await client.post(url)
    if response.is_error:
        raise _server_error(response)
    state: dict[str, Any] = response.json()
    return state


async def answer(
    base_url: str,
    run_id: str,
    ask_id: str,
    value: str,
    *,
    by: Literal["http", "cell", "page", "default"] = "http",
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Answer the question *ask_id* of the run *run_id* (or of a sub-run) with *value*.

    *by* says who answered: ``http`` (a program), or the front end the answer came
    from (``cell``, ``page``; ``default`` where no one could answer and the question's
    default was sent). Returns what the server took (``{"run_id", "ask_id", "value",
    "by"}``). A refused
    answer raises ``ServerError``: 404 for an unknown run or question, 409 for one already
    answered or ended, 422 for a value outside the choices (the question stays open).
    """
    url = f"{base_url.rstrip('/')}/api/runs/{run_id}/answer"
    body = {"ask_id": ask_id, "value": value, "by": by}
    if client is None:
        async with httpx.AsyncClient(headers=headers) as own:
            response = await own.post(url, json=body)
    else:
        response = await client.post(url, json=body)
    if response.is_error:
        raise _server_error(response)
    taken: dict[str, Any] = response.json()
    return taken
