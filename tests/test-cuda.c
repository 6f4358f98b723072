// test-cuda.c: the CUDA backend against the CPU backend (backend-cpu.c is the
// reference), built only with `make CUDA=1` (`make CUDA=1 cuda-test`).
// Part 1, every op: random inputs (never zeros), outputs poisoned with NaN
// before the call (or, for "+=" outputs, filled with the same random values
// on both sides), the CUDA result against the CPU's in both precisions of
// the CUDA backend: one line per op and case with ||gpu - cpu|| / ||cpu||.
// Part 2, models: stories260K's greedy text equal to the CPU's in fp32
// mode; logits of random-weight models of real width (paths in
// QT_CUDA_TEST_MODELS, colon-separated; scripts/gpu-check.sh makes them);
// LoRA gradients; a 20-step AdamW loss curve.
// References: products against a double-precision product of the exactly
// dequantized weights; models with quantized weights against the CPU running
// a float32 copy of them (the CPU's own quantized kernels round activations
// to Q8_0, which is not the math the GPU does).
// Without a GPU it says so and passes, unless QT_CUDA_TEST_REQUIRE=1.
// QT_CUDA_TEST_SELF=1 checks this test itself without a GPU: two CPU
// backends stand in for the GPU's, one with exact float32 products, one
// rounding the products' operands as the GPU's bf16 / TF32 path does.
// `test-cuda --bandwidth` prints the device-to-device copy bandwidth only.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend-cpu.h"
#include "backend/backend-cuda.h"
#include "backend/cuda-ops.h"
#include "backend/layers-train.h"
#include "base/base.h"
#include "base/pool.h"
#include "model/context.h"
#include "model/lora.h"
#include "model/model.h"
#include "test.h"
#include "train/model-train.h"
#include "train/optim.h"

// Tolerances, ||gpu - cpu|| / ||cpu||:
// float32 arithmetic in another summation order (parallel reductions,
// cuBLAS's blocking): a few float32 roundings per result.
#define TOL_F32 1e-5
// bf16 operands (8 significant bits, unit roundoff 2^-9 ~ 2e-3) in the
// products of the prefill / training path, TF32 (10 bits) for float32
// weights: one product lands near 3e-3; 1e-2 leaves room for the worst case.
#define TOL_BF16 1e-2
// Whole models: several products in series (2 layers + the head): bf16 errors
// add up, about 1e-2 measured in PyTorch for such chains; fp32: more sums.
#define TOL_MODEL_F32 1e-4
#define TOL_MODEL_BF16 3e-2
// LoRA gradients: all of them together, the 2% bound; any single
// adapter tensor (max |diff| / max |ref|) within 5%: emulating the bf16
// path on the CPU (QT_CUDA_TEST_SELF=1) gave 1.0e-2 and 1.6e-2 on a 2-layer
// TinyLlama-width Q4_0 model, and a wrong kernel gives errors near 1.
#define TOL_GRAD 2e-2
#define TOL_GRAD_TENSOR 5e-2
// 20-step loss curve: absolute difference per step (the bound).
#define TOL_CURVE 1e-2

enum { CPU, G32, G16, NB };
static qt_backend *g_be[NB];
static const char *const g_mode[NB] = { "cpu", "fp32", "bf16" };
static qt_pool *g_pool;

// ---- self-check: CPU backends standing in for the GPU's ----

static qt_backend_ops g_emu_ops[2];   // [0]: float32 products, [1]: bf16 / TF32 operands
static const qt_backend_ops *g_cpu_ops;

static float round_bf16(float x) { return qt_bf16_to_fp32(qt_fp32_to_bf16(x)); }
static float round_tf32(float x) {   // 10 mantissa bits, to nearest even
    union { float f; uint32_t u; } v = { .f = x };
    if ((v.u & 0x7f800000u) == 0x7f800000u) return x;
    v.u += 0x0fffu + ((v.u >> 13) & 1u);
    v.u &= ~0x1fffu;
    return v.f;
}

// rounding of a product's operands: 0 none, 1 bf16, 2 TF32
static int emu_rounding(qt_backend *be, qt_type wtype, int64_t N, bool gemv_possible) {
    if (be->ops != &g_emu_ops[1]) return 0;
    if (gemv_possible && N <= QT_CUDA_GEMV_MAX_N) return 0;
    return wtype == QT_TYPE_F32 ? 2 : 1;
}

static float *emu_copy(const float *x, size_t n, int rounding) {
    float *y = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = rounding == 1 ? round_bf16(x[i]) : rounding == 2 ? round_tf32(x[i]) : x[i];
    return y;
}

// W dequantized (and rounded) as a float32 tensor; free its data after use.
static qt_tensor emu_weight(const qt_tensor *w, int rounding) {
    const size_t n = (size_t)(w->ne0 * w->ne1);
    float *f = malloc(sizeof(float) * n);
    const size_t rs = qt_row_size(w->type, w->ne0);
    for (int64_t r = 0; r < w->ne1; r++)
        qt_type_traits_get(w->type)->to_float((const uint8_t *)w->dev + (size_t)r * rs, f + (size_t)r * w->ne0, w->ne0);
    for (size_t i = 0; rounding && i < n; i++) f[i] = rounding == 1 ? round_bf16(f[i]) : round_tf32(f[i]);
    return (qt_tensor){ .type = QT_TYPE_F32, .ne0 = w->ne0, .ne1 = w->ne1, .data = f, .dev = f };
}

static void emu_matmul(qt_backend *be, const float *x, int64_t n_in, int64_t N, const qt_mm_out *outs, int n) {
    for (int i = 0; i < n; i++) {
        const int rd = emu_rounding(be, outs[i].w->type, N, true);
        qt_tensor w = emu_weight(outs[i].w, rd);
        float *xr = emu_copy(x, (size_t)(N * n_in), rd);
        qt_mm_out o = { outs[i].y, &w };
        g_cpu_ops->matmul(be, xr, n_in, N, &o, 1);
        free(xr);
        free((void *)w.data);
    }
}

static void emu_matmul_t(qt_backend *be, float *dx, const float *dy, const qt_tensor *w, int64_t N) {
    const int rd = emu_rounding(be, w->type, N, false);
    qt_tensor wf = emu_weight(w, rd);
    float *dyr = emu_copy(dy, (size_t)(N * w->ne1), rd);
    g_cpu_ops->matmul_t(be, dx, dyr, &wf, N);
    free(dyr);
    free((void *)wf.data);
}

static void emu_matmul_dw(qt_backend *be, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out,
                          int64_t N) {
    const int rd = emu_rounding(be, QT_TYPE_F32, N, false);
    float *dyr = emu_copy(dy, (size_t)(N * n_out), rd), *xr = emu_copy(x, (size_t)(N * n_in), rd);
    g_cpu_ops->matmul_dw(be, dw, dyr, xr, n_in, n_out, N);
    free(dyr);
    free(xr);
}

