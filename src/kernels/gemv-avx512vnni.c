// gemv-avx512vnni.c: AVX-512 VNNI multi-row kernels for T == 1 (decode),
// y[r] = dot(W row r, x) for a run of rows, on the file's own weight layout
// (zero-copy, shared with training): the avx512-vnni table's gemv for Q4_0
// and Q8_0 (x in Q8_0), Q4_K, Q5_K and Q6_K (x in Q8_K, below), and the
// legacy Q4_1, Q5_0, Q5_1 and IQ4_NL (x in Q8_0, further below).
//
// The activation row is rearranged once per call (a few KiB, L1-resident)
// into the order the weights come out of one 512-bit permute, so every
// weight byte is loaded once, unpacked in registers and multiplied with
// vpdpbusd (u8 x s8) without horizontal sums inside the row loop:
//
// Q4_0, four blocks (72 bytes) per step and row: two overlapping zmm loads
// (at 0 and 8: nothing past the four blocks is read) and one vpermt2w gather
// the four blocks' 16 nibble bytes into the four 128-bit lanes; AND / shift
// give the low (elements 0..15) and high (16..31) nibbles as unsigned bytes,
// and two vpdpbusd against the activation's matching halves leave each
// block's dot in its lane (4 partial dwords). The -8 offset enters as the
// accumulator's initial value, -2 * (activation block's quant sum) per dword,
// so the integer sums are exact. Rows go in groups of 4: their 4 results of a
// step are transposed and added (unpacks) into one zmm of 16 (row, block)
// dots, whose 16 fp16 weight scales come out of the rows' first loads with
// two vpermt2w and a blend: one conversion, one scale product and one FMA per
// 4 rows and step (per row, they cost ~10% of the memory-bound rate).
// Q8_0, two blocks (68 bytes) per step and row: loads at 0 and 4, one
// vpermt2w for the two blocks' 32 quants, XOR 0x80 makes them unsigned
// (q + 128), and the +128 comes back out through the accumulator's initial
// value -16 * (activation block's quant sum) per dword.
// Eight rows per pass share the activation loads. When rows are packed, the
// next pass's 8 rows (one contiguous range) are prefetched linearly at the
// rate this pass reads its own, as gemv-avx2.c does: on the model's
// page-cache mapping (4 KiB pages, where the hardware prefetchers stop at
// every page) this ran 7B decode at 10.4-11.2 tok/s against 7.8-9.2 with
// each row prefetched 3 KiB ahead and 7.0-7.5 with none (alternated, Zen 5).
// Strided rows (views) prefetch each row VG_AHEAD bytes ahead instead.
// Blocks past the last full step (rows of 32 * (4k + 1..3) elements) are
// summed by a scalar tail.
// Results equal ref's vec_dot up to the float summation order.
// Deliberately not: persistent repacking (llama.cpp's block_q4_0x16).
// Follows ggml-cpu/arch/x86/quants.c (the VNNI dots) and gemv-avx2.c.
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

// Rows per pass. The last, partial pass of a range repeats its last row
// (same cache lines, nothing read out of range) and drops its results.
#define VG_ROWS 8
// Strided rows: each row is prefetched this many bytes ahead of where it is read.
#define VG_AHEAD 3072

// 16 fp16 values (the low half of v) as floats
INLINE __m512 cvtph16(__m512i v) { return _mm512_cvtph_ps(_mm512_castsi512_si256(v)); }

// Prefetches go to L2 (prefetcht1) or, in the gemv-l1 build, to L1: on Zen 4
// (32 KiB L1D) pulling the next pass (9 KiB and more) into L1 evicted the
// lines the current pass and the activation were about to use (TinyLlama
// decode at 2 threads 43-46 -> 46-52 tok/s Q4_0, 18-24 -> 27-35 Q8_0, 28-33
// -> 44-49 Q4_K with prefetcht1); on Zen 5 (48 KiB) prefetcht0 is ahead
// (Q4_0 57 -> 61, Q8_0 30 -> 34, Q4_K 72 -> 77; 7B Q4_0 +7-15%).
INLINE void prefetch_range(const char *p, size_t n) {
#pragma GCC unroll 16
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, QT_PF_HINT);
}

// the prefetch of step g of row i (step: `bytes` bytes per row): pf (the next
// pass, packed rows) linearly, once per step, or else row i VG_AHEAD ahead
INLINE void vg_prefetch(const char *pf, const char *p, int g, int i, size_t bytes) {
    if (pf) {
        if (i == 0) prefetch_range(pf + (size_t)g * VG_ROWS * bytes, VG_ROWS * bytes);
    } else {
        prefetch_range(p + VG_AHEAD, bytes);
    }
}

// The rows of the pass starting at row r0 in r[] (r[0]: row r0; a partial
// last pass repeats its last row); returns how many are real.
INLINE int vg_rows(const void *w, size_t ws, int r0, int n_rows, const char *r[VG_ROWS]) {
    const char *a = (const char *)w + (size_t)r0 * ws;
    int m = QT_MIN(VG_ROWS, n_rows - r0);
    for (int i = 0; i < VG_ROWS; i++) r[i] = a + (size_t)QT_MIN(i, m - 1) * ws;
    return m;
}

// The row loop of a pass over VG_ROWS rows (r[i]: row i, repeated rows
// allowed): ns steps of `bytes` bytes per row, acc[i] = STEP (an expression
// of p, the step's bytes of row i, g and acc[i]), prefetching as
// vg_prefetch says; then each row's lanes summed into out[i].
#define VG_ROW_LOOP(ns, bytes, STEP)                                                                   \
    do {                                                                                               \
        __m512 acc[VG_ROWS];                                                                           \
        _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++) acc[i] = _mm512_setzero_ps();        \
        for (int g = 0; g < (ns); g++) {                                                               \
            _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++) {                                \
                const char *p = r[i] + (size_t)g * (bytes);                                            \
                vg_prefetch(pf, p, g, i, bytes);                                                       \
                acc[i] = (STEP);                                                                       \
            }                                                                                          \
        }                                                                                              \
        _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++) out[i] = _mm512_reduce_add_ps(acc[i]); \
    } while (0)

static int block_sum(const int8_t *q) {
    int s = 0;
    for (int j = 0; j < QK8_0; j++) s += q[j];
    return s;
}

// One step of the activation for a weight type: what the row loop loads.
typedef struct {
    int8_t q[2][64];   // Q4_0: low / high halves of 4 blocks; Q8_0: q[0] = 2 blocks, q[1] unused
    int32_t off[16];   // accumulator's initial value per dword
    float d[16];       // activation scale per dword
    float s[16];       // Q4_1 / Q5_1: d * (the block's quant sum) / 8 per dword
} vg_step;

