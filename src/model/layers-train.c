// layers-train.c: backward passes of the Llama block's layers (see
// layers-train.h) plus the training-time attention forward, which keeps the
// softmax probabilities the backward needs, and the cross-entropy loss.
// Follows llm.c's train_gpt2.c (layernorm_backward, attention_backward,
// crossentropy_softmax_backward), adapted to RMSNorm, RoPE, SwiGLU and
// grouped-query attention; PyTorch's definitions are the reference
// (LlamaRMSNorm, apply_rotary_pos_emb, F.scaled_dot_product_attention with
// is_causal, F.silu, F.cross_entropy with ignore_index).
// Deliberately not: a KV cache, attention across sequences (one sequence per
// call), dropout, flash-style tiling (att (NH, T, T) is materialised), or
// skipping the masked upper triangle in the matmuls (they run full T x T).
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

static void transpose(qt_pool *pool, float *dst, const float *src, size_t src_stride, int n_rows, int n_cols) {
    transpose_job j = { dst, src, src_stride, n_rows, n_cols };
    if ((size_t)n_rows * n_cols < 4096) transpose_worker(&j, 0, 1);
    else qt_pool_run(pool, transpose_worker, &j);
}

// Heads h0 .. h0+G-1 of x (T, NHX*HS) <-> a dense (G*T, HS) block, row g*T + t.
static void gather_heads(float *dst, const float *x, int T, int NHX, int h0, int G, int HS) {
    for (int g = 0; g < G; g++)
        for (int t = 0; t < T; t++)
            memcpy(dst + ((size_t)g * T + t) * HS, x + ((size_t)t * NHX + h0 + g) * HS, sizeof(float) * HS);
}

static void scatter_heads(float *x, const float *src, int T, int NHX, int h0, int G, int HS, bool add) {
    for (int g = 0; g < G; g++)
        for (int t = 0; t < T; t++) {
            float *d = x + ((size_t)t * NHX + h0 + g) * HS;
            const float *s = src + ((size_t)g * T + t) * HS;
            if (add) for (int i = 0; i < HS; i++) d[i] += s[i];
            else memcpy(d, s, sizeof(float) * HS);
        }
}

typedef struct {
    float *S;            // (rows, T): scores in, probabilities (forward) or dS (backward) out
    const float *P;      // backward: probabilities (rows, T)
    int rows, T;
    float scale;
} rows_job;

// Row r belongs to token t = r % T: scale, causal mask (s > t), softmax.
static void softmax_worker(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    for (int r = ith; r < j->rows; r += nth) {
        float *s = j->S + (size_t)r * j->T;
        int n = r % j->T + 1;
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            s[p] *= j->scale;
            mx = s[p] > mx ? s[p] : mx;
        }
        double sum = 0;
        for (int p = 0; p < n; p++) {
            s[p] = expf(s[p] - mx);
            sum += s[p];
        }
        float inv = (float)(1.0 / sum);
        for (int p = 0; p < n; p++) s[p] *= inv;
        for (int p = n; p < j->T; p++) s[p] = 0;
    }
}

// Softmax backward in place on dP: dS = P * (dP - sum(P * dP)) * scale over the
// causal window, zero above it.
static void softmax_backward_worker(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    const qt_kernel_table *K = qt_kernels();
    for (int r = ith; r < j->rows; r += nth) {
        float *ds = j->S + (size_t)r * j->T;
        const float *p = j->P + (size_t)r * j->T;
        int n = r % j->T + 1;
        float dot = K->dot_f32(n, p, ds);
        for (int s = 0; s < n; s++) ds[s] = p[s] * (ds[s] - dot) * j->scale;
        for (int s = n; s < j->T; s++) ds[s] = 0;
    }
}

size_t qt_attention_train_forward_ws_size(int T, int NH, int NKV, int HS) {
    size_t rows = (size_t)(NH / NKV) * (size_t)T;
    return 2 * rows * (size_t)HS + (size_t)HS * (size_t)T;
}

