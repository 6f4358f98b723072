// export.c: the GGUF model writer behind fuse, quantize and convert
// (export.h). Tensors are produced one at a time while writing (lazy fill):
// each row is dequantized, gets its LoRA delta s * B[row] A, and is encoded in
// the output type with the scalar reference quantizers, so memory stays at
// one tensor. Follows llama.cpp's convert_hf_to_gguf.py (names, metadata,
// q/k permute), convert_lora_to_gguf.py / export-lora (merging) and
// src/llama-quant.cpp (type rules).
// Does not: imatrix-weighted quantization, llama-quantize's per-layer K-quant
// mixtures (Q4_K_M bumps attn_v / ffn_down): "--type q4_k" gives every matrix
// Q4_K (as llama-quantize's --pure), output.weight Q6_K; does not write
// tokenizer.ggml.merges for SentencePiece vocabularies (llama.cpp reads scores).
// Vocabulary scores of a SentencePiece-style ("llama") vocabulary: those of
// tokenizer.model when the folder has it (as convert_hf_to_gguf.py); else,
// from a tokenizer.json BPE, minus the rank of the first merge that makes each
// token, so llama.cpp's score-ordered merging (llm_tokenizer_spm) applies the
// merges in tokenizer.json's order and segments text as the folder does
// (convert_hf_to_gguf.py writes -1000 for every token there, which does not).
// A folder with only tokenizer.model gets its pieces, scores and types, and
// added_tokens.json's tokens, as _set_vocab_sentencepiece does.
#include "model/export.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "model/lora-io.h"

qt_export_params qt_export_defaults(void) {
    return (qt_export_params){ .type = -1, .lora = NULL, .lora_scale = 1.0f, .tokenizer_gguf = NULL, .name = NULL };
}

int qt_export_file_type(qt_type type) {
    switch ((int)type) {
    case QT_TYPE_F32: return 0;
    case QT_TYPE_F16: return 1;
    case QT_TYPE_Q4_0: return 2;
    case QT_TYPE_Q4_1: return 3;
    case QT_TYPE_Q8_0: return 7;
    case QT_TYPE_Q5_0: return 8;
    case QT_TYPE_Q5_1: return 9;
    case QT_TYPE_Q2_K: return 10;
    case QT_TYPE_Q3_K: return 11;   // Q3_K_S
    case QT_TYPE_Q4_K: return 14;   // Q4_K_S
    case QT_TYPE_Q5_K: return 16;   // Q5_K_S
    case QT_TYPE_Q6_K: return 18;
    case QT_TYPE_IQ4_NL: return 25;
    case QT_TYPE_BF16: return 32;
    default: return -1;
    }
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !memcmp(s + a - b, suf, b);
}

static qt_type fallback_type(qt_type t) {
    switch ((int)t) {
    case QT_TYPE_Q4_K: return QT_TYPE_Q5_0;
    case QT_TYPE_Q5_K: return QT_TYPE_Q5_1;
    case QT_TYPE_Q6_K: return QT_TYPE_Q8_0;
    case QT_TYPE_Q2_K: case QT_TYPE_Q3_K: return QT_TYPE_Q4_0;
    default: return t;
    }
}

qt_type qt_export_tensor_type(const char *name, int n_dims, int64_t ne0, qt_type type, bool tied_output) {
    if (n_dims < 2 || !ends_with(name, "weight") || strstr(name, "_norm.weight")) return QT_TYPE_F32;
    if (strstr(name, "ffn_gate_inp.weight")) return QT_TYPE_F32;   // a MoE router, as convert_hf_to_gguf.py writes it
    const qt_type_traits *tr = qt_type_traits_get(type);
    if (!tr || !tr->is_quantized) return type;
    qt_type t = type;
    bool is_output = !strcmp(name, "output.weight") || (tied_output && !strcmp(name, "token_embd.weight"));
    if (is_output) {
        if (ne0 % tr->blck_size != 0) t = QT_TYPE_Q8_0;
        else if (t != QT_TYPE_Q8_0) t = QT_TYPE_Q6_K;
    }
    if (ne0 % qt_type_traits_get(t)->blck_size != 0) {
        t = fallback_type(t);
        if (ne0 % qt_type_traits_get(t)->blck_size != 0) t = QT_TYPE_F16;
    }
    return t;
}

// ---- tensor list ----

enum { EX_MAT, EX_VEC, EX_RAW };

typedef struct {
    char name[96];
    int kind;
    qt_tensor src;               // EX_MAT
    const float *vec;            // EX_VEC
    int64_t n;                   // EX_VEC length
    const qt_gguf_tensor *raw;   // EX_RAW
    const qt_tensor *xsrc;       // EX_MAT of an expert slot: the n_x experts (src = expert 0), merged into 3-D
    int n_x;
    int il, target;              // LoRA pair, target < 0: none
    bool permute;                // HF -> GGUF q/k row order
    qt_type out;
} ex_tensor;

