"""``POST /ai-sdk/{agent}``: a run as the AI SDK's UI message stream (what ``useChat`` reads).

The request is ``useChat``'s body (``ai`` 6: ``{"id", "messages": UIMessage[], "trigger",
"messageId"?, ...}``); the agent's input is the text parts of the last user message,
joined by newlines. The run's ``Run.metadata["ai_sdk"]`` holds the rest: ``chat_id``,
``trigger``, ``messages`` (the chat so far) and ``body`` (any other fields, e.g. what
``useChat``'s ``body`` option adds). The answer is one assistant message, streamed as
Server-Sent Events: ``data: {chunk}`` frames (LF line ends), the header
``x-vercel-ai-ui-message-stream: v1``, and ``data: [DONE]`` last. Every string of the
agent's stays JSON data.

Tools are sent as *dynamic* tools (``dynamic: true``): agentnb's tools are not declared
to the front end, so each call is a part of type ``dynamic-tool`` carrying its
``toolName`` (not ``tool-<name>``). One text or reasoning part is open at a time: text
of another run or message, and any chunk that makes a part, closes it, so the parts
are in the order the events came.

==========================  =====================================================================
agentnb event               UI message stream chunks
==========================  =====================================================================
(the stream opens)          ``start{messageId: run id, messageMetadata: {agent, run_id}}``
``text``                    ``text-start{id}`` (lazily), ``text-delta{id, delta}``; ``text-end``
                            when another part begins (empty text is skipped)
``reasoning``               ``reasoning-start{id}``, ``reasoning-delta``; ``reasoning-end{id,
                            providerMetadata: {agentnb: {signature}}}`` (signature if any)
``message_start`` / _end    close the open text or reasoning
``tool_call_start``         ``tool-input-start{toolCallId, toolName, dynamic: true}``
``tool_call_delta``         ``tool-input-delta{toolCallId, inputTextDelta}``
``tool_call_end``           nothing; with ``error``: ``tool-input-error{toolCallId, toolName,
                            input: the argument text, errorText}`` (its ``tool_call`` then adds
                            nothing)
``tool_call``               ``tool-input-available{toolCallId, toolName, input, dynamic: true}``
``tool_result``             ``tool-output-available{toolCallId, output}``; ``is_error``:
                            ``tool-output-error{toolCallId, errorText}``; ``denied``:
                            ``tool-output-denied{toolCallId}`` (a call never sent first gets a
                            ``tool-input-available`` with ``input: {}``)
``step_start`` / _end       ``start-step`` / ``finish-step``
``usage``                   ``message-metadata{messageMetadata: {usage: the sum so far}}``
``state_snapshot``          ``data-state{id: run id, data: state}`` (one part per run, replaced)
``state_delta``             ``data-state-delta{data: patch}``
``custom``                  ``data-<name>{data}``
``status``                  ``data-status{data: message, transient: true}`` (``onData`` only)
``raw``                     ``data-raw{data: {source, event}, transient: true}``
``ask`` gating a call       ``tool-approval-request{approvalId: ask id, toolCallId: call id}``,
                            ``finish{finishReason: "tool-calls"}``, ``[DONE]``: the run waits
``ask`` (other)             ``data-ask{id: ask id, data: {prompt, choices, default}}``; the
                            stream stays open (answer: ``POST /api/runs/{run id}/answer``)
``answer``                  ``data-answer{id: ask id, data: {value, by}}``
a sub-run                   its parts are ordinary parts; ``data-subrun{id: its run id, data:
                            {name, path, status}}`` at its first event, updated at its end
                            (status ``running``, then ``done``, ``error`` or ``cancelled``)
``done``                    ``finish{finishReason: "stop", messageMetadata: {usage}}``, [DONE]
``error``                   ``error{errorText: "Type: message"}``, ``finish{finishReason:
                            "error"}``, ``[DONE]``
``cancelled``               ``abort{reason}``, ``[DONE]``
==========================  =====================================================================

**Tool approval.** An ``ask`` that gates a tool call (``agentnb.approve(..., call_id=...)``)
ends the stream with ``tool-approval-request``; the run stays suspended. ``useChat``'s
``addToolApprovalResponse`` then sends the chat again, the tool part in state
``approval-responded`` with ``approval: {id, approved}``: that answers the question
(``approve`` or ``deny``, by ``http``) and streams the same run on from the question, which
the client appends to the same message. An unknown or already answered approval is 409.
A suspended run waits ``keep_seconds`` for its answer, then is cancelled. With a store
(``create_app(store=...)``) runs may go to workers, and the approval may go to any
server process: the suspension (the run, the ask's position, what the encoder knows
so far) is kept in Redis, the answer goes to the process running the run, and the
rest streams from the store.

A client that goes away cancels the run, except while it waits for a tool approval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from .._events import (
    JSON,
    Answer,
    Ask,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from .._run import UsageTotals
from ._errors import Answered, ApiError
from ._requests import _type_name, read_json
from ._response import RunEventStream
from ._served import Listener
from ._stored import StoreListener, Suspension, Suspensions
from ._wire import _NAIVE_LINE_ENDS

if TYPE_CHECKING:
    from ._hub import RunHub

__all__ = [
    "HEADERS",
    "ApprovalResponse",
    "ChatRequest",
    "UiMessageEncoder",
    "ai_sdk_routes",
    "chunk_frame",
    "parse_chat",
]

Chunk = dict[str, JSON]
logger = logging.getLogger("agentnb.server")

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "Cache-Control": "no-cache"}
"""The response headers the AI SDK's UI message stream has (``UI_MESSAGE_STREAM_HEADERS``)."""

