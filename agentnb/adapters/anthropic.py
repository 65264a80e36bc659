"""The Anthropic Python SDK's message streams, relayed into a run: ``agentnb.relay(stream)``.

It reads, sync or async, ``client.messages.create(..., stream=True)`` (the raw events)
and ``client.messages.stream(...)`` (a stream manager, entered by ``relay``: its stream
repeats every raw event and adds helper events, ``text``, ``thinking``, ``signature``,
``input_json`` and ``citation``, which are skipped, so each piece counts once). The
``client.beta.messages`` forms are read the same way.

* ``text`` blocks become text, ``thinking`` blocks Reasoning (the signature as its
  ``signature``), a ``redacted_thinking`` block one Reasoning with no text and the block's
  ``data`` as signature; all carry the message's id;
* ``tool_use`` (and ``server_tool_use``) blocks become ToolCallStart, a ToolCallDelta per
  ``partial_json``, and at the block's stop ToolCallEnd and the whole ToolCall; a server
  tool's result block (``web_search_tool_result``, ...) becomes a ToolResult;
* citations and anything else new are passed through as ``Raw("anthropic", ...)``;
* MessageStart / MessageEnd (with the ``stop_reason``) frame the message, and at its end
  one Usage: ``output_tokens`` and ``thinking_tokens`` as reported, and ``input_tokens``
  the whole prompt, cache reads and writes included (Anthropic's own ``input_tokens``
  counts neither; it says the total is the sum of the three), of which the cache reads
  are ``cached_tokens``.

It returns the final ``Message``: for ``.stream()`` the SDK's own ``get_final_message()``,
for ``create(..., stream=True)`` one built from the same events as the SDK's own
accumulator builds it (a tool call's ``input`` parsed from its whole argument text).
An SSE ``error`` event is raised by the SDK itself (``anthropic.APIStatusError`` and
its subclasses), and so becomes the run's Error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, interrupted
from agentnb._events_stream import Raw, Usage
from agentnb._exceptions import UnknownStream
from agentnb.adapters._sdk import require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["MessageEvents", "arelay", "relay"]

PROVIDER = SOURCE = "anthropic"
_END = object()
# What messages.stream() adds to the raw events: each repeats a raw event's piece.
_HELPERS = frozenset({"text", "thinking", "signature", "input_json", "citation"})
_RAW = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)
_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})


async def arelay(run: Run, stream: Any, items: AsyncIterator[Any]) -> Any:
    """Relay an async Anthropic message stream; return the final Message."""
    require_version("anthropic", "2.0", "anthropic", "agentnb.relay of an Anthropic stream")
    first: Any = await anext(items, _END)
    if first is _END:
        return None
    assembler = Assembler(run)
    events = MessageEvents(assembler)
    feed = events.feed
    with interrupted(assembler):
        feed(_checked(stream, first))
        async for event in items:
            feed(event)
        events.finish()
    final = getattr(stream, "get_final_message", None)
    if final is not None and events.message is not None:
        return await final()
    return events.message


def relay(run: Run, stream: Any, items: Iterator[Any]) -> Any:
    """Relay a sync Anthropic message stream; return the final Message."""
    require_version("anthropic", "2.0", "anthropic", "agentnb.relay of an Anthropic stream")
    first: Any = next(items, _END)
    if first is _END:
        return None
    assembler = Assembler(run)
    events = MessageEvents(assembler)
    feed = events.feed
    with interrupted(assembler):
        feed(_checked(stream, first))
        for event in items:
            feed(event)
        events.finish()
    final = getattr(stream, "get_final_message", None)
    if final is not None and events.message is not None:
        return final()
    return events.message


def _checked(stream: Any, item: Any) -> Any:
    kind = getattr(item, "type", None)
    if isinstance(kind, str) and (kind in _RAW or kind in _HELPERS):
        return item
    cls = type(stream)
    whole = getattr(stream, "type", None) == "message"
    raise UnknownStream(
        "agentnb.relay() reads Anthropic message streams: messages.create(..., stream=True) "
        f"or messages.stream(...), sync or async; got {cls.__module__}.{cls.__qualname__}"
        + (", a whole response: ask for a stream (stream=True)" if whole else "")
    )


@dataclass(slots=True)
class _Block:
    """A content block as it streams: the SDK's own block object, and its tool call's id."""

    block: Any
    call_id: str = ""
    arguments: bool = False  # some input_json_delta arrived


class MessageEvents:
    """Anthropic stream events in, agentnb events out; ``message``: the Message they add up to.

    ``message`` is None until ``message_start`` (events before it are emitted with no
    message id).
    """

    def __init__(self, assembler: Assembler) -> None:
        self.assembler = assembler
        self.message: Any = None
        self.message_id = ""
        self._blocks: dict[int, _Block] = {}
        self._stopped = False

    def feed(self, event: Any) -> None:
        """Read one event (raw or the stream helper's); emit what it adds."""
        kind = event.type
        if kind in _HELPERS:
            return
        if kind == "content_block_delta":
            self._delta(event)
        elif kind == "content_block_start":
            self._start(event)
        elif kind == "content_block_stop":
            self._stop(event.index)
        elif kind == "message_start":
            self._message_start(event.message)
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            self._message_stop()
        elif kind != "ping":  # a keep-alive says nothing
            self._raw(event)

    def finish(self) -> None:
        """The stream ended: end the tool calls and the message still open."""
        for index in list(self._blocks):
            self._stop(index)
        if self.message is not None:
            self._message_stop()

    # -- the message ------------------------------------------------------------

    def _message_start(self, message: Any) -> None:
        self.message = message.model_copy(deep=True)
        self.message_id = message.id
        self._stopped = False
        self.assembler.message_start(message.id, message.role)

    def _message_delta(self, event: Any) -> None:
        message = self.message
        if message is None:
            return
        delta = event.delta
        message.stop_reason = delta.stop_reason
        message.stop_sequence = delta.stop_sequence
        if hasattr(delta, "stop_details"):
            message.stop_details = delta.stop_details
        if getattr(delta, "container", None) is not None:
            message.container = delta.container
        usage, total = message.usage, event.usage
        usage.output_tokens = total.output_tokens
        # message_delta's counts are running totals: they replace, and an omitted one keeps
        # message_start's value.
        for name in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "server_tool_use",
            "output_tokens_details",
        ):
            value = getattr(total, name, None)
            if value is not None:
                setattr(usage, name, value)

    def _message_stop(self) -> None:
        message = self.message
        if message is None or self._stopped:
            return
        self._stopped = True
        self.assembler.usage(usage_of(message))
        self.assembler.message_end(self.message_id, message.stop_reason or "")

    # -- content blocks ---------------------------------------------------------

    def _start(self, event: Any) -> None:
        block = event.content_block.model_copy(deep=True)
        if self.message is not None:
            self.message.content.append(block)
        state = self._blocks[event.index] = _Block(block)
        kind = block.type
        assembler, message_id = self.assembler, self.message_id
        if kind == "text":
            assembler.text(block.text, message_id)
        elif kind == "thinking":
            assembler.reasoning(block.thinking, message_id, block.signature or None)
        elif kind == "redacted_thinking":
            assembler.reasoning("", message_id, block.data)
        elif kind in _TOOL_BLOCKS:
            state.call_id = block.id
            assembler.tool_start(block.id, block.name, message_id)
        elif isinstance(getattr(block, "tool_use_id", None), str):
            self._server_result(block)
        else:
            self._raw(event)

    def _delta(self, event: Any) -> None:
        state = self._blocks.get(event.index)
        if state is None:
            self._raw(event)
            return
        block, delta = state.block, event.delta
        kind, assembler = delta.type, self.assembler
        if kind == "text_delta" and block.type == "text":
            block.text += delta.text
            assembler.text(delta.text, self.message_id)
        elif kind == "thinking_delta" and block.type == "thinking":
            block.thinking += delta.thinking
            assembler.reasoning(delta.thinking, self.message_id)
        elif kind == "signature_delta" and block.type == "thinking":
            block.signature = delta.signature
            assembler.reasoning("", self.message_id, delta.signature)
        elif kind == "input_json_delta" and state.call_id:
            state.arguments = state.arguments or bool(delta.partial_json)
            assembler.tool_delta(state.call_id, delta.partial_json)
        elif kind == "citations_delta" and block.type == "text":
            block.citations = [*(block.citations or ()), delta.citation]
            self._raw(event)
        else:
            self._raw(event)

    def _stop(self, index: int) -> None:
        state = self._blocks.pop(index, None)
        if state is None or not state.call_id:
            return
        block, assembler = state.block, self.assembler
        if not state.arguments and block.input:  # given whole at the start, not streamed
            assembler.tool_delta(state.call_id, json.dumps(block.input, ensure_ascii=False))
            state.arguments = True
        call = assembler.tool_end(state.call_id)
        if state.arguments:
            block.input = call.args

    def _server_result(self, block: Any) -> None:
        """A server tool's result (web search, code execution, ...) as a ToolResult."""
        call = self.assembler.calls.get(block.tool_use_id)
        content = block.to_dict(mode="json").get("content")
        error = isinstance(content, dict) and str(content.get("type", "")).endswith("_error")
        name = call.name if call is not None else block.type
        self.assembler.tool_result(name, content, block.tool_use_id, is_error=error)

    def _raw(self, event: Any) -> None:
        self.assembler.emit(Raw(SOURCE, event.to_dict(mode="json")))


def usage_of(message: Any) -> Usage:
    """The Usage event for a Message's usage (input: the whole prompt, cache included)."""
    usage = message.usage
    read = _count(usage.cache_read_input_tokens)
    written = _count(usage.cache_creation_input_tokens)
    details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=(usage.input_tokens or 0) + (read or 0) + (written or 0),
        output_tokens=usage.output_tokens or 0,
        model=message.model or "",
        provider=PROVIDER,
        reasoning_tokens=_count(getattr(details, "thinking_tokens", None)),
        cached_tokens=read,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
