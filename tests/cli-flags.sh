#!/bin/sh
# The option names these users already type: mlx_lm.lora / mlx_lm.generate
# (--train, --lora-layers, --adapter-path, --adapter-file, --max-tokens,
# --max-seq-length, --resume-adapter-file, --test-batches, --fine-tune-type,
# -c lora_config.yaml), llama.cpp (--lora, --lora-scaled, -sys, --color, -ins,
# -cnv, -n -1, -e, -f -, --special, -ngl), one name per meaning across
# commands, "did you mean" on typos, `qtune help CMD`, and every number
# range-checked with an error naming the flag as typed.
. tests/lib.sh
gen() { $Q generate -m $M --temp 0 --no-prompt "$@" 2>/dev/null; }

# ---- help and typos ----
$Q help train > "$tmp/h1" && $Q train --help > "$tmp/h2" && cmp -s "$tmp/h1" "$tmp/h2" && grep -q "lora-layers" "$tmp/h1" && ok \
  || bad "qtune help train must equal qtune train --help and list aliases"
$Q help > /dev/null && ok || bad "qtune help"
expect_err 2 "did you mean --iters" $Q train -m $M --data data/demo --itres 3
expect_err 2 "did you mean --learning-rate" $Q train -m $M --data data/demo --learning_rat 1e-4
expect_err 2 "did you mean --max-tokens" $Q generate -m $M -p hi --max-token 5
expect_err 2 "did you mean generate" $Q genrate -m $M
expect_err 2 "unknown option '--zzz'" $Q eval -m $M --zzz

# ---- numbers: strict, finite, in range, the flag named as typed ----
expect_err 2 "-t -3" $Q generate -m $M -p hi -t -3
expect_err 2 "--temp -1" $Q generate -m $M -p hi --temp -1
expect_err 2 "--top-p 2" $Q generate -m $M -p hi --top-p 2
expect_err 2 "--top-p" $Q chat -m $M --top-p 0
expect_err 2 "--min-p" $Q generate -m $M -p hi --min-p 1.5
expect_err 2 "-n -5" $Q generate -m $M -p hi -n -5
expect_err 2 "nan" $Q train -m $M --data data/demo --learning-rate nan
expect_err 2 "1e300" $Q train -m $M --data data/demo --lora-alpha 1e300
expect_err 2 "--lora-dropout 1" $Q train -m $M --data data/demo --lora-dropout 1
expect_err 2 "--batch-size 0" $Q eval -m $M --data data/demo --batch-size 0
expect_err 2 "--verbose 7" $Q info $M --verbose 7
expect_err 2 "--split" $Q data prepare x.csv -o "$tmp/x" --split 0.5,0.6,0.1
expect_err 1 "the model has 5 layers" $Q train -m $M --data data/demo --num-layers 99 --iters 1 -o "$tmp/nl"
expect_err 2 "--iters or --epochs" $Q train -m $M --data data/demo --iters 3 --epochs 1
expect_err 2 "fine-tune-type dora" $Q train -m $M --data data/demo --fine-tune-type dora
expect_err 2 "--lora-scaled" $Q generate -m $M -p hi --lora-scaled "$tmp/none"

# ---- mlx_lm.lora names ----
$Q train --model $M --train --data data/demo --iters 4 --batch-size 4 --lora-layers 2 --max-seq-length 64 \
  --fine-tune-type lora --steps-per-eval 0 --test --test-batches 1 -t 2 --adapter-path "$tmp/mlx" > "$tmp/m.out" 2>&1 \
  && grep -q "layers 3-4" "$tmp/m.out" && grep -q "test loss" "$tmp/m.out" && ok || bad "mlx_lm.lora flags: $(tail -3 "$tmp/m.out")"
# --adapter-file as the output: an mlx-lm adapters.safetensors, and an .npz
$Q train -m $M --data data/demo --iters 2 -t 2 --steps-per-eval 0 --adapter-file "$tmp/mx/adapters.safetensors" > /dev/null 2>&1 \
  && [ -s "$tmp/mx/adapters.safetensors" ] && grep -q lora_parameters "$tmp/mx/adapter_config.json" && ok || bad "--adapter-file x/adapters.safetensors"
# --resume-adapter-file: the run starts where that adapter is (same loss at step 0)
$Q train -m $M --data data/demo --iters 8 --learning-rate 2e-3 --targets all -t 2 --steps-per-eval 0 -o "$tmp/r1" > /dev/null 2>&1
l_end=$($Q eval -m $M -a "$tmp/r1" --data data/demo --split valid 2>/dev/null | sed -n 's/^loss \([0-9.]*\).*/\1/p')
$Q train -m $M --data data/demo --iters 1 --learning-rate 1e-9 --targets all -t 2 --steps-per-eval 0 \
  --resume-adapter-file "$tmp/r1" -o "$tmp/r2" > /dev/null 2>&1
l_r2=$($Q eval -m $M -a "$tmp/r2" --data data/demo --split valid 2>/dev/null | sed -n 's/^loss \([0-9.]*\).*/\1/p')
awk -v a="$l_end" -v b="$l_r2" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-3 && d > -1e-3) }' && ok \
  || bad "--resume-adapter-file: loss $l_r2, adapter's $l_end"
