// gemm-f32-avx2.c: C (M, N) (+)= A (M, K) @ B (K, N) in float32 with AVX2 +
// FMA, one blocked driver behind the AVX2 table's f32 ops (qt_gemm_ops):
//   gemm_acc       B float32 row-major;
//   gemm_acc_w     B = W, rows of any weight type dequantized straight
//                  into the panels (qt_matmul_t: dx += dy @ W);
//   gemm_xwt       B = W^T, rows of F32 / F16 / BF16 weights converted, of
//                  the quantized types dequantized 8 rows at a time, and
//                  transposed 8 x 8 into the panels (the forward y = x @ W^T:
//                  float weights from QT_MATMUL_WT_MIN_T tokens, every type
//                  at QT_PREC_F32).
// B reaches the driver through a pack function, so no float copy of a weight
// tile is ever made.
//
// Goto/BLIS blocking: B is packed a (KC x NC) block at a time into column
// panels of NR = 16 (one panel, KC x 16 floats = 16 KiB, stays in L1 while the
// A panels stream past it); A is packed an (MC x KC) block at a time into row
// panels of MR = 6, k-major (6 floats per k, read by broadcasts). The micro-
// kernel holds a 6 x 16 tile of C in 12 ymm accumulators (enough independent
// FMA chains for two FMA ports at 4-5 cycles latency) and per k does 2 loads
// of B, 6 broadcasts of A and 12 FMAs. Packing also keeps the operands off
// the few L1 sets that rows a power-of-two stride apart would share. Ragged
// edges: the packs are zero-padded to whole panels and edge tiles of C go
// through a 6 x 16 scratch tile, so every tile runs the same kernel and sums in
// the same order (k ascending, from C's old value or from 0): the same order
// as a BLAS sgemm, which is why the float forward tracks PyTorch closely.
// Weight rows are prefetched while the previous block computes (a transposing
// pack reads 8 rows at once, which the hardware prefetcher does not follow).
// The packs live in a per-thread scratch buffer (qt_kernel_scratch) kept
// between calls. Deliberately not: threading (the callers split the work), an
// assembly kernel, a shared packed A between threads.
// Follows BLIS's haswell sgemm (6 x 16 micro-tile) and Goto & van de Geijn,
// "Anatomy of high-performance matrix multiplication" (2008).
#include "kernels/simd-x86.h"
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/matmul-internal.h"
#include "quant/types.h"

#define MR 6
#define NR 16
#define KC 256   // A panel MR x KC = 6 KiB, B panel KC x NR = 16 KiB: both in L1
#define MC 96    // A block MC x KC = 96 KiB in L2
#define NC 1024  // B block KC x NC = 1 MiB, L3; reused by every A block

