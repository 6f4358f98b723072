// tokenizer.c: the vocabulary (texts, types, hash lookup, decoded pieces),
// loading from GGUF metadata ("llama" and "gpt2" vocabularies), special-token
// partitioning, SentencePiece-style BPE and the streaming detokenizer.
// Rank-based BPE is in bpe.c, pre-tokenizers in pretok.c, tokenizer.json in
// tokenizer-json.c.
//
// Implements: loading and validating tokenizer.ggml.* metadata; encoding as
// llama.cpp's llm_tokenizer_spm (src/llama-vocab.cpp): spaces -> U+2581, a
// leading space at the start of the text and after each special token, split
// into UTF-8 characters, then repeatedly merge the adjacent pair whose
// concatenation is a vocabulary token of highest score (ties: leftmost), with
// a binary heap, so O(n log n); characters left over that are not tokens fall
// back to <0xNN> byte tokens (or the unknown token when there are none).
// Special tokens: as llama.cpp's tokenizer_st_partition, the texts of special
// tokens are cut out of the input first, longest token first; user-defined
// tokens always, control and unknown tokens only with parse_special.
// Decoding: U+2581 -> space, <0xNN> -> the byte, control tokens -> "" unless
// special; the streaming decoder holds incomplete UTF-8 and replaces invalid
// bytes with U+FFFD (maximal-subpart rule of Unicode ch. 3).
//
// Deliberately not here: Unigram (t5), WPM, RWKV, the lstrip/rstrip
// attributes llama.cpp sets by model name (phi-3), sentencepiece's normalizer
// (NFKC: llama vocabularies carry none), and llama.cpp's clean_spaces
// post-processing of detokenized text.
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tokenizer/tokenizer-impl.h"

static void build_pairs(qt_tokenizer *t);

// ---- text -> id hash table ------------------------------------------------

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;   // FNV-1a 64
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static int lookup(const qt_tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->table_mask;
    for (;;) {
        int32_t id = t->table[i];
        if (id < 0) return -1;
        const tok_entry *e = &t->toks[id];
        if (e->text_len == n && memcmp(t->text + e->text_off, s, n) == 0) return id;
        i = (i + 1) & t->table_mask;
    }
}

int qt_tok_lookup(const qt_tokenizer *t, const char *s, size_t n) { return lookup(t, s, n); }

// Later duplicates win, as llama.cpp's token_to_id map assignment.
static void table_insert(qt_tokenizer *t, int id) {
    const tok_entry *e = &t->toks[id];
    const char *s = t->text + e->text_off;
    uint32_t i = (uint32_t)hash_bytes(s, e->text_len) & t->table_mask;
    for (;;) {
        int32_t cur = t->table[i];
        if (cur < 0) { t->table[i] = id; return; }
        const tok_entry *c = &t->toks[cur];
        if (c->text_len == e->text_len && memcmp(t->text + c->text_off, s, e->text_len) == 0) {
            t->table[i] = id;
            return;
        }
        i = (i + 1) & t->table_mask;
    }
}

// ---- loading ---------------------------------------------------------------

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// "<0xNN>" -> NN, else -1.
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

// Optional special-token id. 4294967295 (u32) or -1 (i32) mean "none".
static int get_special_id(const qt_gguf *g, const char *key, int n_vocab, int *id) {
    const qt_gguf_kv *kv = qt_gguf_find_kv(g, key);
    if (!kv) return QT_OK;
    int64_t v = 0;
    if (qt_gguf_get_i64(g, key, &v, true) != QT_OK) return QT_ERR;
    if (v == -1 || v == (int64_t)UINT32_MAX) { *id = -1; return QT_OK; }
    if (v < 0 || v >= n_vocab) {
        qt_log_error("%s: key %s: token id %lld out of range (vocabulary has %d tokens)",
                     qt_gguf_path(g), key, (long long)v, n_vocab);
        return QT_ERR;
    }
    *id = (int)v;
    return QT_OK;
}

// Texts that mark end-of-generation tokens, as llama.cpp's special_eog_ids scan.
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
};

typedef struct {
    uint32_t len;
    int32_t id;
} len_id;

