// matmul.c: the matmul drivers on top of the kernel tables.
//
// qt_matmul: y (T, n_out) = x (T, n_in) @ W^T. The activations are converted
// once into the pool's work buffer in the weight type's vec_dot_type; the
// output is then split across the pool's threads:
//   T == 1 (decode): each thread takes one contiguous range of weight rows, so
//     the weights stream through memory once, sequentially per thread; the
//     range goes to the table's multi-row gemv kernel, or row by row to
//     vec_dot with the rows ahead prefetched.
//   T > 1 (prompt, training): (row block x column block) tiles; each thread
//     takes a contiguous run of tiles in row-major order, each tile handed to
//     the table's gemm kernel (or vec_dot per pair when there is none).
// qt_matmul_t (the backward to the inputs) is in matmul-t.c.
// Deliberately not: weight repacking, fused operations.
// Follows ggml-cpu's mul_mat (src1 converted to vec_dot_type once, output
// chunked over threads) and llamafile's tinyBLAS for the tiling.
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"

// Tile of the output for T > 1: weight rows x token columns (96: a multiple
// of the 6-column register group of the AVX2 Q4_0/Q8_0 gemm). 64 rows of a
// 2048-wide Q4_0 matrix are 72 KiB, 96 columns of Q8_0 activations 204 KiB:
// together they sit in L2 while the gemm micro-tiles sweep them.
#define MM_ROWS 64
#define MM_COLS 96
// Row ranges per thread in the decode case are multiples of this, so no two
// threads write the same 64-byte line of y.
#define MM_ROW_ALIGN 16
// Decode with vec_dot: how far ahead of the current row weights are prefetched.
#define MM_PREFETCH_BYTES 4096

typedef struct {
    const qt_kernel_traits *tr;
    qt_from_float_fn from_float;
    const float *x;
    void *xq;           // x converted, (T, xq_stride bytes)
    size_t xq_stride;
    const void *w;
    size_t w_stride;
    float *y;
    qt_type wtype;
    int n_in, n_out, T;
} mm_ctx;

static void convert_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    for (int t = ith; t < c->T; t += nth)
        c->from_float(c->x + (size_t)t * c->n_in, (char *)c->xq + (size_t)t * c->xq_stride, c->n_in);
}

// [*r0, *r1) of n items for thread ith of nth, boundaries multiples of align
static void split(int n, int align, int ith, int nth, int *r0, int *r1) {
    int n_units = (n + align - 1) / align;
    int per = n_units / nth, extra = n_units % nth;
    int u0 = ith * per + QT_MIN(ith, extra);
    int u1 = u0 + per + (ith < extra);
    *r0 = QT_MIN(n, u0 * align);
    *r1 = QT_MIN(n, u1 * align);
}

static void decode_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    int r0, r1;
    split(c->n_out, MM_ROW_ALIGN, ith, nth, &r0, &r1);
    const char *w = (const char *)c->w + (size_t)r0 * c->w_stride;
    if (r1 <= r0) return;
    if (c->tr->gemv) {
        c->tr->gemv(c->n_in, w, c->w_stride, c->xq, c->y + r0, r1 - r0);
        return;
    }
    // One row at a time, each row's successor MM_PREFETCH_BYTES ahead
    // prefetched as a whole first: the hardware prefetchers alone leave a
    // single-row dot waiting on memory (the rows are short streams).
    qt_vec_dot_fn vec_dot = c->tr->vec_dot;
    size_t row_bytes = qt_row_size(c->wtype, c->n_in);
    int ahead = (int)QT_MAX(1, MM_PREFETCH_BYTES / c->w_stride);
    for (int r = r0; r < r1; r++, w += c->w_stride) {
        if (r + ahead < r1) {
            const char *pf = w + (size_t)ahead * c->w_stride;
            for (size_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(pf + o);
        }
        vec_dot(c->n_in, &c->y[r], w, c->xq);
    }
}

