// layers-train.c: backward passes of the Llama block's layers (see
// layers-train.h) plus the training-time attention forward, which keeps the
// softmax probabilities the backward needs, and the cross-entropy loss.
// Follows llm.c's train_gpt2.c (layernorm_backward, attention_backward,
// crossentropy_softmax_backward), adapted to RMSNorm, RoPE, SwiGLU and
// grouped-query attention; PyTorch's definitions are the reference
// (LlamaRMSNorm, apply_rotary_pos_emb, F.scaled_dot_product_attention with
// is_causal, F.silu, F.cross_entropy with ignore_index).
// exp, softmax rows, SwiGLU and the cross-entropy rows run on the kernel
// table's element-wise helpers (SIMD exp within QT_EXP_MAX_REL_ERR; sums of
// exponentials still in double).
// The training attention (streaming, flash-style) is in attention-train.c.
// Deliberately not: a KV cache, attention across sequences (one sequence per
// call).
#include "backend/layers-train.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"

// ---- RMSNorm ----

void qt_rmsnorm_backward(const qt_kernel_table *K, float *dx, float *dw, const float *dout, const float *x,
                         const float *w, const float *rstd, int T, int C) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C, *dot = dout + (size_t)t * C;
        float r = rstd[t];
        K->rmsnorm_backward_f32(C, dot, xt, w, r, dx + (size_t)t * C);
        if (dw)
            for (int i = 0; i < C; i++) dw[i] += dot[i] * xt[i] * r;
    }
}

// ---- RoPE ----

void qt_rope_backward(float *dx, const float *cs, int T, int NHX, int HS, qt_rope_type type) {
    // forward (a, b) -> (a co - b si, a si + b co); the transpose rotates by -angle
    int half = HS / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * HS;
        for (int h = 0; h < NHX; h++) {
            float *v = dx + ((size_t)t * NHX + h) * HS;
            for (int i = 0; i < half; i++) {
                float co = c[2 * i], si = c[2 * i + 1];
                int i0 = type == QT_ROPE_NEOX ? i : 2 * i;
                int i1 = type == QT_ROPE_NEOX ? i + half : 2 * i + 1;
                float da = v[i0], db = v[i1];
                v[i0] = da * co + db * si;
                v[i1] = -da * si + db * co;
            }
        }
    }
}

// ---- SwiGLU ----

void qt_swiglu_backward(const qt_kernel_table *K, float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int64_t N) {
    for (int64_t i = 0; i < N; i += QT_SWIGLU_CHUNK)
        K->swiglu_backward_f32((int)QT_MIN(QT_SWIGLU_CHUNK, N - i), dout + i, gate + i, up + i, dgate ? dgate + i : NULL,
                               dup ? dup + i : NULL);
}

typedef struct {
    const qt_kernel_table *kt;
    float *dgate, *dup;
    const float *dout, *gate, *up;
} swiglu_bwd_job;

static void swiglu_bwd_range(void *ctx, int64_t i0, int64_t i1) {
    const swiglu_bwd_job *j = ctx;
    qt_swiglu_backward(j->kt, j->dgate ? j->dgate + i0 : NULL, j->dup ? j->dup + i0 : NULL, j->dout + i0, j->gate + i0,
                       j->up + i0, i1 - i0);
}

// element-wise: the split (64-byte multiples) does not change any result
void qt_swiglu_backward_pool(const qt_kctx *kc, float *dgate, float *dup, const float *dout, const float *gate,
                             const float *up, int64_t N) {
    swiglu_bwd_job j = { kc->kt, dgate, dup, dout, gate, up };
    qt_pool_for(kc->pool, N, 16, QT_SWIGLU_POOL_MIN, swiglu_bwd_range, &j);
}

// ---- cross-entropy ----

