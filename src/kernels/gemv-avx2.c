// gemv-avx2.c: AVX2 multi-row kernels for T == 1 (decode), y[r] = dot(W row r,
// x) for a run of rows, on the file's own weight layout (zero-copy, shared
// with training).
//
// Q4_0 x Q8_0 takes 8 rows per pass. One register holds the 16 quant bytes of
// row r in its low half and of row r+4 in its high half; the nibbles are
// multiplied unsigned (0..15, no -8 yet) against the activation block
// broadcast to both halves, and the int16 products of the 8 rows are summed
// with two rounds of hadd (16 products per lane, at most 16*15*127 = 30480, no
// overflow) and one madd, which leaves the 8 rows' block dots in the 8 lanes
// of one register: one int->float conversion and one FMA with the 8 rows'
// scales per block instead of one horizontal sum per row. The -8 offset is
// 8 * sum(activation quants of the block), computed once per call for all rows.
// Q8_0 x Q8_0 takes 8 rows per pass the same way (abs/sign trick, then a hadd
// tree). While a pass reads its 8 rows, the next pass's 8 rows (one contiguous
// range) are prefetched linearly at the rate they will be consumed: without
// it the hardware prefetchers, facing 8 short streams, leave the kernel
// waiting on memory (measured: 6-8 GB/s per thread instead of 16-17).
// Deliberately not: persistent repacking (llama.cpp's block_q4_0x8), k-quants.
// Follows ggml-cpu/arch/x86/quants.c (the maddubs dot) and ggml-cpu/repack.cpp
// (8 rows per pass sharing the activation loads).
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

// Rows per pass. Fewer rows at the end of a range repeat the last row's
// pointer (same cache lines, nothing read out of range) and drop its results.
#define GV_ROWS 8
// Activation blocks whose scale and quant sum are precomputed on the stack;
// longer rows are done in chunks of this many blocks (n_in > 16384 only).
#define GV_CHUNK 512

// scale (float) and 8 * (sum of quants) of each Q8_0 activation block
static void q8_0_meta(const block_q8_0 *y, int nb, float *dy, int32_t *sy) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int b = 0; b < nb; b++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)y[b].qs);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        sy[b] = 8 * _mm_cvtsi128_si32(t);
        dy[b] = _cvtsh_ss(y[b].d);
    }
}

// The 8 rows of a pass at their current block: r[i] points at block b of row i.
// A full pass addresses them as a + {0, s, 2s, 3s} and a + 4s + {0, s, 2s, 3s}
// (eight addressing modes off two moving pointers, no pointer array in
// registers); the last, partial pass of a range repeats its last row.
typedef struct {
    const char *r[GV_ROWS];
} rows8;

INLINE rows8 rows_strided(const char *a, const char *b, size_t s, size_t s3) {
    return (rows8){{a, a + s, a + 2 * s, a + s3, b, b + s, b + 2 * s, b + s3}};
}

INLINE uint64_t ld16(const char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

// the fp16 scales (at offset 0 of each block) of the 8 rows as 8 floats: four
// packed in a general register, four inserted into the vector (splitting the
// work between the integer and vector ports; never narrow stores feeding a
// wide load, which stalls on store forwarding)
INLINE __m256 scales8(const rows8 *p) {
    uint64_t lo = ld16(p->r[0]) | ld16(p->r[1]) << 16 | ld16(p->r[2]) << 32 | ld16(p->r[3]) << 48;
    __m128i v = _mm_cvtsi64_si128((long long)lo);
    v = _mm_insert_epi16(v, (int)ld16(p->r[4]), 4);
    v = _mm_insert_epi16(v, (int)ld16(p->r[5]), 5);
    v = _mm_insert_epi16(v, (int)ld16(p->r[6]), 6);
    v = _mm_insert_epi16(v, (int)ld16(p->r[7]), 7);
    return _mm256_cvtph_ps(v);
}

// prefetch [pf, pf + step) (step a compile-time constant after inlining): the
// part of the next row group that matches the current block, so the next
// group streams in linearly, one group ahead, at the rate it is consumed
INLINE void prefetch_step(const char *pf, size_t step) {
#pragma GCC unroll 8
    for (size_t o = 0; o < step; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
}

// ---- Q4_0 ----

// int16 sums of products of rows (a | b) (a's quants in the low half, b's in
// the high half) with the activation block (yl = its first 16 quants in both
// halves, yh = the last 16): 4 products per lane
INLINE __m256i q4_pair(const char *ba, const char *bb, __m256i yl, __m256i yh) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t q = offsetof(block_q4_0, qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(ba + q))),
                                        _mm_loadu_si128((const __m128i *)(bb + q)), 1);
    __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, yl), _mm256_maddubs_epi16(hi, yh));
}

