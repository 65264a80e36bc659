"""Questions of a remote run, through agentnb.client against a real uvicorn.

``answer()`` answers one; a remote run shown locally (``remote()``) asks where it is
shown: a local sink that takes answers answers it and the answer goes to the server;
where nothing local can answer, the default is sent, and without one the local run
fails naming the question (and the remote run is cancelled, not left waiting).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import agentnb
from agentnb import Answer, Ask
from agentnb.client import ServerError, answer, remote, stream
from agentnb.server import create_app
from agentnb.server._hub import RunHub
from harness.wait import eventually
from harness.web import serving
from tests.helpers import Recorder


async def janitor(folder: str) -> str:
    if await agentnb.ask(f"Delete files in {folder}?", choices=["yes", "no"]) != "yes":
        return "nothing deleted"
    name = await agentnb.ask("Name for the backup?", default="backup-1")
    return f"deleted, backed up as {name}"


async def delegates(folder: str) -> str:
    """Asks in a sub-run."""
    return str(await agentnb.run(janitor, folder))


async def polite(folder: str) -> str:
    return await agentnb.ask(f"Tidy {folder}?", choices=["yes", "no"], default="no")


_hubs: dict[str, RunHub] = {}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = create_app(agents=[janitor, delegates, polite])
    with serving(app) as url:
        _hubs[url] = app.state.hub
        yield url


class Answering(Recorder):
    """A local sink that takes answers, as the cell's view does when someone can answer."""

    answers = True


async def test_answer_answers_a_question_of_a_streamed_run(base: str) -> None:
    seen: list[agentnb.Event] = []
    async with stream(base, "janitor", "/srv") as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, Ask) and event.choices:
                assert events.run_id is not None
                with pytest.raises(ServerError) as refused:
                    await answer(base, events.run_id, event.ask_id, "maybe")
                assert (refused.value.status, refused.value.code) == (422, "invalid_answer")
                taken = await answer(base, events.run_id, event.ask_id, "yes")
                assert taken == {
                    "run_id": events.run_id,
                    "ask_id": event.ask_id,
                    "value": "yes",
                    "by": "http",
                }
                with pytest.raises(ServerError) as again:
                    await answer(base, events.run_id, event.ask_id, "no")
                assert again.value.status == 409
            elif isinstance(event, Ask):
                await events.answer(event.ask_id, "archive-7")
    assert [e.kind for e in seen] == ["ask", "answer", "ask", "answer", "done"]
    assert [(e.value, e.by) for e in seen if isinstance(e, Answer)] == [
        ("yes", "http"),
        ("archive-7", "http"),
    ]
    assert seen[-1].payload()["result"] == "deleted, backed up as archive-7"


@pytest.mark.parametrize("agent", ["janitor", "delegates"])
async def test_a_remote_runs_question_is_asked_and_answered_locally(base: str, agent: str) -> None:
    sink = Answering()
    run = agentnb.start(remote(base, agent), "/srv", sink=sink)
    await eventually(lambda: run.questions)
    question = run.questions[0]
    assert question.prompt == "Delete files in /srv?"
    with pytest.raises(agentnb.InvalidAnswer, match="not one of the choices"):
        run.answer(question.ask_id, "maybe", by="cell")  # checked here, before it is sent
    run.answer(question.ask_id, "yes", by="cell")
    await eventually(lambda: run.questions)
    with pytest.raises(agentnb.InvalidAnswer, match="already answered"):
        run.answer(question.ask_id, "no", by="cell")
    run.answer(run.questions[0].ask_id, "archive-7", by="cell")
    assert await run.wait() == "deleted, backed up as archive-7"
    answers = [e for e in sink.events if isinstance(e, Answer)]
    assert [(a.value, a.by) for a in answers] == [("yes", "cell"), ("archive-7", "cell")]
    assert run.questions == []


async def test_a_remote_question_answered_elsewhere_closes_the_local_one(base: str) -> None:
    sink = Answering()
    run = agentnb.start(remote(base, "janitor"), "/srv", sink=sink)
    await eventually(lambda: run.questions)
    question = run.questions[0]
    (served,) = _hubs[base].live  # the remote run, waiting
    taken = await answer(base, served.id, question.ask_id, "yes", by="page")  # the page, first
    assert taken["by"] == "page"
    await eventually(lambda: [q.ask_id for q in run.questions] not in ([], [question.ask_id]))
    with pytest.raises(agentnb.InvalidAnswer, match="already answered"):  # closed here too
        run.answer(question.ask_id, "no", by="cell")
    run.answer(run.questions[0].ask_id, "archive-7", by="cell")  # the next question
    assert await run.wait() == "deleted, backed up as archive-7"
    assert [(e.value, e.by) for e in sink.events if isinstance(e, Answer)] == [
        ("yes", "page"),
        ("archive-7", "cell"),
    ]


async def test_headless_a_remote_question_takes_its_default_or_fails_naming_it(base: str) -> None:
    plain = Recorder()  # takes no answers: a headless notebook, a script
    assert await agentnb.run(remote(base, "polite"), "/srv", sink=plain) == "no"
    assert [(e.value, e.by) for e in plain.events if isinstance(e, Answer)] == [("no", "default")]
    with pytest.raises(agentnb.NoAnswer, match=r"'Delete files in /srv\?' got no answer"):
        await agentnb.run(remote(base, "janitor"), "/srv", sink=Recorder())
    await eventually(lambda: not _hubs[base].live)  # the remote run is not left waiting