// longest text first; equal lengths by id
static int cmp_len_id(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int qt_tok_build_vocab(qt_tokenizer *t, const char *path, int n, const char *const *texts, const uint32_t *lens,
                       const float *scores, const int32_t *types) {
    t->n_vocab = n;
    t->toks = qt_calloc((size_t)n, sizeof(tok_entry));
    size_t text_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (texts[i] && lens[i] > 65536) {
            qt_log_error("%s: token %d is %u bytes long (limit 65536)", path, i, lens[i]);
            return QT_ERR;
        }
        text_bytes += (texts[i] ? lens[i] : 0) + 1;
    }
    t->text = qt_malloc(text_bytes);
    // Decoded pieces are never longer than the text (U+2581 3 bytes -> 1 byte,
    // a byte-level character 1-2 bytes -> 1 byte).
    t->pieces = qt_malloc(text_bytes);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        tok_entry *e = &t->toks[i];
        uint32_t len = texts[i] ? lens[i] : 0;
        if (len) memcpy(t->text + off, texts[i], len);
        t->text[off + len] = 0;
        e->text_off = off;
        e->text_len = len;
        off += len + 1;
        float sc = scores ? scores[i] : 0.0f;
        if (sc != sc) {
            qt_log_error("%s: key tokenizer.ggml.scores: score of token %d is NaN", path, i);
            return QT_ERR;
        }
        e->score = sc;
        int32_t ty = types ? types[i] : TT_NORMAL;
        if (!texts[i]) ty = TT_UNUSED;
        if (ty < TT_UNDEFINED || ty > TT_BYTE) {
            qt_log_error("%s: key tokenizer.ggml.token_type: token %d has type %d (valid: 0..6)", path, i, ty);
            return QT_ERR;
        }
        if (ty == TT_UNDEFINED) ty = TT_NORMAL;
        e->type = (uint8_t)ty;
    }

    // hash table at most half full
    uint32_t cap = 16;
    while (cap < 2 * (uint32_t)n) cap *= 2;
    t->table = qt_malloc(cap * sizeof(int32_t));
    memset(t->table, 0xff, cap * sizeof(int32_t));
    t->table_mask = cap - 1;
    for (int i = 0; i < n; i++)
        if (t->toks[i].text_len > 0 && texts[i]) table_insert(t, i);

    // decoded pieces
    off = 0;
    for (int i = 0; i < n; i++) {
        tok_entry *e = &t->toks[i];
        const char *s = t->text + e->text_off;
        char *p = t->pieces + off;
        size_t pl = 0;
        if (e->type == TT_BYTE) {
            int b = parse_byte_token(s, e->text_len);
            if (b < 0) {
                qt_log_error("%s: key tokenizer.ggml.tokens: byte token %d is '%s', expected <0xNN>", path, i, s);
                return QT_ERR;
            }
            p[pl++] = (char)b;
        } else if (e->type == TT_NORMAL && t->byte_level) {
            pl = qt_bpe_decode_text(s, e->text_len, p);
        } else if (e->type == TT_NORMAL) {
            for (uint32_t j = 0; j < e->text_len; j++) {
                if (j + 2 < e->text_len && memcmp(s + j, "\xe2\x96\x81", 3) == 0) { p[pl++] = ' '; j += 2; }
                else p[pl++] = s[j];
            }
        } else if (e->type != TT_UNUSED) {  // control, unknown, user-defined: as stored
            memcpy(p, s, e->text_len);
            pl = e->text_len;
        }
        p[pl] = 0;
        e->piece_off = off;
        e->piece_len = (uint32_t)pl;
        off += pl + 1;
    }

    // byte fallback: "<0xNN>" by text (as llama.cpp's byte_to_token), else the
    // one-character token for ASCII
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof(buf), "<0x%02X>", b);
        int id = lookup(t, buf, 6);
        if (id < 0 && b < 0x80 && b > 0) { buf[0] = (char)b; id = lookup(t, buf, 1); }
        t->byte_id[b] = id;
    }
    for (int b = 0; b < 256; b++) t->bl_id[b] = -1;
    if (t->byte_level) qt_bpe_byte_level_init(t);

    // special tokens, longest text first
    len_id *sp = qt_malloc((size_t)n * sizeof(len_id));
    for (int i = 0; i < n; i++) {
        uint8_t ty = t->toks[i].type;
        if ((ty == TT_CONTROL || ty == TT_USER_DEFINED || ty == TT_UNKNOWN) && t->toks[i].text_len > 0)
            sp[t->n_special++] = (len_id){ t->toks[i].text_len, i };
    }
    qsort(sp, (size_t)t->n_special, sizeof(len_id), cmp_len_id);
    t->special = qt_malloc(((size_t)t->n_special + 1) * sizeof(int32_t));
    for (int i = 0; i < t->n_special; i++) t->special[i] = sp[i].id;
    qt_free(sp);
    if (!t->byte_level) build_pairs(t);
    return QT_OK;
}

