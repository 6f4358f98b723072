// test-layers.c: every backward of src/backend/layers-train.c and
// layers-norm-act.c (LayerNorm, GELU, GeGLU) against central finite
// differences in double precision.
//
// The test has its own small double-precision forwards (rmsnorm, rope,
// causal GQA attention, swiglu, cross-entropy). For a random upstream
// gradient dout, loss = sum(dout * f(inputs)), so d loss / d input is what
// the backward computes; the finite differences perturb each input of the
// double forward by +-FD_H. Sizes are awkward on purpose (T = 1, 3, 7, 17; C
// not a power of two; GQA with NH=4, NKV=2 and NH=NKV; HS = 8, 16; both rope
// types, with and without freq_factors) and every pooled function runs with a
// NULL pool and with 2 and 3 threads. Also checked: the training attention
// forward against a naive double attention, a larger attention case (bigger
// matmul tiles) against a naive double backward, cross-entropy losses against
// a double log-sum-exp, and the accumulate (+=) contract (a second call doubles
// the gradients).
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"
#include "backend/layers-norm-act.h"
#include "backend/layers-train.h"
#include "test.h"

// Float32 analytic gradients against double finite differences: the float
// rounding of a few O(T + C)-term sums is ~1e-6 relative, the O(FD_H^2)
// truncation of the central difference ~1e-9; a wrong term is O(0.01..1).
#define FD_H 1e-4
#define FD_REL 1e-3
#define FD_ABS 1e-4
// Float32 forward vs double forward (same inputs): a few float roundings.
#define FWD_REL 1e-5
#define FWD_ABS 1e-6
// matmul_dw (float sums of up to 70 products) against sum |terms|
#define DW_REL 1e-6
// A second call of a backward must add the same amount again (the same float
// computation repeated, so only the final addition's rounding differs).
#define ACC_REL 1e-6
#define ACC_ABS 1e-7

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double urand(void) {   // [0, 1)
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

static void fill(float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
}

static double *to_double(const float *x, size_t n) {
    double *d = qt_malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static float *falloc(size_t n) { return qt_calloc(n ? n : 1, sizeof(float)); }

// Compares got (float) with want (double) elementwise: |got - want| <= abs + rel*|want|.
// Returns true if all pass; prints the worst violation otherwise.
static bool close_enough(const char *what, const float *got, const double *want, size_t n, double rel, double abs) {
    size_t worst = 0;
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        double excess = err - (abs + rel * fabs(want[i]));
        if (!(excess <= worst_excess)) {   // NaN-safe: a NaN error becomes the worst
            worst_excess = isnan(excess) ? INFINITY : excess;
            worst = i;
        }
    }
    bool ok = n == 0 || worst_excess <= 0;
    if (!ok)
        fprintf(stderr, "  %s: worst at %zu: got %.9g want %.9g (|diff| %.3g)\n", what, worst, got[worst], want[worst],
                fabs((double)got[worst] - want[worst]));
    return ok;
}

typedef double (*loss_fn)(void *ctx);

// Central differences of loss(ctx) w.r.t. every element of x (perturbed in place).
static void fd_grad(double *grad, double *x, size_t n, loss_fn loss, void *ctx) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double lp = loss(ctx);
        x[i] = x0 - FD_H;
        double lm = loss(ctx);
        x[i] = x0;
        grad[i] = (lp - lm) / (2 * FD_H);
    }
}

// got2 (after a second accumulating call) must be 2 * got1.
static bool doubled(const char *what, const float *got2, const float *got1, size_t n) {
    double *want = qt_malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) want[i] = 2.0 * got1[i];
    bool ok = close_enough(what, got2, want, n, ACC_REL, ACC_ABS);
    qt_free(want);
    return ok;
}

// inference attention vs double: float scores and probabilities over <= 200 keys
#define ATTN_INFER_TOL 2e-5

static qt_pool *g_pools[3];
static const char *g_pool_names[3] = { "no pool", "2 threads", "3 threads" };

// ---------------------------------------------------------------- rmsnorm

typedef struct {
    double *x, *w, *dout;
    int T, C;
    double eps;
} rms_ctx;

static void rmsnorm_d(double *y, const double *x, const double *w, int T, int C, double eps) {
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += x[t * C + i] * x[t * C + i];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) y[t * C + i] = x[t * C + i] * r * w[i];
    }
}

static double rms_loss(void *p) {
    rms_ctx *c = p;
    size_t n = (size_t)c->T * c->C;
    double *y = qt_malloc(sizeof(double) * n), l = 0;
    rmsnorm_d(y, c->x, c->w, c->T, c->C, c->eps);
    for (size_t i = 0; i < n; i++) l += c->dout[i] * y[i];
    qt_free(y);
    return l;
}

static void test_rmsnorm(void) {
    static const int Ts[] = { 1, 3, 7, 17 }, Cs[] = { 5, 16, 33 };
    const float eps = 1e-5f;
    for (size_t it = 0; it < QT_ARRAY_LEN(Ts); it++)
        for (size_t ic = 0; ic < QT_ARRAY_LEN(Cs); ic++) {
            int T = Ts[it], C = Cs[ic];
            size_t n = (size_t)T * C;
            float *x = falloc(n), *w = falloc(C), *dout = falloc(n), *y = falloc(n), *rstd = falloc(T);
            float *dx = falloc(n), *dw = falloc(C), *dx2 = falloc(n);
            fill(x, n, -2, 2);
            fill(w, C, 0.5, 1.5);
            fill(dout, n, -1, 1);
            qt_rmsnorm_forward(qt_kernels(), y, rstd, x, w, T, C, eps);
            rms_ctx c = { to_double(x, n), to_double(w, C), to_double(dout, n), T, C, eps };
            double *yd = qt_malloc(sizeof(double) * n), *gx = qt_malloc(sizeof(double) * n),
                   *gw = qt_malloc(sizeof(double) * C);
            rmsnorm_d(yd, c.x, c.w, T, C, c.eps);
            CHECK(close_enough("rmsnorm forward", y, yd, n, FWD_REL, FWD_ABS), "T=%d C=%d", T, C);
            fd_grad(gx, c.x, n, rms_loss, &c);
            fd_grad(gw, c.w, C, rms_loss, &c);

            qt_rmsnorm_backward(qt_kernels(), dx, dw, dout, x, w, rstd, T, C);
            CHECK(close_enough("rmsnorm dx", dx, gx, n, FD_REL, FD_ABS), "T=%d C=%d", T, C);
            CHECK(close_enough("rmsnorm dw", dw, gw, C, FD_REL, FD_ABS), "T=%d C=%d", T, C);
            // frozen weight: dw NULL gives the same dx
            qt_rmsnorm_backward(qt_kernels(), dx2, NULL, dout, x, w, rstd, T, C);
            CHECK(memcmp(dx, dx2, sizeof(float) * n) == 0, "rmsnorm dx with dw NULL differs, T=%d C=%d", T, C);
            // accumulate: a second call doubles
            float *dx1 = falloc(n), *dw1 = falloc(C);
            memcpy(dx1, dx, sizeof(float) * n);
            memcpy(dw1, dw, sizeof(float) * C);
            qt_rmsnorm_backward(qt_kernels(), dx, dw, dout, x, w, rstd, T, C);
            CHECK(doubled("rmsnorm dx twice", dx, dx1, n) && doubled("rmsnorm dw twice", dw, dw1, C),
                  "rmsnorm accumulate T=%d C=%d", T, C);
            qt_free(dx1); qt_free(dw1);
            qt_free(yd); qt_free(gx); qt_free(gw);
            qt_free(c.x); qt_free(c.w); qt_free(c.dout);
            qt_free(x); qt_free(w); qt_free(dout); qt_free(y); qt_free(rstd); qt_free(dx); qt_free(dw); qt_free(dx2);
        }
}

