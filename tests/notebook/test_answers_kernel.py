"""Questions in a real ipykernel: the view answers them, a headless run takes defaults.

A cell run where a person can answer (its execute request allows input, as
JupyterLab's do) shows the agent's question as an ``ask`` item and waits; the
test answers it as the view does, with the widget message ``{"t": "answer"}``.
Run headless (``allow_stdin`` false, as nbclient, papermill and nbval run), the
question takes its default, or the cell fails naming it, at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from agentnb.notebook import NotebookSink
from harness import ROOT
from harness.kernel import Kernel
from tests.notebook.views import all_items, final_shown, status_updates, view_of, wait_view

pytestmark = pytest.mark.kernel

SETUP = """
%load_ext agentnb
import asyncio
import agentnb
from agentnb.notebook import NotebookSink

async def deploy(target):        # choices, no default: headless, it cannot go on
    answer = await agentnb.ask(f"Deploy {target.strip()}?", choices=["yes", "no"])
    agentnb.emit(f"deploying {target.strip()}: {answer}")
    return answer

async def name_it(thing):        # free text
    name = await agentnb.ask(f"Name for {thing.strip()}?", default="anon")
    agentnb.emit(f"named {name}")
    return name

async def careful(thing):        # a default: headless, that is the answer
    return await agentnb.ask(f"Touch {thing.strip()}?", choices=["yes", "no"], default="no")

async def chatty(thing):         # text, then a question at once
    agentnb.emit("looking; ")
    agentnb.emit("still looking; ")
    return await agentnb.ask("Go on?", choices=["go", "halt"])

seen = []

async def watched(thing):        # sees the cancellation while it asks
    try:
        return await agentnb.ask("Wait for me?", choices=["yes", "no"])
    except asyncio.CancelledError:
        seen.append(thing)
        raise

async def parent(thing):         # a sub-run asks; the cell's view answers it
    return await agentnb.run(deploy, thing, name="child")
"""


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    kernel = Kernel()
    try:
        kernel.run_ok(SETUP)
        yield kernel
    finally:
        kernel.close()


def asks(k: Kernel, comm: str) -> list[list[Any]]:
    return [item for item in all_items(k, comm) if item[0] == "ask"]


def wait_ask(k: Kernel, comm: str, count: int = 1) -> list[Any]:
    """Wait until the view *comm* has shown *count* questions; return the last."""
    k.wait_for(lambda: len(asks(k, comm)) >= count, 20, "the question in the view")
    return asks(k, comm)[count - 1]


def answers(k: Kernel, comm: str) -> list[list[Any]]:
    return [item for item in all_items(k, comm) if item[0] == "answer"]


def refusals(k: Kernel, comm: str) -> list[dict[str, Any]]:
    return [c for c in k.custom(comm) if c.get("t") == "refused"]


def answer(k: Kernel, comm: str, ask_id: str, value: Any) -> str:
    return k.comm_send(comm, {"t": "answer", "ask_id": ask_id, "value": value})


def finished(k: Kernel, msg_id: str, comm: str) -> None:
    """Wait until a background cell's run has ended and left its transcript."""
    k.wait_for(lambda: bool(status_updates(k, comm)), 20, "the run's end")
    k.wait_for(lambda: final_shown(k.cells[msg_id]), 20, "the final transcript")


# -- answered from the view ---------------------------------------------------------


