// test-grammar.c: GBNF grammars, the token mask and JSON schema -> grammar
// (src/sample/grammar.h). Oracles: cJSON's parser for "is this JSON" and the
// schemas' own meaning checked field by field on texts the grammar generates
// (random walks through the mask over a byte vocabulary: every generated text
// must parse and conform); hand-picked texts the grammar must accept or refuse.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "sample/grammar.h"
#include "test.h"

#define WALKS 200          // random texts per grammar
#define WALK_MAX_BYTES 400

static bool accepts(const qt_grammar *g, const char *text) {
    qt_grammar_state *st = qt_grammar_state_init(g);
    bool ok = qt_grammar_accept(st, text, strlen(text)) == QT_OK && qt_grammar_complete(st);
    qt_grammar_state_free(st);
    return ok;
}

// A vocabulary of single bytes 1..255 plus multi-byte tokens and an end token (id 0).
typedef struct {
    qt_grammar_vocab v;
    char store[256][2];
} byte_vocab;

static const char *const MULTI[] = { "{\"", "\": ", "true", "null", ", \"", "\"}", "[1, 2]", "  ", "\n", "ab", "é", NULL };

static void vocab_init(byte_vocab *b) {
    int n_multi = 0;
    while (MULTI[n_multi]) n_multi++;
    int n = 256 + n_multi;
    b->v.n_vocab = n;
    b->v.piece = qt_calloc((size_t)n, sizeof(char *));
    b->v.len = qt_calloc((size_t)n, sizeof(uint32_t));
    b->v.eog = qt_calloc((size_t)n, sizeof(bool));
    b->v.eog[0] = true;
    b->v.piece[0] = "";
    for (int i = 1; i < 256; i++) {
        b->store[i][0] = (char)i;
        b->v.piece[i] = b->store[i];
        b->v.len[i] = 1;
    }
    for (int i = 0; i < n_multi; i++) {
        b->v.piece[256 + i] = MULTI[i];
        b->v.len[256 + i] = (uint32_t)strlen(MULTI[i]);
    }
}

static void vocab_free(byte_vocab *b) {
    qt_free(b->v.piece);
    qt_free(b->v.len);
    qt_free(b->v.eog);
}

// Random walk: draw uniformly among unmasked tokens (favouring the end token
// once allowed, and short texts) until the end token. Returns the text or NULL.
static char *walk(const qt_grammar *g, const byte_vocab *b, qt_rng *rng) {
    qt_grammar_state *st = qt_grammar_state_init(g);
    float *lg = qt_malloc(sizeof(float) * (size_t)b->v.n_vocab);
    char *out = qt_malloc(WALK_MAX_BYTES + 64);
    size_t n = 0;
    bool ended = false;
    while (n < WALK_MAX_BYTES) {
        for (int i = 0; i < b->v.n_vocab; i++) lg[i] = 0;
        qt_grammar_mask(st, &b->v, lg);
        // the cheap per-token check agrees with the mask on every token
        int disagree = 0;
        for (int i = 0; i < b->v.n_vocab; i++) disagree += qt_grammar_allows(st, &b->v, i) != (lg[i] == 0);
        CHECK(disagree == 0, "qt_grammar_allows and qt_grammar_mask disagree on %d tokens", disagree);
        if (lg[0] == 0 && (qt_rng_u64(rng) % 3 == 0 || n > WALK_MAX_BYTES / 2)) { ended = true; break; }
        int ok[600], k = 0;
        for (int i = 1; i < b->v.n_vocab; i++)
            if (lg[i] == 0) ok[k++] = i;
        if (k == 0) { ended = lg[0] == 0; break; }
        // prefer structure over string content: printable ASCII mostly
        int id = ok[qt_rng_u64(rng) % (uint64_t)k];
        for (int tries = 0; tries < 4 && id < 256 && (id < 32 || id > 126); tries++) id = ok[qt_rng_u64(rng) % (uint64_t)k];
        if (qt_grammar_accept(st, b->v.piece[id], b->v.len[id]) != QT_OK) break;   // the mask allowed it: must not happen
        memcpy(out + n, b->v.piece[id], b->v.len[id]);
        n += b->v.len[id];
    }
    out[n] = 0;
    qt_free(lg);
    qt_grammar_state_free(st);
    if (!ended) { qt_free(out); return NULL; }
    return out;
}