void qt_tok_finish(qt_tokenizer *t) {
    // end of generation: eos, eot, eom and the control tokens llama.cpp knows by text
    if (t->eos >= 0) t->toks[t->eos].is_eog = 1;
    if (t->eot >= 0) t->toks[t->eot].is_eog = 1;
    if (t->eom >= 0) t->toks[t->eom].is_eog = 1;
    for (size_t k = 0; k < QT_ARRAY_LEN(EOG_TEXTS); k++) {
        int id = lookup(t, EOG_TEXTS[k], strlen(EOG_TEXTS[k]));
        if (id >= 0 && (t->toks[id].type == TT_CONTROL || t->toks[id].type == TT_USER_DEFINED))
            t->toks[id].is_eog = 1;
    }
}

// tokenizer.ggml.merges: "a b" strings in rank order (gpt2 vocabularies).
static int load_merges(qt_tokenizer *t, const qt_gguf *g) {
    const char *path = qt_gguf_path(g);
    const qt_gguf_kv *km = NULL;
    if (qt_gguf_get_arr(g, "tokenizer.ggml.merges", QT_GGUF_STRING, &km, true) != QT_OK) return QT_ERR;
    uint64_t nm = km->v.arr.n;
    if (nm > (uint64_t)INT32_MAX / 4) {
        qt_log_error("%s: key tokenizer.ggml.merges: bad merge count %llu", path, (unsigned long long)nm);
        return QT_ERR;
    }
    qt_bpe_merges_init(t, (int)nm);
    int n_skipped = 0;
    for (uint64_t i = 0; i < nm; i++) {
        const qt_gguf_str *s = &km->v.arr.strs[i];
        // split at the first space after the first byte, as llama.cpp
        const char *sp = s->len > 1 ? memchr(s->data + 1, ' ', s->len - 1) : NULL;
        if (!sp) {
            qt_log_error("%s: key tokenizer.ggml.merges: merge %llu '%.*s' is not two tokens separated by a space",
                         path, (unsigned long long)i, (int)QT_MIN(s->len, 64), s->data);
            return QT_ERR;
        }
        size_t na = (size_t)(sp - s->data);
        if (qt_bpe_merge_add(t, s->data, na, sp + 1, s->len - na - 1) != QT_OK) n_skipped++;
    }
    if (n_skipped) qt_log_debug("%s: %d merges skipped: a part or the result is not a token", path, n_skipped);
    return QT_OK;
}

