// tool-calls.c: tool calls in generated text (server-impl.h). The formats are
// the ones the chat templates ask for: Hermes / Qwen2.5 (<tool_call>{"name",
// "arguments"}</tool_call>, any number), Llama 3.1-3.3 (a JSON object
// {"name", "parameters"}, optionally after <|python_tag|>, several separated
// by ";"), Mistral ([TOOL_CALLS][{"name", "arguments"}, ...], or v11's
// [TOOL_CALLS]name[ARGS]{...}) and functionary (<function=name>{...}</function>).
// Parsed calls become OpenAI tool_calls with the arguments as a JSON string;
// a call to a function that is not in the request's tools is not a call.
// For tool_choice "required" or a named function, a GBNF grammar forces the
// template's format with the functions' parameter schemas (json-schema.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "server/server-impl.h"

tool_format qt_tool_format_of(const qt_chat_template *t) {
    const char *s = t ? (t->text_tools ? t->text_tools : t->text) : NULL;
    if (!s) return TOOLS_ANY;
    if (strstr(s, "<tool_call>")) return TOOLS_HERMES;
    if (strstr(s, "[TOOL_CALLS]")) return TOOLS_MISTRAL;
    if (strstr(s, "<function=")) return TOOLS_FUNCTIONARY;
    if (strstr(s, "<|python_tag|>") || strstr(s, "Environment: ipython") || strstr(s, "\"parameters\": dictionary"))
        return TOOLS_LLAMA3;
    return TOOLS_ANY;
}

static bool tool_known(const cJSON *tools, const char *name) {
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return true;
    }
    return false;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
    return p;
}

// A JSON value at p (before end); *next gets the position after it. NULL if none.
static cJSON *json_at(const char *p, const char *end, const char **next) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    const char *pe = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &pe, false);
    if (j && next) *next = pe;
    return j;
}

static void add_call(cJSON *calls, const char *name, const cJSON *args, uint64_t *seed) {
    static const char ALNUM[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char id[10];
    for (int i = 0; i < 9; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        id[i] = ALNUM[(*seed >> 33) % (sizeof(ALNUM) - 1)];
    }
    id[9] = 0;   // 9 alphanumerics: what Mistral's templates demand of ids in the history
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "type", "function");
    cJSON *f = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(f, "name", name);
    char *a = cJSON_IsString(args) ? NULL : cJSON_PrintUnformatted(args ? args : cJSON_CreateObject());
    cJSON_AddStringToObject(f, "arguments", cJSON_IsString(args) ? args->valuestring : a ? a : "{}");
    free(a);
    cJSON_AddItemToArray(calls, c);
}

// {"name": ..., "<args_key>": ...} -> a call; false if it is not one.
static bool object_call(cJSON *calls, const cJSON *o, const char *args_key, const cJSON *tools, uint64_t *seed) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, args_key);
    if (!args && !strcmp(args_key, "parameters")) args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) || !tool_known(tools, name->valuestring)) return false;
    if (args && !cJSON_IsObject(args) && !cJSON_IsString(args)) return false;
    add_call(calls, name->valuestring, args, seed);
    return true;
}

static cJSON *parse_hermes(const char *text, const char *end, const cJSON *tools, size_t *content_len, uint64_t *seed) {
    const char *at = strstr(text, "<tool_call>");
    if (!at || at >= end) return NULL;
    cJSON *calls = cJSON_CreateArray();
    *content_len = (size_t)(at - text);
    for (const char *p = at; p && p < end; p = strstr(p, "<tool_call>")) {
        const char *next = NULL;
        cJSON *o = json_at(p + strlen("<tool_call>"), end, &next);
        bool ok = o && object_call(calls, o, "arguments", tools, seed);
        cJSON_Delete(o);
        if (!ok) break;
        p = next;
    }
    if (!cJSON_GetArraySize(calls)) { cJSON_Delete(calls); return NULL; }
    return calls;
}

static cJSON *parse_functionary(const char *text, const char *end, const cJSON *tools, size_t *content_len, uint64_t *seed) {
    const char *at = strstr(text, "<function=");
    if (!at || at >= end) return NULL;
    cJSON *calls = cJSON_CreateArray();
    *content_len = (size_t)(at - text);
    for (const char *p = at; p && p < end; p = strstr(p, "<function=")) {
        const char *nm = p + strlen("<function="), *gt = strchr(nm, '>');
        if (!gt || gt >= end) break;
        char name[256];
        size_t n = QT_MIN((size_t)(gt - nm), sizeof(name) - 1);
        memcpy(name, nm, n);
        name[n] = 0;
        const char *next = NULL;
        cJSON *args = json_at(gt + 1, end, &next);
        bool ok = cJSON_IsObject(args) && tool_known(tools, name);
        if (ok) add_call(calls, name, args, seed);
        cJSON_Delete(args);
        if (!ok) break;
        p = next;
    }
    if (!cJSON_GetArraySize(calls)) { cJSON_Delete(calls); return NULL; }
    return calls;
}

