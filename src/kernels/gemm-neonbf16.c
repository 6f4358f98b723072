// gemm-neonbf16.c: the neon table's bf16 ops where HWCAP2 says BF16 (Apple M2
// and later, Graviton 3, Neoverse V1/N2): the blocked gemm of gemm-neon.h on
// bf16 pairs with an 8 x 12 BFDOT-by-lane micro-kernel; each BFDOT adds two
// exact products per lane to an fp32 accumulator (the numerics of the
// AVX-512 vdpbf16ps gemm and of PyTorch autocast's bf16 matmul up to the
// summation order). Built with +bf16; cpu.c installs it only after the check.
// Follows the Arm ARM's BFDOT (by element) and gemm-avx512bf16.c's layout.
#define GN_PAIRS 1
#include "kernels/gemm-neon.h"

static void gn_kernel(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c) {
    float32x4_t c[GN_MR][3];
    for (int i = 0; i < GN_MR; i++)
        for (int j = 0; j < 3; j++) c[i][j] = load_c ? vld1q_f32(C + i * ldc + 4 * j) : vdupq_n_f32(0.0f);
    for (int k = 0; k < ku; k++, Ap += GN_MR, Bp += GN_NR) {
        bfloat16x8_t b0 = vreinterpretq_bf16_u32(vld1q_u32(Bp)), b1 = vreinterpretq_bf16_u32(vld1q_u32(Bp + 4));
        bfloat16x8_t b2 = vreinterpretq_bf16_u32(vld1q_u32(Bp + 8));
        bfloat16x8_t a0 = vreinterpretq_bf16_u32(vld1q_u32(Ap)), a1 = vreinterpretq_bf16_u32(vld1q_u32(Ap + 4));
#define GN_ROW(i, a, l)                                   \
        c[i][0] = vbfdotq_laneq_f32(c[i][0], b0, a, l);   \
        c[i][1] = vbfdotq_laneq_f32(c[i][1], b1, a, l);   \
        c[i][2] = vbfdotq_laneq_f32(c[i][2], b2, a, l);
        GN_ROW(0, a0, 0) GN_ROW(1, a0, 1) GN_ROW(2, a0, 2) GN_ROW(3, a0, 3)
        GN_ROW(4, a1, 0) GN_ROW(5, a1, 1) GN_ROW(6, a1, 2) GN_ROW(7, a1, 3)
#undef GN_ROW
    }
    for (int i = 0; i < GN_MR; i++)
        for (int j = 0; j < 3; j++) vst1q_f32(C + i * ldc + 4 * j, c[i][j]);
}

const qt_gemm_ops *qt_gemm_ops_bf16_neon(void) { return &gn_ops; }
