// api.c: OpenAI request validation for the server (server-impl.h). Follows
// the OpenAI API reference (chat/completions, completions, embeddings) for
// names, types and ranges; llama-server for the extensions it shares (top_k,
// min_p, repeat_penalty, token-array prompts) and for BOS handling (a string
// prompt gets the vocabulary's BOS; token arrays are taken as given; a chat
// prompt starts with BOS when the vocabulary adds one). Every number is
// range-checked as a double before it is converted. Parameters the server
// does not implement, and unknown ones, are refused with a 400 naming them.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "server/gen.h"
#include "server/server-impl.h"

static int efail(qt_api_error *e, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int efail(qt_api_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    if (param) {
        snprintf(e->param_buf, sizeof(e->param_buf), "%s", param);
        e->param = e->param_buf;
    } else {
        e->param = NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return QT_ERR;
}

void qt_request_free(qt_request *r) {
    for (int i = 0; i < r->n_stops; i++) qt_free(r->stops[i]);
    qt_free(r->bias_ids);
    qt_free(r->bias);
    qt_free(r->prompt);
    qt_free(r->prompt_text);
    qt_grammar_free(r->grammar);
    cJSON_Delete(r->tools);
    for (int i = 0; i < r->n_inputs; i++) qt_free(r->inputs[i]);
    qt_free(r->inputs);
    qt_free(r->n_input);
    memset(r, 0, sizeof(*r));
}

// ---- numbers --------------------------------------------------------------------

// key absent or null: false. Present: a finite number in [lo, hi] (an integer
// when integer), else a 400. NaN and infinities never pass (the comparisons fail).
static bool get_num(const cJSON *b, const char *key, double lo, double hi, bool integer, double *out, qt_api_error *e,
                    int *rc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    if (!v || cJSON_IsNull(v)) return false;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !(d >= lo && d <= hi) || (integer && d != floor(d))) {
        if (integer) *rc = efail(e, 400, key, "%s must be an integer from %.17g to %.17g", key, lo, hi);
        else *rc = efail(e, 400, key, "%s must be a number from %g to %g", key, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool get_bool(const cJSON *b, const char *key, bool *out, qt_api_error *e, int *rc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    if (!v || cJSON_IsNull(v)) return false;
    if (!cJSON_IsBool(v)) {
        *rc = efail(e, 400, key, "%s must be a boolean", key);
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

// ---- parameters ------------------------------------------------------------------

static const char *const CHAT_KEYS[] = {
    "model", "messages", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "response_format", "seed", "stop", "stream", "stream_options", "temperature", "top_p",
    "tools", "tool_choice", "parallel_tool_calls", "user", "metadata", "store", "top_k", "min_p", "repeat_penalty",
    "repeat_last_n", NULL,
};
static const char *const COMPLETION_KEYS[] = {
    "model", "prompt", "best_of", "echo", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "max_tokens",
    "n", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user", "response_format", "top_k",
    "min_p", "repeat_penalty", "repeat_last_n", NULL,
};
static const char *const EMBEDDING_KEYS[] = { "model", "input", "encoding_format", "dimensions", "user", NULL };

static int check_keys(const cJSON *b, const char *const *keys, qt_api_error *e) {
    const cJSON *k;
    cJSON_ArrayForEach(k, b) {
        bool ok = false;
        for (int i = 0; keys[i] && !ok; i++) ok = k->string && !strcmp(k->string, keys[i]);
        if (!ok) return efail(e, 400, k->string, "Unrecognized request argument supplied: %s", k->string ? k->string : "?");
    }
    return QT_OK;
}

static int parse_sampling(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    int rc = QT_OK;
    double d;
    int n_vocab = a->m->cfg.n_vocab;
    r->sp = a->o->sampling;
    r->sp.seed = a->seed_base;
    if (get_num(b, "temperature", 0, 2, false, &d, e, &rc)) r->sp.temp = (float)d;
    if (rc) return rc;
    if (get_num(b, "top_p", 0, 1, false, &d, e, &rc)) {
        if (d == 0) return efail(e, 400, "top_p", "top_p must be greater than 0");
        r->sp.top_p = (float)d;
    }
    if (rc) return rc;
    if (get_num(b, "top_k", 0, n_vocab, true, &d, e, &rc)) r->sp.top_k = (int)d;
    if (rc) return rc;
    if (get_num(b, "min_p", 0, 1, false, &d, e, &rc)) r->sp.min_p = (float)d;
    if (rc) return rc;
    if (get_num(b, "repeat_penalty", 0, 10, false, &d, e, &rc)) r->sp.repeat_penalty = (float)d;
    if (rc) return rc;
    if (get_num(b, "repeat_last_n", 0, 4096, true, &d, e, &rc)) r->sp.repeat_last_n = (int)d;
    if (rc) return rc;
    if (get_num(b, "frequency_penalty", -2, 2, false, &d, e, &rc)) r->sp.frequency_penalty = (float)d;
    if (rc) return rc;
    if (get_num(b, "presence_penalty", -2, 2, false, &d, e, &rc)) r->sp.presence_penalty = (float)d;
    if (rc) return rc;
    // seed: any integer that fits 64 bits (as a double: |seed| <= 2^63)
    if (get_num(b, "seed", -9223372036854775808.0, 9223372036854774784.0, true, &d, e, &rc)) {
        r->sp.seed = (uint64_t)(int64_t)d;
        r->seed_given = true;
    }
    if (rc) return rc;
    r->n = 1;
    if (get_num(b, "n", 1, QT_MAX_N, true, &d, e, &rc)) r->n = (int)d;
    if (rc) return rc;
    int limit = a->o->max_tokens_limit;
    r->max_tokens = limit;
    const char *mkey = cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens") &&
                       !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens")) ? "max_completion_tokens" : "max_tokens";
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(b, mkey);
    if (mv && !cJSON_IsNull(mv)) {
        if (!cJSON_IsNumber(mv) || !(mv->valuedouble >= 1) || mv->valuedouble != floor(mv->valuedouble))
            return efail(e, 400, mkey, "%s must be a positive integer", mkey);
        if (mv->valuedouble > limit)
            return efail(e, 400, mkey, "%s is %.0f, more than this server's limit of %d", mkey, mv->valuedouble, limit);
        r->max_tokens = (int)mv->valuedouble;
    }
    if (get_bool(b, "stream", &r->stream, e, &rc), rc) return rc;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return efail(e, 400, "stream_options", "stream_options must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, e, &rc), rc) return rc;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "stop");
    if (st && !cJSON_IsNull(st)) {
        if (cJSON_IsString(st)) {
            if (st->valuestring[0]) r->stops[r->n_stops++] = qt_strdup(st->valuestring);
        } else if (cJSON_IsArray(st) && cJSON_GetArraySize(st) <= QT_MAX_STOPS) {
            const cJSON *x;
            cJSON_ArrayForEach(x, st) {
                if (!cJSON_IsString(x)) return efail(e, 400, "stop", "stop must hold strings");
                if (x->valuestring[0]) r->stops[r->n_stops++] = qt_strdup(x->valuestring);
            }
        } else {
            return efail(e, 400, "stop", "stop must be a string or an array of at most %d strings", QT_MAX_STOPS);
        }
    }
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(b, "logit_bias");
    if (lb && !cJSON_IsNull(lb)) {
        if (!cJSON_IsObject(lb)) return efail(e, 400, "logit_bias", "logit_bias must be an object of token id -> bias");
        int n = cJSON_GetArraySize(lb);
        if (n > QT_MAX_LOGIT_BIAS) return efail(e, 400, "logit_bias", "at most %d logit_bias entries", QT_MAX_LOGIT_BIAS);
        r->bias_ids = qt_malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        r->bias = qt_malloc(sizeof(float) * (size_t)(n ? n : 1));
        const cJSON *x;
        cJSON_ArrayForEach(x, lb) {
            char *end;
            long id = strtol(x->string, &end, 10);
            if (!x->string[0] || *end || id < 0 || id >= n_vocab)
                return efail(e, 400, "logit_bias", "logit_bias key \"%.40s\" is not a token id (0..%d)", x->string, n_vocab - 1);
            if (!cJSON_IsNumber(x) || !(x->valuedouble >= -100 && x->valuedouble <= 100))
                return efail(e, 400, "logit_bias", "logit_bias values must be numbers from -100 to 100");
            r->bias_ids[r->n_bias] = (int32_t)id;
            r->bias[r->n_bias++] = (float)x->valuedouble;
        }
    }
    return QT_OK;
}

static int parse_response_format(const cJSON *b, qt_request *r, qt_api_error *e) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(b, "response_format");
    if (!rf || cJSON_IsNull(rf)) return QT_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return efail(e, 400, "response_format", "response_format must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}");
    char err[512];
    char *gbnf = NULL;
    if (!strcmp(type->valuestring, "text")) return QT_OK;
    if (!strcmp(type->valuestring, "json_object")) {
        gbnf = qt_strdup(qt_grammar_json_object_gbnf());
    } else if (!strcmp(type->valuestring, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!cJSON_IsObject(js) || !schema)
            return efail(e, 400, "response_format.json_schema", "json_schema needs {\"name\": ..., \"schema\": {...}}");
        gbnf = qt_json_schema_to_gbnf(schema, err, sizeof(err));
        if (!gbnf) return efail(e, 400, "response_format.json_schema.schema", "%s", err);
    } else {
        return efail(e, 400, "response_format.type", "response_format type \"%.40s\" is not supported (text, json_object, json_schema)",
                     type->valuestring);
    }
    r->grammar = qt_grammar_parse(gbnf, err, sizeof(err));
    qt_free(gbnf);
    if (!r->grammar) return efail(e, 500, "response_format", "internal grammar error: %s", err);
    return QT_OK;
}

// ---- prompts ----------------------------------------------------------------------

// A token array prompt: integers in [0, n_vocab).
static int token_array(const qt_api_ctx *a, const cJSON *arr, const char *param, int32_t **out, qt_api_error *e) {
    int n = cJSON_GetArraySize(arr), i = 0;
    if (n == 0) return efail(e, 400, param, "%s is empty", param);
    if (n > a->n_ctx) return efail(e, 400, param, "%s has %d tokens; this server's context holds %d", param, n, a->n_ctx);
    int32_t *t = qt_malloc(sizeof(int32_t) * (size_t)n);
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0 && x->valuedouble < a->m->cfg.n_vocab) || x->valuedouble != floor(x->valuedouble)) {
            qt_free(t);
            return efail(e, 400, param, "%s[%d] is not a token id (0..%d)", param, i, a->m->cfg.n_vocab - 1);
        }
        t[i++] = (int32_t)x->valuedouble;
    }
    *out = t;
    return n;
}

static bool is_token_array(const cJSON *v) { return cJSON_IsArray(v) && cJSON_IsNumber(cJSON_GetArrayItem(v, 0)); }

static int parse_completion_prompt(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
    if (cJSON_IsArray(p) && !is_token_array(p)) {
        if (cJSON_GetArraySize(p) != 1)
            return efail(e, 400, "prompt", "one prompt per request (an array of %d prompts is not supported)", cJSON_GetArraySize(p));
        p = cJSON_GetArrayItem(p, 0);
    }
    const qt_tokenizer *tk = a->m->tok;
    if (cJSON_IsString(p)) {
        size_t len = strlen(p->valuestring);
        r->n_prompt = qt_text_tokenize(tk, p->valuestring, len, qt_tokenizer_add_bos(tk), false, &r->prompt);
        r->prompt_text = qt_strdup(p->valuestring);
        if (r->n_prompt <= 0) return efail(e, 400, "prompt", "the prompt is empty");
        return QT_OK;
    }
    if (is_token_array(p)) {
        int n = token_array(a, p, "prompt", &r->prompt, e);
        if (n < 0) return QT_ERR;
        r->n_prompt = n;
        // echo needs the text: the tokens decoded
        size_t cap = 64, len = 0;
        char *t = qt_malloc(cap);
        qt_detok dt;
        qt_detok_init(&dt);
        char piece[256];
        for (int i = 0; i <= n; i++) {
            size_t k = i < n ? qt_detok_push(&dt, tk, r->prompt[i], piece, sizeof(piece)) : qt_detok_flush(&dt, piece, sizeof(piece));
            if (len + k + 1 > cap) t = qt_realloc(t, cap = 2 * (len + k + 1));
            memcpy(t + len, piece, k);
            len += k;
        }
        t[len] = 0;
        r->prompt_text = t;
        return QT_OK;
    }
    return efail(e, 400, "prompt", "prompt must be a string, an array of one string, or an array of token ids");
}

// Messages as the template takes them: text parts joined, null content as "",
// tool-call arguments given as JSON strings parsed into objects (transformers'
// templates expect dicts). Writes the normalised array to *out.
static int normalise_messages(const cJSON *msgs, cJSON **out, qt_api_error *e) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return efail(e, 400, "messages", "messages must be a non-empty array of {\"role\", \"content\"}");
    cJSON *arr = cJSON_CreateArray();
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char param[64];
        snprintf(param, sizeof(param), "messages[%d]", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            cJSON_Delete(arr);
            return efail(e, 400, param, "messages[%d] needs a string \"role\"", i);
        }
        cJSON *o = cJSON_Duplicate(m, true);
        cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(o, "tool_calls");
        if (cJSON_IsArray(content)) {
            size_t n = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type"), *text = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(text) || (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "text")))) {
                    cJSON_Delete(o);
                    cJSON_Delete(arr);
                    snprintf(param, sizeof(param), "messages[%d].content", i);
                    return efail(e, 400, param, "messages[%d].content: only text parts are supported", i);
                }
                n += strlen(text->valuestring);
            }
            char *s = qt_malloc(n + 1), *w = s;
            cJSON_ArrayForEach(part, content) {
                size_t k = strlen(cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
                memcpy(w, cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring, k);
                w += k;
            }
            *w = 0;
            cJSON_ReplaceItemInObjectCaseSensitive(o, "content", cJSON_CreateString(s));
            qt_free(s);
        } else if (!content || cJSON_IsNull(content)) {
            if (!(cJSON_IsArray(calls) && cJSON_GetArraySize(calls))) {
                cJSON_Delete(o);
                cJSON_Delete(arr);
                return efail(e, 400, param, "messages[%d] needs \"content\" (or tool_calls)", i);
            }
            if (content) cJSON_ReplaceItemInObjectCaseSensitive(o, "content", cJSON_CreateString(""));
            else cJSON_AddStringToObject(o, "content", "");
        } else if (!cJSON_IsString(content)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return efail(e, 400, param, "messages[%d].content must be a string or an array of text parts", i);
        }
        cJSON *tc;
        cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(o, "tool_calls")) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
            cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
            if (!cJSON_IsObject(fn) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name"))) {
                cJSON_Delete(o);
                cJSON_Delete(arr);
                return efail(e, 400, param, "messages[%d].tool_calls: each needs {\"function\": {\"name\", \"arguments\"}}", i);
            }
            if (cJSON_IsString(args)) {
                cJSON *parsed = cJSON_Parse(args->valuestring);
                if (cJSON_IsObject(parsed)) cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
                else cJSON_Delete(parsed);
            }
        }
        cJSON_AddItemToArray(arr, o);
        i++;
    }
    *out = arr;
    return QT_OK;
}

