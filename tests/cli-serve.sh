#!/bin/sh
# End-to-end test of `qtune serve` on loopback with the official OpenAI
# JavaScript client (npm package "openai", installed into $BUILD/serve-npm,
# which is git-ignored, with the ajv schema validator): tests/serve/openai-client.mjs
# (chat streamed and not, completions, errors 400 / 401 / 413), tests/serve/features.mjs
# on a second server with Qwen2.5's Jinja chat template and CORS (logprobs against
# PyTorch, penalties, logit_bias, response_format, a tool-call round trip, n, echo,
# embeddings against PyTorch, unsupported parameters, CORS), then a bounded load test from a second
# process (tests/serve/load-test.mjs: 200 requests, 8 concurrent) with zero
# failures, its figures printed, and the server's RSS read from /proc before
# and after (twice, to tell warm-up from growth). The server is always killed.
Q=${QTUNE:-build/qtune}
BUILD=${BUILD:-build}
M=models/stories260K.gguf
KEY=sk-qtune-test
N_REQ=${QT_SERVE_REQUESTS:-200}
CONC=${QT_SERVE_CONCURRENCY:-8}
RSS_GROWTH_MAX_KB=4096      # between two identical load runs (after warm-up)
RSS_WARM_MAX_KB=32768       # from idle to after the first load run
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
spid=""
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

NPM_DIR="$BUILD/serve-npm"
. tests/serve/npm.sh
need_openai_client "$NPM_DIR"
cp tests/serve/openai-client.mjs tests/serve/load-test.mjs tests/serve/features.mjs "$NPM_DIR/"   # ESM resolves "openai" next to the script
echo "openai client $(node -p "require('./$NPM_DIR/node_modules/openai/package.json').version")"

. tests/serve/start-server.sh
start_server --chat-template chatml --max-tokens-limit 256 --max-body 64 -c 512 --alias stories260K -t 2
[ -n "$port" ] && ok || { bad "server did not start: $(cat "$tmp/serve.err")"; echo "$pass passed, $fail failed"; exit 1; }
BASE="http://127.0.0.1:$port"
health=""
for i in $(seq 1 50); do
  health=$(node -e "fetch('$BASE/health').then(r => r.text()).then(t => console.log(t)).catch(() => {})")
  [ -n "$health" ] && break
  sleep 0.1
done
case "$health" in *'"ok"'*) ok ;; *) bad "/health: '$health'" ;; esac

# the OpenAI client: functional checks
if node "$NPM_DIR/openai-client.mjs" "$BASE" $KEY stories260K >"$tmp/client.out" 2>&1; then ok; else bad "openai client checks:"; fi
cat "$tmp/client.out"

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$spid/status; }
load() { node "$NPM_DIR/load-test.mjs" "$BASE" $KEY stories260K "$1" $CONC 8; }
load 24 >/dev/null 2>&1   # warm-up: the first connections, allocator pools
rss0=$(rss)
if load $N_REQ >"$tmp/load1.out" 2>&1; then ok; else bad "load test 1 had failures"; fi
rss1=$(rss)
if load $N_REQ >"$tmp/load2.out" 2>&1; then ok; else bad "load test 2 had failures"; fi
rss2=$(rss)
echo "load 1: $(cat "$tmp/load1.out")"
echo "load 2: $(cat "$tmp/load2.out")"
echo "server VmRSS: ${rss0} kB idle after warm-up, ${rss1} kB after load 1, ${rss2} kB after load 2"
grep -q '"failures":0,' "$tmp/load1.out" && grep -q '"failures":0,' "$tmp/load2.out" && ok || bad "failed requests under load"
if grep -q -a __asan_init "$Q"; then
  # ASan's quarantine keeps freed memory on purpose (RSS grows); LeakSanitizer checks leaks at the exit below
  echo "RSS checks skipped under AddressSanitizer"
else
  [ $((rss1 - rss0)) -le $RSS_WARM_MAX_KB ] && ok || bad "RSS grew $((rss1 - rss0)) kB in the first load run"
  [ $((rss2 - rss1)) -le $RSS_GROWTH_MAX_KB ] && ok || bad "RSS grew $((rss2 - rss1)) kB between two identical load runs"
fi
kill -0 "$spid" 2>/dev/null && ok || bad "server died: $(tail -n 20 "$tmp/serve.err")"

# SIGTERM stops it cleanly (under ASan, LeakSanitizer runs at this exit: a leak fails it)
kill "$spid"; wait "$spid"; st=$?; spid=""
[ "$st" -eq 0 ] && ok || bad "server exit status $st after SIGTERM: $(tail -n 20 "$tmp/serve.err")"

# the OpenAI features, on a server with a model's own Jinja template (Qwen2.5's, from the corpus) and CORS
start_server --chat-template-file tests/data/chat-templates/corpus/Qwen-Qwen2.5-7B-Instruct.jinja -c 2048 -t 2 \
  --alias stories260K --cors-origins http://example.test
if [ -n "$port" ] && node "$NPM_DIR/features.mjs" "http://127.0.0.1:$port" $KEY stories260K tests/data/stories260K-ref.bin \
     tests/data/stories260K-embed-ref.json >"$tmp/features.out" 2>&1; then ok; else bad "OpenAI feature checks:"; fi
cat "$tmp/features.out"
kill "$spid"; wait "$spid"; st=$?; spid=""
[ "$st" -eq 0 ] && ok || bad "feature server exit status $st after SIGTERM: $(tail -n 20 "$tmp/serve.err")"

# it binds loopback by default, and refuses a bad host
$Q serve -m $M --host not-an-ip --port 0 >/dev/null 2>"$tmp/h.err" && bad "bad --host accepted" || ok
grep -q "not an IPv4 address" "$tmp/h.err" && ok || bad "bad host message: $(cat "$tmp/h.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
