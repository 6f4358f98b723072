// gemv-l1-avx512vnni.c: gemv-avx512vnni.c's kernels once more, prefetching the next
// pass of rows into L1 (prefetcht0) instead of L2, named with _l1; cpu.c
// uses them on CPUs with an L1D of 48 KiB or more (matmul-internal.h).
#define QT_GEMV_L1 1
#include "kernels/gemv-avx512vnni.c"