static int parse_tools(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(b, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(b, "tool_choice");
    bool ptc = true;
    int rc = QT_OK;
    if (get_bool(b, "parallel_tool_calls", &ptc, e, &rc), rc) return rc;
    if (!tools || cJSON_IsNull(tools)) {
        if (choice && !cJSON_IsNull(choice) && !(cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")))
            return efail(e, 400, "tool_choice", "tool_choice needs tools");
        return QT_OK;
    }
    if (!cJSON_IsArray(tools)) return efail(e, 400, "tools", "tools must be an array");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type"), *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsObject(fn) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name"))) {
            char param[32];
            snprintf(param, sizeof(param), "tools[%d]", i);
            return efail(e, 400, param, "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\", ...}}", i);
        }
        i++;
    }
    r->tools = cJSON_Duplicate(tools, true);
    r->tools_format = qt_tool_format_of(a->tmpl);
    const char *forced = NULL;
    bool required = false;
    if (choice && !cJSON_IsNull(choice)) {
        if (cJSON_IsString(choice)) {
            if (!strcmp(choice->valuestring, "none")) r->tools_format = TOOLS_NONE;
            else if (!strcmp(choice->valuestring, "required")) required = true;
            else if (strcmp(choice->valuestring, "auto"))
                return efail(e, 400, "tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", ...}");
        } else {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
            if (!cJSON_IsString(nm)) return efail(e, 400, "tool_choice", "tool_choice must name a function");
            forced = nm->valuestring;
            bool found = false;
            cJSON_ArrayForEach(t, tools) found |= !strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring, forced);
            if (!found) return efail(e, 400, "tool_choice", "tool_choice names \"%.60s\", which is not in tools", forced);
            required = true;
        }
    }
    if (required) {
        if (r->grammar) return efail(e, 400, "tool_choice", "tool_choice cannot be combined with response_format");
        char err[512];
        char *gbnf = qt_tool_calls_gbnf(r->tools_format, tools, forced, err, sizeof(err));
        if (!gbnf) return efail(e, 400, "tool_choice", "%s", err);
        r->grammar = qt_grammar_parse(gbnf, err, sizeof(err));
        qt_free(gbnf);
        if (!r->grammar) return efail(e, 500, "tool_choice", "internal grammar error: %s", err);
    }
    r->special_text = r->tools_format != TOOLS_NONE;
    return QT_OK;
}

