// kernels-avx2.c: the AVX2 + FMA + F16C kernel table (x86-64 since Haswell/Zen).
//
// Fast vec_dot for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K. gemm for
// T > 1: Q4_0, Q8_0, Q4_K, Q5_K and Q6_K interleave 8 weight rows on the fly so one
// register holds 4 quants of each row and a broadcast activation dword feeds
// 8 rows per maddubs (no horizontal sums; llama.cpp's q4_0_8x8 repacking idea
// without changing the stored layout); F32 uses register tiles of 3 rows x
// 4 columns, F16 and BF16 4 rows x 3 columns (llamafile's tinyBLAS). Conversions float -> Q8_0 /
// Q8_K / F16 / BF16 bit-equal to the scalar references; fast dequantization
// of Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16. Q3_K, NF4 and the legacy Q4_1, Q5_0,
// Q5_1, IQ4_NL (vec_dot and dequantization) are in q3k-avx2.c, nf4-avx2.c and
// legacy-avx2.c; everything else is the ref table's.
// Deliberately not: persistent weight repacking, the other i-quants.
// Follows ggml-cpu/arch/x86/quants.c (vec_dot), ggml-cpu/repack.cpp and
// llamafile/sgemm.cpp (gemm).
#include "kernels/simd-x86.h"
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/legacy-kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/nf4-kernels.h"
#include "kernels/q3k-kernels.h"
#include "kernels/quants-avx2.h"
#include "kernels/vecmath-internal.h"
#include "quant/blocks.h"
#include "quant/quant.h"

#define INLINE static inline __attribute__((always_inline))

// ---- helpers ----

INLINE int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

INLINE __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INLINE __m256 load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// ---- float vec_dot ----

#define AS_FLOAT(v) (v)

// The float dots' one body: sum x[i] * y[i] over n elements, x and y loaded
// 8 at a time as floats by LX / LY and one at a time by SX / SY (the ragged
// tail); four accumulators, summed lane-wise and then across.
#define DOT_F32_BODY(n, x, y, LX, LY, SX, SY)                                                  \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                 \
    int i = 0;                                                                                \
    for (; i + 32 <= (n); i += 32) {                                                          \
        a0 = _mm256_fmadd_ps(LX((x) + i), LY((y) + i), a0);                                   \
        a1 = _mm256_fmadd_ps(LX((x) + i + 8), LY((y) + i + 8), a1);                           \
        a2 = _mm256_fmadd_ps(LX((x) + i + 16), LY((y) + i + 16), a2);                         \
        a3 = _mm256_fmadd_ps(LX((x) + i + 24), LY((y) + i + 24), a3);                         \
    }                                                                                         \
    for (; i + 8 <= (n); i += 8) a0 = _mm256_fmadd_ps(LX((x) + i), LY((y) + i), a0);          \
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));         \
    for (; i < (n); i++) sum += SX((x)[i]) * SY((y)[i]);

static void vec_dot_f32_avx2(int n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    DOT_F32_BODY(n, x, y, _mm256_loadu_ps, _mm256_loadu_ps, AS_FLOAT, AS_FLOAT)
    *s = sum;
}

static void vec_dot_f16_avx2(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    DOT_F32_BODY(n, x, y, load_f16, load_f16, fp16, fp16)
    *s = sum;
}

static void vec_dot_bf16_avx2(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    DOT_F32_BODY(n, x, y, load_bf16, load_bf16, qt_bf16_to_fp32, qt_bf16_to_fp32)
    *s = sum;
}

// x float, y fp16 (an F16 KV cache)
static float dot_f32_f16_avx2(int n, const float *x, const uint16_t *y) {
    DOT_F32_BODY(n, x, y, _mm256_loadu_ps, load_f16, AS_FLOAT, fp16)
    return sum;
}

// ---- Q8_0 / Q4_0 vec_dot against Q8_0 ----

static void vec_dot_q8_0_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int nb = n / QK8_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256i p1 = dot_i8(_mm256_loadu_si256((const __m256i *)x[i + 1].qs), _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i + 1].d) * fp16(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

static void vec_dot_q4_0_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int nb = n / QK4_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i q0 = _mm256_sub_epi8(nibbles(x[i].qs), off);
        __m256i q1 = _mm256_sub_epi8(nibbles(x[i + 1].qs), off);
        __m256i p0 = dot_i8(q0, _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256i p1 = dot_i8(q1, _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i + 1].d) * fp16(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i q0 = _mm256_sub_epi8(nibbles(x[i].qs), off);
        __m256i p0 = dot_i8(q0, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

// ---- k-quants against Q8_K ----

// 6-bit scales and mins of the 8 sub-blocks of a Q4_K/Q5_K block
INLINE void scales_k4(const uint8_t *q, int sc[8], int mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0xf) | ((q[j] >> 6) << 4);
        mn[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
}

// Q5_K keeps Q4_K's d, dmin and 12 scale bytes at the same offsets, with
// more block after them: quants-avx2.h's q4_K_scales reads both.
_Static_assert(offsetof(block_q5_K, scales) == offsetof(block_q4_K, scales) &&
                   sizeof(block_q5_K) >= offsetof(block_q5_K, scales) + 16,
               "q4_K_scales reads 16 bytes from the scales");

// sum over sub-blocks of min[j] * (sum of its 32 activation quants), 4 int32 lanes
INLINE __m128i min_term_k4(__m256i mins_scales, const int16_t *bsums) {
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(mins_scales, 1), pairs);
}

static void vec_dot_q4_K_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0xf);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i ms = _mm256_cvtepu8_epi16(q4_K_scales((const char *)&x[i]));   // 8 scales, 8 mins
        acc_m = _mm_fmadd_ps(_mm_set1_ps(y[i].d * fp16(x[i].dmin)), _mm_cvtepi32_ps(min_term_k4(ms, y[i].bsums)), acc_m);
        __m256i sc = _mm256_permute2x128_si256(ms, ms, 0x00);   // scales in both halves
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
            __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            pl = _mm256_madd_epi16(pl, bcast_i16(sc, 2 * j));
            ph = _mm256_madd_epi16(ph, bcast_i16(sc, 2 * j + 1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * fp16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = hsum_ps(acc) - _mm_cvtss_f32(m);
}

static void vec_dot_q5_K_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i ms = _mm256_cvtepu8_epi16(q4_K_scales((const char *)&x[i]));
        acc_m = _mm_fmadd_ps(_mm_set1_ps(y[i].d * fp16(x[i].dmin)), _mm_cvtepi32_ps(min_term_k4(ms, y[i].bsums)), acc_m);
        __m256i sumi = q5_K_sumi((const char *)&x[i], y[i].qs, _mm256_permute2x128_si256(ms, ms, 0x00));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * fp16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = hsum_ps(acc) - _mm_cvtss_f32(m);
}

// scale vector for one 32-element step of Q6_K: 16-element groups a (lanes
// 0..7 of the maddubs result) and b (lanes 8..15)
INLINE __m256i scale_pair(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

static void vec_dot_q6_K_avx2(int n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales, *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int k = 0; k < 2; k++, ql += 64, qh += 32, sc += 8, q8 += 128) {
            __m256i q[4];
            q6_K_unpack_avx2(ql, qh, q);
            for (int j = 0; j < 4; j++) {
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * j));
                // (q - 32) * y = q*y - 32*y, both within int16 per pair
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[j], y8), _mm256_maddubs_epi16(m32, y8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair(sc[2 * j], sc[2 * j + 1])));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * fp16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

