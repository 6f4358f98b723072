// model.c: binds a model to its weights, from GGUF (llama.cpp's tensor
// names and <arch>.* keys) or from a Hugging Face folder (config.json and
// transformers' tensor names), for any architecture of the registry
// (arch.c): the common hyper-parameters are read here, then every tensor of
// the architecture's table (arch-*.c) is bound with its shape and type
// checked. Anything the registry does not know is refused by name.
// Does not: permute Q/K rows (see model.h), load tokenizer.json (tokenizer issue).
#include "model/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/base.h"
#include "model/bnb.h"
#include "quant/nf4.h"

// ---- float32 copies of small vectors (norms, biases, rope factors) ----

// Reserve n floats in the owned buffer. Pointers handed out earlier stay valid
// because the buffer is sized once up front (reserve_owned) before any use.
static float *owned_alloc(qt_model *m, size_t n) {
    QT_ASSERT(m->n_owned + n <= m->cap_owned);
    float *p = m->owned + m->n_owned;
    m->n_owned += n;
    return p;
}

static int check_shape(const char *path, const char *name, const qt_tensor *t, int64_t ne0, int64_t ne1) {
    if (t->ne0 != ne0 || t->ne1 != ne1) {
        qt_log_error("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", path, name,
                     (long long)t->ne0, (long long)t->ne1, (long long)ne0, (long long)ne1);
        return QT_ERR;
    }
    return QT_OK;
}

// Converts a vector tensor of n elements to float32 (zero copy if already F32).
static const float *vec_f32(qt_model *m, const char *name, const qt_tensor *t, int64_t n) {
    if (check_shape(m->path, name, t, n, 1) != QT_OK) return NULL;
    if (t->type == QT_TYPE_F32) return t->data;
    const qt_type_traits *tr = qt_type_traits_get(t->type);
    if (!tr || !tr->to_float || n % tr->blck_size != 0) {
        qt_log_error("%s: tensor '%s': type %s not supported for a vector", m->path, name, qt_type_name(t->type));
        return NULL;
    }
    float *dst = owned_alloc(m, (size_t)n);
    tr->to_float(t->data, dst, n);
    return dst;
}

// A matrix must be a type the kernels can multiply.
static int check_matrix_type(const char *path, const char *name, const qt_tensor *t) {
    const qt_type_traits *tr = qt_type_traits_get(t->type);
    if (!tr || !tr->to_float) {
        qt_log_error("%s: tensor '%s': type %s is not supported", path, name, qt_type_name(t->type));
        return QT_ERR;
    }
    if (t->ne0 % tr->blck_size != 0) {
        qt_log_error("%s: tensor '%s': row length %lld is not a multiple of the %s block size %d", path, name,
                     (long long)t->ne0, tr->name, tr->blck_size);
        return QT_ERR;
    }
    return QT_OK;
}

// ---- config sanity, shared by both loaders ----

// The names the file gives the hyper-parameters, for messages.
typedef struct {
    const char *embd, *layer, *head, *head_kv, *head_dim, *ff, *vocab, *eps, *theta;
} cfg_names;

static int check_config(const char *path, qt_config *c, const cfg_names *nm) {
    const char *bad = NULL, *field = NULL;
    char val[32];
#define BAD(what, f, fmt, x) (bad = (what), field = (f), snprintf(val, sizeof(val), fmt, x))
    if (c->n_embd <= 0 || c->n_embd > (1 << 16)) BAD("embedding length", nm->embd, "%d", c->n_embd);
    else if (c->n_layer <= 0 || c->n_layer > 1024) BAD("layer count", nm->layer, "%d", c->n_layer);
    else if (c->n_head <= 0 || c->n_head > 1024) BAD("head count", nm->head, "%d", c->n_head);
    else if (c->n_head_kv <= 0 || c->n_head % c->n_head_kv != 0)
        BAD("key/value head count (must divide the head count)", nm->head_kv, "%d", c->n_head_kv);
    else if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024)
        BAD("head dimension (even, at most 1024)", nm->head_dim, "%d", c->head_dim);
    else if (c->n_ff <= 0 || c->n_ff > (1 << 20)) BAD("feed-forward length", nm->ff, "%d", c->n_ff);
    else if (c->n_vocab <= 0 || c->n_vocab > (1 << 24)) BAD("vocabulary size", nm->vocab, "%d", c->n_vocab);
    else if (!(c->rms_eps > 0)) BAD("norm epsilon", nm->eps, "%g", c->rms_eps);
    else if (!(c->rope_theta > 0)) BAD("rope theta", nm->theta, "%g", c->rope_theta);
    else if (c->n_swa < 0) BAD("sliding window", "sliding_window", "%d", c->n_swa);
#undef BAD
    if (bad) {
        qt_log_error("%s: invalid %s in the model hyper-parameters: %s = %s", path, bad, field, val);
        return QT_ERR;
    }
    if (c->n_ctx_train <= 0) c->n_ctx_train = 2048;
    c->n_pos_max = c->n_swa;
    return QT_OK;
}

// head_dim when the file does not give it: n_embd / n_head, which must divide.
static int derive_head_dim(const char *path, qt_config *c, const char *embd, const char *head) {
    if (c->n_head > 0 && c->n_embd > 0 && c->n_embd % c->n_head != 0) {
        qt_log_error("%s: %s %d is not a multiple of %s %d (and no head dimension is given)", path, embd, c->n_embd,
                     head, c->n_head);
        return QT_ERR;
    }
    c->head_dim = c->n_head > 0 ? c->n_embd / c->n_head : 0;
    return QT_OK;
}

