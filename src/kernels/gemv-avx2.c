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
// waiting on memory (measured: 6-8 GB/s per thread instead of 16-17). The
// prefetches go to L2 (prefetcht1), or to L1 in the gemv-l1 build (CPUs with
// a 48 KiB L1D): into L1 they evicted the current pass's lines on Zen 4 (32
// KiB L1D; BF16 decode 12-16 -> 13-20 tok/s, AVX2-table Q8_0 16-21 -> 21-33,
// Q4_K 24-29 -> 39-41, TinyLlama, 2 threads); on Zen 5 L1 is 2-10% ahead.
// Q4_K x Q8_K takes 8 rows per pass, a 256-element super-block at a time: each
// row's 64 quants of a step give [sub-block 2j, 2j+1] int16 sums by maddubs +
// hadd, two more hadd rounds stack 4 rows, and one madd against the 4 rows'
// 6-bit scale pairs (transposed once per super-block with byte unpacks)
// applies all sub-block scales; the mins of 8 rows meet the Q8_K bsums in 4
// madds and a hadd tree, and d / dmin of the 8 rows are converted together.
// Q5_K x Q8_K: the same passes with each row's fifth bits ORed in and its
// scales applied per row before the rows are stacked (q5_K_block8).
// Q6_K x Q8_K takes 4 rows per pass: quants unsigned (0..63) by maddubs, each
// row's signed 16-element scales by madd with a pshufb broadcast, int32 sums
// per row over the super-block and one hadd tree per super-block; the -32
// offset is 32 * sum(scale * bsum). F16 and BF16 (activations in the same
// type) take 4 rows per pass, two accumulators per row. All prefetch the next
// pass the same way.
// The legacy Q4_1, Q5_0, Q5_1 and IQ4_NL take 8 rows per pass through Q8_0's
// block dot, each row's block first unpacked to 32 signed bytes
// (quants-avx2.h); Q4_1 / Q5_1 add their mins times d_y sum(y).
// Deliberately not: persistent repacking (llama.cpp's block_q4_0x8,
// block_q4_Kx8), Q2_K, Q3_K (q3k-avx2.c has its own).
// Follows ggml-cpu/arch/x86/quants.c (the maddubs dot, the q4_K scale
// unpacking) and ggml-cpu/repack.cpp (8 rows per pass sharing the activation
// loads).
#include "kernels/simd-x86.h"
#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/quants-avx2.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

// where the next pass's rows are prefetched to (matmul-internal.h: the file
// is compiled twice)
#ifdef QT_GEMV_L1
#define QT_PF_HINT _MM_HINT_T0
#else
#define QT_PF_HINT _MM_HINT_T1
#endif

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
    for (size_t o = 0; o < step; o += 64) _mm_prefetch(pf + o, QT_PF_HINT);
}

// ---- Q4_0 ----

// the 8 rows' 16 quant bytes of their current block (row k's in the low
// half of register k, row k+4's in the high half), nibbles split
INLINE void q4_0_unpack8(const rows8 *p, __m256i lo[4], __m256i hi[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t q = offsetof(block_q4_0, qs);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p->r[k] + q))),
                                            _mm_loadu_si128((const __m128i *)(p->r[k + 4] + q)), 1);
        lo[k] = _mm256_and_si256(v, m4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
}

// the 8 rows' block dots with activation block y (scale dy, 8 * quant sum
// sy8) added to acc, from the block unpacked once (gemm_small shares it
// among tokens) and the rows' scales sc
INLINE __m256 q4_0_block8_u(const __m256i lo[4], const __m256i hi[4], __m256 sc, const block_q8_0 *y, float dy,
                            int32_t sy8, __m256 acc) {
    __m256i yl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)y->qs));
    __m256i yh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(y->qs + 16)));
    __m256i m[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        m[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[k], yl), _mm256_maddubs_epi16(hi[k], yh));
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(m[0], m[1]), _mm256_hadd_epi16(m[2], m[3]));
    __m256i d = _mm256_sub_epi32(_mm256_madd_epi16(h, _mm256_set1_epi16(1)), _mm256_set1_epi32(sy8));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(sc, _mm256_set1_ps(dy)), acc);
}

// the same for Q8_0: the weights loaded (w) and made unsigned (aw) once
INLINE __m256 q8_0_block8_u(const __m256i w[8], const __m256i aw[8], __m256 sc, const block_q8_0 *y, float dy,
                            __m256 acc) {
    __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i d[GV_ROWS];
#pragma GCC unroll 8
    for (int i = 0; i < GV_ROWS; i++)
        d[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(yq, w[i])), _mm256_set1_epi16(1));
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
    __m256i t = _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(sc, _mm256_set1_ps(dy)), acc);
}

// the 8 rows' Q8_0 quants of their current block (w) and their magnitudes (aw)
INLINE void q8_0_load8(const rows8 *p, __m256i w[GV_ROWS], __m256i aw[GV_ROWS]) {
#pragma GCC unroll 8
    for (int k = 0; k < GV_ROWS; k++) {
        w[k] = _mm256_loadu_si256((const __m256i *)(p->r[k] + offsetof(block_q8_0, qs)));
        aw[k] = _mm256_sign_epi8(w[k], w[k]);
    }
}

