// kernels-avx512vnni.c: the avx512-vnni table (AVX-512 VNNI: Ice Lake,
// Cascade Lake, Zen 4 and later), on top of the avx512 table: Q8_0 and Q4_0
// on vpdpbusd: the dots (two 32-quant blocks per zmm) and the prefill gemm
// (16 interleaved weight rows per zmm, on the file's layout: no persistent
// repacking, so training shares the weights), also for Q4_1, Q5_0, Q5_1 and
// IQ4_NL; the same gemm for Q4_K, Q5_K and Q6_K against Q8_K. The decode
// kernels (gemv) of all of them are gemv-avx512vnni.c's.
// Follows ggml-cpu/arch/x86/quants.c (the AVX512 VNNI paths).
#include "kernels/simd-x86.h"

#include <stddef.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/legacy-kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/quants-avx2.h"
#include "kernels/vecmath-internal.h"
#include "quant/blocks.h"

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

// ---- prefill gemm for the 32-element types (T > 1) ----
//
// The AVX2 table's interleaved gemm (kernels-avx2.c, ig_*) at 512 bits on
// vpdpbusd: 16 weight rows are unpacked to signed bytes (Q4_0: nibble - 8;
// Q5_0: 5 bits - 16; Q4_1 / Q5_1: the unsigned quants; IQ4_NL: the code
// book's values) and interleaved so that one zmm holds 4 consecutive quants
// of each row (lane r = row r); one activation dword (4 quants, stored + 128
// as unsigned bytes) broadcast to all lanes gives 16 rows' 4-term dots per
// vpdpbusd, u8 x s8 as the instruction wants, without horizontal sums. The
// + 128 comes back out per block as 128 * (sum of the row's quants),
// computed at repack. Per 32-quant block and column: 8 vpdpbusd, one
// conversion, one FMA with the 16 rows' scales times the column's scale;
// Q4_1 / Q5_1 add one FMA for the min: m_w * (d_x * sum of the column's
// quants). Integer sums are exact, so the result equals ref's vec_dot up to
// the float summation order.

#define V_ROWS 16
#define V_K 2048                  // K chunk: 16 rows x 2048 quants = 32 KiB of tile
#define V_NB (V_K / 32)
#define V_COLS 8                  // activation columns per register group

typedef struct {
    uint32_t q[V_NB][8][V_ROWS];   // [block][dword s][row]: quants 4s..4s+3 (signed bytes)
    float d[V_NB][V_ROWS];         // weight scales (0 for padding rows)
    float c[V_NB][V_ROWS];         // 128 * sum of the block's quants, as float
    float m[V_NB][V_ROWS];         // Q4_1 / Q5_1: the mins (0 for padding rows)
} v_tile;

typedef struct {
    uint8_t q[V_NB][32];           // activation quants + 128
    float d[V_NB];
    float s[V_NB];                 // d * (sum of the quants): the min's factor
} v_col;

// z[k] = [8 dwords of row k | 8 dwords of row k + 8], k < 8 -> o[s] = dword s
// of rows 0..15: two 8 x 8 transposes side by side (unpacks within 128-bit
// lanes, then one two-source qword permute per output)
static inline __attribute__((always_inline)) void transpose16x8(const __m512i z[8], __m512i o[8]) {
    __m512i t[8], u[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(z[2 * k], z[2 * k + 1]);       // rows 2k, 2k+1: dwords 0 1 | 4 5
        t[2 * k + 1] = _mm512_unpackhi_epi32(z[2 * k], z[2 * k + 1]);   // dwords 2 3 | 6 7
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {   // rows 0..3, 4..7 (and 8..11, 12..15)
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);       // dword 0 | 4
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);       // dword 1 | 5
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);   // dword 2 | 6
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);   // dword 3 | 7
    }
    // u[i] (i < 4): 128-bit lanes [rows 0-3 dword i, rows 0-3 dword i+4, rows 8-11 i, rows 8-11 i+4]; u[4+i]: rows 4-7, 12-15
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        o[i] = _mm512_permutex2var_epi64(u[i], lo, u[4 + i]);
        o[i + 4] = _mm512_permutex2var_epi64(u[i], hi, u[4 + i]);
    }
}

