#!/bin/sh
# CLI golden tests on the bundled stories260K model: greedy text equals what
# llama2.c's own test expects, seeds reproduce, every command has --help, and
# bad flags / bad files give one clear error and a non-zero exit.
. tests/lib.sh

# greedy: llama2.c's test_all.py expects this continuation from BOS
out=$($Q generate -m $M -p "Once upon a time" -n 40 --temp 0 --no-prompt 2>"$tmp/err")
case "$out" in
  ", there was a little girl named Lily. She loved to play outside in the park."*) ok ;;
  *) bad "greedy output: '$out'"; cat "$tmp/err" ;;
esac
grep -q "prompt: .*tokens/s" "$tmp/err" && bad "--no-prompt must hide stats" || ok
$Q generate -m $M -p "Once upon a time" -n 20 --temp 0 2>"$tmp/err" >/dev/null
grep -q "generation: .*tokens/s" "$tmp/err" && ok || bad "stats missing: $(cat "$tmp/err")"

# same seed, same text; another seed, (almost surely) another text
a=$($Q generate -m $M -p "Lily" -n 40 --temp 0.9 --seed 11 --no-prompt 2>/dev/null)
b=$($Q generate -m $M -p "Lily" -n 40 --temp 0.9 --seed 11 --no-prompt -t 1 2>/dev/null)
c=$($Q generate -m $M -p "Lily" -n 40 --temp 0.9 --seed 12 --no-prompt 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "same seed gave '$a' vs '$b'"
[ "$a" != "$c" ] && ok || bad "different seeds gave the same text"

# --no-mmap: the weights copied out of the file mapping, the same text (GGUF and HF forms)
d=$($Q generate -m $M -p "Lily" -n 40 --temp 0.9 --seed 11 --no-prompt --no-mmap -v 1 2>"$tmp/err")
[ "$d" = "$a" ] && grep -q "no-mmap: .* copied" "$tmp/err" && ok || bad "--no-mmap gave '$d': $(cat "$tmp/err")"

# the HF form with the GGUF vocabulary gives the same greedy text
h=$($Q generate -m ../shared/models/tinystories-260K/hf --tokenizer $M -p "Once upon a time" -n 40 --temp 0 --no-prompt 2>/dev/null)
[ "$h" = "$out" ] && ok || bad "HF form: '$h'"
h=$($Q generate -m ../shared/models/tinystories-260K/hf --tokenizer $M -p "Once upon a time" -n 40 --temp 0 --no-prompt --no-mmap 2>/dev/null)
[ "$h" = "$out" ] && ok || bad "HF form, --no-mmap: '$h'"

# info
$Q info $M > "$tmp/info" 2>&1 && grep -q "parameters: *292800" "$tmp/info" && ok || bad "info: $(cat "$tmp/info")"
# the KV cache's type and size: fp32 for F32 weights, fp16 for quantized ones
# (5 layers x 2048 positions x 4 heads x 8 x 2 (k, v) x 4 or 2 bytes)
grep -q "KV cache 2.50 MiB (f32)" "$tmp/info" && ok || bad "info, KV cache of the F32 model: $(grep 'to run' "$tmp/info")"
$Q quantize $M "$tmp/q8.gguf" --type q8_0 > /dev/null 2>&1 && $Q info "$tmp/q8.gguf" > "$tmp/info8" 2>&1 \
  && grep -q "KV cache 1.25 MiB (f16)" "$tmp/info8" && ok || bad "info, KV cache of the Q8_0 model: $(grep 'to run' "$tmp/info8")"
# bench -d: the tests after that many tokens in the cache, labelled as llama-bench labels them
$Q bench -m "$tmp/q8.gguf" -p 8 -n 4 -d 16 -r 1 -t 1 > "$tmp/bench" 2>&1 && grep -q "| pp8 @ d16 |" "$tmp/bench" \
  && grep -q "| tg4 @ d16 |" "$tmp/bench" && ok || bad "bench -d: $(cat "$tmp/bench")"

# every command has --help
for c in generate info bench; do
  $Q $c --help > "$tmp/h" 2>&1 && grep -q "usage: qtune $c" "$tmp/h" && ok || bad "$c --help"
done
$Q --help >/dev/null 2>&1 && ok || bad "qtune --help"

# bad flags and values: exit 2 and one line naming the flag
expect_err 2 "--frobnicate" $Q generate -m $M -p x --frobnicate
expect_err 2 "--temp" $Q generate -m $M -p x --temp hot
expect_err 2 "-n" $Q generate -m $M -p x -n 12x
expect_err 2 "needs a value" $Q generate -m $M -p
expect_err 2 "unknown command" $Q frobnicate
expect_err 2 "prompt" $Q generate -m $M
expect_err 1 "no model" $Q generate -p hi
expect_err 1 "nope.gguf" $Q generate -m "$tmp/nope.gguf" -p hi
expect_err 1 "context size" $Q generate -m $M -p "Once upon a time" -n 100 -c 20

# corrupt files: truncated, garbage, empty -> exit 1, error names the file
head -c 5000 $M > "$tmp/trunc.gguf"
expect_err 1 "trunc.gguf" $Q info "$tmp/trunc.gguf"
head -c 1000000 $M > "$tmp/trunc2.gguf"
expect_err 1 "trunc2.gguf" $Q generate -m "$tmp/trunc2.gguf" -p hi
printf 'GGUF\003\000\000\000garbage' > "$tmp/garbage.gguf"
expect_err 1 "garbage.gguf" $Q info "$tmp/garbage.gguf"
: > "$tmp/empty.gguf"
expect_err 1 "empty.gguf" $Q info "$tmp/empty.gguf"
printf 'not json' > "$tmp/cfg.json"; mkdir "$tmp/hf"; cp "$tmp/cfg.json" "$tmp/hf/config.json"
expect_err 1 "config.json" $Q info "$tmp/hf"

finish cli-generate
