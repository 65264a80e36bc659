"""Hostile agent text in a real JupyterLab never becomes an element or script (issue 9, point 1).

A kernel runs :mod:`tests.hostile`'s agents, which put payloads built from CR,
LF, CRLF, U+2028, backticks, brackets, ``<``, ``&``, entities, ``$`` and HTML/JS
in every field of every event kind. JupyterLab renders the live view and the
final transcript with its own renderers (marked for Markdown, MathJax for math;
outputs of a cell run in the session are trusted, so nothing is sanitized). Questions
carry payloads too, in their prompt, choices, default and call id, and so do their
answers: some answered by their default (a timeout), one by a click on a payload's
button, and two left open, so their controls are checked as well, also after the
page is drawn again.
Then the notebook is saved, the page reloaded and the saved outputs rendered
again (the saved notebook is signed, so trusted too). Each time:

* no payload ran script (``window.__pwned`` stays empty, no dialog opened, no
  request for a payload's URL was made);
* agentnb's outputs hold only the elements and attributes agentnb makes (a
  strict list per output: the view, the Markdown transcript, the plain one);
  nothing anywhere in the cell is an element a payload could have made;
* the text is all there: the view holds the run's text and reasoning exactly,
  and the transcripts show every payload as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Dialog

from agentnb import Ask
from agentnb._format import LINE_END, ask_line, visible_controls
from harness.browser import Browser, Page, cell, open_notebook, run_cells, wait_for
from harness.jupyter import Jupyter
from tests import hostile

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

ASKING = """
import asyncio
import agentnb

def questions(spec):
    count, seed = map(int, spec.split(":"))
    p = hostile.payloads(count, seed)
    return [(p[i], [p[i + 1], p[i + 2]], p[i + 2], p[i + 3]) for i in range(0, count - 3, 4)]

async def asks(spec):  # each question answered by its default, at its timeout
    for prompt, choices, default, call_id in questions(spec):
        await agentnb.ask(prompt, choices=choices, default=default, call_id=call_id, timeout=0.05)
        await agentnb.ask(choices[0], default=call_id, call_id=prompt, timeout=0.05)
    return "asked"

async def asks_open(spec):  # one answered from the view, then two left open
    (p0, c0, d0, i0), (p1, c1, d1, i1), (p2, _, d2, i2) = questions(spec)[:3]
    await agentnb.ask(p0, choices=c0, default=d0, call_id=i0)
    await asyncio.gather(
        agentnb.ask(p1, choices=[*c1, p2], default=d1, call_id=i1),
        agentnb.ask(p2, default=d2, call_id=i2),
    )
