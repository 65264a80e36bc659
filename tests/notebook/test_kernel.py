"""The notebook front in a real ipykernel: what a front end (JupyterLab, nbclient) receives.

Every test talks to a real kernel over ZMQ (harness/kernel.py) and checks the messages
on the wire: the cell's outputs, the RunView widget's comm messages, their parent
headers, replies and their order. Demo agents run at speed 0 unless a test needs a
run that lasts (then a notebook agent calls ``poet`` with an explicit speed).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

import pytest

import agentnb
from harness.kernel import WIDGET_MIME, Cell, Kernel, Msg, parent_id
from tests.notebook.views import (
    all_items,
    final_shown,
    has_text,
    items_of,
    local_run,
    state_msg,
    status_updates,
    view_of,
    wait_view,
)

pytestmark = pytest.mark.kernel

# Agents the tests run, defined in the notebook (none of them registered).
SETUP = """
%load_ext agentnb
import asyncio, threading
import agentnb
from agentnb.demo import poet

async def slowpoet(topic):      # about 0.3 s a run
    return await poet(topic, speed=6)

async def poet2(topic):         # about 1 s a run
    return await poet(topic, speed=2)

seen = []                       # topics whose run saw the cancellation

async def watched(topic):       # about 2 s a run
    try:
        return await poet(topic, speed=1)
    except asyncio.CancelledError:
        seen.append(topic.strip())
        raise

async def echo(text):
    return text

def shout(text):                # a sync function (runs in a worker thread)
    agentnb.emit(text.upper())
    return len(text)

async def words(text):          # an async generator that yields text
    for word in text.split():
        yield word + " "

async def xss(text):
    agentnb.emit("<script>alert(1)</script> & <b>bold</b>")
    return "ok"

gate = threading.Event()

def work(text):
    agentnb.emit("before the gate; ")
    gate.wait(10)
    agentnb.emit("after the gate")
    return text

async def threaded(text):      # emits from a worker thread
    return await asyncio.to_thread(work, text)

async def runs_ended(timeout=20):  # until every run's task and sink feeder has ended
    async with asyncio.timeout(timeout):
        while any(t.get_name().startswith("agentnb ") and not t.done()
                  for t in asyncio.all_tasks()):
            await asyncio.sleep(0.01)

def other_tasks():
    me = asyncio.current_task()
    return sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks()
                  if t is not me and not t.done())