typedef struct {
    const qt_model *m;
    const qt_export_params *p;
    ex_tensor *t;
    int n, cap;
    float *row, *delta;
} ex_ctx;

static ex_tensor *ex_add(ex_ctx *x, const char *name, int kind) {
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->t = qt_realloc(x->t, sizeof(ex_tensor) * (size_t)x->cap);
    }
    ex_tensor *e = &x->t[x->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->kind = kind;
    e->target = -1;
    return e;
}

// GGUF row g of a q/k matrix comes from HF (rotate_half) row hf_row(g).
static int64_t hf_row(int64_t g, int HS) {
    int64_t h = g / HS, j = g % HS;
    return h * HS + (j % 2) * (HS / 2) + j / 2;
}

static int fill(void *ctxp, int64_t idx, void *dst, size_t nbytes) {
    ex_ctx *x = ctxp;
    const ex_tensor *e = &x->t[idx];
    const int HS = x->m->cfg.head_dim;
    if (e->kind == EX_RAW) {
        memcpy(dst, e->raw->data, nbytes);
        return QT_OK;
    }
    if (e->kind == EX_VEC) {
        float *o = dst;
        for (int64_t i = 0; i < e->n; i++) o[i] = e->vec[e->permute ? hf_row(i, HS) : i];
        return QT_OK;
    }
    for (int xe = 0; xe < QT_MAX(1, e->n_x); xe++) {   // experts one after the other (ne[2])
        const qt_tensor *s = e->n_x ? &e->xsrc[xe] : &e->src;
        const qt_lora_pair *lp = NULL;
        if (e->target >= 0 && x->p->lora && e->il >= x->p->lora->first_layer) {
            lp = qt_lora_get_x(x->p->lora, e->il, e->target, xe);
            if (!lp->a) lp = NULL;
        }
        size_t in_row = qt_row_size(s->type, s->ne0), out_row = qt_row_size(e->out, s->ne0);
        uint8_t *d = (uint8_t *)dst + (size_t)xe * out_row * (size_t)s->ne1;
        if (!lp && !e->permute && e->out == s->type) {
            memcpy(d, s->data, out_row * (size_t)s->ne1);
            continue;
        }
        const qt_type_traits *ti = qt_type_traits_get(s->type), *to = qt_type_traits_get(e->out);
        const int r = lp ? x->p->lora->cfg.rank : 0;
        const float sc = lp ? x->p->lora_scale * x->p->lora->scale : 0;
        for (int64_t row = 0; row < s->ne1; row++) {
            int64_t src = e->permute ? hf_row(row, HS) : row;
            ti->to_float((const uint8_t *)s->data + (size_t)src * in_row, x->row, s->ne0);
            if (lp) {
                // delta = s * B[src] A: accumulate in double for a merge independent of summation order
                const float *b = lp->b + (size_t)src * r;
                for (int64_t j = 0; j < s->ne0; j++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++) acc += (double)b[k] * lp->a[(size_t)k * lp->n_in + j];
                    x->row[j] += (float)(sc * acc);
                }
            }
            to->from_float_ref(x->row, d + (size_t)row * out_row, s->ne0);
        }
    }
    (void)nbytes;
    return QT_OK;
}

static void add_mat(ex_ctx *x, const char *name, const qt_tensor *t, int il, int target, bool permute) {
    ex_tensor *e = ex_add(x, name, EX_MAT);
    e->src = *t;
    e->il = il;
    e->target = target;
    e->permute = permute;
    const qt_export_params *p = x->p;
    // llama-quantize keeps learned position embeddings (GPT-2's) as they are
    if (p->type >= 0 && strcmp(name, "position_embd.weight") != 0)
        e->out = qt_export_tensor_type(name, 2, t->ne0, (qt_type)p->type, x->m->cfg.tied_output);
    else e->out = t->type < QT_TYPE_FIRST_PRIVATE ? t->type : QT_TYPE_F16;   // GGUF has no nf4: f16 (or --type)
    const qt_type_traits *tr = qt_type_traits_get(e->out);
    bool changes = e->out != t->type || permute || (target >= 0 && p->lora);
    if (changes && (!tr || !tr->from_float_ref || t->ne0 % tr->blck_size != 0)) e->out = QT_TYPE_F16;
}

static void add_vec(ex_ctx *x, const char *name, const float *v, int64_t n, bool permute) {
    if (!v) return;
    ex_tensor *e = ex_add(x, name, EX_VEC);
    e->vec = v;
    e->n = n;
    e->permute = permute;
    e->out = QT_TYPE_F32;
}

