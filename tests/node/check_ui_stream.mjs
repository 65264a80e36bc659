// Validate a Vercel AI SDK UI message stream with the real `ai` package
// and print the message it assembles, as one JSON object.
//
//   node check_ui_stream.mjs FILE.sse             a recorded SSE body
//   node check_ui_stream.mjs -  < FILE.sse        the same from stdin
//   node check_ui_stream.mjs --url URL [--text "hi"]
//                                                  POST a useChat-shaped body to a live server
//   ... --message JSON                             assemble onto this message (a continuation,
//                                                  as useChat does after a tool approval)
//
// Each `data:` payload (except the final `[DONE]`) is checked against uiMessageChunkSchema();
// the valid chunks are then assembled by readUIMessageStream (the same state machine useChat
// runs); an out-of-order chunk (a delta for a part never started, an output for an unknown tool
// call) is a problem, and `error` chunks (the agent's own error) are listed as streamErrors. Exit code 0 only when: every chunk is valid,
// the stream ended with [DONE], and assembly did not throw. For a URL, the response status and
// the x-vercel-ai-ui-message-stream header are checked too.
import fs from 'node:fs';
import { uiMessageChunkSchema, readUIMessageStream, UI_MESSAGE_STREAM_HEADERS } from 'ai';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const url = opt('--url');
const problems = [];

let text;
if (url) {
  const body = {                       // what useChat's DefaultChatTransport POSTs (ai 6)
    id: 'chat-1',
    messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: opt('--text') ?? 'hi' }] }],
    trigger: 'submit-message',
    messageId: undefined,
  };
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) problems.push(`HTTP ${res.status}`);
  const want = UI_MESSAGE_STREAM_HEADERS['x-vercel-ai-ui-message-stream'];
  if (res.headers.get('x-vercel-ai-ui-message-stream') !== want) problems.push(`header x-vercel-ai-ui-message-stream is ${res.headers.get('x-vercel-ai-ui-message-stream')}, want ${want}`);
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) problems.push(`content-type ${res.headers.get('content-type')}`);
  text = await res.text();
} else {
  const src = args[0] ?? '-';
  text = fs.readFileSync(src === '-' ? 0 : src, 'utf8');
}

// SSE framing: events split by a blank line; data lines joined by \n (as eventsource-parser does).
const payloads = [];
for (const block of text.replace(/\r\n?/g, '\n').split('\n\n')) {
  const data = block.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, ''));
  if (data.length) payloads.push(data.join('\n'));
}
const schema = uiMessageChunkSchema();
const chunks = [];
let invalid = 0, done = false;
for (const [i, p] of payloads.entries()) {
  if (p === '[DONE]') { if (i !== payloads.length - 1) problems.push('[DONE] is not last'); done = true; continue; }
  let obj;
  try { obj = JSON.parse(p); } catch { invalid++; problems.push(`chunk ${i}: not JSON: ${p.slice(0, 80)}`); continue; }
  const r = await schema.validate(obj);
  if (!r.success) { invalid++; problems.push(`chunk ${i} (${obj?.type}): ${String(r.error).slice(0, 200)}`); continue; }
  chunks.push(r.value);
}
if (!done) problems.push('no [DONE] at the end');

let message = null;
const streamErrors = [];
const stream = new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(x); c.close(); } });
try {
  // An `error` chunk reaches onError (it is the agent's error, not a protocol problem); a chunk
  // out of order (a delta for a part never started) makes the iteration throw.
  // Both reach onError (terminateOnError would stop at the agent's error): tell them apart by text.
  const expected = chunks.filter(c => c.type === 'error').map(c => c.errorText);
  const onError = (e) => {
    const msg = String(e?.message ?? e), i = expected.indexOf(msg);
    if (i >= 0) { expected.splice(i, 1); streamErrors.push(msg); } else problems.push(`assembly: ${msg}`);
  };
  const previous = opt('--message') ? JSON.parse(opt('--message')) : undefined;
  for await (const m of readUIMessageStream({ message: previous, stream, onError })) message = m;
} catch (e) { problems.push(`assembly threw: ${e?.message ?? e}`); }

console.log(JSON.stringify({ chunks: chunks.length, invalid, done, types: chunks.map(c => c.type), problems, streamErrors, message }, null, 1));
process.exit(problems.length ? 1 : 0);
