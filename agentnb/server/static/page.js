// agentnb's web page: pick an agent, start a run, watch its events arrive.
//
// POST api/stream answers with Server-Sent Events, read here from the fetch
// response body (EventSource cannot POST). The run's id comes in the
// X-Agentnb-Run-Id header and every event's SSE id is "<run id>:<n>"; if the
// stream drops before the run's own terminal event (done, error, cancelled),
// the page resumes with GET api/runs/{id}/events and Last-Event-ID.
// Runs are started with on_disconnect "continue", so that a dropped connection
// does not cancel what the page is about to resume; Stop, and leaving the page,
// cancel the run explicitly. Agent data only ever reaches the page as text
// (textContent, text nodes), never as HTML.
//
// The model's reasoning is a "thinking" line folded to its last line (click to
// unfold); a tool call's arguments grow on its line as they stream, then its
// whole call line takes their place; a step's lines are indented under its name;
// the run's token usage and cost (summed live, then the run's own totals) are in
// the status line. The lines are the ones agentnb/_format.py writes.
//
// A question of the agent's (an "ask" event, of the run or a sub-run) shows its
// prompt and a button per choice, or a text box answered with Enter (or its
// button) for free text, and its default. A click or Enter POSTs the answer to
// api/runs/{run id}/answer (by "page"; a sub-run's question through the run's
// id); the "answer" event replaces the controls with what was answered and by
// whom. A refused answer shows the server's message by the question, its
// controls kept.

const RETRIES = 5; // resume attempts in a row without receiving anything
const RETRY_MS = 300; // first pause before resuming; doubles each time
const MAX_JSON = 300; // characters of a tool's args or result shown on its line
const TERMINAL = new Set(["done", "error", "cancelled"]);
// The words for a run's state, as the notebook cell says them.
const STATE_WORDS = { idle: "idle", running: "running", done: "done", error: "failed", cancelled: "cancelled" };
const ARG_LIMIT = 60; // characters of one tool argument, as the cell shows it
const DEFAULT_AGENT = "poet"; // chosen first when the server has it (the demo's)
const DEFAULT_INPUT = { poet: "the sea" };
const LOST = "no answer here: the page lost the run"; // a question's end when the page does

/**
 * An incremental parser for the text/event-stream format (the WHATWG HTML
 * standard's "event stream interpretation"). Feed it the body's chunks as they
 * come, bytes or strings, split anywhere; it calls onEvent({type, data, id})
 * for each complete event. Lines end in CRLF, LF or a lone CR, and a CR at the
 * end of one chunk may have its LF at the start of the next.
 */
export class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.decoder = new TextDecoder(); // UTF-8; drops a leading BOM
    this.line = ""; // the line read so far
    this.afterCR = false; // the last line ended with a CR: skip a LF right after it
    this.type = "";
    this.data = [];
    this.lastEventId = "";
  }

  push(chunk) {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!text) return;
    let start = 0;
    if (this.afterCR) {
      this.afterCR = false;
      if (text.charCodeAt(0) === 10) start = 1;
    }
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.line + text.slice(start, i);
      this.line = "";
      if (c === 13) {
        if (i + 1 === text.length) this.afterCR = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
      this.processLine(line);
    }
    this.line += text.slice(start);
  }

  /** The stream ended: an event without its blank line is dropped, as the standard says. */
  end() {
    this.push(this.decoder.decode());
    this.line = "";
    this.type = "";
    this.data = [];
  }

  processLine(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line[0] === ":") return; // a comment (keep-alive ping)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    // "retry" and unknown fields: nothing to do here.
  }

  dispatch() {
    const { type, data } = this;
    this.type = "";
    this.data = [];
    if (!data.length) return;
    this.onEvent({ type: type || "message", data: data.join("\n"), id: this.lastEventId });
  }
}

