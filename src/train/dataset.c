// dataset.c: JSONL training data -> token ids + training mask; the mlx-lm
// folder layout (train/valid/test.jsonl); a deterministic, resumable
// length-bucketing batcher.
//
// Follows mlx-lm's lora data formats (mlx_lm/tuner/datasets.py: text,
// prompt/completion, chat messages; mask_prompt) and the Llama-2 chat template
// of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json (other templates:
// tokenizer/chat-template.c renders them, with the answers marked). Tokenization
// follows llama.cpp's tokenizing of a rendered conversation with special
// tokens parsed: every text run between two special tokens is tokenized on its
// own (with the SPM space prefix), the template's <s>/</s> are the BOS/EOS ids.
// Prompt/answer boundaries inside a run are found as mlx-lm does: the answer
// starts where the tokens of the run's prompt part stop agreeing with the
// tokens of the whole run.
//
// Deliberately not here: packing several records into one sequence, streaming
// datasets larger than memory.
#include "train/dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"

qt_data_opts qt_data_defaults(void) {
    return (qt_data_opts){
        .max_seq_len = 2048,
        .mask_prompt = false,
        .skip_bad_lines = false,
        .chat_template = NULL,
        .add_eos = true,
        .parse_special = false,
    };
}

// ---- UTF-8 and strings ------------------------------------------------------

// Offset of the first byte that is not part of a valid UTF-8 sequence (Unicode
// Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF), or n.
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        int len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else return i;
        if (i + (size_t)len > n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
        i += (size_t)len;
    }
    return n;
}

// Python's str.strip() (what the Jinja template's .strip() does): removes the
// code points str.isspace() accepts, ASCII and Unicode (U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
static bool is_space(char c) { return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20); }

// Byte length of the whitespace code point that s (n bytes) starts with, 0 if none.
static size_t space_at(const char *p, size_t n) {
    const uint8_t *s = (const uint8_t *)p;
    if (n >= 1 && is_space((char)s[0])) return 1;
    if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n >= 3) {
        uint32_t c = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
        if (c == 0xe19a80 || (c >= 0xe28080 && c <= 0xe2808a) || c == 0xe280a8 || c == 0xe280a9 || c == 0xe280af ||
            c == 0xe2819f || c == 0xe38080)
            return 3;
    }
    return 0;
}

static void strip(const char **s, size_t *n) {
    size_t k;
    while ((k = space_at(*s, *n)) > 0) { *s += k; *n -= k; }
    for (bool more = true; more;) {
        more = false;
        for (size_t l = 1; l <= 3 && l <= *n; l++) {
            if (space_at(*s + *n - l, l) == l) { *n -= l; more = true; break; }
        }
    }
}

// ---- rendering: a record as runs of text and special tokens ------------------

enum { SEG_TEXT, SEG_BOS, SEG_EOS };

typedef struct {
    int kind;
    size_t off, n;   // SEG_TEXT: bytes [off, off + n) of the render's buffer
    bool train;      // an answer part (trained under mask_prompt)
} seg;

typedef struct {
    char *s;         // all text segments, appended in order (so a run of text segments is contiguous)
    size_t n, cap;
    seg *segs;
    int n_segs, cap_segs;
    bool special;    // tokenize the text with special-token parsing
} render;

static void r_reset(render *r) { r->n = 0; r->n_segs = 0; r->special = false; }

static void r_free(render *r) {
    qt_free(r->s);
    qt_free(r->segs);
    memset(r, 0, sizeof(*r));
}

static seg *r_push(render *r) {
    if (r->n_segs == r->cap_segs) {
        r->cap_segs = r->cap_segs ? 2 * r->cap_segs : 16;
        r->segs = qt_realloc(r->segs, (size_t)r->cap_segs * sizeof(seg));
    }
    return &r->segs[r->n_segs++];
}

// Appends text; joins the previous text segment when the train flag is the same.
static void r_text(render *r, const char *s, size_t n, bool train) {
    if (n == 0) return;
    if (r->n + n + 1 > r->cap) {
        r->cap = QT_MAX(2 * r->cap, r->n + n + 1);
        r->s = qt_realloc(r->s, r->cap);
    }
    memcpy(r->s + r->n, s, n);
    seg *last = r->n_segs ? &r->segs[r->n_segs - 1] : NULL;
    if (last && last->kind == SEG_TEXT && last->train == train && last->off + last->n == r->n) {
        last->n += n;
    } else {
        seg *g = r_push(r);
        *g = (seg){ SEG_TEXT, r->n, n, train };
    }
    r->n += n;
}