// ---- float gemm tiles ----
//
// A tile is RM weight rows x RN activation columns with RM*RN vector
// accumulators: 4 weight rows x 3 activation columns, the 3 activation vectors
// held and each weight vector loaded once and used 3 times (12 accumulators +
// 3 + 1 = the 16 ymm registers), smaller tiles at the edges. The shape of
// llamafile's tinyBLAS on 16-register x86; measured ~6% faster than 3 x 4
// through qt_matmul at T = 512 (2048 x 2048 and 2048 x 5632 F16, 2 threads),
// and a 64-row matmul block splits into whole tiles. (A packed 6 x 16 f32
// GEMM converting while packing measured ~20% slower: these tiles are near
// FMA peak and packing only adds work.)

typedef void (*tile_fn)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys);

#define T43_RM 4
#define T43_RN 3

#define FLOAT_TILE43(name, elem_t, LOAD, SCALAR)                                                \
    INLINE void tile43_##name(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, \
                              size_t ys, const int RM, const int RN) {                         \
        __m256 acc[T43_RM][T43_RN];                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < RM; i++)                                   \
        _Pragma("GCC unroll 3") for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();   \
        int k = 0;                                                                             \
        for (; k + 8 <= n; k += 8) {                                                           \
            __m256 b[T43_RN];                                                                  \
            _Pragma("GCC unroll 3") for (int j = 0; j < RN; j++)                               \
                b[j] = LOAD((const elem_t *)((const char *)x + j * xs) + k);                   \
            _Pragma("GCC unroll 4") for (int i = 0; i < RM; i++) {                             \
                __m256 a = LOAD((const elem_t *)((const char *)w + i * ws) + k);               \
                _Pragma("GCC unroll 3") for (int j = 0; j < RN; j++)                           \
                    acc[i][j] = _mm256_fmadd_ps(a, b[j], acc[i][j]);                           \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < RM; i++)                                   \
        _Pragma("GCC unroll 3") for (int j = 0; j < RN; j++) {                                 \
            float s = hsum_ps(acc[i][j]);                                                      \
            const elem_t *wr = (const elem_t *)((const char *)w + i * ws);                     \
            const elem_t *xr = (const elem_t *)((const char *)x + j * xs);                     \
            for (int t = k; t < n; t++) s += SCALAR(wr[t]) * SCALAR(xr[t]);                    \
            y[j * ys + i] = s;                                                                 \
        }                                                                                      \
    }

#define F32_SCALAR(v) (v)
FLOAT_TILE43(f32, float, _mm256_loadu_ps, F32_SCALAR)
FLOAT_TILE43(f16, uint16_t, load_f16, fp16)
FLOAT_TILE43(bf16, uint16_t, load_bf16, qt_bf16_to_fp32)

#define TILE43_FN(name, rm, rn)                                                                 \
    static void name##_43_##rm##x##rn(int n, const void *w, size_t ws, const void *x, size_t xs, \
                                      float *y, size_t ys) {                                     \
        tile43_##name(n, w, ws, x, xs, y, ys, rm, rn);                                           \
    }
