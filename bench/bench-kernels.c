// bench-kernels.c: matmul throughput of the kernel table in use (QT_ISA
// overrides) and the machine's memory read bandwidth.
//
// For a 2048 x 2048 weight in F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K,
// Q5_K, Q6_K: T = 1 (decode; reported also as GB/s of weight bytes, with
// enough copies of the weight cycled that they do not fit in the last-level
// cache) and T = 64..512
// (prompt processing, GFLOP/s = 2 * n_in * n_out * T / s; 2..48: a server's
// decode steps and prompt chunks), 1 and 2 threads.
// Then the matmuls of a TinyLlama-1.1B layer at T = 512 (Q4_0, Q8_0, Q4_K, BF16, F16).
// "gemm": the float-activation gemms alone (f32 and bf16 ops, 1 thread);
// "bw": the memory bandwidth alone; "hot": the decode kernels (T = 1, one
// thread) on weights that stay in the L2 cache (2048 x 256), i.e. the rate
// they compute at when memory is not the limit, per table given in QT_ISA
// or the automatic one; "vecmath": the softmax exp-sum and SwiGLU per element.
// Usage: bench-kernels [max_threads=2] [seconds_per_case=0.3] [type|layer|gemm|bw|hot|vecmath] [T]
// Not a test: no checks, numbers only.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "quant/types.h"

#define N 2048
// decode reads this many bytes of distinct weights per round (> the 32 MiB L3)
#define DECODE_BYTES ((size_t)256 << 20)

// CPU time of the calling thread: cpu/wall below 100% means the machine was
// busy with something else and the wall-clock numbers understate the kernels.
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const uint64_t *p;
    size_t n;
    int prefetch;           // software prefetch 2 KiB ahead (as the gemv kernels do)
    uint64_t sums[64][8];   // per thread, padded
} bw_ctx;

static void bw_job(void *arg, int ith, int nth) {
    bw_ctx *c = arg;
    size_t per = c->n / nth, i0 = per * ith, i1 = ith == nth - 1 ? c->n : i0 + per;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    if (c->prefetch) {
        for (size_t i = i0; i + 8 <= i1; i += 8) {
            __builtin_prefetch(c->p + i + 256);
            s0 += c->p[i] + c->p[i + 4]; s1 += c->p[i + 1] + c->p[i + 5];
            s2 += c->p[i + 2] + c->p[i + 6]; s3 += c->p[i + 3] + c->p[i + 7];
        }
    } else {
        for (size_t i = i0; i + 4 <= i1; i += 4) {
            s0 += c->p[i]; s1 += c->p[i + 1]; s2 += c->p[i + 2]; s3 += c->p[i + 3];
        }
    }
    c->sums[ith][0] = s0 + s1 + s2 + s3;
}

static void bench_bandwidth(int max_threads) {
    size_t bytes = (size_t)1 << 30;
    uint64_t *buf = qt_alloc_big(bytes, "bandwidth buffer");
    if (!buf) return;
    memset(buf, 1, bytes);
    for (int pf = 0; pf < 2; pf++)
    for (int nth = 1; nth <= max_threads; nth++) {
        qt_pool *pool = qt_pool_init(nth);
        bw_ctx c = {.p = buf, .n = bytes / 8, .prefetch = pf};
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = qt_time_s();
            qt_pool_run(pool, bw_job, &c);
            best = QT_MIN(best, qt_time_s() - t0);
        }
        printf("memory read bandwidth, %d thread%s: %.1f GB/s (1 GiB sum%s)\n", nth, nth > 1 ? "s" : "",
               bytes / best / 1e9, pf ? ", software prefetch" : "");
        qt_pool_free(pool);
    }
    qt_free_big(buf, bytes);
}

