// tokenizer-json.c: a tokenizer from a Hugging Face model folder:
// tokenizer.json, plus tokenizer_config.json and special_tokens_map.json.
//
// Implements the subset of the `tokenizers` library's serialization that
// Llama-family models use (huggingface/tokenizers, tokenizers/src/
// {models/bpe, normalizers, pre_tokenizers, processors}):
//  - model "BPE": vocab {text: id}, merges as "a b" strings or [a, b] pairs,
//    unk_token, byte_fallback, ignore_merges;
//  - byte-level vocabularies: pre_tokenizer ByteLevel (GPT-2 regex), or a
//    Sequence of Split(Regex) / Digits and ByteLevel whose regex is one of the
//    families pretok.c implements (Llama 3, Qwen2, GPT-2; Digits = starcoder);
//  - SentencePiece-converted vocabularies: normalizer Prepend U+2581 +
//    Replace " " -> U+2581, or pre_tokenizer Metaspace;
//  - added_tokens: "special": true -> control token (parsed only with
//    parse_special), false -> user-defined (always recognised);
//  - BOS/EOS: tokenizer_config.json / special_tokens_map.json bos_token,
//    eos_token, unk_token, pad_token; add_bos_token / add_eos_token from
//    tokenizer_config.json, else from a TemplateProcessing post_processor.
//
// Deliberately not here: Unigram / WordPiece / WordLevel models, the NFC/NFKC
// normalizers (NFC is accepted and, as in llama.cpp, not applied), added-token
// lstrip/rstrip/single_word, BPE dropout, chat templates.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "tokenizer/tokenizer-impl.h"

#define MAX_VOCAB (1 << 24)

// The original regexes of tokenizer.json files, and the families they are.
static const struct { const char *regex; int pre; } KNOWN_SPLITS[] = {
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      QT_PRE_LLAMA3 },
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      QT_PRE_QWEN2 },
    { "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", QT_PRE_GPT2 },
};

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

// A token given as "text" or {"content": "text"}; NULL if absent/null.
static const char *token_text(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return json_str(v, "content");
    return NULL;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

// Parses a JSON file. NULL (logged) if it cannot be read or parsed.
static cJSON *read_json(const char *path) {
    size_t n = 0;
    char *s = qt_read_file(path, &n);
    if (!s) return NULL;
    const char *err = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &err, false);
    if (!j) {
        size_t at = err && err >= s && err <= s + n ? (size_t)(err - s) : 0;
        qt_log_error("%s: invalid JSON near byte %zu", path, at);
    }
    qt_free(s);
    return j;
}

// Items of a pre_tokenizer/normalizer/post_processor: the object itself, or the
// members of a Sequence (key "pretokenizers", "normalizers" or "processors").
static int flatten(const cJSON *o, const char *seq_key, const cJSON **out, int cap) {
    if (!cJSON_IsObject(o)) return 0;
    const char *type = json_str(o, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, seq_key)) n += flatten(it, seq_key, out + n, cap - n);
        return n;
    }
    if (cap <= 0) return 0;
    out[0] = o;
    return 1;
}

static int find_id(const qt_tokenizer *t, const char *s) { return s ? qt_tok_lookup(t, s, strlen(s)) : -1; }

typedef struct {
    const char *path;
    const char *dir_path;   // folder holding tokenizer.json
    cJSON *root, *config, *smap;
    char **texts;
    uint32_t *lens;
    int32_t *types;
    int n;
} hf_load;

// Sets *id from the token text named by key in the config files; QT_ERR if the text is not a token.
static int named_token(const qt_tokenizer *t, hf_load *L, const char *key, int *id) {
    const char *s = NULL, *src = NULL;
    if (L->config && (s = token_text(L->config, key))) src = "tokenizer_config.json";
    else if (L->smap && (s = token_text(L->smap, key))) src = "special_tokens_map.json";
    if (!s) return QT_OK;
    int v = find_id(t, s);
    if (v < 0) {
        qt_log_error("%s/%s: %s '%s' is not a token of the vocabulary", L->dir_path, src, key, s);
        return QT_ERR;
    }
    *id = v;
    return QT_OK;
}

static int set_text(hf_load *L, int id, const char *s, int type) {
    if (L->texts[id] && strcmp(L->texts[id], s) != 0 && type == TT_NORMAL) {
        qt_log_error("%s: model.vocab: id %d is used by '%s' and '%s'", L->path, id, L->texts[id], s);
        return QT_ERR;
    }
    L->texts[id] = (char *)s;
    L->lens[id] = (uint32_t)strlen(s);
    L->types[id] = type;
    return QT_OK;
}