// ---- Q4_0 ----

// Output word w of the nibble gather: block w / 8, word w % 8 of its quants,
// from the load at 0 (index < 32) or the load at 8 (index 32 + (byte - 8) / 2).
INLINE __m512i q4_0_qidx(void) {
    int16_t idx[32];
    for (int w = 0; w < 32; w++) {
        int byte = 18 * (w / 8) + 2 + 2 * (w % 8);
        idx[w] = (int16_t)(byte + 2 <= 64 ? byte / 2 : 32 + (byte - 8) / 2);
    }
    return _mm512_loadu_si512(idx);
}

// The scales of 4 rows x 4 blocks (word 0 of each 18-byte block) in the
// order of q4_0_sum4's result, word 4k + r = row r, block k: rows 0, 1 from
// one two-source permute (idx[0]), rows 2, 3 from another (idx[1]), blended.
INLINE void q4_0_didx(__m512i idx[2]) {
    int16_t i01[32] = {0}, i23[32] = {0};
    for (int w = 0; w < 16; w++) {
        int k = w / 4, r = w % 4;
        i01[w] = (int16_t)(r == 1 ? 32 + 9 * k : 9 * k);
        i23[w] = (int16_t)(r == 3 ? 32 + 9 * k : 9 * k);
    }
    idx[0] = _mm512_loadu_si512(i01);
    idx[1] = _mm512_loadu_si512(i23);
}

static void q4_0_prep(const block_q8_0 *y, int ns, vg_step *st) {
    for (int g = 0; g < ns; g++) {
        for (int k = 0; k < 4; k++) {
            const block_q8_0 *b = &y[4 * g + k];
            memcpy(st[g].q[0] + 16 * k, b->qs, 16);
            memcpy(st[g].q[1] + 16 * k, b->qs + 16, 16);
            int32_t off = -2 * block_sum(b->qs);
            float d = fp16(b->d);
            for (int i = 0; i < 4; i++) st[g].off[4 * k + i] = off, st[g].d[4 * k + i] = d;
        }
    }
}

// one row's 4 blocks at p (a: its first 64 bytes) against step st: lane k =
// block k's dot in 4 partial dwords, offset included
INLINE __m512i q4_0_dots(__m512i a, const char *p, const vg_step *st, __m512i qidx) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i q = _mm512_permutex2var_epi16(a, qidx, _mm512_loadu_si512((const void *)(p + 8)));
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)st->off), lo, _mm512_load_si512((const void *)st->q[0]));
    return _mm512_dpbusd_epi32(s, hi, _mm512_load_si512((const void *)st->q[1]));
}

// 4 rows' lane sums transposed and added: lane k, dword r = row r's block k
INLINE __m512i q4_0_sum4(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
    __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s0, s1), _mm512_unpackhi_epi32(s0, s1));
    __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s2, s3), _mm512_unpackhi_epi32(s2, s3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
}

// Q4_0 pass: rows in groups of 4, whose 16 (row, block) dots of a step share
// one conversion, one scale product and one FMA
static void q4_0_pass(const char *const r[VG_ROWS], const char *pf, const vg_step *st, int ns, __m512i qidx,
                      float out[VG_ROWS]) {
    __m512i didx[2];
    q4_0_didx(didx);
    __m512 acc[VG_ROWS / 4];
#pragma GCC unroll 2
    for (int h = 0; h < VG_ROWS / 4; h++) acc[h] = _mm512_setzero_ps();
    for (int g = 0; g < ns; g++) {
#pragma GCC unroll 2
        for (int h = 0; h < VG_ROWS / 4; h++) {
            __m512i a[4], s4[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const char *p = r[4 * h + i] + (size_t)g * 4 * sizeof(block_q4_0);
                vg_prefetch(pf, p, g, 4 * h + i, 4 * sizeof(block_q4_0));
                a[i] = _mm512_loadu_si512((const void *)p);
                s4[i] = q4_0_dots(a[i], p, &st[g], qidx);
            }
            __m512i dw = _mm512_mask_blend_epi16(0xCCCCCCCC, _mm512_permutex2var_epi16(a[0], didx[0], a[1]),
                                                 _mm512_permutex2var_epi16(a[2], didx[1], a[3]));
            __m512 d = _mm512_mul_ps(cvtph16(dw), _mm512_load_ps(st[g].d));
            acc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q4_0_sum4(s4[0], s4[1], s4[2], s4[3])), d, acc[h]);
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < VG_ROWS / 4; h++) {   // the 4 lanes (blocks) added: rows 4h..4h+3
        __m256 t = _mm256_add_ps(_mm512_castps512_ps256(acc[h]),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[h]), 1)));
        _mm_storeu_ps(out + 4 * h, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
    }
}

// ---- Q8_0 ----

// block w / 16, word w % 16 of its quants, from the loads at 0 and 4
INLINE __m512i q8_0_qidx(void) {
    int16_t idx[32];
    for (int w = 0; w < 32; w++) {
        int byte = 34 * (w / 16) + 2 + 2 * (w % 16);
        idx[w] = (int16_t)(byte + 2 <= 64 ? byte / 2 : 32 + (byte - 4) / 2);
    }
    return _mm512_loadu_si512(idx);
}

INLINE __m512i q8_0_didx(void) {
    int16_t idx[32] = {0};
    for (int w = 0; w < 16; w++) idx[w] = (int16_t)(17 * (w / 8));
    return _mm512_loadu_si512(idx);
}

static void q8_0_prep(const block_q8_0 *y, int ns, vg_step *st) {
    for (int g = 0; g < ns; g++) {
        for (int k = 0; k < 2; k++) {
            const block_q8_0 *b = &y[2 * g + k];
            memcpy(st[g].q[0] + 32 * k, b->qs, 32);
            int32_t off = -16 * block_sum(b->qs);
            float d = fp16(b->d);
            for (int i = 0; i < 8; i++) st[g].off[8 * k + i] = off, st[g].d[8 * k + i] = d;
        }
    }
}

INLINE __m512 q8_0_step(const char *p, const vg_step *st, __m512i qidx, __m512i didx, __m512 acc) {
    __m512i a = _mm512_loadu_si512((const void *)p), b = _mm512_loadu_si512((const void *)(p + 4));
    __m512i q = _mm512_xor_si512(_mm512_permutex2var_epi16(a, qidx, b), _mm512_set1_epi8((char)0x80));
    __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)st->off), q, _mm512_load_si512((const void *)st->q[0]));
    __m512 d = _mm512_mul_ps(cvtph16(_mm512_permutexvar_epi16(didx, a)), _mm512_load_ps(st->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc);
}

