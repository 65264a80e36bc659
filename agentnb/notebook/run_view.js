// agentnb's live run view (an anywidget front end).
//
// The kernel keeps an append-only log of display items and sends new items in
// batches: {t: "items", offset, items}. The view keeps the items it has; a batch
// that starts past its end means something was missed, so it asks for the rest
// with {t: "sync", have}; a batch that overlaps is trimmed. A view created late
// (a page reload, a second view) asks for everything it lacks the same way.
// Everything the kernel sends is agent data and only ever reaches the page as
// text (textContent), never as HTML: Markdown and markup in it show as typed.
// The one element made from it is a link, for a web address (http or https
// only) in the text: its href and its text are that address.
//
// The model's reasoning is a "thinking" block, folded to one line (the last line
// of it) until clicked. A tool call whose arguments stream shows them growing,
// then its whole line takes their place. A step groups what happens in it under
// its name, indented. The run's token usage and cost are in the status line.
//
// Once the run ends the view folds to its status line (the transcript below is
// the run); "show run" unfolds it. A view whose kernel went away (restart,
// shutdown, a lost connection) while its run was running says so: it asks the
// kernel {t: "ping"} and, with no {t: "pong"} within PONG_MS, shows "ended".
//
// A question of the agent's (an "ask" item) shows its prompt and a button per
// choice, or a text box (Enter answers) for free text, and its default. A click
// or Enter sends {t: "answer", ask_id, value}; an answer the run refuses comes
// back as {t: "refused", ask_id, message}, shown by the question, its controls
// kept. The "answer" item replaces the controls with what was answered, by whom.
// A question still open when the view is drawn again has live controls; one
// left open when the run ends has none (while its kernel is gone, they are off).

// Line endings as the transcript reads them: CRLF and a lone CR are line breaks.
const lines = (s) => s.replace(/\r\n?/g, "\n");

// anywidget hands initialize() and render() different wrapper objects for one
// model, so per-model state lives in a page-wide map under the model's "key".
const STORES = (globalThis.__agentnbStores ||= new Map());

function store(model) {
  const key = model.get("key");
  let s = STORES.get(key);
  if (!s) STORES.set(key, (s = { items: [], views: new Set() }));
  return s;
}

function forget(model) {
  STORES.delete(model.get("key"));
}

