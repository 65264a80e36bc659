"""``agentnb.ask``: the agent asks the person, and waits for the answer mid-run.

The question is an ``ask`` event; whatever front end shows the run and can take an
answer (a sink with ``answers = True``, on the run or an ancestor) answers it with
``run.answer(ask_id, value, by=...)``, from any thread; the answer is an ``answer``
event, emitted by the waiting agent right when it resumes. Where nothing can answer (a
headless notebook run, a script), the question's default is the answer (``by
"default"``), and without one ``ask`` raises ``NoAnswer`` naming the question instead
of hanging. A timeout ends the wait the same way (``by "timeout"``). Exactly one answer
is taken: an answer to an unknown, answered or finished question, or a value outside
the choices, raises ``InvalidAnswer`` and changes nothing.

The questions of a family of runs are kept by its root run, so a front end that holds
the root (the cell's view, the server) answers a question any sub-run asked; a run
answers its own questions and its sub-runs'. A question another process asked (a remote
run mirrored here) is registered with :func:`expect`: its answer is handed on instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._events import Answer, Ask
from ._events_stream import ANSWERED_BY
from ._exceptions import InvalidAnswer, NoAnswer
from ._run import current_run

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["approve", "ask"]

_lock = threading.Lock()

APPROVE, DENY = "approve", "deny"


class Pending:
    """A question of a run: what it allows, and how its answer gets to whoever waits.

    ``state`` is ``open``, then ``taken`` once an answer was accepted (``closed`` once
    answered where it was asked, for an expected one); a question stays known after
    that, so a late answer is told it is answered.
    """

    __slots__ = ("ask", "forward", "future", "loop", "run", "state")

    def __init__(
        self,
        run: Run,
        ask: Ask,
        future: asyncio.Future[tuple[str, str]] | None,
        forward: Callable[[str, str], None] | None = None,
    ) -> None:
        self.run = run
        self.ask = ask
        self.future = future
        self.loop = future.get_loop() if future is not None else None
        self.forward = forward
        self.state = "open"


def _root(run: Run) -> Run:
    while run.parent is not None:
        run = run.parent
    return run


def _register(run: Run, pending: Pending) -> None:
    root = _root(run)
    with _lock:
        if root._asks is None:
            root._asks = {}
        root._asks[pending.ask.ask_id] = pending


async def ask(
    prompt: str,
    *,
    choices: Sequence[str] | None = None,
    default: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109  (the question's own wait, not a call's)
    call_id: str = "",
) -> str:
    """Ask the person *prompt* and return their answer (one of *choices*, or free text).

    Where no one can answer, *default* is returned (else ``NoAnswer`` is raised, naming
    the question); likewise after *timeout* seconds without an answer. *call_id* names
    the tool call the question gates, if any. Cancelling the run while it waits cancels
    the wait.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise ValueError(f"ask(timeout=...) is a number of seconds >= 0 or None, got {timeout!r}")
    run = current_run()
    question = Ask(prompt, os.urandom(6).hex(), choices, default, call_id)
    if not answerable(run):
        run.emit(question)
        return _unanswered(run, question, "default", "no one can answer here (a headless run)")
    future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    pending = Pending(run, question, future)
    _register(run, pending)  # before the event: a front end may answer as soon as it sees it
    run.emit(question)
    try:
        value, by = await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        with _lock:
            if pending.state == "open":  # an answer arriving now is refused, not lost
                pending.state = "taken"
                return _unanswered(run, question, "timeout", f"no answer came within {timeout} s")
        value, by = await future
    except BaseException:
        with _lock:
            pending.state = "taken"  # cancelled: the question is closed
        raise
    run.emit(Answer(question.ask_id, value, by))
    return value


async def approve(
    tool: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    call_id: str = "",
    default: bool | None = None,
    timeout: float | None = None,  # noqa: ASYNC109
) -> bool:
    """Ask the person whether the tool call *tool(arguments)* may run; True if approved.

    The question shows the call's name and arguments, offers ``approve`` and ``deny``,
    and names the call it gates (*call_id*). *default* (True: approve, False: deny) is
    the answer where no one can answer, or after *timeout* seconds.
    """
    shown = ", ".join(f"{k}={_argument(v)}" for k, v in (arguments or {}).items())
    answer_ = await ask(
        f"Run {tool}({shown})?",
        choices=[APPROVE, DENY],
        default=None if default is None else (APPROVE if default else DENY),
        timeout=timeout,
        call_id=call_id,
    )
    return answer_ == APPROVE