// acc += the 8 rows' block dots with activation block y (scale *dy, 8 * quant sum *sy8)
INLINE __m256 q4_0_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    __m256i lo[4], hi[4];
    q4_0_unpack8(p, lo, hi);
    return q4_0_block8_u(lo, hi, scales8(p), y, *dy, *sy8, acc);
}

// ---- Q8_0 ----

INLINE __m256 q8_0_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    (void)sy8;
    __m256i w[GV_ROWS], aw[GV_ROWS];
    q8_0_load8(p, w, aw);
    return q8_0_block8_u(w, aw, scales8(p), y, *dy, acc);
}

// ---- the legacy 32-element types (Q4_1, Q5_0, Q5_1, IQ4_NL) ----

// the fp16 mins (Q4_1 / Q5_1: at offset 2 of each block) of the 8 rows
INLINE __m256 mins8(const rows8 *p) {
    rows8 q;
#pragma GCC unroll 8
    for (int k = 0; k < GV_ROWS; k++) q.r[k] = p->r[k] + 2;
    return scales8(&q);
}

// Each row's block unpacked into its 32 quants as signed bytes (w;
// quants-avx2.h's q32_quants, Q4_1 / Q5_1's 0..31) and their magnitudes (aw),
// as q8_0_load8 gives Q8_0's; book: iq4_nl_book() for IQ4_NL
INLINE void q32_load8(qt_type wt, const rows8 *p, __m256i book, __m256i w[GV_ROWS], __m256i aw[GV_ROWS]) {
#pragma GCC unroll 8
    for (int k = 0; k < GV_ROWS; k++) {
        w[k] = q32_quants(wt, p->r[k], book);
        aw[k] = _mm256_sign_epi8(w[k], w[k]);
    }
}

// acc + the 8 rows' block dots with y through Q8_0's block dot; Q4_1 / Q5_1
// add the rows' mins mn times d_y sum(y) (sy8 / 8). Unpacked once (the
// gemm_small shares it among tokens).
INLINE __m256 q32_block8_u(qt_type wt, const __m256i w[GV_ROWS], const __m256i aw[GV_ROWS], __m256 sc, __m256 mn,
                           const block_q8_0 *y, float dy, int32_t sy8, __m256 acc) {
    acc = q8_0_block8_u(w, aw, sc, y, dy, acc);
    if (q32_affine(wt)) acc = _mm256_fmadd_ps(mn, _mm256_set1_ps(dy * (float)(sy8 / 8)), acc);
    return acc;
}

INLINE __m256 q32_block8(qt_type wt, const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8,
                         __m256 acc) {
    __m256i w[GV_ROWS], aw[GV_ROWS];
    q32_load8(wt, p, wt == QT_TYPE_IQ4_NL ? iq4_nl_book() : _mm256_setzero_si256(), w, aw);
    const __m256 mn = q32_affine(wt) ? mins8(p) : _mm256_setzero_ps();
    return q32_block8_u(wt, w, aw, scales8(p), mn, y, *dy, *sy8, acc);
}
INLINE __m256 q4_1_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    return q32_block8(QT_TYPE_Q4_1, p, y, dy, sy8, acc);
}
INLINE __m256 q5_0_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    return q32_block8(QT_TYPE_Q5_0, p, y, dy, sy8, acc);
}
INLINE __m256 q5_1_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    return q32_block8(QT_TYPE_Q5_1, p, y, dy, sy8, acc);
}
INLINE __m256 iq4_nl_block8(const rows8 *p, const block_q8_0 *y, const float *dy, const int32_t *sy8, __m256 acc) {
    return q32_block8(QT_TYPE_IQ4_NL, p, y, dy, sy8, acc);
}

// ---- driver ----

// One kernel per weight type: full passes of 8 contiguous-stride rows with
// prefetch of the next pass, and the partial last pass with repeated rows.
// Both sum even and odd blocks apart and add the two at the end, so a row's
// result does not depend on which pass it falls in (gemm_small below and
// other row splits give the same bits).
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
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};  /* the full pass's order */            \
        for (int i = 0; i < nb; i++) {                                                                      \
            acc[i & 1] = block8(&p, &y[i], &dy[i], &sy[i], acc[i & 1]);                                      \
            for (int r = 0; r < GV_ROWS; r++) p.r[r] += (bs);                                               \
        }                                                                                                   \
        _mm256_storeu_ps(out, _mm256_add_ps(acc[0], acc[1]));                                               \
    }

GV_KERNELS(q4_0, q4_0_block8, sizeof(block_q4_0))
GV_KERNELS(q8_0, q8_0_block8, sizeof(block_q8_0))
GV_KERNELS(q4_1, q4_1_block8, sizeof(block_q4_1))
GV_KERNELS(q5_0, q5_0_block8, sizeof(block_q5_0))
GV_KERNELS(q5_1, q5_1_block8, sizeof(block_q5_1))
GV_KERNELS(iq4_nl, iq4_nl_block8, sizeof(block_iq4_nl))

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