// One row: loss = max + log(sum exp(l - max)) - l[y]; d (may be l, or NULL)
// = softmax * sc - sc * onehot(y).
static void cross_entropy_row(const qt_kernel_table *K, float *loss, float *d, const float *l, int32_t y, float sc,
                              int V) {
    QT_ASSERT(y < V);
    if (y < 0) {
        *loss = 0;
        if (d) memset(d, 0, sizeof(float) * V);
        return;
    }
    float mx = K->max_f32(V, l), ly = l[y];   // l[y] read before d (== l) is written
    double sum = K->exp_sum_f32(V, l, 1.0f, mx, d);
    *loss = (float)((double)mx + log(sum) - ly);
    if (d) {
        K->scale_f32(V, (float)(sc / sum), d);
        d[y] -= sc;
    }
}

typedef struct {
    const qt_kernel_table *kt;
    float *losses, *dlogits;
    const float *logits, *dscale;
    const int32_t *targets;
    int T, V;
} ce_job;

// Rows round-robin over the threads; each row is computed whole by one thread,
// so results do not depend on the thread count.
static void cross_entropy_worker(void *ctx, int ith, int nth) {
    const ce_job *j = ctx;
    const qt_kernel_table *K = j->kt;
    for (int t = ith; t < j->T; t += nth)
        cross_entropy_row(K, &j->losses[t], j->dlogits ? j->dlogits + (size_t)t * j->V : NULL,
                          j->logits + (size_t)t * j->V, j->targets[t], j->dscale ? j->dscale[t] : 1.0f, j->V);
}

void qt_cross_entropy(const qt_kernel_table *kt, float *losses, float *dlogits, const float *logits,
                      const int32_t *targets, const float *dscale, int T, int V) {
    ce_job j = { kt, losses, dlogits, logits, dscale, targets, T, V };
    cross_entropy_worker(&j, 0, 1);
}

void qt_cross_entropy_pool(const qt_kctx *kc, float *losses, float *dlogits, const float *logits, const int32_t *targets,
                           const float *dscale, int T, int V) {
    ce_job j = { kc->kt, losses, dlogits, logits, dscale, targets, T, V };
    if (T < 2 || qt_pool_n_threads(kc->pool) == 1) cross_entropy_worker(&j, 0, 1);
    else qt_pool_run(kc->pool, cross_entropy_worker, &j);
}

// ---- LoRA weight gradient ----

// A side of at most this many (the adapter's rank) makes qt_matmul_dw a gemm
// with the narrow operand transposed (cheap: T x rank floats).
#define DW_NARROW 64
// Column ranges per thread in the gemm paths are multiples of this.
#define DW_ALIGN 64

typedef struct {
    const qt_kernel_table *kt;
    const qt_kctx *kc;   // products: qt_gemm_acc in kc's precision
    float *dw;
    const float *dy, *x;
    float *nt;           // the narrow operand transposed: (rank, T)
    float *tmp;          // narrow n_in: dw^T (n_in, n_out) before the transposed add
    int n_in, n_out, T;
} dw_job;

// [*c0, *c1) of n columns for thread ith of nth, multiples of DW_ALIGN
static void dw_split(int n, int ith, int nth, int *c0, int *c1) {
    int units = (n + DW_ALIGN - 1) / DW_ALIGN, per = units / nth, extra = units % nth;
    int u0 = ith * per + QT_MIN(ith, extra), u1 = u0 + per + (ith < extra);
    *c0 = QT_MIN(n, u0 * DW_ALIGN);
    *c1 = QT_MIN(n, u1 * DW_ALIGN);
}

// n_out narrow: dw (n_out, n_in) += dy^T (n_out, T) @ x (T, n_in), columns of dw split
static void dw_narrow_out_worker(void *ctx, int ith, int nth) {
    const dw_job *j = ctx;
    int c0, c1;
    dw_split(j->n_in, ith, nth, &c0, &c1);
    if (c1 > c0) qt_gemm_acc(j->kc, j->n_out, c1 - c0, j->T, j->nt, j->T, j->x + c0, j->n_in, j->dw + c0, j->n_in);
}