static qt_backend *emu_backend(int k) {
    qt_backend *be = qt_backend_init("cpu", g_pool);
    qt_backend_cpu_kctx(be)->prec = QT_PREC_F32;
    g_cpu_ops = be->ops;
    g_emu_ops[k] = *be->ops;
    g_emu_ops[k].matmul = emu_matmul;
    g_emu_ops[k].matmul_t = emu_matmul_t;
    g_emu_ops[k].matmul_dw = emu_matmul_dw;
    be->ops = &g_emu_ops[k];
    return be;
}

// Every weight of m converted to float32 in place (the same values: the
// dequantization is exact): the CPU reference for a quantized model.
// Returns the buffers to free after qt_model_free (NULL-terminated).
static float **model_to_f32(qt_model *m) {
    QT_ASSERT(qt_model_quantize(m, QT_TYPE_F32) == QT_OK);   // the layers' linear weights
    float **bufs = calloc(4, sizeof(float *));
    int nb = 0;
    const int slots[2] = { QT_G_TOK_EMBD, QT_G_OUTPUT };
    for (int i = 0; i < 2; i++) {
        qt_tensor *t = &m->globals[slots[i]];
        if (!t->data || t->type == QT_TYPE_F32 || (slots[i] == QT_G_OUTPUT && m->cfg.tied_output)) continue;
        float *f = malloc(sizeof(float) * (size_t)(t->ne0 * t->ne1));
        const size_t rs = qt_row_size(t->type, t->ne0);
        for (int64_t r = 0; r < t->ne1; r++)
            qt_type_traits_get(t->type)->to_float((const uint8_t *)t->data + (size_t)r * rs, f + (size_t)r * t->ne0, t->ne0);
        t->type = QT_TYPE_F32;
        t->data = t->dev = f;
        bufs[nb++] = f;
    }
    if (m->cfg.tied_output) m->globals[QT_G_OUTPUT] = m->globals[QT_G_TOK_EMBD];
    return bufs;
}

static void free_bufs(float **bufs) {
    for (int i = 0; bufs && bufs[i]; i++) free(bufs[i]);
    free(bufs);
}

// ---- helpers ----

static float *rnd_host(qt_rng *r, size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        p[i] = (2.0f * qt_rng_f32(r) - 1.0f) * scale;
        if (p[i] == 0.0f) p[i] = scale * 1e-3f;
    }
    return p;
}

static float *dev_up(qt_backend *be, const float *h, size_t n) {
    float *d = be->ops->alloc(be, sizeof(float) * (n ? n : 1), "test buffer");
    QT_ASSERT(d);
    if (n) be->ops->upload(be, d, h, sizeof(float) * n);
    return d;
}

static float *dev_nan(qt_backend *be, size_t n) {
    float *h = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = dev_up(be, h, n);
    free(h);
    return d;
}

static float *down(qt_backend *be, const float *d, size_t n) {
    float *h = malloc(sizeof(float) * (n ? n : 1));
    if (n) be->ops->download(be, h, d, sizeof(float) * n);
    return h;
}

static void dfree(qt_backend *be, void *d, size_t n) { be->ops->free(be, d, sizeof(float) * (n ? n : 1)); }

static double rel_l2(const float *a, const float *r, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(r[i])) return INFINITY;
        double d = (double)a[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double max_abs_diff(const float *a, const float *r, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (!(d <= m)) m = d;   // NaN sticks
    }
    return m;
}

static void report(const char *op, const char *what, int b, double err, double tol) {
    const bool ok = err <= tol;
    printf("%-20s %-34s %-4s err %.2e (tol %.0e) %s\n", op, what, g_mode[b], err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
    CHECK(ok, "%s %s (%s): relative error %.3e > %.0e", op, what, g_mode[b], err, tol);
}

static double tol_of(int b, bool bf16_path) { return b == G16 && bf16_path ? TOL_BF16 : TOL_F32; }

// Compares outs[G32], outs[G16] with outs[CPU] and frees all three.
static void compare(const char *op, const char *what, float **outs, size_t n, bool bf16_path) {
    for (int b = G32; b < NB; b++) report(op, what, b, rel_l2(outs[b], outs[CPU], n), tol_of(b, bf16_path));
    for (int b = 0; b < NB; b++) free(outs[b]);
}

// A (n_out, n_in) weight of `type` from floats (quantized with the reference quantizer).
static void *make_weight(qt_type type, const float *f, int64_t n_in, int64_t n_out) {
    const size_t rs = qt_row_size(type, n_in);
    uint8_t *w = malloc(rs * (size_t)n_out);
    const qt_type_traits *tt = qt_type_traits_get(type);
    QT_ASSERT(tt && tt->from_float_ref);
    for (int64_t r = 0; r < n_out; r++) tt->from_float_ref(f + (size_t)r * n_in, w + (size_t)r * rs, n_in);
    return w;
}

static void bind_all(qt_tensor *t, qt_type type, const void *data, int64_t n_in, int64_t n_out) {
    for (int b = 0; b < NB; b++) {
        t[b] = (qt_tensor){ .type = type, .ne0 = n_in, .ne1 = n_out, .data = data };
        CHECK(g_be[b]->ops->tensor_bind(g_be[b], &t[b]) == QT_OK, "bind %s on %s", qt_type_name(type), g_mode[b]);
    }
}

static void unbind_all(qt_tensor *t) {
    for (int b = 0; b < NB; b++) g_be[b]->ops->tensor_unbind(g_be[b], &t[b]);
}

// In double from the exactly dequantized weight W (n_out, n_in):
// y (N, n_out) = x (N, n_in) W^T, or with `t` the backward's dx (N, n_in) = x (N, n_out) W.
static float *ref_matmul(const void *w, qt_type type, const float *x, int64_t n_in, int64_t n_out, int64_t N, bool t) {
    const int64_t n_res = t ? n_in : n_out, n_sum = t ? n_out : n_in;
    float *wf = malloc(sizeof(float) * (size_t)(n_in * n_out)), *y = malloc(sizeof(float) * (size_t)(N * n_res));
    qt_type_traits_get(type)->to_float(w, wf, n_in * n_out);
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < n_res; j++) {
            double s = 0;
            for (int64_t k = 0; k < n_sum; k++) s += (double)x[r * n_sum + k] * wf[t ? k * n_in + j : j * n_in + k];
            y[r * n_res + j] = (float)s;
        }
    free(wf);
    return y;
}

static const qt_type k_types[] = { QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0,
                                   QT_TYPE_Q4_0, QT_TYPE_Q4_K, QT_TYPE_Q6_K };
#define N_TYPES ((int)QT_ARRAY_LEN(k_types))

// ---- products ----

