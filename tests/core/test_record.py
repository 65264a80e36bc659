"""JsonlRecorder, read_events and replay: a recording is the run's events, exactly."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from pathlib import Path

import pytest

import agentnb
from agentnb import (
    Custom,
    Event,
    InvalidEvent,
    JsonlRecorder,
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
    read_events,
    replay,
)
from agentnb.demo import researcher
from agentnb.testing import CapturedEvents, capture_events


async def awkward() -> str:
    """An agent whose events stress the line format."""
    agentnb.emit(Status("line\nbreaks\r\nand \u2028 separators \u2029"))
    agentnb.emit("text with \x00 NUL, emoji 🌊 and \u2028")
    call = ToolCall("look_up", {"q": "a\nb", "nested": {"list": [1, 2.5, None, True]}})
    agentnb.emit(call)
    agentnb.emit(ToolResult("look_up", {"big": 10**30, "neg": -0.0}, call_id=call.call_id))
    agentnb.emit(Custom("progress", {"done": 1, "of": 2}))
    await agentnb.run(child)
    return "fin\u2028ished"


async def child() -> None:
    agentnb.emit("child says hi")


def _lines(text: str) -> list[str]:
    """Split on newline only (str.splitlines would also split on U+2028)."""
    assert text.endswith("\n")
    return text[:-1].split("\n")


async def test_recorder_to_a_path_writes_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("stale content\n")  # truncated at the first event
    recorder = JsonlRecorder(path)
    with capture_events() as events:
        result = await agentnb.run(awkward, sink=recorder)
    assert result == "fin\u2028ished"
    assert len(events) == 8  # 5 of awkward, the child's text and done, awkward's done
    lines = _lines(path.read_text(encoding="utf-8"))
    assert lines == [e.to_json() for e in events]
    assert [Event.from_json(line) for line in lines] == list(events)
    assert recorder.count == len(events)
    assert {tuple(json.loads(line)["path"]) for line in lines} == {
        ("awkward",),
        ("awkward", "child"),
    }


async def test_recorder_to_an_open_file_writes_and_flushes_but_does_not_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        with capture_events() as events:
            await agentnb.run(awkward, sink=JsonlRecorder(fh))
        assert not fh.closed
        # Flushed: another reader sees every line before we close our handle.
        assert _lines(path.read_text(encoding="utf-8")) == [e.to_json() for e in events]
        fh.write("")  # still writable

    buffer = io.StringIO()
    with capture_events() as events:
        await agentnb.run(awkward, sink=JsonlRecorder(buffer))
    assert not buffer.closed
    assert _lines(buffer.getvalue()) == [e.to_json() for e in events]


async def test_a_recorder_reused_for_a_second_run_appends(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    recorder = JsonlRecorder(path)
    with capture_events() as events:
        await agentnb.run(child, sink=recorder)
        await agentnb.run(awkward, sink=recorder)
    lines = _lines(path.read_text(encoding="utf-8"))
    assert lines == [e.to_json() for e in events]
    assert [json.loads(line)["kind"] for line in lines][:2] == ["text", "done"]
    assert len({e.run_id for e in events}) == 3


async def test_read_events_reads_a_recording_back(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with capture_events() as events:
        await agentnb.run(awkward, sink=JsonlRecorder(path))
    assert list(read_events(path)) == list(events)
    assert list(read_events(str(path))) == list(events)
    with path.open(encoding="utf-8") as fh:
        assert list(read_events(fh)) == list(events)
    assert list(read_events(io.StringIO(path.read_text(encoding="utf-8")))) == list(events)


def test_read_events_skips_blank_lines(tmp_path: Path) -> None:
    events = [
        TextChunk("a", run_id="r", seq=0, path=("x",), ts=1.0),
        Status("b", run_id="r", seq=1, path=("x",), ts=2.0),
    ]
    path = tmp_path / "gaps.jsonl"
    path.write_text(f"\n{events[0].to_json()}\n   \n\n{events[1].to_json()}\n\n", encoding="utf-8")
    assert list(read_events(path)) == events


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('{"kind": "text"}\n', 1),
        ("{TEXT}\n\nnot json at all\n", 3),
        ("{TEXT}\n{TEXT}\n[1, 2]\n", 3),
        ("{TEXT}\n" + '{"kind":"text","run_id":"r","seq":0,"path":[],"ts":0}\n', 2),
    ],
    ids=["missing fields", "not json", "not an object", "missing payload"],
)
def test_a_bad_line_names_its_line_number(tmp_path: Path, content: str, line: int) -> None:
    good = TextChunk("ok", run_id="r", seq=0, path=("x",), ts=1.0).to_json()
    path = tmp_path / "bad.jsonl"
    path.write_text(content.replace("{TEXT}", good), encoding="utf-8")
    with pytest.raises(InvalidEvent, match=rf"^line {line}: "):
        list(read_events(path))


def test_read_events_yields_the_good_lines_before_a_bad_one(tmp_path: Path) -> None:
    good = TextChunk("ok", run_id="r", seq=0, path=("x",), ts=1.0)
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good.to_json()}\nbroken\n", encoding="utf-8")
    reader = read_events(path)
    assert next(reader) == good
    with pytest.raises(InvalidEvent, match="line 2"):
        next(reader)


async def test_replay_gives_identical_events(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with capture_events() as events:
        await agentnb.run(researcher, "why is the sea salty?", speed=0, sink=JsonlRecorder(path))
    assert any(e.path == ("researcher", "summarizer") for e in events)

    from_path = CapturedEvents()
    assert await replay(path, from_path) == len(events)
    assert from_path == events

    from_file = CapturedEvents()
    with path.open(encoding="utf-8") as fh:
        assert await replay(fh, from_file) == len(events)
    assert from_file == events

    from_list = CapturedEvents()
    assert await replay(list(events), from_list) == len(events)
    assert from_list == events


async def test_replay_feeds_any_sink_shape_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with capture_events() as events:
        await agentnb.run(awkward, sink=JsonlRecorder(path))

    class AsyncSink:
        def __init__(self) -> None:
            self.events: list[Event] = []
            self.closed = 0

        async def send(self, event: Event) -> None:
            await asyncio.sleep(0)
            self.events.append(event)

        async def close(self) -> None:
            self.closed += 1

    sink = AsyncSink()
    await replay(path, sink)
    assert sink.events == list(events)
    assert sink.closed == 1

    plain: list[Event] = []
    await replay(path, plain.append)
    assert plain == list(events)


async def test_replay_refuses_a_negative_speed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed"):
        await replay([], CapturedEvents(), timing=True, speed=-1)


async def test_replay_refuses_an_invalid_sink() -> None:
    with pytest.raises(agentnb.AgentnbError, match="not a sink"):
        await replay([], 42)  # type: ignore[arg-type]


def _spaced_recording(path: Path) -> list[Event]:
    """Four events whose timestamps are 0, 0.2 and 0.2 seconds apart."""
    start = 1_764_000_000.0
    events: list[Event] = [
        Status("a", run_id="r", seq=0, path=("x",), ts=start),
        TextChunk("b", run_id="r", seq=1, path=("x",), ts=start),
        TextChunk("c", run_id="r", seq=2, path=("x",), ts=start + 0.2),
        TextChunk("d", run_id="r", seq=3, path=("x",), ts=start + 0.4),
    ]
    path.write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    return events


async def _timed_replay(path: Path, **options: object) -> tuple[float, list[float]]:
    arrivals: list[float] = []

    def sink(event: Event) -> None:
        arrivals.append(time.monotonic())

    begin = time.monotonic()
    await replay(path, sink, **options)  # type: ignore[arg-type]
    total = time.monotonic() - begin
    return total, [b - a for a, b in itertools.pairwise(arrivals)]


async def test_replay_with_timing_keeps_the_spacing(tmp_path: Path) -> None:
    path = tmp_path / "spaced.jsonl"
    events = _spaced_recording(path)

    timed_total, gaps = await _timed_replay(path, timing=True)
    assert timed_total >= 0.35
    assert gaps[1] >= 0.18
    assert gaps[2] >= 0.18
    assert gaps[0] < min(gaps[1], gaps[2])  # no pause where the recording had none

    fast_total, _ = await _timed_replay(path, timing=False)
    assert fast_total < timed_total / 4

    double_total, double_gaps = await _timed_replay(path, timing=True, speed=4.0)
    assert double_total >= 0.08
    assert double_total < timed_total
    assert double_gaps[1] >= 0.045

    # The stamps are the recorded ones, not replay times.
    replayed = CapturedEvents()
    await replay(path, replayed, timing=True, speed=50.0)
    assert replayed == events


async def test_a_failed_run_is_recorded_up_to_its_error(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"

    async def fails() -> None:
        agentnb.emit("about to fail")
        raise LookupError("missing key")

    with capture_events() as events, pytest.raises(LookupError):
        await agentnb.run(fails, sink=JsonlRecorder(path))
    recorded = list(read_events(path))
    assert recorded == list(events)
    assert [e.kind for e in recorded] == ["text", "error"]
    assert "LookupError: missing key" in recorded[-1].traceback  # type: ignore[attr-defined]