// acc += the 8 rows' block dots with activation block y (scale *dy, 8 * quant sum *sy8)
INLINE __m256 q4_0_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    __m256i yl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)y->qs));
    __m256i yh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(y->qs + 16)));
    __m256i m04 = q4_pair(p->r[0], p->r[4], yl, yh);
    __m256i m15 = q4_pair(p->r[1], p->r[5], yl, yh);
    __m256i m26 = q4_pair(p->r[2], p->r[6], yl, yh);
    __m256i m37 = q4_pair(p->r[3], p->r[7], yl, yh);
    // [r0 x4, r1 x4 | r4 x4, r5 x4] and [r2 .., r3 .. | r6 .., r7 ..], then
    // [r0 r0 r1 r1 r2 r2 r3 r3 | r4 r4 .. r7 r7]: 16 products per int16 lane
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(m04, m15), _mm256_hadd_epi16(m26, m37));
    __m256i d = _mm256_sub_epi32(_mm256_madd_epi16(h, _mm256_set1_epi16(1)), _mm256_set1_epi32(*sy8));
    __m256 s = _mm256_mul_ps(scales8(p), _mm256_broadcast_ss(dy));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, acc);
}

// ---- Q8_0 ----

// int32 dot of a weight block with the activation block, 8 partial lanes
INLINE __m256i q8_dot(const char *bw, __m256i yq) {
    __m256i w = _mm256_loadu_si256((const __m256i *)(bw + offsetof(block_q8_0, qs)));
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(yq, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

INLINE __m256 q8_0_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    (void)sy8;
    __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i d[GV_ROWS];
#pragma GCC unroll 8
    for (int i = 0; i < GV_ROWS; i++) d[i] = q8_dot(p->r[i], yq);
    // [r0 r0 r1 r1 | r0 r0 r1 r1] .., then [r0 r1 r2 r3 | r0 r1 r2 r3] and [r4..r7 | r4..r7]
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
    __m256i t = _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31));
    __m256 s = _mm256_mul_ps(scales8(p), _mm256_broadcast_ss(dy));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), s, acc);
}

// ---- driver ----

