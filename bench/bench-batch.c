// bench-batch.c: the cost of one forward of N one-token sequences (a
// server's decode step with N busy slots), N = 1, 2, 4, 8, 16: ms per
// forward and tokens/s, median of `reps` after a warm-up. Each slot holds a
// prompt of `ctx` tokens first, so attention reads a realistic cache.
// chunk > 0: each forward also carries a prompt chunk of that many tokens
// in one more slot (a server step where a new request joins the decoders).
//   build/bench/bench-batch MODEL [threads=2] [reps=7] [ctx=32] [max_n=16] [chunk=0]
// Not a test: numbers only.
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "backend/backend.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "model/context.h"
#include "model/model.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [threads=2] [reps=7] [ctx=32] [max_n=16]\n", argv[0]);
        return 2;
    }
    int nth = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 7;
    int ctx = argc > 4 ? atoi(argv[4]) : 32, max_n = argc > 5 ? atoi(argv[5]) : 16;
    int chunk = argc > 6 ? atoi(argv[6]) : 0;
    if (nth < 1 || reps < 1 || ctx < 1 || max_n < 1 || max_n > 63 || chunk < 0 || chunk > 4096) return 2;
    qt_model *m = qt_model_load(argv[1]);
    if (!m) return 1;
    qt_pool *pool = qt_pool_init(nth);
    qt_backend *be = qt_backend_init("cpu", pool);
    if (!be || qt_model_bind(m, be) != QT_OK) return 1;
    qt_ctx *c = qt_ctx_init_slots(m, be, ctx + chunk + 8, QT_MAX(ctx, max_n + chunk), max_n + 1, false);
    if (!c) return 1;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(ctx + max_n + chunk));
    qt_rng rng;
    qt_rng_seed(&rng, 3);
    for (int i = 0; i < ctx + max_n + chunk; i++) tok[i] = (int32_t)(qt_rng_u64(&rng) % (uint64_t)m->cfg.n_vocab);
    for (int s = 0; s < max_n; s++)
        if (!qt_ctx_eval_slot(c, s, tok, ctx)) return 1;
    qt_ctx_seq seqs[65];
    double t1 = 0;
    printf("| %s | %s | threads %d | prompt chunk %d |\n| decoding sequences | ms | tokens/s | x N=1 |\n|---:|---:|---:|---:|\n",
           m->name, qt_kernels()->isa, nth, chunk);
    for (int n = 1; n <= max_n; n *= 2) {
        double ts[64];
        for (int r = 0; r <= reps; r++) {
            for (int s = 0; s < n; s++) {
                qt_ctx_truncate_slot(c, s, ctx);
                seqs[s] = (qt_ctx_seq){ tok + ctx + s, 1, s };
            }
            qt_ctx_truncate_slot(c, max_n, 0);
            if (chunk) seqs[n] = (qt_ctx_seq){ tok + ctx + max_n, chunk, max_n };
            double t0 = qt_time_s();
            if (!qt_ctx_eval_batch(c, seqs, n + (chunk > 0))) return 1;
            if (r) ts[r - 1] = qt_time_s() - t0;
        }
        qsort(ts, (size_t)reps, sizeof(double), cmp_double);
        double med = ts[reps / 2];
        if (n == 1) t1 = med;
        printf("| %d | %.1f | %.1f | %.2f |\n", n, med * 1e3, (n + chunk) / med, ((n + chunk) / med) / ((1 + chunk) / t1));
    }
    qt_ctx_free(c);
    qt_backend_free(be);
    qt_pool_free(pool);
    qt_model_free(m);
    free(tok);
    return 0;
}