DONE_FRAME = b"data: [DONE]\n\n"
_TRIGGERS = ("submit-message", "regenerate-message")
_ROLES = ("system", "user", "assistant")
_CHAT_FIELDS = ("id", "messages", "trigger", "messageId")
_EXAMPLE = '{"messages": [{"role": "user", "parts": [{"type": "text", "text": "the sea"}]}]}'


def chunk_frame(chunk: Mapping[str, JSON]) -> bytes:
    """One SSE frame (LF line ends) carrying *chunk* as one line of JSON."""
    text = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    if text.isascii():
        return b"data: " + text.encode() + b"\n\n"
    try:
        data = text.translate(_NAIVE_LINE_ENDS).encode()
    except UnicodeEncodeError:  # a lone surrogate: UTF-8 has no form for it
        data = json.dumps(chunk, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


# -- the request ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalResponse:
    """A tool approval answered in the chat: the question's id, the decision, where it was."""

    ask_id: str
    approved: bool
    call_id: str
    field: str  # e.g. messages[1].parts[3]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a chat request asks: start a run on *text*, or go on after *approvals*."""

    text: str
    approvals: tuple[ApprovalResponse, ...] = ()
    metadata: dict[str, JSON] | None = None  # what the run's Run.metadata["ai_sdk"] holds


def _bad(message: str) -> ApiError:
    return ApiError(422, "bad_request", message)


def _tool_part(part: Mapping[str, Any]) -> bool:
    kind: str = part["type"]
    return kind == "dynamic-tool" or kind.startswith("tool-")


def _approval(part: Mapping[str, Any], field: str) -> ApprovalResponse | None:
    """The approval a tool part answers (state ``approval-responded``), checked."""
    if part.get("state") != "approval-responded":
        return None
    call_id = part.get("toolCallId")
    if not isinstance(call_id, str):
        raise _bad(f'"{field}.toolCallId" must be a string, not {_type_name(call_id)}')
    approval = part.get("approval")
    if not isinstance(approval, Mapping):
        raise _bad(
            f'"{field}.approval" must be an object like {{"id": "...", "approved": true}}, '
            f"not {_type_name(approval)}"
        )
    ask_id, approved = approval.get("id"), approval.get("approved")
    if not isinstance(ask_id, str):
        raise _bad(f'"{field}.approval.id" must be a string, not {_type_name(ask_id)}')
    if not isinstance(approved, bool):
        raise _bad(f'"{field}.approval.approved" must be a boolean, not {_type_name(approved)}')
    return ApprovalResponse(ask_id, approved, call_id, field)


def parse_chat(body: object) -> ChatRequest:
    """Check ``useChat``'s body and say what it asks (422 naming the field if malformed).

    The approvals answered by the message ``messageId`` names, else by the last message
    (an assistant's), continue a run; otherwise the last message is the user's, and its
    text parts, joined by newlines, are the input of a new run.
    """
    if not isinstance(body, Mapping):
        raise _bad(
            f"the request body must be a JSON object like {_EXAMPLE}, not {_type_name(body)}"
        )
    messages = body.get("messages")
    if "messages" not in body:
        raise _bad(f'the request body needs "messages", the chat so far: {_EXAMPLE}')
    if not isinstance(messages, list):
        raise _bad(f'"messages" must be an array of messages, not {_type_name(messages)}')
    if not messages:
        raise _bad('"messages" is empty: it needs at least the user\'s message')
    trigger = body.get("trigger", "submit-message")
    if trigger not in _TRIGGERS:
        raise _bad(
            f'"trigger" must be "submit-message" or "regenerate-message", '
            f"not {json.dumps(trigger, ensure_ascii=False)[:80]}"
        )
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise _bad(f'"messageId" must be a string, not {_type_name(message_id)}')
    approvals: dict[int, list[ApprovalResponse]] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise _bad(f'"{where}" must be an object (a UIMessage), not {_type_name(message)}')
        role = message.get("role")
        if role not in _ROLES:
            raise _bad(
                f'"{where}.role" must be "system", "user" or "assistant", '
                f"not {json.dumps(role, ensure_ascii=False)[:80]}"
            )
        parts = message.get("parts")
        if not isinstance(parts, list):
            raise _bad(f'"{where}.parts" must be an array of parts, not {_type_name(parts)}')
        for j, part in enumerate(parts):
            field = f"{where}.parts[{j}]"
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise _bad(f'"{field}" must be an object with a string "type"')
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise _bad(f'"{field}.text" must be a string, not {_type_name(part.get("text"))}')
            if role == "assistant" and _tool_part(part):
                approval = _approval(part, field)
                if approval is not None:
                    approvals.setdefault(i, []).append(approval)
    answering = next(
        (
            i
            for i, message in enumerate(messages)
            if message_id is not None and message.get("id") == message_id and i in approvals
        ),
        len(messages) - 1,
    )
    if answering in approvals:
        return ChatRequest("", tuple(approvals[answering]))
    last = messages[-1]
    if last["role"] != "user":
        raise _bad(
            f'"messages[{len(messages) - 1}]": the last message is the {last["role"]}\'s and '
            'answers no tool approval (no tool part in state "approval-responded"); end '
            "the chat with a user message to start a run"
        )
    texts = [part["text"] for part in last["parts"] if part["type"] == "text"]
    if not texts:
        raise _bad(
            f'"messages[{len(messages) - 1}].parts": the user message has no text part; '
            "the agent's input is its text"
        )
    extra = {key: value for key, value in body.items() if key not in _CHAT_FIELDS}
    metadata: dict[str, JSON] = {
        "chat_id": body.get("id"),
        "trigger": trigger,
        "messages": messages,
        "body": extra,
    }
    return ChatRequest("\n".join(texts), metadata=metadata)


# -- the encoder ----------------------------------------------------------------


class UiMessageEncoder:
    """agentnb events of one served run (its sub-runs' included) -> UI message stream chunks.

    Feed the events in order with :meth:`feed`; the module's table says what each gives.
    It keeps what a continuation after a tool approval needs (the calls the client
    knows, the usage so far), so the same encoder goes on in the next response.
    """

    def __init__(self, run_id: str, agent: str) -> None:
        self.run_id = run_id
        self.agent = agent
        self.ended = False  # the run's terminal event was encoded
        self.suspended: Ask | None = None  # the tool approval that ended this response
        self._open: tuple[str, str, str, str] | None = None  # kind, part id, run id, message id
        self._signature: str | None = None  # of the open reasoning part
        self._n = 0
        self._calls: set[str] = set()  # tool calls the client has a part for
        self._failed: set[str] = set()  # calls whose arguments were not JSON
        self._streaming: dict[str, tuple[str, list[str]]] = {}  # call id -> name, arguments
        self._subruns: set[str] = set()
        self._usage: UsageTotals | None = None
        self._kinds: dict[type[Event], Callable[[Any, list[Chunk]], None]] = {
            TextChunk: self._text,
            Reasoning: self._reasoning,
            MessageStart: self._boundary,
            MessageEnd: self._boundary,
            ToolCallStart: self._tool_call_start,
            ToolCallDelta: self._tool_call_delta,
            ToolCallEnd: self._tool_call_end,
            ToolCall: self._tool_call,
            ToolResult: self._tool_result,
            StepStart: self._step_start,
            StepEnd: self._step_end,
            Usage: self._usage_event,
            StateSnapshot: self._state_snapshot,
            StateDelta: self._state_delta,
            Status: self._status,
            Raw: self._raw,
            Ask: self._ask,
            Answer: self._answer,
        }

    def state(self) -> JSON:
        """What a continuation needs to go on (at a tool approval nothing is open)."""
        return {
            "n": self._n,
            "calls": sorted(self._calls),
            "failed": sorted(self._failed),
            "streaming": {call: [name, args] for call, (name, args) in self._streaming.items()},
            "subruns": sorted(self._subruns),
            "usage": self._usage.as_dict() if self._usage is not None else None,
        }

    @classmethod
    def restore(cls, run_id: str, agent: str, state: JSON) -> UiMessageEncoder:
        """The encoder of run *run_id* that went as far as *state* (see ``state()``)."""
        encoder = cls(run_id, agent)
        if not isinstance(state, dict):
            return encoder
        n = state.get("n")
        encoder._n = n if isinstance(n, int) else 0
        encoder._calls = set(_strings(state.get("calls")))
        encoder._failed = set(_strings(state.get("failed")))
        streaming = state.get("streaming")
        for call, value in (streaming if isinstance(streaming, dict) else {}).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                encoder._streaming[call] = (value[0], _strings(value[1]))
        encoder._subruns = set(_strings(state.get("subruns")))
        usage = state.get("usage")
        if isinstance(usage, dict):
            encoder._usage = _usage_totals(usage)
        return encoder

    def start(self) -> list[Chunk]:
        """The chunk a response begins with (the first, and each continuation)."""
        self.suspended = None
        metadata: Chunk = {"agent": self.agent, "run_id": self.run_id}
        return [{"type": "start", "messageId": self.run_id, "messageMetadata": metadata}]

    def feed(self, event: Event) -> list[Chunk]:
        """The chunks for *event* (none for some)."""
        out: list[Chunk] = []
        if event.run_id != self.run_id and event.run_id not in self._subruns:
            self._subruns.add(event.run_id)
            self._close(out)
            out.append(self._subrun(event, "running"))
        if event.terminal:
            self._terminal(event, out)
        else:
            handle = self._kinds.get(type(event))
            if handle is not None:
                handle(event, out)
            elif isinstance(event, Custom):
                self._close(out)
                out.append({"type": f"data-{event.name}", "data": event.data})
        return out

    # -- parts -------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def _close(self, out: list[Chunk]) -> None:
        if self._open is None:
            return
        kind, part_id, _run, _message = self._open
        self._open = None
        if kind == "text":
            out.append({"type": "text-end", "id": part_id})
            return
        end: Chunk = {"type": "reasoning-end", "id": part_id}
        if self._signature is not None:
            end["providerMetadata"] = {"agentnb": {"signature": self._signature}}
            self._signature = None
        out.append(end)

    def _part(self, kind: str, event: TextChunk | Reasoning, out: list[Chunk]) -> str:
        """The id of the open *kind* part of the event's run and message (opened if need be)."""
        key = (event.run_id, event.message_id)
        if self._open is not None and self._open[0] == kind and self._open[2:] == key:
            return self._open[1]
        self._close(out)
        part_id = self._id(kind)
        self._open = (kind, part_id, *key)
        out.append({"type": f"{kind}-start", "id": part_id})
        return part_id

    def _text(self, event: TextChunk, out: list[Chunk]) -> None:
        if event.text:
            part_id = self._part("text", event, out)
            out.append({"type": "text-delta", "id": part_id, "delta": event.text})

    def _reasoning(self, event: Reasoning, out: list[Chunk]) -> None:
        part_id = self._part("reasoning", event, out)
        if event.text:
            out.append({"type": "reasoning-delta", "id": part_id, "delta": event.text})
        if event.signature is not None:
            self._signature = event.signature

    def _boundary(self, event: MessageStart | MessageEnd, out: list[Chunk]) -> None:
        self._close(out)

    # -- tool calls ----------------------------------------------------------------

    def _call_id(self, call_id: str) -> str:
        return call_id or self._id("call")

    def _tool_call_start(self, event: ToolCallStart, out: list[Chunk]) -> None:
        self._close(out)
        self._calls.add(event.call_id)
        self._streaming[event.call_id] = (event.name, [])
        out.append(
            {
                "type": "tool-input-start",
                "toolCallId": event.call_id,
                "toolName": event.name,
                "dynamic": True,
            }
        )

    def _tool_call_delta(self, event: ToolCallDelta, out: list[Chunk]) -> None:
        streaming = self._streaming.get(event.call_id)
        if streaming is None or not event.delta:
            return  # (a call never started: its tool_call carries the whole input)
        streaming[1].append(event.delta)
        out.append(
            {"type": "tool-input-delta", "toolCallId": event.call_id, "inputTextDelta": event.delta}
        )

    def _tool_call_end(self, event: ToolCallEnd, out: list[Chunk]) -> None:
        streaming = self._streaming.pop(event.call_id, None)
        if streaming is None or not event.error:
            return
        self._failed.add(event.call_id)
        name, arguments = streaming
        out.append(
            {
                "type": "tool-input-error",
                "toolCallId": event.call_id,
                "toolName": name,
                "input": "".join(arguments),
                "errorText": event.error,
                "dynamic": True,
            }
        )

    def _tool_call(self, event: ToolCall, out: list[Chunk]) -> None:
        self._close(out)
        if event.call_id in self._failed:
            return  # its tool-input-error said it all
        call_id = self._call_id(event.call_id)
        self._calls.add(call_id)
        self._streaming.pop(call_id, None)
        out.append(
            {
                "type": "tool-input-available",
                "toolCallId": call_id,
                "toolName": event.name,
                "input": event.args,
                "dynamic": True,
            }
        )

    def _tool_result(self, event: ToolResult, out: list[Chunk]) -> None:
        self._close(out)
        call_id = self._call_id(event.call_id)
        if call_id not in self._calls:
            self._calls.add(call_id)
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": event.name,
                    "input": {},
                    "dynamic": True,
                }
            )
        if event.denied:
            out.append({"type": "tool-output-denied", "toolCallId": call_id})
        elif event.is_error:
            result = event.result
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
            out.append(
                {
                    "type": "tool-output-error",
                    "toolCallId": call_id,
                    "errorText": text,
                    "dynamic": True,
                }
            )
        else:
            out.append(
                {
                    "type": "tool-output-available",
                    "toolCallId": call_id,
                    "output": event.result,
                    "dynamic": True,
                }
            )

    # -- the rest --------------------------------------------------------------------

    def _step_start(self, event: StepStart, out: list[Chunk]) -> None:
        self._close(out)
        out.append({"type": "start-step"})

    def _step_end(self, event: StepEnd, out: list[Chunk]) -> None:
        self._close(out)  # finish-step ends the client's open text and reasoning anyway
        out.append({"type": "finish-step"})

    def _usage_event(self, event: Usage, out: list[Chunk]) -> None:
        if self._usage is None:
            self._usage = UsageTotals()
        self._usage.add(event)
        out.append(
            {"type": "message-metadata", "messageMetadata": {"usage": self._usage.as_dict()}}
        )

    def _state_snapshot(self, event: StateSnapshot, out: list[Chunk]) -> None:
        self._close(out)
        out.append({"type": "data-state", "id": event.run_id, "data": event.state})

    def _state_delta(self, event: StateDelta, out: list[Chunk]) -> None:
        self._close(out)
        patch: list[JSON] = list(event.patch)
        out.append({"type": "data-state-delta", "data": patch})

    def _status(self, event: Status, out: list[Chunk]) -> None:
        out.append({"type": "data-status", "data": event.message, "transient": True})

    def _raw(self, event: Raw, out: list[Chunk]) -> None:
        data: Chunk = {"source": event.source, "event": event.event}
        out.append({"type": "data-raw", "data": data, "transient": True})

    def _ask(self, event: Ask, out: list[Chunk]) -> None:
        self._close(out)
        if event.call_id and event.call_id in self._calls:
            out.append(
                {
                    "type": "tool-approval-request",
                    "approvalId": event.ask_id,
                    "toolCallId": event.call_id,
                }
            )
            out.append(self._finish("tool-calls"))
            self.suspended = event
            return
        # A free question (or one gating a call the client has no part for): a data part.
        data: Chunk = {"prompt": event.prompt, "choices": event.choices, "default": event.default}
        if event.call_id:
            data["call_id"] = event.call_id
        out.append({"type": "data-ask", "id": event.ask_id, "data": data})

    def _answer(self, event: Answer, out: list[Chunk]) -> None:
        self._close(out)
        data: Chunk = {"value": event.value, "by": event.by}
        out.append({"type": "data-answer", "id": event.ask_id, "data": data})

    def _subrun(self, event: Event, status: str) -> Chunk:
        data: Chunk = {"name": event.path[-1], "path": list(event.path), "status": status}
        return {"type": "data-subrun", "id": event.run_id, "data": data}

    def _finish(self, reason: str, usage: JSON = None) -> Chunk:
        finish: Chunk = {"type": "finish", "finishReason": reason}
        if usage is None and self._usage is not None:
            usage = self._usage.as_dict()
        if usage is not None:
            finish["messageMetadata"] = {"usage": usage}
        return finish

    def _terminal(self, event: Event, out: list[Chunk]) -> None:
        self._close(out)
        if event.run_id != self.run_id:  # a sub-run ended
            subrun = self._subrun(event, event.kind)
            if isinstance(event, Error):
                assert isinstance(subrun["data"], dict)
                subrun["data"]["error"] = f"{event.type}: {event.message}"
            out.append(subrun)
            return
        self.ended = True
        if isinstance(event, Done):
            out.append(self._finish("stop", event.usage))
        elif isinstance(event, Error):
            out.append({"type": "error", "errorText": f"{event.type}: {event.message}"})
            out.append(self._finish("error", event.usage))
        elif isinstance(event, Cancelled):
            if event.usage is not None:
                out.append({"type": "message-metadata", "messageMetadata": {"usage": event.usage}})
            out.append({"type": "abort", "reason": event.reason})