// ---- Q4_K (x in Q8_K) ----
//
// A super-block (256 quants, 144 bytes) per step and row: two zmm loads hold
// its 128 quant bytes; AND / shift give four zmm of unsigned nibbles, each
// two 32-quant sub-blocks (low nibbles of bytes 0..31: sub-block 0, of
// 32..63: sub-block 2; high nibbles: 1 and 3; then 4, 6 and 5, 7), and the
// activation is rearranged to match. vpmaddubsw makes int16 pair sums
// (<= 2 * 15 * 128), vpdpwssd multiplies them by the sub-block's 6-bit scale
// (one vpermw spreads the unpacked scales over each sub-block's words) and
// sums in int32: the super-block's scaled dot in 16 exact lanes. The mins
// meet the activation's 32-quant sums in one more vpdpwssd; d and dmin of the
// row (one fp16 pair, broadcast) times the activation's d scale the two in
// float.

typedef struct {
    int8_t q[4][64];    // sub-blocks (0, 2), (1, 3), (4, 6), (5, 7)
    int16_t bs[32];     // words 8..15: the 8 sub-blocks' quant sums; 0 elsewhere
    float d[16];        // activation scale
} vk_step;

static void q4_K_prep(const block_q8_K *y, int nb, vk_step *st) {
    for (int i = 0; i < nb; i++) {
        for (int k = 0; k < 4; k++) {
            int j0 = 2 * (k & ~1) + (k & 1);   // 0, 1, 4, 5
            memcpy(st[i].q[k], y[i].qs + 32 * j0, 32);
            memcpy(st[i].q[k] + 32, y[i].qs + 32 * (j0 + 2), 32);
        }
        memset(st[i].bs, 0, sizeof(st[i].bs));
        for (int j = 0; j < 8; j++) st[i].bs[8 + j] = (int16_t)(y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        for (int l = 0; l < 16; l++) st[i].d[l] = y[i].d;
    }
}

// word index vectors spreading scale j0 over words 0..15 and j0 + 2 over 16..31
INLINE void q4_K_sidx(__m512i idx[4]) {
    for (int k = 0; k < 4; k++) {
        int j0 = 2 * (k & ~1) + (k & 1);
        idx[k] = _mm512_inserti64x4(_mm512_set1_epi16((short)j0), _mm256_set1_epi16((short)(j0 + 2)), 1);
    }
}

// A weight super-block unpacked: the quants (as q4_K_prep orders the
// activation), the scales spread per word, [scales, mins] and d / dmin.
typedef struct {
    __m512i q[4], sp[4], sc;
    __m512 ddw;
} vk_block;

// q5: a Q5_K super-block (d, dmin and the scales at Q4_K's offsets; quant l
// of sub-block j takes bit j of qh[l] as its fifth bit, 16)
INLINE void q4_K_unpack(const bool q5, const char *blk, const __m512i sidx[4], vk_block *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const char *qs = blk + (q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs));
    __m512i z0 = _mm512_loadu_si512((const void *)qs), z1 = _mm512_loadu_si512((const void *)(qs + 64));
    b->sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(q4_K_scales(blk)));   // [sc0..7, mn0..7]
    b->q[0] = _mm512_and_si512(z0, m4);
    b->q[1] = _mm512_and_si512(_mm512_srli_epi16(z0, 4), m4);
    b->q[2] = _mm512_and_si512(z1, m4);
    b->q[3] = _mm512_and_si512(_mm512_srli_epi16(z1, 4), m4);
    if (q5) {
        // qh in both halves; q[k] holds sub-blocks j0 (bytes 0..31) and j0 + 2
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q5_K, qh))));
        const __m512i b16 = _mm512_set1_epi8(16);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int j0 = 2 * (k & ~1) + (k & 1);   // 0, 1, 4, 5
            __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << j0)),
                                             _mm256_set1_epi8((char)(1 << (j0 + 2))), 1);
            b->q[k] = _mm512_mask_add_epi8(b->q[k], _mm512_test_epi8_mask(qh, bit), b->q[k], b16);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) b->sp[k] = _mm512_permutexvar_epi16(sidx[k], b->sc);
    uint32_t ddm;
    memcpy(&ddm, blk, 4);   // d, dmin
    b->ddw = _mm512_cvtph_ps(_mm256_set1_epi32((int)ddm));
}

// acc += the unpacked super-block against one activation step
INLINE __m512 q4_K_dot(const vk_block *b, const vk_step *st, __m512 acc) {
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(b->q[k], _mm512_load_si512((const void *)st->q[k])), b->sp[k]);
    __m512i m = _mm512_dpwssd_epi32(_mm512_setzero_si512(), b->sc, _mm512_load_si512((const void *)st->bs));
    __m512 dd = _mm512_mul_ps(b->ddw, _mm512_load_ps(st->d));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_moveldup_ps(dd), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_movehdup_ps(dd), acc);
}

// ---- Q6_K (x in Q8_K, natural order) ----
//
// A super-block per step and row: per half of 128 quants one zmm of ql and
// qh (32 bytes) in both halves; the low nibbles of ql are quants 0..63 of the
// half, the high ones 64..127, and their two high bits come out of qh by
// per-half variable shifts (bits 0-1 / 2-3 for the low nibbles of bytes
// 0..31 / 32..63, bits 4-5 / 6-7 for the high ones) and a mask: four zmm of
// unsigned quants 0..63 in the activation's own order. vpmaddubsw pair sums
// (<= 2 * 63 * 128) meet the sub-block's int8 scale (one vpermw spreads the
// 16 scales over each 16-quant sub-block's 8 words) in vpdpwssd; the -32
// offset enters as the accumulator's start, -32 * scale against the
// activation's 16-quant sums (|-32 * scale| <= 4096 fits a word). One int32
// sum per super-block, times d and the activation's d in float.

static void q6_K_prep(const block_q8_K *y, int nb, vk_step *st) {
    for (int i = 0; i < nb; i++) {
        memcpy(st[i].q, y[i].qs, QK_K);
        memset(st[i].bs, 0, sizeof(st[i].bs));
        for (int j = 0; j < 16; j++) st[i].bs[j] = y[i].bsums[j];
        for (int l = 0; l < 16; l++) st[i].d[l] = y[i].d;
    }
}

// word index vectors spreading scale 4k + w / 8 over words w of zmm k
INLINE void q6_K_sidx(__m512i idx[4]) {
    for (int k = 0; k < 4; k++) {
        int16_t v[32];
        for (int w = 0; w < 32; w++) v[w] = (int16_t)(4 * k + w / 8);
        idx[k] = _mm512_loadu_si512((const void *)v);
    }
}

