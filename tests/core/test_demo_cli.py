"""The demo agents and the ``python -m agentnb`` command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agentnb
from agentnb import Custom, Done, Error, Event, Status, TextChunk, ToolCall, ToolResult
from agentnb.demo import counter, flaky, poet, researcher, summarizer
from agentnb.testing import CapturedEvents, capture_events

DEMO_AGENTS = ("counter", "flaky", "poet", "researcher", "summarizer")


async def _capture(
    agent: Callable[..., Any] | str, *args: object, **kwargs: Any
) -> tuple[object, CapturedEvents]:
    with capture_events() as events:
        result = await agentnb.run(agent, *args, speed=0, **kwargs)
    return result, events


def _check_seqs(events: list[Event]) -> None:
    """Each run's events are numbered 0, 1, 2, ... and end with one terminal event."""
    by_run: dict[str, list[Event]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    for run_events in by_run.values():
        assert [e.seq for e in run_events] == list(range(len(run_events)))
        assert [e.terminal for e in run_events] == [False] * (len(run_events) - 1) + [True]


def _shape(events: list[Event]) -> list[tuple[object, ...]]:
    """What a run did, without the parts that differ per run (ids, times, call ids)."""
    shape: list[tuple[object, ...]] = []
    for e in events:
        payload = {k: v for k, v in e.payload().items() if k not in ("call_id", "traceback")}
        shape.append((e.kind, e.path, sorted(payload.items(), key=repr)))
    return shape


async def test_poet_emits_status_tool_call_result_text_and_done() -> None:
    poem, events = await _capture(poet, "the sea")
    assert isinstance(poem, str)
    kinds = events.kinds()
    assert kinds[:4] == ["status", "tool_call", "tool_result", "status"]
    assert set(kinds[4:-1]) == {"text"}
    assert kinds[-1] == "done"
    assert len(kinds) > 10  # streamed word by word
    call, result = events[1], events[2]
    assert isinstance(call, ToolCall)
    assert isinstance(result, ToolResult)
    assert result.call_id == call.call_id
    assert call.args == {"word": "sea"}
    assert events.text() == poem
    assert poem.startswith("The sea ")
    assert len(poem.splitlines()) == 4
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result == poem
    assert {e.path for e in events} == {("poet",)}
    _check_seqs(events)


async def test_researcher_runs_the_summarizer_as_a_child_run() -> None:
    answer, events = await _capture(researcher, "why is the sea salty?")
    assert isinstance(answer, str)
    child = [e for e in events if e.path == ("researcher", "summarizer")]
    parent = [e for e in events if e.path == ("researcher",)]
    assert len(child) + len(parent) == len(events)
    assert child
    assert child[-1].kind == "done"
    assert [e.kind for e in child].count("done") == 1
    assert {e.run_id for e in child} != {e.run_id for e in parent}
    assert events[-1].kind == "done"
    assert events[-1].path == ("researcher",)
    # The child ended before the parent went on answering.
    child_done = events.index(child[-1])
    answering = next(
        i for i, e in enumerate(events) if isinstance(e, Status) and e.message == "answering"
    )
    assert child_done < answering
    assert [e.kind for e in parent].count("tool_call") == 2
    assert [e.kind for e in parent].count("tool_result") == 2
    summary = events.text(("researcher", "summarizer"))
    assert summary.startswith("In short: ")
    assert answer.startswith("Answer: why is the sea salty?")
    assert events.text(("researcher",)).strip() == answer
    _check_seqs(events)


async def test_summarizer_alone() -> None:
    summary, events = await _capture(summarizer, "- one\n- two\n- three\n- four")
    assert summary == "In short: one; two; three."
    assert events.kinds()[0] == "status"
    assert events.text() == summary


async def test_counter_emits_custom_progress_events() -> None:
    total, events = await _capture(counter, "4")
    assert total == 4
    progress = [e for e in events if e.kind == "progress"]
    assert all(type(e) is Custom for e in progress)
    assert [e.data for e in progress] == [{"done": i, "of": 4} for i in range(1, 5)]  # type: ignore[attr-defined]
    assert events.text() == "1 2 3 4 "
    assert events[-1] == Done(
        4, run_id=events[0].run_id, seq=8, path=("counter",), ts=events[-1].ts
    )
    _check_seqs(events)


async def test_counter_refuses_a_non_number() -> None:
    with pytest.raises(ValueError, match="whole number"):
        await _capture(counter, "many")


async def test_flaky_fails_when_asked() -> None:
    with (
        capture_events() as events,
        pytest.raises(RuntimeError, match="flaky failed as asked") as info,
    ):
        await agentnb.run(flaky, "please fail", speed=0)
    error = events[-1]
    assert isinstance(error, Error)
    assert error.type == "RuntimeError"
    assert error.message == str(info.value)
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert error.traceback.rstrip().endswith(f"RuntimeError: {info.value}")
    assert "flaky" in error.traceback
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error
    assert events.text() == "Working on: please fail"
    _check_seqs(events)


async def test_flaky_finishes_when_not_asked_to_fail() -> None:
    result, events = await _capture(flaky, "ok")
    assert result == "finished: ok"
    assert events.kinds()[-1] == "done"
    assert "error" not in events.kinds()
    assert not any(isinstance(e, ToolResult) for e in events)


@pytest.mark.parametrize(
    ("agent", "text"),
    [
        (poet, "the sea"),
        (poet, "a quiet harbour at night"),
        (researcher, "why is the sky blue?"),
        (counter, "3"),
        (flaky, "ok"),
    ],
    ids=["poet", "poet-long", "researcher", "counter", "flaky"],
)
async def test_demo_output_is_deterministic(agent: Callable[..., Any], text: str) -> None:
    first_result, first = await _capture(agent, text)
    second_result, second = await _capture(agent, text)
    assert first_result == second_result
    assert first.kinds() == second.kinds()
    assert first.text() == second.text()
    assert _shape(first) == _shape(second)
    assert {e.run_id for e in first}.isdisjoint({e.run_id for e in second})


async def test_different_inputs_give_different_poems() -> None:
    sea, _ = await _capture(poet, "the sea")
    moon, _ = await _capture(poet, "the moon")
    assert sea != moon
    assert isinstance(moon, str)
    assert moon.startswith("The moon ")


async def test_demo_agents_are_registered() -> None:
    import agentnb.demo

    names = [info.name for info in agentnb.list_agents()]
    for name in DEMO_AGENTS:
        assert name in names
        assert agentnb.get_agent(name) is getattr(agentnb.demo, name)
    descriptions = {info.name: info.description for info in agentnb.list_agents()}
    assert all(descriptions[name] for name in DEMO_AGENTS)


async def test_demo_agents_run_by_name() -> None:
    result, events = await _capture("counter", "2")
    assert result == 2
    assert events[0].path == ("counter",)


# -- the command line -------------------------------------------------------------------------


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentnb", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=cwd,
        check=False,
    )