qt_tokenizer *qt_tokenizer_from_gguf(const qt_gguf *g) {
    const char *path = qt_gguf_path(g);
    qt_tokenizer *t = NULL;
    const char *model = NULL, *pre = NULL;
    const char **texts = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    if (qt_gguf_get_str(g, "tokenizer.ggml.model", &model, true) != QT_OK) return NULL;
    bool is_gpt2 = strcmp(model, "gpt2") == 0;
    if (strcmp(model, "llama") != 0 && !is_gpt2) {
        qt_log_error("%s: key tokenizer.ggml.model: tokenizer model '%s' not supported (supported: 'llama', 'gpt2')",
                     path, model);
        return NULL;
    }
    int pre_id = QT_PRE_DEFAULT;
    bool ignore_merges = false, add_bos_default = !is_gpt2;
    if (is_gpt2) {
        if (qt_gguf_get_str(g, "tokenizer.ggml.pre", &pre, false) != QT_OK) return NULL;
        if (!pre) {
            qt_log_warn("%s: no tokenizer.ggml.pre: using the 'default' pre-tokenizer (as llama.cpp); "
                        "tokenization may differ from the model's own", path);
        } else if ((pre_id = qt_pretok_from_name(pre, &ignore_merges, &add_bos_default)) < 0) {
            qt_log_error("%s: key tokenizer.ggml.pre: unknown pre-tokenizer '%s' (known: default, gpt-2, "
                         "llama-bpe, qwen2, smollm, deepseek-llm, deepseek-coder, falcon, mpt, starcoder, refact, "
                         "command-r, and their aliases)", path, pre);
            return NULL;
        }
    }
    const qt_gguf_kv *kt = NULL, *ks = NULL, *ky = NULL;
    if (qt_gguf_get_arr(g, "tokenizer.ggml.tokens", QT_GGUF_STRING, &kt, true) != QT_OK) return NULL;
    uint64_t n = kt->v.arr.n;
    if (n == 0 || n > (uint64_t)INT32_MAX / 2) {
        qt_log_error("%s: key tokenizer.ggml.tokens: bad token count %llu", path, (unsigned long long)n);
        return NULL;
    }
    // Scores drive every SPM merge: a llama vocabulary without them is not usable.
    if (qt_gguf_get_arr(g, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, &ks, !is_gpt2) != QT_OK) return NULL;
    if (ks && ks->v.arr.n != n) {
        qt_log_error("%s: key tokenizer.ggml.scores: %llu scores for %llu tokens", path,
                     (unsigned long long)ks->v.arr.n, (unsigned long long)n);
        return NULL;
    }
    if (qt_gguf_get_arr(g, "tokenizer.ggml.token_type", QT_GGUF_INT32, &ky, false) != QT_OK) return NULL;
    if (ky && ky->v.arr.n != n) {
        qt_log_error("%s: key tokenizer.ggml.token_type: %llu types for %llu tokens", path,
                     (unsigned long long)ky->v.arr.n, (unsigned long long)n);
        return NULL;
    }

    t = qt_calloc(1, sizeof(*t));
    t->kind = is_gpt2 ? TOK_BPE : TOK_SPM;
    t->byte_level = is_gpt2;
    t->pre = pre_id;
    t->ignore_merges = ignore_merges;
    texts = qt_malloc(n * sizeof(*texts));
    lens = qt_malloc(n * sizeof(*lens));
    if (ks) scores = qt_malloc(n * sizeof(float));
    if (ky) types = qt_malloc(n * sizeof(int32_t));
    for (uint64_t i = 0; i < n; i++) {
        const qt_gguf_str *s = &kt->v.arr.strs[i];
        texts[i] = s->data;
        lens[i] = s->len > UINT32_MAX ? UINT32_MAX : (uint32_t)s->len;
        if (ks) memcpy(&scores[i], ks->v.arr.data + 4 * i, 4);
        if (ky) memcpy(&types[i], ky->v.arr.data + 4 * i, 4);
    }
    int rc = qt_tok_build_vocab(t, path, (int)n, texts, lens, scores, types);
    qt_free(texts);
    qt_free(lens);
    qt_free(scores);
    qt_free(types);
    if (rc != QT_OK) goto fail;
    if (is_gpt2 && load_merges(t, g) != QT_OK) goto fail;

    // special ids: llama.cpp's defaults (SPM 0/1/2 if they exist; BPE none but
    // 11 for bos/eos as in its loader only when given), then the metadata
    if (is_gpt2) {
        t->unk = t->bos = t->eos = -1;
    } else {
        t->unk = n > 0 ? 0 : -1;
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
    }
    t->pad = t->eot = t->eom = -1;
    if (get_special_id(g, "tokenizer.ggml.bos_token_id", (int)n, &t->bos) != QT_OK ||
        get_special_id(g, "tokenizer.ggml.eos_token_id", (int)n, &t->eos) != QT_OK ||
        get_special_id(g, "tokenizer.ggml.unknown_token_id", (int)n, &t->unk) != QT_OK ||
        get_special_id(g, "tokenizer.ggml.padding_token_id", (int)n, &t->pad) != QT_OK ||
        get_special_id(g, "tokenizer.ggml.eot_token_id", (int)n, &t->eot) != QT_OK ||
        get_special_id(g, "tokenizer.ggml.eom_token_id", (int)n, &t->eom) != QT_OK)
        goto fail;
    t->add_bos = add_bos_default;
    t->add_eos = false;
    t->add_space_prefix = !is_gpt2;
    if (qt_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, false) != QT_OK ||
        qt_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, false) != QT_OK ||
        qt_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, false) != QT_OK)
        goto fail;
    if (t->add_bos && t->bos < 0) {
        qt_log_warn("%s: tokenizer.ggml.add_bos_token is set but there is no BOS token", path);
        t->add_bos = false;
    }
    qt_tok_finish(t);
    return t;