static inline __m512i pair256(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

// rows of W (rm of V_ROWS real; the others repeat row 0 with scale and min
// 0), blocks l0 .. l0+nb; wt a constant after inlining
static inline __attribute__((always_inline)) void v_repack_t(v_tile *t, const void *w, size_t ws, int l0, int nb,
                                                             int rm, const qt_type wt) {
    const size_t bs = q32_block_size(wt);
    const char *row[V_ROWS];
    for (int r = 0; r < V_ROWS; r++) row[r] = (const char *)w + (size_t)(r < rm ? r : 0) * ws;
    const __m512i ones = _mm512_set1_epi8(1);
    const __m256i book = iq4_nl_book();
    for (int l = 0; l < nb; l++) {
        const size_t off = (size_t)(l0 + l) * bs;
        __m512i z[8], o[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) z[k] = pair256(q32_quants(wt, row[k] + off, book), q32_quants(wt, row[k + 8] + off, book));
        transpose16x8(z, o);
        __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            _mm512_storeu_si512((void *)t->q[l][s], o[s]);
            sum = _mm512_dpbusd_epi32(sum, ones, o[s]);   // the rows' quant sums
        }
        _mm512_storeu_ps(t->c[l], _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(128.0f)));
        for (int r = 0; r < V_ROWS; r++) {
            float d, m;
            q32_scale_min(wt, row[r] + off, &d, &m);
            t->d[l][r] = r < rm ? d : 0.0f;
            if (q32_affine(wt)) t->m[l][r] = r < rm ? m : 0.0f;
        }
    }
}

static void v_repack(qt_type wt, v_tile *t, const void *w, size_t ws, int l0, int nb, int rm) {
    switch (wt) {
    case QT_TYPE_Q4_0: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_Q4_0); break;
    case QT_TYPE_Q8_0: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_Q8_0); break;
    case QT_TYPE_Q4_1: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_Q4_1); break;
    case QT_TYPE_Q5_0: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_Q5_0); break;
    case QT_TYPE_Q5_1: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_Q5_1); break;
    default: v_repack_t(t, w, ws, l0, nb, rm, QT_TYPE_IQ4_NL); break;
    }
}

// the activation columns' blocks l0 .. l0+nb; sums: their quant sums (for the mins)
static void v_columns(v_col *col, const void *x, size_t xs, int l0, int nb, int n_cols, bool sums) {
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int j = 0; j < n_cols; j++) {
        const block_q8_0 *b = (const block_q8_0 *)((const char *)x + (size_t)j * xs) + l0;
        for (int l = 0; l < nb; l++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)b[l].qs);
            _mm256_storeu_si256((__m256i *)col[j].q[l], _mm256_xor_si256(q, bias));
            col[j].d[l] = fp16(b[l].d);
            // the quants' sum (|sum| <= 4064: exact in float) times d
            if (sums) col[j].s[l] = col[j].d[l] * hsum_ps(_mm256_cvtepi32_ps(dot_u8(_mm256_set1_epi8(1), q)));
        }
    }
}

static inline __attribute__((always_inline)) void v_kernel(const v_tile *t, const v_col *col, int nb, float *y,
                                                           size_t ys, int rm, bool add, const int RN, const bool affine) {
    __m512 acc[V_COLS];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int l = 0; l < nb; l++) {
        __m512i p[V_COLS];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) p[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i a = _mm512_loadu_si512((const void *)t->q[l][s]);
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) {
                int32_t v;
                memcpy(&v, col[j].q[l] + 4 * s, 4);
                p[j] = _mm512_dpbusd_epi32(p[j], _mm512_set1_epi32(v), a);
            }
        }
        __m512 da = _mm512_loadu_ps(t->d[l]), ca = _mm512_loadu_ps(t->c[l]);
        __m512 ma = affine ? _mm512_loadu_ps(t->m[l]) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m512 f = _mm512_sub_ps(_mm512_cvtepi32_ps(p[j]), ca);   // exact: |values| < 2^24
            acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(da, _mm512_set1_ps(col[j].d[l])), f, acc[j]);
            if (affine) acc[j] = _mm512_fmadd_ps(ma, _mm512_set1_ps(col[j].s[l]), acc[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) {
        float *o = y + (size_t)j * ys;
        __mmask16 m = (__mmask16)((1u << rm) - 1);
        __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), acc[j]) : acc[j];
        _mm512_mask_storeu_ps(o, m, v);
    }
}

