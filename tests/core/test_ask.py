"""``agentnb.ask``: a question mid-run, answered from elsewhere, exactly once; headless rules."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import agentnb
from agentnb.testing import CapturedEvents, capture_events


class Answering(CapturedEvents):
    """A sink that takes answers (as the notebook view and the server will) and records."""

    answers = True


async def first_question(events: CapturedEvents) -> agentnb.Ask:
    for _ in range(500):
        asks = [e for e in events if isinstance(e, agentnb.Ask)]
        if asks:
            return asks[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the agent never asked")


async def janitor(task: str) -> str:
    if await agentnb.ask("Delete 3 files?", choices=["yes", "no"]) != "yes":
        return "nothing deleted"
    name = await agentnb.ask("Name for the backup?", default="backup-1")
    return f"deleted, backed up as {name}"


async def test_the_agent_waits_for_the_answer_and_goes_on_with_it() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    assert (question.prompt, question.choices, question.default) == (
        "Delete 3 files?",
        ["yes", "no"],
        None,
    )
    await asyncio.sleep(0.05)
    assert not run.done  # it waits
    run.answer(question.ask_id, "yes", by="cell")
    for _ in range(500):
        second = [e for e in sink if isinstance(e, agentnb.Ask)][1:]
        if second:
            break
        await asyncio.sleep(0.01)
    run.answer(second[0].ask_id, "archive-7", by="page")  # free text
    assert await run.wait() == "deleted, backed up as archive-7"
    kinds = [e.kind for e in sink]
    assert kinds == ["ask", "answer", "ask", "answer", "done"]
    answers = [e for e in sink if isinstance(e, agentnb.Answer)]
    assert [(a.value, a.by) for a in answers] == [("yes", "cell"), ("archive-7", "page")]
    assert answers[0].ask_id == question.ask_id


async def test_bad_answers_are_refused_and_change_nothing_and_one_answer_is_taken() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    with pytest.raises(agentnb.InvalidAnswer, match="not one of the choices"):
        run.answer(question.ask_id, "maybe")
    with pytest.raises(agentnb.InvalidAnswer, match="has no question 'nope'") as unknown:
        run.answer("nope", "yes")
    assert unknown.value.reason == "unknown"
    assert [q.ask_id for q in run.questions] == [question.ask_id]
    with pytest.raises(agentnb.InvalidAnswer, match="is a str"):
        run.answer(question.ask_id, 1)  # type: ignore[arg-type]
    run.answer(question.ask_id, "no", by="http")
    with pytest.raises(agentnb.InvalidAnswer, match="already answered") as again:
        run.answer(question.ask_id, "yes", by="socket")
    assert again.value.reason == "answered"
    assert await run.wait() == "nothing deleted"
    assert [(e.value, e.by) for e in sink if isinstance(e, agentnb.Answer)] == [("no", "http")]
    with pytest.raises(agentnb.InvalidAnswer, match="has ended") as ended:
        run.answer(question.ask_id, "yes")
    assert ended.value.reason == "ended"
    assert run.questions == []


async def test_two_answers_racing_from_threads_one_is_taken() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    outcomes: list[str] = []
    go = threading.Barrier(2)

    def answer(value: str) -> None:
        go.wait()
        try:
            run.answer(question.ask_id, value)
            outcomes.append("taken " + value)
        except agentnb.InvalidAnswer:
            outcomes.append("refused")

    threads = [threading.Thread(target=answer, args=(v,)) for v in ("yes", "no")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.split()[0] for o in outcomes) == ["refused", "taken"]
    taken = next(o.split()[1] for o in outcomes if o.startswith("taken"))
    if taken == "yes":  # the agent goes on to ask for the backup's name
        for _ in range(500):
            asks = [e for e in sink if isinstance(e, agentnb.Ask)]
            if len(asks) == 2:
                break
            await asyncio.sleep(0.01)
        run.answer(asks[1].ask_id, "b")
    await run.wait()
    assert next(e.value for e in sink if isinstance(e, agentnb.Answer)) == taken


async def test_headless_a_default_is_the_answer_and_without_one_a_clear_error() -> None:
    async def asks_with_default() -> str:
        return await agentnb.ask("Name?", default="backup-1")

    async def asks_without() -> str:
        return await agentnb.ask("Really delete everything?", choices=["yes", "no"])

    with capture_events() as events:  # a plain sink: no one can answer here
        assert await agentnb.run(asks_with_default) == "backup-1"
        with pytest.raises(agentnb.NoAnswer, match="'Really delete everything\\?' got no answer"):
            await agentnb.run(asks_without)
    answers = [e for e in events if isinstance(e, agentnb.Answer)]
    assert [(a.value, a.by) for a in answers] == [("backup-1", "default")]
    assert [e.kind for e in events] == ["ask", "answer", "done", "ask", "error"]


async def test_a_timeout_ends_the_wait_with_the_default_or_the_error() -> None:
    async def waits(default: str | None) -> str:
        return await agentnb.ask("Proceed?", choices=["go", "stop"], default=default, timeout=0.1)

    sink = Answering()
    assert await agentnb.run(waits, "stop", sink=sink) == "stop"
    assert [(e.value, e.by) for e in sink if isinstance(e, agentnb.Answer)] == [("stop", "timeout")]
    with pytest.raises(agentnb.NoAnswer, match=r"no answer came within 0\.1 s"):
        await agentnb.run(waits, None, sink=Answering())


async def test_cancelling_the_run_while_it_asks_cancels_it() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    run.cancel("stopped from the notebook")
    with pytest.raises(agentnb.RunCancelled):
        await run.wait()
    assert sink.kinds() == ["ask", "cancelled"]
    with pytest.raises(agentnb.InvalidAnswer):
        run.answer(question.ask_id, "yes")


async def test_a_child_run_asks_through_its_parents_answering_sink() -> None:
    async def parent() -> str:
        return str(await agentnb.run(janitor, "tidy"))

    sink = Answering()
    run = agentnb.start(parent, sink=sink)
    question = await first_question(sink)
    assert question.path == ("parent", "janitor")
    child = next(r for r in (run._children or ()))
    assert [q.ask_id for q in run.questions] == [q.ask_id for q in child.questions]
    assert [q.prompt for q in child.questions] == [question.prompt]
    child.answer(question.ask_id, "no")
    assert await run.wait() == "nothing deleted"


async def test_the_root_answers_a_sub_runs_question_and_a_sibling_cannot() -> None:
    async def sibling() -> None:
        await asyncio.sleep(0.5)

    async def parent() -> str:
        async with asyncio.TaskGroup() as tg:
            asked = tg.create_task(agentnb.run(janitor, "tidy"))
            tg.create_task(agentnb.run(sibling))
        return str(asked.result())

    sink = Answering()
    run = agentnb.start(parent, sink=sink)
    question = await first_question(sink)
    other = next(r for r in (run._children or ()) if r.name == "sibling")
    with pytest.raises(agentnb.InvalidAnswer, match="has no question") as refused:
        other.answer(question.ask_id, "no")
    assert refused.value.reason == "unknown"
    run.answer(question.ask_id, "no", by="page")  # the view and the server hold the root
    assert await run.wait() == "nothing deleted"
    assert [(e.path, e.by) for e in sink if isinstance(e, agentnb.Answer)] == [
        (("parent", "janitor"), "page")
    ]


async def test_approve_shows_the_call_and_gates_it() -> None:
    async def deleter() -> str:
        if await agentnb.approve("rm", {"path": "/tmp/x", "force": True}, call_id="c1"):
            return "deleted"
        return "kept"

    sink = Answering()
    run = agentnb.start(deleter, sink=sink)
    question = await first_question(sink)
    assert (question.prompt, question.choices, question.call_id) == (
        'Run rm(path="/tmp/x", force=true)?',
        ["approve", "deny"],
        "c1",
    )
    run.answer(question.ask_id, "deny", by="cell")
    assert await run.wait() == "kept"

    async def headless() -> str:
        return "ran" if await agentnb.approve("ls", default=False) else "not run"

    with capture_events() as events:
        assert await agentnb.run(headless) == "not run"
    assert [(e.value, e.by) for e in events if isinstance(e, agentnb.Answer)] == [
        ("deny", "default")
    ]


async def test_bad_answer_arguments_say_what_is_wrong() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    with pytest.raises(agentnb.InvalidAnswer, match="by= is one of") as bad_by:
        run.answer(question.ask_id, "yes", by="someone")
    assert bad_by.value.reason == "invalid"
    with pytest.raises(ValueError, match="timeout"):
        await agentnb.ask("x", timeout=True)  # outside a run: checked first
    run.answer(question.ask_id, "no")
    assert await run.wait() == "nothing deleted"


def test_a_bad_question_fails_at_the_ask_line() -> None:
    async def bad() -> str:
        return await agentnb.ask("Pick", choices=["a", "b"], default="c")

    with pytest.raises(agentnb.InvalidEvent, match="not one of the choices"):
        agentnb.run_sync(bad)


def test_the_console_shows_the_question_and_who_answered_with_controls_made_visible() -> None:
    import io

    async def asks() -> str:
        return await agentnb.ask("Delete\x1b[31m 3 files?", choices=["yes", "no"], default="no")

    out = io.StringIO()
    assert agentnb.run_sync(asks, sink=agentnb.ConsoleSink(out)) == "no"
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["? Delete\u241b[31m 3 files? [yes/no] (default: no)", "= no (by default)"]


async def test_a_recorded_run_replays_with_its_questions_and_answers(tmp_path: Path) -> None:
    import io

    recording = tmp_path / "janitor.jsonl"
    sink = Answering()
    recorder = agentnb.JsonlRecorder(recording)
    run = agentnb.start(janitor, "tidy", sink=[sink, recorder])
    question = await first_question(sink)
    run.answer(question.ask_id, "yes", by="cell")
    for _ in range(500):
        if len([e for e in sink if isinstance(e, agentnb.Ask)]) == 2:
            break
        await asyncio.sleep(0.01)
    second = [e for e in sink if isinstance(e, agentnb.Ask)][1]
    run.answer(second.ask_id, "archive-7", by="page")
    await run.wait()

    replayed = CapturedEvents()
    assert await agentnb.replay(recording, replayed) == 5
    assert [e.to_json() for e in replayed] == [e.to_json() for e in sink]
    out = io.StringIO()
    await agentnb.replay(recording, agentnb.ConsoleSink(out))
    assert out.getvalue().splitlines()[:4] == [
        "? Delete 3 files? [yes/no]",
        "= yes (by cell)",
        "? Name for the backup? (default: backup-1)",
        "= archive-7 (by page)",
    ]


async def test_a_stream_that_says_it_answers_answers_and_one_that_does_not_takes_defaults() -> None:
    async def polite() -> str:
        return await agentnb.ask("Tidy?", choices=["yes", "no"], default="no")

    seen = []
    async with agentnb.stream(polite, answers=True) as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, agentnb.Ask):
                events.answer(event.ask_id, "yes")
    assert [(e.kind, getattr(e, "by", "")) for e in seen] == [
        ("ask", ""),
        ("answer", "code"),
        ("done", ""),
    ]
    assert [e.kind for e in [e async for e in agentnb.stream(polite)]] == ["ask", "answer", "done"]
    assert events.run.outcome() == "yes"


async def test_a_question_is_found_by_its_id_open_or_answered_in_its_family_only() -> None:
    sink = Answering()
    run = agentnb.start(janitor, "tidy", sink=sink)
    question = await first_question(sink)
    found = run.question(question.ask_id)
    assert found is not None
    assert found.prompt == "Delete 3 files?"
    assert run.question("nope") is None
    run.answer(question.ask_id, "no")
    assert await run.wait() == "nothing deleted"
    assert run.question(question.ask_id) is not None  # answered: still known
    other = agentnb.start(janitor, "tidy", sink=Answering())
    assert other.question(question.ask_id) is None
    other.cancel()
    with pytest.raises(agentnb.RunCancelled):
        await other.wait()
