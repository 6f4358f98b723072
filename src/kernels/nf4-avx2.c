// nf4-avx2.c: NF4 (quant/nf4.h) kernels with AVX2 + FMA: the 4-bit indices
// of 32 weights are unpacked with two byte interleaves (bitsandbytes puts
// element 2j in the high nibble), widened 8 at a time to int32 lanes, and
// looked up in the 16-entry float32 code book with two 8-entry permutes and a
// blend on the index's bit 3 (the code book is not integer, so it stays
// float: every product is of the exact dequantized weight code[q] * d).
//   vec_dot   per block: sum of code[q] * x, then times d (fma)
//   gemv      two rows at a time (independent FMA chains), rows ahead prefetched
//   to_float  code[q] * d, bit-exact with qt_dequantize_row_nf4
//   prompts and training: the table's float gemm on rows dequantized by
//             to_float (matmul.c mm_plan)
// Deliberately not: an 8-bit activation path, AVX-512 (the AVX-512 table
// copies these entries), persistent dequantized weights.
#include "kernels/simd-x86.h"
#include <string.h>

#include "base/base.h"
#include "kernels/matmul-internal.h"
#include "kernels/nf4-kernels.h"
#include "quant/nf4.h"

// Rows of a gemm_wt panel: about 256 KiB of float32 weights (L2), >= 16 rows.
#define NF4_WT_FLOATS (64 * 1024)
// Decode: bytes ahead of the current row that are prefetched.
#define NF4_PREFETCH_BYTES 4096

typedef struct {
    __m256 lo, hi;   // code book entries 0..7, 8..15
} nf4_lut;

static inline nf4_lut lut_load(void) {
    return (nf4_lut){ _mm256_loadu_ps(qt_nf4_values), _mm256_loadu_ps(qt_nf4_values + 8) };
}

// code[idx] for 8 int32 indices 0..15
static inline __m256 lookup8(nf4_lut l, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(l.lo, idx), b = _mm256_permutevar8x32_ps(l.hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// The 32 indices of 16 packed bytes, in element order: e0 = 0..15, e1 = 16..31.
static inline void unpack32(const uint8_t *qs, __m128i *e0, __m128i *e1) {
    const __m128i m = _mm_set1_epi8(15);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m), lo = _mm_and_si128(q, m);
    *e0 = _mm_unpacklo_epi8(hi, lo);
    *e1 = _mm_unpackhi_epi8(hi, lo);
}

// The 64 code values of a block, 8 ymm in element order.
static inline void decode_block(nf4_lut l, const block_nf4 *b, __m256 w[8]) {
    for (int h = 0; h < 2; h++) {
        __m128i e0, e1;
        unpack32(b->qs + 16 * h, &e0, &e1);
        w[4 * h + 0] = lookup8(l, _mm256_cvtepu8_epi32(e0));
        w[4 * h + 1] = lookup8(l, _mm256_cvtepu8_epi32(_mm_srli_si128(e0, 8)));
        w[4 * h + 2] = lookup8(l, _mm256_cvtepu8_epi32(e1));
        w[4 * h + 3] = lookup8(l, _mm256_cvtepu8_epi32(_mm_srli_si128(e1, 8)));
    }
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum over the row of (sum over a block of code * y) * d, accumulated in acc
static inline __m256 row_dot(nf4_lut l, const block_nf4 *x, const float *y, int nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++, y += QK_NF4) {
        __m256 w[8];
        decode_block(l, &x[i], w);
        __m256 b = _mm256_mul_ps(w[0], _mm256_loadu_ps(y));
        for (int k = 1; k < 8; k++) b = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(y + 8 * k), b);
        acc = _mm256_fmadd_ps(b, _mm256_set1_ps(x[i].d), acc);
    }
    return acc;
}

static void vec_dot_nf4_avx2(int n, float *s, const void *vx, const void *vy) {
    *s = hsum(row_dot(lut_load(), vx, vy, n / QK_NF4));
}

static void gemv_nf4_avx2(int n, const void *w, size_t w_stride, const void *vx, float *y, int n_rows) {
    const nf4_lut l = lut_load();
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
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        const float *xb = x;
        for (int i = 0; i < nb; i++, xb += QK_NF4) {
            __m256 w0[8], w1[8];
            decode_block(l, &x0[i], w0);
            decode_block(l, &x1[i], w1);
            __m256 xv = _mm256_loadu_ps(xb), b0 = _mm256_mul_ps(w0[0], xv), b1 = _mm256_mul_ps(w1[0], xv);
            for (int k = 1; k < 8; k++) {
                xv = _mm256_loadu_ps(xb + 8 * k);
                b0 = _mm256_fmadd_ps(w0[k], xv, b0);
                b1 = _mm256_fmadd_ps(w1[k], xv, b1);
            }
            a0 = _mm256_fmadd_ps(b0, _mm256_set1_ps(x0[i].d), a0);
            a1 = _mm256_fmadd_ps(b1, _mm256_set1_ps(x1[i].d), a1);
        }
        y[r] = hsum(a0);
        y[r + 1] = hsum(a1);
    }
    for (; r < n_rows; r++, wr += w_stride) y[r] = hsum(row_dot(l, (const block_nf4 *)wr, x, nb));
}

static void to_float_nf4_avx2(const void *src, float *dst, int64_t k) {
    const nf4_lut l = lut_load();
    const block_nf4 *x = src;
    for (int64_t i = 0; i < k / QK_NF4; i++, dst += QK_NF4) {
        __m256 w[8], d = _mm256_set1_ps(x[i].d);
        decode_block(l, &x[i], w);
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(w[j], d));
    }
}

void qt_nf4_set_avx2(qt_kernel_traits *t) {
    t[QT_TYPE_NF4].vec_dot = vec_dot_nf4_avx2;
    t[QT_TYPE_NF4].gemv = gemv_nf4_avx2;
    t[QT_TYPE_NF4].to_float = to_float_nf4_avx2;
}
