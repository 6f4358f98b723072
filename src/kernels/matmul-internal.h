// matmul-internal.h: declarations shared between files of src/kernels only
// (not a contract for the layers above; they use kernels.h).
#ifndef QT_MATMUL_INTERNAL_H
#define QT_MATMUL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "quant/types.h"

// qt_pool_split on int ranges (the matmul drivers' thread shares).
static inline void mm_split(int n, int align, int ith, int nth, int *r0, int *r1) {
    int64_t a, b;
    qt_pool_split(n, align, ith, nth, &a, &b);
    *r0 = (int)a, *r1 = (int)b;
}

// C (M, N) += A (M, K) @ B (K, N), float32 row-major (gemm-f32-avx2.c): the
// AVX2 table's gemm_acc_f32. Packs A and B into the micro-kernel's panel
// layout in blocks that fit the caches; any M, N, K >= 0 and leading
// dimensions >= the extents.
void qt_gemm_acc_f32_avx2(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);

// C (M, N) += A (M, K) @ W (K, N), W's rows w_stride bytes apart in a type
// with blocks of blck elements (blck_bytes each), dequantized by to_float a row
// segment at a time straight into the packed panels (qt_matmul_t's path on
// AVX2). N must be a multiple of blck; w points at column 0 of this B.
void qt_gemm_acc_wq_avx2(int M, int N, int K, const float *A, int lda, const void *w, size_t w_stride,
                         qt_to_float_fn to_float, int blck, size_t blck_bytes, float *C, int ldc);

// The AVX2 table's gemm_pack_x_size / gemm_pack_x (kernels.h).
size_t qt_gemm_pack_x_size_avx2(int T, int n);
void qt_gemm_pack_x_avx2(int T, int n, const float *x, size_t ldx, float *xp, int ith, int nth);

// The AVX2 table's gemm_wt for F32, F16 and BF16 weights (qt_gemm_wt_fn in
// kernels.h), on the same blocked gemm: W^T's blocks are converted to float
// straight into the packed panels.
void qt_gemm_wt_f32_avx2(int T, int n, const float *x, size_t ldx, const float *xp, const void *w, size_t w_stride,
                         float *y, size_t ldy, int n_rows);
void qt_gemm_wt_f16_avx2(int T, int n, const float *x, size_t ldx, const float *xp, const void *w, size_t w_stride,
                         float *y, size_t ldy, int n_rows);
void qt_gemm_wt_bf16_avx2(int T, int n, const float *x, size_t ldx, const float *xp, const void *w, size_t w_stride,
                          float *y, size_t ldy, int n_rows);

// AVX2 multi-row decode kernels (gemv-avx2.c): the avx2 table's gemv for
// Q4_0, Q8_0, Q4_K, Q6_K, F16 and BF16 weights (qt_gemv_fn in kernels.h).
void qt_gemv_q4_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q8_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q4_K_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q6_K_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_f16_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_bf16_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// A per-thread scratch buffer of at least n bytes, 64-byte aligned, kept
// between calls (so the hot loops do not map and fault in fresh pages every
// call) and freed when the thread exits. One buffer per slot: a caller and the
// kernel it calls use different slots. Contents are undefined; valid until the
// same thread asks for the same slot again.
// QT_SCRATCH_WBUF: the matmul's converted x when there is no pool to own it.
enum { QT_SCRATCH_MATMUL_T, QT_SCRATCH_GEMM, QT_SCRATCH_WBUF, QT_SCRATCH_COUNT };
void *qt_kernel_scratch(int slot, size_t n);

#endif
