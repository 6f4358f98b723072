// features.mjs: the OpenAI features of `qtune serve` through the official
// OpenAI JavaScript client, as tests/cli-serve.sh starts it (stories260K,
// Qwen2.5's chat template from the corpus, CORS for http://example.test):
//   node features.mjs BASE_URL API_KEY MODEL_ID REF_LOGITS_BIN EMBED_REF_JSON
// Oracles: PyTorch's logits (tests/data/stories260K-ref.bin: log-softmax of
// them must equal the server's logprobs) and embeddings
// (tests/data/stories260K-embed-ref.json); JSON.parse and the ajv validator
// (npm) for response_format; the OpenAI formula for penalties checked step by
// step against the raw logprobs; logit_bias against the reference ranking.
// Prints one line per failed check and "N passed, N failed"; exit 1 on failure.
import fs from 'node:fs';
import OpenAI from 'openai';
import Ajv from 'ajv';

const [base, key, modelId, refPath, embedPath] = process.argv.slice(2);
let pass = 0, fail = 0;
function check(cond, what) {
  if (cond) pass++;
  else { fail++; console.log(`FAIL: ${what}`); }
}
async function expectStatus(promise, status, what, param) {
  try {
    await promise;
    check(false, `${what}: no error`);
  } catch (e) {
    check(e.status === status && (!param || e.param === param || e.error?.param === param),
          `${what}: status ${e.status} param ${e.param ?? e.error?.param} (want ${status} ${param ?? ''}): ${e.message}`);
  }
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
const LOGPROB_TOL = 2e-3;     // our fp32 forward vs PyTorch fp32: logits agree to ~1e-4; log-softmax adds a logsumexp
const EMBED_TOL = 1e-4;       // per component, vectors of norm 1

// ---- PyTorch reference: tokens and logits ------------------------------------------
const ref = fs.readFileSync(refPath);
check(ref.toString('latin1', 0, 4) === 'QTRF' && ref.readUInt32LE(4) === 1, 'reference logits file');
const nTok = ref.readUInt32LE(8), nVocab = ref.readUInt32LE(12);
const refTokens = [...Array(nTok).keys()].map(i => ref.readInt32LE(20 + 4 * i));
function refLogSoftmax(pos) {
  const off = 20 + 4 * nTok + 4 * nVocab * pos;
  const l = [...Array(nVocab).keys()].map(i => ref.readFloatLE(off + 4 * i));
  const mx = Math.max(...l);
  const lse = mx + Math.log(l.reduce((s, x) => s + Math.exp(x - mx), 0));
  return l.map(x => x - lse);
}
const sortedDesc = a => [...a].sort((x, y) => y - x);

// ---- logprobs equal the model's log-softmax ------------------------------------------
for (const k of [2, 6, 12]) {
  const lsm = refLogSoftmax(k - 1);
  const r = await client.completions.create({ model: modelId, prompt: refTokens.slice(0, k), max_tokens: 1, temperature: 0, logprobs: 5 });
  const lp = r.choices[0].logprobs;
  const want = sortedDesc(lsm).slice(0, 5);
  const got = sortedDesc(Object.values(lp.top_logprobs[0]));
  const err = Math.max(...want.map((w, i) => Math.abs(w - got[i])));
  check(got.length === 5 && err < LOGPROB_TOL, `completion logprobs after ${k} tokens: top-5 ${got} vs PyTorch ${want} (max err ${err})`);
  check(Math.abs(lp.token_logprobs[0] - want[0]) < LOGPROB_TOL, `greedy token's logprob ${lp.token_logprobs[0]} vs ${want[0]}`);
  check(lp.tokens.length === 1 && lp.text_offset[0] === 0, `completion logprobs shape ${JSON.stringify(lp)}`);
}
{
  const r = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Tell me about a dog.' }],
    max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 });
  const c = r.choices[0].logprobs.content;
  check(c.length === r.usage.completion_tokens, `chat logprobs: one entry per token (${c.length} vs ${r.usage.completion_tokens})`);
  check(c.every(e => e.top_logprobs.length === 3 && e.logprob <= 0 && Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-6 &&
                     e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob && Array.isArray(e.bytes)),
        `chat logprobs: greedy picks the top entry, sorted, bytes: ${JSON.stringify(c[0])}`);
  check(c.map(e => e.token).join('') === r.choices[0].message.content, `chat logprob tokens spell the content`);
  const st = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Tell me about a dog.' }],
    max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
  const sc = [];
  for await (const ch of st) for (const e of ch.choices[0]?.logprobs?.content ?? []) sc.push(e);
  // (the second request reuses the cached prompt and evaluates its last token alone: another kernel path, ~1e-6 apart)
  check(sc.length === c.length && sc.every((e, i) => e.token === c[i].token && Math.abs(e.logprob - c[i].logprob) < 1e-4),
        `streamed logprobs equal the non-streamed: ${JSON.stringify(sc.map(e => [e.token, e.logprob]))}`);
}

