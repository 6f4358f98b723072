#!/bin/sh
# Data-parallel training under mpirun (Open MPI) on localhost:
#  - equivalence: 2 ranks x batch 2 give the loss curve, validation losses
#    and final adapter of 1 process x batch 4 (|difference| <= 1e-5; the only
#    difference is the order in which the two halves' gradients are summed);
#  - killing one rank mid-run ends the other within seconds with a message
#    naming the intact checkpoint, and --resume from it completes with the
#    adapter of an uninterrupted 2-rank run;
#  - a rank that goes silent (SIGSTOP, like a dead link) ends the job after
#    --dist-timeout with a message instead of a hang;
#  - a 2-rank launch with mismatched data is refused on every rank.
# Skipped (and says so) when mpirun is absent or qtune was built without MPI.
Q=${QTUNE:-build/qtune}
M=models/stories260K.gguf
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
if ! command -v mpirun > /dev/null 2>&1 || ! $Q --version | grep -q '^mpi: yes'; then
  echo "skipped: mpirun or qtune's MPI support is missing"
  echo "0 passed, 0 failed"
  exit 0
fi
# CI runs as root; Open MPI refuses that unless told
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# under ASan: Open MPI's own allocations outlive MPI_Finalize (not ours)
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan-mpi.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export OMPI_MCA_mca_base_component_disable_dlclose=1   # keep MCA plugins loaded so their frames match the suppressions
MPIRUN="mpirun --oversubscribe -np 2"
TOL=1e-5
tmp=$(mktemp -d); [ -n "$KEEP" ] || trap 'rm -rf "$tmp"' EXIT; [ -n "$KEEP" ] && echo "keeping $tmp"
# --compute fp32: these equalities hold in fp32; bf16 products (the default
# where the CPU has AVX512_BF16) round differently once batches are cut differently.
common="-m $M --data data/demo --learning-rate 2e-3 --targets all --steps-per-eval 10 --val-batches 2 --steps-per-report 5 -t 1 --seed 3 --compute fp32"

# equivalence
$Q train $common -b 4 --iters 30 -o "$tmp/one" > "$tmp/one.out" 2>&1 || bad "1 process: $(tail -3 "$tmp/one.out")"
$MPIRUN $Q train $common -b 2 --iters 30 -o "$tmp/two" > "$tmp/two.out" 2>&1 || bad "2 ranks: $(tail -5 "$tmp/two.out")"
grep -q "data parallel: 2 ranks x 2 records per batch = 4" "$tmp/two.out" && ok || bad "no data-parallel banner"
[ "$(grep -c 'iter *5/30' "$tmp/two.out")" = 1 ] && ok || bad "only rank 0 may print"
python3 tests/st_compare.py "$tmp/one/adapter_model.safetensors" "$tmp/two/adapter_model.safetensors" $TOL && ok || bad "final adapters differ"
python3 tests/st_compare.py "$tmp/one/optimizer.safetensors" "$tmp/two/optimizer.safetensors" $TOL && ok || bad "optimizer states differ"
# per-step training loss and validation losses from metrics.jsonl
curve() { sed -n 's/.*"\(loss\|val_loss\)": \([-0-9.e]*\).*/\1 \2/p' "$1"; }
curve "$tmp/one/metrics.jsonl" > "$tmp/c1"; curve "$tmp/two/metrics.jsonl" > "$tmp/c2"
n1=$(wc -l < "$tmp/c1")
[ "$n1" -ge 33 ] && [ "$n1" = "$(wc -l < "$tmp/c2")" ] && ok || bad "loss curves of different length ($n1)"
paste "$tmp/c1" "$tmp/c2" | awk -v tol=$TOL '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > tol) { print "step " NR ": " $0; bad = 1 } }
  END { exit bad }' && ok || bad "loss curves differ"