static cJSON *parse_mistral(const char *text, const char *end, const cJSON *tools, size_t *content_len, uint64_t *seed) {
    const char *at = strstr(text, "[TOOL_CALLS]");
    if (!at || at >= end) return NULL;
    cJSON *calls = cJSON_CreateArray();
    *content_len = (size_t)(at - text);
    const char *p = skip_ws(at + strlen("[TOOL_CALLS]"), end);
    if (p < end && *p == '[') {
        cJSON *arr = json_at(p, end, NULL);
        const cJSON *o;
        bool ok = cJSON_IsArray(arr);
        cJSON_ArrayForEach(o, arr) ok = ok && object_call(calls, o, "arguments", tools, seed);
        cJSON_Delete(arr);
        if (!ok) { cJSON_Delete(calls); return NULL; }
    } else {   // name[ARGS]{...} (repeated after further [TOOL_CALLS])
        for (;;) {
            const char *args_at = strstr(p, "[ARGS]");
            if (!args_at || args_at >= end) break;
            char name[256];
            size_t n = QT_MIN((size_t)(args_at - p), sizeof(name) - 1);
            memcpy(name, p, n);
            name[n] = 0;
            const char *next = NULL;
            cJSON *args = json_at(args_at + strlen("[ARGS]"), end, &next);
            bool ok = cJSON_IsObject(args) && tool_known(tools, name);
            if (ok) add_call(calls, name, args, seed);
            cJSON_Delete(args);
            if (!ok) break;
            p = skip_ws(next, end);
            if (strncmp(p, "[TOOL_CALLS]", 12) == 0) p += 12;
        }
    }
    if (!cJSON_GetArraySize(calls)) { cJSON_Delete(calls); return NULL; }
    return calls;
}

static cJSON *parse_llama3(const char *text, const char *end, const cJSON *tools, size_t *content_len, uint64_t *seed) {
    const char *tag = strstr(text, "<|python_tag|>");
    const char *p = tag && tag < end ? tag + strlen("<|python_tag|>") : skip_ws(text, end);
    if (p >= end || *skip_ws(p, end) != '{') return NULL;
    cJSON *calls = cJSON_CreateArray();
    *content_len = tag && tag < end ? (size_t)(tag - text) : 0;
    for (;;) {
        const char *next = NULL;
        cJSON *o = json_at(p, end, &next);
        bool ok = o && object_call(calls, o, "parameters", tools, seed);
        cJSON_Delete(o);
        if (!ok) break;
        p = skip_ws(next, end);
        if (p < end && *p == ';') p++;
        else break;
    }
    if (!cJSON_GetArraySize(calls)) { cJSON_Delete(calls); return NULL; }
    return calls;
}

cJSON *qt_tool_calls_parse(const char *text, size_t len, tool_format f, const cJSON *tools, size_t *content_len,
                           uint64_t *id_seed) {
    const char *end = text + len;
    *content_len = len;
    cJSON *c = NULL;
    if (f == TOOLS_HERMES || f == TOOLS_ANY) c = parse_hermes(text, end, tools, content_len, id_seed);
    if (!c && (f == TOOLS_MISTRAL || f == TOOLS_ANY)) c = parse_mistral(text, end, tools, content_len, id_seed);
    if (!c && (f == TOOLS_FUNCTIONARY || f == TOOLS_ANY)) c = parse_functionary(text, end, tools, content_len, id_seed);
    if (!c && (f == TOOLS_LLAMA3 || f == TOOLS_ANY)) c = parse_llama3(text, end, tools, content_len, id_seed);
    if (!c) *content_len = len;
    return c;
}

// The schema of one call object {"name": NAME, ARGS_KEY: parameters}.
static cJSON *call_schema(const cJSON *tool, const char *args_key) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(s, "properties");
    cJSON *nm = cJSON_AddObjectToObject(props, "name");
    cJSON_AddStringToObject(nm, "const", cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring);
    cJSON_AddItemToObject(props, args_key, params ? cJSON_Duplicate(params, true) : cJSON_CreateObject());
    cJSON *req = cJSON_AddArrayToObject(s, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString(args_key));
    // $defs of the parameters move to the top so that their $refs resolve
    return s;
}

char *qt_tool_calls_gbnf(tool_format f, const cJSON *tools, const char *name, char *err, size_t err_cap) {
    const char *args_key = f == TOOLS_LLAMA3 ? "parameters" : "arguments";
    if (f == TOOLS_ANY || f == TOOLS_NONE || f == TOOLS_FUNCTIONARY) {
        snprintf(err, err_cap, "this chat template's tool-call format is not one qtune can constrain "
                 "(Hermes/Qwen2.5, Llama 3.x, Mistral): use tool_choice \"auto\"");
        return NULL;
    }
    cJSON *any = cJSON_CreateObject(), *alts = cJSON_AddArrayToObject(any, "anyOf");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const char *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring;
        if (!name || !strcmp(n, name)) cJSON_AddItemToArray(alts, call_schema(t, args_key));
    }
    char *gbnf = qt_json_schema_to_gbnf(any, err, err_cap);
    cJSON_Delete(any);
    if (!gbnf) return NULL;
    // the converter's root becomes "call"; our root wraps it in the template's markers
    static const char ROOT[] = "root ::= \" \"? ";
    if (strncmp(gbnf, ROOT, strlen(ROOT)) != 0) {
        snprintf(err, err_cap, "internal: unexpected grammar");
        qt_free(gbnf);
        return NULL;
    }
    const char *wrap = f == TOOLS_HERMES ? "root ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall ::= "
                     : f == TOOLS_MISTRAL ? "root ::= \"[TOOL_CALLS]\" \"[\" call \"]\"\ncall ::= "
                                          : "root ::= call\ncall ::= ";
    size_t n = strlen(wrap) + strlen(gbnf) + 1;
    char *out = qt_malloc(n);
    snprintf(out, n, "%s%s", wrap, gbnf + strlen(ROOT));
    qt_free(gbnf);
    return out;
}
