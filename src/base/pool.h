// pool.h: a persistent thread pool for the hot kernels.
//
// One job at a time: qt_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) on
// nth threads (ith 0 is the calling thread) and returns when all are done.
// Workers spin briefly between jobs and then sleep, because a decode step runs
// hundreds of small jobs and a condition-variable wake-up per job costs more
// than the job. A NULL pool runs fn(ctx, 0, 1) on the caller.
#ifndef QT_POOL_H
#define QT_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct qt_pool qt_pool;
typedef void (*qt_pool_fn)(void *ctx, int ith, int nth);

qt_pool *qt_pool_init(int n_threads);   // n_threads <= 0: one per online CPU
void qt_pool_free(qt_pool *pool);       // NULL is a no-op
int qt_pool_n_threads(const qt_pool *pool);  // 1 for NULL
void qt_pool_run(qt_pool *pool, qt_pool_fn fn, void *ctx);

// The share [*i0, *i1) of n items for thread ith of nth: whole units of
// `align` items dealt out as evenly as they go (boundaries multiples of
// align, the last one n), the same for every call with the same arguments.
void qt_pool_split(int64_t n, int64_t align, int ith, int nth, int64_t *i0, int64_t *i1);

// A parallel for over [0, n): fn(ctx, i0, i1) on each thread's qt_pool_split
// share (boundaries multiples of align), or once on the caller for [0, n)
// when n < min_n or the pool has one thread.
typedef void (*qt_range_fn)(void *ctx, int64_t i0, int64_t i1);
void qt_pool_for(qt_pool *pool, int64_t n, int64_t align, int64_t min_n, qt_range_fn fn, void *ctx);

// A scratch buffer owned by the pool, 64-byte aligned, grown on demand and never
// shrunk, for data one job shares between its threads (e.g. activations
// quantized once for a matmul). Valid until the next qt_pool_wbuf call or
// qt_pool_free. The pool must not be NULL (no process-wide buffer exists:
// single-threaded callers keep their own).
void *qt_pool_wbuf(qt_pool *pool, size_t n);

#endif
