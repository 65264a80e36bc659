// agentnb's live run view (an anywidget front end).
//
// The kernel keeps an append-only log of display items and sends new items in
// batches: {t: "items", offset, items}. The view keeps the items it has; a batch
// that starts past its end means something was missed, so it asks for the rest
// with {t: "sync", have}; a batch that overlaps is trimmed. A view created late
// (a page reload, a second view) asks for everything it lacks the same way.
// Everything the kernel sends is agent data and only ever reaches the page as
// text (textContent), never as HTML: Markdown and markup in it show as typed.

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

function receive(model, msg) {
  if (!msg || msg.t !== "items") return;
  const s = store(model);
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
    this.head.append(this.dot, this.state, this.title, this.note, this.stop);
    this.body = document.createElement("div");
    this.body.className = "agentnb-body";
    this.root.append(this.head, this.body);
    el.append(this.root);
    this.blocks = [];
    this.activity = "";
    this.customs = new Map();
    this.onState = () => this.header();
    model.on("change:status", this.onState);
    model.on("change:ended", this.onState);
    this.timer = setInterval(() => this.header(), 500);
    this.header();
  }

  header() {
    const m = this.model;
    const status = m.get("status");
    const running = status === "running";
    const ended = m.get("ended") || Date.now() / 1000;
    const took = Math.max(0, ended - (m.get("started") || ended));
    this.root.dataset.status = status;
    this.state.textContent = { running: "running", done: "done", error: "failed", cancelled: "cancelled" }[status] || status;
    this.title.textContent = m.get("title");
    this.note.textContent = (this.activity && running ? this.activity + " · " : "") + fmtTime(took);
    this.stop.hidden = !running;
    if (!running && this.timer) { clearInterval(this.timer); this.timer = null; }
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
    this.body.append(node);
    const b = { kind, path, node, content, text: "" };
    this.blocks.push(b);
    return b;
  }

  update(items) {
    const touched = new Set();
    for (; this.shown < items.length; this.shown++) {
      const [kind, path, a, b] = items[this.shown];
      if (kind === "text") {
        const blk = this.block("text", path);
        blk.text += a;
        touched.add(blk);
      } else if (kind === "tool") {
        const blk = this.block("tool", path);
        const d = document.createElement("details");
        const s = document.createElement("summary");
        s.textContent = a;
        const pre = document.createElement("pre");
        pre.textContent = b;
        d.append(s, pre);
        blk.content.append(d);
      } else if (kind === "error") {
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
    for (const blk of touched) blk.content.textContent = lines(blk.text);
  }

  dispose() {
    if (this.timer) clearInterval(this.timer);
    this.model.off("change:status", this.onState);
    this.model.off("change:ended", this.onState);
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
    model.send({ t: "sync", have: s.items.length });
    return () => { s.views.delete(view); view.dispose(); };
  },
};