static void r_str(render *r, const char *s, bool train) { r_text(r, s, strlen(s), train); }

static void r_special(render *r, int kind, bool train) {
    seg *g = r_push(r);
    *g = (seg){ kind, 0, 0, train };
}

static bool is_llama2_template(const char *tmpl) {
    return !tmpl || strcmp(tmpl, "llama2") == 0 || strcmp(tmpl, "llama-2") == 0;
}

// Llama-2 chat template (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json):
//   {% if messages[0]['role'] == 'system' %} system_message = messages[0] ...
//   user:      bos_token + '[INST] ' + content.strip() + ' [/INST]'
//              (first user turn: content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content)
//   assistant: ' ' + content.strip() + ' ' + eos_token
// On error writes a message to err and returns QT_ERR.
static int render_llama2(render *r, const qt_chat_msg *m, int n, char *err, size_t err_cap) {
    if (n <= 0) { snprintf(err, err_cap, "\"messages\" is empty"); return QT_ERR; }
    for (int i = 0; i < n; i++) {
        const char *role = m[i].role;
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            snprintf(err, err_cap, "messages[%d]: unknown role \"%.40s\" (expected \"system\", \"user\" or \"assistant\")",
                     i, role);
            return QT_ERR;
        }
    }
    int i0 = 0;
    const char *sys = NULL;
    if (strcmp(m[0].role, "system") == 0) { sys = m[0].content; i0 = 1; }
    if (i0 == n) { snprintf(err, err_cap, "a system message with no user message after it"); return QT_ERR; }
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (int i = i0; i < n; i++) {
        bool user_turn = (i - i0) % 2 == 0;
        const char *want = user_turn ? "user" : "assistant";
        if (strcmp(m[i].role, want) != 0) {
            snprintf(err, err_cap, "messages[%d]: role \"%s\" where \"%s\" was expected (the Llama-2 template takes an "
                     "optional system message, then user and assistant alternating, user first)", i, m[i].role, want);
            qt_free(tmp);
            return QT_ERR;
        }
        const char *c = m[i].content;
        size_t cn = strlen(c);
        if (user_turn && i == i0 && sys) {
            static const char a[] = "<<SYS>>\n", b[] = "\n<</SYS>>\n\n";
            size_t sn = strlen(sys), need = sizeof(a) - 1 + sn + sizeof(b) - 1 + cn;
            if (need > tmp_cap) { tmp_cap = need; tmp = qt_realloc(tmp, tmp_cap); }
            memcpy(tmp, a, sizeof(a) - 1);
            memcpy(tmp + sizeof(a) - 1, sys, sn);
            memcpy(tmp + sizeof(a) - 1 + sn, b, sizeof(b) - 1);
            memcpy(tmp + sizeof(a) - 1 + sn + sizeof(b) - 1, c, cn);
            c = tmp;
            cn = need;
        }
        strip(&c, &cn);
        if (user_turn) {
            r_special(r, SEG_BOS, false);
            r_str(r, "[INST] ", false);
            r_text(r, c, cn, false);
            r_str(r, " [/INST]", false);
        } else {
            r_str(r, " ", true);
            r_text(r, c, cn, true);
            r_str(r, " ", true);
            r_special(r, SEG_EOS, true);
        }
    }
    qt_free(tmp);
    return QT_OK;
}

// Other families: tokenizer/chat-template.c renders the text and marks the
// assistant answers; the whole text is tokenized with special-token parsing.
static int render_family(render *r, const char *tmpl, const qt_tokenizer *tok, const qt_chat_msg *m, int n, char *err,
                         size_t err_cap) {
    qt_chat_template t;
    if (qt_chat_family_from_name(tmpl) < 0 || qt_chat_template_init(&t, NULL, tmpl) != QT_OK) {
        snprintf(err, err_cap, "chat template \"%.60s\" is not supported yet (qtune renders: %s)", tmpl, qt_chat_family_list());
        return QT_ERR;
    }
    int bos = tok ? qt_tokenizer_bos(tok) : -1, eos = tok ? qt_tokenizer_eos(tok) : -1;
    const char *bos_text = bos >= 0 ? qt_token_text(tok, bos) : tok ? "" : "<s>";
    const char *eos_text = eos >= 0 ? qt_token_text(tok, eos) : tok ? "" : "</s>";
    size_t len = 0;
    qt_chat_span *sp = NULL;
    int nsp = 0;
    char *text = qt_chat_render_family(&t, m, n, bos_text, eos_text, false, &len, &sp, &nsp, err, err_cap);
    qt_chat_template_free(&t);
    if (!text) return QT_ERR;
    r->special = true;
    size_t at = 0;
    for (int i = 0; i < nsp; i++) {
        r_text(r, text + at, sp[i].off - at, false);
        r_text(r, text + sp[i].off, sp[i].len, true);
        at = sp[i].off + sp[i].len;
    }
    r_text(r, text + at, len - at, false);
    qt_free(text);
    qt_free(sp);
    return QT_OK;
}

