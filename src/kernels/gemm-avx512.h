// gemm-avx512.h: the blocked AVX-512 gemm shared by gemm-avx512.c (fp32
// products) and gemm-avx512bf16.c (bf16 products with fp32 sums). Include
// only from those two files, after defining G5_PAIRS (0: fp32, 1: bf16 pairs)
// and the micro-kernel
//   G5_INLINE void g5_tile(const int rows, int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc,
//                          bool load_c, int mr);
// which computes the first `rows` rows (a constant where inlined) of C
// (G5_MR x G5_NR, rows ldc apart) = (load_c ? C : 0) + Ap @ Bp, loading and
// storing C's first mr <= rows of them; the driver calls it through
// g5_kernel (G5_MR rows), g5_kernel_8 and g5_kernel_4 (a last, short row panel).
// G5_MR <= 16 (the A pack transposes 16 rows at a time).
//
// Packed operands hold 4-byte units: an fp32 value (one k), or with G5_PAIRS
// a bf16 pair, two consecutive k of one row or column in one dword with the
// even k in the low half (the operand layout of vdpbf16ps). A block of kc k
// is ku = kc (fp32) or ceil(kc / 2) (pairs) units deep.
//   A: ceil(mc / MR) row panels of (ku x MR) units, unit-major;
//   B: ceil(nc / NR) column panels of (ku x NR) units, unit-major.
// Goto/BLIS blocking: a (KC x NC) block of B is packed once and reused by
// every row block of A; each (ku x 32) panel of it (128 KiB) is read by the
// MC / MR micro-kernel calls of a row block, the A block (MC x KC, 392 KiB)
// by every panel, both from L2 (two sequential streams of 184 bytes per 14
// cycles, which the L1 prefetcher keeps up with). The 14 x 32
// micro-tile keeps 28 zmm accumulators: per unit 2 loads of B, 14 broadcasts
// of A, 28 FMAs (or vdpbf16ps, each two k). Ragged edges: the packs are
// zero-padded to whole panels and edge tiles of C go through a scratch tile,
// so every element of C sums in the same order (units ascending, from C's old
// value or from 0). fp32 -> bf16 rounds to nearest even, as
// qt_fp32_to_bf16 (quant/types.h) and PyTorch's .to(torch.bfloat16), up to
// denormals (flushed: vdpbf16ps would read them as zero).
// B comes from three sources: float rows (gemm_acc), weight rows of any type
// dequantized a row segment at a time (gemm_acc_w: B = W), and weight rows
// transposed 16 x 16 units at a time (gemm_xwt: B = W^T; F32 rows and, for
// pairs, BF16 rows are read in place, other types dequantized 16 rows at a
// time into an L1 buffer).
// Follows BLIS's skx sgemm (register-blocked micro-tile, packed panels) and
// Goto & van de Geijn, "Anatomy of high-performance matrix multiplication".
#ifndef QT_GEMM_AVX512_H
#define QT_GEMM_AVX512_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/simd-x86.h"
#include "quant/blocks.h"
#include "quant/types.h"

#define G5_MR 14     // 28 accumulators; measured in L1 on Zen 5: 14 rows reach the bf16 peak, 12 do not
#define G5_NR 32
// k per block (1024 units either way), a multiple of every block size (32,
// 256). C is loaded and stored once per block: at the earlier 512 pairs (a
// B panel in L1) a K = 2048 gemm went over C 4 times, and this alone took
// the bf16 gemm_acc from ~340 to ~375 GFLOP/s, fp32 from ~175 to ~190
// (Zen 5, 1 thread, best of alternated runs).
#define G5_KC (G5_PAIRS ? 2048 : 1024)
#define G5_MC 98     // A block: MC x KC, 7 panels (56 .. 140 measured the same)
#define G5_NC 1024   // B block: KC x NC
#define G5_KU(kc) (G5_PAIRS ? ((kc) + 1) / 2 : (kc))
// Units from one B panel to the next: ku x NR and one cache line more, so
// that the packers, which write unit row u of every panel in turn, do not
// send all of those lines (ku x 128 bytes apart, a multiple of 4 KiB) to one
// cache set.
#define G5_BPS(ku) ((size_t)(ku) * G5_NR + 16)
#define G5_INLINE static inline __attribute__((always_inline))

// ---- units from floats ----

#if G5_PAIRS
// fp32 -> bf16 by vcvtne2ps2bf16 (qt_cvtne_bf16x32): nearest even, as
// qt_fp32_to_bf16 and PyTorch's .to(torch.bfloat16), NaN quiet, but
// denormals flushed to zero: vdpbf16ps, the only reader of the packed
// panels, treats denormal inputs as zero, so the products are the same. One
// instruction per 32 values against ~14 for the integer rounding.