"""


def start(setup: str = SETUP) -> tuple[Kernel, str]:
    """A kernel with the setup cell run; and its tasks (other than the cell's) at rest."""
    kernel = Kernel({"AGENTNB_DEMO_SPEED": "0"})
    try:
        kernel.run_ok(setup)
        return kernel, kernel.value("other_tasks()")
    except BaseException:
        kernel.close()
        raise


@pytest.fixture(scope="module")
def nb() -> Iterator[tuple[Kernel, str]]:
    kernel, rest = start()
    yield kernel, rest
    kernel.close()


@pytest.fixture
def k(nb: tuple[Kernel, str]) -> Kernel:
    return nb[0]


# -- helpers -----------------------------------------------------------------------


def index(k: Kernel, msg: Msg) -> int:
    """Position of an IOPub message in arrival order."""
    return next(i for i, m in enumerate(k.iopub) if m is msg)


def idle_index(k: Kernel, msg_id: str) -> int:
    return next(
        i
        for i, m in enumerate(k.iopub)
        if m["msg_type"] == "status"
        and m["content"]["execution_state"] == "idle"
        and parent_id(m) == msg_id
    )


def input_index(k: Kernel, msg_id: str) -> int:
    return next(
        i
        for i, m in enumerate(k.iopub)
        if m["msg_type"] == "execute_input" and parent_id(m) == msg_id
    )


def usage_error(cell: Cell) -> str:
    """The short message of a UsageError: on stderr, no error output, no traceback."""
    assert cell.status == "error", cell.summary()
    assert cell.errors == [], f"a traceback was shown: {cell.summary()}"
    text = cell.stream("stderr")
    assert text.startswith("UsageError: "), cell.summary()
    assert len(text.strip().splitlines()) <= 2, text
    assert "Traceback" not in text
    return text


# -- 1. the magics -----------------------------------------------------------------


def test_agent_cell_shows_the_live_view_then_the_final_transcript(k: Kernel) -> None:
    cell = k.run_ok("%%agent poet\nWrite four lines about the sea.")
    value, transcript, _ = local_run("Write four lines about the sea.")  # the body, minus its "\n"
    outputs = cell.of_type("display_data", "execute_result", "stream", "error")
    assert [m["msg_type"] for m in outputs] == ["display_data", "display_data"], cell.summary()
    live, final = (m["content"]["data"] for m in outputs)
    assert set(live) == {WIDGET_MIME, "text/plain"}
    assert live["text/plain"] == ""  # where widgets cannot run, no bare "RunView(poet)" line
    assert live[WIDGET_MIME]["model_id"] == view_of(k, cell.msg_id)
    assert set(final) == {"text/markdown", "text/plain"}
    assert value in final["text/plain"]  # the poem, byte for byte
    assert final["text/plain"] == transcript.plain()
    assert final["text/markdown"] == transcript.markdown()
    assert status_updates(k, view_of(k, cell.msg_id)) == ["done"]


@pytest.mark.parametrize(
    ("code", "agent_input"),
    [
        ("%agent poet the sea", "the sea"),
        ("%agent poet   the  sea ", "the  sea"),  # as typed, ends trimmed
        ("%agent poet why is the sea salty?", "why is the sea salty?"),  # not IPython help
        ("%agent poet what's the tide", "what's the tide"),
    ],
)
def test_agent_line_form_takes_the_rest_of_the_line_as_input(
    k: Kernel, code: str, agent_input: str
) -> None:
    cell = k.run_ok(code)
    value, transcript, _ = local_run(agent_input)
    assert cell.widget_ids == [view_of(k, cell.msg_id)]
    assert value in cell.final["text/plain"]
    assert cell.final["text/markdown"] == transcript.markdown()


def test_agent_list_names_the_demo_agents_with_their_descriptions(k: Kernel) -> None:
    cell = k.run_ok("%agent --list")
    listing = cell.stream()
    for info in agentnb.list_agents():
        if info.fn.__module__ == "agentnb.demo":
            assert re.search(rf"^{info.name}\s+{re.escape(info.description)}$", listing, re.M)
    assert cell.displays == []


@pytest.mark.parametrize("code", ["%agent?", "%%agent?"])
def test_agent_help_shows_the_usage_and_the_options(k: Kernel, code: str) -> None:
    cell = k.run_ok(code)
    help_text = "".join(p["data"]["text/plain"] for p in cell.payload if p["source"] == "page")
    assert "%agent [-b] [-o VAR] [-f {markdown,text,events}] [--list] [name]" in help_text
    for option in ("--background", "--out VAR", "--format", "--list"):
        assert option in help_text


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("%agent nosuch the sea", "no agent named 'nosuch'. Known agents: "),
        ("%%agent nosuch\nthe sea", "no agent named 'nosuch'. Known agents: "),
        ("%agent -f nope poet", "argument -f/--format: invalid choice: 'nope'"),
        ("%%agent poet extra words\nthe sea", "unexpected: 'extra words'"),
        ("%agent", "which agent?"),
        ("%agent --nope poet", "unrecognized arguments: --nope"),
    ],
)
def test_unknown_agent_and_bad_arguments_give_a_short_usage_error(
    k: Kernel, code: str, says: str
) -> None:
    cell = k.execute(code)
    text = usage_error(cell)
    assert says in text
    if "Known agents" in says:
        assert "poet" in text
        assert "researcher" in text
    assert cell.displays == [], "a run was started"


def test_out_stores_the_agents_result(k: Kernel) -> None:
    k.run_ok("%%agent -o poem_out poet\nthe sea")
    value, _, _ = local_run("the sea")
    assert k.value("poem_out") == repr(value)
    k.run_ok("%agent --out poem_line poet the wind")
    assert k.value("poem_line") == repr(local_run("the wind")[0])


def test_format_text_leaves_only_plain_text(k: Kernel) -> None:
    cell = k.run_ok("%%agent -f text poet\nthe sea")
    _, transcript, _ = local_run("the sea")
    assert set(cell.final) == {"text/plain"}
    assert cell.final["text/plain"] == transcript.plain()
    options_after_name = k.run_ok("%%agent poet --format text\nthe sea")
    assert options_after_name.final == cell.final


