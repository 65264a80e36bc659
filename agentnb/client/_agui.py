"""``agui()``: any AG-UI agent (pydantic-ai, LangGraph, CopilotKit, ...) used as a local agent.

::

    adder = agentnb.client.agui("http://127.0.0.1:8001/")
    await agentnb.run(adder, "1+2?")        # or %%agent in a cell, agentnb.stream, create_app

Each call POSTs a ``RunAgentInput`` (protocol 1.0, a fresh ``runId``, the agent object's
``threadId``, the conversation so far and the input as the last user message) and turns the
AG-UI events into agentnb events as they arrive:

=============================  ==========================================================
AG-UI                          agentnb
=============================  ==========================================================
TEXT_MESSAGE_*                 ``MessageStart``, ``TextChunk(message_id)``, ``MessageEnd``
REASONING_*                    ``Reasoning(message_id)``; ENCRYPTED_VALUE: its ``signature``
TOOL_CALL_START/ARGS/END       ``ToolCallStart``, ``ToolCallDelta``, ``ToolCallEnd``, then
                               the whole ``ToolCall`` with the parsed arguments
TOOL_CALL_RESULT               ``ToolResult`` (the content as sent; an agentnb server's
                               JSON value from ``metadata.agentnb.result``)
*_CHUNK                        expanded into the events above
STEP_STARTED/FINISHED          ``StepStart`` / ``StepEnd``
STATE_SNAPSHOT/DELTA           ``StateSnapshot`` / ``StateDelta``
CUSTOM                         ``Custom`` (``agentnb:status``: ``Status``;
                               ``agentnb:usage``: ``Usage``, as each model call's came)
RAW, MESSAGES_SNAPSHOT,        ``Raw``
ACTIVITY_*
SUBAGENT_*                     a sub-run of the local run, named as the subagent
RUN_FINISHED                   its ``usage`` as ``Usage`` events (unless they came live),
                               then the run returns its
                               ``result`` (else the last assistant message's text), or
                               ends cancelled (outcome ``cancelled``)
RUN_ERROR                      the run raises ``RemoteAgentError`` (type: its ``code``)
=============================  ==========================================================

An interrupt (``RUN_FINISHED`` with outcome ``interrupt``) is asked here with
``agentnb.ask``, one question per interrupt: its ``message`` (or LangGraph's raw
``interrupt()`` value as JSON) is the prompt; a ``responseSchema`` with a boolean
``approved`` offers ``approve`` / ``deny`` and resumes with ``{"approved": bool}``, a
LangGraph interrupt resumes with the answer itself (what ``interrupt()`` returns in the
graph; a raw value with a ``choices`` list of strings offers those), anything else with
``{"answer": value}``. The answers go back in a new run (``resume``, and the whole
conversation) that goes on in the same local run. Where nothing can answer (a headless
run), the question's default applies (only an agentnb server sends one) or ``NoAnswer``.
LangGraph's older form (``CUSTOM on_interrupt`` and a plain ``RUN_FINISHED``) resumes
through ``forwardedProps.command.resume``.

Wrong streams are reported, never dropped: an event that is not JSON, fails the AG-UI
schema, has an unknown type, or comes out of order (content for a message never started,
an argument for a call never started, a run finishing with something open) is emitted
as ``Custom("agui.protocol_error", {"problem": ..., "event": <its data>})`` and logged; the
run goes on. A stream that ends without ``RUN_FINISHED`` or ``RUN_ERROR`` raises
``AGUIProtocolError``, as does an answer that is not an event stream (``ServerError``
with its status, content type and first 200 bytes). Reading stops at the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import httpx

from .._ask import APPROVE, DENY, ask
from .._events import (
    JSON,
    Custom,
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
    to_json_value,
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
from .._exceptions import AgentnbError, InvalidEvent
from .._mirror import Mirror
from .._run import Run, current_run
from ._exceptions import RemoteAgentError, ServerError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["AGUIAgent", "AGUIProtocolError", "agui"]

_log = logging.getLogger("agentnb")

PROTOCOL_ERROR = "agui.protocol_error"
_SHOWN = 200  # bytes of a wrong answer shown in the error
_LINE_END = re.compile("\r\n|\r|\n")  # SSE's line ends
_KEPT = 2000  # characters of a wrong event kept in its report


class AGUIProtocolError(AgentnbError):
    """The AG-UI stream could not be read as a run: it ended without a terminal event."""


class AGUIAgent:
    """The AG-UI agent at *url*, called as a local agent (see the module's docstring); one
    conversation (``thread_id``). ``agentnb.client.agui(url, ...)`` makes one.

    *headers* go with every request (authentication, say). *thread_id* (a fresh one if
    not given), *state* and *forwarded_props* are the ``RunAgentInput`` fields of that
    name. *timeout* bounds connecting and each write, not the wait for events.
    ``messages`` is the conversation so far, as AG-UI messages (JSON): each call that ends
    well adds its user message and what the agent answered, and sends it all next time.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        thread_id: str | None = None,
        state: JSON = None,
        forwarded_props: JSON = None,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"agui(url=...) is an http(s) URL, got {url!r:.80}")
        self.url = url
        self.__name__ = name or "agui"
        self.__doc__ = f"the AG-UI agent at {url}"
        self.headers = dict(headers or {})
        self.thread_id = thread_id or _new_id("thread")
        self.state = to_json_value(state, "agui(state=...)")
        self.forwarded_props = to_json_value(forwarded_props, "agui(forwarded_props=...)")
        self.timeout = timeout
        self.messages: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"agui({self.url!r}, name={self.__name__!r}, thread_id={self.thread_id!r})"

    async def __call__(self, *input: JSON) -> JSON:
        if len(input) > 1:
            raise TypeError(
                f"an AG-UI agent takes one input (its user message), got {len(input)} arguments"
            )
        text = input[0] if input and isinstance(input[0], str) else ""
        if input and not isinstance(input[0], str):
            text = json.dumps(to_json_value(input[0], "the input"), ensure_ascii=False)
        history = _History([*self.messages])
        if input:
            history.messages.append({"id": _new_id("user"), "role": "user", "content": text})
        reading = _Reading(current_run(), self.url)
        resume: list[dict[str, Any]] | None = None
        forwarded = self.forwarded_props
        timeout = httpx.Timeout(self.timeout, read=None)
        async with httpx.AsyncClient(timeout=timeout, headers=self.headers) as client:
            while True:
                body = self._input(history.messages, resume, forwarded)
                end = await reading.read(client, body, history)
                if end.interrupts:
                    resume = [await _resolve(i) for i in end.interrupts]
                    continue
                if end.legacy_interrupt is not None:
                    value = await _ask_raw(end.legacy_interrupt)
                    resume = None
                    base = forwarded if isinstance(forwarded, dict) else {}
                    forwarded = {**base, "command": {"resume": value}}
                    continue
                break
        await reading.end_subagents()
        self.messages = history.messages
        if end.cancelled:
            raise asyncio.CancelledError("the AG-UI agent's run was cancelled")
        if end.result is not None:
            return to_json_value(end.result, "RUN_FINISHED.result")
        return history.last_answer()

    def _input(
        self, messages: list[dict[str, Any]], resume: list[dict[str, Any]] | None, forwarded: JSON
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "threadId": self.thread_id,
            "runId": _new_id("run"),
            "protocolVersion": "1.0",
            "messages": messages,
            "tools": [],
            "context": [],
            "state": self.state if self.state is not None else {},
            "forwardedProps": forwarded if forwarded is not None else {},
        }
        if resume is not None:
            body["resume"] = resume
        return body


