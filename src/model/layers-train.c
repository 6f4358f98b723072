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
// Attention runs its products on qt_gemm_acc (the context's precision) in blocks of query
// (or key) rows, each over the causal part only (about half of T x T).
// Deliberately not: a KV cache, attention across sequences (one sequence per
// call), dropout, flash-style tiling (att (NH, T, T) is materialised).
#include "model/layers-train.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"

// ---- RMSNorm ----

void qt_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                         int T, int C) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C, *dot = dout + (size_t)t * C;
        float *dxt = dx + (size_t)t * C;
        float r = rstd[t];
        // y_i = x_i r w_i, dr/dx_j = -r^3 x_j / C
        double s = 0;
        for (int i = 0; i < C; i++) s += (double)dot[i] * w[i] * xt[i];
        float c = (float)(s * r * r * r / C);
        for (int i = 0; i < C; i++) dxt[i] += dot[i] * w[i] * r - c * xt[i];
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

// ---- attention ----

// Block edge of the cache-friendly transposes.
#define TR_BLOCK 16

typedef struct {
    float *dst;          // (n_cols, n_rows) dense
    const float *src;    // (n_rows, n_cols), rows src_stride floats apart
    size_t src_stride;
    int n_rows, n_cols;
} transpose_job;

// Each thread owns a range of dst rows (src columns): no shared writes.
static void transpose_worker(void *ctx, int ith, int nth) {
    const transpose_job *j = ctx;
    int n_cb = (j->n_cols + TR_BLOCK - 1) / TR_BLOCK;
    for (int cb = ith; cb < n_cb; cb += nth) {
        int c0 = cb * TR_BLOCK, c1 = QT_MIN(j->n_cols, c0 + TR_BLOCK);
        for (int r0 = 0; r0 < j->n_rows; r0 += TR_BLOCK) {
            int r1 = QT_MIN(j->n_rows, r0 + TR_BLOCK);
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) j->dst[(size_t)c * j->n_rows + r] = j->src[(size_t)r * j->src_stride + c];
        }
    }
}

static void transpose(const qt_kctx *kc, float *dst, const float *src, size_t src_stride, int n_rows, int n_cols) {
    transpose_job j = { dst, src, src_stride, n_rows, n_cols };
    if ((size_t)n_rows * n_cols < 4096) transpose_worker(&j, 0, 1);
    else qt_pool_run(kc->pool, transpose_worker, &j);
}

// Query rows per attention task: a multiple of the f32 gemm's 6-row micro-tile,
// small enough that skipping the masked columns right of each block saves
// most of the upper triangle.
#define ATT_TB 48

// Task i of n (most expensive first) runs on thread snake(i): 0, 1, ..,
// nth-1, nth-1, .., 0, 0, 1, .. so the costly early tasks spread evenly and
// the split does not depend on timing (results are the same for any run).
static bool my_task(int i, int ith, int nth) {
    int round = i / nth, pos = i % nth;
    return (round % 2 ? nth - 1 - pos : pos) == ith;
}

// Row of scores s (T): scale, causal mask (only 0..n-1 are kept), softmax.
// scale * max(s) is the max of the scaled row (scale > 0, rounding is monotonic).
static void softmax_row(const qt_kernel_table *K, float *s, int n, int T, float scale) {
    float mx = K->max_f32(n, s);
    double sum = K->exp_sum_f32(n, s, scale, scale * mx, s);
    K->scale_f32(n, (float)(1.0 / sum), s);
    for (int p = n; p < T; p++) s[p] = 0;
}

// Softmax backward in place on a row of dP: dS = P * (dP - sum(P * dP)) * scale
// over the causal window 0..n-1, zero above it.
static void softmax_backward_row(const qt_kernel_table *K, float *ds, const float *p, int n, int T, float scale) {
    float dot = K->dot_f32(n, p, ds);
    for (int s = 0; s < n; s++) ds[s] = p[s] * (ds[s] - dot) * scale;
    for (int s = n; s < T; s++) ds[s] = 0;
}

// C (rows, cols), row stride ldc: zeroed
static void zero_rows(float *C, size_t ldc, int rows, int cols) {
    for (int r = 0; r < rows; r++) memset(C + (size_t)r * ldc, 0, sizeof(float) * (size_t)cols);
}

// C (rows, cols), row stride ldc, += A (rows, cols) dense
static void add_rows(float *C, size_t ldc, const float *A, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++) C[(size_t)r * ldc + i] += A[(size_t)r * cols + i];
}

typedef struct {
    const qt_kernel_table *K;
    const qt_kctx *kc;                     // products: qt_gemm_acc in kc's precision
    float *out, *att, *dP;                 // forward: out, att; backward: dP (G, T, T) = dS
    float *dq, *dk, *dv;
    const float *dout, *P, *q, *k, *v;
    const float *Xt;                       // K_h^T (forward) or V_h^T (backward): (HS, T)
    int T, NH, NKV, HS, h;
    float scale;
} att_job;

