// openai-client.mjs: drives `qtune serve` with the official OpenAI JavaScript
// client (npm package "openai"), as tests/cli-serve.sh starts it:
//   node openai-client.mjs BASE_URL API_KEY MODEL_ID
// Non-streaming and streaming chat (the same greedy text both ways), usage
// counts, a completion with a known greedy continuation, stop strings, seeds,
// a malformed body (400), a missing and a wrong key (401), max_tokens over the
// limit (400), a body over the size limit (413), a client leaving mid-stream.
// Prints one line per failed check and "N passed, N failed"; exit 1 on failure.
import OpenAI from 'openai';

const [base, key, modelId] = process.argv.slice(2);
let pass = 0, fail = 0;
function check(cond, what) {
  if (cond) pass++;
  else { fail++; console.log(`FAIL: ${what}`); }
}
async function expectStatus(promise, status, what) {
  try {
    await promise;
    check(false, `${what}: no error`);
  } catch (e) {
    check(e.status === status, `${what}: status ${e.status} (want ${status}): ${e.message}`);
    return e;
  }
}

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];

// models
const models = await client.models.list();
check(models.data.some(m => m.id === modelId), `models.list has ${modelId}: ${JSON.stringify(models.data)}`);

// chat, not streamed
const r = await client.chat.completions.create({ model: modelId, messages, max_tokens: 16, temperature: 0 });
const text = r.choices[0].message.content;
check(r.object === 'chat.completion' && r.choices[0].message.role === 'assistant', `chat object: ${JSON.stringify(r)}`);
check(typeof text === 'string' && text.length > 0, `chat text: ${JSON.stringify(text)}`);
check(['stop', 'length'].includes(r.choices[0].finish_reason), `finish_reason ${r.choices[0].finish_reason}`);
check(r.usage.prompt_tokens > 10 && r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 16 &&
      r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, `usage ${JSON.stringify(r.usage)}`);

// chat, streamed: the same greedy text, then a usage chunk
const stream = await client.chat.completions.create({
  model: modelId, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = '', chunks = 0, finish = null, usage = null;
for await (const ch of stream) {
  chunks++;
  if (ch.choices.length) {
    streamed += ch.choices[0].delta.content ?? '';
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  if (ch.usage) usage = ch.usage;
}
check(streamed === text, `streamed text ${JSON.stringify(streamed)} equals the non-streamed ${JSON.stringify(text)}`);
check(chunks >= 3, `streamed in ${chunks} chunks`);
check(finish === r.choices[0].finish_reason, `stream finish_reason ${finish}`);
check(usage && usage.completion_tokens === r.usage.completion_tokens && usage.prompt_tokens === r.usage.prompt_tokens,
      `stream usage ${JSON.stringify(usage)} vs ${JSON.stringify(r.usage)}`);

// completion: stories260K's greedy continuation (tests/cli-generate.sh has the same)
const c = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
check(c.object === 'text_completion' && c.choices[0].text.startsWith(', there was a little girl named Lily'),
      `completion text ${JSON.stringify(c.choices[0].text)}`);
check(c.usage.completion_tokens === 12 && c.choices[0].finish_reason === 'length', `completion usage ${JSON.stringify(c.usage)}`);
const cs = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: ['.'] });
check(cs.choices[0].text === ', there was a little girl named Lily' && cs.choices[0].finish_reason === 'stop',
      `stop string: ${JSON.stringify(cs.choices[0])}`);
// streamed completion
const cst = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 12, temperature: 0, stream: true });
let ctext = '';
for await (const ch of cst) ctext += ch.choices[0]?.text ?? '';
check(ctext === c.choices[0].text, `streamed completion ${JSON.stringify(ctext)}`);

// seeds: same seed, same sampled text
const s1 = await client.completions.create({ model: modelId, prompt: 'Lily', max_tokens: 24, temperature: 0.9, seed: 7 });
const s2 = await client.completions.create({ model: modelId, prompt: 'Lily', max_tokens: 24, temperature: 0.9, seed: 7 });
check(s1.choices[0].text === s2.choices[0].text, `seed 7 twice: ${JSON.stringify(s1.choices[0].text)} vs ${JSON.stringify(s2.choices[0].text)}`);

// errors: the client's own error classes carry the status
await expectStatus(client.chat.completions.create({ model: modelId, messages, max_tokens: 100000 }), 400, 'max_tokens over the limit');
await expectStatus(client.chat.completions.create({ model: modelId, messages: [] }), 400, 'empty messages');
await expectStatus(client.chat.completions.create({ model: modelId, messages, temperature: 7 }), 400, 'temperature 7');
const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
const e401 = await expectStatus(wrong.chat.completions.create({ model: modelId, messages }), 401, 'wrong API key');
check(e401 && e401.error && e401.error.code === 'invalid_api_key', `401 body ${JSON.stringify(e401 && e401.error)}`);
await expectStatus(wrong.models.list(), 401, 'wrong API key on /v1/models');

// raw HTTP: malformed JSON, no key, a body over the limit (as a client would send them)
const auth = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
let res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"messages": [' });
let body = await res.json();
check(res.status === 400 && typeof body.error?.message === 'string' && body.error.type === 'invalid_request_error' &&
      'code' in body.error, `malformed JSON: ${res.status} ${JSON.stringify(body)}`);
res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: auth, body: '[1, 2]' });
check(res.status === 400, `a JSON array body: ${res.status}`);
res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages }) });
body = await res.json();
check(res.status === 401 && body.error?.code === 'invalid_api_key', `no key: ${res.status} ${JSON.stringify(body)}`);
res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ prompt: 'x'.repeat(200000) }) });
check(res.status === 413, `oversized body: ${res.status}`);
res = await fetch(`${base}/v1/nowhere`, { headers: auth });
check(res.status === 404, `unknown path: ${res.status}`);

// a client that leaves mid-stream does not hurt the server
const ac = new AbortController();
try {
  const st = await client.chat.completions.create({ model: modelId, messages, max_tokens: 200, stream: true }, { signal: ac.signal });
  for await (const ch of st) { ac.abort(); }
} catch (e) { /* aborted */ }
res = await fetch(`${base}/health`);
check(res.status === 200, `health after an aborted stream: ${res.status}`);
const after = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
check(after.choices[0].text === c.choices[0].text, `same greedy completion after an aborted stream`);

console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
