// backend-cpu.c: the CPU backend (backend.h): each op is a layer function of
// layers.c / layers-train.c / attention-train.c / layers-norm-act.c or a kernel driver of
// src/kernels, run on the backend's qt_kctx (kernel table, thread pool,
// precision, stop flag). Memory is host memory: tensors are used where they
// lie (the memory-mapped file), transfers are memcpy.
// KV cache: per layer and slot, keys (NKV, n_ctx, HS) head-major and values
// transposed (NKV, HS, n_ctx), so attention's two products are matmuls over
// contiguous rows (layers.h). In fp16 where the inference products already
// round activations (QT_PREC_FAST on weights whose vec_dot_type is not F32:
// Q8 for the quantized types, bf16/fp16 for BF16/F16): llama.cpp's default
// cache type, half the memory and half the bytes a long context's decode
// reads. In fp32 where the products keep fp32 activations (F32 and NF4
// weights, or QT_PREC_F32 / BF16 set before the cache is made): those
// numerics are PyTorch's fp32, the tests' reference.
#include "backend/backend-cpu.h"

#include <string.h>

#include "backend/layers-norm-act.h"
#include "backend/layers-moe.h"
#include "backend/layers-train.h"
#include "backend/layers.h"
#include "base/base.h"

typedef struct {
    qt_kctx kc;
    float *scratch;        // attention scratch, grown on demand
    size_t scratch_n;      // floats
} cpu_impl;

struct qt_kv {
    int n_layer, n_slots, n_ctx, NKV, HS;
    void *k, *v;           // (n_layer, n_slots, NKV, n_ctx, HS), (n_layer, n_slots, NKV, HS, n_ctx)
    size_t bytes;          // of each
    qt_type wtype;         // the model's projection weights (kv_init)
    qt_type type;          // of the cache's elements: F32 or F16 (qt_backend_cpu_kv_type)
};

static cpu_impl *impl(qt_backend *be) { return be->impl; }
static const qt_kctx *kctx(qt_backend *be) { return &impl(be)->kc; }

static float *scratch(qt_backend *be, size_t n) {
    cpu_impl *c = impl(be);
    if (c->scratch_n < n) {
        qt_free(c->scratch);
        c->scratch = qt_malloc(sizeof(float) * n);
        c->scratch_n = n;
    }
    return c->scratch;
}

// ---- memory ----

static void *cpu_alloc(qt_backend *be, size_t n, const char *what) { return qt_alloc_big(n ? n : 64, what); }
static void cpu_free(qt_backend *be, void *p, size_t n) {
    if (p) qt_free_big(p, n ? n : 64);
}
static void cpu_copy(qt_backend *be, void *dst, const void *src, size_t n) {
    if (n && dst != src) memmove(dst, src, n);
}
static void cpu_zero(qt_backend *be, void *p, size_t n) {
    if (n) memset(p, 0, n);
}
static int cpu_tensor_bind(qt_backend *be, qt_tensor *t) {
    t->dev = t->data;
    return QT_OK;
}
static void cpu_tensor_unbind(qt_backend *be, qt_tensor *t) { t->dev = NULL; }
static void cpu_set_stop(qt_backend *be, const atomic_int *stop) { impl(be)->kc.stop = stop; }

// ---- forward ----

static void cpu_embed(qt_backend *be, float *out, const int32_t *tokens, int64_t N, const qt_tensor *w) {
    qt_embedding_forward(kctx(be)->kt, out, tokens, N, w);
}

// RMSNorm over the pool, rows split (a row's result does not depend on the
// split): single-threaded, the norms of a training step left the other
// thread waiting for ~3% of the step (TinyLlama, T = 512).
#define RMS_POOL_MIN 16
typedef struct {
    const qt_kernel_table *K;
    float *out, *rstd;                 // forward: y, rstd; backward: dx
    const float *x, *w, *dout, *rstd_in;   // backward: dout and the saved rstd
    int64_t C;
    float eps;
} rms_job;

