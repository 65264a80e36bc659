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
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._events import Answer, Ask
from ._exceptions import InvalidAnswer, NoAnswer
from ._run import current_run

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["ask"]

_lock = threading.Lock()


class Pending:
    """An open question of a run: what it allows, and the future its agent awaits."""

    __slots__ = ("choices", "future", "loop", "prompt", "taken")

    def __init__(
        self, prompt: str, choices: list[str] | None, future: asyncio.Future[tuple[str, str]]
    ) -> None:
        self.prompt = prompt
        self.choices = choices
        self.future = future
        self.loop = future.get_loop()
        self.taken = False


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
    run = current_run()
    question = Ask(prompt, os.urandom(6).hex(), choices, default, call_id)
    if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
        raise ValueError(f"ask(timeout=...) is a number of seconds >= 0 or None, got {timeout!r}")
    run.emit(question)
    if not answerable(run):
        return _unanswered(run, question, "default", "no one can answer here (a headless run)")
    future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    pending = Pending(question.prompt, question.choices, future)
    with _lock:
        if run._asks is None:
            run._asks = {}
        run._asks[question.ask_id] = pending
    try:
        try:
            value, by = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            with _lock:
                if not pending.taken:  # an answer arriving now is refused, not lost
                    pending.taken = True
                    return _unanswered(
                        run, question, "timeout", f"no answer came within {timeout} s"
                    )
            value, by = await future
    finally:
        with _lock:
            if run._asks is not None:
                run._asks.pop(question.ask_id, None)
    run.emit(Answer(question.ask_id, value, by))
    return value


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


def answer(run: Run, ask_id: str, value: str, by: str = "code") -> None:
    """Answer *run*'s question *ask_id*; raises ``InvalidAnswer`` (changing nothing) if the
    question is unknown or answered, the run has ended, or *value* is not a choice."""
    if not isinstance(value, str):
        raise InvalidAnswer(f"an answer is a str, got {type(value).__name__}: {value!r}")
    with _lock:
        pending = run._asks.get(ask_id) if run._asks is not None else None
        if pending is None or pending.taken:
            state = "has ended" if run.done else "is running"
            raise InvalidAnswer(
                f"run {run.name!r} ({state}) has no open question {ask_id!r}: it is unknown "
                "or already answered"
            )
        if pending.choices is not None and value not in pending.choices:
            raise InvalidAnswer(
                f"{value!r} is not one of the choices {pending.choices!r} for "
                f"{pending.prompt!r}; the question is still open"
            )
        pending.taken = True
    pending.loop.call_soon_threadsafe(_settle, pending.future, value, by)


def _settle(future: asyncio.Future[tuple[str, str]], value: str, by: str) -> None:
    if not future.done():
        future.set_result((value, by))
