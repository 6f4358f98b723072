// context.c: the Llama-family forward pass over a KV cache (llama2.c's
// `forward`, batched over T tokens so prompt processing runs as matmuls).
//   x = embed(tokens)
//   per layer: x += wo(attn(rope(wq xn), rope(wk xn), wv xn)), xn = rmsnorm(x)
//              x += w_down(silu(w_gate xn) * w_up xn),          xn = rmsnorm(x)
//   logits = output(rmsnorm(x))
// Reference: transformers LlamaForCausalLM / Qwen2ForCausalLM in fp32.
#include "model/context.h"

#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/layers.h"

typedef struct {
    size_t off;
} arena_plan;

static size_t take(arena_plan *p, size_t bytes) {
    size_t off = p->off;
    p->off += (bytes + 63) & ~(size_t)63;
    return off;
}

// Lays out every buffer in one arena; offsets written to *c when c != NULL.
static size_t plan(const qt_model *m, int n_threads, int n_ctx, int n_batch, bool logits_all, qt_ctx *c) {
    const qt_config *cf = &m->cfg;
    size_t B = (size_t)n_batch, C = (size_t)cf->n_embd, F = (size_t)cf->n_ff, HS = (size_t)cf->head_dim;
    size_t qd = (size_t)cf->n_head * HS, kvd = (size_t)cf->n_head_kv * HS, f = sizeof(float);
    size_t kv = (size_t)cf->n_layer * (size_t)n_ctx * kvd * f;
    arena_plan p = { 0 };
    size_t o[15];
    o[0] = take(&p, kv);
    o[1] = take(&p, kv);
    o[2] = take(&p, B * C * f);
    o[3] = take(&p, B * C * f);
    o[4] = take(&p, B * qd * f);
    o[5] = take(&p, B * qd * f);
    o[6] = take(&p, B * C * f);
    o[7] = take(&p, B * F * f);
    o[8] = take(&p, B * F * f);
    o[9] = take(&p, (logits_all ? B : 1) * (size_t)cf->n_vocab * f);
    o[10] = take(&p, qt_attention_scratch(n_batch, cf->n_head, cf->n_head_kv, cf->head_dim, n_ctx, n_threads) * f);
    o[11] = take(&p, B * HS * f);
    o[12] = take(&p, B * sizeof(int));
    o[13] = take(&p, B * kvd * f);
    o[14] = take(&p, B * kvd * f);
    if (c) {
        uint8_t *a = c->arena;
        c->k_cache = (float *)(a + o[0]); c->v_cache = (float *)(a + o[1]);
        c->x = (float *)(a + o[2]); c->xn = (float *)(a + o[3]);
        c->q = (float *)(a + o[4]); c->att = (float *)(a + o[5]);
        c->proj = (float *)(a + o[6]); c->gate = (float *)(a + o[7]); c->up = (float *)(a + o[8]);
        c->logits = (float *)(a + o[9]); c->scores = (float *)(a + o[10]);
        c->rope_cs = (float *)(a + o[11]); c->pos = (int *)(a + o[12]);
        c->k = (float *)(a + o[13]); c->v = (float *)(a + o[14]);
    }
    return p.off;
}

size_t qt_ctx_bytes(const qt_model *m, int n_threads, int n_ctx, int n_batch, bool logits_all) {
    return plan(m, n_threads, n_ctx, n_batch, logits_all, NULL);
}

qt_ctx *qt_ctx_init(const qt_model *m, qt_pool *pool, int n_ctx, int n_batch, bool logits_all) {
    QT_ASSERT(n_ctx > 0 && n_batch > 0);
    qt_ctx *c = qt_calloc(1, sizeof(qt_ctx));
    c->m = m;
    c->pool = pool;
    c->n_ctx = n_ctx;
    c->n_batch = QT_MIN(n_batch, n_ctx);
    c->logits_all = logits_all;
    int nth = qt_pool_n_threads(pool);
    c->arena_size = plan(m, nth, n_ctx, c->n_batch, logits_all, NULL);
    c->arena = qt_alloc_big(c->arena_size, "the inference context (KV cache and activations)");
    if (!c->arena) {
        qt_free(c);
        return NULL;
    }
    plan(m, nth, n_ctx, c->n_batch, logits_all, c);
    return c;
}

