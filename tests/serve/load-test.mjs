// load-test.mjs: a bounded load test of `qtune serve` from a second process:
//   node load-test.mjs BASE_URL API_KEY MODEL_ID REQUESTS CONCURRENCY MAX_TOKENS
// REQUESTS requests (chat and completion, one in four streamed), CONCURRENCY
// at a time, through the official OpenAI client. Prints one JSON line:
// failures, requests/s, latency percentiles (ms), generated tokens/s.
import OpenAI from 'openai';

const [base, key, modelId, nReq, conc, maxTok] = process.argv.slice(2);
const N = Number(nReq), C = Number(conc), MT = Number(maxTok);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 120000 });
const lat = [];
let failures = 0, tokens = 0, next = 0;
const errors = [];

async function one(i) {
  const t0 = performance.now();
  try {
    if (i % 4 === 3) {
      const st = await client.chat.completions.create({
        model: modelId, messages: [{ role: 'user', content: `Story ${i % 17}` }], max_tokens: MT, temperature: 0.8,
        seed: i, stream: true, stream_options: { include_usage: true } });
      let u = null;
      for await (const ch of st) if (ch.usage) u = ch.usage;
      if (!u) throw new Error('stream without usage');
      tokens += u.completion_tokens;
    } else if (i % 2 === 0) {
      const r = await client.chat.completions.create({
        model: modelId, messages: [{ role: 'user', content: `Tell me story number ${i % 13}` }], max_tokens: MT, seed: i });
      tokens += r.usage.completion_tokens;
    } else {
      const r = await client.completions.create({ model: modelId, prompt: `Once upon a time ${i % 11}`, max_tokens: MT, seed: i });
      tokens += r.usage.completion_tokens;
    }
    lat.push(performance.now() - t0);
  } catch (e) {
    failures++;
    if (errors.length < 5) errors.push(String(e.message || e));
  }
}

async function worker() {
  for (;;) {
    const i = next++;
    if (i >= N) return;
    await one(i);
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: C }, worker));
const secs = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const pct = p => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p / 100 * lat.length))] : NaN;
console.log(JSON.stringify({
  requests: N, concurrency: C, max_tokens: MT, failures, errors, seconds: +secs.toFixed(3),
  requests_per_s: +(N / secs).toFixed(1), p50_ms: +pct(50).toFixed(1), p90_ms: +pct(90).toFixed(1),
  p99_ms: +pct(99).toFixed(1), max_ms: +(lat[lat.length - 1] ?? NaN).toFixed(1),
  generated_tokens: tokens, tokens_per_s: +(tokens / secs).toFixed(1),
}));
process.exit(failures ? 1 : 0);
