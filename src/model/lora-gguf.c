// lora-gguf.c: LoRA adapters as llama.cpp GGUF adapter files (lora-io.h).
// Follows llama.cpp's convert_lora_to_gguf.py (writer) and
// src/llama-adapter.cpp (reader): general.type "adapter", adapter.type "lora",
// adapter.lora.alpha (f32), general.architecture of the base; tensors
// blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a
// with ne = [n_in, r] and .lora_b with ne = [r, n_out]; llama.cpp scales by
// alpha / r (alpha 0 means scale 1). Q/K rows of B are in GGUF's interleaved
// RoPE order, which for a GGUF-loaded llama model is our in-memory order and
// for an HF-loaded llama model is reached with convert_hf_to_gguf.py's permute.
// Expert linears (Mixtral's w1/w2/w3) are stacked over the experts as
// convert_lora_to_gguf.py does for merged expert tensors (torch.stack):
// blk.N.ffn_gate_exps.weight.lora_a ne [n_in, r, n_expert], .lora_b
// ne [r, n_out, n_expert].
// rsLoRA has no field in the format: its scale is folded into alpha.
// Does not: adapters on token_embd / output (llama.cpp allows them; we never
// train them), aLoRA invocation tokens.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "io/gguf.h"
#include "model/lora-io.h"

// Model row r (HF rotate_half order) goes to GGUF row gguf_row(r) (interleaved).
static int gguf_row(int r, int HS) {
    int h = r / HS, j = r % HS, half = HS / 2;
    return h * HS + (j < half ? 2 * j : 2 * (j - half) + 1);
}

bool qt_lora_gguf_needs_permute(const qt_model *m, int t) {
    return m->cfg.rope_type != m->arch->gguf_rope && m->arch->linears[t].rope != QT_LIN_PLAIN;
}

int qt_lora_save_gguf(const qt_lora *l, const qt_model *m, const char *path) {
    const int r = l->cfg.rank, HS = m->cfg.head_dim;
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "general.type", "adapter");
    qt_gguf_set_str(w, "general.architecture", m->arch->gguf_names[0]);
    if (m->name) qt_gguf_set_str(w, "general.name", m->name);
    qt_gguf_set_str(w, "adapter.type", "lora");
    // llama.cpp: scale = alpha / r; fold rsLoRA (alpha / sqrt(r)) into alpha
    qt_gguf_set_f32(w, "adapter.lora.alpha", l->scale * (float)r);
    size_t n_perm = 0;
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int t = 0; t < l->n_linears; t++)
            if (qt_lora_get(l, il, t)->a && qt_lora_gguf_needs_permute(m, t))
                n_perm += (size_t)qt_lora_get(l, il, t)->n_out * r;
    float *perm = qt_malloc(sizeof(float) * (n_perm + 1));
    size_t used = 0, n_stack = 0;
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int t = 0; t < l->n_linears; t++)
            if (qt_lora_get(l, il, t)->a && qt_arch_linear_expert(m->arch, t))
                n_stack += (size_t)l->n_expert * r * (size_t)(qt_lora_get(l, il, t)->n_in + qt_lora_get(l, il, t)->n_out);
    float *stack = qt_malloc(sizeof(float) * (n_stack + 1));
    size_t st_used = 0;
    char name[96];
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int t = 0; t < l->n_linears; t++) {
            const qt_lora_pair *p = qt_lora_get(l, il, t);
            if (!p->a) continue;
            const float *a = p->a, *b = p->b;
            int nd = 2;
            if (qt_arch_linear_expert(m->arch, t)) {   // experts stacked: (E, r, in), (E, out, r)
                const size_t na = (size_t)r * p->n_in, nb = (size_t)r * p->n_out, E = (size_t)l->n_expert;
                float *sa = stack + st_used, *sb = sa + E * na;
                for (size_t e = 0; e < E; e++) {
                    const qt_lora_pair *pe = qt_lora_get_x(l, il, t, (int)e);
                    memcpy(sa + e * na, pe->a, sizeof(float) * na);
                    memcpy(sb + e * nb, pe->b, sizeof(float) * nb);
                }
                st_used += E * (na + nb);
                a = sa;
                b = sb;
                nd = 3;
            } else if (qt_lora_gguf_needs_permute(m, t)) {
                float *dst = perm + used;
                for (int row = 0; row < p->n_out; row++)
                    memcpy(dst + (size_t)gguf_row(row, HS) * r, p->b + (size_t)row * r, sizeof(float) * r);
                b = dst;
                used += (size_t)p->n_out * r;
            }
            int64_t ne_a[3] = { p->n_in, r, l->n_expert }, ne_b[3] = { r, p->n_out, l->n_expert };
            snprintf(name, sizeof(name), "blk.%d.%s.weight.lora_a", il, m->arch->linears[t].gguf);
            qt_gguf_add_tensor(w, name, QT_TYPE_F32, nd, ne_a, a);
            snprintf(name, sizeof(name), "blk.%d.%s.weight.lora_b", il, m->arch->linears[t].gguf);
            qt_gguf_add_tensor(w, name, QT_TYPE_F32, nd, ne_b, b);
        }
    int rc = qt_gguf_write(w, path);
    qt_gguf_writer_free(w);
    qt_free(perm);
    qt_free(stack);
    return rc;
}