"""

RUN_ALL = [
    "%load_ext agentnb\nfrom tests import hostile" + ASKING,
    "%%agent hostile.everything\n32:1",
    "%%agent -f text hostile.everything\n20:2",
    "%%agent hostile.answers\n3",
    "%%agent hostile.answers_json\n4",
    "%%agent hostile.cancels\n5",
    "%%agent asks\n24:4",
    "%%agent -b asks_open\n12:5",
    "%%agent hostile.everything\n16:3:fail",  # last: a failing cell stops the ones queued after it
]
EVERYTHING = {1: (32, 1), 2: (20, 2), 8: (16, 3)}  # cell index: the payloads it streams
ASKS = {6: (24, 4)}  # cell index: the questions it asks (each answered by its default)
OPEN = {7: (12, 5)}  # cell index: a background run whose last two questions stay open

PWN_RECORDER = "window.__pwned = []; window.__pwn = (m) => { window.__pwned.push(String(m)); };"

# What each kind of agentnb output may hold: tags, and attributes (name: allowed values, or
# None for any value that names no payload).
AUDIT = r"""async ([index, transcript]) => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    await notebook.scrollToItem(index, 'start');
    const node = notebook.widgets[index].node;
    // Cells out of view render lazily: wait until this one's outputs are on screen.
    const shown = () => [...node.querySelectorAll(transcript ?
        '.jp-RenderedMarkdown, .jp-RenderedText' : '.agentnb-ask')]
        .some((e) => e.innerText.trim());
    for (let i = 0; i < 200 && !shown(); i++) await new Promise((r) => setTimeout(r, 50));
    // MathJax typesets rendered Markdown after rendering it: typeset it now with the
    // notebook's own typesetter and wait until that is done (any math a payload made shows).
    const typesetter = notebook.rendermime.latexTypesetter;
    for (const out of typesetter ? node.querySelectorAll('.jp-RenderedMarkdown') : []) {
        await typesetter.typeset(out);
    }
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const problems = [];
    const where = (el) => el.outerHTML.slice(0, 160);
    const FORBIDDEN = new Set(['script', 'img', 'iframe', 'svg', 'math', 'mjx-container',
        'object', 'embed', 'style', 'link', 'form', 'input', 'textarea', 'video', 'audio',
        'source', 'meta', 'base', 'details-menu', 'template', 'frame', 'frameset']);
    for (const el of node.querySelectorAll('.jp-OutputArea-output, .jp-OutputArea-output *')) {
        const tag = el.tagName.toLowerCase();
        // The one input agentnb makes: a question's text box (its attributes checked below).
        const ownInput = el.matches('.agentnb-run input.agentnb-ask-input[type="text"]');
        if (FORBIDDEN.has(tag) && !ownInput) problems.push('forbidden element: ' + where(el));
        // JupyterLab's own plain-text renderer makes a link of a web address (of every
        // printed one): its href is the text it shows.
        const autolink = tag === 'a' && el.closest('.jp-RenderedText') &&
            (el.getAttribute('href') || '').includes(el.textContent.trim());
        // The live view does the same: a web address in agent text is a link to itself.
        const viewLink = tag === 'a' && el.closest('.agentnb-run') &&
            el.getAttribute('href') === el.textContent && /^https?:\/\//.test(el.textContent);
        if (tag === 'a' && el.closest('.agentnb-run') && !viewLink) {
            problems.push('a link in the view that is not its own web address: ' + where(el));
        }
        for (const attr of el.attributes) {
            if (/pwn/i.test(attr.name) || (/pwn/i.test(attr.value) && !autolink && !viewLink)) {
                problems.push('attribute from a payload: ' + attr.name + ' in ' + where(el));
            }
            if (/^on/i.test(attr.name)) problems.push('handler attribute: ' + where(el));
            if (/^\s*(javascript|data|vbscript|file):/i.test(attr.value)) {
                problems.push('script or data URL: ' + where(el));
            }
        }
    }
    const strict = (selector, tags, attrs) => {
        for (const out of node.querySelectorAll(selector)) {
            for (const el of out.querySelectorAll('*')) {
                const tag = el.tagName.toLowerCase();
                if (!tags.includes(tag)) {
                    problems.push(selector + ': unexpected <' + tag + '> ' + where(el));
                }
                for (const attr of el.attributes) {
                    const allowed = attrs[attr.name];
                    const known = allowed === null || (allowed && allowed.includes(attr.value));
                    if (!known) {
                        problems.push(selector + ': unexpected attribute ' + attr.name + '=' +
                            JSON.stringify(attr.value) + ' on <' + tag + '>');
                    }
                }
            }
        }
    };
    strict('.jp-RenderedMarkdown', ['div', 'p', 'br', 'code', 'strong', 'em', 'blockquote'],
           {'class': ['mathjax_ignore']});
    strict('.jp-RenderedText[data-mime-type="text/plain"]', ['pre', 'a'],
           {'href': null, 'rel': ['noopener'], 'target': ['_blank']});
    strict('.agentnb-run', ['div', 'span', 'button', 'details', 'summary', 'pre', 'a', 'input'],
           {'class': null, 'data-status': null, 'hidden': [''], 'disabled': [''], 'open': [''],
            'type': ['text'],
            'title': ['Cancel this run', 'Show the whole run', 'Fold the run to this line'],
            'href': null, 'rel': ['noopener noreferrer nofollow'], 'target': ['_blank']});
    const text = (selector) => [...node.querySelectorAll(selector)].map((e) => e.innerText);
    return {
        problems,
        pwned: window.__pwned,
        markdown: text('.jp-RenderedMarkdown'),
        plain: text('.jp-RenderedText[data-mime-type="text/plain"]'),
        view: [...node.querySelectorAll('.agentnb-text:not(.agentnb-child) > div')]
            .map((e) => e.textContent).join(''),
        views: node.querySelectorAll('.agentnb-run').length,
        thinking: [...node.querySelectorAll('.agentnb-reasoning:not(.agentnb-child) details > div')]
            .map((e) => e.textContent),
        folded: [...node.querySelectorAll('.agentnb-reasoning details')].every((d) => !d.open),
        streaming: node.querySelectorAll('.agentnb-call').length,
        asks: [...node.querySelectorAll('.agentnb-ask')].map((q) => ({
            prompt: q.querySelector('.agentnb-ask-prompt').textContent,
            choices: [...q.querySelectorAll('.agentnb-choice')].map((b) => b.textContent),
            note: q.querySelector('.agentnb-ask-note')?.textContent ?? null,
            answer: q.querySelector('.agentnb-ask-answer')?.textContent ?? null,
            input: q.querySelectorAll('.agentnb-ask-input').length,
            off: [...q.querySelectorAll('button, input')].filter((c) => c.disabled).length,
        })),
    };
}"""


def words(text: str) -> str:
    """*text* as a reader sees it: control characters as pictures, whitespace collapsed."""
    return " ".join(visible_controls(text).split())


def expected_text(count: int, seed: int) -> list[str]:
    return [p for p in hostile.payloads(count, seed) if words(p)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Jupyter]:
    with Jupyter() as server:
        server.add_notebook("hostile.ipynb", RUN_ALL)
        yield server


class Watched:
    """A page that records what a payload could do: script run, dialogs, requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("dialog", self._dialog)
        page.on("request", lambda r: self.requests.append(r.url))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def payload_requests(self) -> list[str]:
        return [u for u in self.requests if "pwn" in u.lower() or u.rstrip("/").endswith("/x")]


