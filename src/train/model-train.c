// model-train.c: LoRA training forward/backward (see model-train.h). The
// layers are the architecture's own (arch->layer_forward / layer_backward,
// the code inference runs too); this file owns the memory (activations kept
// per layer, or one layer's with checkpointing), the loss head and the order:
//   x_0 = embed(tokens), x_{l+1} = layer_l(x_l),
//   loss = CE(final_norm(x_L) W_out^T, targets)
// computed in row chunks so the (tokens, vocab) logits never exist in full;
// then the backward from the head down to the first adapted layer.
// Reference: the PyTorch script tests/ref/make_ref_lora.py computes the same
// loss and gradients with autograd.
#include "train/model-train.h"

#include <string.h>

#include "backend/backend-cpu.h"
#include "backend/layers-train.h"
#include "base/base.h"
#include "model/engine.h"

// Rows of logits held at once in the loss head: (ce_rows, n_vocab) floats.
#define CE_ROWS_HOST 64
#define CE_ROWS_DEVICE 1024

struct qt_tmodel {
    const qt_model *m;
    qt_lora *lora;
    qt_backend *be;
    int max_tokens, max_seq, ce_rows;
    qt_act_mode mode;
    bool checkpoint;         // mode == QT_ACT_CHECKPOINT
    int n_sets;              // activation sets: 1 with checkpointing, else n_layer
    float **acts;            // (n_sets, arch->n_acts)
    float **ax;              // (n_sets, n_linears): (N * rows, rank) each (qt_arch_linear_rows), NULL where no adapter
    float *work[QT_MAX_ACTS], *grads[QT_MAX_ACTS];
    float *xs;               // (n_layer + 1, N, C) layer inputs; xs[L] feeds the head
    float *xnf, *rstdf;      // (N, C), (N) final norm
    float *dx0, *dx1;        // (N, C)
    float *tmp, *xdrop;      // (N, widest out), (N, widest in) (NULL without dropout)
    float *dax, *sax;        // (N, r)
    float *logits;           // (ce_rows, V)
    float *losses;           // (ce_rows)
    float *cs;               // (N, HS) RoPE table of the step's positions
    void *arena;
    size_t arena_size;
    float *losses_host;      // (ce_rows)
    float *grads_host;       // (n_params) device backends: gradients downloaded here
    int *pos;                // host (N)
    qt_adapter ad;           // the trained adapter as the backend sees it
    qt_prec prec_before;     // the CPU backend's precision before this model changed it
    const atomic_int *stop;
    qt_tmodel_layer_fn layer_hook;   // after each layer's backward (gradient all-reduce)
    void *layer_hook_ud;
};

void qt_tmodel_set_layer_hook(qt_tmodel *tm, qt_tmodel_layer_fn fn, void *ud) {
    tm->layer_hook = fn;
    tm->layer_hook_ud = ud;
}

void qt_tmodel_set_stop(qt_tmodel *tm, const atomic_int *stop) {
    tm->stop = stop;
    tm->be->ops->set_stop(tm->be, stop);
}

void qt_tmodel_set_prec(qt_tmodel *tm, qt_prec prec) {
    qt_kctx *kc = qt_backend_cpu_kctx(tm->be);
    if (kc) kc->prec = prec;
}

typedef struct {
    size_t off;
    uint8_t *base;
} arena;

static float *take(arena *a, size_t n_floats) {
    float *p = a->base ? (float *)(a->base + a->off) : NULL;
    a->off += (n_floats * sizeof(float) + 63) & ~(size_t)63;
    return p;
}

const char *qt_act_mode_name(qt_act_mode mode) {
    return mode == QT_ACT_CHECKPOINT ? "checkpoint" : mode == QT_ACT_RECOMPUTE ? "recompute" : "keep";
}

