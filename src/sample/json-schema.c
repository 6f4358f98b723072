// json-schema.c: JSON schema -> GBNF (grammar.h), for OpenAI's response_format.
// The shape of the output follows llama.cpp's json-schema-to-grammar: shared
// rules for space, strings, numbers and any value; one rule per subschema;
// object members in the schema's order, required ones always, optional ones
// each optionally (with the commas placed so that any subset is valid JSON).
// Whitespace between tokens is at most one space, or a newline and up to 20
// spaces/tabs, so a model cannot spin on whitespace forever.
// Deliberately refused (the caller answers 400 naming the keyword): pattern,
// numeric bounds, multipleOf, uniqueItems, patternProperties, not, if/then/else,
// allOf, dependent*, and $ref outside the document.
#include "sample/grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define COMMON_RULES \
    "space ::= | \" \" | \"\\n\" [ \\t]{0,20}\n" \
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n" \
    "string ::= \"\\\"\" char* \"\\\"\" space\n" \
    "integral-part ::= [0] | [1-9] [0-9]{0,15}\n" \
    "decimal-part ::= [0-9]{1,16}\n" \
    "number ::= \"-\"? integral-part (\".\" decimal-part)? ([eE] [-+]? integral-part)? space\n" \
    "integer ::= \"-\"? integral-part space\n" \
    "boolean ::= (\"true\" | \"false\") space\n" \
    "null ::= \"null\" space\n" \
    "value ::= object | array | string | number | boolean | null\n" \
    "object ::= \"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space\n" \
    "array ::= \"[\" space (value (\",\" space value)*)? \"]\" space\n"

const char *qt_grammar_json_object_gbnf(void) {
    return "root ::= \" \"? object\n" COMMON_RULES;
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        b->cap = QT_MAX(2 * b->cap, b->n + (size_t)k + 256);
        b->s = qt_realloc(b->s, b->cap);
    }
}

typedef struct {
    sbuf rules;
    int n_rules;
    const cJSON *root;
    char *err;
    size_t err_cap;
    bool failed;
    struct { const cJSON *node; int rule; } refs[64];   // $defs already given a rule (recursion)
    int n_refs;
    int depth;
} conv;

static void cfail(conv *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cfail(conv *c, const char *path, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = true;
    int k = snprintf(c->err, c->err_cap, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < c->err_cap) vsnprintf(c->err + k, c->err_cap - (size_t)k, fmt, ap);
    va_end(ap);
}

// A GBNF literal for the bytes of s (quotes and control bytes escaped).
static void put_literal(sbuf *b, const char *s) {
    sb_put(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') sb_put(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) sb_put(b, "\\x%02X", ch);
        else sb_put(b, "%c", ch);
    }
    sb_put(b, "\"");
}

static int new_rule(conv *c) { return c->n_rules++; }

// Name of a rule id: "r<id>", or a shared rule for the negative ids schema_rule returns.
static const char *rname(int id, char *buf) {
    static const char *const shared[] = { "value", "value", "string", "number", "integer", "boolean", "null", "value", "object" };
    if (id >= 0) { snprintf(buf, 24, "r%d", id); return buf; }
    return -id < (int)QT_ARRAY_LEN(shared) ? shared[-id] : "value";
}
#define RN(id) rname((id), (char[24]){ 0 })

static int schema_rule(conv *c, const cJSON *s, const char *path);

static const char *const IGNORED[] = { "title", "description", "examples", "default", "format", "$schema", "$id",
                                       "$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly",
                                       "strict", "nullable", NULL };
static const char *const KNOWN[] = { "type", "properties", "required", "additionalProperties", "items", "prefixItems",
                                     "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "$ref", "minLength",
                                     "maxLength", NULL };

static bool in_list(const char *const *l, const char *s) {
    for (int i = 0; l[i]; i++)
        if (!strcmp(l[i], s)) return true;
    return false;
}

// A JSON literal (enum / const member) as a rule body: its compact text, then space.
static void put_json_literal(conv *c, const cJSON *v) {
    char *t = cJSON_PrintUnformatted(v);
    // cJSON writes non-ASCII as is and escapes like JSON: the model must write exactly this text
    put_literal(&c->rules, t ? t : "null");
    sb_put(&c->rules, " space");
    free(t);
}

static int bounded_count(conv *c, const cJSON *s, const char *key, const char *path, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) return dflt;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 256) || v->valuedouble != (double)(int)v->valuedouble) {
        cfail(c, path, "%s must be an integer in 0..256", key);
        return dflt;
    }
    return (int)v->valuedouble;
}