// C (6 x 16, row stride ldc) = (load_c ? C : 0) + Ap (K x 6, k-major) @ Bp (K x 16)
static void kernel_6x16(int K, const float *restrict Ap, const float *restrict Bp, float *restrict C, size_t ldc,
                        bool load_c) {
    float *c0 = C, *c1 = C + ldc, *c2 = C + 2 * ldc, *c3 = C + 3 * ldc, *c4 = C + 4 * ldc, *c5 = C + 5 * ldc;
    __m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
    if (load_c) {
        a00 = _mm256_loadu_ps(c0), a01 = _mm256_loadu_ps(c0 + 8);
        a10 = _mm256_loadu_ps(c1), a11 = _mm256_loadu_ps(c1 + 8);
        a20 = _mm256_loadu_ps(c2), a21 = _mm256_loadu_ps(c2 + 8);
        a30 = _mm256_loadu_ps(c3), a31 = _mm256_loadu_ps(c3 + 8);
        a40 = _mm256_loadu_ps(c4), a41 = _mm256_loadu_ps(c4 + 8);
        a50 = _mm256_loadu_ps(c5), a51 = _mm256_loadu_ps(c5 + 8);
    } else {
        a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int k = 0; k < K; k++, Ap += MR, Bp += NR) {
        __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8), x;
        x = _mm256_broadcast_ss(Ap + 0);
        a00 = _mm256_fmadd_ps(x, b0, a00); a01 = _mm256_fmadd_ps(x, b1, a01);
        x = _mm256_broadcast_ss(Ap + 1);
        a10 = _mm256_fmadd_ps(x, b0, a10); a11 = _mm256_fmadd_ps(x, b1, a11);
        x = _mm256_broadcast_ss(Ap + 2);
        a20 = _mm256_fmadd_ps(x, b0, a20); a21 = _mm256_fmadd_ps(x, b1, a21);
        x = _mm256_broadcast_ss(Ap + 3);
        a30 = _mm256_fmadd_ps(x, b0, a30); a31 = _mm256_fmadd_ps(x, b1, a31);
        x = _mm256_broadcast_ss(Ap + 4);
        a40 = _mm256_fmadd_ps(x, b0, a40); a41 = _mm256_fmadd_ps(x, b1, a41);
        x = _mm256_broadcast_ss(Ap + 5);
        a50 = _mm256_fmadd_ps(x, b0, a50); a51 = _mm256_fmadd_ps(x, b1, a51);
    }
    _mm256_storeu_ps(c0, a00); _mm256_storeu_ps(c0 + 8, a01);
    _mm256_storeu_ps(c1, a10); _mm256_storeu_ps(c1 + 8, a11);
    _mm256_storeu_ps(c2, a20); _mm256_storeu_ps(c2 + 8, a21);
    _mm256_storeu_ps(c3, a30); _mm256_storeu_ps(c3 + 8, a31);
    _mm256_storeu_ps(c4, a40); _mm256_storeu_ps(c4 + 8, a41);
    _mm256_storeu_ps(c5, a50); _mm256_storeu_ps(c5 + 8, a51);
}

// Producer of B's packed blocks: Bp = B[k0 : k0+kc, n0 : n0+nc] as
// ceil(nc / 16) panels of (kc x 16), k-major, columns zero-padded to 16.
typedef void (*pack_b_fn)(const void *src, int k0, int kc, int n0, int nc, float *restrict Bp);
// Optional: start loading B[k0 : k0+kc, n0 : n0+nc] from memory (the driver
// calls it for the next block while the micro-kernels run on this one, so
// the next pack does not wait on memory).
typedef void (*prefetch_b_fn)(const void *src, int k0, int kc, int n0, int nc);

typedef struct {
    const float *B;
    size_t ldb;
} rows_src;

// One k-row of a B block (nc floats at b) dealt out to the panels at d (its
// slot in panel 0; panels kc * NR floats apart), zero-padded to whole panels.
static inline void deal_row(const float *restrict b, float *restrict d, int kc, int nc) {
    int n_full = nc / NR, rem = nc % NR;
    for (int p = 0; p < n_full; p++, b += NR, d += (size_t)kc * NR) {
        _mm256_store_ps(d, _mm256_loadu_ps(b));
        _mm256_store_ps(d + 8, _mm256_loadu_ps(b + 8));
    }
    if (rem) {
        int j = 0;
        for (; j < rem; j++) d[j] = b[j];
        for (; j < NR; j++) d[j] = 0;
    }
}

// B row-major (K, N), rows ldb apart
static void pack_b_rows(const void *src, int k0, int kc, int n0, int nc, float *restrict Bp) {
    const rows_src *rs = src;
    for (int k = 0; k < kc; k++) deal_row(rs->B + (size_t)(k0 + k) * rs->ldb + n0, Bp + (size_t)k * NR, kc, nc);
}

