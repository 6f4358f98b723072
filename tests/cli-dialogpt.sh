#!/bin/sh
# The one-command run.sh tutorial's DialoGPT flow (PEFT LoRA on
# microsoft/DialoGPT-medium, a GPT-2 model, on question/answer dialogues),
# end to end on the tiny GPT-2 of tests/data/tiny-gpt2 (a Hugging Face
# folder: Conv1D weights, tokenizer.json, GPT-2's chat template):
#   ./run.sh with MODEL=<HF folder> trains LoRA on every projection with the
#   dialogues rendered in DialoGPT's format (turns separated by EOS);
#   qtune chat with the adapter answers a training question with its answer
#   and stops at EOS; the adapter folder is PEFT's (fan_in_fan_out, both
#   c_proj named apart); the GGUF conversion of the model with the GGUF
#   LoRA conversion of the adapter, and the fused model, answer the same.
Q=${QTUNE:-build/qtune}
M=tests/data/tiny-gpt2
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# a medical Q&A set in chat form, as the tutorial's (6 pairs, 8 times)
mkdir "$tmp/data"
qa() { printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}\n' "$1" "$2"; }
pairs() {
  qa "What are the symptoms of high blood pressure?" "Often none; some people get headaches."
  qa "How much water should I drink?" "About eight glasses a day."
  qa "What helps a sore throat?" "Warm tea with honey and rest."
  qa "Is a fever dangerous?" "A high fever needs a doctor."
  qa "How can I sleep better?" "Keep a regular bedtime."
  qa "What lowers cholesterol?" "Exercise and less fried food."
}
for i in 1 2 3 4 5 6 7 8; do pairs; done > "$tmp/data/train.jsonl"
pairs > "$tmp/data/valid.jsonl"

# the one command
MODEL=$M DATA="$tmp/data" ITERS=120 OUT="$tmp/run" LR=1e-2 TARGETS=all RANK=16 BATCH_SIZE=8 THREADS=2 QTUNE=$Q \
  ./run.sh --chat-template dialogpt --mask-prompt --seed 1 --compute fp32 > "$tmp/run.out" 2>&1 || bad "run.sh failed: $(tail -5 "$tmp/run.out")"
first=$(grep -o 'iter *10/120: loss [0-9.]*' "$tmp/run.out" | awk '{print $NF}')
last=$(grep -o 'iter *120/120: loss [0-9.]*' "$tmp/run.out" | awk '{print $NF}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.3) }' && ok || bad "loss did not fall: $first -> $last"
grep -q "records truncated to 64 tokens: the model has 64 positions" "$tmp/run.out" && ok || bad "max-seq-len not capped"
cfg="$tmp/run/adapter_config.json"
grep -q '"fan_in_fan_out":[[:space:]]*true' "$cfg" && ok || bad "fan_in_fan_out: $(cat "$cfg")"
tr -d ' \t\n' < "$cfg" | grep -q '"target_modules":\["c_attn","attn.c_proj","c_fc","mlp.c_proj"\]' && ok ||
  bad "target_modules: $(cat "$cfg")"

# chat answers in DialoGPT's format, with the adapter, and stops at EOS
ask() {  # model, question, extra flags...
  m=$1; q=$2; shift 2
  printf '%s\n/exit\n' "$q" | $Q chat -m "$m" --temp 0 -n 30 -t 2 "$@" 2>"$tmp/chat.err" | tail -n 1
}
a1=$(ask $M "How much water should I drink?" --adapter "$tmp/run")
[ "$a1" = "About eight glasses a day." ] && ok || bad "answer with the adapter: '$a1' ($(tail -2 "$tmp/chat.err"))"
grep -qE "chat template (dialogpt|jinja)" "$tmp/chat.err" && grep -q "(stop)" "$tmp/chat.err" && ok ||
  bad "template / stop at EOS: $(cat "$tmp/chat.err")"
a2=$(ask $M "What helps a sore throat?" --adapter "$tmp/run")
[ "$a2" = "Warm tea with honey and rest." ] && ok || bad "second answer: '$a2'"
a0=$(ask $M "How much water should I drink?")
[ "$a0" != "$a1" ] && ok || bad "the base model gives the tuned answer"

# llama.cpp forms: the converted model with the adapter as GGUF LoRA, and the fused model
$Q convert $M -o "$tmp/g.gguf" > /dev/null 2>&1 && ok || bad "convert the model"
$Q convert -m $M --adapter "$tmp/run" -o "$tmp/lora.gguf" > /dev/null 2>&1 && ok || bad "convert the adapter"
$Q fuse -m $M --adapter "$tmp/run" -o "$tmp/fused.gguf" > /dev/null 2>&1 && ok || bad "fuse"
$Q info "$tmp/g.gguf" 2>&1 | grep -q "gpt2" && ok || bad "info: $($Q info "$tmp/g.gguf" 2>&1 | head -5)"
a3=$(ask "$tmp/g.gguf" "How much water should I drink?" --adapter "$tmp/lora.gguf")
[ "$a3" = "$a1" ] && ok || bad "GGUF model + GGUF LoRA: '$a3'"
a4=$(ask "$tmp/fused.gguf" "How much water should I drink?")
[ "$a4" = "$a1" ] && ok || bad "fused model: '$a4'"

echo "cli-dialogpt: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
