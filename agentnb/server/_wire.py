"""Pure encoders and parsers of the web front's wire formats, tested byte for byte.

* SSE: one event per agent event, framed by sse-starlette's ``ServerSentEvent``:
  ``event:`` the kind, ``id:`` ``<run id>:<n>`` (n counts the served run's stream
  from 0, its child runs' events included), ``data:`` the event's JSON form.
* WebSocket: one JSON text frame per agent event, ``{"type": "event", ...}``.
"""

from __future__ import annotations

import json

from sse_starlette import ServerSentEvent

from .._events import JSON, Event
from ._errors import BadEventId

__all__ = [
    "event_id",
    "parse_event_id",
    "sse_data",
    "sse_frame",
    "ws_event",
    "ws_message",
]


def event_id(run_id: str, n: int) -> str:
    """The SSE ``id`` of the *n*-th event of served run *run_id*."""
    return f"{run_id}:{n}"


# Line separators that SSE does not split on but naive readers do (``str.splitlines``):
# escaped in ``data:``, which stays the same JSON value.
_NAIVE_LINE_ENDS = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


def sse_frame(event: Event, event_json: str, run_id: str, n: int) -> bytes:
    """One SSE event (CRLF line ends) carrying *event*, whose JSON form is *event_json*.

    The JSON has no CR or LF (JSON escapes them), so ``data:`` is one line; U+2028,
    U+2029 and U+0085 are escaped too, for clients that split lines on them.
    """
    data = event_json if event_json.isascii() else event_json.translate(_NAIVE_LINE_ENDS)
    kind = event.kind
    if "\r" in kind or "\n" in kind or "\r" in run_id or "\n" in run_id:
        return ServerSentEvent(data, event=kind, id=event_id(run_id, n)).encode()
    # What ServerSentEvent makes of it, without its line splitting (emit's hot path).
    return f"id: {run_id}:{n}\r\nevent: {kind}\r\ndata: {data}\r\n\r\n".encode()


def sse_data(frame: bytes) -> str:
    """The ``data:`` of a frame made by ``sse_frame`` (its one line: the event's JSON)."""
    return frame[frame.index(b"\r\ndata: ") + 8 : -4].decode()


def ws_event(event_json: str, run_id: str, n: int) -> str:
    """The WebSocket text frame carrying one event of served run *run_id*."""
    # Built around the event's JSON form (already made once for every listener)
    # rather than parsing and re-dumping it: run ids are hex, so no escaping is needed.
    return (
        f'{{"type":"event","run_id":"{run_id}","id":"{event_id(run_id, n)}","event":{event_json}}}'
    )


def ws_message(type: str, **fields: JSON) -> str:
    """Any other WebSocket text frame: ``{"type": type, **fields}``."""
    return json.dumps({"type": type, **fields}, ensure_ascii=False, separators=(",", ":"))


def parse_event_id(value: str, run_id: str) -> int:
    """The position *n* in a ``Last-Event-ID`` of ``<run id>:<n>``; raises ``BadEventId``."""
    prefix, sep, number = value.strip().rpartition(":")
    if not sep or not number.isascii() or not number.isdigit() or len(number) > 18:
        raise BadEventId(
            f"Last-Event-ID {value!r} is not <run id>:<n>; send back the id of the last "
            f"event you received, e.g. '{run_id}:41'"
        )
    if prefix != run_id:
        raise BadEventId(
            f"Last-Event-ID {value!r} belongs to run {prefix!r}, not to run {run_id!r}; "
            "resume a run with an id it sent"
        )
    return int(number)
