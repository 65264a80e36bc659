"""``agentnb.relay`` refuses what it does not know, clearly, and closes what it was given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import agentnb
from agentnb.testing import capture_events


def test_relay_outside_a_run_says_so_before_touching_the_stream() -> None:
    touched = []

    def items() -> Iterator[int]:
        touched.append(True)
        yield 1

    with pytest.raises(agentnb.NoActiveRun):
        agentnb.relay(items())
    assert touched == []


@pytest.mark.parametrize("value", [[1, 2], "text", b"bytes", {"a": 1}, 42, None])
async def test_relay_of_a_value_that_is_no_stream_lists_what_it_accepts(value: object) -> None:
    async def agent() -> None:
        agentnb.relay(value)

    with pytest.raises(agentnb.UnknownStream) as caught:
        await agentnb.run(agent)
    message = str(caught.value)
    for accepted in ("OpenAI", "Anthropic", "LiteLLM", "LangChain"):
        assert accepted in message
    assert isinstance(caught.value, TypeError)


async def test_relay_of_a_coroutine_says_to_await_the_call_and_closes_it() -> None:
    async def create() -> None:
        pass

    async def agent() -> None:
        agentnb.relay(create())  # forgot the await: no "never awaited" warning either

    with pytest.raises(agentnb.UnknownStream, match="await the SDK call first"):
        await agentnb.run(agent)


async def test_an_async_generator_of_unknown_items_is_refused_and_closed() -> None:
    closed = []

    async def items() -> AsyncIterator[dict[str, int]]:
        try:
            yield {"n": 1}
            yield {"n": 2}
        finally:
            closed.append(True)

    async def agent() -> None:
        await agentnb.relay(items())

    with capture_events() as events, pytest.raises(agentnb.UnknownStream, match=r"builtins\.dict"):
        await agentnb.run(agent)
    assert closed == [True]
    assert events.kinds() == ["error"]  # nothing half-relayed


def test_a_sync_generator_of_unknown_items_is_refused_and_closed() -> None:
    closed = []

    def items() -> Iterator[int]:
        try:
            yield 1
        finally:
            closed.append(True)

    def agent() -> None:
        agentnb.relay(items())

    with pytest.raises(agentnb.UnknownStream, match=r"builtins\.int"):
        agentnb.run_sync(agent)
    assert closed == [True]


async def test_an_empty_stream_is_refused() -> None:
    async def nothing() -> AsyncIterator[int]:
        return
        yield

    async def agent() -> None:
        await agentnb.relay(nothing())

    with pytest.raises(agentnb.UnknownStream):
        await agentnb.run(agent)
