#!/bin/sh
# The demo: sets up (packages, build), then fine-tunes the bundled stories260K
# model with LoRA on the bundled data (data/demo: short stories about Bolt the
# robot) and shows the model's text before and after.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup.sh
M=models/stories260K.gguf
OUT=${OUT:-runs/demo}
PROMPT="Once upon a time"
echo "== before fine-tuning: qtune generate -m $M -p \"$PROMPT\" --temp 0"
build/qtune generate -m "$M" -p "$PROMPT" -n 64 --temp 0 --show-prompt
echo
echo "== fine-tuning: LoRA rank 8 on all projections, 60 steps"
build/qtune train -m "$M" --data data/demo --iters 60 --batch-size 8 --learning-rate 2e-3 \
  --targets all --steps-per-eval 20 --val-batches -1 --test -o "$OUT"
echo
echo "== after fine-tuning: qtune generate -m $M --adapter $OUT -p \"$PROMPT\" --temp 0"
build/qtune generate -m "$M" --adapter "$OUT" -p "$PROMPT" -n 64 --temp 0 --show-prompt