fail:
    qt_tokenizer_free(t);
    return NULL;
}

void qt_tokenizer_free(qt_tokenizer *t) {
    if (!t) return;
    qt_free(t->toks);
    qt_free(t->text);
    qt_free(t->pieces);
    qt_free(t->table);
    qt_free(t->special);
    qt_free(t->pair_key);
    qt_bpe_free(t);
    qt_free(t);
}

const char *qt_tokenizer_model_name(const qt_tokenizer *t) {
    if (t->kind == TOK_SPM) return "spm";
    return t->byte_level ? "bpe" : "bpe-spm";
}

const char *qt_tokenizer_pre_name(const qt_tokenizer *t) {
    return t->kind == TOK_BPE && t->byte_level ? qt_pretok_name(t->pre) : "";
}

int qt_tokenizer_n_vocab(const qt_tokenizer *t) { return t->n_vocab; }
int qt_tokenizer_bos(const qt_tokenizer *t) { return t->bos; }
int qt_tokenizer_eos(const qt_tokenizer *t) { return t->eos; }
int qt_tokenizer_unk(const qt_tokenizer *t) { return t->unk; }
int qt_tokenizer_pad(const qt_tokenizer *t) { return t->pad; }
bool qt_tokenizer_add_bos(const qt_tokenizer *t) { return t->add_bos; }
bool qt_tokenizer_add_eos(const qt_tokenizer *t) { return t->add_eos; }
bool qt_tokenizer_add_space_prefix(const qt_tokenizer *t) { return t->add_space_prefix; }
bool qt_tokenizer_is_eog(const qt_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && t->toks[id].is_eog;
}
int qt_tokenizer_find(const qt_tokenizer *t, const char *text, size_t len) { return lookup(t, text, len); }
float qt_token_score(const qt_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->toks[id].score : 0.0f;
}
int qt_token_type(const qt_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->toks[id].type : -1;
}

const char *qt_token_text(const qt_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_vocab) return "";
    return t->text + t->toks[id].text_off;
}

const char *qt_token_to_piece(const qt_tokenizer *t, int id, bool special, size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->n_vocab) return "";
    const tok_entry *e = &t->toks[id];
    if (e->type == TT_CONTROL && !special) return "";
    *len = e->piece_len;
    return t->pieces + e->piece_off;
}

// ---- encoding --------------------------------------------------------------

typedef qt_tok_sink id_sink;

void qt_tok_emit(qt_tok_sink *s, int id) {
    if (s->n < s->cap) s->out[s->n] = id;
    s->n++;
}
#define emit qt_tok_emit

typedef struct {
    int32_t start, n;    // bytes of the escaped text; n == 0: merged away
    int32_t prev, next;  // neighbours in the chain; -1 none
} symbol;

typedef struct {
    float score;
    int32_t left, right, size;
} bigram;

// heap order: higher score first, then leftmost
static bool bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bigram *a;
    size_t n, cap;
} heap;

static void heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->a = qt_realloc(h->a, h->cap * sizeof(bigram));
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
}

static bigram heap_pop(heap *h) {
    bigram top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->a[c + 1], &h->a[c])) c++;
        if (!bigram_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0) h->a[i] = last;
    return top;
}

typedef struct {
    const qt_tokenizer *t;
    const char *text;
    symbol *sym;
    heap h;
} spm_session;