// a Q6_K super-block unpacked: q[2h], q[2h + 1] the quants 0..63, 64..127 of
// half h; sp the scales per word; sc -32 * scales (words 0..15); ddw d
INLINE void q6_K_unpack(const char *blk, const __m512i sidx[4], vk_block *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i sl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);   // bits 0-1 | 2-3 to 4-5
    const __m512i sr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  // bits 4-5 | 6-7 to 4-5
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512((const void *)(blk + offsetof(block_q6_K, ql) + 64 * h));
        __m512i qh = _mm512_broadcast_i64x4(
            _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q6_K, qh) + 32 * h)));
        b->q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, sl), m30));
        b->q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(qh, sr), m30));
    }
    const __m512i sc = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + offsetof(block_q6_K, scales)))));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) b->sp[k] = _mm512_permutexvar_epi16(sidx[k], sc);
    b->sc = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sc, 5));
    uint16_t d;
    memcpy(&d, blk + offsetof(block_q6_K, d), 2);
    b->ddw = _mm512_cvtph_ps(_mm256_set1_epi16((short)d));
}

INLINE __m512 q6_K_dot(const vk_block *b, const vk_step *st, __m512 acc) {
    __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), b->sc, _mm512_load_si512((const void *)st->bs));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(b->q[k], _mm512_load_si512((const void *)st->q[k])), b->sp[k]);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(b->ddw, _mm512_load_ps(st->d)), acc);
}

// The three k-quant kinds through one set of loops (kind: a constant).
enum { KQ4, KQ5, KQ6 };

INLINE size_t k_bytes(const int kind) {
    return kind == KQ6 ? sizeof(block_q6_K) : kind == KQ5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
}

INLINE void k_sidx(const int kind, __m512i sidx[4]) {
    if (kind == KQ6) q6_K_sidx(sidx);
    else q4_K_sidx(sidx);
}

static void k_prep(const int kind, const block_q8_K *y, int nb, vk_step *st) {
    if (kind == KQ6) q6_K_prep(y, nb, st);
    else q4_K_prep(y, nb, st);
}

INLINE void k_unpack(const int kind, const char *blk, const __m512i sidx[4], vk_block *b) {
    if (kind == KQ6) q6_K_unpack(blk, sidx, b);
    else q4_K_unpack(kind == KQ5, blk, sidx, b);
}

INLINE __m512 k_dot(const int kind, const vk_block *b, const vk_step *st, __m512 acc) {
    return kind == KQ6 ? q6_K_dot(b, st, acc) : q4_K_dot(b, st, acc);
}

INLINE __m512 k_step(const int kind, const char *blk, const vk_step *st, const __m512i sidx[4], __m512 acc) {
    vk_block b;
    k_unpack(kind, blk, sidx, &b);
    return k_dot(kind, &b, st, acc);
}

// One pass over VG_ROWS rows, nb super-blocks.
INLINE void k_pass(const int kind, const char *const r[VG_ROWS], const char *pf, const vk_step *st, int nb,
                   float out[VG_ROWS]) {
    const size_t bs = k_bytes(kind);
    __m512i sidx[4];
    k_sidx(kind, sidx);
    VG_ROW_LOOP(nb, bs, k_step(kind, p, &st[g], sidx, acc[i]));
}

static void q4_K_pass(const char *const r[VG_ROWS], const char *pf, const vk_step *st, int nb, float out[VG_ROWS]) {
    k_pass(KQ4, r, pf, st, nb, out);
}

static void q5_K_pass(const char *const r[VG_ROWS], const char *pf, const vk_step *st, int nb, float out[VG_ROWS]) {
    k_pass(KQ5, r, pf, st, nb, out);
}

static void q6_K_pass(const char *const r[VG_ROWS], const char *pf, const vk_step *st, int nb, float out[VG_ROWS]) {
    k_pass(KQ6, r, pf, st, nb, out);
}

static void k_gemv(int kind, int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    const int nb = n / QK_K;
    vk_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)QT_MAX(nb, 1) * sizeof(vk_step));
    k_prep(kind, x, nb, st);
    const bool packed = ws == (size_t)nb * k_bytes(kind);
    for (int r0 = 0; r0 < n_rows; r0 += VG_ROWS) {
        const char *r[VG_ROWS];
        int m = vg_rows(w, ws, r0, n_rows, r);
        float out[VG_ROWS];
        (kind == KQ6 ? q6_K_pass : kind == KQ5 ? q5_K_pass : q4_K_pass)(r, packed ? r[0] + VG_ROWS * ws : NULL, st, nb,
                                                                      out);
        for (int i = 0; i < m; i++) y[r0 + i] = out[i];
    }
}