#define TILE43_SET(name)                                                                        \
    TILE43_FN(name, 1, 1) TILE43_FN(name, 1, 2) TILE43_FN(name, 1, 3)                            \
    TILE43_FN(name, 2, 1) TILE43_FN(name, 2, 2) TILE43_FN(name, 2, 3)                            \
    TILE43_FN(name, 3, 1) TILE43_FN(name, 3, 2) TILE43_FN(name, 3, 3)                            \
    TILE43_FN(name, 4, 1) TILE43_FN(name, 4, 2) TILE43_FN(name, 4, 3)                            \
    static const tile_fn name##_tiles43[T43_RM][T43_RN] = {                                     \
        {name##_43_1x1, name##_43_1x2, name##_43_1x3},                                          \
        {name##_43_2x1, name##_43_2x2, name##_43_2x3},                                          \
        {name##_43_3x1, name##_43_3x2, name##_43_3x3},                                          \
        {name##_43_4x1, name##_43_4x2, name##_43_4x3},                                          \
    };                                                                                          \
    static void gemm_##name##_43_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, \
                                      float *y, size_t ys, int n_rows, int n_cols) {            \
        for (int r = 0; r < n_rows; r += T43_RM) {                                              \
            int rm = QT_MIN(T43_RM, n_rows - r);                                                \
            const char *wr = (const char *)w + (size_t)r * ws;                                  \
            for (int c = 0; c < n_cols; c += T43_RN) {                                          \
                int rn = QT_MIN(T43_RN, n_cols - c);                                            \
                name##_tiles43[rm - 1][rn - 1](n, wr, ws, (const char *)x + (size_t)c * xs, xs, \
                                               y + (size_t)c * ys + r, ys);                     \
            }                                                                                   \
        }                                                                                       \
    }

TILE43_SET(f32)
TILE43_SET(f16)
TILE43_SET(bf16)

// ---- interleaved gemm for the 32-element types (Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL) ----
//
// Eight weight rows are unpacked to bytes and interleaved so that one 32-byte
// register holds four consecutive quants of each of the eight rows (lane r =
// row r). One activation dword (four quants) broadcast to all lanes then gives
// eight rows' partial dots per maddubs, with no horizontal sums: the output of
// a column for eight rows is one float vector. The interleaving is done here
// per call (a K chunk of 8 rows at a time, in a stack buffer) and reused by
// every activation column, so the weights stay in GGUF layout everywhere else.
// The idea is llama.cpp's q4_0_8x8 repacking, done on the fly.
// Three integer kernels by the weights' bytes: IG_U4 unsigned 0..15 (Q4_0's
// nibbles, Q4_1), 8 maddubs summed in int16 (|sum| <= 8 * 2 * 15 * 127 =
// 30480); IG_U5 unsigned 0..31 (Q5_0's q, Q5_1), each maddubs widened to
// int32 at once; IG_S8 signed (Q8_0, IQ4_NL's code book values) by the sign
// trick. Q4_0's -8 and Q5_0's -16 come back out per block and column as
// off * d_x * (sum of the activation quants) (`corr`); Q4_1 / Q5_1's min adds
// m_w * d_x * sum. Integer sums are exact.

#define IG_ROWS 8
#define IG_K 2048                 // K chunk: 8 rows x 2048 bytes of quants on the stack
#define IG_NB (IG_K / 32)
#define IG_COLS 6                 // activation columns per register group

typedef struct {
    uint32_t q[IG_NB][8][IG_ROWS];   // [block][dword s][row]: quants 4s..4s+3 of the block
    float d[IG_NB][IG_ROWS];         // weight scales
    float m[IG_NB][IG_ROWS];         // Q4_1 / Q5_1: weight mins
} ig_tile;

typedef struct {
    float d, corr;                   // activation scale; off * d * sum(q) (Q4_0: off 8, Q5_0: 16)
    float s;                         // Q4_1 / Q5_1: d * sum(q)
} ig_col;

enum { IG_U4, IG_U5, IG_S8 };

INLINE int ig_kind(qt_type wt) {
    return wt == QT_TYPE_Q4_0 || wt == QT_TYPE_Q4_1 ? IG_U4
         : wt == QT_TYPE_Q5_0 || wt == QT_TYPE_Q5_1 ? IG_U5 : IG_S8;
}

// the offset a type's unsigned quants carry (Q4_0 8, Q5_0 16), else 0
INLINE int ig_off(qt_type wt) { return wt == QT_TYPE_Q4_0 ? 8 : wt == QT_TYPE_Q5_0 ? 16 : 0; }

// block b's 32 quants as the kernel of its kind reads them
INLINE __m256i ig_quants(qt_type wt, const char *b, __m256i book) {
    switch (wt) {
    case QT_TYPE_Q4_0: return nibbles(((const block_q4_0 *)b)->qs);
    case QT_TYPE_Q5_0: return q5_u(((const block_q5_0 *)b)->qs, ((const block_q5_0 *)b)->qh);   // 0..31
    default: return q32_quants(wt, b, book);
    }
}

INLINE void ig_repack_t(ig_tile *t, const void *w, size_t ws, int l0, int nb, int rm, const qt_type wt) {
    const size_t bs = q32_block_size(wt);
    const __m256i book = iq4_nl_book();
    uint32_t tmp[8];
    for (int r = 0; r < IG_ROWS; r++) {
        const char *row = (const char *)w + (size_t)(r < rm ? r : 0) * ws + (size_t)l0 * bs;
        for (int l = 0; l < nb; l++) {
            const char *b = row + (size_t)l * bs;
            _mm256_storeu_si256((__m256i *)tmp, ig_quants(wt, b, book));
            for (int s = 0; s < 8; s++) t->q[l][s][r] = tmp[s];
            float d, m;
            q32_scale_min(wt, b, &d, &m);
            t->d[l][r] = r < rm ? d : 0.0f;   // padding rows contribute 0
            if (q32_affine(wt)) t->m[l][r] = r < rm ? m : 0.0f;
        }
    }
}

static void ig_columns(ig_col *col, const void *x, size_t xs, int l0, int nb, int n_cols, qt_type wt) {
    const bool sums = ig_off(wt) || q32_affine(wt);
    for (int j = 0; j < n_cols; j++) {
        const block_q8_0 *b = (const block_q8_0 *)((const char *)x + (size_t)j * xs) + l0;
        for (int l = 0; l < nb; l++) {
            float d = fp16(b[l].d);
            ig_col *c = &col[j * IG_NB + l];
            c->d = d;
            c->corr = c->s = 0.0f;
            if (sums) {
                int sum = hsum_epi32(dot_u8(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)b[l].qs)));
                c->corr = (float)ig_off(wt) * d * (float)sum;
                c->s = d * (float)sum;
            }
        }
    }
}

// Keeps an accumulator in its register: without it GCC re-associates the
// integer sums into a tree of temporaries and spills them to the stack.
#if defined(QT_SIMDE)
#define PIN(v) ((void)0)   // SIMDe's vectors are not always in one register
#else
#define PIN(v) __asm__("" : "+x"(v))
#endif

INLINE __m256i bcast_dword(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// acc (lanes = rows) for RN columns, blocks 0..nb of the chunk, added into y
INLINE void ig_store(float *y, size_t ys, __m256 acc, int j, int rm, bool add) {
    float *o = y + (size_t)j * ys;
    if (rm == IG_ROWS) {
        _mm256_storeu_ps(o, add ? _mm256_add_ps(_mm256_loadu_ps(o), acc) : acc);
    } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, acc);
        for (int r = 0; r < rm; r++) o[r] = add ? o[r] + tmp[r] : tmp[r];
    }
}

INLINE void ig_kernel(const ig_tile *t, const ig_col *col, const void *x, size_t xs, int l0, int nb, float *y,
                      size_t ys, int rm, bool add, const int RN, const int kind, const bool affine) {
    const block_q8_0 *xb[IG_COLS];
    __m256 acc[IG_COLS];
#pragma GCC unroll 6
    for (int j = 0; j < RN; j++) {
        xb[j] = (const block_q8_0 *)((const char *)x + (size_t)j * xs) + l0;
        acc[j] = _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int l = 0; l < nb; l++) {
        __m256i p[IG_COLS];
#pragma GCC unroll 6
        for (int j = 0; j < RN; j++) p[j] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)t->q[l][s]);
            __m256i aa = kind == IG_S8 ? _mm256_sign_epi8(a, a) : a;