// Every stored type read back through the embedding op: bit-exact against the reference dequantization.
static void t_dequant(qt_rng *r) {
    const int64_t n_in = 512, n_out = 40;
    for (int ti = 0; ti < N_TYPES; ti++) {
        qt_type type = k_types[ti];
        float *f = rnd_host(r, (size_t)(n_in * n_out), 1.0f);
        void *w = make_weight(type, f, n_in, n_out);
        float *ref = malloc(sizeof(float) * (size_t)(n_in * n_out));
        qt_type_traits_get(type)->to_float(w, ref, n_in * n_out);
        int32_t tok[40];
        for (int i = 0; i < 40; i++) tok[i] = (i * 7) % 40;
        qt_tensor t[NB];
        bind_all(t, type, w, n_in, n_out);
        for (int b = G32; b < NB; b++) {
            qt_backend *be = g_be[b];
            float *o = dev_nan(be, (size_t)(40 * n_in));
            be->ops->embed(be, o, tok, 40, &t[b]);
            float *h = down(be, o, (size_t)(40 * n_in));
            double md = 0;
            for (int i = 0; i < 40; i++)
                md = fmax(md, max_abs_diff(h + (size_t)i * n_in, ref + (size_t)tok[i] * n_in, (size_t)n_in));
            char what[64];
            snprintf(what, sizeof(what), "%s, max |diff| (bit-exact)", qt_type_name(type));
            report("dequant/embed", what, b, md, 0.0);
            free(h);
            dfree(be, o, (size_t)(40 * n_in));
        }
        unbind_all(t);
        free(f); free(w); free(ref);
    }
}

// y = x W^T for several outputs of one type (and one mixed-type case).
static void t_matmul(qt_rng *r) {
    const int Ns[] = { 1, 3, 8, 9, 70 };
    for (int ti = 0; ti <= N_TYPES; ti++) {
        const bool mixed = ti == N_TYPES;   // Q4_0 next to F16 and F32: grouped launches
        const int64_t n_in = 512, n_out[3] = { 96, 40, 264 };
        qt_type types[3];
        for (int i = 0; i < 3; i++) types[i] = mixed ? (i == 0 ? QT_TYPE_Q4_0 : i == 1 ? QT_TYPE_F16 : QT_TYPE_F32) : k_types[ti];
        qt_tensor t[3][NB];
        void *w[3];
        float *f[3];
        for (int i = 0; i < 3; i++) {
            f[i] = rnd_host(r, (size_t)(n_in * n_out[i]), 0.05f);
            w[i] = make_weight(types[i], f[i], n_in, n_out[i]);
            bind_all(t[i], types[i], w[i], n_in, n_out[i]);
        }
        for (size_t k = 0; k < QT_ARRAY_LEN(Ns); k++) {
            const int N = Ns[k];
            float *x = rnd_host(r, (size_t)(N * n_in), 1.0f);
            float *res[3][NB];
            for (int i = 0; i < 3; i++) res[i][CPU] = ref_matmul(w[i], types[i], x, n_in, n_out[i], N, false);
            for (int b = G32; b < NB; b++) {
                qt_backend *be = g_be[b];
                float *xd = dev_up(be, x, (size_t)(N * n_in)), *yd[3];
                qt_mm_out mo[3];
                for (int i = 0; i < 3; i++) {
                    yd[i] = dev_nan(be, (size_t)(N * n_out[i]));
                    mo[i] = (qt_mm_out){ yd[i], &t[i][b] };
                }
                be->ops->matmul(be, xd, n_in, N, mo, 3);
                for (int i = 0; i < 3; i++) {
                    res[i][b] = down(be, yd[i], (size_t)(N * n_out[i]));
                    dfree(be, yd[i], (size_t)(N * n_out[i]));
                }
                dfree(be, xd, (size_t)(N * n_in));
            }
            for (int i = 0; i < 3; i++) {
                char what[64];
                snprintf(what, sizeof(what), "%s N=%d out %d/3", qt_type_name(types[i]), N, i + 1);
                compare("matmul", what, res[i], (size_t)(N * n_out[i]), N > QT_CUDA_GEMV_MAX_N);
            }
            free(x);
        }
        for (int i = 0; i < 3; i++) {
            unbind_all(t[i]);
            free(f[i]); free(w[i]);
        }
    }
    // float weights whose rows are not a whole number of 32-element units (stories260K's 172)
    const qt_type ft[] = { QT_TYPE_F32, QT_TYPE_F16 };
    for (int ti = 0; ti < 2; ti++)
        for (int N = 1; N <= 12; N += 11) {
            const int64_t n_in = 172, n_out = 64;
            float *f = rnd_host(r, (size_t)(n_in * n_out), 0.1f), *x = rnd_host(r, (size_t)(N * n_in), 1.0f);
            void *w = make_weight(ft[ti], f, n_in, n_out);
            qt_tensor t[NB];
            bind_all(t, ft[ti], w, n_in, n_out);
            float *res[NB];
            res[CPU] = ref_matmul(w, ft[ti], x, n_in, n_out, N, false);
            for (int b = G32; b < NB; b++) {
                qt_backend *be = g_be[b];
                float *xd = dev_up(be, x, (size_t)(N * n_in)), *yd = dev_nan(be, (size_t)(N * n_out));
                qt_mm_out mo = { yd, &t[b] };
                be->ops->matmul(be, xd, n_in, N, &mo, 1);
                res[b] = down(be, yd, (size_t)(N * n_out));
                dfree(be, xd, (size_t)(N * n_in));
                dfree(be, yd, (size_t)(N * n_out));
            }
            char what[64];
            snprintf(what, sizeof(what), "%s n_in=172 N=%d", qt_type_name(ft[ti]), N);
            compare("matmul", what, res, (size_t)(N * n_out), N > QT_CUDA_GEMV_MAX_N);
            unbind_all(t);
            free(f); free(x); free(w);
        }
}

// dx += dy W
static void t_matmul_t(qt_rng *r) {
    const int Ns[] = { 1, 9, 70 };
    for (int ti = 0; ti < N_TYPES; ti++) {
        const qt_type type = k_types[ti];
        const int64_t n_in = 512, n_out = 200;
        float *f = rnd_host(r, (size_t)(n_in * n_out), 0.05f);
        void *w = make_weight(type, f, n_in, n_out);
        qt_tensor t[NB];
        bind_all(t, type, w, n_in, n_out);
        for (size_t k = 0; k < QT_ARRAY_LEN(Ns); k++) {
            const int N = Ns[k];
            float *dy = rnd_host(r, (size_t)(N * n_out), 1.0f), *dx0 = rnd_host(r, (size_t)(N * n_in), 1.0f);
            float *res[NB];
            res[CPU] = ref_matmul(w, type, dy, n_in, n_out, N, true);
            for (int b = G32; b < NB; b++) {
                qt_backend *be = g_be[b];
                float *dyd = dev_up(be, dy, (size_t)(N * n_out)), *dxd = dev_up(be, dx0, (size_t)(N * n_in));
                be->ops->matmul_t(be, dxd, dyd, &t[b], N);
                res[b] = down(be, dxd, (size_t)(N * n_in));
                dfree(be, dyd, (size_t)(N * n_out));
                dfree(be, dxd, (size_t)(N * n_in));
                // the "+=" part is exact; measure the product alone
                for (size_t i = 0; i < (size_t)(N * n_in); i++) res[b][i] -= dx0[i];
            }
            char what[64];
            snprintf(what, sizeof(what), "%s N=%d", qt_type_name(type), N);
            compare("matmul_t", what, res, (size_t)(N * n_in), true);   // bf16, or TF32 for f32 weights
            free(dy); free(dx0);
        }
        unbind_all(t);
        free(f); free(w);
    }
}