void qt_attention_train_forward_ws(qt_pool *pool, float *out, float *att, const float *q, const float *k,
                                   const float *v, int T, int NH, int NKV, int HS, float *scratch) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    const int G = NH / NKV, rows = G * T, kvd = NKV * HS;
    float *Qg = scratch;                        // (rows, HS)
    float *Og = Qg + (size_t)rows * HS;         // (rows, HS)
    float *Vt = Og + (size_t)rows * HS;         // (HS, T)
    for (int h = 0; h < NKV; h++) {
        float *S = att + (size_t)h * G * T * T;  // the group's heads are contiguous: (rows, T)
        gather_heads(Qg, q, T, NH, h * G, G, HS);
        // S = Qg @ K_h^T, K_h the rows of k at offset h*HS
        qt_matmul_strided(pool, S, Qg, k + (size_t)h * HS, QT_TYPE_F32, HS, T, rows, sizeof(float) * kvd);
        rows_job rj = { S, NULL, rows, T, 1.0f / sqrtf((float)HS) };
        qt_pool_run(pool, softmax_worker, &rj);
        // Og = P @ V_h, with V_h^T (HS, T) as the weight
        transpose(pool, Vt, v + (size_t)h * HS, kvd, T, HS);
        qt_matmul(pool, Og, S, Vt, QT_TYPE_F32, T, HS, rows);
        scatter_heads(out, Og, T, NH, h * G, G, HS, false);
    }
}

void qt_attention_train_forward(qt_pool *pool, float *out, float *att, const float *q, const float *k, const float *v,
                                int T, int NH, int NKV, int HS) {
    QT_ASSERT(NKV > 0 && NH % NKV == 0);
    float *ws = qt_malloc(sizeof(float) * qt_attention_train_forward_ws_size(T, NH, NKV, HS));
    qt_attention_train_forward_ws(pool, out, att, q, k, v, T, NH, NKV, HS, ws);
    qt_free(ws);
}

size_t qt_attention_train_scratch(int T, int NH, int NKV, int HS, int n_threads) {
    (void)n_threads;   // the parallel parts share the buffers; kept for future per-thread tiles
    size_t rows = (size_t)(NH / NKV) * (size_t)T, t = (size_t)T, hs = (size_t)HS;
    size_t bwd = 2 * rows * hs + 2 * hs * t + t * t + rows * t;
    return QT_MAX(bwd, qt_attention_train_forward_ws_size(T, NH, NKV, HS));
}

static void add_kv_head(float *dst, const float *src, int T, int NKV, int h, int HS) {
    for (int t = 0; t < T; t++) {
        float *d = dst + ((size_t)t * NKV + h) * HS;
        const float *s = src + (size_t)t * HS;
        for (int i = 0; i < HS; i++) d[i] += s[i];
    }
}

