#!/bin/sh
# One binary on every x86-64 CPU: qtune under qemu-user emulating older CPUs
# picks the table the emulated CPU runs and generates text, without SIGILL
# (exit 132): Nehalem (SSE4.2 only: ref), SandyBridge (AVX without AVX2:
# ref), Haswell (AVX2: avx2). Greedy text equals the native run's on the
# ref table. qemu's TCG has no AVX-512: those tables are tested natively and
# under SIMDe (make simde-test). Skipped, saying why, off x86-64 or without
# qemu-x86_64 (Debian: qemu-user).
Q=${QTUNE:-build/qtune}
M=models/stories260K.gguf
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
if [ "$(uname -m)" != x86_64 ] || ! command -v qemu-x86_64 >/dev/null; then
  echo "skipped: needs x86-64 and qemu-x86_64 (Debian package qemu-user)"
  echo "cli-cpu: 0 passed, 0 failed"; exit 0
fi
# ASan's shadow memory does not run under qemu-user (gcc links libasan.so,
# clang links the runtime in: look for either)
if ldd "$Q" 2>/dev/null | grep -q libasan || grep -q __asan_init "$Q" 2>/dev/null; then
  echo "skipped: $Q is built with AddressSanitizer (the plain build runs this test)"
  echo "cli-cpu: 0 passed, 0 failed"; exit 0
fi
want=$(QT_ISA=ref $Q generate -m $M -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
[ -n "$want" ] && ok || bad "native ref run gave no text"
for cpu_isa in Nehalem:ref SandyBridge:ref Haswell:avx2; do
  cpu=${cpu_isa%%:*}; isa=${cpu_isa#*:}
  v=$(timeout 120 qemu-x86_64 -cpu "$cpu" $Q --version 2>"$tmp/err"); rc=$?
  [ $rc -eq 0 ] && echo "$v" | grep -q "kernels: $isa\$" && ok || bad "$cpu: --version exit $rc, want kernels: $isa: $v"
  out=$(timeout 120 qemu-x86_64 -cpu "$cpu" $Q generate -m $M -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>"$tmp/err"); rc=$?
  [ $rc -eq 0 ] && [ "$out" = "$want" ] && ok || { bad "$cpu: exit $rc (132 = SIGILL), text '$out', want '$want'"; tail -n 3 "$tmp/err"; }
done
echo "cli-cpu: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
