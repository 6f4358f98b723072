// kernels-avx512bf16.c: the avx512-bf16 table (AVX-512 BF16: Zen 4 and
// later, Cooper Lake, Sapphire Rapids), on top of the avx512-vnni table: the
// bf16 ops (gemm-avx512bf16.c) that QT_PREC_BF16 and BF16 weights at T >= 16
// run on, and the BF16 vec_dot on vdpbf16ps.
// Follows ggml-cpu's ggml_vec_dot_bf16 (the AVX512BF16 path).
#include "kernels/simd-x86.h"

#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/vecmath-internal.h"

static void vec_dot_bf16_avx512(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i a = _mm512_loadu_si512((const void *)(x + i)), b = _mm512_loadu_si512((const void *)(y + i));
        acc = _mm512_dpbf16_ps(acc, qt_as_bh(a), qt_as_bh(b));
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < n; i++) sum += qt_bf16_to_fp32(x[i]) * qt_bf16_to_fp32(y[i]);
    *s = sum;
}

// Called once, by cpu.c, on a copy of the avx512-vnni table.
void qt_kernels_fill_avx512bf16(qt_kernel_table *kt) {
    kt->type[QT_TYPE_BF16].vec_dot = vec_dot_bf16_avx512;
    kt->bf16 = *qt_gemm_ops_bf16_avx512();
    kt->bf16_hw = true;
}