// The seven matmuls of one TinyLlama-1.1B layer (n_embd 2048, 4 KV heads of
// 64, n_ff 5632) on a T-token prompt: an upper bound on prompt-processing
// speed (attention, norms and the output head excluded), 22 layers.
static void bench_llama_layer(qt_type wt, int nth, int T, double secs) {
    static const int shapes[7][2] = {{2048, 2048}, {2048, 256}, {2048, 256}, {2048, 2048},
                                     {2048, 5632}, {2048, 5632}, {5632, 2048}};   // (n_in, n_out)
    qt_pool *pool = qt_pool_init(nth);
    const qt_kctx kcx = qt_kctx_default(pool);
    void *w[7];
    float *x = qt_malloc((size_t)T * 5632 * sizeof(float)), *y = qt_malloc((size_t)T * 5632 * sizeof(float));
    qt_rng rng;
    qt_rng_seed(&rng, 7);
    for (size_t i = 0; i < (size_t)T * 5632; i++) x[i] = qt_rng_normal(&rng);
    float *row = qt_malloc(5632 * sizeof(float));
    double flops = 0;
    for (int m = 0; m < 7; m++) {
        int n_in = shapes[m][0], n_out = shapes[m][1];
        size_t ws = qt_row_size(wt, n_in);
        w[m] = qt_malloc(ws * n_out);
        for (int r = 0; r < n_out; r++) {
            for (int k = 0; k < n_in; k++) row[k] = qt_rng_normal(&rng) * 0.02f;
            qt_type_traits_get(wt)->from_float_ref(row, (char *)w[m] + r * ws, n_in);
        }
        flops += 2.0 * n_in * n_out * T;
    }
    int reps = 0;
    double t0 = qt_time_s(), c0 = thread_cpu_s(), dt;
    do {
        for (int m = 0; m < 7; m++) qt_matmul(&kcx, y, x, w[m], wt, shapes[m][0], shapes[m][1], T);
        reps++;
        dt = qt_time_s() - t0;
    } while (dt < secs);
    double per_layer = dt / reps, busy = (thread_cpu_s() - c0) / dt;
    printf("tinyllama-1.1B layer matmuls, %-5s T=%d %d thread%s: %.1f ms/layer, %.1f GFLOP/s, "
           "<= %.0f tok/s prompt (22 layers, matmuls only), cpu/wall %.0f%%\n", qt_type_name(wt), T, nth,
           nth > 1 ? "s" : "", per_layer * 1e3, flops / per_layer / 1e9, T / (22 * per_layer), 100 * busy);
    for (int m = 0; m < 7; m++) qt_free(w[m]);
    qt_free(x); qt_free(y); qt_free(row);
    qt_pool_free(pool);
}

// The float-activation gemms of the table, 1 thread: gemm_acc (C += A @ B),
// gemm_xwt (y = x @ W^T, W F32 / BF16 / Q4_0 dequantized into the panels)
// and gemm_acc_w (dx += dy @ W, W Q4_0 / BF16), f32 and bf16 ops, at the shapes of
// a TinyLlama training step (T = 512 tokens, 2048 x 2048 weights).
static void bench_gemm(const qt_kernel_table *kt, double secs) {
    const int64_t M = 512, NN = 2048, K = 2048;
    qt_rng rng;
    qt_rng_seed(&rng, 7);
    float *A = qt_malloc(sizeof(float) * M * K), *B = qt_malloc(sizeof(float) * K * NN), *C = qt_malloc(sizeof(float) * M * NN);
    for (int64_t i = 0; i < M * K; i++) A[i] = qt_rng_normal(&rng);
    for (int64_t i = 0; i < K * NN; i++) B[i] = qt_rng_normal(&rng) * 0.02f;
    memset(C, 0, sizeof(float) * M * NN);
    static const qt_type wts[] = {QT_TYPE_F32, QT_TYPE_BF16, QT_TYPE_Q4_0};
    void *w[3];
    for (int i = 0; i < 3; i++) {
        size_t ws = qt_row_size(wts[i], K);
        w[i] = qt_malloc(ws * NN);
        for (int64_t r = 0; r < NN; r++) qt_type_traits_get(wts[i])->from_float_ref(B + r * K, (char *)w[i] + r * ws, K);
    }
    printf("%-5s %-26s %10s %10s %10s\n", "ops", "gemm (1 thread, best of 5)", "ms/call", "GFLOP/s", "per CPU-s");
    for (int bf = 0; bf < 2; bf++) {
        const qt_gemm_ops *ops = bf ? &kt->bf16 : &kt->f32;
        if (!ops->gemm_acc) { printf("%-5s (none in table %s)\n", bf ? "bf16" : "f32", kt->isa); continue; }
        for (int c = 0; c < 6; c++) {
            char name[64];
            // best of 5 rounds, each counted per second of this thread's CPU time
            // too: on a shared machine the wall clock also counts other jobs
            double best = 0, best_cpu = 0, ms = 0;
            for (int round = 0; round < 5; round++) {
                int calls = 0;
                double t0 = qt_time_s(), c0 = thread_cpu_s(), dt;
                do {
                    if (c == 0) ops->gemm_acc(M, NN, K, A, K, B, NN, C, NN);
                    else if (c <= 3) {
                        qt_wmat W = { w[c - 1], qt_row_size(wts[c - 1], K), wts[c - 1], kt->type[wts[c - 1]].to_float };
                        ops->gemm_xwt(M, K, A, K, NULL, &W, C, NN, NN);
                    } else {
                        int wi = c == 4 ? 2 : 1;
                        qt_wmat W = { w[wi], qt_row_size(wts[wi], K), wts[wi], kt->type[wts[wi]].to_float };
                        ops->gemm_acc_w(M, NN, K, A, K, NULL, &W, 0, C, NN);
                    }
                    calls++;
                    dt = qt_time_s() - t0;
                } while (dt < secs / 5);
                double flop = 2.0 * M * NN * K * calls, g = flop / dt / 1e9, gc = flop / (thread_cpu_s() - c0) / 1e9;
                if (g > best) best = g, ms = dt / calls * 1e3;
                if (gc > best_cpu) best_cpu = gc;
            }
            if (c == 0) snprintf(name, sizeof(name), "gemm_acc f32 B");
            else if (c <= 3) snprintf(name, sizeof(name), "gemm_xwt %s W", qt_type_name(wts[c - 1]));
            else snprintf(name, sizeof(name), "gemm_acc_w %s W", c == 4 ? "q4_0" : "bf16");
            printf("%-5s %-26s %10.2f %10.1f %10.1f\n", bf ? "bf16" : "f32", name, ms, best, best_cpu);
            fflush(stdout);
        }
    }
    for (int i = 0; i < 3; i++) qt_free(w[i]);
    qt_free(A); qt_free(B); qt_free(C);
}