static void try_add_bigram(spm_session *s, int left, int right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &s->sym[left], *r = &s->sym[right];
    int id = lookup(s->t, s->text + l->start, (size_t)l->n + (size_t)r->n);
    if (id < 0) return;
    bigram b = { s->t->toks[id].score, left, right, l->n + r->n };
    heap_push(&s->h, b);
}

// UTF-8 sequence length from the lead byte; continuation bytes count as 1
// (llama.cpp's unicode_len_utf8).
static int utf8_len(uint8_t c) {
    static const int lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lens[c >> 4];
}

// UTF-8 sequence length from the lead byte; continuation bytes count as 1
// (llama.cpp's unicode_len_utf8).
static int utf8_len(uint8_t c);

// A character packed as its bytes (at most 4). Pair keys get bit 63 set so
// that no key is 0 (the empty slot); a collision can only make a pair look
// possible, which costs speed, never correctness.
static uint32_t pack_char(const char *s, size_t l) {
    uint32_t v = 0;
    for (size_t i = 0; i < l; i++) v = (v << 8) | (uint8_t)s[i];
    return v;
}
#define PAIR_KEY(a, b) ((uint64_t)(a) << 32 | (b) | 1ull << 63)

static size_t char_len_at(const char *s, size_t n) {
    size_t l = (size_t)utf8_len((uint8_t)s[0]);
    return l > n ? n : l;
}

static uint32_t pair_slot(const qt_tokenizer *t, uint64_t key) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    uint32_t i = (uint32_t)(h >> 32) & t->pair_mask;
    while (t->pair_key[i] != 0 && t->pair_key[i] != key) i = (i + 1) & t->pair_mask;
    return i;
}

// The set of adjacent character pairs inside token texts (normal, user-defined
// and unknown tokens: anything a merge can produce).
static void build_pairs(qt_tokenizer *t) {
    size_t n_pairs = 0;
    for (int i = 0; i < t->n_vocab; i++) n_pairs += t->toks[i].text_len;
    uint32_t cap = 1024;
    while (cap < 2 * n_pairs) cap *= 2;
    t->pair_key = qt_calloc(cap, sizeof(uint64_t));
    t->pair_mask = cap - 1;
    for (int i = 0; i < t->n_vocab; i++) {
        const tok_entry *e = &t->toks[i];
        const char *s = t->text + e->text_off;
        size_t n = e->text_len;
        if (n == 0 || e->type == TT_BYTE || e->type == TT_CONTROL) continue;
        size_t l0 = char_len_at(s, n);
        for (size_t off = l0; off < n;) {
            size_t l1 = char_len_at(s + off, n - off);
            uint64_t key = PAIR_KEY(pack_char(s + off - l0, l0), pack_char(s + off, l1));
            t->pair_key[pair_slot(t, key)] = key;
            off += l1;
            l0 = l1;
        }
    }
}

size_t qt_tok_segment(const qt_tokenizer *t, const char *text, size_t n) {
    if (!t->pair_key) return n;
    size_t l0 = char_len_at(text, n);
    for (size_t off = l0; off < n;) {
        size_t l1 = char_len_at(text + off, n - off);
        uint64_t key = PAIR_KEY(pack_char(text + off - l0, l0), pack_char(text + off, l1));
        if (t->pair_key[pair_slot(t, key)] != key) return off;
        off += l1;
        l0 = l1;
    }
    return n;
}

static int spm_encode_segment(const qt_tokenizer *t, const char *text, size_t n, id_sink *out);

static int spm_encode(const qt_tokenizer *t, const char *text, size_t n, id_sink *out) {
    for (size_t off = 0; off < n;) {
        size_t l = qt_tok_segment(t, text + off, n - off);
        if (spm_encode_segment(t, text + off, l, out) != QT_OK) return QT_ERR;
        off += l;
    }
    return QT_OK;
}