// 16 pairs: lane i = (bf16(even[i]), bf16(odd[i])), even in the low half
G5_INLINE __m512i g5_pairs(__m512 even, __m512 odd) {
    const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(zip, qt_cvtne_bf16x32(even, odd));
}
#endif

G5_INLINE __mmask16 g5_mask(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1); }

// Units u0 .. u0+15 of a row of n floats (zero past n): the floats
// themselves, or pairs of consecutive elements.
G5_INLINE __m512i g5_row_units(const float *row, int u0, int n) {
#if G5_PAIRS
    int k0 = 2 * u0;
    __m512 a = _mm512_maskz_loadu_ps(g5_mask(n - k0), row + k0);
    __m512 b = _mm512_maskz_loadu_ps(g5_mask(n - k0 - 16), row + k0 + 16);
    return qt_cvtne_bf16x32(a, b);   // 32 bf16 in element order: the pairs
#else
    return _mm512_castps_si512(_mm512_maskz_loadu_ps(g5_mask(n - u0), row + u0));
#endif
}

// In-register 16 x 16 transpose of dwords: r[i] (row i) -> r[j] (column j).
G5_INLINE void g5_transpose16(__m512i r[16]) {
    __m512i t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 16; g += 4) {   // r[g + c] lane L: column 4L + c of rows g .. g+3
        r[g + 0] = _mm512_unpacklo_epi64(t[g + 0], t[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(t[g + 0], t[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
#pragma GCC unroll 16
    for (int h = 0; h < 16; h += 8)
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            t[h + c] = _mm512_shuffle_i32x4(r[h + c], r[h + 4 + c], 0x88);       // columns c, 8 + c
            t[h + 4 + c] = _mm512_shuffle_i32x4(r[h + c], r[h + 4 + c], 0xdd);   // columns 4 + c, 12 + c
        }
#pragma GCC unroll 16
    for (int c = 0; c < 8; c++) {
        r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
    }
}

// ---- packing A ----

#define G5_PA_AHEAD 4
// Ap = A (mc x kc, rows lda apart) as row panels; 16 rows x 16 units
// transposed at a time, the panel's MR rows stored with a mask.
static void g5_pack_a(uint32_t *restrict Ap, const float *A, size_t lda, int mc, int kc) {
    const int ku = G5_KU(kc);
    for (int i0 = 0; i0 < mc; i0 += G5_MR, Ap += (size_t)ku * G5_MR) {
        int rows = QT_MIN(G5_MR, mc - i0);
        for (int u0 = 0; u0 < ku; u0 += 16) {
            // the rows' segments G5_PA_AHEAD steps on: MR streams lda apart,
            // which the hardware prefetcher does not keep up with
            int kp = (G5_PAIRS ? 2 : 1) * (u0 + 16 * G5_PA_AHEAD);
            if (kp < kc)
                for (int i = 0; i < rows; i++) {
                    const float *p = A + (size_t)(i0 + i) * lda + kp;
                    _mm_prefetch((const char *)p, _MM_HINT_T0);
                    if (G5_PAIRS && kp + 16 < kc) _mm_prefetch((const char *)(p + 16), _MM_HINT_T0);
                }
            __m512i v[16];
            if (rows == G5_MR && u0 + 16 <= ku) {   // whole: unrolled, so v stays in registers
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    v[i] = i < G5_MR ? g5_row_units(A + (size_t)(i0 + i) * lda, u0, kc) : _mm512_setzero_si512();
                g5_transpose16(v);
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++)
                    _mm512_mask_storeu_epi32(Ap + (size_t)(u0 + u) * G5_MR, (__mmask16)((1u << G5_MR) - 1), v[u]);
                continue;
            }
            for (int i = 0; i < 16; i++)
                v[i] = i < rows ? g5_row_units(A + (size_t)(i0 + i) * lda, u0, kc) : _mm512_setzero_si512();
            g5_transpose16(v);
            for (int u = 0; u < 16 && u0 + u < ku; u++)
                _mm512_mask_storeu_epi32(Ap + (size_t)(u0 + u) * G5_MR, (__mmask16)((1u << G5_MR) - 1), v[u]);
        }
    }
}

// Ap = A (mc x kc) as row panels from its transpose At (kc x mc, rows ldat
// apart): unit u of a panel is row k = u (or rows 2u, 2u + 1 as pairs) of
// At, MR consecutive values, so no transpose is needed.
static void g5_pack_at(uint32_t *restrict Ap, const float *At, size_t ldat, int mc, int kc) {
    const int ku = G5_KU(kc);
    for (int i0 = 0; i0 < mc; i0 += G5_MR, Ap += (size_t)ku * G5_MR) {
        __mmask16 m = g5_mask(QT_MIN(G5_MR, mc - i0));
        for (int u = 0; u < ku; u++) {
#if G5_PAIRS
            const float *r0 = At + (size_t)(2 * u) * ldat + i0;
            __m512 a = _mm512_maskz_loadu_ps(m, r0);
            __m512 b = 2 * u + 1 < kc ? _mm512_maskz_loadu_ps(m, r0 + ldat) : _mm512_setzero_ps();
            __m512i v = g5_pairs(a, b);
#else
            __m512i v = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, At + (size_t)u * ldat + i0));
#endif
            _mm512_mask_storeu_epi32(Ap + (size_t)u * G5_MR, (__mmask16)((1u << G5_MR) - 1), v);
        }
    }
}