void GEMV_FN(qt_gemv_q4_0_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_q8_act(q4_0_full, q4_0_part, sizeof(block_q4_0), n, w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_q8_0_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_q8_act(q8_0_full, q8_0_part, sizeof(block_q8_0), n, w, ws, x, y, n_rows);
}

#define GEMV_LEGACY(name)                                                                                    \
    void GEMV_FN(qt_gemv_##name##_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) { \
        gemv_q8_act(name##_full, name##_part, sizeof(block_##name), n, w, ws, x, y, n_rows);                  \
    }
GEMV_LEGACY(q4_1)
GEMV_LEGACY(q5_0)
GEMV_LEGACY(q5_1)
GEMV_LEGACY(iq4_nl)
#undef GEMV_LEGACY

// ---- several tokens: a server's decode step (traits.gemm_small) ----
//
// The gemm contract (y[c * ys + r]) for a few columns: a full pass of 8 rows
// unpacks each weight block once (Q4_0: the nibbles split, Q8_0: |w|, the
// legacy types: their bytes and |w|, which is most of their cost) and
// takes it against every token's activation block before moving on; each
// token's arithmetic is the full pass's above in the same order (even and
// odd blocks in two accumulators, added at the end), so results equal the
// gemv's bit for bit (tests/test-kernels.c). Partial passes (fewer than 8
// rows) and rows longer than GV_CHUNK blocks run the gemv's own code per
// token. The accumulators live on the stack (16 ymm registers hold the
// unpacked block); that costs a load and a store per token and block.

// Tokens of one call (the table's small_max_t is at most this).
#define GS_MAX_T 32

// One full pass of 8 rows (a, stride s) against nt tokens: token j's blocks
// at x + j * xs, its meta at dy/sy + j * nb; out[8 * j + i] = row i, token j.
INLINE void gs_pass_t(qt_type wt, int nb, const char *a, size_t s, const char *x, size_t xs, int nt, const float *dy,
                      const int32_t *sy, const char *pf, float *out) {
    const size_t bs = q32_block_size(wt);
    const __m256i book = wt == QT_TYPE_IQ4_NL ? iq4_nl_book() : _mm256_setzero_si256();
    __m256 acc[GS_MAX_T][2];
    for (int j = 0; j < nt; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    const char *b = a + 4 * s;
    for (int i = 0; i < nb; i++, a += bs, b += bs) {
        if (pf && i % 2 == 0) prefetch_step(pf + (size_t)i * GV_ROWS * bs, 2 * GV_ROWS * bs);
        rows8 p = rows_strided(a, b, s, 3 * s);
        __m256 sc = scales8(&p);
        if (wt == QT_TYPE_Q4_0) {
            __m256i lo[4], hi[4];
            q4_0_unpack8(&p, lo, hi);
            for (int j = 0; j < nt; j++) {
                const block_q8_0 *y = (const block_q8_0 *)(x + (size_t)j * xs) + i;
                acc[j][i & 1] = q4_0_block8_u(lo, hi, sc, y, dy[(size_t)j * nb + i], sy[(size_t)j * nb + i], acc[j][i & 1]);
            }
            continue;
        }
        // Q8_0, and the legacy types unpacked to bytes as their gemv does
        __m256i w[GV_ROWS], aw[GV_ROWS];
        if (wt == QT_TYPE_Q8_0) q8_0_load8(&p, w, aw);
        else q32_load8(wt, &p, book, w, aw);
        const __m256 mn = q32_affine(wt) ? mins8(&p) : _mm256_setzero_ps();
        for (int j = 0; j < nt; j++) {
            const block_q8_0 *y = (const block_q8_0 *)(x + (size_t)j * xs) + i;
            acc[j][i & 1] = q32_block8_u(wt, w, aw, sc, mn, y, dy[(size_t)j * nb + i], sy[(size_t)j * nb + i],
                                         acc[j][i & 1]);
        }
    }
    for (int j = 0; j < nt; j++) _mm256_storeu_ps(out + 8 * j, _mm256_add_ps(acc[j][0], acc[j][1]));
}

typedef void (*gs_pass_fn)(int nb, const char *a, size_t s, const char *x, size_t xs, int nt, const float *dy,
                           const int32_t *sy, const char *pf, float *out);

static void gemm_small_q8_act(gs_pass_fn pass, qt_gemv_fn gemv, part_fn part, size_t bs, int n, const void *w,
                              size_t ws, const void *x, size_t xs, float *y, size_t ys, int n_rows, int n_cols) {
    const int nb = n / QK8_0;
    if (nb > GV_CHUNK || n_cols > GS_MAX_T) {   // the gemv per token
        for (int j = 0; j < n_cols; j++) gemv(n, w, ws, (const char *)x + (size_t)j * xs, y + (size_t)j * ys, n_rows);
        return;
    }
    char *scr = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)n_cols * QT_MAX(nb, 1) * (sizeof(float) + sizeof(int32_t)));
    float *dy = (float *)scr;
    int32_t *sy = (int32_t *)(scr + (size_t)n_cols * QT_MAX(nb, 1) * sizeof(float));
    for (int j = 0; j < n_cols; j++)
        q8_0_meta((const block_q8_0 *)((const char *)x + (size_t)j * xs), nb, dy + (size_t)j * nb, sy + (size_t)j * nb);
    const bool can_prefetch = ws == (size_t)nb * bs;
    float out[8 * GS_MAX_T];
    for (int r0 = 0; r0 < n_rows; r0 += GV_ROWS) {
        const char *a = (const char *)w + (size_t)r0 * ws;
        const int m = QT_MIN(GV_ROWS, n_rows - r0);
        if (m == GV_ROWS) {
            pass(nb, a, ws, x, xs, n_cols, dy, sy, can_prefetch && r0 + GV_ROWS < n_rows ? a + GV_ROWS * ws : NULL, out);
        } else {
            for (int j = 0; j < n_cols; j++) {
                const block_q8_0 *yb = (const block_q8_0 *)((const char *)x + (size_t)j * xs);
                part(nb, a, ws, m, yb, dy + (size_t)j * nb, sy + (size_t)j * nb, out + 8 * j);
            }
        }
        for (int j = 0; j < n_cols; j++)
            for (int i = 0; i < m; i++) y[(size_t)j * ys + r0 + i] = out[8 * j + i];
    }
}

// gemm_small of the 32-element types: each one's full pass, and its gemv and
// partial pass for what the passes do not take
#define GEMM_SMALL_Q32(name, T)                                                                                  \
    static void gs_pass_##name(int nb, const char *a, size_t s, const char *x, size_t xs, int nt, const float *dy, \
                               const int32_t *sy, const char *pf, float *out) {                                   \
        gs_pass_t(T, nb, a, s, x, xs, nt, dy, sy, pf, out);                                                      \
    }                                                                                                            \
    void GEMV_FN(qt_gemm_small_##name##_avx2)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y,  \
                                              size_t ys, int n_rows, int n_cols) {                                \
        gemm_small_q8_act(gs_pass_##name, GEMV_FN(qt_gemv_##name##_avx2), name##_part, sizeof(block_##name), n, w, \
                          ws, x, xs, y, ys, n_rows, n_cols);                                                     \
    }