void GEMV_FN(qt_gemv_q4_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    k_gemv(KQ4, n, w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_q5_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    k_gemv(KQ5, n, w, ws, x, y, n_rows);
}

void GEMV_FN(qt_gemv_q6_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    k_gemv(KQ6, n, w, ws, x, y, n_rows);
}

// ---- driver ----

// Scalar tails: blocks [b0, nb) of one row.
static float q4_0_tail(const char *row, const block_q8_0 *y, int b0, int nb) {
    float sum = 0;
    for (int i = b0; i < nb; i++) {
        const block_q4_0 *x = (const block_q4_0 *)row + i;
        int s = 0;
        for (int j = 0; j < 16; j++) s += ((x->qs[j] & 0xf) - 8) * y[i].qs[j] + ((x->qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += fp16(x->d) * fp16(y[i].d) * (float)s;
    }
    return sum;
}

static float q8_0_tail(const char *row, const block_q8_0 *y, int b0, int nb) {
    float sum = 0;
    for (int i = b0; i < nb; i++) {
        const block_q8_0 *x = (const block_q8_0 *)row + i;
        int s = 0;
        for (int j = 0; j < QK8_0; j++) s += x->qs[j] * y[i].qs[j];
        sum += fp16(x->d) * fp16(y[i].d) * (float)s;
    }
    return sum;
}

static void q8_0_pass(const char *const r[VG_ROWS], const char *pf, const vg_step *st, int ns, __m512i qidx,
                      float out[VG_ROWS]) {
    const __m512i didx = q8_0_didx();
    VG_ROW_LOOP(ns, 2 * sizeof(block_q8_0), q8_0_step(p, &st[g], qidx, didx, acc[i]));
}

typedef void (*vg_pass_fn)(const char *const r[VG_ROWS], const char *pf, const vg_step *st, int ns, __m512i qidx,
                           float out[VG_ROWS]);
typedef float (*vg_tail_fn)(const char *row, const block_q8_0 *y, int b0, int nb);

// bpb: blocks per step; bs: bytes per weight block
static void vg_gemv(vg_pass_fn pass, vg_tail_fn tail, void (*prep)(const block_q8_0 *, int, vg_step *), int bpb,
                    size_t bs, __m512i qidx, int n, const void *w, size_t ws, const void *x, float *y,
                    int n_rows) {
    const int nb = n / QK8_0, ns = nb / bpb;
    const block_q8_0 *yb = x;
    const bool packed = ws == (size_t)nb * bs;   // the next pass is one contiguous range
    vg_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)(ns > 0 ? ns : 1) * sizeof(vg_step));
    prep(yb, ns, st);
    for (int r0 = 0; r0 < n_rows; r0 += VG_ROWS) {
        const char *r[VG_ROWS];
        int m = vg_rows(w, ws, r0, n_rows, r);
        float out[VG_ROWS];
        pass(r, packed ? r[0] + VG_ROWS * ws : NULL, st, ns, qidx, out);
        for (int i = 0; i < m; i++)
            y[r0 + i] = ns * bpb < nb ? out[i] + tail(r[i], yb, ns * bpb, nb) : out[i];
    }
}

void GEMV_FN(qt_gemv_q4_0_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    vg_gemv(q4_0_pass, q4_0_tail, q4_0_prep, 4, sizeof(block_q4_0), q4_0_qidx(), n, w, ws, x, y,
            n_rows);
}

void GEMV_FN(qt_gemv_q8_0_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    vg_gemv(q8_0_pass, q8_0_tail, q8_0_prep, 2, sizeof(block_q8_0), q8_0_qidx(), n, w, ws, x, y,
            n_rows);
}

// ---- Q4_1, Q5_0, Q5_1, IQ4_NL ----
//
// Two blocks per step and row in one zmm (q32_unsigned2); the signed types'
// quants are stored + 128 (unsigned, as vpdpbusd wants) and the +128 comes
// back out through the accumulator's initial value, as Q8_0's. Q4_1 /
// Q5_1's quants are 0..31 already (initial value 0) and their min enters as
// m * (d_x * block sum), spread as 1/8 over each block's 8 dwords (exact).
// Eight rows per pass, as above; these types are compute-bound here (their
// unpacking costs more than Q8_0's permute), so no 4-row grouping.

static void q32_prep(const bool affine, const block_q8_0 *y, int ns, vg_step *st) {
    for (int g = 0; g < ns; g++) {
        for (int k = 0; k < 2; k++) {
            const block_q8_0 *b = &y[2 * g + k];
            memcpy(st[g].q[0] + 32 * k, b->qs, 32);
            int sum = block_sum(b->qs);
            float d = fp16(b->d);
            for (int i = 0; i < 8; i++) {
                st[g].off[8 * k + i] = affine ? 0 : -16 * sum;
                st[g].d[8 * k + i] = d;
                st[g].s[8 * k + i] = d * (float)sum * 0.125f;
            }
        }
    }
}

// Blocks b0 and b0 + bs's 64 quants as unsigned bytes for vpdpbusd, in
// element order: q + 128 for the signed types (Q5_0: q - 16 + 128), q for
// Q4_1 / Q5_1. The nibbles of both blocks in one zmm ([lo 0, hi 0, lo 1,
// hi 1] by a qword permute and a blend); the fifth bits of both as one
// 64-bit mask for a masked add; IQ4_NL through a code book stored + 128.
INLINE __m512i q32_unsigned2(const qt_type wt, const char *b0, size_t bs, __m512i book) {
    const size_t qs = wt == QT_TYPE_Q4_1 ? offsetof(block_q4_1, qs)
                    : wt == QT_TYPE_Q5_0 ? offsetof(block_q5_0, qs)
                    : wt == QT_TYPE_Q5_1 ? offsetof(block_q5_1, qs) : offsetof(block_iq4_nl, qs);
    __m256i two = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + qs))),
                                          _mm_loadu_si128((const __m128i *)(b0 + bs + qs)), 1);
    __m512i t = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(two));
    __m512i z = _mm512_and_si512(_mm512_mask_blend_epi64(0xCC, t, _mm512_srli_epi16(t, 4)), _mm512_set1_epi8(0x0f));
    if (wt == QT_TYPE_IQ4_NL) return _mm512_shuffle_epi8(book, z);
    if (wt == QT_TYPE_Q4_1) return z;
    const size_t qh = wt == QT_TYPE_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
    uint32_t h0, h1;
    memcpy(&h0, b0 + qh, 4);
    memcpy(&h1, b0 + bs + qh, 4);
    __mmask64 fifth = (__mmask64)((uint64_t)h0 | (uint64_t)h1 << 32);
    if (wt == QT_TYPE_Q5_0) z = _mm512_add_epi8(z, _mm512_set1_epi8(112));   // q - 16 + 128 without the fifth bit
    return _mm512_mask_add_epi8(z, fifth, z, _mm512_set1_epi8(16));
}

// A step's two blocks of one row unpacked: quants (q32_unsigned2), scales dw
// and (Q4_1 / Q5_1) mins mw, each block's in its 8 dwords.
typedef struct {
    __m512i q;
    __m512 dw, mw;
} q32_w;

INLINE q32_w q32_unpack2(const qt_type wt, const char *p, __m512i book) {
    const size_t bs = q32_block_size(wt);
    q32_w u;
    u.q = q32_unsigned2(wt, p, bs, book);
    uint16_t h0[2], h1[2];   // d (and m) of the two blocks
    memcpy(h0, p, q32_affine(wt) ? 4 : 2);
    memcpy(h1, p + bs, q32_affine(wt) ? 4 : 2);
    u.dw = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)h0[0])),
                                                   _mm_set1_epi16((short)h1[0]), 1));
    u.mw = q32_affine(wt) ? _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)h0[1])),
                                                                    _mm_set1_epi16((short)h1[1]), 1))
                          : _mm512_setzero_ps();
    return u;
}

// acc + the step's dots of the unpacked blocks u with one token's step st
INLINE __m512 q32_dot(const qt_type wt, const q32_w *u, const vg_step *st, __m512 acc) {
    __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)st->off), u->q, _mm512_load_si512((const void *)st->q[0]));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(u->dw, _mm512_load_ps(st->d)), acc);
    if (q32_affine(wt)) acc = _mm512_fmadd_ps(u->mw, _mm512_load_ps(st->s), acc);
    return acc;
}

INLINE __m512 q32_step(const qt_type wt, const char *p, const vg_step *st, __m512i book, __m512 acc) {
    const q32_w u = q32_unpack2(wt, p, book);
    return q32_dot(wt, &u, st, acc);
}

// the IQ4_NL code book + 128 in every 128-bit lane
INLINE __m512i iq4_nl_book_u(void) {
    return _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qt_kvalues_iq4nl)),
                            _mm512_set1_epi8((char)0x80));
}

