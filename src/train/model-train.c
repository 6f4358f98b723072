// model-train.c: LoRA training forward/backward of the Llama block stack
// (see model-train.h). The math, per layer, with xs[il] the layer input:
//   xn1 = rmsnorm(x)            q,k,v = lin(xn1) (+bias), rope(q,k)
//   ao  = attn(q,k,v)           xmid  = x + lin_o(ao)
//   xn2 = rmsnorm(xmid)         h     = silu(lin_gate(xn2)) * lin_up(xn2)
//   out = xmid + lin_down(h)
// lin(x) = x W^T + s * (drop(x) A^T) B^T, W frozen in its stored type.
// Head: loss = CE(rmsnorm(x_L) W_out^T, targets), computed in row chunks so
// the (tokens, vocab) logits never exist in full.
// Reference: the PyTorch script tests/ref/make_ref_lora.py computes the same
// loss and gradients with autograd.
#include "train/model-train.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/layers-train.h"

// Rows of logits held at once in the loss head: (CE_ROWS, n_vocab) floats.
#define CE_ROWS 64

typedef struct {
    float *xn1, *q, *k, *v, *att, *ao, *xmid, *xn2, *gate, *up, *h;   // see file comment
    float *rstd1, *rstd2;                                                // (N)
    float *ax[QT_LORA_N_TARGETS];                                        // (N, r) = drop(x) A^T
} layer_acts;

struct qt_tmodel {
    const qt_model *m;
    qt_lora *lora;
    qt_pool *pool;
    qt_kctx kc;              // kernel table + pool; training precision
    int max_tokens, max_seq;
    bool checkpoint;
    int n_acts;              // 1 with checkpointing, else n_layer
    layer_acts *acts;
    float *xs;               // (n_layer + 1, N, C) layer inputs; xs[L] feeds the head
    float *xnf, *rstdf;      // (N, C), (N) final norm
    float *dx0, *dx1, *dxmid, *dxn;    // (N, C)
    float *dq, *dao;         // (N, qd)
    float *dk, *dv;          // (N, kvd)
    float *dgate, *dup, *dh; // (N, F)
    float *tmp;              // (N, max(qd, F, C)) adapter output before it is added
    float *xdrop;            // (N, max in) dropped adapter input
    float *dax, *sax;        // (N, r)
    float *logits;           // (CE_ROWS, V)
    float *losses, *dscale;  // (CE_ROWS)
    float *cs;               // (max_seq, HS) rope table for positions 0..max_seq-1
    float *att_scratch;
    void *arena;
    size_t arena_size;
    uint64_t drop_seed;
    bool train;
    qt_tmodel_layer_fn layer_hook;   // after each layer's backward (gradient all-reduce)
    void *layer_hook_ud;
};

void qt_tmodel_set_layer_hook(qt_tmodel *tm, qt_tmodel_layer_fn fn, void *ud) {
    tm->layer_hook = fn;
    tm->layer_hook_ud = ud;
}

void qt_tmodel_set_prec(qt_tmodel *tm, qt_prec prec) { tm->kc.prec = prec; }

typedef struct {
    size_t off;
    uint8_t *base;
} arena;

static float *take(arena *a, size_t n_floats) {
    float *p = a->base ? (float *)(a->base + a->off) : NULL;
    a->off += (n_floats * sizeof(float) + 63) & ~(size_t)63;
    return p;
}

