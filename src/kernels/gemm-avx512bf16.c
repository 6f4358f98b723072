// gemm-avx512bf16.c: the avx512-bf16 table's bf16 ops (qt_gemm_ops): the
// blocked gemm of gemm-avx512.h on bf16 pairs with a 14 x 32 vdpbf16ps
// micro-kernel: both operands rounded to bfloat16 (nearest even, by
// vcvtne2ps2bf16; Q4_0 / Q8_0 weights straight from their blocks) when packed,
// each instruction adds two exact products per lane to an fp32 accumulator
// (PyTorch autocast's bf16 matmul numerics, up to the summation order).
// Needs AVX-512 BF16.
// Follows oneDNN's brgemm bf16 layout (k pairs interleaved, "VNNI format").
#define G5_PAIRS 1
#include "kernels/gemm-avx512.h"

G5_INLINE void g5_tile(const int rows, int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc,
                       bool load_c, int mr) {
    __m512 c[G5_MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) {
        c[i][0] = load_c && i < mr ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
        c[i][1] = load_c && i < mr ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < ku; k++, Ap += G5_MR, Bp += G5_NR) {
        __m512bh b0 = qt_as_bh(_mm512_load_si512((const void *)Bp)), b1 = qt_as_bh(_mm512_load_si512((const void *)(Bp + 16)));
#pragma GCC unroll 14
        for (int i = 0; i < rows; i++) {
            __m512bh a = qt_as_bh(_mm512_set1_epi32((int)Ap[i]));
            c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
        }
    }
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++)
        if (i < mr) {
            _mm512_storeu_ps(C + i * ldc, c[i][0]);
            _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
        }
}

const qt_gemm_ops *qt_gemm_ops_bf16_avx512(void) { return &g5_ops; }
