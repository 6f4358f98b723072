// context.c: inference over a KV cache (llama2.c's `forward`, batched over
// the tokens of several sequences so prompts run as matmuls and many
// clients decode in one pass). Per forward:
//   x = embed(tokens); per layer: x = arch->layer_forward(x) (the same layer
//   code training runs, with the KV cache in place of the kept activations);
//   logits = output(final_norm(x)) for the rows whose logits are wanted.
// Reference: transformers' *ForCausalLM in fp32 (tests/ref/).
#include "model/context.h"

#include <string.h>

#include "backend/backend-cpu.h"
#include "base/base.h"

typedef struct {
    size_t off;
} arena_plan;

static size_t take(arena_plan *p, size_t bytes) {
    size_t off = p->off;
    p->off += (bytes + 63) & ~(size_t)63;
    return off;
}

// Lays out every activation buffer in one arena; pointers set when c != NULL.
static size_t plan(const qt_model *m, int n_batch, int n_slots, bool logits_all, qt_ctx *c) {
    const qt_config *cf = &m->cfg;
    const qt_arch_desc *a = m->arch;
    const size_t B = (size_t)n_batch, C = (size_t)cf->n_embd, f = sizeof(float);
    int64_t max_in, max_out;
    qt_linear_widths(m, &max_in, &max_out);
    arena_plan p = { 0 };
    size_t o_x = take(&p, B * C * f), o_x2 = take(&p, B * C * f);
    size_t o_acts[QT_MAX_ACTS], o_work[QT_MAX_ACTS];
    for (int i = 0; i < a->n_acts; i++) o_acts[i] = take(&p, B * (size_t)qt_dim_size(cf, a->acts[i]) * f);
    for (int i = 0; i < a->n_work; i++) o_work[i] = take(&p, B * (size_t)qt_dim_size(cf, a->work[i]) * f);
    size_t o_cs = take(&p, B * (size_t)cf->head_dim * f), o_xn = take(&p, B * C * f);
    size_t o_logits = take(&p, (logits_all ? B : (size_t)n_slots) * (size_t)cf->n_vocab * f);
    size_t o_tmp = take(&p, B * (size_t)max_out * f);
    if (c) {
        uint8_t *base = c->arena;
        c->x = (float *)(base + o_x);
        c->x2 = (float *)(base + o_x2);
        for (int i = 0; i < a->n_acts; i++) c->acts[i] = (float *)(base + o_acts[i]);
        for (int i = 0; i < a->n_work; i++) c->work[i] = (float *)(base + o_work[i]);
        c->cs = (float *)(base + o_cs);
        c->xn = (float *)(base + o_xn);
        c->logits_dev = (float *)(base + o_logits);
        c->tmp = (float *)(base + o_tmp);
    }
    return p.off;
}

// the projections' type: the backend runs the attention in the precision
// the prompt's products take on those weights, and chooses the CPU cache's
// element type by it
static qt_type linear_type(const qt_model *m) {
    return m->arch->n_linears > 0 ? qt_model_linear(m, 0, 0)->type : QT_TYPE_F32;
}

size_t qt_ctx_kv_bytes(const qt_model *m, int n_ctx, qt_type *type) {
    const qt_config *cf = &m->cfg;
    const qt_kctx kc = qt_kctx_default(NULL);
    const qt_type wt = linear_type(m);
    if (type) *type = qt_backend_cpu_kv_type(&kc, wt);
    return qt_backend_cpu_kv_bytes(&kc, cf->n_layer, 1, n_ctx, cf->n_head_kv, cf->head_dim, wt);
}

size_t qt_ctx_bytes(const qt_model *m, int n_threads, int n_ctx, int n_batch, bool logits_all) {
    n_batch = QT_MIN(n_batch, n_ctx);
    return qt_ctx_kv_bytes(m, n_ctx, NULL) + plan(m, n_batch, 1, logits_all, NULL);
}