// T = 1 on an L2-resident weight (2048 x 256), calling thread only: the
// decode kernels' compute ceiling, as GB/s of weight bytes.
static void bench_hot(const qt_kernel_table *kt, double secs) {
    static const qt_type types[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q5_0, QT_TYPE_Q5_1,
                                    QT_TYPE_Q4_K, QT_TYPE_Q6_K, QT_TYPE_F16};
    const int n_in = N, n_out = 256;
    qt_rng rng;
    qt_rng_seed(&rng, 3);
    float *wf = qt_malloc((size_t)n_in * n_out * sizeof(float)), *x = qt_malloc(n_in * sizeof(float));
    float *y = qt_malloc(n_out * sizeof(float));
    for (size_t i = 0; i < (size_t)n_in * n_out; i++) wf[i] = qt_rng_normal(&rng) * 0.02f;
    for (int i = 0; i < n_in; i++) x[i] = qt_rng_normal(&rng);
    const qt_kctx kcx = { .kt = kt, .pool = NULL };
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        size_t ws = qt_row_size(wt, n_in);
        char *w = qt_malloc(ws * n_out);
        for (int r = 0; r < n_out; r++) qt_type_traits_get(wt)->from_float_ref(wf + (size_t)r * n_in, w + r * ws, n_in);
        double best = 0;
        for (int round = 0; round < 5; round++) {
            int calls = 0;
            double t0 = qt_time_s(), dt;
            do {
                qt_matmul(&kcx, y, x, w, wt, n_in, n_out, 1);
                calls++;
                dt = qt_time_s() - t0;
            } while (dt < secs / 5);
            best = QT_MAX(best, ws * n_out * (double)calls / dt / 1e9);
        }
        printf("%-6s hot decode (L2, %zu KiB, 1 thread, best of 5): %.1f GB/s\n", qt_type_name(wt), ws * n_out / 1024, best);
        qt_free(w);
    }
    qt_free(wf); qt_free(x); qt_free(y);
}

