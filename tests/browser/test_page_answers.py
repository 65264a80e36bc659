"""Questions on the web page (agentnb/server/static), in real Chromium against a real uvicorn.

The page shows an agent's question when its ``ask`` event arrives: the prompt, a
button per choice or a text box (Enter answers), the default. A click or Enter
POSTs the answer (by "page"); the ``answer`` event then replaces the controls with
what was answered and by whom, and the run goes on to its end. A refused answer
shows the server's message by the question and keeps the controls. Questions
made of hostile payloads (tests/hostile.py) make no element and run no script.

Nothing asserts a time. Needs Debian's ``chromium`` and ``playwright``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog

import agentnb
import tests.hostile
from agentnb.server import create_app
from agentnb.testing import check_event
from harness.browser import Browser, Page, images_settled, wait_for
from harness.web import serving

pytestmark = pytest.mark.browser

ENDED = ("done", "error", "cancelled")


async def choosy(_input: str = "") -> str:
    """Asks for a colour (default green) and says it."""
    colour = await agentnb.ask("Which colour?", choices=["red", "green"], default="green")
    agentnb.emit(f"painting it {colour}")
    return colour


async def naming(_input: str = "") -> str:
    """Asks for a file name (free text, default out.txt)."""
    name = await agentnb.ask("Name the file?", default="out.txt")
    agentnb.emit(f"saved as {name}")
    return name


async def family(_input: str = "") -> str:
    """A sub-run asks; its question is answered through the run's id."""

    async def scout() -> str:
        return await agentnb.ask("Left or right?", choices=["left", "right"])

    way: str = await agentnb.run(scout, name="scout")
    return way


async def refusals(_input: str = "") -> list[str]:
    """An ask event nobody waits for, then two real questions."""
    agentnb.emit(agentnb.Ask("Orphan?", "orphan-1", ["x"]))
    first = await agentnb.ask("Really?", choices=["yes", "no"])
    second = await agentnb.ask("Why?")
    return [first, second]


def hostile_questions(spec: str) -> list[tuple[str, list[str] | None, str, str]]:
    """Questions made of payloads: (prompt, choices or None, default, call id)."""
    count, seed = map(int, spec.split(":"))
    p = tests.hostile.payloads(count, seed)
    out: list[tuple[str, list[str] | None, str, str]] = []
    for n, i in enumerate(range(0, count - 3, 4)):
        choices = None if n % 3 == 2 else [p[i + 1], p[i + 2]]
        out.append((p[i], choices, p[i + 2], p[i + 3]))
    return out


async def asks_hostile(spec: str) -> list[str]:
    """Asks every question of *spec* at once (each waits for its answer)."""
    return list(
        await asyncio.gather(
            *(
                agentnb.ask(prompt, choices=choices, default=default, call_id=call_id)
                for prompt, choices, default, call_id in hostile_questions(spec)
            )
        )
    )


AGENTS: dict[str, Any] = {
    "choosy": choosy,
    "naming": naming,
    "family": family,
    "refusals": refusals,
    "asks_hostile": asks_hostile,
}
HOSTILE_SPEC = "36:11"  # 9 questions: 6 with choices, 3 of free text

PWN_RECORDER = "window.__pwned = []; window.__pwn = (m) => { window.__pwned.push(String(m)); };"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(create_app(agents=AGENTS)) as url:
        yield url


class Watched:
    """A page, and what a payload could have done in it: errors, dialogs, requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # (An error answer is logged by Chromium itself as "Failed to load resource".)
        page.on(
            "console",
            lambda msg: (
                self.errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("dialog", self.dismissed)
        page.on("request", lambda r: self.requests.append(r.url))

    def dismissed(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def watched(browser: Browser, base: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.add_init_script(PWN_RECORDER)
    try:
        watched = Watched(context.new_page())
        watched.page.goto(base + "/")
        watched.page.locator("[data-testid=agent]:enabled").wait_for()
        yield watched
        assert not watched.errors, f"the page reported errors: {watched.errors}"
    finally:
        context.close()


def start(page: Page, agent: str, text: str = "") -> str:
    """Start *agent* from the page; the run's id."""
    page.get_by_label("Agent").select_option(agent)
    page.get_by_label("Input").fill(text)
    page.get_by_test_id("start").click()
    run_id: str = wait_for(page, "() => document.body.dataset.runId")
    return run_id


def wait_end(page: Page, timeout: float = 30) -> str:
    state: str = wait_for(
        page,
        "(ended) => ended.includes(document.body.dataset.state) && document.body.dataset.state",
        ENDED,
        timeout=timeout,
    )
    return state


def api_events(base: str, run_id: str) -> list[dict[str, Any]]:
    """The events of a finished run, as the server replays them (checked)."""
    with httpx.Client(timeout=30) as client:
        body = client.get(f"{base}/api/runs/{run_id}/events").text
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    for event in events:
        check_event(event)
    return events


def answers(base: str, run_id: str) -> list[tuple[str, str]]:
    """The run's answers: (value, by)."""
    return [(e["value"], e["by"]) for e in api_events(base, run_id) if e["kind"] == "answer"]