static int type_rule(conv *c, const cJSON *s, const char *type, const char *path) {
    char sub[512];
    if (!strcmp(type, "string")) {
        int lo = bounded_count(c, s, "minLength", path, 0), hi = bounded_count(c, s, "maxLength", path, -1);
        if (lo == 0 && hi < 0) return -2;   // the shared "string"
        int r = new_rule(c);
        if (hi >= 0 && hi < lo) { cfail(c, path, "maxLength < minLength"); return r; }
        if (hi >= 0) sb_put(&c->rules, "r%d ::= \"\\\"\" char{%d,%d} \"\\\"\" space\n", r, lo, hi);
        else sb_put(&c->rules, "r%d ::= \"\\\"\" char{%d,} \"\\\"\" space\n", r, lo);
        return r;
    }
    if (!strcmp(type, "number")) return -3;
    if (!strcmp(type, "integer")) return -4;
    if (!strcmp(type, "boolean")) return -5;
    if (!strcmp(type, "null")) return -6;
    if (!strcmp(type, "array")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
        int lo = bounded_count(c, s, "minItems", path, 0), hi = bounded_count(c, s, "maxItems", path, -1);
        if (prefix) {
            if (!cJSON_IsArray(prefix)) { cfail(c, path, "prefixItems must be an array"); return -1; }
            int n = cJSON_GetArraySize(prefix), ids[64];
            if (n > 64) { cfail(c, path, "at most 64 prefixItems"); return -1; }
            for (int i = 0; i < n; i++) {
                snprintf(sub, sizeof(sub), "%s.prefixItems[%d]", path, i);
                ids[i] = schema_rule(c, cJSON_GetArrayItem(prefix, i), sub);
            }
            int r = new_rule(c);
            sb_put(&c->rules, "r%d ::= \"[\" space", r);
            for (int i = 0; i < n; i++) {
                if (i) sb_put(&c->rules, " \",\" space");
                sb_put(&c->rules, " %s", RN(ids[i]));
            }
            sb_put(&c->rules, " \"]\" space\n");
            return r;
        }
        int it;
        if (items && !cJSON_IsTrue(items)) {
            snprintf(sub, sizeof(sub), "%s.items", path);
            it = schema_rule(c, items, sub);
        } else {
            it = -7;   // any value
        }
        if (hi >= 0 && hi < lo) { cfail(c, path, "maxItems < minItems"); return -1; }
        int r = new_rule(c);
        // "[" space ( item ("," space item){lo-1, hi-1} )? "]"
        sb_put(&c->rules, "r%d ::= \"[\" space ", r);
        if (hi == 0) sb_put(&c->rules, "\"]\" space\n");
        else {
            int rest_lo = lo > 0 ? lo - 1 : 0;
            sb_put(&c->rules, "%s(%s (\",\" space %s)", lo == 0 ? "(" : "", RN(it), RN(it));
            if (hi < 0) sb_put(&c->rules, "{%d,}", rest_lo);
            else sb_put(&c->rules, "{%d,%d}", rest_lo, hi - 1);
            sb_put(&c->rules, ")%s \"]\" space\n", lo == 0 ? ")?" : "");
        }
        return r;
    }
    if (!strcmp(type, "object")) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
        const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
        if (props && !cJSON_IsObject(props)) { cfail(c, path, "properties must be an object"); return -1; }
        if (req && !cJSON_IsArray(req)) { cfail(c, path, "required must be an array"); return -1; }
        if (!props || !cJSON_GetArraySize(props)) {
            if (addl && cJSON_IsObject(addl)) {   // a map: string keys, values of that schema
                snprintf(sub, sizeof(sub), "%s.additionalProperties", path);
                int v = schema_rule(c, addl, sub);
                int r = new_rule(c);
                sb_put(&c->rules, "r%d ::= \"{\" space (string \":\" space %s (\",\" space string \":\" space %s)*)? \"}\" space\n", r, RN(v), RN(v));
                return r;
            }
            if (cJSON_IsFalse(addl)) {
                int r = new_rule(c);
                sb_put(&c->rules, "r%d ::= \"{\" space \"}\" space\n", r);
                return r;
            }
            return -8;   // any object
        }
        if (addl && !cJSON_IsBool(addl)) { cfail(c, path, "additionalProperties with properties must be true or false"); return -1; }
        int n = cJSON_GetArraySize(props);
        if (n > 128) { cfail(c, path, "at most 128 properties"); return -1; }
        int kv[128];
        bool required[128];
        const cJSON *p;
        int i = 0;
        cJSON_ArrayForEach(p, props) {
            snprintf(sub, sizeof(sub), "%s.properties.%s", path, p->string);
            int v = schema_rule(c, p, sub);
            int r = new_rule(c);
            sb_put(&c->rules, "r%d ::= ", r);
            cJSON *ks = cJSON_CreateString(p->string ? p->string : "");
            char *key = cJSON_PrintUnformatted(ks);
            put_literal(&c->rules, key ? key : "\"\"");
            free(key);
            cJSON_Delete(ks);
            sb_put(&c->rules, " space \":\" space %s\n", RN(v));
            kv[i] = r;
            required[i] = false;
            const cJSON *q;
            cJSON_ArrayForEach(q, req) if (cJSON_IsString(q) && !strcmp(q->valuestring, p->string)) required[i] = true;
            i++;
        }
        const cJSON *q;
        cJSON_ArrayForEach(q, req) {
            if (!cJSON_IsString(q) || !cJSON_GetObjectItemCaseSensitive(props, q->valuestring)) {
                cfail(c, path, "required names a property that is not in properties");
                return -1;
            }
        }
        // members in order: required ones always; optional ones each optionally. rest[i]: members i.. after
        // at least one was written (each with a leading comma); first[i]: the same before any was written.
        int r = new_rule(c);
        int rest_next = -1, first_next = -1;   // rule ids for i+1 (-1: nothing left)
        for (int k = n - 1; k >= 0; k--) {
            int rest = new_rule(c), first = new_rule(c);
            // rest_k
            sb_put(&c->rules, "r%d ::= \",\" space %s", rest, RN(kv[k]));
            if (rest_next >= 0) sb_put(&c->rules, " r%d", rest_next);
            if (!required[k]) {
                sb_put(&c->rules, " |");
                if (rest_next >= 0) sb_put(&c->rules, " r%d", rest_next);
            }
            sb_put(&c->rules, "\n");
            // first_k
            sb_put(&c->rules, "r%d ::= %s", first, RN(kv[k]));
            if (rest_next >= 0) sb_put(&c->rules, " r%d", rest_next);
            if (!required[k]) {
                sb_put(&c->rules, " |");
                if (first_next >= 0) sb_put(&c->rules, " r%d", first_next);
            }
            sb_put(&c->rules, "\n");
            rest_next = rest;
            first_next = first;
        }
        sb_put(&c->rules, "r%d ::= \"{\" space r%d \"}\" space\n", r, first_next);
        return r;
    }
    cfail(c, path, "unknown type \"%s\"", type);
    return -1;
}

