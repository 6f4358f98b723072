#!/bin/sh
# The Mixtral / QLoRA / SFT workflow of the tutorial qtune replaces (TRL's
# SFTTrainer on Mixtral-8x7B loaded in 4-bit NF4 with double quantization,
# LoRA on q, k, v, o, w1, w2, w3), end to end on the tiny random Mixtral
# (tests/data/tiny-mixtral, HF layout, and its bitsandbytes 4-bit form):
#   convert the HF folder to GGUF -> prompt/completion data, token statistics
#   -> QLoRA SFT (--quantize nf4-dq, --mask-prompt) on the GGUF and directly on
#   the bnb-4bit folder: the loss falls -> evaluate, generate with the adapter
#   -> the adapter as GGUF LoRA and merged into the weights (fuse): the same text.
# A tiny random model learns the answers' tokens, not language: the checks are
# on losses and on agreement between the forms, not on quality.
Q=${QTUNE:-build/qtune}
TOK=${QT_SHARED_MODELS:-../shared/models}/tinystories-260K/stories260K.gguf
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 1. the model: HF folder -> GGUF (llama.cpp's Mixtral layout), with a vocabulary
$Q convert tests/data/tiny-mixtral -o "$tmp/mx.gguf" --tokenizer "$TOK" > "$tmp/conv.out" 2>&1 && ok || bad "convert: $(tail -3 "$tmp/conv.out")"
$Q info "$tmp/mx.gguf" > "$tmp/info.out" 2>&1
grep -q "experts: *4, 2 per token" "$tmp/info.out" && ok || bad "info: $(cat "$tmp/info.out")"

# 2. SFT data: prompt / completion pairs, the prompt masked out of the loss
mkdir -p "$tmp/data"
i=0
for name in Bolt Lily Max Sue Tom Ann Ben Kim; do
  for q in "Who found the ball?" "Who helped the robot?"; do
    i=$((i + 1))
    printf '{"prompt": "### Question: %s Story %d.\\n### Answer:", "completion": " %s did."}\n' "$q" "$i" "$name"
  done
done > "$tmp/data/train.jsonl"
head -4 "$tmp/data/train.jsonl" > "$tmp/data/valid.jsonl"
$Q data stats -m "$tmp/mx.gguf" "$tmp/data" > "$tmp/stats.out" 2>&1 && ok || bad "data stats: $(tail -3 "$tmp/stats.out")"

# 3. QLoRA SFT: NF4 with double quantization, the tutorial's targets
sft="--data $tmp/data --iters 24 --batch-size 4 --learning-rate 3e-3 --lora-rank 8 --lora-alpha 16
     --targets q_proj,k_proj,v_proj,o_proj,w1,w2,w3 --quantize nf4-dq --mask-prompt --steps-per-eval 24
     --steps-per-report 4 -t 2 --seed 5"
$Q train -m "$tmp/mx.gguf" $sft -o "$tmp/a" > "$tmp/a.out" 2>&1 || bad "train: $(tail -5 "$tmp/a.out")"
grep -q "mixture of experts: 4 per layer, 2 per token" "$tmp/a.out" && ok || bad "memory plan names the experts"
first=$(grep -o 'iter *4/24: loss [0-9.]*' "$tmp/a.out" | awk '{print $NF}')
last=$(grep -o 'iter *24/24: loss [0-9.]*' "$tmp/a.out" | awk '{print $NF}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.7) }' && ok || bad "loss did not fall: $first -> $last"
grep -q '"w1"' "$tmp/a/adapter_config.json" && grep -q '"w3"' "$tmp/a/adapter_config.json" && ok || bad "target_modules"
# the same run straight from the bitsandbytes 4-bit checkpoint (already NF4)
$Q train -m tests/data/tiny-mixtral-bnb --tokenizer "$TOK" $(echo "$sft" | sed 's/--quantize nf4-dq//') -o "$tmp/b" \
  > "$tmp/b.out" 2>&1 || bad "train on bnb-4bit: $(tail -5 "$tmp/b.out")"
lb=$(grep -o 'iter *24/24: loss [0-9.]*' "$tmp/b.out" | awk '{print $NF}')
awk -v a="$first" -v b="$lb" 'BEGIN { exit !(b < a * 0.7) }' && ok || bad "bnb-4bit loss did not fall: $first -> $lb"

# 4. evaluate and generate with the adapter
ev() { $Q eval -m "$tmp/mx.gguf" --data "$tmp/data" --split valid --batch-size 4 "$@" 2>/dev/null | sed -n 's/^loss \([0-9.]*\).*/\1/p'; }
l_base=$(ev); l_tuned=$(ev --adapter "$tmp/a")
awk -v a="$l_base" -v b="$l_tuned" 'BEGIN { exit !(b < a) }' && ok || bad "eval: base $l_base, tuned $l_tuned"
p="### Question: Who found the ball? Story 1.
### Answer:"
tuned=$($Q generate -m "$tmp/mx.gguf" --adapter "$tmp/a" -p "$p" -n 8 --temp 0 --no-prompt 2>/dev/null)
[ -n "$tuned" ] && ok || bad "generate with the adapter"

# 5. interchange: GGUF LoRA (experts stacked 3-D) and a merged model give the same text
$Q convert -m "$tmp/mx.gguf" --adapter "$tmp/a" -o "$tmp/a.gguf" > /dev/null 2>&1 && ok || bad "adapter -> GGUF LoRA"
lg=$($Q generate -m "$tmp/mx.gguf" --adapter "$tmp/a.gguf" -p "$p" -n 8 --temp 0 --no-prompt 2>/dev/null)
[ "$lg" = "$tuned" ] && ok || bad "GGUF LoRA text '$lg' vs '$tuned'"
$Q fuse -m "$tmp/mx.gguf" --adapter "$tmp/a" -o "$tmp/fused.gguf" --type f32 > /dev/null 2>&1 && ok || bad "fuse"
fused=$($Q generate -m "$tmp/fused.gguf" -p "$p" -n 8 --temp 0 --no-prompt 2>/dev/null)
[ "$fused" = "$tuned" ] && ok || bad "fused text '$fused' vs '$tuned'"

# bad flags: one error naming the problem
$Q train -m "$tmp/mx.gguf" --data "$tmp/data" --iters 1 --targets q,up -o "$tmp/c" > /dev/null 2> "$tmp/e"
[ $? -ne 0 ] && grep -q "unknown LoRA target 'up' for mixtral" "$tmp/e" && ok || bad "bad target: $(cat "$tmp/e")"

echo "cli-moe: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
