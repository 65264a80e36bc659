"""LiteLLM's streams, relayed into a run: ``agentnb.relay(stream)``.

It reads what ``litellm.acompletion(..., stream=True)`` and ``litellm.completion(...,
stream=True)`` return (a ``CustomStreamWrapper`` of OpenAI-shaped chunks, whatever
the provider behind it), with the shared chat-chunk reader (``_chat.ChatChunks``):
text, ``delta.reasoning_content`` as Reasoning, tool calls as their arguments stream.
A ``delta.thinking_blocks`` entry's signature (and a redacted block's data) becomes a
Reasoning carrying it as ``signature``. With ``stream_options={"include_usage": True}``
the usage chunk becomes one Usage with LiteLLM's own ``cost``; the provider is LiteLLM's
``custom_llm_provider`` for the stream (``"litellm"`` if it names none).

It returns ``litellm.stream_chunk_builder(chunks)``: the ``ModelResponse`` LiteLLM
itself assembles from the chunks. An error mid-stream is LiteLLM's own exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, interrupted
from agentnb._events_stream import Usage
from agentnb.adapters._chat import ChatChunks
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["LiteLLMChunks", "arelay", "relay"]

PROVIDER = "litellm"


async def arelay(run: Run, stream: Any, items: AsyncIterator[Any]) -> Any:
    """Relay an async LiteLLM stream; return LiteLLM's own assembled ModelResponse."""
    require_version("litellm", "1.100", "litellm", "agentnb.relay of a LiteLLM stream")
    assembler = Assembler(run)
    reader = LiteLLMChunks(assembler, provider_of(stream))
    chunks: list[Any] = []
    keep, feed = chunks.append, reader.feed
    with interrupted(assembler):
        async for chunk in items:
            keep(chunk)
            feed(chunk)
        reader.finish()
    return _built(chunks)


def relay(run: Run, stream: Any, items: Iterator[Any]) -> Any:
    """Relay a sync LiteLLM stream; return LiteLLM's own assembled ModelResponse."""
    require_version("litellm", "1.100", "litellm", "agentnb.relay of a LiteLLM stream")
    assembler = Assembler(run)
    reader = LiteLLMChunks(assembler, provider_of(stream))
    chunks: list[Any] = []
    keep, feed = chunks.append, reader.feed
    with interrupted(assembler):
        for chunk in items:
            keep(chunk)
            feed(chunk)
        reader.finish()
    return _built(chunks)


def provider_of(stream: Any) -> str:
    """Who LiteLLM says serves the stream (its ``custom_llm_provider``), else "litellm"."""
    provider = getattr(stream, "custom_llm_provider", None)
    return provider if isinstance(provider, str) and provider else PROVIDER


def _built(chunks: list[Any]) -> Any:
    if not chunks:
        return None
    litellm = require("litellm", "litellm")
    return litellm.stream_chunk_builder(chunks)


class LiteLLMChunks(ChatChunks):
    """Chat chunks as LiteLLM streams them: thinking blocks' signatures, usage with cost."""

    def feed(self, chunk: Any) -> None:
        super().feed(chunk)
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            blocks = getattr(delta, "thinking_blocks", None) if delta is not None else None
            if blocks:
                index = getattr(choice, "index", 0) or 0
                message_id = (self.id or "") if not index else f"{self.id}/{index}"
                for block in blocks:
                    self._signature(block, message_id)

    def _signature(self, block: Any, message_id: str) -> None:
        kind = _field(block, "type")
        value = _field(block, "data" if kind == "redacted_thinking" else "signature")
        if isinstance(value, str) and value:
            self.assembler.reasoning("", message_id, value)

    def usage_event(self, usage: Any, model: str) -> Usage:
        event = super().usage_event(usage, model)
        cost = getattr(usage, "cost", None)
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            return event
        return Usage(
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            model=event.model,
            provider=event.provider,
            reasoning_tokens=event.reasoning_tokens,
            cached_tokens=event.cached_tokens,
            cost=float(cost),
        )


def _field(block: Any, name: str) -> Any:
    """A thinking block's field: LiteLLM streams them as dicts (or, for some providers, objects)."""
    return block.get(name) if isinstance(block, dict) else getattr(block, name, None)