#pragma GCC unroll 6
            for (int j = 0; j < RN; j++) {
                __m256i xq = bcast_dword(xb[j][l].qs + 4 * s);
                if (kind == IG_U4) {
                    p[j] = _mm256_add_epi16(p[j], _mm256_maddubs_epi16(a, xq));
                } else {
                    if (kind == IG_S8) xq = _mm256_sign_epi8(xq, a);
                    p[j] = _mm256_add_epi32(p[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, xq), ones));
                }
                PIN(p[j]);
            }
        }
        __m256 da = _mm256_loadu_ps(t->d[l]);
        __m256 ma = affine ? _mm256_loadu_ps(t->m[l]) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int j = 0; j < RN; j++) {
            const ig_col *c = &col[j * IG_NB + l];
            __m256 f = _mm256_cvtepi32_ps(kind == IG_U4 ? _mm256_madd_epi16(p[j], ones) : p[j]);
            __m256 v = kind == IG_S8 || affine ? _mm256_mul_ps(_mm256_set1_ps(c->d), f)
                                               : _mm256_fmsub_ps(_mm256_set1_ps(c->d), f, _mm256_set1_ps(c->corr));
            acc[j] = _mm256_fmadd_ps(da, v, acc[j]);
            if (affine) acc[j] = _mm256_fmadd_ps(ma, _mm256_set1_ps(c->s), acc[j]);
        }
    }
#pragma GCC unroll 6
    for (int j = 0; j < RN; j++) ig_store(y, ys, acc[j], j, rm, add);
}

typedef void (*ig_kernel_fn)(const ig_tile *, const ig_col *, const void *, size_t, int, int, float *, size_t, int,
                             bool);

#define IG_K1(name, wt, rn)                                                                                \
    static void ig_##name##_##rn(const ig_tile *t, const ig_col *c, const void *x, size_t xs, int l0, int nb, \
                                 float *y, size_t ys, int rm, bool add) {                                  \
        ig_kernel(t, c, x, xs, l0, nb, y, ys, rm, add, rn, ig_kind(wt), q32_affine(wt));                   \
    }
#define IG_GEMM(name, wt)                                                                                  \
    IG_K1(name, wt, 1) IG_K1(name, wt, 2) IG_K1(name, wt, 3) IG_K1(name, wt, 4) IG_K1(name, wt, 5)        \
    IG_K1(name, wt, 6)                                                                                     \
    static void ig_repack_##name(ig_tile *t, const void *w, size_t ws, int l0, int nb, int rm) {           \
        ig_repack_t(t, w, ws, l0, nb, rm, wt);                                                             \
    }                                                                                                      \
    static void gemm_##name##_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y,   \
                                   size_t ys, int n_rows, int n_cols) {                                   \
        static const ig_kernel_fn kern[IG_COLS] = {ig_##name##_1, ig_##name##_2, ig_##name##_3,            \
                                                   ig_##name##_4, ig_##name##_5, ig_##name##_6};           \
        ig_gemm(kern, ig_repack_##name, wt, n, w, ws, x, xs, y, ys, n_rows, n_cols);                       \
    }

static void ig_gemm(const ig_kernel_fn kern[IG_COLS], void (*repack)(ig_tile *, const void *, size_t, int, int, int),
                    qt_type wt, int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                    int n_rows, int n_cols) {
    ig_tile t;
    ig_col *col = qt_malloc((size_t)n_cols * IG_NB * sizeof(ig_col));
    int nb_all = n / 32;
    for (int l0 = 0; l0 < nb_all; l0 += IG_NB) {
        int nb = QT_MIN(IG_NB, nb_all - l0);
        ig_columns(col, x, xs, l0, nb, n_cols, wt);
        for (int r = 0; r < n_rows; r += IG_ROWS) {
            int rm = QT_MIN(IG_ROWS, n_rows - r);
            repack(&t, (const char *)w + (size_t)r * ws, ws, l0, nb, rm);
            for (int c = 0; c < n_cols; c += IG_COLS) {
                int rn = QT_MIN(IG_COLS, n_cols - c);
                kern[rn - 1](&t, col + (size_t)c * IG_NB, (const char *)x + (size_t)c * xs, xs, l0, nb,
                             y + (size_t)c * ys + r, ys, rm, l0 > 0);
            }
        }
    }
    qt_free(col);
}

IG_GEMM(q4_0, QT_TYPE_Q4_0)
IG_GEMM(q8_0, QT_TYPE_Q8_0)
IG_GEMM(q4_1, QT_TYPE_Q4_1)
IG_GEMM(q5_0, QT_TYPE_Q5_0)
IG_GEMM(q5_1, QT_TYPE_Q5_1)
IG_GEMM(iq4_nl, QT_TYPE_IQ4_NL)

// Q4_K x Q8_K through the same interleaved kernel: every 32-quant sub-block of
// a Q4_K row is affine, x = a*q + b with a = d*scale, b = -dmin*min, so the
// tile carries a and b per row and sub-block; the activations' per-32 sums
// come from the Q8_K bsums.
typedef struct {
    uint32_t q[IG_NB][8][IG_ROWS];
    float a[IG_NB][IG_ROWS], b[IG_NB][IG_ROWS];
} igk_tile;

// Q5_K (q5): the same with each quant's fifth bit from qh (bit 2jj for the
// low nibbles of qs[32jj ..], 2jj + 1 for the high ones), 0..31.
static void igk_repack(igk_tile *t, const void *w, size_t ws, int l0, int nb, int rm, bool q5) {
    const __m256i m4 = _mm256_set1_epi8(0xf);
    const size_t bsz = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t oqs = q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    uint32_t lo[8], hi[8];
    for (int r = 0; r < IG_ROWS; r++) {
        const char *row = (const char *)w + (size_t)(r < rm ? r : 0) * ws + (size_t)(l0 / 8) * bsz;
        for (int sb = 0; sb < nb / 8; sb++) {
            const char *b = row + (size_t)sb * bsz;
            const block_q4_K *b4k = (const block_q4_K *)b;   // d, dmin, scales: the same offsets in Q5_K
            float d = r < rm ? fp16(b4k->d) : 0.0f, dmin = r < rm ? fp16(b4k->dmin) : 0.0f;
            int sc[8], mn[8];
            scales_k4(b4k->scales, sc, mn);
            __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(b + offsetof(block_q5_K, qh)))
                            : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int jj = 0; jj < 4; jj++) {   // q5_K_bit4 wants constant shifts
                __m256i bits = _mm256_loadu_si256((const __m256i *)(b + oqs + 32 * jj));
                __m256i vl = _mm256_and_si256(bits, m4), vh = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                if (q5) {
                    vl = _mm256_or_si256(vl, q5_K_bit4(qh, 2 * jj));
                    vh = _mm256_or_si256(vh, q5_K_bit4(qh, 2 * jj + 1));
                }
                _mm256_storeu_si256((__m256i *)lo, vl);
                _mm256_storeu_si256((__m256i *)hi, vh);
                int l = 8 * sb + 2 * jj;
                for (int s = 0; s < 8; s++) {
                    t->q[l][s][r] = lo[s];
                    t->q[l + 1][s][r] = hi[s];
                }
                t->a[l][r] = d * sc[2 * jj];
                t->b[l][r] = -dmin * mn[2 * jj];
                t->a[l + 1][r] = d * sc[2 * jj + 1];
                t->b[l + 1][r] = -dmin * mn[2 * jj + 1];
            }
        }
    }
}

