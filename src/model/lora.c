// lora.c: adapter allocation and PEFT initialisation (see lora.h).
// Reference: peft/tuners/lora/layer.py (reset_lora_parameters: kaiming_uniform_
// with a = sqrt(5) on lora_A, zeros on lora_B; scaling alpha / r or alpha / sqrt(r)).
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

qt_lora_config qt_lora_defaults(void) {
    qt_lora_config c = { .rank = 8, .alpha = 16, .dropout = 0, .rslora = false, .targets = 0, .n_layers = 0 };
    return c;
}

int qt_lora_parse_targets(const qt_arch_desc *a, const char *list, uint64_t *out) {
    uint64_t mask = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 3 && !strncasecmp(p, "all", 3)) {   // every linear but a MoE router (named explicitly)
            for (int i = 0; i < a->n_linears; i++)
                if (!(a->layer[a->linears[i].weight].flags & QT_TF_KEEP)) mask |= 1ull << i;
        } else if (n > 0) {
            uint64_t t = qt_arch_linear_match(a, p, n);
            if (!t) {
                char names[512];
                size_t k = 0;
                names[0] = 0;
                for (int i = 0; i < a->n_linears && k < sizeof(names); i++)
                    k += (size_t)snprintf(names + k, sizeof(names) - k, "%s, ", a->linears[i].name);
                qt_log_error("unknown LoRA target '%.*s' for %s (use %sor all)", (int)n, p, a->name, names);
                return QT_ERR;
            }
            mask |= t;
        }
        p += n;
        if (*p == ',') p++;
    }
    if (!mask) {
        qt_log_error("no LoRA targets given");
        return QT_ERR;
    }
    *out = mask;
    return QT_OK;
}

void qt_lora_dims(const qt_model *m, int t, int *n_in, int *n_out) {
    const qt_tensor *w = qt_model_linear(m, 0, t);
    *n_in = (int)w->ne0;
    *n_out = (int)w->ne1;
}

qt_lora *qt_lora_init(const qt_model *m, const qt_lora_config *cfg, uint64_t seed) {
    const qt_config *c = &m->cfg;
    const qt_arch_desc *arch = m->arch;
    if (cfg->rank <= 0 || cfg->rank > 4096 || !(cfg->alpha > 0 && cfg->alpha <= 1e6f) || !(cfg->dropout >= 0) ||
        cfg->dropout >= 1) {
        qt_log_error("invalid LoRA settings: rank %d, alpha %g, dropout %g (need rank 1..4096, 0 < alpha <= 1e6, 0 <= dropout < 1)",
                     cfg->rank, cfg->alpha, cfg->dropout);
        return NULL;
    }
    uint64_t all = arch->n_linears >= 64 ? ~0ull : (1ull << arch->n_linears) - 1;
    if (cfg->targets & ~all) {
        qt_log_error("LoRA targets name linears %s does not have", arch->name);
        return NULL;
    }
    qt_lora *l = qt_calloc(1, sizeof(qt_lora));
    l->cfg = *cfg;
    if (!l->cfg.targets) l->cfg.targets = arch->default_targets;
    l->arch = arch;
    l->n_linears = arch->n_linears;
    l->n_expert = c->n_expert;
    for (int t = 0; t < l->n_linears; t++) {
        l->slot0[t] = l->n_slots;
        l->n_slots += qt_arch_linear_expert(arch, t) ? c->n_expert : 1;
    }
    l->slot_lin = qt_malloc(sizeof(int) * (size_t)l->n_slots);
    l->slot_expert = qt_malloc(sizeof(int) * (size_t)l->n_slots);
    for (int t = 0; t < l->n_linears; t++)
        for (int k = l->slot0[t]; k < (t + 1 < l->n_linears ? l->slot0[t + 1] : l->n_slots); k++) {
            l->slot_lin[k] = t;
            l->slot_expert[k] = k - l->slot0[t];
        }
    l->scale = cfg->rslora ? cfg->alpha / sqrtf((float)cfg->rank) : cfg->alpha / (float)cfg->rank;
    l->n_layer = c->n_layer;
    l->first_layer = cfg->n_layers > 0 && cfg->n_layers < c->n_layer ? c->n_layer - cfg->n_layers : 0;
    l->pairs = qt_calloc((size_t)c->n_layer * (size_t)l->n_slots, sizeof(qt_lora_pair));
    const int r = cfg->rank;
    size_t off = 0;
    for (int il = l->first_layer; il < c->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++) {
            const int t = l->slot_lin[k];
            if (!(l->cfg.targets & (1ull << t))) continue;
            qt_lora_pair *p = &l->pairs[(size_t)il * l->n_slots + k];
            qt_lora_dims(m, t, &p->n_in, &p->n_out);
            p->off = off;
            off += (size_t)r * (size_t)(p->n_in + p->n_out);
        }
    l->n_params = off;
    size_t bytes = off * sizeof(float);
    l->params = qt_alloc_big(bytes, "LoRA parameters");
    if (!l->params) {
        qt_lora_free(l);
        return NULL;
    }
    qt_rng rng;
    qt_rng_seed(&rng, seed);
    for (int il = l->first_layer; il < c->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++) {
            qt_lora_pair *p = &l->pairs[(size_t)il * l->n_slots + k];
            if (!p->n_in) continue;
            p->a = l->params + p->off;
            p->b = p->a + (size_t)r * p->n_in;
            float bound = 1.0f / sqrtf((float)p->n_in);
            for (size_t i = 0; i < (size_t)r * p->n_in; i++) p->a[i] = (2 * qt_rng_f32(&rng) - 1) * bound;
            // b stays zero (qt_alloc_big zero-fills)
        }
    return l;
}