typedef void (*v_kernel_fn)(const v_tile *, const v_col *, int, float *, size_t, int, bool);
#define V_KERNEL(rn)                                                                                       \
    static void v_kernel_##rn(const v_tile *t, const v_col *col, int nb, float *y, size_t ys, int rm, bool add) { \
        v_kernel(t, col, nb, y, ys, rm, add, rn, false);                                                   \
    }                                                                                                      \
    static void v_kernel_aff_##rn(const v_tile *t, const v_col *col, int nb, float *y, size_t ys, int rm, bool add) { \
        v_kernel(t, col, nb, y, ys, rm, add, rn, true);                                                    \
    }
V_KERNEL(1) V_KERNEL(2) V_KERNEL(3) V_KERNEL(4) V_KERNEL(5) V_KERNEL(6) V_KERNEL(7) V_KERNEL(8)
#undef V_KERNEL
static const v_kernel_fn v_kernels[2][V_COLS] = {
    {v_kernel_1, v_kernel_2, v_kernel_3, v_kernel_4, v_kernel_5, v_kernel_6, v_kernel_7, v_kernel_8},
    {v_kernel_aff_1, v_kernel_aff_2, v_kernel_aff_3, v_kernel_aff_4, v_kernel_aff_5, v_kernel_aff_6, v_kernel_aff_7,
     v_kernel_aff_8}};

static void v_gemm(qt_type wt, int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                   int n_rows, int n_cols) {
    v_tile *t = qt_kernel_scratch(QT_SCRATCH_GEMM, sizeof(v_tile) + (size_t)n_cols * sizeof(v_col));
    v_col *col = (v_col *)(t + 1);
    const v_kernel_fn *kern = v_kernels[q32_affine(wt)];
    int nb_all = n / 32;
    for (int l0 = 0; l0 < nb_all; l0 += V_NB) {
        int nb = QT_MIN(V_NB, nb_all - l0);
        v_columns(col, x, xs, l0, nb, n_cols, q32_affine(wt));
        for (int r = 0; r < n_rows; r += V_ROWS) {
            int rm = QT_MIN(V_ROWS, n_rows - r);
            v_repack(wt, t, (const char *)w + (size_t)r * ws, ws, l0, nb, rm);
            for (int c = 0; c < n_cols; c += V_COLS) {
                int rn = QT_MIN(V_COLS, n_cols - c);
                kern[rn - 1](t, col + c, nb, y + (size_t)c * ys + r, ys, rm, l0 > 0);
            }
        }
    }
}

#define V_GEMM(name, wt)                                                                                   \
    static void gemm_##name##_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, \
                                         size_t ys, int n_rows, int n_cols) {                              \
        v_gemm(wt, n, w, ws, x, xs, y, ys, n_rows, n_cols);                                                \
    }
V_GEMM(q4_0, QT_TYPE_Q4_0)
V_GEMM(q8_0, QT_TYPE_Q8_0)
V_GEMM(q4_1, QT_TYPE_Q4_1)
V_GEMM(q5_0, QT_TYPE_Q5_0)
V_GEMM(q5_1, QT_TYPE_Q5_1)
V_GEMM(iq4_nl, QT_TYPE_IQ4_NL)
#undef V_GEMM

