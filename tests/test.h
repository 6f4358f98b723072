// test.h: minimal test harness shared by tests/test-*.c.
// Every check that fails prints where and why; a test binary exits non-zero
// when any check failed (TEST_END). Tolerances are named constants in each test.
#ifndef QT_TEST_H
#define QT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_n_pass, test_n_fail;

#define CHECK(cond, ...) do {                                              \
    if (cond) { test_n_pass++; }                                           \
    else {                                                                 \
        test_n_fail++;                                                     \
        fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
        fprintf(stderr, __VA_ARGS__);                                      \
        fputc('\n', stderr);                                               \
    }                                                                      \
} while (0)

// Path to ../shared/models (QT_SHARED_MODELS overrides), relative to the repo root.
static inline const char *test_models_dir(void) {
    const char *e = getenv("QT_SHARED_MODELS");
    return e ? e : "../shared/models";
}

#define TEST_END() do {                                                     \
    printf("%s: %d passed, %d failed\n", __FILE__, test_n_pass, test_n_fail); \
    return test_n_fail ? 1 : 0;                                             \
} while (0)

#endif
