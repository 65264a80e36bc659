"""An OpenAI Agents SDK ``Agent`` as an agentnb agent: ``agentnb.run(agent, "prompt")``.

The agent runs with ``result = Runner.run_streamed(agent, input)`` and each event of
``result.stream_events()`` becomes agentnb events:

* ``raw_response_event``: its data is a Responses API stream event, read by the shared
  reader (``_responses.ResponsesEvents``): text, reasoning, tool calls as their arguments
  stream, and each model call's ``Usage`` (from ``response.completed``), so the Usage events
  add up to the SDK's ``result.context_wrapper.usage``. Each model call is also a step
  (``StepStart`` / ``StepEnd`` named ``model request``, step id: the response's id);
* ``run_item_stream_event``: ``tool_output`` and ``handoff_occured`` as ``ToolResult`` (tied
  to their call); items that carry what the raw events do not (MCP approval requests and
  tool lists, tool search) as ``Raw("openai_agents", ...)``;
* ``agent_updated_stream_event`` after the first (a handoff): the new agent's events go
  into a child run named after it, inside the run of the agent that handed off, so the
  cell shows who answered. The sub-runs end when the whole run ends.

When the run stops for tool calls that need approval (``result.interruptions``) the run
ends with a ``Status`` and ``Custom("openai_agents.interruptions", [{"call_id", "name",
"args"}])``. The agent returns ``result.final_output``. Errors raised by
``stream_events()`` propagate with their own type; cancelling the run calls
``result.cancel()`` and closes the stream, so the SDK stops.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, parse_arguments
from agentnb._events import JSON, Custom, Status
from agentnb._events_stream import Raw, StepEnd, StepStart
from agentnb._mirror import Mirror
from agentnb._run import current_run
from agentnb.adapters._responses import ResponsesEvents
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["as_agent"]

SOURCE = "openai_agents"
STEP = "model request"
MINIMUM = "0.24"
_STEP_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RAW_ITEMS = frozenset(
    {
        "mcp_approval_requested",
        "mcp_approval_response",
        "mcp_list_tools",
        "tool_search_called",
        "tool_search_output_created",
    }
)
_MAX_DEPTH = 40


def as_agent(agent: Any) -> Callable[..., Awaitable[Any]]:
    """*agent* (an OpenAI Agents SDK ``Agent``) as an async agent function.

    ``fn(input)``: a str is the user's prompt; a list is the SDK's own input items (or a
    ``RunState`` to resume, as ``Runner.run_streamed`` takes it).
    """
    require("agents", "openai-agents")
    require_version("openai-agents", MINIMUM, "openai-agents", "running an OpenAI Agents SDK Agent")
    own = getattr(agent, "name", None)
    name = own if isinstance(own, str) and own else "openai_agent"

    async def openai_agent(input: Any) -> Any:
        return await _Driver(current_run(), name).drive(agent, input)

    openai_agent.__agentnb_name__ = name  # type: ignore[attr-defined]
    openai_agent.__name__ = openai_agent.__qualname__ = name
    about = getattr(agent, "handoff_description", None)
    first = about.strip().splitlines()[0] if isinstance(about, str) and about.strip() else ""
    openai_agent.__doc__ = first or (
        f"The OpenAI Agents SDK agent {name!r}: its model calls as steps, text, reasoning and "
        "tool calls as they stream, tool results, usage, handoffs as sub-runs."
    )
    return openai_agent


# -- one run ------------------------------------------------------------------------------


class _Scope:
    """One agent's turn in the run: its agentnb run and the reader of its model's events."""

    def __init__(self, run: Run, agent_name: str, mirror: Mirror | None) -> None:
        self.run = run
        self.agent_name = agent_name
        self.assembler = Assembler(run)
        self.reader = ResponsesEvents(self.assembler, provider="openai")
        self.mirror = mirror  # None for the run itself
        self.step = ""  # the id of the model call streaming now


class _Driver:
    def __init__(self, run: Run, name: str) -> None:
        self.root = _Scope(run, name, None)
        self.scopes = [self.root]  # the chain of handoffs, the current agent's last
        self.started = False
        self.sdk = require("agents", "openai-agents")

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    async def drive(self, agent: Any, value: Any) -> Any:
        if not isinstance(value, str | list) and not _is_run_state(value, self.sdk):
            raise TypeError(
                "an OpenAI Agents SDK agent takes a prompt (str), the SDK's input items (a list) "
                f"or a RunState to resume, got an object of type {type(value).__name__}"
            )
        result = self.sdk.Runner.run_streamed(agent, value)
        try:
            async with aclosing(result.stream_events()) as events:
                async for event in events:
                    await self._event(event)
        except asyncio.CancelledError:
            result.cancel()
            raise
        except BaseException as exc:
            result.cancel()
            for scope in self.scopes:
                scope.reader.finish()
            await self._end_scopes(None, exc)
            raise
        for scope in self.scopes:
            scope.reader.finish()
        self._interruptions(getattr(result, "interruptions", None) or [])
        await self._end_scopes(result.final_output)
        return result.final_output

    async def _event(self, event: Any) -> None:
        kind = event.type
        if kind == "raw_response_event":
            self._raw_response(event.data)
        elif kind == "run_item_stream_event":
            self._item(event.name, event.item)
        elif kind == "agent_updated_stream_event":
            await self._agent_updated(event.new_agent)

    def _raw_response(self, data: Any) -> None:
        scope = self.scope
        kind = data.type
        if kind == "response.created":
            scope.step = getattr(data.response, "id", None) or ""
            scope.run.emit(StepStart(STEP, scope.step))
        if kind not in _STEP_ENDS:
            scope.reader.feed(data)
            return
        try:
            scope.reader.feed(data)
        finally:
            scope.run.emit(StepEnd(STEP, scope.step))
            scope.step = ""

    def _item(self, name: str, item: Any) -> None:
        scope = self.scope
        if name in ("tool_output", "handoff_occured"):
            raw = item.raw_item
            call_id = _field(raw, "call_id")
            call = scope.assembler.calls.get(call_id) if isinstance(call_id, str) else None
            output = getattr(item, "output", None) if name == "tool_output" else None
            if output is None:
                output = _field(raw, "output")
            scope.assembler.tool_result(
                call.name if call is not None else _field(raw, "name") or "",
                jsonable(output),
                call_id if isinstance(call_id, str) else "",
            )
        elif name in _RAW_ITEMS:
            scope.run.emit(Raw(SOURCE, {"name": name, "item": jsonable(item.raw_item)}))

    async def _agent_updated(self, new_agent: Any) -> None:
        name = getattr(new_agent, "name", None) or "agent"
        if not self.started:  # the run's first agent: the run itself
            self.started = True
            return
        parent = self.scope
        parent.reader.finish()
        mirror = Mirror(parent.run, name)
        self.scopes.append(_Scope(mirror.run, name, mirror))

    def _interruptions(self, items: list[Any]) -> None:
        if not items:
            return
        waiting: list[JSON] = []
        for item in items:
            raw = getattr(item, "raw_item", None)
            arguments = _field(raw, "arguments")
            args, _ = parse_arguments(arguments if isinstance(arguments, str) else "")
            name = getattr(item, "tool_name", None) or _field(raw, "name") or ""
            waiting.append({"call_id": _field(raw, "call_id") or "", "name": name, "args": args})
        names = ", ".join(str(w["name"]) for w in waiting if isinstance(w, dict))
        self.scope.run.emit(Status(f"waiting for approval: {names}"))
        self.scope.run.emit(Custom("openai_agents.interruptions", waiting))

    async def _end_scopes(self, output: Any, error: BaseException | None = None) -> None:
        """End the handed-off agents' runs, the last (deepest) first; it gets the outcome."""
        last = True
        while len(self.scopes) > 1:
            scope = self.scopes.pop()
            assert scope.mirror is not None
            scope.mirror.end(output if last else None, error if last else None)
            last = False
            await scope.mirror.ended()


def _is_run_state(value: Any, sdk: Any) -> bool:
    state_type = getattr(sdk, "RunState", None)
    return isinstance(state_type, type) and isinstance(value, state_type)


def _field(raw: Any, name: str) -> Any:
    """A field of a raw item, which the SDK keeps as a dict or as a pydantic model."""
    if isinstance(raw, Mapping):
        return raw.get(name)
    return getattr(raw, name, None)


def jsonable(value: object, depth: int = 0) -> JSON:
    """*value* as JSON: models as their dicts, anything else that is not JSON as its str."""
    if value is None or type(value) in (str, int, bool):
        return value  # type: ignore[return-value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str | int):  # a subclass: an enum member, say
        return str(value) if isinstance(value, str) else int(value)
    if depth > _MAX_DEPTH:
        return _str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, depth + 1) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return jsonable(dump(mode="json"), depth + 1)
        except Exception:
            return _str(value)
    return _str(value)


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} object>"