qt_lora *qt_lora_stack(const qt_model *m, const qt_lora *const *ls, const float *scales, int n) {
    QT_ASSERT(n > 0);
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = 0;
    cfg.targets = 0;
    int first = m->cfg.n_layer;
    for (int i = 0; i < n; i++) {
        cfg.rank += ls[i]->cfg.rank;
        cfg.targets |= ls[i]->cfg.targets;
        first = QT_MIN(first, ls[i]->first_layer);
    }
    cfg.alpha = (float)cfg.rank;   // scale 1
    cfg.n_layers = m->cfg.n_layer - first;
    qt_lora *out = qt_lora_init(m, &cfg, 0);
    if (!out) return NULL;
    memset(out->params, 0, sizeof(float) * out->n_params);
    const int R = cfg.rank;
    for (int il = out->first_layer; il < out->n_layer; il++)
        for (int sl = 0; sl < out->n_slots; sl++) {
            const qt_lora_pair *po = qt_lora_at(out, il, sl);
            if (!po->a) continue;
            int r0 = 0;
            for (int i = 0; i < n; i++) {
                const qt_lora *l = ls[i];
                const int r = l->cfg.rank;
                const qt_lora_pair *p = il >= l->first_layer ? qt_lora_at(l, il, sl) : NULL;
                if (p && p->a) {
                    const float c = scales[i] * l->scale;
                    memcpy(po->a + (size_t)r0 * po->n_in, p->a, sizeof(float) * (size_t)r * p->n_in);
                    for (int row = 0; row < po->n_out; row++)
                        for (int k = 0; k < r; k++) po->b[(size_t)row * R + r0 + k] = c * p->b[(size_t)row * r + k];
                }
                r0 += r;
            }
        }
    return out;
}

int qt_lora_enable_training(qt_lora *l) {
    size_t bytes = l->n_params * sizeof(float);
    if (!l->grads) l->grads = qt_alloc_big(bytes, "LoRA gradients");
    if (!l->m) l->m = qt_alloc_big(bytes, "optimizer state");
    if (!l->v) l->v = qt_alloc_big(bytes, "optimizer state");
    return l->grads && l->m && l->v ? QT_OK : QT_ERR;
}

void qt_lora_free(qt_lora *l) {
    if (!l) return;
    size_t bytes = l->n_params * sizeof(float);
    qt_free_big(l->params, bytes);
    qt_free_big(l->grads, bytes);
    qt_free_big(l->m, bytes);
    qt_free_big(l->v, bytes);
    qt_free(l->pairs);
    qt_free(l->slot_lin);
    qt_free(l->slot_expert);
    qt_free(l);
}