INLINE void q32_pass(const qt_type wt, const char *const r[VG_ROWS], const char *pf, const vg_step *st, int ns,
                     float out[VG_ROWS]) {
    const __m512i book = iq4_nl_book_u();
    VG_ROW_LOOP(ns, 2 * q32_block_size(wt), q32_step(wt, p, &st[g], book, acc[i]));
}

// the last odd block of a row
INLINE float q32_tail(const qt_type wt, const char *blk, const block_q8_0 *y) {
    const __m256i q = q32_quants(wt, blk, iq4_nl_book()), yq = _mm256_loadu_si256((const __m256i *)y->qs);
    float d, m;
    q32_scale_min(wt, blk, &d, &m);
    float s = d * fp16(y->d) * hsum_ps(_mm256_cvtepi32_ps(dot_i8(q, yq)));
    if (q32_affine(wt)) s += m * fp16(y->d) * (float)block_sum(y->qs);
    return s;
}

INLINE void q32_gemv(const qt_type wt, int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    const int nb = n / QK8_0, ns = nb / 2;
    const size_t bs = q32_block_size(wt);
    const block_q8_0 *yb = x;
    const bool packed = ws == (size_t)nb * bs;   // the next pass is one contiguous range
    vg_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)(ns > 0 ? ns : 1) * sizeof(vg_step));
    q32_prep(q32_affine(wt), yb, ns, st);
    for (int r0 = 0; r0 < n_rows; r0 += VG_ROWS) {
        const char *r[VG_ROWS];
        int m = vg_rows(w, ws, r0, n_rows, r);
        float out[VG_ROWS];
        q32_pass(wt, r, packed ? r[0] + VG_ROWS * ws : NULL, st, ns, out);
        for (int i = 0; i < m; i++)
            y[r0 + i] = 2 * ns < nb ? out[i] + q32_tail(wt, r[i] + (size_t)(nb - 1) * bs, yb + nb - 1) : out[i];
    }
}

#define Q32_GEMV(name, wt)                                                                                   \
    void GEMV_FN(qt_gemv_##name##_avx512vnni)(int n, const void *w, size_t ws, const void *x, float *y,     \
                                               int n_rows) {                                           \
        q32_gemv(wt, n, w, ws, x, y, n_rows);                                                                \
    }
Q32_GEMV(q4_1, QT_TYPE_Q4_1)
Q32_GEMV(q5_0, QT_TYPE_Q5_0)
Q32_GEMV(q5_1, QT_TYPE_Q5_1)
Q32_GEMV(iq4_nl, QT_TYPE_IQ4_NL)
#undef Q32_GEMV

// ---- several tokens: a server's decode step ----
//
// The gemm contract (y[c * ys + r]) for a few columns (traits.gemm_small):
// rows go in groups of 4; each step's weights are loaded and unpacked once
// and then meet every token's prepared activation (VN_COLS at a time, the
// rest in further rounds over the same, now cache-resident, rows). Each
// token's arithmetic is the gemv's, in the same order: results equal the
// gemv's bit for bit (tests/test-kernels.c checks). TinyLlama-shape Q4_0, 8
// one-token sequences in one forward (bench/bench-batch.c, Zen 5, 2 threads):
// 33 ms against 84 ms with each token's gemv over cache-resident row blocks
// (a single token: 17 ms).

// Tokens per round: their accumulators stay in registers.
#define VN_COLS 8
#define VN_COLS_Q8 4

// 4 rows x nt tokens of Q4_0; st: token j's steps at st + j * ns;
// out[4 * j + i] = row i, token j
INLINE void q4_0_pass_n(const int nt, const char *const r[4], const char *pf, const vg_step *st, int ns,
                        __m512i qidx, float *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i didx[2];
    q4_0_didx(didx);
    __m512 acc[VN_COLS];
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) acc[j] = _mm512_setzero_ps();
    for (int g = 0; g < ns; g++) {
        __m512i a[4], lo[4], hi[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const char *p = r[i] + (size_t)g * 4 * sizeof(block_q4_0);
            if (pf && i == 0) prefetch_range(pf + (size_t)g * 4 * 4 * sizeof(block_q4_0), 4 * 4 * sizeof(block_q4_0));
            a[i] = _mm512_loadu_si512((const void *)p);
            __m512i q = _mm512_permutex2var_epi16(a[i], qidx, _mm512_loadu_si512((const void *)(p + 8)));
            lo[i] = _mm512_and_si512(q, m4);
            hi[i] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        }
        __m512 dw = cvtph16(_mm512_mask_blend_epi16(0xCCCCCCCC, _mm512_permutex2var_epi16(a[0], didx[0], a[1]),
                                                    _mm512_permutex2var_epi16(a[2], didx[1], a[3])));
    #pragma GCC unroll 8
    for (int j = 0; j < nt; j++) {
            const vg_step *s = &st[(size_t)j * ns + g];
            const __m512i off = _mm512_load_si512((const void *)s->off);
            const __m512i q0 = _mm512_load_si512((const void *)s->q[0]), q1 = _mm512_load_si512((const void *)s->q[1]);
            __m512i s4[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) s4[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(off, lo[i], q0), hi[i], q1);
            __m512 d = _mm512_mul_ps(dw, _mm512_load_ps(s->d));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q4_0_sum4(s4[0], s4[1], s4[2], s4[3])), d, acc[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) {
        __m256 t = _mm256_add_ps(_mm512_castps512_ps256(acc[j]),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[j]), 1)));
        _mm_storeu_ps(out + 4 * j, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
    }
}

// 4 rows x nt (<= VN_COLS_Q8) tokens of Q8_0; out[4 * j + i]
INLINE void q8_0_pass_n(const int nt, const char *const r[4], const char *pf, const vg_step *st, int ns,
                        __m512i qidx, float *out) {
    const __m512i didx = q8_0_didx();
    __m512 acc[4][VN_COLS_Q8];
#pragma GCC unroll 4
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < 4; i++) acc[i][j] = _mm512_setzero_ps();
    for (int g = 0; g < ns; g++) {
        __m512i q[4];
        __m512 dw[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const char *p = r[i] + (size_t)g * 2 * sizeof(block_q8_0);
            if (pf && i == 0) prefetch_range(pf + (size_t)g * 4 * 2 * sizeof(block_q8_0), 4 * 2 * sizeof(block_q8_0));
            __m512i a = _mm512_loadu_si512((const void *)p), b = _mm512_loadu_si512((const void *)(p + 4));
            q[i] = _mm512_xor_si512(_mm512_permutex2var_epi16(a, qidx, b), _mm512_set1_epi8((char)0x80));
            dw[i] = cvtph16(_mm512_permutexvar_epi16(didx, a));
        }
#pragma GCC unroll 4
        for (int j = 0; j < nt; j++) {
            const vg_step *s = &st[(size_t)j * ns + g];
            const __m512i off = _mm512_load_si512((const void *)s->off), xq = _mm512_load_si512((const void *)s->q[0]);
            const __m512 xd = _mm512_load_ps(s->d);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(off, q[i], xq)),
                                            _mm512_mul_ps(dw[i], xd), acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < 4; i++) out[4 * j + i] = _mm512_reduce_add_ps(acc[i][j]);
}

