// layers-moe.c: sparse mixture-of-experts layers on the CPU (layers-moe.h).
// The router follows transformers' MixtralSparseMoeBlock.forward:
//   p = softmax(router_logits, dim=1, dtype=float)
//   w, ids = torch.topk(p, top_k);  w /= w.sum(-1)   (norm; Qwen2-MoE skips it
//   when norm_topk_prob is false)
// and its backward is that expression's derivative (the top-k selection is
// piecewise constant): with S = sum of the selected p and c = sum_j dw_j w_j,
//   norm:  dlogit_i = w_i (dw_i - c) for selected i, 0 otherwise
//   plain: dlogit_i = p_i (g_i - sum_j p_j dw_j), g_i = dw_i if selected else 0.
// The experts' outputs are combined as its index_add_ of expert(x) * w, in a
// fixed j order per token. Deliberately not: capacity limits or dropped
// tokens (Mixtral has none), the auxiliary load-balancing loss.
#include "backend/layers-moe.h"

#include <math.h>
#include <string.h>

#include "base/base.h"

// Tokens per thread below which the pool is not woken (a decode step's few rows).
#define MOE_POOL_MIN 16

// p (E) = softmax(z) with the max subtracted; sum accumulated in double.
static void softmax_row(float *p, const float *z, int E) {
    float mx = z[0];
    for (int i = 1; i < E; i++) mx = z[i] > mx ? z[i] : mx;
    double s = 0;
    for (int i = 0; i < E; i++) s += p[i] = expf(z[i] - mx);
    for (int i = 0; i < E; i++) p[i] /= (float)s;
}

void qt_moe_route_forward(float *w, int32_t *ids, const float *logits, int64_t N, int E, int K, bool norm) {
    QT_ASSERT(E >= 1 && K >= 1 && K <= E);
    float pstack[256];
    float *p = E <= 256 ? pstack : qt_malloc(sizeof(float) * (size_t)E);
    for (int64_t t = 0; t < N; t++) {
        softmax_row(p, logits + (size_t)t * E, E);
        float *wt = w + (size_t)t * K;
        int32_t *it = ids + (size_t)t * K;
        // selection by repeated max: K is small (2 for Mixtral); ties keep the lower expert
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int i = 0; i < E; i++) {
                bool taken = false;
                for (int k = 0; k < j; k++) taken = taken || it[k] == i;
                if (!taken && (best < 0 || p[i] > p[best])) best = i;
            }
            it[j] = best;
            wt[j] = p[best];
        }
        if (norm) {
            float s = 0;
            for (int j = 0; j < K; j++) s += wt[j];
            for (int j = 0; j < K; j++) wt[j] /= s;
        }
    }
    if (p != pstack) qt_free(p);
}

void qt_moe_route_backward(float *dlogits, const float *dw, const float *w, const int32_t *ids, const float *logits,
                           int64_t N, int E, int K, bool norm) {
    float pstack[256];
    float *p = E <= 256 ? pstack : qt_malloc(sizeof(float) * (size_t)E);
    for (int64_t t = 0; t < N; t++) {
        const float *wt = w + (size_t)t * K, *dwt = dw + (size_t)t * K;
        const int32_t *it = ids + (size_t)t * K;
        float *dz = dlogits + (size_t)t * E;
        memset(dz, 0, sizeof(float) * (size_t)E);
        if (norm) {
            double c = 0;
            for (int j = 0; j < K; j++) c += (double)dwt[j] * wt[j];
            for (int j = 0; j < K; j++) dz[it[j]] = (float)(wt[j] * (dwt[j] - c));
        } else {
            softmax_row(p, logits + (size_t)t * E, E);
            double c = 0;
            for (int j = 0; j < K; j++) c += (double)dwt[j] * p[it[j]];
            for (int i = 0; i < E; i++) dz[i] = (float)(-p[i] * c);
            for (int j = 0; j < K; j++) dz[it[j]] = (float)(p[it[j]] * (dwt[j] - c));
        }
    }
    if (p != pstack) qt_free(p);
}