def questions_shown(page: Page) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#events li.ask')].map((q) => ({
            prompt: q.querySelector('.ask-prompt').textContent,
            choices: [...q.querySelectorAll('.ask-controls button')].map((b) => b.textContent),
            inputs: q.querySelectorAll('.ask-controls input').length,
            note: q.querySelector('.ask-note')?.textContent ?? null,
            answer: q.querySelector('.ask-answer')?.textContent ?? null,
            refused: q.querySelector('.ask-refused').hidden ? null
                : q.querySelector('.ask-refused').textContent,
            disabled: [...q.querySelectorAll('button, input')].filter((c) => c.disabled).length,
        }))"""
    )
    return shown


def lines(text: str) -> str:
    """Line endings as LF, as the page shows a question."""
    return re.sub(r"\r\n?", "\n", text)


def test_a_click_on_a_choice_answers_and_the_run_finishes(watched: Watched, base: str) -> None:
    page = watched.page
    run_id = start(page, "choosy")
    question = page.locator("#events li.ask")
    question.get_by_role("button", name="red").click()
    assert wait_end(page) == "done"
    assert questions_shown(page) == [
        {
            "prompt": "? Which colour?",
            "choices": [],
            "inputs": 0,
            "note": None,
            "answer": "= red (by page)",
            "refused": None,
            "disabled": 0,
        }
    ]
    assert page.get_by_test_id("text").text_content() == "painting it red"
    assert answers(base, run_id) == [("red", "page")]


def test_the_question_shows_its_choices_and_default_while_it_waits(
    watched: Watched, base: str
) -> None:
    page = watched.page
    run_id = start(page, "choosy")
    page.locator("#events li.ask button").first.wait_for()
    assert questions_shown(page) == [
        {
            "prompt": "? Which colour?",
            "choices": ["red", "green"],
            "inputs": 0,
            "note": "default: green",
            "answer": None,
            "refused": None,
            "disabled": 0,
        }
    ]
    assert page.get_by_test_id("state").inner_text() == "running"
    page.get_by_role("button", name="green").click()
    assert wait_end(page) == "done"
    assert answers(base, run_id) == [("green", "page")]


def test_typing_and_enter_answers_free_text(watched: Watched, base: str) -> None:
    page = watched.page
    run_id = start(page, "naming")
    box = page.get_by_role("textbox", name="Your answer")
    box.fill("my notes.txt")
    box.press("Enter")
    assert wait_end(page) == "done"
    shown = questions_shown(page)
    assert [(q["prompt"], q["answer"], q["inputs"]) for q in shown] == [
        ("? Name the file?", "= my notes.txt (by page)", 0)
    ]
    assert page.get_by_test_id("text").text_content() == "saved as my notes.txt"
    assert answers(base, run_id) == [("my notes.txt", "page")]


def test_a_sub_runs_question_is_answered_from_the_page(watched: Watched, base: str) -> None:
    page = watched.page
    run_id = start(page, "family")
    page.get_by_role("button", name="right").click()
    assert wait_end(page) == "done"
    shown = questions_shown(page)
    sep = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "  # between a path's run names
    assert [(q["prompt"], q["answer"]) for q in shown] == [
        (f"family{sep}scout ? Left or right?", "= right (by page)")
    ]
    assert answers(base, run_id) == [("right", "page")]


# One task of the page's: another client answers (a synchronous request), then the
# page's button is clicked before the page could see that answer arrive.
ANSWER_ELSEWHERE_THEN_CLICK = """([runId, label]) => {
    const get = new XMLHttpRequest();
    get.open('GET', `api/runs/${runId}`, false);
    get.send();
    const question = JSON.parse(get.responseText).questions[0];
    const post = new XMLHttpRequest();
    post.open('POST', `api/runs/${runId}/answer`, false);
    post.setRequestHeader('Content-Type', 'application/json');
    post.send(JSON.stringify({ask_id: question.ask_id, value: 'no'}));
    const button = [...document.querySelectorAll('#events li.ask button')]
        .find((b) => b.textContent === label);
    button.click();
    return [post.status, question.prompt];
}"""


def test_a_refused_answer_shows_the_servers_message_and_keeps_the_controls(
    watched: Watched, base: str
) -> None:
    page = watched.page
    run_id = start(page, "refusals")
    asked = page.locator("#events li.ask")
    asked.nth(1).locator("button").first.wait_for()
    # An ask event nobody waits for: the server refuses, the page says why, the button works.
    asked.nth(0).get_by_role("button", name="x").click()
    wait_for(page, "() => !document.querySelector('#events li.ask .ask-refused').hidden")
    orphan = questions_shown(page)[0]
    assert orphan["refused"] is not None
    assert "has no question 'orphan-1'" in orphan["refused"]
    assert (orphan["choices"], orphan["answer"], orphan["disabled"]) == (["x"], None, 0)
    # Answered elsewhere first, then clicked here: the page shows both.
    status, prompt = page.evaluate(ANSWER_ELSEWHERE_THEN_CLICK, [run_id, "yes"])
    assert (status, prompt) == (200, "Really?")
    wait_for(
        page,
        """() => {
            const q = document.querySelectorAll('#events li.ask')[1];
            return q.querySelector('.ask-answer') && !q.querySelector('.ask-refused').hidden;
        }""",
    )
    really = questions_shown(page)[1]
    assert really["answer"] == "= no (by http)"
    assert really["refused"] is not None
    assert "is already answered" in really["refused"]
    # The run goes on: the next question is answered from the page.
    box = page.get_by_role("textbox", name="Your answer")
    box.fill("because")
    box.press("Enter")
    assert wait_end(page) == "done"
    shown = questions_shown(page)
    assert [q["answer"] for q in shown] == [
        "no answer: the run ended",
        "= no (by http)",
        "= because (by page)",
    ]
    assert answers(base, run_id) == [("no", "http"), ("because", "page")]


# Every element the page makes inside the run's parts, and the attributes it sets:
# agent text only ever goes into text nodes and the title attribute.
AUDIT = r"""() => {
    const problems = [];
    const TAGS = ['li', 'span', 'details', 'summary', 'pre', 'div', 'button', 'input'];
    const ATTRS = ['class', 'title', 'style', 'data-testid', 'data-state', 'type', 'disabled',
                   'hidden', 'aria-label'];
    for (const root of document.querySelectorAll('#text, #events, #status')) {
        for (const el of root.querySelectorAll('*')) {
            const tag = el.tagName.toLowerCase();
            if (!TAGS.includes(tag)) problems.push('unexpected: ' + el.outerHTML.slice(0, 120));
            for (const attr of el.attributes) {
                if (!ATTRS.includes(attr.name)) {
                    problems.push('unexpected attribute ' + attr.name + ' on <' + tag + '>');
                }
                if (/pwn/i.test(attr.value)) problems.push('a payload in an attribute of ' + tag);
            }
            if (tag === 'input' && !(el.type === 'text' && el.classList.contains('ask-input'))) {
                problems.push('an input that is not a question\'s text box');
            }
        }
    }
    const made = 'img, script:not([src]), iframe, svg, math, a, style, object, embed';
    for (const el of document.querySelectorAll(made)) {
        problems.push('in the page: ' + el.outerHTML.slice(0, 120));
    }
    return {problems, pwned: window.__pwned};
}"""


def audit(watched: Watched) -> None:
    images_settled(watched.page)  # an <img onerror> has fired by now, if there is an <img>
    found = watched.page.evaluate(AUDIT)
    assert found["problems"] == [], found["problems"][:10]
    assert found["pwned"] == []
    assert watched.dialogs == []
    payload_requests = [
        u for u in watched.requests if "pwn" in u.lower() or u.rstrip("/").endswith("/x")
    ]
    assert payload_requests == []


def test_hostile_questions_make_no_element_and_run_nothing(watched: Watched, base: str) -> None:
    page = watched.page
    questions = hostile_questions(HOSTILE_SPEC)
    run_id = start(page, "asks_hostile", HOSTILE_SPEC)
    wait_for(
        page,
        "(n) => document.querySelectorAll('#events li.ask').length === n",
        len(questions),
    )
    audit(watched)
    shown = questions_shown(page)
    expected = [
        {
            "prompt": "? " + lines(prompt),
            "choices": [lines(c) for c in choices] if choices else ["Answer"],
            "inputs": 0 if choices else 1,
            "note": f"default: {lines(default)} · for the call {lines(call_id)}",
            "answer": None,
            "refused": None,
            "disabled": 0,
        }
        for prompt, choices, default, call_id in questions
    ]
    assert shown == expected
    # Answer each: a click on a payload's button, a payload typed into a text box, or (for the
    # rest) a payload answered over HTTP; the page shows each answer as text.
    values: list[tuple[str, str]] = []
    asked = page.locator("#events li.ask")
    with httpx.Client(base_url=base, timeout=10) as client:
        open_ids = {
            q["prompt"]: q["ask_id"] for q in client.get(f"/api/runs/{run_id}").json()["questions"]
        }
        for n, (prompt, choices, _default, _call_id) in enumerate(questions):
            question = asked.nth(n)
            if choices and n % 2 == 0:
                question.locator("button").nth(1).click()
                values.append((choices[1], "page"))
            elif not choices and n == 2:
                typed = "".join(c for c in tests.hostile.active("PWNtyped")[0] if c.isprintable())
                question.locator("input").fill(typed)
                question.locator("input").press("Enter")
                values.append((typed, "page"))
            else:
                value = choices[0] if choices else prompt
                body = {"ask_id": open_ids[prompt], "value": value}
                assert client.post(f"/api/runs/{run_id}/answer", json=body).status_code == 200
                values.append((value, "http"))
            wait_for(
                page,
                "(n) => document.querySelectorAll('#events li.ask')[n]"
                ".querySelector('.ask-answer')",
                n,
            )
    assert wait_end(page) == "done"
    audit(watched)
    shown = questions_shown(page)
    assert [q["answer"] for q in shown] == [f"= {lines(v)} (by {by})" for v, by in values]
    assert sorted(answers(base, run_id)) == sorted(values)
