"""Offline, deterministic demo agents, paced like a real model.

Every agent takes its input text as its one argument, plus ``speed``:
1.0 is model-like pacing, 2.0 twice as fast, 0 no pauses at all (for tests).
The default comes from the ``AGENTNB_DEMO_SPEED`` environment variable, else 1.

* ``poet``: a status, a tool call and its result, then a short poem streamed word by word.
* ``researcher``: searches (tool calls), hands its notes to the ``summarizer``
  sub-agent (a nested run), then streams an answer.
* ``counter``: custom ``progress`` events, counting to its input (a number).
* ``flaky``: streams a little, then fails when its input contains "fail".
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import zlib

from ._events import Custom, Status, ToolCall, ToolResult
from ._registry import agent
from ._run import emit, run

__all__ = ["counter", "flaky", "poet", "researcher", "summarizer"]


def _speed(speed: float | None) -> float:
    if speed is not None:
        value = speed
    else:
        raw = os.environ.get("AGENTNB_DEMO_SPEED", "1")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"AGENTNB_DEMO_SPEED must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"speed must be >= 0, got {value}")
    return value


class _Pace:
    """Deterministic model-like delays: the same input gives the same rhythm."""

    def __init__(self, seed_text: str, speed: float | None) -> None:
        self.speed = _speed(speed)
        self.rng = random.Random(zlib.crc32(seed_text.encode()))

    async def think(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed if self.speed else 0)

    async def token(self) -> None:
        await self.think(self.rng.uniform(0.02, 0.07))


def _tokens(text: str) -> list[str]:
    """Split text into model-like tokens: words with their leading space, and newlines."""
    return re.findall(r"\s*\S+|\n", text)


async def _stream_text(text: str, pace: _Pace) -> None:
    for token in _tokens(text):
        emit(token)
        await pace.token()


_IMAGES = ["light", "salt", "stone", "wind", "glass", "rain", "tide", "ember", "moss", "dusk"]
_VERBS = ["keeps", "remembers", "unfolds", "carries", "whispers", "gathers", "forgets", "holds"]


def _poem(topic: str, rng: random.Random) -> str:
    topic = topic.strip() or "the sea"
    images = rng.sample(_IMAGES, 4)
    verbs = rng.sample(_VERBS, 4)
    return (
        f"{topic.capitalize()} {verbs[0]} the {images[0]} of morning,\n"
        f"and {verbs[1]} the {images[1]} we left behind;\n"
        f"a {images[2]} that {verbs[2]} without warning,\n"
        f"a {images[3]} that {verbs[3]} what we find."
    )


@agent
async def poet(topic: str = "the sea", *, speed: float | None = None) -> str:
    """Writes four lines about a topic, word by word."""
    pace = _Pace(topic, speed)
    emit(Status(f"thinking about {topic.strip() or 'the sea'}"))
    await pace.think(0.4)
    word = (topic.split() or ["sea"])[-1]
    call = ToolCall("rhymes", {"word": word})
    emit(call)
    await pace.think(0.3)
    rhymes = sorted({f"{word}{suffix}" for suffix in ("-light", "-song", "-deep")})
    emit(ToolResult("rhymes", rhymes, call_id=call.call_id))
    emit(Status("writing"))
    poem = _poem(topic, pace.rng)
    await _stream_text(poem, pace)
    return poem


_SOURCES = ["encyclopedia", "field notes", "a travel diary", "a ship's log", "an old atlas"]


@agent
async def summarizer(notes: str, *, speed: float | None = None) -> str:
    """Condenses notes into one sentence (the researcher's sub-agent)."""
    pace = _Pace(notes, speed)
    emit(Status("summarizing"))
    await pace.think(0.2)
    points = [line.strip("- ").strip() for line in notes.splitlines() if line.strip()]
    summary = "In short: " + "; ".join(points[:3]) + "."
    await _stream_text(summary, pace)
    return summary


@agent
async def researcher(question: str = "why is the sea salty?", *, speed: float | None = None) -> str:
    """Searches, asks the summarizer sub-agent, then answers."""
    pace = _Pace(question, speed)
    emit(Status("planning"))
    await pace.think(0.3)
    notes: list[str] = []
    for source in pace.rng.sample(_SOURCES, 2):
        call = ToolCall("search", {"query": question, "source": source})
        emit(call)
        await pace.think(0.3)
        found = f"{source} says {question.strip().rstrip('?')} has a long story"
        emit(ToolResult("search", {"source": source, "snippet": found}, call_id=call.call_id))
        notes.append(f"- {found}")
    summary = await run(summarizer, "\n".join(notes), speed=speed)
    emit(Status("answering"))
    answer = f"\n\nAnswer: {question.strip()} {summary.removeprefix('In short: ')}"
    await _stream_text(answer, pace)
    return answer.strip()


@agent
async def counter(count: str = "5", *, speed: float | None = None) -> int:
    """Counts to a number, with custom 'progress' events."""
    try:
        total = int(str(count).strip() or "5")
    except ValueError:
        raise ValueError(f"counter counts to a whole number, got {count!r}") from None
    pace = _Pace(str(total), speed)
    for i in range(1, total + 1):
        emit(Custom("progress", {"done": i, "of": total}))
        emit(f"{i} ")
        await pace.think(0.1)
    return total


@agent
async def flaky(task: str = "please fail", *, speed: float | None = None) -> str:
    """Starts working, then fails if the input contains "fail"."""
    pace = _Pace(task, speed)
    emit(Status("working"))
    await _stream_text(f"Working on: {task.strip()}", pace)
    if "fail" in task.lower():
        call = ToolCall("fetch", {"url": "offline://nowhere"})
        emit(call)
        await pace.think(0.2)
        emit(ToolResult("fetch", "connection refused", call_id=call.call_id, is_error=True))
        raise RuntimeError(f"flaky failed as asked (input: {task.strip()!r})")
    return f"finished: {task.strip()}"