static void rms_fwd_range(void *ctx, int64_t t0, int64_t t1) {
    const rms_job *j = ctx;
    qt_rmsnorm_forward(j->K, j->out + t0 * j->C, j->rstd ? j->rstd + t0 : NULL, j->x + t0 * j->C, j->w, t1 - t0, j->C,
                       j->eps);
}

static void rms_bwd_range(void *ctx, int64_t t0, int64_t t1) {
    const rms_job *j = ctx;
    qt_rmsnorm_backward(j->K, j->out + t0 * j->C, NULL, j->dout + t0 * j->C, j->x + t0 * j->C, j->w, j->rstd_in + t0,
                        (int)(t1 - t0), (int)j->C);
}

static void cpu_rmsnorm(qt_backend *be, float *out, float *rstd, const float *x, const qt_tensor *w, int64_t N,
                        int64_t C, float eps) {
    QT_ASSERT(w->type == QT_TYPE_F32 && w->ne0 == C);
    rms_job j = { .K = kctx(be)->kt, .out = out, .rstd = rstd, .x = x, .w = w->dev, .C = C, .eps = eps };
    qt_pool_for(kctx(be)->pool, N, 1, RMS_POOL_MIN, rms_fwd_range, &j);
}

static void cpu_matmul(qt_backend *be, const float *x, int64_t n_in, int64_t N, const qt_mm_out *outs, int n) {
    QT_ASSERT(n >= 1 && n <= QT_MM_MAX_OUTS);
    qt_matmul_out mo[QT_MM_MAX_OUTS];
    for (int i = 0; i < n; i++) {
        QT_ASSERT(outs[i].w->ne0 == n_in && outs[i].w->dev);
        mo[i] = (qt_matmul_out){ outs[i].y, outs[i].w->dev, outs[i].w->type, outs[i].w->ne1 };
    }
    qt_matmul_multi(kctx(be), x, n_in, N, mo, n);
}

static void cpu_add_bias(qt_backend *be, float *y, const qt_tensor *b, int64_t N, int64_t n) {
    QT_ASSERT(b->type == QT_TYPE_F32 && b->ne0 == n);
    const float *bb = b->dev;
    for (int64_t t = 0; t < N; t++) qt_residual_forward(y + (size_t)t * n, bb, n);
}

// Element-wise and per-token ops over the pool (no result depends on the
// split): single-threaded, the residual adds, RoPE and the KV stores left the
// other thread waiting for ~1% of a BF16 prompt (TinyLlama, T = 512).
#define ELT_POOL_MIN (1 << 14)
#define TOK_POOL_MIN 16

typedef struct {
    const qt_kernel_table *K;
    float a;
    const float *x;
    float *y;
} axpy_job;

static void axpy_range(void *ctx, int64_t i0, int64_t i1) {
    const axpy_job *j = ctx;
    for (int64_t i = i0; i < i1; i += 1 << 30) j->K->axpy_f32((int)QT_MIN(1 << 30, i1 - i), j->a, j->x + i, j->y + i);
}

static void cpu_axpy(qt_backend *be, int64_t n, float a, const float *x, float *y) {
    axpy_job j = { kctx(be)->kt, a, x, y };
    qt_pool_for(kctx(be)->pool, n, 16, ELT_POOL_MIN, axpy_range, &j);
}

static void cpu_scale(qt_backend *be, int64_t n, float a, float *y) {
    const qt_kernel_table *K = kctx(be)->kt;
    for (int64_t i = 0; i < n; i += 1 << 30) K->scale_f32((int)QT_MIN(1 << 30, n - i), a, y + i);
}

static void cpu_rope_table(qt_backend *be, float *cs, const int *pos, int64_t N, int HS, float theta,
                           const qt_tensor *freqs) {
    qt_rope_cache(cs, pos, N, HS, theta, freqs && freqs->dev ? freqs->dev : NULL);
}

typedef struct {
    float *x;
    const float *cs;
    int nh, HS;
    qt_rope_type type;
    bool inverse;
} rope_job;

