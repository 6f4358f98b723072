// layers-norm-act.c: LayerNorm with bias and the tanh-approximated GELU
// family, forward and backward (see layers-norm-act.h).
// References: torch.nn.functional.layer_norm (biased variance, eps inside
// the square root), llm.c's layernorm_forward / layernorm_backward;
// torch.nn.functional.gelu(approximate="tanh") = transformers' gelu_new and
// gelu_pytorch_tanh, llm.c's gelu_forward / gelu_backward. Row statistics are
// accumulated in double; the element-wise functions run on the pool in
// 64-byte aligned ranges, so results do not depend on the thread count.
// tests/test-layers.c holds every backward against finite differences.
#include "backend/layers-norm-act.h"

#include <math.h>

#include "base/base.h"

void qt_layernorm_forward(float *out, float *rstd, const float *x, const float *w, const float *b, int64_t T,
                          int64_t C, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C;
        float *ot = out + (size_t)t * C;
        double s = 0, ss = 0;
        for (int64_t i = 0; i < C; i++) s += xt[i];
        const double mean = s / C;
        for (int64_t i = 0; i < C; i++) ss += (xt[i] - mean) * (xt[i] - mean);
        const float r = (float)(1.0 / sqrt(ss / C + eps)), m = (float)mean;
        if (rstd) rstd[t] = r;
        for (int64_t i = 0; i < C; i++) ot[i] = (xt[i] - m) * r * w[i] + (b ? b[i] : 0.0f);
    }
}

void qt_layernorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                           int64_t T, int64_t C) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C, *dt = dout + (size_t)t * C;
        float *dxt = dx + (size_t)t * C;
        double s = 0;
        for (int64_t i = 0; i < C; i++) s += xt[i];
        const float m = (float)(s / C), r = rstd[t];
        // xhat = (x - m) r, g = dout * w: dx = r (g - mean(g) - xhat mean(g xhat))
        double sg = 0, sgx = 0;
        for (int64_t i = 0; i < C; i++) {
            double g = (double)dt[i] * w[i], xh = (double)(xt[i] - m) * r;
            sg += g;
            sgx += g * xh;
        }
        const float mg = (float)(sg / C), mgx = (float)(sgx / C);
        for (int64_t i = 0; i < C; i++) {
            float xh = (xt[i] - m) * r;
            dxt[i] += r * (dt[i] * w[i] - mg - xh * mgx);
        }
    }
}

// sqrt(2 / pi) and the cubic coefficient of the tanh approximation
#define GELU_K 0.7978845608028654f
#define GELU_A 0.044715f

static inline float gelu1(float x) { return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_A * x * x * x))); }

// d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2), t = tanh(k (x + a x^3))
static inline float gelu_grad1(float x) {
    float t = tanhf(GELU_K * (x + GELU_A * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
}

// Elements per range below which one thread does the whole vector.
#define ACT_POOL_MIN 16384

typedef struct {
    float *out, *dout2;
    const float *a, *b, *dout;
} act_job;

static void gelu_range(void *ctx, int64_t i0, int64_t i1) {
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->out[i] = gelu1(j->a[i]);
}

static void gelu_bwd_range(void *ctx, int64_t i0, int64_t i1) {
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->out[i] += j->dout[i] * gelu_grad1(j->a[i]);
}

static void geglu_range(void *ctx, int64_t i0, int64_t i1) {
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->out[i] = gelu1(j->a[i]) * j->b[i];
}

// out = dgate, dout2 = dup (either NULL)
static void geglu_bwd_range(void *ctx, int64_t i0, int64_t i1) {
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        if (j->out) j->out[i] += j->dout[i] * j->b[i] * gelu_grad1(j->a[i]);
        if (j->dout2) j->dout2[i] += j->dout[i] * gelu1(j->a[i]);
    }
}

void qt_gelu_forward(const qt_kctx *kc, float *out, const float *x, int64_t n) {
    act_job j = { .out = out, .a = x };
    qt_pool_for(kc->pool, n, 16, ACT_POOL_MIN, gelu_range, &j);
}

void qt_gelu_backward(const qt_kctx *kc, float *dx, const float *dout, const float *x, int64_t n) {
    act_job j = { .out = dx, .a = x, .dout = dout };
    qt_pool_for(kc->pool, n, 16, ACT_POOL_MIN, gelu_bwd_range, &j);
}

void qt_geglu_forward(const qt_kctx *kc, float *out, const float *gate, const float *up, int64_t n) {
    act_job j = { .out = out, .a = gate, .b = up };
    qt_pool_for(kc->pool, n, 16, ACT_POOL_MIN, geglu_range, &j);
}

void qt_geglu_backward(const qt_kctx *kc, float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n) {
    if (!dgate && !dup) return;
    act_job j = { .out = dgate, .dout2 = dup, .a = gate, .b = up, .dout = dout };
    qt_pool_for(kc->pool, n, 16, ACT_POOL_MIN, geglu_bwd_range, &j);
}