// Expert counts of a mixture of experts; count_field / used_field name them
// as the file does.
static int check_experts(const char *path, const qt_config *c, const char *count_field, const char *used_field) {
    if (c->n_expert < 1 || c->n_expert > 1024) {
        qt_log_error("%s: %s %d: a mixture of experts needs 1..1024 experts", path, count_field, c->n_expert);
        return QT_ERR;
    }
    if (c->n_expert_used < 1 || c->n_expert_used > c->n_expert) {
        qt_log_error("%s: %s %d must be between 1 and the number of experts (%d)", path, used_field, c->n_expert_used,
                     c->n_expert);
        return QT_ERR;
    }
    return QT_OK;
}

// Room for every vector of the table (converted to float32) and the RoPE factors.
static void reserve_owned(qt_model *m) {
    const qt_arch_desc *a = m->arch;
    size_t n = (size_t)m->cfg.head_dim;
    for (int i = 0; i < a->n_globals; i++)
        if (a->globals[i].flags & QT_TF_VEC) n += (size_t)qt_dim_size(&m->cfg, a->globals[i].ne0);
    for (int i = 0; i < a->n_layer_tensors; i++)
        if (a->layer[i].flags & QT_TF_VEC) n += (size_t)m->cfg.n_layer * (size_t)qt_dim_size(&m->cfg, a->layer[i].ne0);
    // (a vector is converted, or given +1 (QT_ARCH_HF_NORM_PLUS1), in the buffer: once)
    m->cap_owned = n;
    m->owned = qt_malloc(m->cap_owned * sizeof(float));
}

// Llama 3 RoPE scaling (transformers' _compute_llama3_parameters): long
// wavelengths are slowed down by `factor`, short ones kept, smooth in between.
static float *llama3_rope_factors(qt_model *m, float factor, float low, float high, float orig_ctx) {
    int half = m->cfg.head_dim / 2;
    float *f = owned_alloc(m, (size_t)half);
    double low_wl = orig_ctx / low, high_wl = orig_ctx / high;
    for (int i = 0; i < half; i++) {
        double freq = pow(m->cfg.rope_theta, -2.0 * i / m->cfg.head_dim);
        double wl = 2 * M_PI / freq, scaled;
        if (wl < high_wl) scaled = freq;
        else if (wl > low_wl) scaled = freq / factor;
        else {
            double smooth = (orig_ctx / wl - low) / (high - low);
            scaled = (1 - smooth) * freq / factor + smooth * freq;
        }
        f[i] = (float)(freq / scaled);   // divisor, as llama.cpp's rope_freqs tensor
    }
    return f;
}

// Keeps a weight buffer the model owns (requantized or transposed
// weights) for qt_model_free.
static void keep_buf(qt_model *m, void *p, size_t bytes) {
    m->bufs = qt_realloc(m->bufs, sizeof(void *) * (size_t)(m->n_bufs + 1));
    m->buf_sizes = qt_realloc(m->buf_sizes, sizeof(size_t) * (size_t)(m->n_bufs + 1));
    m->bufs[m->n_bufs] = p;
    m->buf_sizes[m->n_bufs++] = bytes;
}

// t (stored [in, out]: ne0 = out, ne1 = in, as GPT-2's Conv1D) -> an owned
// (out rows of in) copy in the same type, so y = x W^T as for every matrix.
static int transpose_owned(qt_model *m, qt_tensor *t) {
    const size_t es = qt_row_size(t->type, 1);   // F32 / F16 / BF16: one element
    const int64_t rows = t->ne0, cols = t->ne1;  // of the result
    uint8_t *dst = qt_alloc_big(es * (size_t)(rows * cols), "transposed weights");
    if (!dst) return QT_ERR;
    const uint8_t *src = t->data;
    enum { TB = 32 };   // tiles keep both sides in cache
    for (int64_t r0 = 0; r0 < rows; r0 += TB)
        for (int64_t c0 = 0; c0 < cols; c0 += TB)
            for (int64_t r = r0; r < QT_MIN(rows, r0 + TB); r++)
                for (int64_t c = c0; c < QT_MIN(cols, c0 + TB); c++)
                    memcpy(dst + (size_t)(r * cols + c) * es, src + (size_t)(c * rows + r) * es, es);
    keep_buf(m, dst, es * (size_t)(rows * cols));
    t->data = dst;
    t->ne0 = cols;
    t->ne1 = rows;
    return QT_OK;
}

// ---- binding the architecture's tensors ----

// A tensor as the file has it (absent: data == NULL), shape not yet checked.
typedef int (*find_fn)(qt_model *m, const char *name, qt_tensor *t);

static int gguf_find(qt_model *m, const char *name, qt_tensor *t);

// Expert e of a QT_TF_EXPERT tensor in a GGUF file: a 2-D view into the
// merged 3-D tensor `name` (llama.cpp's blk.N.ffn_gate_exps.weight, ne [ne0,
// ne1, n_expert]), else the per-expert tensor of older files
// (blk.N.ffn_gate.E.weight, arch.h; written into name). Absent: data == NULL.
static int gguf_find_expert(qt_model *m, char *name, size_t cap, int e, qt_tensor *t) {
    const qt_gguf_tensor *gt = qt_gguf_find_tensor(m->gguf, name);
    memset(t, 0, sizeof(*t));
    if (!gt) {
        const char *x = strstr(name, "_exps.");
        if (!x) return QT_OK;
        char per[192];
        snprintf(per, sizeof(per), "%.*s.%d.%s", (int)(x - name), name, e, x + 6);
        snprintf(name, cap, "%s", per);
        return gguf_find(m, name, t);
    }
    const int E = m->cfg.n_expert;
    if (gt->n_dims != 3 || gt->ne[2] != E || gt->ne[3] != 1) {
        qt_log_error("%s: tensor '%s' has %d dimensions [%lld, %lld, %lld], expected 3 with %d experts (%s.expert_count)",
                     m->path, name, gt->n_dims, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], E,
                     m->arch_name);
        return QT_ERR;
    }
    t->type = gt->type;
    t->ne0 = gt->ne[0];
    t->ne1 = gt->ne[1];
    if (check_matrix_type(m->path, name, t) != QT_OK) return QT_ERR;
    t->data = (const uint8_t *)gt->data + (size_t)e * qt_row_size(t->type, t->ne0) * (size_t)t->ne1;
    return QT_OK;
}

