// matmul.c: the matmul drivers on top of the kernel tables, and the one
// place that decides which kernel runs a product (mm_plan).
//
// qt_matmul: y (T, n_out) = x (T, n_in) @ W^T; qt_matmul_multi: several such
// products on one x (q, k, v; gate, up), which share x's conversion and one
// pool run. The outputs' rows (or tiles) form one combined work space. The
// policy, per weight type, number of tokens T and precision:
//
//   precision  T          weights            path      kernel
//   FAST       1          any                MM_GEMV   traits.gemv, else traits.vec_dot row by row
//   FAST       2..8 (or   quantized, no      MM_GEMV   the gemv per token, over blocks of rows
//              small_max_t) gemm_small
//   FAST       2..small_  quantized with a   MM_GEMV   traits.gemm_small over each thread's rows
//              max_t      gemm_small
//   FAST       2..15      any other          MM_TILES  traits.gemm, else traits.vec_dot per pair
//   FAST       >= 9 (or   quantized          MM_TILES  traits.gemm, else traits.vec_dot per pair
//              small_max_t + 1)
//   FAST       >= 16      F32, F16, BF16,    MM_XWT    f32.gemm_xwt (BF16 and F16 weights:
//                         float-x types (NF4)          bf16.gemm_xwt where the table has it: x
//                                                     rounded to bf16, BF16's vec_dot_type; F16
//                                                     weights where the table's bf16_hw: rounded
//                                                     to bf16 too, exact for the usual F16 files
//                                                     made from BF16 checkpoints)
//   F32        any        any                MM_XWT    f32.gemm_xwt: x float, W dequantized
//   BF16       any        any                MM_XWT    bf16.gemm_xwt, f32's where the table has none
//
//   MM_GEMV: x converted once into the pool's work buffer in the weights'
//     vec_dot_type; each thread takes one contiguous range of the combined
//     rows, so the weights stream through memory once, sequentially per
//     thread; rows without a gemv go to vec_dot with the rows ahead prefetched.
//   MM_TILES: x converted once; (row block x column block) tiles claimed one
//     at a time from a shared counter.
//   MM_XWT: x stays float, packed once for the gemm on all threads; chunks of
//     weight rows are claimed from a shared counter and converted (or
//     dequantized) into the packed gemm's panels a cache block at a time.
//     Narrow outputs (attention's P @ V, LoRA's x @ A^T) split the tokens.
// Claiming work from a counter lets a thread the host slows down do less of
// it; no result depends on which thread computes it.
// qt_matmul_t (the backward to the inputs) and qt_gemm_acc are in matmul-t.c.
// Deliberately not: persistent weight repacking, fused operations.
// Follows ggml-cpu's mul_mat (src1 converted to vec_dot_type once, output
// chunked over threads) and llamafile's tinyBLAS for the tiling.
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"

// Tile of the output for T > 1: weight rows x token columns (96: a multiple
// of the 6-column register group of the AVX2 Q4_0/Q8_0 gemm). 64 rows of a
// 2048-wide Q4_0 matrix are 72 KiB, 96 columns of Q8_0 activations 204 KiB:
// together they sit in L2 while the gemm micro-tiles sweep them.
#define MM_ROWS 64
#define MM_COLS 96
// Row ranges per thread in the decode case are multiples of this, so no two
// threads write the same 64-byte line of y.
#define MM_ROW_ALIGN 16
// Decode of 2..QT_MATMUL_GEMV_MAX_T tokens: rows per block (kept in L2 while every token's GEMV reads it).
#define MM_GEMV_BLOCK_BYTES (64 * 1024)
// Decode with vec_dot: how far ahead of the current row weights are prefetched.
#define MM_PREFETCH_BYTES 4096
// MM_XWT work is split by weight rows when every thread gets at least this
// many; otherwise (narrow outputs, e.g. attention's P @ V) by tokens.
#define MM_WT_MIN_ROWS 64
// Largest MM_XWT work item, in rows.
#define MM_WT_MAX_CHUNK 512

typedef enum { MM_GEMV, MM_TILES, MM_XWT } mm_path;

