// gen.c: sessions over a KV cache and the generation loop shared by `qtune
// chat` and `qtune serve` (as tools/cmd-generate.c, plus cache reuse between
// prompts and stop strings). The cache-reuse rule is llama.cpp server's:
// keep the longest common token prefix, truncate, evaluate the rest.
// The loop is also offered one token at a time (qt_gen_begin/next/end) for
// the server, which batches several slots in one forward pass itself.
// Deliberately not here: context shifting inside one generation (the caller
// drops turns instead).
#include "server/gen.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"

char *qt_model_chat_template(const qt_model *m) { return qt_model_chat_template_named(m, "default"); }

char *qt_model_chat_template_named(const qt_model *m, const char *name) {
    bool dflt = !strcmp(name, "default");
    if (m->gguf) {
        char key[128];
        snprintf(key, sizeof(key), dflt ? "tokenizer.chat_template" : "tokenizer.chat_template.%s", name);
        const char *s = NULL;
        if (qt_gguf_get_str(m->gguf, key, &s, false) != QT_OK || !s) return NULL;
        return qt_strdup(s);
    }
    if (!m->path) return NULL;
    size_t n = strlen(m->path) + 32;
    char *path = qt_malloc(n);
    snprintf(path, n, "%s/tokenizer_config.json", m->path);
    char *text = access(path, F_OK) == 0 ? qt_read_file(path, NULL) : NULL;   // absent: no template, no error
    qt_free(path);
    if (!text) return NULL;
    char *out = NULL;
    cJSON *j = cJSON_Parse(text);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    if (cJSON_IsString(ct)) {
        if (dflt) out = qt_strdup(ct->valuestring);
    } else if (cJSON_IsArray(ct)) {   // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && strcmp(nm->valuestring, name) == 0 && cJSON_IsString(tpl) && !out)
                out = qt_strdup(tpl->valuestring);
        }
    }
    cJSON_Delete(j);
    qt_free(text);
    return out;
}

int qt_model_template_init(qt_chat_template *t, const qt_model *m, const char *override_name, const char *file) {
    if (file) return qt_chat_template_init_file(t, file);
    char *jinja = override_name ? NULL : qt_model_chat_template(m);
    int rc = qt_chat_template_init(t, jinja, override_name);
    qt_free(jinja);
    if (rc == QT_OK && !override_name) {   // transformers renders requests with tools with the "tool_use" variant
        char *tools = qt_model_chat_template_named(m, "tool_use");
        if (tools) qt_chat_template_add_tool_use(t, tools);
        qt_free(tools);
    }
    return rc;
}

int qt_text_tokenize(const qt_tokenizer *tk, const char *text, size_t len, bool add_bos, bool parse_special,
                     int32_t **out) {
    *out = NULL;
    int n = qt_tokenize(tk, text, len, add_bos, parse_special, NULL, 0);
    if (n < 0) return QT_ERR;
    *out = qt_malloc(sizeof(int32_t) * (size_t)(n + 1));
    qt_tokenize(tk, text, len, add_bos, parse_special, *out, n + 1);
    return n;
}

static const char *tok_text_or_empty(const qt_tokenizer *tk, int id) {
    if (id < 0) return "";
    const char *s = qt_token_text(tk, id);
    return s ? s : "";
}

int qt_chat_tokenize_json(const qt_model *m, const qt_chat_template *t, const cJSON *messages, const cJSON *tools,
                          const cJSON *documents, bool add_generation_prompt, int32_t **out, char **text_out, char *err,
                          size_t err_cap) {
    char ebuf[512];
    *out = NULL;
    if (text_out) *text_out = NULL;
    const qt_tokenizer *tk = m->tok;
    const char *bos = tok_text_or_empty(tk, qt_tokenizer_bos(tk));
    const char *eos = tok_text_or_empty(tk, qt_tokenizer_eos(tk));
    size_t len = 0;
    char *text = qt_chat_template_render(t, messages, tools, documents, bos, eos, add_generation_prompt, &len, ebuf,
                                         sizeof(ebuf));
    if (!text) {
        char d[128];
        if (err) snprintf(err, err_cap, "chat template %s: %s", qt_chat_template_describe(t, d, sizeof(d)), ebuf);
        else qt_log_error("chat template %s: %s", qt_chat_template_describe(t, d, sizeof(d)), ebuf);
        return QT_ERR;
    }
    int32_t *toks = NULL;
    int nt = qt_text_tokenize(tk, text, len, false, true, &toks);
    if (nt < 0) {
        if (err) snprintf(err, err_cap, "could not tokenize the conversation");
        qt_free(text);
        return QT_ERR;
    }
    int bos_id = qt_tokenizer_bos(tk);
    if (qt_tokenizer_add_bos(tk) && bos_id >= 0 && (nt == 0 || toks[0] != bos_id)) {
        toks = qt_realloc(toks, sizeof(int32_t) * (size_t)(nt + 2));
        memmove(toks + 1, toks, sizeof(int32_t) * (size_t)nt);
        toks[0] = bos_id;
        nt++;
    }
    if (text_out) *text_out = text;
    else qt_free(text);
    *out = toks;
    return nt;
}