// Forward, one task per (query head g of kv head h, block of ATT_TB query rows):
//   S = Q_g K_h^T over the causal columns, softmax in place (att), O_g = P V_h.
static void att_forward_worker(void *ctx, int ith, int nth) {
    const att_job *j = ctx;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + ATT_TB - 1) / ATT_TB;
    for (int i = 0; i < G * n_tb; i++) {
        if (!my_task(i, ith, nth)) continue;
        int g = i % G, b = n_tb - 1 - i / G, hg = j->h * G + g;
        int t0 = b * ATT_TB, t1 = QT_MIN(T, t0 + ATT_TB), nr = t1 - t0;
        float *S = j->att + ((size_t)hg * T + t0) * T;
        zero_rows(S, T, nr, t1);
        qt_gemm_acc(j->kc, nr, t1, HS, j->q + (size_t)t0 * qd + (size_t)hg * HS, qd, j->Xt, T, S, T);
        for (int r = 0; r < nr; r++) softmax_row(j->K, S + (size_t)r * T, t0 + r + 1, T, j->scale);
        float *O = j->out + (size_t)t0 * qd + (size_t)hg * HS;
        zero_rows(O, qd, nr, HS);
        qt_gemm_acc(j->kc, nr, HS, t1, S, T, j->v + (size_t)j->h * HS, kvd, O, qd);
    }
}

size_t qt_attention_train_forward_ws_size(int T, int NH, int NKV, int HS) {
    size_t rows = (size_t)(NH / NKV) * (size_t)T;
    return 2 * rows * (size_t)HS + (size_t)HS * (size_t)T;
}

void qt_attention_train_forward_ws(const qt_kctx *kc, float *out, float *att, const float *q, const float *k,
                                   const float *v, int T, int NH, int NKV, int HS, float *scratch) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    float *Kt = scratch;   // (HS, T)
    att_job j = { .K = kc->kt, .kc = kc, .out = out, .att = att, .q = q, .k = k, .v = v, .Xt = Kt,
                  .T = T, .NH = NH, .NKV = NKV, .HS = HS, .scale = 1.0f / sqrtf((float)HS) };
    for (int h = 0; h < NKV; h++) {
        transpose(kc, Kt, k + (size_t)h * HS, (size_t)NKV * HS, T, HS);
        j.h = h;
        qt_pool_run(kc->pool, att_forward_worker, &j);
    }
}

void qt_attention_train_forward(const qt_kctx *kc, float *out, float *att, const float *q, const float *k, const float *v,
                                int T, int NH, int NKV, int HS) {
    QT_ASSERT(NKV > 0 && NH % NKV == 0);
    float *ws = qt_malloc(sizeof(float) * qt_attention_train_forward_ws_size(T, NH, NKV, HS));
    qt_attention_train_forward_ws(kc, out, att, q, k, v, T, NH, NKV, HS, ws);
    qt_free(ws);
}

size_t qt_attention_train_scratch(int T, int NH, int NKV, int HS, int n_threads) {
    (void)n_threads;   // per-thread transposes are allocated by the workers
    size_t rows = (size_t)(NH / NKV) * (size_t)T, t = (size_t)T, hs = (size_t)HS;
    size_t bwd = hs * t + rows * t;
    return QT_MAX(bwd, qt_attention_train_forward_ws_size(T, NH, NKV, HS));
}

// Backward phase 1, per (query head g, block of query rows t0..t1):
//   dP = dO_g V_h^T over the causal columns, dS = softmax backward (in dP),
//   dQ_g += dS K_h.
static void att_backward_rows_worker(void *ctx, int ith, int nth) {
    const att_job *j = ctx;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + ATT_TB - 1) / ATT_TB;
    float *acc = NULL;
    for (int i = 0; i < G * n_tb; i++) {
        if (!my_task(i, ith, nth)) continue;
        int g = i % G, b = n_tb - 1 - i / G, hg = j->h * G + g;
        int t0 = b * ATT_TB, t1 = QT_MIN(T, t0 + ATT_TB), nr = t1 - t0;
        float *dS = j->dP + ((size_t)g * T + t0) * T;
        const float *P = j->P + ((size_t)g * T + t0) * T;
        zero_rows(dS, T, nr, t1);
        qt_gemm_acc(j->kc, nr, t1, HS, j->dout + (size_t)t0 * qd + (size_t)hg * HS, qd, j->Xt, T, dS, T);
        for (int r = 0; r < nr; r++)
            softmax_backward_row(j->K, dS + (size_t)r * T, P + (size_t)r * T, t0 + r + 1, T, j->scale);
        if (j->dq) {
            // summed apart and then added, so the result does not depend on dq's old value
            if (!acc) acc = qt_malloc(sizeof(float) * ATT_TB * (size_t)HS);
            memset(acc, 0, sizeof(float) * (size_t)nr * HS);
            qt_gemm_acc(j->kc, nr, HS, t1, dS, T, j->k + (size_t)j->h * HS, kvd, acc, HS);
            add_rows(j->dq + (size_t)t0 * qd + (size_t)hg * HS, qd, acc, nr, HS);
        }
    }
    qt_free(acc);
}

