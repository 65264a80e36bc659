"""``ConsoleSink``: a run in a terminal. Text flows inline; status and tool lines are dimmed.

Reasoning flows like text, each of its lines marked ``┊`` (and dimmed in colour);
a streamed tool call shows once, as its whole ``→ name(args)`` line; steps and
state changes are one line each; the run's usage totals are the last line.
Message boundaries, per-call usage and raw native events are not shown.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

from ._events import (
    Answer,
    Ask,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    Reasoning,
    StateDelta,
    StateSnapshot,
    Status,
    StepStart,
    TextChunk,
    ToolCall,
    ToolResult,
)
from ._format import (
    answer_line,
    ask_line,
    brief,
    call_line,
    result_line,
    state_line,
    usage_line,
    visible_controls,
)

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["ConsoleSink"]

_DIM, _RED, _YELLOW, _GREEN, _RESET = "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[0m"
THINKING = "┊ "
"""What starts each line of the model's reasoning."""


class ConsoleSink:
    """Write a run's events to a terminal (or any text file).

    *file* defaults to ``sys.stdout`` at the time of each write. *color* is
    None for "if the file is a terminal and NO_COLOR is unset". Events of child
    runs are labelled with their path. Agent text never drives the terminal:
    its control characters (ESC, a lone CR) are shown as visible pictures, and
    its line endings are line feeds.
    """

    def __init__(self, file: TextIO | None = None, *, color: bool | None = None) -> None:
        self._file = file
        self._color = color
        self._mid_line = False  # the last thing written was text without a newline
        self._held = ""  # a CR that ended the last chunk: its LF may start the next one
        self._stream: tuple[str, tuple[str, ...]] | None = None  # (text or reasoning, path)
        self._root: tuple[str, ...] | None = None
        self._started: dict[str, float] = {}

    @property
    def file(self) -> TextIO:
        return self._file if self._file is not None else sys.stdout

    def _use_color(self) -> bool:
        if self._color is not None:
            return self._color
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty()) and "NO_COLOR" not in os.environ

    def _paint(self, text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if self._use_color() else text

    def _line(self, event: Event, text: str, style: str = _DIM) -> None:
        out = self.file
        if self._held:  # a CR that ended the text: it was a line break
            self._held = ""
            out.write("\n")
            self._mid_line = False
        if self._mid_line:
            out.write("\n")
            self._mid_line = False
        label = self._label(event)
        shown = visible_controls(f"{label}{text}", terminal=True)
        out.write(self._paint(shown, style) + "\n")
        self._stream = None

    def _label(self, event: Event) -> str:
        if self._root is None or event.path == self._root:
            return ""
        return "[" + "/".join(event.path[len(self._root) :] or event.path) + "] "

    def open(self, run: Run) -> None:
        self._root = run.path  # the run's own events are unlabelled, even if a child's come first

    def _flow(self, event: Event, text: str, kind: str) -> None:
        """Write streamed text (the run's, or its reasoning) where the last piece left off."""
        out = self.file
        reasoning = kind == "reasoning"
        if (kind, event.path) != self._stream:
            if self._mid_line or self._held:
                out.write("\n")
                self._held = ""
            self._mid_line = False
            label = visible_controls(self._label(event), terminal=True)
            if label:
                out.write(self._paint(label, _DIM))
            self._stream = (kind, event.path)
        # A CR at the end of one chunk and its LF at the start of the next would
        # be two line breaks: a chunk ending in CR leaves its line break for later.
        text = self._held + text
        self._held = "\r" if text.endswith("\r") else ""
        shown = visible_controls(text[:-1] if self._held else text, terminal=True)
        if not shown:
            return
        if reasoning:  # each line marked, the marker written when the line has something
            lines = shown.split("\n")
            marked = [
                (THINKING if i or not self._mid_line else "") + line if line else ""
                for i, line in enumerate(lines)
            ]
            out.write("\n".join(self._paint(line, _DIM) if line else line for line in marked))
        else:
            out.write(shown)
        self._mid_line = not shown.endswith("\n")

    def send(self, event: Event) -> None:
        if self._root is None:
            self._root = event.path
        self._started.setdefault(event.run_id, event.ts)
        if isinstance(event, TextChunk):
            self._flow(event, event.text, "text")
        elif isinstance(event, Reasoning):
            self._flow(event, event.text, "reasoning")
        elif isinstance(event, Status):
            self._line(event, f"… {event.message}")
        elif isinstance(event, ToolCall):
            self._line(event, call_line(event))
        elif isinstance(event, ToolResult):
            self._line(event, result_line(event))
        elif isinstance(event, StepStart):
            self._line(event, f"▸ {brief(event.name)}")
        elif isinstance(event, StateSnapshot | StateDelta):
            self._line(event, state_line(event))
        elif isinstance(event, Custom):
            self._line(event, f"• {event.name}: {brief(event.data)}")
        elif isinstance(event, Ask):
            self._line(event, ask_line(event))
        elif isinstance(event, Answer):
            self._line(event, answer_line(event))
        elif isinstance(event, Error):
            self._line(event, event.traceback.rstrip() or f"{event.type}: {event.message}", _RED)
        elif isinstance(event, Cancelled):
            self._line(event, "cancelled" + (f": {event.reason}" if event.reason else ""), _YELLOW)
        elif isinstance(event, Done) and event.path == self._root:
            took = event.ts - self._started.get(event.run_id, event.ts)
            self._line(event, f"done in {took:.2f} s", _GREEN if self._use_color() else _DIM)
        if isinstance(event, Done | Error | Cancelled) and event.path == self._root:
            used = usage_line(event.usage)
            if used:
                self._line(event, f"usage: {used}")
            self._root = None
            self._started.clear()
            self._stream = None
        self.file.flush()
