"""A local model provider: a real HTTP server that answers with scripted bytes.

The OpenAI and Anthropic SDKs are tested over real HTTP against it: each test
scripts the exact bytes of the provider's documented SSE wire format (or an error
response), points the real SDK client at it, and reads back what the server saw:
the request bodies and when a client went away mid-stream::

    provider = Provider()
    provider.script(Reply(chunks=[b"data: {...}\\n\\n", ...]))
    with serving(provider.app) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="test")
        ...
    provider.requests[0]["body"], provider.disconnects

Every POST path answers the next scripted reply, in order (``/v1/chat/completions``,
``/v1/responses``, ``/v1/messages``: the server does not care which).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Provider", "Reply", "sse"]


def sse(data: object, event: str | None = None) -> bytes:
    """One SSE event as providers send it: ``event:`` (if any), ``data:`` JSON, blank line."""
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {body}\n\n".encode()


@dataclass
class Reply:
    """One scripted response.

    *chunks* are written one by one (each its own write), *delay* seconds apart;
    with *hang*, the response then stays open without ending (until the client
    goes away). A reply without chunks has *body* as its whole body.
    """

    chunks: Sequence[bytes] = ()
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    hang: bool = False
    content_type: str = "text/event-stream; charset=utf-8"


class Provider:
    """The scripted server: ``app`` to serve, ``script`` to queue replies, and what it saw."""

    def __init__(self) -> None:
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[float] = []  # time.monotonic() when a stream's client left
        self.completed: int = 0  # streams written to the end
        self._left = threading.Event()
        self.app = self._make_app()

    def wait_left(self, timeout: float) -> bool:
        """Wait until a client has gone away mid-stream (at most *timeout* s); whether one did.

        It blocks: from async code, ``await asyncio.to_thread(provider.wait_left, 1.0)``.
        """
        return self._left.wait(timeout)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next(self) -> Reply:
        with self._lock:
            if not self._replies:
                return Reply(status=500, body=b'{"error": "no reply scripted"}')
            return self._replies.pop(0)

    def _make_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response, StreamingResponse
        from starlette.routing import Route

        async def answer(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with self._lock:
                self.requests.append(
                    {"path": request.url.path, "headers": dict(request.headers), "body": body}
                )
            reply = self._next()
            if not reply.chunks and not reply.hang:
                ctype = reply.content_type
                if reply.status != 200 and ctype.startswith("text/event-stream"):
                    ctype = "application/json"
                return Response(
                    reply.body, status_code=reply.status, headers=reply.headers, media_type=ctype
                )
            return StreamingResponse(
                self._stream(reply),
                status_code=reply.status,
                headers=reply.headers,
                media_type=reply.content_type,
            )

        return Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])

    async def _stream(self, reply: Reply) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(reply.chunks):
                if i and reply.delay:
                    await asyncio.sleep(reply.delay)
                yield chunk
            if reply.hang:
                await asyncio.Event().wait()  # until the client goes away
            self.completed += 1
        except BaseException:  # the client went away: uvicorn cancels the stream
            self.disconnects.append(time.monotonic())
            self._left.set()
            raise