static int render_chat(render *r, const char *tmpl, const qt_tokenizer *tok, const qt_chat_msg *m, int n, char *err,
                       size_t err_cap) {
    if (!is_llama2_template(tmpl)) return render_family(r, tmpl, tok, m, n, err, err_cap);
    return render_llama2(r, m, n, err, err_cap);
}

char *qt_chat_render(const char *chat_template, const qt_chat_msg *msgs, int n) {
    render r = {0};
    char err[512];
    if (render_chat(&r, chat_template, NULL, msgs, n, err, sizeof(err)) != QT_OK) {
        qt_log_error("chat: %s", err);
        r_free(&r);
        return NULL;
    }
    size_t len = 0;
    for (int i = 0; i < r.n_segs; i++) len += r.segs[i].kind == SEG_TEXT ? r.segs[i].n : 4;
    char *out = qt_malloc(len + 1), *p = out;
    for (int i = 0; i < r.n_segs; i++) {
        const seg *g = &r.segs[i];
        const char *s = g->kind == SEG_BOS ? "<s>" : g->kind == SEG_EOS ? "</s>" : r.s + g->off;
        size_t k = g->kind == SEG_TEXT ? g->n : strlen(s);
        memcpy(p, s, k);
        p += k;
    }
    *p = 0;
    r_free(&r);
    return out;
}

// ---- tokenizing a render ----------------------------------------------------

typedef struct {
    int32_t *tok;
    uint8_t *train;
    int n, cap;
} tokbuf;

static void tb_reserve(tokbuf *b, int extra) {
    if (b->n + extra <= b->cap) return;
    b->cap = QT_MAX(2 * b->cap, b->n + extra);
    b->tok = qt_realloc(b->tok, (size_t)b->cap * sizeof(int32_t));
    b->train = qt_realloc(b->train, (size_t)b->cap);
}

static void tb_push(tokbuf *b, int32_t id, bool train) {
    tb_reserve(b, 1);
    b->tok[b->n] = id;
    b->train[b->n] = train;
    b->n++;
}

static void tb_free(tokbuf *b) {
    qt_free(b->tok);
    qt_free(b->train);
    memset(b, 0, sizeof(*b));
}

// Tokenizes into *buf (grown as needed); returns the count or QT_ERR.
static int tokenize_grow(const qt_tokenizer *tok, const char *s, size_t n, bool special, int32_t **buf, int *cap) {
    int need = qt_tokenize(tok, s, n, false, special, *buf, *cap);
    if (need < 0) return QT_ERR;
    if (need > *cap) {
        *cap = need;
        *buf = qt_realloc(*buf, (size_t)need * sizeof(int32_t));
        need = qt_tokenize(tok, s, n, false, special, *buf, *cap);
        if (need < 0) return QT_ERR;
    }
    return need;
}

// Appends the tokens of a render to b. A run of text segments is tokenized as
// one piece; the tokens of its segments are told apart by tokenizing each
// prefix of the run: segment j starts where the prefix ending before it stops
// agreeing with the whole run.
static int encode_render(const render *r, const qt_tokenizer *tok, tokbuf *b) {
    int32_t *full = NULL, *part = NULL;
    int full_cap = 0, part_cap = 0, rc = QT_OK;
    for (int i = 0; i < r->n_segs && rc == QT_OK;) {
        const seg *g = &r->segs[i];
        if (g->kind != SEG_TEXT) {
            int id = g->kind == SEG_BOS ? qt_tokenizer_bos(tok) : qt_tokenizer_eos(tok);
            if (id >= 0) tb_push(b, id, g->train);
            i++;
            continue;
        }
        int j = i;
        while (j < r->n_segs && r->segs[j].kind == SEG_TEXT) j++;
        size_t start = g->off, end = r->segs[j - 1].off + r->segs[j - 1].n;
        int nf = tokenize_grow(tok, r->s + start, end - start, r->special, &full, &full_cap);
        if (nf < 0) { rc = QT_ERR; break; }
        tb_reserve(b, nf);
        int from = 0;   // first token of segment k
        for (int k = i; k < j; k++) {
            int to = nf;
            if (k + 1 < j) {
                size_t cut = r->segs[k + 1].off;
                int np = tokenize_grow(tok, r->s + start, cut - start, r->special, &part, &part_cap);
                if (np < 0) { rc = QT_ERR; break; }
                to = 0;
                while (to < np && to < nf && part[to] == full[to]) to++;
                if (to < from) to = from;
            }
            for (int t = from; t < to; t++) {
                b->tok[b->n] = full[t];
                b->train[b->n] = r->segs[k].train;
                b->n++;
            }
            from = to;
        }
        i = j;
    }
    qt_free(full);
    qt_free(part);
    return rc;
}

