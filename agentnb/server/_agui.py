"""AG-UI out: ``POST /ag-ui/{agent}`` runs an agent and answers AG-UI 1.0 events over SSE.

The request is an AG-UI ``RunAgentInput`` (422 naming the field for a malformed one); the
agent's input is the text of the last ``user`` message (none: the agent is called without
one). The run is started through the hub like any other (``RunHub.open``: with a store,
on a worker when one offers the agent), so ``/api/runs/{id}`` describes, cancels and
answers it (``X-Agentnb-Run-Id`` names it); the agent finds the request's
``threadId``, ``runId``, ``state``, ``forwardedProps``, ``context``, ``tools`` and
``messages`` in ``agentnb.current_run().metadata["agui"]``. Each event is an ``ag_ui.core``
model framed by ``ag_ui.encoder.EventEncoder`` (``data: {json}`` and LF line ends: the
official TypeScript client reads no CRLF). A client that disconnects cancels the run, as on
``/api/stream``.

One AG-UI run per response; :class:`AguiEncoder` maps the agentnb events (the served run's
and its sub-runs') as they come:

=====================  ==========================================================================
agentnb                AG-UI
=====================  ==========================================================================
(first)                ``RUN_STARTED{threadId, runId, protocolVersion, metadata.agentnb.run_id}``
text                   ``TEXT_MESSAGE_START`` (lazily; id = ``message_id``, else made up; unique
                       in the stream), ``TEXT_MESSAGE_CONTENT``; empty text is left out
message_start/_end     end the open text; ``message_start``'s id and role name the next one
reasoning              ``REASONING_START``, ``REASONING_MESSAGE_START`` / ``_CONTENT`` (one block
                       per ``message_id``, id ``r-<message_id>``); a ``signature`` becomes
                       ``REASONING_ENCRYPTED_VALUE{subtype: message}`` before ``REASONING_END``
tool_call_start        ``TOOL_CALL_START{toolCallId, toolCallName, parentMessageId}``
tool_call_delta        ``TOOL_CALL_ARGS``; tool_call_end: ``TOOL_CALL_END``
tool_call              ``TOOL_CALL_START`` + ``TOOL_CALL_ARGS`` (the JSON) + ``TOOL_CALL_END``,
                       unless it streamed
tool_result            ``TOOL_CALL_RESULT{messageId: <call>-result, content}`` (a str as is, else
                       JSON, the value itself in ``metadata.agentnb.result``); ``is_error`` /
                       ``denied`` in ``metadata.agentnb``; a result of a
                       call not in the stream gets its ``TOOL_CALL_START`` + ``_END`` first
usage                  ``CUSTOM agentnb:usage``; summed per (provider, model) into the
                       terminal event's ``usage`` (``TokenUsage``), the run's totals in
                       ``metadata.agentnb.usage``
step_start / step_end  ``STEP_STARTED`` / ``STEP_FINISHED`` (a name open twice gets ``-2``)
state_snapshot/_delta  ``STATE_SNAPSHOT`` / ``STATE_DELTA``
raw                    ``RAW{source, event}``
custom                 ``CUSTOM{name, value}``
status                 ``CUSTOM agentnb:status`` (value: the message)
ask                    everything open is ended, then ``RUN_FINISHED`` with the interrupt
                       outcome (below); the response ends, the run waits for the resume
answer                 ``CUSTOM agentnb:answer{ask_id, value, by}`` (an ``ask`` answered
                       elsewhere before it was read: ``CUSTOM agentnb:ask``)
a sub-run              ``SUBAGENT_STARTED{subagentRunId: its run id, name, parentSubagentRunId}``
                       at its first event; its events carry ``subagentRunId``; at its end (its
                       open items ended first) ``SUBAGENT_FINISHED`` (success, ``result``) or
                       ``SUBAGENT_ERROR`` (``code``: the error type, or ``cancelled``)
done                   everything ended; ``RUN_FINISHED{outcome: success, result, usage}``
error                  everything ended; ``RUN_ERROR{message, code: the error type, usage}``
cancelled              everything ended; ``RUN_FINISHED{outcome: cancelled, usage}``
=====================  ==========================================================================

Text and reasoning end before anything else of their (sub)agent; ``RUN_FINISHED`` comes only
with nothing open (the TypeScript client refuses it otherwise).

**The human in the loop.** ``agentnb.ask`` / ``approve`` becomes ``RUN_FINISHED{outcome:
{type: interrupt, interrupts: [Interrupt]}}``: ``id`` the ``ask_id``, ``reason``
``tool_call`` (with ``toolCallId``) for an approval of a call, else ``input_required``,
``message`` the prompt, ``responseSchema`` ``{approved: bool}`` for approve/deny, else
``{answer: str}`` (``enum``: the choices), ``metadata.agentnb`` the choices, default and run
id; open sub-agents end as ``suspended``. A run nobody resumes is cancelled after the hub's
``keep_seconds``. The next POST answers it with ``resume: [{interruptId, status, payload}]``:
``payload.answer`` (or ``payload.approved``: approve / deny) answers the question
(``by: http``); ``status: cancelled`` takes the question's default, or cancels the run
without one. That response streams the same run from just after the question (its
``answer`` first) to the next question or the end. 409 for an interrupt that is unknown or
already answered, 422 for a payload that is not an answer or not a choice.

With a store (``create_app(store=...)``) the interrupt is kept in Redis (a
:class:`~agentnb.server._stored.Suspension`: the run, the ask's position, the open
sub-agents), so the resume may go to any server process: it answers the question in
the process running the run (exactly one answer is taken there) and streams the rest
from the store. The process that sent the interrupt cancels the run after
``keep_seconds`` if the question is still open and nobody reads the run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    Interrupt,
    RawEvent,
    ReasoningEncryptedValueEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    ResumeEntry,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    SubagentErrorEvent,
    SubagentFinishedEvent,
    SubagentFinishedSuccessOutcome,
    SubagentFinishedSuspendedOutcome,
    SubagentStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TextPart,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
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
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
)
from .._events_stream import (
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
    StepEnd,
    StepStart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from ._errors import ApiError
from ._hub import RunHub
from ._requests import read_json
from ._response import RunEventStream
from ._served import Listener
from ._stored import StoreListener, Suspension, Suspensions
from ._wire import _NAIVE_LINE_ENDS

__all__ = ["AguiEncoder", "agui_routes"]

_APPROVAL = ["approve", "deny"]
TextRole = Literal["developer", "system", "assistant", "user"]
_TEXT_ROLES: dict[str, TextRole] = {
    "developer": "developer",
    "system": "system",
    "assistant": "assistant",
    "user": "user",
}
_encoder = EventEncoder()
logger = logging.getLogger("agentnb.server")

Lane = str | None
"""Whose events: a sub-run's run id (its ``subagentRunId``), or None for the run itself."""


