"""The WebSocket front, ``/api/ws``: several runs over one socket, each cancellable.

Client messages (JSON text frames)::

    {"type": "start", "agent": "poet", "input": "the sea", "ref": 1}
    {"type": "cancel", "run_id": "..."}
    {"type": "attach", "run_id": "...", "last_event_id": "<run id>:<n>"}
    {"type": "answer", "run_id": "...", "ask_id": "...", "value": "yes", "ref": 2}

Server messages: ``started`` / ``attached`` (with the run id and the ``ref``),
one ``event`` per agent event, ``answered`` (``run_id``, ``ask_id``, ``value``,
``by``: ``socket``, ``ref``) when an answer was taken, and ``error`` for a bad
message (the socket stays open). A refused answer's ``error`` also names its
``run_id`` and ``ask_id``; its question, if still open, keeps waiting. Closing
the socket ends its listeners, which cancels the runs it started (unless they
were started with ``"on_disconnect": "continue"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from .._events import JSON
from ._errors import ApiError
from ._hub import RunHub
from ._requests import decode_json, parse_answer, parse_start
from ._served import Listener
from ._stored import StoreListener
from ._wire import parse_event_id, ws_message

__all__ = ["serve_websocket"]

logger = logging.getLogger("agentnb.server")


def _same_origin(socket: WebSocket) -> bool:
    """Browsers send Origin; a page from another site must not drive this server's agents."""
    origin = socket.headers.get("origin")
    if origin is None:  # not a browser (a script, the Python client): nothing to check
        return True
    return urlsplit(origin).netloc.lower() == socket.headers.get("host", "").lower()


async def serve_websocket(
    socket: WebSocket,
    hub: RunHub,
    max_message: int = 1 << 20,
    send_timeout: float | None = 10.0,
) -> None:
    if not _same_origin(socket):
        await socket.close(code=1008, reason="cross-origin WebSocket refused")
        return
    await socket.accept()
    session = _Session(socket, hub, max_message, send_timeout)
    try:
        await session.receive_loop()
    finally:
        await session.close()


