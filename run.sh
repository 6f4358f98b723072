#!/bin/sh
# One command to fine-tune: detects the CPU (AVX-512 / AVX2 / NEON), cores and
# memory, builds qtune if needed (scripts/setup.sh), then runs `qtune train`
# with a batch size and gradient checkpointing chosen from qtune's own memory
# estimate (it prints the estimate and refuses runs that will not fit; we try
# the larger settings first and step down), and says where the adapter, log
# and report went.
#
#   ./run.sh                                  # the bundled stories260K model on data/demo
#   MODEL=path/model.gguf DATA=my-data ITERS=600 ./run.sh --mask-prompt
#
# Environment: MODEL, DATA, ITERS, BATCH_SIZE (fixed: no search), OUT, LR,
# TARGETS, RANK, THREADS, MAX_SEQ_LEN, QUANTIZE (q4_0, ...), EVAL_EVERY.
# Flags after ./run.sh go to `qtune train` as they are and override all of it.
set -e
cd "$(dirname "$0")"

MODEL=${MODEL:-models/stories260K.gguf}
DATA=${DATA:-data/demo}
ITERS=${ITERS:-60}
OUT=${OUT:-runs/run-$(date +%Y%m%d-%H%M%S)}
EVAL_EVERY=${EVAL_EVERY:-20}
if [ "$MODEL" = models/stories260K.gguf ]; then   # the tiny demo model learns fast
  LR=${LR:-2e-3}; TARGETS=${TARGETS:-all}
fi

# ---- the machine ----
arch=$(uname -m)
isa=scalar
case "$arch" in
  x86_64|amd64)
    flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
    case "$flags" in *avx512f*) isa=avx512 ;; *avx2*) isa=avx2 ;; esac ;;
  aarch64|arm64) isa=neon ;;
esac
cores=$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null || true)
[ -n "$mem_kb" ] || mem_kb=$(( $(sysctl -n hw.memsize 2>/dev/null || echo 0) / 1024 ))
THREADS=${THREADS:-$cores}
echo "machine: $arch, kernels $isa, $cores cores, $((mem_kb / 1048576)) GiB memory"

# ---- build ----
if command -v dpkg-query > /dev/null 2>&1; then sh scripts/setup.sh; else make -j"$cores" > /dev/null; fi
Q=${QTUNE:-build/qtune}

# ---- options ----
user_batch=""
for a in "$@"; do case "$a" in -b|--batch-size|--batch-size=*) user_batch=1 ;; esac; done
set -- -m "$MODEL" --data "$DATA" --iters "$ITERS" -o "$OUT" -t "$THREADS" --steps-per-eval "$EVAL_EVERY" \
  ${LR:+--learning-rate "$LR"} ${TARGETS:+--targets "$TARGETS"} ${RANK:+--lora-rank "$RANK"} \
  ${MAX_SEQ_LEN:+--max-seq-len "$MAX_SEQ_LEN"} ${QUANTIZE:+--quantize "$QUANTIZE"} "$@"
if [ -f "$DATA/test.jsonl" ]; then set -- "$@" --test; fi

# Candidates, largest first: qtune refuses (before training) what will not
# fit, printing "this run needs"; anything else is a real result or error.
if [ -n "$BATCH_SIZE" ] || [ -n "$user_batch" ]; then
  candidates="${BATCH_SIZE:-given}:"
else
  candidates="8: 4: 8:--grad-checkpoint 4:--grad-checkpoint 2:--grad-checkpoint 1:--grad-checkpoint"
fi
log=$(mktemp); st=$(mktemp); trap 'rm -f "$log" "$st"' EXIT
for c in $candidates; do
  bs=${c%%:*}; ck=${c#*:}
  bflag=""; [ "$bs" = given ] || bflag="--batch-size $bs"
  echo "== qtune train $* $bflag $ck"
  { r=0; "$Q" train "$@" $bflag $ck 2>&1 || r=$?; echo $r > "$st"; } | tee "$log"
  rc=$(cat "$st")
  if [ "$rc" -ne 0 ] && grep -q "this run needs" "$log"; then
    echo "-- batch size $bs${ck:+ with $ck} does not fit in memory; trying a smaller setting"
    continue
  fi
  break
done
[ "$rc" -eq 0 ] || { echo "training failed (exit $rc)"; exit "$rc"; }
echo
echo "adapter: $OUT/adapter_model.safetensors + adapter_config.json (Hugging Face PEFT layout)"
echo "log:     $OUT/train.log, $OUT/metrics.jsonl"
[ -f "$OUT/report.html" ] && echo "report:  $OUT/report.html (open it in a browser)"
echo "try it:  $Q generate -m $MODEL --adapter $OUT -p \"...\""