GEMM_SMALL_Q32(q4_0, QT_TYPE_Q4_0)
GEMM_SMALL_Q32(q8_0, QT_TYPE_Q8_0)
GEMM_SMALL_Q32(q4_1, QT_TYPE_Q4_1)
GEMM_SMALL_Q32(q5_0, QT_TYPE_Q5_0)
GEMM_SMALL_Q32(q5_1, QT_TYPE_Q5_1)
GEMM_SMALL_Q32(iq4_nl, QT_TYPE_IQ4_NL)
#undef GEMM_SMALL_Q32

// ---- k-quants against Q8_K ----
//
// A pass covers 8 (Q4_K) or 4 (Q6_K) rows, a 256-element super-block at a time; the
// activation is used as stored (its bsums give the min / offset corrections).
// Full passes prefetch the next pass's rows, one super-block's worth per step.

INLINE uint32_t ld32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// the fp16 pairs at offset 0 of the 8 rows' blocks ({d, dmin} of Q4_K) as
// 8 floats each: *d = first halves, *m = second halves
INLINE void pairs8(const rows8 *p, __m256 *d, __m256 *m) {
    __m256i v = _mm256_setr_epi32((int)ld32(p->r[0]), (int)ld32(p->r[1]), (int)ld32(p->r[2]), (int)ld32(p->r[3]),
                                  (int)ld32(p->r[4]), (int)ld32(p->r[5]), (int)ld32(p->r[6]), (int)ld32(p->r[7]));
    // per half [d d d d m m m m], then [d x8 | m x8]
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    v = _mm256_permute4x64_epi64(v, 0xd8);
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
    *m = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
}

// int16 products of one row's 64 quants at step j (low nibbles: sub-block 2j
// against yl, high nibbles: sub-block 2j+1 against yh), pairwise summed:
// [2j x4, 2j+1 x4 | 2j x4, 2j+1 x4], 4 products per lane
INLINE __m256i q4_K_step(const char *blk, int j, __m256i yl, __m256i yh) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i v = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q4_K, qs) + 32 * j));
    __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    return _mm256_hadd_epi16(_mm256_maddubs_epi16(lo, yl), _mm256_maddubs_epi16(hi, yh));
}

// acc += d * sum - dmin * (mins . bsums) of Q4_K/Q5_K rows, times y's scale;
// sum: the rows' scaled quant dots [r0..r3 | r4..r7]
INLINE __m256 k_finish8(const rows8 *p, const __m128i u[GV_ROWS], const block_q8_K *y, __m256i sum, __m256 acc) {
    // min term: sum over sub-blocks of mn * (sum of its 32 activation quants);
    // mins of rows (0,4), (1,5), (2,6), (3,7) side by side, then two rounds of
    // hadd give [r0..r3 | r4..r7]
    __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
    __m256i bp = _mm256_broadcastsi128_si256(
        _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1)));   // |pair| <= 4064
    __m256i m04 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi64(u[0], u[4])), bp);
    __m256i m15 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi64(u[1], u[5])), bp);
    __m256i m26 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi64(u[2], u[6])), bp);
    __m256i m37 = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi64(u[3], u[7])), bp);
    __m256i mins = _mm256_hadd_epi32(_mm256_hadd_epi32(m04, m15), _mm256_hadd_epi32(m26, m37));
    __m256 d, dmin;
    pairs8(p, &d, &dmin);
    __m256 v = _mm256_fmsub_ps(d, _mm256_cvtepi32_ps(sum), _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mins)));
    return _mm256_fmadd_ps(v, _mm256_broadcast_ss(&y->d), acc);
}