// Lays out (base == NULL: only sizes) every buffer of tm.
static size_t plan(qt_tmodel *tm, const qt_model *m, const qt_lora *lora, int N, int S, bool ckpt, int nth,
                   uint8_t *base) {
    const qt_config *c = &m->cfg;
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_ff, HS = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_head * HS, kvd = (size_t)c->n_head_kv * HS, r = (size_t)lora->cfg.rank, n = (size_t)N;
    size_t att = (size_t)c->n_head * (size_t)S * (size_t)N;   // >= sum NH * T_s^2 since sum T_s = N, T_s <= S
    size_t wide = QT_MAX(QT_MAX(qd, F), C), in_max = QT_MAX(QT_MAX(qd, F), C);
    int n_acts = ckpt ? 1 : c->n_layer;
    arena a = { 0, base };
    layer_acts dummy;
    for (int i = 0; i < n_acts; i++) {
        layer_acts *A = tm ? &tm->acts[i] : &dummy;
        A->xn1 = take(&a, n * C); A->q = take(&a, n * qd); A->k = take(&a, n * kvd); A->v = take(&a, n * kvd);
        A->att = take(&a, att); A->ao = take(&a, n * qd); A->xmid = take(&a, n * C); A->xn2 = take(&a, n * C);
        A->gate = take(&a, n * F); A->up = take(&a, n * F); A->h = take(&a, n * F);
        A->rstd1 = take(&a, n); A->rstd2 = take(&a, n);
        for (int t = 0; t < QT_LORA_N_TARGETS; t++) A->ax[t] = take(&a, n * r);
    }
    qt_tmodel dm;
    qt_tmodel *T = tm ? tm : &dm;
    T->xs = take(&a, (size_t)(c->n_layer + 1) * n * C);
    T->xnf = take(&a, n * C); T->rstdf = take(&a, n);
    T->dx0 = take(&a, n * C); T->dx1 = take(&a, n * C); T->dxmid = take(&a, n * C); T->dxn = take(&a, n * C);
    T->dq = take(&a, n * qd); T->dao = take(&a, n * qd); T->dk = take(&a, n * kvd); T->dv = take(&a, n * kvd);
    T->dgate = take(&a, n * F); T->dup = take(&a, n * F); T->dh = take(&a, n * F);
    T->tmp = take(&a, n * wide); T->xdrop = take(&a, n * in_max);
    T->dax = take(&a, n * r); T->sax = take(&a, n * r);
    T->logits = take(&a, (size_t)CE_ROWS * (size_t)c->n_vocab);
    T->losses = take(&a, CE_ROWS); T->dscale = take(&a, CE_ROWS);
    T->cs = take(&a, (size_t)S * HS);
    T->att_scratch = take(&a, qt_attention_train_scratch(S, c->n_head, c->n_head_kv, c->head_dim, nth));
    return a.off;
}

size_t qt_tmodel_bytes(const qt_model *m, const qt_lora *lora, int max_tokens, int max_seq, bool checkpoint,
                       int n_threads) {
    return plan(NULL, m, lora, max_tokens, max_seq, checkpoint, n_threads, NULL);
}

qt_tmodel *qt_tmodel_init(const qt_model *m, qt_lora *lora, qt_pool *pool, int max_tokens, int max_seq,
                          bool checkpoint) {
    QT_ASSERT(max_tokens > 0 && max_seq > 0 && max_seq <= max_tokens);
    qt_tmodel *tm = qt_calloc(1, sizeof(qt_tmodel));
    tm->m = m; tm->lora = lora; tm->pool = pool;
    tm->kc = qt_kctx_default(pool);
    tm->kc.prec = QT_PREC_F32;
    tm->max_tokens = max_tokens; tm->max_seq = max_seq; tm->checkpoint = checkpoint;
    tm->n_acts = checkpoint ? 1 : m->cfg.n_layer;
    tm->acts = qt_calloc((size_t)tm->n_acts, sizeof(layer_acts));
    int nth = qt_pool_n_threads(pool);
    tm->arena_size = plan(NULL, m, lora, max_tokens, max_seq, checkpoint, nth, NULL);
    tm->arena = qt_alloc_big(tm->arena_size, "training activations");
    if (!tm->arena) {
        qt_free(tm->acts);
        qt_free(tm);
        return NULL;
    }
    plan(tm, m, lora, max_tokens, max_seq, checkpoint, nth, tm->arena);
    int *pos = qt_malloc(sizeof(int) * (size_t)max_seq);
    for (int i = 0; i < max_seq; i++) pos[i] = i;
    qt_rope_cache(tm->cs, pos, max_seq, m->cfg.head_dim, m->cfg.rope_theta, m->rope_freqs);
    qt_free(pos);
    return tm;
}