// Per kv head h, with rows = G*T query rows (row g*T + t) and P_h = att rows:
//   dP   = dO V_h^T          (rows, T)
//   dS   = softmax backward  (rows, T), scaled
//   dQ   = dS K_h            (rows, HS)
// and per query head g of the group (keeping the contraction T long, not G*T,
// so the operands stay in cache):
//   dV_h += P_g^T dO_g       (T, HS)
//   dK_h += dS_g^T Q_g       (T, HS)
// each a qt_matmul with an f32 'weight' made dense by a transpose.
void qt_attention_train_backward(qt_pool *pool, float *dq, float *dk, float *dv, float *scratch, const float *dout,
                                 const float *att, const float *q, const float *k, const float *v, int T, int NH,
                                 int NKV, int HS) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    if (!dq && !dk && !dv) return;
    const int G = NH / NKV, rows = G * T, kvd = NKV * HS, qd = NH * HS;
    float *dO = scratch;                         // (rows, HS)
    float *Cb = dO + (size_t)rows * HS;          // (rows, HS): dQ; or a (T, HS) result
    float *B = Cb + (size_t)rows * HS;           // (HS, T): dO_g^T or Q_g^T
    float *Kt = B + (size_t)HS * T;              // (HS, T)
    float *Tr = Kt + (size_t)HS * T;             // (T, T): P_g^T or dS_g^T
    float *dP = Tr + (size_t)T * T;              // (rows, T)
    for (int h = 0; h < NKV; h++) {
        const float *P = att + (size_t)h * G * T * T;
        if (dv) {
            for (int g = 0; g < G; g++) {
                transpose(pool, B, dout + (size_t)(h * G + g) * HS, qd, T, HS);
                transpose(pool, Tr, P + (size_t)g * T * T, T, T, T);
                qt_matmul(pool, Cb, Tr, B, QT_TYPE_F32, T, HS, T);
                add_kv_head(dv, Cb, T, NKV, h, HS);
            }
        }
        if (!dq && !dk) continue;
        gather_heads(dO, dout, T, NH, h * G, G, HS);
        qt_matmul_strided(pool, dP, dO, v + (size_t)h * HS, QT_TYPE_F32, HS, T, rows, sizeof(float) * kvd);
        rows_job rj = { dP, P, rows, T, 1.0f / sqrtf((float)HS) };
        qt_pool_run(pool, softmax_backward_worker, &rj);
        if (dq) {
            transpose(pool, Kt, k + (size_t)h * HS, kvd, T, HS);
            qt_matmul(pool, Cb, dP, Kt, QT_TYPE_F32, T, HS, rows);
            scatter_heads(dq, Cb, T, NH, h * G, G, HS, true);
        }
        if (dk) {
            for (int g = 0; g < G; g++) {
                transpose(pool, B, q + (size_t)(h * G + g) * HS, qd, T, HS);
                transpose(pool, Tr, dP + (size_t)g * T * T, T, T, T);
                qt_matmul(pool, Cb, Tr, B, QT_TYPE_F32, T, HS, T);
                add_kv_head(dk, Cb, T, NKV, h, HS);
            }
        }
    }
}

// ---- SwiGLU ----

void qt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t N) {
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + expf(-g));
        float silu = g * sig;
        if (dgate) dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        if (dup) dup[i] += dout[i] * silu;
    }
}

// ---- cross-entropy ----

void qt_cross_entropy(float *losses, float *dlogits, const float *logits, const int32_t *targets, const float *dscale,
                      int T, int V) {
    for (int t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * V;
        int32_t y = targets[t];
        QT_ASSERT(y < V);
        if (y < 0) {
            losses[t] = 0;
            if (dlogits) memset(dlogits + (size_t)t * V, 0, sizeof(float) * V);
            continue;
        }
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += expf(l[i] - mx);
        losses[t] = (float)((double)mx + log(sum) - l[y]);
        if (dlogits) {
            // element i is read before it is written: safe when dlogits == logits
            float *d = dlogits + (size_t)t * V;
            float sc = dscale ? dscale[t] : 1.0f;
            float f = (float)(sc / sum);
            for (int i = 0; i < V; i++) d[i] = expf(l[i] - mx) * f;
            d[y] -= sc;
        }
    }
}

// ---- LoRA weight gradient ----

typedef struct {
    float *dw;
    const float *dy, *x;
    int n_in, n_out, T;
} dw_job;

static void matmul_dw_worker(void *ctx, int ith, int nth) {
    const dw_job *j = ctx;
    const qt_kernel_table *K = qt_kernels();
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

void qt_matmul_dw(qt_pool *pool, float *dw, const float *dy, const float *x, int n_in, int n_out, int T) {
    QT_ASSERT(n_in > 0 && n_out >= 0 && T >= 0);
    if (n_out == 0 || T == 0) return;
    dw_job j = { dw, dy, x, n_in, n_out, T };
    qt_pool_run(pool, matmul_dw_worker, &j);
}