int qt_chat_tokenize(const qt_model *m, const qt_chat_template *t, const qt_chat_msg *msgs, int n,
                     bool add_generation_prompt, int32_t **out, char **text_out, char *err, size_t err_cap) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", msgs[i].role);
        cJSON_AddStringToObject(o, "content", msgs[i].content);
        cJSON_AddItemToArray(arr, o);
    }
    int rc = qt_chat_tokenize_json(m, t, arr, NULL, NULL, add_generation_prompt, out, text_out, err, err_cap);
    cJSON_Delete(arr);
    return rc;
}

// ---- sessions ----------------------------------------------------------------

void qt_session_init(qt_session *s, qt_ctx *ctx) {
    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->cap = ctx->n_ctx;
    s->toks = qt_malloc(sizeof(int32_t) * (size_t)s->cap);
}

void qt_session_free(qt_session *s) {
    qt_free(s->toks);
    memset(s, 0, sizeof(*s));
}

void qt_session_reset(qt_session *s) { qt_ctx_truncate(s->ctx, 0); }

const float *qt_session_prefill(qt_session *s, const int32_t *prompt, int n, int *n_reused) {
    qt_ctx *c = s->ctx;
    if (n <= 0 || n > c->n_ctx) {
        qt_log_error("prompt of %d tokens does not fit the context of %d", n, c->n_ctx);
        return NULL;
    }
    int keep = 0;
    while (keep < qt_ctx_n_past(c, 0) && keep < n && s->toks[keep] == prompt[keep]) keep++;
    if (keep == n) keep = n - 1;   // the last token is evaluated again for its logits
    qt_ctx_truncate(c, keep);
    if (n_reused) *n_reused = keep;
    const float *logits = qt_ctx_eval(c, prompt + keep, n - keep);
    if (!logits) {
        qt_ctx_truncate(c, 0);
        return NULL;
    }
    memcpy(s->toks + keep, prompt + keep, sizeof(int32_t) * (size_t)(n - keep));
    return logits;
}

const float *qt_session_push(qt_session *s, int32_t tok) {
    qt_ctx *c = s->ctx;
    if (qt_ctx_n_past(c, 0) >= c->n_ctx) return NULL;
    int at = qt_ctx_n_past(c, 0);
    const float *logits = qt_ctx_eval(c, &tok, 1);
    if (logits) s->toks[at] = tok;
    return logits;
}

// ---- generation ----------------------------------------------------------------

// Length of the longest suffix of text[0..n) that is a proper prefix of a stop string.
static size_t partial_stop(const char *text, size_t n, const qt_gen_params *p) {
    size_t best = 0;
    for (int k = 0; k < p->n_stops; k++) {
        size_t sl = strlen(p->stops[k]);
        for (size_t l = QT_MIN(sl - 1, n); l > best; l--)
            if (memcmp(text + n - l, p->stops[k], l) == 0) { best = l; break; }
    }
    return best;
}

static bool is_stop_token(const qt_tokenizer *tk, int id, const qt_gen_params *p) {
    int type = qt_token_type(tk, id);
    if (type != 3 && type != 4) return false;   // control / user-defined tokens only
    const char *t = qt_token_text(tk, id);
    for (int k = 0; t && k < p->n_stops; k++)
        if (strcmp(t, p->stops[k]) == 0) return true;
    return false;
}

void qt_gen_begin(qt_gen *g, const qt_tokenizer *tk, int n_vocab, qt_sampler *smp, const int32_t *prompt, int n_prompt,
                  const qt_gen_params *p, qt_gen_text_fn cb, void *ud) {
    memset(g, 0, sizeof(*g));
    g->tk = tk;
    g->smp = smp;
    g->p = p;
    g->cb = cb;
    g->ud = ud;
    g->n_vocab = n_vocab;
    g->lg = qt_malloc(sizeof(float) * (size_t)n_vocab);
    for (int i = 0; i < n_prompt; i++) qt_sampler_accept(smp, prompt[i]);
    g->cap = 256;
    g->text = qt_malloc(g->cap);
    g->text[0] = 0;
    qt_detok_init(&g->dt);
    g->dt.at_start = false;
    g->t0 = qt_time_s();
}