// 1 row x nt (<= VN_COLS) tokens of a k-quant: each super-block's quants,
// scales and d (/dmin) unpacked once, then k_step's arithmetic per token;
// st: token j's steps at st + j * nb; out[j]
INLINE void k_row_n(const int nt, const int kind, const char *row, const char *pf, const vk_step *st, int nb,
                    const __m512i sidx[4], float *out) {
    const size_t bs = k_bytes(kind);
    __m512 acc[VN_COLS];
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) acc[j] = _mm512_setzero_ps();
    for (int g = 0; g < nb; g++) {
        const char *blk = row + (size_t)g * bs;
        if (pf) prefetch_range(pf + (size_t)g * bs, bs);
        vk_block b;
        k_unpack(kind, blk, sidx, &b);
#pragma GCC unroll 8
        for (int j = 0; j < nt; j++) acc[j] = k_dot(kind, &b, &st[(size_t)j * nb + g], acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

// One instance per token count, so the accumulators are registers.
#define VN_CASE(PASS, k, ...) case k: PASS(k, __VA_ARGS__); break;
#define VN_DISPATCH8(PASS, nt, ...)                                                                   \
    switch (nt) {                                                                                     \
    VN_CASE(PASS, 1, __VA_ARGS__) VN_CASE(PASS, 2, __VA_ARGS__) VN_CASE(PASS, 3, __VA_ARGS__)         \
    VN_CASE(PASS, 4, __VA_ARGS__) VN_CASE(PASS, 5, __VA_ARGS__) VN_CASE(PASS, 6, __VA_ARGS__)         \
    VN_CASE(PASS, 7, __VA_ARGS__) default: PASS(8, __VA_ARGS__); break;                               \
    }
#define VN_DISPATCH4(PASS, nt, ...)                                                                   \
    switch (nt) {                                                                                     \
    VN_CASE(PASS, 1, __VA_ARGS__) VN_CASE(PASS, 2, __VA_ARGS__) VN_CASE(PASS, 3, __VA_ARGS__)         \
    default: PASS(4, __VA_ARGS__); break;                                                             \
    }

// 4 rows per pass; bpb blocks per step; rounds of VN_COLS (Q4_0) or VN_COLS_Q8 tokens
static void vn_gemm(bool q4, int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                    int n_rows, int n_cols) {
    const int bpb = q4 ? 4 : 2, nb = n / QK8_0, ns = nb / bpb, cols = q4 ? VN_COLS : VN_COLS_Q8;
    const size_t bs = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const __m512i qidx = q4 ? q4_0_qidx() : q8_0_qidx();
    const bool packed = ws == (size_t)nb * bs;
    vg_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)n_cols * QT_MAX(ns, 1) * sizeof(vg_step));
    for (int j = 0; j < n_cols; j++)
        (q4 ? q4_0_prep : q8_0_prep)((const block_q8_0 *)((const char *)x + (size_t)j * xs), ns, st + (size_t)j * ns);
    float out[4 * VN_COLS];
    for (int r0 = 0; r0 < n_rows; r0 += 4) {
        const char *a = (const char *)w + (size_t)r0 * ws;
        const int m = QT_MIN(4, n_rows - r0);
        const char *r[4];
        for (int i = 0; i < 4; i++) r[i] = a + (size_t)QT_MIN(i, m - 1) * ws;
        const char *pf = packed ? a + 4 * ws : NULL;
        for (int j0 = 0; j0 < n_cols; j0 += cols) {
            const int nt = QT_MIN(cols, n_cols - j0);
            const vg_step *s = st + (size_t)j0 * ns;
            if (q4) {
                VN_DISPATCH8(q4_0_pass_n, nt, r, pf, s, ns, qidx, out)
            } else {
                VN_DISPATCH4(q8_0_pass_n, nt, r, pf, s, ns, qidx, out)
            }
            pf = NULL;   // the rows are in cache for the next round
            for (int j = 0; j < nt; j++) {
                const block_q8_0 *yb = (const block_q8_0 *)((const char *)x + (size_t)(j0 + j) * xs);
                for (int i = 0; i < m; i++)
                    y[(size_t)(j0 + j) * ys + r0 + i] =
                        ns * bpb < nb ? out[4 * j + i] + (q4 ? q4_0_tail : q8_0_tail)(r[i], yb, ns * bpb, nb)
                                      : out[4 * j + i];
            }
        }
    }
}

// Q4_1, Q5_0, Q5_1, IQ4_NL: row by row, as the k-quants below: 1 row x nt
// (<= VN_COLS) tokens, each step's two blocks unpacked once (q32_unpack2),
// then the gemv's q32_dot per token; st: token j's steps at st + j * ns;
// out[j] (without the odd last block: q32_tail)
INLINE void q32_row_n(const int nt, const qt_type wt, const char *row, const char *pf, const vg_step *st, int ns,
                      float *out) {
    const size_t bytes = 2 * q32_block_size(wt);
    const __m512i book = iq4_nl_book_u();
    __m512 acc[VN_COLS];
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) acc[j] = _mm512_setzero_ps();
    for (int g = 0; g < ns; g++) {
        if (pf) prefetch_range(pf + (size_t)g * bytes, bytes);
        const q32_w u = q32_unpack2(wt, row + (size_t)g * bytes, book);
#pragma GCC unroll 8
        for (int j = 0; j < nt; j++) acc[j] = q32_dot(wt, &u, &st[(size_t)j * ns + g], acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nt; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

#define Q32_ROW_N(nt, ...) q32_row_n(nt, __VA_ARGS__)
INLINE void q32_gemm_small(const qt_type wt, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
                           size_t ys, int n_rows, int n_cols) {
    const int nb = n / QK8_0, ns = nb / 2;
    const size_t bs = q32_block_size(wt);
    vg_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)n_cols * QT_MAX(ns, 1) * sizeof(vg_step));
    for (int j = 0; j < n_cols; j++)
        q32_prep(q32_affine(wt), (const block_q8_0 *)((const char *)x + (size_t)j * xs), ns, st + (size_t)j * ns);
    float out[VN_COLS];
    for (int r = 0; r < n_rows; r++) {
        const char *row = (const char *)w + (size_t)r * ws;
        const char *pf = r + 2 < n_rows ? row + 2 * ws : NULL;
        for (int j0 = 0; j0 < n_cols; j0 += VN_COLS) {
            const int nt = QT_MIN(VN_COLS, n_cols - j0);
            VN_DISPATCH8(Q32_ROW_N, nt, wt, row, pf, st + (size_t)j0 * ns, ns, out)
            pf = NULL;
            for (int j = 0; j < nt; j++) {
                const block_q8_0 *yb = (const block_q8_0 *)((const char *)x + (size_t)(j0 + j) * xs);
                y[(size_t)(j0 + j) * ys + r] =
                    2 * ns < nb ? out[j] + q32_tail(wt, row + (size_t)(nb - 1) * bs, yb + nb - 1) : out[j];
            }
        }
    }
}
#undef Q32_ROW_N