def test_format_events_leaves_one_line_per_event(k: Kernel) -> None:
    cell = k.run_ok("%agent -f events poet the sea")
    value, _, kinds = local_run("the sea")
    assert set(cell.final) == {"text/plain"}
    lines = cell.final["text/plain"].split("\n")
    assert [line.split(" ")[1] for line in lines] == kinds
    assert all(line.startswith("poet ") for line in lines)
    texts = [re.fullmatch(r'poet text \{"text": (".*")\}', line) for line in lines]
    assert "".join(json.loads(m.group(1)) for m in texts if m) == value


def test_notebook_agents_of_every_shape_get_the_input_as_their_one_argument(k: Kernel) -> None:
    k.run_ok("%%agent -o echoed echo\nline one\n  line 'two'")
    assert k.value("echoed") == repr("line one\n  line 'two'")  # the body, final line break dropped
    sync = k.run_ok("%agent -o shouted shout hello there")
    assert sync.final["text/plain"] == "HELLO THERE"
    assert k.value("shouted") == "11"
    gen = k.run_ok("%agent -o said words a b  c")
    assert gen.final["text/plain"] == "a b c "
    assert k.value("said") == repr("a b c ")
    assert status_updates(k, view_of(k, gen.msg_id)) == ["done"]


def test_a_failing_agent_shows_failed_its_error_and_stops_run_all(k: Kernel) -> None:
    cell = k.execute("%agent flaky please fail")
    message = "flaky failed as asked (input: 'please fail')"
    assert cell.status == "error"  # so Run All stops here, as after any failing cell
    [error] = cell.errors
    assert (error["ename"], error["evalue"]) == ("RuntimeError", message)
    comm = view_of(k, cell.msg_id)
    assert status_updates(k, comm) == ["error"]
    kind, path, summary, traceback = all_items(k, comm)[-1]
    assert (kind, path, summary) == ("error", "", f"RuntimeError: {message}")
    assert "Traceback (most recent call last)" in traceback
    # The error is shown once: by the cell's error output, not again by the transcript.
    assert "RuntimeError" not in cell.final["text/plain"]
    assert "RuntimeError" not in cell.final["text/markdown"]
    # Its traceback starts in the agent's own frames: no agentnb plumbing, no generated line.
    shown = "\n".join(error["traceback"])
    assert "flaky" in shown
    for plumbing in ("run_magic", "__import__", "_invoke.py", "_run.py", "asyncio"):
        assert plumbing not in shown, (plumbing, shown)
    # The transcript comes before the error, as the run ended before the cell did.
    assert index(k, cell.of_type("display_data")[-1]) < index(k, cell.of_type("error")[0])


def test_a_failing_agent_cell_shows_its_own_frames_once(k: Kernel) -> None:
    k.run_ok(
        "import agentnb\n"
        "def deep(x):\n    raise ValueError(f'bad {x}')\n"
        "@agentnb.agent\nasync def breaks(text):\n    agentnb.emit('working ')\n    deep(text)\n"
    )
    cell = k.execute("%%agent breaks\nthe sea")
    [error] = cell.errors
    assert (error["ename"], error["evalue"]) == ("ValueError", "bad the sea")
    shown = "\n".join(error["traceback"])
    assert "breaks" in shown
    assert "deep" in shown
    for plumbing in ("run_magic", "__import__", "agentnb/", "asyncio"):
        assert plumbing not in shown, (plumbing, shown)
    assert shown.count("bad the sea") == 1  # one error, one message
    assert "working" in cell.final["text/plain"]
    assert "ValueError" not in cell.final["text/plain"]


def test_an_agent_without_input_runs_from_its_name_alone(k: Kernel) -> None:
    k.run_ok("import agentnb\n@agentnb.agent\nasync def noargs():\n    return 'no input needed'\n")
    cell = k.run_ok("%agent noargs")
    assert "no input needed" in cell.final["text/plain"]
    refused = k.execute("%agent noargs some words")
    assert "takes no input" in refused.stream("stderr") + str(refused.errors)


def test_an_option_after_the_agents_name_is_refused_with_the_right_order(k: Kernel) -> None:
    cell = k.execute("%agent poet -o late the sea")
    said = cell.stream("stderr") + str(cell.errors)
    assert "%agent -o late poet the sea" in said
    assert cell.of_type("display_data") == []  # nothing ran: no "-o late the sea" poem
    assert k.run_ok("%agent poet -- -o late").final["text/plain"]  # after "--": the input


