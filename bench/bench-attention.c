// bench-attention.c: the training attention alone (attention-train.c),
// forward and backward of one layer, at a TinyLlama layer's shape (32 query
// heads, 4 key/value heads, head size 64) and T tokens, in the kernel
// table's bf16 products (QT_ISA picks another table; one without bf16 runs
// f32). Prints the best of `reps` calls of each, in ms, and the model FLOP
// rate (causal: forward 2, backward 4 products of NH * HS * T^2 / 2 MACs);
// then the forward in fp32 products beside inference's KV-cache attention
// (layers.c) on the same T tokens from position 0, which inference now
// keeps for prompts that continue a cache (backend-cpu.c sends those from an
// empty cache to the streaming forward). Last, decode: one token against T
// cached positions at a Llama-2-7B layer's shape (32 heads of 128, no
// grouping), over an fp32 cache and an fp16 one (backend-cpu.c's two
// types), eight layers' caches cycled so they come from memory as in a
// model, the two alternated; ms per layer and GB/s of cache read.
//   build/bench/bench-attention [T=512] [reps=10] [threads=2]
// Not a test: no checks, numbers only.
#include <stdio.h>
#include <stdlib.h>

#include "backend/layers-train.h"
#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "quant/types.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_decode(qt_pool *pool, int T, int reps) {
    enum { NH = 32, HS = 128, LAYERS = 8 };
    const int n_ctx = T;
    const size_t per = (size_t)NH * n_ctx * HS;   // one layer's keys (or values)
    float *k32 = qt_alloc_big(4 * per * LAYERS, "keys"), *v32 = qt_alloc_big(4 * per * LAYERS, "values");
    uint16_t *k16 = qt_alloc_big(2 * per * LAYERS, "keys"), *v16 = qt_alloc_big(2 * per * LAYERS, "values");
    qt_rng rng;
    qt_rng_seed(&rng, 2);
    for (size_t i = 0; i < per * LAYERS; i++) {
        k32[i] = qt_rng_normal(&rng), v32[i] = qt_rng_normal(&rng);
        k16[i] = qt_fp32_to_fp16(k32[i]), v16[i] = qt_fp32_to_fp16(v32[i]);
    }
    float *q = qt_malloc(4 * NH * HS), *out = qt_malloc(4 * NH * HS);
    for (int i = 0; i < NH * HS; i++) q[i] = qt_rng_normal(&rng);
    float *scratch = qt_malloc(4 * qt_attention_scratch(1, NH, NH, HS, n_ctx, qt_pool_n_threads(pool)));
    const qt_kctx kc = { .kt = qt_kernels(), .pool = pool, .prec = QT_PREC_F32 };
    double *t[2] = { qt_malloc(sizeof(double) * reps), qt_malloc(sizeof(double) * reps) };
    for (int r = 0; r < reps; r++)
        for (int f = 0; f < 2; f++) {
            double t0 = qt_time_s();
            for (int l = 0; l < LAYERS; l++) {
                qt_attn_seq sq = { out, q, f ? (const void *)(k16 + per * l) : (const void *)(k32 + per * l),
                                   f ? (const void *)(v16 + per * l) : (const void *)(v32 + per * l), 1, T - 1 };
                qt_attention_forward(&kc, &sq, 1, NH, NH, HS, n_ctx, f ? QT_TYPE_F16 : QT_TYPE_F32, scratch);
            }
            t[f][r] = (qt_time_s() - t0) / LAYERS;
        }
    for (int f = 0; f < 2; f++) {
        qsort(t[f], (size_t)reps, sizeof(double), cmp_double);
        double med = t[f][reps / 2], bytes = 2.0 * T * NH * HS * (f ? 2 : 4);
        printf("decode attention, 1 token against %d positions (NH=%d HS=%d), %s cache: %.3f ms a layer (%.1f GB/s), "
               "median of %d\n", T, NH, HS, f ? "fp16" : "fp32", med * 1e3, bytes / med / 1e9, reps);
    }
    qt_free(t[0]); qt_free(t[1]); qt_free(q); qt_free(out); qt_free(scratch);
    qt_free_big(k32, 4 * per * LAYERS); qt_free_big(v32, 4 * per * LAYERS);
    qt_free_big(k16, 2 * per * LAYERS); qt_free_big(v16, 2 * per * LAYERS);
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 512, reps = argc > 2 ? atoi(argv[2]) : 10, nth = argc > 3 ? atoi(argv[3]) : 2;
    const int NH = 32, NKV = 4, HS = 64;
    if (T < 1 || reps < 1 || nth < 1) {
        fprintf(stderr, "usage: %s [T=512] [reps=10] [threads=2]\n", argv[0]);
        return 2;
    }
    qt_pool *pool = qt_pool_init(nth);
    qt_kctx kc = { .kt = qt_kernels(), .pool = pool, .prec = QT_PREC_BF16 };
    size_t qn = (size_t)T * NH * HS, kn = (size_t)T * NKV * HS;
    float *q = qt_malloc(4 * qn), *k = qt_malloc(4 * kn), *v = qt_malloc(4 * kn), *out = qt_malloc(4 * qn);
    float *lse = qt_malloc(4 * (size_t)T * NH), *dout = qt_malloc(4 * qn);
    float *dq = qt_calloc(qn, 4), *dk = qt_calloc(kn, 4), *dv = qt_calloc(kn, 4);
    float *scratch = qt_malloc(4 * qt_attention_train_scratch(T, NH, NKV, HS));
    qt_rng rng;
    qt_rng_seed(&rng, 1);
    for (size_t i = 0; i < qn; i++) q[i] = qt_rng_normal(&rng), dout[i] = qt_rng_normal(&rng);
    for (size_t i = 0; i < kn; i++) k[i] = qt_rng_normal(&rng), v[i] = qt_rng_normal(&rng);
    double tf = 1e30, tb = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = qt_time_s();
        qt_attention_train_forward(&kc, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        double t1 = qt_time_s();
        qt_attention_train_backward(&kc, dq, dk, dv, dout, out, lse, q, k, v, T, NH, NKV, HS, scratch);
        double t2 = qt_time_s();
        tf = QT_MIN(tf, t1 - t0);
        tb = QT_MIN(tb, t2 - t1);
    }
    double mac = (double)NH * HS * T * T / 2;   // one causal product
    // the same forward in fp32 products (QT_PREC_F32: inference's precision),
    // and inference's own path over a KV cache of T positions (layers.c)
    qt_kctx kf = kc;
    kf.prec = QT_PREC_F32;
    float *kcache = qt_malloc(4 * kn), *vt = qt_malloc(4 * kn);
    for (int h = 0; h < NKV; h++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < HS; d++) {
                kcache[((size_t)h * T + t) * HS + d] = k[((size_t)t * NKV + h) * HS + d];
                vt[((size_t)h * HS + d) * T + t] = v[((size_t)t * NKV + h) * HS + d];
            }
    float *iscratch = qt_malloc(4 * qt_attention_scratch(T, NH, NKV, HS, T, nth));
    qt_attn_seq sq = { out, q, kcache, vt, T, 0 };
    double tf32 = 1e30, tinf = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = qt_time_s();
        qt_attention_train_forward(&kf, out, NULL, q, k, v, T, NH, NKV, HS, scratch);
        double t1 = qt_time_s();
        qt_attention_forward(&kf, &sq, 1, NH, NKV, HS, T, QT_TYPE_F32, iscratch);
        double t2 = qt_time_s();
        tf32 = QT_MIN(tf32, t1 - t0);
        tinf = QT_MIN(tinf, t2 - t1);
    }
    printf("forward in fp32 products: streaming (attention-train.c) %.2f ms, inference's KV-cache path (layers.c) "
           "%.2f ms\n", tf32 * 1e3, tinf * 1e3);
    qt_free(kcache); qt_free(vt); qt_free(iscratch);
    printf("attention %s T=%d NH=%d NKV=%d HS=%d, %d thread%s: forward %.2f ms (%.0f GFLOP/s), backward %.2f ms "
           "(%.0f GFLOP/s), best of %d\n", kc.kt->bf16.gemm_acc ? "bf16" : "f32", T, NH, NKV, HS, nth,
           nth > 1 ? "s" : "", tf * 1e3, 2 * 2 * mac / tf / 1e9, tb * 1e3, 4 * 2 * mac / tb / 1e9, reps);
    qt_free(q); qt_free(k); qt_free(v); qt_free(out); qt_free(lse); qt_free(dout);
    qt_free(dq); qt_free(dk); qt_free(dv); qt_free(scratch);
    bench_decode(pool, T, reps);
    qt_pool_free(pool);
    return 0;
}