agui = AGUIAgent
"""``agentnb.client.agui(url, *, name=None, headers=None, thread_id=None, state=None,
forwarded_props=None, timeout=30.0)``: a local agent that runs the AG-UI agent at *url*."""


def _new_id(kind: str) -> str:
    return f"{kind}-{os.urandom(8).hex()}"


@cache
def _event_adapter() -> TypeAdapter[Any]:
    from ag_ui.core import Event as AGUIEvent
    from pydantic import TypeAdapter

    return TypeAdapter(AGUIEvent)


@cache
def _event_types() -> frozenset[str]:
    from ag_ui.core import EventType

    return frozenset(t.value for t in EventType)


class _End:
    """How one AG-UI run ended (RUN_FINISHED; RUN_ERROR raises instead)."""

    def __init__(self) -> None:
        self.result: Any = None
        self.cancelled = False
        self.interrupts: list[Any] = []
        self.legacy_interrupt: Any = None


class _History:
    """The conversation as AG-UI messages, kept up to date from the events (as the
    official client does), so a later run, or the resume of an interrupt, sends it all."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages: list[dict[str, Any]] = messages

    def _find(self, message_id: str) -> dict[str, Any] | None:
        for message in self.messages[::-1]:
            if message.get("id") == message_id:
                return message
        return None

    def text_start(self, message_id: str, role: str) -> None:
        self.messages.append({"id": message_id, "role": role, "content": ""})

    def add_text(self, message_id: str, delta: str, role: str = "assistant") -> None:
        message = self._find(message_id)
        if message is None:
            self.text_start(message_id, role)
            message = self.messages[-1]
        message["content"] = (message.get("content") or "") + delta

    def signature(self, message_id: str, value: str) -> None:
        message = self._find(message_id)
        if message is not None:
            message["encryptedValue"] = value

    def tool_start(self, call_id: str, name: str, parent: str) -> None:
        message = self._find(parent) if parent else None
        if message is None or message.get("role") != "assistant":
            message = {"id": parent or call_id, "role": "assistant"}
            self.messages.append(message)
        calls = message.setdefault("toolCalls", [])
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        )

    def tool_args(self, call_id: str, delta: str) -> None:
        for message in self.messages[::-1]:
            for call in message.get("toolCalls") or ():
                if call.get("id") == call_id:
                    call["function"]["arguments"] += delta
                    return

    def tool_result(self, message_id: str, call_id: str, content: Any) -> None:
        self.messages.append(
            {"id": message_id, "role": "tool", "toolCallId": call_id, "content": content}
        )

    def last_answer(self) -> str | None:
        """The text of the last assistant message that has some."""
        for message in self.messages[::-1]:
            if message.get("role") == "assistant" and message.get("content"):
                content = message["content"]
                return content if isinstance(content, str) else None
        return None


class _Reading:
    """Reads the AG-UI runs of one local run, emitting their events into it (and into
    the sub-runs that mirror its subagents)."""

    def __init__(self, root: Run, url: str) -> None:
        self.root = root
        self.url = url
        self.subagents: dict[str, Mirror] = {}  # by subagentRunId, while running
        self.called: dict[str, str] = {}  # every call seen, resumed runs' too: id -> tool name
        self._reset()

    def _reset(self) -> None:
        self.texts: dict[str, str] = {}  # open text messages: id -> role
        self.reasoning: set[str] = set()  # open reasoning messages
        self.calls: dict[str, tuple[str, list[str], Run]] = {}  # open: id -> name, args, run
        self.steps: dict[str, list[str]] = {}  # open step names, per subagent ('' : the run)
        self.chunk_text: str | None = None  # a message opened by TEXT_MESSAGE_CHUNK
        self.chunk_call: str | None = None  # a call opened by TOOL_CALL_CHUNK
        self.legacy: Any = None  # LangGraph's CUSTOM on_interrupt value
        self.live_usage = False  # an agentnb server sent usage as it came (agentnb:usage)
        self.seen = 0
        self.raw = ""

    async def read(
        self, client: httpx.AsyncClient, body: dict[str, Any], history: _History
    ) -> _End:
        """POST *body*, emit what the run streams; how it ended (or raise as it failed)."""
        self._reset()
        self.history = history
        headers = {"accept": "text/event-stream"}
        async with client.stream("POST", self.url, json=body, headers=headers) as response:
            await self._check(response)
            async with contextlib.aclosing(self._data(response)) as datas:
                async for data in datas:
                    end = await self._take(data)
                    if end is not None:
                        return end
        shown = f"; it began {self.raw[:_SHOWN]!r}" if self.raw and not self.seen else ""
        raise AGUIProtocolError(
            f"the AG-UI stream of {self.url} ended without RUN_FINISHED or RUN_ERROR "
            f"(after {self.seen} events{shown})"
        )

    async def _check(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        if response.is_success and content_type.partition(";")[0].strip() == "text/event-stream":
            return
        start = b""
        async for chunk in response.aiter_bytes():
            start += chunk
            if len(start) >= _SHOWN:
                break
        what = "an error" if not response.is_success else "not an event stream"
        raise ServerError(
            response.status_code,
            "agui_not_event_stream" if response.is_success else "agui_http_error",
            f"the AG-UI agent at {self.url} answered {what}: HTTP {response.status_code}, "
            f"content type {content_type or '(none)'!r}, body "
            f"{start[:_SHOWN].decode('utf-8', 'replace')!r}",
        )

    async def _data(self, response: httpx.Response) -> AsyncGenerator[str, None]:
        """The SSE events' data, keeping the stream's first characters to show if it holds
        no event at all."""
        async for data in sse_data(self._kept(response.aiter_text())):
            yield data

    async def _kept(self, texts: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        async for text in texts:
            if len(self.raw) < _SHOWN:
                self.raw += text[: _SHOWN - len(self.raw)]
            yield text

    def _report(self, problem: str, data: str | None = None, run: Run | None = None) -> None:
        _log.warning("AG-UI stream of %s: %s", self.url, problem)
        report: dict[str, JSON] = {"problem": problem}
        if data is not None:
            report["event"] = data[:_KEPT]
        (run or self.root).emit(Custom(PROTOCOL_ERROR, report))

    async def _take(self, data: str) -> _End | None:
        """Handle one event's data; the run's end once it comes."""
        self.seen += 1
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError) as exc:
            self._report(f"an event that is not JSON ({exc})", data)
            return None
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        if not isinstance(kind, str):
            self._report("an event without a string 'type'", data)
            return None
        if kind not in _event_types():
            self._report(f"an event of unknown type {kind!r}", data)
            return None
        from pydantic import ValidationError

        try:
            event = _event_adapter().validate_python(parsed)
        except ValidationError as exc:
            self._report(f"a {kind} event that fails the AG-UI schema: {_problems(exc)}", data)
            return None
        if self.seen == 1 and kind != "RUN_STARTED":
            self._report(f"the stream began with {kind}, not RUN_STARTED", data)
        if self.chunk_text is not None and kind != "TEXT_MESSAGE_CHUNK":
            self._text_end(self.chunk_text, self.root_of(event))
        if self.chunk_call is not None and kind != "TOOL_CALL_CHUNK":
            self._call_end(self.chunk_call, data)
        handle = getattr(self, "_on_" + kind.lower(), None)
        if handle is None:  # MESSAGES_SNAPSHOT, ACTIVITY_*: shown as they came
            if kind == "MESSAGES_SNAPSHOT":
                self.history.messages[:] = [
                    m.model_dump(by_alias=True, exclude_none=True, mode="json")
                    for m in event.messages
                ]
            self.root_of(event).emit(Raw("agui", parsed))
            return None
        try:
            end: _End | None = await handle(event, data)
        except InvalidEvent as exc:  # a value agentnb's events cannot carry
            self._report(f"a {kind} event agentnb cannot show: {exc}", data)
            return None
        return end

    def root_of(self, event: Any) -> Run:
        """The run an event belongs to: its subagent's mirror, or the local run."""
        sub = getattr(event, "subagent_run_id", None)
        if not sub:
            return self.root
        mirror = self.subagents.get(sub)
        if mirror is None:
            self._report(f"an event of the subagent {sub!r}, which was not started (or ended)")
            return self.root
        return mirror.run

    # -- lifecycle ---------------------------------------------------------------

    async def _on_run_started(self, event: Any, data: str) -> None:
        if self.seen != 1:
            self._report("RUN_STARTED in the middle of a run", data)

    async def _on_run_finished(self, event: Any, data: str) -> _End:
        open_ = self._still_open()
        if open_:
            self._report(f"RUN_FINISHED while {open_} still open", data)
        self._usage(event.usage)
        end = _End()
        end.result = event.result
        outcome = event.outcome
        kind = getattr(outcome, "type", "success")
        if kind == "cancelled":
            end.cancelled = True
        elif kind == "interrupt":
            end.interrupts = list(outcome.interrupts)
        elif self.legacy is not None:
            end.legacy_interrupt = self.legacy
        return end

    async def _on_run_error(self, event: Any, data: str) -> None:
        self._usage(event.usage)
        await self.end_subagents()
        raise RemoteAgentError(event.code or "AGUIRunError", event.message)

    def _usage(self, usage: list[Any] | None) -> None:
        if self.live_usage:  # an agentnb server sent each model call's usage as it came
            return
        for used in usage or ():
            self.root.emit(
                Usage(
                    input_tokens=used.input_tokens or 0,
                    output_tokens=used.output_tokens or 0,
                    model=used.model or "",
                    provider=used.provider or "",
                    reasoning_tokens=used.reasoning_tokens,
                    cached_tokens=used.cached_input_tokens,
                )
            )

    def _still_open(self) -> str:
        open_ = [f"text message {m!r}" for m in self.texts]
        open_ += [f"reasoning message {m!r}" for m in self.reasoning]
        open_ += [f"tool call {c!r}" for c in self.calls]
        open_ += [f"step {s!r}" for steps in self.steps.values() for s in steps]
        open_ += [f"subagent {s!r}" for s in self.subagents]
        return ", ".join(open_) + (" is" if len(open_) == 1 else " are") if open_ else ""

    # -- text --------------------------------------------------------------------

    async def _on_text_message_start(self, event: Any, data: str) -> None:
        if event.message_id in self.texts:
            self._report(f"TEXT_MESSAGE_START of {event.message_id!r}, already started", data)
        role = event.role or "assistant"
        self.texts[event.message_id] = role
        self.root_of(event).emit(MessageStart(event.message_id, role))
        if not event.subagent_run_id:
            self.history.text_start(event.message_id, role)

    async def _on_text_message_content(self, event: Any, data: str) -> None:
        if event.message_id not in self.texts:
            self._report(f"text for the message {event.message_id!r}, never started", data)
        self._text(event.message_id, event.delta, event)

    def _text(self, message_id: str, delta: str, event: Any) -> None:
        if delta:
            self.root_of(event).emit(TextChunk(delta, message_id))
        if not event.subagent_run_id:
            self.history.add_text(message_id, delta, self.texts.get(message_id, "assistant"))

    async def _on_text_message_end(self, event: Any, data: str) -> None:
        if event.message_id not in self.texts:
            self._report(f"TEXT_MESSAGE_END of {event.message_id!r}, never started", data)
            return
        self._text_end(event.message_id, self.root_of(event))

    def _text_end(self, message_id: str, run: Run) -> None:
        self.texts.pop(message_id, None)
        if self.chunk_text == message_id:
            self.chunk_text = None
        run.emit(MessageEnd(message_id))

    async def _on_text_message_chunk(self, event: Any, data: str) -> None:
        message_id = event.message_id or self.chunk_text
        if message_id is None:
            self._report("TEXT_MESSAGE_CHUNK without a messageId starts no message", data)
            return
        if message_id != self.chunk_text:
            if self.chunk_text is not None:
                self._text_end(self.chunk_text, self.root_of(event))
            role = event.role or "assistant"
            self.texts[message_id] = role
            self.chunk_text = message_id
            self.root_of(event).emit(MessageStart(message_id, role))
            if not event.subagent_run_id:
                self.history.text_start(message_id, role)
        self._text(message_id, event.delta or "", event)

    # -- reasoning ---------------------------------------------------------------

    async def _on_reasoning_start(self, event: Any, data: str) -> None:
        return None

    async def _on_reasoning_end(self, event: Any, data: str) -> None:
        return None

    async def _on_reasoning_message_start(self, event: Any, data: str) -> None:
        if event.message_id in self.reasoning:
            self._report(f"REASONING_MESSAGE_START of {event.message_id!r}, already started", data)
        self.reasoning.add(event.message_id)
        if not event.subagent_run_id:
            self.history.messages.append(
                {"id": event.message_id, "role": "reasoning", "content": ""}
            )

    async def _on_reasoning_message_content(self, event: Any, data: str) -> None:
        if event.message_id not in self.reasoning:
            self._report(f"reasoning for the message {event.message_id!r}, never started", data)
        self._reasoning(event.message_id, event.delta, event)

    def _reasoning(self, message_id: str, delta: str, event: Any) -> None:
        if delta:
            self.root_of(event).emit(Reasoning(delta, message_id))
        if not event.subagent_run_id:
            self.history.add_text(message_id, delta, "reasoning")

    async def _on_reasoning_message_end(self, event: Any, data: str) -> None:
        if event.message_id not in self.reasoning:
            self._report(f"REASONING_MESSAGE_END of {event.message_id!r}, never started", data)
        self.reasoning.discard(event.message_id)

    async def _on_reasoning_message_chunk(self, event: Any, data: str) -> None:
        self._reasoning(event.message_id or "", event.delta or "", event)

    async def _on_reasoning_encrypted_value(self, event: Any, data: str) -> None:
        if event.subtype != "message":  # a tool call's: agentnb has no place for it
            self.root_of(event).emit(Raw("agui", json.loads(data)))
            return
        self.root_of(event).emit(Reasoning("", event.entity_id, event.encrypted_value))
        if not event.subagent_run_id:
            self.history.signature(event.entity_id, event.encrypted_value)

    # -- tool calls --------------------------------------------------------------

    async def _on_tool_call_start(self, event: Any, data: str) -> None:
        self._call_start(
            event.tool_call_id, event.tool_call_name, event.parent_message_id or "", event, data
        )

    def _call_start(self, call_id: str, name: str, parent: str, event: Any, data: str) -> None:
        if call_id in self.calls:
            self._report(f"TOOL_CALL_START of {call_id!r}, already started", data)
        run = self.root_of(event)
        self.calls[call_id] = (name, [], run)
        self.called[call_id] = name
        run.emit(ToolCallStart(name, call_id, parent))
        if not event.subagent_run_id:
            self.history.tool_start(call_id, name, parent)

    async def _on_tool_call_args(self, event: Any, data: str) -> None:
        self._call_args(event.tool_call_id, event.delta, event, data)

    def _call_args(self, call_id: str, delta: str, event: Any, data: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            self._report(f"arguments for the tool call {call_id!r}, never started", data)
            return
        if delta:
            call[1].append(delta)
            call[2].emit(ToolCallDelta(call_id, delta))
        if not event.subagent_run_id:
            self.history.tool_args(call_id, delta)

    async def _on_tool_call_end(self, event: Any, data: str) -> None:
        self._call_end(event.tool_call_id, data)

    def _call_end(self, call_id: str, data: str) -> None:
        if self.chunk_call == call_id:
            self.chunk_call = None
        call = self.calls.pop(call_id, None)
        if call is None:
            self._report(f"TOOL_CALL_END of {call_id!r}, never started", data)
            return
        name, pieces, run = call
        text = "".join(pieces)
        error = ""
        try:
            args = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:
            args, error = {"_raw": text}, f"the arguments are not JSON: {exc}"
        if not isinstance(args, dict):
            args, error = {"_raw": text}, "the arguments are JSON but not an object"
        run.emit(ToolCallEnd(call_id, error))
        run.emit(ToolCall(name, args, call_id))

    async def _on_tool_call_chunk(self, event: Any, data: str) -> None:
        call_id = event.tool_call_id or self.chunk_call
        if call_id is None:
            self._report("TOOL_CALL_CHUNK without a toolCallId starts no call", data)
            return
        if call_id != self.chunk_call:
            if self.chunk_call is not None:
                self._call_end(self.chunk_call, data)
            if not event.tool_call_name:
                self._report(f"TOOL_CALL_CHUNK starting {call_id!r} has no toolCallName", data)
            parent = event.parent_message_id or ""
            self._call_start(call_id, event.tool_call_name or "", parent, event, data)
            self.chunk_call = call_id
        self._call_args(call_id, event.delta or "", event, data)

    async def _on_tool_call_result(self, event: Any, data: str) -> None:
        call_id = event.tool_call_id
        if call_id in self.calls:
            self._report(f"the result of the tool call {call_id!r} before its TOOL_CALL_END", data)
        name = self.called.get(call_id)
        if name is None:
            self._report(f"the result of the tool call {call_id!r}, never started", data)
        content = event.content
        if not isinstance(content, str):
            content = [
                part.model_dump(by_alias=True, exclude_none=True, mode="json") for part in content
            ]
        ours = (event.metadata or {}).get("agentnb") if isinstance(event.metadata, dict) else None
        flags = ours if isinstance(ours, dict) else {}
        if "result" in flags and isinstance(content, str):  # agentnb's own: the JSON value
            content = flags["result"]
        self.root_of(event).emit(
            ToolResult(
                name or "",
                content,
                call_id,
                is_error=flags.get("is_error") is True,
                denied=flags.get("denied") is True,
            )
        )
        if not event.subagent_run_id:
            self.history.tool_result(event.message_id, call_id, content)

    # -- steps, state, custom, raw -------------------------------------------------

    async def _on_step_started(self, event: Any, data: str) -> None:
        self.steps.setdefault(event.subagent_run_id or "", []).append(event.step_name)
        self.root_of(event).emit(StepStart(event.step_name))

    async def _on_step_finished(self, event: Any, data: str) -> None:
        steps = self.steps.get(event.subagent_run_id or "", [])
        if event.step_name not in steps:
            self._report(f"STEP_FINISHED of {event.step_name!r}, never started", data)
            return
        steps.reverse()
        steps.remove(event.step_name)  # the latest of that name
        steps.reverse()
        self.root_of(event).emit(StepEnd(event.step_name))

    async def _on_state_snapshot(self, event: Any, data: str) -> None:
        self.root_of(event).emit(StateSnapshot(event.snapshot))

    async def _on_state_delta(self, event: Any, data: str) -> None:
        patch = [op.model_dump(by_alias=True, exclude_none=True, mode="json") for op in event.delta]
        self.root_of(event).emit(StateDelta(patch))

    async def _on_custom(self, event: Any, data: str) -> None:
        run = self.root_of(event)
        if event.name == "on_interrupt":  # LangGraph's interrupt, without the outcome
            self.legacy = event.value
        if event.name == "agentnb:status" and isinstance(event.value, str):
            run.emit(Status(event.value))
            return
        if event.name == "agentnb:usage" and isinstance(event.value, dict):
            try:  # agentnb's own live usage (with its cost): RUN_FINISHED's then adds nothing
                usage = Usage(**event.value)
            except (InvalidEvent, TypeError):  # not agentnb's after all: shown as custom
                pass
            else:
                self.live_usage = True
                run.emit(usage)
                return
        try:
            run.emit(Custom(event.name, event.value))
        except InvalidEvent:  # a name agentnb does not allow: kept with the data
            run.emit(Custom("agui.custom", {"name": event.name, "value": event.value}))

    async def _on_raw(self, event: Any, data: str) -> None:
        self.root_of(event).emit(Raw(event.source or "agui", event.event))

    # -- subagents ---------------------------------------------------------------

    async def _on_subagent_started(self, event: Any, data: str) -> None:
        sub = event.subagent_run_id
        if sub in self.subagents:
            self._report(f"SUBAGENT_STARTED of {sub!r}, already started", data)
            return
        parent = self.subagents.get(event.parent_subagent_run_id or "")
        name = event.name or "subagent"
        self.subagents[sub] = parent.child(name) if parent is not None else Mirror(self.root, name)

    async def _on_subagent_finished(self, event: Any, data: str) -> None:
        if getattr(event.outcome, "type", "success") == "suspended":
            return  # it goes on after the interrupt's resume
        await self._end_subagent(event.subagent_run_id, data, result=event.result)

    async def _on_subagent_error(self, event: Any, data: str) -> None:
        error: BaseException
        if event.code == "cancelled":
            error = asyncio.CancelledError(event.message)
        else:
            error = RemoteAgentError(event.code or "AGUISubagentError", event.message)
        await self._end_subagent(event.subagent_run_id, data, error=error)

    async def _end_subagent(
        self, sub: str, data: str, result: Any = None, error: BaseException | None = None
    ) -> None:
        mirror = self.subagents.pop(sub, None)
        if mirror is None:
            self._report(f"the end of the subagent {sub!r}, never started", data)
            return
        self.steps.pop(sub, None)
        try:
            value = to_json_value(result, "SUBAGENT_FINISHED.result")
        except InvalidEvent:
            value = repr(result)
        mirror.end(value, error)
        await mirror.ended()

    async def end_subagents(self) -> None:
        """End the sub-runs the stream left open (the deepest first)."""
        for sub in reversed(list(self.subagents)):
            mirror = self.subagents.pop(sub)
            mirror.end(error=asyncio.CancelledError("the AG-UI run ended before this subagent"))
            await mirror.ended()


async def sse_data(texts: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The data of each SSE event in *texts* (a decoded body in pieces), as the SSE spec
    reads a stream: lines end with CR, LF or CRLF (also split across pieces), ``data:``
    lines are joined with LF, comments and other fields are skipped, and an event is
    dispatched at its blank line (one left unfinished at the end is dropped)."""
    rest = ""
    data: list[str] = []
    async for text in texts:
        rest += text
        cut = len(rest) - 1 if rest.endswith("\r") else len(rest)  # half a CRLF, maybe
        *lines, tail = _LINE_END.split(rest[:cut])
        rest = tail + rest[cut:]
        for line in lines:
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)


def _problems(exc: Any) -> str:
    """A pydantic ValidationError's problems, each naming its field."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'][1:]) or 'the event'}: {error['msg']}"
        for error in exc.errors()[:5]
    )


