// engine.c: linear projections with LoRA adapters, forward and backward
// (engine.h), on the backend operations. The math (Hu et al. 2021, as PEFT
// computes it, dropout on the adapter path only):
//   y  = x W^T (+ b) + s * (drop(x) A^T) B^T,  ax = drop(x) A^T saved
//   dx += dy W + s * drop'((dy B) A),  dB += s dy^T ax,  dA += s (dy B)^T drop(x)
// Reference: peft/tuners/lora/layer.py Linear.forward; PyTorch autograd in
// tests/ref/make_ref_lora.py checks the gradients.
#include "model/engine.h"

#include <string.h>

#include "backend/layers-train.h"
#include "base/base.h"

int qt_adapter_bind(qt_backend *be, qt_adapter *a, const qt_lora *l, float scale, bool grads) {
    memset(a, 0, sizeof(*a));
    a->l = l;
    a->scale = scale;
    if (be->host_memory) {
        a->params = l->params;
        a->grads = grads ? l->grads : NULL;
        return QT_OK;
    }
    size_t bytes = l->n_params * sizeof(float);
    float *p = be->ops->alloc(be, bytes, "LoRA parameters (device copy)");
    if (!p) return QT_ERR;
    be->ops->upload(be, p, l->params, bytes);
    a->params = p;
    if (grads) {
        a->grads = be->ops->alloc(be, bytes, "LoRA gradients (device)");
        if (!a->grads) {
            qt_adapter_release(be, a);
            return QT_ERR;
        }
    }
    return QT_OK;
}

void qt_adapter_release(qt_backend *be, qt_adapter *a) {
    if (!a->l) return;
    if (!be->host_memory) {
        size_t bytes = a->l->n_params * sizeof(float);
        be->ops->free(be, (void *)a->params, bytes);
        be->ops->free(be, a->grads, bytes);
    }
    memset(a, 0, sizeof(*a));
}

void qt_adapter_upload(qt_backend *be, qt_adapter *a) {
    if (!be->host_memory) be->ops->upload(be, (void *)a->params, a->l->params, a->l->n_params * sizeof(float));
}

// Dropout keys: a function of (step seed, layer, linear, expert) only, so
// the backward regenerates the forward's masks (e < 0: not an expert).
static uint64_t drop_key(const qt_fwd *f, int il, int lin, int e) {
    uint64_t k = ((uint64_t)il << 8) | (uint64_t)lin;
    if (e >= 0) k |= (uint64_t)(e + 1) << 32;
    return qt_dropout_mix(f->drop_seed ^ qt_dropout_mix(k));
}

static bool drops(const qt_fwd *f, const qt_adapter *a) {
    return f->train && a->grads && a->l->cfg.dropout > 0;
}

// A (r, in) and B (out, r) of pair p as float32 tensors in backend memory.
static void pair_tensors(const qt_adapter *a, const qt_lora_pair *p, qt_tensor *A, qt_tensor *B) {
    const int r = a->l->cfg.rank;
    const float *pa = a->params + p->off;
    *A = (qt_tensor){ .type = QT_TYPE_F32, .ne0 = p->n_in, .ne1 = r, .dev = pa };
    *B = (qt_tensor){ .type = QT_TYPE_F32, .ne0 = r, .ne1 = p->n_out, .dev = pa + (size_t)r * p->n_in };
}

static const qt_lora_pair *adapter_pair(const qt_adapter *a, int il, int lin, int e) {
    if (il < a->l->first_layer) return NULL;
    const qt_lora_pair *p = qt_lora_get_x(a->l, il, lin, e < 0 ? 0 : e);
    return p->n_in ? p : NULL;
}

static const qt_tensor *weight(const qt_model *m, int il, int lin, int e) {
    return e < 0 ? qt_model_linear(m, il, lin) : qt_model_expert_linear(m, il, lin, e);
}

