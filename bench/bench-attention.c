// bench-attention.c: the training attention alone (attention-train.c),
// forward and backward of one layer, at a TinyLlama layer's shape (32 query
// heads, 4 key/value heads, head size 64) and T tokens, in the kernel
// table's bf16 products (QT_ISA picks another table; one without bf16 runs
// f32). Prints the best of `reps` calls of each, in ms, and the model FLOP
// rate (causal: forward 2, backward 4 products of NH * HS * T^2 / 2 MACs).
//   build/bench/bench-attention [T=512] [reps=10] [threads=2]
// Not a test: no checks, numbers only.
#include <stdio.h>
#include <stdlib.h>

#include "backend/layers-train.h"
#include "base/base.h"
#include "base/pool.h"
#include "kernels/kernels.h"

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
    printf("attention %s T=%d NH=%d NKV=%d HS=%d, %d thread%s: forward %.2f ms (%.0f GFLOP/s), backward %.2f ms "
           "(%.0f GFLOP/s), best of %d\n", kc.kt->bf16.gemm_acc ? "bf16" : "f32", T, NH, NKV, HS, nth,
           nth > 1 ? "s" : "", tf * 1e3, 2 * 2 * mac / tf / 1e9, tb * 1e3, 4 * 2 * mac / tb / 1e9, reps);
    qt_free(q); qt_free(k); qt_free(v); qt_free(out); qt_free(lse); qt_free(dout);
    qt_free(dq); qt_free(dk); qt_free(dv); qt_free(scratch);
    qt_pool_free(pool);
    return 0;
}