// In-register 8 x 8 transpose: r[i] (row i, elements 0..7) -> r[k] (element
// k of rows 0..7).
static inline __attribute__((always_inline)) void transpose8x8(__m256 r[8]) {
    __m256 u0 = _mm256_unpacklo_ps(r[0], r[1]), u1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 u2 = _mm256_unpacklo_ps(r[2], r[3]), u3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 u4 = _mm256_unpacklo_ps(r[4], r[5]), u5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 u6 = _mm256_unpacklo_ps(r[6], r[7]), u7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(u0, u2, 0x44), s1 = _mm256_shuffle_ps(u0, u2, 0xee);
    __m256 s2 = _mm256_shuffle_ps(u1, u3, 0x44), s3 = _mm256_shuffle_ps(u1, u3, 0xee);
    __m256 s4 = _mm256_shuffle_ps(u4, u6, 0x44), s5 = _mm256_shuffle_ps(u4, u6, 0xee);
    __m256 s6 = _mm256_shuffle_ps(u5, u7, 0x44), s7 = _mm256_shuffle_ps(u5, u7, 0xee);
    // lane 0 holds elements 0..3, lane 1 4..7; s0..s3 rows 0-3, s4..s7 rows 4-7
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Ap = A (mc x kc) as ceil(mc / 6) panels of (kc x 6), k-major, zero-padded rows.
// Full panels transpose 6 rows x 8 k at a time; each k's 8-float store spills
// 2 floats into the next k's slots, which the next store overwrites (the block
// has 2 floats of slack at its end).
static void pack_a(float *restrict Ap, const float *restrict A, size_t lda, int mc, int kc) {
    for (int i0 = 0; i0 < mc; i0 += MR, Ap += (size_t)kc * MR) {
        const float *a = A + (size_t)i0 * lda;
        int rows = QT_MIN(MR, mc - i0), k = 0;
        if (rows == MR) {
            for (; k + 8 <= kc; k += 8) {
                // rows 0..5 and two zero rows: column k + i of the block ends in r[i]
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(a + (size_t)i * lda + k);
                r[6] = r[7] = _mm256_setzero_ps();
                transpose8x8(r);
                float *d = Ap + (size_t)k * MR;
                for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + i * MR, r[i]);
            }
        }
        for (; k < kc; k++) {
            float *d = Ap + (size_t)k * MR;
            int i = 0;
            for (; i < rows; i++) d[i] = a[(size_t)i * lda + k];
            for (; i < MR; i++) d[i] = 0;
        }
    }
}

// ---- B = W^T from weight rows (the forward y = x @ W^T) ----

typedef struct {
    const char *w;    // row 0 of W
    size_t stride;    // bytes between rows
    qt_to_float_fn to_float;   // quantized types (pack_wt_deq)
    int blck;
    size_t blck_bytes;
} wt_src;

enum { WT_F32, WT_F16, WT_BF16 };