// Lays out (tm == NULL: only sizes) every buffer.
static size_t plan(qt_tmodel *tm, const qt_model *m, const qt_lora *lora, int N, qt_act_mode mode, int ce_rows,
                   uint8_t *base) {
    const bool ckpt = mode == QT_ACT_CHECKPOINT;
    const qt_config *c = &m->cfg;
    const qt_arch_desc *a = m->arch;
    const size_t C = (size_t)c->n_embd, r = (size_t)lora->cfg.rank, n = (size_t)N;
    int64_t max_in, max_out;
    qt_linear_widths(m, &max_in, &max_out);
    const int n_sets = ckpt ? 1 : c->n_layer;
    arena ar = { 0, base };
    // RECOMPUTE: the recomputable acts get one buffer shared by every layer
    uint64_t shared = mode == QT_ACT_RECOMPUTE ? a->act_recompute : 0;
    float *shared_buf[QT_MAX_ACTS] = { 0 };
    for (int i = 0; i < a->n_acts; i++)
        if (shared >> i & 1) shared_buf[i] = take(&ar, n * (size_t)qt_dim_size(c, a->acts[i]));
    for (int s = 0; s < n_sets; s++) {
        int il = ckpt ? c->n_layer - 1 : s;   // which layer's adapters this set holds (ckpt: any, same shapes)
        for (int i = 0; i < a->n_acts; i++) {
            float *p = shared >> i & 1 ? shared_buf[i] : take(&ar, n * (size_t)qt_dim_size(c, a->acts[i]));
            if (tm) tm->acts[(size_t)s * a->n_acts + i] = p;
        }
        for (int t = 0; t < a->n_linears; t++) {
            bool has = (lora->cfg.targets >> t & 1) && (ckpt || il >= lora->first_layer);
            // an expert linear sees each token's K rows (grouped by expert)
            float *p = has ? take(&ar, n * (size_t)qt_arch_linear_rows(c, a, t) * r) : NULL;
            if (tm) tm->ax[(size_t)s * a->n_linears + t] = p;
        }
    }
    for (int i = 0; i < a->n_work; i++) {
        float *p = take(&ar, n * (size_t)qt_dim_size(c, a->work[i]));
        if (tm) tm->work[i] = p;
    }
    for (int i = 0; i < a->n_grads; i++) {
        float *p = take(&ar, n * (size_t)qt_dim_size(c, a->grads[i]));
        if (tm) tm->grads[i] = p;
    }
    qt_tmodel dm;
    qt_tmodel *T = tm ? tm : &dm;
    T->xs = take(&ar, (size_t)(c->n_layer + 1) * n * C);
    T->xnf = take(&ar, n * C); T->rstdf = take(&ar, n);
    T->dx0 = take(&ar, n * C); T->dx1 = take(&ar, n * C);
    T->tmp = take(&ar, n * (size_t)max_out);
    T->xdrop = lora->cfg.dropout > 0 ? take(&ar, n * (size_t)max_in) : NULL;   // only dropout writes it
    T->dax = take(&ar, n * r); T->sax = take(&ar, n * r);
    T->logits = take(&ar, (size_t)ce_rows * (size_t)c->n_vocab);
    T->losses = take(&ar, (size_t)ce_rows);
    T->cs = take(&ar, n * (size_t)c->head_dim);
    return ar.off;
}

size_t qt_tmodel_bytes(const qt_model *m, const qt_lora *lora, int max_tokens, int max_seq, qt_act_mode mode,
                       int n_threads) {
    (void)n_threads;
    const qt_config *c = &m->cfg;
    // the CPU backend's attention scratch for the longest sequence
    size_t att = qt_attention_train_scratch(max_seq, c->n_head, c->n_head_kv, c->head_dim) * sizeof(float);
    return plan(NULL, m, lora, max_tokens, mode, CE_ROWS_HOST, NULL) + att;
}