// ---------------------------------------------------------------- rope

typedef struct {
    double *x, *cs, *dout;
    int T, NHX, HS;
    qt_rope_type type;
} rope_ctx;

static void rope_d(double *y, const double *x, const double *cs, int T, int NHX, int HS, qt_rope_type type) {
    int half = HS / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NHX; h++) {
            const double *v = x + ((size_t)t * NHX + h) * HS;
            double *o = y + ((size_t)t * NHX + h) * HS;
            for (int i = 0; i < half; i++) {
                double co = cs[((size_t)t * half + i) * 2], si = cs[((size_t)t * half + i) * 2 + 1];
                int i0 = type == QT_ROPE_NEOX ? i : 2 * i, i1 = type == QT_ROPE_NEOX ? i + half : 2 * i + 1;
                o[i0] = v[i0] * co - v[i1] * si;
                o[i1] = v[i0] * si + v[i1] * co;
            }
        }
}

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->NHX * c->HS;
    double *y = qt_malloc(sizeof(double) * n), l = 0;
    rope_d(y, c->x, c->cs, c->T, c->NHX, c->HS, c->type);
    for (size_t i = 0; i < n; i++) l += c->dout[i] * y[i];
    qt_free(y);
    return l;
}

static void test_rope(void) {
    static const int Ts[] = { 1, 3, 7, 17 }, NHXs[] = { 1, 3 }, HSs[] = { 8, 16 };
    static const qt_rope_type types[] = { QT_ROPE_NORM, QT_ROPE_NEOX };
    for (size_t it = 0; it < QT_ARRAY_LEN(Ts); it++)
        for (size_t ih = 0; ih < QT_ARRAY_LEN(NHXs); ih++)
            for (size_t is = 0; is < QT_ARRAY_LEN(HSs); is++)
                for (size_t ity = 0; ity < 2; ity++)
                    for (int use_ff = 0; use_ff < 2; use_ff++) {
                        int T = Ts[it], NHX = NHXs[ih], HS = HSs[is];
                        qt_rope_type type = types[ity];
                        size_t n = (size_t)T * NHX * HS, ncs = (size_t)T * HS;
                        int *pos = qt_malloc(sizeof(int) * T);
                        for (int t = 0; t < T; t++) pos[t] = 5 + 3 * t;
                        float ff[8], *cs = falloc(ncs), *x = falloc(n), *dout = falloc(n), *dx = falloc(n);
                        fill(ff, (size_t)HS / 2, 1, 4);
                        qt_rope_cache(cs, pos, T, HS, 10000.0f, use_ff ? ff : NULL);
                        fill(x, n, -1, 1);
                        fill(dout, n, -1, 1);
                        rope_ctx c = { to_double(x, n), to_double(cs, ncs), to_double(dout, n), T, NHX, HS, type };
                        double *g = qt_malloc(sizeof(double) * n);
                        fd_grad(g, c.x, n, rope_loss, &c);
                        memcpy(dx, dout, sizeof(float) * n);
                        qt_rope_backward(dx, cs, T, NHX, HS, type);
                        CHECK(close_enough("rope dx", dx, g, n, FD_REL, FD_ABS), "T=%d NHX=%d HS=%d type=%d ff=%d",
                              T, NHX, HS, (int)type, use_ff);
                        // backward undoes forward (rotations are orthogonal)
                        float *xr = falloc(n);
                        memcpy(xr, x, sizeof(float) * n);
                        qt_rope_forward(xr, cs, T, NHX, HS, type);
                        qt_rope_backward(xr, cs, T, NHX, HS, type);
                        double *xd = to_double(x, n);
                        CHECK(close_enough("rope inverse", xr, xd, n, FWD_REL, FWD_ABS), "T=%d NHX=%d HS=%d type=%d",
                              T, NHX, HS, (int)type);
                        qt_free(xd); qt_free(xr);
                        qt_free(g); qt_free(c.x); qt_free(c.cs); qt_free(c.dout);
                        qt_free(pos); qt_free(cs); qt_free(x); qt_free(dout); qt_free(dx);
                    }
}

// ---------------------------------------------------------------- attention

typedef struct {
    double *q, *k, *v, *dout;
    int T, NH, NKV, HS;
} attn_ctx;

// out (T, NH*HS), att (NH, T, T) (may be NULL)
static void attention_d(double *out, double *att, const double *q, const double *k, const double *v, int T, int NH,
                        int NKV, int HS) {
    int G = NH / NKV;
    double scale = 1.0 / sqrt((double)HS);
    double *p = qt_malloc(sizeof(double) * T);
    for (int h = 0; h < NH; h++) {
        int kh = h / G;
        for (int t = 0; t < T; t++) {
            const double *qt = q + ((size_t)t * NH + h) * HS;
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                const double *ks = k + ((size_t)s * NKV + kh) * HS;
                double d = 0;
                for (int i = 0; i < HS; i++) d += qt[i] * ks[i];
                p[s] = d * scale;
                mx = p[s] > mx ? p[s] : mx;
            }
            for (int s = 0; s <= t; s++) sum += p[s] = exp(p[s] - mx);
            double *o = out + ((size_t)t * NH + h) * HS;
            for (int i = 0; i < HS; i++) o[i] = 0;
            for (int s = 0; s <= t; s++) {
                p[s] /= sum;
                const double *vs = v + ((size_t)s * NKV + kh) * HS;
                for (int i = 0; i < HS; i++) o[i] += p[s] * vs[i];
            }
            if (att)
                for (int s = 0; s < T; s++) att[((size_t)h * T + t) * T + s] = s <= t ? p[s] : 0;
        }
    }
    qt_free(p);
}