// Binds the tensor of desc d (layer il, or -1 for a global; expert e of a
// QT_TF_EXPERT slot, else -1) from the file through find: shape, type,
// optional; vectors converted to float32 (plus1: with 1 added,
// QT_ARCH_HF_NORM_PLUS1).
static int bind_tensor(qt_model *m, find_fn find, const qt_tensor_desc *d, bool hf, int il, int e, bool plus1,
                       qt_tensor *t) {
    char name[192];
    const char *pat = hf ? d->hf : d->gguf;
    memset(t, 0, sizeof(*t));
    if (!pat) return QT_OK;   // not stored in this format
    if (il >= 0) snprintf(name, sizeof(name), pat, il, e);   // e: the second %d of an expert's HF name
    else snprintf(name, sizeof(name), "%s", pat);
    if (e >= 0 && !hf) {
        if (gguf_find_expert(m, name, sizeof(name), e, t) != QT_OK) return QT_ERR;
    } else if (find(m, name, t) != QT_OK) {
        return QT_ERR;
    }
    const char *alt = m->arch->hf_alt_prefix;
    if (!t->data && hf && alt && !strncmp(name, alt, strlen(alt)) && find(m, name + strlen(alt), t) != QT_OK)
        return QT_ERR;
    if (!t->data) {
        if (d->flags & QT_TF_OPTIONAL) return QT_OK;
        if (e >= 0 && !hf) {
            char merged[192];
            snprintf(merged, sizeof(merged), d->gguf, il);
            qt_log_error("%s: missing tensor '%s' (or '%s' per expert)", m->path, merged, name);
        } else {
            qt_log_error("%s: missing tensor '%s'", m->path, name);
        }
        return QT_ERR;
    }
    int64_t ne0 = qt_dim_size(&m->cfg, d->ne0), ne1 = qt_dim_size(&m->cfg, d->ne1);
    if (hf && (d->flags & QT_TF_HF_T)) {   // [in, out] as stored: check that shape, then transpose
        if (t->ne0 != ne1 || t->ne1 != ne0) {
            qt_log_error("%s: tensor '%s' (Conv1D, stored [in, out]) has shape [%lld, %lld], expected [%lld, %lld]",
                         m->path, name, (long long)t->ne1, (long long)t->ne0, (long long)ne0, (long long)ne1);
            return QT_ERR;
        }
        if (transpose_owned(m, t) != QT_OK) return QT_ERR;
    }
    if (d->flags & QT_TF_VEC) {
        const float *v = vec_f32(m, name, t, ne0);
        if (!v) return QT_ERR;
        if (plus1) {   // vec_f32 copied it unless it was F32
            float *o = t->type == QT_TYPE_F32 ? owned_alloc(m, (size_t)ne0) : (float *)v;
            for (int64_t i = 0; i < ne0; i++) o[i] = v[i] + 1.0f;
            v = o;
        }
        *t = (qt_tensor){ .type = QT_TYPE_F32, .ne0 = ne0, .ne1 = 1, .data = v, .dev = v };
        return QT_OK;
    }
    if ((d->ne0 == QT_D_E || d->ne1 == QT_D_E) && (t->ne0 != ne0 || t->ne1 != ne1)) {
        qt_log_error("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]: the number of experts "
                     "(num_local_experts / %s.expert_count) is %d", m->path, name, (long long)t->ne0,
                     (long long)t->ne1, (long long)ne0, (long long)ne1, m->arch_name, m->cfg.n_expert);
        return QT_ERR;
    }
    if (check_shape(m->path, name, t, ne0, ne1) != QT_OK || check_matrix_type(m->path, name, t) != QT_OK)
        return QT_ERR;
    t->dev = t->data;
    return QT_OK;
}

// Every global and per-layer tensor of the table; the output head falls
// back to the token embedding when the file has none (tied).
static int bind_all(qt_model *m, find_fn find, bool hf) {
    const qt_arch_desc *a = m->arch;
    m->globals = qt_calloc((size_t)a->n_globals, sizeof(qt_tensor));
    m->tensors = qt_calloc((size_t)m->cfg.n_layer * (size_t)a->n_layer_tensors, sizeof(qt_tensor));
    // QT_ARCH_HF_NORM_PLUS1: the norm weights, vectors that are no linear's bias
    const bool plus1 = hf && (a->flags & QT_ARCH_HF_NORM_PLUS1);
    bool *is_bias = qt_calloc((size_t)a->n_layer_tensors, sizeof(bool));
    for (int i = 0; i < a->n_linears; i++)
        if (a->linears[i].bias >= 0) is_bias[a->linears[i].bias] = true;
    int rc = QT_OK;
    for (int i = 0; i < a->n_globals && rc == QT_OK; i++)
        rc = bind_tensor(m, find, &a->globals[i], hf, -1, -1, plus1 && (a->globals[i].flags & QT_TF_VEC), &m->globals[i]);
    if (rc == QT_OK && !m->globals[QT_G_OUTPUT].data) {
        if (hf && !m->cfg.tied_output) {
            qt_log_error("%s: missing tensor '%s' (and tie_word_embeddings is not set)", m->path,
                         a->globals[QT_G_OUTPUT].hf);
            rc = QT_ERR;
        }
        m->globals[QT_G_OUTPUT] = m->globals[QT_G_TOK_EMBD];
        m->cfg.tied_output = true;
    } else {
        m->cfg.tied_output = false;
    }
    const int E = m->cfg.n_expert;
    if (a->moe) m->experts = qt_calloc((size_t)m->cfg.n_layer * (size_t)a->n_layer_tensors * (size_t)E, sizeof(qt_tensor));
    for (int il = 0; il < m->cfg.n_layer && rc == QT_OK; il++)
        for (int i = 0; i < a->n_layer_tensors && rc == QT_OK; i++) {
            qt_tensor *t = &m->tensors[(size_t)il * a->n_layer_tensors + i];
            if (!(a->layer[i].flags & QT_TF_EXPERT)) {
                rc = bind_tensor(m, find, &a->layer[i], hf, il, -1, plus1 && (a->layer[i].flags & QT_TF_VEC) && !is_bias[i],
                                 t);
                continue;
            }
            QT_ASSERT(a->moe && !(a->layer[i].flags & (QT_TF_VEC | QT_TF_OPTIONAL)));
            qt_tensor *x = &m->experts[((size_t)il * a->n_layer_tensors + i) * (size_t)E];
            for (int e = 0; e < E && rc == QT_OK; e++) rc = bind_tensor(m, find, &a->layer[i], hf, il, e, false, &x[e]);
            // the slot itself: expert 0's type and shape, no data (model.h)
            if (rc == QT_OK) *t = (qt_tensor){ .type = x[0].type, .ne0 = x[0].ne0, .ne1 = x[0].ne1 };
        }
    qt_free(is_bias);
    if (rc != QT_OK) return QT_ERR;
    return a->check ? a->check(m) : QT_OK;
}

