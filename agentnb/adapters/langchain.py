"""A LangChain chat model's stream, relayed into a run: ``agentnb.relay(model.astream(...))``.

``model.astream(messages)`` and ``model.stream(messages)`` (and a runnable chain ending in
a chat model) yield ``AIMessageChunk``s; each is read by ``_lc_chunks.ChunkReader`` (text,
reasoning, tool calls as their arguments stream, usage, message boundaries). It returns
what LangChain itself makes of the chunks: their sum, one ``AIMessageChunk``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from agentnb._assemble import Assembler, interrupted
from agentnb._exceptions import UnknownStream
from agentnb.adapters._lc_chunks import ChunkReader
from agentnb.adapters._sdk import require, require_version

if TYPE_CHECKING:
    from agentnb._run import Run

__all__ = ["arelay", "relay"]


async def arelay(run: Run, stream: Any, items: AsyncIterator[Any]) -> Any:
    """Relay ``model.astream(...)``; return the chunks' sum (None if there were none)."""
    require_version("langchain-core", "1.8", "langchain", "agentnb.relay of a LangChain stream")
    chunk_type = _chunk_type()
    assembler = Assembler(run)
    reader = ChunkReader(assembler)
    chunks: list[Any] = []
    with interrupted(assembler):
        async for chunk in items:
            _read(reader, chunks, chunk, chunk_type)
        reader.end_all()
    return _sum(chunks)


def relay(run: Run, stream: Any, items: Iterator[Any]) -> Any:
    """Relay ``model.stream(...)``; return the chunks' sum (None if there were none)."""
    require_version("langchain-core", "1.8", "langchain", "agentnb.relay of a LangChain stream")
    chunk_type = _chunk_type()
    assembler = Assembler(run)
    reader = ChunkReader(assembler)
    chunks: list[Any] = []
    with interrupted(assembler):
        for chunk in items:
            _read(reader, chunks, chunk, chunk_type)
        reader.end_all()
    return _sum(chunks)


def _chunk_type() -> Any:
    return require("langchain_core.messages", "langchain").AIMessageChunk


def _read(reader: ChunkReader, chunks: list[Any], chunk: Any, chunk_type: Any) -> None:
    if not isinstance(chunk, chunk_type):
        cls = type(chunk)
        raise UnknownStream(
            "agentnb.relay() reads a LangChain chat model's .stream()/.astream(), whose items "
            f"are AIMessageChunk; this stream yielded {cls.__module__}.{cls.__qualname__} "
            "(relay the chat model's own stream, before any output parser)"
        )
    chunks.append(chunk)
    reader.feed(chunk)


def _sum(chunks: list[Any]) -> Any:
    """The chunks added up as LangChain adds them (``AIMessageChunk.__add__``)."""
    if not chunks:
        return None
    add = require("langchain_core.messages.ai", "langchain").add_ai_message_chunks
    return add(chunks[0], *chunks[1:])