// ---- prefill gemm for Q4_K, Q5_K and Q6_K weights (T > 1), activations in Q8_K ----
//
// The same 16 interleaved rows per zmm as above, a sub-block at a time: the
// tile holds the rows' unsigned quants (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63:
// the u8 operand of vpdpbusd; the activation's signed quants are broadcast 4
// at a time, so no +128 offset) in the block's element order, and per
// sub-block the 16 rows' scales. Per sub-block and column: vpdpbusd over its
// dwords give the 16 rows' exact integer dots, one vpmulld by the scales and
// one add sum the super-block in int32 (Q5_K <= 8 * 63 * 32 * 31 * 128,
// Q6_K <= 16 * 128 * 16 * 63 * 128, both < 2^31). The offsets meet the
// activation's sub-block sums in vpdpwssd (offset pairs of the 16 rows against
// a broadcast pair of sums): Q4_K/Q5_K's 6-bit mins (times dmin), Q6_K's
// 32 * scale (times d, its quants being stored plus 32). Per super-block and
// column one conversion each and two FMAs with d and dmin times the column's
// scale.
// Sub-blocks per super-block: 8 of 32 quants (Q4_K, Q5_K) or 16 of 16 (Q6_K).

#define K_NSB 8                     // super-blocks per K chunk (2048 quants)

typedef struct {
    uint32_t q[K_NSB][QK_K / 4][V_ROWS];   // [super-block][dword s][row]: quants 4s..4s+3
    int32_t sc[K_NSB][16][V_ROWS];         // sub-block scales
    int32_t mn[K_NSB][8][V_ROWS];          // offsets of sub-blocks 2p, 2p+1 as an int16 pair
    float d[K_NSB][V_ROWS], dmin[K_NSB][V_ROWS];   // 0 for padding rows
} k_tile;

typedef struct {
    int8_t q[K_NSB][QK_K];
    int32_t bs[K_NSB][8];           // quant sums of sub-blocks 2p, 2p+1 as an int16 pair
    float d[K_NSB];
} k_col;

// 16 rows' 32 quants (row k low half, row k + 8 high) -> tile dwords s0 .. s0+7
static inline __attribute__((always_inline)) void k_store32(k_tile *t, int l, int s0, const __m512i z[8]) {
    __m512i o[8];
    transpose16x8(z, o);
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) _mm512_storeu_si512((void *)t->q[l][s0 + s], o[s]);
}

// rows of W (rm of V_ROWS real; the others repeat row 0 with scale 0), super-blocks l0 .. l0+nb
static void k_repack_q45(k_tile *t, const void *w, size_t ws, int l0, int nb, int rm, bool q5) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), b4 = _mm512_set1_epi8(0x10);
    const size_t bsz = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t oqs = q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const char *row[V_ROWS];
    for (int r = 0; r < V_ROWS; r++) row[r] = (const char *)w + (size_t)(r < rm ? r : 0) * ws + (size_t)l0 * bsz;
    for (int l = 0; l < nb; l++) {
        const char *blk[V_ROWS];
        for (int r = 0; r < V_ROWS; r++) blk[r] = row[r] + (size_t)l * bsz;
        __m512i qh[8];
        if (q5)
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                qh[k] = pair256(_mm256_loadu_si256((const __m256i *)(blk[k] + offsetof(block_q5_K, qh))),
                                _mm256_loadu_si256((const __m256i *)(blk[k + 8] + offsetof(block_q5_K, qh))));
        for (int p = 0; p < 4; p++) {
            __m512i lo[8], hi[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m512i v = pair256(_mm256_loadu_si256((const __m256i *)(blk[k] + oqs + 32 * p)),
                                    _mm256_loadu_si256((const __m256i *)(blk[k + 8] + oqs + 32 * p)));
                lo[k] = _mm512_and_si512(v, m4);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (q5) {   // fifth bit: qh bit 2p for sub-block 2p, bit 2p + 1 for 2p + 1
                    const __mmask64 ml = _mm512_test_epi8_mask(qh[k], _mm512_set1_epi8((char)(1 << (2 * p))));
                    const __mmask64 mh = _mm512_test_epi8_mask(qh[k], _mm512_set1_epi8((char)(2 << (2 * p))));
                    lo[k] = _mm512_or_si512(lo[k], _mm512_maskz_mov_epi8(ml, b4));
                    hi[k] = _mm512_or_si512(hi[k], _mm512_maskz_mov_epi8(mh, b4));
                }
            }
            k_store32(t, l, 16 * p, lo);
            k_store32(t, l, 16 * p + 8, hi);
        }
        // scales and mins: per row [sc0..7, mn0..7] widened to words = 8 dwords of
        // (sc 2p, sc 2p+1) and (mn 2p, mn 2p+1) pairs, transposed like the quants
        __m512i z[8], o[8];
        uint32_t dd[V_ROWS];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            z[k] = pair256(_mm256_cvtepu8_epi16(q4_K_scales(blk[k])), _mm256_cvtepu8_epi16(q4_K_scales(blk[k + 8])));
        transpose16x8(z, o);
        const __m512i lo16 = _mm512_set1_epi32(0xffff);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            _mm512_storeu_si512((void *)t->sc[l][2 * p], _mm512_and_si512(o[p], lo16));
            _mm512_storeu_si512((void *)t->sc[l][2 * p + 1], _mm512_srli_epi32(o[p], 16));
            _mm512_storeu_si512((void *)t->mn[l][p], o[4 + p]);
        }
        for (int r = 0; r < V_ROWS; r++) memcpy(&dd[r], blk[r], 4);   // d, dmin (Q5_K: Q4_K's offsets)
        __m512i v = _mm512_loadu_si512((const void *)dd);
        const __mmask16 real = (__mmask16)((1u << rm) - 1);
        _mm512_storeu_ps(t->d[l], _mm512_maskz_mov_ps(real, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))));
        _mm512_storeu_ps(t->dmin[l], _mm512_maskz_mov_ps(real, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)))));
    }
}

