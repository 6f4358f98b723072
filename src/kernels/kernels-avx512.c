// kernels-avx512.c: the avx512 table (AVX-512 F, BW, VL, DQ: Skylake-X and
// later, Zen 4 and later), on top of the avx2 table: the f32 ops on the
// 512-bit gemm (gemm-avx512.c), a 512-bit F32 vec_dot and dot_f32, the
// 16-wide element-wise math (vecmath-avx512.c). VNNI
// and BF16 kernels are the next tables' (kernels-avx512vnni.c,
// kernels-avx512bf16.c), so a CPU without them still gets these.
// Follows ggml-cpu's AVX-512 F32 dot (ggml_vec_dot_f32 with 512-bit FMA).
#include "kernels/simd-x86.h"

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/vecmath-internal.h"
#include "kernels/nf4-kernels.h"

static void vec_dot_f32_avx512(int n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static float dot_f32_avx512(int n, const float *x, const float *y) {
    float s;
    vec_dot_f32_avx512(n, &s, x, y);
    return s;
}

// Called once, by cpu.c, on a copy of the avx2 table.
void qt_kernels_fill_avx512(qt_kernel_table *kt) {
    kt->type[QT_TYPE_F32].vec_dot = vec_dot_f32_avx512;
    kt->dot_f32 = dot_f32_avx512;
    kt->f32 = *qt_gemm_ops_f32_avx512();
    qt_nf4_set_avx512(kt->type);   // nf4-avx512.c
    qt_vecmath_set_avx512(kt);     // vecmath-avx512.c
}
