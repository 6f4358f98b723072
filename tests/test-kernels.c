// test-kernels.c: every kernel table this build has and this CPU runs, against
// the scalar ref table and against double-precision dots; the thread pool.
//
// For each weight type with a vec_dot, on shapes with ragged edges (n_out not
// a multiple of the 4x3 gemm tile or the 64-row matmul block, T = 1..9 and 70,
// several n_in per block size), checks:
//   1. ref vec_dot vs a double dot of the dequantized weights and the
//      dequantized activations (same inputs, only rounding differs): TOL_SAME;
//   2. ref matmul vs a double dot with the exact float activations, within a
//      rigorous bound on the activation quantization error;
//   3. each table's from_float and to_float bit-equal to ref's;
//   4. each table's vec_dot, gemm, gemv and qt_matmul (1..4 threads) vs ref:
//      TOL_SAME;
// then the gemv (T = 1) kernels on ragged row ranges; the float-activation
// ops (gemm_xwt, gemm_acc, each table's f32 and bf16) and the drivers at
// QT_PREC_F32 / QT_PREC_BF16 (qt_matmul, qt_matmul_t, qt_gemm_acc) against
// double references on the dequantized weights (bf16: operands rounded to
// bf16 first); the float helpers and the element-wise math.
// Tables this build or CPU cannot run are listed with the reason.
#include <stdatomic.h>
#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "quant/types.h"
#include "quant/blocks.h"
#include "test.h"

// Under emulation (make neon-test runs this binary in qemu-user) the thread
// sweeps are slow: QT_TEST_MAX_THREADS and QT_TEST_POOL_RUNS shorten them.
// A kernel context on table kt and pool p (FAST precision, no stop flag).
static qt_kctx kctx(const qt_kernel_table *kt, qt_pool *p) {
    return (qt_kctx){ .kt = kt, .pool = p, .prec = QT_PREC_FAST, .stop = NULL };
}

static int g_max_threads = 4, g_pool_runs = 20000;
static void test_config_from_env(void) {
    const char *e = getenv("QT_TEST_MAX_THREADS");
    if (e && atoi(e) >= 1 && atoi(e) <= 4) g_max_threads = atoi(e);
    e = getenv("QT_TEST_POOL_RUNS");
    if (e && atoi(e) >= 1) g_pool_runs = atoi(e);
}

// Same quantized inputs, different summation order (float vs double, per-block
// partial sums): the difference is a few float roundings of the running sum,
// bounded relative to sum |w_i * x_i| (typical sqrt(n) * 6e-8, worst n * 6e-8).
#define TOL_SAME 2e-5
// Quantized activations: |x - dequant(quant(x))| <= step/2 plus the fp16
// rounding of the scale (127 * 2^-11 steps), so <= 0.57 step; step = amax/127
// over the block (Q8_0, Q8_K). Float types: relative rounding of the type.
#define Q8_ERR_STEPS 0.6
#define F16_REL_ERR (1.0 / 2048)
#define BF16_REL_ERR (1.0 / 256)

static const qt_type g_types[] = {
    QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0, QT_TYPE_Q4_0, QT_TYPE_Q4_1, QT_TYPE_Q5_0,
    QT_TYPE_Q5_1, QT_TYPE_IQ4_NL, QT_TYPE_Q2_K, QT_TYPE_Q3_K, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K,
    QT_TYPE_NF4,
};

static const qt_kernel_table *g_tables[QT_ISA_COUNT];
static int g_n_tables;
static qt_pool *g_pools[5];   // index = thread count, 1..4

static float *randn(qt_rng *r, size_t n, float scale) {
    float *v = qt_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = qt_rng_normal(r) * scale;
    return v;
}

// worst |fast - ref| / (scale) seen, per table, for the report
static double g_worst[QT_ISA_COUNT];
// mismatch details printed so far (the CHECK lines still count every failure)
static int g_n_details;
#define MAX_DETAILS 40

typedef struct {
    qt_type wt, vdt;
    int n_in, n_out, T;
    size_t ws, xs;
    void *w;        // (n_out, ws bytes)
    float *wd;      // (n_out, n_in) dequantized weights
    float *x;       // (T, n_in)
    void *xq;       // (T, xs bytes) ref-converted activations
    float *xd;      // (T, n_in) dequantized activations
    double *absd;   // (T, n_out) sum |wd * xd|
    float *yref;    // (T, n_out) ref matmul
    float *yexact;  // (T, n_out) wd @ x with x unrounded, accumulated in double
    float *ybf16;   // (T, n_out) the same with wd and x rounded to bf16 (the bf16 ops' operands)
} problem;

// wd, xd and absd from the quantized w and xq (again after a test rewrites them)
static void problem_dequantize(problem *p) {
    const int n_in = p->n_in, n_out = p->n_out, T = p->T;
    for (int r = 0; r < n_out; r++)
        qt_type_traits_get(p->wt)->to_float((char *)p->w + r * p->ws, p->wd + (size_t)r * n_in, n_in);
    for (int t = 0; t < T; t++)
        qt_type_traits_get(p->vdt)->to_float((char *)p->xq + t * p->xs, p->xd + (size_t)t * n_in, n_in);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++) {
            double a = 0;
            for (int k = 0; k < n_in; k++) a += fabs((double)p->wd[(size_t)r * n_in + k] * p->xd[(size_t)t * n_in + k]);
            p->absd[(size_t)t * n_out + r] = a;
        }
}

static void problem_init(problem *p, qt_rng *rng, qt_type wt, int n_in, int n_out, int T) {
    const qt_kernel_table *ref = qt_kernels_ref();
    const qt_type_traits *tt = qt_type_traits_get(wt);
    memset(p, 0, sizeof(*p));
    p->wt = wt;
    p->vdt = ref->type[wt].vec_dot_type;
    p->n_in = n_in, p->n_out = n_out, p->T = T;
    p->ws = qt_row_size(wt, n_in);
    p->xs = qt_row_size(p->vdt, n_in);
    float *wf = randn(rng, (size_t)n_out * n_in, 0.5f);
    p->w = qt_malloc((size_t)n_out * p->ws);
    p->wd = qt_malloc((size_t)n_out * n_in * sizeof(float));
    for (int r = 0; r < n_out; r++) tt->from_float_ref(wf + (size_t)r * n_in, (char *)p->w + r * p->ws, n_in);
    qt_free(wf);
    p->x = randn(rng, (size_t)T * n_in, 1.0f);
    p->xq = qt_malloc((size_t)T * p->xs);
    p->xd = qt_malloc((size_t)T * n_in * sizeof(float));
    for (int t = 0; t < T; t++) ref->type[p->vdt].from_float(p->x + (size_t)t * n_in, (char *)p->xq + t * p->xs, n_in);
    p->absd = qt_malloc((size_t)T * n_out * sizeof(double));
    problem_dequantize(p);
    p->yexact = qt_malloc((size_t)T * n_out * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++) {
            double d = 0;
            for (int k = 0; k < n_in; k++) d += (double)p->wd[(size_t)r * n_in + k] * p->x[(size_t)t * n_in + k];
            p->yexact[(size_t)t * n_out + r] = (float)d;
        }
    p->ybf16 = qt_malloc((size_t)T * n_out * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++) {
            double d = 0;
            for (int k = 0; k < n_in; k++)
                d += (double)qt_bf16_to_fp32(qt_fp32_to_bf16(p->wd[(size_t)r * n_in + k])) *
                     qt_bf16_to_fp32(qt_fp32_to_bf16(p->x[(size_t)t * n_in + k]));
            p->ybf16[(size_t)t * n_out + r] = (float)d;
        }
    p->yref = qt_malloc((size_t)T * n_out * sizeof(float));
}

static void problem_free(problem *p) {
    qt_free(p->w); qt_free(p->wd); qt_free(p->x); qt_free(p->xq); qt_free(p->xd);
    qt_free(p->absd); qt_free(p->yref); qt_free(p->yexact); qt_free(p->ybf16);
}

// compares y (T, n_out) to p->yref; returns the number of mismatches
// y against want (yref or yexact), within TOL_SAME of sum |w * x|
static int compare_to(const problem *p, const float *y, const float *want, const char *what, const char *isa,
                      int nth) {
    int bad = 0;
    for (int i = 0; i < p->T * p->n_out; i++) {
        double tol = TOL_SAME * p->absd[i] + 1e-30;
        double e = fabs((double)y[i] - want[i]);
        int ti = 0;
        for (; ti < g_n_tables; ti++) if (!strcmp(g_tables[ti]->isa, isa)) break;
        if (ti < g_n_tables && p->absd[i] > 0) g_worst[ti] = QT_MAX(g_worst[ti], e / p->absd[i]);
        if (!(e <= tol)) {
            if (bad++ < 3 && g_n_details++ < MAX_DETAILS)
                fprintf(stderr, "  %s %s %s n_in=%d n_out=%d T=%d threads=%d [t=%d r=%d]: %.9g vs ref %.9g (tol %.3g)\n",
                        isa, qt_type_name(p->wt), what, p->n_in, p->n_out, p->T, nth, i / p->n_out,
                        i % p->n_out, y[i], want[i], tol);
        }
    }
    return bad;
}

static int compare_same(const problem *p, const float *y, const char *what, const char *isa, int nth) {
    return compare_to(p, y, p->yref, what, isa, nth);
}

