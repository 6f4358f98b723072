#!/bin/sh
# Ctrl-C on a model whose training step takes seconds (a random-weight
# TinyLlama-shaped Q4_0 model with 4 layers from bench/make-model): the run
# header is in a redirected output before the first step ends; SIGINT in the
# middle of a step ends the run within 2 s with exit 130, the checkpoint of
# the last finished step and the command that continues it; two SIGINTs end
# it at once; --resume continues from the checkpoint. Chat on the same model:
# Ctrl-C stops the answer and returns to the prompt (the conversation goes
# on), two Ctrl-C at the prompt end it (130), end of input ends it (0).
. tests/lib.sh
MM=${MAKE_MODEL:-$(dirname "$Q")/bench/make-model}
pid=""
trap 'exec 3>&- 2>/dev/null; [ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
[ -x "$MM" ] || { echo "FAIL: $MM missing (make tests builds it)"; exit 1; }
now() { date +%s.%N; }
# waits up to $2 tenths of a second for pattern $1 in file $3
wait_for() { i=0; while [ $i -lt "$2" ]; do grep -q -- "$1" "$3" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done; return 1; }
# seconds from $1 to $2
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

"$MM" --preset tinyllama-1.1b --type q4_0 --n-layer 4 -t 2 -o "$tmp/big.gguf" > /dev/null 2>&1 || { echo "FAIL: make-model"; exit 1; }
mkdir "$tmp/data"
line="the quick brown fox jumps over the lazy dog 0123456789, again and again, until the story ends. "
B=${QT_INTERRUPT_BATCH:-12}
i=0; while [ $i -lt "$B" ]; do
  printf '{"text": "record %d: %s%s%s"}\n' $i "$line" "$line" "$line"
  i=$((i + 1)); done > "$tmp/data/train.jsonl"
# the exit bound: 2 s; the ASan run allows 6 (its instrumentation and the
# leak scan at exit are not qtune's latency)
LIMIT=${QT_INTERRUPT_LIMIT:-2.0}
# records per step (one step per pass): 12 make a step of about 10 s on 2
# idle cores; the ASan run (make asan) uses 2, as the sanitizer makes every
# operation several times slower
run="-m $tmp/big.gguf --data $tmp/data --batch-size $B --steps-per-report 1 --steps-per-eval 0 -t 2 -o $tmp/run"

# 1. the header reaches a redirected output before the first step ends; SIGINT mid-step
$Q train $run --iters 3 > "$tmp/a.out" 2>&1 &
pid=$!
wait_for "^memory:" 600 "$tmp/a.out" && ! grep -q "^iter" "$tmp/a.out" && ok \
  || bad "run header not in the redirected output before the first step: $(cat "$tmp/a.out")"
wait_for "iter  *1/3" 3000 "$tmp/a.out" || bad "no first step: $(tail -3 "$tmp/a.out")"
t_step=$(sed -n 's/.*iter  *1\/3:.* \([0-9.]*\) s\/iter.*/\1/p' "$tmp/a.out")
# SIGINT half a step into step 2 (steps vary with the machine and the
# sanitizers); an exit well before the step could have ended shows the stop
# mid-step
half=$(awk -v s="$t_step" 'BEGIN { h = s / 2; if (h < 0.5) h = 0.5; printf "%.2f", h }')
sleep "$half"
t0=$(now); kill -INT $pid; wait $pid; rc=$?; t1=$(now)
lat=$(elapsed "$t0" "$t1")
echo "step 1 took $t_step s; exit $lat s after SIGINT"
[ $rc -eq 130 ] && ok || bad "SIGINT exit code $rc (want 130): $(tail -3 "$tmp/a.out")"
awk -v l="$lat" -v m="$LIMIT" 'BEGIN { exit !(l < m) }' && ok || bad "exit took $lat s after SIGINT (want < $LIMIT s)"
awk -v s="$t_step" -v h="$half" -v l="$lat" 'BEGIN { exit !(s >= 1.0 && l < (s - h) / 2) }' && ok \
  || bad "step 1 took $t_step s, the exit $lat s after SIGINT $half s into step 2: the stop was not shown mid-step"