void qt_tmodel_free(qt_tmodel *tm) {
    if (!tm) return;
    qt_free_big(tm->arena, tm->arena_size);
    qt_free(tm->acts);
    qt_free(tm);
}

// ---- dropout: masks regenerated from a counter hash, so backward needs no stored mask ----

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// dst (N, n) = src * keep / (1 - p), keep drawn per (key, element).
static void dropout(float *dst, const float *src, size_t count, float p, uint64_t key) {
    const float inv = 1.0f / (1.0f - p);
    const uint64_t thresh = (uint64_t)((double)p * 18446744073709551615.0);
    for (size_t i = 0; i < count; i++) dst[i] = mix64(key + i * 0x9e3779b97f4a7c15ull) < thresh ? 0.0f : src[i] * inv;
}

static uint64_t drop_key(const qt_tmodel *tm, int il, int t) {
    return mix64(tm->drop_seed ^ mix64(((uint64_t)il << 8) | (uint64_t)t));
}

// ---- linear layers with an optional adapter ----

// y (N, out) = x W^T + s * (drop(x) A^T) B^T; saves ax = drop(x) A^T.
static void linear_fwd(qt_tmodel *tm, float *y, const float *x, const qt_tensor *W, int il, int t, float *ax, int N) {
    const qt_kctx *kc = &tm->kc;
    int in = (int)W->ne0, out = (int)W->ne1;
    qt_matmul(kc, y, x, W->data, W->type, in, out, N);
    const qt_lora_pair *p = qt_lora_get(tm->lora, il, t);
    if (!p->a) return;
    const int r = tm->lora->cfg.rank;
    const float *xa = x;
    if (tm->train && tm->lora->cfg.dropout > 0) {
        dropout(tm->xdrop, x, (size_t)N * in, tm->lora->cfg.dropout, drop_key(tm, il, t));
        xa = tm->xdrop;
    }
    qt_matmul(kc, ax, xa, p->a, QT_TYPE_F32, in, r, N);
    qt_matmul(kc, tm->tmp, ax, p->b, QT_TYPE_F32, r, out, N);
    kc->kt->axpy_f32(N * out, tm->lora->scale, tm->tmp, y);
}

// dx (N, in) += dy W + s * dropmask * ((dy B) A); adapter grads += (see lora.h).
static void linear_bwd(qt_tmodel *tm, float *dx, const float *dy, const float *x, const qt_tensor *W, int il, int t,
                       const float *ax, int N) {
    const qt_kctx *kc = &tm->kc;
    const qt_kernel_table *K = kc->kt;
    int in = (int)W->ne0, out = (int)W->ne1;
    qt_matmul_t(kc, dx, dy, W->data, W->type, in, out, N);
    const qt_lora_pair *p = qt_lora_get(tm->lora, il, t);
    if (!p->a) return;
    const int r = tm->lora->cfg.rank;
    const float s = tm->lora->scale;
    float *ga = tm->lora->grads + p->off, *gb = ga + (size_t)r * in;
    // dB (out, r) += dy^T (s * ax)
    memcpy(tm->sax, ax, sizeof(float) * (size_t)N * r);
    K->scale_f32(N * r, s, tm->sax);
    qt_matmul_dw(kc, gb, dy, tm->sax, r, out, N);
    // dax (N, r) = s * dy B
    memset(tm->dax, 0, sizeof(float) * (size_t)N * r);
    qt_matmul_t(kc, tm->dax, dy, p->b, QT_TYPE_F32, r, out, N);
    K->scale_f32(N * r, s, tm->dax);
    // dA (r, in) += dax^T drop(x)
    bool drop = tm->train && tm->lora->cfg.dropout > 0;
    const float *xa = x;
    if (drop) {
        dropout(tm->xdrop, x, (size_t)N * in, tm->lora->cfg.dropout, drop_key(tm, il, t));
        xa = tm->xdrop;
    }
    qt_matmul_dw(kc, ga, tm->dax, xa, in, r, N);
    // dx += drop'(dax A): the dropout mask and 1/(1-p) apply to this path only
    if (!drop) {
        qt_matmul_t(kc, dx, tm->dax, p->a, QT_TYPE_F32, in, r, N);
    } else {
        memset(tm->tmp, 0, sizeof(float) * (size_t)N * in);
        qt_matmul_t(kc, tm->tmp, tm->dax, p->a, QT_TYPE_F32, in, r, N);
        dropout(tm->xdrop, tm->tmp, (size_t)N * in, tm->lora->cfg.dropout, drop_key(tm, il, t));
        K->axpy_f32(N * in, 1.0f, tm->xdrop, dx);
    }
}