static void test_problem(const problem *p) {
    const qt_kernel_table *ref = qt_kernels_ref();
    const int n_in = p->n_in, n_out = p->n_out, T = p->T;

    // 1. ref vec_dot vs double dot on the same (dequantized) inputs
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++) {
            float s;
            ref->type[p->wt].vec_dot(n_in, &s, (const char *)p->w + r * p->ws, (const char *)p->xq + t * p->xs);
            double d = 0;
            for (int k = 0; k < n_in; k++) d += (double)p->wd[(size_t)r * n_in + k] * p->xd[(size_t)t * n_in + k];
            double tol = TOL_SAME * p->absd[(size_t)t * n_out + r] + 1e-30;
            if (!(fabs(s - d) <= tol) && bad++ < 3 && g_n_details++ < MAX_DETAILS)
                fprintf(stderr, "  ref vec_dot %s n_in=%d: %.9g vs double %.9g\n", qt_type_name(p->wt), n_in, s, d);
        }
    CHECK(bad == 0, "ref vec_dot %s n_in=%d: %d mismatches vs double", qt_type_name(p->wt), n_in, bad);

    // 2. ref's products on the quantized activations (yref: what every
    // table's vec_dot, gemv and gemm give within TOL_SAME) vs the exact
    // activations, within the activation-rounding bound
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++)
            ref->type[p->wt].vec_dot(n_in, &p->yref[(size_t)t * n_out + r], (const char *)p->w + r * p->ws,
                                     (const char *)p->xq + t * p->xs);
    bad = 0;
    int blk = qt_type_traits_get(p->vdt)->blck_size;
    for (int t = 0; t < T; t++) {
        const float *xt = p->x + (size_t)t * n_in;
        for (int r = 0; r < n_out; r++) {
            const float *wr = p->wd + (size_t)r * n_in;
            double d = 0, bound = 0;
            for (int k0 = 0; k0 < n_in; k0 += blk) {
                double amax = 0, sw = 0;
                for (int k = k0; k < k0 + blk; k++) {
                    d += (double)wr[k] * xt[k];
                    amax = QT_MAX(amax, fabs(xt[k]));
                    sw += fabs(wr[k]);
                    if (p->vdt == QT_TYPE_F16) bound += fabs(wr[k] * xt[k]) * F16_REL_ERR;
                    if (p->vdt == QT_TYPE_BF16) bound += fabs(wr[k] * xt[k]) * BF16_REL_ERR;
                }
                if (p->vdt == QT_TYPE_Q8_0 || p->vdt == QT_TYPE_Q8_K) bound += sw * Q8_ERR_STEPS * amax / 127;
            }
            bound += TOL_SAME * p->absd[(size_t)t * n_out + r] + 1e-6;
            double e = fabs(p->yref[(size_t)t * n_out + r] - d);
            if (!(e <= bound) && bad++ < 3 && g_n_details++ < MAX_DETAILS)
                fprintf(stderr, "  ref matmul %s n_in=%d: %.9g vs exact %.9g (bound %.3g)\n", qt_type_name(p->wt), n_in,
                        p->yref[(size_t)t * n_out + r], d, bound);
        }
    }
    CHECK(bad == 0, "ref matmul %s n_in=%d n_out=%d T=%d: %d outside the quantization bound", qt_type_name(p->wt),
          n_in, n_out, T, bad);

    float *y = qt_malloc((size_t)T * n_out * sizeof(float));
    void *xq = qt_malloc((size_t)T * p->xs);
    float *row = qt_malloc((size_t)n_in * sizeof(float)), *row_ref = qt_malloc((size_t)n_in * sizeof(float));
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        const qt_kernel_traits *tr = &kt->type[p->wt];
        CHECK(tr->vec_dot && tr->vec_dot_type == p->vdt, "%s %s: vec_dot type differs from ref", kt->isa,
              qt_type_name(p->wt));
        if (!tr->vec_dot || tr->vec_dot_type != p->vdt) continue;

        // 3. conversions bit-equal to ref
        for (int t = 0; t < T; t++)
            kt->type[p->vdt].from_float(p->x + (size_t)t * n_in, (char *)xq + t * p->xs, n_in);
        CHECK(memcmp(xq, p->xq, (size_t)T * p->xs) == 0, "%s from_float %s n=%d differs from ref", kt->isa,
              qt_type_name(p->vdt), n_in);
        bad = 0;
        for (int r = 0; r < n_out; r++) {
            tr->to_float((const char *)p->w + r * p->ws, row, n_in);
            ref->type[p->wt].to_float((const char *)p->w + r * p->ws, row_ref, n_in);
            bad += memcmp(row, row_ref, (size_t)n_in * sizeof(float)) != 0;
        }
        CHECK(bad == 0, "%s to_float %s n=%d differs from ref in %d rows", kt->isa, qt_type_name(p->wt), n_in, bad);

        // 4. vec_dot, gemm, matmul vs ref
        for (int t = 0; t < T; t++)
            for (int r = 0; r < n_out; r++)
                tr->vec_dot(n_in, &y[(size_t)t * n_out + r], (const char *)p->w + r * p->ws,
                            (const char *)p->xq + t * p->xs);
        CHECK(compare_same(p, y, "vec_dot", kt->isa, 1) == 0, "%s vec_dot %s n_in=%d", kt->isa,
              qt_type_name(p->wt), n_in);
        if (tr->gemv) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            for (int t = 0; t < T; t++)
                tr->gemv(n_in, p->w, p->ws, (const char *)p->xq + t * p->xs, y + (size_t)t * n_out, n_out);
            CHECK(compare_same(p, y, "gemv", kt->isa, 1) == 0, "%s gemv %s n_in=%d n_out=%d", kt->isa,
                  qt_type_name(p->wt), n_in, n_out);
        }
        if (tr->gemm_small) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            tr->gemm_small(n_in, p->w, p->ws, p->xq, p->xs, y, (size_t)n_out, n_out, T);
            CHECK(compare_same(p, y, "gemm_small", kt->isa, 1) == 0, "%s gemm_small %s n_in=%d n_out=%d T=%d", kt->isa,
                  qt_type_name(p->wt), n_in, n_out, T);
        }
        if (tr->gemm) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            tr->gemm(n_in, p->w, p->ws, p->xq, p->xs, y, (size_t)n_out, n_out, T);
            CHECK(compare_same(p, y, "gemm", kt->isa, 1) == 0, "%s gemm %s n_in=%d n_out=%d T=%d", kt->isa,
                  qt_type_name(p->wt), n_in, n_out, T);
        }
        for (int nth = 1; nth <= g_max_threads; nth++) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            qt_matmul(&(qt_kctx){ .kt = kt, .pool = g_pools[nth] }, y, p->x, p->w, p->wt, n_in, n_out, T);
            // the float-activation path (float weights, T >= QT_MATMUL_WT_MIN_T)
            // keeps x in float and matches the exact product; BF16 weights on
            // a table with bf16 ops, and F16 ones where those are the CPU's
            // own (bf16_hw), take them: x and the weights rounded to bf16
            bool xwt = T >= QT_MATMUL_WT_MIN_T && (p->wt == QT_TYPE_F32 || p->wt == QT_TYPE_F16 || p->wt == QT_TYPE_BF16);
            bool bf16_ops = xwt && kt->bf16.gemm_xwt && (p->wt == QT_TYPE_BF16 || (p->wt == QT_TYPE_F16 && kt->bf16_hw));
            const float *want = bf16_ops ? p->ybf16 : xwt ? p->yexact : p->yref;
            CHECK(compare_to(p, y, want, "matmul", kt->isa, nth) == 0, "%s matmul %s n_in=%d n_out=%d T=%d threads=%d",
                  kt->isa, qt_type_name(p->wt), n_in, n_out, T, nth);
        }
    }
    qt_free(y); qt_free(xq); qt_free(row); qt_free(row_ref);
}

// The integer kernels at the edges of their ranges: every weight quant at its
// largest magnitude (Q4_0 -8, Q8_0 -127, Q5_0 -16, IQ4_NL -127, Q4_1 15,
// Q5_1 31, Q4_K 15, Q5_K 31, Q6_K 63 - 32 with scales -128; Q4_K/Q5_K
// scales and mins 63) against activations all 127 or
// all -127: the fast kernels' int16 and int32 partial sums must not wrap or
// saturate (the ref table sums exactly). A tile of 16 rows and a ragged one.
static void test_quant_extremes(qt_rng *rng) {
    const qt_kernel_table *ref = qt_kernels_ref();
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q5_0, QT_TYPE_IQ4_NL, QT_TYPE_Q4_1,
                                    QT_TYPE_Q5_1, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K};
    const uint16_t d_half = 0x2c00;   // 1/16
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++)
        for (int sign = -1; sign <= 1; sign += 2) {
            qt_type wt = types[it];
            const int n_in = 2304, n_out = 19, T = 9;   // two K chunks of the VNNI k-quant gemm
            problem p;
            problem_init(&p, rng, wt, n_in, n_out, T);
            const qt_type_traits *tt = qt_type_traits_get(wt), *xt = qt_type_traits_get(p.vdt);
            int nb = n_in / tt->blck_size;
            for (int r = 0; r < n_out; r++)
                for (int b = 0; b < nb; b++) {
                    char *blk = (char *)p.w + r * p.ws + (size_t)b * tt->type_size;
                    switch (wt) {
                    case QT_TYPE_Q4_0: case QT_TYPE_Q5_0: case QT_TYPE_IQ4_NL:
                        memset(blk, 0x00, tt->type_size); memcpy(blk, &d_half, 2); break;
                    case QT_TYPE_Q8_0: memset(blk, 0x81, tt->type_size); memcpy(blk, &d_half, 2); break;
                    case QT_TYPE_Q4_1: case QT_TYPE_Q5_1: case QT_TYPE_Q4_K: case QT_TYPE_Q5_K:
                        memset(blk, 0xff, tt->type_size); memcpy(blk, &d_half, 2); memcpy(blk + 2, &d_half, 2); break;
                    default: {   // Q6_K
                        block_q6_K *q = (block_q6_K *)blk;
                        memset(q->ql, 0xff, sizeof(q->ql)); memset(q->qh, 0xff, sizeof(q->qh));
                        memset(q->scales, 0x80, sizeof(q->scales)); q->d = d_half;
                    }
                    }
                }
            for (int t = 0; t < T; t++)
                for (int b = 0; b < n_in / xt->blck_size; b++) {
                    char *blk = (char *)p.xq + t * p.xs + (size_t)b * xt->type_size;
                    if (p.vdt == QT_TYPE_Q8_0) {
                        block_q8_0 *q = (block_q8_0 *)blk;
                        memset(q->qs, (int8_t)(127 * sign), sizeof(q->qs));
                        q->d = d_half;
                    } else {
                        block_q8_K *q = (block_q8_K *)blk;
                        memset(q->qs, (int8_t)(127 * sign), sizeof(q->qs));
                        for (int g = 0; g < QK_K / 16; g++) q->bsums[g] = (int16_t)(16 * 127 * sign);
                        q->d = 1.0f / 64;
                    }
                }
            problem_dequantize(&p);
            for (int t = 0; t < T; t++)
                for (int r = 0; r < n_out; r++)
                    ref->type[wt].vec_dot(n_in, &p.yref[(size_t)t * n_out + r], (const char *)p.w + r * p.ws,
                                          (const char *)p.xq + t * p.xs);
            float *y = qt_malloc((size_t)T * n_out * sizeof(float));
            for (int ti = 0; ti < g_n_tables; ti++) {
                const qt_kernel_table *kt = g_tables[ti];
                const qt_kernel_traits *tr = &kt->type[wt];
                for (int t = 0; t < T; t++)
                    for (int r = 0; r < n_out; r++)
                        tr->vec_dot(n_in, &y[(size_t)t * n_out + r], (const char *)p.w + r * p.ws, (const char *)p.xq + t * p.xs);
                CHECK(compare_same(&p, y, "vec_dot extremes", kt->isa, 1) == 0, "%s vec_dot %s at the range edges (x %+d)",
                      kt->isa, qt_type_name(wt), 127 * sign);
                if (tr->gemv) {
                    for (int t = 0; t < T; t++)
                        tr->gemv(n_in, p.w, p.ws, (const char *)p.xq + t * p.xs, y + (size_t)t * n_out, n_out);
                    CHECK(compare_same(&p, y, "gemv extremes", kt->isa, 1) == 0, "%s gemv %s at the range edges (x %+d)",
                          kt->isa, qt_type_name(wt), 127 * sign);
                }
                if (tr->gemm_small) {
                    tr->gemm_small(n_in, p.w, p.ws, p.xq, p.xs, y, (size_t)n_out, n_out, T);
                    CHECK(compare_same(&p, y, "gemm_small extremes", kt->isa, 1) == 0,
                          "%s gemm_small %s at the range edges (x %+d)", kt->isa, qt_type_name(wt), 127 * sign);
                }
                if (tr->gemm) {
                    tr->gemm(n_in, p.w, p.ws, p.xq, p.xs, y, (size_t)n_out, n_out, T);
                    CHECK(compare_same(&p, y, "gemm extremes", kt->isa, 1) == 0, "%s gemm %s at the range edges (x %+d)",
                          kt->isa, qt_type_name(wt), 127 * sign);
                }
            }
            qt_free(y);
            problem_free(&p);
        }
}

