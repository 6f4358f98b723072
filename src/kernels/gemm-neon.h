// gemm-neon.h: the blocked arm64 gemm shared by gemm-neon.c (fp32 products,
// FMLA by lane) and gemm-neonbf16.c (bf16 products with fp32 sums, BFDOT by
// lane). Include only from those two files, after defining GN_PAIRS (0:
// fp32, 1: bf16 pairs) and the micro-kernel
//   static void gn_kernel(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c);
// computing C (GN_MR x GN_NR, rows ldc apart) = (load_c ? C : 0) + Ap @ Bp.
//
// The layout is gemm-avx512.h's: packed operands hold 4-byte units, an fp32
// value or a bf16 pair (two consecutive k, the even one in the low half: the
// operand layout of BFDOT); A as row panels of (ku x MR) units, B as column
// panels of (ku x NR) units, zero-padded. The 8 x 12 micro-tile keeps 24
// q-register accumulators (2 A and 3 B registers besides: 29 of 32). The
// packs are plain C (rounding to bf16 as qt_fp32_to_bf16, nearest even);
// they run once per block and are a small part of the time.
// Follows BLIS's armv8a sgemm (8 x 12 micro-tile) and Goto & van de Geijn.
#ifndef QT_GEMM_NEON_H
#define QT_GEMM_NEON_H

#include <arm_neon.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "quant/types.h"

#define GN_MR 8
#define GN_NR 12
#define GN_KC 256   // k per block: a multiple of every block size (32, 256)
#define GN_MC 96
#define GN_NC 768   // a multiple of NR and of every block size
#define GN_KU(kc) (GN_PAIRS ? ((kc) + 1) / 2 : (kc))
#define GN_KU_MAX GN_KU(GN_KC)

static inline uint32_t gn_unit(const float *row, int k, int n) {
#if GN_PAIRS
    float a = k < n ? row[k] : 0.0f, b = k + 1 < n ? row[k + 1] : 0.0f;
    return (uint32_t)qt_fp32_to_bf16(a) | ((uint32_t)qt_fp32_to_bf16(b) << 16);
#else
    uint32_t u = 0;
    if (k < n) memcpy(&u, &row[k], 4);
    return u;
#endif
}

static inline uint32_t gn_pair(float a, float b) {
#if GN_PAIRS
    return (uint32_t)qt_fp32_to_bf16(a) | ((uint32_t)qt_fp32_to_bf16(b) << 16);
#else
    (void)b;
    uint32_t u;
    memcpy(&u, &a, 4);
    return u;
#endif
}

// Ap = A (mc x kc) as row panels of (ku x MR) units
static void gn_pack_a(uint32_t *restrict Ap, const float *A, size_t lda, int mc, int kc) {
    const int ku = GN_KU(kc), step = GN_PAIRS ? 2 : 1;
    for (int i0 = 0; i0 < mc; i0 += GN_MR, Ap += (size_t)ku * GN_MR) {
        int rows = QT_MIN(GN_MR, mc - i0);
        for (int i = 0; i < GN_MR; i++) {
            const float *a = A + (size_t)(i0 + i) * lda;
            for (int u = 0; u < ku; u++) Ap[(size_t)u * GN_MR + i] = i < rows ? gn_unit(a, u * step, kc) : 0;
        }
    }
}

typedef void (*gn_pack_b_fn)(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp);

// unit row u of a block from its float k-rows r0 and r1 (NULL: zeros)
static inline void gn_deal(const float *r0, const float *r1, int nc, int ku, int u, uint32_t *restrict Bp) {
    int n_pan = (nc + GN_NR - 1) / GN_NR;
    for (int p = 0; p < n_pan; p++) {
        uint32_t *d = Bp + (size_t)p * ku * GN_NR + (size_t)u * GN_NR;
        for (int j = 0; j < GN_NR; j++) {
            int c = p * GN_NR + j;
            d[j] = c < nc ? gn_pair(r0[c], r1 ? r1[c] : 0.0f) : 0;
        }
    }
}

typedef struct {
    const float *B;
    size_t ldb;
} gn_rows_src;

static void gn_pack_rows(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const gn_rows_src *s = src;
    const int ku = GN_KU(kc);
    for (int u = 0; u < ku; u++) {
        int k = GN_PAIRS ? k0 + 2 * u : k0 + u;
        const float *r0 = s->B + (size_t)k * s->ldb + n0;
        gn_deal(r0, GN_PAIRS && k + 1 < k0 + kc ? r0 + s->ldb : NULL, nc, ku, u, Bp);
    }
}

