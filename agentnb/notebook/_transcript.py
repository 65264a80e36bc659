"""The final transcript of a run: what the saved notebook shows once the run has ended.

Pure functions of the events, so a notebook executed headless and one run in
JupyterLab leave the same outputs. Nothing that varies between runs (times, ids)
goes in. Every string an agent produced (its text, tool names, arguments and
results, error messages, run names) is shown as text and never becomes markup:
see ``_markdown`` for how the Markdown form is escaped, and why totally.

What the transcript leaves to the live view: status and custom events, the
model's reasoning (often longer than the answer, and not the answer), a tool
call's streaming arguments (its whole call line is kept), steps, state, message
boundaries and raw native events. The run's usage totals are its last line.
A question the agent asked and its answer are lines of their own, as the console
writes them (``? prompt [yes/no] (default: no)``, ``= yes (by cell)``).
"""

from __future__ import annotations

from .._events import (
    Answer,
    Ask,
    Cancelled,
    Done,
    Error,
    Event,
    TextChunk,
    ToolCall,
    ToolResult,
)
from .._format import (
    LINE_END,
    answer_line,
    ask_line,
    brief,
    call_line,
    result_line,
    usage_line,
    visible_controls,
)
from ._markdown import escape_markdown, escape_markdown_inline

__all__ = ["Transcript"]

_LIMIT = 160  # characters of a tool's arguments or result in the transcript
# MathJax typesets $...$ and \(...\) it finds in the rendered page, escaped or not;
# it leaves alone what is inside an element of this class.
_OPEN, _CLOSE = '<div class="mathjax_ignore">\n\n', "\n\n</div>"


def _one_line(text: str) -> str:
    return visible_controls(LINE_END.sub(" ", text))


def _code(text: str) -> str:
    return f"<code>{escape_markdown_inline(text)}</code>"


class Transcript:
    """Accumulates a run's events into its final Markdown and plain-text forms.

    Text of the run itself flows as paragraphs; a child run's text is set apart
    as a quote labelled with its name; tool calls and results become one-line
    code; an error shows its type and message (the live view and the cell's
    own error output have the traceback, whose file paths differ between
    machines); a cancelled run says so, once (its sub-runs cancelled with it are
    not listed again); a question and its answer are a line each; the run's
    usage totals end it. Status, custom events, reasoning, steps and state are
    live-only (see the module's docstring).

    With *error_elsewhere*, the run's own error is left out: the cell shows it
    as its error output (a ``%%agent`` cell that fails raises the agent's error).
    """

    def __init__(self, *, error_elsewhere: bool = False) -> None:
        self._blocks: list[tuple[str, tuple[str, ...], list[str]]] = []  # (kind, path, parts)
        self._root: tuple[str, ...] | None = None
        self.error_elsewhere = error_elsewhere

    def _shown(self) -> list[tuple[str, tuple[str, ...], list[str]]]:
        """The blocks a reader is shown (see the class's docstring for what is left out)."""
        root = self._root
        cancelled = any(kind == "cancelled" and path == root for kind, path, _ in self._blocks)
        return [
            (kind, path, parts)
            for kind, path, parts in self._blocks
            if not (cancelled and kind == "cancelled" and path != root)
            and not (self.error_elsewhere and kind == "error" and path == root)
        ]

    def begin(self, path: tuple[str, ...]) -> None:
        """The run's own path, known before its first event (a sub-run's may come first)."""
        if self._root is None:
            self._root = path

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
        elif isinstance(event, Ask):
            self._blocks.append(("ask", event.path, [ask_line(event)]))
        elif isinstance(event, Answer):
            self._blocks.append(("answer", event.path, [answer_line(event)]))
        elif isinstance(event, Done) and event.path == self._root and not self.text():
            # The agent streamed no text: its value is the answer.
            if isinstance(event.result, str):
                self._blocks.append(("text", event.path, [event.result]))
            elif event.result is not None:
                self._blocks.append(("result", event.path, [brief(event.result, _LIMIT)]))
        if isinstance(event, Done | Error | Cancelled) and event.path == self._root:
            used = usage_line(event.usage)
            if used:
                self._blocks.append(("usage", event.path, [used]))

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

        The run's own text is kept as emitted, except that its line endings are
        LF and other control characters show as their pictures (a plain-text
        renderer would act on ESC and CR). Other items are lines of their own.
        """
        out = _Joiner()
        for kind, path, parts in self._shown():
            child = path != self._root
            label = f"[{_one_line(self._label(path))}] " if child else ""
            if kind == "text":
                body = visible_controls("".join(parts))
                if child:
                    out.line(f"{label}{body.rstrip(chr(10))}")
                else:
                    out.text(body)
            elif kind in ("tool", "ask", "answer"):
                out.line(f"{label}{_one_line(parts[0])}")
            elif kind == "result":
                out.line(f"result: {_one_line(parts[0])}")
            elif kind == "usage":
                out.line(f"usage: {_one_line(parts[0])}")
            elif kind == "error":
                out.line(f"{label}{_one_line(parts[0])}: {_one_line(parts[1])}")
            else:
                reason = f": {_one_line(parts[0])}" if parts[0] else ""
                out.line(f"{label}cancelled{reason}")
        return out.value()

    def markdown(self) -> str:
        """Everything a reader should see, as Markdown that holds no markup of the agent's.

        Agent text keeps its line breaks but is not read as Markdown: ``**bold**``
        and ``<b>`` show as typed. The markup here (quotes, ``<code>``, ``<strong>``)
        is the transcript's own.
        """
        out = _Joiner(blank=True)
        for kind, path, parts in self._shown():
            child = path != self._root
            label = escape_markdown_inline(self._label(path))
            if kind == "text":
                body = escape_markdown("".join(parts))
                if not body:
                    continue
                if child:
                    quoted = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
                    out.line(f"> <strong>{label}:</strong>\\\n{quoted}")
                else:
                    out.line(body)
            elif kind == "tool":
                out.line(f"{label} {_code(parts[0])}" if child else _code(parts[0]))
            elif kind == "ask":
                where = f"{label}: " if child else ""
                out.line(f"{where}<strong>{escape_markdown_inline(parts[0])}</strong>")
            elif kind == "answer":
                where = f"{label}: " if child else ""
                out.line(f"{where}<em>{escape_markdown_inline(parts[0])}</em>")
            elif kind == "result":
                out.line(f"result: {_code(parts[0])}")
            elif kind == "usage":
                out.line(f"<em>usage: {escape_markdown_inline(parts[0])}</em>")
            elif kind == "error":
                where = f"{label}: " if child else ""
                out.line(
                    f"{where}<strong>{escape_markdown_inline(parts[0])}</strong>: {_code(parts[1])}"
                )
            else:
                reason = f": {escape_markdown_inline(parts[0])}" if parts[0] else ""
                out.line(f"<em>cancelled{reason}</em>")
        body = out.value()
        return f"{_OPEN}{body}{_CLOSE}" if body else ""


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