// Pre-tokenizer and normalizer -> the tokenizer's flavour.
static int read_layout(qt_tokenizer *t, hf_load *L) {
    const cJSON *items[16], *norms[16];
    int n_pre = flatten(cJSON_GetObjectItemCaseSensitive(L->root, "pre_tokenizer"), "pretokenizers", items, 16);
    int n_norm = flatten(cJSON_GetObjectItemCaseSensitive(L->root, "normalizer"), "normalizers", norms, 16);
    bool prepend = false, replace = false;
    for (int i = 0; i < n_norm; i++) {
        const char *ty = json_str(norms[i], "type");
        if (!ty) ty = "(none)";
        if (strcmp(ty, "Prepend") == 0) {
            const char *p = json_str(norms[i], "prepend");
            if (!p || strcmp(p, "\xe2\x96\x81") != 0) goto bad_norm;
            prepend = true;
        } else if (strcmp(ty, "Replace") == 0) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(norms[i], "pattern");
            const char *from = json_str(pat, "String"), *to = json_str(norms[i], "content");
            if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, "\xe2\x96\x81") != 0) goto bad_norm;
            replace = true;
        } else if (strcmp(ty, "NFC") != 0) {
        bad_norm:
            qt_log_error("%s: normalizer: '%s' is not supported (only Prepend U+2581, Replace ' ' -> U+2581, NFC)",
                         L->path, ty);
            return QT_ERR;
        }
    }
    bool byte_level = false, use_regex = true, metaspace = false, digits = false;
    int split_pre = -1, n_split = 0;
    for (int i = 0; i < n_pre; i++) {
        const char *ty = json_str(items[i], "type");
        if (!ty) ty = "(none)";
        if (strcmp(ty, "ByteLevel") == 0) {
            byte_level = true;
            use_regex = json_bool(items[i], "use_regex", true);
            t->prefix_space = json_bool(items[i], "add_prefix_space", false);
        } else if (strcmp(ty, "Metaspace") == 0) {
            metaspace = true;
            const char *scheme = json_str(items[i], "prepend_scheme");
            t->add_space_prefix = scheme ? strcmp(scheme, "never") != 0 : json_bool(items[i], "add_prefix_space", true);
            t->metaspace_split = json_bool(items[i], "split", true);
        } else if (strcmp(ty, "Digits") == 0 && json_bool(items[i], "individual_digits", false)) {
            digits = true;
        } else if (strcmp(ty, "Split") == 0) {
            const char *rx = json_str(cJSON_GetObjectItemCaseSensitive(items[i], "pattern"), "Regex");
            const char *beh = json_str(items[i], "behavior");
            n_split++;
            for (size_t k = 0; rx && k < QT_ARRAY_LEN(KNOWN_SPLITS); k++)
                if (strcmp(rx, KNOWN_SPLITS[k].regex) == 0) split_pre = KNOWN_SPLITS[k].pre;
            if (split_pre < 0 || !beh || strcmp(beh, "Isolated") != 0 || json_bool(items[i], "invert", false)) {
                qt_log_error("%s: pre_tokenizer: Split with pattern '%.80s' (behavior %s) is not one we implement "
                             "(known: the GPT-2, Llama 3 and Qwen2 regexes, Isolated)",
                             L->path, rx ? rx : "(not a Regex)", beh ? beh : "(none)");
                return QT_ERR;
            }
        } else {
            qt_log_error("%s: pre_tokenizer: '%s' is not supported", L->path, ty);
            return QT_ERR;
        }
    }
    if (byte_level) {
        if (metaspace || prepend || replace) {
            qt_log_error("%s: pre_tokenizer: ByteLevel mixed with Metaspace/U+2581 normalizers is not supported", L->path);
            return QT_ERR;
        }
        t->byte_level = true;
        t->add_space_prefix = false;
        if (n_split == 1 && !use_regex && !digits) t->pre = split_pre;
        else if (n_split == 0 && use_regex && !digits) t->pre = QT_PRE_GPT2;
        else if (n_split == 0 && use_regex && digits) t->pre = QT_PRE_STARCODER;
        else {
            qt_log_error("%s: pre_tokenizer: this combination of Split/Digits/ByteLevel(use_regex=%s) is not supported",
                         L->path, use_regex ? "true" : "false");
            return QT_ERR;
        }
        return QT_OK;
    }
    if (n_split || digits) {
        qt_log_error("%s: pre_tokenizer: Split/Digits without ByteLevel is not supported", L->path);
        return QT_ERR;
    }
    if (metaspace || (prepend && replace) || replace) {
        if (!metaspace) t->add_space_prefix = prepend;
        t->byte_level = false;
        return QT_OK;
    }
    qt_log_error("%s: neither a ByteLevel pre_tokenizer nor SentencePiece-style U+2581 handling "
                 "(normalizer Prepend/Replace or Metaspace): layout not supported", L->path);
    return QT_ERR;
}

