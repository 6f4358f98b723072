// test-jinja.c: the Jinja engine (src/template/jinja.h) against python3-jinja2
// in transformers' environment (tests/ref/make_jinja_refs.py, output in
// tests/data/chat-templates/jinja-refs.json): every template of the corpus
// (corpus.json, 48 real chat templates, plus the Phi-3 vocabulary GGUF's) on
// every conversation of conversations.json, and the engine cases. Outputs
// must be byte-identical; a render that raised in Python must fail here too.
// Also: syntax errors name the line, hostile templates hit limits instead of
// the stack or the heap.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "io/gguf.h"
#include "template/jinja.h"
#include "test.h"

#define DIR "tests/data/chat-templates/"
#define REFS_MAGIC "qtune-jinja-refs"
#define REFS_VERSION 1
#define MIN_TEMPLATES 30          // the corpus the issue asks for
#define MIN_CONVERSATIONS 10

static int n_diff_shown;

static void show_diff(const char *what, const char *want, const char *got, size_t got_len) {
    if (n_diff_shown++ > 12) return;
    size_t wl = strlen(want), i = 0;
    while (i < wl && i < got_len && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  %s: first difference at byte %zu\n    want: %.*s\n    got:  %.*s\n", what, i,
            (int)QT_MIN(wl - from, 120), want + from, (int)QT_MIN(got_len - from, 120), got + from);
}

static char *template_text(const char *name, const cJSON *corpus) {
    const cJSON *t;
    cJSON_ArrayForEach(t, corpus) {
        const cJSON *n = cJSON_GetObjectItem(t, "name");
        if (strcmp(n->valuestring, name)) continue;
        char path[512];
        snprintf(path, sizeof(path), DIR "corpus/%s", cJSON_GetObjectItem(t, "file")->valuestring);
        return qt_read_file(path, NULL);
    }
    if (strcmp(name, "gguf:ggml-vocab-phi-3") == 0) {
        char path[512];
        snprintf(path, sizeof(path), "%s/llama.cpp-vocab/ggml-vocab-phi-3.gguf", test_models_dir());
        qt_gguf *g = qt_gguf_open(path);
        if (!g) return NULL;
        const char *s = NULL;
        char *out = qt_gguf_get_str(g, "tokenizer.chat_template", &s, true) == QT_OK ? qt_strdup(s) : NULL;
        qt_gguf_close(g);
        return out;
    }
    return NULL;
}

static void test_corpus(const cJSON *refs, int64_t now) {
    char *ctext = qt_read_file(DIR "corpus.json", NULL), *vtext = qt_read_file(DIR "conversations.json", NULL);
    cJSON *corpus = cJSON_Parse(ctext), *convs = cJSON_Parse(vtext);
    CHECK(cJSON_GetArraySize(corpus) >= MIN_TEMPLATES, "corpus has %d templates", cJSON_GetArraySize(corpus));
    CHECK(cJSON_GetArraySize(convs) >= MIN_CONVERSATIONS, "%d conversations", cJSON_GetArraySize(convs));
    qt_jinja_opts o = { .now = now };
    int n_ok = 0, n_err = 0, n_bad = 0, n_templates = 0;
    const char *last_name = "";
    qt_jinja *tpl = NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(refs, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "template")->valuestring;
        int ci = cJSON_GetObjectItem(c, "conversation")->valueint;
        if (strcmp(name, last_name) != 0) {
            qt_jinja_free(tpl);
            char *src = template_text(name, corpus);
            char err[512];
            tpl = src ? qt_jinja_parse(src, strlen(src), err, sizeof(err)) : NULL;
            CHECK(tpl != NULL, "%s: %s", name, src ? err : "template not found");
            qt_free(src);
            last_name = name;
            n_templates++;
        }
        if (!tpl) continue;
        // the variables transformers passes: find the template's bos/eos in corpus.json (Phi-3 GGUF: its own)
        const cJSON *conv = cJSON_GetArrayItem(convs, ci), *t;
        const char *bos = "<s>", *eos = "<|endoftext|>";
        cJSON_ArrayForEach(t, corpus)
            if (!strcmp(cJSON_GetObjectItem(t, "name")->valuestring, name)) {
                bos = cJSON_GetObjectItem(t, "bos_token")->valuestring;
                eos = cJSON_GetObjectItem(t, "eos_token")->valuestring;
            }
        cJSON *vars = cJSON_CreateObject();
        cJSON_AddItemToObject(vars, "messages", cJSON_Duplicate(cJSON_GetObjectItem(conv, "messages"), true));
        const cJSON *tools = cJSON_GetObjectItem(conv, "tools"), *docs = cJSON_GetObjectItem(conv, "documents");
        cJSON_AddItemToObject(vars, "tools", tools ? cJSON_Duplicate(tools, true) : cJSON_CreateNull());
        cJSON_AddItemToObject(vars, "documents", docs ? cJSON_Duplicate(docs, true) : cJSON_CreateNull());
        cJSON_AddBoolToObject(vars, "add_generation_prompt", cJSON_IsTrue(cJSON_GetObjectItem(conv, "add_generation_prompt")));
        cJSON_AddStringToObject(vars, "bos_token", bos);
        cJSON_AddStringToObject(vars, "eos_token", eos);
        char err[512];
        size_t len = 0;
        char *got = qt_jinja_render(tpl, vars, &o, &len, err, sizeof(err));
        const cJSON *want = cJSON_GetObjectItem(c, "output");
        char what[256];
        snprintf(what, sizeof(what), "%s on conversation %d", name, ci);
        if (want) {
            bool same = got && len == strlen(want->valuestring) && memcmp(got, want->valuestring, len) == 0;
            CHECK(same, "%s: %s", what, got ? "output differs" : err);
            if (got && !same) show_diff(what, want->valuestring, got, len);
            n_ok += same;
            n_bad += !same;
        } else {
            CHECK(got == NULL, "%s: jinja2 raised (%s), we rendered", what, cJSON_GetObjectItem(c, "error")->valuestring);
            n_err += got == NULL;
            n_bad += got != NULL;
        }
        qt_free(got);
        cJSON_Delete(vars);
    }
    qt_jinja_free(tpl);
    printf("corpus: %d templates, %d renders identical, %d errors where jinja2 raised, %d mismatches\n", n_templates, n_ok,
           n_err, n_bad);
    cJSON_Delete(corpus);
    cJSON_Delete(convs);
    qt_free(ctext);
    qt_free(vtext);
}

