"""``ConsoleSink``: a run in a terminal. Text flows inline; status and tool lines are dimmed."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from ._events import (
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
)
from ._format import brief, call_line, result_line, visible_controls

__all__ = ["ConsoleSink"]

_DIM, _RED, _YELLOW, _GREEN, _RESET = "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[0m"


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
        self._text_path: tuple[str, ...] | None = None
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
        self._text_path = None

    def _label(self, event: Event) -> str:
        if self._root is None or event.path == self._root:
            return ""
        return "[" + "/".join(event.path[len(self._root) :] or event.path) + "] "

    def send(self, event: Event) -> None:
        if self._root is None:
            self._root = event.path
        self._started.setdefault(event.run_id, event.ts)
        if isinstance(event, TextChunk):
            out = self.file
            if event.path != self._text_path:
                if self._mid_line or self._held:
                    out.write("\n")
                    self._held = ""
                label = visible_controls(self._label(event), terminal=True)
                if label:
                    out.write(self._paint(label, _DIM))
                self._text_path = event.path
            # A CR at the end of one chunk and its LF at the start of the next would
            # be two line breaks: a chunk ending in CR leaves its line break for later.
            text = self._held + event.text
            self._held = "\r" if text.endswith("\r") else ""
            shown = visible_controls(text[:-1] if self._held else text, terminal=True)
            out.write(shown)
            self._mid_line = not shown.endswith("\n") if shown else self._mid_line
        elif isinstance(event, Status):
            self._line(event, f"… {event.message}")
        elif isinstance(event, ToolCall):
            self._line(event, call_line(event))
        elif isinstance(event, ToolResult):
            self._line(event, result_line(event))
        elif isinstance(event, Custom):
            self._line(event, f"• {event.name}: {brief(event.data)}")
        elif isinstance(event, Error):
            self._line(event, event.traceback.rstrip() or f"{event.type}: {event.message}", _RED)
        elif isinstance(event, Cancelled):
            self._line(event, "cancelled" + (f": {event.reason}" if event.reason else ""), _YELLOW)
        elif isinstance(event, Done) and event.path == self._root:
            took = event.ts - self._started.get(event.run_id, event.ts)
            self._line(event, f"done in {took:.2f} s", _GREEN if self._use_color() else _DIM)
        if event.terminal and event.path == self._root:
            self._root = None
            self._started.clear()
            self._text_path = None
        self.file.flush()