@dataclass
class _Sub:
    """A sub-run shown as an AG-UI sub-agent."""

    run_id: str
    name: str
    path: tuple[str, ...]
    parent: Lane


@dataclass
class _Text:
    id: str  # the AG-UI message id
    source: str  # the agentnb message id ('' if none)


@dataclass
class _Thinking:
    id: str
    source: str
    signatures: list[str] = field(default_factory=list)


@dataclass
class _Step:
    sent: str  # the stepName sent
    name: str
    step_id: str


class AguiEncoder:
    """One AG-UI run: agentnb events in (a served run's and its sub-runs'), AG-UI events out.

    ``started()`` first, then ``feed(event)`` for each event, in order; ``interrupt(ask)``
    ends the AG-UI run on a question instead. Keeps what is open per (sub-)agent.
    """

    def __init__(self, thread_id: str, run_id: str, served_id: str, agent: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.served_id = served_id
        self.agent = agent
        self.subs: dict[str, _Sub] = {}  # open sub-agents, in the order they started
        self._prefix = f"{served_id}-{os.urandom(3).hex()}"
        self._n = 0
        self._ids: set[str] = set()  # message ids sent
        self._sent: dict[str, str] = {}  # agentnb message id -> its AG-UI id (the latest)
        self._text: dict[Lane, _Text] = {}
        self._last_text: dict[Lane, str] = {}
        self._next: dict[Lane, tuple[str, str]] = {}  # from message_start: id, role
        self._thinking: dict[Lane, _Thinking] = {}
        self._calls: dict[str, str] = {}  # agentnb call id -> AG-UI toolCallId
        self._open_calls: dict[str, Lane] = {}  # AG-UI toolCallId -> lane, started not ended
        self._steps: dict[Lane, list[_Step]] = {}
        self._usage: dict[tuple[str, str], TokenUsage] = {}
        self._lane: Lane = None  # whose the last event was

    # -- ids ------------------------------------------------------------------

    def _made(self, kind: str) -> str:
        self._n += 1
        return f"{self._prefix}-{kind}{self._n}"

    def _unique(self, want: str, kind: str) -> str:
        out = want or self._made(kind)
        k = 1
        while out in self._ids:
            k += 1
            out = f"{want}-{k}" if want else self._made(kind)
        self._ids.add(out)
        return out

    # -- the run --------------------------------------------------------------

    def started(self, parent_run_id: str | None = None) -> RunStartedEvent:
        return RunStartedEvent(
            thread_id=self.thread_id,
            run_id=self.run_id,
            parent_run_id=parent_run_id,
            protocol_version=PROTOCOL_VERSION,
            timestamp=int(time.time() * 1000),
            metadata={"agentnb": {"run_id": self.served_id, "agent": self.agent}},
        )

    def reopen(self, subs: list[_Sub]) -> list[BaseEvent]:
        """Start again the sub-agents an interrupt suspended (in a resumed run)."""
        out: list[BaseEvent] = []
        for sub in subs:
            self.subs[sub.run_id] = sub
            out.append(_sub_started(sub))
        return out

    def feed(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events for one agentnb event (stamped with its time)."""
        out: list[BaseEvent] = []
        lane: Lane = None if event.run_id == self.served_id else event.run_id
        if lane != self._lane:
            out += self._quiet(self._lane)  # another (sub-)agent speaks now
            self._lane = lane
        if lane is not None and lane not in self.subs:
            out += self._sub_start(lane, event.path)
        out += self._map(event, lane)
        ts = int(event.ts * 1000)
        for item in out:
            if item.timestamp is None:
                item.timestamp = ts
        return out

    def interrupt(self, ask: Ask) -> list[BaseEvent]:
        """End the AG-UI run on *ask*: everything open ends, then the interrupt outcome."""
        out = self._close_subs(suspended=[ask.ask_id]) + self._close_lane(None)
        lane = None if ask.run_id == self.served_id else ask.run_id
        approval = ask.choices == _APPROVAL
        if approval:
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
                "required": ["approved"],
            }
        else:
            answer: dict[str, Any] = {"type": "string"}
            if ask.choices is not None:
                answer["enum"] = list(ask.choices)
            schema = {"type": "object", "properties": {"answer": answer}, "required": ["answer"]}
        found = Interrupt(
            id=ask.ask_id,
            reason="tool_call" if ask.call_id else "input_required",
            message=ask.prompt,
            tool_call_id=self._calls.get(ask.call_id, ask.call_id) or None,
            response_schema=schema,
            subagent_run_id=lane,
            metadata={
                "agentnb": {
                    "choices": ask.choices,
                    "default": ask.default,
                    "run_id": ask.run_id,
                    "path": list(ask.path),
                }
            },
        )
        out.append(
            RunFinishedEvent(
                thread_id=self.thread_id,
                run_id=self.run_id,
                outcome=RunFinishedInterruptOutcome(interrupts=[found]),
            )
        )
        ts = int(ask.ts * 1000)
        for item in out:
            if item.timestamp is None:
                item.timestamp = ts
        return out

    # -- mapping --------------------------------------------------------------

    def _map(self, e: Event, lane: Lane) -> list[BaseEvent]:
        if isinstance(e, TextChunk):
            return self._text_chunk(e, lane)
        if isinstance(e, MessageStart):
            out = self._close_text(lane) + self._close_thinking(lane)
            self._next[lane] = (e.message_id, e.role)
            self._last_text.pop(lane, None)  # a tool call now is not the last message's
            return out
        if isinstance(e, MessageEnd):
            self._next.pop(lane, None)
            self._last_text.pop(lane, None)
            return self._close_text(lane) + self._close_thinking(lane)
        if isinstance(e, Reasoning):
            return self._reasoning(e, lane)
        if isinstance(e, ToolCallStart):
            out = self._quiet(lane)
            call = self._calls[e.call_id] = self._unique_call(e.call_id)
            self._open_calls[call] = lane
            parent = self._sent.get(e.message_id, e.message_id) or self._last_text.get(lane)
            out.append(
                ToolCallStartEvent(
                    tool_call_id=call,
                    tool_call_name=e.name,
                    parent_message_id=parent,
                    subagent_run_id=lane,
                )
            )
            return out
        if isinstance(e, ToolCallDelta):
            call = self._calls.get(e.call_id, "")
            if not e.delta or call not in self._open_calls:
                return []
            return [ToolCallArgsEvent(tool_call_id=call, delta=e.delta, subagent_run_id=lane)]
        if isinstance(e, ToolCallEnd):
            call = self._calls.get(e.call_id, "")
            if call not in self._open_calls:
                return []
            del self._open_calls[call]
            end = ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane)
            if e.error:
                end.metadata = {"agentnb": {"error": e.error}}
            return [end]
        if isinstance(e, ToolCall):
            return self._tool_call(e, lane)
        if isinstance(e, ToolResult):
            return self._tool_result(e, lane)
        if isinstance(e, Usage):
            self._count(e)
            return [CustomEvent(name="agentnb:usage", value=e.payload(), subagent_run_id=lane)]
        if isinstance(e, StepStart):
            out = self._quiet(lane)
            steps = self._steps.setdefault(lane, [])
            sent, k = e.name, 1
            while any(s.sent == sent for s in steps):
                k += 1
                sent = f"{e.name}-{k}"
            steps.append(_Step(sent, e.name, e.step_id))
            out.append(StepStartedEvent(step_name=sent, subagent_run_id=lane))
            return out
        if isinstance(e, StepEnd):
            steps = self._steps.get(lane, [])
            match = [s for s in steps if s.name == e.name and s.step_id == e.step_id] or [
                s for s in steps if s.name == e.name
            ]
            if not match:
                return []
            out = self._quiet(lane)
            steps.remove(match[-1])
            out.append(StepFinishedEvent(step_name=match[-1].sent, subagent_run_id=lane))
            return out
        if isinstance(e, StateSnapshot):
            return [StateSnapshotEvent(snapshot=e.state, subagent_run_id=lane)]
        if isinstance(e, StateDelta):
            return [StateDeltaEvent(delta=cast(Any, list(e.patch)), subagent_run_id=lane)]
        if isinstance(e, Raw):
            return [RawEvent(event=e.event, source=e.source, subagent_run_id=lane)]
        if isinstance(e, Status):
            return [CustomEvent(name="agentnb:status", value=e.message, subagent_run_id=lane)]
        if isinstance(e, Answer):
            value = {"ask_id": e.ask_id, "value": e.value, "by": e.by}
            return [CustomEvent(name="agentnb:answer", value=value, subagent_run_id=lane)]
        if isinstance(e, Ask):  # one answered before it was read: shown, not asked
            return [CustomEvent(name="agentnb:ask", value=e.payload(), subagent_run_id=lane)]
        if isinstance(e, Custom):
            return [CustomEvent(name=e.name, value=e.data, subagent_run_id=lane)]
        if e.terminal:
            return self._sub_end(e, lane) if lane is not None else self._end(e)
        return [
            RawEvent(event=e.to_dict(), source="agentnb", subagent_run_id=lane)
        ]  # a kind added later

    def _quiet(self, lane: Lane) -> list[BaseEvent]:
        """End the lane's text and reasoning (before a tool call, a result, a step)."""
        return self._close_text(lane) + self._close_thinking(lane)

    def _text_chunk(self, e: TextChunk, lane: Lane) -> list[BaseEvent]:
        if not e.text:
            return []
        out = self._close_thinking(lane)
        text = self._text.get(lane)
        if text is not None and e.message_id and e.message_id != text.source:
            out += self._close_text(lane)
            text = None
        if text is None:
            source = e.message_id
            role_sent: TextRole = "assistant"
            pending = self._next.pop(lane, None)
            if pending is not None and (not source or source == pending[0]):
                source = pending[0]
                role_sent = _TEXT_ROLES.get(pending[1], "assistant")
            text = self._text[lane] = _Text(self._unique(source, "m"), source)
            if source:
                self._sent[source] = text.id
            self._last_text[lane] = text.id
            out.append(
                TextMessageStartEvent(
                    message_id=text.id,
                    role=role_sent,
                    subagent_run_id=lane,
                )
            )
        out.append(TextMessageContentEvent(message_id=text.id, delta=e.text, subagent_run_id=lane))
        return out

    def _close_text(self, lane: Lane) -> list[BaseEvent]:
        text = self._text.pop(lane, None)
        if text is None:
            return []
        return [TextMessageEndEvent(message_id=text.id, subagent_run_id=lane)]

    def _reasoning(self, e: Reasoning, lane: Lane) -> list[BaseEvent]:
        out = self._close_text(lane)
        block = self._thinking.get(lane)
        if block is not None and e.message_id != block.source:
            out += self._close_thinking(lane)
            block = None
        if block is None:
            block = self._thinking[lane] = _Thinking(
                self._unique(e.message_id and f"r-{e.message_id}", "r"), e.message_id
            )
            out.append(ReasoningStartEvent(message_id=block.id, subagent_run_id=lane))
            out.append(ReasoningMessageStartEvent(message_id=block.id, subagent_run_id=lane))
        if e.text:
            out.append(
                ReasoningMessageContentEvent(
                    message_id=block.id, delta=e.text, subagent_run_id=lane
                )
            )
        if e.signature:
            block.signatures.append(e.signature)
        return out

    def _close_thinking(self, lane: Lane) -> list[BaseEvent]:
        block = self._thinking.pop(lane, None)
        if block is None:
            return []
        values = [
            ReasoningEncryptedValueEvent(
                subtype="message", entity_id=block.id, encrypted_value=value, subagent_run_id=lane
            )
            for value in block.signatures
        ]
        return [
            ReasoningMessageEndEvent(message_id=block.id, subagent_run_id=lane),
            *values,
            ReasoningEndEvent(message_id=block.id, subagent_run_id=lane),
        ]

    def _unique_call(self, call_id: str) -> str:
        out, k = call_id or self._made("call"), 1
        taken = set(self._calls.values())
        while out in taken:
            k += 1
            out = f"{call_id}-{k}" if call_id else self._made("call")
        return out

    def _tool_call(self, e: ToolCall, lane: Lane) -> list[BaseEvent]:
        call = self._calls.get(e.call_id) if e.call_id else None
        if call is not None:  # it streamed: its start, arguments and end were sent
            if call in self._open_calls:
                del self._open_calls[call]
                return [ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane)]
            return []
        out = self._quiet(lane)
        call = self._calls[e.call_id] = self._unique_call(e.call_id)
        out += [
            ToolCallStartEvent(
                tool_call_id=call,
                tool_call_name=e.name,
                parent_message_id=self._last_text.get(lane),
                subagent_run_id=lane,
            ),
            ToolCallArgsEvent(
                tool_call_id=call,
                delta=json.dumps(e.args, ensure_ascii=False),
                subagent_run_id=lane,
            ),
            ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane),
        ]
        return out

    def _tool_result(self, e: ToolResult, lane: Lane) -> list[BaseEvent]:
        out = self._quiet(lane)
        call = self._calls.get(e.call_id) if e.call_id else None
        if call is None:  # a result of a call this stream never showed
            call = self._calls[e.call_id or self._made("call")] = self._unique_call(e.call_id)
            out.append(
                ToolCallStartEvent(tool_call_id=call, tool_call_name=e.name, subagent_run_id=lane)
            )
            out.append(ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane))
        elif call in self._open_calls:
            del self._open_calls[call]
            out.append(ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane))
        flags: dict[str, JSON] = {name: True for name in ("is_error", "denied") if getattr(e, name)}
        content = e.result
        if not isinstance(content, str):  # AG-UI's content is text; the value rides along
            content = json.dumps(content, ensure_ascii=False)
            flags["result"] = e.result
        out.append(
            ToolCallResultEvent(
                message_id=self._unique(f"{call}-result", "result"),
                tool_call_id=call,
                content=content,
                role="tool",
                metadata={"agentnb": flags} if flags else None,
                subagent_run_id=lane,
            )
        )
        return out

    def _count(self, e: Usage) -> None:
        key = (e.provider, e.model)
        usage = self._usage.get(key)
        if usage is None:
            usage = self._usage[key] = TokenUsage(
                provider=e.provider or None,
                model=e.model or None,
                input_tokens=0,
                output_tokens=0,
                total_tokens=0,
            )
        usage.input_tokens = (usage.input_tokens or 0) + e.input_tokens
        usage.output_tokens = (usage.output_tokens or 0) + e.output_tokens
        usage.total_tokens = usage.input_tokens + usage.output_tokens
        if e.reasoning_tokens is not None:
            usage.reasoning_tokens = (usage.reasoning_tokens or 0) + e.reasoning_tokens
        if e.cached_tokens is not None:
            usage.cached_input_tokens = (usage.cached_input_tokens or 0) + e.cached_tokens

    def _usage_of(self, totals: Mapping[str, JSON] | None) -> list[TokenUsage] | None:
        """``TokenUsage`` per (provider, model) seen; the run's totals when the stream saw
        only part of them (it resumed after an interrupt)."""
        if totals is None:
            return list(self._usage.values()) or None
        seen = list(self._usage.values())
        inputs, outputs = totals.get("input_tokens"), totals.get("output_tokens")
        if (
            isinstance(inputs, int)
            and isinstance(outputs, int)
            and (
                sum(u.input_tokens or 0 for u in seen) != inputs
                or sum(u.output_tokens or 0 for u in seen) != outputs
            )
        ):
            reasoning, cached = totals.get("reasoning_tokens"), totals.get("cached_tokens")
            return [
                TokenUsage(
                    input_tokens=inputs,
                    output_tokens=outputs,
                    total_tokens=inputs + outputs,
                    reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
                    cached_input_tokens=cached if isinstance(cached, int) else None,
                )
            ]
        return seen or None

    # -- sub-agents and the end -----------------------------------------------

    def _sub_start(self, run_id: str, path: tuple[str, ...]) -> list[BaseEvent]:
        parent: Lane = None
        if len(path) > 2:
            owners = [s.run_id for s in self.subs.values() if s.path == path[:-1]]
            parent = owners[-1] if owners else None
        sub = self.subs[run_id] = _Sub(run_id, path[-1] if path else "", path, parent)
        return [_sub_started(sub)]

    def _close_lane(self, lane: Lane) -> list[BaseEvent]:
        out = self._quiet(lane)
        for call, owner in list(self._open_calls.items()):
            if owner == lane:
                del self._open_calls[call]
                out.append(ToolCallEndEvent(tool_call_id=call, subagent_run_id=lane))
        for step in reversed(self._steps.pop(lane, [])):
            out.append(StepFinishedEvent(step_name=step.sent, subagent_run_id=lane))
        self._next.pop(lane, None)
        return out

    def _close_subs(self, suspended: list[str] | None = None) -> list[BaseEvent]:
        """End every open sub-agent, the latest first (as suspended, for an interrupt)."""
        out: list[BaseEvent] = []
        for run_id in reversed(list(self.subs)):
            out += self._close_lane(run_id)
            if suspended is not None:
                outcome = SubagentFinishedSuspendedOutcome(interrupt_ids=suspended)
                out.append(SubagentFinishedEvent(subagent_run_id=run_id, outcome=outcome))
            else:
                out.append(
                    SubagentErrorEvent(
                        subagent_run_id=run_id,
                        message="ended with its parent run",
                        code="cancelled",
                    )
                )
        if suspended is None:
            self.subs.clear()
        return out

    def _sub_end(self, e: Event, lane: str) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        # Its own sub-agents still open (they end first in agentnb; this is a safety net).
        for run_id in reversed(list(self.subs)):
            if run_id in self.subs and run_id != lane and _within(self.subs, run_id, lane):
                out += self._sub_end(Cancelled("ended with its parent run"), run_id)
        out += self._close_lane(lane)
        del self.subs[lane]
        if isinstance(e, Done):
            finished = SubagentFinishedEvent(
                subagent_run_id=lane, result=e.result, outcome=SubagentFinishedSuccessOutcome()
            )
            out.append(finished)
        elif isinstance(e, Error):
            out.append(SubagentErrorEvent(subagent_run_id=lane, message=e.message, code=e.type))
        else:
            assert isinstance(e, Cancelled)
            message = f"cancelled: {e.reason}" if e.reason else "cancelled"
            out.append(SubagentErrorEvent(subagent_run_id=lane, message=message, code="cancelled"))
        return out

    def _end(self, e: Event) -> list[BaseEvent]:
        out = self._close_subs() + self._close_lane(None)
        usage_totals = getattr(e, "usage", None)
        usage = self._usage_of(usage_totals)
        metadata = {"agentnb": {"usage": usage_totals}} if usage_totals else None
        if isinstance(e, Done):
            out.append(
                RunFinishedEvent(
                    thread_id=self.thread_id,
                    run_id=self.run_id,
                    result=e.result,
                    outcome=RunFinishedSuccessOutcome(),
                    usage=usage,
                    metadata=metadata,
                )
            )
        elif isinstance(e, Error):
            out.append(
                RunErrorEvent(message=e.message, code=e.type, usage=usage, metadata=metadata)
            )
        else:
            assert isinstance(e, Cancelled)
            cancelled = {"reason": e.reason, **({"usage": usage_totals} if usage_totals else {})}
            out.append(
                RunFinishedEvent(
                    thread_id=self.thread_id,
                    run_id=self.run_id,
                    outcome=RunFinishedCancelledOutcome(),
                    usage=usage,
                    metadata={"agentnb": cancelled},
                )
            )
        return out


