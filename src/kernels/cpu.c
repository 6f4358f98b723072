// cpu.c: CPU feature detection and the kernel tables' assembly.
//
// x86-64: CPUID leaves 1 and 7 (subleaves 0 and 1) plus XGETBV, so AVX and
// AVX-512 count only when the OS saves their registers. arm64: NEON is
// baseline; dotprod, BF16 and I8MM from the Linux auxiliary vector (HWCAP,
// HWCAP2) or macOS's hw.optional.arm sysctls, all present on Apple M2 and
// later.
//
// A table is assembled in this file (compiled without ISA flags) from the
// per-ISA files' fill functions, each adding to the one before it:
//   ref <- avx2 <- avx512 <- avx512-vnni <- avx512-bf16, and ref <- neon.
// A fill function runs only after the check that the CPU has every feature
// its file is compiled with: code built for AVX2 must not run, not even a
// table initialiser, on a CPU without it (that was the SIGILL on pre-AVX2
// x86). The automatic choice is the last table of its chain the CPU runs,
// unless QT_ISA says otherwise.
// Built with QT_SIMDE (make simde-test), the x86 files are compiled against
// SIMDe's portable intrinsics and every x86 table runs on any CPU.
// Deliberately not: AMX, SVE, AVX-VNNI (256-bit), microarchitecture tuning.
// Follows the Intel SDM (CPUID/XGETBV), ggml-cpu's x86 feature probe and
// the Linux arm64 elf_hwcaps documentation.
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "kernels/matmul-internal.h"
#include "kernels/vecmath-internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
// macOS reports arm64 features as sysctl integers (hw.optional.arm.FEAT_*)
static bool apple_feature(const char *name) {
    int v = 0;
    size_t len = sizeof(v);
    return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v != 0;
}
#endif

#if defined(__x86_64__)
#define QT_HAVE_X86 1
#else
#define QT_HAVE_X86 0
#endif
#if defined(__aarch64__)
#define QT_HAVE_ARM64 1
#else
#define QT_HAVE_ARM64 0
#endif

static qt_cpu_features g_cpu;
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
        unsigned a7;
        __cpuid_count(7, 0, a7, b7, c7, d);
        if (a7 >= 1) {
            unsigned b1, c1, d1;
            __cpuid_count(7, 1, a71, b1, c1, d1);
        }
    }
    if (avx && os_avx) {
        f->fma = fma;
        f->f16c = f16c;
        f->avx2 = (b7 >> 5) & 1;
    }
    if (avx && os_avx && os_avx512) {
        f->avx512f = (b7 >> 16) & 1;
        f->avx512dq = (b7 >> 17) & 1;
        f->avx512bw = (b7 >> 30) & 1;
        f->avx512vl = (b7 >> 31) & 1;
        f->avx512vnni = (c7 >> 11) & 1;
        f->avx512bf16 = (a71 >> 5) & 1;
    }
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    long l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE);   // glibc reads it from CPUID (leaf 4 / 0x8000001D)
    f->l1d_kib = l1d > 0 && l1d < (1L << 30) ? (int)(l1d >> 10) : 0;
#endif
#elif defined(__aarch64__)
    f->neon = true;
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->dotprod = (hw & HWCAP_ASIMDDP) != 0;
    f->neon_bf16 = (hw2 & HWCAP2_BF16) != 0;
    f->i8mm = (hw2 & HWCAP2_I8MM) != 0;
#elif defined(__APPLE__)
    f->dotprod = true;   // every Apple arm64 CPU has it; BF16 and I8MM from M2 on
    f->neon_bf16 = apple_feature("hw.optional.arm.FEAT_BF16");
    f->i8mm = apple_feature("hw.optional.arm.FEAT_I8MM");
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

static const char *const g_isa_names[QT_ISA_COUNT] = {"ref", "avx2", "avx512", "avx512-vnni", "avx512-bf16", "neon"};

const char *qt_isa_name(qt_isa isa) { return (unsigned)isa < QT_ISA_COUNT ? g_isa_names[isa] : "?"; }

// Each file's flags (Makefile FLAGS_*) are the features its table needs.
const char *qt_isa_unavailable(qt_isa isa) {
    const qt_cpu_features *f = qt_cpu();
    switch (isa) {
    case QT_ISA_REF: return NULL;
    case QT_ISA_AVX2:
    case QT_ISA_AVX512:
    case QT_ISA_AVX512_VNNI:
    case QT_ISA_AVX512_BF16:
        if (!QT_HAVE_X86) return "not built for this architecture";
#if defined(QT_SIMDE)
        return NULL;   // SIMDe's portable intrinsics run on any CPU
#endif
        if (!(f->avx2 && f->fma && f->f16c)) return "CPU lacks avx2/fma/f16c";
        if (isa == QT_ISA_AVX2) return NULL;
        if (!(f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq)) return "CPU lacks avx512f/bw/vl/dq";
        if (isa == QT_ISA_AVX512) return NULL;
        if (!f->avx512vnni) return "CPU lacks avx512_vnni";
        if (isa == QT_ISA_AVX512_VNNI) return NULL;
        return f->avx512bf16 ? NULL : "CPU lacks avx512_bf16";
    case QT_ISA_NEON:
        if (!QT_HAVE_ARM64) return "not built for this architecture";
        return f->neon && f->dotprod ? NULL : "CPU lacks asimddp (dotprod)";
    default: return "unknown table";
    }
}

