#!/bin/sh
# The test command: sets up (packages, build), then runs the test suite four
# ways: native, under AddressSanitizer + UndefinedBehaviorSanitizer, the
# arm64 NEON kernels under qemu-user, and the x86 SIMD kernels compiled
# against SIMDe (so the AVX-512 code is checked on CPUs without it). Prints one closing "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
sh scripts/setup.sh --test || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
jobs=$(nproc)
total_pass=0; total_fail=0
run() {  # name, command...
  name=$1; shift
  echo "== $name"
  out=$("$@" 2>&1); rc=$?
  echo "$out" | grep -v '^make\[' | tail -n 60
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  [ -n "$p" ] || p=0; [ -n "$f" ] || f=0
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ $rc -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then p=1; fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}
run "tests" make -j"$jobs" test
run "tests under ASan+UBSan" make -j"$jobs" asan
run "arm64 NEON kernels under qemu (-cpu max: BF16, I8MM)" make -j"$jobs" neon-test
run "arm64 NEON kernels under qemu and UBSan (-cpu cortex-a76: dotprod, no BF16 or I8MM)" make -j"$jobs" neon-test \
  NEON_QEMU="qemu-aarch64 -cpu cortex-a76" NEON_BUILD=build-arm64-ubsan \
  NEON_SAN="-fsanitize=undefined -fno-sanitize-recover=undefined"
run "x86 SIMD kernels on SIMDe (AVX-512 without AVX-512)" make -j"$jobs" simde-test
# The CUDA backend: compiled (not run: no GPU here) when nvcc is installed.
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
CUDA_HOME_FOUND=""
if [ -n "$NVCC" ]; then
  # nvcc may be a wrapper script elsewhere on PATH: ask it where its toolkit is.
  top=$(cd /tmp && printf '' > qt-probe.cu && "$NVCC" --dryrun -c qt-probe.cu 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1; rm -f qt-probe.cu qt-probe.o)
  for d in "$top" "$(dirname "$(dirname "$NVCC")")" /usr/local/cuda; do
    [ -n "$d" ] && [ -e "$d/lib64/libcudart.so" ] && [ -e "$d/lib64/libcublas.so" ] && { CUDA_HOME_FOUND=$(cd "$d" && pwd); break; }
  done
fi
if [ -n "$CUDA_HOME_FOUND" ]; then
  run "CUDA build (compile and link only)" make -j"$jobs" BUILD=build-cuda CUDA=1 NVCC="$NVCC" \
    CUDA_HOME="$CUDA_HOME_FOUND" build-cuda/qtune build-cuda/tests/test-cuda
elif [ -n "$NVCC" ]; then
  echo "== CUDA build not checked: $NVCC found, but no CUDA toolkit with lib64/libcudart.so and libcublas.so beside it"
else
  echo "== CUDA build not checked (no nvcc)"
fi
echo "== GPU tests not run (they need an NVIDIA GPU: scripts/gpu-check.sh)"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
