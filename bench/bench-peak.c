// bench-peak.c: the arithmetic peak of this CPU right now, per core and with
// every thread busy at once: fp32 FMA (AVX2 and AVX-512), bf16 dot
// (vdpbf16ps) and int8 dot (vpdpbusd), where the CPU has them. Twelve
// independent accumulators per loop hide each instruction's latency; FLOPs
// are counted as the gemms count them (an FMA lane 2, a vdpbf16ps lane 4:
// two products and two adds; a vpdpbusd lane 8 integer operations).
// Efficiencies in BENCHMARKS.md are quoted against these, measured in the
// same window: a VM's clock moves with the host's load, so a peak noted on
// another day is no yardstick (on one Zen 5 VM: fp32 226 / bf16 453 GFLOP/s
// per core in the team's notes, 261-285 / 480-525 on 2026-12-07).
//   build/bench/bench-peak [threads=2] [seconds=0.5]
// Not a test: no checks, numbers only.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"

#define ACC 12

typedef double (*peak_fn)(long iters);   // returns FLOPs done

#if defined(__x86_64__)
// One unit's loop: ACC accumulators of type VACC, each step ACC instructions
// OP(acc, a) on the operand a (type VOP), which passes through an empty asm
// so the compiler cannot fold the loop; ADD sums the accumulators at the end.
// FLOPS: per instruction.
#define PEAK_FN(name, target_, VACC, ZERO, VOP, A0, OP, ADD, FLOPS)                                       \
    __attribute__((target(target_))) static double name(long iters) {                                    \
        VACC acc[ACC];                                                                                  \
        VOP a = A0;                                                                                     \
        for (int j = 0; j < ACC; j++) acc[j] = ZERO;                                                    \
        for (long i = 0; i < iters; i++) {                                                              \
            _Pragma("GCC unroll 12") for (int j = 0; j < ACC; j++) acc[j] = OP(acc[j], a);              \
            __asm__ volatile("" : "+x"(a));                                                             \
        }                                                                                               \
        for (int j = 1; j < ACC; j++) acc[0] = ADD(acc[0], acc[j]);                                     \
        __asm__ volatile("" ::"x"(acc[0]));                                                             \
        return (double)iters * ACC * (FLOPS);                                                           \
    }

#define FMA256(c, a) _mm256_fmadd_ps(c, a, a)
#define FMA512(c, a) _mm512_fmadd_ps(c, a, a)
#define DPBF16(c, a) _mm512_dpbf16_ps(c, (__m512bh)(a), (__m512bh)(a))   // bf16 1.0 in every half
#define DPBUSD(c, a) _mm512_dpbusd_epi32(c, a, a)
PEAK_FN(peak_fma256, "avx2,fma", __m256, _mm256_setzero_ps(), __m256, _mm256_set1_ps(1e-8f), FMA256, _mm256_add_ps, 16)
PEAK_FN(peak_fma512, "avx512f", __m512, _mm512_setzero_ps(), __m512, _mm512_set1_ps(1e-8f), FMA512, _mm512_add_ps, 32)
PEAK_FN(peak_bf16, "avx512f,avx512bf16", __m512, _mm512_setzero_ps(), __m512i, _mm512_set1_epi16(0x3f80), DPBF16,
        _mm512_add_ps, 64)
PEAK_FN(peak_vnni, "avx512f,avx512vnni", __m512i, _mm512_setzero_si512(), __m512i, _mm512_set1_epi8(1), DPBUSD,
        _mm512_add_epi32, 128)
#endif

typedef struct {
    peak_fn fn;
    long iters;
    double flops, secs;
} peak_job;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *peak_thread(void *arg) {
    peak_job *j = arg;
    double t0 = now_s();
    j->flops = j->fn(j->iters);
    j->secs = now_s() - t0;
    return NULL;
}

// Iterations of fn that run about secs on one thread
static long calibrate(peak_fn fn, double secs) {
    for (long iters = 1000;; iters *= 4) {
        double t0 = now_s();
        fn(iters);
        double dt = now_s() - t0;
        if (dt > 0.05) return (long)(iters * secs / dt) + 1;
    }
}

// GFLOP/s per thread with nth threads running fn at once (the slowest one's)
static double run_peak(peak_fn fn, int nth, long iters) {
    peak_job jobs[64];
    pthread_t th[64];
    double worst = 1e300;
    for (int i = 0; i < nth; i++) {
        jobs[i] = (peak_job){ fn, iters, 0, 0 };
        QT_ASSERT(pthread_create(&th[i], NULL, peak_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        worst = QT_MIN(worst, jobs[i].flops / jobs[i].secs / 1e9);
    }
    return worst;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    double secs = argc > 2 ? atof(argv[2]) : 0.5;
    if (nth < 1 || nth > 64 || !(secs > 0 && secs < 100)) {
        fprintf(stderr, "usage: %s [threads=2 (1..64)] [seconds=0.5]\n", argv[0]);
        return 2;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    struct {
        const char *name, *feature;
        peak_fn fn;
        int has;
    } cases[] = {
        { "fp32 FMA, 256-bit", "avx2", peak_fma256, __builtin_cpu_supports("avx2") },
        { "fp32 FMA, 512-bit", "avx512f", peak_fma512, __builtin_cpu_supports("avx512f") },
        { "bf16 dot (vdpbf16ps)", "avx512bf16", peak_bf16, __builtin_cpu_supports("avx512bf16") },
        { "int8 dot (vpdpbusd)", "avx512vnni", peak_vnni, __builtin_cpu_supports("avx512vnni") },
    };
    printf("| unit | GFLOP/s, 1 thread | GFLOP/s per thread, %d at once | all %d together |\n|---|---:|---:|---:|\n",
           nth, nth);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!cases[i].has) {
            printf("| %s | (this CPU lacks %s) | | |\n", cases[i].name, cases[i].feature);
            continue;
        }
        long iters = calibrate(cases[i].fn, secs);
        double one = run_peak(cases[i].fn, 1, iters), all = run_peak(cases[i].fn, nth, iters);
        printf("| %s | %.0f | %.0f | %.0f |\n", cases[i].name, one, all, all * nth);
    }
    return 0;
#else
    (void)nth;
    printf("bench-peak: x86-64 only (this build is for another architecture)\n");
    return 0;
#endif
}
