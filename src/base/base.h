// base.h: always-on asserts, logging, status codes, allocation, mmap, timing, rng.
// The lowest layer: includes nothing of qtune.
//
// Errors: programmer errors use QT_ASSERT (always on, names expression, file
// and line). Errors from the outside world (files, user input, big allocations)
// are logged once with qt_log_error where detected and returned as a negative
// status (QT_ERR) or NULL. Library code never calls exit().
#ifndef QT_BASE_H
#define QT_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QT_OK 0
#define QT_ERR (-1)
#define QT_STOPPED (-2)   // stopped early on request (Ctrl-C): not an error, nothing logged
#define QT_EINVAL (-3)    // a user setting that does not fit the input (logged): a usage error, exit 2

#define QT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define QT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

_Noreturn void qt_panic(const char *file, int line, const char *expr);
#define QT_ASSERT(x) do { if (!(x)) qt_panic(__FILE__, __LINE__, #x); } while (0)

// Logging to stderr. qt_log_error prefixes "error: ". Verbosity: 0 errors only,
// 1 (default) warnings and info, 2 debug.
void qt_log_set_level(int level);
int qt_log_level(void);
void qt_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qt_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qt_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qt_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Redirect log lines (tests capture errors to check their wording). The sink
// gets the full line without the newline, prefix included. NULL restores stderr.
typedef void (*qt_log_sink_fn)(const char *line, void *ud);
void qt_log_set_sink(qt_log_sink_fn sink, void *ud);

// Small allocations abort on out-of-memory (like Redis' zmalloc): callers do
// not check. qt_free(NULL) is a no-op.
void *qt_malloc(size_t n);
void *qt_calloc(size_t count, size_t size);
// n zeroed bytes aligned to align (a power of two, at least sizeof(void *)),
// for structs with over-aligned members; freed with qt_free.
void *qt_calloc_aligned(size_t n, size_t align);
void *qt_realloc(void *p, size_t n);
char *qt_strdup(const char *s);
void qt_free(void *p);

// Big buffers (arenas, KV cache, work buffers): 64-byte aligned, huge pages
// advised (first-touch page faults are expensive), zero-filled. Returns NULL and
// logs on failure: big allocations are an outside-world error.
void *qt_alloc_big(size_t n, const char *what);
void qt_free_big(void *p, size_t n);

// Read-only memory map of a whole file. Returns QT_OK, or logs "<path>: why"
// and returns QT_ERR. An empty file maps to data == NULL, size 0.
typedef struct {
    const uint8_t *data;  // valid until qt_mmap_close
    size_t size;
} qt_mmap;
int qt_mmap_open(qt_mmap *m, const char *path);
void qt_mmap_close(qt_mmap *m);
// The whole pages inside [p, p + n) of a mapping made by qt_mmap_open
// unmapped from the process (MADV_DONTNEED: its resident set shrinks, the
// page cache keeps the file; a later read maps them again).
void qt_mmap_release(const void *p, size_t n);

// Whole-file read into a NUL-terminated malloc'd buffer (caller frees).
// Returns NULL and logs on failure. *size may be NULL.
char *qt_read_file(const char *path, size_t *size);

// Atomic file write: data goes to "<path>.tmp.<pid>", is fsync'ed, then renamed
// over path. Nothing is left behind on failure.
typedef struct {
    void *fp;       // FILE*
    char *path;
    char *tmp_path;
    bool failed;
} qt_atomic_file;
int qt_atomic_open(qt_atomic_file *f, const char *path);
int qt_atomic_write(qt_atomic_file *f, const void *data, size_t n);
int qt_atomic_commit(qt_atomic_file *f);   // closes, renames; QT_ERR on failure
void qt_atomic_abort(qt_atomic_file *f);   // closes, removes the temporary file
// The whole of data written to path through a temporary file and a rename.
int qt_write_file_atomic(const char *path, const void *data, size_t n);

// Monotonic wall clock in seconds.
double qt_time_s(void);
// Peak resident set size of this process in bytes (0 if unknown).
size_t qt_peak_rss(void);
// Total physical memory in bytes (0 if unknown).
size_t qt_total_memory(void);
int qt_n_cpus(void);

// Deterministic RNG (xoshiro256**) seeded by splitmix64: same seed, same stream.
typedef struct { uint64_t s[4]; } qt_rng;
void qt_rng_seed(qt_rng *r, uint64_t seed);
uint64_t qt_rng_u64(qt_rng *r);
float qt_rng_f32(qt_rng *r);      // uniform in [0, 1)
float qt_rng_normal(qt_rng *r);   // standard normal (Box-Muller)

#endif
