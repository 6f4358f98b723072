// scratch.c: qt_kernel_scratch (matmul-internal.h), the per-thread buffers
// the matmul drivers and the packed gemm keep between calls, so hot loops do
// not map and fault in fresh pages on every call. One thread-specific set of
// slots per thread, freed by the key's destructor when the thread exits.
// Deliberately not: shrinking, sharing buffers between threads.
#include <pthread.h>
#include <stdint.h>

#include "base/base.h"
#include "kernels/matmul-internal.h"

typedef struct {
    void *raw[QT_SCRATCH_COUNT];
    size_t cap[QT_SCRATCH_COUNT];
} scratch_set;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < QT_SCRATCH_COUNT; i++) qt_free(s->raw[i]);
    qt_free(s);
}

static void scratch_key_init(void) { QT_ASSERT(pthread_key_create(&g_scratch_key, scratch_free) == 0); }

void *qt_kernel_scratch(int slot, size_t n) {
    QT_ASSERT(slot >= 0 && slot < QT_SCRATCH_COUNT);
    pthread_once(&g_scratch_once, scratch_key_init);
    scratch_set *s = pthread_getspecific(g_scratch_key);
    if (!s) {
        s = qt_calloc(1, sizeof(*s));
        QT_ASSERT(pthread_setspecific(g_scratch_key, s) == 0);
    }
    if (s->cap[slot] < n) {
        qt_free(s->raw[slot]);
        s->raw[slot] = qt_malloc(n + 64);
        s->cap[slot] = n;
    }
    return (void *)(((uintptr_t)s->raw[slot] + 63) & ~(uintptr_t)63);
}