# -- 2. wire discipline --------------------------------------------------------------


def test_widget_batches_are_few_and_add_up_to_the_final_text(k: Kernel) -> None:
    cell = k.run_ok("%%agent poet\nthe sea")
    value, _, kinds = local_run("the sea")
    comm = view_of(k, cell.msg_id)
    batches = [m for m in k.comm_msgs(comm) if m["content"]["data"]["method"] == "custom"]
    log = all_items(k, comm)
    # Leading edge: the first item (the tool call) went out alone, at once.
    assert items_of(k, comm)[0]["offset"] == 0
    assert len(items_of(k, comm)[0]["items"]) == 1
    # Coalesced: one batch on the leading edge, then at most one per 0.1 s, and the last.
    first, last = batches[0]["header"]["date"], batches[-1]["header"]["date"]
    allowed = 2 + (last - first).total_seconds() / 0.1
    assert len(batches) <= allowed, f"{len(batches)} batches over {last - first}"
    assert len(batches) < kinds.count("text") / 4  # far fewer than the chunks
    text = "".join(item[2] for item in log if item[0] == "text" and item[1] == "")
    assert text == value
    assert value in cell.final["text/plain"]


def test_agent_html_is_escaped_in_markdown_and_exact_in_plain_text(k: Kernel) -> None:
    cell = k.run_ok("%agent xss go")
    raw = "<script>alert(1)</script> & <b>bold</b>"
    markdown, plain = cell.final["text/markdown"], cell.final["text/plain"]
    assert plain == raw
    assert "<script" not in markdown.lower()
    assert "<b>" not in markdown
    assert markdown == (
        '<div class="mathjax_ignore">\n\n&#60;script&#62;alert&#40;1&#41;&#60;&#47;script&#62; '
        "&#38; &#60;b&#62;bold&#60;&#47;b&#62;\n\n</div>"
    )
    log = all_items(k, view_of(k, cell.msg_id))
    assert log == [["text", "", raw]]  # the live view gets the text (it shows it as text)


# -- 3. Run All ----------------------------------------------------------------------


def test_run_all_runs_ten_blocking_cells_in_order_and_answers_requests_mid_run(
    k: Kernel,
) -> None:
    codes = [f"%%agent slowpoet\ncell {i}" for i in range(10)]
    ids = [k.submit(code) for code in codes[:5]]
    info_queued = k.kernel_info()  # queued between cell 5 and cell 6
    ids += [k.submit(code) for code in codes[5:]]
    # Mid-run: once the first cell streams, a widget message and a kernel_info.
    first_view = wait_view(k, ids[0])
    k.wait_for(lambda: bool(items_of(k, first_view)), 20, "the first batch")
    sync_id = k.comm_send(first_view, {"t": "sync", "have": 0})
    info_mid_run = k.kernel_info()
    cells = [k.wait(msg_id, timeout=60) for msg_id in ids]
    k.wait_for(lambda: info_mid_run in k.replies, 20, "the kernel_info reply")

    assert [c.status for c in cells] == ["ok"] * 10, [c.summary() for c in cells]
    order = [k.reply_order.index(msg_id) for msg_id in ids]
    assert order == sorted(order)
    assert order[4] < k.reply_order.index(info_queued) < order[5]
    assert k.replies[info_mid_run]["content"]["status"] == "ok"
    for before, after in itertools.pairwise(ids):
        assert idle_index(k, before) < input_index(k, after), "cells overlapped"
    # The resync request was answered while the cells were still running.
    answers = [m for m in k.comm_msgs(first_view) if parent_id(m) == sync_id]
    assert len(answers) == 1
    assert answers[0]["content"]["data"]["content"]["offset"] == 0
    assert answers[0]["header"]["date"] < cells[-1].reply["header"]["date"]  # type: ignore[index]
    for i, cell in enumerate(cells):
        comm = view_of(k, cell.msg_id)
        assert cell.widget_ids == [comm]
        assert local_run(f"cell {i}")[0] in cell.final["text/plain"]
        assert {parent_id(m) for m in k.comm_msgs(comm) if parent_id(m) != sync_id} == {cell.msg_id}


# -- 4. cancellation -----------------------------------------------------------------