# -- suspended runs -----------------------------------------------------------------


def _strings(value: JSON) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _usage_totals(usage: Mapping[str, JSON]) -> UsageTotals:
    totals = UsageTotals()

    def count(name: str) -> int | None:
        value = usage.get(name)
        return value if isinstance(value, int) else None

    totals.calls = count("calls") or 0
    totals.input = count("input_tokens") or 0
    totals.output = count("output_tokens") or 0
    totals.reasoning = count("reasoning_tokens")
    totals.cached = count("cached_tokens")
    cost = usage.get("cost")
    totals.cost = float(cost) if isinstance(cost, int | float) else None
    return totals


class Approvals:
    """The runs whose UI message stream stopped at a tool approval, by ask id (with a
    store, in Redis: the approval may come to any server process)."""

    def __init__(self, hub: RunHub) -> None:
        self.hub = hub
        self.suspensions = Suspensions(hub, "ai_sdk", self._expire)

    async def _expire(self, suspension: Suspension) -> None:
        ask_id, seconds = suspension.ask.ask_id, self.hub.keep_seconds
        if await self.hub.asking(suspension.run_id, ask_id):
            reason = f"no answer to the tool approval {ask_id} came within {seconds:g} s"
            await self.hub.cancel(suspension.run_id, reason)

    async def answer(
        self, agent: str, approvals: tuple[ApprovalResponse, ...]
    ) -> tuple[Listener | StoreListener, UiMessageEncoder]:
        """Answer the open approvals; a listener of their run from the earliest, its encoder.

        Raises 409 when none is open (unknown or already answered), or when one was not
        asked in a stream of this endpoint's or is another agent's; 422 when one names
        another tool call than its question gates.
        """
        answering: list[tuple[ApprovalResponse, Suspension]] = []
        refusal: ApiError | None = None
        for approval in approvals:
            suspension = await self.suspensions.get(approval.ask_id)
            if suspension is None:
                refusal = refusal or await self._not_suspended(approval)
                continue
            if not await self.hub.asking(suspension.run_id, approval.ask_id):
                refusal = refusal or Answered(
                    f"the tool approval {approval.ask_id!r} ({approval.field}) is already "
                    "answered: exactly one answer is taken"
                )
                continue
            if suspension.ask.call_id != approval.call_id:
                raise _bad(
                    f'"{approval.field}.approval.id": the question {approval.ask_id!r} gates '
                    f"the tool call {suspension.ask.call_id!r}, not {approval.call_id!r}"
                )
            if suspension.agent != agent:
                raise ApiError(
                    409,
                    "wrong_agent",
                    f"the tool approval {approval.ask_id!r} is of a run of "
                    f"{suspension.agent!r}, not of {agent!r}; send it to "
                    f"/ai-sdk/{suspension.agent}",
                )
            answering.append((approval, suspension))
        if not answering:
            assert refusal is not None
            raise refusal
        first = min((suspension for _, suspension in answering), key=lambda s: s.position)
        listener = await self.hub.listen(first.run_id, first.position)
        try:
            for approval, suspension in answering:
                value = "approve" if approval.approved else "deny"
                # 409 if just answered (the run's process decides: exactly one is taken)
                await self.hub.answer(suspension.run_id, approval.ask_id, value, "http")
                self.suspensions.drop(approval.ask_id)
        except BaseException:
            listener.leave()  # (a refused answer is no client leaving the run)
            raise
        encoder = UiMessageEncoder.restore(first.run_id, first.agent, first.state)
        return listener, encoder

    async def _not_suspended(self, approval: ApprovalResponse) -> ApiError:
        """Why an approval no stream of this endpoint asked for is refused."""
        asked = await self.hub.question(approval.ask_id)
        if asked is None:
            return ApiError(
                409,
                "unknown_approval",
                f"no run asked for the tool approval {approval.ask_id!r} "
                f"({approval.field}): it never did, or it has ended and was forgotten",
            )
        if asked.ask is None:
            return Answered(
                f"the tool approval {approval.ask_id!r} ({approval.field}) is already "
                "answered: exactly one answer is taken"
            )
        return ApiError(
            409,
            "not_suspended",
            f"the question {approval.ask_id!r} ({approval.field}) was not asked in a "
            "stream of /ai-sdk; answer it with POST /api/runs/{run_id}/answer",
        )


