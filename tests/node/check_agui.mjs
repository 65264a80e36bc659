// Consume an AG-UI SSE stream with the official TypeScript client (@ag-ui/client 1.0.0)
// and print, as one JSON object, what it assembled: messages, state, outcome, interrupts.
//
//   node check_agui.mjs FILE.sse            a recorded SSE body
//   node check_agui.mjs -  < FILE.sse       the same from stdin
//   node check_agui.mjs --url URL [--input JSON] [--resume JSON]
//                                            POST a RunAgentInput to a live AG-UI server
//
// The whole real client pipeline runs either way: HttpAgent -> runHttpRequest ->
// transformHttpEventStream (SSE parser) -> verifyEvents (throws on out-of-order or malformed
// events) -> defaultApplyEvents (builds agent.messages / agent.state). For a file, the body is
// handed to HttpAgent through its injectable `fetch`.
// Exit code: 0 the run finished (success, interrupt or cancelled outcome) or ended with RUN_ERROR
// (reported, not a client failure); 1 the client rejected the stream (verify error, bad JSON).
import fs from 'node:fs';
import { HttpAgent } from '@ag-ui/client';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const url = opt('--url');
const input = JSON.parse(opt('--input') ?? '{}');

let fetchImpl;
if (!url) {
  const src = args[0] ?? '-';
  const body = fs.readFileSync(src === '-' ? 0 : src);
  fetchImpl = async () => new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

const agent = new HttpAgent({
  url: url ?? 'http://recorded.invalid/',
  threadId: input.threadId ?? 'thread-1',
  initialMessages: input.messages ?? [{ id: 'u1', role: 'user', content: input.text ?? 'hi' }],
  initialState: input.state ?? {},
  ...(fetchImpl ? { fetch: fetchImpl } : {}),
});

const seen = [];
const out = { events: 0, types: {}, outcome: null, result: undefined, interrupts: [], runError: null,
              steps: [], custom: [], subagents: [], usage: null, failure: null };
const subscriber = {
  onEvent({ event }) { out.events++; out.types[event.type] = (out.types[event.type] ?? 0) + 1; seen.push(event); },
  onRunFinishedEvent(p) {
    out.outcome = p.outcome; out.result = p.result ?? p.event.result;
    if (p.outcome === 'interrupt') out.interrupts = p.interrupts;
    if (p.outcome === 'success') out.pendingToolCallIds = p.pendingToolCallIds;
    out.usage = p.event.usage ?? null;
  },
  onRunErrorEvent({ event }) { out.runError = { message: event.message, code: event.code ?? null }; },
  onStepStartedEvent({ event }) { out.steps.push(['start', event.stepName]); },
  onStepFinishedEvent({ event }) { out.steps.push(['end', event.stepName]); },
  onCustomEvent({ event }) { out.custom.push({ name: event.name, value: event.value }); },
  onSubagentStartedEvent({ event }) { out.subagents.push(['started', event.subagentRunId, event.name]); },
  onSubagentFinishedEvent({ event }) { out.subagents.push(['finished', event.subagentRunId, event.outcome?.type ?? null]); },
  onSubagentErrorEvent({ event }) { out.subagents.push(['error', event.subagentRunId, event.message]); },
};

let code = 0;
try {
  const params = { runId: input.runId, forwardedProps: input.forwardedProps };
  if (opt('--resume')) params.resume = JSON.parse(opt('--resume'));
  await agent.runAgent(params, subscriber);
} catch (e) {
  // A RUN_ERROR makes runAgent reject too; only other rejections are client failures.
  if (!out.runError) { out.failure = String(e?.message ?? e); code = 1; }
}
out.messages = agent.messages;      // assembled: user + assistant (toolCalls) + tool + reasoning messages
out.state = agent.state;            // STATE_SNAPSHOT + STATE_DELTA applied
out.pendingInterrupts = agent.pendingInterrupts;
console.log(JSON.stringify(out, null, 1));
process.exit(code);