// ---- entry ----------------------------------------------------------------------------

static int parse_chat(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    if (!a->tmpl)
        return efail(e, 400, NULL, "this model has no chat template qtune can render: restart the server with "
                     "--chat-template NAME (%s) or --chat-template-file FILE, or use /v1/completions", qt_chat_family_list());
    int rc = QT_OK;
    if (get_bool(b, "logprobs", &r->logprobs, e, &rc), rc) return rc;
    double d;
    if (get_num(b, "top_logprobs", 0, QT_MAX_TOP_LOGPROBS, true, &d, e, &rc)) {
        if (!r->logprobs) return efail(e, 400, "top_logprobs", "top_logprobs needs logprobs: true");
        r->top_logprobs = (int)d;
    }
    if (rc) return rc;
    if (parse_response_format(b, r, e) != QT_OK) return QT_ERR;
    if (parse_tools(a, b, r, e) != QT_OK) return QT_ERR;
    if (r->tools && !a->tmpl->jinja)
        return efail(e, 400, "tools", "the built-in %s chat template does not render tools: use a model with its own chat "
                     "template, or restart the server with --chat-template-file", qt_chat_family_name(a->tmpl->family));
    cJSON *msgs = NULL;
    if (normalise_messages(cJSON_GetObjectItemCaseSensitive(b, "messages"), &msgs, e) != QT_OK) return QT_ERR;
    char err[600];
    r->n_prompt = qt_chat_tokenize_json(a->m, a->tmpl, msgs, r->tools, NULL, true, &r->prompt, &r->prompt_text, err, sizeof(err));
    cJSON_Delete(msgs);
    if (r->n_prompt < 0) return efail(e, 400, "messages", "%s", err);
    const char *const *ts = qt_chat_template_stops(a->tmpl);
    for (int i = 0; ts[i] && r->n_stops < QT_MAX_STOPS + 8; i++) r->stops[r->n_stops++] = qt_strdup(ts[i]);
    return QT_OK;
}