// dw += dy^T x (adapter gradients: one side of the rank)
static void t_matmul_dw(qt_rng *r) {
    const int64_t shapes[][3] = { { 512, 16, 70 }, { 16, 300, 70 }, { 64, 172, 5 } };   // n_in, n_out, N
    for (size_t s = 0; s < QT_ARRAY_LEN(shapes); s++) {
        const int64_t n_in = shapes[s][0], n_out = shapes[s][1], N = shapes[s][2];
        float *dy = rnd_host(r, (size_t)(N * n_out), 1.0f), *x = rnd_host(r, (size_t)(N * n_in), 1.0f);
        float *dw0 = rnd_host(r, (size_t)(n_out * n_in), 1.0f), *res[NB];
        for (int b = 0; b < NB; b++) {
            qt_backend *be = g_be[b];
            float *dyd = dev_up(be, dy, (size_t)(N * n_out)), *xd = dev_up(be, x, (size_t)(N * n_in));
            float *dwd = dev_up(be, dw0, (size_t)(n_out * n_in));
            be->ops->matmul_dw(be, dwd, dyd, xd, n_in, n_out, N);
            res[b] = down(be, dwd, (size_t)(n_out * n_in));
            for (size_t i = 0; i < (size_t)(n_out * n_in); i++) res[b][i] -= dw0[i];
            dfree(be, dyd, (size_t)(N * n_out)); dfree(be, xd, (size_t)(N * n_in)); dfree(be, dwd, (size_t)(n_out * n_in));
        }
        char what[64];
        snprintf(what, sizeof(what), "in %lld out %lld N=%lld", (long long)n_in, (long long)n_out, (long long)N);
        compare("matmul_dw", what, res, (size_t)(n_out * n_in), true);
        free(dy); free(x); free(dw0);
    }
}

// ---- element-wise and row-wise layers ----

static void t_layers(qt_rng *r) {
    const int64_t N = 37, C = 300;
    const size_t nC = (size_t)(N * C);
    float *x = rnd_host(r, nC, 2.0f), *wf = rnd_host(r, (size_t)C, 1.0f), *dout = rnd_host(r, nC, 1.0f);
    float *acc0 = rnd_host(r, nC, 1.0f), *y2 = rnd_host(r, nC, 3.0f);
    qt_tensor w[NB];
    bind_all(w, QT_TYPE_F32, wf, C, 1);

    // rmsnorm (out and rstd), its backward
    float *ro[NB], *rr[NB], *rb[NB];
    float *rstd_cpu = NULL;
    for (int b = 0; b < NB; b++) {
        qt_backend *be = g_be[b];
        float *xd = dev_up(be, x, nC), *od = dev_nan(be, nC), *sd = dev_nan(be, (size_t)N);
        be->ops->rmsnorm(be, od, sd, xd, &w[b], N, C, 1e-5f);
        ro[b] = down(be, od, nC);
        rr[b] = down(be, sd, (size_t)N);
        if (b == CPU) rstd_cpu = down(be, sd, (size_t)N);
        // backward from the CPU's rstd on every side (isolates the backward)
        float *rs = dev_up(be, rstd_cpu, (size_t)N), *dd = dev_up(be, dout, nC), *dx = dev_up(be, acc0, nC);
        be->ops->rmsnorm_backward(be, dx, dd, xd, &w[b], rs, N, C);
        rb[b] = down(be, dx, nC);
        dfree(be, xd, nC); dfree(be, od, nC); dfree(be, sd, (size_t)N);
        dfree(be, rs, (size_t)N); dfree(be, dd, nC); dfree(be, dx, nC);
    }
    compare("rmsnorm", "out N=37 C=300", ro, nC, false);
    compare("rmsnorm", "rstd", rr, (size_t)N, false);
    compare("rmsnorm_backward", "dx +=", rb, nC, false);

    // add_bias, axpy, scale, swiglu, swiglu_backward (both and one gradient), get_rows
    const int rows[] = { 5, 0, 36, 5, 17 };
    float *o1[NB], *o2[NB], *o3[NB], *o4[NB], *o5[NB], *o6[NB], *o7[NB], *o8[NB];
    for (int b = 0; b < NB; b++) {
        qt_backend *be = g_be[b];
        float *xd = dev_up(be, x, nC), *yd = dev_up(be, y2, nC), *dd = dev_up(be, dout, nC);
        float *a = dev_up(be, acc0, nC);
        be->ops->add_bias(be, a, &w[b], N, C);
        o1[b] = down(be, a, nC);
        be->ops->axpy(be, (int64_t)nC, -0.75f, xd, a);
        o2[b] = down(be, a, nC);
        be->ops->scale(be, (int64_t)nC, 1.5f, a);
        o3[b] = down(be, a, nC);
        float *sw = dev_nan(be, nC);
        be->ops->swiglu(be, sw, xd, yd, (int64_t)nC);
        o4[b] = down(be, sw, nC);
        float *dg = dev_up(be, acc0, nC), *du = dev_up(be, y2, nC);
        be->ops->swiglu_backward(be, dg, du, dd, xd, yd, (int64_t)nC);
        o5[b] = down(be, dg, nC);
        o6[b] = down(be, du, nC);
        be->ops->swiglu_backward(be, dg, NULL, dd, xd, yd, (int64_t)nC);
        o7[b] = down(be, dg, nC);
        float *gr = dev_nan(be, 5 * (size_t)C);
        be->ops->get_rows(be, gr, xd, rows, 5, C);
        o8[b] = down(be, gr, 5 * (size_t)C);
        dfree(be, xd, nC); dfree(be, yd, nC); dfree(be, dd, nC); dfree(be, a, nC); dfree(be, sw, nC);
        dfree(be, dg, nC); dfree(be, du, nC); dfree(be, gr, 5 * (size_t)C);
    }
    compare("add_bias", "N=37 n=300", o1, nC, false);
    compare("axpy", "a=-0.75", o2, nC, false);
    compare("scale", "a=1.5", o3, nC, false);
    compare("swiglu", "n=11100", o4, nC, false);
    compare("swiglu_backward", "dgate +=", o5, nC, false);
    compare("swiglu_backward", "dup +=", o6, nC, false);
    compare("swiglu_backward", "dgate only (dup NULL)", o7, nC, false);
    compare("get_rows", "5 rows (one twice)", o8, 5 * (size_t)C, false);
    unbind_all(w);
    free(x); free(wf); free(dout); free(acc0); free(y2); free(rstd_cpu);
}