int qt_chat_encode(const qt_tokenizer *tok, const char *chat_template, const qt_chat_msg *msgs, int n,
                   bool mask_prompt, int32_t **tokens, uint8_t **train) {
    render r = {0};
    tokbuf b = {0};
    char err[512];
    *tokens = NULL;
    *train = NULL;
    if (render_chat(&r, chat_template, tok, msgs, n, err, sizeof(err)) != QT_OK) {
        qt_log_error("chat: %s", err);
        r_free(&r);
        return QT_ERR;
    }
    int rc = encode_render(&r, tok, &b);
    r_free(&r);
    if (rc != QT_OK) { tb_free(&b); return QT_ERR; }
    tb_reserve(&b, 1);
    for (int i = 0; i < b.n; i++) b.train[i] = i > 0 && (b.train[i] || !mask_prompt);
    *tokens = b.tok;
    *train = b.train;
    return b.n;
}

// ---- loading ----------------------------------------------------------------

enum { FORM_NONE, FORM_TEXT, FORM_COMPLETION, FORM_CHAT };
static const char *form_name[] = { "?", "\"text\"", "\"prompt\"/\"completion\"", "\"messages\"" };

struct qt_dataset {
    qt_example *ex;   // (n) pointers into tok / train, set when loading ends
    int64_t *off;     // (n) start of each example in tok / train
    int *line;        // (n) source line
    int n, cap;
    int32_t *tok;     // (n_tok) all examples' tokens, back to back
    uint8_t *train;   // (n_tok)
    int64_t n_tok, cap_tok, n_train;
    int n_truncated, n_skipped, max_len;
};

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

long qt_data_answer_start(const char *text, const char *marker) {
    size_t ml = strlen(marker);
    if (!ml) return -1;
    const char *last = NULL;
    for (const char *p = strstr(text, marker); p; p = strstr(p + 1, marker)) last = p;
    return last ? (long)(last - text + (long)ml) : -1;
}

// State of one load, shared by the per-line helpers.
typedef struct {
    const char *path;
    const qt_tokenizer *tok;
    const qt_data_opts *o;
    int form, form_line;      // the file's record form, set by its first good record
    bool warned_special;
    bool fatal;               // an error skip_bad_lines must not skip
    char err[768];
    render r;
    tokbuf b;
    qt_chat_msg *msgs;
    int cap_msgs;
} loader;

#define BAD(L, ...) (snprintf((L)->err, sizeof((L)->err), __VA_ARGS__), QT_ERR)

static int get_string(loader *L, const cJSON *obj, const char *key, const char *where, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return BAD(L, "%smissing key \"%s\"", where, key);
    if (!cJSON_IsString(v) || !v->valuestring) return BAD(L, "%s\"%s\" must be a string, got %s", where, key, json_type_name(v));
    *out = v->valuestring;
    return QT_OK;
}

// Warns once per file when the text holds the BOS/EOS token's text while it is
// read as plain text (a common mistake: data written for a tokenizer that
// parses special tokens).
static void check_special_text(loader *L, int line, int form, const char *s) {
    if (L->warned_special || L->r.special) return;
    int ids[2] = { qt_tokenizer_bos(L->tok), qt_tokenizer_eos(L->tok) };
    for (int k = 0; k < 2; k++) {
        if (ids[k] < 0) continue;
        const char *t = qt_token_text(L->tok, ids[k]);
        if (t && t[0] && strstr(s, t)) {
            qt_log_warn("%s:%d: the text contains \"%s\", which is trained as plain text, not as the %s token%s", L->path,
                        line, t, k == 0 ? "BOS" : "EOS",
                        form == FORM_CHAT ? "" : " (parse_special reads it as the token)");
            L->warned_special = true;
            return;
        }
    }
}

