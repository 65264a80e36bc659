"""The final transcript of a run: what the saved notebook shows once the run has ended.

Pure functions of the events, so a notebook executed headless and one run in
JupyterLab leave the same outputs. Nothing that varies between runs (times, ids)
goes in. Agent text is Markdown and stays Markdown, but raw HTML in it is
neutralised (``<script>`` shows as text): outside code, ``<`` and ``&`` are
written as entities.
"""

from __future__ import annotations

import re

from .._events import Cancelled, Done, Error, Event, TextChunk, ToolCall, ToolResult
from .._format import brief, call_line, result_line

__all__ = ["Transcript", "escape_html_in_markdown"]

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s{0,3}([-*+]|\d{1,9}[.)])(\s|$)")
_LIMIT = 160  # characters of a tool's arguments or result in the transcript


def _escape(text: str) -> str:
    # `<` starts every HTML tag; `&` is escaped so the agent's own "&lt;" shows as typed.
    # `>` stays: it is harmless alone, and it makes Markdown block quotes.
    return text.replace("&", "&amp;").replace("<", "&lt;")


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
    """Make *markdown* safe to render: no raw HTML outside code spans and code blocks.

    Fenced blocks and code spans are left as they are. So is an indented code
    block, when that is certain: it follows a blank line (or more code) and does
    not sit under a list, where indentation may just continue a list item. In
    doubt a line is escaped like text: safe, and at worst shows ``&lt;``.
    """
    lines = markdown.split("\n")
    fenced = _fenced(lines)
    state = "blank"  # what the previous line was: blank | text | list | code
    for n, line in enumerate(lines):
        if fenced[n]:
            state = "blank"
        elif not line.strip():
            state = state if state in ("list", "code") else "blank"
        elif line.startswith(("    ", "\t")) and state in ("blank", "code"):
            state = "code"  # an indented code block: Markdown shows it as typed
        else:
            lines[n] = _escape_inline(line)
            in_list = _LIST_ITEM.match(line) or (state == "list" and line[:1].isspace())
            state = "list" if in_list else "text"
    return "\n".join(lines)


def _fenced(lines: list[str]) -> list[bool]:
    """For each line: whether it belongs to a fenced code block (fences included)."""
    mask: list[bool] = []
    fence: str | None = None
    for line in lines:
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2)
            mask.append(fence is not None)
            continue
        mask.append(True)
        if (
            match is not None
            and match.group(2)[0] == fence[0]
            and len(match.group(2)) >= len(fence)
            and not line[match.end() :].strip()
        ):
            fence = None
    return mask


def keep_line_breaks(markdown: str) -> str:
    """End each line that another line follows with a Markdown hard break (two spaces).

    Agents write poems and lists of lines with single line breaks; Markdown
    would run them into one paragraph (the live view keeps them). Code blocks
    are left as they are.
    """
    lines = markdown.split("\n")
    fenced = _fenced(lines)
    for n in range(len(lines) - 1):
        line = lines[n]
        if fenced[n] or not line.strip() or not lines[n + 1].strip():
            continue
        if not line.endswith(("  ", "\\")):
            lines[n] = line + "  "
    return "\n".join(lines)


def _code_span(text: str) -> str:
    """*text* as one Markdown code span, whatever backticks it holds."""
    text = text.replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


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
            self._blocks.append(("tool", event.path, [call_line(event, _LIMIT)]))
        elif isinstance(event, ToolResult):
            self._blocks.append(("tool", event.path, [result_line(event, _LIMIT)]))
        elif isinstance(event, Error):
            self._blocks.append(("error", event.path, [event.type, event.message, event.traceback]))
        elif isinstance(event, Cancelled):
            self._blocks.append(("cancelled", event.path, [event.reason]))
        elif isinstance(event, Done) and event.path == self._root and not self.text():
            # The agent streamed no text: its value is the answer.
            if isinstance(event.result, str):
                self._blocks.append(("text", event.path, [event.result]))
            elif event.result is not None:
                self._blocks.append(("result", event.path, [brief(event.result, _LIMIT)]))

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
        """Everything a reader should see, as plain text.

        The run's own text is kept byte for byte: with only text, this is
        exactly what the agent emitted. Other items are lines of their own.
        """
        out = _Joiner()
        for kind, path, parts in self._blocks:
            child = path != self._root
            label = f"[{self._label(path)}] " if child else ""
            if kind == "text":
                body = "".join(parts)
                if child:
                    out.line(f"{label}{body.rstrip(chr(10))}")
                else:
                    out.text(body)
            elif kind == "tool":
                out.line(f"{label}{parts[0]}")
            elif kind == "result":
                out.line(f"result: {parts[0]}")
            elif kind == "error":
                out.line(f"{label}{parts[0]}: {parts[1]}")
            else:
                out.line(f"{label}cancelled" + (f": {parts[0]}" if parts[0] else ""))
        return out.value()

    def markdown(self) -> str:
        """Everything a reader should see, as safe Markdown (agent text otherwise as is)."""
        out = _Joiner(blank=True)
        for kind, path, parts in self._blocks:
            child = path != self._root
            if kind == "text":
                body = keep_line_breaks(escape_html_in_markdown("".join(parts)))
                if child:
                    quoted = "\n".join("> " + line for line in body.rstrip("\n").split("\n"))
                    out.line(f"> **{_escape(self._label(path))}:**\n{quoted}")
                else:
                    out.text(body)
            elif kind == "tool":
                where = f"{_escape(self._label(path))} " if child else ""
                out.line(f"{where}{_code_span(parts[0])}")
            elif kind == "result":
                out.line(f"result: {_code_span(parts[0])}")
            elif kind == "error":
                where = f"{_escape(self._label(path))}: " if child else ""
                out.line(f"{where}**{_escape(parts[0])}**: {_code_span(parts[1])}")
            else:
                out.line("*cancelled" + (f": {_escape(parts[0])}*" if parts[0] else "*"))
        return out.value()


class _Joiner:
    """Joins the agent's text (untouched) and our own lines (each set apart)."""

    def __init__(self, *, blank: bool = False) -> None:
        self._parts: list[str] = []
        self._gap = "\n\n" if blank else "\n"  # what must separate a line from its neighbours
        self._after_line = False

    def _ends_with(self) -> str:
        return "".join(self._parts[-2:])[-2:]

    def text(self, body: str) -> None:
        if self._after_line and body:
            self._parts.append(self._gap[1:] if self._gap == "\n\n" else "")
        self._parts.append(body)
        self._after_line = False

    def line(self, line: str) -> None:
        if self._parts:
            tail = self._ends_with()
            if not tail.endswith("\n"):
                self._parts.append(self._gap)
            elif self._gap == "\n\n" and not tail.endswith("\n\n"):
                self._parts.append("\n")
        self._parts.append(line + "\n")
        self._after_line = True

    def value(self) -> str:
        text = "".join(self._parts)
        return text[:-1] if self._after_line else text  # no newline of ours at the very end