def _argument(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:
        return repr(value)


def _unanswered(run: Run, question: Ask, by: str, why: str) -> str:
    if question.default is None:
        raise NoAnswer(
            f"the question {question.prompt!r} got no answer: {why}, and it has no default. "
            "Give ask() a default=..., or run the agent where someone can answer."
        )
    run.emit(Answer(question.ask_id, question.default, by))
    return question.default


def answerable(run: Run) -> bool:
    """Whether a sink of *run* or of an ancestor takes answers."""
    node: Run | None = run
    while node is not None:
        if node._answers:
            return True
        node = node.parent
    return False


def expect(run: Run, question: Ask, forward: Callable[[str, str], None]) -> Pending:
    """Make *question*, asked elsewhere and shown in *run*, answerable here: an answer
    accepted for it calls ``forward(value, by)`` (on the answering thread)."""
    pending = Pending(run, question, None, forward)
    _register(run, pending)
    return pending


def reopen(pending: Pending) -> None:
    """Take answers for an expected question again: handing the last one on failed."""
    with _lock:
        if pending.state == "taken":
            pending.state = "open"


def settled(run: Run, ask_id: str) -> None:
    """Close an expected question: it was answered where it was asked."""
    root = _root(run)
    with _lock:
        pending = root._asks.get(ask_id) if root._asks is not None else None
        if pending is not None:
            pending.state = "closed"


def open_questions(run: Run) -> list[Ask]:
    """The questions of *run* and its sub-runs still waiting for an answer."""
    root = _root(run)
    with _lock:
        pendings = list(root._asks.values()) if root._asks is not None else []
    return [p.ask for p in pendings if p.state == "open" and _within(p.run, run)]


def find_question(run: Run, ask_id: str) -> Ask | None:
    """The question *ask_id* of *run* or a sub-run, open or answered; None if unknown."""
    root = _root(run)
    with _lock:
        pending = root._asks.get(ask_id) if root._asks is not None else None
    return pending.ask if pending is not None and _within(pending.run, run) else None


def _within(run: Run, ancestor: Run) -> bool:
    node: Run | None = run
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def answer(run: Run, ask_id: str, value: str, by: str = "code") -> None:
    """Answer the question *ask_id* of *run* or a sub-run; raises ``InvalidAnswer``
    (changing nothing) if the question is unknown or answered, its run has ended, or
    *value* is not a choice. ``InvalidAnswer.reason`` says which."""
    if not isinstance(ask_id, str):
        raise InvalidAnswer(f"ask_id is a str, got {type(ask_id).__name__}", "invalid")
    if not isinstance(value, str):
        raise InvalidAnswer(
            f"an answer is a str, got {type(value).__name__}: {value!r:.80}", "invalid"
        )
    if by not in ANSWERED_BY:
        raise InvalidAnswer(
            f"by= is one of {', '.join(sorted(ANSWERED_BY))}, got {by!r:.40}", "invalid"
        )
    root = _root(run)
    with _lock:
        pending = root._asks.get(ask_id) if root._asks is not None else None
        if pending is None or not _within(pending.run, run):
            raise InvalidAnswer(
                f"run {run.name!r} has no question {ask_id!r:.80}: check the ask event's "
                "ask_id (and that it was asked in this run)",
                "unknown",
            )
        if pending.state != "open" or pending.run.done:
            why = "has ended" if pending.run.done else "is already answered"
            raise InvalidAnswer(
                f"the question {ask_id!r} ({pending.ask.prompt!r:.80}) {why}; "
                "exactly one answer is taken",
                "ended" if pending.run.done else "answered",
            )
        choices = pending.ask.choices
        if choices is not None and value not in choices:
            raise InvalidAnswer(
                f"{value!r:.80} is not one of the choices {choices!r} for "
                f"{pending.ask.prompt!r:.80}; the question is still open",
                "invalid",
            )
        pending.state = "taken"
    if pending.forward is not None:
        pending.forward(value, by)
    elif pending.loop is not None and pending.future is not None:
        pending.loop.call_soon_threadsafe(_settle, pending.future, value, by)


def _settle(future: asyncio.Future[tuple[str, str]], value: str, by: str) -> None:
    if not future.done():
        future.set_result((value, by))