static int spm_encode_segment(const qt_tokenizer *t, const char *text, size_t n, id_sink *out) {
    if (n == 0) return QT_OK;
    spm_session s = { t, text, qt_malloc(n * sizeof(symbol)), { 0 } };
    int n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t l = (size_t)utf8_len((uint8_t)text[off]);
        if (l > n - off) l = n - off;
        s.sym[n_sym] = (symbol){ (int32_t)off, (int32_t)l, n_sym - 1, off + l == n ? -1 : n_sym + 1 };
        off += l;
        n_sym++;
    }
    for (int i = 1; i < n_sym; i++) try_add_bigram(&s, i - 1, i);
    while (s.h.n > 0) {
        bigram b = heap_pop(&s.h);
        symbol *l = &s.sym[b.left], *r = &s.sym[b.right];
        // stale: one side was merged since this pair was queued
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s.sym[r->next].prev = b.left;
        try_add_bigram(&s, l->prev, b.left);
        try_add_bigram(&s, b.left, l->next);
    }
    int rc = QT_OK;
    for (int i = 0; i != -1; i = s.sym[i].next) {
        const symbol *sy = &s.sym[i];
        int id = lookup(t, text + sy->start, (size_t)sy->n);
        if (id >= 0) { emit(out, id); continue; }
        // Only single characters can be unknown: merges always form tokens.
        bool all_bytes = true;
        for (int j = 0; j < sy->n; j++) all_bytes &= t->byte_id[(uint8_t)text[sy->start + j]] >= 0;
        if (all_bytes) {
            for (int j = 0; j < sy->n; j++) emit(out, t->byte_id[(uint8_t)text[sy->start + j]]);
        } else if (t->unk >= 0) {
            emit(out, t->unk);
        } else {
            qt_log_error("tokenizer: cannot encode byte 0x%02x: no byte token and no unknown token",
                         (uint8_t)text[sy->start]);
            rc = QT_ERR;
            break;
        }
    }
    qt_free(s.h.a);
    qt_free(s.sym);
    return rc;
}

// Escape spaces to U+2581, optionally with a leading one, and encode.
static int spm_fragment(const qt_tokenizer *t, const char *text, size_t n, bool prefix, id_sink *out,
                        char **buf, size_t *buf_cap) {
    size_t need = 3 * n + 3;
    if (need > *buf_cap) {
        *buf_cap = need;
        *buf = qt_realloc(*buf, need);
    }
    char *b = *buf;
    size_t m = 0;
    if (prefix) { memcpy(b, "\xe2\x96\x81", 3); m = 3; }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') { memcpy(b + m, "\xe2\x96\x81", 3); m += 3; }
        else b[m++] = text[i];
    }
    return spm_encode(t, b, m, out);
}

typedef struct {
    size_t pos;
    int32_t id;
} special_match;