static void test_matmul_types(qt_rng *rng) {
    // every remainder of the 3- and 4-row float tiles, inside and past a 64-row block
    static const int n_out_list[] = {1, 5, 13, 67, 6, 130};
    static const int T_list[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 70};
    for (size_t it = 0; it < QT_ARRAY_LEN(g_types); it++) {
        qt_type wt = g_types[it];
        int blk = qt_type_traits_get(wt)->blck_size;
        int n_in_list[4];
        if (blk == 1) { n_in_list[0] = 7; n_in_list[1] = 33; n_in_list[2] = 256; n_in_list[3] = 515; }
        // 2080: two K chunks of the AVX2 Q4_0/Q8_0 gemm
        else if (blk == 32) { n_in_list[0] = 32; n_in_list[1] = 96; n_in_list[2] = 544; n_in_list[3] = 2080; }
        // 2304: two K chunks (8 + 1 super-blocks) of the AVX-512 VNNI Q4_K gemm
        else { n_in_list[0] = 256; n_in_list[1] = 512; n_in_list[2] = 2048; n_in_list[3] = 2304; }
        int f0 = test_n_fail, k = 0;
        for (int ni = 0; ni < 4; ni++)
            for (size_t ti = 0; ti < QT_ARRAY_LEN(T_list); ti++, k++) {
                int T = T_list[ti], n_out = n_out_list[k % QT_ARRAY_LEN(n_out_list)];
                if (T == 70 && ni != 2) continue;   // one big-T case per type keeps the test fast
                problem p;
                problem_init(&p, rng, wt, n_in_list[ni], n_out, T);
                test_problem(&p);
                problem_free(&p);
            }
        printf("  %-7s %s\n", qt_type_name(wt), test_n_fail == f0 ? "ok" : "FAILED");
    }
}

// The multi-row decode kernels (gemv) on their own: row counts around the
// 8-row pass, every start row of a range (ragged per-thread ranges), row
// lengths of 1, 2, 3, 17 and 20 blocks (the AVX-512 VNNI Q4_0 / Q8_0 kernels
// take 4 / 2 blocks per step: every remainder of their scalar tail), rows
// longer than the AVX2 kernel's activation chunk (n_in > 16384), a strided
// view (0xff bytes between rows: nothing outside a row may be read), and
// qt_matmul at T = 1 on 1..4 threads; all against ref vec_dot, TOL_SAME.
static void test_gemv(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_1, QT_TYPE_Q5_0, QT_TYPE_Q5_1,
                                    QT_TYPE_IQ4_NL, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K, QT_TYPE_F16,
                                    QT_TYPE_BF16};
    static const int n_outs[] = {1, 3, 7, 8, 9, 15, 16, 17, 23, 33, 100, 131};
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        int blk = qt_type_traits_get(wt)->blck_size;
        const int n_ins[] = {blk, blk * 2, blk * 3, blk * 17, blk * 20, 16384 + 3 * 256 + blk};
        int f0 = test_n_fail, n_tested = 0;
        for (int ti = 0; ti < g_n_tables; ti++) {
            const qt_kernel_traits *tr = &g_tables[ti]->type[wt];
            if (!tr->gemv) continue;
            for (size_t ii = 0; ii < QT_ARRAY_LEN(n_ins); ii++)
                for (size_t oi = 0; oi < QT_ARRAY_LEN(n_outs); oi++) {
                    int n_in = n_ins[ii], n_out = n_outs[oi];
                    if (ii == QT_ARRAY_LEN(n_ins) - 1 && n_out > 33) continue;   // long rows: a few counts suffice
                    problem p;
                    problem_init(&p, rng, wt, n_in, n_out, 1);
                    qt_matmul(&(qt_kctx){ .kt = qt_kernels_ref(), .pool = NULL }, p.yref, p.x, p.w, wt, n_in, n_out, 1);
                    float *y = qt_malloc((size_t)n_out * sizeof(float));
                    // every sub-range [r0, n_out) and [0, r1): ragged starts and ends
                    int bad = 0;
                    for (int r0 = 0; r0 < n_out; r0 += 1 + r0 / 4) {
                        for (int i = 0; i < n_out; i++) y[i] = p.yref[i];
                        y[r0] = NAN;
                        tr->gemv(n_in, (const char *)p.w + (size_t)r0 * p.ws, p.ws, p.xq, y + r0, n_out - r0);
                        bad += compare_same(&p, y, "gemv[r0:]", g_tables[ti]->isa, 1);
                        for (int i = 0; i < n_out; i++) y[i] = p.yref[i];
                        y[0] = NAN;
                        tr->gemv(n_in, p.w, p.ws, p.xq, y, n_out - r0);
                        bad += compare_same(&p, y, "gemv[:r1]", g_tables[ti]->isa, 1);
                    }
                    CHECK(bad == 0, "%s gemv %s n_in=%d n_out=%d sub-ranges", g_tables[ti]->isa, qt_type_name(wt),
                          n_in, n_out);
                    for (int nth = 1; nth <= g_max_threads; nth++) {
                        for (int i = 0; i < n_out; i++) y[i] = NAN;
                        qt_matmul(&(qt_kctx){ .kt = g_tables[ti], .pool = g_pools[nth] }, y, p.x, p.w, wt, n_in, n_out, 1);
                        CHECK(compare_same(&p, y, "matmul T=1", g_tables[ti]->isa, nth) == 0,
                              "%s matmul T=1 %s n_in=%d n_out=%d threads=%d", g_tables[ti]->isa, qt_type_name(wt),
                              n_in, n_out, nth);
                    }
                    // a strided view: rows of p.w copied ws2 > ws bytes apart
                    size_t ws2 = p.ws + 3 * qt_type_traits_get(wt)->type_size;
                    char *w2 = qt_malloc((size_t)n_out * ws2);
                    for (int r = 0; r < n_out; r++) {
                        memcpy(w2 + r * ws2, (const char *)p.w + r * p.ws, p.ws);
                        memset(w2 + r * ws2 + p.ws, 0xff, ws2 - p.ws);
                    }
                    for (int i = 0; i < n_out; i++) y[i] = NAN;
                    tr->gemv(n_in, w2, ws2, p.xq, y, n_out);
                    CHECK(compare_same(&p, y, "gemv strided", g_tables[ti]->isa, 1) == 0,
                          "%s gemv strided %s n_in=%d n_out=%d", g_tables[ti]->isa, qt_type_name(wt), n_in, n_out);
                    qt_free(w2);
                    qt_free(y);
                    problem_free(&p);
                    n_tested++;
                }
        }
        printf("  gemv %-5s %s (%d shapes)\n", qt_type_name(wt), test_n_fail == f0 ? "ok" : "FAILED", n_tested);
    }
}

// The decode kernels' prefetch twins (matmul-internal.h: gemv-avx2.c and
// gemv-avx512vnni.c compiled twice, prefetching into L1 or L2; cpu.c uses
// one set per CPU): a copy of each x86 table switched to the other set must
// differ in its gemv / gemm_small entries and give the same bits, on packed
// rows (the next-pass prefetch) and a strided view (the per-row one).
static void test_prefetch_twins(qt_rng *rng) {
#if !defined(__x86_64__)
    (void)rng;
    printf("  decode prefetch twins: x86 only (not built here)\n");
#else
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_1, QT_TYPE_Q5_0, QT_TYPE_Q5_1,
                                    QT_TYPE_IQ4_NL, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K, QT_TYPE_F16,
                                    QT_TYPE_BF16};
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        if (!kt->gemv_prefetch) continue;
        qt_kernel_table *other = qt_malloc(sizeof(*other));
        *other = *kt;
        bool l1 = strcmp(kt->gemv_prefetch, "l1") != 0;   // the set kt does not use
        qt_gemv_prefetch_avx2(other->type, l1);
        if (!strcmp(kt->isa, "avx512-vnni") || !strcmp(kt->isa, "avx512-bf16"))
            qt_gemv_prefetch_avx512vnni(other->type, l1);
        int n_twins = 0, n_bad = 0;
        for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
            qt_type wt = types[it];
            const qt_kernel_traits *a = &kt->type[wt], *b = &other->type[wt];
            n_twins += (a->gemv != b->gemv) + (a->gemm_small != b->gemm_small);
            if (a->gemv == b->gemv && a->gemm_small == b->gemm_small) continue;
            int blk = qt_type_traits_get(wt)->blck_size;
            const int n_in = blk * 66, n_out = 37, T = 5;
            problem p;
            problem_init(&p, rng, wt, n_in, n_out, T);
            size_t ny = (size_t)T * n_out;
            float *ya = qt_malloc(ny * sizeof(float)), *yb = qt_malloc(ny * sizeof(float));
            size_t ws2 = p.ws + 3 * qt_type_traits_get(wt)->type_size;
            char *w2 = qt_malloc((size_t)n_out * ws2);
            for (int r = 0; r < n_out; r++) {
                memcpy(w2 + r * ws2, (const char *)p.w + r * p.ws, p.ws);
                memset(w2 + r * ws2 + p.ws, 0xff, ws2 - p.ws);
            }
            for (int view = 0; view < 2; view++) {
                const void *w = view ? (const void *)w2 : p.w;
                size_t ws = view ? ws2 : p.ws;
                if (a->gemv != b->gemv) {
                    a->gemv(n_in, w, ws, p.xq, ya, n_out);
                    b->gemv(n_in, w, ws, p.xq, yb, n_out);
                    n_bad += memcmp(ya, yb, (size_t)n_out * sizeof(float)) != 0;
                }
                if (a->gemm_small && a->gemm_small != b->gemm_small) {
                    a->gemm_small(n_in, w, ws, p.xq, p.xs, ya, (size_t)n_out, n_out, T);
                    b->gemm_small(n_in, w, ws, p.xq, p.xs, yb, (size_t)n_out, n_out, T);
                    n_bad += memcmp(ya, yb, ny * sizeof(float)) != 0;
                }
            }
            qt_free(w2);
            qt_free(ya);
            qt_free(yb);
            problem_free(&p);
        }
        CHECK(n_twins > 0, "%s: no decode kernel has a prefetch twin", kt->isa);
        CHECK(n_bad == 0, "%s: %d prefetch twins differ from the table's kernels", kt->isa, n_bad);
        printf("  %s: decode prefetch %s; %d twin kernels (prefetch %s) give the same bits\n", kt->isa,
               kt->gemv_prefetch, n_twins, l1 ? "l1" : "l2");
        qt_free(other);
    }
