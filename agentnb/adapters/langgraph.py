"""A compiled LangGraph graph as an agentnb agent: ``agentnb.run(graph, "prompt")``.

The graph runs with ``graph.astream(input, stream_mode=["messages", "updates", "custom",
"tasks", "values"], version="v2", subgraphs=True)`` and each part becomes events:

* ``tasks``: a node starts and ends: ``StepStart`` / ``StepEnd`` (name: the node, step id:
  its task id);
* ``messages``: a model's ``AIMessageChunk`` (text, reasoning, tool calls as their arguments
  stream, usage; read by ``_lc_chunks.ChunkReader``), an AI message a node made whole, and a
  ``ToolMessage`` (the tools node's answer) as ``ToolResult``;
* ``values``: the state, JSON-safe (messages as their dicts, other values that are not JSON
  as their str): ``StateSnapshot`` first, then ``StateDelta`` (a JSON Patch) per change;
* ``custom``: what ``get_stream_writer()`` wrote, as ``Custom("langgraph.custom", data)``;
* ``updates`` with ``__interrupt__``: the graph paused for input: a ``Status`` and
  ``Custom("langgraph.interrupt", {"id", "value", "thread_id"})``; the run then ends with
  its result (resume it with ``Command(resume=...)`` on that thread).

A subgraph (a part whose namespace is not empty) is a child run named after the node that
runs it, ended when that node's task ends (an interrupt inside it is reported there, once).
The agent returns the final state's last message's text, or the state itself (JSON-safe)
when it has no messages. Cancelling the run closes the stream, which cancels the graph's
running nodes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler
from agentnb._events import JSON, Custom, Status
from agentnb._events_stream import StateDelta, StateSnapshot, StepEnd, StepStart
from agentnb._mirror import Mirror
from agentnb._run import current_run
from agentnb.adapters._lc_chunks import ChunkReader, content_text
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["as_agent"]

STREAM_MODES = ["messages", "updates", "custom", "tasks", "values"]
_DEFAULT_NAME = "LangGraph"  # what compile() names a graph the user did not name
_MAX_DEPTH = 40  # deeper state is shown as its str


def as_agent(graph: Any) -> Callable[..., Awaitable[JSON]]:
    """*graph* (a compiled LangGraph graph) as an async agent function.

    ``agent(input, config=None)``: a str input is the user's prompt (for a graph whose
    state has ``messages``); any other value is the graph's own input. *config* goes to
    the graph (a graph with a checkpointer and no ``thread_id`` runs on the run's id).
    """
    require_version("langgraph", "1.1", "langgraph", "running a LangGraph graph as an agent")
    own = getattr(graph, "name", None)
    name = own if isinstance(own, str) and own and own != _DEFAULT_NAME else "graph"

    async def graph_agent(input: Any, config: Mapping[str, Any] | None = None) -> JSON:
        return await _Driver(graph, current_run()).drive(input, config)

    graph_agent.__agentnb_name__ = name  # type: ignore[attr-defined]
    graph_agent.__name__ = graph_agent.__qualname__ = name
    graph_agent.__doc__ = (
        f"The LangGraph graph {name!r}: its nodes as steps, models' text and tool calls "
        "as they stream, state, subgraphs as sub-runs."
    )
    return graph_agent


def input_of(graph: Any, value: Any) -> Any:
    """The graph's input: a prompt (str) as its ``messages``; anything else as it is."""
    if not isinstance(value, str):
        return value
    keys = _input_keys(graph)
    if "messages" in keys:
        return {"messages": [{"role": "user", "content": value}]}
    listed = ", ".join(sorted(keys)) or "none found"
    raise TypeError(
        f"this graph's state has no 'messages' key to put the prompt in (its input keys: "
        f"{listed}); pass the graph's own input as a dict instead, e.g. "
        f"agentnb.run(graph, {{{next(iter(sorted(keys)), 'key')!r}: ...}})"
    )


def _input_keys(graph: Any) -> set[str]:
    try:
        schema = graph.get_input_jsonschema()
    except Exception:  # a state pydantic cannot describe (typing.TypedDict before 3.12)
        state_type = getattr(getattr(graph, "builder", None), "input_schema", None)
        annotations = getattr(state_type, "__annotations__", None)
        if isinstance(annotations, dict):
            return {str(key) for key in annotations}
        return {str(key) for key in getattr(graph, "stream_channels_list", ())}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return set(properties) if isinstance(properties, dict) else set()


# -- one run of a graph -----------------------------------------------------------------


class _Scope:
    """One graph namespace (the graph itself, or a subgraph): its run and what it streamed."""

    def __init__(self, run: Run, ns: tuple[str, ...], mirror: Mirror | None) -> None:
        self.run = run
        self.ns = ns
        self.assembler = Assembler(run)
        self.reader = ChunkReader(self.assembler)
        self.mirror = mirror  # None for the graph itself
        self.state: JSON = None
        self.final: Any = None  # the last values part
        self.has_state = False


class _Driver:
    def __init__(self, graph: Any, run: Run) -> None:
        self.graph = graph
        self.root = _Scope(run, (), None)
        self.scopes: dict[tuple[str, ...], _Scope] = {(): self.root}
        self.thread_id: str | None = None
        self._interrupts: set[object] = set()  # the ids of those reported
        messages = require("langchain_core.messages", "langgraph")
        self._chunk_type = messages.AIMessageChunk
        self._ai_type = messages.AIMessage
        self._tool_type = messages.ToolMessage

    async def drive(self, value: Any, config: Mapping[str, Any] | None) -> JSON:
        graph_input = input_of(self.graph, value)
        stream = self.graph.astream(
            graph_input,
            self._config(config),
            stream_mode=STREAM_MODES,
            version="v2",
            subgraphs=True,
        )
        async with aclosing(stream):
            async for part in stream:
                await self._part(part)
        await self._end_scopes(())
        self.root.reader.end_all()
        return _result_of(self.root.final)

    def _config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(config or {})
        configurable = dict(merged.get("configurable") or {})
        if getattr(self.graph, "checkpointer", None) not in (None, False):
            configurable.setdefault("thread_id", self.root.run.id)
        thread_id = configurable.get("thread_id")
        self.thread_id = None if thread_id is None else str(thread_id)
        if configurable:
            merged["configurable"] = configurable
        return merged

    async def _part(self, part: Mapping[str, Any]) -> None:
        kind, data = part["type"], part["data"]
        ns = tuple(part["ns"])
        scope = self.scopes.get(ns) or await self._open(ns)
        if kind == "messages":
            self._message(scope, *data)
        elif kind == "tasks":
            await self._task(scope, data)
        elif kind == "values":
            self._values(scope, data)
        elif kind == "updates":
            interrupts = data.get("__interrupt__") if isinstance(data, Mapping) else None
            if interrupts:
                self._interrupted(scope, interrupts)
        elif kind == "custom":
            scope.run.emit(Custom("langgraph.custom", jsonable(data)))

    # -- parts ---------------------------------------------------------------------------

    def _message(self, scope: _Scope, message: Any, metadata: Mapping[str, Any]) -> None:
        tag = metadata.get("langgraph_checkpoint_ns") if isinstance(metadata, Mapping) else None
        if isinstance(message, self._chunk_type):
            scope.reader.feed(message, tag)
        elif isinstance(message, self._ai_type):
            scope.reader.read_whole(message, tag)
        elif isinstance(message, self._tool_type):
            scope.assembler.tool_result(
                message.name or "",
                jsonable(message.content),
                message.tool_call_id or "",
                is_error=message.status == "error",
            )

    async def _task(self, scope: _Scope, task: Mapping[str, Any]) -> None:
        name, task_id = str(task.get("name")), str(task.get("id"))
        if "input" in task:  # it starts
            scope.run.emit(StepStart(name, task_id))
            return
        segment = f"{name}:{task_id}"
        scope.reader.end_where("|".join((*scope.ns, segment)))
        error = task.get("error")
        await self._end_scopes(
            (*scope.ns, segment), error if isinstance(error, BaseException) else None
        )
        scope.run.emit(StepEnd(name, task_id))

    def _values(self, scope: _Scope, values: Any) -> None:
        scope.final = values
        state = jsonable(values)
        if not scope.has_state:
            scope.has_state = True
            scope.run.emit(StateSnapshot(state))
        else:
            patch = json_patch(scope.state, state)
            if patch:
                scope.run.emit(StateDelta(patch))
        scope.state = state

    def _interrupted(self, scope: _Scope, interrupts: Any) -> None:
        for interrupt in interrupts:
            interrupt_id = getattr(interrupt, "id", None)
            if interrupt_id is not None:
                if interrupt_id in self._interrupts:  # a subgraph's, seen again by its parent
                    continue
                self._interrupts.add(interrupt_id)
            value = jsonable(getattr(interrupt, "value", interrupt))
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            scope.run.emit(Status(f"paused, waiting for input: {_clip(shown)}"))
            scope.run.emit(
                Custom(
                    "langgraph.interrupt",
                    {
                        "id": None if interrupt_id is None else str(interrupt_id),
                        "value": value,
                        "thread_id": self.thread_id,
                    },
                )
            )

    # -- subgraphs as sub-runs -------------------------------------------------------------

    async def _open(self, ns: tuple[str, ...]) -> _Scope:
        parent = self.scopes.get(ns[:-1]) or await self._open(ns[:-1])
        name = ns[-1].partition(":")[0] or "subgraph"
        mirror = Mirror(parent.run, name)
        scope = self.scopes[ns] = _Scope(mirror.run, ns, mirror)
        return scope

    async def _end_scopes(
        self, prefix: tuple[str, ...], error: BaseException | None = None
    ) -> None:
        """End the sub-runs at or under *prefix*, deepest first (all of them for ``()``)."""
        ending = [ns for ns in self.scopes if ns and ns[: len(prefix)] == prefix]
        for ns in sorted(ending, key=len, reverse=True):
            scope = self.scopes.pop(ns)
            scope.reader.end_all()
            assert scope.mirror is not None
            scope.mirror.end(_result_of(scope.final), error if ns == prefix else None)
            await scope.mirror.ended()


# -- JSON ---------------------------------------------------------------------------------


def _result_of(values: Any) -> JSON:
    """The final state's last message's text, else the state (JSON-safe)."""
    messages = values.get("messages") if isinstance(values, Mapping) else None
    if isinstance(messages, list) and messages:
        last = messages[-1]
        content = getattr(last, "content", None)
        if content is None and isinstance(last, Mapping):
            content = last.get("content")
        if isinstance(content, str | list):
            return content_text(content)
    return jsonable(values)


def jsonable(value: object, depth: int = 0) -> JSON:
    """*value* as JSON: models and dataclasses as their dicts, anything else as its str."""
    if value is None or type(value) in (str, int, bool):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > _MAX_DEPTH:
        return _str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, depth + 1) for item in value]
    if not isinstance(value, type):
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            try:
                return jsonable(dump(), depth + 1)
            except Exception:
                return _str(value)
        if dataclasses.is_dataclass(value):
            return {
                f.name: jsonable(getattr(value, f.name, None), depth + 1)
                for f in dataclasses.fields(value)
            }
    return _str(value)


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def json_patch(old: JSON, new: JSON, path: str = "") -> list[dict[str, JSON]]:
    """A JSON Patch (RFC 6902) from *old* to *new*: appended list items as ``add``."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, JSON]] = [
            {"op": "remove", "path": f"{path}/{_pointer(key)}"} for key in old if key not in new
        ]
        for key, item in new.items():
            at = f"{path}/{_pointer(key)}"
            if key not in old:
                ops.append({"op": "add", "path": at, "value": item})
            else:
                ops.extend(json_patch(old[key], item, at))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        if len(new) >= len(old) and _same(new[: len(old)], old):
            return [
                {"op": "add", "path": f"{path}/{i}", "value": new[i]}
                for i in range(len(old), len(new))
            ]
        if len(new) == len(old):
            return [
                op
                for i, pair in enumerate(zip(old, new, strict=True))
                for op in json_patch(*pair, f"{path}/{i}")
            ]
    if _same(old, new):
        return []
    return [{"op": "replace", "path": path, "value": new}]


def _same(a: JSON, b: JSON) -> bool:
    """Equal, and of one type (so that ``1`` becoming ``true`` is a change)."""
    return type(a) is type(b) and a == b