static void add_bias(float *y, const float *b, int N, int n) {
    if (!b) return;
    for (int i = 0; i < N; i++) qt_residual_forward(y + (size_t)i * n, b, n);
}

// ---- one layer ----

static void layer_forward(qt_tmodel *tm, const qt_batch *b, int il, layer_acts *A, const float *x, float *out) {
    const qt_model *m = tm->m;
    const qt_config *c = &m->cfg;
    const qt_layer *L = &m->layers[il];
    const int N = b->seq_start[b->n_seq], C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_head_kv;
    const int qd = NH * HS, kvd = NKV * HS;

    qt_rmsnorm_forward(A->xn1, A->rstd1, x, L->attn_norm, N, C, c->rms_eps);
    linear_fwd(tm, A->q, A->xn1, &L->wq, il, QT_LORA_Q, A->ax[QT_LORA_Q], N);
    linear_fwd(tm, A->k, A->xn1, &L->wk, il, QT_LORA_K, A->ax[QT_LORA_K], N);
    linear_fwd(tm, A->v, A->xn1, &L->wv, il, QT_LORA_V, A->ax[QT_LORA_V], N);
    add_bias(A->q, L->bq, N, qd);
    add_bias(A->k, L->bk, N, kvd);
    add_bias(A->v, L->bv, N, kvd);
    size_t att_off = 0;
    for (int s = 0; s < b->n_seq; s++) {
        int o = b->seq_start[s], T = b->seq_start[s + 1] - o;
        qt_rope_forward(A->q + (size_t)o * qd, tm->cs, T, NH, HS, c->rope_type);
        qt_rope_forward(A->k + (size_t)o * kvd, tm->cs, T, NKV, HS, c->rope_type);
        qt_attention_train_forward_ws(&tm->kc, A->ao + (size_t)o * qd, A->att + att_off, A->q + (size_t)o * qd,
                                      A->k + (size_t)o * kvd, A->v + (size_t)o * kvd, T, NH, NKV, HS,
                                      tm->att_scratch);
        att_off += (size_t)NH * T * T;
    }
    linear_fwd(tm, A->xmid, A->ao, &L->wo, il, QT_LORA_O, A->ax[QT_LORA_O], N);
    qt_residual_forward(A->xmid, x, (int64_t)N * C);

    qt_rmsnorm_forward(A->xn2, A->rstd2, A->xmid, L->ffn_norm, N, C, c->rms_eps);
    linear_fwd(tm, A->gate, A->xn2, &L->w_gate, il, QT_LORA_GATE, A->ax[QT_LORA_GATE], N);
    linear_fwd(tm, A->up, A->xn2, &L->w_up, il, QT_LORA_UP, A->ax[QT_LORA_UP], N);
    qt_swiglu_forward_pool(&tm->kc, A->h, A->gate, A->up, (int64_t)N * c->n_ff);
    linear_fwd(tm, out, A->h, &L->w_down, il, QT_LORA_DOWN, A->ax[QT_LORA_DOWN], N);
    qt_residual_forward(out, A->xmid, (int64_t)N * C);
}

