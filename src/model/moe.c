// moe.c: the sparse mixture-of-experts MLP (moe.h), as transformers'
// MixtralSparseMoeBlock computes it:
//   logits = router(xn); w, ids = top-k of softmax(logits), renormalised
//   out += sum over the K chosen experts e of w_e * down_e(silu(gate_e(xn)) * up_e(xn))
// Tokens are grouped by expert on the host (a counting sort of the chosen
// ids, tokens in order within an expert: the grouping is deterministic), so
// every expert runs three matmuls over its rows, like the reference's loop
// over experts with index_add_. The backward runs the same plan backwards;
// the router gets the gradient through the weights (backend moe_route_backward)
// and passes it to xn like any linear.
// References: transformers modeling_mixtral.py (MixtralSparseMoeBlock,
// MixtralBlockSparseTop2MLP); PyTorch autograd in tests/ref/make_ref_mixtral.py.
// Deliberately not: the router's auxiliary load-balancing loss
// (output_router_logits is off in Mixtral's config, and TRL's SFT does not add
// it), router jitter noise (0 in Mixtral's config).
#include "model/moe.h"

#include "base/base.h"

const char *qt_moe_missing_op(const qt_backend *be) {
    const qt_backend_ops *o = be->ops;
    return !o->moe_route ? "moe_route" : !o->moe_route_backward ? "moe_route_backward" : !o->moe_gather ? "moe_gather"
         : !o->moe_gather_backward ? "moe_gather_backward" : !o->moe_combine ? "moe_combine"
         : !o->moe_combine_backward ? "moe_combine_backward" : NULL;
}

// The grouping: off (E + 1, host) expert e's rows are [off[e], off[e+1]) of
// the grouped buffers; pos (N*K, backend) the grouped row of (token t, j).
static int64_t *plan(const qt_fwd *f, const int32_t *ids, int32_t *pos, int64_t N, int K, int E) {
    qt_backend *be = f->be;
    const size_t NK = (size_t)(N * K);
    int32_t *h = qt_malloc(sizeof(int32_t) * (NK ? NK : 1));
    int64_t *off = qt_calloc((size_t)E + 1, sizeof(int64_t));
    be->ops->download(be, h, ids, sizeof(int32_t) * NK);
    for (size_t i = 0; i < NK; i++) {
        QT_ASSERT(h[i] >= 0 && h[i] < E);
        off[h[i] + 1]++;
    }
    for (int e = 0; e < E; e++) off[e + 1] += off[e];
    int64_t *next = qt_malloc(sizeof(int64_t) * (size_t)E);
    for (int e = 0; e < E; e++) next[e] = off[e];
    for (size_t i = 0; i < NK; i++) h[i] = (int32_t)next[h[i]]++;   // ids -> positions, token order within an expert
    be->ops->upload(be, pos, h, sizeof(int32_t) * NK);
    qt_free(next);
    qt_free(h);
    return off;
}

// Rank of the adapter being trained (whose ax buffers the layer keeps), or 0.
static int64_t trained_rank(const qt_fwd *f) {
    for (int k = 0; k < f->n_ad; k++)
        if (f->ad[k].grads) return f->ad[k].l->cfg.rank;
    return 0;
}

// Expert linear lin's saved-ax rows of the expert starting at grouped row r0.
static float *ax_rows(float *const *ax, int lin, int64_t r0, int64_t rank) {
    return ax && ax[lin] ? ax[lin] + (size_t)(r0 * rank) : NULL;
}

