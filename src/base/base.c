// base.c: the implementations behind base.h. POSIX (Linux and macOS).
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int g_log_level = 1;

_Noreturn void qt_panic(const char *file, int line, const char *expr) {
    fprintf(stderr, "qtune: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

void qt_log_set_level(int level) { g_log_level = level; }
int qt_log_level(void) { return g_log_level; }

static qt_log_sink_fn g_sink;
static void *g_sink_ud;

void qt_log_set_sink(qt_log_sink_fn sink, void *ud) { g_sink = sink; g_sink_ud = ud; }

static void vlog(const char *prefix, const char *fmt, va_list ap) {
    char line[2048];
    size_t n = strlen(prefix);
    if (n >= sizeof(line)) n = sizeof(line) - 1;
    memcpy(line, prefix, n);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (g_sink) { g_sink(line, g_sink_ud); return; }
    fputs(line, stderr);
    fputc('\n', stderr);
}

void qt_log_error(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); vlog("error: ", fmt, ap); va_end(ap);
}
void qt_log_warn(const char *fmt, ...) {
    if (g_log_level < 1) return;
    va_list ap; va_start(ap, fmt); vlog("warning: ", fmt, ap); va_end(ap);
}
void qt_log_info(const char *fmt, ...) {
    if (g_log_level < 1) return;
    va_list ap; va_start(ap, fmt); vlog("", fmt, ap); va_end(ap);
}
void qt_log_debug(const char *fmt, ...) {
    if (g_log_level < 2) return;
    va_list ap; va_start(ap, fmt); vlog("debug: ", fmt, ap); va_end(ap);
}

static _Noreturn void oom(size_t n) {
    fprintf(stderr, "qtune: out of memory allocating %zu bytes\n", n);
    abort();
}

void *qt_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}
void *qt_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}
void *qt_calloc_aligned(size_t n, size_t align) {
    size_t len = (QT_MAX(n, (size_t)1) + align - 1) & ~(align - 1);   // aligned_alloc: a multiple of align
    void *p = aligned_alloc(align, len);
    if (!p) oom(len);
    memset(p, 0, len);
    return p;
}
void *qt_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}
char *qt_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = qt_malloc(n);
    memcpy(d, s, n);
    return d;
}
void qt_free(void *p) { free(p); }

// Big buffers are 2 MiB aligned so transparent huge pages (madvise mode) can
// back all of them: first-touch faults cost ~12 us per 4 KiB page on the VMs
// we run on, 512x fewer faults with huge pages.
#define HUGE_ALIGN ((size_t)2 << 20)

void *qt_alloc_big(size_t n, const char *what) {
    if (n == 0) n = 1;
    size_t len = (n + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    bool huge = len >= HUGE_ALIGN && n >= HUGE_ALIGN / 2;
    size_t map_len = huge ? len + HUGE_ALIGN : n;
    uint8_t *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        qt_log_error("cannot allocate %.1f MiB for %s: %s", n / 1048576.0, what, strerror(errno));
        return NULL;
    }
    if (!huge) return p;
    // trim to a 2 MiB aligned start; qt_free_big unmaps the aligned length
    uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    size_t tail = (size_t)((p + map_len) - (a + len));
    if (tail) munmap(a + len, tail);
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE);
#endif
    return a;
}
void qt_free_big(void *p, size_t n) {
    if (!p) return;
    if (n == 0) n = 1;
    size_t len = (n + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    bool huge = len >= HUGE_ALIGN && n >= HUGE_ALIGN / 2;
    munmap(p, huge ? len : n);
}

int qt_mmap_open(qt_mmap *m, const char *path) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        qt_log_error("%s: cannot open: %s", path, strerror(errno));
        return QT_ERR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        qt_log_error("%s: not a regular file", path);
        close(fd);
        return QT_ERR;
    }
    if (st.st_size == 0) { close(fd); return QT_OK; }
    // MAP_POPULATE: fault the whole file in at once (as llama.cpp does) rather
    // than one page at a time in the first forward pass.
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, flags, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        qt_log_error("%s: cannot map: %s", path, strerror(errno));
        return QT_ERR;
    }
    m->data = p;
    m->size = (size_t)st.st_size;
    return QT_OK;
}

void qt_mmap_release(const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void qt_mmap_close(qt_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

char *qt_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        qt_log_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = qt_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; buf = qt_realloc(buf, cap); }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        qt_log_error("%s: read error", path);
        qt_free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (size) *size = n;
    return buf;
}

int qt_atomic_open(qt_atomic_file *f, const char *path) {
    memset(f, 0, sizeof(*f));
    size_t n = strlen(path) + 32;
    f->path = qt_strdup(path);
    f->tmp_path = qt_malloc(n);
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        qt_log_error("%s: cannot create: %s", f->tmp_path, strerror(errno));
        qt_free(f->path); qt_free(f->tmp_path);
        memset(f, 0, sizeof(*f));
        return QT_ERR;
    }
    return QT_OK;
}

int qt_atomic_write(qt_atomic_file *f, const void *data, size_t n) {
    if (f->failed) return QT_ERR;
    if (n && fwrite(data, 1, n, (FILE *)f->fp) != n) {
        qt_log_error("%s: write failed: %s", f->path, strerror(errno));
        f->failed = true;
        return QT_ERR;
    }
    return QT_OK;
}

static void atomic_release(qt_atomic_file *f) {
    qt_free(f->path);
    qt_free(f->tmp_path);
    memset(f, 0, sizeof(*f));
}

int qt_atomic_commit(qt_atomic_file *f) {
    FILE *fp = f->fp;
    int rc = QT_OK;
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        if (!f->failed) qt_log_error("%s: write failed: %s", f->path, strerror(errno));
        f->failed = true;
    }
    if (fclose(fp) != 0 && !f->failed) {
        qt_log_error("%s: close failed: %s", f->path, strerror(errno));
        f->failed = true;
    }
    if (!f->failed && rename(f->tmp_path, f->path) != 0) {
        qt_log_error("%s: rename failed: %s", f->path, strerror(errno));
        f->failed = true;
    }
    if (f->failed) { unlink(f->tmp_path); rc = QT_ERR; }
    atomic_release(f);
    return rc;
}

void qt_atomic_abort(qt_atomic_file *f) {
    if (f->fp) fclose((FILE *)f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    atomic_release(f);
}

int qt_write_file_atomic(const char *path, const void *data, size_t n) {
    qt_atomic_file f;
    if (qt_atomic_open(&f, path) != QT_OK) return QT_ERR;
    qt_atomic_write(&f, data, n);
    return qt_atomic_commit(&f);
}

double qt_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t qt_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#ifdef __APPLE__
    return (size_t)ru.ru_maxrss;
#else
    return (size_t)ru.ru_maxrss * 1024;
#endif
}

size_t qt_total_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (size_t)pages * (size_t)psize : 0;
}

// The CPUs this process may run on (taskset, cgroups, mpirun's binding),
// else the online ones.
int qt_n_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void qt_rng_seed(qt_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t qt_rng_u64(qt_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

float qt_rng_f32(qt_rng *r) { return (float)(qt_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float qt_rng_normal(qt_rng *r) {
    float u1 = qt_rng_f32(r), u2 = qt_rng_f32(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}