static void rope_range(void *ctx, int64_t t0, int64_t t1) {
    const rope_job *j = ctx;
    float *x = j->x + (size_t)t0 * j->nh * j->HS;
    const float *cs = j->cs + (size_t)t0 * j->HS;
    if (j->inverse) qt_rope_backward(x, cs, (int)(t1 - t0), j->nh, j->HS, j->type);
    else qt_rope_forward(x, cs, t1 - t0, j->nh, j->HS, j->type);
}

static void cpu_rope(qt_backend *be, float *x, const float *cs, int64_t N, int nh, int HS, qt_rope_type type,
                     bool inverse) {
    QT_ASSERT(N <= INT32_MAX);
    rope_job j = { x, cs, nh, HS, type, inverse };
    qt_pool_for(kctx(be)->pool, N, 1, TOK_POOL_MIN, rope_range, &j);
}

// Head size bound of the fp16 stores' row buffers (every supported model's is <= 256).
#define KV_MAX_HS 1024

qt_type qt_backend_cpu_kv_type(const qt_kctx *kc, qt_type wtype) {
    QT_ASSERT((unsigned)wtype < QT_TYPE_COUNT);
    bool rounded = kc->prec == QT_PREC_FAST && kc->kt->type[wtype].vec_dot_type != QT_TYPE_F32;
    return rounded ? QT_TYPE_F16 : QT_TYPE_F32;
}

size_t qt_backend_cpu_kv_bytes(const qt_kctx *kc, int n_layer, int n_slots, int n_ctx, int NKV, int HS,
                               qt_type wtype) {
    return 2 * (size_t)n_layer * n_slots * (size_t)n_ctx * NKV * HS * qt_row_size(qt_backend_cpu_kv_type(kc, wtype), 1);
}

// one (layer, slot)'s keys / values
static size_t kv_offset(const qt_kv *kv, int il, int slot) {
    return ((size_t)il * kv->n_slots + slot) * (size_t)kv->NKV * kv->n_ctx * kv->HS * qt_row_size(kv->type, 1);
}
static void *kv_k(const qt_kv *kv, int il, int slot) { return (char *)kv->k + kv_offset(kv, il, slot); }
static void *kv_v(const qt_kv *kv, int il, int slot) { return (char *)kv->v + kv_offset(kv, il, slot); }

typedef struct {
    void *kc, *vt;
    const float *k, *v;
    int pos0, NKV, HS, n_ctx;
    qt_type type;
    qt_from_float_fn to_f16;
} store_kv_job;

// One row of HS floats as fp16, values beyond fp16's range saturated to
// +-65504 (not inf: one outlier would turn the attention's sums into NaN);
// NaN stays NaN.
static void row_to_f16(qt_from_float_fn to_f16, const float *x, uint16_t *dst, int HS) {
    float c[KV_MAX_HS];
    for (int i = 0; i < HS; i++) c[i] = x[i] > 65504.0f ? 65504.0f : x[i] < -65504.0f ? -65504.0f : x[i];
    to_f16(c, dst, HS);
}

// tokens [t0, t1) of k, v (T, NKV*HS) -> kc (NKV, n_ctx, HS) rows pos0 + t,
// vt (NKV, HS, n_ctx) columns pos0 + t
static void store_kv_range(void *ctx, int64_t t0, int64_t t1) {
    const store_kv_job *j = ctx;
    const int NKV = j->NKV, HS = j->HS, n_ctx = j->n_ctx;
    for (int64_t t = t0; t < t1; t++)
        for (int h = 0; h < NKV; h++) {
            const float *ks = j->k + ((size_t)t * NKV + h) * HS, *vs = j->v + ((size_t)t * NKV + h) * HS;
            const size_t kofs = ((size_t)h * n_ctx + j->pos0 + t) * HS, vofs = (size_t)h * HS * n_ctx + j->pos0 + t;
            if (j->type == QT_TYPE_F16) {
                uint16_t vh[KV_MAX_HS], *vd = (uint16_t *)j->vt + vofs;
                row_to_f16(j->to_f16, ks, (uint16_t *)j->kc + kofs, HS);
                row_to_f16(j->to_f16, vs, vh, HS);
                for (int d = 0; d < HS; d++) vd[(size_t)d * n_ctx] = vh[d];
            } else {
                float *vd = (float *)j->vt + vofs;
                memcpy((float *)j->kc + kofs, ks, sizeof(float) * HS);
                for (int d = 0; d < HS; d++) vd[(size_t)d * n_ctx] = vs[d];
            }
        }
}