// ---- packing B ----

// Producer of B's packed blocks: Bp = B[k0 : k0+kc, n0 : n0+nc] as
// ceil(nc / NR) panels of (ku x NR) units, zero-padded to whole panels.
typedef void (*g5_pack_b_fn)(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp);
// Optional: start loading the part [f0, f1) of the block (k0, kc, n0, nc) from
// memory, f in units of 1 / G5_PF_PARTS of its rows (the driver spreads the
// next block's prefetch over the micro-kernel calls of the current one: weight
// rows read a short segment at a time are streams the hardware prefetcher
// does not follow).
typedef void (*g5_prefetch_fn)(const void *src, int k0, int kc, int n0, int nc, int f0, int f1);
#define G5_PF_PARTS 32

// Unit row u of a block from its float k-rows r0 (k = 2u or u) and r1 (k =
// 2u + 1 with pairs; NULL past K): nc columns dealt out to the panels. Rows
// p0, p1 (or NULL) are prefetched on the way.
G5_INLINE void g5_deal(const float *r0, const float *r1, int nc, int ku, int u, uint32_t *restrict Bp,
                       const float *p0, const float *p1) {
    for (int j0 = 0; j0 < nc; j0 += 16) {
        __mmask16 m = g5_mask(nc - j0);
        if (p0) _mm_prefetch((const char *)(p0 + j0), _MM_HINT_T0);
        if (p1) _mm_prefetch((const char *)(p1 + j0), _MM_HINT_T0);
        __m512 a = _mm512_maskz_loadu_ps(m, r0 + j0);
        uint32_t *d = Bp + (size_t)(j0 / G5_NR) * G5_BPS(ku) + (size_t)u * G5_NR + (j0 % G5_NR);
#if G5_PAIRS
        __m512 b = r1 ? _mm512_maskz_loadu_ps(m, r1 + j0) : _mm512_setzero_ps();
        _mm512_store_si512((void *)d, g5_pairs(a, b));
#else
        (void)r1;
        _mm512_store_si512((void *)d, _mm512_castps_si512(a));
#endif
    }
    if (nc % G5_NR && nc % G5_NR <= 16)   // the upper half of a last panel with at most 16 columns
        _mm512_store_si512((void *)(Bp + (size_t)(nc / G5_NR) * G5_BPS(ku) + (size_t)u * G5_NR + 16),
                           _mm512_setzero_si512());
}

typedef struct {
    const float *B;
    size_t ldb;
} g5_rows_src;

// B row-major (K, N) floats
#define G5_PF_ROWS 4
static void g5_pack_rows(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const g5_rows_src *s = src;
    const int ku = G5_KU(kc);
    for (int u = 0; u < ku; u++) {
        int k = G5_PAIRS ? k0 + 2 * u : k0 + u;
        const float *r0 = s->B + (size_t)k * s->ldb + n0;
        const float *r1 = G5_PAIRS && k + 1 < k0 + kc ? r0 + s->ldb : NULL;
        // the rows G5_PF_ROWS on: each row segment (nc floats) is a short
        // stream that the hardware prefetcher picks up too late (this pack's
        // share of a bf16 gemm_acc 2048^2 x 512: 11.8% -> 7.2%; 2 or 8 rows
        // ahead measured the same)
        int kp = k + G5_PF_ROWS;
        const float *p0 = kp < k0 + kc ? r0 + (size_t)G5_PF_ROWS * s->ldb : NULL;
        const float *p1 = G5_PAIRS && kp + 1 < k0 + kc ? p0 + s->ldb : NULL;
        g5_deal(r0, r1, nc, ku, u, Bp, p0, p1);
    }
}