// dx_in (N, C) = d loss / d x given dout = d loss / d out.
static void layer_backward(qt_tmodel *tm, const qt_batch *b, int il, const layer_acts *A, const float *x,
                           const float *dout, float *dx_in) {
    const qt_model *m = tm->m;
    const qt_config *c = &m->cfg;
    const qt_layer *L = &m->layers[il];
    const int N = b->seq_start[b->n_seq], C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_head_kv;
    const int qd = NH * HS, kvd = NKV * HS, F = c->n_ff;
    const size_t nC = (size_t)N * C;

    // MLP
    memset(tm->dh, 0, sizeof(float) * (size_t)N * F);
    linear_bwd(tm, tm->dh, dout, A->h, &L->w_down, il, QT_LORA_DOWN, A->ax[QT_LORA_DOWN], N);
    memset(tm->dgate, 0, sizeof(float) * (size_t)N * F);
    memset(tm->dup, 0, sizeof(float) * (size_t)N * F);
    qt_swiglu_backward_pool(&tm->kc, tm->dgate, tm->dup, tm->dh, A->gate, A->up, (int64_t)N * F);
    memset(tm->dxn, 0, sizeof(float) * nC);
    linear_bwd(tm, tm->dxn, tm->dgate, A->xn2, &L->w_gate, il, QT_LORA_GATE, A->ax[QT_LORA_GATE], N);
    linear_bwd(tm, tm->dxn, tm->dup, A->xn2, &L->w_up, il, QT_LORA_UP, A->ax[QT_LORA_UP], N);
    memcpy(tm->dxmid, dout, sizeof(float) * nC);
    qt_rmsnorm_backward(tm->dxmid, NULL, tm->dxn, A->xmid, L->ffn_norm, A->rstd2, N, C);

    // attention
    memset(tm->dao, 0, sizeof(float) * (size_t)N * qd);
    linear_bwd(tm, tm->dao, tm->dxmid, A->ao, &L->wo, il, QT_LORA_O, A->ax[QT_LORA_O], N);
    memset(tm->dq, 0, sizeof(float) * (size_t)N * qd);
    memset(tm->dk, 0, sizeof(float) * (size_t)N * kvd);
    memset(tm->dv, 0, sizeof(float) * (size_t)N * kvd);
    size_t att_off = 0;
    for (int s = 0; s < b->n_seq; s++) {
        int o = b->seq_start[s], T = b->seq_start[s + 1] - o;
        qt_attention_train_backward(&tm->kc, tm->dq + (size_t)o * qd, tm->dk + (size_t)o * kvd,
                                    tm->dv + (size_t)o * kvd, tm->att_scratch, tm->dao + (size_t)o * qd,
                                    A->att + att_off, A->q + (size_t)o * qd, A->k + (size_t)o * kvd,
                                    A->v + (size_t)o * kvd, T, NH, NKV, HS);
        qt_rope_backward(tm->dq + (size_t)o * qd, tm->cs, T, NH, HS, c->rope_type);
        qt_rope_backward(tm->dk + (size_t)o * kvd, tm->cs, T, NKV, HS, c->rope_type);
        att_off += (size_t)NH * T * T;
    }
    memset(tm->dxn, 0, sizeof(float) * nC);
    linear_bwd(tm, tm->dxn, tm->dq, A->xn1, &L->wq, il, QT_LORA_Q, A->ax[QT_LORA_Q], N);
    linear_bwd(tm, tm->dxn, tm->dk, A->xn1, &L->wk, il, QT_LORA_K, A->ax[QT_LORA_K], N);
    linear_bwd(tm, tm->dxn, tm->dv, A->xn1, &L->wv, il, QT_LORA_V, A->ax[QT_LORA_V], N);
    memcpy(dx_in, tm->dxmid, sizeof(float) * nC);
    qt_rmsnorm_backward(dx_in, NULL, tm->dxn, x, L->attn_norm, A->rstd1, N, C);
}