#endif
}

// The small-batch kernels (gemm_small) on their own: 1..17 tokens (one
// round of the kernel's register tile, several, and a ragged last one), row
// counts around the 4-row pass, row lengths with every scalar-tail
// remainder, a strided view (0xff between rows) and a sub-range starting at
// an odd row. Each token's column must equal the gemv's bit for bit (the
// same arithmetic in the same order: the server's results do not depend on
// how many slots decode together), and ref's within TOL_SAME.
static void test_gemm_small(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K,
                                    QT_TYPE_IQ4_NL, QT_TYPE_Q4_1, QT_TYPE_Q5_0, QT_TYPE_Q5_1};
    static const int n_outs[] = {1, 3, 4, 5, 9, 37};
    static const int Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17};
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        int blk = qt_type_traits_get(wt)->blck_size;
        const int n_ins[] = {blk, blk * 2, blk * 3, blk * 4, blk * 17, blk * 66};
        int f0 = test_n_fail, n_tested = 0;
        for (int ti = 0; ti < g_n_tables; ti++) {
            const qt_kernel_traits *tr = &g_tables[ti]->type[wt];
            if (!tr->gemm_small) continue;
            const char *isa = g_tables[ti]->isa;
            for (size_t ii = 0; ii < QT_ARRAY_LEN(n_ins); ii++)
                for (size_t oi = 0; oi < QT_ARRAY_LEN(n_outs); oi++)
                    for (size_t Ti = (ii + oi) % 2; Ti < QT_ARRAY_LEN(Ts); Ti += 1 + (ii == 5)) {
                        const int n_in = n_ins[ii], n_out = n_outs[oi], T = Ts[Ti];
                        problem p;
                        problem_init(&p, rng, wt, n_in, n_out, T);
                        for (int t = 0; t < T; t++)
                            for (int r = 0; r < n_out; r++)
                                qt_kernels_ref()->type[wt].vec_dot(n_in, &p.yref[(size_t)t * n_out + r],
                                                                   (const char *)p.w + r * p.ws,
                                                                   (const char *)p.xq + t * p.xs);
                        float *y = qt_malloc((size_t)T * n_out * sizeof(float));
                        float *yv = qt_malloc((size_t)T * n_out * sizeof(float));
                        for (int t = 0; t < T; t++)
                            tr->gemv(n_in, p.w, p.ws, (const char *)p.xq + t * p.xs, yv + (size_t)t * n_out, n_out);
                        for (int i = 0; i < T * n_out; i++) y[i] = NAN;
                        tr->gemm_small(n_in, p.w, p.ws, p.xq, p.xs, y, (size_t)n_out, n_out, T);
                        CHECK(memcmp(y, yv, (size_t)T * n_out * sizeof(float)) == 0,
                              "%s gemm_small %s n_in=%d n_out=%d T=%d differs from the gemv", isa, qt_type_name(wt),
                              n_in, n_out, T);
                        CHECK(compare_same(&p, y, "gemm_small", isa, 1) == 0, "%s gemm_small %s n_in=%d n_out=%d T=%d",
                              isa, qt_type_name(wt), n_in, n_out, T);
                        // rows [1, n_out) of a strided copy (0xff between rows)
                        if (n_out > 1) {
                            size_t ws2 = p.ws + 3 * qt_type_traits_get(wt)->type_size;
                            char *w2 = qt_malloc((size_t)n_out * ws2);
                            for (int r = 0; r < n_out; r++) {
                                memcpy(w2 + r * ws2, (const char *)p.w + r * p.ws, p.ws);
                                memset(w2 + r * ws2 + p.ws, 0xff, ws2 - p.ws);
                            }
                            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
                            tr->gemm_small(n_in, w2 + ws2, ws2, p.xq, p.xs, y + 1, (size_t)n_out, n_out - 1, T);
                            int bad = 0;
                            for (int t = 0; t < T; t++)
                                bad += memcmp(y + (size_t)t * n_out + 1, yv + (size_t)t * n_out + 1,
                                              (size_t)(n_out - 1) * sizeof(float)) != 0;
                            CHECK(bad == 0, "%s gemm_small strided rows [1:] %s n_in=%d n_out=%d T=%d: %d columns differ",
                                  isa, qt_type_name(wt), n_in, n_out, T, bad);
                            qt_free(w2);
                        }
                        qt_free(y);
                        qt_free(yv);
                        problem_free(&p);
                        n_tested++;
                    }
        }
        if (n_tested)
            printf("  gemm_small %-5s %s (%d shapes)\n", qt_type_name(wt), test_n_fail == f0 ? "ok" : "FAILED", n_tested);
    }
}

// bf16 rounding as the bf16 ops do it (nearest even)
static inline double bfr(float x) { return qt_bf16_to_fp32(qt_fp32_to_bf16(x)); }

// The float-activation ops (qt_gemm_ops) of a table: "f32" and "bf16".
static const qt_gemm_ops *table_ops(const qt_kernel_table *kt, int bf16) { return bf16 ? &kt->bf16 : &kt->f32; }

// gemm_xwt (y = x @ W^T with W dequantized into the packed panels) of every
// table's f32 and bf16 ops, on its own: shapes across the cache blocks (k
// past 256, rows past 1024, tokens past 96), every micro-tile remainder,
// rows of x, y and W with padding between them (left untouched in y),
// float and quantized weights, against the double product of the
// dequantized weights and the float activations (bf16 ops: both rounded to
// bf16 first), TOL_SAME; and with x pre-packed by pack_x, the same bits.
static void test_gemm_xwt(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_K,
                                    QT_TYPE_Q6_K};
    static const int shapes[][3] = {   // T, n (float types; quantized: rounded up to blocks), n_rows
        {1, 1, 1}, {5, 8, 16}, {7, 9, 17}, {6, 16, 8}, {16, 64, 512}, {100, 600, 40},
        {13, 300, 1100}, {97, 257, 33}, {2, 1030, 3}, {25, 512, 50}, {15, 2090, 20},
    };
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        const qt_type_traits *tt = qt_type_traits_get(wt);
        int f0 = test_n_fail, n_tested = 0;
        for (int ti = 0; ti < g_n_tables; ti++)
            for (int bf16 = 0; bf16 < 2; bf16++) {
                const qt_gemm_ops *ops = table_ops(g_tables[ti], bf16);
                if (!ops->gemm_xwt) continue;
                const char *isa = g_tables[ti]->isa, *oname = bf16 ? "bf16" : "f32";
                for (size_t si = 0; si < QT_ARRAY_LEN(shapes); si++, n_tested++) {
                    int T = shapes[si][0], n = shapes[si][1], n_rows = shapes[si][2];
                    n = (n + tt->blck_size - 1) / tt->blck_size * tt->blck_size;
                    if (tt->blck_size > 1 && (n_rows > 300 || T > 50)) continue;   // the ref oracle is slow
                    size_t ldx = (size_t)n + 3, ldy = (size_t)n_rows + 5, ws = qt_row_size(wt, n) + 8;
                    float *wf = qt_malloc((size_t)n * sizeof(float)), *wd = qt_malloc((size_t)n_rows * n * sizeof(float));
                    char *w = qt_malloc((size_t)n_rows * ws);
                    memset(w, 0xff, (size_t)n_rows * ws);   // padding: NaN as F16/BF16/F32
                    for (int r = 0; r < n_rows; r++) {
                        for (int k = 0; k < n; k++) wf[k] = (float)qt_rng_normal(rng) * 0.5f;
                        tt->from_float_ref(wf, w + (size_t)r * ws, n);
                        tt->to_float(w + (size_t)r * ws, wd + (size_t)r * n, n);
                    }
                    float *x = randn(rng, (size_t)T * ldx, 1.0f);
                    float *y = qt_malloc((size_t)T * ldy * sizeof(float));
                    for (size_t i = 0; i < (size_t)T * ldy; i++) y[i] = NAN;
                    qt_wmat W = { w, ws, wt, g_tables[ti]->type[wt].to_float };
                    ops->gemm_xwt(T, n, x, (int64_t)ldx, NULL, &W, y, (int64_t)ldy, n_rows);
                    int bad = 0;
                    for (int t = 0; t < T; t++) {
                        for (int r = 0; r < n_rows; r++) {
                            double d = 0, a = 0;
                            for (int k = 0; k < n; k++) {
                                double wv = wd[(size_t)r * n + k], xv = x[(size_t)t * ldx + k];
                                double v = bf16 ? bfr((float)wv) * bfr((float)xv) : wv * xv;
                                d += v, a += fabs(v);
                            }
                            float got = y[(size_t)t * ldy + r];
                            if (!(fabs(got - d) <= TOL_SAME * a + 1e-30) && bad++ < 3 && g_n_details++ < MAX_DETAILS)
                                fprintf(stderr, "  %s %s gemm_xwt %s T=%d n=%d rows=%d [t=%d r=%d]: %.9g vs %.9g\n", isa,
                                        oname, qt_type_name(wt), T, n, n_rows, t, r, got, d);
                        }
                        for (size_t r = (size_t)n_rows; r < ldy; r++) bad += !isnan(y[(size_t)t * ldy + r]);
                    }
                    CHECK(bad == 0, "%s %s gemm_xwt %s T=%d n=%d rows=%d: %d wrong", isa, oname, qt_type_name(wt), T, n,
                          n_rows, bad);
                    // with x packed beforehand (by 3 "threads" in turn): the very same bits
                    if (ops->pack_x) {
                        float *xp = qt_malloc(ops->pack_x_size(T, n) * sizeof(float));
                        for (int ith = 0; ith < 3; ith++) ops->pack_x(T, n, x, (int64_t)ldx, xp, ith, 3);
                        float *y2 = qt_malloc((size_t)T * ldy * sizeof(float));
                        memcpy(y2, y, (size_t)T * ldy * sizeof(float));
                        for (int t = 0; t < T; t++)
                            for (int r = 0; r < n_rows; r++) y2[(size_t)t * ldy + r] = NAN;
                        ops->gemm_xwt(T, n, x, (int64_t)ldx, xp, &W, y2, (int64_t)ldy, n_rows);
                        CHECK(memcmp(y, y2, (size_t)T * ldy * sizeof(float)) == 0,
                              "%s %s gemm_xwt %s T=%d n=%d rows=%d: pre-packed x gives other results", isa, oname,
                              qt_type_name(wt), T, n, n_rows);
                        qt_free(xp); qt_free(y2);
                    }
                    qt_free(wf); qt_free(wd); qt_free(w); qt_free(x); qt_free(y);
                }
            }
        printf("  gemm_xwt %-5s %s (%d shapes)\n", qt_type_name(wt), test_n_fail == f0 ? "ok" : "FAILED", n_tested);
    }
}

