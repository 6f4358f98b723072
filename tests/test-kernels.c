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
// then the gemv (T = 1) kernels on ragged row ranges, qt_matmul_t and the float helpers against double references,
// and the AVX2 packed gemm (gemm_acc_f32) on ragged shapes.
#include <stdatomic.h>
#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "quant/types.h"
#include "test.h"

// Under emulation (make neon-test runs this binary in qemu-user) the thread
// sweeps are slow: QT_TEST_MAX_THREADS and QT_TEST_POOL_RUNS shorten them.
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
};

static const qt_kernel_table *g_tables[4];
static int g_n_tables;
static qt_pool *g_pools[5];   // index = thread count, 1..4

static float *randn(qt_rng *r, size_t n, float scale) {
    float *v = qt_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = qt_rng_normal(r) * scale;
    return v;
}

// worst |fast - ref| / (scale) seen, per table, for the report
static double g_worst[4];
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
} problem;

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
    for (int r = 0; r < n_out; r++) {
        tt->from_float_ref(wf + (size_t)r * n_in, (char *)p->w + r * p->ws, n_in);
        tt->to_float((char *)p->w + r * p->ws, p->wd + (size_t)r * n_in, n_in);
    }
    qt_free(wf);
    p->x = randn(rng, (size_t)T * n_in, 1.0f);
    p->xq = qt_malloc((size_t)T * p->xs);
    p->xd = qt_malloc((size_t)T * n_in * sizeof(float));
    for (int t = 0; t < T; t++) {
        ref->type[p->vdt].from_float(p->x + (size_t)t * n_in, (char *)p->xq + t * p->xs, n_in);
        qt_type_traits_get(p->vdt)->to_float((char *)p->xq + t * p->xs, p->xd + (size_t)t * n_in, n_in);
    }
    p->absd = qt_malloc((size_t)T * n_out * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n_out; r++) {
            double a = 0;
            for (int k = 0; k < n_in; k++) a += fabs((double)p->wd[(size_t)r * n_in + k] * p->xd[(size_t)t * n_in + k]);
            p->absd[(size_t)t * n_out + r] = a;
        }
    p->yref = qt_malloc((size_t)T * n_out * sizeof(float));
}

static void problem_free(problem *p) {
    qt_free(p->w); qt_free(p->wd); qt_free(p->x); qt_free(p->xq); qt_free(p->xd);
    qt_free(p->absd); qt_free(p->yref);
}

