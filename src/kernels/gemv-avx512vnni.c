// gemv-avx512vnni.c: AVX-512 VNNI multi-row kernels for T == 1 (decode),
// y[r] = dot(W row r, x) for a run of rows, on the file's own weight layout
// (zero-copy, shared with training): the avx512-vnni table's gemv for Q4_0
// and Q8_0 (x in Q8_0).
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
// so the integer sums are exact. The four fp16 scales of the row come out of
// the first load with one vpermw (each repeated over its lane's 4 dwords) and
// one conversion; one FMA per step with (weight scale x activation scale)
// accumulates in float.
// Q8_0, two blocks (68 bytes) per step and row: loads at 0 and 4, one
// vpermt2w for the two blocks' 32 quants, XOR 0x80 makes them unsigned
// (q + 128), and the +128 comes back out through the accumulator's initial
// value -16 * (activation block's quant sum) per dword.
// Eight rows per pass share the activation loads; the next pass's rows (one
// contiguous range when rows are packed) are prefetched at the rate they are
// consumed, as in gemv-avx2.c. Blocks past the last full step (rows of
// 32 * (4k + 1..3) elements) are summed by a scalar tail.
// Results equal ref's vec_dot up to the float summation order.
// Deliberately not: persistent repacking (llama.cpp's block_q4_0x16).
// Follows ggml-cpu/arch/x86/quants.c (the VNNI dots) and gemv-avx2.c.
#include "kernels/simd-x86.h"

#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

// Rows per pass. The last, partial pass of a range repeats its last row
// (same cache lines, nothing read out of range) and drops its results.
#define VG_ROWS 8

INLINE float fp16(uint16_t h) { return _cvtsh_ss(h); }

// 16 fp16 values (the low half of v) as floats
INLINE __m512 cvtph16(__m512i v) { return _mm512_cvtph_ps(_mm512_castsi512_si256(v)); }

INLINE void prefetch_range(const char *p, size_t n) {
#pragma GCC unroll 16
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

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

// the 4 blocks' scales (word 0 of each 18-byte block), each over 4 words
INLINE __m512i q4_0_didx(void) {
    int16_t idx[32] = {0};
    for (int w = 0; w < 16; w++) idx[w] = (int16_t)(9 * (w / 4));
    return _mm512_loadu_si512(idx);
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

// acc += one row's 4 blocks at p against step st
INLINE __m512 q4_0_step(const char *p, const vg_step *st, __m512i qidx, __m512i didx, __m512 acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i a = _mm512_loadu_si512((const void *)p), b = _mm512_loadu_si512((const void *)(p + 8));
    __m512i q = _mm512_permutex2var_epi16(a, qidx, b);
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)st->off), lo, _mm512_load_si512((const void *)st->q[0]));
    s = _mm512_dpbusd_epi32(s, hi, _mm512_load_si512((const void *)st->q[1]));
    __m512 d = _mm512_mul_ps(cvtph16(_mm512_permutexvar_epi16(didx, a)), _mm512_load_ps(st->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc);
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

// One pass over VG_ROWS rows (r[i]: row i, repeated rows allowed), ns steps
// of `step` bytes; prefetches [pf, pf + ns * VG_ROWS * step) when pf.
#define VG_PASS(name, STEP, bytes)                                                                          \
    static void name##_pass(const char *const r[VG_ROWS], const vg_step *st, int ns, const char *pf,         \
                            __m512i qidx, __m512i didx, float out[VG_ROWS]) {                                \
        __m512 acc[VG_ROWS];                                                                                 \
        _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++) acc[i] = _mm512_setzero_ps();              \
        for (int g = 0; g < ns; g++) {                                                                       \
            if (pf) prefetch_range(pf + (size_t)g * VG_ROWS * (bytes), VG_ROWS * (bytes));                   \
            _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++)                                        \
                acc[i] = STEP(r[i] + (size_t)g * (bytes), &st[g], qidx, didx, acc[i]);                       \
        }                                                                                                    \
        _Pragma("GCC unroll 8") for (int i = 0; i < VG_ROWS; i++) out[i] = _mm512_reduce_add_ps(acc[i]);     \
    }

VG_PASS(q4_0, q4_0_step, 4 * sizeof(block_q4_0))
VG_PASS(q8_0, q8_0_step, 2 * sizeof(block_q8_0))

typedef void (*vg_pass_fn)(const char *const r[VG_ROWS], const vg_step *st, int ns, const char *pf, __m512i qidx,
                           __m512i didx, float out[VG_ROWS]);
typedef float (*vg_tail_fn)(const char *row, const block_q8_0 *y, int b0, int nb);

// bpb: blocks per step; bs: bytes per weight block
static void vg_gemv(vg_pass_fn pass, vg_tail_fn tail, void (*prep)(const block_q8_0 *, int, vg_step *), int bpb,
                    size_t bs, __m512i qidx, __m512i didx, int n, const void *w, size_t ws, const void *x, float *y,
                    int n_rows) {
    const int nb = n / QK8_0, ns = nb / bpb;
    const block_q8_0 *yb = x;
    vg_step *st = qt_kernel_scratch(QT_SCRATCH_GEMV, (size_t)(ns > 0 ? ns : 1) * sizeof(vg_step));
    prep(yb, ns, st);
    const bool packed = ws == (size_t)nb * bs;
    for (int r0 = 0; r0 < n_rows; r0 += VG_ROWS) {
        const char *a = (const char *)w + (size_t)r0 * ws;
        int m = QT_MIN(VG_ROWS, n_rows - r0);
        const char *r[VG_ROWS];
        for (int i = 0; i < VG_ROWS; i++) r[i] = a + (size_t)QT_MIN(i, m - 1) * ws;
        // the next pass's rows, contiguous when packed, streamed in at the rate this pass reads
        const char *pf = packed && r0 + 2 * VG_ROWS <= n_rows ? a + VG_ROWS * ws : NULL;
        float out[VG_ROWS];
        pass(r, st, ns, pf, qidx, didx, out);
        for (int i = 0; i < m; i++)
            y[r0 + i] = ns * bpb < nb ? out[i] + tail(r[i], yb, ns * bpb, nb) : out[i];
    }
}

void qt_gemv_q4_0_avx512vnni(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    vg_gemv(q4_0_pass, q4_0_tail, q4_0_prep, 4, sizeof(block_q4_0), q4_0_qidx(), q4_0_didx(), n, w, ws, x, y,
            n_rows);
}

void qt_gemv_q8_0_avx512vnni(int n, const void *w, size_t ws, const void *x, float *y, int n_rows) {
    vg_gemv(q8_0_pass, q8_0_tail, q8_0_prep, 2, sizeof(block_q8_0), q8_0_qidx(), q8_0_didx(), n, w, ws, x, y,
            n_rows);
}
