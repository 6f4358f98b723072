// kernels-avx512vnni.c: the avx512-vnni table (AVX-512 VNNI: Ice Lake,
// Cascade Lake, Zen 4 and later), on top of the avx512 table: Q8_0 and Q4_0
// dots on vpdpbusd, two 32-quant blocks per zmm.
// Follows ggml-cpu/arch/x86/quants.c (the AVX512 VNNI paths).
#include "kernels/simd-x86.h"

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/vecmath-internal.h"
#include "quant/blocks.h"

static inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

// two consecutive blocks' 32 quants in one register: block i low, i+1 high
static inline __m512i load2(const int8_t *a, const int8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline __m512 scale2(float a, float b) {
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

static void vec_dot_q8_0_avx512(int n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int nb = n / QK8_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m512i xv = load2(x[i].qs, x[i + 1].qs), yv = load2(y[i].qs, y[i + 1].qs);
        // |x| * (y with x's sign): u8 x s8 as vpdpbusd wants (quants are in -127..127)
        __mmask64 neg = _mm512_movepi8_mask(xv);
        __m512i ys = _mm512_mask_sub_epi8(yv, neg, zero, yv);
        __m512i p = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(xv), ys);
        __m512 d = scale2(fp16(x[i].d) * fp16(y[i].d), fp16(x[i + 1].d) * fp16(y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += fp16(x[i].d) * fp16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

static inline __m256i nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0xf));
}

static void vec_dot_q4_0_avx512(int n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const __m512i zero = _mm512_setzero_si512(), eights = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    int nb = n / QK4_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        // unsigned nibbles (0..15) times y, minus 8*y: (q - 8) * y
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(nibbles(x[i].qs)), nibbles(x[i + 1].qs), 1);
        __m512i yv = load2(y[i].qs, y[i + 1].qs);
        __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q, yv), _mm512_dpbusd_epi32(zero, eights, yv));
        __m512 d = scale2(fp16(x[i].d) * fp16(y[i].d), fp16(x[i + 1].d) * fp16(y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((x[i].qs[j] & 0xf) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += fp16(x[i].d) * fp16(y[i].d) * (float)sumi;
    }
    *s = sum;
}

// Called once, by cpu.c, on a copy of the avx512 table.
void qt_kernels_fill_avx512vnni(qt_kernel_table *kt) {
    kt->type[QT_TYPE_Q8_0].vec_dot = vec_dot_q8_0_avx512;
    kt->type[QT_TYPE_Q4_0].vec_dot = vec_dot_q4_0_avx512;
}