// The policy of the table in this file's header comment. *ops: the float
// ops MM_XWT runs on.
static mm_path mm_plan(const qt_kernel_table *kt, qt_prec prec, qt_type wtype, int64_t T, const qt_gemm_ops **ops) {
    const bool has_bf16 = kt->bf16.gemm_xwt != NULL;
    *ops = &kt->f32;
    if (prec == QT_PREC_F32) return MM_XWT;
    if (prec == QT_PREC_BF16) {
        if (has_bf16) *ops = &kt->bf16;
        return MM_XWT;
    }
    // float weights, and quantized ones whose vec_dot takes float activations (NF4)
    bool float_w = wtype == QT_TYPE_F32 || wtype == QT_TYPE_F16 || wtype == QT_TYPE_BF16 ||
                   kt->type[wtype].vec_dot_type == QT_TYPE_F32;
    const int small_max_t = kt->type[wtype].small_max_t > 0 ? kt->type[wtype].small_max_t : QT_MATMUL_GEMV_MAX_T;
    if (T == 1 || (!float_w && T <= small_max_t)) return MM_GEMV;
    if (!float_w || T < QT_MATMUL_WT_MIN_T) return MM_TILES;
    if (qt_matmul_bf16_hw(kt, wtype) || (wtype == QT_TYPE_BF16 && has_bf16)) *ops = &kt->bf16;
    return MM_XWT;
}

// One weight matrix of a (multi-)matmul: y (T, n_out) = x @ W^T.
typedef struct {
    const qt_kernel_traits *tr;
    const void *w;
    qt_wmat wm;         // the same weights for MM_XWT
    size_t w_stride;
    float *y;
    qt_type wtype;
    int n_out;
    int row0, tile0;    // where its rows / tiles start in the job's combined space
} mm_out;

typedef struct {
    qt_from_float_fn from_float;
    const float *x;
    void *xq;           // x converted, (T, xq_stride bytes)
    size_t xq_stride;
    int n_in, T;
    int n_outs, n_rows, n_tiles;   // over all outputs
    int wt_chunk;                  // rows per MM_XWT work item
    const qt_gemm_ops *ops;        // MM_XWT's float ops
    const qt_kctx *kc;             // for the stop flag
    float *xp;                     // x packed once for MM_XWT (NULL: each call packs)
    _Atomic int next;              // next unclaimed work item (tiles, gemm_wt chunks)
    mm_out out[QT_MATMUL_MAX_OUTS];
} mm_ctx;

static void convert_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    for (int t = ith; t < c->T; t += nth)
        c->from_float(c->x + (size_t)t * c->n_in, (char *)c->xq + (size_t)t * c->xq_stride, c->n_in);
}

// Rows [r0, r1) of one output for one token: xq its converted row, y its
// (n_out) outputs.
static void decode_rows(const mm_ctx *c, const mm_out *o, const void *xq, float *y, int r0, int r1) {
    const char *w = (const char *)o->w + (size_t)r0 * o->w_stride;
    if (o->tr->gemv) {
        o->tr->gemv(c->n_in, w, o->w_stride, xq, y + r0, r1 - r0);
        return;
    }
    // One row at a time, each row's successor MM_PREFETCH_BYTES ahead
    // prefetched as a whole first: the hardware prefetchers alone leave a
    // single-row dot waiting on memory (the rows are short streams).
    qt_vec_dot_fn vec_dot = o->tr->vec_dot;
    size_t row_bytes = qt_row_size(o->wtype, c->n_in);
    int ahead = (int)QT_MAX(1, MM_PREFETCH_BYTES / o->w_stride);
    for (int r = r0; r < r1; r++, w += o->w_stride) {
        if (r + ahead < r1) {
            const char *pf = w + (size_t)ahead * o->w_stride;
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(pf + b);
        }
        vec_dot(c->n_in, &y[r], w, xq);
    }
}

