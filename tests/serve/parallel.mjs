// parallel.mjs: continuous batching checks for tests/cli-serve-parallel.sh,
// with plain fetch (no npm packages):
//   node parallel.mjs SERIAL_URL PARALLEL_URL API_KEY N_PARALLEL
// SERIAL_URL is a `qtune serve --parallel 1`, PARALLEL_URL a `--parallel
// N_PARALLEL` server on the same model. The same requests (greedy and seeded,
// chat and completions, streamed and not, n = 2, logprobs, json_object,
// stop strings, penalties, logit_bias) sent one at a time to the first and
// all at once to the second must give the same texts; the prompt cache must
// be found again in the slot that holds it; a client that leaves mid-stream
// must free its slot. Prints one line per check and "N passed, N failed".
const [serialUrl, parUrl, key, nParStr] = process.argv.slice(2);
const nPar = Number(nParStr);
let pass = 0, fail = 0;
const check = (cond, msg) => { if (cond) pass++; else { fail++; console.log(`FAIL: ${msg}`); } };
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };

async function post(base, path, body, signal) {
  const r = await fetch(`${base}/v1/${path}`, { method: 'POST', headers, body: JSON.stringify(body), signal });
  if (!body.stream) return { status: r.status, json: await r.json() };
  const text = await r.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  return { status: r.status, events };
}