// 8 consecutive elements of a weight row as floats
static inline __attribute__((always_inline)) __m256 load8(const char *p, int type) {
    if (type == WT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (type == WT_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    return _mm256_loadu_ps((const float *)p);
}

static inline __attribute__((always_inline)) float load1(const char *p, int type) {
    if (type == WT_F16) return _cvtsh_ss(*(const uint16_t *)p);
    if (type == WT_BF16) {
        uint32_t u = (uint32_t) * (const uint16_t *)p << 16;
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
    }
    return *(const float *)p;
}

// 8 rows (r[i], elements in `type`; rows >= `rows` pack as zeros) of kc
// elements each, transposed 8 x 8 at a time into 8 columns of a panel at d:
// d[k * NR + i] = row i, element k. A k tail of < 8 goes one by one.
static inline __attribute__((always_inline)) void pack8(const char *const r[8], int rows, int kc, float *restrict d,
                                                        int type) {
    const size_t esz = type == WT_F32 ? 4 : 2;
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 v[8];
        for (int i = 0; i < 8; i++) v[i] = i < rows ? load8(r[i] + (size_t)k * esz, type) : _mm256_setzero_ps();
        transpose8x8(v);
        float *dk = d + (size_t)k * NR;
        for (int i = 0; i < 8; i++) _mm256_store_ps(dk + (size_t)i * NR, v[i]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < 8; i++) d[(size_t)k * NR + i] = i < rows ? load1(r[i] + (size_t)k * esz, type) : 0.0f;
}

// the upper half of a last panel with at most 8 columns
static inline void zero_upper_half(int kc, int nc, float *restrict Bp) {
    if (nc % NR && nc % NR <= 8) {
        float *d = Bp + (size_t)(nc / NR) * kc * NR + 8;
        for (int k = 0; k < kc; k++) _mm256_store_ps(d + (size_t)k * NR, _mm256_setzero_ps());
    }
}

// B (k, j) = W row (n0 + j), element k0 + k: per half panel (8 rows), 8 row
// loads converted to float and one 8 x 8 transpose into 8 k-rows of the panel.
static inline __attribute__((always_inline)) void pack_wt(const void *src, int k0, int kc, int n0, int nc,
                                                          float *restrict Bp, int type) {
    const wt_src *ws = src;
    const size_t esz = type == WT_F32 ? 4 : 2;
    for (int j0 = 0; j0 < nc; j0 += 8) {
        float *d = Bp + (size_t)(j0 / NR) * kc * NR + (j0 % NR);
        int rows = QT_MIN(8, nc - j0);
        const char *r[8];
        for (int i = 0; i < 8; i++)
            r[i] = ws->w + (size_t)(n0 + j0 + QT_MIN(i, rows - 1)) * ws->stride + (size_t)k0 * esz;
        // the segments of the rows two groups ahead, while these are
        // transposed: 8 short streams defeat the hardware prefetcher
        for (int i = 0; i < QT_MIN(8, nc - j0 - 16); i++) {
            const char *pf = r[0] + (size_t)(16 + i) * ws->stride;
            for (size_t o = 0; o < (size_t)kc * esz; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
        }
        pack8(r, rows, kc, d, type);
    }
    zero_upper_half(kc, nc, Bp);
}

// The same for rows of a quantized type: each group's 8 row segments are
// dequantized (k0 and kc are whole blocks: KC is a multiple of every block
// size) into an L1 buffer first.
static void pack_wt_deq(const void *src, int k0, int kc, int n0, int nc, float *restrict Bp) {
    const wt_src *ws = src;
    float buf[8][KC] __attribute__((aligned(32)));
    const size_t off = (size_t)(k0 / ws->blck) * ws->blck_bytes;
    for (int j0 = 0; j0 < nc; j0 += 8) {
        int rows = QT_MIN(8, nc - j0);
        const char *r[8];
        for (int i = 0; i < 8; i++) {
            if (i < rows) ws->to_float(ws->w + (size_t)(n0 + j0 + i) * ws->stride + off, buf[i], kc);
            r[i] = (const char *)buf[QT_MIN(i, rows - 1)];
        }
        pack8(r, rows, kc, Bp + (size_t)(j0 / NR) * kc * NR + (j0 % NR), WT_F32);
    }
    zero_upper_half(kc, nc, Bp);
}

static void prefetch_wt(const void *src, int k0, int kc, int n0, int nc, size_t esz) {
    const wt_src *ws = src;
    for (int j = n0; j < n0 + nc; j++) {
        const char *p = ws->w + (size_t)j * ws->stride + (size_t)k0 * esz;
        for (size_t o = 0; o < (size_t)kc * esz; o += 64) _mm_prefetch(p + o, _MM_HINT_T2);
    }
}
static void prefetch_wt4(const void *s, int k0, int kc, int n0, int nc) { prefetch_wt(s, k0, kc, n0, nc, 4); }
static void prefetch_wt2(const void *s, int k0, int kc, int n0, int nc) { prefetch_wt(s, k0, kc, n0, nc, 2); }

static void pack_wt_f32(const void *s, int k0, int kc, int n0, int nc, float *restrict Bp) {
    pack_wt(s, k0, kc, n0, nc, Bp, WT_F32);
}
static void pack_wt_f16(const void *s, int k0, int kc, int n0, int nc, float *restrict Bp) {
    pack_wt(s, k0, kc, n0, nc, Bp, WT_F16);
}
static void pack_wt_bf16(const void *s, int k0, int kc, int n0, int nc, float *restrict Bp) {
    pack_wt(s, k0, kc, n0, nc, Bp, WT_BF16);
}

// ---- B = W from weight rows in any type (the backward dx += dy @ W) ----

typedef struct {
    const char *w;           // column 0 of B in row 0 of W (block-aligned)
    size_t stride;           // bytes between rows
    qt_to_float_fn to_float;
    int blck;                // elements per block
    size_t blck_bytes;
} wq_src;

// Each of the kc rows' column range [n0, n0 + nc) (whole blocks: n0 is a
// multiple of NC, nc of the block size) is dequantized into an L1 row buffer
// and dealt out to the panels: no full-size float copy of W's tile.
static void pack_wq(const void *src, int k0, int kc, int n0, int nc, float *restrict Bp) {
    const wq_src *ws = src;
    float buf[NC] __attribute__((aligned(32)));
    for (int k = 0; k < kc; k++) {
        ws->to_float(ws->w + (size_t)(k0 + k) * ws->stride + (size_t)(n0 / ws->blck) * ws->blck_bytes, buf, nc);
        deal_row(buf, Bp + (size_t)k * NR, kc, nc);
    }
}

// ---- the blocked driver ----

// Pre-packed A (gemm_pack_x): block pb (k from pb * KC) at pb * panels * XP_PANEL
// floats, panel i (rows i*MR..) at i * XP_PANEL within it; the 8 floats of
// slack after each panel take pack_a's spill, so panels pack independently.
#define XP_PANEL (KC * MR + 8)

static const float *xp_panel(const float *xp, int64_t M, int64_t pb, int64_t i) {
    size_t panels = (size_t)(M + MR - 1) / MR;
    return xp + ((size_t)pb * panels + (size_t)i) * XP_PANEL;
}

// C (M, N) = (accumulate ? C : 0) + A (M, K) @ B (K, N), B through its packer;
// A packed here (Apre NULL) or pre-packed by qt_gemm_pack_x_avx2.
// The blocks' offsets are int64_t (a whole matrix); the extents inside a
// block (kc, nc, mc <= 1024) are int.
static void gemm_driver(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *Apre, pack_b_fn pack,
                        prefetch_b_fn prefetch, const void *src, float *C, size_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    QT_ASSERT(N <= INT32_MAX && K <= INT32_MAX);   // the packers' coordinates
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    int kc_max = (int)QT_MIN(K, KC), nc_max = (int)QT_MIN((N + NR - 1) / NR * NR, NC);
    int mc_max = (int)QT_MIN((M + MR - 1) / MR * MR, MC);
    size_t nb = (size_t)kc_max * nc_max, na = Apre ? 0 : (size_t)mc_max * kc_max + 8;   // + pack_a's slack
    float *Bp = qt_kernel_scratch(QT_SCRATCH_GEMM, (nb + na) * sizeof(float)), *Ap = Bp + nb;
    float tmp[MR * NR];
    for (int jc = 0; jc < N; jc += NC) {
        int nc = (int)QT_MIN(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            int kc = (int)QT_MIN(KC, K - pc);
            bool load_c = accumulate || pc > 0;
            pack(src, pc, kc, jc, nc, Bp);
            // the next B block: (pc + KC, jc), or (0, jc + NC) after the last k block
            int pn = pc + KC < K ? pc + KC : 0, jn = pc + KC < K ? jc : jc + NC;
            int kcn = (int)QT_MIN(KC, K - pn), ncn = (int)QT_MIN(NC, N - jn);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int mc = (int)QT_MIN(MC, M - ic);
                if (!Apre) pack_a(Ap, A + (size_t)ic * lda + pc, lda, mc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bp = Bp + (size_t)jr * kc;
                    int nr = QT_MIN(NR, nc - jr);
                    // spread over the first row block's panels: NR columns of the next block per panel
                    if (prefetch && ic == 0 && jn < N) {
                        int j0 = jr * ncn / nc, j1 = (jr + NR >= nc) ? ncn : (jr + NR) * ncn / nc;
                        if (j1 > j0) prefetch(src, pn, kcn, jn + j0, j1 - j0);
                    }
                    for (int ir = 0; ir < mc; ir += MR) {
                        const float *ap = Apre ? xp_panel(Apre, M, pc / KC, (ic + ir) / MR) : Ap + (size_t)ir * kc;
                        int mr = QT_MIN(MR, mc - ir);
                        float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                        if (mr == MR && nr == NR) {
                            kernel_6x16(kc, ap, bp, c, ldc, load_c);
                        } else {
                            memset(tmp, 0, sizeof(tmp));
                            if (load_c)
                                for (int i = 0; i < mr; i++) memcpy(tmp + i * NR, c + (size_t)i * ldc, sizeof(float) * nr);
                            kernel_6x16(kc, ap, bp, tmp, NR, true);
                            for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * ldc, tmp + i * NR, sizeof(float) * nr);
                        }
                    }
                }
            }
        }
    }
}

void qt_gemm_acc_f32_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float *C, int64_t ldc) {
    rows_src rs = { B, (size_t)ldb };
    gemm_driver(M, N, K, A, (size_t)lda, NULL, pack_b_rows, NULL, &rs, C, (size_t)ldc, true);
}