// The element-wise math (softmax's exp-sum, SwiGLU forward and backward) of
// the table in use, 1 thread, on a row of 32000 (a vocabulary): ns per
// element, best of 5.
static void bench_vecmath(const qt_kernel_table *kt, double secs) {
    enum { NV = 32000 };
    float *x = qt_malloc(NV * sizeof(float)), *g = qt_malloc(NV * sizeof(float)), *u = qt_malloc(NV * sizeof(float));
    float *y = qt_malloc(NV * sizeof(float)), *dg = qt_malloc(NV * sizeof(float)), *du = qt_malloc(NV * sizeof(float));
    for (int i = 0; i < NV; i++) x[i] = (float)(i % 200) * 0.1f - 10, g[i] = (float)(i % 97) * 0.1f - 5, u[i] = 1, dg[i] = du[i] = 0;
    double best[3] = {1e9, 1e9, 1e9}, sink = 0;
    for (int round = 0; round < 5; round++)
        for (int f = 0; f < 3; f++) {
            int calls = 0;
            double t0 = qt_time_s(), dt;
            do {
                if (f == 0) sink += kt->exp_sum_f32(NV, x, 0.5f, 1.0f, y);
                else if (f == 1) kt->swiglu_f32(NV, g, u, y);
                else kt->swiglu_backward_f32(NV, u, g, u, dg, du);
                calls++;
                dt = qt_time_s() - t0;
            } while (dt < secs / 15);
            best[f] = QT_MIN(best[f], dt / calls / NV * 1e9);
        }
    printf("vecmath (%s, 1 thread, best of 5, ns per element): exp_sum %.3f, swiglu %.3f, swiglu_backward %.3f (%g)\n",
           kt->isa, best[0], best[1], best[2], sink > 0 ? 1.0 : 0.0);
    qt_free(x); qt_free(g); qt_free(u); qt_free(y); qt_free(dg); qt_free(du);
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    double secs = argc > 2 ? atof(argv[2]) : 0.3;
    const qt_kernel_table *kt = qt_kernels();
    const char *only_type = argc > 3 ? argv[3] : NULL;
    int only_T = argc > 4 ? atoi(argv[4]) : 0;
    printf("kernels: %s, weight %dx%d\n", kt->isa, N, N);
    if (only_type && !strcmp(only_type, "gemm")) {
        bench_gemm(kt, secs);
        return 0;
    }
    if (only_type && !strcmp(only_type, "hot")) {
        bench_hot(kt, secs);
        return 0;
    }
    if (only_type && !strcmp(only_type, "vecmath")) {
        bench_vecmath(kt, secs);
        return 0;
    }
    if (!only_type || !strcmp(only_type, "bw")) bench_bandwidth(max_threads);
    if (only_type && !strcmp(only_type, "bw")) return 0;

    static const qt_type types[] = {QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q8_0,
                                    QT_TYPE_Q4_0, QT_TYPE_Q5_0, QT_TYPE_Q5_1, QT_TYPE_Q4_K, QT_TYPE_Q5_K, QT_TYPE_Q6_K};
    static const int Ts[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256, 512};
    qt_rng rng;
    qt_rng_seed(&rng, 42);
    float *wf = qt_malloc((size_t)N * N * sizeof(float));
    for (size_t i = 0; i < (size_t)N * N; i++) wf[i] = qt_rng_normal(&rng) * 0.02f;
    float *x = qt_malloc((size_t)512 * N * sizeof(float));
    for (size_t i = 0; i < (size_t)512 * N; i++) x[i] = qt_rng_normal(&rng);
    float *y = qt_malloc((size_t)512 * N * sizeof(float));

    printf("%-6s %3s %5s %10s %10s %8s %10s\n", "type", "thr", "T", "ms/call", "GFLOP/s", "cpu/wall", "GB/s(w)");
    for (size_t it = 0; it < QT_ARRAY_LEN(types); it++) {
        qt_type wt = types[it];
        if (only_type && strcmp(only_type, qt_type_name(wt))) continue;
        size_t ws = qt_row_size(wt, N), wbytes = ws * N;
        int n_copies = (int)((DECODE_BYTES + wbytes - 1) / wbytes);
        char *w = qt_alloc_big(wbytes * n_copies, "bench weights");
        if (!w) return 1;
        for (int r = 0; r < N; r++) qt_type_traits_get(wt)->from_float_ref(wf + (size_t)r * N, w + r * ws, N);
        for (int k = 1; k < n_copies; k++) memcpy(w + k * wbytes, w, wbytes);
        for (int nth = 1; nth <= max_threads; nth++) {
            qt_pool *pool = qt_pool_init(nth);
            const qt_kctx kcx = { .kt = kt, .pool = pool };
            for (size_t ti = 0; ti < QT_ARRAY_LEN(Ts); ti++) {
                int T = Ts[ti];
                if (only_T && T != only_T) continue;
                int copies = T == 1 ? n_copies : 1;
                qt_matmul(&kcx, y, x, w, wt, N, N, T);   // warm-up
                int calls = 0;
                double t0 = qt_time_s(), c0 = thread_cpu_s(), dt;
                do {
                    qt_matmul(&kcx, y, x, w + (size_t)(calls % copies) * wbytes, wt, N, N, T);
                    calls++;
                    dt = qt_time_s() - t0;
                } while (dt < secs);
                double per = dt / calls;
                double busy = (thread_cpu_s() - c0) / dt;
                printf("%-6s %3d %5d %10.3f %10.1f %7.0f%%", qt_type_name(wt), nth, T, per * 1e3,
                       2.0 * N * N * T / per / 1e9, 100 * busy);
                if (T == 1) printf(" %10.1f", wbytes / per / 1e9);
                printf("\n");
                fflush(stdout);
            }
            qt_pool_free(pool);
        }
        qt_free_big(w, wbytes * n_copies);
    }
    qt_free(wf); qt_free(x); qt_free(y);
    if (!only_type || !strcmp(only_type, "layer")) {
        static const qt_type lt[] = {QT_TYPE_Q4_0, QT_TYPE_Q8_0, QT_TYPE_Q4_K, QT_TYPE_BF16, QT_TYPE_F16};
        for (size_t i = 0; i < QT_ARRAY_LEN(lt); i++)
            for (int nth = 1; nth <= max_threads; nth++) bench_llama_layer(lt[i], nth, 512, 3 * secs);
    }
    return 0;
}