// Renders one parsed record into L->r.
static int render_record(loader *L, const cJSON *j, int line, int *form) {
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(j, "completion");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "messages");
    int n_forms = (jt != NULL) + (jp || jc) + (jm != NULL);
    if (n_forms == 0)
        return BAD(L, "missing key: a record needs \"text\", \"prompt\" and \"completion\", or \"messages\"");
    if (n_forms > 1)
        return BAD(L, "a record with keys of more than one form (\"text\", \"prompt\"/\"completion\", \"messages\"): which one is meant?");
    *form = jt ? FORM_TEXT : jm ? FORM_CHAT : FORM_COMPLETION;
    if (L->form != FORM_NONE && *form != L->form)
        return BAD(L, "a %s record, but line %d is a %s record: one file holds one form", form_name[*form], L->form_line,
                   form_name[L->form]);
    r_reset(&L->r);
    L->r.special = L->o->parse_special && *form != FORM_CHAT;
    if (*form == FORM_TEXT) {
        const char *s;
        if (get_string(L, j, "text", "", &s) != QT_OK) return QT_ERR;
        if (!s[0]) return BAD(L, "\"text\" is empty");
        check_special_text(L, line, *form, s);
        const char *rt = L->o->response_template;
        if (rt && rt[0]) {
            long at = qt_data_answer_start(s, rt);
            if (at < 0) return BAD(L, "the response template \"%s\" does not occur in the text", rt);
            r_text(&L->r, s, (size_t)at, false);
            r_str(&L->r, s + at, true);
        } else if (L->o->mask_prompt) {
            // which part is the answer? say how to tell, with a marker the text holds
            static const char *const markers[] = { "[/INST]", "<|im_start|>assistant", "<|assistant|>",
                                                   "<|start_header_id|>assistant<|end_header_id|>", "### Response:",
                                                   "<start_of_turn>model" };
            const char *seen = NULL;
            for (size_t k = 0; k < sizeof(markers) / sizeof(markers[0]) && !seen; k++)
                if (strstr(s, markers[k])) seen = markers[k];
            L->fatal = true;
            if (seen)
                return BAD(L, "--mask-prompt on \"text\" records needs the marker where the answer starts: add "
                           "--response-template \"%s\" (it occurs in this record)", seen);
            return BAD(L, "--mask-prompt on \"text\" records needs --response-template TEXT (the answer starts after "
                       "its last occurrence), or use \"prompt\"/\"completion\" records");
        } else {
            r_str(&L->r, s, true);
        }
    } else if (*form == FORM_COMPLETION) {
        const char *p, *c;
        if (get_string(L, j, "prompt", "", &p) != QT_OK || get_string(L, j, "completion", "", &c) != QT_OK) return QT_ERR;
        check_special_text(L, line, *form, p);
        check_special_text(L, line, *form, c);
        r_str(&L->r, p, false);
        r_str(&L->r, c, true);
    } else {
        if (!cJSON_IsArray(jm)) return BAD(L, "\"messages\" must be an array, got %s", json_type_name(jm));
        int n = cJSON_GetArraySize(jm);
        if (n == 0) return BAD(L, "\"messages\" is empty");
        if (n > L->cap_msgs) {
            L->cap_msgs = n;
            L->msgs = qt_realloc(L->msgs, (size_t)n * sizeof(qt_chat_msg));
        }
        int i = 0;
        for (const cJSON *m = jm->child; m; m = m->next, i++) {
            char where[32];
            snprintf(where, sizeof(where), "messages[%d]: ", i);
            if (!cJSON_IsObject(m)) return BAD(L, "%smust be an object, got %s", where, json_type_name(m));
            if (get_string(L, m, "role", where, &L->msgs[i].role) != QT_OK ||
                get_string(L, m, "content", where, &L->msgs[i].content) != QT_OK)
                return QT_ERR;
            check_special_text(L, line, *form, L->msgs[i].content);
        }
        if (!is_llama2_template(L->o->chat_template) && qt_chat_family_from_name(L->o->chat_template) < 0) L->fatal = true;
        if (render_chat(&L->r, L->o->chat_template, L->tok, L->msgs, n, L->err, sizeof(L->err)) != QT_OK) return QT_ERR;
    }
    return QT_OK;
}