def test_a_blocking_cell_waits_for_the_views_answer_and_uses_it(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o deployed deploy\nprod")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    assert ask[:2] == ["ask", ""]
    assert ask[3:] == ["Deploy prod?", ["yes", "no"], None, ""]
    k.pump(0.3)  # a bounded wait for "no change": the cell waits for its answer
    assert not k.idle(cell_id)
    answer(k, comm, ask[2], "yes")
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert answers(k, comm) == [["answer", "", ask[2], "yes", "cell"]]
    assert status_updates(k, comm) == ["done"]
    assert k.value("deployed") == "'yes'"
    assert cell.final["text/plain"] == (
        "? Deploy prod? [yes/no]\n= yes (by cell)\ndeploying prod: yes"
    )
    markdown = cell.final["text/markdown"]
    assert "<strong>&#63; Deploy prod&#63; &#91;yes&#47;no&#93;</strong>" in markdown
    assert "<em>&#61; yes &#40;by cell&#41;</em>" in markdown


def test_free_text_is_answered_with_what_was_typed(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o named name_it\nthe cat")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    assert ask[3:] == ["Name for the cat?", None, "anon", ""]
    answer(k, comm, ask[2], "Tom <b>&")
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert k.value("named") == "'Tom <b>&'"
    assert "= Tom <b>& (by cell)" in cell.final["text/plain"]
    assert "&#61; Tom &#60;b&#62;&#38; &#40;by cell&#41;" in cell.final["text/markdown"]


def test_a_sub_runs_question_is_answered_by_the_cells_view(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o sub parent\nstaging")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    assert ask[1] == "child"
    answer(k, comm, ask[2], "no")
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert answers(k, comm) == [["answer", "child", ask[2], "no", "cell"]]
    assert k.value("sub") == "'no'"
    assert cell.final["text/plain"] == (
        "[child] ? Deploy staging? [yes/no]\n[child] = no (by cell)\n"
        "[child] deploying staging: no\nno"
    )


def test_the_question_is_sent_at_once_not_held_by_the_batching(k: Kernel) -> None:
    # A flush period of a minute: the question must still reach the view while the run
    # waits for it (and so must the text before it, sent with it).
    cell_id = k.submit("v = await agentnb.run(chatty, 'x', sink=NotebookSink(interval=60))")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    items = all_items(k, comm)
    assert [i[0] for i in items][-1] == "ask"
    assert "".join(i[2] for i in items if i[0] == "text") == "looking; still looking; "
    answer(k, comm, ask[2], "go")
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert k.value("v") == "'go'"
    assert all_items(k, comm)[-1] == ["answer", "", ask[2], "go", "cell"]


def test_a_background_cell_asks_and_is_answered(k: Kernel) -> None:
    cell = k.run_ok("%%agent -b -o bg deploy\nthe moon")  # returns at once
    comm = view_of(k, cell.msg_id)
    ask = wait_ask(k, comm)
    assert ask[3] == "Deploy the moon?"
    answer(k, comm, ask[2], "no")
    finished(k, cell.msg_id, comm)
    assert status_updates(k, comm) == ["done"]
    assert k.value("bg") == "'no'"
    assert "= no (by cell)\ndeploying the moon: no" in k.cells[cell.msg_id].final["text/plain"]


def test_two_runs_asking_at_once_each_get_their_own_answer(k: Kernel) -> None:
    first = k.run_ok("%%agent -b -o one deploy\nfirst")
    second = k.run_ok("%%agent -b -o two deploy\nsecond")
    views = [view_of(k, first.msg_id), view_of(k, second.msg_id)]
    ask_one, ask_two = (wait_ask(k, comm) for comm in views)
    assert (ask_one[3], ask_two[3]) == ("Deploy first?", "Deploy second?")
    # Each view answers its own run only: the other's question is unknown there.
    answer(k, views[0], ask_two[2], "yes")
    k.wait_for(lambda: bool(refusals(k, views[0])), 20, "the refusal")
    assert "has no question" in refusals(k, views[0])[0]["message"]
    answer(k, views[1], ask_two[2], "yes")
    answer(k, views[0], ask_one[2], "no")
    for cell, comm in zip((first, second), views, strict=True):
        finished(k, cell.msg_id, comm)
    assert (k.value("one"), k.value("two")) == ("'no'", "'yes'")
    assert answers(k, views[0]) == [["answer", "", ask_one[2], "no", "cell"]]
    assert answers(k, views[1]) == [["answer", "", ask_two[2], "yes", "cell"]]


def test_stop_while_asking_cancels_the_run(k: Kernel) -> None:
    cell_id = k.submit("%%agent watched\nstop me")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    k.comm_send(comm, {"t": "stop"})
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()  # stopped: Run All goes on
    assert status_updates(k, comm) == ["cancelled"]
    assert all_items(k, comm)[-1] == ["cancelled", "", "stopped from the notebook"]
    assert answers(k, comm) == []
    assert k.value("seen.count('stop me')") == "1"
    assert cell.final["text/plain"] == (
        "? Wait for me? [yes/no]\ncancelled: stopped from the notebook"
    )
    # The question is closed with its run: a late answer is refused.
    answer(k, comm, ask[2], "yes")
    k.wait_for(lambda: bool(refusals(k, comm)), 20, "the refusal")
    assert refusals(k, comm)[0]["ask_id"] == ask[2]


def test_a_refused_answer_comes_back_and_the_question_stays_open(k: Kernel) -> None:
    cell_id = k.submit("%%agent -o kept deploy\nthe refusal")
    comm = wait_view(k, cell_id)
    ask = wait_ask(k, comm)
    answer(k, comm, ask[2], "maybe")
    k.wait_for(lambda: bool(refusals(k, comm)), 20, "the refusal")
    refused = refusals(k, comm)
    assert refused[0]["ask_id"] == ask[2]
    assert "'maybe' is not one of the choices ['yes', 'no']" in refused[0]["message"]
    for bad in ({"ask_id": ask[2], "value": 3}, {"ask_id": 7, "value": "yes"}):
        k.comm_send(comm, {"t": "answer", **bad})
    k.wait_for(lambda: len(refusals(k, comm)) == 3, 20, "the refusals")
    assert "an answer is a str, got int" in refusals(k, comm)[1]["message"]
    assert refusals(k, comm)[2]["ask_id"] == ""  # not a str: not echoed
    k.pump(0.3)  # a bounded wait for "no change": the run still waits
    assert not k.idle(cell_id)
    assert answers(k, comm) == []
    answer(k, comm, ask[2], "yes")
    cell = k.wait(cell_id)
    assert cell.ok, cell.summary()
    assert k.value("kept") == "'yes'"
    answer(k, comm, ask[2], "no")  # exactly one answer is taken
    k.wait_for(lambda: len(refusals(k, comm)) == 4, 20, "the refusal")
    assert "has ended" in refusals(k, comm)[3]["message"]


def test_run_all_of_asking_cells_answers_each_in_turn(k: Kernel) -> None:
    codes = [
        "%%agent -o r1 deploy\nalpha",
        "%agent -o r2 name_it the dog",
        "r3 = await agentnb.notebook.show(careful, 'gamma')",
        "%%agent -o r4 deploy\ndelta",
    ]
    ids = [k.submit(code) for code in codes]  # queued at once, like Run All
    replies = ["yes", "Rex", "yes", "no"]
    for msg_id, value in zip(ids, replies, strict=True):
        comm = wait_view(k, msg_id)
        ask = wait_ask(k, comm)
        later = ids[ids.index(msg_id) + 1 :]
        started = [m for i in later for m in k.cells[i].of_type("execute_input")]
        assert started == [], "a queued cell ran while one waited for its answer"
        answer(k, comm, ask[2], value)
        cell = k.wait(msg_id)
        assert cell.ok, cell.summary()
    order = [k.reply_order.index(i) for i in ids]
    assert order == sorted(order)
    assert [k.value(f"r{i}") for i in range(1, 5)] == [repr(v) for v in replies]


# -- headless ---------------------------------------------------------------------


def test_headless_a_question_takes_its_default_at_once(k: Kernel) -> None:
    for code in (
        "%%agent -o h1 careful\nthe file",
        "%agent -o h2 careful the file",
        "%agent -b -o h3 careful the file",
        "h4 = await agentnb.run(careful, 'the file', sink=NotebookSink())",
        "h5 = await agentnb.notebook.show(name_it, 'the file')",
    ):
        cell = k.wait(k.submit(code, interactive=False))
        assert cell.ok, (code, cell.summary())
        comm = view_of(k, cell.msg_id)
        ask_id = asks(k, comm)[0][2]
        default = "anon" if "name_it" in code else "no"
        assert answers(k, comm) == [["answer", "", ask_id, default, "default"]], code
        assert f"= {default} (by default)" in cell.final["text/plain"]
    assert [k.value(f"h{i}") for i in range(1, 6)] == ["'no'"] * 4 + ["'anon'"]


def test_headless_a_question_without_a_default_fails_the_cell_naming_it(k: Kernel) -> None:
    for code in ("%%agent deploy\nproduction", "%agent -b deploy production"):
        cell = k.wait(k.submit(code, interactive=False), timeout=20)  # no hang
        assert cell.status == "error", cell.summary()
        [error] = cell.errors
        assert error["ename"] == "NoAnswer"
        assert "'Deploy production?'" in error["evalue"]
        assert "default=" in error["evalue"]  # what to do
        assert status_updates(k, view_of(k, cell.msg_id)) == ["error"]


def test_a_notebook_run_by_nbclient_takes_defaults_and_names_the_unanswered_question() -> None:
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    new_cell = nbformat.v4.new_code_cell
    nb.cells = [
        new_cell(code)  # type: ignore[no-untyped-call]
        for code in (
            SETUP,
            "%%agent -o a careful\nthe disk",
            "%agent -b -o b name_it the disk",
            "print(a, b)",
            "%%agent deploy\nthe disk",
        )
    ]
    client = NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    outputs = [cell.outputs for cell in nb.cells]
    texts = [
        "".join(o.get("data", {}).get("text/plain", "") for o in cell_outputs)
        for cell_outputs in outputs
    ]
    assert "? Touch the disk? [yes/no] (default: no)\n= no (by default)" in texts[1]
    assert "? Name for the disk? (default: anon)\n= anon (by default)\nnamed anon" in texts[2]
    assert [o.get("text") for o in outputs[3]] == ["no anon\n"]
    [error] = [o for o in outputs[4] if o.output_type == "error"]
    assert error.ename == "NoAnswer"
    assert "'Deploy the disk?'" in error.evalue


def test_the_events_format_leaves_out_the_random_question_id(k: Kernel) -> None:
    cell = k.wait(k.submit("%%agent -f events careful\nthe log", interactive=False))
    assert cell.ok, cell.summary()
    assert cell.final["text/plain"] == (
        'careful ask {"choices": ["yes", "no"], "default": "no", "prompt": "Touch the log?"}\n'
        'careful answer {"by": "default", "value": "no"}\n'
        'careful done {"result": "no"}'
    )


def test_outside_a_kernel_the_sink_takes_no_answers_unless_told() -> None:
    assert NotebookSink().answers is False  # no cell, no one to answer in it
    assert NotebookSink(answers=True).answers is True
    with pytest.raises(ValueError, match="answers must be True, False or None, got 'yes'"):
        NotebookSink(answers="yes")  # type: ignore[arg-type]