typedef struct {
    const char *w;
    size_t stride;
    qt_type type;
    qt_to_float_fn to_float;
    int blck;
    size_t blck_bytes;
} gn_w_src;

// B = W: rows k of W, columns n0 .. n0+nc (block-aligned), dequantized first
static void gn_pack_wq(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const gn_w_src *s = src;
    const int ku = GN_KU(kc);
    float buf[2][GN_NC + 256];
    const size_t off = (size_t)(n0 / s->blck) * s->blck_bytes;
    int nd = (nc + s->blck - 1) / s->blck * s->blck;
    for (int u = 0; u < ku; u++) {
        int k = GN_PAIRS ? k0 + 2 * u : k0 + u;
        s->to_float(s->w + (size_t)k * s->stride + off, buf[0], nd);
        const float *r1 = NULL;
        if (GN_PAIRS && k + 1 < k0 + kc) {
            s->to_float(s->w + (size_t)(k + 1) * s->stride + off, buf[1], nd);
            r1 = buf[1];
        }
        gn_deal(buf[0], r1, nc, ku, u, Bp);
    }
}

// B = W^T: B (k, j) = W row n0 + j, element k0 + k; each row segment
// dequantized (or read in place for F32) and dealt out unit by unit.
static void gn_pack_wt(const void *src, int k0, int kc, int n0, int nc, uint32_t *restrict Bp) {
    const gn_w_src *s = src;
    const int ku = GN_KU(kc), step = GN_PAIRS ? 2 : 1;
    float buf[GN_KC];
    for (int j = 0; j < (nc + GN_NR - 1) / GN_NR * GN_NR; j++) {
        uint32_t *d = Bp + (size_t)(j / GN_NR) * ku * GN_NR + (j % GN_NR);
        if (j >= nc) {
            for (int u = 0; u < ku; u++) d[(size_t)u * GN_NR] = 0;
            continue;
        }
        const char *row = s->w + (size_t)(n0 + j) * s->stride;
        const float *r;
        if (s->type == QT_TYPE_F32) r = (const float *)row + k0;
        else {
            s->to_float(row + (size_t)(k0 / s->blck) * s->blck_bytes, buf, kc);
            r = buf;
        }
        for (int u = 0; u < ku; u++) d[(size_t)u * GN_NR] = gn_unit(r, u * step, kc);
    }
}

#define GN_XP_PANEL ((size_t)GN_KU_MAX * GN_MR)

static inline const uint32_t *gn_xp_panel(const uint32_t *xp, int64_t M, int64_t pb, int64_t i) {
    size_t panels = (size_t)(M + GN_MR - 1) / GN_MR;
    return xp + ((size_t)pb * panels + (size_t)i) * GN_XP_PANEL;
}

static void gn_kernel(int ku, const uint32_t *Ap, const uint32_t *Bp, float *C, size_t ldc, bool load_c);