// acc += the 8 rows' super-block dots with y. Per step j (64 quants), two
// more rounds of hadd leave [r0 2j, r0 2j+1, r1 .., r1 .., .. r3 2j+1 | same]
// for rows 0..3 (and 4..7) with 16 products per lane (<= 16*15*127 = 30480),
// and one madd against the rows' scale pairs in the same order applies the
// sub-block scales of all 4 rows at once.
INLINE __m256 q4_K_block8(const rows8 *p, const block_q8_K *y, __m256 acc) {
    __m128i u[GV_ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < GV_ROWS; r++) u[r] = q4_K_scales(p->r[r]);
    // scale pairs (bytes 2j, 2j+1 of each row) for rows 0..3: [r0 r1 r2 r3] pairs of steps 0,1 and 2,3
    __m128i t01 = _mm_unpacklo_epi16(u[0], u[1]), t23 = _mm_unpacklo_epi16(u[2], u[3]);
    __m128i t45 = _mm_unpacklo_epi16(u[4], u[5]), t67 = _mm_unpacklo_epi16(u[6], u[7]);
    __m256i sa01 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(t01, t23));   // [step 0 | step 1]
    __m256i sa23 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(t01, t23));   // [step 2 | step 3]
    __m256i sb01 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(t45, t67));
    __m256i sb23 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(t45, t67));
    const int8_t *q8 = y->qs;
    __m256i suma = _mm256_setzero_si256(), sumb = suma;
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256i yl = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
        __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
        __m256i h0 = q4_K_step(p->r[0], j, yl, yh), h1 = q4_K_step(p->r[1], j, yl, yh);
        __m256i h2 = q4_K_step(p->r[2], j, yl, yh), h3 = q4_K_step(p->r[3], j, yl, yh);
        __m256i ha = _mm256_hadd_epi16(_mm256_hadd_epi16(h0, h1), _mm256_hadd_epi16(h2, h3));
        __m256i h4 = q4_K_step(p->r[4], j, yl, yh), h5 = q4_K_step(p->r[5], j, yl, yh);
        __m256i h6 = q4_K_step(p->r[6], j, yl, yh), h7 = q4_K_step(p->r[7], j, yl, yh);
        __m256i hb = _mm256_hadd_epi16(_mm256_hadd_epi16(h4, h5), _mm256_hadd_epi16(h6, h7));
        __m256i sa = j < 2 ? sa01 : sa23, sb = j < 2 ? sb01 : sb23;
        // this step's scale pairs in both halves
        sa = (j & 1) ? _mm256_permute4x64_epi64(sa, 0xee) : _mm256_permute4x64_epi64(sa, 0x44);
        sb = (j & 1) ? _mm256_permute4x64_epi64(sb, 0xee) : _mm256_permute4x64_epi64(sb, 0x44);
        suma = _mm256_add_epi32(suma, _mm256_madd_epi16(ha, sa));
        sumb = _mm256_add_epi32(sumb, _mm256_madd_epi16(hb, sb));
    }
    // [r0..r3 | r4..r7]
    __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(suma, sumb, 0x20),
                                   _mm256_permute2x128_si256(suma, sumb, 0x31));
    return k_finish8(p, u, y, sum, acc);
}

// Q5_K: the fifth bit (bit j of qh[l] for quant l of sub-block j, 16) takes
// a step's pair sums to 4 * 31 * 127 = 15748, so rows are not stacked by
// hadd before the scales as in Q4_K (16 products would overflow int16): each
// row's two sub-blocks of a step meet their scales (broadcast words) in
// madds and sum in int32 per row; one hadd tree per super-block stacks the 8
// rows. Mins, d and dmin as Q4_K (the same offsets in Q5_K).
INLINE __m256 q5_K_block8(const rows8 *p, const block_q8_K *y, __m256 acc) {
    __m128i u[GV_ROWS];
    __m256i s[GV_ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < GV_ROWS; r++) {
        u[r] = q4_K_scales(p->r[r]);
        __m256i sc = _mm256_cvtepu8_epi16(u[r]);
        s[r] = q5_K_sumi(p->r[r], y->qs, _mm256_permute2x128_si256(sc, sc, 0x00));   // quants-avx2.h
    }
    // [r0 r1 r2 r3 | r0 r1 r2 r3] and the same for rows 4..7, then [r0..r3 | r4..r7]
    __m256i sa = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i sb = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(sa, sb, 0x20), _mm256_permute2x128_si256(sa, sb, 0x31));
    return k_finish8(p, u, y, sum, acc);
}

// Q6_K: 4 rows per pass, each row's 16-element scales applied by madd on its
// own (the scales are signed bytes: no vector transpose as cheap as Q4_K's),
// int32 partial sums per row over the super-block, and one hadd tree per
// super-block for the 4 rows. Quants are taken unsigned (0..63); the -32
// offset is 32 * sum(scale * bsum) per row.
#define GK6_ROWS 4

typedef struct {
    const char *r[GK6_ROWS];
} rows4;

// pshufb control: int16 scale 2j (of 8 in each 128-bit half) over the low 16
// lanes, scale 2j+1 over the high 16
INLINE __m256i q6_K_ctl(int j) {
    return _mm256_setr_epi8(4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j,
                            4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j + 2, 4 * j + 3,
                            4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3,
                            4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3);
}