static int parse_completion(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    int rc = QT_OK;
    double d;
    if (get_num(b, "logprobs", 0, QT_MAX_TOP_LOGPROBS, true, &d, e, &rc)) {
        r->logprobs = true;
        r->top_logprobs = (int)d;
    }
    if (rc) return rc;
    if (get_bool(b, "echo", &r->echo, e, &rc), rc) return rc;
    if (r->echo && r->logprobs) return efail(e, 400, "echo", "echo with logprobs is not supported (the prompt's logprobs are not computed)");
    if (r->echo && r->stream) return efail(e, 400, "echo", "echo with stream is not supported");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(b, "suffix");
    if (suffix && !cJSON_IsNull(suffix) && !(cJSON_IsString(suffix) && !suffix->valuestring[0]))
        return efail(e, 400, "suffix", "suffix (insertion) is not supported");
    if (get_num(b, "best_of", 1, QT_MAX_N, true, &d, e, &rc) && (int)d != r->n)
        return efail(e, 400, "best_of", "best_of other than n is not supported");
    if (rc) return rc;
    if (parse_response_format(b, r, e) != QT_OK) return QT_ERR;
    return parse_completion_prompt(a, b, r, e);
}

static int parse_embedding(const qt_api_ctx *a, const cJSON *b, qt_request *r, qt_api_error *e) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(b, "input");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(b, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64")))
            return efail(e, 400, "encoding_format", "encoding_format must be \"float\" or \"base64\"");
        r->base64 = !strcmp(fmt->valuestring, "base64");
    }
    int rc = QT_OK;
    double d;
    if (get_num(b, "dimensions", 1, 1e9, true, &d, e, &rc) && (int)d != a->m->cfg.n_embd)
        return efail(e, 400, "dimensions", "this model's embeddings have %d dimensions", a->m->cfg.n_embd);
    if (rc) return rc;
    // a string, an array of strings, a token array, or an array of token arrays
    int n = 1;
    bool list = cJSON_IsArray(in) && !is_token_array(in);
    if (list) n = cJSON_GetArraySize(in);
    if (!in || (!cJSON_IsString(in) && !cJSON_IsArray(in)) || n == 0)
        return efail(e, 400, "input", "input must be a string, an array of strings, or token id arrays");
    if (n > QT_MAX_EMBED_INPUTS) return efail(e, 400, "input", "at most %d inputs per request", QT_MAX_EMBED_INPUTS);
    r->inputs = qt_calloc((size_t)n, sizeof(int32_t *));
    r->n_input = qt_calloc((size_t)n, sizeof(int));
    r->n_inputs = n;
    const qt_tokenizer *tk = a->m->tok;
    for (int i = 0; i < n; i++) {
        const cJSON *x = list ? cJSON_GetArrayItem(in, i) : in;
        char param[32];
        snprintf(param, sizeof(param), list ? "input[%d]" : "input", i);
        int k;
        if (cJSON_IsString(x)) {
            k = qt_text_tokenize(tk, x->valuestring, strlen(x->valuestring), qt_tokenizer_add_bos(tk), false, &r->inputs[i]);
            if (k <= 0) return efail(e, 400, param, "%s is empty", param);
        } else if (is_token_array(x)) {
            k = token_array(a, x, param, &r->inputs[i], e);
            if (k < 0) return QT_ERR;
        } else {
            return efail(e, 400, param, "%s must be a string or an array of token ids", param);
        }
        if (k > a->n_ctx) return efail(e, 400, param, "%s has %d tokens; this server's context holds %d", param, k, a->n_ctx);
        r->n_input[i] = k;
    }
    return QT_OK;
}

