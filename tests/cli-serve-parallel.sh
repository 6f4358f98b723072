#!/bin/sh
# Continuous batching in `qtune serve --parallel N` on loopback with the
# bundled stories260K: tests/serve/parallel.mjs (plain fetch) sends the same
# greedy and seeded requests one at a time to a --parallel 1 server and all at
# once to a --parallel 4 one and wants identical texts (streamed and not, n = 2,
# logprobs, json_object, stops, penalties); the prompt cache is found again
# (usage.prompt_tokens_details.cached_tokens); clients that drop endless
# streams free their slots (the server logs them aborted early, and a request
# after them finishes). Then the OpenAI feature checks (tests/serve/features.mjs,
# with the official openai npm client, installed if missing) and the bounded load test
# against --parallel 4, and bad --parallel values. The servers are always killed.
Q=${QTUNE:-build/qtune}
BUILD=${BUILD:-build}
M=models/stories260K.gguf
KEY=sk-qtune-test
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
spid=""; spid1=""
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  [ -n "$spid1" ] && kill "$spid1" 2>/dev/null && wait "$spid1" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
command -v node >/dev/null || { echo "FAIL: node is needed (Debian: apt-get install nodejs)"; echo "0 passed, 1 failed"; exit 1; }

. tests/serve/start-server.sh
start_server --chat-template chatml -c 4096 --max-tokens-limit 4000 -t 1 --parallel 1
spid1=$spid; port1=$port; cp "$tmp/serve.err" "$tmp/serve1.err" 2>/dev/null
[ -n "$port1" ] && ok || { bad "--parallel 1 server did not start: $(cat "$tmp/serve.err")"; echo "$pass passed, $fail failed"; exit 1; }
start_server --chat-template chatml -c 4096 --max-tokens-limit 4000 -t 1 --parallel 4 -v 2
[ -n "$port" ] && ok || { bad "--parallel 4 server did not start: $(cat "$tmp/serve.err")"; echo "$pass passed, $fail failed"; exit 1; }

if node tests/serve/parallel.mjs "http://127.0.0.1:$port1" "http://127.0.0.1:$port" $KEY 4 >"$tmp/par.out" 2>&1; then ok
else bad "parallel checks:"; fi
cat "$tmp/par.out"
# the dropped streams were stopped early (not run to their 4000 tokens)
sleep 0.3
n_abort=$(grep -c 'generated (abort)' "$tmp/serve.err")
n_long=$(sed -n 's/.* \([0-9]*\) generated (abort).*/\1/p' "$tmp/serve.err" | awk '$1 >= 3000' | wc -l)
[ "$n_abort" -ge 4 ] && [ "$n_long" -eq 0 ] && ok || bad "dropped streams: $n_abort aborted, $n_long ran long: $(grep generated "$tmp/serve.err" | tail -n 6)"
grep -q 'slot 3,' "$tmp/serve.err" && ok || bad "--parallel 4 never used slot 3: $(grep generated "$tmp/serve.err" | head)"
kill "$spid"; wait "$spid"; st=$?; spid=""
[ "$st" -eq 0 ] && ok || bad "--parallel 4 server exit status $st after SIGTERM: $(tail -n 20 "$tmp/serve.err")"
kill "$spid1"; wait "$spid1"; st=$?; spid1=""
[ "$st" -eq 0 ] && ok || bad "--parallel 1 server exit status $st after SIGTERM"

# the OpenAI client's feature checks and the load test on --parallel 4
NPM_DIR="$BUILD/serve-npm"
. tests/serve/npm.sh
need_openai_client "$NPM_DIR"
cp tests/serve/load-test.mjs tests/serve/features.mjs "$NPM_DIR/"
start_server --chat-template-file tests/data/chat-templates/corpus/Qwen-Qwen2.5-7B-Instruct.jinja -c 2048 -t 2 \
  --alias stories260K --cors-origins http://example.test --parallel 4
if [ -n "$port" ] && node "$NPM_DIR/features.mjs" "http://127.0.0.1:$port" $KEY stories260K tests/data/stories260K-ref.bin \
     tests/data/stories260K-embed-ref.json >"$tmp/features.out" 2>&1; then ok; else bad "OpenAI feature checks on --parallel 4:"; fi
cat "$tmp/features.out"
if node "$NPM_DIR/load-test.mjs" "http://127.0.0.1:$port" $KEY stories260K 96 8 16 >"$tmp/load.out" 2>&1 &&
   grep -q '"failures":0,' "$tmp/load.out"; then ok; else bad "load test on --parallel 4:"; fi
echo "load (--parallel 4, 8 clients): $(cat "$tmp/load.out")"
kill "$spid"; wait "$spid"; st=$?; spid=""
[ "$st" -eq 0 ] && ok || bad "feature server exit status $st after SIGTERM: $(tail -n 20 "$tmp/serve.err")"

# bad values are refused with a clear message
$Q serve -m $M --port 0 --parallel 0 >/dev/null 2>"$tmp/p.err" && bad "--parallel 0 accepted" || ok
grep -q "parallel" "$tmp/p.err" && ok || bad "--parallel 0 message: $(cat "$tmp/p.err")"
$Q serve -m $M --port 0 --parallel 8 -b 4 >/dev/null 2>"$tmp/p.err" && bad "--parallel 8 -b 4 accepted" || ok
grep -q "smaller than --parallel" "$tmp/p.err" && ok || bad "--parallel 8 -b 4 message: $(cat "$tmp/p.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