static void t_rope(qt_rng *r) {
    const int64_t N = 19;
    const int HS = 64, nh = 6;
    int pos[19];
    for (int i = 0; i < N; i++) pos[i] = (i * 37) % 301;
    float *ff = rnd_host(r, HS / 2, 1.0f);
    for (int i = 0; i < HS / 2; i++) ff[i] = 1.0f + 3.0f * fabsf(ff[i]);   // llama3-style factors >= 1
    qt_tensor fr[NB];
    bind_all(fr, QT_TYPE_F32, ff, HS / 2, 1);
    const size_t n = (size_t)(N * nh * HS);
    float *x = rnd_host(r, n, 1.0f);
    for (int withf = 0; withf < 2; withf++) {
        float *cs[NB], *res[4][NB];
        for (int b = 0; b < NB; b++) {
            qt_backend *be = g_be[b];
            float *csd = dev_nan(be, (size_t)(N * HS));
            be->ops->rope_table(be, csd, pos, N, HS, 10000.0f, withf ? &fr[b] : NULL);
            cs[b] = down(be, csd, (size_t)(N * HS));
            int k = 0;
            for (int neox = 0; neox < 2; neox++)
                for (int inv = 0; inv < 2; inv++, k++) {
                    float *xd = dev_up(be, x, n);
                    be->ops->rope(be, xd, csd, N, nh, HS, neox ? QT_ROPE_NEOX : QT_ROPE_NORM, inv);
                    res[k][b] = down(be, xd, n);
                    dfree(be, xd, n);
                }
            dfree(be, csd, (size_t)(N * HS));
        }
        compare("rope_table", withf ? "HS=64, frequency factors" : "HS=64", cs, (size_t)(N * HS), false);
        const char *names[4] = { "norm", "norm inverse", "neox", "neox inverse" };
        for (int k = 0; k < 4; k++) compare("rope", names[k], res[k], n, false);
    }
    unbind_all(fr);
    free(ff); free(x);
}

static void t_cross_entropy(qt_rng *r) {
    const int64_t N = 37, V = 1000;
    const size_t n = (size_t)(N * V);
    float *l = rnd_host(r, n, 6.0f);
    int32_t tg[37];
    for (int i = 0; i < N; i++) tg[i] = i % 9 == 4 ? -1 : (int32_t)((i * 131) % V);
    for (int alias = 0; alias < 2; alias++) {
        float *loss[NB], *dl[NB];
        for (int b = 0; b < NB; b++) {
            qt_backend *be = g_be[b];
            float *ld = dev_up(be, l, n), *lo = dev_nan(be, (size_t)N), *dd = alias ? ld : dev_nan(be, n);
            be->ops->cross_entropy(be, lo, dd, ld, tg, 0.25f, N, V);
            loss[b] = down(be, lo, (size_t)N);
            dl[b] = down(be, dd, n);
            dfree(be, ld, n); dfree(be, lo, (size_t)N);
            if (!alias) dfree(be, dd, n);
        }
        compare("cross_entropy", alias ? "losses (dlogits in place)" : "losses", loss, (size_t)N, false);
        compare("cross_entropy", alias ? "dlogits in place" : "dlogits", dl, n, false);
    }
    free(l);
}

static void t_dropout(qt_rng *r) {
    const size_t n = 100003;
    float *x = rnd_host(r, n, 1.0f);
    for (int b = G32; b < NB; b++) {
        float *out[2];
        for (int k = 0; k < 2; k++) {
            qt_backend *be = g_be[k ? b : CPU];
            float *xd = dev_up(be, x, n), *o = dev_nan(be, n);
            be->ops->dropout(be, o, xd, (int64_t)n, 0.3f, 0x123456789abcdefull);
            out[k] = down(be, o, n);
            dfree(be, xd, n); dfree(be, o, n);
        }
        report("dropout", "p=0.3, max |diff| (same mask)", b, max_abs_diff(out[1], out[0], n), 0.0);
        free(out[0]); free(out[1]);
    }
    free(x);
}

// ---- attention ----

static void t_attention_train(qt_rng *r, int NH, int NKV, int HS) {
    const int lens[] = { 1, 17, 70 }, n_seq = 3;
    int start[4] = { 0 };
    for (int i = 0; i < n_seq; i++) start[i + 1] = start[i] + lens[i];
    const int64_t N = start[n_seq];
    const qt_seqs sq = { n_seq, start, NULL, NULL };
    const size_t nq = (size_t)(N * NH * HS), nk = (size_t)(N * NKV * HS);
    float *q = rnd_host(r, nq, 1.0f), *k = rnd_host(r, nk, 1.0f), *v = rnd_host(r, nk, 1.0f);
    float *dout = rnd_host(r, nq, 1.0f), *dq0 = rnd_host(r, nq, 1.0f), *dk0 = rnd_host(r, nk, 1.0f);
    float *dv0 = rnd_host(r, nk, 1.0f);
    float *out[NB], *lse[NB], *dq[NB], *dk[NB], *dv[NB], *dk2[NB];
    for (int b = 0; b < NB; b++) {
        qt_backend *be = g_be[b];
        float *qd = dev_up(be, q, nq), *kd = dev_up(be, k, nk), *vd = dev_up(be, v, nk);
        float *od = dev_nan(be, nq), *ld = dev_nan(be, (size_t)(N * NH));
        be->ops->attention(be, od, ld, qd, kd, vd, &sq, NULL, 0, NH, NKV, HS);
        out[b] = down(be, od, nq);
        lse[b] = down(be, ld, (size_t)(N * NH));
        // the backward from the CPU's forward outputs on every side
        float *oc = dev_up(be, out[CPU], nq), *lc = dev_up(be, lse[CPU], (size_t)(N * NH)), *gd = dev_up(be, dout, nq);
        float *dqd = dev_up(be, dq0, nq), *dkd = dev_up(be, dk0, nk), *dvd = dev_up(be, dv0, nk);
        be->ops->attention_backward(be, dqd, dkd, dvd, gd, oc, lc, qd, kd, vd, &sq, NH, NKV, HS);
        dq[b] = down(be, dqd, nq);
        dk[b] = down(be, dkd, nk);
        dv[b] = down(be, dvd, nk);
        be->ops->upload(be, dkd, dk0, sizeof(float) * nk);
        be->ops->attention_backward(be, NULL, dkd, NULL, gd, oc, lc, qd, kd, vd, &sq, NH, NKV, HS);
        dk2[b] = down(be, dkd, nk);
        dfree(be, qd, nq); dfree(be, kd, nk); dfree(be, vd, nk); dfree(be, od, nq); dfree(be, ld, (size_t)(N * NH));
        dfree(be, oc, nq); dfree(be, lc, (size_t)(N * NH)); dfree(be, gd, nq);
        dfree(be, dqd, nq); dfree(be, dkd, nk); dfree(be, dvd, nk);
    }
    for (int b = 0; b < NB; b++) {
        for (size_t i = 0; i < nq; i++) dq[b][i] -= dq0[i];
        for (size_t i = 0; i < nk; i++) { dk[b][i] -= dk0[i]; dv[b][i] -= dv0[i]; dk2[b][i] -= dk0[i]; }
    }
    char what[80];
    snprintf(what, sizeof(what), "train NH=%d NKV=%d HS=%d T=1,17,70", NH, NKV, HS);
    compare("attention", what, out, nq, false);
    compare("attention", "lse", lse, (size_t)(N * NH), false);
    compare("attention_backward", "dq +=", dq, nq, false);
    compare("attention_backward", "dk +=", dk, nk, false);
    compare("attention_backward", "dv +=", dv, nk, false);
    compare("attention_backward", "dk only (dq, dv NULL)", dk2, nk, false);
    free(q); free(k); free(v); free(dout); free(dq0); free(dk0); free(dv0);
}