// ---- the whole model ----

int qt_tmodel_step(qt_tmodel *tm, const qt_batch *b, bool backward, bool train, float dscale, uint64_t drop_seed,
                   double *loss_sum, int64_t *n_targets) {
    const qt_model *m = tm->m;
    const qt_config *c = &m->cfg;
    const int N = b->seq_start[b->n_seq], C = c->n_embd, V = c->n_vocab, Lc = c->n_layer;
    if (N > tm->max_tokens || N <= 0) {
        qt_log_error("batch of %d tokens does not fit the training buffers (%d)", N, tm->max_tokens);
        return QT_ERR;
    }
    for (int s = 0; s < b->n_seq; s++) {
        int T = b->seq_start[s + 1] - b->seq_start[s];
        if (T <= 0 || T > tm->max_seq) {
            qt_log_error("sequence of %d tokens does not fit the training buffers (max %d)", T, tm->max_seq);
            return QT_ERR;
        }
    }
    for (int i = 0; i < N; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= V || b->targets[i] >= V) {
            qt_log_error("token id out of range in the batch");
            return QT_ERR;
        }
    tm->drop_seed = drop_seed;
    tm->train = train;
    const size_t nC = (size_t)N * C;

    qt_embedding_forward(tm->kc.kt, tm->xs, b->tokens, N, &m->tok_embd);
    for (int il = 0; il < Lc; il++)
        layer_forward(tm, b, il, &tm->acts[tm->checkpoint ? 0 : il], tm->xs + (size_t)il * nC, tm->xs + (size_t)(il + 1) * nC);

    // head: final norm, logits and cross-entropy in row chunks; d loss/d xnf on the way
    const float *xL = tm->xs + (size_t)Lc * nC;
    qt_rmsnorm_forward(tm->xnf, tm->rstdf, xL, m->out_norm, N, C, c->rms_eps);
    float *dxnf = tm->dxn;
    if (backward) memset(dxnf, 0, sizeof(float) * nC);
    double sum = 0;
    int64_t cnt = 0;
    for (int i0 = 0; i0 < N; i0 += CE_ROWS) {
        int nr = QT_MIN(CE_ROWS, N - i0);
        bool any = false;
        for (int i = 0; i < nr; i++) {
            tm->dscale[i] = dscale;
            if (b->targets[i0 + i] >= 0) { any = true; cnt++; }
        }
        if (!any) continue;
        qt_matmul(&tm->kc, tm->logits, tm->xnf + (size_t)i0 * C, m->output.data, m->output.type, C, V, nr);
        qt_cross_entropy_pool(&tm->kc, tm->losses, backward ? tm->logits : NULL, tm->logits, b->targets + i0,
                              tm->dscale, nr, V);
        for (int i = 0; i < nr; i++) sum += tm->losses[i];
        if (backward) qt_matmul_t(&tm->kc, dxnf + (size_t)i0 * C, tm->logits, m->output.data, m->output.type, C, V, nr);
    }
    *loss_sum = sum;
    *n_targets = cnt;
    if (!backward) return QT_OK;

    float *dx = tm->dx0, *dx_next = tm->dx1;
    memset(dx, 0, sizeof(float) * nC);
    qt_rmsnorm_backward(dx, NULL, dxnf, xL, m->out_norm, tm->rstdf, N, C);
    for (int il = Lc - 1; il >= tm->lora->first_layer; il--) {
        const float *x = tm->xs + (size_t)il * nC;
        layer_acts *A = &tm->acts[tm->checkpoint ? 0 : il];
        if (tm->checkpoint) layer_forward(tm, b, il, A, x, tm->xs + (size_t)(il + 1) * nC);   // recompute
        layer_backward(tm, b, il, A, x, dx, dx_next);
        if (tm->layer_hook) tm->layer_hook(tm->layer_hook_ud, il);   // layer il's adapter gradients are final
        float *t = dx; dx = dx_next; dx_next = t;
    }
    return QT_OK;
}