static void test_gbnf(void) {
    char err[256];
    qt_grammar *g = qt_grammar_parse("root ::= \"a\" b* | \"x\"{2,3}\nb ::= [b-c] # comment\n", err, sizeof(err));
    CHECK(g != NULL, "simple grammar: %s", err);
    if (g) {
        CHECK(accepts(g, "a") && accepts(g, "abcb") && accepts(g, "xx") && accepts(g, "xxx"), "accepted texts");
        CHECK(!accepts(g, "") && !accepts(g, "ad") && !accepts(g, "x") && !accepts(g, "xxxx") && !accepts(g, "ba"), "refused texts");
        qt_grammar_state *st = qt_grammar_state_init(g);
        CHECK(qt_grammar_accept(st, "xxx", 3) == QT_OK && qt_grammar_finished(st), "xxx is complete and final");
        qt_grammar_state_free(st);
    }
    qt_grammar_free(g);
    static const struct { const char *src, *want; } bad[] = {
        { "root ::= a", "not defined" }, { "x ::= \"a\"", "no rule named 'root'" }, { "root ::= root \"a\"", "left-recursive" },
        { "root ::= \"a", "unterminated literal" }, { "root ::= [a", "unterminated character class" },
        { "root ::= \"a\"{3,2}", "bad repetition" }, { "root \"a\"", "expected '::='" },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(bad); i++) {
        g = qt_grammar_parse(bad[i].src, err, sizeof(err));
        CHECK(!g && strstr(err, bad[i].want), "bad grammar %zu: want \"%s\", got \"%s\"", i, bad[i].want, g ? "(parsed)" : err);
        qt_grammar_free(g);
    }
}

static void test_json_object(const byte_vocab *bv) {
    char err[256];
    qt_grammar *g = qt_grammar_parse(qt_grammar_json_object_gbnf(), err, sizeof(err));
    CHECK(g != NULL, "json object grammar: %s", err);
    if (!g) return;
    static const char *const good[] = { "{}", "{\"a\": 1}", " {\"a\": [1, 2.5e3, \"x\\n\", true, null, {}]}",
                                        "{\"k\":\"\\u00e9\",\"l\":-0.5}", "{\"é\": \"ü\"}" };
    static const char *const bad[] = { "", "[]", "{", "{a: 1}", "{\"a\": 01}", "{\"a\": tru}", "{\"a\": 1,}",
                                       "{\"a\" 1}", "{\"a\": \"\x01\"}", "{}}" };
    for (size_t i = 0; i < QT_ARRAY_LEN(good); i++) CHECK(accepts(g, good[i]), "json object accepts %s", good[i]);
    for (size_t i = 0; i < QT_ARRAY_LEN(bad); i++) CHECK(!accepts(g, bad[i]), "json object refuses %s", bad[i]);
    qt_rng rng;
    qt_rng_seed(&rng, 7);
    int n_ok = 0, n_walks = 0;
    for (int w = 0; w < WALKS; w++) {
        char *t = walk(g, bv, &rng);
        if (!t) continue;
        n_walks++;
        cJSON *j = cJSON_Parse(t);
        CHECK(cJSON_IsObject(j), "generated text parses as a JSON object: %s", t);
        n_ok += cJSON_IsObject(j);
        cJSON_Delete(j);
        qt_free(t);
    }
    CHECK(n_walks > WALKS / 2, "%d of %d walks ended", n_walks, WALKS);
    printf("json_object: %d generated texts, %d parse as objects\n", n_walks, n_ok);
    qt_grammar_free(g);
}

// Conformance of a parsed instance to the test schema below, checked directly.
static bool conforms(const cJSON *j) {
    if (!cJSON_IsObject(j)) return false;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"), *age = cJSON_GetObjectItemCaseSensitive(j, "age");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags"), *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next");
    if (!cJSON_IsString(name) || strlen(name->valuestring) > 8) return false;
    if (!cJSON_IsNumber(age) || age->valuedouble != floor(age->valuedouble)) return false;
    if (tags && (!cJSON_IsArray(tags) || cJSON_GetArraySize(tags) > 3)) return false;
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) if (!cJSON_IsString(t)) return false;
    if (kind && !(cJSON_IsString(kind) && (!strcmp(kind->valuestring, "cat") || !strcmp(kind->valuestring, "dog")))) return false;
    if (next && !cJSON_IsNull(next) && !conforms(next)) return false;
    const cJSON *k;
    int n = 0;
    cJSON_ArrayForEach(k, j) {
        n++;
        if (strcmp(k->string, "name") && strcmp(k->string, "age") && strcmp(k->string, "tags") && strcmp(k->string, "kind") &&
            strcmp(k->string, "next"))
            return false;
    }
    return n >= 2;
}