typedef struct {
    const qt_kernel_table *kt;
    float *a;            // gather: xg; gather backward: dx; combine: out; combine backward: dy
    float *dw;           // combine backward
    const float *b;      // gather: x; gather backward: dxg; combine: y; combine backward: dout
    const float *y;      // combine backward
    const int32_t *pos;
    const float *w;
    int K;
    int64_t C;
} moe_job;

static void gather_range(void *arg, int64_t t0, int64_t t1) {
    const moe_job *j = arg;
    for (int64_t t = t0; t < t1; t++)
        for (int k = 0; k < j->K; k++)
            memcpy(j->a + (size_t)j->pos[t * j->K + k] * j->C, j->b + (size_t)t * j->C, sizeof(float) * (size_t)j->C);
}

static void gather_back_range(void *arg, int64_t t0, int64_t t1) {
    const moe_job *j = arg;
    QT_ASSERT(j->C <= INT32_MAX);
    for (int64_t t = t0; t < t1; t++)
        for (int k = 0; k < j->K; k++)
            j->kt->axpy_f32((int)j->C, 1.0f, j->b + (size_t)j->pos[t * j->K + k] * j->C, j->a + (size_t)t * j->C);
}

static void combine_range(void *arg, int64_t t0, int64_t t1) {
    const moe_job *j = arg;
    for (int64_t t = t0; t < t1; t++)
        for (int k = 0; k < j->K; k++)
            j->kt->axpy_f32((int)j->C, j->w[t * j->K + k], j->b + (size_t)j->pos[t * j->K + k] * j->C,
                            j->a + (size_t)t * j->C);
}

static void combine_back_range(void *arg, int64_t t0, int64_t t1) {
    const moe_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        const float *d = j->b + (size_t)t * j->C;
        for (int k = 0; k < j->K; k++) {
            size_t r = (size_t)j->pos[t * j->K + k] * j->C;
            float *dy = j->a + r;
            const float wk = j->w[t * j->K + k];
            for (int64_t i = 0; i < j->C; i++) dy[i] = wk * d[i];
            j->dw[t * j->K + k] = j->kt->dot_f32((int)j->C, d, j->y + r);
        }
    }
}

static void run(const qt_kctx *kc, int64_t N, qt_range_fn fn, moe_job *j) {
    QT_ASSERT(j->C >= 0 && j->C <= INT32_MAX && j->K >= 1);
    j->kt = kc->kt;
    qt_pool_for(kc->pool, N, 1, MOE_POOL_MIN, fn, j);
}

void qt_moe_gather_forward(const qt_kctx *kc, float *xg, const float *x, const int32_t *pos, int64_t N, int K,
                           int64_t C) {
    moe_job j = { .a = xg, .b = x, .pos = pos, .K = K, .C = C };
    run(kc, N, gather_range, &j);
}

void qt_moe_gather_backward(const qt_kctx *kc, float *dx, const float *dxg, const int32_t *pos, int64_t N, int K,
                            int64_t C) {
    moe_job j = { .a = dx, .b = dxg, .pos = pos, .K = K, .C = C };
    run(kc, N, gather_back_range, &j);
}

void qt_moe_combine_forward(const qt_kctx *kc, float *out, const float *y, const int32_t *pos, const float *w,
                            int64_t N, int K, int64_t C) {
    moe_job j = { .a = out, .b = y, .pos = pos, .w = w, .K = K, .C = C };
    run(kc, N, combine_range, &j);
}

void qt_moe_combine_backward(const qt_kctx *kc, float *dy, float *dw, const float *dout, const float *y,
                             const int32_t *pos, const float *w, int64_t N, int K, int64_t C) {
    moe_job j = { .a = dy, .dw = dw, .b = dout, .y = y, .pos = pos, .w = w, .K = K, .C = C };
    run(kc, N, combine_back_range, &j);
}