// ---- logit_bias changes the output as specified ----------------------------------------
{
  const k = 6, lsm = refLogSoftmax(k - 1);
  const order = [...lsm.keys()].sort((a, b) => lsm[b] - lsm[a]);
  const ban = await client.completions.create({ model: modelId, prompt: refTokens.slice(0, k), max_tokens: 1, temperature: 0,
    logprobs: 1, logit_bias: { [order[0]]: -100 } });
  check(Math.abs(ban.choices[0].logprobs.token_logprobs[0] - lsm[order[1]]) < LOGPROB_TOL,
        `logit_bias -100 on the best token: the second best comes (${ban.choices[0].logprobs.token_logprobs[0]} vs ${lsm[order[1]]})`);
  const z = order[200];
  const force = await client.completions.create({ model: modelId, prompt: refTokens.slice(0, k), max_tokens: 1, temperature: 0,
    logprobs: 1, logit_bias: { [z]: 100 } });
  check(Math.abs(force.choices[0].logprobs.token_logprobs[0] - lsm[z]) < LOGPROB_TOL,
        `logit_bias +100 forces token ${z} (${force.choices[0].logprobs.token_logprobs[0]} vs ${lsm[z]})`);
}

// ---- frequency / presence penalties: each step picks argmax(logprob - c*f - (c>0)*p) -------------
for (const [f, p] of [[1.5, 0], [0, 1.5], [0.8, 0.8]]) {
  const base = await client.completions.create({ model: modelId, prompt: 'Lily and Ben', max_tokens: 40, temperature: 0, logprobs: 20 });
  const r = await client.completions.create({ model: modelId, prompt: 'Lily and Ben', max_tokens: 40, temperature: 0, logprobs: 20,
    frequency_penalty: f, presence_penalty: p });
  const lp = r.choices[0].logprobs, counts = new Map();
  let ok = true, where = '';
  for (let i = 0; i < lp.tokens.length; i++) {
    const cand = Object.entries(lp.top_logprobs[i]);
    const score = ([t, l]) => l - (counts.get(t) ?? 0) * f - ((counts.get(t) ?? 0) > 0 ? p : 0);
    const chosen = score([lp.tokens[i], lp.token_logprobs[i]]);
    for (const c of cand) if (score(c) > chosen + 1e-4) { ok = false; where = `step ${i}: ${c[0]} scores ${score(c)} > chosen ${lp.tokens[i]} ${chosen}`; }
    counts.set(lp.tokens[i], (counts.get(lp.tokens[i]) ?? 0) + 1);
  }
  check(ok, `penalties f=${f} p=${p}: every step is the penalised argmax (${where})`);
  const distinct = a => new Set(a).size;
  check(r.choices[0].text !== base.choices[0].text && distinct(lp.tokens) >= distinct(base.choices[0].logprobs.tokens),
        `penalties f=${f} p=${p} change the text and do not repeat more`);
}