// One half (k = 0, 1: elements 128k..128k+127) of a Q6_K super-block
// unpacked: quants unsigned (0..63) and, per 32 of them, its two scales as
// int16 spread over the low and high 16 lanes.
// sc8: the block's 16 scales (one load for both halves and the offset)
INLINE void q6_K_half(const block_q6_K *b, __m128i sc8, int k, __m256i q[4], __m256i sv[4]) {
    // this half's 8 scales (int16) in both 128-bit halves
    __m256i s = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(k ? _mm_unpackhi_epi64(sc8, sc8) : sc8));
    q6_K_unpack_avx2(b->ql + 64 * k, b->qh + 32 * k, q);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        sv[j] = _mm256_shuffle_epi8(s, q6_K_ctl(j));
    }
}

// acc + the half's scaled dot with the activation quants q8 (128 of them)
INLINE __m256i q6_K_half_dot(const __m256i q[4], const __m256i sv[4], const int8_t *q8, __m256i acc) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        // pairs of 63 * 127: <= 16002, no int16 overflow
        __m256i pr = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, sv[j]));
    }
    return acc;
}

// 32 * sum(scale * bsum): the -32 offset of the unsigned quants (8 lanes)
INLINE __m256i q6_K_off(__m128i sc8, const block_q8_K *y) {
    __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    return _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y->bsums)), 5);
}

// int32 sums (8 lanes) of one row's super-block dot with y, quants unsigned,
// minus 32 * the scaled activation sums. The gemv's own loop (each scale
// shuffle next to its use: 4% faster from L2 than q6_K_half + q6_K_half_dot,
// which gemm_small shares across tokens; the integers are the same).
INLINE __m256i q6_K_row(const char *blk, const block_q8_K *y) {
    const block_q6_K *b = (const block_q6_K *)blk;
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)b->scales);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        __m256i s = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(k ? _mm_unpackhi_epi64(sc8, sc8) : sc8));
        const int8_t *q8 = y->qs + 128 * k;
        __m256i q[4];
        q6_K_unpack_avx2(b->ql + 64 * k, b->qh + 32 * k, q);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i pr = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, _mm256_shuffle_epi8(s, q6_K_ctl(j))));
        }
    }
    return _mm256_sub_epi32(acc, q6_K_off(sc8, y));
}

INLINE uint64_t ld16_at(const char *p, size_t o) { return ld16(p + o); }

// the 4 rows' super-block sums (lane r = row r) from their 8-lane partial sums
INLINE __m128i q6_K_sum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    // [r0 r0 r1 r1 | ..], [r0 r1 r2 r3 | r0 r1 r2 r3], then the halves added
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

// the 4 rows' super-block scales d as 4 floats (of super-block i)
INLINE __m128 q6_K_d4_at(const rows4 *p, int i) {
    const size_t od = (size_t)i * sizeof(block_q6_K) + offsetof(block_q6_K, d);
    uint64_t dd = ld16_at(p->r[0], od) | ld16_at(p->r[1], od) << 16 | ld16_at(p->r[2], od) << 32 |
                  ld16_at(p->r[3], od) << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)dd));
}

// acc (4 lanes) += the 4 rows' super-block dots with y
INLINE __m128 q6_K_block4(const rows4 *p, const block_q8_K *y, __m128 acc) {
    __m128i s = q6_K_sum4(q6_K_row(p->r[0], y), q6_K_row(p->r[1], y), q6_K_row(p->r[2], y), q6_K_row(p->r[3], y));
    __m128 d = _mm_mul_ps(q6_K_d4_at(p, 0), _mm_broadcast_ss(&y->d));
    return _mm_fmadd_ps(_mm_cvtepi32_ps(s), d, acc);
}

// full passes (nr rows, prefetching the next pass at pf when not NULL) and
// the partial last pass (m < nr rows, the last one repeated)
#define GK_KERNELS(name, rows_t, nr, vec_t, zero, store, block, bs)                                     \
    static void name##_pass(int nb, const char *a, size_t s, int m, const void *vy, const char *pf,       \
                            float *out) {                                                               \
        const block_q8_K *y = vy;                                                                       \
        rows_t p;                                                                                       \
        for (int r = 0; r < (nr); r++) p.r[r] = a + (size_t)QT_MIN(r, m - 1) * s;                       \
        vec_t acc = zero();                                                                             \
        for (int i = 0; i < nb; i++) {                                                                  \
            if (pf) prefetch_step(pf + (size_t)i * (nr) * (bs), (nr) * (bs));                           \
            acc = block(&p, &y[i], acc);                                                                \
            for (int r = 0; r < (nr); r++) p.r[r] += (bs);                                              \
        }                                                                                               \
        store(out, acc);                                                                                \
    }

GK_KERNELS(q4_K, rows8, GV_ROWS, __m256, _mm256_setzero_ps, _mm256_storeu_ps, q4_K_block8, sizeof(block_q4_K))
GK_KERNELS(q5_K, rows8, GV_ROWS, __m256, _mm256_setzero_ps, _mm256_storeu_ps, q5_K_block8, sizeof(block_q5_K))
GK_KERNELS(q6_K, rows4, GK6_ROWS, __m128, _mm_setzero_ps, _mm_storeu_ps, q6_K_block4, sizeof(block_q6_K))

// A pass: the dots of m <= nr rows (a, rows s bytes apart) with x into out;
// n_arg is what the pass iterates over (blocks or elements), pf the next
// pass's rows to prefetch (NULL: none).
typedef void (*pass_fn)(int n_arg, const char *a, size_t s, int m, const void *x, const char *pf, float *out);

