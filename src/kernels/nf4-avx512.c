// nf4-avx512.c: NF4 (quant/nf4.h) kernels with AVX-512F: the whole 16-entry
// float32 code book fits one zmm, so 16 weights are looked up with one
// vpermps (AVX2 needs two permutes and a blend per 8). Same arithmetic as
// nf4-avx2.c (exact dequantized weights code[q] * d, float32 activations):
//   vec_dot, gemv (two rows at a time), to_float (bit-exact with
//   qt_dequantize_row_nf4); gemm_wt stays nf4-avx2.c's, on this to_float.
// The AVX-512 table copies the AVX2 one, then qt_nf4_set_avx512 replaces these.
#include "kernels/simd-x86.h"

#include "base/base.h"
#include "kernels/nf4-kernels.h"
#include "quant/nf4.h"

// Decode: bytes ahead of the current rows that are prefetched.
#define NF4_PREFETCH_BYTES 4096

// The 64 indices of a block, in element order, as 4 x 16 int32.
static inline void indices(const block_nf4 *b, __m512i idx[4]) {
    const __m256i m = _mm256_set1_epi8(15);
    __m256i q = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m), lo = _mm256_and_si256(q, m);
    // bitsandbytes' order: element 2j in the high nibble of byte j
    __m256i e0 = _mm256_unpacklo_epi8(hi, lo);   // elements 0..15 | 32..47
    __m256i e1 = _mm256_unpackhi_epi8(hi, lo);   // elements 16..31 | 48..63
    idx[0] = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(e0));
    idx[1] = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(e1));
    idx[2] = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(e0, 1));
    idx[3] = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(e1, 1));
}

// sum over a block of code[q] * y (before the block's scale)
static inline __m512 block_dot(__m512 lut, const block_nf4 *b, const float *y) {
    __m512i idx[4];
    indices(b, idx);
    __m512 s = _mm512_mul_ps(_mm512_permutexvar_ps(idx[0], lut), _mm512_loadu_ps(y));
    for (int k = 1; k < 4; k++) s = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx[k], lut), _mm512_loadu_ps(y + 16 * k), s);
    return s;
}

static void vec_dot_nf4_avx512(int n, float *s, const void *vx, const void *vy) {
    const __m512 lut = _mm512_loadu_ps(qt_nf4_values);
    const block_nf4 *x = vx;
    const float *y = vy;
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n / QK_NF4; i++) acc = _mm512_fmadd_ps(block_dot(lut, &x[i], y + i * QK_NF4), _mm512_set1_ps(x[i].d), acc);
    *s = _mm512_reduce_add_ps(acc);
}

static void gemv_nf4_avx512(int n, const void *w, size_t w_stride, const void *vx, float *y, int n_rows) {
    const __m512 lut = _mm512_loadu_ps(qt_nf4_values);
    const float *x = vx;
    const int nb = n / QK_NF4;
    const size_t row_bytes = (size_t)nb * sizeof(block_nf4);
    const int ahead = (int)QT_MAX(1, NF4_PREFETCH_BYTES / w_stride);
    const char *wr = w;
    int r = 0;
    for (; r + 2 <= n_rows; r += 2, wr += 2 * w_stride) {
        if (r + ahead + 1 < n_rows)
            for (size_t b = 0; b < 2 * row_bytes; b += 64) __builtin_prefetch(wr + (size_t)ahead * w_stride + b);
        const block_nf4 *x0 = (const block_nf4 *)wr, *x1 = (const block_nf4 *)(wr + w_stride);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
            a0 = _mm512_fmadd_ps(block_dot(lut, &x0[i], x + i * QK_NF4), _mm512_set1_ps(x0[i].d), a0);
            a1 = _mm512_fmadd_ps(block_dot(lut, &x1[i], x + i * QK_NF4), _mm512_set1_ps(x1[i].d), a1);
        }
        y[r] = _mm512_reduce_add_ps(a0);
        y[r + 1] = _mm512_reduce_add_ps(a1);
    }
    for (; r < n_rows; r++, wr += w_stride) vec_dot_nf4_avx512(n, &y[r], wr, x);
}

static void to_float_nf4_avx512(const void *src, float *dst, int64_t k) {
    const __m512 lut = _mm512_loadu_ps(qt_nf4_values);
    const block_nf4 *x = src;
    for (int64_t i = 0; i < k / QK_NF4; i++, dst += QK_NF4) {
        __m512i idx[4];
        indices(&x[i], idx);
        const __m512 d = _mm512_set1_ps(x[i].d);
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(dst + 16 * j, _mm512_mul_ps(_mm512_permutexvar_ps(idx[j], lut), d));
    }
}

void qt_nf4_set_avx512(qt_kernel_traits *t) {
    t[QT_TYPE_NF4].vec_dot = vec_dot_nf4_avx512;
    t[QT_TYPE_NF4].gemv = gemv_nf4_avx512;
    t[QT_TYPE_NF4].to_float = to_float_nf4_avx512;
}