static void store_kv(const qt_kctx *kc, const qt_kv *kv, void *kcache, void *vt, const float *k, const float *v, int T,
                     int pos0) {
    store_kv_job j = { kcache, vt, k, v, pos0, kv->NKV, kv->HS, kv->n_ctx, kv->type,
                       kc->kt->type[QT_TYPE_F16].from_float };
    QT_ASSERT(kv->type == QT_TYPE_F32 || j.to_f16 != NULL);
    qt_pool_for(kc->pool, T, 1, TOK_POOL_MIN, store_kv_range, &j);
}

// Prompts of at least this many tokens from an empty cache take the
// streaming attention (attention-train.c) rather than the cache's: TinyLlama
// BF16 pp512 on Zen 5, 2 threads, fp32 products the same speed, bf16 ~5% faster.
#define ATTN_STREAM_MIN_T 64

static void cpu_attention(qt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                          const qt_seqs *s, qt_kv *kv, int il, int NH, int NKV, int HS) {
    const qt_kctx *kc = kctx(be);
    const size_t qd = (size_t)NH * HS, kvd = (size_t)NKV * HS;
    if (!kv) {
        for (int i = 0; i < s->n_seq; i++) {
            int o = s->start[i], T = s->start[i + 1] - o;
            QT_ASSERT(!s->pos0 || s->pos0[i] == 0);
            if (T == 0) continue;
            float *ws = scratch(be, qt_attention_train_scratch(T, NH, NKV, HS));
            qt_attention_train_forward(kc, out + (size_t)o * qd, lse ? lse + (size_t)o * NH : NULL, q + (size_t)o * qd,
                                       k + (size_t)o * kvd, v + (size_t)o * kvd, T, NH, NKV, HS, ws);
        }
        return;
    }
    QT_ASSERT(kv->NKV == NKV && kv->HS == HS && il >= 0 && il < kv->n_layer);
    // bf16 products where the model's prompt projections take them on the
    // CPU's bf16; otherwise fp32 products, on an fp16 cache too (its keys
    // and values widened, the queries and probabilities not rounded)
    qt_kctx akc = *kc;
    if (akc.prec == QT_PREC_FAST) akc.prec = qt_matmul_bf16_hw(akc.kt, kv->wtype) ? QT_PREC_BF16 : QT_PREC_F32;
    qt_attn_seq stack[16];
    qt_attn_seq *as = s->n_seq <= 16 ? stack : qt_malloc(sizeof(qt_attn_seq) * (size_t)s->n_seq);
    int max_T = 0, n_as = 0;
    for (int i = 0; i < s->n_seq; i++) {
        int o = s->start[i], T = s->start[i + 1] - o, pos0 = s->pos0 ? s->pos0[i] : 0;
        int slot = s->slot ? s->slot[i] : i;
        QT_ASSERT(slot >= 0 && slot < kv->n_slots && pos0 >= 0 && pos0 + T <= kv->n_ctx);
        void *kc_ = kv_k(kv, il, slot), *vt = kv_v(kv, il, slot);
        store_kv(kc, kv, kc_, vt, k + (size_t)o * kvd, v + (size_t)o * kvd, T, pos0);
        if (pos0 == 0 && T >= ATTN_STREAM_MIN_T) {
            // a prompt from an empty cache sees only its own keys: the
            // streaming attention on k, v as they are (no scores kept)
            float *ws = scratch(be, qt_attention_train_scratch(T, NH, NKV, HS));
            qt_attention_train_forward(&akc, out + (size_t)o * qd, NULL, q + (size_t)o * qd, k + (size_t)o * kvd,
                                       v + (size_t)o * kvd, T, NH, NKV, HS, ws);
            continue;
        }
        as[n_as++] = (qt_attn_seq){ out + (size_t)o * qd, q + (size_t)o * qd, kc_, vt, T, pos0 };
        max_T = QT_MAX(max_T, T);
    }
    if (n_as > 0) {
        float *ws = scratch(be, qt_attention_scratch(max_T, NH, NKV, HS, kv->n_ctx, qt_pool_n_threads(kc->pool)));
        qt_attention_forward(&akc, as, n_as, NH, NKV, HS, kv->n_ctx, kv->type, ws);
    }
    if (as != stack) qt_free(as);
}