_APPROVAL = [APPROVE, DENY]


async def _resolve(interrupt: Any) -> dict[str, Any]:
    """Ask one interrupt here; its ``resume`` entry."""
    schema = interrupt.response_schema if isinstance(interrupt.response_schema, dict) else {}
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    metadata = interrupt.metadata if isinstance(interrupt.metadata, dict) else {}
    ours = metadata.get("agentnb")
    default = ours.get("default") if isinstance(ours, dict) else None
    default = default if isinstance(default, str) else None
    call_id = interrupt.tool_call_id or ""
    approved = properties.get("approved")
    if isinstance(approved, dict) and approved.get("type") == "boolean":
        prompt = interrupt.message or f"Approve the tool call {call_id}?"
        value = await ask(prompt, choices=_APPROVAL, default=default, call_id=call_id)
        payload: Any = {"approved": value == APPROVE}
    elif interrupt.message is not None or "langgraph" not in metadata:
        prompt = interrupt.message or interrupt.reason
        answer = properties.get("answer")
        choices = _strings(answer.get("enum") if isinstance(answer, dict) else None)
        value = await ask(prompt, choices=choices, default=default, call_id=call_id)
        payload = {"answer": value}
    else:
        langgraph = metadata["langgraph"]
        raw = langgraph.get("raw") if isinstance(langgraph, dict) else langgraph
        payload = await _ask_raw(raw, call_id)
    return {"interruptId": interrupt.id, "status": "resolved", "payload": payload}


async def _ask_raw(raw: Any, call_id: str = "") -> str:
    """Ask LangGraph's raw ``interrupt()`` value; the answer is what ``interrupt()`` returns."""
    if isinstance(raw, str):
        prompt = raw
        with contextlib.suppress(ValueError):  # the older form sends the value as JSON text
            raw = json.loads(raw)
    else:
        prompt = json.dumps(raw, ensure_ascii=False, default=repr)
    choices = _strings(raw.get("choices")) if isinstance(raw, dict) else None
    return await ask(prompt, choices=choices, call_id=call_id)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


for _cls in (AGUIAgent, AGUIProtocolError):
    _cls.__module__ = "agentnb.client"  # what tracebacks and reprs show: the public name