// -- the page ------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function compactJSON(value) {
  const full = value === undefined ? "" : JSON.stringify(value);
  return full.length > MAX_JSON ? [full.slice(0, MAX_JSON) + "…", full] : [full, ""];
}

/** Line endings (CRLF, CR, LF) as spaces, as the cell writes a tool's line. */
const oneLine = (text) => text.replace(/\r\n|\r|\n/g, " ");
/** Line endings (CRLF, CR, LF) as LF, as the cell shows a question. */
const lines = (text) => text.replace(/\r\n?/g, "\n");

/** JSON as Python's json.dumps writes it (", " and ": "), so the page and the cell agree. */
function pyJSON(value) {
  if (Array.isArray(value)) return "[" + value.map(pyJSON).join(", ") + "]";
  if (value && typeof value === "object") {
    return "{" + Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJSON(v)}`).join(", ") + "}";
  }
  return JSON.stringify(value) ?? "null";
}

/** *value* on one line, at most *limit* characters: a string as is, anything else as JSON. */
function brief(value, limit) {
  let text = typeof value === "string" ? value : value === undefined ? "" : pyJSON(value);
  text = oneLine(text);
  return text.length <= limit ? text : text.slice(0, limit - 1) + "…";
}

/** ``→ name(key=value, ...)``, as the cell and the console write a tool call. */
function callLine(name, args) {
  const shown = args && typeof args === "object" && !Array.isArray(args)
    ? Object.entries(args).map(([k, v]) => `${k}=${brief(v, ARG_LIMIT)}`).join(", ")
    : brief(args, MAX_JSON);
  return `→ ${oneLine(String(name ?? ""))}(${shown})`;
}

/** A whole number of tokens (an int >= 0), or null. */
const count = (v) => (Number.isInteger(v) && v >= 0 ? v : null);
const grouped = (n) => n.toLocaleString("en-US");

/** ``$1.23``, ``$0.0123``, or ``<$0.0001`` for less (but not nothing). */
function dollars(cost) {
  if (cost >= 1) return "$" + cost.toFixed(2);
  const shown = cost.toFixed(4);
  return cost > 0 && shown === "0.0000" ? "<$0.0001" : "$" + shown;
}

/** A run's usage totals on one line ("" for none), as _format.usage_line writes them. */
function usageLine(totals) {
  if (!totals || typeof totals !== "object") return "";
  const parts = [];
  const calls = count(totals.calls);
  if (calls) parts.push(`${grouped(calls)} model call${calls === 1 ? "" : "s"}`);
  const tokensIn = count(totals.input_tokens);
  const cached = count(totals.cached_tokens);
  if (tokensIn !== null) parts.push(`${grouped(tokensIn)} tokens in` + (cached ? ` (${grouped(cached)} cached)` : ""));
  const out = count(totals.output_tokens);
  const reasoning = count(totals.reasoning_tokens);
  if (out !== null) parts.push(`${grouped(out)} out` + (reasoning ? ` (${grouped(reasoning)} reasoning)` : ""));
  const cost = totals.cost;
  if (typeof cost === "number" && Number.isFinite(cost) && cost >= 0) parts.push(dollars(cost));
  return parts.join(" · ");
}

/** Add one model call's usage event to *totals*. */
function addUsage(totals, event) {
  const add = (key, value) => {
    if (typeof value === "number" && Number.isFinite(value)) totals[key] = (totals[key] || 0) + value;
  };
  add("calls", 1);
  add("input_tokens", count(event.input_tokens) ?? 0);
  add("output_tokens", count(event.output_tokens) ?? 0);
  add("reasoning_tokens", count(event.reasoning_tokens));
  add("cached_tokens", count(event.cached_tokens));
  add("cost", event.cost);
}

/** ``state: {...}`` for a snapshot, ``state: replace /count = 2; ...`` for a delta. */
function stateLine(event, limit = 120) {
  if (event.kind === "state_snapshot") return brief(`state: ${brief(event.state, limit)}`, limit);
  const ops = (Array.isArray(event.patch) ? event.patch : []).map((op) => {
    let text = `${op && op.op} ${op && op.path}`;
    if (op && "from" in op) text += ` from ${brief(op.from, 40)}`;
    if (op && "value" in op) text += ` = ${brief(op.value, 40)}`;
    return text;
  });
  return brief("state: " + ops.join("; "), limit);
}

function formatElapsed(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    // not JSON: say what the status was
  }
  return `the server answered ${response.status} ${response.statusText}`;
}

class Page {
  constructor() {
    this.form = $("run-form");
    this.agent = $("agent");
    this.agentDescription = $("agent-description");
    this.input = $("input");
    this.startButton = $("start");
    this.stopButton = $("stop");
    this.statusAgent = document.querySelector("[data-testid=status-agent]");
    this.state = document.querySelector("[data-testid=state]");
    this.elapsed = document.querySelector("[data-testid=elapsed]");
    this.message = document.querySelector("[data-testid=message]");
    this.usage = el("span", "status-usage");
    this.usage.dataset.testid = "usage";
    this.message.before(this.usage);
    this.text = $("text");
    this.events = $("events");
    this.descriptions = new Map();
    this.run = null; // the run shown

    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.start();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.start();
      }
    });
    this.stopButton.addEventListener("click", () => this.stop());
    // Leaving the page: the run it started goes with it (a keepalive request outlives the page).
    window.addEventListener("pagehide", () => {
      const run = this.run;
      if (run && run.id && !run.ended) {
        fetch(`api/runs/${encodeURIComponent(run.id)}/cancel`, { method: "POST", keepalive: true });
      }
    });
    this.agent.addEventListener("change", () => this.describeAgent());
  }

  async loadAgents() {
    let agents;
    try {
      const response = await fetch("api/agents", { cache: "no-store" });
      if (!response.ok) throw new Error(await errorMessage(response));
      agents = await response.json();
    } catch (err) {
      this.message.textContent = `could not list the agents: ${err.message}`;
      return;
    }
    this.agent.replaceChildren();
    for (const { name, description } of agents) {
      const option = el("option", "", name);
      option.value = name;
      this.descriptions.set(name, description || "");
      this.agent.append(option);
    }
    if (!agents.length) this.agent.append(el("option", "", "no agents"));
    this.agent.disabled = !agents.length;
    this.startButton.disabled = !agents.length;
    if (this.descriptions.has(DEFAULT_AGENT)) this.agent.value = DEFAULT_AGENT;
    this.describeAgent();
  }

  describeAgent() {
    this.agentDescription.textContent = this.descriptions.get(this.agent.value) || "";
    const example = DEFAULT_INPUT[this.agent.value];
    if (example && !this.input.value.trim()) this.input.value = example;
  }

  setState(state) {
    document.body.dataset.state = state;
    this.state.textContent = STATE_WORDS[state] || state;
    this.state.dataset.state = state;
  }

  tick() {
    const run = this.run;
    if (!run) return;
    this.elapsed.textContent = formatElapsed((run.endedAt ?? performance.now()) - run.startedAt);
  }

  // -- a run ----------------------------------------------------------------------

  async start() {
    if ((this.run && !this.run.ended) || this.agent.disabled || !this.agent.value) return;
    const run = {
      id: null,
      agent: this.agent.value,
      lastId: "",
      lastN: -1,
      received: 0,
      ended: false,
      stopRequested: false,
      startedAt: performance.now(),
      endedAt: null,
      textNode: document.createTextNode(""),
      lastLine: null, // the last line, if later ones may merge into it (child text, custom kinds)
      timer: null,
      usage: {}, // the sum of the usage events so far
      calls: new Map(), // run id + call id -> the line of a tool call whose arguments stream
      thinking: new Map(), // run id + message id -> a reasoning line
      states: new Map(), // run id -> its state line
      steps: [], // the steps open now, innermost last
      questions: new Map(), // ask id -> a question shown, answered or not
    };
    this.run = run;
    this.text.replaceChildren(run.textNode);
    this.events.replaceChildren();
    this.statusAgent.textContent = run.agent;
    this.message.textContent = "";
    this.usage.textContent = "";
    delete document.body.dataset.runId;
    this.setState("running");
    this.startButton.disabled = true;
    this.stopButton.disabled = false;
    this.tick();
    run.timer = setInterval(() => this.tick(), 100);

    let response;
    try {
      response = await fetch("api/stream", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        // "continue": a dropped connection must not cancel the run this page resumes;
        // the page cancels it itself (Stop, or leaving the page).
        body: JSON.stringify({ agent: run.agent, input: this.input.value, on_disconnect: "continue" }),
        cache: "no-store",
      });
    } catch (err) {
      this.end(run, "error", `could not start the run: ${err.message}`);
      return;
    }
    if (!response.ok) {
      this.end(run, "error", await errorMessage(response));
      return;
    }
    this.setRunId(run, response.headers.get("X-Agentnb-Run-Id"));
    await this.follow(run, response);
  }

  setRunId(run, id) {
    if (!id || run.id) return;
    run.id = id;
    if (this.run === run) document.body.dataset.runId = id;
    if (run.stopRequested) this.sendCancel(run);
  }

  async follow(run, response) {
    let failures = 0;
    for (;;) {
      const before = run.received;
      if (response) {
        try {
          await this.read(run, response);
        } catch {
          // the connection dropped: resume below
        }
      }
      if (run.ended) return;
      if (run.received > before) failures = 0;
      if (!run.id || ++failures > RETRIES) {
        this.end(run, "error", "lost the connection to the run", undefined, LOST);
        return;
      }
      await sleep(RETRY_MS * 2 ** (failures - 1));
      const headers = { Accept: "text/event-stream" };
      if (run.lastId) headers["Last-Event-ID"] = run.lastId;
      try {
        response = await fetch(`api/runs/${encodeURIComponent(run.id)}/events`, {
          headers,
          cache: "no-store",
        });
      } catch {
        response = null;
        continue;
      }
      if (!response.ok) {
        if (response.status >= 500) {
          response = null;
          continue;
        }
        // unknown_run, expired, ...: resuming again will not help.
        this.end(run, "error", await errorMessage(response), undefined, LOST);
        return;
      }
    }
  }

  async read(run, response) {
    const reader = response.body.getReader();
    const parser = new SSEParser((message) => this.receive(run, message));
    try {
      while (!run.ended) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
      if (!run.ended) parser.end();
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  receive(run, message) {
    if (run.ended) return;
    const { id } = message;
    const colon = id.lastIndexOf(":");
    if (colon > 0) {
      this.setRunId(run, id.slice(0, colon));
      const n = Number(id.slice(colon + 1));
      if (id.slice(0, colon) === run.id && Number.isInteger(n)) {
        if (n <= run.lastN) return; // already shown (a resume that overlaps)
        run.lastN = n;
      }
    }
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not an event
    }
    if (!event || typeof event !== "object") return;
    if (id) run.lastId = id;
    run.received++;
    this.show(run, event, message.type);
  }

  show(run, event, type) {
    const kind = typeof event.kind === "string" ? event.kind : type;
    const own = event.run_id === run.id;
    const path = Array.isArray(event.path) ? event.path.map(String) : [];
    // Where a line goes: child runs' lines are indented and start with their path.
    const at = {
      prefix: own ? "" : path.join(" › "),
      depth: Math.max(0, path.length - 1) + run.steps.length,
    };
    switch (kind) {
      case "text": {
        const text = String(event.text ?? "");
        if (own) run.textNode.appendData(text);
        else this.line(run, { ...at, key: `text ${event.run_id}`, className: "child-text", append: text });
        return;
      }
      case "status": {
        const message = String(event.message ?? "");
        this.message.textContent = at.prefix ? `${at.prefix}: ${message}` : message;
        return;
      }
      case "reasoning": {
        const key = `${event.run_id} ${event.message_id ?? ""}`;
        let shown = run.thinking.get(key);
        if (!shown) {
          const node = el("li", "thinking");
          this.place(node, at);
          const box = el("details");
          const summary = el("summary");
          const text = el("pre", "thinking-text");
          box.append(summary, text);
          if (at.prefix) node.append(el("span", "path", at.prefix), " ");
          node.append(box);
          this.events.append(node);
          run.lastLine = null;
          shown = { summary, text, all: "" };
          run.thinking.set(key, shown);
        }
        shown.all += String(event.text ?? "");
        shown.text.textContent = shown.all;
        const last = shown.all.split(/\r\n|\r|\n/).filter((l) => l.trim()).pop() || "";
        shown.summary.textContent = "thinking" + (last ? ": " + last : "");
        return;
      }
      case "tool_call_start": {
        const name = el("span", "call-name", `→ ${oneLine(String(event.name ?? ""))} `);
        const args = document.createTextNode("");
        const node = el("li", "tool-call streaming");
        this.place(node, at);
        if (at.prefix) node.append(el("span", "path", at.prefix), " ");
        node.append(name, args);
        this.events.append(node);
        run.lastLine = null;
        run.calls.set(`${event.run_id} ${event.call_id}`, { node, args });
        return;
      }
      case "tool_call_delta": {
        const call = run.calls.get(`${event.run_id} ${event.call_id}`);
        if (call) call.args.appendData(String(event.delta ?? ""));
        return;
      }
      case "tool_call": {
        const [, full] = compactJSON(event.args);
        const text = callLine(event.name, event.args);
        const key = `${event.run_id} ${event.call_id}`;
        const call = run.calls.get(key);
        if (call) {
          // The whole call takes the place of its streaming arguments.
          run.calls.delete(key);
          call.node.classList.remove("streaming");
          call.node.replaceChildren();
          if (at.prefix) call.node.append(el("span", "path", at.prefix), " ");
          call.node.append(text);
          call.node.title = full;
          return;
        }
        this.line(run, { ...at, className: "tool-call", text, title: full });
        return;
      }
      case "step_start": {
        const text = `▸ ${String(event.name ?? "")}`;
        this.line(run, { ...at, className: "step", text });
        run.steps.push(`${event.run_id} ${event.name} ${event.step_id ?? ""}`);
        return;
      }
      case "step_end": {
        const open = run.steps.lastIndexOf(`${event.run_id} ${event.name} ${event.step_id ?? ""}`);
        if (open >= 0) run.steps.splice(open, 1);
        run.lastLine = null;
        return;
      }
      case "state_snapshot":
      case "state_delta": {
        const shown = run.states.get(event.run_id);
        if (shown) shown.data = stateLine(event);
        else run.states.set(event.run_id, this.line(run, { ...at, className: "state", text: stateLine(event) }));
        return;
      }
      case "usage":
        addUsage(run.usage, event);
        this.usage.textContent = usageLine(run.usage);
        return;
      case "ask":
        this.ask(run, event, at);
        return;
      case "answer": {
        const text = `= ${lines(String(event.value ?? ""))} (by ${String(event.by ?? "")})`;
        const q = run.questions.get(String(event.ask_id ?? ""));
        if (q) this.outcome(q, text);
        else this.line(run, { ...at, className: "ask-answer", text }); // its question unseen
        return;
      }
      case "tool_call_end":
      case "message_start":
      case "message_end":
      case "raw":
        return; // the tool call line, the text and the status line say it all
      case "tool_result": {
        const [, full] = compactJSON(event.result);
        const [mark, className] = event.denied
          ? ["⊘", "tool-result denied"]
          : event.is_error ? ["✗", "tool-result failed"] : ["←", "tool-result"];
        const text = `${mark} ${oneLine(String(event.name ?? ""))}: ${brief(event.result, 120)}`;
        this.line(run, { ...at, className, text, title: full });
        return;
      }
      case "error": {
        const summary = `${event.type}: ${event.message}`;
        const details = String(event.traceback ?? "");
        this.line(run, { ...at, className: "error", text: `✗ ${summary}`, details });
        if (own) this.end(run, "error", summary, event.usage);
        else this.closeQuestions(run, event.run_id);
        return;
      }
      case "done":
      case "cancelled":
        if (own) {
          const why = kind === "cancelled" ? String(event.reason || "stopped") : undefined;
          this.end(run, kind, why, event.usage);
        } else {
          const text = kind + (event.reason ? `: ${event.reason}` : "");
          this.line(run, { ...at, className: kind, text });
          this.closeQuestions(run, event.run_id);
        }
        return;
      default: {
        // A custom kind: its data (or, for a kind this page does not know, all its fields).
        let data = event.data;
        if (!("data" in event)) {
          data = { ...event };
          for (const key of ["kind", "run_id", "seq", "path", "ts"]) delete data[key];
        }
        const [shown, full] = compactJSON(data);
        const key = `custom ${event.run_id} ${kind}`;
        this.line(run, { ...at, key, className: "custom", text: `${kind} ${shown}`, title: full });
      }
    }
  }

  // -- questions ------------------------------------------------------------------

  /** A question: its prompt, a button per choice or a text box, its default. */
  ask(run, event, at) {
    const id = String(event.ask_id ?? "");
    if (run.questions.has(id)) return;
    const node = el("li", "ask");
    this.place(node, at);
    const prompt = el("div", "ask-prompt");
    if (at.prefix) prompt.append(el("span", "path", at.prefix), " ");
    prompt.append("? " + lines(String(event.prompt ?? "")));
    const controls = el("div", "ask-controls");
    const q = {
      id,
      runId: event.run_id, // the run that asked
      open: true,
      sent: false, // an answer is on its way
      inputs: [],
      shown: controls, // the controls, then what became of the question
      refusal: el("div", "ask-refused"),
    };
    const send = (value) => this.sendAnswer(run, q, value);
    if (Array.isArray(event.choices)) {
      for (const choice of event.choices) {
        const button = el("button", "ask-choice", lines(String(choice)));
        button.type = "button";
        button.addEventListener("click", () => send(String(choice)));
        controls.append(button);
        q.inputs.push(button);
      }
    } else {
      const input = el("input", "ask-input");
      input.type = "text";
      input.setAttribute("aria-label", "Your answer");
      input.addEventListener("keydown", (e) => {
        if (e.key !== "Enter" || e.isComposing) return;
        e.preventDefault();
        send(input.value);
      });
      const button = el("button", "ask-choice", "Answer");
      button.type = "button";
      button.addEventListener("click", () => send(input.value));
      controls.append(input, button);
      q.inputs.push(input, button);
    }
    const notes = [];
    if (typeof event.default === "string") notes.push("default: " + lines(event.default));
    if (event.call_id) notes.push("for the call " + lines(String(event.call_id)));
    if (notes.length) controls.append(el("span", "ask-note", notes.join(" · ")));
    q.refusal.hidden = true;
    node.append(prompt, controls, q.refusal);
    this.events.append(node);
    run.lastLine = null;
    run.questions.set(id, q);
  }

  /** POST the answer; a refusal is shown by the question, its controls working again. */
  async sendAnswer(run, q, value) {
    if (!q.open || q.sent || run.ended || !run.id) return;
    q.sent = true; // until the answer comes, or a refusal
    q.refusal.hidden = true;
    this.enable(q);
    let problem = null;
    try {
      const response = await fetch(`api/runs/${encodeURIComponent(run.id)}/answer`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ask_id: q.id, value, by: "page" }),
        cache: "no-store",
      });
      if (!response.ok) problem = await errorMessage(response);
    } catch (err) {
      problem = `could not send the answer: ${err.message}`;
    }
    q.sent = false;
    if (problem === null) return; // the answer event replaces the controls
    q.refusal.textContent = problem; // (shown also if the question was answered meanwhile)
    q.refusal.hidden = false;
    this.enable(q);
  }

  /** The controls work while the question is open and no answer is on its way. */
  enable(q) {
    for (const input of q.inputs) input.disabled = !q.open || q.sent;
  }

  /** The question's controls give way to *text*: its answer, or why it has none. */
  outcome(q, text) {
    if (!q.open) return;
    q.open = false;
    const done = el("div", "ask-answer", text);
    q.shown.replaceWith(done);
    q.shown = done;
    q.inputs = [];
  }

  /** The open questions of run *runId* (null: every run's) will get no answer. */
  closeQuestions(run, runId, text = "no answer: the run ended") {
    for (const q of run.questions.values()) {
      if (runId === null || q.runId === runId) this.outcome(q, text);
    }
  }

  /** Indent *node* as a line at *at* (a child run's, or inside a step). */
  place(node, { depth }) {
    if (depth) {
      node.classList.add("child");
      node.style.setProperty("--depth", String(depth));
    }
  }

  /** Add a line to the event list (its text node is returned); lines with the same key in a
   * row merge into one. */
  line(run, { key = null, prefix, depth, className, text = "", append = null, title = "", details = "" }) {
    const last = run.lastLine;
    if (key && last && last.key === key) {
      last.count++;
      if (append !== null) last.body.appendData(append);
      else {
        last.body.data = text;
        last.counter.textContent = ` ×${last.count}`;
      }
      if (title) last.node.title = title;
      return last.body;
    }
    const node = el("li", className);
    this.place(node, { depth });
    if (title) node.title = title;
    const body = document.createTextNode(append ?? text);
    const counter = el("span", "count");
    let target = node;
    if (details) {
      const box = el("details");
      const summary = el("summary");
      box.append(summary, el("pre", "traceback", details));
      node.append(box);
      target = summary;
    }
    if (prefix) target.append(el("span", "path", prefix), " ");
    target.append(body, counter);
    this.events.append(node);
    run.lastLine = key ? { key, node, body, counter, count: 1 } : null;
    return body;
  }

  end(run, state, message, usage, unanswered = "no answer: the run ended") {
    if (run.ended) return;
    this.closeQuestions(run, null, unanswered);
    if (usage && typeof usage === "object" && this.run === run) {
      this.usage.textContent = usageLine(usage); // the run's own totals, exact
    }
    run.ended = true;
    run.endedAt = performance.now();
    clearInterval(run.timer);
    if (this.run !== run) return;
    this.tick();
    this.message.textContent = message ?? ""; // a run's last status is not its end
    this.setState(state);
    this.startButton.disabled = false;
    this.stopButton.disabled = true;
  }

  stop() {
    const run = this.run;
    if (!run || run.ended || run.stopRequested) return;
    run.stopRequested = true;
    this.stopButton.disabled = true;
    this.message.textContent = "stopping…";
    if (run.id) this.sendCancel(run);
  }

  async sendCancel(run) {
    try {
      const response = await fetch(`api/runs/${encodeURIComponent(run.id)}/cancel`, {
        method: "POST",
        cache: "no-store",
      });
      if (!response.ok) throw new Error(await errorMessage(response));
    } catch (err) {
      if (run.ended || this.run !== run) return;
      run.stopRequested = false;
      this.stopButton.disabled = false;
      this.message.textContent = `could not stop the run: ${err.message}`;
    }
  }
}

if (typeof document !== "undefined" && document.getElementById("run-form")) {
  new Page().loadAgents();
}