// Inference over a KV cache of 3 slots: prompts, decode steps, a second chunk.
static void t_attention_kv(qt_rng *r) {
    const int NH = 8, NKV = 2, HS = 64, L = 2, n_ctx = 64, il = 1;
    const int steps[3][3] = { { 5, 12, 1 }, { 1, 1, 1 }, { 0, 9, 0 } };   // new tokens per slot per call
    qt_kv *kv[NB];
    for (int b = 0; b < NB; b++) kv[b] = g_be[b]->ops->kv_init(g_be[b], L, 3, n_ctx, NKV, HS, QT_TYPE_F32);
    int past[3] = { 0, 0, 0 };
    for (int st = 0; st < 3; st++) {
        int start[4] = { 0 }, pos0[3], slot[3], n_seq = 0;
        for (int s = 0; s < 3; s++) {
            const int sl = (s + 2) % 3;   // slots in a shuffled order
            if (!steps[st][sl]) continue;
            slot[n_seq] = sl;
            pos0[n_seq] = past[sl];
            start[n_seq + 1] = start[n_seq] + steps[st][sl];
            n_seq++;
        }
        const int64_t N = start[n_seq];
        const qt_seqs sq = { n_seq, start, pos0, slot };
        const size_t nq = (size_t)(N * NH * HS), nk = (size_t)(N * NKV * HS);
        float *q = rnd_host(r, nq, 1.0f), *k = rnd_host(r, nk, 1.0f), *v = rnd_host(r, nk, 1.0f), *out[NB];
        for (int b = 0; b < NB; b++) {
            qt_backend *be = g_be[b];
            float *qd = dev_up(be, q, nq), *kd = dev_up(be, k, nk), *vd = dev_up(be, v, nk), *od = dev_nan(be, nq);
            be->ops->attention(be, od, NULL, qd, kd, vd, &sq, kv[b], il, NH, NKV, HS);
            out[b] = down(be, od, nq);
            dfree(be, qd, nq); dfree(be, kd, nk); dfree(be, vd, nk); dfree(be, od, nq);
        }
        for (int s = 0; s < n_seq; s++) past[slot[s]] += start[s + 1] - start[s];
        char what[64];
        snprintf(what, sizeof(what), "KV cache, call %d (%d sequences)", st + 1, n_seq);
        compare("attention", what, out, nq, false);
        free(q); free(k); free(v);
    }
    for (int b = 0; b < NB; b++) g_be[b]->ops->kv_free(g_be[b], kv[b]);
}

// ---- models ----

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// Logits of a prompt (every position) and of `n_dec` greedy decode steps.
static float *model_logits(qt_model *m, qt_backend *be, const int32_t *prompt, int n_prompt, int n_dec) {
    QT_ASSERT(qt_model_bind(m, be) == QT_OK);
    const int V = m->cfg.n_vocab;
    qt_ctx *c = qt_ctx_init(m, be, n_prompt + n_dec + 1, n_prompt, true);
    QT_ASSERT(c);
    float *res = malloc(sizeof(float) * (size_t)V * (size_t)(n_prompt + n_dec));
    const float *lg = qt_ctx_eval(c, prompt, n_prompt);
    QT_ASSERT(lg);
    memcpy(res, lg, sizeof(float) * (size_t)V * n_prompt);
    int32_t tok = argmax(lg + (size_t)(n_prompt - 1) * V, V);
    qt_ctx_free(c);
    c = qt_ctx_init(m, be, n_prompt + n_dec + 1, n_prompt, false);
    QT_ASSERT(qt_ctx_eval(c, prompt, n_prompt));
    for (int i = 0; i < n_dec; i++) {
        lg = qt_ctx_eval(c, &tok, 1);
        QT_ASSERT(lg);
        memcpy(res + (size_t)V * (n_prompt + i), lg, sizeof(float) * V);
        tok = argmax(lg, V);
    }
    qt_ctx_free(c);
    qt_model_bind(m, NULL);
    return res;
}

static void greedy(qt_model *m, qt_backend *be, int n, int32_t *out) {
    QT_ASSERT(qt_model_bind(m, be) == QT_OK);
    qt_ctx *c = qt_ctx_init(m, be, n + 1, 8, false);
    int32_t tok = 1;   // BOS
    for (int i = 0; i < n; i++) {
        const float *lg = qt_ctx_eval(c, &tok, 1);
        QT_ASSERT(lg);
        out[i] = tok = argmax(lg, m->cfg.n_vocab);
    }
    qt_ctx_free(c);
    qt_model_bind(m, NULL);
}

static void t_stories(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/tinystories-260K/stories260K.gguf", test_models_dir());
    qt_model *m = qt_model_load(path);
    if (!m) m = qt_model_load("models/stories260K.gguf");
    CHECK(m != NULL, "cannot load stories260K");
    if (!m) return;
    enum { NG = 64 };
    int32_t ids[NB][NG];
    for (int b = 0; b < NB; b++) greedy(m, g_be[b], NG, ids[b]);
    int same32 = 0, same16 = 0;
    while (same32 < NG && ids[G32][same32] == ids[CPU][same32]) same32++;
    while (same16 < NG && ids[G16][same16] == ids[CPU][same16]) same16++;
    char text[2048] = "";
    size_t len = 0;
    qt_detok d;
    qt_detok_init(&d);
    for (int i = 0; i < NG && len + 64 < sizeof(text); i++) len += qt_detok_push(&d, m->tok, ids[G32][i], text + len, sizeof(text) - len);
    text[len] = 0;
    printf("%-20s %-34s %-4s %d/%d tokens equal to the CPU's%s\n", "model", "stories260K greedy", "fp32", same32, NG,
           same32 == NG ? " ok" : " FAIL");
    printf("%-20s %-34s %-4s %d/%d tokens equal to the CPU's (not checked)\n", "model", "stories260K greedy", "bf16",
           same16, NG);
    printf("  gpu fp32 text: %s\n", text);
    CHECK(same32 == NG, "stories260K greedy text on the GPU (fp32) differs from the CPU's at token %d", same32);
    // every logit of a prompt, then decode steps
    int32_t prompt[24];
    for (int i = 0; i < 24; i++) prompt[i] = i ? ids[CPU][i - 1] : 1;
    float *lg[NB];
    for (int b = 0; b < NB; b++) lg[b] = model_logits(m, g_be[b], prompt, 24, 8);
    for (int b = G32; b < NB; b++)
        report("model", "stories260K logits (24 + 8 decode)", b,
               rel_l2(lg[b], lg[CPU], (size_t)m->cfg.n_vocab * 32), b == G32 ? TOL_MODEL_F32 : TOL_MODEL_BF16);
    for (int b = 0; b < NB; b++) free(lg[b]);
    qt_model_free(m);
}