// Naive double backward (checked against finite differences below, then used
// as the reference for a case too big for finite differences). Writes (=).
static void attention_backward_d(double *dq, double *dk, double *dv, const double *dout, const double *q,
                                 const double *k, const double *v, int T, int NH, int NKV, int HS) {
    int G = NH / NKV;
    double scale = 1.0 / sqrt((double)HS);
    size_t nq = (size_t)T * NH * HS, nkv = (size_t)T * NKV * HS;
    double *att = qt_malloc(sizeof(double) * NH * T * T), *out = qt_malloc(sizeof(double) * nq);
    double *dp = qt_malloc(sizeof(double) * T);
    attention_d(out, att, q, k, v, T, NH, NKV, HS);
    memset(dq, 0, sizeof(double) * nq);
    memset(dk, 0, sizeof(double) * nkv);
    memset(dv, 0, sizeof(double) * nkv);
    for (int h = 0; h < NH; h++) {
        int kh = h / G;
        for (int t = 0; t < T; t++) {
            const double *P = att + ((size_t)h * T + t) * T, *dO = dout + ((size_t)t * NH + h) * HS;
            const double *qt = q + ((size_t)t * NH + h) * HS;
            double dot = 0;
            for (int s = 0; s <= t; s++) {
                const double *vs = v + ((size_t)s * NKV + kh) * HS;
                double *dvs = dv + ((size_t)s * NKV + kh) * HS;
                dp[s] = 0;
                for (int i = 0; i < HS; i++) {
                    dp[s] += dO[i] * vs[i];
                    dvs[i] += P[s] * dO[i];
                }
                dot += P[s] * dp[s];
            }
            for (int s = 0; s <= t; s++) {
                double ds = P[s] * (dp[s] - dot) * scale;
                const double *ks = k + ((size_t)s * NKV + kh) * HS;
                double *dks = dk + ((size_t)s * NKV + kh) * HS, *dqt = dq + ((size_t)t * NH + h) * HS;
                for (int i = 0; i < HS; i++) {
                    dqt[i] += ds * ks[i];
                    dks[i] += ds * qt[i];
                }
            }
        }
    }
    qt_free(att); qt_free(out); qt_free(dp);
}

static double attn_loss(void *p) {
    attn_ctx *c = p;
    size_t n = (size_t)c->T * c->NH * c->HS;
    double *y = qt_malloc(sizeof(double) * n), l = 0;
    attention_d(y, NULL, c->q, c->k, c->v, c->T, c->NH, c->NKV, c->HS);
    for (size_t i = 0; i < n; i++) l += c->dout[i] * y[i];
    qt_free(y);
    return l;
}

