// arch.c: the registry of architectures (arch.h) and the helpers that read
// their descriptions. Adding an architecture is one line in g_archs.
#include "model/arch.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "model/arch-llama.h"
#include "model/model.h"

extern const qt_arch_desc qt_arch_qwen2, qt_arch_gpt2, qt_arch_gemma, qt_arch_phi3;
extern const qt_arch_desc qt_arch_mixtral;

static const qt_arch_desc *const g_archs[] = {
    &qt_arch_llama,
    &qt_arch_qwen2,
    &qt_arch_gpt2,
    &qt_arch_gemma,
    &qt_arch_phi3,
    &qt_arch_mixtral,
};

// Whether name is one of archs [0, i)'s names (a MoE variant shares its GGUF name).
static bool listed(size_t i, const char *name, bool hf) {
    for (size_t k = 0; k < i; k++)
        for (const char *const *s = hf ? g_archs[k]->hf_names : g_archs[k]->gguf_names; *s; s++)
            if (!strcmp(*s, name)) return true;
    return false;
}

void qt_arch_list(char *buf, size_t cap, bool hf) {
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < QT_ARRAY_LEN(g_archs); i++)
        for (const char *const *s = hf ? g_archs[i]->hf_names : g_archs[i]->gguf_names; *s; s++) {
            if (listed(i, *s, hf)) continue;
            int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", *s);
            if (w < 0 || (size_t)w >= cap - n) return;
            n += (size_t)w;
        }
}

// hf: by model_type (unique); GGUF: by general.architecture among the
// dense (moe false) or the mixture-of-experts (moe true) descriptions.
static const qt_arch_desc *find(const char *path, const char *name, bool hf, bool moe) {
    for (size_t i = 0; i < QT_ARRAY_LEN(g_archs); i++)
        for (const char *const *s = hf ? g_archs[i]->hf_names : g_archs[i]->gguf_names; *s; s++)
            if (!strcmp(*s, name) && (hf || g_archs[i]->moe == moe)) return g_archs[i];
    char list[256];
    qt_arch_list(list, sizeof(list), hf);
    if (moe)
        qt_log_error("%s: architecture '%s' with experts (%s.expert_count > 0) is not supported (supported: %s)", path,
                     name, name, list);
    else
        qt_log_error("%s: unsupported architecture '%s' (supported: %s)", path, name, list);
    return NULL;
}

const qt_arch_desc *qt_arch_find_gguf(const char *path, const char *name) { return find(path, name, false, false); }
const qt_arch_desc *qt_arch_find_gguf_moe(const char *path, const char *name) { return find(path, name, false, true); }
const qt_arch_desc *qt_arch_find_hf(const char *path, const char *model_type) {
    return find(path, model_type, true, false);
}

int64_t qt_dim_size(const qt_config *c, qt_dim d) {
    const int64_t qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_head_kv * c->head_dim;
    switch (d) {
    case QT_D_1: return 1;
    case QT_D_C: return c->n_embd;
    case QT_D_QD: return qd;
    case QT_D_KVD: return kvd;
    case QT_D_F: return c->n_ff;
    case QT_D_V: return c->n_vocab;
    case QT_D_NH: return c->n_head;
    case QT_D_HALF_HS: return c->head_dim / 2;
    case QT_D_QKV: return qd + 2 * kvd;
    case QT_D_2F: return 2 * (int64_t)c->n_ff;
    case QT_D_NPOS: return c->n_ctx_train;
    case QT_D_E: return c->n_expert;
    case QT_D_K: return c->n_expert_used;
    case QT_D_KC: return (int64_t)c->n_expert_used * c->n_embd;
    case QT_D_KF: return (int64_t)c->n_expert_used * c->n_ff;
    case QT_D_COUNT: break;
    }
    QT_ASSERT(!"unknown dimension");
    return 0;
}

int64_t qt_arch_linear_rows(const qt_config *c, const qt_arch_desc *a, int i) {
    return qt_arch_linear_expert(a, i) ? c->n_expert_used : 1;
}

const char *qt_arch_linear_module(const qt_arch_desc *a, int i) {
    const char *p = strrchr(a->linears[i].hf, '.');
    return p ? p + 1 : a->linears[i].hf;
}

int qt_arch_linear_find(const qt_arch_desc *a, const char *name, size_t len) {
    uint64_t m = qt_arch_linear_match(a, name, len);
    return m ? __builtin_ctzll(m) : -1;
}

// The part of linear i's PEFT path after the layer number ("attn.c_proj").
static const char *linear_tail(const qt_arch_desc *a, int i) {
    const char *p = strstr(a->linears[i].hf, "%d.");
    return p ? p + 3 : a->linears[i].hf;
}

// tail == s, or tail ends with "." s (s: n bytes)
static bool dotted_suffix(const char *tail, const char *s, size_t n, bool nocase) {
    size_t tn = strlen(tail);
    if (tn < n || (tn > n && tail[tn - n - 1] != '.')) return false;
    return nocase ? !strncasecmp(tail + tn - n, s, n) : !strncmp(tail + tn - n, s, n);
}

uint64_t qt_arch_linear_match(const qt_arch_desc *a, const char *name, size_t len) {
    uint64_t mask = 0;
    for (int i = 0; i < a->n_linears; i++)
        if ((strlen(a->linears[i].name) == len && !strncasecmp(name, a->linears[i].name, len)) ||
            (len > 0 && dotted_suffix(linear_tail(a, i), name, len, true)))
            mask |= 1ull << i;
    return mask;
}

const char *qt_arch_linear_target(const qt_arch_desc *a, int i, char *buf, size_t cap) {
    const char *tail = linear_tail(a, i), *s = tail + strlen(tail);
    for (;;) {   // one more dotted component each time, from the end
        while (s > tail && s[-1] != '.') s--;
        bool shared = false;
        for (int k = 0; k < a->n_linears && !shared; k++)
            shared = k != i && dotted_suffix(linear_tail(a, k), s, strlen(s), false);
        if (!shared || s == tail) break;
        s--;   // past the '.'
    }
    snprintf(buf, cap, "%s", s);
    return buf;
}