class _Session:
    def __init__(
        self, socket: WebSocket, hub: RunHub, max_message: int, send_timeout: float | None
    ) -> None:
        self.socket = socket
        self.hub = hub
        self.max_message = max_message
        self.send_timeout = send_timeout
        self.pumps: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self.lock:
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.socket.send_text(text)
            except TimeoutError:
                # A client that stopped reading: cut off (its runs' on_disconnect applies).
                with contextlib.suppress(Exception):
                    await self.socket.close(code=1008, reason="the client stopped reading")
                raise ConnectionAbortedError("the WebSocket client stopped reading") from None

    async def receive_loop(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            ref: JSON = None
            try:
                if data is None:
                    raise ApiError(
                        422, "bad_request", "send messages as JSON text frames, not binary frames"
                    )
                if len(data) > self.max_message or len(data.encode()) > self.max_message:
                    raise ApiError(
                        413,
                        "too_large",
                        f"the message is over the server's limit of {self.max_message:,} bytes",
                    )
                request = decode_json(data, "the message")
                if isinstance(request, Mapping):
                    ref = _ref(request.get("ref"))
                await self.handle(request)
            except ApiError as exc:
                await self.send(exc.ws(ref))
            except (ConnectionError, WebSocketDisconnect):
                return
            except Exception:  # a bug here: say so, and keep the socket and its other runs
                logger.exception("agentnb: a WebSocket message failed")
                problem = ApiError(500, "internal_error", "the server failed on this message")
                await self.send(problem.ws(ref))

    async def handle(self, request: Any) -> None:
        kinds = "start, cancel, attach or answer"
        if not isinstance(request, Mapping) or not isinstance(request.get("type"), str):
            raise ApiError(
                422,
                "bad_request",
                f'a message is a JSON object with "type" ({kinds}), e.g. '
                '{"type": "start", "agent": "poet", "input": "the sea"}',
            )
        kind = request["type"]
        ref = _ref(request.get("ref"))
        if kind == "start":
            fields = {k: v for k, v in request.items() if k not in ("type", "ref")}
            start = parse_start(fields, what="a start message")
            listener = await self.hub.open(start.agent, start.args, start.on_disconnect)
            await self.follow(listener, "started", ref)
        elif kind == "cancel":
            run_id = _run_id(request)
            found = self.hub.find(run_id)
            if found is None:  # another process runs it: the request goes there
                assert self.hub.shared is not None
                await self.hub.shared.cancel(run_id)
            elif found.run is not None:
                found.run.cancel("cancelled by a client")
        elif kind == "attach":
            run_id = _run_id(request)
            found = self.hub.find(run_id)
            last = request.get("last_event_id")
            if last is not None and not isinstance(last, str):
                raise ApiError(
                    422, "bad_request", '"last_event_id" must be a string "<run id>:<n>"'
                )
            after = parse_event_id(last, run_id) if last else -1
            if found is None:  # another process's run: read from the store
                assert self.hub.shared is not None
                await self.follow(await self.hub.shared.listen(run_id, after), "attached", ref)
            else:
                await self.follow(found.listen(after), "attached", ref)
        elif kind == "answer":
            run_id = _run_id(request)
            found = self.hub.find(run_id)
            fields = {k: v for k, v in request.items() if k not in ("type", "ref", "run_id")}
            answer = parse_answer(fields, what="an answer message", by="socket")
            try:
                if found is None:  # another process runs it: the answer goes there
                    assert self.hub.shared is not None
                    await self.hub.shared.answer(run_id, answer.ask_id, answer.value, answer.by)
                else:
                    found.answer(answer.ask_id, answer.value, answer.by)
            except ApiError as exc:  # refused: say which question (the run keeps waiting)
                await self.send(exc.ws(ref, run_id=run_id, ask_id=answer.ask_id))
                return
            await self.send(
                ws_message(
                    "answered",
                    run_id=run_id,
                    ask_id=answer.ask_id,
                    value=answer.value,
                    by=answer.by,
                    ref=ref,
                )
            )
        else:
            raise ApiError(422, "bad_request", f"unknown message type {kind!r}; use {kinds}")

    async def follow(self, listener: Listener | StoreListener, kind: str, ref: JSON) -> None:
        """Say which run this is (``started`` / ``attached``), then stream its events."""
        served = listener.served
        try:
            await self.send(ws_message(kind, run_id=served.id, agent=served.agent, ref=ref))
        except BaseException:
            listener.close()  # nobody will read it: let the run's on_disconnect apply
            raise
        task = asyncio.get_running_loop().create_task(self._pump(listener, ref))
        self.pumps.add(task)
        task.add_done_callback(self.pumps.discard)

    async def _pump(self, listener: Listener | StoreListener, ref: JSON) -> None:
        try:
            async for messages in listener.ws_messages():
                for message in messages:
                    await self.send(message)
            if listener.expired:
                await self.send(listener.expired_error().ws(ref, run_id=listener.served.id))
        except Exception as exc:  # the socket went away mid-send; receive_loop sees it too
            logger.debug("agentnb: WebSocket send failed: %r", exc)
        finally:
            listener.close()

    async def close(self) -> None:
        pumps = list(self.pumps)
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


_REF_DEPTH = 16  # how deeply a ref may nest
_REF_SIZE = 1024  # and how long its JSON may be


def _ref(ref: object) -> JSON:
    """A message's ``ref``, echoed in the answers to it: any small, shallow JSON value."""
    depth, level = 0, [ref]
    while level:  # level by level, without recursion
        depth += 1
        inner: list[object] = []
        for value in level:
            if isinstance(value, dict):
                inner.extend(value.values())
            elif isinstance(value, list):
                inner.extend(value)
        level = [value for value in inner if isinstance(value, dict | list)]
    if depth <= _REF_DEPTH and len(json.dumps(ref)) <= _REF_SIZE:
        return ref  # type: ignore[return-value]
    raise ApiError(
        422,
        "bad_request",
        f'"ref" is echoed back to match answers to requests: keep it under {_REF_SIZE} '
        f"bytes of JSON, nested at most {_REF_DEPTH} deep (a number or a string is best)",
    )


def _run_id(request: Mapping[str, Any]) -> str:
    run_id = request.get("run_id")
    if not isinstance(run_id, str):
        raise ApiError(422, "bad_request", f'"{request["type"]}" needs "run_id", a string')
    return run_id
