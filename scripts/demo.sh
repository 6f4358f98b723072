#!/bin/sh
# The demo: sets up (packages, build) and runs the bundled stories260K model.
# Fine-tuning (LoRA/QLoRA) is being built; until it lands the demo shows
# generation, model info and speed on the bundled model.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup.sh
M=models/stories260K.gguf
echo "== qtune info $M"
build/qtune info "$M"
echo
echo "== greedy generation"
build/qtune generate -m "$M" -p "Once upon a time" -n 80 --temp 0
echo
echo "== sampled generation (temperature 0.8, seed 7)"
build/qtune generate -m "$M" -p "Lily and Ben went to the park" -n 80 --temp 0.8 --seed 7