// n_in narrow: tmp (n_in, n_out) = x^T (n_in, T) @ dy (T, n_out), then
// dw[o][i] += tmp[i][o]; columns of tmp (rows of dw) split
static void dw_narrow_in_worker(void *ctx, int ith, int nth) {
    const dw_job *j = ctx;
    int o0, o1;
    dw_split(j->n_out, ith, nth, &o0, &o1);
    if (o1 <= o0) return;
    for (int i = 0; i < j->n_in; i++) memset(j->tmp + (size_t)i * j->n_out + o0, 0, sizeof(float) * (size_t)(o1 - o0));
    qt_gemm_acc(j->kc, j->n_in, o1 - o0, j->T, j->nt, j->T, j->dy + o0, j->n_out, j->tmp + o0, j->n_out);
    for (int o = o0; o < o1; o++)
        for (int i = 0; i < j->n_in; i++) j->dw[(size_t)o * j->n_in + i] += j->tmp[(size_t)i * j->n_out + o];
}

// Neither side narrow: per thread a range of dw rows, axpy per (token, row).
static void matmul_dw_worker(void *ctx, int ith, int nth) {
    const dw_job *j = ctx;
    const qt_kernel_table *K = j->kt;
    int per = j->n_out / nth, extra = j->n_out % nth;
    int o0 = ith * per + QT_MIN(ith, extra), o1 = o0 + per + (ith < extra);
    // a block of dw rows (about 32 KiB) stays in cache while every token passes over it
    int nb = QT_MAX(1, 8192 / j->n_in);
    for (int b0 = o0; b0 < o1; b0 += nb) {
        int b1 = QT_MIN(o1, b0 + nb);
        for (int t = 0; t < j->T; t++) {
            const float *xt = j->x + (size_t)t * j->n_in, *dyt = j->dy + (size_t)t * j->n_out;
            for (int o = b0; o < b1; o++)
                if (dyt[o] != 0) K->axpy_f32(j->n_in, dyt[o], xt, j->dw + (size_t)o * j->n_in);
        }
    }
}

// dst (n, T) = src (T, n)^T
static void transpose_small(float *dst, const float *src, int T, int n) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) dst[(size_t)i * T + t] = src[(size_t)t * n + i];
}

void qt_matmul_dw(const qt_kctx *kc, float *dw, const float *dy, const float *x, int n_in, int n_out, int T) {
    QT_ASSERT(n_in > 0 && n_out >= 0 && T >= 0);
    if (n_out == 0 || T == 0) return;
    dw_job j = { kc->kt, kc, dw, dy, x, NULL, NULL, n_in, n_out, T };
    if (n_out <= DW_NARROW) {
        j.nt = qt_malloc(sizeof(float) * (size_t)n_out * T);
        transpose_small(j.nt, dy, T, n_out);
        qt_pool_run(kc->pool, dw_narrow_out_worker, &j);
    } else if (n_in <= DW_NARROW) {
        j.nt = qt_malloc(sizeof(float) * (size_t)n_in * T);
        j.tmp = qt_malloc(sizeof(float) * (size_t)n_in * n_out);
        transpose_small(j.nt, x, T, n_in);
        qt_pool_run(kc->pool, dw_narrow_in_worker, &j);
    } else {
        qt_pool_run(kc->pool, matmul_dw_worker, &j);
    }
    qt_free(j.nt);
    qt_free(j.tmp);
}

// ---- dropout: masks from a counter hash, so backward needs no stored mask ----

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t qt_dropout_mix(uint64_t z) { return mix64(z); }

void qt_dropout_forward(float *dst, const float *src, int64_t n, float p, uint64_t key) {
    const float inv = 1.0f / (1.0f - p);
    const uint64_t thresh = (uint64_t)((double)p * 18446744073709551615.0);
    for (int64_t i = 0; i < n; i++)
        dst[i] = mix64(key + (uint64_t)i * 0x9e3779b97f4a7c15ull) < thresh ? 0.0f : src[i] * inv;
}