// The n linears lins of layer il (of expert e, or e < 0) on N rows of x.
// axs[i]: where the trained adapter keeps linear i's drop(x) A^T, or NULL.
static void linear_fwd(const qt_fwd *f, int il, int e, int64_t N, int n, const int *lins, float *const *ys,
                       const float *x, float *const *axs) {
    qt_backend *be = f->be;
    const qt_model *m = f->m;
    const qt_arch_desc *arch = m->arch;
    QT_ASSERT(n >= 1 && n <= QT_MM_MAX_OUTS);
    qt_mm_out outs[QT_MM_MAX_OUTS];
    const int64_t in = weight(m, il, lins[0], e)->ne0;
    for (int i = 0; i < n; i++) {
        outs[i] = (qt_mm_out){ ys[i], weight(m, il, lins[i], e) };
        QT_ASSERT(outs[i].w->ne0 == in);
    }
    be->ops->matmul(be, x, in, N, outs, n);
    for (int i = 0; i < n; i++) {
        const qt_linear_desc *ld = &arch->linears[lins[i]];
        int64_t out = outs[i].w->ne1;
        if (ld->bias >= 0) {
            const qt_tensor *b = qt_model_tensor(m, il, ld->bias);
            if (b->dev) be->ops->add_bias(be, ys[i], b, N, out);
        }
        for (int k = 0; k < f->n_ad; k++) {
            const qt_adapter *a = &f->ad[k];
            const qt_lora_pair *p = adapter_pair(a, il, lins[i], e);
            if (!p) continue;
            qt_tensor A, B;
            pair_tensors(a, p, &A, &B);
            const float *xa = x;
            if (drops(f, a)) {
                be->ops->dropout(be, f->xdrop, x, N * in, a->l->cfg.dropout, drop_key(f, il, lins[i], e));
                xa = f->xdrop;
            }
            float *axb = axs && axs[i] && a->grads ? axs[i] : f->sax;
            qt_mm_out o1 = { axb, &A }, o2 = { f->tmp, &B };
            be->ops->matmul(be, xa, in, N, &o1, 1);
            be->ops->matmul(be, axb, A.ne1, N, &o2, 1);
            be->ops->axpy(be, N * out, a->scale * a->l->scale, f->tmp, ys[i]);
        }
    }
}

void qt_linear_forward(const qt_fwd *f, int il, int n, const int *lins, float *const *ys, const float *x,
                       float *const *ax) {
    QT_ASSERT(n >= 1 && n <= QT_MM_MAX_OUTS);
    float *axs[QT_MM_MAX_OUTS];
    for (int i = 0; i < n; i++) axs[i] = ax ? ax[lins[i]] : NULL;
    linear_fwd(f, il, -1, f->N, n, lins, ys, x, axs);
}

void qt_expert_linear_forward(const qt_fwd *f, int il, int e, int64_t n_rows, int n, const int *lins,
                              float *const *ys, const float *x, float *const *axs) {
    QT_ASSERT(e >= 0 && e < f->m->cfg.n_expert && n_rows >= 0 && n_rows <= f->N);
    for (int i = 0; i < n; i++) QT_ASSERT(qt_arch_linear_expert(f->m->arch, lins[i]));
    if (n_rows > 0) linear_fwd(f, il, e, n_rows, n, lins, ys, x, axs);
}

static void linear_bwd(const qt_fwd *f, int il, int lin, int e, int64_t N, float *dx, const float *dy,
                       const float *x, const float *ax) {
    qt_backend *be = f->be;
    const qt_tensor *W = weight(f->m, il, lin, e);
    const int64_t in = W->ne0, out = W->ne1;
    be->ops->matmul_t(be, dx, dy, W, N);
    for (int k = 0; k < f->n_ad; k++) {
        const qt_adapter *a = &f->ad[k];
        if (!a->grads) continue;   // only the trained adapter is differentiated (training runs it alone)
        const qt_lora_pair *p = adapter_pair(a, il, lin, e);
        if (!p) continue;
        const int64_t r = a->l->cfg.rank;
        const float s = a->scale * a->l->scale;
        float *ga = a->grads + p->off, *gb = ga + (size_t)r * in;
        qt_tensor A, B;
        pair_tensors(a, p, &A, &B);
        // dB (out, r) += dy^T (s * ax)
        be->ops->copy(be, f->sax, ax, sizeof(float) * (size_t)(N * r));
        be->ops->scale(be, N * r, s, f->sax);
        be->ops->matmul_dw(be, gb, dy, f->sax, r, out, N);
        // dax (N, r) = s * dy B
        be->ops->zero(be, f->dax, sizeof(float) * (size_t)(N * r));
        be->ops->matmul_t(be, f->dax, dy, &B, N);
        be->ops->scale(be, N * r, s, f->dax);
        // dA (r, in) += dax^T drop(x)
        bool drop = drops(f, a);
        const float *xa = x;
        if (drop) {
            be->ops->dropout(be, f->xdrop, x, N * in, a->l->cfg.dropout, drop_key(f, il, lin, e));
            xa = f->xdrop;
        }
        be->ops->matmul_dw(be, ga, f->dax, xa, in, r, N);
        // dx += drop'(dax A): the mask and 1/(1-p) apply to this path only
        if (!drop) {
            be->ops->matmul_t(be, dx, f->dax, &A, N);
        } else {
            be->ops->zero(be, f->tmp, sizeof(float) * (size_t)(N * in));
            be->ops->matmul_t(be, f->tmp, f->dax, &A, N);
            be->ops->dropout(be, f->xdrop, f->tmp, N * in, a->l->cfg.dropout, drop_key(f, il, lin, e));
            be->ops->axpy(be, N * in, 1.0f, f->xdrop, dx);
        }
    }
}