void qt_gemm_xwt_f32_avx2(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W,
                          float *y, int64_t ldy, int64_t n_rows) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    wt_src ws = { W->data, W->stride, W->to_float, tt->blck_size, tt->type_size };
    pack_b_fn pack = W->type == QT_TYPE_F32 ? pack_wt_f32 : W->type == QT_TYPE_F16 ? pack_wt_f16
                   : W->type == QT_TYPE_BF16 ? pack_wt_bf16 : pack_wt_deq;
    prefetch_b_fn pf = W->type == QT_TYPE_F32 ? prefetch_wt4 : tt->blck_size == 1 ? prefetch_wt2 : NULL;
    QT_ASSERT(KC % tt->blck_size == 0 && n % tt->blck_size == 0);
    gemm_driver(T, n_rows, n, x, (size_t)ldx, xp, pack, pf, &ws, y, (size_t)ldy, false);
}

void qt_gemm_acc_w_f32_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                            const qt_wmat *W, int64_t n0, float *C, int64_t ldc) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    int blck = tt->blck_size;
    QT_ASSERT(N % blck == 0 && n0 % blck == 0 && NC % blck == 0);
    if (W->type == QT_TYPE_F32) {
        rows_src rs = { (const float *)W->data + n0, W->stride / sizeof(float) };
        gemm_driver(M, N, K, A, (size_t)lda, ap, pack_b_rows, NULL, &rs, C, (size_t)ldc, true);
        return;
    }
    wq_src ws = { (const char *)W->data + (size_t)(n0 / blck) * tt->type_size, W->stride, W->to_float, blck,
                  tt->type_size };
    gemm_driver(M, N, K, A, (size_t)lda, ap, pack_wq, NULL, &ws, C, (size_t)ldc, true);
}

size_t qt_gemm_pack_x_size_f32_avx2(int64_t T, int64_t n) {
    return (size_t)((n + KC - 1) / KC) * (size_t)((T + MR - 1) / MR) * XP_PANEL;
}

void qt_gemm_pack_x_f32_avx2(int64_t T, int64_t n, const float *x, int64_t ldx, float *xp, int ith, int nth) {
    int64_t panels = (T + MR - 1) / MR, n_pb = (n + KC - 1) / KC;
    // items (pb, panel) in order, a contiguous share per thread
    int64_t i0, i1;
    qt_pool_split(n_pb * panels, 1, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int64_t pb = it / panels, i = it % panels;
        int64_t pc = pb * KC;
        int kc = (int)QT_MIN(KC, n - pc), rows = (int)QT_MIN(MR, T - i * MR);
        pack_a((float *)xp_panel(xp, T, pb, i), x + (size_t)(i * MR) * (size_t)ldx + pc, (size_t)ldx, rows, kc);
    }
}