// The thread's share [g0, g1) of the outputs' combined rows, cut per output.
#define FOR_EACH_ROW_RANGE(c, g0, g1, o, r0, r1)                                                   \
    for (const mm_out *o = (c)->out; o < (c)->out + (c)->n_outs; o++)                               \
        for (int r0 = QT_MAX(g0, o->row0) - o->row0, r1 = QT_MIN(g1, o->row0 + o->n_out) - o->row0; \
             r0 < r1; r0 = r1)

// Rows [r0, r1) of one output for T small tokens (a server's decode step):
// a block of rows at a time, each token's GEMV over the block while it is
// in cache, so the weights stream through memory once. Each token's result
// is the T == 1 one (the same kernel on the same rows).
static void decode_rows_t(const mm_ctx *c, const mm_out *o, int r0, int r1) {
    if (o->tr->gemm_small) {   // the kernel shares each weight load among the tokens itself
        o->tr->gemm_small(c->n_in, (const char *)o->w + (size_t)r0 * o->w_stride, o->w_stride, c->xq, c->xq_stride,
                          o->y + r0, (size_t)o->n_out, r1 - r0, c->T);
        return;
    }
    const int blk = QT_MAX(MM_ROW_ALIGN, (int)(MM_GEMV_BLOCK_BYTES / o->w_stride) / MM_ROW_ALIGN * MM_ROW_ALIGN);
    for (int b0 = r0; b0 < r1; b0 += blk) {
        int b1 = QT_MIN(r1, b0 + blk);
        for (int j = 0; j < c->T; j++)
            decode_rows(c, o, (const char *)c->xq + (size_t)j * c->xq_stride, o->y + (size_t)j * o->n_out, b0, b1);
    }
}

static void decode_job(void *arg, int ith, int nth) {
    const mm_ctx *c = arg;
    int g0, g1;
    mm_split(c->n_rows, MM_ROW_ALIGN, ith, nth, &g0, &g1);
    if (c->T == 1) {
        FOR_EACH_ROW_RANGE(c, g0, g1, o, r0, r1) decode_rows(c, o, c->xq, o->y, r0, r1);
    } else {
        FOR_EACH_ROW_RANGE(c, g0, g1, o, r0, r1) decode_rows_t(c, o, r0, r1);
    }
}

// Tiles are claimed one at a time from a shared counter, in row-major order:
// a thread that the host slows down does less of the work instead of making
// the other wait for its static half (each tile's result does not depend on
// which thread computes it).
static void tiles_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    int n_cb = (c->T + MM_COLS - 1) / MM_COLS;
    const mm_out *o = c->out;
    for (int t = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed); t < c->n_tiles;
         t = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) {
        if (qt_kctx_stopped(c->kc)) break;
        while (t >= o->tile0 + (o->n_out + MM_ROWS - 1) / MM_ROWS * n_cb) o++;
        int lt = t - o->tile0;
        int r0 = (lt / n_cb) * MM_ROWS, c0 = (lt % n_cb) * MM_COLS;
        int nr = QT_MIN(MM_ROWS, o->n_out - r0), nc = QT_MIN(MM_COLS, c->T - c0);
        const char *w = (const char *)o->w + (size_t)r0 * o->w_stride;
        const char *x = (const char *)c->xq + (size_t)c0 * c->xq_stride;
        float *y = o->y + (size_t)c0 * o->n_out + r0;
        if (o->tr->gemm) {
            o->tr->gemm(c->n_in, w, o->w_stride, x, c->xq_stride, y, (size_t)o->n_out, nr, nc);
        } else {
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < nc; j++)
                    o->tr->vec_dot(c->n_in, &y[(size_t)j * o->n_out + i], w + (size_t)i * o->w_stride,
                                   x + (size_t)j * c->xq_stride);
        }
    }
}

