"""Reading LangChain's AI messages, streamed (``AIMessageChunk``) or whole, into an Assembler.

Shared by the LangChain relay and the LangGraph adapter. Per message (by its id):

* text: ``content`` as a str, or its content blocks of type ``text``;
* reasoning: content blocks of type ``reasoning`` (LangChain's standard blocks) or
  ``thinking`` (Anthropic's, with their ``signature``), ``redacted_thinking`` (its data as
  the signature), and ``additional_kwargs["reasoning_content"]`` (DeepSeek, vLLM, ...);
* tool calls: ``tool_call_chunks``, joined by ``index`` as LangChain merges them. A call
  starts once its name is known; argument text that came before (in the same chunk as the
  name, or earlier) is sent as the first delta, so no fragment is lost, also when a whole
  call arrives in one chunk. The calls end when the message does;
* usage: ``usage_metadata``, summed over the message's chunks as LangChain sums them, sent
  once as ``Usage`` when the message ends.

A message ends at a chunk with ``chunk_position="last"``, or when the caller says so
(``end``, ``end_all``: the stream or the graph node that made it ended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentnb._events import new_call_id
from agentnb._events_stream import Usage
from agentnb.adapters._sdk import require

if TYPE_CHECKING:
    from agentnb._assemble import Assembler

__all__ = ["ChunkReader", "content_text"]


@dataclass(slots=True)
class _Call:
    """A tool call as its chunks arrive: started once its name is known."""

    name: str = ""
    call_id: str = ""
    pending: list[str] = field(default_factory=list)  # argument text before the start
    started: bool = False


@dataclass(slots=True)
class _Message:
    message_id: str
    tag: object = None  # who made it (a graph node's task), for end_where()
    calls: dict[object, _Call] = field(default_factory=dict)  # by index, in arrival order
    usage: Any = None  # LangChain's UsageMetadata, summed
    model: str = ""
    provider: str = ""
    finish_reason: str = ""


def content_text(content: object) -> str:
    """The text of a message's ``content``: the str itself, or its text blocks joined."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
    return "".join(parts)


def _str_of(value: object) -> str:
    return value if isinstance(value, str) else ""