int qt_ctx_add_adapter(qt_ctx *c, const qt_lora *l, float scale) {
    if (c->n_loras >= QT_MAX_ADAPTERS) {
        qt_log_error("at most %d adapters at once", QT_MAX_ADAPTERS);
        return QT_ERR;
    }
    const qt_config *cf = &c->m->cfg;
    size_t wide = (size_t)QT_MAX(QT_MAX(cf->n_head * cf->head_dim, cf->n_ff), cf->n_embd);
    if (l->cfg.rank > c->lora_max_rank) {
        c->lora_max_rank = l->cfg.rank;
        c->lora_ax = qt_realloc(c->lora_ax, sizeof(float) * (size_t)c->n_batch * (size_t)l->cfg.rank);
    }
    if (!c->lora_tmp) c->lora_tmp = qt_malloc(sizeof(float) * (size_t)c->n_batch * wide);
    c->loras[c->n_loras] = l;
    c->lora_scales[c->n_loras++] = scale;
    return QT_OK;
}

void qt_ctx_set_adapter(qt_ctx *c, const qt_lora *l, float scale) {
    c->n_loras = 0;
    if (l) qt_ctx_add_adapter(c, l, scale);
}

// y (T, out) += scale * s * (x A^T) B^T for every adapter on (il, target).
static void apply_adapter(qt_ctx *c, int il, int target, float *y, const float *x, int T) {
    for (int i = 0; i < c->n_loras; i++) {
        const qt_lora *l = c->loras[i];
        if (il < l->first_layer) continue;
        const qt_lora_pair *p = qt_lora_get(l, il, target);
        if (!p->a) continue;
        const int r = l->cfg.rank;
        qt_matmul(c->pool, c->lora_ax, x, p->a, QT_TYPE_F32, p->n_in, r, T);
        qt_matmul(c->pool, c->lora_tmp, c->lora_ax, p->b, QT_TYPE_F32, r, p->n_out, T);
        qt_kernels()->axpy_f32(T * p->n_out, c->lora_scales[i] * l->scale, c->lora_tmp, y);
    }
}

void qt_ctx_free(qt_ctx *c) {
    if (!c) return;
    qt_free(c->lora_ax);
    qt_free(c->lora_tmp);
    qt_free_big(c->arena, c->arena_size);
    qt_free(c);
}

void qt_ctx_truncate(qt_ctx *c, int n) {
    QT_ASSERT(n >= 0);
    if (n < c->n_past) c->n_past = n;
}

static void add_bias(float *y, const float *b, int T, int n) {
    if (!b) return;
    for (int t = 0; t < T; t++) qt_residual_forward(y + (size_t)t * n, b, n);
}

// k, v (T, NKV*HS) -> kc (NKV, n_ctx, HS) rows pos0.., vt (NKV, HS, n_ctx) columns pos0..
static void store_kv(float *kc, float *vt, const float *k, const float *v, int T, int pos0, int NKV, int HS, int n_ctx) {
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NKV; h++) {
            const float *ks = k + ((size_t)t * NKV + h) * HS, *vs = v + ((size_t)t * NKV + h) * HS;
            memcpy(kc + ((size_t)h * n_ctx + pos0 + t) * HS, ks, sizeof(float) * HS);
            float *vd = vt + (size_t)h * HS * n_ctx + pos0 + t;
            for (int d = 0; d < HS; d++) vd[(size_t)d * n_ctx] = vs[d];
        }
}

