// matmul-internal.h: declarations shared between files of src/kernels only
// (not a contract for the layers above; they use kernels.h).
#ifndef QT_MATMUL_INTERNAL_H
#define QT_MATMUL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "kernels/kernels.h"
#include "quant/types.h"

// qt_pool_split on int ranges (the matmul drivers' thread shares).
static inline void mm_split(int n, int align, int ith, int nth, int *r0, int *r1) {
    int64_t a, b;
    qt_pool_split(n, align, ith, nth, &a, &b);
    *r0 = (int)a, *r1 = (int)b;
}

// The AVX2 table's f32 ops (qt_gemm_ops in kernels.h), gemm-f32-avx2.c: one
// packed 6 x 16 gemm that converts or dequantizes B into its panels.
void qt_gemm_acc_f32_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float *C, int64_t ldc);
void qt_gemm_acc_w_f32_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                            const qt_wmat *W, int64_t n0, float *C, int64_t ldc);
void qt_gemm_xwt_f32_avx2(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W,
                          float *y, int64_t ldy, int64_t n_rows);
size_t qt_gemm_pack_x_size_f32_avx2(int64_t T, int64_t n);
void qt_gemm_pack_x_f32_avx2(int64_t T, int64_t n, const float *x, int64_t ldx, float *xp, int ith, int nth);

// The AVX-512 float ops (gemm-avx512.c, gemm-avx512bf16.c).
const qt_gemm_ops *qt_gemm_ops_f32_avx512(void);
const qt_gemm_ops *qt_gemm_ops_bf16_avx512(void);
// The arm64 float ops (gemm-neon.c; gemm-neonbf16.c, built with +bf16).
const qt_gemm_ops *qt_gemm_ops_f32_neon(void);
const qt_gemm_ops *qt_gemm_ops_bf16_neon(void);

// AVX2 multi-row decode kernels (gemv-avx2.c): the avx2 table's gemv for
// Q4_0, Q8_0, Q4_K, Q6_K, F16 and BF16 weights (qt_gemv_fn in kernels.h).
void qt_gemv_q4_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q8_0_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemm_small_q4_0_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                             int n_rows, int n_cols);
void qt_gemm_small_q8_0_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                             int n_rows, int n_cols);
void qt_gemm_small_q6_K_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                             int n_rows, int n_cols);
void qt_gemv_q4_K_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q5_K_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q6_K_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_f16_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_bf16_avx2(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// AVX-512 VNNI multi-row decode kernels (gemv-avx512vnni.c): the
// avx512-vnni table's gemv for Q4_0, Q8_0 (x in Q8_0) and Q4_K (x in Q8_K).
void qt_gemv_q4_0_avx512vnni(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q8_0_avx512vnni(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemm_small_q4_0_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols);
void qt_gemm_small_q8_0_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols);
void qt_gemm_small_q4_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols);
void qt_gemm_small_q5_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols);
void qt_gemm_small_q6_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols);
void qt_gemv_q4_K_avx512vnni(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q5_K_avx512vnni(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);
void qt_gemv_q6_K_avx512vnni(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// A per-thread scratch buffer of at least n bytes, 64-byte aligned, kept
// between calls (so the hot loops do not map and fault in fresh pages every
// call) and freed when the thread exits. One buffer per slot: a caller and the
// kernel it calls use different slots. Contents are undefined; valid until the
// same thread asks for the same slot again.
// QT_SCRATCH_WBUF: the matmul's converted x when there is no pool to own it.
// QT_SCRATCH_GEMV: the decode kernels' rearranged activation row.
enum { QT_SCRATCH_MATMUL_T, QT_SCRATCH_GEMM, QT_SCRATCH_WBUF, QT_SCRATCH_GEMV, QT_SCRATCH_COUNT };
void *qt_kernel_scratch(int slot, size_t n);

#endif