grep -q "interrupted at step 1/3: checkpoint of step 1 saved" "$tmp/a.out" && ok || bad "stop message: $(tail -3 "$tmp/a.out")"
grep -q "continue with: qtune train .* --resume" "$tmp/a.out" && ok || bad "no resume command: $(tail -3 "$tmp/a.out")"
grep -q '"step":[[:space:]]*1,' "$tmp/run/training_state.json" && [ -s "$tmp/run/optimizer.safetensors" ] \
  && [ -s "$tmp/run/adapter_model.safetensors" ] && ok || bad "checkpoint of step 1 missing"
grep -q "^memory:" "$tmp/run/train.log" && grep -q "interrupted at step 1" "$tmp/run/train.log" && ok \
  || bad "train.log lacks the header or the stop: $(cat "$tmp/run/train.log")"

# 2. two SIGINTs: out at once, the checkpoint untouched
cp "$tmp/run/optimizer.safetensors" "$tmp/opt1"
$Q train $run --iters 3 --resume > "$tmp/b.out" 2>&1 &
pid=$!
wait_for "resumed from .* at step 1" 600 "$tmp/b.out" || bad "resume did not start: $(tail -3 "$tmp/b.out")"
sleep 1
t0=$(now); kill -INT $pid; sleep 0.05; kill -INT $pid 2>/dev/null; wait $pid; rc=$?; t1=$(now)
[ $rc -eq 130 ] && awk -v l="$(elapsed "$t0" "$t1")" -v m="$LIMIT" 'BEGIN { exit !(l < m) }' && ok \
  || bad "double SIGINT: rc $rc after $(elapsed "$t0" "$t1") s"
cmp -s "$tmp/opt1" "$tmp/run/optimizer.safetensors" && ok || bad "the checkpoint changed"

# 3. --resume continues from step 1
$Q train $run --iters 2 --resume > "$tmp/c.out" 2>&1 && grep -q "resumed from .* at step 1" "$tmp/c.out" \
  && grep -q "iter  *2/2" "$tmp/c.out" && grep -q '"step":[[:space:]]*2,' "$tmp/run/training_state.json" && ok \
  || bad "resume after SIGINT: $(tail -3 "$tmp/c.out")"
ls "$tmp/run" | grep -q '\.tmp\.' && bad "temporary files left: $(ls "$tmp/run")" || ok

# 4. chat: Ctrl-C stops the answer, the conversation goes on; two at the prompt end it
mkfifo "$tmp/in"
: > "$tmp/chat.out"; : > "$tmp/chat.err"
$Q chat -m "$tmp/big.gguf" -c 512 -n -1 --temp 0 --chat-template chatml -t 2 < "$tmp/in" > "$tmp/chat.out" 2> "$tmp/chat.err" &
pid=$!
exec 3> "$tmp/in"
echo "tell me a long story" >&3
size() { wc -c < "$1" 2>/dev/null || echo 0; }
i=0; while [ $i -lt 600 ] && [ "$(size "$tmp/chat.out")" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(size "$tmp/chat.out")" -ge 20 ] || bad "no answer streaming: $(cat "$tmp/chat.err")"
t0=$(now); kill -INT $pid
wait_for "answer stopped" "$(awk -v m="$LIMIT" 'BEGIN { print int(m * 10) }')" "$tmp/chat.err" && ok \
  || bad "Ctrl-C did not stop the answer within $LIMIT s: $(tail -3 "$tmp/chat.err")"
kill -0 $pid 2>/dev/null && ok || bad "chat ended on the first Ctrl-C"
echo "/save $tmp/conv.json" >&3
wait_for "saved 2 messages" 100 "$tmp/chat.err" && ok || bad "chat did not return to the prompt: $(tail -3 "$tmp/chat.err")"
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['messages']
assert [x['role'] for x in m] == ['user', 'assistant'] and len(m[1]['content']) > 0, m
" "$tmp/conv.json" && ok || bad "the stopped answer is not kept in the conversation"
kill -INT $pid
wait_for "Ctrl-C again or Ctrl-D" 20 "$tmp/chat.err" && kill -0 $pid 2>/dev/null && ok || bad "one Ctrl-C at the prompt must not exit"
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] && ok || bad "two Ctrl-C at the prompt: exit $rc (want 130)"
exec 3>&-
printf 'hello\n' | $Q chat -m models/stories260K.gguf --chat-template llama2 -n 8 -q > /dev/null 2>&1 && ok \
  || bad "end of input must end chat with 0"

finish cli-interrupt