// An integer token id in [0, MAX_VOCAB): compared as a double (NaN fails) before any conversion.
static bool is_id(double v) { return v >= 0 && v < MAX_VOCAB && v == floor(v); }

static int read_vocab(hf_load *L, const cJSON *model) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        qt_log_error("%s: model.vocab: missing or not an object", L->path);
        return QT_ERR;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(L->root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added)) {
        qt_log_error("%s: added_tokens: not an array", L->path);
        return QT_ERR;
    }
    // ids must be integers in [0, MAX_VOCAB) (range-checked as doubles before any conversion); the
    // vocabulary size is the largest + 1
    double max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || !is_id(it->valuedouble)) {
            qt_log_error("%s: model.vocab: token '%.64s' has id %s (expected an integer in 0..%d)", L->path,
                         it->string ? it->string : "?", cJSON_IsNumber(it) ? "out of range" : "not a number",
                         MAX_VOCAB - 1);
            return QT_ERR;
        }
        if (it->valuedouble > max_id) max_id = it->valuedouble;
    }
    int k = 0;
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = json_str(it, "content");
        if (!cJSON_IsNumber(id) || !content || !is_id(id->valuedouble)) {
            qt_log_error("%s: added_tokens[%d]: needs an integer id in 0..%d and a string content", L->path, k,
                         MAX_VOCAB - 1);
            return QT_ERR;
        }
        if (id->valuedouble > max_id) max_id = id->valuedouble;
        k++;
    }
    if (max_id < 0) {
        qt_log_error("%s: model.vocab: empty vocabulary", L->path);
        return QT_ERR;
    }
    L->n = (int)max_id + 1;
    L->texts = qt_calloc((size_t)L->n, sizeof(char *));
    L->lens = qt_calloc((size_t)L->n, sizeof(uint32_t));
    L->types = qt_calloc((size_t)L->n, sizeof(int32_t));
    cJSON_ArrayForEach(it, vocab)
        if (set_text(L, (int)it->valuedouble, it->string, TT_NORMAL) != QT_OK) return QT_ERR;
    cJSON_ArrayForEach(it, added)
        set_text(L, (int)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble, json_str(it, "content"),
                 json_bool(it, "special", false) ? TT_CONTROL : TT_USER_DEFINED);
    return QT_OK;
}

static int read_merges(qt_tokenizer *t, hf_load *L, const cJSON *model) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) {
        qt_log_error("%s: model.merges: missing or not an array", L->path);
        return QT_ERR;
    }
    qt_bpe_merges_init(t, cJSON_GetArraySize(merges));
    int i = 0, n_skipped = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = s[0] ? strchr(s + 1, ' ') : NULL;
            if (sp) { a = s; na = (size_t)(sp - s); b = sp + 1; nb = strlen(b); }
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            b = it->child->next->valuestring;
            na = strlen(a);
            nb = strlen(b);
        }
        if (!a) {
            qt_log_error("%s: model.merges[%d]: not a string \"a b\" or a pair of strings", L->path, i);
            return QT_ERR;
        }
        if (qt_bpe_merge_add(t, a, na, b, nb) != QT_OK) n_skipped++;
        i++;
    }
    if (n_skipped) qt_log_debug("%s: %d merges skipped: a part or the result is not a token", L->path, n_skipped);
    return QT_OK;
}

// add_bos/add_eos and the ids from a TemplateProcessing post-processor
static void read_template(qt_tokenizer *t, hf_load *L, bool *has_bos, bool *has_eos) {
    const cJSON *items[8];
    int n = flatten(cJSON_GetObjectItemCaseSensitive(L->root, "post_processor"), "processors", items, 8);
    for (int i = 0; i < n; i++) {
        const char *ty = json_str(items[i], "type");
        if (!ty || strcmp(ty, "TemplateProcessing") != 0) continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(items[i], "single");
        int len = cJSON_GetArraySize(single);
        if (len < 1) continue;
        for (int end = 0; end < 2; end++) {
            const cJSON *e = cJSON_GetArrayItem(single, end ? len - 1 : 0);
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            if (!st) continue;
            int id = find_id(t, json_str(st, "id"));
            if (id < 0) continue;
            if (end) { *has_eos = true; if (t->eos < 0) t->eos = id; }
            else { *has_bos = true; if (t->bos < 0) t->bos = id; }
        }
    }
}

static cJSON *read_optional(const char *dir, const char *name, int *rc) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if (!file_exists(p)) return NULL;
    cJSON *j = read_json(p);
    if (!j) *rc = QT_ERR;
    else if (!cJSON_IsObject(j)) {
        qt_log_error("%s: not a JSON object", p);
        cJSON_Delete(j);
        j = NULL;
        *rc = QT_ERR;
    }
    return j;
}

