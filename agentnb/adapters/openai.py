"""The OpenAI Python SDK's streams, relayed into a run: ``agentnb.relay(stream)``.

It reads, sync or async:

* chat completions: ``client.chat.completions.create(..., stream=True)`` (chunks, read by
  ``_chat.ChatChunks``) and ``client.chat.completions.stream(...)`` (the SDK's helper
  events: its ``chunk`` events are read, the rest repeat them);
* Responses: ``client.responses.create(..., stream=True)`` and ``client.responses.stream(...)``
  (read by ``_responses.ResponsesEvents``).

It returns what the SDK itself assembles: for chat completions the assistant's
``ChatCompletionMessage`` (content, refusal, tool calls with their ids, names and argument
text as streamed, and any reasoning a provider streamed in the extra field
``reasoning_content``); for Responses the final ``Response`` (None if the stream ended
before ``response.completed``). An ``error`` payload in a chat stream is raised by the SDK
itself as ``openai.APIError``; a Responses ``error`` event or ``response.failed`` is raised
here as ``openai.APIError`` with the provider's message, code and param.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, interrupted
from agentnb._exceptions import UnknownStream
from agentnb.adapters._chat import ChatChunks
from agentnb.adapters._responses import ResponsesEvents
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["arelay", "relay"]

PROVIDER = "openai"
_END = object()
_CHAT, _CHAT_HELPER, _RESPONSES = "chat", "chat helper", "responses"


async def arelay(run: Run, stream: Any, items: AsyncIterator[Any]) -> Any:
    """Relay an async OpenAI stream; return the assembled message or the final Response."""
    require_version("openai", "3.0", "openai", "agentnb.relay of an OpenAI stream")
    first: Any = await anext(items, _END)
    if first is _END:
        return None
    assembler = Assembler(run)
    kind = _kind(first)
    with interrupted(assembler):
        if kind == _RESPONSES:
            events = ResponsesEvents(assembler, PROVIDER, _request_of(stream))
            read = events.feed
            read(first)
            async for event in items:
                read(event)
            events.finish()
            return events.response
        chunks = ChatChunks(assembler, PROVIDER)
        feed = chunks.feed
        if kind == _CHAT:
            feed(first)
            async for chunk in items:
                feed(chunk)
        else:
            feed(first.chunk)
            async for event in items:
                if event.type == "chunk":
                    feed(event.chunk)
        chunks.finish()
    return message_of(chunks)


def relay(run: Run, stream: Any, items: Iterator[Any]) -> Any:
    """Relay a sync OpenAI stream; return the assembled message or the final Response."""
    require_version("openai", "3.0", "openai", "agentnb.relay of an OpenAI stream")
    first: Any = next(items, _END)
    if first is _END:
        return None
    assembler = Assembler(run)
    kind = _kind(first)
    with interrupted(assembler):
        if kind == _RESPONSES:
            events = ResponsesEvents(assembler, PROVIDER, _request_of(stream))
            read = events.feed
            read(first)
            for event in items:
                read(event)
            events.finish()
            return events.response
        chunks = ChatChunks(assembler, PROVIDER)
        feed = chunks.feed
        if kind == _CHAT:
            feed(first)
            for chunk in items:
                feed(chunk)
        else:
            feed(first.chunk)
            for event in items:
                if event.type == "chunk":
                    feed(event.chunk)
        chunks.finish()
    return message_of(chunks)


def _kind(item: Any) -> str:
    """Which vocabulary the stream speaks, from its first item."""
    if getattr(item, "object", None) == "chat.completion.chunk":
        return _CHAT
    kind = getattr(item, "type", None)
    if kind == "chunk" and getattr(item, "chunk", None) is not None:
        return _CHAT_HELPER
    if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
        return _RESPONSES
    cls = type(item)
    raise UnknownStream(
        "agentnb.relay() reads OpenAI chat-completion streams (chat.completions.create(..., "
        "stream=True) or chat.completions.stream(...)) and Responses streams "
        "(responses.create(..., stream=True) or responses.stream(...)); this stream yields "
        f"{cls.__module__}.{cls.__qualname__}"
    )


def _request_of(stream: Any) -> Any:
    """The HTTP request behind a ``create(..., stream=True)`` stream (None for helpers)."""
    response = getattr(stream, "response", None)
    return getattr(response, "request", None)


def message_of(chunks: ChatChunks) -> Any:
    """The ``ChatCompletionMessage`` the SDK's own chunks add up to (first choice)."""
    chat = require("openai.types.chat", "openai")
    calls = [
        chat.ChatCompletionMessageFunctionToolCall(
            id=call.call_id,
            type="function",
            function={"name": call.name, "arguments": call.text},
        )
        for call in chunks.tool_calls
    ]
    extra = {"reasoning_content": chunks.reasoning} if chunks.reasoning is not None else {}
    return chat.ChatCompletionMessage(
        role="assistant",
        content=chunks.content,
        refusal=chunks.refusal,
        tool_calls=calls or None,
        **extra,
    )