// Parses, renders and tokenizes one non-blank line into L->b.
static int do_line(loader *L, char *s, size_t n, int line, int *form, bool *truncated) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == 0) return BAD(L, "NUL byte at column %zu", i + 1);
    size_t bad = utf8_invalid_at((const uint8_t *)s, n);
    if (bad < n) return BAD(L, "invalid UTF-8 at column %zu (byte 0x%02x)", bad + 1, (uint8_t)s[bad]);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(s, &end, true);
    if (!j) {
        size_t col = end && end >= s && end <= s + n ? (size_t)(end - s) + 1 : 0;
        return BAD(L, "invalid JSON at column %zu", col);
    }
    if (!cJSON_IsObject(j)) {
        int rc = BAD(L, "expected a JSON object, got %s", json_type_name(j));
        cJSON_Delete(j);
        return rc;
    }
    int rc = render_record(L, j, line, form);
    cJSON_Delete(j);
    if (rc != QT_OK) return rc;

    const qt_tokenizer *tok = L->tok;
    tokbuf *b = &L->b;
    b->n = 0;
    if (encode_render(&L->r, tok, b) != QT_OK) { L->fatal = true; return BAD(L, "tokenizer failed"); }
    if (*form != FORM_CHAT) {
        int bos = qt_tokenizer_bos(tok), eos = qt_tokenizer_eos(tok);
        // BOS unless the text (parse_special) already starts with it
        if (qt_tokenizer_add_bos(tok) && bos >= 0 && (b->n == 0 || b->tok[0] != bos)) {
            tb_reserve(b, 1);
            memmove(b->tok + 1, b->tok, (size_t)b->n * sizeof(int32_t));
            memmove(b->train + 1, b->train, (size_t)b->n);
            b->tok[0] = bos;
            b->train[0] = 0;
            b->n++;
        }
        if (L->o->add_eos && eos >= 0 && (b->n == 0 || b->tok[b->n - 1] != eos)) tb_push(b, eos, true);
    }
    *truncated = b->n > L->o->max_seq_len;
    int len_all = b->n;
    if (*truncated) b->n = L->o->max_seq_len;
    int n_train = 0;
    // a response template says where the answer starts: it implies the mask
    bool mask = L->o->mask_prompt || (*form == FORM_TEXT && L->o->response_template && L->o->response_template[0]);
    for (int i = 0; i < b->n; i++) {
        b->train[i] = i > 0 && (b->train[i] || !mask);
        n_train += b->train[i];
    }
    if (n_train == 0) {
        if (*truncated)
            return BAD(L, "no trainable tokens in the first %d (max_seq_len) of the record's %d tokens: the prompt "
                       "is too long (raise max_seq_len or shorten the prompt)", b->n, len_all);
        return BAD(L, "a record with no trainable tokens");
    }
    return QT_OK;
}

static void add_example(qt_dataset *d, const tokbuf *b, int line) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->off = qt_realloc(d->off, (size_t)d->cap * sizeof(int64_t));
        d->line = qt_realloc(d->line, (size_t)d->cap * sizeof(int));
    }
    if (d->n_tok + b->n > d->cap_tok) {
        d->cap_tok = QT_MAX(2 * d->cap_tok, d->n_tok + b->n);
        d->tok = qt_realloc(d->tok, (size_t)d->cap_tok * sizeof(int32_t));
        d->train = qt_realloc(d->train, (size_t)d->cap_tok);
    }
    memcpy(d->tok + d->n_tok, b->tok, (size_t)b->n * sizeof(int32_t));
    memcpy(d->train + d->n_tok, b->train, (size_t)b->n);
    for (int i = 0; i < b->n; i++) d->n_train += b->train[i];
    d->off[d->n] = d->n_tok;
    d->line[d->n] = line;
    d->n++;
    d->n_tok += b->n;
    d->max_len = QT_MAX(d->max_len, b->n);
}

