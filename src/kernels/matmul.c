// matmul.c: the matmul drivers on top of the kernel tables.
//
// qt_matmul: y (T, n_out) = x (T, n_in) @ W^T. The activations are converted
// once into the pool's work buffer in the weight type's vec_dot_type; the
// output is then split across the pool's threads:
//   T == 1 (decode): each thread takes one contiguous range of weight rows, so
//     the weights stream through memory once, sequentially per thread.
//   T > 1 (prompt, training): (row block x column block) tiles; each thread
//     takes a contiguous run of tiles in row-major order, each tile handed to
//     the table's gemm kernel (or vec_dot per pair when there is none).
// qt_matmul_t: dx (T, n_in) += dy (T, n_out) @ W; each thread owns a
// block-aligned range of the n_in columns (no write conflicts, no reduction)
// and dequantizes W a (rows x columns) tile at a time, then accumulates with
// the table's gemm_acc_f32.
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

typedef struct {
    const qt_kernel_traits *tr;
    qt_from_float_fn from_float;
    const float *x;
    void *xq;           // x converted, (T, xq_stride bytes)
    size_t xq_stride;
    const void *w;
    size_t w_stride;
    float *y;
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
    qt_vec_dot_fn vec_dot = c->tr->vec_dot;
    for (int r = r0; r < r1; r++, w += c->w_stride) vec_dot(c->n_in, &c->y[r], w, c->xq);
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
        .w = w, .w_stride = w_stride ? w_stride : qt_row_size(wtype, n_in), .y = y,
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

// ---- backward w.r.t. x ----

// Dequantized tile of W: MT_ROWS rows x MT_COLS columns (64 KiB of floats,
// in L2). MT_COLS is a multiple of every block size (32, 256).
#define MT_COLS 256
#define MT_ROWS 64

typedef struct {
    const qt_kernel_table *kt;
    qt_to_float_fn to_float;
    float *dx;
    const float *dy;
    const void *w;
    size_t w_stride;
    int blck;
    size_t blck_bytes;
    int n_in, n_out, T;
} mt_ctx;

static void matmul_t_job(void *arg, int ith, int nth) {
    mt_ctx *c = arg;
    int k0, k1;
    split(c->n_in, MT_COLS, ith, nth, &k0, &k1);   // MT_COLS is a multiple of blck
    float *tile = qt_malloc((size_t)MT_ROWS * MT_COLS * sizeof(float));
    for (int kc = k0; kc < k1; kc += MT_COLS) {
        int nk = QT_MIN(MT_COLS, k1 - kc);   // a multiple of blck: n_in is
        for (int r0 = 0; r0 < c->n_out; r0 += MT_ROWS) {
            int nr = QT_MIN(MT_ROWS, c->n_out - r0);
            for (int i = 0; i < nr; i++) {
                const char *src = (const char *)c->w + (size_t)(r0 + i) * c->w_stride +
                                  (size_t)(kc / c->blck) * c->blck_bytes;
                c->to_float(src, tile + i * MT_COLS, nk);
            }
            // dx[:, kc:kc+nk] += dy[:, r0:r0+nr] @ tile
            c->kt->gemm_acc_f32(c->T, nk, nr, c->dy + r0, c->n_out, tile, MT_COLS, c->dx + kc, c->n_in);
        }
    }
    qt_free(tile);
}

void qt_matmul_t(qt_pool *pool, float *dx, const float *dy, const void *w, qt_type wtype, int n_in, int n_out,
                 int T) {
    const qt_kernel_table *kt = qt_kernels();
    const qt_type_traits *tt = qt_type_traits_get(wtype);
    QT_ASSERT(tt && kt->type[wtype].to_float);
    QT_ASSERT(n_in > 0 && n_in % tt->blck_size == 0 && MT_COLS % tt->blck_size == 0);
    if (n_out <= 0 || T <= 0) return;
    mt_ctx c = {
        .kt = kt, .to_float = kt->type[wtype].to_float, .dx = dx, .dy = dy, .w = w,
        .w_stride = qt_row_size(wtype, n_in), .blck = tt->blck_size, .blck_bytes = tt->type_size,
        .n_in = n_in, .n_out = n_out, .T = T,
    };
    qt_pool_run(pool, matmul_t_job, &c);
}

void qt_get_row(float *dst, const void *w, qt_type wtype, int n_in, int64_t row) {
    qt_to_float_fn f = qt_kernels()->type[wtype].to_float;
    QT_ASSERT(f != NULL);
    f((const char *)w + (size_t)row * qt_row_size(wtype, n_in), dst, n_in);
}