static void test_engine(const cJSON *refs, int64_t now) {
    qt_jinja_opts o = { .now = now };
    int i = 0, n_same = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(refs, "engine")) {
        const char *src = cJSON_GetObjectItem(c, "source")->valuestring;
        char err[512];
        qt_jinja *t = qt_jinja_parse(src, strlen(src), err, sizeof(err));
        const cJSON *want = cJSON_GetObjectItem(c, "output");
        char *got = NULL;
        size_t len = 0;
        if (t) got = qt_jinja_render(t, cJSON_GetObjectItem(c, "variables"), &o, &len, err, sizeof(err));
        if (want) {
            bool same = got && len == strlen(want->valuestring) && memcmp(got, want->valuestring, len) == 0;
            CHECK(same, "engine case %d (%.60s): %s", i, src, got ? "output differs" : err);
            if (got && !same) show_diff("engine case", want->valuestring, got, len);
            n_same += same;
        } else {
            CHECK(got == NULL, "engine case %d (%.60s): jinja2 raised (%s), we rendered \"%s\"", i, src,
                  cJSON_GetObjectItem(c, "error")->valuestring, got);
            if (!got) printf("  case %d: error as jinja2 (%s) - ours: %s\n", i, cJSON_GetObjectItem(c, "error")->valuestring, err);
        }
        qt_free(got);
        qt_jinja_free(t);
        i++;
    }
    printf("engine: %d cases, %d outputs identical\n", i, n_same);
}