// Rows in passes of nr; the next pass's rows are prefetched only when rows
// are packed (row_bytes apart: one contiguous range).
static void gemv_passes(pass_fn pass, int nr, int n_arg, size_t row_bytes, const void *w, size_t ws, const void *x,
                        float *y, int n_rows) {
    QT_ASSERT(nr <= GV_ROWS);
    bool can_prefetch = ws == row_bytes;
    for (int r0 = 0; r0 < n_rows; r0 += nr) {
        const char *a = (const char *)w + (size_t)r0 * ws;
        int m = QT_MIN(nr, n_rows - r0);
        float out[GV_ROWS];
        const char *pf = can_prefetch && r0 + nr < n_rows ? a + (size_t)nr * ws : NULL;
        pass(n_arg, a, ws, m, x, pf, out);
        for (int i = 0; i < m; i++) y[r0 + i] = out[i];
    }
}

void GEMV_FN(qt_gemv_q4_K_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_passes(q4_K_pass, GV_ROWS, n / QK_K, (size_t)(n / QK_K) * sizeof(block_q4_K), w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_q5_K_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_passes(q5_K_pass, GV_ROWS, n / QK_K, (size_t)(n / QK_K) * sizeof(block_q5_K), w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_q6_K_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_passes(q6_K_pass, GK6_ROWS, n / QK_K, (size_t)(n / QK_K) * sizeof(block_q6_K), w, ws, x, y, n_rows);
}

// Q6_K for several tokens (traits.gemm_small): the gemv's 4-row passes; per
// super-block, each row's halves are unpacked once into registers and taken
// against every token (the int32 partial sums per row and token parked in
// L1), then q6_K_block4's reduction and FMA per token, so results equal the
// gemv's bit for bit (tests/test-kernels.c). For a Q4_K_M file's Q6_K tensors
// (attn_v, half of ffn_down, often the output) in a server's decode step.
void GEMV_FN(qt_gemm_small_q6_K_avx2)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                             int n_rows, int n_cols) {
    const int nb = n / QK_K;
    if (n_cols > GS_MAX_T) {
        for (int j = 0; j < n_cols; j++)
            qt_gemv_q6_K_avx2(n, w, ws, (const char *)x + (size_t)j * xs, y + (size_t)j * ys, n_rows);
        return;
    }
    const size_t bs = sizeof(block_q6_K);
    const bool can_prefetch = ws == (size_t)nb * bs;
    __m128 acc[GS_MAX_T];
    __m256i part[GS_MAX_T][GK6_ROWS];
    for (int r0 = 0; r0 < n_rows; r0 += GK6_ROWS) {
        const char *a = (const char *)w + (size_t)r0 * ws;
        const int m = QT_MIN(GK6_ROWS, n_rows - r0);
        const char *pf = can_prefetch && r0 + GK6_ROWS < n_rows ? a + GK6_ROWS * ws : NULL;
        rows4 p;
        for (int r = 0; r < GK6_ROWS; r++) p.r[r] = a + (size_t)QT_MIN(r, m - 1) * ws;
        for (int j = 0; j < n_cols; j++) acc[j] = _mm_setzero_ps();
        for (int i = 0; i < nb; i++) {
            if (pf) prefetch_step(pf + (size_t)i * GK6_ROWS * bs, GK6_ROWS * bs);
            for (int r = 0; r < GK6_ROWS; r++) {
                const block_q6_K *b = (const block_q6_K *)p.r[r] + i;
                const __m128i sc8 = _mm_loadu_si128((const __m128i *)b->scales);
                for (int k = 0; k < 2; k++) {
                    __m256i q[4], sv[4];
                    q6_K_half(b, sc8, k, q, sv);
                    for (int j = 0; j < n_cols; j++) {
                        const block_q8_K *yb = (const block_q8_K *)((const char *)x + (size_t)j * xs) + i;
                        part[j][r] = q6_K_half_dot(q, sv, yb->qs + 128 * k, k ? part[j][r] : _mm256_setzero_si256());
                    }
                }
                for (int j = 0; j < n_cols; j++)
                    part[j][r] = _mm256_sub_epi32(part[j][r], q6_K_off(sc8, (const block_q8_K *)((const char *)x + (size_t)j * xs) + i));
            }
            const __m128 dw = q6_K_d4_at(&p, i);
            for (int j = 0; j < n_cols; j++) {
                const block_q8_K *yb = (const block_q8_K *)((const char *)x + (size_t)j * xs) + i;
                __m128i s4 = q6_K_sum4(part[j][0], part[j][1], part[j][2], part[j][3]);
                acc[j] = _mm_fmadd_ps(_mm_cvtepi32_ps(s4), _mm_mul_ps(dw, _mm_broadcast_ss(&yb->d)), acc[j]);
            }
        }
        for (int j = 0; j < n_cols; j++) {
            float out[GK6_ROWS];
            _mm_storeu_ps(out, acc[j]);
            for (int r = 0; r < m; r++) y[(size_t)j * ys + r0 + r] = out[r];
        }
    }
}

// ---- F16 / BF16 against the same type ----
//
// 4 rows per pass, two accumulators per row (16 elements per step), F16C or a
// shift to widen; the next pass's rows are prefetched at the rate they are
// read, as above.
#define GF_ROWS 4

INLINE __m256 gf_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INLINE __m256 gf_load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
INLINE float gf_f16(uint16_t h) { return _cvtsh_ss(h); }
INLINE float gf_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define GF_KERNELS(name, LOAD, SCALAR)                                                                       \
    static void name##_pass(int n, const char *a, size_t s, int m, const void *vx, const char *pf,          \
                            float *out) {                                                                   \
        const uint16_t *x = vx;                                                                             \
        const uint16_t *w[GF_ROWS];                                                                         \
        for (int r = 0; r < GF_ROWS; r++) w[r] = (const uint16_t *)(a + (size_t)QT_MIN(r, m - 1) * s);      \
        __m256 acc[GF_ROWS][2];                                                                             \
        for (int r = 0; r < GF_ROWS; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();                      \
        int i = 0;                                                                                          \
        for (; i + 16 <= n; i += 16) {                                                                      \
            if (pf) prefetch_step(pf + (size_t)i * GF_ROWS * 2, GF_ROWS * 32);                              \
            __m256 x0 = LOAD(x + i), x1 = LOAD(x + i + 8);                                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < GF_ROWS; r++) {                                     \
                acc[r][0] = _mm256_fmadd_ps(LOAD(w[r] + i), x0, acc[r][0]);                                 \
                acc[r][1] = _mm256_fmadd_ps(LOAD(w[r] + i + 8), x1, acc[r][1]);                             \
            }                                                                                               \
        }                                                                                                   \
        if (i + 8 <= n) {                                                                                   \
            __m256 x0 = LOAD(x + i);                                                                        \
            for (int r = 0; r < GF_ROWS; r++) acc[r][0] = _mm256_fmadd_ps(LOAD(w[r] + i), x0, acc[r][0]);   \
            i += 8;                                                                                         \
        }                                                                                                   \
        __m256 s0 = _mm256_add_ps(acc[0][0], acc[0][1]), s1 = _mm256_add_ps(acc[1][0], acc[1][1]);          \
        __m256 s2 = _mm256_add_ps(acc[2][0], acc[2][1]), s3 = _mm256_add_ps(acc[3][0], acc[3][1]);          \
        /* [r0 r1 r2 r3] partial sums in each half */                                                       \
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));                          \
        _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));             \
        for (; i < n; i++)                                                                                  \
            for (int r = 0; r < GF_ROWS; r++) out[r] += SCALAR(w[r][i]) * SCALAR(x[i]);                     \
    }

