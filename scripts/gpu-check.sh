#!/bin/bash
# gpu-check.sh: everything the CUDA backend must show, on a machine with an
# NVIDIA GPU, in one run (under 8 minutes on one H200 with 16 cores):
#   1. builds qtune with CUDA=1 (MPI=0) for this GPU's architecture, using
#      .gpu-deps/*.deb (scripts/gpu-prepare.sh) when the machine lacks the
#      cJSON / utf8proc / libmicrohttpd headers;
#   2. the GPU tests: tests/test-cuda.c (every op against the CPU backend,
#      stories260K greedy text, logits of random TinyLlama-width models in
#      q4_0 q8_0 q4_k q6_k f16, LoRA gradients, a 20-step loss curve);
#   3. the benchmark: a QLoRA step (Q4_0 base, r=16 on q,k,v,o,gate, batch 8
#      x T=512) for TinyLlama-1.1B and Llama-2-7B shapes next to Hugging Face
#      PEFT (bench/bench_peft_gpu.py) on the same GPU; decode of the 7B Q4_0
#      model against the bandwidth bound measured in the same run;
#   4. a summary (date, GPU, driver, figures) for BENCHMARKS.md.
# Usage, from anywhere:  bash scripts/gpu-check.sh
# Environment: WORK (models and logs; default /tmp/qtune-gpu-check), OUT (if
# set, summary.md and the logs in gpu-check-logs.tgz are copied there), JOBS (make -j; default nproc),
# CUDA_ARCHS (default: the GPU's), TEST_TYPES (weight types of the test
# models; default "q4_0 q8_0 q4_k q6_k f16"), SKIP_BENCH=1 (tests only),
# SKIP_7B=1.
set -u
cd "$(dirname "$0")/.."
T_START=$(date +%s)
WORK=${WORK:-/tmp/qtune-gpu-check}
B=build-gpu
JOBS=${JOBS:-$(nproc)}
mkdir -p "$WORK"
SUM="$WORK/summary.md"
: > "$SUM"
status=0
note() { echo "$*" | tee -a "$SUM"; }
elapsed() { echo "$(( $(date +%s) - T_START )) s"; }
step() { echo; echo "=== $* ($(elapsed))"; }
# the logs into $OUT (when set) as two files: summary.md and gpu-check-logs.tgz
save_logs() {
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    cp "$SUM" "$OUT"/ 2>/dev/null
    (cd "$WORK" && tar czf "$OUT/gpu-check-logs.tgz" ./*.log summary.md worst.txt 2>/dev/null)
  fi
  true
}

step "machine"
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1)
if [ -z "$GPU" ]; then
  echo "no NVIDIA GPU here (nvidia-smi found none): nothing to check"
  exit 1
fi
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
note "## gpu-check $(date -u '+%Y-%m-%d %H:%M UTC')"
note ""
note "- GPU, driver, memory, compute capability: $GPU"
note "- CUDA: $("$NVCC" --version 2>/dev/null | tail -1); host: $(nproc) cores, $(uname -r)"
note "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
CC_CAP=$(echo "$GPU" | awk -F', ' '{print $4}' | tr -d '.')
CUDA_ARCHS=${CUDA_ARCHS:-${CC_CAP:-90}}

step "build (CUDA=1 MPI=0 CUDA_ARCHS=$CUDA_ARCHS, -j$JOBS)"
EXTRA=()
if ! printf '#include <cjson/cJSON.h>\n#include <utf8proc.h>\n#include <microhttpd.h>\n' | cc -E - >/dev/null 2>&1; then
  if ls .gpu-deps/*.deb >/dev/null 2>&1; then
    D=$PWD/.gpu-deps/root
    mkdir -p "$D"
    for f in .gpu-deps/*.deb; do dpkg -x "$f" "$D"; done
    L=$D/usr/lib/x86_64-linux-gnu
    EXTRA=(EXTRA_CFLAGS="-I$D/usr/include" LDFLAGS="-L$L")
    export LD_LIBRARY_PATH="$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "headers from .gpu-deps (unpacked into $D)"
    ldconfig -p 2>/dev/null | grep -q 'libgnutls.so.30' || echo "warning: no libgnutls.so.30 here: libmicrohttpd may not load"
  else
    echo "cJSON / utf8proc / libmicrohttpd headers are missing and .gpu-deps/ holds no .deb files:"
    echo "run scripts/gpu-prepare.sh where apt works and carry .gpu-deps along"
    exit 1
  fi
fi
t0=$(date +%s)
if ! make -j"$JOBS" BUILD=$B CUDA=1 MPI=0 CUDA_ARCHS="$CUDA_ARCHS" NVCC="$NVCC" "${EXTRA[@]}" \
     $B/qtune $B/tests/test-cuda $B/bench/bench-train $B/bench/make-model > "$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"
  note "- build: FAILED (see build.log)"
  save_logs
  exit 1
fi
note "- build: $(( $(date +%s) - t0 )) s"
$B/qtune --version | tail -1
$B/qtune info --devices

step "models (random weights, real shapes)"
MM="$B/bench/make-model -t $JOBS"
TYPES=${TEST_TYPES-q4_0 q8_0 q4_k q6_k f16}
TEST_MODELS=""
for t in $TYPES; do
  f="$WORK/tl2-$t.gguf"
  [ -s "$f" ] || $MM --preset tinyllama-1.1b --n-layer 2 --type "$t" -o "$f" > /dev/null 2>&1 || echo "make-model $t failed"
  TEST_MODELS="$TEST_MODELS${TEST_MODELS:+:}$f"
done

step "GPU tests (tests/test-cuda.c)"
QT_CUDA_TEST_REQUIRE=1 QT_CUDA_TEST_MODELS="$TEST_MODELS" timeout 300 $B/tests/test-cuda > "$WORK/test-cuda.log" 2>&1
rc=$?
grep -Ev ' ok$' "$WORK/test-cuda.log"
[ $rc -eq 0 ] || status=1
note "- GPU tests: $(tail -1 "$WORK/test-cuda.log") (exit $rc)"
grep -E 'FAIL' "$WORK/test-cuda.log" | head -20 | sed 's/^/    /' | tee -a "$SUM"
# the largest error per op and mode, for the record
awk '/ err / { key = $1 " " $(NF-5); v = $(NF-3); if (!(key in m) || v + 0 > m[key] + 0) m[key] = v }
     END { for (k in m) print k, m[k] }' "$WORK/test-cuda.log" | sort > "$WORK/worst.txt"
note "- largest relative error per op and mode: $(tr '\n' ';' < "$WORK/worst.txt")"
save_logs
if [ "${SKIP_BENCH:-0}" = 1 ]; then echo; cat "$SUM"; exit $status; fi

step "benchmark models"
$B/tests/test-cuda --bandwidth | tee "$WORK/bandwidth.log"
BW=$(sed -n 's/^copy bandwidth: \([0-9.]*\) GB\/s.*/\1/p' "$WORK/bandwidth.log")
PRESETS="tinyllama-1.1b"
[ "${SKIP_7B:-0}" = 1 ] || PRESETS="$PRESETS llama2-7b"
for p in $PRESETS; do
  f="$WORK/$p-q4_0.gguf"
  [ -s "$f" ] || { t0=$(date +%s); $MM --preset "$p" --type q4_0 -o "$f" 2>&1 | tail -1; echo "  ($(( $(date +%s) - t0 )) s)"; }
done

step "QLoRA step: qtune (bench-train) and PEFT, batch 8 x T=512, r=16 q,k,v,o,gate"
note ""
note "| run | model | T x batch | tokens/s | s/step | peak GPU memory |"
note "|---|---|---|---|---|---|"
for p in $PRESETS; do
  f="$WORK/$p-q4_0.gguf"
  py=${p%-1.1b}
  for ck in 1 0; do
    line=$(QT_DEVICE=cuda timeout 240 $B/bench/bench-train "$f" 512 3 "$JOBS" 16 q,k,v,o,gate $ck bf16 8 2> "$WORK/bench-train-$p-$ck.log" | tail -1)
    echo "$line"
    tps=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) tokens\/s |.*/\1/p')
    sps=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) s\/step |.*/\1/p')
    mem=$(echo "$line" | sed -n 's/.*peak GPU \([0-9.]*\) GiB.*/\1/p')
    [ -n "$tps" ] || { tail -5 "$WORK/bench-train-$p-$ck.log"; status=1; }
    note "| qtune QLoRA q4_0, checkpointing $ck | $p | 512 x 8 | ${tps:-failed} | ${sps:-} | ${mem:-?} GiB |"
    eval "Q_${py//[-.]/_}_$ck=${tps:-0}; QM_${py//[-.]/_}_$ck=${mem:-0}"
  done
  line=$(PYTHONUNBUFFERED=1 timeout 300 python3 bench/bench_peft_gpu.py "$py" 512 8 5 2> "$WORK/peft-$p.log" | tail -1)
  echo "$line"
  tps=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) tokens\/s |.*/\1/p')
  sps=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) s\/step |.*/\1/p')
  mem=$(echo "$line" | sed -n 's/.*peak GPU \([0-9.]*\) GiB.*/\1/p')
  [ -n "$tps" ] || tail -5 "$WORK/peft-$p.log"
  note "| PEFT LoRA bf16, SDPA ($(echo "$line" | sed -n 's/^| \([^|]*\) |.*/\1/p')) | $p | 512 x 8 | ${tps:-failed} | ${sps:-} | ${mem:-?} GiB |"
  for ck in 1 0; do
    qt=$(eval echo "\${Q_${py//[-.]/_}_$ck}"); qm=$(eval echo "\${QM_${py//[-.]/_}_$ck}")
    if [ -n "$tps" ] && [ -n "$mem" ] && [ "$qt" != 0 ]; then
      note "|   ratio, checkpointing $ck | $p | | $(awk -v a="$qt" -v b="$tps" 'BEGIN{printf "%.2fx PEFT (goal >= 1.5x)", a/b}') | | $(awk -v a="$qm" -v b="$mem" 'BEGIN{printf "%.2f of PEFT (goal <= 0.33)", a/b}') |"
    fi
  done
  save_logs
