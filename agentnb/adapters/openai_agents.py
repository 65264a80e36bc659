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

An agent used as a tool shows as a child run when its tool is made with this module's
``as_tool(agent, tool_name, tool_description, ...)`` instead of ``agent.as_tool(...)`` (same
arguments): the SDK streams a nested agent's events only to the ``on_stream`` callback given
when the tool is made, and ``as_tool`` gives one. Each call of the tool is then a child run
named after the nested agent, under the run of the agent that called it, read like the run
itself (steps, text, reasoning, tool calls, usage, its own handoffs and agents-as-tools); it
ends with the tool's output when the caller's stream shows it, or with the nested agent's
exception when it failed (the caller's model still gets the SDK's error message). The SDK
counts the nested agent's model calls in the outer run's usage, and so does agentnb. Outside
an agentnb run such a tool behaves exactly as ``agent.as_tool`` would.

When the run stops for tool calls that need approval (``result.interruptions``) the run
ends with a ``Status`` and ``Custom("openai_agents.interruptions", [{"call_id", "name",
"args"}])``. The agent returns ``result.final_output``. Errors raised by
``stream_events()`` propagate with their own type; cancelling the run calls
``result.cancel()`` and closes the stream, so the SDK stops.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, parse_arguments
from agentnb._events import JSON, Custom, Status
from agentnb._events_stream import Raw, StepEnd, StepStart
from agentnb._exceptions import RunClosed
from agentnb._mirror import Mirror
from agentnb._run import current_run
from agentnb.adapters._responses import ResponsesEvents
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["as_agent", "as_tool"]

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
_UNSET: Any = object()

# The run being driven: the SDK's tasks (its run loop, its tools, their ``on_stream``
# dispatch) are created inside ``Runner.run_streamed`` and so inherit it.
_DRIVER: ContextVar[_Driver | None] = ContextVar("agentnb_openai_agents_driver", default=None)


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


def as_tool(
    agent: Any,
    tool_name: str | None = None,
    tool_description: str | None = None,
    **kwargs: Any,
) -> Any:
    """``agent.as_tool(tool_name, tool_description, **kwargs)``, each call shown as a child run.

    Takes the SDK's own arguments. An ``on_stream`` given is called too, after agentnb has
    read the event; a ``failure_error_function`` given still makes the message the model
    gets (None still raises the exception), agentnb only notes the exception to end the
    child run with it.
    """
    sdk = require("agents", "openai-agents")
    require_version("openai-agents", MINIMUM, "openai-agents", "showing an agent used as a tool")
    if not isinstance(agent, sdk.Agent):
        raise TypeError(
            "as_tool takes an OpenAI Agents SDK Agent (agents.Agent), "
            f"got an object of type {type(agent).__name__}"
        )
    theirs = kwargs.pop("on_stream", None)
    if theirs is not None and not callable(theirs):
        raise TypeError(f"on_stream must be callable or None, got {type(theirs).__name__}")
    failure = kwargs.pop("failure_error_function", _UNSET)

    async def on_stream(payload: Any) -> None:
        driver = _DRIVER.get()
        try:
            if driver is not None:
                await driver.tool_event(payload)
        finally:
            if theirs is not None:
                outcome = theirs(payload)
                if inspect.isawaitable(outcome):
                    await outcome

    return agent.as_tool(
        tool_name,
        tool_description,
        on_stream=on_stream,
        failure_error_function=_noting_failures(sdk, failure),
        **kwargs,
    )


def _noting_failures(sdk: Any, theirs: Any) -> Callable[[Any, Exception], Awaitable[str]]:
    """A ``failure_error_function`` that notes the exception for the call's child run."""

    async def failure_error_function(context: Any, error: Exception) -> str:
        driver = _DRIVER.get()
        call_id = getattr(context, "tool_call_id", None)
        if driver is not None and isinstance(call_id, str):
            driver.failures[call_id] = error
        if theirs is None:  # the SDK raises it
            raise error
        if theirs is not _UNSET:
            message = theirs(context, error)
            return str(await message if inspect.isawaitable(message) else message)
        return await _default_message(sdk, context, error)

    return failure_error_function


