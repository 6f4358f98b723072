#!/bin/sh
# One command to fine-tune: detects the CPU (AVX-512 / AVX2 / NEON), cores and
# memory, builds qtune if needed (scripts/setup.sh), then runs `qtune train`
# with a batch size and gradient checkpointing chosen from qtune's own memory
# estimate (it prints the estimate and refuses runs that will not fit; we try
# the larger settings first and step down), and says where the adapter, log
# and report went. Paths are taken from where you call it; ./run.sh --help
# lists the settings.
set -e
self=$(readlink -f "$0" 2>/dev/null || printf '%s' "$0")   # through a symlink to the repository
repo=$(cd "$(dirname "$self")" && pwd)

usage() {
  cat <<'EOF'
usage: [VAR=value ...] ./run.sh [qtune train options]

Fine-tunes a LoRA adapter with `qtune train` on this machine. Settings come
from environment variables (the names of the one-command tutorial and
qtune's own); options after ./run.sh go to `qtune train` as they are and win.

  MODEL           base model: .gguf or Hugging Face folder (default: the bundled models/stories260K.gguf)
  DATA            folder with train.jsonl (valid.jsonl, test.jsonl) or one .jsonl (default: the bundled data/demo)
  OUTPUT_DIR      where the adapter goes (default: runs/run-DATE in this repository); also OUT
  MAX_STEPS       optimizer steps (default 60); also ITERS
  EPOCHS          passes over the data instead of MAX_STEPS
  BATCH_SIZE      sequences per step (default: the largest that fits in memory)
  LEARNING_RATE   peak learning rate (default: qtune's 1e-4; 2e-3 for the bundled tiny model); also LR
  LORA_R          adapter rank (default 8); also RANK
  LORA_ALPHA      adapter alpha (default 16)
  TARGETS         projections to adapt: q,k,v,o,gate,up,down or all (default q,v; all for the tiny model)
  MAX_SEQ_LENGTH  truncate records to this many tokens; also MAX_SEQ_LEN
  QUANTIZE        QLoRA: quantize the base at load (q4_0, q4_k, q8_0, iq4_nl)
  EVAL_EVERY      validation loss every N steps (default 20)
  THREADS         threads (default: all cores)
  QTUNE           the qtune binary (default: build/qtune in this repository, built when missing)

The run's log is written to OUTPUT_DIR/train.log and copied to
training_log_DATE.log where you called ./run.sh. Ctrl-C stops with a
checkpoint; run the same command with --resume to continue.

examples:
  ./run.sh
  MAX_STEPS=5 OUTPUT_DIR=./quick_test ./run.sh
  BATCH_SIZE=1 MODEL=~/models/mistral-7b-instruct.Q4_0.gguf DATA=./data ./run.sh --mask-prompt
EOF
}
for a in "$@"; do case "$a" in -h|--help) usage; exit 0 ;; esac; done

# a path the caller gave, as an absolute path (the caller's directory is the base)
abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$(pwd)" "${1#./}" ;; esac; }

# the tutorial's names first, then qtune's
ITERS=${MAX_STEPS:-${ITERS:-}}
OUT=${OUTPUT_DIR:-${OUT:-}}
LR=${LEARNING_RATE:-${LR:-}}
RANK=${LORA_R:-${RANK:-}}
MAX_SEQ_LEN=${MAX_SEQ_LENGTH:-${MAX_SEQ_LEN:-}}
if [ -n "$MODEL" ]; then MODEL=$(abspath "$MODEL"); else MODEL=$repo/models/stories260K.gguf; tiny=1; fi
if [ -n "$DATA" ]; then DATA=$(abspath "$DATA"); else DATA=$repo/data/demo; fi
if [ -n "$OUT" ]; then OUT=$(abspath "$OUT"); else OUT=$repo/runs/run-$(date +%Y%m%d-%H%M%S); fi
[ -n "$EPOCHS" ] || ITERS=${ITERS:-60}
EVAL_EVERY=${EVAL_EVERY:-20}
if [ -n "$tiny" ]; then   # the tiny demo model learns fast
  LR=${LR:-2e-3}; TARGETS=${TARGETS:-all}
fi
[ -e "$MODEL" ] || { echo "run.sh: MODEL=$MODEL: no such file or folder" >&2; exit 2; }
[ -e "$DATA" ] || { echo "run.sh: DATA=$DATA: no such file or folder" >&2; exit 2; }

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
if [ -z "$QTUNE" ]; then
  if command -v dpkg-query > /dev/null 2>&1; then sh "$repo/scripts/setup.sh"; else make -C "$repo" -j"$cores" > /dev/null; fi
fi
Q=${QTUNE:-$repo/build/qtune}

# ---- options ----
user_batch=""
for a in "$@"; do case "$a" in -b|--batch-size|--batch-size=*) user_batch=1 ;; esac; done
set -- -m "$MODEL" --data "$DATA" -o "$OUT" -t "$THREADS" --steps-per-eval "$EVAL_EVERY" \
  ${ITERS:+--iters "$ITERS"} ${EPOCHS:+--epochs "$EPOCHS"} \
  ${LR:+--learning-rate "$LR"} ${TARGETS:+--targets "$TARGETS"} ${RANK:+--lora-rank "$RANK"} \
  ${LORA_ALPHA:+--lora-alpha "$LORA_ALPHA"} ${MAX_SEQ_LEN:+--max-seq-len "$MAX_SEQ_LEN"} \
  ${QUANTIZE:+--quantize "$QUANTIZE"} "$@"
if [ -f "$DATA/test.jsonl" ]; then set -- "$@" --test; fi

# Candidates, largest first: qtune refuses (before training) what will not
# fit, printing "this run needs"; anything else is a real result or error.
if [ -n "$BATCH_SIZE" ] || [ -n "$user_batch" ]; then
  candidates="${BATCH_SIZE:-given}:"
else
  candidates="8: 4: 8:--grad-checkpoint 4:--grad-checkpoint 2:--grad-checkpoint 1:--grad-checkpoint"
fi
log=training_log_$(date +%Y%m%d_%H%M%S).log
: > "$log"
st=$(mktemp); att=$(mktemp); trap 'rm -f "$st" "$att"' EXIT
for c in $candidates; do
  bs=${c%%:*}; ck=${c#*:}
  bflag=""; [ "$bs" = given ] || bflag="--batch-size $bs"
  echo "== qtune train $* $bflag $ck" | tee -a "$log"
  { r=0; "$Q" train "$@" $bflag $ck 2>&1 || r=$?; echo $r > "$st"; } | tee "$att"
  cat "$att" >> "$log"
  rc=$(cat "$st")
  if [ "$rc" -ne 0 ] && grep -q "this run needs" "$att"; then
    echo "-- batch size $bs${ck:+ with $ck} does not fit in memory; trying a smaller setting"
    continue
  fi
  break
done
if [ "$rc" -eq 130 ]; then echo "stopped: continue with the same command and --resume (log: $log)"; exit 130; fi
[ "$rc" -eq 0 ] || { echo "training failed (exit $rc, log: $log)"; exit "$rc"; }
echo
if [ -f "$OUT/adapter_model.safetensors" ]; then
  echo "adapter: $OUT (adapter_model.safetensors + adapter_config.json, Hugging Face PEFT layout)"
else
  echo "adapter: $OUT"
fi
echo "log:     $OUT/train.log, $OUT/metrics.jsonl (and $log here)"
[ -f "$OUT/report.html" ] && echo "report:  $OUT/report.html (open it in a browser)"
echo "try it:  $Q generate -m $MODEL --adapter $OUT -p \"...\""