// The texts (per choice index) and usage of a response, streamed or not.
function texts(kind, body, res) {
  const out = [];
  let usage = null, lps = [];
  if (!body.stream) {
    for (const c of res.json.choices || []) {
      out[c.index] = kind === 'chat' ? c.message.content : c.text;
      if (c.logprobs) lps[c.index] = kind === 'chat' ? c.logprobs.content.map((e) => e.logprob) : c.logprobs.token_logprobs;
    }
    return { out, usage: res.json.usage, lps, finish: (res.json.choices || []).map((c) => c.finish_reason) };
  }
  const finish = [];
  check(res.events.length > 0 && res.events[res.events.length - 1] === '[DONE]', `stream ends with [DONE]`);
  for (const e of res.events) {
    if (e === '[DONE]') continue;
    const o = JSON.parse(e);
    if (o.usage) usage = o.usage;
    for (const c of o.choices) {
      const t = kind === 'chat' ? c.delta.content : c.text;
      out[c.index] = (out[c.index] || '') + (t || '');
      if (c.logprobs) {
        const l = kind === 'chat' ? c.logprobs.content.map((x) => x.logprob) : c.logprobs.token_logprobs;
        lps[c.index] = (lps[c.index] || []).concat(l);
      }
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  return { out, usage, lps, finish };
}

const story = (i) => ['Once upon a time', 'Lily wanted to play', 'The big dog', 'Tom and Sue went to the park',
  'One day, a little bird', 'There was a girl named Mia', 'The sun was hot', 'A cat sat on'][i % 8];
const reqs = [];
for (let i = 0; i < 12; i++) {
  const chat = i % 2 === 0;
  const b = chat ? { messages: [{ role: 'user', content: story(i) }] } : { prompt: story(i) };
  b.max_tokens = 16 + (i % 5) * 8;
  b.temperature = 0;
  if (i % 3 === 1) b.stream = true;
  if (i === 1 || i === 6) { b.temperature = 0.8; b.seed = 100 + i; b.n = 2; }   // sampled choices: same seeds, same text
  if (i === 2) { b.logprobs = true; b.top_logprobs = 2; }
  if (i === 3) b.logprobs = 3;
  if (i === 4) { b.stop = ['.']; b.frequency_penalty = 0.5; b.presence_penalty = 0.3; }
  if (i === 5) b.logit_bias = { 13: -100, 2: 5 };
  if (i === 8) { b.response_format = { type: 'json_object' }; b.max_tokens = 40; }
  if (i === 10) { b.stream = true; b.stream_options = { include_usage: true }; b.repeat_penalty = 1.3; b.top_k = 5; }
  reqs.push({ kind: chat ? 'chat' : 'completion', body: b });
}
const path = (k) => (k === 'chat' ? 'chat/completions' : 'completions');

// 1. the same answers one at a time on --parallel 1 and all at once on --parallel N
const serial = [];
for (const r of reqs) serial.push(texts(r.kind, r.body, await post(serialUrl, path(r.kind), r.body)));
const t0 = performance.now();
const par = await Promise.all(reqs.map(async (r) => texts(r.kind, r.body, await post(parUrl, path(r.kind), r.body))));
const ms = performance.now() - t0;
let same = 0;
for (let i = 0; i < reqs.length; i++) {
  const a = serial[i], b = par[i];
  const ok = JSON.stringify(a.out) === JSON.stringify(b.out) && JSON.stringify(a.finish) === JSON.stringify(b.finish);
  check(ok, `request ${i} (${JSON.stringify(reqs[i].body)}): --parallel 1 ${JSON.stringify(a.out)} ${a.finish} vs ` +
        `--parallel ${nPar} ${JSON.stringify(b.out)} ${b.finish}`);
  same += ok;
  check(a.out.length === (reqs[i].body.n || 1) && a.out.every((t) => typeof t === 'string'), `request ${i}: every choice answered`);
  if (a.lps.length) {
    let worst = 0;
    for (let c = 0; c < a.lps.length; c++)
      for (let k = 0; k < a.lps[c].length; k++) worst = Math.max(worst, Math.abs(a.lps[c][k] - b.lps[c][k]));
    check(a.lps.length === b.lps.length && worst < 1e-3, `request ${i}: logprobs agree (worst ${worst})`);
  }
  if (reqs[i].body.stream_options) check(b.usage && b.usage.completion_tokens > 0, `request ${i}: streamed usage`);
}
console.log(`${same}/${reqs.length} requests identical on --parallel 1 (one at a time) and --parallel ${nPar} ` +
            `(all at once, ${ms.toFixed(0)} ms)`);
const j8 = par[8].out[0];
let parsed = null;
try { parsed = JSON.parse(j8); } catch { /* checked below */ }
check(j8.trim().startsWith('{') && (par[8].finish[0] !== 'stop' || (parsed !== null && typeof parsed === 'object')),
      `json_object under concurrency: ${j8} (${par[8].finish[0]})`);

// 2. the prompt cache: a long conversation, then the same one with one more
// turn; the free slots are all older, so only the longest-prefix rule puts
// the second request where its prefix is
const sys = 'You are a storyteller. ' + 'Tell short stories about a robot named Bolt who lives in a small town. '.repeat(6);
const conv = [{ role: 'system', content: sys }, { role: 'user', content: 'Tell me a story.' }];
const r1 = await post(parUrl, 'chat/completions', { messages: conv, max_tokens: 8, temperature: 0 });
const a1 = r1.json.choices[0].message.content;
const conv2 = conv.concat([{ role: 'assistant', content: a1 }, { role: 'user', content: 'Another one.' }]);
const r2 = await post(parUrl, 'chat/completions', { messages: conv2, max_tokens: 8, temperature: 0 });
const cached = r2.json.usage.prompt_tokens_details?.cached_tokens ?? -1;
check(r1.json.usage.prompt_tokens > 60 && cached >= r1.json.usage.prompt_tokens - 1,
      `prompt cache: second request found ${cached} of its ${r2.json.usage.prompt_tokens} prompt tokens cached ` +
      `(the first had ${r1.json.usage.prompt_tokens})`);
console.log(`prompt cache: ${cached} of ${r2.json.usage.prompt_tokens} prompt tokens reused`);

// 3. a client that leaves mid-stream frees its slot: N endless streams (no
// end of text, a large budget), all dropped after their first chunks, then
// one more request must finish at once
const endless = { prompt: 'Once upon a time', max_tokens: 4000, temperature: 0.8, seed: 1, logit_bias: { 2: -100 }, stream: true };
const ctrls = [], firsts = [];
for (let i = 0; i < nPar; i++) {
  const ac = new AbortController();
  ctrls.push(ac);
  firsts.push((async () => {
    const r = await fetch(`${parUrl}/v1/completions`, { method: 'POST', headers, body: JSON.stringify(endless), signal: ac.signal });
    const rd = r.body.getReader();
    let n = 0;
    while (n < 3) { const { done } = await rd.read(); if (done) break; n++; }
    return n;
  })());
}
const got = await Promise.all(firsts);
check(got.every((n) => n === 3), `every endless stream started (${got})`);
for (const ac of ctrls) ac.abort();
const t1 = performance.now();
const after = await post(parUrl, 'completions', { prompt: 'The big dog', max_tokens: 8, temperature: 0 });
const waited = performance.now() - t1;
check(after.status === 200 && after.json.choices[0].text.length > 0, `a request after the dropped streams: ${JSON.stringify(after.json)}`);
console.log(`after ${nPar} dropped streams a request finished in ${waited.toFixed(0)} ms`);
let health = null;
for (let i = 0; i < 50; i++) {
  health = await (await fetch(`${parUrl}/health`)).json();
  if (!health.generating) break;
  await new Promise((r) => setTimeout(r, 100));
}
check(health && health.generating === false && health.jobs_waiting === 0, `idle after the dropped streams: ${JSON.stringify(health)}`);

console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