qt_ctx *qt_ctx_init_slots(const qt_model *m, qt_backend *be, int n_ctx, int n_batch, int n_slots, bool logits_all) {
    QT_ASSERT(n_ctx > 0 && n_batch > 0 && n_slots > 0);
    const qt_config *cf = &m->cfg;
    qt_ctx *c = qt_calloc(1, sizeof(qt_ctx));
    if (!be) be = c->own_be = qt_backend_init("cpu", NULL);
    QT_ASSERT(m->be == be || (!m->be && be->host_memory));
    c->m = m;
    c->be = be;
    if (m->cfg.n_pos_max > 0) n_ctx = QT_MIN(n_ctx, m->cfg.n_pos_max);   // no cache past the model's positions
    c->n_ctx = n_ctx;
    c->n_batch = QT_MIN(n_batch, n_ctx * n_slots);
    c->n_slots = n_slots;
    c->logits_all = logits_all;
    c->n_past = qt_calloc((size_t)n_slots, sizeof(int));
    c->kv = be->ops->kv_init(be, cf->n_layer, n_slots, n_ctx, cf->n_head_kv, cf->head_dim, linear_type(m));
    if (!c->kv) goto fail;
    c->arena_size = plan(m, c->n_batch, n_slots, logits_all, NULL);
    c->arena = be->ops->alloc(be, c->arena_size, "the inference activations");
    if (!c->arena) goto fail;
    plan(m, c->n_batch, n_slots, logits_all, c);
    size_t logits_n = (logits_all ? (size_t)c->n_batch : (size_t)n_slots) * (size_t)cf->n_vocab;
    c->logits = be->host_memory ? c->logits_dev : qt_malloc(sizeof(float) * logits_n);
    c->tok = qt_malloc(sizeof(int32_t) * (size_t)c->n_batch);
    c->pos = qt_malloc(sizeof(int) * (size_t)c->n_batch);
    c->rows = qt_malloc(sizeof(int) * (size_t)c->n_batch);
    return c;
fail:
    qt_ctx_free(c);
    return NULL;
}

qt_ctx *qt_ctx_init(const qt_model *m, qt_backend *be, int n_ctx, int n_batch, bool logits_all) {
    return qt_ctx_init_slots(m, be, n_ctx, n_batch, 1, logits_all);
}

int qt_ctx_add_adapter(qt_ctx *c, const qt_lora *l, float scale) {
    if (c->n_ad >= QT_MAX_ADAPTERS) {
        qt_log_error("at most %d adapters at once", QT_MAX_ADAPTERS);
        return QT_ERR;
    }
    if (l->arch != c->m->arch) {
        qt_log_error("the adapter is for architecture %s, the model is %s", l->arch->name, c->m->arch->name);
        return QT_ERR;
    }
    qt_backend *be = c->be;
    if (l->cfg.rank > c->lora_max_rank) {
        size_t old = sizeof(float) * (size_t)c->n_batch * (size_t)c->lora_max_rank;
        size_t want = sizeof(float) * (size_t)c->n_batch * (size_t)l->cfg.rank;
        float *s = be->ops->alloc(be, want, "LoRA scratch");
        if (!s) return QT_ERR;
        be->ops->free(be, c->sax, old);
        c->sax = s;
        c->lora_max_rank = l->cfg.rank;
    }
    if (qt_adapter_bind(be, &c->ad[c->n_ad], l, scale, false) != QT_OK) return QT_ERR;
    c->n_ad++;
    return QT_OK;
}

void qt_ctx_set_adapter(qt_ctx *c, const qt_lora *l, float scale) {
    for (int i = 0; i < c->n_ad; i++) qt_adapter_release(c->be, &c->ad[i]);
    c->n_ad = 0;
    if (l) qt_ctx_add_adapter(c, l, scale);
}