// The linear whose weight (or bias) is per-layer slot `slot`, or -1.
static int linear_of(const qt_arch_desc *a, int slot, bool *is_bias) {
    for (int i = 0; i < a->n_linears; i++)
        if (a->linears[i].weight == slot || a->linears[i].bias == slot) {
            *is_bias = a->linears[i].bias == slot;
            return i;
        }
    return -1;
}

// One tensor of the table; q/k rows (and biases) are permuted when the
// source's RoPE order is not the GGUF architecture's. An expert slot's n_x
// experts xs are written as one 3-D tensor (llama.cpp's merged ffn_*_exps).
static void add_tensor(ex_ctx *x, const qt_tensor_desc *d, const qt_tensor *t, int il, int lin, bool permute,
                       const qt_tensor *xs, int n_x) {
    if (xs && d->gguf) {
        char n[96];
        snprintf(n, sizeof(n), d->gguf, il);
        add_mat(x, n, &xs[0], il, lin, false);
        x->t[x->n - 1].xsrc = xs;
        x->t[x->n - 1].n_x = n_x;
        return;
    }
    if (!d->gguf || !t->data) return;
    char n[96];
    if (il >= 0) snprintf(n, sizeof(n), d->gguf, il);
    else snprintf(n, sizeof(n), "%s", d->gguf);
    if (d->flags & QT_TF_VEC) add_vec(x, n, t->data, t->ne0, permute);
    else add_mat(x, n, t, il, lin, permute);
}

static void build_list(ex_ctx *x) {
    const qt_model *m = x->m;
    const qt_config *c = &m->cfg;
    const qt_arch_desc *a = m->arch;
    const bool reorder = c->rope_type != a->gguf_rope;   // HF rotate_half rows -> GGUF's order
    for (int i = 0; i < a->n_globals; i++)
        if (!(i == QT_G_OUTPUT && c->tied_output)) add_tensor(x, &a->globals[i], &m->globals[i], -1, -1, false, NULL, 0);
    add_vec(x, "rope_freqs.weight", m->rope_freqs.data, c->head_dim / 2, false);
    for (int il = 0; il < c->n_layer; il++)
        for (int i = 0; i < a->n_layer_tensors; i++) {
            bool is_bias = false;
            int lin = linear_of(a, i, &is_bias);
            bool permute = reorder && lin >= 0 && a->linears[lin].rope != QT_LIN_PLAIN;
            const qt_tensor *xs = a->layer[i].flags & QT_TF_EXPERT ? qt_model_expert(m, il, i, 0) : NULL;
            add_tensor(x, &a->layer[i], qt_model_tensor(m, il, i), il, is_bias ? -1 : lin, permute, xs, c->n_expert);
        }
    if (m->gguf) {   // tensors of the source the model does not bind: copied as they are
        for (int64_t i = 0; i < qt_gguf_n_tensors(m->gguf); i++) {
            const qt_gguf_tensor *t = qt_gguf_tensor_at(m->gguf, i);
            char nm[96];
            if (t->name.len >= sizeof(nm)) continue;
            memcpy(nm, t->name.data, t->name.len);
            nm[t->name.len] = 0;
            bool have = false;
            for (int k = 0; k < x->n && !have; k++) have = !strcmp(x->t[k].name, nm);
            // per-expert tensors of older files: written merged above
            for (size_t k = 0; m->experts && !have && k < (size_t)c->n_layer * a->n_layer_tensors * c->n_expert; k++)
                have = m->experts[k].data == t->data;
            if (have) continue;
            ex_tensor *e = ex_add(x, nm, EX_RAW);
            e->raw = t;
            e->out = t->type;
        }
    }
}

// ---- metadata ----