// ---- GGUF ----

static int gguf_find(qt_model *m, const char *name, qt_tensor *t) {
    const qt_gguf_tensor *gt = qt_gguf_find_tensor(m->gguf, name);
    memset(t, 0, sizeof(*t));
    if (!gt) return QT_OK;
    if (gt->n_dims > 2 && (gt->ne[2] != 1 || gt->ne[3] != 1)) {
        qt_log_error("%s: tensor '%s' has %d dimensions, expected at most 2", m->path, name, gt->n_dims);
        return QT_ERR;
    }
    t->type = gt->type;
    t->ne0 = gt->ne[0];
    t->ne1 = gt->n_dims >= 2 ? gt->ne[1] : 1;
    t->data = gt->data;
    return QT_OK;
}

static int load_gguf(qt_model *m) {
    qt_gguf *g = m->gguf = qt_gguf_open(m->path);
    if (!g) return QT_ERR;
    const char *arch;
    if (qt_gguf_get_str(g, "general.architecture", &arch, true) != QT_OK) return QT_ERR;
    m->arch_name = qt_strdup(arch);
    qt_config *c = &m->cfg;
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof(key), "%s." suffix, arch), key)
    uint32_t u;
    u = 0; if (qt_gguf_get_u32(g, KEY("expert_count"), &u, false) != QT_OK) return QT_ERR; c->n_expert = (int)QT_MIN(u, INT32_MAX);
    m->arch = c->n_expert > 0 ? qt_arch_find_gguf_moe(m->path, arch) : qt_arch_find_gguf(m->path, arch);
    if (!m->arch) return QT_ERR;
    if (m->arch->moe) {
        char used[128];
        snprintf(used, sizeof(used), "%s.expert_used_count", arch);
        u = 0; if (qt_gguf_get_u32(g, used, &u, true) != QT_OK) return QT_ERR;
        c->n_expert_used = (int)QT_MIN(u, INT32_MAX);
        if (check_experts(m->path, c, KEY("expert_count"), used) != QT_OK) return QT_ERR;
    }
    c->rope_type = m->arch->gguf_rope;
    const char *name = NULL;
    if (qt_gguf_get_str(g, "general.name", &name, false) != QT_OK) return QT_ERR;
    m->name = qt_strdup(name ? name : arch);

    u = 0; if (qt_gguf_get_u32(g, KEY("embedding_length"), &u, true) != QT_OK) return QT_ERR; c->n_embd = (int)QT_MIN(u, INT32_MAX);
    u = 0; if (qt_gguf_get_u32(g, KEY("feed_forward_length"), &u, true) != QT_OK) return QT_ERR; c->n_ff = (int)QT_MIN(u, INT32_MAX);
    u = 0; if (qt_gguf_get_u32(g, KEY("block_count"), &u, true) != QT_OK) return QT_ERR; c->n_layer = (int)QT_MIN(u, INT32_MAX);
    u = 0; if (qt_gguf_get_u32(g, KEY("attention.head_count"), &u, true) != QT_OK) return QT_ERR; c->n_head = (int)QT_MIN(u, INT32_MAX);
    u = (uint32_t)c->n_head;
    if (qt_gguf_get_u32(g, KEY("attention.head_count_kv"), &u, false) != QT_OK) return QT_ERR;
    c->n_head_kv = (int)QT_MIN(u, INT32_MAX);
    u = 0; if (qt_gguf_get_u32(g, KEY("context_length"), &u, false) != QT_OK) return QT_ERR; c->n_ctx_train = (int)QT_MIN(u, INT32_MAX);
    c->rms_eps = 1e-5f;
    if (qt_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &c->rms_eps, false) != QT_OK) return QT_ERR;
    if (qt_gguf_get_f32(g, KEY("attention.layer_norm_epsilon"), &c->rms_eps, false) != QT_OK) return QT_ERR;
    c->rope_theta = 10000.0f;
    if (qt_gguf_get_f32(g, KEY("rope.freq_base"), &c->rope_theta, false) != QT_OK) return QT_ERR;
    u = 0;
    if (qt_gguf_get_u32(g, KEY("attention.key_length"), &u, false) != QT_OK) return QT_ERR;
    if (u) c->head_dim = (int)QT_MIN(u, INT32_MAX);
    else {
        char e[128], h[128];
        snprintf(e, sizeof(e), "%s.embedding_length", arch);
        snprintf(h, sizeof(h), "%s.attention.head_count", arch);
        if (derive_head_dim(m->path, c, e, h) != QT_OK) return QT_ERR;
    }
    if (m->arch->flags & QT_ARCH_SWA) {
        u = 0;
        if (qt_gguf_get_u32(g, KEY("attention.sliding_window"), &u, false) != QT_OK) return QT_ERR;
        c->n_swa = (int)QT_MIN(u, INT32_MAX);
    }
    uint32_t n_rot = (uint32_t)c->head_dim;
    if (qt_gguf_get_u32(g, KEY("rope.dimension_count"), &n_rot, false) != QT_OK) return QT_ERR;
    const qt_gguf_kv *scaling = qt_gguf_find_kv(g, KEY("rope.scaling.type"));
    if (scaling && scaling->type == QT_GGUF_STRING && !(scaling->v.str.len == 4 && !memcmp(scaling->v.str.data, "none", 4))) {
        qt_log_error("%s: rope scaling '%.*s' is not supported", m->path, (int)scaling->v.str.len, scaling->v.str.data);
        return QT_ERR;
    }