bool qt_gen_next(qt_gen *g, const float *logits, int32_t *next_out) {
    const qt_gen_params *p = g->p;
    const qt_tokenizer *tk = g->tk;
    const qt_gen_hooks *h = p->hooks;
    const size_t nv = (size_t)g->n_vocab;
    if (g->stopped || g->aborted || g->i >= p->max_tokens) return false;
    g->i++;
    memcpy(g->lg, logits, sizeof(float) * nv);
    if (h && h->before_sample) {
        int go = h->before_sample(h->ud);
        if (go != QT_GEN_GO) {
            if (go == QT_GEN_STOP) g->stopped = true; else g->aborted = true;
            return false;
        }
    }
    int32_t next = qt_sampler_sample(g->smp, g->lg);
    if (h && h->allows && !h->allows(h->ud, next)) {   // outside the constraint: mask and draw again
        memcpy(g->lg, logits, sizeof(float) * nv);
        h->mask(h->ud, g->lg);
        next = qt_sampler_sample(g->smp, g->lg);
    }
    qt_sampler_accept(g->smp, next);
    qt_sampler_count(g->smp, next);
    if ((!p->ignore_eos && qt_tokenizer_is_eog(tk, next)) || is_stop_token(tk, next, p)) {
        g->stopped = true;
        return false;
    }
    if (h && h->on_token && !h->on_token(h->ud, next, logits)) {
        g->aborted = true;
        return false;
    }
    g->n_gen++;
    char piece[256];
    size_t k;
    const char *ctl = p->special_text && qt_token_type(tk, next) == 3 ? qt_token_text(tk, next) : NULL;
    if (ctl) {   // a control token's text (a tool-call marker), after any bytes held back
        k = qt_detok_flush(&g->dt, piece, sizeof(piece));
        size_t cl = strlen(ctl);
        if (k + cl < sizeof(piece)) { memcpy(piece + k, ctl, cl); k += cl; }
    } else {
        k = qt_detok_push(&g->dt, tk, next, piece, sizeof(piece));
    }
    if (g->len + k + 1 > g->cap) {
        g->cap = 2 * (g->len + k + 1);
        g->text = qt_realloc(g->text, g->cap);
    }
    memcpy(g->text + g->len, piece, k);
    g->len += k;
    g->text[g->len] = 0;
    // a stop string in the new text ends the answer before it
    size_t from = g->sent;
    for (int j = 0; j < p->n_stops && !g->stopped; j++) {
        const char *hit = strstr(g->text + (from > 64 ? from - 64 : 0), p->stops[j]);
        if (hit) {
            g->len = (size_t)(hit - g->text);
            g->text[g->len] = 0;
            g->stopped = true;
        }
    }
    size_t hold = g->stopped ? 0 : partial_stop(g->text, g->len, p);
    if (g->len - hold > g->sent) {
        if (g->cb && !g->cb(g->text + g->sent, g->len - hold - g->sent, g->ud)) g->aborted = true;
        g->sent = g->len - hold;
    }
    if (g->stopped || g->aborted) return false;
    if (g->i >= p->max_tokens) return false;   // (the last token is not evaluated: the next prompt does it)
    *next_out = next;
    return true;
}

void qt_gen_end(qt_gen *g, qt_gen_result *res) {
    if (!g->stopped && !g->aborted) {
        char piece[256];
        size_t k = qt_detok_flush(&g->dt, piece, sizeof(piece));
        if (g->len + k + 1 > g->cap) g->text = qt_realloc(g->text, g->cap = g->len + k + 1);
        memcpy(g->text + g->len, piece, k);
        g->len += k;
        g->text[g->len] = 0;
    }
    if (!g->aborted && g->len > g->sent && g->cb) g->cb(g->text + g->sent, g->len - g->sent, g->ud);
    qt_free(g->lg);
    res->text = g->text;
    res->len = g->len;
    res->n_gen = g->n_gen;
    res->finish = g->aborted ? "abort" : g->stopped ? "stop" : "length";
    res->t_gen = qt_time_s() - g->t0;
    memset(g, 0, sizeof(*g));
}

int qt_generate(qt_session *s, const qt_tokenizer *tk, qt_sampler *smp, const int32_t *prompt, int n_prompt,
                const qt_gen_params *p, qt_gen_text_fn cb, void *ud, qt_gen_result *res) {
    memset(res, 0, sizeof(*res));
    res->n_prompt = n_prompt;
    res->finish = "length";
    double t0 = qt_time_s();
    const float *logits = qt_session_prefill(s, prompt, n_prompt, &res->n_reused);
    if (!logits) return QT_ERR;
    res->t_prompt = qt_time_s() - t0;
    qt_gen g;
    qt_gen_begin(&g, tk, s->ctx->m->cfg.n_vocab, smp, prompt, n_prompt, p, cb, ud);
    int32_t next;
    while (qt_gen_next(&g, logits, &next)) {
        logits = qt_session_push(s, next);
        if (!logits) break;   // context full: "length"
    }
    qt_gen_end(&g, res);
    return QT_OK;
}

void qt_gen_result_free(qt_gen_result *r) {
    qt_free(r->text);
    r->text = NULL;
}