// Syntax errors name the line; hostile templates stop at a limit.
static void test_errors(void) {
    static const struct { const char *src, *want; } bad[] = {
        { "line one\n{{ x", "line 2" },
        { "{% if x %}\n\nno end", "line 3" },
        { "{{ x | nosuchfilter }}", "no filter named 'nosuchfilter'" },
        { "{{ x is nosuchtest }}", "no test named" },
        { "{% for x in y %}{% endif %}", "unknown or unsupported tag 'endif'" },
        { "{{ 'unterminated }}", "unterminated string" },
        { "{% break %}", "outside a loop" },
        { "{% include 'x' %}", "unsupported tag 'include'" },
        { "{{ (((((((((( }}", "unexpected" },
        { "{{ 99999999999999999999 }}", "integer literal too large" },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(bad); i++) {
        char err[256];
        qt_jinja *t = qt_jinja_parse(bad[i].src, strlen(bad[i].src), err, sizeof(err));
        CHECK(!t && strstr(err, bad[i].want), "syntax error %zu: want \"%s\", got \"%s\"", i, bad[i].want, t ? "(parsed)" : err);
        qt_jinja_free(t);
    }
    // deep nesting is refused, not a stack overflow
    size_t n = 100000;
    char *deep = qt_malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) deep[3 + i] = '-';
    strcpy(deep + 3 + n, "1 }}");
    char err[256];
    qt_jinja *t = qt_jinja_parse(deep, strlen(deep), err, sizeof(err));
    CHECK(!t && strstr(err, "nests"), "100000 unary minus: %s", t ? "parsed" : err);
    qt_jinja_free(t);
    qt_free(deep);
    // runaway output, memory and recursion are limits, not crashes
    static const struct { const char *src, *want; } heavy[] = {
        { "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}", "output is larger" },
        { "{% set ns = namespace(s='x') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "memory" },
        { "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "deep" },
    };
    qt_jinja_opts o = { .max_output = 1 << 20, .max_memory = 64 << 20 };
    for (size_t i = 0; i < QT_ARRAY_LEN(heavy); i++) {
        t = qt_jinja_parse(heavy[i].src, strlen(heavy[i].src), err, sizeof(err));
        CHECK(t != NULL, "heavy %zu parses: %s", i, err);
        char *out = t ? qt_jinja_render(t, NULL, &o, NULL, err, sizeof(err)) : NULL;
        CHECK(!out && strstr(err, heavy[i].want), "heavy template %zu: want \"%s\", got \"%s\"", i, heavy[i].want,
              out ? "(rendered)" : err);
        qt_free(out);
        qt_jinja_free(t);
    }
}

// Mutated corpus templates (bytes flipped, inserted, cut) parse or fail
// cleanly, and those that parse render or fail cleanly: run under ASan in
// `make asan`, this is the hostile-template check.
#define MUTANTS_PER_TEMPLATE 40
static void test_mutants(void) {
    char *ctext = qt_read_file(DIR "corpus.json", NULL);
    cJSON *corpus = cJSON_Parse(ctext);
    cJSON *vars = cJSON_Parse("{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"},"
                              " {\"role\": \"assistant\", \"content\": \"a\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                              "\"arguments\": {\"x\": 1}}}]}], \"tools\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\"}");
    static const char INSERTS[] = "{}%#-+()[]'\".|,~=*";
    qt_rng rng;
    qt_rng_seed(&rng, 1234);
    qt_jinja_opts o = { .max_output = 1 << 16, .max_memory = 16 << 20 };
    int n_parsed = 0, n_total = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, corpus) {
        char path[512];
        snprintf(path, sizeof(path), DIR "corpus/%s", cJSON_GetObjectItem(t, "file")->valuestring);
        size_t n = 0;
        char *src = qt_read_file(path, &n);
        if (!src || n == 0) { qt_free(src); continue; }
        char *m = qt_malloc(n + 8);
        for (int k = 0; k < MUTANTS_PER_TEMPLATE; k++) {
            memcpy(m, src, n + 1);
            size_t len = n;
            for (int e = 0, edits = 1 + (int)(qt_rng_u64(&rng) % 2); e < edits; e++) {
                size_t at = (size_t)(qt_rng_u64(&rng) % len);
                switch (qt_rng_u64(&rng) % 3) {
                case 0: m[at] = INSERTS[qt_rng_u64(&rng) % (sizeof(INSERTS) - 1)]; break;
                case 1: len = at + 1; break;   // truncate
                default: memmove(m + at + 1, m + at, len - at); m[at] = INSERTS[qt_rng_u64(&rng) % (sizeof(INSERTS) - 1)]; len++;
                }
            }
            m[len] = 0;
            char err[256];
            qt_jinja *j = qt_jinja_parse(m, len, err, sizeof(err));
            n_total++;
            if (!j) { CHECK(strncmp(err, "line ", 5) == 0, "a parse error names the line: %s", err); continue; }
            n_parsed++;
            char *out = qt_jinja_render(j, vars, &o, NULL, err, sizeof(err));
            qt_free(out);
            qt_jinja_free(j);
        }
        qt_free(m);
        qt_free(src);
    }
    printf("mutants: %d templates, %d parsed\n", n_total, n_parsed);
    cJSON_Delete(vars);
    cJSON_Delete(corpus);
    qt_free(ctext);
}

int main(void) {
    setenv("TZ", "UTC", 1);   // strftime_now renders local time; the references are in UTC
    tzset();
    char *text = qt_read_file(DIR "jinja-refs.json", NULL);
    cJSON *refs = cJSON_Parse(text);
    CHECK(refs && cJSON_IsString(cJSON_GetObjectItem(refs, "magic")) &&
          !strcmp(cJSON_GetObjectItem(refs, "magic")->valuestring, REFS_MAGIC) &&
          cJSON_GetObjectItem(refs, "version")->valueint == REFS_VERSION,
          DIR "jinja-refs.json: not a %s v%d file", REFS_MAGIC, REFS_VERSION);
    if (refs) {
        int64_t now = (int64_t)cJSON_GetObjectItem(refs, "now")->valuedouble;
        test_engine(refs, now);
        test_corpus(refs, now);
    }
    test_errors();
    test_mutants();
    cJSON_Delete(refs);
    qt_free(text);
    TEST_END();
}
