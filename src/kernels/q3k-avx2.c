// q3k-avx2.c: Q3_K (ggml's 3.4375-bit k-quant: 256 weights, 16 signed 6-bit
// scales, 2 low bits in qs and the high bit in hmask) with AVX2:
//   vec_dot  against Q8_K activations: 32 weights at a time as the unsigned
//            u = low 2 bits | high bit << 2 (= w + 4), multiplied by the
//            activations with maddubs and by their sub-block scales with
//            madd; the +4 is taken back with the Q8_K block's bsums:
//            sum w y = sum u y - 4 sum y. Integer sums are exact, so the
//            result differs from the scalar reference (sums in double) only
//            by the final float products.
//   to_float d * scale * w, bit-exact with qt_dequantize_row_q3_K.
// Layout (quant-kquants.c): element 128 n + 32 j + l (n < 2, j < 4, l < 32)
// is bits 2j..2j+1 of qs[32 n + l], its high bit is bit 4n + j of hmask[l],
// and sub-block l / 16 of group 4n + j has scale 2 (4n + j) + l / 16.
// Follows ggml-cpu's ggml_vec_dot_q3_K_q8_K (AVX2) in its use of bsums.
#include "kernels/simd-x86.h"
#include <string.h>

#include "kernels/nf4-kernels.h"
#include "kernels/q3k-kernels.h"
#include "quant/blocks.h"

// The 16 signed scales (minus 32) of a block: scale j has its low 4 bits in
// s[j] (j < 8) or s[j - 8] >> 4, its high 2 bits at bit 2 (j / 4) of s[8 + j % 4]
// (ggml's kmask unpacking, four bytes at a time).
static inline void scales16(const uint8_t *s, int8_t *sc) {
    uint32_t a[4];
    memcpy(a, s, 12);
    const uint32_t t = a[2], m4 = 0x0f0f0f0f, m2 = 0x03030303;
    a[2] = ((a[0] >> 4) & m4) | (((t >> 4) & m2) << 4);
    a[3] = ((a[1] >> 4) & m4) | (((t >> 6) & m2) << 4);
    a[0] = (a[0] & m4) | ((t & m2) << 4);
    a[1] = (a[1] & m4) | (((t >> 2) & m2) << 4);
    _mm_storeu_si128((__m128i *)sc, _mm_sub_epi8(_mm_loadu_si128((const __m128i *)a), _mm_set1_epi8(32)));
}

// The scale vector of group j of a half: its lanes hold the half's 8 int16
// scales (sc16 below); int16 lanes 0..7 get scale 2j, 8..15 scale 2j + 1.
static inline __m256i group_scales(__m256i sc16, int j) {
    const int8_t a = (int8_t)(4 * j), b = (int8_t)(4 * j + 1), c = (int8_t)(4 * j + 2), e = (int8_t)(4 * j + 3);
    const __m256i mask = _mm256_setr_epi8(a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b,
                                          c, e, c, e, c, e, c, e, c, e, c, e, c, e, c, e);
    return _mm256_shuffle_epi8(sc16, mask);
}

// u (32 x uint8) of group g = 4n + j: w + 4 in [0, 7].
static inline __m256i group_u(__m256i q, __m256i hm, int j, int g) {
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    __m256i q2 = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j)), m3);
    __m256i hb = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(g)), m1);
    return _mm256_or_si256(q2, _mm256_slli_epi16(hb, 2));
}

static void vec_dot_q3_K_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        scales16(x[i].scales, sc);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));   // scales 0..7 | 8..15
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            // this half's 8 scales in both lanes
            const __m256i sch = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11)
                                  : _mm256_permute2x128_si256(sc16, sc16, 0x00);
            for (int j = 0; j < 4; j++) {
                const int g = 4 * h + j;
                __m256i p = _mm256_maddubs_epi16(group_u(q, hm, j, g),
                                                 _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * g)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, group_scales(sch, j)));
            }
        }
        // take back the + 4: 4 * sum over sub-blocks of scale * bsum
        __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 2));
        const float d = qt_fp16_to_fp32(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    *s = _mm_cvtss_f32(r);
}

static void to_float_q3_K_avx2(const void *src, float *dst, int64_t k) {
    const block_q3_K *x = src;
    for (int64_t i = 0; i < k / QK_K; i++, dst += QK_K) {
        int8_t sc[16];
        scales16(x[i].scales, sc);
        const float d = qt_fp16_to_fp32(x[i].d);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int j = 0; j < 4; j++) {
                const int g = 4 * h + j;
                __m256i w = _mm256_sub_epi8(group_u(q, hm, j, g), _mm256_set1_epi8(4));
                for (int half = 0; half < 2; half++) {
                    __m128i wh = half ? _mm256_extracti128_si256(w, 1) : _mm256_castsi256_si128(w);
                    const __m256 dl = _mm256_set1_ps(d * sc[2 * g + half]);
                    float *o = dst + 32 * g + 16 * half;
                    _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(wh)), dl));
                    _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(wh, 8))), dl));
                }
            }
        }
    }
}

void qt_q3_K_set_avx2(qt_kernel_traits *t) {
    t[QT_TYPE_Q3_K].vec_dot = vec_dot_q3_K_avx2;
    t[QT_TYPE_Q3_K].to_float = to_float_q3_K_avx2;
}