def audit(page: Page, index: int) -> dict[str, Any]:
    cell(page, index)  # scrolled into view: rendered
    result: dict[str, Any] = page.evaluate(AUDIT, [index, index not in OPEN])
    return result


def questions(count: int, seed: int) -> list[tuple[str, list[str], str, str]]:
    """What the notebook's ``questions(spec)`` makes: (prompt, choices, default, call id)."""
    p = hostile.payloads(count, seed)
    return [(p[i], [p[i + 1], p[i + 2]], p[i + 2], p[i + 3]) for i in range(0, count - 3, 4)]


def shown(text: str) -> str:
    """*text* as the view sets it: CRLF and a lone CR are line breaks."""
    return LINE_END.sub("\n", text)


def asked(prompt: str, choices: list[str] | None, default: str, call_id: str) -> dict[str, Any]:
    """How the view shows an open question: live controls, each showing its payload."""
    return {
        "prompt": "? " + shown(prompt),
        "choices": [shown(c) for c in choices] if choices else ["Answer"],
        "note": f"default: {shown(default)} · for the call {shown(call_id)}",
        "answer": None,
        "input": 0 if choices else 1,
        "off": 0,
    }


def answered(prompt: str, value: str, by: str) -> dict[str, Any]:
    """How the view shows an answered question: its controls gave way to the answer."""
    text = f"= {shown(value)} (by {by})"
    return {"prompt": "? " + shown(prompt), "choices": [], "note": None, "answer": text}


def check_questions(found: dict[str, Any], index: int) -> None:
    """The questions of cell *index*: every prompt, control and answer shows its payload."""
    fields = ("prompt", "choices", "note", "answer")
    if index in ASKS:
        expected = []
        transcript = words("\n".join(found["markdown"]))
        for prompt, choices, default, call_id in questions(*ASKS[index]):
            expected.append(answered(prompt, default, "timeout"))
            expected.append(answered(choices[0], call_id, "timeout"))
            # The transcript has each question as the console writes it.
            for line in (
                ask_line(Ask(prompt, "", choices, default, call_id)),
                ask_line(Ask(choices[0], "", None, call_id, prompt)),
            ):
                assert words(line) in transcript, (index, line)
        assert [{k: q[k] for k in fields} for q in found["asks"]] == expected, index
    if index in OPEN:
        (p0, c0, _, _), (p1, c1, d1, i1), (p2, _, d2, i2) = questions(*OPEN[index])[:3]
        first = {k: found["asks"][0][k] for k in fields}
        assert first == answered(p0, c0[1], "cell"), index  # its second button was clicked
        assert found["asks"][1:] == [asked(p1, [*c1, p2], d1, i1), asked(p2, None, d2, i2)]


