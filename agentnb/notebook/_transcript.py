"""The final transcript of a run: what the saved notebook shows once the run has ended.

Pure functions of the events, so a notebook executed headless and one run in
JupyterLab leave the same outputs. Nothing that varies between runs (times, ids)
goes in. Agent text is Markdown and stays Markdown, but raw HTML in it is
neutralised (``<script>`` shows as text): outside code, ``<`` and ``&`` are
written as entities.
"""

from __future__ import annotations

import json
import re

from .._events import Cancelled, Error, Event, TextChunk, ToolCall, ToolResult

__all__ = ["Transcript", "escape_html_in_markdown"]

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_TOOL_TEXT_LIMIT = 160


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_inline(line: str) -> str:
    """Escape HTML in one line of Markdown, leaving code spans as they are."""
    out: list[str] = []
    i = 0
    while i < len(line):
        tick = line.find("`", i)
        if tick < 0:
            out.append(_escape(line[i:]))
            break
        out.append(_escape(line[i:tick]))
        run = len(line[tick:]) - len(line[tick:].lstrip("`"))
        closing = line.find("`" * run, tick + run)
        while closing >= 0 and line[closing + run : closing + run + 1] == "`":
            closing = line.find("`" * run, closing + run + 1)
        if closing < 0:  # no matching run: the backticks are literal text
            out.append(line[tick : tick + run])
            i = tick + run
            continue
        out.append(line[tick : closing + run])
        i = closing + run
    return "".join(out)


def escape_html_in_markdown(markdown: str) -> str:
    """Make *markdown* safe to render: no raw HTML outside code spans and fenced blocks."""
    lines = markdown.split("\n")
    fence: str | None = None
    for n, line in enumerate(lines):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2)
            else:
                lines[n] = _escape_inline(line)
        elif (
            match
            and match.group(2)[0] == fence[0]
            and len(match.group(2)) >= len(fence)
            and not line[match.end() :].strip()
        ):
            fence = None
    return "\n".join(lines)


def _code_span(text: str) -> str:
    """*text* as one Markdown code span, whatever backticks it holds."""
    text = text.replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _brief(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _TOOL_TEXT_LIMIT else text[: _TOOL_TEXT_LIMIT - 1] + "…"


class Transcript:
    """Accumulates a run's events into its final Markdown and plain-text forms.

    Text of the run itself flows as Markdown; a child run's text is set apart as
    a quote labelled with its name; tool calls and results become one-line code
    spans; an error shows its type and message (the live view and the cell's
    own error output have the traceback, whose file paths differ between
    machines); a cancelled run says so. Status and custom events are live-only.
    """

    def __init__(self) -> None:
        self._blocks: list[tuple[str, tuple[str, ...], list[str]]] = []  # (kind, path, parts)
        self._root: tuple[str, ...] | None = None

    def add(self, event: Event) -> None:
        if self._root is None:
            self._root = event.path
        if isinstance(event, TextChunk):
            if self._blocks and self._blocks[-1][0] == "text" and self._blocks[-1][1] == event.path:
                self._blocks[-1][2].append(event.text)
            else:
                self._blocks.append(("text", event.path, [event.text]))
        elif isinstance(event, ToolCall):
            args = ", ".join(f"{k}={_brief(v)}" for k, v in event.args.items())
            self._blocks.append(("tool", event.path, [f"→ {event.name}({args})"]))
        elif isinstance(event, ToolResult):
            mark = "✗" if event.is_error else "←"
            self._blocks.append(
                ("tool", event.path, [f"{mark} {event.name}: {_brief(event.result)}"])
            )
        elif isinstance(event, Error):
            self._blocks.append(("error", event.path, [event.type, event.message, event.traceback]))
        elif isinstance(event, Cancelled):
            self._blocks.append(("cancelled", event.path, [event.reason]))

    def _label(self, path: tuple[str, ...]) -> str:
        root = self._root or ()
        return "/".join(path[len(root) :] if path[: len(root)] == root else path)

    def text(self) -> str:
        """The run's own streamed text, exactly as emitted (no child runs, no tools)."""
        return "".join(
            "".join(parts)
            for kind, path, parts in self._blocks
            if kind == "text" and path == self._root
        )

    def plain(self) -> str:
        """Everything a reader should see, as plain text."""
        out: list[str] = []
        for kind, path, parts in self._blocks:
            child = path != self._root
            label = f"[{self._label(path)}] " if child else ""
            if kind == "text":
                body = "".join(parts)
                out.append(f"{label}{body}" if child else body)
            elif kind == "tool":
                out.append(f"\n{label}{parts[0]}\n")
            elif kind == "error":
                out.append(f"\n{label}{parts[0]}: {parts[1]}\n")
            else:
                out.append(f"\n{label}cancelled: {parts[0]}\n")
        return _tidy("".join(out))

    def markdown(self) -> str:
        """Everything a reader should see, as safe Markdown."""
        out: list[str] = []
        for kind, path, parts in self._blocks:
            child = path != self._root
            if kind == "text":
                body = escape_html_in_markdown("".join(parts))
                if child:
                    quoted = "\n".join("> " + line for line in body.split("\n"))
                    out.append(f"\n\n> **{_escape(self._label(path))}:**\n{quoted}\n\n")
                else:
                    out.append(body)
            elif kind == "tool":
                where = f"{_escape(self._label(path))} " if child else ""
                out.append(f"\n\n{where}{_code_span(parts[0])}\n\n")
            elif kind == "error":
                where = f"{_escape(self._label(path))}: " if child else ""
                out.append(f"\n\n{where}**{_escape(parts[0])}**: {_code_span(parts[1])}\n\n")
            else:
                out.append(f"\n\n*cancelled: {_escape(parts[0])}*\n\n")
        return _tidy("".join(out))


def _tidy(text: str) -> str:
    """Collapse runs of blank lines and trim the ends."""
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