static void gn_driver(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const uint32_t *Apre,
                      gn_pack_b_fn pack, const void *src, float *C, size_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    QT_ASSERT(N <= INT32_MAX && K <= INT32_MAX);
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    int ku_max = GN_KU((int)QT_MIN(K, GN_KC)), nc_max = (int)QT_MIN((N + GN_NR - 1) / GN_NR * GN_NR, GN_NC);
    int mc_max = (int)QT_MIN((M + GN_MR - 1) / GN_MR * GN_MR, GN_MC);
    size_t nb = (size_t)ku_max * nc_max, na = Apre ? 0 : (size_t)mc_max * ku_max;
    uint32_t *Bp = qt_kernel_scratch(QT_SCRATCH_GEMM, (nb + na) * sizeof(uint32_t)), *Ap = Bp + nb;
    float tmp[GN_MR * GN_NR];
    for (int jc = 0; jc < N; jc += GN_NC) {
        int nc = (int)QT_MIN(GN_NC, N - jc);
        for (int pc = 0; pc < K; pc += GN_KC) {
            int kc = (int)QT_MIN(GN_KC, K - pc), ku = GN_KU(kc);
            bool load_c = accumulate || pc > 0;
            pack(src, pc, kc, jc, nc, Bp);
            for (int64_t ic = 0; ic < M; ic += GN_MC) {
                int mc = (int)QT_MIN(GN_MC, M - ic);
                if (!Apre) gn_pack_a(Ap, A + (size_t)ic * lda + pc, lda, mc, kc);
                for (int jr = 0; jr < nc; jr += GN_NR) {
                    const uint32_t *bp = Bp + (size_t)jr * ku;
                    int nr = QT_MIN(GN_NR, nc - jr);
                    for (int ir = 0; ir < mc; ir += GN_MR) {
                        const uint32_t *ap = Apre ? gn_xp_panel(Apre, M, pc / GN_KC, (ic + ir) / GN_MR)
                                                  : Ap + (size_t)ir * ku;
                        int mr = QT_MIN(GN_MR, mc - ir);
                        float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                        if (mr == GN_MR && nr == GN_NR) {
                            gn_kernel(ku, ap, bp, c, ldc, load_c);
                        } else {
                            memset(tmp, 0, sizeof(tmp));
                            if (load_c)
                                for (int i = 0; i < mr; i++) memcpy(tmp + i * GN_NR, c + (size_t)i * ldc, sizeof(float) * nr);
                            gn_kernel(ku, ap, bp, tmp, GN_NR, true);
                            for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * ldc, tmp + i * GN_NR, sizeof(float) * nr);
                        }
                    }
                }
            }
        }
    }
}

static void gn_gemm_acc(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float *C, int64_t ldc) {
    gn_rows_src s = { B, (size_t)ldb };
    gn_driver(M, N, K, A, (size_t)lda, NULL, gn_pack_rows, &s, C, (size_t)ldc, true);
}

static void gn_gemm_acc_w(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                          const qt_wmat *W, int64_t n0, float *C, int64_t ldc) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    QT_ASSERT(N % tt->blck_size == 0 && n0 % tt->blck_size == 0);
    if (W->type == QT_TYPE_F32) {
        gn_rows_src s = { (const float *)W->data + n0, W->stride / sizeof(float) };
        gn_driver(M, N, K, A, (size_t)lda, (const uint32_t *)ap, gn_pack_rows, &s, C, (size_t)ldc, true);
        return;
    }
    gn_w_src s = { (const char *)W->data + (size_t)(n0 / tt->blck_size) * tt->type_size, W->stride, W->type,
                   W->to_float, tt->blck_size, tt->type_size };
    gn_driver(M, N, K, A, (size_t)lda, (const uint32_t *)ap, gn_pack_wq, &s, C, (size_t)ldc, true);
}

static void gn_gemm_xwt(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W, float *y,
                        int64_t ldy, int64_t n_rows) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    QT_ASSERT(GN_KC % tt->blck_size == 0 && n % tt->blck_size == 0);
    gn_w_src s = { W->data, W->stride, W->type, W->to_float, tt->blck_size, tt->type_size };
    gn_driver(T, n_rows, n, x, (size_t)ldx, (const uint32_t *)xp, gn_pack_wt, &s, y, (size_t)ldy, false);
}

static size_t gn_pack_x_size(int64_t T, int64_t n) {
    return (size_t)((n + GN_KC - 1) / GN_KC) * (size_t)((T + GN_MR - 1) / GN_MR) * GN_XP_PANEL;
}

static void gn_pack_x(int64_t T, int64_t n, const float *x, int64_t ldx, float *xp, int ith, int nth) {
    int64_t panels = (T + GN_MR - 1) / GN_MR, n_pb = (n + GN_KC - 1) / GN_KC;
    int64_t i0, i1;
    qt_pool_split(n_pb * panels, 1, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int64_t pb = it / panels, i = it % panels, pc = pb * GN_KC;
        int kc = (int)QT_MIN(GN_KC, n - pc), rows = (int)QT_MIN(GN_MR, T - i * GN_MR);
        gn_pack_a((uint32_t *)gn_xp_panel((const uint32_t *)xp, T, pb, i), x + (size_t)(i * GN_MR) * (size_t)ldx + pc,
                  (size_t)ldx, rows, kc);
    }
}

static const qt_gemm_ops gn_ops = {
    .gemm_acc = gn_gemm_acc, .gemm_acc_w = gn_gemm_acc_w, .gemm_xwt = gn_gemm_xwt,
    .pack_x_size = gn_pack_x_size, .pack_x = gn_pack_x,
};

#endif