// compares y (T, n_out) to p->yref; returns the number of mismatches
static int compare_same(const problem *p, const float *y, const char *what, const char *isa, int nth) {
    int bad = 0;
    for (int i = 0; i < p->T * p->n_out; i++) {
        double tol = TOL_SAME * p->absd[i] + 1e-30;
        double e = fabs((double)y[i] - p->yref[i]);
        int ti = 0;
        for (; ti < g_n_tables; ti++) if (!strcmp(g_tables[ti]->isa, isa)) break;
        if (ti < g_n_tables && p->absd[i] > 0) g_worst[ti] = QT_MAX(g_worst[ti], e / p->absd[i]);
        if (!(e <= tol)) {
            if (bad++ < 3 && g_n_details++ < MAX_DETAILS)
                fprintf(stderr, "  %s %s %s n_in=%d n_out=%d T=%d threads=%d [t=%d r=%d]: %.9g vs ref %.9g (tol %.3g)\n",
                        isa, qt_type_name(p->wt), what, p->n_in, p->n_out, p->T, nth, i / p->n_out,
                        i % p->n_out, y[i], p->yref[i], tol);
        }
    }
    return bad;
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

    // 2. ref matmul vs exact activations, within the activation-rounding bound
    qt_matmul_with(ref, NULL, p->yref, p->x, p->w, p->wt, n_in, n_out, T);
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
        if (tr->gemm) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            tr->gemm(n_in, p->w, p->ws, p->xq, p->xs, y, (size_t)n_out, n_out, T);
            CHECK(compare_same(p, y, "gemm", kt->isa, 1) == 0, "%s gemm %s n_in=%d n_out=%d T=%d", kt->isa,
                  qt_type_name(p->wt), n_in, n_out, T);
        }
        for (int nth = 1; nth <= g_max_threads; nth++) {
            for (int i = 0; i < T * n_out; i++) y[i] = NAN;
            qt_matmul_with(kt, g_pools[nth], y, p->x, p->w, p->wt, n_in, n_out, T);
            CHECK(compare_same(p, y, "matmul", kt->isa, nth) == 0, "%s matmul %s n_in=%d n_out=%d T=%d threads=%d",
                  kt->isa, qt_type_name(p->wt), n_in, n_out, T, nth);
        }
    }
    qt_free(y); qt_free(xq); qt_free(row); qt_free(row_ref);
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
// 8-row pass, every start row of a range (ragged per-thread ranges), rows
// longer than the kernel's activation chunk (n_in > 16384), a strided view,
// and qt_matmul at T = 1 on 1..4 threads; all against ref vec_dot, TOL_SAME.
static void test_gemv(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_K, QT_TYPE_Q6_K};
    static const int n_outs[] = {1, 3, 7, 8, 9, 15, 16, 17, 23, 33, 100, 131};
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        int blk = qt_type_traits_get(wt)->blck_size;
        const int n_ins[] = {blk, blk * 17, 16384 + 3 * 256 + blk};
        int f0 = test_n_fail, n_tested = 0;
        for (int ti = 0; ti < g_n_tables; ti++) {
            const qt_kernel_traits *tr = &g_tables[ti]->type[wt];
            if (!tr->gemv) continue;
            for (size_t ii = 0; ii < QT_ARRAY_LEN(n_ins); ii++)
                for (size_t oi = 0; oi < QT_ARRAY_LEN(n_outs); oi++) {
                    int n_in = n_ins[ii], n_out = n_outs[oi];
                    if (ii == 2 && n_out > 33) continue;   // long rows: a few counts suffice
                    problem p;
                    problem_init(&p, rng, wt, n_in, n_out, 1);
                    qt_matmul_with(qt_kernels_ref(), NULL, p.yref, p.x, p.w, wt, n_in, n_out, 1);
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
                        qt_matmul_with(g_tables[ti], g_pools[nth], y, p.x, p.w, wt, n_in, n_out, 1);
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

static void test_matmul_t(qt_rng *rng) {
    static const qt_type types[] = {QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0, QT_TYPE_Q4_0,
                                    QT_TYPE_Q4_K, QT_TYPE_Q6_K, QT_TYPE_Q5_K};
    static const int shapes[][3] = {{256, 5, 1}, {512, 67, 3}, {768, 13, 9}, {1536, 20, 4}};
    for (int ti = 0; ti < g_n_tables; ti++) {
        qt_kernels_set(g_tables[ti]);
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
                for (int nth = 1; nth <= g_max_threads; nth++) {
                    memcpy(dx, dx0, (size_t)T * n_in * sizeof(float));
                    qt_matmul_t(g_pools[nth], dx, dy, w, wt, n_in, n_out, T);
                    int bad = 0;
                    for (int t = 0; t < T; t++)
                        for (int k = 0; k < n_in; k++) {
                            double d = dx0[(size_t)t * n_in + k], a = fabs(d);
                            for (int r = 0; r < n_out; r++) {
                                double v = (double)dy[(size_t)t * n_out + r] * wd[(size_t)r * n_in + k];
                                d += v;
                                a += fabs(v);
                            }
                            if (!(fabs(dx[(size_t)t * n_in + k] - d) <= TOL_SAME * a) && bad++ < 3 && g_n_details++ < MAX_DETAILS)
                                fprintf(stderr, "  matmul_t %s %s [%d,%d]: %.9g vs %.9g\n", g_tables[ti]->isa,
                                        qt_type_name(wt), t, k, dx[(size_t)t * n_in + k], d);
                        }
                    CHECK(bad == 0, "%s matmul_t %s n_in=%d n_out=%d T=%d threads=%d", g_tables[ti]->isa,
                          qt_type_name(wt), n_in, n_out, T, nth);
                }
                // qt_get_row: the table's dequantization of one row
                float *row = qt_malloc((size_t)n_in * sizeof(float));
                qt_get_row(row, w, wt, n_in, n_out - 1);
                CHECK(memcmp(row, wd + (size_t)(n_out - 1) * n_in, (size_t)n_in * sizeof(float)) == 0,
                      "%s get_row %s", g_tables[ti]->isa, qt_type_name(wt));
                qt_free(row); qt_free(wf); qt_free(w); qt_free(wd); qt_free(dy); qt_free(dx0); qt_free(dx);
            }
        }
    }
    qt_kernels_set(NULL);
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

static void test_gemm_acc(qt_rng *rng) {
    // M, N, K: ragged against the AVX2 kernel's 6 x 16 micro-tile and its
    // (96 x 256) A and (256 x 1024) B blocks, so every edge path runs
    static const int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {4, 16, 64}, {9, 40, 33}, {5, 259, 70},
                                    {6, 16, 256}, {103, 530, 261}, {97, 15, 520}, {12, 1030, 7}};
    for (int ti = 0; ti < g_n_tables; ti++) {
        const qt_kernel_table *kt = g_tables[ti];
        for (size_t si = 0; si < QT_ARRAY_LEN(shapes); si++) {
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            int lda = K + 3, ldb = N + 5, ldc = N + 1;   // leading dimensions larger than the extents
            float *A = randn(rng, (size_t)M * lda, 1), *B = randn(rng, (size_t)K * ldb, 1);
            float *C = randn(rng, (size_t)M * ldc, 1), *C0 = qt_malloc((size_t)M * ldc * sizeof(float));
            memcpy(C0, C, (size_t)M * ldc * sizeof(float));
            kt->gemm_acc_f32(M, N, K, A, lda, B, ldb, C, ldc);
            int bad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < ldc; j++) {
                    double d = C0[(size_t)i * ldc + j], a = fabs(d);
                    if (j < N)
                        for (int k = 0; k < K; k++) {
                            double v = (double)A[(size_t)i * lda + k] * B[(size_t)k * ldb + j];
                            d += v;
                            a += fabs(v);
                        }
                    bad += !(fabs(C[(size_t)i * ldc + j] - d) <= TOL_SAME * a);   // j >= N: untouched
                }
            CHECK(bad == 0, "%s gemm_acc_f32 M=%d N=%d K=%d: %d wrong", kt->isa, M, N, K, bad);
            qt_free(A); qt_free(B); qt_free(C); qt_free(C0);
        }
    }
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
    CHECK(qt_pool_wbuf(NULL, 64) != NULL, "NULL pool wbuf");
}