static void cpu_swiglu(qt_backend *be, float *out, const float *gate, const float *up, int64_t n) {
    qt_swiglu_forward_pool(kctx(be), out, gate, up, n);
}

static void cpu_get_rows(qt_backend *be, float *dst, const float *src, const int *rows, int n_rows, int64_t C) {
    for (int i = 0; i < n_rows; i++) memmove(dst + (size_t)i * C, src + (size_t)rows[i] * C, sizeof(float) * (size_t)C);
}

static void cpu_layernorm(qt_backend *be, float *out, float *rstd, const float *x, const qt_tensor *w,
                          const qt_tensor *b, int64_t N, int64_t C, float eps) {
    QT_ASSERT(w->type == QT_TYPE_F32 && w->ne0 == C && (!b->dev || (b->type == QT_TYPE_F32 && b->ne0 == C)));
    qt_layernorm_forward(out, rstd, x, w->dev, b->dev, N, C, eps);
}

static void cpu_gelu(qt_backend *be, float *out, const float *x, int64_t n) { qt_gelu_forward(kctx(be), out, x, n); }

static void cpu_geglu(qt_backend *be, float *out, const float *gate, const float *up, int64_t n) {
    qt_geglu_forward(kctx(be), out, gate, up, n);
}

static void cpu_copy_2d(qt_backend *be, float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows,
                        int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        memmove(dst + (size_t)(r * ld_dst), src + (size_t)(r * ld_src), sizeof(float) * (size_t)cols);
}

// ---- backward ----

static void cpu_matmul_t(qt_backend *be, float *dx, const float *dy, const qt_tensor *w, int64_t N) {
    qt_matmul_t(kctx(be), dx, dy, w->dev, w->type, w->ne0, w->ne1, N);
}

static void cpu_matmul_dw(qt_backend *be, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out,
                          int64_t N) {
    QT_ASSERT(n_in <= INT32_MAX && n_out <= INT32_MAX && N <= INT32_MAX);
    qt_matmul_dw(kctx(be), dw, dy, x, (int)n_in, (int)n_out, (int)N);
}

static void cpu_rmsnorm_backward(qt_backend *be, float *dx, const float *dout, const float *x, const qt_tensor *w,
                                 const float *rstd, int64_t N, int64_t C) {
    QT_ASSERT(N <= INT32_MAX && C <= INT32_MAX);
    rms_job j = { .K = kctx(be)->kt, .out = dx, .rstd_in = rstd, .x = x, .w = w->dev, .dout = dout, .C = C };
    qt_pool_for(kctx(be)->pool, N, 1, RMS_POOL_MIN, rms_bwd_range, &j);
}

