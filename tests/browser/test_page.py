"""The web page (agentnb/server/static) in real Chromium, against a real uvicorn.

``create_app`` serves the demo agents and a few agents of this file's own on
127.0.0.1 and a free port (harness/web.py); Chromium opens the page, picks an
agent, types an input and presses Start, while a sampler in the page reads the
run's state (``body[data-state]``) and the text shown every 50 ms. The text a
run must end with is the text its events carry, fetched again over the API
(``GET /api/runs/{id}/events``), and for the demo agents also the same agent run
here with no pauses (they are deterministic).

Nothing asserts a time. Needs Debian's ``chromium`` and ``playwright``; without
them these tests fail and say what to install.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from playwright.sync_api import Dialog

import agentnb
import agentnb.demo
import tests.hostile
from agentnb._format import call_line, result_line, usage_line
from agentnb.server import create_app
from harness.browser import Browser, Page, images_settled, wait_for
from harness.wait import until
from harness.web import serving
from tests.browser.pages import STREAMED_A_LITTLE, growth_moments, sampled_after, stopped_text
from tests.browser.streaming import ANSWER, ARGS, REASONING, USAGES, thinker
from tests.helpers import full_text

pytestmark = pytest.mark.browser

SAMPLE_MS = 50
SEP = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "  # between the names of a run's path
ENDED = ("done", "error", "cancelled")

# Agent data that would run script if it ever reached the page as markup.
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
# Line breaks of every kind, a chunk ending in CR whose LF starts the next one,
# line and paragraph separators, a tab, a NUL, emoji (surrogate pairs, a ZWJ
# sequence, a flag), and text that looks like SSE framing.
AWKWARD_CHUNKS = [
    "one\r",
    "\ntwo\rthree\nfour\r\n",
    "\r\n\r\n",
    "five\u2028six\u2029seven\t\x00eight\n",
    "😀🧪👩‍👩‍👧🇫🇷 é\r",
    "data: not an event\n\nid: x\x00\n: comment\n",
    "\r",
    "\n",
    "end\r",
]


async def hostile(_input: str = "") -> str:
    """Emits markup, as text and in every other kind of event, then fails with it."""
    agentnb.emit(agentnb.Status(HOSTILE))
    agentnb.emit(HOSTILE)
    call = agentnb.ToolCall(HOSTILE, {"html": HOSTILE})
    agentnb.emit(call)
    agentnb.emit(agentnb.ToolResult(HOSTILE, HOSTILE, call_id=call.call_id, is_error=True))
    agentnb.emit(agentnb.Custom("markup", {"html": HOSTILE}))
    raise ValueError(HOSTILE)


async def awkward(_input: str = "") -> str:
    """Streams text with every kind of line break and emoji."""
    for chunk in AWKWARD_CHUNKS:
        agentnb.emit(chunk)
    return "".join(AWKWARD_CHUNKS)


AGENTS: dict[str, Any] = {
    "everything": tests.hostile.everything,
    "poet": agentnb.demo.poet,
    "counter": agentnb.demo.counter,
    "researcher": agentnb.demo.researcher,
    "hostile": hostile,
    "awkward": awkward,
    "thinker": thinker,
}

SAMPLER = """(interval) => {
    const text = document.querySelector('[data-testid=text]');
    const read = () => ({
        t: performance.now(), status: document.body.dataset.state, text: text.textContent,
    });
    const samples = [read()];
    const timer = setInterval(() => samples.push(read()), interval);
    window.__agentnbSampler = {samples, timer, read};
}"""


@dataclass
class Sample:
    t: float
    status: str | None
    text: str | None


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    # Speed 1: the poet streams for about two seconds, as a model would.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTNB_DEMO_SPEED", "1")
        with serving(create_app(agents=AGENTS)) as url:
            yield url


@pytest.fixture
def page(browser: Browser, base: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        fresh = context.new_page()
        errors: list[str] = []
        fresh.on("pageerror", lambda exc: errors.append(str(exc)))
        # (An error answer is logged by Chromium itself as "Failed to load resource".)
        fresh.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        fresh.goto(base + "/")
        fresh.locator("[data-testid=agent]:enabled").wait_for()
        yield fresh
        assert not errors, f"the page reported errors: {errors}"
    finally:
        context.close()


def api_events(base: str, run_id: str) -> list[dict[str, Any]]:
    """All events of a (finished) run, as the server replays them: their JSON forms."""
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "GET", f"{base}/api/runs/{run_id}/events") as source,
    ):
        assert source.response.status_code == 200
        return [json.loads(sse.data) for sse in source.iter_sse()]


def api_text(base: str, run_id: str) -> str:
    """The text the run itself emitted (not its child runs), from the API."""
    events = api_events(base, run_id)
    return "".join(e["text"] for e in events if e["kind"] == "text" and e["run_id"] == run_id)


def start(page: Page, agent: str, text: str, *, sample: bool = True) -> None:
    page.get_by_label("Agent").select_option(agent)
    page.get_by_label("Input").fill(text)
    if sample:
        page.evaluate(SAMPLER, SAMPLE_MS)
    page.get_by_test_id("start").click()


def wait_end(page: Page, timeout: float = 60) -> str:
    state: str = wait_for(
        page,
        "(ended) => ended.includes(document.body.dataset.state) && document.body.dataset.state",
        ENDED,
        timeout=timeout,
    )
    return state


def samples(page: Page) -> list[Sample]:
    raw = page.evaluate(
        "() => { const s = window.__agentnbSampler; clearInterval(s.timer); return s.samples; }"
    )
    return [Sample(**s) for s in raw]


def shown_text(page: Page) -> str:
    text: str = page.evaluate("() => document.querySelector('[data-testid=text]').textContent")
    return text


def run_id(page: Page) -> str:
    value: str = page.evaluate("() => document.body.dataset.runId")
    assert value
    return value


def test_the_page_has_a_favicon_and_starts_with_the_poet_on_the_sea(
    browser: Browser, base: str
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        page.goto(base + "/")
        page.locator("[data-testid=agent]:enabled").wait_for()
        icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
        assert httpx.get(icon).headers["content-type"] == "image/svg+xml"
        assert httpx.get(base + "/favicon.ico").status_code == 200
        assert page.get_by_label("Agent").input_value() == "poet"
        assert page.get_by_label("Input").input_value() == "the sea"
        page.get_by_test_id("start").click()  # one click runs something sensible
        assert wait_end(page) == "done"
        assert missing == []
    finally:
        context.close()


def test_the_text_grows_while_the_agent_streams_and_ends_exact(page: Page, base: str) -> None:
    expected = full_text("poet", "the sea")
    start(page, "poet", "the sea")
    assert page.get_by_test_id("start").is_disabled()
    assert wait_end(page) == "done"
    sampled_after(page, ENDED, 6)  # a few samples after the end (the text stays): "no change"
    seen = samples(page)
    for s in seen:
        # Never anything but a beginning of the agent's text: no loss, no repeat, no reorder.
        assert s.text is not None
        assert expected.startswith(s.text), (s, expected)
    moments = growth_moments(seen, expected)
    assert len(moments) >= 3, f"the text grew at {len(moments)} sampled moments: {seen}"
    assert shown_text(page) == expected
    assert api_text(base, run_id(page)) == expected
    ended = next(i for i, s in enumerate(seen) if s.status == "done")
    assert all(s.text == expected for s in seen[ended:])
    # The status line, the tool call and its result.
    assert page.get_by_test_id("state").inner_text() == "done"
    assert page.get_by_test_id("status-agent").inner_text() == "poet"
    assert page.get_by_test_id("elapsed").inner_text().endswith(" s")
    assert page.get_by_test_id("message").inner_text() == ""  # the last status is not the end
    lines = page.get_by_test_id("events").locator("li").all_inner_texts()
    assert lines[0] == "→ rhymes(word=sea)"  # as the cell writes it
    assert lines[1] == '← rhymes: ["sea-deep", "sea-light", "sea-song"]'
    assert page.get_by_test_id("start").is_enabled()
    assert page.get_by_test_id("stop").is_disabled()


def test_stop_cancels_the_run_and_the_text_stops(page: Page, base: str) -> None:
    expected = full_text("counter", "300")  # 30 s at speed 1: long enough to be stopped
    start(page, "counter", "300")
    wait_for(page, STREAMED_A_LITTLE)
    page.get_by_test_id("stop").click()
    assert wait_end(page, timeout=20) == "cancelled"
    assert page.get_by_test_id("state").inner_text() == "cancelled"
    sampled_after(page, ["cancelled"], 20)  # 20 samples after the stop: "no change"
    seen = samples(page)
    stopped, final = stopped_text(seen, expected)
    assert len(final) < len(expected), "the run was not stopped before its end"
    assert len(growth_moments(seen[:stopped], expected)) >= 2
    described = httpx.get(f"{base}/api/runs/{run_id(page)}", timeout=10).json()
    assert described["status"] == "cancelled"
    assert api_text(base, run_id(page)) == final
    # The custom progress events merge into one line that counts them.
    progress = page.get_by_test_id("events").locator("li.custom")
    assert progress.count() == 1
    assert progress.inner_text().startswith('progress {"done":')
    assert page.get_by_test_id("start").is_enabled()


def test_agent_markup_is_shown_as_text_and_never_runs(page: Page, base: str) -> None:
    start(page, "hostile", "", sample=False)
    assert wait_end(page) == "error"
    images_settled(page)  # an <img onerror> has fired by now, if there is an <img>
    assert page.evaluate("() => typeof window.pwned") == "undefined"
    assert shown_text(page) == HOSTILE
    assert api_text(base, run_id(page)) == HOSTILE
    # No element came from the agent's data: the page's own markup only.
    assert page.evaluate("() => document.querySelectorAll('img, script:not([src])').length") == 0
    events = page.get_by_test_id("events")
    assert events.locator("script, img").count() == 0
    lines = events.locator("li").all_inner_texts()
    as_json = json.dumps(HOSTILE, ensure_ascii=False)
    call = agentnb.ToolCall(HOSTILE, {"html": HOSTILE})  # the lines the cell shows for them
    assert lines[0] == call_line(call)  # the tool call
    assert lines[1] == result_line(agentnb.ToolResult(HOSTILE, HOSTILE, is_error=True))
    assert lines[2] == f'markup {{"html":{as_json}}}'  # the custom event
    error = events.locator("li.error details")
    assert error.locator("summary").inner_text() == f"✗ ValueError: {HOSTILE}"
    error.locator("summary").click()
    traceback = error.locator("pre").inner_text()
    assert "Traceback" in traceback
    assert traceback.rstrip().endswith(f"ValueError: {HOSTILE}")
    assert page.get_by_test_id("message").inner_text() == f"ValueError: {HOSTILE}"
    assert page.get_by_test_id("state").inner_text() == "failed"  # the cell's word


# Every element the page makes for a run, and the attributes it sets (agent data goes
# only into text and the title attribute, both set as plain strings).
PAGE_AUDIT = r"""() => {
    const problems = [];
    const FORBIDDEN = /^(script|img|iframe|svg|math|object|embed|style|link|a|form|input)$/i;
    for (const root of document.querySelectorAll('#text, #events, #status')) {
        for (const el of root.querySelectorAll('*')) {
            const tag = el.tagName.toLowerCase();
            if (!['li', 'span', 'details', 'summary', 'pre'].includes(tag) || FORBIDDEN.test(tag)) {
                problems.push('unexpected <' + tag + '>: ' + el.outerHTML.slice(0, 120));
            }
            for (const attr of el.attributes) {
                if (!['class', 'title', 'style', 'data-testid', 'data-state'].includes(attr.name)) {
                    problems.push('unexpected attribute ' + attr.name + ' on <' + tag + '>');
                }
                if (attr.name === 'style' && /pwn|url\(/i.test(attr.value)) {
                    problems.push('style from a payload on <' + tag + '>');
                }
            }
        }
    }
    return {problems, pwned: window.__pwned};
}"""


def dismissed(dialog: Dialog, seen: list[str]) -> None:
    seen.append(dialog.message)
    dialog.dismiss()


def test_hostile_text_in_every_field_makes_no_element_and_runs_nothing(
    browser: Browser, base: str
) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.add_init_script(
        "window.__pwned = []; window.__pwn = (m) => { window.__pwned.push(String(m)); };"
    )
    dialogs: list[str] = []
    requests: list[str] = []
    try:
        page = context.new_page()
        page.on("dialog", lambda d: dismissed(d, dialogs))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(base + "/")
        page.locator("[data-testid=agent]:enabled").wait_for()
        start(page, "everything", "40:4:fail", sample=False)
        assert wait_end(page) == "error"
        found = page.evaluate(PAGE_AUDIT)
        assert found["problems"] == [], found["problems"][:10]
        assert found["pwned"] == []
        assert dialogs == []
        assert [u for u in requests if "pwn" in u.lower() or u.rstrip("/").endswith("/x")] == []
        # The run's text, every payload of it, exactly as emitted; and its reasoning.
        payloads = tests.hostile.payloads(40, 4)
        assert shown_text(page) == "".join(payloads)
        thinking = page.evaluate(
            "() => [...document.querySelectorAll('#events li.thinking:not(:has(> .path)) pre')]"
            ".map((e) => e.textContent)"
        )
        assert thinking == payloads
        assert page.locator("#events li.streaming").count() == 0
    finally:
        context.close()


def test_text_with_any_line_break_and_emoji_is_shown_exactly(page: Page, base: str) -> None:
    expected = "".join(AWKWARD_CHUNKS)
    start(page, "awkward", "", sample=False)
    assert wait_end(page) == "done"
    assert api_text(base, run_id(page)) == expected
    assert shown_text(page) == expected


def test_child_runs_are_shown_indented_under_their_path(page: Page, base: str) -> None:
    question = "why is the sea salty?"
    expected = full_text("researcher", question)
    start(page, "researcher", question, sample=False)
    assert wait_end(page) == "done"
    # The text is the researcher's own; the summarizer's shows as its own line.
    assert shown_text(page) == expected
    assert api_text(base, run_id(page)) == expected
    child = page.get_by_test_id("events").locator("li.child")
    texts = child.all_inner_texts()
    assert texts, "no child-run line"
    assert all(t.startswith(f"researcher{SEP}summarizer ") for t in texts), texts
    events = api_events(base, run_id(page))
    summary = "".join(e["text"] for e in events if e["kind"] == "text" and len(e["path"]) == 2)
    assert summary.startswith("In short: ")
    assert f"researcher{SEP}summarizer {summary}" in texts


def test_a_dropped_stream_resumes_from_the_last_event_id(page: Page, base: str) -> None:
    expected = full_text("poet", "the sea")
    resumed: list[dict[str, str]] = []
    page.on("request", lambda r: resumed.append(r.headers) if r.url.endswith("/events") else None)

    def drop_after_five_events(route: Any) -> None:
        # The real answer, cut in the middle of its sixth event: the page must fetch
        # the rest from the fifth event's id on, showing nothing twice.
        response = route.fetch()
        body: bytes = response.body()
        cut = 0
        for _ in range(5):
            cut = body.index(b"\r\n\r\n", cut) + 4
        route.fulfill(response=response, body=body[: cut + 20])

    page.route("**/api/stream", drop_after_five_events)
    start(page, "poet", "the sea")
    assert wait_end(page) == "done"
    seen = samples(page)
    assert all(expected.startswith(s.text or "") for s in seen), seen
    assert shown_text(page) == expected
    assert len(resumed) == 1, resumed
    assert resumed[0].get("last-event-id") == f"{run_id(page)}:4"


# An event stream split at every pair of places must parse the same. Lines end
# in CRLF, LF or CR; data spans lines; comments, an id holding a NUL (ignored),
# a BOM, a field without a colon, an event with no data (not dispatched) and a
# last event without its blank line (dropped).
STREAM = (
    "\ufeff: ping\r\n"
    'event: text\r\nid: r:0\r\ndata: {"t": "é😀"}\r\n\r\n'
    "data: one\rdata:two\ndata:  three\r\n\n"
    "id: bad\x00id\nevent: e\ndata\n\r"
    "event: nothing\r\n\r\n"
    "id: r:9\rdata: x\r\r"
    "data: lost"
).encode()
PARSED = [
    {"type": "text", "data": '{"t": "é😀"}', "id": "r:0"},
    {"type": "message", "data": "one\ntwo\n three", "id": "r:0"},
    {"type": "e", "data": "", "id": "r:0"},
    {"type": "message", "data": "x", "id": "r:9"},
]
PARSE_EVERY_SPLIT = """async (bytes) => {
    const { SSEParser } = await import(new URL('page.js', location.href).href);
    const stream = new Uint8Array(bytes);
    const results = new Set();
    for (let i = 0; i <= stream.length; i++) {
        for (let j = i; j <= stream.length; j++) {
            const got = [];
            const parser = new SSEParser((e) => got.push(e));
            parser.push(stream.slice(0, i));
            parser.push(stream.slice(i, j));
            parser.push(stream.slice(j));
            parser.end();
            results.add(JSON.stringify(got));
        }
    }
    return [...results];
}"""


def test_the_event_stream_parser_is_split_proof(page: Page) -> None:
    results = page.evaluate(PARSE_EVERY_SPLIT, list(STREAM))
    assert [json.loads(r) for r in results] == [PARSED]


def test_an_unknown_agent_or_a_server_error_shows_as_an_error(page: Page, base: str) -> None:
    # The agent list changed after the page loaded: the server's message is shown.
    page.evaluate(
        "() => { const o = document.createElement('option'); o.value = o.textContent = 'gone';"
        " document.querySelector('[data-testid=agent]').append(o); }"
    )
    start(page, "gone", "", sample=False)
    assert wait_end(page) == "error"
    assert "no agent named 'gone'" in page.get_by_test_id("message").inner_text()
    assert page.get_by_test_id("start").is_enabled()
    # The page stays usable: a real run after it works.
    start(page, "awkward", "", sample=False)
    assert wait_end(page) == "done"


def test_runs_survive_a_dropped_connection_and_go_when_the_page_goes(
    browser: Browser, base: str
) -> None:
    # The page resumes after a drop, so it starts runs that a drop does not cancel,
    # and cancels them itself when it is left.
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        page = context.new_page()
        bodies: list[str] = []
        page.on(
            "request",
            lambda r: bodies.append(r.post_data or "") if r.url.endswith("/api/stream") else None,
        )
        page.goto(base + "/")
        page.locator("[data-testid=agent]:enabled").wait_for()
        start(page, "counter", "300", sample=False)
        wait_for(page, "() => document.body.dataset.runId")
        run = run_id(page)
        assert json.loads(bodies[0])["on_disconnect"] == "continue"
        assert httpx.get(f"{base}/api/runs/{run}").json()["status"] == "running"
        page.goto("about:blank")  # leave the page (pagehide)
        until(
            lambda: httpx.get(f"{base}/api/runs/{run}").json()["status"] == "cancelled",
            10,
            what="leaving the page cancelling its run",
            every=0.02,
        )
    finally:
        context.close()


STREAM_SAMPLER = """(interval) => {
    const read = () => {
        const thinking = document.querySelector('#events li.thinking details');
        const call = document.querySelector('#events li.tool-call');
        return {
            status: document.body.dataset.state,
            usage: document.querySelector('[data-testid=usage]').textContent,
            thinking: thinking && {open: thinking.open,
                                   summary: thinking.querySelector('summary').textContent},
            call: call && {text: call.textContent, streaming: call.classList.contains('streaming')},
        };
    };
    const samples = [read()];
    const timer = setInterval(() => samples.push(read()), interval);
    window.__agentnbSampler = {samples, timer, read};
}"""


def test_thinking_folded_tool_arguments_streaming_usage_and_steps(page: Page, base: str) -> None:
    page.get_by_label("Agent").select_option("thinker")
    page.get_by_label("Input").fill("0.3")
    page.evaluate(STREAM_SAMPLER, SAMPLE_MS)
    page.get_by_test_id("start").click()
    assert wait_end(page) == "done"
    seen = page.evaluate(
        "() => { const s = window.__agentnbSampler; clearInterval(s.timer); return s.samples; }"
    )
    whole = "".join(ARGS)
    call = call_line(agentnb.ToolCall("weather", json.loads(whole)))
    # The arguments grew on the call's line, then the whole call took their place.
    streaming = [s["call"]["text"] for s in seen if s["call"] and s["call"]["streaming"]]
    grown = list(dict.fromkeys(text.removeprefix("→ weather ") for text in streaming))
    assert all(whole.startswith(a) for a in grown), grown
    assert len([a for a in grown if a]) >= 3, grown
    assert grown == sorted(grown, key=len)
    assert seen[-1]["call"] == {"text": call, "streaming": False}
    # Thinking: folded all along, its summary the last line of it.
    thinking = [s["thinking"] for s in seen if s["thinking"]]
    assert thinking
    assert not any(t["open"] for t in thinking)
    assert thinking[-1]["summary"] == "thinking: I should call the tool."
    # Usage in the status line: the first call's, live; then the run's totals.
    first, total = (usage_line(api_usage(base, run_id(page), n)) for n in (1, 2))
    assert any(s["usage"] == first and s["status"] == "running" for s in seen), seen
    assert (
        total == "2 model calls · 2,700 tokens in (200 cached) · 105 out (30 reasoning) · $0.0093"
    )
    assert page.get_by_test_id("usage").inner_text() == total
    assert shown_text(page) == "".join(ANSWER)
    # Steps: their lines indented under their names; the state, one line.
    lines = page.get_by_test_id("events").locator("li")
    texts = lines.all_inner_texts()
    assert texts[0] == "▸ think"
    assert texts[1] == "thinking: I should call the tool."
    assert texts[2:6] == ["▸ act", call, '← weather: {"temp": 18}', 'state: {"city": "Paris"}']
    assert texts[6:] == ["▸ answer"]
    depth = [line.evaluate("(e) => e.style.getPropertyValue('--depth')") for line in lines.all()]
    assert depth == ["", "1", "", "1", "1", "1", ""]
    lines.nth(1).locator("summary").click()  # unfolds to the whole reasoning
    assert lines.nth(1).locator("pre").inner_text() == "".join(REASONING)
    assert len(USAGES) == 2


def api_usage(base: str, run: str, calls: int) -> dict[str, Any]:
    """The run's usage after *calls* usage events: the sum its terminal event would carry."""
    events = api_events(base, run)
    if calls == len(USAGES):
        usage: dict[str, Any] = events[-1]["usage"]
        return usage
    first = next(e for e in events if e["kind"] == "usage")
    return {"calls": 1, **{k: v for k, v in first.items() if k.endswith("tokens") or k == "cost"}}