void qt_ctx_free(qt_ctx *c) {
    if (!c) return;
    qt_backend *be = c->be;
    for (int i = 0; i < c->n_ad; i++) qt_adapter_release(be, &c->ad[i]);
    be->ops->free(be, c->sax, sizeof(float) * (size_t)c->n_batch * (size_t)c->lora_max_rank);
    be->ops->kv_free(be, c->kv);
    be->ops->free(be, c->arena, c->arena_size);
    if (!be->host_memory) qt_free(c->logits);
    qt_free(c->tok);
    qt_free(c->pos);
    qt_free(c->rows);
    qt_free(c->n_past);
    qt_backend_free(c->own_be);
    qt_free(c);
}

int qt_ctx_n_past(const qt_ctx *c, int slot) {
    QT_ASSERT(slot >= 0 && slot < c->n_slots);
    return c->n_past[slot];
}

void qt_ctx_truncate_slot(qt_ctx *c, int slot, int n) {
    QT_ASSERT(n >= 0 && slot >= 0 && slot < c->n_slots);
    if (n < c->n_past[slot]) c->n_past[slot] = n;
}

void qt_ctx_truncate(qt_ctx *c, int n) { qt_ctx_truncate_slot(c, 0, n); }

// Checks the batch against the context: ids, slots, room, and (batch) that
// it fits one forward. QT_ERR (logged).
static int check_batch(const qt_ctx *c, const qt_ctx_seq *seqs, int n_seq, bool batch) {
    const int V = c->m->cfg.n_vocab;
    int total = 0;
    for (int i = 0; i < n_seq; i++) {
        const qt_ctx_seq *s = &seqs[i];
        if (s->slot < 0 || s->slot >= c->n_slots) {
            qt_log_error("slot %d out of range [0, %d)", s->slot, c->n_slots);
            return QT_ERR;
        }
        for (int k = 0; k < i; k++)
            if (seqs[k].slot == s->slot) {
                qt_log_error("slot %d appears twice in one batch", s->slot);
                return QT_ERR;
            }
        if (s->n <= 0) {
            qt_log_error("nothing to evaluate: empty token list");
            return QT_ERR;
        }
        const int pmax = c->m->cfg.n_pos_max;
        if (pmax > 0 && c->n_past[s->slot] + s->n > pmax) {
            qt_log_error("positions up to %d: the model has %d (%s)", c->n_past[s->slot] + s->n, pmax,
                         c->m->cfg.n_swa ? "its sliding attention window" : "its learned position embeddings");
            return QT_ERR;
        }
        if (c->n_past[s->slot] + s->n > c->n_ctx) {
            qt_log_error("context full: %d tokens in the cache + %d new > context size %d (raise --ctx-size)",
                         c->n_past[s->slot], s->n, c->n_ctx);
            return QT_ERR;
        }
        for (int t = 0; t < s->n; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= V) {
                qt_log_error("token id %d out of range [0, %d)", s->tokens[t], V);
                return QT_ERR;
            }
        total += s->n;
    }
    if (batch && total > c->n_batch) {
        qt_log_error("%d tokens in one batch exceed the batch size %d", total, c->n_batch);
        return QT_ERR;
    }
    return QT_OK;
}