typedef struct {
    const char *w;             // W's row 0 (gemm_wq: at B's column 0, block-aligned)
    size_t stride;             // bytes between rows
    qt_type type;
    qt_to_float_fn to_float;
    int blck;
    size_t blck_bytes;
} g5_w_src;

G5_INLINE void g5_prefetch_seg0(const g5_w_src *s, const char *row, int e0, int ne) {
    const char *p = row + (size_t)(e0 / s->blck) * s->blck_bytes;
    size_t bytes = (size_t)(ne / s->blck) * s->blck_bytes;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

#if G5_PAIRS
// A weight row segment of n elements (whole blocks of its type) as bf16 in
// y: the fp32 values of the type's to_float rounded to bf16. Q4_0 and Q8_0
// straight from their blocks ((q - 8) * d and q * d in fp32, as their
// to_float; 12 instructions a block), other types through tmp (n floats).
// An odd n gets a zero after it (the last pair's upper half).
// The first `left` (all 32 when left >= 32) of 32 halves.
G5_INLINE __mmask32 g5_mask32(int left) { return left >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << left) - 1); }

// 32 bf16 values b at y, or the first `left` of them where fewer remain.
G5_INLINE void g5_store_bf16x32(uint16_t *y, int left, __m512i b) {
    if (left >= 32) _mm512_storeu_si512((void *)y, b);
    else _mm512_mask_storeu_epi16(y, g5_mask32(left), b);
}

static void g5_row_bf16(const g5_w_src *s, const char *x, uint16_t *y, int n, float *tmp) {
    if (s->type == QT_TYPE_Q4_0) {
        const block_q4_0 *b = (const block_q4_0 *)x;
        // q - 8 as floats, by the low 4 bits of each lane (vpermps ignores the rest)
        const __m512 lut = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
        for (int i = 0; i < n / QK4_0; i++, y += QK4_0) {
            __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b[i].qs));
            __m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));
            __m512 lo = _mm512_permutexvar_ps(q, lut), hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), lut);
            _mm512_storeu_si512((void *)y, qt_cvtne_bf16x32(_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)));
        }
        return;
    }
    if (s->type == QT_TYPE_Q8_0) {
        const block_q8_0 *b = (const block_q8_0 *)x;
        for (int i = 0; i < n / QK8_0; i++, y += QK8_0) {
            __m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));
            __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].qs)));
            __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b[i].qs + 16))));
            _mm512_storeu_si512((void *)y, qt_cvtne_bf16x32(_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)));
        }
        return;
    }
    if (s->type == QT_TYPE_F16) {   // exact to fp32, then rounded (F16 weights on the bf16 path: matmul.c)
        const uint16_t *h = (const uint16_t *)x;
        for (int j = 0; j < n; j += 32) {
            __m512i v = _mm512_maskz_loadu_epi16(g5_mask32(n - j), h + j);
            g5_store_bf16x32(y + j, n - j,
                             qt_cvtne_bf16x32(_mm512_cvtph_ps(_mm512_castsi512_si256(v)),
                                              _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1))));
        }
        if (n % 2) y[n] = 0;
        return;
    }
    s->to_float(x, tmp, n);
    for (int j = 0; j < n; j += 32) {
        g5_store_bf16x32(y + j, n - j,
                         qt_cvtne_bf16x32(_mm512_maskz_loadu_ps(g5_mask(n - j), tmp + j),
                                          _mm512_maskz_loadu_ps(g5_mask(n - j - 16), tmp + j + 16)));
    }
    if (n % 2) y[n] = 0;
}

// Unit row u of a block from two bf16 k-rows r0 (k) and r1 (k + 1, NULL past
// K): nc columns, the halves interleaved by one vpermt2w per 16 columns,
// dealt out to whole panels (the masked loads zero the padding).
G5_INLINE void g5_deal_bf16(const uint16_t *r0, const uint16_t *r1, int nc, int ku, int u, uint32_t *restrict Bp) {
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                        39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int j0 = 0; j0 < nc; j0 += G5_NR) {
        __mmask32 m = g5_mask32(nc - j0);
        __m512i a = _mm512_maskz_loadu_epi16(m, r0 + j0);
        __m512i b = r1 ? _mm512_maskz_loadu_epi16(m, r1 + j0) : _mm512_setzero_si512();
        uint32_t *d = Bp + (size_t)(j0 / G5_NR) * G5_BPS(ku) + (size_t)u * G5_NR;
        _mm512_store_si512((void *)d, _mm512_permutex2var_epi16(a, lo, b));
        _mm512_store_si512((void *)(d + 16), _mm512_permutex2var_epi16(a, hi, b));
    }
}
#endif