// Copies the kvs of g whose key starts with prefix.
static void copy_kv_prefix(qt_gguf_writer *w, const qt_gguf *g, const char *prefix) {
    size_t pl = strlen(prefix);
    for (int64_t i = 0; i < qt_gguf_n_kv(g); i++) {
        const qt_gguf_kv *kv = qt_gguf_kv_at(g, i);
        if (kv->key.len < pl || memcmp(kv->key.data, prefix, pl) != 0) continue;
        char *key = qt_malloc(kv->key.len + 1);
        memcpy(key, kv->key.data, kv->key.len);
        key[kv->key.len] = 0;
        if (kv->type == QT_GGUF_STRING) {
            char *s = qt_malloc(kv->v.str.len + 1);
            memcpy(s, kv->v.str.data, kv->v.str.len);
            s[kv->v.str.len] = 0;
            qt_gguf_set_str(w, key, s);
            qt_free(s);
        } else if (kv->type == QT_GGUF_ARRAY && kv->v.arr.type == QT_GGUF_STRING) {
            char **strs = qt_malloc(sizeof(char *) * (kv->v.arr.n + 1));
            for (uint64_t k = 0; k < kv->v.arr.n; k++) {
                strs[k] = qt_malloc(kv->v.arr.strs[k].len + 1);
                memcpy(strs[k], kv->v.arr.strs[k].data, kv->v.arr.strs[k].len);
                strs[k][kv->v.arr.strs[k].len] = 0;
            }
            qt_gguf_set_arr_str(w, key, (const char *const *)strs, kv->v.arr.n);
            for (uint64_t k = 0; k < kv->v.arr.n; k++) qt_free(strs[k]);
            qt_free(strs);
        } else if (kv->type == QT_GGUF_ARRAY) {
            qt_gguf_set_arr(w, key, kv->v.arr.type, kv->v.arr.data, kv->v.arr.n);
        } else {
            union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64;
                    int64_t i64; float f32; double f64; } v;
            switch (kv->type) {
            case QT_GGUF_UINT8: v.u8 = (uint8_t)kv->v.u64; break;
            case QT_GGUF_INT8: v.i8 = (int8_t)kv->v.i64; break;
            case QT_GGUF_UINT16: v.u16 = (uint16_t)kv->v.u64; break;
            case QT_GGUF_INT16: v.i16 = (int16_t)kv->v.i64; break;
            case QT_GGUF_UINT32: v.u32 = (uint32_t)kv->v.u64; break;
            case QT_GGUF_INT32: v.i32 = (int32_t)kv->v.i64; break;
            case QT_GGUF_UINT64: v.u64 = kv->v.u64; break;
            case QT_GGUF_INT64: v.i64 = kv->v.i64; break;
            case QT_GGUF_FLOAT32: v.f32 = (float)kv->v.f64; break;
            case QT_GGUF_FLOAT64: v.f64 = kv->v.f64; break;
            case QT_GGUF_BOOL: v.u8 = kv->v.b; break;
            default: qt_free(key); continue;
            }
            qt_gguf_set_val(w, key, kv->type, &v);
        }
        qt_free(key);
    }
}

static char *path_join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = qt_malloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static cJSON *read_json(const char *dir, const char *file) {
    char *p = path_join(dir, file);
    struct stat st;
    cJSON *j = NULL;
    if (stat(p, &st) == 0) {
        char *text = qt_read_file(p, NULL);
        j = text ? cJSON_Parse(text) : NULL;
        qt_free(text);
    }
    qt_free(p);
    return j;
}

// SentencePiece tokenizer.model (protobuf ModelProto: field 1 = repeated
// SentencePiece {1: piece, 2: score (float), 3: type}): the scores and types
// convert_hf_to_gguf.py takes from it. Returns the piece count, or -1.
static uint64_t pb_varint(const uint8_t **p, const uint8_t *end, bool *ok) {
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (*p >= end) break;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return v;
    }
    *ok = false;
    return 0;
}

// The pieces of a tokenizer.model: text (malloc'd, NUL-terminated), score,
// SentencePiece type (1 normal, 2 unknown, 3 control, 4 user-defined, 5
// unused, 6 byte). Returns the count, or -1 (quietly: absent; with a warning:
// unreadable).
typedef struct {
    char *text;
    float score;
    int type;
} spm_piece;

