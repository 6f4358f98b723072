// abuse.mjs: `qtune serve` under abuse, as tests/cli-serve-abuse.sh starts it
// (a sanitizer build, --timeout 2, --idle-timeout 3):
//   node abuse.mjs BASE_URL API_KEY
// 200 idle connections, slow clients dribbling headers, clients that leave
// mid-request (streamed and not, running and queued), huge and non-finite
// numbers, deep JSON. After each wave a normal request must be answered
// within 1 s, and /health must show nothing left generating for a gone
// client. Prints one line per failed check and "N passed, N failed".
import net from 'node:net';

const [base, key] = process.argv.slice(2);
const url = new URL(base);
let pass = 0, fail = 0;
function check(cond, what) {
  if (cond) pass++;
  else { fail++; console.log(`FAIL: ${what}`); }
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
const RESPONSE_LIMIT_MS = 1000;   // the bound for a normal request while under abuse
const auth = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };

async function normal(what) {
  const t0 = performance.now();
  let ok = false;
  try {
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: auth, signal: AbortSignal.timeout(10000),
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }) });
    const b = await r.json();
    ok = r.status === 200 && b.choices?.[0]?.text?.length > 0;
  } catch (e) { /* ok stays false */ }
  const ms = performance.now() - t0;
  check(ok && ms < RESPONSE_LIMIT_MS, `${what}: a normal request answered in ${ms.toFixed(0)} ms (ok ${ok})`);
  return ms;
}

async function health() {
  const r = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5000) });
  return r.json();
}

// Nothing generating and nothing queued, within a short grace for the next token's check.
async function idle(what) {
  let h = null;
  for (let i = 0; i < 20; i++) {
    h = await health();
    if (!h.generating && h.jobs_waiting === 0) break;
    await sleep(50);
  }
  check(h && !h.generating && h.jobs_waiting === 0, `${what}: nothing left generating or queued (${JSON.stringify(h)})`);
}

function connect() {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(url.port), url.hostname, () => resolve(s));
    s.on('error', reject);
  });
}

function closed(sock) { return new Promise(r => { if (sock.destroyed || sock.closed) r(); else sock.on('close', r); }); }

const times = [];
times.push(await normal('baseline'));

// ---- 200 idle connections: no lockout, and the server closes them after its request timeout ----
{
  const idleConns = [];
  for (let i = 0; i < 200; i++) {
    const s = await connect();
    s.on('error', () => {});
    idleConns.push(s);
  }
  times.push(await normal('200 idle connections open'));
  const t0 = performance.now();
  await Promise.race([Promise.all(idleConns.map(closed)), sleep(8000)]);
  const left = idleConns.filter(s => !s.closed && !s.destroyed).length;
  check(left === 0, `the server closed the 200 idle connections (${left} left after ${(performance.now() - t0).toFixed(0)} ms)`);
  idleConns.forEach(s => s.destroy());
}

// ---- slow clients: headers one byte at a time ------------------------------------------------------
{
  const req = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n`;
  const slow = [];
  for (let i = 0; i < 20; i++) {
    const s = await connect();
    s.on('error', () => {});
    slow.push(s);
    let k = 0;
    const timer = setInterval(() => { if (s.destroyed || k >= req.length) clearInterval(timer); else s.write(req[k++]); }, 200);
  }
  await sleep(500);
  times.push(await normal('20 slow clients dribbling headers'));
  await Promise.race([Promise.all(slow.map(closed)), sleep(8000)]);
  check(slow.every(s => s.closed || s.destroyed), 'slow clients are closed at the request deadline');
  slow.forEach(s => s.destroy());
}

// ---- clients that leave mid-request --------------------------------------------------------------
function longRequest(stream) {
  // 4000 tokens with end-of-text banned (token 2): ~4 s of generation if nobody stops it
  const body = JSON.stringify({ prompt: 'Once upon a time', max_tokens: 4000, temperature: 0.8, stream, logit_bias: { 2: -100 } });
  return `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
         `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
for (const stream of [false, true]) {
  const socks = [];
  for (let i = 0; i < 10; i++) {   // one runs, nine wait in the queue
    const s = await connect();
    s.on('error', () => {});
    s.on('data', () => {});
    s.write(longRequest(stream));
    socks.push(s);
  }
  await sleep(300);
  const h = await health();
  check(h.generating, `${stream ? 'streamed' : 'non-streamed'} long requests are running (${JSON.stringify(h)})`);
  socks.forEach(s => s.destroy());
  await idle(`10 ${stream ? 'streamed' : 'non-streamed'} clients gone`);
  times.push(await normal(`after 10 ${stream ? 'streamed' : 'non-streamed'} clients left`));
}
// a client that half-closes right after sending (some proxies do) is gone too
{
  const s = await connect();
  s.on('error', () => {});
  s.write(longRequest(false));
  await sleep(200);
  s.end();
  await sleep(100);
  s.destroy();
  await idle('a client that shut down its side');
}

// ---- huge, non-finite and malformed numbers: a 400 each, nothing undefined -------------------------
const bad = [
  ['/v1/completions', '{"prompt": "x", "max_tokens": 3000000000}'],
  ['/v1/completions', '{"prompt": "x", "seed": 1e30}'],
  ['/v1/completions', '{"prompt": "x", "seed": -1e300}'],
  ['/v1/completions', '{"prompt": "x", "temperature": 1e309}'],
  ['/v1/completions', '{"prompt": "x", "max_tokens": -1e309}'],
  ['/v1/completions', '{"prompt": "x", "max_tokens": 1.5}'],
  ['/v1/completions', '{"prompt": "x", "n": 1e300}'],
  ['/v1/completions', '{"prompt": "x", "logprobs": 1e20}'],
  ['/v1/completions', '{"prompt": "x", "top_k": 1e19}'],
  ['/v1/completions', '{"prompt": "x", "repeat_last_n": 1e100}'],
  ['/v1/completions', '{"prompt": "x", "frequency_penalty": -1e309}'],
  ['/v1/completions', '{"prompt": "x", "logit_bias": {"1": 1e300}}'],
  ['/v1/completions', '{"prompt": "x", "logit_bias": {"99999999999999999999999": 1}}'],
  ['/v1/completions', '{"prompt": "x", "best_of": 1e300}'],
  ['/v1/completions', '{"prompt": [1e20]}'],
  ['/v1/completions', '{"prompt": [-1]}'],
  ['/v1/completions', '{"prompt": [1.5]}'],
  ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 1e20, "logprobs": true}'],
  ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1e300}'],
  ['/v1/chat/completions', '{"messages": [{"role": "user", "content": 1e300}]}'],
  ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "maxItems": 1e300}}}}'],
  ['/v1/embeddings', '{"input": [[1e300]]}'],
  ['/v1/embeddings', '{"input": "x", "dimensions": 1e300}'],
  ['/v1/completions', '['.repeat(20000) + ']'.repeat(20000)],
  ['/v1/completions', '{"prompt": "x", "max_tokens": 1' + '0'.repeat(400) + '}'],
];
for (const [path, body] of bad) {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: auth, body });
  const j = await r.json().catch(() => null);
  check(r.status === 400 && j?.error?.message, `${body.slice(0, 90)}: ${r.status} ${JSON.stringify(j)?.slice(0, 160)}`);
}
times.push(await normal('after the malformed numbers'));
check((await health()).status === 'ok', 'the server is alive at the end');
console.log(`normal requests: ${times.map(t => t.toFixed(0)).join(', ')} ms`);
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