static void cpu_attention_backward(qt_backend *be, float *dq, float *dk, float *dv, const float *dout,
                                   const float *out, const float *lse, const float *q, const float *k, const float *v,
                                   const qt_seqs *s, int NH, int NKV, int HS) {
    const size_t qd = (size_t)NH * HS, kvd = (size_t)NKV * HS;
    for (int i = 0; i < s->n_seq; i++) {
        int o = s->start[i], T = s->start[i + 1] - o;
        if (T == 0) continue;
        float *ws = scratch(be, qt_attention_train_scratch(T, NH, NKV, HS));
        qt_attention_train_backward(kctx(be), dq ? dq + (size_t)o * qd : NULL, dk ? dk + (size_t)o * kvd : NULL,
                                    dv ? dv + (size_t)o * kvd : NULL, dout + (size_t)o * qd, out + (size_t)o * qd,
                                    lse + (size_t)o * NH, q + (size_t)o * qd, k + (size_t)o * kvd, v + (size_t)o * kvd,
                                    T, NH, NKV, HS, ws);
    }
}

static void cpu_swiglu_backward(qt_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                                const float *up, int64_t n) {
    qt_swiglu_backward_pool(kctx(be), dgate, dup, dout, gate, up, n);
}

static void cpu_layernorm_backward(qt_backend *be, float *dx, const float *dout, const float *x, const qt_tensor *w,
                                   const float *rstd, int64_t N, int64_t C) {
    qt_layernorm_backward(dx, dout, x, w->dev, rstd, N, C);
}

static void cpu_gelu_backward(qt_backend *be, float *dx, const float *dout, const float *x, int64_t n) {
    qt_gelu_backward(kctx(be), dx, dout, x, n);
}

static void cpu_geglu_backward(qt_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n) {
    qt_geglu_backward(kctx(be), dgate, dup, dout, gate, up, n);
}

static void cpu_cross_entropy(qt_backend *be, float *losses, float *dlogits, const float *logits,
                              const int32_t *targets, float dscale, int64_t N, int64_t V) {
    QT_ASSERT(N <= INT32_MAX && V <= INT32_MAX);
    float *sc = qt_malloc(sizeof(float) * (size_t)QT_MAX(N, 1));
    for (int64_t i = 0; i < N; i++) sc[i] = dscale;
    qt_cross_entropy_pool(kctx(be), losses, dlogits, logits, targets, sc, (int)N, (int)V);
    qt_free(sc);
}

static void cpu_dropout(qt_backend *be, float *dst, const float *src, int64_t n, float p, uint64_t key) {
    qt_dropout_forward(dst, src, n, p, key);
}

// ---- mixture of experts ----

static void cpu_moe_route(qt_backend *be, float *w, int32_t *ids, const float *logits, int64_t N, int E, int K,
                          bool norm) {
    qt_moe_route_forward(w, ids, logits, N, E, K, norm);
}
static void cpu_moe_route_backward(qt_backend *be, float *dlogits, const float *dw, const float *w, const int32_t *ids,
                                   const float *logits, int64_t N, int E, int K, bool norm) {
    qt_moe_route_backward(dlogits, dw, w, ids, logits, N, E, K, norm);
}
static void cpu_moe_gather(qt_backend *be, float *xg, const float *x, const int32_t *pos, int64_t N, int K, int64_t C) {
    qt_moe_gather_forward(kctx(be), xg, x, pos, N, K, C);
}
static void cpu_moe_gather_backward(qt_backend *be, float *dx, const float *dxg, const int32_t *pos, int64_t N, int K,
                                    int64_t C) {
    qt_moe_gather_backward(kctx(be), dx, dxg, pos, N, K, C);
}
static void cpu_moe_combine(qt_backend *be, float *out, const float *y, const int32_t *pos, const float *w, int64_t N,
                            int K, int64_t C) {
    qt_moe_combine_forward(kctx(be), out, y, pos, w, N, K, C);
}
static void cpu_moe_combine_backward(qt_backend *be, float *dy, float *dw, const float *dout, const float *y,
                                     const int32_t *pos, const float *w, int64_t N, int K, int64_t C) {
    qt_moe_combine_backward(kctx(be), dy, dw, dout, y, pos, w, N, K, C);
}

// ---- KV cache ----

