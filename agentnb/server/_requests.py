"""Reading and checking what clients send: request bodies and WebSocket messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from starlette.requests import Request

from .._events import JSON
from ._errors import ApiError
from ._served import OnDisconnect

__all__ = [
    "ANSWERED_BY_HTTP",
    "AnswerRequest",
    "StartRequest",
    "decode_json",
    "parse_answer",
    "parse_start",
    "read_json",
]

_MISSING: Any = object()
_ON_DISCONNECT = get_args(OnDisconnect)

ANSWERED_BY_HTTP = ("http", "page", "cell", "default")
"""Who an answer over HTTP may say gave it: a program (``http``, the default), the page,
a notebook cell showing the run remotely, or nobody there (the question's ``default``)."""


@dataclass(frozen=True, slots=True)
class StartRequest:
    """Which agent to start, its input (``_MISSING``: call it without one), and the policy."""

    agent: str
    input: JSON
    on_disconnect: OnDisconnect

    @property
    def args(self) -> tuple[JSON, ...]:
        """The agent's arguments: the input, or none when the request had no "input"."""
        return () if self.input is _MISSING else (self.input,)


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """An answer to a run's question: its ``ask_id``, the value, and who gave it."""

    ask_id: str
    value: str
    by: str


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def decode_json(data: bytes | str, what: str) -> Any:
    """Parse JSON, or raise a 400 ``bad_json`` that says where it broke."""
    try:
        # Decoded here, not by json.loads: given bytes it would also take UTF-16 and UTF-32.
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "bad_json", f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "bad_json",
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except ValueError as exc:  # NaN, Infinity
        raise ApiError(400, "bad_json", f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad_json", f"{what} nests too deeply to parse") from None


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read up to *limit* bytes (413 beyond, 415 if not JSON)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with Content-Type: application/json (got {media or 'none'!r})",
        )
    too_large = ApiError(
        413, "too_large", f"the request body is over the server's limit of {limit:,} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return decode_json(bytes(body), "the request body")


def _type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _object(body: object, what: str, fields: tuple[str, ...], example: str) -> Mapping[str, Any]:
    """*body* as a JSON object with none but *fields*; else the 422 that says what is wrong."""
    if not isinstance(body, Mapping):
        raise ApiError(
            422,
            "bad_request",
            f"{what} must be a JSON object like {example}, not {_type_name(body)}",
        )
    unknown = [key for key in body if key not in fields]
    if unknown:
        raise ApiError(
            422,
            "bad_request",
            f"{what} has unknown field {unknown[0]!r}; the fields are {', '.join(fields)}",
        )
    return body


def parse_start(
    body: object, *, what: str = "the request body", extra: tuple[str, ...] = ()
) -> StartRequest:
    """Check a start request: ``{"agent": str, "input": JSON?, "on_disconnect": str?}``."""
    fields = ("agent", "input", "on_disconnect", *extra)
    example = '{"agent": "poet", "input": "the sea"}'
    body = _object(body, what, fields, example)
    agent = body.get("agent", _MISSING)
    if agent is _MISSING:
        raise ApiError(422, "bad_request", f'{what} needs "agent", the agent\'s name: {example}')
    if not isinstance(agent, str):
        raise ApiError(
            422,
            "bad_request",
            f'"agent" must be a string (the agent\'s name), not {_type_name(agent)}',
        )
    policy = body.get("on_disconnect", "cancel")
    if policy not in _ON_DISCONNECT:
        raise ApiError(
            422,
            "bad_request",
            f'"on_disconnect" must be "cancel" or "continue", not {json.dumps(policy)}',
        )
    return StartRequest(agent, body.get("input", _MISSING), policy)


def parse_answer(
    body: object, *, what: str = "the request body", by: str | None = None
) -> AnswerRequest:
    """Check an answer: ``{"ask_id": str, "value": str, "by": str?}``.

    With *by* given (the WebSocket's ``socket``) the answer says no ``by`` of its own.
    """
    fields = ("ask_id", "value") if by is not None else ("ask_id", "value", "by")
    example = '{"ask_id": "<the ask event\'s ask_id>", "value": "yes"}'
    body = _object(body, what, fields, example)
    for name, means in (("ask_id", "the ask event's ask_id"), ("value", "the answer")):
        field = body.get(name, _MISSING)
        if field is _MISSING:
            raise ApiError(422, "bad_request", f'{what} needs "{name}", {means}: {example}')
        if not isinstance(field, str):
            raise ApiError(
                422, "bad_request", f'"{name}" must be a string ({means}), not {_type_name(field)}'
            )
    if by is None:
        by = body.get("by", "http")
        if by not in ANSWERED_BY_HTTP:
            choices = ", ".join(f'"{b}"' for b in ANSWERED_BY_HTTP)
            raise ApiError(
                422,
                "bad_request",
                f'"by" says who answered: one of {choices} (default "http"), '
                f"not {json.dumps(by, ensure_ascii=False)[:80]}",
            )
    return AnswerRequest(body["ask_id"], body["value"], by)
