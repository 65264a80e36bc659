"""An agent that streams every new kind a model SDK produces, slowly enough to watch.

``thinker`` thinks (reasoning, folded in the views), calls a tool whose arguments
stream in fragments, reports usage twice and answers, each part in a step of its
own; between parts it pauses *pause* seconds. The browser and kernel tests run it
and compare what the views show with the constants here.
"""

from __future__ import annotations

import asyncio
import json

import agentnb
from agentnb import (
    MessageEnd,
    MessageStart,
    Reasoning,
    StateSnapshot,
    StepEnd,
    StepStart,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)

__all__ = ["ANSWER", "ARGS", "REASONING", "USAGES", "thinker"]

REASONING = ["The user asks about ", "the weather in Paris.\n", "I should call ", "the tool."]
ARGS = ['{"city"', ': "Pa', 'ris", "unit', 's": "metric', '"}']
ANSWER = ["It is ", "18 °C ", "in Paris."]
USAGES = [
    Usage(1200, 45, model="m-1", provider="p", reasoning_tokens=30, cached_tokens=200, cost=0.0042),
    Usage(1500, 60, model="m-1", provider="p", cost=0.0051),
]
STATE = {"city": "Paris"}


async def thinker(pause: str = "0.3") -> str:
    """Thinks, calls a tool with streamed arguments, answers; usage and steps throughout."""
    wait = float(pause or "0.3")
    agentnb.emit(StepStart("think", "s1"))
    agentnb.emit(MessageStart("m1"))
    for piece in REASONING:
        agentnb.emit(Reasoning(piece, "m1"))
        await asyncio.sleep(wait)
    agentnb.emit(StepEnd("think", "s1"))
    agentnb.emit(StepStart("act", "s2"))
    agentnb.emit(ToolCallStart("weather", "c1", "m1"))
    for piece in ARGS:
        agentnb.emit(ToolCallDelta("c1", piece))
        await asyncio.sleep(wait)
    agentnb.emit(ToolCallEnd("c1"))
    agentnb.emit(ToolCall("weather", json.loads("".join(ARGS)), call_id="c1"))
    agentnb.emit(ToolResult("weather", {"temp": 18}, call_id="c1"))
    agentnb.emit(MessageEnd("m1", "tool_calls"))
    agentnb.emit(USAGES[0])
    agentnb.emit(StateSnapshot(STATE))
    await asyncio.sleep(wait)
    agentnb.emit(StepEnd("act", "s2"))
    agentnb.emit(StepStart("answer", "s3"))
    for piece in ANSWER:
        agentnb.emit(piece)
        await asyncio.sleep(wait)
    agentnb.emit(USAGES[1])
    agentnb.emit(StepEnd("answer", "s3"))
    return "".join(ANSWER)