// B = W (K rows of W, B's columns a block-aligned range of each row). fp32:
// each row segment dequantized into an L1 buffer, then dealt out. Pairs:
// BF16 rows are pairs already, the halves of rows k and k + 1 interleaved
// (bit-identical to widening and rounding back, but for signalling NaNs,
// which stay so; the output head's backward lost 4% of a QLoRA step to the
// fp32 round trip); other types dequantized to bf16 rows first (g5_row_bf16:
// a Q4_0 base's backward spent 7% of a QLoRA step in the fp32 dequantization
// and its rounding).
static void g5_pack_wq(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const g5_w_src *s = src;
    const int ku = G5_KU(kc);
    const size_t off = (size_t)(n0 / s->blck) * s->blck_bytes;
#if G5_PAIRS
    uint16_t h[2][G5_NC + 32] __attribute__((aligned(64)));
    float tmp[G5_NC] __attribute__((aligned(64)));
    for (int u = 0; u < ku; u++) {
        int k = k0 + 2 * u;
        const char *w0 = s->w + (size_t)k * s->stride + off, *w1 = k + 1 < k0 + kc ? w0 + s->stride : NULL;
        const uint16_t *r0 = (const uint16_t *)w0, *r1 = (const uint16_t *)w1;
        for (int kp = k + 32; kp < k + 32 + 2 && kp < k0 + kc; kp++)
            g5_prefetch_seg0(s, s->w + (size_t)kp * s->stride, n0, nc);
        if (s->type != QT_TYPE_BF16) {
            g5_row_bf16(s, w0, h[0], nc, tmp);
            r0 = h[0];
            if (w1) {
                g5_row_bf16(s, w1, h[1], nc, tmp);
                r1 = h[1];
            }
        }
        g5_deal_bf16(r0, r1, nc, ku, u, Bp);
    }
#else
    float buf[G5_NC] __attribute__((aligned(64)));
    for (int u = 0; u < ku; u++) {
        s->to_float(s->w + (size_t)(k0 + u) * s->stride + off, buf, nc);
        g5_deal(buf, NULL, nc, ku, u, Bp, NULL, NULL);
    }
#endif
}

// B = W^T: B (k, j) = W row n0 + j, element k0 + k. Per group of 16 rows,
// 16 units of each row loaded (or dequantized first), one 16 x 16 transpose,
// 16 unit rows of half a panel stored.
#define G5_WT_CHUNK 512   // k per dequantized segment: 16 rows of them (32 KiB) stay in L1
static void g5_pack_wt(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const g5_w_src *s = src;
    const int ku = G5_KU(kc);
    const bool in_place_f32 = s->type == QT_TYPE_F32;
    const bool in_place_bf16 = G5_PAIRS && s->type == QT_TYPE_BF16 && kc % 2 == 0;
    // bf16 units: in place, or (pairs, any type but F32) rows dequantized to bf16
    const bool bf16_units = G5_PAIRS && !in_place_f32;
#if G5_PAIRS
    uint16_t buf[16][G5_WT_CHUNK + 32] __attribute__((aligned(64)));
    float tmp[G5_WT_CHUNK] __attribute__((aligned(64)));
#else
    float buf[16][G5_WT_CHUNK] __attribute__((aligned(64)));
#endif
    for (int j0 = 0; j0 < nc; j0 += 16) {
        int rows = QT_MIN(16, nc - j0);
        uint32_t *d = Bp + (size_t)(j0 / G5_NR) * G5_BPS(ku) + (j0 % G5_NR);
        for (int i = 0; i < 16 && j0 + 16 + i < nc; i++)
            g5_prefetch_seg0(s, s->w + (size_t)(n0 + j0 + 16 + i) * s->stride, k0, kc);
        for (int c0 = 0; c0 < kc; c0 += G5_WT_CHUNK) {   // k0 + c0 .. + cc: units cu0 .. + cku
            int cc = QT_MIN(G5_WT_CHUNK, kc - c0), cu0 = G5_KU(c0), cku = G5_KU(cc);
            const char *r[16];
            for (int i = 0; i < rows; i++) {
                const char *row = s->w + (size_t)(n0 + j0 + i) * s->stride;
                if (in_place_f32) r[i] = row + (size_t)(k0 + c0) * 4;
                else if (in_place_bf16) r[i] = row + (size_t)(k0 + c0) * 2;
                else {
#if G5_PAIRS
                    g5_row_bf16(s, row + (size_t)((k0 + c0) / s->blck) * s->blck_bytes, buf[i], cc, tmp);
#else
                    s->to_float(row + (size_t)((k0 + c0) / s->blck) * s->blck_bytes, buf[i], cc);
#endif
                    r[i] = (const char *)buf[i];
                }
            }
            for (int u0 = 0; u0 < cku; u0 += 16) {
                __m512i v[16];
                if (rows == 16 && bf16_units && u0 + 16 <= cku) {   // whole: unrolled, v in registers
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) v[i] = _mm512_loadu_si512((const uint32_t *)r[i] + u0);
                    g5_transpose16(v);
#pragma GCC unroll 16
                    for (int u = 0; u < 16; u++) _mm512_store_si512((void *)(d + (size_t)(cu0 + u0 + u) * G5_NR), v[u]);
                    continue;
                }
                for (int i = 0; i < 16; i++) {
                    if (i >= rows) v[i] = _mm512_setzero_si512();
                    else if (bf16_units) v[i] = _mm512_maskz_loadu_epi32(g5_mask(cku - u0), (const uint32_t *)r[i] + u0);
                    else v[i] = g5_row_units((const float *)r[i], u0, cc);
                }
                g5_transpose16(v);
                for (int u = 0; u < 16 && u0 + u < cku; u++)
                    _mm512_store_si512((void *)(d + (size_t)(cu0 + u0 + u) * G5_NR), v[u]);
            }
        }
        if (rows <= 16 && j0 % G5_NR == 0 && j0 + 16 >= nc)   // a last panel with at most 16 columns
            for (int u = 0; u < ku; u++) _mm512_store_si512((void *)(d + (size_t)u * G5_NR + 16), _mm512_setzero_si512());
    }
}