// The rule for schema s: a number r (rule "r<r>"), or negative for a shared rule.
static int schema_rule(conv *c, const cJSON *s, const char *path) {
    if (c->failed) return -1;
    if (++c->depth > 64) { cfail(c, path, "the schema nests more than 64 levels deep"); return -1; }
    int result = -7;
    char sub[512];
    if (cJSON_IsTrue(s) || (cJSON_IsObject(s) && !cJSON_GetArraySize(s))) goto done;
    if (!cJSON_IsObject(s)) { cfail(c, path, "a schema must be an object or true"); result = -1; goto done; }
    const cJSON *k;
    cJSON_ArrayForEach(k, s) {
        if (!in_list(IGNORED, k->string) && !in_list(KNOWN, k->string)) {
            cfail(c, path, "the keyword \"%s\" is not supported in response_format schemas", k->string);
            result = -1;
            goto done;
        }
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) { cfail(c, path, "$ref must be a string"); result = -1; goto done; }
        const char *name = NULL;
        const cJSON *defs = NULL;
        if (!strncmp(ref->valuestring, "#/$defs/", 8)) { name = ref->valuestring + 8; defs = cJSON_GetObjectItemCaseSensitive(c->root, "$defs"); }
        else if (!strncmp(ref->valuestring, "#/definitions/", 14)) { name = ref->valuestring + 14; defs = cJSON_GetObjectItemCaseSensitive(c->root, "definitions"); }
        else if (!strcmp(ref->valuestring, "#")) { defs = NULL; name = NULL; }
        const cJSON *target = !strcmp(ref->valuestring, "#") ? c->root : defs && name ? cJSON_GetObjectItemCaseSensitive(defs, name) : NULL;
        if (!target) { cfail(c, path, "$ref \"%s\": only #, #/$defs/NAME and #/definitions/NAME of this schema", ref->valuestring); result = -1; goto done; }
        for (int i = 0; i < c->n_refs; i++)
            if (c->refs[i].node == target) { result = c->refs[i].rule; goto done; }
        if (c->n_refs == (int)QT_ARRAY_LEN(c->refs)) { cfail(c, path, "too many $refs"); result = -1; goto done; }
        int r = new_rule(c);   // a named rule first, so recursive references find it
        c->refs[c->n_refs].node = target;
        c->refs[c->n_refs++].rule = r;
        snprintf(sub, sizeof(sub), "%s", ref->valuestring);
        int body = schema_rule(c, target, sub);
        sb_put(&c->rules, "r%d ::= %s\n", r, RN(body));
        result = r;
        goto done;
    }
    const cJSON *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (cst) {
        result = new_rule(c);
        sb_put(&c->rules, "r%d ::= ", result);
        put_json_literal(c, cst);
        sb_put(&c->rules, "\n");
        goto done;
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (en) {
        if (!cJSON_IsArray(en) || !cJSON_GetArraySize(en)) { cfail(c, path, "enum must be a non-empty array"); result = -1; goto done; }
        result = new_rule(c);
        sb_put(&c->rules, "r%d ::= ", result);
        const cJSON *v;
        int i = 0;
        cJSON_ArrayForEach(v, en) {
            if (i++) sb_put(&c->rules, " | ");
            put_json_literal(c, v);
        }
        sb_put(&c->rules, "\n");
        goto done;
    }
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    if (!any) any = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    if (any) {
        if (!cJSON_IsArray(any) || !cJSON_GetArraySize(any) || cJSON_GetArraySize(any) > 64) {
            cfail(c, path, "anyOf / oneOf must be an array of 1..64 schemas"); result = -1; goto done;
        }
        int ids[64], n = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, any) {
            snprintf(sub, sizeof(sub), "%s.anyOf[%d]", path, n);
            ids[n++] = schema_rule(c, v, sub);
        }
        result = new_rule(c);
        sb_put(&c->rules, "r%d ::=", result);
        for (int i = 0; i < n; i++) sb_put(&c->rules, "%s %s", i ? " |" : "", RN(ids[i]));
        sb_put(&c->rules, "\n");
        goto done;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!type) {
        if (cJSON_GetObjectItemCaseSensitive(s, "properties")) result = type_rule(c, s, "object", path);
        else if (cJSON_GetObjectItemCaseSensitive(s, "items")) result = type_rule(c, s, "array", path);
        goto done;   // no type: any value
    }
    if (cJSON_IsString(type)) { result = type_rule(c, s, type->valuestring, path); goto done; }
    if (cJSON_IsArray(type) && cJSON_GetArraySize(type) > 0 && cJSON_GetArraySize(type) <= 8) {
        int ids[8], n = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, type) {
            if (!cJSON_IsString(t)) { cfail(c, path, "type lists hold strings"); result = -1; goto done; }
            ids[n++] = type_rule(c, s, t->valuestring, path);
        }
        result = new_rule(c);
        sb_put(&c->rules, "r%d ::=", result);
        for (int i = 0; i < n; i++) sb_put(&c->rules, "%s %s", i ? " |" : "", RN(ids[i]));
        sb_put(&c->rules, "\n");
        goto done;
    }
    cfail(c, path, "type must be a string or a list of strings");
    result = -1;
done:
    c->depth--;
    return result;
}

char *qt_json_schema_to_gbnf(const cJSON *schema, char *err, size_t err_cap) {
    conv c = { .root = schema, .err = err, .err_cap = err_cap };
    if (err_cap) err[0] = 0;
    int top = schema_rule(&c, schema, "schema");
    if (c.failed) {
        qt_free(c.rules.s);
        return NULL;
    }
    sbuf all = { 0 };
    sb_put(&all, "root ::= \" \"? %s\n%s" COMMON_RULES, RN(top), c.rules.s ? c.rules.s : "");
    qt_free(c.rules.s);
    return all.s;
}