// "blk.N.attn_q.weight.lora_a" -> layer, target, 0 (a) / 1 (b)
static int parse_name(const qt_arch_desc *a, const char *name, size_t len, int *il, int *t, int *ab) {
    char buf[160];
    if (len >= sizeof(buf)) return QT_ERR;
    memcpy(buf, name, len);
    buf[len] = 0;
    int e;
    return qt_lora_match_key(a, buf, "", true, ".weight.lora_a", ".weight.lora_b", il, t, &e, ab);
}

qt_lora *qt_lora_load_gguf(const qt_model *m, const char *path) {
    qt_gguf *g = qt_gguf_open(path);
    if (!g) return NULL;
    qt_lora *l = NULL;
    const char *type = NULL, *arch = NULL, *atype = NULL;
    float alpha = 0;
    if (qt_gguf_get_str(g, "general.type", &type, true) != QT_OK ||
        qt_gguf_get_str(g, "general.architecture", &arch, true) != QT_OK ||
        qt_gguf_get_str(g, "adapter.type", &atype, true) != QT_OK ||
        qt_gguf_get_f32(g, "adapter.lora.alpha", &alpha, false) != QT_OK)
        goto done;
    if (strcmp(type, "adapter") != 0 || strcmp(atype, "lora") != 0) {
        qt_log_error("%s: not a LoRA adapter (general.type '%s', adapter.type '%s')", path, type, atype);
        goto done;
    }
    if (strcmp(arch, m->arch->gguf_names[0]) != 0) {
        qt_log_error("%s: adapter is for architecture '%s', the model is '%s'", path, arch, m->arch->gguf_names[0]);
        goto done;
    }
    if (!isfinite(alpha) || alpha < 0 || alpha > 1e6f) {
        qt_log_error("%s: adapter.lora.alpha %g is not a value in [0, 1e6]", path, alpha);
        goto done;
    }
    int rank = 0, first = m->cfg.n_layer;
    uint64_t mask = 0;
    for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
        int il, tg, ab;
        if (parse_name(m->arch, t->name.data, t->name.len, &il, &tg, &ab) != QT_OK) {
            qt_log_error("%s: unexpected tensor '%.*s' (not a LoRA a/b of a %s projection)", path, (int)t->name.len,
                         t->name.data, m->arch->name);
            goto done;
        }
        if (il < 0 || il >= m->cfg.n_layer) {
            qt_log_error("%s: tensor '%.*s': layer %d does not exist in a %d-layer model", path, (int)t->name.len,
                         t->name.data, il, m->cfg.n_layer);
            goto done;
        }
        int r = (int)(ab ? t->ne[0] : t->ne[1]);
        const int nd = qt_arch_linear_expert(m->arch, tg) ? 3 : 2;
        if (t->n_dims != nd || (nd == 3 && t->ne[2] != m->cfg.n_expert)) {
            qt_log_error("%s: tensor '%.*s' has %d dimensions, expected %d%s", path, (int)t->name.len, t->name.data,
                         t->n_dims, nd, nd == 3 ? " (one matrix per expert)" : "");
            goto done;
        }
        if (r < 1 || r > 4096 || (rank && r != rank)) {
            qt_log_error("%s: tensor '%.*s': rank %d differs from the adapter's rank %d (or is not 1..4096)", path,
                         (int)t->name.len, t->name.data, r, rank);
            goto done;
        }
        rank = r;
        mask |= 1ull << tg;
        first = QT_MIN(first, il);
    }
    if (!mask) {
        qt_log_error("%s: no LoRA tensors", path);
        goto done;
    }
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = rank;
    cfg.alpha = alpha > 0 ? alpha : (float)rank;   // llama.cpp: alpha 0 -> scale 1
    cfg.rslora = false;
    cfg.targets = mask;
    cfg.n_layers = m->cfg.n_layer - first;
    l = qt_lora_init(m, &cfg, 0);
    if (!l) goto done;
    memset(l->params, 0, sizeof(float) * l->n_params);
    const int HS = m->cfg.head_dim;
    for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
        int il, tg, ab;
        parse_name(m->arch, t->name.data, t->name.len, &il, &tg, &ab);
        const qt_lora_pair *p = qt_lora_get(l, il, tg);
        int64_t want0 = ab ? rank : p->n_in, want1 = ab ? p->n_out : rank;
        if (t->ne[0] != want0 || t->ne[1] != want1) {
            qt_log_error("%s: tensor '%.*s' has ne [%lld, %lld], expected [%lld, %lld] for this model and rank %d", path,
                         (int)t->name.len, t->name.data, (long long)t->ne[0], (long long)t->ne[1], (long long)want0,
                         (long long)want1, rank);
            goto fail;
        }
        const qt_type_traits *tr = qt_type_traits_get(t->type);
        if (!tr || !tr->to_float || t->ne[0] % tr->blck_size != 0) {
            qt_log_error("%s: tensor '%.*s': type %s not supported for adapters", path, (int)t->name.len, t->name.data,
                         qt_type_name(t->type));
            goto fail;
        }
        size_t cnt = (size_t)want0 * (size_t)want1;
        if (qt_arch_linear_expert(m->arch, tg)) {   // (E, ...) stacked: expert e's matrix at e * cnt
            float *tmp = qt_malloc(sizeof(float) * cnt * (size_t)m->cfg.n_expert);
            tr->to_float(t->data, tmp, (int64_t)cnt * m->cfg.n_expert);
            for (int e = 0; e < m->cfg.n_expert; e++) {
                const qt_lora_pair *pe = qt_lora_get_x(l, il, tg, e);
                memcpy(ab ? pe->b : pe->a, tmp + (size_t)e * cnt, sizeof(float) * cnt);
            }
            qt_free(tmp);
            continue;
        }
        float *dst = ab ? p->b : p->a;
        if (ab && qt_lora_gguf_needs_permute(m, tg)) {
            float *tmp = qt_malloc(sizeof(float) * cnt);
            tr->to_float(t->data, tmp, (int64_t)cnt);
            for (int row = 0; row < p->n_out; row++)
                memcpy(dst + (size_t)row * rank, tmp + (size_t)gguf_row(row, HS) * rank, sizeof(float) * rank);
            qt_free(tmp);
        } else {
            tr->to_float(t->data, dst, (int64_t)cnt);
        }
    }
    goto done;
fail:
    qt_lora_free(l);
    l = NULL;
done:
    qt_gguf_close(g);
    return l;
}
