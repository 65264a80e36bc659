"""A pydantic-ai ``Agent`` as an agentnb agent: ``agentnb.run(agent, "prompt")``.

The agent runs with ``async with agent.run_stream_events(...) as events`` and each event
becomes agentnb events:

* each model response is a step (``StepStart`` / ``StepEnd``, named ``model request``)
  and a message (``MessageStart`` / ``MessageEnd``) whose id is pydantic-ai's response id;
* its parts (``PartStartEvent``, whose part already holds the first fragment, then
  ``PartDeltaEvent`` and ``PartEndEvent``): text as ``TextChunk``, thinking as
  ``Reasoning`` (its block id: the response id and the part's index; its signature once
  the part ends), tool calls (built-in ones too) as ``ToolCallStart``, ``ToolCallDelta``
  per argument fragment, then ``ToolCallEnd`` and the whole ``ToolCall``;
* a response's ``Usage`` (its model and provider) as soon as it is in the run's history,
  so the Usage events add up to pydantic-ai's own ``result.usage``;
* ``FunctionToolResultEvent`` and ``OutputToolResultEvent`` as ``ToolResult`` (a retry
  prompt or a failed tool ``is_error``, a denied call ``denied``);
* ``DeferredToolRequestsEvent`` (calls waiting for approval or for running elsewhere) as a
  ``Status`` and ``Custom("pydantic_ai.deferred_tool_requests", {"approvals", "calls"})``;
* other events (custom, capability, history and settings changes) as ``Raw("pydantic_ai")``.

The agent returns the run's output (``AgentRunResult.output``). Errors propagate with their
own type; cancelling the run leaves the ``run_stream_events`` context, which cancels
pydantic-ai's run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentnb._assemble import Assembler
from agentnb._events import JSON, Custom, Status, ToolCall
from agentnb._events_stream import Raw, StepEnd, StepStart, ToolCallEnd, Usage
from agentnb._run import current_run
from agentnb.adapters._sdk import require, require_version

__all__ = ["as_agent"]

SOURCE = "pydantic_ai"
STEP = "model request"
MINIMUM = "2.68"  # run_stream_events as an async context manager
_DEFAULT_NAME = "pydantic_ai_agent"
_ERROR_OUTCOMES = frozenset({"failed", "retried", "interrupted"})


def as_agent(agent: Any) -> Callable[..., Awaitable[Any]]:
    """*agent* (a pydantic-ai ``Agent``) as an async agent function.

    ``fn(input)``: a str is the user's prompt; a list is the prompt as content parts; a
    dict is keyword arguments of ``agent.run_stream_events`` (``user_prompt``, ``deps``,
    ``message_history``, ``deferred_tool_results``, ...); None runs without a new prompt
    (to continue a ``message_history`` passed that way).
    """
    require("pydantic_ai", "pydantic-ai")
    require_version("pydantic-ai-slim", MINIMUM, "pydantic-ai", "running a pydantic-ai Agent")
    own = getattr(agent, "name", None)
    name = own if isinstance(own, str) and own else _DEFAULT_NAME

    async def pydantic_ai_agent(input: Any = None) -> Any:
        return await _Driver(Assembler(current_run())).drive(agent, _run_arguments(input))

    pydantic_ai_agent.__agentnb_name__ = name  # type: ignore[attr-defined]
    pydantic_ai_agent.__name__ = pydantic_ai_agent.__qualname__ = name
    pydantic_ai_agent.__doc__ = _describe(agent, name)
    return pydantic_ai_agent


def _describe(agent: Any, name: str) -> str:
    about = getattr(agent, "description", None)
    first = about.strip().splitlines()[0] if isinstance(about, str) and about.strip() else ""
    return first or (
        f"The pydantic-ai agent {name!r}: its model calls as steps, text, reasoning and "
        "tool calls as they stream, tool results and usage."
    )


def _run_arguments(value: Any) -> dict[str, Any]:
    """The keyword arguments of ``run_stream_events`` for the agent's input."""
    if value is None or isinstance(value, str):
        return {"user_prompt": value, "infer_name": False}
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(
                "a dict input to a pydantic-ai agent is the keyword arguments of "
                "agent.run_stream_events, so its keys must be str (e.g. {'user_prompt': "
                f"'...', 'deps': deps}}), got the keys {list(value)!r}"
            )
        return {"infer_name": False, **value}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return {"user_prompt": list(value), "infer_name": False}
    raise TypeError(
        f"a pydantic-ai agent takes a prompt (str), content parts (a list) or the keyword "
        f"arguments of agent.run_stream_events (a dict), got an object of type "
        f"{type(value).__name__}"
    )