// Q6_K: quant e of a half n (128 quants) is ql[64n + (e & 63)]'s low (e < 64)
// or high nibble plus qh[32n + (e & 31)] bits 2 (e / 32) .. +1 as bits 4, 5
// (ggml's dequantize_row_q6_K); the tile keeps them unsigned (0..63).
static void k_repack_q6(k_tile *t, const void *w, size_t ws, int l0, int nb, int rm) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const block_q6_K *row[V_ROWS];
    for (int r = 0; r < V_ROWS; r++) row[r] = (const block_q6_K *)((const char *)w + (size_t)(r < rm ? r : 0) * ws) + l0;
    for (int l = 0; l < nb; l++) {
        for (int n = 0; n < 2; n++) {
            __m512i ql[2][8], qh[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const block_q6_K *a = &row[k][l], *b = &row[k + 8][l];
                ql[0][k] = pair256(_mm256_loadu_si256((const __m256i *)(a->ql + 64 * n)),
                                   _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n)));
                ql[1][k] = pair256(_mm256_loadu_si256((const __m256i *)(a->ql + 64 * n + 32)),
                                   _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32)));
                qh[k] = pair256(_mm256_loadu_si256((const __m256i *)(a->qh + 32 * n)),
                                _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n)));
            }
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {   // quants 128n + 32g .. +31
                __m512i z[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    __m512i v = ql[g & 1][k];
                    __m512i lo4 = g < 2 ? _mm512_and_si512(v, m4) : _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                    // bits 2g, 2g+1 of each byte to bits 4, 5 (16-bit shifts: the bits crossing a byte fall outside 0x30)
                    __m512i h = g == 0 ? _mm512_slli_epi16(qh[k], 4) : g == 1 ? _mm512_slli_epi16(qh[k], 2)
                              : g == 2 ? qh[k] : _mm512_srli_epi16(qh[k], 2);
                    z[k] = _mm512_or_si512(lo4, _mm512_and_si512(h, m30));
                }
                k_store32(t, l, 32 * n + 8 * g, z);
            }
        }
        // 16 int8 scales per row widened to words = 8 dwords of (sc 2p, sc 2p+1)
        __m512i z[8], o[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            z[k] = pair256(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)row[k][l].scales)),
                           _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)row[k + 8][l].scales)));
        transpose16x8(z, o);
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            _mm512_storeu_si512((void *)t->sc[l][2 * p], _mm512_srai_epi32(_mm512_slli_epi32(o[p], 16), 16));
            _mm512_storeu_si512((void *)t->sc[l][2 * p + 1], _mm512_srai_epi32(o[p], 16));
            _mm512_storeu_si512((void *)t->mn[l][p], _mm512_slli_epi16(o[p], 5));   // 32 * scale, |.| <= 4096
        }
        uint16_t dh[V_ROWS];
        for (int r = 0; r < V_ROWS; r++) dh[r] = row[r][l].d;
        const __mmask16 real = (__mmask16)((1u << rm) - 1);
        __m512 d = _mm512_maskz_mov_ps(real, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dh)));
        _mm512_storeu_ps(t->d[l], d);
        _mm512_storeu_ps(t->dmin[l], d);
    }
}