// Batched inference on the GPU equals separate runs (4 slots, prompts then decode).
static void t_batched(qt_model *m, const char *name) {
    enum { NS = 4, STEPS = 4 };
    const int lens[NS] = { 9, 4, 12, 1 };
    for (int b = G32; b < NB; b++) {
        qt_backend *be = g_be[b];
        QT_ASSERT(qt_model_bind(m, be) == QT_OK);
        const int V = m->cfg.n_vocab;
        int32_t toks[NS][16];
        for (int s = 0; s < NS; s++)
            for (int i = 0; i < 16; i++) toks[s][i] = (int32_t)((s * 977 + i * 31 + 3) % V);
        float *want = malloc(sizeof(float) * (size_t)V * NS * (STEPS + 1)), *got = malloc(sizeof(float) * (size_t)V * NS * (STEPS + 1));
        for (int s = 0; s < NS; s++) {
            qt_ctx *c = qt_ctx_init(m, be, 32, 16, false);
            const float *lg = qt_ctx_eval(c, toks[s], lens[s]);
            memcpy(want + (size_t)s * V, lg, sizeof(float) * V);
            for (int k = 0; k < STEPS; k++) {
                lg = qt_ctx_eval(c, &toks[s][lens[s] + k], 1);
                memcpy(want + ((size_t)(k + 1) * NS + s) * V, lg, sizeof(float) * V);
            }
            qt_ctx_free(c);
        }
        qt_ctx *cb = qt_ctx_init_slots(m, be, 32, 32, NS, false);
        qt_ctx_seq seqs[NS];
        for (int i = 0; i < NS; i++) seqs[i] = (qt_ctx_seq){ toks[i], lens[i], i };
        const float *lg = qt_ctx_eval_batch(cb, seqs, NS);
        QT_ASSERT(lg);
        memcpy(got, lg, sizeof(float) * (size_t)V * NS);
        for (int k = 0; k < STEPS; k++) {
            for (int i = 0; i < NS; i++) seqs[i] = (qt_ctx_seq){ &toks[i][lens[i] + k], 1, i };
            lg = qt_ctx_eval_batch(cb, seqs, NS);
            QT_ASSERT(lg);
            memcpy(got + (size_t)(k + 1) * NS * V, lg, sizeof(float) * (size_t)V * NS);
        }
        qt_ctx_free(cb);
        qt_model_bind(m, NULL);
        char what[96];
        snprintf(what, sizeof(what), "%s batched 4 slots vs single", name);
        // the same GPU kernels except the decode product's token count (and
        // bf16 prompts of 9 and 12 tokens vs a 26-token batch)
        report("model", what, b, rel_l2(got, want, (size_t)V * NS * (STEPS + 1)), b == G32 ? TOL_MODEL_F32 : TOL_MODEL_BF16);
        free(want); free(got);
    }
}

// One training step's loss and adapter gradients (random non-zero A and B on
// q,k,v,o,gate), two packed sequences; then a 20-step AdamW curve.
static void t_lora(qt_model *m, qt_model *mref, const char *name, int len0, int len1, int n_steps) {
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = 8;
    cfg.alpha = 16;
    cfg.dropout = 0.1f;   // exercises the dropout op inside the model (same masks on every backend)
    QT_ASSERT(qt_lora_parse_targets(m->arch, "q,k,v,o,gate", &cfg.targets) == QT_OK);
    qt_lora *l = qt_lora_init(m, &cfg, 7);
    QT_ASSERT(l && qt_lora_enable_training(l) == QT_OK);
    qt_rng r;
    qt_rng_seed(&r, 11);
    float *p0 = rnd_host(&r, l->n_params, 0.05f);
    const int N = len0 + len1, V = m->cfg.n_vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N), *tgt = malloc(sizeof(int32_t) * (size_t)N);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(qt_rng_u64(&r) % (uint64_t)V);
    for (int i = 0; i < N; i++) tgt[i] = (i + 1 == len0 || i + 1 == N || i % 5 == 3) ? -1 : tok[i + 1];
    int seq[3] = { 0, len0, N };
    const qt_batch bt = { tok, tgt, seq, 2 };
    int64_t n_tgt = 0;
    for (int i = 0; i < N; i++) n_tgt += tgt[i] >= 0;
    float *grads[NB];
    double *curve[NB];
    for (int b = 0; b < NB; b++) {
        qt_backend *be = g_be[b];
        qt_model *mb = b == CPU ? mref : m;
        QT_ASSERT(qt_model_bind(mb, be) == QT_OK);
        memcpy(l->params, p0, sizeof(float) * l->n_params);
        memset(l->m, 0, sizeof(float) * l->n_params);
        memset(l->v, 0, sizeof(float) * l->n_params);
        qt_tmodel *tm = qt_tmodel_init(mb, l, be, N, QT_MAX(len0, len1), false);
        QT_ASSERT(tm);
        curve[b] = malloc(sizeof(double) * (size_t)(n_steps + 1));
        qt_adamw_params hp = qt_adamw_defaults();
        for (int s = 0; s <= n_steps; s++) {
            double ls;
            int64_t cnt;
            memset(l->grads, 0, sizeof(float) * l->n_params);
            CHECK(qt_tmodel_step(tm, &bt, true, true, 1.0f / (float)n_tgt, (uint64_t)s, &ls, &cnt) == QT_OK, "step");
            curve[b][s] = ls / (double)cnt;
            if (s == 0) grads[b] = memcpy(malloc(sizeof(float) * l->n_params), l->grads, sizeof(float) * l->n_params);
            if (s < n_steps) qt_adamw_step(l->params, l->grads, l->m, l->v, l->n_params, &hp, 1e-3f, s + 1);
        }
        qt_tmodel_free(tm);
        qt_model_bind(mb, NULL);
    }
    for (int b = G32; b < NB; b++) {
        // all gradients together, and every adapter tensor (A and B of each
        // layer and target) on its own, as max |diff| / max |ref| (test-lora's measure)
        double worst = 0, worst_l2 = 0;
        for (int il = l->first_layer; il < l->n_layer; il++)
            for (int t = 0; t < l->n_linears; t++) {
                const qt_lora_pair *p = qt_lora_get(l, il, t);
                if (!p->a) continue;
                const size_t offs[2] = { p->off, p->off + (size_t)cfg.rank * p->n_in };
                const size_t lens[2] = { (size_t)cfg.rank * p->n_in, (size_t)cfg.rank * p->n_out };
                for (int k = 0; k < 2; k++) {
                    double mx = 0;
                    for (size_t i = 0; i < lens[k]; i++) mx = fmax(mx, fabs(grads[CPU][offs[k] + i]));
                    double md = max_abs_diff(grads[b] + offs[k], grads[CPU] + offs[k], lens[k]);
                    worst = fmax(worst, mx > 0 ? md / mx : md);
                    worst_l2 = fmax(worst_l2, rel_l2(grads[b] + offs[k], grads[CPU] + offs[k], lens[k]));
                }
            }
        char what[96];
        snprintf(what, sizeof(what), "%s LoRA grads, all", name);
        report("model", what, b, rel_l2(grads[b], grads[CPU], l->n_params), b == G32 ? 1e-4 : TOL_GRAD);
        snprintf(what, sizeof(what), "%s LoRA grads, worst tensor", name);
        report("model", what, b, worst, b == G32 ? 1e-4 : TOL_GRAD_TENSOR);
        printf("  (worst tensor as ||diff|| / ||ref||: %.2e)\n", worst_l2);
        double cw = 0;
        for (int s = 0; s <= n_steps; s++) cw = fmax(cw, fabs(curve[b][s] - curve[CPU][s]));
        snprintf(what, sizeof(what), "%s %d-step loss, max |diff|", name, n_steps);
        report("model", what, b, cw, TOL_CURVE);
    }
    printf("  loss cpu %.5f -> %.5f, gpu fp32 %.5f -> %.5f, gpu bf16 %.5f -> %.5f\n", curve[CPU][0], curve[CPU][n_steps],
           curve[G32][0], curve[G32][n_steps], curve[G16][0], curve[G16][n_steps]);
    for (int b = 0; b < NB; b++) {
        free(grads[b]);
        free(curve[b]);
    }
    free(p0); free(tok); free(tgt);
    qt_lora_free(l);
}