static int parse_spm_model(const char *dir, spm_piece **out) {
    char *path = path_join(dir, "tokenizer.model");
    struct stat st;
    size_t size = 0;
    char *buf = stat(path, &st) == 0 ? qt_read_file(path, &size) : NULL;
    int count = 0, cap = 0;
    spm_piece *pc = NULL;
    bool ok = buf != NULL;
    const uint8_t *p = (const uint8_t *)buf, *end = buf ? p + size : p;   // NULL + 0 is undefined
    while (ok && p < end) {
        uint64_t key = pb_varint(&p, end, &ok);
        int wt = (int)(key & 7);
        uint64_t len = 0;
        if (wt == 2) {
            len = pb_varint(&p, end, &ok);
            if (!ok || len > (uint64_t)(end - p)) { ok = false; break; }
        } else if (wt == 0) { pb_varint(&p, end, &ok); continue; }
        else if (wt == 5) { if (end - p < 4) ok = false; else p += 4; continue; }
        else if (wt == 1) { if (end - p < 8) ok = false; else p += 8; continue; }
        else { ok = false; break; }
        const uint8_t *q = p, *qe = p + len;
        p += len;
        if ((key >> 3) != 1) continue;   // not a piece
        const uint8_t *piece = NULL;
        uint64_t plen = 0;
        float score = 0;
        int type = 1;
        while (ok && q < qe) {
            uint64_t k2 = pb_varint(&q, qe, &ok);
            if ((k2 >> 3) == 1 && (k2 & 7) == 2) {
                plen = pb_varint(&q, qe, &ok);
                if (plen > (uint64_t)(qe - q)) { ok = false; break; }
                piece = q;
                q += plen;
            } else if ((k2 >> 3) == 2 && (k2 & 7) == 5 && qe - q >= 4) {
                memcpy(&score, q, 4);
                q += 4;
            } else if ((k2 >> 3) == 3 && (k2 & 7) == 0) {
                type = (int)pb_varint(&q, qe, &ok);
            } else if ((k2 & 7) == 0) pb_varint(&q, qe, &ok);
            else if ((k2 & 7) == 5 && qe - q >= 4) q += 4;
            else if ((k2 & 7) == 2) { uint64_t l2 = pb_varint(&q, qe, &ok); if (l2 > (uint64_t)(qe - q)) ok = false; else q += l2; }
            else ok = false;
        }
        if (!ok || !piece || count >= (1 << 24)) { ok = false; break; }
        if (count == cap) pc = qt_realloc(pc, sizeof(spm_piece) * (size_t)(cap = cap ? 2 * cap : 1024));
        pc[count].text = qt_malloc(plen + 1);
        memcpy(pc[count].text, piece, plen);
        pc[count].text[plen] = 0;
        pc[count].score = score;
        pc[count].type = type;
        count++;
    }
    if (buf && !ok) qt_log_warn("%s: not a SentencePiece model we can read", path);
    if (!ok || count == 0) {
        for (int i = 0; i < count; i++) qt_free(pc[i].text);
        qt_free(pc);
        pc = NULL;
        count = -1;
    }
    qt_free(buf);
    qt_free(path);
    *out = pc;
    return count;
}

static void free_spm(spm_piece *pc, int n) {
    for (int i = 0; i < n; i++) qt_free(pc[i].text);
    qt_free(pc);
}

// The scores and types convert_hf_to_gguf.py takes from tokenizer.model, when
// its pieces are t's first tokens. Returns the piece count, or -1.
static int read_spm_model(const char *dir, const qt_tokenizer *t, float *scores, int32_t *types, int n) {
    spm_piece *pc = NULL;
    int np = parse_spm_model(dir, &pc);
    if (np < 0) return -1;
    int rc = np <= n ? np : -1;
    for (int i = 0; rc > 0 && i < np; i++) {
        const char *text = qt_token_text(t, i);
        if (!text || strcmp(text, pc[i].text) != 0) {
            qt_log_warn("%s/tokenizer.model: piece %d differs from tokenizer.json; scores not taken from it", dir, i);
            rc = -1;
            break;
        }
        scores[i] = pc[i].score;
        types[i] = pc[i].type;
    }
    if (np > n) qt_log_warn("%s/tokenizer.model: more pieces than tokenizer.json; scores not taken from it", dir);
    free_spm(pc, np);
    return rc;
}

// A folder with tokenizer.model and no tokenizer.json: the vocabulary as
// convert_hf_to_gguf.py's _create_vocab_sentencepiece builds it ([PADi]
// filler, the pieces, added_tokens.json and tokenizer_config.json's
// added_tokens_decoder), and the special token ids. QT_ERR (logged).
static int spm_vocab_kv(qt_gguf_writer *w, const char *dir, int n_vocab) {
    spm_piece *pc = NULL;
    int np = parse_spm_model(dir, &pc);
    if (np < 0) {
        qt_log_error("%s: no tokenizer.json, and no tokenizer.model we can read: give --tokenizer FILE.gguf", dir);
        return QT_ERR;
    }
    if (n_vocab <= 0) n_vocab = np;
    char **toks = qt_calloc((size_t)n_vocab, sizeof(char *));
    float *scores = qt_malloc(sizeof(float) * (size_t)n_vocab);
    int32_t *types = qt_malloc(sizeof(int32_t) * (size_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        toks[i] = qt_malloc(24);
        snprintf(toks[i], 24, "[PAD%d]", i);
        scores[i] = -10000.0f;
        types[i] = 5;
    }
    int bos = -1, eos = -1, unk = -1;
    for (int i = 0; i < np && i < n_vocab; i++) {
        qt_free(toks[i]);
        toks[i] = qt_strdup(pc[i].text);
        scores[i] = pc[i].score;
        types[i] = pc[i].type >= 1 && pc[i].type <= 6 ? pc[i].type : 1;
        if (types[i] == 2 && unk < 0) unk = i;
        if (types[i] == 3 && !strcmp(pc[i].text, "<s>")) bos = i;
        if (types[i] == 3 && !strcmp(pc[i].text, "</s>")) eos = i;
    }
    if (np > n_vocab) qt_log_warn("%s/tokenizer.model: %d pieces, the model has %d: the rest ignored", dir, np, n_vocab);
    free_spm(pc, np);
    cJSON *added = read_json(dir, "added_tokens.json");
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= n_vocab) continue;
        int id = (int)e->valuedouble;
        qt_free(toks[id]);
        toks[id] = qt_strdup(e->string);
        scores[id] = -1000.0f;
        types[id] = 4;
    }
    cJSON_Delete(added);
    cJSON *cfg = read_json(dir, "tokenizer_config.json");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    for (const cJSON *e = dec ? dec->child : NULL; e; e = e->next) {
        long id = strtol(e->string, NULL, 10);
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "content"));
        if (id < 0 || id >= n_vocab || !content) continue;
        qt_free(toks[id]);
        toks[id] = qt_strdup(content);
        scores[id] = -1000.0f;
        types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? 3 : 4;
    }
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    qt_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    qt_gguf_set_str(w, "tokenizer.ggml.pre", "default");
    qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, scores, (uint64_t)n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, types, (uint64_t)n_vocab);
    if (bos >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (unk >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
    qt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", ab ? cJSON_IsTrue(ab) : true);
    qt_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", ae ? cJSON_IsTrue(ae) : false);
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(tmpl)) qt_gguf_set_str(w, "tokenizer.chat_template", tmpl->valuestring);
    cJSON_Delete(cfg);
    for (int i = 0; i < n_vocab; i++) qt_free(toks[i]);
    qt_free(toks);
    qt_free(scores);
    qt_free(types);
    return QT_OK;
}

