"""Agent text as Markdown that renders as exactly that text: nothing in it is ever markup.

JupyterLab renders a cell's ``text/markdown`` output with marked and does not
sanitize outputs it trusts (every output of a cell run in the session, and those
of a saved notebook it signed), so any markup that reaches the Markdown source
runs there: raw HTML, links, math typeset by MathJax. Escaping only ``<`` and
``&`` outside code spans is not enough: Markdown also ends lines at a lone CR,
code spans break at a blank line, a backslash keeps a backtick from opening one,
GFM splits table cells before it finds code spans. So agent text is not parsed
here at all; every character that Markdown or HTML can act on is written as a
numeric character reference, which every Markdown parser decodes to the
character itself and none reads as syntax:

* every ASCII punctuation character (``<``, ``&``, backticks, brackets, ``*``,
  ``_``, ``#``, ``|``, ``$``, ``\\``, ``:``, ``.``, ...);
* leading spaces and tabs (four of them would start a code block, where
  references are not decoded), as no-break spaces, so indentation still shows;
* the line endings Markdown knows (LF, CR, CRLF) become our own hard breaks and
  paragraph breaks, so no line of the source is the agent's;
* other control characters become their visible Unicode pictures (a NUL, an ESC).

What is left are letters, digits, spaces inside a line and non-ASCII text, none
of which Markdown or HTML acts on. MathJax typesets ``$...$`` found in the page's
text after rendering, whatever the source said; the transcript sits in a
``mathjax_ignore`` block for that (see ``Transcript.markdown``).
"""

from __future__ import annotations

import re
import string

from .._format import CONTROL_PICTURES, LINE_END, split_lines

__all__ = ["escape_markdown", "escape_markdown_inline"]

_ESCAPES = {ord(c): f"&#{ord(c)};" for c in string.punctuation} | CONTROL_PICTURES
_INDENT = re.compile(r"^[ \t]+")
_TRAILING = re.compile(r"[ \t]+$")


def _indent(match: re.Match[str]) -> str:
    return match.group().replace("\t", "    ").replace(" ", "&#160;")


def _trailing(match: re.Match[str]) -> str:
    return "&#32;" * len(match.group())  # two trailing spaces would be a hard break


def escape_markdown_inline(text: str) -> str:
    """*text* as Markdown for the middle of one line: line endings become spaces."""
    return LINE_END.sub(" ", text).translate(_ESCAPES)


def _line(line: str) -> str:
    escaped = line.translate(_ESCAPES)
    escaped = _INDENT.sub(_indent, escaped)
    return _TRAILING.sub(_trailing, escaped)


def escape_markdown(text: str) -> str:
    """Markdown that renders as exactly *text*, line breaks included; never markup.

    Each line of *text* is a line of the paragraph (a hard break ends it); a blank
    line starts a new paragraph. The result holds no line ending of *text*: every
    line of it is made here.
    """
    paragraphs: list[list[str]] = [[]]
    for line in split_lines(text):
        if line.strip(" \t"):
            paragraphs[-1].append(_line(line))
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join("\\\n".join(lines) for lines in paragraphs if lines)