def _sub_started(sub: _Sub) -> SubagentStartedEvent:
    return SubagentStartedEvent(
        subagent_run_id=sub.run_id,
        name=sub.name,
        parent_subagent_run_id=sub.parent,
        metadata={"agentnb": {"path": list(sub.path)}},
    )


def _within(subs: Mapping[str, _Sub], run_id: str, ancestor: str) -> bool:
    sub = subs.get(run_id)
    while sub is not None:
        if sub.parent == ancestor:
            return True
        sub = subs.get(sub.parent) if sub.parent is not None else None
    return False


def encode(event: BaseEvent) -> bytes:
    """One SSE event (``data: {json}``, LF line ends), as ``EventEncoder`` writes it."""
    try:
        text = _encoder.encode(event)
    except PydanticSerializationError:  # a lone surrogate (UTF-8 cannot carry it): escaped
        data = json.dumps(event.model_dump(by_alias=True), separators=(",", ":"))
        text = f"data: {data}\n\n"
    if not text.isascii():
        text = text.translate(_NAIVE_LINE_ENDS)
    return text.encode()


# -- the route --------------------------------------------------------------------


def parse_input(body: object) -> RunAgentInput:
    """The request body as a ``RunAgentInput``; else a 422 that names the fields."""
    if not isinstance(body, dict):
        raise ApiError(
            422,
            "bad_request",
            "the request body must be an AG-UI RunAgentInput object "
            '({"threadId", "runId", "messages", ...})',
        )
    try:
        return RunAgentInput.model_validate(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        listed = "; ".join(
            f'"{".".join(str(p) for p in problem["loc"])}": {problem["msg"]}'
            for problem in problems[:3]
        )
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ApiError(
            422, "bad_request", f"the RunAgentInput is not valid: {listed}{more}"
        ) from None


def input_text(run_input: RunAgentInput) -> str | None:
    """The last user message's text (its text parts joined); None without one."""
    for message in reversed(run_input.messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, str):
            return content
        return "".join(part.text for part in content if isinstance(part, TextPart))
    return None


def _metadata(run_input: RunAgentInput) -> dict[str, JSON]:
    dumped = run_input.model_dump(mode="json", by_alias=True)
    return {
        "agui": {
            "thread_id": run_input.thread_id,
            "run_id": run_input.run_id,
            "parent_run_id": run_input.parent_run_id,
            "state": dumped.get("state"),
            "forwarded_props": dumped.get("forwardedProps"),
            "context": dumped.get("context") or [],
            "tools": dumped.get("tools") or [],
            "messages": dumped.get("messages") or [],
        }
    }


def _answer_of(entry: ResumeEntry, ask: Ask, where: str) -> str | None:
    """The value a resume entry answers *ask* with (None: cancel the run); 422 if none."""
    if entry.status == "cancelled":
        return ask.default
    payload = entry.payload
    if isinstance(payload, str):
        value: object = payload
        at = where + ".payload"
    elif isinstance(payload, dict) and "answer" in payload:
        value, at = payload["answer"], where + ".payload.answer"
    elif isinstance(payload, dict) and "approved" in payload:
        approved = payload["approved"]
        if not isinstance(approved, bool):
            raise ApiError(422, "bad_request", f'"{where}.payload.approved" must be true or false')
        value, at = ("approve" if approved else "deny"), where + ".payload.approved"
    else:
        raise ApiError(
            422,
            "bad_request",
            f'"{where}.payload" must answer the question: {{"answer": "..."}}, or '
            '{"approved": true} / {"approved": false} for an approval',
        )
    if not isinstance(value, str):
        raise ApiError(422, "bad_request", f'"{at}" must be a string (the answer)')
    if ask.choices is not None and value not in ask.choices:
        raise ApiError(
            422,
            "invalid_answer",
            f'"{at}": {value!r:.80} is not one of the choices {ask.choices!r} for '
            f"{ask.prompt!r:.80}; the question is still open",
        )
    return value


def _subs_state(subs: list[_Sub]) -> JSON:
    return [
        {"run_id": sub.run_id, "name": sub.name, "path": list(sub.path), "parent": sub.parent}
        for sub in subs
    ]


def _subs_of(state: JSON) -> list[_Sub]:
    """The sub-agents a suspension left open (see ``_subs_state``)."""
    subs: list[_Sub] = []
    for item in state if isinstance(state, list) else []:
        if isinstance(item, dict):
            run_id, name, path, parent = (item.get(k) for k in ("run_id", "name", "path", "parent"))
            if isinstance(run_id, str) and isinstance(name, str) and isinstance(path, list):
                parent_id = parent if isinstance(parent, str) else None
                subs.append(_Sub(run_id, name, tuple(str(p) for p in path), parent_id))
    return subs


def agui_routes(
    app: FastAPI, hub: RunHub, *, max_body: int, ping: float, send_timeout: float | None
) -> None:
    """Add ``POST /ag-ui/{agent}`` (see the module) to *app*, serving *hub*'s agents."""

    async def expire(suspension: Suspension) -> None:
        run_id, ask_id = suspension.run_id, suspension.ask.ask_id
        if await hub.asking(run_id, ask_id) and not await hub.watched(run_id):
            await hub.cancel(run_id, f"no AG-UI resume came within {hub.keep_seconds:g} s")

    suspensions = Suspensions(hub, "agui", expire)

    async def body(
        encoder: AguiEncoder, listener: Listener | StoreListener, first: list[BaseEvent]
    ) -> AsyncIterator[bytes]:
        served = listener.served
        yield b"".join(encode(item) for item in first)
        async for batch in listener.events():
            start = listener.position - len(batch)
            out: list[bytes] = []
            for i, event in enumerate(batch):
                if isinstance(event, Ask) and await hub.asking(served.id, event.ask_id):
                    out += [encode(item) for item in encoder.interrupt(event)]
                    state = _subs_state(list(encoder.subs.values()))
                    suspension = Suspension(served.id, served.agent, start + i, event, state)
                    try:  # kept before the client sees it: the resume may go anywhere at once
                        await suspensions.hold(suspension)
                    except Exception as exc:  # Redis failed: the resume will be refused
                        logger.warning("agentnb: the AG-UI interrupt was not kept: %s", exc)
                    listener.leave()  # before the last write: a client leaving now keeps the run
                    yield b"".join(out)
                    return
                out += [encode(item) for item in encoder.feed(event)]
            if out:
                yield b"".join(out)

    def respond(
        encoder: AguiEncoder, listener: Listener | StoreListener, first: list[BaseEvent]
    ) -> Response:
        return RunEventStream(
            listener,
            ping=ping,
            send_timeout=send_timeout,
            body=body(encoder, listener, first),
            sep="\n",  # @ag-ui/client reads LF only
        )

    @app.post("/ag-ui/{agent}", response_class=EventSourceResponse)
    async def agui_run(request: Request, agent: str) -> Response:
        """Run *agent* for an AG-UI client: a ``RunAgentInput`` in, AG-UI events out (SSE).

        With ``resume``, answers the interrupt (a question) a previous response ended with
        and streams the run on from it.
        """
        to_workers = await hub.offered(agent)  # 404 before reading the body
        run_input = parse_input(await read_json(request, max_body))
        if run_input.resume:
            return await resume(agent, run_input, run_input.resume)
        text = input_text(run_input)
        args = () if text is None else (text,)
        metadata = _metadata(run_input)
        listener = await hub.open(agent, args, metadata=metadata, to_workers=to_workers)
        encoder = AguiEncoder(run_input.thread_id, run_input.run_id, listener.served.id, agent)
        return respond(encoder, listener, [encoder.started(run_input.parent_run_id)])

    async def resume(agent: str, run_input: RunAgentInput, entries: list[ResumeEntry]) -> Response:
        run_id: str | None = None
        after: int | None = None  # the position the response goes on from
        subs: list[_Sub] = []
        answers: list[tuple[str, str | None]] = []
        for n, entry in enumerate(entries):
            ask_id = entry.interrupt_id
            suspension = await suspensions.get(ask_id)
            if suspension is None:
                suspension = await _asked(ask_id, n)
            if suspension.agent != agent:
                raise ApiError(
                    409,
                    "unknown_interrupt",
                    f"the interrupt {ask_id!r:.80} belongs to a run of agent "
                    f"{suspension.agent!r}; resume it at /ag-ui/{suspension.agent}",
                )
            if run_id is not None and suspension.run_id != run_id:
                raise ApiError(
                    422,
                    "bad_request",
                    f"resume.{n}.interruptId is of another run than resume.0's: resume one "
                    "run at a time",
                )
            run_id = suspension.run_id
            if not await hub.asking(run_id, ask_id):
                raise ApiError(
                    409,
                    "answered",
                    f"the interrupt {ask_id!r:.80} ({suspension.ask.prompt!r:.80}) is already "
                    "answered (exactly one answer is taken), or its run has ended",
                )
            answers.append((ask_id, _answer_of(entry, suspension.ask, f"resume.{n}")))
            if after is None or suspension.position < after:
                after, subs = suspension.position, _subs_of(suspension.state)
        assert run_id is not None
        assert after is not None
        listener = await hub.listen(run_id, after)
        try:
            for ask_id, value in answers:
                if value is None:
                    await hub.cancel(run_id, "the AG-UI client cancelled the question")
                else:
                    by = "default" if _cancelled(entries, ask_id) else "http"
                    try:
                        await hub.answer(run_id, ask_id, value, by)
                    except ApiError as exc:
                        if exc.code != "ended":
                            raise
                        # Open a moment ago: another resume was taken first, and the run
                        # went on to its end (as the check above says it, then).
                        raise ApiError(
                            409,
                            "answered",
                            f"the interrupt {ask_id!r:.80} is already answered (exactly one "
                            "answer is taken), or its run has ended",
                        ) from None
                suspensions.drop(ask_id)
        except BaseException:
            listener.leave()
            raise
        encoder = AguiEncoder(run_input.thread_id, run_input.run_id, run_id, agent)
        return respond(
            encoder, listener, [encoder.started(run_input.parent_run_id), *encoder.reopen(subs)]
        )

    async def _asked(ask_id: str, n: int) -> Suspension:
        """A question no AG-UI response ended with (a run streamed another way): its
        response goes on from the run's latest event."""
        asked = await hub.question(ask_id)
        if asked is None:
            raise ApiError(
                409,
                "unknown_interrupt",
                f"no run waits on the interrupt {ask_id!r:.80} (resume.{n}.interruptId): it was "
                "never sent, or its run has ended and was forgotten",
            )
        if asked.ask is None:
            raise ApiError(
                409,
                "answered",
                f"the interrupt {ask_id!r:.80} (resume.{n}.interruptId) is already answered "
                f"(exactly one answer is taken), or its run {asked.run_id} has ended",
            )
        return Suspension(asked.run_id, asked.agent, asked.position, asked.ask, [])


def _cancelled(entries: list[ResumeEntry], ask_id: str) -> bool:
    return any(e.interrupt_id == ask_id and e.status == "cancelled" for e in entries)