static int cmp_match(const void *a, const void *b) {
    const special_match *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int qt_tokenize(const qt_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                int32_t *out, int cap) {
    QT_ASSERT(cap >= 0 && (out || cap == 0) && (text || len == 0));
    // every byte is at most one token (plus prefix, BOS): keep counts in int
    if (len > (size_t)INT32_MAX / 4) {
        qt_log_error("tokenizer: text of %zu bytes is too long to tokenize at once", len);
        return QT_ERR;
    }
    id_sink sink = { out, cap, 0 };
    if (add_bos && t->bos >= 0) emit(&sink, t->bos);

    // Cut special-token texts out first: longest token first, each claiming the
    // leftmost unclaimed occurrences, as llama.cpp's tokenizer_st_partition.
    special_match *m = NULL;
    size_t n_m = 0, m_cap = 0;
    uint8_t *claimed = NULL;
    for (int k = 0; k < t->n_special && len > 0; k++) {
        const tok_entry *e = &t->toks[t->special[k]];
        if (!parse_special && e->type != TT_USER_DEFINED) continue;
        const char *needle = t->text + e->text_off;
        size_t nl = e->text_len;
        if (nl > len) continue;
        size_t pos = 0;
        while (pos + nl <= len) {
            const char *hit = memmem(text + pos, len - pos, needle, nl);
            if (!hit) break;
            size_t p = (size_t)(hit - text);
            if (!claimed) claimed = qt_calloc(len, 1);
            bool free_run = true;
            for (size_t j = 0; j < nl && free_run; j++) free_run = !claimed[p + j];
            if (!free_run) { pos = p + 1; continue; }
            memset(claimed + p, 1, nl);
            if (n_m == m_cap) {
                m_cap = m_cap ? 2 * m_cap : 16;
                m = qt_realloc(m, m_cap * sizeof(*m));
            }
            m[n_m++] = (special_match){ p, t->special[k] };
            pos = p + nl;
        }
    }
    if (n_m > 1) qsort(m, n_m, sizeof(*m), cmp_match);

    char *buf = NULL;
    size_t buf_cap = 0;
    int rc = QT_OK;
    bool prev_special = true;   // the space prefix goes at the start and after special tokens
    size_t pos = 0;
    for (size_t k = 0; k <= n_m && rc == QT_OK; k++) {
        size_t end = k < n_m ? m[k].pos : len;
        if (end > pos) {
            bool prefix = t->add_space_prefix && prev_special;
            if (t->kind == TOK_SPM) rc = spm_fragment(t, text + pos, end - pos, prefix, &sink, &buf, &buf_cap);
            else rc = qt_bpe_encode_fragment(t, text + pos, end - pos, prefix, &sink);
            prev_special = false;
        }
        if (k < n_m) {
            emit(&sink, m[k].id);
            prev_special = true;
            pos = end + t->toks[m[k].id].text_len;
        }
    }
    qt_free(buf);
    qt_free(m);
    qt_free(claimed);
    if (rc != QT_OK) return rc;
    return (int)sink.n;
}

// ---- streaming detokenizer --------------------------------------------------

typedef struct {
    char *p;
    size_t cap, n;
} byte_out;

static void put(byte_out *o, const char *s, size_t n) {
    for (size_t i = 0; i < n && o->n < o->cap; i++) o->p[o->n++] = s[i];
}

static void put_fffd(byte_out *o) { put(o, "\xef\xbf\xbd", 3); }

// Expected sequence length for a lead byte; 0 if the byte cannot start one.
static int lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

// Is c a valid byte at position i (>= 1) of a sequence that starts with lead?
// (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF.)
static bool cont_ok(uint8_t lead, int i, uint8_t c) {
    if (i == 1) {
        if (lead == 0xe0) return c >= 0xa0 && c <= 0xbf;
        if (lead == 0xed) return c >= 0x80 && c <= 0x9f;
        if (lead == 0xf0) return c >= 0x90 && c <= 0xbf;
        if (lead == 0xf4) return c >= 0x80 && c <= 0x8f;
    }
    return c >= 0x80 && c <= 0xbf;
}

static void detok_byte(qt_detok *d, uint8_t c, byte_out *o) {
    for (;;) {
        if (d->n_pending == 0) {
            int l = lead_len(c);
            if (l == 1) { put(o, (const char *)&c, 1); return; }
            if (l == 0) { put_fffd(o); return; }
            d->pending[d->n_pending++] = c;
            return;
        }
        if (cont_ok(d->pending[0], d->n_pending, c)) {
            d->pending[d->n_pending++] = c;
            if (d->n_pending == lead_len(d->pending[0])) {
                put(o, (const char *)d->pending, (size_t)d->n_pending);
                d->n_pending = 0;
            }
            return;
        }
        // the held prefix is a maximal invalid subpart: one U+FFFD, then c afresh
        put_fffd(o);
        d->n_pending = 0;
    }
}

void qt_detok_init(qt_detok *d) {
    memset(d, 0, sizeof(*d));
    d->at_start = true;
}

size_t qt_detok_push(qt_detok *d, const qt_tokenizer *t, int id, char *out, size_t cap) {
    byte_out o = { out, cap, 0 };
    if (id == t->bos) { d->at_start = true; return 0; }
    size_t n = 0;
    const char *p = qt_token_to_piece(t, id, false, &n);
    if (n == 0) return 0;
    if (d->at_start) {
        d->at_start = false;
        if (t->add_space_prefix && p[0] == ' ') { p++; n--; }
    }
    for (size_t i = 0; i < n; i++) detok_byte(d, (uint8_t)p[i], &o);
    return o.n;
}

size_t qt_detok_flush(qt_detok *d, char *out, size_t cap) {
    byte_out o = { out, cap, 0 };
    if (d->n_pending > 0) put_fffd(&o);
    d->n_pending = 0;
    return o.n;
}
