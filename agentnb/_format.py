"""Renderings of events that every front shares (console, notebook view, transcript)."""

from __future__ import annotations

import json
import re

from ._events import ToolCall, ToolResult

__all__: list[str] = []  # shared by the fronts, not public API

LINE_END = re.compile(r"\r\n|\r|\n")
"""The line endings of Markdown, SSE and terminals: LF, CR and CRLF (U+2028 is not one)."""

# C0 controls but tab and line feed, and DEL: shown as their pictures (U+2400..U+2421).
CONTROL_PICTURES = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)} | {
    0x7F: "\u2421"
}
# A terminal also acts on C1 controls (U+009B is CSI in some): shown as U+FFFD there.
_TERMINAL = CONTROL_PICTURES | dict.fromkeys(range(128, 160), "�")


def split_lines(text: str) -> list[str]:
    """*text* split at every line ending (LF, CR, CRLF)."""
    return LINE_END.split(text)


def visible_controls(text: str, *, terminal: bool = False) -> str:
    """*text* with its line endings as LF and other control characters made visible.

    A terminal or a notebook's text renderer acts on ESC (colours, titles, links)
    and CR (overwriting a line); shown as their Unicode pictures, nothing is
    acted on. With *terminal*, C1 controls are replaced too.
    """
    return LINE_END.sub("\n", text).translate(_TERMINAL if terminal else CONTROL_PICTURES)


def brief(value: object, limit: int = 120) -> str:
    """*value* on one line, at most *limit* characters (JSON unless it is a str)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = LINE_END.sub(" ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_line(call: ToolCall, arg_limit: int = 60) -> str:
    """``→ name(key=value, ...)``"""
    args = ", ".join(f"{k}={brief(v, arg_limit)}" for k, v in call.args.items())
    return f"→ {LINE_END.sub(' ', call.name)}({args})"


def result_line(result: ToolResult, limit: int = 120) -> str:
    """``← name: result``, or ``✗ name: error`` for a failed call."""
    mark = "✗" if result.is_error else "←"
    return f"{mark} {LINE_END.sub(' ', result.name)}: {brief(result.result, limit)}"