// scores[i] = -(rank of the first merge of tokenizer.json's model.merges whose
// result is token i), for tokens some merge makes; others keep their score.
// Returns the number of tokens scored, or -1 when there are no merges.
static int merge_rank_scores(const char *hf_dir, const qt_tokenizer *t, float *scores, int n) {
    cJSON *tj = read_json(hf_dir, "tokenizer.json");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "merges");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "vocab");
    int scored = -1;
    if (cJSON_IsArray(merges) && cJSON_IsObject(vocab)) {
        bool *done = qt_calloc((size_t)n + 1, 1);
        scored = 0;
        int rank = 0;
        const cJSON *it;
        char buf[512];
        cJSON_ArrayForEach(it, merges) {
            const char *a = NULL, *b = NULL;
            char pair[512];
            if (cJSON_IsString(it)) {
                snprintf(pair, sizeof(pair), "%s", it->valuestring);
                char *sp = strchr(pair, ' ');
                if (sp) { *sp = 0; a = pair; b = sp + 1; }
            } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) {
                a = cJSON_GetStringValue(cJSON_GetArrayItem(it, 0));
                b = cJSON_GetStringValue(cJSON_GetArrayItem(it, 1));
            }
            size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
            if (a && b && la + lb < sizeof(buf)) {
                memcpy(buf, a, la);
                memcpy(buf + la, b, lb + 1);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, buf);
                if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < n && !done[(int)id->valuedouble]) {
                    int k = (int)id->valuedouble;
                    const char *text = qt_token_text(t, k);
                    if (text && !strcmp(text, buf)) {
                        done[k] = true;
                        scores[k] = -(float)rank;
                        scored++;
                    }
                }
            }
            rank++;
        }
        qt_free(done);
    }
    cJSON_Delete(tj);
    return scored;
}