# -- one run -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """One part of the model response streaming now: what it is and what was emitted of it."""

    kind: str  # "text", "thinking", "tool" or "other"
    block_id: str  # the message id (text), reasoning block id (thinking) or call id (tool)
    streamed: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.streamed)


class _Driver:
    def __init__(self, assembler: Assembler) -> None:
        self.a = assembler
        self.messages = require("pydantic_ai.messages", "pydantic-ai")
        self.handle: Any = None
        self.response_id = ""  # the model response streaming now ("" between responses)
        self.responses = 0  # model responses begun, for ids when an event carries no origin
        self.parts: dict[int, _Part] = {}
        self.scanned = 0  # how many of the run's new messages have been read for usage

    async def drive(self, agent: Any, arguments: dict[str, Any]) -> Any:
        m = self.messages
        result_event = require("pydantic_ai", "pydantic-ai").AgentRunResultEvent
        try:
            async with agent.run_stream_events(**arguments) as events:
                self.handle = events
                async for event in events:
                    if isinstance(event, m.PartDeltaEvent):
                        self._delta(event)
                        continue
                    self._scan()
                    if isinstance(event, m.PartStartEvent):
                        self._start(event)
                    elif isinstance(event, m.PartEndEvent):
                        self._end(event)
                    elif isinstance(event, result_event):
                        self._scan(event.result.new_messages())
                        self._close_response()
                        return event.result.output
                    else:
                        self._other(event)
        except Exception:
            self._scan()  # what the responses that did complete used
            self._close_response()
            raise
        self._close_response()
        return None  # the stream ended without a result: nothing to return

    # -- the model's response, part by part -------------------------------------------------

    def _open_response(self, event: Any) -> str:
        origin = getattr(event, "origin", None)
        response_id = getattr(origin, "response_id", None) if origin is not None else None
        if not isinstance(response_id, str) or not response_id:
            response_id = self.response_id or f"response-{self.responses + 1}"
        if response_id != self.response_id:
            self._close_response()  # a response the run replaced (a retry, a fallback model)
            self.responses += 1
            self.response_id = response_id
            self.a.emit(StepStart(STEP, response_id))
            self.a.message_start(response_id)
        return response_id

    def _close_response(self, finish_reason: str = "") -> None:
        if not self.response_id:
            return
        self.a.end_tools()
        self.a.message_end(self.response_id, finish_reason)
        self.a.emit(StepEnd(STEP, self.response_id))
        self.response_id = ""
        self.parts = {}

    def _start(self, event: Any) -> None:
        m = self.messages
        response_id = self._open_response(event)
        part = event.part
        if isinstance(part, m.TextPart):
            state = self.parts[event.index] = _Part("text", response_id)
            self._text(state, part.content)
        elif isinstance(part, m.ThinkingPart):
            state = self.parts[event.index] = _Part("thinking", f"{response_id}#{event.index}")
            self._thinking(state, part.content)
        elif isinstance(part, m.BaseToolCallPart):
            call_id = part.tool_call_id
            self.parts[event.index] = state = _Part("tool", call_id)
            self.a.tool_start(call_id, part.tool_name, response_id)
            self._arguments(state, _argument_text(part.args))
        else:
            self.parts[event.index] = _Part("other", response_id)

    def _delta(self, event: Any) -> None:
        state = self.parts.get(event.index)
        if state is None:  # a delta before its start: pydantic-ai does not send one
            return
        delta = event.delta
        if state.kind == "text":
            self._text(state, getattr(delta, "content_delta", None))
        elif state.kind == "thinking":
            self._thinking(state, getattr(delta, "content_delta", None))
        elif state.kind == "tool":
            self._arguments(state, getattr(delta, "args_delta", None))

    def _end(self, event: Any) -> None:
        m = self.messages
        part = event.part
        state = self.parts.pop(event.index, None)
        if state is None:
            state = _Part("other", self._open_response(event))
        if state.kind == "text":
            self._text(state, _rest(part.content, state.text))
        elif state.kind == "thinking":
            self._thinking(state, _rest(part.content, state.text))
            if part.signature is not None:
                self.a.reasoning("", state.block_id, part.signature)
        elif state.kind == "tool":
            self._end_call(state, part)
        elif isinstance(part, m.BaseToolReturnPart):  # a built-in tool's result, from the provider
            self.a.tool_result(part.tool_name, jsonable(part.content), part.tool_call_id)
        else:  # a file, speech, a compaction, a part kind newer than this adapter
            self.a.emit(Raw(SOURCE, jsonable(part)))

    def _text(self, state: _Part, delta: str | None) -> None:
        if delta:
            state.streamed.append(delta)
            self.a.text(delta, state.block_id)

    def _thinking(self, state: _Part, delta: str | None) -> None:
        if delta:
            state.streamed.append(delta)
            self.a.reasoning(delta, state.block_id)

    def _arguments(self, state: _Part, delta: Any) -> None:
        if isinstance(delta, str) and delta:  # a dict delta is merged: read at the end
            state.streamed.append(delta)
            self.a.tool_delta(state.block_id, delta)

    def _end_call(self, state: _Part, part: Any) -> None:
        """End a tool call with the arguments pydantic-ai made of it."""
        call = self.a.calls[state.block_id]
        if call.args is not None:
            return
        call.name = part.tool_name or call.name
        final, streamed = _argument_text(part.args), state.text
        if final.startswith(streamed):
            self.a.tool_delta(state.block_id, final[len(streamed) :])
            self.a.tool_end(state.block_id)
            return
        # The fragments do not add up to the final arguments (dict deltas were merged):
        # the whole call carries pydantic-ai's own arguments.
        args = jsonable(part.args_as_dict())
        call.args = args if isinstance(args, dict) else {"input": args}
        self.a.emit(ToolCallEnd(state.block_id))
        self.a.emit(ToolCall(call.name, call.args, state.block_id))

    # -- the rest of the run ---------------------------------------------------------------

    def _other(self, event: Any) -> None:
        m = self.messages
        if isinstance(event, m.FunctionToolResultEvent | m.OutputToolResultEvent):
            self._tool_result(event.part)
        elif isinstance(event, m.DeferredToolRequestsEvent):
            self._deferred(event.requests)
        elif isinstance(event, m.FunctionToolCallEvent | m.OutputToolCallEvent):
            pass  # the call was emitted whole when its part ended
        elif isinstance(event, m.FinalResultEvent):
            pass  # which part is the output: it shows as that part
        else:
            self.a.emit(Raw(SOURCE, jsonable(event)))

    def _tool_result(self, part: Any) -> None:
        if isinstance(part, self.messages.RetryPromptPart):
            self.a.tool_result(
                part.tool_name or "", part.model_response(), part.tool_call_id, is_error=True
            )
            return
        outcome = getattr(part, "outcome", "success")
        self.a.tool_result(
            part.tool_name,
            jsonable(part.content),
            part.tool_call_id,
            is_error=outcome in _ERROR_OUTCOMES,
            denied=outcome == "denied",
        )

    def _deferred(self, requests: Any) -> None:
        def listed(parts: Any) -> list[JSON]:
            return [
                {"call_id": p.tool_call_id, "name": p.tool_name, "args": jsonable(p.args_as_dict())}
                for p in parts
            ]

        approvals, calls = listed(requests.approvals), listed(requests.calls)
        names = [p.tool_name for p in (*requests.approvals, *requests.calls)]
        waiting = "approval" if approvals and not calls else "approval or a result"
        if not approvals:
            waiting = "a result from elsewhere"
        self.a.emit(Status(f"waiting for {waiting}: {', '.join(names)}"))
        self.a.emit(
            Custom("pydantic_ai.deferred_tool_requests", {"approvals": approvals, "calls": calls})
        )

    def _scan(self, messages: Sequence[Any] | None = None) -> None:
        """Emit the usage of the model responses the run's history gained since the last scan.

        A response is in the history once it has streamed whole, before its tools run.
        """
        if messages is None:
            try:
                messages = self.handle.new_messages() if self.handle is not None else ()
            except Exception:  # the run has not started (or is gone): nothing to read
                return
        assert messages is not None
        response_type = self.messages.ModelResponse
        for message in messages[self.scanned :]:
            if isinstance(message, response_type):
                self._usage(message)
        self.scanned = max(self.scanned, len(messages))

    def _usage(self, response: Any) -> None:
        usage = response.usage
        details = getattr(usage, "details", None) or {}
        reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
        self.a.usage(
            Usage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                model=response.model_name or "",
                provider=response.provider_name or "",
                reasoning_tokens=reasoning if type(reasoning) is int else None,
                cached_tokens=usage.cache_read_tokens or None,
            )
        )
        self._close_response(response.finish_reason or "")


def _argument_text(args: str | Mapping[str, Any] | None) -> str:
    """A tool call part's arguments as the JSON text pydantic-ai itself makes of them."""
    if args is None or isinstance(args, str):
        return args or ""
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"), default=str)


def _rest(final: str, streamed: str) -> str:
    """What *final* has beyond what was *streamed* ('' when it is not an extension)."""
    return final[len(streamed) :] if final.startswith(streamed) else ""


def jsonable(value: object) -> JSON:
    """*value* as JSON (pydantic's own conversion; bytes as base64, anything else as str)."""
    to_jsonable = require("pydantic_core", "pydantic-ai").to_jsonable_python
    try:
        converted: JSON = to_jsonable(value, bytes_mode="base64", fallback=_str)
    except Exception:
        return _str(value)
    return converted


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} object>"
