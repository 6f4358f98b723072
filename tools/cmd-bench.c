// cmd-bench.c: `qtune bench`: prompt processing (pp) and token generation
// (tg) speed, measured like llama.cpp's llama-bench so the two can be
// compared on the same file: pp = N random tokens in one fresh context in
// batches; tg = N tokens decoded one at a time, both from an empty context
// or, with -d D, after D tokens already in the cache (llama-bench's -d:
// attention over a long cache, untimed fill).
// Reports the median over repetitions (the host is noisy).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "backend/backend-cpu.h"
#include "common.h"
#include "kernels/kernels.h"
#include "model/context.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Runs one test; returns tokens/s or a negative value on failure.
// The depth's tokens are evaluated once (first call) and kept: each run
// truncates the context back to them.
static double run_once(qt_ctx *ctx, const int32_t *toks, int depth, int n_prompt, int n_gen) {
    if (qt_ctx_n_past(ctx, 0) < depth) {
        qt_ctx_truncate(ctx, 0);
        if (!qt_ctx_eval(ctx, toks, depth)) return -1;
    }
    qt_ctx_truncate(ctx, depth);
    toks += depth;
    double t0 = qt_time_s();
    if (n_prompt > 0) {
        if (!qt_ctx_eval(ctx, toks, n_prompt)) return -1;
    } else {
        for (int i = 0; i < n_gen; i++)
            if (!qt_ctx_eval(ctx, &toks[i], 1)) return -1;
    }
    double dt = qt_time_s() - t0;
    return (n_prompt > 0 ? n_prompt : n_gen) / dt;
}

int qt_cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    int n_prompt = 512, n_gen = 128, depth = 0, threads = 0, reps = 5, n_batch = 512, verbose = 1;
    const char *device = NULL, *quantize = NULL;
    bool no_mmap = false;
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "model: .gguf file or Hugging Face folder" },
        { "n-prompt", 'p', QT_OPT_INT, &n_prompt, "N", "prompt tokens for the pp test; 0 = skip (default 512)", NULL, "[0,10000000]" },
        { "n-gen", 'n', QT_OPT_INT, &n_gen, "N", "tokens for the tg test; 0 = skip (default 128)", NULL, "[0,10000000]" },
        { "n-depth", 'd', QT_OPT_INT, &depth, "N", "tokens already in the cache when each test starts (default 0)", NULL, "[0,10000000]" },
        QT_CLI_THREADS_OPT(threads),
        QT_CLI_NO_MMAP_OPT(no_mmap),
        QT_CLI_DEVICE_OPT(device),
        { "batch-size", 'b', QT_OPT_INT, &n_batch, "N", "prompt tokens per forward pass (default 512)", NULL, "[1,1000000]" },
        { "repetitions", 'r', QT_OPT_INT, &reps, "N", "repetitions; the median is reported (default 5)", NULL, "[1,1000]" },
        QT_CLI_VERBOSE_OPT(verbose),
        { "quantize", 0, QT_OPT_STR, &quantize, "TYPE", "quantize the projections at load, as train --quantize (nf4, ...)" },
        { 0 },
    };
    const qt_cmd_spec spec = { "bench", "-m MODEL [options]",
                               "Measure prompt processing and generation speed in tokens/s (median of repetitions).",
                               opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (n_prompt < 0 || n_gen < 0 || reps <= 0 || n_batch <= 0 || (n_prompt == 0 && n_gen == 0)) {
        qt_log_error("qtune bench: -p and -n must be >= 0 (not both 0), -r and -b > 0");
        return 2;
    }
    qt_model *m = qt_cli_load_model(model, NULL, false);
    if (!m) return 1;
    if (no_mmap && qt_model_copy_weights(m) != QT_OK) {
        qt_model_free(m);
        return 1;
    }
    if (quantize && qt_model_quantize_name(m, quantize) != QT_OK) {
        qt_model_free(m);
        return 1;
    }
    int nth = qt_cli_threads(threads), rc = 1;
    int n_ctx = depth + QT_MAX(n_prompt, n_gen);
    qt_cli_backend cb = { 0 };
    qt_ctx *ctx = NULL;
    if (qt_cli_backend_init(&cb, m, device, nth) == QT_OK) ctx = qt_ctx_init(m, cb.be, n_ctx, n_batch, false);
    int32_t *toks = qt_malloc(sizeof(int32_t) * (size_t)n_ctx);
    double *ts = qt_malloc(sizeof(double) * (size_t)reps);
    if (!ctx) goto done;
    qt_rng rng;
    qt_rng_seed(&rng, 42);
    for (int i = 0; i < n_ctx; i++) toks[i] = (int32_t)(qt_rng_u64(&rng) % (uint64_t)m->cfg.n_vocab);
    printf("| model | size | params | isa | threads | test | t/s |\n|---|---|---|---|---|---|---|\n");
    for (int test = 0; test < 2; test++) {
        int np = test == 0 ? n_prompt : 0, ng = test == 1 ? n_gen : 0;
        if (np == 0 && ng == 0) continue;
        // warm-up: pages in the weights and first-touches the buffers of a whole
        // prompt (as llama-bench's, which runs the full prompt first)
        run_once(ctx, toks, depth, np, ng ? QT_MIN(ng, 4) : 0);
        for (int i = 0; i < reps; i++) {
            ts[i] = run_once(ctx, toks, depth, np, ng);
            if (ts[i] < 0) goto done;
        }
        qsort(ts, (size_t)reps, sizeof(double), cmp_double);
        double med = reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]);
        char at[32] = "";
        if (depth > 0) snprintf(at, sizeof(at), " @ d%d", depth);
        printf("| %s | %.2f GiB | %.2f B | %s | %d | %s%d%s | %.2f (min %.2f, max %.2f) |\n", m->name,
               qt_model_weight_bytes(m) / 1073741824.0, qt_model_n_params(m) / 1e9, cb.be && qt_backend_cpu_kctx(cb.be) ? qt_backend_cpu_kctx(cb.be)->kt->isa : cb.be ? cb.be->name : "?", nth,
               np ? "pp" : "tg", np ? np : ng, at, med, ts[0], ts[reps - 1]);
        fflush(stdout);
    }
    rc = 0;
done:
    qt_free(ts);
    qt_free(toks);
    qt_ctx_free(ctx);
    qt_cli_backend_free(&cb);
    qt_model_free(m);
    return rc;
}