async def _default_message(sdk: Any, context: Any, error: Exception) -> str:
    """What the SDK tells the model by default: its fixed message, or the run's formatter's."""
    message: str = sdk.default_tool_error_function(context, error)
    run_config = getattr(context, "run_config", None)
    formatter = getattr(run_config, "tool_error_formatter", None)
    if formatter is None:
        return message
    try:
        formatted = formatter(
            sdk.ToolErrorFormatterArgs(
                kind="tool_exception",
                tool_type="function",
                tool_name=getattr(context, "qualified_tool_name", None) or "",
                call_id=getattr(context, "tool_call_id", None) or "",
                default_message=message,
                run_context=context,
                error=error,
            )
        )
        if inspect.isawaitable(formatted):
            formatted = await formatted
    except Exception:  # the SDK, too, falls back to its own message
        return message
    return formatted if isinstance(formatted, str) else message


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


class _Stream:
    """One SDK event stream: the run's, or a nested agent's run as a tool.

    Its first agent's scope, then one scope per handoff (a child run of the one before).
    """

    def __init__(self, driver: _Driver, root: _Scope) -> None:
        self.driver = driver
        self.scopes = [root]  # the chain of handoffs, the current agent's last
        self.started = False
        self.tools: dict[str, _Stream] = {}  # the agents-as-tools called here, by call id

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    async def event(self, event: Any) -> None:
        kind = event.type
        if kind == "raw_response_event":
            self._raw_response(event.data)
            if self.driver.waiting:
                await self.driver.adopt(self)
        elif kind == "run_item_stream_event":
            await self._item(event.name, event.item)
        elif kind == "agent_updated_stream_event":
            self._agent_updated(event.new_agent)

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

    async def _item(self, name: str, item: Any) -> None:
        scope = self.scope
        if name in ("tool_output", "handoff_occured"):
            raw = item.raw_item
            call_id = _field(raw, "call_id")
            call_id = call_id if isinstance(call_id, str) else ""
            call = scope.assembler.calls.get(call_id)
            output = getattr(item, "output", None) if name == "tool_output" else None
            if output is None:
                output = _field(raw, "output")
            if name == "tool_output" and call_id:
                await self._tool_ended(call_id, output)
            scope.assembler.tool_result(
                call.name if call is not None else _field(raw, "name") or "",
                jsonable(output),
                call_id,
            )
        elif name in _RAW_ITEMS:
            scope.run.emit(Raw(SOURCE, {"name": name, "item": jsonable(item.raw_item)}))

    async def _tool_ended(self, call_id: str, output: Any) -> None:
        """The call's output is here: its agent-as-tool's run (if any) ends first."""
        await self.driver.adopt(self, call_id)
        tool = self.tools.pop(call_id, None)
        if tool is not None:
            error = self.driver.failures.pop(call_id, None)
            await tool.end(None if error is not None else output, error)

    def _agent_updated(self, new_agent: Any) -> None:
        name = getattr(new_agent, "name", None) or "agent"
        if not self.started:  # the stream's first agent: its root scope
            self.started = True
            return
        parent = self.scope
        parent.reader.finish()
        mirror = Mirror(parent.run, name)
        self.scopes.append(_Scope(mirror.run, name, mirror))

    def finish(self) -> None:
        for scope in self.scopes:
            scope.reader.finish()
        for tool in self.tools.values():
            tool.finish()

    async def end(self, output: Any, error: BaseException | None = None) -> None:
        """End the runs this stream opened, the deepest first.

        Agents-as-tools still open (their output never shown) end first, with *error* if
        any; then the handed-off agents' runs: the last one gets the outcome. A nested
        agent's run as a tool (the root of its stream) gets it too.
        """
        while self.tools:
            call_id, tool = self.tools.popitem()
            await tool.end(None, self.driver.failures.pop(call_id, error))
        last = True
        while len(self.scopes) > 1:
            scope = self.scopes.pop()
            assert scope.mirror is not None
            scope.mirror.end(output if last else None, error if last else None)
            last = False
            await scope.mirror.ended()
        root = self.scopes[0].mirror
        if root is not None:
            root.end(output, error)
            await root.ended()