// ---- response_format ------------------------------------------------------------------------
{
  // stories260K writes stories inside the strings and rarely closes them; a bias towards quotes (tokens 436 '"',
  // 313 ' "') and '}' (128) lets it end the object, as a real chat model does on its own. The grammar does the rest.
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Give me JSON.' }],
      max_tokens: 400, temperature: 0.8, seed, logit_bias: { 436: 10, 313: 10, 128: 12 }, response_format: { type: 'json_object' } });
    let parsed = null;
    try { parsed = JSON.parse(r.choices[0].message.content); } catch (e) { /* checked below */ }
    check(r.choices[0].finish_reason === 'stop' && parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed),
          `json_object output parses as an object: ${r.choices[0].finish_reason} ${JSON.stringify(r.choices[0].message.content)}`);
  }
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 }, age: { type: 'integer' }, kind: { enum: ['cat', 'dog', 'robot'] },
      tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 }, happy: { type: 'boolean' },
    },
    required: ['name', 'age', 'kind'], additionalProperties: false,
  };
  const validate = new Ajv().compile(schema);
  for (const seed of [1, 2, 3]) {
    const s = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Describe a pet.' }],
      max_tokens: 300, temperature: 0.9, seed, response_format: { type: 'json_schema', json_schema: { name: 'pet', schema, strict: true } } });
    let obj = null;
    try { obj = JSON.parse(s.choices[0].message.content); } catch (e) { /* checked below */ }
    check(obj !== null && validate(obj), `json_schema output validates (seed ${seed}): ${s.choices[0].message.content} ${JSON.stringify(validate.errors)}`);
  }
  await expectStatus(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } }), 400,
    'unsupported schema keyword', 'response_format.json_schema.schema');
}

// ---- tools: a round trip ------------------------------------------------------------------------
{
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 } }, required: ['city'], additionalProperties: false } } }];
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await client.chat.completions.create({ model: modelId, messages, tools, max_tokens: 80, temperature: 0,
    tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  const msg = r.choices[0].message, call = msg.tool_calls?.[0];
  let args = null;
  try { args = JSON.parse(call.function.arguments); } catch (e) { /* checked below */ }
  check(r.choices[0].finish_reason === 'tool_calls' && call?.type === 'function' && call.function.name === 'get_weather' &&
        typeof call.id === 'string' && args && typeof args.city === 'string', `forced tool call: ${JSON.stringify(r.choices[0])}`);
  const r2 = await client.chat.completions.create({ model: modelId, max_tokens: 12, temperature: 0, tools, messages: [
    ...messages, msg, { role: 'tool', tool_call_id: call?.id ?? 'x', content: '{"temperature": 22}' }] });
  check(typeof r2.choices[0].message.content === 'string' && r2.usage.prompt_tokens > r.usage.prompt_tokens + 10,
        `tool result in the history: ${JSON.stringify(r2.choices[0])} prompt ${r2.usage.prompt_tokens} vs ${r.usage.prompt_tokens}`);
  const st = await client.chat.completions.create({ model: modelId, messages, tools, max_tokens: 80, temperature: 0, stream: true,
    tool_choice: 'required' });
  let name = '', argText = '', finish = null;
  for await (const ch of st) {
    for (const tc of ch.choices[0]?.delta?.tool_calls ?? []) { name += tc.function?.name ?? ''; argText += tc.function?.arguments ?? ''; }
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  check(name === 'get_weather' && finish === 'tool_calls' && JSON.parse(argText).city !== undefined, `streamed tool call ${name} ${argText} ${finish}`);
  await expectStatus(client.chat.completions.create({ model: modelId, messages, tools, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    400, 'tool_choice naming an unknown function', 'tool_choice');
}

// ---- n, echo, models, token prompts ---------------------------------------------------------------
{
  const r = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Hi' }], n: 3, max_tokens: 10,
    temperature: 1, seed: 5 });
  check(r.choices.length === 3 && r.choices.map(c => c.index).join() === '0,1,2', `n=3 gives 3 choices`);
  const again = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Hi' }], n: 3, max_tokens: 10,
    temperature: 1, seed: 5 });
  check(JSON.stringify(again.choices.map(c => c.message.content)) === JSON.stringify(r.choices.map(c => c.message.content)),
        'n=3 with a seed is reproducible');
  check(new Set(r.choices.map(c => c.message.content)).size > 1, `n=3 choices differ: ${JSON.stringify(r.choices.map(c => c.message.content))}`);
  const e = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, echo: true });
  check(e.choices[0].text.startsWith('Once upon a time,'), `echo: ${JSON.stringify(e.choices[0].text)}`);
  const m = await client.models.retrieve(modelId);
  check(m.id === modelId && m.object === 'model', `models.retrieve: ${JSON.stringify(m)}`);
  await expectStatus(client.models.retrieve('no-such-model'), 404, 'models.retrieve of another model');
  const t = await client.completions.create({ model: modelId, prompt: refTokens.slice(0, 4), max_tokens: 4, temperature: 0 });
  check(t.usage.prompt_tokens === 4, `token-array prompt: ${t.usage.prompt_tokens} prompt tokens`);
}

