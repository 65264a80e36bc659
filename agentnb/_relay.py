"""``agentnb.relay(stream)``: a model SDK's native stream, emitted live into the current run.

The stream is recognised by the package its type (or, for a plain generator such
as LangChain's ``astream``, its first item's type) comes from, without importing
any SDK; the adapter for it (``agentnb.adapters.<sdk>``) is imported only then.
An async stream gives a coroutine to await, a sync one the result itself. The
stream is always closed at the end, also when the run is cancelled (Stop): closing
an SDK's stream closes its HTTP response, so the provider sees the disconnect.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any

from ._exceptions import UnknownStream
from ._run import current_run

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["relay"]

# The top-level package a stream (or its items) comes from -> the adapter that reads it.
ADAPTERS: dict[str, str] = {
    "openai": "agentnb.adapters.openai",
    "anthropic": "agentnb.adapters.anthropic",
    "litellm": "agentnb.adapters.litellm",
    "langchain_core": "agentnb.adapters.langchain",
    "langchain": "agentnb.adapters.langchain",
}

ACCEPTS = (
    "agentnb.relay() takes a model SDK's native stream: an OpenAI chat completion or "
    "Responses stream (create(..., stream=True) or .stream(...)), an Anthropic message stream "
    "(messages.create(..., stream=True) or messages.stream(...)), a LiteLLM "
    "(a)completion(..., stream=True), or a LangChain chat model's .stream()/.astream(); "
    "sync or async"
)


def relay(stream: Any, /) -> Any:
    """Emit a native model stream into the current run as it arrives; return the whole.

    ``await agentnb.relay(async_stream)`` or ``agentnb.relay(sync_stream)`` (a stream that
    is both is read async where a loop runs, else sync). Text,
    reasoning, tool calls (as their arguments stream, then whole), usage and message
    boundaries become agentnb events; the return value is what the SDK itself would
    have assembled (e.g. OpenAI's message, Anthropic's ``Message``, LangChain's
    ``AIMessageChunk``). Raises ``NoActiveRun`` outside a run and ``UnknownStream``
    (listing what it accepts) for anything else.
    """
    run = current_run()
    is_async = hasattr(stream, "__aiter__") or hasattr(stream, "__aenter__")
    is_sync = hasattr(stream, "__iter__") or hasattr(stream, "__enter__")
    # A stream that is both (LiteLLM's) is read the way the caller can: a sync agent's thread
    # has no running loop, and would get a coroutine it cannot await.
    if is_async and not (is_sync and not _loop_running()):
        return _arelay(run, stream)
    if is_sync:
        if isinstance(stream, str | bytes | dict | list | tuple):
            raise _unknown(stream)
        return _relay_sync(run, stream)
    if inspect.iscoroutine(stream):
        stream.close()
        raise UnknownStream(
            f"{ACCEPTS}; got a coroutine: await the SDK call first, "
            "e.g. agentnb.relay(await client.chat.completions.create(..., stream=True))"
        )
    raise _unknown(stream)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _unknown(obj: object) -> UnknownStream:
    kind = type(obj)
    return UnknownStream(f"{ACCEPTS}; got {kind.__module__}.{kind.__qualname__}")


def _adapter_for(obj: object) -> Any:
    for cls in type(obj).__mro__:
        module = ADAPTERS.get(cls.__module__.partition(".")[0])
        if module is not None:
            # The adapter module has arelay(run, stream, items) and relay(run, stream, items).
            return importlib.import_module(module)
    return None


async def _arelay(run: Run, stream: Any) -> Any:
    if not hasattr(stream, "__aiter__"):  # a stream manager: `async with` gives the stream
        async with stream as entered:
            return await _arelay(run, entered)
    try:
        adapter = _adapter_for(stream)
        items = aiter(stream)
        if adapter is None:  # a plain async generator: its items say where they come from
            try:
                first = await anext(items)
            except StopAsyncIteration:
                raise _unknown(stream) from None
            adapter = _adapter_for(first)
            if adapter is None:
                raise _unknown(first)
            items = _chain_async(first, items)
        return await adapter.arelay(run, stream, items)
    finally:
        await _aclose(stream)


async def _chain_async(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if close is None:
        return
    result = close()
    if isinstance(result, Awaitable):
        await result


def _relay_sync(run: Run, stream: Any) -> Any:
    if not hasattr(stream, "__iter__"):
        with stream as entered:
            return _relay_sync(run, entered)
    try:
        adapter = _adapter_for(stream)
        items = iter(stream)
        if adapter is None:
            try:
                first = next(items)
            except StopIteration:
                raise _unknown(stream) from None
            adapter = _adapter_for(first)
            if adapter is None:
                raise _unknown(first)
            items = _chain(first, items)
        return adapter.relay(run, stream, items)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