def _tokens(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


class ChunkReader:
    """AI messages, streamed or whole, emitted through *assembler* as they arrive."""

    def __init__(self, assembler: Assembler, provider: str = "") -> None:
        self.assembler = assembler
        self.provider = provider
        self._add_usage: Any = require("langchain_core.messages.ai", "langchain").add_usage
        self._open: dict[str, _Message] = {}

    # -- reading ---------------------------------------------------------------

    def feed(self, chunk: Any, tag: object = None) -> None:
        """Read one ``AIMessageChunk`` (tagged with who made it, for ``end_where``).

        A chunk with nothing in it opens no message: LangChain ends a stream whose chunks
        did not say which was last with an empty one of its own id (``lc_run--...``), which
        ends the messages of the same *tag* instead.
        """
        if (
            chunk.content
            or chunk.tool_call_chunks
            or chunk.usage_metadata is not None
            or chunk.response_metadata
            or chunk.additional_kwargs
        ):
            message = self._message(chunk, tag)
            self._content(chunk, message.message_id)
            for part in chunk.tool_call_chunks:
                self._tool_part(message, part)
            self._metadata(message, chunk)
        if chunk.chunk_position == "last":
            self.end_where(tag)

    def read_whole(self, ai_message: Any, tag: object = None) -> None:
        """Read an ``AIMessage`` that arrived whole (not streamed): all of it, then its end."""
        message = self._message(ai_message, tag)
        self._content(ai_message, message.message_id)
        for call in ai_message.tool_calls:
            arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
            self._whole_call(message, call.get("id"), call.get("name"), arguments)
        for call in ai_message.invalid_tool_calls:
            self._whole_call(message, call.get("id"), call.get("name"), call.get("args"))
        self._metadata(message, ai_message)
        self.end(message.message_id)

    def _message(self, message: Any, tag: object) -> _Message:
        message_id = message.id or ""
        open_message = self._open.get(message_id)
        if open_message is None:
            open_message = self._open[message_id] = _Message(message_id, tag)
            if message_id:
                self.assembler.message_start(message_id)
        return open_message

    def _content(self, message: Any, message_id: str) -> None:
        assembler = self.assembler
        content = message.content
        if isinstance(content, str):
            assembler.text(content, message_id)
        else:
            for block in content:
                if isinstance(block, str):
                    assembler.text(block, message_id)
                elif isinstance(block, dict):
                    self._block(block, message_id)
        reasoning = message.additional_kwargs.get("reasoning_content")
        if isinstance(reasoning, str):
            assembler.reasoning(reasoning, message_id)

    def _block(self, block: dict[str, Any], message_id: str) -> None:
        kind = block.get("type")
        if kind == "text":
            self.assembler.text(_str_of(block.get("text")), message_id)
        elif kind in ("reasoning", "thinking"):
            signature = block.get("signature")
            self.assembler.reasoning(
                _str_of(block.get(kind)),
                message_id,
                signature if isinstance(signature, str) and signature else None,
            )
        elif kind == "redacted_thinking":
            data = block.get("data")
            if isinstance(data, str) and data:
                self.assembler.reasoning("", message_id, data)

    def _tool_part(self, message: _Message, part: Any) -> None:
        index = part.get("index")
        key: object = object() if index is None else index  # no index: never merged
        call = message.calls.get(key)
        if call is None:
            call = message.calls[key] = _Call()
        call.name = call.name or _str_of(part.get("name"))
        call.call_id = call.call_id or _str_of(part.get("id"))
        arguments = _str_of(part.get("args"))
        if call.started:
            self.assembler.tool_delta(call.call_id, arguments)
            return
        if arguments:
            call.pending.append(arguments)
        if call.name:
            self._start(message, call)

    def _start(self, message: _Message, call: _Call) -> None:
        call.call_id = call.call_id or new_call_id()
        call.started = True
        self.assembler.tool_start(call.call_id, call.name, message.message_id)
        self.assembler.tool_delta(call.call_id, "".join(call.pending))
        call.pending.clear()

    def _whole_call(self, message: _Message, call_id: object, name: object, args: object) -> None:
        call = message.calls[object()] = _Call(_str_of(name), _str_of(call_id))
        call.pending.append(_str_of(args))
        self._start(message, call)

    def _metadata(self, message: _Message, chunk: Any) -> None:
        if chunk.usage_metadata is not None:
            message.usage = self._add_usage(message.usage, chunk.usage_metadata)
        metadata = chunk.response_metadata
        if metadata:
            model = metadata.get("model_name") or metadata.get("model")
            message.model = _str_of(model) or message.model
            message.provider = _str_of(metadata.get("model_provider")) or message.provider
            finish = metadata.get("finish_reason") or metadata.get("stop_reason")
            message.finish_reason = _str_of(finish) or message.finish_reason

    # -- ending ----------------------------------------------------------------

    def end(self, message_id: str) -> None:
        """End one message: its tool calls (whole), its usage, its MessageEnd."""
        message = self._open.pop(message_id, None)
        if message is None:
            return
        assembler = self.assembler
        for call in message.calls.values():
            if not call.started:  # a name never came
                self._start(message, call)
            assembler.tool_end(call.call_id)
        if message.usage is not None:
            assembler.usage(self._usage(message))
        if message_id:
            assembler.message_end(message_id, message.finish_reason)

    def end_where(self, tag: object) -> None:
        """End the messages *tag* made (a graph node's task has ended)."""
        for message_id, message in list(self._open.items()):
            if message.tag == tag:
                self.end(message_id)

    def end_all(self) -> None:
        for message_id in list(self._open):
            self.end(message_id)

    def _usage(self, message: _Message) -> Usage:
        usage = message.usage
        output_details = usage.get("output_token_details") or {}
        input_details = usage.get("input_token_details") or {}
        return Usage(
            input_tokens=_tokens(usage.get("input_tokens")) or 0,
            output_tokens=_tokens(usage.get("output_tokens")) or 0,
            model=message.model,
            provider=message.provider or self.provider,
            reasoning_tokens=_tokens(output_details.get("reasoning")),
            cached_tokens=_tokens(input_details.get("cache_read")),
        )
