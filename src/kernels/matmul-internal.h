// matmul-internal.h: declarations shared between files of src/kernels only
// (not a contract for the layers above; they use kernels.h).
#ifndef QT_MATMUL_INTERNAL_H
#define QT_MATMUL_INTERNAL_H

#include <stddef.h>

// C (M, N) += A (M, K) @ B (K, N), float32 row-major (gemm-f32-avx2.c): the
// AVX2 table's gemm_acc_f32. Packs A and B into the micro-kernel's panel
// layout in blocks that fit the caches; any M, N, K >= 0 and leading
// dimensions >= the extents.
void qt_gemm_acc_f32_avx2(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);

// AVX2 multi-row decode kernels (gemv-avx2.c): the avx2 table's gemv for
// Q4_0 and Q8_0 weights (qt_gemv_fn in kernels.h).
void qt_gemv_q4_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q8_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// A per-thread scratch buffer of at least n bytes, 64-byte aligned, kept
// between calls (so the hot loops do not map and fault in fresh pages every
// call) and freed when the thread exits. One buffer per slot: a caller and the
// kernel it calls use different slots. Contents are undefined; valid until the
// same thread asks for the same slot again.
enum { QT_SCRATCH_MATMUL_T, QT_SCRATCH_GEMM, QT_SCRATCH_COUNT };
void *qt_kernel_scratch(int slot, size_t n);

#endif
