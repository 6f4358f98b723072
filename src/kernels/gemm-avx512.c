// gemm-avx512.c: the avx512 tables' f32 ops (qt_gemm_ops): the blocked gemm
// of gemm-avx512.h with an fp32 14 x 32 micro-kernel (28 zmm accumulators,
// one FMA per k and accumulator). Needs AVX-512 F/BW/VL/DQ only.
// Follows BLIS's skx sgemm micro-kernel.
#define G5_PAIRS 0
#include "kernels/gemm-avx512.h"

G5_INLINE void g5_tile(const int rows, int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc,
                       bool load_c, int mr) {
    const float *A = (const float *)Ap, *B = (const float *)Bp;
    __m512 c[G5_MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) {
        c[i][0] = load_c && i < mr ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
        c[i][1] = load_c && i < mr ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < ku; k++, A += G5_MR, B += G5_NR) {
        __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
#pragma GCC unroll 14
        for (int i = 0; i < rows; i++) {
            __m512 a = _mm512_set1_ps(A[i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++)
        if (i < mr) {
            _mm512_storeu_ps(C + i * ldc, c[i][0]);
            _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
        }
}

const qt_gemm_ops *qt_gemm_ops_f32_avx512(void) { return &g5_ops; }