// nsub: sub-blocks per super-block (8: sums over 32 quants pair up bsums
// 4p .. 4p+3; 16: bsums 2p, 2p+1 as they are)
static void k_columns(k_col *col, const void *x, size_t xs, int l0, int nb, int n_cols, int nsub) {
    for (int c = 0; c < n_cols; c++) {
        const block_q8_K *b = (const block_q8_K *)((const char *)x + (size_t)c * xs) + l0;
        for (int l = 0; l < nb; l++) {
            memcpy(col[c].q[l], b[l].qs, QK_K);
            for (int p = 0; p < nsub / 2; p++) {
                int s0, s1;
                if (nsub == 8) {
                    s0 = b[l].bsums[4 * p] + b[l].bsums[4 * p + 1];
                    s1 = b[l].bsums[4 * p + 2] + b[l].bsums[4 * p + 3];
                } else {
                    s0 = b[l].bsums[2 * p];
                    s1 = b[l].bsums[2 * p + 1];
                }
                col[c].bs[l][p] = (int32_t)((uint32_t)(uint16_t)s0 | ((uint32_t)(uint16_t)s1 << 16));
            }
            col[c].d[l] = b[l].d;
        }
    }
}

// no_sanitize("undefined"): the kernel's only arithmetic outside the
// intrinsics is its fixed-bound indexing into the tile and column panels,
// and clang's UBSan checks (with -fno-sanitize-recover, as in
// tests/cli-serve-abuse.sh) took the 16 instances from seconds to 8 minutes
// of compile time; AddressSanitizer still covers its loads and stores.
static inline __attribute__((always_inline, no_sanitize("undefined"))) void
k_kernel(const k_tile *t, const k_col *col, int nb, float *y, size_t ys, int rm, bool add, const int RN,
         const int NSUB) {
    const int DW = QK_K / 4 / NSUB;   // dwords per sub-block
    __m512 acc[V_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < RN; c++) acc[c] = _mm512_setzero_ps();
    for (int l = 0; l < nb; l++) {
        __m512i is[V_COLS];
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) is[c] = _mm512_setzero_si512();
        for (int j = 0; j < NSUB; j++) {
            __m512i p[V_COLS];
#pragma GCC unroll 8
            for (int c = 0; c < RN; c++) p[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int s = 0; s < DW; s++) {
                __m512i a = _mm512_loadu_si512((const void *)t->q[l][DW * j + s]);
#pragma GCC unroll 8
                for (int c = 0; c < RN; c++) {
                    int32_t v;
                    memcpy(&v, col[c].q[l] + 4 * (DW * j + s), 4);
                    p[c] = _mm512_dpbusd_epi32(p[c], a, _mm512_set1_epi32(v));
                }
            }
            __m512i sc = _mm512_loadu_si512((const void *)t->sc[l][j]);
#pragma GCC unroll 8
            for (int c = 0; c < RN; c++) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(p[c], sc));
        }
        __m512 dd = _mm512_loadu_ps(t->d[l]), dm = _mm512_loadu_ps(t->dmin[l]);
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            __m512i m = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int p = 0; p < NSUB / 2; p++)
                m = _mm512_dpwssd_epi32(m, _mm512_loadu_si512((const void *)t->mn[l][p]), _mm512_set1_epi32(col[c].bs[l][p]));
            __m512 yd = _mm512_set1_ps(col[c].d[l]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[c]), _mm512_mul_ps(dd, yd), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dm, yd), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < RN; c++) {
        float *o = y + (size_t)c * ys;
        __mmask16 m = (__mmask16)((1u << rm) - 1);
        __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), acc[c]) : acc[c];
        _mm512_mask_storeu_ps(o, m, v);
    }
}