qt_dataset *qt_dataset_load(const char *path, const qt_tokenizer *tok, const qt_data_opts *opts) {
    QT_ASSERT(path && tok);
    qt_data_opts def = qt_data_defaults();
    const qt_data_opts *o = opts ? opts : &def;
    if (o->max_seq_len < 2) {
        qt_log_error("%s: max_seq_len %d is too small (at least 2 tokens)", path, o->max_seq_len);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        qt_log_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    qt_dataset *d = qt_calloc(1, sizeof(*d));
    loader L = { .path = path, .tok = tok, .o = o };
    char *s = NULL;
    size_t s_cap = 0;
    int line = 0, n_bad = 0;
    bool ok = true;
    ssize_t got;
    while ((got = getline(&s, &s_cap, f)) >= 0) {
        line++;
        size_t n = (size_t)got;
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
        char *p = s;
        if (line == 1 && n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) { p += 3; n -= 3; }  // UTF-8 byte order mark
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\f' || p[k] == '\v')) k++;
        if (k == n) continue;   // blank line
        int form = FORM_NONE;
        bool truncated = false;
        if (do_line(&L, p, n, line, &form, &truncated) != QT_OK) {
            if (!o->skip_bad_lines || L.fatal) {
                qt_log_error("%s:%d: %s", path, line, L.err);
                ok = false;
                break;
            }
            qt_log_warn("%s:%d: %s (line skipped)", path, line, L.err);
            n_bad++;
            continue;
        }
        if (L.form == FORM_NONE) { L.form = form; L.form_line = line; }
        if (truncated) d->n_truncated++;
        add_example(d, &L.b, line);
    }
    if (ok && ferror(f)) {
        qt_log_error("%s:%d: read error: %s", path, line + 1, strerror(errno));
        ok = false;
    }
    fclose(f);
    qt_free(s);
    r_free(&L.r);
    tb_free(&L.b);
    qt_free(L.msgs);
    d->n_skipped = n_bad;
    if (ok && d->n == 0) {
        if (n_bad) qt_log_error("%s: no usable records (%d bad lines skipped)", path, n_bad);
        else qt_log_error("%s: empty file (no records)", path);
        ok = false;
    }
    if (!ok) {
        qt_dataset_free(d);
        return NULL;
    }
    d->ex = qt_malloc((size_t)d->n * sizeof(qt_example));
    for (int i = 0; i < d->n; i++) {
        int64_t end = i + 1 < d->n ? d->off[i + 1] : d->n_tok;
        d->ex[i] = (qt_example){ d->tok + d->off[i], d->train + d->off[i], (int)(end - d->off[i]) };
    }
    if (n_bad) qt_log_warn("%s: skipped %d bad line%s", path, n_bad, n_bad == 1 ? "" : "s");
    if (d->n_truncated)
        qt_log_warn("%s: %d of %d records were longer than max_seq_len %d tokens and were truncated", path,
                    d->n_truncated, d->n, o->max_seq_len);
    return d;
}

void qt_dataset_free(qt_dataset *d) {
    if (!d) return;
    qt_free(d->ex);
    qt_free(d->off);
    qt_free(d->line);
    qt_free(d->tok);
    qt_free(d->train);
    qt_free(d);
}

int qt_dataset_n(const qt_dataset *d) { return d->n; }
const qt_example *qt_dataset_get(const qt_dataset *d, int i) {
    QT_ASSERT(i >= 0 && i < d->n);
    return &d->ex[i];
}
int qt_dataset_n_truncated(const qt_dataset *d) { return d->n_truncated; }
int qt_dataset_n_skipped(const qt_dataset *d) { return d->n_skipped; }
int64_t qt_dataset_n_tokens(const qt_dataset *d) { return d->n_tok; }
int64_t qt_dataset_n_train_tokens(const qt_dataset *d) { return d->n_train; }
int qt_dataset_max_len(const qt_dataset *d) { return d->max_len; }
int qt_dataset_line(const qt_dataset *d, int i) {
    QT_ASSERT(i >= 0 && i < d->n);
    return d->line[i];
}

// ---- data folder --------------------------------------------------------------

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = qt_malloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a == 0 || dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int qt_data_find_splits(const char *data, char **train, char **valid, char **test) {
    QT_ASSERT(data);
    char **outs[3] = { train, valid, test };
    for (int i = 0; i < 3; i++) if (outs[i]) *outs[i] = NULL;
    struct stat st;
    if (stat(data, &st) != 0) {
        qt_log_error("%s: %s (--data takes a folder with train.jsonl, valid.jsonl, test.jsonl, or one .jsonl file)", data,
                     strerror(errno));
        return QT_ERR;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (train) *train = qt_strdup(data);
        return QT_OK;
    }
    static const char *names[3] = { "train.jsonl", "valid.jsonl", "test.jsonl" };
    char *found[3];
    for (int i = 0; i < 3; i++) {
        found[i] = join(data, names[i]);
        if (!is_file(found[i])) { qt_free(found[i]); found[i] = NULL; }
    }
    if (!found[0]) {
        qt_log_error("%s: no train.jsonl in this folder (expected train.jsonl, and optionally valid.jsonl and test.jsonl)",
                     data);
        for (int i = 0; i < 3; i++) qt_free(found[i]);
        return QT_ERR;
    }
    for (int i = 0; i < 3; i++) {
        if (outs[i]) *outs[i] = found[i];
        else qt_free(found[i]);
    }
    return QT_OK;
}

// ---- batcher --------------------------------------------------------------------

struct qt_batcher {
    const qt_dataset *d;
    int batch_size, n, n_batches;
    uint64_t seed;
    bool shuffle;
    int *order;      // (n) example indices of the current epoch, bucketed
    int *bstart;     // (n_batches) start of each batch in order, in the epoch's batch order
    int64_t epoch;   // epoch that order/bstart describe (-1: none yet)
    int64_t step;    // batches handed out
};

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform in [0, n) without modulo bias (rejection).
static uint64_t rng_below(qt_rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = qt_rng_u64(r); while (x >= lim);
    return x % n;
}

static void shuffle_ints(qt_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int k = (int)rng_below(r, (uint64_t)i + 1);
        int t = a[i]; a[i] = a[k]; a[k] = t;
    }
}