static void igk_columns(ig_col *col, const void *x, size_t xs, int l0, int nb, int n_cols) {
    for (int j = 0; j < n_cols; j++) {
        const block_q8_K *b = (const block_q8_K *)((const char *)x + (size_t)j * xs);
        for (int l = 0; l < nb; l++) {
            const block_q8_K *bb = &b[(l0 + l) >> 3];
            int k = (l0 + l) & 7;
            col[j * IG_NB + l].d = bb->d;
            col[j * IG_NB + l].corr = bb->d * (float)(bb->bsums[2 * k] + bb->bsums[2 * k + 1]);
        }
    }
}

// Q4_K: 8 maddubs steps of |pair| <= 15*127*2 stay within int16; Q5_K's
// quants to 31 allow 4 (4 * 31*127*2 = 31496), then vpmaddwd widens.
INLINE void igk_kernel(const igk_tile *t, const ig_col *col, const void *x, size_t xs, int l0, int nb,
                       float *y, size_t ys, int rm, bool add, const int RN, const bool Q5) {
    const block_q8_K *xb[IG_COLS];
    __m256 acc[IG_COLS];
#pragma GCC unroll 6
    for (int j = 0; j < RN; j++) {
        xb[j] = (const block_q8_K *)((const char *)x + (size_t)j * xs);
        acc[j] = _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int l = 0; l < nb; l++) {
        int gl = l0 + l;
        __m256i p[IG_COLS], p32[IG_COLS];
#pragma GCC unroll 6
        for (int j = 0; j < RN; j++) p[j] = p32[j] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)t->q[l][s]);
#pragma GCC unroll 6
            for (int j = 0; j < RN; j++) {
                p[j] = _mm256_add_epi16(p[j], _mm256_maddubs_epi16(a, bcast_dword(xb[j][gl >> 3].qs + 32 * (gl & 7) + 4 * s)));
                PIN(p[j]);
            }
            if (Q5 && s == 3)
#pragma GCC unroll 6
                for (int j = 0; j < RN; j++) {
                    p32[j] = _mm256_madd_epi16(p[j], ones);
                    p[j] = _mm256_setzero_si256();
                }
        }
        __m256 va = _mm256_loadu_ps(t->a[l]), vb = _mm256_loadu_ps(t->b[l]);
#pragma GCC unroll 6
        for (int j = 0; j < RN; j++) {
            const ig_col *c = &col[j * IG_NB + l];
            __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(p32[j], _mm256_madd_epi16(p[j], ones)));
            acc[j] = _mm256_fmadd_ps(va, _mm256_mul_ps(_mm256_set1_ps(c->d), f), acc[j]);
            acc[j] = _mm256_fmadd_ps(vb, _mm256_set1_ps(c->corr), acc[j]);
        }
    }
#pragma GCC unroll 6
    for (int j = 0; j < RN; j++) ig_store(y, ys, acc[j], j, rm, add);
}

#define IGK_N(k)                                                                                          \
    static void igk_q4_K_##k(const igk_tile *t, const ig_col *c, const void *x, size_t xs, int l0, int nb, \
                             float *y, size_t ys, int rm, bool add) { igk_kernel(t, c, x, xs, l0, nb, y, ys, rm, add, k, false); } \
    static void igk_q5_K_##k(const igk_tile *t, const ig_col *c, const void *x, size_t xs, int l0, int nb, \
                             float *y, size_t ys, int rm, bool add) { igk_kernel(t, c, x, xs, l0, nb, y, ys, rm, add, k, true); }
IGK_N(1) IGK_N(2) IGK_N(3) IGK_N(4) IGK_N(5) IGK_N(6)
#undef IGK_N

typedef void (*igk_fn)(const igk_tile *, const ig_col *, const void *, size_t, int, int, float *, size_t, int, bool);

static void igk_gemm(bool q5, int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                     int n_rows, int n_cols) {
    static const igk_fn k4[IG_COLS] = {igk_q4_K_1, igk_q4_K_2, igk_q4_K_3, igk_q4_K_4, igk_q4_K_5, igk_q4_K_6};
    static const igk_fn k5[IG_COLS] = {igk_q5_K_1, igk_q5_K_2, igk_q5_K_3, igk_q5_K_4, igk_q5_K_5, igk_q5_K_6};
    const igk_fn *kern = q5 ? k5 : k4;
    igk_tile t;
    ig_col *col = qt_malloc((size_t)n_cols * IG_NB * sizeof(ig_col));
    int nb_all = n / 32;   // sub-blocks; IG_NB is a multiple of the 8 per super-block
    for (int l0 = 0; l0 < nb_all; l0 += IG_NB) {
        int nb = QT_MIN(IG_NB, nb_all - l0);
        igk_columns(col, x, xs, l0, nb, n_cols);
        for (int r = 0; r < n_rows; r += IG_ROWS) {
            int rm = QT_MIN(IG_ROWS, n_rows - r);
            igk_repack(&t, (const char *)w + (size_t)r * ws, ws, l0, nb, rm, q5);
            for (int c = 0; c < n_cols; c += IG_COLS) {
                int rn = QT_MIN(IG_COLS, n_cols - c);
                kern[rn - 1](&t, col + (size_t)c * IG_NB, (const char *)x + (size_t)c * xs, xs, l0, nb,
                             y + (size_t)c * ys + r, ys, rm, l0 > 0);
            }
        }
    }
    qt_free(col);
}

