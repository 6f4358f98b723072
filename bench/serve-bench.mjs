// serve-bench.mjs: concurrent streaming clients against an OpenAI-style
// /v1/completions server (qtune serve or llama-server), plain fetch:
//   node serve-bench.mjs BASE_URL CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [API_KEY]
// Each client sends its requests one after another, streamed, greedy, with
// the end-of-text token banned (logit_bias) so every request generates
// exactly MAX_TOKENS tokens; prompts differ per request (no prompt-cache
// hits). Prints one JSON line: generated tokens, wall seconds, aggregate
// tokens/s, request latency p50/p99 and time-to-first-token p50/p99 (ms).
const [base, cStr, rStr, mtStr, key] = process.argv.slice(2);
const C = Number(cStr), R = Number(rStr), MT = Number(mtStr);
const headers = { 'Content-Type': 'application/json' };
if (key) headers.Authorization = `Bearer ${key}`;
const words = ['robot', 'river', 'garden', 'castle', 'dragon', 'forest', 'ocean', 'market', 'winter', 'library',
  'mountain', 'village', 'rocket', 'island', 'desert', 'harbor'];

async function one(client, k) {
  const prompt = `Story ${client}-${k}: once upon a time a ${words[client % 16]} met a ${words[(client + k + 5) % 16]} and`;
  const body = { prompt, max_tokens: MT, temperature: 0, stream: true, stream_options: { include_usage: true },
    logit_bias: { 2: -100 } };
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const rd = r.body.getReader(), dec = new TextDecoder();
  let buf = '', ttft = null, chunks = 0, usage = null;
  for (;;) {
    const { done, value } = await rd.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const o = JSON.parse(ev.slice(6));
      if (o.usage) usage = o.usage;
      if (o.choices && o.choices.length && (o.choices[0].text || '').length) {
        chunks++;
        if (ttft === null) ttft = performance.now() - t0;
      }
    }
  }
  return { ms: performance.now() - t0, ttft: ttft ?? performance.now() - t0,
           tokens: usage && usage.completion_tokens ? usage.completion_tokens : chunks };
}

const lat = [], ttft = [];
let tokens = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async (_, c) => {
  for (let k = 0; k < R; k++) {
    const x = await one(c, k);
    lat.push(x.ms);
    ttft.push(x.ttft);
    tokens += x.tokens;
  }
}));
const s = (performance.now() - t0) / 1000;
const pct = (a, p) => { const b = [...a].sort((x, y) => x - y); return b[Math.min(b.length - 1, Math.ceil(p * b.length) - 1)]; };
console.log(JSON.stringify({ clients: C, requests: C * R, max_tokens: MT, tokens, seconds: +s.toFixed(2),
  tok_s: +(tokens / s).toFixed(2), p50_ms: Math.round(pct(lat, 0.5)), p99_ms: Math.round(pct(lat, 0.99)),
  ttft_p50_ms: Math.round(pct(ttft, 0.5)), ttft_p99_ms: Math.round(pct(ttft, 0.99)) }));
