#!/bin/sh
# Serving throughput with concurrent streaming clients on loopback:
# `qtune serve --parallel N` against llama.cpp's `llama-server -np N` on the
# same GGUF, N = the number of clients, the two servers alternating and the
# whole sweep repeated ROUNDS times (the host is noisy: medians are quoted).
# Each client sends REQS streamed completions of MAX_TOKENS tokens each
# (bench/serve-bench.mjs: greedy, end of text banned, distinct prompts).
#   bench/bench-serve.sh                      # results in bench-serve.jsonl, a Markdown table on stdout
# Environment:
#   MODEL         GGUF (default: MODELS_DIR/tinyllama-1.1b-q4_0.gguf, made with build/bench/make-model if missing)
#   MODELS_DIR    default bench-models
#   LLAMA_SERVER  llama-server binary (default: none; then qtune only)
#   CLIENTS       default "1 4 8 16"
#   REQS          requests per client (default 3)
#   MAX_TOKENS    per request (default 32)
#   ROUNDS        default 3
#   THREADS       default 2
#   CTX           KV positions per slot (default 256)
#   OUT           default bench-serve.jsonl
set -u
QTUNE=${QTUNE:-build/qtune}
MODELS_DIR=${MODELS_DIR:-bench-models}
MODEL=${MODEL:-$MODELS_DIR/tinyllama-1.1b-q4_0.gguf}
LLAMA_SERVER=${LLAMA_SERVER:-}
CLIENTS=${CLIENTS:-"1 4 8 16"}
REQS=${REQS:-3}
MAX_TOKENS=${MAX_TOKENS:-32}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CTX=${CTX:-256}
OUT=${OUT:-bench-serve.jsonl}
PORT=${PORT:-18480}
HERE=$(dirname "$0")

if [ ! -f "$MODEL" ]; then
  mkdir -p "$(dirname "$MODEL")"
  build/bench/make-model --preset tinyllama-1.1b --type q4_0 -o "$MODEL" || exit 1
fi
lscpu | sed -n 's/^Model name:[[:space:]]*/CPU: /p'
echo "model: $MODEL; $CLIENTS clients x $REQS requests x $MAX_TOKENS tokens; $ROUNDS rounds; $THREADS threads"
: > "$OUT"

pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; exit 1' INT TERM
wait_up() {   # until /health answers 200 (llama-server: 503 while loading)
  for i in $(seq 1 600); do
    code=$(node -e "fetch('http://127.0.0.1:$PORT/health').then(r => console.log(r.status)).catch(() => console.log(0))")
    [ "$code" = 200 ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
run_one() {   # server clients
  srv=$1; c=$2
  if [ "$srv" = qtune ]; then
    $QTUNE serve -m "$MODEL" --port $PORT --parallel "$c" -c "$CTX" -t "$THREADS" -v 0 2>/dev/null &
  else
    "$LLAMA_SERVER" -m "$MODEL" --port $PORT -np "$c" -c $((CTX * c)) -t "$THREADS" -tb "$THREADS" --no-webui \
      --log-disable >/dev/null 2>&1 &
  fi
  pid=$!
  if ! wait_up; then echo "$srv did not start"; stop; return; fi
  node "$HERE/serve-bench.mjs" "http://127.0.0.1:$PORT" 1 1 4 >/dev/null   # warm-up
  r=$(node "$HERE/serve-bench.mjs" "http://127.0.0.1:$PORT" "$c" "$REQS" "$MAX_TOKENS")
  stop
  echo "{\"server\":\"$srv\",\"round\":$round,${r#\{}" | tee -a "$OUT"
}

for round in $(seq 1 "$ROUNDS"); do
  for c in $CLIENTS; do
    # alternate which server goes first
    if [ $(( (round + c) % 2 )) -eq 0 ] || [ -z "$LLAMA_SERVER" ]; then order="qtune llama"; else order="llama qtune"; fi
    for srv in $order; do
      [ "$srv" = llama ] && [ -z "$LLAMA_SERVER" ] && continue
      run_one "$srv" "$c"
    done
  done
done

# medians per server and client count, Markdown
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const med = (a) => { const b = [...a].sort((x, y) => x - y), n = b.length; return n % 2 ? b[(n - 1) / 2] : (b[n / 2 - 1] + b[n / 2]) / 2; };
const get = (s, c, k) => { const v = rows.filter((r) => r.server === s && r.clients === c).map((r) => r[k]); return v.length ? med(v) : null; };
const cs = [...new Set(rows.map((r) => r.clients))].sort((a, b) => a - b);
const f = (x, d = 1) => (x === null ? "-" : x.toFixed(d));
console.log("| clients | qtune tok/s | x 1 client | p50 ms | p99 ms | TTFT p50 ms | llama-server tok/s | x 1 client | p50 ms | p99 ms | TTFT p50 ms | qtune / llama |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
const q1 = get("qtune", cs[0], "tok_s"), l1 = get("llama", cs[0], "tok_s");
for (const c of cs) {
  const q = get("qtune", c, "tok_s"), l = get("llama", c, "tok_s");
  console.log(`| ${c} | ${f(q)} | ${q && q1 ? f(q / q1, 2) : "-"} | ${f(get("qtune", c, "p50_ms"), 0)} | ${f(get("qtune", c, "p99_ms"), 0)} | ${f(get("qtune", c, "ttft_p50_ms"), 0)} | ` +
    `${f(l)} | ${l && l1 ? f(l / l1, 2) : "-"} | ${f(get("llama", c, "p50_ms"), 0)} | ${f(get("llama", c, "p99_ms"), 0)} | ${f(get("llama", c, "ttft_p50_ms"), 0)} | ${q && l ? f(q / l, 2) : "-"} |`);
}' "$OUT"