def test_stop_button_cancels_a_blocking_cell(nb: tuple[Kernel, str]) -> None:
    k, rest = nb
    cell_id = k.submit("%%agent watched\nthe stop")
    comm = wait_view(k, cell_id)
    k.wait_for(lambda: has_text(k, comm), 20, "streamed text")
    assert k.idle(cell_id) is False, "the run ended before the stop could be tested"
    k.comm_send(comm, {"t": "stop"})
    cell = k.wait(cell_id)
    # A bounded wait for "no change": an agent still running would stream within it.
    k.pump(0.4)

    assert cell.ok, cell.summary()
    assert cell.errors == []
    assert cell.stream("stderr") == ""
    assert status_updates(k, comm) == ["cancelled"]
    cancelled = state_msg(k, comm, "status", "cancelled")
    assert all(index(k, m) < index(k, cancelled) for m in k.comm_msgs(comm) if m is not cancelled)
    log = all_items(k, comm)
    assert log[-1] == ["cancelled", "", "stopped from the notebook"]
    text = "".join(item[2] for item in log if item[0] == "text")
    full = local_run("the stop")[0]
    assert full.startswith(text)
    assert len(text) < len(full)
    assert cell.final["text/plain"].rstrip("\n").endswith("\ncancelled: stopped from the notebook")
    assert k.value("seen.count('the stop')") == "1"  # the agent saw the cancellation
    assert k.value("other_tasks()") == rest


def test_stop_button_cancels_a_background_run(nb: tuple[Kernel, str]) -> None:
    k, rest = nb
    cell = k.run_ok("%%agent --background watched\nthe background stop")
    comm = view_of(k, cell.msg_id)
    k.wait_for(lambda: has_text(k, comm), 20, "streamed text")
    assert status_updates(k, comm) == []
    stop_id = k.comm_send(comm, {"t": "stop"})
    k.wait_for(lambda: status_updates(k, comm) == ["cancelled"], 20, "the cancelled status")
    k.wait_for(lambda: any("text/markdown" in d for d in cell.displays), 20, "the transcript")
    k.pump(0.4)  # a bounded wait for "no change": nothing more may come for the run

    assert cell.final["text/plain"].rstrip("\n").endswith("\ncancelled: stopped from the notebook")
    cancelled = state_msg(k, comm, "status", "cancelled")
    assert all(index(k, m) < index(k, cancelled) for m in k.comm_msgs(comm) if m is not cancelled)
    # Everything the run sent went to its own cell, not to the stop request.
    assert {parent_id(m) for m in k.comm_msgs(comm)} == {cell.msg_id}
    assert not [m for m in k.iopub if parent_id(m) == stop_id and m["msg_type"] != "status"]
    assert k.value("seen.count('the background stop')") == "1"
    assert k.value("other_tasks()") == rest


def test_kernel_interrupt_cancels_a_blocking_run_and_the_kernel_goes_on() -> None:
    k, rest = start()
    try:
        cell_id = k.submit("%%agent watched\nthe interrupt")
        comm = wait_view(k, cell_id)
        k.wait_for(lambda: has_text(k, comm), 20, "streamed text")
        assert k.idle(cell_id) is False, "the run ended before the interrupt could be tested"
        k.interrupt()
        cell = k.wait(cell_id)
        # A bounded wait for "no change": an agent still running would stream within it.
        k.pump(0.4)

        assert cell.status == "error"
        [error] = cell.errors
        assert error["ename"] == "KeyboardInterrupt"
        shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
        assert "The above exception" not in shown  # no chained CancelledError
        assert "During handling" not in shown
        assert shown.splitlines()[-1].startswith("KeyboardInterrupt")
        assert len(error["traceback"]) <= 5, shown
        assert status_updates(k, comm) == ["cancelled"]
        assert "cancelled" in cell.final["text/plain"].splitlines()[-1]
        error_msg = cell.of_type("error")[0]
        assert all(index(k, m) < index(k, error_msg) for m in k.comm_msgs(comm))
        assert all_items(k, comm)[-1][0] == "cancelled"
        assert k.value("seen") == "['the interrupt']"
        assert k.value("other_tasks()") == rest
        after = k.run_ok("%agent -o after_interrupt poet the sea")
        assert local_run("the sea")[0] in after.final["text/plain"]
    finally:
        k.close()


# -- 5. concurrency ------------------------------------------------------------------


