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

from collections.abc import AsyncIterator, Callable, Iterator
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
    reader = _Reader(run, stream, first)
    with interrupted(reader.assembler):
        reader.feed(first)
        async for item in items:
            reader.feed(item)
    return reader.finish()


def relay(run: Run, stream: Any, items: Iterator[Any]) -> Any:
    """Relay a sync OpenAI stream; return the assembled message or the final Response."""
    require_version("openai", "3.0", "openai", "agentnb.relay of an OpenAI stream")
    first: Any = next(items, _END)
    if first is _END:
        return None
    reader = _Reader(run, stream, first)
    with interrupted(reader.assembler):
        reader.feed(first)
        for item in items:
            reader.feed(item)
    return reader.finish()


class _Reader:
    """One OpenAI stream's items, read in the vocabulary its first item speaks."""

    def __init__(self, run: Run, stream: Any, first: Any) -> None:
        self.assembler = Assembler(run)
        self.kind = _kind(first)
        self.events: ResponsesEvents | None = None
        self.chunks: ChatChunks | None = None
        self.feed: Callable[[Any], None]
        if self.kind == _RESPONSES:
            self.events = ResponsesEvents(self.assembler, PROVIDER, _request_of(stream))
            self.feed = self.events.feed
        else:
            self.chunks = ChatChunks(self.assembler, PROVIDER)
            self.feed = self.chunks.feed if self.kind == _CHAT else self._helper_event

    def _helper_event(self, event: Any) -> None:
        """The chat helper's events: its ``chunk`` events are read, the rest repeat them."""
        if event.type == "chunk":
            assert self.chunks is not None
            self.chunks.feed(event.chunk)

    def finish(self) -> Any:
        """End what is open; the message (chat) or the final Response (Responses)."""
        with interrupted(self.assembler):
            if self.events is not None:
                self.events.finish()
                return self.events.response
            assert self.chunks is not None
            self.chunks.finish()
        return message_of(self.chunks)


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