typedef void (*k_kernel_fn)(const k_tile *, const k_col *, int, float *, size_t, int, bool);
#define K_KERNEL(rn)                                                                                           \
    static void k_kernel8_##rn(const k_tile *t, const k_col *col, int nb, float *y, size_t ys, int rm, bool add) {  \
        k_kernel(t, col, nb, y, ys, rm, add, rn, 8);                                                           \
    }                                                                                                          \
    static void k_kernel16_##rn(const k_tile *t, const k_col *col, int nb, float *y, size_t ys, int rm, bool add) { \
        k_kernel(t, col, nb, y, ys, rm, add, rn, 16);                                                          \
    }
K_KERNEL(1) K_KERNEL(2) K_KERNEL(3) K_KERNEL(4) K_KERNEL(5) K_KERNEL(6) K_KERNEL(7) K_KERNEL(8)
#undef K_KERNEL
static const k_kernel_fn k_kernels8[V_COLS] = {k_kernel8_1, k_kernel8_2, k_kernel8_3, k_kernel8_4,
                                               k_kernel8_5, k_kernel8_6, k_kernel8_7, k_kernel8_8};
static const k_kernel_fn k_kernels16[V_COLS] = {k_kernel16_1, k_kernel16_2, k_kernel16_3, k_kernel16_4,
                                                k_kernel16_5, k_kernel16_6, k_kernel16_7, k_kernel16_8};

static void k_gemm(qt_type wt, int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                   int n_rows, int n_cols) {
    k_tile *t = qt_kernel_scratch(QT_SCRATCH_GEMM, sizeof(k_tile) + (size_t)n_cols * sizeof(k_col));
    k_col *col = (k_col *)(t + 1);
    int nsub = wt == QT_TYPE_Q6_K ? 16 : 8;
    const k_kernel_fn *kernels = nsub == 16 ? k_kernels16 : k_kernels8;
    int nb_all = n / QK_K;
    for (int l0 = 0; l0 < nb_all; l0 += K_NSB) {
        int nb = QT_MIN(K_NSB, nb_all - l0);
        k_columns(col, x, xs, l0, nb, n_cols, nsub);
        for (int r = 0; r < n_rows; r += V_ROWS) {
            int rm = QT_MIN(V_ROWS, n_rows - r);
            const char *wr = (const char *)w + (size_t)r * ws;
            if (wt == QT_TYPE_Q6_K) k_repack_q6(t, wr, ws, l0, nb, rm);
            else k_repack_q45(t, wr, ws, l0, nb, rm, wt == QT_TYPE_Q5_K);
            for (int c = 0; c < n_cols; c += V_COLS) {
                int rn = QT_MIN(V_COLS, n_cols - c);
                kernels[rn - 1](t, col + c, nb, y + (size_t)c * ys + r, ys, rm, l0 > 0);
            }
        }
    }
}