static void t_models(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/tinystories-260K/stories260K.gguf", test_models_dir());
    qt_model *m = qt_model_load(path);
    if (!m) m = qt_model_load("models/stories260K.gguf");
    if (m) {
        t_batched(m, "stories260K");
        t_lora(m, m, "stories260K", 40, 24, 20);
        qt_model_free(m);
    }
    const char *list = getenv("QT_CUDA_TEST_MODELS");
    if (!list || !*list) {
        printf("(QT_CUDA_TEST_MODELS not set: random-weight models of real width not tested; scripts/gpu-check.sh sets it)\n");
        return;
    }
    char *all = qt_strdup(list), *save = NULL;
    int k = 0;
    for (char *p = strtok_r(all, ":", &save); p; p = strtok_r(NULL, ":", &save), k++) {
        qt_model *g = qt_model_load(p), *gref = qt_model_load(p);
        CHECK(g && gref, "cannot load %s", p);
        if (!g || !gref) {
            qt_model_free(g);
            qt_model_free(gref);
            continue;
        }
        float **ref_bufs = model_to_f32(gref);
        const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
        int32_t prompt[48];
        for (int i = 0; i < 48; i++) prompt[i] = (int32_t)((i * 7919 + 13) % g->cfg.n_vocab);
        float *lg[NB];
        for (int b = 0; b < NB; b++) lg[b] = model_logits(b == CPU ? gref : g, g_be[b], prompt, 48, 6);
        char what[96];
        snprintf(what, sizeof(what), "%s logits (48 + 6)", base);
        for (int b = G32; b < NB; b++)
            report("model", what, b, rel_l2(lg[b], lg[CPU], (size_t)g->cfg.n_vocab * 54),
                   b == G32 ? TOL_MODEL_F32 : TOL_MODEL_BF16);
        for (int b = 0; b < NB; b++) free(lg[b]);
        if (k == 0) {   // the first (Q4_0): QLoRA gradients and a 20-step curve
            t_batched(g, base);
            t_lora(g, gref, base, 40, 24, 20);
        }
        qt_model_free(g);
        qt_model_free(gref);
        free_bufs(ref_bufs);
    }
    qt_free(all);
}

int main(int argc, char **argv) {
    char why[512] = "";
    // QT_CUDA_TEST_SELF=1: CPU backends in place of the GPU's (float32, and the
    // CPU's bf16 precision), to check this test and its tolerances without a GPU
    const char *self_env = getenv("QT_CUDA_TEST_SELF");
    const bool self = self_env && *self_env && strcmp(self_env, "0") != 0;
    if (!self && qt_cuda_probe(why, sizeof(why)) == 0) {
        const char *req = getenv("QT_CUDA_TEST_REQUIRE");
        const bool must = req && *req && strcmp(req, "0") != 0;
        printf("test-cuda: %s: GPU tests not run\n", why);
        printf("%s: 0 passed, %d failed\n", __FILE__, must ? 1 : 0);
        return must ? 1 : 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--bandwidth")) {
        qt_cuda *c = qt_cuda_create(0, false, why, sizeof(why));
        double gbps = 0;
        if (!c || qt_cuda_copy_bandwidth(c, (size_t)2 << 30, 20, &gbps) != 0) {
            fprintf(stderr, "copy bandwidth: %s\n", c ? qt_cuda_error(c) : why);
            qt_cuda_destroy(c);
            return 1;
        }
        printf("copy bandwidth: %.0f GB/s (device to device, 2 GiB, bytes read + written, median of 20) on %s\n", gbps,
               qt_cuda_device_name(c));
        qt_cuda_destroy(c);
        return 0;
    }
    g_pool = qt_pool_init(qt_n_cpus() < 16 ? qt_n_cpus() : 16);
    g_be[CPU] = qt_backend_init("cpu", g_pool);
    qt_backend_cpu_kctx(g_be[CPU])->prec = QT_PREC_F32;
    if (self) {
        g_be[G32] = emu_backend(0);
        g_be[G16] = emu_backend(1);
        printf("self-check: CPU backends emulating the GPU's products (float32; bf16 / TF32 operands)\n");
    } else {
        g_be[G32] = qt_backend_cuda_init_prec(0, true);
        g_be[G16] = qt_backend_cuda_init_prec(0, false);
    }
    CHECK(g_be[G32] && g_be[G16], "CUDA backend init");
    if (!g_be[G32] || !g_be[G16]) TEST_END();
    qt_rng r;
    qt_rng_seed(&r, 2024);
    printf("%-20s %-34s %-4s ||gpu - cpu|| / ||cpu||\n", "op", "case", "mode");
    t_dequant(&r);
    t_matmul(&r);
    t_matmul_t(&r);
    t_matmul_dw(&r);
    t_layers(&r);
    t_rope(&r);
    t_cross_entropy(&r);
    t_dropout(&r);
    t_attention_train(&r, 8, 2, 64);
    t_attention_train(&r, 8, 4, 8);     // stories260K's head size
    t_attention_train(&r, 4, 4, 128);   // Llama-2-7B's
    t_attention_train(&r, 6, 2, 80);    // a head size that is no multiple of 32
    t_attention_kv(&r);
    t_stories();
    t_models();
    if (g_be[G16]->ops->mem_info) {
        size_t peak = 0;
        g_be[G16]->ops->mem_info(g_be[G16], NULL, NULL, &peak);
        printf("peak GPU memory of the bf16 backend: %.1f MiB\n", peak / 1048576.0);
    }
    for (int b = 0; b < NB; b++) qt_backend_free(g_be[b]);
    qt_pool_free(g_pool);
    TEST_END();
}