// MM_XWT: x used as float, no conversion pass. Wide outputs: chunks of
// wt_chunk rows claimed from a shared counter (as tiles_job), all reading x
// packed once (c->xp), or packing it themselves when there is a single chunk.
static void wt_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    const float *x = c->x;
    if (c->n_rows >= MM_WT_MIN_ROWS * nth) {
        for (int g0 = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) * c->wt_chunk; g0 < c->n_rows;
             g0 = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) * c->wt_chunk) {
            if (qt_kctx_stopped(c->kc)) break;
            int g1 = QT_MIN(c->n_rows, g0 + c->wt_chunk);
            FOR_EACH_ROW_RANGE(c, g0, g1, o, r0, r1) {
                qt_wmat wm = o->wm;
                wm.data = (const char *)o->w + (size_t)r0 * o->w_stride;
                c->ops->gemm_xwt(c->T, c->n_in, x, c->n_in, c->xp, &wm, o->y + r0, o->n_out, r1 - r0);
            }
        }
    } else {
        int t0, t1;
        mm_split(c->T, 1, ith, nth, &t0, &t1);
        if (t1 > t0)
            for (const mm_out *o = c->out; o < c->out + c->n_outs; o++)
                c->ops->gemm_xwt(t1 - t0, c->n_in, x + (size_t)t0 * c->n_in, c->n_in, NULL, &o->wm,
                                 o->y + (size_t)t0 * o->n_out, o->n_out, o->n_out);
    }
}

static void pack_x_job(void *arg, int ith, int nth) {
    const mm_ctx *c = arg;
    c->ops->pack_x(c->T, c->n_in, c->x, c->n_in, c->xp, ith, nth);
}

// A buffer all threads of one job share: the pool's, or with no pool this
// thread's own scratch slot.
static void *shared_buf(qt_pool *pool, size_t n) {
    return pool ? qt_pool_wbuf(pool, n) : qt_kernel_scratch(QT_SCRATCH_WBUF, n);
}

// Element counts arrive as int64_t at the API; the drivers index with int
// below this bound (a row of n_in floats, a (T, n_in) activation).
static int to_int(int64_t n) {
    QT_ASSERT(n >= 0 && n <= INT32_MAX);
    return (int)n;
}

// The outputs share x and one plan (path, float ops and, off MM_XWT, one
// vec_dot_type): callers guarantee it (same_plan).
static void matmul_run(const qt_kctx *kc, const float *x, int n_in, int T, const qt_matmul_out *outs,
                       const size_t *w_strides, int n_outs) {
    const qt_kernel_table *kt = kc->kt;
    qt_pool *pool = kc->pool;
    QT_ASSERT(kt && n_outs >= 1 && n_outs <= QT_MATMUL_MAX_OUTS);
    QT_ASSERT(n_in > 0 && T >= 0);
    if (qt_kctx_stopped(kc)) return;
    mm_ctx c = { .kc = kc, .x = x, .n_in = n_in, .T = T };
    mm_path path = mm_plan(kt, kc->prec, outs[0].wtype, T, &c.ops);
    int n_cb = (T + MM_COLS - 1) / MM_COLS;
    for (int i = 0; i < n_outs; i++) {
        const qt_matmul_out *u = &outs[i];
        QT_ASSERT((unsigned)u->wtype < QT_TYPE_COUNT && u->n_out >= 0 && u->n_out <= INT32_MAX);
        const qt_kernel_traits *tr = &kt->type[u->wtype];
        QT_ASSERT(tr->vec_dot != NULL && tr->to_float != NULL);
        QT_ASSERT(path == MM_XWT || tr->vec_dot_type == kt->type[outs[0].wtype].vec_dot_type);
        if (u->n_out == 0) continue;
        mm_out *o = &c.out[c.n_outs++];
        *o = (mm_out){
            .tr = tr, .w = u->w, .y = u->y, .wtype = u->wtype, .n_out = (int)u->n_out,
            .w_stride = w_strides && w_strides[i] ? w_strides[i] : qt_row_size(u->wtype, n_in),
            .row0 = c.n_rows, .tile0 = c.n_tiles,
        };
        o->wm = (qt_wmat){ .data = u->w, .stride = o->w_stride, .type = u->wtype, .to_float = tr->to_float };
        c.n_rows += o->n_out;
        c.n_tiles += (o->n_out + MM_ROWS - 1) / MM_ROWS * n_cb;
    }
    if (c.n_outs == 0 || T == 0) return;
    if (path == MM_XWT) {
        // about 4 chunks per thread (for the counter to balance), 64..512 rows
        int nth = qt_pool_n_threads(pool);
        int chunk = (c.n_rows / (4 * nth) + MM_ROW_ALIGN - 1) / MM_ROW_ALIGN * MM_ROW_ALIGN;
        c.wt_chunk = QT_MAX(MM_WT_MIN_ROWS, QT_MIN(MM_WT_MAX_CHUNK, chunk));
        if (c.ops->pack_x && c.n_rows >= MM_WT_MIN_ROWS * nth && c.n_rows > c.wt_chunk) {
            // several row chunks read the same x: pack it once, on all threads
            c.xp = shared_buf(pool, c.ops->pack_x_size(T, n_in) * sizeof(float));
            qt_pool_run(pool, pack_x_job, &c);
        }
        qt_pool_run(pool, wt_job, &c);
        return;
    }
    qt_type vdt = c.out[0].tr->vec_dot_type;
    c.from_float = kt->type[vdt].from_float;
    c.xq_stride = qt_row_size(vdt, n_in);
    if (vdt == QT_TYPE_F32) {
        c.xq = (void *)x;   // used as is
    } else {
        QT_ASSERT(c.from_float != NULL);
        c.xq = shared_buf(pool, (size_t)T * c.xq_stride);
        if (T == 1) convert_job(&c, 0, 1);   // too small to be worth a second job
        else qt_pool_run(pool, convert_job, &c);
    }
    qt_pool_run(pool, path == MM_GEMV ? decode_job : tiles_job, &c);
}