// One attention shape: forward vs double, backward vs FD (use_fd) or vs the
// naive double backward, for every pool; the accumulate contract; NULL outputs.
static void attention_case(int T, int NH, int NKV, int HS, bool use_fd) {
    size_t nq = (size_t)T * NH * HS, nkv = (size_t)T * NKV * HS, natt = (size_t)NH * T * T;
    float *q = falloc(nq), *k = falloc(nkv), *v = falloc(nkv), *dout = falloc(nq);
    fill(q, nq, -2, 2);   // big enough that the softmax is far from uniform
    fill(k, nkv, -2, 2);
    fill(v, nkv, -1, 1);
    fill(dout, nq, -1, 1);
    attn_ctx c = { to_double(q, nq), to_double(k, nkv), to_double(v, nkv), to_double(dout, nq), T, NH, NKV, HS };
    double *outd = qt_malloc(sizeof(double) * nq), *attd = qt_malloc(sizeof(double) * natt);
    attention_d(outd, attd, c.q, c.k, c.v, T, NH, NKV, HS);
    double *gq = qt_malloc(sizeof(double) * nq), *gk = qt_malloc(sizeof(double) * nkv),
           *gv = qt_malloc(sizeof(double) * nkv);
    if (use_fd) {
        fd_grad(gq, c.q, nq, attn_loss, &c);
        fd_grad(gk, c.k, nkv, attn_loss, &c);
        fd_grad(gv, c.v, nkv, attn_loss, &c);
        // the naive double backward must agree with the finite differences too
        double *bq = qt_malloc(sizeof(double) * nq), *bk = qt_malloc(sizeof(double) * nkv),
               *bv = qt_malloc(sizeof(double) * nkv);
        attention_backward_d(bq, bk, bv, c.dout, c.q, c.k, c.v, T, NH, NKV, HS);
        double worst = 0;
        for (size_t i = 0; i < nq; i++) worst = fmax(worst, fabs(bq[i] - gq[i]) - FD_ABS - FD_REL * fabs(gq[i]));
        for (size_t i = 0; i < nkv; i++) worst = fmax(worst, fabs(bk[i] - gk[i]) - FD_ABS - FD_REL * fabs(gk[i]));
        for (size_t i = 0; i < nkv; i++) worst = fmax(worst, fabs(bv[i] - gv[i]) - FD_ABS - FD_REL * fabs(gv[i]));
        CHECK(worst <= 0, "naive double attention backward vs FD: excess %g, T=%d NH=%d NKV=%d HS=%d", worst, T, NH,
              NKV, HS);
        qt_free(bq); qt_free(bk); qt_free(bv);
    } else {
        attention_backward_d(gq, gk, gv, c.dout, c.q, c.k, c.v, T, NH, NKV, HS);
    }
    // log-sum-exp of each (row, head) of the materialised scores, in double
    double *lsed = qt_malloc(sizeof(double) * (size_t)T * NH);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) {
            const double *qt = c.q + ((size_t)t * NH + h) * HS;
            double mx = -1e300, sum = 0, sc[T > 0 ? T : 1];
            for (int s = 0; s <= t; s++) {
                const double *ks = c.k + ((size_t)s * NKV + h / (NH / NKV)) * HS;
                double d = 0;
                for (int i = 0; i < HS; i++) d += qt[i] * ks[i];
                sc[s] = d / sqrt((double)HS);
                mx = fmax(mx, sc[s]);
            }
            for (int s = 0; s <= t; s++) sum += exp(sc[s] - mx);
            lsed[(size_t)t * NH + h] = mx + log(sum);
        }
    float *first_dq = falloc(nq);
    for (int ip = 0; ip < 3; ip++) {
        qt_pool *pool = g_pools[ip];
        const qt_kctx kcx = { .kt = qt_kernels(), .pool = pool };
        float *out = falloc(nq), *lse = falloc((size_t)T * NH);
        float *dq = falloc(nq), *dk = falloc(nkv), *dv = falloc(nkv);
        size_t ns = qt_attention_train_scratch(T, NH, NKV, HS);
        float *scratch = falloc(ns);
        fill(out, nq, -5, 5);   // the forward must overwrite everything
        fill(scratch, ns, -5, 5);   // stale scratch must not leak into the result
        qt_attention_train_forward(&kcx, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(close_enough("attention out", out, outd, nq, FWD_REL, FWD_ABS), "T=%d NH=%d NKV=%d HS=%d %s", T, NH,
              NKV, HS, g_pool_names[ip]);
        CHECK(close_enough("attention lse", lse, lsed, (size_t)T * NH, FWD_REL, FWD_ABS), "T=%d NH=%d NKV=%d HS=%d %s",
              T, NH, NKV, HS, g_pool_names[ip]);
        // without lse: the same output
        float *out2 = falloc(nq);
        qt_attention_train_forward(&kcx, out2, NULL, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(memcmp(out, out2, sizeof(float) * nq) == 0, "attention forward without lse differs");
        qt_free(out2);

        fill(scratch, ns, -5, 5);
        qt_attention_train_backward(&kcx, dq, dk, dv, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        const char *ref = use_fd ? "FD" : "double backward";
        CHECK(close_enough("attention dq", dq, gq, nq, FD_REL, FD_ABS), "vs %s T=%d NH=%d NKV=%d HS=%d %s", ref, T,
              NH, NKV, HS, g_pool_names[ip]);
        CHECK(close_enough("attention dk", dk, gk, nkv, FD_REL, FD_ABS), "vs %s T=%d NH=%d NKV=%d HS=%d %s", ref, T,
              NH, NKV, HS, g_pool_names[ip]);
        CHECK(close_enough("attention dv", dv, gv, nkv, FD_REL, FD_ABS), "vs %s T=%d NH=%d NKV=%d HS=%d %s", ref, T,
              NH, NKV, HS, g_pool_names[ip]);
        if (!use_fd) {
            // the streaming backward against the materialised double one at the forward's tolerance
            CHECK(close_enough("attention dq (tight)", dq, gq, nq, 10 * FWD_REL, 10 * FWD_ABS) &&
                      close_enough("attention dk (tight)", dk, gk, nkv, 10 * FWD_REL, 10 * FWD_ABS) &&
                      close_enough("attention dv (tight)", dv, gv, nkv, 10 * FWD_REL, 10 * FWD_ABS),
                  "streaming backward vs materialised double T=%d NH=%d NKV=%d HS=%d %s", T, NH, NKV, HS,
                  g_pool_names[ip]);
        }
        // the same bits on every thread count
        if (ip == 0) {
            memcpy(first_dq, dq, sizeof(float) * nq);
        } else {
            CHECK(memcmp(first_dq, dq, sizeof(float) * nq) == 0, "attention dq depends on the thread count (%s)",
                  g_pool_names[ip]);
        }

        // accumulate: a second call doubles every gradient
        float *dq1 = falloc(nq), *dk1 = falloc(nkv), *dv1 = falloc(nkv);
        memcpy(dq1, dq, sizeof(float) * nq);
        memcpy(dk1, dk, sizeof(float) * nkv);
        memcpy(dv1, dv, sizeof(float) * nkv);
        qt_attention_train_backward(&kcx, dq, dk, dv, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(doubled("attention dq twice", dq, dq1, nq) && doubled("attention dk twice", dk, dk1, nkv) &&
                  doubled("attention dv twice", dv, dv1, nkv),
              "attention accumulate T=%d NH=%d NKV=%d HS=%d %s", T, NH, NKV, HS, g_pool_names[ip]);

        // NULL outputs are skipped; the others are unchanged by that
        float *e = falloc(nkv);
        qt_attention_train_backward(&kcx, NULL, e, NULL, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(memcmp(e, dk1, sizeof(float) * nkv) == 0, "attention dk alone differs, T=%d NH=%d NKV=%d HS=%d", T, NH,
              NKV, HS);
        memset(e, 0, sizeof(float) * nkv);
        qt_attention_train_backward(&kcx, NULL, NULL, e, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(memcmp(e, dv1, sizeof(float) * nkv) == 0, "attention dv alone differs, T=%d NH=%d NKV=%d HS=%d", T, NH,
              NKV, HS);
        float *eq = falloc(nq);
        qt_attention_train_backward(&kcx, eq, NULL, NULL, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        CHECK(memcmp(eq, dq1, sizeof(float) * nq) == 0, "attention dq alone differs, T=%d NH=%d NKV=%d HS=%d", T, NH,
              NKV, HS);
        qt_free(eq); qt_free(e);
        qt_free(dq1); qt_free(dk1); qt_free(dv1);
        qt_free(out); qt_free(lse); qt_free(dq); qt_free(dk); qt_free(dv); qt_free(scratch);
    }
    qt_free(lsed);
    qt_free(first_dq);
    qt_free(gq); qt_free(gk); qt_free(gv); qt_free(outd); qt_free(attd);
    qt_free(c.q); qt_free(c.k); qt_free(c.v); qt_free(c.dout);
    qt_free(q); qt_free(k); qt_free(v); qt_free(dout);
}

static void test_attention(void) {
    static const int Ts[] = { 1, 3, 7, 17 }, HSs[] = { 8, 16 };
    static const int heads[][2] = { { 4, 2 }, { 4, 4 }, { 3, 1 } };
    for (size_t it = 0; it < QT_ARRAY_LEN(Ts); it++)
        for (size_t ih = 0; ih < QT_ARRAY_LEN(heads); ih++)
            for (size_t is = 0; is < QT_ARRAY_LEN(HSs); is++)
                attention_case(Ts[it], heads[ih][0], heads[ih][1], HSs[is], true);
    // bigger than one 64 x 96 matmul tile and the 32-wide transpose blocks
    attention_case(70, 4, 1, 16, false);
    attention_case(100, 2, 2, 64, false);
    // several 84-row blocks of queries and 224-key blocks, the last ones ragged
    attention_case(203, 4, 1, 32, false);
    attention_case(300, 2, 1, 16, false);
    attention_case(470, 2, 1, 16, false);
    // past FA_KEEP_T (8192): the scores and P / dP computed again, not kept
    attention_case(8200, 1, 1, 8, false);
}

// ---------------------------------------------------------------- swiglu

typedef struct {
    double *gate, *up, *dout;
    int64_t N;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->N; i++) l += c->dout[i] * c->gate[i] / (1 + exp(-c->gate[i])) * c->up[i];
    return l;
}

static void test_swiglu(void) {
    const int64_t N = 37;
    float *gate = falloc(N), *up = falloc(N), *dout = falloc(N), *dg = falloc(N), *du = falloc(N), *e = falloc(N);
    fill(gate, N, -6, 6);
    fill(up, N, -2, 2);
    fill(dout, N, -1, 1);
    swiglu_ctx c = { to_double(gate, N), to_double(up, N), to_double(dout, N), N };
    double *gg = qt_malloc(sizeof(double) * N), *gu = qt_malloc(sizeof(double) * N);
    fd_grad(gg, c.gate, N, swiglu_loss, &c);
    fd_grad(gu, c.up, N, swiglu_loss, &c);
    qt_swiglu_backward(qt_kernels(), dg, du, dout, gate, up, N);
    CHECK(close_enough("swiglu dgate", dg, gg, N, FD_REL, FD_ABS), "N=%d", (int)N);
    CHECK(close_enough("swiglu dup", du, gu, N, FD_REL, FD_ABS), "N=%d", (int)N);
    float *dg1 = falloc(N), *du1 = falloc(N);
    memcpy(dg1, dg, sizeof(float) * N);
    memcpy(du1, du, sizeof(float) * N);
    qt_swiglu_backward(qt_kernels(), dg, du, dout, gate, up, N);
    CHECK(doubled("swiglu dgate twice", dg, dg1, N) && doubled("swiglu dup twice", du, du1, N), "swiglu accumulate");
    qt_swiglu_backward(qt_kernels(), e, NULL, dout, gate, up, N);
    CHECK(memcmp(e, dg1, sizeof(float) * N) == 0, "swiglu dgate alone differs");
    memset(e, 0, sizeof(float) * N);
    qt_swiglu_backward(qt_kernels(), NULL, e, dout, gate, up, N);
    CHECK(memcmp(e, du1, sizeof(float) * N) == 0, "swiglu dup alone differs");
    qt_free(dg1); qt_free(du1); qt_free(gg); qt_free(gu);
    qt_free(c.gate); qt_free(c.up); qt_free(c.dout);
    qt_free(gate); qt_free(up); qt_free(dout); qt_free(dg); qt_free(du); qt_free(e);
}

// ---------------------------------------------------------------- layernorm, gelu, geglu (layers-norm-act.c)

// LayerNorm with bias and the tanh GELU against double definitions
// (torch.nn.functional.layer_norm, gelu(approximate="tanh")); their
// backward against finite differences of those; GeGLU likewise.
typedef struct {
    double *x, *w, *b, *dout;
    int T, C;
    double eps;
} ln_ctx;

static void layernorm_d(double *y, const double *x, const double *w, const double *b, int T, int C, double eps) {
    for (int t = 0; t < T; t++) {
        const double *xt = x + (size_t)t * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += xt[i] / C;
        for (int i = 0; i < C; i++) v += (xt[i] - m) * (xt[i] - m) / C;
        for (int i = 0; i < C; i++) y[(size_t)t * C + i] = (xt[i] - m) / sqrt(v + eps) * w[i] + b[i];
    }
}

static double ln_loss(void *p) {
    ln_ctx *c = p;
    size_t n = (size_t)c->T * c->C;
    double *y = qt_malloc(sizeof(double) * n), l = 0;
    layernorm_d(y, c->x, c->w, c->b, c->T, c->C, c->eps);
    for (size_t i = 0; i < n; i++) l += c->dout[i] * y[i];
    qt_free(y);
    return l;
}

static void test_layernorm(void) {
    static const int Ts[] = { 1, 3, 17 }, Cs[] = { 5, 33 };
    for (size_t it = 0; it < QT_ARRAY_LEN(Ts); it++)
        for (size_t ic = 0; ic < QT_ARRAY_LEN(Cs); ic++) {
            const int T = Ts[it], C = Cs[ic];
            const size_t n = (size_t)T * C;
            float *x = falloc(n), *w = falloc(C), *b = falloc(C), *dout = falloc(n), *y = falloc(n), *rstd = falloc(T);
            float *dx = falloc(n), *dx1 = falloc(n);
            fill(x, n, -2, 3);   // a non-zero mean
            fill(w, C, 0.5, 1.5);
            fill(b, C, -0.5, 0.5);
            fill(dout, n, -1, 1);
            ln_ctx c = { to_double(x, n), to_double(w, C), to_double(b, C), to_double(dout, n), T, C, 1e-5 };
            double *yd = qt_malloc(sizeof(double) * n), *gx = qt_malloc(sizeof(double) * n);
            qt_layernorm_forward(y, rstd, x, w, b, T, C, 1e-5f);
            layernorm_d(yd, c.x, c.w, c.b, T, C, c.eps);
            CHECK(close_enough("layernorm forward", y, yd, n, FWD_REL, FWD_ABS), "T=%d C=%d", T, C);
            fd_grad(gx, c.x, n, ln_loss, &c);
            qt_layernorm_backward(dx, dout, x, w, rstd, T, C);
            CHECK(close_enough("layernorm dx", dx, gx, n, FD_REL, FD_ABS), "T=%d C=%d", T, C);
            memcpy(dx1, dx, sizeof(float) * n);
            qt_layernorm_backward(dx, dout, x, w, rstd, T, C);
            CHECK(doubled("layernorm dx twice", dx, dx1, n), "layernorm accumulate T=%d C=%d", T, C);
            qt_free(yd); qt_free(gx); qt_free(c.x); qt_free(c.w); qt_free(c.b); qt_free(c.dout);
            qt_free(x); qt_free(w); qt_free(b); qt_free(dout); qt_free(y); qt_free(rstd); qt_free(dx); qt_free(dx1);
        }
}

static double gelu_d(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

typedef struct {
    double *gate, *up, *dout;   // up NULL: plain gelu
    int64_t N;
} gelu_ctx;

static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->N; i++) l += c->dout[i] * gelu_d(c->gate[i]) * (c->up ? c->up[i] : 1.0);
    return l;
}

// gelu and geglu, forward and backward, on each pool; a vector long enough
// for the pool to split gives the same bits on every thread count.
static void test_gelu(void) {
    const int64_t N = 41, NB = 3 * 16384 + 5;
    float *g = falloc(NB), *u = falloc(NB), *dout = falloc(NB), *y = falloc(NB), *dg = falloc(NB), *du = falloc(NB);
    fill(g, NB, -6, 6);
    fill(u, NB, -2, 2);
    fill(dout, NB, -1, 1);
    gelu_ctx c = { to_double(g, N), to_double(u, N), to_double(dout, N), N };
    double *yd = qt_malloc(sizeof(double) * N), *gg = qt_malloc(sizeof(double) * N), *gu = qt_malloc(sizeof(double) * N);
    for (int64_t i = 0; i < N; i++) yd[i] = gelu_d(c.gate[i]);
    double *up = c.up;
    c.up = NULL;
    fd_grad(gg, c.gate, N, gelu_loss, &c);   // plain gelu
    c.up = up;
    for (int ip = 0; ip < 3; ip++) {
        qt_kctx kc = qt_kctx_default(g_pools[ip]);
        qt_gelu_forward(&kc, y, g, N);
        CHECK(close_enough("gelu forward", y, yd, N, FWD_REL, FWD_ABS), "%s", g_pool_names[ip]);
        memset(dg, 0, sizeof(float) * N);
        qt_gelu_backward(&kc, dg, dout, g, N);
        CHECK(close_enough("gelu dx", dg, gg, N, FD_REL, FD_ABS), "%s", g_pool_names[ip]);
    }
    fd_grad(gg, c.gate, N, gelu_loss, &c);   // geglu
    fd_grad(gu, c.up, N, gelu_loss, &c);
    for (int64_t i = 0; i < N; i++) yd[i] = gelu_d(c.gate[i]) * c.up[i];
    for (int ip = 0; ip < 3; ip++) {
        qt_kctx kc = qt_kctx_default(g_pools[ip]);
        qt_geglu_forward(&kc, y, g, u, N);
        CHECK(close_enough("geglu forward", y, yd, N, FWD_REL, FWD_ABS), "%s", g_pool_names[ip]);
        memset(dg, 0, sizeof(float) * N);
        memset(du, 0, sizeof(float) * N);
        qt_geglu_backward(&kc, dg, du, dout, g, u, N);
        CHECK(close_enough("geglu dgate", dg, gg, N, FD_REL, FD_ABS) && close_enough("geglu dup", du, gu, N, FD_REL, FD_ABS),
              "%s", g_pool_names[ip]);
        qt_geglu_backward(&kc, NULL, du, dout, g, u, N);   // dup alone: doubles
        double *d2 = qt_malloc(sizeof(double) * N);
        for (int64_t i = 0; i < N; i++) d2[i] = 2 * gu[i];
        CHECK(close_enough("geglu dup twice", du, d2, N, FD_REL, 2 * FD_ABS), "%s", g_pool_names[ip]);
        qt_free(d2);
    }
    // long vectors: the pools' splits give the single thread's bits
    float *ref[3] = { falloc(NB), falloc(NB), falloc(NB) };
    for (int ip = 0; ip < 3; ip++) {
        qt_kctx kc = qt_kctx_default(g_pools[ip]);
        memset(dg, 0, sizeof(float) * NB);
        memset(du, 0, sizeof(float) * NB);
        qt_geglu_forward(&kc, y, g, u, NB);
        qt_geglu_backward(&kc, dg, du, dout, g, u, NB);
        if (ip == 0) {
            memcpy(ref[0], y, sizeof(float) * NB); memcpy(ref[1], dg, sizeof(float) * NB); memcpy(ref[2], du, sizeof(float) * NB);
        } else {
            CHECK(!memcmp(ref[0], y, sizeof(float) * NB) && !memcmp(ref[1], dg, sizeof(float) * NB) &&
                      !memcmp(ref[2], du, sizeof(float) * NB),
                  "geglu on %s differs from one thread", g_pool_names[ip]);
        }
    }
    for (int i = 0; i < 3; i++) qt_free(ref[i]);
    qt_free(yd); qt_free(gg); qt_free(gu); qt_free(c.gate); qt_free(c.up); qt_free(c.dout);
    qt_free(g); qt_free(u); qt_free(dout); qt_free(y); qt_free(dg); qt_free(du);
}

// ---------------------------------------------------------------- cross-entropy

typedef struct {
    double *logits, *dscale;
    const int32_t *targets;
    int T, V;
} ce_ctx;

static double ce_row_d(const double *l, int y, int V) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < V; i++) s += exp(l[i] - mx);
    return mx + log(s) - l[y];
}

static double ce_loss(void *p) {
    ce_ctx *c = p;
    double l = 0;
    for (int t = 0; t < c->T; t++)
        if (c->targets[t] >= 0) l += c->dscale[t] * ce_row_d(c->logits + (size_t)t * c->V, c->targets[t], c->V);
    return l;
}

static void test_cross_entropy(void) {
    static const int Vs[] = { 1, 2, 5, 33 };
    const int T = 7;
    for (size_t iv = 0; iv < QT_ARRAY_LEN(Vs); iv++)
        for (int shift = 0; shift < 2; shift++) {
            int V = Vs[iv];
            size_t n = (size_t)T * V;
            float *logits = falloc(n), *dl = falloc(n), *losses = falloc(T), *losses2 = falloc(T), *dscale = falloc(T);
            int32_t targets[7];
            fill(logits, n, -4, 4);
            if (shift)   // large logits: exp would overflow without the max subtraction
                for (size_t i = 0; i < n; i++) logits[i] += 1000.0f;
            fill(dscale, T, 0.1, 1);
            for (int t = 0; t < T; t++) targets[t] = (t == 2 || t == 5) ? -1 : (int32_t)(urand() * V);
            ce_ctx c = { to_double(logits, n), to_double(dscale, T), targets, T, V };
            double *g = qt_malloc(sizeof(double) * n), *ld = qt_malloc(sizeof(double) * T);
            for (int t = 0; t < T; t++)
                ld[t] = targets[t] >= 0 ? ce_row_d(c.logits + (size_t)t * V, targets[t], V) : 0;
            fill(dl, n, -9, 9);   // written, not accumulated
            qt_cross_entropy(qt_kernels(), losses, dl, logits, targets, dscale, T, V);
            CHECK(close_enough("cross-entropy losses", losses, ld, T, FWD_REL, FWD_ABS), "V=%d shift=%d", V, shift);
            fd_grad(g, c.logits, n, ce_loss, &c);
            CHECK(close_enough("cross-entropy dlogits", dl, g, n, FD_REL, FD_ABS), "V=%d shift=%d", V, shift);
            // in place (dlogits == logits) and without gradients give the same numbers
            float *inplace = falloc(n);
            memcpy(inplace, logits, sizeof(float) * n);
            qt_cross_entropy(qt_kernels(), losses2, inplace, inplace, targets, dscale, T, V);
            CHECK(memcmp(inplace, dl, sizeof(float) * n) == 0 && memcmp(losses, losses2, sizeof(float) * T) == 0,
                  "cross-entropy in place differs, V=%d", V);
            qt_cross_entropy(qt_kernels(), losses2, NULL, logits, targets, dscale, T, V);
            CHECK(memcmp(losses, losses2, sizeof(float) * T) == 0, "cross-entropy without dlogits differs, V=%d", V);
            // dscale NULL means 1
            qt_cross_entropy(qt_kernels(), losses2, inplace, logits, targets, NULL, T, V);
            int bad = 0;
            for (int t = 0; t < T; t++)
                for (int i = 0; i < V; i++) {
                    size_t j = (size_t)t * V + i;
                    bad += fabsf(inplace[j] * dscale[t] - dl[j]) > 1e-6f * (1 + fabsf(dl[j]));
                }
            CHECK(bad == 0, "cross-entropy dscale NULL is not scale 1: %d entries, V=%d", bad, V);
            qt_free(inplace); qt_free(g); qt_free(ld); qt_free(c.logits); qt_free(c.dscale);
            qt_free(logits); qt_free(dl); qt_free(losses); qt_free(losses2); qt_free(dscale);
        }
}

// ---------------------------------------------------------------- matmul_dw

static void test_matmul_dw(void) {
    // the narrow-n_out gemm path (n_out <= 64), the narrow-n_in one (n_in <= 64
    // < n_out) and the axpy one (both wide), with T past a 6-row micro-tile
    static const int n_ins[] = { 1, 5, 33, 300, 9000 }, n_outs[] = { 1, 7, 40, 130 }, Ts[] = { 1, 3, 17, 70 };
    for (size_t a = 0; a < QT_ARRAY_LEN(n_ins); a++)
        for (size_t b = 0; b < QT_ARRAY_LEN(n_outs); b++)
            for (size_t it = 0; it < QT_ARRAY_LEN(Ts); it++) {
                int n_in = n_ins[a], n_out = n_outs[b], T = Ts[it];
                if (n_in == 9000 && n_out == 130) continue;   // slow reference, nothing new
                size_t nw = (size_t)n_out * n_in;
                float *dy = falloc((size_t)T * n_out), *x = falloc((size_t)T * n_in), *dw0 = falloc(nw);
                fill(dy, (size_t)T * n_out, -1, 1);
                dy[0] = 0;   // a zero entry (skipped) must not change the result
                fill(x, (size_t)T * n_in, -1, 1);
                fill(dw0, nw, -1, 1);
                double *want = qt_malloc(sizeof(double) * nw), *mag = qt_malloc(sizeof(double) * nw);
                for (int o = 0; o < n_out; o++)
                    for (int i = 0; i < n_in; i++) {
                        double s = dw0[(size_t)o * n_in + i], m = fabs(s);
                        for (int t = 0; t < T; t++) {
                            double p = (double)dy[(size_t)t * n_out + o] * x[(size_t)t * n_in + i];
                            s += p;
                            m += fabs(p);
                        }
                        want[(size_t)o * n_in + i] = s;
                        mag[(size_t)o * n_in + i] = m;
                    }
                for (int ip = 0; ip < 3; ip++) {
                    float *dw = falloc(nw);
                    memcpy(dw, dw0, sizeof(float) * nw);   // accumulates onto what is there
                    qt_matmul_dw(&(qt_kctx){ .kt = qt_kernels(), .pool = g_pools[ip] }, dw, dy, x, n_in, n_out, T);
                    // float sums with cancellation: the bound scales with the sum of |terms|
                    size_t n_bad = 0;
                    for (size_t e = 0; e < nw; e++) n_bad += !(fabs(dw[e] - want[e]) <= DW_REL * mag[e] + FWD_ABS);
                    CHECK(n_bad == 0, "matmul_dw: %zu wrong, n_in=%d n_out=%d T=%d %s", n_bad, n_in, n_out, T,
                          g_pool_names[ip]);
                    qt_free(dw);
                }
                qt_free(want); qt_free(mag); qt_free(dy); qt_free(x); qt_free(dw0);
            }
}

// The pool variants of SwiGLU (forward, backward) and cross-entropy give the
// single-thread functions' bits on 1..3 threads, for sizes past the pool
// threshold with ragged ends and an ignored target.
static void test_pool_variants(void) {
    const int64_t N = 3 * 16384 + 7;
    float *gate = falloc(N), *up = falloc(N), *dout = falloc(N);
    fill(gate, N, -8, 8);
    fill(up, N, -2, 2);
    fill(dout, N, -1, 1);
    float *o1 = falloc(N), *o2 = falloc(N), *dg1 = falloc(N), *du1 = falloc(N), *dg2 = falloc(N), *du2 = falloc(N);
    qt_swiglu_forward(qt_kernels(), o1, gate, up, N);
    memset(dg1, 0, sizeof(float) * N), memset(du1, 0, sizeof(float) * N);
    qt_swiglu_backward(qt_kernels(), dg1, du1, dout, gate, up, N);
    const int T = 37, V = 3001;
    float *logits = falloc((size_t)T * V), *l1 = falloc(T), *l2 = falloc(T);
    float *d1 = falloc((size_t)T * V), *d2 = falloc((size_t)T * V);
    fill(logits, (int64_t)T * V, -10, 10);
    int32_t targets[37];
    for (int t = 0; t < T; t++) targets[t] = t == 5 ? -1 : (t * 997) % V;
    qt_cross_entropy(qt_kernels(), l1, d1, logits, targets, NULL, T, V);
    for (int ip = 0; ip < 3; ip++) {
        qt_pool *pool = g_pools[ip];
        const qt_kctx kcx = { .kt = qt_kernels(), .pool = pool };
        qt_swiglu_forward_pool(&kcx, o2, gate, up, N);
        CHECK(memcmp(o1, o2, sizeof(float) * N) == 0, "swiglu_forward_pool, %d threads", qt_pool_n_threads(pool));
        memset(dg2, 0, sizeof(float) * N), memset(du2, 0, sizeof(float) * N);
        qt_swiglu_backward_pool(&kcx, dg2, du2, dout, gate, up, N);
        CHECK(memcmp(dg1, dg2, sizeof(float) * N) == 0 && memcmp(du1, du2, sizeof(float) * N) == 0,
              "swiglu_backward_pool, %d threads", qt_pool_n_threads(pool));
        qt_cross_entropy_pool(&kcx, l2, d2, logits, targets, NULL, T, V);
        CHECK(memcmp(l1, l2, sizeof(float) * T) == 0 && memcmp(d1, d2, sizeof(float) * T * V) == 0,
              "cross_entropy_pool, %d threads", qt_pool_n_threads(pool));
    }
    qt_free(gate); qt_free(up); qt_free(dout); qt_free(o1); qt_free(o2);
    qt_free(dg1); qt_free(du1); qt_free(dg2); qt_free(du2);
    qt_free(logits); qt_free(l1); qt_free(l2); qt_free(d1); qt_free(d2);
}

// The inference attention (qt_attention_forward: per-task path for few rows,
// token chunks on the matmuls otherwise) against a double reference, with a
// filled cache before the batch (pos0 > 0) and batches across several chunks;
// with an fp32 cache and an fp16 one (holding the same values: the cache's
// floats are rounded to fp16 first, so the reference is exact for both; the
// fp16 cache's products at QT_PREC_F32, as the CPU backend runs them for
// models that are not BF16/F16).
static void test_attention_inference(void) {
    static const int cases[][5] = {   // T, pos0, NH, NKV, HS
        {1, 9, 4, 2, 16}, {5, 0, 8, 2, 16}, {70, 0, 8, 2, 16}, {150, 37, 4, 1, 32}, {129, 3, 6, 3, 8},
    };
    for (size_t ic = 0; ic < QT_ARRAY_LEN(cases); ic++) {
        int T = cases[ic][0], pos0 = cases[ic][1], NH = cases[ic][2], NKV = cases[ic][3], HS = cases[ic][4];
        int n_ctx = pos0 + T + 5, n = pos0 + T;
        float *q = falloc((size_t)T * NH * HS), *kc = falloc((size_t)NKV * n_ctx * HS);
        float *vt = falloc((size_t)NKV * HS * n_ctx), *out = falloc((size_t)T * NH * HS);
        fill(q, (size_t)T * NH * HS, -1, 1);
        fill(kc, (size_t)NKV * n_ctx * HS, -1, 1);
        fill(vt, (size_t)NKV * HS * n_ctx, -1, 1);
        const size_t nk = (size_t)NKV * n_ctx * HS;
        uint16_t *kh = malloc(sizeof(uint16_t) * nk), *vh = malloc(sizeof(uint16_t) * nk);
        for (int it = 0; it < 6; it++) {
            const int ip = it % 3;
            const bool f16 = it >= 3;
            if (it == 3)
                for (size_t i = 0; i < nk; i++) {
                    kh[i] = qt_fp32_to_fp16(kc[i]), kc[i] = qt_fp16_to_fp32(kh[i]);
                    vh[i] = qt_fp32_to_fp16(vt[i]), vt[i] = qt_fp16_to_fp32(vh[i]);
                }
            int nth = qt_pool_n_threads(g_pools[ip]);
            float *scratch = falloc(qt_attention_scratch(T, NH, NKV, HS, n_ctx, nth));
            const qt_attn_seq sq = { out, q, f16 ? (const void *)kh : kc, f16 ? (const void *)vh : vt, T, pos0 };
            const qt_kctx kx = { .kt = qt_kernels(), .pool = g_pools[ip], .prec = f16 ? QT_PREC_F32 : QT_PREC_FAST };
            qt_attention_forward(&kx, &sq, 1, NH, NKV, HS, n_ctx, f16 ? QT_TYPE_F16 : QT_TYPE_F32, scratch);
            double worst = 0;
            double *sc = malloc(sizeof(double) * n);
            for (int t = 0; t < T; t++)
                for (int h = 0; h < NH; h++) {
                    int kvh = h / (NH / NKV), valid = pos0 + t + 1;
                    const float *qh = q + ((size_t)t * NH + h) * HS;
                    double mx = -1e300, sum = 0;
                    for (int p = 0; p < valid; p++) {
                        double d = 0;
                        for (int e = 0; e < HS; e++) d += (double)qh[e] * kc[((size_t)kvh * n_ctx + p) * HS + e];
                        sc[p] = d / sqrt((double)HS);
                        mx = sc[p] > mx ? sc[p] : mx;
                    }
                    for (int p = 0; p < valid; p++) sum += sc[p] = exp(sc[p] - mx);
                    for (int e = 0; e < HS; e++) {
                        double o = 0;
                        for (int p = 0; p < valid; p++) o += sc[p] / sum * vt[((size_t)kvh * HS + e) * n_ctx + p];
                        worst = fmax(worst, fabs(o - out[((size_t)t * NH + h) * HS + e]));
                    }
                }
            free(sc);
            CHECK(worst <= ATTN_INFER_TOL,
                  "attention_forward (%s cache) T=%d pos0=%d NH=%d NKV=%d HS=%d threads=%d: max err %.3g",
                  f16 ? "fp16" : "fp32", T, pos0, NH, NKV, HS, nth, worst);
            qt_free(scratch);
        }
        free(kh); free(vh);
        qt_free(q); qt_free(kc); qt_free(vt); qt_free(out);
    }
}

int main(void) {
    g_pools[0] = NULL;
    g_pools[1] = qt_pool_init(2);
    g_pools[2] = qt_pool_init(3);
    test_rmsnorm();
    test_rope();
    test_attention();
    test_attention_inference();
    test_swiglu();
    test_layernorm();
    test_gelu();
    test_cross_entropy();
    test_matmul_dw();
    test_pool_variants();
    qt_pool_free(g_pools[1]);
    qt_pool_free(g_pools[2]);
    TEST_END();
}
