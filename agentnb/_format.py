"""One-line renderings of events that every front shares (console, notebook view, transcript)."""

from __future__ import annotations

import json

from ._events import ToolCall, ToolResult

__all__: list[str] = []  # shared by the fronts, not public API


def brief(value: object, limit: int = 120) -> str:
    """*value* on one line, at most *limit* characters (JSON unless it is a str)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_line(call: ToolCall, arg_limit: int = 60) -> str:
    """``→ name(key=value, ...)``"""
    args = ", ".join(f"{k}={brief(v, arg_limit)}" for k, v in call.args.items())
    return f"→ {call.name}({args})"


def result_line(result: ToolResult, limit: int = 120) -> str:
    """``← name: result``, or ``✗ name: error`` for a failed call."""
    mark = "✗" if result.is_error else "←"
    return f"{mark} {result.name}: {brief(result.result, limit)}"