static void gemm_q4_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                 int n_rows, int n_cols) {
    k_gemm(QT_TYPE_Q4_K, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

static void gemm_q5_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                 int n_rows, int n_cols) {
    k_gemm(QT_TYPE_Q5_K, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

static void gemm_q6_K_avx512vnni(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                 int n_rows, int n_cols) {
    k_gemm(QT_TYPE_Q6_K, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

// Called once, by cpu.c, on a copy of the avx512 table.
void qt_kernels_fill_avx512vnni(qt_kernel_table *kt) {
    kt->type[QT_TYPE_Q8_0].vec_dot = vec_dot_q8_0_avx512;
    kt->type[QT_TYPE_Q4_0].vec_dot = vec_dot_q4_0_avx512;
    kt->type[QT_TYPE_Q8_0].gemm = gemm_q8_0_avx512vnni;
    kt->type[QT_TYPE_Q4_0].gemm = gemm_q4_0_avx512vnni;
    // the legacy types where the table pairs them with Q8_0 (as kernels-ref.c does)
    const qt_gemm_fn legacy_gemm[] = {gemm_q4_1_avx512vnni, gemm_q5_0_avx512vnni, gemm_q5_1_avx512vnni,
                                      gemm_iq4_nl_avx512vnni};
    const qt_gemv_fn legacy_gemv[] = {qt_gemv_q4_1_avx512vnni, qt_gemv_q5_0_avx512vnni, qt_gemv_q5_1_avx512vnni,
                                      qt_gemv_iq4_nl_avx512vnni};
    const qt_gemm_fn legacy_small[] = {qt_gemm_small_q4_1_avx512vnni, qt_gemm_small_q5_0_avx512vnni,
                                       qt_gemm_small_q5_1_avx512vnni, qt_gemm_small_iq4_nl_avx512vnni};
    // gemm_small against the gemm's tiles: bench-batch, TinyLlama Q5_0, Zen 5,
    // ms per step (BENCHMARKS.md): 4 slots 32 / 50, 8 slots 68-72 / 59; both
    // grow linearly in between, so the gemm_small up to 6
    qt_legacy_set_products_x86(kt->type, legacy_gemm, legacy_gemv, legacy_small, 6);
    kt->type[QT_TYPE_Q8_0].gemv = qt_gemv_q8_0_avx512vnni;   // gemv-avx512vnni.c
    kt->type[QT_TYPE_Q4_0].gemv = qt_gemv_q4_0_avx512vnni;
    // small_max_t: TinyLlama shape, 8 decoding slots + a prompt chunk, Zen 5
    // (bench/bench-batch.c): Q4_0's gemm_small is ahead of the gemm's tiles
    // up to ~40 tokens (T = 23: 90 against 115 ms), Q8_0's up to ~16.
    kt->type[QT_TYPE_Q8_0].gemm_small = qt_gemm_small_q8_0_avx512vnni;
    kt->type[QT_TYPE_Q8_0].small_max_t = 16;
    kt->type[QT_TYPE_Q4_0].gemm_small = qt_gemm_small_q4_0_avx512vnni;
    kt->type[QT_TYPE_Q4_0].small_max_t = 32;
    // Q4_K (13:33-13:35, one forward of N slots): 4 slots 26-28 ms against 50-51 for
    // the tiles and 39-47 for the gemv per token; 8 slots 55 against 58-66
    // and 74-89; 16 slots 122-129 against the tiles' 85-88.
    kt->type[QT_TYPE_Q4_K].gemm_small = qt_gemm_small_q4_K_avx512vnni;
    kt->type[QT_TYPE_Q4_K].small_max_t = 8;
    kt->type[QT_TYPE_Q4_K].gemv = qt_gemv_q4_K_avx512vnni;
    kt->type[QT_TYPE_Q4_K].gemm = gemm_q4_K_avx512vnni;
    kt->type[QT_TYPE_Q5_K].gemm_small = qt_gemm_small_q5_K_avx512vnni;   // Q4_K's kernels with the fifth bit
    kt->type[QT_TYPE_Q5_K].small_max_t = 8;
    kt->type[QT_TYPE_Q5_K].gemv = qt_gemv_q5_K_avx512vnni;
    kt->type[QT_TYPE_Q5_K].gemm = gemm_q5_K_avx512vnni;
    kt->type[QT_TYPE_Q6_K].gemv = qt_gemv_q6_K_avx512vnni;
    kt->type[QT_TYPE_Q6_K].gemm_small = qt_gemm_small_q6_K_avx512vnni;
    kt->type[QT_TYPE_Q6_K].small_max_t = 8;
    kt->type[QT_TYPE_Q6_K].gemm = gemm_q6_K_avx512vnni;
}
