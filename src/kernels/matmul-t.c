// matmul-t.c: qt_matmul_t, the backward of qt_matmul to its input:
// dx (T, n_in) += dy (T, n_out) @ W, W (n_out, n_in) in any type with a
// to_float, on the precision's float ops (qt_gemm_ops_for: bf16 at
// QT_PREC_BF16 where the table has it, else f32); their gemm_acc_w reads W's
// rows as they are and dequantizes them straight into the gemm's packed
// panels. Threads own disjoint ranges of dx's columns (no write conflicts, no
// reduction), or of its rows when n_in is too narrow to give every thread a
// useful share (the LoRA rank-r products); then each thread dequantizes all
// of W itself, which is cheap because W is narrow.
// Also qt_gemm_acc, qt_gemm_acc_at and qt_gemm_set, the single-threaded float gemms in the context's precision.
// Deliberately not: a quantized-activation path (W's blocks run along n_in,
// the contraction here runs along n_out), caching dequantized weights between
// calls.
// PyTorch's Linear backward (grad_input = grad_output @ weight) is the math.
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"

// Column ranges per thread are multiples of this (and of the block size).
#define MT_ALIGN 64
// Below this many columns per thread, threads split dx's rows instead.
#define MT_MIN_COLS 256
// Row ranges in the row split are multiples of the micro-kernels' rows (6, 14).
#define MT_ROW_ALIGN 42
// Column chunk per stop-flag poll: a 7B layer's 11008 x 4096 backward is
// ~10 chunks per thread (each ~5 GFLOP at T = 512).
#define MT_CHUNK 1024

typedef struct {
    const qt_gemm_ops *ops;
    const qt_kctx *kc;         // for the stop flag
    const float *ap;           // dy packed once for all threads and chunks (column split), or NULL
    qt_wmat W;
    float *dx;
    const float *dy;
    int64_t n_in, n_out, T;
    int blck;
    bool split_rows;
} mt_ctx;

// dx[t0:t1, k0:k1] += dy[t0:t1, :] @ W[:, k0:k1], in chunks of MT_CHUNK columns
static void matmul_t_block(const mt_ctx *c, int64_t t0, int64_t t1, int64_t k0, int64_t k1) {
    for (int64_t kc = k0; kc < k1; kc += MT_CHUNK) {
        if (qt_kctx_stopped(c->kc)) return;
        int64_t nk = QT_MIN(MT_CHUNK, k1 - kc);
        c->ops->gemm_acc_w(t1 - t0, nk, c->n_out, c->dy + t0 * c->n_out, c->n_out, t0 == 0 ? c->ap : NULL, &c->W, kc,
                           c->dx + t0 * c->n_in + kc, c->n_in);
    }
}

static void matmul_t_job(void *arg, int ith, int nth) {
    const mt_ctx *c = arg;
    int64_t a0, a1;
    if (c->split_rows) {
        qt_pool_split(c->T, MT_ROW_ALIGN, ith, nth, &a0, &a1);
        if (a1 > a0) matmul_t_block(c, a0, a1, 0, c->n_in);
    } else {
        qt_pool_split(c->n_in, QT_MAX(MT_ALIGN, c->blck), ith, nth, &a0, &a1);
        if (a1 > a0) matmul_t_block(c, 0, c->T, a0, a1);
    }
}

static void pack_dy_job(void *arg, int ith, int nth) {
    const mt_ctx *c = arg;
    c->ops->pack_x(c->T, c->n_out, c->dy, c->n_out, (float *)c->ap, ith, nth);
}

void qt_matmul_t(const qt_kctx *kc, float *dx, const float *dy, const void *w, qt_type wtype, int64_t n_in,
                 int64_t n_out, int64_t T) {
    const qt_kernel_table *kt = kc->kt;
    const qt_type_traits *tt = qt_type_traits_get(wtype);
    QT_ASSERT(tt && kt->type[wtype].to_float);
    QT_ASSERT(n_in > 0 && n_in % tt->blck_size == 0 && MT_CHUNK % tt->blck_size == 0);
    QT_ASSERT(MT_ALIGN % tt->blck_size == 0 || tt->blck_size % MT_ALIGN == 0);
    if (n_out <= 0 || T <= 0 || qt_kctx_stopped(kc)) return;
    int nth = qt_pool_n_threads(kc->pool);
    mt_ctx c = {
        .ops = qt_gemm_ops_for(kc), .kc = kc, .dx = dx, .dy = dy, .n_in = n_in, .n_out = n_out, .T = T,
        .W = { .data = w, .stride = qt_row_size(wtype, n_in), .type = wtype, .to_float = kt->type[wtype].to_float },
        .blck = tt->blck_size,
        .split_rows = nth > 1 && n_in < nth * MT_MIN_COLS && T >= nth * 4 * MT_ROW_ALIGN,
    };
    if (!c.split_rows && c.ops->pack_x && (n_in > MT_CHUNK || nth > 1)) {
        // several column chunks (threads, stop-flag chunks) read the same dy: pack it once, on all threads
        size_t bytes = c.ops->pack_x_size(T, n_out) * sizeof(float);
        c.ap = kc->pool ? qt_pool_wbuf(kc->pool, bytes) : qt_kernel_scratch(QT_SCRATCH_WBUF, bytes);
        qt_pool_run(kc->pool, pack_dy_job, &c);
    }
    qt_pool_run(kc->pool, matmul_t_job, &c);
}

void qt_gemm_acc(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc) {
    QT_ASSERT(M >= 0 && N >= 0 && K >= 0 && lda >= K && ldb >= N && ldc >= N);
    if (M == 0 || N == 0 || K == 0) return;
    qt_gemm_ops_for(kc)->gemm_acc(M, N, K, A, lda, B, ldb, C, ldc);
}

void qt_gemm_set(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc) {
    QT_ASSERT(M >= 0 && N >= 0 && K >= 0 && lda >= K && ldb >= N && ldc >= N);
    if (M == 0 || N == 0) return;
    const qt_gemm_ops *ops = qt_gemm_ops_for(kc);
    if (ops->gemm_set && K > 0) {
        ops->gemm_set(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
    if (K > 0) ops->gemm_acc(M, N, K, A, lda, B, ldb, C, ldc);
}

void qt_gemm_acc_at(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat, const float *B,
                    int64_t ldb, float *C, int64_t ldc) {
    QT_ASSERT(M >= 0 && N >= 0 && K >= 0 && ldat >= M && ldb >= N && ldc >= N);
    if (M == 0 || N == 0 || K == 0) return;
    const qt_gemm_ops *ops = qt_gemm_ops_for(kc);
    if (ops->gemm_acc_at) {
        ops->gemm_acc_at(M, N, K, At, ldat, B, ldb, C, ldc);
        return;
    }
    float *A = qt_malloc(sizeof(float) * (size_t)M * (size_t)K);   // A (M, K) = At^T
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < M; i++) A[i * K + k] = At[k * ldat + i];
    ops->gemm_acc(M, N, K, A, K, B, ldb, C, ldc);
    qt_free(A);
}