# -- the response -------------------------------------------------------------------


async def _chunks(
    listener: Listener | StoreListener, encoder: UiMessageEncoder, approvals: Approvals
) -> AsyncIterator[bytes]:
    """The UI message stream of *listener*'s run (or its continuation after an approval).

    A stream that ends at a tool approval leaves its listener before its last write: the
    run waits for the answer, not for this client (a client leaving mid-run cancels a
    run no one else watches, as on ``/api/stream``).
    """
    yield b"".join(chunk_frame(c) for c in encoder.start())
    async for batch in listener.events():
        first = listener.position - len(batch)
        frames: list[bytes] = []
        for i, event in enumerate(batch):
            frames += [chunk_frame(c) for c in encoder.feed(event)]
            if encoder.suspended is not None:
                served = listener.served
                suspension = Suspension(
                    served.id, encoder.agent, first + i, encoder.suspended, encoder.state()
                )
                try:  # kept before the client sees it: the approval may go anywhere at once
                    await approvals.suspensions.hold(suspension)
                except Exception as exc:  # Redis failed: the approval will be refused
                    logger.warning("agentnb: the tool approval was not kept: %s", exc)
                listener.leave()
                yield b"".join(frames) + DONE_FRAME
                return
            if encoder.ended:
                yield b"".join(frames) + DONE_FRAME
                return
        if frames:
            yield b"".join(frames)
    # The listener ended before the run did: this client fell too far behind.
    cut = {"type": "error", "errorText": listener.expired_error().message}
    yield chunk_frame(cut) + DONE_FRAME


