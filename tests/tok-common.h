// tok-common.h: helpers shared by the tokenizer tests (included by
// tests/test-tokenizer.c and tests/test-tokenizer-bpe.c, after test.h).
#ifndef QT_TOK_COMMON_H
#define QT_TOK_COMMON_H

#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "tokenizer/tokenizer.h"

// Encodes into a malloc'd array; *n set. Checks the cap protocol on the way.
static int32_t *encode(const qt_tokenizer *t, const char *s, size_t len, bool bos, bool special, int *n) {
    int32_t small[2];
    int need = qt_tokenize(t, s, len, bos, special, small, 2);
    CHECK(need >= 0, "qt_tokenize failed");
    if (need < 0) { *n = 0; return qt_malloc(1); }
    int32_t *ids = qt_malloc((size_t)need * sizeof(int32_t) + 1);
    int got = qt_tokenize(t, s, len, bos, special, ids, need);
    CHECK(got == need, "second call gave %d ids, first said %d", got, need);
    for (int i = 0; i < 2 && i < need; i++) CHECK(ids[i] == small[i], "truncated call differs at %d", i);
    *n = got;
    return ids;
}

static char *decode(const qt_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = 64 * (size_t)n + 64, k = 0;
    char *out = qt_malloc(cap + 1);
    qt_detok d;
    qt_detok_init(&d);
    for (int i = 0; i < n; i++) k += qt_detok_push(&d, t, ids[i], out + k, cap - k);
    k += qt_detok_flush(&d, out + k, cap - k);
    out[k] = 0;
    *len = k;
    return out;
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

// ---- llama.cpp test-tokenizer-0 vectors ----

static const char SEP[] = "\n__ggml_vocab_test__\n";

// All cases of ../shared/models/<vectors_rel>.inp/.out, no BOS, no special
// parsing; every case must give exactly the expected ids.
static void check_llama_vectors(const char *name, const qt_tokenizer *t, const char *vectors_rel) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.inp", test_models_dir(), vectors_rel);
    size_t inp_len = 0;
    char *inp = qt_read_file(path, &inp_len);
    snprintf(path, sizeof(path), "%s/%s.out", test_models_dir(), vectors_rel);
    char *outf = qt_read_file(path, NULL);
    CHECK(t && inp && outf, "%s: tokenizer and %s.inp/.out", name, vectors_rel);
    if (!t || !inp || !outf) { qt_free(inp); qt_free(outf); return; }
    int n_cases = 0, n_ok = 0;
    char *p = inp, *end = inp + inp_len, *line = outf;
    while (p < end) {
        char *s = memmem(p, (size_t)(end - p), SEP, sizeof(SEP) - 1);
        if (!s) break;
        size_t len = (size_t)(s - p);
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int32_t want[512];
        int n_want = 0;
        for (char *q = line; *q && n_want < 512;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (int32_t)v;
            q = e;
        }
        int n_got = 0;
        int32_t *got = encode(t, p, len, false, false, &n_got);
        bool same = n_got == n_want && memcmp(got, want, sizeof(int32_t) * (size_t)n_got) == 0;
        CHECK(same, "%s case %d ('%.*s') differs", name, n_cases, (int)len, p);
        if (!same) { print_ids("want", want, n_want); print_ids("got ", got, n_got); }
        n_ok += same;
        qt_free(got);
        n_cases++;
        p = s + sizeof(SEP) - 1;
        line = nl ? nl + 1 : line + strlen(line);
    }
    CHECK(n_cases == 46, "%s: %d cases parsed, expected 46", name, n_cases);
    printf("%s: %d/%d llama.cpp vectors match\n", name, n_ok, n_cases);
    qt_free(inp);
    qt_free(outf);
}

#endif
