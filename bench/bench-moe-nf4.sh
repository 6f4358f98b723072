#!/bin/sh
# bench-moe-nf4.sh: the figures of BENCHMARKS.md's "Mixture of experts and
# NF4" section, each timed run under `flock /tmp/qtune-bench.lock` (the host
# is shared) and alternated with its peer run:
#   1. memory read bandwidth (bench-kernels)
#   2. Mixtral-8x7B shape, Q3_K (make-model --preset mixtral-8x7b): decode
#      (tg) and one QLoRA step (bench-train, LoRA on q,k,v,o,w1,w2,w3)
#   3. TinyLlama shape: NF4 (--quantize nf4 of the F16 file) next to Q4_0
#      (--quantize q4_0 of the same file), decode and a training step
#
#   bench/bench-moe-nf4.sh MODELS_DIR     (after `make bench`; from the repository root)
# MODELS_DIR holds (or gets) mixtral-8x7b-q3_k.gguf (20 GB) and tinyllama-f16.gguf.
# Environment: REPS (alternated repetitions, default 3), T_MX (tokens of the
# Mixtral step, default 128), T_TL (TinyLlama step, default 256).
set -eu
DIR=${1:?usage: bench/bench-moe-nf4.sh MODELS_DIR}
Q=${QTUNE:-build/qtune}
REPS=${REPS:-3}
T_MX=${T_MX:-128}
T_TL=${T_TL:-256}
LOCK=/tmp/qtune-bench.lock
MX=$DIR/mixtral-8x7b-q3_k.gguf
TL=$DIR/tinyllama-f16.gguf
[ -f "$MX" ] || build/bench/make-model --preset mixtral-8x7b --type q3_k -o "$MX" -t 2
[ -f "$TL" ] || build/bench/make-model --preset tinyllama-1.1b --type f16 -o "$TL" -t 2
run() { echo "# $(date +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg): $*"; flock "$LOCK" "$@"; }

lscpu | grep -E "Model name|^CPU\(s\)"
run build/bench/bench-kernels 2 2>&1 | grep -i "bandwidth\|GB/s" | tail -3
$Q info "$MX" | grep -E "parameters|weights|experts"

for i in $(seq "$REPS"); do
  run $Q bench -m "$MX" -p 0 -n 16 -r 1 -t 2 | grep tg
  run $Q bench -m "$TL" --quantize nf4 -p 0 -n 64 -r 1 -t 2 | grep tg
  run $Q bench -m "$TL" --quantize q4_0 -p 0 -n 64 -r 1 -t 2 | grep tg
  run $Q bench -m "$TL" --quantize nf4 -p 256 -n 0 -r 1 -t 2 | grep pp
  run $Q bench -m "$TL" --quantize q4_0 -p 256 -n 0 -r 1 -t 2 | grep pp
done
for i in $(seq "$REPS"); do
  run build/bench/bench-train "$TL" "$T_TL" 2 2 16 q,k,v,o,gate 0 auto 1 nf4
  run build/bench/bench-train "$TL" "$T_TL" 2 2 16 q,k,v,o,gate 0 auto 1 q4_0
done
run build/bench/bench-train "$MX" "$T_MX" 2 2 16 q,k,v,o,w1,w2,w3 1