// tokenizer.ggml.* for t, the vocabulary padded to n_vocab rows with unused tokens.
static int tokenizer_kv(qt_gguf_writer *w, const qt_tokenizer *t, const char *hf_dir, int n_vocab) {
    const char *model = qt_tokenizer_model_name(t);
    bool gpt2 = !strcmp(model, "bpe");
    int nt = qt_tokenizer_n_vocab(t);
    if (n_vocab < nt) n_vocab = nt;
    const char **toks = qt_malloc(sizeof(char *) * (size_t)n_vocab);
    char **pads = qt_calloc((size_t)n_vocab, sizeof(char *));
    float *scores = qt_malloc(sizeof(float) * (size_t)n_vocab);
    int32_t *types = qt_malloc(sizeof(int32_t) * (size_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        if (i < nt) {
            toks[i] = qt_token_text(t, i);
            scores[i] = qt_token_score(t, i);
            types[i] = qt_token_type(t, i);
            if (types[i] <= 0) types[i] = 1;
        } else {
            pads[i] = qt_malloc(24);
            snprintf(pads[i], 24, "[PAD%d]", i);
            toks[i] = pads[i];
            scores[i] = -1000.0f;
            types[i] = 5;   // unused
        }
    }
    if (!gpt2 && hf_dir) {   // SentencePiece scores and types, as convert_hf_to_gguf.py reads them
        float *sc = qt_malloc(sizeof(float) * (size_t)n_vocab);
        int32_t *ty = qt_malloc(sizeof(int32_t) * (size_t)n_vocab);
        int np = read_spm_model(hf_dir, t, sc, ty, nt);
        if (np > 0) {
            memcpy(scores, sc, sizeof(float) * (size_t)np);
            memcpy(types, ty, sizeof(int32_t) * (size_t)np);
        } else {
            // no tokenizer.model: scores that make llama.cpp merge in tokenizer.json's order
            for (int i = 0; i < nt; i++) scores[i] = 0.0f;
            int ns = merge_rank_scores(hf_dir, t, scores, nt);
            if (ns > 0) qt_log_debug("%s: %d token scores from tokenizer.json's merge ranks", hf_dir, ns);
        }
        qt_free(sc);
        qt_free(ty);
    }
    qt_gguf_set_str(w, "tokenizer.ggml.model", gpt2 ? "gpt2" : "llama");
    if (gpt2) {   // our pre-tokenizer family -> the tokenizer.ggml.pre name llama.cpp maps to it
        static const char *const names[][2] = {
            { "gpt2", "gpt-2" }, { "llama3", "llama-bpe" }, { "qwen2", "qwen2" }, { "deepseek-llm", "deepseek-llm" },
            { "deepseek-coder", "deepseek-coder" }, { "falcon", "falcon" }, { "starcoder", "starcoder" },
        };
        const char *fam = qt_tokenizer_pre_name(t), *pre = "default";
        for (size_t i = 0; fam && i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(fam, names[i][0])) pre = names[i][1];
        qt_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    }
    qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, scores, (uint64_t)n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, types, (uint64_t)n_vocab);
    for (int i = nt; i < n_vocab; i++) qt_free(pads[i]);
    qt_free(pads);
    qt_free(toks);
    qt_free(scores);
    qt_free(types);
    int rc = QT_OK;
    cJSON *tj = hf_dir ? read_json(hf_dir, "tokenizer.json") : NULL;
    if (gpt2) {
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "merges");
        if (!cJSON_IsArray(merges)) {
            qt_log_error("%s: byte-level BPE tokenizer without tokenizer.json model.merges to write", hf_dir ? hf_dir : "?");
            rc = QT_ERR;
        } else {
            int nm = cJSON_GetArraySize(merges), k = 0;
            char **ms = qt_calloc((size_t)nm + 1, sizeof(char *));
            const cJSON *it;
            cJSON_ArrayForEach(it, merges) {
                if (cJSON_IsString(it)) ms[k++] = qt_strdup(it->valuestring);
                else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                         cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
                    const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
                    size_t n = strlen(a) + strlen(b) + 2;
                    ms[k] = qt_malloc(n);
                    snprintf(ms[k++], n, "%s %s", a, b);
                }
            }
            qt_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, (uint64_t)k);
            for (int i = 0; i < k; i++) qt_free(ms[i]);
            qt_free(ms);
        }
    }
    cJSON_Delete(tj);
    if (qt_tokenizer_bos(t) >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)qt_tokenizer_bos(t));
    if (qt_tokenizer_eos(t) >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)qt_tokenizer_eos(t));
    if (qt_tokenizer_unk(t) >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)qt_tokenizer_unk(t));
    if (qt_tokenizer_pad(t) >= 0) qt_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)qt_tokenizer_pad(t));
    qt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", qt_tokenizer_add_bos(t));
    qt_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", qt_tokenizer_add_eos(t));
    if (!gpt2) qt_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", qt_tokenizer_add_space_prefix(t));
    cJSON *cfg = hf_dir ? read_json(hf_dir, "tokenizer_config.json") : NULL;
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(tmpl)) qt_gguf_set_str(w, "tokenizer.chat_template", tmpl->valuestring);
    cJSON_Delete(cfg);
    return rc;
}

int qt_export_tokenizer_kv(qt_gguf_writer *w, const qt_tokenizer *t, const char *hf_dir) {
    return tokenizer_kv(w, t, hf_dir, 0);
}

static int hf_metadata(qt_gguf_writer *w, const qt_model *m, const qt_export_params *p) {
    const qt_config *c = &m->cfg;
    const char *arch = m->arch->gguf_names[0];
    char key[128];
#define KEY(s) (snprintf(key, sizeof(key), "%s." s, arch), key)
    qt_gguf_set_str(w, "general.architecture", arch);
    qt_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx_train);
    qt_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    qt_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    qt_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    qt_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    qt_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    const unsigned af = m->arch->flags;
    if (af & QT_ARCH_LAYERNORM) qt_gguf_set_f32(w, KEY("attention.layer_norm_epsilon"), c->rms_eps);
    else qt_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
    if (!(af & QT_ARCH_NO_ROPE)) {
        qt_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta);
        qt_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    }
    if ((af & QT_ARCH_SWA) && c->n_swa > 0) qt_gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->n_swa);
    if (c->head_dim * c->n_head != c->n_embd) {
        qt_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        qt_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    qt_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab);
    if (c->n_expert > 0) {
        qt_gguf_set_u32(w, KEY("expert_count"), (uint32_t)c->n_expert);
        qt_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
    }
