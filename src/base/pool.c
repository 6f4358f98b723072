// pool.c: the persistent thread pool behind pool.h.
//
// Jobs are published by bumping a generation counter; workers spin on it for a
// bounded time (SPIN_NS: pause hints, then sched_yield so an oversubscribed
// machine still makes progress) and then sleep on a condition
// variable, so back-to-back jobs of a decode step cost a cache-line round trip
// rather than a futex wake-up each. The caller is thread 0 and waits for a
// completion counter (the barrier at the end of each job).
// Deliberately not: work stealing, nested jobs, more than one job at a time.
// Follows the spirit of ggml-cpu's threadpool (ggml_barrier + polling workers).
#include "base/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif
#include <sched.h>

#include "base/base.h"

// How long an idle worker polls before going to sleep. Long enough to bridge
// the gaps between the matmuls of one token, short enough not to burn a core
// while the program waits for input.
#define SPIN_NS 300000
// Pause-spins before a spinning thread starts yielding its core on every
// iteration: when there are more runnable threads than cores (a shared machine,
// or n_threads > cores) the thread we wait for may need our core to finish.
#define SPIN_PAUSES 64

static inline void backoff(int i) {
    if (i < SPIN_PAUSES) cpu_relax();
    else sched_yield();
}

struct qt_pool {
    int n_threads;                 // including the caller
    pthread_t *threads;            // (n_threads - 1) workers
    // job state, written by the caller before the generation bump
    qt_pool_fn fn;
    void *ctx;
    _Atomic int running;           // assert: no nested/concurrent runs
    // each on its own cache line: the workers poll gen, the caller polls n_left
    _Alignas(64) _Atomic unsigned gen;
    _Alignas(64) _Atomic int n_left;
    _Alignas(64) _Atomic int n_sleeping;
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *wbuf;
    size_t wbuf_size;
};

typedef struct {
    qt_pool *pool;
    int ith;
} worker_arg;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Waits until gen differs from last (or stop is set); returns the new gen.
static unsigned wait_job(qt_pool *p, unsigned last) {
    unsigned g;
    uint64_t t0 = now_ns();
    for (int i = 1;; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != last || atomic_load(&p->stop)) return g;
        backoff(i);
        if ((i & 15) == 0 && now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);   // seq_cst: pairs with the caller's gen bump
    while ((g = atomic_load(&p->gen)) == last && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    qt_pool *p = wa->pool;
    int ith = wa->ith;
    qt_free(wa);
    unsigned last = 0;
    for (;;) {
        last = wait_job(p, last);
        if (atomic_load(&p->stop)) break;
        p->fn(p->ctx, ith, p->n_threads);
        atomic_fetch_sub_explicit(&p->n_left, 1, memory_order_release);
    }
    return NULL;
}

qt_pool *qt_pool_init(int n_threads) {
    if (n_threads <= 0) n_threads = qt_n_cpus();
    if (n_threads <= 0) n_threads = 1;
    qt_pool *p = qt_calloc_aligned(sizeof(*p), _Alignof(qt_pool));   // its cache-line members
    p->n_threads = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_left, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->running, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = qt_calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = qt_malloc(sizeof(*wa));
        wa->pool = p;
        wa->ith = i;
        int rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
        QT_ASSERT(rc == 0);
    }
    return p;
}

void qt_pool_free(qt_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (p->wbuf) qt_free_big(p->wbuf, p->wbuf_size);
    qt_free(p->threads);
    qt_free(p);
}

int qt_pool_n_threads(const qt_pool *p) { return p ? p->n_threads : 1; }

void qt_pool_run(qt_pool *p, qt_pool_fn fn, void *ctx) {
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    QT_ASSERT(atomic_exchange(&p->running, 1) == 0);   // one job at a time, no nesting
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_left, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);                        // seq_cst publish (release for fn/ctx)
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n_threads);
    for (int i = 0; atomic_load_explicit(&p->n_left, memory_order_acquire) > 0; i++) backoff(i);
    atomic_store(&p->running, 0);
}

static void *grow(void **buf, size_t *size, size_t n) {
    if (n <= *size && *buf) return *buf;
    size_t want = *size ? *size : 4096;
    while (want < n) want *= 2;
    if (*buf) qt_free_big(*buf, *size);
    *buf = qt_alloc_big(want, "pool work buffer");
    QT_ASSERT(*buf != NULL);
    *size = want;
    return *buf;
}

void *qt_pool_wbuf(qt_pool *p, size_t n) {
    QT_ASSERT(p != NULL);
    return grow(&p->wbuf, &p->wbuf_size, n);
}

void qt_pool_split(int64_t n, int64_t align, int ith, int nth, int64_t *i0, int64_t *i1) {
    QT_ASSERT(align > 0 && nth > 0 && ith >= 0 && ith < nth);
    int64_t n_units = (n + align - 1) / align;
    int64_t per = n_units / nth, extra = n_units % nth;
    int64_t u0 = ith * per + QT_MIN(ith, extra);
    int64_t u1 = u0 + per + (ith < extra);
    *i0 = QT_MIN(n, u0 * align);
    *i1 = QT_MIN(n, u1 * align);
}

typedef struct {
    int64_t n, align;
    qt_range_fn fn;
    void *ctx;
} for_job;

static void for_worker(void *arg, int ith, int nth) {
    const for_job *j = arg;
    int64_t i0, i1;
    qt_pool_split(j->n, j->align, ith, nth, &i0, &i1);
    if (i1 > i0) j->fn(j->ctx, i0, i1);
}

void qt_pool_for(qt_pool *pool, int64_t n, int64_t align, int64_t min_n, qt_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (n < min_n || qt_pool_n_threads(pool) == 1) {
        fn(ctx, 0, n);
        return;
    }
    for_job j = { n, align, fn, ctx };
    qt_pool_run(pool, for_worker, &j);
}