// qt_matmul at QT_PREC_F32 and QT_PREC_BF16 (the training forward): x is
// never rounded to the vec_dot_type; the product is the dequantized weights'
// (QLoRA's semantics) within fp32 rounding, or with both operands rounded to
// bf16 where the table has bf16 ops (as F32 where it has none). Every weight
// type, T = 1, 5, 40, 1..4 threads.
static void test_precisions(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0, QT_TYPE_Q4_0, QT_TYPE_Q4_1,
                                    QT_TYPE_Q5_0, QT_TYPE_IQ4_NL, QT_TYPE_Q2_K, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K};
    static const int Ts[] = {1, 5, 40};
    int f0 = test_n_fail;
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        const qt_type_traits *tt = qt_type_traits_get(wt);
        int n_in = tt->blck_size == 256 ? 512 : 96, n_out = 37;
        size_t ws = qt_row_size(wt, n_in);
        float *wf = randn(rng, (size_t)n_out * n_in, 0.5f), *wd = qt_malloc((size_t)n_out * n_in * sizeof(float));
        char *w = qt_malloc((size_t)n_out * ws);
        for (int r = 0; r < n_out; r++) {
            tt->from_float_ref(wf + (size_t)r * n_in, w + (size_t)r * ws, n_in);
            tt->to_float(w + (size_t)r * ws, wd + (size_t)r * n_in, n_in);
        }
        for (size_t k = 0; k < QT_ARRAY_LEN(Ts); k++) {
            int T = Ts[k];
            float *x = randn(rng, (size_t)T * n_in, 1.0f), *y = qt_malloc((size_t)T * n_out * sizeof(float));
            for (int ti = 0; ti < g_n_tables; ti++)
                for (int prec = QT_PREC_F32; prec <= QT_PREC_BF16; prec++)
                    for (int nth = 1; nth <= g_max_threads; nth += 3) {
                        const qt_kernel_table *kt = g_tables[ti];
                        bool bf = prec == QT_PREC_BF16 && kt->bf16.gemm_xwt;
                        for (int i = 0; i < T * n_out; i++) y[i] = NAN;
                        qt_kctx kc = { .kt = kt, .pool = g_pools[nth], .prec = (qt_prec)prec };
                        qt_matmul(&kc, y, x, w, wt, n_in, n_out, T);
                        int bad = 0;
                        for (int t = 0; t < T; t++)
                            for (int r = 0; r < n_out; r++) {
                                double d = 0, a = 0;
                                for (int i = 0; i < n_in; i++) {
                                    double wv = wd[(size_t)r * n_in + i], xv = x[(size_t)t * n_in + i];
                                    double v = bf ? bfr((float)wv) * bfr((float)xv) : wv * xv;
                                    d += v, a += fabs(v);
                                }
                                bad += !(fabs(y[(size_t)t * n_out + r] - d) <= TOL_SAME * a + 1e-30);
                            }
                        CHECK(bad == 0, "%s matmul prec %s %s T=%d threads=%d: %d values off the dequantized product",
                              kt->isa, prec == QT_PREC_F32 ? "f32" : "bf16", qt_type_name(wt), T, nth, bad);
                    }
            qt_free(x); qt_free(y);
        }
        qt_free(wf); qt_free(wd); qt_free(w);
    }
    printf("  matmul at QT_PREC_F32 / QT_PREC_BF16 %s\n", test_n_fail == f0 ? "ok" : "FAILED");
}

// qt_matmul_multi (several weights on one input, one conversion, one pool run)
// gives each output exactly what qt_matmul gives it alone: decode, tiles and
// gemm_wt paths, outputs of unequal sizes, mixed types with one vec_dot_type,
// and mixed vec_dot_types (the fallback), on 1..4 threads.
static void test_matmul_multi(qt_rng *rng) {
    static const qt_type mixes[][3] = {
        {QT_TYPE_Q4_0, QT_TYPE_Q4_0, QT_TYPE_Q4_0}, {QT_TYPE_Q4_K, QT_TYPE_Q6_K, QT_TYPE_Q4_K},
        {QT_TYPE_F16, QT_TYPE_F16, QT_TYPE_F16}, {QT_TYPE_Q8_0, QT_TYPE_F16, QT_TYPE_Q4_0},
    };
    static const int n_outs[3] = {70, 16, 33}, Ts[] = {1, 3, 20};
    const int n_in = 512;
    float row[512];
    int f0 = test_n_fail;
    for (size_t mi = 0; mi < QT_ARRAY_LEN(mixes); mi++)
        for (size_t ti = 0; ti < QT_ARRAY_LEN(Ts); ti++) {
            int T = Ts[ti];
            float *x = randn(rng, (size_t)T * n_in, 1.0f);
            void *w[3];
            float *y[3], *y1[3];
            qt_matmul_out outs[3];
            for (int i = 0; i < 3; i++) {
                qt_type wt = mixes[mi][i];
                size_t ws = qt_row_size(wt, n_in);
                float *wf = randn(rng, (size_t)n_outs[i] * n_in, 0.5f);
                w[i] = qt_malloc((size_t)n_outs[i] * ws);
                for (int r = 0; r < n_outs[i]; r++)
                    qt_type_traits_get(wt)->from_float_ref(wf + (size_t)r * n_in, (char *)w[i] + r * ws, n_in);
                qt_free(wf);
                y[i] = qt_malloc((size_t)T * n_outs[i] * sizeof(float));
                y1[i] = qt_malloc((size_t)T * n_outs[i] * sizeof(float));
                outs[i] = (qt_matmul_out){ y[i], w[i], wt, n_outs[i] };
            }
            for (int nth = 1; nth <= g_max_threads; nth++) {
                const qt_kctx KC = kctx(qt_kernels(), g_pools[nth]);
                int bad = 0;
                for (int i = 0; i < 3; i++) {
                    qt_matmul(&KC, y1[i], x, w[i], mixes[mi][i], n_in, n_outs[i], T);
                    for (int k = 0; k < T * n_outs[i]; k++) y[i][k] = NAN;
                }
                qt_matmul_multi(&KC, x, n_in, T, outs, 3);
                // the 8-row gemv's rounding depends on which rows share a pass:
                // equal within TOL_SAME of sum |w * x|, not bit for bit
                for (int i = 0; i < 3; i++)
                    for (int r = 0; r < n_outs[i]; r++) {
                        qt_get_row(qt_kernels(), row, w[i], mixes[mi][i], n_in, r);
                        for (int t = 0; t < T; t++) {
                            double a = 0;
                            for (int k = 0; k < n_in; k++) a += fabs((double)row[k] * x[(size_t)t * n_in + k]);
                            size_t e = (size_t)t * n_outs[i] + r;
                            bad += !(fabs((double)y[i][e] - y1[i][e]) <= TOL_SAME * a);
                        }
                    }
                CHECK(bad == 0, "matmul_multi %s,%s,%s T=%d threads=%d: %d values differ from qt_matmul",
                      qt_type_name(mixes[mi][0]), qt_type_name(mixes[mi][1]), qt_type_name(mixes[mi][2]), T, nth, bad);
            }
            for (int i = 0; i < 3; i++) { qt_free(w[i]); qt_free(y[i]); qt_free(y1[i]); }
            qt_free(x);
        }
    printf("  matmul_multi %s\n", test_n_fail == f0 ? "ok" : "FAILED");
}