def test_three_background_runs_stream_at_once_each_into_its_own_cell(
    nb: tuple[Kernel, str],
) -> None:
    k, rest = nb
    ids = [k.submit(f"%%agent -b poet2\ntopic {i}") for i in range(3)]
    cells = [k.wait(msg_id) for msg_id in ids]
    assert all(c.ok for c in cells)
    comms = [view_of(k, msg_id) for msg_id in ids]
    k.wait_for(lambda: all(status_updates(k, c) == ["done"] for c in comms), 30, "the ends")
    k.wait_for(lambda: all(final_shown(c) for c in cells), 20, "the final transcripts")

    firsts, ends = [], []
    for i, (cell, comm) in enumerate(zip(cells, comms, strict=True)):
        assert cell.widget_ids == [comm]
        assert local_run(f"topic {i}")[0] in cell.final["text/plain"]
        msgs = k.comm_msgs(comm)
        assert {parent_id(m) for m in msgs} == {cell.msg_id}
        finals = [
            m
            for m in k.iopub
            if m["msg_type"] == "display_data"
            and "text/markdown" in m["content"]["data"]
            and f"Topic {i} " in m["content"]["data"]["text/plain"]
        ]
        assert [parent_id(m) for m in finals] == [cell.msg_id]
        # The cell itself returned before its run ended.
        assert cell.reply is not None
        assert cell.reply["header"]["date"] < finals[0]["header"]["date"]
        batches = [m for m in msgs if m["content"]["data"]["method"] == "custom"]
        firsts.append(batches[0]["header"]["date"])
        ends.append(batches[-1]["header"]["date"])
    assert max(firsts) < min(ends), "the runs did not stream at the same time"
    assert k.value("other_tasks()") == rest


def test_a_worker_thread_emitting_in_a_run_lands_in_the_runs_cell(k: Kernel) -> None:
    start_id = k.run_ok("%%agent -b threaded\nT").msg_id
    comm = view_of(k, start_id)
    k.wait_for(lambda: has_text(k, comm), 20, "the first text")
    # The thread goes on while this cell waits for the run (and its view) to end.
    later = k.run_ok("gate.set()\nawait runs_ended()")
    k.wait_for(lambda: status_updates(k, comm) == ["done"], 20, "the run's end")
    k.wait_for(lambda: final_shown(k.cells[start_id]), 20, "the final transcript")

    log = all_items(k, comm)
    assert "".join(i[2] for i in log if i[0] == "text") == "before the gate; after the gate"
    after = [m for m in k.comm_msgs(comm) if "after the gate" in str(m["content"]["data"])]
    assert len(after) == 1
    assert later.reply is not None
    assert after[0]["header"]["date"] < later.reply["header"]["date"], "emitted after the cell"
    assert {parent_id(m) for m in k.comm_msgs(comm)} == {start_id}
    assert later.of_type("display_data", "comm_msg", "stream") == []
    assert k.cells[start_id].final["text/plain"] == "before the gate; after the gate"


def test_background_out_stores_the_agents_result(k: Kernel) -> None:
    cell = k.run_ok("%agent -b -o bg_poem poet2 the wind")
    comm = view_of(k, cell.msg_id)
    k.wait_for(lambda: status_updates(k, comm) == ["done"], 20, "the run's end")
    k.wait_for(lambda: final_shown(cell), 20, "the final transcript")
    assert k.value("bg_poem") == repr(local_run("the wind")[0])


def test_a_background_cell_run_headless_waits_and_keeps_its_transcript(k: Kernel) -> None:
    # nbclient, papermill and nbval take no input and stop listening to a cell when it
    # returns; so there a -b cell runs to completion and saves what JupyterLab would.
    interactive = k.run_ok("%agent -b poet2 the tide")
    assert "text/markdown" not in {key for d in interactive.displays for key in d}
    headless = k.wait(k.submit("%agent -b poet2 the tide", interactive=False), timeout=30)
    assert headless.ok, headless.summary()
    assert local_run("the tide")[0] in headless.final["text/plain"]
    comm = view_of(k, interactive.msg_id)
    k.wait_for(lambda: status_updates(k, comm) == ["done"], 20, "the background run's end")
    k.wait_for(lambda: final_shown(interactive), 20, "the final transcript")
    assert k.cells[interactive.msg_id].final == headless.final  # the same final outputs