static void test_schema(const byte_vocab *bv) {
    static const char SCHEMA[] =
        "{\"$defs\": {\"pet\": {\"type\": \"object\", \"properties\": {"
        "  \"name\": {\"type\": \"string\", \"maxLength\": 8, \"description\": \"ignored\"},"
        "  \"age\": {\"type\": \"integer\"},"
        "  \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"maxItems\": 3},"
        "  \"kind\": {\"enum\": [\"cat\", \"dog\"]},"
        "  \"next\": {\"anyOf\": [{\"$ref\": \"#/$defs/pet\"}, {\"type\": \"null\"}]}},"
        " \"required\": [\"name\", \"age\"], \"additionalProperties\": false}},"
        " \"$ref\": \"#/$defs/pet\"}";
    cJSON *s = cJSON_Parse(SCHEMA);
    char err[256];
    char *gbnf = qt_json_schema_to_gbnf(s, err, sizeof(err));
    CHECK(gbnf != NULL, "schema converts: %s", err);
    qt_grammar *g = gbnf ? qt_grammar_parse(gbnf, err, sizeof(err)) : NULL;
    CHECK(g != NULL, "schema grammar parses: %s\n%s", err, gbnf ? gbnf : "");
    if (g) {
        CHECK(accepts(g, "{\"name\": \"Bo\", \"age\": 3}"), "required only");
        CHECK(accepts(g, "{\"name\": \"Bo\", \"age\": 3, \"kind\": \"dog\", \"next\": {\"name\": \"x\", \"age\": 1, \"next\": null}}"),
              "optional and recursive members");
        CHECK(accepts(g, "{\"name\": \"Bo\", \"age\": 3, \"tags\": [\"a\", \"b\"]}"), "array member");
        CHECK(!accepts(g, "{\"age\": 3, \"name\": \"Bo\"}"), "members out of order");
        CHECK(!accepts(g, "{\"name\": \"Bo\"}"), "a required member missing");
        CHECK(!accepts(g, "{\"name\": \"Bo\", \"age\": 3.5}"), "integer refuses a fraction");
        CHECK(!accepts(g, "{\"name\": \"Bo\", \"age\": 3, \"kind\": \"cow\"}"), "enum refuses another value");
        CHECK(!accepts(g, "{\"name\": \"Bo\", \"age\": 3, \"tags\": [\"a\", \"b\", \"c\", \"d\"]}"), "maxItems");
        CHECK(!accepts(g, "{\"name\": \"abcdefghi\", \"age\": 3}"), "maxLength");
        CHECK(!accepts(g, "{\"name\": \"Bo\", \"age\": 3, \"extra\": 1}"), "additionalProperties false");
        qt_rng rng;
        qt_rng_seed(&rng, 11);
        int n_walks = 0, n_ok = 0;
        for (int w = 0; w < WALKS; w++) {
            char *t = walk(g, bv, &rng);
            if (!t) continue;
            n_walks++;
            cJSON *j = cJSON_Parse(t);
            bool ok = j && conforms(j);
            CHECK(ok, "generated text conforms to the schema: %s", t);
            n_ok += ok;
            cJSON_Delete(j);
            qt_free(t);
        }
        CHECK(n_walks > WALKS / 4, "%d of %d walks ended", n_walks, WALKS);
        printf("json_schema: %d generated texts, %d conform\n", n_walks, n_ok);
    }
    qt_grammar_free(g);
    qt_free(gbnf);
    cJSON_Delete(s);
    static const struct { const char *schema, *want; } bad[] = {
        { "{\"type\": \"string\", \"pattern\": \"a+\"}", "\"pattern\" is not supported" },
        { "{\"type\": \"number\", \"minimum\": 0}", "\"minimum\" is not supported" },
        { "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"frob\"}}}", "schema.properties.a: unknown type" },
        { "{\"$ref\": \"http://x/y\"}", "$ref" },
        { "{\"type\": \"object\", \"properties\": {\"a\": {}}, \"required\": [\"b\"]}", "required names" },
        { "{\"type\": \"array\", \"maxItems\": 1e300}", "maxItems must be an integer" },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(bad); i++) {
        s = cJSON_Parse(bad[i].schema);
        gbnf = qt_json_schema_to_gbnf(s, err, sizeof(err));
        CHECK(!gbnf && strstr(err, bad[i].want), "bad schema %zu: want \"%s\", got \"%s\"", i, bad[i].want, gbnf ? gbnf : err);
        qt_free(gbnf);
        cJSON_Delete(s);
    }
}

int main(void) {
    byte_vocab bv;
    vocab_init(&bv);
    test_gbnf();
    test_json_object(&bv);
    test_schema(&bv);
    vocab_free(&bv);
    TEST_END();
}