// qt_matmul_t (dx += dy @ W) at QT_PREC_F32 and QT_PREC_BF16 on every table,
// 1..4 threads, against double (bf16: on operands rounded to bf16 where the
// table has bf16 ops); and qt_get_row.
static void test_matmul_t(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0, QT_TYPE_Q4_0,
                                    QT_TYPE_Q4_K, QT_TYPE_Q6_K, QT_TYPE_Q5_K};
    // n_in past one 1024-column block, n_out past one 256-row block; T past the row split's bound
    static const int shapes[][3] = {{256, 5, 1}, {512, 67, 3}, {768, 13, 9}, {1536, 20, 4}, {2048, 300, 7}, {256, 40, 100}};
    int f0 = test_n_fail;
    for (int ti = 0; ti < g_n_tables; ti++) {
        for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
            qt_type wt = types[it];
            const qt_type_traits *tt = qt_type_traits_get(wt);
            for (size_t si = 0; si < QT_ARRAY_LEN(shapes); si++) {
                int n_in = shapes[si][0], n_out = shapes[si][1], T = shapes[si][2];
                size_t ws = qt_row_size(wt, n_in);
                float *wf = randn(rng, (size_t)n_out * n_in, 0.5f);
                void *w = qt_malloc((size_t)n_out * ws);
                float *wd = qt_malloc((size_t)n_out * n_in * sizeof(float));
                for (int r = 0; r < n_out; r++) {
                    tt->from_float_ref(wf + (size_t)r * n_in, (char *)w + r * ws, n_in);
                    tt->to_float((char *)w + r * ws, wd + (size_t)r * n_in, n_in);
                }
                float *dy = randn(rng, (size_t)T * n_out, 1.0f);
                float *dx0 = randn(rng, (size_t)T * n_in, 1.0f);
                float *dx = qt_malloc((size_t)T * n_in * sizeof(float));
                for (int prec = QT_PREC_F32; prec <= QT_PREC_BF16; prec++)
                    for (int nth = 1; nth <= g_max_threads; nth++) {
                        bool bf = prec == QT_PREC_BF16 && g_tables[ti]->bf16.gemm_acc_w;
                        memcpy(dx, dx0, (size_t)T * n_in * sizeof(float));
                        qt_kctx kc = { .kt = g_tables[ti], .pool = g_pools[nth], .prec = (qt_prec)prec };
                        qt_matmul_t(&kc, dx, dy, w, wt, n_in, n_out, T);
                        int bad = 0;
                        for (int t = 0; t < T; t++)
                            for (int k = 0; k < n_in; k++) {
                                double d = dx0[(size_t)t * n_in + k], a = fabs(d);
                                for (int r = 0; r < n_out; r++) {
                                    float u = dy[(size_t)t * n_out + r], v = wd[(size_t)r * n_in + k];
                                    double p = bf ? bfr(u) * bfr(v) : (double)u * v;
                                    d += p;
                                    a += fabs(p);
                                }
                                if (!(fabs(dx[(size_t)t * n_in + k] - d) <= TOL_SAME * a) && bad++ < 3 &&
                                    g_n_details++ < MAX_DETAILS)
                                    fprintf(stderr, "  matmul_t %s %s [%d,%d]: %.9g vs %.9g\n", g_tables[ti]->isa,
                                            qt_type_name(wt), t, k, dx[(size_t)t * n_in + k], d);
                            }
                        CHECK(bad == 0, "%s matmul_t %s %s n_in=%d n_out=%d T=%d threads=%d", g_tables[ti]->isa,
                              bf ? "bf16" : "f32", qt_type_name(wt), n_in, n_out, T, nth);
                    }
                // qt_get_row: the table's dequantization of one row
                float *row = qt_malloc((size_t)n_in * sizeof(float));
                qt_get_row(g_tables[ti], row, w, wt, n_in, n_out - 1);
                CHECK(memcmp(row, wd + (size_t)(n_out - 1) * n_in, (size_t)n_in * sizeof(float)) == 0,
                      "%s get_row %s", g_tables[ti]->isa, qt_type_name(wt));
                qt_free(row); qt_free(wf); qt_free(w); qt_free(wd); qt_free(dy); qt_free(dx0); qt_free(dx);
            }
        }
    }
    printf("  matmul_t (f32, bf16) %s\n", test_n_fail == f0 ? "ok" : "FAILED");
}

static void test_float_helpers(qt_rng *rng) {
    static const int ns[] = {1, 7, 8, 31, 64, 1000};
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        for (size_t i = 0; i < QT_ARRAY_LEN(ns); i++) {
            int n = ns[i];
            float *x = randn(rng, n, 1), *y = randn(rng, n, 1), *y2 = qt_malloc(n * sizeof(float));
            double d = 0, a = 0;
            for (int k = 0; k < n; k++) { d += (double)x[k] * y[k]; a += fabs((double)x[k] * y[k]); }
            float s = kt->dot_f32(n, x, y);
            CHECK(fabs(s - d) <= TOL_SAME * a, "%s dot_f32 n=%d: %g vs %g", kt->isa, n, s, d);
            // y in fp16 (an F16 KV cache): against the double sum of the halves' values
            uint16_t *yh = qt_malloc(n * sizeof(uint16_t));
            d = 0;
            for (int k = 0; k < n; k++) {
                yh[k] = qt_fp32_to_fp16(y[k]);
                d += (double)x[k] * qt_fp16_to_fp32(yh[k]);
            }
            s = kt->dot_f32_f16(n, x, yh);
            CHECK(fabs(s - d) <= TOL_SAME * a, "%s dot_f32_f16 n=%d: %g vs %g", kt->isa, n, s, d);
            qt_free(yh);
            memcpy(y2, y, n * sizeof(float));
            kt->axpy_f32(n, 0.75f, x, y2);
            int bad = 0;
            for (int k = 0; k < n; k++) bad += !(fabs(y2[k] - (y[k] + 0.75 * x[k])) <= 1e-6 * (fabs(y[k]) + fabs(x[k])));
            CHECK(bad == 0, "%s axpy_f32 n=%d", kt->isa, n);
            memcpy(y2, y, n * sizeof(float));
            kt->scale_f32(n, -1.5f, y2);
            bad = 0;
            for (int k = 0; k < n; k++) bad += y2[k] != y[k] * -1.5f;
            CHECK(bad == 0, "%s scale_f32 n=%d", kt->isa, n);
            qt_free(x); qt_free(y); qt_free(y2);
        }
    }
}

// Every table's gemm_acc (f32 and bf16 ops), qt_gemm_acc, qt_gemm_set (C
// overwritten: it starts as garbage) and qt_gemm_acc_at (A given transposed)
// in each precision: M, N, K ragged against the micro-tiles (6 x 16, 14 x 32) and
// the cache blocks (A 96 x 256, B 256 x 1024; AVX-512: k blocks of 1024
// fp32, 2048 as bf16 pairs), odd K (a half bf16 pair),
// leading dimensions larger than the extents (the columns past N untouched),
// against double (bf16: on operands rounded to bf16), TOL_SAME.
static void test_gemm_acc(qt_rng *rng) {
    static const int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {4, 16, 64}, {9, 40, 33}, {5, 259, 70},
                                    {6, 16, 256}, {103, 530, 261}, {97, 15, 520}, {12, 1030, 7}, {13, 33, 1},
                                    {17, 37, 2085}};
    int f0 = test_n_fail;
    for (int ti = 0; ti < g_n_tables; ti++)
        for (int mode = 0; mode < 8; mode++) {   // ops f32, ops bf16; qt_gemm_acc, _set, _acc_at at F32, at BF16
            const qt_kernel_table *kt = g_tables[ti];
            const qt_gemm_ops *ops = table_ops(kt, mode & 1);
            if (mode < 2 && !ops->gemm_acc) continue;
            bool bf = (mode & 1) && kt->bf16.gemm_acc;
            qt_kctx kc = { .kt = kt, .prec = mode >= 2 && (mode & 1) ? QT_PREC_BF16 : QT_PREC_F32 };
            const bool set = mode == 4 || mode == 5, at = mode >= 6;
            for (size_t si = 0; si < QT_ARRAY_LEN(shapes); si++) {
                int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                int lda = K + 3, ldb = N + 5, ldc = N + 1;
                float *A = randn(rng, (size_t)M * lda, 1), *B = randn(rng, (size_t)K * ldb, 1);
                float *C = randn(rng, (size_t)M * ldc, 1), *C0 = qt_malloc((size_t)M * ldc * sizeof(float));
                memcpy(C0, C, (size_t)M * ldc * sizeof(float));
                if (mode < 2) ops->gemm_acc(M, N, K, A, lda, B, ldb, C, ldc);
                else if (set) qt_gemm_set(&kc, M, N, K, A, lda, B, ldb, C, ldc);
                else if (!at) qt_gemm_acc(&kc, M, N, K, A, lda, B, ldb, C, ldc);
                else {   // At (K, M), rows M + 2 apart
                    float *At = qt_malloc((size_t)K * (M + 2) * sizeof(float));
                    for (int k = 0; k < K; k++)
                        for (int i = 0; i < M; i++) At[(size_t)k * (M + 2) + i] = A[(size_t)i * lda + k];
                    qt_gemm_acc_at(&kc, M, N, K, At, M + 2, B, ldb, C, ldc);
                    qt_free(At);
                }
                int bad = 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < ldc; j++) {
                        double d = set && j < N ? 0 : C0[(size_t)i * ldc + j], a = fabs(d);
                        if (j < N)
                            for (int k = 0; k < K; k++) {
                                float u = A[(size_t)i * lda + k], v = B[(size_t)k * ldb + j];
                                double p = bf ? bfr(u) * bfr(v) : (double)u * v;
                                d += p;
                                a += fabs(p);
                            }
                        bad += !(fabs(C[(size_t)i * ldc + j] - d) <= TOL_SAME * a);   // j >= N: untouched
                    }
                CHECK(bad == 0, "%s %s M=%d N=%d K=%d: %d wrong", kt->isa,
                      mode == 0 ? "f32 gemm_acc" : mode == 1 ? "bf16 gemm_acc" : mode == 2 ? "qt_gemm_acc F32"
                      : mode == 3 ? "qt_gemm_acc BF16" : mode == 4 ? "qt_gemm_set F32" : mode == 5 ? "qt_gemm_set BF16"
                      : mode == 6 ? "qt_gemm_acc_at F32" : "qt_gemm_acc_at BF16",
                      M, N, K, bad);
                qt_free(A); qt_free(B); qt_free(C); qt_free(C0);
            }
        }
    printf("  gemm_acc (f32, bf16, qt_gemm_acc, qt_gemm_set, qt_gemm_acc_at) %s\n", test_n_fail == f0 ? "ok" : "FAILED");
}

// ---- pool ----

typedef struct {
    _Atomic long hits[8];
    _Atomic int nth_seen;
} pool_ctx;

static void pool_job(void *arg, int ith, int nth) {
    pool_ctx *c = arg;
    atomic_fetch_add(&c->hits[ith], 1);
    atomic_store(&c->nth_seen, nth);
}