// bytes of a row segment [e0, e0 + ne) of W, prefetched with the T2 hint (the
// farthest cache level the CPU offers: L2 holds the A block and the B panel
// in use; the packed B block itself, 4 MiB at KC 2048 x NC 1024, lives in
// L3). On Zen 5 (bf16 pp512, 2 threads) this measured within the host's noise
// of no prefetch at all (256-262 against 262-264 tok/s).
G5_INLINE void g5_prefetch_seg(const g5_w_src *s, const char *row, int e0, int ne) {
    const char *p = row + (size_t)(e0 / s->blck) * s->blck_bytes;
    size_t bytes = (size_t)(ne / s->blck) * s->blck_bytes;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T2);
}

// gemm_xwt's blocks: rows n0 .. n0+nc of W, elements k0 .. k0+kc
static void g5_prefetch_wt(const void *src, int k0, int kc, int n0, int nc, int f0, int f1) {
    const g5_w_src *s = src;
    for (int j = nc * f0 / G5_PF_PARTS; j < nc * f1 / G5_PF_PARTS; j++)
        g5_prefetch_seg(s, s->w + (size_t)(n0 + j) * s->stride, k0, kc);
}

// gemm_acc_w's blocks: rows k0 .. k0+kc of W, elements n0 .. n0+nc
static void g5_prefetch_wq(const void *src, int k0, int kc, int n0, int nc, int f0, int f1) {
    const g5_w_src *s = src;
    for (int k = kc * f0 / G5_PF_PARTS; k < kc * f1 / G5_PF_PARTS; k++)
        g5_prefetch_seg(s, s->w + (size_t)(k0 + k) * s->stride, n0, nc);
}

// ---- the blocked driver ----

// Pre-packed A (pack_x) of K columns: block pb (k from pb * KC) at (pb *
// panels + i) * g5_xp_panel_units(K) units for panel i (rows i * MR ..),
// every slot a whole block deep (the last block fills only its own ku).
G5_INLINE size_t g5_xp_panel_units(int64_t K) { return (size_t)G5_KU((int)QT_MIN(K, G5_KC)) * G5_MR; }

G5_INLINE const uint32_t *g5_xp_panel(const uint32_t *xp, int64_t M, int64_t K, int64_t pb, int64_t i) {
    size_t panels = (size_t)(M + G5_MR - 1) / G5_MR;
    return xp + ((size_t)pb * panels + (size_t)i) * g5_xp_panel_units(K);
}

G5_INLINE void g5_tile(const int rows, int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc,
                       bool load_c, int mr);
static void g5_kernel(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c, int mr) {
    g5_tile(G5_MR, ku, Ap, Bp, C, ldc, load_c, mr);
}
static void g5_kernel_8(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c, int mr) {
    g5_tile(8, ku, Ap, Bp, C, ldc, load_c, mr);
}
static void g5_kernel_4(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c, int mr) {
    g5_tile(4, ku, Ap, Bp, C, ldc, load_c, mr);
}

