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
// The SMMLA prefill gemm of the 32-element types and the k-quants
// (gemm-neoni8mm.c, built with +i8mm) into the traits, where the type pairs
// with Q8_0 / Q8_K as the reference does.
void qt_gemm_set_i8mm_neon(qt_kernel_traits *t);

// The decode kernels (gemv-avx2.c, gemv-avx512vnni.c) are compiled twice:
// as themselves, prefetching the next pass of rows into L2 (prefetcht1),
// and again as gemv-l1-avx2.c / gemv-l1-avx512vnni.c (QT_GEMV_L1),
// prefetching into L1 (prefetcht0), their functions named with _l1. Which
// pays depends on the L1D: on Zen 4 (32 KiB) prefetcht0 evicted the pass
// being read (7B Q4_0 decode 0.78x -> 1.57x llama.cpp with prefetcht1), on
// Zen 5 (48 KiB) prefetcht1 costs 6-15% (7B Q4_0 tg32 8.8-9.3 against
// 10.3-10.5 tok/s). cpu.c chooses by the L1D size (qt_gemv_prefetch_*).
#define QT_DECL_GEMV(f)                                                                       \
    void f(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);        \
    void f##_l1(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows)
#define QT_DECL_GEMM_SMALL(f)                                                                  \
    void f(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys, int n_rows, \
           int n_cols);                                                                        \
    void f##_l1(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys, int n_rows, \
                int n_cols)
#ifdef QT_GEMV_L1
#define GEMV_FN(f) f##_l1
#else
#define GEMV_FN(f) f
#endif

// AVX2 multi-row decode kernels (gemv-avx2.c): the avx2 table's gemv for
// Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, Q6_K, F16 and BF16
// weights (qt_gemv_fn in kernels.h), gemm_small for the same 32-element
// types and Q6_K.
QT_DECL_GEMV(qt_gemv_q4_0_avx2);
QT_DECL_GEMV(qt_gemv_q8_0_avx2);
QT_DECL_GEMV(qt_gemv_q4_1_avx2);
QT_DECL_GEMV(qt_gemv_q5_0_avx2);
QT_DECL_GEMV(qt_gemv_q5_1_avx2);
QT_DECL_GEMV(qt_gemv_iq4_nl_avx2);
QT_DECL_GEMV(qt_gemv_q4_K_avx2);
QT_DECL_GEMV(qt_gemv_q5_K_avx2);
QT_DECL_GEMV(qt_gemv_q6_K_avx2);
QT_DECL_GEMV(qt_gemv_f16_avx2);
QT_DECL_GEMV(qt_gemv_bf16_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q4_0_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q8_0_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q4_1_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q5_0_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q5_1_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_iq4_nl_avx2);
QT_DECL_GEMM_SMALL(qt_gemm_small_q6_K_avx2);

// AVX-512 VNNI multi-row decode kernels (gemv-avx512vnni.c): the
// avx512-vnni table's gemv for Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL (x in
// Q8_0), Q4_K, Q5_K, Q6_K (x in Q8_K); gemm_small for all of them.
QT_DECL_GEMV(qt_gemv_q4_0_avx512vnni);
QT_DECL_GEMV(qt_gemv_q8_0_avx512vnni);
QT_DECL_GEMV(qt_gemv_q4_1_avx512vnni);
QT_DECL_GEMV(qt_gemv_q5_0_avx512vnni);
QT_DECL_GEMV(qt_gemv_q5_1_avx512vnni);
QT_DECL_GEMV(qt_gemv_iq4_nl_avx512vnni);
QT_DECL_GEMV(qt_gemv_q4_K_avx512vnni);
QT_DECL_GEMV(qt_gemv_q5_K_avx512vnni);
QT_DECL_GEMV(qt_gemv_q6_K_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q4_0_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q8_0_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q4_1_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q5_0_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q5_1_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_iq4_nl_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q4_K_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q5_K_avx512vnni);
QT_DECL_GEMM_SMALL(qt_gemm_small_q6_K_avx512vnni);

// Point a table's gemv / gemm_small entries that are this file's kernels at
// their L1-prefetching twins (l1) or back at the L2 ones (!l1). Run only
// where the table's ISA is (as the fill functions).
void qt_gemv_prefetch_avx2(qt_kernel_traits *t, bool l1);
void qt_gemv_prefetch_avx512vnni(qt_kernel_traits *t, bool l1);

// A kernel and its twin (l2: prefetcht1, l1: prefetcht0); the swap itself.
typedef struct {
    qt_gemv_fn l2, l1;
} qt_gemv_twin;
typedef struct {
    qt_gemm_fn l2, l1;
} qt_gemm_twin;
static inline void qt_gemv_twins_apply(qt_kernel_traits *t, bool l1, const qt_gemv_twin *gv, size_t n_gv,
                                       const qt_gemm_twin *gs, size_t n_gs) {
    for (int ty = 0; ty < QT_TYPE_COUNT; ty++) {
        for (size_t i = 0; i < n_gv; i++)
            if (t[ty].gemv == (l1 ? gv[i].l2 : gv[i].l1)) t[ty].gemv = l1 ? gv[i].l1 : gv[i].l2;
        for (size_t i = 0; i < n_gs; i++)
            if (t[ty].gemm_small == (l1 ? gs[i].l2 : gs[i].l1)) t[ty].gemm_small = l1 ? gs[i].l1 : gs[i].l2;
    }
}

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