#undef KEY
    if (p->tokenizer_gguf) {
        qt_gguf *g = qt_gguf_open(p->tokenizer_gguf);
        if (!g) return QT_ERR;
        const qt_gguf_kv *toks = qt_gguf_find_kv(g, "tokenizer.ggml.tokens");
        int rc = QT_OK;
        if (!toks || toks->type != QT_GGUF_ARRAY || toks->v.arr.n > (uint64_t)c->n_vocab) {
            qt_log_error("%s: no tokenizer.ggml.tokens that fits the model's %d-token vocabulary", p->tokenizer_gguf,
                         c->n_vocab);
            rc = QT_ERR;
        } else {
            copy_kv_prefix(w, g, "tokenizer.");
        }
        qt_gguf_close(g);
        return rc;
    }
    if (!m->tok) return spm_vocab_kv(w, m->path, c->n_vocab);   // tokenizer.model only
    return tokenizer_kv(w, m->tok, m->path, c->n_vocab);
}

int qt_export_gguf(const qt_model *m, const qt_export_params *p, const char *path) {
    if (p->type >= 0) {
        const qt_type_traits *tr = qt_type_traits_get(p->type);
        if (!tr || !tr->from_float_ref || p->type == QT_TYPE_Q8_1 || p->type == QT_TYPE_Q8_K ||
            p->type >= QT_TYPE_FIRST_PRIVATE) {
            qt_log_error("%s: cannot write tensors of type %s", path, qt_type_name(p->type));
            return QT_ERR;
        }
    }
    if (p->lora && p->lora->n_layer != m->cfg.n_layer) {
        qt_log_error("%s: the adapter has %d layers, the model %d", path, p->lora->n_layer, m->cfg.n_layer);
        return QT_ERR;
    }
    ex_ctx x = { .m = m, .p = p };
    build_list(&x);
    int64_t max_row = 1;
    for (int i = 0; i < x.n; i++)
        if (x.t[i].kind == EX_MAT) max_row = QT_MAX(max_row, x.t[i].src.ne0);
    x.row = qt_malloc(sizeof(float) * (size_t)max_row);
    qt_gguf_writer *w = qt_gguf_writer_init();
    int rc = QT_OK;
    qt_type ft = p->type >= 0 ? (qt_type)p->type : qt_model_global(m, QT_G_TOK_EMBD)->type;
    if (p->name) qt_gguf_set_str(w, "general.name", p->name);
    if (m->gguf) {
        const char *arch;
        if (qt_gguf_get_str(m->gguf, "general.architecture", &arch, true) != QT_OK) rc = QT_ERR;
        if (p->type >= 0) {   // otherwise the source's file type still describes the tensors
            if (qt_export_file_type(ft) >= 0) qt_gguf_set_u32(w, "general.file_type", (uint32_t)qt_export_file_type(ft));
            if (qt_type_traits_get(ft)->is_quantized) qt_gguf_set_u32(w, "general.quantization_version", 2);
        }
        qt_gguf_copy_kv(w, m->gguf);
    } else {
        if (!p->name) qt_gguf_set_str(w, "general.name", m->name ? m->name : "model");
        if (qt_export_file_type(ft) >= 0) qt_gguf_set_u32(w, "general.file_type", (uint32_t)qt_export_file_type(ft));
        if (qt_type_traits_get(ft)->is_quantized) qt_gguf_set_u32(w, "general.quantization_version", 2);
        rc = hf_metadata(w, m, p);
    }
    if (rc == QT_OK) {
        for (int i = 0; i < x.n; i++) {
            const ex_tensor *e = &x.t[i];
            int nd;
            int64_t ne[3];
            if (e->kind == EX_MAT) { ne[0] = e->src.ne0; ne[1] = e->src.ne1; ne[2] = e->n_x; nd = e->n_x ? 3 : 2; }
            else if (e->kind == EX_VEC) { ne[0] = e->n; ne[1] = 1; nd = 1; }
            else {
                qt_gguf_add_tensor(w, e->name, e->raw->type, e->raw->n_dims, e->raw->ne, e->raw->data);
                continue;
            }
            qt_gguf_add_tensor_lazy(w, e->name, e->out, nd, ne, fill, &x);
        }
        rc = qt_gguf_write(w, path);
    }
    qt_gguf_writer_free(w);
    qt_free(x.row);
    qt_free(x.t);
    return rc;
}