# -c: mlx-lm's YAML config (nested lora_parameters, lr_schedule); flags override it
cat > "$tmp/lora.yaml" <<'EOF'
# as mlx-lm's examples/lora_config.yaml writes it
model: "models/stories260K.gguf"
train: true
data: "data/demo"
fine_tune_type: lora
num_layers: 3
batch_size: 4
iters: 50
learning_rate: 2e-3
steps_per_eval: 0
wandb: null
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]
  rank: 4
  scale: 10.0
  dropout: 0.0
lr_schedule:
  name: cosine_decay
  warmup: 2
  arguments: [2e-3, 50, 1e-7]
EOF
$Q train -c "$tmp/lora.yaml" --iters 3 -t 2 -o "$tmp/y" > "$tmp/y.out" 2>&1 && grep -q "iter *3/3" "$tmp/y.out" && ok \
  || bad "-c lora.yaml: $(tail -3 "$tmp/y.out")"
grep -q '"r":[[:space:]]*4' "$tmp/y/adapter_config.json" && grep -q '"lora_alpha":[[:space:]]*40' "$tmp/y/adapter_config.json" \
  && grep -q '"down_proj"' "$tmp/y/adapter_config.json" && grep -q "layers 2-4" "$tmp/y.out" && ok \
  || bad "YAML lora_parameters not applied: $(cat "$tmp/y/adapter_config.json")"
printf 'iters: [1, {a: 2}]\n' > "$tmp/bad.yaml"
expect_err 2 "bad.yaml:1" $Q train -m $M --data data/demo -c "$tmp/bad.yaml"
printf 'iters: 3\n  bad indent: [\n' > "$tmp/bad2.yaml"
expect_err 2 "bad2.yaml" $Q train -m $M --data data/demo -c "$tmp/bad2.yaml"

# ---- mlx_lm.generate and llama.cpp names ----
base=$(gen -p "Once upon a time" -n 16)
[ "$(gen --prompt "Once upon a time" --max-tokens 16)" = "$base" ] && [ "$(gen -p "Once upon a time" --n-predict 16)" = "$base" ] \
  && ok || bad "--prompt / --max-tokens / --n-predict"
t1=$(gen -p "Once upon a time" -n 16 --adapter "$tmp/r1")
[ "$(gen -p "Once upon a time" -n 16 --adapter-path "$tmp/r1")" = "$t1" ] && [ "$(gen -p "Once upon a time" -n 16 --lora "$tmp/r1")" = "$t1" ] \
  && [ "$(gen -p "Once upon a time" -n 16 --lora-scaled "$tmp/r1" 1.0)" = "$t1" ] && [ "$t1" != "$base" ] && ok \
  || bad "--adapter-path / --lora / --lora-scaled"
[ "$(gen -p "Once upon a time" -n 16 --lora-scaled "$tmp/r1" 0)" = "$base" ] && ok || bad "--lora-scaled F 0 must give the base text"
# escapes as llama.cpp and mlx_lm.generate process them; -f - reads stdin
[ "$(gen -p 'Once upon\na time' -n 8)" = "$(gen -p "Once upon
a time" -n 8)" ] && ok || bad "-p 'a\\nb' not unescaped"
[ "$(printf 'Once upon a time' | $Q generate -m $M --temp 0 --no-prompt -f - -n 16 2>/dev/null)" = "$base" ] && ok || bad "-f -"
[ "$(gen -e -p "Once upon a time" -n 16 --color -ngl 99)" = "$base" ] && ok || bad "-e --color -ngl"
# -n -1: until end of text or a full context
n1=$(gen -p "Once upon a time" -n -1 --ignore-eos -c 64 2>/dev/null | wc -c)
[ "$n1" -gt 100 ] && ok || bad "-n -1 generated $n1 bytes"
# --special: "<s>" in the prompt is the BOS token
[ "$(gen --no-bos --special -p "<s>Once upon a time" -n 16)" = "$base" ] && ok || bad "--special"
# -ins / -cnv / -sys / -i: generate hands over to chat
for f in -ins -cnv -i; do
  printf 'Hello\n' | $Q generate -m $M --temp 0 -n 8 --chat-template llama2 $f > "$tmp/c.out" 2> "$tmp/c.err" \
    && grep -q "turn 1" "$tmp/c.err" && ok || bad "generate $f -> chat: $(cat "$tmp/c.err")"
done
printf 'Hello\n' | $Q generate -m $M --temp 0 -n 8 --chat-template llama2 -sys "You are Bolt." > /dev/null 2> "$tmp/c.err" \
  && grep -q "turn 1" "$tmp/c.err" && ok || bad "-sys: $(cat "$tmp/c.err")"
printf 'Hello\n' | $Q chat -m $M --temp 0 -n 8 --chat-template llama2 --system-prompt "You are Bolt." -q > /dev/null 2>&1 && ok \
  || bad "--system-prompt"

# ---- one name per meaning ----
for c in generate chat eval; do
  $Q help $c | grep -q -- "-n, --max-tokens" && ok || bad "$c: -n is --max-tokens"
done
for c in generate chat eval serve convert; do
  $Q help $c | grep -q -- "--adapter-path --adapter-file --lora" && ok || bad "$c: --adapter aliases"
done
for c in train eval; do
  $Q help $c | grep -q -- "--max-seq-len N" && $Q help $c | grep -q -- "--max-seq-length" && ok || bad "$c: --max-seq-len"
done
for c in train eval tokenize generate; do
  $Q help $c | grep -q -- "--parse-special" && ok || bad "$c: --parse-special"
done

finish cli-flags
