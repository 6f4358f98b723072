// matmul-t.c: qt_matmul_t, the backward of qt_matmul to its input:
// dx (T, n_in) += dy (T, n_out) @ W, W (n_out, n_in) in any type with a
// to_float. Tables with gemm_acc_wq get W's rows as they are and dequantize
// them straight into the gemm's packed panels; otherwise W is dequantized a
// (MT_ROWS x MT_COLS) tile at a time into float and handed with the matching
// dy columns to the table's gemm_acc_f32 (f32 W goes to it as is). Both sum
// in the same order (blocks of MT_ROWS along n_out), so give the same bits. Threads
// own disjoint ranges of dx's columns (no write conflicts, no reduction), or of
// its rows when n_in is too narrow to give every thread a useful share (the
// LoRA rank-r products); then each thread dequantizes all of W itself, which
// is cheap because W is narrow.
// Deliberately not: a quantized-activation path (W's blocks run along n_in,
// the contraction here runs along n_out), caching dequantized weights between
// calls.
// Follows the blocking of BLIS (Goto & van de Geijn 2008) at the tile level;
// PyTorch's Linear backward (grad_input = grad_output @ weight) is the math.
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"

// Dequantized tile of W: MT_ROWS rows (the contraction) x MT_COLS columns,
// 1 MiB of floats. MT_COLS is a multiple of every block size (32, 256).
// Large tiles make each gemm_acc_f32 call long enough that packing dy (once
// per call and row block) costs little next to the FMAs.
#define MT_COLS 1024
#define MT_ROWS 256
// Column ranges per thread are multiples of this (and of the block size).
#define MT_ALIGN 64
// Below this many columns per thread, threads split dx's rows instead.
#define MT_MIN_COLS 256
// Row ranges in the row split are multiples of the micro-kernel's 6 rows.
#define MT_ROW_ALIGN 6

// ---- dx += dy @ W ----

typedef struct {
    const qt_kernel_table *kt;
    const qt_kctx *kc;         // for the stop flag
    qt_to_float_fn to_float;   // NULL: W is f32, used in place
    float *dx;
    const float *dy;
    const void *w;
    size_t w_stride;
    int blck;
    size_t blck_bytes;
    int n_in, n_out, T;
    bool split_rows;
} mt_ctx;

// dx[t0:t1, k0:k1] += dy[t0:t1, :] @ W[:, k0:k1]
static void matmul_t_block(const mt_ctx *c, int t0, int t1, int k0, int k1) {
    if (t1 <= t0 || k1 <= k0) return;
    int M = t1 - t0;
    const float *dy = c->dy + (size_t)t0 * c->n_out;
    float *dx = c->dx + (size_t)t0 * c->n_in;
    if (!c->to_float) {
        c->kt->gemm_acc_f32(M, k1 - k0, c->n_out, dy, c->n_out, (const float *)c->w + k0, c->n_in, dx + k0, c->n_in);
        return;
    }
    if (c->kt->gemm_acc_wq) {
        // same blocking and summation order as the tiles below (k blocks of
        // MT_ROWS = the gemm's KC, column blocks of MT_COLS = its NC)
        c->kt->gemm_acc_wq(M, k1 - k0, c->n_out, dy, c->n_out,
                           (const char *)c->w + (size_t)(k0 / c->blck) * c->blck_bytes, c->w_stride, c->to_float,
                           c->blck, c->blck_bytes, dx + k0, c->n_in);
        return;
    }
    float *tile = qt_kernel_scratch(QT_SCRATCH_MATMUL_T, (size_t)MT_ROWS * MT_COLS * sizeof(float));
    for (int kc = k0; kc < k1; kc += MT_COLS) {
        if (qt_kctx_stopped(c->kc)) return;
        int nk = QT_MIN(MT_COLS, k1 - kc);   // a multiple of blck: n_in and the split bounds are
        for (int r0 = 0; r0 < c->n_out; r0 += MT_ROWS) {
            int nr = QT_MIN(MT_ROWS, c->n_out - r0);
            for (int i = 0; i < nr; i++) {
                const char *src = (const char *)c->w + (size_t)(r0 + i) * c->w_stride +
                                  (size_t)(kc / c->blck) * c->blck_bytes;
                c->to_float(src, tile + (size_t)i * MT_COLS, nk);
            }
            // dx[:, kc:kc+nk] += dy[:, r0:r0+nr] @ tile
            c->kt->gemm_acc_f32(M, nk, nr, dy + r0, c->n_out, tile, MT_COLS, dx + kc, c->n_in);
        }
    }
}

static void matmul_t_job(void *arg, int ith, int nth) {
    const mt_ctx *c = arg;
    int a0, a1;
    if (c->split_rows) {
        mm_split(c->T, MT_ROW_ALIGN, ith, nth, &a0, &a1);
        matmul_t_block(c, a0, a1, 0, c->n_in);
    } else {
        mm_split(c->n_in, QT_MAX(MT_ALIGN, c->blck), ith, nth, &a0, &a1);
        matmul_t_block(c, 0, c->T, a0, a1);
    }
}

void qt_matmul_t(const qt_kctx *kc, float *dx, const float *dy, const void *w, qt_type wtype, int64_t n_in64,
                 int64_t n_out64, int64_t T64) {
    const qt_kernel_table *kt = kc->kt;
    qt_pool *pool = kc->pool;
    QT_ASSERT(n_in64 <= INT32_MAX && n_out64 <= INT32_MAX && T64 <= INT32_MAX);
    const int n_in = (int)n_in64, n_out = (int)n_out64, T = (int)T64;
    const qt_type_traits *tt = qt_type_traits_get(wtype);
    QT_ASSERT(tt && kt->type[wtype].to_float);
    QT_ASSERT(n_in > 0 && n_in % tt->blck_size == 0 && MT_COLS % tt->blck_size == 0);
    QT_ASSERT(MT_ALIGN % tt->blck_size == 0 || tt->blck_size % MT_ALIGN == 0);
    if (n_out <= 0 || T <= 0 || qt_kctx_stopped(kc)) return;
    int nth = qt_pool_n_threads(pool);
    mt_ctx c = {
        .kt = kt, .kc = kc, .to_float = wtype == QT_TYPE_F32 ? NULL : kt->type[wtype].to_float, .dx = dx, .dy = dy, .w = w,
        .w_stride = qt_row_size(wtype, n_in), .blck = tt->blck_size, .blck_bytes = tt->type_size,
        .n_in = n_in, .n_out = n_out, .T = T,
        .split_rows = nth > 1 && n_in < nth * MT_MIN_COLS && T >= nth * 4 * MT_ROW_ALIGN,
    };
    qt_pool_run(pool, matmul_t_job, &c);
}

void qt_gemm_acc(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc) {
    QT_ASSERT(M >= 0 && N >= 0 && K >= 0 && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX);
    QT_ASSERT(lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX);
    if (M == 0 || N == 0 || K == 0) return;
    kc->kt->gemm_acc_f32((int)M, (int)N, (int)K, A, (int)lda, B, (int)ldb, C, (int)ldc);
}
