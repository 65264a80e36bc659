"""Hostile agent text: payloads that try to become markup or script, and agents that emit them.

Every payload is built, from a seed, out of the characters and constructs that
Markdown, HTML, MathJax and terminals act on (CR, LF, CRLF, U+2028, backticks,
brackets, ``<``, ``&``, entities, ``$``, backslashes, table pipes, list and
heading markers, ESC) around pieces of HTML/JS. Each piece that could run
calls ``window.__pwn("<marker>")`` or names the marker in an attribute, so a test
in a real browser can tell whether any payload made an element or ran script:

    window.__pwned     # the markers of the scripts that ran (must stay empty)

:func:`everything` is an agent that puts payloads in every field of every event
kind (text of the run and of a child run, status, tool names, argument keys and
values, results, error results, custom data, child run names, an exception's
type and message, a cancelled child's reason; and of the streamed kinds: reasoning
text, its message id and signature, a streamed tool call's name, id, argument
fragments and error, step names and ids, state snapshots and patches, message ids
and finish reasons, raw events, a usage event's model and provider). The notebook
and page fuzz tests run it; they import this module from the kernel or the server
(tests/ is on their path).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator

import agentnb
from agentnb import (
    Custom,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)

__all__ = ["MARK", "active", "everything", "payloads"]

MARK = "PWN"
# Pieces that act: each names its marker (filled in per payload) where it would run.
_ACTIVE = [
    "<img src=x onerror=\"window.__pwn('{m}')\">",
    "<img src=x onerror=window.__pwn('{m}')>",
    "<script>window.__pwn('{m}')</script>",
    "<svg onload=\"window.__pwn('{m}')\"></svg>",
    "<iframe srcdoc=\"<script>parent.__pwn('{m}')</script>\"></iframe>",
    "<details open ontoggle=\"window.__pwn('{m}')\">x</details>",
    "<a href=\"javascript:window.__pwn('{m}')\" id={m}>{m}</a>",
    "[{m}](javascript:window.__pwn('{m}'))",
    '![{m}](x "{m}")',
    "<javascript:window.__pwn('{m}')>",
    "<b class={m} data-{m}=1>{m}</b>",
    "<style>#{m}{{color:red}}</style>",
    "<math><mi>{m}</mi></math>",
    "$\\href{{javascript:window.__pwn('{m}')}}{{{m}}}$",
    "$${m}^2$$",
    "\\\\({m}\\\\)",
    "&lt;img src=x onerror=window.__pwn('{m}')&gt;",
    "&#60;b id={m}&#62;",
    "www.{m}.example",
    "http://{m}.example/x",
    "<!-- {m} -->",
    "<div\ronmouseover=\"window.__pwn('{m}')\">{m}</div>",
    "`<img src=x onerror=\"window.__pwn('{m}')\">`",
    "\\`<img src=x onerror=window.__pwn('{m}')>`",
    "| a `| <img src=x onerror=window.__pwn('{m}')> |` |",
]
# Pieces that only shape the text around them.
_SHAPE = [
    "\r", "\n", "\r\n", "\r\r", "\n\n", "\u2028", "\u2029", "\u0085", "`", "``", "```",
    "~~~", "\\", "[", "]", "(", ")", "<", ">", "&", "&amp;", "&#38;", "*", "**", "_", "#",
    "    ", "\t", "|", "> ", "- ", "1. ", "!", "$", "$$", "{", "}", "@", "=", "---",
    "\x1b[31m", "\x1b]8;;http://x/\x07", "\x00", " ", "text", "é", "😀",
]  # fmt: skip


def active(marker: str) -> list[str]:
    """Every acting piece, for *marker*."""
    return [piece.format(m=marker) for piece in _ACTIVE]


def payloads(count: int, seed: int = 0) -> list[str]:
    """*count* payloads; payload *i* carries the marker ``PWN<seed>x<i>`` in its acting pieces.

    The first ones hold every acting piece, each between line-breaking shapes (as
    the attack that ran: ``"\\r\\r<img src=x onerror=...>\\r\\r"``); the rest mix
    random shapes and pieces.
    """
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        marker = f"{MARK}{seed}x{i}"
        pieces = active(marker)
        if i < len(pieces):
            edge = _SHAPE[i % 8]
            out.append(f"{edge}{pieces[i]}{edge}")
            continue
        size = rng.randint(3, 13)
        parts = [
            rng.choice(_SHAPE) if rng.random() < 0.6 else rng.choice(pieces) for _ in range(size)
        ]
        out.append("".join(parts))
    return out


def _chunks(text: str, rng: random.Random) -> Iterator[str]:
    """*text* cut at random places (a CR and its LF may land in two chunks)."""
    i = 0
    while i < len(text):
        n = rng.randint(1, 9)
        yield text[i : i + n]
        i += n


def _error(name: str, message: str) -> Exception:
    """An exception of a type the agent named (a type name may not hold NUL)."""
    kind: type[Exception] = type(name.replace("\x00", ""), (Exception,), {})
    return kind(message)


async def _child(payload: str) -> None:
    agentnb.emit(payload)
    agentnb.emit(ToolCall(payload, {payload: payload}))
    raise _error(payload, payload)


async def _stays(payload: str) -> None:
    agentnb.emit(payload)
    await asyncio.sleep(3600)


def streamed(payload: str, rng: random.Random) -> None:
    """Emit *payload* in every string field of the streamed kinds (steps, reasoning, a tool
    call whose arguments stream, state, message boundaries, raw, usage)."""
    agentnb.emit(StepStart(payload, step_id=payload))
    agentnb.emit(MessageStart(payload))
    for chunk in _chunks(payload, rng):
        agentnb.emit(Reasoning(chunk, message_id=payload))
    agentnb.emit(Reasoning("", message_id=payload, signature=payload))
    agentnb.emit(ToolCallStart(payload, payload, message_id=payload))
    for chunk in _chunks(payload, rng):
        agentnb.emit(ToolCallDelta(payload, chunk))
    agentnb.emit(ToolCallEnd(payload, error=payload))
    agentnb.emit(ToolCall(payload, {"_raw": payload}, call_id=payload))
    agentnb.emit(ToolResult(payload, payload, call_id=payload, denied=True))
    agentnb.emit(StateSnapshot({payload: [payload, {"k": payload}]}))
    op = {"op": "move", "path": payload, "from": payload, "value": payload}
    agentnb.emit(StateDelta([op, {"op": "add", "path": payload, payload: payload}]))
    agentnb.emit(MessageEnd(payload, finish_reason=payload))
    agentnb.emit(Raw(payload, {payload: payload}))
    agentnb.emit(Usage(1, 2, model=payload, provider=payload, cost=0.001))
    agentnb.emit(StepEnd(payload, step_id=payload))


async def everything(spec: str = "12:0") -> str:
    """Put payloads in every field of every event kind; *spec* is ``"count:seed[:fail]"``.

    With ``fail``, it ends with an error of a type and message made of payloads.
    """
    count, seed, *fail = spec.split(":")
    texts = payloads(int(count), int(seed))
    rng = random.Random(seed)
    for n, payload in enumerate(texts):
        for chunk in _chunks(payload, rng):
            agentnb.emit(chunk)
        agentnb.emit(Status(payload))
        call = ToolCall(payload, {payload: payload, "nested": [payload, {"k": payload}]})
        agentnb.emit(call)
        agentnb.emit(ToolResult(payload, payload, call_id=call.call_id))
        agentnb.emit(ToolResult(payload, {"error": payload}, call_id=call.call_id, is_error=True))
        agentnb.emit(Custom(f"p{n}.x:y-z", {"text": payload, "list": [payload]}))
        streamed(payload, rng)
        if n % 4 == 0:
            with contextlib.suppress(Exception):  # its Error event is the point
                await agentnb.run(_child, payload, name=payload)
        if n % 4 == 1:
            child = agentnb.start(_stays, payload, name=payload)
            await asyncio.sleep(0)
            child.cancel(payload)
            with contextlib.suppress(agentnb.RunCancelled):
                await child.wait()
    if fail:
        raise _error(texts[-1], texts[0])
    return texts[-1]


async def answers(spec: str = "0") -> str:
    """Returns payload *spec* without streaming text: the transcript shows the result."""
    return payloads(int(spec) + 1, 7)[int(spec)]


async def answers_json(spec: str = "3") -> object:
    """Returns a JSON value made of payloads."""
    texts = payloads(int(spec), 8)
    return {text: [text, {"k": text}] for text in texts}


async def cancels(spec: str = "0") -> None:
    """Cancels itself with a payload as the reason."""
    agentnb.current_run().cancel(payloads(int(spec) + 1, 9)[int(spec)])
    await asyncio.sleep(3600)