static void test_pool(void) {
    for (int n = 1; n <= g_max_threads; n++) {
        qt_pool *p = g_pools[n];
        CHECK(qt_pool_n_threads(p) == n, "pool threads %d", n);
        pool_ctx c;
        memset(&c, 0, sizeof(c));
        const int runs = g_pool_runs;
        double t0 = qt_time_s();
        for (int i = 0; i < runs; i++) qt_pool_run(p, pool_job, &c);
        double us = (qt_time_s() - t0) / runs * 1e6;
        int ok = 1;
        for (int i = 0; i < n; i++) ok &= c.hits[i] == runs;
        CHECK(ok && c.nth_seen == n, "pool %d threads: every thread runs every job", n);
        // after the workers fall asleep, jobs still run (condvar wake-up path)
        usleep(5000);
        qt_pool_run(p, pool_job, &c);
        usleep(5000);
        qt_pool_run(p, pool_job, &c);
        ok = 1;
        for (int i = 0; i < n; i++) ok &= c.hits[i] == runs + 2;
        CHECK(ok, "pool %d threads: wake-up after sleep", n);
        printf("  pool %d threads: %.2f us per empty job\n", n, us);
        char *b = qt_pool_wbuf(p, 100);
        CHECK(((uintptr_t)b & 63) == 0, "wbuf aligned");
        memset(b, 1, 100);
        b = qt_pool_wbuf(p, 1 << 20);
        CHECK(b && ((uintptr_t)b & 63) == 0, "wbuf grown and aligned");
        memset(b, 2, 1 << 20);
        CHECK(qt_pool_wbuf(p, 10) == b, "wbuf never shrinks");
    }
    pool_ctx c;
    memset(&c, 0, sizeof(c));
    qt_pool_run(NULL, pool_job, &c);
    CHECK(c.hits[0] == 1 && c.nth_seen == 1, "NULL pool runs on the caller");
    CHECK(qt_pool_n_threads(NULL) == 1, "NULL pool has one thread");
}

#include <float.h>

// dot_f32_f64 and softmax_grad_f32 (the training attention's backward) of
// every table: the dot against a long-double sum, within 1e-15 of the sum of
// |x y| (the lanes' order differs); the softmax gradient bit for bit against
// p * (dp - d) * scale evaluated here, with a vector d and a scalar d0, on
// ragged lengths and in place.
static void test_softmax_grad(qt_rng *rng) {
    static const int lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 84, 224, 1001};
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        int bad_dot = 0, bad_g = 0;
        for (size_t li = 0; li < QT_ARRAY_LEN(lens); li++) {
            int n = lens[li];
            float *p = randn(rng, (size_t)n + 1, 1.0f), *dp = randn(rng, (size_t)n + 1, 3.0f);
            float *d = randn(rng, (size_t)n + 1, 1.0f);
            float *out = qt_malloc(sizeof(float) * ((size_t)n + 1)), *io = qt_malloc(sizeof(float) * ((size_t)n + 1));
            long double want = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                want += (long double)p[i] * dp[i];
                mag += fabsl((long double)p[i] * dp[i]);
            }
            double got = kt->dot_f32_f64(n, p, dp);
            if (fabsl(got - want) > 1e-15L * mag) bad_dot++;
            for (int vec = 0; vec < 2; vec++) {
                const float scale = 0.125f, d0 = 0.3f;
                out[n] = io[n] = 42.0f;   // past the end: untouched
                kt->softmax_grad_f32(n, p, dp, vec ? d : NULL, d0, scale, out);
                memcpy(io, dp, sizeof(float) * (size_t)n);
                kt->softmax_grad_f32(n, p, io, vec ? d : NULL, d0, scale, io);   // out aliases dp
                for (int i = 0; i < n; i++) {
                    volatile float t = dp[i] - (vec ? d[i] : d0);
                    volatile float u = p[i] * t;
                    float w = u * scale;
                    bad_g += memcmp(&out[i], &w, sizeof(float)) != 0 || memcmp(&io[i], &w, sizeof(float)) != 0;
                }
                bad_g += out[n] != 42.0f || io[n] != 42.0f;
            }
            qt_free(p); qt_free(dp); qt_free(d); qt_free(out); qt_free(io);
        }
        CHECK(bad_dot == 0, "%s dot_f32_f64: %d lengths off", kt->isa, bad_dot);
        CHECK(bad_g == 0, "%s softmax_grad_f32: %d elements differ from p * (dp - d) * scale", kt->isa, bad_g);
        printf("  %s dot_f32_f64, softmax_grad_f32 %s\n", kt->isa, bad_dot + bad_g ? "FAILED" : "ok");
    }
}

// rmsnorm_f32 and rmsnorm_backward_f32 of every table against the ref
// table's (index-order double sums): r within 2 ulp, outputs within 4e-7
// relative of the terms' size (the sums' order moves r and c by an ulp at
// most; the element-wise parts use the same operations), on ragged lengths;
// the backward accumulates into dx.
static void test_rmsnorm_rows(qt_rng *rng) {
    static const int lens[] = {1, 5, 8, 15, 16, 17, 33, 100, 2048};
    const qt_kernel_table *ref = NULL;
    for (int ti = 0; ti < g_n_tables; ti++)
        if (!strcmp(g_tables[ti]->isa, "ref")) ref = g_tables[ti];
    if (!ref) {
        printf("  rmsnorm rows: no ref table, not compared\n");
        return;
    }
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        int bad = 0;
        for (size_t li = 0; li < QT_ARRAY_LEN(lens); li++) {
            int n = lens[li];
            float *x = randn(rng, (size_t)n, 2.0f), *w = randn(rng, (size_t)n, 1.0f), *d = randn(rng, (size_t)n, 1.0f);
            float *y0 = qt_malloc(sizeof(float) * (size_t)n), *y1 = qt_malloc(sizeof(float) * (size_t)n);
            float *dx0 = randn(rng, (size_t)n, 1.0f), *dx1 = qt_malloc(sizeof(float) * (size_t)n);
            memcpy(dx1, dx0, sizeof(float) * (size_t)n);
            float r0 = ref->rmsnorm_f32(n, x, w, 1e-5f, y0), r1 = kt->rmsnorm_f32(n, x, w, 1e-5f, y1);
            bad += !(fabsf(r1 - r0) <= 2 * FLT_EPSILON * r0);
            for (int i = 0; i < n; i++) bad += !(fabsf(y1[i] - y0[i]) <= 4e-7f * fabsf(x[i] * r0 * w[i]) + 1e-30f);
            ref->rmsnorm_backward_f32(n, d, x, w, r0, dx0);
            kt->rmsnorm_backward_f32(n, d, x, w, r0, dx1);
            for (int i = 0; i < n; i++) {
                float mag = fabsf(dx0[i]) + fabsf(d[i] * w[i] * r0) + fabsf(x[i]) * r0;
                bad += !(fabsf(dx1[i] - dx0[i]) <= 4e-7f * mag);
            }
            qt_free(x); qt_free(w); qt_free(d); qt_free(y0); qt_free(y1); qt_free(dx0); qt_free(dx1);
        }
        CHECK(bad == 0, "%s rmsnorm rows: %d values off the ref table's", kt->isa, bad);
        printf("  %s rmsnorm_f32, rmsnorm_backward_f32 %s\n", kt->isa, bad ? "FAILED" : "ok");
    }
}