// One kernel per weight type: full passes of 8 contiguous-stride rows with
// prefetch of the next pass, and the partial last pass with repeated rows.
// out[i] = dot(row i, y) over nb blocks of bs bytes.
#define GV_KERNELS(name, block8, bs)                                                                        \
    static void name##_full(int nb, const char *a, size_t s, const block_q8_0 *y, const float *dy,          \
                            const int32_t *sy, const char *pf, float out[GV_ROWS]) {                        \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                     \
        const char *b = a + 4 * s;                                                                          \
        size_t s3 = 3 * s;                                                                                  \
        int i = 0;                                                                                          \
        for (; i + 2 <= nb; i += 2, a += 2 * (bs), b += 2 * (bs)) {                                         \
            if (pf) prefetch_step(pf + (size_t)i * GV_ROWS * (bs), 2 * GV_ROWS * (bs));                     \
            rows8 p0 = rows_strided(a, b, s, s3), p1 = rows_strided(a + (bs), b + (bs), s, s3);             \
            acc0 = block8(&p0, &y[i], &dy[i], &sy[i], acc0);                                                  \
            acc1 = block8(&p1, &y[i + 1], &dy[i + 1], &sy[i + 1], acc1);                                      \
        }                                                                                                   \
        if (i < nb) {                                                                                       \
            rows8 p0 = rows_strided(a, b, s, s3);                                                           \
            acc0 = block8(&p0, &y[i], &dy[i], &sy[i], acc0);                                                  \
        }                                                                                                   \
        _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));                                                   \
    }                                                                                                       \
    static void name##_part(int nb, const char *a, size_t s, int m, const block_q8_0 *y, const float *dy,   \
                            const int32_t *sy, float out[GV_ROWS]) {                                        \
        rows8 p;                                                                                            \
        for (int r = 0; r < GV_ROWS; r++) p.r[r] = a + (size_t)QT_MIN(r, m - 1) * s;                        \
        __m256 acc = _mm256_setzero_ps();                                                                   \
        for (int i = 0; i < nb; i++) {                                                                      \
            acc = block8(&p, &y[i], &dy[i], &sy[i], acc);                                                     \
            for (int r = 0; r < GV_ROWS; r++) p.r[r] += (bs);                                               \
        }                                                                                                   \
        _mm256_storeu_ps(out, acc);                                                                         \
    }

GV_KERNELS(q4_0, q4_0_block8, sizeof(block_q4_0))
GV_KERNELS(q8_0, q8_0_block8, sizeof(block_q8_0))

typedef void (*full_fn)(int nb, const char *a, size_t s, const block_q8_0 *y, const float *dy, const int32_t *sy,
                        const char *pf, float out[GV_ROWS]);
typedef void (*part_fn)(int nb, const char *a, size_t s, int m, const block_q8_0 *y, const float *dy,
                        const int32_t *sy, float out[GV_ROWS]);

static void gemv_q8_act(full_fn full, part_fn part, size_t bs, int n, const void *w, size_t ws, const void *x,
                        float *y, int n_rows) {
    int nb = n / QK8_0;
    float dy[GV_CHUNK];
    int32_t sy[GV_CHUNK];
    // the next pass is one contiguous range read at GV_ROWS * bs bytes per
    // block only when rows are packed and not split into chunks
    bool can_prefetch = ws == (size_t)nb * bs && nb <= GV_CHUNK;
    for (int b0 = 0; b0 < nb; b0 += GV_CHUNK) {
        int nc = QT_MIN(GV_CHUNK, nb - b0);
        const block_q8_0 *yb = (const block_q8_0 *)x + b0;
        q8_0_meta(yb, nc, dy, sy);
        for (int r0 = 0; r0 < n_rows; r0 += GV_ROWS) {
            const char *a = (const char *)w + (size_t)r0 * ws + (size_t)b0 * bs;
            int m = QT_MIN(GV_ROWS, n_rows - r0);
            float out[GV_ROWS];
            if (m == GV_ROWS) {
                const char *pf = can_prefetch && r0 + GV_ROWS < n_rows ? a + GV_ROWS * ws : NULL;
                full(nc, a, ws, yb, dy, sy, pf, out);
            } else {
                part(nc, a, ws, m, yb, dy, sy, out);
            }
            for (int i = 0; i < m; i++) y[r0 + i] = b0 == 0 ? out[i] : y[r0 + i] + out[i];
        }
    }
}

void qt_gemv_q4_0_avx2(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_q8_act(q4_0_full, q4_0_part, sizeof(block_q4_0), n, w, ws, x, y, n_rows);
}

void qt_gemv_q8_0_avx2(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_q8_act(q8_0_full, q8_0_part, sizeof(block_q8_0), n, w, ws, x, y, n_rows);
}