typedef struct { int len, pos, idx; } sort_key;

static int cmp_key(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void plan_epoch(qt_batcher *b, int64_t epoch) {
    int n = b->n, B = b->batch_size;
    qt_rng r;   // unshuffled: the same plan every epoch
    qt_rng_seed(&r, splitmix64(b->seed) ^ splitmix64(0x5bd1e995ull + (uint64_t)(b->shuffle ? epoch : 0)));
    for (int i = 0; i < n; i++) b->order[i] = i;
    if (b->shuffle) shuffle_ints(&r, b->order, n);
    int64_t W = 50 * (int64_t)B;
    sort_key *k = qt_malloc((size_t)QT_MIN(W, (int64_t)n) * sizeof(sort_key));
    for (int64_t w0 = 0; w0 < n; w0 += W) {
        int m = (int)QT_MIN(W, n - w0);
        for (int i = 0; i < m; i++) {
            int idx = b->order[w0 + i];
            k[i] = (sort_key){ b->d->ex[idx].len, i, idx };
        }
        qsort(k, (size_t)m, sizeof(sort_key), cmp_key);
        for (int i = 0; i < m; i++) b->order[w0 + i] = k[i].idx;
    }
    qt_free(k);
    for (int i = 0; i < b->n_batches; i++) b->bstart[i] = i * B;
    // Batch order: shuffled. Unshuffled, still a fixed permutation, so that the
    // first k batches (validation on a few batches) sample the whole file rather
    // than its shortest records; the short batch stays last.
    if (b->shuffle) shuffle_ints(&r, b->bstart, b->n_batches);
    else shuffle_ints(&r, b->bstart, n % B ? b->n_batches - 1 : b->n_batches);
    b->epoch = epoch;
}

qt_batcher *qt_batcher_init(const qt_dataset *d, int batch_size, uint64_t seed, bool shuffle) {
    QT_ASSERT(d && d->n > 0 && batch_size >= 1);
    qt_batcher *b = qt_calloc(1, sizeof(*b));
    b->d = d;
    b->n = d->n;
    b->batch_size = batch_size;
    b->n_batches = (int)(((int64_t)d->n + batch_size - 1) / batch_size);
    b->seed = seed;
    b->shuffle = shuffle;
    b->order = qt_malloc((size_t)b->n * sizeof(int));
    b->bstart = qt_malloc((size_t)b->n_batches * sizeof(int));
    b->epoch = -1;
    return b;
}

void qt_batcher_free(qt_batcher *b) {
    if (!b) return;
    qt_free(b->order);
    qt_free(b->bstart);
    qt_free(b);
}

int qt_batcher_next(qt_batcher *b, int *idx) {
    int64_t epoch = b->step / b->n_batches;
    int k = (int)(b->step % b->n_batches);
    if (epoch != b->epoch) plan_epoch(b, epoch);
    int start = b->bstart[k], cnt = QT_MIN(b->batch_size, b->n - start);
    memcpy(idx, b->order + start, (size_t)cnt * sizeof(int));
    b->step++;
    return cnt;
}

void qt_batcher_seek(qt_batcher *b, int64_t step) {
    QT_ASSERT(step >= 0);
    b->step = step;   // the epoch's plan is (re)built lazily by the next call
}

int qt_batcher_n_per_epoch(const qt_batcher *b) { return b->n_batches; }
int64_t qt_batcher_step(const qt_batcher *b) { return b->step; }