const PONG_MS = 1500;
// How long after it is drawn a view asks the kernel for what it lacks (and, while its
// run runs, whether the kernel is there). A view drawn as its run streams in this page
// lacks nothing; and a message to the kernel just as a fast cell ends is one that
// ipykernel 7.4 can answer by labelling the next cell's "idle" as the previous one's
// (JupyterLab then never shows that cell's execution count).
const SETTLE_MS = 300;
const URL = /\bhttps?:\/\/[^\s<>"'`\u0000-\u001f\u007f]+[^\s<>"'`.,;:!?)\]}\u0000-\u001f\u007f]/g;

// *text* as text nodes, with each web address in it a link.
function linked(text) {
  const out = document.createDocumentFragment();
  let at = 0;
  for (const m of text.matchAll(URL)) {
    if (m.index > at) out.append(text.slice(at, m.index));
    const a = document.createElement("a");
    a.href = m[0];
    a.textContent = m[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    out.append(a);
    at = m.index + m[0].length;
  }
  if (at < text.length) out.append(text.slice(at));
  return out;
}

function plural(n, one, many) {
  return n + " " + (n === 1 ? one : many);
}

function receive(model, msg) {
  if (!msg) return;
  const s = store(model);
  if (msg.t === "pong") { for (const view of s.views) view.alive(); return; }
  if (msg.t === "refused") {
    for (const view of s.views) view.refused(String(msg.ask_id), String(msg.message));
    return;
  }
  if (msg.t !== "items") return;
  const have = s.items.length;
  if (msg.offset > have) { model.send({ t: "sync", have }); return; }
  const fresh = msg.items.slice(have - msg.offset);
  if (!fresh.length) return;
  s.items.push(...fresh);
  for (const view of s.views) view.update(s.items);
}

function fmtTime(seconds) {
  return seconds < 60 ? seconds.toFixed(1) + " s" : Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
}

class View {
  constructor(model, el) {
    this.model = model;
    this.shown = 0;
    this.root = document.createElement("div");
    this.root.className = "agentnb-run";
    this.head = document.createElement("div");
    this.head.className = "agentnb-head";
    this.dot = document.createElement("span");
    this.dot.className = "agentnb-dot";
    this.state = document.createElement("span");
    this.state.className = "agentnb-state";
    this.title = document.createElement("span");
    this.title.className = "agentnb-title";
    this.note = document.createElement("span");
    this.note.className = "agentnb-note";
    this.stop = document.createElement("button");
    this.stop.className = "agentnb-stop";
    this.stop.textContent = "Stop";
    this.stop.title = "Cancel this run";
    this.stop.addEventListener("click", () => {
      this.stop.disabled = true;
      model.send({ t: "stop" });
    });
    this.toggle = document.createElement("button");
    this.toggle.className = "agentnb-toggle";
    this.toggle.hidden = true;
    this.toggle.addEventListener("click", () => this.fold(!this.body.hidden));
    this.head.append(this.dot, this.state, this.title, this.note, this.toggle, this.stop);
    this.body = document.createElement("div");
    this.body.className = "agentnb-body";
    this.root.append(this.head, this.body);
    el.append(this.root);
    this.blocks = [];
    this.activity = "";
    this.customs = new Map();
    this.calls = new Map(); // path + call id -> a tool call whose arguments are streaming
    this.steps = []; // the steps open now, innermost last: {key, body}
    this.usage = ""; // the run's usage so far, as the kernel words it
    this.counts = { tools: 0, words: 0, errors: 0, runs: new Set() };
    this.questions = new Map(); // ask id -> a question's parts, answered or not
    this.folded = false; // folded once, when the run ended; then as the reader likes
    this.lost = false;
    this.waiting = null; // the timer of an unanswered ping
    this.onState = () => this.header();
    this.onGone = () => this.ping();
    model.on("change:status", this.onState);
    model.on("change:ended", this.onState);
    model.on("comm_live_update", this.onGone);
    model.on("destroy", this.onGone);
    this.timer = setInterval(() => this.header(), 500);
    this.header();
    // A view drawn again (reload, reopen): is its kernel there?
    this.settle = setTimeout(() => this.ping(), SETTLE_MS);
  }

  running() {
    return this.model.get("status") === "running" && !this.lost;
  }

  // Ask the kernel whether it is still there; no answer in time: the run is over for us.
  ping() {
    if (!this.running() || this.waiting) return;
    this.waiting = setTimeout(() => this.gone(), PONG_MS);
    try {
      this.model.send({ t: "ping" });
    } catch (err) {
      this.gone();
    }
  }

  alive() {
    if (this.waiting) clearTimeout(this.waiting);
    this.waiting = null;
    if (this.lost) {
      this.lost = false;
      this.header();
    }
  }

  gone() {
    if (this.waiting) clearTimeout(this.waiting);
    this.waiting = null;
    if (this.model.get("status") !== "running") return;
    this.lost = true;
    this.header();
  }

  fold(folded) {
    this.body.hidden = folded;
    this.toggle.textContent = folded ? "show run" : "hide run";
    this.toggle.title = folded ? "Show the whole run" : "Fold the run to this line";
  }

  tally() {
    const c = this.counts;
    const parts = [];
    if (c.runs.size) parts.push(plural(c.runs.size, "sub-run", "sub-runs"));
    if (c.tools) parts.push(plural(c.tools, "tool call", "tool calls"));
    if (c.words) parts.push(plural(c.words, "word", "words"));
    if (c.errors) parts.push(plural(c.errors, "error", "errors"));
    return parts;
  }

  header() {
    const m = this.model;
    const status = this.lost ? "lost" : m.get("status");
    const running = status === "running";
    const ended = m.get("ended") || Date.now() / 1000;
    const took = Math.max(0, ended - (m.get("started") || ended));
    this.root.dataset.status = status;
    this.state.textContent = { running: "running", done: "done", error: "failed", cancelled: "cancelled", lost: "ended" }[status] || status;
    this.title.textContent = m.get("title");
    if (this.lost) {
      this.note.textContent = "the kernel is gone (restarted, shut down or disconnected)";
    } else if (running) {
      const open = [...this.questions.values()].filter((q) => q.open).length;
      const asking = open ? (open === 1 ? "waiting for an answer" : open + " questions waiting") : "";
      this.note.textContent = [asking || this.activity, fmtTime(took), this.usage].filter(Boolean).join(" · ");
    } else {
      this.note.textContent = [fmtTime(took), ...this.tally(), this.usage].filter(Boolean).join(" · ");
    }
    this.stop.hidden = !running;
    for (const q of this.questions.values()) this.live(q);
    if (!running && !this.lost && !this.folded) {
      this.folded = true;
      this.toggle.hidden = false;
      this.fold(true);
    }
    if (!running && this.timer) { clearInterval(this.timer); this.timer = null; }
    if (running && !this.timer) this.timer = setInterval(() => this.header(), 500);
  }

  // Where new blocks go: the innermost open step, else the body.
  container() {
    return this.steps.length ? this.steps[this.steps.length - 1].body : this.body;
  }

  block(kind, path) {
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.kind === kind && last.path === path && kind === "text") return last;
    const node = document.createElement("div");
    node.className = "agentnb-" + kind + (path ? " agentnb-child" : "");
    if (path) {
      const label = document.createElement("div");
      label.className = "agentnb-label";
      label.textContent = path;
      node.append(label);
    }
    const content = document.createElement("div");
    node.append(content);
    this.container().append(node);
    const b = { kind, path, node, content, text: "" };
    this.blocks.push(b);
    return b;
  }

  // A question: its prompt, its controls (a button per choice, or a text box), its default.
  ask(path, id, prompt, choices, fallback, callId) {
    const blk = this.block("ask", path);
    const q = { id, open: true, sent: false, controls: [] };
    const line = document.createElement("div");
    line.className = "agentnb-ask-prompt";
    line.textContent = "? " + lines(prompt);
    const box = document.createElement("div");
    box.className = "agentnb-ask-controls";
    const send = (value) => {
      if (!q.open || q.sent) return;
      q.sent = true; // until the answer or a refusal comes
      q.refusal.hidden = true;
      this.live(q);
      try {
        this.model.send({ t: "answer", ask_id: id, value });
      } catch (err) {
        this.refused(id, "the kernel could not be reached: " + err);
      }
    };
    if (Array.isArray(choices)) {
      for (const choice of choices) {
        const button = document.createElement("button");
        button.className = "agentnb-choice";
        button.textContent = lines(String(choice));
        button.addEventListener("click", () => send(String(choice)));
        box.append(button);
        q.controls.push(button);
      }
    } else {
      const input = document.createElement("input");
      input.className = "agentnb-ask-input";
      input.type = "text";
      input.addEventListener("keydown", (ev) => {
        if (ev.key !== "Enter") return;
        ev.preventDefault();
        ev.stopPropagation();
        send(input.value);
      });
      const button = document.createElement("button");
      button.className = "agentnb-choice";
      button.textContent = "Answer";
      button.addEventListener("click", () => send(input.value));
      box.append(input, button);
      q.controls.push(input, button);
    }
    const notes = [];
    if (fallback !== null && fallback !== undefined) notes.push("default: " + lines(String(fallback)));
    if (callId) notes.push("for the call " + lines(String(callId)));
    if (notes.length) {
      const note = document.createElement("span");
      note.className = "agentnb-ask-note";
      note.textContent = notes.join(" · ");
      box.append(note);
    }
    q.refusal = document.createElement("div");
    q.refusal.className = "agentnb-ask-refused";
    q.refusal.hidden = true;
    q.shown = box; // the controls, then what became of the question
    blk.content.append(line, box, q.refusal);
    this.questions.set(id, q);
    this.live(q);
    this.header();
  }

  // The controls of an open question work while the run runs, its kernel is there and
  // no answer is on its way.
  live(q) {
    if (q.open && this.model.get("status") !== "running") {
      // The run ended without an answer (or its answer is in items still to come).
      this.outcome(q, "no answer: the run ended");
    }
    const on = q.open && !q.sent && this.running();
    for (const control of q.controls) control.disabled = !on;
  }

  // The question's controls give way to *text*: its answer, or why it has none.
  outcome(q, text) {
    q.open = false;
    const done = document.createElement("div");
    done.className = "agentnb-ask-answer";
    done.textContent = text;
    q.shown.replaceWith(done);
    q.shown = done;
    q.refusal.hidden = true;
    q.controls = [];
  }

  answered(id, value, by) {
    const q = this.questions.get(id);
    if (!q || q.answered) return;
    q.answered = true;
    this.outcome(q, "= " + lines(value) + " (by " + by + ")");
    this.header();
  }

  refused(id, message) {
    const q = this.questions.get(id);
    if (!q || !q.open) return;
    q.sent = false;
    q.refusal.textContent = message;
    q.refusal.hidden = false;
    this.live(q);
  }

  update(items) {
    const touched = new Set();
    const c = this.counts;
    for (; this.shown < items.length; this.shown++) {
      const item = items[this.shown];
      const [kind, path, a, b, d] = item;
      if (path) c.runs.add(path);
      if (kind === "ask") {
        this.ask(path, a, b, d, item[5], item[6]);
      } else if (kind === "answer") {
        this.answered(a, String(b), String(d));
      } else if (kind === "text") {
        const blk = this.block("text", path);
        blk.text += a;
        touched.add(blk);
      } else if (kind === "reasoning") {
        let blk = this.blocks[this.blocks.length - 1];
        if (!blk || blk.kind !== "reasoning" || blk.path !== path || blk.id !== b) {
          blk = this.block("reasoning", path);
          blk.id = b;
          const box = document.createElement("details");
          blk.summary = document.createElement("summary");
          box.append(blk.summary, blk.content); // the text, folded under its last line
          blk.node.append(box);
        }
        blk.text += a;
        touched.add(blk);
      } else if (kind === "call") {
        const key = path + "\u0000" + a;
        let call = this.calls.get(key);
        if (!call) {
          const line = document.createElement("div");
          line.className = "agentnb-call";
          const name = document.createElement("span");
          name.className = "agentnb-call-name";
          name.textContent = "\u2192 " + b + " ";
          const args = document.createElement("span");
          args.className = "agentnb-args";
          line.append(name, args);
          this.block("tool", path).content.append(line);
          call = { line, args, text: "" };
          this.calls.set(key, call);
        }
        call.text += d;
        call.args.textContent = call.text;
      } else if (kind === "tool") {
        if (a.startsWith("\u2192")) c.tools += 1;
        const box = document.createElement("details");
        const s = document.createElement("summary");
        s.textContent = a;
        const pre = document.createElement("pre");
        pre.textContent = b;
        box.append(s, pre);
        const key = path + "\u0000" + d;
        const call = d !== undefined && this.calls.get(key);
        if (call) {
          call.line.replaceWith(box); // the whole call, where its arguments streamed
          this.calls.delete(key);
        } else {
          this.block("tool", path).content.append(box);
        }
      } else if (kind === "step") {
        const node = document.createElement("div");
        node.className = "agentnb-step" + (path ? " agentnb-child" : "");
        const name = document.createElement("div");
        name.className = "agentnb-step-name";
        name.textContent = "\u25b8 " + (path ? path + ": " : "") + a;
        const body = document.createElement("div");
        body.className = "agentnb-step-body";
        node.append(name, body);
        this.container().append(node);
        this.steps.push({ key: path + "\u0000" + a + "\u0000" + b, body, node });
        this.blocks.push({ kind: "step" }); // what follows starts blocks of its own
      } else if (kind === "step_end") {
        const key = path + "\u0000" + a + "\u0000" + b;
        const at = this.steps.map((st) => st.key).lastIndexOf(key);
        if (at >= 0) this.steps.splice(at, 1)[0].node.classList.add("agentnb-step-done");
        this.blocks.push({ kind: "step" });
      } else if (kind === "state") {
        const key = path + "\u0000state";
        let line = this.customs.get(key);
        if (!line) {
          const blk = this.block("custom", path);
          line = document.createElement("div");
          blk.content.append(line);
          this.customs.set(key, line);
        }
        line.textContent = a;
      } else if (kind === "usage") {
        this.usage = a;
        this.header();
      } else if (kind === "error") {
        c.errors += 1;
        const blk = this.block("error", path);
        const pre = document.createElement("pre");
        pre.textContent = b || a;
        const msg = document.createElement("div");
        msg.className = "agentnb-error-message";
        msg.textContent = a;
        blk.content.append(msg, pre);
      } else if (kind === "status") {
        this.activity = path ? path + ": " + a : a;
        this.header();
      } else if (kind === "custom") {
        const key = path + "\u0000" + b;
        let line = this.customs.get(key);
        if (!line) {
          const blk = this.block("custom", path);
          line = document.createElement("div");
          blk.content.append(line);
          this.customs.set(key, line);
        }
        line.textContent = "• " + a;
      } else if (kind === "cancelled") {
        const blk = this.block("cancelled", path);
        blk.content.textContent = "cancelled" + (a ? ": " + a : "");
      }
    }
    for (const blk of touched) {
      if (blk.kind === "reasoning") {
        const shown = lines(blk.text);
        blk.content.textContent = shown;
        const last = shown.split("\n").filter((l) => l.trim()).pop() || "";
        blk.summary.textContent = "thinking" + (last ? ": " + last : "");
        continue;
      }
      blk.content.replaceChildren(linked(lines(blk.text)));
      const words = (blk.text.match(/\S+/g) || []).length;
      c.words += words - (blk.words || 0);
      blk.words = words;
    }
    if (this.lost && items.length) this.alive(); // the kernel sends: it is there
    if (!this.running()) this.header();
  }

  dispose() {
    if (this.timer) clearInterval(this.timer);
    clearTimeout(this.settle);
    if (this.waiting) clearTimeout(this.waiting);
    this.model.off("change:status", this.onState);
    this.model.off("change:ended", this.onState);
    this.model.off("comm_live_update", this.onGone);
    this.model.off("destroy", this.onGone);
  }
}

export default {
  initialize({ model }) {
    const handler = (msg) => receive(model, msg);
    model.on("msg:custom", handler);
    return () => {
      // The model is gone (its cell cleared, the kernel restarted): free its items.
      model.off("msg:custom", handler);
      forget(model);
    };
  },
  render({ model, el }) {
    const s = store(model);
    const view = new View(model, el);
    view.update(s.items);
    s.views.add(view);
    // A view drawn where the kernel's batches came before it (a reload, a second page)
    // asks for the rest: while its run runs, always (a run waiting on a question sends
    // nothing more); once it ended, if it has fewer items than the kernel sent.
    const lacking = setTimeout(() => {
      const ended = model.get("status") !== "running";
      if (!ended || s.items.length < model.get("items")) {
        model.send({ t: "sync", have: s.items.length });
      }
    }, SETTLE_MS);
    return () => { clearTimeout(lacking); s.views.delete(view); view.dispose(); };
  },
};