qt_tokenizer *qt_tokenizer_from_hf(const char *dir) {
    char path[4096], folder[4096];
    size_t dl = strlen(dir);
    if (dl >= 5 && strcmp(dir + dl - 5, ".json") == 0 && file_exists(dir)) {
        snprintf(path, sizeof(path), "%s", dir);
        snprintf(folder, sizeof(folder), "%s", dir);
        char *slash = strrchr(folder, '/');
        if (slash) *slash = 0;
        else snprintf(folder, sizeof(folder), ".");
    } else {
        snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
        snprintf(folder, sizeof(folder), "%s", dir);
    }
    hf_load L = { path, folder, NULL, NULL, NULL, NULL, NULL, NULL, 0 };
    qt_tokenizer *t = NULL;
    int rc = QT_OK;
    if (!file_exists(path)) {
        qt_log_error("%s: no such file (a Hugging Face tokenizer needs tokenizer.json)", path);
        return NULL;
    }
    L.root = read_json(path);
    if (!L.root) return NULL;
    if (!cJSON_IsObject(L.root)) {
        qt_log_error("%s: not a JSON object", path);
        goto fail;
    }
    L.config = read_optional(folder, "tokenizer_config.json", &rc);
    L.smap = read_optional(folder, "special_tokens_map.json", &rc);
    if (rc != QT_OK) goto fail;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(L.root, "model");
    if (!cJSON_IsObject(model)) {
        qt_log_error("%s: model: missing or not an object", path);
        goto fail;
    }
    const char *mtype = json_str(model, "type");
    if (mtype && strcmp(mtype, "BPE") != 0) {
        qt_log_error("%s: model.type: '%s' is not supported (only BPE)", path, mtype);
        goto fail;
    }
    if (!mtype && !cJSON_GetObjectItemCaseSensitive(model, "merges")) {
        qt_log_error("%s: model.type: missing, and no merges (only BPE is supported)", path);
        goto fail;
    }
    const char *csp = json_str(model, "continuing_subword_prefix"), *ews = json_str(model, "end_of_word_suffix");
    if ((csp && *csp) || (ews && *ews)) {   // GPT-2's tokenizer.json has "" for both
        qt_log_error("%s: model: continuing_subword_prefix / end_of_word_suffix are not supported", path);
        goto fail;
    }
    t = qt_calloc(1, sizeof(*t));
    t->kind = TOK_BPE;
    t->bos = t->eos = t->unk = t->pad = t->eot = t->eom = -1;
    if (read_layout(t, &L) != QT_OK || read_vocab(&L, model) != QT_OK) goto fail;
    bool byte_fallback = json_bool(model, "byte_fallback", false);
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    const char *unk = json_str(model, "unk_token");
    for (int i = 0; i < L.n; i++) {
        if (!L.texts[i]) continue;
        if (unk && strcmp(L.texts[i], unk) == 0) L.types[i] = TT_UNKNOWN;
        else if (!t->byte_level && byte_fallback && L.types[i] == TT_NORMAL && L.lens[i] == 6 &&
                 strncmp(L.texts[i], "<0x", 3) == 0 && L.texts[i][5] == '>')
            L.types[i] = TT_BYTE;
    }
    if (qt_tok_build_vocab(t, path, L.n, (const char *const *)L.texts, L.lens, NULL, L.types) != QT_OK) goto fail;
    if (t->byte_level || !byte_fallback)
        for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    if (read_merges(t, &L, model) != QT_OK) goto fail;

    // special ids and BOS/EOS policy
    if (unk) {
        t->unk = find_id(t, unk);
        if (t->unk < 0) {
            qt_log_error("%s: model.unk_token: '%s' is not a token of the vocabulary", path, unk);
            goto fail;
        }
    }
    if (named_token(t, &L, "bos_token", &t->bos) != QT_OK || named_token(t, &L, "eos_token", &t->eos) != QT_OK ||
        named_token(t, &L, "unk_token", &t->unk) != QT_OK || named_token(t, &L, "pad_token", &t->pad) != QT_OK)
        goto fail;
    bool tmpl_bos = false, tmpl_eos = false;
    read_template(t, &L, &tmpl_bos, &tmpl_eos);
    t->add_bos = L.config ? json_bool(L.config, "add_bos_token", tmpl_bos) : tmpl_bos;
    t->add_eos = L.config ? json_bool(L.config, "add_eos_token", tmpl_eos) : tmpl_eos;
    if (t->add_bos && t->bos < 0) {
        qt_log_warn("%s: add_bos_token is set but there is no BOS token", path);
        t->add_bos = false;
    }
    qt_tok_finish(t);
    goto done;

fail:
    qt_tokenizer_free(t);
    t = NULL;
done:
    qt_free(L.texts);
    qt_free(L.lens);
    qt_free(L.types);
    cJSON_Delete(L.root);
    cJSON_Delete(L.config);
    cJSON_Delete(L.smap);
    return t;
}