static void tiles_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    int n_rb = (c->n_out + MM_ROWS - 1) / MM_ROWS, n_cb = (c->T + MM_COLS - 1) / MM_COLS;
    int t0, t1;
    split(n_rb * n_cb, 1, ith, nth, &t0, &t1);
    for (int t = t0; t < t1; t++) {
        int r0 = (t / n_cb) * MM_ROWS, c0 = (t % n_cb) * MM_COLS;
        int nr = QT_MIN(MM_ROWS, c->n_out - r0), nc = QT_MIN(MM_COLS, c->T - c0);
        const char *w = (const char *)c->w + (size_t)r0 * c->w_stride;
        const char *x = (const char *)c->xq + (size_t)c0 * c->xq_stride;
        float *y = c->y + (size_t)c0 * c->n_out + r0;
        if (c->tr->gemm) {
            c->tr->gemm(c->n_in, w, c->w_stride, x, c->xq_stride, y, (size_t)c->n_out, nr, nc);
        } else {
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < nc; j++)
                    c->tr->vec_dot(c->n_in, &y[(size_t)j * c->n_out + i], w + (size_t)i * c->w_stride,
                                   x + (size_t)j * c->xq_stride);
        }
    }
}

static void matmul_impl(const qt_kernel_table *kt, qt_pool *pool, float *y, const float *x, const void *w,
                        qt_type wtype, int n_in, int n_out, int T, size_t w_stride) {
    QT_ASSERT(kt && (unsigned)wtype < QT_TYPE_COUNT);
    const qt_kernel_traits *tr = &kt->type[wtype];
    QT_ASSERT(tr->vec_dot != NULL);
    QT_ASSERT(n_in > 0 && n_out >= 0 && T >= 0);
    if (n_out == 0 || T == 0) return;
    qt_type vdt = tr->vec_dot_type;
    mm_ctx c = {
        .tr = tr, .from_float = kt->type[vdt].from_float, .x = x,
        .w = w, .w_stride = w_stride ? w_stride : qt_row_size(wtype, n_in), .y = y, .wtype = wtype,
        .n_in = n_in, .n_out = n_out, .T = T,
    };
    c.xq_stride = qt_row_size(vdt, n_in);
    if (vdt == QT_TYPE_F32) {
        c.xq = (void *)x;   // used as is
    } else {
        QT_ASSERT(c.from_float != NULL);
        c.xq = qt_pool_wbuf(pool, (size_t)T * c.xq_stride);
        if (T == 1) convert_job(&c, 0, 1);   // too small to be worth a second job
        else qt_pool_run(pool, convert_job, &c);
    }
    qt_pool_run(pool, T == 1 ? decode_job : tiles_job, &c);
}

void qt_matmul_with(const qt_kernel_table *kt, qt_pool *pool, float *y, const float *x, const void *w,
                    qt_type wtype, int n_in, int n_out, int T) {
    matmul_impl(kt, pool, y, x, w, wtype, n_in, n_out, T, 0);
}

void qt_matmul_strided(qt_pool *pool, float *y, const float *x, const void *w, qt_type wtype, int n_in, int n_out,
                       int T, size_t w_stride) {
    QT_ASSERT(w_stride >= qt_row_size(wtype, n_in));
    matmul_impl(qt_kernels(), pool, y, x, w, wtype, n_in, n_out, T, w_stride);
}

void qt_matmul(qt_pool *pool, float *y, const float *x, const void *w, qt_type wtype, int n_in, int n_out,
               int T) {
    qt_matmul_with(qt_kernels(), pool, y, x, w, wtype, n_in, n_out, T);
}

void qt_get_row(float *dst, const void *w, qt_type wtype, int n_in, int64_t row) {
    qt_to_float_fn f = qt_kernels()->type[wtype].to_float;
    QT_ASSERT(f != NULL);
    f((const char *)w + (size_t)row * qt_row_size(wtype, n_in), dst, n_in);
}