# -- 6. nested loops (nest-asyncio2) with queued requests ----------------------------


@pytest.fixture(scope="module")
def nested() -> Iterator[Kernel]:
    kernel, _ = start()
    yield kernel
    kernel.close()


def assert_ran_in_order(k: Kernel, ids: list[str]) -> list[Cell]:
    cells = [k.wait(msg_id, timeout=30) for msg_id in ids]
    assert [c.status for c in cells] == ["ok"] * len(ids), [c.summary() for c in cells]
    order = [k.reply_order.index(msg_id) for msg_id in ids]
    assert order == sorted(order)
    for before, after in itertools.pairwise(ids):
        assert idle_index(k, before) < input_index(k, after), "a queued cell ran inside another"
    return cells


def test_run_sync_in_a_cell_keeps_the_queued_cells(nested: Kernel) -> None:
    k = nested
    first = k.submit("v = agentnb.run_sync(poet, 'x', speed=2)\nprint(len(v))")
    queued = [k.submit(f"print('queued', {i})") for i in range(3)]
    cells = assert_ran_in_order(k, [first, *queued])
    value = local_run("x")[0]
    assert cells[0].stream() == f"{len(value)}\n"
    assert [c.stream() for c in cells[1:]] == [f"queued {i}\n" for i in range(3)]
    assert k.value("v") == repr(value)


def test_run_cell_magic_from_a_cell_runs_in_the_background_or_says_what_to_do(
    nested: Kernel,
) -> None:
    # The registered magic cannot await; it nests no loop either: -b starts the run in the
    # background (queued cells go on), anything else is a UsageError saying what to do.
    k = nested
    first = k.submit("get_ipython().run_cell_magic('agent', '-b -o w poet2', 'x')\nprint('on')")
    queued = [k.submit(f"print('queued', {i})") for i in range(3)]
    cells = assert_ran_in_order(k, [first, *queued])
    assert cells[0].stream() == "on\n"
    assert [c.stream() for c in cells[1:]] == [f"queued {i}\n" for i in range(3)]
    value = local_run("x")[0]
    k.wait_for(lambda: k.value("'w' in globals()") == "True", 30, "the background result")
    assert k.value("w") == repr(value)
    text = usage_error(k.execute("get_ipython().run_line_magic('agent', 'poet2 x')"))
    assert "await agentnb.notebook.show(agent, input)" in text
    assert "%agent -b" in text


def test_a_cell_mixing_code_and_agent_lines_awaits_them_and_patches_no_loop(k: Kernel) -> None:
    cell = k.run_ok("n = 2\n%agent -o mixed poet2 the reef\nprint('after', n)")
    value = local_run("the reef")[0]
    assert cell.widget_ids  # the live view, as for a %%agent cell
    assert value in cell.final["text/plain"]
    assert cell.stream().endswith("after 2\n")
    assert k.value("mixed") == repr(value)
    # No nested loop, so nothing patched it: the kernel's loop is asyncio's own.
    patched = "hasattr(type(asyncio.get_running_loop()), '_nest_patched')"
    assert k.value(patched) == "False"


def test_an_agent_line_in_a_function_says_how_to_run_it(k: Kernel) -> None:
    assert "inside a function" in usage_error(k.execute("def f():\n    %agent poet2 x\nf()"))


def test_with_autoawait_off_an_agent_cell_says_to_turn_it_on() -> None:
    kernel, _ = start()
    try:
        kernel.run_ok("%autoawait off")
        # A UsageError, not a SyntaxError about generated code.
        assert "%autoawait on" in usage_error(kernel.execute("%%agent poet2\nthe sea"))
        kernel.run_ok("%autoawait on")
        assert kernel.run_ok("%%agent poet2\nthe sea").widget_ids
    finally:
        kernel.close()


def test_the_extension_alone_registers_no_agent() -> None:
    # The demo agents come from importing agentnb.demo (the tutorials do), not %load_ext.
    with Kernel({"AGENTNB_DEMO_SPEED": "0"}) as kernel:
        kernel.run_ok("%load_ext agentnb")
        assert kernel.value("[a.name for a in __import__('agentnb').list_agents()]") == "[]"
        assert "no agent named 'poet'" in usage_error(kernel.execute("%agent poet the sea"))
        kernel.run_ok("import agentnb.demo")
        assert kernel.run_ok("%agent poet the sea").widget_ids