#undef KEY
    qt_tensor te;
    if (gguf_find(m, m->arch->globals[QT_G_TOK_EMBD].gguf, &te) != QT_OK) return QT_ERR;
    if (!te.data) {
        qt_log_error("%s: missing tensor '%s'", m->path, m->arch->globals[QT_G_TOK_EMBD].gguf);
        return QT_ERR;
    }
    c->n_vocab = (int)QT_MIN(te.ne1, INT32_MAX);
    char nm[9][96];
    static const char *const sfx[9] = { "embedding_length", "block_count", "attention.head_count",
                                        "attention.head_count_kv", "attention.key_length", "feed_forward_length",
                                        "", "attention.layer_norm_rms_epsilon", "rope.freq_base" };
    for (int i = 0; i < 9; i++) snprintf(nm[i], sizeof(nm[i]), "%s.%s", arch, sfx[i]);
    if (m->arch->flags & QT_ARCH_LAYERNORM) snprintf(nm[7], sizeof(nm[7]), "%s.attention.layer_norm_epsilon", arch);
    snprintf(nm[6], sizeof(nm[6]), "rows of %s", m->arch->globals[QT_G_TOK_EMBD].gguf);
    const cfg_names names = { nm[0], nm[1], nm[2], nm[3], nm[4], nm[5], nm[6], nm[7], nm[8] };
    if (check_config(m->path, c, &names) != QT_OK) return QT_ERR;
    if ((int)n_rot != c->head_dim) {
        qt_log_error("%s: partial rotary embeddings (rope.dimension_count %u of head size %d) are not supported",
                     m->path, n_rot, c->head_dim);
        return QT_ERR;
    }
    reserve_owned(m);
    if (bind_all(m, gguf_find, false) != QT_OK) return QT_ERR;
    qt_tensor rf;
    if (gguf_find(m, "rope_freqs.weight", &rf) != QT_OK) return QT_ERR;
    if (rf.data) {
        const float *v = vec_f32(m, "rope_freqs.weight", &rf, c->head_dim / 2);
        if (!v) return QT_ERR;
        m->rope_freqs = (qt_tensor){ .type = QT_TYPE_F32, .ne0 = c->head_dim / 2, .ne1 = 1, .data = v, .dev = v };
    }
    m->tok = qt_tokenizer_from_gguf(g);
    if (!m->tok) return QT_ERR;
    if (qt_tokenizer_n_vocab(m->tok) > c->n_vocab) {
        qt_log_error("%s: the vocabulary has %d tokens but %s has %d rows", m->path, qt_tokenizer_n_vocab(m->tok),
                     m->arch->globals[QT_G_TOK_EMBD].gguf, c->n_vocab);
        return QT_ERR;
    }
    return QT_OK;
}

// ---- Hugging Face folder ----

static int json_int(const char *path, const cJSON *j, const char *key, int *out, bool required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) qt_log_error("%s: missing field \"%s\"", path, key);
        return required ? QT_ERR : QT_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9) {
        qt_log_error("%s: field \"%s\" must be an integer", path, key);
        return QT_ERR;
    }
    *out = (int)v->valuedouble;
    return QT_OK;
}

static int json_float(const char *path, const cJSON *j, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return QT_OK;
    if (!cJSON_IsNumber(v)) {
        qt_log_error("%s: field \"%s\" must be a number", path, key);
        return QT_ERR;
    }
    *out = (float)v->valuedouble;
    return QT_OK;
}

static int hf_find(qt_model *m, const char *name, qt_tensor *t) {
    const qt_st_tensor *st = qt_st_find(m->st, name);
    memset(t, 0, sizeof(*t));
    if (!st) return QT_OK;
    if (qt_bnb_is_4bit(m->st, name)) return qt_bnb_load(m, name, t);   // a bitsandbytes 4-bit weight
    if (st->n_dims < 1 || st->n_dims > 2) {
        qt_log_error("%s: tensor '%s' has %d dimensions, expected 1 or 2", m->path, name, st->n_dims);
        return QT_ERR;
    }
    if (st->type != QT_TYPE_F32 && st->type != QT_TYPE_F16 && st->type != QT_TYPE_BF16) {
        qt_log_error("%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)", m->path, name,
                     qt_type_name(st->type));
        return QT_ERR;
    }
    // safetensors shapes are outermost first: [rows, cols]
    t->type = st->type;
    t->ne0 = st->shape[st->n_dims - 1];
    t->ne1 = st->n_dims == 2 ? st->shape[0] : 1;
    t->data = st->data;
    return QT_OK;
}
// Llama's config.json names (an architecture's qt_hf_keys overrides them).
static const char *const llama_act_keys[] = { "hidden_act", NULL };
static const qt_hf_keys llama_keys = { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                       "max_position_embeddings", "rms_norm_eps", llama_act_keys, 0, false };