// Whether two outputs can share one run: same path, same float ops, and off
// MM_XWT the same conversion of x.
static bool same_plan(const qt_kctx *kc, qt_type a, qt_type b, int64_t T) {
    const qt_gemm_ops *oa, *ob;
    mm_path pa = mm_plan(kc->kt, kc->prec, a, T, &oa), pb = mm_plan(kc->kt, kc->prec, b, T, &ob);
    return pa == pb && oa == ob && (pa == MM_XWT || kc->kt->type[a].vec_dot_type == kc->kt->type[b].vec_dot_type);
}

void qt_matmul_multi(const qt_kctx *kc, const float *x, int64_t n_in, int64_t T, const qt_matmul_out *outs,
                     int n_outs) {
    // Outputs on different plans cannot share x's conversion: then each
    // output runs on its own.
    bool same = true;
    for (int i = 1; i < n_outs; i++) same = same && same_plan(kc, outs[0].wtype, outs[i].wtype, T);
    if (same) {
        matmul_run(kc, x, to_int(n_in), to_int(T), outs, NULL, n_outs);
        return;
    }
    for (int i = 0; i < n_outs; i++) matmul_run(kc, x, to_int(n_in), to_int(T), &outs[i], NULL, 1);
}

void qt_matmul_strided(const qt_kctx *kc, float *y, const float *x, const void *w, qt_type wtype, int64_t n_in,
                       int64_t n_out, int64_t T, size_t w_stride) {
    QT_ASSERT(w_stride == 0 || w_stride >= qt_row_size(wtype, n_in));
    qt_matmul_out o = { y, w, wtype, n_out };
    matmul_run(kc, x, to_int(n_in), to_int(T), &o, &w_stride, 1);
}

void qt_matmul(const qt_kctx *kc, float *y, const float *x, const void *w, qt_type wtype, int64_t n_in,
               int64_t n_out, int64_t T) {
    qt_matmul_strided(kc, y, x, w, wtype, n_in, n_out, T, 0);
}

void qt_get_row(const qt_kernel_table *kt, float *dst, const void *w, qt_type wtype, int64_t n_in, int64_t row) {
    qt_to_float_fn f = kt->type[wtype].to_float;
    QT_ASSERT(f != NULL && row >= 0);
    f((const char *)w + (size_t)row * qt_row_size(wtype, n_in), dst, n_in);
}

qt_kctx qt_kctx_default(qt_pool *pool) {
    return (qt_kctx){ .kt = qt_kernels(), .pool = pool, .prec = QT_PREC_FAST, .stop = NULL };
}