static void gemm_q4_K_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                           int n_rows, int n_cols) {
    igk_gemm(false, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

static void gemm_q5_K_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                           int n_rows, int n_cols) {
    igk_gemm(true, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

// Q6_K x Q8_K: quants 0..63 (stored minus 32) with an int8 scale per 16.
// Two maddubs steps fit int16 (2 * 63*127*2 = 32004), then vpmaddwd applies
// each row's scale (an int16 in both halves of the row's dword) and the sum
// stays in int32 over the super-block; the -32 offset is 32 * scale *
// sum(y) per 16-group, taken the same way from 16*sum(y) (Q8_K bsums).
#define IG6_COLS 4
#define IG6_SB (IG_K / QK_K)

typedef struct {
    uint32_t q[IG_NB][8][IG_ROWS];       // unsigned 6-bit quants, interleaved as above
    uint32_t sc[IG6_SB * 16][IG_ROWS];   // per 16-group: the row's scale in both int16 halves
    float d[IG6_SB][IG_ROWS];
} ig6_tile;

typedef struct {
    float d;                  // Q8_K scale of the super-block
    int32_t sum16[16];        // per 16-group: 16 * sum(y) in both int16 halves
} ig6_col;

static void ig6_repack(ig6_tile *t, const void *w, size_t ws, int sb0, int nsb, int rm) {
    uint32_t tmp[8];
    for (int r = 0; r < IG_ROWS; r++) {
        const block_q6_K *row = (const block_q6_K *)((const char *)w + (size_t)(r < rm ? r : 0) * ws) + sb0;
        for (int sb = 0; sb < nsb; sb++) {
            const block_q6_K *b = &row[sb];
            t->d[sb][r] = r < rm ? fp16(b->d) : 0.0f;
            for (int g = 0; g < 16; g++) {
                uint16_t s = (uint16_t)(int16_t)b->scales[g];
                t->sc[sb * 16 + g][r] = (uint32_t)s | ((uint32_t)s << 16);
            }
            for (int k = 0; k < 2; k++) {
                const uint8_t *ql = b->ql + 64 * k, *qh = b->qh + 32 * k;
                __m256i q[4];
                q6_K_unpack_avx2(ql, qh, q);
                for (int u = 0; u < 4; u++) {
                    _mm256_storeu_si256((__m256i *)tmp, q[u]);
                    int l = 8 * sb + 4 * k + u;   // 32-quant unit within the chunk
                    for (int s = 0; s < 8; s++) t->q[l][s][r] = tmp[s];
                }
            }
        }
    }
}

static void ig6_columns(ig6_col *col, const void *x, size_t xs, int sb0, int nsb, int n_cols) {
    for (int j = 0; j < n_cols; j++) {
        const block_q8_K *b = (const block_q8_K *)((const char *)x + (size_t)j * xs) + sb0;
        for (int sb = 0; sb < nsb; sb++) {
            ig6_col *c = &col[j * IG6_SB + sb];
            c->d = b[sb].d;
            for (int g = 0; g < 16; g++) {
                uint16_t v = (uint16_t)(int16_t)(16 * b[sb].bsums[g]);   // |16 * sum| <= 32512
                c->sum16[g] = (int32_t)((uint32_t)v | ((uint32_t)v << 16));
            }
        }
    }
}

INLINE void ig6_kernel(const ig6_tile *t, const ig6_col *col, const void *x, size_t xs, int sb0, int nsb, float *y,
                       size_t ys, int rm, bool add, const int RN) {
    const block_q8_K *xb[IG6_COLS];
    __m256 acc[IG6_COLS];
#pragma GCC unroll 4
    for (int j = 0; j < RN; j++) {
        xb[j] = (const block_q8_K *)((const char *)x + (size_t)j * xs) + sb0;
        acc[j] = _mm256_setzero_ps();
    }
    for (int sb = 0; sb < nsb; sb++) {
        __m256i acci[IG6_COLS];
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) acci[j] = _mm256_setzero_si256();
        for (int g = 0; g < 16; g++) {   // 16-groups: unit g/2, steps 4*(g&1) .. +3
            int l = 8 * sb + g / 2, s0 = 4 * (g & 1);
            __m256i sc = _mm256_loadu_si256((const __m256i *)t->sc[sb * 16 + g]);
            __m256i a0 = _mm256_loadu_si256((const __m256i *)t->q[l][s0]);
            __m256i a1 = _mm256_loadu_si256((const __m256i *)t->q[l][s0 + 1]);
            __m256i a2 = _mm256_loadu_si256((const __m256i *)t->q[l][s0 + 2]);
            __m256i a3 = _mm256_loadu_si256((const __m256i *)t->q[l][s0 + 3]);
#pragma GCC unroll 4
            for (int j = 0; j < RN; j++) {
                const int8_t *yq = xb[j][sb].qs + 16 * g;
                __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(a0, bcast_dword(yq)),
                                              _mm256_maddubs_epi16(a1, bcast_dword(yq + 4)));
                __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(a2, bcast_dword(yq + 8)),
                                              _mm256_maddubs_epi16(a3, bcast_dword(yq + 12)));
                __m256i v = _mm256_add_epi32(_mm256_madd_epi16(p0, sc), _mm256_madd_epi16(p1, sc));
                v = _mm256_sub_epi32(v, _mm256_madd_epi16(sc, _mm256_set1_epi32(col[j * IG6_SB + sb].sum16[g])));
                acci[j] = _mm256_add_epi32(acci[j], v);
                PIN(acci[j]);
            }
        }
        __m256 d = _mm256_loadu_ps(t->d[sb]);
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(col[j * IG6_SB + sb].d)),
                                     _mm256_cvtepi32_ps(acci[j]), acc[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < RN; j++) ig_store(y, ys, acc[j], j, rm, add);
}

#define IG6_N(k) \
    static void ig6_q6_K_##k(const ig6_tile *t, const ig6_col *c, const void *x, size_t xs, int sb0, int nsb, \
                             float *y, size_t ys, int rm, bool add) { ig6_kernel(t, c, x, xs, sb0, nsb, y, ys, rm, add, k); }
IG6_N(1) IG6_N(2) IG6_N(3) IG6_N(4)
#undef IG6_N

static void gemm_q6_K_avx2(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                           int n_rows, int n_cols) {
    static void (*const kern[IG6_COLS])(const ig6_tile *, const ig6_col *, const void *, size_t, int, int, float *,
                                        size_t, int, bool) = {ig6_q6_K_1, ig6_q6_K_2, ig6_q6_K_3, ig6_q6_K_4};
    ig6_tile t;
    ig6_col *col = qt_malloc((size_t)n_cols * IG6_SB * sizeof(ig6_col));
    int nsb_all = n / QK_K;
    for (int sb0 = 0; sb0 < nsb_all; sb0 += IG6_SB) {
        int nsb = QT_MIN(IG6_SB, nsb_all - sb0);
        ig6_columns(col, x, xs, sb0, nsb, n_cols);
        for (int r = 0; r < n_rows; r += IG_ROWS) {
            int rm = QT_MIN(IG_ROWS, n_rows - r);
            ig6_repack(&t, (const char *)w + (size_t)r * ws, ws, sb0, nsb, rm);
            for (int c = 0; c < n_cols; c += IG6_COLS) {
                int rn = QT_MIN(IG6_COLS, n_cols - c);
                kern[rn - 1](&t, col + (size_t)c * IG6_SB, (const char *)x + (size_t)c * xs, xs, sb0, nsb,
                             y + (size_t)c * ys + r, ys, rm, sb0 > 0);
            }
        }
    }
    qt_free(col);
}

