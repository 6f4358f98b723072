#!/bin/sh
# `qtune fuse / quantize / convert` end to end on the bundled model: a trained
# adapter converted to llama.cpp's GGUF LoRA gives the same greedy text as the
# PEFT folder; the fused model gives the adapter's greedy text; every quantized
# type loads and generates; an HF folder converts to a GGUF that gives the
# original's text; the adapter files pass tests/ref/check_adapters.py (when
# python3 is installed); bad input gives one error line and no output file.
Q=${QTUNE:-build/qtune}
M=models/stories260K.gguf
H=${QT_SHARED_MODELS:-../shared/models}/tinystories-260K/hf
P="Once upon a time"
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gen() { $Q generate "$@" -p "$P" -n 48 --temp 0 --no-prompt -t 1 2>/dev/null; }

$Q train -m $M --data data/demo --iters 12 --batch-size 8 --learning-rate 3e-3 --targets all --steps-per-eval 0 \
  -t 2 --seed 5 -o "$tmp/ad" > "$tmp/train.out" 2>&1 || bad "train: $(tail -3 "$tmp/train.out")"
base=$(gen -m $M)
tuned=$(gen -m $M --adapter "$tmp/ad")
[ -n "$tuned" ] && [ "$tuned" != "$base" ] && ok || bad "the adapter must change the text"

# adapter -> GGUF LoRA -> same text; --adapter picks the format by content
$Q convert -m $M --adapter "$tmp/ad" -o "$tmp/ad.gguf" 2>"$tmp/e" && ok || bad "convert adapter: $(cat "$tmp/e")"
[ "$(gen -m $M --adapter "$tmp/ad.gguf")" = "$tuned" ] && ok || bad "GGUF LoRA text differs from PEFT"
[ "$(gen -m $M --adapter "$tmp/ad.gguf:0")" = "$base" ] && ok || bad "GGUF LoRA at scale 0 must give the base text"
$Q convert -m $M --adapter "$tmp/ad.gguf" -o "$tmp/ad2" 2>"$tmp/e" && ok || bad "GGUF LoRA -> PEFT: $(cat "$tmp/e")"
cmp -s "$tmp/ad/adapter_model.safetensors" "$tmp/ad2/adapter_model.safetensors" && ok || bad "PEFT -> GGUF -> PEFT bytes differ"

# fuse: same greedy text as the adapter (F32 base), and with --type q8_0 it loads and runs
$Q fuse -m $M --adapter "$tmp/ad" -o "$tmp/fused.gguf" 2>"$tmp/e" && ok || bad "fuse: $(cat "$tmp/e")"
[ "$(gen -m "$tmp/fused.gguf")" = "$tuned" ] && ok || bad "fused text differs from the adapter's"
$Q fuse -m $M --adapter "$tmp/ad.gguf" -o "$tmp/fused2.gguf" 2>/dev/null && cmp -s "$tmp/fused.gguf" "$tmp/fused2.gguf" \
  && ok || bad "fusing the PEFT and the GGUF LoRA form must give the same file"
$Q fuse -m $M --adapter "$tmp/ad" -o "$tmp/fused-q8.gguf" --type q8_0 2>/dev/null && [ -n "$(gen -m "$tmp/fused-q8.gguf")" ] \
  && ok || bad "fuse --type q8_0"

# quantize: every type loads and generates; the file names its type
for t in q8_0 q4_0 q4_1 q4_k q5_k q6_k iq4_nl f16 bf16; do
  $Q quantize $M "$tmp/$t.gguf" --type $t 2>"$tmp/e" || bad "quantize $t: $(cat "$tmp/e")"
  out=$(gen -m "$tmp/$t.gguf")
  case "$out" in *[a-z]*) ok ;; *) bad "$t: no text" ;; esac
  case $t in *_k) continue ;; esac   # rows of 64 and 172 fit no 256-block: all K-quant tensors fall back
  $Q info "$tmp/$t.gguf" 2>/dev/null | grep -q "tensor types:.*$t" && ok || bad "$t: info does not list $t tensors"
done
[ "$(gen -m "$tmp/f16.gguf")" = "$base" ] && ok || bad "f16 text differs from the f32 original"

# convert an HF folder (vocabulary from the GGUF) and compare the text
if [ -d "$H" ]; then
  $Q convert "$H" --tokenizer $M --type f32 -o "$tmp/conv.gguf" 2>"$tmp/e" && ok || bad "convert: $(cat "$tmp/e")"
  [ "$(gen -m "$tmp/conv.gguf")" = "$base" ] && ok || bad "converted model's text differs"
  $Q convert -m "$H" --tokenizer $M --adapter "$tmp/ad" -o "$tmp/ad-hf.gguf" 2>/dev/null && ok || bad "adapter on HF base -> GGUF LoRA"
  [ "$(gen -m $M --adapter "$tmp/ad-hf.gguf")" = "$tuned" ] && ok || bad "GGUF LoRA written from the HF base differs"
else
  echo "skip convert: no $H"
fi

# the files against PEFT's and llama.cpp's conventions, by an independent reader
if command -v python3 >/dev/null 2>&1 && [ -f "$H/config.json" ]; then
  python3 tests/ref/check_adapters.py --config "$H/config.json" --peft "$tmp/ad" --gguf "$tmp/ad.gguf" > "$tmp/chk" 2>&1 \
    && ok || bad "check_adapters.py: $(cat "$tmp/chk")"
else
  echo "skip check_adapters.py: no python3"
fi

# errors: one line naming the file or flag; nothing written
expect_err() {  # code, word, command...
  code=$1; word=$2; shift 2
  "$@" >/dev/null 2>"$tmp/e"; rc=$?
  if [ $rc -eq "$code" ] && grep -q -- "$word" "$tmp/e" && [ "$(grep -c '^error' "$tmp/e")" -eq 1 ]; then ok
  else bad "'$*' -> rc $rc, stderr: $(cat "$tmp/e")"; fi
}
head -c 300 "$tmp/ad.gguf" > "$tmp/trunc.gguf"
expect_err 1 "trunc.gguf" $Q fuse -m $M --adapter "$tmp/trunc.gguf" -o "$tmp/x.gguf"
expect_err 1 "trunc.gguf" $Q generate -m $M --adapter "$tmp/trunc.gguf" -p hi
printf '{"peft_type": "LORA", "r": 4, "lora_alpha": 8}' > "$tmp/ad/adapter_config.json"
expect_err 1 "expected" $Q fuse -m $M --adapter "$tmp/ad" -o "$tmp/x.gguf"
expect_err 2 "q3_xx" $Q quantize $M "$tmp/x.gguf" --type q3_xx
expect_err 1 "nope" $Q quantize "$tmp/nope.gguf" "$tmp/x.gguf" --type q8_0
expect_err 1 "no/such" $Q quantize $M "$tmp/no/such/dir/x.gguf" --type q8_0
expect_err 2 "-o" $Q fuse -m $M --adapter "$tmp/ad.gguf"
expect_err 1 "GGUF" $Q convert $M -o "$tmp/x.gguf"
[ ! -e "$tmp/x.gguf" ] && ok || bad "a failed command left $tmp/x.gguf"
ls "$tmp" | grep -q '\.tmp' && bad "temporary files left behind" || ok

echo "cli-interchange: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
