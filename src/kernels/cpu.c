// cpu.c: CPU feature detection and the choice of kernel table.
//
// x86-64: CPUID leaves 1 and 7 plus XGETBV, so AVX/AVX-512 count only when the
// OS saves their registers. arm64: NEON is baseline; dotprod from the Linux
// auxiliary vector. The chosen table is the best one the CPU can run
// (avx512 > avx2 > ref on x86, neon > ref on arm64) unless QT_ISA says otherwise.
// Deliberately not: AMX, SVE, runtime microarchitecture tuning.
// Follows the Intel SDM (CPUID/XGETBV) and ggml-cpu's x86 feature probe.
#include "kernels/kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

// Tables whose file is not compiled for this architecture (see the Makefile's
// ISA_SRC_EXCLUDE) are stubs returning NULL.
#if !defined(__x86_64__)
const qt_kernel_table *qt_kernels_avx2(void) { return NULL; }
const qt_kernel_table *qt_kernels_avx512(void) { return NULL; }
#endif
#if !defined(__aarch64__)
const qt_kernel_table *qt_kernels_neon(void) { return NULL; }
#endif

static qt_cpu_features g_cpu;
static bool g_cpu_avx512dq;   // kernels-avx512.c is compiled with -mavx512dq too
static atomic_int g_cpu_done;

static void detect(qt_cpu_features *f) {
    memset(f, 0, sizeof(*f));
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((uint64_t)hi << 32) | lo;
    }
    bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM and YMM state
    bool os_avx512 = (xcr0 & 0xe6) == 0xe6;       // plus opmask, ZMM_Hi256, Hi16_ZMM
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    unsigned b7 = 0, c7 = 0, a71 = 0;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d);
        unsigned b1, c1, d1;
        __cpuid_count(7, 1, a71, b1, c1, d1);
    }
    if (avx && os_avx) {
        f->fma = fma;
        f->f16c = f16c;
        f->avx2 = (b7 >> 5) & 1;
    }
    if (os_avx512) {
        f->avx512f = (b7 >> 16) & 1;
        f->avx512bw = (b7 >> 30) & 1;
        f->avx512vl = (b7 >> 31) & 1;
        f->avx512vnni = (c7 >> 11) & 1;
        f->avx512bf16 = (a71 >> 5) & 1;
        g_cpu_avx512dq = (b7 >> 17) & 1;
    }
#elif defined(__aarch64__)
    f->neon = true;
#if defined(__linux__)
    f->dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    f->dotprod = true;   // every Apple arm64 CPU has it
#endif
#endif
}

const qt_cpu_features *qt_cpu(void) {
    // Detection is idempotent, so a race only repeats it.
    if (!atomic_load_explicit(&g_cpu_done, memory_order_acquire)) {
        qt_cpu_features f;
        detect(&f);
        g_cpu = f;
        atomic_store_explicit(&g_cpu_done, 1, memory_order_release);
    }
    return &g_cpu;
}

// Can this CPU run the table? Each ISA file is compiled with a set of flags
// (Makefile FLAGS_*); all of them must be present.
bool qt_kernels_runnable(const qt_kernel_table *t) {
    if (!t) return false;
    const qt_cpu_features *f = qt_cpu();
    if (!strcmp(t->isa, "ref")) return true;
    if (!strcmp(t->isa, "avx2")) return f->avx2 && f->fma && f->f16c;
    if (!strcmp(t->isa, "avx512"))
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl &&
               g_cpu_avx512dq && f->avx512vnni && f->avx512bf16;
    if (!strcmp(t->isa, "neon")) return f->neon && f->dotprod;
    return false;
}

static const qt_kernel_table *by_name(const char *name) {
    if (!strcmp(name, "ref")) return qt_kernels_ref();
    if (!strcmp(name, "avx2")) return qt_kernels_avx2();
    if (!strcmp(name, "avx512")) return qt_kernels_avx512();
    if (!strcmp(name, "neon")) return qt_kernels_neon();
    return NULL;
}

static const qt_kernel_table *choose(void) {
    const char *env = getenv("QT_ISA");
    if (env && *env) {
        const qt_kernel_table *t = by_name(env);
        if (qt_kernels_runnable(t)) return t;
        qt_log_warn("QT_ISA=%s is not available on this CPU/build; choosing automatically", env);
    }
    const char *order[] = {"avx512", "avx2", "neon"};
    for (size_t i = 0; i < QT_ARRAY_LEN(order); i++) {
        const qt_kernel_table *t = by_name(order[i]);
        if (qt_kernels_runnable(t)) return t;
    }
    return qt_kernels_ref();
}

static _Atomic(const qt_kernel_table *) g_auto;
static _Atomic(const qt_kernel_table *) g_forced;

const qt_kernel_table *qt_kernels(void) {
    const qt_kernel_table *t = atomic_load_explicit(&g_forced, memory_order_acquire);
    if (t) return t;
    t = atomic_load_explicit(&g_auto, memory_order_acquire);
    if (t) return t;
    t = choose();   // idempotent: a race only chooses twice
    atomic_store_explicit(&g_auto, t, memory_order_release);
    return t;
}

void qt_kernels_set(const qt_kernel_table *table) {
    atomic_store_explicit(&g_forced, table, memory_order_release);
}