qt_tmodel *qt_tmodel_init(const qt_model *m, qt_lora *lora, qt_backend *be, int max_tokens, int max_seq,
                          qt_act_mode mode) {
    QT_ASSERT(max_tokens > 0 && max_seq > 0 && max_seq <= max_tokens && be);
    QT_ASSERT(lora->arch == m->arch && (m->be == be || (!m->be && be->host_memory)));
    const qt_arch_desc *a = m->arch;
    qt_tmodel *tm = qt_calloc(1, sizeof(qt_tmodel));
    tm->m = m; tm->lora = lora; tm->be = be;
    if (qt_backend_cpu_kctx(be)) tm->prec_before = qt_backend_cpu_kctx(be)->prec;
    QT_ASSERT(mode == QT_ACT_KEEP || mode == QT_ACT_CHECKPOINT || mode == QT_ACT_RECOMPUTE);
    const bool checkpoint = mode == QT_ACT_CHECKPOINT;
    tm->max_tokens = max_tokens; tm->max_seq = max_seq; tm->mode = mode; tm->checkpoint = checkpoint;
    tm->ce_rows = be->host_memory ? CE_ROWS_HOST : CE_ROWS_DEVICE;
    tm->n_sets = checkpoint ? 1 : m->cfg.n_layer;
    tm->acts = qt_calloc((size_t)tm->n_sets * (size_t)a->n_acts, sizeof(float *));
    tm->ax = qt_calloc((size_t)tm->n_sets * (size_t)a->n_linears, sizeof(float *));
    tm->pos = qt_malloc(sizeof(int) * (size_t)max_tokens);
    tm->losses_host = qt_malloc(sizeof(float) * (size_t)tm->ce_rows);
    tm->arena_size = plan(NULL, m, lora, max_tokens, mode, tm->ce_rows, NULL);
    tm->arena = be->ops->alloc(be, tm->arena_size, "training activations");
    if (!tm->arena || qt_adapter_bind(be, &tm->ad, lora, 1.0f, lora->grads != NULL) != QT_OK) {
        qt_tmodel_free(tm);
        return NULL;
    }
    plan(tm, m, lora, max_tokens, mode, tm->ce_rows, tm->arena);
    // Training's products see the dequantized weights (QLoRA's math), not
    // activations rounded for inference kernels: bf16 operands with fp32
    // sums where the CPU has a bf16 gemm (qtune train's default), else fp32;
    // qt_tmodel_set_prec chooses otherwise.
    qt_kctx *kc = qt_backend_cpu_kctx(be);
    if (kc && kc->prec == QT_PREC_FAST) kc->prec = kc->kt->bf16.gemm_acc ? QT_PREC_BF16 : QT_PREC_F32;
    if (!be->host_memory && lora->grads) tm->grads_host = qt_malloc(sizeof(float) * lora->n_params);
    return tm;
}

void qt_tmodel_free(qt_tmodel *tm) {
    if (!tm) return;
    qt_kctx *kc = qt_backend_cpu_kctx(tm->be);
    if (kc) kc->prec = tm->prec_before;   // inference on the same backend keeps its own
    qt_adapter_release(tm->be, &tm->ad);
    tm->be->ops->free(tm->be, tm->arena, tm->arena_size);
    qt_free(tm->acts);
    qt_free(tm->ax);
    qt_free(tm->pos);
    qt_free(tm->losses_host);
    qt_free(tm->grads_host);
    qt_free(tm);
}

static int check_batch(const qt_tmodel *tm, const qt_batch *b) {
    const int N = b->seq_start[b->n_seq], V = tm->m->cfg.n_vocab;
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
        if (tm->m->cfg.n_pos_max > 0 && T > tm->m->cfg.n_pos_max) {
            qt_log_error("sequence of %d tokens: the model has %d positions (use --max-seq-len %d)", T,
                         tm->m->cfg.n_pos_max, tm->m->cfg.n_pos_max);
            return QT_ERR;
        }
    }
    for (int i = 0; i < N; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= V || b->targets[i] >= V) {
            qt_log_error("token id out of range in the batch");
            return QT_ERR;
        }
    return QT_OK;
}

static bool stopped(const qt_tmodel *tm) { return tm->stop && atomic_load_explicit(tm->stop, memory_order_relaxed); }