// The element-wise math helpers (kernels.h: exp_f32, max_f32, exp_sum_f32,
// swiglu_f32, swiglu_backward_f32) of every table against double-precision
// definitions. exp over a sweep of [-110, 95] (every 2^-9 plus random
// points), the subnormal and overflow edges, +-inf, NaN and huge negatives;
// ragged lengths must give the same bits as the same elements inside a longer
// array. libm's expf (ref) meets the same bound.
#define VM_SWIGLU_TOL 6e-7   // exp's error + ~4 float roundings, relative to the terms' size
#define VM_SWIGLU_ABS 1e-30  // g < -88.7: exp(-g) overflows, silu(g) ~ g e^g < 1e-36 comes out 0
static void test_vecmath(qt_rng *rng) {
    enum { N_GRID = (110 + 95) * 512, N_RAND = 20000, N = N_GRID + N_RAND };
    float *x = qt_malloc(N * sizeof(float)), *y = qt_malloc(N * sizeof(float)), *y2 = qt_malloc(64 * sizeof(float));
    for (int i = 0; i < N_GRID; i++) x[i] = -110.0f + (float)i / 512.0f;
    for (int i = N_GRID; i < N; i++) x[i] = -104.0f + 193.0f * qt_rng_f32(rng);
    static const float special_x[] = {-INFINITY, -FLT_MAX, -1e30f, -1000.0f, -104.5f, -103.97f, -87.34f, -87.3365f,
                                      -0.0f, 0.0f, 1e-30f, 88.72283f, 88.7229f, 89.0f, 1e30f, FLT_MAX, INFINITY};
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        kt->exp_f32(N, x, y);
        double worst = 0;
        int bad = 0;
        for (int i = 0; i < N; i++) {
            double e = exp((double)x[i]);
            if (e > FLT_MAX) bad += !(isinf(y[i]) && y[i] > 0);
            else if (e >= FLT_MIN) worst = fmax(worst, fabs(y[i] - e) / e);
            else bad += !(fabs(y[i] - e) <= 0x1p-149);   // subnormal: within one step
        }
        printf("  %s exp_f32: worst relative error %.3g over %d points (bound %.3g)\n", kt->isa, worst, N,
               QT_EXP_MAX_REL_ERR);
        CHECK(worst <= QT_EXP_MAX_REL_ERR && bad == 0, "%s exp_f32 worst rel %.3g, %d bad", kt->isa, worst, bad);
        int ns = (int)QT_ARRAY_LEN(special_x);
        float sy[32];
        kt->exp_f32(ns, special_x, sy);
        bad = 0;
        for (int i = 0; i < ns; i++) {
            double e = exp((double)special_x[i]);
            bool ok = e > FLT_MAX ? isinf(sy[i]) && sy[i] > 0 : e < 0x1p-150 ? sy[i] == 0 : fabs(sy[i] - e) <= QT_EXP_MAX_REL_ERR * e + 0x1p-149;
            if (!ok) fprintf(stderr, "  %s exp(%g) = %g, want %g\n", kt->isa, special_x[i], sy[i], e);
            bad += !ok;
        }
        float nan_in = NAN, nan_out = 0;
        kt->exp_f32(1, &nan_in, &nan_out);
        CHECK(bad == 0 && isnan(nan_out) && sy[8] == 1.0f && sy[9] == 1.0f, "%s exp_f32 special values", kt->isa);
        // ragged lengths and offsets: same bits as inside the long array; in place works
        bad = 0;
        for (int n = 0; n <= 37; n++) {
            int off = 1000 + 13 * n;
            kt->exp_f32(n, x + off, y2);
            for (int i = 0; i < n; i++) bad += memcmp(&y2[i], &y[off + i], sizeof(float)) != 0;
            memcpy(y2, x + off, sizeof(float) * n);
            kt->exp_f32(n, y2, y2);
            for (int i = 0; i < n; i++) bad += memcmp(&y2[i], &y[off + i], sizeof(float)) != 0;
        }
        CHECK(bad == 0, "%s exp_f32 on ragged lengths differs from the long array", kt->isa);

        // max_f32, exp_sum_f32 (softmax form) on rows of ragged lengths
        static const int rows[] = {0, 1, 3, 7, 8, 9, 16, 31, 100, 1000, 32003};
        for (size_t k = 0; k < QT_ARRAY_LEN(rows); k++) {
            int n = rows[k];
            float *s = randn(rng, n + 1, 4), *e = qt_malloc((n + 1) * sizeof(float));
            float mx = -INFINITY;
            for (int i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
            CHECK(kt->max_f32(n, s) == mx, "%s max_f32 n=%d", kt->isa, n);
            const float scale = 0.125f, shift = scale * mx;
            double sum = kt->exp_sum_f32(n, s, scale, shift, e), want = 0;
            bad = 0;
            for (int i = 0; i < n; i++) {
                double ei = exp((double)(s[i] * scale - shift));   // the argument is rounded to float by every table
                want += ei;
                bad += !(fabs(e[i] - ei) <= QT_EXP_MAX_REL_ERR * ei + 0x1p-149);
            }
            CHECK(bad == 0 && fabs(sum - want) <= QT_EXP_MAX_REL_ERR * want, "%s exp_sum_f32 n=%d: %d bad, sum %.9g vs %.9g",
                  kt->isa, n, bad, sum, want);
            CHECK(kt->exp_sum_f32(n, s, scale, shift, NULL) == sum, "%s exp_sum_f32 n=%d without output", kt->isa, n);
            double sum2 = kt->exp_sum_f32(n, s, scale, shift, s);   // in place
            CHECK(sum2 == sum && memcmp(s, e, sizeof(float) * n) == 0, "%s exp_sum_f32 n=%d in place", kt->isa, n);
            qt_free(s); qt_free(e);
        }

        // SwiGLU forward and backward, gate from -100 to 100 (exp(-g) overflows at the low end)
        static const int sn[] = {1, 5, 8, 13, 64, 1001};
        for (size_t k = 0; k < QT_ARRAY_LEN(sn); k++) {
            int n = sn[k];
            float *g = randn(rng, n, 4), *u = randn(rng, n, 1), *d = randn(rng, n, 1), *o = qt_malloc(n * sizeof(float));
            float *dg = randn(rng, n, 1), *du = randn(rng, n, 1), *dg0 = qt_malloc(n * sizeof(float)),
                  *du0 = qt_malloc(n * sizeof(float));
            g[0] = -100.0f;
            if (n > 1) g[1] = 100.0f;
            if (n > 2) g[2] = -90.0f;
            memcpy(dg0, dg, n * sizeof(float));
            memcpy(du0, du, n * sizeof(float));
            kt->swiglu_f32(n, g, u, o);
            kt->swiglu_backward_f32(n, d, g, u, dg, du);
            int bad_f = 0, bad_b = 0;
            for (int i = 0; i < n; i++) {
                double gi = g[i], sig = 1.0 / (1.0 + exp(-gi)), silu = gi * sig;
                double want = silu * u[i];
                bad_f += !(fabs(o[i] - want) <= VM_SWIGLU_TOL * fabs(want) + VM_SWIGLU_ABS);
                double c = 1.0 + gi * (1.0 - sig), tg = (double)d[i] * u[i] * sig * c;
                // 1 - sig is rounded near 1 (absolute error ~6e-8), then multiplied by g
                double size_g = fabs((double)d[i] * u[i] * sig) * (1.0 + fabs(gi * (1.0 - sig)) + fabs(gi) * 0.25);
                bad_b += !(fabs(dg[i] - (dg0[i] + tg)) <= VM_SWIGLU_TOL * size_g + 6e-8 * (fabs(dg0[i]) + fabs(tg)) + VM_SWIGLU_ABS);
                double tu = (double)d[i] * silu;
                bad_b += !(fabs(du[i] - (du0[i] + tu)) <= VM_SWIGLU_TOL * fabs(tu) + 6e-8 * (fabs(du0[i]) + fabs(tu)) + VM_SWIGLU_ABS);
            }
            CHECK(bad_f == 0, "%s swiglu_f32 n=%d: %d bad", kt->isa, n, bad_f);
            CHECK(bad_b == 0, "%s swiglu_backward_f32 n=%d: %d bad", kt->isa, n, bad_b);
            // one side at a time gives the same bits; out may alias gate
            float *e1 = qt_malloc(n * sizeof(float));
            memcpy(e1, dg0, n * sizeof(float));
            kt->swiglu_backward_f32(n, d, g, u, e1, NULL);
            CHECK(memcmp(e1, dg, n * sizeof(float)) == 0, "%s swiglu_backward_f32 n=%d dgate alone", kt->isa, n);
            memcpy(e1, du0, n * sizeof(float));
            kt->swiglu_backward_f32(n, d, g, u, NULL, e1);
            CHECK(memcmp(e1, du, n * sizeof(float)) == 0, "%s swiglu_backward_f32 n=%d dup alone", kt->isa, n);
            memcpy(e1, g, n * sizeof(float));
            kt->swiglu_f32(n, e1, u, e1);
            CHECK(memcmp(e1, o, n * sizeof(float)) == 0, "%s swiglu_f32 n=%d in place", kt->isa, n);
            qt_free(e1);
            qt_free(g); qt_free(u); qt_free(d); qt_free(o); qt_free(dg); qt_free(du); qt_free(dg0); qt_free(du0);
        }
    }
    // vecmath-avx512.c is vecmath-avx2.c 16 lanes wide: the same bits per element
    const qt_kernel_table *t2 = NULL, *t5 = NULL;
    for (int ti = 0; ti < g_n_tables; ti++) {
        if (!strcmp(g_tables[ti]->isa, "avx2")) t2 = g_tables[ti];
        if (!strcmp(g_tables[ti]->isa, "avx512")) t5 = g_tables[ti];
    }
    if (t2 && t5) {
        enum { M = 1003 };   // a ragged tail for both widths
        float *x5 = qt_malloc(N * sizeof(float)), *g = randn(rng, M, 6.0f), *u = randn(rng, M, 1.0f), *d = randn(rng, M, 1.0f);
        float *o[2], *dg[2], *du[2];
        t2->exp_f32(N, x, y);
        t5->exp_f32(N, x, x5);
        int same = memcmp(y, x5, N * sizeof(float)) == 0;
        for (int k = 0; k < 2; k++) {
            const qt_kernel_table *kt = k ? t5 : t2;
            o[k] = qt_malloc(M * sizeof(float));
            dg[k] = qt_calloc(M, sizeof(float));
            du[k] = qt_calloc(M, sizeof(float));
            kt->swiglu_f32(M, g, u, o[k]);
            kt->swiglu_backward_f32(M, d, g, u, dg[k], du[k]);
        }
        same &= !memcmp(o[0], o[1], M * sizeof(float)) && !memcmp(dg[0], dg[1], M * sizeof(float)) &&
                !memcmp(du[0], du[1], M * sizeof(float));
        CHECK(same, "avx512 exp_f32 / swiglu / swiglu_backward bit-identical to avx2's");
        for (int k = 0; k < 2; k++) { qt_free(o[k]); qt_free(dg[k]); qt_free(du[k]); }
        qt_free(x5); qt_free(g); qt_free(u); qt_free(d);
    } else {
        printf("  vecmath avx512 vs avx2 bits: not tested (needs both tables here)\n");
    }
    qt_free(x); qt_free(y); qt_free(y2);
}

int main(void) {
    test_config_from_env();
    // every table: tested here, or why not (never a silent pass)
    printf("kernel tables:");
    for (int i = 0; i < QT_ISA_COUNT; i++) {
        const char *why = qt_isa_unavailable((qt_isa)i);
        if (why) { printf(" %s (not tested: %s)", qt_isa_name((qt_isa)i), why); continue; }
        g_tables[g_n_tables++] = qt_kernels_for((qt_isa)i);
        printf(" %s", qt_isa_name((qt_isa)i));
    }
    printf("; automatic choice: %s\n", qt_kernels()->isa);
    CHECK(qt_kernels_runnable(qt_kernels()), "automatic table runs here");
    CHECK(!strcmp(qt_kernels()->isa, g_tables[g_n_tables - 1]->isa) || getenv("QT_ISA"),
          "automatic choice is the best runnable table");
    qt_kernels_set(qt_kernels_ref());
    CHECK(qt_kernels() == qt_kernels_ref(), "qt_kernels_set");
    qt_kernels_set(NULL);
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        CHECK(kt->f32.gemm_acc && kt->f32.gemm_acc_w && kt->f32.gemm_xwt && kt->gemm_acc_f32 == kt->f32.gemm_acc,
              "%s: f32 ops complete", kt->isa);
        CHECK(!kt->bf16.gemm_acc == !kt->bf16.gemm_acc_w && !kt->bf16.gemm_acc == !kt->bf16.gemm_xwt,
              "%s: bf16 ops all or none", kt->isa);
        printf("  %s: bf16 ops %s\n", kt->isa,
               kt->bf16.gemm_acc ? "tested" : "not in this table (QT_PREC_BF16 runs as F32 on it)");
    }

#if defined(__aarch64__)
    // neon's int8 prefill tiles: SMMLA where HWCAP2 says I8MM (qemu -cpu max),
    // else SDOT (make neon-test runs this binary both ways)
    printf("  neon: int8 gemm tiles %s\n", qt_cpu()->i8mm ? "SMMLA (I8MM) tested" : "SDOT tested (no I8MM on this CPU)");
#endif
    for (int n = 1; n <= 4; n++) g_pools[n] = qt_pool_init(n);
    test_pool();

    qt_rng rng;
    qt_rng_seed(&rng, 1234);
    test_matmul_types(&rng);
    test_quant_extremes(&rng);
    test_gemv(&rng);
    test_gemm_small(&rng);
    test_prefetch_twins(&rng);
    test_gemm_xwt(&rng);
    test_precisions(&rng);
    test_matmul_multi(&rng);
    test_matmul_t(&rng);
    test_float_helpers(&rng);
    test_gemm_acc(&rng);
    test_vecmath(&rng);
    test_softmax_grad(&rng);
    test_rmsnorm_rows(&rng);
    for (int ti = 0; ti < g_n_tables; ti++)
        printf("  %s: worst |y - y_ref| / sum|w*x| = %.3g (tolerance %.3g)\n", g_tables[ti]->isa, g_worst[ti], TOL_SAME);

    for (int n = 1; n <= 4; n++) qt_pool_free(g_pools[n]);
    TEST_END();
}