// C (M, N) = (accumulate ? C : 0) + A (M, K) @ B (K, N), B through its packer;
// A packed here (Apre NULL; a_t: A is given as At (K, M), rows lda apart) or
// pre-packed by g5_pack_x.
static void g5_driver(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, bool a_t, const uint32_t *Apre,
                      g5_pack_b_fn pack, g5_prefetch_fn prefetch, const void *src, float *C, size_t ldc,
                      bool accumulate) {
    if (M <= 0 || N <= 0) return;
    QT_ASSERT(N <= INT32_MAX && K <= INT32_MAX);   // the packers' coordinates
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    int ku_max = G5_KU((int)QT_MIN(K, G5_KC)), nc_max = (int)QT_MIN((N + G5_NR - 1) / G5_NR * G5_NR, G5_NC);
    int mc_max = (int)QT_MIN((M + G5_MR - 1) / G5_MR * G5_MR, G5_MC);
    size_t nb = (size_t)(nc_max / G5_NR) * G5_BPS(ku_max), na = Apre ? 0 : (size_t)mc_max * ku_max;
    uint32_t *Bp = qt_kernel_scratch(QT_SCRATCH_GEMM, (nb + na) * sizeof(uint32_t)), *Ap = Bp + nb;
    float tmp[G5_MR * G5_NR] __attribute__((aligned(64)));
    for (int jc = 0; jc < N; jc += G5_NC) {
        int nc = (int)QT_MIN(G5_NC, N - jc);
        for (int pc = 0; pc < K; pc += G5_KC) {
            int kc = (int)QT_MIN(G5_KC, K - pc), ku = G5_KU(kc);
            bool load_c = accumulate || pc > 0;
            pack(src, pc, kc, jc, nc, Bp);
            // the next B block: (pc + KC, jc), or (0, jc + NC) after the last k block
            int pn = pc + G5_KC < K ? pc + G5_KC : 0, jn = pc + G5_KC < K ? jc : jc + G5_NC;
            int kcn = (int)QT_MIN(G5_KC, K - pn), ncn = (int)QT_MIN(G5_NC, N - jn), n_pf = 0;
            int pf_calls = (nc + G5_NR - 1) / G5_NR * ((int)QT_MIN(G5_MC, M) + G5_MR - 1) / G5_MR;
            for (int64_t ic = 0; ic < M; ic += G5_MC) {
                int mc = (int)QT_MIN(G5_MC, M - ic);
                if (!Apre && a_t) g5_pack_at(Ap, A + (size_t)pc * lda + ic, lda, mc, kc);
                else if (!Apre) g5_pack_a(Ap, A + (size_t)ic * lda + pc, lda, mc, kc);
                for (int jr = 0; jr < nc; jr += G5_NR) {
                    const uint32_t *bp = Bp + (size_t)(jr / G5_NR) * G5_BPS(ku);
                    int nr = QT_MIN(G5_NR, nc - jr);
                    // spread over the first row block's calls: a slice of the next block each
                    if (prefetch && ic == 0 && jn < N) {
                        int f0 = n_pf * G5_PF_PARTS / pf_calls, f1 = (n_pf + (mc + G5_MR - 1) / G5_MR) * G5_PF_PARTS / pf_calls;
                        n_pf += (mc + G5_MR - 1) / G5_MR;
                        if (f1 > f0) prefetch(src, pn, kcn, jn, ncn, f0, QT_MIN(f1, G5_PF_PARTS));
                    }
                    for (int ir = 0; ir < mc; ir += G5_MR) {
                        const uint32_t *ap = Apre ? g5_xp_panel(Apre, M, K, pc / G5_KC, (ic + ir) / G5_MR)
                                                  : Ap + (size_t)ir * ku;
                        int mr = QT_MIN(G5_MR, mc - ir);
                        float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                        // the next tile of C (below this one, or the first of the next panel) is
                        // fetched while this one computes: its rows, ldc apart, share few L1 sets
                        const float *cn = ir + G5_MR < mc ? c + (size_t)G5_MR * ldc : C + (size_t)ic * ldc + jc + jr + G5_NR;
                        if (load_c && (ir + G5_MR < mc || jr + G5_NR < nc))
                            for (int i = 0; i < G5_MR; i++) {
                                _mm_prefetch((const char *)(cn + (size_t)i * ldc), _MM_HINT_T0);
                                _mm_prefetch((const char *)(cn + (size_t)i * ldc + 16), _MM_HINT_T0);
                            }
                        // a last row panel of at most 8 or 4 rows: a kernel of that height
                        void (*kern)(int, const uint32_t *, const uint32_t *, float *, size_t, bool, int) =
                            mr > 8 ? g5_kernel : mr > 4 ? g5_kernel_8 : g5_kernel_4;
                        if (nr == G5_NR) {
                            kern(ku, ap, bp, c, ldc, load_c, mr);
                        } else {
                            memset(tmp, 0, sizeof(tmp));
                            if (load_c)
                                for (int i = 0; i < mr; i++) memcpy(tmp + i * G5_NR, c + (size_t)i * ldc, sizeof(float) * nr);
                            kern(ku, ap, bp, tmp, G5_NR, true, mr);
                            for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * ldc, tmp + i * G5_NR, sizeof(float) * nr);
                        }
                    }
                }
            }
        }
    }
}