def _poem(topic: str) -> str:
    poem = agentnb.run_sync(poet, topic, speed=0)
    assert isinstance(poem, str)
    return poem


def test_cli_demo_poet_prints_the_poem() -> None:
    done = _cli("demo", "poet", "the", "sea", "--speed", "0")
    assert done.returncode == 0, done.stderr
    assert _poem("the sea") in done.stdout
    assert "rhymes" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("done in")
    assert done.stderr == ""


def test_cli_default_agent_is_poet() -> None:
    done = _cli("demo", "--speed", "0")
    assert done.returncode == 0, done.stderr
    assert _poem("the sea") in done.stdout


def test_cli_unknown_agent_exits_2_listing_the_known_ones() -> None:
    done = _cli("demo", "nosuch")
    assert done.returncode == 2
    assert "nosuch" in done.stderr
    for name in DEMO_AGENTS:
        assert name in done.stderr
    assert done.stdout == ""


def test_cli_flaky_exits_1_and_shows_the_traceback() -> None:
    done = _cli("demo", "flaky", "please", "fail", "--speed", "0")
    assert done.returncode == 1
    assert "Traceback (most recent call last):" in done.stdout
    assert "RuntimeError: flaky failed as asked (input: 'please fail')" in done.stdout
    assert "Working on: please fail" in done.stdout


def test_cli_flaky_ok_exits_0() -> None:
    done = _cli("demo", "flaky", "ok", "--speed", "0")
    assert done.returncode == 0, done.stderr
    assert "Working on: ok" in done.stdout


def test_cli_list_lists_every_demo_agent() -> None:
    done = _cli("demo", "--list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    listed = [line.split()[0] for line in lines if line.strip()]
    assert listed == sorted(DEMO_AGENTS)
    for line in lines:
        assert len(line.split(maxsplit=1)) == 2  # name and description


def test_cli_record_then_replay_prints_the_same(tmp_path: Path) -> None:
    recording = tmp_path / "researcher.jsonl"
    shown = _cli(
        "demo", "researcher", "why is the sea salty?", "--speed", "0", "--record", str(recording)
    )
    assert shown.returncode == 0, shown.stderr
    events = list(agentnb.read_events(recording))
    assert events[-1].kind == "done"
    assert any(e.path == ("researcher", "summarizer") for e in events)
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert "Answer: why is the sea salty?" in text

    replayed = _cli("replay", str(recording))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == shown.stdout  # the done line uses the recorded times too

    timed = _cli("replay", str(recording), "--timing", "--speed", "1000")
    assert timed.returncode == 0, timed.stderr
    assert timed.stdout == shown.stdout


def test_cli_replay_of_a_bad_file_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    done = _cli("replay", str(bad))
    assert done.returncode != 0
    assert "line 1" in done.stderr


def test_cli_without_a_command_is_a_usage_error() -> None:
    done = _cli()
    assert done.returncode == 2
    assert "usage" in done.stderr.lower()


def test_cli_demo_takes_options_between_the_agent_and_its_input() -> None:
    done = _cli("demo", "poet", "--speed", "0", "the", "moon")
    assert done.returncode == 0, done.stderr
    assert _poem("the moon") in done.stdout
    between = _cli("demo", "poet", "the", "--speed", "0", "moon")
    assert between.returncode == 0, between.stderr
    assert _poem("the moon") in between.stdout


def test_cli_demo_refuses_an_unknown_option_under_its_own_usage_line() -> None:
    done = _cli("demo", "poet", "--sped", "0", "the", "moon")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m agentnb demo ")
    assert "unrecognized arguments: --sped" in done.stderr
    assert done.stdout == ""