// One forward over n_seq sequences (already checked). all_logits: every
// token's logits (one sequence), else each sequence's last token's.
static void forward(qt_ctx *c, const qt_ctx_seq *seqs, int n_seq, bool all_logits) {
    const qt_model *m = c->m;
    const qt_config *cf = &m->cfg;
    qt_backend *be = c->be;
    int start[65], pos0[64], slot[64];
    int *st = n_seq < 64 ? start : qt_malloc(sizeof(int) * (size_t)(n_seq + 1));
    int *p0 = n_seq < 64 ? pos0 : qt_malloc(sizeof(int) * (size_t)n_seq);
    int *sl = n_seq < 64 ? slot : qt_malloc(sizeof(int) * (size_t)n_seq);
    int N = 0;
    for (int i = 0; i < n_seq; i++) {
        st[i] = N;
        p0[i] = c->n_past[seqs[i].slot];
        sl[i] = seqs[i].slot;
        memcpy(c->tok + N, seqs[i].tokens, sizeof(int32_t) * (size_t)seqs[i].n);
        for (int t = 0; t < seqs[i].n; t++) c->pos[N + t] = p0[i] + t;
        N += seqs[i].n;
    }
    st[n_seq] = N;
    const qt_seqs sq = { n_seq, st, p0, sl };
    qt_fwd f = { .m = m, .be = be, .N = N, .seqs = &sq, .cs = c->cs, .kv = c->kv, .ad = c->ad, .n_ad = c->n_ad,
                 .tmp = c->tmp, .sax = c->sax };
    be->ops->rope_table(be, c->cs, c->pos, N, cf->head_dim, cf->rope_theta, &m->rope_freqs);
    qt_embed(&f, c->x, c->tok);
    float *x = c->x, *y = c->x2;
    for (int il = 0; il < cf->n_layer; il++) {
        m->arch->layer_forward(&f, il, c->acts, c->work, NULL, x, y);
        float *t = x; x = y; y = t;
    }
    c->x_final = x;
    // Only the rows whose logits are wanted go through the (large) output head.
    int n_out = all_logits ? N : n_seq;
    const float *rows = x;
    if (!all_logits) {
        for (int i = 0; i < n_seq; i++) c->rows[i] = st[i + 1] - 1;
        be->ops->get_rows(be, y, x, c->rows, n_seq, cf->n_embd);
        rows = y;
    }
    qt_final_norm(&f, c->xn, NULL, rows, n_out);
    qt_mm_out o = { c->logits_dev, qt_model_global(m, QT_G_OUTPUT) };
    be->ops->matmul(be, c->xn, cf->n_embd, n_out, &o, 1);
    if (!be->host_memory)
        be->ops->download(be, c->logits, c->logits_dev, sizeof(float) * (size_t)n_out * (size_t)cf->n_vocab);
    for (int i = 0; i < n_seq; i++) c->n_past[seqs[i].slot] += seqs[i].n;
    if (st != start) qt_free(st);
    if (p0 != pos0) qt_free(p0);
    if (sl != slot) qt_free(sl);
}

const float *qt_ctx_eval_batch(qt_ctx *c, const qt_ctx_seq *seqs, int n_seq) {
    if (n_seq <= 0 || n_seq > c->n_slots) {
        qt_log_error("a batch of %d sequences for %d slots", n_seq, c->n_slots);
        return NULL;
    }
    if (check_batch(c, seqs, n_seq, true) != QT_OK) return NULL;
    forward(c, seqs, n_seq, false);
    return c->logits;
}

const float *qt_ctx_eval(qt_ctx *c, const int32_t *tokens, int n) { return qt_ctx_eval_slot(c, 0, tokens, n); }

const float *qt_ctx_eval_slot(qt_ctx *c, int slot, const int32_t *tokens, int n) {
    if (c->logits_all && n > c->n_batch) {
        qt_log_error("%d tokens with all logits exceed the batch size %d", n, c->n_batch);
        return NULL;
    }
    const qt_ctx_seq whole = { tokens, n, slot };
    if (check_batch(c, &whole, 1, false) != QT_OK) return NULL;   // before any chunk changes the cache
    for (int i = 0; i < n; i += c->n_batch) {
        const qt_ctx_seq s = { tokens + i, QT_MIN(c->n_batch, n - i), slot };
        forward(c, &s, 1, c->logits_all);
        if (c->hidden_out) {   // the chunk's rows of the residual stream through the final norm
            const qt_fwd f = { .m = c->m, .be = c->be, .N = s.n };
            qt_final_norm(&f, c->xn, NULL, c->x_final, s.n);
            c->be->ops->download(c->be, c->hidden_out + (size_t)i * c->m->cfg.n_embd, c->xn,
                                 sizeof(float) * (size_t)s.n * (size_t)c->m->cfg.n_embd);
        }
    }
    return c->logits;
}