#define Q32_GEMM_SMALL(name, wt)                                                                               \
    void GEMV_FN(qt_gemm_small_##name##_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs,   \
                                                    float *y, size_t ys, int n_rows, int n_cols) {              \
        q32_gemm_small(wt, n, w, ws, x, xs, y, ys, n_rows, n_cols);                                             \
    }
Q32_GEMM_SMALL(q4_1, QT_TYPE_Q4_1)
Q32_GEMM_SMALL(q5_0, QT_TYPE_Q5_0)
Q32_GEMM_SMALL(q5_1, QT_TYPE_Q5_1)
Q32_GEMM_SMALL(iq4_nl, QT_TYPE_IQ4_NL)
#undef Q32_GEMM_SMALL

// Q4_K, Q5_K and Q6_K: row by row (a Q4_K row of a 2048-wide matrix is 1152
// bytes), rounds of VN_COLS tokens over the row while it is in L1; the row
// two ahead is prefetched a super-block per step (packed rows: a linear stream).
#define K_ROW_N(nt, ...)                                                                                     \
    (kind == KQ6 ? k_row_n(nt, KQ6, __VA_ARGS__)                                                             \
                 : kind == KQ5 ? k_row_n(nt, KQ5, __VA_ARGS__) : k_row_n(nt, KQ4, __VA_ARGS__))
static void k_gemm_small(const int kind, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
                         size_t ys, int n_rows, int n_cols) {
    const int nb = n / QK_K;
    vk_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)n_cols * QT_MAX(nb, 1) * sizeof(vk_step));
    for (int j = 0; j < n_cols; j++)
        k_prep(kind, (const block_q8_K *)((const char *)x + (size_t)j * xs), nb, st + (size_t)j * nb);
    __m512i sidx[4];
    k_sidx(kind, sidx);
    float out[VN_COLS];
    for (int r = 0; r < n_rows; r++) {
        const char *row = (const char *)w + (size_t)r * ws;
        const char *pf = r + 2 < n_rows ? row + 2 * ws : NULL;
        for (int j0 = 0; j0 < n_cols; j0 += VN_COLS) {
            const int nt = QT_MIN(VN_COLS, n_cols - j0);
            VN_DISPATCH8(K_ROW_N, nt, row, pf, st + (size_t)j0 * nb, nb, sidx, out)
            pf = NULL;
            for (int j = 0; j < nt; j++) y[(size_t)(j0 + j) * ys + r] = out[j];
        }
    }
}

void GEMV_FN(qt_gemm_small_q4_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols) {
    k_gemm_small(KQ4, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

void GEMV_FN(qt_gemm_small_q5_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols) {
    k_gemm_small(KQ5, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

void GEMV_FN(qt_gemm_small_q6_K_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols) {
    k_gemm_small(KQ6, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

void GEMV_FN(qt_gemm_small_q4_0_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols) {
    vn_gemm(true, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

void GEMV_FN(qt_gemm_small_q8_0_avx512vnni)(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                                   int n_rows, int n_cols) {
    vn_gemm(false, n, w, ws, x, xs, y, ys, n_rows, n_cols);
}

#ifndef QT_GEMV_L1
// this file's kernels and their L1-prefetching twins (gemv-l1-avx512vnni.c)
static const qt_gemv_twin g_gemv_twins[] = {
    {qt_gemv_q4_0_avx512vnni, qt_gemv_q4_0_avx512vnni_l1},
    {qt_gemv_q8_0_avx512vnni, qt_gemv_q8_0_avx512vnni_l1},
    {qt_gemv_q4_1_avx512vnni, qt_gemv_q4_1_avx512vnni_l1},
    {qt_gemv_q5_0_avx512vnni, qt_gemv_q5_0_avx512vnni_l1},
    {qt_gemv_q5_1_avx512vnni, qt_gemv_q5_1_avx512vnni_l1},
    {qt_gemv_iq4_nl_avx512vnni, qt_gemv_iq4_nl_avx512vnni_l1},
    {qt_gemv_q4_K_avx512vnni, qt_gemv_q4_K_avx512vnni_l1},
    {qt_gemv_q5_K_avx512vnni, qt_gemv_q5_K_avx512vnni_l1},
    {qt_gemv_q6_K_avx512vnni, qt_gemv_q6_K_avx512vnni_l1},
};
static const qt_gemm_twin g_small_twins[] = {
    {qt_gemm_small_q4_0_avx512vnni, qt_gemm_small_q4_0_avx512vnni_l1},
    {qt_gemm_small_q8_0_avx512vnni, qt_gemm_small_q8_0_avx512vnni_l1},
    {qt_gemm_small_q4_1_avx512vnni, qt_gemm_small_q4_1_avx512vnni_l1},
    {qt_gemm_small_q5_0_avx512vnni, qt_gemm_small_q5_0_avx512vnni_l1},
    {qt_gemm_small_q5_1_avx512vnni, qt_gemm_small_q5_1_avx512vnni_l1},
    {qt_gemm_small_iq4_nl_avx512vnni, qt_gemm_small_iq4_nl_avx512vnni_l1},
    {qt_gemm_small_q4_K_avx512vnni, qt_gemm_small_q4_K_avx512vnni_l1},
    {qt_gemm_small_q5_K_avx512vnni, qt_gemm_small_q5_K_avx512vnni_l1},
    {qt_gemm_small_q6_K_avx512vnni, qt_gemm_small_q6_K_avx512vnni_l1},
};

void qt_gemv_prefetch_avx512vnni(qt_kernel_traits *t, bool l1) {
    qt_gemv_twins_apply(t, l1, g_gemv_twins, QT_ARRAY_LEN(g_gemv_twins), g_small_twins, QT_ARRAY_LEN(g_small_twins));
}
#endif