static qt_kv *cpu_kv_init(qt_backend *be, int n_layer, int n_slots, int n_ctx, int NKV, int HS, qt_type wtype) {
    QT_ASSERT(n_layer > 0 && n_slots > 0 && n_ctx > 0 && NKV > 0 && HS > 0 && HS <= KV_MAX_HS);
    qt_kv *kv = qt_calloc(1, sizeof(qt_kv));
    *kv = (qt_kv){ n_layer, n_slots, n_ctx, NKV, HS, NULL, NULL,
                   qt_backend_cpu_kv_bytes(kctx(be), n_layer, n_slots, n_ctx, NKV, HS, wtype) / 2, wtype,
                   qt_backend_cpu_kv_type(kctx(be), wtype) };
    kv->k = qt_alloc_big(kv->bytes, "the KV cache (keys)");
    kv->v = kv->k ? qt_alloc_big(kv->bytes, "the KV cache (values)") : NULL;
    if (!kv->v) {
        if (kv->k) qt_free_big(kv->k, kv->bytes);
        qt_free(kv);
        return NULL;
    }
    return kv;
}

static void cpu_kv_free(qt_backend *be, qt_kv *kv) {
    if (!kv) return;
    qt_free_big(kv->k, kv->bytes);
    qt_free_big(kv->v, kv->bytes);
    qt_free(kv);
}

static void cpu_sync(qt_backend *be) {}

static void cpu_destroy(qt_backend *be) {
    qt_free(impl(be)->scratch);
    qt_free(be->impl);
    qt_free(be);
}

static void cpu_upload(qt_backend *be, void *dst, const void *src, size_t n) { cpu_copy(be, dst, src, n); }

static const qt_backend_ops cpu_ops = {
    .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_upload, .download = cpu_upload, .copy = cpu_copy,
    .zero = cpu_zero, .tensor_bind = cpu_tensor_bind, .tensor_unbind = cpu_tensor_unbind, .set_stop = cpu_set_stop,
    .embed = cpu_embed, .rmsnorm = cpu_rmsnorm, .matmul = cpu_matmul, .add_bias = cpu_add_bias, .axpy = cpu_axpy,
    .scale = cpu_scale, .rope_table = cpu_rope_table, .rope = cpu_rope, .attention = cpu_attention,
    .swiglu = cpu_swiglu, .get_rows = cpu_get_rows,
    .matmul_t = cpu_matmul_t, .matmul_dw = cpu_matmul_dw, .rmsnorm_backward = cpu_rmsnorm_backward,
    .attention_backward = cpu_attention_backward, .swiglu_backward = cpu_swiglu_backward,
    .cross_entropy = cpu_cross_entropy, .dropout = cpu_dropout,
    .layernorm = cpu_layernorm, .gelu = cpu_gelu, .geglu = cpu_geglu, .copy_2d = cpu_copy_2d,
    .layernorm_backward = cpu_layernorm_backward, .gelu_backward = cpu_gelu_backward,
    .geglu_backward = cpu_geglu_backward,
    .kv_init = cpu_kv_init, .kv_free = cpu_kv_free,
    .sync = cpu_sync, .destroy = cpu_destroy,
    .moe_route = cpu_moe_route, .moe_route_backward = cpu_moe_route_backward, .moe_gather = cpu_moe_gather,
    .moe_gather_backward = cpu_moe_gather_backward, .moe_combine = cpu_moe_combine,
    .moe_combine_backward = cpu_moe_combine_backward,
};

qt_backend *qt_backend_cpu_init(qt_pool *pool) {
    qt_backend *be = qt_calloc(1, sizeof(qt_backend));
    cpu_impl *c = qt_calloc(1, sizeof(cpu_impl));
    c->kc = qt_kctx_default(pool);
    *be = (qt_backend){ .ops = &cpu_ops, .name = "cpu", .host_memory = true, .n_threads = qt_pool_n_threads(pool),
                        .impl = c };
    return be;
}

qt_kctx *qt_backend_cpu_kctx(qt_backend *be) { return be && be->ops == &cpu_ops ? &impl(be)->kc : NULL; }