def _response(
    listener: Listener | StoreListener,
    encoder: UiMessageEncoder,
    approvals: Approvals,
    *,
    ping: float,
    send_timeout: float | None,
) -> RunEventStream:
    return RunEventStream(
        listener,
        ping=ping,
        send_timeout=send_timeout,
        body=_chunks(listener, encoder, approvals),
        sep="\n",
        headers=HEADERS,
    )


def ai_sdk_routes(
    app: FastAPI, hub: RunHub, *, max_body: int, ping: float, send_timeout: float | None
) -> None:
    """Add ``POST /ai-sdk/{agent}`` to *app* (see the module)."""
    approvals = Approvals(hub)

    @app.post("/ai-sdk/{agent}", response_class=EventSourceResponse)
    async def ai_sdk_chat(request: Request, agent: str) -> Response:
        """Run *agent* on ``useChat``'s body and answer the AI SDK's UI message stream.

        The input is the last user message's text. A body whose assistant message answers
        a tool approval (a tool part in state ``approval-responded``) answers the run's
        question and streams the run on from it (409 if unknown or already answered).
        """
        to_workers = await hub.offered(agent)  # 404 for an unknown agent
        chat = parse_chat(await read_json(request, max_body))
        if chat.approvals:
            listener, encoder = await approvals.answer(agent, chat.approvals)
            return _response(listener, encoder, approvals, ping=ping, send_timeout=send_timeout)
        metadata: dict[str, JSON] = {"ai_sdk": chat.metadata}
        listener = await hub.open(agent, (chat.text,), metadata=metadata, to_workers=to_workers)
        encoder = UiMessageEncoder(listener.served.id, agent)
        return _response(listener, encoder, approvals, ping=ping, send_timeout=send_timeout)