class _Driver:
    def __init__(self, run: Run, name: str) -> None:
        self.stream = _Stream(self, _Scope(run, name, None))
        self.streams = [self.stream]  # the run's, then each agent-as-tool call's
        self.routes: dict[int, tuple[object, _Stream]] = {}  # tool call object -> its stream
        self.waiting: dict[int, tuple[object, list[Any]]] = {}  # events of calls not yet seen
        self.failures: dict[str, Exception] = {}  # call id -> the exception its agent raised
        self.sdk = require("agents", "openai-agents")

    async def drive(self, agent: Any, value: Any) -> Any:
        if not isinstance(value, str | list) and not _is_run_state(value, self.sdk):
            raise TypeError(
                "an OpenAI Agents SDK agent takes a prompt (str), the SDK's input items (a list) "
                f"or a RunState to resume, got an object of type {type(value).__name__}"
            )
        token = _DRIVER.set(self)
        try:
            result = self.sdk.Runner.run_streamed(agent, value)
        finally:
            _DRIVER.reset(token)
        stream = self.stream
        try:
            async with aclosing(result.stream_events()) as events:
                async for event in events:
                    await stream.event(event)
        except asyncio.CancelledError:
            result.cancel()
            raise
        except BaseException as exc:
            result.cancel()
            stream.finish()
            await stream.end(None, exc)
            raise
        stream.finish()
        self._interruptions(getattr(result, "interruptions", None) or [])
        await stream.end(result.final_output)
        return result.final_output

    # -- agents used as tools -------------------------------------------------------------

    async def tool_event(self, payload: Any) -> None:
        """One event of a nested agent's run, from its tool's ``on_stream``."""
        call = payload.get("tool_call") if isinstance(payload, Mapping) else None
        if call is None:  # not called by a model (the SDK gives the call when it has one)
            return
        key = id(call)
        try:
            route = self.routes.get(key)
            if route is not None:
                await route[1].event(payload["event"])
                return
            found = self._caller(call)
            if found is None:  # its caller's stream has not shown the call yet
                self.waiting.setdefault(key, (call, []))[1].append(payload)
                return
            await self._open(call, found, [payload])
        except RunClosed:  # the run has ended (cancelled): nobody is listening
            return

    def _caller(self, call: object) -> _Stream | None:
        """The stream whose model made *call* (the latest with that call id not yet taken)."""
        call_id = _field(call, "call_id")
        for stream in reversed(self.streams):
            if call_id in stream.tools:
                continue
            if any(call_id in scope.assembler.calls for scope in stream.scopes):
                return stream
        return None

    async def adopt(self, stream: _Stream, call_id: str | None = None) -> None:
        """Open the runs of waiting calls that *stream* has now shown (or *call_id*, shown)."""
        for key, (call, payloads) in list(self.waiting.items()):
            own = _field(call, "call_id")
            if own in stream.tools:
                continue
            if own == call_id or any(own in s.assembler.calls for s in stream.scopes):
                del self.waiting[key]
                await self._open(call, stream, payloads)

    async def _open(self, call: object, caller: _Stream, payloads: list[Any]) -> None:
        call_id = _field(call, "call_id")
        agent = payloads[0].get("agent")
        own = getattr(agent, "name", None)
        name = own if isinstance(own, str) and own else "agent"
        parent = caller.scope
        if parent.run.done:
            return
        mirror = Mirror(parent.run, name)
        stream = _Stream(self, _Scope(mirror.run, name, mirror))
        caller.tools[str(call_id)] = stream
        self.streams.append(stream)
        self.routes[id(call)] = (call, stream)
        for payload in payloads:
            await stream.event(payload["event"])

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
        self.stream.scope.run.emit(Status(f"waiting for approval: {names}"))
        self.stream.scope.run.emit(Custom("openai_agents.interruptions", waiting))


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