void qt_moe_forward(const qt_fwd *f, int il, const qt_moe_desc *d, const qt_moe_bufs *b, float *const *ax,
                    const float *xn, float *out) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd, F = c->n_ff, r = trained_rank(f);
    const int E = c->n_expert, K = c->n_expert_used;
    qt_linear_forward(f, il, 1, &d->router, &b->logits, xn, ax);
    be->ops->moe_route(be, b->w, b->ids, b->logits, N, E, K, d->norm);
    int64_t *off = plan(f, b->ids, b->pos, N, K, E);
    be->ops->moe_gather(be, b->xg, xn, b->pos, N, K, C);
    for (int e = 0; e < E; e++) {
        const int64_t r0 = off[e], n = off[e + 1] - off[e];
        qt_expert_linear_forward(f, il, e, n, 2, (const int[]){ d->gate, d->up },
                                 (float *const[]){ b->gate + r0 * F, b->up + r0 * F }, b->xg + r0 * C,
                                 (float *const[]){ ax_rows(ax, d->gate, r0, r), ax_rows(ax, d->up, r0, r) });
    }
    be->ops->swiglu(be, b->h, b->gate, b->up, N * K * F);
    for (int e = 0; e < E; e++) {
        const int64_t r0 = off[e], n = off[e + 1] - off[e];
        qt_expert_linear_forward(f, il, e, n, 1, &d->down, (float *const[]){ b->y + r0 * C }, b->h + r0 * F,
                                 (float *const[]){ ax_rows(ax, d->down, r0, r) });
    }
    be->ops->moe_combine(be, out, b->y, b->pos, b->w, N, K, C);
    qt_free(off);
}

void qt_moe_backward(const qt_fwd *f, int il, const qt_moe_desc *d, const qt_moe_bufs *b, const qt_moe_grads *g,
                     float *const *ax, const float *xn, const float *dout, float *dxn) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd, F = c->n_ff, r = trained_rank(f);
    const int E = c->n_expert, K = c->n_expert_used;
    const size_t nKF = sizeof(float) * (size_t)(N * K * F), nKC = sizeof(float) * (size_t)(N * K * C);
    // recompute the grouping, the grouped inputs and the hidden
    int64_t *off = plan(f, b->ids, b->pos, N, K, E);
    be->ops->moe_gather(be, b->xg, xn, b->pos, N, K, C);
    be->ops->swiglu(be, b->h, b->gate, b->up, N * K * F);
    // combine: d(expert outputs) and d(routing weights)
    be->ops->moe_combine_backward(be, g->dy, g->dw, dout, b->y, b->pos, b->w, N, K, C);
    // experts, each over its own rows
    be->ops->zero(be, g->dh, nKF);
    for (int e = 0; e < E; e++) {
        const int64_t r0 = off[e], n = off[e + 1] - off[e];
        qt_expert_linear_backward(f, il, d->down, e, n, g->dh + r0 * F, g->dy + r0 * C, b->h + r0 * F,
                                  ax_rows(ax, d->down, r0, r));
    }
    be->ops->zero(be, g->dgate, nKF);
    be->ops->zero(be, g->dup, nKF);
    be->ops->swiglu_backward(be, g->dgate, g->dup, g->dh, b->gate, b->up, N * K * F);
    be->ops->zero(be, g->dxg, nKC);
    for (int e = 0; e < E; e++) {
        const int64_t r0 = off[e], n = off[e + 1] - off[e];
        qt_expert_linear_backward(f, il, d->gate, e, n, g->dxg + r0 * C, g->dgate + r0 * F, b->xg + r0 * C,
                                  ax_rows(ax, d->gate, r0, r));
        qt_expert_linear_backward(f, il, d->up, e, n, g->dxg + r0 * C, g->dup + r0 * F, b->xg + r0 * C,
                                  ax_rows(ax, d->up, r0, r));
    }
    be->ops->moe_gather_backward(be, dxn, g->dxg, b->pos, N, K, C);
    // router: through the routing weights
    be->ops->moe_route_backward(be, g->dlogits, g->dw, b->w, b->ids, b->logits, N, E, K, d->norm);
    qt_linear_backward(f, il, d->router, dxn, g->dlogits, xn, ax ? ax[d->router] : NULL);
    qt_free(off);
}
