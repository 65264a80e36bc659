"""ConsoleSink: text inline, one line per status/tool/custom event, errors, nesting, colour."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from typing import Any

import pytest

import agentnb
from agentnb import ConsoleSink, Custom, Status, ToolCall, ToolResult
from agentnb.demo import counter, flaky, poet, researcher

DIM, RED, YELLOW, GREEN, RESET = "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[0m"
DONE_LINE = re.compile(r"done in \d+\.\d\d s")


async def mixed() -> int:
    agentnb.emit(Status("thinking hard"))
    agentnb.emit("Hello")
    agentnb.emit(", wor")
    agentnb.emit("ld")
    agentnb.emit(ToolCall("look_up", {"term": "sea", "n": 2}, call_id="c1"))
    agentnb.emit(ToolResult("look_up", {"hits": 1}, call_id="c1"))
    agentnb.emit(ToolResult("fetch", "refused", call_id="c2", is_error=True))
    agentnb.emit(Custom("progress", {"done": 1, "of": 2}))
    agentnb.emit("Second ")
    agentnb.emit("paragraph\n")
    agentnb.emit("third line")
    return 1


async def _console_output(
    agent: Callable[..., Any], *args: object, color: bool = False, **kwargs: Any
) -> str:
    out = io.StringIO()
    await agentnb.run(agent, *args, sink=ConsoleSink(out, color=color), **kwargs)
    return out.getvalue()


async def test_text_is_inline_and_other_events_get_their_own_lines() -> None:
    text = await _console_output(mixed)
    lines = text.split("\n")
    assert lines[-1] == ""  # the output ends with a newline
    lines = lines[:-1]
    assert len(lines) == 9, lines
    assert lines[0].endswith("thinking hard")
    assert lines[1] == "Hello, world"  # chunks joined exactly, no separators
    assert "look_up" in lines[2]
    assert "term=sea" in lines[2]
    assert "n=2" in lines[2]
    assert "look_up" in lines[3]
    assert '{"hits": 1}' in lines[3]
    assert "fetch" in lines[4]
    assert "refused" in lines[4]
    assert lines[4][0] != lines[3][0]  # an error result is marked differently
    assert "progress" in lines[5]
    assert '{"done": 1, "of": 2}' in lines[5]
    assert lines[6] == "Second paragraph"
    assert lines[7] == "third line"
    assert DONE_LINE.fullmatch(lines[8]), lines
    assert "\x1b" not in text


async def test_status_lines_carry_the_message_verbatim() -> None:
    async def agent() -> None:
        agentnb.emit(Status("one"))
        agentnb.emit(Status("two words"))

    lines = (await _console_output(agent)).splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" one")
    assert lines[1].endswith(" two words")
    assert DONE_LINE.fullmatch(lines[2])


async def test_long_tool_values_are_shortened_to_one_line() -> None:
    async def agent() -> None:
        agentnb.emit(ToolResult("read", "x" * 500 + "\nsecond line"))

    lines = (await _console_output(agent)).splitlines()
    assert len(lines) == 2
    assert len(lines[0]) < 200
    assert "xxxx" in lines[0]


async def test_an_error_shows_the_traceback_and_no_done_line() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="flaky failed as asked"):
        await agentnb.run(flaky, "please fail", speed=0, sink=ConsoleSink(out, color=False))
    text = out.getvalue()
    lines = text.splitlines()
    assert "Working on: please fail" in lines
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "RuntimeError: flaky failed as asked (input: 'please fail')"
    assert lines.index("Working on: please fail") < lines.index(
        "Traceback (most recent call last):"
    )
    assert not any(DONE_LINE.fullmatch(line) for line in lines)
    assert 'raise RuntimeError(f"flaky failed' in text  # the source line of the raise


async def test_a_cancelled_run_shows_its_reason() -> None:
    out = io.StringIO()
    started = asyncio.Event()

    async def waits() -> None:
        agentnb.emit("partial answer")
        started.set()
        await asyncio.Event().wait()

    run = agentnb.start(waits, sink=ConsoleSink(out, color=False))
    await started.wait()
    run.cancel("user pressed stop")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    lines = out.getvalue().splitlines()
    assert lines[0] == "partial answer"
    assert len(lines) == 2
    assert "cancelled" in lines[1]
    assert "user pressed stop" in lines[1]


async def test_child_runs_are_labelled_with_their_path() -> None:
    text = await _console_output(researcher, "why is the sea salty?", speed=0)
    lines = text.splitlines()
    child_status = [line for line in lines if "summarizing" in line]
    assert len(child_status) == 1
    assert child_status[0].startswith("[summarizer]")
    child_text = [line for line in lines if "In short:" in line]
    assert len(child_text) == 1
    assert child_text[0].startswith("[summarizer] In short: ")
    for parent_line in ("planning", "answering"):
        (line,) = (li for li in lines if li.endswith(parent_line))
        assert "summarizer" not in line
        assert not line.startswith("[")
    answer = [line for line in lines if line.startswith("Answer: ")]
    assert len(answer) == 1
    # One done line, the root run's, and it is the last line.
    assert [i for i, line in enumerate(lines) if DONE_LINE.fullmatch(line)] == [len(lines) - 1]


async def test_grandchild_label_is_its_path_below_the_root() -> None:
    async def inner() -> None:
        agentnb.emit(Status("deep work"))
        agentnb.emit("deep text")

    async def middle() -> None:
        agentnb.emit(Status("middle work"))
        await agentnb.run(inner)

    async def outer() -> None:
        agentnb.emit(Status("outer work"))
        await agentnb.run(middle)
        agentnb.emit("outer text")

    lines = (await _console_output(outer)).splitlines()
    assert lines[0].endswith("outer work")
    assert not lines[0].startswith("[")
    assert lines[1].startswith("[middle] ")
    assert lines[1].endswith("middle work")
    assert lines[2].startswith("[middle/inner] ")
    assert lines[2].endswith("deep work")
    assert lines[3] == "[middle/inner] deep text"
    assert lines[4] == "outer text"
    assert DONE_LINE.fullmatch(lines[5])
    assert len(lines) == 6


async def test_color_dims_status_lines_but_leaves_text_alone() -> None:
    topic = "the sea"
    out = io.StringIO()
    poem = await agentnb.run(poet, topic, speed=0, sink=ConsoleSink(out, color=True))
    text = out.getvalue()
    assert poem in text  # the streamed text has no escape codes inside it
    status = [line for line in text.splitlines() if "thinking about" in line]
    assert len(status) == 1
    assert status[0].startswith(DIM)
    assert status[0].endswith(RESET)
    tool = [line for line in text.splitlines() if "rhymes(" in line]
    assert len(tool) == 1
    assert tool[0].startswith(DIM)
    done = text.splitlines()[-1]
    assert "done in" in done
    assert done.startswith("\x1b[")
    for line in poem.splitlines():
        assert "\x1b" not in line


async def test_color_marks_errors_and_cancellations() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        await agentnb.run(flaky, "please fail", speed=0, sink=ConsoleSink(out, color=True))
    traceback_line = [line for line in out.getvalue().splitlines() if "Traceback" in line]
    assert traceback_line
    assert traceback_line[0].startswith(RED)


class _TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_color_by_default_follows_the_terminal_and_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = _TtyStringIO()
    await agentnb.run(counter, "2", speed=0, sink=ConsoleSink(tty))
    assert DIM in tty.getvalue()

    plain = io.StringIO()
    await agentnb.run(counter, "2", speed=0, sink=ConsoleSink(plain))
    assert "\x1b" not in plain.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    tty_no_color = _TtyStringIO()
    await agentnb.run(counter, "2", speed=0, sink=ConsoleSink(tty_no_color))
    assert "\x1b" not in tty_no_color.getvalue()
    assert tty_no_color.getvalue().splitlines()[:-1] == plain.getvalue().splitlines()[:-1]


async def test_default_file_is_stdout_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    sink = ConsoleSink(color=False)
    await agentnb.run(counter, "3", speed=0, sink=sink)
    captured = capsys.readouterr().out
    assert [line for line in captured.splitlines() if "progress" not in line][:3] == [
        "1 ",
        "2 ",
        "3 ",
    ]
    assert captured.count("progress") == 3


async def test_demo_agents_through_the_console() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, color=False)
    poem = await agentnb.run(poet, "the moon", speed=0, sink=sink)
    first = out.getvalue()
    assert poem in first
    assert poem.startswith("The moon ")

    total = await agentnb.run(counter, "4", speed=0, sink=sink)
    second = out.getvalue()[len(first) :]
    assert total == 4
    lines = second.splitlines()
    assert sum("progress" in line for line in lines) == 4
    assert '{"done": 4, "of": 4}' in second
    assert "4 " in second
    # The same sink reused for a second run prints that run's done line too.
    assert DONE_LINE.fullmatch(lines[-1])
    assert DONE_LINE.fullmatch(first.splitlines()[-1])

    answer = await agentnb.run(researcher, "why is the sky blue?", speed=0, sink=sink)
    third = out.getvalue()[len(first) + len(second) :]
    assert answer in third


def test_agent_text_never_drives_the_terminal() -> None:
    async def hostile(_: str) -> None:
        agentnb.emit("red\x1b[31m title\x1b]0;pwned\x07 csi\x9b2J bell\x07 over\rwrite\r")
        agentnb.emit("\nnext")  # the CR that ended the last chunk and this LF: one break
        agentnb.emit(agentnb.Status("\x1b[2Jcleared"))

    out = io.StringIO()
    agentnb.run_sync(hostile, "", sink=ConsoleSink(out, color=False))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "\x07" not in text
    assert "\r" not in text
    assert text.splitlines()[:3] == [
        "red\u241b[31m title\u241b]0;pwned\u2407 csi\ufffd2J bell\u2407 over",
        "write",
        "next",
    ]
    assert "… \u241b[2Jcleared" in text


async def streamed() -> None:
    agentnb.emit(agentnb.StepStart("plan"))
    agentnb.emit(agentnb.Reasoning("I should\nlook it "))
    agentnb.emit(agentnb.Reasoning("up.\r"))
    agentnb.emit(agentnb.Reasoning("\nthen answer"))
    agentnb.emit(agentnb.StepEnd("plan"))
    agentnb.emit(agentnb.ToolCallStart("look", "c1"))
    agentnb.emit(agentnb.ToolCallDelta("c1", '{"q": '))
    agentnb.emit(agentnb.ToolCallDelta("c1", '"sea"}'))
    agentnb.emit(agentnb.ToolCallEnd("c1"))
    agentnb.emit(ToolCall("look", {"q": "sea"}, call_id="c1"))
    agentnb.emit(ToolResult("look", "not allowed", call_id="c1", denied=True))
    agentnb.emit(agentnb.StateDelta([{"op": "replace", "path": "/n", "value": 2}]))
    agentnb.emit(agentnb.StateSnapshot({"n": 2}))
    agentnb.emit(agentnb.Raw("x", {"y": 1}))
    agentnb.emit(agentnb.MessageStart("m1"))
    agentnb.emit(agentnb.Usage(1200, 34, reasoning_tokens=10, cached_tokens=100, cost=0.0123))
    agentnb.emit(agentnb.Usage(5, 6))
    agentnb.emit(agentnb.TextChunk("The answer.", message_id="m1"))
    agentnb.emit(agentnb.MessageEnd("m1", "stop"))


async def test_reasoning_steps_state_and_usage_get_lines_of_their_own() -> None:
    lines = (await _console_output(streamed)).splitlines()
    assert DONE_LINE.fullmatch(lines[-2]), lines
    assert lines[:-2] + lines[-1:] == [
        "▸ plan",
        "┊ I should",  # each line of reasoning marked (the CR and its LF: one break)
        "┊ look it up.",
        "┊ then answer",
        "→ look(q=sea)",  # a streamed call: its whole line, once
        "⊘ look: not allowed",  # refused
        "state: replace /n = 2",
        'state: {"n": 2}',
        "The answer.",
        "usage: 2 model calls · 1,205 tokens in (100 cached) · 40 out (10 reasoning) · $0.0123",
    ]


async def test_color_dims_reasoning_and_the_usage_line() -> None:
    text = await _console_output(streamed, color=True)
    assert f"{DIM}┊ I should{RESET}\n{DIM}┊ look it {RESET}{DIM}up.{RESET}\n" in text
    assert text.endswith(f"{DIM}usage: 2 model calls · 1,205 tokens in (100 cached) · 40 out "
                         f"(10 reasoning) · $0.0123{RESET}\n")  # fmt: skip
    assert "The answer.\n" in text  # the answer itself is not dimmed


async def test_a_failed_run_ends_with_its_usage_and_a_child_reasons_under_its_label() -> None:
    async def child() -> None:
        agentnb.emit(agentnb.Reasoning("hmm\nyes"))
        agentnb.emit(agentnb.Usage(3, 4))

    async def parent() -> None:
        await agentnb.run(child)
        raise ValueError("boom")

    out = io.StringIO()
    with pytest.raises(ValueError):
        await agentnb.run(parent, sink=ConsoleSink(out, color=False))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["[child] ┊ hmm", "┊ yes"]
    assert lines[-2] == "ValueError: boom"
    assert lines[-1] == "usage: 1 model call · 3 tokens in · 4 out"


def test_agent_data_in_the_streamed_kinds_never_drives_the_terminal() -> None:
    bad = "a\x1b[31m\x9b2J\x07b\rc"

    async def hostile() -> None:
        agentnb.emit(agentnb.StepStart(bad))
        agentnb.emit(agentnb.Reasoning(bad))
        agentnb.emit(agentnb.StateSnapshot({bad: bad}))
        agentnb.emit(agentnb.StateDelta([{"op": "add", "path": bad, "value": bad}]))
        agentnb.emit(agentnb.Usage(1, 1, model=bad, provider=bad))

    out = io.StringIO()
    agentnb.run_sync(hostile, sink=ConsoleSink(out, color=False))
    text = out.getvalue()
    for control in ("\x1b", "\x9b", "\x07", "\r"):
        assert control not in text
    assert "┊ a\u241b[31m\ufffd2J\u2407b\n┊ c\n" in text