int qt_tmodel_step(qt_tmodel *tm, const qt_batch *b, bool backward, bool train, float dscale, uint64_t drop_seed,
                   double *loss_sum, int64_t *n_targets) {
    if (check_batch(tm, b) != QT_OK) return QT_ERR;
    QT_ASSERT(!backward || tm->lora->grads);
    const qt_model *m = tm->m;
    const qt_config *c = &m->cfg;
    const qt_arch_desc *a = m->arch;
    qt_backend *be = tm->be;
    const int N = b->seq_start[b->n_seq], C = c->n_embd, V = c->n_vocab, Lc = c->n_layer;
    const size_t nC = (size_t)N * C;
    *loss_sum = 0;
    *n_targets = 0;

    const qt_seqs sq = { b->n_seq, b->seq_start, NULL, NULL };
    for (int s = 0; s < b->n_seq; s++)
        for (int t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) tm->pos[t] = t - b->seq_start[s];
    qt_fwd f = { .m = m, .be = be, .N = N, .seqs = &sq, .cs = tm->cs, .kv = NULL, .ad = &tm->ad, .n_ad = 1,
                 .train = train, .recompute = tm->mode == QT_ACT_RECOMPUTE, .drop_seed = drop_seed, .tmp = tm->tmp, .xdrop = tm->xdrop, .dax = tm->dax,
                 .sax = tm->sax, .stop = tm->stop };
    qt_adapter_upload(be, &tm->ad);   // the optimizer changed the host parameters
    if (backward && !be->host_memory) be->ops->zero(be, tm->ad.grads, sizeof(float) * tm->lora->n_params);
    be->ops->rope_table(be, tm->cs, tm->pos, N, c->head_dim, c->rope_theta, &m->rope_freqs);
    qt_embed(&f, tm->xs, b->tokens);
    for (int il = 0; il < Lc; il++) {
        if (stopped(tm)) return QT_STOPPED;
        int s = tm->checkpoint ? 0 : il;
        a->layer_forward(&f, il, &tm->acts[(size_t)s * a->n_acts], tm->work, &tm->ax[(size_t)s * a->n_linears],
                         tm->xs + (size_t)il * nC, tm->xs + (size_t)(il + 1) * nC);
    }

    // head: final norm, logits and cross-entropy in row chunks; d loss/d xnf on the way
    const float *xL = tm->xs + (size_t)Lc * nC;
    const qt_tensor *W_out = qt_model_global(m, QT_G_OUTPUT);
    qt_final_norm(&f, tm->xnf, tm->rstdf, xL, N);
    float *dxnf = tm->dx1;
    if (backward) be->ops->zero(be, dxnf, sizeof(float) * nC);
    double sum = 0;
    int64_t cnt = 0;
    for (int i0 = 0; i0 < N; i0 += tm->ce_rows) {
        int nr = QT_MIN(tm->ce_rows, N - i0);
        bool any = false;
        for (int i = 0; i < nr; i++)
            if (b->targets[i0 + i] >= 0) { any = true; cnt++; }
        if (!any) continue;
        qt_mm_out o = { tm->logits, W_out };
        be->ops->matmul(be, tm->xnf + (size_t)i0 * C, C, nr, &o, 1);
        be->ops->cross_entropy(be, tm->losses, backward ? tm->logits : NULL, tm->logits, b->targets + i0, dscale, nr, V);
        be->ops->download(be, tm->losses_host, tm->losses, sizeof(float) * (size_t)nr);
        for (int i = 0; i < nr; i++) sum += tm->losses_host[i];
        if (backward) be->ops->matmul_t(be, dxnf + (size_t)i0 * C, tm->logits, W_out, nr);
    }
    *loss_sum = sum;
    *n_targets = cnt;
    if (stopped(tm)) return QT_STOPPED;
    if (!backward) return QT_OK;

    float *dx = tm->dx0, *dx_next = tm->dx1;
    be->ops->zero(be, dx, sizeof(float) * nC);
    qt_final_norm_backward(&f, dx, dxnf, xL, tm->rstdf, N);
    for (int il = Lc - 1; il >= tm->lora->first_layer; il--) {
        if (stopped(tm)) return QT_STOPPED;
        const float *x = tm->xs + (size_t)il * nC;
        int s = tm->checkpoint ? 0 : il;
        float *const *A = &tm->acts[(size_t)s * a->n_acts];
        float *const *ax = &tm->ax[(size_t)s * a->n_linears];
        if (tm->checkpoint) a->layer_forward(&f, il, A, tm->work, ax, x, tm->xs + (size_t)(il + 1) * nC);   // recompute
        a->layer_backward(&f, il, A, tm->work, tm->grads, ax, x, dx, dx_next);
        // layer il's adapter gradients are final: start their all-reduce
        if (be->host_memory && tm->layer_hook) tm->layer_hook(tm->layer_hook_ud, il);
        float *t = dx; dx = dx_next; dx_next = t;
    }
    if (stopped(tm)) return QT_STOPPED;
    if (!be->host_memory) {
        be->ops->download(be, tm->grads_host, tm->ad.grads, sizeof(float) * tm->lora->n_params);
        for (size_t i = 0; i < tm->lora->n_params; i++) tm->lora->grads[i] += tm->grads_host[i];
        if (tm->layer_hook)
            for (int il = Lc - 1; il >= tm->lora->first_layer; il--) tm->layer_hook(tm->layer_hook_ud, il);
    }
    return QT_OK;
}