static int hf_config(qt_model *m, const char *cfg_path, float *scaling) {
    char *text = qt_read_file(cfg_path, NULL);
    if (!text) return QT_ERR;
    cJSON *j = cJSON_Parse(text);
    qt_free(text);
    int rc = QT_ERR;
    qt_config *c = &m->cfg;
    if (!j || !cJSON_IsObject(j)) {
        qt_log_error("%s: not valid JSON", cfg_path);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(mt)) {
        qt_log_error("%s: missing field \"model_type\"", cfg_path);
        goto done;
    }
    m->arch_name = qt_strdup(mt->valuestring);
    m->arch = qt_arch_find_hf(cfg_path, mt->valuestring);
    if (!m->arch) goto done;
    c->rope_type = QT_ROPE_NEOX;  // HF checkpoints are in rotate_half order
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    const qt_hf_keys *ak = m->arch->hf_keys;
#define HFKEY(f) (ak && ak->f ? ak->f : llama_keys.f)
    const cfg_names names = { HFKEY(n_embd), HFKEY(n_layer), HFKEY(n_head), "num_key_value_heads", "head_dim",
                              HFKEY(n_ff), "vocab_size", HFKEY(eps), "rope_theta" };
    const int ff_mult = ak ? ak->ff_mult : 0;
    if (json_int(cfg_path, j, names.embd, &c->n_embd, true) || json_int(cfg_path, j, names.ff, &c->n_ff, !ff_mult) ||
        json_int(cfg_path, j, names.layer, &c->n_layer, true) || json_int(cfg_path, j, names.head, &c->n_head, true) ||
        json_int(cfg_path, j, "vocab_size", &c->n_vocab, true) ||
        json_int(cfg_path, j, HFKEY(n_ctx), &c->n_ctx_train, false) || json_float(cfg_path, j, names.eps, &c->rms_eps) ||
        json_float(cfg_path, j, "rope_theta", &c->rope_theta))
        goto done;
    if (ff_mult && c->n_ff == 0) c->n_ff = ff_mult * c->n_embd;   // GPT-2's n_inner: null
    c->n_head_kv = c->n_head;
    if (json_int(cfg_path, j, "num_key_value_heads", &c->n_head_kv, false)) goto done;
    if (m->arch->moe) {   // Mixtral's names; Qwen-MoE calls the count num_experts
        const char *count = !cJSON_GetObjectItemCaseSensitive(j, "num_local_experts") &&
                                    cJSON_GetObjectItemCaseSensitive(j, "num_experts")
                                ? "num_experts"
                                : "num_local_experts";
        if (json_int(cfg_path, j, count, &c->n_expert, true) ||
            json_int(cfg_path, j, "num_experts_per_tok", &c->n_expert_used, true) ||
            check_experts(cfg_path, c, count, "num_experts_per_tok") != QT_OK)
            goto done;
    }
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(j, "head_dim");
    if (hd && !cJSON_IsNull(hd)) {
        if (json_int(cfg_path, j, "head_dim", &c->head_dim, false)) goto done;
    } else if (derive_head_dim(cfg_path, c, names.embd, names.head) != QT_OK) {
        goto done;
    }
    if (m->arch->flags & QT_ARCH_SWA && json_int(cfg_path, j, "sliding_window", &c->n_swa, false)) goto done;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    c->tied_output = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : ak && ak->tied_default;
    for (const char *const *k = HFKEY(act); *k && m->arch->hf_acts; k++) {
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, *k);
        if (!act || cJSON_IsNull(act)) continue;
        bool ok = false;
        for (const char *const *a = m->arch->hf_acts; *a && cJSON_IsString(act); a++) ok = ok || !strcmp(act->valuestring, *a);
        if (!ok) {
            qt_log_error("%s: %s must be \"%s\" for %s", cfg_path, *k, m->arch->hf_acts[0], m->arch->name);
            goto done;
        }
        break;
    }
#undef HFKEY
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(j, "partial_rotary_factor");
    if (prf && !cJSON_IsNull(prf) && !(cJSON_IsNumber(prf) && prf->valuedouble == 1.0)) {
        qt_log_error("%s: partial_rotary_factor: partial rotary embeddings are not supported (only 1.0)", cfg_path);
        goto done;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "llama3") != 0) {
            qt_log_error("%s: rope_scaling type '%s' is not supported (supported: llama3)", cfg_path,
                         cJSON_IsString(ty) ? ty->valuestring : "?");
            goto done;
        }
        int orig = 8192;
        scaling[0] = 8; scaling[1] = 1; scaling[2] = 4;
        if (json_float(cfg_path, rs, "factor", &scaling[0]) || json_float(cfg_path, rs, "low_freq_factor", &scaling[1]) ||
            json_float(cfg_path, rs, "high_freq_factor", &scaling[2]) ||
            json_int(cfg_path, rs, "original_max_position_embeddings", &orig, false))
            goto done;
        scaling[3] = (float)orig;
        if (!(scaling[0] > 0) || !(scaling[2] > scaling[1]) || orig <= 0) {
            qt_log_error("%s: invalid rope_scaling values", cfg_path);
            goto done;
        }
    }
    rc = check_config(cfg_path, c, &names);
done:
    cJSON_Delete(j);
    return rc;
}