done

step "decode and prefill (qtune bench --device cuda)"
for p in $PRESETS; do
  f="$WORK/$p-q4_0.gguf"
  timeout 120 $B/qtune bench -m "$f" -p 512 -n 128 -r 3 --device cuda 2>&1 | tee "$WORK/decode-$p.log" | grep '^|'
  size=$(grep '| tg128 |' "$WORK/decode-$p.log" | awk -F'|' '{print $3}' | sed 's/ GiB//; s/ //g')
  tg=$(grep '| tg128 |' "$WORK/decode-$p.log" | awk -F'|' '{print $8}' | awk '{print $1}')
  pp=$(grep '| pp512 |' "$WORK/decode-$p.log" | awk -F'|' '{print $8}' | awk '{print $1}')
  if [ -n "$tg" ] && [ -n "$BW" ] && [ -n "$size" ]; then
    # bound: every weight byte read once per token at the measured copy bandwidth
    note "- $p q4_0: prefill pp512 ${pp:-?} tokens/s; decode tg128 $tg tokens/s = $(awk -v t="$tg" -v s="$size" -v bw="$BW" 'BEGIN{b = bw * 1e9 / (s * 1073741824); printf "%.0f%% of the bandwidth bound %.0f tokens/s (%.2f GiB of weights at %.0f GB/s; goal >= 60%%)", 100 * t / b, b, s, bw}')"
  else
    note "- $p q4_0: decode benchmark failed (see decode-$p.log)"
    status=1
  fi
done
save_logs
note ""
note "- total time: $(elapsed)"
echo
echo "================ summary ================"
cat "$SUM"
save_logs
exit $status
