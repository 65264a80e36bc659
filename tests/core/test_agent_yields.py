"""What a generator agent may yield: text, events, and nothing (None or "") without failing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import agentnb
from tests.helpers import Recorder, texts


async def openai_style(topic: str) -> AsyncIterator[str | None]:
    """The last chunk of an OpenAI-style stream has no text: None, and empty deltas."""
    yield f"about {topic}"
    yield ""
    yield None
    yield "!"
    yield None


def sync_style(topic: str) -> Iterator[str | None]:
    yield None
    yield topic
    yield ""


async def yields_a_number(topic: str) -> AsyncIterator[object]:
    yield "fine "
    yield 42


@pytest.mark.parametrize(
    ("agent", "chunks"), [(openai_style, ["about sea", "!"]), (sync_style, ["sea"])]
)
async def test_none_and_empty_chunks_are_skipped(
    agent: Callable[..., Any], chunks: list[str]
) -> None:
    recorder = Recorder()
    result = await agentnb.run(agent, "sea", sink=recorder)
    assert result == "".join(chunks)
    assert texts(recorder.events) == chunks  # no empty text event
    assert recorder.kinds() == ["text"] * len(chunks) + ["done"]


async def test_another_type_is_refused_in_words_about_yield() -> None:
    recorder = Recorder()
    with pytest.raises(agentnb.InvalidEvent) as info:
        await agentnb.run(yields_a_number, "sea", sink=recorder)
    message = str(info.value)
    assert "yielded a int (42)" in message
    assert "yield str(value)" in message
    assert "emit()" not in message
    assert recorder.kinds() == ["text", "error"]  # what was yielded before is kept
    assert texts(recorder.events) == ["fine "]