static int load_hf(qt_model *m) {
    size_t len = strlen(m->path) + 32;
    char *cfg_path = qt_malloc(len);
    snprintf(cfg_path, len, "%s/config.json", m->path);
    float scaling[4] = {0};
    int rc = hf_config(m, cfg_path, scaling);
    qt_free(cfg_path);
    if (rc != QT_OK) return QT_ERR;
    const char *base = strrchr(m->path, '/');
    m->name = qt_strdup(base && base[1] ? base + 1 : m->path);
    m->st = qt_st_open(m->path);
    if (!m->st) return QT_ERR;
    reserve_owned(m);
    if (scaling[0] > 0) {
        const float *v = llama3_rope_factors(m, scaling[0], scaling[1], scaling[2], scaling[3]);
        m->rope_freqs = (qt_tensor){ .type = QT_TYPE_F32, .ne0 = m->cfg.head_dim / 2, .ne1 = 1, .data = v, .dev = v };
    }
    if (bind_all(m, hf_find, true) != QT_OK) return QT_ERR;
    const qt_config *c = &m->cfg;
    // tokenizer.json when the folder has one; otherwise callers may attach a
    // vocabulary from a GGUF file (qtune --tokenizer).
    size_t tn = strlen(m->path) + 32;
    char *tj = qt_malloc(tn);
    snprintf(tj, tn, "%s/tokenizer.json", m->path);
    struct stat tst;
    bool has_tok = stat(tj, &tst) == 0;
    qt_free(tj);
    m->tok = NULL;
    if (has_tok) {
        m->tok = qt_tokenizer_from_hf(m->path);
        if (!m->tok) return QT_ERR;
        if (qt_tokenizer_n_vocab(m->tok) > c->n_vocab) {
            qt_log_error("%s: tokenizer.json has %d tokens but the model's vocabulary is %d", m->path,
                         qt_tokenizer_n_vocab(m->tok), c->n_vocab);
            return QT_ERR;
        }
    }
    return QT_OK;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

qt_model *qt_model_load(const char *path) {
    qt_model *m = qt_calloc(1, sizeof(qt_model));
    m->path = qt_strdup(path);
    size_t n = strlen(m->path);
    while (n > 1 && m->path[n - 1] == '/') m->path[--n] = 0;
    int rc = is_dir(m->path) ? load_hf(m) : load_gguf(m);
    if (rc != QT_OK) {
        qt_model_free(m);
        return NULL;
    }
    return m;
}

void *qt_model_own_buffer(qt_model *m, size_t n, const char *what) {
    void *p = qt_alloc_big(n, what);
    if (!p) return NULL;
    m->bufs = qt_realloc(m->bufs, sizeof(void *) * (size_t)(m->n_bufs + 1));
    m->buf_sizes = qt_realloc(m->buf_sizes, sizeof(size_t) * (size_t)(m->n_bufs + 1));
    m->bufs[m->n_bufs] = p;
    m->buf_sizes[m->n_bufs++] = n;
    return p;
}

static int requantize(qt_model *m, qt_tensor *t, qt_type type, const qt_type_traits *to, bool double_quant) {
    if (t->type == type) return QT_OK;
    if (t->ne0 % to->blck_size != 0) {   // as llama-quantize: such tensors keep their type
        qt_log_info("--quantize %s: a matrix with rows of %lld (not a multiple of %d) stays %s", to->name,
                    (long long)t->ne0, to->blck_size, qt_type_name(t->type));
        return QT_OK;
    }
    const qt_type_traits *from = qt_type_traits_get(t->type);
    size_t row = qt_row_size(type, t->ne0), bytes = row * (size_t)t->ne1, src_row = qt_row_size(t->type, t->ne0);
    uint8_t *dst = qt_model_own_buffer(m, bytes, "quantized weights");
    if (!dst) return QT_ERR;
    float *tmp = qt_malloc(sizeof(float) * (size_t)t->ne0);
    for (int64_t r = 0; r < t->ne1; r++) {
        from->to_float((const uint8_t *)t->data + (size_t)r * src_row, tmp, t->ne0);
        to->from_float_ref(tmp, dst + (size_t)r * row, t->ne0);
    }
    qt_free(tmp);
    keep_buf(m, dst, bytes);
    // bitsandbytes double-quantizes the absmax of the whole flattened tensor
    if (double_quant && type == QT_TYPE_NF4) qt_nf4_double_quant((block_nf4 *)dst, (int64_t)(bytes / sizeof(block_nf4)));
    t->type = type;
    t->data = dst;
    t->dev = dst;
    return QT_OK;
}

static int quantize_all(qt_model *m, qt_type type, bool double_quant) {
    const qt_type_traits *to = qt_type_traits_get(type);
    if (!to || !to->from_float_ref || !to->to_float) {
        qt_log_error("--quantize: no quantizer for type %s", qt_type_name(type));
        return QT_ERR;
    }
    QT_ASSERT(!m->be || m->be->host_memory);   // before the weights move to a device
    const qt_arch_desc *a = m->arch;
    for (int il = 0; il < m->cfg.n_layer; il++)
        for (int i = 0; i < a->n_linears; i++) {
            const qt_linear_desc *ld = &a->linears[i];
            qt_tensor *t = &m->tensors[(size_t)il * a->n_layer_tensors + ld->weight];
            if (a->layer[ld->weight].flags & QT_TF_KEEP) continue;
            if (qt_arch_linear_expert(a, i)) {
                for (int e = 0; e < m->cfg.n_expert; e++)
                    if (requantize(m, (qt_tensor *)qt_model_expert(m, il, ld->weight, e), type, to, double_quant) !=
                        QT_OK)
                        return QT_ERR;
                t->type = qt_model_expert(m, il, ld->weight, 0)->type;   // the slot mirrors expert 0
                continue;
            }
            if (t->data && requantize(m, t, type, to, double_quant) != QT_OK) return QT_ERR;
        }
    return QT_OK;
}

int qt_model_quantize(qt_model *m, qt_type type) { return quantize_all(m, type, false); }

int qt_model_quantize_name(qt_model *m, const char *name) {
    bool dq = !strcasecmp(name, "nf4-dq") || !strcasecmp(name, "nf4_dq");
    int type = dq ? QT_TYPE_NF4 : qt_type_from_name(name);
    if (type < 0) {
        qt_log_error("--quantize: unknown type '%s' (q4_0, q4_k, q8_0, iq4_nl, nf4, nf4-dq, ...)", name);
        return QT_ERR;
    }
    return quantize_all(m, (qt_type)type, dq);
}

// Every tensor the model holds: globals (the tied output head once), layers, RoPE factors.
static void for_each_tensor(qt_model *m, void (*fn)(qt_tensor *t, void *ud), void *ud) {
    if (!m->globals) return;
    for (int i = 0; i < m->arch->n_globals; i++)
        if (!(i == QT_G_OUTPUT && m->cfg.tied_output)) fn(&m->globals[i], ud);
    if (m->tensors)
        for (size_t i = 0; i < (size_t)m->cfg.n_layer * m->arch->n_layer_tensors; i++) fn(&m->tensors[i], ud);
    if (m->experts)   // expert slots of m->tensors hold no data: their experts are here
        for (size_t i = 0; i < (size_t)m->cfg.n_layer * m->arch->n_layer_tensors * m->cfg.n_expert; i++)
            fn(&m->experts[i], ud);
    fn(&m->rope_freqs, ud);
}

typedef struct {
    qt_backend *be;
    int rc;
} bind_ctx;

static void bind_one(qt_tensor *t, void *ud) {
    bind_ctx *b = ud;
    if (t->data && b->rc == QT_OK) b->rc = b->be->ops->tensor_bind(b->be, t);
}

static void unbind_one(qt_tensor *t, void *ud) {
    qt_backend *be = ud;
    if (t->dev && t->dev != t->data) be->ops->tensor_unbind(be, t);
    t->dev = t->data;
}

static void unbind(qt_model *m) {
    if (m->be && !m->be->host_memory) for_each_tensor(m, unbind_one, m->be);
    if (m->globals && m->cfg.tied_output) m->globals[QT_G_OUTPUT] = m->globals[QT_G_TOK_EMBD];
    m->be = NULL;
}

int qt_model_bind(qt_model *m, qt_backend *be) {
    unbind(m);
    if (!be) return QT_OK;
    const char *op = m->arch->missing_op ? m->arch->missing_op(be) : NULL;
    if (op) {
        qt_log_error("%s: %s models are not supported on the %s device yet (its backend has no %s operation)", m->path,
                     m->arch->name, be->name, op);
        return QT_ERR;
    }
    m->be = be;
    if (be->host_memory) return QT_OK;
    bind_ctx b = { be, QT_OK };
    for_each_tensor(m, bind_one, &b);
    if (m->cfg.tied_output) m->globals[QT_G_OUTPUT] = m->globals[QT_G_TOK_EMBD];
    if (b.rc != QT_OK) unbind(m);
    return b.rc;
}

void qt_model_free(qt_model *m) {
    if (!m) return;
    unbind(m);
    for (int i = 0; i < m->n_bufs; i++) qt_free_big(m->bufs[i], m->buf_sizes[i]);
    qt_free(m->bufs);
    qt_free(m->buf_sizes);
    qt_tokenizer_free(m->tok);
    qt_gguf_close(m->gguf);
    qt_st_close(m->st);
    qt_free(m->globals);
    qt_free(m->tensors);
    qt_free(m->experts);
    qt_free(m->owned);
    qt_free(m->path);
    qt_free(m->arch_name);
    qt_free(m->name);
    qt_free(m);
}

static int64_t tensor_params(const qt_tensor *t) { return t->data ? t->ne0 * t->ne1 : 0; }
static size_t tensor_bytes(const qt_tensor *t) { return t->data ? qt_row_size(t->type, t->ne0) * (size_t)t->ne1 : 0; }

typedef struct {
    int64_t params;
    size_t bytes;
    const qt_tensor *skip;   // the RoPE factors: derived, not parameters
} count_ctx;

static void count_one(qt_tensor *t, void *ud) {
    count_ctx *c = ud;
    if (t->ne1 == 1 && t->ne0 > 0 && c->skip == t) return;
    c->params += tensor_params(t);
    c->bytes += tensor_bytes(t);
}

int64_t qt_model_n_params(const qt_model *m) {
    count_ctx c = { 0, 0, &m->rope_freqs };
    for_each_tensor((qt_model *)m, count_one, &c);
    return c.params;
}

size_t qt_model_weight_bytes(const qt_model *m) {
    count_ctx c = { 0, 0, &m->rope_freqs };
    for_each_tensor((qt_model *)m, count_one, &c);
    return c.bytes;
}

// ---- --no-mmap: the weights in the process's own memory ----

typedef struct {
    qt_model *m;
    size_t bytes;    // pass 1: the total; pass 2: the fill offset
    uint8_t *buf;    // pass 2
} copy_ctx;

static bool in_own_buffer(const qt_model *m, const void *p) {
    for (int i = 0; i < m->n_bufs; i++)
        if ((const uint8_t *)p >= (const uint8_t *)m->bufs[i] && (const uint8_t *)p < (const uint8_t *)m->bufs[i] + m->buf_sizes[i])
            return true;
    return false;
}

static void copy_one(qt_tensor *t, void *ud) {
    copy_ctx *c = ud;
    if (!t->data || in_own_buffer(c->m, t->data)) return;
    size_t n = tensor_bytes(t), at = (c->bytes + 63) & ~(size_t)63;
    if (c->buf) {
        memcpy(c->buf + at, t->data, n);
        qt_mmap_release(t->data, n);   // not held twice
        t->data = t->dev = c->buf + at;
    }
    c->bytes = at + n;
}

int qt_model_copy_weights(qt_model *m) {
    if (m->be && !m->be->host_memory) return QT_OK;   // a device holds its own copy
    copy_ctx c = { m, 0, NULL };
    for_each_tensor(m, copy_one, &c);
    if (c.bytes == 0) return QT_OK;
    const size_t total = c.bytes;
    double t0 = qt_time_s();
    if (!(c.buf = qt_model_own_buffer(m, total, "the weights (--no-mmap)"))) return QT_ERR;
    c.bytes = 0;
    for_each_tensor(m, copy_one, &c);
    if (m->cfg.tied_output) m->globals[QT_G_OUTPUT] = m->globals[QT_G_TOK_EMBD];
    qt_log_info("--no-mmap: %.1f MiB of weights copied into the process's memory in %.2f s", total / 1048576.0,
                qt_time_s() - t0);
    return QT_OK;
}