// ---- the qt_gemm_ops entries (kernels.h) ----

static void g5_gemm_acc(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float *C, int64_t ldc) {
    g5_rows_src s = { B, (size_t)ldb };
    g5_driver(M, N, K, A, (size_t)lda, false, NULL, g5_pack_rows, NULL, &s, C, (size_t)ldc, true);
}

static void g5_gemm_acc_at(int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat, const float *B,
                           int64_t ldb, float *C, int64_t ldc) {
    g5_rows_src s = { B, (size_t)ldb };
    g5_driver(M, N, K, At, (size_t)ldat, true, NULL, g5_pack_rows, NULL, &s, C, (size_t)ldc, true);
}

static void g5_gemm_set(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float *C, int64_t ldc) {
    g5_rows_src s = { B, (size_t)ldb };
    g5_driver(M, N, K, A, (size_t)lda, false, NULL, g5_pack_rows, NULL, &s, C, (size_t)ldc, false);
}

static void g5_gemm_acc_w(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                          const qt_wmat *W, int64_t n0, float *C, int64_t ldc) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    QT_ASSERT(N % tt->blck_size == 0 && n0 % tt->blck_size == 0 && G5_NC % tt->blck_size == 0);
    if (W->type == QT_TYPE_F32) {
        g5_rows_src s = { (const float *)W->data + n0, W->stride / sizeof(float) };
        g5_driver(M, N, K, A, (size_t)lda, false, (const uint32_t *)ap, g5_pack_rows, NULL, &s, C, (size_t)ldc, true);
        return;
    }
    g5_w_src s = { (const char *)W->data + (size_t)(n0 / tt->blck_size) * tt->type_size, W->stride, W->type,
                   W->to_float, tt->blck_size, tt->type_size };
    g5_driver(M, N, K, A, (size_t)lda, false, (const uint32_t *)ap, g5_pack_wq, g5_prefetch_wq, &s, C, (size_t)ldc, true);
}

static void g5_gemm_xwt(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W, float *y,
                        int64_t ldy, int64_t n_rows) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    QT_ASSERT(G5_KC % tt->blck_size == 0 && G5_WT_CHUNK % tt->blck_size == 0 && n % tt->blck_size == 0);
    g5_w_src s = { W->data, W->stride, W->type, W->to_float, tt->blck_size, tt->type_size };
    g5_driver(T, n_rows, n, x, (size_t)ldx, false, (const uint32_t *)xp, g5_pack_wt, g5_prefetch_wt, &s, y, (size_t)ldy, false);
}

static size_t g5_pack_x_size(int64_t T, int64_t n) {
    return (size_t)((n + G5_KC - 1) / G5_KC) * (size_t)((T + G5_MR - 1) / G5_MR) * g5_xp_panel_units(n);
}

static void g5_pack_x(int64_t T, int64_t n, const float *x, int64_t ldx, float *xp, int ith, int nth) {
    int64_t panels = (T + G5_MR - 1) / G5_MR, n_pb = (n + G5_KC - 1) / G5_KC;
    int64_t i0, i1;   // items (pb, panel) in order, a contiguous share per thread
    qt_pool_split(n_pb * panels, 1, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int64_t pb = it / panels, i = it % panels, pc = pb * G5_KC;
        int kc = (int)QT_MIN(G5_KC, n - pc), rows = (int)QT_MIN(G5_MR, T - i * G5_MR);
        g5_pack_a((uint32_t *)g5_xp_panel((const uint32_t *)xp, T, n, pb, i), x + (size_t)(i * G5_MR) * (size_t)ldx + pc,
                  (size_t)ldx, rows, kc);
    }
}

static const qt_gemm_ops g5_ops = {
    .gemm_acc = g5_gemm_acc, .gemm_acc_at = g5_gemm_acc_at, .gemm_set = g5_gemm_set, .gemm_acc_w = g5_gemm_acc_w,
    .gemm_xwt = g5_gemm_xwt,
    .pack_x_size = g5_pack_x_size, .pack_x = g5_pack_x,
};

#endif