int qt_api_parse(const qt_api_ctx *a, req_kind kind, const cJSON *b, qt_request *r, qt_api_error *e) {
    memset(r, 0, sizeof(*r));
    memset(e, 0, sizeof(*e));
    r->kind = kind;
    int rc = check_keys(b, kind == REQ_CHAT ? CHAT_KEYS : kind == REQ_COMPLETION ? COMPLETION_KEYS : EMBEDDING_KEYS, e);
    if (rc == QT_OK && kind != REQ_EMBEDDING) rc = parse_sampling(a, b, r, e);
    if (rc == QT_OK) rc = kind == REQ_CHAT ? parse_chat(a, b, r, e) : kind == REQ_COMPLETION ? parse_completion(a, b, r, e)
                                                                      : parse_embedding(a, b, r, e);
    if (rc == QT_OK && kind != REQ_EMBEDDING) {
        int room = a->n_ctx - r->n_prompt;
        if (room < 1) {
            e->code = "context_length_exceeded";
            rc = efail(e, 400, kind == REQ_CHAT ? "messages" : "prompt", "the prompt is %d tokens; this server's context holds %d",
                       r->n_prompt, a->n_ctx);
            e->code = "context_length_exceeded";
        } else if (r->max_tokens > room) {
            r->max_tokens = room;
        }
    }
    if (rc != QT_OK) qt_request_free(r);
    return rc;
}

// ---- token text -------------------------------------------------------------------------

// Valid UTF-8 of bytes s[0..n): invalid sequences become U+FFFD.
static char *utf8_clean(const char *s, size_t n) {
    char *o = qt_malloc(3 * n + 1), *w = o;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = k > 0 && i + (size_t)k <= n && !(k == 2 && c < 0xc2);
        for (int j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + (size_t)j] & 0xc0) == 0x80;
        if (ok) {
            memcpy(w, s + i, (size_t)k);
            w += k;
            i += (size_t)k;
        } else {
            memcpy(w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
        }
    }
    *w = 0;
    return o;
}

cJSON *qt_api_token_json(const qt_model *m, int id, bool with_bytes, const char *key) {
    size_t len = 0;
    const char *p = qt_token_to_piece(m->tok, id, false, &len);
    if (!p) { p = ""; len = 0; }
    cJSON *o = cJSON_CreateObject();
    char *t = utf8_clean(p, len);
    cJSON_AddStringToObject(o, key, t);
    qt_free(t);
    if (with_bytes) {
        cJSON *b = cJSON_AddArrayToObject(o, "bytes");
        for (size_t i = 0; i < len; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)p[i]));
    }
    return o;
}