# rank1_after_checkpoint DIR: waits for DIR's first checkpoint, prints rank 1's pid
rank1_after_checkpoint() {
  i=0
  while [ $i -lt 300 ] && ! grep -q '"step":[[:space:]]*[1-9]' "$1/training_state.json" 2>/dev/null; do
    sleep 0.1; i=$((i + 1))
  done
  for p in $(pgrep -f "qtune train.*$1"); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$' && echo $p
  done
}

# kill one rank after the first checkpoint, then resume
$MPIRUN $Q train $common -b 2 --iters 30 --save-every 5 -o "$tmp/k" > "$tmp/k.out" 2>&1 &
mp=$!
victim=$(rank1_after_checkpoint "$tmp/k")
if [ -n "$victim" ]; then
  start=$(date +%s)
  kill -9 "$victim"
  wait $mp; rc=$?
  took=$(($(date +%s) - start))
  [ $rc -ne 0 ] && ok || bad "mpirun exited 0 after a rank was killed"
  [ $took -le 10 ] && ok || bad "the job took $took s to end after a rank died"
  grep -q "rank 0 of 2: stopped by mpirun.*checkpoint (step [0-9]*) in $tmp/k is intact" "$tmp/k.out" && ok ||
    bad "rank 0 did not say where the checkpoint is: $(tail -5 "$tmp/k.out")"
  ls "$tmp/k" | grep -q tmp && bad "temporary files left behind" || ok
  $MPIRUN $Q train $common -b 2 --iters 30 --save-every 5 --resume -o "$tmp/k" > "$tmp/k2.out" 2>&1 && ok ||
    bad "resume failed: $(tail -5 "$tmp/k2.out")"
  grep -q "resumed from .* at step [1-9]" "$tmp/k2.out" && ok || bad "no resume message"
  python3 tests/st_compare.py "$tmp/two/adapter_model.safetensors" "$tmp/k/adapter_model.safetensors" 0 && ok ||
    bad "killed-and-resumed adapter differs from the uninterrupted 2-rank run"
else
  wait $mp
  bad "could not find rank 1 to kill (did the run finish before the first checkpoint?): $(tail -3 "$tmp/k.out")"
fi

# a rank that goes silent (stopped, as behind a dead network link): the
# others give up after --dist-timeout with a message, never hang
$MPIRUN $Q train $common -b 2 --iters 300 --save-every 5 --dist-timeout 3 -o "$tmp/s" > "$tmp/s.out" 2>&1 &
mp=$!
victim=$(rank1_after_checkpoint "$tmp/s")
if [ -n "$victim" ]; then
  start=$(date +%s)
  kill -STOP "$victim"
  wait $mp; rc=$?
  took=$(($(date +%s) - start))
  [ $rc -ne 0 ] && [ $took -le 15 ] && ok || bad "silent rank: exit $rc after $took s"
  grep -q "rank 0/2.*no answer from the other ranks for 3 s" "$tmp/s.out" && ok || bad "silent rank message: $(tail -5 "$tmp/s.out")"
else
  wait $mp
  bad "could not find rank 1 to stop: $(tail -3 "$tmp/s.out")"
fi

# mismatched data across ranks: every rank refuses, non-zero exit, no hang
mkdir -p "$tmp/d0" "$tmp/d1"
head -n 40 data/demo/train.jsonl > "$tmp/d0/train.jsonl"
head -n 39 data/demo/train.jsonl > "$tmp/d1/train.jsonl"
cat > "$tmp/per-rank.sh" <<EOS
#!/bin/sh
exec $Q train -m $M --data $tmp/d\$OMPI_COMM_WORLD_RANK -b 2 --iters 2 -t 1 -o $tmp/mm
EOS
chmod +x "$tmp/per-rank.sh"
timeout 60 $MPIRUN "$tmp/per-rank.sh" > "$tmp/mm.out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || bad "mismatched data: exit $rc"
grep -q "rank 1/2.*differ from rank 0's" "$tmp/mm.out" && ok || bad "mismatched data message: $(tail -5 "$tmp/mm.out")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