void qt_linear_backward(const qt_fwd *f, int il, int lin, float *dx, const float *dy, const float *x,
                        const float *ax) {
    linear_bwd(f, il, lin, -1, f->N, dx, dy, x, ax);
}

void qt_expert_linear_backward(const qt_fwd *f, int il, int lin, int e, int64_t n_rows, float *dx, const float *dy,
                               const float *x, const float *ax) {
    QT_ASSERT(e >= 0 && e < f->m->cfg.n_expert && qt_arch_linear_expert(f->m->arch, lin));
    if (n_rows > 0) linear_bwd(f, il, lin, e, n_rows, dx, dy, x, ax);
}

void qt_linear_widths(const qt_model *m, int64_t *max_in, int64_t *max_out) {
    int64_t a = 0, b = 0;
    for (int i = 0; i < m->arch->n_linears; i++) {
        const qt_tensor *w = qt_model_linear(m, 0, i);
        a = QT_MAX(a, w->ne0);
        b = QT_MAX(b, w->ne1);
    }
    *max_in = a;
    *max_out = b;
}

void qt_embed(const qt_fwd *f, float *x, const int32_t *tokens) {
    if (f->m->arch->embed) f->m->arch->embed(f, x, tokens);
    else f->be->ops->embed(f->be, x, tokens, f->N, qt_model_global(f->m, QT_G_TOK_EMBD));
}

void qt_final_norm(const qt_fwd *f, float *out, float *rstd, const float *x, int64_t n) {
    if (f->m->arch->final_norm) f->m->arch->final_norm(f, out, rstd, x, n);
    else f->be->ops->rmsnorm(f->be, out, rstd, x, qt_model_global(f->m, QT_G_OUT_NORM), n, f->m->cfg.n_embd,
                             f->m->cfg.rms_eps);
}

void qt_final_norm_backward(const qt_fwd *f, float *dx, const float *dout, const float *x, const float *rstd,
                            int64_t n) {
    if (f->m->arch->final_norm_backward) f->m->arch->final_norm_backward(f, dx, dout, x, rstd, n);
    else f->be->ops->rmsnorm_backward(f->be, dx, dout, x, qt_model_global(f->m, QT_G_OUT_NORM), rstd, n,
                                      f->m->cfg.n_embd);
}

// The column blocks of fused (N, sum of widths) to parts (split) or back (join).
static void fused_copy(const qt_fwd *f, float *fused, float *const *parts, int n, const int64_t *widths, bool join) {
    int64_t ld = 0, off = 0;
    for (int i = 0; i < n; i++) ld += widths[i];
    for (int i = 0; i < n; off += widths[i++]) {
        if (join) f->be->ops->copy_2d(f->be, fused + off, ld, parts[i], widths[i], f->N, widths[i]);
        else f->be->ops->copy_2d(f->be, parts[i], widths[i], fused + off, ld, f->N, widths[i]);
    }
}

void qt_fused_split(const qt_fwd *f, const float *fused, int n, const int64_t *widths, float *const *parts) {
    fused_copy(f, (float *)fused, parts, n, widths, false);
}

void qt_fused_join(const qt_fwd *f, float *fused, int n, const int64_t *widths, const float *const *parts) {
    fused_copy(f, fused, (float *const *)parts, n, widths, true);
}

void qt_attention_block_forward(const qt_fwd *f, int il, int lin_o, float *ao, float *lse, const float *q,
                                const float *k, const float *v, const float *x, float *xmid, float *const *ax) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    be->ops->attention(be, ao, lse, q, k, v, f->seqs, f->kv, il, c->n_head, c->n_head_kv, c->head_dim);
    qt_linear_forward(f, il, 1, &lin_o, &xmid, ao, ax);
    be->ops->axpy(be, f->N * c->n_embd, 1.0f, x, xmid);
}

void qt_attention_block_backward(const qt_fwd *f, int il, int lin_o, float *dao, float *dq, float *dk, float *dv,
                                 const float *dxmid, const float *ao, const float *lse, const float *q,
                                 const float *k, const float *v, float *const *ax) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const size_t nQ = sizeof(float) * (size_t)(f->N * c->n_head * c->head_dim);
    const size_t nKV = sizeof(float) * (size_t)(f->N * c->n_head_kv * c->head_dim);
    be->ops->zero(be, dao, nQ);
    qt_linear_backward(f, il, lin_o, dao, dxmid, ao, ax ? ax[lin_o] : NULL);
    be->ops->zero(be, dq, nQ);
    be->ops->zero(be, dk, nKV);
    be->ops->zero(be, dv, nKV);
    be->ops->attention_backward(be, dq, dk, dv, dao, ao, lse, q, k, v, f->seqs, c->n_head, c->n_head_kv, c->head_dim);
}