GF_KERNELS(f16, gf_load_f16, gf_f16)
GF_KERNELS(bf16, gf_load_bf16, gf_bf16)

void GEMV_FN(qt_gemv_f16_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_passes(f16_pass, GF_ROWS, n, (size_t)n * 2, w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_bf16_avx2)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    gemv_passes(bf16_pass, GF_ROWS, n, (size_t)n * 2, w, ws, x, y, n_rows);
}

#ifndef QT_GEMV_L1
// this file's kernels and their L1-prefetching twins (gemv-l1-avx2.c)
static const qt_gemv_twin g_gemv_twins[] = {
    {qt_gemv_q4_0_avx2, qt_gemv_q4_0_avx2_l1},
    {qt_gemv_q8_0_avx2, qt_gemv_q8_0_avx2_l1},
    {qt_gemv_q4_1_avx2, qt_gemv_q4_1_avx2_l1},
    {qt_gemv_q5_0_avx2, qt_gemv_q5_0_avx2_l1},
    {qt_gemv_q5_1_avx2, qt_gemv_q5_1_avx2_l1},
    {qt_gemv_iq4_nl_avx2, qt_gemv_iq4_nl_avx2_l1},
    {qt_gemv_q4_K_avx2, qt_gemv_q4_K_avx2_l1},
    {qt_gemv_q5_K_avx2, qt_gemv_q5_K_avx2_l1},
    {qt_gemv_q6_K_avx2, qt_gemv_q6_K_avx2_l1},
    {qt_gemv_f16_avx2, qt_gemv_f16_avx2_l1},
    {qt_gemv_bf16_avx2, qt_gemv_bf16_avx2_l1},
};
static const qt_gemm_twin g_small_twins[] = {
    {qt_gemm_small_q4_0_avx2, qt_gemm_small_q4_0_avx2_l1},
    {qt_gemm_small_q8_0_avx2, qt_gemm_small_q8_0_avx2_l1},
    {qt_gemm_small_q4_1_avx2, qt_gemm_small_q4_1_avx2_l1},
    {qt_gemm_small_q5_0_avx2, qt_gemm_small_q5_0_avx2_l1},
    {qt_gemm_small_q5_1_avx2, qt_gemm_small_q5_1_avx2_l1},
    {qt_gemm_small_iq4_nl_avx2, qt_gemm_small_iq4_nl_avx2_l1},
    {qt_gemm_small_q6_K_avx2, qt_gemm_small_q6_K_avx2_l1},
};

void qt_gemv_prefetch_avx2(qt_kernel_traits *t, bool l1) {
    qt_gemv_twins_apply(t, l1, g_gemv_twins, QT_ARRAY_LEN(g_gemv_twins), g_small_twins, QT_ARRAY_LEN(g_small_twins));
}
#endif
