// gemm-neon.c: the neon table's f32 ops (qt_gemm_ops): the blocked gemm of
// gemm-neon.h with an fp32 8 x 12 micro-kernel (FMLA by lane: per k, two A
// loads, three B loads, 24 FMAs). Training's backward, LoRA and attention
// products on arm64 (Apple M-series, Graviton) run here instead of the
// scalar triple loop.
// Follows BLIS's armv8a sgemm micro-kernel.
#define GN_PAIRS 0
#include "kernels/gemm-neon.h"

static void gn_kernel(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c) {
    const float *A = (const float *)Ap, *B = (const float *)Bp;
    float32x4_t c[GN_MR][3];
    for (int i = 0; i < GN_MR; i++)
        for (int j = 0; j < 3; j++) c[i][j] = load_c ? vld1q_f32(C + i * ldc + 4 * j) : vdupq_n_f32(0.0f);
    for (int k = 0; k < ku; k++, A += GN_MR, B += GN_NR) {
        float32x4_t b0 = vld1q_f32(B), b1 = vld1q_f32(B + 4), b2 = vld1q_f32(B + 8);
        float32x4_t a0 = vld1q_f32(A), a1 = vld1q_f32(A + 4);
#define GN_ROW(i, a, l)                                 \
        c[i][0] = vfmaq_laneq_f32(c[i][0], b0, a, l);   \
        c[i][1] = vfmaq_laneq_f32(c[i][1], b1, a, l);   \
        c[i][2] = vfmaq_laneq_f32(c[i][2], b2, a, l);
        GN_ROW(0, a0, 0) GN_ROW(1, a0, 1) GN_ROW(2, a0, 2) GN_ROW(3, a0, 3)
        GN_ROW(4, a1, 0) GN_ROW(5, a1, 1) GN_ROW(6, a1, 2) GN_ROW(7, a1, 3)
#undef GN_ROW
    }
    for (int i = 0; i < GN_MR; i++)
        for (int j = 0; j < 3; j++) vst1q_f32(C + i * ldc + 4 * j, c[i][j]);
}

const qt_gemm_ops *qt_gemm_ops_f32_neon(void) { return &gn_ops; }
