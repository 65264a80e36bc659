"""The Assembler every adapter drives: a call id used again, a stream that fails mid-call."""

from __future__ import annotations

import pytest

import agentnb
from agentnb._assemble import Assembler, interrupted
from agentnb.testing import capture_events


async def test_an_id_that_an_ended_call_had_starts_a_new_call() -> None:
    async def agent() -> None:
        assembler = Assembler(agentnb.current_run())
        for turn in ("1", "2"):  # a server that numbers calls per message: call_0 twice
            assembler.tool_start("call_0", "add")
            assembler.tool_delta("call_0", '{"a": ')
            assembler.tool_delta("call_0", turn + "}")
            assembler.tool_end("call_0")

    with capture_events() as events:
        await agentnb.run(agent)
    kinds = [e.kind for e in events[:-1]]
    assert kinds == [
        *["tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call_end", "tool_call"] * 2
    ]
    calls = [e for e in events if isinstance(e, agentnb.ToolCall)]
    assert [c.args for c in calls] == [{"a": 1}, {"a": 2}]


async def test_a_stream_that_fails_mid_call_ends_the_call_saying_why_and_no_whole_call() -> None:
    class ProviderDown(Exception):
        pass

    async def agent() -> None:
        assembler = Assembler(agentnb.current_run())
        with interrupted(assembler):
            assembler.message_start("m1")
            assembler.tool_start("c1", "search")
            assembler.tool_delta("c1", '{"q": "ti')
            raise ProviderDown("overloaded")

    with capture_events() as events, pytest.raises(ProviderDown):
        await agentnb.run(agent)
    assert [e.kind for e in events] == [
        "message_start",
        "tool_call_start",
        "tool_call_delta",
        "tool_call_end",
        "message_end",
        "error",
    ]
    end = events[3]
    assert isinstance(end, agentnb.ToolCallEnd)
    assert end.error == (
        "the stream ended before the arguments were whole (ProviderDown: overloaded)"
    )
    assert events[4].finish_reason == "error"  # type: ignore[attr-defined]


async def test_usage_refused_by_an_ended_run_is_not_counted() -> None:
    child_run: list[agentnb.Run] = []

    async def child() -> None:
        child_run.append(agentnb.current_run())

    async def parent() -> None:
        await agentnb.run(child)
        with pytest.raises(agentnb.RunClosed):
            child_run[0].emit(agentnb.Usage(1000, 1000))
        agentnb.emit(agentnb.Usage(1, 2))

    with capture_events() as events:
        await agentnb.run(parent)
    assert events[-1].usage == {"calls": 1, "input_tokens": 1, "output_tokens": 2}  # type: ignore[attr-defined]