// dst (ns, T - s0) = src[s0:T, s0:s0+ns]^T, src rows T floats apart
static void transpose_tail(float *dst, const float *src, int T, int s0, int ns) {
    int nt = T - s0;
    for (int t0 = 0; t0 < nt; t0 += TR_BLOCK) {
        int t1 = QT_MIN(nt, t0 + TR_BLOCK);
        for (int t = t0; t < t1; t++) {
            const float *row = src + (size_t)(s0 + t) * T + s0;
            for (int i = 0; i < ns; i++) dst[(size_t)i * nt + t] = row[i];
        }
    }
}

// Backward phase 2, per block of key rows s0..s1 (rows of dK_h, dV_h), over the
// query heads g of the group in order (so the sums do not depend on threads):
//   dV_h[s] += sum_{t >= s} P_g[t, s] dO_g[t],  dK_h[s] += sum_{t >= s} dS_g[t, s] Q_g[t].
static void att_backward_keys_worker(void *ctx, int ith, int nth) {
    const att_job *j = ctx;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + ATT_TB - 1) / ATT_TB;
    float *Tr = NULL, *accv = NULL, *acck = NULL;
    for (int b = 0; b < n_tb; b++) {
        if (!my_task(b, ith, nth)) continue;
        if (!Tr) {
            Tr = qt_malloc(sizeof(float) * ATT_TB * (size_t)T);
            accv = qt_malloc(sizeof(float) * ATT_TB * (size_t)HS);
            acck = qt_malloc(sizeof(float) * ATT_TB * (size_t)HS);
        }
        int s0 = b * ATT_TB, ns = QT_MIN(T, s0 + ATT_TB) - s0, nt = T - s0;
        // summed apart over the group and then added (independent of dk, dv's old values)
        memset(accv, 0, sizeof(float) * (size_t)ns * HS);
        memset(acck, 0, sizeof(float) * (size_t)ns * HS);
        for (int g = 0; g < G; g++) {
            int hg = j->h * G + g;
            if (j->dv) {
                transpose_tail(Tr, j->P + (size_t)g * T * T, T, s0, ns);
                qt_gemm_acc(j->kc, ns, HS, nt, Tr, nt, j->dout + (size_t)s0 * qd + (size_t)hg * HS, qd, accv, HS);
            }
            if (j->dk) {
                transpose_tail(Tr, j->dP + (size_t)g * T * T, T, s0, ns);
                qt_gemm_acc(j->kc, ns, HS, nt, Tr, nt, j->q + (size_t)s0 * qd + (size_t)hg * HS, qd, acck, HS);
            }
        }
        if (j->dv) add_rows(j->dv + (size_t)s0 * kvd + (size_t)j->h * HS, kvd, accv, ns, HS);
        if (j->dk) add_rows(j->dk + (size_t)s0 * kvd + (size_t)j->h * HS, kvd, acck, ns, HS);
    }
    qt_free(Tr); qt_free(accv); qt_free(acck);
}

// Per kv head h, with P_g = att rows of query head g of the group:
//   phase 1 (query-row blocks): dP = dO V_h^T, dS = softmax backward, dQ += dS K_h;
//   phase 2 (key-row blocks):   dV_h += P_g^T dO_g, dK_h += dS_g^T Q_g.
// Each product runs over the causal part only (columns <= the block's last
// row in phase 1, rows >= the block's first key in phase 2).
void qt_attention_train_backward(const qt_kctx *kc, float *dq, float *dk, float *dv, float *scratch, const float *dout,
                                 const float *att, const float *q, const float *k, const float *v, int T, int NH,
                                 int NKV, int HS) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    if (!dq && !dk && !dv) return;
    const int G = NH / NKV;
    float *Vt = scratch;                     // (HS, T)
    float *dP = Vt + (size_t)HS * T;         // (G, T, T): dS after phase 1
    att_job j = { .K = kc->kt, .kc = kc, .dP = dP, .dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k,
                  .v = v, .Xt = Vt, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .scale = 1.0f / sqrtf((float)HS) };
    for (int h = 0; h < NKV; h++) {
        j.h = h;
        j.P = att + (size_t)h * G * T * T;
        if (dq || dk) {
            transpose(kc, Vt, v + (size_t)h * HS, (size_t)NKV * HS, T, HS);
            qt_pool_run(kc->pool, att_backward_rows_worker, &j);
        }
        if (dk || dv) qt_pool_run(kc->pool, att_backward_keys_worker, &j);
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
