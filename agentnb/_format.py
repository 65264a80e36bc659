"""Renderings of events that every front shares (console, notebook view, transcript).

The server page (``server/static/page.js``) writes the same lines in JavaScript:
a change here is a change there.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from ._events import JSON, Answer, Ask, ToolCall, ToolResult
from ._events_stream import StateDelta, StateSnapshot

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
    """``← name: result``; ``✗ name: error`` for a failed call, ``⊘ name: why`` if refused."""
    mark = "⊘" if result.denied else "✗" if result.is_error else "←"
    return f"{mark} {LINE_END.sub(' ', result.name)}: {brief(result.result, limit)}"


def _count(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def dollars(cost: float) -> str:
    """``$1.23``, ``$0.0123``, or ``<$0.0001`` for less (but not nothing)."""
    if cost >= 1:
        return f"${cost:.2f}"
    shown = f"{cost:.4f}"
    return "<$0.0001" if cost > 0 and shown == "0.0000" else f"${shown}"


def usage_line(totals: Mapping[str, JSON] | None) -> str:
    """A run's usage totals on one line ('' for none), e.g.
    ``2 model calls · 1,234 tokens in (100 cached) · 567 out (120 reasoning) · $0.0123``.

    Only whole numbers of tokens and a finite cost are shown; anything else in
    *totals* (which may come from another machine) is left out.
    """
    if not isinstance(totals, Mapping):
        return ""
    parts = []
    calls = _count(totals.get("calls"))
    if calls:
        parts.append(f"{calls:,} model call{'' if calls == 1 else 's'}")
    tokens_in, cached = _count(totals.get("input_tokens")), _count(totals.get("cached_tokens"))
    if tokens_in is not None:
        parts.append(f"{tokens_in:,} tokens in" + (f" ({cached:,} cached)" if cached else ""))
    out, reasoning = _count(totals.get("output_tokens")), _count(totals.get("reasoning_tokens"))
    if out is not None:
        parts.append(f"{out:,} out" + (f" ({reasoning:,} reasoning)" if reasoning else ""))
    cost = totals.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        cost = None
    if cost is not None and math.isfinite(cost) and cost >= 0:
        parts.append(dollars(float(cost)))
    return " · ".join(parts)


def state_line(event: StateSnapshot | StateDelta, limit: int = 120) -> str:
    """``state: {...}`` for a snapshot, ``state: replace /count = 2; ...`` for a delta."""
    if isinstance(event, StateSnapshot):
        return brief(f"state: {brief(event.state, limit)}", limit)
    ops = []
    for op in event.patch:
        text = f"{op.get('op')} {op.get('path')}"
        if "from" in op:
            text += f" from {brief(op['from'], 40)}"
        if "value" in op:
            text += f" = {brief(op['value'], 40)}"
        ops.append(text)
    return brief("state: " + "; ".join(ops), limit)


def ask_line(question: Ask) -> str:
    """``? prompt [yes/no] (default: no)``: a question the agent asks."""
    choices = f" [{'/'.join(brief(c, 30) for c in question.choices)}]" if question.choices else ""
    default = f" (default: {brief(question.default, 30)})" if question.default is not None else ""
    return f"? {brief(question.prompt)}{choices}{default}"


def answer_line(answer: Answer) -> str:
    """``= value (by cell)``: the answer it got, and who gave it."""
    return f"= {brief(answer.value)} (by {answer.by})"
