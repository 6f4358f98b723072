// model.c: binds a Llama-family model to its weights, from GGUF (llama.cpp's
// tensor names and <arch>.* keys) or from a Hugging Face folder
// (transformers' LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM
// names and config.json). Architectures: llama (Llama 2/3, TinyLlama,
// Mistral, SmolLM) and qwen2. Anything else is refused by name.
// Does not: permute Q/K rows (see model.h), load tokenizer.json (tokenizer issue).
#include "model/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"

const char *qt_arch_name(qt_arch a) {
    switch (a) {
    case QT_ARCH_LLAMA: return "llama";
    case QT_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

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

static int check_config(const char *path, qt_config *c) {
    const char *bad = NULL;
    if (c->n_embd <= 0 || c->n_embd > (1 << 16)) bad = "embedding length";
    else if (c->n_layer <= 0 || c->n_layer > 1024) bad = "layer count";
    else if (c->n_head <= 0 || c->n_head > 1024) bad = "head count";
    else if (c->n_head_kv <= 0 || c->n_head % c->n_head_kv != 0) bad = "key/value head count (must divide the head count)";
    else if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024) bad = "head dimension";
    else if (c->n_ff <= 0 || c->n_ff > (1 << 20)) bad = "feed-forward length";
    else if (c->n_vocab <= 0 || c->n_vocab > (1 << 24)) bad = "vocabulary size";
    else if (!(c->rms_eps > 0) || !(c->rope_theta > 0)) bad = "rms epsilon or rope theta";
    if (bad) {
        qt_log_error("%s: invalid %s in the model hyper-parameters", path, bad);
        return QT_ERR;
    }
    if (c->n_ctx_train <= 0) c->n_ctx_train = 2048;
    return QT_OK;
}

static void reserve_owned(qt_model *m) {
    const qt_config *c = &m->cfg;
    // norms (2 per layer + final), biases (q, k, v per layer), rope factors
    m->cap_owned = (size_t)c->n_embd * (2 * c->n_layer + 1) +
                   (size_t)c->n_layer * (size_t)(c->n_head + 2 * c->n_head_kv) * c->head_dim + c->head_dim;
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

// ---- GGUF ----

static int gguf_tensor(qt_model *m, const char *name, qt_tensor *t, bool required) {
    const qt_gguf_tensor *gt = qt_gguf_find_tensor(m->gguf, name);
    memset(t, 0, sizeof(*t));
    if (!gt) {
        if (required) qt_log_error("%s: missing tensor '%s'", m->path, name);
        return required ? QT_ERR : QT_OK;
    }
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

static int gguf_matrix(qt_model *m, const char *name, qt_tensor *t, int64_t ne0, int64_t ne1) {
    if (gguf_tensor(m, name, t, true) != QT_OK) return QT_ERR;
    if (check_shape(m->path, name, t, ne0, ne1) != QT_OK) return QT_ERR;
    return check_matrix_type(m->path, name, t);
}

static int gguf_vec(qt_model *m, const char *name, const float **out, int64_t n, bool required) {
    qt_tensor t;
    if (gguf_tensor(m, name, &t, required) != QT_OK) return QT_ERR;
    *out = NULL;
    if (!t.data) return QT_OK;
    *out = vec_f32(m, name, &t, n);
    return *out ? QT_OK : QT_ERR;
}

static int load_gguf(qt_model *m) {
    qt_gguf *g = m->gguf = qt_gguf_open(m->path);
    if (!g) return QT_ERR;
    const char *arch;
    if (qt_gguf_get_str(g, "general.architecture", &arch, true) != QT_OK) return QT_ERR;
    m->arch_name = qt_strdup(arch);
    qt_config *c = &m->cfg;
    if (strcmp(arch, "llama") == 0) { c->arch = QT_ARCH_LLAMA; c->rope_type = QT_ROPE_NORM; }
    else if (strcmp(arch, "qwen2") == 0) { c->arch = QT_ARCH_QWEN2; c->rope_type = QT_ROPE_NEOX; }
    else {
        qt_log_error("%s: unsupported architecture '%s' (supported: llama, qwen2)", m->path, arch);
        return QT_ERR;
    }
    const char *name = NULL;
    if (qt_gguf_get_str(g, "general.name", &name, false) != QT_OK) return QT_ERR;
    m->name = qt_strdup(name ? name : arch);

    char key[128];
#define KEY(suffix) (snprintf(key, sizeof(key), "%s." suffix, arch), key)
    uint32_t u;
    u = 0; if (qt_gguf_get_u32(g, KEY("embedding_length"), &u, true) != QT_OK) return QT_ERR; c->n_embd = (int)u;
    u = 0; if (qt_gguf_get_u32(g, KEY("feed_forward_length"), &u, true) != QT_OK) return QT_ERR; c->n_ff = (int)u;
    u = 0; if (qt_gguf_get_u32(g, KEY("block_count"), &u, true) != QT_OK) return QT_ERR; c->n_layer = (int)u;
    u = 0; if (qt_gguf_get_u32(g, KEY("attention.head_count"), &u, true) != QT_OK) return QT_ERR; c->n_head = (int)u;
    u = (uint32_t)c->n_head;
    if (qt_gguf_get_u32(g, KEY("attention.head_count_kv"), &u, false) != QT_OK) return QT_ERR;
    c->n_head_kv = (int)u;
    u = 0; if (qt_gguf_get_u32(g, KEY("context_length"), &u, false) != QT_OK) return QT_ERR; c->n_ctx_train = (int)u;
    c->rms_eps = 1e-5f;
    if (qt_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &c->rms_eps, false) != QT_OK) return QT_ERR;
    c->rope_theta = 10000.0f;
    if (qt_gguf_get_f32(g, KEY("rope.freq_base"), &c->rope_theta, false) != QT_OK) return QT_ERR;
    c->head_dim = c->n_head > 0 ? c->n_embd / c->n_head : 0;
    u = (uint32_t)c->head_dim;
    if (qt_gguf_get_u32(g, KEY("attention.key_length"), &u, false) != QT_OK) return QT_ERR;
    c->head_dim = (int)u;
    uint32_t n_rot = (uint32_t)c->head_dim;
    if (qt_gguf_get_u32(g, KEY("rope.dimension_count"), &n_rot, false) != QT_OK) return QT_ERR;
    const qt_gguf_kv *scaling = qt_gguf_find_kv(g, KEY("rope.scaling.type"));
    if (scaling && scaling->type == QT_GGUF_STRING && !(scaling->v.str.len == 4 && !memcmp(scaling->v.str.data, "none", 4))) {
        qt_log_error("%s: rope scaling '%.*s' is not supported", m->path, (int)scaling->v.str.len, scaling->v.str.data);
        return QT_ERR;
    }
#undef KEY
    if (gguf_tensor(m, "token_embd.weight", &m->tok_embd, true) != QT_OK) return QT_ERR;
    c->n_vocab = (int)m->tok_embd.ne1;
    if (check_config(m->path, c) != QT_OK) return QT_ERR;
    if ((int)n_rot != c->head_dim) {
        qt_log_error("%s: partial rotary embeddings (rope.dimension_count %u of head size %d) are not supported",
                     m->path, n_rot, c->head_dim);
        return QT_ERR;
    }
    reserve_owned(m);

    const int C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_head_kv;
    if (gguf_matrix(m, "token_embd.weight", &m->tok_embd, C, c->n_vocab) != QT_OK) return QT_ERR;
    if (gguf_vec(m, "output_norm.weight", &m->out_norm, C, true) != QT_OK) return QT_ERR;
    if (gguf_tensor(m, "output.weight", &m->output, false) != QT_OK) return QT_ERR;
    if (m->output.data) {
        if (gguf_matrix(m, "output.weight", &m->output, C, c->n_vocab) != QT_OK) return QT_ERR;
    } else {
        m->output = m->tok_embd;
        c->tied_output = true;
    }
    if (gguf_vec(m, "rope_freqs.weight", &m->rope_freqs, HS / 2, false) != QT_OK) return QT_ERR;

    m->layers = qt_calloc((size_t)c->n_layer, sizeof(qt_layer));
    for (int il = 0; il < c->n_layer; il++) {
        qt_layer *L = &m->layers[il];
        char n[96];
#define T(s) (snprintf(n, sizeof(n), "blk.%d." s, il), n)
        if (gguf_vec(m, T("attn_norm.weight"), &L->attn_norm, C, true) != QT_OK ||
            gguf_matrix(m, T("attn_q.weight"), &L->wq, C, NH * HS) != QT_OK ||
            gguf_matrix(m, T("attn_k.weight"), &L->wk, C, NKV * HS) != QT_OK ||
            gguf_matrix(m, T("attn_v.weight"), &L->wv, C, NKV * HS) != QT_OK ||
            gguf_matrix(m, T("attn_output.weight"), &L->wo, NH * HS, C) != QT_OK ||
            gguf_vec(m, T("ffn_norm.weight"), &L->ffn_norm, C, true) != QT_OK ||
            gguf_matrix(m, T("ffn_gate.weight"), &L->w_gate, C, c->n_ff) != QT_OK ||
            gguf_matrix(m, T("ffn_up.weight"), &L->w_up, C, c->n_ff) != QT_OK ||
            gguf_matrix(m, T("ffn_down.weight"), &L->w_down, c->n_ff, C) != QT_OK)
            return QT_ERR;
        bool bias_required = c->arch == QT_ARCH_QWEN2;
        if (gguf_vec(m, T("attn_q.bias"), &L->bq, NH * HS, bias_required) != QT_OK ||
            gguf_vec(m, T("attn_k.bias"), &L->bk, NKV * HS, bias_required) != QT_OK ||
            gguf_vec(m, T("attn_v.bias"), &L->bv, NKV * HS, bias_required) != QT_OK)
            return QT_ERR;
#undef T
    }
    m->tok = qt_tokenizer_from_gguf(g);
    if (!m->tok) return QT_ERR;
    if (qt_tokenizer_n_vocab(m->tok) > c->n_vocab) {
        qt_log_error("%s: the vocabulary has %d tokens but token_embd.weight has %d rows", m->path,
                     qt_tokenizer_n_vocab(m->tok), c->n_vocab);
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

static int hf_tensor(qt_model *m, const char *name, qt_tensor *t, bool required) {
    const qt_st_tensor *st = qt_st_find(m->st, name);
    memset(t, 0, sizeof(*t));
    if (!st) {
        if (required) qt_log_error("%s: missing tensor '%s'", m->path, name);
        return required ? QT_ERR : QT_OK;
    }
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

static int hf_matrix(qt_model *m, const char *name, qt_tensor *t, int64_t ne0, int64_t ne1) {
    if (hf_tensor(m, name, t, true) != QT_OK) return QT_ERR;
    if (check_shape(m->path, name, t, ne0, ne1) != QT_OK) return QT_ERR;
    return check_matrix_type(m->path, name, t);
}

static int hf_vec(qt_model *m, const char *name, const float **out, int64_t n, bool required) {
    qt_tensor t;
    if (hf_tensor(m, name, &t, required) != QT_OK) return QT_ERR;
    *out = NULL;
    if (!t.data) return QT_OK;
    *out = vec_f32(m, name, &t, n);
    return *out ? QT_OK : QT_ERR;
}

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
    if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral")) c->arch = QT_ARCH_LLAMA;
    else if (!strcmp(mt->valuestring, "qwen2")) c->arch = QT_ARCH_QWEN2;
    else {
        qt_log_error("%s: unsupported architecture '%s' (supported: llama, mistral, qwen2)", cfg_path, mt->valuestring);
        goto done;
    }
    c->rope_type = QT_ROPE_NEOX;  // HF checkpoints are in rotate_half order
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    if (json_int(cfg_path, j, "hidden_size", &c->n_embd, true) || json_int(cfg_path, j, "intermediate_size", &c->n_ff, true) ||
        json_int(cfg_path, j, "num_hidden_layers", &c->n_layer, true) ||
        json_int(cfg_path, j, "num_attention_heads", &c->n_head, true) ||
        json_int(cfg_path, j, "vocab_size", &c->n_vocab, true) ||
        json_int(cfg_path, j, "max_position_embeddings", &c->n_ctx_train, false) ||
        json_float(cfg_path, j, "rms_norm_eps", &c->rms_eps) || json_float(cfg_path, j, "rope_theta", &c->rope_theta))
        goto done;
    c->n_head_kv = c->n_head;
    if (json_int(cfg_path, j, "num_key_value_heads", &c->n_head_kv, false)) goto done;
    c->head_dim = c->n_head > 0 ? c->n_embd / c->n_head : 0;
    if (json_int(cfg_path, j, "head_dim", &c->head_dim, false)) goto done;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    c->tied_output = cJSON_IsTrue(tie);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        qt_log_error("%s: hidden_act must be \"silu\"", cfg_path);
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
    rc = check_config(cfg_path, c);
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
    qt_config *c = &m->cfg;
    reserve_owned(m);
    if (scaling[0] > 0) m->rope_freqs = llama3_rope_factors(m, scaling[0], scaling[1], scaling[2], scaling[3]);

    const int C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_head_kv;
    if (hf_matrix(m, "model.embed_tokens.weight", &m->tok_embd, C, c->n_vocab) != QT_OK) return QT_ERR;
    if (hf_vec(m, "model.norm.weight", &m->out_norm, C, true) != QT_OK) return QT_ERR;
    if (hf_tensor(m, "lm_head.weight", &m->output, !c->tied_output) != QT_OK) return QT_ERR;
    if (m->output.data) {
        if (hf_matrix(m, "lm_head.weight", &m->output, C, c->n_vocab) != QT_OK) return QT_ERR;
        c->tied_output = false;
    } else {
        m->output = m->tok_embd;
    }
    m->layers = qt_calloc((size_t)c->n_layer, sizeof(qt_layer));
    for (int il = 0; il < c->n_layer; il++) {
        qt_layer *L = &m->layers[il];
        char n[128];
#define T(s) (snprintf(n, sizeof(n), "model.layers.%d." s, il), n)
        if (hf_vec(m, T("input_layernorm.weight"), &L->attn_norm, C, true) != QT_OK ||
            hf_matrix(m, T("self_attn.q_proj.weight"), &L->wq, C, NH * HS) != QT_OK ||
            hf_matrix(m, T("self_attn.k_proj.weight"), &L->wk, C, NKV * HS) != QT_OK ||
            hf_matrix(m, T("self_attn.v_proj.weight"), &L->wv, C, NKV * HS) != QT_OK ||
            hf_matrix(m, T("self_attn.o_proj.weight"), &L->wo, NH * HS, C) != QT_OK ||
            hf_vec(m, T("post_attention_layernorm.weight"), &L->ffn_norm, C, true) != QT_OK ||
            hf_matrix(m, T("mlp.gate_proj.weight"), &L->w_gate, C, c->n_ff) != QT_OK ||
            hf_matrix(m, T("mlp.up_proj.weight"), &L->w_up, C, c->n_ff) != QT_OK ||
            hf_matrix(m, T("mlp.down_proj.weight"), &L->w_down, c->n_ff, C) != QT_OK)
            return QT_ERR;
        bool bias_required = c->arch == QT_ARCH_QWEN2;
        if (hf_vec(m, T("self_attn.q_proj.bias"), &L->bq, NH * HS, bias_required) != QT_OK ||
            hf_vec(m, T("self_attn.k_proj.bias"), &L->bk, NKV * HS, bias_required) != QT_OK ||
            hf_vec(m, T("self_attn.v_proj.bias"), &L->bv, NKV * HS, bias_required) != QT_OK)
            return QT_ERR;
#undef T
    }
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

static int requantize(qt_model *m, qt_tensor *t, qt_type type, const qt_type_traits *to) {
    if (t->type == type) return QT_OK;
    if (t->ne0 % to->blck_size != 0) {   // as llama-quantize: such tensors keep their type
        qt_log_info("--quantize %s: a matrix with rows of %lld (not a multiple of %d) stays %s", to->name,
                    (long long)t->ne0, to->blck_size, qt_type_name(t->type));
        return QT_OK;
    }
    const qt_type_traits *from = qt_type_traits_get(t->type);
    size_t row = qt_row_size(type, t->ne0), bytes = row * (size_t)t->ne1, src_row = qt_row_size(t->type, t->ne0);
    uint8_t *dst = qt_alloc_big(bytes, "quantized weights");
    if (!dst) return QT_ERR;
    float *tmp = qt_malloc(sizeof(float) * (size_t)t->ne0);
    for (int64_t r = 0; r < t->ne1; r++) {
        from->to_float((const uint8_t *)t->data + (size_t)r * src_row, tmp, t->ne0);
        to->from_float_ref(tmp, dst + (size_t)r * row, t->ne0);
    }
    qt_free(tmp);
    m->bufs = qt_realloc(m->bufs, sizeof(void *) * (size_t)(m->n_bufs + 1));
    m->buf_sizes = qt_realloc(m->buf_sizes, sizeof(size_t) * (size_t)(m->n_bufs + 1));
    m->bufs[m->n_bufs] = dst;
    m->buf_sizes[m->n_bufs++] = bytes;
    t->type = type;
    t->data = dst;
    return QT_OK;
}

int qt_model_quantize(qt_model *m, qt_type type) {
    const qt_type_traits *to = qt_type_traits_get(type);
    if (!to || !to->from_float_ref || !to->to_float) {
        qt_log_error("--quantize: no quantizer for type %s", qt_type_name(type));
        return QT_ERR;
    }
    for (int il = 0; il < m->cfg.n_layer; il++) {
        qt_layer *L = &m->layers[il];
        qt_tensor *ts[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
            if (requantize(m, ts[i], type, to) != QT_OK) return QT_ERR;
    }
    return QT_OK;
}

void qt_model_free(qt_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_bufs; i++) qt_free_big(m->bufs[i], m->buf_sizes[i]);
    qt_free(m->bufs);
    qt_free(m->buf_sizes);
    qt_tokenizer_free(m->tok);
    qt_gguf_close(m->gguf);
    qt_st_close(m->st);
    qt_free(m->layers);
    qt_free(m->owned);
    qt_free(m->path);
    qt_free(m->arch_name);
    qt_free(m->name);
    qt_free(m);
}

static int64_t tensor_params(const qt_tensor *t) { return t->data ? t->ne0 * t->ne1 : 0; }
static size_t tensor_bytes(const qt_tensor *t) { return t->data ? qt_row_size(t->type, t->ne0) * (size_t)t->ne1 : 0; }

int64_t qt_model_n_params(const qt_model *m) {
    const qt_config *c = &m->cfg;
    int64_t n = tensor_params(&m->tok_embd) + c->n_embd;
    if (!c->tied_output) n += tensor_params(&m->output);
    for (int il = 0; il < c->n_layer; il++) {
        const qt_layer *L = &m->layers[il];
        n += tensor_params(&L->wq) + tensor_params(&L->wk) + tensor_params(&L->wv) + tensor_params(&L->wo) +
             tensor_params(&L->w_gate) + tensor_params(&L->w_up) + tensor_params(&L->w_down) + 2 * c->n_embd;
        if (L->bq) n += L->wq.ne1 + L->wk.ne1 + L->wv.ne1;
    }
    return n;
}

size_t qt_model_weight_bytes(const qt_model *m) {
    const qt_config *c = &m->cfg;
    size_t n = tensor_bytes(&m->tok_embd) + sizeof(float) * (size_t)c->n_embd;
    if (!c->tied_output) n += tensor_bytes(&m->output);
    for (int il = 0; il < c->n_layer; il++) {
        const qt_layer *L = &m->layers[il];
        n += tensor_bytes(&L->wq) + tensor_bytes(&L->wk) + tensor_bytes(&L->wv) + tensor_bytes(&L->wo) +
             tensor_bytes(&L->w_gate) + tensor_bytes(&L->w_up) + tensor_bytes(&L->w_down) +
             2 * sizeof(float) * (size_t)c->n_embd;
        if (L->bq) n += sizeof(float) * (size_t)(L->wq.ne1 + L->wk.ne1 + L->wv.ne1);
    }
    return n;
}