int main(void) {
    test_config_from_env();
    const qt_kernel_table *all[] = {qt_kernels_ref(), qt_kernels_avx2(), qt_kernels_avx512(), qt_kernels_neon()};
    const char *names[] = {"ref", "avx2", "avx512", "neon"};
    printf("kernel tables:");
    for (int i = 0; i < 4; i++) {
        if (!all[i]) { printf(" %s(not built)", names[i]); continue; }
        if (!qt_kernels_runnable(all[i])) { printf(" %s(not on this CPU)", names[i]); continue; }
        g_tables[g_n_tables++] = all[i];
        printf(" %s", names[i]);
    }
    printf("; automatic choice: %s\n", qt_kernels()->isa);
    CHECK(qt_kernels_runnable(qt_kernels()), "automatic table runs here");
    CHECK(!strcmp(qt_kernels()->isa, g_tables[g_n_tables - 1]->isa) || getenv("QT_ISA"),
          "automatic choice is the best runnable table");
    qt_kernels_set(qt_kernels_ref());
    CHECK(qt_kernels() == qt_kernels_ref(), "qt_kernels_set");
    qt_kernels_set(NULL);

    for (int n = 1; n <= 4; n++) g_pools[n] = qt_pool_init(n);
    test_pool();

    qt_rng rng;
    qt_rng_seed(&rng, 1234);
    test_matmul_types(&rng);
    test_gemv(&rng);
    test_matmul_t(&rng);
    test_float_helpers(&rng);
    test_gemm_acc(&rng);
    for (int ti = 0; ti < g_n_tables; ti++)
        printf("  %s: worst |y - y_ref| / sum|w*x| = %.3g (tolerance %.3g)\n", g_tables[ti]->isa, g_worst[ti], TOL_SAME);

    for (int n = 1; n <= 4; n++) qt_pool_free(g_pools[n]);
    TEST_END();
}