// ---- conversions (bit-equal to the scalar references) ----

// roundf (half away from zero) of 8 floats
INLINE __m256i round_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(v, t);
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 up = _mm256_cmp_ps(_mm256_and_ps(frac, absmask), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_andnot_ps(absmask, v));   // copysign(1, v)
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

INLINE float max_abs8x4(const float *x) {
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_and_ps(_mm256_loadu_ps(x), absmask);
    m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 8), absmask));
    m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 16), absmask));
    m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 24), absmask));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

// packs 4 vectors of 8 int32 (each within int8 range) into 32 bytes in order
INLINE __m256i pack_i32x32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void from_float_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = max_abs8x4(x);
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q0 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
        __m256i q1 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
        __m256i q2 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
        __m256i q3 = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_i32x32(q0, q1, q2, q3));
    }
}

// The reference picks the first element of largest magnitude as "max" (its
// sign decides the sign of the scale) and rounds with nearest_int (to even).
static void from_float_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0;
        for (int j = 0; j < QK_K; j += 32) amax = QT_MAX(amax, max_abs8x4(x + j));
        if (amax == 0) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (x[j] == amax || x[j] == -amax) { max = x[j]; break; }
        }
        const float iscale = -127.f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        __m256i v127 = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vs);
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(v), v127);
            }
            __m256i p = pack_i32x32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
            // bsums of the two 16-groups: widen to int16 and add horizontally
            __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(p));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(p, 1));
            __m256i s0 = _mm256_madd_epi16(w0, _mm256_set1_epi16(1));
            __m256i s1 = _mm256_madd_epi16(w1, _mm256_set1_epi16(1));
            y[i].bsums[j / 16] = (int16_t)hsum_epi32(s0);
            y[i].bsums[j / 16 + 1] = (int16_t)hsum_epi32(s1);
        }
        y[i].d = 1 / iscale;
    }
}

static void from_float_f16_avx2(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = qt_fp32_to_fp16(x[i]);
}

static void from_float_bf16_avx2(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
        r = _mm256_srli_epi32(r, 16);
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
        __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
        r = _mm256_blendv_epi8(r, qn, nan);
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = qt_fp32_to_bf16(x[i]);
}

static void from_float_f32_avx2(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

static void to_float_f16_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16(x + i));
    for (; i < n; i++) y[i] = qt_fp16_to_fp32(x[i]);
}

static void to_float_bf16_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(x + i));
    for (; i < n; i++) y[i] = qt_bf16_to_fp32(x[i]);
}

static void to_float_q8_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0)
        store_i8_scaled(y, _mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_set1_ps(fp16(x[i].d)));
}

static void to_float_q4_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0)
        store_i8_scaled(y, _mm256_sub_epi8(nibbles(x[i].qs), _mm256_set1_epi8(8)), _mm256_set1_ps(fp16(x[i].d)));
}

static void to_float_q4_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xf);
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = fp16(x[i].d), dmin = fp16(x[i].dmin);
        int sc[8], mn[8];
        scales_k4(x[i].scales, sc, mn);
        for (int j = 0; j < 4; j++, y += 64) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            store_u8_affine(y, _mm256_and_si256(bits, m4), _mm256_set1_ps(d * sc[2 * j]),
                            _mm256_set1_ps(-(dmin * mn[2 * j])));
            store_u8_affine(y + 32, _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                            _mm256_set1_ps(d * sc[2 * j + 1]), _mm256_set1_ps(-(dmin * mn[2 * j + 1])));
        }
    }
}

// Q5_K: Q4_K's affine sub-blocks on 5-bit quants (qh bit 2j for the low
// nibbles of qs[32j ..], 2j + 1 for the high ones).
static void to_float_q5_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xf);
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = fp16(x[i].d), dmin = fp16(x[i].dmin);
        int sc[8], mn[8];
        scales_k4(x[i].scales, sc, mn);
        __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++, y += 64) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), q5_K_bit4(qh, 2 * j));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), q5_K_bit4(qh, 2 * j + 1));
            store_u8_affine(y, lo, _mm256_set1_ps(d * sc[2 * j]), _mm256_set1_ps(-(dmin * mn[2 * j])));
            store_u8_affine(y + 32, hi, _mm256_set1_ps(d * sc[2 * j + 1]), _mm256_set1_ps(-(dmin * mn[2 * j + 1])));
        }
    }
}