static qt_kernel_table g_tables[QT_ISA_COUNT];
static pthread_once_t g_once[QT_ISA_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                               PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

#if defined(__x86_64__)
// The decode kernels' prefetch target (matmul-internal.h): L1 where the L1D
// is 48 KiB or more (Zen 5, Intel since Ice Lake), else L2 (Zen 3 / Zen 4:
// 32 KiB). QT_PREFETCH=l1|l2 overrides (benchmarks).
static bool g_prefetch_l1;
static pthread_once_t g_prefetch_once = PTHREAD_ONCE_INIT;
static void prefetch_choose(void) {
    const char *env = getenv("QT_PREFETCH");
    if (env && !strcmp(env, "l1")) g_prefetch_l1 = true;
    else if (env && !strcmp(env, "l2")) g_prefetch_l1 = false;
    else {
        if (env && *env) qt_log_warn("QT_PREFETCH=%s is not l1 or l2; choosing by the L1D size", env);
        g_prefetch_l1 = qt_cpu()->l1d_kib >= 48;
    }
}
static bool gemv_prefetch_l1(void) {
    pthread_once(&g_prefetch_once, prefetch_choose);
    return g_prefetch_l1;
}
#endif

static void build(qt_isa isa) {
    qt_kernel_table *kt = &g_tables[isa];
    if (isa == QT_ISA_REF) {
        qt_kernels_fill_ref(kt);
    } else if (isa == QT_ISA_NEON) {
        *kt = *qt_kernels_ref();
#if defined(__aarch64__)
        qt_kernels_fill_neon(kt, qt_cpu()->neon_bf16, qt_cpu()->i8mm);
#endif
    } else {
        *kt = *qt_kernels_for((qt_isa)(isa - 1));   // the table before it in the chain
#if defined(__x86_64__)
        if (isa == QT_ISA_AVX2) qt_kernels_fill_avx2(kt);
        if (isa == QT_ISA_AVX512) qt_kernels_fill_avx512(kt);
        if (isa == QT_ISA_AVX512_VNNI) qt_kernels_fill_avx512vnni(kt);
        if (isa == QT_ISA_AVX512_BF16) qt_kernels_fill_avx512bf16(kt);
        bool l1 = gemv_prefetch_l1();
        qt_gemv_prefetch_avx2(kt->type, l1);
        if (isa >= QT_ISA_AVX512_VNNI) qt_gemv_prefetch_avx512vnni(kt->type, l1);
        kt->gemv_prefetch = l1 ? "l1" : "l2";
#endif
    }
    kt->isa = g_isa_names[isa];
    kt->gemm_acc_f32 = kt->f32.gemm_acc;
}
static void build_0(void) { build(0); }
static void build_1(void) { build(1); }
static void build_2(void) { build(2); }
static void build_3(void) { build(3); }
static void build_4(void) { build(4); }
static void build_5(void) { build(5); }
static void (*const g_build[QT_ISA_COUNT])(void) = {build_0, build_1, build_2, build_3, build_4, build_5};

const qt_kernel_table *qt_kernels_for(qt_isa isa) {
    if ((unsigned)isa >= QT_ISA_COUNT || qt_isa_unavailable(isa)) return NULL;
    pthread_once(&g_once[isa], g_build[isa]);
    return &g_tables[isa];
}

const qt_kernel_table *qt_kernels_ref(void) { return qt_kernels_for(QT_ISA_REF); }
const qt_kernel_table *qt_kernels_avx2(void) { return qt_kernels_for(QT_ISA_AVX2); }
const qt_kernel_table *qt_kernels_neon(void) { return qt_kernels_for(QT_ISA_NEON); }
const qt_kernel_table *qt_kernels_avx512(void) {
    for (int i = QT_ISA_AVX512_BF16; i >= QT_ISA_AVX512; i--)
        if (!qt_isa_unavailable((qt_isa)i)) return qt_kernels_for((qt_isa)i);
    return NULL;
}

bool qt_kernels_runnable(const qt_kernel_table *t) {
    if (!t) return false;
    for (int i = 0; i < QT_ISA_COUNT; i++)
        if (t == &g_tables[i]) return qt_isa_unavailable((qt_isa)i) == NULL;
    return false;
}

static const qt_kernel_table *choose(void) {
    const char *env = getenv("QT_ISA");
    if (env && *env) {
        for (int i = 0; i < QT_ISA_COUNT; i++) {
            if (strcmp(env, g_isa_names[i])) continue;
            const char *why = qt_isa_unavailable((qt_isa)i);
            if (!why) return qt_kernels_for((qt_isa)i);
            qt_log_warn("QT_ISA=%s: %s; choosing automatically", env, why);
            env = NULL;
            break;
        }
        if (env) qt_log_warn("QT_ISA=%s is not a kernel table (ref, avx2, avx512, avx512-vnni, avx512-bf16, neon)", env);
    }
    for (int i = QT_ISA_COUNT - 1; i > QT_ISA_REF; i--)
        if (!qt_isa_unavailable((qt_isa)i)) return qt_kernels_for((qt_isa)i);
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