// One chunk of T <= n_batch tokens at positions n_past ...
static void forward_chunk(qt_ctx *c, const int32_t *tokens, int T, bool all_logits) {
    const qt_model *m = c->m;
    const qt_config *cf = &m->cfg;
    const int C = cf->n_embd, HS = cf->head_dim, NH = cf->n_head, NKV = cf->n_head_kv, F = cf->n_ff;
    const int qd = NH * HS, kvd = NKV * HS, pos0 = c->n_past;
    qt_pool *pool = c->pool;

    for (int t = 0; t < T; t++) c->pos[t] = pos0 + t;
    qt_rope_cache(c->rope_cs, c->pos, T, HS, cf->rope_theta, m->rope_freqs);
    qt_embedding_forward(c->x, tokens, T, &m->tok_embd);

    for (int il = 0; il < cf->n_layer; il++) {
        const qt_layer *L = &m->layers[il];
        float *kc = c->k_cache + (size_t)il * c->n_ctx * kvd;
        float *vt = c->v_cache + (size_t)il * c->n_ctx * kvd;

        qt_rmsnorm_forward(c->xn, NULL, c->x, L->attn_norm, T, C, cf->rms_eps);
        const qt_matmul_out qkv[3] = {
            { c->q, L->wq.data, L->wq.type, qd }, { c->k, L->wk.data, L->wk.type, kvd },
            { c->v, L->wv.data, L->wv.type, kvd },
        };
        qt_matmul_multi(pool, c->xn, C, T, qkv, 3);
        apply_adapter(c, il, QT_LORA_Q, c->q, c->xn, T);
        apply_adapter(c, il, QT_LORA_K, c->k, c->xn, T);
        apply_adapter(c, il, QT_LORA_V, c->v, c->xn, T);
        add_bias(c->q, L->bq, T, qd);
        add_bias(c->k, L->bk, T, kvd);
        add_bias(c->v, L->bv, T, kvd);
        qt_rope_forward(c->q, c->rope_cs, T, NH, HS, cf->rope_type);
        qt_rope_forward(c->k, c->rope_cs, T, NKV, HS, cf->rope_type);
        store_kv(kc, vt, c->k, c->v, T, pos0, NKV, HS, c->n_ctx);
        qt_attention_forward(pool, c->att, c->q, kc, vt, T, pos0, NH, NKV, HS, c->n_ctx, c->scores);
        qt_matmul(pool, c->proj, c->att, L->wo.data, L->wo.type, qd, C, T);
        apply_adapter(c, il, QT_LORA_O, c->proj, c->att, T);
        qt_residual_forward(c->x, c->proj, (int64_t)T * C);

        qt_rmsnorm_forward(c->xn, NULL, c->x, L->ffn_norm, T, C, cf->rms_eps);
        const qt_matmul_out gate_up[2] = {
            { c->gate, L->w_gate.data, L->w_gate.type, F }, { c->up, L->w_up.data, L->w_up.type, F },
        };
        qt_matmul_multi(pool, c->xn, C, T, gate_up, 2);
        apply_adapter(c, il, QT_LORA_GATE, c->gate, c->xn, T);
        apply_adapter(c, il, QT_LORA_UP, c->up, c->xn, T);
        qt_swiglu_forward_pool(pool, c->gate, c->gate, c->up, (int64_t)T * F);
        qt_matmul(pool, c->proj, c->gate, L->w_down.data, L->w_down.type, F, C, T);
        apply_adapter(c, il, QT_LORA_DOWN, c->proj, c->gate, T);
        qt_residual_forward(c->x, c->proj, (int64_t)T * C);
    }
    // Only the rows whose logits are wanted go through the (large) output head.
    int first = all_logits ? 0 : T - 1, n_out = T - first;
    qt_rmsnorm_forward(c->xn, NULL, c->x + (size_t)first * C, m->out_norm, n_out, C, cf->rms_eps);
    qt_matmul(pool, c->logits, c->xn, m->output.data, m->output.type, C, cf->n_vocab, n_out);
    c->n_past += T;
}

const float *qt_ctx_eval(qt_ctx *c, const int32_t *tokens, int n) {
    const qt_config *cf = &c->m->cfg;
    if (n <= 0) {
        qt_log_error("nothing to evaluate: empty token list");
        return NULL;
    }
    if (c->n_past + n > c->n_ctx) {
        qt_log_error("context full: %d tokens in the cache + %d new > context size %d (raise --ctx-size)", c->n_past, n,
                     c->n_ctx);
        return NULL;
    }
    if (c->logits_all && n > c->n_batch) {
        qt_log_error("%d tokens with all logits exceed the batch size %d", n, c->n_batch);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= cf->n_vocab) {
            qt_log_error("token id %d out of range [0, %d)", tokens[i], cf->n_vocab);
            return NULL;
        }
    }
    for (int i = 0; i < n; i += c->n_batch) {
        int T = QT_MIN(c->n_batch, n - i);
        forward_chunk(c, tokens + i, T, c->logits_all);
        if (c->hidden_out)   // the residual stream of the chunk's T rows, through the final norm
            qt_rmsnorm_forward(c->hidden_out + (size_t)i * cf->n_embd, NULL, c->x, c->m->out_norm, T, cf->n_embd, cf->rms_eps);
    }
    return c->logits;
}