def check_cells(watched: Watched, *, live: bool) -> None:
    page = watched.page
    for index in range(1, len(RUN_ALL)):
        found = audit(page, index)
        assert found["problems"] == [], (index, found["problems"][:10])
        assert found["pwned"] == [], found["pwned"]
        if index in EVERYTHING:
            count, seed = EVERYTHING[index]
            shown = words("\n".join(found["markdown"] or found["plain"]))
            assert shown, f"cell {index} shows no transcript"
            for payload in expected_text(count, seed):
                assert words(payload) in shown, (index, payload)
            if live:
                # Each payload is a text block of its own (a tool call follows it).
                blocks = hostile.payloads(count, seed)
                assert found["view"] == "".join(LINE_END.sub("\n", b) for b in blocks), index
                # Each payload's reasoning is a folded thinking block of its own, exact;
                # every streamed tool call gave way to its whole line.
                assert found["thinking"] == [LINE_END.sub("\n", b) for b in blocks], index
                assert found["folded"]
                assert found["streaming"] == 0
        if index == 3:  # a str result and no text: the transcript is the result
            assert words(hostile.payloads(4, 7)[3]) in words("\n".join(found["markdown"]))
        check_questions(found, index)
    assert watched.dialogs == []
    assert watched.payload_requests() == []


@pytest.fixture(scope="module")
def watched(lab: Jupyter, browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_init_script(PWN_RECORDER)
    try:
        page = context.new_page()
        watched = Watched(page)
        open_notebook(page, lab, "hostile.ipynb")
        run_cells(page, *range(len(RUN_ALL)))
        # Each agentnb cell ends with its transcript (the error of `everything` after it),
        # and the kernel goes idle after the last one. What is audited is what the cells
        # show, so that is what is waited for: not JupyterLab's promise for the whole batch,
        # which now and then never settles for a cell whose run ended at once (JupyterLab
        # leaves it at [*] although the kernel answered it and ran the cells after it; seen
        # on earlier versions of this project too, rarely, and more often under load).
        for index in range(1, len(RUN_ALL)):
            if index in OPEN:
                continue  # a background run still asking: no transcript yet
            transcript = cell(page, index).locator(
                ".jp-RenderedMarkdown, .jp-RenderedText[data-mime-type='text/plain']"
            )
            transcript.first.wait_for(state="attached", timeout=120_000)
        wait_for(
            page,
            """() => window.jupyterapp.shell.currentWidget.sessionContext.session
                ?.kernel?.status === 'idle'""",
            timeout=60,
        )
        for index in OPEN:  # answer the first question by a click on its second choice
            view = cell(page, index)
            view.locator(".agentnb-ask").first.locator(".agentnb-choice").nth(1).click()
            view.locator(".agentnb-ask-input").wait_for(timeout=30_000)  # then two at once
        yield watched
    finally:
        context.close()
        lab.shutdown_kernels()


def test_nothing_an_agent_emits_becomes_markup_or_script_when_run(watched: Watched) -> None:
    check_cells(watched, live=True)


def test_nor_after_the_notebook_is_saved_and_reopened(watched: Watched, lab: Jupyter) -> None:
    page = watched.page
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
    page.reload()
    open_notebook(page, lab, "hostile.ipynb")
    # The saved outputs are trusted again (JupyterLab signed the notebook on save), so
    # nothing sanitizes them: the escaping alone keeps them inert.
    trusted = page.evaluate(
        """() => [...window.jupyterapp.shell.currentWidget.content.model.cells]
            .filter((c) => c.type === 'code').map((c) => c.trusted)"""
    )
    assert trusted == [True] * len(RUN_ALL)
    for index in OPEN:  # the view drawn again has the run's open questions back
        cell(page, index).locator(".agentnb-ask-input").wait_for(timeout=30_000)
    check_cells(watched, live=False)