static void to_float_q6_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    const __m256i m32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = fp16(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int k = 0; k < 2; k++, ql += 64, qh += 32, sc += 8, y += 128) {
            __m256i q[4];
            q6_K_unpack_avx2(ql, qh, q);
            for (int j = 0; j < 4; j++) {
                __m256i qs = _mm256_sub_epi8(q[j], m32);
                // each 32-run spans two 16-groups with their own scales
                __m128i lo = _mm256_castsi256_si128(qs), hi = _mm256_extracti128_si256(qs, 1);
                __m256 da = _mm256_set1_ps(d * sc[2 * j]), db = _mm256_set1_ps(d * sc[2 * j + 1]);
                float *o = y + 32 * j;
                _mm256_storeu_ps(o, _mm256_mul_ps(da, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(da, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
        }
    }
}

// ---- float helpers ----

static float dot_f32_avx2(int n, const float *x, const float *y) {
    float s;
    vec_dot_f32_avx2(n, &s, x, y);
    return s;
}


static void axpy_f32_avx2(int n, float a, const float *x, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale_f32_avx2(int n, float a, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

// ---- the table: ref's with the fast entries replaced ----

// Called once, by cpu.c, on a copy of the ref table.
void qt_kernels_fill_avx2(qt_kernel_table *kt) {
    qt_kernel_traits *t = kt->type;
    t[QT_TYPE_F32].vec_dot = vec_dot_f32_avx2;
    t[QT_TYPE_F32].gemm = gemm_f32_43_avx2;
    t[QT_TYPE_F32].from_float = from_float_f32_avx2;
    t[QT_TYPE_F16].vec_dot = vec_dot_f16_avx2;
    t[QT_TYPE_F16].gemv = qt_gemv_f16_avx2;
    t[QT_TYPE_F16].gemm = gemm_f16_43_avx2;
    t[QT_TYPE_F16].from_float = from_float_f16_avx2;
    t[QT_TYPE_F16].to_float = to_float_f16_avx2;
    t[QT_TYPE_BF16].vec_dot = vec_dot_bf16_avx2;
    t[QT_TYPE_BF16].gemv = qt_gemv_bf16_avx2;
    t[QT_TYPE_BF16].gemm = gemm_bf16_43_avx2;
    t[QT_TYPE_BF16].from_float = from_float_bf16_avx2;
    t[QT_TYPE_BF16].to_float = to_float_bf16_avx2;
    t[QT_TYPE_Q8_0].vec_dot = vec_dot_q8_0_avx2;
    t[QT_TYPE_Q8_0].gemm = gemm_q8_0_avx2;
    t[QT_TYPE_Q8_0].gemv = qt_gemv_q8_0_avx2;
    // small_max_t: TinyLlama shape, one forward of N decoding slots with and
    // without a 22-token prompt chunk (bench/bench-batch.c, QT_ISA=avx2, Zen 5,
    // 2 threads): 8 slots 85.8 ms against 120.6 with the gemv per token, 16
    // slots 162 against the tiles' 181; with the chunk (T = 26..30) the tiles
    // are 2-4% ahead. Q4_0: 8 slots 50.6 ms against 84.3, 16 slots 93.6
    // against the tiles' 140.5, and at T = 23..30 119-157 against 161-197.
    t[QT_TYPE_Q8_0].gemm_small = qt_gemm_small_q8_0_avx2;
    t[QT_TYPE_Q8_0].small_max_t = 16;
    t[QT_TYPE_Q8_0].from_float = from_float_q8_0_avx2;
    t[QT_TYPE_Q8_0].to_float = to_float_q8_0_avx2;
    t[QT_TYPE_Q4_0].vec_dot = vec_dot_q4_0_avx2;
    t[QT_TYPE_Q4_0].gemm = gemm_q4_0_avx2;
    t[QT_TYPE_Q4_0].gemv = qt_gemv_q4_0_avx2;
    t[QT_TYPE_Q4_0].gemm_small = qt_gemm_small_q4_0_avx2;
    t[QT_TYPE_Q4_0].small_max_t = 32;
    t[QT_TYPE_Q4_0].to_float = to_float_q4_0_avx2;
    t[QT_TYPE_Q8_K].from_float = from_float_q8_K_avx2;
    t[QT_TYPE_Q4_K].vec_dot = vec_dot_q4_K_avx2;
    t[QT_TYPE_Q4_K].gemv = qt_gemv_q4_K_avx2;
    t[QT_TYPE_Q4_K].gemm = gemm_q4_K_avx2;
    t[QT_TYPE_Q4_K].to_float = to_float_q4_K_avx2;
    t[QT_TYPE_Q5_K].vec_dot = vec_dot_q5_K_avx2;
    t[QT_TYPE_Q5_K].gemv = qt_gemv_q5_K_avx2;
    t[QT_TYPE_Q5_K].gemm = gemm_q5_K_avx2;
    t[QT_TYPE_Q5_K].to_float = to_float_q5_K_avx2;
    t[QT_TYPE_Q6_K].vec_dot = vec_dot_q6_K_avx2;
    t[QT_TYPE_Q6_K].gemv = qt_gemv_q6_K_avx2;
    // Q6_K (bench-kernels 1 0.3 q6_K T, 2048 x 2048, 1 thread, Zen 5, 13:57):
    // T = 2, 4, 8: 0.198, 0.307, 0.509 ms against 0.255, 0.494, 0.96-1.33 for
    // the gemv per token; T = 16: 0.978 against the tiles' 0.995
    t[QT_TYPE_Q6_K].gemm_small = qt_gemm_small_q6_K_avx2;
    t[QT_TYPE_Q6_K].small_max_t = 16;
    t[QT_TYPE_Q6_K].gemm = gemm_q6_K_avx2;
    t[QT_TYPE_Q6_K].to_float = to_float_q6_K_avx2;
    qt_nf4_set_avx2(t);   // nf4-avx2.c
    qt_q3_K_set_avx2(t);  // q3k-avx2.c
    qt_legacy_set_avx2(t);  // legacy-avx2.c
    // their gemm tiles, gemv and gemm_small (gemv-avx2.c) where the table
    // pairs them with Q8_0 (as kernels-ref.c does); gemm_small up to 16
    // tokens (bench-batch, TinyLlama Q5_0: level with the tiles at 16, BENCHMARKS.md)
    const qt_gemm_fn legacy_gemm[] = {gemm_q4_1_avx2, gemm_q5_0_avx2, gemm_q5_1_avx2, gemm_iq4_nl_avx2};
    const qt_gemv_fn legacy_gemv[] = {qt_gemv_q4_1_avx2, qt_gemv_q5_0_avx2, qt_gemv_q5_1_avx2, qt_gemv_iq4_nl_avx2};
    const qt_gemm_fn legacy_small[] = {qt_gemm_small_q4_1_avx2, qt_gemm_small_q5_0_avx2, qt_gemm_small_q5_1_avx2,
                                       qt_gemm_small_iq4_nl_avx2};
    qt_legacy_set_products_x86(t, legacy_gemm, legacy_gemv, legacy_small, 16);
    kt->dot_f32 = dot_f32_avx2;
    kt->dot_f32_f16 = dot_f32_f16_avx2;
    kt->axpy_f32 = axpy_f32_avx2;
    kt->scale_f32 = scale_f32_avx2;
    kt->f32 = (qt_gemm_ops){
        .gemm_acc = qt_gemm_acc_f32_avx2, .gemm_acc_w = qt_gemm_acc_w_f32_avx2, .gemm_xwt = qt_gemm_xwt_f32_avx2,
        .pack_x_size = qt_gemm_pack_x_size_f32_avx2, .pack_x = qt_gemm_pack_x_f32_avx2,
    };
    kt->bf16 = (qt_gemm_ops){0};   // no bf16 dot product before AVX-512 BF16: QT_PREC_BF16 runs as F32
    qt_vecmath_set_avx2(kt);
}