// ---- embeddings against PyTorch ------------------------------------------------------------------
{
  const er = JSON.parse(fs.readFileSync(embedPath, 'utf8'));
  check(er.magic === 'qtune-embed-refs' && er.version === 1, 'embedding reference file');
  const r = await client.embeddings.create({ model: modelId, input: er.cases.map(c => c.tokens) });
  check(r.data.length === er.cases.length, `one embedding per input`);
  for (let i = 0; i < er.cases.length; i++) {
    const got = r.data[i].embedding, want = er.cases[i].embedding;
    const err = Math.max(...want.map((w, k) => Math.abs(w - got[k])));
    check(got.length === want.length && err < EMBED_TOL, `embedding ${i}: max err ${err} vs PyTorch`);
  }
  const f = await client.embeddings.create({ model: modelId, input: 'Once upon a time', encoding_format: 'float' });
  const norm = Math.sqrt(f.data[0].embedding.reduce((s, x) => s + x * x, 0));
  check(Math.abs(norm - 1) < 1e-5 && f.usage.prompt_tokens > 1, `text embedding normalised (${norm})`);
}

// ---- unsupported parameters are a 400 naming them --------------------------------------------------
await expectStatus(client.completions.create({ model: modelId, prompt: 'x', suffix: 'y' }), 400, 'suffix', 'suffix');
await expectStatus(client.completions.create({ model: modelId, prompt: 'x', best_of: 3 }), 400, 'best_of', 'best_of');
await expectStatus(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }], audio: { voice: 'x' } }),
  400, 'an unknown parameter', 'audio');
await expectStatus(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }], n: 17 }), 400, 'n', 'n');
await expectStatus(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }], top_logprobs: 3 }),
  400, 'top_logprobs without logprobs', 'top_logprobs');
await expectStatus(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }),
  400, 'image parts', 'messages[0].content');

// ---- CORS ------------------------------------------------------------------------------------------
{
  const pre = await fetch(`${base}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'http://example.test',
    'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' } });
  check(pre.status === 204 && pre.headers.get('access-control-allow-origin') === 'http://example.test' &&
        /POST/.test(pre.headers.get('access-control-allow-methods')) && /authorization/i.test(pre.headers.get('access-control-allow-headers')),
        `CORS preflight: ${pre.status} ${[...pre.headers].join(' ')}`);
  const other = await fetch(`${base}/v1/models`, { method: 'OPTIONS', headers: { Origin: 'http://evil.test', 'Access-Control-Request-Method': 'GET' } });
  check(!other.headers.get('access-control-allow-origin'), 'an origin not configured gets no CORS headers');
  const get = await fetch(`${base}/v1/models`, { headers: { Origin: 'http://example.test', Authorization: `Bearer ${key}` } });
  check(get.status === 200 && get.headers.get('access-control-allow-origin') === 'http://example.test', 'CORS header on a GET');
}

console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
